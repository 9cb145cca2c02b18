/* Tests of otp/application.c: the node's tree (a root supervisor per shard
 * under the node root), per-shard children, restarts on the child's shard,
 * escalation of a shard root to the node root, the orderly stop on SIGTERM
 * and SIGINT, start failures, and the structured reports (otp/report.c).
 *
 * Each test runs an application whose main process is the test body. Test
 * workers record events ("start a@1", "stop a@1") and tell the body when
 * they start (TAG_STARTED), so waiting for a restart is a receive, never a
 * sleep. The application's stop callback checks a clean shutdown: only the
 * controller is left, every buffer home. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

#define TAG_STARTED 1
#define TAG_CRASH   2
#define WAIT_NS     10000000000LL /* a one-sided bound for what must happen */

/* ---- events ------------------------------------------------------------------ */

#define MAX_EV 128
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static char events[MAX_EV][32];
static unsigned nev;

static void __attribute__((format(printf, 1, 2))) ev(const char *fmt, ...)
{
    pthread_mutex_lock(&ev_lock);
    if (nev < MAX_EV) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(events[nev++], sizeof(events[0]), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&ev_lock);
}

static void assert_events(const char *const *want, unsigned n)
{
    pthread_mutex_lock(&ev_lock);
    unsigned got = nev;
    pthread_mutex_unlock(&ev_lock);
    for (unsigned i = 0; i < got; i++)
        print_message("  event %u: %s\n", i, events[i]);
    assert_int_equal(got, n);
    for (unsigned i = 0; i < n; i++)
        assert_string_equal(events[i], want[i]);
}

static bool has_event(const char *e)
{
    bool found = false;
    pthread_mutex_lock(&ev_lock);
    for (unsigned i = 0; i < nev; i++)
        found |= strcmp(events[i], e) == 0;
    pthread_mutex_unlock(&ev_lock);
    return found;
}

/* ---- reports ---------------------------------------------------------------- */

struct rep {
    int type;
    char context[40];
    char id[16];
    char action[16];
    hy_pid who, child;
    int reason_kind;
    int error;
    char line[256];
};

#define MAX_REP 256
static pthread_mutex_t rep_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rep reps[MAX_REP];
static unsigned nrep;

static void on_report(const struct hy_report *r, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&rep_lock);
    if (nrep < MAX_REP) {
        struct rep *x = &reps[nrep++];
        memset(x, 0, sizeof(*x));
        x->type = r->type;
        snprintf(x->context, sizeof(x->context), "%s", r->context ? r->context : "");
        snprintf(x->id, sizeof(x->id), "%s", r->child_id ? r->child_id : "");
        snprintf(x->action, sizeof(x->action), "%s", r->action ? r->action : "");
        x->who = r->who;
        x->child = r->child;
        x->reason_kind = r->reason ? r->reason->kind : -1;
        x->error = r->error;
        hy_report_format(r, x->line, sizeof(x->line));
    }
    pthread_mutex_unlock(&rep_lock);
}

/* The first report of type with context and child id (NULL: any), copied
 * into *out. */
