/* Tests of otp/supervisor.c: the strategies (one_for_one, one_for_all,
 * rest_for_one: which children are stopped and restarted, in which order),
 * simple_one_for_one with many dynamic children, the restart types against
 * normal / shutdown / crash reasons, restart intensity (exceeded exactly at
 * intensity+1 restarts in the period, never by restarts spread over more
 * than a period), shutdown rules (brutal_kill, timeout then kill,
 * infinity), reverse stop order, a child failing to start, the dynamic API
 * and its errors, auto_shutdown with significant children, children on
 * another shard than their supervisor, a registered child re-registered on
 * every restart, nested supervisors, and the reports.
 *
 * Children are GenServers ("kids") that report their init and terminate as
 * EV messages to the test process, so orders are observed, not guessed.
 * The test process traps exits (its supervisors are linked to it and some
 * end with shutdown). Every wait is for a real condition with a generous
 * deadline; an event that must NOT happen is shown absent behind a barrier
 * the ordering guarantee places after it (STYLE.md rule 13). The only sleep
 * lets a restart period elapse: the passage of time is what it tests.
 * Tests named *_same_shard / *_cross_shard run the children on the
 * supervisor's shard and on shard 1. */
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
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
#include "crash_internal.h" /* to make the supervisor's monitor of a child fail */
#include "shard_internal.h" /* to see whether a process waits with a timeout */
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS) /* for a message that must come */
#define WAIT_MS 10000u

/* ---- captured log lines (reports go through hy_log) --------------------------------------- */

#define LOG_KEEP 64
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[LOG_KEEP][512];
static unsigned log_count;

static void capture(enum hy_log_level level, const char *line, void *ctx)
{
    (void)level;
    (void)ctx;
    pthread_mutex_lock(&log_lock);
    snprintf(log_lines[log_count % LOG_KEEP], sizeof(log_lines[0]), "%s", line);
    log_count++;
    pthread_mutex_unlock(&log_lock);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_count = 0;
    pthread_mutex_unlock(&log_lock);
}

/* True if a captured line contains all of a, b, c (NULL: ignored). */
static bool log_has(const char *a, const char *b, const char *c)
{
    bool found = false;
    pthread_mutex_lock(&log_lock);
    unsigned n = log_count < LOG_KEEP ? log_count : LOG_KEEP;
    for (unsigned i = 0; i < n && !found; i++) {
        const char *l = log_lines[i];
        found = strstr(l, a) && (!b || strstr(l, b)) && (!c || strstr(l, c));
    }
    pthread_mutex_unlock(&log_lock);
    return found;
}

/* ---- the kid: a GenServer child that reports what happens to it ------------------------- */

enum { T_EV = 1000, T_GO };

enum sev_kind { S_INIT = 1, S_TERM, S_INITFAIL, S_IGNORED };

struct sev {
    int kind;
    int idx;
    hy_pid pid;
    struct hy_reason reason;
};

enum kid_init { KI_OK = 0, KI_STOP, KI_IGNORE, KI_FAIL_IF_FLAGGED };

struct kid_cfg {
    int idx;
    bool trap;            /* trap exits: terminate runs on the supervisor's shutdown */
    bool block_terminate; /* terminate waits for T_GO */
    int init;             /* enum kid_init */
};

static hy_pid g_test;           /* the test process: every event goes there */
static atomic_int g_fail_start; /* KI_FAIL_IF_FLAGGED kids refuse to start while set */
static int g_dyn_shard = -1;    /* shard of dynamic children */

enum { C_PING = 1 };
enum { K_EXIT = 1 };

static void emit(int kind, int idx, const struct hy_reason *r)
{
    struct sev e;
    memset(&e, 0, sizeof(e));
    e.kind = kind;
    e.idx = idx;
    e.pid = hy_self();
    if (r)
        e.reason = *r;
    HY_CHECK_EQ(hy_send(g_test, T_EV, &e, sizeof(e)), 0);
}

static int kid_init(struct hy_gs *gs, void *arg)
{
    const struct kid_cfg *cfg = arg;
    struct kid_cfg *st = hy_alloc(sizeof(*st));
    *st = *cfg;
    hy_gs_set_state(gs, st);
    if (cfg->trap)
        hy_trap_exit(true, NULL);
    if (cfg->init == KI_STOP || (cfg->init == KI_FAIL_IF_FLAGGED && atomic_load(&g_fail_start))) {
        emit(S_INITFAIL, cfg->idx, NULL);
        hy_gs_stop(gs, hy_reason_user(2, "init refused"));
        return HY_GS_STOP;
    }
    if (cfg->init == KI_IGNORE) {
        emit(S_IGNORED, cfg->idx, NULL);
        return HY_GS_IGNORE;
    }
    emit(S_INIT, cfg->idx, NULL);
    return HY_GS_OK;
}

static int kid_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    (void)gs;
    (void)tag;
    hy_gen_server_reply(from, 1, data, len);
    return HY_GS_OK;
}

static int kid_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    if (tag == K_EXIT && len == sizeof(struct hy_reason)) {
        struct hy_reason r;
        memcpy(&r, data, sizeof(r));
        hy_gs_stop(gs, r);
        return HY_GS_STOP;
    }
    return HY_GS_OK;
}

