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

#ifdef __cplusplus
extern "C" {
#endif

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
     * (0 = one per CPU of the affinity mask; at most HY_MAX_SHARDS). Shards
     * beyond the CPU count wrap around the allowed CPUs (more shards than
     * CPUs works, with a warning in the log: they slow each other down). */
    unsigned nshards;
    /* Pin each shard thread to its CPU (default true). */
    bool pin;
    /* Topology to use instead of asking libnuma (borrowed; tests fake
     * several NUMA nodes with it). NULL = discover. */
    const struct hy_topology *topology;

    /* Node identity for pids (cluster-wide id from configuration, 1..2^24-1;
     * 1 when running alone). The creation number is drawn fresh at every
     * start unless fixed here (0 = fresh). */
    uint32_t node_id;
    uint32_t node_creation;

    enum hy_idle_mode idle_mode;
    /* Spin window before sleeping, in ns (default 200 us). */
    uint64_t idle_spin_ns;

    enum hy_stack_mode stack_mode;
    /* Usable bytes of a guarded stack (default 64 KiB; at least 8 KiB, then
     * rounded up to pages). */
    size_t stack_size;
    /* Size of the shared stack of compact mode (default 256 KiB; at least
     * 16 KiB). */
    size_t compact_stack_size;
    /* Stacks kept per shard pool before trimming returns them to the OS. */
    unsigned stack_pool_keep;

    /* Largest message payload accepted by send (default 1 MiB; 1 byte to
     * 64 MiB). */
    size_t max_message_size;
    /* Slots of each SPSC ring between two shards (a power of two, at least
     * 16; default 1024). */
    unsigned ring_size;
    /* Processes run per scheduler turn before timers and poll hooks are
     * looked at (default 64). */
    unsigned run_batch;
    /* Reductions (runtime calls) in a slice (default 2000). A process that
     * spends them is made to yield. The processes a shard runs between two
     * looks at its inbound rings share one slice, so a busy shard sees
     * messages and signals from other shards at least once per slice, and
     * at every hy_yield. */
    unsigned reductions;

    /* Stall detector: a process holding its shard longer than this (thread
     * CPU time) is reported once with a named backtrace (default 10 ms,
     * 0 = off); at stall_abort_multiple times the threshold the node aborts
     * with a diagnostic (default 50, 0 = never abort). The CPU time includes
     * the kernel's on the shard's behalf, page faults above all: the first
     * touch of fresh memory costs about 0.3 us per 4 KiB page on bare metal
     * but up to ~15 us under a hypervisor, so a process that fills a few MiB
     * of new memory in one go (a 2 MiB memset, a 1 MiB message into a buffer
     * class not used before) can hold a virtual machine's shard for 10 ms. */
    uint64_t stall_threshold_ns;
    unsigned stall_abort_multiple;

    /* Threads of the blocking-call pool (default 2). */
    unsigned blocking_threads;

    /* Messages a process mailbox may hold by default (0 = unbounded, as in
     * Erlang); see hy_spawn_opts.max_mailbox. */
    size_t default_max_mailbox;

    /* Keep the runtime running when the main process (the main_fn given to
     * hy_start()/hy_run()) ends; it then runs until hy_stop(). Default false:
     * the end of the main process stops the runtime. */
    bool keep_running;

    /* Socket poller backend (default HY_IO_AUTO). The one chosen is logged
     * at start and reported by hy_stats.io_backend. */
    enum hy_io_backend io_backend;

    /* How long a shard with work may put off waking a sleeping shard it
     * sent messages to, in ns (default 0: the wake-up is made as the
     * messages are published, after each process's run). With N > 0 the
     * messages are still published at once (a shard that is awake, or
     * wakes for its own input, sees them), but the wake-up of one asleep
     * waits until the sender has nothing left ready to run (before it
     * spins, polls or sleeps itself) or until N ns after the first one it
     * put off, whichever comes first: one wake-up for what a busy turn sent
     * instead of one for each process that sent. For shards that share CPUs
     * with each other (or with other programs), where each wake-up is a
     * context switch of its own; a message to a sleeping shard may wait up
     * to N ns more. At most 1 s. */
    uint64_t wake_defer_ns;

    /* How long an idle shard in the middle of a cross-shard exchange waits
     * for more input in a spin before it sleeps, in ns (default 0: it
     * sleeps as idle_spin_ns says). A shard whose last turns published
     * messages to other shards or took in messages from them keeps looking
     * at its inbound rings (and, with io_uring, at the poller's completion
     * ring, without a system call) for up to this long after that last
     * exchange, as long as a shard it published to since it last slept is
     * at work (neither asleep nor in this spin itself: an answer can still
     * come); then it sleeps. A shard with no exchange under way sleeps at
     * once. The spin yields the CPU (sched_yield) about every microsecond:
     * a thread waiting for the CPU (a client, the kernel's work) runs as it
     * would while the shard slept, but the shard stays awake, so what is
     * sent to it needs no wake-up (the sender's eventfd write, the switch
     * into a sleeping thread). For shards that share their CPUs with
     * clients; the yields are system calls, so where nothing else wants the
     * CPU the spin costs CPU time. It ends at once for anything a turn
     * would take in (a message, a completion, a timer due, a stop). Not
     * used by shards with poll hooks, nor by a shard on the epoll backend
     * while it watches sockets (readiness is seen only by a system call).
     * hy_stats.xshard_spins and xshard_spin_hits count the spins. At most
     * 1 ms. */
    uint64_t xshard_spin_ns;

    /* io_uring poller only (default false): a socket read through the
     * poller keeps one multishot receive armed across requests instead of
     * arming a one-shot receive each time its owner waits for input (the
     * kernel then re-arms its own wait for the socket's bytes, with no
     * request to submit and no poll to set up per request). Used where the
     * kernel has it (probed at each shard's ring set-up; kernels before
     * 6.10 are taken not to); elsewhere, and with the epoll poller, the
     * setting does nothing. Experimental: docs/BENCHMARKS.md says where it
     * was measured. */
    bool io_rx_multishot;
};

