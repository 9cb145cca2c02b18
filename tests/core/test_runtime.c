/* Tests of core/runtime.c: the lifecycle (hy_run, hy_start, hy_stop,
 * hy_wait), CPU lists and topology, node creations across restarts, stats,
 * and the idle policy (sleep, wake-up by a cross-shard send).
 *
 * Code that runs inside processes records failures with HY_CHECK (cmocka's
 * assertions must not longjmp off a coroutine stack); every test asserts
 * them once the runtime has stopped. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "shard_internal.h"
#include "test_support.h"

#define TAG_PING 1
#define TAG_PONG 2
#define TAG_STOP 3
#define TAG_A 4
#define TAG_B 5

/* ---- helpers --------------------------------------------------------------- */

static int usable_cpus(int *cpus, int max)
{
    struct hy_topology topo;
    assert_int_equal(hy_topology_discover(&topo), 0);
    return hy_topology_usable_cpus(&topo, cpus, max);
}

/* Threads of this OS process (from /proc/self/task). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static bool flag_set(void *a)
{
    return atomic_load((_Atomic int *)a) != 0;
}

/* A process that waits for one message, then replies PONG to its sender
 * with its shard id and pid. */
struct pong {
    int shard;
    hy_pid self;
};

static void ponger(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    if (hy_recv(&m, HY_INFINITY) != 0) {
        HY_CHECK(!"ponger: recv failed");
        return;
    }
    struct pong p = {hy_shard_id(), hy_self()};
    HY_CHECK_EQ(m->tag, TAG_PING);
    hy_send(m->from, TAG_PONG, &p, sizeof(p));
    hy_msg_free(m);
}

/* A process that waits for TAG_STOP and counts how it ended. */
static _Atomic int parked_cleanups, parked_ready;

static void parked_cleanup(void *arg)
{
    (void)arg;
    atomic_fetch_add(&parked_cleanups, 1);
}

static void parked(void *arg)
{
    (void)arg;
    hy_on_exit(parked_cleanup, NULL);
    atomic_fetch_add(&parked_ready, 1);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

/* ---- hy_run ------------------------------------------------------------------ */

struct run_seen {
    bool running, in_process;
    int shard;
    unsigned count;
    uint32_t node, creation;
    int stop_rc;
};

static void run_main(void *arg)
{
    struct run_seen *s = arg;
    s->running = hy_running();
    s->in_process = hy_in_process();
    s->shard = hy_shard_id();
    s->count = hy_shard_count();
    s->node = hy_node_id();
    s->creation = hy_node_creation();
}

static void test_runtime_run_returns_when_main_ends(void **state)
{
    (void)state;
    cpu_set_t before, after;
    assert_int_equal(sched_getaffinity(0, sizeof(before), &before), 0);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.node_id = 42;
    struct run_seen s = {0};
    assert_false(hy_running());
    assert_int_equal(hy_run(&cfg, run_main, &s), 0);
    assert_false(hy_running());
    assert_true(s.running);
    assert_true(s.in_process);
    assert_int_equal(s.shard, 0);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.node, 42);
    assert_int_not_equal(s.creation, 0);
    /* everything is gone afterwards */
    assert_int_equal(hy_shard_count(), 0);
    assert_int_equal(hy_node_creation(), 0);
    assert_int_equal(hy_shard_id(), -1);
    /* shard 0 ran pinned on this thread: hy_run gave the thread back as it
     * found it (other tests read the affinity mask to pick CPUs) */
    assert_int_equal(sched_getaffinity(0, sizeof(after), &after), 0);
    assert_true(CPU_EQUAL(&before, &after));
    hy_test_assert_checks();
}

/* ---- hy_start / hy_stop / hy_wait ------------------------------------------------ */

static _Atomic int started_flag;

static void start_main(void *arg)
{
    (void)arg;
    atomic_store(&started_flag, 1);
    /* with keep_running the runtime does not stop when its main process ends */
}

