/* Tests of core/tcp.c on the shard's poller (core/io*.c): echo under many
 * connections on several shards, pipelining, partial reads and writes,
 * peer close, reset, half-close, refused and timed-out connects, accept
 * timeout, active once/N flow control, framing, ownership handover across
 * shards, owners dying while blocked, connect/close cycles, compact stacks.
 * Every scenario checks that /proc/self/fd holds as many descriptors after
 * the runtime stopped as before it started.
 *
 * The backend comes from HYDRA_IO_BACKEND (meson runs the suite twice:
 * io_uring and epoll). Counts scale with HYDRA_TEST_SCALE. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

#define SECOND 1000000000LL
#define TAG_DONE 0x444f4e45u
#define TAG_PORT 0x504f5254u
#define TAG_GO 0x474f2121u

/* ---- an echo service: one listener per shard, a process per connection --- */

static void echo_conn(void *arg)
{
    (void)arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    char buf[4096];
    for (;;) {
        size_t got;
        int rc = hy_tcp_recv(s, buf, sizeof(buf), &got, 30 * SECOND);
        if (rc == HY_ECLOSED || rc == HY_ECONNRESET)
            break;
        HY_CHECK_EQ(rc, 0);
        if (rc)
            break;
        rc = hy_tcp_send(s, buf, got, 30 * SECOND);
        if (rc)
            break;
    }
    /* not closed: the runtime closes what an exiting process owns */
}

struct listener_arg {
    uint16_t port;
    hy_pid parent;
};

/* Listens (port 0 picks one; the others then share it) and accepts until
 * killed; each connection goes to a new process of this shard. */
static void echo_listener(void *arg)
{
    struct listener_arg *la = arg;
    struct hy_tcp_listen_opts lo;
    hy_tcp_listen_opts_init(&lo);
    lo.addr = hy_test_loopback(la->port);
    struct hy_tcp *ls;
    int rc = hy_tcp_listen(&lo, &ls);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return;
    struct hy_addr me;
    hy_tcp_sockname(ls, &me);
    hy_test_send_u32(la->parent, TAG_PORT, hy_addr_port(&me));
    for (;;) {
        struct hy_tcp *c;
        rc = hy_tcp_accept(ls, &c, HY_INFINITY);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            return;
        hy_pid h;
        HY_CHECK_EQ(hy_spawn(echo_conn, NULL, &h), 0);
        HY_CHECK_EQ(hy_tcp_controlling_process(c, h), 0);
    }
}

/* Starts an echo listener on every shard; returns the port. */
static uint16_t start_echo(hy_pid *pids, unsigned n)
{
    struct listener_arg la = {0, hy_self()};
    uint16_t port = 0;
    for (unsigned i = 0; i < n; i++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)i;
        o.arg_size = sizeof(la);
        la.port = port;
        HY_CHECK_EQ(hy_spawn_opt(echo_listener, &la, &o, &pids[i]), 0);
        struct hy_msg *m = hy_test_must_recv_tag(TAG_PORT, 10 * SECOND);
        if (!m)
            return 0;
        port = (uint16_t)hy_test_payload_u32(m);
        hy_msg_free(m);
    }
    return port;
}

static void stop_all(hy_pid *pids, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        hy_exit_pid(pids[i], hy_reason_make(HY_REASON_KILL));
}

struct client_arg {
    uint16_t port;
    hy_pid parent;
    unsigned requests;
    bool pipelined;
};

static void fill_req(uint8_t *b, unsigned id, unsigned i)
{
    for (unsigned k = 0; k < 64; k++)
        b[k] = (uint8_t)(id * 31 + i * 7 + k);
}

static void echo_client(void *arg)
{
    struct client_arg *ca = arg;
    struct hy_addr a = hy_test_loopback(ca->port);
    struct hy_tcp *s;
    int rc = hy_tcp_connect(&a, NULL, 30 * SECOND, &s);
    HY_CHECK_EQ(rc, 0);
    unsigned id = (unsigned)hy_self().lo;
    uint32_t ok = 0;
    if (rc == 0) {
        uint8_t req[64], resp[64];
        if (ca->pipelined) {
            for (unsigned i = 0; i < ca->requests; i++) {
                fill_req(req, id, i);
                HY_CHECK_EQ(hy_tcp_send(s, req, 64, 30 * SECOND), 0);
            }
        }
        for (unsigned i = 0; i < ca->requests; i++) {
            fill_req(req, id, i);
            if (!ca->pipelined && hy_tcp_send(s, req, 64, 30 * SECOND) != 0)
                break;
            if (hy_tcp_recv_exact(s, resp, 64, NULL, 30 * SECOND) != 0)
                break;
            if (memcmp(req, resp, 64) == 0)
                ok++;
        }
        HY_CHECK_EQ(hy_tcp_close(s), 0);
    }
    hy_test_send_u32(ca->parent, TAG_DONE, ok);
}

struct echo_case {
    unsigned nshards;
    unsigned conns;
    unsigned requests;
    bool pipelined;
    size_t fds_in_use_peak;
};

static void echo_main(void *arg)
{
    struct echo_case *ec = arg;
    hy_pid l[8];
    uint16_t port = start_echo(l, ec->nshards);
    HY_CHECK(port != 0);
    struct client_arg ca = {port, hy_self(), ec->requests, ec->pipelined};
    for (unsigned i = 0; i < ec->conns; i++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)(i % ec->nshards);
        o.arg_size = sizeof(ca);
        HY_CHECK_EQ(hy_spawn_opt(echo_client, &ca, &o, NULL), 0);
    }
    for (unsigned i = 0; i < ec->conns; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(TAG_DONE, 120 * SECOND);
        if (!m)
            break;
        HY_CHECK_EQ(hy_test_payload_u32(m), ec->requests);
        hy_msg_free(m);
    }
    stop_all(l, ec->nshards);
}

static void test_tcp_echo_1000_conns_2_shards(void **state)
{
    (void)state;
    struct echo_case ec = {2, (unsigned)hy_test_scaled(1000), 5, false, 0};
    hy_test_run_fd_checked(2, echo_main, &ec);
}

static void test_tcp_echo_1000_conns_4_shards(void **state)
{
    (void)state;
    struct echo_case ec = {4, (unsigned)hy_test_scaled(1000), 5, false, 0};
    hy_test_run_fd_checked(4, echo_main, &ec);
}

static void test_tcp_echo_pipelined(void **state)
{
    (void)state;
    struct echo_case ec = {2, 20, (unsigned)hy_test_scaled(500), true, 0};
    hy_test_run_fd_checked(2, echo_main, &ec);
}

/* ---- refused, timed out, accept timeout ------------------------------------- */

struct rc_ctx {
    int refused, timed_out, accept_to, bad;
    uint64_t took_ns;
};

static void errors_main(void *arg)
{
    struct rc_ctx *c = arg;
    /* a port nobody listens on: bind one, learn it, close it */
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    /* accept with a timeout and nobody connecting */
    struct hy_tcp *x = NULL;
    c->accept_to = hy_tcp_accept(ls, &x, 20 * 1000000LL);
    hy_tcp_close(ls);
    c->refused = hy_tcp_connect(&a, NULL, 5 * SECOND, &x);

    /* a listener whose accept queue is full drops further SYNs: connect
     * then waits until its timeout */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct hy_addr b = hy_test_loopback(0);
    bind(lfd, (struct sockaddr *)&b.ss, b.len);
    listen(lfd, 0);
    b.len = sizeof(b.ss);
    getsockname(lfd, (struct sockaddr *)&b.ss, &b.len);
    struct hy_tcp *fillers[4] = {0};
    int rc = 0;
    unsigned nf = 0;
    uint64_t t0 = 0;
    for (; nf < 4; nf++) {
        t0 = hy_now_ns();
        rc = hy_tcp_connect(&b, NULL, 200 * 1000000LL, &fillers[nf]);
        if (rc)
            break;
    }
    c->took_ns = hy_now_ns() - t0;
    c->timed_out = rc;
    for (unsigned i = 0; i < nf; i++)
        hy_tcp_close(fillers[i]);
    close(lfd);
    c->bad = hy_tcp_connect(NULL, NULL, 0, &x);
}

static void test_tcp_connect_refused_timeout_accept_timeout(void **state)
{
    (void)state;
    struct rc_ctx c = {0};
    hy_test_run_fd_checked(1, errors_main, &c);
    assert_int_equal(c.accept_to, HY_ETIMEDOUT);
    assert_int_equal(c.refused, HY_ECONNREFUSED);
    assert_int_equal(c.timed_out, HY_ETIMEDOUT);
    assert_true(c.took_ns >= 200 * 1000000ull);
    assert_int_equal(c.bad, HY_EINVAL);
}

/* ---- a connected pair inside one test ------------------------------------- */

struct pair {
    struct hy_tcp *server, *client;
};

/* Makes a connected pair owned by the caller (with options for both). */
static int make_pair(struct pair *p, const struct hy_tcp_opts *o)
{
    struct hy_tcp_listen_opts lo;
    hy_tcp_listen_opts_init(&lo);
    if (o)
        lo.conn = *o;
    struct hy_tcp *ls;
    int rc = hy_tcp_listen(&lo, &ls);
    if (rc)
        return rc;
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    rc = hy_tcp_connect(&a, o, 5 * SECOND, &p->client);
    if (!rc)
        rc = hy_tcp_accept(ls, &p->server, 5 * SECOND);
    hy_tcp_close(ls);
    return rc;
}

