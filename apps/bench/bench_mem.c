/* hydra-bench: proc_memory and proc_memory_compact (and, from the same
 * repetitions, proc_spawn_1m and proc_spawn_1m_compact: the time to spawn
 * the processes and have each reach its receive, in ns per process).
 *
 * Memory is not a timing: no warm-up, and every repetition runs in a fresh
 * process (this program re-executed with the hidden argument --mem-child),
 * so that the delta is what a program pays on first touch. The child reads
 * VmRSS + VmPTE before the runtime starts, spawns N processes that block in
 * receive (half on each of two shards, as the peer's two schedulers), waits
 * until every one of them has run, reads them again and prints
 *     mem <rss+pte/proc> <rss/proc> <pte/proc> <ns/proc>
 * The parent prints the medians of BENCH_REPS children.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* Maps of the kernel's vm.max_map_count that one guarded process needs (its
 * stack and its guard page) where the kernel cannot install guard pages
 * without a mapping of their own (before Linux 6.13): the runtime then
 * falls back to mprotect. */
#define MAPS_PER_GUARDED_PROC 2

static struct {
    uint64_t ran;        /* atomic: idle processes that have run */
    int spawn_err;       /* atomic: first spawn error, 0 if none */
    uint64_t spawned[2]; /* processes spawned by the spawner of each shard */
} mem;

struct mem_status {
    long rss_kb;
    long pte_kb;
};

static int read_status(struct mem_status *st)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");

    if (!f)
        return -1;
    st->rss_kb = st->pte_kb = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            st->rss_kb = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "VmPTE:", 6) == 0)
            st->pte_kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return st->rss_kb < 0 || st->pte_kb < 0 ? -1 : 0;
}

