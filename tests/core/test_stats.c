/* Statistics: the per shard-pair ring traffic counted per published batch
 * (hy_stats_pair), the histogram of scheduler turn time, and the list of a
 * shard's own processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define SEC    1000000000LL
#define T_DATA 1
#define T_DONE 2

static void sink(void *arg)
{
    uint32_t n = *(const uint32_t *)arg;
    for (uint32_t i = 0; i < n; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(T_DATA, 10 * SEC);
        if (!m)
            return;
        hy_msg_free(m);
    }
    struct hy_msg *m = hy_test_must_recv_tag(T_DONE, 10 * SEC);
    if (m) {
        hy_test_send_tag(m->from, T_DONE);
        hy_msg_free(m);
    }
}

static void body_pairs(void *arg)
{
    (void)arg;
    uint32_t n = (uint32_t)hy_test_scaled(5000);
    struct hy_pair_stats b01, b10, b00, a01, a10, a00;
    HY_CHECK_EQ(hy_stats_pair(0, 1, &b01), 0);
    HY_CHECK_EQ(hy_stats_pair(1, 0, &b10), 0);
    HY_CHECK_EQ(hy_stats_pair(0, 0, &b00), 0);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.arg_size = sizeof(n);
    hy_pid p;
    HY_CHECK_EQ(hy_spawn_opt(sink, &n, &o, &p), 0);
    for (uint32_t i = 0; i < n; i++)
        HY_CHECK_EQ(hy_send(p, T_DATA, &i, sizeof(i)), 0);
    hy_test_send_tag(p, T_DONE);
    struct hy_msg *m = hy_test_must_recv_tag(T_DONE, 10 * SEC);
    hy_msg_free(m);
    HY_CHECK(hy_test_quiesce(1, 10000));
    HY_CHECK_EQ(hy_stats_pair(0, 1, &a01), 0);
    HY_CHECK_EQ(hy_stats_pair(1, 0, &a10), 0);
    HY_CHECK_EQ(hy_stats_pair(0, 0, &a00), 0);
    /* Every message (plus the spawn request and DONE) crossed 0 -> 1, in
     * batches: fewer publishes than entries. */
    uint64_t e01 = a01.ring_entries - b01.ring_entries;
    uint64_t n01 = a01.batches - b01.batches;
    HY_CHECK(e01 >= (uint64_t)n + 2);
    HY_CHECK(n01 >= 1);
    HY_CHECK(n01 <= e01);
    /* The reply, the spawn answer and the buffers going home came back. */
    HY_CHECK(a10.ring_entries - b10.ring_entries >= 2);
    /* Nothing goes through a ring from a shard to itself. */
    HY_CHECK_EQ(a00.ring_entries, b00.ring_entries);
    struct hy_pair_stats x;
    HY_CHECK_EQ(hy_stats_pair(0, 2, &x), HY_EINVAL);
    HY_CHECK_EQ(hy_stats_pair(0, 1, NULL), HY_EINVAL);
}

static void test_stats_pair_counts_batches(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_pairs, NULL), 0);
    struct hy_pair_stats x;
    assert_int_equal(hy_stats_pair(0, 1, &x), HY_ENOTSTARTED);
}

/* Holds its shard for about 3 ms without a runtime call: one long turn. */
static void hog(void *arg)
{
    (void)arg;
    uint64_t until = hy_now_ns() + 3000000;
    while (hy_now_ns() < until)
        __asm__ volatile("" ::: "memory");
}

static uint64_t from_bucket(const struct hy_stats *st, unsigned k0)
{
    uint64_t n = 0;
    for (unsigned k = k0; k < HY_STATS_TURN_BUCKETS; k++)
        n += st->turn_log2[k];
    return n;
}

static void body_turns(void *arg)
{
    (void)arg;
    struct hy_stats b, a;
    HY_CHECK_EQ(hy_stats_get(1, &b), 0);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.link = true;
    hy_pid p;
    HY_CHECK_EQ(hy_spawn_opt(hog, NULL, &o, &p), 0);
    uint32_t n = 100;
    o.link = false;
    o.arg_size = sizeof(n);
    HY_CHECK_EQ(hy_spawn_opt(sink, &n, &o, &p), 0);
    for (uint32_t i = 0; i < n; i++)
        HY_CHECK_EQ(hy_send(p, T_DATA, &i, sizeof(i)), 0);
    hy_test_send_tag(p, T_DONE);
    struct hy_msg *m = hy_test_must_recv_tag(T_DONE, 10 * SEC);
    hy_msg_free(m);
    HY_CHECK(hy_test_quiesce(1, 10000));
    HY_CHECK_EQ(hy_stats_get(1, &a), 0);
    for (int i = 0; i < 2; i++) {
        const struct hy_stats *st = i ? &a : &b;
        HY_CHECK_EQ(from_bucket(st, 0), st->turns); /* turns: the sum of the buckets */
    }
    for (unsigned k = 0; k < HY_STATS_TURN_BUCKETS; k++)
        HY_CHECK(a.turn_log2[k] >= b.turn_log2[k]);
    HY_CHECK(a.turns > b.turns);
    /* the hog's turn took 3 ms or more: a bucket of turns >= 2^21 ns (2.1 ms) */
    HY_CHECK(from_bucket(&a, 21) > from_bucket(&b, 21));
    /* each turn counted in bucket k took at least 2^k ns of the busy time */
    uint64_t least = 0;
    for (unsigned k = 1; k < HY_STATS_TURN_BUCKETS; k++)
        least += (a.turn_log2[k] - b.turn_log2[k]) << k;
    HY_CHECK(least <= a.busy_ns - b.busy_ns);
    struct hy_stats t;
    HY_CHECK_EQ(hy_stats_total(&t), 0);
    HY_CHECK(t.turns >= a.turns);
}

