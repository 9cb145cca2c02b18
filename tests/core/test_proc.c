/* Tests of core/proc.c: spawn (local, onto another shard, with a copied
 * argument, with bad options), self, yield and FIFO run order, every exit
 * path with its cleanup handlers, the per-process arena, calls from outside
 * a process, stale pids and slot reuse, and spawn/exit churn.
 *
 * Process bodies record failures with HY_CHECK (cmocka's assertions must not
 * longjmp off a coroutine stack); hy_test_run() asserts them afterwards. */
#define _GNU_SOURCE
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "signals.h"
#include "test_support.h"

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif

#define TAG_MSG 1
#define TAG_STOP 2
#define TAG_REPLY 3

#define SECOND 1000000000LL

/* ---- spawn, self, yield ----------------------------------------------------- */

struct seen {
    bool ran;
    bool in_process;
    int shard;
    hy_pid self;
};

static void record_self(void *arg)
{
    struct seen *s = arg;
    s->ran = true;
    s->in_process = hy_in_process();
    s->shard = hy_shard_id();
    s->self = hy_self();
}

static void spawn_self_yield_main(void *arg)
{
    (void)arg;
    struct seen s = {0};
    hy_pid me = hy_self();
    HY_CHECK(!hy_pid_is_none(me));
    HY_CHECK(hy_in_process());
    HY_CHECK_EQ(hy_pid_node(me), hy_node_id());
    HY_CHECK_EQ(hy_pid_creation(me), hy_node_creation());
    hy_pid child = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn(record_self, &s, &child), 0);
    HY_CHECK(!hy_pid_is_none(child));
    HY_CHECK(!hy_pid_eq(child, me));
    /* the child runs only once we let it */
    HY_CHECK(!s.ran);
    HY_CHECK_EQ(hy_yield(), 0);
    /* ...and one yield is enough: it was queued ahead of us */
    HY_CHECK(s.ran);
    HY_CHECK(s.in_process);
    HY_CHECK_EQ(s.shard, 0);
    HY_CHECK(hy_pid_eq(s.self, child));
    HY_CHECK_EQ(hy_pid_shard(child), 0);
    HY_CHECK_EQ(hy_pid_node(child), hy_node_id());
    /* hy_self is ours again */
    HY_CHECK(hy_pid_eq(hy_self(), me));
    /* spawning with a NULL out is fine */
    s.ran = false;
    HY_CHECK_EQ(hy_spawn(record_self, &s, NULL), 0);
    HY_CHECK_EQ(hy_yield(), 0);
    HY_CHECK(s.ran);
}

static void test_proc_spawn_self_yield(void **state)
{
    (void)state;
    hy_test_run(1, spawn_self_yield_main, NULL);
}

/* ---- FIFO run order -------------------------------------------------------- */

#define FIFO_N 200

struct fifo {
    int order[2 * FIFO_N];
    int n;
};

struct fifo_arg {
    struct fifo *f;
    int idx;
};

static void fifo_child(void *arg)
{
    struct fifo_arg *a = arg;
    a->f->order[a->f->n++] = a->idx;
    hy_yield();
    a->f->order[a->f->n++] = a->idx;
}

static bool fifo_done(void *arg)
{
    return ((struct fifo *)arg)->n == 2 * FIFO_N;
}

static void fifo_main(void *arg)
{
    (void)arg;
    static struct fifo f;
    static struct fifo_arg args[FIFO_N];
    memset(&f, 0, sizeof(f));
    for (int i = 0; i < FIFO_N; i++) {
        args[i].f = &f;
        args[i].idx = i;
        HY_CHECK_EQ(hy_spawn(fifo_child, &args[i], NULL), 0);
    }
    HY_CHECK(hy_test_wait_until(fifo_done, &f, 5000));
    /* every child ran once, in spawn order, then again in the same order */
    for (int i = 0; i < 2 * FIFO_N; i++)
        HY_CHECK_EQ(f.order[i], i % FIFO_N);
}

static void test_proc_fifo_run_order(void **state)
{
    (void)state;
    hy_test_run(1, fifo_main, NULL);
}

/* ---- exit paths and cleanup handlers ------------------------------------------- */

struct exit_log {
    int ran[8];
    int n;
    int shard_seen;
    bool in_process_seen;
    bool reached_after_exit;
};

struct handler_arg {
    struct exit_log *log;
    int id;
};

