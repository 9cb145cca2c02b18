/* The per-shard scheduler loop: run a bounded batch of ready processes,
 * publish what they sent, drain inbound rings, expire timers, poll hooks,
 * then idle (spin, then sleep on a futex). */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "crash_internal.h"
#include "ctx_internal.h"
#include "errors.h"
#include "io_internal.h"
#include "shard_internal.h"

/* hy__stack_switch_direct for a process that stays alive: without the
 * sanitizers' fiber annotations it is the register switch alone, called
 * here directly (one call step fewer per hand-over). */
static inline __attribute__((always_inline)) void switch_direct(struct hy_shard *sh,
                                                                struct hy_proc *p,
                                                                struct hy_proc *next)
{
#if defined(HY_ASAN) || defined(HY_TSAN)
    hy__stack_switch_direct(sh, p, next, false);
#else
    (void)sh;
    hy__ctx_switch(&p->sp, next->sp);
#endif
}

static inline void stat_set(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}
static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

HY__HOT void hy__sched_make_ready(struct hy_shard *sh, struct hy_proc *p)
{
    hy__sched_make_ready_inline(sh, p);
}

static inline struct hy_proc *rq_pop(struct hy_shard *sh)
{
    struct hy_proc *p = sh->rq_head;
    if (p) {
        sh->rq_head = p->rq_next; /* rq_tail: stale once empty (hy__runq_append) */
        sh->rq_len--;
        p->in_runq = 0;
    }
    return p;
}

/* budget: what is left of the shard's reduction slice. The processes run
 * between two looks at the inbound rings share one slice (a direct handoff
 * passes on what is left), so a busy shard sees its rings at least once per
 * slice spent. */
static inline void begin_run(struct hy_shard *sh, struct hy_proc *p, int32_t budget)
{
    /* the stall detector samples current (release: p's pid, written at its
     * spawn, is visible to the watchdog that loads p from here) with
     * run_seq and handoffs, the run's identity; no store of its own */
    __atomic_store_n(&sh->current, p, __ATOMIC_RELEASE);
    p->state = HY_P_RUNNING;
    p->budget = budget;
    p->reductions++;
}

/* Takes next, the run queue's head, off the queue for a direct hand-over;
 * handoffs: sh->handoffs, as the caller loaded it. */
static inline __attribute__((always_inline)) void pop_handoff(struct hy_shard *sh,
                                                              struct hy_proc *next,
                                                              uint32_t handoffs)
{
    sh->rq_head = next->rq_next; /* rq_tail: stale once empty (hy__runq_append) */
    sh->rq_len--;
    next->in_runq = 0;
    /* the stall detector's count of runs within this batch (release: its
     * look at run_seq after this is not older, see stall.c) */
    __atomic_store_n(&sh->handoffs, handoffs + 1, __ATOMIC_RELEASE);
}

/* The calling process p yields or blocks. When another guarded process is
 * ready, switch to it directly (one register switch instead of two through
 * the scheduler's stack), at most run_batch times in a row so that timers
 * are still looked at every batch. Not once the processes run since the
 * scheduler last looked at the inbound rings have spent a reduction slice
 * (p->budget <= 0; hy__charge and hy_yield also zero it to have the rings
 * looked at now): then the scheduler looks at them before it runs anyone. */
static inline __attribute__((always_inline)) struct hy_proc *take_handoff(struct hy_shard *sh,
                                                                          struct hy_proc *p)
{
    struct hy_proc *next = sh->rq_head;
    if (!next || next == p || sh->handoffs >= sh->run_batch ||
        next->stack_mode != HY_STACK_GUARDED || next->exit_pending || p->budget <= 0 ||
        (!next->stack && !hy__stack_ready(sh, next)))
        return NULL;
    pop_handoff(sh, next, sh->handoffs);
    HY_FAULT_POINT(HY_FP_HANDOFF);
    if (sh->ndirty | sh->novf)
        hy__mesh_flush(sh);
    begin_run(sh, next, p->budget);
    return next;
}

