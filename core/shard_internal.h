/* Internal state of shards and processes. Not installed.
 *
 * Ownership: every field of a struct hy_shard and of the processes it holds
 * is read and written by that shard's thread only, except where a comment
 * says "atomic" (the idle word, the foreign inbox, the stop flag, stats
 * counters read by others).
 */
#ifndef HY_CORE_SHARD_INTERNAL_H
#define HY_CORE_SHARD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hook.h"
#include "msg.h"
#include "pid.h"
#include "proc.h"
#include "ring_internal.h"
#include "runtime.h"
#include "stats.h"
#include "stats_internal.h"
#include "symbol_internal.h"
#include "wheel_internal.h"

/* Functions run for every socket request (the recv/send calls, the park,
 * the wake and the direct handoff between processes): kept together in a
 * few pages of code. On a kernel with page-table isolation and no PCID,
 * every system call empties the TLB, so each distinct page of code or data
 * a request touches costs a page walk; spread over the library the path
 * touched some eight pages of code per request. The linker script
 * (runtime_text.ld) and the default one both put .text.hot.* first. */
#define HY__HOT __attribute__((section(".text.hot.hydra")))

struct hy_shard;
struct hy_proc;
struct hy__psig;
struct hy__sock;
struct hy__io;

/* ---- message kinds (hy_msg.kind) --------------------------------------- */
enum hy__kind {
    HY_K_MSG = 0,        /* ordinary message for msg->to */
    HY_K_SPAWN_REQ,      /* spawn on this shard: data = struct hy__spawn_req */
    HY_K_SPAWN_REPLY,    /* to the requester: data = struct hy__spawn_reply */
    HY_K_TIMER_START,    /* arm a timer here: data = struct hy__timer_req + payload */
    HY_K_TIMER_CANCEL,   /* cancel/read a timer here, reply to from */
    HY_K_TIMER_REPLY,    /* data = struct hy__timer_reply */
    HY_K_BLOCKING_DONE,  /* from the thread pool (foreign inbox) */
    /* signals (signal.c) */
    HY_K_EXIT,           /* exit signal: data = struct hy_reason; aux bit 0 = from a link */
    HY_K_LINK,           /* aux bit 0 = the sender waits for LINK_ACK (ref) */
    HY_K_UNLINK,         /* data = uint64_t unlink id */
    HY_K_UNLINK_ACK,     /* data = uint64_t unlink id */
    HY_K_MONITOR,        /* ref = monitor ref; data = name (optional) */
    HY_K_DEMONITOR,      /* ref = monitor ref */
    HY_K_DOWN,           /* data = struct hy_down_info */
    HY_K_ALIAS_MSG,      /* message through an alias: ref = alias */
    HY_K_NAME_REG,       /* register this process (its shard checks and inserts) */
    HY_K_NAME_CLEAR,     /* the process lost its name (hy_unregister elsewhere) */
    HY_K_INFO_REQ,       /* process info request (to the pid's shard) */
    HY_K_LIST_REQ,       /* list of processes (to a shard) */
    HY_K_DIST_NAME,      /* to a registered name on another node (net/) */
    HY_K_DIST_CTRL,      /* net/'s per-shard control requests */
    HY_K_DIST_FRAME,     /* a frame that arrived on another shard's queue */
    HY_K_DIST_SPAWN,     /* spawn a registered function here, for another node */
    HY_K_TCP_MOVE,       /* a socket handed to a process of this shard (tcp.c) */
    HY_K_MAX = 63,
};

/* Answer to a spawn request (HY_K_SPAWN_REPLY, also from another node):
 * passing through the requester's shard it installs the parent's side of
 * spawn_link/spawn_monitor (m->ref is the monitor ref), then becomes a
 * message with tag HY_TAG_SPAWN_REPLY. */
struct hy__spawn_reply {
    int rc;
    bool link, monitor;
    hy_pid pid;
};
#define HY_TAG_SPAWN_REPLY (HY_TAG_SYSTEM | 0x5350)

/* Handler of a kind that is not HY_K_MSG, run by the destination shard when
 * it drains its rings. Takes ownership of m. */
typedef void (*hy__kind_fn)(struct hy_shard *sh, struct hy_msg *m);
void hy__kind_register(unsigned kind, hy__kind_fn fn);

/* Home value of buffers malloc'd by a foreign thread: freed with free(). */
#define HY_HOME_MALLOC 0xffffu

/* ---- processes ---------------------------------------------------------- */

enum hy__pstate {
    HY_P_NEW = 0,   /* spawned, never run: no stack yet */
    HY_P_READY,     /* in the run queue */
    HY_P_RUNNING,
    HY_P_WAITING,   /* blocked in receive / sleep / call */
    HY_P_EXITING,
    HY_P_DEAD,
};

struct hy__cleanup {
    struct hy__cleanup *next;
    void (*fn)(void *arg);
    void *arg;
};

struct hy__arena_chunk {
    struct hy__arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char mem[];
};

struct hy__stack_slab {
    void *map;
    size_t size;
};

struct hy_stack {
    struct hy_stack *next; /* pool link */
    void *lo;              /* lowest usable byte (guard page below) */
    size_t size;           /* usable bytes */
    void *map;             /* mapping incl. guard */
    size_t map_size;
    bool slab;             /* carved from a shard's slab (never unmapped alone) */
};

/* Stacks of shard i held by blocking calls whose caller died while the call
 * ran (blocking.c): the shard's slabs stay mapped at its teardown while any
 * is held, since a pool thread may still write into one. */
extern _Atomic unsigned hy__stacks_held[HY_MAX_SHARDS];

/* Every record armed in the wheel starts with a hy_wtimer and a type. */
enum { HY_WT_WAIT = 1, HY_WT_TIMER = 2 };