static void log_handler(void *arg)
{
    struct handler_arg *h = arg;
    h->log->ran[h->log->n++] = h->id;
    /* handlers run on the process's shard, outside the process */
    h->log->shard_seen = hy_shard_id();
    h->log->in_process_seen = hy_in_process();
}

enum exit_how { EXIT_RETURN, EXIT_DEEP, PANIC_DEEP, EXIT_NORMAL_DEEP };

struct exit_arg {
    enum exit_how how;
    struct exit_log *log;
    struct handler_arg h[3];
};

static int __attribute__((noinline)) descend(struct exit_arg *a, int depth)
{
    volatile char pad[128];
    pad[0] = (char)depth;
    if (depth == 25) {
        a->h[1] = (struct handler_arg){a->log, 2};
        hy_on_exit(log_handler, &a->h[1]);
    }
    if (depth == 50) {
        a->h[2] = (struct handler_arg){a->log, 3};
        hy_on_exit(log_handler, &a->h[2]);
        if (a->how == EXIT_DEEP)
            hy_exit(hy_reason_user(7, "deep"));
        else if (a->how == PANIC_DEEP)
            hy_panic("boom %d at %s", 42, "depth");
        else
            hy_exit(hy_reason_make(HY_REASON_NORMAL));
        a->log->reached_after_exit = true;
        return 0;
    }
    return descend(a, depth + 1) + pad[0];
}

static void exiting_child(void *arg)
{
    struct exit_arg *a = arg;
    a->h[0] = (struct handler_arg){a->log, 1};
    HY_CHECK_EQ(hy_on_exit(log_handler, &a->h[0]), 0);
    HY_CHECK_EQ(hy_on_exit(NULL, NULL), HY_EINVAL);
    if (a->how == EXIT_RETURN) {
        a->h[1] = (struct handler_arg){a->log, 2};
        a->h[2] = (struct handler_arg){a->log, 3};
        hy_on_exit(log_handler, &a->h[1]);
        hy_on_exit(log_handler, &a->h[2]);
        return;
    }
    descend(a, 0);
    a->log->reached_after_exit = true;
}

struct exit_result {
    struct exit_log log;
    struct hy_reason reason;
    uint64_t exited_delta;
    bool down;
};

static void run_exit_case(enum exit_how how, struct exit_result *res)
{
    struct exit_arg a;
    memset(&a, 0, sizeof(a));
    memset(res, 0, sizeof(*res));
    res->log.shard_seen = -1;
    res->log.in_process_seen = true;
    a.how = how;
    a.log = &res->log;
    struct hy_stats before, after;
    hy_stats_get(0, &before);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    hy_ref mref;
    o.monitor = true;
    o.monitor_ref = &mref;
    hy_pid child;
    HY_CHECK_EQ(hy_spawn_opt(exiting_child, &a, &o, &child), 0);
    struct hy_msg *m;
    if (hy_recv_ref(mref, &m, 5 * SECOND) == 0) {
        HY_CHECK_EQ(m->tag, HY_TAG_DOWN);
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        HY_CHECK(hy_pid_eq(d.pid, child));
        res->reason = d.reason;
        res->down = true;
        hy_msg_free(m);
    }
    hy_stats_get(0, &after);
    res->exited_delta = after.procs_exited - before.procs_exited;
}

static struct exit_result exit_res[4];

static void exit_paths_main(void *arg)
{
    (void)arg;
    run_exit_case(EXIT_RETURN, &exit_res[0]);
    run_exit_case(EXIT_DEEP, &exit_res[1]);
    run_exit_case(PANIC_DEEP, &exit_res[2]);
    run_exit_case(EXIT_NORMAL_DEEP, &exit_res[3]);
}

static void check_log(const struct exit_result *r)
{
    assert_true(r->down);
    assert_int_equal(r->exited_delta, 1);
    assert_false(r->log.reached_after_exit);
    /* every handler ran once, last registered first */
    assert_int_equal(r->log.n, 3);
    assert_int_equal(r->log.ran[0], 3);
    assert_int_equal(r->log.ran[1], 2);
    assert_int_equal(r->log.ran[2], 1);
    assert_int_equal(r->log.shard_seen, 0);
    assert_false(r->log.in_process_seen);
}

