/* GenServer: the server loop, start with init acknowledgement, call with a
 * monitor-alias, cast, stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash_internal.h"
#include "errors.h"
#include "gen_server.h"
#include "log.h"
#include "report.h"
#include "timer.h"

/* core/signals.c: hy_demonitor(ref, false), true when the monitor was
 * still active (no DOWN for it queued, none to come). */
bool hy__demonitor_active(hy_ref ref);
/* core/signals.c: hy_monitor_opt(server, HY_MONITOR_ALIAS, ref) for a call
 * (HY_ENOTPROC outside a process, HY_EINVAL when server is the caller). */
int hy__call_monitor(hy_pid server, hy_ref *ref);

#define CALL_BIT (1ull << 62)
#define CAST_BIT (1ull << 61)
#define TAG_CALL(t) (HY_TAG_SYSTEM | CALL_BIT | (t))
#define TAG_CAST(t) (HY_TAG_SYSTEM | CAST_BIT | (t))
#define TAG_MASK (HY_GS_TAG_MAX - 1)
#define TAG_STOP (HY_TAG_SYSTEM | 0x47535354ull)     /* payload: struct hy_reason */
#define TAG_INIT_ACK (HY_TAG_SYSTEM | 0x47534941ull) /* payload: struct init_ack */

/* What a crash report tells of the server; in the process arena, so that
 * the exit handler can read it after the process's stack is gone. */
struct gs_crash {
    struct hy_msg *cur;            /* the message being handled, or NULL */
    hy_pid self;
    char name[HY_NAME_MAX];        /* registered name, or "" */
    /* the last message handled (has_last), formatted only for a report */
    bool has_last;
    uint64_t last_tag;
    hy_pid last_from;
    size_t last_size;
};

#define GS_LAST_TEXT (HY_PID_STRLEN + 64)
static const char *last_text(const struct gs_crash *c, char *buf, size_t len);

struct hy_gs {
    const struct hy_gen_server_ops *ops;
    struct gs_crash *crash;        /* NULL if the arena had no room */
    void *state;
    hy_pid parent;
    struct hy_reason stop_reason;
    bool cont_pending;
    uint64_t cont_tag;
};

struct start_args {
    const struct hy_gen_server_ops *ops;
    void *arg;
    size_t arg_size;
    hy_pid parent;
    hy_ref ack_ref;
    bool linked;
    char name[HY_NAME_MAX];
    unsigned char arg_copy[] __attribute__((aligned(16)));
};

struct init_ack {
    int rc;
    hy_pid pid;
    struct hy_reason reason;
};

void *hy_gen_server_state(struct hy_gs *gs)
{
    return gs->state;
}

void hy_gen_server_set_state(struct hy_gs *gs, void *state)
{
    gs->state = state;
}

void hy_gen_server_stop_reason(struct hy_gs *gs, struct hy_reason reason)
{
    gs->stop_reason = reason;
}

void hy_gen_server_continue(struct hy_gs *gs, uint64_t tag)
{
    gs->cont_pending = true;
    gs->cont_tag = tag;
}

hy_pid hy_gen_server_parent(struct hy_gs *gs)
{
    return gs->parent;
}

/* the older hy_gs_* names: the same functions */
void *hy_gs_state(struct hy_gs *gs) __attribute__((alias("hy_gen_server_state")));
void hy_gs_set_state(struct hy_gs *gs, void *state) __attribute__((alias("hy_gen_server_set_state")));
void hy_gs_stop(struct hy_gs *gs, struct hy_reason reason)
    __attribute__((alias("hy_gen_server_stop_reason")));
void hy_gs_continue(struct hy_gs *gs, uint64_t tag) __attribute__((alias("hy_gen_server_continue")));
hy_pid hy_gs_parent(struct hy_gs *gs) __attribute__((alias("hy_gen_server_parent")));