static void test_runtime_start_stop(void **state)
{
    (void)state;
    int before = thread_count();
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.keep_running = true;
    atomic_store(&started_flag, 0);
    assert_int_equal(hy_start(&cfg, start_main, NULL), 0);
    /* hy_start returns at once; the shards run on their own threads */
    assert_true(hy_running());
    assert_int_equal(hy_shard_count(), 2);
    assert_int_equal(hy_shard_id(), -1);
    assert_true(hy_test_thread_wait_until(flag_set, &started_flag, 5000));
    /* its main process has ended, yet the runtime keeps running; stats are
     * readable from this plain thread */
    struct hy_stats st;
    assert_int_equal(hy_stats_get(0, &st), 0);
    assert_int_equal(st.procs_spawned, 1);
    assert_true(hy_running());
    assert_int_equal(hy_stop(), 0);
    /* from a plain thread hy_stop also waits: all threads are gone */
    assert_false(hy_running());
    assert_int_equal(thread_count(), before);
    assert_int_equal(hy_wait(), HY_ENOTSTARTED);
    assert_int_equal(hy_stop(), HY_ENOTSTARTED);
}

static void *wait_thread(void *arg)
{
    *(int *)arg = hy_wait();
    return NULL;
}

/* hy_start with a main process, then hy_wait: the runtime stops when the
 * main process returns, so hy_wait returns (it used to wait forever). */
static void test_runtime_start_wait_after_main_returns(void **state)
{
    (void)state;
    int before = thread_count();
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    atomic_store(&started_flag, 0);
    assert_int_equal(hy_start(&cfg, start_main, NULL), 0);
    int rc = -1;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &rc), 0);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    int joined = pthread_timedjoin_np(t, NULL, &dl);
    if (joined != 0) {
        hy_stop(); /* let the waiter go before failing */
        pthread_join(t, NULL);
    }
    assert_int_equal(joined, 0);
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&started_flag), 1);
    assert_false(hy_running());
    assert_int_equal(thread_count(), before);
}

static bool two_parked(void *arg)
{
    (void)arg;
    return atomic_load(&parked_ready) == 2;
}

static void stop_from_inside_main(void *arg)
{
    (void)arg;
    /* a parked process on each shard: killed by the stop */
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(parked, NULL, &o, NULL), 0);
    HY_CHECK_EQ(hy_spawn(parked, NULL, NULL), 0);
    /* both have registered their cleanup handler */
    HY_CHECK(hy_test_wait_until(two_parked, NULL, 5000));
    HY_CHECK_EQ(hy_wait(), HY_EPERM);
    struct hy_config cfg;
    hy_config_init(&cfg);
    HY_CHECK_EQ(hy_start(&cfg, NULL, NULL), HY_EPERM);
    HY_CHECK(hy_running());
    HY_CHECK_EQ(hy_stop(), 0);
    /* hy_stop from a process only asks (it cannot wait for its own shard) */
    atomic_store(&started_flag, 1);
    struct hy_msg *m;
    hy_recv_tag(TAG_STOP, &m, HY_INFINITY);
    /* not reached: the stop kills every process */
    HY_CHECK(!"received after hy_stop");
}

static void test_runtime_start_then_wait_for_inside_stop(void **state)
{
    (void)state;
    int before = thread_count();
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    atomic_store(&started_flag, 0);
    atomic_store(&parked_cleanups, 0);
    atomic_store(&parked_ready, 0);
    assert_int_equal(hy_start(&cfg, stop_from_inside_main, NULL), 0);
    assert_int_equal(hy_wait(), 0);
    assert_false(hy_running());
    assert_int_equal(atomic_load(&started_flag), 1);
    /* processes alive at the stop ran their cleanup handlers */
    assert_int_equal(atomic_load(&parked_cleanups), 2);
    assert_int_equal(thread_count(), before);
    assert_int_equal(hy_wait(), HY_ENOTSTARTED);
    hy_test_assert_checks();
}

static void test_runtime_run_stopped_from_inside(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    atomic_store(&started_flag, 0);
    atomic_store(&parked_cleanups, 0);
    atomic_store(&parked_ready, 0);
    assert_int_equal(hy_run(&cfg, stop_from_inside_main, NULL), 0);
    assert_false(hy_running());
    assert_int_equal(atomic_load(&started_flag), 1);
    assert_int_equal(atomic_load(&parked_cleanups), 2);
    hy_test_assert_checks();
}

/* hy_stop() from a plain thread while hy_run() runs shard 0 on the main
 * thread: both return, the runtime is stopped exactly once. */
static _Atomic int stopper_rc;

static void *stopper_thread(void *arg)
{
    (void)arg;
    if (!hy_test_thread_wait_until(flag_set, &started_flag, 5000))
        HY_CHECK(!"main process never started");
    atomic_store(&stopper_rc, hy_stop());
    return NULL;
}