static void kid_terminate(struct hy_gs *gs, const struct hy_reason *reason)
{
    const struct kid_cfg *st = hy_gs_state(gs);
    emit(S_TERM, st->idx, reason);
    if (st->block_terminate) {
        struct hy_msg *m;
        if (hy_recv_tag(T_GO, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
}

static const struct hy_gen_server_ops kid_ops = {
    .init = kid_init,
    .handle_call = kid_call,
    .handle_cast = kid_cast,
    .terminate = kid_terminate,
};

/* Start function of dynamic children: arg is the kid's index. */
static int start_dyn(const void *arg, size_t arg_size, hy_pid *pid)
{
    struct kid_cfg cfg = {0};
    if (arg_size == sizeof(int))
        memcpy(&cfg.idx, arg, sizeof(int));
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.shard = g_dyn_shard;
    o.arg_size = sizeof(cfg);
    return hy_gen_server_start_link(&kid_ops, &cfg, &o, pid);
}

/* A raw process that traps exits and ignores them: only kill stops it. */
static void stubborn_main(void *arg)
{
    (void)arg;
    emit(S_INIT, 99, NULL);
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
}

static int start_stubborn(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.link = true;
    o.trap_exit = true;
    return hy_spawn_opt(stubborn_main, NULL, &o, pid);
}

/* Start function that fails without starting anything. */
static int start_fail(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    (void)pid;
    return HY_ENOMEM;
}

/* A nested supervisor (type HY_SUPERVISOR): arg is a struct nested_arg. */
struct nested_arg {
    struct hy_sup_flags flags;
    struct hy_child_spec spec; /* spec.arg points into gs below */
    struct hy_sup_gs_child gs;
    size_t nchildren;
};

static int start_nested(const void *arg, size_t arg_size, hy_pid *pid)
{
    struct nested_arg na;
    if (arg_size != sizeof(na))
        return HY_EINVAL;
    memcpy(&na, arg, sizeof(na));
    na.spec.arg = &na.gs;
    return hy_supervisor_start_link(&na.flags, na.nchildren ? &na.spec : NULL, na.nchildren, NULL,
                                    pid, NULL);
}

/* ---- helpers ----------------------------------------------------------------------------- */

/* A worker spec for a kid; g is the storage of its start argument (it must
 * live until the spec is handed over: specs are copied). */
static struct hy_child_spec kid_spec(const char *id, const struct kid_cfg *cfg, int shard,
                                     struct hy_sup_gs_child *g)
{
    memset(g, 0, sizeof(*g));
    g->ops = &kid_ops;
    g->shard = shard;
    g->init_arg = cfg;
    struct hy_child_spec s;
    memset(&s, 0, sizeof(s));
    s.id = id;
    s.start = hy_sup_start_gen_server;
    s.arg = g;
    s.arg_size = sizeof(*g);
    s.restart = HY_PERMANENT;
    s.shutdown_ns = HY_SHUTDOWN_DEFAULT;
    s.type = HY_WORKER;
    return s;
}

static struct hy_sup_flags flags(int strategy, int intensity, unsigned period_s)
{
    struct hy_sup_flags f;
    memset(&f, 0, sizeof(f));
    f.strategy = strategy;
    f.intensity = intensity;
    f.period_s = period_s;
    f.auto_shutdown = HY_AUTO_NEVER;
    return f;
}

static bool recv_sev(struct sev *e)
{
    struct hy_msg *m;
    int rc = hy_recv_tag(T_EV, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return false;
    memcpy(e, m->data, sizeof(*e));
    hy_msg_free(m);
    return true;
}

static struct sev expect_sev_at(int kind, int idx, int line)
{
    struct sev e;
    memset(&e, 0, sizeof(e));
    if (recv_sev(&e) && (e.kind != kind || e.idx != idx))
        hy_test_check_fail(__FILE__, line, "event (%d, %d), expected (%d, %d)", e.kind, e.idx, kind,
                           idx);
    return e;
}
#define expect_sev(k, i) expect_sev_at((k), (i), __LINE__)

static void expect_no_sev_at(int line)
{
    struct hy_msg *m;
    if (hy_recv_tag(T_EV, &m, 0) == 0) {
        struct sev e;
        memcpy(&e, m->data, sizeof(e));
        hy_test_check_fail(__FILE__, line, "unexpected event (%d, %d)", e.kind, e.idx);
        hy_msg_free(m);
    }
}
#define expect_no_sev() expect_no_sev_at(__LINE__)

#define CHECK_KIND(r, k) HY_CHECK_EQ((r).kind, (k))

static hy_ref monitor(hy_pid pid)
{
    hy_ref ref = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor(pid, &ref), 0);
    return ref;
}

static struct hy_reason wait_down(hy_ref ref)
{
    struct hy_down_info d;
    memset(&d, 0, sizeof(d));
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc == 0) {
        memcpy(&d, m->data, sizeof(d));
        hy_msg_free(m);
    }
    return d.reason;
}

static int is_exit_from(const struct hy_msg *m, void *arg)
{
    return m->tag == HY_TAG_EXIT && hy_pid_eq(m->from, *(hy_pid *)arg);
}

/* Receives the EXIT of linked pid (we trap exits) and returns its reason. */
static struct hy_reason recv_exit(hy_pid pid)
{
    struct hy_exit_info x;
    memset(&x, 0, sizeof(x));
    struct hy_msg *m;
    int rc = hy_recv_match(is_exit_from, &pid, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc == 0) {
        memcpy(&x, m->data, sizeof(x));
        hy_msg_free(m);
    }
    return x.reason;
}

static hy_pid start_sup(const struct hy_sup_flags *f, const struct hy_child_spec *specs, size_t n)
{
    hy_pid sup = HY_PID_NONE;
    struct hy_reason why;
    int rc = hy_supervisor_start_link(f, specs, n, NULL, &sup, &why);
    HY_CHECK_EQ(rc, 0);
    return sup;
}

/* Stops a supervisor we are linked to and collects its EXIT. */
static void stop_sup(hy_pid sup)
{
    HY_CHECK_EQ(hy_gen_server_stop(sup, hy_reason_make(HY_REASON_SHUTDOWN), WAIT_NS), 0);
    CHECK_KIND(recv_exit(sup), HY_REASON_SHUTDOWN);
}

/* The supervisor exited on its own with shutdown (intensity, auto_shutdown). */
static void expect_sup_shutdown(hy_pid sup, hy_ref mref)
{
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN);
    CHECK_KIND(recv_exit(sup), HY_REASON_SHUTDOWN);
}

static size_t which(hy_pid sup, struct hy_child_info *out, size_t max)
{
    size_t count = 0;
    HY_CHECK_EQ(hy_supervisor_which_children(sup, out, max, &count), 0);
    return count;
}

static hy_pid child_pid(hy_pid sup, const char *id)
{
    struct hy_child_info ci[16];
    size_t n = which(sup, ci, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (strcmp(ci[i].id, id) == 0)
            return ci[i].pid;
    return HY_PID_NONE;
}

static struct hy_child_counts counts(hy_pid sup)
{
    struct hy_child_counts k;
    memset(&k, 0, sizeof(k));
    HY_CHECK_EQ(hy_supervisor_count_children(sup, &k), 0);
    return k;
}

static void make_exit(hy_pid kid, struct hy_reason r)
{
    HY_CHECK_EQ(hy_gen_server_cast(kid, K_EXIT, &r, sizeof(r)), 0);
}

static void crash(hy_pid kid)
{
    make_exit(kid, hy_reason_user(1, "boom"));
}

static bool alive(hy_pid pid)
{
    struct hy_proc_info info;
    return hy_proc_info(pid, &info) == 0;
}

/* Starts a body: trap exits, events to us. */
static void begin(void)
{
    g_test = hy_self();
    atomic_store(&g_fail_start, 0);
    hy_trap_exit(true, NULL);
}

/* Ends a body: nothing left in the mailbox. */
static void end(void)
{
    expect_no_sev();
    size_t n = hy_mailbox_len();
    HY_CHECK_EQ(n, 0);
    struct hy_msg *m;
    while (hy_recv(&m, 0) == 0) {
        hy_test_check_fail(__FILE__, __LINE__, "left in the mailbox: tag %llx",
                           (unsigned long long)m->tag);
        hy_msg_free(m);
    }
}

#define BOTH_SHARDS(name)                                                                          \
    static void test_supervisor_##name##_same_shard(void **state)                                  \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 0;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }                                                                                              \
    static void test_supervisor_##name##_cross_shard(void **state)                                 \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 1;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }
#define BOTH_TESTS(name)                                                                           \
    cmocka_unit_test(test_supervisor_##name##_same_shard),                                         \
        cmocka_unit_test(test_supervisor_##name##_cross_shard)

#define ONE_TEST(name)                                                                             \
    static void test_supervisor_##name(void **state)                                               \
    {                                                                                              \
        (void)state;                                                                               \
        hy_test_run(2, body_##name, NULL);                                                         \
    }

static const struct kid_cfg trapping[3] = {
    {0, true, false, KI_OK}, {1, true, false, KI_OK}, {2, true, false, KI_OK}};
static const char *const abc[3] = {"a", "b", "c"};

/* Starts a supervisor with the three trapping kids a, b, c on shard and
 * returns their pids (in start order, checked). */
static hy_pid start_abc(int strategy, int shard, hy_pid pids[3])
{
    struct hy_sup_gs_child g[3];
    struct hy_child_spec specs[3];
    for (int i = 0; i < 3; i++)
        specs[i] = kid_spec(abc[i], &trapping[i], shard, &g[i]);
    struct hy_sup_flags f = flags(strategy, 10, 5);
    hy_pid sup = start_sup(&f, specs, 3);
    for (int i = 0; i < 3; i++) {
        struct sev e = expect_sev(S_INIT, i);
        pids[i] = e.pid;
        HY_CHECK_EQ(hy_pid_shard(e.pid), shard);
    }
    struct hy_child_info ci[3];
    HY_CHECK_EQ(which(sup, ci, 3), 3);
    for (int i = 0; i < 3; i++) {
        HY_CHECK(strcmp(ci[i].id, abc[i]) == 0);
        HY_CHECK(hy_pid_eq(ci[i].pid, pids[i]));
    }
    return sup;
}

/* Checks which_children against the expected pids; changed[i] says whether
 * child i must have a new pid (then now[i] gets it). */
static void check_pids(hy_pid sup, const hy_pid before[3], const bool changed[3], hy_pid now[3])
{
    struct hy_child_info ci[3];
    HY_CHECK_EQ(which(sup, ci, 3), 3);
    for (int i = 0; i < 3; i++) {
        HY_CHECK(strcmp(ci[i].id, abc[i]) == 0);
        HY_CHECK(!hy_pid_is_none(ci[i].pid));
        if (changed[i]) {
            HY_CHECK(!hy_pid_eq(ci[i].pid, before[i]));
            HY_CHECK(hy_pid_eq(ci[i].pid, now[i]));
            HY_CHECK(!alive(before[i]));
        } else {
            HY_CHECK(hy_pid_eq(ci[i].pid, before[i]));
        }
    }
}

/* ---- strategies ---------------------------------------------------------------------------- */

static void body_strategy_one_for_one(void *arg)
{
    int shard = *(int *)arg;
    begin();
    hy_pid p[3], now[3] = {HY_PID_NONE, HY_PID_NONE, HY_PID_NONE};
    hy_pid sup = start_abc(HY_ONE_FOR_ONE, shard, p);
    crash(p[1]);
    struct sev e = expect_sev(S_TERM, 1);
    HY_CHECK_EQ(e.reason.kind, HY_REASON_USER);
    now[1] = expect_sev(S_INIT, 1).pid;
    /* the restart is done when the supervisor answers: nothing else moved */
    bool changed[3] = {false, true, false};
    check_pids(sup, p, changed, now);
    expect_no_sev();
    stop_sup(sup);
    expect_sev(S_TERM, 2);
    expect_sev(S_TERM, 1);
    expect_sev(S_TERM, 0);
    end();
}
BOTH_SHARDS(strategy_one_for_one)

static void body_strategy_one_for_all(void *arg)
{
    int shard = *(int *)arg;
    begin();
    hy_pid p[3], now[3];
    hy_pid sup = start_abc(HY_ONE_FOR_ALL, shard, p);
    crash(p[1]);
    CHECK_KIND(expect_sev(S_TERM, 1).reason, HY_REASON_USER);
    /* the others stop in reverse start order, then all start in order */
    CHECK_KIND(expect_sev(S_TERM, 2).reason, HY_REASON_SHUTDOWN);
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    for (int i = 0; i < 3; i++)
        now[i] = expect_sev(S_INIT, i).pid;
    bool changed[3] = {true, true, true};
    check_pids(sup, p, changed, now);
    expect_no_sev();
    stop_sup(sup);
    for (int i = 2; i >= 0; i--)
        expect_sev(S_TERM, i);
    end();
}
BOTH_SHARDS(strategy_one_for_all)

static void body_strategy_rest_for_one(void *arg)
{
    int shard = *(int *)arg;
    begin();
    hy_pid p[3], now[3];
    hy_pid sup = start_abc(HY_REST_FOR_ONE, shard, p);
    /* b: b and the ones after it (c) */
    crash(p[1]);
    CHECK_KIND(expect_sev(S_TERM, 1).reason, HY_REASON_USER);
    CHECK_KIND(expect_sev(S_TERM, 2).reason, HY_REASON_SHUTDOWN);
    now[1] = expect_sev(S_INIT, 1).pid;
    now[2] = expect_sev(S_INIT, 2).pid;
    bool changed[3] = {false, true, true};
    check_pids(sup, p, changed, now);
    expect_no_sev();
    /* c, the last one: only c */
    memcpy(p, (hy_pid[3]){p[0], now[1], now[2]}, sizeof(p));
    crash(p[2]);
    expect_sev(S_TERM, 2);
    now[2] = expect_sev(S_INIT, 2).pid;
    bool changed_c[3] = {false, false, true};
    check_pids(sup, p, changed_c, now);
    expect_no_sev();
    /* a, the first one: all of them */
    p[2] = now[2];
    crash(p[0]);
    expect_sev(S_TERM, 0);
    expect_sev(S_TERM, 2);
    expect_sev(S_TERM, 1);
    for (int i = 0; i < 3; i++)
        now[i] = expect_sev(S_INIT, i).pid;
    bool changed_a[3] = {true, true, true};
    check_pids(sup, p, changed_a, now);
    expect_no_sev();
    stop_sup(sup);
    for (int i = 2; i >= 0; i--)
        expect_sev(S_TERM, i);
    end();
}
BOTH_SHARDS(strategy_rest_for_one)

/* Temporary children stopped as siblings by one_for_all / rest_for_one are
 * not restarted and their specs go (OTP). */
static void body_strategy_one_for_all_temporary_sibling(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g[3];
    struct hy_child_spec specs[3];
    for (int i = 0; i < 3; i++)
        specs[i] = kid_spec(abc[i], &trapping[i], shard, &g[i]);
    specs[2].restart = HY_TEMPORARY;
    struct hy_sup_flags f = flags(HY_ONE_FOR_ALL, 10, 5);
    hy_pid sup = start_sup(&f, specs, 3);
    hy_pid p[3];
    for (int i = 0; i < 3; i++)
        p[i] = expect_sev(S_INIT, i).pid;
    crash(p[0]);
    expect_sev(S_TERM, 0);
    expect_sev(S_TERM, 2);
    expect_sev(S_TERM, 1);
    expect_sev(S_INIT, 0);
    expect_sev(S_INIT, 1);
    struct hy_child_info ci[3];
    HY_CHECK_EQ(which(sup, ci, 3), 2);
    expect_no_sev();
    stop_sup(sup);
    expect_sev(S_TERM, 1);
    expect_sev(S_TERM, 0);
    end();
}
BOTH_SHARDS(strategy_one_for_all_temporary_sibling)

/* ---- simple_one_for_one -----------------------------------------------------------------------
 */

static void body_simple_one_for_one(void *arg)
{
    int shard = *(int *)arg;
    begin();
    g_dyn_shard = shard;
    struct hy_child_spec tmpl;
    memset(&tmpl, 0, sizeof(tmpl));
    tmpl.id = "dyn";
    tmpl.start = start_dyn;
    tmpl.restart = HY_TRANSIENT;
    tmpl.shutdown_ns = HY_SHUTDOWN_DEFAULT;
    struct hy_sup_flags f = flags(HY_SIMPLE_ONE_FOR_ONE, 10, 5);
    hy_pid sup = start_sup(&f, &tmpl, 1);
    struct hy_child_counts k = counts(sup);
    HY_CHECK_EQ(k.active, 0);
    HY_CHECK_EQ(k.workers, 0);

    size_t n = hy_test_scaled(500);
    hy_pid *pids = calloc(n, sizeof(*pids));
    struct hy_child_info *ci = calloc(n, sizeof(*ci));
    for (size_t i = 0; i < n; i++) {
        int idx = (int)i;
        HY_CHECK_EQ(hy_supervisor_start_dynamic(sup, &idx, sizeof(idx), &pids[i]), 0);
        struct sev e = expect_sev(S_INIT, idx);
        HY_CHECK(hy_pid_eq(e.pid, pids[i]));
        HY_CHECK_EQ(hy_pid_shard(pids[i]), shard);
    }
    k = counts(sup);
    HY_CHECK_EQ(k.specs, 1); /* OTP: one spec, the template */
    HY_CHECK_EQ(k.active, n);
    HY_CHECK_EQ(k.workers, n);
    HY_CHECK_EQ(k.supervisors, 0);
    HY_CHECK_EQ(which(sup, ci, n), n);
    for (size_t i = 0; i < n; i++) {
        HY_CHECK(hy_pid_eq(ci[i].pid, pids[i]));
        HY_CHECK_EQ(ci[i].id[0], '\0');
    }

    /* a crash: restarted with the same argument (transient) */
    hy_ref mref = monitor(pids[3]);
    crash(pids[3]);
    CHECK_KIND(wait_down(mref), HY_REASON_USER);
    expect_sev(S_TERM, 3);
    hy_pid again = expect_sev(S_INIT, 3).pid;
    HY_CHECK(!hy_pid_eq(again, pids[3]));
    HY_CHECK_EQ(counts(sup).active, n);
    /* a normal exit: removed */
    mref = monitor(pids[5]);
    make_exit(pids[5], hy_reason_make(HY_REASON_NORMAL));
    CHECK_KIND(wait_down(mref), HY_REASON_NORMAL);
    expect_sev(S_TERM, 5);
    HY_CHECK_EQ(counts(sup).active, n - 1);
    /* terminate_child by pid: removed */
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, NULL, pids[7]), 0);
    HY_CHECK(!alive(pids[7]));
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, NULL, pids[7]), HY_ENOENT);
    k = counts(sup);
    HY_CHECK_EQ(k.active, n - 2);
    HY_CHECK_EQ(k.workers, n - 2);
    HY_CHECK_EQ(which(sup, ci, n), n - 2);

    /* static-child calls do not apply */
    struct hy_sup_gs_child g;
    struct hy_child_spec s = kid_spec("x", &trapping[0], shard, &g);
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &s, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "dyn", NULL), HY_ENOENT);
    HY_CHECK_EQ(hy_supervisor_delete_child(sup, "dyn"), HY_ENOENT);

    /* stopping the supervisor stops them all */
    hy_ref last = monitor(pids[n - 1]);
    stop_sup(sup);
    CHECK_KIND(wait_down(last), HY_REASON_SHUTDOWN);
    HY_CHECK(!alive(pids[0]));
    free(pids);
    free(ci);
    end();
}
BOTH_SHARDS(simple_one_for_one)

