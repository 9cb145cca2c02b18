#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

double hy_test_scale(void)
{
    const char *e = getenv("HYDRA_TEST_SCALE");
    double s = e ? atof(e) : 1.0;
    return s > 0 ? s : 1.0;
}

uint64_t hy_test_scaled(uint64_t n)
{
    double v = (double)n * hy_test_scale();
    return v < 1 ? 1 : (uint64_t)v;
}

struct wrap {
    hy_proc_fn body;
    void *arg;
    bool clean;
};

static void wrapper(void *a)
{
    struct wrap *w = a;
    w->body(w->arg);
    /* the body's processes must all be gone and every buffer home */
    w->clean = hy_test_quiesce(1, 10000);
}

int hy_test_run_cfg(const struct hy_config *cfg, hy_proc_fn body, void *arg)
{
    struct wrap w = {body, arg, false};
    int rc = hy_run(cfg, wrapper, &w);
    assert_int_equal(rc, 0);
    assert_true(w.clean);
    assert_false(hy_running());
    return rc;
}

int hy_test_run(unsigned nshards, hy_proc_fn body, void *arg)
{
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = nshards;
    return hy_test_run_cfg(&cfg, body, arg);
}

bool hy_test_wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = hy_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!cond(arg)) {
        if (hy_now_ns() > deadline)
            return false;
        hy_sleep_ns(100000);
    }
    return true;
}

struct quiesce {
    uint64_t alive;
};

static bool quiet(void *a)
{
    struct quiesce *q = a;
    struct hy_stats t;
    if (hy_stats_total(&t) != 0)
        return false;
    if (t.procs_alive != q->alive)
        return false;
    for (unsigned i = 0; i < hy_shard_count(); i++) {
        struct hy_stats s;
        hy_stats_get(i, &s);
        if (s.buffers_out != 0)
            return false;
    }
    return true;
}

bool hy_test_quiesce(uint64_t expected_alive, unsigned timeout_ms)
{
    struct quiesce q = {expected_alive};
    return hy_test_wait_until(quiet, &q, timeout_ms);
}
