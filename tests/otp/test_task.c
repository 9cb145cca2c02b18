/* Tests of otp/task.c: results (owned message and buffer, empty, on another
 * shard, many at once), a crash coming back as HY_EEXIT, timeouts (await
 * kills, yield keeps running), a late result dropped by the alias, the
 * owner's exit killing the task, linked tasks (Elixir's Task.async rules),
 * ownership and spent handles, shutdown.
 *
 * Bodies run as processes (hy_test_run) and record failures with HY_CHECK;
 * every wait for something that must happen has a generous deadline, and
 * what must not happen is shown absent behind an ordering barrier (the DOWN
 * of a monitor on the would-be sender), never behind a sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS)
#define WAIT_MS 10000u

enum {
    T_GO = 1,
    T_PID,
    T_NEVER,
    T_DONE,
};

/* ---- helpers ------------------------------------------------------------- */


/* Waits for the DOWN of ref and returns its reason. */
static struct hy_reason must_down(hy_ref ref)
{
    struct hy_reason r = hy_reason_make(HY_REASON_NOPROC);
    struct hy_msg *m = NULL;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return r;
    HY_CHECK(m->tag == HY_TAG_DOWN);
    if (m->tag == HY_TAG_DOWN) {
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        r = d.reason;
    }
    hy_msg_free(m);
    return r;
}

static struct hy_task_opts on_shard(int shard)
{
    struct hy_task_opts o = HY_TASK_OPTS_INIT;
    o.shard = shard;
    return o;
}

/* ---- task bodies ------------------------------------------------------------- */

/* Returns "<shard>:<input>". */
static void echo_fn(struct hy_task_ctx *ctx, void *arg)
{
    char out[64];
    int n = snprintf(out, sizeof(out), "%d:%s", hy_shard_id(), (const char *)arg);
    HY_CHECK_EQ(hy_task_return(ctx, out, (size_t)n), 0);
    HY_CHECK_EQ(hy_task_return(ctx, out, 1), HY_EALREADY);
}

static void empty_fn(struct hy_task_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
}

static void panic_fn(struct hy_task_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    hy_panic("boom");
}

/* Waits for a message that never comes. */
static void block_fn(struct hy_task_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    struct hy_msg *m;
    hy_recv_tag(T_NEVER, &m, HY_INFINITY);
}

