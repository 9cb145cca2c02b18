/* What arrives from another node: a frame is checked (header, source
 * address, session, tag) and goes to the handshake or its channel; a
 * message a channel reassembled is checked and delivered into the runtime. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* ---- receiving ----------------------------------------------------------------------- */

static bool kind_allowed(unsigned k)
{
    switch (k) {
    case HY_K_MSG:
    case HY_K_EXIT:
    case HY_K_LINK:
    case HY_K_UNLINK:
    case HY_K_UNLINK_ACK:
    case HY_K_MONITOR:
    case HY_K_DEMONITOR:
    case HY_K_DOWN:
    case HY_K_ALIAS_MSG:
    case HY_K_DIST_NAME:
    case HY_K_DIST_SPAWN:
    case HY_K_SPAWN_REPLY:
        return true;
    default:
        return false; /* runtime-internal kinds (spawn, timers, ...) never cross nodes */
    }
}

int hy__name_lookup(const char *name, hy_pid *out);

/* The payload of a signal from another node is a struct its handler copies
 * without looking at the size (a node trusts its own shards): check it here,
 * and make its strings end and its flags be flags. */
static bool payload_ok(const struct hy__chan *ch, struct hy_msg *m)
{
    switch (m->kind) {
    case HY_K_EXIT: {
        if (m->size != sizeof(struct hy_reason))
            return false;
        m->data[offsetof(struct hy_reason, text) + HY_REASON_TEXT_MAX - 1] = '\0';
        return true;
    }
    case HY_K_UNLINK:
    case HY_K_UNLINK_ACK:
        return m->size == sizeof(uint64_t);
    case HY_K_MONITOR: /* optionally a name, NUL included */
        return m->size == 0 || (m->size <= HY_NAME_MAX && m->data[m->size - 1] == '\0');
    case HY_K_DOWN: {
        if (m->size != sizeof(struct hy_down_info))
            return false;
        m->data[offsetof(struct hy_down_info, name) + HY_NAME_MAX - 1] = '\0';
        m->data[offsetof(struct hy_down_info, reason) + offsetof(struct hy_reason, text) +
                HY_REASON_TEXT_MAX - 1] = '\0';
        return true;
    }
    case HY_K_SPAWN_REPLY: {
        if (m->size != sizeof(struct hy__spawn_reply))
            return false;
        uint8_t *link = m->data + offsetof(struct hy__spawn_reply, link);
        uint8_t *mon = m->data + offsetof(struct hy__spawn_reply, monitor);
        *link = *link != 0;
        *mon = *mon != 0;
        int rc;
        hy_pid pid;
        memcpy(&rc, m->data + offsetof(struct hy__spawn_reply, rc), sizeof(rc));
        memcpy(&pid, m->data + offsetof(struct hy__spawn_reply, pid), sizeof(pid));
        /* a process spawned there is a process of that node */
        return rc != 0 || (hy_pid_node(pid) == hy__dist.peers[ch->pi].node_id &&
                           hy_pid_shard(pid) < HY_MAX_SHARDS);
    }
    default:
        return true;
    }
}

void hy__dist_deliver(struct hy__chan *ch, struct hy_msg *m, const struct hy_wire_msg *wm)
{
    struct hy_shard *sh = hy__shard();
    struct hy__ep *ep = ch->ep;
    /* (a sender's shard beyond HY_MAX_SHARDS could not be answered) */
    if (!kind_allowed(wm->kind) || hy_pid_node(wm->to) != hy__rt.node_id ||
        hy_pid_node(wm->from) != hy__dist.peers[ch->pi].node_id ||
        hy_pid_shard(wm->from) >= HY_MAX_SHARDS) {
        hy__dist_count(&ep->st.malformed, 1);
        hy__msg_free_local(sh, m);
        return;
    }
    m->tag = wm->tag;
    m->from = wm->from;
    m->to = wm->to;
    m->ref = wm->ref;
    m->aux = wm->aux & 1u; /* only the link flag has a meaning across nodes */
    m->kind = wm->kind;
    if (m->kind == HY_K_LINK)
        m->aux = 0; /* synchronous link acks are a same-node protocol */
    if (!payload_ok(ch, m)) {
        hy__dist_count(&ep->st.malformed, 1);
        hy__msg_free_local(sh, m);
        return;
    }
    hy__dist_count(&ep->st.msgs_rx, 1);
    if (m->kind == HY_K_DIST_NAME) {
        char name[HY_NAME_MAX];
        hy_pid pid;
        if (m->size < HY_NAME_MAX) {
            hy__dist_count(&ep->st.malformed, 1);
            hy__msg_free_local(sh, m);
            return;
        }
        memcpy(name, m->data, HY_NAME_MAX);
        name[HY_NAME_MAX - 1] = '\0';
        if (hy__name_lookup(name, &pid) != 0) {
            hy__msg_free_local(sh, m); /* no such name: dropped, as a send to a dead pid */
            return;
        }
        memmove(m->data, m->data + HY_NAME_MAX, m->size - HY_NAME_MAX);
        m->size -= HY_NAME_MAX;
        m->kind = HY_K_MSG;
        m->to = pid;
        hy__route(sh, m);
        return;
    }
    if (m->kind == HY_K_DIST_SPAWN) {
        hy__dist_spawn_here(sh, m);
        return;
    }
    if (m->kind == HY_K_MONITOR && hy_pid_slot(m->to) == 0 && hy_pid_gen(m->to) == 0 &&
        m->size > 0) {
        /* a monitor of {name, node}: resolved here, on arrival; an unknown
         * name is answered DOWN noproc (with the name) by the stand-in */
        char name[HY_NAME_MAX];
        size_t k = m->size < HY_NAME_MAX ? m->size : HY_NAME_MAX;
        memcpy(name, m->data, k);
        name[k - 1] = '\0';
        hy_pid pid;
        if (hy__name_lookup(name, &pid) == 0)
            m->to = pid;
    }
    if (hy_pid_shard(m->to) == sh->id)
        hy__dispatch(sh, m); /* a stale creation is looked up and answered as dead */
    else
        hy__route(sh, m);
}


