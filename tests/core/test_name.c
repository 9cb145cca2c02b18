/* Tests of core/name.c: register / unregister / whereis / registered, the
 * errors (duplicate name, second name for a process, unknown name, dead
 * process, bad names), names vanishing with their process, send by name
 * keeping per-pair order with sends by pid, and concurrent registration of
 * one name from two shards.
 *
 * Most tests run twice: the registered process on the caller's shard
 * (`_same_shard`) and on shard 1 (`_cross_shard`); the table's owner is
 * shard 0. Test bodies run as processes (hy_test_run) and record failures
 * with HY_CHECK. Waits are on real conditions with a generous deadline
 * (hy_test_wait_until), never sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS) /* for a message that must come */
#define WAIT_MS 10000u

enum {
    T_DATA = 1,
    T_GO,
    T_READY,
    T_STOP,
    T_REPORT,
    T_CMD,
    T_PING,
    T_PONG,
};

#define FAIL(what) hy_test_check_fail(__FILE__, __LINE__, "%s", (what))

struct carg {
    hy_pid peer;
    uint32_t n;
    uint32_t mode;
    char name[HY_NAME_MAX];
};

/* ---- helpers ------------------------------------------------------------- */

static struct hy_spawn_opts on(int shard)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = shard;
    return o;
}

static hy_pid spawn_a(struct hy_spawn_opts o, hy_proc_fn fn, const struct carg *a)
{
    o.arg_size = a ? sizeof(*a) : 0;
    hy_pid pid = HY_PID_NONE;
    int rc = hy_spawn_opt(fn, (void *)a, &o, &pid);
    HY_CHECK_EQ(rc, 0);
    return pid;
}

static hy_pid spawn_mon(struct hy_spawn_opts o, hy_proc_fn fn, const struct carg *a, hy_ref *ref)
{
    o.monitor = true;
    o.monitor_ref = ref;
    return spawn_a(o, fn, a);
}





static uint32_t recv_u32(uint64_t tag)
{
    struct hy_msg *m = hy_test_must_recv_tag(tag, WAIT_NS);
    if (!m)
        return UINT32_MAX;
    uint32_t v = hy_test_payload_u32(m);
    hy_msg_free(m);
    return v;
}

static struct hy_down_info recv_down(hy_ref ref)
{
    struct hy_down_info d;
    memset(&d, 0, sizeof(d));
    d.reason.kind = 0xffff;
    struct hy_msg *m = NULL;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc == 0) {
        HY_CHECK(m->tag == HY_TAG_DOWN);
        if (m->size == sizeof(d))
            memcpy(&d, m->data, sizeof(d));
        hy_msg_free(m);
    }
    return d;
}

/* Serves T_CMD until T_STOP: cmd 0 = answer T_PONG, 1 = register a->name
 * and report the result, 2 = whereis a->name and report the pid. */
static void server(void *arg)
{
    const struct carg *a = arg;
    for (;;) {
        struct hy_msg *m = NULL;
        if (hy_recv(&m, WAIT_NS) != 0) {
            FAIL("server: idle for too long");
            return;
        }
        uint64_t tag = m->tag;
        hy_pid from = m->from;
        if (tag == T_CMD) {
            char name[HY_NAME_MAX];
            uint32_t cmd;
            memcpy(&cmd, m->data, sizeof(cmd));
            memcpy(name, m->data + sizeof(cmd), sizeof(name));
            if (cmd == 0) {
                hy_test_send_tag(from, T_PONG);
            } else if (cmd == 1) {
                int32_t rc = hy_register(name, HY_PID_NONE);
                HY_CHECK_EQ(hy_send(from, T_REPORT, &rc, sizeof(rc)), 0);
            } else if (cmd == 2) {
                hy_pid p = HY_PID_NONE;
                int rc = hy_whereis(name, &p);
                HY_CHECK(rc == 0 || rc == HY_ENONAME);
                HY_CHECK_EQ(hy_send(from, T_REPORT, &p, sizeof(p)), 0);
            }
        }
        hy_msg_free(m);
        (void)a;
        if (tag == T_STOP)
            return;
    }
}

