/* Stress tests of core/mesh.c through the runtime: shards exchanging
 * messages both ways over every ordered pair, each message numbered per
 * sender and checked at the receiver (nothing lost, reordered or
 * duplicated, payload intact), with the default rings and with tiny ones
 * (so that the overflow queues behind full rings carry much of the
 * traffic), and two shards flooding each other before either receives.
 *
 * Counts scale with HYDRA_TEST_SCALE (meson option test_scale): 1 M
 * messages per test at scale 1. The plain-thread version of the mesh, for
 * ThreadSanitizer, is tests/core/tsan_mesh.c (scripts/tsan-ring). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define SEC     INT64_C(1000000000)
#define WAIT_NS (60 * SEC) /* silence this long means something was lost */

enum {
    T_DATA = 1,
    T_DONE,
};

#define MAX_SHARDS  4
#define PER_PAIR    2 /* senders per ordered pair of shards (and per shard to itself) */
#define MAX_SENDERS (MAX_SHARDS * MAX_SHARDS * PER_PAIR)

struct hdr {
    uint32_t sender; /* index */
    uint32_t extra;  /* bytes after the header */
    uint64_t seq;
};

struct sender_arg {
    hy_pid to;
    uint32_t id;
    uint64_t count;
};

struct result {
    uint64_t received;
    uint64_t bad_seq; /* reordered, duplicated or lost in between */
    uint64_t bad_payload;
    uint64_t bad_sender; /* unknown id, or not meant for this receiver */
    uint64_t bad_from;   /* from differs between messages of one sender */
    int rc;              /* receive error (timeout) */
};

static struct {
    unsigned nshards;
    uint32_t nsenders;
    uint64_t per_sender;
    int32_t dest_of[MAX_SENDERS]; /* receiving shard of each sender */
    hy_pid main;
    struct result res[MAX_SHARDS];
} mt;

static uint8_t pat(uint64_t seq, uint32_t i)
{
    return (uint8_t)(seq * 13u + i * 7u + 1u);
}

static void mesh_sender(void *arg)
{
    const struct sender_arg *a = arg; /* our arena copy */
    uint8_t buf[sizeof(struct hdr) + 200];
    for (uint64_t seq = 0; seq < a->count; seq++) {
        /* mostly small, now and then larger: several buffer classes */
        uint32_t extra = (seq % 7 == 0) ? 200 : (uint32_t)(seq % 3) * 8;
        struct hdr h = {a->id, extra, seq};
        memcpy(buf, &h, sizeof(h));
        for (uint32_t i = 0; i < extra; i++)
            buf[sizeof(h) + i] = pat(seq, i);
        int rc = hy_send(a->to, T_DATA, buf, sizeof(h) + extra);
        if (rc) {
            HY_CHECK_EQ(rc, 0);
            return;
        }
    }
}

struct recv_state {
    uint64_t next[MAX_SENDERS];
    hy_pid from[MAX_SENDERS];
};

static void mesh_receiver(void *arg)
{
    unsigned me = (unsigned)hy_shard_id();
    (void)arg;
    struct recv_state *st = calloc(1, sizeof(*st)); /* too big for the stack */
    struct result *r = &mt.res[me];
    memset(r, 0, sizeof(*r));
    uint64_t expected = 0;
    for (uint32_t s = 0; s < mt.nsenders; s++)
        if (mt.dest_of[s] == (int32_t)me)
            expected += mt.per_sender;
    while (st && r->received < expected) {
        struct hy_msg *m = NULL;
        int rc = hy_recv(&m, WAIT_NS);
        if (rc) {
            r->rc = rc;
            break;
        }
        struct hdr h;
        if (m->tag != T_DATA || m->size < sizeof(h)) {
            r->bad_payload++;
            hy_msg_free(m);
            continue;
        }
        memcpy(&h, m->data, sizeof(h));
        r->received++;
        if (h.sender >= mt.nsenders || mt.dest_of[h.sender] != (int32_t)me) {
            r->bad_sender++;
        } else {
            if (h.seq != st->next[h.sender])
                r->bad_seq++;
            st->next[h.sender] = h.seq + 1;
            if (h.seq == 0)
                st->from[h.sender] = m->from;
            else if (!hy_pid_eq(st->from[h.sender], m->from))
                r->bad_from++;
            bool ok = m->size == sizeof(h) + h.extra;
            for (uint32_t i = 0; ok && i < h.extra; i++)
                ok = m->data[sizeof(h) + i] == pat(h.seq, i);
            if (!ok)
                r->bad_payload++;
        }
        hy_msg_free(m);
    }
    /* every sender's last message came: nothing lost at the end either */
    for (uint32_t s = 0; st && s < mt.nsenders; s++)
        if (mt.dest_of[s] == (int32_t)me && st->next[s] != mt.per_sender)
            r->bad_seq++;
    free(st);
    HY_CHECK_EQ(hy_send(mt.main, T_DONE, &me, sizeof(me)), 0);
}