static void ack(const struct start_args *sa, int rc, hy_pid pid, struct hy_reason reason)
{
    struct init_ack a = {rc, pid, reason};
    hy_send_sys(sa->parent, TAG_INIT_ACK, sa->ack_ref, &a, sizeof(a));
}

static __attribute__((noreturn)) void terminate_and_exit(struct hy_gs *gs, struct hy_reason r)
{
    if (r.kind != HY_REASON_NORMAL && r.kind != HY_REASON_SHUTDOWN) {
        /* OTP's "** Generic server terminating" error report */
        char last[GS_LAST_TEXT];
        struct hy_report rep = {
            .type = HY_REPORT_CRASH,
            .level = HY_LOG_ERROR,
            .context = "terminating",
            .who = hy_self(),
            .reason = &r,
            .name = gs->crash && gs->crash->name[0] ? gs->crash->name : NULL,
            .last_message = last_text(gs->crash, last, sizeof(last)),
        };
        hy_report(&rep);
    }
    if (gs->ops->terminate)
        gs->ops->terminate(gs, &r);
    hy_exit(r);
    abort(); /* hy_exit does not return in a process */
}

/* Runs the callback result: stop if asked. */
static void after(struct hy_gs *gs, int res)
{
    if (res == HY_GS_STOP)
        terminate_and_exit(gs, gs->stop_reason);
    while (gs->cont_pending) {
        gs->cont_pending = false;
        int r = gs->ops->handle_continue ? gs->ops->handle_continue(gs, gs->cont_tag) : HY_GS_OK;
        if (r == HY_GS_STOP)
            terminate_and_exit(gs, gs->stop_reason);
    }
}

/* The crash report's words for the last message handled, into buf; NULL
 * when there is none. Formatted only when a report is made: a server
 * handles messages far more often than it crashes. */
static const char *last_text(const struct gs_crash *c, char *buf, size_t len)
{
    if (!c || !c->has_last)
        return NULL;
    char from[HY_PID_STRLEN];
    uint64_t tag = c->last_tag;
    const char *kind = "info";
    if ((tag & (HY_TAG_SYSTEM | CALL_BIT)) == (HY_TAG_SYSTEM | CALL_BIT))
        kind = "call";
    else if ((tag & (HY_TAG_SYSTEM | CAST_BIT)) == (HY_TAG_SYSTEM | CAST_BIT))
        kind = "cast";
    else if (tag == TAG_STOP)
        kind = "stop";
    if (kind[0] == 'c')
        tag &= TAG_MASK;
    snprintf(buf, len, "%s tag=0x%llx from=%s size=%zu", kind, (unsigned long long)tag,
             hy_pid_format(c->last_from, from, sizeof(from)), c->last_size);
    return buf;
}

/* Exit handler: a server that dies inside a callback (a fault, hy_panic,
 * hy_exit from any depth) reports it with the message it was handling,
 * which is then freed. */
static void free_current(void *a)
{
    struct gs_crash *c = a;
    if (!c->cur)
        return;
    struct hy_reason r;
    if (hy_exit_reason(&r) == 0 &&
        (r.kind == HY_REASON_CRASH || r.kind == HY_REASON_USER)) {
        char last[GS_LAST_TEXT];
        struct hy_report rep = {
            .type = HY_REPORT_CRASH,
            .level = HY_LOG_ERROR,
            .context = "terminating",
            .who = c->self,
            .reason = &r,
            .name = c->name[0] ? c->name : NULL,
            .last_message = last_text(c, last, sizeof(last)),
        };
        hy_report(&rep);
    }
    hy_msg_free(c->cur);
    c->cur = NULL;
}