/* Fills cfg with the defaults documented above. Context: anywhere. */
void hy_config_init(struct hy_config *cfg);

/* Entry point of a process: arg as given to spawn. Returning ends the process
 * with reason normal. */
typedef void (*hy_proc_fn)(void *arg);

/* Starts the runtime without blocking: creates and pins one thread per shard,
 * shard 0 included. If main_fn is not NULL it is spawned on shard 0 as the
 * first process (arg is passed as is: borrowed by the process), and the
 * runtime stops when that process ends, whatever its reason, unless
 * cfg->keep_running; hy_wait() then returns. Without main_fn the runtime
 * runs until hy_stop().
 * Errors: HY_ESTARTED (already running), HY_EBADCPU (CPU list names an
 * unknown/offline CPU or one outside the affinity mask, or a duplicate),
 * HY_EINVAL (a field of cfg out of the range documented above: nshards >
 * HY_MAX_SHARDS, ring_size not a power of two, stack_size below 8 KiB,
 * ...), HY_ENOMEM. A refused configuration is also logged (HY_LOG_ERROR)
 * with the field's name, its value and the rule it breaks. On error
 * nothing is left running.
 * Context: a non-shard thread, not from a process. */
int hy_start(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg);

/* Like hy_start(), but shard 0 runs on the calling thread, and hy_run()
 * returns only when the runtime has stopped: when main_fn's process ends
 * (unless cfg->keep_running), or at hy_stop(). It returns 0 after the stop,
 * or an error as hy_start().
 * Context: a non-shard thread. */
int hy_run(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg);

/* Asks every shard to stop: processes still alive are killed (reason
 * shutdown, cleanup handlers run), threads exit. Non-blocking from a process
 * or shard; from another thread it also waits for the threads to finish.
 * Errors: HY_ENOTSTARTED.
 * Context: anywhere but a signal handler. */
int hy_stop(void);

/* Waits until the runtime has stopped (someone called hy_stop(), or the main
 * process of hy_start() ended without cfg->keep_running). Joins the threads and
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

/* Whether shard is asleep right now (in the poller's or the futex's wait, or
 * just about to enter it): a racy hint, read without a barrier, that may be
 * stale as soon as it is returned; a caller may pick a cheaper path with it
 * (e.g. send a message rather than write to a socket itself when the shard
 * is awake and will take the message without a wake-up) but must stay
 * correct either way. False for a bad shard or when the runtime is not
 * running. Context: anywhere. */
bool hy_shard_asleep(unsigned shard);

/* CPU and NUMA node that shard runs on. Errors: HY_EINVAL, HY_ENOTSTARTED. */
int hy_shard_cpu(unsigned shard, int *cpu, int *numa_node);

/* This node's id and creation (0/0 when not running). */
uint32_t hy_node_id(void);
uint32_t hy_node_creation(void);

/* Monotonic clock in ns. Context: anywhere. */
uint64_t hy_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_RUNTIME_H */
