/* Distribution: the public API (net/dist.h). The parts: dist_channel.c
 * (reliable channels), dist_handshake.c, dist_deliver.c, dist_ctrl.c,
 * dist_spawn.c, dist_fault.c; internal declarations in dist_internal.h. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

#include <stddef.h>

/* tag_bits (added later) sits in what was padding after `authenticate`: the
 * fields after it keep their offsets and the struct its size, so a program
 * built against the older header still works with this library. */
_Static_assert(offsetof(struct hy_dist_config, tag_bits) >
                   offsetof(struct hy_dist_config, authenticate) &&
                   offsetof(struct hy_dist_config, tag_bits) + sizeof(unsigned) <=
                       offsetof(struct hy_dist_config, max_message_size) &&
                   offsetof(struct hy_dist_config, max_message_size) ==
                       offsetof(struct hy_dist_config, down_after_ns) + 2 * sizeof(uint64_t),
               "hy_dist_config's layout after authenticate is unchanged");

struct hy__dist_state hy__dist;

/* ---- control messages between shards ------------------------------------------- */

static void ctrl_send(struct hy_shard *sh, unsigned to_shard, int op, uint32_t node, hy_pid req,
                      hy_ref ref, uint32_t epoch)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, sizeof(struct hy__ctrl), &m) != 0)
        return;
    struct hy__ctrl c = {.op = op, .node = node, .epoch = epoch, .requester = req};
    memcpy(m->data, &c, sizeof(c));
    m->kind = HY_K_DIST_CTRL;
    m->ref = ref;
    m->to = hy__dist_shard_pid(to_shard);
    hy__route(sh, m);
}

void hy__dist_send_ctrl(struct hy_shard *sh, unsigned to_shard, int op, uint32_t node, hy_pid req,
                        hy_ref ref)
{
    ctrl_send(sh, to_shard, op, node, req, ref, 0);
}

void hy__dist_broadcast(struct hy_shard *sh, int op, uint32_t node, uint32_t epoch)
{
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        ctrl_send(sh, s, op, node, HY_PID_NONE, HY_REF_NONE, epoch);
}

void hy__dist_reply_rc(struct hy_shard *sh, hy_pid to, hy_ref ref, int rc)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, sizeof(rc), &m) != 0)
        return;
    memcpy(m->data, &rc, sizeof(rc));
    m->tag = HY_TAG_DIST_REPLY;
    m->ref = ref;
    m->to = to;
    hy__route(sh, m);
}

/* ---- public API ---------------------------------------------------------------------------- */

void hy_dist_config_init(struct hy_dist_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->node_id = 0; /* the runtime's */
    cfg->transport = HY_DIST_UDP;
    cfg->heartbeat_ns = 100000000ull;
    cfg->down_after_ns = 1000000000ull;
    cfg->send_queue_max = 65536;
    cfg->recv_backlog_max = 4096;
    cfg->recv_backlog_bytes_max = 64u << 20;
    cfg->authenticate = true;
    cfg->tag_bits = 64;
}

static int wait_count(_Atomic int *counter, int want)
{
    uint64_t deadline = hy_now_ns() + 10000000000ull;
    while (atomic_load(counter) < want) {
        if (hy_now_ns() > deadline)
            return HY_ETIMEDOUT;
        hy_sleep_ns(200000);
    }
    return 0;
}

