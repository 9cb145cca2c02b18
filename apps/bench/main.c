/* hydra-bench: Hydra's benchmarks, the same workloads as the Erlang/OTP peer
 * (../shared/peers/erlang/peerbench.erl) plus the floors they are held
 * against.
 *
 *     hydra-bench                 run every benchmark
 *     hydra-bench NAME...         run the ones named
 *     hydra-bench --list          print the names
 *     hydra-bench --console NAME  run with the node console on and scraped
 *                                 once a second (its cost on the figures)
 *     SCALE=0.1 hydra-bench       multiply every count by SCALE
 *     MC_SERVER=127.0.0.1:11211 hydra-bench memcache
 *                                 closed-loop client of a memcached-compatible
 *                                 server (MC_* settings: bench_memcache.c)
 *
 * Output: one "bench=<name> value=<number> unit=<unit>" line per benchmark;
 * every other line starts with '#'. Exit status 1 if a benchmark failed,
 * 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hy_config.h"
#include "console.h"

#include "bench.h"

/* The table of benchmarks, in the order "run all" runs them: each floor
 * just before the figures it bounds. To add one: a row here, its functions
 * in a bench_*.c file, their prototypes in bench.h. */
static const struct bench benches[] = {
    {.name = "ctx_floor", .unit = "ns/switch", .decimals = 2, .run = bench_ctx_floor_run},
    {.name = "ctx_switch",
     .unit = "ns/switch",
     .decimals = 2,
     .nshards = 1,
     .describe = bench_ctx_switch_describe,
     .rep = bench_ctx_switch_rep},
    {.name = "spawn_exit",
     .unit = "ns/spawn",
     .decimals = 1,
     .nshards = 1,
     .describe = bench_spawn_exit_describe,
     .rep = bench_spawn_exit_rep},
    {.name = "proc_memory",
     .unit = "bytes/proc",
     .decimals = 0,
     .stack_mode = HY_STACK_GUARDED,
     .run = bench_proc_memory_run},
    {.name = "proc_memory_compact",
     .unit = "bytes/proc",
     .decimals = 0,
     .stack_mode = HY_STACK_COMPACT,
     .run = bench_proc_memory_run},
    {.name = "pingpong_local",
     .unit = "ns/msg",
     .decimals = 1,
     .nshards = 1,
     .describe = bench_pingpong_local_describe,
     .rep = bench_pingpong_local_rep},
    {.name = "ring",
     .unit = "ns/hop",
     .decimals = 1,
     .nshards = 1,
     .describe = bench_ring_describe,
     .rep = bench_ring_rep},
    {.name = "ring_raw_rtt", .unit = "ns/rtt", .decimals = 1, .run = bench_ring_raw_rtt_run},
    {.name = "pingpong_cross",
     .unit = "ns/rtt",
     .decimals = 1,
     .nshards = 2,
     .describe = bench_pingpong_cross_describe,
     .rep = bench_pingpong_cross_rep},
    {.name = "ring_raw", .unit = "Mmsg/s", .decimals = 3, .run = bench_ring_raw_run},
    {.name = "throughput_cross",
     .unit = "Mmsg/s",
     .decimals = 3,
     .nshards = 2,
     .describe = bench_throughput_cross_describe,
     .rep = bench_throughput_cross_rep},
    {.name = "genserver_call",
     .unit = "ns/call",
     .decimals = 1,
     .nshards = 1,
     .describe = bench_genserver_call_describe,
     .rep = bench_genserver_call_rep},
    {.name = "genserver_call_cross",
     .unit = "ns/call",
     .decimals = 1,
     .nshards = 2,
     .describe = bench_genserver_call_cross_describe,
     .rep = bench_genserver_call_cross_rep},
    {.name = "supervisor_restart",
     .unit = "us/restart",
     .decimals = 2,
     .nshards = 2,
     .describe = bench_supervisor_restart_describe,
     .rep = bench_supervisor_restart_rep},
    {.name = "supervisor_restart_long",
     .unit = "us/restart",
     .decimals = 2,
     .nshards = 2,
     .describe = bench_supervisor_restart_long_describe,
     .rep = bench_supervisor_restart_long_rep},
    {.name = "kill_down",
     .unit = "ns/kill",
     .decimals = 1,
     .nshards = 1,
     .describe = bench_kill_down_describe,
     .rep = bench_kill_down_rep},
    {.name = "kill_down_cross",
     .unit = "ns/kill",
     .decimals = 1,
     .nshards = 2,
     .describe = bench_kill_down_cross_describe,
     .rep = bench_kill_down_cross_rep},
    {.name = "link_propagation",
     .unit = "ns/proc",
     .decimals = 1,
     .nshards = 1,
     .describe = bench_link_propagation_describe,
     .rep = bench_link_propagation_rep},
    {.name = "link_propagation_cross",
     .unit = "ns/proc",
     .decimals = 1,
     .nshards = 2,
     .describe = bench_link_propagation_cross_describe,
     .rep = bench_link_propagation_cross_rep},
    {.name = "hydra_pingpong", .unit = "Mrt/s", .decimals = 3, .run = bench_hydra_pingpong_run},
    {.name = "udp_raw_rtt", .unit = "us/rtt", .decimals = 2, .run = bench_udp_raw_rtt_run},
    {.name = "dist_rtt_udp", .unit = "us/rtt", .decimals = 2, .run = bench_dist_rtt_udp_run},
    {.name = "dist_throughput_udp",
     .unit = "Mmsg/s",
     .decimals = 3,
     .run = bench_dist_throughput_udp_run},
    {.name = "memif_raw_rtt", .unit = "us/rtt", .decimals = 2, .run = bench_memif_raw_rtt_run},
    {.name = "dist_rtt", .unit = "us/rtt", .decimals = 2, .run = bench_dist_rtt_run},
    {.name = "dist_rtt_busy", .unit = "us/rtt", .decimals = 2, .run = bench_dist_rtt_busy_run},
    {.name = "dist_throughput", .unit = "Mmsg/s", .decimals = 3, .run = bench_dist_throughput_run},
    {.name = "memcache", .unit = "ops/s", .decimals = 0, .run = bench_memcache_run},
};

