/* hydra-bench: the OTP workloads, run inside a runtime's main process.
 *
 * genserver_call, genserver_call_cross, supervisor_restart and
 * supervisor_restart_long: peerbench.erl's gs_calls/3 and sup_restart/1
 * with pb_server and pb_sup, on Hydra's GenServer and supervisor
 * (otp/gen_server.h, otp/supervisor.h).
 */
#include <stdio.h>
#include <string.h>

#include "gen_server.h"
#include "report.h"
#include "supervisor.h"

#include "bench.h"

#define SEC 1000000000LL
/* gen_server:call/2's default timeout. */
#define CALL_TIMEOUT_NS (5 * SEC)

/* Requests of pb_server (GenServer call tags). */
enum { GS_PING = 1, GS_SHARD = 2 };
/* handle_continue tag of the supervised worker. */
enum { GS_ANNOUNCE = 1 };

/* ---- pb_server -------------------------------------------------------------- */

/* handle_call(ping) -> pong; handle_call(scheduler_id) -> the shard. */
static int pb_handle_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len,
                          hy_gs_from from)
{
    (void)gs;
    (void)data;
    (void)len;
    if (tag == GS_PING) {
        hy_gen_server_reply(from, BENCH_TAG_PONG, NULL, 0);
    } else if (tag == GS_SHARD) {
        int32_t shard = hy_shard_id();

        hy_gen_server_reply(from, GS_SHARD, &shard, sizeof(shard));
    }
    return HY_GS_OK;
}

/* The supervised worker: init records whom to tell (a pointer to static
 * storage, as hy_sup_gs_child asks) and asks for handle_continue, which
 * tells it, after init has been acknowledged to the supervisor (pb_server's
 * {continue, announce}). */
static int pb_worker_init(struct hy_gs *gs, void *arg)
{
    hy_gs_set_state(gs, arg);
    hy_gs_continue(gs, GS_ANNOUNCE);
    return HY_GS_OK;
}

static int pb_worker_continue(struct hy_gs *gs, uint64_t tag)
{
    const hy_pid *notify = hy_gs_state(gs);
    hy_pid self = hy_self();

    if (tag == GS_ANNOUNCE)
        hy_send(*notify, BENCH_TAG_WORKER_UP, &self, sizeof(self));
    return HY_GS_OK;
}

static const struct hy_gen_server_ops pb_server_ops = {
    .handle_call = pb_handle_call,
};

static const struct hy_gen_server_ops pb_worker_ops = {
    .init = pb_worker_init,
    .handle_call = pb_handle_call,
    .handle_continue = pb_worker_continue,
};

/* ---- genserver_call / genserver_call_cross ---------------------------------- */

struct gs_client_arg {
    hy_pid parent;
    hy_pid srv;
    uint64_t n;
};

/* call_loop(N, Srv): pong = gen_server:call(Srv, ping), N times. */
static void gs_client(void *arg)
{
    const struct gs_client_arg *a = arg;
    uint32_t errors = 0;
    struct hy_msg *reply;

    uint64_t t0 = hy_now_ns();
    for (uint64_t k = 0; k < a->n; k++) {
        int rc = hy_gen_server_call(a->srv, GS_PING, NULL, 0, CALL_TIMEOUT_NS, &reply, NULL);

        if (rc < 0) {
            bench_fail("gen_server call %llu failed: %s (%s)", (unsigned long long)k + 1,
                       hy_err_name(rc), hy_strerror(rc));
            break;
        }
        if (reply->tag != BENCH_TAG_PONG || reply->size != 0)
            errors++;
        hy_msg_free(reply);
    }
    bench_send_done(a->parent, t0, hy_now_ns(), errors);
}

/* Returns elapsed ns for n calls from a client on client_shard to a fresh
 * pb_server on srv_shard (peerbench's gs_calls/3), or -1. */