static bool find_report(int type, const char *context, const char *id, struct rep *out)
{
    bool found = false;
    pthread_mutex_lock(&rep_lock);
    for (unsigned i = 0; i < nrep && !found; i++) {
        if (reps[i].type == type && strcmp(reps[i].context, context) == 0 &&
            (!id || strcmp(reps[i].id, id) == 0)) {
            *out = reps[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&rep_lock);
    return found;
}

static unsigned report_count(void)
{
    pthread_mutex_lock(&rep_lock);
    unsigned n = nrep;
    pthread_mutex_unlock(&rep_lock);
    return n;
}

/* ---- the test worker ---------------------------------------------------------- */

/* Whom workers tell that they started (the test body, once it runs). */
static pthread_mutex_t coll_lock = PTHREAD_MUTEX_INITIALIZER;
static hy_pid collector;

static void set_collector(hy_pid p)
{
    pthread_mutex_lock(&coll_lock);
    collector = p;
    pthread_mutex_unlock(&coll_lock);
}

struct started {
    hy_pid pid;
    int shard;
    char id[16];
};

static int worker_init(struct hy_gs *gs, void *arg)
{
    const char *id = arg;
    hy_trap_exit(true, NULL); /* terminate runs when the supervisor stops us */
    hy_gs_set_state(gs, (void *)id);
    ev("start %s@%d", id, hy_shard_id());
    if (strcmp(id, "bad") == 0) {
        hy_gs_stop(gs, hy_reason_user(7, "bad init"));
        return HY_GS_STOP;
    }
    pthread_mutex_lock(&coll_lock);
    hy_pid c = collector;
    pthread_mutex_unlock(&coll_lock);
    if (!hy_pid_is_none(c)) {
        struct started s = {.pid = hy_self(), .shard = hy_shard_id()};
        snprintf(s.id, sizeof(s.id), "%s", id);
        hy_send(c, TAG_STARTED, &s, sizeof(s));
    }
    return HY_GS_OK;
}

static int worker_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    (void)data;
    (void)len;
    if (tag == TAG_CRASH) {
        hy_gs_stop(gs, hy_reason_user(0, "boom"));
        return HY_GS_STOP;
    }
    return HY_GS_OK;
}

static void worker_terminate(struct hy_gs *gs, const struct hy_reason *reason)
{
    (void)reason;
    ev("stop %s@%d", (const char *)hy_gs_state(gs), hy_shard_id());
}

static const struct hy_gen_server_ops worker_ops = {
    .init = worker_init,
    .handle_cast = worker_cast,
    .terminate = worker_terminate,
};

#define GS_CHILD(name)                                                                             \
    {                                                                                              \
        .ops = &worker_ops, .shard = -1, .init_arg = name                                          \
    }
static const struct hy_sup_gs_child gs_a = GS_CHILD("a");
static const struct hy_sup_gs_child gs_b = GS_CHILD("b");
static const struct hy_sup_gs_child gs_bad = GS_CHILD("bad");
static const struct hy_sup_gs_child gs_w[3] = {GS_CHILD("w0"), GS_CHILD("w1"), GS_CHILD("w2")};

#define SPEC(name, gs)                                                                             \
    {                                                                                              \
        .id = name, .start = hy_sup_start_gen_server, .arg = &(gs), .arg_size = sizeof(gs),        \
        .shutdown_ns = 2000000000LL,                                                               \
    }

static const struct hy_child_spec two_children[] = {SPEC("a", gs_a), SPEC("b", gs_b)};

/* ---- helpers ---------------------------------------------------------------- */

/* Receives one TAG_STARTED (WAIT_NS at most). */
static bool recv_started(struct started *s)
{
    struct hy_msg *m;
    if (hy_recv_tag(TAG_STARTED, &m, WAIT_NS) != 0)
        return false;
    memcpy(s, m->data, sizeof(*s));
    hy_msg_free(m);
    return true;
}

/* The pid of child id under sup (HY_PID_NONE if none). */
static hy_pid child_pid(hy_pid sup, const char *id)
{
    struct hy_child_info ci[8];
    size_t n = 0;
    if (hy_supervisor_which_children(sup, ci, 8, &n) != 0)
        return HY_PID_NONE;
    for (size_t i = 0; i < n && i < 8; i++)
        if (strcmp(ci[i].id, id) == 0)
            return ci[i].pid;
    return HY_PID_NONE;
}

static hy_pid shard_root(unsigned shard)
{
    hy_pid root;
    if (hy_app_root(&root) != 0)
        return HY_PID_NONE;
    char id[16];
    snprintf(id, sizeof(id), "shard%u", shard);
    return child_pid(root, id);
}

/* Waits to be stopped by the application (shutdown). */
static void wait_for_stop(void)
{
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
}

static int app_start(void *arg)
{
    (void)arg;
    ev("app_start");
    return 0;
}

static void app_stop(void *arg)
{
    (void)arg;
    ev("app_stop");
    /* the whole tree is gone: only the controller is left */
    HY_CHECK(hy_test_quiesce(1, 10000));
}

static int run_app(const struct hy_app *app, unsigned nshards, struct hy_app_result *res)
{
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = nshards;
    int st = hy_app_run(app, &cfg, res);
    hy_test_assert_checks();
    assert_false(hy_running());
    assert_int_equal(st, res->status);
    return st;
}

static int setup(void **state)
{
    (void)state;
    nev = 0;
    nrep = 0;
    set_collector(HY_PID_NONE);
    hy_report_set_enabled(true);
    hy_report_set_handler(on_report, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hy_report_set_handler(NULL, NULL);
    hy_report_set_enabled(true);
    return 0;
}

/* ---- tree shape --------------------------------------------------------------- */

#define SHAPE_SHARDS 3

static void shape_main(void *arg)
{
    (void)arg;
    hy_pid root;
    HY_CHECK_EQ(hy_app_root(&root), 0);
    HY_CHECK_EQ(hy_pid_shard(root), 0);
    struct hy_child_info ci[8];
    size_t n = 0;
    HY_CHECK_EQ(hy_supervisor_which_children(root, ci, 8, &n), 0);
    HY_CHECK_EQ(n, SHAPE_SHARDS);
    for (unsigned i = 0; i < n && i < SHAPE_SHARDS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "shard%u", i);
        HY_CHECK(strcmp(ci[i].id, id) == 0);
        HY_CHECK_EQ(ci[i].type, HY_SUPERVISOR);
        HY_CHECK_EQ(hy_pid_shard(ci[i].pid), i);
        struct hy_child_info cc[4];
        size_t k = 0;
        HY_CHECK_EQ(hy_supervisor_which_children(ci[i].pid, cc, 4, &k), 0);
        HY_CHECK_EQ(k, 2);
        for (size_t j = 0; j < k && j < 2; j++) {
            HY_CHECK(strcmp(cc[j].id, j == 0 ? "a" : "b") == 0);
            HY_CHECK_EQ(cc[j].type, HY_WORKER);
            HY_CHECK_EQ(hy_pid_shard(cc[j].pid), i);
        }
    }
    struct hy_child_counts k;
    HY_CHECK_EQ(hy_supervisor_count_children(root, &k), 0);
    HY_CHECK_EQ(k.supervisors, SHAPE_SHARDS);
    HY_CHECK_EQ(k.active, SHAPE_SHARDS);
}

static void test_application_tree_shape(void **state)
{
    (void)state;
    struct hy_app app = {
        .name = "shape",
        .children = two_children,
        .nchildren = 2,
        .stop = app_stop,
        .main = shape_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, SHAPE_SHARDS, &res), HY_APP_STOPPED);
    assert_int_equal(res.signal, 0);
    assert_int_equal(res.error, 0);
    /* the application said it started and stopped */
    struct rep r;
    assert_true(find_report(HY_REPORT_APPLICATION, "started", NULL, &r));
    assert_true(find_report(HY_REPORT_APPLICATION, "stopped", NULL, &r));
    assert_non_null(strstr(r.line, "name=shape"));
}

