#!/usr/bin/env python3
"""The console and the WebSocket server of a running node against real
clients: promtool on /metrics, python3-websockets against the echo server,
raw sockets with malformed HTTP, and headless Chromium on the dashboard.

Usage: test_console_clients.py PATH/TO/console_node
Exits 0 on success, 77 (skip) when a client is missing, 1 on failure.
The dashboard screenshot is written to $HYDRA_TEST_ARTIFACTS/console.png.
"""
import asyncio
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "t0ken-%d" % os.getpid()
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def attempt(cond):
    # The page rebuilds its tables at every push: an element read just as
    # it is replaced is stale; that read counts as "not yet".
    try:
        return cond()
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "StaleElementReferenceException":
            return None
        raise


def wait_until(cond, timeout, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = attempt(cond)
        if v:
            return v
        time.sleep(step)
    return attempt(cond)


def http(port, path, method="GET", headers=None, timeout=20):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def raw(port, data, timeout=20, shutdown=False):
    """Sends bytes on a fresh connection and returns what comes back until close."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and stopped reading: its answer is still there
    if shutdown:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        out += b"<timeout>"
    except ConnectionResetError:
        out += b"<reset>"
    s.close()
    return out


# ---- /metrics -------------------------------------------------------------


def test_metrics(port):
    st, body = http(port, "/metrics")
    check(st == 200, "/metrics answers 200")
    text = body.decode()
    for name in ("hydra_processes{", "hydra_messages_sent_total{", "hydra_busy_seconds_total{",
                 "hydra_mesh_entries_total{", "hydra_console_collect_seconds_total{",
                 "hydra_turn_seconds_bucket{", "hydra_turn_seconds_count{"):
        check(name in text, "/metrics has " + name.rstrip("{"))
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
        check(p.returncode == 0, "promtool check metrics accepts /metrics: %s" %
              (p.stdout + p.stderr).decode().strip()[:300])
    else:
        print("skip promtool: not installed")


# ---- JSON API and actions ---------------------------------------------------


def find_load(tree):
    """(supervisor pid_id, worker pid_id, restarts) of the first 'load' worker."""
    def walk(n, parent):
        for k in n.get("children", []):
            if k.get("id") == "load":
                return parent, k
            r = walk(k, k)
            if r:
                return r
        return None
    return walk(tree, tree)


def test_api(port, nshards):
    st, body = http(port, "/api/all")
    check(st == 200, "/api/all answers 200")
    d = json.loads(body)
    check(len(d["shards"]["shards"]) == nshards, "/api/all lists every shard")
    check(all(not s["stale"] for s in d["shards"]["shards"]), "no shard is stale")
    check(len(d["shards"]["pairs"]) == nshards, "shard x shard traffic matrix")
    check(d["procs"]["total"] >= 3 * nshards, "process list holds the tree's processes")
    check(d["tree"]["tree"] is not None, "supervision tree present")
    sup, w = find_load(d["tree"]["tree"])
    st, _ = http(port, "/api/kill?pid=" + w["pid_id"], method="POST")
    check(st == 401, "kill without the token is refused (401)")
    st, _ = http(port, "/api/kill?pid=" + w["pid_id"], method="POST",
                 headers={"Authorization": "Bearer wrong"})
    check(st == 401, "kill with a wrong token is refused (401)")
    st, _ = http(port, "/api/kill?pid=" + w["pid_id"])
    check(st == 405, "kill by GET is refused (405)")
    st, body = http(port, "/api/proc?pid=" + w["pid_id"])
    check(st == 200 and json.loads(body)["id"] == w["pid_id"], "/api/proc finds a process")
    st, _ = http(port, "/api/proc?pid=zz")
    check(st == 400, "/api/proc with a bad id: 400")
    st, _ = http(port, "/nope")
    check(st == 404, "unknown path: 404")
    # Restart a supervisor's child through the API: a new pid for it.
    def idler_of(tree, sup_id):
        def walk(n):
            if n.get("pid_id") == sup_id:
                return [k for k in n["children"] if k["id"] == "idler"][0]
            for k in n.get("children", []):
                r = walk(k)
                if r:
                    return r
        return walk(tree)
    old = idler_of(d["tree"]["tree"], sup["pid_id"])
    path = "/api/restart?sup=%s&child=idler" % sup["pid_id"]
    st, _ = http(port, path, method="POST")
    check(st == 401, "restart without the token is refused (401)")
    st, body = http(port, path, method="POST", headers={"Authorization": "Bearer " + TOKEN})
    check(st == 200, "restart with the token: 200 (%s)" % body)
    new = idler_of(json.loads(http(port, "/api/tree")[1])["tree"], sup["pid_id"])
    check(new["pid_id"] != old["pid_id"], "the restarted child has a new pid")


# ---- malformed HTTP -------------------------------------------------------------


def test_malformed(port):
    out = raw(port, b"GARBAGE / NOPE\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400"), "bad request line: 400 and close")
    out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 431"), "oversized headers: 431 and close")
    out = raw(port, b"POST /api/kill HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 413"), "oversized body: 413")
    out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 501"), "chunked request: 501")
    out = raw(port, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
    check(out.startswith(b"HTTP/1.1 400"), "TLS hello: 400")
    # Keep-alive: two requests on one connection, pipelined.
    out = raw(port, b"GET /api/reports HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /api/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(out.count(b"HTTP/1.1 200") == 2, "two pipelined requests on one connection")


def test_slowloris(port, timeout_s):
    """Slow senders are cut off at the request deadline while others are served."""
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    st, _ = http(port, "/api/shards")
    check(st == 200, "node serves while 20 slow clients hold connections")
    start = time.monotonic()
    closed = 0
    for s in socks:
        try:
            while True:
                s.sendall(b"X-Slow: 1\r\n")
                b = s.recv(4096) if select_readable(s, 1.0) else None
                if b is not None:
                    if b == b"" or b.startswith(b"HTTP/1.1 408"):
                        closed += 1
                    break
                if time.monotonic() - start > timeout_s + 30:
                    break
        except OSError:
            closed += 1
        s.close()
    check(closed == 20, "slow clients cut off (408/close) at the deadline: %d of 20" % closed)
    st, _ = http(port, "/metrics")
    check(st == 200, "node still serving after slowloris")


def select_readable(s, t):
    import select
    r, _, _ = select.select([s], [], [], t)
    return bool(r)


# ---- WebSocket ----------------------------------------------------------------


async def ws_tests(port):
    import websockets
    uri = "ws://127.0.0.1:%d/" % port
    async with websockets.connect(uri, max_size=None) as ws:
        await ws.send("héllo")
        check(await ws.recv() == "héllo", "ws echo text")
        await ws.send(b"\x00\x01\x02")
        check(await ws.recv() == b"\x00\x01\x02", "ws echo binary")
        await ws.send(["frag", "men", "ted"])  # one message in three frames
        check(await ws.recv() == "fragmented", "ws fragmented message reassembled")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        check(True, "ws ping answered by pong")
        await ws.send(b"x" * 65536)
        check(len(await ws.recv()) == 65536, "ws message at the size limit")
        await ws.close(code=4000, reason="bye")
        check(ws.close_code == 4000, "ws close handshake echoes the code (4000)")
    async with websockets.connect(uri, max_size=None) as ws:
        await ws.send(b"x" * 65537)
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.exceptions.ConnectionClosed:
            pass
        check(ws.close_code == 1009, "ws oversized message closed with 1009 (got %s)" % ws.close_code)
    async with websockets.connect(uri) as ws:
        # Invalid UTF-8 in a text frame, sent raw through the protocol object.
        from websockets.frames import Opcode
        await ws.write_frame(True, Opcode.TEXT, b"\xc0\xaf")
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.exceptions.ConnectionClosed:
            pass
        check(ws.close_code == 1007, "ws invalid UTF-8 closed with 1007 (got %s)" % ws.close_code)

    # 1,000 concurrent connections, each echoing.
    n = 1000

    async def one(i):
        async with websockets.connect(uri, open_timeout=60, close_timeout=30) as ws:
            await ws.send("c%d" % i)
            return await asyncio.wait_for(ws.recv(), 60) == "c%d" % i

    conns = []
    try:
        for i in range(n):
            conns.append(await websockets.connect(uri, open_timeout=60))
        for i, ws in enumerate(conns):
            await ws.send("c%d" % i)
        got = 0
        for i, ws in enumerate(conns):
            if await asyncio.wait_for(ws.recv(), 60) == "c%d" % i:
                got += 1
        check(got == n, "%d concurrent ws connections all echo (%d)" % (n, got))
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


def ws_unmasked(port):
    """A client frame without a mask: the server closes with 1002."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = b""
    while b"\r\n\r\n" not in resp:
        resp += s.recv(4096)
    check(resp.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in resp,
          "ws handshake: 101 with the RFC's accept value")
    rest = resp.split(b"\r\n\r\n", 1)[1]
    s.sendall(b"\x81\x02hi")  # unmasked
    data = rest
    try:
        while len(data) < 4:
            b = s.recv(4096)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    s.close()
    ok = len(data) >= 4 and data[0] == 0x88 and struct.unpack("!H", data[2:4])[0] == 1002
    check(ok, "ws unmasked client frame closed with 1002")
    # A bad version gets 426.
    out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 426"), "ws bad version: 426")


# ---- the browser ----------------------------------------------------------------


def test_browser(port, nshards, artifacts):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.common.exceptions import StaleElementReferenceException
    except ImportError:
        print("skip browser: python3-selenium missing")
        return
    if not shutil.which("chromedriver") or not shutil.which("chromium"):
        print("skip browser: chromium or chromedriver missing")
        return
    prof = tempfile.mkdtemp(prefix="hydra-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-dev-shm-usage", "--no-first-run", "--window-size=1400,1400",
              "--user-data-dir=" + prof):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.get("http://127.0.0.1:%d/" % port)
        rows = lambda: drv.find_elements(By.CSS_SELECTOR, "#shards tbody tr.shard")
        check(wait_until(lambda: len(rows()) == nshards, 30), "browser: one row per shard")
        check(wait_until(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#turns tr.turns")) == nshards,
                         30), "browser: turn-time histogram, one row per shard")
        check(wait_until(lambda: drv.find_elements(By.CSS_SELECTOR, "#tree li.supervisor"), 30),
              "browser: supervision tree shown")
        check(wait_until(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#procs tr.proc")) > 3, 30),
              "browser: process list shown")
        text = lambda sel: drv.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", sel)
        first = text("#shards tbody tr.shard")
        check(wait_until(lambda: text("#shards tbody tr.shard") != first, 30),
              "browser: shard figures update live")
        check(wait_until(lambda: "live" in drv.find_element(By.ID, "status").text, 30),
              "browser: WebSocket connected")
        # The process page of an idle worker: its mailbox head and backtrace.
        drv.execute_script("document.querySelector('#procs a.pl').click()")
        page = lambda: drv.find_element(By.ID, "procpage").text
        check(wait_until(lambda: "mailbox head" in page() and "backtrace" in page(), 30),
              "browser: process page shows the mailbox head and the backtrace")
        # Kill a load worker from the page, token given.
        d = json.loads(http(port, "/api/all")[1])
        sup, w = find_load(d["tree"]["tree"])
        before = sup["restarts"]
        drv.find_element(By.ID, "token").send_keys(TOKEN)
        drv.execute_script("document.getElementById('token').dispatchEvent(new Event('change'))")
        f = drv.find_element(By.ID, "filter")
        f.clear()
        sel = "#procs button.kill[data-id='%s']" % w["pid_id"]
        def button():
            f.clear()
            f.send_keys(w["pid"])
            b = drv.find_elements(By.CSS_SELECTOR, sel)
            return b[0] if b else None
        def click():
            # The table is rebuilt at every push: a button found just before
            # a push is gone when clicked, so find and click again.
            try:
                b = button()
                if b:
                    b.click()
                    return True
            except StaleElementReferenceException:
                pass
            return False
        b = wait_until(click, 30)
        check(b, "browser: kill button of the worker found and clicked")
        if b:
            gone = wait_until(lambda: not drv.find_elements(By.CSS_SELECTOR, "#procs tr.proc[data-id='%s']" % w["pid_id"]), 30)
            check(gone, "browser: killed process disappears from the list")

            def restarts():
                d2 = json.loads(http(port, "/api/tree")[1])
                s2, _ = find_load(d2["tree"])
                return s2["restarts"] > before
            check(wait_until(restarts, 30), "browser: supervisor's restart count grows")
            shown = lambda: any(int(t) > before for t in text("#tree .restarts"))
            check(wait_until(shown, 30), "browser: page shows the new restart count")
        f.clear()
        time.sleep(0)  # the next push repaints
        wait_until(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#procs tr.proc")) > 3, 10)
        if artifacts:
            path = os.path.join(artifacts, "console.png")
            drv.save_screenshot(path)
            print("screenshot: " + path)
    finally:
        drv.quit()
        shutil.rmtree(prof, ignore_errors=True)


def main():
    node = sys.argv[1]
    nshards = 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    errlog = tempfile.TemporaryFile()
    proc = subprocess.Popen([node, str(nshards), TOKEN], stdout=subprocess.PIPE, stderr=errlog,
                            text=True)
    try:
        ports = {}
        while len(ports) < 2:
            line = proc.stdout.readline()
            if not line:
                print("node exited early")
                return 1
            k, v = line.split()
            ports[k] = int(v)
        cport, eport = ports["CONSOLE"], ports["ECHO"]
        test_metrics(cport)
        test_api(cport, nshards)
        test_malformed(cport)
        ws_unmasked(eport)
        try:
            import websockets  # noqa: F401
            asyncio.run(ws_tests(eport))
        except ImportError:
            print("skip websockets client tests: python3-websockets missing")
        test_browser(cport, nshards, os.environ.get("HYDRA_TEST_ARTIFACTS"))
        test_slowloris(cport, 10)
        check(proc.poll() is None, "node still running at the end")
    finally:
        proc.terminate()
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "hung"
    check(rc == 0, "node stops in order on SIGTERM (status %s)" % rc)
    errlog.seek(0)
    err = errlog.read()
    sys.stderr.write(err.decode(errors="replace")[-3000:])
    check(TOKEN.encode() not in err, "the token never appears in the node's log")
    check(b"kill " in err, "the kill action is logged")
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