static void check_results(void)
{
    for (unsigned s = 0; s < mt.nshards; s++) {
        const struct result *r = &mt.res[s];
        if (r->rc || r->bad_seq || r->bad_payload || r->bad_sender || r->bad_from)
            fprintf(stderr,
                    "shard %u: received %llu, bad seq %llu, bad payload %llu, bad sender "
                    "%llu, bad from %llu, rc %d\n",
                    s, (unsigned long long)r->received, (unsigned long long)r->bad_seq,
                    (unsigned long long)r->bad_payload, (unsigned long long)r->bad_sender,
                    (unsigned long long)r->bad_from, r->rc);
        HY_CHECK_EQ(r->rc, 0);
        HY_CHECK_EQ(r->bad_seq, 0);
        HY_CHECK_EQ(r->bad_payload, 0);
        HY_CHECK_EQ(r->bad_sender, 0);
        HY_CHECK_EQ(r->bad_from, 0);
    }
}

/* Every shard sends to every shard (itself included) and receives. */
static void body_all_pairs(void *arg)
{
    uint64_t total = *(uint64_t *)arg;
    unsigned n = hy_shard_count();
    mt.nshards = n;
    mt.main = hy_self();
    mt.nsenders = n * n * PER_PAIR;
    mt.per_sender = total / mt.nsenders + 1;
    /* the table is complete before any receiver reads it */
    for (uint32_t id = 0; id < mt.nsenders; id++)
        mt.dest_of[id] = (int32_t)(id % n);
    hy_pid recv[MAX_SHARDS];
    for (unsigned s = 0; s < n; s++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)s;
        HY_CHECK_EQ(hy_spawn_opt(mesh_receiver, NULL, &o, &recv[s]), 0);
    }
    uint32_t id = 0;
    for (unsigned k = 0; k < PER_PAIR; k++) {
        for (unsigned src = 0; src < n; src++) {
            for (unsigned dst = 0; dst < n; dst++) {
                HY_CHECK_EQ(mt.dest_of[id], (int32_t)dst);
                struct sender_arg a = {recv[dst], id, mt.per_sender};
                struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
                o.shard = (int)src;
                o.arg_size = sizeof(a);
                HY_CHECK_EQ(hy_spawn_opt(mesh_sender, &a, &o, NULL), 0);
                id++;
            }
        }
    }
    for (unsigned s = 0; s < n; s++) {
        struct hy_msg *m = NULL;
        int rc = hy_recv_tag(T_DONE, &m, 10 * WAIT_NS);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            return;
        hy_msg_free(m);
    }
    check_results();
}

static void run_all_pairs(unsigned nshards, unsigned ring_size)
{
    memset(&mt, 0, sizeof(mt));
    for (unsigned i = 0; i < MAX_SENDERS; i++)
        mt.dest_of[i] = -1;
    uint64_t total = hy_test_scaled(1000000);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = nshards;
    if (ring_size)
        cfg.ring_size = ring_size;
    hy_test_run_cfg(&cfg, body_all_pairs, &total);
}

