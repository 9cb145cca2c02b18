/* Supervisor: OTP's supervisor behaviour.
 *
 * A supervisor is a process (a GenServer that traps exits) that starts its
 * children in order, links to them — also across shards — and restarts them
 * according to its strategy when they end:
 *  - HY_ONE_FOR_ONE: only the child that ended is restarted;
 *  - HY_ONE_FOR_ALL: every other child is stopped (reverse start order), then
 *    all are restarted in start order;
 *  - HY_REST_FOR_ONE: the children started after it are stopped (reverse
 *    order), then it and they are restarted in order;
 *  - HY_SIMPLE_ONE_FOR_ONE: one child spec is a template; children are added
 *    with hy_supervisor_start_dynamic() (OTP's simple_one_for_one, Elixir's
 *    DynamicSupervisor) and restarted one for one.
 * Restart types (OTP meanings): permanent always; transient unless the reason
 * is normal or shutdown; temporary never (its spec is removed when it ends).
 * Intensity: more than `intensity` restarts within `period_s` seconds make the
 * supervisor stop all children (reverse order) and exit with reason
 * shutdown, which its own supervisor sees. The bookkeeping is a ring of the
 * restart times within the last period: O(1) per restart (OTP walks a
 * list), and its memory follows the restarts that happen (8 bytes each, at
 * most `intensity`), not the intensity configured.
 * Children are started in order; if one fails to start, the ones already
 * started are stopped in reverse order and the supervisor's start fails with
 * HY_ESTOPPED and reason user(…, "failed_to_start_child: <id>").
 * Shutdown of a child: HY_SHUTDOWN_BRUTAL_KILL (exit kill), a timeout (exit
 * shutdown, then kill when it expires), or HY_SHUTDOWN_INFINITY.
 * auto_shutdown (OTP 24): HY_AUTO_NEVER; HY_AUTO_ANY_SIGNIFICANT: the
 * supervisor shuts down when a significant child ends by itself and is not
 * restarted; HY_AUTO_ALL_SIGNIFICANT: when all significant children have.
 * Significant children must be transient or temporary, and are only
 * valid when auto_shutdown is not HY_AUTO_NEVER (OTP rejects them then);
 * a simple supervisor's auto_shutdown must be HY_AUTO_NEVER (OTP 27).
 * Temporary children stopped by their supervisor (one_for_all /
 * rest_for_one restarts, terminate_child) are not restarted and their
 * specs are removed (OTP).
 * Reports (who ended, why, what was done; a supervisor giving up; start and
 * shutdown errors) are OTP's supervisor reports, emitted with hy_report()
 * (report.h): child_terminated, reached_max_restart_intensity, start_error,
 * shutdown_error, and a progress report for every child started.
 * Names: hy_supervisor_* is the module's canonical prefix for functions;
 * hy_sup_start_gen_server, the one function first named hy_sup_*, stays as
 * an alias. The types (struct hy_sup_flags, struct hy_sup_opts, ...) keep
 * their short names.
 */
#ifndef HY_OTP_SUPERVISOR_H
#define HY_OTP_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gen_server.h"
#include "../core/pid.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hy_sup_strategy {
    HY_ONE_FOR_ONE = 0,
    HY_ONE_FOR_ALL,
    HY_REST_FOR_ONE,
    HY_SIMPLE_ONE_FOR_ONE,
};

enum hy_restart {
    HY_PERMANENT = 0,
    HY_TRANSIENT,
    HY_TEMPORARY,
};

enum hy_child_type {
    HY_WORKER = 0,
    HY_SUPERVISOR,
};

enum hy_auto_shutdown {
    HY_AUTO_NEVER = 0,
    HY_AUTO_ANY_SIGNIFICANT,
    HY_AUTO_ALL_SIGNIFICANT,
};

#define HY_SHUTDOWN_DEFAULT 0          /* 5 s for a worker, infinity for a supervisor */
#define HY_SHUTDOWN_BRUTAL_KILL (-2)
#define HY_SHUTDOWN_INFINITY (-1)

#define HY_CHILD_ID_MAX 64
#define HY_CHILD_START_NAME_MAX 64 /* bytes of a start_name, with its NUL */

/* Starts a child linked to the calling process (the supervisor) and writes
 * its pid. arg is the spec's argument (for HY_SIMPLE_ONE_FOR_ONE: the
 * argument given to hy_supervisor_start_dynamic). Returns 0, HY_EIGNORED
 * (nothing started; the spec is kept with no pid), or a negative error.
 * Typically wraps hy_gen_server_start_link or hy_supervisor_start_link,
 * both of which take arg as const void *, so it passes on without a cast.
 * arg is borrowed for the call (the supervisor keeps the copy). */
typedef int (*hy_child_start_fn)(const void *arg, size_t arg_size, hy_pid *pid);

struct hy_child_spec {
    const char *id;          /* unique among the supervisor's children (copied) */
    hy_child_start_fn start;
    const void *arg;         /* copied (arg_size bytes) into the supervisor */
    size_t arg_size;
    int restart;             /* enum hy_restart */
    int64_t shutdown_ns;     /* HY_SHUTDOWN_* or a timeout in ns */
    int type;                /* enum hy_child_type */
    bool significant;
    /* The name of a start function registered with
     * hy_supervisor_register_start() on the supervisor's node (copied), or
     * NULL. When set, the supervisor's node resolves it and `start` is not
     * used (it may be NULL); it is the only way to give a supervisor of
     * another node a child, since a function address never crosses nodes. */
    const char *start_name;
};

