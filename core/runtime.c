/* Runtime lifecycle: configuration, shard creation and pinning, start, run,
 * stop (with an orderly shutdown of every shard), wait. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "io_internal.h"
#include "shard_internal.h"
#include "symbol_internal.h"

struct hy__runtime hy__rt;
pthread_rwlock_t hy__foreign_lock = PTHREAD_RWLOCK_INITIALIZER;
_Thread_local struct hy_shard *hy__tls_shard __attribute__((tls_model("initial-exec")));

static pthread_mutex_t lifecycle_lock = PTHREAD_MUTEX_INITIALIZER;
/* While a hy_run() owns the runtime, its thread joins and frees the shards;
 * hy_wait()/hy_stop() from other threads wait for it on run_done. */
static pthread_cond_t run_done = PTHREAD_COND_INITIALIZER;
static bool run_active;
static uint64_t run_gen;
static _Atomic uint32_t creation_seed;

void hy_config_init(struct hy_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->pin = true;
    cfg->node_id = 1;
    cfg->idle_mode = HY_IDLE_SPIN_THEN_SLEEP;
    cfg->idle_spin_ns = 200000;
    cfg->stack_mode = HY_STACK_GUARDED;
    cfg->stack_size = 64 * 1024;
    cfg->compact_stack_size = 256 * 1024;
    cfg->stack_pool_keep = 64;
    cfg->max_message_size = 1024 * 1024;
    cfg->ring_size = 1024;
    cfg->run_batch = 64;
    cfg->reductions = 2000;
    cfg->stall_threshold_ns = 10 * 1000 * 1000;
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer runs code 5-15x slower (and pauses threads for its
     * own bookkeeping): the budget is one of uninstrumented code */
    cfg->stall_threshold_ns *= 10;
#endif
    cfg->stall_abort_multiple = 50;
    cfg->blocking_threads = 2;
}

uint64_t hy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void hy__fatal(const char *what)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "hydra: fatal: %s\n", what);
    if (n > 0)
        (void)!write(2, buf, (size_t)n);
    abort();
}

/* ---- memory on a shard's node ------------------------------------------------ */

void *hy__shard_mem_alloc(struct hy_shard *sh, size_t size)
{
    if (sh && sh->numa_mem >= 0)
        return numa_alloc_onnode(size, sh->numa_mem);
    void *p = NULL;
    size_t sz = (size + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, sz) != 0)
        return NULL;
    return p;
}

void hy__shard_mem_free(struct hy_shard *sh, void *p, size_t size)
{
    if (!p)
        return;
    if (sh && sh->numa_mem >= 0)
        numa_free(p, size);
    else
        free(p);
}

/* ---- queries ------------------------------------------------------------------- */

bool hy_running(void)
{
    int s = atomic_load(&hy__rt.state);
    return s == 2 || s == 3;
}

unsigned hy_shard_count(void)
{
    return hy_running() ? hy__rt.nshards : 0;
}

int hy_shard_id(void)
{
    struct hy_shard *sh = hy__tls_shard;
    return sh ? (int)sh->id : -1;
}

bool hy_shard_asleep(unsigned shard)
{
    if (!hy_running() || shard >= hy__rt.nshards)
        return false;
    return atomic_load_explicit(&hy__rt.shards[shard]->sleeping, memory_order_relaxed) != 0;
}

int hy_shard_cpu(unsigned shard, int *cpu, int *numa_node)
{
    if (!hy_running())
        return HY_ENOTSTARTED;
    if (shard >= hy__rt.nshards)
        return HY_EINVAL;
    if (cpu)
        *cpu = hy__rt.shards[shard]->cpu;
    if (numa_node)
        *numa_node = hy__rt.shards[shard]->numa;
    return 0;
}

uint32_t hy_node_id(void)
{
    return hy_running() ? hy__rt.node_id : 0;
}

uint32_t hy_node_creation(void)
{
    return hy_running() ? hy__rt.creation : 0;
}

/* ---- shard threads ---------------------------------------------------------------- */

static void phase_barrier(struct hy_shard *sh, int phase)
{
    /* Keep draining and flushing while waiting: a peer may still be pushing
     * into our rings (returns), and its overflow needs room. */
    atomic_fetch_add(&hy__rt.phase_count[phase], 1);
    while (atomic_load(&hy__rt.phase_count[phase]) < (int)hy__rt.nshards) {
        hy__mesh_drain(sh);
        hy__ret_flush(sh);
        hy__mesh_flush(sh);
        sched_yield();
    }
}

