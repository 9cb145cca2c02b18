/* Reports: OTP's SASL reports (who, why, what was done) for the behaviours.
 *
 * Supervisors, GenServers and applications describe what happens to them
 * as a struct hy_report and hand it to hy_report(). By default a report is
 * formatted as one line of key=value pairs and written with hy_log() at the
 * report's level (so HYDRA_LOG, hy_log_set_level() and hy_log_set_sink()
 * apply), e.g.
 *
 *   hydra error [shard 1 <1.1.4>] supervisor_report context=child_terminated
 *     who=<1.1.4> id=worker pid=<1.1.9> reason="user(0, boom)" action=restart
 *
 * A handler set with hy_report_set_handler() receives the structure itself
 * instead (structured logging, counting, tests). Reports can be switched off
 * altogether (hy_report_set_enabled(false), or HYDRA_REPORTS=off in the
 * environment): benchmarks that kill thousands of children do so.
 *
 * What is reported (OTP names):
 *  - HY_REPORT_SUPERVISOR, by a supervisor about a child (the offender):
 *      child_terminated (error; notice when a permanent child ended
 *        normally and is restarted): action restart, remove (temporary or
 *        dynamic child), none (transient/temporary child not restarted, spec
 *        kept) or shutdown (the restart would exceed the intensity);
 *      reached_max_restart_intensity (error): action shutdown — the
 *        supervisor stops all its children and exits with reason shutdown;
 *      start_error (error): a child's start function failed (error = its
 *        HY_E* code); action shutdown (initial start: the supervisor fails
 *        to start), restart (a restart attempt failed and will be retried)
 *        or none (start_child/restart_child: the caller gets the error);
 *      shutdown_error (error): a child did not stop within its shutdown
 *        time: action kill.
 *  - HY_REPORT_CRASH, by a GenServer whose callback stopped it with a reason
 *    other than normal or shutdown, or which died inside a callback (a
 *    fault, hy_panic, hy_exit): context terminating (error), with the
 *    server's registered name and the last message it handled.
 *  - HY_REPORT_PROGRESS: a supervisor started a child (context started,
 *    info: hidden at the default log level).
 *  - HY_REPORT_APPLICATION, by an application (application.h): started
 *    (info), stopped (notice), exited (error: the root gave up), start_failed
 *    (error).
 */
#ifndef HY_OTP_REPORT_H
#define HY_OTP_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/log.h"
#include "../core/pid.h"
#include "../core/proc.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hy_report_type {
    HY_REPORT_SUPERVISOR = 0, /* supervisor_report */
    HY_REPORT_CRASH,          /* crash_report */
    HY_REPORT_PROGRESS,       /* progress_report */
    HY_REPORT_APPLICATION,    /* application_report */
};

/* One report. Every pointer is borrowed for the duration of the hy_report()
 * call (a handler that keeps anything copies it). Unused fields are NULL,
 * HY_PID_NONE or 0. */
struct hy_report {
    int type;                       /* enum hy_report_type */
    enum hy_log_level level;        /* how serious (see the list above) */
    const char *context;            /* what happened: "child_terminated", ... */
    hy_pid who;                     /* the reporting process (supervisor, server, application) */
    const char *name;               /* the reporter's name (application name), or NULL */
    const char *child_id;           /* the offender's child id, or NULL (dynamic child) */
    hy_pid child;                   /* the offender's pid, or HY_PID_NONE */
    const struct hy_reason *reason; /* why, or NULL */
    int error;                      /* a HY_E* code (start errors), or 0 */
    const char *action;             /* what was done: "restart", "shutdown", ..., or NULL */
    /* GenServer crash: the last message it handled (or was handling when it
     * died), as "tag=0x.. from=<pid> size=N" (call, cast or info), or NULL */
    const char *last_message;
};

/* Receives every report while reports are enabled; r is borrowed for the
 * call. Runs on the reporting process's shard, inside it: it must not
 * receive, yield or block for long, and must not set a handler itself. */
typedef void (*hy_report_fn)(const struct hy_report *r, void *ctx);

/* Emits r (borrowed): to the handler if one is set, else formatted through
 * hy_log() at r->level. Nothing when reports are disabled.
 * Context: any thread, not signal-safe. */
void hy_report(const struct hy_report *r);

/* Sets the handler (NULL restores the default: one hy_log line). ctx is
 * borrowed until the handler is replaced: this returns once every report
 * being handled by the previous handler, on any thread, has left it, so the
 * previous ctx may then be destroyed (the calling thread yields the CPU
 * meanwhile).
 * Context: anywhere but a signal handler or a report handler. */
void hy_report_set_handler(hy_report_fn fn, void *ctx);

/* Stores the current handler and its ctx in *fn and *ctx (both borrowed;
 * either may be NULL to skip it); *fn is NULL for the default. A module
 * that installs a handler of its own reads the previous one first, passes
 * every report on to it, and sets it back when it is done.
 * Context: anywhere but a signal handler; the pair is read as one (a
 * handler and the ctx it was set with). */
void hy_report_get_handler(hy_report_fn *fn, void **ctx);

/* Switches reports on or off (default on, unless the environment has
 * HYDRA_REPORTS=off). Context: anywhere but a signal handler. */
void hy_report_set_enabled(bool on);
bool hy_report_enabled(void);

/* Writes r as "<type>_report context=... who=... [name=] [id=] [pid=]
 * [reason=] [error=] [action=] [last_message=]" into buf (borrowed, len bytes, always
 * NUL-terminated) and returns buf. Values with spaces are double-quoted.
 * Context: anywhere. */
char *hy_report_format(const struct hy_report *r, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* HY_OTP_REPORT_H */
