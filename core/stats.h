/* Per-shard statistics.
 *
 * Each shard counts with relaxed atomics on its own cache lines; any thread
 * may read a snapshot (values of different counters are not read at one
 * instant).
 *
 * Two kinds of figures: a *gauge* is a current value that goes up and down
 * (processes alive now); a *total* only grows, from the start of the
 * runtime (processes spawned so far): take differences of two snapshots for
 * a rate. hy_stats_total() sums both kinds over the shards (the sum of
 * gauges is the node's current value).
 */
#ifndef HY_CORE_STATS_H
#define HY_CORE_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Buckets of the turn-time histogram (struct hy_stats turn_log2). */
#define HY_STATS_TURN_BUCKETS 32

struct hy_stats {
    uint64_t procs_alive;       /* gauge: processes currently alive */
    uint64_t procs_spawned;     /* total: processes spawned */
    uint64_t procs_exited;      /* total: processes that ended */
    uint64_t msgs_sent_local;   /* total: sends to a process of the same shard */
    uint64_t msgs_sent_cross;   /* total: sends to another shard */
    uint64_t msgs_received;     /* total: messages taken by a receive (one a same-shard
                                   send hands to a receiver blocked in hy_recv counts
                                   from the hand-over, unless the receiver dies first) */
    uint64_t dropped_dead;      /* total: sends to a dead or unknown pid */
    uint64_t dropped_full;      /* total: sends dropped by a full bounded mailbox */
    uint64_t ring_overflows;    /* total: entries that had to wait behind a full ring */
    uint64_t runq_len;          /* gauge: processes ready to run (at the end of the last turn) */
    uint64_t busy_ns;           /* total: time spent with work to do */
    uint64_t idle_ns;           /* total: time spent idle (spinning or asleep) */
    uint64_t sleeps;            /* total: times the shard went to sleep */
    uint64_t buffers_out;       /* gauge: message buffers of this shard not yet back home */
    uint64_t stacks_pooled;     /* gauge: guarded stacks kept in the pool */
    uint64_t stalls;            /* total: stalls reported */
    uint64_t timers_armed;      /* gauge: timers armed in the shard's wheel */
    uint64_t io_backend;        /* kind: enum hy_io_backend in use (URING or EPOLL) */
    uint64_t io_sockets;        /* gauge: sockets open on the shard */
    uint64_t io_syscalls;       /* total: poller system calls (submit, wait, ctl) */
    uint64_t io_events;         /* total: readiness events reaped */
    uint64_t io_wakeups;        /* total: sleeps ended by socket readiness */
    /* Scheduler turns that found work, by duration (the time from the end
     * of the previous turn to the end of this one, read with the clock the
     * turn reads anyway; their sum is busy_ns): turn_log2[k] counts turns
     * shorter than 2^(k+1) ns (and at least 2^k ns, but for k = 0), the
     * last bucket every turn of 2^(HY_STATS_TURN_BUCKETS - 1) ns or more. */
    uint64_t turns;                                /* total: busy turns (sum of turn_log2) */
    uint64_t turn_log2[HY_STATS_TURN_BUCKETS];     /* total: busy turns per log2 bucket */
    /* total: sleeps made in the socket poller itself, one system call each
     * (io_uring: submit and wait in one io_uring_enter); part of sleeps.
     * The other sleeps of a shard with sockets (epoll, or hooks watching
     * descriptors) wait in ppoll. */
    uint64_t io_sleeps;
    /* total: receives made by the socket poller for a process parked in a
     * passive receive (io_uring), whose bytes came with the wake-up; each
     * spares the process a recv system call */
    uint64_t io_recvs;
    /* total: sends queued to the socket poller (io_uring): the bytes were
     * copied into the socket's send queue and went to the kernel with the
     * shard's next submission; each spares the process a send system call */
    uint64_t io_sends;
    /* total: changes of a socket's readiness watch between watching input
     * and not (io_uring: one poll update request and its completion each,
     * made with the shard's next submission; retries of an update that
     * found the poll completing included). A socket read through the
     * poller's receives leaves input out; a wait for input without a
     * receive armed (an empty pool, framing, active mode, a try without
     * waiting) watches it again */
    uint64_t io_poll_updates;
    /* total: cross-shard spins (hy_config.xshard_spin_ns): waits in a spin
     * of an idle shard for an answer from a shard at work, instead of a
     * sleep; xshard_spin_hits of them ended with input (the rest with a
     * sleep: at the bound, at a timer, or with every shard waited on idle) */
    uint64_t xshard_spins;
    uint64_t xshard_spin_hits;
};

/* Copies shard's counters into *out (borrowed).
 * Errors: HY_ENOTSTARTED, HY_EINVAL (no such shard, or out NULL).
 * Context: any thread while the runtime runs. */
int hy_stats_get(unsigned shard, struct hy_stats *out);

/* Sums every shard's counters into *out (borrowed).
 * Errors: HY_ENOTSTARTED, HY_EINVAL (out NULL).
 * Context: any thread while the runtime runs. */
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

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_STATS_H */
