/* Tests of core/msg.c: send and receive (local, cross-shard, from foreign
 * threads), payload integrity, errors, selective receive and its order, the
 * receive marker, timeouts, sends to the dead, bounded mailboxes, zero-copy
 * sends and buffers going home.
 *
 * Test bodies run as processes (hy_test_run): they record failures with
 * HY_CHECK instead of cmocka's assertions. Every receive that should succeed
 * has a generous deadline, so a lost message fails the test rather than
 * hanging it; a message that must NOT arrive is shown absent with a later
 * message from the same sender as a barrier (per-pair FIFO order). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS) /* for a message that must come */
#define WAIT_MS 10000u

enum {
    T_DATA = 1,
    T_STOP,
    T_DONE,
    T_READY,
    T_GO,
    T_PING,
    T_PONG,
    T_EXITED,
    T_BARRIER,
    T_MAX,
    T_NEVER,
    T_HELD,
};

/* ---- helpers ------------------------------------------------------------- */

static hy_pid spawn_opts(hy_proc_fn fn, void *arg, struct hy_spawn_opts *o)
{
    hy_pid pid = HY_PID_NONE;
    int rc = hy_spawn_opt(fn, arg, o, &pid);
    HY_CHECK_EQ(rc, 0);
    return pid;
}

static hy_pid spawn_on(int shard, hy_proc_fn fn, void *arg)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = shard;
    return spawn_opts(fn, arg, &o);
}

/* Receives a message with tag within WAIT_NS; NULL (and a failed check) if
 * none came. */

static struct hy_msg *must_recv(void)
{
    struct hy_msg *m = NULL;
    int rc = hy_recv(&m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    return rc == 0 ? m : NULL;
}

static void check_empty(void)
{
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    int rc = hy_recv(&m, HY_NOWAIT);
    HY_CHECK_EQ(rc, HY_ETIMEDOUT);
    if (rc == 0)
        hy_msg_free(m);
}

static uint32_t payload_u32(const struct hy_msg *m)
{
    uint32_t v = UINT32_MAX;
    if (m->size >= sizeof(v))
        memcpy(&v, m->data, sizeof(v));
    return v;
}


static uint8_t pattern(size_t i, size_t size)
{
    return (uint8_t)(i * 131u + size * 7u + (i >> 8) + 1u);
}

static uint8_t bigbuf[(1u << 20) + 1];

static void fill(size_t size)
{
    for (size_t i = 0; i < size; i++)
        bigbuf[i] = pattern(i, size);
}

static bool intact(const struct hy_msg *m, size_t size)
{
    if (m->size != size || m->cap < size || ((uintptr_t)m->data & 15u) != 0)
        return false;
    for (size_t i = 0; i < size; i++)
        if (m->data[i] != pattern(i, size))
            return false;
    return true;
}

static uint64_t stat0(size_t off)
{
    struct hy_stats s;
    HY_CHECK_EQ(hy_stats_total(&s), 0);
    return *(uint64_t *)((char *)&s + off);
}
#define TOTAL(field) stat0(offsetof(struct hy_stats, field))

static uint64_t shard_stat(unsigned shard, size_t off)
{
    struct hy_stats s;
    HY_CHECK_EQ(hy_stats_get(shard, &s), 0);
    return *(uint64_t *)((char *)&s + off);
}
#define SHARD(shard, field) shard_stat(shard, offsetof(struct hy_stats, field))

/* Replies to every message with its tag and payload (copied) until T_STOP. */
static void echo_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        uint64_t tag = m->tag;
        if (tag != T_STOP)
            HY_CHECK_EQ(hy_send(m->from, tag, m->data, m->size), 0);
        hy_msg_free(m);
        if (tag == T_STOP)
            return;
    }
}

/* ---- send / receive and payload integrity ---------------------------------- */

static const size_t sizes[] = {0, 1, 15, 16, 100, 4000, 70000, 1u << 20};

static void payload_roundtrip(hy_pid echo)
{
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t size = sizes[k];
        fill(size);
        HY_CHECK_EQ(hy_send(echo, T_DATA + 100 + k, bigbuf, size), 0);
        memset(bigbuf, 0, size); /* the reply must not alias our buffer */
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        HY_CHECK_EQ(m->tag, T_DATA + 100 + k);
        HY_CHECK(intact(m, size));
        HY_CHECK(hy_pid_eq(m->from, echo));
        HY_CHECK(hy_pid_eq(m->to, hy_self()));
        HY_CHECK(hy_ref_is_none(m->ref));
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_send(echo, T_STOP, NULL, 0), 0);
}

static void body_payload_local(void *arg)
{
    (void)arg;
    uint64_t sent0 = SHARD(0, msgs_sent_local);
    uint64_t recv0 = SHARD(0, msgs_received);
    payload_roundtrip(spawn_on(HY_SHARD_SELF, echo_main, NULL));
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    /* n requests + n replies + the stop; the echo may not have taken the
     * stop yet */
    HY_CHECK(SHARD(0, msgs_sent_local) - sent0 >= 2 * n + 1);
    HY_CHECK(SHARD(0, msgs_received) - recv0 >= 2 * n);
    /* a message to oneself */
    fill(100);
    HY_CHECK_EQ(hy_send(hy_self(), T_DATA, bigbuf, 100), 0);
    HY_CHECK_EQ(hy_mailbox_len(), 1);
    struct hy_msg *m = must_recv();
    if (m) {
        HY_CHECK(intact(m, 100));
        HY_CHECK(hy_pid_eq(m->from, hy_self()));
        hy_msg_free(m);
    }
}

static void test_msg_payload_local(void **state)
{
    (void)state;
    hy_test_run(1, body_payload_local, NULL);
}

static void body_payload_cross(void *arg)
{
    (void)arg;
    uint64_t cross0 = SHARD(0, msgs_sent_cross);
    payload_roundtrip(spawn_on(1, echo_main, NULL));
    HY_CHECK(SHARD(0, msgs_sent_cross) - cross0 >= sizeof(sizes) / sizeof(sizes[0]) + 1);
}

static void test_msg_payload_cross_shard(void **state)
{
    (void)state;
    hy_test_run(2, body_payload_cross, NULL);
}

/* Every payload length the fast paths copy inline (0 .. 48 bytes, one
 * byte past it for the general path), each from a source buffer of exactly
 * that size (so that a sanitizer run catches a read past it), to a process
 * of the same shard and of another: the echo's copy comes back intact. */
static void small_lengths_roundtrip(hy_pid echo)
{
    for (size_t size = 0; size <= 49; size++) {
        unsigned char *src = malloc(size ? size : 1);
        HY_CHECK(src != NULL);
        if (!src)
            return;
        for (size_t i = 0; i < size; i++)
            src[i] = (unsigned char)pattern(i, size);
        HY_CHECK_EQ(hy_send(echo, T_DATA + 1000 + size, size ? src : NULL, size), 0);
        memset(src, 0, size);
        free(src);
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        HY_CHECK_EQ(m->tag, T_DATA + 1000 + size);
        HY_CHECK(intact(m, size));
        hy_msg_free(m);
    }
}

static void body_small_lengths(void *arg)
{
    (void)arg;
    hy_pid local = spawn_on(HY_SHARD_SELF, echo_main, NULL);
    hy_pid remote = spawn_on(1, echo_main, NULL);
    small_lengths_roundtrip(local);
    small_lengths_roundtrip(remote);
    HY_CHECK_EQ(hy_send(local, T_STOP, NULL, 0), 0);
    HY_CHECK_EQ(hy_send(remote, T_STOP, NULL, 0), 0);
}

static void test_msg_small_payloads_every_length(void **state)
{
    (void)state;
    hy_test_run(2, body_small_lengths, NULL);
}

/* ---- size limit, system tags, bad arguments ------------------------------- */

#define SMALL_MAX 5000u

static void body_emsgsize(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    hy_pid echo = spawn_on(1, echo_main, NULL);
    uint64_t sent0 = SHARD(0, msgs_sent_local) + SHARD(0, msgs_sent_cross);
    hy_ref ref;
    HY_CHECK_EQ(hy_ref_make(&ref), 0);
    struct hy_msg *m = NULL;
    fill(SMALL_MAX + 1);
    HY_CHECK_EQ(hy_send(self, T_DATA, bigbuf, SMALL_MAX + 1), HY_EMSGSIZE);
    HY_CHECK_EQ(hy_send(echo, T_DATA, bigbuf, SMALL_MAX + 1), HY_EMSGSIZE);
    HY_CHECK_EQ(hy_send_ref(echo, T_DATA, ref, bigbuf, SMALL_MAX + 1), HY_EMSGSIZE);
    HY_CHECK_EQ(hy_send_foreign(echo, T_DATA, bigbuf, SMALL_MAX + 1), HY_EMSGSIZE);
    HY_CHECK_EQ(hy_msg_alloc(SMALL_MAX + 1, &m), HY_EMSGSIZE);
    HY_CHECK_EQ(hy_msg_alloc((size_t)1 << 40, &m), HY_EMSGSIZE);
    /* nothing was counted as sent */
    HY_CHECK_EQ(SHARD(0, msgs_sent_local) + SHARD(0, msgs_sent_cross), sent0);

    /* exactly the maximum is fine; the barrier proves nothing came before */
    fill(SMALL_MAX);
    HY_CHECK_EQ(hy_send(self, T_MAX, bigbuf, SMALL_MAX), 0);
    HY_CHECK_EQ(hy_send(self, T_BARRIER, NULL, 0), 0);
    m = must_recv();
    if (m) {
        HY_CHECK_EQ(m->tag, T_MAX);
        HY_CHECK(intact(m, SMALL_MAX));
        hy_msg_free(m);
    }
    m = must_recv();
    if (m) {
        HY_CHECK_EQ(m->tag, T_BARRIER);
        hy_msg_free(m);
    }
    check_empty();

    /* across shards: the echo's first reply is the one of the valid send */
    HY_CHECK_EQ(hy_send(echo, T_MAX, bigbuf, SMALL_MAX), 0);
    HY_CHECK_EQ(hy_send(echo, T_BARRIER, NULL, 0), 0);
    m = must_recv();
    if (m) {
        HY_CHECK_EQ(m->tag, T_MAX);
        HY_CHECK(intact(m, SMALL_MAX));
        hy_msg_free(m);
    }
    m = must_recv();
    if (m) {
        HY_CHECK_EQ(m->tag, T_BARRIER);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_send(echo, T_STOP, NULL, 0), 0);
    check_empty();
}

static void test_msg_too_large_is_rejected(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.max_message_size = SMALL_MAX;
    hy_test_run_cfg(&cfg, body_emsgsize, NULL);
}

static void body_einval(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    hy_ref ref;
    HY_CHECK_EQ(hy_ref_make(&ref), 0);
    uint32_t v = 7;
    HY_CHECK_EQ(hy_send(self, HY_TAG_SYSTEM, &v, sizeof(v)), HY_EINVAL);
    HY_CHECK_EQ(hy_send(self, HY_TAG_SYSTEM | T_DATA, &v, sizeof(v)), HY_EINVAL);
    HY_CHECK_EQ(hy_send_ref(self, HY_TAG_SYSTEM | 5, ref, NULL, 0), HY_EINVAL);
    HY_CHECK_EQ(hy_send_foreign(self, HY_TAG_SYSTEM | 5, NULL, 0), HY_EINVAL);
    HY_CHECK_EQ(hy_send(self, T_DATA, NULL, 4), HY_EINVAL);
    HY_CHECK_EQ(hy_msg_send(self, NULL), HY_EINVAL);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_msg_alloc(8, NULL), HY_EINVAL);
    /* a system tag on a zero-copy send: the buffer is freed (the clean
     * shutdown check sees it home) and nothing is sent */
    HY_CHECK_EQ(hy_msg_alloc(8, &m), 0);
    if (m) {
        m->tag = HY_TAG_SYSTEM | 1;
        HY_CHECK_EQ(hy_msg_send(self, m), HY_EINVAL);
    }
    HY_CHECK_EQ(hy_recv_match(NULL, NULL, &m, HY_NOWAIT), HY_EINVAL);
    HY_CHECK_EQ(hy_recv(NULL, HY_NOWAIT), HY_EINVAL);
    /* a NULL payload of length 0 is fine */
    HY_CHECK_EQ(hy_send(self, T_BARRIER, NULL, 0), 0);
    m = must_recv();
    if (m) {
        HY_CHECK_EQ(m->tag, T_BARRIER);
        HY_CHECK_EQ(m->size, 0);
        hy_msg_free(m);
    }
    check_empty();
}

