/* Tests of otp/gen_server.c: init results (ok, ignore, stop, crash, timeout),
 * registered names (already_started), call/reply, deferred replies from
 * another process, call timeouts with a late reply that must not land,
 * calls to dead or dying servers, handle_info for stray messages (and the
 * default), handle_continue, terminate on each of its three causes, cast
 * and cast_after, cross-shard start and call, the receive marker, and the
 * seed's stack server example.
 *
 * Test bodies run as processes (hy_test_run) and record failures with
 * HY_CHECK. The test server reports what its callbacks do as EV messages to
 * the test process; an event that must NOT have happened is shown absent
 * behind a barrier the ordering guarantee puts after it (a later message or
 * the DOWN of the same sender), never behind a sleep (STYLE.md rule 13).
 * Tests named *_same_shard / *_cross_shard run the server on the test's
 * shard and on shard 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

/* The seed's stack example, exactly as apps/stack builds it. */
#include "../../apps/stack/stack_server.c"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS) /* for a message that must come */

/* ---- the test server ------------------------------------------------------------- */

enum { T_EV = 1000, T_STRAY, T_AFTER, T_GO, T_RESULT, T_SEQ };

enum ev_kind { E_INIT = 1, E_TERM, E_INFO, E_CONT, E_CAST, E_DEFERRED, E_HELPER, E_STORED };

struct ev {
    int kind;
    int64_t a;
    hy_pid pid;
    uint64_t t;
    struct hy_reason reason;
};

enum init_mode { I_OK = 0, I_IGNORE, I_STOP, I_CRASH, I_BLOCK, I_CONT };

/* init's argument (copied with arg_size when the server runs elsewhere). */
struct ts_arg {
    hy_pid test;
    int mode;
    bool trap;
    bool block_terminate; /* terminate waits for T_GO */
    struct hy_reason reason;
};

/* calls */
enum { C_PING = 1, C_ECHO, C_DEFER, C_STORE, C_EXIT, C_REPLY_STOP, C_SHARD };
/* casts */
enum { K_NOTE = 1, K_STOP, K_CONT, K_REPLY_LATE, K_RELEASE, K_CONT_STOP };
/* replies */
enum { R_PONG = 1, R_ECHO, R_DEFERRED, R_LATE, R_SHARD, R_BYE };

struct ts_state {
    hy_pid test;
    bool block_terminate;
    int64_t ninfo;
    hy_gs_from held;
    bool holding;
};

static void emit_to(hy_pid to, int kind, int64_t a, const struct hy_reason *r)
{
    struct ev e;
    memset(&e, 0, sizeof(e));
    e.kind = kind;
    e.a = a;
    e.pid = hy_self();
    e.t = hy_now_ns();
    if (r)
        e.reason = *r;
    HY_CHECK_EQ(hy_send(to, T_EV, &e, sizeof(e)), 0);
}

static void emit(struct hy_gs *gs, int kind, int64_t a, const struct hy_reason *r)
{
    struct ts_state *st = hy_gs_state(gs);
    emit_to(st->test, kind, a, r);
}

static int ts_init(struct hy_gs *gs, void *arg)
{
    const struct ts_arg *ta = arg;
    struct ts_state *st = hy_alloc(sizeof(*st));
    memset(st, 0, sizeof(*st));
    st->test = ta->test;
    st->block_terminate = ta->block_terminate;
    hy_gs_set_state(gs, st);
    if (ta->trap)
        hy_trap_exit(true, NULL);
    emit(gs, E_INIT, ta->mode, NULL);
    switch (ta->mode) {
    case I_IGNORE:
        return HY_GS_IGNORE;
    case I_STOP:
        hy_gs_stop(gs, ta->reason);
        return HY_GS_STOP;
    case I_CRASH:
        hy_exit(ta->reason);
        return HY_GS_OK;
    case I_BLOCK: {
        struct hy_msg *m;
        hy_recv_tag(T_GO, &m, HY_INFINITY); /* never comes: killed by the timeout */
        hy_msg_free(m);
        return HY_GS_OK;
    }
    case I_CONT:
        /* queued before init returns: handle_continue must still come first */
        hy_send(hy_self(), T_STRAY, NULL, 0);
        hy_gs_continue(gs, 7);
        return HY_GS_OK;
    default:
        return HY_GS_OK;
    }
}

/* Replies to a held call from a process that is not the server. */
static void reply_helper(void *arg)
{
    const struct {
        hy_gs_from from;
        hy_pid test;
    } *h = arg;
    emit_to(h->test, E_HELPER, 0, NULL);
    HY_CHECK_EQ(hy_gen_server_reply(h->from, R_DEFERRED, "later", 5), 0);
}

static int ts_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    struct ts_state *st = hy_gs_state(gs);
    switch (tag) {
    case C_PING:
        hy_gen_server_reply(from, R_PONG, &st->ninfo, sizeof(st->ninfo));
        return HY_GS_OK;
    case C_ECHO:
        hy_gen_server_reply(from, R_ECHO, data, len);
        return HY_GS_OK;
    case C_DEFER:
    case C_STORE:
        st->held = from;
        st->holding = true;
        emit(gs, tag == C_DEFER ? E_DEFERRED : E_STORED, 0, NULL);
        return HY_GS_OK; /* no reply yet */
    case C_EXIT: {
        struct hy_reason r;
        memcpy(&r, data, sizeof(r));
        hy_exit(r);
        return HY_GS_OK;
    }
    case C_REPLY_STOP:
        hy_gen_server_reply(from, R_BYE, NULL, 0);
        return HY_GS_STOP;
    case C_SHARD: {
        int64_t s = hy_shard_id();
        hy_gen_server_reply(from, R_SHARD, &s, sizeof(s));
        return HY_GS_OK;
    }
    default:
        return HY_GS_OK;
    }
}

static int ts_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    struct ts_state *st = hy_gs_state(gs);
    int64_t v = 0;
    if (len == sizeof(v))
        memcpy(&v, data, sizeof(v));
    switch (tag) {
    case K_NOTE:
        emit(gs, E_CAST, v, NULL);
        return HY_GS_OK;
    case K_STOP: {
        struct hy_reason r;
        memcpy(&r, data, sizeof(r));
        hy_gs_stop(gs, r);
        return HY_GS_STOP;
    }
    case K_CONT:
        emit(gs, E_CAST, v, NULL);
        hy_gs_continue(gs, (uint64_t)v);
        return HY_GS_OK;
    case K_CONT_STOP:
        emit(gs, E_CAST, v, NULL);
        hy_gs_continue(gs, 1000);
        return HY_GS_OK;
    case K_REPLY_LATE:
        /* the reply goes first, then a plain message on the same path */
        if (st->holding)
            HY_CHECK_EQ(hy_gen_server_reply(st->held, R_LATE, "late", 4), 0);
        st->holding = false;
        hy_send(st->held.pid, T_AFTER, NULL, 0);
        return HY_GS_OK;
    case K_RELEASE: {
        struct {
            hy_gs_from from;
            hy_pid test;
        } h = {st->held, st->test};
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.arg_size = sizeof(h);
        HY_CHECK_EQ(hy_spawn_opt(reply_helper, &h, &o, NULL), 0);
        st->holding = false;
        return HY_GS_OK;
    }
    default:
        return HY_GS_OK;
    }
}

