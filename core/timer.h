/* Timers: send_after, cancel, read.
 *
 * Each shard has a hierarchical timer wheel (~1 us resolution); receive
 * timeouts and hy_sleep_ns use it too. Semantics follow OTP's
 * erlang:send_after/cancel_timer/read_timer:
 *  - a timer sending to a local pid lives on the destination's shard and is
 *    cancelled when that destination process exits (not when its creator
 *    does): cancel/read then report HY_ENOENT;
 *  - with HY_TIMER_TIED, the timer is tied to its creator instead: it lives
 *    on the creator's shard and is cancelled when the creator exits.
 * A timer is identified by the reference send_after returns.
 */
#ifndef HY_CORE_TIMER_H
#define HY_CORE_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include "pid.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HY_TIMER_TIED 1u
/* The tag may carry HY_TAG_SYSTEM: reserved for behaviours (cast_after). */
#define HY_TIMER_SYSTEM_TAG 2u

/* After ns nanoseconds, sends {tag, data[len]} (copied now) to `to`. The
 * reference of the timer is written to *out (may be NULL).
 * Errors: HY_EINVAL (system tag, bad flags), HY_EMSGSIZE, HY_ENOMEM,
 * HY_ENOTPROC (outside a process).
 * Context: a process. */
int hy_send_after(uint64_t ns, hy_pid to, uint64_t tag, const void *data, size_t len,
                  unsigned flags, hy_ref *out);

/* Cancels the timer ref. On success the message will never be sent, and
 * *remaining_ns (may be NULL) gets the time that was left.
 * Errors: HY_ENOENT (no such timer: fired, cancelled, or its destination
 * exited), HY_ENOTPROC. A timer on another shard is asked by message and
 * the caller waits for the answer.
 * Context: a process. */
int hy_timer_cancel(hy_ref ref, uint64_t *remaining_ns);

/* Reads the time left on timer ref without cancelling it.
 * Errors: as hy_timer_cancel. Context: a process. */
int hy_timer_read(hy_ref ref, uint64_t *remaining_ns);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_TIMER_H */