static void wait_for_stop_main(void *arg)
{
    (void)arg;
    hy_on_exit(parked_cleanup, NULL);
    atomic_store(&started_flag, 1);
    struct hy_msg *m;
    hy_recv_tag(TAG_STOP, &m, HY_INFINITY); /* killed by the stop */
    HY_CHECK(!"main returned from its receive");
}

static void test_runtime_run_stopped_from_other_thread(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    atomic_store(&started_flag, 0);
    atomic_store(&parked_cleanups, 0);
    atomic_store(&parked_ready, 0);
    atomic_store(&stopper_rc, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stopper_thread, NULL), 0);
    assert_int_equal(hy_run(&cfg, wait_for_stop_main, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&stopper_rc), 0);
    assert_false(hy_running());
    assert_int_equal(atomic_load(&parked_cleanups), 1);
    hy_test_assert_checks();
}

static void test_runtime_start_twice(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    assert_int_equal(hy_start(&cfg, NULL, NULL), 0);
    uint32_t creation = hy_node_creation();
    assert_int_equal(hy_start(&cfg, NULL, NULL), HY_ESTARTED);
    assert_int_equal(hy_run(&cfg, NULL, NULL), HY_ESTARTED);
    /* the failed starts did not disturb the running runtime */
    assert_true(hy_running());
    assert_int_equal(hy_node_creation(), creation);
    assert_int_equal(hy_shard_count(), 1);
    assert_int_equal(hy_stop(), 0);
    assert_false(hy_running());
}

static void test_runtime_not_started(void **state)
{
    (void)state;
    assert_false(hy_running());
    assert_int_equal(hy_stop(), HY_ENOTSTARTED);
    assert_int_equal(hy_wait(), HY_ENOTSTARTED);
    int cpu, node;
    assert_int_equal(hy_shard_cpu(0, &cpu, &node), HY_ENOTSTARTED);
    assert_false(hy_shard_asleep(0));
    struct hy_stats st;
    assert_int_equal(hy_stats_get(0, &st), HY_ENOTSTARTED);
    assert_int_equal(hy_stats_total(&st), HY_ENOTSTARTED);
    assert_int_equal(hy_shard_count(), 0);
    assert_int_equal(hy_node_id(), 0);
    assert_int_equal(hy_node_creation(), 0);
    assert_int_equal(hy_start(NULL, NULL, NULL), HY_EINVAL);
    assert_false(hy_running());
}

/* ---- CPU lists ----------------------------------------------------------------- */

static void expect_start_error(const struct hy_config *cfg, int expected, int threads_before)
{
    assert_int_equal(hy_start(cfg, start_main, NULL), expected);
    /* nothing left running: no thread, not "running", stop says so */
    assert_false(hy_running());
    assert_int_equal(thread_count(), threads_before);
    assert_int_equal(hy_stop(), HY_ENOTSTARTED);
    assert_int_equal(hy_run(cfg, start_main, NULL), expected);
    assert_false(hy_running());
    assert_int_equal(thread_count(), threads_before);
}

/* ---- refused configurations are logged with the field and the rule ------------ */

static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;
static char cap_last[512];
static enum hy_log_level cap_level;
static int cap_lines;
static bool cap_warned_nshards;

static void cap_sink(enum hy_log_level level, const char *line, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&cap_lock);
    snprintf(cap_last, sizeof(cap_last), "%s", line);
    cap_level = level;
    cap_lines++;
    if (level == HY_LOG_WARNING && strstr(line, "nshards"))
        cap_warned_nshards = true;
    pthread_mutex_unlock(&cap_lock);
}

/* hy_start refuses cfg with HY_EINVAL and logs one error line holding each
 * of the words in want. */
static void expect_logged_einval(const struct hy_config *cfg, const char *const *want)
{
    pthread_mutex_lock(&cap_lock);
    cap_lines = 0;
    cap_last[0] = 0;
    pthread_mutex_unlock(&cap_lock);
    assert_int_equal(hy_start(cfg, NULL, NULL), HY_EINVAL);
    pthread_mutex_lock(&cap_lock);
    int lines = cap_lines;
    enum hy_log_level level = cap_level;
    char last[512];
    snprintf(last, sizeof(last), "%s", cap_last);
    pthread_mutex_unlock(&cap_lock);
    assert_int_equal(lines, 1);
    assert_int_equal(level, HY_LOG_ERROR);
    for (; *want; want++) {
        if (!strstr(last, *want))
            fail_msg("log line \"%s\" lacks \"%s\"", last, *want);
    }
}

