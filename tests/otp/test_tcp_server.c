/* Tests of otp/tcp_server.c: connections spread over the shards, a handler
 * crash costs only its connection, max_connections refuses and counts,
 * stop drains (finishing handlers finish, idle ones are closed after the
 * drain timeout), slowloris clients are closed by the idle timeout the
 * service sets while other clients are served. Descriptors are counted
 * before and after every scenario. Backend from HYDRA_IO_BACKEND. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "test_support.h"

#define SECOND 1000000000LL
#define MS 1000000LL
#define TAG_DONE 0x444f4e45u

/* A line echo service: "crash\n" makes the handler panic, "wait\n" makes it
 * sleep 300 ms before answering; idle connections are closed after
 * idle_ns (the service's slowloris defence). */
struct svc {
    _Atomic unsigned per_shard[8];
    int64_t idle_ns;
    _Atomic unsigned idle_closed;
};

static void line_echo(struct hy_tcp *s, void *arg)
{
    struct svc *v = arg;
    int sh = hy_shard_id();
    if (sh >= 0 && sh < 8)
        atomic_fetch_add(&v->per_shard[sh], 1);
    hy_tcp_set_packet(s, HY_TCP_PACKET_LINE, 256);
    char line[256];
    for (;;) {
        size_t n;
        int rc = hy_tcp_recv(s, line, sizeof(line), &n, v->idle_ns ? v->idle_ns : HY_INFINITY);
        if (rc == HY_ETIMEDOUT) {
            atomic_fetch_add(&v->idle_closed, 1);
            return;
        }
        if (rc)
            return;
        if (n == 6 && memcmp(line, "crash\n", 6) == 0)
            hy_panic("asked to crash");
        if (n == 5 && memcmp(line, "wait\n", 5) == 0)
            hy_sleep_ns(300 * MS);
        if (hy_tcp_send(s, line, n, 5 * SECOND) != 0)
            return;
    }
}

static const struct hy_tcp_server_ops line_ops = {.handle = line_echo};

static struct hy_tcp_server *start(struct svc *v, unsigned max, unsigned acceptors)
{
    struct hy_tcp_server_opts o;
    hy_tcp_server_opts_init(&o);
    o.ops = &line_ops;
    o.arg = v;
    o.max_connections = max;
    if (acceptors)
        o.acceptors = acceptors;
    struct hy_tcp_server *srv = NULL;
    HY_CHECK_EQ(hy_tcp_server_start(&o, &srv), 0);
    return srv;
}

static int conn(struct hy_tcp_server *srv, struct hy_tcp **out)
{
    struct hy_addr a = hy_test_loopback(hy_tcp_server_port(srv));
    return hy_tcp_connect(&a, NULL, 5 * SECOND, out);
}

/* Sends a line and reads the echo; 0 when it came back intact. */
static int roundtrip(struct hy_tcp *c, const char *line)
{
    size_t n = strlen(line);
    int rc = hy_tcp_send(c, line, n, 5 * SECOND);
    if (rc)
        return rc;
    char back[256];
    rc = hy_tcp_recv_exact(c, back, n, NULL, 5 * SECOND);
    if (rc)
        return rc;
    return memcmp(back, line, n) ? HY_EIO : 0;
}

/* ---- spread and crash ---------------------------------------------------- */

struct spread_ctx {
    struct svc v;
    unsigned ok, crash_peer_rc_ok;
    struct hy_tcp_server_stats st;
};

static void client(void *arg)
{
    void **a = arg;
    struct hy_tcp_server *srv = a[0];
    hy_pid parent = *(hy_pid *)a[1];
    struct hy_tcp *c;
    uint32_t ok = 0;
    if (conn(srv, &c) == 0) {
        for (unsigned i = 0; i < 10; i++) {
            int rc = roundtrip(c, "hello there\n");
            if (rc && getenv("TCPDEBUG"))
                fprintf(stderr, "roundtrip %u: %s\n", i, hy_strerror(rc));
            ok += rc == 0;
        }
        hy_tcp_close(c);
    }
    hy_test_send_u32(parent, TAG_DONE, ok);
}

