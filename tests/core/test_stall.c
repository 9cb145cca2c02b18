/* Tests of core/stall.c: a process that holds its shard (burning CPU without
 * a runtime call) past the threshold is reported once per stall, counted in
 * stats.stalls and logged with its pid; a busy process that yields is not;
 * past stall_abort_multiple the node aborts (checked in a forked child).
 *
 * The spinners burn real CPU time (the detector reads the shard thread's CPU
 * clock) and are bounded: they spin until another shard has seen the report,
 * with a 5 s cap. Process bodies record failures with HY_CHECK. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hy_config.h"
#include "shard_internal.h"
#include "test_support.h"

#define THRESHOLD_NS (20ull * 1000 * 1000)
#define CAP_NS (5ull * 1000 * 1000 * 1000)

static uint64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- log capture ---------------------------------------------------------------- */

#define MAX_LINES 16

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[MAX_LINES][512];
static int log_n;

static _Atomic int bt_named; /* backtrace lines that named the staller */
static _Atomic int bt_lines;
static _Atomic int bt_reports; /* backtraces logged or given up ("no backtrace") */

static void capture(enum hy_log_level level, const char *line, void *ctx)
{
    (void)ctx;
    if (level > HY_LOG_WARNING || !strstr(line, "stall"))
        return;
    if (strstr(line, "stall:   #")) {
        atomic_fetch_add(&bt_lines, 1);
        if (strstr(line, "staller+0x") && strstr(line, "test_stall.c:"))
            atomic_fetch_add(&bt_named, 1);
        return;
    }
    if (strstr(line, "stall: backtrace of")) {
        atomic_fetch_add(&bt_reports, 1);
        return;
    }
    if (strstr(line, "stall: no backtrace"))
        atomic_fetch_add(&bt_reports, 1); /* and kept as a line: the check sees it */
    pthread_mutex_lock(&log_lock);
    if (log_n < MAX_LINES)
        snprintf(log_lines[log_n], sizeof(log_lines[0]), "%s", line);
    log_n++;
    pthread_mutex_unlock(&log_lock);
}

static void capture_start(void)
{
    pthread_mutex_lock(&log_lock);
    log_n = 0;
    pthread_mutex_unlock(&log_lock);
    atomic_store(&bt_lines, 0);
    atomic_store(&bt_named, 0);
    atomic_store(&bt_reports, 0);
    hy_log_set_sink(capture, NULL);
}

/* ---- spinners -------------------------------------------------------------------- */

struct spin {
    _Atomic int seen;       /* set by the observer once it saw the report */
    _Atomic int done;
    uint64_t extra_cpu_ns;  /* CPU time to keep spinning after `seen` */
    unsigned yield_every_us; /* 0: never yield (a stall); else cooperative */
    uint64_t cpu_total_ns;  /* cooperative: how long to keep busy */
};

/* Burns CPU without a runtime call until seen (5 s cap), then for
 * extra_cpu_ns more of its own CPU time: all one stall. */
static void staller(void *arg)
{
    struct spin *s = arg;
    uint64_t cap = clock_ns(CLOCK_MONOTONIC) + CAP_NS;
    /* mostly in this frame, not in the clock (the C library keeps no frame
     * pointers: a sample taken there would skip this function) */
    while (!atomic_load_explicit(&s->seen, memory_order_relaxed) &&
           clock_ns(CLOCK_MONOTONIC) < cap)
        for (volatile unsigned k = 0; k < 200000; k++)
            ;
    uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    while (clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0 < s->extra_cpu_ns &&
           clock_ns(CLOCK_MONOTONIC) < cap)
        ;
    atomic_store(&s->done, 1);
}

/* Busy for cpu_total_ns of CPU time, but calls hy_yield() every
 * yield_every_us: never holds the shard long. */
