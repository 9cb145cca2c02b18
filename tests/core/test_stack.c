/* Tests of core/stack.c: guarded stacks (depth, per-spawn size, the pool,
 * reuse, trimming after a spike) and compact copy-stack processes (locals
 * that survive being switched out, per-spawn mode, mixed with guarded
 * processes and messaging them, on one shard and across shards).
 *
 * Process bodies record failures with HY_CHECK (cmocka's assertions must not
 * longjmp off a coroutine stack); hy_test_run() asserts them afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "shard_internal.h"
#include "test_support.h"

#define TAG_STOP 1
#define TAG_PING 2
#define TAG_DONE 3
#define TAG_BALL 4

#define SECOND 1000000000LL
#define KIB 1024u

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill(uint64_t *a, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++)
        a[i] = xorshift(&s);
}

static bool intact(const uint64_t *a, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++)
        if (a[i] != xorshift(&s))
            return false;
    return true;
}

static uintptr_t frame(void)
{
    return (uintptr_t)__builtin_frame_address(0);
}

/* Recursion with 1 KiB of live locals per level; returns the lowest frame
 * address reached and checks the locals on the way back up. */
struct deep {
    unsigned depth;
    unsigned yield_every; /* 0: never yield */
    uintptr_t lowest;
    bool ok;
};

static uint64_t __attribute__((noinline)) recurse(struct deep *d, unsigned depth)
{
    volatile uint64_t pad[128];
    for (unsigned i = 0; i < 128; i++)
        pad[i] = depth * 1000u + i;
    uintptr_t f = frame();
    if (!d->lowest || f < d->lowest)
        d->lowest = f;
    uint64_t sum = 0;
    if (depth > 0)
        sum = recurse(d, depth - 1);
    if (d->yield_every && depth % d->yield_every == 0)
        hy_yield();
    for (unsigned i = 0; i < 128; i++)
        if (pad[i] != depth * 1000u + i)
            d->ok = false;
    return sum + pad[depth % 128];
}

/* ---- guarded stacks ------------------------------------------------------------ */

struct depth_res {
    uintptr_t top;
    struct deep d;
    bool done;
};

static void deep_child(void *arg)
{
    struct depth_res *r = arg;
    r->top = frame();
    r->d.ok = true;
    recurse(&r->d, r->d.depth);
    r->done = true;
}

static bool res_done(void *arg)
{
    return ((struct depth_res *)arg)->done;
}

struct depth_ctx {
    struct depth_res def, big, compact, compact2;
};

static void depth_main(void *arg)
{
    struct depth_ctx *c = arg;
    /* default 64 KiB: 36 levels of ~1 KiB */
    c->def.d.depth = 36;
    HY_CHECK_EQ(hy_spawn(deep_child, &c->def, NULL), 0);
    HY_CHECK(hy_test_wait_until(res_done, &c->def, 5000));
    /* per-spawn 1 MiB: 640 levels */
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.stack_size = 1024 * KIB;
    c->big.d.depth = 640;
    HY_CHECK_EQ(hy_spawn_opt(deep_child, &c->big, &o, NULL), 0);
    HY_CHECK(hy_test_wait_until(res_done, &c->big, 5000));
    /* compact: the shared stack is 256 KiB by default; two processes 160
     * and 100 levels deep, yielding on the way back up, so that each switch
     * copies one out and the other in */
    o = (struct hy_spawn_opts)HY_SPAWN_OPTS_INIT;
    o.stack_mode = HY_STACK_COMPACT;
    c->compact.d.depth = 160;
    c->compact.d.yield_every = 8;
    c->compact2.d.depth = 100;
    c->compact2.d.yield_every = 5;
    HY_CHECK_EQ(hy_spawn_opt(deep_child, &c->compact, &o, NULL), 0);
    HY_CHECK_EQ(hy_spawn_opt(deep_child, &c->compact2, &o, NULL), 0);
    HY_CHECK(hy_test_wait_until(res_done, &c->compact, 5000));
    HY_CHECK(hy_test_wait_until(res_done, &c->compact2, 5000));
}