/* make_pair with 4 KiB kernel buffers both ways: what a send can leave
 * waiting for the peer is small. */
static int make_small_pair(struct pair *p)
{
    struct hy_tcp_opts o;
    hy_tcp_opts_init(&o);
    o.sndbuf = 4096;
    o.rcvbuf = 4096;
    return make_pair(p, &o);
}

/* ---- a receive that a message ends (hy_tcp_recv_or_msg) ------------------- */

#define TAG_POKE 0x504f4b45u

struct ormsg_ctx {
    hy_pid waiter;
    _Atomic int in_recv;      /* the waiter is inside the call */
    int poked_in_recv;        /* the same-shard poker ran while it waited */
    int wake_rc, wake_tag_ok; /* a same-shard message during the wait */
    int queued_rc;            /* a message already in the mailbox */
    int data_rc;              /* bytes and a message: the bytes */
    size_t data_got;
    int plain_rc;             /* hy_tcp_recv is not ended by a message */
    int cross_rc;             /* a message from another shard during the wait */
    int line_rc;              /* framed (line) socket */
    int left_rc;              /* the message stayed in the mailbox: HY_EINTR again */
};

static void ormsg_poke(void *arg)
{
    struct ormsg_ctx *c = arg;
    /* same shard: runs only once the waiter parked */
    c->poked_in_recv = atomic_load(&c->in_recv);
    hy_test_send_tag(c->waiter, TAG_POKE);
}

static void ormsg_poke_far(void *arg)
{
    hy_pid to = *(hy_pid *)arg;
    hy_test_send_tag(to, TAG_POKE);
}

static int take_poke(void)
{
    struct hy_msg *m = NULL;
    int ok = hy_recv(&m, HY_NOWAIT) == 0 && m->tag == TAG_POKE;
    if (m)
        hy_msg_free(m);
    return ok;
}

static void ormsg_main(void *arg)
{
    struct ormsg_ctx *c = arg;
    c->waiter = hy_self();
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    char buf[16];
    size_t got = 99;

    /* woken while parked, by a process of the same shard */
    HY_CHECK_EQ(hy_spawn(ormsg_poke, c, NULL), 0);
    atomic_store(&c->in_recv, 1);
    c->wake_rc = hy_tcp_recv_or_msg(p.server, buf, sizeof(buf), &got, 30 * SECOND);
    atomic_store(&c->in_recv, 0);
    HY_CHECK_EQ(got, 0);
    c->wake_tag_ok = take_poke();

    /* a message left in the mailbox ends the next call at once, again */
    hy_test_send_tag(hy_self(), TAG_POKE);
    c->queued_rc = hy_tcp_recv_or_msg(p.server, buf, sizeof(buf), &got, 30 * SECOND);
    c->left_rc = hy_tcp_recv_or_msg(p.server, buf, sizeof(buf), &got, 30 * SECOND);

    /* bytes the socket is known to hold win over the message (still
     * queued): the first read of two bytes takes one, so the socket stays
     * readable for the second */
    HY_CHECK_EQ(hy_tcp_send(p.client, "xy", 2, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_recv_exact(p.server, buf, 1, &got, 10 * SECOND), 0);
    c->data_rc = hy_tcp_recv_or_msg(p.server, buf, sizeof(buf), &c->data_got, 30 * SECOND);
    HY_CHECK_EQ(take_poke(), 1);

    /* the plain receive ignores messages: it times out */
    hy_test_send_tag(hy_self(), TAG_POKE);
    c->plain_rc = hy_tcp_recv(p.server, buf, sizeof(buf), &got, 200 * 1000000LL);
    HY_CHECK_EQ(take_poke(), 1);

    /* woken by a message from another shard */
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.shard = 1;
    so.arg_size = sizeof(hy_pid);
    HY_CHECK_EQ(hy_spawn_opt(ormsg_poke_far, &c->waiter, &so, NULL), 0);
    c->cross_rc = hy_tcp_recv_or_msg(p.server, buf, sizeof(buf), &got, 30 * SECOND);
    HY_CHECK_EQ(take_poke(), 1);

    /* a framed socket, a partial line buffered: the message still ends it */
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_LINE, 0), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "ab", 2, SECOND), 0);
    HY_CHECK_EQ(hy_spawn_opt(ormsg_poke_far, &c->waiter, &so, NULL), 0);
    c->line_rc = hy_tcp_recv_or_msg(p.server, buf, sizeof(buf), &got, 30 * SECOND);
    HY_CHECK_EQ(take_poke(), 1);
    hy_tcp_close(p.client);
    hy_tcp_close(p.server);
}

static void test_tcp_recv_or_msg_ends_on_message(void **state)
{
    (void)state;
    struct ormsg_ctx c = {0};
    hy_test_run_fd_checked(2, ormsg_main, &c);
    assert_int_equal(c.poked_in_recv, 1);
    assert_int_equal(c.wake_rc, HY_EINTR);
    assert_int_equal(c.wake_tag_ok, 1);
    assert_int_equal(c.queued_rc, HY_EINTR);
    assert_int_equal(c.left_rc, HY_EINTR);
    assert_int_equal(c.data_rc, 0);
    assert_int_equal(c.data_got, 1);
    assert_int_equal(c.plain_rc, HY_ETIMEDOUT);
    assert_int_equal(c.cross_rc, HY_EINTR);
    assert_int_equal(c.line_rc, HY_EINTR);
}

/* ---- partial reads and writes with tiny buffers ---------------------------- */

#define BIG (1u << 20)

struct big_ctx {
    hy_pid parent;
    struct hy_tcp *sock;
    int send_rc;
    bool vectored; /* one hy_tcp_sendv of uneven pieces, empty ones among them */
};

static void big_sender(void *arg)
{
    struct big_ctx *bc = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    uint8_t *buf = malloc(BIG);
    for (unsigned i = 0; i < BIG; i++)
        buf[i] = (uint8_t)(i * 13 + (i >> 8));
    if (bc->vectored) {
        /* pieces of 0, 1, 7000, 0, 100003, ... bytes: a short first write
         * leaves the rest to be sent from the middle of some piece */
        static const size_t sizes[] = {0, 1, 7000, 0, 100003, 3, 65536, 0, 4096, 177};
        struct iovec v[48];
        size_t off = 0;
        int n = 0;
        for (; n < 47 && off < BIG; n++) {
            size_t len = sizes[n % 10];
            if (len > BIG - off)
                len = BIG - off;
            v[n] = (struct iovec){.iov_base = buf + off, .iov_len = len};
            off += len;
        }
        v[n++] = (struct iovec){.iov_base = buf + off, .iov_len = BIG - off};
        bc->send_rc = hy_tcp_sendv(s, v, n, 60 * SECOND);
    } else {
        bc->send_rc = hy_tcp_send(s, buf, BIG, 60 * SECOND);
    }
    if (getenv("TCPDEBUG"))
        fprintf(stderr, "send done rc=%d t=%llu\n", bc->send_rc, (unsigned long long)hy_now_ns());
    free(buf);
    hy_tcp_shutdown(s, SHUT_WR);
    hy_test_send_tag(bc->parent, TAG_DONE);
    hy_msg_free(hy_test_must_recv_tag(TAG_GO, 60 * SECOND));
}

struct partial_ctx {
    bool vectored;
    int send_rc;
    unsigned received, mismatches, reads;
    int end_rc;
};

static void partial_main(void *arg)
{
    struct partial_ctx *c = arg;
    struct pair p;
    HY_CHECK_EQ(make_small_pair(&p), 0);
    struct big_ctx bc = {hy_self(), NULL, -1, c->vectored};
    hy_pid snd;
    hy_spawn(big_sender, &bc, &snd);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, snd), 0);
    uint8_t chunk[333];
    for (;;) {
        size_t got;
        int rc = hy_tcp_recv(p.client, chunk, sizeof(chunk), &got, 60 * SECOND);
        if (rc) {
            c->end_rc = rc;
            break;
        }
        for (size_t k = 0; k < got; k++) {
            unsigned i = c->received + (unsigned)k;
            if (chunk[k] != (uint8_t)(i * 13 + (i >> 8)))
                c->mismatches++;
        }
        c->received += (unsigned)got;
        c->reads++;
    }
    if (getenv("TCPDEBUG"))
        fprintf(stderr, "recv loop ended rc=%d received=%u t=%llu\n", c->end_rc, c->received,
                (unsigned long long)hy_now_ns());
    struct hy_msg *m = hy_test_must_recv_tag(TAG_DONE, 60 * SECOND);
    hy_msg_free(m);
    c->send_rc = bc.send_rc;
    hy_test_send_tag(snd, TAG_GO);
    hy_tcp_close(p.client);
    if (getenv("TCPDEBUG")) {
        hy_sleep_ns(100000000);
        struct hy_stats t;
        hy_stats_total(&t);
        fprintf(stderr, "alive=%llu bufs=%llu socks=%llu\n", (unsigned long long)t.procs_alive,
                (unsigned long long)t.buffers_out, (unsigned long long)t.io_sockets);
    }
}

/* runs the transfer (plain or vectored send) and checks every byte arrived
 * once, in order, over more than one read, then the close */