static void body_start_dynamic_not_simple(void *arg)
{
    (void)arg;
    begin();
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup = start_sup(&f, NULL, 0);
    int idx = 0;
    HY_CHECK_EQ(hy_supervisor_start_dynamic(sup, &idx, sizeof(idx), NULL), HY_EINVAL);
    stop_sup(sup);
    end();
}
ONE_TEST(start_dynamic_not_simple)

/* ---- restart types ----------------------------------------------------------------------- */

struct pid_changed {
    hy_pid sup;
    hy_pid old;
};

static bool first_child_changed(void *a)
{
    struct pid_changed *pc = a;
    struct hy_child_info ci[1];
    size_t n = which(pc->sup, ci, 1);
    return n == 0 || !hy_pid_eq(ci[0].pid, pc->old);
}

static void body_restart_types(void *arg)
{
    int shard = *(int *)arg;
    begin();
    const int types[3] = {HY_PERMANENT, HY_TRANSIENT, HY_TEMPORARY};
    const struct hy_reason reasons[4] = {
        hy_reason_make(HY_REASON_NORMAL), hy_reason_make(HY_REASON_SHUTDOWN),
        hy_reason_user(1, "crash"),
        hy_reason_make(HY_REASON_KILL), /* sent as a kill signal: ends with killed */
    };
    /* expected[type][reason]: restarted? */
    const bool expected[3][4] = {
        {true, true, true, true},
        {false, false, true, true},
        {false, false, false, false},
    };
    for (int t = 0; t < 3; t++) {
        for (int r = 0; r < 4; r++) {
            struct hy_sup_gs_child g;
            struct hy_child_spec spec = kid_spec("k", &trapping[0], shard, &g);
            spec.restart = types[t];
            struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 10, 5);
            hy_pid sup = start_sup(&f, &spec, 1);
            hy_pid kid = expect_sev(S_INIT, 0).pid;
            if (reasons[r].kind == HY_REASON_KILL) {
                HY_CHECK_EQ(hy_exit_pid(kid, reasons[r]), 0);
            } else {
                make_exit(kid, reasons[r]);
                expect_sev(S_TERM, 0);
            }
            struct pid_changed pc = {sup, kid};
            HY_CHECK(hy_test_wait_until(first_child_changed, &pc, WAIT_MS));
            struct hy_child_info ci[1];
            size_t n = which(sup, ci, 1);
            if (expected[t][r]) {
                hy_pid now = expect_sev(S_INIT, 0).pid;
                HY_CHECK_EQ(n, 1);
                HY_CHECK(hy_pid_eq(ci[0].pid, now));
            } else if (types[t] == HY_TEMPORARY) {
                HY_CHECK_EQ(n, 0); /* its spec is gone */
            } else {
                HY_CHECK_EQ(n, 1);
                HY_CHECK(hy_pid_is_none(ci[0].pid)); /* spec kept, not running */
                HY_CHECK_EQ(counts(sup).active, 0);
            }
            if (hy_test_check_failures())
                print_message("restart type %d, reason kind %d\n", types[t], reasons[r].kind);
            expect_no_sev();
            stop_sup(sup);
            if (expected[t][r])
                expect_sev(S_TERM, 0);
            end();
        }
    }
}
BOTH_SHARDS(restart_types)

