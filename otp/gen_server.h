/* GenServer: OTP's gen_server behaviour for Hydra processes.
 *
 * A server is a process that runs a loop around a table of callbacks
 * (struct hy_gen_server_ops, designated initialisers, NULL = OTP default):
 *
 *   init            (arg)                  -> HY_GS_OK | HY_GS_IGNORE | HY_GS_STOP
 *   handle_call     (tag, request, from)   -> HY_GS_OK | HY_GS_STOP
 *                   reply with hy_gen_server_reply(from, ...) now, or later
 *                   from any process (deferred reply); default: stop with
 *                   reason "unexpected call" after replying nothing
 *   handle_cast     (tag, data)            -> HY_GS_OK | HY_GS_STOP (default: ignore)
 *   handle_info     (msg)                  -> HY_GS_OK | HY_GS_STOP (default: ignore;
 *                   every message that is not a call, cast or system message
 *                   lands here: a stray message never crashes the server)
 *   handle_continue (tag)                  -> HY_GS_OK | HY_GS_STOP; runs right after
 *                   init or a callback that called hy_gs_continue(), before the
 *                   next message
 *   terminate       (reason)               called on stop: a callback returned
 *                   HY_GS_STOP, hy_gen_server_stop(), or the parent's exit
 *                   signal while the server traps exits (OTP)
 *
 * Where this differs from OTP, it says so: replies are sent by the callback
 * (hy_gen_server_reply) instead of being a return value, which makes the
 * immediate and the deferred reply the same call.
 *
 * Call protocol: the caller monitors the server with a reply alias
 * (HY_MONITOR_ALIAS), sends the request, and waits on the monitor's ref for
 * the reply or the DOWN, with the receive marker, so a long mailbox does not
 * slow it down. A server that is dead or missing is an error, never a hang;
 * a reply that arrives after a timeout is dropped, never queued.
 */
#ifndef HY_OTP_GEN_SERVER_H
#define HY_OTP_GEN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/msg.h"
#include "../core/pid.h"
#include "../core/proc.h"
#include "../core/signals.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Callback results. */
enum hy_gs_result {
    HY_GS_OK = 0,     /* keep serving (init: started) */
    HY_GS_STOP = 1,   /* terminate; reason set with hy_gs_stop() (default normal) */
    HY_GS_IGNORE = 2, /* init only: do not start; start returns HY_EIGNORED */
};

/* Request tags of calls and casts must be below this (they share the
 * message tag with the protocol's own bits). */
#define HY_GS_TAG_MAX (1ull << 60)

/* Whom to reply to: the caller's pid and its reply alias. Copy it freely
 * (by value) to reply later, from any process, any shard. */
typedef hy_alias hy_gs_from;

struct hy_gs; /* a running server's context, passed to every callback */

struct hy_gen_server_ops {
    int (*init)(struct hy_gs *gs, void *arg);
    int (*handle_call)(struct hy_gs *gs, uint64_t tag, const void *data, size_t len,
                       hy_gs_from from);
    int (*handle_cast)(struct hy_gs *gs, uint64_t tag, const void *data, size_t len);
    int (*handle_info)(struct hy_gs *gs, const struct hy_msg *msg);
    int (*handle_continue)(struct hy_gs *gs, uint64_t tag);
    void (*terminate)(struct hy_gs *gs, const struct hy_reason *reason);
};

/* ---- inside callbacks ---------------------------------------------------- */

/* Names: hy_gen_server_* is the module's canonical prefix. The callback
 * helpers below were first named hy_gs_*; those names stay, as aliases of
 * the same functions (same symbols' code, exported both ways). The types
 * (struct hy_gs, hy_gs_from, HY_GS_*) keep their short names. gs is
 * borrowed from the callback that is running; none of these fail. */

/* The server's state pointer (NULL until set). Context: callbacks. */
void *hy_gen_server_state(struct hy_gs *gs);
/* Sets the state pointer (owned by the server's code). Context: callbacks. */
void hy_gen_server_set_state(struct hy_gs *gs, void *state);
/* Sets the reason of the HY_GS_STOP that the callback is about to return
 * (copied). (To stop a server from outside: hy_gen_server_stop.)
 * Context: callbacks. */
void hy_gen_server_stop_reason(struct hy_gs *gs, struct hy_reason reason);
/* Asks for handle_continue(tag) before the next message. Context: callbacks. */
void hy_gen_server_continue(struct hy_gs *gs, uint64_t tag);
/* The pid of the process that started the server (its parent).
 * Context: callbacks. */
hy_pid hy_gen_server_parent(struct hy_gs *gs);

/* Older names of the five above (aliases). Context: callbacks. */
void *hy_gs_state(struct hy_gs *gs);                       /* hy_gen_server_state */
void hy_gs_set_state(struct hy_gs *gs, void *state);       /* hy_gen_server_set_state */
void hy_gs_stop(struct hy_gs *gs, struct hy_reason reason); /* hy_gen_server_stop_reason */
void hy_gs_continue(struct hy_gs *gs, uint64_t tag);       /* hy_gen_server_continue */
hy_pid hy_gs_parent(struct hy_gs *gs);                     /* hy_gen_server_parent */

/* ---- starting ------------------------------------------------------------------ */