static int ts_info(struct hy_gs *gs, const struct hy_msg *m)
{
    struct ts_state *st = hy_gs_state(gs);
    st->ninfo++;
    emit(gs, E_INFO, (int64_t)m->tag, NULL);
    return HY_GS_OK;
}

static int ts_continue(struct hy_gs *gs, uint64_t tag)
{
    emit(gs, E_CONT, (int64_t)tag, NULL);
    if (tag == 1000) {
        hy_gs_stop(gs, hy_reason_user(10, "stop from continue"));
        return HY_GS_STOP;
    }
    return HY_GS_OK;
}

static void ts_terminate(struct hy_gs *gs, const struct hy_reason *reason)
{
    struct ts_state *st = hy_gs_state(gs);
    emit(gs, E_TERM, 0, reason);
    if (st->block_terminate) {
        struct hy_msg *m;
        if (hy_recv_tag(T_GO, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
}

static const struct hy_gen_server_ops ts_ops = {
    .init = ts_init,
    .handle_call = ts_call,
    .handle_cast = ts_cast,
    .handle_info = ts_info,
    .handle_continue = ts_continue,
    .terminate = ts_terminate,
};

/* Only handle_call: every other callback is the OTP default. */
static int plain_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    (void)gs;
    (void)tag;
    hy_gen_server_reply(from, R_ECHO, data, len);
    return HY_GS_OK;
}

static const struct hy_gen_server_ops plain_ops = {
    .handle_call = plain_call,
};

/* No handle_call at all. */
static const struct hy_gen_server_ops empty_ops = {0};

/* ---- helpers ----------------------------------------------------------------------------- */

static struct ts_arg targ(int mode)
{
    struct ts_arg a;
    memset(&a, 0, sizeof(a));
    a.test = hy_self();
    a.mode = mode;
    a.reason = hy_reason_make(HY_REASON_NORMAL);
    return a;
}

static struct hy_gen_server_opts gopts(int shard, const struct ts_arg *a)
{
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.shard = shard;
    o.arg_size = a ? sizeof(*a) : 0;
    return o;
}

static hy_pid start_ts(int shard, const struct ts_arg *a)
{
    struct hy_gen_server_opts o = gopts(shard, a);
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, a, &o, &pid), 0); /* const arg: no cast */
    return pid;
}

static bool recv_ev(struct ev *e)
{
    struct hy_msg *m;
    int rc = hy_recv_tag(T_EV, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return false;
    HY_CHECK_EQ(m->size, sizeof(*e));
    memcpy(e, m->data, sizeof(*e));
    hy_msg_free(m);
    return true;
}

/* Receives the next event and checks its kind (and a, when a >= 0). */
static struct ev expect_ev(int kind, int64_t a)
{
    struct ev e;
    memset(&e, 0, sizeof(e));
    if (recv_ev(&e)) {
        HY_CHECK_EQ(e.kind, kind);
        if (a >= 0)
            HY_CHECK_EQ(e.a, a);
    }
    return e;
}

/* No event is queued now. */
static void expect_no_ev(void)
{
    struct hy_msg *m;
    int rc = hy_recv_tag(T_EV, &m, 0);
    HY_CHECK_EQ(rc, HY_ETIMEDOUT);
    if (rc == 0) {
        struct ev e;
        memcpy(&e, m->data, sizeof(e));
        hy_test_check_fail(__FILE__, __LINE__, "unexpected event kind %d a %lld", e.kind,
                           (long long)e.a);
        hy_msg_free(m);
    }
}

static int64_t ping(hy_pid srv)
{
    struct hy_msg *r = NULL;
    int rc = hy_gen_server_call(srv, C_PING, NULL, 0, WAIT_NS, &r, NULL);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return -1;
    HY_CHECK_EQ(r->tag, R_PONG);
    int64_t n;
    memcpy(&n, r->data, sizeof(n));
    hy_msg_free(r);
    return n;
}

static hy_ref monitor(hy_pid pid)
{
    hy_ref ref = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor(pid, &ref), 0);
    return ref;
}

static struct hy_reason wait_down(hy_ref ref)
{
    struct hy_down_info d;
    memset(&d, 0, sizeof(d));
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc == 0) {
        HY_CHECK_EQ(m->tag, HY_TAG_DOWN);
        memcpy(&d, m->data, sizeof(d));
        hy_msg_free(m);
    }
    return d.reason;
}

static void stop_normal(hy_pid srv)
{
    HY_CHECK_EQ(hy_gen_server_stop(srv, hy_reason_make(HY_REASON_NORMAL), WAIT_NS), 0);
}

#define CHECK_USER(r, c, t)                                                                        \
    do {                                                                                           \
        struct hy_reason cu_ = (r);                                                                \
        HY_CHECK_EQ(cu_.kind, HY_REASON_USER);                                                     \
        HY_CHECK_EQ(cu_.code, (c));                                                                \
        HY_CHECK(strcmp(cu_.text, (t)) == 0);                                                      \
    } while (0)

#define BOTH_SHARDS(name)                                                                          \
    static void test_gen_server_##name##_same_shard(void **state)                                  \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 0;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }                                                                                              \
    static void test_gen_server_##name##_cross_shard(void **state)                                 \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 1;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }
#define BOTH_TESTS(name)                                                                           \
    cmocka_unit_test(test_gen_server_##name##_same_shard),                                         \
        cmocka_unit_test(test_gen_server_##name##_cross_shard)

#define ONE_TEST(name)                                                                             \
    static void test_gen_server_##name(void **state)                                               \
    {                                                                                              \
        (void)state;                                                                               \
        hy_test_run(2, body_##name, NULL);                                                         \
    }

/* ---- init ------------------------------------------------------------------------------ */

static void body_init_ok(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    struct ev e = expect_ev(E_INIT, I_OK);
    HY_CHECK(hy_pid_eq(e.pid, srv));
    HY_CHECK_EQ(hy_pid_shard(srv), shard);
    HY_CHECK_EQ(ping(srv), 0);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
}
BOTH_SHARDS(init_ok)

static void body_init_ignore(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_IGNORE);
    struct hy_gen_server_opts o = gopts(shard, &a);
    struct hy_reason why = hy_reason_user(99, "unset");
    o.init_reason = &why;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, &a, &o, &pid), HY_EIGNORED);
    struct ev e = expect_ev(E_INIT, I_IGNORE);
    /* the process ends normally, without terminate */
    struct hy_reason r = wait_down(monitor(e.pid));
    HY_CHECK(r.kind == HY_REASON_NORMAL || r.kind == HY_REASON_NOPROC);
    expect_no_ev();
    /* the linked form does not take the caller down either */
    HY_CHECK_EQ(hy_gen_server_start_link(&ts_ops, &a, &o, &pid), HY_EIGNORED);
    e = expect_ev(E_INIT, I_IGNORE);
    wait_down(monitor(e.pid));
    expect_no_ev();
}
BOTH_SHARDS(init_ignore)