/* ---- intensity ----------------------------------------------------------------------------- */

/* Crashes the only child `times` times, each time waiting for its restart. */
static hy_pid crash_restarts(hy_pid kid, int times)
{
    for (int i = 0; i < times; i++) {
        crash(kid);
        expect_sev(S_TERM, 0);
        kid = expect_sev(S_INIT, 0).pid;
    }
    return kid;
}

static void body_intensity(void *arg)
{
    int shard = *(int *)arg;
    begin();
    /* {intensity flag, restarts allowed}: 0 allows none, as OTP; -1 too;
     * 20 takes the restart history past its first sizes */
    const int cases[4][2] = {{3, 3}, {0, 0}, {-1, 0}, {20, 20}};
    for (int c = 0; c < 4; c++) {
        struct hy_sup_gs_child g;
        struct hy_child_spec spec = kid_spec("k", &trapping[0], shard, &g);
        struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, cases[c][0], 60);
        hy_pid sup = start_sup(&f, &spec, 1);
        hy_ref mref = monitor(sup);
        hy_pid kid = expect_sev(S_INIT, 0).pid;
        /* `intensity` restarts within the period: fine */
        kid = crash_restarts(kid, cases[c][1]);
        HY_CHECK_EQ(counts(sup).active, 1);
        /* one more: the supervisor gives up with shutdown */
        crash(kid);
        expect_sev(S_TERM, 0);
        expect_sup_shutdown(sup, mref);
        expect_no_sev(); /* no restart before it went (its DOWN is the barrier) */
        end();
    }
}
BOTH_SHARDS(intensity)

/* A supervisor's memory follows the restarts that happen, not its
 * intensity: INT_MAX (a silly or hostile configuration) costs no more than
 * 1 (it once allocated 8 bytes per unit of intensity, 16 GiB). */
static void body_intensity_huge(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("k", &trapping[0], shard, &g);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, INT_MAX, 3600);
    struct mallinfo2 before = mallinfo2(); /* zeros under AddressSanitizer */
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    kid = crash_restarts(kid, 30);
    struct mallinfo2 after = mallinfo2();
    HY_CHECK(after.hblkhd + after.uordblks < before.hblkhd + before.uordblks + (16u << 20));
    HY_CHECK_EQ(counts(sup).active, 1);
    stop_sup(sup);
    expect_sev(S_TERM, 0);
    end();
}
BOTH_SHARDS(intensity_huge)

/* Restarts spread over more than a period do not add up. */
static void body_intensity_period(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("k", &trapping[0], shard, &g);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 2, 1);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_ref mref = monitor(sup);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    kid = crash_restarts(kid, 2);
    /* let the period pass: the two restarts fall out of it */
    hy_sleep_ns(1100 * MS);
    kid = crash_restarts(kid, 2);
    HY_CHECK_EQ(counts(sup).active, 1); /* 4 restarts in ~1.1 s, 2 per period: alive */
    crash(kid);                         /* the 3rd within this period */
    expect_sev(S_TERM, 0);
    expect_sup_shutdown(sup, mref);
    end();
}
BOTH_SHARDS(intensity_period)

/* Restart attempts that fail count as restarts: the supervisor gives up. */
static void body_intensity_failed_restarts(void *arg)
{
    int shard = *(int *)arg;
    begin();
    static const struct kid_cfg flaky = {0, true, false, KI_FAIL_IF_FLAGGED};
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("k", &flaky, shard, &g);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 3, 60);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_ref mref = monitor(sup);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    atomic_store(&g_fail_start, 1);
    crash(kid);
    expect_sev(S_TERM, 0);
    expect_sup_shutdown(sup, mref);
    /* each attempt reported its failure; none started */
    int fails = 0;
    struct hy_msg *m;
    while (hy_recv_tag(T_EV, &m, 0) == 0) {
        struct sev e;
        memcpy(&e, m->data, sizeof(e));
        HY_CHECK_EQ(e.kind, S_INITFAIL);
        fails++;
        hy_msg_free(m);
    }
    HY_CHECK(fails >= 1 && fails <= 3);
    /* their EXITs went to the supervisor, not to us */
    end();
}
BOTH_SHARDS(intensity_failed_restarts)