#define NBENCHES (sizeof(benches) / sizeof(benches[0]))

int64_t bench_timeout_ns = 60000000000LL;
int bench_reps = BENCH_REPS_MAX;

static cpu_set_t startup_affinity;
static int fail_flag;            /* atomic: set by the first bench_fail() */
static const char *current_name; /* the benchmark running, for messages */

/* ---- helpers ------------------------------------------------------------ */

uint64_t bench_scaled(const struct bench_env *env, uint64_t base)
{
    double v = round((double)base * env->scale);
    return v < 1.0 ? 1 : (uint64_t)v;
}

uint32_t *bench_rtt_pct_alloc(uint64_t n)
{
    const char *e = getenv("HYDRA_BENCH_RTT_PCT");
    return e && strcmp(e, "1") == 0 ? calloc(n, sizeof(uint32_t)) : NULL;
}

static int rtt_pct_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void bench_rtt_pct_print(const char *row, int rep, uint32_t *ns, uint64_t n)
{
    if (!ns || !n)
        return;
    qsort(ns, n, sizeof(*ns), rtt_pct_cmp);
    fprintf(stdout, "# %s rep %d: p1 %.3f p10 %.3f p25 %.3f p50 %.3f us\n", row, rep,
            ns[n / 100] / 1e3, ns[n / 10] / 1e3, ns[n / 4] / 1e3, ns[n / 2] / 1e3);
    fflush(stdout);
}

void bench_note(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One write per line, so lines of two shard threads do not interleave. */
    printf("# %s\n", line);
    fflush(stdout);
}