static void shard_shutdown(struct hy_shard *sh)
{
    /* 1: every process of this shard ends with reason shutdown */
    struct hy_reason r = hy_reason_make(HY_REASON_SHUTDOWN);
    hy__reap_pending(sh);
    for (uint32_t i = 0; i < sh->nslots; i++) {
        struct hy__slot *s = &sh->slot_chunks[i >> HY_SLOT_CHUNK_BITS][i & (HY_SLOT_CHUNK - 1)];
        if (s->proc)
            hy__proc_kill_suspended(sh, s->proc, r);
        hy__reap_pending(sh);
    }
    hy__ret_flush(sh);
    hy__mesh_flush(sh);
    phase_barrier(sh, 0);
    /* 2: no process is left anywhere: drain what is in flight (messages to
     * the dead are freed and sent home) until every overflow is empty */
    while (!hy__mesh_idle(sh)) {
        hy__mesh_drain(sh);
        hy__ret_flush(sh);
        hy__mesh_flush(sh);
        sched_yield();
    }
    phase_barrier(sh, 1);
    /* 3: only buffer returns can be in flight now; take them home */
    hy__mesh_drain(sh);
    hy__ret_flush(sh);
    hy__mesh_flush(sh);
    phase_barrier(sh, 2);
    hy__mesh_drain(sh);
    phase_barrier(sh, 3);
}

static void shard_stack_bounds(struct hy_shard *sh)
{
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            sh->sched_stack_lo = lo;
            sh->sched_stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
}