static void body_init_stop(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_STOP);
    a.reason = hy_reason_user(5, "no thanks");
    struct hy_gen_server_opts o = gopts(shard, &a);
    struct hy_reason why;
    memset(&why, 0, sizeof(why));
    o.init_reason = &why;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_gen_server_start_link(&ts_ops, &a, &o, &pid), HY_ESTOPPED);
    CHECK_USER(why, 5, "no thanks");
    struct ev e = expect_ev(E_INIT, I_STOP);
    /* it exits with its reason, terminate not called (OTP), and the linked
     * caller is unlinked first: we are still alive to see the DOWN */
    struct hy_reason r = wait_down(monitor(e.pid));
    HY_CHECK(r.kind == HY_REASON_USER || r.kind == HY_REASON_NOPROC);
    expect_no_ev();
}
BOTH_SHARDS(init_stop)

static void body_init_crash(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_CRASH);
    a.reason = hy_reason_user(6, "init exploded");
    struct hy_gen_server_opts o = gopts(shard, &a);
    struct hy_reason why;
    memset(&why, 0, sizeof(why));
    o.init_reason = &why;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, &a, &o, &pid), HY_ESTOPPED);
    CHECK_USER(why, 6, "init exploded");
    expect_ev(E_INIT, I_CRASH);
    expect_no_ev();

    /* linked, with the caller trapping exits: the error code, and the
     * crash's exit signal as an EXIT message */
    hy_trap_exit(true, NULL);
    memset(&why, 0, sizeof(why));
    HY_CHECK_EQ(hy_gen_server_start_link(&ts_ops, &a, &o, &pid), HY_ESTOPPED);
    CHECK_USER(why, 6, "init exploded");
    struct ev e = expect_ev(E_INIT, I_CRASH);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(HY_TAG_EXIT, &m, WAIT_NS), 0);
    struct hy_exit_info x;
    memcpy(&x, m->data, sizeof(x));
    hy_msg_free(m);
    HY_CHECK(hy_pid_eq(x.from, e.pid));
    CHECK_USER(x.reason, 6, "init exploded");
    hy_trap_exit(false, NULL);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(init_crash)

/* An init that blocks past init_timeout_ns: start returns HY_ETIMEDOUT no
 * sooner than the timeout, with the server and its name gone. The server
 * announces its init (E_INIT) before blocking; start returns only after the
 * server's death, which its shard sends after that event, so when start
 * returns the event is in our mailbox if init ran at all. On a loaded
 * machine the server may not even be scheduled within 30 ms: then the
 * timeout is doubled and the start tried again, until one attempt has seen
 * the init block (required, within a bound of seconds). */
static void body_init_timeout(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_BLOCK);
    struct hy_gen_server_opts o = gopts(shard, &a);
    o.name = "gs_init_timeout";
    for (int linked = 0; linked < 2; linked++) {
        bool init_ran = false;
        for (uint64_t tmo = 30 * MS; !init_ran; tmo *= 2) {
            HY_CHECK(tmo <= 4000 * MS);
            if (tmo > 4000 * MS)
                return;
            o.init_timeout_ns = tmo;
            hy_pid pid = HY_PID_NONE;
            uint64_t t0 = hy_now_ns();
            int rc = linked ? hy_gen_server_start_link(&ts_ops, &a, &o, &pid)
                            : hy_gen_server_start(&ts_ops, &a, &o, &pid);
            HY_CHECK_EQ(rc, HY_ETIMEDOUT);
            HY_CHECK(hy_now_ns() - t0 >= tmo);
            /* the server's name is gone when start returns */
            hy_pid w;
            HY_CHECK_EQ(hy_whereis("gs_init_timeout", &w), HY_ENONAME);
            struct hy_msg *m;
            if (hy_recv_tag(T_EV, &m, 0) != 0)
                continue; /* init never ran before the timeout: try longer */
            struct ev e;
            HY_CHECK_EQ(m->size, sizeof(e));
            memcpy(&e, m->data, sizeof(e));
            hy_msg_free(m);
            HY_CHECK_EQ(e.kind, E_INIT);
            HY_CHECK_EQ(e.a, I_BLOCK);
            /* ... and so is the server itself */
            struct hy_proc_info info;
            HY_CHECK_EQ(hy_proc_info(e.pid, &info), HY_ENOPROC);
            init_ran = true;
        }
        /* no ack, DOWN or EXIT left behind (and, linked, we were not killed) */
        HY_CHECK_EQ(hy_mailbox_len(), 0);
    }
}
BOTH_SHARDS(init_timeout)

static void body_start_name_already_started(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    struct hy_gen_server_opts o = gopts(shard, &a);
    o.name = "gs_named";
    hy_pid first = HY_PID_NONE, second = HY_PID_NONE;
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, &a, &o, &first), 0);
    expect_ev(E_INIT, I_OK);
    hy_pid w = HY_PID_NONE;
    HY_CHECK_EQ(hy_whereis("gs_named", &w), 0);
    HY_CHECK(hy_pid_eq(w, first));

    HY_CHECK_EQ(hy_gen_server_start_link(&ts_ops, &a, &o, &second), HY_EEXIST);
    HY_CHECK(hy_pid_eq(second, first));
    /* the second one's init never ran (its event would precede the ack) */
    expect_no_ev();
    struct hy_msg *r;
    HY_CHECK_EQ(hy_gen_server_call_name("gs_named", C_PING, NULL, 0, WAIT_NS, &r, NULL), 0);
    hy_msg_free(r);

    stop_normal(first);
    expect_ev(E_TERM, -1);
    /* the name is free again */
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, &a, &o, &second), 0);
    HY_CHECK(!hy_pid_eq(second, first));
    expect_ev(E_INIT, I_OK);
    stop_normal(second);
    expect_ev(E_TERM, -1);
    HY_CHECK_EQ(hy_gen_server_call_name("gs_named", C_PING, NULL, 0, WAIT_NS, &r, NULL),
                HY_ENOPROC);
}
BOTH_SHARDS(start_name_already_started)