static void server_main(void *a)
{
    struct start_args *sa = a;
    struct hy_gs gs = {.ops = sa->ops, .parent = sa->parent};
    gs.stop_reason = hy_reason_make(HY_REASON_NORMAL);
    hy_pid self = hy_self();
    void *arg = sa->arg_size ? (void *)sa->arg_copy : sa->arg;

    if (sa->name[0]) {
        int rc = hy_register(sa->name, self);
        if (rc) {
            hy_pid other = HY_PID_NONE;
            hy_whereis(sa->name, &other);
            if (sa->linked)
                hy_unlink(sa->parent);
            ack(sa, rc, other, hy_reason_make(HY_REASON_NORMAL));
            return;
        }
    }
    int res = gs.ops->init ? gs.ops->init(&gs, arg) : HY_GS_OK;
    if (res != HY_GS_OK) {
        /* Like OTP 26's init_fail: unlink first, so the starter gets an error
         * code rather than an exit signal. */
        if (sa->linked)
            hy_unlink(sa->parent);
        struct hy_reason r = res == HY_GS_IGNORE ? hy_reason_make(HY_REASON_NORMAL) : gs.stop_reason;
        ack(sa, res == HY_GS_IGNORE ? HY_EIGNORED : HY_ESTOPPED, self, r);
        hy_exit(r);
        return;
    }
    ack(sa, 0, self, hy_reason_make(HY_REASON_NORMAL));
    after(&gs, HY_GS_OK);

    /* A callback may end the process from any depth (hy_exit, a fault):
     * the message it was handling is reported and freed by a cleanup then. */
    struct gs_crash *crash = hy_alloc(sizeof(*crash));
    if (crash) {
        /* the arena is not zeroed: killed before a message, nothing to free */
        memset(crash, 0, sizeof(*crash));
        crash->self = self;
        snprintf(crash->name, sizeof(crash->name), "%s", sa->name);
        if (hy_on_exit(free_current, crash) != 0)
            crash = NULL;
    }
    gs.crash = crash;
    struct hy_msg **cur = crash ? &crash->cur : NULL;
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            continue;
        if (cur) {
            *cur = m;
            crash->has_last = true;
            crash->last_tag = m->tag;
            crash->last_from = m->from;
            crash->last_size = m->size;
        }
        uint64_t tag = m->tag;
        int r = HY_GS_OK;
        if ((tag & (HY_TAG_SYSTEM | CALL_BIT)) == (HY_TAG_SYSTEM | CALL_BIT)) {
            hy_gs_from from = {m->from, m->ref};
            if (gs.ops->handle_call) {
                r = gs.ops->handle_call(&gs, tag & TAG_MASK, m->data, m->size, from);
            } else {
                gs.stop_reason = hy_reason_user(0, "unexpected call");
                r = HY_GS_STOP;
            }
        } else if ((tag & (HY_TAG_SYSTEM | CAST_BIT)) == (HY_TAG_SYSTEM | CAST_BIT)) {
            if (gs.ops->handle_cast)
                r = gs.ops->handle_cast(&gs, tag & TAG_MASK, m->data, m->size);
        } else if (tag == TAG_STOP && m->size == sizeof(struct hy_reason)) {
            memcpy(&gs.stop_reason, m->data, sizeof(struct hy_reason));
            r = HY_GS_STOP;
        } else if (tag == HY_TAG_EXIT && m->size == sizeof(struct hy_exit_info) &&
                   hy_pid_eq(((const struct hy_exit_info *)m->data)->from, gs.parent)) {
            /* the parent ended while we trap exits: terminate with its reason */
            gs.stop_reason = ((const struct hy_exit_info *)m->data)->reason;
            r = HY_GS_STOP;
        } else if (gs.ops->handle_info) {
            r = gs.ops->handle_info(&gs, m);
        }
        if (cur)
            *cur = NULL;
        hy_msg_free(m);
        after(&gs, r);
    }
}

struct ack_match {
    hy_ref ack_ref;
    hy_ref mref;
};

static int is_ack_or_down(const struct hy_msg *m, void *arg)
{
    const struct ack_match *am = arg;
    return (m->tag == TAG_INIT_ACK && hy_ref_eq(m->ref, am->ack_ref)) ||
           (m->tag == HY_TAG_DOWN && hy_ref_eq(m->ref, am->mref));
}