static double gs_calls(uint64_t n, int client_shard, int srv_shard)
{
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    struct gs_client_arg a = {.parent = hy_self(), .n = n};
    struct bench_done d;
    struct hy_msg *m;
    hy_pid client;
    int32_t srv_ran_on = -1;
    int rc;

    o.shard = srv_shard;
    rc = hy_gen_server_start(&pb_server_ops, NULL, &o, &a.srv);
    if (rc < 0) {
        bench_fail("gen_server start failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return -1;
    }
    if (bench_spawn(gs_client, &a, sizeof(a), client_shard, &client) < 0 ||
        bench_recv_done(client, &d) < 0)
        return -1;
    rc = hy_gen_server_call(a.srv, GS_SHARD, NULL, 0, CALL_TIMEOUT_NS, &m, NULL);
    if (rc == 0) {
        if (m->size == sizeof(srv_ran_on))
            memcpy(&srv_ran_on, m->data, sizeof(srv_ran_on));
        hy_msg_free(m);
    }
    rc = hy_gen_server_stop(a.srv, hy_reason_make(HY_REASON_NORMAL), HY_INFINITY);
    if (rc < 0) {
        bench_fail("gen_server stop failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return -1;
    }
    if (d.shard != client_shard || srv_ran_on != srv_shard) {
        bench_fail("client ran on shard %d (expected %d), server on %d (expected %d)", d.shard,
                   client_shard, srv_ran_on, srv_shard);
        return -1;
    }
    if (d.errors) {
        bench_fail("%u replies were not pong", d.errors);
        return -1;
    }
    return (double)(d.t1 - d.t0);
}

void bench_genserver_call_describe(const struct bench_env *env)
{
    bench_note("%llu hy_gen_server_call(Srv, ping) (5 s timeout, as gen_server:call/2's "
               "default) from one client, client and server on one shard; the server "
               "replies pong",
               (unsigned long long)bench_scaled(env, 1000000));
}

double bench_genserver_call_rep(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 1000000);
    double dt = gs_calls(n, 0, 0);

    return dt < 0 ? dt : dt / (double)n;
}

void bench_genserver_call_cross_describe(const struct bench_env *env)
{
    bench_note("%llu hy_gen_server_call(Srv, ping) (5 s timeout), client on shard 0, server "
               "started on shard 1",
               (unsigned long long)bench_scaled(env, 200000));
}

double bench_genserver_call_cross_rep(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 200000);
    double dt = gs_calls(n, 0, 1);

    return dt < 0 ? dt : dt / (double)n;
}

/* ---- supervisor_restart / supervisor_restart_long ---------------------------- */

/* Whom the worker tells (pb_server's Notify): the benchmark process. Static
 * storage, since the child spec's init_arg is borrowed. */
static hy_pid sup_notify;

struct not_pid {
    hy_pid old;
};

/* receive {worker_up, New} when New =/= Worker */
static int match_new_worker(const struct hy_msg *m, void *arg)
{
    const struct not_pid *np = arg;
    hy_pid p;

    if (m->tag != BENCH_TAG_WORKER_UP || m->size != sizeof(p))
        return 0;
    memcpy(&p, m->data, sizeof(p));
    return !hy_pid_eq(p, np->old);
}

static int recv_worker_up(hy_pid old, hy_pid *out)
{
    struct not_pid np = {.old = old};
    struct hy_msg *m;
    int rc = hy_recv_match(match_new_worker, &np, &m, bench_timeout_ns);

    if (rc < 0) {
        bench_fail("no {worker_up, Pid} from a restarted worker: %s (%s)", hy_err_name(rc),
                   hy_strerror(rc));
        return rc;
    }
    memcpy(out, m->data, sizeof(*out));
    hy_msg_free(m);
    return 0;
}

/* Returns elapsed ns for n kill -> restarted cycles under a fresh supervisor
 * (peerbench's sup_restart/1), or -1. */