static void body_start_bad_args(void *arg)
{
    (void)arg;
    hy_pid pid;
    HY_CHECK_EQ(hy_gen_server_start(NULL, NULL, NULL, &pid), HY_EINVAL);
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = "";
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, NULL, &o, &pid), HY_EINVAL);
    struct hy_msg *r;
    HY_CHECK_EQ(hy_gen_server_call(hy_self(), HY_GS_TAG_MAX, NULL, 0, 0, &r, NULL), HY_EINVAL);
    /* calling yourself: an error at once, not a wait that cannot end */
    HY_CHECK_EQ(hy_gen_server_call(hy_self(), 1, NULL, 0, HY_INFINITY, &r, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    HY_CHECK_EQ(hy_gen_server_cast(hy_self(), HY_GS_TAG_MAX, NULL, 0), HY_EINVAL);
}
ONE_TEST(start_bad_args)

static void test_gen_server_outside_a_process(void **state)
{
    (void)state;
    hy_pid pid;
    struct hy_msg *r;
    assert_int_equal(hy_gen_server_start(&ts_ops, NULL, NULL, &pid), HY_ENOTPROC);
    assert_int_equal(hy_gen_server_call(HY_PID_NONE, 1, NULL, 0, 0, &r, NULL), HY_ENOTPROC);
    assert_int_equal(hy_gen_server_stop(HY_PID_NONE, hy_reason_make(HY_REASON_NORMAL), 0),
                     HY_ENOTPROC);
}

/* ---- call ---------------------------------------------------------------------------- */

static void body_call_reply(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    struct hy_gen_server_opts o = gopts(shard, &a);
    o.name = "gs_echo";
    hy_pid srv;
    HY_CHECK_EQ(hy_gen_server_start(&ts_ops, &a, &o, &srv), 0);
    expect_ev(E_INIT, I_OK);
    for (int i = 0; i < 100; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "request %d", i);
        struct hy_msg *r = NULL;
        int rc = (i & 1) ? hy_gen_server_call_name("gs_echo", C_ECHO, buf, (size_t)n, HY_INFINITY,
                                                   &r, NULL)
                         : hy_gen_server_call(srv, C_ECHO, buf, (size_t)n, WAIT_NS, &r, NULL);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            break;
        HY_CHECK_EQ(r->tag, R_ECHO);
        HY_CHECK_EQ(r->size, n);
        HY_CHECK(memcmp(r->data, buf, (size_t)n) == 0);
        hy_msg_free(r);
    }
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call(srv, C_SHARD, NULL, 0, WAIT_NS, &r, NULL), 0);
    if (r) {
        int64_t s;
        memcpy(&s, r->data, sizeof(s));
        HY_CHECK_EQ(s, shard);
        hy_msg_free(r);
    }
    /* nothing left over: no DOWN, no stray reply */
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
}
BOTH_SHARDS(call_reply)

struct caller_arg {
    hy_pid test;
    hy_pid srv;
    uint64_t tag;
    int64_t timeout;
};

struct caller_result {
    int rc;
    uint64_t tag;
    hy_pid from;
    char data[16];
};

/* Makes one call and reports the outcome to the test. */
static void caller(void *arg)
{
    const struct caller_arg *ca = arg;
    struct caller_result res;
    memset(&res, 0, sizeof(res));
    struct hy_msg *r = NULL;
    res.rc = hy_gen_server_call(ca->srv, ca->tag, NULL, 0, ca->timeout, &r, NULL);
    if (res.rc == 0) {
        res.tag = r->tag;
        res.from = r->from;
        memcpy(res.data, r->data, r->size < sizeof(res.data) - 1 ? r->size : sizeof(res.data) - 1);
        hy_msg_free(r);
    }
    hy_send(ca->test, T_RESULT, &res, sizeof(res));
}

static void body_call_deferred_reply(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    struct caller_arg ca = {hy_self(), srv, C_DEFER, WAIT_NS};
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(ca);
    hy_pid c;
    HY_CHECK_EQ(hy_spawn_opt(caller, &ca, &so, &c), 0);
    expect_ev(E_DEFERRED, -1);
    /* the server holds the call without blocking: it serves others */
    HY_CHECK_EQ(ping(srv), 0);
    HY_CHECK_EQ(hy_mailbox_len(), 0); /* the caller is still waiting */
    /* a helper process replies, given only `from` */
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_RELEASE, NULL, 0), 0);
    struct ev h = expect_ev(E_HELPER, -1);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(T_RESULT, &m, WAIT_NS), 0);
    struct caller_result res;
    memcpy(&res, m->data, sizeof(res));
    hy_msg_free(m);
    HY_CHECK_EQ(res.rc, 0);
    HY_CHECK_EQ(res.tag, R_DEFERRED);
    HY_CHECK(strcmp(res.data, "later") == 0);
    HY_CHECK(hy_pid_eq(res.from, h.pid));
    HY_CHECK(!hy_pid_eq(res.from, srv));
    stop_normal(srv);
    expect_ev(E_TERM, -1);
}
BOTH_SHARDS(call_deferred_reply)

static void body_call_timeout_late_reply(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    struct hy_msg *r = NULL;
    uint64_t t0 = hy_now_ns();
    HY_CHECK_EQ(hy_gen_server_call(srv, C_STORE, NULL, 0, 20 * MS, &r, NULL), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 >= 20 * MS);
    HY_CHECK(r == NULL);
    expect_ev(E_STORED, -1);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    /* now the server replies late, then sends T_AFTER: same sender, same
     * path, so the reply would be queued before T_AFTER */
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_REPLY_LATE, NULL, 0), 0);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(T_AFTER, &m, WAIT_NS), 0);
    hy_msg_free(m);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    /* and the server is fine */
    HY_CHECK_EQ(ping(srv), 0);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(call_timeout_late_reply)

static void body_call_dead_server(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
    struct hy_msg *r = NULL;
    struct hy_reason why;
    memset(&why, 0, sizeof(why));
    /* infinite timeout: must still come back */
    HY_CHECK_EQ(hy_gen_server_call(srv, C_PING, NULL, 0, HY_INFINITY, &r, &why), HY_ENOPROC);
    HY_CHECK_EQ(why.kind, HY_REASON_NOPROC);
    HY_CHECK_EQ(hy_gen_server_call_name("gs_nobody", C_PING, NULL, 0, HY_INFINITY, &r, NULL),
                HY_ENOPROC);
    HY_CHECK_EQ(hy_gen_server_stop(srv, hy_reason_make(HY_REASON_NORMAL), WAIT_NS), HY_ENOPROC);
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_NOTE, NULL, 0), 0); /* cast: no error, as OTP */
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(call_dead_server)