static void test_stats_turn_histogram(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_turns, NULL), 0);
}

static void idle(void *arg)
{
    (void)arg;
    struct hy_msg *m = hy_test_must_recv_tag(T_DONE, 10 * SEC);
    hy_msg_free(m);
}

static void body_list_local(void *arg)
{
    (void)arg;
    hy_pid a, b;
    HY_CHECK_EQ(hy_spawn(idle, NULL, &a), 0);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(idle, NULL, &o, &b), 0);
    hy_pid pids[8];
    size_t count = 0;
    HY_CHECK_EQ(hy_proc_list_local(pids, 8, &count), 0);
    HY_CHECK_EQ(count, 2); /* this process and a; not b on shard 1 */
    bool self = false, sa = false;
    for (size_t i = 0; i < count && i < 8; i++) {
        self |= hy_pid_eq(pids[i], hy_self());
        sa |= hy_pid_eq(pids[i], a);
        HY_CHECK(!hy_pid_eq(pids[i], b));
    }
    HY_CHECK(self && sa);
    HY_CHECK_EQ(hy_proc_list_local(NULL, 0, &count), 0);
    HY_CHECK_EQ(count, 2);
    HY_CHECK_EQ(hy_proc_list_local(NULL, 1, &count), HY_EINVAL);
    hy_test_send_tag(a, T_DONE);
    hy_test_send_tag(b, T_DONE);
    HY_CHECK(hy_test_quiesce(1, 10000));
}

static void idle_until_done(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(T_DONE, &m, HY_INFINITY), 0);
    hy_msg_free(m);
}

static int by_slot(const void *a, const void *b)
{
    uint32_t x = hy_pid_slot(*(const hy_pid *)a), y = hy_pid_slot(*(const hy_pid *)b);
    return x < y ? -1 : x > y;
}

/* hy_proc_list_local() gives exactly pids[0..n) (the live ones), in slot
 * order. */
static void check_list_is(hy_pid *want, size_t n)
{
    qsort(want, n, sizeof(*want), by_slot);
    hy_pid *got = calloc(n + 1, sizeof(*got));
    size_t count = 0;
    HY_CHECK_EQ(hy_proc_list_local(got, n + 1, &count), 0);
    HY_CHECK_EQ(count, n);
    size_t bad = 0;
    for (size_t i = 0; i < n && i < count; i++)
        bad += !hy_pid_eq(got[i], want[i]);
    HY_CHECK_EQ(bad, 0);
    free(got);
}

/* Over several chunks of the process table, with holes where processes
 * ended and slots used again: the list holds the live processes, each once,
 * in slot order. */
static void body_list_local_holes(void *arg)
{
    (void)arg;
    /* more than two chunks of slots (4,096 each); more than one under
     * ThreadSanitizer (its scale), which makes a fiber per process and
     * allows about 8,000 */
    const size_t N = hy_test_scale() >= 0.2 ? 9000 : 4400;
    hy_pid *pids = calloc(N + 1, sizeof(*pids));
    hy_pid *live = calloc(2 * N + 1, sizeof(*live));
    HY_CHECK(pids && live);
    if (!pids || !live)
        return;
    for (size_t i = 0; i < N; i++)
        HY_CHECK_EQ(hy_spawn(idle_until_done, NULL, &pids[i]), 0);
    /* every third one and a whole run of 200 end */
    size_t ended = 0;
    for (size_t i = 0; i < N; i++)
        if (i % 3 == 0 || (i >= 4000 && i < 4200)) {
            hy_test_send_tag(pids[i], T_DONE);
            pids[i] = HY_PID_NONE;
            ended++;
        }
    HY_CHECK(hy_test_quiesce(1 + N - ended, 10000));
    size_t n = 0;
    live[n++] = hy_self();
    for (size_t i = 0; i < N; i++)
        if (!hy_pid_is_none(pids[i]))
            live[n++] = pids[i];
    check_list_is(live, n);
    /* new processes take the freed slots */
    hy_pid more[100];
    for (size_t i = 0; i < 100; i++) {
        HY_CHECK_EQ(hy_spawn(idle_until_done, NULL, &more[i]), 0);
        live[n++] = more[i];
    }
    check_list_is(live, n);
    for (size_t i = 0; i < n; i++)
        if (!hy_pid_eq(live[i], hy_self()))
            hy_test_send_tag(live[i], T_DONE);
    HY_CHECK(hy_test_quiesce(1, 10000));
    size_t count = 0;
    HY_CHECK_EQ(hy_proc_list_local(live, 2, &count), 0);
    HY_CHECK(count == 1 && hy_pid_eq(live[0], hy_self()));
    free(pids);
    free(live);
}

static void test_stats_list_local_holes(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_list_local_holes, NULL), 0);
}

static void test_stats_list_local(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_list_local, NULL), 0);
    size_t count;
    assert_int_equal(hy_proc_list_local(NULL, 0, &count), HY_ENOTSHARD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_pair_counts_batches),
        cmocka_unit_test(test_stats_list_local),
        cmocka_unit_test(test_stats_list_local_holes),
        cmocka_unit_test(test_stats_turn_histogram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
