/* Processes: spawn, self, yield, sleep, exit, per-process arena.
 *
 * A process is a stackful coroutine with a pid, a mailbox and a shard it
 * lives on for its whole life. It runs until it receives, sleeps, yields,
 * calls, or spends its reduction budget (every runtime call charges it), so a
 * process that never calls the runtime holds its shard: the stall detector
 * reports it and, past the configured multiple, aborts the node (see
 * runtime.h). Nothing can stop such a process from inside the shard.
 */
#ifndef HY_CORE_PROC_H
#define HY_CORE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pid.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- exit reasons ------------------------------------------------------ */

enum hy_reason_kind {
    HY_REASON_NORMAL = 0,
    HY_REASON_KILL,         /* as a signal: untrappable; the victim dies with killed */
    HY_REASON_KILLED,       /* a process that was killed */
    HY_REASON_SHUTDOWN,     /* orderly stop by a supervisor or hy_stop() */
    HY_REASON_NOPROC,       /* the target did not exist */
    HY_REASON_NOCONNECTION, /* the target's node went down */
    HY_REASON_CRASH,        /* a hardware fault in the process's code */
    HY_REASON_USER,         /* a user reason: code + text */
};

#define HY_REASON_TEXT_MAX 48

/* Why a process ended (or what an exit signal carries). Copied by value. */
struct hy_reason {
    uint16_t kind;     /* enum hy_reason_kind */
    int32_t code;      /* USER: user's code; CRASH: the signal number */
    uint64_t addr;     /* CRASH: faulting address */
    char text[HY_REASON_TEXT_MAX]; /* USER / CRASH: NUL-terminated text */
};

/* Builds a reason of kind k with no text. Context: anywhere. */
struct hy_reason hy_reason_make(enum hy_reason_kind k);
/* Builds a user reason: code plus text (truncated to HY_REASON_TEXT_MAX-1). */
struct hy_reason hy_reason_user(int32_t code, const char *text);
/* Writes "normal", "killed", "crash(SIGSEGV at 0x0)", "user(3, bad input)" ... */
char *hy_reason_format(const struct hy_reason *r, char *buf, size_t len);

/* ---- spawning ---------------------------------------------------------- */

enum hy_mailbox_policy {
    HY_MAILBOX_DROP_NEW = 0, /* a message to a full mailbox is dropped and counted */
    HY_MAILBOX_KILL = 1,     /* the receiver is killed with user reason "mailbox_overflow" */
};

struct hy_spawn_opts {
    /* Shard to run on; -1 (HY_SHARD_SELF) = the caller's shard. */
    int shard;
    /* Stack mode; HY_STACK_DEFAULT = the runtime's. */
    int stack_mode;
    /* Guarded stack size for this process (0 = runtime default). */
    size_t stack_size;
    /* Mailbox bound (0 = runtime default, which is unbounded unless set). */
    size_t max_mailbox;
    enum hy_mailbox_policy mailbox_policy;
    /* If arg_size > 0, arg is copied into the new process's arena and the
     * process gets a pointer to its copy (needed to pass data to another
     * shard). Otherwise arg is passed as is. */
    size_t arg_size;
    /* Link / monitor the new process atomically with the spawn (see
     * signals.h); with monitor, the reference is written to *monitor_ref. */
    bool link;
    bool monitor;
    hy_ref *monitor_ref;
    /* Trap exits from the start. */
    bool trap_exit;
};

#define HY_SHARD_SELF (-1)
#define HY_STACK_DEFAULT (-1)
#define HY_SPAWN_OPTS_INIT {.shard = HY_SHARD_SELF, .stack_mode = HY_STACK_DEFAULT}

/* Spawns fn(arg) on the caller's shard and writes its pid to *out (may be
 * NULL). The new process runs after the caller yields or blocks.
 * arg is borrowed by the new process as is.
 * Errors: HY_ENOTSHARD (not on a shard thread), HY_ENOMEM (no slot or
 * memory), HY_EINVAL (fn NULL).
 * Context: a process or a shard callback. */
int hy_spawn(hy_proc_fn fn, void *arg, hy_pid *out);

/* Spawns with options (opts borrowed; NULL = defaults). Spawning onto
 * another shard sends the request through the ring mesh and waits for that
 * shard to create the process (the caller blocks as in a receive).
 * Errors: as hy_spawn, plus HY_EINVAL (bad shard, bad stack mode, or
 * arg_size > max_message_size), HY_ENOTPROC (another shard or monitor
 * requested from outside a process).
 * Context: a process, or (same shard, no monitor) a shard callback. */
int hy_spawn_opt(hy_proc_fn fn, void *arg, const struct hy_spawn_opts *opts, hy_pid *out);

/* ---- the running process ---------------------------------------------- */

/* Pid of the calling process, HY_PID_NONE outside a process. */
hy_pid hy_self(void);

/* True when called from inside a process. Context: anywhere. */
bool hy_in_process(void);

/* Lets the other ready processes of the shard run, then continues. When
 * other shards have sent something, the shard takes it in first (an exit
 * signal for the caller ends it here). Errors: HY_ENOTPROC.
 * Context: a process. */
int hy_yield(void);

/* Suspends the calling process for ns nanoseconds (timer wheel, so
 * resolution is the wheel's tick, ~1 us). Messages that arrive meanwhile stay
 * queued. Errors: HY_ENOTPROC. Context: a process. */
int hy_sleep_ns(uint64_t ns);

/* Ends the calling process with reason (copied) from any call depth: cleanup
 * handlers run (last registered first), the arena is released, links and
 * monitors are told. C frames in between are not unwound. Outside a process
 * it returns HY_ENOTPROC instead of ending anything.
 * Context: a process. */
int hy_exit(struct hy_reason reason);

/* hy_exit() with a user reason (code 0) whose text is the formatted string. */
int hy_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Registers fn(arg) to run when the calling process ends, whatever the
 * reason (return, hy_exit, kill, crash). Handlers run on the process's shard,
 * last registered first, outside the process (they must not receive).
 * The record lives in the process arena. Errors: HY_ENOTPROC, HY_ENOMEM.
 * Context: a process. */
int hy_on_exit(void (*fn)(void *arg), void *arg);

/* ---- the per-process arena -------------------------------------------- */

/* Allocates size bytes (16-byte aligned) from the calling process's arena.
 * The memory belongs to the process and is released, all at once, when it
 * exits, however it exits; there is no individual free. Never use it for a
 * message payload (messages have their own buffers, see msg.h).
 * Returns NULL outside a process or when memory is exhausted.
 * Context: a process. */
void *hy_alloc(size_t size);

/* Bytes currently held by the calling process's arena (0 outside). */
size_t hy_arena_bytes(void);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_PROC_H */
