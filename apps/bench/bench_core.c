/* hydra-bench: the core workloads, run inside a runtime's main process.
 *
 * ctx_switch, spawn_exit, pingpong_local, ring, pingpong_cross and
 * throughput_cross. Each *_rep function is one repetition: it sets the
 * workload up, times it, tears it down, and returns the metric. Counts,
 * message shapes and timing points follow peerbench.erl.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "stats.h"

/* Checks where a worker ran: peerbench's check_sched. */
static int check_shard(const char *who, int expected, const struct bench_done *d)
{
    if (d->shard != expected) {
        bench_fail("%s ran on shard %d, expected %d", who, d->shard, expected);
        return -1;
    }
    if (d->errors) {
        bench_fail("%s saw %u unexpected messages", who, d->errors);
        return -1;
    }
    return 0;
}

/* ---- ctx_switch --------------------------------------------------------- */

struct yield_arg {
    hy_pid parent;
    uint64_t n;
};

static void yielder(void *arg)
{
    const struct yield_arg *a = arg;
    uint64_t t0 = hy_now_ns();
    uint32_t errors = 0;

    for (uint64_t i = 0; i < a->n; i++)
        if (hy_yield() < 0)
            errors++;
    bench_send_done(a->parent, t0, hy_now_ns(), errors);
}

void bench_ctx_switch_describe(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 1000000);

    bench_note("two processes on one shard each call hy_yield() %llu times, so the scheduler "
               "switches between them; value = time from the first start to the last end / "
               "%llu switches",
               (unsigned long long)n, (unsigned long long)(2 * n));
}

double bench_ctx_switch_rep(const struct bench_env *env)
{
    struct yield_arg a = {.parent = hy_self(), .n = bench_scaled(env, 1000000)};
    struct bench_done da, db;
    hy_pid pa, pb;

    if (bench_spawn(yielder, &a, sizeof(a), HY_SHARD_SELF, &pa) < 0 ||
        bench_spawn(yielder, &a, sizeof(a), HY_SHARD_SELF, &pb) < 0)
        return -1;
    if (bench_recv_done(pa, &da) < 0 || bench_recv_done(pb, &db) < 0)
        return -1;
    if (check_shard("yielder", 0, &da) < 0 || check_shard("yielder", 0, &db) < 0)
        return -1;
    uint64_t t0 = da.t0 < db.t0 ? da.t0 : db.t0;
    uint64_t t1 = da.t1 > db.t1 ? da.t1 : db.t1;
    return (double)(t1 - t0) / (double)(2 * a.n);
}

/* ---- spawn_exit --------------------------------------------------------- */

/* Shared by the children of one repetition, all on shard 0 (peerbench uses
 * an atomics counter; the decrement is atomic here too). */
static struct {
    hy_pid parent;
    uint64_t left;
} spawn_exit_state;

static void spawn_exit_child(void *arg)
{
    (void)arg;
    if (__atomic_sub_fetch(&spawn_exit_state.left, 1, __ATOMIC_RELAXED) == 0)
        bench_send(spawn_exit_state.parent, BENCH_TAG_ALL_EXITED, NULL, 0);
}

void bench_spawn_exit_describe(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 1000000);

    bench_note("%llu processes spawned back to back; each decrements a shared atomic counter "
               "and returns, the last one messages the spawner",
               (unsigned long long)n);
}

double bench_spawn_exit_rep(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 1000000);
    struct hy_msg *m;

    spawn_exit_state.parent = hy_self();
    __atomic_store_n(&spawn_exit_state.left, n, __ATOMIC_RELAXED);
    uint64_t t0 = hy_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        int rc = hy_spawn(spawn_exit_child, NULL, NULL);

        if (rc < 0) {
            bench_fail("spawn %llu of %llu failed: %s (%s)", (unsigned long long)i + 1,
                       (unsigned long long)n, hy_err_name(rc), hy_strerror(rc));
            return -1;
        }
    }
    if (bench_recv_tag(BENCH_TAG_ALL_EXITED, &m) < 0)
        return -1;
    uint64_t dt = hy_now_ns() - t0;
    hy_msg_free(m);
    return (double)dt / (double)n;
}

/* ---- pingpong_local / pingpong_cross ------------------------------------ */

