/* Tests of core/blocking.c: hy_blocking_run runs a function on a pool
 * thread (not a shard), hands its result back, keeps the caller's shard
 * running meanwhile, serves many callers at once, and refuses callers that
 * are not processes.
 *
 * Process bodies record failures with HY_CHECK (cmocka's assertions must not
 * longjmp off a coroutine stack); hy_test_run() asserts them afterwards. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

#define TAG_DONE 1
#define SECOND 1000000000LL

/* ---- where the function runs ------------------------------------------------ */

struct where {
    int shard;
    bool in_process;
    pthread_t thread;
    int input;
};

static intptr_t where_fn(void *arg)
{
    struct where *w = arg;
    w->shard = hy_shard_id();
    w->in_process = hy_in_process();
    w->thread = pthread_self();
    return (intptr_t)w->input * 2 + 1;
}

struct off_shard_ctx {
    struct where w;
    pthread_t shard_thread;
    int rc, rc_null_result, rc_null_fn;
    intptr_t result;
};

static void off_shard_main(void *arg)
{
    struct off_shard_ctx *c = arg;
    c->shard_thread = pthread_self();
    /* arg on this process's (guarded) stack: borrowed until fn returns */
    struct where w = {.shard = 99, .in_process = true, .input = 20};
    c->rc = hy_blocking_run(where_fn, &w, &c->result);
    c->w = w;
    c->rc_null_result = hy_blocking_run(where_fn, &w, NULL);
    c->rc_null_fn = hy_blocking_run(NULL, &w, &c->result);
}

static void test_blocking_runs_off_shard(void **state)
{
    (void)state;
    struct off_shard_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(1, off_shard_main, &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.result, 41);
    assert_int_equal(c.w.shard, -1);
    assert_false(c.w.in_process);
    assert_false(pthread_equal(c.w.thread, c.shard_thread));
    assert_int_equal(c.rc_null_result, 0);
    assert_int_equal(c.rc_null_fn, HY_EINVAL);
}

/* ---- the shard keeps running --------------------------------------------------- */

/* The blocking function announces that it started, then waits (up to 5 s)
 * for a go that only another process of the same shard gives. If the shard
 * were blocked in the call, that process could never run. */
struct handshake {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started, go;
    _Atomic int started_seen;
    _Atomic bool caller_returned;
    bool helper_saw_caller_waiting;
};

static intptr_t wait_for_go(void *arg)
{
    struct handshake *h = arg;
    pthread_mutex_lock(&h->lock);
    h->started = true;
    atomic_store(&h->started_seen, 1);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    int e = 0;
    while (!h->go && e == 0)
        e = pthread_cond_timedwait(&h->cond, &h->lock, &deadline);
    bool go = h->go;
    pthread_mutex_unlock(&h->lock);
    return go ? 1 : -1;
}

static bool fn_started(void *arg)
{
    return atomic_load(&((struct handshake *)arg)->started_seen) != 0;
}

static void helper(void *arg)
{
    struct handshake *h = arg;
    if (!hy_test_wait_until(fn_started, h, 5000)) {
        HY_CHECK(!"the blocking function never started");
        return;
    }
    h->helper_saw_caller_waiting = !atomic_load(&h->caller_returned);
    pthread_mutex_lock(&h->lock);
    h->go = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

struct keeps_ctx {
    struct handshake h;
    intptr_t result;
    int rc;
};

static void keeps_running_main(void *arg)
{
    struct keeps_ctx *c = arg;
    HY_CHECK_EQ(hy_spawn(helper, &c->h, NULL), 0);
    c->rc = hy_blocking_run(wait_for_go, &c->h, &c->result);
    atomic_store(&c->h.caller_returned, true);
}

static void test_blocking_shard_keeps_running(void **state)
{
    (void)state;
    static struct keeps_ctx c;
    memset(&c, 0, sizeof(c));
    pthread_mutex_init(&c.h.lock, NULL);
    pthread_cond_init(&c.h.cond, NULL);
    hy_test_run(1, keeps_running_main, &c); /* one shard: helper and caller share it */
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.result, 1);
    assert_true(c.h.helper_saw_caller_waiting);
    pthread_mutex_destroy(&c.h.lock);
    pthread_cond_destroy(&c.h.cond);
}