static void check_partial(bool vectored)
{
    struct partial_ctx c = {.vectored = vectored};
    hy_test_run_fd_checked(1, partial_main, &c);
    assert_int_equal(c.send_rc, 0);
    assert_int_equal(c.received, BIG);
    assert_int_equal(c.mismatches, 0);
    assert_true(c.reads > 1);
    assert_int_equal(c.end_rc, HY_ECLOSED);
}

static void test_tcp_partial_reads_writes_tiny_buffers(void **state)
{
    (void)state;
    check_partial(false);
}

/* A vectored send that the kernel takes in many short writes: the rest is
 * resumed from the middle of a piece, empty pieces skipped, every byte once
 * and in order. */
static void test_tcp_sendv_partial_writes_tiny_buffers(void **state)
{
    (void)state;
    check_partial(true);
}

/* ---- one send attempt that never waits (hy_tcp_send_some) ------------------- */

struct some_ctx {
    int first_rc, einval_rc, einval2_rc;
    size_t first_sent, total, calls;
    bool stream_ok;
};

static void some_main(void *arg)
{
    struct some_ctx *c = arg;
    struct pair p;
    HY_CHECK_EQ(make_small_pair(&p), 0);
    size_t n = 1u << 20;
    uint8_t *buf = malloc(n), *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 7 + i / 251);
    c->total = n;
    /* three buffers; the kernel takes a part, the call returns at once */
    struct iovec v[3] = {{buf, 100}, {buf + 100, n / 2 - 100}, {buf + n / 2, n - n / 2}};
    c->first_rc = hy_tcp_send_some(p.server, v, 3, &c->first_sent);
    size_t sent = c->first_sent, got = 0;
    /* the rest, taking what the peer read out each time */
    while (got < n && c->calls < 100000) {
        if (sent < n) {
            struct iovec r = {buf + sent, n - sent};
            size_t k = 0;
            if (hy_tcp_send_some(p.server, &r, 1, &k) != 0)
                break;
            sent += k;
            c->calls++;
        }
        size_t k = 0;
        if (got < sent && hy_tcp_recv(p.client, in + got, n - got, &k, 5 * SECOND) != 0)
            break;
        got += k;
    }
    c->stream_ok = got == n && memcmp(in, buf, n) == 0;
    size_t k;
    c->einval_rc = hy_tcp_send_some(p.server, v, 3, NULL);
    c->einval2_rc = hy_tcp_send_some(p.server, v, 65, &k);
    free(buf);
    free(in);
    hy_tcp_close(p.client);
    hy_tcp_close(p.server);
}

static void test_tcp_send_some_takes_what_fits(void **state)
{
    (void)state;
    struct some_ctx c = {0};
    hy_test_run_fd_checked(1, some_main, &c);
    assert_int_equal(c.first_rc, 0);
    assert_true(c.first_sent > 0 && c.first_sent < c.total); /* 4 KiB buffers, 1 MiB */
    assert_true(c.stream_ok);
    assert_int_equal(c.einval_rc, HY_EINVAL);
    assert_int_equal(c.einval2_rc, HY_EINVAL);
}

/* ---- bytes not yet taken by the kernel (hy_tcp_unsent) ------------------------ */

struct unsent_ctx {
    bool uring;
    size_t before, after_send, after_read, full, drained;
    bool read_ok;
};

static bool unsent_zero(void *arg)
{
    return hy_tcp_unsent(arg) == 0;
}

static void unsent_main(void *arg)
{
    struct unsent_ctx *c = arg;
    struct pair p;
    HY_CHECK_EQ(make_small_pair(&p), 0);
    static uint8_t buf[4096], in[32768];
    memset(buf, 'u', sizeof(buf));
    c->before = hy_tcp_unsent(p.server);
    HY_CHECK_EQ(hy_tcp_send(p.server, buf, 1000, SECOND), 0);
    c->after_send = hy_tcp_unsent(p.server);
    size_t got = 0, k = 0;
    while (got < 1000 && hy_tcp_recv(p.client, in + got, 1000 - got, &k, 5 * SECOND) == 0)
        got += k;
    c->read_ok = got == 1000;
    if (!c->read_ok)
        fprintf(stderr, "unsent test: first read %zu\n", got);
    /* the send's end is reaped at the latest a turn after the bytes came */
    HY_CHECK(hy_test_wait_until(unsent_zero, p.server, 5000));
    c->after_read = hy_tcp_unsent(p.server);
    /* io_uring: the peer does not read, the kernel's buffers fill (~14 KiB
     * with these sizes), the rest waits in the socket's queue; sent until
     * some waits (a send beyond the queue's buffer while a request is in
     * flight would wait for room). epoll: the caller would wait for room */
    size_t sent = 0;
    for (int i = 0; c->uring && i < 64 && hy_tcp_unsent(p.server) == 0; i++) {
        if (hy_tcp_send(p.server, buf, 4096, SECOND) != 0)
            break;
        sent += 4096;
        hy_yield(); /* submitted */
    }
    c->full = hy_tcp_unsent(p.server);
    got = 0;
    while (got < sent && hy_tcp_recv(p.client, in, sizeof(in), &k, 5 * SECOND) == 0)
        got += k;
    if (got != sent)
        fprintf(stderr, "unsent test: read %zu of %zu\n", got, sent);
    c->read_ok = c->read_ok && got == sent;
    HY_CHECK(hy_test_wait_until(unsent_zero, p.server, 5000));
    c->drained = hy_tcp_unsent(p.server);
    HY_CHECK_EQ(hy_tcp_unsent(NULL), 0);
    hy_tcp_close(p.client);
    hy_tcp_close(p.server);
}

/* What another writer of the descriptor needs to know before it writes
 * (kvcache's owners answer on a duplicate): the bytes sends returned 0 for
 * that the kernel has not taken. */
static void test_tcp_unsent_counts_what_the_kernel_has_not_taken(void **state)
{
    (void)state;
    struct unsent_ctx c;
    memset(&c, 0, sizeof(c));
    c.uring = hy_test_io_backend() != HY_IO_EPOLL;
    hy_test_run_fd_checked(1, unsent_main, &c);
    hy_test_assert_checks();
    assert_true(c.read_ok);
    assert_int_equal(c.before, 0);
    assert_int_equal(c.after_read, 0);
    assert_int_equal(c.drained, 0);
    if (c.uring) {
        /* queued for the turn's submission, or sent by the call itself
         * (the poller's queue is not used for every send) */
        assert_true(c.after_send == 0 || c.after_send == 1000);
        assert_true(c.full > 0); /* 4 KiB buffers: part of 32 KiB waits */
    } else {
        assert_int_equal(c.after_send, 0); /* epoll: the caller sent it */
        assert_int_equal(c.full, 0);
    }
}

/* ---- peer closes mid-send; reset; half-close -------------------------------- */

struct close_ctx {
    int send_rc, reset_rc, half_rc, half_reply_rc, after_rc;
    char reply[8];
};

static void close_main(void *arg)
{
    struct close_ctx *c = arg;
    struct pair p;
    /* the peer reads a little then closes while we are sending 8 MiB */
    HY_CHECK_EQ(make_small_pair(&p), 0);
    uint8_t tmp[100];
    size_t got;
    size_t n = 8u << 20;
    uint8_t *buf = calloc(1, n);
    struct big_ctx bc = {hy_self(), NULL, -1};
    (void)bc;
    HY_CHECK_EQ(hy_tcp_send(p.server, buf, 1000, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_recv(p.client, tmp, sizeof(tmp), &got, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_close(p.client), 0);
    c->send_rc = hy_tcp_send(p.server, buf, n, 10 * SECOND);
    free(buf);
    hy_tcp_close(p.server);

    /* reset: SO_LINGER 0 then close sends RST */
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    struct linger lg = {1, 0};
    setsockopt(hy_tcp_fd(p.client), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    hy_tcp_close(p.client);
    c->reset_rc = hy_tcp_recv(p.server, tmp, sizeof(tmp), &got, 5 * SECOND);
    hy_tcp_close(p.server);

    /* half-close: the client shuts its side, still gets the reply */
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "ping", 4, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_shutdown(p.client, SHUT_WR), 0);
    char in[8];
    size_t have;
    HY_CHECK_EQ(hy_tcp_recv_exact(p.server, in, 4, &have, 5 * SECOND), 0);
    c->half_rc = hy_tcp_recv(p.server, in, sizeof(in), &got, 5 * SECOND);
    HY_CHECK_EQ(hy_tcp_send(p.server, "pong", 4, SECOND), 0);
    hy_tcp_close(p.server);
    c->half_reply_rc = hy_tcp_recv_exact(p.client, c->reply, 4, &have, 5 * SECOND);
    c->after_rc = hy_tcp_recv(p.client, in, sizeof(in), &got, 5 * SECOND);
    hy_tcp_close(p.client);
}

static void test_tcp_peer_close_reset_half_close(void **state)
{
    (void)state;
    struct close_ctx c = {0};
    hy_test_run_fd_checked(1, close_main, &c);
    assert_true(c.send_rc == HY_ECONNRESET || c.send_rc == HY_ECLOSED);
    assert_int_equal(c.reset_rc, HY_ECONNRESET);
    assert_int_equal(c.half_rc, HY_ECLOSED);
    assert_int_equal(c.half_reply_rc, 0);
    assert_memory_equal(c.reply, "pong", 4);
    assert_int_equal(c.after_rc, HY_ECLOSED);
}

/* ---- active mode: once/N with a slow consumer ------------------------------- */

struct active_ctx {
    uint64_t bytes;
    size_t max_mailbox;
    unsigned passives, datas;
    bool closed;
};

static void flood(void *arg)
{
    struct big_ctx *bc = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    static uint8_t buf[65536];
    memset(buf, 'x', sizeof(buf));
    for (unsigned i = 0; i < 64; i++)
        if (hy_tcp_send(s, buf, sizeof(buf), 60 * SECOND) != 0)
            break;
    hy_tcp_close(s);
    (void)bc;
}

static void active_main(void *arg)
{
    struct active_ctx *c = arg;
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    hy_pid f;
    hy_spawn(flood, NULL, &f);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, f), 0);
    /* N mode (4 at a time) for ten rounds, then once mode */
    HY_CHECK_EQ(hy_tcp_set_active(p.client, 4), 0);
    bool once = false;
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, 30 * SECOND) != 0)
            break;
        size_t ml = hy_mailbox_len();
        if (ml > c->max_mailbox)
            c->max_mailbox = ml;
        const struct hy_tcp_msg *t = hy_tcp_msg_of(m);
        if (!t) {
            hy_msg_free(m);
            continue;
        }
        HY_CHECK(t->sock == p.client);
        uint64_t tag = m->tag;
        if (tag == HY_TCP_TAG_DATA) {
            c->bytes += t->len;
            c->datas++;
        }
        hy_msg_free(m);
        if (tag == HY_TCP_TAG_CLOSED) {
            c->closed = true;
            break;
        }
        if (tag == HY_TCP_TAG_PASSIVE) {
            c->passives++;
            hy_sleep_ns(200000); /* a slow consumer */
            once = c->passives >= 10;
            HY_CHECK_EQ(hy_tcp_set_active(p.client, once ? HY_TCP_ACTIVE_ONCE : 4), 0);
        } else if (tag == HY_TCP_TAG_DATA && once) {
            HY_CHECK_EQ(hy_tcp_set_active(p.client, HY_TCP_ACTIVE_ONCE), 0);
        }
    }
    hy_tcp_close(p.client);
}