static void spread_main(void *arg)
{
    struct spread_ctx *c = arg;
    struct hy_tcp_server *srv = start(&c->v, 0, 2);
    if (!srv)
        return;
    /* a connection that crashes its handler: only it is closed */
    struct hy_tcp *bad;
    HY_CHECK_EQ(conn(srv, &bad), 0);
    HY_CHECK_EQ(roundtrip(bad, "before\n"), 0);
    hy_pid me = hy_self();
    void *a[2] = {srv, &me};
    unsigned n = (unsigned)hy_test_scaled(200);
    for (unsigned i = 0; i < n; i++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)(i % hy_shard_count());
        hy_spawn_opt(client, a, &o, NULL);
    }
    hy_tcp_send(bad, "crash\n", 6, SECOND);
    char b[8];
    size_t got;
    c->crash_peer_rc_ok = hy_tcp_recv(bad, b, sizeof(b), &got, 5 * SECOND) == HY_ECLOSED;
    hy_tcp_close(bad);
    for (unsigned i = 0; i < n; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(TAG_DONE, 60 * SECOND);
        if (!m)
            break;
        c->ok += hy_test_payload_u32(m);
        hy_msg_free(m);
    }
    /* the crashed handler's DOWN reaches its manager asynchronously */
    for (int i = 0; i < 1000; i++) {
        hy_tcp_server_stats(srv, &c->st);
        if (c->st.crashed == 1 && c->st.active == 0)
            break;
        hy_sleep_ns(5 * MS);
    }
    HY_CHECK_EQ(hy_tcp_server_stop(srv, SECOND), 0);
}

static void test_tcp_server_spread_and_crash(void **state)
{
    (void)state;
    struct spread_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(2, spread_main, &c);
    unsigned n = (unsigned)hy_test_scaled(200);
    assert_int_equal(c.ok, n * 10);
    assert_true(c.crash_peer_rc_ok);
    assert_int_equal(c.st.crashed, 1);
    assert_int_equal(c.st.accepted, n + 1);
    assert_int_equal(c.st.active, 0);
    /* the kernel spread the connections over both shards' listeners */
    assert_true(c.v.per_shard[0] > 0);
    assert_true(c.v.per_shard[1] > 0);
}

/* ---- many connections, closed in a scrambled order -------------------------- */

/* Every handler the managers track is counted out exactly once when its
 * connection closes, whatever the order: the managers' handler sets grow
 * past their first size and lose entries from the middle of probe runs. */
struct many_ctx {
    struct svc v;
    unsigned n, opened, active_all, active_half_ok, active_end;
};

static bool wait_active(struct hy_tcp_server *srv, unsigned want, int64_t limit)
{
    struct hy_tcp_server_stats st;
    uint64_t end = hy_now_ns() + (uint64_t)limit;
    for (;;) {
        hy_tcp_server_stats(srv, &st);
        if (st.active == want)
            return true;
        if (hy_now_ns() >= end)
            return false;
        hy_sleep_ns(2 * MS);
    }
}

