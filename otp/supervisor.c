/* Supervisor: a GenServer that traps exits and restarts its children. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"
#include "report.h"
#include "supervisor.h"

enum {
    SUP_START_CHILD = 1,
    SUP_START_DYNAMIC,
    SUP_TERMINATE,
    SUP_RESTART,
    SUP_DELETE,
    SUP_WHICH,
    SUP_COUNT,
    SUP_REPLY,
};

/* A child spec flattened into bytes (travels in messages, lives in the
 * supervisor). */
struct flat_spec {
    char id[HY_CHILD_ID_MAX];
    hy_child_start_fn start;
    size_t arg_size;
    int restart;
    int64_t shutdown_ns;
    int type;
    bool significant;
    /* the registered start function's name ("" = none): the only start a
     * supervisor takes from another node, where `start` means nothing */
    char start_name[HY_CHILD_START_NAME_MAX];
    unsigned char arg[] __attribute__((aligned(16)));
};

struct child {
    struct child *prev, *next; /* start order */
    char id[HY_CHILD_ID_MAX];
    hy_child_start_fn start;
    void *arg;
    size_t arg_size;
    int restart;
    int64_t shutdown_ns;
    int type;
    bool significant;
    bool dynamic;
    hy_pid pid; /* HY_PID_NONE when not running */
};

struct pidmap_ent {
    hy_pid pid;
    struct child *c;
};

struct sup {
    struct hy_sup_flags flags;
    struct child *head, *tail;
    size_t nchildren;
    struct child tmpl; /* simple_one_for_one template */
    /* open-addressing map pid -> child, for O(1) lookups with many children */
    struct pidmap_ent *map;
    size_t map_cap, map_used;
    /* ring of the restart times within the last period (at most
     * `intensity` of them), grown as restarts come: its size follows the
     * restarts that happen, not the configured intensity */
    uint64_t *rtimes;
    unsigned rt_head, rt_count, rt_cap;
};

/* ---- pid map ------------------------------------------------------------------ */

static size_t pid_hash(hy_pid p)
{
    uint64_t x = (p.lo ^ (p.hi * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return (size_t)(x >> 17);
}

static bool map_grow(struct sup *s)
{
    size_t ncap = s->map_cap ? s->map_cap * 2 : 16;
    struct pidmap_ent *n = calloc(ncap, sizeof(*n));
    if (!n)
        return false;
    for (size_t i = 0; i < s->map_cap; i++) {
        if (!s->map[i].c)
            continue;
        size_t h = pid_hash(s->map[i].pid) & (ncap - 1);
        while (n[h].c)
            h = (h + 1) & (ncap - 1);
        n[h] = s->map[i];
    }
    free(s->map);
    s->map = n;
    s->map_cap = ncap;
    return true;
}

static void map_put(struct sup *s, hy_pid pid, struct child *c)
{
    if ((s->map_used + 1) * 2 > s->map_cap && !map_grow(s))
        return;
    size_t h = pid_hash(pid) & (s->map_cap - 1);
    while (s->map[h].c)
        h = (h + 1) & (s->map_cap - 1);
    s->map[h].pid = pid;
    s->map[h].c = c;
    s->map_used++;
}

static struct child *map_get(struct sup *s, hy_pid pid)
{
    if (!s->map_cap)
        return NULL;
    size_t h = pid_hash(pid) & (s->map_cap - 1);
    while (s->map[h].c) {
        if (hy_pid_eq(s->map[h].pid, pid))
            return s->map[h].c;
        h = (h + 1) & (s->map_cap - 1);
    }
    return NULL;
}

static void map_del(struct sup *s, hy_pid pid)
{
    if (!s->map_cap)
        return;
    size_t mask = s->map_cap - 1;
    size_t h = pid_hash(pid) & mask;
    while (s->map[h].c && !hy_pid_eq(s->map[h].pid, pid))
        h = (h + 1) & mask;
    if (!s->map[h].c)
        return;
    /* backward-shift deletion keeps probe chains intact */
    size_t i = h;
    for (;;) {
        s->map[i].c = NULL;
        size_t j = i;
        for (;;) {
            j = (j + 1) & mask;
            if (!s->map[j].c) {
                s->map_used--;
                return;
            }
            size_t k = pid_hash(s->map[j].pid) & mask;
            if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j)))
                break;
        }
        s->map[i] = s->map[j];
        i = j;
    }
}

/* ---- registered start functions -------------------------------------------------- */

#define MAX_STARTS 256

struct start_ent {
    char name[HY_CHILD_START_NAME_MAX];
    hy_child_start_fn fn;
};

/* Append-only: an entry is written before the count that publishes it. */
static struct start_ent starts[MAX_STARTS];
static _Atomic size_t nstarts;
static pthread_mutex_t starts_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t refused_specs;

static hy_child_start_fn find_start(const char *name)
{
    size_t n = atomic_load_explicit(&nstarts, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(starts[i].name, name) == 0)
            return starts[i].fn;
    return NULL;
}

