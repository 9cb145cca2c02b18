/* Per-shard statistics.
 *
 * Each shard counts with relaxed atomics on its own cache lines; any thread
 * may read a snapshot (values of different counters are not read at one
 * instant).
 */
#ifndef HY_CORE_STATS_H
#define HY_CORE_STATS_H

#include <stdint.h>

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
    uint64_t io_backend;        /* enum hy_io_backend in use (URING or EPOLL) */
    uint64_t io_sockets;        /* sockets open on the shard */
    uint64_t io_syscalls;       /* poller system calls (submit, wait, ctl) */
    uint64_t io_events;         /* readiness events reaped */
    uint64_t io_wakeups;        /* sleeps ended by socket readiness */
};

/* Copies shard's counters into *out (borrowed).
 * Errors: HY_ENOTSTARTED, HY_EINVAL (no such shard).
 * Context: any thread while the runtime runs. */
int hy_stats_get(unsigned shard, struct hy_stats *out);

/* Sums every shard's counters into *out. Errors: HY_ENOTSTARTED. */
int hy_stats_total(struct hy_stats *out);

/* Traffic from one shard to another through the ring mesh. The sending
 * shard counts a whole batch when it publishes it (never per message), so
 * the figures lag by at most one unpublished batch. Entries are messages,
 * signals and returned message buffers alike. */
struct hy_pair_stats {
    uint64_t ring_entries; /* entries published into the ring src -> dst */
    uint64_t batches;      /* publishes (one per batch) */
    uint64_t overflows;    /* entries that waited in the overflow queue first */
};

/* Copies the counters of the pair src -> dst into *out (borrowed).
 * Errors: HY_ENOTSTARTED, HY_EINVAL (no such shard, out NULL).
 * Context: any thread while the runtime runs. */
int hy_stats_pair(unsigned src, unsigned dst, struct hy_pair_stats *out);

/* Internal layout (atomic counters), exposed only for the runtime. */
struct hy__shard_stats {
    _Atomic uint64_t procs_alive, procs_spawned, procs_exited;
    _Atomic uint64_t msgs_sent_local, msgs_sent_cross, msgs_received;
    _Atomic uint64_t dropped_dead, dropped_full, ring_overflows;
    _Atomic uint64_t runq_len, busy_ns, idle_ns, sleeps;
    _Atomic uint64_t buffers_out, stacks_pooled, stalls, timers_armed;
    _Atomic uint64_t io_backend, io_sockets, io_syscalls, io_events, io_wakeups;
};

#endif /* HY_CORE_STATS_H */