struct hy__wait_timer {
    struct hy_wtimer wt;
    int type;               /* HY_WT_WAIT */
    struct hy_proc *proc;
    /* Lazy arming: a blocked process waits on the shard's arm list with a
     * relative timeout until the end of the turn, when the clock (read once
     * per turn anyway) gives its deadline. A wait that ends within the turn
     * never reads the clock nor touches the wheel. */
    struct hy__wait_timer *arm_next, **arm_pprev;
    uint64_t rel_ns;
};

/* The largest payload of a buffer of the smallest class (128 bytes): the
 * send fast paths' limit. */
#define HY__FAST_LEN_MAX (128 - sizeof(struct hy_msg))

/* hy_proc.wait_msg: waiting for any message (hy_recv's plain receive, the
 * mailbox empty): a same-shard send may hand its message over (handed). */
#define HY_WAIT_ANY 2

struct hy_proc {
    /* Hot part, the record's first two cache lines (records are line-aligned,
     * proc.c): what a message, a receive and a switch read and write. The
     * first line has what a wake-up and a switch to the process read (the
     * run queue link, the state, its stack, the counts a run updates), so
     * a process woken by its socket and switched to costs one line of its
     * record; the second has the pid and the mailbox, which a message's
     * delivery reads. */
    void *sp;                  /* saved context */
    struct hy_shard *shard;
    struct hy_proc *rq_next;
    struct hy_stack *stack;    /* guarded stack (a direct hand-over looks at it); never set
                                  for a compact process (the hand-over relies on it) */
    uint64_t reductions;       /* times scheduled */
    uint8_t state;
    uint8_t stack_mode;        /* HY_STACK_GUARDED / HY_STACK_COMPACT */
    uint8_t trap_exit;
    uint8_t in_runq;
    uint8_t timed_out;
    uint8_t mailbox_policy;
    uint8_t exit_pending;      /* a signal asked it to die at its next runtime call (set on
                                  the running process, it also zeroes budget: hy__kill) */
    uint8_t wait_msg;          /* WAITING for a message (not a plain sleep); HY_WAIT_ANY:
                                  in hy_recv's plain receive, with an empty mailbox */
    uint8_t defer_exit;        /* exit signals wait until this is cleared (blocking calls) */
    uint8_t in_rt;             /* > 0 while runtime code runs on its behalf (crash.c) */
    int32_t budget;            /* reductions left in this slice */

    /* mailbox: singly linked FIFO; tailp points at the last link field */
    struct hy_msg *mb_head;
    hy_pid pid;
    struct hy_msg **mb_tailp;
    size_t mb_len;
    size_t mb_max;             /* 0 = unbounded */
    struct hy_msg **mark;      /* receive marker: link field at ref creation */
    /* a message handed over by a same-shard send to this process while it
     * waited in a plain receive (wait_msg HY_WAIT_ANY): it comes before the
     * mailbox's messages and the receive takes it when the process resumes;
     * NULL otherwise (always NULL while the process runs user code) */
    struct hy_msg *handed;

    struct hy__wait_timer wait_timer;
    hy_ref mark_ref;

    /* stack */
    size_t stack_size;
    void *copy;                /* compact: saved stack bytes */
    uint32_t copy_len, copy_cap;

    hy_proc_fn fn;
    void *arg;

    struct hy__arena_chunk *arena;
    size_t arena_bytes;
    struct hy__cleanup *cleanups;

    uint64_t run_start_cpu_ns; /* for the stall detector */

    /* links, monitors, aliases, name: owned by signal.c (NULL until used) */
    struct hy__psig *sig;
    /* timers to cancel when this process exits (timer.c) */
    void *timers;
    /* sockets this process owns, closed when it exits (io.c) */
    struct hy__sock *socks;
    /* the blocking call it waits for (blocking.c), NULL otherwise */
    void *blocking_job;

    /* ASan fake stack bookkeeping */
    void *asan_fake;
    /* ThreadSanitizer fiber (ctx_internal.h), NULL otherwise */
    void *tsan_fiber;

    /* Cold, last: a spawn does not clear them (hy__proc_create zeroes the
     * record up to here). reason is written before anything reads it (every
     * way to end sets it); exit_reason_pending whenever exit_pending is set. */
    struct hy_reason reason;   /* why it is exiting */
    struct hy_reason exit_reason_pending;
};
_Static_assert(offsetof(struct hy_proc, handed) + sizeof(struct hy_msg *) <= 128,
               "the hot part of struct hy_proc fits two cache lines");
_Static_assert(offsetof(struct hy_proc, mb_head) + sizeof(struct hy_msg *) <= 64,
               "a wake-up and a switch read the record's first line only");

/* ---- shards ------------------------------------------------------------- */

struct hy__slot {
    struct hy_proc *proc;  /* NULL when free */
    uint32_t gen;
    uint32_t next_free;    /* free-list link (slot index + 1, 0 = end) */
};

#define HY_SLOT_CHUNK_BITS 12
#define HY_SLOT_CHUNK (1u << HY_SLOT_CHUNK_BITS)
#define HY_SLOT_MAX_CHUNKS 4096 /* 16 M processes per shard */
/* Each chunk of slots is followed by a bitmap of its slots that hold a
 * process (bit i of word i / 64): listing the live processes reads it
 * instead of every slot. */
#define HY_SLOT_LIVE_WORDS (HY_SLOT_CHUNK / 64)

static inline uint64_t *hy__slot_live_bits(struct hy__slot *chunk)
{
    return (uint64_t *)(void *)(chunk + HY_SLOT_CHUNK);
}

#define HY_MSG_CLASSES 16

struct hy__msg_pool {
    struct hy_msg *free;
    uint32_t nfree;        /* kept for the classes above the slab-carved ones (their
                              trim); the fast paths leave the small ones' alone */
    uint32_t cap;          /* payload capacity of this class */
};