static void test_proc_exit_paths_run_cleanups(void **state)
{
    (void)state;
    hy_test_run(1, exit_paths_main, NULL);
    for (int i = 0; i < 4; i++)
        check_log(&exit_res[i]);
    assert_int_equal(exit_res[0].reason.kind, HY_REASON_NORMAL);
    assert_int_equal(exit_res[1].reason.kind, HY_REASON_USER);
    assert_int_equal(exit_res[1].reason.code, 7);
    assert_string_equal(exit_res[1].reason.text, "deep");
    assert_int_equal(exit_res[2].reason.kind, HY_REASON_USER);
    assert_int_equal(exit_res[2].reason.code, 0);
    assert_string_equal(exit_res[2].reason.text, "boom 42 at depth");
    assert_int_equal(exit_res[3].reason.kind, HY_REASON_NORMAL);
    char buf[96];
    assert_string_equal(hy_reason_format(&exit_res[1].reason, buf, sizeof(buf)), "user(7, deep)");
}

/* Handlers also run when the runtime stops under a waiting process. */
static _Atomic int shutdown_handlers, shutdown_registered;

static void count_handler(void *arg)
{
    (void)arg;
    atomic_fetch_add(&shutdown_handlers, 1);
}

static void waits_forever(void *arg)
{
    (void)arg;
    hy_on_exit(count_handler, NULL);
    hy_on_exit(count_handler, NULL);
    atomic_fetch_add(&shutdown_registered, 1);
    struct hy_msg *m;
    hy_recv_tag(TAG_STOP, &m, HY_INFINITY);
    HY_CHECK(!"a process survived the stop");
}

static bool registered_both(void *arg)
{
    (void)arg;
    return atomic_load(&shutdown_registered) == 2;
}

static void shutdown_main(void *arg)
{
    (void)arg;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn(waits_forever, NULL, NULL), 0);
    HY_CHECK_EQ(hy_spawn_opt(waits_forever, NULL, &o, NULL), 0);
    HY_CHECK(hy_test_wait_until(registered_both, NULL, 5000));
    HY_CHECK_EQ(atomic_load(&shutdown_handlers), 0);
    /* main returns: hy_run stops the runtime and kills both */
}

static void test_proc_cleanups_run_at_shutdown(void **state)
{
    (void)state;
    atomic_store(&shutdown_handlers, 0);
    atomic_store(&shutdown_registered, 0);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    assert_int_equal(hy_run(&cfg, shutdown_main, NULL), 0);
    hy_test_assert_checks();
    /* both processes, on either shard, ran both handlers */
    assert_int_equal(atomic_load(&shutdown_handlers), 4);
}

/* ---- the arena ------------------------------------------------------------------ */

struct arena_res {
    size_t at_start;
    size_t at_end;
    size_t requested;
    bool null_seen, misaligned, corrupted;
};

static void arena_child(void *arg)
{
    struct arena_res *r = arg;
    static const size_t sizes[] = {1, 15, 16, 17, 100, 1000, 5000, 70000, 200000, 3};
    enum { NS = sizeof(sizes) / sizeof(sizes[0]) };
    unsigned char *p[NS];
    r->at_start = hy_arena_bytes();
    for (size_t i = 0; i < NS; i++) {
        p[i] = hy_alloc(sizes[i]);
        if (!p[i]) {
            r->null_seen = true;
            return;
        }
        if ((uintptr_t)p[i] % 16)
            r->misaligned = true;
        memset(p[i], (int)(i + 1), sizes[i]);
        r->requested += sizes[i];
    }
    hy_yield();
    for (size_t i = 0; i < NS; i++)
        for (size_t k = 0; k < sizes[i]; k++)
            if (p[i][k] != (unsigned char)(i + 1))
                r->corrupted = true;
    r->at_end = hy_arena_bytes();
}

/* Allocates ~1 MiB from its arena in small pieces and exits. */
static void arena_hog(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1024; i++) {
        char *p = hy_alloc(1000);
        if (!p) {
            HY_CHECK(!"hy_alloc failed");
            return;
        }
        p[0] = 1;
        p[999] = 2;
    }
}

static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

struct arena_ctx {
    struct arena_res r;
    size_t heap_growth;
    size_t main_bytes;
};

