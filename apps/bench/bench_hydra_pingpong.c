/* hydra-bench: hydra_pingpong, the seed project's own benchmark.
 *
 * Hydra (Rust)'s examples/benchmark.rs: process B sends its pid to process
 * A, A counts it and replies with an empty message, forever. Here there is
 * one such pair per shard, both processes of a pair on that shard, and the
 * rate is measured over fixed intervals after a warm-up (the seed prints its
 * cumulative count divided by whole elapsed seconds instead).
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

struct hp_counter {
    uint64_t count; /* written by A only (relaxed atomics), read by main */
} __attribute__((aligned(64)));

static struct hp_counter hp_counts[HY_MAX_SHARDS];
static int hp_stop; /* atomic: main asks the pairs to stop */

struct hp_arg {
    hy_pid parent;
    hy_pid a; /* B's partner */
    unsigned idx;
};

/* A: receive a pid, count, reply (); on stop, tell B and report. */
static void hp_a(void *arg)
{
    const struct hp_arg *ha = arg;
    uint64_t *count = &hp_counts[ha->idx].count;
    uint32_t errors = 0;
    struct hy_msg *m;
    hy_pid b;

    for (;;) {
        if (hy_recv(&m, HY_INFINITY) < 0) {
            bench_fail("hydra_pingpong A: receive failed");
            return;
        }
        if (m->tag != BENCH_TAG_PING || m->size != sizeof(b)) {
            errors++;
            hy_msg_free(m);
            continue;
        }
        memcpy(&b, m->data, sizeof(b));
        hy_msg_free(m);
        __atomic_store_n(count, __atomic_load_n(count, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
        if (__atomic_load_n(&hp_stop, __ATOMIC_RELAXED)) {
            hy_send(b, BENCH_TAG_STOP, NULL, 0);
            bench_send_done(ha->parent, 0, 0, errors);
            return;
        }
        hy_send(b, BENCH_TAG_UNIT, NULL, 0);
    }
}

/* B: send my pid to A, wait for (), forever (until stop). */
static void hp_b(void *arg)
{
    const struct hp_arg *ha = arg;
    hy_pid self = hy_self();
    struct hy_msg *m;

    for (;;) {
        if (hy_send(ha->a, BENCH_TAG_PING, &self, sizeof(self)) < 0 ||
            hy_recv(&m, HY_INFINITY) < 0) {
            bench_fail("hydra_pingpong B: send or receive failed");
            return;
        }
        uint64_t tag = m->tag;
        hy_msg_free(m);
        if (tag == BENCH_TAG_STOP)
            return;
        if (tag != BENCH_TAG_UNIT) {
            bench_fail("hydra_pingpong B: unexpected tag %llu", (unsigned long long)tag);
            return;
        }
    }
}

struct hp_run {
    const struct bench_env *env;
    unsigned npairs;
    uint64_t interval_ns;
    double vals[BENCH_REPS_MAX];
    size_t nvals;
    uint64_t per_pair[HY_MAX_SHARDS]; /* round trips in the measured intervals */
};

static uint64_t hp_total(unsigned npairs)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < npairs; i++)
        sum += __atomic_load_n(&hp_counts[i].count, __ATOMIC_RELAXED);
    return sum;
}

static void hp_main(void *arg)
{
    struct hp_run *run = arg;
    hy_pid as[HY_MAX_SHARDS];
    uint64_t start[HY_MAX_SHARDS];
    struct bench_done d;

    for (unsigned s = 0; s < run->npairs; s++) {
        struct hp_arg ha = {.parent = hy_self(), .idx = s};
        hy_pid b;

        if (bench_spawn(hp_a, &ha, sizeof(ha), (int)s, &as[s]) < 0)
            return;
        ha.a = as[s];
        if (bench_spawn(hp_b, &ha, sizeof(ha), (int)s, &b) < 0)
            return;
    }
    /* Warm-up: one interval. */
    hy_sleep_ns(run->interval_ns);
    for (unsigned s = 0; s < run->npairs; s++)
        start[s] = __atomic_load_n(&hp_counts[s].count, __ATOMIC_RELAXED);
    for (int r = 0; r < BENCH_REPS && !bench_failed(); r++) {
        uint64_t c0 = hp_total(run->npairs), t0 = hy_now_ns();

        hy_sleep_ns(run->interval_ns);
        uint64_t c1 = hp_total(run->npairs), t1 = hy_now_ns();
        /* round trips / ns * 1e3 = millions of round trips per second */
        run->vals[run->nvals++] = (double)(c1 - c0) / (double)(t1 - t0) * 1e3;
    }
    for (unsigned s = 0; s < run->npairs; s++)
        run->per_pair[s] = __atomic_load_n(&hp_counts[s].count, __ATOMIC_RELAXED) - start[s];
    __atomic_store_n(&hp_stop, 1, __ATOMIC_RELAXED);
    for (unsigned s = 0; s < run->npairs; s++) {
        if (bench_recv_done(as[s], &d) < 0)
            return;
        if (d.shard != (int)s || d.errors)
            bench_fail("pair %u: A ran on shard %d (expected %u), %u unexpected messages", s,
                       d.shard, s, d.errors);
    }
}

int bench_hydra_pingpong_run(const struct bench *b, const struct bench_env *env)
{
    struct hp_run run = {.env = env};
    struct hy_config cfg;
    double secs = env->scale < 0.1 ? 0.1 : env->scale;
    char split[512] = "";
    size_t off = 0;
    int rc;

    run.npairs = env->ncpus;
    run.interval_ns = (uint64_t)(secs * 1e9);
    memset(hp_counts, 0, sizeof(hp_counts));
    hp_stop = 0;
    bench_config(&cfg, env, run.npairs, HY_STACK_GUARDED);
    bench_describe_runtime(b->name, &cfg);
    bench_note("one pair per shard (%u pairs): B sends its pid (16 bytes) to A, A counts it and "
               "replies with an empty message; warm-up %.2f s, then %d intervals of %.2f s; "
               "value = round trips of all pairs per interval / its length",
               run.npairs, secs, BENCH_REPS, secs);
    rc = hy_run(&cfg, hp_main, &run);
    bench_restore_affinity();
    if (rc < 0) {
        bench_fail("hy_run failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return 1;
    }
    if (bench_failed() || run.nvals != (size_t)BENCH_REPS)
        return 1;
    for (unsigned s = 0; s < run.npairs && off < sizeof(split); s++)
        off += (size_t)snprintf(split + off, sizeof(split) - off, "%s%llu", s ? " " : "",
                                (unsigned long long)run.per_pair[s]);
    bench_note("round trips per pair over the measured intervals: [%s]", split);
    bench_report(b, b->name, run.vals, run.nvals);
    return 0;
}