/* Each refusal has its own error and says why in the log. */
static int check_config(const struct hy_dist_config *cfg)
{
    if (!cfg) {
        hy_log(HY_LOG_ERROR, "dist: start: no configuration");
        return HY_EINVAL;
    }
    if (!cfg->cookie || !*cfg->cookie) {
        hy_log(HY_LOG_ERROR, "dist: start: no cookie (hy_dist_config.cookie)");
        return HY_EINVAL;
    }
    size_t cl = strlen(cfg->cookie);
    if (cl >= sizeof(hy__dist.cookie)) {
        hy_log(HY_LOG_ERROR, "dist: start: the cookie is %zu bytes; at most %zu", cl,
               sizeof(hy__dist.cookie) - 1);
        return HY_ERANGE;
    }
    if (!cfg->peers || cfg->npeers == 0) {
        hy_log(HY_LOG_ERROR, "dist: start: no peers (hy_dist_config.peers, npeers)");
        return HY_EINVAL;
    }
    if (cfg->npeers > MAX_PEERS) {
        hy_log(HY_LOG_ERROR, "dist: start: %zu peers; at most %d", cfg->npeers, MAX_PEERS);
        return HY_ENOSPC;
    }
    if (cfg->tag_bits != 0 && cfg->tag_bits != 64 && cfg->tag_bits != 128) {
        hy_log(HY_LOG_ERROR, "dist: start: hy_dist_config.tag_bits is %u; 64 or 128 (0: 64)",
               cfg->tag_bits);
        return HY_EINVAL;
    }
    if (cfg->node_id && cfg->node_id != hy__rt.node_id) {
        hy_log(HY_LOG_ERROR,
               "dist: start: hy_dist_config.node_id %u differs from the runtime's node id %u "
               "(leave it 0)",
               cfg->node_id, hy__rt.node_id);
        return HY_EINVAL;
    }
    bool self = false;
    for (size_t i = 0; i < cfg->npeers; i++) {
        if (cfg->peers[i].node_id == hy__rt.node_id)
            self = true;
        for (size_t j = 0; j < i; j++) {
            if (cfg->peers[j].node_id == cfg->peers[i].node_id) {
                hy_log(HY_LOG_ERROR, "dist: start: node id %u appears twice among the peers",
                       cfg->peers[i].node_id);
                return HY_EEXIST;
            }
        }
    }
    if (!self) {
        hy_log(HY_LOG_ERROR, "dist: start: this node (id %u) is not among the peers",
               hy__rt.node_id);
        return HY_ENOENT;
    }
    return 0;
}

int hy_dist_start(const struct hy_dist_config *cfg)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    int crc = check_config(cfg);
    if (crc)
        return crc;
    const struct hy__transport *tp = NULL;
    if (cfg->transport == HY_DIST_UDP)
        tp = &hy__transport_udp;
#if HY_HAVE_DPDK
    else if (cfg->transport == HY_DIST_DPDK)
        tp = &hy__transport_dpdk;
