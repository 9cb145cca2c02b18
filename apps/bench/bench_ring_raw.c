/* hydra-bench: ring_raw and ring_raw_rtt, the hardware reference for the
 * cross-shard path.
 *
 * DPDK's rte_ring in single-producer/single-consumer mode between two plain
 * pthreads pinned to the CPUs of shards 0 and 1. Messages are 64-byte
 * buffers from a pool: the producer fills one, enqueues its pointer (bulk
 * 32), the consumer reads the whole payload and returns the buffer on a
 * second ring, which is where the producer takes free buffers from. The
 * rings live in ordinary cache-aligned memory set up with rte_ring_init():
 * no EAL, no hugepages (rte_ring_create() would need EAL's memzones).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hy_config.h"

#include "bench.h"

#if HY_HAVE_DPDK

#include <rte_pause.h>
#include <rte_ring.h>
#include <rte_version.h>

#define RR_BULK      32
#define RR_DATA_SIZE 1024 /* slots of the data ring: Hydra's default ring_size */
#define RR_NBUF      2048 /* buffers in the pool */
#define RR_RET_SIZE  4096 /* slots of the return ring: holds the whole pool */

struct rr_buf {
    uint64_t w[8]; /* the 64-byte payload */
} __attribute__((aligned(64)));

struct rr_shared {
    struct rte_ring *data; /* producer -> consumer: filled buffers */
    struct rte_ring *ret;  /* consumer -> producer: free buffers */
    struct rr_buf *pool;
    uint64_t n;
    int rtt;
    int cpu[2];
    int ready;            /* atomic: threads at the start line */
    uint64_t t0, t1;      /* producer's start; consumer's end (rtt: producer's) */
    uint64_t errors;      /* payloads that were not what was sent */
    uint64_t prod_errors; /* rtt: a buffer other than the one sent came back */
    uint64_t checksum;
    uint32_t *pct; /* rtt: each round trip's ns (HYDRA_BENCH_RTT_PCT), or NULL */
};

static uint64_t rr_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int rr_pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void rr_start_line(struct rr_shared *s)
{
    __atomic_add_fetch(&s->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE) < 2)
        rte_pause();
}

static void rr_fill(struct rr_buf *b, uint64_t seq)
{
    for (int i = 0; i < 8; i++)
        b->w[i] = seq + (uint64_t)i;
}

/* Reads the whole payload; returns 0 when it is what rr_fill wrote. */
static int rr_check(const struct rr_buf *b, uint64_t seq, uint64_t *sum)
{
    int bad = 0;

    for (int i = 0; i < 8; i++) {
        *sum += b->w[i];
        bad |= b->w[i] != seq + (uint64_t)i;
    }
    return bad;
}

static void *rr_producer(void *arg)
{
    struct rr_shared *s = arg;
    void *bufs[RR_BULK];
    uint64_t seq = 0;

    rr_pin(s->cpu[0]);
    rr_start_line(s);
    s->t0 = rr_now_ns();
    if (s->rtt) {
        /* One buffer goes round: the next message leaves when it is back. */
        void *b = &s->pool[0], *back;
        uint64_t tk = s->t0;

        for (; seq < s->n; seq++) {
            rr_fill(b, seq);
            while (rte_ring_sp_enqueue(s->data, b) != 0)
                rte_pause();
            while (rte_ring_sc_dequeue(s->ret, &back) != 0)
                rte_pause();
            if (back != b)
                s->prod_errors++;
            if (s->pct) { /* as pingpong_cross: a clock read per round trip */
                uint64_t t = rr_now_ns();
                s->pct[seq] = (uint32_t)(t - tk < UINT32_MAX ? t - tk : UINT32_MAX);
                tk = t;
            }
        }
        s->t1 = rr_now_ns();
        return NULL;
    }
    while (seq < s->n) {
        unsigned want = s->n - seq < RR_BULK ? (unsigned)(s->n - seq) : RR_BULK;
        unsigned have = 0;

        while (have < want) {
            have += rte_ring_sc_dequeue_burst(s->ret, &bufs[have], want - have, NULL);
            if (have < want)
                rte_pause();
        }
        for (unsigned i = 0; i < want; i++)
            rr_fill(bufs[i], seq + i);
        while (rte_ring_sp_enqueue_bulk(s->data, bufs, want, NULL) == 0)
            rte_pause();
        seq += want;
    }
    return NULL;
}

static void *rr_consumer(void *arg)
{
    struct rr_shared *s = arg;
    void *bufs[RR_BULK];
    uint64_t seq = 0, sum = 0, errors = 0;

    rr_pin(s->cpu[1]);
    rr_start_line(s);
    while (seq < s->n) {
        unsigned k = rte_ring_sc_dequeue_burst(s->data, bufs, RR_BULK, NULL);

        if (k == 0) {
            rte_pause();
            continue;
        }
        for (unsigned i = 0; i < k; i++)
            errors += (uint64_t)rr_check(bufs[i], seq + i, &sum);
        seq += k;
        /* The return ring holds the whole pool: this always fits. */
        if (rte_ring_sp_enqueue_bulk(s->ret, bufs, k, NULL) != k)
            errors++;
    }
    if (!s->rtt)
        s->t1 = rr_now_ns();
    s->errors = errors;
    s->checksum = sum;
    return NULL;
}