/* Waits for T_GO (sent by the test to the task's pid), returns "go". */
static void wait_go_fn(struct hy_task_ctx *ctx, void *arg)
{
    (void)arg;
    struct hy_msg *m;
    if (hy_recv_tag(T_GO, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
    hy_task_return(ctx, "go", 2);
}

static void square_fn(struct hy_task_ctx *ctx, void *arg)
{
    uint64_t v;
    memcpy(&v, arg, sizeof(v));
    v *= v;
    hy_task_return(ctx, &v, sizeof(v));
}

static void result_then_panic_fn(struct hy_task_ctx *ctx, void *arg)
{
    (void)arg;
    hy_task_return(ctx, "first", 5);
    hy_panic("after the result");
}

/* ---- results --------------------------------------------------------------------- */

static void check_echo(int shard)
{
    struct hy_task_opts o = on_shard(shard);
    o.arg_size = sizeof("hello"); /* copied: the task may run elsewhere */
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(echo_fn, "hello", &o, &t), 0);
    HY_CHECK(hy_pid_eq(t.owner, hy_self()));
    struct hy_msg *m = NULL;
    struct hy_reason why;
    HY_CHECK_EQ(hy_task_await(&t, WAIT_NS, &m, &why), 0);
    if (!m)
        return;
    char want[32];
    int n = snprintf(want, sizeof(want), "%d:hello", shard < 0 ? hy_shard_id() : shard);
    HY_CHECK(m->tag == HY_TASK_TAG_RESULT);
    HY_CHECK_EQ(m->size, n);
    HY_CHECK(memcmp(m->data, want, (size_t)n) == 0);
    hy_msg_free(m);
    HY_CHECK(t.done);
    /* nothing else left behind: the DOWN of the normal end is flushed */
    HY_CHECK_EQ(hy_recv_ref(t.ref, &m, HY_NOWAIT), HY_ETIMEDOUT);
}

static void body_result(void *a)
{
    (void)a;
    check_echo(HY_SHARD_SELF);
    check_echo(1);
    check_echo(0);
}

static void test_task_result(void **state)
{
    (void)state;
    hy_test_run(2, body_result, NULL);
}

static void body_empty_and_buffer(void *a)
{
    (void)a;
    struct hy_task t;
    char buf[16];
    size_t len = 99;
    HY_CHECK_EQ(hy_task_async(empty_fn, NULL, NULL, &t), 0);
    HY_CHECK_EQ(hy_task_await_buf(&t, WAIT_NS, buf, sizeof(buf), &len, NULL), 0);
    HY_CHECK_EQ(len, 0);

    struct hy_task_opts o = on_shard(1);
    o.arg_size = 4;
    HY_CHECK_EQ(hy_task_async(echo_fn, "abc", &o, &t), 0);
    memset(buf, 0, sizeof(buf));
    HY_CHECK_EQ(hy_task_await_buf(&t, WAIT_NS, buf, sizeof(buf), &len, NULL), 0);
    HY_CHECK_EQ(len, 5);
    HY_CHECK(strcmp(buf, "1:abc") == 0);

    /* too small: HY_EMSGSIZE with the size, handle spent */
    HY_CHECK_EQ(hy_task_async(echo_fn, "abc", &o, &t), 0);
    HY_CHECK_EQ(hy_task_await_buf(&t, WAIT_NS, buf, 2, &len, NULL), HY_EMSGSIZE);
    HY_CHECK_EQ(len, 5);
    HY_CHECK(t.done);
}

static void test_task_empty_result_and_buffer(void **state)
{
    (void)state;
    hy_test_run(2, body_empty_and_buffer, NULL);
}

static void body_many(void *a)
{
    (void)a;
    enum { N = 64 };
    struct hy_task t[N];
    for (uint64_t i = 0; i < N; i++) {
        struct hy_task_opts o = on_shard((int)(i % 2));
        o.arg_size = sizeof(i);
        HY_CHECK_EQ(hy_task_async(square_fn, &i, &o, &t[i]), 0);
    }
    /* await in reverse order: each await picks its own result */
    for (uint64_t i = N; i-- > 0;) {
        struct hy_msg *m = NULL;
        HY_CHECK_EQ(hy_task_await(&t[i], WAIT_NS, &m, NULL), 0);
        if (!m)
            continue;
        uint64_t v = 0;
        HY_CHECK_EQ(m->size, sizeof(v));
        memcpy(&v, m->data, sizeof(v));
        HY_CHECK_EQ(v, i * i);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_task_many_across_shards(void **state)
{
    (void)state;
    hy_test_run(2, body_many, NULL);
}

/* ---- crashes ------------------------------------------------------------------------ */

static void check_crash(int shard)
{
    struct hy_task_opts o = on_shard(shard);
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(panic_fn, NULL, &o, &t), 0);
    struct hy_msg *m = NULL;
    struct hy_reason why = hy_reason_make(HY_REASON_NORMAL);
    HY_CHECK_EQ(hy_task_await(&t, WAIT_NS, &m, &why), HY_EEXIT);
    HY_CHECK(m == NULL);
    HY_CHECK_EQ(why.kind, HY_REASON_USER);
    HY_CHECK(strcmp(why.text, "boom") == 0);
    HY_CHECK(t.done);
}

static void body_crash(void *a)
{
    (void)a;
    check_crash(HY_SHARD_SELF);
    check_crash(1);
    /* killed by a third party: also an error with the reason */
    struct hy_task t;
    struct hy_task_opts o = on_shard(1);
    HY_CHECK_EQ(hy_task_async(block_fn, NULL, &o, &t), 0);
    HY_CHECK_EQ(hy_exit_pid(t.pid, hy_reason_user(7, "stop it")), 0);
    struct hy_msg *m = NULL;
    struct hy_reason why;
    HY_CHECK_EQ(hy_task_await(&t, WAIT_NS, &m, &why), HY_EEXIT);
    HY_CHECK_EQ(why.kind, HY_REASON_USER);
    HY_CHECK_EQ(why.code, 7);
    /* the awaiter survived all of it (we are still running) and holds no
     * stray message */
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_task_crash_is_error(void **state)
{
    (void)state;
    hy_test_run(2, body_crash, NULL);
}

static void body_result_then_crash(void *a)
{
    (void)a;
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(result_then_panic_fn, NULL, NULL, &t), 0);
    char buf[8];
    size_t len = 0;
    HY_CHECK_EQ(hy_task_await_buf(&t, WAIT_NS, buf, sizeof(buf), &len, NULL), 0);
    HY_CHECK_EQ(len, 5);
    HY_CHECK(memcmp(buf, "first", 5) == 0);
}

static void test_task_result_sent_before_a_crash_counts(void **state)
{
    (void)state;
    hy_test_run(2, body_result_then_crash, NULL);
}

/* ---- timeouts ----------------------------------------------------------------------- */

static void body_timeout(void *a)
{
    (void)a;
    for (int shard = 0; shard < 2; shard++) {
        struct hy_task_opts o = on_shard(shard);
        struct hy_task t;
        HY_CHECK_EQ(hy_task_async(block_fn, NULL, &o, &t), 0);
        hy_ref mon;
        HY_CHECK_EQ(hy_monitor(t.pid, &mon), 0);
        struct hy_msg *m = NULL;
        uint64_t t0 = hy_now_ns();
        HY_CHECK_EQ(hy_task_await(&t, 20 * MS, &m, NULL), HY_ETIMEDOUT);
        HY_CHECK(hy_now_ns() - t0 >= (uint64_t)(20 * MS));
        HY_CHECK(t.done);
        /* await's timeout kills the task */
        struct hy_reason r = must_down(mon);
        HY_CHECK_EQ(r.kind, HY_REASON_KILLED);
        HY_CHECK_EQ(hy_task_await(&t, 0, &m, NULL), HY_EINVAL);
    }
}

static void test_task_await_timeout_kills(void **state)
{
    (void)state;
    hy_test_run(2, body_timeout, NULL);
}

static void body_yield(void *a)
{
    (void)a;
    struct hy_task_opts o = on_shard(1);
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(wait_go_fn, NULL, &o, &t), 0);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_task_yield(&t, 10 * MS, &m, NULL), HY_ETIMEDOUT);
    HY_CHECK(!t.done);
    struct hy_proc_info info;
    HY_CHECK_EQ(hy_proc_info(t.pid, &info), 0); /* still running */
    HY_CHECK_EQ(hy_send(t.pid, T_GO, NULL, 0), 0);
    HY_CHECK_EQ(hy_task_yield(&t, WAIT_NS, &m, NULL), 0);
    if (m) {
        HY_CHECK_EQ(m->size, 2);
        HY_CHECK(memcmp(m->data, "go", 2) == 0);
        hy_msg_free(m);
    }
    HY_CHECK(t.done);
}

