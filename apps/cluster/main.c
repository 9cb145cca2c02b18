/* hydra-cluster: one node of a small cluster (apps/cluster/README.md).
 *
 *   hydra-cluster --cluster FILE --node NAME|ID [options]
 *
 * The node reads the static cluster file ("name node_id mac ip base_port"
 * per line), starts distribution (UDP, or DPDK with --dpdk), starts its
 * tree (a GenServer registered as "cluster" on shard 0), then talks to
 * every other node for --seconds:
 *
 *   1. connect (hy_dist_connect) and find the peer's server by name
 *      (hy_dist_send_name to {"cluster", node}, answered from its pid);
 *   2. a GenServer call to that remote pid (HELLO) and a monitor on it;
 *   3. from a task on every shard, rounds of casts (NOTE, numbered) and a
 *      call (TICK) whose reply says how many of this process's notes the
 *      peer has seen, and whether in order: after the call, all of them,
 *      since messages between two processes keep their order across nodes;
 *   4. goodbye: a BYE call to every peer, then waits until every peer has
 *      said goodbye to it, so that no node leaves while another still talks
 *      to it; then the application stops in order.
 *
 * The last line is "OK ..." or "FAILED ..."; the exit status is 0 when the
 * node reached every peer, every call and every note arrived in order and
 * every peer said goodbye, 1 otherwise, or hy_app_run's status when the
 * application did not stop in order. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"

#define SEC  1000000000LL
#define MSEC 1000000LL

static struct cluster_config config;
static bool run_ok;
static unsigned nshards = 2;
static int cpus[HY_MAX_SHARDS];
static unsigned ncpus;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* ---- the process that talks to the other nodes ----------------------------------- */

struct peer_link {
    uint32_t node;
    char name[HY_DIST_NAME_MAX];
    hy_pid server; /* its "cluster" server */
    bool found;
    hy_ref mon;
};

/* What a chat task gets (copied into its arena) and gives back. */
struct chat_arg {
    uint32_t node;  /* this node */
    unsigned shard; /* the task's shard */
    int64_t until_ns;
    unsigned interval_ms, notes;
    size_t npeers;
    hy_pid servers[CLUSTER_MAX_PEERS];
};

struct chat_result {
    uint64_t calls, casts;
    uint64_t errors;   /* calls or casts that failed */
    uint64_t mismatch; /* ticks that saw fewer notes than sent, or out of order */
    int first_error;
};

/* A task on one shard: rounds of NOTE casts and a TICK call to every peer.
 * Its channels to the peers are its shard's: (this shard, peer, shard 0). */
static void chat(struct hy_task_ctx *ctx, void *a)
{
    const struct chat_arg *c = a;
    struct chat_result r;
    memset(&r, 0, sizeof(r));
    uint64_t sent[CLUSTER_MAX_PEERS] = {0};
    while (now_ns() < c->until_ns) {
        for (size_t i = 0; i < c->npeers; i++) {
            struct cluster_note n = {.node = c->node, .shard = c->shard};
            for (unsigned k = 0; k < c->notes; k++) {
                n.seq = sent[i];
                int rc = cluster_server_note(c->servers[i], &n);
                if (rc) {
                    r.errors++;
                    r.first_error = r.first_error ? r.first_error : rc;
                } else {
                    sent[i]++;
                    r.casts++;
                }
            }
            n.seq = sent[i];
            struct cluster_tock t;
            int rc = cluster_server_tick(c->servers[i], &n, &t);
            if (rc) {
                r.errors++;
                r.first_error = r.first_error ? r.first_error : rc;
                continue;
            }
            r.calls++;
            if (t.notes != sent[i] || t.out_of_order != 0)
                r.mismatch++;
        }
        hy_sleep_ns((uint64_t)c->interval_ms * (uint64_t)MSEC);
    }
    hy_task_return(ctx, &r, sizeof(r));
}

/* Prints the node monitor messages waiting in the mailbox; returns how many
 * were NODEDOWN. */