static void test_tcp_active_once_n_flow_control(void **state)
{
    (void)state;
    struct active_ctx c = {0};
    hy_test_run_fd_checked(1, active_main, &c);
    assert_int_equal(c.bytes, 64u * 65536u);
    assert_true(c.closed);
    assert_true(c.passives > 0);
    /* flow control: never more than the N granted (plus PASSIVE) queued */
    assert_true(c.max_mailbox <= 5);
}

/* ---- socket records reused after a close ---------------------------------- */

struct reuse_ctx {
    int reused;          /* the new server socket has the closed one's record */
    int empty_rc;        /* a receive with nothing sent: HY_ETIMEDOUT */
    int recv_rc;         /* the peer's bytes */
    size_t got;
    char buf[16];
    int echo_rc;         /* and a send back */
    size_t echo_got;
};

static void reuse_main(void *arg)
{
    struct reuse_ctx *c = arg;
    /* A socket left with every kind of state: line framing, active once,
     * an incomplete line buffered, the peer's end read. */
    struct hy_tcp_opts o;
    hy_tcp_opts_init(&o);
    o.packet = HY_TCP_PACKET_LINE;
    o.active = HY_TCP_ACTIVE_ONCE;
    struct pair a;
    HY_CHECK_EQ(make_pair(&a, &o), 0);
    struct hy_tcp_listen_opts lo;
    hy_tcp_listen_opts_init(&lo);
    struct hy_tcp *spare;
    HY_CHECK_EQ(hy_tcp_listen(&lo, &spare), 0);
    HY_CHECK_EQ(hy_tcp_send(a.client, "abc", 3, 5 * SECOND), 0);
    HY_CHECK_EQ(hy_tcp_close(a.client), 0);
    a.client = NULL;
    /* the server's active-once socket: the half line, then the end */
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv(&m, 5 * SECOND), 0);
    const struct hy_tcp_msg *t = hy_tcp_msg_of(m);
    HY_CHECK(t && m->tag == HY_TCP_TAG_CLOSED);
    hy_msg_free(m);
    /* freed last first: spare, then the other two; the next pair's
     * listener, client and server take them in that order */
    struct hy_tcp *old = a.server;
    struct hy_tcp *other;
    HY_CHECK_EQ(hy_tcp_listen(&lo, &other), 0);
    HY_CHECK_EQ(hy_tcp_close(a.server), 0);
    HY_CHECK_EQ(hy_tcp_close(other), 0);
    HY_CHECK_EQ(hy_tcp_close(spare), 0);
    /* a raw passive pair: nothing of the old socket may show */
    struct pair b;
    HY_CHECK_EQ(make_pair(&b, NULL), 0);
    c->reused = b.server == old || b.client == old;
    struct hy_tcp *s = b.server == old ? b.server : b.client;
    struct hy_tcp *peer = s == b.server ? b.client : b.server;
    size_t got = 99;
    c->empty_rc = hy_tcp_recv(s, c->buf, sizeof(c->buf), &got, 0);
    HY_CHECK_EQ(hy_tcp_send(peer, "xyz", 3, 5 * SECOND), 0);
    c->recv_rc = hy_tcp_recv(s, c->buf, sizeof(c->buf), &c->got, 5 * SECOND);
    HY_CHECK_EQ(hy_tcp_send(s, "pong", 4, 5 * SECOND), 0);
    char back[8];
    c->echo_rc = hy_tcp_recv_exact(peer, back, 4, &c->echo_got, 5 * SECOND);
    if (c->echo_rc == 0 && memcmp(back, "pong", 4) != 0)
        c->echo_rc = -1000;
    hy_tcp_close(b.server);
    hy_tcp_close(b.client);
}

/* A closed socket's record goes back to its shard's slab and the next
 * socket gets it (io.c): nothing of the old one (framing, active mode,
 * buffered bytes, the end of stream) may reach the new one. */
static void test_tcp_record_reused_after_close_starts_clean(void **state)
{
    (void)state;
    struct reuse_ctx c = {0};
    hy_test_run_fd_checked(1, reuse_main, &c);
    assert_true(c.reused);
    assert_int_equal(c.empty_rc, HY_ETIMEDOUT);
    assert_int_equal(c.recv_rc, 0);
    assert_int_equal(c.got, 3);
    assert_memory_equal(c.buf, "xyz", 3);
    assert_int_equal(c.echo_rc, 0);
    assert_int_equal(c.echo_got, 4);
}

/* ---- framing ---------------------------------------------------------------- */

struct frame_ctx {
    int lines_ok, len_ok, oversize_rc, active_oversize_err, line_oversize_rc;
    char line2[32];
};

static void frame_main(void *arg)
{
    struct frame_ctx *c = arg;
    struct pair p;
    struct hy_tcp_opts o;
    hy_tcp_opts_init(&o);
    HY_CHECK_EQ(make_pair(&p, &o), 0);
    /* lines, split awkwardly across sends */
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_LINE, 64), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "hello\nwor", 9, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "ld\n", 3, SECOND), 0);
    char b[128];
    size_t got;
    if (hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND) == 0 && got == 6 &&
        memcmp(b, "hello\n", 6) == 0)
        c->lines_ok++;
    if (hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND) == 0 && got == 6 &&
        memcmp(b, "world\n", 6) == 0)
        c->lines_ok++;
    /* a line longer than 64 bytes without a newline */
    memset(b, 'a', sizeof(b));
    HY_CHECK_EQ(hy_tcp_send(p.client, b, 100, SECOND), 0);
    c->line_oversize_rc = hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND);
    hy_tcp_close(p.server);
    hy_tcp_close(p.client);

    /* 2-byte length prefix; then an oversize one */
    HY_CHECK_EQ(make_pair(&p, &o), 0);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_2, 1000), 0);
    uint8_t pk[] = {0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'z'};
    HY_CHECK_EQ(hy_tcp_send(p.client, pk, sizeof(pk), SECOND), 0);
    if (hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND) == 0 && got == 3 &&
        memcmp(b, "abc", 3) == 0)
        c->len_ok++;
    if (hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND) == 0 && got == 0)
        c->len_ok++;
    if (hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND) == 0 && got == 1 && b[0] == 'z')
        c->len_ok++;
    uint8_t huge[] = {0xff, 0xff, 1, 2, 3};
    HY_CHECK_EQ(hy_tcp_send(p.client, huge, sizeof(huge), SECOND), 0);
    c->oversize_rc = hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND);
    hy_tcp_close(p.server);
    hy_tcp_close(p.client);

    /* 4-byte prefix in active mode, oversize: an ERROR message */
    HY_CHECK_EQ(make_pair(&p, &o), 0);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_4, 16), 0);
    HY_CHECK_EQ(hy_tcp_set_active(p.server, HY_TCP_ACTIVE_ALWAYS), 0);
    uint8_t p4[] = {0, 0, 0, 2, 'o', 'k', 0, 0, 1, 0};
    HY_CHECK_EQ(hy_tcp_send(p.client, p4, sizeof(p4), SECOND), 0);
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_DATA, 5 * SECOND);
    if (m) {
        const struct hy_tcp_msg *t = hy_tcp_msg_of(m);
        if (t->len == 2 && memcmp(t->data, "ok", 2) == 0)
            c->len_ok++;
        hy_msg_free(m);
    }
    m = hy_test_must_recv_tag(HY_TCP_TAG_ERROR, 5 * SECOND);
    if (m) {
        c->active_oversize_err = hy_tcp_msg_of(m)->err;
        hy_msg_free(m);
    }
    hy_tcp_close(p.server);
    hy_tcp_close(p.client);
}