static void arena_main(void *arg)
{
    struct arena_ctx *c = arg;
    HY_CHECK_EQ(hy_spawn(arena_child, &c->r, NULL), 0);
    hy_yield();
    HY_CHECK(hy_test_quiesce(1, 5000));
    /* many processes allocating 1 MiB each: freed at every exit */
    size_t before = heap_in_use();
    size_t peak = 0;
    for (int i = 0; i < 64; i++) {
        HY_CHECK_EQ(hy_spawn(arena_hog, NULL, NULL), 0);
        hy_yield();
        HY_CHECK(hy_test_quiesce(1, 5000));
        size_t now = heap_in_use();
        if (now > before && now - before > peak)
            peak = now - before;
    }
    c->heap_growth = peak;
    c->main_bytes = hy_arena_bytes();
}

static void test_proc_arena(void **state)
{
    (void)state;
    struct arena_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(1, arena_main, &c);
    assert_false(c.r.null_seen);
    assert_false(c.r.misaligned);
    assert_false(c.r.corrupted);
    assert_int_equal(c.r.at_start, 0);
    assert_true(c.r.at_end >= c.r.requested);
    assert_int_equal(c.main_bytes, 0);
#ifndef T_ASAN
    /* 64 MiB went through the arenas; at most a couple stay in the heap */
    assert_true(c.heap_growth < 8u << 20);
#endif
    /* outside a process there is no arena */
    assert_null(hy_alloc(16));
    assert_int_equal(hy_arena_bytes(), 0);
}

/* ---- spawning onto another shard, copied arguments ---------------------------------- */

struct spawn_arg {
    hy_pid parent;
    uint64_t magic[6];
    const void *original;   /* the parent's copy */
};

struct spawn_report {
    hy_pid self;
    int shard;
    bool copied;            /* arg is not the parent's object */
    bool aligned;
    bool content_ok;
    size_t arena;
    hy_pid grandchild;
    int grandchild_shard;
};

static bool magic_ok(const struct spawn_arg *a)
{
    for (int i = 0; i < 6; i++)
        if (a->magic[i] != 0x1234567800000000ull + (uint64_t)i)
            return false;
    return true;
}

static void fill_magic(struct spawn_arg *a)
{
    for (int i = 0; i < 6; i++)
        a->magic[i] = 0x1234567800000000ull + (uint64_t)i;
}

static void grandchild(void *arg)
{
    struct spawn_arg *a = arg;
    struct spawn_report r = {0};
    r.self = hy_self();
    r.shard = hy_shard_id();
    r.content_ok = magic_ok(a);
    hy_send(a->parent, TAG_REPLY, &r, sizeof(r));
}

static void spawned_child(void *arg)
{
    struct spawn_arg *a = arg;
    struct spawn_report r = {0};
    r.self = hy_self();
    r.shard = hy_shard_id();
    r.copied = (const void *)a != a->original;
    r.aligned = (uintptr_t)a % 16 == 0;
    r.content_ok = magic_ok(a);
    r.arena = hy_arena_bytes();
    /* and back onto shard 0, from shard 1 */
    struct spawn_arg g = *a;
    g.parent = hy_self();
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 0;
    o.arg_size = sizeof(g);
    HY_CHECK_EQ(hy_spawn_opt(grandchild, &g, &o, &r.grandchild), 0);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_REPLY, &m, 5 * SECOND) == 0) {
        struct spawn_report gr;
        memcpy(&gr, m->data, sizeof(gr));
        HY_CHECK(hy_pid_eq(gr.self, r.grandchild));
        HY_CHECK(gr.content_ok);
        r.grandchild_shard = gr.shard;
        hy_msg_free(m);
    } else {
        HY_CHECK(!"grandchild did not report");
    }
    hy_send(a->parent, TAG_REPLY, &r, sizeof(r));
}

struct spawn_ctx {
    hy_pid remote, local;
    struct spawn_report rr, lr;
};

static void spawn_other_shard_main(void *arg)
{
    struct spawn_ctx *c = arg;
    struct spawn_arg a;
    a.parent = hy_self();
    fill_magic(&a);
    a.original = &a;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.arg_size = sizeof(a);
    HY_CHECK_EQ(hy_spawn_opt(spawned_child, &a, &o, &c->remote), 0);
    struct hy_msg *m;
    if (hy_recv_tag(TAG_REPLY, &m, 5 * SECOND) == 0) {
        memcpy(&c->rr, m->data, sizeof(c->rr));
        hy_msg_free(m);
    } else {
        HY_CHECK(!"remote child did not report");
    }
    /* local spawn with a copy: change ours before the child runs */
    o.shard = HY_SHARD_SELF;
    HY_CHECK_EQ(hy_spawn_opt(grandchild, &a, &o, &c->local), 0);
    memset(a.magic, 0, sizeof(a.magic));
    if (hy_recv_tag(TAG_REPLY, &m, 5 * SECOND) == 0) {
        memcpy(&c->lr, m->data, sizeof(c->lr));
        hy_msg_free(m);
    } else {
        HY_CHECK(!"local child did not report");
    }
}