/* A deque of ring entries waiting behind a full ring, in FIFO order. */
/* A chunked FIFO: pushing never copies what is already queued (a doubling
 * array would, and stall the shard for milliseconds when a flood builds it
 * up). Empty when head == tail and rd == wr. */
#define HY_OVF_CHUNK 510
struct hy__ovf_chunk {
    struct hy__ovf_chunk *next;
    uintptr_t e[HY_OVF_CHUNK];
    /* ce[i] holds the message when e[i] is HY_RING_ENTRY: it goes into the
     * ring's entry array when the ring has room */
    struct hy__centry ce[HY_OVF_CHUNK];
};
struct hy__overflow {
    struct hy__ovf_chunk *head, *tail;
    uint32_t rd, wr; /* read index in head, write index in tail */
    size_t len;      /* entries queued (hy__mesh_backlog) */
    size_t bytes;    /* their payload bytes (hy__mesh_backlog_bytes) */
};

struct hy__ret_list {
    struct hy_msg *head;   /* buffers homed on that shard, to send back */
    uint32_t n;
    uint32_t cls;          /* their common size class, or UINT32_MAX if mixed */
    struct hy_msg *tail;   /* the first one freed: the list's last */
};

struct hy_shard {
    unsigned id;
    int cpu;
    int numa;                 /* NUMA node (as the topology says, faked or real) */
    int numa_mem;             /* node memory is bound to, -1 = no binding */
    pthread_t thread;
    bool on_caller_thread;

    struct hy_proc *current;  /* the running process (the stall detector reads it:
                                 __atomic stores) */
    void *sched_sp;           /* scheduler context while a process runs */
    void *tsan_sched_fiber;   /* the scheduler's ThreadSanitizer fiber */
    void *sched_stack_lo;     /* thread stack bounds (ASan) */
    size_t sched_stack_size;

    struct hy_proc *rq_head, *rq_tail; /* rq_tail: the last one while rq_head is set */
    uint32_t rq_len;
    uint32_t handoffs;        /* direct process-to-process switches this batch (the
                                 stall detector reads it: __atomic stores) */
    uint32_t run_batch;       /* hy__rt.cfg.run_batch, here beside handoffs (the handoff
                                 test reads no page of hy__rt; set by hy__sched_loop) */
    uint32_t small_max;       /* payloads the send fast paths take: min(HY__FAST_LEN_MAX,
                                 max_message_size) */
    uint64_t pid_hi;          /* the hi word of this shard's pids (node, creation, shard):
                                 both are set before the shards are made, for the start */

    /* process table */
    struct hy__slot *slot_chunks[HY_SLOT_MAX_CHUNKS];
    uint32_t nslots;
    uint32_t free_head, free_tail; /* FIFO of free slots (index + 1) */
    struct hy_proc *proc_free;     /* recycled process records */
    void *proc_chunks;             /* slabs of process records */

    /* message buffers */
    struct hy__msg_pool pools[HY_MSG_CLASSES];
    void *msg_slabs;                         /* slabs carved into small buffers */
    struct hy__ret_list ret[HY_MAX_SHARDS];  /* to return, per home shard */
    uint64_t ret_pending;                    /* shards with a pending return list: bitmap over first 64, or flag */

    /* ring mesh: out[j] = ring this shard produces into for shard j */
    struct hy_ring *out[HY_MAX_SHARDS];
    struct hy_ring *in[HY_MAX_SHARDS];
    struct hy__overflow ovf[HY_MAX_SHARDS];
    uint16_t dirty[HY_MAX_SHARDS];           /* rings with staged entries */
    uint16_t ndirty;
    uint8_t is_dirty[HY_MAX_SHARDS];
    /* wake-ups of sleeping shards put off while this one has work
     * (hy_config.wake_defer_ns; 0: none, every flush wakes at once) */
    uint64_t wake_defer_ns;
    uint64_t owed_since;                     /* the oldest owed wake-up's turn (sh->now) */
    uint16_t owed[HY_MAX_SHARDS];            /* shards owed a wake-up check */
    uint16_t nowed;
    uint8_t is_owed[HY_MAX_SHARDS];
    /* the cross-shard spin (hy_config.xshard_spin_ns; 0: none): set by
     * hy__sched_loop; xs_turn raised by a turn that took in messages from
     * other shards or (with the spin on) published to one; xs_last the
     * clock of the last turn that did (sh->now) */
    uint64_t xshard_spin_ns;
    uint64_t xs_last;
    uint64_t xs_mask;   /* shards published to since this one last slept: bit
                           i for shard i, bit 63 for shard 63 and above */
    uint8_t xs_turn;
    uint16_t ovf_list[HY_MAX_SHARDS];        /* shards with a non-empty overflow */
    uint16_t novf;
    uint8_t entry_queued;                    /* the entry reserved last is in an overflow queue */

    /* foreign multi-producer inbox (atomic stack of messages) */
    _Alignas(HY_CACHE_LINE) _Atomic(struct hy_msg *) inbox;

    /* idle: 1 while asleep (atomic, written by senders too); how it sleeps:
     * 0 = futex on `sleeping`, 1 = wake_fd (eventfd) written: ppoll on hook
     * fds + wake_fd, or the io_uring ring, which polls wake_fd */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t sleeping;
    _Atomic uint32_t sleep_kind;
    /* 1 while in the cross-shard spin (written by this shard only; read
     * by other shards' spins: a shard that waits on it waits in vain) */
    _Atomic uint32_t spinning;
    /* 1 when another shard published an exit signal into one of our inbound
     * rings (atomic: set by producers with release after the publish, taken
     * by this shard with an acquire exchange before it drains). Runtime
     * calls of the running process check it (a load, on a line producers
     * write only to wake us or to raise it), so a cross-shard exit signal
     * acts at the target's next runtime call. */
    _Atomic uint32_t sig_in;
    int wake_fd;
    unsigned nhook_fds;
    _Alignas(HY_CACHE_LINE) uint64_t now;     /* clock read once per turn */

