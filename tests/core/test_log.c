/* Logging: the sink is replaced while lines are being written through it on
 * every shard and on a plain thread. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define NSHARDS 2
#define HELD_ROUNDS 5 /* rounds with a line held in the sink, per logger */
#define MAGIC_A 0x5a5a0001u
#define MAGIC_B 0x5a5a0002u

/* One sink's ctx: `alive` is cleared as soon as hy_log_set_sink() has
 * replaced the sink, as a destroyer would free it. */
struct sink_ctx {
    unsigned magic;
    _Atomic int alive;
    _Atomic unsigned calls;
    _Atomic int hold;   /* the next call from logger `hold` stays inside */
    _Atomic int inside; /* ... and says so here */
};

static _Atomic unsigned dead_calls;  /* a call that saw its ctx destroyed */
static _Atomic unsigned wrong_ctx;   /* a sink called with the other's ctx */
static _Atomic int stop_logging;
static _Atomic unsigned loggers_running;
static _Atomic int setting; /* the body is about to replace the sink */
/* which logger runs on this thread: 1 the plain thread, 2 shard 1's */
static _Thread_local int logger_id;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A sink that takes a few microseconds (it formats, copies, writes):
 * it checks its ctx as it enters and again as it leaves. */
static void sink_call(unsigned magic, void *ctx)
{
    struct sink_ctx *c = ctx;
    if (c->magic != magic)
        atomic_fetch_add(&wrong_ctx, 1);
    if (!atomic_load(&c->alive))
        atomic_fetch_add(&dead_calls, 1);
    atomic_fetch_add(&c->calls, 1);
    int want = logger_id;
    if (want && atomic_compare_exchange_strong(&c->hold, &want, 0)) {
        /* a line caught in the sink while it is replaced: it stays until
         * its ctx is destroyed or 20 ms pass (the body waits for it) */
        atomic_store(&c->inside, 1);
        uint64_t deadline = now_ns() + 10ull * 1000000000u;
        while (!atomic_load(&setting) && atomic_load(&c->alive) && now_ns() < deadline)
            ;
        deadline = now_ns() + 20000000u;
        while (atomic_load(&c->alive) && now_ns() < deadline)
            ;
    } else {
        uint64_t until = now_ns() + 5000;
        while (now_ns() < until)
            ;
    }
    if (!atomic_load(&c->alive))
        atomic_fetch_add(&dead_calls, 1);
}

static void sink_a(enum hy_log_level level, const char *line, void *ctx)
{
    (void)level, (void)line;
    sink_call(MAGIC_A, ctx);
}

static void sink_b(enum hy_log_level level, const char *line, void *ctx)
{
    (void)level, (void)line;
    sink_call(MAGIC_B, ctx);
}

static void logger_proc(void *arg)
{
    (void)arg;
    logger_id = hy_pid_shard(hy_self()) == 1 ? 2 : 0;
    for (unsigned i = 0; !atomic_load(&stop_logging); i++) {
        hy_log(HY_LOG_NOTICE, "line %u", i);
        hy_yield();
    }
    atomic_fetch_sub(&loggers_running, 1);
}

static void *logger_thread(void *arg)
{
    (void)arg;
    logger_id = 1;
    for (unsigned i = 0; !atomic_load(&stop_logging); i++)
        hy_log(HY_LOG_NOTICE, "thread line %u", i);
    return NULL;
}

static bool loggers_done(void *arg)
{
    (void)arg;
    return atomic_load(&loggers_running) == 0;
}

static void body_replace_sink(void *arg)
{
    (void)arg;
    unsigned rounds = (unsigned)hy_test_scaled(200);
    if (rounds < 20)
        rounds = 20;
    /* one ctx per round: a destroyed one stays destroyed */
    struct sink_ctx *ctxs = calloc(rounds + 1, sizeof(*ctxs));
    HY_CHECK(ctxs != NULL);
    if (!ctxs)
        return;
    for (unsigned r = 0; r <= rounds; r++) {
        ctxs[r].magic = r & 1 ? MAGIC_B : MAGIC_A;
        atomic_store(&ctxs[r].alive, 1);
    }
    hy_log_set_sink(sink_a, &ctxs[0]);
    atomic_store(&loggers_running, NSHARDS);
    for (unsigned s = 0; s < NSHARDS; s++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)s;
        hy_pid p;
        HY_CHECK_EQ(hy_spawn_opt(logger_proc, NULL, &o, &p), 0);
    }
    pthread_t th;
    HY_CHECK_EQ(pthread_create(&th, NULL, logger_thread, NULL), 0);
    for (unsigned r = 1; r <= rounds; r++) {
        struct sink_ctx *old = &ctxs[r - 1], *next = &ctxs[r];
        /* lines are in the old sink on shard 1 and on the thread now */
        uint64_t deadline = now_ns() + 10ull * 1000000000u;
        while (atomic_load(&old->calls) < 3 && now_ns() < deadline)
            hy_yield();
        HY_CHECK(atomic_load(&old->calls) >= 3);
        if (r <= 2 * HELD_ROUNDS) {
            /* the plain thread's or shard 1's line is in the old sink */
            atomic_store(&old->inside, 0);
            atomic_store(&old->hold, 1 + (int)(r & 1));
            while (!atomic_load(&old->inside) && now_ns() < deadline)
                hy_yield();
            HY_CHECK(atomic_load(&old->inside));
            atomic_store(&setting, 1);
        }
        hy_log_set_sink(r & 1 ? sink_b : sink_a, next);
        atomic_store(&old->alive, 0); /* what the console's stop does: free */
        atomic_store(&setting, 0);
        hy_log_sink_fn fn;
        void *ctx;
        hy_log_get_sink(&fn, &ctx);
        HY_CHECK(fn == (r & 1 ? sink_b : sink_a) && ctx == next);
    }
    atomic_store(&stop_logging, 1);
    HY_CHECK_EQ(pthread_join(th, NULL), 0);
    HY_CHECK(hy_test_wait_until(loggers_done, NULL, 10000));
    hy_log_set_sink(NULL, NULL);
    HY_CHECK(hy_test_quiesce(1, 10000));
    HY_CHECK_EQ(atomic_load(&wrong_ctx), 0);
    HY_CHECK_EQ(atomic_load(&dead_calls), 0);
    free(ctxs);
}

/* hy_log_set_sink() returns only once no line is still inside the sink it
 * replaced, on any thread (so the old ctx may be freed), and a line never
 * gets one sink with the other's ctx. Loggers on both shards and on a plain
 * thread write lines all along; in the first rounds one of them is held in
 * the sink until its ctx is destroyed (at once without the wait). */
static void test_log_set_sink_waits_for_lines_in_flight(void **state)
{
    (void)state;
    enum hy_log_level was = hy_log_get_level();
    hy_log_set_level(HY_LOG_NOTICE);
    assert_int_equal(hy_test_run(NSHARDS, body_replace_sink, NULL), 0);
    hy_log_set_level(was);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_set_sink_waits_for_lines_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