static void many_main(void *arg)
{
    struct many_ctx *c = arg;
    struct hy_tcp_server *srv = start(&c->v, 0, 2);
    if (!srv)
        return;
    unsigned n = c->n;
    struct hy_tcp **cs = calloc(n, sizeof(*cs));
    HY_CHECK(cs != NULL);
    for (unsigned i = 0; i < n; i++) {
        if (conn(srv, &cs[i]) != 0 || roundtrip(cs[i], "x\n") != 0) {
            if (cs[i])
                hy_tcp_close(cs[i]);
            cs[i] = NULL;
            continue;
        }
        c->opened++;
    }
    struct hy_tcp_server_stats st;
    c->active_all = wait_active(srv, c->opened, 30 * SECOND);
    /* close every other connection in a scrambled order (a stride
     * coprime with n), then the rest */
    unsigned stride = 7;
    while (n % stride == 0)
        stride += 2;
    unsigned closed = 0;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = (unsigned)(((uint64_t)k * stride) % n);
        if ((i & 1) == 0 && cs[i]) {
            hy_tcp_close(cs[i]);
            cs[i] = NULL;
            closed++;
        }
    }
    c->active_half_ok = wait_active(srv, c->opened - closed, 30 * SECOND);
    for (unsigned k = n; k-- > 0;) {
        unsigned i = (unsigned)(((uint64_t)k * stride) % n);
        if (cs[i]) {
            hy_tcp_close(cs[i]);
            cs[i] = NULL;
        }
    }
    wait_active(srv, 0, 30 * SECOND);
    hy_tcp_server_stats(srv, &st);
    c->active_end = (unsigned)st.active;
    free(cs);
    HY_CHECK_EQ(hy_tcp_server_stop(srv, SECOND), 0);
}

static void test_tcp_server_many_connections_counted_out(void **state)
{
    (void)state;
    struct many_ctx c;
    memset(&c, 0, sizeof(c));
    c.n = (unsigned)hy_test_scaled(300);
    hy_test_run_fd_checked(2, many_main, &c);
    assert_int_equal(c.opened, c.n);
    assert_true(c.active_all);
    assert_true(c.active_half_ok);
    assert_int_equal(c.active_end, 0);
}

/* ---- a port someone else holds ------------------------------------------------ */

struct taken_ctx {
    struct svc v;
    int second_rc, listener_rc, still_serves, restart_rc;
};

static void taken_main(void *arg)
{
    struct taken_ctx *c = arg;
    struct hy_tcp_server *srv = start(&c->v, 0, 1);
    if (!srv)
        return;
    uint16_t port = hy_tcp_server_port(srv);
    /* a second server on the same port: refused, not sharing it */
    struct hy_tcp_server_opts o;
    hy_tcp_server_opts_init(&o);
    o.ops = &line_ops;
    o.arg = &c->v;
    o.listen.addr = hy_test_loopback(port);
    struct hy_tcp_server *second = NULL;
    c->second_rc = hy_tcp_server_start(&o, &second);
    HY_CHECK(second == NULL);
    struct hy_tcp *x;
    HY_CHECK_EQ(conn(srv, &x), 0);
    c->still_serves = roundtrip(x, "still\n") == 0;
    hy_tcp_close(x);
    HY_CHECK_EQ(hy_tcp_server_stop(srv, SECOND), 0);
    /* a plain SO_REUSEPORT listener of another kind on the port */
    struct hy_tcp_listen_opts lo;
    hy_tcp_listen_opts_init(&lo);
    lo.addr = hy_test_loopback(port);
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(&lo, &ls), 0);
    c->listener_rc = hy_tcp_server_start(&o, &second);
    hy_tcp_close(ls);
    /* once it is gone the port is free again */
    c->restart_rc = hy_tcp_server_start(&o, &second);
    if (c->restart_rc == 0)
        HY_CHECK_EQ(hy_tcp_server_stop(second, SECOND), 0);
}

static void test_tcp_server_port_in_use_refused(void **state)
{
    (void)state;
    struct taken_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(2, taken_main, &c);
    assert_int_equal(c.second_rc, HY_EADDRINUSE);
    assert_true(c.still_serves);
    assert_int_equal(c.listener_rc, HY_EADDRINUSE);
    assert_int_equal(c.restart_rc, 0);
}

/* ---- max connections --------------------------------------------------------- */

struct max_ctx {
    struct svc v;
    int third_rc, after_rc;
    struct hy_tcp_server_stats st;
};