struct ping_arg {
    hy_pid parent;
    hy_pid pong;
    uint64_t n;
    uint32_t *pct; /* each round trip's ns (HYDRA_BENCH_RTT_PCT), or NULL */
};

/* {ping, From} -> From ! pong; {stop, From} -> report and end. */
static void pong_proc(void *arg)
{
    uint32_t errors = 0;
    struct hy_msg *m;
    hy_pid from;

    (void)arg;
    for (;;) {
        if (hy_recv(&m, HY_INFINITY) < 0) {
            bench_fail("pong: receive failed");
            return;
        }
        if (m->size != sizeof(hy_pid)) {
            errors++;
            hy_msg_free(m);
            continue;
        }
        memcpy(&from, m->data, sizeof(from));
        uint64_t tag = m->tag;
        hy_msg_free(m);
        if (tag == BENCH_TAG_PING) {
            hy_send(from, BENCH_TAG_PONG, NULL, 0);
        } else if (tag == BENCH_TAG_STOP) {
            bench_send_done(from, 0, 0, errors);
            return;
        } else {
            errors++;
        }
    }
}

static void ping_proc(void *arg)
{
    const struct ping_arg *a = arg;
    hy_pid self = hy_self();
    uint32_t errors = 0;
    struct hy_msg *m;

    uint64_t t0 = hy_now_ns(), tk = t0;
    for (uint64_t k = 0; k < a->n; k++) {
        if (hy_send(a->pong, BENCH_TAG_PING, &self, sizeof(self)) < 0 ||
            hy_recv(&m, HY_INFINITY) < 0) {
            bench_fail("ping: send or receive failed at round trip %llu", (unsigned long long)k);
            break;
        }
        if (m->tag != BENCH_TAG_PONG)
            errors++;
        hy_msg_free(m);
        if (a->pct) {
            uint64_t t = hy_now_ns();
            a->pct[k] = (uint32_t)(t - tk < UINT32_MAX ? t - tk : UINT32_MAX);
            tk = t;
        }
    }
    bench_send_done(a->parent, t0, hy_now_ns(), errors);
}

/* Returns elapsed ns of n round trips, ping on ping_shard, pong on
 * pong_shard; or a negative value on failure. */
static double pingpong(uint64_t n, int ping_shard, int pong_shard, uint32_t *pct)
{
    struct ping_arg a = {.parent = hy_self(), .n = n, .pct = pct};
    struct bench_done dping, dpong;
    hy_pid ping, self = hy_self();

    if (bench_spawn(pong_proc, NULL, 0, pong_shard, &a.pong) < 0 ||
        bench_spawn(ping_proc, &a, sizeof(a), ping_shard, &ping) < 0)
        return -1;
    if (bench_recv_done(ping, &dping) < 0)
        return -1;
    if (bench_send(a.pong, BENCH_TAG_STOP, &self, sizeof(self)) < 0 ||
        bench_recv_done(a.pong, &dpong) < 0)
        return -1;
    if (check_shard("ping", ping_shard, &dping) < 0 || check_shard("pong", pong_shard, &dpong) < 0)
        return -1;
    return (double)(dping.t1 - dping.t0);
}

void bench_pingpong_local_describe(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 1000000);

    bench_note("%llu round trips ({ping,Pid} -> pong) between two processes on one shard; "
               "value = time / %llu one-way messages",
               (unsigned long long)n, (unsigned long long)(2 * n));
}

double bench_pingpong_local_rep(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 1000000);
    double dt = pingpong(n, 0, 0, NULL);

    return dt < 0 ? dt : dt / (double)(2 * n);
}

void bench_pingpong_cross_describe(const struct bench_env *env)
{
    bench_note("%llu round trips ({ping,Pid} -> pong), ping on shard 0, pong on shard 1",
               (unsigned long long)bench_scaled(env, 200000));
}

double bench_pingpong_cross_rep(const struct bench_env *env)
{
    static int rep; /* 0: the warm-up (one runtime per row and process) */
    uint64_t n = bench_scaled(env, 200000);
    uint32_t *pct = bench_rtt_pct_alloc(n);
    double dt = pingpong(n, 0, 1, pct);

    if (dt >= 0)
        bench_rtt_pct_print("pingpong_cross", rep, pct, n);
    rep++;
    free(pct);
    return dt < 0 ? dt : dt / (double)n;
}