int hy_supervisor_register_start(const char *name, hy_child_start_fn start)
{
    if (!name || !*name || strlen(name) >= HY_CHILD_START_NAME_MAX || !start)
        return HY_EINVAL;
    pthread_mutex_lock(&starts_lock);
    int rc = 0;
    size_t n = atomic_load_explicit(&nstarts, memory_order_relaxed);
    if (find_start(name))
        rc = HY_EEXIST;
    else if (n == MAX_STARTS)
        rc = HY_ENOSPC;
    if (rc == 0) {
        strcpy(starts[n].name, name);
        starts[n].fn = start;
        atomic_store_explicit(&nstarts, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&starts_lock);
    return rc;
}

uint64_t hy_supervisor_refused_specs(void)
{
    return atomic_load_explicit(&refused_specs, memory_order_relaxed);
}

/* A spec from another node refused: logged (naming the field) and counted. */
static void refuse_remote(hy_pid from, const char *field, const char *why)
{
    atomic_fetch_add_explicit(&refused_specs, 1, memory_order_relaxed);
    hy_log(HY_LOG_WARNING, "supervisor: start_child from node %u refused: %s %s",
           hy_pid_node(from), field, why);
}

/* ---- children ------------------------------------------------------------------- */

/* Checks a flattened spec of avail bytes (it may come from another node:
 * every field is checked). Returns 0 or HY_EINVAL. */
static int flat_check(const struct flat_spec *f, size_t avail)
{
    if (avail < sizeof(*f) || f->arg_size > avail - sizeof(*f))
        return HY_EINVAL;
    unsigned char sig; /* a bool's byte from another node may be anything */
    memcpy(&sig, &f->significant, 1);
    if (sig > 1)
        return HY_EINVAL;
    if (!memchr(f->id, '\0', sizeof(f->id)) || !f->id[0] ||
        !memchr(f->start_name, '\0', sizeof(f->start_name)))
        return HY_EINVAL;
    if (f->restart < HY_PERMANENT || f->restart > HY_TEMPORARY ||
        (f->type != HY_WORKER && f->type != HY_SUPERVISOR) ||
        f->shutdown_ns < HY_SHUTDOWN_BRUTAL_KILL || (f->significant && f->restart == HY_PERMANENT))
        return HY_EINVAL;
    return 0;
}

/* Builds a child from a spec checked by flat_check (avail: its bytes). A
 * named start is resolved here, on the supervisor's node. Returns NULL with
 * *rc set: HY_EINVAL, HY_ESRCH (name not registered here), HY_ENOMEM. */
static struct child *child_from_flat(const struct flat_spec *f, size_t avail, bool dynamic,
                                     int *rc)
{
    *rc = flat_check(f, avail);
    if (*rc)
        return NULL;
    hy_child_start_fn start = f->start;
    if (f->start_name[0]) {
        start = find_start(f->start_name);
        if (!start) {
            *rc = HY_ESRCH;
            return NULL;
        }
    }
    if (!start) {
        *rc = HY_EINVAL;
        return NULL;
    }
    *rc = HY_ENOMEM;
    struct child *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    memcpy(c->id, f->id, HY_CHILD_ID_MAX);
    c->start = start;
    c->arg_size = f->arg_size;
    if (f->arg_size) {
        c->arg = malloc(f->arg_size);
        if (!c->arg) {
            free(c);
            return NULL;
        }
        memcpy(c->arg, f->arg, f->arg_size);
    }
    c->restart = f->restart;
    c->shutdown_ns = f->shutdown_ns;
    c->type = f->type;
    c->significant = f->significant;
    c->dynamic = dynamic;
    if (c->shutdown_ns == HY_SHUTDOWN_DEFAULT)
        c->shutdown_ns = c->type == HY_SUPERVISOR ? HY_SHUTDOWN_INFINITY : 5000000000LL;
    *rc = 0;
    return c;
}

static void child_free(struct child *c)
{
    free(c->arg);
    free(c);
}

static void list_append(struct sup *s, struct child *c)
{
    c->next = NULL;
    c->prev = s->tail;
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->nchildren++;
}

static void list_remove(struct sup *s, struct child *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        s->tail = c->prev;
    s->nchildren--;
}

static struct child *find_id(struct sup *s, const char *id)
{
    for (struct child *c = s->head; c; c = c->next)
        if (!c->dynamic && strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

/* A supervisor_report (or progress_report) about child c (report.h). */
static void sup_report(int type, enum hy_log_level level, const char *context,
                       const struct child *c, hy_pid pid, const struct hy_reason *reason,
                       int error, const char *action)
{
    if (!hy_report_enabled())
        return;
    struct hy_report r = {
        .type = type,
        .level = level,
        .context = context,
        .who = hy_self(),
        .child_id = c->id[0] ? c->id : NULL,
        .child = pid,
        .reason = reason,
        .error = error,
        .action = action,
    };
    hy_report(&r);
}

static int start_child_proc(struct sup *s, struct child *c)
{
    hy_pid pid = HY_PID_NONE;
    const void *arg = c->arg;
    size_t arg_size = c->arg_size;
    int rc = c->start(arg, arg_size, &pid);
    if (rc == 0) {
        c->pid = pid;
        map_put(s, pid, c);
        sup_report(HY_REPORT_PROGRESS, HY_LOG_INFO, "started", c, pid, NULL, 0, NULL);
    } else {
        c->pid = HY_PID_NONE;
    }
    return rc;
}

static int is_exit_from(const struct hy_msg *m, void *arg)
{
    return m->tag == HY_TAG_EXIT && m->size == sizeof(struct hy_exit_info) &&
           hy_pid_eq(((const struct hy_exit_info *)m->data)->from, *(const hy_pid *)arg);
}

/* Waits for the DOWN of mref, or (no monitor) for pid's EXIT. */
static int wait_gone(hy_pid pid, bool mon, hy_ref mref, int64_t timeout_ns, struct hy_msg **m)
{
    if (mon)
        return hy_recv_ref(mref, m, timeout_ns);
    return hy_recv_match(is_exit_from, &pid, m, timeout_ns);
}

/* Stops one child by its shutdown rule and waits until it is gone. */
static void shutdown_child(struct sup *s, struct child *c)
{
    hy_pid pid = c->pid;
    if (hy_pid_is_none(pid))
        return;
    map_del(s, pid);
    c->pid = HY_PID_NONE;
    hy_ref mref;
    /* Without a monitor (out of memory) the child is still stopped: the
     * link's EXIT (the supervisor traps exits) says when it is gone. */
    bool mon = hy_monitor(pid, &mref) == 0;
    struct hy_msg *m = NULL;
    if (c->shutdown_ns == HY_SHUTDOWN_BRUTAL_KILL) {
        hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL));
        wait_gone(pid, mon, mref, HY_INFINITY, &m);
    } else {
        hy_exit_pid(pid, hy_reason_make(HY_REASON_SHUTDOWN));
        int64_t to = c->shutdown_ns == HY_SHUTDOWN_INFINITY ? HY_INFINITY : c->shutdown_ns;
        if (wait_gone(pid, mon, mref, to, &m) == HY_ETIMEDOUT) {
            sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "shutdown_error", c, pid, NULL,
                       HY_ETIMEDOUT, "kill");
            hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL));
            wait_gone(pid, mon, mref, HY_INFINITY, &m);
        }
    }
    hy_msg_free(m);
    /* its EXIT (link) came before the DOWN in the same FIFO: drop it */
    while (hy_recv_match(is_exit_from, &pid, &m, 0) == 0)
        hy_msg_free(m);
}