static void cmd(hy_pid to, uint32_t c, const char *name)
{
    unsigned char buf[sizeof(uint32_t) + HY_NAME_MAX];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, &c, sizeof(c));
    snprintf((char *)buf + sizeof(c), HY_NAME_MAX, "%s", name);
    HY_CHECK_EQ(hy_send(to, T_CMD, buf, sizeof(buf)), 0);
}

/* Asks server `to` to register itself as name; returns its hy_register's rc. */
static int remote_register(hy_pid to, const char *name)
{
    cmd(to, 1, name);
    struct hy_msg *m = hy_test_must_recv_tag(T_REPORT, WAIT_NS);
    int32_t rc = INT32_MIN;
    if (m) {
        memcpy(&rc, m->data, sizeof(rc));
        hy_msg_free(m);
    }
    return rc;
}

/* Asks server `to` where name is, from its shard. */
static hy_pid remote_whereis(hy_pid to, const char *name)
{
    cmd(to, 2, name);
    struct hy_msg *m = hy_test_must_recv_tag(T_REPORT, WAIT_NS);
    hy_pid p = HY_PID_NONE;
    if (m) {
        memcpy(&p, m->data, sizeof(p));
        hy_msg_free(m);
    }
    return p;
}

static void stop_server(hy_pid p)
{
    hy_ref r;
    HY_CHECK_EQ(hy_monitor(p, &r), 0);
    hy_test_send_tag(p, T_STOP);
    struct hy_down_info d = recv_down(r);
    HY_CHECK_EQ(d.reason.kind, HY_REASON_NORMAL);
}

static hy_pid where(const char *name)
{
    hy_pid p = HY_PID_NONE;
    HY_CHECK_EQ(hy_whereis(name, &p), 0);
    return p;
}

static bool name_gone(void *arg)
{
    hy_pid p;
    return hy_whereis((const char *)arg, &p) == HY_ENONAME;
}

/* True when name is in hy_registered's list with pid. */
static bool listed(const char *name, hy_pid pid)
{
    char names[16][HY_NAME_MAX];
    hy_pid pids[16];
    size_t count = 0;
    HY_CHECK_EQ(hy_registered(names, pids, 16, &count), 0);
    for (size_t i = 0; i < count && i < 16; i++)
        if (strcmp(names[i], name) == 0)
            return hy_pid_eq(pids[i], pid);
    return false;
}

static void return_now(void *arg)
{
    (void)arg;
}

static hy_pid dead_pid_on(int shard)
{
    hy_ref r;
    struct carg a = {0};
    hy_pid p = spawn_mon(on(shard), return_now, &a, &r);
    recv_down(r);
    return p;
}

#define BOTH_SHARDS(name)                                                                          \
    static void test_name_##name##_same_shard(void **state)                                        \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 0;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }                                                                                              \
    static void test_name_##name##_cross_shard(void **state)                                       \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 1;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }
#define BOTH_TESTS(name)                                                                           \
    cmocka_unit_test(test_name_##name##_same_shard),                                               \
        cmocka_unit_test(test_name_##name##_cross_shard)

/* ---- register / whereis / unregister / registered ------------------------------- */

static void body_register_whereis_unregister(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    struct carg a = {0};
    hy_pid b = spawn_a(on(s), server, &a);
    hy_pid other = spawn_a(on(1 - s), server, &a);
    size_t count = 99;
    HY_CHECK_EQ(hy_registered(NULL, NULL, 0, &count), 0);
    HY_CHECK_EQ(count, 0);

    /* another process, by pid */
    HY_CHECK_EQ(hy_register("b", b), 0);
    HY_CHECK(hy_pid_eq(where("b"), b));
    /* visible from every shard at once (the answer came after the insert) */
    HY_CHECK(hy_pid_eq(remote_whereis(b, "b"), b));
    HY_CHECK(hy_pid_eq(remote_whereis(other, "b"), b));
    HY_CHECK(listed("b", b));
    struct hy_proc_info i;
    HY_CHECK_EQ(hy_proc_info(b, &i), 0);
    HY_CHECK(strcmp(i.name, "b") == 0);

    /* the caller itself (HY_PID_NONE), and a process registering itself */
    HY_CHECK_EQ(hy_register("main", HY_PID_NONE), 0);
    HY_CHECK(hy_pid_eq(where("main"), self));
    HY_CHECK_EQ(remote_register(other, "other"), 0);
    HY_CHECK(hy_pid_eq(where("other"), other));
    HY_CHECK_EQ(hy_registered(NULL, NULL, 0, &count), 0);
    HY_CHECK_EQ(count, 3);
    HY_CHECK(listed("main", self));
    HY_CHECK(listed("other", other));

    /* unregister: gone everywhere, and the process may take a name again */
    HY_CHECK_EQ(hy_unregister("b"), 0);
    hy_pid p;
    HY_CHECK_EQ(hy_whereis("b", &p), HY_ENONAME);
    HY_CHECK(hy_pid_is_none(remote_whereis(other, "b")));
    HY_CHECK(!listed("b", b));
    HY_CHECK_EQ(hy_proc_info(b, &i), 0);
    HY_CHECK_EQ(i.name[0], '\0');
    HY_CHECK_EQ(hy_unregister("b"), HY_ENONAME);
    HY_CHECK_EQ(hy_register("b2", b), 0);
    HY_CHECK(hy_pid_eq(where("b2"), b));
    /* and the name may go to someone else */
    HY_CHECK_EQ(remote_register(other, "b"), HY_EEXIST); /* other already has a name */
    HY_CHECK_EQ(hy_unregister("other"), 0);
    HY_CHECK_EQ(remote_register(other, "b"), 0);
    HY_CHECK(hy_pid_eq(where("b"), other));

    /* names held by others can be unregistered by anyone */
    HY_CHECK_EQ(hy_unregister("main"), 0);
    HY_CHECK_EQ(hy_unregister("b2"), 0);
    HY_CHECK_EQ(hy_unregister("b"), 0);
    HY_CHECK_EQ(hy_registered(NULL, NULL, 0, &count), 0);
    HY_CHECK_EQ(count, 0);
    stop_server(b);
    stop_server(other);
}
BOTH_SHARDS(register_whereis_unregister)

/* hy_registered: every name with its pid; a short array gets the total. */
static void body_registered_lists_all(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {0};
    hy_pid p[3];
    char names[3][HY_NAME_MAX] = {"list_a", "list_b", "list_c"};
    for (int i = 0; i < 3; i++) {
        p[i] = spawn_a(on(i == 0 ? 0 : s), server, &a);
        HY_CHECK_EQ(hy_register(names[i], p[i]), 0);
    }
    char got[4][HY_NAME_MAX];
    hy_pid gp[4];
    size_t count = 0;
    HY_CHECK_EQ(hy_registered(got, gp, 4, &count), 0);
    HY_CHECK_EQ(count, 3);
    for (int i = 0; i < 3; i++)
        HY_CHECK(listed(names[i], p[i]));
    /* a short array: the total comes back, one name is written */
    memset(got, 0x5a, sizeof(got));
    HY_CHECK_EQ(hy_registered(got, NULL, 1, &count), 0);
    HY_CHECK_EQ(count, 3);
    HY_CHECK(strcmp(got[0], "list_a") == 0 || strcmp(got[0], "list_b") == 0 ||
             strcmp(got[0], "list_c") == 0);
    HY_CHECK_EQ((unsigned char)got[1][0], 0x5a);
    HY_CHECK_EQ(hy_registered(NULL, NULL, 2, &count), HY_EINVAL);
    HY_CHECK_EQ(hy_registered(got, gp, 2, NULL), HY_EINVAL);
    for (int i = 0; i < 3; i++)
        stop_server(p[i]);
    for (int i = 0; i < 3; i++)
        HY_CHECK(hy_test_wait_until(name_gone, names[i], WAIT_MS));
}
BOTH_SHARDS(registered_lists_all)

/* ---- errors ----------------------------------------------------------------------- */

/* A taken name: HY_EEXIST, and the holder keeps it. The loser's attempt
 * leaves it free to take another name. */
static void body_duplicate_name(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {0};
    hy_pid b = spawn_a(on(s), server, &a);
    hy_pid c = spawn_a(on(s), server, &a);
    hy_pid d = spawn_a(on(1 - s), server, &a);
    HY_CHECK_EQ(hy_register("dup", b), 0);
    HY_CHECK_EQ(hy_register("dup", c), HY_EEXIST);
    HY_CHECK_EQ(hy_register("dup", d), HY_EEXIST);
    HY_CHECK_EQ(remote_register(c, "dup"), HY_EEXIST);
    HY_CHECK_EQ(hy_register("dup", HY_PID_NONE), HY_EEXIST);
    HY_CHECK(hy_pid_eq(where("dup"), b));
    struct hy_proc_info i;
    HY_CHECK_EQ(hy_proc_info(c, &i), 0);
    HY_CHECK_EQ(i.name[0], '\0');
    /* the failed attempts left nothing behind */
    HY_CHECK_EQ(hy_register("c_ok", c), 0);
    HY_CHECK_EQ(hy_register("d_ok", d), 0);
    HY_CHECK_EQ(hy_register("main_ok", HY_PID_NONE), 0);
    HY_CHECK(hy_pid_eq(where("c_ok"), c));
    HY_CHECK(hy_pid_eq(where("d_ok"), d));
    HY_CHECK_EQ(hy_unregister("main_ok"), 0);
    stop_server(b);
    stop_server(c);
    stop_server(d);
}
BOTH_SHARDS(duplicate_name)

/* One name per process: a second name is HY_EEXIST and is not registered. */
static void body_one_name_per_process(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {0};
    hy_pid b = spawn_a(on(s), server, &a);
    HY_CHECK_EQ(hy_register("first", b), 0);
    HY_CHECK_EQ(hy_register("second", b), HY_EEXIST);
    HY_CHECK_EQ(remote_register(b, "third"), HY_EEXIST);
    hy_pid p;
    HY_CHECK_EQ(hy_whereis("second", &p), HY_ENONAME);
    HY_CHECK_EQ(hy_whereis("third", &p), HY_ENONAME);
    HY_CHECK(hy_pid_eq(where("first"), b));
    struct hy_proc_info i;
    HY_CHECK_EQ(hy_proc_info(b, &i), 0);
    HY_CHECK(strcmp(i.name, "first") == 0);
    /* the same name twice is a second registration too */
    HY_CHECK_EQ(hy_register("first", b), HY_EEXIST);
    HY_CHECK(hy_pid_eq(where("first"), b));
    HY_CHECK_EQ(hy_register("me", HY_PID_NONE), 0);
    HY_CHECK_EQ(hy_register("me_too", HY_PID_NONE), HY_EEXIST);
    HY_CHECK_EQ(hy_unregister("me"), 0);
    stop_server(b);
    HY_CHECK(hy_test_wait_until(name_gone, "first", WAIT_MS));
}
BOTH_SHARDS(one_name_per_process)

/* Unknown names: HY_ENONAME from whereis, unregister and send_name. */
static void body_unknown_name(void *arg)
{
    (void)arg;
    hy_pid p = hy_self();
    HY_CHECK_EQ(hy_whereis("nope", &p), HY_ENONAME);
    HY_CHECK(hy_pid_eq(p, hy_self())); /* untouched */
    HY_CHECK_EQ(hy_unregister("nope"), HY_ENONAME);
    HY_CHECK_EQ(hy_send_name("nope", T_DATA, NULL, 0), HY_ENONAME);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_name_unknown_name(void **state)
{
    (void)state;
    hy_test_run(2, body_unknown_name, NULL);
}

/* A dead (or never-used, or foreign) pid: HY_ENOPROC, nothing registered. */
static void body_dead_pid(void *arg)
{
    int s = *(int *)arg;
    hy_pid d = dead_pid_on(s);
    HY_CHECK_EQ(hy_register("ghost", d), HY_ENOPROC);
    hy_pid unknown = hy_pid_make(hy_node_id(), hy_node_creation(), (uint16_t)s, 1u << 22, 1);
    HY_CHECK_EQ(hy_register("ghost", unknown), HY_ENOPROC);
    HY_CHECK_EQ(hy_register("ghost", hy_pid_make(hy_node_id(), hy_node_creation(), 9, 1, 1)),
                HY_ENOPROC);
    HY_CHECK_EQ(hy_register("ghost", hy_pid_make(hy_node_id() + 1, 1, 0, 1, 1)), HY_ENOPROC);
    hy_pid p;
    HY_CHECK_EQ(hy_whereis("ghost", &p), HY_ENONAME);
    /* and the name is still free */
    HY_CHECK_EQ(hy_register("ghost", HY_PID_NONE), 0);
    HY_CHECK_EQ(hy_unregister("ghost"), 0);
}
BOTH_SHARDS(dead_pid)

/* Bad names and arguments: HY_EINVAL; off a shard: HY_ENOTSHARD/ENOTPROC. */
static void body_invalid_names(void *arg)
{
    (void)arg;
    char longest[HY_NAME_MAX], too_long[HY_NAME_MAX + 1];
    memset(longest, 'n', sizeof(longest) - 1);
    longest[HY_NAME_MAX - 1] = '\0';
    memset(too_long, 'n', sizeof(too_long) - 1);
    too_long[HY_NAME_MAX] = '\0';
    hy_pid p;
    HY_CHECK_EQ(hy_register(NULL, HY_PID_NONE), HY_EINVAL);
    HY_CHECK_EQ(hy_register("", HY_PID_NONE), HY_EINVAL);
    HY_CHECK_EQ(hy_register(too_long, HY_PID_NONE), HY_EINVAL);
    HY_CHECK_EQ(hy_whereis(too_long, &p), HY_EINVAL);
    HY_CHECK_EQ(hy_whereis("", &p), HY_EINVAL);
    HY_CHECK_EQ(hy_whereis("x", NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_unregister(NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_unregister(too_long), HY_EINVAL);
    HY_CHECK_EQ(hy_send_name(NULL, T_DATA, NULL, 0), HY_EINVAL);
    /* the longest legal name works */
    HY_CHECK_EQ(hy_register(longest, HY_PID_NONE), 0);
    HY_CHECK(hy_pid_eq(where(longest), hy_self()));
    char names[1][HY_NAME_MAX];
    size_t count = 0;
    HY_CHECK_EQ(hy_registered(names, NULL, 1, &count), 0);
    HY_CHECK_EQ(count, 1);
    HY_CHECK(strcmp(names[0], longest) == 0);
    HY_CHECK_EQ(hy_unregister(longest), 0);
}

static void test_name_invalid_names(void **state)
{
    (void)state;
    hy_test_run(1, body_invalid_names, NULL);
}

static void test_name_calls_outside_a_shard(void **state)
{
    (void)state;
    hy_pid p;
    size_t count;
    assert_int_equal(hy_whereis("x", &p), HY_ENOTSHARD);
    assert_int_equal(hy_register("x", HY_PID_NONE), HY_ENOTPROC);
    assert_int_equal(hy_unregister("x"), HY_ENOTPROC);
    assert_int_equal(hy_send_name("x", T_DATA, NULL, 0), HY_ENOTSHARD);
    assert_int_equal(hy_registered(NULL, NULL, 0, &count), HY_ENOTSHARD);
}

/* ---- names vanish with their process ----------------------------------------------------- */

static void named_exit(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_register(a->name, HY_PID_NONE), 0);
    hy_test_send_tag(a->peer, T_READY);
    struct hy_msg *m = NULL;
    if (hy_recv_tag(T_GO, &m, WAIT_NS) != 0) {
        FAIL("named_exit: no T_GO");
        return;
    }
    hy_msg_free(m);
    switch (a->mode) {
    case 0:
        return;
    case 1:
        hy_panic("named %s", a->name);
        break;
    default:
        hy_recv_tag(T_STOP, &m, WAIT_NS); /* killed meanwhile */
        hy_msg_free(m);
    }
}

static void body_name_vanishes_on_exit(void *arg)
{
    int s = *(int *)arg;
    for (uint32_t mode = 0; mode < 3; mode++) {
        struct carg a = {.peer = hy_self(), .mode = mode};
        snprintf(a.name, sizeof(a.name), "gone_%u", mode);
        hy_ref r;
        hy_pid b = spawn_mon(on(s), named_exit, &a, &r);
        hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
        HY_CHECK(hy_pid_eq(where(a.name), b));
        if (mode == 2)
            hy_exit_pid(b, hy_reason_make(HY_REASON_KILL));
        else
            hy_test_send_tag(b, T_GO);
        recv_down(r);
        HY_CHECK(hy_test_wait_until(name_gone, a.name, WAIT_MS));
        HY_CHECK(!listed(a.name, b));
        /* free for the next one */
        HY_CHECK_EQ(hy_register(a.name, HY_PID_NONE), 0);
        HY_CHECK(hy_pid_eq(where(a.name), hy_self()));
        HY_CHECK_EQ(hy_unregister(a.name), 0);
    }
    /* a process killed before it ever ran, registered by someone else */
    struct carg a = {0};
    hy_ref r;
    hy_pid b = spawn_mon(on(s), server, &a, &r);
    HY_CHECK_EQ(hy_register("never_ran", b), 0);
    hy_exit_pid(b, hy_reason_make(HY_REASON_KILL));
    recv_down(r);
    HY_CHECK(hy_test_wait_until(name_gone, "never_ran", WAIT_MS));
}
BOTH_SHARDS(name_vanishes_on_exit)

/* A name unregistered and given to another process is not removed when its
 * former holder exits. */
static void body_reassigned_name_survives_old_holder(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {0};
    hy_pid b = spawn_a(on(s), server, &a);
    hy_pid c = spawn_a(on(1 - s), server, &a);
    HY_CHECK_EQ(hy_register("shared", b), 0);
    HY_CHECK_EQ(hy_unregister("shared"), 0);
    HY_CHECK_EQ(hy_register("shared", c), 0);
    stop_server(b);
    /* anything b's exit sent to shard 0 (a name removal) was sent before its
     * DOWN; a round trip with b's shard orders us after it */
    hy_pid z = spawn_a(on(s), server, &a);
    stop_server(z);
    HY_CHECK(hy_pid_eq(where("shared"), c));
    stop_server(c);
    HY_CHECK(hy_test_wait_until(name_gone, "shared", WAIT_MS));

    /* the same while the old holder is exiting: its exit races the
     * unregister (and the news of it to its shard) at varying distances */
    unsigned iters = (unsigned)hy_test_scaled(300);
    c = spawn_a(on(0), server, &a);
    for (unsigned it = 0; it < iters; it++) {
        char name[32];
        snprintf(name, sizeof(name), "shared_%u", it);
        hy_ref r;
        b = spawn_mon(on(s), server, &a, &r);
        HY_CHECK_EQ(hy_register(name, b), 0);
        hy_test_send_tag(b, T_STOP);
        for (unsigned k = 0; k < it % 4; k++)
            hy_yield();
        int rc = hy_unregister(name);
        HY_CHECK(rc == 0 || rc == HY_ENONAME); /* ENONAME: b's exit was first */
        HY_CHECK_EQ(hy_register(name, c), 0);
        recv_down(r);
        /* b's name (if it still had one) went before its DOWN */
        HY_CHECK(hy_pid_eq(where(name), c));
        HY_CHECK_EQ(hy_unregister(name), 0);
    }
    stop_server(c);
}
BOTH_SHARDS(reassigned_name_survives_old_holder)

/* ---- send by name ------------------------------------------------------------------------ */

/* Receives n T_DATA messages, checks they carry 0..n-1 in order, reports. */
static void seq_receiver(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_register(a->name, HY_PID_NONE), 0);
    hy_test_send_tag(a->peer, T_READY);
    uint32_t next = 0, ok = 1;
    for (uint32_t i = 0; i < a->n; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(T_DATA, WAIT_NS);
        if (!m) {
            ok = 0;
            break;
        }
        uint32_t v = hy_test_payload_u32(m);
        if (v != next) {
            hy_test_check_fail(__FILE__, __LINE__, "got %u, expected %u", v, next);
            ok = 0;
        }
        next = v + 1;
        hy_msg_free(m);
    }
    hy_test_send_u32(a->peer, T_REPORT, ok);
}

/* Sends interleaved by name and by pid from a sender on shard a->mode. */
static void seq_sender(void *arg)
{
    const struct carg *a = arg;
    hy_pid to = HY_PID_NONE;
    HY_CHECK_EQ(hy_whereis(a->name, &to), 0);
    for (uint32_t i = 0; i < a->n; i++) {
        /* runs of varying length on each path */
        bool by_name = ((i / (1 + i % 3)) & 1) != 0;
        int rc = by_name ? hy_send_name(a->name, T_DATA, &i, sizeof(i))
                         : hy_send(to, T_DATA, &i, sizeof(i));
        HY_CHECK_EQ(rc, 0);
    }
}

static void body_send_name_keeps_order(void *arg)
{
    int s = *(int *)arg;
    uint32_t n = (uint32_t)hy_test_scaled(5000);
    struct carg ra = {.peer = hy_self(), .n = n};
    snprintf(ra.name, sizeof(ra.name), "seq_rcv_%d", s);
    hy_ref r;
    spawn_mon(on(s), seq_receiver, &ra, &r);
    hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
    /* the sender is the test process itself, then a process on the other shard */
    struct carg sa = ra;
    seq_sender(&sa);
    HY_CHECK_EQ(recv_u32(T_REPORT), 1);
    recv_down(r);

    spawn_mon(on(s), seq_receiver, &ra, &r);
    hy_msg_free(hy_test_must_recv_tag(T_READY, WAIT_NS));
    hy_ref rs;
    spawn_mon(on(1 - s), seq_sender, &sa, &rs);
    HY_CHECK_EQ(recv_u32(T_REPORT), 1);
    recv_down(rs);
    recv_down(r);
}
BOTH_SHARDS(send_name_keeps_order)

/* ---- concurrent registration ------------------------------------------------------------------
 */

/* The same name registered at the same time from both shards: exactly one
 * wins (HY_EEXIST for the other), whereis names the winner, and the loser
 * is left free to take another name. */
static void body_concurrent_register_one_wins(void *arg)
{
    (void)arg;
    unsigned iters = (unsigned)hy_test_scaled(1000);
    struct carg a = {0};
    unsigned wins[2] = {0, 0};
    for (unsigned it = 0; it < iters; it++) {
        char name[32];
        snprintf(name, sizeof(name), "race_%u", it);
        hy_pid p[2] = {spawn_a(on(0), server, &a), spawn_a(on(1), server, &a)};
        /* both requests out before either answer is read; shard 1's request
         * needs one more hop to the table, so give it a varying head start */
        cmd(p[1], 1, name);
        for (unsigned k = 0; k < it % 8; k++)
            hy_yield();
        cmd(p[0], 1, name);
        int32_t rc[2] = {INT32_MIN, INT32_MIN};
        for (int k = 0; k < 2; k++) {
            struct hy_msg *m = hy_test_must_recv_tag(T_REPORT, WAIT_NS);
            if (!m)
                break;
            int idx = hy_pid_eq(m->from, p[0]) ? 0 : 1;
            memcpy(&rc[idx], m->data, sizeof(int32_t));
            hy_msg_free(m);
        }
        bool one_wins = (rc[0] == 0 && rc[1] == HY_EEXIST) || (rc[1] == 0 && rc[0] == HY_EEXIST);
        if (!one_wins) {
            hy_test_check_fail(__FILE__, __LINE__, "iteration %u: rc %d and %d", it, rc[0], rc[1]);
            stop_server(p[0]);
            stop_server(p[1]);
            continue;
        }
        int w = rc[0] == 0 ? 0 : 1;
        wins[w]++;
        HY_CHECK(hy_pid_eq(where(name), p[w]));
        /* the loser holds no name */
        char other[32];
        snprintf(other, sizeof(other), "loser_%u", it);
        HY_CHECK_EQ(remote_register(p[!w], other), 0);
        HY_CHECK(hy_pid_eq(where(other), p[!w]));
        stop_server(p[0]);
        stop_server(p[1]);
        HY_CHECK(hy_test_wait_until(name_gone, name, WAIT_MS));
        HY_CHECK(hy_test_wait_until(name_gone, other, WAIT_MS));
    }
    print_message("concurrent register: shard 0 won %u, shard 1 won %u\n", wins[0], wins[1]);
}

static void test_name_concurrent_register_one_wins(void **state)
{
    (void)state;
    hy_test_run(2, body_concurrent_register_one_wins, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH_TESTS(register_whereis_unregister),
        BOTH_TESTS(registered_lists_all),
        BOTH_TESTS(duplicate_name),
        BOTH_TESTS(one_name_per_process),
        cmocka_unit_test(test_name_unknown_name),
        BOTH_TESTS(dead_pid),
        cmocka_unit_test(test_name_invalid_names),
        cmocka_unit_test(test_name_calls_outside_a_shard),
        BOTH_TESTS(name_vanishes_on_exit),
        BOTH_TESTS(reassigned_name_survives_old_holder),
        BOTH_TESTS(send_name_keeps_order),
        cmocka_unit_test(test_name_concurrent_register_one_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