static void test_proc_spawn_other_shard_copies_arg(void **state)
{
    (void)state;
    struct spawn_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(2, spawn_other_shard_main, &c);
    /* the pid names shard 1 and is the child's own pid */
    assert_int_equal(hy_pid_shard(c.remote), 1);
    assert_true(hy_pid_eq(c.rr.self, c.remote));
    assert_int_equal(c.rr.shard, 1);
    assert_true(c.rr.copied);
    assert_true(c.rr.aligned);
    assert_true(c.rr.content_ok);
    assert_true(c.rr.arena >= sizeof(struct spawn_arg));
    assert_int_equal(hy_pid_shard(c.rr.grandchild), 0);
    assert_int_equal(c.rr.grandchild_shard, 0);
    assert_int_equal(hy_pid_shard(c.local), 0);
    assert_true(hy_pid_eq(c.lr.self, c.local));
    assert_true(c.lr.content_ok);
}

/* ---- bad options --------------------------------------------------------------------- */

static void never_runs(void *arg)
{
    (void)arg;
    HY_CHECK(!"a process spawned with bad options ran");
}

static void bad_options_main(void *arg)
{
    (void)arg;
    struct hy_stats before, after;
    hy_stats_total(&before);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn(NULL, NULL, &pid), HY_EINVAL);
    HY_CHECK_EQ(hy_spawn_opt(NULL, NULL, &o, &pid), HY_EINVAL);
    o.shard = 2; /* == shard count */
    HY_CHECK_EQ(hy_spawn_opt(never_runs, NULL, &o, &pid), HY_EINVAL);
    o.shard = -2;
    HY_CHECK_EQ(hy_spawn_opt(never_runs, NULL, &o, &pid), HY_EINVAL);
    o.shard = HY_SHARD_SELF;
    o.stack_mode = 7;
    HY_CHECK_EQ(hy_spawn_opt(never_runs, NULL, &o, &pid), HY_EINVAL);
    o.stack_mode = -2;
    HY_CHECK_EQ(hy_spawn_opt(never_runs, NULL, &o, &pid), HY_EINVAL);
    o.stack_mode = HY_STACK_DEFAULT;
    static char big[64];
    o.arg_size = (1u << 20) + 1; /* above max_message_size */
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(never_runs, big, &o, &pid), HY_EINVAL);
    o.shard = HY_SHARD_SELF;
    HY_CHECK_EQ(hy_spawn_opt(never_runs, big, &o, &pid), HY_EINVAL);
    o.arg_size = 0;
    o.mailbox_policy = (enum hy_mailbox_policy)9;
    HY_CHECK_EQ(hy_spawn_opt(never_runs, NULL, &o, &pid), HY_EINVAL);
    /* nothing was spawned, nothing was written */
    HY_CHECK(hy_pid_is_none(pid));
    hy_yield();
    hy_stats_total(&after);
    HY_CHECK_EQ(after.procs_spawned, before.procs_spawned);
}

static void test_proc_bad_options(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.max_message_size = 1u << 20;
    hy_test_run_cfg(&cfg, bad_options_main, NULL);
}

/* ---- calls outside a process ---------------------------------------------------------- */

static void noop(void *arg)
{
    (void)arg;
}

/* The process-only calls, from a thread that is not a process. */
static void check_not_a_process(bool on_shard)
{
    HY_CHECK(!hy_in_process());
    HY_CHECK(hy_pid_is_none(hy_self()));
    HY_CHECK_EQ(hy_yield(), HY_ENOTPROC);
    HY_CHECK_EQ(hy_sleep_ns(1000), HY_ENOTPROC);
    HY_CHECK_EQ(hy_exit(hy_reason_make(HY_REASON_NORMAL)), HY_ENOTPROC);
    HY_CHECK_EQ(hy_panic("not %s", "here"), HY_ENOTPROC);
    HY_CHECK_EQ(hy_on_exit(noop, NULL), HY_ENOTPROC);
    HY_CHECK(hy_alloc(16) == NULL);
    HY_CHECK_EQ(hy_arena_bytes(), 0);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv(&m, 0), HY_ENOTPROC);
    if (!on_shard) {
        HY_CHECK_EQ(hy_spawn(noop, NULL, NULL), HY_ENOTSHARD);
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        HY_CHECK_EQ(hy_spawn_opt(noop, NULL, &o, NULL), HY_ENOTSHARD);
    }
}