static void body_call_server_dies(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    struct hy_reason die = hy_reason_user(12, "died in call");
    struct hy_msg *r = NULL;
    struct hy_reason why;
    memset(&why, 0, sizeof(why));
    HY_CHECK_EQ(hy_gen_server_call(srv, C_EXIT, &die, sizeof(die), HY_INFINITY, &r, &why),
                HY_EEXIT);
    CHECK_USER(why, 12, "died in call");
    HY_CHECK_EQ(hy_mailbox_len(), 0);

    /* a server without handle_call stops on a call (OTP's default) */
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.shard = shard;
    HY_CHECK_EQ(hy_gen_server_start(&empty_ops, NULL, &o, &srv), 0);
    memset(&why, 0, sizeof(why));
    HY_CHECK_EQ(hy_gen_server_call(srv, 5, NULL, 0, WAIT_NS, &r, &why), HY_EEXIT);
    HY_CHECK_EQ(why.kind, HY_REASON_USER);
    HY_CHECK(strstr(why.text, "unexpected call") != NULL);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(call_server_dies)

/* The server replies and stops at once: the caller gets the reply, and the
 * DOWN of its call monitor never lands in its mailbox. */
static void body_call_reply_then_stop(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    for (int i = 0; i < 20; i++) {
        hy_pid srv = start_ts(shard, &a);
        expect_ev(E_INIT, I_OK);
        struct hy_msg *r = NULL;
        HY_CHECK_EQ(hy_gen_server_call(srv, C_REPLY_STOP, NULL, 0, WAIT_NS, &r, NULL), 0);
        if (r) {
            HY_CHECK_EQ(r->tag, R_BYE);
            hy_msg_free(r);
        }
        /* barrier: a second monitor's DOWN comes after the first one's */
        wait_down(monitor(srv));
        expect_ev(E_TERM, -1);
        HY_CHECK_EQ(hy_mailbox_len(), 0);
    }
}
BOTH_SHARDS(call_reply_then_stop)

/* Makes a call (the caller's first monitor makes its signal record), then
 * the call of ca (the second call's monitor is the one a call keeps inline
 * in the caller's record while it is in flight), and reports as caller. */
static void ping_then_call(void *arg)
{
    const struct caller_arg *ca = arg;
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call(ca->srv, C_PING, NULL, 0, WAIT_NS, &r, NULL), 0);
    if (r)
        hy_msg_free(r);
    caller(arg);
}

static struct hy_proc_info info_of(hy_pid pid)
{
    struct hy_proc_info in;
    memset(&in, 0, sizeof(in));
    HY_CHECK_EQ(hy_proc_info(pid, &in), 0);
    return in;
}

/* A call in flight counts as one monitor of its caller; the server's entry
 * goes when the caller is killed during the call (its exit demonitors), and
 * when a call returns. The DOWN of the caller and, across shards, the FIFO
 * from this shard to the server's are the barriers. */
static void body_call_monitor_goes_with_caller(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    size_t base = info_of(srv).nmonitored_by;
    struct caller_arg ca = {hy_self(), srv, C_STORE, HY_INFINITY};
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(ca);
    hy_pid c;
    HY_CHECK_EQ(hy_spawn_opt(ping_then_call, &ca, &so, &c), 0);
    hy_ref cm = monitor(c);
    expect_ev(E_STORED, -1); /* the server holds the caller's second call */
    HY_CHECK_EQ(info_of(c).nmonitors, 1);
    HY_CHECK_EQ(info_of(srv).nmonitored_by, base + 1);
    HY_CHECK_EQ(hy_exit_pid(c, hy_reason_make(HY_REASON_KILL)), 0);
    HY_CHECK_EQ(wait_down(cm).kind, HY_REASON_KILLED);
    HY_CHECK_EQ(info_of(srv).nmonitored_by, base);
    /* calls that return leave nothing behind on either side */
    HY_CHECK_EQ(ping(srv), 0);
    HY_CHECK_EQ(ping(srv), 0);
    HY_CHECK_EQ(info_of(hy_self()).nmonitors, 0);
    HY_CHECK_EQ(info_of(srv).nmonitored_by, base);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(call_monitor_goes_with_caller)

/* A call from a process with a long queue of unrelated messages works and
 * leaves them all queued in order (the receive marker skips them). */
static void body_call_long_mailbox(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    uint64_t n = hy_test_scaled(100000);
    if (n < 100000)
        n = 100000;
    for (uint64_t i = 0; i < n; i++)
        HY_CHECK_EQ(hy_send(hy_self(), T_SEQ, &i, sizeof(i)), 0);
    HY_CHECK_EQ(hy_mailbox_len(), n);
    for (int k = 0; k < 10; k++) {
        struct hy_msg *r = NULL;
        HY_CHECK_EQ(hy_gen_server_call(srv, C_ECHO, "x", 1, WAIT_NS, &r, NULL), 0);
        if (r) {
            HY_CHECK_EQ(r->tag, R_ECHO);
            hy_msg_free(r);
        }
        HY_CHECK_EQ(ping(srv), 0);
    }
    /* a timed-out call with the long queue too */
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call(srv, C_STORE, NULL, 0, 1 * MS, &r, NULL), HY_ETIMEDOUT);
    expect_ev(E_STORED, -1);
    HY_CHECK_EQ(hy_mailbox_len(), n);
    for (uint64_t i = 0; i < n; i++) {
        struct hy_msg *m;
        if (hy_recv(&m, 0) != 0) {
            HY_CHECK(0);
            break;
        }
        uint64_t v = UINT64_MAX;
        if (m->size == sizeof(v))
            memcpy(&v, m->data, sizeof(v));
        if (m->tag != T_SEQ || v != i) {
            HY_CHECK_EQ(v, i);
            hy_msg_free(m);
            break;
        }
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
}
BOTH_SHARDS(call_long_mailbox)

/* ---- handle_info / handle_continue ------------------------------------------------------- */

static void body_info_stray_message(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    HY_CHECK_EQ(hy_send(srv, T_STRAY, "junk", 4), 0);
    expect_ev(E_INFO, T_STRAY);
    HY_CHECK_EQ(hy_send(srv, 77, NULL, 0), 0);
    expect_ev(E_INFO, 77);
    HY_CHECK_EQ(ping(srv), 2);
    stop_normal(srv);
    struct ev e = expect_ev(E_TERM, -1);
    HY_CHECK_EQ(e.reason.kind, HY_REASON_NORMAL);
}
BOTH_SHARDS(info_stray_message)

static void body_info_default_ignores(void *arg)
{
    int shard = *(int *)arg;
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.shard = shard;
    hy_pid srv;
    HY_CHECK_EQ(hy_gen_server_start(&plain_ops, NULL, &o, &srv), 0);
    for (int i = 0; i < 100; i++)
        HY_CHECK_EQ(hy_send(srv, (uint64_t)i, "junk", 4), 0);
    HY_CHECK_EQ(hy_gen_server_cast(srv, 3, NULL, 0), 0); /* default handle_cast */
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call(srv, 1, "ok", 2, WAIT_NS, &r, NULL), 0);
    hy_msg_free(r);
    /* consumed, not left queued */
    struct hy_proc_info info;
    HY_CHECK_EQ(hy_proc_info(srv, &info), 0);
    HY_CHECK_EQ(info.mailbox_len, 0);
    hy_ref mref = monitor(srv);
    HY_CHECK_EQ(hy_gen_server_stop(srv, hy_reason_user(1, "done"), WAIT_NS), 0);
    CHECK_USER(wait_down(mref), 1, "done");
}
BOTH_SHARDS(info_default_ignores)