static void max_main(void *arg)
{
    struct max_ctx *c = arg;
    struct hy_tcp_server *srv = start(&c->v, 2, 1);
    if (!srv)
        return;
    struct hy_tcp *a, *b, *x;
    HY_CHECK_EQ(conn(srv, &a), 0);
    HY_CHECK_EQ(roundtrip(a, "a\n"), 0);
    HY_CHECK_EQ(conn(srv, &b), 0);
    HY_CHECK_EQ(roundtrip(b, "b\n"), 0);
    /* the third is accepted by the kernel, then closed by the server */
    HY_CHECK_EQ(conn(srv, &x), 0);
    char buf[8];
    size_t got;
    c->third_rc = hy_tcp_recv(x, buf, sizeof(buf), &got, 5 * SECOND);
    if (getenv("TCPDEBUG"))
        fprintf(stderr, "third: %s\n", hy_strerror(c->third_rc));
    hy_tcp_close(x);
    /* once one leaves, a new one is served */
    hy_tcp_close(a);
    int rc = -1;
    for (int i = 0; i < 200 && rc != 0; i++) {
        struct hy_tcp_server_stats st;
        hy_tcp_server_stats(srv, &st);
        if (st.active < 2) {
            HY_CHECK_EQ(conn(srv, &x), 0);
            rc = roundtrip(x, "again\n");
            hy_tcp_close(x);
        } else {
            hy_sleep_ns(5 * MS);
        }
    }
    c->after_rc = rc;
    hy_tcp_server_stats(srv, &c->st);
    hy_tcp_close(b);
    HY_CHECK_EQ(hy_tcp_server_stop(srv, SECOND), 0);
}

static void test_tcp_server_max_connections(void **state)
{
    (void)state;
    struct max_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(1, max_main, &c);
    assert_true(c.third_rc == HY_ECLOSED || c.third_rc == HY_ECONNRESET);
    assert_int_equal(c.after_rc, 0);
    assert_int_equal(c.st.refused, 1);
}

/* ---- stop drains --------------------------------------------------------------- */

struct drain_ctx {
    struct svc v;
    int busy_rc, idle_rc, new_rc;
    uint64_t stop_ns;
};

struct drain_client_arg {
    struct hy_tcp_server *srv;
    struct drain_ctx *c;
    hy_pid parent;
};

static void busy_client(void *arg)
{
    struct drain_client_arg *d = arg;
    struct hy_tcp *s;
    if (conn(d->srv, &s) == 0) {
        HY_CHECK_EQ(roundtrip(s, "x\n"), 0);
        hy_test_send_tag(d->parent, TAG_DONE);
        /* asked before the stop, answered during the drain */
        d->c->busy_rc = roundtrip(s, "wait\n");
        hy_tcp_close(s);
    }
    hy_test_send_tag(d->parent, TAG_DONE);
}

static void drain_main(void *arg)
{
    struct drain_ctx *c = arg;
    struct hy_tcp_server *srv = start(&c->v, 0, 1);
    if (!srv)
        return;
    struct hy_tcp *idle;
    HY_CHECK_EQ(conn(srv, &idle), 0);
    HY_CHECK_EQ(roundtrip(idle, "i\n"), 0);
    struct drain_client_arg d = {srv, c, hy_self()};
    hy_spawn(busy_client, &d, NULL);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 5 * SECOND));
    hy_yield();
    struct hy_addr a = hy_test_loopback(hy_tcp_server_port(srv));
    uint64_t t0 = hy_now_ns();
    HY_CHECK_EQ(hy_tcp_server_stop(srv, 1 * SECOND), 0);
    c->stop_ns = hy_now_ns() - t0;
    char b[4];
    size_t got;
    c->idle_rc = hy_tcp_recv(idle, b, sizeof(b), &got, 5 * SECOND);
    hy_tcp_close(idle);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 5 * SECOND));
    struct hy_tcp *x = NULL;
    c->new_rc = hy_tcp_connect(&a, NULL, SECOND, &x);
    hy_tcp_close(x);
}