    struct hy_wheel wheel;
    struct hy__wait_timer *arm_list;          /* waits to arm at the end of the turn */
    uint64_t ref_counter;

    /* stacks */
    struct hy_stack *stack_pool;
    unsigned stack_pool_n;
    unsigned stack_pool_low;                  /* low watermark since last trim */
    uint64_t last_trim_ns;
    /* Stacks of the configured size are carved from slabs (stack.c): one
     * mapping for many stacks, their guard pages installed in one pass. */
    char *slab_next;                          /* guard page of the next stack to carve */
    unsigned slab_left;                       /* stacks left to carve from slab_next */
    unsigned slab_grow;                       /* stacks in the next slab */
    unsigned slab_warm;                       /* of those, stacks whose top page is backed */
    unsigned slab_guarded;                    /* of those, stacks whose guard is installed */
    struct hy__stack_slab *slabs;             /* every slab, unmapped at shutdown */
    unsigned nslabs, slabs_cap;
    void **stack_cold;                        /* trimmed stacks (memory given back): guard addresses */
    unsigned ncold, cold_cap;
    int pidfd;                                /* this process, for process_madvise; -1 = none */
    void *compact_lo;                         /* compact mode shared stack */
    void *compact_hi;
    void *compact_map;
    size_t compact_map_size;
    struct hy_proc *compact_owner;            /* whose bytes are on it now */

    /* stall detector */
    _Atomic uint64_t run_seq;                  /* bumped per batch of runs (run_proc); a run
                                                  is (run_seq, handoffs), current its process */
    _Atomic uint64_t run_since_cpu_ns;         /* thread CPU time at switch-in */
    clockid_t cpu_clock;
    pid_t tid;                                 /* the shard thread's id (/proc reads) */
    uint64_t stall_reported_seq;

    /* poll hooks */
    struct hy_poll_hook *hooks;

    /* socket poller (io.c), created when the first socket registers */
    struct hy__io *io;

    /* processes killed while suspended, reaped by the scheduler */
    struct hy_proc *reap_head, *reap_tail;

    /* crash handling: alternate signal stack */
    void *altstack;
    size_t altstack_size;
    /* What the fault handler saw in a process's own code, for the crash log
     * the scheduler writes once it is back (crash.c; this thread only). */
    struct hy_proc *exiting;                  /* whose exit handlers run now (proc.c) */
    uint8_t fault_pending;
    uint8_t fault_overflow;                   /* the guard page was hit */
    uint8_t fault_nbt;
    uintptr_t fault_bt[HY_BT_MAX];            /* frame-pointer backtrace, pc first */
    /* The stall detector's backtrace of the stalled process, written by the
     * stall signal's handler on this thread, read by the watchdog after
     * stall_bt_ready (release/acquire) turns 1 (stall.c). */
    uintptr_t stall_bt[HY_BT_MAX];
    _Atomic uint32_t stall_nbt;
    _Atomic uint32_t stall_bt_ready;

    /* names: quiescent-state counter for the read-mostly name table */
    _Alignas(HY_CACHE_LINE) _Atomic uint64_t qs_count;

    struct hy__shard_stats st;                /* counters (atomic relaxed) */
    /* ring mesh traffic per destination shard, counted when a batch is
     * published (not per message): entries, batches, overflow pushes.
     * Written by this shard only (relaxed), read by anyone. */
    struct hy__pair_stats {
        _Atomic uint64_t entries, batches, overflows;
    } pair[HY_MAX_SHARDS];
    bool stopping;
    bool in_runtime;                          /* fault handler: not survivable */
};

/* Runtime-wide state. */
struct hy__runtime {
    struct hy_config cfg;
    unsigned nshards;
    struct hy_shard *shards[HY_MAX_SHARDS];
    uint32_t node_id;
    uint32_t creation;
    _Atomic int state;          /* 0 stopped, 1 starting, 2 running, 3 stopping */
    _Atomic int stop;           /* stop requested */
    _Atomic int phase_count[4]; /* shutdown barriers */
    _Atomic int main_done;
    hy_proc_fn main_fn;
    void *main_arg;
    bool stop_on_main_exit;
    hy_pid main_pid;
};

extern struct hy__runtime hy__rt;
/* Foreign threads hold it (read) across hy_send_foreign(); teardown takes it
 * (write) to leave the running state, and start-up to reset hy__rt, so no
 * sender uses a shard's inbox or wake_fd once shards are being freed. */
extern pthread_rwlock_t hy__foreign_lock;
/* initial-exec: one %fs-relative load, also from the shared library (Hydra is
 * linked at start-up, not dlopen'ed after threads exist) */
extern _Thread_local struct hy_shard *hy__tls_shard __attribute__((tls_model("initial-exec")));

static inline struct hy_shard *hy__shard(void) { return hy__tls_shard; }
static inline struct hy_proc *hy__current(void)
{
    struct hy_shard *sh = hy__tls_shard;
    return sh ? sh->current : NULL;
}

/* Brackets runtime code run from a process: a fault inside is not the
 * process's own and aborts the node (crash.c). Nests. */
#define HY_RT_ENTER(sh)                                                                  \
    struct hy_proc *hy__rt_p = (sh)->current;                                            \
    if (hy__rt_p)                                                                        \
    hy__rt_p->in_rt++
#define HY_RT_LEAVE()                                                                    \
    do {                                                                                 \
        if (hy__rt_p)                                                                    \
            hy__rt_p->in_rt--;                                                           \
    } while (0)