static void test_mesh_two_shards(void **state)
{
    (void)state;
    run_all_pairs(2, 0);
}

static void test_mesh_four_shards(void **state)
{
    (void)state;
    run_all_pairs(4, 0);
}

/* Tiny rings: most entries wait in the overflow queues; order must hold. */
static uint64_t overflows_seen;

static void body_small_rings(void *arg)
{
    body_all_pairs(arg);
    struct hy_stats t;
    HY_CHECK_EQ(hy_stats_total(&t), 0);
    overflows_seen = t.ring_overflows;
}

static void test_mesh_small_rings_overflow(void **state)
{
    (void)state;
    for (unsigned n = 2; n <= 4; n += 2) {
        memset(&mt, 0, sizeof(mt));
        for (unsigned i = 0; i < MAX_SENDERS; i++)
            mt.dest_of[i] = -1;
        uint64_t total = hy_test_scaled(1000000) / 2;
        struct hy_config cfg;
        hy_config_init(&cfg);
        cfg.nshards = n;
        cfg.ring_size = 16;
        overflows_seen = 0;
        hy_test_run_cfg(&cfg, body_small_rings, &total);
        assert_true(overflows_seen > 0);
    }
}

/* Two shards, one process each: both send everything to the other before
 * receiving anything. Sends never block, so neither waits on the other. */
static struct {
    hy_pid peer[2];
    hy_pid main;
    uint64_t count;
    uint64_t bad[2], got[2];
    int rc[2];
} fl;

static void flooder(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    struct hy_msg *m = NULL;
    /* wait for the peer's pid */
    int rc = hy_recv_tag(T_DONE, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return;
    hy_msg_free(m);
    hy_pid peer = fl.peer[1 - me];
    for (uint64_t seq = 0; seq < fl.count; seq++) {
        if (hy_send(peer, T_DATA, &seq, sizeof(seq)) != 0) {
            fl.bad[me]++;
            break;
        }
    }
    for (uint64_t seq = 0; seq < fl.count; seq++) {
        rc = hy_recv_tag(T_DATA, &m, WAIT_NS);
        if (rc) {
            fl.rc[me] = rc;
            break;
        }
        uint64_t v;
        memcpy(&v, m->data, sizeof(v));
        if (v != seq)
            fl.bad[me]++;
        fl.got[me]++;
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_send(fl.main, T_DONE, &me, sizeof(me)), 0);
}

static void body_flood(void *arg)
{
    (void)arg;
    fl.main = hy_self();
    for (unsigned i = 0; i < 2; i++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)i;
        HY_CHECK_EQ(hy_spawn_opt(flooder, (void *)(uintptr_t)i, &o, &fl.peer[i]), 0);
    }
    for (unsigned i = 0; i < 2; i++)
        HY_CHECK_EQ(hy_send(fl.peer[i], T_DONE, NULL, 0), 0);
    for (unsigned i = 0; i < 2; i++) {
        struct hy_msg *m = NULL;
        int rc = hy_recv_tag(T_DONE, &m, 10 * WAIT_NS);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            return;
        hy_msg_free(m);
    }
    struct hy_stats t;
    HY_CHECK_EQ(hy_stats_total(&t), 0);
    HY_CHECK(t.ring_overflows > 0);
    for (unsigned i = 0; i < 2; i++) {
        HY_CHECK_EQ(fl.rc[i], 0);
        HY_CHECK_EQ(fl.bad[i], 0);
        HY_CHECK_EQ(fl.got[i], fl.count);
    }
}

static void test_mesh_flood_both_ways_no_deadlock(void **state)
{
    (void)state;
    memset(&fl, 0, sizeof(fl));
    fl.count = hy_test_scaled(500000);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.ring_size = 16;
    hy_test_run_cfg(&cfg, body_flood, NULL);
}

/* ---- wake-ups put off (hy_config.wake_defer_ns) --------------------------------- */

enum {
    T_PING = 10,
    T_PONG,
    T_STOP,
};