static void test_msg_invalid_arguments(void **state)
{
    (void)state;
    hy_test_run(1, body_einval, NULL);
}

/* ---- outside a process ------------------------------------------------------ */

struct outside {
    int recv, recv_tag, recv_ref, recv_match, send, alloc, yield;
    size_t mblen;
};

static int match_any(const struct hy_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    return 1;
}

static void try_outside(struct outside *o)
{
    struct hy_msg *m = NULL;
    o->recv = hy_recv(&m, HY_NOWAIT);
    o->recv_tag = hy_recv_tag(T_DATA, &m, 1000);
    o->recv_ref = hy_recv_ref(HY_REF_NONE, &m, HY_INFINITY);
    o->recv_match = hy_recv_match(match_any, NULL, &m, HY_INFINITY);
    o->send = hy_send(HY_PID_NONE, T_DATA, NULL, 0);
    m = NULL;
    o->alloc = hy_msg_alloc(8, &m);
    hy_msg_free(m); /* on a shard (exit handler) the allocation succeeds */
    o->yield = hy_yield();
    o->mblen = hy_mailbox_len();
}

static void check_outside(const struct outside *o, int send_rc)
{
    HY_CHECK_EQ(o->recv, HY_ENOTPROC);
    HY_CHECK_EQ(o->recv_tag, HY_ENOTPROC);
    HY_CHECK_EQ(o->recv_ref, HY_ENOTPROC);
    HY_CHECK_EQ(o->recv_match, HY_ENOTPROC);
    HY_CHECK_EQ(o->send, send_rc);
    HY_CHECK_EQ(o->yield, HY_ENOTPROC);
    HY_CHECK_EQ(o->mblen, 0);
}

static void *outside_thread(void *arg)
{
    try_outside(arg);
    return NULL;
}

static struct {
    hy_pid parent;
    struct outside in_handler;
} outs;

static void outside_on_exit(void *arg)
{
    (void)arg;
    /* a shard callback: on a shard thread, but not a process */
    try_outside(&outs.in_handler);
    hy_test_send_u32(outs.parent, T_EXITED, 0);
}

static void outside_child(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_on_exit(outside_on_exit, NULL), 0);
}

static void body_outside(void *arg)
{
    (void)arg;
    /* a plain thread while the runtime runs */
    struct outside o;
    pthread_t t;
    HY_CHECK_EQ(pthread_create(&t, NULL, outside_thread, &o), 0);
    pthread_join(t, NULL);
    check_outside(&o, HY_ENOTSHARD);
    HY_CHECK_EQ(o.alloc, HY_ENOTSHARD);
    /* an exit handler: on the shard, outside any process */
    outs.parent = hy_self();
    spawn_on(HY_SHARD_SELF, outside_child, NULL);
    struct hy_msg *m = hy_test_must_recv_tag(T_EXITED, WAIT_NS);
    hy_msg_free(m);
    check_outside(&outs.in_handler, 0); /* shards may send, to HY_PID_NONE: dropped */
    HY_CHECK_EQ(outs.in_handler.alloc, 0);
}

static void test_msg_recv_outside_process(void **state)
{
    (void)state;
    /* before any runtime exists */
    struct hy_msg *m = NULL;
    assert_int_equal(hy_recv(&m, HY_NOWAIT), HY_ENOTPROC);
    assert_int_equal(hy_recv(&m, HY_INFINITY), HY_ENOTPROC);
    assert_int_equal(hy_recv_tag(T_DATA, &m, HY_INFINITY), HY_ENOTPROC);
    assert_int_equal(hy_recv_ref(HY_REF_NONE, &m, HY_INFINITY), HY_ENOTPROC);
    assert_int_equal(hy_recv_match(match_any, NULL, &m, HY_INFINITY), HY_ENOTPROC);
    assert_int_equal(hy_mailbox_len(), 0);
    assert_int_equal(hy_send(HY_PID_NONE, T_DATA, NULL, 0), HY_ENOTSHARD);
    assert_int_equal(hy_msg_alloc(8, &m), HY_ENOTSHARD);
    assert_int_equal(hy_send_foreign(HY_PID_NONE, T_DATA, NULL, 0), HY_ENOTSTARTED);
    hy_msg_free(NULL);
    hy_test_run(1, body_outside, NULL);
}

/* ---- selective receive ------------------------------------------------------- */

static bool take_u32(uint32_t want, int how, uint64_t tag)
{
    struct hy_msg *m = NULL;
    int rc = how ? hy_recv_tag(tag, &m, HY_NOWAIT) : hy_recv(&m, HY_NOWAIT);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return false;
    HY_CHECK_EQ(payload_u32(m), want);
    bool ok = payload_u32(m) == want;
    hy_msg_free(m);
    return ok;
}

struct ge_arg {
    uint32_t min;
    uint64_t tag;
};

static int match_ge(const struct hy_msg *m, void *arg)
{
    const struct ge_arg *g = arg;
    return m->tag == g->tag && payload_u32(m) >= g->min;
}

static void body_selective_local(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    /* 0..11 with tags 10, 11, 12, 10, 11, 12, ... */
    for (uint32_t i = 0; i < 12; i++)
        hy_test_send_u32(self, 10 + i % 3, i);
    HY_CHECK_EQ(hy_mailbox_len(), 12);
    take_u32(1, 1, 11);
    take_u32(4, 1, 11);
    struct ge_arg g = {.min = 8, .tag = 10};
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_match(match_ge, &g, &m, HY_NOWAIT), 0);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 9);
        hy_msg_free(m);
    }
    g.min = 100;
    HY_CHECK_EQ(hy_recv_match(match_ge, &g, &m, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_recv_tag(99, &m, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_mailbox_len(), 9);

    /* by reference, interleaved with plain messages */
    hy_ref r1, r2;
    HY_CHECK_EQ(hy_ref_make(&r1), 0);
    HY_CHECK_EQ(hy_ref_make(&r2), 0);
    HY_CHECK(!hy_ref_eq(r1, r2));
    uint32_t v = 100;
    HY_CHECK_EQ(hy_send_ref(self, 20, r1, &v, sizeof(v)), 0);
    hy_test_send_u32(self, 10, 12);
    v = 101;
    HY_CHECK_EQ(hy_send_ref(self, 20, r2, &v, sizeof(v)), 0);
    v = 102;
    HY_CHECK_EQ(hy_send_ref(self, 20, r1, &v, sizeof(v)), 0);
    hy_test_send_u32(self, 11, 13);
    HY_CHECK_EQ(hy_recv_ref(r2, &m, HY_NOWAIT), 0); /* the marker's ref */
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 101);
        HY_CHECK(hy_ref_eq(m->ref, r2));
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_recv_ref(r1, &m, HY_NOWAIT), 0); /* an older ref: full scan */
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 100);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_recv_ref(r1, &m, HY_NOWAIT), 0);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 102);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_recv_ref(r1, &m, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_recv_ref(r2, &m, HY_NOWAIT), HY_ETIMEDOUT);

    /* what is left comes out in send order */
    static const uint32_t rest[] = {0, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13};
    HY_CHECK_EQ(hy_mailbox_len(), sizeof(rest) / sizeof(rest[0]));
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
        take_u32(rest[i], 0, 0);
    check_empty();
}

static void test_msg_selective_receive_keeps_order(void **state)
{
    (void)state;
    hy_test_run(1, body_selective_local, NULL);
}

/* Small payloads to a process of the same shard take the send fast path,
 * bigger ones (and small ones once the smallest pool is empty) the general
 * path; messages through an alias a third one. Mixed, they still arrive in
 * send order, and a receive marker taken in the middle still skips what
 * came before it. */
#define MIX_N 3000u
#define MIX_BIG 200u

static void send_mixed(hy_pid to, uint32_t i, hy_alias a)
{
    unsigned char big[MIX_BIG];
    switch (i % 3) {
    case 0:
        hy_test_send_u32(to, T_DATA, i);
        break;
    case 1:
        memset(big, (int)(i & 0xff), sizeof(big));
        memcpy(big, &i, sizeof(i));
        HY_CHECK_EQ(hy_send(to, T_DATA, big, sizeof(big)), 0);
        break;
    default:
        HY_CHECK_EQ(hy_alias_send(a, T_DATA, &i, sizeof(i)), 0);
        break;
    }
}

static void body_mixed_paths(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    hy_alias a;
    HY_CHECK_EQ(hy_alias_create(0, &a), 0);
    /* none received until all are queued: the small pool runs dry midway */
    for (uint32_t i = 0; i < MIX_N; i++)
        send_mixed(self, i, a);
    hy_ref r;
    HY_CHECK_EQ(hy_ref_make(&r), 0);
    uint32_t v = 4242;
    HY_CHECK_EQ(hy_send_ref(self, T_DATA, r, &v, sizeof(v)), 0);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_ref(r, &m, HY_NOWAIT), 0); /* from the marker on */
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 4242);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_mailbox_len(), MIX_N);
    for (uint32_t i = 0; i < MIX_N; i++) {
        m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!m)
            return;
        HY_CHECK_EQ(m->size, i % 3 == 1 ? MIX_BIG : 4u);
        uint32_t got;
        memcpy(&got, m->data, sizeof(got));
        HY_CHECK_EQ(got, i);
        if (i % 3 == 1)
            HY_CHECK_EQ(((unsigned char *)m->data)[MIX_BIG - 1], i & 0xff);
        hy_msg_free(m);
        if (got != i)
            return;
    }
    check_empty();
}

static void test_msg_fast_and_general_paths_keep_order(void **state)
{
    (void)state;
    hy_test_run(1, body_mixed_paths, NULL);
}

/* A same-shard send to a process blocked in a plain receive with an empty
 * mailbox hands the message over: the receiver takes it on resuming, before
 * what was sent to it meanwhile (into its mailbox), and the message counts
 * as queued (hy_proc_info) until then, and as received once. A receiver
 * killed before it resumes frees the handed message: every buffer comes
 * home, and it does not count as received. */
struct handed_arg {
    hy_pid parent;
};

static void handed_receiver(void *arg)
{
    const struct handed_arg *a = arg;
    hy_test_send_u32(a->parent, T_READY, 0);
    uint32_t got[3] = {0, 0, 0};
    for (unsigned i = 0; i < 3; i++) {
        struct hy_msg *m = NULL;
        if (hy_recv(&m, HY_INFINITY) != 0 || !m)
            return;
        got[i] = m->tag == T_DATA ? payload_u32(m) : 99;
        hy_msg_free(m);
    }
    hy_test_send_u32(a->parent, T_DONE, got[0] * 100 + got[1] * 10 + got[2]);
}

static bool shard0_buffers_at(void *arg)
{
    return SHARD(0, buffers_out) == *(const uint64_t *)arg;
}

static void body_handed(void *arg)
{
    (void)arg;
    struct handed_arg a = {.parent = hy_self()};
    hy_pid r = spawn_on(0, handed_receiver, &a);
    hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
    uint64_t recv0 = SHARD(0, msgs_received);
    /* r sent T_READY, then blocked in its receive before this one resumed:
     * the first send hands over, the next two queue behind it */
    hy_test_send_u32(r, T_DATA, 1);
    hy_test_send_u32(r, T_DATA, 2);
    hy_test_send_u32(r, T_DATA, 3);
    struct hy_proc_info info;
    HY_CHECK_EQ(hy_proc_info(r, &info), 0);
    HY_CHECK_EQ(info.mailbox_len, 3u);
    struct hy_msg *m = hy_test_must_recv_tag(T_DONE, WAIT_NS);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 123u);
        hy_msg_free(m);
    }
    /* received once each: the three (the handed one too) and T_DONE */
    HY_CHECK_EQ(SHARD(0, msgs_received) - recv0, 4u);

    /* killed with the handed message not yet taken */
    r = spawn_on(0, handed_receiver, &a);
    hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
    hy_ref mon;
    HY_CHECK_EQ(hy_monitor(r, &mon), 0);
    uint64_t before = SHARD(0, buffers_out);
    uint64_t recv1 = SHARD(0, msgs_received);
    hy_test_send_u32(r, T_DATA, 1);
    HY_CHECK_EQ(SHARD(0, buffers_out), before + 1);
    HY_CHECK_EQ(hy_exit_pid(r, hy_reason_user(0, "killed")), 0);
    hy_msg_free(hy_test_must_recv_tag(HY_TAG_DOWN, WAIT_NS));
    HY_CHECK(hy_test_wait_until(shard0_buffers_at, &before, WAIT_MS));
    /* the DOWN only: the handed message was never received */
    HY_CHECK_EQ(SHARD(0, msgs_received) - recv1, 1u);
    check_empty();
}