static void test_runtime_bad_config_logged(void **state)
{
    (void)state;
    hy_log_set_sink(cap_sink, NULL);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 300;
    expect_logged_einval(&cfg, (const char *const[]){"nshards", "300", "256", NULL});
    hy_config_init(&cfg);
    cfg.ring_size = 1000;
    expect_logged_einval(&cfg, (const char *const[]){"ring_size", "1000", "power of two", NULL});
    hy_config_init(&cfg);
    cfg.stack_size = 1;
    expect_logged_einval(&cfg, (const char *const[]){"stack_size", "8192", NULL});
    hy_config_init(&cfg);
    cfg.node_id = 0;
    expect_logged_einval(&cfg, (const char *const[]){"node_id", NULL});
    hy_config_init(&cfg);
    cfg.wake_defer_ns = 2000000000u;
    expect_logged_einval(&cfg, (const char *const[]){"wake_defer_ns", "2000000000", "1 s", NULL});
    hy_config_init(&cfg);
    cfg.xshard_spin_ns = 1000001u;
    expect_logged_einval(&cfg, (const char *const[]){"xshard_spin_ns", "1000001", "1 ms", NULL});

    /* more shards than usable CPUs: accepted, with a warning */
    int usable[HY_TOPO_MAX_CPUS];
    int nu = usable_cpus(usable, HY_TOPO_MAX_CPUS);
    hy_config_init(&cfg);
    cfg.nshards = (unsigned)nu + 1;
    cfg.pin = false;
    pthread_mutex_lock(&cap_lock);
    cap_warned_nshards = false;
    pthread_mutex_unlock(&cap_lock);
    assert_int_equal(hy_start(&cfg, NULL, NULL), 0);
    assert_int_equal(hy_stop(), 0);
    pthread_mutex_lock(&cap_lock);
    bool warned = cap_warned_nshards;
    pthread_mutex_unlock(&cap_lock);
    hy_log_set_sink(NULL, NULL);
    assert_true(warned);
}

static void test_runtime_bad_cpu_lists(void **state)
{
    (void)state;
    int usable[HY_TOPO_MAX_CPUS];
    int nu = usable_cpus(usable, HY_TOPO_MAX_CPUS);
    assert_true(nu >= 1);
    int before = thread_count();
    struct hy_config cfg;
    hy_config_init(&cfg);

    int unknown[] = {usable[0], 100000};
    cfg.cpus = unknown;
    cfg.nshards = 2;
    expect_start_error(&cfg, HY_EBADCPU, before);

    struct hy_topology real;
    assert_int_equal(hy_topology_discover(&real), 0);
    int just_unknown[] = {real.ncpus}; /* the first CPU id that does not exist */
    cfg.cpus = just_unknown;
    cfg.nshards = 1;
    expect_start_error(&cfg, HY_EBADCPU, before);

    int dup[] = {usable[0], usable[0]};
    cfg.cpus = dup;
    cfg.nshards = 2;
    expect_start_error(&cfg, HY_EBADCPU, before);

    int negative[] = {-1};
    cfg.cpus = negative;
    cfg.nshards = 1;
    expect_start_error(&cfg, HY_EBADCPU, before);

    /* a CPU that exists but is outside the (here: injected) affinity mask */
    if (nu >= 2) {
        struct hy_topology topo;
        assert_int_equal(hy_topology_discover(&topo), 0);
        topo.usable[usable[1]] = false;
        int masked[] = {usable[1]};
        cfg.topology = &topo;
        cfg.cpus = masked;
        cfg.nshards = 1;
        expect_start_error(&cfg, HY_EBADCPU, before);
        cfg.topology = NULL;
    }

    /* other bad configurations */
    hy_config_init(&cfg);
    cfg.nshards = HY_MAX_SHARDS + 1;
    expect_start_error(&cfg, HY_EINVAL, before);
    hy_config_init(&cfg);
    cfg.ring_size = 1000;
    expect_start_error(&cfg, HY_EINVAL, before);
    hy_config_init(&cfg);
    cfg.stack_mode = 7;
    expect_start_error(&cfg, HY_EINVAL, before);

    /* after all that, a good start works */
    hy_config_init(&cfg);
    cfg.cpus = usable;
    cfg.nshards = 1;
    cfg.keep_running = true;
    atomic_store(&started_flag, 0);
    assert_int_equal(hy_start(&cfg, start_main, NULL), 0);
    assert_true(hy_test_thread_wait_until(flag_set, &started_flag, 5000));
    assert_int_equal(hy_stop(), 0);
    assert_int_equal(thread_count(), before);
}