static void cooperative(void *arg)
{
    struct spin *s = arg;
    uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t cap = clock_ns(CLOCK_MONOTONIC) + CAP_NS;
    while (clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0 < s->cpu_total_ns &&
           clock_ns(CLOCK_MONOTONIC) < cap) {
        uint64_t slice = clock_ns(CLOCK_MONOTONIC) + s->yield_every_us * 1000ull;
        while (clock_ns(CLOCK_MONOTONIC) < slice)
            ;
        hy_yield();
    }
    atomic_store(&s->done, 1);
}

struct stalls_at {
    unsigned shard;
    uint64_t n;
};

static bool stalls_reach(void *arg)
{
    struct stalls_at *w = arg;
    struct hy_stats st;
    return hy_stats_get(w->shard, &st) == 0 && st.stalls >= w->n;
}

static bool spin_done(void *arg)
{
    return atomic_load(&((struct spin *)arg)->done) != 0;
}

/* The watchdog has taken (or given up) the backtrace of the n-th stall: it
 * counts a stall before it signals the shard for the backtrace, so the
 * count alone does not say the sample has been taken. */
static bool backtraces_reach(void *arg)
{
    return atomic_load(&bt_reports) >= *(int *)arg;
}

static uint64_t stalls_of(unsigned shard)
{
    struct hy_stats st;
    hy_stats_get(shard, &st);
    return st.stalls;
}

/* Spawns a staller on `shard`, waits (from the caller's shard) until the
 * stall is counted and its backtrace taken (until then the staller spins in
 * its own frame, which the backtrace must name: after `seen` it spins in
 * the clock, which a frame-pointer walk from the C library can skip), lets
 * it spin on for 4 more thresholds, and returns the staller's pid. */
static hy_pid one_stall(unsigned shard, uint64_t expect_stalls, uint64_t alive,
                        uint64_t *seen_after)
{
    static struct spin s;
    memset(&s, 0, sizeof(s));
    s.extra_cpu_ns = 4 * THRESHOLD_NS;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = (int)shard;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn_opt(staller, &s, &o, &pid), 0);
    struct stalls_at w = {shard, expect_stalls};
    HY_CHECK(hy_test_wait_until(stalls_reach, &w, 5000));
    int nbt = (int)expect_stalls;
    HY_CHECK(hy_test_wait_until(backtraces_reach, &nbt, 5000));
    atomic_store(&s.seen, 1);
    HY_CHECK(hy_test_wait_until(spin_done, &s, 10000));
    HY_CHECK(hy_test_quiesce(alive, 5000));
    /* the staller has gone: the count cannot change for it any more */
    *seen_after = stalls_of(shard);
    return pid;
}

struct stall_ctx {
    unsigned spin_shard;
    hy_pid pid[2];
    uint64_t after[2];
    uint64_t coop_stalls;
    bool coop_done;
};

static void stall_main(void *arg)
{
    struct stall_ctx *c = arg;
    HY_CHECK(hy_shard_id() != (int)c->spin_shard);
    struct hy_stats t;
    hy_stats_total(&t);
    uint64_t alive = t.procs_alive; /* the test's own processes */
    /* a busy process that yields often is not a stall */
    static struct spin coop;
    memset(&coop, 0, sizeof(coop));
    coop.yield_every_us = 1000;
    coop.cpu_total_ns = 5 * THRESHOLD_NS;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = (int)c->spin_shard;
    HY_CHECK_EQ(hy_spawn_opt(cooperative, &coop, &o, NULL), 0);
    c->coop_done = hy_test_wait_until(spin_done, &coop, 10000);
    HY_CHECK(hy_test_quiesce(alive, 5000));
    c->coop_stalls = stalls_of(c->spin_shard);
    /* two stalls, each reported once however long it lasts */
    c->pid[0] = one_stall(c->spin_shard, 1, alive, &c->after[0]);
    c->pid[1] = one_stall(c->spin_shard, 2, alive, &c->after[1]);
}