/* ---- frames -------------------------------------------------------------------------- */

/* The fast path of a tagged DATA or ACK frame on the channel that took the
 * endpoint's latest frame: when its first 32 bytes are those a frame of this
 * session passed every check with (ch->rx_ok: the tag's kept state is theirs,
 * under this session's key), those checks hold for it too, as they depend
 * on these bytes and on what stays fixed while the session does (session
 * and creation are compared again). Left: the length, the source address,
 * the tag. Returns false, having changed nothing, when the frame is not
 * such a frame: the general path then takes it. */
static bool on_frame_fast(struct hy__ep *ep, struct hy__chan *ch, const uint8_t *buf, size_t n,
                          const struct hy__rx *rx)
{
    unsigned tl = hy__dist.tag_len;
    if (!ch->rx_ok || ch->state != CH_UP || n < HY_WIRE_HDR + tl ||
        n - (HY_WIRE_HDR + tl) > HY_WIRE_MAXPAY ||
        memcmp(buf, ch->tag_rx.prefix, HY_WIRE_HDR_FIXED) != 0 ||
        hy__rd32(buf + 24) != ch->session || hy__rd32(buf + 12) != ch->peer_creation)
        return false;
    const struct hy_dist_peer *peer = &hy__dist.peers[ch->pi];
    if (rx && rx->src_known &&
        (rx->src_ip != peer->ip || rx->src_port != (uint16_t)(peer->base_port + ch->rshard)))
        return false; /* (the general path counts it) */
    struct hy_wire_hdr h;
    h.type = buf[3];
    h.seq = hy__rd32(buf + 32);
    h.ack = hy__rd32(buf + 36);
    h.sack = hy__rd64(buf + 40);
    h.ts = hy__rd32(buf + 48);
    h.ts_echo = hy__rd32(buf + 52);
    h.len = (uint16_t)(n - HY_WIRE_HDR - tl);
    hy__dist_count(&ep->st.frames_rx, 1);
    hy__dist_count(&ep->st.bytes_rx, n);
    hy__dist_count(&ch->cst.frames_rx, 1);
    uint8_t tag[HY_WIRE_TAG_MAX];
    hy__dist_frame_tag_kept(&ch->tag_rx, buf, n - tl, tl, tag);
    if (!hy__dist_tag_equal(tag, buf + n - tl, tl)) {
        hy__dist_count(&ep->st.auth_failures, 1);
        hy__dist_count(&ch->cst.auth_failures, 1);
        return true;
    }
    ch->last_rx = hy__dist_now();
    hy__chan_on_acks(ch, &h);
    if (h.type == HY_WT_DATA)
        hy__chan_on_data(ch, &h, buf + HY_WIRE_HDR);
    return true;
}

