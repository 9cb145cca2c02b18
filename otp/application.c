/* Application: the node's tree (a root supervisor per shard under the node
 * root), its controller process, and SIGINT/SIGTERM through a self-pipe. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "application.h"
#include "errors.h"
#include "log.h"
#include "msg.h"
#include "report.h"
#include "signals.h"

/* Requests through the self-pipe: a signal number, or one of these. */
#define REQ_STOP 0xfe /* hy_app_stop() */
#define REQ_QUIT 0xff /* the watcher thread ends */

/* The watcher's message to the controller (a foreign send cannot use a
 * system tag; the controller also checks that it comes from no process). */
#define TAG_CTL 0x4859415050435444ull /* "HYAPPCTD" */

#define MAIN_SHUTDOWN_NS 5000000000LL

/* the statuses are described by hy_strerror from errors.h's table */
#define HY_APP_SAME_(name, value, msg) _Static_assert(HY_##name == (value), "HY_" #name);
HY_APP_STATUS_MAP(HY_APP_SAME_)
#undef HY_APP_SAME_

/* Root flags left all zero mean OTP's defaults (1 restart in 5 s); any
 * other value is taken as given (intensity 0: no restart). */
static struct hy_sup_flags root_flags(const struct hy_sup_flags *f)
{
    if (f->strategy == 0 && f->intensity == 0 && f->period_s == 0 && f->auto_shutdown == 0)
        return (struct hy_sup_flags)HY_SUP_FLAGS_INIT;
    return *f;
}

/* The pipe lives as long as the OS process: a handler that is still running
 * on another thread when hy_app_run() returns never writes to a closed (or
 * reused) descriptor. */
static int pipe_fd[2] = {-1, -1};
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;
static int pipe_errno;

static _Atomic bool app_running;

/* Shared by the controller (shard 0), the watcher thread and hy_app_root(). */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static hy_pid ctl_pid;  /* the controller while it lives */
static hy_pid root_pid; /* the node root while it is up */
static int pending;     /* a request that came before the controller was there */

struct run {
    const struct hy_app *app;
    struct hy_app_result res;
    bool finished; /* the controller ran to its end (else: HY_APP_HALTED) */
};

struct shard_arg {
    const struct hy_app *app; /* borrowed for the run: hy_app_run outlives the tree */
    unsigned shard;
};

static const char *app_name(const struct hy_app *app)
{
    return app->name ? app->name : "app";
}

static void app_report(const struct hy_app *app, enum hy_log_level level, const char *context,
                       const struct hy_reason *reason, int error, const char *action)
{
    struct hy_report r = {
        .type = HY_REPORT_APPLICATION,
        .level = level,
        .context = context,
        .who = hy_self(),
        .name = app_name(app),
        .reason = reason,
        .error = error,
        .action = action,
    };
    hy_report(&r);
}

/* ---- signals and the watcher thread --------------------------------------------- */

static void pipe_create(void)
{
    if (pipe2(pipe_fd, O_CLOEXEC | O_NONBLOCK) != 0)
        pipe_errno = errno;
}

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    (void)!write(pipe_fd[1], &b, 1);
    errno = saved;
}

static void forward(unsigned char req)
{
    pthread_mutex_lock(&lock);
    if (!hy_pid_is_none(ctl_pid))
        hy_send_foreign(ctl_pid, TAG_CTL, &req, 1);
    else if (!pending)
        pending = req;
    pthread_mutex_unlock(&lock);
}

static void *watcher(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p = {.fd = pipe_fd[0], .events = POLLIN};
        if (poll(&p, 1, -1) < 0)
            continue; /* EINTR: one of our signals landed on this thread */
        unsigned char buf[64];
        ssize_t n = read(pipe_fd[0], buf, sizeof(buf));
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == REQ_QUIT)
                return NULL;
            forward(buf[i]);
        }
    }
}

static void pipe_drain(void)
{
    unsigned char buf[64];
    while (read(pipe_fd[0], buf, sizeof(buf)) > 0)
        ;
}

/* ---- the tree ------------------------------------------------------------------------ */

static int start_shard_root(const void *arg, size_t arg_size, hy_pid *pid)
{
    if (arg_size != sizeof(struct shard_arg))
        return HY_EINVAL;
    const struct shard_arg *sa = arg;
    const struct hy_app *app = sa->app;
    const struct hy_child_spec *specs = app->children;
    size_t n = app->nchildren;
    if (app->shard_children) {
        n = 0;
        specs = app->shard_children(sa->shard, &n, app->arg);
        if (!specs)
            n = 0;
    }
    struct hy_sup_opts o = HY_SUP_OPTS_INIT;
    o.shard = (int)sa->shard;
    struct hy_reason why;
    struct hy_sup_flags fl = root_flags(&app->shard_flags);
    return hy_supervisor_start_link(&fl, specs, n, &o, pid, &why);
}

