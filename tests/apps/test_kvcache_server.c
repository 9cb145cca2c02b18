/* Tests of apps/kvcache/kvcache_server.c: the key owners under their
 * supervisors in a running two-shard node. A command on a key of the other
 * shard is forwarded and answered (alone, or in a batch, or written by the
 * owner to the client's socket itself); each owner's clock ticks (items
 * expire with no command); a killed owner is restarted by its
 * supervisor with an empty store and the node keeps serving. The checks run
 * in the application's main process and are asserted after the node stops
 * (cmocka must not unwind a process's stack). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvcache.h"
#include "test_support.h"

#define SEC 1000000000LL

static char log_[4096];
static size_t log_len;
static int failures;

static void note(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!ok) {
        failures++;
        log_len += (size_t)vsnprintf(log_ + log_len, sizeof(log_) - log_len, fmt, ap);
        log_len += (size_t)snprintf(log_ + log_len, sizeof(log_) - log_len, "\n");
    }
    va_end(ap);
}

/* a command to shard's owner; its reply as a string in buf */
static int ask(unsigned shard, const char *cmd, char *buf, size_t cap)
{
    struct kvcache_out r = {0};
    int rc = kvcache_server_request(shard, KVCACHE_REQ_RAW, cmd, strlen(cmd), &r);
    size_t n = r.len < cap - 1 ? r.len : cap - 1;
    if (n)
        memcpy(buf, r.buf, n);
    buf[n] = '\0';
    kvcache_out_fini(&r);
    return rc;
}

/* a key owned by shard s */
static void key_of(unsigned s, char *k, size_t cap)
{
    for (unsigned i = 0;; i++) {
        snprintf(k, cap, "key%u", i);
        if (kvcache_key_owner(k, strlen(k)) == s)
            return;
    }
}

static void put_entry(struct kvcache_out *o, const char *c, uint32_t len)
{
    kvcache_out_put(o, &len, 4);
    kvcache_out_put(o, c, strlen(c));
}

/* a batch of forwarded commands: one [u32 len][output] chunk per command,
 * in order; a command cut short gets SERVER_ERROR; an entry whose length
 * runs past the message is dropped */
static void batch(const char *k)
{
    char set[96], get[64], want[96];
    snprintf(set, sizeof(set), "set %s 0 0 2\r\nab\r\n", k);
    snprintf(get, sizeof(get), "get %s\r\n", k);
    snprintf(want, sizeof(want), "VALUE %s 0 2\r\nab\r\nEND\r\n", k);
    const char *cut = "set x 0 0 5\r\nab";
    struct kvcache_out req = {0}, rep = {0};
    put_entry(&req, set, (uint32_t)strlen(set));
    put_entry(&req, get, (uint32_t)strlen(get));
    put_entry(&req, cut, (uint32_t)strlen(cut));
    put_entry(&req, get, 1000); /* claims more than the message holds */
    int rc = kvcache_server_request(1, KVCACHE_REQ_BATCH, req.buf, req.len, &rep);
    const char *expect[] = {"STORED\r\n", want, "SERVER_ERROR forwarded command incomplete\r\n"};
    size_t at = 0;
    note(rc == 0, "batch: %s", hy_strerror(rc));
    for (size_t i = 0; rc == 0 && i < 3; i++) {
        uint32_t l = 0;
        if (at + 4 <= rep.len)
            memcpy(&l, rep.buf + at, 4);
        bool ok = at + 4 + l <= rep.len && l == strlen(expect[i]) &&
                  memcmp(rep.buf + at + 4, expect[i], l) == 0;
        note(ok, "batch reply %zu: %.*s", i, (int)l, at + 4 + l <= rep.len ? rep.buf + at + 4 : "");
        at += 4 + l;
    }
    note(rc != 0 || at == rep.len, "batch: %zu bytes after the 3 replies", rep.len - at);
    kvcache_out_fini(&req);
    kvcache_out_fini(&rep);

    /* a connection whose batch leader got no answer is told so */
    hy_ref ref;
    hy_ref_make(&ref);
    hy_send_ref(hy_self(), KVCACHE_TAG_FAIL, ref, NULL, 0);
    struct kvcache_out r = {0};
    note(kvcache_server_wait(ref, &r) == HY_ENOPROC, "KVCACHE_TAG_FAIL: HY_ENOPROC");
    kvcache_out_fini(&r);
}

/* the stores' clocks advance with no command to read a clock: each owner
 * ticks. An item of each shard set to expire after 1 s is gone within 10 s
 * (looked for every 50 ms; the bound is generous for a loaded machine). */
static void clock_ticks(void)
{
    for (unsigned s = 0; s < 2; s++) {
        char k[32], cmd[96], r[256];
        key_of(s, k, sizeof(k));
        snprintf(cmd, sizeof(cmd), "set %s 0 1 1\r\nt\r\n", k);
        note(ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "set 1 s on %u: %s", s, r);
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k);
        bool gone = false;
        uint64_t t0 = hy_now_ns();
        while (!gone && hy_now_ns() - t0 < 10 * (uint64_t)SEC) {
            gone = ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "END\r\n") == 0;
            if (!gone)
                hy_sleep_ns(50000000);
        }
        note(gone, "shard %u: an item of 1 s still there after 10 s: %s", s, r);
    }
}

/* reads from fd until want bytes or EOF (eof: expect it after them), with
 * a deadline; what came in buf */
static size_t read_all(int fd, char *buf, size_t cap, bool eof)
{
    size_t got = 0;
    uint64_t t0 = hy_now_ns();
    while (hy_now_ns() - t0 < 10 * (uint64_t)SEC) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 0) == 1) {
            ssize_t n = read(fd, buf + got, cap - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            if (!eof)
                break;
            continue;
        }
        hy_sleep_ns(1000000); /* the owner runs on the other shard */
    }
    buf[got] = '\0';
    return got;
}

static struct kvcache_direct *direct_new(int fd)
{
    struct kvcache_direct *d = calloc(1, sizeof(*d));
    d->fd = fd;
    atomic_init(&d->refs, 1);
    atomic_init(&d->state, KVCACHE_DIRECT_PENDING);
    return d;
}

/* the owner writes the reply to the client's socket itself: to the right
 * client after the connection has ended and its descriptor number is
 * reused, closing the socket with the last reference; what the socket does
 * not take at once (a full socket, a reply over 16 KiB) is left to the
 * connection, in order; a connection that waits for the owner gets its ack */
