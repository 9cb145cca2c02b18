/* cluster_app: the application (OTP's <app>_app module). Its start callback
 * brings distribution up before the tree starts (the server's name must be
 * reachable from other nodes as soon as it is registered), its stop
 * callback takes it down after the tree has stopped. Shard 0's root
 * supervises cluster_sup -> cluster_server; the other shards' roots have no
 * children (main.c's processes run on them). */
#include <stdio.h>

#include "cluster.h"

const struct hy_dist_peer *cluster_self(const struct cluster_config *c)
{
    for (size_t i = 0; i < c->npeers; i++)
        if (c->peers[i].node_id == c->node_id)
            return &c->peers[i];
    return NULL;
}

static int cluster_start(void *arg)
{
    const struct cluster_config *c = arg;
    struct hy_dist_config dc;
    hy_dist_config_init(&dc);
    dc.node_id = c->node_id;
    dc.cookie = c->cookie;
    dc.transport = c->transport;
    dc.peers = c->peers;
    dc.npeers = c->npeers;
    dc.heartbeat_ns = 100000000ull;   /* 100 ms */
    dc.down_after_ns = 2000000000ull; /* 2 s of silence: down */
    dc.eal_args = c->eal_args;
    dc.eal_argc = c->eal_argc;
    dc.dpdk_port = c->dpdk_port;
    dc.test_drop_permille = c->drop_permille;
    int rc = hy_dist_start(&dc);
    if (rc != 0)
        fprintf(stderr, "hy_dist_start: %s (%s)\n", hy_strerror(rc), hy_err_name(rc));
    return rc;
}

static void cluster_stop(void *arg)
{
    (void)arg;
    hy_dist_stop();
}

/* shard 0: cluster_sup, given a pointer to the configuration (copied by the
 * supervisors down to the server) */
static const struct hy_child_spec *cluster_children(unsigned shard, size_t *n, void *arg)
{
    static const struct cluster_config *cfg;
    static struct hy_child_spec spec[1];
    if (shard != 0) {
        *n = 0;
        return NULL;
    }
    cfg = arg;
    spec[0] = (struct hy_child_spec){
        .id = "cluster_sup",
        .start = cluster_sup_start_link,
        .arg = &cfg,
        .arg_size = sizeof(cfg),
        .restart = HY_PERMANENT,
        .type = HY_SUPERVISOR, /* shutdown: infinity, the default for supervisors */
    };
    *n = 1;
    return spec;
}

const struct hy_app cluster_app = {
    .name = "cluster",
    .shard_children = cluster_children,
    .start = cluster_start,
    .stop = cluster_stop,
};
