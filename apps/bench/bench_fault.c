/* hydra-bench: the fault workloads of issue 4 (no peer runs them).
 *
 * kill_down / kill_down_cross: latency from hy_exit_pid(Victim, kill) to
 * the DOWN of the monitor on it, the victim idle in receive on the same
 * shard as the monitoring process or on the other one.
 *
 * link_propagation / link_propagation_cross: a chain of N processes, each
 * linked to the next (spawned with link), none trapping exits; the head is
 * killed, killed travels the chain, the benchmark monitors the tail; the
 * value is the time from the kill to the tail's DOWN over N. In the _cross
 * variant the chain alternates between shards 0 and 1, so every link is a
 * cross-shard one.
 */
#include <string.h>

#include "signals.h"

#include "bench.h"

/* Sends READY with its pid to the parent, then idles in receive until it
 * is killed (anything it receives is ignored). */
static void idle_victim(void *arg)
{
    hy_pid parent = *(const hy_pid *)arg, self = hy_self();
    struct hy_msg *m;

    hy_send(parent, BENCH_TAG_READY, &self, sizeof(self));
    for (;;)
        if (hy_recv(&m, HY_INFINITY) == 0)
            hy_msg_free(m);
}

/* Receives the DOWN of ref and checks its reason; returns 0 or -1. */
static int recv_down(hy_ref ref, enum hy_reason_kind want)
{
    struct hy_down_info d;
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, bench_timeout_ns);

    if (rc < 0) {
        bench_fail("no DOWN: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return -1;
    }
    if (m->tag != HY_TAG_DOWN || m->size != sizeof(d)) {
        unsigned long long tag = (unsigned long long)m->tag;

        hy_msg_free(m);
        bench_fail("expected a DOWN, got tag %llx", tag);
        return -1;
    }
    memcpy(&d, m->data, sizeof(d));
    hy_msg_free(m);
    if (d.reason.kind != want) {
        char r[128];

        bench_fail("DOWN with reason %s", hy_reason_format(&d.reason, r, sizeof(r)));
        return -1;
    }
    return 0;
}

/* ---- kill_down ------------------------------------------------------------------ */

static void kill_down_note(const struct bench_env *env, int cross)
{
    bench_note("%llu times: spawn_monitor a process on shard %d that reports ready and idles "
               "in receive; once it is ready, time hy_exit_pid(Victim, kill) -> DOWN (reason "
               "killed) received by the monitoring process on shard 0; value = the sum of "
               "those times / %llu%s",
               (unsigned long long)bench_scaled(env, 100000), cross,
               (unsigned long long)bench_scaled(env, 100000),
               cross ? " (the victim's shard is still in its idle spin window)" : "");
}

static double kill_down(const struct bench_env *env, int shard)
{
    uint64_t n = bench_scaled(env, 100000), sum = 0;
    hy_pid self = hy_self();

    for (uint64_t k = 0; k < n; k++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        struct hy_msg *m;
        hy_pid v;
        hy_ref ref;
        int rc;

        o.shard = shard;
        o.arg_size = sizeof(self);
        o.monitor = true;
        o.monitor_ref = &ref;
        rc = hy_spawn_opt(idle_victim, &self, &o, &v);
        if (rc < 0) {
            bench_fail("spawn failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
            return -1;
        }
        if (bench_recv_tag(BENCH_TAG_READY, &m) < 0)
            return -1;
        hy_msg_free(m);
        uint64_t t0 = hy_now_ns();
        hy_exit_pid(v, hy_reason_make(HY_REASON_KILL));
        if (recv_down(ref, HY_REASON_KILLED) < 0)
            return -1;
        sum += hy_now_ns() - t0;
    }
    return (double)sum / (double)n;
}

void bench_kill_down_describe(const struct bench_env *env)
{
    kill_down_note(env, 0);
}

double bench_kill_down_rep(const struct bench_env *env)
{
    return kill_down(env, 0);
}

void bench_kill_down_cross_describe(const struct bench_env *env)
{
    kill_down_note(env, 1);
}

double bench_kill_down_cross_rep(const struct bench_env *env)
{
    return kill_down(env, 1);
}

/* ---- link_propagation -------------------------------------------------------- */

struct chain_arg {
    hy_pid parent;
    uint64_t left; /* processes still to spawn after this one */
    int cross;     /* alternate shards 0 and 1 */
};

/* A link of the chain: spawns the next one linked (unless it is the tail,
 * which reports READY), then idles in receive. */
static void chain_node(void *arg)
{
    struct chain_arg a = *(const struct chain_arg *)arg;
    struct hy_msg *m;

    if (a.left == 0) {
        hy_pid self = hy_self();

        hy_send(a.parent, BENCH_TAG_READY, &self, sizeof(self));
    } else {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        struct chain_arg next = a;
        int rc;

        next.left--;
        o.shard = a.cross ? 1 - hy_shard_id() : HY_SHARD_SELF;
        o.arg_size = sizeof(next);
        o.link = true;
        rc = hy_spawn_opt(chain_node, &next, &o, NULL);
        if (rc < 0) {
            bench_fail("chain: spawn failed with %llu to go: %s (%s)",
                       (unsigned long long)a.left, hy_err_name(rc), hy_strerror(rc));
            return;
        }
    }
    for (;;)
        if (hy_recv(&m, HY_INFINITY) == 0)
            hy_msg_free(m);
}

static uint64_t chain_len(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 10000);

    return n < 2 ? 2 : n;
}

static void link_note(const struct bench_env *env, int cross)
{
    bench_note("a chain of %llu processes, each spawned with a link by the one before%s, "
               "idle in receive, none trapping exits; the benchmark monitors the tail, then "
               "times hy_exit_pid(Head, kill) -> the tail's DOWN (reason killed); value = "
               "that time / %llu processes",
               (unsigned long long)chain_len(env),
               cross ? " on the other shard (every link crosses shards)" : ", all on shard 0",
               (unsigned long long)chain_len(env));
}

static double link_propagation(const struct bench_env *env, int cross)
{
    struct chain_arg a = {.parent = hy_self(), .left = chain_len(env) - 1, .cross = cross};
    struct hy_msg *m;
    hy_pid head, tail;
    hy_ref ref;

    if (bench_spawn(chain_node, &a, sizeof(a), 0, &head) < 0 ||
        bench_recv_tag(BENCH_TAG_READY, &m) < 0)
        return -1;
    memcpy(&tail, m->data, sizeof(tail));
    hy_msg_free(m);
    if (hy_monitor(tail, &ref) < 0) {
        bench_fail("cannot monitor the tail");
        return -1;
    }
    uint64_t t0 = hy_now_ns();
    hy_exit_pid(head, hy_reason_make(HY_REASON_KILL));
    if (recv_down(ref, HY_REASON_KILLED) < 0)
        return -1;
    return (double)(hy_now_ns() - t0) / (double)chain_len(env);
}

void bench_link_propagation_describe(const struct bench_env *env)
{
    link_note(env, 0);
}

double bench_link_propagation_rep(const struct bench_env *env)
{
    return link_propagation(env, 0);
}

void bench_link_propagation_cross_describe(const struct bench_env *env)
{
    link_note(env, 1);
}

double bench_link_propagation_cross_rep(const struct bench_env *env)
{
    return link_propagation(env, 1);
}