#endif
    if (!tp) {
        hy_log(HY_LOG_ERROR, "dist: start: transport %d not built in", cfg->transport);
        return HY_ENOTSUP;
    }
    int expected = 0;
    if (!atomic_compare_exchange_strong(&hy__dist.started, &expected, 1))
        return HY_EALREADY;
    if (sodium_init() < 0) {
        atomic_store(&hy__dist.started, 0);
        return HY_EIO;
    }
    hy__dist.cfg = *cfg;
    hy__dist.cfg.peers = NULL;
    if (!hy__dist.cfg.heartbeat_ns)
        hy__dist.cfg.heartbeat_ns = 100000000ull;
    if (!hy__dist.cfg.down_after_ns)
        hy__dist.cfg.down_after_ns = 1000000000ull;
    if (!hy__dist.cfg.send_queue_max)
        hy__dist.cfg.send_queue_max = 65536;
    if (!hy__dist.cfg.recv_backlog_max)
        hy__dist.cfg.recv_backlog_max = 4096;
    if (!hy__dist.cfg.recv_backlog_bytes_max)
        hy__dist.cfg.recv_backlog_bytes_max = 64u << 20;
    if (!hy__dist.cfg.max_message_size || hy__dist.cfg.max_message_size > hy__rt.cfg.max_message_size)
        hy__dist.cfg.max_message_size = hy__rt.cfg.max_message_size;
    memcpy(hy__dist.peers, cfg->peers, cfg->npeers * sizeof(*cfg->peers));
    hy__dist.npeers = cfg->npeers;
    hy__dist.self = -1;
    hy__dist.cfg.node_id = hy__rt.node_id;
    for (size_t i = 0; i < hy__dist.npeers; i++)
        if (hy__dist.peers[i].node_id == hy__rt.node_id)
            hy__dist.self = (int)i;
    strcpy(hy__dist.cookie, cfg->cookie);
    hy__dist.cookie_len = strlen(cfg->cookie);
    if (!hy__dist.cfg.tag_bits)
        hy__dist.cfg.tag_bits = 64;
    hy__dist.tag_len = (uint8_t)(hy__dist.cfg.tag_bits / 8);
    hy__dist.tag_flags = (uint16_t)(HY_WF_AUTH | (hy__dist.tag_len == HY_WIRE_TAG128 ? HY_WF_TAG128 : 0));
    hy__dist.tp = tp;
    for (size_t i = 0; i < MAX_PEERS; i++) {
        atomic_store(&hy__dist.node_up[i], 0);
        atomic_store(&hy__dist.node_down[i], 0);
        atomic_store(&hy__dist.peer_quiet[i], 0);
    }
    if (hy__dist.self < 0) {
        atomic_store(&hy__dist.started, 0);
        return HY_EINVAL;
    }
    atomic_store(&hy__dist.opened, 0);
    atomic_store(&hy__dist.open_err, 0);
    atomic_store(&hy__dist.stopped, 0);
    if (hy__dist.tp->start) {
        int trc = hy__dist.tp->start(cfg, &hy__dist.peers[hy__dist.self], hy__rt.nshards);
        if (trc) {
            atomic_store(&hy__dist.started, 0);
            return trc;
        }
    }
    hy__dist.cfg.eal_args = NULL; /* borrowed for the start only */
    hy__dist.cfg.eal_argc = 0;
    hy__kind_register(HY_K_DIST_CTRL, hy__dist_on_ctrl);
    hy__kind_register(HY_K_DIST_FRAME, hy__dist_on_handed_frame);
    /* The hooks first: a shard's endpoint serves peers from the moment it
     * opens, while others may still be opening (a peer's session can come up
     * and its message be answered before this call returns; with the remote
     * send hook not yet set, the answer was dropped as a send to a dead pid) */
    hy__dist_monitor_node_hook = hy__dist_monitor_node;
    __atomic_store_n(&hy__dist_busy_hook, hy__dist_busy, __ATOMIC_RELEASE);
    hy_hook_set_remote_send(hy__dist_remote_send, NULL);
    atomic_store_explicit(&hy__dist_reachable_hook, hy__dist_reachable, memory_order_release);
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        hy__dist_send_ctrl(sh, s, CTRL_OPEN, 0, HY_PID_NONE, HY_REF_NONE);
    int rc = wait_count(&hy__dist.opened, (int)hy__rt.nshards);
    if (rc == 0)
        rc = atomic_load(&hy__dist.open_err);
    if (rc) {
        hy_hook_set_remote_send(NULL, NULL);
        hy__dist_monitor_node_hook = NULL;
        __atomic_store_n(&hy__dist_busy_hook, NULL, __ATOMIC_RELEASE);
        atomic_store_explicit(&hy__dist_reachable_hook, NULL, memory_order_release);
        for (unsigned s = 0; s < hy__rt.nshards; s++)
            hy__dist_send_ctrl(sh, s, CTRL_STOP, 0, HY_PID_NONE, HY_REF_NONE);
        wait_count(&hy__dist.stopped, (int)hy__rt.nshards);
        if (hy__dist.tp->stop)
            hy__dist.tp->stop();
        atomic_store(&hy__dist.started, 0);
        return rc;
    }
    return 0;
}

/* Whether every peer said it no longer polls its device (HY_WCLOSE_STOPPED). */
static bool peers_quiet(void)
{
    for (size_t i = 0; i < hy__dist.npeers; i++)
        if ((int)i != hy__dist.self && !atomic_load(&hy__dist.peer_quiet[i]))
            return false;
    return true;
}