/* ---- sched.c ------------------------------------------------------------ */
void hy__sched_loop(struct hy_shard *sh);
void hy__sched_make_ready(struct hy_shard *sh, struct hy_proc *p);
/* hy__sched_make_ready's body, for the hot paths that inline it: p goes
 * to the tail of sh's run queue unless it is queued already. */
/* Appends p (not queued: in_runq already set by the caller) to the tail of
 * sh's run queue. */
static inline __attribute__((always_inline)) void hy__runq_append(struct hy_shard *sh,
                                                                  struct hy_proc *p)
{
    p->rq_next = NULL;
    /* rq_tail is meaningful only while rq_head is set: taking the last one
     * off the queue leaves it stale (one store and branch fewer a pop) */
    if (sh->rq_head)
        sh->rq_tail->rq_next = p;
    else
        sh->rq_head = p;
    sh->rq_tail = p;
    sh->rq_len++;
}

static inline void hy__sched_make_ready_inline(struct hy_shard *sh, struct hy_proc *p)
{
    if (p->in_runq)
        return;
    p->in_runq = 1;
    if (p->state != HY_P_NEW)
        p->state = HY_P_READY;
    hy__runq_append(sh, p);
}
/* Switches from the running process back to the scheduler. */
void hy__sched_switch_out(struct hy_proc *p);
/* Charges one reduction; yields when the budget is spent. May not return if
 * an exit signal is pending (the process exits). */
void hy__charge(struct hy_proc *p);
/* The next ready guarded process to switch to directly from p (popped from
 * the run queue and started), or NULL: then go through the scheduler. */
struct hy_proc *hy__sched_take_handoff(struct hy_shard *sh, struct hy_proc *p);
void hy__wake_shard(struct hy_shard *target);

/* ---- proc.c ------------------------------------------------------------- */
/* A new reference made on sh, homed on shard home (hy_ref_make's, inlined
 * for a call's monitor). Context: sh's thread. */
static inline hy_ref hy__ref_new_inl(struct hy_shard *sh, unsigned home)
{
    hy_ref r;
    r.hi = ((uint64_t)(hy__rt.node_id & 0xffffffu) << 40) |
           ((uint64_t)(hy__rt.creation & 0xffffffu) << 16) | home;
    r.lo = ((uint64_t)sh->id << 52) | (++sh->ref_counter & ((1ull << 52) - 1));
    return r;
}
struct hy_proc *hy__proc_lookup(struct hy_shard *sh, hy_pid pid);
/* hy__proc_lookup inlined, for the runtime's per-message paths: the
 * delivery's receiver lookup, and a call's monitor, reply and demonitor. */
static inline __attribute__((always_inline)) struct hy_proc *hy__proc_lookup_inl(struct hy_shard *sh,
                                                                                hy_pid pid)
{
    uint32_t idx = hy_pid_slot(pid);
    if (__builtin_expect(idx >= sh->nslots, 0))
        return NULL;
    struct hy__slot *s = &sh->slot_chunks[idx >> HY_SLOT_CHUNK_BITS][idx & (HY_SLOT_CHUNK - 1)];
    if (s->gen != hy_pid_gen(pid) || !s->proc || hy_pid_creation(pid) != hy__rt.creation)
        return NULL;
    return s->proc;
}
int hy__proc_create(struct hy_shard *sh, hy_proc_fn fn, void *arg, const struct hy_spawn_opts *o,
                    const void *argcopy, size_t argsize, hy_pid *out, struct hy_proc **pout);
void hy__proc_entry(void *p);
/* Ends p (must be the current process) with reason: never returns. */
__attribute__((noreturn)) void hy__proc_exit_current(struct hy_proc *p, struct hy_reason r);
/* Tears down p from the scheduler (cleanups, mailbox, arena, slot). */
void hy__proc_reap(struct hy_shard *sh, struct hy_proc *p);
/* Kills a process that is not running (shutdown). */
void hy__proc_kill_suspended(struct hy_shard *sh, struct hy_proc *p, struct hy_reason r);
void hy__proc_table_fini(struct hy_shard *sh);
/* Hook for signal.c: called when a process ends (links, monitors, names). */
extern void (*hy__on_proc_exit_hook)(struct hy_shard *sh, struct hy_proc *p);

/* ---- msg.c -------------------------------------------------------------- */
int hy__msg_alloc(struct hy_shard *sh, size_t len, struct hy_msg **out);
/* As hy__msg_alloc, for a runtime request wrapping a user payload already
 * checked against max_message_size: allows HY_MSG_RT_HEADROOM bytes more. */
#define HY_MSG_RT_HEADROOM 256u
int hy__msg_alloc_rt(struct hy_shard *sh, size_t len, struct hy_msg **out);
void hy__msg_free_local(struct hy_shard *sh, struct hy_msg *m);
/* Same-shard fast path of a send: when `to` lives on sh and the payload
 * fits the smallest buffer class, builds the message (kind, tag, ref, a
 * copy of data) from the pool and hands it to its receiver or kind handler
 * at once; false (nothing done) otherwise. Does not charge the sender. */
bool hy__send_fast(struct hy_shard *sh, hy_pid to, unsigned kind, uint64_t tag, hy_ref ref,
                   const void *data, size_t len);
/* Routes m (owned) to m->to: local mailbox, a ring, or the remote hook. */
void hy__route(struct hy_shard *sh, struct hy_msg *m);
/* Delivers m (owned) to a local process's mailbox and wakes it. */
void hy__deliver(struct hy_shard *sh, struct hy_msg *m);
void hy__mailbox_append(struct hy_shard *sh, struct hy_proc *p, struct hy_msg *m);
void hy__mailbox_drop_all(struct hy_shard *sh, struct hy_proc *p);
void hy__msg_pools_fini(struct hy_shard *sh);
void hy__dispatch(struct hy_shard *sh, struct hy_msg *m);
int hy__recv_generic(int (*match)(const struct hy_msg *, void *), void *arg, struct hy_msg **out,
                     int64_t timeout_ns, bool from_mark);