struct hy_gen_server_opts {
    /* Register the server under this name (NULL: none). If the name is taken,
     * start fails with HY_EEXIST and *out gets the existing pid. */
    const char *name;
    /* Shard to run on (-1: the caller's). */
    int shard;
    /* How long the caller waits for init, in ns: HY_INFINITY (the value of
     * HY_GEN_SERVER_OPTS_INIT) or a positive bound. 0 is not HY_NOWAIT here
     * (an init cannot be polled): it means "not set", i.e. HY_INFINITY, so
     * zero-initialised options keep working; other negative values too.
     * When it expires the server is killed and start returns HY_ETIMEDOUT
     * once it is gone (its name, if any, free again). */
    int64_t init_timeout_ns;
    /* Bytes of *arg to copy for init (needed when the server runs on
     * another shard and arg points into the caller's memory); 0 = pass the
     * pointer as is. */
    size_t arg_size;
    /* More spawn options (stack mode, mailbox bound); shard/link/monitor
     * fields are ignored. NULL = defaults. */
    const struct hy_spawn_opts *spawn;
    /* If not NULL, receives the reason when init returned HY_GS_STOP or the
     * server died during init. */
    struct hy_reason *init_reason;
};

#define HY_GEN_SERVER_OPTS_INIT {.shard = -1, .init_timeout_ns = HY_INFINITY}

/* Starts a server and waits for its init: 0 and *out = its pid when init
 * returned HY_GS_OK. ops is borrowed for the server's whole life (use a
 * static table). arg is borrowed: copied when opts->arg_size > 0, else
 * handed to init as is (it is const here so that a supervisor child's
 * start function, which gets a const pointer, can pass it on uncast;
 * init receives it as void * and must not write through it unless the
 * caller allows that). Errors: HY_EIGNORED (init returned HY_GS_IGNORE),
 * HY_ESTOPPED (init returned HY_GS_STOP or crashed: see opts->init_reason),
 * HY_EEXIST (name taken; *out = the existing pid), HY_ETIMEDOUT (init
 * timeout), HY_EINVAL, HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_gen_server_start(const struct hy_gen_server_ops *ops, const void *arg,
                        const struct hy_gen_server_opts *opts, hy_pid *out);

/* hy_gen_server_start() plus a link between the caller and the server,
 * set atomically with the spawn (the caller is the server's parent). */
int hy_gen_server_start_link(const struct hy_gen_server_ops *ops, const void *arg,
                             const struct hy_gen_server_opts *opts, hy_pid *out);

/* ---- talking to a server -------------------------------------------------------- */

/* Calls server with request {tag, data[len]} and waits up to timeout_ns
 * (HY_INFINITY allowed) for the reply, returned owned in *reply (free it
 * with hy_msg_free; its tag is the one the server replied with).
 * Errors: HY_ETIMEDOUT (no reply in time; a later reply is dropped, never
 * queued; one that came in as the timeout expired is returned, as OTP),
 * HY_ENOPROC (no such server, or its node cannot be reached: distribution
 * off, a node that is not a configured peer, or one declared down; or that
 * node went down during the call; *why, if not NULL, gets noproc or
 * noconnection; never a wait for the timeout), HY_EEXIT (the server died
 * during the call: *why, if not NULL, gets its reason), HY_EINVAL (tag >=
 * HY_GS_TAG_MAX, or server is the caller: OTP's calling_self),
 * HY_EMSGSIZE, HY_ENOTPROC. Works the same across shards.
 * Context: a process. */
int hy_gen_server_call(hy_pid server, uint64_t tag, const void *data, size_t len,
                       int64_t timeout_ns, struct hy_msg **reply, struct hy_reason *why);

/* As hy_gen_server_call() for the server registered as name (HY_ENOPROC if
 * none). */
int hy_gen_server_call_name(const char *name, uint64_t tag, const void *data, size_t len,
                            int64_t timeout_ns, struct hy_msg **reply, struct hy_reason *why);

/* Replies to a call: to be called once per call, by the server's callback
 * or later by any process. Dropped if the caller gave up or died.
 * Errors: HY_EINVAL, HY_EMSGSIZE, HY_ENOTSHARD. Context: a shard thread. */
int hy_gen_server_reply(hy_gs_from from, uint64_t tag, const void *data, size_t len);

/* Sends {tag, data[len]} to server's handle_cast; returns at once (0 even
 * if the server is dead, as OTP's cast). Errors: HY_EINVAL, HY_EMSGSIZE. */
int hy_gen_server_cast(hy_pid server, uint64_t tag, const void *data, size_t len);

/* Casts after ns nanoseconds (a timer tied to the server: cancelled if it
 * exits). *timer (may be NULL) can be cancelled with hy_timer_cancel. */
int hy_gen_server_cast_after(uint64_t ns, hy_pid server, uint64_t tag, const void *data,
                             size_t len, hy_ref *timer);

/* Stops server: its terminate callback runs with reason, then it exits with
 * that reason; waits up to timeout_ns for it to be gone.
 * Errors: HY_ENOPROC (not running, or its node cannot be reached),
 * HY_EINVAL (server is the caller: OTP's calling_self; returned at once),
 * HY_ETIMEDOUT (still alive: it is not killed), HY_ENOTPROC.
 * Context: a process. */
int hy_gen_server_stop(hy_pid server, struct hy_reason reason, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* HY_OTP_GEN_SERVER_H */
