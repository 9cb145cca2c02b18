/* The Hydra runtime: shards, their threads, start and stop.
 *
 * One shard per selected CPU, each a pinned thread running its own
 * cooperative scheduler of processes. Shards share nothing mutable; they talk
 * through one single-producer/single-consumer ring per ordered pair of shards.
 *
 * Typical use:
 *
 *     struct hy_config cfg;
 *     hy_config_init(&cfg);
 *     cfg.nshards = 2;
 *     hy_spawn_before_start(...);   // or spawn from hy_run's main function
 *     hy_run(&cfg, main_fn, arg);   // returns when the runtime stops
 *
 * Only one runtime exists per OS process at a time; after it stops it may be
 * started again (tests do), with a new node creation number.
 */
#ifndef HY_CORE_RUNTIME_H
#define HY_CORE_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pid.h"
#include "topology.h"

#define HY_MAX_SHARDS 256

enum hy_stack_mode {
    /* Pooled stacks, each with a PROT_NONE guard page below it; a stack is
     * taken when the process first runs. One touched page per idle process. */
    HY_STACK_GUARDED = 0,
    /* Processes run on one shared per-shard stack; the used part is copied
     * out when a process is switched out while another compact process needs
     * the stack. Hundreds of bytes per idle process, a copy per switch, and
     * no pointer into a suspended process's stack may be used by anyone. */
    HY_STACK_COMPACT = 1,
};

enum hy_idle_mode {
    /* Spin for idle_spin_ns, then sleep on a futex until woken by a sender,
     * a timer or a poll hook. ~0% CPU when idle. */
    HY_IDLE_SPIN_THEN_SLEEP = 0,
    /* Never sleep: lowest wake-up latency, one core burnt per shard. */
    HY_IDLE_BUSY_POLL = 1,
};

/* Kernel-socket I/O backend of the shards' pollers (tcp.h, udp.h). */
enum hy_io_backend {
    /* io_uring when the kernel allows it (io_uring_setup may be refused by a
     * seccomp filter, as in many containers), else epoll. */
    HY_IO_AUTO = 0,
    HY_IO_URING = 1, /* io_uring or fail to start (HY_ENOTSUP) */
    HY_IO_EPOLL = 2, /* epoll */
};

/* Runtime configuration. Fill with hy_config_init(), then change fields.
 * The runtime copies it; pointers in it are borrowed only for the duration of
 * hy_start()/hy_run(). */
struct hy_config {
    /* CPUs to run shards on, in shard order (shard i runs on cpus[i]).
     * NULL: every CPU in the process's affinity mask, or nshards of them. */
    const int *cpus;
    /* Number of entries in cpus; or, with cpus == NULL, how many shards
     * (0 = one per CPU of the affinity mask). Shards beyond the CPU count
     * wrap around the allowed CPUs (more shards than CPUs works). */
    unsigned nshards;
    /* Pin each shard thread to its CPU (default true). */
    bool pin;
    /* Topology to use instead of asking libnuma (borrowed; tests fake
     * several NUMA nodes with it). NULL = discover. */
    const struct hy_topology *topology;

    /* Node identity for pids (cluster-wide id from configuration; 1 when
     * running alone). The creation number is drawn fresh at every start
     * unless fixed here (0 = fresh). */
    uint32_t node_id;
    uint32_t node_creation;

    enum hy_idle_mode idle_mode;
    /* Spin window before sleeping, in ns (default 200 us). */
    uint64_t idle_spin_ns;

    enum hy_stack_mode stack_mode;
    /* Usable bytes of a guarded stack (default 64 KiB, rounded up to pages). */
    size_t stack_size;
    /* Size of the shared stack of compact mode (default 256 KiB). */
    size_t compact_stack_size;
    /* Stacks kept per shard pool before trimming returns them to the OS. */
    unsigned stack_pool_keep;