void bench_fail(const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (__atomic_exchange_n(&fail_flag, 1, __ATOMIC_ACQ_REL) == 0)
        bench_note("%s: %s", current_name ? current_name : "hydra-bench", line);
}

bool bench_failed(void)
{
    return __atomic_load_n(&fail_flag, __ATOMIC_ACQUIRE) != 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *vals, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(vals, n, sizeof(*vals), cmp_double);
    return n % 2 ? vals[n / 2] : (vals[n / 2 - 1] + vals[n / 2]) / 2.0;
}

static const char *bench_mode;

void bench_set_mode(const char *mode)
{
    bench_mode = mode;
}

void bench_report(const struct bench *b, const char *name, double *vals, size_t n)
{
    char list[512];
    size_t off = 0;

    for (size_t i = 0; i < n && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%.*f", i ? " " : "", b->decimals,
                                vals[i]);
    bench_note("%s reps: [%s] %s", name, list, b->unit);
    printf("bench=%s value=%.*f unit=%s%s%s\n", name, b->decimals, bench_median(vals, n), b->unit,
           bench_mode ? " mode=" : "", bench_mode ? bench_mode : "");
    fflush(stdout);
}

void bench_config(struct hy_config *cfg, const struct bench_env *env, unsigned nshards,
                  enum hy_stack_mode stack_mode)
{
    hy_config_init(cfg);
    cfg->nshards = nshards;
    if (nshards > 0 && nshards <= env->ncpus)
        cfg->cpus = env->cpus;
    cfg->stack_mode = stack_mode;
}

static const char *idle_mode_name(enum hy_idle_mode m)
{
    return m == HY_IDLE_BUSY_POLL ? "busy_poll" : "spin_then_sleep";
}

void bench_describe_runtime(const char *name, const struct hy_config *cfg)
{
    char cpus[256] = "";
    size_t off = 0;

    if (cfg->cpus) {
        for (unsigned i = 0; i < cfg->nshards && off < sizeof(cpus); i++)
            off += (size_t)snprintf(cpus + off, sizeof(cpus) - off, "%s%d", i ? " " : "",
                                    cfg->cpus[i]);
    } else {
        snprintf(cpus, sizeof(cpus), "runtime's choice");
    }
    bench_note("%s: hydra %s, shards=%u cpus=[%s] pin=%s idle=%s spin_window=%llu ns "
               "stack_mode=%s",
               name, HY_VERSION, cfg->nshards, cpus, cfg->pin ? "yes" : "no",
               idle_mode_name(cfg->idle_mode), (unsigned long long)cfg->idle_spin_ns,
               cfg->stack_mode == HY_STACK_COMPACT ? "compact" : "guarded");
}

void bench_restore_affinity(void)
{
    pthread_setaffinity_np(pthread_self(), sizeof(startup_affinity), &startup_affinity);
}

int bench_spawn(hy_proc_fn fn, const void *arg, size_t arg_size, int shard, hy_pid *out)
{
    struct hy_spawn_opts opts = HY_SPAWN_OPTS_INIT;
    int rc;

    opts.shard = shard;
    opts.arg_size = arg_size;
    rc = hy_spawn_opt(fn, (void *)arg, &opts, out);
    if (rc < 0)
        bench_fail("spawn on shard %d failed: %s (%s)", shard, hy_err_name(rc), hy_strerror(rc));
    return rc;
}

int bench_send(hy_pid to, uint64_t tag, const void *data, size_t len)
{
    int rc = hy_send(to, tag, data, len);

    if (rc < 0)
        bench_fail("send of tag %llu failed: %s (%s)", (unsigned long long)tag, hy_err_name(rc),
                   hy_strerror(rc));
    return rc;
}

