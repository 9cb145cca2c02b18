/* Application: OTP's application behaviour and the node's supervision tree.
 *
 * hy_app_run() starts the runtime and the application's tree from main(),
 * waits until it ends, stops it in order, and returns how it ended:
 *
 *     static const struct hy_child_spec children[] = {
 *         {.id = "store", .start = store_start_link, .type = HY_SUPERVISOR},
 *     };
 *     static const struct hy_app app = {
 *         .name = "kv", .children = children, .nchildren = 1,
 *     };
 *     int main(void) { return hy_app_run(&app, NULL, NULL); }
 *
 * The tree (DESIGN.md § OTP): every shard runs a root supervisor, on that
 * shard, with the application's children for that shard (the same list on
 * every shard for shard-per-core services, or a list per shard); the node's
 * root supervisor, on shard 0, supervises those shard roots (ids "shard0",
 * "shard1", ..., type HY_SUPERVISOR, permanent, shutdown infinity), so the
 * node is one tree:
 *
 *     node root (shard 0, node_flags)
 *       shard0 root (shard 0, shard_flags)   children of shard 0
 *       shard1 root (shard 1, shard_flags)   children of shard 1
 *       ...
 *
 * A shard root that exceeds its restart intensity exits with reason
 * shutdown and the node root restarts it, with fresh children, on its shard
 * (escalation, as in OTP); a node root that exceeds its own intensity ends
 * the application (HY_APP_GAVE_UP).
 *
 * Start order: the start callback, then the shard roots in shard order (each
 * starts its children in order, synchronously), then the main process. A
 * failure at any step stops what was started, in reverse order, and returns
 * HY_APP_START_FAILED.
 *
 * Stop: on SIGINT or SIGTERM, hy_app_stop(), the main process's end, or the
 * node root's own exit. The main process is stopped first (exit shutdown,
 * killed after 5 s), then the node root is sent exit shutdown: it stops the
 * shard roots in reverse start order, each of which stops its children in
 * reverse start order with their shutdown rules. Then the stop callback runs
 * and hy_app_run() returns.
 *
 * Signals: while hy_app_run() runs, the application owns SIGINT and SIGTERM:
 * a handler writes the signal number to a self-pipe that a plain thread
 * watches and forwards to the application's controller process (the runtime's
 * fault handlers for SIGSEGV and friends are untouched). The previous
 * dispositions are restored before hy_app_run() returns. A second signal
 * while the application is stopping is ignored (the stop is already under
 * way); SIGKILL or SIGQUIT remain for a stop that hangs on an infinite
 * shutdown.
 *
 * Reports (report.h): application_report started (info), stopped (notice),
 * exited (error: the root gave up or the main process failed), start_failed
 * (error), on top of the supervisors' own reports.
 *
 * Where this differs from OTP: there is one application per OS process (a
 * node runs one release), its root supervisors are built by the runtime from
 * child-spec lists instead of being started by Module:start/2, and "main"
 * (a process run once the tree is up) is an addition for programs that do
 * their work and stop, like an escript.
 */
#ifndef HY_OTP_APPLICATION_H
#define HY_OTP_APPLICATION_H

#include <stddef.h>

#include "../core/pid.h"
#include "../core/proc.h"
#include "../core/runtime.h"
#include "supervisor.h"

/* How an application ended: hy_app_run()'s return value, usable as the exit
 * status of main(). */
enum hy_app_status {
    /* Stopped in order on request: SIGINT or SIGTERM (result->signal says
     * which), hy_app_stop(), or the main process returned. */
    HY_APP_STOPPED = 0,
    /* The node's root supervisor ended by itself: a shard root was restarted
     * more often than the node root's intensity allows (or someone killed
     * the root). result->reason has its exit reason. */
    HY_APP_GAVE_UP = 1,
    /* Starting failed: the start callback, a shard root or one of its
     * children. result->error has the HY_E* code, result->reason the
     * supervisor's reason ("failed_to_start_child: shard1"). */
    HY_APP_START_FAILED = 2,
    /* The main process ended with a reason other than normal (result->reason);
     * the tree was stopped in order. */
    HY_APP_MAIN_FAILED = 3,
    /* The runtime was stopped under the application (hy_stop() from
     * elsewhere): processes were killed without the orderly stop. */
    HY_APP_HALTED = 4,
    /* hy_app_run() could not run: bad descriptor or configuration, runtime
     * already running (result->error). */
    HY_APP_RUNTIME_FAILED = 5,
};