/* ---- compact-stack callers ----------------------------------------------------------- */

/* A compact process's stack is copied out while others use the shared
 * stack: its arg must not point into it (refused), arena memory works, and
 * other compact processes keep running (and keep their stacks) meanwhile. */
struct compact_job {
    struct handshake *h;
    int in, out;
};

static intptr_t compact_job_fn(void *arg)
{
    struct compact_job *j = arg;
    intptr_t go = wait_for_go(j->h);
    j->out = j->in * 3;
    return go;
}

struct compact_ctx {
    struct handshake h;
    int rc_stack, rc_arena;
    intptr_t result;
    int out;
    bool helper_stack_ok;
};

static void compact_helper(void *arg)
{
    struct compact_ctx *c = arg;
    volatile uint64_t mine[64];
    for (int i = 0; i < 64; i++)
        mine[i] = 0xabcdef00u + (uint64_t)i;
    helper(&c->h); /* waits for the call to start, then says go */
    bool ok = true;
    for (int y = 0; y < 50; y++) {
        hy_yield();
        for (int i = 0; i < 64; i++)
            ok = ok && mine[i] == 0xabcdef00u + (uint64_t)i;
    }
    c->helper_stack_ok = ok;
}

static void compact_caller(void *arg)
{
    struct compact_ctx *c = arg;
    struct compact_job on_stack = {&c->h, 5, 0};
    c->rc_stack = hy_blocking_run(compact_job_fn, &on_stack, NULL);
    struct compact_job *j = hy_alloc(sizeof(*j));
    if (!j) {
        HY_CHECK(!"hy_alloc");
        return;
    }
    *j = (struct compact_job){&c->h, 14, 0};
    c->rc_arena = hy_blocking_run(compact_job_fn, j, &c->result);
    atomic_store(&c->h.caller_returned, true);
    c->out = j->out;
}

static void compact_main(void *arg)
{
    struct compact_ctx *c = arg;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.stack_mode = HY_STACK_COMPACT;
    HY_CHECK_EQ(hy_spawn_opt(compact_caller, c, &o, NULL), 0);
    HY_CHECK_EQ(hy_spawn_opt(compact_helper, c, &o, NULL), 0);
    HY_CHECK(hy_test_quiesce(1, 10000));
}

static void test_blocking_compact_caller(void **state)
{
    (void)state;
    static struct compact_ctx c;
    memset(&c, 0, sizeof(c));
    pthread_mutex_init(&c.h.lock, NULL);
    pthread_cond_init(&c.h.cond, NULL);
    hy_test_run(1, compact_main, &c);
    assert_int_equal(c.rc_stack, HY_EINVAL);
    assert_int_equal(c.rc_arena, 0);
    assert_int_equal(c.result, 1);
    assert_int_equal(c.out, 42);
    assert_true(c.h.helper_saw_caller_waiting);
    assert_true(c.helper_stack_ok);
    pthread_mutex_destroy(&c.h.lock);
    pthread_cond_destroy(&c.h.cond);
}

/* ---- many callers at once --------------------------------------------------------- */

struct io {
    int in;
    int out;
    int shard_seen;
};

static intptr_t triple(void *arg)
{
    struct io *io = arg;
    io->out = io->in * 3;
    io->shard_seen = hy_shard_id();
    return io->in + 1;
}

struct caller_arg {
    hy_pid parent;
    int base;
    int calls;
};

