/* Task: run one function in its own process and await its result.
 *
 *     struct hy_task t;
 *     hy_task_async(work, &input, &opts, &t);     // starts work(ctx, arg)
 *     ...                                        // the caller goes on
 *     rc = hy_task_await(&t, 5 * 1000000000ll, &result, &why);
 *
 * The function calls hy_task_return(ctx, bytes, len) to give its result (a
 * flat byte payload, like any message); returning without calling it gives
 * an empty result. The awaiter gets the result as an owned message
 * (hy_task_await) or copied into its buffer (hy_task_await_buf).
 *
 * Semantics chosen (the issue leaves them open; this is Elixir's
 * Task.Supervisor.async_nolink plus owner tracking, not Task.async):
 *  - Crash -> error, never a crash of the awaiter. The caller (the task's
 *    *owner*) monitors the task; a task that ends without a result — a
 *    hy_exit/hy_panic, a fault, a kill from anyone — makes the await return
 *    HY_EEXIT with the task's exit reason. The owner is not linked to the
 *    task, so nothing reaches it as an exit signal.
 *  - Owner gone -> task killed. The task is linked to a small guard process
 *    on its shard that monitors the owner; when the owner ends, for any
 *    reason (normal included: nobody is left to read the result), the guard
 *    kills the task (reason killed). A task outlives neither its owner nor
 *    its guard.
 *  - opts.link = true gives Elixir's Task.async instead: the task is linked
 *    to the owner (atomically with the spawn), no guard. The owner's abnormal
 *    exit kills the task; the task's abnormal exit is an exit signal to the
 *    owner, which dies with it unless it traps exits (then it gets the EXIT
 *    message, and the await still returns HY_EEXIT). A normal exit of the
 *    owner does not stop a linked task (Erlang link rules).
 *  - Timeout. hy_task_await() that times out kills the task (as Elixir's
 *    Task.await would, by exiting the caller it is linked to) and returns
 *    HY_ETIMEDOUT; hy_task_yield() that times out leaves it running and the
 *    handle valid (Elixir's Task.yield). The result travels through a
 *    reply-once alias of the owner tied to the monitor (HY_MONITOR_ALIAS,
 *    like a GenServer call), so once an await has timed out or the task was
 *    shut down, a result still in flight is dropped by the runtime and never
 *    lands in the owner's mailbox.
 *  - Only the owner may await, yield or shut a task down (the monitor and
 *    the alias are its own). A task is awaited at most once: after await
 *    returns anything but HY_EINVAL/HY_EPERM/HY_ENOTPROC, or after
 *    hy_task_yield returns a result or HY_EEXIT, or after hy_task_shutdown,
 *    the handle is spent.
 *  - Placement: opts.shard runs the task on any shard; owner and task may be
 *    on different shards, everything above holds the same.
 *
 * The task starts running its function only after the owner's monitor is in
 * place (the owner sends it a start message carrying the reference), so a
 * result can never be sent before it can be received.
 *
 * Ownership: struct hy_task pointers are borrowed (the owner's handle,
 * updated in place); a struct hy_task_ctx pointer is borrowed from the
 * runtime and valid only inside the task's function, in the task's process.
 */
#ifndef HY_OTP_TASK_H
#define HY_OTP_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/msg.h"
#include "../core/pid.h"
#include "../core/proc.h"

/* Tag of the result message returned by hy_task_await(). */
#define HY_TASK_TAG_RESULT 0x7461736bull /* "task" */

/* A task handle, owned by the caller (embed it; copy it only within the
 * owner). Read the fields; do not write them. */
struct hy_task {
    hy_pid pid;   /* the task's process */
    hy_pid owner; /* the process that started it and may await it */
    hy_ref ref;   /* monitor of the task and reply alias of the owner */
    bool linked;  /* started with opts.link */
    bool done;    /* spent: awaited, failed, or shut down */
};

struct hy_task_ctx; /* the running task's context, passed to its function */

/* Body of a task: runs in the task's process with arg (see opts.arg_size).
 * Returning ends the task normally (with an empty result if
 * hy_task_return() was not called). */