static void test_task_yield_timeout_keeps_running(void **state)
{
    (void)state;
    hy_test_run(2, body_yield, NULL);
}

/* The task spins on shard 1 without calling the runtime, so the kill sent
 * by the timed-out await cannot take effect before it sends its result:
 * the result is really sent late, and must be dropped by the runtime. */
static atomic_int late_spinning, late_release;

static void late_fn(struct hy_task_ctx *ctx, void *arg)
{
    (void)arg;
    atomic_store(&late_spinning, 1);
    while (!atomic_load(&late_release))
        __asm__ __volatile__("" ::: "memory");
    hy_task_return(ctx, "late", 4);
}

static bool is_spinning(void *a)
{
    (void)a;
    return atomic_load(&late_spinning) != 0;
}

static void body_late(void *a)
{
    (void)a;
    atomic_store(&late_spinning, 0);
    atomic_store(&late_release, 0);
    struct hy_task_opts o = on_shard(1);
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(late_fn, NULL, &o, &t), 0);
    HY_CHECK(hy_test_wait_until(is_spinning, NULL, WAIT_MS));
    hy_ref mon;
    HY_CHECK_EQ(hy_monitor(t.pid, &mon), 0);
    struct hy_stats before;
    HY_CHECK_EQ(hy_stats_get(0, &before), 0);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_task_await(&t, 5 * MS, &m, NULL), HY_ETIMEDOUT);
    atomic_store(&late_release, 1);
    /* barrier: the task's DOWN comes after anything it sent us */
    must_down(mon);
    HY_CHECK_EQ(hy_recv_ref(t.ref, &m, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    /* and it was sent: the runtime dropped it at our door */
    struct hy_stats after;
    HY_CHECK_EQ(hy_stats_get(0, &after), 0);
    HY_CHECK(after.dropped_dead > before.dropped_dead);
}

static void test_task_late_result_dropped(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.stall_threshold_ns = 0; /* the task spins on purpose */
    hy_test_run_cfg(&cfg, body_late, NULL);
}

/* ---- owner and links --------------------------------------------------------------- */

struct owner_arg {
    hy_pid test;
    int task_shard;
    bool link;
    bool trap;
    bool crash; /* with block_fn: the owner panics instead of returning */
    hy_task_fn fn;
};

/* Starts a task, tells the test its pid, then (depending on the mode) ends
 * at once or awaits it. */
static void owner_main(void *a)
{
    struct owner_arg oa;
    memcpy(&oa, a, sizeof(oa));
    if (oa.trap)
        hy_trap_exit(true, NULL);
    struct hy_task_opts o = on_shard(oa.task_shard);
    o.link = oa.link;
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(oa.fn, NULL, &o, &t), 0);
    HY_CHECK_EQ(t.linked, oa.link);
    HY_CHECK_EQ(hy_send(oa.test, T_PID, &t.pid, sizeof(t.pid)), 0);
    if (oa.fn == block_fn) {
        hy_msg_free(hy_test_must_recv_tag(T_GO, WAIT_NS)); /* the test monitors the task first */
        if (oa.crash)
            hy_panic("owner down");
        return; /* the owner ends normally, task still running */
    }
    struct hy_reason why;
    struct hy_msg *m = NULL;
    int rc = hy_task_await(&t, WAIT_NS, &m, &why);
    /* reached only when the owner survives the crash (trapping exits) */
    HY_CHECK_EQ(rc, HY_EEXIT);
    struct hy_msg *e = hy_test_must_recv_tag(HY_TAG_EXIT, WAIT_NS);
    if (e) {
        struct hy_exit_info ei;
        memcpy(&ei, e->data, sizeof(ei));
        HY_CHECK(hy_pid_eq(ei.from, t.pid));
        HY_CHECK(strcmp(ei.reason.text, "boom") == 0);
        hy_msg_free(e);
    }
    HY_CHECK_EQ(hy_send(oa.test, T_DONE, NULL, 0), 0);
}