HY__HOT struct hy_proc *hy__sched_take_handoff(struct hy_shard *sh, struct hy_proc *p)
{
    return take_handoff(sh, p);
}

/* hy__sched_switch_out's uncommon cases: a hand-over that must first map
 * the next one's stack or flush what was sent to other shards (or meets
 * the armed fault point), or no hand-over at all. */
static __attribute__((noinline)) void switch_out_slow(struct hy_shard *sh, struct hy_proc *p)
{
    struct hy_proc *next = take_handoff(sh, p);
    if (next) {
        hy__stack_switch_direct(sh, p, next, false);
        return;
    }
    /* back to the scheduler, which flushes first thing: what p sent to
     * other shards is published now, before the switch (a reply another
     * shard waits for leaves that much sooner), without the barrier, which
     * the scheduler's flush makes */
    if (sh->ndirty)
        hy__mesh_publish_staged(sh);
    hy__stack_switch_out(sh, p);
}

HY__HOT void hy__sched_switch_out(struct hy_proc *p)
{
    struct hy_shard *sh = p->shard;
    struct hy_proc *next = sh->rq_head;
    /* loaded once each: the stores below may alias them for the compiler */
    uint32_t handoffs = sh->handoffs;
    int32_t budget = p->budget;
    /* take_handoff's common case, with no call before the switch (so no
     * saved registers): the same conditions, plus a stack already there and
     * nothing to flush to other shards; anything else goes through
     * take_handoff. The hand-over fault point is there only: a process's
     * first run (no stack yet) always goes that way, and a fault in either
     * path is the runtime's by its address; a test of it here cost three
     * instructions a switch. A stack of its own (next->stack) tells a
     * guarded process: a compact one never has one (stack.c). */
    if (__builtin_expect(next && next != p && handoffs < sh->run_batch && !next->exit_pending &&
                             budget > 0 && next->stack && !(sh->ndirty | sh->novf),
                         1)) {
        pop_handoff(sh, next, handoffs);
        begin_run(sh, next, budget);
        switch_direct(sh, p, next);
        return;
    }
    switch_out_slow(sh, p);
}

HY__HOT void hy__charge(struct hy_proc *p)
{
    if (__builtin_expect(p->exit_pending && !p->defer_exit, 0))
        hy__proc_exit_current(p, p->exit_reason_pending);
    /* a flag check, not a drain: with an exit signal from another shard in
     * the rings, go through the scheduler, which drains them before it
     * resumes anyone (the signal may be for p) */
    if (__builtin_expect(--p->budget <= 0 || hy__mesh_sig_in(p->shard), 0)) {
        p->budget = 0;
        hy__sched_make_ready(p->shard, p);
        hy__sched_switch_out(p);
        if (p->exit_pending && !p->defer_exit)
            hy__proc_exit_current(p, p->exit_reason_pending);
    }
}

int hy_yield(void)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (hy__mesh_has_input(p->shard))
        p->budget = 0; /* a yield lets in what came from other shards */
    hy__sched_make_ready(p->shard, p);
    hy__sched_switch_out(p);
    if (p->exit_pending && !p->defer_exit)
        hy__proc_exit_current(p, p->exit_reason_pending);
    return 0;
}