static int start_common(const struct hy_gen_server_ops *ops, const void *arg,
                        const struct hy_gen_server_opts *opts, bool link, hy_pid *out)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!ops)
        return HY_EINVAL;
    struct hy_gen_server_opts def = HY_GEN_SERVER_OPTS_INIT;
    if (!opts)
        opts = &def;
    if (opts->name && (!*opts->name || strlen(opts->name) >= HY_NAME_MAX))
        return HY_EINVAL;
    size_t total = sizeof(struct start_args) + opts->arg_size;
    struct start_args *sa = calloc(1, total);
    if (!sa)
        return HY_ENOMEM;
    sa->ops = ops;
    sa->arg = (void *)arg; /* handed to init as is when not copied (arg_size 0) */
    sa->arg_size = opts->arg_size;
    sa->parent = hy_self();
    sa->linked = link;
    if (opts->name)
        strcpy(sa->name, opts->name);
    if (opts->arg_size)
        memcpy(sa->arg_copy, arg, opts->arg_size);
    hy_ref_make(&sa->ack_ref);

    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    if (opts->spawn)
        so = *opts->spawn;
    so.shard = opts->shard;
    so.link = link;
    so.monitor = true;
    hy_ref mref;
    so.monitor_ref = &mref;
    so.arg_size = total; /* the server gets its own copy of the start args */
    hy_pid pid;
    int rc = hy_spawn_opt(server_main, sa, &so, &pid);
    struct ack_match am = {sa->ack_ref, mref};
    free(sa);
    if (rc)
        return rc;
    struct hy_msg *m;
    int64_t to = opts->init_timeout_ns > 0 ? opts->init_timeout_ns : HY_INFINITY;
    rc = hy_recv_match(is_ack_or_down, &am, &m, to);
    if (rc == HY_ETIMEDOUT) {
        if (link)
            hy_unlink(pid);
        hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL));
        /* wait until it is gone, so that its name is free and nothing of it
         * is left running when start returns */
        if (hy_recv_ref(mref, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
        /* an ack racing the timeout is dropped with the rest of the start */
        while (hy_recv_match(is_ack_or_down, &am, &m, 0) == 0)
            hy_msg_free(m);
        return HY_ETIMEDOUT;
    }
    if (rc)
        return rc;
    if (m->tag == HY_TAG_DOWN) {
        /* died before acknowledging (crash in init) */
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        hy_msg_free(m);
        if (opts->init_reason)
            *opts->init_reason = d.reason;
        return HY_ESTOPPED;
    }
    struct init_ack a;
    memcpy(&a, m->data, sizeof(a));
    hy_msg_free(m);
    hy_demonitor(mref, true);
    if (a.rc == HY_EEXIST) {
        if (out)
            *out = a.pid;
        return HY_EEXIST;
    }
    if (a.rc) {
        if (opts->init_reason)
            *opts->init_reason = a.reason;
        return a.rc;
    }
    if (out)
        *out = pid;
    return 0;
}

int hy_gen_server_start(const struct hy_gen_server_ops *ops, const void *arg,
                        const struct hy_gen_server_opts *opts, hy_pid *out)
{
    return start_common(ops, arg, opts, false, out);
}

int hy_gen_server_start_link(const struct hy_gen_server_ops *ops, const void *arg,
                             const struct hy_gen_server_opts *opts, hy_pid *out)
{
    return start_common(ops, arg, opts, true, out);
}