/* Stops children from the tail back to (and including) `from`. */
static void shutdown_from(struct sup *s, struct child *from)
{
    for (struct child *c = s->tail, *prev; c; c = prev) {
        prev = c->prev;
        bool last = c == from;
        shutdown_child(s, c);
        /* a temporary child stopped by its supervisor is never restarted:
         * its spec goes (OTP's terminate_children) */
        if (c->restart == HY_TEMPORARY) {
            list_remove(s, c);
            child_free(c);
        }
        if (last)
            break;
    }
}

static void shutdown_all(struct sup *s)
{
    if (s->head)
        shutdown_from(s, s->head);
}

/* Doubles the restart ring (at least 8 entries, at most `intensity`),
 * keeping its order; false when out of memory. */
static bool grow_restarts(struct sup *s)
{
    unsigned cap = s->rt_cap ? s->rt_cap * 2 : 8;
    if (cap > (unsigned)s->flags.intensity || cap < s->rt_cap)
        cap = (unsigned)s->flags.intensity;
    uint64_t *n = malloc((size_t)cap * sizeof(*n));
    if (!n)
        return false;
    for (unsigned i = 0; i < s->rt_count; i++)
        n[i] = s->rtimes[(s->rt_head + i) % s->rt_cap];
    free(s->rtimes);
    s->rtimes = n;
    s->rt_head = 0;
    s->rt_cap = cap;
    return true;
}

/* Records a restart; false when it is one too many within the period. */
static bool add_restart(struct sup *s)
{
    int intensity = s->flags.intensity;
    if (intensity <= 0)
        return false;
    uint64_t now = hy_now_ns();
    uint64_t period = (uint64_t)s->flags.period_s * 1000000000ull;
    /* the restarts older than the period no longer count */
    while (s->rt_count && now - s->rtimes[s->rt_head] >= period) {
        s->rt_head = (s->rt_head + 1) % s->rt_cap;
        s->rt_count--;
    }
    if (s->rt_count >= (unsigned)intensity)
        return false;
    if (s->rt_count == s->rt_cap && !grow_restarts(s)) {
        hy_log(HY_LOG_ERROR, "supervisor: no memory for its restart history (intensity %d)",
               intensity);
        return false;
    }
    s->rtimes[(s->rt_head + s->rt_count) % s->rt_cap] = now;
    s->rt_count++;
    return true;
}