static void shard_pin(struct hy_shard *sh)
{
    if (!hy__rt.cfg.pin || sh->cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sh->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void shard_run(struct hy_shard *sh)
{
    hy__tls_shard = sh;
    shard_stack_bounds(sh);
    shard_pin(sh);
    if (sh->numa_mem >= 0)
        numa_set_preferred(sh->numa_mem);
    char name[16];
    snprintf(name, sizeof(name), "hydra-shard%u", sh->id);
    pthread_setname_np(pthread_self(), name);
    /* read by the stall watchdog (release: pairs with its acquire load);
     * 0 (CLOCK_REALTIME) until then, which the watchdog skips */
    clockid_t clk = CLOCK_THREAD_CPUTIME_ID;
    pthread_getcpuclockid(pthread_self(), &clk);
    sh->tid = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&sh->cpu_clock, clk, __ATOMIC_RELEASE);
    sh->now = hy_now_ns();
    if (hy__crash_shard_init(sh) != 0)
        hy_log(HY_LOG_WARNING, "shard %u: no alternate signal stack: faults will not be isolated",
               sh->id);
    hy__sched_loop(sh);
    shard_shutdown(sh);
    hy__io_fini_shard(sh);
    hy__crash_shard_fini(sh);
    hy__tls_shard = NULL;
}

static void *shard_thread(void *arg)
{
    shard_run(arg);
    return NULL;
}

/* ---- start / stop -------------------------------------------------------------------- */

/* Logs why a configuration is refused, naming the field, and returns err. */
static int bad_config(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_config(int err, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    hy_log(HY_LOG_ERROR, "hy_start: %s (%s)", line, hy_err_name(err));
    return err;
}

static int pick_cpus(const struct hy_config *cfg, const struct hy_topology *topo, int *cpus,
                     unsigned *nshards)
{
    int usable[HY_TOPO_MAX_CPUS];
    int nu = hy_topology_usable_cpus(topo, usable, HY_TOPO_MAX_CPUS);
    if (nu <= 0)
        return bad_config(HY_EBADCPU, "no usable CPU in the affinity mask");
    if (cfg->cpus) {
        if (cfg->nshards == 0 || cfg->nshards > HY_MAX_SHARDS)
            return bad_config(HY_EINVAL,
                              "nshards = %u: with a cpus list it gives the list's length, "
                              "1..%u",
                              cfg->nshards, HY_MAX_SHARDS);
        for (unsigned i = 0; i < cfg->nshards; i++) {
            int c = cfg->cpus[i];
            if (c < 0 || c >= topo->ncpus || !topo->usable[c])
                return bad_config(HY_EBADCPU,
                                  "cpus[%u] = %d: not an online CPU in the affinity mask", i,
                                  c);
            for (unsigned k = 0; k < i; k++)
                if (cfg->cpus[k] == c)
                    return bad_config(HY_EBADCPU, "cpus[%u] = %d: already cpus[%u]", i, c, k);
            cpus[i] = c;
        }
        *nshards = cfg->nshards;
        return 0;
    }
    unsigned n = cfg->nshards ? cfg->nshards : (unsigned)nu;
    if (n > HY_MAX_SHARDS)
        return bad_config(HY_EINVAL, "nshards = %u: more than HY_MAX_SHARDS (%u)", n,
                          HY_MAX_SHARDS);
    if (n > (unsigned)nu)
        hy_log(HY_LOG_WARNING,
               "hy_start: nshards = %u but only %d usable CPUs: shards will share CPUs "
               "(each shard spins when idle, so they slow each other down)",
               n, nu);
    for (unsigned i = 0; i < n; i++)
        cpus[i] = usable[i % (unsigned)nu];
    *nshards = n;
    return 0;
}

static void free_shards(void)
{
    hy__mesh_destroy();
    for (unsigned i = 0; i < HY_MAX_SHARDS; i++) {
        struct hy_shard *sh = hy__rt.shards[i];
        if (!sh)
            continue;
        hy__timer_fini_shard(sh);
        hy__stack_fini_shard(sh);
        if (sh->wake_fd >= 0)
            close(sh->wake_fd);
        /* foreign messages that arrived after the shard's last drain (the
         * result of a blocking call that outlived its caller, a late
         * hy_send_foreign): malloc'd by their thread */
        for (struct hy_msg *m = atomic_exchange(&sh->inbox, NULL), *n; m; m = n) {
            n = m->next;
            if (m->home == HY_HOME_MALLOC)
                free(m);
        }
        hy__msg_pools_fini(sh);
        hy__proc_table_fini(sh);
        hy__shard_mem_free(sh, sh, sizeof(*sh));
        hy__rt.shards[i] = NULL;
    }
    hy__rt.nshards = 0;
}

static int validate(const struct hy_config *cfg)
{
    if (cfg->ring_size < 16 || (cfg->ring_size & (cfg->ring_size - 1)))
        return bad_config(HY_EINVAL, "ring_size = %u: must be a power of two, at least 16",
                          cfg->ring_size);
    if (cfg->run_batch == 0)
        return bad_config(HY_EINVAL, "run_batch = 0: must be at least 1");
    if (cfg->wake_defer_ns > 1000000000u)
        return bad_config(HY_EINVAL, "wake_defer_ns = %" PRIu64 ": must be at most 1 s",
                          cfg->wake_defer_ns);
    if (cfg->xshard_spin_ns > 1000000u)
        return bad_config(HY_EINVAL, "xshard_spin_ns = %" PRIu64 ": must be at most 1 ms",
                          cfg->xshard_spin_ns);
    if (cfg->reductions == 0 || cfg->reductions > INT32_MAX)
        return bad_config(HY_EINVAL, "reductions = %u: must be 1..%d", cfg->reductions,
                          INT32_MAX);
    if (cfg->stack_mode != HY_STACK_GUARDED && cfg->stack_mode != HY_STACK_COMPACT)
        return bad_config(HY_EINVAL,
                          "stack_mode = %d: must be HY_STACK_GUARDED or HY_STACK_COMPACT",
                          (int)cfg->stack_mode);
    if (cfg->stack_size < 8192)
        return bad_config(HY_EINVAL, "stack_size = %zu: must be at least 8192 bytes",
                          cfg->stack_size);
    if (cfg->compact_stack_size < 16384)
        return bad_config(HY_EINVAL, "compact_stack_size = %zu: must be at least 16384 bytes",
                          cfg->compact_stack_size);
    if (cfg->max_message_size == 0 || cfg->max_message_size > (64u << 20))
        return bad_config(HY_EINVAL, "max_message_size = %zu: must be 1..%u bytes",
                          cfg->max_message_size, 64u << 20);
    if (cfg->node_id == 0 || cfg->node_id > 0xffffffu)
        return bad_config(HY_EINVAL, "node_id = %u: must be 1..%u", cfg->node_id, 0xffffffu);
    return 0;
}

static int setup(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg, bool on_caller)
{
    int rc = validate(cfg);
    if (rc)
        return rc;
    enum hy_io_backend io_kind;
    if ((rc = hy__io_select(cfg->io_backend, &io_kind)) != 0)
        return rc;
    struct hy_topology *topo = malloc(sizeof(*topo));
    if (!topo)
        return HY_ENOMEM;
    if (cfg->topology)
        *topo = *cfg->topology;
    else if ((rc = hy_topology_discover(topo)) != 0) {
        free(topo);
        return rc;
    }
    int cpus[HY_MAX_SHARDS];
    unsigned n = 0;
    rc = pick_cpus(cfg, topo, cpus, &n);
    if (rc) {
        free(topo);
        return rc;
    }
    pthread_rwlock_wrlock(&hy__foreign_lock);
    memset(&hy__rt, 0, sizeof(hy__rt));
    pthread_rwlock_unlock(&hy__foreign_lock);
    hy__rt.cfg = *cfg;
    hy__rt.cfg.cpus = NULL;
    hy__rt.cfg.topology = NULL;
    hy__rt.nshards = n;
    hy__rt.node_id = cfg->node_id;
    uint32_t c = cfg->node_creation;
    if (!c) {
        /* fresh per start: time-seeded, never repeating within this process */
        uint32_t seed = atomic_fetch_add(&creation_seed, 1);
        c = (uint32_t)((hy_now_ns() / 1000u) ^ ((uint32_t)getpid() << 8)) + seed * 7919u;
        c &= 0xffffffu;
        if (!c)
            c = 1;
    }
    hy__rt.creation = c & 0xffffffu;
    for (unsigned i = 0; i < n; i++) {
        int node = topo->node_of[cpus[i]] < 0 ? 0 : topo->node_of[cpus[i]];
        struct hy_shard tmp = {.numa_mem = topo->numa_memory ? node : -1};
        struct hy_shard *sh = hy__shard_mem_alloc(&tmp, sizeof(*sh));
        if (!sh) {
            free_shards();
            free(topo);
            return HY_ENOMEM;
        }
        memset(sh, 0, sizeof(*sh));
        sh->id = i;
        sh->pid_hi = hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)i, 0, 0).hi;
        sh->small_max = (uint32_t)(cfg->max_message_size < HY__FAST_LEN_MAX
                                       ? cfg->max_message_size
                                       : HY__FAST_LEN_MAX);
        sh->cpu = cpus[i];
        sh->numa = node;
        sh->numa_mem = tmp.numa_mem;
        sh->in_runtime = true;
        sh->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        atomic_store_explicit(&sh->st.io_backend, (uint64_t)io_kind, memory_order_relaxed);
        hy__rt.shards[i] = sh;
        hy__timer_init_shard(sh);
        hy__stack_init_shard(sh);
    }
    free(topo);
    if ((rc = hy__mesh_create()) != 0) {
        free_shards();
        return rc;
    }
    hy__rt.main_fn = main_fn;
    hy__rt.main_arg = arg;
    hy__rt.stop_on_main_exit = main_fn && !cfg->keep_running;
    if (on_caller) {
        /* shard 0 runs on the caller: the stall watchdog signals it there */
        hy__rt.shards[0]->thread = pthread_self();
        hy__rt.shards[0]->on_caller_thread = true;
    }
    if (main_fn) {
        struct hy_shard *sh0 = hy__rt.shards[0];
        hy__tls_shard = sh0;
        rc = hy__proc_create(sh0, main_fn, arg, NULL, NULL, 0, &hy__rt.main_pid, NULL);
        hy__tls_shard = NULL;
        if (rc) {
            free_shards();
            return rc;
        }
    }
    return 0;
}