typedef void (*hy_task_fn)(struct hy_task_ctx *ctx, void *arg);

struct hy_task_opts {
    /* Shard to run on (HY_SHARD_SELF: the caller's). */
    int shard;
    /* Bytes of *arg to copy into the task's arena (needed when arg points
     * into the caller's memory and the task may outlive it or runs on
     * another shard); 0 = pass the pointer as is. */
    size_t arg_size;
    /* Link the task to the owner (Elixir's Task.async) instead of the
     * monitor-plus-guard default; see above. */
    bool link;
    /* More spawn options (stack mode and size, mailbox bound); its shard,
     * link, monitor, arg_size and trap_exit fields are ignored. NULL =
     * defaults. Borrowed for the call. */
    const struct hy_spawn_opts *spawn;
};

#define HY_TASK_OPTS_INIT {.shard = HY_SHARD_SELF}

/* Starts fn(ctx, arg) in a new process owned by the caller and fills *task.
 * opts borrowed (NULL = defaults); arg borrowed by the task, or copied when
 * opts->arg_size > 0.
 * Errors: HY_EINVAL (fn or task NULL, bad shard, arg_size above the
 * runtime's max message size), HY_ENOMEM, HY_ENOTPROC. On error no task
 * runs.
 * Context: a process. */
int hy_task_async(hy_task_fn fn, void *arg, const struct hy_task_opts *opts, struct hy_task *task);

/* Gives the task's result: len bytes of data (borrowed, copied) are sent to
 * the owner at once; the task may go on running but may return only once.
 * Errors: HY_EALREADY (already returned), HY_EINVAL (ctx NULL, data NULL
 * with len > 0), HY_EMSGSIZE (len above the runtime's max message size),
 * HY_ENOMEM. Context: the task's own process. */
int hy_task_return(struct hy_task_ctx *ctx, const void *data, size_t len);

/* The owner of the running task (the awaiter). Context: the task. */
hy_pid hy_task_owner(const struct hy_task_ctx *ctx);

/* Waits up to timeout_ns (HY_INFINITY allowed) for the task's result and
 * returns it owned in *result (tag HY_TASK_TAG_RESULT, payload = the bytes
 * given to hy_task_return; free it with hy_msg_free).
 * Errors: HY_EEXIT (the task ended without a result: *why, if not NULL,
 * gets its exit reason — noproc if it was already gone), HY_ETIMEDOUT (no
 * result in time: the task is killed and a late result is dropped),
 * HY_EPERM (caller is not the owner), HY_EINVAL (NULL argument or spent
 * handle), HY_ENOTPROC. The handle is spent unless the error is
 * HY_EPERM/HY_EINVAL/HY_ENOTPROC.
 * Context: the owner process. */
int hy_task_await(struct hy_task *task, int64_t timeout_ns, struct hy_msg **result,
                  struct hy_reason *why);

/* As hy_task_await(), but copies the result into buf (borrowed, cap bytes)
 * and writes its size to *len (may be NULL).
 * Errors: as hy_task_await, plus HY_EMSGSIZE (result larger than cap:
 * nothing copied, *len = its size; the handle is spent).
 * Context: the owner process. */
int hy_task_await_buf(struct hy_task *task, int64_t timeout_ns, void *buf, size_t cap, size_t *len,
                      struct hy_reason *why);

/* As hy_task_await(), except that HY_ETIMEDOUT leaves the task running and
 * the handle valid: yield or await it again later. Errors: as
 * hy_task_await. Context: the owner process. */
int hy_task_yield(struct hy_task *task, int64_t timeout_ns, struct hy_msg **result,
                  struct hy_reason *why);

/* Stops the task at once: unlinks it (linked tasks, so the kill does not
 * come back to the owner), removes the monitor and its alias, kills the
 * task (reason killed) and drops any result already received. The handle is
 * spent. A spent handle is a no-op (returns 0).
 * Errors: HY_EPERM (not the owner), HY_EINVAL (task NULL), HY_ENOTPROC.
 * Context: the owner process. */
int hy_task_shutdown(struct hy_task *task);

#endif /* HY_OTP_TASK_H */