static void caller(void *arg)
{
    struct caller_arg *a = arg;
    int ok = 1;
    for (int i = 0; i < a->calls; i++) {
        struct io io = {a->base + i, 0, 7};
        intptr_t r = 0;
        if (hy_blocking_run(triple, &io, &r) != 0 || r != io.in + 1 || io.out != io.in * 3 ||
            io.shard_seen != -1)
            ok = 0;
    }
    hy_send(a->parent, TAG_DONE, &ok, sizeof(ok));
}

struct many_ctx {
    int procs;
    int ok, done;
};

static void many_main(void *arg)
{
    struct many_ctx *c = arg;
    for (int i = 0; i < c->procs; i++) {
        struct caller_arg a = {hy_self(), i * 1000, 20};
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = i % 2;
        o.arg_size = sizeof(a);
        HY_CHECK_EQ(hy_spawn_opt(caller, &a, &o, NULL), 0);
    }
    for (int i = 0; i < c->procs; i++) {
        struct hy_msg *m;
        if (hy_recv_tag(TAG_DONE, &m, 10 * SECOND) != 0)
            break;
        int ok;
        memcpy(&ok, m->data, sizeof(ok));
        hy_msg_free(m);
        c->done++;
        c->ok += ok;
    }
}

static void test_blocking_many_callers(void **state)
{
    (void)state;
    struct many_ctx c = {0};
    c.procs = 16; /* eight times the pool's two threads */
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    hy_test_run_cfg(&cfg, many_main, &c);
    assert_int_equal(c.done, c.procs);
    assert_int_equal(c.ok, c.procs);
}

/* ---- outside a process ------------------------------------------------------------- */

static intptr_t never_called(void *arg)
{
    (void)arg;
    HY_CHECK(!"ran a blocking function for a non-process");
    return 0;
}

struct hook_ctx {
    _Atomic int done;
    int rc;
};

static unsigned hook_poll(void *arg)
{
    struct hook_ctx *c = arg;
    if (atomic_load(&c->done))
        return 0;
    c->rc = hy_blocking_run(never_called, NULL, NULL);
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

static void test_blocking_outside_a_process(void **state)
{
    (void)state;
    intptr_t r = 5;
    /* no runtime */
    assert_int_equal(hy_blocking_run(never_called, NULL, &r), HY_ENOTPROC);
    /* a plain thread while a runtime runs */
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    assert_int_equal(hy_start(&cfg, NULL, NULL), 0);
    assert_int_equal(hy_blocking_run(never_called, NULL, &r), HY_ENOTPROC);
    assert_int_equal(hy_stop(), 0);
    /* a shard callback */
    struct hook_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(1, hook_main, &c);
    assert_int_equal(c.rc, HY_ENOTPROC);
    assert_int_equal(r, 5);
    hy_test_assert_checks();
}

/* ---- a call still running when the runtime stops -------------------------------- */

static _Atomic int slow_started, slow_finished;

/* A slow call: runs for ~100 ms of wall time, whatever happens meanwhile. */
static intptr_t slow_fn(void *arg)
{
    (void)arg;
    atomic_store(&slow_started, 1);
    uint64_t until = hy_now_ns() + 100 * 1000 * 1000;
    while (hy_now_ns() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&slow_finished, 1);
    return 3;
}

static void slow_caller(void *arg)
{
    (void)arg;
    static intptr_t r;
    hy_blocking_run(slow_fn, NULL, &r);
}

static bool slow_running(void *arg)
{
    (void)arg;
    return atomic_load(&slow_started) != 0;
}

static void stop_during_call_main(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_spawn(slow_caller, NULL, NULL), 0);
    HY_CHECK(hy_test_wait_until(slow_running, NULL, 5000));
    /* returning stops the runtime with the call still running */
}