/* Each shard reports where it runs, from a process on it. */
struct where {
    int shard, cpu, getcpu;
};

static void report_where(void *arg)
{
    hy_pid *parent = arg;
    struct where w = {hy_shard_id(), -1, sched_getcpu()};
    hy_shard_cpu((unsigned)w.shard, &w.cpu, NULL);
    hy_send(*parent, TAG_PONG, &w, sizeof(w));
}

struct shards_ctx {
    unsigned n;
    struct where seen[8];
};

static void ask_every_shard(void *arg)
{
    struct shards_ctx *c = arg;
    hy_pid me = hy_self();
    HY_CHECK_EQ(hy_shard_count(), c->n);
    for (unsigned i = 0; i < c->n; i++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)i;
        o.arg_size = sizeof(me);
        hy_pid child;
        HY_CHECK_EQ(hy_spawn_opt(report_where, &me, &o, &child), 0);
        HY_CHECK_EQ(hy_pid_shard(child), i);
    }
    for (unsigned i = 0; i < c->n; i++) {
        struct hy_msg *m;
        if (hy_recv_tag(TAG_PONG, &m, 5000000000LL) != 0) {
            HY_CHECK(!"a shard did not answer");
            return;
        }
        struct where w;
        memcpy(&w, m->data, sizeof(w));
        hy_msg_free(m);
        if (w.shard >= 0 && (unsigned)w.shard < c->n)
            c->seen[w.shard] = w;
    }
}

static void test_runtime_more_shards_than_cpus(void **state)
{
    (void)state;
    int usable[HY_TOPO_MAX_CPUS];
    int nu = usable_cpus(usable, HY_TOPO_MAX_CPUS);
    struct shards_ctx c;
    memset(&c, 0, sizeof(c));
    c.n = (unsigned)nu * 2 > 4 ? (unsigned)nu * 2 : 4;
    if (c.n > 8)
        c.n = 8;
    for (unsigned i = 0; i < c.n; i++)
        c.seen[i].shard = -1;
    hy_test_run(c.n, ask_every_shard, &c);
    for (unsigned i = 0; i < c.n; i++) {
        assert_int_equal(c.seen[i].shard, (int)i);
        /* shards wrap around the usable CPUs and are pinned there */
        assert_int_equal(c.seen[i].cpu, usable[i % (unsigned)nu]);
        assert_int_equal(c.seen[i].getcpu, usable[i % (unsigned)nu]);
    }
}

static void test_runtime_explicit_cpu_list(void **state)
{
    (void)state;
    int usable[HY_TOPO_MAX_CPUS];
    int nu = usable_cpus(usable, HY_TOPO_MAX_CPUS);
    if (nu > 4)
        nu = 4;
    /* the usable CPUs in reverse order: shard i runs on cpus[i] */
    int cpus[4];
    for (int i = 0; i < nu; i++)
        cpus[i] = usable[nu - 1 - i];
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.cpus = cpus;
    cfg.nshards = (unsigned)nu;
    struct shards_ctx c;
    memset(&c, 0, sizeof(c));
    c.n = (unsigned)nu;
    hy_test_run_cfg(&cfg, ask_every_shard, &c);
    for (int i = 0; i < nu; i++) {
        assert_int_equal(c.seen[i].shard, i);
        assert_int_equal(c.seen[i].cpu, cpus[i]);
        assert_int_equal(c.seen[i].getcpu, cpus[i]);
    }
}

struct numa_seen {
    int node[4];
    int rc[4];
};

static void read_nodes(void *arg)
{
    struct numa_seen *s = arg;
    for (unsigned i = 0; i < 4; i++)
        s->rc[i] = hy_shard_cpu(i, NULL, &s->node[i]);
    HY_CHECK_EQ(hy_shard_cpu(4, NULL, NULL), HY_EINVAL);
}