/* ---- mesh.c ------------------------------------------------------------- */
int hy__mesh_create(void);
void hy__mesh_destroy(void);
/* Queues an entry (message pointer, or return list with bit 0 set) for shard dst. */
void hy__mesh_push(struct hy_shard *sh, unsigned dst, uintptr_t entry);
/* Producer: an entry at the tail of the overflow queue towards dst (for
 * hy__mesh_entry_reserve when the ring is full or entries already wait);
 * NULL when the ring has no entry array, or has room for a pointer but no
 * line of its entry array free (an array smaller than the ring). */
struct hy__centry *hy__mesh_entry_queue(struct hy_shard *sh, unsigned dst);
/* Producer: the line of the entry array of the ring towards dst (which
 * must exist) at the ring's next position, when an entry can go straight
 * into the ring: nothing waits in the overflow queue (its len counts what
 * is queued) and the array has a line the consumer is done with. NULL
 * otherwise. Fill it, then stage it with hy__mesh_entry_stage() before
 * anything else is pushed towards dst. */
static inline __attribute__((always_inline)) struct hy__centry *
hy__mesh_entry_try(struct hy_shard *sh, unsigned dst)
{
    if (__builtin_expect(sh->ovf[dst].len != 0, 0))
        return NULL;
    return hy__ring_entry_reserve(sh->out[dst]);
}
/* Producer: the ring entry (one line) a small ordinary message to shard dst
 * is written into, to be filled and then staged with
 * hy__mesh_entry_commit() before anything else is pushed towards dst. When
 * the ring is full, or entries wait behind it, the entry is one at the tail
 * of the overflow queue, which goes into the ring in its turn (the one FIFO
 * per pair holds either way). NULL (send a buffer) as hy__mesh_entry_queue
 * says. */
static inline struct hy__centry *hy__mesh_entry_reserve(struct hy_shard *sh, unsigned dst)
{
    struct hy__centry *e = hy__mesh_entry_try(sh, dst);
    if (__builtin_expect(e != NULL, 1))
        return e;
    return hy__mesh_entry_queue(sh, dst);
}
/* Entries staged towards one shard before they are published at once
 * (otherwise at the end of the turn). */
#define HY__MESH_PUBLISH_BATCH 32
/* Producer: publishes the ring towards dst, whose staged entries make a
 * full batch, in the middle of a turn: counted, and its consumer woken if
 * it is seen asleep (without the full barrier of the end of the turn's
 * check: hy__mesh_flush makes that one for every ring pushed to). */
void hy__mesh_batch_full(struct hy_shard *sh, unsigned dst);
/* Producer: stages the entry hy__mesh_entry_try() returned in r, the ring
 * towards dst (the slot, the dirty mark); true when the staged entries now
 * make a full batch, for the caller to publish with hy__mesh_batch_full(). */
static inline __attribute__((always_inline)) bool hy__mesh_entry_stage(struct hy_shard *sh,
                                                                      unsigned dst,
                                                                      struct hy_ring *r)
{
    hy__ring_entry_commit(r);
    if (!sh->is_dirty[dst]) {
        sh->is_dirty[dst] = 1;
        sh->dirty[sh->ndirty++] = (uint16_t)dst;
    }
    return __builtin_expect(hy__ring_staged(r) >= HY__MESH_PUBLISH_BATCH, 0);
}
/* The uncommon end of hy__mesh_entry_commit: the entry reserved last is in
 * an overflow queue (counted, the sender yields), or the ring's staged
 * entries make a full batch (published, the consumer woken). */
void hy__mesh_entry_commit_rest(struct hy_shard *sh, unsigned dst);
/* Producer: stages the entry hy__mesh_entry_reserve() returned. Inline, so
 * that the common case (into the ring, batch not full) calls nothing: the
 * slot, the dirty mark and the staged count. */
static inline __attribute__((always_inline)) void hy__mesh_entry_commit(struct hy_shard *sh,
                                                                        unsigned dst)
{
    if (__builtin_expect(!sh->entry_queued, 1) && !hy__mesh_entry_stage(sh, dst, sh->out[dst]))
        return;
    hy__mesh_entry_commit_rest(sh, dst);
}
/* Consumer: turns the ring entries among the n slots of a burst just
 * peeked from r, the ring from shard src (slots HY_RING_ENTRY, their lines
 * at hy__ring_entry_at(r, k)), into buffers of this shard's pool, in place
 * in buf (each returned owned), taking the buffers off the pool in one run.
 * Returns how many of the n positions are ready: n, or the position of the
 * first entry no buffer could be had for (it, and what follows it, stay in
 * the ring for the next drain). In core/msg.c. */
unsigned hy__msg_from_entries(struct hy_shard *sh, unsigned src, const struct hy_ring *r,
                              uintptr_t *buf, unsigned n);
/* A run of ordinary messages (HY_K_MSG) to one receiver, in order, linked
 * from head through next to tail (tail->next NULL), n of them. */
struct hy__mrun {
    struct hy_msg *head;
    struct hy_msg *tail;
    uint32_t n;
};
/* Consumer: turns the first n positions peeked from r, the ring from shard
 * src, all of them entries (slots HY_RING_ENTRY), into buffers of this
 * shard's pool, linking each stretch of consecutive messages to the same
 * receiver into one run (runs[0 .. *nruns), at most n; the buffers are
 * owned by the runs). Does not release the positions. Returns how many
 * were converted: n, or fewer when no buffer could be had (the rest stay
 * in the ring for the next drain). In core/msg.c. */
unsigned hy__msg_take_entries(struct hy_shard *sh, unsigned src, const struct hy_ring *r,
                              unsigned n, struct hy__mrun *runs, unsigned *nruns);