static bool reason_is_normalish(const struct hy_reason *r)
{
    return r->kind == HY_REASON_NORMAL || r->kind == HY_REASON_SHUTDOWN;
}

/* Starts c and the children after it (rest) in order; retries counting
 * intensity; false when the supervisor must give up. */
static bool restart_range(struct sup *s, struct child *first, bool rest)
{
    for (struct child *c = first; c; c = rest ? c->next : NULL) {
        for (;;) {
            int rc = start_child_proc(s, c);
            if (rc == 0 || rc == HY_EIGNORED)
                break;
            bool again = add_restart(s);
            sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "start_error", c, HY_PID_NONE, NULL, rc,
                       again ? "restart" : "shutdown");
            if (!again) {
                sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "reached_max_restart_intensity", c,
                           HY_PID_NONE, NULL, rc, "shutdown");
                return false;
            }
        }
        if (!rest)
            break;
    }
    return true;
}

static bool significant_alive(struct sup *s)
{
    for (struct child *c = s->head; c; c = c->next)
        if (c->significant && !hy_pid_is_none(c->pid))
            return true;
    return false;
}

/* A child ended. Returns HY_GS_STOP when the supervisor must shut down. */
static int child_exited(struct hy_gs *gs, struct sup *s, hy_pid pid, struct hy_reason reason)
{
    struct child *c = map_get(s, pid);
    if (!c)
        return HY_GS_OK;
    map_del(s, pid);
    c->pid = HY_PID_NONE;
    bool abnormal = !reason_is_normalish(&reason);
    bool restart = c->restart == HY_PERMANENT || (c->restart == HY_TRANSIENT && abnormal);
    if (!restart) {
        bool significant = c->significant;
        bool remove = c->restart == HY_TEMPORARY || c->dynamic;
        if (abnormal)
            sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "child_terminated", c, pid, &reason, 0,
                       remove ? "remove" : "none");
        if (remove) {
            list_remove(s, c);
            child_free(c);
        }
        if (significant && s->flags.auto_shutdown == HY_AUTO_ANY_SIGNIFICANT) {
            hy_gen_server_stop_reason(gs, hy_reason_make(HY_REASON_SHUTDOWN));
            return HY_GS_STOP;
        }
        if (significant && s->flags.auto_shutdown == HY_AUTO_ALL_SIGNIFICANT &&
            !significant_alive(s)) {
            hy_gen_server_stop_reason(gs, hy_reason_make(HY_REASON_SHUTDOWN));
            return HY_GS_STOP;
        }
        return HY_GS_OK;
    }
    /* OTP reports a permanent child's end whatever the reason */
    enum hy_log_level level = abnormal ? HY_LOG_ERROR : HY_LOG_NOTICE;
    if (!add_restart(s)) {
        sup_report(HY_REPORT_SUPERVISOR, level, "child_terminated", c, pid, &reason, 0,
                   "shutdown");
        sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "reached_max_restart_intensity", c, pid,
                   &reason, 0, "shutdown");
        hy_gen_server_stop_reason(gs, hy_reason_make(HY_REASON_SHUTDOWN));
        return HY_GS_STOP;
    }
    sup_report(HY_REPORT_SUPERVISOR, level, "child_terminated", c, pid, &reason, 0, "restart");
    bool ok;
    switch (s->flags.strategy) {
    case HY_ONE_FOR_ALL:
        shutdown_all(s);
        ok = restart_range(s, s->head, true);
        break;
    case HY_REST_FOR_ONE:
        if (c->next)
            shutdown_from(s, c->next);
        ok = restart_range(s, c, true);
        break;
    default:
        ok = restart_range(s, c, false);
        break;
    }
    if (!ok) {
        hy_gen_server_stop_reason(gs, hy_reason_make(HY_REASON_SHUTDOWN));
        return HY_GS_STOP;
    }
    return HY_GS_OK;
}

/* ---- the GenServer callbacks ---------------------------------------------------------- */

struct sup_init {
    struct hy_sup_flags flags;
    size_t nchildren;
    size_t bytes;
    unsigned char specs[] __attribute__((aligned(16))); /* flat specs, 16-aligned */
};

static size_t flat_size(size_t arg_size)
{
    return (sizeof(struct flat_spec) + arg_size + 15) & ~(size_t)15;
}

static void sup_terminate(struct hy_gs *gs, const struct hy_reason *reason);

/* Frees the state when the process ends, however it ends: a supervisor
 * killed (kill, or hy_stop()) never runs terminate. */
static void sup_free(void *arg)
{
    struct sup *s = arg;
    while (s->head) {
        struct child *c = s->head;
        list_remove(s, c);
        child_free(c);
    }
    free(s->tmpl.arg);
    free(s->map);
    free(s->rtimes);
    free(s);
}