    /* Largest message payload accepted by send (default 1 MiB). */
    size_t max_message_size;
    /* Slots of each SPSC ring between two shards (power of two, default 1024). */
    unsigned ring_size;
    /* Processes run per scheduler turn before rings/timers are looked at. */
    unsigned run_batch;
    /* Reductions a process may spend before it is made to yield. */
    unsigned reductions;

    /* Stall detector: a process holding its shard longer than this (thread
     * CPU time) is reported once with a backtrace (default 10 ms, 0 = off);
     * at stall_abort_multiple times the threshold the node aborts with a
     * diagnostic (default 50, 0 = never abort). */
    uint64_t stall_threshold_ns;
    unsigned stall_abort_multiple;

    /* Threads of the blocking-call pool (default 2). */
    unsigned blocking_threads;

    /* Messages a process mailbox may hold by default (0 = unbounded, as in
     * Erlang); see hy_spawn_opts.max_mailbox. */
    size_t default_max_mailbox;

    /* Socket poller backend (default HY_IO_AUTO). The one chosen is logged
     * at start and reported by hy_stats.io_backend. */
    enum hy_io_backend io_backend;
};

/* Fills cfg with the defaults documented above. Context: anywhere. */
void hy_config_init(struct hy_config *cfg);

/* Entry point of a process: arg as given to spawn. Returning ends the process
 * with reason normal. */
typedef void (*hy_proc_fn)(void *arg);

/* Starts the runtime without blocking: creates and pins one thread per shard,
 * shard 0 included. If main_fn is not NULL it is spawned on shard 0 as the
 * first process (arg is passed as is: borrowed by the process).
 * Errors: HY_ESTARTED (already running), HY_EBADCPU (CPU list names an
 * unknown/offline CPU or one outside the affinity mask, or a duplicate),
 * HY_EINVAL (nshards > HY_MAX_SHARDS, ring_size not a power of two, ...),
 * HY_ENOMEM. On error nothing is left running.
 * Context: a non-shard thread, not from a process. */
int hy_start(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg);

/* Like hy_start(), but shard 0 runs on the calling thread, and hy_run()
 * returns only when the runtime has stopped (hy_stop() or hy_stop_when_idle
 * semantics of main_fn, see below). If main_fn is given, the runtime stops
 * when main_fn's process ends unless cfg->... keeps it alive: it returns
 * after the stop with 0, or an error as hy_start().
 * Context: a non-shard thread. */
int hy_run(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg);

/* Asks every shard to stop: processes still alive are killed (reason
 * shutdown, cleanup handlers run), threads exit. Non-blocking from a process
 * or shard; from another thread it also waits for the threads to finish.
 * Errors: HY_ENOTSTARTED.
 * Context: anywhere but a signal handler. */
int hy_stop(void);

/* Waits until the runtime has stopped (someone called hy_stop(), or the main
 * process of hy_start() ended with stop_on_main_exit). Joins the threads and
 * frees every shard; when the runtime belongs to a hy_run() on another
 * thread, waits until that hy_run() has done so instead.
 * Errors: HY_ENOTSTARTED, HY_EPERM from a shard thread.
 * Context: a non-shard thread. */
int hy_wait(void);

/* True between a successful hy_start() and the end of hy_wait()/hy_stop().
 * Context: anywhere. */
bool hy_running(void);

/* Number of shards of the running runtime (0 when not running). */
unsigned hy_shard_count(void);

/* Shard of the calling thread, or -1 off a shard thread. Context: anywhere. */
int hy_shard_id(void);

/* CPU and NUMA node that shard runs on. Errors: HY_EINVAL, HY_ENOTSTARTED. */
int hy_shard_cpu(unsigned shard, int *cpu, int *numa_node);

/* This node's id and creation (0/0 when not running). */
uint32_t hy_node_id(void);
uint32_t hy_node_creation(void);

/* Monotonic clock in ns. Context: anywhere. */
uint64_t hy_now_ns(void);

#endif /* HY_CORE_RUNTIME_H */