static double sup_restart(uint64_t n)
{
    uint64_t intensity = 2 * n > 1000000 ? 2 * n : 1000000;
    struct hy_sup_flags flags = {
        .strategy = HY_ONE_FOR_ONE,
        .intensity = (int)intensity,
        .period_s = 1,
        .auto_shutdown = HY_AUTO_NEVER,
    };
    struct hy_sup_gs_child gsc = {.ops = &pb_worker_ops, .shard = -1, .init_arg = &sup_notify};
    struct hy_child_spec spec = {
        .id = "worker",
        .start = hy_sup_start_gen_server,
        .arg = &gsc,
        .arg_size = sizeof(gsc),
        .restart = HY_PERMANENT,
        .shutdown_ns = HY_SHUTDOWN_BRUTAL_KILL,
        .type = HY_WORKER,
    };
    struct hy_reason why;
    hy_pid sup, w, reg;
    int rc;

    snprintf(gsc.name, sizeof(gsc.name), "pb_worker");
    sup_notify = hy_self();
    rc = hy_supervisor_start_link(&flags, &spec, 1, NULL, &sup, &why);
    if (rc < 0) {
        char r[128];

        bench_fail("supervisor start failed: %s (%s), reason %s", hy_err_name(rc),
                   hy_strerror(rc), hy_reason_format(&why, r, sizeof(r)));
        return -1;
    }
    if (recv_worker_up(HY_PID_NONE, &w) < 0)
        return -1;
    uint64_t t0 = hy_now_ns();
    for (uint64_t k = 0; k < n; k++) {
        hy_exit_pid(w, hy_reason_make(HY_REASON_KILL));
        if (recv_worker_up(w, &w) < 0)
            return -1;
    }
    uint64_t dt = hy_now_ns() - t0;
    /* the last restarted worker is the one registered as pb_worker */
    if (hy_whereis("pb_worker", &reg) < 0 || !hy_pid_eq(reg, w)) {
        bench_fail("the restarted worker is not registered as pb_worker");
        return -1;
    }
    hy_unlink(sup);
    rc = hy_gen_server_stop(sup, hy_reason_make(HY_REASON_NORMAL), HY_INFINITY);
    if (rc < 0) {
        bench_fail("supervisor stop failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return -1;
    }
    return (double)dt;
}

static void sup_batches(const struct bench_env *env, uint64_t *batch, uint64_t *sups)
{
    uint64_t n = bench_scaled(env, 10000);

    *batch = n < 1000 ? n : 1000;
    *sups = n / *batch ? n / *batch : 1;
}

void bench_supervisor_restart_describe(const struct bench_env *env)
{
    uint64_t batch, sups;

    sup_batches(env, &batch, &sups);
    bench_note("%llu cycles of hy_exit_pid(Worker, kill) -> one_for_one supervisor restarts "
               "the permanent, registered (pb_worker) GenServer worker -> its "
               "handle_continue notifies the benchmark; spread over %llu fresh "
               "supervisor(s) of %llu kills; supervisor reports disabled "
               "(hy_report_set_enabled(false)); intensity max(10^6, 2N) per 1 s",
               (unsigned long long)(batch * sups), (unsigned long long)sups,
               (unsigned long long)batch);
}

double bench_supervisor_restart_rep(const struct bench_env *env)
{
    uint64_t batch, sups;
    double sum = 0;
    bool was = hy_report_enabled();

    sup_batches(env, &batch, &sups);
    hy_report_set_enabled(false);
    for (uint64_t i = 0; i < sups; i++) {
        double dt = sup_restart(batch);

        if (dt < 0) {
            sum = -1;
            break;
        }
        sum += dt;
    }
    hy_report_set_enabled(was);
    return sum < 0 ? -1 : sum / (double)(sups * batch) / 1e3;
}

void bench_supervisor_restart_long_describe(const struct bench_env *env)
{
    bench_note("supervisor_restart_long: the same %llu kills on one supervisor",
               (unsigned long long)bench_scaled(env, 10000));
}

double bench_supervisor_restart_long_rep(const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 10000);
    bool was = hy_report_enabled();

    hy_report_set_enabled(false);
    double dt = sup_restart(n);
    hy_report_set_enabled(was);
    return dt < 0 ? -1 : dt / (double)n / 1e3;
}