/* ---- ring --------------------------------------------------------------- */

#define RING_PROCS 1000

/* receive {next, Next}, then: 0 -> Parent ! ring_done; K -> Next ! K - 1;
 * stop -> acknowledge and end. */
static void ring_node(void *arg)
{
    hy_pid parent = *(const hy_pid *)arg, next;
    struct hy_msg *m;
    int64_t k;

    if (hy_recv_tag(BENCH_TAG_NEXT, &m, HY_INFINITY) < 0 || m->size != sizeof(next)) {
        bench_fail("ring node: no {next, Pid}");
        return;
    }
    memcpy(&next, m->data, sizeof(next));
    hy_msg_free(m);
    for (;;) {
        if (hy_recv(&m, HY_INFINITY) < 0) {
            bench_fail("ring node: receive failed");
            return;
        }
        if (m->tag == BENCH_TAG_TOKEN && m->size == sizeof(k)) {
            memcpy(&k, m->data, sizeof(k));
            hy_msg_free(m);
            if (k == 0) {
                hy_send(parent, BENCH_TAG_RING_DONE, NULL, 0);
            } else {
                k--;
                hy_send(next, BENCH_TAG_TOKEN, &k, sizeof(k));
            }
        } else if (m->tag == BENCH_TAG_STOP) {
            hy_msg_free(m);
            hy_send(parent, BENCH_TAG_STOPPED, NULL, 0);
            return;
        } else {
            unsigned long long tag = (unsigned long long)m->tag;

            hy_msg_free(m);
            bench_fail("ring node: unexpected message with tag %llu", tag);
        }
    }
}

void bench_ring_describe(const struct bench_env *env)
{
    uint64_t hops = RING_PROCS * bench_scaled(env, 1000);

    bench_note("%d processes in a ring on one shard, an integer token makes %llu hops "
               "(%llu rounds)",
               RING_PROCS, (unsigned long long)hops, (unsigned long long)(hops / RING_PROCS));
}

double bench_ring_rep(const struct bench_env *env)
{
    static hy_pid pids[RING_PROCS];
    uint64_t hops = RING_PROCS * bench_scaled(env, 1000);
    hy_pid self = hy_self();
    struct hy_msg *m;
    int64_t token = (int64_t)hops - 1; /* the token counts the hops still to go */

    for (int i = 0; i < RING_PROCS; i++)
        if (bench_spawn(ring_node, &self, sizeof(self), HY_SHARD_SELF, &pids[i]) < 0)
            return -1;
    for (int i = 0; i < RING_PROCS; i++)
        if (bench_send(pids[i], BENCH_TAG_NEXT, &pids[(i + 1) % RING_PROCS], sizeof(hy_pid)) < 0)
            return -1;
    uint64_t t0 = hy_now_ns();
    if (bench_send(pids[0], BENCH_TAG_TOKEN, &token, sizeof(token)) < 0 ||
        bench_recv_tag(BENCH_TAG_RING_DONE, &m) < 0)
        return -1;
    uint64_t dt = hy_now_ns() - t0;
    hy_msg_free(m);
    /* Stop every node and wait for all of them, so that none competes with
     * the next repetition (peerbench's kill_all). */
    for (int i = 0; i < RING_PROCS; i++)
        if (bench_send(pids[i], BENCH_TAG_STOP, NULL, 0) < 0)
            return -1;
    for (int i = 0; i < RING_PROCS; i++) {
        if (bench_recv_tag(BENCH_TAG_STOPPED, &m) < 0)
            return -1;
        hy_msg_free(m);
    }
    return (double)dt / (double)hops;
}

/* ---- throughput_cross --------------------------------------------------- */

struct tp_arg {
    hy_pid parent;
    hy_pid cons;
    uint64_t n;
};

/* Receives n {msg, I}, checking each: I counts down from n to 1, in order
 * (one sender, one receiver: FIFO). */
static void consumer(void *arg)
{
    const struct tp_arg *a = arg;
    uint32_t errors = 0;
    struct hy_msg *m;
    int64_t i;

    for (uint64_t k = a->n; k > 0; k--) {
        if (hy_recv(&m, HY_INFINITY) < 0) {
            bench_fail("consumer: receive failed with %llu messages to go", (unsigned long long)k);
            return;
        }
        if (m->tag != BENCH_TAG_MSG || m->size != sizeof(i)) {
            errors++;
        } else {
            memcpy(&i, m->data, sizeof(i));
            if (i != (int64_t)k)
                errors++;
        }
        hy_msg_free(m);
    }
    bench_send_done(a->parent, 0, hy_now_ns(), errors);
}