static unsigned drain_node_events(const struct cluster_config *c)
{
    unsigned downs = 0;
    struct hy_msg *m;
    while (hy_recv_tag(HY_TAG_NODEUP, &m, HY_NOWAIT) == 0 ||
           hy_recv_tag(HY_TAG_NODEDOWN, &m, HY_NOWAIT) == 0) {
        uint32_t node = 0;
        if (m->size >= sizeof(node))
            memcpy(&node, m->data, sizeof(node));
        const char *name = "?";
        for (size_t i = 0; i < c->npeers; i++)
            if (c->peers[i].node_id == node)
                name = c->peers[i].name;
        printf("%s: node %s (%u)\n", m->tag == HY_TAG_NODEUP ? "nodeup" : "nodedown", name, node);
        downs += m->tag == HY_TAG_NODEDOWN;
        hy_msg_free(m);
    }
    return downs;
}

static void run(void *arg)
{
    const struct cluster_config *c = arg;
    const struct hy_dist_peer *self = cluster_self(c);
    struct cluster_hello me = {.node = c->node_id};
    snprintf(me.name, sizeof(me.name), "%s", self->name);
    char buf[160];
    struct peer_link peers[CLUSTER_MAX_PEERS];
    size_t np = 0;
    for (size_t i = 0; i < c->npeers; i++) {
        if (c->peers[i].node_id == c->node_id)
            continue;
        memset(&peers[np], 0, sizeof(peers[np]));
        peers[np].node = c->peers[i].node_id;
        snprintf(peers[np].name, sizeof(peers[np].name), "%s", c->peers[i].name);
        hy_monitor_node(peers[np].node, true); /* nodeup / nodedown messages */
        np++;
    }
    printf("node %s (id %u), %u shard%s, %s transport, %zu peer%s; pid of this process %s\n",
           self->name, c->node_id, nshards, nshards == 1 ? "" : "s",
           c->transport == HY_DIST_DPDK ? "DPDK" : "UDP", np, np == 1 ? "" : "s",
           hy_pid_format(hy_self(), buf, sizeof(buf)));
    bool ok = true;

    /* 1. find every peer: connect, then its server by name */
    int64_t give_up = now_ns() + (int64_t)c->wait_seconds * SEC;
    for (size_t i = 0; i < np; i++) {
        struct peer_link *p = &peers[i];
        int last = 0;
        bool connected = false;
        while (now_ns() < give_up) {
            if (!connected) {
                last = hy_dist_connect(p->node);
                if (last != 0) {
                    hy_sleep_ns(100 * MSEC); /* not up yet */
                    continue;
                }
                connected = true;
                printf("connected to %s (node %u)\n", p->name, p->node);
            }
            char name[HY_DIST_NAME_MAX];
            last = cluster_server_ping(p->node, 300 * MSEC, &p->server, name, sizeof(name));
            if (last == 0) {
                p->found = true;
                printf("ping {%s, %s} -> pong from %s \"%s\"\n", CLUSTER_NAME, p->name,
                       hy_pid_format(p->server, buf, sizeof(buf)), name);
                break;
            }
        }
        if (!p->found) {
            printf("could not reach %s (node %u): %s\n", p->name, p->node, hy_err_name(last));
            ok = false;
        }
    }
    drain_node_events(c);
    uint32_t up[CLUSTER_MAX_PEERS];
    size_t nup = 0;
    if (hy_dist_nodes(up, CLUSTER_MAX_PEERS, &nup) == 0) {
        int n = 0;
        for (size_t i = 0; i < nup && i < CLUSTER_MAX_PEERS; i++)
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, " %u", up[i]);
        printf("connected nodes:%s\n", nup ? buf : " none");
    }

    /* 2. a call to each remote server, and a monitor on it */
    for (size_t i = 0; i < np; i++) {
        struct peer_link *p = &peers[i];
        if (!p->found)
            continue;
        int rc = cluster_server_hello(p->server, &me, buf, sizeof(buf));
        if (rc) {
            printf("call hello to %s: %s\n", p->name, hy_err_name(rc));
            ok = false;
            continue;
        }
        printf("call hello to %s -> \"%s\"\n", p->name, buf);
        hy_monitor(p->server, &p->mon);
    }

    /* 3. chat from a task on every shard */
    struct chat_arg ca;
    memset(&ca, 0, sizeof(ca));
    ca.node = c->node_id;
    ca.until_ns = now_ns() + (int64_t)c->seconds * SEC;
    ca.interval_ms = c->interval_ms;
    ca.notes = c->notes;
    for (size_t i = 0; i < np; i++)
        if (peers[i].found)
            ca.servers[ca.npeers++] = peers[i].server;
    struct hy_task tasks[HY_MAX_SHARDS];
    unsigned ntasks = 0;
    if (ca.npeers > 0) {
        printf("chatting with %zu peer%s from %u shard%s for %u s\n", ca.npeers,
               ca.npeers == 1 ? "" : "s", nshards, nshards == 1 ? "" : "s", c->seconds);
        for (unsigned s = 0; s < nshards; s++) {
            ca.shard = s;
            struct hy_task_opts o = HY_TASK_OPTS_INIT;
            o.shard = (int)s;
            o.arg_size = sizeof(ca);
            int rc = hy_task_async(chat, &ca, &o, &tasks[ntasks]);
            if (rc) {
                printf("task on shard %u: %s\n", s, hy_err_name(rc));
                ok = false;
                continue;
            }
            ntasks++;
        }
    }
    struct chat_result total;
    memset(&total, 0, sizeof(total));
    for (unsigned t = 0; t < ntasks; t++) {
        struct chat_result r;
        size_t len = 0;
        int64_t left = ca.until_ns - now_ns() + 30 * SEC;
        int rc = hy_task_await_buf(&tasks[t], left, &r, sizeof(r), &len, NULL);
        if (rc || len != sizeof(r)) {
            printf("task %u: %s\n", t, hy_err_name(rc));
            ok = false;
            continue;
        }
        printf("shard %u: %llu calls, %llu casts, %llu errors%s%s%s, %llu mismatches\n", t,
               (unsigned long long)r.calls, (unsigned long long)r.casts,
               (unsigned long long)r.errors, r.first_error ? " (first: " : "",
               r.first_error ? hy_err_name(r.first_error) : "", r.first_error ? ")" : "",
               (unsigned long long)r.mismatch);
        total.calls += r.calls;
        total.casts += r.casts;
        total.errors += r.errors;
        total.mismatch += r.mismatch;
    }
    if (total.errors || total.mismatch)
        ok = false;

    /* a DOWN from a peer's server now would mean it died during the chat */
    struct hy_msg *m;
    while (hy_recv_tag(HY_TAG_DOWN, &m, HY_NOWAIT) == 0) {
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        char why[96];
        printf("DOWN %s: %s\n", hy_pid_format(d.pid, buf, sizeof(buf)),
               hy_reason_format(&d.reason, why, sizeof(why)));
        ok = false;
        hy_msg_free(m);
    }
    for (size_t i = 0; i < np; i++)
        if (peers[i].found)
            hy_demonitor(peers[i].mon, true);
    if (drain_node_events(c) > 0)
        ok = false;

    /* 4. goodbye: tell every peer, then wait for every peer's */
    unsigned said = 0;
    for (size_t i = 0; i < np; i++) {
        if (!peers[i].found)
            continue;
        int rc = cluster_server_bye(peers[i].server, &me);
        if (rc)
            printf("bye to %s: %s\n", peers[i].name, hy_err_name(rc));
        else
            said++;
    }
    struct cluster_status st;
    memset(&st, 0, sizeof(st));
    give_up = now_ns() + (int64_t)c->wait_seconds * SEC;
    while (cluster_server_status(&st) == 0 && st.byes < np && now_ns() < give_up)
        hy_sleep_ns(50 * MSEC);
    struct hy_dist_stats ds;
    memset(&ds, 0, sizeof(ds));
    hy_dist_stats_get(&ds);
    printf(
        "server: greeted by %u/%zu, goodbyes %u/%zu, %llu notes (%llu out of order), %llu ticks\n",
        st.greeted, np, st.byes, np, (unsigned long long)st.notes,
        (unsigned long long)st.out_of_order, (unsigned long long)st.ticks);
    printf("dist: %llu msgs out, %llu in; %llu frames out, %llu in; %llu retransmits; "
           "%llu handed over between shards; %llu handshakes\n",
           (unsigned long long)ds.msgs_tx, (unsigned long long)ds.msgs_rx,
           (unsigned long long)ds.frames_tx, (unsigned long long)ds.frames_rx,
           (unsigned long long)ds.retransmits, (unsigned long long)ds.handed_over,
           (unsigned long long)ds.handshakes);
    if (said != np || st.greeted != np || st.byes != np || st.out_of_order != 0)
        ok = false;
    /* let the acks of the last replies go out before distribution stops */
    hy_sleep_ns(200 * MSEC);
    run_ok = ok;
    printf("%s: %s reached %u/%zu peers, %llu calls, %llu casts, %llu errors\n",
           ok ? "OK" : "FAILED", self->name, said, np, (unsigned long long)total.calls,
           (unsigned long long)total.casts, (unsigned long long)total.errors);
} /* returning stops the application */