static void test_blocking_stop_during_a_call(void **state)
{
    (void)state;
    atomic_store(&slow_started, 0);
    atomic_store(&slow_finished, 0);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    assert_int_equal(hy_run(&cfg, stop_during_call_main, NULL), 0);
    /* hy_run did not wait for the call: the abandoned pool thread finishes
     * it later, sends nothing, and its late result does not leak
     * (LeakSanitizer checks that at exit) */
    for (int i = 0; i < 5000 && !atomic_load(&slow_finished); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&slow_finished), 1);
    hy_test_assert_checks();
    /* and the runtime starts again cleanly */
    struct off_shard_ctx c;
    memset(&c, 0, sizeof(c));
    hy_test_run(1, off_shard_main, &c);
    assert_int_equal(c.result, 41);
}

/* ---- a caller killed while it waits; a call stuck past the stop ------------------ */

static int stuck_pipe[2];

/* Blocks until the test writes to the pipe (after hy_run returned), then
 * writes into arg, which lives on the killed caller's stack. */
static intptr_t stuck_fn(void *arg)
{
    char c;
    (void)!read(stuck_pipe[0], &c, 1);
    memset(arg, 0x5a, 64);
    return 7;
}

static void stuck_caller(void *arg)
{
    (void)arg;
    char on_stack[64];
    hy_blocking_run(stuck_fn, on_stack, NULL);
    HY_CHECK(!"the call returned before the caller was killed");
}

struct killed_ctx {
    uint64_t down_after_ns;
    int down_reason;
};

static void killed_main(void *arg)
{
    struct killed_ctx *c = arg;
    hy_pid w;
    hy_ref mref;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.monitor = true;
    o.monitor_ref = &mref;
    HY_CHECK_EQ(hy_spawn_opt(stuck_caller, NULL, &o, &w), 0);
    hy_sleep_ns(20 * 1000000ull); /* it is inside hy_blocking_run now */
    uint64_t t0 = hy_now_ns();
    hy_exit_pid(w, hy_reason_make(HY_REASON_KILL));
    struct hy_msg *m = hy_test_must_recv_tag(HY_TAG_DOWN, 5 * SECOND);
    c->down_after_ns = hy_now_ns() - t0;
    if (m) {
        c->down_reason = ((const struct hy_down_info *)m->data)->reason.kind;
        hy_msg_free(m);
    }
    /* a second stuck call, whose caller is killed by the shutdown itself */
    hy_spawn(stuck_caller, NULL, NULL);
    hy_sleep_ns(20 * 1000000ull);
}

static void killed_main_noop(void *arg)
{
    (void)arg;
    intptr_t r = 0;
    HY_CHECK_EQ(hy_blocking_run(where_fn, &(struct where){.input = 1}, &r), 0);
    HY_CHECK_EQ(r, 3);
}

static void test_blocking_killed_caller_and_stop_do_not_wait(void **state)
{
    (void)state;
    assert_int_equal(pipe(stuck_pipe), 0);
    struct killed_ctx c = {0, -1};
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.blocking_threads = 2;
    /* hy_run returns with both pool threads still inside stuck_fn (the
     * second caller is killed by the shutdown itself) */
    assert_int_equal(hy_run(&cfg, killed_main, &c), 0);
    hy_test_assert_checks();
    assert_true(c.down_after_ns < 2 * SECOND);
    assert_int_equal(c.down_reason, HY_REASON_KILLED);
    /* let the abandoned calls finish: they write into the held stacks
     * (ASan would catch a write into freed or reused memory) and exit */
    assert_int_equal(write(stuck_pipe[1], "xx", 2), 2);
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
    /* the runtime starts again with a fresh pool */
    hy_test_run(1, killed_main_noop, NULL);
    close(stuck_pipe[0]);
    close(stuck_pipe[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_killed_caller_and_stop_do_not_wait),
        cmocka_unit_test(test_blocking_runs_off_shard),
        cmocka_unit_test(test_blocking_shard_keeps_running),
        cmocka_unit_test(test_blocking_compact_caller),
        cmocka_unit_test(test_blocking_many_callers),
        cmocka_unit_test(test_blocking_outside_a_process),
        cmocka_unit_test(test_blocking_stop_during_a_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