/* Delivers a run (hy__msg_take_entries) onto its receiver's mailbox in one
 * step: one lookup, one tail update, one make-ready; a receiver with a
 * mailbox limit takes them one at a time; a dead one's are dropped. Takes
 * the run's buffers. In core/msg.c. */
void hy__deliver_chain(struct hy_shard *sh, const struct hy__mrun *run);
/* Publishes staged entries and moves overflow into rings; wakes sleepers,
 * or, with sh->wake_defer_ns set, owes them the wake-up check
 * (hy__mesh_wake_owed). */
void hy__mesh_flush(struct hy_shard *sh);
/* Makes the wake-up checks owed since the last call (hy__wake_shard for
 * each shard published to). The scheduler calls it when the shard has
 * nothing ready to run or the oldest is wake_defer_ns old. Context: the
 * shard's thread. */
void hy__mesh_wake_owed(struct hy_shard *sh);
/* Publishes what is staged in the rings pushed to this turn (no overflow
 * moved), as a full batch is: counted, a consumer seen asleep woken, and
 * no full barrier; the rings stay dirty, so the hy__mesh_flush that must
 * follow in the same turn makes the fenced wake-up check. For a process
 * switching back to the scheduler: its sends leave before that switch.
 * Context: the shard's thread. */
void hy__mesh_publish_staged(struct hy_shard *sh);
/* Drains inbound rings and the foreign inbox; returns entries handled. */
unsigned hy__mesh_drain(struct hy_shard *sh);
/* True when an inbound ring or the inbox has something (consumer side). */
bool hy__mesh_has_input(struct hy_shard *sh);
/* Consumer, for the idle spin: a hint that something arrived (an inbound
 * ring's published head past what this shard has taken, a foreign message,
 * the signal flag). Relaxed loads only, one per inbound ring, and no cached
 * head updated: the drain that follows makes the acquire loads. */
static inline bool hy__mesh_input_hint(const struct hy_shard *sh)
{
    for (unsigned j = 0; j < hy__rt.nshards; j++) {
        const struct hy_ring *r = sh->in[j];
        if (r && atomic_load_explicit(&r->head, memory_order_relaxed) != r->tail_local)
            return true;
    }
    return atomic_load_explicit(&sh->inbox, memory_order_relaxed) != NULL ||
           atomic_load_explicit(&sh->sig_in, memory_order_relaxed) != 0;
}
/* Producer: publishes everything staged for dst now and raises dst's sig_in
 * flag, for an exit signal just pushed (it must act at the target's next
 * runtime call, not after the sender's turn). */
void hy__mesh_push_signal(struct hy_shard *sh, unsigned dst);
/* Consumer: true when a producer raised sig_in (relaxed load: only a hint;
 * the drain that follows takes it with acquire). */
static inline bool hy__mesh_sig_in(struct hy_shard *sh)
{
    return atomic_load_explicit(&sh->sig_in, memory_order_relaxed) != 0;
}
/* Consumer: drains the inbound rings when anything is there, after taking
 * the sig_in flag; returns entries handled. Called between two processes'
 * slices so that a busy shard sees its rings once per reduction slice. */
unsigned hy__mesh_poll(struct hy_shard *sh);
bool hy__mesh_idle(struct hy_shard *sh); /* no overflow, nothing staged */
/* Entries queued behind full rings towards dst, or (dst < 0) the most
 * towards any shard: what a source that can hold back (a network receive
 * path) checks before it adds more. */
static inline size_t hy__mesh_backlog(const struct hy_shard *sh, int dst)
{
    if (dst >= 0)
        return sh->ovf[dst].len;
    size_t most = 0; /* (no overflow, the common case: no loop) */
    for (unsigned k = 0; k < sh->novf; k++) {
        size_t n = sh->ovf[sh->ovf_list[k]].len;
        most = n > most ? n : most;
    }
    return most;
}
/* The payload bytes of those entries (a message carried whole in a ring
 * entry counts as HY_RING_ENTRY_DATA), for dst, or the most towards any
 * shard when dst < 0. */
static inline size_t hy__mesh_backlog_bytes(const struct hy_shard *sh, int dst)
{
    if (dst >= 0)
        return sh->ovf[dst].bytes;
    size_t most = 0;
    for (unsigned k = 0; k < sh->novf; k++) {
        size_t n = sh->ovf[sh->ovf_list[k]].bytes;
        most = n > most ? n : most;
    }
    return most;
}
void hy__ret_flush(struct hy_shard *sh);

/* ---- stack.c ------------------------------------------------------------ */
int hy__stack_init_shard(struct hy_shard *sh);
void hy__stack_fini_shard(struct hy_shard *sh);
struct hy_stack *hy__stack_get(struct hy_shard *sh, size_t size);
void hy__stack_put(struct hy_shard *sh, struct hy_stack *s);
void hy__stack_trim(struct hy_shard *sh);
/* Backs the whole pages inside [p, p + len) with memory now, in one system
 * call (MADV_POPULATE_WRITE), instead of a page fault per page at first
 * touch. For memory about to be written whole (a chunk of process records).
 * Best effort: where the kernel refuses the advice (before Linux 5.14) it
 * is not asked again; nothing is reported. Any thread. */
void hy__mem_populate(void *p, size_t len);
/* Switches into p, which may be guarded or compact, from the scheduler. */
void hy__stack_switch_in(struct hy_shard *sh, struct hy_proc *p);
/* Switches from the current process p back to the scheduler. */
void hy__stack_switch_out(struct hy_shard *sh, struct hy_proc *p);
/* Gives a guarded process its stack and initial context if it has none yet;
 * false when no stack could be had. */
bool hy__stack_ready(struct hy_shard *sh, struct hy_proc *p);
/* Switches from the running process `from` straight into guarded `to`
 * (dying: `from` never runs again). */