/* Runs p (and whoever it hands over to); returns what is left of budget. */
static int32_t run_proc(struct hy_shard *sh, struct hy_proc *p, int32_t budget)
{
    /* a new batch of runs for the stall detector: run_seq, then handoffs
     * back to 0 (release: a watchdog that sees this 0, or a later count,
     * sees the new run_seq) */
    atomic_store_explicit(&sh->run_seq,
                          atomic_load_explicit(&sh->run_seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    __atomic_store_n(&sh->handoffs, 0, __ATOMIC_RELEASE);
    /* with an exit signal pending (a deferred one, or one that came before
     * a first run) it starts with a spent budget: the inline charges test
     * only the budget, and its next one goes to hy__charge, which acts on
     * the signal (a hand-over never goes to such a process) */
    begin_run(sh, p, p->exit_pending ? 0 : budget);
    sh->in_runtime = false;
    hy__stack_switch_in(sh, p);
    sh->in_runtime = true;
    /* whoever came back may not be p: processes hand over directly */
    p = sh->current;
    __atomic_store_n(&sh->current, NULL, __ATOMIC_RELAXED);
    int32_t left = p ? p->budget : 0;
    if (p && p->state == HY_P_DEAD) {
        if (sh->fault_pending) {
            sh->fault_pending = 0;
            hy__crash_log(sh, p, sh->fault_bt, sh->fault_nbt, sh->fault_overflow);
        }
        hy__proc_reap(sh, p);
    }
    return left;
}

static unsigned poll_hooks(struct hy_shard *sh)
{
    unsigned n = 0;
    for (struct hy_poll_hook *h = sh->hooks; h; h = h->next)
        n += h->poll(h->ctx);
    return n;
}

static uint64_t hooks_deadline(struct hy_shard *sh)
{
    uint64_t d = UINT64_MAX;
    for (struct hy_poll_hook *h = sh->hooks; h; h = h->next) {
        if (h->next_deadline_ns) {
            uint64_t x = h->next_deadline_ns(h->ctx);
            if (x < d)
                d = x;
        }
    }
    return d;
}

int hy_hook_add_poll(struct hy_poll_hook *hook)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (!hook || !hook->poll)
        return HY_EINVAL;
    hook->next = sh->hooks;
    sh->hooks = hook;
    if (hook->fd >= 0)
        sh->nhook_fds++;
    return 0;
}

int hy_hook_remove_poll(struct hy_poll_hook *hook)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    for (struct hy_poll_hook **pp = &sh->hooks; *pp; pp = &(*pp)->next) {
        if (*pp == hook) {
            *pp = hook->next;
            if (hook->fd >= 0)
                sh->nhook_fds--;
            return 0;
        }
    }
    return HY_ENOENT;
}

/* Runs up to run_batch ready processes, publishing what each sent as it
 * switches out; returns how many ran plus what the looks at the inbound
 * rings found. */
static unsigned run_ready(struct hy_shard *sh)
{
    unsigned work = 0, ran = 0;
    unsigned batch = hy__rt.cfg.run_batch;
    int32_t slice = (int32_t)hy__rt.cfg.reductions;
    struct hy_proc *p;
    while (ran < batch && (p = rq_pop(sh)) != NULL) {
        slice = run_proc(sh, p, slice);
        if (sh->ndirty | sh->novf)
            hy__mesh_flush(sh);
        /* the inbound rings once per reduction slice spent (and at once for
         * an exit signal): a busy shard still sees other shards promptly */
        if ((slice <= 0) | hy__mesh_sig_in(sh)) {
            slice = (int32_t)hy__rt.cfg.reductions;
            work += hy__mesh_poll(sh);
        }
        if (sh->reap_head)
            hy__reap_pending(sh);
        ran++;
    }
    return work + ran;
}

/* One scheduler turn; returns how much work it found. */
static unsigned turn(struct hy_shard *sh)
{
    unsigned work = run_ready(sh);
    hy__ret_flush(sh);
    if (sh->ndirty | sh->novf)
        hy__mesh_flush(sh);
    unsigned polled = hy__mesh_poll(sh);
    work += polled;
    if (polled)
        sh->xs_turn = 1; /* took in messages from other shards */
    /* what the rings just made ready runs now, not after the rest of the
     * turn: a message from another shard is answered within this turn */
    if (polled && sh->rq_head) {
        /* publish what the drain's handlers sent first (replies to other
         * shards must not wait behind a process that runs long) */
        if (sh->ndirty | sh->novf | (uint32_t)sh->ret_pending) {
            hy__ret_flush(sh);
            hy__mesh_flush(sh);
        }
        work += run_ready(sh);
        hy__ret_flush(sh);
    }
    sh->now = hy_now_ns();
    hy__timer_expire(sh);
    if (sh->reap_head) {
        hy__reap_pending(sh);
        work++;
    }
    hy__name_quiescent(sh);
    if (sh->hooks)
        work += poll_hooks(sh);
    /* submit this turn's requests, reap readiness: only when the peek at
     * the ring (or epoll's every-Nth busy turn) says there is something */
    if (sh->io && hy__io_due(sh->io, work + sh->rq_len))
        work += hy__io_poll(sh);
    if (sh->ndirty | sh->novf | (uint32_t)sh->ret_pending) {
        hy__ret_flush(sh);
        hy__mesh_flush(sh);
    }
    if (sh->xs_turn) {
        sh->xs_turn = 0;
        sh->xs_last = sh->now;
    }
    stat_set(&sh->st.runq_len, sh->rq_len);
    return work + sh->rq_len;
}