static void test_msg_handed_to_blocked_receiver(void **state)
{
    (void)state;
    hy_test_run(1, body_handed, NULL);
}

/* hy_msg_free puts a buffer of the calling shard back on its class's pool,
 * whatever the class: the next allocation of that size gets the same
 * buffer (the pools are LIFO), and buffers_out is back where it was. Class
 * 0 takes hy_msg_free's inline path, the others its out-of-line one. */
static uint64_t shard0_out(void)
{
    struct hy_stats st;
    HY_CHECK_EQ(hy_stats_get(0, &st), 0);
    return st.buffers_out;
}

static void body_free_every_class(void *arg)
{
    (void)arg;
    static const size_t class_sizes[] = {0, 1, 48, 49, 100, 200, 500, 1000, 2000, 4000, 8000, 30000};
    uint64_t out0 = shard0_out();
    for (size_t i = 0; i < sizeof(class_sizes) / sizeof(class_sizes[0]); i++) {
        struct hy_msg *a = NULL, *b = NULL;
        HY_CHECK_EQ(hy_msg_alloc(class_sizes[i], &a), 0);
        if (!a)
            return;
        HY_CHECK_EQ(shard0_out(), out0 + 1);
        hy_msg_free(a);
        HY_CHECK_EQ(shard0_out(), out0);
        HY_CHECK_EQ(hy_msg_alloc(class_sizes[i], &b), 0);
        if (b != a)
            print_error("size %zu: a buffer other than the one freed\n", class_sizes[i]);
        HY_CHECK(b == a);
        hy_msg_free(b);
    }
    HY_CHECK_EQ(shard0_out(), out0);
}

static void test_msg_free_every_class_back_to_its_pool(void **state)
{
    (void)state;
    hy_test_run(1, body_free_every_class, NULL);
}

/* Across shards: a sender on shard 1 mixes the cross-shard fast path
 * (small), the general path (bigger, another buffer class), alias sends (a
 * kind that is not an ordinary message) and sends to a second receiver, so
 * that the receiving shard drains bursts with runs to one receiver broken
 * up in every way; the last message answers a receive marker set before the
 * first was sent. Everything arrives in order, and every buffer of shard 1
 * goes back home (the return lists, whole-class and mixed). */
#define XB_N 3000u

static struct {
    hy_pid main, other;
    hy_alias alias;
    hy_ref ref;
} xb;

static void xb_other(void *arg)
{
    (void)arg;
    uint32_t got = 0;
    for (uint32_t i = 0; i < XB_N; i += 7) {
        struct hy_msg *m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!m)
            return;
        HY_CHECK_EQ(payload_u32(m), i);
        got += payload_u32(m) == i;
        hy_msg_free(m);
    }
    hy_test_send_u32(xb.main, T_DONE, got);
}

static void xb_sender(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < XB_N; i++) {
        send_mixed(xb.main, i, xb.alias);
        if (i % 7 == 0)
            hy_test_send_u32(xb.other, T_DATA, i);
    }
    uint32_t v = 4242;
    HY_CHECK_EQ(hy_send_ref(xb.main, T_DATA, xb.ref, &v, sizeof(v)), 0);
}

static bool shard1_buffers_home(void *arg)
{
    (void)arg;
    return SHARD(1, buffers_out) == 0;
}

static void body_cross_bursts(void *arg)
{
    (void)arg;
    xb.main = hy_self();
    HY_CHECK_EQ(hy_alias_create(0, &xb.alias), 0);
    xb.other = spawn_on(0, xb_other, NULL);
    HY_CHECK_EQ(hy_ref_make(&xb.ref), 0); /* the marker: the mailbox's end now */
    spawn_on(1, xb_sender, NULL);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_ref(xb.ref, &m, WAIT_NS), 0);
    if (!m)
        return;
    HY_CHECK_EQ(payload_u32(m), 4242);
    hy_msg_free(m);
    /* the reply came last on its ring: everything before it is here. The
     * second receiver shares this shard: it may already have taken its last
     * message and told us (T_DONE), which is not one of the XB_N */
    struct hy_msg *done = NULL;
    if (hy_recv_tag(T_DONE, &done, HY_NOWAIT) != 0)
        done = NULL;
    HY_CHECK_EQ(hy_mailbox_len(), XB_N); /* no switch since the receive's scan */
    for (uint32_t i = 0; i < XB_N; i++) {
        m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!m)
            return;
        HY_CHECK_EQ(m->size, i % 3 == 1 ? MIX_BIG : 4u);
        uint32_t got;
        memcpy(&got, m->data, sizeof(got));
        HY_CHECK_EQ(got, i);
        if (i % 3 == 1)
            HY_CHECK_EQ(((unsigned char *)m->data)[MIX_BIG - 1], i & 0xff);
        hy_msg_free(m);
        if (got != i)
            return;
    }
    m = done ? done : hy_test_must_recv_tag(T_DONE, WAIT_NS);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), (XB_N + 6) / 7);
        hy_msg_free(m);
    }
    check_empty();
    HY_CHECK(hy_test_wait_until(shard1_buffers_home, NULL, WAIT_MS));
}

static void test_msg_cross_shard_bursts_keep_order(void **state)
{
    (void)state;
    hy_test_run(2, body_cross_bursts, NULL);
}

#define SEL_N 2000u

static void selective_sender(void *arg)
{
    hy_pid to = *(hy_pid *)arg;
    for (uint32_t i = 0; i < SEL_N; i++)
        hy_test_send_u32(to, 10 + i % 4, i);
    hy_test_send_u32(to, T_DONE, SEL_N);
}

static void body_selective_cross(void *arg)
{
    (void)arg;
    static hy_pid self;
    self = hy_self();
    spawn_on(1, selective_sender, &self);
    /* wait for a message in the middle while the rest keeps arriving */
    struct ge_arg g = {.min = SEL_N / 2, .tag = 10 + (SEL_N / 2) % 4};
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_match(match_ge, &g, &m, WAIT_NS), 0);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), SEL_N / 2);
        hy_msg_free(m);
    }
    /* then the end marker, whatever has arrived before it */
    m = hy_test_must_recv_tag(T_DONE, WAIT_NS);
    hy_msg_free(m);
    HY_CHECK_EQ(hy_mailbox_len(), SEL_N - 1);
    /* every tag-13 message in order, then everything else in order */
    for (uint32_t i = 3; i < SEL_N; i += 4)
        if (i != SEL_N / 2 && !take_u32(i, 1, 13))
            return;
    for (uint32_t i = 0; i < SEL_N; i++)
        if (i % 4 != 3 && i != SEL_N / 2 && !take_u32(i, 0, 0))
            return;
    check_empty();
}

static void test_msg_selective_receive_cross_shard(void **state)
{
    (void)state;
    hy_test_run(2, body_selective_cross, NULL);
}

/* ---- timeouts ------------------------------------------------------------------ */

static void body_timeouts(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    struct hy_msg *m = NULL;
    uint64_t t0 = hy_now_ns();
    HY_CHECK_EQ(hy_recv(&m, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_recv_tag(T_DATA, &m, 0), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 < 5000 * (uint64_t)MS); /* a poll does not wait */

    t0 = hy_now_ns();
    HY_CHECK_EQ(hy_recv(&m, 3 * MS), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 >= 3 * (uint64_t)MS);

    /* only non-matching messages: the timeout fires and they stay */
    hy_test_send_u32(self, T_DATA, 1);
    hy_test_send_u32(self, T_DATA, 2);
    t0 = hy_now_ns();
    HY_CHECK_EQ(hy_recv_tag(T_NEVER, &m, 2 * MS), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 >= 2 * (uint64_t)MS);
    hy_ref r;
    HY_CHECK_EQ(hy_ref_make(&r), 0);
    t0 = hy_now_ns();
    HY_CHECK_EQ(hy_recv_ref(r, &m, 1 * MS), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 >= 1 * (uint64_t)MS);
    struct ge_arg g = {.min = 3, .tag = T_DATA};
    HY_CHECK_EQ(hy_recv_match(match_ge, &g, &m, 1 * MS), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_mailbox_len(), 2);
    /* a poll takes what is there */
    take_u32(1, 0, 0);
    HY_CHECK_EQ(hy_recv_tag(T_DATA, &m, HY_NOWAIT), 0);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 2);
        hy_msg_free(m);
    }
    check_empty();
    /* after timeouts, a message sent later is received normally */
    hy_test_send_u32(self, T_DATA, 3);
    take_u32(3, 1, T_DATA);
}

static void test_msg_recv_timeout(void **state)
{
    (void)state;
    hy_test_run(1, body_timeouts, NULL);
}

/* A message that arrives in the same scheduler turn as the receive's
 * timeout is delivered; the timeout that fired meanwhile must not leak into
 * the next receive (which would then fail at once). */
static struct {
    hy_pid parent, waiter;
    uint64_t timeout_ns;
    int rc_first, rc_second;
    uint32_t second;
} late;

static void late_waiter(void *arg)
{
    (void)arg;
    struct hy_msg *m = NULL;
    late.rc_first = hy_recv(&m, (int64_t)late.timeout_ns);
    if (late.rc_first == 0)
        hy_msg_free(m);
    hy_test_send_u32(late.parent, T_PONG, 0);
    late.rc_second = hy_recv_tag(T_DATA, &m, WAIT_NS); /* blocks: nothing queued */
    if (late.rc_second == 0) {
        late.second = payload_u32(m);
        hy_msg_free(m);
    }
    hy_test_send_u32(late.parent, T_DONE, 0);
}

static void late_sender(void *arg)
{
    (void)arg;
    /* The waiter is blocked with its deadline already set: hold the shard
     * past it, so that our message and its timeout are handled in the same
     * turn. */
    uint64_t until = hy_now_ns() + late.timeout_ns + 200000;
    while (hy_now_ns() < until)
        ;
    hy_test_send_u32(late.waiter, T_DATA, 1);
    /* and exits: back to the scheduler, which expires timers before the
     * waiter runs again */
}

static void body_late_timeout(void *arg)
{
    (void)arg;
    late.parent = hy_self();
    late.timeout_ns = 1 * MS;
    late.rc_first = late.rc_second = 99;
    /* the waiter runs first (run queue order) and blocks; the sender holds
     * the shard past the waiter's deadline, sends and exits: the timer
     * expiry of that turn finds the waiter already made ready by the
     * message. The waiter then blocks again, with nothing queued. */
    late.waiter = spawn_on(HY_SHARD_SELF, late_waiter, NULL);
    spawn_on(HY_SHARD_SELF, late_sender, NULL);
    hy_msg_free(hy_test_must_recv_tag(T_PONG, WAIT_NS));
    hy_test_send_u32(late.waiter, T_DATA, 2); /* once the waiter blocks again */
    hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    HY_CHECK_EQ(late.rc_first, 0);
    HY_CHECK_EQ(late.rc_second, 0);
    HY_CHECK_EQ(late.second, 2);
}

static void test_msg_recv_timeout_racing_message(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.run_batch = 1; /* timers are expired between any two process runs */
    hy_test_run_cfg(&cfg, body_late_timeout, NULL);
}

/* ---- the receive marker ------------------------------------------------------- */

static void ref_replier(void *arg)
{
    /* arg: {to, ref} */
    const struct {
        hy_pid to;
        hy_ref ref;
    } *a = arg;
    uint32_t v = 4242;
    HY_CHECK_EQ(hy_send_ref(a->to, T_PONG, a->ref, &v, sizeof(v)), 0);
}