static struct {
    _Atomic int spin_stop;
    uint64_t worst_ns;   /* slowest round trip */
    uint64_t sleeps1;    /* shard 1's sleeps over the round trips */
    int rc;
} wd;

/* on shard 1: answers each message with T_PONG until T_STOP (with
 * arg SINK: takes each and drops it) */
#define SINK ((void *)1)
static void wd_echo(void *arg)
{
    for (;;) {
        struct hy_msg *m = NULL;
        if (hy_recv(&m, HY_INFINITY) != 0)
            return;
        uint64_t tag = m->tag;
        hy_pid from = m->from;
        hy_msg_free(m);
        if (tag == T_STOP)
            return;
        if (arg != SINK)
            HY_CHECK_EQ(hy_send(from, T_PONG, NULL, 0), 0);
    }
}

/* on shard 0: always ready, so shard 0 never runs out of work */
static void wd_spinner(void *arg)
{
    (void)arg;
    while (!atomic_load(&wd.spin_stop))
        hy_yield();
}

static hy_pid wd_spawn_echo(void)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_pid echo = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn_opt(wd_echo, NULL, &o, &echo), 0);
    return echo;
}

/* n round trips to an echo on shard 1, each after a pause that lets
 * shard 1 fall asleep (no idle spin), each waited for up to timeout */
static void wd_round_trips(hy_pid echo, unsigned n, int64_t timeout)
{
    struct hy_stats a, b;
    HY_CHECK_EQ(hy_stats_get(1, &a), 0);
    for (unsigned i = 0; i < n && wd.rc == 0; i++) {
        HY_CHECK_EQ(hy_sleep_ns(2 * 1000 * 1000), 0);
        uint64_t t0 = hy_now_ns();
        HY_CHECK_EQ(hy_send(echo, T_PING, NULL, 0), 0);
        struct hy_msg *m = NULL;
        wd.rc = hy_recv_tag(T_PONG, &m, timeout);
        if (wd.rc == 0)
            hy_msg_free(m);
        uint64_t d = hy_now_ns() - t0;
        if (d > wd.worst_ns)
            wd.worst_ns = d;
    }
    HY_CHECK_EQ(hy_stats_get(1, &b), 0);
    wd.sleeps1 = b.sleeps - a.sleeps;
}

/* runs body on two shards without an idle spin, wake-ups put off by
 * defer_ns; every round trip it waited for was answered */
static void wd_run(void (*body)(void *), uint64_t defer_ns)
{
    memset(&wd, 0, sizeof(wd));
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.idle_spin_ns = 0;
    cfg.wake_defer_ns = defer_ns;
    hy_test_run_cfg(&cfg, body, NULL);
    assert_int_equal(wd.rc, 0);
}

static void body_wake_defer_idle(void *arg)
{
    (void)arg;
    hy_pid echo = wd_spawn_echo();
    wd_round_trips(echo, 20, 500 * 1000 * 1000);
    hy_send(echo, T_STOP, NULL, 0);
}

/* wake_defer_ns of 1 s: a sender that runs out of work (it waits for the
 * reply) wakes the sleeping shard at once, and so does the echo's shard for
 * the reply; a wake-up left to the bound would take a second a round trip */
static void test_mesh_wake_defer_idle_sender_wakes_at_once(void **state)
{
    (void)state;
    wd_run(body_wake_defer_idle, 1000 * 1000 * 1000);
    assert_true(wd.worst_ns < 500ull * 1000 * 1000);
    /* the echo's shard slept between the pings: the wake-ups were needed */
    assert_true(wd.sleeps1 >= 10);
}

static void body_wake_defer_busy(void *arg)
{
    (void)arg;
    hy_pid echo = wd_spawn_echo();
    hy_pid spinner;
    HY_CHECK_EQ(hy_spawn(wd_spinner, NULL, &spinner), 0);
    /* the reply's wake-up comes from an idle shard 1; the ping's from a
     * shard 0 that never runs out of work: only the bound wakes shard 1 */
    wd_round_trips(echo, 5, 5 * SEC);
    atomic_store(&wd.spin_stop, 1);
    hy_send(echo, T_STOP, NULL, 0);
}

