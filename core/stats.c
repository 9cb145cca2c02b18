#include "errors.h"
#include "shard_internal.h"

static void snap(const struct hy__shard_stats *s, struct hy_stats *o)
{
#define RD(f) o->f = atomic_load_explicit(&s->f, memory_order_relaxed)
    RD(procs_alive);
    RD(procs_spawned);
    RD(procs_exited);
    RD(msgs_sent_local);
    RD(msgs_sent_cross);
    RD(msgs_received);
    RD(dropped_dead);
    RD(dropped_full);
    RD(ring_overflows);
    RD(runq_len);
    RD(busy_ns);
    RD(idle_ns);
    RD(sleeps);
    RD(buffers_out);
    RD(stacks_pooled);
    RD(stalls);
    RD(timers_armed);
    RD(io_backend);
    RD(io_sockets);
    RD(io_syscalls);
    RD(io_events);
    RD(io_wakeups);
    RD(io_sleeps);
    RD(io_recvs);
    RD(io_sends);
    RD(io_poll_updates);
    RD(xshard_spins);
    RD(xshard_spin_hits);
    o->turns = 0;
    for (unsigned k = 0; k < HY_STATS_TURN_BUCKETS; k++) {
        RD(turn_log2[k]);
        o->turns += o->turn_log2[k];
    }
    /* read after the fields they add to: a buffer or a received message
     * counted here is counted before it is freed or taken back, so a sum
     * is not below the true figure of the moment the fields were read */
    uint64_t fast = atomic_load_explicit(&s->local_fast, memory_order_relaxed);
    uint64_t handed = atomic_load_explicit(&s->local_handed, memory_order_relaxed);
    o->msgs_sent_local += fast + handed;
    o->buffers_out += fast + handed;
    o->msgs_received += handed;
#undef RD
}

int hy_stats_get(unsigned shard, struct hy_stats *out)
{
    if (!hy_running())
        return HY_ENOTSTARTED;
    if (shard >= hy__rt.nshards || !out)
        return HY_EINVAL;
    snap(&hy__rt.shards[shard]->st, out);
    return 0;
}

int hy_stats_total(struct hy_stats *out)
{
    if (!hy_running())
        return HY_ENOTSTARTED;
    if (!out)
        return HY_EINVAL;
    struct hy_stats t = {0}, s;
    for (unsigned i = 0; i < hy__rt.nshards; i++) {
        snap(&hy__rt.shards[i]->st, &s);
        uint64_t *a = (uint64_t *)&t;
        const uint64_t *b = (const uint64_t *)&s;
        for (size_t k = 0; k < sizeof(t) / sizeof(uint64_t); k++)
            a[k] += b[k];
    }
    t.io_backend = s.io_backend; /* a kind, not a count: the same on every shard */
    *out = t;
    return 0;
}

int hy_stats_pair(unsigned src, unsigned dst, struct hy_pair_stats *out)
{
    if (!hy_running())
        return HY_ENOTSTARTED;
    if (src >= hy__rt.nshards || dst >= hy__rt.nshards || !out)
        return HY_EINVAL;
    const struct hy__pair_stats *ps = &hy__rt.shards[src]->pair[dst];
    out->ring_entries = atomic_load_explicit(&ps->entries, memory_order_relaxed);
    out->batches = atomic_load_explicit(&ps->batches, memory_order_relaxed);
    out->overflows = atomic_load_explicit(&ps->overflows, memory_order_relaxed);
    return 0;
}