void hy__dist_on_frame(struct hy__ep *ep, const uint8_t *buf, size_t n, const struct hy__rx *rx)
{
    struct hy_shard *sh = hy__shard();
    struct ep_priv *pv = &hy__dist.priv[ep->shard];
    if (pv->rx_last && on_frame_fast(ep, pv->rx_last, buf, n, rx))
        return;
    struct hy_wire_hdr h;
    if (hy__wire_get_hdr(buf, n, &h) != 0 || h.version != HY_WIRE_VERSION ||
        h.dst_node != hy__rt.node_id) {
        hy__dist_count(&ep->st.malformed, 1);
        return;
    }
    int pi = hy__dist_peer_index(h.src_node);
    if (pi < 0 || h.src_shard >= HY_MAX_SHARDS) {
        hy__dist_count(&ep->st.malformed, 1);
        return;
    }
    /* a frame of node N shard s comes from N's address and port base + s */
    if (rx && rx->src_known &&
        (rx->src_ip != hy__dist.peers[pi].ip ||
         rx->src_port != (uint16_t)(hy__dist.peers[pi].base_port + h.src_shard))) {
        hy__dist_count(&ep->st.wrong_source, 1);
        return;
    }
    if (h.dst_shard != ep->shard) {
        /* landed on the wrong shard's queue (no hardware steering): hand it
         * over through the ring mesh, copied into a message buffer */
        struct hy_msg *m;
        if (h.dst_shard >= hy__rt.nshards) {
            hy__dist_count(&ep->st.malformed, 1);
            return;
        }
        if (hy__mesh_backlog(sh, h.dst_shard) > hy__dist.cfg.recv_backlog_max ||
            hy__mesh_backlog_bytes(sh, h.dst_shard) > hy__dist.cfg.recv_backlog_bytes_max) {
            /* not yet seen by its channel: as if lost, the peer resends */
            hy__dist_count(&ep->st.dropped_backlog, 1);
            return;
        }
        if (hy__msg_alloc(sh, n, &m) != 0) {
            hy__dist_count(&ep->st.dropped_nomem, 1);
            return;
        }
        memcpy(m->data, buf, n);
        m->kind = HY_K_DIST_FRAME;
        m->to = hy__dist_shard_pid(h.dst_shard);
        hy__dist_count(&ep->st.handed_over, 1);
        hy__route(sh, m);
        return;
    }
    hy__dist_count(&ep->st.frames_rx, 1);
    hy__dist_count(&ep->st.bytes_rx, n);
    const uint8_t *pay = buf + HY_WIRE_HDR;
    struct hy__chan *ch = hy__chan_get(ep, pi, h.src_shard, h.type == HY_WT_HELLO);
    if (!ch) {
        hy__dist_count(&ep->st.stale, 1);
        return;
    }
    hy__dist_count(&ch->cst.frames_rx, 1);
    if (h.type >= HY_WT_HELLO && h.type != HY_WT_HEARTBEAT && h.type != HY_WT_CLOSE) {
        hy__hs_frame(ep, ch, &h, pay);
        return;
    }
    /* DATA, ACK, HEARTBEAT, CLOSE: only within the current session */
    if (h.session == 0 || h.session != ch->session || h.src_creation != ch->peer_creation ||
        h.dst_creation != hy__rt.creation ||
        (ch->state != CH_UP && ch->state != CH_CONFIRM_SENT)) {
        hy__dist_count(&ep->st.stale, 1);
        hy__dist_count(&ch->cst.stale, 1);
        return;
    }
    if (h.flags & HY_WF_AUTH) {
        /* the tag length is the session's (both nodes' tag_bits), never the
         * frame's choice: a frame flagged with the other length fails */
        unsigned tl = hy__dist.tag_len;
        uint8_t tag[HY_WIRE_TAG_MAX];
        if ((h.flags & (HY_WF_AUTH | HY_WF_TAG128)) != hy__dist.tag_flags) {
            hy__dist_count(&ep->st.auth_failures, 1);
            hy__dist_count(&ch->cst.auth_failures, 1);
            return;
        }
        ch->rx_ok = false; /* (tag_rx may be recomputed for other bytes) */
        hy__dist_frame_tag_mid(ch, &ch->tag_rx, buf, n - tl, tl, tag);
        if (!hy__dist_tag_equal(tag, buf + n - tl, tl)) {
            hy__dist_count(&ep->st.auth_failures, 1);
            hy__dist_count(&ch->cst.auth_failures, 1);
            return;
        }
    } else if (hy__dist.cfg.authenticate) {
        hy__dist_count(&ep->st.auth_failures, 1);
        hy__dist_count(&ch->cst.auth_failures, 1);
        return;
    }
    if (ch->state == CH_CONFIRM_SENT)
        hy__hs_established(ch); /* the responder took our CONFIRM */
    ch->last_rx = hy__dist_now();
    if (h.type == HY_WT_CLOSE) {
        hy_log(HY_LOG_INFO, "dist: shard %u: node %u (%s) shard %u closed the session", ep->shard,
               hy__dist.peers[pi].node_id, hy__dist.peers[pi].name, h.src_shard);
        if (h.len >= 1 && (pay[0] & HY_WCLOSE_STOPPED))
            atomic_store(&hy__dist.peer_quiet[pi], 1);
        if (ch->master)
            hy__dist_node_went_down(sh, pi, ch->epoch);
        else
            hy__chan_reset(ch, false);
        return;
    }
    if ((h.flags & HY_WF_AUTH) && ch->state == CH_UP &&
        (h.type == HY_WT_DATA || h.type == HY_WT_ACK)) {
        /* every check passed: the next frames with these 32 bytes may take
         * the fast path (tag_rx was just computed from them, with this key) */
        ch->rx_ok = true;
        pv->rx_last = ch;
    }
    hy__chan_on_acks(ch, &h);
    if (h.type == HY_WT_DATA)
        hy__chan_on_data(ch, &h, pay);
}