static int sup_init(struct hy_gs *gs, void *arg)
{
    const struct sup_init *si = arg;
    hy_trap_exit(true, NULL);
    struct sup *s = calloc(1, sizeof(*s));
    if (!s || hy_on_exit(sup_free, s) != 0) {
        free(s);
        hy_gen_server_stop_reason(gs, hy_reason_user(0, "out of memory"));
        return HY_GS_STOP;
    }
    s->flags = si->flags;
    hy_gen_server_set_state(gs, s);
    size_t off = 0;
    for (size_t i = 0; i < si->nchildren; i++) {
        const struct flat_spec *f = (const struct flat_spec *)(si->specs + off);
        size_t avail = si->bytes - off;
        off += flat_size(f->arg_size);
        int crc;
        if (s->flags.strategy == HY_SIMPLE_ONE_FOR_ONE) {
            struct child *t = child_from_flat(f, avail, true, &crc);
            if (!t) {
                hy_gen_server_stop_reason(gs, hy_reason_user(crc, crc == HY_ESRCH ? "start_name not registered"
                                                                   : "out of memory"));
                return HY_GS_STOP;
            }
            s->tmpl = *t;
            free(t);
            continue;
        }
        struct child *c = child_from_flat(f, avail, false, &crc);
        if (!c) {
            hy_gen_server_stop_reason(gs, hy_reason_user(crc, crc == HY_ESRCH ? "start_name not registered"
                                                               : "out of memory"));
            sup_terminate(gs, NULL);
            return HY_GS_STOP;
        }
        list_append(s, c);
        int rc = start_child_proc(s, c);
        if (rc != 0 && rc != HY_EIGNORED) {
            char text[HY_REASON_TEXT_MAX];
            snprintf(text, sizeof(text), "failed_to_start_child: %.24s", c->id);
            sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "start_error", c, HY_PID_NONE, NULL, rc,
                       "shutdown");
            hy_gen_server_stop_reason(gs, hy_reason_user(rc, text));
            /* a GenServer whose init stops is not terminated (OTP): stop the
             * children already started, in reverse order, before the start
             * fails */
            sup_terminate(gs, NULL);
            return HY_GS_STOP;
        }
    }
    return HY_GS_OK;
}

static void sup_terminate(struct hy_gs *gs, const struct hy_reason *reason)
{
    (void)reason;
    struct sup *s = hy_gen_server_state(gs);
    if (s)
        shutdown_all(s); /* the memory goes with the process: sup_free */
}

static int sup_info(struct hy_gs *gs, const struct hy_msg *m)
{
    struct sup *s = hy_gen_server_state(gs);
    if (m->tag == HY_TAG_EXIT && m->size == sizeof(struct hy_exit_info)) {
        struct hy_exit_info e;
        memcpy(&e, m->data, sizeof(e));
        return child_exited(gs, s, e.from, e.reason);
    }
    return HY_GS_OK; /* stray messages are ignored */
}

struct id_pid {
    char id[HY_CHILD_ID_MAX];
    hy_pid pid;
};

struct reply_rc {
    int rc;
    hy_pid pid;
};

static void reply_rc(hy_gs_from from, int rc, hy_pid pid)
{
    struct reply_rc r = {rc, pid};
    hy_gen_server_reply(from, SUP_REPLY, &r, sizeof(r));
}