int hy_gen_server_call(hy_pid server, uint64_t tag, const void *data, size_t len,
                       int64_t timeout_ns, struct hy_msg **reply, struct hy_reason *why)
{
    if (tag >= HY_GS_TAG_MAX || !reply)
        return hy_in_process() ? HY_EINVAL : HY_ENOTPROC;
    /* HY_ENOTPROC outside a process; calling yourself could only time out
     * (OTP exits with calling_self): HY_EINVAL */
    hy_ref ref;
    int rc = hy__call_monitor(server, &ref);
    if (rc)
        return rc;
    HY_FAULT_POINT(HY_FP_GEN_SERVER);
    rc = hy_send_sys(server, TAG_CALL(tag), ref, data, len);
    if (rc) {
        hy_demonitor(ref, true);
        return rc;
    }
    struct hy_msg *m;
    rc = hy_recv_ref(ref, &m, timeout_ns);
    if (rc) {
        /* timed out: the alias goes with the monitor, a later reply is
         * dropped; one that came in meanwhile is taken (as OTP's gen:call) */
        hy_demonitor(ref, true);
        if (hy_recv_ref(ref, &m, 0) == 0) {
            *reply = m;
            return 0;
        }
        return rc;
    }
    if (m->tag == HY_TAG_DOWN && m->size == sizeof(struct hy_down_info)) {
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        hy_msg_free(m);
        if (why)
            *why = d.reason;
        /* no such server, or none that can be reached */
        return d.reason.kind == HY_REASON_NOPROC || d.reason.kind == HY_REASON_NOCONNECTION
                   ? HY_ENOPROC
                   : HY_EEXIT;
    }
    /* the server may have ended right after replying: its DOWN may be
     * queued already (from the marker: no scan of older messages). Only
     * when the monitor was gone: an active one had queued no DOWN. */
    if (!hy__demonitor_active(ref)) {
        struct hy_msg *down;
        if (hy_recv_ref(ref, &down, 0) == 0)
            hy_msg_free(down);
    }
    *reply = m;
    return 0;
}

int hy_gen_server_call_name(const char *name, uint64_t tag, const void *data, size_t len,
                            int64_t timeout_ns, struct hy_msg **reply, struct hy_reason *why)
{
    hy_pid pid;
    int rc = hy_whereis(name, &pid);
    if (rc == HY_ENONAME)
        return HY_ENOPROC;
    if (rc)
        return rc;
    return hy_gen_server_call(pid, tag, data, len, timeout_ns, reply, why);
}

int hy_gen_server_reply(hy_gs_from from, uint64_t tag, const void *data, size_t len)
{
    return hy_alias_send(from, tag, data, len);
}

int hy_gen_server_cast(hy_pid server, uint64_t tag, const void *data, size_t len)
{
    if (tag >= HY_GS_TAG_MAX)
        return HY_EINVAL;
    return hy_send_sys(server, TAG_CAST(tag), HY_REF_NONE, data, len);
}

int hy_gen_server_cast_after(uint64_t ns, hy_pid server, uint64_t tag, const void *data,
                             size_t len, hy_ref *timer)
{
    if (tag >= HY_GS_TAG_MAX)
        return HY_EINVAL;
    return hy_send_after(ns, server, TAG_CAST(tag), data, len, HY_TIMER_SYSTEM_TAG, timer);
}

int hy_gen_server_stop(hy_pid server, struct hy_reason reason, int64_t timeout_ns)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    /* stopping yourself could only wait out the timeout (OTP: calling_self) */
    if (hy_pid_eq(server, hy_self()))
        return HY_EINVAL;
    hy_ref ref;
    int rc = hy_monitor(server, &ref);
    if (rc)
        return rc;
    rc = hy_send_sys(server, TAG_STOP, HY_REF_NONE, &reason, sizeof(reason));
    if (rc) {
        hy_demonitor(ref, true);
        return rc;
    }
    struct hy_msg *m;
    rc = hy_recv_ref(ref, &m, timeout_ns);
    if (rc) {
        hy_demonitor(ref, true);
        return rc;
    }
    struct hy_down_info d;
    memcpy(&d, m->data, sizeof(d));
    hy_msg_free(m);
    return d.reason.kind == HY_REASON_NOPROC || d.reason.kind == HY_REASON_NOCONNECTION
               ? HY_ENOPROC
               : 0;
}