static void body_continue_after_init(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_CONT);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_CONT);
    /* init queued a message to itself before returning: continue first */
    expect_ev(E_CONT, 7);
    expect_ev(E_INFO, T_STRAY);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
}
BOTH_SHARDS(continue_after_init)

static void body_continue_after_callback(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    int64_t v = 42, w = 43;
    /* both casts are queued before the server runs again */
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_CONT, &v, sizeof(v)), 0);
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_NOTE, &w, sizeof(w)), 0);
    HY_CHECK_EQ(hy_send(srv, T_STRAY, NULL, 0), 0);
    expect_ev(E_CAST, 42);
    expect_ev(E_CONT, 42);
    expect_ev(E_CAST, 43);
    expect_ev(E_INFO, T_STRAY);
    /* handle_continue may stop the server: terminate runs with its reason */
    hy_ref mref = monitor(srv);
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_CONT_STOP, &v, sizeof(v)), 0);
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_NOTE, &w, sizeof(w)), 0);
    expect_ev(E_CAST, 42);
    expect_ev(E_CONT, 1000);
    struct ev e = expect_ev(E_TERM, -1);
    CHECK_USER(e.reason, 10, "stop from continue");
    CHECK_USER(wait_down(mref), 10, "stop from continue");
    expect_no_ev(); /* the second cast was never handled */
}
BOTH_SHARDS(continue_after_callback)

/* ---- terminate ----------------------------------------------------------------------- */

static void body_terminate_on_stop_result(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    hy_ref mref = monitor(srv);
    struct hy_reason r = hy_reason_user(3, "bye");
    HY_CHECK_EQ(hy_gen_server_cast(srv, K_STOP, &r, sizeof(r)), 0);
    struct ev e = expect_ev(E_TERM, -1);
    CHECK_USER(e.reason, 3, "bye");
    CHECK_USER(wait_down(mref), 3, "bye");
}
BOTH_SHARDS(terminate_on_stop_result)

static void body_terminate_on_stop_call(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    hy_ref mref = monitor(srv);
    HY_CHECK_EQ(hy_gen_server_stop(srv, hy_reason_user(4, "asked"), WAIT_NS), 0);
    /* stop returned after the server was gone: its events are all queued */
    struct ev e = expect_ev(E_TERM, -1);
    CHECK_USER(e.reason, 4, "asked");
    CHECK_USER(wait_down(mref), 4, "asked");

    /* a terminate that does not finish in time: HY_ETIMEDOUT, still alive */
    a.block_terminate = true;
    srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    mref = monitor(srv);
    uint64_t t0 = hy_now_ns();
    HY_CHECK_EQ(hy_gen_server_stop(srv, hy_reason_make(HY_REASON_SHUTDOWN), 20 * MS), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 >= 20 * MS);
    e = expect_ev(E_TERM, -1);
    HY_CHECK_EQ(e.reason.kind, HY_REASON_SHUTDOWN);
    struct hy_proc_info info;
    HY_CHECK_EQ(hy_proc_info(srv, &info), 0);
    HY_CHECK_EQ(hy_send(srv, T_GO, NULL, 0), 0);
    HY_CHECK_EQ(wait_down(mref).kind, HY_REASON_SHUTDOWN);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(terminate_on_stop_call)

struct parent_arg {
    hy_pid test;
    int shard;
    bool trap;
};

/* Starts a linked server, reports its pid, waits for T_GO, exits. */
static void parent_proc(void *arg)
{
    const struct parent_arg *pa = arg;
    struct ts_arg a;
    memset(&a, 0, sizeof(a));
    a.test = pa->test;
    a.mode = I_OK;
    a.trap = pa->trap;
    struct hy_gen_server_opts o = gopts(pa->shard, &a);
    hy_pid srv = HY_PID_NONE;
    HY_CHECK_EQ(hy_gen_server_start_link(&ts_ops, &a, &o, &srv), 0);
    HY_CHECK(hy_pid_eq(srv, HY_PID_NONE) == false);
    struct hy_msg *m;
    if (hy_recv_tag(T_GO, &m, WAIT_NS) == 0)
        hy_msg_free(m);
    hy_exit(hy_reason_user(9, "parent gone"));
}

static void body_terminate_on_parent_exit(void *arg)
{
    int shard = *(int *)arg;
    for (int trap = 1; trap >= 0; trap--) {
        struct parent_arg pa = {hy_self(), shard, trap != 0};
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.arg_size = sizeof(pa);
        hy_pid parent;
        HY_CHECK_EQ(hy_spawn_opt(parent_proc, &pa, &so, &parent), 0);
        struct ev e = expect_ev(E_INIT, I_OK);
        hy_pid srv = e.pid;
        hy_ref mref = monitor(srv);
        HY_CHECK_EQ(hy_send(parent, T_GO, NULL, 0), 0);
        if (trap) {
            /* trapping: terminate runs with the parent's reason */
            e = expect_ev(E_TERM, -1);
            HY_CHECK(hy_pid_eq(e.pid, srv));
            CHECK_USER(e.reason, 9, "parent gone");
        }
        CHECK_USER(wait_down(mref), 9, "parent gone");
        /* not trapping: killed by the signal, no terminate (its event would
         * precede the DOWN) */
        expect_no_ev();
    }
}
BOTH_SHARDS(terminate_on_parent_exit)

/* A trapping server's EXIT from a linked process that is not its parent is
 * an ordinary message for handle_info. */
static void short_lived(void *arg)
{
    (void)arg;
    hy_exit(hy_reason_user(1, "not the parent"));
}

static int linker_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    (void)tag;
    (void)data;
    (void)len;
    (void)gs;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.link = true;
    hy_spawn_opt(short_lived, NULL, &o, NULL);
    return HY_GS_OK;
}

static int linker_init(struct hy_gs *gs, void *arg)
{
    hy_gs_set_state(gs, arg);
    hy_trap_exit(true, NULL);
    return HY_GS_OK;
}