static void test_tcp_framing_line_length_oversize(void **state)
{
    (void)state;
    struct frame_ctx c = {0};
    hy_test_run_fd_checked(1, frame_main, &c);
    assert_int_equal(c.lines_ok, 2);
    assert_int_equal(c.line_oversize_rc, HY_EMSGSIZE);
    assert_int_equal(c.len_ok, 4);
    assert_int_equal(c.oversize_rc, HY_EMSGSIZE);
    assert_int_equal(c.active_oversize_err, HY_EMSGSIZE);
}

/* ---- ownership handed across shards ------------------------------------------ */

struct hand_ctx {
    hy_pid parent;
    int on_shard;
    char got[16];
    int rc;
};

static void hand_receiver(void *arg)
{
    struct hand_ctx *hc = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    hc->on_shard = hy_shard_id();
    size_t have = 0;
    /* 3 bytes were already buffered by the old owner (framed read), the
     * rest arrives here */
    hc->rc = hy_tcp_recv_exact(s, hc->got, 8, &have, 10 * SECOND);
    hy_tcp_send(s, "ack", 3, SECOND);
    hy_test_send_tag(hc->parent, TAG_DONE);
    hy_msg_free(hy_test_must_recv_tag(TAG_GO, 10 * SECOND));
}

struct handover_ctx {
    struct hand_ctx hc;
    int ack_rc;
    int perm_rc;
};

static void handover_main(void *arg)
{
    struct handover_ctx *c = arg;
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    /* leave bytes in the socket's own buffer: a line read leaves "def" */
    HY_CHECK_EQ(hy_tcp_send(p.client, "abc\ndef", 7, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_LINE, 0), 0);
    char b[16];
    size_t got;
    HY_CHECK_EQ(hy_tcp_recv(p.server, b, sizeof(b), &got, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_RAW, 0), 0);
    c->hc.parent = hy_self();
    hy_pid r;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(hand_receiver, &c->hc, &o, &r), 0);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, r), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "ghijk", 5, SECOND), 0);
    char ack[3];
    c->ack_rc = hy_tcp_recv_exact(p.client, ack, 3, NULL, 10 * SECOND);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 10 * SECOND));
    hy_test_send_tag(r, TAG_GO);
    hy_tcp_close(p.client);
}

static void test_tcp_handover_across_shards(void **state)
{
    (void)state;
    struct handover_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(2, handover_main, &c);
    assert_int_equal(c.hc.rc, 0);
    assert_int_equal(c.hc.on_shard, 1);
    assert_memory_equal(c.hc.got, "defghijk", 8);
    assert_int_equal(c.ack_rc, 0);
}

/* ---- a handover still in flight when the runtime stops ----------------------- */

static void wait_forever(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    hy_recv_tag(0x6e657665u, &m, HY_INFINITY); /* never sent */
}

/* The main process hands sockets to a process on the other shard and
 * returns at once, so the runtime stops with the handovers in a ring, in an
 * overflow queue or just taken: every descriptor is closed either way (the
 * fd count before and after the run must match). */
static void handover_stop_main(void *arg)
{
    unsigned rounds = *(unsigned *)arg;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_pid r;
    HY_CHECK_EQ(hy_spawn_opt(wait_forever, NULL, &o, &r), 0);
    for (unsigned i = 0; i < rounds; i++) {
        struct pair p;
        HY_CHECK_EQ(make_pair(&p, NULL), 0);
        HY_CHECK_EQ(hy_tcp_controlling_process(p.server, r), 0);
        HY_CHECK_EQ(hy_tcp_controlling_process(p.client, r), 0);
    }
}

static void test_tcp_handover_in_flight_at_stop_closes(void **state)
{
    (void)state;
    for (unsigned rounds = 1; rounds <= 64; rounds *= 4) {
        int before = hy_test_fd_count();
        struct hy_config cfg;
        hy_config_init(&cfg);
        cfg.nshards = 2;
        cfg.io_backend = hy_test_io_backend();
        assert_int_equal(hy_run(&cfg, handover_stop_main, &rounds), 0);
        hy_test_assert_checks();
        assert_int_equal(hy_test_fd_count(), before);
    }
}

/* ---- owners that die while blocked ------------------------------------------- */

static void blocked_reader(void *arg)
{
    struct hy_tcp **slot = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    *slot = s;
    char b[16];
    size_t got;
    hy_tcp_recv(s, b, sizeof(b), &got, HY_INFINITY);
    hy_panic("crashing with its socket open");
}

struct die_ctx {
    int eof_kill, eof_crash;
    size_t socks_after;
};

static int wait_eof(struct hy_tcp *c)
{
    char b[4];
    size_t got;
    return hy_tcp_recv(c, b, sizeof(b), &got, 10 * SECOND);
}

static void die_main(void *arg)
{
    struct die_ctx *c = arg;
    hy_trap_exit(true, NULL);
    /* killed while blocked in recv: its socket is closed, the peer sees EOF */
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    struct hy_tcp *slot = NULL;
    hy_pid r;
    hy_spawn(blocked_reader, &slot, &r);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, r), 0);
    while (!slot)
        hy_yield();
    hy_yield();
    hy_exit_pid(r, hy_reason_make(HY_REASON_KILL));
    c->eof_kill = wait_eof(p.client);
    hy_tcp_close(p.client);

    /* crashes after its recv returns with data */
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    slot = NULL;
    hy_spawn(blocked_reader, &slot, &r);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, r), 0);
    while (!slot)
        hy_yield();
    hy_tcp_send(p.client, "x", 1, SECOND);
    c->eof_crash = wait_eof(p.client);
    hy_tcp_close(p.client);
    c->socks_after = hy_tcp_count();
}

static void test_tcp_owner_killed_or_crashing_in_recv(void **state)
{
    (void)state;
    struct die_ctx c = {0};
    hy_test_run_fd_checked(1, die_main, &c);
    assert_int_equal(c.eof_kill, HY_ECLOSED);
    assert_int_equal(c.eof_crash, HY_ECLOSED);
    assert_int_equal(c.socks_after, 0);
}

/* ---- connect/close cycles --------------------------------------------------- */

struct cycle_ctx {
    unsigned ok;
    int fds_mid_before, fds_mid_after;
};

static void cycle_main(void *arg)
{
    struct cycle_ctx *c = arg;
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    unsigned n = (unsigned)hy_test_scaled(10000);
    c->fds_mid_before = hy_test_fd_count();
    for (unsigned i = 0; i < n; i++) {
        struct hy_tcp *cl, *sv;
        if (hy_tcp_connect(&a, NULL, 5 * SECOND, &cl) != 0)
            continue;
        if (hy_tcp_accept(ls, &sv, 5 * SECOND) == 0) {
            c->ok++;
            hy_tcp_close(sv);
        }
        hy_tcp_close(cl);
    }
    hy_yield(); /* io_uring: the last poll removals reach the kernel */
    c->fds_mid_after = hy_test_fd_count();
    hy_tcp_close(ls);
}

static void test_tcp_connect_close_cycles_no_fd_leak(void **state)
{
    (void)state;
    struct cycle_ctx c = {0};
    hy_test_run_fd_checked(1, cycle_main, &c);
    assert_int_equal(c.ok, (unsigned)hy_test_scaled(10000));
    assert_int_equal(c.fds_mid_after, c.fds_mid_before);
}

/* ---- compact stacks ---------------------------------------------------------- */

struct compact_ctx {
    hy_pid parent;
    uint16_t port;
    unsigned ok;
};

static void compact_client(void *arg)
{
    struct compact_ctx *cc = arg;
    struct hy_addr a = hy_test_loopback(cc->port);
    struct hy_tcp *s;
    uint32_t ok = 0;
    if (hy_tcp_connect(&a, NULL, 10 * SECOND, &s) == 0) {
        for (unsigned i = 0; i < 50; i++) {
            uint8_t req[64], resp[64]; /* on the shared compact stack */
            fill_req(req, (unsigned)hy_self().lo, i);
            if (hy_tcp_send(s, req, 64, 10 * SECOND) != 0 ||
                hy_tcp_recv_exact(s, resp, 64, NULL, 10 * SECOND) != 0)
                break;
            ok += memcmp(req, resp, 64) == 0;
        }
        hy_tcp_close(s);
    }
    hy_test_send_u32(cc->parent, TAG_DONE, ok);
}

static void compact_main(void *arg)
{
    struct compact_ctx *cc = arg;
    hy_pid l[1];
    cc->port = start_echo(l, 1);
    cc->parent = hy_self();
    for (unsigned i = 0; i < 20; i++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.stack_mode = HY_STACK_COMPACT;
        HY_CHECK_EQ(hy_spawn_opt(compact_client, cc, &o, NULL), 0);
    }
    for (unsigned i = 0; i < 20; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(TAG_DONE, 60 * SECOND);
        if (!m)
            break;
        cc->ok += hy_test_payload_u32(m);
        hy_msg_free(m);
    }
    stop_all(l, 1);
}