static void check_stall_results(const struct stall_ctx *c)
{
    assert_true(c->coop_done);
    assert_int_equal(c->coop_stalls, 0);
    assert_int_equal(c->after[0], 1);
    assert_int_equal(c->after[1], 2);
    /* one warning per stall, naming the process and the shard */
    pthread_mutex_lock(&log_lock);
    int n = log_n;
    char lines[MAX_LINES][512];
    memcpy(lines, log_lines, sizeof(lines));
    pthread_mutex_unlock(&log_lock);
    if (n != 2)
        fail_msg("%d stall lines, not 2: %s | %s | %s | %s", n, lines[0], lines[1],
                 n > 2 ? lines[2] : "", n > 3 ? lines[3] : "");
    /* each report comes with the stalled code's backtrace, named (libdw):
     * function, file and line of the spinning process */
    assert_true(atomic_load(&bt_lines) >= 2);
#if HY_HAVE_LIBDW
    assert_true(atomic_load(&bt_named) >= 1);
#endif
    for (int i = 0; i < 2; i++) {
        char pid[HY_PID_STRLEN], shard[32];
        hy_pid_format(c->pid[i], pid, sizeof(pid));
        snprintf(shard, sizeof(shard), "shard %u", c->spin_shard);
        if (!strstr(lines[i], pid) || !strstr(lines[i], shard))
            fail_msg("stall line %d does not name %s on %s: %s", i, pid, shard, lines[i]);
    }
}

static void stall_config(struct hy_config *cfg)
{
    hy_config_init(cfg);
    cfg->nshards = 2;
    cfg->stall_threshold_ns = THRESHOLD_NS;
    cfg->stall_abort_multiple = 0;
}

static void test_stall_reported_once_per_stall(void **state)
{
    (void)state;
    struct hy_config cfg;
    stall_config(&cfg);
    struct stall_ctx c;
    memset(&c, 0, sizeof(c));
    c.spin_shard = 1; /* observed from shard 0 */
    capture_start();
    hy_test_run_cfg(&cfg, stall_main, &c);
    hy_log_set_sink(NULL, NULL);
    check_stall_results(&c);
}

/* ---- the stall is on shard 0, the thread hy_run() was called on ------------------ */

static struct stall_ctx caller_ctx;

static void on_shard1(void *arg)
{
    hy_pid *parent = arg;
    stall_main(&caller_ctx);
    hy_send(*parent, 1, NULL, 0);
}

static void caller_shard_main(void *arg)
{
    (void)arg;
    hy_pid me = hy_self();
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.arg_size = sizeof(me);
    HY_CHECK_EQ(hy_spawn_opt(on_shard1, &me, &o, NULL), 0);
    /* wait without holding shard 0: the stallers run here */
    struct hy_msg *m;
    if (hy_recv_tag(1, &m, 60ll * 1000000000) == 0)
        hy_msg_free(m);
    else
        HY_CHECK(!"shard 1's body never finished");
}

static void test_stall_on_the_hy_run_thread(void **state)
{
    (void)state;
    struct hy_config cfg;
    stall_config(&cfg);
    memset(&caller_ctx, 0, sizeof(caller_ctx));
    caller_ctx.spin_shard = 0; /* observed from shard 1 */
    capture_start();
    hy_test_run_cfg(&cfg, caller_shard_main, NULL);
    hy_log_set_sink(NULL, NULL);
    check_stall_results(&caller_ctx);
}

/* ---- abort past the multiple ---------------------------------------------------------- */

/* Stalls until the node aborts it. Bounded by its own CPU time (1 s, 33 x
 * the 30 ms the abort needs), with a wall-clock bound far beyond it: the
 * watchdog reports the stall, then takes and names its backtrace (~130 ms
 * of its CPU in an ASan build: the C library's debug information is read
 * at the first frame there) before its next look can abort, and on a
 * loaded machine that CPU comes at the scheduler's pace. A 5 s wall-clock
 * bound ended the stall first under load: reported at ~12 ms, never
 * aborted. */