static int launch(unsigned first)
{
    for (unsigned i = first; i < hy__rt.nshards; i++) {
        struct hy_shard *sh = hy__rt.shards[i];
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1u << 20);
        int e = pthread_create(&sh->thread, &attr, shard_thread, sh);
        pthread_attr_destroy(&attr);
        if (e != 0) {
            atomic_store(&hy__rt.stop, 1);
            for (unsigned k = first; k < i; k++)
                hy__wake_shard(hy__rt.shards[k]);
            /* the started shards wait for the others at the barriers:
             * count the missing ones in */
            for (int ph = 0; ph < 4; ph++)
                atomic_fetch_add(&hy__rt.phase_count[ph], (int)(hy__rt.nshards - i));
            for (unsigned k = first; k < i; k++)
                pthread_join(hy__rt.shards[k]->thread, NULL);
            return HY_ENOMEM;
        }
    }
    return 0;
}

static int start_common(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg, bool on_caller)
{
    if (!cfg)
        return HY_EINVAL;
    if (hy__tls_shard)
        return HY_EPERM;
    pthread_mutex_lock(&lifecycle_lock);
    int expected = 0;
    if (!atomic_compare_exchange_strong(&hy__rt.state, &expected, 1)) {
        pthread_mutex_unlock(&lifecycle_lock);
        return HY_ESTARTED;
    }
    int rc = setup(cfg, main_fn, arg, on_caller);
    if (rc == 0)
        hy__crash_install();
    if (rc == 0 && (rc = hy__stall_start()) == 0 &&
        (rc = hy__blocking_start(hy__rt.cfg.blocking_threads)) == 0) {
        atomic_store(&hy__rt.state, 2);
        rc = launch(on_caller ? 1 : 0);
        if (rc) {
            hy__blocking_stop();
            hy__stall_stop();
            hy__crash_uninstall();
            free_shards();
        }
    } else if (rc == 0) {
        hy__crash_uninstall();
        free_shards();
    }
    if (rc)
        atomic_store(&hy__rt.state, 0);
    else
        run_active = on_caller;
    pthread_mutex_unlock(&lifecycle_lock);
    return rc;
}