static int linker_info(struct hy_gs *gs, const struct hy_msg *m)
{
    const hy_pid *test = hy_gs_state(gs);
    struct ev e;
    memset(&e, 0, sizeof(e));
    e.kind = E_INFO;
    e.a = (int64_t)(m->tag == HY_TAG_EXIT);
    if (m->tag == HY_TAG_EXIT)
        e.reason = ((const struct hy_exit_info *)m->data)->reason;
    hy_send(*test, T_EV, &e, sizeof(e));
    return HY_GS_OK;
}

static const struct hy_gen_server_ops linker_ops = {
    .init = linker_init,
    .handle_cast = linker_cast,
    .handle_info = linker_info,
};

static void body_info_exit_from_non_parent(void *arg)
{
    int shard = *(int *)arg;
    hy_pid test = hy_self();
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.shard = shard;
    o.arg_size = sizeof(test);
    hy_pid srv;
    HY_CHECK_EQ(hy_gen_server_start_link(&linker_ops, &test, &o, &srv), 0);
    HY_CHECK_EQ(hy_gen_server_cast(srv, 0, NULL, 0), 0);
    struct ev e = expect_ev(E_INFO, 1);
    CHECK_USER(e.reason, 1, "not the parent");
    /* still serving */
    HY_CHECK_EQ(hy_gen_server_cast(srv, 0, NULL, 0), 0);
    expect_ev(E_INFO, 1);
    stop_normal(srv);
}
BOTH_SHARDS(info_exit_from_non_parent)

/* ---- cast ------------------------------------------------------------------------------ */

static void body_cast(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    for (int64_t i = 0; i < 100; i++)
        HY_CHECK_EQ(hy_gen_server_cast(srv, K_NOTE, &i, sizeof(i)), 0);
    for (int64_t i = 0; i < 100; i++)
        expect_ev(E_CAST, i); /* in order */
    stop_normal(srv);
    expect_ev(E_TERM, -1);
}
BOTH_SHARDS(cast)

static void body_cast_after(void *arg)
{
    int shard = *(int *)arg;
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(shard, &a);
    expect_ev(E_INIT, I_OK);
    int64_t v = 5;
    uint64_t t0 = hy_now_ns();
    hy_ref tref;
    HY_CHECK_EQ(hy_gen_server_cast_after(30 * MS, srv, K_NOTE, &v, sizeof(v), &tref), 0);
    struct ev e = expect_ev(E_CAST, 5);
    HY_CHECK(e.t - t0 >= 30 * MS);
    HY_CHECK(hy_now_ns() - t0 >= 30 * MS);

    /* cancelled: never delivered (cancel's guarantee); a later cast_after
     * still arrives */
    int64_t w = 6, x = 7;
    HY_CHECK_EQ(hy_gen_server_cast_after(1000 * MS, srv, K_NOTE, &w, sizeof(w), &tref), 0);
    HY_CHECK_EQ(hy_timer_cancel(tref, NULL), 0);
    HY_CHECK_EQ(hy_gen_server_cast_after(1 * MS, srv, K_NOTE, &x, sizeof(x), NULL), 0);
    expect_ev(E_CAST, 7);
    HY_CHECK_EQ(hy_gen_server_cast_after(1, srv, HY_GS_TAG_MAX, NULL, 0, NULL), HY_EINVAL);
    stop_normal(srv);
    expect_ev(E_TERM, -1);
    expect_no_ev();
}
BOTH_SHARDS(cast_after)

/* ---- across shards ------------------------------------------------------------------- */

static void body_cross_shard_start(void *arg)
{
    (void)arg;
    /* the init argument lives on this process's stack: copied for shard 1 */
    struct ts_arg a = targ(I_OK);
    hy_pid srv = start_ts(1, &a);
    HY_CHECK_EQ(hy_pid_shard(srv), 1);
    struct ev e = expect_ev(E_INIT, I_OK);
    HY_CHECK(hy_pid_eq(e.pid, srv));
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call(srv, C_SHARD, NULL, 0, WAIT_NS, &r, NULL), 0);
    if (r) {
        int64_t s;
        memcpy(&s, r->data, sizeof(s));
        HY_CHECK_EQ(s, 1);
        hy_msg_free(r);
    }
    /* a server on shard 1 calling one on shard 0 and back */
    hy_pid srv0 = start_ts(0, &a);
    expect_ev(E_INIT, I_OK);
    struct caller_arg ca = {hy_self(), srv0, C_SHARD, WAIT_NS};
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.shard = 1;
    so.arg_size = sizeof(ca);
    HY_CHECK_EQ(hy_spawn_opt(caller, &ca, &so, NULL), 0);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(T_RESULT, &m, WAIT_NS), 0);
    struct caller_result res;
    memcpy(&res, m->data, sizeof(res));
    hy_msg_free(m);
    HY_CHECK_EQ(res.rc, 0);
    HY_CHECK_EQ(res.tag, R_SHARD);
    stop_normal(srv);
    stop_normal(srv0);
    expect_ev(E_TERM, -1);
    expect_ev(E_TERM, -1);
}
ONE_TEST(cross_shard_start)

/* ---- the seed's stack example ------------------------------------------------------------ */

static void pop(hy_pid srv, const char *want)
{
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call(srv, STACK_POP, NULL, 0, WAIT_NS, &r, NULL), 0);
    if (!r)
        return;
    HY_CHECK_EQ(r->tag, STACK_REPLY);
    HY_CHECK_EQ(r->size, strlen(want));
    HY_CHECK(r->size == strlen(want) && memcmp(r->data, want, r->size) == 0);
    hy_msg_free(r);
}

static void body_stack_example(void *arg)
{
    int shard = *(int *)arg;
    static const char init[] = "hello\0world\0";
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = "stack";
    o.shard = shard;
    o.arg_size = sizeof(init);
    hy_pid srv;
    HY_CHECK_EQ(hy_gen_server_start_link(&stack_server_ops, (void *)init, &o, &srv), 0);
    pop(srv, "hello");
    HY_CHECK_EQ(hy_gen_server_cast(srv, STACK_PUSH, "rust", 4), 0);
    pop(srv, "rust");
    pop(srv, "world");
    struct hy_msg *r = NULL;
    HY_CHECK_EQ(hy_gen_server_call_name("stack", STACK_POP, NULL, 0, WAIT_NS, &r, NULL), 0);
    if (r) {
        HY_CHECK_EQ(r->tag, STACK_EMPTY);
        hy_msg_free(r);
    }
    stop_normal(srv);
}
BOTH_SHARDS(stack_example)

/* ---- crash reports ---------------------------------------------------------------- */

struct crash_seen {
    _Atomic int n;
    int type;
    char name[HY_NAME_MAX];
    char last[128];
    struct hy_reason reason;
};
static struct crash_seen crash_seen;