static void reply_from(int shard, hy_ref ref)
{
    struct {
        hy_pid to;
        hy_ref ref;
    } a = {hy_self(), ref};
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = shard;
    o.arg_size = sizeof(a);
    spawn_opts(ref_replier, &a, &o);
}

static void body_marker(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    uint32_t n = (uint32_t)hy_test_scaled(100000);

    /* 1. n unrelated messages queued before the ref: the reply is found
     * and they stay in order */
    for (uint32_t i = 0; i < n; i++)
        hy_test_send_u32(self, T_DATA, i);
    for (int round = 0; round < 100; round++) {
        hy_ref ref;
        HY_CHECK_EQ(hy_ref_make(&ref), 0);
        reply_from(round % 2, ref); /* same shard and the other one */
        struct hy_msg *m = NULL;
        int rc = hy_recv_ref(ref, &m, WAIT_NS);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            return;
        HY_CHECK(hy_ref_eq(m->ref, ref));
        HY_CHECK_EQ(payload_u32(m), 4242);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_mailbox_len(), n);

    /* 2. the marker follows the mailbox as messages are taken out: take
     * the last queued message (the one the marker points after), then all
     * the others, with the reply still to come */
    hy_ref ref;
    HY_CHECK_EQ(hy_ref_make(&ref), 0);
    struct ge_arg g = {.min = n - 1, .tag = T_DATA};
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_match(match_ge, &g, &m, HY_NOWAIT), 0);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), n - 1);
        hy_msg_free(m);
    }
    hy_test_send_u32(self, T_BARRIER, 0); /* after the marker, not carrying the ref */
    reply_from(1, ref);
    for (uint32_t i = 0; i < n - 1; i++)
        if (!take_u32(i, 1, T_DATA))
            return;
    HY_CHECK_EQ(hy_recv_ref(ref, &m, WAIT_NS), 0);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 4242);
        hy_msg_free(m);
    }
    take_u32(0, 0, 0); /* the barrier */

    /* 3. a message carrying an older ref, queued before a newer ref's
     * marker, is still found by that older ref */
    hy_ref r1, r2;
    HY_CHECK_EQ(hy_ref_make(&r1), 0);
    uint32_t v = 4242;
    HY_CHECK_EQ(hy_send_ref(self, T_PONG, r1, &v, sizeof(v)), 0);
    HY_CHECK_EQ(hy_ref_make(&r2), 0);
    hy_test_send_u32(self, T_DATA, 7);
    HY_CHECK_EQ(hy_recv_ref(r2, &m, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_recv_ref(r1, &m, WAIT_NS), 0);
    if (m) {
        HY_CHECK(hy_ref_eq(m->ref, r1));
        hy_msg_free(m);
    }
    take_u32(7, 0, 0);

    /* 4. waiting on the marker while unrelated messages arrive */
    HY_CHECK_EQ(hy_ref_make(&ref), 0);
    static hy_pid me;
    me = self;
    spawn_on(1, selective_sender, &me); /* SEL_N messages and T_DONE */
    reply_from(1, ref);                 /* a different sender: any order */
    HY_CHECK_EQ(hy_recv_ref(ref, &m, WAIT_NS), 0);
    if (m)
        hy_msg_free(m);
    m = hy_test_must_recv_tag(T_DONE, WAIT_NS);
    hy_msg_free(m);
    for (uint32_t i = 0; i < SEL_N; i++)
        if (!take_u32(i, 0, 0))
            return;
    check_empty();
}

static void test_msg_recv_ref_marker(void **state)
{
    (void)state;
    hy_test_run(2, body_marker, NULL);
}

/* ---- sends to dead and unknown pids -------------------------------------------- */

static struct {
    hy_pid parent;
} dead;

static void notify_exit(void *arg)
{
    (void)arg;
    hy_test_send_u32(dead.parent, T_EXITED, 0);
}

static void short_lived(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_on_exit(notify_exit, NULL), 0);
}

static void first_message_reporter(void *arg)
{
    (void)arg;
    struct hy_msg *m = must_recv();
    if (!m)
        return;
    hy_test_send_u32(dead.parent, T_PONG, m->tag == T_PING);
    hy_msg_free(m);
}

struct dropped_at_least {
    uint64_t n;
};

static bool dropped_reached(void *arg)
{
    return TOTAL(dropped_dead) >= ((struct dropped_at_least *)arg)->n;
}

static void body_dead(void *arg)
{
    (void)arg;
    dead.parent = hy_self();
    hy_pid local = spawn_on(HY_SHARD_SELF, short_lived, NULL);
    hy_pid remote = spawn_on(1, short_lived, NULL);
    for (int i = 0; i < 2; i++)
        hy_msg_free(hy_test_must_recv_tag(T_EXITED, WAIT_NS));

    uint64_t local0 = SHARD(0, dropped_dead);
    uint64_t total0 = TOTAL(dropped_dead);
    uint32_t slot = hy_pid_slot(local);
    hy_pid unknown[] = {
        hy_pid_make(hy_node_id(), hy_node_creation(), 0, 1000000, 1),  /* no such slot */
        hy_pid_make(hy_node_id(), hy_node_creation() ^ 1, 0, slot, 1), /* old creation */
        hy_pid_make(hy_node_id(), hy_node_creation(), 200, 0, 1),      /* no such shard */
        hy_pid_make(hy_node_id() + 1, hy_node_creation(), 0, 0, 1),    /* another node */
        HY_PID_NONE,
    };
    size_t nu = sizeof(unknown) / sizeof(unknown[0]);
    for (size_t i = 0; i < nu; i++)
        HY_CHECK_EQ(hy_send(unknown[i], T_DATA, "x", 1), 0);
    /* dead on this shard: dropped (and counted) by the sender's shard at once */
    HY_CHECK_EQ(hy_send(local, T_DATA, "x", 1), 0);
    struct hy_msg *zm = NULL;
    HY_CHECK_EQ(hy_msg_alloc(32, &zm), 0);
    if (zm) {
        zm->tag = T_DATA;
        HY_CHECK_EQ(hy_msg_send(local, zm), 0);
    }
    HY_CHECK_EQ(SHARD(0, dropped_dead) - local0, nu + 2);
    /* dead on another shard: dropped there */
    for (int i = 0; i < 10; i++)
        HY_CHECK_EQ(hy_send(remote, T_DATA, "y", 1), 0);
    struct dropped_at_least d = {total0 + nu + 2 + 10};
    HY_CHECK(hy_test_wait_until(dropped_reached, &d, WAIT_MS));
    HY_CHECK_EQ(TOTAL(dropped_dead), total0 + nu + 2 + 10);

    /* a new process, possibly in a reused slot, never gets the old pid's
     * messages: its first message is the one sent to its own pid */
    for (int shard = 0; shard < 2; shard++) {
        hy_pid old = shard ? remote : local;
        hy_pid fresh = spawn_on(shard, first_message_reporter, NULL);
        HY_CHECK(!hy_pid_eq(old, fresh));
        HY_CHECK_EQ(hy_send(old, T_DATA, "z", 1), 0);
        HY_CHECK_EQ(hy_send(fresh, T_PING, NULL, 0), 0);
        struct hy_msg *m = hy_test_must_recv_tag(T_PONG, WAIT_NS);
        if (m) {
            HY_CHECK_EQ(payload_u32(m), 1);
            hy_msg_free(m);
        }
    }
}

static void test_msg_send_to_dead_is_dropped(void **state)
{
    (void)state;
    hy_test_run(2, body_dead, NULL);
}

/* ---- bounded mailboxes -------------------------------------------------------- */

#define BOUND 8u
#define FLOOD 20u

static struct {
    hy_pid parent;
    _Atomic int go;
    size_t len_seen;
    uint32_t got[FLOOD];
    unsigned ngot;
} dn;

static bool dn_go(void *arg)
{
    (void)arg;
    return atomic_load(&dn.go) != 0;
}

static void drop_new_receiver(void *arg)
{
    (void)arg;
    hy_test_send_u32(dn.parent, T_READY, 0);
    HY_CHECK(hy_test_wait_until(dn_go, NULL, WAIT_MS)); /* receives nothing meanwhile */
    dn.len_seen = hy_mailbox_len();
    struct hy_msg *m;
    while (hy_recv(&m, HY_NOWAIT) == 0) {
        if (dn.ngot < FLOOD)
            dn.got[dn.ngot++] = payload_u32(m);
        hy_msg_free(m);
    }
    hy_test_send_u32(dn.parent, T_DONE, 0);
}

struct full_at_least {
    uint64_t n;
};

static bool full_reached(void *arg)
{
    return TOTAL(dropped_full) >= ((struct full_at_least *)arg)->n;
}

static void body_drop_new(void *arg)
{
    (void)arg;
    dn.parent = hy_self();
    for (int shard = 0; shard < 2; shard++) {
        atomic_store(&dn.go, 0);
        dn.ngot = 0;
        dn.len_seen = 0;
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = shard;
        o.max_mailbox = BOUND;
        o.mailbox_policy = HY_MAILBOX_DROP_NEW;
        hy_pid r = spawn_opts(drop_new_receiver, NULL, &o);
        hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
        uint64_t full0 = TOTAL(dropped_full);
        for (uint32_t i = 0; i < FLOOD; i++)
            hy_test_send_u32(r, T_DATA, i);
        struct full_at_least f = {full0 + FLOOD - BOUND};
        HY_CHECK(hy_test_wait_until(full_reached, &f, WAIT_MS));
        HY_CHECK_EQ(TOTAL(dropped_full), full0 + FLOOD - BOUND);
        atomic_store(&dn.go, 1);
        hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
        /* the oldest BOUND were kept, in order; the newer ones dropped */
        HY_CHECK_EQ(dn.len_seen, BOUND);
        HY_CHECK_EQ(dn.ngot, BOUND);
        for (uint32_t i = 0; i < dn.ngot; i++)
            HY_CHECK_EQ(dn.got[i], i);
    }
}

static void test_msg_mailbox_drop_new(void **state)
{
    (void)state;
    hy_test_run(2, body_drop_new, NULL);
}

static struct {
    hy_pid parent;
    _Atomic int after_recv;
    _Atomic int exited;
} kl;

static void kill_on_exit(void *arg)
{
    (void)arg;
    atomic_store(&kl.exited, 1);
    hy_test_send_u32(kl.parent, T_EXITED, 0);
}

static void kill_victim(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_on_exit(kill_on_exit, NULL), 0);
    hy_test_send_u32(kl.parent, T_READY, 0);
    for (;;) {
        struct hy_msg *m = NULL;
        int rc = hy_recv_tag(T_PING, &m, WAIT_NS);
        if (rc != 0)
            break;
        hy_msg_free(m);
        hy_test_send_u32(kl.parent, T_PONG, (uint32_t)hy_mailbox_len());
    }
    atomic_store(&kl.after_recv, 1); /* never: it dies in the receive */
}

static void body_kill(void *arg)
{
    (void)arg;
    kl.parent = hy_self();
    for (int shard = 0; shard < 2; shard++) {
        atomic_store(&kl.after_recv, 0);
        atomic_store(&kl.exited, 0);
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = shard;
        o.max_mailbox = 4;
        o.mailbox_policy = HY_MAILBOX_KILL;
        hy_pid v = spawn_opts(kill_victim, NULL, &o);
        hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
        /* three queued plus a ping: at the bound, alive, answering */
        for (uint32_t i = 0; i < 3; i++)
            hy_test_send_u32(v, T_DATA, i);
        hy_test_send_u32(v, T_PING, 0);
        struct hy_msg *m = hy_test_must_recv_tag(T_PONG, WAIT_NS);
        if (m) {
            HY_CHECK_EQ(payload_u32(m), 3);
            hy_msg_free(m);
        }
        HY_CHECK_EQ(atomic_load(&kl.exited), 0);
        uint64_t full0 = TOTAL(dropped_full);
        hy_test_send_u32(v, T_DATA, 3); /* 4: full */
        hy_test_send_u32(v, T_DATA, 4); /* over the bound: the receiver dies */
        hy_msg_free(hy_test_must_recv_tag(T_EXITED, WAIT_NS));
        HY_CHECK_EQ(atomic_load(&kl.exited), 1);
        HY_CHECK_EQ(atomic_load(&kl.after_recv), 0);
        HY_CHECK(TOTAL(dropped_full) >= full0 + 1);
        /* it is gone: further sends are dropped as to the dead */
        uint64_t dead0 = TOTAL(dropped_dead);
        hy_test_send_u32(v, T_DATA, 5);
        struct dropped_at_least d = {dead0 + 1};
        HY_CHECK(hy_test_wait_until(dropped_reached, &d, WAIT_MS));
    }
    check_empty();
}