struct hook_ctx {
    _Atomic int done;
    int rc_remote, rc_local;
    hy_pid local;
    int shard;
};

static unsigned hook_poll(void *arg)
{
    struct hook_ctx *c = arg;
    if (atomic_load(&c->done))
        return 0;
    /* a shard thread, but not a process */
    c->shard = hy_shard_id();
    check_not_a_process(true);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    c->rc_remote = hy_spawn_opt(noop, NULL, &o, NULL);
    /* a local spawn is allowed from a shard callback */
    c->rc_local = hy_spawn(noop, NULL, &c->local);
    atomic_store(&c->done, 1);
    return 1;
}

static bool hook_done(void *arg)
{
    return atomic_load(&((struct hook_ctx *)arg)->done) != 0;
}

static void hook_main(void *arg)
{
    struct hook_ctx *c = arg;
    struct hy_poll_hook h = {.poll = hook_poll, .ctx = c};
    HY_CHECK_EQ(hy_hook_add_poll(&h), 0);
    HY_CHECK(hy_test_wait_until(hook_done, c, 5000));
    HY_CHECK_EQ(hy_hook_remove_poll(&h), 0);
}

static void test_proc_calls_outside_a_process(void **state)
{
    (void)state;
    /* before any runtime */
    check_not_a_process(false);
    hy_test_assert_checks();
    /* from a plain thread while a runtime runs */
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    assert_int_equal(hy_start(&cfg, NULL, NULL), 0);
    check_not_a_process(false);
    assert_int_equal(hy_stop(), 0);
    hy_test_assert_checks();
    /* from a shard callback (a poll hook on shard 0) */
    struct hook_ctx c;
    memset(&c, 0, sizeof(c));
    c.shard = -1;
    hy_test_run(2, hook_main, &c);
    assert_int_equal(c.shard, 0);
    assert_int_equal(c.rc_remote, HY_ENOTPROC);
    assert_int_equal(c.rc_local, 0);
    assert_int_equal(hy_pid_shard(c.local), 0);
    /* and after the runtime */
    check_not_a_process(false);
    hy_test_assert_checks();
}

/* ---- stale pids and reused slots --------------------------------------------------- */

static _Atomic uint64_t stale_misdelivered, stale_delivered;

/* Counts every message by whether its payload (the pid the sender aimed
 * at) is this process. */
static void stale_receiver(void *arg)
{
    (void)arg;
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            return;
        if (m->tag == TAG_STOP) {
            hy_msg_free(m);
            return;
        }
        hy_pid aimed;
        memcpy(&aimed, m->data, sizeof(aimed));
        if (hy_pid_eq(aimed, hy_self()))
            atomic_fetch_add(&stale_delivered, 1);
        else
            atomic_fetch_add(&stale_misdelivered, 1);
        hy_msg_free(m);
    }
}

struct stale_ctx {
    unsigned rounds, k;
    uint64_t stale_sends, dropped_delta, reused_slots;
};

static void stale_main(void *arg)
{
    struct stale_ctx *c = arg;
    size_t total = (size_t)c->rounds * c->k;
    hy_pid *all = calloc(total, sizeof(hy_pid));
    if (!all) {
        HY_CHECK(!"calloc");
        return;
    }
    struct hy_stats before, after;
    hy_stats_total(&before);
    size_t n = 0;
    for (unsigned r = 0; r < c->rounds; r++) {
        size_t first = n;
        for (unsigned i = 0; i < c->k; i++) {
            struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
            o.shard = (int)(i % 2); /* half local, half on the other shard */
            hy_pid p;
            HY_CHECK_EQ(hy_spawn_opt(stale_receiver, NULL, &o, &p), 0);
            for (size_t k = 0; k < first; k++)
                if (hy_pid_shard(all[k]) == hy_pid_shard(p) &&
                    hy_pid_slot(all[k]) == hy_pid_slot(p)) {
                    c->reused_slots++;
                    HY_CHECK(hy_pid_gen(all[k]) != hy_pid_gen(p));
                    break;
                }
            all[n++] = p;
        }
        /* one message to every pid ever spawned: only this round's live */
        for (size_t k = 0; k < n; k++)
            hy_send(all[k], TAG_MSG, &all[k], sizeof(all[k]));
        c->stale_sends += first;
        /* STOP after the message: same sender, so it arrives after it */
        for (size_t k = first; k < n; k++)
            hy_send(all[k], TAG_STOP, NULL, 0);
        HY_CHECK(hy_test_quiesce(1, 5000));
    }
    hy_stats_total(&after);
    c->dropped_delta = after.dropped_dead - before.dropped_dead;
    free(all);
}

