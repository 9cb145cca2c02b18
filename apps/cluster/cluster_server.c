/* The cluster server: a GenServer every node runs, registered as
 * CLUSTER_NAME. Other nodes find it by name (hy_dist_send_name: a PING
 * answered with a PONG from its pid), then use that pid as any local one:
 * gen_server calls (HELLO, TICK, BYE) and casts (NOTE). It counts what it
 * sees per peer and per sending shard, and checks that each sender's notes
 * arrive in the order they were sent. Its state lives in its arena
 * (hy_alloc), released with the process however it ends. */
#include <stdio.h>
#include <string.h>

#include "cluster.h"

#define CALL_TIMEOUT_NS 5000000000LL

struct from_shard {
    uint64_t notes;        /* received */
    uint64_t next;         /* seq expected next */
    uint64_t out_of_order; /* notes whose seq was not `next` */
};

struct state {
    const struct cluster_config *cfg;
    const struct hy_dist_peer *self;
    bool greeted[CLUSTER_MAX_PEERS];
    bool bye[CLUSTER_MAX_PEERS];
    struct from_shard *from[CLUSTER_MAX_PEERS]; /* [peer][shard], HY_MAX_SHARDS each */
    struct cluster_status total;
};

static int peer_index(const struct state *st, uint32_t node)
{
    for (size_t i = 0; i < st->cfg->npeers; i++)
        if (st->cfg->peers[i].node_id == node && node != st->cfg->node_id)
            return (int)i;
    return -1;
}

static struct from_shard *from_shard(struct state *st, uint32_t node, uint32_t shard)
{
    int i = peer_index(st, node);
    if (i < 0 || shard >= HY_MAX_SHARDS)
        return NULL;
    return &st->from[i][shard];
}

/* ---- callbacks (run in the server process) ----------------------------------- */

static int cluster_init(struct hy_gs *gs, void *arg)
{
    const struct cluster_config *cfg = *(const struct cluster_config *const *)arg;
    struct state *st = hy_alloc(sizeof(*st));
    if (!st) {
        hy_gs_stop(gs, hy_reason_user(1, "out of memory"));
        return HY_GS_STOP;
    }
    memset(st, 0, sizeof(*st));
    st->cfg = cfg;
    st->self = cluster_self(cfg);
    for (size_t i = 0; i < cfg->npeers; i++) {
        st->from[i] = hy_alloc(HY_MAX_SHARDS * sizeof(struct from_shard));
        if (!st->from[i]) {
            hy_gs_stop(gs, hy_reason_user(1, "out of memory"));
            return HY_GS_STOP;
        }
        memset(st->from[i], 0, HY_MAX_SHARDS * sizeof(struct from_shard));
    }
    hy_gs_set_state(gs, st);
    return HY_GS_OK;
}

static int cluster_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len,
                        hy_gs_from from)
{
    struct state *st = hy_gs_state(gs);
    switch (tag) {
    case CLUSTER_HELLO:
    case CLUSTER_BYE: {
        struct cluster_hello h;
        if (len != sizeof(h))
            return HY_GS_OK; /* malformed: no reply, the caller times out */
        memcpy(&h, data, sizeof(h));
        h.name[sizeof(h.name) - 1] = '\0';
        int i = peer_index(st, h.node);
        if (i < 0)
            return HY_GS_OK;
        if (tag == CLUSTER_BYE) {
            if (!st->bye[i]) {
                st->bye[i] = true;
                st->total.byes++;
            }
            hy_gen_server_reply(from, CLUSTER_BYE_OK, NULL, 0);
            return HY_GS_OK;
        }
        if (!st->greeted[i]) {
            st->greeted[i] = true;
            st->total.greeted++;
        }
        char text[160];
        int n = snprintf(text, sizeof(text),
                         "welcome %s; %s (node %u) has now been greeted by %u of %zu peers", h.name,
                         st->self->name, st->self->node_id, st->total.greeted, st->cfg->npeers - 1);
        hy_gen_server_reply(from, CLUSTER_WELCOME, text, (size_t)n + 1);
        return HY_GS_OK;
    }
    case CLUSTER_TICK: {
        struct cluster_note n;
        if (len != sizeof(n))
            return HY_GS_OK;
        memcpy(&n, data, sizeof(n));
        struct from_shard *f = from_shard(st, n.node, n.shard);
        struct cluster_tock t = {0, 0};
        if (f) {
            t.notes = f->notes;
            t.out_of_order = f->out_of_order;
        }
        st->total.ticks++;
        hy_gen_server_reply(from, CLUSTER_TOCK, &t, sizeof(t));
        return HY_GS_OK;
    }
    case CLUSTER_STATUS:
        hy_gen_server_reply(from, CLUSTER_STATUS_IS, &st->total, sizeof(st->total));
        return HY_GS_OK;
    default:
        return HY_GS_OK; /* unknown request: no reply, the caller times out */
    }
}