/* Starts the node root over one shard root per shard. */
static int start_tree(const struct hy_app *app, hy_pid *root, struct hy_reason *why)
{
    unsigned n = hy_shard_count();
    struct hy_child_spec *specs = calloc(n, sizeof(*specs));
    struct shard_arg *args = calloc(n, sizeof(*args));
    char(*ids)[16] = calloc(n, sizeof(*ids));
    int rc = HY_ENOMEM;
    if (specs && args && ids) {
        for (unsigned i = 0; i < n; i++) {
            snprintf(ids[i], sizeof(ids[i]), "shard%u", i);
            args[i] = (struct shard_arg){app, i};
            specs[i] = (struct hy_child_spec){
                .id = ids[i],
                .start = start_shard_root,
                .arg = &args[i],
                .arg_size = sizeof(args[i]),
                .restart = HY_PERMANENT,
                .shutdown_ns = HY_SHUTDOWN_INFINITY,
                .type = HY_SUPERVISOR,
            };
        }
        struct hy_sup_opts o = HY_SUP_OPTS_INIT;
        o.shard = 0;
        struct hy_sup_flags fl = root_flags(&app->node_flags);
        rc = hy_supervisor_start_link(&fl, specs, n, &o, root, why);
    }
    free(specs);
    free(args);
    free(ids);
    return rc;
}

/* ---- the controller process ------------------------------------------------------- */

static void ctl_gone(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    ctl_pid = HY_PID_NONE;
    root_pid = HY_PID_NONE;
    pthread_mutex_unlock(&lock);
}

static int is_exit_from(const struct hy_msg *m, void *arg)
{
    return m->tag == HY_TAG_EXIT && m->size == sizeof(struct hy_exit_info) &&
           hy_pid_eq(((const struct hy_exit_info *)m->data)->from, *(const hy_pid *)arg);
}

static void stop_main(hy_pid pid, hy_ref ref)
{
    struct hy_msg *m = NULL;
    hy_exit_pid(pid, hy_reason_make(HY_REASON_SHUTDOWN));
    if (hy_recv_ref(ref, &m, MAIN_SHUTDOWN_NS) == HY_ETIMEDOUT) {
        hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL));
        hy_recv_ref(ref, &m, HY_INFINITY);
    }
    hy_msg_free(m);
}

/* Applies a stop request (signal number or REQ_STOP) to the result. */
static void requested(struct run *run, int req)
{
    run->res.status = HY_APP_STOPPED;
    run->res.signal = req == REQ_STOP ? 0 : req;
}

