/* Per-shard statistics.
 *
 * Each shard counts with relaxed atomics on its own cache lines; any thread
 * may read a snapshot (values of different counters are not read at one
 * instant).
 */
#ifndef HY_CORE_STATS_H
#define HY_CORE_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hy_stats {
    uint64_t procs_alive;       /* processes currently alive */
    uint64_t procs_spawned;
    uint64_t procs_exited;
    uint64_t msgs_sent_local;   /* sends to a process of the same shard */
    uint64_t msgs_sent_cross;   /* sends to another shard */
    uint64_t msgs_received;     /* messages taken by a receive */
    uint64_t dropped_dead;      /* sends to a dead or unknown pid */
    uint64_t dropped_full;      /* sends dropped by a full bounded mailbox */
    uint64_t ring_overflows;    /* entries that had to wait behind a full ring */
    uint64_t runq_len;          /* processes ready to run now */
    uint64_t busy_ns;           /* time spent with work to do */
    uint64_t idle_ns;           /* time spent idle (spinning or asleep) */
    uint64_t sleeps;            /* times the shard went to sleep */
    uint64_t buffers_out;       /* message buffers of this shard not yet back home */
    uint64_t stacks_pooled;     /* guarded stacks kept in the pool */
    uint64_t stalls;            /* stalls reported */
    uint64_t timers_armed;
};

/* Copies shard's counters into *out (borrowed).
 * Errors: HY_ENOTSTARTED, HY_EINVAL (no such shard).
 * Context: any thread while the runtime runs. */
int hy_stats_get(unsigned shard, struct hy_stats *out);

/* Sums every shard's counters into *out. Errors: HY_ENOTSTARTED. */
int hy_stats_total(struct hy_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_STATS_H */