/* now: the clock read idle_sleep made (for a deadline other than
 * UINT64_MAX; unused otherwise). */
static void futex_sleep(struct hy_shard *sh, uint64_t deadline, uint64_t now)
{
    struct timespec ts, *tsp = NULL;
    if (deadline != UINT64_MAX) {
        uint64_t d = deadline > now ? deadline - now : 0;
        ts.tv_sec = (time_t)(d / 1000000000u);
        ts.tv_nsec = (long)(d % 1000000000u);
        tsp = &ts;
    }
    syscall(SYS_futex, &sh->sleeping, FUTEX_WAIT_PRIVATE, 1, tsp, NULL, 0);
}

/* Sleeps in ppoll on the hooks' descriptors, the socket poller's and the
 * shard's eventfd. */
static void poll_sleep(struct hy_shard *sh, uint64_t deadline, int io_fd)
{
    struct pollfd fds[2 + 32];
    nfds_t n = 0;
    fds[n].fd = sh->wake_fd;
    fds[n++].events = POLLIN;
    if (io_fd >= 0) {
        fds[n].fd = io_fd;
        fds[n++].events = POLLIN;
    }
    for (struct hy_poll_hook *h = sh->hooks; h && n < 34; h = h->next) {
        if (h->fd >= 0) {
            fds[n].fd = h->fd;
            fds[n++].events = POLLIN;
        }
    }
    struct timespec ts, *tsp = NULL;
    if (deadline != UINT64_MAX) {
        /* read again: the poller's pre-sleep step may have made calls */
        uint64_t now = hy_now_ns();
        uint64_t d = deadline > now ? deadline - now : 0;
        ts.tv_sec = (time_t)(d / 1000000000u);
        ts.tv_nsec = (long)(d % 1000000000u);
        tsp = &ts;
    }
    ppoll(fds, n, tsp, NULL);
    if (fds[0].revents & POLLIN) {
        uint64_t v;
        (void)!read(sh->wake_fd, &v, sizeof(v));
    }
    if (io_fd >= 0 && fds[1].revents) {
        hy__stat_add(&sh->st.io_wakeups, 1);
        ((struct hy__io_peek *)sh->io)->skip = 0; /* the next turn looks */
    }
}

