#!/usr/bin/env python3
"""Real clients and hostile ones against a running hydra-kvcache.

  kvcache_clients.py HOST:PORT [--idle N] [--read-timeout S] [--write-timeout S]

1. pymemcache (Debian's python3-pymemcache): 32 threads, each with its own
   connection, doing set/get/gets/cas/incr/decr/touch/delete on their own
   keys and on shared counters; every reply is checked.
2. Bad input, each on its own connection while a good client keeps being
   served: garbage, a value longer than declared, a 251-byte key, a length
   of 2^32, commands split into 1-byte segments, a line without end.
3. A client that never reads: it asks for a 512 KiB value again and again;
   the server must close it (after --write-timeout) and keep serving.
4. N idle connections (default 10000) at once; the server still answers.
5. A slowloris client that sends a command one byte per second: closed
   after --read-timeout (the server must run with -o read_timeout=S).
Exit 0 when everything holds; prints what failed otherwise."""
import argparse
import resource
import socket
import sys
import threading
import time

from pymemcache.client.base import Client

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def raw(addr, data, settle=0.3, chunk=None):
    s = socket.create_connection(addr, timeout=5)
    if chunk:
        for i in range(0, len(data), chunk):
            s.sendall(data[i:i + chunk])
            time.sleep(0.001)
    else:
        s.sendall(data)
    out = b""
    s.settimeout(0.1)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        try:
            d = s.recv(1 << 20)
            if not d:
                out += b"<CLOSED>"
                break
            out += d
            deadline = time.monotonic() + settle
        except socket.timeout:
            pass
        except ConnectionResetError:
            out += b"<CLOSED>"
            break
    s.close()
    return out


def healthy(addr):
    c = Client(addr, connect_timeout=5, timeout=5)
    c.set("health", b"ok")
    ok = c.get("health") == b"ok"
    c.close()
    return ok