static void test_tcp_server_stop_drains(void **state)
{
    (void)state;
    struct drain_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(1, drain_main, &c);
    assert_int_equal(c.busy_rc, 0);              /* finished within the drain */
    assert_int_equal(c.idle_rc, HY_ECLOSED);     /* closed after the drain timeout */
    assert_true(c.stop_ns >= 1 * SECOND);        /* the idle one held it to the end */
    assert_int_equal(c.new_rc, HY_ECONNREFUSED); /* nobody listens any more */
}

/* ---- slowloris ------------------------------------------------------------------- */

struct slow_ctx {
    struct svc v;
    unsigned slow_closed, fast_ok;
};

static void slowloris_main(void *arg)
{
    struct slow_ctx *c = arg;
    c->v.idle_ns = 200 * MS;
    struct hy_tcp_server *srv = start(&c->v, 0, 1);
    if (!srv)
        return;
    enum { NSLOW = 20 };
    struct hy_tcp *slow[NSLOW];
    for (unsigned i = 0; i < NSLOW; i++) {
        HY_CHECK_EQ(conn(srv, &slow[i]), 0);
        hy_tcp_send(slow[i], "GET / HT", 8, SECOND); /* never finishes the line */
    }
    /* meanwhile a normal client is served, line after line, 5 ms apart:
     * well under the idle timeout, unless a loaded machine kept this
     * process from running for longer than that. Then (and only then) the
     * service may rightly have closed the connection as idle: reconnect
     * and go on. A request that fails any other way, or within the idle
     * timeout of the last answer, counts as not served. */
    struct hy_tcp *fast;
    HY_CHECK_EQ(conn(srv, &fast), 0);
    uint64_t last = hy_now_ns();
    for (unsigned i = 0, tries = 0; i < 20 && tries < 200; tries++) {
        int rc = roundtrip(fast, "quick\n");
        if (rc == 0) {
            c->fast_ok++;
            i++;
            last = hy_now_ns();
        } else {
            hy_tcp_close(fast);
            fast = NULL;
            HY_CHECK(rc == HY_ECLOSED || rc == HY_ECONNRESET);
            HY_CHECK(hy_now_ns() - last >= (uint64_t)c->v.idle_ns);
            if (!(rc == HY_ECLOSED || rc == HY_ECONNRESET) ||
                hy_now_ns() - last < (uint64_t)c->v.idle_ns)
                break;
            if (conn(srv, &fast) != 0) {
                HY_CHECK(!"reconnect after an idle close failed");
                fast = NULL;
                break;
            }
            last = hy_now_ns();
            continue;
        }
        hy_sleep_ns(5 * MS);
    }
    if (fast)
        hy_tcp_close(fast);
    for (unsigned i = 0; i < NSLOW; i++) {
        char b[4];
        size_t got;
        c->slow_closed += hy_tcp_recv(slow[i], b, sizeof(b), &got, 5 * SECOND) == HY_ECLOSED;
        hy_tcp_close(slow[i]);
    }
    HY_CHECK_EQ(hy_tcp_server_stop(srv, SECOND), 0);
}

static void test_tcp_server_slowloris_idle_timeout(void **state)
{
    (void)state;
    struct slow_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_fd_checked(1, slowloris_main, &c);
    assert_int_equal(c.slow_closed, 20);
    assert_int_equal(c.fast_ok, 20);
    assert_true(c.v.idle_closed >= 20);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_server_spread_and_crash),
        cmocka_unit_test(test_tcp_server_many_connections_counted_out),
        cmocka_unit_test(test_tcp_server_port_in_use_refused),
        cmocka_unit_test(test_tcp_server_max_connections),
        cmocka_unit_test(test_tcp_server_stop_drains),
        cmocka_unit_test(test_tcp_server_slowloris_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