/* ---- shutdown -------------------------------------------------------------------------------- */

static void body_shutdown_brutal_kill(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("k", &trapping[0], shard, &g);
    spec.shutdown_ns = HY_SHUTDOWN_BRUTAL_KILL;
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    hy_ref mref = monitor(kid);
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "k", HY_PID_NONE), 0);
    HY_CHECK(!alive(kid));
    CHECK_KIND(wait_down(mref), HY_REASON_KILLED);
    expect_no_sev(); /* killed: terminate never ran (its event would precede the DOWN) */
    /* and the supervisor's own stop kills it as well */
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "k", &kid), 0);
    expect_sev(S_INIT, 0);
    mref = monitor(kid);
    stop_sup(sup);
    CHECK_KIND(wait_down(mref), HY_REASON_KILLED);
    end();
}
BOTH_SHARDS(shutdown_brutal_kill)

/* Out of memory for the monitor that shutdown sets on a child: the child is
 * still stopped (its link's EXIT says when), not left running. */
static void body_shutdown_monitor_fails(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("k", &trapping[0], shard, &g);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    hy_ref mref = monitor(kid); /* ours, before the failure is armed */
    atomic_store(&hy__fail_monitor_hi, kid.hi);
    atomic_store(&hy__fail_monitor_lo, kid.lo);
    int rc = hy_supervisor_terminate_child(sup, "k", HY_PID_NONE);
    atomic_store(&hy__fail_monitor_lo, 0);
    atomic_store(&hy__fail_monitor_hi, 0);
    HY_CHECK_EQ(rc, 0);
    HY_CHECK(!alive(kid));
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN);
    stop_sup(sup);
    end();
}
BOTH_SHARDS(shutdown_monitor_fails)

static void body_shutdown_timeout(void *arg)
{
    int shard = *(int *)arg;
    begin();
    log_clear();
    /* a child that ignores shutdown is killed after its timeout */
    struct hy_child_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.id = "stubborn";
    spec.start = start_stubborn;
    spec.restart = HY_PERMANENT;
    spec.shutdown_ns = 100 * MS;
    /* and one that obeys stops at once, well within its 5 s */
    struct hy_sup_gs_child g;
    struct hy_child_spec specs[2] = {kid_spec("polite", &trapping[0], shard, &g), spec};
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup = start_sup(&f, specs, 2);
    hy_pid polite = expect_sev(S_INIT, 0).pid;
    hy_pid stubborn = expect_sev(S_INIT, 99).pid;
    hy_ref mref = monitor(stubborn);
    uint64_t t0 = hy_now_ns();
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "stubborn", HY_PID_NONE), 0);
    uint64_t took = hy_now_ns() - t0;
    HY_CHECK(took >= 100 * MS);
    CHECK_KIND(wait_down(mref), HY_REASON_KILLED);
    HY_CHECK(log_has("shutdown_error", "stubborn", NULL));

    mref = monitor(polite);
    t0 = hy_now_ns();
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "polite", HY_PID_NONE), 0);
    HY_CHECK(hy_now_ns() - t0 < 4000 * MS);
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN);
    stop_sup(sup);
    end();
}
BOTH_SHARDS(shutdown_timeout)

struct term_req {
    hy_pid test;
    hy_pid sup;
};

static void terminator(void *arg)
{
    const struct term_req *tr = arg;
    int rc = hy_supervisor_terminate_child(tr->sup, "slow", HY_PID_NONE);
    hy_send(tr->test, T_GO, &rc, sizeof(rc));
}

static bool is_waiting(void *arg)
{
    struct hy_proc_info info;
    return hy_proc_info(*(const hy_pid *)arg, &info) == 0 && info.status == HY_STATUS_WAITING;
}

/* Whether pid, a process of the caller's shard blocked in a receive, has a
 * timeout for it: armed on the shard's wheel, or queued to be armed at the
 * end of the turn (the runtime arms waits lazily). */
static bool waits_with_deadline(hy_pid pid)
{
    struct hy_shard *sh = hy__current()->shard;
    struct hy_proc *p = hy__proc_lookup(sh, pid);
    HY_CHECK(p != NULL);
    if (!p)
        return true;
    return p->wait_timer.arm_pprev != NULL || hy__wtimer_armed(&p->wait_timer.wt);
}

static void body_shutdown_infinity(void *arg)
{
    int shard = *(int *)arg;
    begin();
    static const struct kid_cfg slow = {0, true, true, KI_OK};
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("slow", &slow, shard, &g);
    spec.shutdown_ns = HY_SHUTDOWN_INFINITY;
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    hy_ref mref = monitor(kid);
    struct term_req tr = {hy_self(), sup};
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(tr);
    HY_CHECK_EQ(hy_spawn_opt(terminator, &tr, &so, NULL), 0);
    /* the kid is in terminate, waiting for us; the supervisor waits for it,
     * without any deadline: no receive timeout is armed for it (a finite
     * one, such as the 5 s default, would be), so nothing will ever kill
     * the kid however long it takes */
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    HY_CHECK(hy_test_wait_until(is_waiting, &sup, WAIT_MS));
    HY_CHECK(!waits_with_deadline(sup));
    HY_CHECK(alive(kid));
    HY_CHECK_EQ(hy_mailbox_len(), 0); /* the terminator has not returned */
    HY_CHECK_EQ(hy_send(kid, T_GO, NULL, 0), 0);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(T_GO, &m, WAIT_NS), 0);
    int rc = -1;
    memcpy(&rc, m->data, sizeof(rc));
    hy_msg_free(m);
    HY_CHECK_EQ(rc, 0);
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN); /* not killed */
    stop_sup(sup);
    end();
}
BOTH_SHARDS(shutdown_infinity)

static void body_stop_reverse_order(void *arg)
{
    int shard = *(int *)arg;
    begin();
    hy_pid p[3];
    hy_pid sup = start_abc(HY_ONE_FOR_ONE, shard, p);
    stop_sup(sup);
    for (int i = 2; i >= 0; i--) {
        struct sev e = expect_sev(S_TERM, i);
        CHECK_KIND(e.reason, HY_REASON_SHUTDOWN);
        HY_CHECK(hy_pid_eq(e.pid, p[i]));
    }
    for (int i = 0; i < 3; i++)
        HY_CHECK(!alive(p[i]));
    end();
}
BOTH_SHARDS(stop_reverse_order)

/* The supervisor's parent ends: it stops its children in reverse order. */
struct parent_arg {
    hy_pid test;
    int shard;
};

static void sup_parent(void *arg)
{
    const struct parent_arg *pa = arg;
    struct hy_sup_gs_child g[3];
    struct hy_child_spec specs[3];
    for (int i = 0; i < 3; i++)
        specs[i] = kid_spec(abc[i], &trapping[i], pa->shard, &g[i]);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 3, NULL, &sup, NULL), 0);
    hy_send(pa->test, T_GO, &sup, sizeof(sup));
    struct hy_msg *m;
    if (hy_recv_tag(T_GO, &m, WAIT_NS) == 0)
        hy_msg_free(m);
    hy_exit(hy_reason_make(HY_REASON_SHUTDOWN));
}