/* ---- per-shard children ----------------------------------------------------------- */

static const struct hy_child_spec per_shard[3] = {
    SPEC("w0", gs_w[0]),
    SPEC("w1", gs_w[1]),
    SPEC("w2", gs_w[2]),
};

static const struct hy_child_spec *shard_list(unsigned shard, size_t *n, void *arg)
{
    (void)arg;
    *n = shard + 1; /* shard i: w0 .. wi */
    return per_shard;
}

static void per_shard_main(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < 3; i++) {
        hy_pid sr = shard_root(i);
        HY_CHECK_EQ(hy_pid_shard(sr), i);
        struct hy_child_counts k;
        HY_CHECK_EQ(hy_supervisor_count_children(sr, &k), 0);
        HY_CHECK_EQ(k.active, i + 1);
        for (unsigned j = 0; j <= i; j++) {
            char id[8];
            snprintf(id, sizeof(id), "w%u", j);
            HY_CHECK_EQ(hy_pid_shard(child_pid(sr, id)), i);
        }
    }
}

static void test_application_per_shard_children(void **state)
{
    (void)state;
    struct hy_app app = {
        .name = "per_shard",
        .shard_children = shard_list,
        .start = app_start,
        .stop = app_stop,
        .main = per_shard_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 3, &res), HY_APP_STOPPED);
    /* each started on its own shard (the event is written by init, on the
     * child's thread), in shard order, then stopped in reverse */
    static const char *const want[] = {
        "app_start",  "start w0@0", "start w0@1", "start w1@1", "start w0@2",
        "start w1@2", "start w2@2", "stop w2@2",  "stop w1@2",  "stop w0@2",
        "stop w1@1",  "stop w0@1",  "stop w0@0",  "app_stop",
    };
    assert_events(want, sizeof(want) / sizeof(want[0]));
}