/* ---- options ----------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hydra-cluster --cluster FILE --node NAME|ID [options]\n"
            "  --cluster FILE   cluster file: \"name node_id mac ip base_port\" per line\n"
            "  --node NAME|ID   which line is this node\n"
            "  --cookie TEXT    shared secret (default: $HYDRA_COOKIE, else \"hydra-cluster\")\n"
            "  --shards N       shards of this node (default 2; base ports N apart at least)\n"
            "  --cpus LIST      CPUs of the shards, e.g. 2,3 (shard i on the i-th; sets --shards)\n"
            "  --seconds N      how long to chat (default 3)\n"
            "  --wait N         bound on finding the peers and on the goodbyes (default 20)\n"
            "  --interval MS    pause between rounds (default 20)\n"
            "  --notes N        casts per peer and round (default 10)\n"
            "  --drop N         drop N per mille of the outgoing frames (fault injection:\n"
            "                   retransmission repairs it; default 0)\n"
            "  --dpdk           DPDK transport instead of kernel UDP\n"
            "  --eal ARG        an EAL argument (repeat; e.g. --eal=-a --eal=0000:01:00.0)\n"
            "  --port N         DPDK port id (default 0)\n"
            "  --verbose        log at info level (default: notice)\n");
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max)
        return false;
    *out = v;
    return true;
}

/* "2,3,5": the shards' CPUs, in shard order */
static bool parse_cpus(const char *s)
{
    ncpus = 0;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned long c;
        if (ncpus == HY_MAX_SHARDS || !parse_uint(t, 4095, &c))
            return false;
        cpus[ncpus++] = (int)c;
    }
    return ncpus > 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a pipe */
    const char *file = NULL, *node = NULL;
    config.cookie = getenv("HYDRA_COOKIE") ? getenv("HYDRA_COOKIE") : "hydra-cluster";
    config.transport = HY_DIST_UDP;
    config.seconds = 3;
    config.wait_seconds = 20;
    config.interval_ms = 20;
    config.notes = 10;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        char opt[32];
        size_t ol = eq ? (size_t)(eq - a) : strlen(a);
        if (ol >= sizeof(opt))
            ol = sizeof(opt) - 1;
        memcpy(opt, a, ol);
        opt[ol] = '\0';
        bool takes =
            !strcmp(opt, "--cluster") || !strcmp(opt, "--node") || !strcmp(opt, "--cookie") ||
            !strcmp(opt, "--shards") || !strcmp(opt, "--seconds") || !strcmp(opt, "--wait") ||
            !strcmp(opt, "--interval") || !strcmp(opt, "--notes") || !strcmp(opt, "--eal") ||
            !strcmp(opt, "--port") || !strcmp(opt, "--cpus") || !strcmp(opt, "--drop");
        if (takes) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else {
                fprintf(stderr, "hydra-cluster: %s needs a value\n", opt);
                return 64;
            }
        }
        unsigned long n;
        if (!strcmp(opt, "--cluster"))
            file = v;
        else if (!strcmp(opt, "--node"))
            node = v;
        else if (!strcmp(opt, "--cookie"))
            config.cookie = v;
        else if (!strcmp(opt, "--shards") && parse_uint(v, HY_MAX_SHARDS, &n) && n > 0)
            nshards = (unsigned)n;
        else if (!strcmp(opt, "--cpus") && parse_cpus(v))
            nshards = ncpus;
        else if (!strcmp(opt, "--seconds") && parse_uint(v, 86400, &n))
            config.seconds = (unsigned)n;
        else if (!strcmp(opt, "--wait") && parse_uint(v, 86400, &n) && n > 0)
            config.wait_seconds = (unsigned)n;
        else if (!strcmp(opt, "--interval") && parse_uint(v, 60000, &n))
            config.interval_ms = (unsigned)n;
        else if (!strcmp(opt, "--notes") && parse_uint(v, 100000, &n))
            config.notes = (unsigned)n;
        else if (!strcmp(opt, "--drop") && parse_uint(v, 999, &n))
            config.drop_permille = (unsigned)n;
        else if (!strcmp(opt, "--port") && parse_uint(v, 65535, &n))
            config.dpdk_port = (uint16_t)n;
        else if (!strcmp(opt, "--eal") && config.eal_argc < CLUSTER_MAX_EAL)
            config.eal_args[config.eal_argc++] = v;
        else if (!strcmp(a, "--dpdk"))
            config.transport = HY_DIST_DPDK;
        else if (!strcmp(a, "--verbose"))
            verbose = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "hydra-cluster: bad argument: %s%s%s\n", a, v && !eq ? " " : "",
                    v && !eq ? v : "");
            usage(stderr);
            return 64;
        }
    }
    if (!file || !node) {
        usage(stderr);
        return 64;
    }
    int rc = hy_dist_cluster_load(file, config.peers, CLUSTER_MAX_PEERS, &config.npeers);
    if (rc) {
        fprintf(stderr, "hydra-cluster: %s: %s\n", file,
                rc == HY_ENOSPC ? "more than 16 nodes" : hy_strerror(rc));
        return 64;
    }
    for (size_t i = 0; i < config.npeers; i++) {
        unsigned long id;
        if (!strcmp(config.peers[i].name, node) ||
            (parse_uint(node, 0xffffff, &id) && config.peers[i].node_id == id))
            config.node_id = config.peers[i].node_id;
    }
    if (config.node_id == 0) {
        fprintf(stderr, "hydra-cluster: no node %s in %s\n", node, file);
        return 64;
    }

    hy_log_set_level(verbose ? HY_LOG_INFO : HY_LOG_NOTICE);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = nshards;
    if (ncpus > 0 && ncpus == nshards)
        cfg.cpus = cpus;
    cfg.node_id = config.node_id;
    struct hy_app app = cluster_app;
    app.main = run;
    app.arg = &config;
    struct hy_app_result res;
    int status = hy_app_run(&app, &cfg, &res);
    if (status != HY_APP_STOPPED) {
        char why[96];
        fprintf(stderr, "hydra-cluster: ended with status %d (%s, %s)\n", status,
                hy_err_name(res.error), hy_reason_format(&res.reason, why, sizeof(why)));
        return status;
    }
    if (res.signal)
        fprintf(stderr, "hydra-cluster: stopped by signal %d\n", res.signal);
    return run_ok ? 0 : 1;
}
