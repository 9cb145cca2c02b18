/* The console's start rules and its metrics: a non-loopback bind or actions
 * without a token are refused; every counter of the Prometheus text lies
 * between two hy_stats reads taken just before and just after the scrape,
 * under message load; promtool accepts the text. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define SEC    1000000000LL
#define T_PING 1
#define T_STOP 2

static void body_refusals(void *arg)
{
    (void)arg;
    struct hy_console *c = NULL;
    HY_CHECK_EQ(hy_console_start("0.0.0.0", 0, NULL, &c), HY_EPERM);
    HY_CHECK_EQ(hy_console_start("::", 0, NULL, &c), HY_EPERM);
    struct hy_console_options o = {.allow_actions = true};
    HY_CHECK_EQ(hy_console_start("127.0.0.1", 0, &o, &c), HY_EPERM);
    HY_CHECK_EQ(hy_console_start("localhost.example", 0, NULL, &c), HY_EINVAL);
    HY_CHECK(c == NULL);
}

static void test_console_refuses_unsafe_binds(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_refusals, NULL), 0);
}

/* Two processes on different shards bouncing a message until told to stop. */
static void bouncer(void *arg)
{
    (void)arg;
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, 30 * SEC) < 0)
            return;
        if (m->tag == T_STOP) {
            hy_msg_free(m);
            return;
        }
        hy_pid peer;
        memcpy(&peer, m->data, sizeof(peer));
        hy_pid me = hy_self();
        hy_send(peer, T_PING, &me, sizeof(me));
        hy_msg_free(m);
    }
}

struct sample {
    char name[96];
    unsigned shard, peer;
    bool has_peer;
    char label[32];
    double value;
};

static size_t parse(char *text, struct sample *out, size_t max)
{
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        struct sample *s = &out[n];
        memset(s, 0, sizeof(*s));
        char *brace = strchr(line, '{'), *sp = strrchr(line, ' ');
        if (!sp)
            continue;
        s->value = strtod(sp + 1, NULL);
        size_t nl = (size_t)((brace ? brace : sp) - line);
        if (nl >= sizeof(s->name))
            continue;
        memcpy(s->name, line, nl);
        if (brace) {
            char *p;
            if ((p = strstr(brace, "shard=\"")) && (p == brace + 1 || p[-1] == ','))
                s->shard = (unsigned)atoi(p + 7);
            if ((p = strstr(brace, "peer_shard=\""))) {
                s->peer = (unsigned)atoi(p + 12);
                s->has_peer = true;
            }
            if ((p = strstr(brace, "scope=\"")) || (p = strstr(brace, "reason=\"")))
                sscanf(strchr(p, '"') + 1, "%31[^\"]", s->label);
        }
        n++;
    }
    return n;
}

static bool between(double v, uint64_t lo, uint64_t hi, double scale)
{
    double eps = scale < 1 ? 1e-6 : 0; /* seconds printed with 9 decimals */
    return v + eps >= (double)lo * scale && v - eps <= (double)hi * scale;
}