def clients(addr):
    errors = []
    c0 = Client(addr)
    c0.set("shared", b"0")
    c0.close()

    def worker(t):
        try:
            c = Client(addr, connect_timeout=5, timeout=10)
            for i in range(200):
                k = "t%d-k%d" % (t, i)
                v = b"v%d-%d" % (t, i) * (1 + i % 7)
                assert c.set(k, v, flags=i) is True
                assert c.get(k) == v, k
                val, cas = c.gets(k)
                assert val == v
                assert c.cas(k, b"new", cas) is True
                assert c.cas(k, b"newer", cas) is False  # stale cas
                assert c.get(k) == b"new"
                assert c.touch(k, 100) is True
                assert c.delete(k) is True
                assert c.get(k) is None
                c.incr("shared", 1)
                c.set("n%d" % t, b"10")
                assert c.incr("n%d" % t, 5) == 15
                assert c.decr("n%d" % t, 20) == 0
                m = c.get_many(["t%d-k%d" % (t, j) for j in range(i, i + 5)] + ["n%d" % t])
                assert m.get("n%d" % t) is not None
            c.close()
        except Exception as e:  # noqa
            errors.append("thread %d: %r" % (t, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    check(not errors, "pymemcache workers: %s" % errors[:3])
    c = Client(addr)
    check(int(c.get("shared")) == 32 * 200, "shared counter: %r" % c.get("shared"))
    st = c.stats()
    check(st.get(b"threads", 0) >= 1, "stats threads")
    check(st.get(b"cas_badval", 0) >= 32 * 200, "stats cas_badval %r" % st.get(b"cas_badval"))
    check(st.get(b"total_connections", 0) >= 33, "stats total_connections")
    c.close()
    print("pymemcache: 32 connections x 200 rounds of set/get/gets/cas/touch/delete/incr/decr/get_many ok", flush=True)


def bad_input(addr):
    cases = [
        (b"\x00\x01\x02\xff\xfegarbage\r\nmn\r\n", b"ERROR\r\nMN\r\n"),
        (b"set a 0 0 1\r\nxyz\r\nmn\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n"),
        (b"set " + b"k" * 251 + b" 0 0 1\r\nx\r\nmn\r\n",
         b"CLIENT_ERROR bad command line format\r\nERROR\r\nMN\r\n"),
        (b"set a 0 0 4294967296\r\nx\r\nmn\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n"),
        (b"set a 0 0 2147483647\r\nmn\r\n", b"CLIENT_ERROR bad command line format\r\nMN\r\n"),
    ]
    for data, want in cases:
        got = raw(addr, data)
        check(got == want, "bad input %r: got %r" % (data[:40], got))
        check(healthy(addr), "healthy after %r" % data[:40])
    split = b"set s 0 0 5\r\nhello\r\nget s\r\nmg s v k\r\n"
    got = raw(addr, split, chunk=1)
    check(got == b"STORED\r\nVALUE s 0 5\r\nhello\r\nEND\r\nVA 5 ks\r\nhello\r\n",
          "1-byte segments: %r" % got)
    got = raw(addr, b"x" * 5000)
    check(got.endswith(b"<CLOSED>"), "line without end closes: %r" % got[:40])
    big = b"z" * 2000000
    got = raw(addr, b"set big 0 0 %d\r\n" % len(big) + big + b"\r\nmn\r\n", settle=1.0)
    check(got == b"SERVER_ERROR object too large for cache\r\nMN\r\n", "too large: %r" % got[:80])
    check(healthy(addr), "healthy after bad input")
    print("bad input: garbage, long value, 251-byte key, 2^32, 1-byte segments, endless line, 2 MB value ok", flush=True)


def never_reads(addr, write_timeout):
    c = Client(addr)
    c.set("big512", b"b" * (512 * 1024))
    c.close()
    s = socket.create_connection(addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = b"get big512\r\n" * 64
    sent = 0
    s.settimeout(0.2)
    deadline = time.monotonic() + write_timeout + 30
    closed = False
    while time.monotonic() < deadline:
        try:
            s.sendall(req)
            sent += len(req)
        except (socket.timeout, BlockingIOError):
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        check_ok = healthy(addr)
        if not check_ok:
            check(False, "server unhealthy while a client does not read")
            break
        time.sleep(0.1)
    if not closed:
        # the server may have shut only its side: reading drains to EOF or RST
        s.settimeout(5)
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    closed = True
                    break
        except (ConnectionResetError, socket.timeout):
            closed = True
    s.close()
    check(closed, "a client that never reads is closed")
    check(healthy(addr), "healthy after the non-reader")
    print("non-reading client: closed after its replies stopped fitting; others served", flush=True)


def idle(addr, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
        except (ValueError, OSError):
            n = max(0, soft - 256)
    c = Client(addr)
    settings = c.stats("settings")
    maxconns = int(settings.get(b"maxconns", settings.get("maxconns", 1024)))
    c.close()
    if n > maxconns - 64:
        check(False, "the server allows %d connections: start it with -c %d" % (maxconns, n + 100))
        n = maxconns - 64
    conns = []
    try:
        for _ in range(n):
            conns.append(socket.create_connection(addr, timeout=10))
        check(healthy(addr), "healthy with %d idle connections" % n)
        # the server accepts them as it gets to them: wait (bounded)
        c = Client(addr)
        deadline = time.monotonic() + 60
        while True:
            cur = c.stats().get(b"curr_connections", 0)
            if cur >= n or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        c.close()
        check(cur >= n, "curr_connections %d with %d idle" % (cur, n))
        # every idle one still works
        for s in conns[:: max(1, n // 50)]:
            s.sendall(b"mn\r\n")
            check(s.recv(10) == b"MN\r\n", "an idle connection answers")
    except OSError as e:
        check(False, "idle connections: %r after %d" % (e, len(conns)))
    for s in conns:
        s.close()
    print("idle: %d connections open at once, server answering" % len(conns), flush=True)


def slowloris(addr, read_timeout):
    """one byte every read_timeout / 2 seconds: each byte arrives well
    within the timeout, but the command never completes"""
    s = socket.create_connection(addr)
    data = b"set slow 0 0 5\r\nhel" * 100
    t0 = time.monotonic()
    closed = False
    s.settimeout(read_timeout / 2)
    for b in data:
        try:
            s.sendall(bytes([b]))
            if s.recv(100) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if time.monotonic() - t0 > 3 * read_timeout + 5:
            break
    took = time.monotonic() - t0
    s.close()
    check(closed, "slowloris closed after the read timeout")
    check(took < 2 * read_timeout + 5, "slowloris closed in time (%.1f s)" % took)
    check(healthy(addr), "healthy after slowloris")
    print("slowloris: closed after %.1f s (read timeout %.1f s)" % (took, read_timeout), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--read-timeout", type=float, default=2)
    ap.add_argument("--write-timeout", type=float, default=5)
    ap.add_argument("--only", help="comma-separated parts to run")
    a = ap.parse_args()
    host, port = a.server.rsplit(":", 1)
    addr = (host, int(port))
    only = a.only.split(",") if a.only else None
    for name, fn in [("clients", lambda: clients(addr)), ("bad_input", lambda: bad_input(addr)),
                     ("never_reads", lambda: never_reads(addr, a.write_timeout)),
                     ("idle", lambda: idle(addr, a.idle)),
                     ("slowloris", lambda: slowloris(addr, a.read_timeout))]:
        if not only or name in only:
            fn()
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