/* a sender that always has work still wakes the sleeper once the first
 * wake-up it owes is wake_defer_ns old (20 ms here) */
static void test_mesh_wake_defer_busy_sender_wakes_after_bound(void **state)
{
    (void)state;
    wd_run(body_wake_defer_busy, 20 * 1000 * 1000);
    assert_true(wd.sleeps1 >= 3);
}

/* every pair both ways, default and tiny rings, wake-ups put off: nothing
 * lost, reordered or late beyond the receivers' deadline */
static void test_mesh_wake_defer_all_pairs(void **state)
{
    (void)state;
    for (unsigned n = 2; n <= 4; n += 2) {
        for (unsigned ring = 0; ring <= 16; ring += 16) {
            memset(&mt, 0, sizeof(mt));
            for (unsigned i = 0; i < MAX_SENDERS; i++)
                mt.dest_of[i] = -1;
            uint64_t total = hy_test_scaled(1000000) / 4;
            struct hy_config cfg;
            hy_config_init(&cfg);
            cfg.nshards = n;
            cfg.idle_spin_ns = 0;
            cfg.wake_defer_ns = 1000 * 1000;
            if (ring)
                cfg.ring_size = ring;
            hy_test_run_cfg(&cfg, body_all_pairs, &total);
        }
    }
}

/* ---- the cross-shard spin (hy_config.xshard_spin_ns) ----------------------- */

#define XS_SPIN_NS (1000 * 1000) /* the largest allowed: 1 ms */
#define XS_ROUNDS  20

static struct {
    hy_pid sink, spinner;
    struct hy_stats a, b; /* shard 0 before and after the rounds */
    uint64_t cpu_ns;      /* shard 0's thread CPU time over the rounds */
    uint64_t answered;
    int rc;
} xs;

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* XS_ROUNDS rounds on shard 0 of: a message to the sink on shard 1 (or
 * none), then a 5 ms wait for a timer; shard 0's stats and CPU time taken
 * around them (the process runs on shard 0's thread) */
static void xs_rounds(bool send)
{
    HY_CHECK_EQ(hy_sleep_ns(5 * 1000 * 1000), 0); /* the spawns' exchange is old */
    HY_CHECK_EQ(hy_stats_get(0, &xs.a), 0);
    uint64_t c0 = thread_cpu_ns();
    for (unsigned i = 0; i < XS_ROUNDS; i++) {
        if (send)
            HY_CHECK_EQ(hy_send(xs.sink, T_PING, NULL, 0), 0);
        HY_CHECK_EQ(hy_sleep_ns(5 * 1000 * 1000), 0);
    }
    xs.cpu_ns = thread_cpu_ns() - c0;
    HY_CHECK_EQ(hy_stats_get(0, &xs.b), 0);
}

static void xs_spawn(bool busy_partner)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(wd_echo, SINK, &o, &xs.sink), 0);
    if (busy_partner)
        HY_CHECK_EQ(hy_spawn_opt(wd_spinner, NULL, &o, &xs.spinner), 0);
}

static void xs_stop(void)
{
    atomic_store(&wd.spin_stop, 1);
    hy_send(xs.sink, T_STOP, NULL, 0);
}

static void xs_run(void (*body)(void *), void *arg)
{
    memset(&xs, 0, sizeof(xs));
    memset(&wd, 0, sizeof(wd));
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.idle_spin_ns = 0;
    cfg.xshard_spin_ns = XS_SPIN_NS;
    hy_test_run_cfg(&cfg, body, arg);
    assert_int_equal(xs.rc, 0);
}

/* What body_xs_rounds does: whether the sink stays at work, and whether
 * the rounds send to it */
struct xs_case {
    bool partner_busy;
    bool exchange;
};

static void body_xs_rounds(void *arg)
{
    const struct xs_case *c = arg;
    xs_spawn(c->partner_busy);
    xs_rounds(c->exchange);
    xs_stop();
}

