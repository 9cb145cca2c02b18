/* The stall detector: a watchdog thread samples each shard. A process that
 * has held its shard for longer than the threshold of the shard thread's
 * CPU time is reported once, with a backtrace taken on the shard itself
 * (signal), and past stall_abort_multiple times the threshold the node
 * aborts so that its OS supervisor restarts it. A process that has not
 * returned to the scheduler for longer than the threshold of wall-clock
 * time while using little CPU is blocked in a system call (a blocking
 * accept, read, sleep): it is reported once too, with its backtrace (the
 * signal interrupts the call, which SA_RESTART resumes), but never aborts
 * the node: it may come back. The shard stores nothing for it at a switch
 * beyond what the switch does anyway (the current process, the count of
 * hand-overs); the watchdog reads the thread's CPU clock.
 *
 * Wake rate: while every run it sees is new since its last look (a busy
 * shard switches often), the watchdog ticks slowly (max(threshold, 50 ms):
 * at most 20 wakes a second); once a run has spanned a tick and used at
 * least threshold/4 of CPU meanwhile it ticks at threshold/4 until that run
 * ends or is reported (a run that spans ticks because the OS preempted its
 * shard thread does not speed it up). A stall that gets the
 * CPU is thus reported at most 2 x slow after its run began (the tick that
 * first sees it, the next that finds it still there). When every
 * shard has slept through PARK_TICKS ticks in a row the watchdog sleeps too,
 * until a shard wakes (hy__stall_kick): a shard that sleeps and wakes often
 * does not make it park and be kicked at every wake. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "sanitize_internal.h"
#include "shard_internal.h"
#include "symbol_internal.h"

static pthread_t watchdog;
static bool watchdog_on;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static bool quit;

#define STALL_SIGNAL HY__STALL_SIGNAL

/* The slow tick's floor, and the ticks every shard must have slept through
 * before the watchdog parks. */
#define SLOW_TICK_MIN_NS (50ull * 1000 * 1000)
#define PARK_TICKS 3

/* Watchdog wake-ups (timer or kick), for tests and profiles. */
static _Atomic uint64_t wakes;

uint64_t hy__stall_wakes(void)
{
    return atomic_load_explicit(&wakes, memory_order_relaxed);
}