static void body_metrics(void *arg)
{
    (void)arg;
    struct hy_console *c;
    int rc = hy_console_start("127.0.0.1", 0, NULL, &c);
    if (rc == HY_ENOSYS) { /* no sockets layer on this build */
        *(bool *)arg = true;
        return;
    }
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    hy_pid a, b;
    HY_CHECK_EQ(hy_spawn_opt(bouncer, NULL, &o, &a), 0);
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(bouncer, NULL, &o, &b), 0);
    hy_send(a, T_PING, &b, sizeof(b));
    size_t cap = 1 << 20;
    char *text = malloc(cap);
    struct sample *smp = calloc(2048, sizeof(*smp));
    uint64_t first_cross = 0, last_cross = 0;
    for (int round = 0; round < 5; round++) {
        struct hy_stats before[2], after[2];
        struct hy_pair_stats pb[2][2], pa[2][2];
        for (unsigned s = 0; s < 2; s++) {
            hy_stats_get(s, &before[s]);
            for (unsigned d = 0; d < 2; d++)
                hy_stats_pair(s, d, &pb[s][d]);
        }
        size_t len = 0;
        HY_CHECK_EQ(hy_console_metrics(c, text, cap, &len), 0);
        for (unsigned s = 0; s < 2; s++) {
            hy_stats_get(s, &after[s]);
            for (unsigned d = 0; d < 2; d++)
                hy_stats_pair(s, d, &pa[s][d]);
        }
        if (round == 4) { /* promtool on the last one */
            char path[] = "/tmp/hydra-metrics-XXXXXX";
            int fd = mkstemp(path);
            HY_CHECK(fd >= 0);
            HY_CHECK_EQ(write(fd, text, len), (long long)len);
            close(fd);
            if (access("/usr/bin/promtool", X_OK) == 0) {
                char cmd[128];
                snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
                HY_CHECK_EQ(system(cmd), 0);
            }
            unlink(path);
        }
        size_t n = parse(text, smp, 2048);
        unsigned checked = 0, nbuckets = 0;
        for (size_t i = 0; i < n; i++) {
            const struct sample *s = &smp[i];
            if (s->shard >= 2)
                continue;
            const struct hy_stats *lo = &before[s->shard], *hi = &after[s->shard];
#define CHK(metric, field, scale)                                                                  \
    if (strcmp(s->name, metric) == 0) {                                                            \
        if (!between(s->value, lo->field, hi->field, scale))                                       \
            hy_test_check_fail(__FILE__, __LINE__, "%s{shard=%u} = %f not in [%llu, %llu]",        \
                               metric, s->shard, s->value, (unsigned long long)lo->field,          \
                               (unsigned long long)hi->field);                                     \
        checked++;                                                                                 \
    }
            CHK("hydra_processes_spawned_total", procs_spawned, 1);
            CHK("hydra_processes_exited_total", procs_exited, 1);
            CHK("hydra_messages_received_total", msgs_received, 1);
            CHK("hydra_ring_overflows_total", ring_overflows, 1);
            CHK("hydra_sleeps_total", sleeps, 1);
            CHK("hydra_stalls_total", stalls, 1);
            CHK("hydra_busy_seconds_total", busy_ns, 1e-9);
            CHK("hydra_idle_seconds_total", idle_ns, 1e-9);
            CHK("hydra_turn_seconds_count", turns, 1);
            CHK("hydra_io_syscalls_total", io_syscalls, 1);
            CHK("hydra_io_events_total", io_events, 1);
            CHK("hydra_io_wakeups_total", io_wakeups, 1);
            CHK("hydra_io_sleeps_total", io_sleeps, 1);
            CHK("hydra_io_recvs_total", io_recvs, 1);
            CHK("hydra_io_sends_total", io_sends, 1);
            CHK("hydra_io_poll_updates_total", io_poll_updates, 1);
            CHK("hydra_turn_seconds_sum", busy_ns, 1e-9);
            if (strcmp(s->name, "hydra_turn_seconds_bucket") == 0) {
                /* cumulative: never more than the count read after */
                HY_CHECK(s->value <= (double)hi->turns);
                nbuckets++;
            }
            if (strcmp(s->label, "local") == 0)
                CHK("hydra_messages_sent_total", msgs_sent_local, 1);
            if (strcmp(s->label, "cross") == 0)
                CHK("hydra_messages_sent_total", msgs_sent_cross, 1);
            if (strcmp(s->label, "dead") == 0)
                CHK("hydra_messages_dropped_total", dropped_dead, 1);
            if (strcmp(s->label, "full") == 0)
                CHK("hydra_messages_dropped_total", dropped_full, 1);
#undef CHK
            if (s->has_peer && s->peer < 2) {
                const struct hy_pair_stats *x = &pb[s->shard][s->peer], *y = &pa[s->shard][s->peer];
                uint64_t l = 0, h = 0;
                if (strcmp(s->name, "hydra_mesh_entries_total") == 0)
                    l = x->ring_entries, h = y->ring_entries;
                else if (strcmp(s->name, "hydra_mesh_batches_total") == 0)
                    l = x->batches, h = y->batches;
                else
                    l = x->overflows, h = y->overflows;
                HY_CHECK(between(s->value, l, h, 1));
                checked++;
            }
        }
        HY_CHECK(checked >= 2 * 21 + 3 * 2);
        HY_CHECK_EQ(nbuckets, 2u * (HY_STATS_TURN_BUCKETS - 7));
        if (round == 0)
            first_cross = before[1].msgs_sent_cross;
        last_cross = after[1].msgs_sent_cross;
    }
    HY_CHECK(last_cross > first_cross); /* the load ran while we scraped */
    free(text);
    free(smp);
    hy_send(a, T_STOP, NULL, 0);
    hy_send(b, T_STOP, NULL, 0);
    HY_CHECK_EQ(hy_console_stop(c), 0);
}

