/* The control plane: per-shard requests (open, close, connect, node up
 * and down) carried as runtime messages between shards. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* A node-down event for peer pi, from any shard: every shard resets its
 * channels to pi that began before it and tells links and monitors
 * (noconnection, nodedown). Sent also when the node was never up: a node
 * monitor of an unreachable node gets its nodedown.
 *
 * since: the peer's epoch when the ending session or handshake began. One
 * event per epoch: when the epoch has moved on since (another shard's
 * channel already saw the node go, and this shard has not yet taken that
 * event), the ending session is covered by it and nothing is declared
 * again; a second event would end the sessions the node's next incarnation
 * may already have opened. */
void hy__dist_node_went_down(struct hy_shard *sh, int pi, uint32_t since)
{
    uint32_t epoch = since;
    if (!atomic_compare_exchange_strong(&hy__dist.epoch[pi], &epoch, since + 1))
        return;
    atomic_store(&hy__dist.node_down[pi], 1);
    atomic_store(&hy__dist.node_up[pi], 0);
    hy__dist_count(&hy__dist.eps[sh->id]->st.nodes_down, 1);
    hy__dist_broadcast(sh, CTRL_NODE_DOWN, hy__dist.peers[pi].node_id, since + 1);
}

/* For hy_monitor/hy_link on a pid of node: a configured peer not declared
 * down can be reached (a connection is made on demand). */
bool hy__dist_reachable(uint32_t node)
{
    int pi = hy__dist_peer_index(node);
    return pi >= 0 && atomic_load(&hy__dist.started) && !atomic_load(&hy__dist.node_down[pi]);
}

int hy__dist_monitor_node(uint32_t node)
{
    struct hy_shard *sh = hy__shard();
    int pi = hy__dist_peer_index(node);
    if (pi < 0 || !sh || !atomic_load(&hy__dist.started))
        return -1;
    if (!atomic_load(&hy__dist.node_up[pi]))
        hy__dist_send_ctrl(sh, 0, CTRL_ENSURE, node, HY_PID_NONE, HY_REF_NONE);
    return 0;
}

/* ---- control requests, on each shard --------------------------------------------------- */

static void ep_open(struct hy_shard *sh)
{
    struct hy__ep *ep = calloc(1, sizeof(*ep));
    int rc = HY_ENOMEM;
    if (ep) {
        ep->shard = sh->id;
        ep->self = &hy__dist.peers[hy__dist.self];
        ep->fd = -1;
        ep->chans = calloc(hy__dist.npeers * HY_MAX_SHARDS, sizeof(*ep->chans));
        /* room in the active set for every channel there can be: adding
         * one never needs memory later */
        struct ep_priv *pv = &hy__dist.priv[sh->id];
        pv->capactive = hy__dist.npeers * HY_MAX_SHARDS;
        pv->active = calloc(pv->capactive, sizeof(*pv->active));
        rc = ep->chans && pv->active ? hy__dist.tp->open(ep) : HY_ENOMEM;
        if (rc == 0) {
            hy__dist.priv[sh->id].rng = (hy__dist.cfg.test_fault_seed ^ 0x9e3779b97f4a7c15ull) +
                                 hy__rt.node_id * 0x100000001b3ull + sh->id * 0xbf58476d1ce4e5b9ull;
            ep->hook.poll = hy__ep_poll;
            ep->hook.next_deadline_ns = hy__ep_deadline;
            ep->hook.ctx = ep;
            ep->hook.fd = ep->fd;
            ep->open = true;
            hy__dist.eps[sh->id] = ep;
            hy_hook_add_poll(&ep->hook);
        } else {
            free(ep->chans);
            free(ep);
        }
    }
    if (rc)
        atomic_store(&hy__dist.open_err, rc);
    atomic_fetch_add(&hy__dist.opened, 1);
}

static void ep_close(struct hy_shard *sh)
{
    struct hy__ep *ep = hy__dist.eps[sh->id];
    struct ep_priv *pv = &hy__dist.priv[sh->id];
    if (ep) {
        /* (hy_dist_stop has every shard stop polling first: its CLOSEs then
         * say that these frames are the last the node puts on the device) */
        if (!ep->quiet)
            hy_hook_remove_poll(&ep->hook);
        uint8_t flags = atomic_load(&hy__dist.all_quiet) ? HY_WCLOSE_STOPPED : 0;
        for (size_t i = 0; i < pv->nactive; i++) {
            struct hy__chan *ch = pv->active[i];
            if (ch->state == CH_UP)
                hy__chan_xmit(ch, HY_WT_CLOSE, 0, &flags, 1, NULL);
        }
        if (pv->nheld)
            hy__dist_held_release(ep, 0, false, true);
        hy__dist.tp->flush(ep);
        for (size_t i = 0; i < hy__dist.npeers * HY_MAX_SHARDS; i++) {
            struct hy__chan *ch = ep->chans[i];
            if (!ch)
                continue;
            hy__chan_reset(ch, false);
            hy__chan_fail_waiters(ch, HY_ENOTSTARTED);
            free(ch->win);
            free(ch->ooo);
            free(ch);
        }
        hy__dist.tp->close(ep);
        free(ep->chans);
        ep->open = false;
    }
    free(pv->active);
    free(pv->held);
    memset(pv, 0, sizeof(*pv));
    /* links and monitors to every peer: noconnection */
    for (size_t i = 0; i < hy__dist.npeers; i++)
        if ((int)i != hy__dist.self)
            hy__dist_node_down(sh, hy__dist.peers[i].node_id);
    hy__dist.eps[sh->id] = NULL;
    free(ep);
    atomic_fetch_add(&hy__dist.stopped, 1);
}