static void test_proc_stale_pid_never_reaches_new_occupant(void **state)
{
    (void)state;
    struct stale_ctx c = {0};
    c.rounds = (unsigned)hy_test_scaled(40);
    if (c.rounds > 400)
        c.rounds = 400;
    c.k = 32;
    atomic_store(&stale_misdelivered, 0);
    atomic_store(&stale_delivered, 0);
    hy_test_run(2, stale_main, &c);
    assert_int_equal(atomic_load(&stale_misdelivered), 0);
    assert_int_equal(atomic_load(&stale_delivered), (uint64_t)c.rounds * c.k);
    assert_int_equal(c.dropped_delta, c.stale_sends);
    /* the test means something only if slots were reused */
    assert_true(c.reused_slots >= (uint64_t)(c.rounds - 1) * c.k / 2);
}

/* ---- churn ------------------------------------------------------------------------ */

static void short_lived(void *arg)
{
    (void)arg;
    char *p = hy_alloc(64);
    if (p)
        p[0] = 1;
}

struct churn_ctx {
    uint64_t n_local, n_remote;
    struct hy_stats before, after;
    uint64_t max_pooled;
};

static void churn_main(void *arg)
{
    struct churn_ctx *c = arg;
    hy_stats_total(&c->before);
    uint64_t done = 0;
    while (done < c->n_local) {
        uint64_t batch = c->n_local - done < 1000 ? c->n_local - done : 1000;
        for (uint64_t i = 0; i < batch; i++)
            if (hy_spawn(short_lived, NULL, NULL) != 0) {
                HY_CHECK(!"spawn failed");
                return;
            }
        done += batch;
        HY_CHECK(hy_test_quiesce(1, 5000));
    }
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    for (uint64_t i = 0; i < c->n_remote; i++)
        if (hy_spawn_opt(short_lived, NULL, &o, NULL) != 0) {
            HY_CHECK(!"remote spawn failed");
            return;
        }
    HY_CHECK(hy_test_quiesce(1, 5000));
    hy_stats_total(&c->after);
    for (unsigned s = 0; s < 2; s++) {
        struct hy_stats st;
        hy_stats_get(s, &st);
        if (st.stacks_pooled > c->max_pooled)
            c->max_pooled = st.stacks_pooled;
    }
}

static void test_proc_spawn_exit_churn(void **state)
{
    (void)state;
    struct churn_ctx c;
    memset(&c, 0, sizeof(c));
    c.n_local = hy_test_scaled(100000);
    c.n_remote = hy_test_scaled(5000);
    hy_test_run(2, churn_main, &c);
    uint64_t n = c.n_local + c.n_remote;
    assert_int_equal(c.after.procs_spawned - c.before.procs_spawned, n);
    assert_int_equal(c.after.procs_exited - c.before.procs_exited, n);
    assert_int_equal(c.after.procs_alive, c.before.procs_alive);
    /* one process at a time ever needed a stack: the pools stay tiny */
    assert_true(c.max_pooled <= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proc_spawn_self_yield),
        cmocka_unit_test(test_proc_fifo_run_order),
        cmocka_unit_test(test_proc_exit_paths_run_cleanups),
        cmocka_unit_test(test_proc_cleanups_run_at_shutdown),
        cmocka_unit_test(test_proc_arena),
        cmocka_unit_test(test_proc_spawn_other_shard_copies_arg),
        cmocka_unit_test(test_proc_bad_options),
        cmocka_unit_test(test_proc_calls_outside_a_process),
        cmocka_unit_test(test_proc_stale_pid_never_reaches_new_occupant),
        cmocka_unit_test(test_proc_spawn_exit_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
