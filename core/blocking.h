/* Blocking calls: run a function that would block a shard (getaddrinfo,
 * fsync, file I/O) on a small per-node thread pool. The calling process waits
 * as for a receive; the other processes of its shard keep running.
 */
#ifndef HY_CORE_BLOCKING_H
#define HY_CORE_BLOCKING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Work run on a pool thread: it must not call the Hydra runtime (it is not
 * a shard) except hy_send_foreign(). Its return value is handed back. */
typedef intptr_t (*hy_blocking_fn)(void *arg);

/* Runs fn(arg) on the pool and waits for it; the result is written to
 * *result (may be NULL). arg is borrowed until fn returns, so it may point
 * into the caller's stack -- except for a compact-stack process, whose stack
 * is copied out while other processes run: it passes memory from hy_alloc()
 * (or static), and an arg inside the shared compact stack is refused with
 * HY_EINVAL. The wait cannot be interrupted: an exit signal for the caller
 * takes effect once fn has returned.
 * Errors: HY_ENOTPROC, HY_EINVAL (fn NULL, or arg on the compact stack),
 * HY_ENOTSTARTED, HY_ENOMEM.
 * Context: a process. */
int hy_blocking_run(hy_blocking_fn fn, void *arg, intptr_t *result);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_BLOCKING_H */