static void test_tcp_compact_stack_buffers(void **state)
{
    (void)state;
    struct compact_ctx c = {0};
    hy_test_run_fd_checked(1, compact_main, &c);
    assert_int_equal(c.ok, 20 * 50);
}

/* ---- misuse ------------------------------------------------------------------ */

struct misuse_ctx {
    int not_owner, active_recv, bad_active, bad_packet;
};

static void not_owner(void *arg)
{
    struct misuse_ctx *c = ((void **)arg)[0];
    struct hy_tcp *s = ((void **)arg)[1];
    c->not_owner = hy_tcp_send(s, "x", 1, 0);
}

static void misuse_main(void *arg)
{
    struct misuse_ctx *c = arg;
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    void *args[2] = {c, p.client};
    hy_pid x;
    hy_ref mref;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.monitor = true;
    o.monitor_ref = &mref;
    hy_spawn_opt(not_owner, args, &o, &x);
    hy_msg_free(hy_test_must_recv_tag(HY_TAG_DOWN, 5 * SECOND));
    hy_tcp_set_active(p.client, HY_TCP_ACTIVE_ALWAYS);
    char b[4];
    size_t got;
    c->active_recv = hy_tcp_recv(p.client, b, sizeof(b), &got, 0);
    c->bad_active = hy_tcp_set_active(p.client, -7);
    c->bad_packet = hy_tcp_set_packet(p.client, (enum hy_tcp_packet)9, 0);
    hy_tcp_close(p.client);
    hy_tcp_close(p.server);
}

static void test_tcp_misuse_errors(void **state)
{
    (void)state;
    struct misuse_ctx c = {0};
    hy_test_run_fd_checked(1, misuse_main, &c);
    assert_int_equal(c.not_owner, HY_EPERM);
    assert_int_equal(c.active_recv, HY_EBUSY);
    assert_int_equal(c.bad_active, HY_EINVAL);
    assert_int_equal(c.bad_packet, HY_EINVAL);
}

/* ---- receives made by the poller for a parked process ------------------------ */

#define TAG_MOVED 0x4d4f5645u
#define RX_POOL 1024 /* the shard's pool of receive buffers (core/io_uring.c) */
#define RX_PAIRS (RX_POOL + 6) /* more than that */

struct rx_ctx {
    hy_pid parent;
    uint64_t recvs0, recvs1;
    int partial_ok, line_ok, line2_ok, active_ok, moved_ok, eof_ok, pool_ok;
    char moved[8];
};

static uint64_t io_recvs(void)
{
    struct hy_stats st;
    hy_stats_get(hy_shard_id(), &st);
    return st.io_recvs;
}

struct recvs_above {
    uint64_t n;
};

static bool recvs_reached(void *arg)
{
    return io_recvs() >= ((struct recvs_above *)arg)->n;
}

/* Parks in a receive that times out: with io_uring it leaves a receive
 * armed in the poller (the next bytes are taken by it). */
static void arm(struct hy_tcp *s)
{
    char b[4];
    size_t got;
    HY_CHECK_EQ(hy_tcp_recv(s, b, sizeof(b), &got, 2000000), HY_ETIMEDOUT);
}

/* With io_uring, waits until the poller's receive took the bytes sent (so
 * that the test reads them from the buffer the socket holds). */
static void wait_recvs(uint64_t n)
{
    if (hy_test_io_backend() == HY_IO_EPOLL)
        return;
    struct recvs_above r = {n};
    HY_CHECK(hy_test_wait_until(recvs_reached, &r, 10000));
}

static void rx_mover(void *arg)
{
    struct rx_ctx *c = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    size_t have = 0;
    c->moved_ok = hy_tcp_recv_exact(s, c->moved, 6, &have, 10 * SECOND) == 0 &&
                  hy_shard_id() == 1;
    hy_tcp_close(s);
    hy_test_send_tag(c->parent, TAG_MOVED);
}

static void rx_main(void *arg)
{
    struct rx_ctx *c = arg;
    c->parent = hy_self();
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    char b[64];
    size_t got = 0;
    bool uring = hy_test_io_backend() != HY_IO_EPOLL;
    c->recvs0 = io_recvs();
    /* the bytes of one receive taken in two reads, in order */
    arm(p.server);
    HY_CHECK_EQ(hy_tcp_send(p.client, "hello world", 11, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_recv(p.server, b, 5, &got, 10 * SECOND), 0);
    c->partial_ok = got == 5 && !memcmp(b, "hello", 5);
    HY_CHECK_EQ(hy_tcp_recv(p.server, b, sizeof(b), &got, 10 * SECOND), 0);
    c->partial_ok &= got == 6 && !memcmp(b, " world", 6);
    /* framing switched on with the bytes held by the socket */
    uint64_t r = io_recvs();
    arm(p.server);
    HY_CHECK_EQ(hy_tcp_send(p.client, "ab\ncd\n", 6, SECOND), 0);
    wait_recvs(r + 1);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_LINE, 0), 0);
    c->line_ok = hy_tcp_recv(p.server, b, sizeof(b), &got, 10 * SECOND) == 0 && got == 3 &&
                 !memcmp(b, "ab\n", 3);
    c->line_ok &= hy_tcp_recv(p.server, b, sizeof(b), &got, 10 * SECOND) == 0 && got == 3 &&
                  !memcmp(b, "cd\n", 3);
    /* ... and with a receive armed, before any byte */
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_RAW, 0), 0);
    arm(p.server);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_LINE, 0), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "ef\n", 3, SECOND), 0);
    c->line2_ok = hy_tcp_recv(p.server, b, sizeof(b), &got, 10 * SECOND) == 0 && got == 3 &&
                  !memcmp(b, "ef\n", 3);
    HY_CHECK_EQ(hy_tcp_set_packet(p.server, HY_TCP_PACKET_RAW, 0), 0);
    /* active mode with a receive armed */
    arm(p.server);
    HY_CHECK_EQ(hy_tcp_set_active(p.server, HY_TCP_ACTIVE_ONCE), 0);
    HY_CHECK_EQ(hy_tcp_send(p.client, "xyz", 3, SECOND), 0);
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_DATA, 10 * SECOND);
    c->active_ok = m && hy_tcp_msg_of(m)->len == 3 && !memcmp(hy_tcp_msg_of(m)->data, "xyz", 3);
    hy_msg_free(m);
    /* a move to another shard with the bytes held */
    arm(p.server);
    r = io_recvs();
    HY_CHECK_EQ(hy_tcp_send(p.client, "moved!", 6, SECOND), 0);
    wait_recvs(r + 1);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_pid mv;
    HY_CHECK_EQ(hy_spawn_opt(rx_mover, c, &o, &mv), 0);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, mv), 0);
    hy_msg_free(hy_test_must_recv_tag(TAG_MOVED, 10 * SECOND));
    hy_tcp_close(p.client);
    /* the end of the stream while a receive is armed */
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    arm(p.server);
    hy_tcp_close(p.client);
    c->eof_ok = hy_tcp_recv(p.server, b, sizeof(b), &got, 10 * SECOND) == HY_ECLOSED;
    hy_tcp_close(p.server);
    /* more parked sockets than the pool has buffers: no more receives are
     * armed than that, the rest read with recv, nothing is lost */
    static struct pair ps[RX_PAIRS];
    for (int i = 0; i < RX_PAIRS; i++)
        HY_CHECK_EQ(make_pair(&ps[i], NULL), 0);
    for (int i = 0; i < RX_PAIRS; i++)
        arm(ps[i].server);
    r = io_recvs();
    for (int i = 0; i < RX_PAIRS; i++)
        HY_CHECK_EQ(hy_tcp_send(ps[i].client, &(char){(char)i}, 1, SECOND), 0);
    wait_recvs(r + RX_POOL);
    c->pool_ok = 1;
    for (int i = 0; i < RX_PAIRS; i++) {
        char x = -1;
        if (hy_tcp_recv(ps[i].server, &x, 1, &got, 10 * SECOND) != 0 || x != (char)i)
            c->pool_ok = 0;
        hy_tcp_close(ps[i].server);
        hy_tcp_close(ps[i].client);
    }
    c->recvs1 = io_recvs();
    (void)uring;
}

static void test_tcp_recv_through_the_poller(void **state)
{
    (void)state;
    struct rx_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(2, rx_main, &c);
    hy_test_assert_checks();
    assert_true(c.partial_ok);
    assert_true(c.line_ok);
    assert_true(c.line2_ok);
    assert_true(c.active_ok);
    assert_true(c.moved_ok);
    assert_memory_equal(c.moved, "moved!", 6);
    assert_true(c.eof_ok);
    assert_true(c.pool_ok);
    print_message("receives by the poller: %llu\n", (unsigned long long)(c.recvs1 - c.recvs0));
    if (hy_test_io_backend() == HY_IO_EPOLL)
        assert_int_equal(c.recvs1 - c.recvs0, 0);
    else /* the first read, the held lines, the move, the whole pool */
        assert_true(c.recvs1 - c.recvs0 >= RX_POOL + 3);
}

/* ---- sends through the poller (io_uring: queued, one submission a turn) ---- */