static void test_console_metrics_between_stats_reads(void **state)
{
    (void)state;
    bool nosockets = false;
    assert_int_equal(hy_test_run(2, body_metrics, &nosockets), 0);
    if (nosockets)
        skip();
}

/* A user's report handler and log sink, set before the console starts. */
struct seen {
    _Atomic unsigned reports, lines;
    char last_line[256];
};

static void user_report(const struct hy_report *r, void *ctx)
{
    struct seen *s = ctx;
    if (r->context && strcmp(r->context, "console_chain_test") == 0)
        atomic_fetch_add(&s->reports, 1);
}

static void user_sink(enum hy_log_level level, const char *line, void *ctx)
{
    (void)level;
    struct seen *s = ctx;
    if (strstr(line, "console chain line")) {
        snprintf(s->last_line, sizeof(s->last_line), "%s", line);
        atomic_fetch_add(&s->lines, 1);
    }
}

/* Puts back the runtime's own report handler and log sink, reports enabled
 * as reports_on says. */
static void handlers_reset(bool reports_on)
{
    hy_report_set_enabled(false);
    hy_report_set_handler(NULL, NULL);
    hy_report_set_enabled(reports_on);
    hy_log_set_sink(NULL, NULL);
}

static void body_chain(void *arg)
{
    struct seen *seen = arg;
    bool reports_on = hy_report_enabled();
    hy_report_set_enabled(false);
    hy_report_set_handler(user_report, seen);
    hy_report_set_enabled(true);
    hy_log_set_sink(user_sink, seen);
    struct hy_console *c;
    int rc = hy_console_start("127.0.0.1", 0, NULL, &c);
    if (rc == HY_ENOSYS) {
        hy_log_set_sink(NULL, NULL);
        return;
    }
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return;
    /* the console's own handler and sink are in front now */
    hy_report_fn fn;
    hy_log_sink_fn sk;
    void *ctx;
    hy_report_get_handler(&fn, &ctx);
    HY_CHECK(fn != user_report);
    hy_log_get_sink(&sk, &ctx);
    HY_CHECK(sk != user_sink);
    struct hy_report r = {.type = HY_REPORT_SUPERVISOR, .level = HY_LOG_ERROR,
                          .context = "console_chain_test", .who = hy_self(),
                          .child = HY_PID_NONE};
    for (int i = 0; i < 3; i++) {
        hy_report(&r);
        hy_log(HY_LOG_WARNING, "console chain line %d", i);
    }
    HY_CHECK_EQ(atomic_load(&seen->reports), 3u);
    HY_CHECK_EQ(atomic_load(&seen->lines), 3u);
    HY_CHECK(strstr(seen->last_line, "console chain line 2") != NULL);
    /* the console kept them too */
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    HY_CHECK_EQ(hy_console_api(c, "/api/reports", text, cap, &len), 0);
    HY_CHECK(strstr(text, "console_chain_test") != NULL);
    HY_CHECK(strstr(text, "console chain line 2") != NULL);
    free(text);
    HY_CHECK_EQ(hy_console_stop(c), 0);
    /* stopped: the user's handler and sink are back, and still receive */
    hy_report_get_handler(&fn, &ctx);
    HY_CHECK(fn == user_report && ctx == seen);
    hy_log_get_sink(&sk, &ctx);
    HY_CHECK(sk == user_sink && ctx == seen);
    hy_report(&r);
    hy_log(HY_LOG_WARNING, "console chain line %d", 3);
    HY_CHECK_EQ(atomic_load(&seen->reports), 4u);
    HY_CHECK_EQ(atomic_load(&seen->lines), 4u);
    handlers_reset(reports_on);
}

