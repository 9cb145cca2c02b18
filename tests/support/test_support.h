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

/* From a process: waits (yielding/sleeping 100 us at a time) until cond(arg)
 * is true or timeout_ms passes; returns whether it became true. */
bool hy_test_wait_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/* From a process: waits until every shard reports alive == expected_alive
 * total and no message buffer away from home. */
bool hy_test_quiesce(uint64_t expected_alive, unsigned timeout_ms);

#endif