static int sup_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    struct sup *s = hy_gen_server_state(gs);
    switch (tag) {
    case SUP_START_CHILD: {
        const struct flat_spec *f = data;
        bool remote = hy_pid_node(from.pid) != hy_node_id();
        if (len < sizeof(*f) || flat_check(f, len) != 0) {
            if (remote)
                refuse_remote(from.pid, "child spec", "malformed (arg_size, id, restart, type "
                                                      "or shutdown_ns)");
            reply_rc(from, HY_EINVAL, HY_PID_NONE);
            break;
        }
        if (remote && !f->start_name[0]) {
            /* a start function's address means nothing (or anything) here:
             * never jumped to on another node's word */
            refuse_remote(from.pid, "start_name", "empty (a function address never crosses "
                                                  "nodes: name a registered start)");
            reply_rc(from, HY_ENOTSUP, HY_PID_NONE);
            break;
        }
        if (s->flags.strategy == HY_SIMPLE_ONE_FOR_ONE ||
            (f->significant && s->flags.auto_shutdown == HY_AUTO_NEVER)) {
            reply_rc(from, HY_EINVAL, HY_PID_NONE);
            break;
        }
        struct child *old = find_id(s, f->id);
        if (old) {
            reply_rc(from, HY_EEXIST, old->pid);
            break;
        }
        int crc;
        struct child *c = child_from_flat(f, len, false, &crc);
        if (!c) {
            if (crc == HY_ESRCH && remote)
                refuse_remote(from.pid, "start_name", "not registered on this node");
            else if (crc == HY_ESRCH)
                hy_log(HY_LOG_WARNING, "supervisor: start_child: start_name '%s' not registered",
                       f->start_name);
            reply_rc(from, crc, HY_PID_NONE);
            break;
        }
        list_append(s, c);
        int rc = start_child_proc(s, c);
        if (rc != 0 && rc != HY_EIGNORED) {
            sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "start_error", c, HY_PID_NONE, NULL, rc,
                       "none");
            list_remove(s, c);
            child_free(c);
            rc = HY_ESTOPPED;
        }
        reply_rc(from, rc, c && rc == 0 ? c->pid : HY_PID_NONE);
        break;
    }
    case SUP_START_DYNAMIC: {
        if (s->flags.strategy != HY_SIMPLE_ONE_FOR_ONE) {
            reply_rc(from, HY_EINVAL, HY_PID_NONE);
            break;
        }
        struct child *c = calloc(1, sizeof(*c));
        if (!c) {
            reply_rc(from, HY_ENOMEM, HY_PID_NONE);
            break;
        }
        *c = s->tmpl;
        c->arg = NULL;
        c->arg_size = len;
        if (len) {
            c->arg = malloc(len);
            if (!c->arg) {
                free(c);
                reply_rc(from, HY_ENOMEM, HY_PID_NONE);
                break;
            }
            memcpy(c->arg, data, len);
        }
        int rc = start_child_proc(s, c);
        if (rc != 0) {
            if (rc != HY_EIGNORED)
                sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "start_error", c, HY_PID_NONE, NULL,
                           rc, "none");
            child_free(c);
            reply_rc(from, rc == HY_EIGNORED ? rc : HY_ESTOPPED, HY_PID_NONE);
            break;
        }
        list_append(s, c);
        reply_rc(from, 0, c->pid);
        break;
    }
    case SUP_TERMINATE: {
        const struct id_pid *ip = data;
        struct child *c = hy_pid_is_none(ip->pid) ? find_id(s, ip->id) : map_get(s, ip->pid);
        if (!c) {
            reply_rc(from, HY_ENOENT, HY_PID_NONE);
            break;
        }
        shutdown_child(s, c);
        if (c->dynamic || c->restart == HY_TEMPORARY) {
            list_remove(s, c);
            child_free(c);
        }
        reply_rc(from, 0, HY_PID_NONE);
        break;
    }
    case SUP_RESTART: {
        const struct id_pid *ip = data;
        struct child *c = find_id(s, ip->id);
        if (!c) {
            reply_rc(from, HY_ENOENT, HY_PID_NONE);
        } else if (!hy_pid_is_none(c->pid)) {
            reply_rc(from, HY_EALREADY, c->pid);
        } else {
            int rc = start_child_proc(s, c);
            if (rc != 0 && rc != HY_EIGNORED)
                sup_report(HY_REPORT_SUPERVISOR, HY_LOG_ERROR, "start_error", c, HY_PID_NONE, NULL,
                           rc, "none");
            reply_rc(from, rc == 0 || rc == HY_EIGNORED ? rc : HY_ESTOPPED, c->pid);
        }
        break;
    }
    case SUP_DELETE: {
        const struct id_pid *ip = data;
        struct child *c = find_id(s, ip->id);
        if (!c) {
            reply_rc(from, HY_ENOENT, HY_PID_NONE);
        } else if (!hy_pid_is_none(c->pid)) {
            reply_rc(from, HY_EBUSY, c->pid);
        } else {
            list_remove(s, c);
            child_free(c);
            reply_rc(from, 0, HY_PID_NONE);
        }
        break;
    }
    case SUP_WHICH: {
        size_t max;
        memcpy(&max, data, sizeof(max));
        size_t take = s->nchildren < max ? s->nchildren : max;
        size_t bytes = sizeof(size_t) + take * sizeof(struct hy_child_info);
        struct hy_msg *r;
        /* build the reply in a message buffer: zero copy of the list */
        if (hy_msg_alloc(bytes, &r) != 0) {
            reply_rc(from, HY_ENOMEM, HY_PID_NONE);
            break;
        }
        memcpy(r->data, &s->nchildren, sizeof(size_t));
        struct hy_child_info *out = (struct hy_child_info *)(r->data + sizeof(size_t));
        size_t i = 0;
        for (struct child *c = s->head; c && i < take; c = c->next, i++) {
            memset(&out[i], 0, sizeof(out[i]));
            if (!c->dynamic) /* dynamic children have no id (OTP: undefined) */
                memcpy(out[i].id, c->id, HY_CHILD_ID_MAX);
            out[i].pid = c->pid;
            out[i].type = c->type;
        }
        hy_gen_server_reply(from, SUP_REPLY, r->data, bytes);
        hy_msg_free(r);
        break;
    }
    case SUP_COUNT: {
        struct hy_child_counts k = {0};
        for (struct child *c = s->head; c; c = c->next) {
            k.specs++;
            if (!hy_pid_is_none(c->pid))
                k.active++;
            if (c->type == HY_SUPERVISOR)
                k.supervisors++;
            else
                k.workers++;
        }
        if (s->flags.strategy == HY_SIMPLE_ONE_FOR_ONE)
            k.specs = 1; /* OTP: the template is the one spec */
        hy_gen_server_reply(from, SUP_REPLY, &k, sizeof(k));
        break;
    }
    default:
        break;
    }
    return HY_GS_OK;
}