static void endless_staller(void *arg)
{
    (void)arg;
    uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t cap = clock_ns(CLOCK_MONOTONIC) + 4 * CAP_NS;
    while (clock_ns(CLOCK_MONOTONIC) < cap &&
           clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0 < 1000000000ull)
        ;
}

static void abort_child_main(void *arg)
{
    (void)arg;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_spawn_opt(endless_staller, NULL, &o, NULL);
    struct hy_msg *m;
    hy_recv_tag(1, &m, 30ll * 1000000000); /* the node aborts meanwhile */
}

/* Runs a node in a forked child: a fresh runtime of 2 shards with a 10 ms
 * threshold and the given abort multiple, whose main is child_main, its
 * stderr (the log) kept in out (its tail). Returns the child's wait
 * status; skips the test when fork fails. */
static int run_forked_node(unsigned abort_multiple, hy_proc_fn child_main, char *out, size_t cap)
{
    assert_false(hy_running()); /* fork only with no runtime threads around */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        skip();
    }
    if (child == 0) {
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        hy_log_set_sink(NULL, NULL);
        struct hy_config cfg;
        hy_config_init(&cfg);
        cfg.nshards = 2;
        cfg.stall_threshold_ns = 10ull * 1000 * 1000;
        cfg.stall_abort_multiple = abort_multiple;
        _exit(hy_run(&cfg, child_main, NULL) == 0 ? 0 : 1);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fds[0], out + len, cap - 1 - len);
        if (r > 0) {
            len += (size_t)r;
            if (len == cap - 1)
                len = 0; /* keep the tail */
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    return status;
}

static void test_stall_aborts_past_the_multiple(void **state)
{
    (void)state;
    char out[8192];
    /* the process stalls for good: the node aborts */
    int status = run_forked_node(3, abort_child_main, out, sizeof(out));
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("child did not abort (status %#x); its stderr:\n%s", status, out);
    /* the report, then the diagnostic, both naming the shard */
    assert_non_null(strstr(out, "stall: process <"));
    assert_non_null(strstr(out, "held shard 1"));
    assert_non_null(strstr(out, "aborting"));
}

/* ---- a stalled shard's thread gone while the watchdog waits for its backtrace ---- */

/* Stalls on shard 1 with the watchdog's signal blocked (its backtrace
 * never comes) until the stall is counted, then tells main and ends: the
 * node stops and shard 1's thread exits while the watchdog still waits
 * for the backtrace. The watchdog's next look at that thread's CPU clock
 * then fails; it read 0 there, took 0 minus the run's start as the time
 * held (~2^64 ns) and aborted the node. */
static void gone_staller(void *arg)
{
    hy_pid main_pid = *(const hy_pid *)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, HY__STALL_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* left blocked: the thread ends */
    uint64_t cap = clock_ns(CLOCK_MONOTONIC) + 30ull * 1000000000;
    struct hy_stats st = {0};
    while (clock_ns(CLOCK_MONOTONIC) < cap && (hy_stats_get(1, &st) != 0 || st.stalls == 0))
        ;
    hy_send(main_pid, st.stalls ? 1 : 2, NULL, 0);
}

static void gone_child_main(void *arg)
{
    (void)arg;
    hy_pid me = hy_self();
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.arg_size = sizeof(me);
    hy_spawn_opt(gone_staller, &me, &o, NULL);
    struct hy_msg *m;
    if (hy_recv(&m, 60ll * 1000000000) != 0)
        _exit(3);
    if (m->tag != 1)
        _exit(4); /* never counted */
    hy_msg_free(m);
    /* returning stops the node at once, the watchdog still waiting */
}