int bench_recv_tag(uint64_t tag, struct hy_msg **out)
{
    int rc = hy_recv_tag(tag, out, bench_timeout_ns);

    if (rc < 0)
        bench_fail("receive of tag %llu failed: %s (%s)", (unsigned long long)tag, hy_err_name(rc),
                   hy_strerror(rc));
    return rc;
}

struct done_match {
    hy_pid from;
};

static int match_done_from(const struct hy_msg *m, void *arg)
{
    const struct done_match *dm = arg;

    return m->tag == BENCH_TAG_DONE && hy_pid_eq(m->from, dm->from);
}

int bench_recv_done(hy_pid from, struct bench_done *done)
{
    struct done_match dm = {.from = from};
    struct hy_msg *m;
    int rc = hy_recv_match(match_done_from, &dm, &m, bench_timeout_ns);

    if (rc < 0) {
        bench_fail("waiting for a worker's result failed: %s (%s)", hy_err_name(rc),
                   hy_strerror(rc));
        return rc;
    }
    if (m->size != sizeof(*done)) {
        uint32_t size = m->size;

        hy_msg_free(m);
        bench_fail("a worker's result has %u bytes, expected %zu", size, sizeof(*done));
        return HY_EINVAL;
    }
    memcpy(done, m->data, sizeof(*done));
    hy_msg_free(m);
    return 0;
}

void bench_send_done(hy_pid to, uint64_t t0, uint64_t t1, uint32_t errors)
{
    struct bench_done d = {.t0 = t0, .t1 = t1, .shard = hy_shard_id(), .errors = errors};

    bench_send(to, BENCH_TAG_DONE, &d, sizeof(d));
}

/* ---- the generic driver: one runtime, warm-up, BENCH_REPS reps ---------- */

struct rep_run {
    const struct bench *b;
    const struct bench_env *env;
    double vals[BENCH_REPS_MAX];
    size_t nvals;
};

/* --console: the node console runs during the benchmark, on 127.0.0.1 and
 * an ephemeral port, and a scraper process collects every shard's figures
 * once a second (what an open dashboard or a Prometheus scrape costs). */
static bool with_console;

#define CONSOLE_TAG_STOP 0x53544f50ull

static void console_scraper(void *arg)
{
    struct hy_console *con = arg;
    size_t cap = 1u << 20;
    char *buf = malloc(cap);

    for (;;) {
        struct hy_msg *m;
        size_t len;

        if (hy_recv(&m, 1000000000LL) == 0) {
            bool stop = m->tag == CONSOLE_TAG_STOP;

            hy_msg_free(m);
            if (stop)
                break;
            continue;
        }
        if (buf)
            hy_console_metrics(con, buf, cap, &len);
    }
    free(buf);
}