static void test_console_chains_user_handler_and_sink(void **state)
{
    (void)state;
    static struct seen seen;
    assert_int_equal(hy_test_run(2, body_chain, &seen), 0);
}

/* A sink and handler set after the console's, chaining to them (as
 * hy_log_get_sink tells a program to), still in place when the console
 * stops: the console cannot take itself out of that chain, and a line or
 * report passed through it must not touch the stopped console (freed: a
 * use-after-free that AddressSanitizer reports in on_log). A plain thread
 * logs meanwhile (ThreadSanitizer: the stop against a line in flight). */
struct stacked {
    hy_log_sink_fn sink;
    void *sink_ctx;
    hy_report_fn report;
    void *report_ctx;
    _Atomic bool stop_logger;
    _Atomic unsigned logged;
};

static struct stacked stacked;

static void stacked_sink(enum hy_log_level level, const char *line, void *ctx)
{
    struct stacked *st = ctx;
    st->sink(level, line, st->sink_ctx);
}

static void stacked_report(const struct hy_report *r, void *ctx)
{
    struct stacked *st = ctx;
    st->report(r, st->report_ctx);
}

static void *stacked_logger(void *arg)
{
    struct stacked *st = arg;
    while (!atomic_load(&st->stop_logger)) {
        hy_log(HY_LOG_WARNING, "console stacked logger line");
        atomic_fetch_add(&st->logged, 1);
    }
    return NULL;
}

static void body_stacked(void *arg)
{
    struct seen *seen = arg;
    bool reports_on = hy_report_enabled();
    hy_report_set_enabled(false);
    hy_report_set_handler(user_report, seen);
    hy_report_set_enabled(true);
    hy_log_set_sink(user_sink, seen);
    pthread_t logger;
    atomic_store(&stacked.stop_logger, false);
    HY_CHECK_EQ(pthread_create(&logger, NULL, stacked_logger, &stacked), 0);
    struct hy_console *c;
    int rc = hy_console_start("127.0.0.1", 0, NULL, &c);
    HY_CHECK(rc == 0 || rc == HY_ENOSYS);
    if (rc == 0) {
        /* a program stacks its own over the console's, chaining to them */
        hy_log_get_sink(&stacked.sink, &stacked.sink_ctx);
        hy_log_set_sink(stacked_sink, &stacked);
        hy_report_set_enabled(false);
        hy_report_get_handler(&stacked.report, &stacked.report_ctx);
        hy_report_set_handler(stacked_report, &stacked);
        hy_report_set_enabled(true);
        unsigned before = atomic_load(&stacked.logged);
        while (atomic_load(&stacked.logged) < before + 10) /* lines in flight meanwhile */
            hy_yield();
        HY_CHECK_EQ(hy_console_stop(c), 0);
        /* the chain still reaches the user's sink and handler */
        struct hy_report r = {.type = HY_REPORT_SUPERVISOR, .level = HY_LOG_ERROR,
                              .context = "console_chain_test", .who = hy_self(),
                              .child = HY_PID_NONE};
        hy_report(&r);
        hy_log(HY_LOG_WARNING, "console chain line %d", 7);
        HY_CHECK_EQ(atomic_load(&seen->reports), 1u);
        HY_CHECK_EQ(atomic_load(&seen->lines), 1u);
        HY_CHECK(strstr(seen->last_line, "console chain line 7") != NULL);
        before = atomic_load(&stacked.logged);
        while (atomic_load(&stacked.logged) < before + 10)
            hy_yield();
    }
    atomic_store(&stacked.stop_logger, true);
    pthread_join(logger, NULL);
    handlers_reset(reports_on);
}

static void test_console_stopped_under_a_stacked_sink(void **state)
{
    (void)state;
    static struct seen seen;
    assert_int_equal(hy_test_run(2, body_stacked, &seen), 0);
}

/* The process page: a process parked in a function of ours, with three
 * messages it does not take waiting in its mailbox. */
#define T_Q1 0x51
#define T_Q2 0x52
#define T_Q3 0x53