/* Details of how it ended (hy_app_run's optional out-parameter). */
struct hy_app_result {
    int status;              /* enum hy_app_status, as returned */
    int signal;              /* SIGINT/SIGTERM that stopped it, else 0 */
    int error;               /* HY_E* code for START_FAILED / RUNTIME_FAILED, else 0 */
    struct hy_reason reason; /* GAVE_UP, START_FAILED, MAIN_FAILED: why; else normal */
};

/* An application: filled with designated initialisers (STYLE.md rule 8);
 * NULL or zero fields mean the OTP default. Borrowed by hy_app_run() for its
 * whole duration, with everything it points to. */
struct hy_app {
    /* Name, for reports (NULL: "app"). */
    const char *name;

    /* The children of every shard's root supervisor: the same list on every
     * shard (copied at each start of a shard root). Names registered by
     * these children must differ per shard: use shard_children for that. */
    const struct hy_child_spec *children;
    size_t nchildren;
    /* Or, when not NULL: the list for shard `shard` (*n gets its length;
     * returning NULL with *n = 0 gives the shard a root with no children).
     * Called on shard 0, in the node root, each time shard `shard`'s root
     * (re)starts; the list is borrowed for the call. */
    const struct hy_child_spec *(*shard_children)(unsigned shard, size_t *n, void *arg);

    /* Flags of each shard's root supervisor (zero: one_for_one, at most 1
     * restart in 5 s). HY_SIMPLE_ONE_FOR_ONE makes each shard root a dynamic
     * supervisor whose one child spec is the template. */
    struct hy_sup_flags shard_flags;
    /* Flags of the node's root supervisor over the shard roots (zero:
     * one_for_one, 1 in 5 s). HY_SIMPLE_ONE_FOR_ONE is not allowed. */
    struct hy_sup_flags node_flags;

    /* Runs in the controller process on shard 0 before the tree starts;
     * returns 0 or a negative HY_E* code (start failure). */
    int (*start)(void *arg);
    /* Runs in the controller process after the tree has stopped, whenever
     * start (if any) returned 0 — also after a failed tree start. */
    void (*stop)(void *arg);
    /* A process started on shard 0 once the tree is up, with arg; when it
     * returns the application stops (HY_APP_STOPPED; any other exit reason:
     * HY_APP_MAIN_FAILED). NULL: run until a signal or hy_app_stop(). */
    hy_proc_fn main;

    /* Passed to shard_children, start, stop and main (borrowed). */
    void *arg;
};

/* Starts the runtime with cfg (NULL: hy_config_init's defaults, one shard
 * per CPU) and app's tree, as described above; returns when the application
 * has ended and the runtime has stopped, with an enum hy_app_status, and
 * fills *result (may be NULL). app is borrowed for the call.
 * Context: the main thread of the program (not a shard, not a process),
 * once at a time; like hy_run(), shard 0 runs on the calling thread. */
int hy_app_run(const struct hy_app *app, const struct hy_config *cfg, struct hy_app_result *result);

/* Asks the running application to stop in order (HY_APP_STOPPED with
 * signal 0); returns at once. Errors: HY_ENOTSTARTED (no application runs).
 * Context: anywhere, signal-safe. */
int hy_app_stop(void);

/* The node's root supervisor. Errors: HY_ENOTSTARTED (no application, or
 * its tree is not up (yet, or any more)). Context: anywhere. */
int hy_app_root(hy_pid *out);

#endif /* HY_OTP_APPLICATION_H */