int hy_dist_stop(void)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    /* graceful: let what was sent reach the peers (bounded by down_after) */
    uint64_t deadline = hy_now_ns() + hy__dist.cfg.down_after_ns;
    for (;;) {
        hy_sleep_ns(1000000); /* first: every shard's hook runs after our last sends */
        unsigned busy = 0;
        for (unsigned s = 0; s < hy__rt.nshards; s++)
            if (hy__dist.eps[s])
                busy += atomic_load_explicit(&hy__dist.eps[s]->unsent, memory_order_relaxed);
        if (!busy || hy_now_ns() > deadline)
            break;
    }
    hy_hook_set_remote_send(NULL, NULL);
    hy__dist_monitor_node_hook = NULL;
    __atomic_store_n(&hy__dist_busy_hook, NULL, __ATOMIC_RELEASE);
    atomic_store_explicit(&hy__dist_reachable_hook, NULL, memory_order_release);
    /* First every shard stops polling the device, then the CLOSEs go out,
     * saying so (HY_WCLOSE_STOPPED): a peer that shares the device's rings
     * with us (memif) may free them once it has one. */
    atomic_store(&hy__dist.stopped, 0);
    atomic_store(&hy__dist.quiesced, 0);
    atomic_store(&hy__dist.all_quiet, 0);
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        hy__dist_send_ctrl(sh, s, CTRL_QUIESCE, 0, HY_PID_NONE, HY_REF_NONE);
    int rc = wait_count(&hy__dist.quiesced, (int)hy__rt.nshards);
    if (rc == 0)
        atomic_store(&hy__dist.all_quiet, 1);
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        hy__dist_send_ctrl(sh, s, CTRL_STOP, 0, HY_PID_NONE, HY_REF_NONE);
    int rc2 = wait_count(&hy__dist.stopped, (int)hy__rt.nshards);
    rc = rc ? rc : rc2;
    if (rc == 0 && hy__dist.tp->peer_attached && !peers_quiet()) {
        /* A peer sharing our rings (memif) may still be polling them, and
         * our stop would free them under it (DPDK's memif frees them on its
         * interrupt thread, unsynchronised with the poller). Our shards no
         * longer poll, so its own stop is safe for us: wait for it to
         * detach, up to the silence limit, after which it declares us down
         * anyway. */
        uint64_t until = hy_now_ns() + hy__dist.cfg.down_after_ns;
        while (hy__dist.tp->peer_attached() && !peers_quiet() && hy_now_ns() < until)
            hy_sleep_ns(1000000);
    }
    if (rc == 0 && hy__dist.tp->stop)
        hy__dist.tp->stop(); /* (a shard that never closed may still use it) */
    atomic_store(&hy__dist.started, 0);
    return rc;
}

int hy_dist_connect(uint32_t node)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    if (hy__dist_peer_index(node) < 0)
        return HY_ENOENT;
    hy_ref ref;
    hy_ref_make(&ref);
    hy__dist_send_ctrl(sh, 0, CTRL_CONNECT, node, sh->current->pid, ref);
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, (int64_t)(2 * hy__dist.cfg.down_after_ns));
    if (rc)
        return rc;
    int res;
    memcpy(&res, m->data, sizeof(res));
    hy_msg_free(m);
    return res;
}

int hy_dist_disconnect(uint32_t node)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    if (hy__dist_peer_index(node) < 0)
        return HY_ENOENT;
    hy__dist_send_ctrl(sh, 0, CTRL_DISCONNECT, node, HY_PID_NONE, HY_REF_NONE);
    return 0;
}

int hy_dist_nodes(uint32_t *nodes, size_t max, size_t *count)
{
    if (!count || (max && !nodes))
        return HY_EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < hy__dist.npeers; i++) {
        if (atomic_load(&hy__dist.node_up[i])) {
            if (n < max)
                nodes[n] = hy__dist.peers[i].node_id;
            n++;
        }
    }
    *count = n;
    return 0;
}