static __attribute__((noinline)) void parked_in_known_function(void)
{
    hy_ref never;
    hy_ref_make(&never);
    struct hy_msg *m;
    /* waits for a reply nobody sends: queued messages stay in the mailbox */
    if (hy_recv_ref(never, &m, 60 * SEC) == 0)
        hy_msg_free(m);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

static void parked(void *arg)
{
    (void)arg;
    parked_in_known_function();
}

static void body_proc_page(void *arg)
{
    (void)arg;
    struct hy_console *c;
    int rc = hy_console_start("127.0.0.1", 0, NULL, &c);
    if (rc == HY_ENOSYS)
        return;
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1; /* another shard than ours: collected there, by message */
    hy_pid p;
    HY_CHECK_EQ(hy_spawn_opt(parked, NULL, &o, &p), 0);
    HY_CHECK_EQ(hy_send(p, T_Q1, "first", 5), 0);
    HY_CHECK_EQ(hy_send(p, T_Q2, "second\001", 7), 0);
    HY_CHECK_EQ(hy_send(p, T_Q3, "third message, longer than a preview", 36), 0);
    char target[128];
    snprintf(target, sizeof(target), "/api/proc?pid=%llx-%llx", (unsigned long long)p.hi,
             (unsigned long long)p.lo);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    /* wait until it is parked with the three messages queued */
    uint64_t until = hy_now_ns() + 30 * SEC;
    bool ready = false;
    while (!ready && hy_now_ns() < until) {
        HY_CHECK_EQ(hy_console_api(c, target, text, cap, &len), 0);
        ready = strstr(text, "\"status\":\"waiting\"") && strstr(text, "\"mailbox\":3") &&
                strstr(text, "\"backtrace_state\":\"ok\"");
        if (!ready)
            hy_sleep_ns(1000000);
    }
    HY_CHECK(ready);
    if (!ready)
        hy_log(HY_LOG_ERROR, "proc page: %s", text);
    /* the mailbox head, oldest first, with sizes, sender and a preview */
    char *q1 = strstr(text, "{\"tag\":81,\"size\":5,"), *q2 = strstr(text, "{\"tag\":82,\"size\":7,"),
         *q3 = strstr(text, "{\"tag\":83,\"size\":36,");
    HY_CHECK(q1 && q2 && q3 && q1 < q2 && q2 < q3);
    HY_CHECK(strstr(text, "\"hex\":\"6669727374\",\"text\":\"first\"") != NULL);
    HY_CHECK(strstr(text, "\"text\":\"second.\"") != NULL);
    HY_CHECK(strstr(text, "\"text\":\"third message, l\"") != NULL); /* 16 bytes */
    HY_CHECK(strstr(text, "\"mailbox_head_more\":false") != NULL);
    char me[HY_PID_STRLEN];
    hy_pid_format(hy_self(), me, sizeof(me));
    HY_CHECK(strstr(text, me) != NULL); /* the sender */
    /* the backtrace names the function it waits in */
    char *bt = strstr(text, "\"backtrace\":[");
    HY_CHECK(bt && strstr(bt, "parked_in_known_function") != NULL);
    if (!bt || !strstr(bt, "parked_in_known_function"))
        hy_log(HY_LOG_ERROR, "proc page: %s", text);
    /* unknown and malformed pids */
    HY_CHECK_EQ(hy_console_api(c, "/api/proc?pid=1-1", text, cap, &len), HY_ENOENT);
    HY_CHECK_EQ(hy_console_api(c, "/api/proc", text, cap, &len), HY_EINVAL);
    HY_CHECK_EQ(hy_console_api(c, "/api/nothing", text, cap, &len), HY_ENOENT);
    free(text);
    hy_exit_pid(p, hy_reason_make(HY_REASON_KILL));
    HY_CHECK_EQ(hy_console_stop(c), 0);
}

static void test_console_proc_page_mailbox_and_backtrace(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_proc_page, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_refuses_unsafe_binds),
        cmocka_unit_test(test_console_metrics_between_stats_reads),
        cmocka_unit_test(test_console_chains_user_handler_and_sink),
        cmocka_unit_test(test_console_stopped_under_a_stacked_sink),
        cmocka_unit_test(test_console_proc_page_mailbox_and_backtrace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