static void test_msg_mailbox_kill(void **state)
{
    (void)state;
    hy_test_run(2, body_kill, NULL);
}

/* A process that overflows its own bounded mailbox (policy kill) dies in
 * that send, not once its budget runs out: the inline charge tests only
 * the budget, which the overflow spends. Then a process whose mailbox
 * overflowed before its first run dies at its first charge (it starts
 * with a spent budget). */
static struct {
    hy_pid parent;
    _Atomic int after;
} ks;

static void ks_self_overflow(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    for (uint32_t i = 0; i < 3; i++) /* the third is over the bound of 2 */
        hy_send(self, T_DATA, &i, sizeof(i));
    atomic_store(&ks.after, 1); /* never: it dies in the third send */
    for (uint32_t i = 0; i < 100; i++)
        hy_send(self, T_DATA, NULL, 0);
}

static void ks_first_run(void *arg)
{
    (void)arg;
    hy_send(ks.parent, T_DATA, NULL, 0); /* its first charge: dies here */
    atomic_store(&ks.after, 1);
    for (uint32_t i = 0; i < 100; i++)
        hy_send(ks.parent, T_DATA, NULL, 0);
}

static void ks_down(hy_ref mon)
{
    struct hy_msg *m = hy_test_must_recv_tag(HY_TAG_DOWN, WAIT_NS);
    if (!m)
        return;
    struct hy_down_info d;
    memcpy(&d, m->data, sizeof(d));
    HY_CHECK(hy_ref_eq(m->ref, mon));
    HY_CHECK_EQ(d.reason.kind, HY_REASON_USER);
    HY_CHECK(strstr(d.reason.text, "mailbox_overflow") != NULL);
    hy_msg_free(m);
}

static void body_kill_self(void *arg)
{
    (void)arg;
    ks.parent = hy_self();
    for (int shard = 0; shard < 2; shard++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = shard;
        o.max_mailbox = 2;
        o.mailbox_policy = HY_MAILBOX_KILL;
        hy_ref mon;
        o.monitor = true;
        o.monitor_ref = &mon;
        atomic_store(&ks.after, 0);
        spawn_opts(ks_self_overflow, NULL, &o);
        ks_down(mon);
        HY_CHECK_EQ(atomic_load(&ks.after), 0);
    }
    /* queued, not yet run (same shard: it runs when this one blocks), when
     * its mailbox overflows */
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 0;
    o.max_mailbox = 1;
    o.mailbox_policy = HY_MAILBOX_KILL;
    hy_ref mon;
    o.monitor = true;
    o.monitor_ref = &mon;
    atomic_store(&ks.after, 0);
    hy_pid v = spawn_opts(ks_first_run, NULL, &o);
    hy_test_send_u32(v, T_DATA, 0);
    hy_test_send_u32(v, T_DATA, 1); /* over the bound */
    ks_down(mon);
    HY_CHECK_EQ(atomic_load(&ks.after), 0);
    struct hy_msg *m;
    while (hy_recv_tag(T_DATA, &m, HY_NOWAIT) == 0)
        hy_msg_free(m);
    check_empty();
}

static void test_msg_mailbox_kill_self_acts_at_the_send(void **state)
{
    (void)state;
    hy_test_run(2, body_kill_self, NULL);
}

/* A process killed by its mailbox policy while inside a blocking call
 * (whose argument lives on its stack) dies only after the call returned;
 * and the call's result, a runtime reply, is not refused by the full
 * mailbox. */
static struct {
    hy_pid parent;
    _Atomic int started, release, fn_done, done_at_exit, after_call;
} kb;

static intptr_t kb_fn(void *arg)
{
    atomic_store(&kb.started, 1);
    while (!atomic_load(&kb.release))
        ;                      /* a plain thread: spinning is what blocking calls may do */
    *(volatile int *)arg = 42; /* the caller's stack must still be there, even dead */
    atomic_store(&kb.fn_done, 1);
    return 7;
}

static void kb_on_exit(void *arg)
{
    (void)arg;
    atomic_store(&kb.done_at_exit, atomic_load(&kb.fn_done));
    hy_test_send_u32(kb.parent, T_EXITED, 0);
}

static void kb_victim(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_on_exit(kb_on_exit, NULL), 0);
    volatile int on_stack = 0;
    intptr_t res = 0;
    hy_blocking_run(kb_fn, (void *)&on_stack, &res);
    atomic_store(&kb.after_call, 1);
}

static bool kb_started(void *arg)
{
    (void)arg;
    return atomic_load(&kb.started) != 0;
}

static bool kb_fn_done(void *arg)
{
    (void)arg;
    return atomic_load(&kb.fn_done) != 0;
}

static void body_kill_blocking(void *arg)
{
    (void)arg;
    kb.parent = hy_self();
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.max_mailbox = 1;
    o.mailbox_policy = HY_MAILBOX_KILL;
    hy_pid v = spawn_opts(kb_victim, NULL, &o);
    HY_CHECK(hy_test_wait_until(kb_started, NULL, WAIT_MS));
    hy_test_send_u32(v, T_DATA, 0);
    hy_test_send_u32(v, T_DATA, 1); /* over the bound: dies now, during the call */
    hy_msg_free(hy_test_must_recv_tag(T_EXITED, WAIT_NS));
    HY_CHECK_EQ(atomic_load(&kb.done_at_exit), 0);
    HY_CHECK_EQ(atomic_load(&kb.after_call), 0);
    /* fn still writes into the dead caller's stack, which is held for it
     * (ASan would see a write into reused memory) */
    atomic_store(&kb.release, 1);
    HY_CHECK(hy_test_wait_until(kb_fn_done, NULL, WAIT_MS));
}

static void test_msg_mailbox_kill_does_not_wait_for_blocking_call(void **state)
{
    (void)state;
    hy_test_run(1, body_kill_blocking, NULL);
}

/* A process whose bounded mailbox is full still gets the runtime's replies
 * (cross-shard spawn, blocking call), so those calls do not hang. */
static struct {
    hy_pid parent;
    int spawn_rc, blocking_rc;
    intptr_t res;
    size_t len_after;
} fr;

static void nothing(void *arg)
{
    (void)arg;
}

static intptr_t add_one(void *arg)
{
    return (intptr_t)arg + 1;
}

static void full_requester(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    hy_test_send_u32(self, T_DATA, 0);
    hy_test_send_u32(self, T_DATA, 1);
    hy_test_send_u32(self, T_DATA, 2); /* dropped: the bound is 2 */
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_pid child = HY_PID_NONE;
    fr.spawn_rc = hy_spawn_opt(nothing, NULL, &o, &child);
    fr.blocking_rc = hy_blocking_run(add_one, (void *)41, &fr.res);
    fr.len_after = hy_mailbox_len();
    take_u32(0, 0, 0);
    take_u32(1, 0, 0);
    hy_test_send_u32(fr.parent, T_DONE, 0);
}

static void body_full_replies(void *arg)
{
    (void)arg;
    fr.parent = hy_self();
    fr.spawn_rc = fr.blocking_rc = 99;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.max_mailbox = 2;
    o.mailbox_policy = HY_MAILBOX_DROP_NEW;
    spawn_opts(full_requester, NULL, &o);
    hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    HY_CHECK_EQ(fr.spawn_rc, 0);
    HY_CHECK_EQ(fr.blocking_rc, 0);
    HY_CHECK_EQ(fr.res, 42);
    HY_CHECK_EQ(fr.len_after, 2);
}

static void test_msg_full_mailbox_gets_runtime_replies(void **state)
{
    (void)state;
    hy_test_run(2, body_full_replies, NULL);
}

static void body_mailbox_len(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    for (uint32_t i = 0; i < 3; i++)
        hy_test_send_u32(self, T_DATA + i, i);
    HY_CHECK_EQ(hy_mailbox_len(), 3);
    take_u32(1, 1, T_DATA + 1);
    HY_CHECK_EQ(hy_mailbox_len(), 2);
    take_u32(0, 0, 0);
    take_u32(2, 0, 0);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_msg_mailbox_len(void **state)
{
    (void)state;
    hy_test_run(1, body_mailbox_len, NULL);
}

/* ---- zero-copy sends ------------------------------------------------------------ */

static void zc_forwarder(void *arg)
{
    /* forwards each message, unchanged and uncopied, back to its sender */
    (void)arg;
    for (;;) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        if (m->tag == T_STOP) {
            hy_msg_free(m);
            return;
        }
        HY_CHECK_EQ(hy_msg_send(m->from, m), 0);
    }
}

static void body_zero_copy(void *arg)
{
    (void)arg;
    for (int shard = 0; shard < 2; shard++) {
        hy_pid fwd = spawn_on(shard, zc_forwarder, NULL);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            size_t size = sizes[k];
            struct hy_msg *m = NULL;
            HY_CHECK_EQ(hy_msg_alloc(size, &m), 0);
            if (!m)
                return;
            HY_CHECK(m->cap >= size);
            HY_CHECK_EQ(((uintptr_t)m->data & 15u), 0);
            for (size_t i = 0; i < size; i++)
                m->data[i] = pattern(i, size);
            hy_ref ref;
            HY_CHECK_EQ(hy_ref_make(&ref), 0);
            m->tag = 1000 + k;
            m->ref = ref;
            struct hy_msg *sent = m;
            HY_CHECK_EQ(hy_msg_send(fwd, m), 0);
            struct hy_msg *r = NULL;
            HY_CHECK_EQ(hy_recv_ref(ref, &r, WAIT_NS), 0);
            if (!r)
                return;
            HY_CHECK(r == sent); /* the same buffer went there and back */
            HY_CHECK_EQ(r->tag, 1000 + k);
            HY_CHECK(intact(r, size));
            HY_CHECK(hy_pid_eq(r->from, fwd));
            hy_msg_free(r);
        }
        HY_CHECK_EQ(hy_send(fwd, T_STOP, NULL, 0), 0);
    }
    check_empty();
}

static void test_msg_zero_copy_send(void **state)
{
    (void)state;
    hy_test_run(2, body_zero_copy, NULL);
}

/* ---- drop functions ----------------------------------------------------------- */

/* A message whose payload holds a resource has a drop function
 * (hy_msg_set_drop): it runs exactly once for a message dropped undelivered
 * (its receiver dead, its mailbox full, the receiver ending with it still
 * queued), never for one received and freed, nor for a send that fails.
 * The payload is the message's index into drops. */

#define NDROP 6

static _Atomic int drops[NDROP];

static void count_drop(const struct hy_msg *m)
{
    uint32_t id = payload_u32(m);
    if (id < NDROP)
        atomic_fetch_add(&drops[id], 1);
}

static int send_with_drop(hy_pid to, uint64_t tag, uint32_t id)
{
    struct hy_msg *m;
    int rc = hy_msg_alloc(sizeof(id), &m);
    if (rc)
        return rc;
    memcpy(m->data, &id, sizeof(id));
    m->tag = tag;
    rc = hy_msg_set_drop(m, count_drop);
    if (rc) {
        hy_msg_free(m);
        return rc;
    }
    return hy_msg_send(to, m);
}

static struct {
    hy_pid parent;
    _Atomic int go;
} dr;

static bool dr_go(void *arg)
{
    (void)arg;
    return atomic_load(&dr.go) != 0;
}

/* takes its ping and the oldest T_DATA, then ends with the rest queued */
static void drop_receiver(void *arg)
{
    (void)arg;
    hy_test_send_u32(dr.parent, T_READY, 0);
    hy_msg_free(hy_test_must_recv_tag(T_PING, WAIT_NS));
    struct hy_msg *m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
    if (m) {
        HY_CHECK_EQ(payload_u32(m), 0);
        hy_msg_free(m); /* received: its drop function never runs */
    }
    hy_test_send_u32(dr.parent, T_DONE, 0);
}