static hy_pid spawn_owner(struct owner_arg oa, hy_ref *mon)
{
    oa.test = hy_self();
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(oa);
    so.monitor = true;
    so.monitor_ref = mon;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn_opt(owner_main, &oa, &so, &pid), 0);
    return pid;
}

static hy_pid recv_pid(void)
{
    hy_pid p = HY_PID_NONE;
    struct hy_msg *m = hy_test_must_recv_tag(T_PID, WAIT_NS);
    if (m) {
        memcpy(&p, m->data, sizeof(p));
        hy_msg_free(m);
    }
    return p;
}

static void body_owner_exit(void *a)
{
    (void)a;
    for (int shard = 0; shard < 2; shard++) {
        struct owner_arg oa = {.task_shard = shard, .fn = block_fn};
        hy_ref omon;
        hy_pid owner = spawn_owner(oa, &omon);
        hy_pid task = recv_pid();
        hy_ref tmon;
        HY_CHECK_EQ(hy_monitor(task, &tmon), 0);
        HY_CHECK_EQ(hy_send(owner, T_GO, NULL, 0), 0);
        struct hy_reason r = must_down(omon);
        HY_CHECK_EQ(r.kind, HY_REASON_NORMAL);
        /* the owner ended normally: its task is killed all the same */
        r = must_down(tmon);
        HY_CHECK_EQ(r.kind, HY_REASON_KILLED);
    }
}

static void test_task_owner_exit_kills_task(void **state)
{
    (void)state;
    hy_test_run(2, body_owner_exit, NULL);
}