void hy__dist_on_handed_frame(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy__ep *ep = hy__dist.eps[sh->id];
    if (ep && ep->open)
        hy__dist_on_frame(ep, m->data, m->size, NULL);
    hy__msg_free_local(sh, m);
}

void hy__dist_on_ctrl(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy__ctrl c;
    memcpy(&c, m->data, sizeof(c));
    hy_ref ref = m->ref;
    hy__msg_free_local(sh, m);
    struct hy__ep *ep = hy__dist.eps[sh->id];
    int pi = hy__dist_peer_index(c.node);
    switch (c.op) {
    case CTRL_OPEN:
        ep_open(sh);
        return;
    case CTRL_QUIESCE:
        if (ep && ep->open && !ep->quiet) {
            hy_hook_remove_poll(&ep->hook);
            ep->quiet = true;
        }
        atomic_fetch_add(&hy__dist.quiesced, 1);
        return;
    case CTRL_STOP:
        ep_close(sh);
        return;
    default:
        break;
    }
    if (!ep || !ep->open)
        return;
    switch (c.op) {
    case CTRL_ENSURE:
    case CTRL_CONNECT: {
        if (pi < 0) {
            if (c.op == CTRL_CONNECT)
                hy__dist_reply_rc(sh, c.requester, ref, HY_ENOENT);
            return;
        }
        struct hy__chan *ch = hy__chan_get(ep, pi, 0, true); /* shard 0's master channel */
        if (!ch) {
            if (c.op == CTRL_CONNECT)
                hy__dist_reply_rc(sh, c.requester, ref, HY_ENOMEM);
            return;
        }
        if (c.op == CTRL_CONNECT) {
            if (ch->state == CH_UP) {
                hy__dist_reply_rc(sh, c.requester, ref, 0);
            } else {
                struct waiter *nw = realloc(ch->waiters, (ch->nwaiters + 1) * sizeof(*nw));
                if (!nw) {
                    hy__dist_reply_rc(sh, c.requester, ref, HY_ENOMEM);
                    return;
                }
                ch->waiters = nw;
                ch->waiters[ch->nwaiters++] = (struct waiter){c.requester, ref};
            }
        }
        if (ch->state == CH_IDLE)
            hy__hs_start(ch);
        return;
    }
    case CTRL_DISCONNECT:
        if (pi >= 0) {
            struct hy__chan *ch = hy__chan_get(ep, pi, 0, false);
            if (ch && ch->state == CH_UP)
                hy__chan_xmit(ch, HY_WT_CLOSE, 0, NULL, 0, NULL);
            hy__dist_node_went_down(sh, pi, atomic_load(&hy__dist.epoch[pi]));
        }
        return;
    case CTRL_NODE_DOWN:
        if (pi >= 0) {
            /* (a session or handshake begun since the event belongs to
             * what comes after it: kept; epoch 0 = every channel) */
            for (unsigned s = 0; s < HY_MAX_SHARDS; s++) {
                struct hy__chan *ch = ep->chans[(size_t)pi * HY_MAX_SHARDS + s];
                if (!ch || (c.epoch && (int32_t)(ch->epoch - c.epoch) >= 0))
                    continue;
                if (ch->master)
                    hy__chan_fail_waiters(ch, HY_ETIMEDOUT);
                hy__chan_reset(ch, false);
            }
            /* (node_down was set where the event was declared: setting it
             * here again would mark a node down that has come back since) */
            if (sh->id == 0) {
                struct hy__chan *m0 = ep->chans[(size_t)pi * HY_MAX_SHARDS];
                if (!m0 || m0->state != CH_UP)
                    atomic_store(&hy__dist.node_up[pi], 0);
            }
            hy__dist_node_down(sh, c.node);
        }
        return;
    case CTRL_NODE_UP:
        hy__dist_node_up(sh, c.node);
        return;
    default:
        return;
    }
}

