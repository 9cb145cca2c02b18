/* The stall detector: a watchdog thread samples each shard. A process that
 * has held its shard for longer than the threshold of the shard thread's
 * CPU time is reported once, with a backtrace taken on the shard itself
 * (signal), and past stall_abort_multiple times the threshold the node
 * aborts so that its OS supervisor restarts it. A process that has not
 * returned to the scheduler for longer than the threshold of wall-clock
 * time while using little CPU is blocked in a system call (a blocking
 * accept, read, sleep): it is reported once too, with its backtrace (the
 * signal interrupts the call, which SA_RESTART resumes), but never aborts
 * the node: it may come back. The shard pays only a relaxed store per
 * switch; the watchdog reads the thread's CPU clock. When every shard
 * sleeps the watchdog sleeps too, until a shard wakes (hy__stall_kick). */
#define _GNU_SOURCE
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "shard_internal.h"

static pthread_t watchdog;
static bool watchdog_on;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static bool quit;

#define STALL_SIGNAL (SIGRTMIN + 7)

uint64_t hy__thread_cpu_ns(clockid_t clk)
{
    struct timespec ts;
    if (clock_gettime(clk, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_stall_signal(int sig)
{
    (void)sig;
    void *frames[64];
    int n = backtrace(frames, 64);
    static const char hdr[] = "hydra: backtrace of the stalled process:\n";
    (void)!write(2, hdr, sizeof(hdr) - 1);
    backtrace_symbols_fd(frames, n, 2);
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

/* Called with lock held: waits without a timeout while every shard sleeps.
 * seq_cst: pairs with the shard's store of sleeping = 0 then load of
 * parked in hy__stall_shard_awake. */
static void park_if_idle(void)
{
    if (atomic_load(&hy__rt.state) != 2 || !all_asleep())
        return;
    atomic_store(&parked, 1);
    if (all_asleep() && !quit)
        pthread_cond_wait(&cond, &lock);
    atomic_store(&parked, 0);
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
    uint64_t period = thr / 4 < 1000000 ? 1000000 : thr / 4;
    pthread_mutex_lock(&lock);
    while (!quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + period;
        ts.tv_sec = (time_t)(t / 1000000000u);
        ts.tv_nsec = (long)(t % 1000000000u);
        pthread_cond_timedwait(&cond, &lock, &ts);
        if (quit || atomic_load(&hy__rt.state) != 2)
            continue;
        park_if_idle();
        if (quit)
            continue;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wall = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        for (unsigned i = 0; i < hy__rt.nshards; i++) {
            struct hy_shard *sh = hy__rt.shards[i];
            uint64_t seq = atomic_load_explicit(&sh->run_seq, memory_order_acquire);
            struct hy_proc *p = atomic_load_explicit(&sh->running, memory_order_relaxed);
            uint64_t cpu = hy__thread_cpu_ns(sh->cpu_clock);
            if (seq != s[i].seq || !p) {
                s[i].seq = seq;
                s[i].cpu_at_seq = cpu;
                s[i].wall_at_seq = wall;
                s[i].reported = false;
                continue;
            }
            uint64_t held = cpu - s[i].cpu_at_seq;
            uint64_t wall_held = wall - s[i].wall_at_seq;
            if (wall_held >= thr && held < wall_held / 2 && !s[i].reported &&
                thread_blocked(sh->tid)) {
                /* off the CPU most of the time: blocked in a system call */
                s[i].reported = true;
                char pid[HY_PID_STRLEN];
                hy_pid_format(p->pid, pid, sizeof(pid));
                atomic_store_explicit(&sh->st.stalls,
                                      atomic_load_explicit(&sh->st.stalls, memory_order_relaxed) + 1,
                                      memory_order_relaxed);
                hy_log(HY_LOG_WARNING,
                       "stall: process %s has held shard %u for %.1f ms of wall-clock time "
                       "(%.1f ms of CPU): blocked in a system call",
                       pid, i, (double)wall_held / 1e6, (double)held / 1e6);
                pthread_kill(sh->thread, STALL_SIGNAL);
                continue;
            }
            if (held >= thr && !s[i].reported) {
                s[i].reported = true;
                char pid[HY_PID_STRLEN];
                hy_pid_format(p->pid, pid, sizeof(pid));
                atomic_store_explicit(&sh->st.stalls,
                                      atomic_load_explicit(&sh->st.stalls, memory_order_relaxed) + 1,
                                      memory_order_relaxed);
                hy_log(HY_LOG_WARNING,
                       "stall: process %s has held shard %u for %.1f ms of CPU time "
                       "without a runtime call",
                       pid, i, (double)held / 1e6);
                pthread_kill(sh->thread, STALL_SIGNAL);
            }
            unsigned mult = hy__rt.cfg.stall_abort_multiple;
            if (mult && held >= thr * mult) {
                char pid[HY_PID_STRLEN];
                hy_pid_format(p->pid, pid, sizeof(pid));
                char msg[160];
                snprintf(msg, sizeof(msg),
                         "process %s held shard %u for %.1f ms (>= %u x the stall threshold); "
                         "aborting so that the node is restarted",
                         pid, i, (double)held / 1e6, mult);
                hy__fatal(msg);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int hy__stall_start(void)
{
    watchdog_on = false;
    if (!hy__rt.cfg.stall_threshold_ns)
        return 0;
    /* warm up backtrace(): its first call loads libgcc, which is not safe
     * from a signal handler */
    void *frames[4];
    backtrace(frames, 4);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stall_signal;
    sigemptyset(&sa.sa_mask);
    /* on the shard's alternate stack: the stalled process may be near its
     * guard page */
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
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
