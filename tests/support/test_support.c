#include "test_support.h"

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    /* HYDRA_IO_RX_MULTISHOT=1 (tests/meson.build's io_uring_ms suites):
     * every socket suite again with the io_uring poller's multishot
     * receives */
    struct hy_config c = *cfg;
    const char *ms = getenv("HYDRA_IO_RX_MULTISHOT");
    if (ms && strcmp(ms, "1") == 0)
        c.io_rx_multishot = true;
    int rc = hy_run(&c, wrapper, &w);
    hy_test_assert_checks();
    assert_int_equal(rc, 0);
    assert_true(w.clean);
    assert_false(hy_running());
    return rc;
}

int hy_test_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    HY_CHECK(d != NULL); /* callable from processes: record, don't longjmp */
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

int hy_test_run_fd_checked(unsigned nshards, hy_proc_fn body, void *arg)
{
    int before = hy_test_fd_count();
    int rc = hy_test_run(nshards, body, arg);
    assert_int_equal(hy_test_fd_count(), before);
    return rc;
}

struct hy_addr hy_test_loopback(uint16_t port)
{
    struct hy_addr a;
    hy_addr_parse("127.0.0.1", port, &a);
    return a;
}

enum hy_io_backend hy_test_io_backend(void)
{
    const char *b = getenv("HYDRA_IO_BACKEND");
    if (b && strcmp(b, "epoll") == 0)
        return HY_IO_EPOLL;
    if (b && strcmp(b, "io_uring") == 0)
        return HY_IO_URING;
    return HY_IO_AUTO;
}

int hy_test_run(unsigned nshards, hy_proc_fn body, void *arg)
{
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = nshards;
    cfg.io_backend = hy_test_io_backend();
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

bool hy_test_thread_wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = hy_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!cond(arg)) {
        if (hy_now_ns() > deadline)
            return false;
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* ---- checks ------------------------------------------------------------- */

#define MAX_KEPT 16

static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned check_failures;
static char check_text[MAX_KEPT][256];

void hy_test_check_fail(const char *file, int line, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&check_lock);
    if (check_failures < MAX_KEPT)
        snprintf(check_text[check_failures], sizeof(check_text[0]), "%s:%d: check failed: %s",
                 file, line, what);
    check_failures++;
    pthread_mutex_unlock(&check_lock);
}

unsigned hy_test_check_failures(void)
{
    pthread_mutex_lock(&check_lock);
    unsigned n = check_failures;
    pthread_mutex_unlock(&check_lock);
    return n;
}

void hy_test_assert_checks(void)
{
    pthread_mutex_lock(&check_lock);
    unsigned n = check_failures;
    for (unsigned i = 0; i < n && i < MAX_KEPT; i++)
        print_error("%s\n", check_text[i]);
    if (n > MAX_KEPT)
        print_error("... and %u more failed checks\n", n - MAX_KEPT);
    check_failures = 0;
    pthread_mutex_unlock(&check_lock);
    assert_int_equal(n, 0);
}

struct hy_msg *hy_test_must_recv_tag(uint64_t tag, int64_t timeout_ns)
{
    struct hy_msg *m = NULL;
    int rc = hy_recv_tag(tag, &m, timeout_ns);
    HY_CHECK_EQ(rc, 0);
    return rc == 0 ? m : NULL;
}

void hy_test_send_tag(hy_pid to, uint64_t tag)
{
    HY_CHECK_EQ(hy_send(to, tag, NULL, 0), 0);
}

void hy_test_send_u32(hy_pid to, uint64_t tag, uint32_t v)
{
    HY_CHECK_EQ(hy_send(to, tag, &v, sizeof(v)), 0);
}

uint32_t hy_test_payload_u32(const struct hy_msg *m)
{
    uint32_t v = UINT32_MAX;
    HY_CHECK_EQ(m->size, sizeof(v));
    if (m->size == sizeof(v))
        memcpy(&v, m->data, sizeof(v));
    return v;
}