struct hy_sup_flags {
    int strategy;            /* enum hy_sup_strategy */
    /* Max restarts in period (OTP's intensity): 0 allows none, so the first
     * child exit that calls for a restart makes the supervisor give up. A
     * negative value is taken as 0. Start from HY_SUP_FLAGS_INIT for OTP's
     * defaults (1 restart in 5 s). */
    int intensity;
    unsigned period_s;       /* seconds; 0 = the default 5 */
    int auto_shutdown;       /* enum hy_auto_shutdown */
};

/* OTP's default flags: one_for_one, at most 1 restart in 5 seconds. */
#define HY_SUP_FLAGS_INIT {.strategy = HY_ONE_FOR_ONE, .intensity = 1, .period_s = 5}

struct hy_sup_opts {
    const char *name;        /* register the supervisor (NULL: no name) */
    int shard;               /* shard to run on (-1: the caller's) */
};

#define HY_SUP_OPTS_INIT {.shard = -1}

/* Starts a supervisor linked to the caller, with children (copied; for
 * HY_SIMPLE_ONE_FOR_ONE exactly one template spec, no child started).
 * Errors: HY_EINVAL (bad flags or specs: duplicate id, significant
 * permanent child, significant child with HY_AUTO_NEVER, auto_shutdown on a
 * simple supervisor, ...), HY_ESTOPPED (a child failed to start: *why),
 * HY_EEXIST (name taken), HY_ENOMEM, HY_ENOTPROC. Context: a process. */
int hy_supervisor_start_link(const struct hy_sup_flags *flags, const struct hy_child_spec *children,
                             size_t nchildren, const struct hy_sup_opts *opts, hy_pid *out,
                             struct hy_reason *why);

/* Adds and starts a child (not for simple supervisors). The supervisor may
 * be on another node: then the spec must name its start with start_name
 * (registered there with hy_supervisor_register_start()); the name, the
 * argument bytes and the other fields are sent, never the start address.
 * Errors: HY_EEXIST (id in use: *pid gets the running child's pid),
 * HY_EIGNORED, HY_ESTOPPED (start failed), HY_EINVAL (bad spec),
 * HY_ESRCH (start_name not registered on the supervisor's node),
 * HY_ENOPROC (no such supervisor), HY_ENOTSUP (a supervisor of another
 * node and no start_name: refused before sending, with a log line; a
 * supervisor also refuses, logs and counts such a spec from another node,
 * see hy_supervisor_refused_specs()). Context: a process. */
int hy_supervisor_start_child(hy_pid sup, const struct hy_child_spec *spec, hy_pid *pid);

/* Registers start under name, for child specs that name it (start_name):
 * the only starts a supervisor accepts from another node. Register the same
 * names on every node whose supervisors get children from other nodes
 * (OTP names a child's start by module and function). Names are kept for
 * the life of the program (at most 256). name is copied. Errors: HY_EINVAL
 * (NULL or empty name, name of HY_CHILD_START_NAME_MAX bytes or more, NULL
 * start), HY_EEXIST (name taken), HY_ENOSPC (table full). Context: any
 * thread, before or while the runtime runs. */
int hy_supervisor_register_start(const char *name, hy_child_start_fn start);

/* How many child specs this node's supervisors refused from other nodes
 * (malformed, with no start_name, or naming a start not registered here);
 * each is also logged at warning level naming the field. Context: any
 * thread. */
uint64_t hy_supervisor_refused_specs(void);

/* Simple supervisors: starts a child from the template with arg (copied).
 * Errors: HY_EINVAL (not a simple supervisor), HY_EIGNORED, HY_ESTOPPED. */
int hy_supervisor_start_dynamic(hy_pid sup, const void *arg, size_t arg_size, hy_pid *pid);

/* Stops a child by id (static children: the spec stays, with no pid), or
 * by pid (pid != NONE; simple supervisors: the child is removed).
 * Errors: HY_ENOENT (no such child), HY_ENOPROC (no such supervisor). */
int hy_supervisor_terminate_child(hy_pid sup, const char *id, hy_pid pid);

/* Restarts a stopped static child. Errors: HY_ENOENT, HY_EALREADY (running),
 * HY_ESTOPPED, HY_EIGNORED. */
int hy_supervisor_restart_child(hy_pid sup, const char *id, hy_pid *pid);

/* Deletes a stopped static child's spec. Errors: HY_ENOENT, HY_EBUSY (running). */
int hy_supervisor_delete_child(hy_pid sup, const char *id);

struct hy_child_info {
    char id[HY_CHILD_ID_MAX];  /* "" for dynamic children */
    hy_pid pid;                /* HY_PID_NONE when not running */
    int type;                  /* enum hy_child_type */
};

/* Copies up to max children (in start order) into out; *count gets how many
 * there are. Errors: HY_ENOPROC, HY_EINVAL. */
int hy_supervisor_which_children(hy_pid sup, struct hy_child_info *out, size_t max, size_t *count);

struct hy_child_counts {
    size_t specs, active, supervisors, workers;
};

/* OTP's count_children. Errors: HY_ENOPROC. */
int hy_supervisor_count_children(hy_pid sup, struct hy_child_counts *out);

/* A ready-made start function for GenServer children: the spec's arg is a
 * struct hy_sup_gs_child (copied with the spec); init receives
 * init_arg (borrowed from the supervisor's copy of the spec, so it must
 * point to static storage or be NULL). */
struct hy_sup_gs_child {
    const struct hy_gen_server_ops *ops;
    char name[HY_NAME_MAX];  /* register the child ("" = no name) */
    int shard;               /* -1: the supervisor's shard */
    const void *init_arg;
};
int hy_supervisor_start_gen_server(const void *arg, size_t arg_size, hy_pid *pid);
/* The older name of hy_supervisor_start_gen_server (an alias). */
int hy_sup_start_gen_server(const void *arg, size_t arg_size, hy_pid *pid);

#ifdef __cplusplus
}
#endif

#endif /* HY_OTP_SUPERVISOR_H */