static void test_runtime_fake_numa_topology(void **state)
{
    (void)state;
    int usable[HY_TOPO_MAX_CPUS];
    if (usable_cpus(usable, HY_TOPO_MAX_CPUS) < 2)
        skip(); /* two fake nodes need two usable CPUs */
    struct hy_topology topo;
    assert_int_equal(hy_topology_fake(&topo, 2), 0);
    assert_int_equal(hy_topology_fake(&topo, 0), HY_EINVAL);
    assert_int_equal(hy_topology_fake(&topo, 2), 0);
    assert_int_equal(topo.nnodes, 2);
    assert_false(topo.numa_memory);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.topology = &topo;
    cfg.nshards = 4;
    struct numa_seen s;
    memset(&s, 0xff, sizeof(s));
    hy_test_run_cfg(&cfg, read_nodes, &s);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s.rc[i], 0);
        assert_int_equal(s.node[i], i % 2);
    }
}

/* ---- restarts ----------------------------------------------------------------- */

struct incarnation {
    uint32_t creation;
    hy_pid local, remote;     /* run 1: pids that die with the runtime */
    uint64_t dropped_before, dropped_after;
    int first_tag_local, first_tag_remote;
    bool same_slot_local, same_slot_remote;
};

static struct incarnation inc[2];

/* Receives one message and reports its tag to the sender of the marker. */
static void first_tag_reporter(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    if (hy_recv(&m, 5000000000LL) != 0) {
        HY_CHECK(!"reporter got nothing");
        return;
    }
    int tag = (int)m->tag;
    hy_send(m->from, TAG_PONG, &tag, sizeof(tag));
    hy_msg_free(m);
}

static void incarnation_main(void *arg)
{
    int run = (int)(intptr_t)arg;
    struct incarnation *me = &inc[run];
    me->creation = hy_node_creation();
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn(first_tag_reporter, NULL, &me->local), 0);
    HY_CHECK_EQ(hy_spawn_opt(first_tag_reporter, NULL, &o, &me->remote), 0);
    if (run == 0) {
        /* leave them waiting: the end of the runtime kills them */
        return;
    }
    /* The new processes sit in the slots the old pids name (same slot and
     * generation): only the node creation tells them apart. */
    me->same_slot_local = hy_pid_slot(me->local) == hy_pid_slot(inc[0].local) &&
                          hy_pid_gen(me->local) == hy_pid_gen(inc[0].local);
    me->same_slot_remote = hy_pid_slot(me->remote) == hy_pid_slot(inc[0].remote) &&
                           hy_pid_gen(me->remote) == hy_pid_gen(inc[0].remote);
    struct hy_stats st;
    hy_stats_get(0, &st);
    me->dropped_before = st.dropped_dead;
    HY_CHECK_EQ(hy_send(inc[0].local, TAG_A, NULL, 0), 0);
    HY_CHECK_EQ(hy_send(inc[0].remote, TAG_A, NULL, 0), 0);
    hy_stats_get(0, &st);
    me->dropped_after = st.dropped_dead;
    /* Order from one sender to one receiver is send order: had the stale
     * sends reached the new occupants, they would come before B. */
    hy_send(me->local, TAG_B, NULL, 0);
    hy_send(me->remote, TAG_B, NULL, 0);
    for (int i = 0; i < 2; i++) {
        struct hy_msg *m;
        if (hy_recv_tag(TAG_PONG, &m, 5000000000LL) != 0) {
            HY_CHECK(!"no report");
            return;
        }
        int tag;
        memcpy(&tag, m->data, sizeof(tag));
        if (hy_pid_eq(m->from, me->local))
            me->first_tag_local = tag;
        else
            me->first_tag_remote = tag;
        hy_msg_free(m);
    }
}

static void test_runtime_restart_kills_old_pids(void **state)
{
    (void)state;
    memset(inc, 0, sizeof(inc));
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    assert_int_equal(hy_run(&cfg, incarnation_main, (void *)(intptr_t)0), 0);
    hy_test_assert_checks();
    hy_test_run(2, incarnation_main, (void *)(intptr_t)1);
    assert_int_not_equal(inc[0].creation, 0);
    assert_int_not_equal(inc[1].creation, 0);
    assert_int_not_equal(inc[0].creation, inc[1].creation);
    assert_int_equal(hy_pid_creation(inc[0].local), inc[0].creation);
    assert_true(inc[1].same_slot_local);
    assert_true(inc[1].same_slot_remote);
    /* both stale sends were dropped and counted on the sending shard */
    assert_int_equal(inc[1].dropped_after - inc[1].dropped_before, 2);
    assert_int_equal(inc[1].first_tag_local, TAG_B);
    assert_int_equal(inc[1].first_tag_remote, TAG_B);
}