static void test_stall_shard_gone_during_its_backtrace(void **state)
{
    (void)state;
    char out[8192];
    /* 100 x 10 ms: far above what the staller holds (it ends once counted,
     * at the watchdog's first look past the threshold: 50 ms at its slow tick) */
    int status = run_forked_node(100, gone_child_main, out, sizeof(out));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child ended with status %#x; its stderr:\n%s", status, out);
    assert_non_null(strstr(out, "stall: process <"));
    assert_non_null(strstr(out, "held shard 1"));
    assert_non_null(strstr(out, "stall: no backtrace from shard 1"));
    assert_null(strstr(out, "aborting"));
}

/* ---- a process blocked in a system call ------------------------------------------ */

/* The blocked process waits in poll() on a pipe that the log sink writes
 * to once it has seen the report and its backtrace (the watchdog logs them
 * after counting it):
 * the call lasts until the report, whenever the watchdog gets the CPU on a
 * loaded machine, and not past it. (A fixed sleep of 10 thresholds lost
 * the race when the watchdog ran late: the run was over, or ending, before
 * its second look.) Bounded: 60 s (naming the frames reads the debug
 * information at its first use: seconds under ASan on a loaded machine). */
static int blocked_pipe[2] = {-1, -1};
static int blocked_frames; /* first frames of a backtrace logged (under log_lock) */

static void blocked_capture(enum hy_log_level level, const char *line, void *ctx)
{
    capture(level, line, ctx);
    /* the report, then its backtrace: woken once the first frame (where it
     * waits: the C library's poll) or the lack of a backtrace is logged.
     * (poll keeps no frame pointer: how far the walk goes past it depends on
     * the build; under ASan its interceptor ends it.) */
    bool frame = strstr(line, "stall:   #0 ") != NULL;
    if (frame) {
        pthread_mutex_lock(&log_lock);
        blocked_frames++;
        pthread_mutex_unlock(&log_lock);
    }
    if ((frame || strstr(line, "no backtrace")) && blocked_pipe[1] >= 0)
        (void)!write(blocked_pipe[1], "r", 1);
}

struct blocked_ctx {
    hy_pid pid;
    uint64_t stalls;
    bool woken; /* by the report, not by the deadline */
};

/* Waits in the kernel without returning to the scheduler (a blocking read
 * or accept would look the same) until the report: no CPU used. */
static void blocked_main(void *arg)
{
    struct blocked_ctx *c = arg;
    c->pid = hy_self();
    uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + 60ull * 1000000000u;
    for (;;) {
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= deadline)
            break;
        struct pollfd pf = {.fd = blocked_pipe[0], .events = POLLIN};
        int r = poll(&pf, 1, (int)((deadline - now) / 1000000u) + 1);
        if (r == 1) {
            c->woken = true;
            break;
        }
        if (r < 0 && errno != EINTR) /* the report's signal interrupts it */
            break;
    }
    struct hy_stats st;
    hy_stats_total(&st);
    c->stalls = st.stalls;
}

static void test_stall_reports_a_blocking_syscall_by_wall_clock(void **state)
{
    (void)state;
    struct hy_config cfg;
    stall_config(&cfg);
    cfg.nshards = 1;
    struct blocked_ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(pipe(blocked_pipe), 0);
    capture_start();
    blocked_frames = 0;
    hy_log_set_sink(blocked_capture, NULL);
    hy_test_run_cfg(&cfg, blocked_main, &c);
    hy_log_set_sink(NULL, NULL);
    close(blocked_pipe[0]);
    close(blocked_pipe[1]);
    blocked_pipe[0] = blocked_pipe[1] = -1;
    pthread_mutex_lock(&log_lock);
    int n = log_n;
    pthread_mutex_unlock(&log_lock);
    if (!c.woken)
        for (int i = 0; i < n; i++)
            print_error("log line %d: %s\n", i, log_lines[i]);
    assert_true(c.woken);
    assert_int_equal(c.stalls, 1);
    assert_true(n >= 1);
    char pid[HY_PID_STRLEN];
    hy_pid_format(c.pid, pid, sizeof(pid));
    if (!strstr(log_lines[0], pid) || !strstr(log_lines[0], "wall-clock") ||
        !strstr(log_lines[0], "system call"))
        fail_msg("not a blocked-call report naming %s: %s", pid, log_lines[0]);
    /* then where it waits: a backtrace */
    assert_int_equal(atomic_load(&bt_reports), 1);
    pthread_mutex_lock(&log_lock);
    int frames = blocked_frames;
    pthread_mutex_unlock(&log_lock);
    assert_int_equal(frames, 1);
}