static void crash_report_handler(const struct hy_report *r, void *ctx)
{
    struct crash_seen *c = ctx;
    if (r->type != HY_REPORT_CRASH)
        return;
    c->type = r->type;
    snprintf(c->name, sizeof(c->name), "%s", r->name ? r->name : "");
    snprintf(c->last, sizeof(c->last), "%s", r->last_message ? r->last_message : "");
    if (r->reason)
        c->reason = *r->reason;
    atomic_fetch_add(&c->n, 1);
}

/* A NULL write the optimiser cannot remove (the address is laundered), not
 * instrumented (UBSan would report it instead of letting it fault). */
#if defined(__clang__)
__attribute__((noinline, no_sanitize("address", "undefined")))
#else
__attribute__((noinline, no_sanitize_address, no_sanitize("undefined")))
#endif
static void crash_null_write(void)
{
    volatile int *p = NULL;
    __asm__ volatile("" : "+r"(p));
    *p = 1;
}

static int crashing_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len,
                         hy_gs_from from)
{
    (void)gs;
    (void)tag;
    (void)data;
    (void)len;
    (void)from;
    crash_null_write();
    return HY_GS_OK;
}

static const struct hy_gen_server_ops crashing_ops = {.handle_call = crashing_call};

static void body_crash_report_last_message(void *arg)
{
    (void)arg;
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = "crashsrv";
    hy_pid srv;
    HY_CHECK_EQ(hy_gen_server_start(&crashing_ops, NULL, &o, &srv), 0);
    struct hy_msg *r = NULL;
    struct hy_reason why;
    HY_CHECK(hy_gen_server_call(srv, 7, "abc", 3, WAIT_NS, &r, &why) != 0);
    HY_CHECK_EQ(why.kind, HY_REASON_CRASH);
    /* the report is made by the server's exit handler, before its DOWN */
    HY_CHECK_EQ(atomic_load(&crash_seen.n), 1);
}

/* A GenServer that dies of a fault inside a callback is reported with its
 * name and the message it was handling. */
static void test_gen_server_crash_report_last_message(void **state)
{
    (void)state;
    memset(&crash_seen, 0, sizeof(crash_seen));
    hy_report_set_handler(crash_report_handler, &crash_seen);
    hy_test_run(2, body_crash_report_last_message, NULL);
    hy_report_set_handler(NULL, NULL);
    assert_int_equal(atomic_load(&crash_seen.n), 1);
    assert_string_equal(crash_seen.name, "crashsrv");
    assert_int_equal(crash_seen.reason.kind, HY_REASON_CRASH);
    if (!strstr(crash_seen.last, "call tag=0x7 from=<") || !strstr(crash_seen.last, "size=3"))
        print_error("last_message: %s\n", crash_seen.last);
    assert_non_null(strstr(crash_seen.last, "call tag=0x7 from=<"));
    assert_non_null(strstr(crash_seen.last, "size=3"));
}

/* A server pid on a node that cannot be reached (distribution is off):
 * call and stop come back at once with the dead-server code, even with an
 * infinite timeout, and nothing is left in the mailbox. */
static void body_call_unreachable_node(void *arg)
{
    (void)arg;
    hy_pid srv = hy_pid_make(hy_node_id() + 7, 1, 0, 1, 1);
    struct hy_msg *r = NULL;
    struct hy_reason why;
    memset(&why, 0, sizeof(why));
    HY_CHECK_EQ(hy_gen_server_call(srv, C_PING, NULL, 0, HY_INFINITY, &r, &why), HY_ENOPROC);
    HY_CHECK_EQ(why.kind, HY_REASON_NOCONNECTION);
    HY_CHECK_EQ(hy_gen_server_stop(srv, hy_reason_make(HY_REASON_NORMAL), WAIT_NS), HY_ENOPROC);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_gen_server_call_unreachable_node(void **state)
{
    (void)state;
    hy_test_run(1, body_call_unreachable_node, NULL);
}

/* Stopping yourself fails at once (OTP: calling_self), as calling yourself. */
static void body_stop_self(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_gen_server_stop(hy_self(), hy_reason_make(HY_REASON_NORMAL), WAIT_NS),
                HY_EINVAL);
    HY_CHECK_EQ(hy_gen_server_stop(hy_self(), hy_reason_make(HY_REASON_NORMAL), HY_INFINITY),
                HY_EINVAL);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_gen_server_stop_self(void **state)
{
    (void)state;
    hy_test_run(1, body_stop_self, NULL);
}

/* The older hy_gs_* / hy_sup_* names are the canonical functions
 * themselves, not copies. */
static void test_gen_server_old_names_are_aliases(void **state)
{
    (void)state;
    assert_ptr_equal((void *)hy_gs_state, (void *)hy_gen_server_state);
    assert_ptr_equal((void *)hy_gs_set_state, (void *)hy_gen_server_set_state);
    assert_ptr_equal((void *)hy_gs_stop, (void *)hy_gen_server_stop_reason);
    assert_ptr_equal((void *)hy_gs_continue, (void *)hy_gen_server_continue);
    assert_ptr_equal((void *)hy_gs_parent, (void *)hy_gen_server_parent);
    assert_ptr_equal((void *)hy_sup_start_gen_server, (void *)hy_supervisor_start_gen_server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH_TESTS(init_ok),
        BOTH_TESTS(init_ignore),
        BOTH_TESTS(init_stop),
        BOTH_TESTS(init_crash),
        BOTH_TESTS(init_timeout),
        BOTH_TESTS(start_name_already_started),
        cmocka_unit_test(test_gen_server_start_bad_args),
        cmocka_unit_test(test_gen_server_old_names_are_aliases),
        cmocka_unit_test(test_gen_server_outside_a_process),
        cmocka_unit_test(test_gen_server_call_unreachable_node),
        cmocka_unit_test(test_gen_server_stop_self),
        BOTH_TESTS(call_reply),
        BOTH_TESTS(call_deferred_reply),
        BOTH_TESTS(call_timeout_late_reply),
        BOTH_TESTS(call_dead_server),
        BOTH_TESTS(call_server_dies),
        BOTH_TESTS(call_reply_then_stop),
        BOTH_TESTS(call_monitor_goes_with_caller),
        BOTH_TESTS(call_long_mailbox),
        BOTH_TESTS(info_stray_message),
        BOTH_TESTS(info_default_ignores),
        BOTH_TESTS(info_exit_from_non_parent),
        BOTH_TESTS(continue_after_init),
        BOTH_TESTS(continue_after_callback),
        BOTH_TESTS(terminate_on_stop_result),
        BOTH_TESTS(terminate_on_stop_call),
        BOTH_TESTS(terminate_on_parent_exit),
        BOTH_TESTS(cast),
        BOTH_TESTS(cast_after),
        cmocka_unit_test(test_gen_server_cross_shard_start),
        BOTH_TESTS(stack_example),
        cmocka_unit_test(test_gen_server_crash_report_last_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
