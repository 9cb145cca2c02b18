/* The runtime's side of stats.h: each shard's counters, atomic, written by
 * the shard only (relaxed) and read by anyone (hy_stats_get). Not installed.
 * One field per field of struct hy_stats, same names (turns is the sum of
 * turn_log2, computed when read), and local_fast and local_handed, which
 * add to two and three of them. */
#ifndef HY_CORE_STATS_INTERNAL_H
#define HY_CORE_STATS_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "sanitize_internal.h"
#include "stats.h"

struct hy__shard_stats {
    _Atomic uint64_t procs_alive, procs_spawned, procs_exited;
    _Atomic uint64_t msgs_sent_local, msgs_sent_cross, msgs_received;
    _Atomic uint64_t dropped_dead, dropped_full, ring_overflows;
    _Atomic uint64_t runq_len, busy_ns, idle_ns, sleeps;
    _Atomic uint64_t buffers_out, stacks_pooled, stalls, timers_armed;
    _Atomic uint64_t io_backend, io_sockets, io_syscalls, io_events, io_wakeups, io_sleeps, io_recvs;
    _Atomic uint64_t io_sends, io_poll_updates, xshard_spins, xshard_spin_hits;
    _Atomic uint64_t turn_log2[HY_STATS_TURN_BUCKETS];
    /* messages the inline same-shard send took a buffer for: each counts
     * in msgs_sent_local and in buffers_out (one store instead of two on
     * that path; the sum is made when read, after the fields above) */
    _Atomic uint64_t local_fast;
    /* the same for those the send handed to a receiver blocked in a plain
     * receive: each also counts in msgs_received (taken back from it, as
     * a decrement, when a kill frees a handed message) */
    _Atomic uint64_t local_handed;
};

/* Adds v to counter c. Single writer (the owning shard): a relaxed load and
 * store, no atomic read-modify-write, so readers see every value whole. */
static inline void hy__stat_add(_Atomic uint64_t *c, uint64_t v)
{
#if defined(__x86_64__) && !defined(HY_TSAN) /* ThreadSanitizer must see the stores */
    /* the same as one add to memory (compilers do not fuse the atomic load
     * and store: three instructions): not a locked one, the writer is
     * alone, and the aligned 8-byte store in it is seen whole */
    __asm__("addq %1, %0" : "+m"(*(uint64_t *)c) : "er"(v));
#else
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
#endif
}

/* Counts one busy scheduler turn of ns nanoseconds in its log2 bucket:
 * bucket k holds turns shorter than 2^(k+1) ns, the last one the rest.
 * Written by the shard only (hy__stat_add). */
static inline void hy__stats_turn(struct hy__shard_stats *st, uint64_t ns)
{
    unsigned k = 63u - (unsigned)__builtin_clzll(ns | 1);
    if (k > HY_STATS_TURN_BUCKETS - 1)
        k = HY_STATS_TURN_BUCKETS - 1;
    hy__stat_add(&st->turn_log2[k], 1);
}

#endif /* HY_CORE_STATS_INTERNAL_H */