/* ---- the watchdog sleeps while every shard sleeps ---------------------------------- */

static void idle_main(void *arg)
{
    uint64_t *cpu = arg;
    hy_sleep_ns(10 * 1000000ull); /* let the other shard fall asleep */
    uint64_t t0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    hy_sleep_ns(500 * 1000000ull);
    *cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - t0;
}

static void test_stall_watchdog_sleeps_when_shards_sleep(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.stall_threshold_ns = 4 * 1000000ull; /* the watchdog would wake 1000/s */
    uint64_t cpu = 0;
    hy_test_run_cfg(&cfg, idle_main, &cpu);
    /* 500 ms with both shards asleep on a timer: a few wake-ups only */
    assert_true(cpu < 5 * 1000000ull);
}

/* ---- the watchdog wakes rarely while the shards are busy ------------------------- */

struct busy_ctx {
    uint64_t wakes;
    uint64_t wall_ns;
    uint64_t stalls;
    bool done;
};

/* Shard 1 runs a process that yields every 200 us (thousands of short runs
 * a second); shard 0 sleeps and wakes every millisecond meanwhile. */
static void busy_main(void *arg)
{
    struct busy_ctx *c = arg;
    static struct spin coop;
    memset(&coop, 0, sizeof(coop));
    coop.yield_every_us = 200;
    coop.cpu_total_ns = 400 * 1000000ull;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    uint64_t w0 = hy__stall_wakes();
    uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
    HY_CHECK_EQ(hy_spawn_opt(cooperative, &coop, &o, NULL), 0);
    uint64_t cap = t0 + 2 * CAP_NS;
    while (!spin_done(&coop) && clock_ns(CLOCK_MONOTONIC) < cap)
        hy_sleep_ns(1000000ull);
    c->done = spin_done(&coop);
    c->wall_ns = clock_ns(CLOCK_MONOTONIC) - t0;
    c->wakes = hy__stall_wakes() - w0;
    struct hy_stats st;
    hy_stats_total(&st);
    c->stalls = st.stalls;
}

static void test_stall_watchdog_wakes_rarely_while_shards_are_busy(void **state)
{
    (void)state;
    struct hy_config cfg;
    stall_config(&cfg); /* threshold 20 ms: a tick every 5 ms would be 200/s */
    struct busy_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_cfg(&cfg, busy_main, &c);
    assert_true(c.done);
    assert_int_equal(c.stalls, 0);
    /* at most 20 ticks a second, plus the odd kick */
    uint64_t bound = c.wall_ns * 20 / 1000000000u + 4;
    if (c.wakes > bound)
        fail_msg("%llu watchdog wakes in %.0f ms (bound %llu)", (unsigned long long)c.wakes,
                 (double)c.wall_ns / 1e6, (unsigned long long)bound);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stall_reported_once_per_stall),
        cmocka_unit_test(test_stall_on_the_hy_run_thread),
        cmocka_unit_test(test_stall_aborts_past_the_multiple),
        cmocka_unit_test(test_stall_shard_gone_during_its_backtrace),
        cmocka_unit_test(test_stall_reports_a_blocking_syscall_by_wall_clock),
        cmocka_unit_test(test_stall_watchdog_sleeps_when_shards_sleep),
        cmocka_unit_test(test_stall_watchdog_wakes_rarely_while_shards_are_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