/* ---- a crash is restarted on its shard ----------------------------------------------- */

struct crash_ctx {
    hy_pid shard1_root, old, fresh;
};

static void crash_main(void *arg)
{
    struct crash_ctx *c = arg;
    set_collector(hy_self());
    c->shard1_root = shard_root(1);
    c->old = child_pid(c->shard1_root, "a");
    HY_CHECK_EQ(hy_pid_shard(c->old), 1);
    HY_CHECK_EQ(hy_gen_server_cast(c->old, TAG_CRASH, NULL, 0), 0);
    struct started s;
    HY_CHECK(recv_started(&s));
    HY_CHECK(strcmp(s.id, "a") == 0);
    HY_CHECK_EQ(s.shard, 1);
    HY_CHECK_EQ(hy_pid_shard(s.pid), 1);
    HY_CHECK(!hy_pid_eq(s.pid, c->old));
    c->fresh = s.pid;
    HY_CHECK(hy_pid_eq(child_pid(c->shard1_root, "a"), s.pid));
    /* shard 0's tree was not touched */
    HY_CHECK_EQ(hy_pid_shard(child_pid(shard_root(0), "a")), 0);
}

static void test_application_crash_restarts_on_shard(void **state)
{
    (void)state;
    struct crash_ctx c;
    memset(&c, 0, sizeof(c));
    struct hy_app app = {
        .name = "crash",
        .children = two_children,
        .nchildren = 2,
        .stop = app_stop,
        .main = crash_main,
        .arg = &c,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_STOPPED);
    assert_true(has_event("stop a@1")); /* terminate ran on the crash */
    /* the GenServer's crash report and the supervisor's report: who, why,
     * what was done */
    struct rep r;
    assert_true(find_report(HY_REPORT_CRASH, "terminating", NULL, &r));
    assert_true(hy_pid_eq(r.who, c.old));
    assert_int_equal(r.reason_kind, HY_REASON_USER);
    assert_true(find_report(HY_REPORT_SUPERVISOR, "child_terminated", "a", &r));
    assert_true(hy_pid_eq(r.who, c.shard1_root));
    assert_true(hy_pid_eq(r.child, c.old));
    assert_int_equal(r.reason_kind, HY_REASON_USER);
    assert_string_equal(r.action, "restart");
    assert_non_null(strstr(r.line, "supervisor_report context=child_terminated"));
    assert_non_null(strstr(r.line, "id=a"));
    assert_non_null(strstr(r.line, "reason=\"user(0, boom)\""));
    assert_non_null(strstr(r.line, "action=restart"));
    /* and a progress report for the new child */
    bool seen = false;
    pthread_mutex_lock(&rep_lock);
    for (unsigned i = 0; i < nrep; i++)
        seen |= reps[i].type == HY_REPORT_PROGRESS && hy_pid_eq(reps[i].child, c.fresh);
    pthread_mutex_unlock(&rep_lock);
    assert_true(seen);
}

/* ---- a shard root beyond its intensity escalates to the node root ------------------ */

struct esc_ctx {
    hy_pid old_root0, old_root1, new_root0, new_root1;
    struct hy_reason down;
};

static void escalate_main(void *arg)
{
    struct esc_ctx *c = arg;
    set_collector(hy_self());
    c->old_root0 = shard_root(0);
    c->old_root1 = shard_root(1);
    hy_ref mref;
    HY_CHECK_EQ(hy_monitor(c->old_root1, &mref), 0);
    /* first crash: restarted by shard 1's root (intensity 1) */
    HY_CHECK_EQ(hy_gen_server_cast(child_pid(c->old_root1, "a"), TAG_CRASH, NULL, 0), 0);
    struct started s;
    HY_CHECK(recv_started(&s));
    HY_CHECK(strcmp(s.id, "a") == 0 && s.shard == 1);
    /* second crash: one restart too many, the shard root gives up */
    HY_CHECK_EQ(hy_gen_server_cast(s.pid, TAG_CRASH, NULL, 0), 0);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_ref(mref, &m, WAIT_NS), 0);
    if (m) {
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        c->down = d.reason;
        hy_msg_free(m);
    }
    /* the node root restarts it on shard 1, with fresh children in order */
    HY_CHECK(recv_started(&s));
    HY_CHECK(strcmp(s.id, "a") == 0 && s.shard == 1);
    HY_CHECK(recv_started(&s));
    HY_CHECK(strcmp(s.id, "b") == 0 && s.shard == 1);
    c->new_root0 = shard_root(0);
    c->new_root1 = shard_root(1);
}