/* ---- stats ------------------------------------------------------------------- */

#define STATS_N 16

struct stats_ctx {
    hy_pid kids[STATS_N];
    struct hy_stats base1, after_spawn1, after_exit1;
    struct hy_stats from_shard1;   /* shard 1's view of shard 0 */
    struct hy_stats base0, after0;
    uint64_t alive_total;
};

struct stats_reader_arg {
    hy_pid parent;
};

static void stats_reader(void *arg)
{
    struct stats_reader_arg *a = arg;
    struct hy_stats st;
    HY_CHECK_EQ(hy_stats_get(0, &st), 0);
    HY_CHECK_EQ(hy_stats_get(hy_shard_count(), &st), HY_EINVAL);
    hy_send(a->parent, TAG_PONG, &st, sizeof(st));
}

static bool shard1_back(void *arg)
{
    struct stats_ctx *c = arg;
    struct hy_stats st;
    hy_stats_get(1, &st);
    return st.procs_alive == c->base1.procs_alive;
}

static void stats_main(void *arg)
{
    struct stats_ctx *c = arg;
    hy_stats_get(1, &c->base1);
    hy_stats_get(0, &c->base0);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    for (int i = 0; i < STATS_N; i++)
        HY_CHECK_EQ(hy_spawn_opt(parked, NULL, &o, &c->kids[i]), 0);
    hy_stats_get(1, &c->after_spawn1);
    /* a process on shard 1 reads shard 0 */
    struct stats_reader_arg ra = {hy_self()};
    o.arg_size = sizeof(ra);
    HY_CHECK_EQ(hy_spawn_opt(stats_reader, &ra, &o, NULL), 0);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_PONG, &m, 5000000000LL) == 0) {
        memcpy(&c->from_shard1, m->data, sizeof(c->from_shard1));
        hy_msg_free(m);
    } else {
        HY_CHECK(!"no stats from shard 1");
    }
    for (int i = 0; i < STATS_N; i++)
        hy_send(c->kids[i], TAG_STOP, NULL, 0);
    HY_CHECK(hy_test_wait_until(shard1_back, c, 5000));
    hy_stats_get(1, &c->after_exit1);
    hy_stats_get(0, &c->after0);
    struct hy_stats t;
    hy_stats_total(&t);
    c->alive_total = t.procs_alive;
}

static void test_runtime_stats_from_any_process(void **state)
{
    (void)state;
    struct stats_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(2, stats_main, &c);
    /* spawned onto shard 1: counted there */
    assert_int_equal(c.after_spawn1.procs_spawned - c.base1.procs_spawned, STATS_N);
    assert_int_equal(c.after_spawn1.procs_alive - c.base1.procs_alive, STATS_N);
    assert_int_equal(c.after_spawn1.procs_exited, c.base1.procs_exited);
    /* shard 1 saw shard 0's counters: at least the main process */
    assert_true(c.from_shard1.procs_alive >= 1);
    assert_true(c.from_shard1.procs_spawned >= 1);
    assert_int_equal(c.after_exit1.procs_exited - c.base1.procs_exited, STATS_N + 1);
    assert_int_equal(c.after_exit1.procs_spawned - c.base1.procs_spawned, STATS_N + 1);
    assert_int_equal(c.after0.msgs_sent_cross - c.base0.msgs_sent_cross, STATS_N);
    /* the STOPs are cross-shard messages (spawn requests are not messages) */
    assert_int_equal(c.after_exit1.msgs_received - c.base1.msgs_received, STATS_N);
    assert_int_equal(c.alive_total, 1);
}

/* ---- idle policy ------------------------------------------------------------- */

struct idle_ctx {
    bool slept, woken, slept_again;
    bool hint_asleep, hint_self, hint_bad; /* hy_shard_asleep(1), (0), (2) */
    uint64_t idle_before, idle_after;
    uint64_t sleeps_before;
};