static struct rte_ring *rr_ring(const char *name, unsigned count)
{
    ssize_t size = rte_ring_get_memsize(count);
    struct rte_ring *r;

    if (size < 0)
        return NULL;
    r = aligned_alloc(RTE_CACHE_LINE_SIZE, ((size_t)size + RTE_CACHE_LINE_SIZE - 1) &
                                               ~(size_t)(RTE_CACHE_LINE_SIZE - 1));
    if (r && rte_ring_init(r, name, count, RING_F_SP_ENQ | RING_F_SC_DEQ) != 0) {
        free(r);
        r = NULL;
    }
    return r;
}

/* One repetition: returns elapsed ns, or 0 on failure. */
static uint64_t rr_once(struct rr_shared *s)
{
    pthread_t prod, cons;

    rte_ring_reset(s->data);
    rte_ring_reset(s->ret);
    /* One way: the whole pool starts free, on the return ring. */
    for (unsigned i = 0; !s->rtt && i < RR_NBUF; i++) {
        void *b = &s->pool[i];

        if (rte_ring_sp_enqueue(s->ret, b) != 0)
            return 0;
    }
    s->ready = 0;
    s->errors = 0;
    s->prod_errors = 0;
    if (pthread_create(&cons, NULL, rr_consumer, s) != 0)
        return 0;
    if (pthread_create(&prod, NULL, rr_producer, s) != 0) {
        pthread_cancel(cons);
        pthread_join(cons, NULL);
        return 0;
    }
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    if (s->errors || s->prod_errors) {
        bench_fail("%llu payloads were not what was sent, %llu wrong buffers came back",
                   (unsigned long long)s->errors, (unsigned long long)s->prod_errors);
        return 0;
    }
    return s->t1 - s->t0;
}

static int rr_run(const struct bench *b, const struct bench_env *env, int rtt)
{
    struct rr_shared s = {.rtt = rtt};
    double vals[BENCH_REPS_MAX];
    int rc = 1;

    if (env->ncpus < 2) {
        bench_note("%s skipped: needs two CPUs, the affinity mask has %u", b->name, env->ncpus);
        return 0;
    }
    s.cpu[0] = env->cpus[0];
    s.cpu[1] = env->cpus[1];
    s.n = rtt ? bench_scaled(env, 200000) : bench_scaled(env, 10000000);
    s.data = rr_ring("hy_bench_data", RR_DATA_SIZE);
    s.ret = rr_ring("hy_bench_ret", RR_RET_SIZE);
    s.pool = aligned_alloc(64, RR_NBUF * sizeof(*s.pool));
    if (!s.data || !s.ret || !s.pool) {
        bench_fail("cannot set up the rings (rte_ring_init on aligned_alloc memory)");
        goto out;
    }
    if (rtt)
        bench_note("%s rte_ring SP/SC, no EAL: %llu round trips of one 64-byte buffer "
                   "between pthreads pinned to CPUs %d and %d (enqueue, consumer reads the "
                   "payload and returns the buffer on a second ring)",
                   rte_version(), (unsigned long long)s.n, s.cpu[0], s.cpu[1]);
    else
        bench_note("%s rte_ring SP/SC, no EAL: %llu 64-byte buffers one way, bulk %d, "
                   "ring of %d slots, pool of %d, pthreads pinned to CPUs %d and %d; the "
                   "consumer reads each payload and returns the buffers on a second ring",
                   rte_version(), (unsigned long long)s.n, RR_BULK, RR_DATA_SIZE, RR_NBUF, s.cpu[0],
                   s.cpu[1]);
    if (rtt)
        s.pct = bench_rtt_pct_alloc(s.n);
    for (int r = 0; r <= BENCH_REPS; r++) {
        uint64_t dt = rr_once(&s);

        if (dt == 0) {
            if (!bench_failed())
                bench_fail("repetition %d failed", r);
            goto out;
        }
        bench_rtt_pct_print(b->name, r, s.pct, s.n);
        if (r > 0) /* the first one is the warm-up */
            vals[r - 1] = rtt ? (double)dt / (double)s.n : (double)s.n / (double)dt * 1e3;
    }
    bench_report(b, b->name, vals, BENCH_REPS);
    rc = 0;
out:
    free(s.pct);
    free(s.data);
    free(s.ret);
    free(s.pool);
    return rc;
}

int bench_ring_raw_run(const struct bench *b, const struct bench_env *env)
{
    return rr_run(b, env, 0);
}

int bench_ring_raw_rtt_run(const struct bench *b, const struct bench_env *env)
{
    return rr_run(b, env, 1);
}

#else /* !HY_HAVE_DPDK */

int bench_ring_raw_run(const struct bench *b, const struct bench_env *env)
{
    (void)env;
    bench_note("%s skipped: built without DPDK", b->name);
    return 0;
}

int bench_ring_raw_rtt_run(const struct bench *b, const struct bench_env *env)
{
    (void)env;
    bench_note("%s skipped: built without DPDK", b->name);
    return 0;
}

#endif /* HY_HAVE_DPDK */
