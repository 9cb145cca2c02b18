/* The cluster application: the interfaces between its modules, shaped like
 * an OTP release (apps/cluster/README.md):
 *
 *   cluster_server.c  the GenServer every node runs (registered "cluster"):
 *                     callbacks and its client API, used across nodes
 *   cluster_sup.c     the supervisor that keeps the server running
 *   cluster_app.c     the application: distribution up before the tree,
 *                     down after it; the server on shard 0
 *   main.c            hydra-cluster: options, the cluster file, and the
 *                     process that talks to the other nodes
 */
#ifndef HY_APPS_CLUSTER_H
#define HY_APPS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "hydra.h"

#define CLUSTER_MAX_PEERS 16
#define CLUSTER_MAX_EAL   32

/* What a node runs with (filled by main.c, read-only once the application
 * runs). */
struct cluster_config {
    uint32_t node_id;                             /* this node: one of peers[] */
    const char *cookie;                           /* shared by every node */
    int transport;                                /* enum hy_dist_transport */
    struct hy_dist_peer peers[CLUSTER_MAX_PEERS]; /* the cluster file, this node included */
    size_t npeers;
    const char *eal_args[CLUSTER_MAX_EAL]; /* HY_DIST_DPDK: passed to rte_eal_init */
    int eal_argc;
    uint16_t dpdk_port;
    unsigned seconds;       /* how long the nodes chat */
    unsigned wait_seconds;  /* bound on finding the peers, and on the goodbyes */
    unsigned interval_ms;   /* pause between two rounds of chat */
    unsigned notes;         /* casts per peer and round */
    unsigned drop_permille; /* fault injection: outgoing frames dropped, per mille */
};

/* This node's entry in c's peer table (borrowed from c; NULL if missing).
 * Context: anywhere. */
const struct hy_dist_peer *cluster_self(const struct cluster_config *c);

/* ---- cluster_server.c ---------------------------------------------------------- */

/* The name the server registers under, on every node. */
#define CLUSTER_NAME "cluster"

/* Request and reply tags (flat payloads: the structs below). */
enum {
    CLUSTER_PING = 1, /* plain message sent by name: {CLUSTER_NAME, node}; answered with PONG */
    CLUSTER_PONG,     /* payload: the answering node's name */
    CLUSTER_HELLO,    /* call, struct cluster_hello -> CLUSTER_WELCOME (text) */
    CLUSTER_WELCOME,
    CLUSTER_NOTE, /* cast, struct cluster_note */
    CLUSTER_TICK, /* call, struct cluster_note -> CLUSTER_TOCK, struct cluster_tock */
    CLUSTER_TOCK,
    CLUSTER_BYE, /* call, struct cluster_hello -> CLUSTER_BYE_OK */
    CLUSTER_BYE_OK,
    CLUSTER_STATUS, /* call (local) -> CLUSTER_STATUS_IS, struct cluster_status */
    CLUSTER_STATUS_IS,
};

struct cluster_hello {
    uint32_t node;
    char name[HY_DIST_NAME_MAX];
};

/* A cast from one process (node, shard) of another node; seq counts its
 * notes from 0, so the server sees whether they arrive in order. A tick
 * carries the number of notes sent so far. */
struct cluster_note {
    uint32_t node;
    uint32_t shard;
    uint64_t seq;
};

/* What the server has seen from the tick's sender (node, shard). */
struct cluster_tock {
    uint64_t notes;        /* notes received */
    uint64_t out_of_order; /* notes whose seq was not the expected one */
};

struct cluster_status {
    uint32_t greeted; /* peers that said hello */
    uint32_t byes;    /* peers that said goodbye */
    uint64_t notes, ticks, out_of_order;
};

/* Callbacks of the server; init's arg is the struct cluster_config. */
extern const struct hy_gen_server_ops cluster_server_ops;

/* Child start function: starts the server registered as CLUSTER_NAME,
 * linked to the calling supervisor; arg[arg_size] holds a pointer to the
 * struct cluster_config. */
int cluster_server_start_link(const void *arg, size_t arg_size, hy_pid *pid);

/* Sends PING to {CLUSTER_NAME, node} and waits up to timeout_ns for the
 * PONG: *server gets the server's pid there, name[cap] its node's name.
 * Errors: HY_ETIMEDOUT, hy_dist_send_name's. Context: a process. */
int cluster_server_ping(uint32_t node, int64_t timeout_ns, hy_pid *server, char *name, size_t cap);

/* Calls HELLO on server (usually another node's): text[cap] gets the
 * welcome. Errors: hy_gen_server_call's. Context: a process. */
int cluster_server_hello(hy_pid server, const struct cluster_hello *me, char *text, size_t cap);

/* Casts one note (n borrowed, copied). Errors: hy_gen_server_cast's.
 * Context: a process. */
int cluster_server_note(hy_pid server, const struct cluster_note *n);

/* Calls TICK: *out gets what server has seen from (n->node, n->shard).
 * Errors: hy_gen_server_call's. Context: a process. */
int cluster_server_tick(hy_pid server, const struct cluster_note *n, struct cluster_tock *out);

/* Calls BYE: the server notes that this node is done talking to it.
 * Errors: hy_gen_server_call's. Context: a process. */
int cluster_server_bye(hy_pid server, const struct cluster_hello *me);

/* Calls this node's own server for its counters, copied into *out.
 * Errors: hy_gen_server_call_name's, HY_EINVAL (bad reply). Context: a process. */
int cluster_server_status(struct cluster_status *out);

/* ---- cluster_sup.c ------------------------------------------------------------- */

/* Child start function: a one_for_one supervisor over the server; arg as
 * cluster_server_start_link's. */
int cluster_sup_start_link(const void *arg, size_t arg_size, hy_pid *pid);

/* ---- cluster_app.c ------------------------------------------------------------- */

/* The application: start brings distribution up (hy_dist_start), shard 0's
 * root supervises cluster_sup, stop takes distribution down. Its arg must
 * be the struct cluster_config (hy_app.arg); main.c sets main. */
extern const struct hy_app cluster_app;

#endif /* HY_APPS_CLUSTER_H */
