/* The runtime's side of stats.h: each shard's counters, atomic, written by
 * the shard only (relaxed) and read by anyone (hy_stats_get). Not installed.
 * One field per field of struct hy_stats, same names. */
#ifndef HY_CORE_STATS_INTERNAL_H
#define HY_CORE_STATS_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

struct hy__shard_stats {
    _Atomic uint64_t procs_alive, procs_spawned, procs_exited;
    _Atomic uint64_t msgs_sent_local, msgs_sent_cross, msgs_received;
    _Atomic uint64_t dropped_dead, dropped_full, ring_overflows;
    _Atomic uint64_t runq_len, busy_ns, idle_ns, sleeps;
    _Atomic uint64_t buffers_out, stacks_pooled, stalls, timers_armed;
    _Atomic uint64_t io_backend, io_sockets, io_syscalls, io_events, io_wakeups;
};

/* Adds v to counter c. Single writer (the owning shard): a relaxed load and
 * store, no atomic read-modify-write, so readers see every value whole. */
static inline void hy__stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

#endif /* HY_CORE_STATS_INTERNAL_H */