/* Goes to sleep unless something arrived meanwhile. */
static void idle_sleep(struct hy_shard *sh)
{
    uint64_t deadline = hy__wheel_next_expiry(&sh->wheel);
    if (sh->hooks) {
        uint64_t h = hooks_deadline(sh);
        if (h < deadline)
            deadline = h;
    }
    /* no clock read without a deadline; with one, the futex sleep's
     * timeout is measured from this read too (what lies between is a few
     * loads and stores: the wake-up is not early, and late by less than
     * the timer wheel's 1 us tick) */
    uint64_t now = 0;
    if (deadline != UINT64_MAX) {
        now = hy_now_ns();
        if (deadline <= now)
            return;
    }
    /* sockets registered: sleep on the poller's descriptor too */
    int io_fd = hy__io_sleep_fd(sh);
    if (io_fd >= 0) {
        /* io_uring: whether it sleeps or finds completions already there,
         * the next turn peeks at the ring (idle turns skip 3 peeks of 4;
         * the peek reads memory): the turn after a wake-up reaps what woke
         * it instead of trying to sleep again first. epoll's look is a
         * system call: poll_sleep asks for it only when its descriptor
         * was readable. */
        struct hy__io_peek *pk = (struct hy__io_peek *)sh->io;
        if (pk->cq_head)
            pk->skip = 0;
        if (!hy__io_pre_sleep(sh))
            return;
    }
    /* seq_cst store, then re-check input: pairs with hy__wake_shard */
    atomic_store_explicit(&sh->sleep_kind, (sh->nhook_fds || io_fd >= 0) ? 1u : 0u,
                          memory_order_relaxed);
    /* a seq_cst read-modify-write: a full barrier (store-load), pairs with
     * hy__wake_shard (and ThreadSanitizer understands it, unlike a fence) */
    (void)atomic_exchange_explicit(&sh->sleeping, 1, memory_order_seq_cst);
    if (hy__mesh_has_input(sh) || atomic_load(&hy__rt.stop)) {
        atomic_store_explicit(&sh->sleeping, 0, memory_order_relaxed);
        return;
    }
    hy__stat_add(&sh->st.sleeps, 1);
    if (io_fd >= 0 && hy__io_sleep(sh, deadline))
        ; /* slept in the poller (io_uring: submit and wait in one call) */
    else if (sh->nhook_fds || io_fd >= 0)
        poll_sleep(sh, deadline, io_fd);
    else
        futex_sleep(sh, deadline, now);
    /* seq_cst: pairs with the watchdog's store of parked then its check */
    atomic_store_explicit(&sh->sleeping, 0, memory_order_seq_cst);
    if (hy__stall_parked())
        hy__stall_kick();
}

/* Pauses an idle spin between two scheduler turns makes at most: a turn
 * (clock read, timers, name quiescence, the rings, the poller's peek) is a
 * few hundred instructions, which a waiting shard ran back to back with one
 * pause between them; in between, only the inbound rings' published heads,
 * the foreign inbox and the stop flag are looked at, each a load of a line
 * that stays in this core's cache until a writer takes it. So a message is
 * seen within one pause of its publish instead of somewhere in a turn, and
 * a spinning shard leaves the core's shared resources (an SMT sibling's, or
 * the host's) to the work it waits for, as ring_raw_rtt's consumer does. */
#define IDLE_POLL_PAUSES 32
/* A timer due sooner than this after the turn's clock read gets the turns
 * back to back (one pause each), as before: the light poll reads no clock. */
#define IDLE_POLL_TIMER_NS 4000

/* True when anything a turn would take in arrived: a published ring entry,
 * a foreign message, an exit signal's flag, a stop request. */
static inline bool idle_input(const struct hy_shard *sh)
{
    return hy__mesh_input_hint(sh) || atomic_load_explicit(&hy__rt.stop, memory_order_relaxed);
}

/* True when the shard may wait in the light poll (now: the last turn's
 * clock read): no poll hooks or watched sockets (a NIC queue and the poller
 * are looked at only by the turn), and no timer due within
 * IDLE_POLL_TIMER_NS. */
static inline bool light_poll_ok(struct hy_shard *sh, uint64_t now)
{
    return !sh->hooks && !hy__io_active(sh) &&
           hy__wheel_next_expiry(&sh->wheel) > now + IDLE_POLL_TIMER_NS;
}

/* The light poll: up to IDLE_POLL_PAUSES pauses, returning as soon as
 * input arrived (looked at before the first pause). */
static inline void light_poll(struct hy_shard *sh)
{
    for (unsigned i = 0; i < IDLE_POLL_PAUSES && !idle_input(sh); i++)
        cpu_relax();
}

/* The idle spin between two turns (now: the last turn's clock read). A
 * shard that may not wait in the light poll keeps one pause per turn. */
static void idle_spin(struct hy_shard *sh, uint64_t now)
{
    if (!light_poll_ok(sh, now)) {
        cpu_relax();
        return;
    }
    light_poll(sh);
}