static void test_application_shard_root_escalates(void **state)
{
    (void)state;
    struct esc_ctx c;
    memset(&c, 0, sizeof(c));
    struct hy_app app = {
        .name = "escalate",
        .children = two_children,
        .nchildren = 2,
        .shard_flags = {.strategy = HY_ONE_FOR_ONE, .intensity = 1, .period_s = 3600},
        .node_flags = {.strategy = HY_ONE_FOR_ONE, .intensity = 1, .period_s = 3600},
        .stop = app_stop,
        .main = escalate_main,
        .arg = &c,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_STOPPED);
    assert_int_equal(c.down.kind, HY_REASON_SHUTDOWN);
    assert_true(hy_pid_eq(c.new_root0, c.old_root0));
    assert_false(hy_pid_eq(c.new_root1, c.old_root1));
    assert_false(hy_pid_is_none(c.new_root1));
    assert_int_equal(hy_pid_shard(c.new_root1), 1);
    struct rep r;
    assert_true(find_report(HY_REPORT_SUPERVISOR, "reached_max_restart_intensity", "a", &r));
    assert_true(hy_pid_eq(r.who, c.old_root1));
    assert_string_equal(r.action, "shutdown");
    assert_true(find_report(HY_REPORT_SUPERVISOR, "child_terminated", "shard1", &r));
    assert_true(hy_pid_eq(r.child, c.old_root1));
    assert_int_equal(r.reason_kind, HY_REASON_SHUTDOWN);
    assert_string_equal(r.action, "restart");
}

/* ---- the node root beyond its intensity ends the application ------------------------- */

static void give_up_main(void *arg)
{
    (void)arg;
    set_collector(hy_self());
    for (int round = 0; round < 2; round++) {
        hy_pid sr = shard_root(1);
        HY_CHECK(!hy_pid_is_none(sr));
        hy_exit_pid(sr, hy_reason_make(HY_REASON_KILL));
        if (round == 0) {
            struct started s;
            HY_CHECK(recv_started(&s)); /* the new shard 1 root's a ... */
            HY_CHECK(recv_started(&s)); /* ... and b: it is up */
            HY_CHECK(strcmp(s.id, "b") == 0 && s.shard == 1);
        }
    }
    wait_for_stop(); /* the application stops us */
}

static void test_application_node_root_gives_up(void **state)
{
    (void)state;
    struct hy_app app = {
        .name = "give_up",
        .children = two_children,
        .nchildren = 2,
        .node_flags = {.intensity = 1, .period_s = 3600},
        .stop = app_stop,
        .main = give_up_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_GAVE_UP);
    assert_int_equal(res.reason.kind, HY_REASON_SHUTDOWN);
    assert_true(has_event("app_stop"));
    struct rep r;
    assert_true(find_report(HY_REPORT_SUPERVISOR, "reached_max_restart_intensity", "shard1", &r));
    assert_int_equal(r.reason_kind, HY_REASON_KILLED);
    assert_true(find_report(HY_REPORT_APPLICATION, "exited", NULL, &r));
    assert_int_equal(r.reason_kind, HY_REASON_SHUTDOWN);
}

/* ---- orderly stop on SIGTERM / SIGINT ------------------------------------------------ */

static void main_ended(void *arg)
{
    (void)arg;
    ev("main_exit");
}

static void sigterm_main(void *arg)
{
    (void)arg;
    ev("main");
    HY_CHECK_EQ(hy_on_exit(main_ended, NULL), 0);
    kill(getpid(), SIGTERM); /* process-directed: any thread may take it */
    wait_for_stop();
}

static void sigint_main(void *arg)
{
    (void)arg;
    ev("main");
    HY_CHECK_EQ(hy_on_exit(main_ended, NULL), 0);
    raise(SIGINT); /* thread-directed: lands on this shard's thread */
    wait_for_stop();
}