static void body_stop_on_parent_exit(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct parent_arg pa = {hy_self(), shard};
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(pa);
    hy_pid parent;
    HY_CHECK_EQ(hy_spawn_opt(sup_parent, &pa, &so, &parent), 0);
    for (int i = 0; i < 3; i++)
        expect_sev(S_INIT, i);
    struct hy_msg *m;
    HY_CHECK_EQ(hy_recv_tag(T_GO, &m, WAIT_NS), 0);
    hy_pid sup;
    memcpy(&sup, m->data, sizeof(sup));
    hy_msg_free(m);
    hy_ref mref = monitor(sup);
    HY_CHECK_EQ(hy_send(parent, T_GO, NULL, 0), 0);
    for (int i = 2; i >= 0; i--)
        CHECK_KIND(expect_sev(S_TERM, i).reason, HY_REASON_SHUTDOWN);
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN);
    end();
}
BOTH_SHARDS(stop_on_parent_exit)

/* ---- start failures ------------------------------------------------------------------------ */

static void body_start_failure(void *arg)
{
    int shard = *(int *)arg;
    begin();
    static const struct kid_cfg cfgs[3] = {
        {0, true, false, KI_OK}, {1, true, false, KI_STOP}, {2, true, false, KI_OK}};
    struct hy_sup_gs_child g[3];
    struct hy_child_spec specs[3];
    const char *ids[3] = {"first", "second", "third"};
    for (int i = 0; i < 3; i++)
        specs[i] = kid_spec(ids[i], &cfgs[i], shard, &g[i]);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup = HY_PID_NONE;
    struct hy_reason why;
    memset(&why, 0, sizeof(why));
    log_clear();
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 3, NULL, &sup, &why), HY_ESTOPPED);
    HY_CHECK_EQ(why.kind, HY_REASON_USER);
    HY_CHECK(strstr(why.text, "second") != NULL);
    HY_CHECK(log_has("start_error", "second", NULL));
    /* the first was started, then stopped (with shutdown) before start
     * returned; the third never started */
    hy_pid first = expect_sev(S_INIT, 0).pid;
    expect_sev(S_INITFAIL, 1);
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    HY_CHECK(!alive(first));
    /* a start function that fails outright */
    struct hy_child_spec bad[2] = {kid_spec("ok", &trapping[0], shard, &g[0]), specs[0]};
    bad[1].id = "broken";
    bad[1].start = start_fail;
    memset(&why, 0, sizeof(why));
    HY_CHECK_EQ(hy_supervisor_start_link(&f, bad, 2, NULL, &sup, &why), HY_ESTOPPED);
    HY_CHECK(strstr(why.text, "broken") != NULL);
    expect_sev(S_INIT, 0);
    expect_sev(S_TERM, 0);
    /* ignore: the spec stays without a process, the others start */
    static const struct kid_cfg ign = {1, true, false, KI_IGNORE};
    struct hy_child_spec some[3] = {kid_spec("a", &trapping[0], shard, &g[0]),
                                    kid_spec("b", &ign, shard, &g[1]),
                                    kid_spec("c", &trapping[2], shard, &g[2])};
    sup = start_sup(&f, some, 3);
    expect_sev(S_INIT, 0);
    expect_sev(S_IGNORED, 1);
    expect_sev(S_INIT, 2);
    struct hy_child_info ci[3];
    HY_CHECK_EQ(which(sup, ci, 3), 3);
    HY_CHECK(hy_pid_is_none(ci[1].pid));
    struct hy_child_counts k = counts(sup);
    HY_CHECK_EQ(k.specs, 3);
    HY_CHECK_EQ(k.active, 2);
    stop_sup(sup);
    expect_sev(S_TERM, 2);
    expect_sev(S_TERM, 0);
    end();
}
BOTH_SHARDS(start_failure)

static void body_start_bad_specs(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g[2];
    struct hy_child_spec specs[2] = {kid_spec("a", &trapping[0], shard, &g[0]),
                                     kid_spec("a", &trapping[1], shard, &g[1])};
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    hy_pid sup;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 2, NULL, &sup, NULL), HY_EINVAL); /* dup id */
    specs[1].id = "b";
    specs[1].restart = 7;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 2, NULL, &sup, NULL), HY_EINVAL);
    specs[1].restart = HY_PERMANENT;
    f.strategy = 9;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 2, NULL, &sup, NULL), HY_EINVAL);
    f = flags(HY_SIMPLE_ONE_FOR_ONE, 1, 5);
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 2, NULL, &sup, NULL), HY_EINVAL);
    /* a registered supervisor: already started */
    f = flags(HY_ONE_FOR_ONE, 1, 5);
    struct hy_sup_opts o = HY_SUP_OPTS_INIT;
    o.name = "the_sup";
    hy_pid first, second = HY_PID_NONE;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, NULL, 0, &o, &first, NULL), 0);
    HY_CHECK_EQ(hy_supervisor_start_link(&f, NULL, 0, &o, &second, NULL), HY_EEXIST);
    HY_CHECK(hy_pid_eq(first, second));
    stop_sup(first);
    expect_no_sev();
    end();
}
BOTH_SHARDS(start_bad_specs)

/* ---- the dynamic API ------------------------------------------------------------------------- */