static void body_linked(void *a)
{
    (void)a;
    /* linked and not trapping: the task's crash takes the owner down */
    struct owner_arg oa = {.task_shard = 1, .fn = panic_fn, .link = true};
    hy_ref omon;
    spawn_owner(oa, &omon);
    recv_pid();
    struct hy_reason r = must_down(omon);
    HY_CHECK_EQ(r.kind, HY_REASON_USER);
    HY_CHECK(strcmp(r.text, "boom") == 0);

    /* linked and trapping: an EXIT message, and the await says HY_EEXIT */
    oa.trap = true;
    spawn_owner(oa, &omon);
    recv_pid();
    struct hy_msg *m = hy_test_must_recv_tag(T_DONE, WAIT_NS);
    hy_msg_free(m);
    r = must_down(omon);
    HY_CHECK_EQ(r.kind, HY_REASON_NORMAL);

    /* unlinked, the same crash leaves the owner alone, without an EXIT */
    struct hy_task t;
    struct hy_task_opts o = on_shard(1);
    HY_CHECK_EQ(hy_task_async(panic_fn, NULL, &o, &t), 0);
    HY_CHECK_EQ(hy_task_await(&t, WAIT_NS, &m, NULL), HY_EEXIT);
    HY_CHECK_EQ(hy_mailbox_len(), 0); /* no EXIT either */
}

static void test_task_linked_follows_link_rules(void **state)
{
    (void)state;
    hy_test_run(2, body_linked, NULL);
}

static void body_owner_crash(void *a)
{
    (void)a;
    /* linked or not, a task dies when its owner crashes: by the link
     * (with the owner's reason) or by its guard (killed) */
    for (int link = 0; link < 2; link++) {
        struct owner_arg oa = {.task_shard = 1, .fn = block_fn, .link = link, .crash = true};
        hy_ref omon;
        hy_pid owner = spawn_owner(oa, &omon);
        hy_pid task = recv_pid();
        hy_ref tmon;
        HY_CHECK_EQ(hy_monitor(task, &tmon), 0);
        HY_CHECK_EQ(hy_send(owner, T_GO, NULL, 0), 0);
        struct hy_reason r = must_down(omon);
        HY_CHECK(strcmp(r.text, "owner down") == 0);
        r = must_down(tmon);
        if (link) {
            HY_CHECK_EQ(r.kind, HY_REASON_USER);
            HY_CHECK(strcmp(r.text, "owner down") == 0);
        } else {
            HY_CHECK_EQ(r.kind, HY_REASON_KILLED);
        }
    }
}

static void test_task_owner_crash_kills_task(void **state)
{
    (void)state;
    hy_test_run(2, body_owner_crash, NULL);
}

static void body_linked_normal_owner_exit(void *a)
{
    (void)a;
    struct owner_arg oa = {.task_shard = 1, .fn = block_fn, .link = true};
    hy_ref omon;
    hy_pid owner = spawn_owner(oa, &omon);
    hy_pid task = recv_pid();
    hy_ref tmon;
    HY_CHECK_EQ(hy_monitor(task, &tmon), 0);
    HY_CHECK_EQ(hy_send(owner, T_GO, NULL, 0), 0);
    /* the owner returns normally once it sent the pid: with a link, a
     * normal exit does not stop the task (Erlang link rules) ... */
    struct hy_reason r = must_down(omon);
    HY_CHECK_EQ(r.kind, HY_REASON_NORMAL);
    struct hy_proc_info info;
    /* ... so it is still there until someone stops it */
    HY_CHECK_EQ(hy_proc_info(task, &info), 0);
    HY_CHECK_EQ(hy_exit_pid(task, hy_reason_make(HY_REASON_KILL)), 0);
    r = must_down(tmon);
    HY_CHECK_EQ(r.kind, HY_REASON_KILLED);
}

static void test_task_linked_survives_normal_owner_exit(void **state)
{
    (void)state;
    hy_test_run(2, body_linked_normal_owner_exit, NULL);
}

/* ---- ownership, spent handles, shutdown ---------------------------------------------- */

static void stranger_main(void *a)
{
    struct hy_task t;
    memcpy(&t, a, sizeof(t));
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_task_await(&t, 0, &m, NULL), HY_EPERM);
    HY_CHECK_EQ(hy_task_yield(&t, 0, &m, NULL), HY_EPERM);
    HY_CHECK_EQ(hy_task_shutdown(&t), HY_EPERM);
}