/* a mailbox of one that takes nothing until go, then takes what it holds */
static void drop_full_receiver(void *arg)
{
    (void)arg;
    hy_test_send_u32(dr.parent, T_READY, 0);
    HY_CHECK(hy_test_wait_until(dr_go, NULL, WAIT_MS));
    struct hy_msg *m;
    while (hy_recv(&m, HY_NOWAIT) == 0)
        hy_msg_free(m);
    hy_test_send_u32(dr.parent, T_DONE, 0);
}

struct drop_at {
    unsigned id;
    int n;
};

static bool drop_reached(void *arg)
{
    struct drop_at *d = arg;
    return atomic_load(&drops[d->id]) >= d->n;
}

static void body_drop_fn(void *arg)
{
    (void)arg;
    dr.parent = hy_self();
    for (int shard = 0; shard < 2; shard++) {
        for (unsigned i = 0; i < NDROP; i++)
            atomic_store(&drops[i], 0);
        atomic_store(&dr.go, 0);
        hy_pid r = spawn_on(shard, drop_receiver, NULL);
        hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
        HY_CHECK_EQ(send_with_drop(r, T_DATA, 0), 0);
        HY_CHECK_EQ(send_with_drop(r, T_DATA, 1), 0);
        hy_test_send_u32(r, T_PING, 0);
        hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
        /* 1 was queued when its receiver ended */
        struct drop_at d1 = {1, 1};
        HY_CHECK(hy_test_wait_until(drop_reached, &d1, WAIT_MS));
        /* r is gone (or going): a send to it is dropped as to the dead */
        struct drop_at d2 = {2, 1};
        HY_CHECK_EQ(send_with_drop(r, T_DATA, 2), 0);
        HY_CHECK(hy_test_wait_until(drop_reached, &d2, WAIT_MS));
        /* a full mailbox drops the new one */
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = shard;
        o.max_mailbox = 1;
        o.mailbox_policy = HY_MAILBOX_DROP_NEW;
        hy_pid f = spawn_opts(drop_full_receiver, NULL, &o);
        hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
        HY_CHECK_EQ(send_with_drop(f, T_DATA, 3), 0);
        HY_CHECK_EQ(send_with_drop(f, T_DATA, 4), 0);
        struct drop_at d4 = {4, 1};
        HY_CHECK(hy_test_wait_until(drop_reached, &d4, WAIT_MS));
        atomic_store(&dr.go, 1);
        hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
        /* a send that fails frees the message without it: the caller
         * still holds what the payload refers to */
        HY_CHECK_EQ(send_with_drop(r, HY_TAG_SYSTEM | T_DATA, 5), HY_EINVAL);
        HY_CHECK_EQ(hy_msg_set_drop(NULL, count_drop), HY_EINVAL);
        /* once each, and only for those dropped */
        HY_CHECK(hy_test_quiesce(1, WAIT_MS));
        HY_CHECK_EQ(atomic_load(&drops[0]), 0);
        HY_CHECK_EQ(atomic_load(&drops[1]), 1);
        HY_CHECK_EQ(atomic_load(&drops[2]), 1);
        HY_CHECK_EQ(atomic_load(&drops[3]), 0);
        HY_CHECK_EQ(atomic_load(&drops[4]), 1);
        HY_CHECK_EQ(atomic_load(&drops[5]), 0);
    }
}

static void test_msg_drop_fn_runs_for_a_message_never_received(void **state)
{
    (void)state;
    hy_test_run(2, body_drop_fn, NULL);
}

/* ---- foreign threads ---------------------------------------------------------- */

#define FOREIGN_THREADS 3

struct foreign {
    hy_pid to;
    uint32_t id, n;
    int rc_sys, rc_big, rc_send;
};

static void *foreign_main(void *arg)
{
    struct foreign *f = arg;
    f->rc_sys = hy_send_foreign(f->to, HY_TAG_SYSTEM | 1, NULL, 0);
    f->rc_big = hy_send_foreign(f->to, T_DATA, bigbuf, SMALL_MAX + 1);
    f->rc_send = 0;
    for (uint32_t seq = 0; seq < f->n; seq++) {
        uint32_t p[2] = {f->id, seq};
        int rc = hy_send_foreign(f->to, T_DATA, p, sizeof(p));
        if (rc) {
            f->rc_send = rc;
            break;
        }
    }
    return NULL;
}

static struct {
    hy_pid parent;
    uint32_t n;
} fc;

static void foreign_collector(void *arg)
{
    (void)arg;
    uint32_t next[FOREIGN_THREADS] = {0};
    for (uint32_t got = 0; got < FOREIGN_THREADS * fc.n; got++) {
        struct hy_msg *m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!m)
            break;
        uint32_t p[2] = {UINT32_MAX, UINT32_MAX};
        HY_CHECK_EQ(m->size, sizeof(p));
        memcpy(p, m->data, sizeof(p) <= m->size ? sizeof(p) : m->size);
        HY_CHECK(hy_pid_is_none(m->from));
        if (p[0] < FOREIGN_THREADS) {
            HY_CHECK_EQ(p[1], next[p[0]]); /* per-thread order */
            next[p[0]] = p[1] + 1;
        } else {
            HY_CHECK(p[0] < FOREIGN_THREADS);
        }
        hy_msg_free(m);
    }
    check_empty();
    hy_test_send_u32(fc.parent, T_DONE, 0);
}

static void body_foreign(void *arg)
{
    (void)arg;
    fc.parent = hy_self();
    fc.n = (uint32_t)hy_test_scaled(20000);
    static struct foreign f[FOREIGN_THREADS];
    pthread_t t[FOREIGN_THREADS];
    for (int shard = 0; shard < 2; shard++) {
        hy_pid col = spawn_on(shard, foreign_collector, NULL);
        for (uint32_t i = 0; i < FOREIGN_THREADS; i++) {
            f[i] = (struct foreign){.to = col, .id = i, .n = fc.n};
            HY_CHECK_EQ(pthread_create(&t[i], NULL, foreign_main, &f[i]), 0);
        }
        hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
        for (uint32_t i = 0; i < FOREIGN_THREADS; i++) {
            pthread_join(t[i], NULL); /* they are done: their last send arrived */
            HY_CHECK_EQ(f[i].rc_sys, HY_EINVAL);
            HY_CHECK_EQ(f[i].rc_big, HY_EMSGSIZE);
            HY_CHECK_EQ(f[i].rc_send, 0);
        }
    }
    /* from a process it is a plain send */
    HY_CHECK_EQ(hy_send_foreign(hy_self(), T_DATA, "ab", 2), 0);
    struct hy_msg *m = must_recv();
    if (m) {
        HY_CHECK(hy_pid_eq(m->from, hy_self()));
        HY_CHECK_EQ(m->size, 2);
        hy_msg_free(m);
    }
}

static void test_msg_send_foreign(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.max_message_size = SMALL_MAX;
    hy_test_run_cfg(&cfg, body_foreign, NULL);
}

/* ---- buffers go home ---------------------------------------------------------- */

#define HELD 100u

static struct {
    hy_pid parent, sink;
} bh;

static void holder(void *arg)
{
    (void)arg;
    static struct hy_msg *held[HELD];
    for (unsigned i = 0; i < HELD; i++) {
        held[i] = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!held[i])
            return;
    }
    hy_test_send_u32(bh.parent, T_HELD, HELD);
    hy_msg_free(hy_test_must_recv_tag(T_GO, WAIT_NS));
    /* pass them on, uncopied, to a third shard which frees them */
    for (unsigned i = 0; i < HELD; i++)
        HY_CHECK_EQ(hy_msg_send(bh.sink, held[i]), 0);
}

static void sink(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < HELD; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!m)
            return;
        HY_CHECK_EQ(m->home, 0);
        HY_CHECK_EQ(payload_u32(m), i);
        hy_msg_free(m);
    }
    hy_test_send_u32(bh.parent, T_DONE, 0);
}

static bool shard0_buffers_home(void *arg)
{
    (void)arg;
    return SHARD(0, buffers_out) == 0;
}

static void body_buffers_home(void *arg)
{
    (void)arg;
    bh.parent = hy_self();
    bh.sink = spawn_on(2, sink, NULL);
    hy_pid h = spawn_on(1, holder, NULL);
    /* 40 bytes: more than a ring entry carries, so each goes as a buffer
     * of shard 0's pool */
    unsigned char buf[40] = {0};
    for (uint32_t i = 0; i < HELD; i++) {
        memcpy(buf, &i, sizeof(i));
        HY_CHECK_EQ(hy_send(h, T_DATA, buf, sizeof(buf)), 0);
    }
    hy_msg_free(hy_test_must_recv_tag(T_HELD, WAIT_NS));
    /* held by shard 1: still counted out of shard 0 */
    HY_CHECK(SHARD(0, buffers_out) >= HELD);
    hy_test_send_u32(h, T_GO, 0);
    hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    HY_CHECK(hy_test_wait_until(shard0_buffers_home, NULL, WAIT_MS));
}

static void test_msg_buffers_go_home(void **state)
{
    (void)state;
    hy_test_run(3, body_buffers_home, NULL);
}

/* Buffers freed on another shard go home as return blocks written over one
 * of them; that one's header (size class, home, capacity) must be whole again
 * when the pool hands it out. Rounds of sends from shard 1 each wait until
 * every buffer of the round is home, so later rounds reuse returned ones
 * (class 0 and class 1 rounds, and round sizes that leave partial blocks). */
#define RB_ROUNDS 40u

static struct {
    hy_pid main;
} rb;

static bool shard1_home_now(void *arg)
{
    (void)arg;
    return SHARD(1, buffers_out) == 0;
}

static void rb_sender(void *arg)
{
    (void)arg;
    unsigned char big[200];
    for (uint32_t r = 0; r < RB_ROUNDS; r++) {
        uint32_t n = 5 + (r * 7) % 40;
        size_t len = r % 2 ? sizeof(big) : 40; /* class 1, class 0 (not a ring entry) */
        for (uint32_t i = 0; i < n; i++) {
            memset(big, (int)(i & 0xff), sizeof(big));
            memcpy(big, &i, sizeof(i));
            HY_CHECK_EQ(hy_send(rb.main, T_DATA, big, len), 0);
        }
        hy_test_send_u32(rb.main, T_DONE, n);
        hy_msg_free(hy_test_must_recv_tag(T_GO, WAIT_NS));
        HY_CHECK(hy_test_wait_until(shard1_home_now, NULL, WAIT_MS));
    }
    hy_test_send_u32(rb.main, T_STOP, 0);
}

static void body_return_blocks(void *arg)
{
    (void)arg;
    rb.main = hy_self();
    hy_pid s = spawn_on(1, rb_sender, NULL);
    for (uint32_t r = 0; r < RB_ROUNDS; r++) {
        struct hy_msg *d = hy_test_must_recv_tag(T_DONE, WAIT_NS);
        if (!d)
            return;
        uint32_t n = payload_u32(d);
        hy_msg_free(d);
        HY_CHECK_EQ(hy_mailbox_len(), n);
        for (uint32_t i = 0; i < n; i++) {
            struct hy_msg *m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
            if (!m)
                return;
            size_t len = r % 2 ? 200 : 40;
            size_t whole = m->cap + sizeof(struct hy_msg);
            HY_CHECK_EQ(m->home, 1);
            HY_CHECK_EQ(m->size, len);
            HY_CHECK(m->cap >= len && whole >= 128 && (whole & (whole - 1)) == 0);
            HY_CHECK_EQ(payload_u32(m), i);
            if (len > 4)
                HY_CHECK_EQ(m->data[len - 1], i & 0xff);
            hy_msg_free(m);
        }
        hy_test_send_u32(s, T_GO, r);
    }
    hy_msg_free(hy_test_must_recv_tag(T_STOP, WAIT_NS));
    check_empty();
}

static void test_msg_return_blocks_restore_buffers(void **state)
{
    (void)state;
    hy_test_run(2, body_return_blocks, NULL);
}

/* ---- small messages travel whole in the ring --------------------------------- */