/* A shard that sent to a shard that stays at work and gets no answer
 * spins, and the spin ends at its bound (1 ms) with a sleep: each 5 ms wait
 * for a timer ends in a sleep (a spin without the bound would last until
 * the timer, with no sleep at all). */
static void test_mesh_xshard_spin_ends_at_bound(void **state)
{
    (void)state;
    xs_run(body_xs_rounds, &(struct xs_case){.partner_busy = true, .exchange = true});
    assert_true(xs.b.xshard_spins - xs.a.xshard_spins >= XS_ROUNDS);
    assert_true(xs.b.sleeps - xs.a.sleeps >= XS_ROUNDS);
}

/* A shard with no exchange under way sleeps at once, even with another
 * shard at work: no spin, and its CPU time over 100 ms of waits stays far
 * below what a 1 ms spin per wait would take (20 ms). */
static void test_mesh_xshard_spin_none_without_exchange(void **state)
{
    (void)state;
    xs_run(body_xs_rounds, &(struct xs_case){.partner_busy = true, .exchange = false});
    assert_int_equal(xs.b.xshard_spins - xs.a.xshard_spins, 0);
    assert_true(xs.b.sleeps - xs.a.sleeps >= XS_ROUNDS);
    assert_true(xs.cpu_ns < 10ull * 1000 * 1000);
}

/* A shard that sent to a shard that then goes idle (the sink takes the
 * message and sleeps) stops waiting once it sees that shard asleep: it
 * sleeps too, well before the bound (1 ms a round would be 20 ms of CPU). */
static void test_mesh_xshard_spin_stops_when_partner_idle(void **state)
{
    (void)state;
    xs_run(body_xs_rounds, &(struct xs_case){.partner_busy = false, .exchange = true});
    assert_true(xs.b.sleeps - xs.a.sleeps >= XS_ROUNDS);
    assert_true(xs.cpu_ns < 10ull * 1000 * 1000);
}

static void body_xs_ping_pong(void *arg)
{
    (void)arg;
    hy_pid echo = wd_spawn_echo();
    HY_CHECK_EQ(hy_stats_get(0, &xs.a), 0);
    for (unsigned i = 0; i < 200 && xs.rc == 0; i++) {
        HY_CHECK_EQ(hy_send(echo, T_PING, NULL, 0), 0);
        struct hy_msg *m = NULL;
        xs.rc = hy_recv_tag(T_PONG, &m, 10 * SEC);
        if (xs.rc == 0) {
            hy_msg_free(m);
            xs.answered++;
        }
    }
    HY_CHECK_EQ(hy_stats_get(0, &xs.b), 0);
    hy_send(echo, T_STOP, NULL, 0);
}

/* Round trips to a shard that sleeps between them: every one answered,
 * and the spin of the waiting shard found answers (input seen in the spin
 * makes the turn that takes it). */
static void test_mesh_xshard_spin_ping_pong(void **state)
{
    (void)state;
    xs_run(body_xs_ping_pong, NULL);
    assert_int_equal(xs.answered, 200);
    assert_true(xs.b.xshard_spin_hits - xs.a.xshard_spin_hits >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mesh_two_shards),
        cmocka_unit_test(test_mesh_four_shards),
        cmocka_unit_test(test_mesh_small_rings_overflow),
        cmocka_unit_test(test_mesh_flood_both_ways_no_deadlock),
        cmocka_unit_test(test_mesh_wake_defer_idle_sender_wakes_at_once),
        cmocka_unit_test(test_mesh_wake_defer_busy_sender_wakes_after_bound),
        cmocka_unit_test(test_mesh_wake_defer_all_pairs),
        cmocka_unit_test(test_mesh_xshard_spin_ends_at_bound),
        cmocka_unit_test(test_mesh_xshard_spin_none_without_exchange),
        cmocka_unit_test(test_mesh_xshard_spin_stops_when_partner_idle),
        cmocka_unit_test(test_mesh_xshard_spin_ping_pong),
    };
    if (getenv("HY_TEST_FILTER"))
        cmocka_set_test_filter(getenv("HY_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