uint64_t hy__thread_cpu_ns(clockid_t clk)
{
    struct timespec ts;
    if (clock_gettime(clk, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The CPU time clk's thread has used since its reading since, in *held.
 * False when it cannot be said: the read failed (the thread has exited,
 * e.g. its runtime stopping while the watchdog looked, and its clock is
 * gone) or went below since (another thread's clock). Without this check
 * a failed read (0) minus since came out as ~2^64 ns, and the watchdog
 * aborted the node for a "stall" of 18,446,744,073,655 ms. */
static bool cpu_held(clockid_t clk, uint64_t since, uint64_t *held)
{
    uint64_t cpu = hy__thread_cpu_ns(clk);
    if (cpu == 0 || cpu < since)
        return false;
    *held = cpu - since;
    return true;
}

/* On the stalled shard's thread: records the interrupted code's backtrace
 * (frame pointers: async-signal-safe) for the watchdog to name and log. */
/* stall_bt_ready: 0 idle; 1 asked (watchdog, release); 3 being written (the
 * handler took 1, acquire); 2 written (handler, release). The watchdog
 * withdraws an unanswered request by 1 -> 0, so a late handler writes
 * nothing; stall_bt is written only in state 3. */
static void on_stall_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    int saved_errno = errno;
    struct hy_shard *sh = hy__tls_shard;
    unsigned asked = 1;
    if (sh && atomic_compare_exchange_strong_explicit(&sh->stall_bt_ready, &asked, 3,
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed)) {
        unsigned n = hy__crash_backtrace(sh, uc, sh->stall_bt, HY_BT_MAX);
        atomic_store_explicit(&sh->stall_nbt, n, memory_order_relaxed);
        atomic_store_explicit(&sh->stall_bt_ready, 2, memory_order_release);
    }
    errno = saved_errno;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* How long the watchdog waits for the stalled shard's handler. The handler
 * runs as soon as the shard's thread next gets a CPU, which on a loaded
 * machine may be well after the signal: the request is withdrawn only once
 * the thread has run for BT_WAIT_CPU_NS since the signal without answering
 * (and BT_WAIT_MIN_NS have passed), or after BT_WAIT_MAX_NS in any case
 * (a thread that never gets a CPU must not hold up the watchdog for good).
 * A fixed 200 ms wall-clock wait withdrew requests whose thread had simply
 * not been scheduled yet, so that a stall got "no backtrace". */
#define BT_WAIT_MIN_NS (200ull * 1000 * 1000)
#define BT_WAIT_CPU_NS (20ull * 1000 * 1000)
#define BT_WAIT_MAX_NS (2000ull * 1000 * 1000)

/* Watchdog: waits (bounded) for the stalled shard's handler, then names the
 * frames and logs them. cpu_at_signal: the shard thread's CPU clock when
 * the signal was sent. */
static void log_backtrace(struct hy_shard *sh, unsigned shard, clockid_t clk,
                          uint64_t cpu_at_signal)
{
    uint64_t t0 = mono_ns();
    while (atomic_load_explicit(&sh->stall_bt_ready, memory_order_acquire) != 2) {
        uint64_t waited = mono_ns() - t0;
        uint64_t ran = 0;
        if (waited >= BT_WAIT_MAX_NS ||
            (waited >= BT_WAIT_MIN_NS &&
             /* a thread that is gone answers nothing */
             (!cpu_held(clk, cpu_at_signal, &ran) || ran >= BT_WAIT_CPU_NS)))
            break;
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    unsigned one = 1;
    if (atomic_compare_exchange_strong(&sh->stall_bt_ready, &one, 0)) {
        /* withdrawn: a late handler finds 0 and writes nothing */
        hy_log(HY_LOG_WARNING, "stall: no backtrace from shard %u", shard);
        return;
    }
    while (atomic_load_explicit(&sh->stall_bt_ready, memory_order_acquire) != 2)
        ; /* the handler is writing: a few hundred instructions */
    unsigned n = atomic_load_explicit(&sh->stall_nbt, memory_order_relaxed);
    uintptr_t bt[HY_BT_MAX];
    memcpy(bt, sh->stall_bt, n * sizeof(uintptr_t));
    atomic_store_explicit(&sh->stall_bt_ready, 0, memory_order_relaxed);
    hy_log(HY_LOG_WARNING, "stall: backtrace of the process holding shard %u:", shard);
    for (unsigned i = 0; i < n; i++) {
        char sym[200];
        hy__symbolize(bt[i], i > 0, sym, sizeof(sym));
        hy_log(HY_LOG_WARNING, "stall:   #%u 0x%llx %s", i, (unsigned long long)bt[i], sym);
    }
}

/* Watchdog: signals the shard's thread for the backtrace of the process
 * holding it and logs it (log_backtrace). */
static void ask_backtrace(struct hy_shard *sh, unsigned shard, clockid_t clk)
{
    atomic_store_explicit(&sh->stall_bt_ready, 1, memory_order_release);
    uint64_t cpu_at_signal = hy__thread_cpu_ns(clk);
    if (pthread_kill(sh->thread, STALL_SIGNAL) == 0)
        log_backtrace(sh, shard, clk, cpu_at_signal);
    else
        atomic_store_explicit(&sh->stall_bt_ready, 0, memory_order_relaxed);
}

/* A run's identity: the shard's batch of runs (run_seq, bumped by the
 * scheduler) and the direct hand-overs within it (handoffs, back to 0 at
 * each batch): a switch-in changes one of them, and nothing else is stored
 * for the watchdog at a switch. handoffs is read first (acquire, pairing
 * with the shard's release stores of it): a count of the new batch comes
 * with that batch's run_seq. */
static uint64_t run_id(struct hy_shard *sh)
{
    uint32_t h = __atomic_load_n(&sh->handoffs, __ATOMIC_ACQUIRE);
    uint64_t seq = atomic_load_explicit(&sh->run_seq, memory_order_acquire);
    return (seq << 32) ^ h;
}

/* A seqlock's read: the record's pid may be rewritten by a spawn into it
 * (clear_record, spawn) while this thread reads it; running_pid uses the
 * value only when the run id, read before and after, shows that no such
 * write can have happened in between. So this one load is told to
 * ThreadSanitizer as the benign race it is (the spawn path keeps its plain
 * stores), and is volatile so that it is one real read between the two
 * checks. */
#ifdef HY_TSAN
__attribute__((noinline, no_sanitize_thread))
#endif
static hy_pid pid_of_record(const struct hy_proc *p)
{
    const volatile uint64_t *w = (const volatile uint64_t *)(const void *)&p->pid;
    _Static_assert(sizeof(hy_pid) == 2 * sizeof(uint64_t), "a pid is two words");
    hy_pid pid;
    pid.hi = w[0];
    pid.lo = w[1];
    return pid;
}

/* The pid of the process that began run id on sh; HY_PID_NONE if another
 * run has begun since. The record is read only while that run still holds
 * the shard (checked after the read): the shard writes a record's pid only
 * when it spawns into it, never while it runs. */
static hy_pid running_pid(struct hy_shard *sh, uint64_t id)
{
    struct hy_proc *p = __atomic_load_n(&sh->current, __ATOMIC_ACQUIRE);
    if (!p || run_id(sh) != id)
        return HY_PID_NONE;
    hy_pid pid = pid_of_record(p);
#ifdef HY_TSAN
    /* ThreadSanitizer does not model fences (GCC's -Wtsan says so) and the
     * racing read above is exempt from it; on x86 loads are not reordered
     * with loads, so keeping the compiler from moving them is enough. */
    __asm__ volatile("" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the read before the check */
#endif
    if (run_id(sh) != id || __atomic_load_n(&sh->current, __ATOMIC_ACQUIRE) != p)
        return HY_PID_NONE;
    return pid;
}

struct sample {
    uint64_t seq;
    uint64_t cpu_at_seq;
    uint64_t wall_at_seq;
    bool reported;
};

/* True when the thread is asleep in the kernel (state S or D), not merely
 * waiting for a CPU (R) on a loaded machine. */
static bool thread_blocked(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *e = strrchr(buf, ')'); /* the name may hold spaces */
    return e && e[1] == ' ' && (e[2] == 'S' || e[2] == 'D');
}

/* 1 while the watchdog waits for a shard to wake (every shard asleep). */
static _Atomic int parked;

void hy__stall_kick(void)
{
    pthread_mutex_lock(&lock);
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

static bool all_asleep(void)
{
    for (unsigned i = 0; i < hy__rt.nshards; i++)
        if (!atomic_load(&hy__rt.shards[i]->sleeping))
            return false;
    return hy__rt.nshards > 0;
}

/* Called with lock held: waits without a timeout while every shard sleeps;
 * true if it waited.
 * seq_cst: pairs with the shard's store of sleeping = 0 then load of
 * parked in hy__stall_shard_awake. */
static bool park_if_idle(void)
{
    if (atomic_load(&hy__rt.state) != 2 || !all_asleep())
        return false;
    bool waited = false;
    atomic_store(&parked, 1);
    if (all_asleep() && !quit) {
        pthread_cond_wait(&cond, &lock);
        waited = true;
    }
    atomic_store(&parked, 0);
    return waited;
}

bool hy__stall_parked(void)
{
    return atomic_load(&parked) != 0;
}

static void *watch(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "hydra-stall");
    static struct sample s[HY_MAX_SHARDS];
    memset(s, 0, sizeof(s));
    uint64_t thr = hy__rt.cfg.stall_threshold_ns;
    uint64_t fast = thr / 4 < 1000000 ? 1000000 : thr / 4;
    uint64_t slow = thr < SLOW_TICK_MIN_NS ? SLOW_TICK_MIN_NS : thr;
    uint64_t period = slow;
    unsigned asleep_ticks = 0;
    pthread_mutex_lock(&lock);
    while (!quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + period;
        ts.tv_sec = (time_t)(t / 1000000000u);
        ts.tv_nsec = (long)(t % 1000000000u);
        pthread_cond_timedwait(&cond, &lock, &ts);
        atomic_fetch_add_explicit(&wakes, 1, memory_order_relaxed);
        if (quit || atomic_load(&hy__rt.state) != 2)
            continue;
        asleep_ticks = all_asleep() ? asleep_ticks + 1 : 0;
        if (asleep_ticks >= PARK_TICKS) {
            bool waited = park_if_idle();
            asleep_ticks = 0;
            period = slow;
            if (waited)
                atomic_fetch_add_explicit(&wakes, 1, memory_order_relaxed);
            if (quit)
                continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wall = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        bool suspect = false; /* a run not yet reported has spanned a tick */
        for (unsigned i = 0; i < hy__rt.nshards; i++) {
            struct hy_shard *sh = hy__rt.shards[i];
            uint64_t seq = run_id(sh);
            struct hy_proc *p = __atomic_load_n(&sh->current, __ATOMIC_ACQUIRE);
            clockid_t clk = __atomic_load_n(&sh->cpu_clock, __ATOMIC_ACQUIRE);
            if (clk == 0 || clk == CLOCK_THREAD_CPUTIME_ID)
                continue; /* not running yet, or no clock of its own: would read ours */
            uint64_t cpu = hy__thread_cpu_ns(clk);
            if (cpu == 0)
                continue; /* its thread is gone (the runtime stopping): nothing to judge */
            /* a new run, or a clock below the sample's (another thread's) */
            if (seq != s[i].seq || !p || cpu < s[i].cpu_at_seq) {
                s[i].seq = seq;
                s[i].cpu_at_seq = cpu;
                s[i].wall_at_seq = wall;
                s[i].reported = false;
                continue;
            }
            uint64_t held = cpu - s[i].cpu_at_seq;
            uint64_t wall_held = wall - s[i].wall_at_seq;
            /* tick fast only for a run that has used CPU meanwhile: a shard
             * thread the OS preempted (a loaded machine) spans ticks too,
             * and would keep the watchdog at its fast rate for nothing */
            if (!s[i].reported && held >= fast)
                suspect = true;
            if (wall_held >= thr && held < wall_held / 2 && !s[i].reported &&
                thread_blocked(sh->tid)) {
                /* off the CPU most of the time: blocked in a system call */
                s[i].reported = true;
                char pid[HY_PID_STRLEN];
                hy_pid_format(running_pid(sh, seq), pid, sizeof(pid));
                atomic_store_explicit(&sh->st.stalls,
                                      atomic_load_explicit(&sh->st.stalls, memory_order_relaxed) + 1,
                                      memory_order_relaxed);
                hy_log(HY_LOG_WARNING,
                       "stall: process %s has held shard %u for %.1f ms of wall-clock time "
                       "(%.1f ms of CPU): blocked in a system call",
                       pid, i, (double)wall_held / 1e6, (double)held / 1e6);
                /* the signal interrupts the call (SA_RESTART resumes it); its
                 * handler records where the process waits */
                ask_backtrace(sh, i, clk);
                continue;
            }
            if (held >= thr && !s[i].reported) {
                s[i].reported = true;
                char pid[HY_PID_STRLEN];
                hy_pid_format(running_pid(sh, seq), pid, sizeof(pid));
                atomic_store_explicit(&sh->st.stalls,
                                      atomic_load_explicit(&sh->st.stalls, memory_order_relaxed) + 1,
                                      memory_order_relaxed);
                hy_log(HY_LOG_WARNING,
                       "stall: process %s has held shard %u for %.1f ms of CPU time "
                       "without a runtime call",
                       pid, i, (double)held / 1e6);
                ask_backtrace(sh, i, clk);
                /* naming the frames can take a while (debug information
                 * read at the first use): judge the abort on a fresh look */
                uint64_t now_held;
                if (run_id(sh) == seq && cpu_held(clk, s[i].cpu_at_seq, &now_held))
                    held = now_held;
            }
            unsigned mult = hy__rt.cfg.stall_abort_multiple;
            if (mult && held >= thr * mult) {
                char pid[HY_PID_STRLEN];
                hy_pid_format(running_pid(sh, seq), pid, sizeof(pid));
                char msg[160 + HY_PID_STRLEN];
                snprintf(msg, sizeof(msg),
                         "process %s held shard %u for %.1f ms (>= %u x the stall threshold); "
                         "aborting so that the node is restarted",
                         pid, i, (double)held / 1e6, mult);
                hy__fatal(msg);
            }
        }
        period = suspect ? fast : slow;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int hy__stall_start(void)
{
    watchdog_on = false;
    if (!hy__rt.cfg.stall_threshold_ns)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_stall_signal;
    sigemptyset(&sa.sa_mask);
    /* on the shard's alternate stack: the stalled process may be near its
     * guard page */
    sa.sa_flags = SA_RESTART | SA_ONSTACK | SA_SIGINFO;
    sigaction(STALL_SIGNAL, &sa, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &ca);
    pthread_condattr_destroy(&ca);
    quit = false;
    if (pthread_create(&watchdog, NULL, watch, NULL) != 0)
        return HY_ENOMEM;
    watchdog_on = true;
    return 0;
}

void hy__stall_stop(void)
{
    if (!watchdog_on)
        return;
    pthread_mutex_lock(&lock);
    quit = true;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    pthread_join(watchdog, NULL);
    watchdog_on = false;
}