static long max_map_count(void)
{
    long v = -1;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");

    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* Says whether vm.max_map_count can explain a failure, and what to do. */
static void note_map_count(uint64_t n, enum hy_stack_mode mode)
{
    long have = max_map_count();
    unsigned long long need = (unsigned long long)n * MAPS_PER_GUARDED_PROC + 65536;

    if (mode != HY_STACK_GUARDED || have < 0)
        return;
    if ((unsigned long long)have < need)
        bench_note("vm.max_map_count=%ld is too low for %llu guarded processes (~%d maps "
                   "each): raise it, e.g. sysctl -w vm.max_map_count=%llu (scripts/run and "
                   "scripts/bench do, as root)",
                   have, (unsigned long long)n, MAPS_PER_GUARDED_PROC, need);
}

/* receive stop -> ok (the runtime never sends it: the child exits first). */
static void idle_proc(void *arg)
{
    struct hy_msg *m;

    (void)arg;
    __atomic_add_fetch(&mem.ran, 1, __ATOMIC_RELAXED);
    if (hy_recv_tag(BENCH_TAG_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

static void spawn_idle(uint64_t n, unsigned slot)
{
    for (uint64_t i = 0; i < n; i++) {
        int rc = hy_spawn(idle_proc, NULL, NULL);

        if (rc < 0) {
            int none = 0;

            __atomic_compare_exchange_n(&mem.spawn_err, &none, rc, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
            break;
        }
        mem.spawned[slot]++;
    }
}

static void spawner_proc(void *arg)
{
    spawn_idle(*(const uint64_t *)arg, 1);
}

struct mem_child {
    uint64_t n;
    enum hy_stack_mode mode;
    struct mem_status before;
    unsigned nshards;
    int failed;
};

static void mem_main(void *arg)
{
    struct mem_child *c = arg;
    uint64_t here = c->n, there = 0, last = 0;
    uint64_t t0, t1, last_change;
    struct mem_status after;
    hy_pid spawner;

    if (c->nshards > 1) {
        there = c->n / 2;
        here = c->n - there;
    }
    t0 = hy_now_ns();
    if (there && bench_spawn(spawner_proc, &there, sizeof(there), 1, &spawner) < 0) {
        c->failed = 1;
        return;
    }
    spawn_idle(here, 0);

    /* Wait until every process has run into its receive; give up when no
     * more run for 5 s (a spawn failed, or stacks ran out). */
    last_change = hy_now_ns();
    for (;;) {
        uint64_t ran = __atomic_load_n(&mem.ran, __ATOMIC_RELAXED);

        if (ran >= c->n)
            break;
        if (ran != last) {
            last = ran;
            last_change = hy_now_ns();
        } else if (hy_now_ns() - last_change > 5000000000ULL) {
            int err = __atomic_load_n(&mem.spawn_err, __ATOMIC_RELAXED);

            if (err)
                bench_note("spawn failed after %llu of %llu processes: %s (%s)",
                           (unsigned long long)(mem.spawned[0] + mem.spawned[1]),
                           (unsigned long long)c->n, hy_err_name(err), hy_strerror(err));
            bench_note("only %llu of %llu processes ran within 5 s of the last one",
                       (unsigned long long)ran, (unsigned long long)c->n);
            note_map_count(c->n, c->mode);
            c->failed = 1;
            return;
        }
        hy_sleep_ns(1000000);
    }
    t1 = hy_now_ns();
    if (read_status(&after) < 0) {
        bench_note("cannot read VmRSS/VmPTE from /proc/self/status");
        c->failed = 1;
        return;
    }
    double n = (double)c->n;
    double rss = (double)(after.rss_kb - c->before.rss_kb) * 1024.0 / n;
    double pte = (double)(after.pte_kb - c->before.pte_kb) * 1024.0 / n;
    printf("mem %.3f %.3f %.3f %.3f\n", rss + pte, rss, pte, (double)(t1 - t0) / n);
    fflush(stdout);
    /* Measured. Like the peer's halt(), end here without tearing the
     * processes down one by one: the OS takes the memory back. */
    _exit(0);
}

int bench_proc_memory_child(const struct bench_env *env, enum hy_stack_mode mode)
{
    struct mem_child c = {.n = bench_scaled(env, 1000000), .mode = mode};
    struct hy_config cfg;
    int rc;

    /* The baseline, before the runtime exists. */
    if (read_status(&c.before) < 0) {
        bench_note("cannot read VmRSS/VmPTE from /proc/self/status");
        return 1;
    }
    c.nshards = env->ncpus >= 2 ? 2 : 1;
    bench_config(&cfg, env, c.nshards, mode);
    bench_describe_runtime(mode == HY_STACK_COMPACT ? "proc_memory_compact" : "proc_memory", &cfg);
    rc = hy_run(&cfg, mem_main, &c);
    if (rc < 0) {
        bench_note("hy_run failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return 1;
    }
    /* mem_main ends the process when it measured. */
    return 1;
}

/* Runs one child; fills vals[0..3] from its "mem" line. Comment lines are
 * printed when echo is set (the first repetition) or the child failed. */
static int run_child(const char *exe, enum hy_stack_mode mode, int echo, double vals[4])
{
    char *out = NULL, line[1024];
    size_t outlen = 0;
    int fds[2], status, got = 0;
    pid_t pid;
    FILE *f;

    if (pipe(fds) < 0) {
        bench_note("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        bench_note("fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(exe, exe, "--mem-child", mode == HY_STACK_COMPACT ? "compact" : "guarded",
              (char *)NULL);
        printf("# exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    f = fdopen(fds[0], "r");
    FILE *mem_out = open_memstream(&out, &outlen);
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "mem %lf %lf %lf %lf", &vals[0], &vals[1], &vals[2], &vals[3]) == 4)
            got = 1;
        else if (mem_out)
            fputs(line, mem_out);
    }
    if (f)
        fclose(f);
    if (mem_out)
        fclose(mem_out);
    waitpid(pid, &status, 0);
    int ok = got && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if ((echo || !ok) && out) {
        /* Keep the output strict: a stray line becomes a comment. */
        char *save = NULL;

        for (char *s = strtok_r(out, "\n", &save); s; s = strtok_r(NULL, "\n", &save))
            printf("%s%s\n", s[0] == '#' ? "" : "# ", s);
    }
    free(out);
    if (!ok) {
        if (WIFSIGNALED(status))
            bench_note("child killed by signal %d", WTERMSIG(status));
        return -1;
    }
    return 0;
}

int bench_proc_memory_run(const struct bench *b, const struct bench_env *env)
{
    double total[BENCH_REPS_MAX], rss[BENCH_REPS_MAX], pte[BENCH_REPS_MAX], spawn[BENCH_REPS_MAX];
    uint64_t n = bench_scaled(env, 1000000);
    char exe[4096];
    ssize_t len;

    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0) {
        bench_fail("readlink /proc/self/exe: %s", strerror(errno));
        return 1;
    }
    exe[len] = '\0';
    bench_note("each repetition: a fresh process spawns %llu processes that block in receive "
               "(half on each shard), waits until all have run; value = (VmRSS + VmPTE) "
               "delta / %llu, baseline taken before the runtime starts",
               (unsigned long long)n, (unsigned long long)n);
    note_map_count(n, b->stack_mode);
    for (int r = 0; r < BENCH_REPS; r++) {
        double v[4];

        if (run_child(exe, b->stack_mode, r == 0, v) < 0) {
            bench_fail("repetition %d failed", r + 1);
            return 1;
        }
        total[r] = v[0];
        rss[r] = v[1];
        pte[r] = v[2];
        spawn[r] = v[3];
    }
    bench_note("VmRSS delta alone: median %.0f bytes/proc; VmPTE delta alone: median %.0f "
               "bytes/proc",
               bench_median(rss, BENCH_REPS), bench_median(pte, BENCH_REPS));
    /* The same repetitions time the spawning: proc_spawn_1m (guarded) and
     * proc_spawn_1m_compact, as the peer's proc_memory prints
     * bench=proc_spawn_1m. */
    struct bench spawn_row = {.unit = "ns/proc", .decimals = 0};
    bench_report(&spawn_row,
                 b->stack_mode == HY_STACK_COMPACT ? "proc_spawn_1m_compact" : "proc_spawn_1m",
                 spawn, BENCH_REPS);
    bench_report(b, b->name, total, BENCH_REPS);
    return 0;
}