static const struct hy_gen_server_ops sup_ops = {
    .init = sup_init,
    .handle_call = sup_call,
    .handle_info = sup_info,
    .terminate = sup_terminate,
};

/* ---- API ----------------------------------------------------------------------------- */

static int flatten(const struct hy_child_spec *c, unsigned char *dst)
{
    struct flat_spec *f = (struct flat_spec *)dst;
    memset(f, 0, sizeof(*f));
    if (!c->id || !*c->id || strlen(c->id) >= HY_CHILD_ID_MAX || (!c->start && !c->start_name))
        return HY_EINVAL;
    if (c->start_name && (!*c->start_name || strlen(c->start_name) >= HY_CHILD_START_NAME_MAX))
        return HY_EINVAL;
    if (c->restart < HY_PERMANENT || c->restart > HY_TEMPORARY)
        return HY_EINVAL;
    if (c->type != HY_WORKER && c->type != HY_SUPERVISOR)
        return HY_EINVAL;
    if (c->significant && c->restart == HY_PERMANENT)
        return HY_EINVAL; /* OTP: a significant child cannot be permanent */
    if (c->shutdown_ns < HY_SHUTDOWN_BRUTAL_KILL || (c->arg_size && !c->arg))
        return HY_EINVAL;
    strcpy(f->id, c->id);
    f->start = c->start_name ? NULL : c->start;
    if (c->start_name)
        strcpy(f->start_name, c->start_name);
    f->arg_size = c->arg_size;
    f->restart = c->restart;
    f->shutdown_ns = c->shutdown_ns;
    f->type = c->type;
    f->significant = c->significant;
    if (c->arg_size)
        memcpy(f->arg, c->arg, c->arg_size);
    return 0;
}

int hy_supervisor_start_link(const struct hy_sup_flags *flags, const struct hy_child_spec *children,
                             size_t nchildren, const struct hy_sup_opts *opts, hy_pid *out,
                             struct hy_reason *why)
{
    if (!flags || (nchildren && !children))
        return HY_EINVAL;
    if (flags->strategy < HY_ONE_FOR_ONE || flags->strategy > HY_SIMPLE_ONE_FOR_ONE)
        return HY_EINVAL;
    if (flags->auto_shutdown < HY_AUTO_NEVER || flags->auto_shutdown > HY_AUTO_ALL_SIGNIFICANT)
        return HY_EINVAL;
    if (flags->strategy == HY_SIMPLE_ONE_FOR_ONE && nchildren != 1)
        return HY_EINVAL;
    /* OTP: no auto_shutdown for simple_one_for_one (OTP 27); significant
     * children only where auto_shutdown is not never */
    if (flags->strategy == HY_SIMPLE_ONE_FOR_ONE && flags->auto_shutdown != HY_AUTO_NEVER)
        return HY_EINVAL;
    for (size_t i = 0; i < nchildren; i++)
        if (children[i].significant && flags->auto_shutdown == HY_AUTO_NEVER)
            return HY_EINVAL;
    for (size_t i = 0; i < nchildren; i++)
        for (size_t j = 0; j < i; j++)
            if (children[i].id && children[j].id && strcmp(children[i].id, children[j].id) == 0)
                return HY_EINVAL;
    size_t bytes = 0;
    for (size_t i = 0; i < nchildren; i++)
        bytes += flat_size(children[i].arg_size);
    struct sup_init *si = calloc(1, sizeof(*si) + bytes);
    if (!si)
        return HY_ENOMEM;
    si->flags = *flags;
    if (si->flags.intensity < 0)
        si->flags.intensity = 0; /* 0 = no restart allowed, as OTP */
    if (si->flags.period_s == 0)
        si->flags.period_s = 5;
    si->nchildren = nchildren;
    si->bytes = bytes;
    size_t off = 0;
    for (size_t i = 0; i < nchildren; i++) {
        int rc = flatten(&children[i], si->specs + off);
        if (rc) {
            free(si);
            return rc;
        }
        off += flat_size(children[i].arg_size);
    }
    struct hy_gen_server_opts go = HY_GEN_SERVER_OPTS_INIT;
    if (opts) {
        go.name = opts->name;
        go.shard = opts->shard;
    }
    go.arg_size = sizeof(*si) + bytes;
    go.init_reason = why;
    int rc = hy_gen_server_start_link(&sup_ops, si, &go, out);
    free(si);
    return rc;
}

static int sup_request(hy_pid sup, uint64_t tag, const void *data, size_t len, struct reply_rc *r)
{
    struct hy_msg *m;
    int rc = hy_gen_server_call(sup, tag, data, len, HY_INFINITY, &m, NULL);
    if (rc == HY_EEXIT)
        return HY_ENOPROC;
    if (rc)
        return rc;
    memcpy(r, m->data, sizeof(*r));
    hy_msg_free(m);
    return 0;
}