/* True when the socket poller has something for a turn: a completion, or
 * (COOP_TASKRUN) the kernel's flag that completions wait for this thread's
 * next system call. Memory reads only; false with epoll or no poller. */
static inline bool io_input_hint(const struct hy_shard *sh)
{
    const struct hy__io_peek *pk = (const struct hy__io_peek *)sh->io;
    return pk && pk->cq_head &&
           (__atomic_load_n(pk->cq_tail, __ATOMIC_ACQUIRE) != *pk->cq_head ||
            (__atomic_load_n(pk->kflags, __ATOMIC_RELAXED) & pk->kmask));
}

/* True when a shard this one published to since it last slept is at
 * work: neither asleep nor in the cross-shard spin itself (so the answer
 * it may owe can still come). */
static bool xs_partner_busy(const struct hy_shard *sh)
{
    uint64_t m = sh->xs_mask;
    while (m) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        m &= m - 1;
        unsigned last = i < 63 ? i + 1 : hy__rt.nshards;
        for (unsigned j = i; j < last; j++) {
            const struct hy_shard *t = hy__rt.shards[j];
            if (j != sh->id && !atomic_load_explicit(&t->sleeping, memory_order_relaxed) &&
                !atomic_load_explicit(&t->spinning, memory_order_relaxed))
                return true;
        }
    }
    return false;
}

/* Pauses between two clock reads (and yields) of the cross-shard spin. */
#define XSHARD_SPIN_PAUSES 16

/* The cross-shard spin (hy_config.xshard_spin_ns), for an idle shard about
 * to sleep (now: the last turn's clock read): while the last exchange with
 * another shard (sh->xs_last) is less than xshard_spin_ns old and a shard
 * it published to is at work, waits for input in a spin of pauses, looking
 * at the inbound rings, the stop flag and the poller's completion ring,
 * until that bound or the next timer. Every XSHARD_SPIN_PAUSES pauses it
 * yields the CPU (sched_yield): a thread waiting for this CPU (a client,
 * the kernel's work) runs then, as it would while the shard slept, and the
 * shard stays runnable, so the answer needs no wake-up (no eventfd write
 * by the sender, no switch into a sleeping thread). Without the yields the
 * spin took the CPU from the client and lost (docs/BENCHMARKS.md).
 * True: something arrived (the caller runs a turn); false: the caller
 * sleeps. Not for shards with poll hooks or watching sockets with epoll,
 * whose input only a turn or a system call sees. */
static bool xshard_spin(struct hy_shard *sh, uint64_t now)
{
    uint64_t end = sh->xs_last + sh->xshard_spin_ns;
    if (now >= end || sh->hooks)
        return false;
    struct hy__io_peek *pk = (struct hy__io_peek *)sh->io;
    if (pk && !pk->cq_head && hy__io_active(sh))
        return false;
    uint64_t next = hy__wheel_next_expiry(&sh->wheel);
    if (next < end)
        end = next;
    if (!xs_partner_busy(sh))
        return false;
    hy__stat_add(&sh->st.xshard_spins, 1);
    atomic_store_explicit(&sh->spinning, 1, memory_order_relaxed);
    bool got = false;
    for (;;) {
        for (unsigned i = 0; i < XSHARD_SPIN_PAUSES; i++) {
            if (idle_input(sh) || io_input_hint(sh)) {
                if (pk)
                    pk->skip = 0; /* the next turn peeks at the poller */
                got = true;
                hy__stat_add(&sh->st.xshard_spin_hits, 1);
                goto out;
            }
            cpu_relax();
        }
        sched_yield();
        if (hy_now_ns() >= end || !xs_partner_busy(sh))
            break;
    }
out:
    atomic_store_explicit(&sh->spinning, 0, memory_order_relaxed);
    return got;
}