struct tx_ctx {
    hy_pid parent;
    atomic_int stop;   /* ends the yielder */
    struct hy_tcp *rd; /* the reader's socket */
    size_t expect;     /* bytes the reader must see, then the end */
    size_t got;
    int mismatches, end_rc;
    uint64_t sends0, sends1;
    int order_ok, close_ok, exit_ok, never_rc, never_prefix_ok, never_end_rc;
    size_t never_sent, never_read;
    int reset_first_rc, reset_rc, reset_after_rc, reset_queued;
};

static uint64_t io_sends(void)
{
    struct hy_stats st;
    hy_stats_get(hy_shard_id(), &st);
    return st.io_sends;
}

/* Keeps another process ready on the shard, so that a send is queued for
 * the turn's submission instead of going to the kernel at once. */
static void tx_yielder(void *arg)
{
    struct tx_ctx *c = arg;
    uint64_t deadline = hy_now_ns() + 30 * SECOND;
    while (!atomic_load(&c->stop) && hy_now_ns() < deadline)
        hy_yield();
}

static uint8_t pat(size_t i)
{
    return (uint8_t)(i % 251);
}

/* Reads c->rd to its end, checking the pattern, then tells the parent. */
static void tx_reader(void *arg)
{
    struct tx_ctx *c = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    hy_msg_free(m);
    static uint8_t buf[8192];
    c->got = 0;
    c->mismatches = 0;
    for (;;) {
        size_t n;
        int rc = hy_tcp_recv(c->rd, buf, sizeof(buf), &n, 10 * SECOND);
        if (rc) {
            c->end_rc = rc;
            break;
        }
        for (size_t i = 0; i < n; i++)
            c->mismatches += buf[i] != pat(c->got + i);
        c->got += n;
    }
    hy_tcp_close(c->rd);
    hy_test_send_tag(c->parent, TAG_DONE);
}

static void start_reader(struct tx_ctx *c, struct hy_tcp *client)
{
    c->rd = client;
    c->end_rc = 0;
    hy_pid r;
    HY_CHECK_EQ(hy_spawn(tx_reader, c, &r), 0);
    HY_CHECK_EQ(hy_tcp_controlling_process(client, r), 0);
}

/* Sends [*off, *off + len) of the pattern (from a stack buffer that is
 * overwritten right after: the queue must have copied it). */
static int send_pat(struct hy_tcp *s, size_t *off, size_t len, int64_t timeout)
{
    uint8_t b[1024];
    for (size_t i = 0; i < len; i++)
        b[i] = pat(*off + i);
    int rc = hy_tcp_send(s, b, len, timeout);
    memset(b, 0xee, sizeof(b));
    if (rc == 0)
        *off += len;
    return rc;
}

/* A process that sends, then ends without closing: its exit closes the
 * socket after the queued bytes. */
static void tx_exiter(void *arg)
{
    (void)arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    size_t off = 0;
    for (int i = 0; i < 50; i++)
        HY_CHECK_EQ(send_pat(s, &off, 100, SECOND), 0);
}

/* The client end of the reset: resets the connection when told. */
static void tx_resetter(void *arg)
{
    (void)arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    hy_msg_free(hy_test_must_recv_tag(TAG_GO, 10 * SECOND));
    struct linger lg = {1, 0};
    setsockopt(hy_tcp_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    hy_tcp_close(s); /* RST */
}

static void tx_main(void *arg)
{
    struct tx_ctx *c = arg;
    c->parent = hy_self();
    bool uring = hy_test_io_backend() != HY_IO_EPOLL;
    hy_pid y;
    HY_CHECK_EQ(hy_spawn(tx_yielder, c, &y), 0);
    c->sends0 = io_sends();

    /* order: small sends queued, a large one (made by the caller after the
     * queue drained), vectored ones, then the close after queued bytes */
    struct pair p;
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    start_reader(c, p.client);
    size_t off = 0;
    for (size_t i = 0; i < 300; i++)
        HY_CHECK_EQ(send_pat(p.server, &off, 1 + i % 200, SECOND), 0);
    size_t big = 256u * 1024u;
    uint8_t *bb = malloc(big);
    for (size_t i = 0; i < big; i++)
        bb[i] = pat(off + i);
    HY_CHECK_EQ(hy_tcp_send(p.server, bb, big, 10 * SECOND), 0);
    off += big;
    free(bb);
    for (size_t i = 0; i < 50; i++) {
        uint8_t b[3][40];
        struct iovec v[3];
        for (int k = 0; k < 3; k++) {
            for (int j = 0; j < 40; j++)
                b[k][j] = pat(off + (size_t)k * 40 + (size_t)j);
            v[k].iov_base = b[k];
            v[k].iov_len = 40;
        }
        HY_CHECK_EQ(hy_tcp_sendv(p.server, v, 3, SECOND), 0);
        off += 120;
    }
    for (size_t i = 0; i < 100; i++)
        HY_CHECK_EQ(send_pat(p.server, &off, 64, SECOND), 0);
    HY_CHECK_EQ(hy_tcp_close(p.server), 0);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 20 * SECOND));
    c->order_ok = c->got == off && c->mismatches == 0 && c->end_rc == HY_ECLOSED;
    c->close_ok = c->order_ok;

    /* a process that exits with bytes queued */
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    start_reader(c, p.client);
    hy_pid ex;
    HY_CHECK_EQ(hy_spawn(tx_exiter, c, &ex), 0);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.server, ex), 0);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 20 * SECOND));
    c->exit_ok = c->got == 5000 && c->mismatches == 0 && c->end_rc == HY_ECLOSED;

    /* a client that never reads: sends wait, time out, and what was
     * accepted stays bounded; the peer then reads a prefix of the stream
     * and its end (nothing torn, nothing after the gap) */
    HY_CHECK_EQ(make_small_pair(&p), 0);
    off = 0;
    int rc = 0;
    while (off < (64u << 20) && (rc = send_pat(p.server, &off, 1024, 200000000)) == 0) {
    }
    c->never_rc = rc;
    c->never_sent = off;
    c->never_end_rc = hy_tcp_send(p.server, "x", 1, SECOND);
    start_reader(c, p.client);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 20 * SECOND));
    c->never_read = c->got;
    c->never_prefix_ok = c->mismatches == 0 && c->end_rc == HY_ECLOSED;
    hy_tcp_close(p.server);

    /* a send queued, then the peer resets: the next send reports it */
    HY_CHECK_EQ(make_pair(&p, NULL), 0);
    hy_pid rs;
    HY_CHECK_EQ(hy_spawn(tx_resetter, c, &rs), 0);
    HY_CHECK_EQ(hy_tcp_controlling_process(p.client, rs), 0);
    uint64_t q0 = io_sends();
    c->reset_first_rc = hy_tcp_send(p.server, "abc", 3, SECOND);
    c->reset_queued = io_sends() > q0;
    hy_test_send_tag(rs, TAG_GO); /* it runs in this turn, before our submission */
    c->reset_rc = 0;
    uint64_t deadline = hy_now_ns() + 5 * SECOND;
    while (c->reset_rc == 0 && hy_now_ns() < deadline) {
        hy_sleep_ns(1000000);
        c->reset_rc = hy_tcp_send(p.server, "d", 1, SECOND);
    }
    c->reset_after_rc = hy_tcp_send(p.server, "e", 1, SECOND);
    hy_tcp_close(p.server);

    c->sends1 = io_sends();
    atomic_store(&c->stop, 1);
    (void)uring;
}

static void test_tcp_sends_through_the_poller(void **state)
{
    (void)state;
    struct tx_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(1, tx_main, &c);
    hy_test_assert_checks();
    print_message("sends queued: %llu; never-reading client: %zu bytes accepted, %zu read, rc %d\n",
                  (unsigned long long)(c.sends1 - c.sends0), c.never_sent, c.never_read,
                  c.never_rc);
    assert_true(c.order_ok);
    assert_true(c.close_ok);
    assert_true(c.exit_ok);
    assert_int_equal(c.never_rc, HY_ETIMEDOUT);
    assert_true(c.never_sent < (2u << 20)); /* bounded: buffers + the queue */
    assert_int_equal(c.never_end_rc, HY_ECLOSED);
    assert_true(c.never_prefix_ok);
    assert_true(c.never_read <= c.never_sent + 1024);
    assert_int_equal(c.reset_first_rc, 0);
    assert_true(c.reset_rc == HY_ECONNRESET || c.reset_rc == HY_ECLOSED);
    assert_int_equal(c.reset_after_rc, HY_ECLOSED);
    if (hy_test_io_backend() == HY_IO_EPOLL) {
        assert_int_equal(c.sends1 - c.sends0, 0);
    } else {
        assert_true(c.reset_queued);
        assert_true(c.sends1 - c.sends0 >= 300 + 50 + 100 + 50);
    }
}

/* ---- hy_ring_send: a send on a descriptor made by the shard's ring ---------- */

#define TAG_RSEND 0x52534e44u

struct rsend {
    struct hy_ring_send rs;
    hy_pid tell;     /* told by done (a message sent from the poller) */
    int res, calls;
    bool in_proc;    /* done ran inside a process */
    bool heap;       /* done frees the record */
    char bytes[128];
};