static void body_dynamic_api(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g[4];
    struct hy_child_spec a = kid_spec("a", &trapping[0], shard, &g[0]);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 5, 5);
    hy_pid sup = start_sup(&f, &a, 1);
    hy_pid pa = expect_sev(S_INIT, 0).pid;

    /* start_child */
    struct hy_child_spec x = kid_spec("x", &trapping[1], shard, &g[1]);
    hy_pid px = HY_PID_NONE, other = HY_PID_NONE;
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &x, &px), 0);
    HY_CHECK(hy_pid_eq(expect_sev(S_INIT, 1).pid, px));
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &x, &other), HY_EEXIST);
    HY_CHECK(hy_pid_eq(other, px));
    expect_no_sev();
    /* a supervisor child */
    struct nested_arg na;
    memset(&na, 0, sizeof(na));
    na.flags = flags(HY_ONE_FOR_ONE, 1, 5);
    struct hy_child_spec nested;
    memset(&nested, 0, sizeof(nested));
    nested.id = "nested";
    nested.start = start_nested;
    nested.arg = &na;
    nested.arg_size = sizeof(na);
    nested.type = HY_SUPERVISOR;
    nested.shutdown_ns = HY_SHUTDOWN_DEFAULT; /* infinity for a supervisor */
    hy_pid pn;
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &nested, &pn), 0);
    /* a start that fails: error, and the spec is not kept */
    struct hy_child_spec broken = x;
    broken.id = "broken";
    broken.start = start_fail;
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &broken, NULL), HY_ESTOPPED);
    /* a significant permanent child is invalid (OTP) */
    struct hy_child_spec sig = kid_spec("sig", &trapping[2], shard, &g[2]);
    sig.significant = true;
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &sig, NULL), HY_EINVAL);

    /* which_children: start order; count_children */
    struct hy_child_info ci[8];
    HY_CHECK_EQ(which(sup, ci, 8), 3);
    HY_CHECK(strcmp(ci[0].id, "a") == 0 && hy_pid_eq(ci[0].pid, pa));
    HY_CHECK(strcmp(ci[1].id, "x") == 0 && hy_pid_eq(ci[1].pid, px));
    HY_CHECK(strcmp(ci[2].id, "nested") == 0 && hy_pid_eq(ci[2].pid, pn));
    HY_CHECK_EQ(ci[0].type, HY_WORKER);
    HY_CHECK_EQ(ci[2].type, HY_SUPERVISOR);
    size_t count = 0;
    HY_CHECK_EQ(hy_supervisor_which_children(sup, ci, 1, &count), 0); /* truncated */
    HY_CHECK_EQ(count, 3);
    struct hy_child_counts k = counts(sup);
    HY_CHECK_EQ(k.specs, 3);
    HY_CHECK_EQ(k.active, 3);
    HY_CHECK_EQ(k.workers, 2);
    HY_CHECK_EQ(k.supervisors, 1);

    /* terminate_child: stopped, spec kept */
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "x", HY_PID_NONE), 0);
    CHECK_KIND(expect_sev(S_TERM, 1).reason, HY_REASON_SHUTDOWN);
    HY_CHECK(!alive(px));
    HY_CHECK(hy_pid_is_none(child_pid(sup, "x")));
    k = counts(sup);
    HY_CHECK_EQ(k.specs, 3);
    HY_CHECK_EQ(k.active, 2);
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "x", HY_PID_NONE), 0); /* again: ok */
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "nope", HY_PID_NONE), HY_ENOENT);
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &x, &other), HY_EEXIST); /* present */
    HY_CHECK(hy_pid_is_none(other));

    /* restart_child */
    hy_pid px2 = HY_PID_NONE;
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "x", &px2), 0);
    HY_CHECK(hy_pid_eq(expect_sev(S_INIT, 1).pid, px2));
    HY_CHECK(!hy_pid_eq(px2, px));
    HY_CHECK(hy_pid_eq(child_pid(sup, "x"), px2));
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "x", &other), HY_EALREADY);
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "nope", &other), HY_ENOENT);

    /* delete_child */
    HY_CHECK_EQ(hy_supervisor_delete_child(sup, "x"), HY_EBUSY);
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "x", HY_PID_NONE), 0);
    expect_sev(S_TERM, 1);
    HY_CHECK_EQ(hy_supervisor_delete_child(sup, "x"), 0);
    HY_CHECK_EQ(hy_supervisor_delete_child(sup, "x"), HY_ENOENT);
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "x", &other), HY_ENOENT);
    HY_CHECK_EQ(which(sup, ci, 8), 2);
    HY_CHECK(strcmp(ci[0].id, "a") == 0);
    HY_CHECK(strcmp(ci[1].id, "nested") == 0);
    /* the id is free again, and the new child goes last */
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &x, &px), 0);
    expect_sev(S_INIT, 1);
    HY_CHECK_EQ(which(sup, ci, 8), 3);
    HY_CHECK(strcmp(ci[2].id, "x") == 0);

    /* a temporary child's spec goes with terminate_child */
    struct hy_child_spec tmp = kid_spec("tmp", &trapping[2], shard, &g[3]);
    tmp.restart = HY_TEMPORARY;
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &tmp, NULL), 0);
    expect_sev(S_INIT, 2);
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "tmp", HY_PID_NONE), 0);
    expect_sev(S_TERM, 2);
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "tmp", NULL), HY_ENOENT);
    HY_CHECK_EQ(counts(sup).specs, 3);

    stop_sup(sup);
    expect_sev(S_TERM, 1); /* x, nested (no events), a */
    expect_sev(S_TERM, 0);
    HY_CHECK(!alive(pn));

    /* calls to a supervisor that is gone */
    HY_CHECK_EQ(hy_supervisor_start_child(sup, &x, NULL), HY_ENOPROC);
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "x", HY_PID_NONE), HY_ENOPROC);
    HY_CHECK_EQ(hy_supervisor_restart_child(sup, "x", NULL), HY_ENOPROC);
    HY_CHECK_EQ(hy_supervisor_delete_child(sup, "x"), HY_ENOPROC);
    HY_CHECK_EQ(hy_supervisor_which_children(sup, ci, 8, &count), HY_ENOPROC);
    HY_CHECK_EQ(hy_supervisor_count_children(sup, &k), HY_ENOPROC);
    end();
}
BOTH_SHARDS(dynamic_api)

/* ---- auto_shutdown ------------------------------------------------------------------------- */

static const struct kid_cfg sig_cfgs[3] = {
    {0, true, false, KI_OK}, {1, true, false, KI_OK}, {2, true, false, KI_OK}};

static hy_pid start_significant(int auto_shutdown, int shard, int restart, hy_pid p[3])
{
    struct hy_sup_gs_child g[3];
    struct hy_child_spec specs[3];
    const char *ids[3] = {"plain", "s1", "s2"};
    for (int i = 0; i < 3; i++)
        specs[i] = kid_spec(ids[i], &sig_cfgs[i], shard, &g[i]);
    specs[1].restart = specs[2].restart = restart;
    specs[1].significant = specs[2].significant = true;
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 10, 5);
    f.auto_shutdown = auto_shutdown;
    hy_pid sup = start_sup(&f, specs, 3);
    for (int i = 0; i < 3; i++)
        p[i] = expect_sev(S_INIT, i).pid;
    return sup;
}

static void body_auto_shutdown_any_significant(void *arg)
{
    int shard = *(int *)arg;
    begin();
    hy_pid p[3];
    hy_pid sup = start_significant(HY_AUTO_ANY_SIGNIFICANT, shard, HY_TRANSIENT, p);
    hy_ref mref = monitor(sup);
    /* a transient significant child that crashes is restarted */
    crash(p[1]);
    expect_sev(S_TERM, 1);
    p[1] = expect_sev(S_INIT, 1).pid;
    /* terminated by the supervisor (terminate_child): no auto shutdown */
    HY_CHECK_EQ(hy_supervisor_terminate_child(sup, "s2", HY_PID_NONE), 0);
    expect_sev(S_TERM, 2);
    HY_CHECK_EQ(counts(sup).active, 2);
    /* one that ends normally by itself: the supervisor shuts down */
    make_exit(p[1], hy_reason_make(HY_REASON_NORMAL));
    expect_sev(S_TERM, 1);
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    expect_sup_shutdown(sup, mref);

    /* temporary significant: any reason */
    sup = start_significant(HY_AUTO_ANY_SIGNIFICANT, shard, HY_TEMPORARY, p);
    mref = monitor(sup);
    crash(p[2]);
    expect_sev(S_TERM, 2);
    expect_sev(S_TERM, 1);
    expect_sev(S_TERM, 0);
    expect_sup_shutdown(sup, mref);
    end();
}
BOTH_SHARDS(auto_shutdown_any_significant)

struct s1_gone {
    hy_pid sup;
};

static bool s1_gone(void *a)
{
    return hy_pid_is_none(child_pid(((struct s1_gone *)a)->sup, "s1"));
}

static void body_auto_shutdown_all_significant(void *arg)
{
    int shard = *(int *)arg;
    begin();
    hy_pid p[3];
    hy_pid sup = start_significant(HY_AUTO_ALL_SIGNIFICANT, shard, HY_TRANSIENT, p);
    hy_ref mref = monitor(sup);
    make_exit(p[1], hy_reason_make(HY_REASON_SHUTDOWN));
    expect_sev(S_TERM, 1);
    /* once the supervisor has seen it go (s1 has no pid), it is still
     * running: one significant child is left */
    struct s1_gone sg = {sup};
    HY_CHECK(hy_test_wait_until(s1_gone, &sg, WAIT_MS));
    HY_CHECK(alive(sup));
    struct hy_child_counts k = counts(sup);
    HY_CHECK_EQ(k.specs, 3);
    HY_CHECK_EQ(k.active, 2);
    /* the last one ends: shutdown */
    make_exit(p[2], hy_reason_make(HY_REASON_NORMAL));
    expect_sev(S_TERM, 2);
    CHECK_KIND(expect_sev(S_TERM, 0).reason, HY_REASON_SHUTDOWN);
    expect_sup_shutdown(sup, mref);
    end();
}
BOTH_SHARDS(auto_shutdown_all_significant)

static void body_auto_shutdown_invalid(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("s", &trapping[0], shard, &g);
    spec.significant = true; /* and permanent */
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 5);
    f.auto_shutdown = HY_AUTO_ANY_SIGNIFICANT;
    hy_pid sup;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, &spec, 1, NULL, &sup, NULL), HY_EINVAL);
    /* significant with auto_shutdown never: rejected (OTP) */
    spec.restart = HY_TRANSIENT;
    f.auto_shutdown = HY_AUTO_NEVER;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, &spec, 1, NULL, &sup, NULL), HY_EINVAL);
    f.auto_shutdown = 7;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, &spec, 1, NULL, &sup, NULL), HY_EINVAL);
    /* simple_one_for_one supervisors cannot auto-shutdown (OTP 27) */
    f = flags(HY_SIMPLE_ONE_FOR_ONE, 1, 5);
    f.auto_shutdown = HY_AUTO_ALL_SIGNIFICANT;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, &spec, 1, NULL, &sup, NULL), HY_EINVAL);
    expect_no_sev();
    end();
}
BOTH_SHARDS(auto_shutdown_invalid)