static const char *const stop_order[] = {
    "app_start", "start a@0", "start b@0", "start a@1", "start b@1", "main",
    "main_exit", "stop b@1",  "stop a@1",  "stop b@0",  "stop a@0",  "app_stop",
};

static void run_signal_test(hy_proc_fn body, int sig)
{
    struct hy_app app = {
        .name = "signal",
        .children = two_children,
        .nchildren = 2,
        .start = app_start,
        .stop = app_stop,
        .main = body,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_STOPPED);
    assert_int_equal(res.signal, sig);
    assert_events(stop_order, sizeof(stop_order) / sizeof(stop_order[0]));
    /* the previous disposition is back */
    struct sigaction now;
    assert_int_equal(sigaction(sig, NULL, &now), 0);
    assert_true(now.sa_handler == SIG_DFL);
}

static void test_application_sigterm_stops_in_reverse_order(void **state)
{
    (void)state;
    run_signal_test(sigterm_main, SIGTERM);
}

static void test_application_sigint_from_a_shard_thread(void **state)
{
    (void)state;
    run_signal_test(sigint_main, SIGINT);
}

/* ---- start failures ---------------------------------------------------------------- */

static const struct hy_child_spec good_list[] = {SPEC("a", gs_a), SPEC("b", gs_b)};
static const struct hy_child_spec bad_list[] = {SPEC("a", gs_a), SPEC("bad", gs_bad),
                                                SPEC("b", gs_b)};

static const struct hy_child_spec *fail_list(unsigned shard, size_t *n, void *arg)
{
    (void)arg;
    *n = shard == 1 ? 3 : 2;
    return shard == 1 ? bad_list : good_list;
}

static void never_main(void *arg)
{
    (void)arg;
    ev("main");
}

static void test_application_start_failure(void **state)
{
    (void)state;
    struct hy_app app = {
        .name = "fail",
        .shard_children = fail_list,
        .start = app_start,
        .stop = app_stop,
        .main = never_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_START_FAILED);
    assert_int_equal(res.error, HY_ESTOPPED);
    assert_int_equal(res.reason.kind, HY_REASON_USER);
    assert_non_null(strstr(res.reason.text, "shard1"));
    /* what was started is stopped in reverse order; main never ran */
    static const char *const want[] = {
        "app_start", "start a@0", "start b@0", "start a@1", "start bad@1",
        "stop a@1",  "stop b@0",  "stop a@0",  "app_stop",
    };
    assert_events(want, sizeof(want) / sizeof(want[0]));
    struct rep r = {0};
    assert_true(find_report(HY_REPORT_SUPERVISOR, "start_error", "bad", &r));
    assert_int_equal(r.error, HY_ESTOPPED);
    assert_int_equal(hy_pid_shard(r.who), 1);
    assert_true(find_report(HY_REPORT_SUPERVISOR, "start_error", "shard1", &r));
    assert_int_equal(hy_pid_shard(r.who), 0);
    assert_true(find_report(HY_REPORT_APPLICATION, "start_failed", NULL, &r));
}

static int refuse_start(void *arg)
{
    (void)arg;
    ev("app_start");
    return HY_EINVAL;
}

static void test_application_start_callback_failure(void **state)
{
    (void)state;
    struct hy_app app = {
        .name = "refuse",
        .children = two_children,
        .nchildren = 2,
        .start = refuse_start,
        .stop = app_stop,
        .main = never_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_START_FAILED);
    assert_int_equal(res.error, HY_EINVAL);
    static const char *const want[] = {"app_start"}; /* no tree, no stop callback */
    assert_events(want, 1);
}

/* ---- main failing, hy_app_stop, reports off ----------------------------------------- */

static void failing_main(void *arg)
{
    (void)arg;
    hy_panic("oops");
}

static void test_application_main_failure_stops_the_tree(void **state)
{
    (void)state;
    struct hy_app app = {
        .name = "main_fails",
        .children = two_children,
        .nchildren = 2,
        .stop = app_stop,
        .main = failing_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_MAIN_FAILED);
    assert_int_equal(res.reason.kind, HY_REASON_USER);
    assert_string_equal(res.reason.text, "oops");
    static const char *const want[] = {
        "start a@0", "start b@0", "start a@1", "start b@1", "stop b@1",
        "stop a@1",  "stop b@0",  "stop a@0",  "app_stop",
    };
    assert_events(want, sizeof(want) / sizeof(want[0]));
}