static void rep_main(void *arg)
{
    struct rep_run *run = arg;
    struct hy_console *con = NULL;
    hy_pid scraper = HY_PID_NONE;
    hy_ref mon = HY_REF_NONE;

    if (with_console) {
        int rc = hy_console_start(NULL, 0, NULL, &con);

        if (rc < 0) {
            bench_fail("--console: %s (%s)", hy_err_name(rc), hy_strerror(rc));
            return;
        }
        bench_note("console on http://127.0.0.1:%u/ with a scrape per second",
                   hy_console_port(con));
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.monitor = true;
        so.monitor_ref = &mon;
        hy_spawn_opt(console_scraper, con, &so, &scraper);
    }
    for (int i = 0; i <= BENCH_REPS && !bench_failed(); i++) {
        double v = run->b->rep(run->env);

        if (bench_failed() || !(v >= 0.0))
            break;
        if (i > 0) /* the first one is the warm-up */
            run->vals[run->nvals++] = v;
    }
    if (con) {
        struct hy_msg *m;

        hy_send(scraper, CONSOLE_TAG_STOP, NULL, 0);
        if (hy_recv_ref(mon, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
        hy_console_stop(con);
    }
}

static int run_rep_bench(const struct bench *b, const struct bench_env *env)
{
    struct rep_run run = {.b = b, .env = env};
    struct hy_config cfg;
    int rc;

    bench_config(&cfg, env, b->nshards, b->stack_mode);
    bench_describe_runtime(b->name, &cfg);
    if (b->describe)
        b->describe(env);
    rc = hy_run(&cfg, rep_main, &run);
    bench_restore_affinity();
    if (rc < 0) {
        bench_fail("hy_run failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return 1;
    }
    if (bench_failed() || run.nvals != (size_t)BENCH_REPS) {
        if (!bench_failed())
            bench_fail("only %zu of %d repetitions completed", run.nvals, BENCH_REPS);
        return 1;
    }
    bench_report(b, b->name, run.vals, run.nvals);
    return 0;
}

/* ---- ctx_floor: the bare register switch of ctx_floor.c ------------------ */

int bench_ctx_floor_run(const struct bench *b, const struct bench_env *env)
{
    uint64_t iters = bench_scaled(env, 10000000);
    double vals[BENCH_REPS_MAX];
    cpu_set_t one;

    /* Same CPU as shard 0 of ctx_switch. */
    CPU_ZERO(&one);
    CPU_SET(env->cpus[0], &one);
    pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    bench_note("%llu switches between two bare contexts (register switch only, no scheduler), "
               "thread pinned to CPU %d",
               (unsigned long long)iters, env->cpus[0]);
    (void)hy_bench_ctx_floor_ns((unsigned long)iters);
    for (int i = 0; i < BENCH_REPS; i++)
        vals[i] = hy_bench_ctx_floor_ns((unsigned long)iters);
    bench_restore_affinity();
    for (int i = 0; i < BENCH_REPS; i++) {
        if (!(vals[i] > 0.0)) {
            bench_fail("hy_bench_ctx_floor_ns returned %f", vals[i]);
            return 1;
        }
    }
    bench_report(b, b->name, vals, BENCH_REPS);
    return 0;
}

/* ---- main --------------------------------------------------------------- */

static const struct bench *find_bench(const char *name)
{
    for (size_t i = 0; i < NBENCHES; i++)
        if (strcmp(benches[i].name, name) == 0)
            return &benches[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hydra-bench [--list] [--console] [NAME...]   (SCALE=<factor> scales the counts)\n"
               "benchmarks:");
    for (size_t i = 0; i < NBENCHES; i++)
        fprintf(f, " %s", benches[i].name);
    fprintf(f, "\n");
}

/* CPU time, in clock ticks: busy time of the whole machine (/proc/stat) and
 * this process's own, its waited-for children included. */
static void cpu_ticks(unsigned long long *busy, unsigned long long *own)
{
    unsigned long long v[10] = {0};
    char line[1024];
    FILE *f;

    *busy = *own = 0;
    if ((f = fopen("/proc/stat", "r"))) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            /* user nice system [idle iowait] irq softirq steal */
            *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        fclose(f);
    }
    if ((f = fopen("/proc/self/stat", "r"))) {
        if (fgets(line, sizeof(line), f)) {
            /* fields 14-17 (utime stime cutime cstime) follow the ")" of comm */
            char *p = strrchr(line, ')');
            if (p &&
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                       &v[0], &v[1], &v[2], &v[3]) == 4)
                *own = v[0] + v[1] + v[2] + v[3];
        }
        fclose(f);
    }
}

static int run_bench(const struct bench *b, const struct bench_env *env)
{
    unsigned long long busy0, own0, busy1, own1;
    uint64_t t0, t1;
    int rc;

    current_name = b->name;
    __atomic_store_n(&fail_flag, 0, __ATOMIC_RELEASE);
    cpu_ticks(&busy0, &own0);
    t0 = hy_now_ns();
    rc = b->run ? b->run(b, env) : run_rep_bench(b, env);
    t1 = hy_now_ns();
    cpu_ticks(&busy1, &own1);
    /* The machine may be shared: say how much CPU others took meanwhile
     * (the same line as the peer's run.sh prints). */
    double other = (double)(busy1 - busy0) - (double)(own1 - own0);
    double wall = (double)(t1 - t0) / 1e9;
    double pct =
        wall > 0 ? 100.0 * (other / (double)sysconf(_SC_CLK_TCK)) / (wall * env->ncpus) : 0;
    bench_note("%.1f s wall; other processes used %.0f%% of the %u CPUs meanwhile", wall,
               pct < 0 ? 0 : pct, env->ncpus);
    if (rc != 0 || bench_failed()) {
        printf("# bench=%s FAILED\n", b->name);
        fflush(stdout);
        return 1;
    }
    return 0;
}

static int parse_env(struct bench_env *env)
{
    const char *s = getenv("SCALE");
    char *end;

    env->scale = 1.0;
    if (s && *s) {
        errno = 0;
        env->scale = strtod(s, &end);
        if (errno || *end || !(env->scale > 0.0) || !isfinite(env->scale)) {
            fprintf(stderr, "hydra-bench: SCALE must be a positive number, got '%s'\n", s);
            return -1;
        }
    }
    if (env->scale > 1.0)
        bench_timeout_ns = (int64_t)(60e9 * env->scale);
    s = getenv("HYDRA_BENCH_REPS");
    if (s && *s) {
        long r;

        errno = 0;
        r = strtol(s, &end, 10);
        if (errno || *end || r < 1 || r > BENCH_REPS_MAX) {
            fprintf(stderr, "hydra-bench: HYDRA_BENCH_REPS must be 1..%d, got '%s'\n",
                    BENCH_REPS_MAX, s);
            return -1;
        }
        bench_reps = (int)r;
    }

    if (sched_getaffinity(0, sizeof(startup_affinity), &startup_affinity) != 0) {
        fprintf(stderr, "hydra-bench: sched_getaffinity: %s\n", strerror(errno));
        return -1;
    }
    env->ncpus = 0;
    for (int c = 0; c < CPU_SETSIZE && env->ncpus < HY_MAX_SHARDS; c++)
        if (CPU_ISSET(c, &startup_affinity))
            env->cpus[env->ncpus++] = c;
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_env env;
    int failed = 0;

    if (parse_env(&env) < 0)
        return 2;

    /* Hidden: one repetition of proc_memory in a fresh process. */
    if (argc == 3 && strcmp(argv[1], "--mem-child") == 0) {
        current_name = "proc_memory";
        if (strcmp(argv[2], "compact") == 0)
            return bench_proc_memory_child(&env, HY_STACK_COMPACT);
        return bench_proc_memory_child(&env, HY_STACK_GUARDED);
    }
    /* Hidden: the peer node of dist_rtt / dist_throughput (bench_dist.c). */
    if (argc >= 2 && strcmp(argv[1], "--dist-node") == 0) {
        current_name = "dist peer node";
        return bench_dist_node_main(argc - 2, argv + 2);
    }

    /* --console anywhere among the names: drop it from argv. */
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--console") == 0)
            with_console = true;
        else
            argv[kept++] = argv[i];
    }
    argc = kept;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (size_t k = 0; k < NBENCHES; k++)
                printf("%s\n", benches[k].name);
            return 0;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (!find_bench(argv[i])) {
            fprintf(stderr, "hydra-bench: unknown benchmark '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    bench_note("hydra-bench %s: scale=%g, cpus in affinity mask=%u, %d measured repetitions "
               "after a warm-up, median reported",
               HY_VERSION, env.scale, env.ncpus, BENCH_REPS);
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            failed |= run_bench(find_bench(argv[i]), &env);
    } else {
        for (size_t i = 0; i < NBENCHES; i++)
            failed |= run_bench(&benches[i], &env);
    }
    return failed ? 1 : 0;
}