/* ---- across shards, names, nesting ----------------------------------------------------------- */

/* The supervisor on shard 1, its children on shard 0 (and the reverse is
 * every *_cross_shard test). */
static void body_supervisor_on_other_shard(void *arg)
{
    (void)arg;
    begin();
    struct hy_sup_gs_child g[3];
    struct hy_child_spec specs[3];
    for (int i = 0; i < 3; i++)
        specs[i] = kid_spec(abc[i], &trapping[i], 0, &g[i]);
    struct hy_sup_flags f = flags(HY_REST_FOR_ONE, 5, 5);
    struct hy_sup_opts o = HY_SUP_OPTS_INIT;
    o.shard = 1;
    hy_pid sup;
    HY_CHECK_EQ(hy_supervisor_start_link(&f, specs, 3, &o, &sup, NULL), 0);
    HY_CHECK_EQ(hy_pid_shard(sup), 1);
    hy_pid p[3];
    for (int i = 0; i < 3; i++)
        p[i] = expect_sev(S_INIT, i).pid;
    crash(p[1]);
    expect_sev(S_TERM, 1);
    expect_sev(S_TERM, 2);
    expect_sev(S_INIT, 1);
    expect_sev(S_INIT, 2);
    HY_CHECK(hy_pid_eq(child_pid(sup, "a"), p[0]));
    HY_CHECK_EQ(hy_pid_shard(child_pid(sup, "b")), 0);
    stop_sup(sup);
    for (int i = 2; i >= 0; i--)
        expect_sev(S_TERM, i);
    end();
}
ONE_TEST(supervisor_on_other_shard)

/* A registered child is re-registered under its name on every restart: the
 * name is free when the supervisor restarts it. */
static void body_registered_child_restarts(void *arg)
{
    int shard = *(int *)arg;
    begin();
    static const struct kid_cfg plain = {0, false, false, KI_OK};
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("named", &plain, shard, &g);
    strcpy(g.name, "sup_named_kid");
    spec.shutdown_ns = HY_SHUTDOWN_BRUTAL_KILL;
    int cycles = (int)hy_test_scaled(1000);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, cycles + 10, 60);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_ref mref = monitor(sup);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    int done = 0;
    for (; done < cycles; done++) {
        hy_pid w = HY_PID_NONE;
        if (hy_whereis("sup_named_kid", &w) != 0 || !hy_pid_eq(w, kid)) {
            HY_CHECK(hy_pid_eq(w, kid));
            break;
        }
        HY_CHECK_EQ(hy_exit_pid(kid, hy_reason_make(HY_REASON_KILL)), 0);
        struct sev e;
        if (!recv_sev(&e) || e.kind != S_INIT) {
            HY_CHECK_EQ(e.kind, S_INIT);
            break;
        }
        HY_CHECK(!hy_pid_eq(e.pid, kid));
        kid = e.pid;
    }
    HY_CHECK_EQ(done, cycles);
    struct hy_child_counts k = counts(sup);
    HY_CHECK_EQ(k.active, 1);
    stop_sup(sup);
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN);
    hy_pid w;
    HY_CHECK_EQ(hy_whereis("sup_named_kid", &w), HY_ENONAME);
    end();
}
BOTH_SHARDS(registered_child_restarts)

/* A child supervisor that gives up is restarted by its own supervisor. */
static void body_nested_escalation(void *arg)
{
    int shard = *(int *)arg;
    begin();
    struct nested_arg na;
    memset(&na, 0, sizeof(na));
    na.flags = flags(HY_ONE_FOR_ONE, -1, 5); /* no restarts allowed */
    na.spec = kid_spec("w", &trapping[0], shard, &na.gs);
    na.nchildren = 1;
    struct hy_child_spec mid;
    memset(&mid, 0, sizeof(mid));
    mid.id = "mid";
    mid.start = start_nested;
    mid.arg = &na;
    mid.arg_size = sizeof(na);
    mid.type = HY_SUPERVISOR;
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 3, 60);
    hy_pid top = start_sup(&f, &mid, 1);
    hy_pid w = expect_sev(S_INIT, 0).pid;
    hy_pid mid1 = child_pid(top, "mid");
    hy_ref mref = monitor(mid1);
    crash(w);
    expect_sev(S_TERM, 0);
    CHECK_KIND(wait_down(mref), HY_REASON_SHUTDOWN); /* mid gave up */
    hy_pid w2 = expect_sev(S_INIT, 0).pid;           /* top restarted mid, mid started w */
    HY_CHECK(!hy_pid_eq(w2, w));
    hy_pid mid2 = child_pid(top, "mid");
    HY_CHECK(!hy_pid_eq(mid2, mid1));
    HY_CHECK(!hy_pid_is_none(mid2));
    stop_sup(top);
    expect_sev(S_TERM, 0);
    end();
}
BOTH_SHARDS(nested_escalation)

/* ---- reports --------------------------------------------------------------------------------- */

static void body_reports(void *arg)
{
    int shard = *(int *)arg;
    begin();
    log_clear();
    struct hy_sup_gs_child g;
    struct hy_child_spec spec = kid_spec("reporter", &trapping[0], shard, &g);
    struct hy_sup_flags f = flags(HY_ONE_FOR_ONE, 1, 60);
    hy_pid sup = start_sup(&f, &spec, 1);
    hy_ref mref = monitor(sup);
    hy_pid kid = expect_sev(S_INIT, 0).pid;
    make_exit(kid, hy_reason_user(7, "kaboom"));
    expect_sev(S_TERM, 0);
    kid = expect_sev(S_INIT, 0).pid;
    /* reported before the restart: who, why, what was done */
    HY_CHECK(log_has("child_terminated", "reporter", "kaboom"));
    HY_CHECK(log_has("child_terminated", "reporter", "restart"));
    make_exit(kid, hy_reason_user(8, "again"));
    expect_sev(S_TERM, 0);
    expect_sup_shutdown(sup, mref);
    HY_CHECK(log_has("reached_max_restart_intensity", NULL, NULL));
    HY_CHECK(log_has("child_terminated", "again", "shutdown"));
    end();
}
BOTH_SHARDS(reports)

int main(void)
{
    /* crashes are many here: their reports go to a capture, not stderr */
    hy_log_set_sink(capture, NULL);
    const struct CMUnitTest tests[] = {
        BOTH_TESTS(strategy_one_for_one),
        BOTH_TESTS(strategy_one_for_all),
        BOTH_TESTS(strategy_rest_for_one),
        BOTH_TESTS(strategy_one_for_all_temporary_sibling),
        BOTH_TESTS(simple_one_for_one),
        cmocka_unit_test(test_supervisor_start_dynamic_not_simple),
        BOTH_TESTS(restart_types),
        BOTH_TESTS(intensity),
        BOTH_TESTS(intensity_huge),
        BOTH_TESTS(intensity_period),
        BOTH_TESTS(intensity_failed_restarts),
        BOTH_TESTS(shutdown_brutal_kill),
        BOTH_TESTS(shutdown_monitor_fails),
        BOTH_TESTS(shutdown_timeout),
        BOTH_TESTS(shutdown_infinity),
        BOTH_TESTS(stop_reverse_order),
        BOTH_TESTS(stop_on_parent_exit),
        BOTH_TESTS(start_failure),
        BOTH_TESTS(start_bad_specs),
        BOTH_TESTS(dynamic_api),
        BOTH_TESTS(auto_shutdown_any_significant),
        BOTH_TESTS(auto_shutdown_all_significant),
        BOTH_TESTS(auto_shutdown_invalid),
        cmocka_unit_test(test_supervisor_supervisor_on_other_shard),
        BOTH_TESTS(registered_child_restarts),
        BOTH_TESTS(nested_escalation),
        BOTH_TESTS(reports),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    hy_log_set_sink(NULL, NULL);
    return rc;
}