int hy_supervisor_start_child(hy_pid sup, const struct hy_child_spec *spec, hy_pid *pid)
{
    if (!spec)
        return HY_EINVAL;
    if (hy_pid_node(sup) != hy_node_id() && !spec->start_name) {
        /* a start function is an address of this node */
        hy_log(HY_LOG_WARNING, "supervisor: start_child on node %u: the spec has no start_name "
                               "(only a start address, which never crosses nodes)",
               hy_pid_node(sup));
        return HY_ENOTSUP;
    }
    size_t bytes = flat_size(spec->arg_size);
    unsigned char *buf = calloc(1, bytes);
    if (!buf)
        return HY_ENOMEM;
    int rc = flatten(spec, buf);
    struct reply_rc r = {0};
    if (rc == 0)
        rc = sup_request(sup, SUP_START_CHILD, buf, bytes, &r);
    free(buf);
    if (rc)
        return rc;
    if (pid)
        *pid = r.pid;
    return r.rc;
}

int hy_supervisor_start_dynamic(hy_pid sup, const void *arg, size_t arg_size, hy_pid *pid)
{
    if (arg_size && !arg)
        return HY_EINVAL;
    struct reply_rc r = {0};
    int rc = sup_request(sup, SUP_START_DYNAMIC, arg, arg_size, &r);
    if (rc)
        return rc;
    if (pid)
        *pid = r.pid;
    return r.rc;
}

static int id_request(hy_pid sup, uint64_t tag, const char *id, hy_pid pid, hy_pid *out)
{
    struct id_pid ip;
    memset(&ip, 0, sizeof(ip));
    if (id) {
        if (strlen(id) >= HY_CHILD_ID_MAX)
            return HY_EINVAL;
        strcpy(ip.id, id);
    }
    ip.pid = pid;
    struct reply_rc r = {0};
    int rc = sup_request(sup, tag, &ip, sizeof(ip), &r);
    if (rc)
        return rc;
    if (out)
        *out = r.pid;
    return r.rc;
}

int hy_supervisor_terminate_child(hy_pid sup, const char *id, hy_pid pid)
{
    if (!id && hy_pid_is_none(pid))
        return HY_EINVAL;
    return id_request(sup, SUP_TERMINATE, id, pid, NULL);
}

int hy_supervisor_restart_child(hy_pid sup, const char *id, hy_pid *pid)
{
    if (!id)
        return HY_EINVAL;
    return id_request(sup, SUP_RESTART, id, HY_PID_NONE, pid);
}

int hy_supervisor_delete_child(hy_pid sup, const char *id)
{
    if (!id)
        return HY_EINVAL;
    return id_request(sup, SUP_DELETE, id, HY_PID_NONE, NULL);
}

int hy_supervisor_which_children(hy_pid sup, struct hy_child_info *out, size_t max, size_t *count)
{
    if ((max && !out) || !count)
        return HY_EINVAL;
    struct hy_msg *m;
    int rc = hy_gen_server_call(sup, SUP_WHICH, &max, sizeof(max), HY_INFINITY, &m, NULL);
    if (rc == HY_EEXIT)
        return HY_ENOPROC;
    if (rc)
        return rc;
    if (m->size < sizeof(size_t)) {
        hy_msg_free(m);
        return HY_ENOMEM;
    }
    memcpy(count, m->data, sizeof(size_t));
    size_t got = (m->size - sizeof(size_t)) / sizeof(struct hy_child_info);
    if (got > max)
        got = max;
    if (got)
        memcpy(out, m->data + sizeof(size_t), got * sizeof(struct hy_child_info));
    hy_msg_free(m);
    return 0;
}

int hy_supervisor_count_children(hy_pid sup, struct hy_child_counts *out)
{
    if (!out)
        return HY_EINVAL;
    struct hy_msg *m;
    int rc = hy_gen_server_call(sup, SUP_COUNT, NULL, 0, HY_INFINITY, &m, NULL);
    if (rc == HY_EEXIT)
        return HY_ENOPROC;
    if (rc)
        return rc;
    memcpy(out, m->data, sizeof(*out));
    hy_msg_free(m);
    return 0;
}

int hy_supervisor_start_gen_server(const void *arg, size_t arg_size, hy_pid *pid)
{
    if (arg_size < sizeof(struct hy_sup_gs_child))
        return HY_EINVAL;
    const struct hy_sup_gs_child *g = arg;
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = g->name[0] ? g->name : NULL;
    o.shard = g->shard;
    return hy_gen_server_start_link(g->ops, g->init_arg, &o, pid);
}

int hy_sup_start_gen_server(const void *arg, size_t arg_size, hy_pid *pid)
    __attribute__((alias("hy_supervisor_start_gen_server")));