static void stop_api_main(void *arg)
{
    (void)arg;
    set_collector(hy_self());
    /* a crash and its restart: reports are off, the handler hears nothing */
    HY_CHECK_EQ(hy_gen_server_cast(child_pid(shard_root(1), "a"), TAG_CRASH, NULL, 0), 0);
    struct started s;
    HY_CHECK(recv_started(&s));
    HY_CHECK_EQ(hy_app_stop(), 0);
    wait_for_stop();
}

static void test_application_stop_api_and_reports_off(void **state)
{
    (void)state;
    hy_report_set_enabled(false);
    struct hy_app app = {
        .name = "quiet",
        .children = two_children,
        .nchildren = 2,
        .stop = app_stop,
        .main = stop_api_main,
    };
    struct hy_app_result res;
    assert_int_equal(run_app(&app, 2, &res), HY_APP_STOPPED);
    assert_int_equal(res.signal, 0);
    assert_int_equal(report_count(), 0);
    assert_true(has_event("stop a@1"));
}

static void test_application_errors(void **state)
{
    (void)state;
    struct hy_app_result res;
    assert_int_equal(hy_app_run(NULL, NULL, &res), HY_APP_RUNTIME_FAILED);
    assert_int_equal(res.error, HY_EINVAL);
    struct hy_app bad = {.nchildren = 2};
    assert_int_equal(hy_app_run(&bad, NULL, &res), HY_APP_RUNTIME_FAILED);
    struct hy_app simple_node = {.node_flags = {.strategy = HY_SIMPLE_ONE_FOR_ONE}};
    assert_int_equal(hy_app_run(&simple_node, NULL, &res), HY_APP_RUNTIME_FAILED);
    struct hy_app ok = {.name = "x"};
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.ring_size = 3; /* not a power of two: the runtime refuses */
    assert_int_equal(hy_app_run(&ok, &cfg, &res), HY_APP_RUNTIME_FAILED);
    assert_int_equal(res.error, HY_EINVAL);
    assert_int_equal(hy_app_stop(), HY_ENOTSTARTED);
    hy_pid p;
    assert_int_equal(hy_app_root(&p), HY_ENOTSTARTED);
}

/* hy_app_run from a process: HY_APP_RUNTIME_FAILED (error HY_EPERM). */
static void app_run_inside(void *arg)
{
    struct hy_app_result *res = arg;
    struct hy_app ok = {.name = "x"};
    HY_CHECK_EQ(hy_app_run(&ok, NULL, res), HY_APP_RUNTIME_FAILED);
}

/* Every status hy_app_run returns is described by hy_strerror/hy_err_name,
 * as the HY_E* codes are (it used to say "unknown error"). */
static void test_application_status_strings(void **state)
{
    (void)state;
    struct hy_app_result res;
    memset(&res, 0, sizeof(res));
    assert_int_equal(hy_test_run(1, app_run_inside, &res), 0);
    assert_int_equal(res.status, HY_APP_RUNTIME_FAILED);
    assert_int_equal(res.error, HY_EPERM);
    static const struct {
        int status;
        const char *name;
    } st[] = {
        {HY_APP_GAVE_UP, "HY_APP_GAVE_UP"},
        {HY_APP_START_FAILED, "HY_APP_START_FAILED"},
        {HY_APP_MAIN_FAILED, "HY_APP_MAIN_FAILED"},
        {HY_APP_HALTED, "HY_APP_HALTED"},
        {HY_APP_RUNTIME_FAILED, "HY_APP_RUNTIME_FAILED"},
    };
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        assert_string_not_equal(hy_strerror(st[i].status), "unknown error");
        assert_string_equal(hy_err_name(st[i].status), st[i].name);
    }
    assert_string_equal(hy_strerror(HY_APP_STOPPED), "success");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_application_tree_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_per_shard_children, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_crash_restarts_on_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_shard_root_escalates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_node_root_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_sigterm_stops_in_reverse_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_application_sigint_from_a_shard_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_application_start_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_start_callback_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_main_failure_stops_the_tree, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_application_stop_api_and_reports_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_status_strings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