int hy_dist_send_name(const char *name, uint32_t node, uint64_t tag, const void *data, size_t len)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (!name || !*name || strlen(name) >= HY_NAME_MAX || (tag & HY_TAG_SYSTEM) || (!data && len))
        return HY_EINVAL;
    if (node == hy__rt.node_id)
        return hy_send_name(name, tag, data, len);
    if (hy__dist_peer_index(node) < 0)
        return HY_ENOENT;
    struct hy_msg *m;
    int rc = hy__msg_alloc(sh, HY_NAME_MAX + len, &m);
    if (rc)
        return rc;
    memset(m->data, 0, HY_NAME_MAX);
    strcpy((char *)m->data, name);
    if (len)
        memcpy(m->data + HY_NAME_MAX, data, len);
    m->kind = HY_K_DIST_NAME;
    m->tag = tag;
    m->to = hy_pid_make(node, 0, 0, 0, 0);
    hy__route(sh, m);
    return 0;
}

int hy__monitor_named(hy_pid pid, const char *name, hy_ref *ref);

int hy_dist_monitor_name(const char *name, uint32_t node, hy_ref *ref)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!name || !*name || strlen(name) >= HY_NAME_MAX)
        return HY_EINVAL;
    if (node == hy__rt.node_id)
        return hy_monitor_name(name, ref);
    if (hy__dist_peer_index(node) < 0)
        return HY_ENOENT;
    return hy__monitor_named(hy_pid_make(node, 0, 0, 0, 0), name, ref);
}

int hy_dist_stats_get(struct hy_dist_stats *out)
{
    if (!out)
        return HY_EINVAL;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    memset(out, 0, sizeof(*out));
    for (unsigned s = 0; s < HY_MAX_SHARDS; s++) {
        struct hy__ep *ep = hy__dist.eps[s];
        if (!ep)
            continue;
        const uint64_t *a = (const uint64_t *)&ep->st;
        uint64_t *b = (uint64_t *)out;
        for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
            b[k] += __atomic_load_n(&a[k], __ATOMIC_RELAXED);
    }
    return 0;
}


static void chan_stats_add(struct hy_dist_channel_stats *out, const struct hy__chan *ch)
{
    const uint64_t *a = (const uint64_t *)&ch->cst;
    uint64_t *b = (uint64_t *)out;
    for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++) {
        uint64_t v = __atomic_load_n(&a[k], __ATOMIC_RELAXED);
        bool largest = &b[k] == &out->srtt_ns || &b[k] == &out->rttvar_ns ||
                       &b[k] == &out->rto_ns || &b[k] == &out->queue_depth_max;
        b[k] = largest ? (v > b[k] ? v : b[k]) : b[k] + v;
    }
}

int hy_dist_channel_stats_get(uint32_t node, unsigned local_shard, unsigned remote_shard,
                              struct hy_dist_channel_stats *out)
{
    if (!out || local_shard >= HY_MAX_SHARDS || remote_shard >= HY_MAX_SHARDS)
        return HY_EINVAL;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    int pi = hy__dist_peer_index(node);
    if (pi < 0)
        return HY_ENOENT;
    struct hy__ep *ep = hy__dist.eps[local_shard];
    if (!ep)
        return HY_ENOENT;
    const struct hy__chan *ch =
        __atomic_load_n(&ep->chans[(size_t)pi * HY_MAX_SHARDS + remote_shard], __ATOMIC_ACQUIRE);
    if (!ch)
        return HY_ENOENT;
    memset(out, 0, sizeof(*out));
    chan_stats_add(out, ch);
    return 0;
}

int hy_dist_peer_stats_get(uint32_t node, struct hy_dist_channel_stats *out)
{
    if (!out)
        return HY_EINVAL;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    int pi = hy__dist_peer_index(node);
    if (pi < 0)
        return HY_ENOENT;
    memset(out, 0, sizeof(*out));
    for (unsigned s = 0; s < HY_MAX_SHARDS; s++) {
        struct hy__ep *ep = hy__dist.eps[s];
        if (!ep)
            continue;
        for (unsigned r = 0; r < HY_MAX_SHARDS; r++) {
            const struct hy__chan *ch =
                __atomic_load_n(&ep->chans[(size_t)pi * HY_MAX_SHARDS + r], __ATOMIC_ACQUIRE);
            if (ch)
                chan_stats_add(out, ch);
        }
    }
    return 0;
}
