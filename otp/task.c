/* Task: a process running one function, its guard, and the owner's side
 * (monitor-alias, start message, await, shutdown). */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "signals.h"
#include "task.h"

/* Owner -> task: "start; reply through this ref". System tag: no user
 * message can forge it, and a user receive in the task cannot be confused
 * by it (it is consumed before the function runs). */
#define TAG_GO (HY_TAG_SYSTEM | 0x54534b47ull) /* "TSKG" */

struct task_start {
    hy_task_fn fn;
    void *arg;
    size_t arg_size;
    hy_pid owner;
    bool linked;
    unsigned char arg_copy[] __attribute__((aligned(16)));
};

struct hy_task_ctx {
    hy_alias reply;
    bool returned;
};

struct guard_arg {
    hy_pid owner;
    hy_pid task;
};

/* Linked to the task, trapping exits, monitoring the owner: kills the task
 * when the owner ends, ends quietly when the task does. */
static void guard_main(void *a)
{
    struct guard_arg g;
    memcpy(&g, a, sizeof(g));
    hy_ref mref;
    if (hy_monitor(g.owner, &mref) != 0) {
        hy_exit_pid(g.task, hy_reason_make(HY_REASON_KILL));
        return;
    }
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            continue;
        if (m->tag == HY_TAG_DOWN && hy_ref_eq(m->ref, mref)) {
            hy_msg_free(m);
            hy_exit_pid(g.task, hy_reason_make(HY_REASON_KILL));
            return;
        }
        if (m->tag == HY_TAG_EXIT && m->size == sizeof(struct hy_exit_info) &&
            hy_pid_eq(((const struct hy_exit_info *)m->data)->from, g.task)) {
            hy_msg_free(m);
            hy_demonitor(mref, true);
            return;
        }
        hy_msg_free(m); /* nothing else is meant for a guard */
    }
}

static void task_main(void *a)
{
    struct task_start *ts = a;
    void *arg = ts->arg_size ? (void *)ts->arg_copy : ts->arg;
    if (!ts->linked) {
        struct guard_arg g = {ts->owner, hy_self()};
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.link = true;
        so.trap_exit = true;
        so.arg_size = sizeof(g);
        int rc = hy_spawn_opt(guard_main, &g, &so, NULL);
        if (rc) {
            /* without a guard the task could outlive its owner: give up, the
             * owner's await reports this reason */
            hy_exit(hy_reason_user(rc, "task: cannot start its guard"));
            return;
        }
    }
    struct hy_msg *m;
    while (hy_recv_tag(TAG_GO, &m, HY_INFINITY) != 0)
        ;
    struct hy_task_ctx ctx = {.reply = {ts->owner, m->ref}};
    hy_msg_free(m);
    ts->fn(&ctx, arg);
    if (!ctx.returned)
        hy_alias_send(ctx.reply, HY_TASK_TAG_RESULT, NULL, 0);
}

int hy_task_return(struct hy_task_ctx *ctx, const void *data, size_t len)
{
    if (!ctx || (!data && len))
        return HY_EINVAL;
    if (ctx->returned)
        return HY_EALREADY;
    int rc = hy_alias_send(ctx->reply, HY_TASK_TAG_RESULT, data, len);
    if (rc == 0)
        ctx->returned = true;
    return rc;
}

hy_pid hy_task_owner(const struct hy_task_ctx *ctx)
{
    return ctx ? ctx->reply.pid : HY_PID_NONE;
}