static void body_ownership(void *a)
{
    (void)a;
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(wait_go_fn, NULL, NULL, &t), 0);
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(t);
    so.shard = 1;
    hy_ref smon;
    so.monitor = true;
    so.monitor_ref = &smon;
    HY_CHECK_EQ(hy_spawn_opt(stranger_main, &t, &so, NULL), 0);
    must_down(smon);
    /* the stranger changed nothing: the owner still gets the result */
    HY_CHECK_EQ(hy_send(t.pid, T_GO, NULL, 0), 0);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_task_await(&t, WAIT_NS, &m, NULL), 0);
    hy_msg_free(m);
    /* spent */
    HY_CHECK_EQ(hy_task_await(&t, 0, &m, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_task_yield(&t, 0, &m, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_task_shutdown(&t), 0);
    /* bad arguments */
    HY_CHECK_EQ(hy_task_async(NULL, NULL, NULL, &t), HY_EINVAL);
    HY_CHECK_EQ(hy_task_async(empty_fn, NULL, NULL, NULL), HY_EINVAL);
    struct hy_task_opts bad = on_shard(7);
    HY_CHECK_EQ(hy_task_async(empty_fn, NULL, &bad, &t), HY_EINVAL);
    HY_CHECK_EQ(hy_task_await(NULL, 0, &m, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_task_return(NULL, NULL, 0), HY_EINVAL);
}

static void test_task_only_owner_awaits(void **state)
{
    (void)state;
    hy_test_run(2, body_ownership, NULL);
}

static void body_shutdown(void *a)
{
    (void)a;
    for (int link = 0; link < 2; link++) {
        struct hy_task_opts o = on_shard(1);
        o.link = link;
        struct hy_task t;
        HY_CHECK_EQ(hy_task_async(block_fn, NULL, &o, &t), 0);
        hy_ref mon;
        HY_CHECK_EQ(hy_monitor(t.pid, &mon), 0);
        HY_CHECK_EQ(hy_task_shutdown(&t), 0);
        HY_CHECK(t.done);
        struct hy_reason r = must_down(mon);
        HY_CHECK_EQ(r.kind, HY_REASON_KILLED);
        HY_CHECK_EQ(hy_task_shutdown(&t), 0);
        /* we are alive (a linked task's kill did not come back) and hold
         * nothing of it */
        HY_CHECK_EQ(hy_mailbox_len(), 0);
    }
    /* a result already received is dropped by shutdown */
    struct hy_task t;
    HY_CHECK_EQ(hy_task_async(echo_fn, "x", NULL, &t), 0);
    hy_ref mon;
    HY_CHECK_EQ(hy_monitor(t.pid, &mon), 0);
    must_down(mon); /* its result is queued by now */
    HY_CHECK(hy_mailbox_len() > 0);
    HY_CHECK_EQ(hy_task_shutdown(&t), 0);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_task_shutdown(void **state)
{
    (void)state;
    hy_test_run(2, body_shutdown, NULL);
}

static void test_task_outside_a_process(void **state)
{
    (void)state;
    struct hy_task t;
    assert_int_equal(hy_task_async(empty_fn, NULL, NULL, &t), HY_ENOTPROC);
    memset(&t, 0, sizeof(t));
    assert_int_equal(hy_task_shutdown(&t), HY_ENOTPROC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_result),
        cmocka_unit_test(test_task_empty_result_and_buffer),
        cmocka_unit_test(test_task_many_across_shards),
        cmocka_unit_test(test_task_crash_is_error),
        cmocka_unit_test(test_task_result_sent_before_a_crash_counts),
        cmocka_unit_test(test_task_await_timeout_kills),
        cmocka_unit_test(test_task_yield_timeout_keeps_running),
        cmocka_unit_test(test_task_late_result_dropped),
        cmocka_unit_test(test_task_owner_exit_kills_task),
        cmocka_unit_test(test_task_owner_crash_kills_task),
        cmocka_unit_test(test_task_linked_follows_link_rules),
        cmocka_unit_test(test_task_linked_survives_normal_owner_exit),
        cmocka_unit_test(test_task_only_owner_awaits),
        cmocka_unit_test(test_task_shutdown),
        cmocka_unit_test(test_task_outside_a_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