int hy_start(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg)
{
    return start_common(cfg, main_fn, arg, false);
}

static void finish(void)
{
    /* no foreign sender may still be using a shard's inbox or wake_fd */
    pthread_rwlock_wrlock(&hy__foreign_lock);
    atomic_store(&hy__rt.state, 3);
    pthread_rwlock_unlock(&hy__foreign_lock);
    hy__stall_stop();
    hy__blocking_stop();
    hy__crash_uninstall();
    free_shards();
    hy__name_fini();
    hy__symbol_release();
    atomic_store(&hy__rt.state, 0);
}

int hy_run(const struct hy_config *cfg, hy_proc_fn main_fn, void *arg)
{
    /* shard 0 pins and renames the calling thread: give it back as it was */
    cpu_set_t saved_cpus;
    bool have_cpus = pthread_getaffinity_np(pthread_self(), sizeof(saved_cpus), &saved_cpus) == 0;
    char saved_name[16];
    bool have_name = pthread_getname_np(pthread_self(), saved_name, sizeof(saved_name)) == 0;
    int rc = start_common(cfg, main_fn, arg, true);
    if (rc)
        return rc;
    shard_run(hy__rt.shards[0]);
    if (have_cpus)
        pthread_setaffinity_np(pthread_self(), sizeof(saved_cpus), &saved_cpus);
    if (have_name)
        pthread_setname_np(pthread_self(), saved_name);
    for (unsigned i = 1; i < hy__rt.nshards; i++)
        pthread_join(hy__rt.shards[i]->thread, NULL);
    pthread_mutex_lock(&lifecycle_lock);
    finish();
    run_active = false;
    run_gen++;
    pthread_cond_broadcast(&run_done);
    pthread_mutex_unlock(&lifecycle_lock);
    return 0;
}

static void request_stop(void)
{
    atomic_store(&hy__rt.stop, 1);
    for (unsigned i = 0; i < hy__rt.nshards; i++)
        hy__wake_shard(hy__rt.shards[i]);
}

int hy_wait(void)
{
    if (hy__tls_shard)
        return HY_EPERM;
    pthread_mutex_lock(&lifecycle_lock);
    if (atomic_load(&hy__rt.state) != 2 && atomic_load(&hy__rt.state) != 3) {
        pthread_mutex_unlock(&lifecycle_lock);
        return HY_ENOTSTARTED;
    }
    if (run_active) {
        /* shard 0 runs on hy_run()'s thread, which joins and frees */
        uint64_t gen = run_gen;
        while (run_gen == gen)
            pthread_cond_wait(&run_done, &lifecycle_lock);
        pthread_mutex_unlock(&lifecycle_lock);
        return 0;
    }
    for (unsigned i = 0; i < hy__rt.nshards; i++)
        pthread_join(hy__rt.shards[i]->thread, NULL);
    finish();
    pthread_mutex_unlock(&lifecycle_lock);
    return 0;
}

int hy_stop(void)
{
    int s = atomic_load(&hy__rt.state);
    if (s != 2 && s != 3)
        return HY_ENOTSTARTED;
    if (hy__tls_shard) {
        /* from inside: just ask; hy_run/hy_wait does the joining */
        atomic_store(&hy__rt.state, 3);
        request_stop();
        return 0;
    }
    atomic_store(&hy__rt.state, 3);
    request_stop();
    return hy_wait();
}