void hy__stack_switch_direct(struct hy_shard *sh, struct hy_proc *from, struct hy_proc *to,
                             bool dying);
void hy__stack_release(struct hy_shard *sh, struct hy_proc *p);

/* ---- timer.c ------------------------------------------------------------ */
void hy__timer_init_shard(struct hy_shard *sh);
void hy__timer_fini_shard(struct hy_shard *sh);
void hy__timer_expire(struct hy_shard *sh);
void hy__timer_proc_exit(struct hy_shard *sh, struct hy_proc *p);
/* Starts p's wait timeout (rel_ns from about now; never early). */
void hy__wait_arm(struct hy_shard *sh, struct hy_proc *p, uint64_t rel_ns);
/* Cancels p's wait timeout, armed or still pending. */
void hy__wait_disarm(struct hy_shard *sh, struct hy_proc *p);
/* Arms the pending waits at sh->now + their timeout (once per turn). */
void hy__wait_arm_pending(struct hy_shard *sh);

/* ---- signal.c ----------------------------------------------------------- */
/* Marks p to exit with reason: at once if suspended (reaped by the
 * scheduler), at its next preemption point if running or deferring. */
void hy__kill(struct hy_shard *sh, struct hy_proc *p, struct hy_reason r);
/* Reaps the processes killed since the last call (iteratively: no recursion
 * through chains of links). */
void hy__reap_pending(struct hy_shard *sh);
/* Installs the child's side of spawn_link/spawn_monitor (on the child's
 * shard, before it runs) and the requester's side (on the requester's
 * shard, when the reply passes through). */
void hy__spawn_install_child(struct hy_shard *sh, struct hy_proc *child, bool link, bool monitor,
                             hy_pid requester, hy_ref ref);
void hy__spawn_install_parent(struct hy_shard *sh, struct hy_proc *parent, bool link,
                              bool monitor, hy_pid child, hy_ref ref);
/* Distribution (net/): called on each shard when a node goes down/up; the
 * hook answers whether a node can be reached (0) for hy_monitor_node. */
void hy__dist_node_down(struct hy_shard *sh, uint32_t node);
void hy__dist_node_up(struct hy_shard *sh, uint32_t node);
typedef int (*hy_dist_monitor_node_fn)(uint32_t node);
/* Set by net/ on one shard, read by any: atomic (seq_cst assignments in
 * net/dist.c; readers load it once, acquire). */
extern _Atomic(hy_dist_monitor_node_fn) hy__dist_monitor_node_hook;
/* Distribution (net/): whether a pid of node (not this one) can be reached
 * now; NULL (distribution off) = never. Answered at once by hy_monitor and
 * hy_link with noconnection when not. Set with release, read with acquire. */
typedef bool (*hy_dist_reachable_fn)(uint32_t node);
extern _Atomic(hy_dist_reachable_fn) hy__dist_reachable_hook;
/* Set by net/ while distribution runs: true while the channel a send from
 * this shard to `to` (a pid of another node) went into holds more than its
 * limit. A process that sent waits (sleeps) until it is false again, as a
 * BEAM process sending into a busy distribution port is suspended. */
typedef bool (*hy_dist_busy_fn)(struct hy_shard *sh, hy_pid to);
extern hy_dist_busy_fn hy__dist_busy_hook;
int hy__crash_shard_init(struct hy_shard *sh);
void hy__crash_shard_fini(struct hy_shard *sh);
int hy__crash_install(void);
void hy__crash_uninstall(void);
/* Logs "Error in process ..." for p, which has just ended with a crash
 * (a fault: the handler's backtrace is in sh) or a panic (bt/nbt: taken in
 * the process). Context: p's shard. */
void hy__crash_log(struct hy_shard *sh, struct hy_proc *p, const uintptr_t *bt, unsigned nbt,
                   bool overflow);
/* Backtrace of the code interrupted by a signal on sh's thread (ucontext
 * from SA_SIGINFO): frame pointers inside the running stack, pc first.
 * Context: async-signal-safe, on sh's thread. */
unsigned hy__crash_backtrace(struct hy_shard *sh, const void *ucontext, uintptr_t *out,
                             unsigned max);
/* Records the backtrace of the current process p, which panics (reason
 * set), for the scheduler to log with hy__crash_log once p is off the CPU. */
void hy__crash_log_panic(struct hy_proc *p);
void hy__name_quiescent(struct hy_shard *sh);
void hy__name_fini(void);

/* ---- stall.c / blocking.c / log.c --------------------------------------- */
int hy__stall_start(void);
void hy__stall_stop(void);
/* A shard woke from sleep: wakes the watchdog if it waits for one. */
bool hy__stall_parked(void);
void hy__stall_kick(void);
/* The watchdog's wake-ups so far (timer ticks and kicks), process-wide. */
uint64_t hy__stall_wakes(void);
int hy__blocking_start(unsigned nthreads);
void hy__blocking_stop(void);
/* p is reaped while waiting for a blocking call: its memory goes to the job. */
void hy__blocking_proc_exit(struct hy_shard *sh, struct hy_proc *p);
/* The signal the stall watchdog sends a stalled shard's thread for its
 * backtrace. */
#define HY__STALL_SIGNAL (SIGRTMIN + 7)
/* clk's CPU time in ns; 0 when it cannot be read (its thread has exited). */
uint64_t hy__thread_cpu_ns(clockid_t clk);

/* Prints what and aborts: for states the runtime cannot survive. */
__attribute__((noreturn)) void hy__fatal(const char *what);

/* Memory on the shard's NUMA node (numa_alloc_onnode when real NUMA). */
void *hy__shard_mem_alloc(struct hy_shard *sh, size_t size);
void hy__shard_mem_free(struct hy_shard *sh, void *p, size_t size);

#endif /* HY_CORE_SHARD_INTERNAL_H */