void hy__sched_loop(struct hy_shard *sh)
{
    uint64_t idle_since = 0;
    uint64_t last = hy_now_ns();
    bool busy_poll = hy__rt.cfg.idle_mode == HY_IDLE_BUSY_POLL;
    uint64_t spin = hy__rt.cfg.idle_spin_ns;
    /* the socket spin policy (see docs/ARCHITECTURE.md, "Idle"): a shard
     * with sockets whose last idle period was ended by socket readiness
     * does not spin, it sleeps at once (readiness wakes it); one whose idle
     * period was ended by other shards, timers or hooks spins as set */
    uint64_t io_seen = 0;
    bool io_last = false;
    sh->run_batch = hy__rt.cfg.run_batch;
    sh->in_runtime = true;
    /* set here, not at the shard's start: the shutdown's flushes (after
     * this loop) wake at once */
    sh->wake_defer_ns = hy__rt.cfg.wake_defer_ns;
    sh->xshard_spin_ns = hy__rt.cfg.xshard_spin_ns;
    while (!atomic_load_explicit(&hy__rt.stop, memory_order_relaxed)) {
        unsigned work = turn(sh);
        uint64_t now = sh->now;
        /* wake-ups put off (wake_defer_ns): made before this shard waits
         * in any way (nothing ready: an idle turn, the light poll, a
         * sleep), or once the oldest has waited its time */
        if (__builtin_expect(sh->nowed, 0) &&
            (!sh->rq_len || now - sh->owed_since >= sh->wake_defer_ns))
            hy__mesh_wake_owed(sh);
        if (work) {
            hy__stat_add(&sh->st.busy_ns, now - last);
            hy__stats_turn(&sh->st, now - last);
            last = now;
            if (idle_since) { /* the turn that ended an idle period */
                uint64_t ioe = atomic_load_explicit(&sh->st.io_events, memory_order_relaxed);
                io_last = ioe != io_seen;
            }
            idle_since = 0;
            /* nothing left to run (a process that blocked waiting for a
             * reply from another shard): wait for that input in the light
             * poll, not in two idle turns first (each a clock read, the
             * timers, the name table's counter: a reply that lands during
             * one waits for its end) */
            if (!sh->rq_len && spin && !busy_poll && !sh->novf && light_poll_ok(sh, now))
                light_poll(sh);
            continue;
        }
        hy__stat_add(&sh->st.idle_ns, now - last);
        last = now;
        if (busy_poll)
            continue;
        if (sh->novf) {
            /* Entries wait behind a full ring: the consumer does not wake
             * producers, so never sleep now; let it run if it shares our CPU. */
            sched_yield();
            continue;
        }
        /* with no spin window (sockets woke the last idle period, or
         * --spin-ns 0) the first idle turn goes to sleep: a second turn
         * before it only found the same nothing (~350 instructions and a
         * clock read a request at one connection) */
        uint64_t window = io_last && hy__io_active(sh) ? 0 : spin;
        if (!idle_since) {
            idle_since = now;
            io_seen = atomic_load_explicit(&sh->st.io_events, memory_order_relaxed);
            if (window) {
                idle_spin(sh, now);
                continue;
            }
        } else if (now - idle_since < window) {
            idle_spin(sh, now);
            continue;
        }
        /* an exchange with another shard under way: its answer may come
         * before a sleep and a wake-up would be over */
        if (sh->xshard_spin_ns && xshard_spin(sh, now))
            continue;
        sh->xs_mask = 0;
        hy__stack_trim(sh); /* off the hot path: only when about to sleep */
        idle_sleep(sh);
        uint64_t after = hy_now_ns();
        hy__stat_add(&sh->st.idle_ns, after - last);
        last = after;
        idle_since = after;
        /* reap what woke it now (io_uring: the peek idle_sleep asked for;
         * epoll: a ppoll that saw the poller's descriptor readable), so
         * the next turn runs the processes it made ready instead of only
         * finding them: two turns a request at one connection, not three
         * (its time counts as the next turn's) */
        if (sh->io && hy__io_due(sh->io, 0))
            hy__io_poll(sh);
    }
    sh->wake_defer_ns = 0;
    hy__mesh_wake_owed(sh);
}