static bool shard1_asleep(void *arg)
{
    (void)arg;
    struct hy_stats st;
    hy_stats_get(1, &st);
    /* `sleeping` is set before the shard re-checks its input and waits on
     * its futex: once seen (after a counted sleep), only a wake-up by a
     * sender gets shard 1 going again (it has no timers). */
    return st.sleeps >= 1 &&
           atomic_load_explicit(&hy__rt.shards[1]->sleeping, memory_order_seq_cst) == 1;
}

static bool shard1_slept_again(void *arg)
{
    struct idle_ctx *c = arg;
    struct hy_stats st;
    hy_stats_get(1, &st);
    return st.sleeps > c->sleeps_before;
}

static void idle_main(void *arg)
{
    struct idle_ctx *c = arg;
    hy_pid pong;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(ponger, NULL, &o, &pong), 0);
    c->slept = hy_test_wait_until(shard1_asleep, NULL, 5000);
    /* shard 1 sleeps until a send wakes it; this shard runs this process */
    c->hint_asleep = hy_shard_asleep(1);
    c->hint_self = hy_shard_asleep(0);
    c->hint_bad = hy_shard_asleep(2);
    struct hy_stats st;
    hy_stats_get(1, &st);
    c->idle_before = st.idle_ns;
    c->sleeps_before = st.sleeps;
    hy_send(pong, TAG_PING, NULL, 0);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_PONG, &m, 5000000000LL) == 0) {
        c->woken = true;
        hy_msg_free(m);
    }
    hy_stats_get(1, &st);
    c->idle_after = st.idle_ns;
    /* and back to sleep once there is nothing left to do */
    c->slept_again = hy_test_wait_until(shard1_slept_again, c, 5000);
}

static void test_runtime_idle_sleeps_and_wakes(void **state)
{
    (void)state;
    struct idle_ctx c;
    memset(&c, 0, sizeof(c));
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    hy_test_run_cfg(&cfg, idle_main, &c);
    assert_true(c.slept);
    assert_true(c.hint_asleep);
    assert_false(c.hint_self);
    assert_false(c.hint_bad);
    assert_true(c.woken);
    /* the time asleep was counted as idle when the send woke it */
    assert_true(c.idle_after > c.idle_before);
    assert_true(c.slept_again);
}

static bool all_asleep(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < hy_shard_count(); i++) {
        struct hy_stats st;
        if (hy_stats_get(i, &st) != 0 || st.sleeps == 0 ||
            atomic_load(&hy__rt.shards[i]->sleeping) != 1)
            return false;
    }
    return true;
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_runtime_idle_uses_no_cpu(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    assert_int_equal(hy_start(&cfg, NULL, NULL), 0);
    assert_true(hy_test_thread_wait_until(all_asleep, NULL, 5000));
    /* a measurement window, not a synchronisation: how much CPU do two idle
     * shards (and the stall watchdog) burn in 200 ms of wall time? */
    uint64_t cpu0 = process_cpu_ns(), wall0 = hy_now_ns();
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    uint64_t cpu = process_cpu_ns() - cpu0, wall = hy_now_ns() - wall0;
    assert_int_equal(hy_stop(), 0);
    /* busy shards would burn 2 x wall; idle ones a few percent at most */
    assert_true(cpu * 10 < wall);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_not_started),
        cmocka_unit_test(test_runtime_run_returns_when_main_ends),
        cmocka_unit_test(test_runtime_start_stop),
        cmocka_unit_test(test_runtime_start_wait_after_main_returns),
        cmocka_unit_test(test_runtime_bad_config_logged),
        cmocka_unit_test(test_runtime_start_then_wait_for_inside_stop),
        cmocka_unit_test(test_runtime_run_stopped_from_inside),
        cmocka_unit_test(test_runtime_run_stopped_from_other_thread),
        cmocka_unit_test(test_runtime_start_twice),
        cmocka_unit_test(test_runtime_bad_cpu_lists),
        cmocka_unit_test(test_runtime_more_shards_than_cpus),
        cmocka_unit_test(test_runtime_explicit_cpu_list),
        cmocka_unit_test(test_runtime_fake_numa_topology),
        cmocka_unit_test(test_runtime_restart_kills_old_pids),
        cmocka_unit_test(test_runtime_stats_from_any_process),
        cmocka_unit_test(test_runtime_idle_sleeps_and_wakes),
        cmocka_unit_test(test_runtime_idle_uses_no_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