static void producer(void *arg)
{
    const struct tp_arg *a = arg;
    struct hy_msg *m;

    if (hy_recv_tag(BENCH_TAG_GO, &m, HY_INFINITY) < 0) {
        bench_fail("producer: no go");
        return;
    }
    hy_msg_free(m);
    uint64_t t0 = hy_now_ns();
    for (int64_t i = (int64_t)a->n; i > 0; i--) {
        if (hy_send(a->cons, BENCH_TAG_MSG, &i, sizeof(i)) < 0) {
            bench_fail("producer: send failed");
            break;
        }
    }
    bench_send_done(a->parent, t0, hy_now_ns(), 0);
}

void bench_throughput_cross_describe(const struct bench_env *env)
{
    bench_note("producer on shard 0 sends %llu {msg,I} (8-byte integer) to a consumer on "
               "shard 1 that receives each and checks its tag, size and value; clock stops "
               "when the consumer has received them all",
               (unsigned long long)bench_scaled(env, 10000000));
}

/* With HYDRA_BENCH_STATS set, each repetition notes what the shards' counters
 * saw of it: entries per published batch each way, entries that waited behind
 * a full ring, sleeps and busy/idle time of each shard (where the time went
 * when instructions are not what bounds the row). */
struct tp_snap {
    struct hy_stats st[2];
    struct hy_pair_stats pr[2];
};

static void tp_snap(struct tp_snap *s)
{
    for (unsigned i = 0; i < 2; i++) {
        hy_stats_get(i, &s->st[i]);
        hy_stats_pair(i, 1 - i, &s->pr[i]);
    }
}

static void tp_note(const struct tp_snap *a, const struct tp_snap *b)
{
    for (unsigned i = 0; i < 2; i++) {
        uint64_t ent = b->pr[i].ring_entries - a->pr[i].ring_entries;
        uint64_t bat = b->pr[i].batches - a->pr[i].batches;
        bench_note("shard %u -> %u: %llu entries in %llu batches (%.1f each), %llu overflowed; "
                   "shard %u: %llu sleeps, busy %.1f ms, idle %.1f ms, %llu busy turns",
                   i, 1 - i, (unsigned long long)ent, (unsigned long long)bat,
                   bat ? (double)ent / (double)bat : 0.0,
                   (unsigned long long)(b->pr[i].overflows - a->pr[i].overflows), i,
                   (unsigned long long)(b->st[i].sleeps - a->st[i].sleeps),
                   (double)(b->st[i].busy_ns - a->st[i].busy_ns) / 1e6,
                   (double)(b->st[i].idle_ns - a->st[i].idle_ns) / 1e6,
                   (unsigned long long)(b->st[i].turns - a->st[i].turns));
    }
}

double bench_throughput_cross_rep(const struct bench_env *env)
{
    struct tp_arg a = {.parent = hy_self(), .n = bench_scaled(env, 10000000)};
    struct bench_done dcons, dprod;
    hy_pid prod;
    bool stats = getenv("HYDRA_BENCH_STATS") != NULL;
    struct tp_snap s0, s1;

    if (bench_spawn(consumer, &a, sizeof(a), 1, &a.cons) < 0 ||
        bench_spawn(producer, &a, sizeof(a), 0, &prod) < 0)
        return -1;
    if (stats)
        tp_snap(&s0);
    uint64_t t0 = hy_now_ns();
    if (bench_send(prod, BENCH_TAG_GO, NULL, 0) < 0 || bench_recv_done(a.cons, &dcons) < 0)
        return -1;
    uint64_t dt = hy_now_ns() - t0;
    if (stats) {
        tp_snap(&s1);
        tp_note(&s0, &s1);
    }
    if (bench_recv_done(prod, &dprod) < 0)
        return -1;
    if (check_shard("producer", 0, &dprod) < 0 || check_shard("consumer", 1, &dcons) < 0)
        return -1;
    /* n messages / dt ns * 1e3 = millions of messages per second */
    return (double)a.n / (double)dt * 1e3;
}