/* A small ordinary message to another shard is written into the ring's
 * entry array and becomes a buffer of the receiver's own shard at the
 * drain: the sender's pool hands out nothing, the buffer's home is the
 * receiver's shard, and the sender and receiver pids, tag, size and every
 * payload length up to the entry's limit come out whole. */
#define CE_N 3000u

static struct {
    hy_pid main, sender;
} ce;

static void ce_sender(void *arg)
{
    (void)arg;
    unsigned char b[32];
    for (uint32_t i = 0; i < CE_N; i++) {
        size_t len = i % (sizeof(b) + 1);
        for (size_t k = 0; k < len; k++)
            b[k] = (uint8_t)(i * 7u + k);
        HY_CHECK_EQ(hy_send(ce.main, T_DATA + (i & 1), b, len), 0);
        /* paced, so the ring never fills (messages behind a full ring go
         * as buffers, to keep their order behind what waits there) */
        if (i % 200 == 199)
            hy_msg_free(hy_test_must_recv_tag(T_GO, WAIT_NS));
    }
    hy_test_send_u32(ce.main, T_DONE, 0);
    hy_msg_free(hy_test_must_recv_tag(T_STOP, WAIT_NS));
}

static void body_entries(void *arg)
{
    (void)arg;
    ce.main = hy_self();
    uint64_t out1 = SHARD(1, buffers_out);
    ce.sender = spawn_on(1, ce_sender, NULL);
    for (uint32_t i = 0; i < CE_N; i++) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        size_t len = i % 33;
        HY_CHECK_EQ(m->tag, T_DATA + (i & 1));
        HY_CHECK_EQ(m->size, len);
        HY_CHECK(hy_pid_eq(m->from, ce.sender));
        HY_CHECK(hy_pid_eq(m->to, ce.main));
        HY_CHECK(hy_ref_is_none(m->ref));
        HY_CHECK_EQ(m->home, 0);
        bool same = true;
        for (size_t k = 0; k < len; k++)
            same &= m->data[k] == (uint8_t)(i * 7u + k);
        HY_CHECK(same);
        hy_msg_free(m);
        if (i % 200 == 199)
            hy_test_send_u32(ce.sender, T_GO, i);
    }
    hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    /* none of shard 1's buffers went out for those messages (T_DONE is
     * small too; the T_GO messages are shard 1's own buffers, freed there) */
    HY_CHECK_EQ(SHARD(1, buffers_out), out1);
    hy_test_send_u32(ce.sender, T_STOP, 0);
    check_empty();
}

static void test_msg_small_cross_shard_messages_travel_in_the_ring(void **state)
{
    (void)state;
    hy_test_run(2, body_entries, NULL);
}

/* Behind a full ring too: with a 16-slot ring a burst of small messages
 * overflows (the 17th staged entry finds no room), and the messages queued
 * behind it still travel as entries (the sender's pool hands out no
 * buffer), in order. */
static void ce_burst_sender(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < CE_N; i++) {
        uint64_t v[2] = {i, ~(uint64_t)i};
        HY_CHECK_EQ(hy_send(ce.main, T_DATA, v, i % 2 ? sizeof(v) : sizeof(v[0])), 0);
    }
    hy_test_send_u32(ce.main, T_DONE, 0);
    hy_msg_free(hy_test_must_recv_tag(T_STOP, WAIT_NS));
}

static void body_entries_overflow(void *arg)
{
    (void)arg;
    ce.main = hy_self();
    uint64_t out1 = SHARD(1, buffers_out);
    uint64_t ovf1 = SHARD(1, ring_overflows);
    ce.sender = spawn_on(1, ce_burst_sender, NULL);
    for (uint32_t i = 0; i < CE_N; i++) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        uint64_t v[2] = {UINT64_MAX, 0};
        HY_CHECK_EQ(m->size, i % 2 ? sizeof(v) : sizeof(v[0]));
        memcpy(v, m->data, m->size <= sizeof(v) ? m->size : sizeof(v));
        HY_CHECK_EQ(v[0], i);
        if (i % 2)
            HY_CHECK_EQ(v[1], ~(uint64_t)i);
        HY_CHECK_EQ(m->home, 0);
        HY_CHECK(hy_pid_eq(m->from, ce.sender));
        hy_msg_free(m);
        if (v[0] != i)
            return;
    }
    hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    HY_CHECK(SHARD(1, ring_overflows) > ovf1);
    HY_CHECK_EQ(SHARD(1, buffers_out), out1);
    hy_test_send_u32(ce.sender, T_STOP, 0);
    check_empty();
}

static void test_msg_small_messages_behind_a_full_ring_stay_entries(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.ring_size = 16;
    hy_test_run_cfg(&cfg, body_entries_overflow, NULL);
}

/* A burst of small messages to several receivers of one shard, the
 * receiver changing every one to three messages: the drain links each
 * stretch to one receiver into a run of its own. Every receiver gets its
 * own messages, all of them, in order, and nothing else; those to a dead
 * pid of that shard are dropped and counted there. */
#define RUNS_N 900u
#define RUNS_RECEIVERS 3u /* index 3: the dead pid */

static unsigned runs_target(uint32_t i)
{
    return (i * 7u + i / 3u + (i * i) % 5u) % (RUNS_RECEIVERS + 1u);
}

static struct {
    hy_pid main;
    hy_pid to[RUNS_RECEIVERS + 1];
    uint32_t bad[RUNS_RECEIVERS];
} runs;

static void runs_receiver(void *arg)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    hy_test_send_u32(runs.main, T_READY, idx);
    for (uint32_t i = 0; i < RUNS_N; i++) {
        if (runs_target(i) != idx)
            continue;
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        if (m->tag != T_DATA || payload_u32(m) != i)
            runs.bad[idx]++;
        hy_msg_free(m);
    }
    check_empty();
    hy_test_send_u32(runs.main, T_DONE, idx);
}

static void runs_sender(void *arg)
{
    (void)arg;
    /* all in one turn, far fewer than the ring's slots: published in
     * batches of 32, each batch a mixture of receivers */
    for (uint32_t i = 0; i < RUNS_N; i++)
        hy_test_send_u32(runs.to[runs_target(i)], T_DATA, i);
}

static bool shard1_dropped_reached(void *arg)
{
    return SHARD(1, dropped_dead) >= ((struct dropped_at_least *)arg)->n;
}

static void body_entry_runs(void *arg)
{
    (void)arg;
    runs.main = dead.parent = hy_self();
    runs.to[RUNS_RECEIVERS] = spawn_on(1, short_lived, NULL);
    hy_msg_free(hy_test_must_recv_tag(T_EXITED, WAIT_NS));
    for (unsigned k = 0; k < RUNS_RECEIVERS; k++) {
        runs.to[k] = spawn_on(1, runs_receiver, (void *)(uintptr_t)k);
        hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
    }
    uint32_t ndead = 0;
    for (uint32_t i = 0; i < RUNS_N; i++)
        ndead += runs_target(i) == RUNS_RECEIVERS;
    uint64_t dead1 = SHARD(1, dropped_dead);
    spawn_on(0, runs_sender, NULL);
    for (unsigned k = 0; k < RUNS_RECEIVERS; k++)
        hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    for (unsigned k = 0; k < RUNS_RECEIVERS; k++)
        HY_CHECK_EQ(runs.bad[k], 0);
    /* the last ones to the dead pid may come after every receiver's last */
    struct dropped_at_least d = {dead1 + ndead};
    HY_CHECK(hy_test_wait_until(shard1_dropped_reached, &d, WAIT_MS));
    HY_CHECK_EQ(SHARD(1, dropped_dead) - dead1, ndead);
}

static void test_msg_entry_bursts_to_several_receivers_keep_each_order(void **state)
{
    (void)state;
    hy_test_run(2, body_entry_runs, NULL);
}

/* With four shards and 65,536-slot rings the entry arrays are smaller than
 * the rings (16 MiB in all): a burst that outruns the receiver uses up the
 * array's lines while the ring has room, and the small messages after that
 * go as buffers until lines are free again; order holds across the switch. */
#define CE_BIG_N 60000u

static void ce_big_sender(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < CE_BIG_N; i++) {
        uint64_t v = i;
        HY_CHECK_EQ(hy_send(ce.main, T_DATA, &v, sizeof(v)), 0);
    }
    hy_test_send_u32(ce.main, T_DONE, 0);
    hy_msg_free(hy_test_must_recv_tag(T_STOP, WAIT_NS));
}

static void body_entries_small_array(void *arg)
{
    (void)arg;
    ce.main = hy_self();
    ce.sender = spawn_on(1, ce_big_sender, NULL);
    uint32_t own = 0;
    for (uint32_t i = 0; i < CE_BIG_N; i++) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        uint64_t v = UINT64_MAX;
        if (m->size == sizeof(v))
            memcpy(&v, m->data, sizeof(v));
        HY_CHECK_EQ(v, i);
        HY_CHECK(m->home == 0 || m->home == 1);
        own += m->home == 0;
        hy_msg_free(m);
        if (v != i)
            return;
    }
    HY_CHECK(own > 0);
    hy_msg_free(hy_test_must_recv_tag(T_DONE, WAIT_NS));
    hy_test_send_u32(ce.sender, T_STOP, 0);
    check_empty();
}

static void test_msg_entry_array_smaller_than_ring_keeps_order(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 4;
    cfg.ring_size = 65536;
    hy_test_run_cfg(&cfg, body_entries_small_array, NULL);
}

/* One sender mixes ring entries (small messages), buffers (larger ones,
 * ones carrying a ref) and signals (link, unlink, monitor, demonitor, exit)
 * towards one receiver on another shard: the receiver takes the messages in
 * order, and each exit signal (it traps exits) as a message exactly between
 * the messages sent before and after it. Then a selective receive picks one tag out of a mixed
 * burst and leaves the rest in order. */
#define MX_ROUNDS 400u

enum { MX_PLAIN, MX_LINKED, MX_UNLINKED, MX_MONITORED, MX_DEMONITORED };

static struct {
    hy_pid main, sender;
} mx;

static void mx_send(uint32_t seq, uint32_t what, size_t len)
{
    unsigned char b[300];
    memset(b, (int)(seq & 0xff), sizeof(b));
    memcpy(b, &seq, sizeof(seq));
    memcpy(b + 4, &what, sizeof(what));
    if (len > 8 && len % 3 == 0) {
        hy_ref r;
        HY_CHECK_EQ(hy_ref_make(&r), 0);
        HY_CHECK_EQ(hy_send_ref(mx.main, T_DATA, r, b, len), 0);
    } else {
        HY_CHECK_EQ(hy_send(mx.main, T_DATA, b, len), 0);
    }
}

static void mx_sender(void *arg)
{
    (void)arg;
    static const size_t lens[] = {8, 16, 32, 33, 40, 48, 200, 300, 12, 24};
    uint32_t seq = 0;
    for (uint32_t r = 0; r < MX_ROUNDS; r++) {
        for (unsigned k = 0; k < 3; k++, seq++)
            mx_send(seq, MX_PLAIN, lens[(r + k) % 10]);
        HY_CHECK_EQ(hy_link(mx.main), 0);
        mx_send(seq++, MX_LINKED, lens[r % 10]);
        HY_CHECK_EQ(hy_unlink(mx.main), 0);
        mx_send(seq++, MX_UNLINKED, 8);
        hy_ref mref;
        HY_CHECK_EQ(hy_monitor(mx.main, &mref), 0);
        mx_send(seq++, MX_MONITORED, lens[(r + 5) % 10]);
        HY_CHECK_EQ(hy_demonitor(mref, false), 0);
        mx_send(seq++, MX_DEMONITORED, 32);
        if (r % 10 == 4) /* the receiver traps exits: a message in its place */
            HY_CHECK_EQ(hy_exit_pid(mx.main, hy_reason_user((int32_t)seq, "mx")), 0);
    }
    /* a burst of two tags for the selective receive, then the end */
    for (uint32_t i = 0; i < 64; i++) {
        uint32_t v = i;
        unsigned char b[64] = {0};
        memcpy(b, &v, sizeof(v));
        HY_CHECK_EQ(hy_send(mx.main, i % 4 == 1 ? T_PING : T_PONG, b, i % 2 ? 4 : 64), 0);
    }
    hy_test_send_u32(mx.main, T_DONE, seq);
    hy_msg_free(hy_test_must_recv_tag(T_STOP, WAIT_NS));
}