static void direct(const char *k)
{
    char buf[256], cmd[96];
    int sv[2];
    note(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    struct kvcache_direct *d = direct_new(dup(sv[0]));
    int num = sv[0];
    close(sv[0]); /* the connection ends: its number goes to the next client */
    int next[2];
    note(socketpair(AF_UNIX, SOCK_STREAM, 0, next) == 0, "socketpair 2");
    note(next[0] == num || next[1] == num, "the number %d is reused (%d %d)", num, next[0], next[1]);
    hy_ref ref;
    snprintf(cmd, sizeof(cmd), "set %s 0 0 2\r\nab\r\n", k);
    note(kvcache_server_send_direct(1, d, NULL, cmd, strlen(cmd), &ref) == 0, "send_direct");
    kvcache_direct_put(d); /* the connection's reference */
    size_t n = read_all(sv[1], buf, sizeof(buf), true);
    note(n == 8 && strcmp(buf, "STORED\r\n") == 0, "direct reply after close: %s", buf);
    struct pollfd pf[2] = {{.fd = next[0], .events = POLLIN}, {.fd = next[1], .events = POLLIN}};
    note(poll(pf, 2, 0) == 0, "the next client got nothing");
    close(next[0]);
    close(next[1]);
    close(sv[1]);

    /* a connection that waits gets the ack, the reply is on the socket */
    for (int i = 0; i < 20; i++) {
        note(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair 3");
        d = direct_new(sv[0]);
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k);
        note(kvcache_server_send_direct(1, d, NULL, cmd, strlen(cmd), &ref) == 0, "send_direct 2");
        /* waiting marks PENDING or RUNNING (the owner's ring send in
         * flight: its completion answers), as direct_wait_mark does */
        int exp = KVCACHE_DIRECT_PENDING;
        bool marked = false;
        while (!marked && (exp == KVCACHE_DIRECT_PENDING || exp == KVCACHE_DIRECT_RUNNING))
            marked = atomic_compare_exchange_strong(&d->state, &exp, exp | KVCACHE_DIRECT_WAITER);
        if (marked) {
            struct kvcache_out ack = {0};
            note(kvcache_server_wait(ref, &ack) == 0 && ack.len == 0, "ack");
            kvcache_out_fini(&ack);
        } else {
            /* answered already: no ack may come */
            struct hy_msg *m = NULL;
            note(hy_recv_ref(ref, &m, 0) == HY_ETIMEDOUT, "no ack when not waiting");
            if (m)
                hy_msg_free(m);
        }
        note(atomic_load(&d->state) == KVCACHE_DIRECT_DONE && !d->left, "done, nothing left");
        char want[96];
        snprintf(want, sizeof(want), "VALUE %s 0 2\r\nab\r\nEND\r\n", k);
        n = read_all(sv[1], buf, strlen(want) + 1, false);
        note(strcmp(buf, want) == 0, "get direct: %s", buf);
        kvcache_direct_put(d);
        close(sv[1]);
    }

    /* a full socket: the whole reply is left to the connection */
    note(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair 4");
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    static char junk[4096];
    size_t filled = 0;
    while (write(sv[0], junk, sizeof(junk)) > 0)
        filled += sizeof(junk);
    d = direct_new(sv[0]);
    snprintf(cmd, sizeof(cmd), "set %s 0 0 3\r\nxyz\r\n", k);
    note(kvcache_server_send_direct(1, d, NULL, cmd, strlen(cmd), &ref) == 0, "send_direct 3");
    /* output left to the connection: the owner tells it (the message that
     * ends its hy_tcp_recv_or_msg), though it did not wait */
    struct hy_msg *am = NULL;
    note(hy_recv_ref(ref, &am, 10 * SEC) == 0, "full socket: the connection is told");
    if (am)
        hy_msg_free(am);
    note(atomic_load(&d->state) == KVCACHE_DIRECT_DONE && d->left && d->left_len == 8 &&
             memcmp(d->left, "STORED\r\n", 8) == 0,
         "full socket: left %zu bytes after %zu written", d->left_len, filled);
    kvcache_direct_put(d);
    close(sv[1]);

    /* a reply over 16 KiB is left whole to the connection */
    static char big[20000 + 128];
    int hl = snprintf(big, sizeof(big), "set %s 0 0 20000\r\n", k);
    memset(big + hl, 'v', 20000);
    memcpy(big + hl + 20000, "\r\n", 2);
    struct kvcache_out r = {0};
    note(kvcache_server_request(1, KVCACHE_REQ_RAW, big, (size_t)hl + 20002, &r) == 0, "set big");
    kvcache_out_fini(&r);
    note(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair 5");
    d = direct_new(sv[0]);
    snprintf(cmd, sizeof(cmd), "get %s\r\n", k);
    note(kvcache_server_send_direct(1, d, NULL, cmd, strlen(cmd), &ref) == 0, "send_direct 4");
    am = NULL;
    note(hy_recv_ref(ref, &am, 10 * SEC) == 0, "big reply: the connection is told");
    if (am)
        hy_msg_free(am);
    size_t whole = strlen(k) + strlen("VALUE  0 20000\r\n") + 20002 + 5;
    note(atomic_load(&d->state) == KVCACHE_DIRECT_DONE && d->left && d->left_len == whole,
         "big reply: left %zu of %zu", d->left_len, whole);
    pf[0] = (struct pollfd){.fd = sv[1], .events = POLLIN};
    note(poll(pf, 1, 0) == 0, "big reply: nothing written");
    kvcache_direct_put(d);
    close(sv[1]);
}

/* ---- a slow owner and a connection that gives up on it ------------------ */

static _Atomic int hook_entered, hook_release;

/* the owner takes a direct command and is slow to run it: it waits (up to
 * 30 s) until the test releases it */
static void slow_hook(void)
{
    atomic_fetch_add(&hook_entered, 1);
    uint64_t t0 = hy_now_ns();
    while (!atomic_load(&hook_release) && hy_now_ns() - t0 < 30 * (uint64_t)SEC)
        hy_sleep_ns(1000000);
}

/* reads from the client socket fd (nonblocking) into buf until it holds a
 * "\r\n" or 10 s pass, letting the node's processes run meanwhile; stop
 * (may be NULL) ends the wait early when it becomes non-zero */
static size_t client_read(int fd, char *buf, size_t cap, _Atomic int *stop)
{
    size_t got = 0;
    uint64_t t0 = hy_now_ns();
    while (hy_now_ns() - t0 < 10 * (uint64_t)SEC && got < cap - 1) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n"))
                break;
            continue;
        }
        if (n == 0 || (stop && atomic_load(stop)))
            break;
        hy_sleep_ns(1000000);
    }
    buf[got] = '\0';
    return got;
}

/* A kvcache server on 127.0.0.1 (a free port), its connections' send
 * buffer sndbuf bytes (0: the kernel's default); NULL (noted) if it cannot
 * start. */
static struct hy_tcp_server *server_start(int sndbuf)
{
    static const struct hy_tcp_server_ops ops = {.handle = kvcache_conn_handle};
    struct hy_tcp_server_opts o;
    hy_tcp_server_opts_init(&o);
    note(hy_addr_parse("127.0.0.1", 0, &o.listen.addr) == 0, "addr");
    o.ops = &ops;
    o.listen.conn.sndbuf = sndbuf;
    struct hy_tcp_server *srv = NULL;
    note(hy_tcp_server_start(&o, &srv) == 0, "tcp server");
    return srv;
}

/* a live owner slower than the connection's give-up: the connection
 * answers SERVER_ERROR, and the owner, when it gets to the command at
 * last, does not run it or write its reply (exactly one of them answers):
 * the client's next reply is that of its next command */
static void slow_owner(void)
{
    struct hy_tcp_server *srv = server_start(0);
    if (!srv)
        return;
    kvcache_cfg.direct = true;
    kvcache_cfg.direct_give_up_ns = 200 * 1000000ull;
    char k[2][32], cmd[96], r[256];
    for (unsigned s = 0; s < 2; s++) {
        key_of(s, k[s], sizeof(k[s]));
        snprintf(cmd, sizeof(cmd), "set %s 0 0 4\r\nslow\r\n", k[s]);
        note(ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "slow: set %s", r);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(hy_tcp_server_port(srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    note(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    atomic_store(&hook_entered, 0);
    atomic_store(&hook_release, 0);
    atomic_store(&kvcache_direct_hook, slow_hook);
    /* a key of the connection's own shard is answered at once; the other
     * shard's goes to its owner, which stops in the hook */
    int owner = -1;
    for (unsigned s = 0; s < 2 && owner < 0; s++) {
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k[s]);
        note(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "slow: write");
        size_t n = client_read(fd, r, sizeof(r), &hook_entered);
        if (atomic_load(&hook_entered))
            owner = (int)s;
        else
            note(n > 0 && strncmp(r, "VALUE ", 6) == 0, "slow: a local get: %s", r);
        if (!atomic_load(&hook_entered) && n > 0 && !strstr(r, "END\r\n"))
            client_read(fd, r, sizeof(r), NULL); /* the rest of it */
    }
    note(owner >= 0, "slow: a command reached the slow owner");
    /* the connection gives up after 200 ms and answers */
    size_t n = client_read(fd, r, sizeof(r), NULL);
    note(n > 0 && strcmp(r, "SERVER_ERROR key owner unavailable\r\n") == 0,
         "slow: the connection answers: %s", r);
    /* the owner goes on; once it has answered a later request, it has
     * taken the command: it must have written nothing */
    atomic_store(&hook_release, 1);
    if (owner >= 0)
        note(ask((unsigned)owner, "version\r\n", r, sizeof(r)) == 0 &&
                 strncmp(r, "VERSION ", 8) == 0,
             "slow: owner answers after: %s", r);
    n = (size_t)read(fd, r, sizeof(r) - 1);
    r[n < sizeof(r) ? n : 0] = '\0';
    note(n == (size_t)-1 && errno == EAGAIN, "slow: the owner wrote a late reply too: %s", r);
    note(write(fd, "version\r\n", 9) == 9, "slow: write version");
    n = client_read(fd, r, sizeof(r), NULL);
    note(strncmp(r, "VERSION ", 8) == 0, "slow: the next reply is the next command's: %s", r);
    close(fd);

    /* a client that sends a command and closes at once (pymemcache's
     * noreply set): its connection ends while the command waits at the
     * owner, which must still run it */
    atomic_store(&hook_entered, 0);
    atomic_store(&hook_release, 0);
    int fired = -1;
    for (int attempt = 0; attempt < 20 && fired < 0; attempt++) {
        unsigned s = (unsigned)attempt % 2;
        int f2 = socket(AF_INET, SOCK_STREAM, 0);
        note(connect(f2, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect 2");
        snprintf(cmd, sizeof(cmd), "set %s 0 0 4 noreply\r\nlate\r\n", k[s]);
        note(write(f2, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "closing client: write");
        close(f2);
        /* a connection on the key's own shard runs it at once: no hook */
        uint64_t t0 = hy_now_ns();
        while (!atomic_load(&hook_entered) && hy_now_ns() - t0 < (uint64_t)SEC)
            hy_sleep_ns(1000000);
        if (atomic_load(&hook_entered))
            fired = (int)s;
    }
    note(fired >= 0, "closing client: a command reached the held owner");
    /* the connection has ended (it saw the client close) before the owner
     * takes the command */
    uint64_t t0 = hy_now_ns();
    for (;;) {
        uint64_t conns = 0;
        for (unsigned s = 0; s < 2; s++)
            conns += atomic_load(&kvcache_shards[s].curr_conns);
        if (conns == 0 || hy_now_ns() - t0 > 10 * (uint64_t)SEC)
            break;
        hy_sleep_ns(1000000);
    }
    atomic_store(&hook_release, 1);
    if (fired >= 0) {
        char want[96];
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k[fired]);
        snprintf(want, sizeof(want), "VALUE %s 0 4\r\nlate\r\nEND\r\n", k[fired]);
        note(ask((unsigned)fired, cmd, r, sizeof(r)) == 0 && strcmp(r, want) == 0,
             "closing client: the owner ran its command: %s", r);
    }
    atomic_store(&kvcache_direct_hook, NULL);
    kvcache_cfg.direct_give_up_ns = 0;
    hy_tcp_server_stop(srv, 1000000000LL);
}

/* ---- the give-up checks: by message, a step of the give-up apart ----------- */

static _Atomic uint64_t hold_ns; /* 0: until hook_release */

/* the owner holds each direct command hold_ns (or until released, at most
 * 30 s) before it runs it */
static void hold_hook(void)
{
    atomic_fetch_add(&hook_entered, 1);
    uint64_t t0 = hy_now_ns(), h = atomic_load(&hold_ns);
    while (!atomic_load(&hook_release) && hy_now_ns() - t0 < (h ? h : 30 * (uint64_t)SEC))
        hy_sleep_ns(1000000);
}

/* reads from the nonblocking client socket fd into buf until it holds end
 * or a whole SERVER_ERROR line (or 10 s pass), letting the node's
 * processes run meanwhile */
static size_t read_until(int fd, char *buf, size_t cap, const char *end)
{
    size_t got = 0;
    buf[0] = '\0';
    uint64_t t0 = hy_now_ns();
    while (!strstr(buf, end) && !(strncmp(buf, "SERVER_ERROR", 12) == 0 && strstr(buf, "\r\n")) &&
           got < cap - 1 && hy_now_ns() - t0 < 10 * (uint64_t)SEC) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n > 0) {
            got += (size_t)n;
            buf[got] = '\0';
        } else if (n == 0) {
            break;
        } else {
            hy_sleep_ns(1000000);
        }
    }
    return got;
}

/* The connection gives up on a command at an owner by its give-up checks
 * (a message a quarter of the give-up apart while a command is pending),
 * not by a timeout per command: commands the owner holds well under the
 * give-up are all answered by it, across many checks, each a new command
 * that a check saw pending; one held past it is given up on no earlier
 * than the give-up after it was sent (and soon after), the owner writes
 * nothing for it, and the connection serves on. */
static void give_up_checks(void)
{
    struct hy_tcp_server *srv = server_start(0);
    if (!srv)
        return;
    kvcache_cfg.direct = true;
    kvcache_cfg.direct_give_up_ns = 1000 * 1000000ull; /* a check every 250 ms */
    char k[2][32], cmd[96], r[512], want[96];
    for (unsigned s = 0; s < 2; s++) {
        key_of(s, k[s], sizeof(k[s]));
        snprintf(cmd, sizeof(cmd), "set %s 0 0 4\r\nheld\r\n", k[s]);
        note(ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "checks: set %s", r);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(hy_tcp_server_port(srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    note(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "checks: connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    atomic_store(&hook_entered, 0);
    atomic_store(&hook_release, 0);
    atomic_store(&hold_ns, 100 * 1000000ull);
    atomic_store(&kvcache_direct_hook, hold_hook);
    /* the key of the other shard than the connection's goes to its owner */
    int remote = -1;
    for (unsigned s = 0; s < 2; s++) {
        int before = atomic_load(&hook_entered);
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k[s]);
        snprintf(want, sizeof(want), "VALUE %s 0 4\r\nheld\r\nEND\r\n", k[s]);
        note(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "checks: write");
        read_until(fd, r, sizeof(r), "END\r\n");
        note(strcmp(r, want) == 0, "checks: get %u: %s", s, r);
        if (atomic_load(&hook_entered) > before)
            remote = (int)s;
    }
    note(remote >= 0, "checks: a command reached the other shard's owner");
    if (remote >= 0) {
        /* 12 commands held 100 ms each: 1.2 s, five checks or more */
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k[remote]);
        snprintf(want, sizeof(want), "VALUE %s 0 4\r\nheld\r\nEND\r\n", k[remote]);
        int ok = 0;
        uint64_t t0 = hy_now_ns();
        for (int i = 0; i < 12; i++) {
            note(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "checks: write");
            read_until(fd, r, sizeof(r), "END\r\n");
            ok += strcmp(r, want) == 0;
        }
        note(ok == 12, "checks: %d of 12 held commands answered by the owner (last: %s)", ok, r);
        note(hy_now_ns() - t0 >= 1200 * 1000000ull, "checks: the commands were held");
        /* one held until released: given up on, not before 1 s */
        atomic_store(&hold_ns, 0);
        int before = atomic_load(&hook_entered);
        t0 = hy_now_ns();
        note(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "checks: write");
        read_until(fd, r, sizeof(r), "\r\n");
        uint64_t took = hy_now_ns() - t0;
        note(strcmp(r, "SERVER_ERROR key owner unavailable\r\n") == 0,
             "checks: the held command given up on: %s", r);
        note(took >= 1000 * 1000000ull && took < 8 * (uint64_t)SEC,
             "checks: given up after %.3f s (give-up 1 s)", (double)took / 1e9);
        note(atomic_load(&hook_entered) == before + 1, "checks: the owner held it");
        atomic_store(&hook_release, 1);
        note(ask((unsigned)remote, "version\r\n", r, sizeof(r)) == 0 &&
                 strncmp(r, "VERSION ", 8) == 0,
             "checks: the owner answers after: %s", r);
        note(write(fd, "version\r\n", 9) == 9, "checks: write version");
        read_until(fd, r, sizeof(r), "\r\n");
        note(strncmp(r, "VERSION ", 8) == 0, "checks: the owner wrote nothing late: %s", r);
    }
    close(fd);
    atomic_store(&kvcache_direct_hook, NULL);
    kvcache_cfg.direct_give_up_ns = 0;
    hy_tcp_server_stop(srv, 1000000000LL);
}

/* reads exactly want bytes from the nonblocking client socket fd into buf
 * (within 10 s), letting the node's processes run meanwhile */
static size_t read_n(int fd, char *buf, size_t want)
{
    size_t got = 0;
    uint64_t t0 = hy_now_ns();
    while (got < want && hy_now_ns() - t0 < 10 * (uint64_t)SEC) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        hy_sleep_ns(1000000);
    }
    return got;
}

/* a value of n bytes of pattern c (its "\r\n" not included) */
static char *pattern(size_t n, char c)
{
    char *v = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        v[i] = (char)(c + (char)(i % 7));
    v[n] = '\0';
    return v;
}

/* sets k (owned by shard s) to v at its owner */
static void set_at(unsigned s, const char *k, const char *v)
{
    size_t n = strlen(v);
    char *cmd = malloc(n + 128);
    int hl = snprintf(cmd, 128, "set %s 0 0 %zu\r\n", k, n);
    memcpy(cmd + hl, v, n);
    memcpy(cmd + hl + n, "\r\n", 3);
    char r[64];
    note(ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "set_at %s: %s", k, r);
    free(cmd);
}

/* a local get of a large value is sent straight from the item (send_get):
 * pipelined gets keep their order, and when the socket takes only part of
 * the reply, the rest is the item's value as it was, although the item is
 * deleted and its chunk reused by another value before the client reads
 * (the rest was copied, not left pointing into the item); a key of the
 * other shard (the owner's direct write) likewise. from_item: the
 * send_from_item setting (0: every local get is copied instead, and the
 * replies must be the same) */
static void sent_from_item(uint32_t from_item)
{
    /* a fixed send buffer (no autotuning): large replies go out in parts */
    struct hy_tcp_server *srv = server_start(8192);
    if (!srv)
        return;
    kvcache_cfg.direct = true;
    kvcache_cfg.write_timeout_s = 10; /* the client reads slowly */
    kvcache_cfg.send_from_item = from_item;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(hy_tcp_server_port(srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char k[2][32];
    for (unsigned s = 0; s < 2; s++)
        key_of(s, k[s], sizeof(k[s]));
    /* pipelined: large values of both shards and a miss, in one write;
     * the last get's reply goes out with the earlier ones' */
    char *v1 = pattern(1000, 'a'), *v0 = pattern(3000, 'A');
    set_at(0, k[0], v0);
    set_at(1, k[1], v1);
    char cmd[512], want[16384], got[16384];
    snprintf(cmd, sizeof(cmd), "get %s\r\nget %s\r\nget nokey%s\r\nget %s\r\nget %s\r\n", k[0],
             k[1], k[0], k[1], k[0]);
    size_t wl = 0;
    const char *order[4] = {k[0], k[1], NULL, k[1]};
    for (int i = 0; i < 5; i++) {
        const char *kk = i == 4 ? k[0] : order[i];
        if (kk) {
            const char *v = kk == k[0] ? v0 : v1;
            wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "VALUE %s 0 %zu\r\n%s\r\n", kk,
                                   strlen(v), v);
        }
        wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "END\r\n");
    }
    for (int conn = 0; conn < 4; conn++) { /* connections land on both shards */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        note(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        note(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "pipelined: write");
        size_t n = read_n(fd, got, wl);
        note(n == wl && memcmp(got, want, wl) == 0, "pipelined gets: %zu of %zu bytes, %.60s", n,
             wl, n ? got : "");
        /* one at a time, each the last of its read */
        for (int i = 0; i < 2; i++) {
            snprintf(cmd + 256, 256, "get %s\r\n", k[i]);
            note(write(fd, cmd + 256, strlen(cmd + 256)) == (ssize_t)strlen(cmd + 256), "write");
            const char *v = i ? v1 : v0;
            int l = snprintf(want + 8192, 8192, "VALUE %s 0 %zu\r\n%s\r\nEND\r\n", k[i],
                             strlen(v), v);
            n = read_n(fd, got, (size_t)l);
            note(n == (size_t)l && memcmp(got, want + 8192, (size_t)l) == 0,
                 "a single get: %zu of %d bytes", n, l);
        }
        close(fd);
    }
    free(v0);
    free(v1);

    /* a reply larger than the socket takes at once; the item goes and its
     * chunk takes another value before the client reads. Connections until
     * one has landed on each shard (its curr_conns moves): its own shard's
     * key is sent from the item, the other's by the owner (direct) */
    size_t cap = 900 * 1024 + 256;
    char *buf = malloc(cap), *exp = malloc(cap);
    bool covered[2] = {false, false};
    for (int attempt = 0; attempt < 40 && !(covered[0] && covered[1]); attempt++) {
        uint64_t before[2];
        for (unsigned s = 0; s < 2; s++)
            before[s] = atomic_load(&kvcache_shards[s].curr_conns);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int rb = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
        note(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        char r[64];
        note(write(fd, "version\r\n", 9) == 9, "partial: write version");
        client_read(fd, r, sizeof(r), NULL);
        int here = -1;
        for (unsigned s = 0; s < 2; s++)
            if (atomic_load(&kvcache_shards[s].curr_conns) > before[s])
                here = (int)s;
        if (here < 0 || covered[here]) {
            close(fd);
        } else {
            covered[here] = true;
            /* 900 KiB: more than the owner writes itself (DIRECT_MAX, 16
             * KiB), left to the connection; 15 KiB: the owner writes what
             * the socket takes (14 KiB here) and leaves a copy of the rest
             * to the connection (a copy off by one byte fails at 14336) */
            for (unsigned i = 0; i < 4; i++) {
                unsigned s = i % 2 == 0 ? (unsigned)here : 1u - (unsigned)here;
                size_t big = i < 2 ? 900 * 1024 : 15 * 1024;
                char *orig = pattern(big, 'a'), *other = pattern(big, 'M');
                set_at(s, k[s], orig);
                snprintf(cmd, sizeof(cmd), "get %s\r\n", k[s]);
                note(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "partial: write");
                /* the reply has started: part of it is in the socket */
                size_t n = read_n(fd, buf, 1);
                note(n == 1, "partial: the reply starts");
                snprintf(cmd, sizeof(cmd), "delete %s\r\n", k[s]);
                note(ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "DELETED\r\n") == 0,
                     "delete: %s", r);
                set_at(s, k[s], other); /* the freed chunk, same class */
                int el = snprintf(exp, cap, "VALUE %s 0 %zu\r\n", k[s], big);
                memcpy(exp + el, orig, big);
                memcpy(exp + el + big, "\r\nEND\r\n", 7);
                size_t total = (size_t)el + big + 7;
                n += read_n(fd, buf + 1, total - 1);
                size_t diff = 0;
                while (diff < n && diff < total && buf[diff] == exp[diff])
                    diff++;
                note(n == total && diff == total,
                     "partial reply of shard %u's key on shard %d (%zu bytes): %zu of %zu "
                     "bytes, first difference at %zu",
                     s, here, big, n, total, diff);
                free(orig);
                free(other);
            }
            /* and the connection goes on */
            note(write(fd, "version\r\n", 9) == 9, "partial: write version");
            client_read(fd, r, sizeof(r), NULL);
            note(strncmp(r, "VERSION ", 8) == 0, "partial: the next reply: %s", r);
            close(fd);
        }
        /* until the connection has ended: the next one's shard is told by
         * its curr_conns */
        uint64_t t0 = hy_now_ns();
        while (atomic_load(&kvcache_shards[0].curr_conns) +
                       atomic_load(&kvcache_shards[1].curr_conns) >
                   before[0] + before[1] &&
               hy_now_ns() - t0 < 10 * (uint64_t)SEC)
            hy_sleep_ns(1000000);
    }
    note(covered[0] && covered[1], "partial: connections on both shards");
    free(buf);
    free(exp);
    hy_tcp_server_stop(srv, 1000000000LL);
}

/* writes p[0..n) to the nonblocking client socket fd (within 10 s),
 * letting the node's processes (this shard's too) run while it is full */
static bool write_all(int fd, const char *p, size_t n)
{
    uint64_t t0 = hy_now_ns();
    while (n > 0 && hy_now_ns() - t0 < 10 * (uint64_t)SEC) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else {
            hy_sleep_ns(1000000);
        }
    }
    return n == 0;
}

/* a client that closes in the middle of a set's value (sent in many small
 * writes, the input buffer grown past the connection's page): nothing is
 * stored, the connection ends (curr_conns back) and its buffers go with it
 * (the ASan build's leak check); a value longer than declared on the same
 * path is refused and nothing stored either */
static void closed_mid_value(void)
{
    struct hy_tcp_server *srv = server_start(0);
    if (!srv)
        return;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(hy_tcp_server_port(srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char k[2][32], cmd[128], r[256];
    for (unsigned s = 0; s < 2; s++) /* keys no earlier part set */
        for (unsigned i = 0;; i++) {
            snprintf(k[s], sizeof(k[s]), "midvalue%u", i);
            if (kvcache_key_owner(k[s], strlen(k[s])) == s)
                break;
        }
    size_t vlen = 200 * 1024, sent_part = 120 * 1024;
    char *part = pattern(sent_part, 'q');
    for (int round = 0; round < 4; round++) { /* connections land on both shards */
        unsigned s = (unsigned)round % 2;
        uint64_t before = atomic_load(&kvcache_shards[0].curr_conns) +
                          atomic_load(&kvcache_shards[1].curr_conns);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        note(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "mid-value: connect");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        int hl = snprintf(cmd, sizeof(cmd), "set %s 0 0 %zu\r\n", k[s], vlen);
        note(write_all(fd, cmd, (size_t)hl), "mid-value: write the line");
        for (size_t at = 0; at < sent_part; at += 1000) { /* small segments */
            size_t n = sent_part - at < 1000 ? sent_part - at : 1000;
            note(write_all(fd, part + at, n), "mid-value: write a segment");
            if (at % 16000 == 0)
                hy_sleep_ns(100000); /* let the connection read what came */
        }
        close(fd);
        uint64_t t0 = hy_now_ns(), now;
        while ((now = atomic_load(&kvcache_shards[0].curr_conns) +
                      atomic_load(&kvcache_shards[1].curr_conns)) > before &&
               hy_now_ns() - t0 < 10 * (uint64_t)SEC)
            hy_sleep_ns(1000000);
        note(now <= before, "mid-value: the connection ended (%llu open, %llu before)",
             (unsigned long long)now, (unsigned long long)before);
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k[s]);
        note(ask(s, cmd, r, sizeof(r)) == 0 && strcmp(r, "END\r\n") == 0,
             "mid-value: nothing stored for %s: %s", k[s], r);
    }
    /* longer than declared, after many small segments: refused, nothing stored */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    note(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "longer: connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int hl = snprintf(cmd, sizeof(cmd), "set %s 0 0 %zu\r\n", k[0], sent_part - 10);
    note(write_all(fd, cmd, (size_t)hl), "longer: write the line");
    for (size_t at = 0; at < sent_part; at += 1000) {
        size_t n = sent_part - at < 1000 ? sent_part - at : 1000;
        note(write_all(fd, part + at, n), "longer: write a segment");
    }
    note(write_all(fd, "\r\nmn\r\n", 6), "longer: write the end");
    char got[128];
    size_t n = client_read(fd, got, sizeof(got), NULL);
    note(n > 0 && strncmp(got, "CLIENT_ERROR bad data chunk\r\n", 29) == 0, "longer: %.40s", got);
    close(fd);
    snprintf(cmd, sizeof(cmd), "get %s\r\n", k[0]);
    note(ask(0, cmd, r, sizeof(r)) == 0 && strcmp(r, "END\r\n") == 0,
         "longer: nothing stored: %s", r);
    free(part);
    hy_tcp_server_stop(srv, 1000000000LL);
}

/* the other end of fd was closed (read gives 0 bytes), within 5 s */
/* Waits (10 s at most) for the process registered as name to be another
 * than old (its supervisor restarted it); returns the name's pid then, or
 * whatever the name gives at the deadline (HY_PID_NONE when unregistered). */
static hy_pid wait_restarted(const char *name, hy_pid old)
{
    hy_pid now = HY_PID_NONE;
    uint64_t t0 = hy_now_ns();
    while (hy_now_ns() - t0 < 10 * (uint64_t)SEC) {
        if (hy_whereis(name, &now) == 0 && !hy_pid_eq(now, old))
            break;
        hy_sleep_ns(1000000);
    }
    return now;
}

static bool closed_at_peer(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    char c;
    return poll(&pf, 1, 5000) == 1 && read(fd, &c, 1) == 0;
}

/* ---- an owner killed with direct commands in its mailbox ------------------ */

static _Atomic int owner_took;

static void count_take(void)
{
    atomic_fetch_add(&owner_took, 1);
}

#define QUEUED_TAG 0x5155ull

struct queued_ctx {
    hy_pid owner, parent;
    struct kvcache_direct *lost, *waited;
    char cmd[64];
    int sent;
    bool abandoned;
    int woken; /* hy_recv_ref's result for the waited-for command's wake */
    uint64_t tag, wake_ns;
};

/* On the owner's shard, in one run (the owner cannot run meanwhile): sends
 * two direct commands to it, gives up on the first while the owner lives,
 * then kills the owner with both in its mailbox, and waits (as the waiting
 * connection does) for word of the second under its ref: the drop wakes
 * it, well before the connection's give-up (5 s). */
static void queue_and_kill(void *arg)
{
    struct queued_ctx *q = arg;
    hy_ref ref;
    q->sent = 0;
    q->sent += kvcache_server_send_direct(1, q->lost, NULL, q->cmd, strlen(q->cmd), &ref) == 0;
    q->sent += kvcache_server_send_direct(1, q->waited, NULL, q->cmd, strlen(q->cmd), &ref) == 0;
    q->abandoned = kvcache_direct_abandon(q->lost);
    hy_exit_pid(q->owner, hy_reason_make(HY_REASON_KILL));
    uint64_t t0 = hy_now_ns();
    struct hy_msg *w = NULL;
    q->woken = hy_recv_ref(ref, &w, 4 * SEC);
    q->wake_ns = hy_now_ns() - t0;
    if (w) {
        q->tag = w->tag;
        hy_msg_free(w);
    }
    hy_send(q->parent, QUEUED_TAG, NULL, 0);
}

/* ---- the reply home while the connection's shard is awake ---------------------- */

/* -o direct_home=1: the connection's shard (this process's, 0) stays awake
 * (this process yields in a loop, never waits) while owner 1 runs its
 * command, so the owner leaves the whole reply to the connection (d->left)
 * and tells it by message, writing nothing to the socket; after it, a
 * connection whose shard sleeps in a receive still gets its replies, in
 * order (the pipelined and single commands of sent_from_item) */
static void direct_home(const char *k)
{
    kvcache_cfg.direct_home = true;
    char cmd[96], want[96];
    snprintf(cmd, sizeof(cmd), "set %s 0 0 4\r\nhome\r\n", k);
    char r[256];
    note(ask(1, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "home: set: %s", r);
    snprintf(want, sizeof(want), "VALUE %s 0 4\r\nhome\r\nEND\r\n", k);
    for (int i = 0; i < 5; i++) {
        int sv[2];
        note(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "home: socketpair");
        struct kvcache_direct *d = direct_new(sv[0]);
        snprintf(cmd, sizeof(cmd), "get %s\r\n", k);
        hy_ref ref;
        note(kvcache_server_send_direct(1, d, NULL, cmd, strlen(cmd), &ref) == 0,
             "home: send_direct");
        uint64_t t0 = hy_now_ns();
        while (atomic_load(&d->state) != KVCACHE_DIRECT_DONE && hy_now_ns() - t0 < 10 * (uint64_t)SEC)
            hy_yield(); /* awake: runnable throughout, the shard never sleeps */
        struct hy_msg *m = NULL;
        note(hy_recv_ref(ref, &m, 10 * SEC) == 0, "home: the connection is told");
        if (m)
            hy_msg_free(m);
        note(atomic_load(&d->state) == KVCACHE_DIRECT_DONE && d->left &&
                 d->left_len == strlen(want) && memcmp(d->left, want, d->left_len) == 0,
             "home: the whole reply left to the connection (%zu bytes)", d->left_len);
        struct pollfd pf = {.fd = sv[1], .events = POLLIN};
        note(poll(&pf, 1, 0) == 0, "home: nothing written to the socket by the owner");
        kvcache_direct_put(d);
        close(sv[1]);
    }
    sent_from_item(512);
    kvcache_cfg.direct_home = false;
}

/* ---- an owner killed with its ring send in flight ---------------------------- */

static _Atomic int sent_kills;

/* the owner ends (killed) right after it queued a direct reply on its
 * shard's ring, before the turn's submission */
static void kill_after_send(void)
{
    atomic_store(&kvcache_direct_sent_hook, NULL);
    atomic_fetch_add(&sent_kills, 1);
    hy_exit_pid(hy_self(), hy_reason_make(HY_REASON_KILL));
}

/* The reply's record, not the owner process, owns the bytes and the
 * owner's reference to d: the send still goes out, the waiting connection
 * gets its ack from the completion, d's descriptor stays open until then
 * and closes with the last reference (no descriptor leaked, the ASan
 * build's leak check for the rest), and the owner is restarted. */
static void ring_send_owner_killed(const char *k, const char *value)
{
    char name[HY_NAME_MAX], cmd[96], want[96], buf[256];
    kvcache_owner_name(1, name, sizeof(name));
    hy_pid old = HY_PID_NONE, now = HY_PID_NONE;
    note(hy_whereis(name, &old) == 0, "ring kill: owner 1 registered");
    int fds0 = hy_test_fd_count();
    int sv[2];
    note(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "ring kill: socketpair");
    struct kvcache_direct *d = direct_new(sv[0]);
    atomic_store(&d->state, KVCACHE_DIRECT_PENDING | KVCACHE_DIRECT_WAITER);
    atomic_store(&sent_kills, 0);
    atomic_store(&kvcache_direct_sent_hook, kill_after_send);
    snprintf(cmd, sizeof(cmd), "get %s\r\n", k);
    hy_ref ref;
    note(kvcache_server_send_direct(1, d, NULL, cmd, strlen(cmd), &ref) == 0,
         "ring kill: send_direct");
    struct kvcache_out ack = {0};
    int rc = kvcache_server_wait(ref, &ack);
    note(rc == 0 && ack.len == 0, "ring kill: the waiting connection's ack: %s", hy_err_name(rc));
    kvcache_out_fini(&ack);
    atomic_store(&kvcache_direct_sent_hook, NULL);
    note(atomic_load(&sent_kills) == 1, "ring kill: the owner was killed %d times",
         atomic_load(&sent_kills));
    note(atomic_load(&d->state) == KVCACHE_DIRECT_DONE && !d->left && !d->left_failed &&
             atomic_load(&d->refs) == 1,
         "ring kill: state %d, left %zu, %u refs", atomic_load(&d->state), d->left_len,
         atomic_load(&d->refs));
    snprintf(want, sizeof(want), "VALUE %s 0 %zu\r\n%s\r\nEND\r\n", k, strlen(value), value);
    size_t n = read_all(sv[1], buf, strlen(want) + 1, false);
    note(n == strlen(want) && strcmp(buf, want) == 0, "ring kill: the reply: %s", buf);
    now = wait_restarted(name, old);
    note(!hy_pid_eq(now, old) && !hy_pid_is_none(now), "ring kill: owner 1 restarted");
    kvcache_direct_put(d); /* the connection's: the last */
    note(closed_at_peer(sv[1]), "ring kill: the socket closed with the last reference");
    close(sv[1]);
    note(hy_test_fd_count() == fds0, "ring kill: fds %d, %d before", hy_test_fd_count(), fds0);
}

static void body(void *arg)
{
    (void)arg;
    char k[32], cmd[96], r[256];
    clock_ticks();
    key_of(1, k, sizeof(k));
    batch(k);
    direct(k);
    kvcache_cfg.direct_ring_submit = true; /* -o direct_ring=2 */
    direct(k);
    kvcache_cfg.direct_ring_submit = false;
    kvcache_cfg.direct_ring = false; /* the owner's send(2) (hydra-kvcache's default) */
    direct(k);
    kvcache_cfg.direct_ring = true;
    slow_owner();
    give_up_checks();
    closed_mid_value();
    sent_from_item(512);
    sent_from_item(0);
    direct_home(k);
    snprintf(cmd, sizeof(cmd), "set %s 0 0 5\r\nhello\r\n", k);
    note(ask(1, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "set: %s", r);
    snprintf(cmd, sizeof(cmd), "get %s\r\n", k);
    char want[96];
    snprintf(want, sizeof(want), "VALUE %s 0 5\r\nhello\r\nEND\r\n", k);
    note(ask(1, cmd, r, sizeof(r)) == 0 && strcmp(r, want) == 0, "get: %s", r);

    /* kill the owner of shard 1 */
    char name[HY_NAME_MAX];
    kvcache_owner_name(1, name, sizeof(name));
    hy_pid old, now = HY_PID_NONE;
    note(hy_whereis(name, &old) == 0, "owner 1 registered");
    /* two direct commands in owner 1's mailbox as it is killed: one whose
     * connection has given up on it (while the owner still lived: not its
     * to drop), one still waited for; and one the owner answered. The
     * dropped messages' references go with them (their drop function): the
     * sockets' duplicates close; the waited-for one is DROPPED, for its
     * connection to answer */
    int fds0 = hy_test_fd_count();
    int lost[2], waited[2], answered[2];
    note(socketpair(AF_UNIX, SOCK_STREAM, 0, lost) == 0 &&
             socketpair(AF_UNIX, SOCK_STREAM, 0, waited) == 0 &&
             socketpair(AF_UNIX, SOCK_STREAM, 0, answered) == 0,
         "socketpairs (abandon)");
    struct kvcache_direct *dl = direct_new(lost[0]), *dw = direct_new(waited[0]);
    struct kvcache_direct *da = direct_new(answered[0]);
    atomic_store(&da->state, KVCACHE_DIRECT_DONE); /* its message's reference dropped */
    static struct queued_ctx q;
    q = (struct queued_ctx){.owner = old, .lost = dl, .waited = dw, .parent = hy_self()};
    snprintf(q.cmd, sizeof(q.cmd), "get %s\r\n", k);
    atomic_store(&owner_took, 0);
    atomic_store(&kvcache_direct_hook, count_take);
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.shard = 1;
    note(hy_spawn_opt(queue_and_kill, &q, &so, NULL) == 0, "spawn on shard 1");
    struct hy_msg *qm = NULL;
    note(hy_recv_tag(QUEUED_TAG, &qm, 10 * SEC) == 0, "queued and killed");
    hy_msg_free(qm);
    note(q.sent == 2 && q.abandoned, "queue_and_kill: %d sent, abandoned %d", q.sent,
         (int)q.abandoned);
    note(q.woken == 0 && q.tag == KVCACHE_TAG_FAIL,
         "the dropped command's waiter woken: %s, tag %#llx, after %.1f ms", hy_err_name(q.woken),
         (unsigned long long)q.tag, (double)q.wake_ns / 1e6);
    now = wait_restarted(name, old);
    note(!hy_pid_eq(now, old) && !hy_pid_is_none(now), "owner 1 restarted");
    atomic_store(&kvcache_direct_hook, NULL);
    note(atomic_load(&owner_took) == 0, "the owner took %d queued commands",
         atomic_load(&owner_took));
    /* the waited-for command: dropped unrun, its message's reference gone;
     * the connection answers it (abandon says so) */
    note((atomic_load(&dw->state) & ~KVCACHE_DIRECT_WAITER) == KVCACHE_DIRECT_DROPPED &&
             atomic_load(&dw->refs) == 1,
         "the waited-for command: state %d, %u refs", atomic_load(&dw->state),
         atomic_load(&dw->refs));
    note(kvcache_direct_abandon(dw), "a dropped command is the connection's to answer");
    note(!kvcache_direct_abandon(da) && atomic_load(&da->refs) == 1,
         "an answered command is not abandoned (%u)", atomic_load(&da->refs));
    kvcache_direct_put(dl); /* the connections' */
    kvcache_direct_put(dw);
    kvcache_direct_put(da);
    note(closed_at_peer(lost[1]), "the given-up command's socket closed");
    note(closed_at_peer(waited[1]), "the waited-for command's socket closed");
    note(closed_at_peer(answered[1]), "the answered command's socket closed");
    close(lost[1]);
    close(waited[1]);
    close(answered[1]);
    note(hy_test_fd_count() == fds0, "fds: %d, %d before", hy_test_fd_count(), fds0);
    /* restarted empty; serving again */
    note(ask(1, cmd, r, sizeof(r)) == 0 && strcmp(r, "END\r\n") == 0, "get after restart: %s", r);
    snprintf(cmd, sizeof(cmd), "set %s 0 0 2\r\nhi\r\n", k);
    note(ask(1, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "set after restart: %s", r);
    /* shard 0 was untouched */
    char k0[32];
    key_of(0, k0, sizeof(k0));
    snprintf(cmd, sizeof(cmd), "set %s 0 0 1\r\nz\r\n", k0);
    note(ask(0, cmd, r, sizeof(r)) == 0 && strcmp(r, "STORED\r\n") == 0, "set on 0: %s", r);
    struct kvcache_stats_reply *st = malloc(sizeof(*st));
    note(kvcache_server_gather(st) == 0, "gather");
    note(st->c.curr_items == 2, "curr_items %llu", (unsigned long long)st->c.curr_items);
    free(st);
    ring_send_owner_killed(k, "hi");
}

static void test_kvcache_server_owner_restarts_empty(void **state)
{
    (void)state;
    struct kvcache_settings *s = &kvcache_cfg.set;
    s->maxbytes = 16ull << 20;
    s->item_size_max = 1 << 20;
    s->factor = 1.25;
    s->chunk_size = 48;
    s->nshards = 2;
    kvcache_cfg.direct_ring = true; /* the owner's reply through its ring (-o direct_ring=1) */
    kvcache_cfg.hugepages = true;   /* hydra-kvcache's default: restarted owners' stores too */
    kvcache_cfg.started = kvcache_unix_now() - 2;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.max_message_size = (2u << 20);
    hy_log_set_level(HY_LOG_ERROR);
    struct hy_app app = kvcache_app;
    app.main = body;
    struct hy_app_result res;
    assert_int_equal(hy_app_run(&app, &cfg, &res), HY_APP_STOPPED);
    if (failures)
        print_error("%s", log_);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kvcache_server_owner_restarts_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
