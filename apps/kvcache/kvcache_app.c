/* kvcache_app: the application (OTP's <app>_app): every shard's root
 * supervises kvcache_sup (the shard's key owner); the main process is the
 * listener: it starts the TCP server once the owners are up, prints a stats
 * line now and then, and at stop (it is stopped before the tree) ends idle
 * connections at once, lets requests in flight finish, and closes the rest. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcache.h"

#define SEC 1000000000LL
#define DRAIN_NS (1500 * 1000000LL)

struct hy_tcp_server *_Atomic kvcache_tcp;

static const struct hy_tcp_server_ops conn_ops = {
    .handle = kvcache_conn_handle,
};

static void stats_line(uint64_t *last_get, uint64_t *last_set, uint64_t secs)
{
    struct kvcache_stats_reply *r = malloc(sizeof(*r));
    if (!r)
        return;
    kvcache_server_gather(r);
    uint64_t conns = 0;
    for (unsigned s = 0; s < kvcache_cfg.set.nshards; s++)
        conns += atomic_load_explicit(&kvcache_shards[s].curr_conns, memory_order_relaxed);
    uint64_t gets = r->c.cmd_get - *last_get, sets = r->c.cmd_set - *last_set;
    *last_get = r->c.cmd_get;
    *last_set = r->c.cmd_set;
    double hit = r->c.cmd_get ? 100.0 * (double)r->c.get_hits / (double)r->c.cmd_get : 0.0;
    fprintf(stderr,
            "hydra-kvcache: %" PRIu64 " conns, %" PRIu64 " items, %.1f MiB, get %" PRIu64
            "/s (hits %.0f%%), set %" PRIu64 "/s, evictions %" PRIu64 "\n",
            conns, r->c.curr_items, (double)r->c.bytes / (1024.0 * 1024.0),
            secs ? gets / secs : 0, hit, secs ? sets / secs : 0, r->c.evictions);
    free(r);
}

static void listener(void *arg)
{
    (void)arg;
    struct hy_tcp_server_opts o;
    hy_tcp_server_opts_init(&o);
    int rc = hy_addr_parse(kvcache_cfg.set.inter, kvcache_cfg.set.port, &o.listen.addr);
    if (rc != 0) {
        fprintf(stderr, "hydra-kvcache: -l %s: not an IP address (%s)\n", kvcache_cfg.set.inter,
                hy_strerror(rc));
        hy_exit(hy_reason_user(rc, "bad listen address"));
    }
    o.listen.backlog = 1024;
    o.listen.conn.nodelay = true;
    o.ops = &conn_ops;
    o.acceptors = kvcache_cfg.acceptors;
    o.max_connections = kvcache_cfg.set.maxconns;
    hy_trap_exit(true, NULL);
    struct hy_tcp_server *srv;
    rc = hy_tcp_server_start(&o, &srv); /* HY_EADDRINUSE: someone listens there (as memcached fails) */
    if (rc != 0) {
        fprintf(stderr, "hydra-kvcache: cannot listen on %s:%u: %s\n", kvcache_cfg.set.inter,
                kvcache_cfg.set.port, hy_strerror(rc));
        hy_exit(hy_reason_user(rc, "listen failed"));
    }
    atomic_store(&kvcache_tcp, srv);
    struct hy_console *con = NULL;
    if (kvcache_cfg.console_addr) {
        struct hy_console_options co = {.token = getenv("HYDRA_CONSOLE_TOKEN")};
        rc = hy_console_start(kvcache_cfg.console_addr, kvcache_cfg.console_port, &co, &con);
        if (rc != 0)
            fprintf(stderr, "hydra-kvcache: console on %s:%u not started: %s\n",
                    kvcache_cfg.console_addr, kvcache_cfg.console_port, hy_strerror(rc));
        else
            fprintf(stderr, "hydra-kvcache: console on http://%s:%u/\n", kvcache_cfg.console_addr,
                    hy_console_port(con));
    }
    fprintf(stderr, "hydra-kvcache: listening on %s:%u, %u shards, %" PRIu64 " MiB\n",
            kvcache_cfg.set.inter, hy_tcp_server_port(srv), kvcache_cfg.set.nshards,
            kvcache_cfg.set.maxbytes >> 20);
    uint64_t last_get = 0, last_set = 0;
    int64_t every = (int64_t)kvcache_cfg.stats_interval_s * SEC;
    for (;;) {
        struct hy_msg *m;
        rc = hy_recv(&m, every ? every : HY_INFINITY);
        if (rc == HY_ETIMEDOUT) {
            stats_line(&last_get, &last_set, kvcache_cfg.stats_interval_s);
            continue;
        }
        if (rc != 0)
            break;
        bool stop = m->tag == HY_TAG_EXIT;
        hy_msg_free(m);
        if (stop)
            break;
    }
    /* stop: no new connections, idle ones end now, busy ones after their
     * batch; then the listeners close and stragglers are closed */
    for (unsigned s = 0; s < kvcache_cfg.set.nshards; s++)
        kvcache_server_send(s, KVCACHE_REQ_STOP_CONNS, NULL, 0, NULL);
    atomic_store(&kvcache_tcp, NULL);
    hy_tcp_server_stop(srv, DRAIN_NS);
    if (con)
        hy_console_stop(con);
    fprintf(stderr, "hydra-kvcache: stopped\n");
}

static const struct hy_child_spec children[] = {
    {
        .id = "kvcache_sup",
        .start = kvcache_sup_start_link,
        .restart = HY_PERMANENT,
        .type = HY_SUPERVISOR,
    },
};

const struct hy_app kvcache_app = {
    .name = "kvcache",
    .children = children,
    .nchildren = sizeof(children) / sizeof(children[0]),
    .main = listener,
};