static void controller(void *arg)
{
    struct run *run = arg;
    const struct hy_app *app = run->app;
    struct hy_app_result *res = &run->res;
    hy_trap_exit(true, NULL);
    hy_on_exit(ctl_gone, NULL);
    pthread_mutex_lock(&lock);
    ctl_pid = hy_self();
    int req = pending;
    pending = 0;
    pthread_mutex_unlock(&lock);

    res->reason = hy_reason_make(HY_REASON_NORMAL);
    if (app->start) {
        int rc = app->start(app->arg);
        if (rc) {
            res->status = HY_APP_START_FAILED;
            res->error = rc;
            res->reason = hy_reason_user(rc, "start callback failed");
            app_report(app, HY_LOG_ERROR, "start_failed", &res->reason, rc, "stop");
            run->finished = true;
            return;
        }
    }

    hy_pid root = HY_PID_NONE;
    struct hy_reason why = hy_reason_make(HY_REASON_NORMAL);
    int rc = start_tree(app, &root, &why);
    if (rc) {
        res->status = HY_APP_START_FAILED;
        res->error = rc;
        res->reason = why;
        app_report(app, HY_LOG_ERROR, "start_failed", &why, rc, "stop");
        if (app->stop)
            app->stop(app->arg);
        run->finished = true;
        return;
    }
    pthread_mutex_lock(&lock);
    root_pid = root;
    pthread_mutex_unlock(&lock);

    hy_pid main_pid = HY_PID_NONE;
    hy_ref main_ref = HY_REF_NONE;
    if (app->main && !req) {
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.monitor = true;
        so.monitor_ref = &main_ref;
        rc = hy_spawn_opt(app->main, app->arg, &so, &main_pid);
        if (rc) {
            res->status = HY_APP_START_FAILED;
            res->error = rc;
            res->reason = hy_reason_user(rc, "main process not started");
            app_report(app, HY_LOG_ERROR, "start_failed", &res->reason, rc, "stop");
            req = -1; /* stop the tree below */
        }
    }
    if (req >= 0)
        app_report(app, HY_LOG_INFO, "started", NULL, 0, NULL);

    if (req > 0)
        requested(run, req);
    else if (req == 0)
        res->status = -1;
    while (res->status < 0) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            continue;
        if (is_exit_from(m, &root)) {
            res->status = HY_APP_GAVE_UP;
            memcpy(&res->reason, &((const struct hy_exit_info *)m->data)->reason,
                   sizeof(res->reason));
            root = HY_PID_NONE;
        } else if (m->tag == HY_TAG_DOWN && hy_ref_eq(m->ref, main_ref) &&
                   m->size == sizeof(struct hy_down_info)) {
            struct hy_down_info d;
            memcpy(&d, m->data, sizeof(d));
            main_pid = HY_PID_NONE;
            if (d.reason.kind == HY_REASON_NORMAL || d.reason.kind == HY_REASON_SHUTDOWN) {
                res->status = HY_APP_STOPPED;
            } else {
                res->status = HY_APP_MAIN_FAILED;
                res->reason = d.reason;
            }
        } else if (m->tag == TAG_CTL && hy_pid_is_none(m->from) && m->size == 1) {
            requested(run, m->data[0]);
        }
        hy_msg_free(m);
    }

    /* stop in reverse start order: main, then the tree */
    if (!hy_pid_is_none(main_pid))
        stop_main(main_pid, main_ref);
    if (!hy_pid_is_none(root)) {
        hy_exit_pid(root, hy_reason_make(HY_REASON_SHUTDOWN));
        struct hy_msg *m;
        if (hy_recv_match(is_exit_from, &root, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
    pthread_mutex_lock(&lock);
    root_pid = HY_PID_NONE;
    pthread_mutex_unlock(&lock);
    if (res->status == HY_APP_STOPPED)
        app_report(app, HY_LOG_NOTICE, "stopped", NULL, 0, NULL);
    else if (res->status != HY_APP_START_FAILED)
        app_report(app, HY_LOG_ERROR, "exited", &res->reason, 0, "stop");
    if (app->stop)
        app->stop(app->arg);
    run->finished = true;
}

/* ---- API ---------------------------------------------------------------------------- */

static int check_app(const struct hy_app *app)
{
    if (!app)
        return HY_EINVAL;
    if (app->nchildren && !app->children && !app->shard_children)
        return HY_EINVAL;
    if (app->node_flags.strategy == HY_SIMPLE_ONE_FOR_ONE)
        return HY_EINVAL;
    return 0;
}

static int finish(struct hy_app_result *out, struct hy_app_result res)
{
    if (out)
        *out = res;
    return res.status;
}

int hy_app_run(const struct hy_app *app, const struct hy_config *cfg, struct hy_app_result *result)
{
    struct hy_app_result res = {.status = HY_APP_RUNTIME_FAILED};
    res.reason = hy_reason_make(HY_REASON_NORMAL);
    if ((res.error = check_app(app)) != 0)
        return finish(result, res);
    if (hy_shard_id() >= 0) {
        res.error = HY_EPERM;
        return finish(result, res);
    }
    if (atomic_exchange(&app_running, true)) {
        res.error = HY_ESTARTED;
        return finish(result, res);
    }
    pthread_once(&pipe_once, pipe_create);
    if (pipe_fd[0] < 0) {
        res.error = pipe_errno == EMFILE || pipe_errno == ENFILE ? HY_ENOSPC : HY_EIO;
        atomic_store(&app_running, false);
        return finish(result, res);
    }
    pipe_drain();
    pthread_mutex_lock(&lock);
    ctl_pid = HY_PID_NONE;
    root_pid = HY_PID_NONE;
    pending = 0;
    pthread_mutex_unlock(&lock);

    pthread_t thr;
    if (pthread_create(&thr, NULL, watcher, NULL) != 0) {
        res.error = HY_ENOMEM;
        atomic_store(&app_running, false);
        return finish(result, res);
    }
    pthread_setname_np(thr, "hydra-app-sig");
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    struct hy_config def;
    if (!cfg) {
        hy_config_init(&def);
        cfg = &def;
    }
    struct run run = {.app = app};
    int rc = hy_run(cfg, controller, &run);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    unsigned char quit = REQ_QUIT;
    while (write(pipe_fd[1], &quit, 1) < 0 && errno == EINTR)
        ;
    pthread_join(thr, NULL);
    atomic_store(&app_running, false);

    if (rc) {
        res.error = rc;
        return finish(result, res);
    }
    if (!run.finished) {
        res.status = HY_APP_HALTED;
        return finish(result, res);
    }
    return finish(result, run.res);
}

int hy_app_stop(void)
{
    if (!atomic_load(&app_running))
        return HY_ENOTSTARTED;
    unsigned char b = REQ_STOP;
    return write(pipe_fd[1], &b, 1) == 1 ? 0 : HY_EAGAIN;
}

int hy_app_root(hy_pid *out)
{
    if (!out)
        return HY_EINVAL;
    pthread_mutex_lock(&lock);
    hy_pid r = root_pid;
    pthread_mutex_unlock(&lock);
    if (hy_pid_is_none(r))
        return HY_ENOTSTARTED;
    *out = r;
    return 0;
}