int hy_task_async(hy_task_fn fn, void *arg, const struct hy_task_opts *opts, struct hy_task *task)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!fn || !task)
        return HY_EINVAL;
    struct hy_task_opts def = HY_TASK_OPTS_INIT;
    if (!opts)
        opts = &def;
    if (opts->arg_size && !arg)
        return HY_EINVAL;
    size_t total = sizeof(struct task_start) + opts->arg_size;
    struct task_start *ts = calloc(1, total);
    if (!ts)
        return HY_ENOMEM;
    ts->fn = fn;
    ts->arg = arg;
    ts->arg_size = opts->arg_size;
    ts->owner = hy_self();
    ts->linked = opts->link;
    if (opts->arg_size)
        memcpy(ts->arg_copy, arg, opts->arg_size);

    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    if (opts->spawn)
        so = *opts->spawn;
    so.shard = opts->shard;
    so.link = opts->link;
    so.monitor = false;
    so.monitor_ref = NULL;
    so.trap_exit = false;
    so.arg_size = total; /* the task keeps its own copy of the start record */
    hy_pid pid;
    int rc = hy_spawn_opt(task_main, ts, &so, &pid);
    free(ts);
    if (rc)
        return rc;
    /* The task waits for TAG_GO before running fn, so the monitor (and its
     * reply alias) exists before any result can be sent. */
    hy_ref ref = HY_REF_NONE;
    rc = hy_monitor_opt(pid, HY_MONITOR_ALIAS, &ref);
    if (rc == 0)
        rc = hy_send_sys(pid, TAG_GO, ref, NULL, 0);
    if (rc) {
        if (opts->link)
            hy_unlink(pid);
        hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL));
        if (!hy_ref_is_none(ref))
            hy_demonitor(ref, true);
        return rc;
    }
    task->pid = pid;
    task->owner = hy_self();
    task->ref = ref;
    task->linked = opts->link;
    task->done = false;
    return 0;
}

/* Removes the monitor and its alias, kills the task, drops what it sent. */
static void kill_and_forget(struct hy_task *t)
{
    hy_demonitor(t->ref, true);
    if (t->linked)
        hy_unlink(t->pid); /* so its killed does not come back to us */
    hy_exit_pid(t->pid, hy_reason_make(HY_REASON_KILL));
    /* a result that arrived before the alias went away */
    struct hy_msg *m;
    while (hy_recv_ref(t->ref, &m, HY_NOWAIT) == 0)
        hy_msg_free(m);
    t->done = true;
}

static int check_owner(const struct hy_task *t)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!t)
        return HY_EINVAL;
    if (!hy_pid_eq(hy_self(), t->owner))
        return HY_EPERM;
    return 0;
}

static int wait_result(struct hy_task *t, int64_t timeout_ns, struct hy_msg **result,
                       struct hy_reason *why, bool kill_on_timeout)
{
    int rc = check_owner(t);
    if (rc)
        return rc;
    if (!result || t->done)
        return HY_EINVAL;
    struct hy_msg *m;
    rc = hy_recv_ref(t->ref, &m, timeout_ns);
    if (rc == HY_ETIMEDOUT) {
        if (kill_on_timeout)
            kill_and_forget(t);
        return rc;
    }
    if (rc)
        return rc;
    t->done = true;
    if (m->tag == HY_TAG_DOWN) {
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        hy_msg_free(m);
        if (why)
            *why = d.reason;
        return HY_EEXIT;
    }
    /* the result: the DOWN that follows a normal end is not wanted */
    hy_demonitor(t->ref, true);
    *result = m;
    return 0;
}

int hy_task_await(struct hy_task *task, int64_t timeout_ns, struct hy_msg **result,
                  struct hy_reason *why)
{
    return wait_result(task, timeout_ns, result, why, true);
}

int hy_task_yield(struct hy_task *task, int64_t timeout_ns, struct hy_msg **result,
                  struct hy_reason *why)
{
    return wait_result(task, timeout_ns, result, why, false);
}

int hy_task_await_buf(struct hy_task *task, int64_t timeout_ns, void *buf, size_t cap, size_t *len,
                      struct hy_reason *why)
{
    if (!buf && cap)
        return HY_EINVAL;
    struct hy_msg *m;
    int rc = wait_result(task, timeout_ns, &m, why, true);
    if (rc)
        return rc;
    if (len)
        *len = m->size;
    if (m->size > cap) {
        hy_msg_free(m);
        return HY_EMSGSIZE;
    }
    if (m->size)
        memcpy(buf, m->data, m->size);
    hy_msg_free(m);
    return 0;
}

int hy_task_shutdown(struct hy_task *task)
{
    int rc = check_owner(task);
    if (rc)
        return rc;
    if (!task->done)
        kill_and_forget(task);
    return 0;
}
