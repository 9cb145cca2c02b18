/* Helpers shared by the test suites: start a runtime around a test body,
 * wait on real conditions with a deadline, check a clean shutdown. */
#ifndef HY_TESTS_SUPPORT_H
#define HY_TESTS_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "hydra.h"

/* Count multiplier from HYDRA_TEST_SCALE (default 1). */
double hy_test_scale(void);
/* n scaled, at least 1. */
uint64_t hy_test_scaled(uint64_t n);

/* Runs body(arg) as the main process of a runtime with nshards shards
 * (hy_run, so it returns when body returns) and then asserts a clean
 * shutdown: every shard's processes exited and buffers home. Returns what
 * hy_run returned. */
int hy_test_run(unsigned nshards, hy_proc_fn body, void *arg);
int hy_test_run_cfg(const struct hy_config *cfg, hy_proc_fn body, void *arg);
/* Socket poller backend named by HYDRA_IO_BACKEND ("epoll", "io_uring"; else
 * auto); hy_test_run() uses it, so a suite runs on either backend. */
enum hy_io_backend hy_test_io_backend(void);

/* Descriptors this OS process has open (entries of /proc/self/fd, less the
 * one reading the directory); -1 and a failed check if it cannot be read.
 * Context: any thread, processes included. */
int hy_test_fd_count(void);
/* hy_test_run() and then asserts that as many descriptors are open as
 * before it: the body left none behind. Context: the test's main thread. */
int hy_test_run_fd_checked(unsigned nshards, hy_proc_fn body, void *arg);
/* 127.0.0.1:port as a hy_addr (port 0: any free port when bound). */
struct hy_addr hy_test_loopback(uint16_t port);

/* From a process: waits (yielding/sleeping 100 us at a time) until cond(arg)
 * is true or timeout_ms passes; returns whether it became true. */
bool hy_test_wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/* From a process: waits until every shard reports alive == expected_alive
 * total and no message buffer away from home. */
bool hy_test_quiesce(uint64_t expected_alive, unsigned timeout_ms);

/* From a plain thread (not a process): polls cond(arg) every 50 us until it
 * is true or timeout_ms passes; returns whether it became true. */
bool hy_test_thread_wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/* ---- checks from inside processes ----------------------------------------
 * cmocka's assertions longjmp back to the test runner, which would abandon a
 * coroutine half way through its stack; code running in a process (or on a
 * pool or foreign thread) records failed checks instead. hy_test_run*()
 * assert that none was recorded; tests that drive hy_start()/hy_run()
 * themselves call hy_test_assert_checks(). Thread-safe. */
#define HY_CHECK(cond)                                                                    \
    ((cond) ? (void)0 : hy_test_check_fail(__FILE__, __LINE__, "%s", #cond))
#define HY_CHECK_EQ(a, b)                                                                 \
    do {                                                                                  \
        long long hy_ca_ = (long long)(a), hy_cb_ = (long long)(b);                       \
        if (hy_ca_ != hy_cb_)                                                             \
            hy_test_check_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b,     \
                               hy_ca_, hy_cb_);                                           \
    } while (0)

void hy_test_check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Number of failed checks recorded since the last hy_test_assert_checks(). */
unsigned hy_test_check_failures(void);
/* Prints the recorded failures, fails the test (cmocka) if there are any,
 * and resets the count. Context: the test's main thread, not a process. */
void hy_test_assert_checks(void);

/* Small process-side helpers shared by the suites (failures are recorded
 * with HY_CHECK, as above). */
/* Receives a message with tag within timeout_ns; NULL (and a failed check)
 * if none came. The message is returned owned. */
struct hy_msg *hy_test_must_recv_tag(uint64_t tag, int64_t timeout_ns);
/* Sends an empty message / a uint32_t payload; a failed send is a failed check. */
void hy_test_send_tag(hy_pid to, uint64_t tag);
void hy_test_send_u32(hy_pid to, uint64_t tag, uint32_t v);
/* The uint32_t payload of m (checked to be exactly that size; UINT32_MAX if not). */
uint32_t hy_test_payload_u32(const struct hy_msg *m);

#endif