static void test_stack_deep_recursion_and_per_spawn_size(void **state)
{
    (void)state;
    struct depth_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(1, depth_main, &c);
    assert_true(c.def.done && c.def.d.ok);
    assert_true(c.big.done && c.big.d.ok);
    assert_true(c.compact.done && c.compact.d.ok);
    assert_true(c.compact2.done && c.compact2.d.ok);
    assert_true(c.compact.top == c.compact2.top); /* the shared stack */
    /* the recursion really went that deep */
    assert_true(c.def.top - c.def.d.lowest >= 36 * KIB);
    assert_true(c.big.top - c.big.d.lowest >= 640 * KIB);
    assert_true(c.compact.top - c.compact.d.lowest >= 160 * KIB);
}

/* ---- the pool -------------------------------------------------------------------- */

#define POOL_N 8

struct pool_ctx {
    uintptr_t first[POOL_N], second[POOL_N];
    _Atomic int registered;
    uint64_t pooled0, pooled_after_first, pooled_during_second, pooled_after_second;
};

struct pool_arg {
    struct pool_ctx *c;
    uintptr_t *slot;
};

/* Records where its stack is (the entry frame sits at the same place on the
 * same stack) and waits to be told to stop. */
static void stack_reporter(void *arg)
{
    struct pool_arg *a = arg;
    *a->slot = frame();
    atomic_fetch_add(&a->c->registered, 1);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

static bool registered_n(void *arg)
{
    struct pool_ctx *c = arg;
    return atomic_load(&c->registered) == POOL_N;
}

static uint64_t pooled(unsigned shard)
{
    struct hy_stats st;
    hy_stats_get(shard, &st);
    return st.stacks_pooled;
}

static void spawn_reporters(struct pool_ctx *c, uintptr_t *slots, struct pool_arg *args,
                            hy_pid *pids)
{
    atomic_store(&c->registered, 0);
    for (int i = 0; i < POOL_N; i++) {
        args[i] = (struct pool_arg){c, &slots[i]};
        HY_CHECK_EQ(hy_spawn(stack_reporter, &args[i], &pids[i]), 0);
    }
    HY_CHECK(hy_test_wait_until(registered_n, c, 5000));
}

static void pool_main(void *arg)
{
    struct pool_ctx *c = arg;
    struct pool_arg args[POOL_N];
    hy_pid pids[POOL_N];
    c->pooled0 = pooled(0);
    spawn_reporters(c, c->first, args, pids);
    for (int i = 0; i < POOL_N; i++)
        hy_send(pids[i], TAG_STOP, NULL, 0);
    HY_CHECK(hy_test_quiesce(1, 5000));
    c->pooled_after_first = pooled(0);
    spawn_reporters(c, c->second, args, pids);
    c->pooled_during_second = pooled(0);
    for (int i = 0; i < POOL_N; i++)
        hy_send(pids[i], TAG_STOP, NULL, 0);
    HY_CHECK(hy_test_quiesce(1, 5000));
    c->pooled_after_second = pooled(0);
}

static void test_stack_pooled_and_reused(void **state)
{
    (void)state;
    struct pool_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(1, pool_main, &c);
    /* eight stacks went back to the pool, were taken again, came back */
    assert_int_equal(c.pooled_after_first, c.pooled0 + POOL_N);
    assert_int_equal(c.pooled_during_second, c.pooled0);
    assert_int_equal(c.pooled_after_second, c.pooled0 + POOL_N);
    /* eight distinct stacks the first time, the very same ones again */
    for (int i = 0; i < POOL_N; i++) {
        for (int k = 0; k < i; k++)
            assert_true(c.first[i] != c.first[k]);
        bool found = false;
        for (int k = 0; k < POOL_N; k++)
            found |= c.second[i] == c.first[k];
        assert_true(found);
    }
}

/* After a spike the pool gives back all but stack_pool_keep stacks. */
#define SPIKE_N 64
#define KEEP 4

struct spike_ctx {
    uint64_t after_spike, trimmed, after_reuse;
    bool trim_seen;
    _Atomic unsigned reused_ok, reused_done;
};

/* On a stack whose memory a trim gave back: ~36 KiB of locals, a yield in
 * the middle, everything still there afterwards. */
static void reuser(void *arg)
{
    struct spike_ctx *c = arg;
    struct deep d = {.depth = 32, .yield_every = 8, .ok = true};
    recurse(&d, d.depth);
    if (d.ok)
        atomic_fetch_add(&c->reused_ok, 1);
    atomic_fetch_add(&c->reused_done, 1);
}

static bool reused_all(void *arg)
{
    return atomic_load(&((struct spike_ctx *)arg)->reused_done) == SPIKE_N;
}

static void parked(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    if (hy_recv_tag(TAG_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

static void spike_main(void *arg)
{
    struct spike_ctx *c = arg;
    hy_pid pids[SPIKE_N];
    for (int i = 0; i < SPIKE_N; i++)
        HY_CHECK_EQ(hy_spawn(parked, NULL, &pids[i]), 0);
    hy_yield(); /* they all take a stack */
    for (int i = 0; i < SPIKE_N; i++)
        hy_send(pids[i], TAG_STOP, NULL, 0);
    HY_CHECK(hy_test_quiesce(1, 5000));
    c->after_spike = pooled(0);
    /* Trimming runs when the shard is about to sleep, at most once a second:
     * poll coarsely so that the shard does get to sleep in between. */
    uint64_t deadline = hy_now_ns() + 5 * (uint64_t)SECOND;
    while (hy_now_ns() < deadline) {
        c->trimmed = pooled(0);
        if (c->trimmed <= KEEP) {
            c->trim_seen = true;
            break;
        }
        hy_sleep_ns(50 * 1000 * 1000);
    }
    /* the trimmed stacks are taken again, and work */
    for (int i = 0; i < SPIKE_N; i++)
        HY_CHECK_EQ(hy_spawn(reuser, c, NULL), 0);
    HY_CHECK(hy_test_wait_until(reused_all, c, 5000));
    HY_CHECK(hy_test_quiesce(1, 5000));
    c->after_reuse = pooled(0);
}

static void test_stack_pool_trimmed_after_spike(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.stack_pool_keep = KEEP;
    struct spike_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run_cfg(&cfg, spike_main, &c);
    assert_true(c.after_spike >= SPIKE_N);
    assert_true(c.trim_seen);
    assert_int_equal(c.trimmed, KEEP);
    assert_int_equal(c.reused_ok, SPIKE_N);
    assert_true(c.after_reuse >= SPIKE_N);
}

/* Guarded stacks come in slabs whose guard pages do not split the mapping
 * (where the kernel has MADV_GUARD_INSTALL): a few thousand processes add a
 * few kernel mappings, not two per process (a million of them would need
 * vm.max_map_count raised and pay an mmap + mprotect each). */
#define MANY 2048

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

static bool kernel_has_guard_install(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, (size_t)ps * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED)
        return false;
    bool ok = madvise(m, (size_t)ps, MADV_GUARD_INSTALL) == 0;
    munmap(m, (size_t)ps * 2);
    return ok;
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int ch;
    if (!f)
        return -1;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

struct many_ctx {
    long maps_before, maps_after;
    _Atomic unsigned ran;
};

static void many_parked(void *arg)
{
    struct many_ctx *c = arg;
    struct hy_msg *m;
    atomic_fetch_add(&c->ran, 1);
    if (hy_recv_tag(TAG_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

static bool many_ran(void *arg)
{
    return atomic_load(&((struct many_ctx *)arg)->ran) == MANY;
}

static void many_main(void *arg)
{
    struct many_ctx *c = arg;
    static hy_pid pids[MANY];
    c->maps_before = count_maps();
    for (int i = 0; i < MANY; i++)
        HY_CHECK_EQ(hy_spawn(many_parked, c, &pids[i]), 0);
    HY_CHECK(hy_test_wait_until(many_ran, c, 20000));
    c->maps_after = count_maps();
    for (int i = 0; i < MANY; i++)
        hy_send(pids[i], TAG_STOP, NULL, 0);
    HY_CHECK(hy_test_quiesce(1, 20000));
}

static void test_stack_guarded_slabs_few_mappings(void **state)
{
    (void)state;
    if (!kernel_has_guard_install())
        skip();
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer maps memory of its own for every fiber (process) it
     * tracks, so the process's mapping count says nothing about stacks */
    skip();
#endif
    struct many_ctx c = {0};
    hy_test_run(1, many_main, &c);
    assert_true(c.maps_before > 0);
    assert_int_equal(c.ran, MANY);
    /* slabs of 16, 32, ... 256 stacks: ~10 mappings; one per process or
     * more before */
    assert_true(c.maps_after - c.maps_before < MANY / 16);
}

/* Stack tops backed ahead (stack.c, populate_tops): carving a stack from a
 * slab backs the top pages of the next stacks of its batch in one call, so
 * a stack not yet taken by any process is resident already; its guard page
 * is not touched, and the stacks still run. Without the batch, no process
 * has touched those pages: mincore() says they are not resident. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static bool kernel_populates_by_process_madvise(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    int pidfd = (int)syscall(SYS_pidfd_open, (long)getpid(), 0L);
    if (pidfd < 0)
        return false;
    void *m = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok = false;
    if (m != MAP_FAILED) {
        struct iovec iov = {m, (size_t)ps};
        ok = syscall(SYS_process_madvise, pidfd, &iov, 1ul, MADV_POPULATE_WRITE, 0u) == ps;
        munmap(m, (size_t)ps);
    }
    close(pidfd);
    return ok;
}

/* 1 if the page at a is resident, 0 if not or not mapped. */
static int resident(uintptr_t a)
{
    long ps = sysconf(_SC_PAGESIZE);
    unsigned char v = 0;
    if (mincore((void *)(a & ~(uintptr_t)(ps - 1)), (size_t)ps, &v) != 0)
        return 0;
    return v & 1;
}

struct tops_ctx {
    uintptr_t top[2];          /* a frame in each parked process's top page */
    _Atomic unsigned ran;
    int next_resident[2];      /* the page one stride above each, before it is taken */
    int guard_resident[2];     /* the guard page just above each top page */
    int ran_after;
};

static void tops_parked(void *arg)
{
    struct tops_ctx *c = arg;
    struct hy_msg *m;
    unsigned i = atomic_load(&c->ran);
    c->top[i] = frame();
    atomic_fetch_add(&c->ran, 1);
    if (hy_recv_tag(TAG_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

static void tops_main(void *arg)
{
    struct tops_ctx *c = arg;
    uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t stride = 64 * KIB + ps; /* the default stack size and its guard page */
    hy_pid pid[2];
    for (unsigned i = 0; i < 2; i++) {
        HY_CHECK_EQ(hy_spawn(tops_parked, c, &pid[i]), 0);
        /* it runs as soon as this process waits */
        uint64_t t0 = hy_now_ns();
        while (atomic_load(&c->ran) != i + 1 && hy_now_ns() - t0 < 5 * (uint64_t)SECOND)
            hy_sleep_ns(100000);
        HY_CHECK_EQ(atomic_load(&c->ran), i + 1);
        uintptr_t top_page = c->top[i] & ~(ps - 1);
        c->next_resident[i] = resident(top_page + stride);
        c->guard_resident[i] = resident(top_page + ps);
    }
    for (unsigned i = 0; i < 2; i++)
        hy_send(pid[i], TAG_STOP, NULL, 0);
    HY_CHECK(hy_test_quiesce(1, 20000));
    c->ran_after = 1;
}

static void test_stack_tops_backed_ahead(void **state)
{
    (void)state;
    if (!kernel_populates_by_process_madvise())
        skip();
    struct hy_config cfg;
    hy_config_init(&cfg);
    if (cfg.stack_size != 64 * KIB)
        skip();
    struct tops_ctx c = {0};
    hy_test_run(1, tops_main, &c);
    assert_int_equal(atomic_load(&c.ran), 2);
    assert_true(c.ran_after);
    /* the second process took the stack one stride above the first unless
     * the first was the last of its slab; either way one of the two had an
     * untaken stack above it in its batch (a batch holds 16 or more) */
    assert_true(c.next_resident[0] || c.next_resident[1]);
    /* guard pages are never backed */
    assert_false(c.guard_resident[0]);
    assert_false(c.guard_resident[1]);
}

/* hy__mem_populate (stack.c; a chunk of process records is backed by it in
 * proc.c): the whole pages inside the range are resident after one call,
 * the partial page at either end is left alone. */
static void test_stack_mem_populate_whole_pages(void **state)
{
    (void)state;
    long ps = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)ps * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    if (madvise(m + 7 * ps, (size_t)ps, MADV_POPULATE_WRITE) != 0) {
        munmap(m, (size_t)ps * 8);
        skip(); /* the kernel lacks the advice (before Linux 5.14) */
    }
    hy__mem_populate(m + 100, (size_t)ps * 6); /* whole pages 1..5, partial 0 and 6 */
    unsigned char v[8];
    assert_int_equal(mincore(m, (size_t)ps * 8, v), 0);
    assert_false(v[0] & 1);
    for (int i = 1; i <= 5; i++)
        assert_true(v[i] & 1);
    assert_false(v[6] & 1);
    assert_true(v[7] & 1); /* the probe above */
    munmap(m, (size_t)ps * 8);
}

/* ---- compact stacks ----------------------------------------------------------------- */

#define ARR 256

struct keeper_res {
    uintptr_t entry_frame;
    bool ok;
    bool done;
};

struct keeper_arg {
    struct keeper_res *res;
    unsigned idx;
    unsigned yields;
    _Atomic unsigned *done_count;
};

/* A second array one frame down, with its own seed, checked at each yield. */
static bool __attribute__((noinline)) keep_nested(struct keeper_arg *a, const uint64_t *outer)
{
    uint64_t inner[ARR / 2];
    fill(inner, ARR / 2, a->idx + 100000u);
    bool ok = true;
    for (unsigned y = 0; y < a->yields; y++) {
        hy_yield();
        if (!intact(inner, ARR / 2, a->idx + 100000u) || !intact(outer, ARR, a->idx))
            ok = false;
    }
    return ok;
}

static void keeper(void *arg)
{
    struct keeper_arg *a = arg;
    uint64_t arr[ARR];
    a->res->entry_frame = frame();
    fill(arr, ARR, a->idx);
    bool ok = keep_nested(a, arr);
    /* also a few yields at this depth */
    for (unsigned y = 0; y < 4; y++) {
        hy_yield();
        ok = ok && intact(arr, ARR, a->idx);
    }
    a->res->ok = ok;
    a->res->done = true;
    atomic_fetch_add(a->done_count, 1);
}

struct keepers_ctx {
    unsigned n;
    int compact_every; /* 0: mode from the runtime; k: every k-th compact */
    struct keeper_res *res;
    struct keeper_arg *args;
    _Atomic unsigned done;
};

static bool keepers_done(void *arg)
{
    struct keepers_ctx *c = arg;
    return atomic_load(&c->done) == c->n;
}

static void keepers_main(void *arg)
{
    struct keepers_ctx *c = arg;
    for (unsigned i = 0; i < c->n; i++) {
        c->args[i] = (struct keeper_arg){&c->res[i], i, 20 + i % 7, &c->done};
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        if (c->compact_every && i % (unsigned)c->compact_every == 0)
            o.stack_mode = HY_STACK_COMPACT;
        else if (c->compact_every)
            o.stack_mode = HY_STACK_GUARDED;
        HY_CHECK_EQ(hy_spawn_opt(keeper, &c->args[i], &o, NULL), 0);
    }
    HY_CHECK(hy_test_wait_until(keepers_done, c, 10000));
}

static void run_keepers(const struct hy_config *cfg, int compact_every, unsigned n,
                        struct keepers_ctx *c)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->compact_every = compact_every;
    c->res = calloc(n, sizeof(*c->res));
    c->args = calloc(n, sizeof(*c->args));
    assert_non_null(c->res);
    assert_non_null(c->args);
    hy_test_run_cfg(cfg, keepers_main, c);
    for (unsigned i = 0; i < n; i++) {
        assert_true(c->res[i].done);
        assert_true(c->res[i].ok);
    }
}

static void test_stack_compact_locals_survive(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.stack_mode = HY_STACK_COMPACT;
    struct keepers_ctx c;
    unsigned n = (unsigned)hy_test_scaled(64);
    run_keepers(&cfg, 0, n, &c);
    /* all of them really ran on the one shared stack */
    for (unsigned i = 1; i < n; i++)
        assert_true(c.res[i].entry_frame == c.res[0].entry_frame);
    free(c.res);
    free(c.args);
}

static void test_stack_compact_per_spawn(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1; /* guarded by default */
    struct keepers_ctx c;
    unsigned n = (unsigned)hy_test_scaled(64);
    run_keepers(&cfg, 2, n, &c);
    /* the even ones shared the compact stack; the odd ones each had their own */
    for (unsigned i = 0; i < n; i++) {
        if (i % 2 == 0) {
            assert_true(c.res[i].entry_frame == c.res[0].entry_frame);
        } else {
            assert_true(c.res[i].entry_frame != c.res[0].entry_frame);
            for (unsigned k = 1; k < i; k += 2)
                assert_true(c.res[i].entry_frame != c.res[k].entry_frame);
        }
    }
    free(c.res);
    free(c.args);
}

/* ---- compact and guarded processes messaging each other ---------------------------- */

#define PAYLOAD 512

struct pinger_arg {
    hy_pid parent;
    unsigned idx;
    unsigned rounds;
    bool lead;          /* sends the first ping */
};

struct ping {
    uint32_t count;
    uint32_t idx;
    uint64_t body[PAYLOAD / 8];
};

/* Plays ping-pong with its partner (whose pid arrives first), keeping an
 * array on its stack and sending payloads built on its stack. */
static void pinger(void *arg)
{
    struct pinger_arg *a = arg;
    uint64_t mine[ARR];
    fill(mine, ARR, 7000u + a->idx * 2 + a->lead);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_PING, &m, 5 * SECOND) != 0) {
        HY_CHECK(!"no partner pid");
        return;
    }
    hy_pid partner;
    memcpy(&partner, m->data, sizeof(partner));
    hy_msg_free(m);
    bool ok = true;
    uint32_t expect = a->lead ? 1 : 0;
    struct ping p;
    if (a->lead) {
        p.count = 0;
        p.idx = a->idx;
        fill(p.body, PAYLOAD / 8, 0);
        hy_send(partner, TAG_BALL, &p, sizeof(p));
    }
    for (unsigned r = 0; r < a->rounds; r++) {
        if (hy_recv_tag(TAG_BALL, &m, 5 * SECOND) != 0) {
            HY_CHECK(!"ping lost");
            ok = false;
            break;
        }
        struct ping in;
        memcpy(&in, m->data, sizeof(in));
        hy_msg_free(m);
        if (in.count != expect || in.idx != a->idx || !intact(in.body, PAYLOAD / 8, in.count))
            ok = false;
        if (!intact(mine, ARR, 7000u + a->idx * 2 + a->lead))
            ok = false;
        p.count = in.count + 1;
        p.idx = a->idx;
        fill(p.body, PAYLOAD / 8, p.count);
        if (!(a->lead && r == a->rounds - 1))
            hy_send(partner, TAG_BALL, &p, sizeof(p));
        expect = in.count + 2;
    }
    hy_send(a->parent, TAG_DONE, &ok, sizeof(ok));
}

struct mixed_ctx {
    unsigned pairs;
    unsigned ok, done;
};

static void mixed_main(void *arg)
{
    struct mixed_ctx *c = arg;
    unsigned nshards = hy_shard_count();
    for (unsigned i = 0; i < c->pairs; i++) {
        struct pinger_arg a = {hy_self(), i, 100, true};
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.arg_size = sizeof(a);
        /* pair i: a compact leader and a guarded follower, placed on the
         * same shard or on different ones */
        o.stack_mode = HY_STACK_COMPACT;
        o.shard = (int)(i % nshards);
        hy_pid lead, follow;
        HY_CHECK_EQ(hy_spawn_opt(pinger, &a, &o, &lead), 0);
        a.lead = false;
        o.stack_mode = HY_STACK_GUARDED;
        o.shard = (int)((i / 2) % nshards);
        HY_CHECK_EQ(hy_spawn_opt(pinger, &a, &o, &follow), 0);
        hy_send(lead, TAG_PING, &follow, sizeof(follow));
        hy_send(follow, TAG_PING, &lead, sizeof(lead));
    }
    for (unsigned i = 0; i < 2 * c->pairs; i++) {
        struct hy_msg *m;
        if (hy_recv_tag(TAG_DONE, &m, 10 * SECOND) != 0)
            break;
        bool ok;
        memcpy(&ok, m->data, sizeof(ok));
        hy_msg_free(m);
        c->done++;
        c->ok += ok;
    }
}

static void test_stack_mixed_modes_messaging(void **state)
{
    (void)state;
    struct mixed_ctx c = {0};
    c.pairs = 16;
    hy_test_run(2, mixed_main, &c);
    assert_int_equal(c.done, 2 * c.pairs);
    assert_int_equal(c.ok, 2 * c.pairs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_deep_recursion_and_per_spawn_size),
        cmocka_unit_test(test_stack_pooled_and_reused),
        cmocka_unit_test(test_stack_pool_trimmed_after_spike),
        cmocka_unit_test(test_stack_guarded_slabs_few_mappings),
        cmocka_unit_test(test_stack_tops_backed_ahead),
        cmocka_unit_test(test_stack_mem_populate_whole_pages),
        cmocka_unit_test(test_stack_compact_locals_survive),
        cmocka_unit_test(test_stack_compact_per_spawn),
        cmocka_unit_test(test_stack_mixed_modes_messaging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