static int cluster_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    struct state *st = hy_gs_state(gs);
    struct cluster_note n;
    if (tag != CLUSTER_NOTE || len != sizeof(n))
        return HY_GS_OK;
    memcpy(&n, data, sizeof(n));
    struct from_shard *f = from_shard(st, n.node, n.shard);
    if (!f)
        return HY_GS_OK;
    if (n.seq != f->next) {
        f->out_of_order++;
        st->total.out_of_order++;
    }
    f->next = n.seq + 1;
    f->notes++;
    st->total.notes++;
    return HY_GS_OK;
}

/* Plain messages: a PING sent to our name from another node. */
static int cluster_info(struct hy_gs *gs, const struct hy_msg *m)
{
    struct state *st = hy_gs_state(gs);
    if (m->tag == CLUSTER_PING)
        hy_send(m->from, CLUSTER_PONG, st->self->name, strlen(st->self->name) + 1);
    return HY_GS_OK;
}

/* handle_continue and terminate: NULL, the OTP defaults */
const struct hy_gen_server_ops cluster_server_ops = {
    .init = cluster_init,
    .handle_call = cluster_call,
    .handle_cast = cluster_cast,
    .handle_info = cluster_info,
};

/* ---- API (runs in the caller) ---------------------------------------------------- */

int cluster_server_start_link(const void *arg, size_t arg_size, hy_pid *pid)
{
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = CLUSTER_NAME;
    o.arg_size = arg_size; /* the pointer to the configuration, copied */
    return hy_gen_server_start_link(&cluster_server_ops, arg, &o, pid);
}

struct pong_of {
    uint32_t node;
};

static int is_pong_of(const struct hy_msg *m, void *arg)
{
    const struct pong_of *p = arg;
    return m->tag == CLUSTER_PONG && hy_pid_node(m->from) == p->node;
}

int cluster_server_ping(uint32_t node, int64_t timeout_ns, hy_pid *server, char *name, size_t cap)
{
    uint32_t from = hy_node_id();
    int rc = hy_dist_send_name(CLUSTER_NAME, node, CLUSTER_PING, &from, sizeof(from));
    if (rc)
        return rc;
    struct pong_of p = {node};
    struct hy_msg *m;
    rc = hy_recv_match(is_pong_of, &p, &m, timeout_ns);
    if (rc)
        return rc;
    *server = m->from;
    if (cap) {
        size_t n = m->size < cap - 1 ? m->size : cap - 1;
        memcpy(name, m->data, n);
        name[n] = '\0';
    }
    hy_msg_free(m);
    /* earlier PINGs of ours may still be answered: drop those PONGs */
    while (hy_recv_match(is_pong_of, &p, &m, HY_NOWAIT) == 0)
        hy_msg_free(m);
    return 0;
}

int cluster_server_hello(hy_pid server, const struct cluster_hello *me, char *text, size_t cap)
{
    struct hy_msg *r;
    int rc = hy_gen_server_call(server, CLUSTER_HELLO, me, sizeof(*me), CALL_TIMEOUT_NS, &r, NULL);
    if (rc)
        return rc;
    if (cap) {
        size_t n = r->size < cap - 1 ? r->size : cap - 1;
        memcpy(text, r->data, n);
        text[n] = '\0';
    }
    hy_msg_free(r);
    return 0;
}

int cluster_server_note(hy_pid server, const struct cluster_note *n)
{
    return hy_gen_server_cast(server, CLUSTER_NOTE, n, sizeof(*n));
}

int cluster_server_tick(hy_pid server, const struct cluster_note *n, struct cluster_tock *out)
{
    struct hy_msg *r;
    int rc = hy_gen_server_call(server, CLUSTER_TICK, n, sizeof(*n), CALL_TIMEOUT_NS, &r, NULL);
    if (rc)
        return rc;
    if (r->tag != CLUSTER_TOCK || r->size != sizeof(*out)) {
        hy_msg_free(r);
        return HY_EINVAL;
    }
    memcpy(out, r->data, sizeof(*out));
    hy_msg_free(r);
    return 0;
}

int cluster_server_bye(hy_pid server, const struct cluster_hello *me)
{
    struct hy_msg *r;
    int rc = hy_gen_server_call(server, CLUSTER_BYE, me, sizeof(*me), CALL_TIMEOUT_NS, &r, NULL);
    if (rc)
        return rc;
    hy_msg_free(r);
    return 0;
}

int cluster_server_status(struct cluster_status *out)
{
    struct hy_msg *r;
    int rc =
        hy_gen_server_call_name(CLUSTER_NAME, CLUSTER_STATUS, NULL, 0, CALL_TIMEOUT_NS, &r, NULL);
    if (rc)
        return rc;
    if (r->size != sizeof(*out)) {
        hy_msg_free(r);
        return HY_EINVAL;
    }
    memcpy(out, r->data, sizeof(*out));
    hy_msg_free(r);
    return 0;
}