static void rsend_done(struct hy_ring_send *rs, int res)
{
    struct rsend *r = (struct rsend *)rs;
    r->res = res;
    r->calls++;
    r->in_proc = !hy_pid_is_none(hy_self());
    hy_pid tell = r->tell;
    if (r->heap)
        free(r); /* the record is the caller's again */
    if (res != HY_ESHUTDOWN)
        hy_send(tell, TAG_RSEND, NULL, 0);
}

static void rsend_init(struct rsend *r, int fd, const char *text)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->bytes, sizeof(r->bytes), "%s", text);
    r->rs = (struct hy_ring_send){.fd = fd, .len = (uint32_t)strlen(text), .buf = r->bytes,
                                  .done = rsend_done};
    r->tell = hy_self();
    r->res = 1 << 30;
}

/* a process that queues a ring send from a record on the heap and ends at
 * once, before the turn's submission: the send is still made, its done
 * still called (and frees the record) */
static void rsend_exiter(void *arg)
{
    int fd = *(int *)arg;
    struct rsend *r = malloc(sizeof(*r));
    struct hy_msg *m = hy_test_must_recv_tag(TAG_GO, 10 * SECOND);
    if (!m)
        return;
    rsend_init(r, fd, "from a process that ended");
    r->tell = m->from;
    r->heap = true;
    hy_msg_free(m);
    if (hy_ring_send(&r->rs) != 0) {
        hy_test_send_tag(r->tell, TAG_RSEND); /* not queued: the test fails on the bytes */
        free(r);
    }
}

struct rsend_ctx {
    int unsupported_rc, einval[4];
    int ok_rc, ok_res, ok_calls, full_rc, full_res, closed_rc, closed_res;
    bool ok_in_proc, ok_bytes, exit_bytes, full_rest_not_sent;
    bool uring;
    int submit_rc, submit_rc2, submit_res;
    bool submit_now;
};

static size_t read_avail(int fd, char *buf, size_t cap, size_t want)
{
    size_t got = 0;
    uint64_t deadline = hy_now_ns() + 5 * SECOND;
    while (got < want && hy_now_ns() < deadline) {
        ssize_t n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        else
            hy_sleep_ns(1000000);
    }
    return got;
}

static void rsend_main(void *arg)
{
    struct rsend_ctx *c = arg;
    int sv[2];
    HY_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct rsend r;
    rsend_init(&r, sv[0], "hello");

    /* bad fields: HY_EINVAL, nothing queued */
    struct rsend bad = r;
    bad.rs.len = 0;
    c->einval[0] = hy_ring_send(&bad.rs);
    bad = r;
    bad.rs.fd = -1;
    c->einval[1] = hy_ring_send(&bad.rs);
    bad = r;
    bad.rs.done = NULL;
    c->einval[2] = hy_ring_send(&bad.rs);
    c->einval[3] = hy_ring_send(NULL);

    if (!c->uring) {
        c->unsupported_rc = hy_ring_send(&r.rs);
        c->submit_rc2 = hy_ring_submit();
        hy_sleep_ns(1000000); /* a done that should not come would run now */
        c->ok_calls = r.calls;
        close(sv[0]);
        close(sv[1]);
        return;
    }

    /* the bytes go, done runs from the poller (outside any process) once */
    c->ok_rc = hy_ring_send(&r.rs);
    hy_msg_free(hy_test_must_recv_tag(TAG_RSEND, 10 * SECOND));
    c->ok_res = r.res;
    c->ok_in_proc = r.in_proc;
    char buf[256];
    size_t n = read_avail(sv[1], buf, sizeof(buf), 5);
    c->ok_bytes = n == 5 && memcmp(buf, "hello", 5) == 0;
    hy_sleep_ns(1000000);
    c->ok_calls = r.calls;

    /* hy_ring_submit: the bytes are on the socket when it returns, before
     * this process yields (without it they wait for the turn's end) */
    rsend_init(&r, sv[0], "submitted");
    c->submit_rc = hy_ring_send(&r.rs);
    c->submit_rc2 = hy_ring_submit();
    n = 0;
    ssize_t got = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
    c->submit_now = got == 9 && memcmp(buf, "submitted", 9) == 0 && r.calls == 0;
    hy_msg_free(hy_test_must_recv_tag(TAG_RSEND, 10 * SECOND));
    c->submit_res = r.res;

    /* a process that ends with its send queued */
    hy_pid ex;
    HY_CHECK_EQ(hy_spawn(rsend_exiter, &sv[0], &ex), 0);
    hy_test_send_tag(ex, TAG_GO);
    hy_msg_free(hy_test_must_recv_tag(TAG_RSEND, 10 * SECOND));
    const char *want = "from a process that ended";
    n = read_avail(sv[1], buf, sizeof(buf), strlen(want));
    c->exit_bytes = n == strlen(want) && memcmp(buf, want, n) == 0;

    /* a full socket: the send never waits for room, done says 0 bytes */
    static char junk[4096];
    while (send(sv[0], junk, sizeof(junk), MSG_DONTWAIT) > 0) {
    }
    while (send(sv[0], junk, 1, MSG_DONTWAIT) > 0) {
    }
    rsend_init(&r, sv[0], "after a full buffer");
    c->full_rc = hy_ring_send(&r.rs);
    hy_msg_free(hy_test_must_recv_tag(TAG_RSEND, 10 * SECOND));
    c->full_res = r.res;
    /* drain: nothing of it follows the junk */
    size_t total = 0;
    ssize_t k;
    while ((k = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        total += (size_t)k;
        if (memchr(buf, 'a', (size_t)k))
            break;
    }
    c->full_rest_not_sent = k < 0 && errno == EAGAIN;

    /* the peer is gone: HY_ECLOSED */
    close(sv[1]);
    rsend_init(&r, sv[0], "to nobody");
    c->closed_rc = hy_ring_send(&r.rs);
    hy_msg_free(hy_test_must_recv_tag(TAG_RSEND, 10 * SECOND));
    c->closed_res = r.res;
    close(sv[0]);
}

/* hy_ring_send (io_uring): the bytes go without a send system call of the
 * caller's, done runs once from the poller outside any process and may
 * send a message; a process that ends with a send queued has it made and
 * reported all the same (the heap record freed by done: the ASan build's
 * leak check); hy_ring_submit hands it to the kernel at once (the bytes
 * are there before the caller yields); a full socket takes nothing and the send does not wait for
 * room (done with 0); a closed peer gives HY_ECLOSED. epoll: HY_ENOTSUP,
 * no done. Bad fields: HY_EINVAL. */
static void test_tcp_ring_send(void **state)
{
    (void)state;
    struct rsend_ctx c;
    memset(&c, 0, sizeof(c));
    c.uring = hy_test_io_backend() != HY_IO_EPOLL;
    hy_test_run_fd_checked(1, rsend_main, &c);
    hy_test_assert_checks();
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.einval[i], HY_EINVAL);
    if (!c.uring) {
        assert_int_equal(c.unsupported_rc, HY_ENOTSUP);
        assert_int_equal(c.submit_rc2, HY_ENOTSUP);
        assert_int_equal(c.ok_calls, 0);
        return;
    }
    assert_int_equal(c.ok_rc, 0);
    assert_int_equal(c.ok_res, 5);
    assert_int_equal(c.ok_calls, 1);
    assert_false(c.ok_in_proc);
    assert_true(c.ok_bytes);
    assert_true(c.exit_bytes);
    assert_int_equal(c.submit_rc, 0);
    assert_int_equal(c.submit_rc2, 0);
    assert_true(c.submit_now);
    assert_int_equal(c.submit_res, 9);
    assert_int_equal(c.full_rc, 0);
    assert_int_equal(c.full_res, 0);
    assert_true(c.full_rest_not_sent);
    assert_int_equal(c.closed_rc, 0);
    assert_int_equal(c.closed_res, HY_ECLOSED);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_connect_refused_timeout_accept_timeout),
        cmocka_unit_test(test_tcp_echo_1000_conns_2_shards),
        cmocka_unit_test(test_tcp_echo_1000_conns_4_shards),
        cmocka_unit_test(test_tcp_echo_pipelined),
        cmocka_unit_test(test_tcp_partial_reads_writes_tiny_buffers),
        cmocka_unit_test(test_tcp_sendv_partial_writes_tiny_buffers),
        cmocka_unit_test(test_tcp_send_some_takes_what_fits),
        cmocka_unit_test(test_tcp_unsent_counts_what_the_kernel_has_not_taken),
        cmocka_unit_test(test_tcp_peer_close_reset_half_close),
        cmocka_unit_test(test_tcp_active_once_n_flow_control),
        cmocka_unit_test(test_tcp_record_reused_after_close_starts_clean),
        cmocka_unit_test(test_tcp_framing_line_length_oversize),
        cmocka_unit_test(test_tcp_handover_across_shards),
        cmocka_unit_test(test_tcp_handover_in_flight_at_stop_closes),
        cmocka_unit_test(test_tcp_owner_killed_or_crashing_in_recv),
        cmocka_unit_test(test_tcp_connect_close_cycles_no_fd_leak),
        cmocka_unit_test(test_tcp_compact_stack_buffers),
        cmocka_unit_test(test_tcp_misuse_errors),
        cmocka_unit_test(test_tcp_recv_or_msg_ends_on_message),
        cmocka_unit_test(test_tcp_recv_through_the_poller),
        cmocka_unit_test(test_tcp_sends_through_the_poller),
        cmocka_unit_test(test_tcp_ring_send),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