static int mx_match_tag(const struct hy_msg *m, void *arg)
{
    return m->tag == *(const uint64_t *)arg;
}

static void body_mixed_order(void *arg)
{
    (void)arg;
    mx.main = hy_self();
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    mx.sender = spawn_on(1, mx_sender, NULL);
    uint32_t seq = 0, exits = 0;
    while (seq < MX_ROUNDS * 7) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        if (m->tag == HY_TAG_EXIT) {
            struct hy_exit_info ei;
            HY_CHECK_EQ(hy_msg_exit_info(m, &ei), 0);
            HY_CHECK(hy_pid_eq(ei.from, mx.sender));
            HY_CHECK_EQ(ei.reason.code, (int32_t)seq); /* right after the round's last message */
            HY_CHECK_EQ(seq % 70, 35);
            exits++;
            hy_msg_free(m);
            continue;
        }
        HY_CHECK_EQ(m->tag, T_DATA);
        uint32_t got = UINT32_MAX, what = UINT32_MAX;
        if (m->size >= 8) {
            memcpy(&got, m->data, 4);
            memcpy(&what, m->data + 4, 4);
        }
        HY_CHECK_EQ(got, seq);
        if (m->size > 8)
            HY_CHECK_EQ(m->data[m->size - 1], seq & 0xff);
        hy_msg_free(m);
        HY_CHECK(what <= MX_DEMONITORED);
        if (got != seq)
            return;
        seq++;
    }
    HY_CHECK_EQ(exits, MX_ROUNDS / 10);
    /* selective receive: T_DONE is last, after the mixed burst */
    struct hy_msg *d = hy_test_must_recv_tag(T_DONE, WAIT_NS);
    if (!d)
        return;
    HY_CHECK_EQ(hy_test_payload_u32(d), seq);
    hy_msg_free(d);
    HY_CHECK_EQ(hy_mailbox_len(), 64);
    uint64_t want = T_PING;
    for (uint32_t i = 1; i < 64; i += 4) {
        struct hy_msg *m = NULL;
        HY_CHECK_EQ(hy_recv_match(mx_match_tag, &want, &m, HY_NOWAIT), 0);
        if (!m)
            return;
        HY_CHECK_EQ(payload_u32(m), i);
        hy_msg_free(m);
    }
    for (uint32_t i = 0; i < 64; i++) {
        if (i % 4 == 1)
            continue;
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        HY_CHECK_EQ(m->tag, T_PONG);
        HY_CHECK_EQ(m->size, i % 2 ? 4u : 64u);
        HY_CHECK_EQ(payload_u32(m), i);
        hy_msg_free(m);
    }
    hy_test_send_u32(mx.sender, T_STOP, 0);
    check_empty();
}

static void test_msg_cross_shard_entries_buffers_signals_keep_order(void **state)
{
    (void)state;
    hy_test_run(2, body_mixed_order, NULL);
}

/* ---- foreign senders against the runtime's teardown --------------------------------- */

static _Atomic uint64_t spam_hi, spam_lo; /* a pid on shard 1 (0: none yet) */
static _Atomic int spam_quit;
static _Atomic uint64_t spam_sent;

static void *foreign_spammer(void *arg)
{
    (void)arg;
    char payload[64] = {0};
    while (!atomic_load(&spam_quit)) {
        hy_pid to = {atomic_load(&spam_hi), atomic_load(&spam_lo)};
        if (!to.hi && !to.lo)
            continue;
        int rc = hy_send_foreign(to, 9, payload, sizeof(payload));
        if (rc == 0)
            atomic_fetch_add(&spam_sent, 1);
        else if (rc != HY_ENOTSTARTED)
            hy_test_check_fail(__FILE__, __LINE__, "hy_send_foreign: %d", rc);
    }
    return NULL;
}

static void spam_target(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    while (hy_recv(&m, 2 * 1000000) == 0)
        hy_msg_free(m);
}

static void short_main(void *arg)
{
    (void)arg;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_pid pid;
    HY_CHECK_EQ(hy_spawn_opt(spam_target, NULL, &o, &pid), 0);
    atomic_store(&spam_lo, pid.lo);
    atomic_store(&spam_hi, pid.hi);
    hy_sleep_ns(3 * 1000000);
}

/* A foreign thread that keeps sending while runtimes start and stop under
 * it: every send either lands (the runtime is up) or returns
 * HY_ENOTSTARTED; none may touch a shard that teardown has freed or a wake
 * descriptor it has closed (ASan: use after free). */
static void test_msg_send_foreign_against_stop(void **state)
{
    (void)state;
    atomic_store(&spam_quit, 0);
    atomic_store(&spam_sent, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, foreign_spammer, NULL), 0);
    for (int round = 0; round < 20; round++) {
        struct hy_config cfg;
        hy_config_init(&cfg);
        cfg.nshards = 2;
        assert_int_equal(hy_run(&cfg, short_main, NULL), 0);
    }
    atomic_store(&spam_quit, 1);
    pthread_join(t, NULL);
    hy_test_assert_checks();
    assert_true(atomic_load(&spam_sent) > 0);
}


/* ---- a ping-pong that never ends does not starve its shard -------------- */

/* Two processes that ping-pong forever on shard 0 hand the CPU to each other
 * directly at every message; the shard must still expire its timers and take
 * in what other shards send. Each side gives up after CAP_NS (recorded as a
 * failure), so a starved shard fails the test instead of hanging it. */
#define PINGPONG_CAP_NS (60000 * MS)

static atomic_int pp_stop;
static atomic_int pp_capped;
static atomic_ullong pp_rounds;

struct pp_arg {
    hy_pid peer; /* pong's pid for the ping side; none for the pong side */
    hy_pid parent;
};

static void pp_side(void *arg)
{
    const struct pp_arg *a = arg;
    hy_pid peer = a->peer;
    uint64_t t0 = hy_now_ns();
    if (!hy_pid_is_none(peer)) /* the ping side serves first */
        HY_CHECK_EQ(hy_send(peer, T_PING, NULL, 0), 0);
    for (uint64_t k = 1;; k++) {
        struct hy_msg *m = must_recv();
        if (!m)
            return;
        uint64_t tag = m->tag;
        peer = m->from;
        hy_msg_free(m);
        if (tag == T_STOP)
            break;
        if ((k & 1023) == 0 && hy_now_ns() - t0 > PINGPONG_CAP_NS)
            atomic_store(&pp_capped, 1);
        if (atomic_load_explicit(&pp_stop, memory_order_relaxed) || atomic_load(&pp_capped)) {
            HY_CHECK_EQ(hy_send(peer, T_STOP, NULL, 0), 0); /* the peer ends too */
            break;
        }
        atomic_fetch_add_explicit(&pp_rounds, 1, memory_order_relaxed);
        HY_CHECK_EQ(hy_send(peer, tag == T_PING ? T_PONG : T_PING, NULL, 0), 0);
    }
    HY_CHECK_EQ(hy_send(a->parent, T_DONE, NULL, 0), 0);
}

static void pp_remote_sender(void *arg)
{
    hy_pid to = *(const hy_pid *)arg;
    HY_CHECK_EQ(hy_shard_id(), 1);
    HY_CHECK_EQ(hy_send(to, T_DATA, NULL, 0), 0);
}

static void body_pingpong_forever(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_shard_id(), 0);
    atomic_store(&pp_stop, 0);
    atomic_store(&pp_capped, 0);
    atomic_store(&pp_rounds, 0);
    struct pp_arg pong = {.peer = HY_PID_NONE, .parent = hy_self()};
    struct pp_arg ping = {.parent = hy_self()};
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 0;
    o.arg_size = sizeof(pong);
    ping.peer = spawn_opts(pp_side, &pong, &o);
    spawn_opts(pp_side, &ping, &o);
    /* the pair is running: wait until it has made some round trips */
    uint64_t t0 = hy_now_ns();
    while (atomic_load(&pp_rounds) < 1000 && hy_now_ns() - t0 < (uint64_t)WAIT_NS)
        hy_yield();
    HY_CHECK(atomic_load(&pp_rounds) >= 1000);
    /* a timer on shard 0 fires while the pair runs */
    struct hy_msg *m = NULL;
    for (int i = 0; i < 3; i++) {
        uint64_t r0 = atomic_load(&pp_rounds);
        HY_CHECK_EQ(hy_recv_tag(T_NEVER, &m, 20 * MS), HY_ETIMEDOUT);
        HY_CHECK(atomic_load(&pp_rounds) > r0); /* the pair ran meanwhile */
    }
    /* a message from shard 1 to shard 0 gets in while the pair runs */
    hy_pid self = hy_self();
    o.shard = 1;
    o.arg_size = sizeof(self);
    spawn_opts(pp_remote_sender, &self, &o);
    HY_CHECK_EQ(hy_recv_tag(T_DATA, &m, WAIT_NS), 0);
    if (m)
        hy_msg_free(m);
    /* the pair was still running, not ended by its cap */
    HY_CHECK_EQ(atomic_load(&pp_capped), 0);
    atomic_store(&pp_stop, 1);
    for (int i = 0; i < 2; i++) {
        m = NULL;
        HY_CHECK_EQ(hy_recv_tag(T_DONE, &m, WAIT_NS), 0);
        if (m)
            hy_msg_free(m);
    }
    HY_CHECK_EQ(atomic_load(&pp_capped), 0);
}

static void test_msg_pingpong_forever_does_not_starve_shard(void **state)
{
    (void)state;
    hy_test_run(2, body_pingpong_forever, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_payload_local),
        cmocka_unit_test(test_msg_send_foreign_against_stop),
        cmocka_unit_test(test_msg_payload_cross_shard),
        cmocka_unit_test(test_msg_small_payloads_every_length),
        cmocka_unit_test(test_msg_too_large_is_rejected),
        cmocka_unit_test(test_msg_invalid_arguments),
        cmocka_unit_test(test_msg_recv_outside_process),
        cmocka_unit_test(test_msg_selective_receive_keeps_order),
        cmocka_unit_test(test_msg_fast_and_general_paths_keep_order),
        cmocka_unit_test(test_msg_handed_to_blocked_receiver),
        cmocka_unit_test(test_msg_free_every_class_back_to_its_pool),
        cmocka_unit_test(test_msg_selective_receive_cross_shard),
        cmocka_unit_test(test_msg_recv_timeout),
        cmocka_unit_test(test_msg_recv_timeout_racing_message),
        cmocka_unit_test(test_msg_recv_ref_marker),
        cmocka_unit_test(test_msg_send_to_dead_is_dropped),
        cmocka_unit_test(test_msg_mailbox_drop_new),
        cmocka_unit_test(test_msg_mailbox_kill),
        cmocka_unit_test(test_msg_mailbox_kill_self_acts_at_the_send),
        cmocka_unit_test(test_msg_mailbox_kill_does_not_wait_for_blocking_call),
        cmocka_unit_test(test_msg_full_mailbox_gets_runtime_replies),
        cmocka_unit_test(test_msg_mailbox_len),
        cmocka_unit_test(test_msg_zero_copy_send),
        cmocka_unit_test(test_msg_drop_fn_runs_for_a_message_never_received),
        cmocka_unit_test(test_msg_send_foreign),
        cmocka_unit_test(test_msg_buffers_go_home),
        cmocka_unit_test(test_msg_return_blocks_restore_buffers),
        cmocka_unit_test(test_msg_cross_shard_bursts_keep_order),
        cmocka_unit_test(test_msg_small_cross_shard_messages_travel_in_the_ring),
        cmocka_unit_test(test_msg_entry_bursts_to_several_receivers_keep_each_order),
        cmocka_unit_test(test_msg_small_messages_behind_a_full_ring_stay_entries),
        cmocka_unit_test(test_msg_entry_array_smaller_than_ring_keeps_order),
        cmocka_unit_test(test_msg_cross_shard_entries_buffers_signals_keep_order),
        cmocka_unit_test(test_msg_pingpong_forever_does_not_starve_shard),
    };
    if (getenv("HY_TEST_FILTER"))
        cmocka_set_test_filter(getenv("HY_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
