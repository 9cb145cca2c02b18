/* Semaphore: a bounded number of permits shared by processes.
 *
 * A semaphore is a process (a GenServer) holding `permits` permits. A
 * process acquires n of them, waiting if needed, and releases them when
 * done; the semaphore monitors every process that holds or waits, so
 * permits held by a process that ends — normally, crashed or killed — are
 * released at once, and a process that dies while waiting leaves the queue.
 * Permits belong to the process that acquired them: only it can release
 * them.
 *
 * Fairness: strict FIFO. Requests are granted in arrival order; a request
 * is granted only when every earlier waiting request has been, even if
 * enough permits are free for it now (no barging), so a large request is
 * never starved by a stream of small ones.
 *
 * Timeouts are kept by the semaphore itself: a request still waiting when
 * its timeout expires is removed from the queue and answered HY_ETIMEDOUT,
 * so a permit can never be granted to a caller that has stopped waiting
 * (the caller waits for the semaphore's answer, or its DOWN if the
 * semaphore dies).
 *
 * The semaphore may live on any shard; callers on any shard use it alike.
 */
#ifndef HY_OTP_SEMAPHORE_H
#define HY_OTP_SEMAPHORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/pid.h"

/* Most permits a semaphore may have. */
#define HY_SEMAPHORE_MAX_PERMITS (1u << 30)

struct hy_semaphore_opts {
    /* Register the semaphore under this name (NULL: none; copied). */
    const char *name;
    /* Shard to run on (-1: the caller's). */
    int shard;
};

#define HY_SEMAPHORE_OPTS_INIT {.shard = -1}

/* Starts a semaphore with permits permits (1..HY_SEMAPHORE_MAX_PERMITS) and
 * writes its pid to *out (may be NULL). opts borrowed (NULL = defaults).
 * Errors: HY_EINVAL (permits out of range, bad shard or name), HY_EEXIST
 * (name taken: *out = the holder), HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_semaphore_start(unsigned permits, const struct hy_semaphore_opts *opts, hy_pid *out);

/* As hy_semaphore_start(), linked to the caller (for supervisors).
 * Errors: as hy_semaphore_start. Context: a process. */
int hy_semaphore_start_link(unsigned permits, const struct hy_semaphore_opts *opts, hy_pid *out);

/* Stops the semaphore (reason normal, so that a linked parent is not taken
 * down) and waits up to timeout_ns for it to be gone; waiting callers get
 * HY_EEXIT. Errors: as hy_gen_server_stop.
 * Context: a process. */
int hy_semaphore_stop(hy_pid sem, int64_t timeout_ns);

/* Acquires n permits for the calling process, waiting up to timeout_ns
 * (HY_INFINITY, or HY_NOWAIT to fail at once when the request cannot be
 * granted now). Returns 0 once they are the caller's.
 * Errors: HY_ETIMEDOUT (not granted in time: the caller holds nothing more
 * than before), HY_EINVAL (n == 0 or n > the semaphore's permits),
 * HY_ENOPROC (no such semaphore), HY_EEXIT (it died meanwhile),
 * HY_ENOTPROC. Context: a process. */
int hy_semaphore_acquire(hy_pid sem, unsigned n, int64_t timeout_ns);

/* Releases n of the permits the calling process holds; waiting requests are
 * then granted in order. Errors: HY_EPERM (the caller holds fewer than n),
 * HY_EINVAL (n == 0), HY_ENOPROC, HY_EEXIT, HY_ENOTPROC.
 * Context: a process. */
int hy_semaphore_release(hy_pid sem, unsigned n);

/* A snapshot of a semaphore. */
struct hy_semaphore_info {
    unsigned permits;   /* total */
    unsigned available; /* free now */
    unsigned waiting;   /* requests queued */
    unsigned holders;   /* processes holding at least one permit */
    unsigned held;      /* permits the caller holds */
};

/* Fills *out (borrowed). Errors: HY_EINVAL, HY_ENOPROC, HY_EEXIT,
 * HY_ENOTPROC. Context: a process. */
int hy_semaphore_info(hy_pid sem, struct hy_semaphore_info *out);

#endif /* HY_OTP_SEMAPHORE_H */
