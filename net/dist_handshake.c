/* The handshake: the cookie challenge/response that opens a channel's
 * session, its crypto (HMAC-SHA256 with libsodium), and the frame tag. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* ---- crypto ------------------------------------------------------------------------ */

void hy__dist_mac(uint8_t out[32], const char *label, const uint8_t *a, const uint8_t *b,
                uint32_t n1, uint32_t c1, uint32_t n2, uint32_t c2)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)hy__dist.cookie, hy__dist.cookie_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)label, strlen(label));
    crypto_auth_hmacsha256_update(&st, a, 16);
    crypto_auth_hmacsha256_update(&st, b, 16);
    uint8_t ids[16];
    hy__wr32(ids, n1);
    hy__wr32(ids + 4, c1);
    hy__wr32(ids + 8, n2);
    hy__wr32(ids + 12, c2);
    crypto_auth_hmacsha256_update(&st, ids, sizeof(ids));
    crypto_auth_hmacsha256_final(&st, out);
}

void hy__dist_frame_tag(const struct hy__chan *ch, const uint8_t *buf, size_t n, uint8_t out[16])
{
    uint8_t full[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, ch->key, sizeof(ch->key));
    crypto_auth_hmacsha256_update(&st, buf, n);
    crypto_auth_hmacsha256_final(&st, full);
    memcpy(out, full, 16);
}

void hy__hs_start(struct hy__chan *ch)
{
    randombytes_buf(ch->my_nonce, sizeof(ch->my_nonce));
    ch->state = CH_HELLO_SENT;
    ch->refused = false;
    ch->session = 0;
    ch->peer_creation = 0;
    uint64_t now = hy__dist_now();
    ch->hs_began = now;
    ch->hs_retry = now + HS_RETRY_NS;
    ch->last_rx = now;
    hy__chan_activate(ch);
    hy__chan_xmit(ch, HY_WT_HELLO, 0, 0, 0, 0, ch->my_nonce, 16, NULL);
}

void hy__hs_established(struct hy__chan *ch)
{
    ch->state = CH_UP;
    ch->snd_next = ch->snd_una = ch->rcv_next = 1;
    ch->last_rx = ch->last_tx = hy__dist_now();
    hy__dist_count(&ch->ep->st.handshakes, 1);
    if (ch->master) {
        atomic_store(&hy__dist.node_up[ch->pi], 1);
        hy__chan_fail_waiters(ch, 0);
        hy__dist_broadcast(hy__shard(), CTRL_NODE_UP, hy__dist.peers[ch->pi].node_id);
    }
}

void hy__hs_derive(struct hy__chan *ch, const uint8_t *na, const uint8_t *nb, uint32_t an,
                   uint32_t ac, uint32_t bn, uint32_t bc)
{
    uint8_t s[32];
    hy__dist_mac(s, "session", na, nb, an, ac, bn, bc);
    ch->session = hy__rd32(s) | 1u; /* never 0 */
    hy__dist_mac(ch->key, "key", na, nb, an, ac, bn, bc);
}

void hy__dist_on_frame(struct hy__ep *ep, const uint8_t *buf, size_t n)
{
    struct hy_shard *sh = hy__shard();
    struct hy_wire_hdr h;
    if (hy__wire_get_hdr(buf, n, &h) != 0 || h.version != HY_WIRE_VERSION ||
        h.dst_node != hy__rt.node_id) {
        hy__dist_count(&ep->st.malformed, 1);
        return;
    }
    if (h.dst_shard != ep->shard) {
        /* landed on the wrong shard's queue (no hardware steering): hand it
         * over through the ring mesh, copied into a message buffer */
        struct hy_msg *m;
        if (h.dst_shard >= hy__rt.nshards || hy__msg_alloc(sh, n, &m) != 0) {
            hy__dist_count(&ep->st.malformed, 1);
            return;
        }
        memcpy(m->data, buf, n);
        m->kind = HY_K_DIST_FRAME;
        m->to = hy__dist_shard_pid(h.dst_shard);
        hy__dist_count(&ep->st.handed_over, 1);
        hy__route(sh, m);
        return;
    }
    int pi = hy__dist_peer_index(h.src_node);
    if (pi < 0 || h.src_shard >= HY_MAX_SHARDS) {
        hy__dist_count(&ep->st.malformed, 1);
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
    uint64_t now = hy__dist_now();
    const struct hy_dist_peer *me = &hy__dist.peers[hy__dist.self], *peer = &hy__dist.peers[pi];
    switch (h.type) {
    case HY_WT_HELLO: {
        if (h.len != 16) {
            hy__dist_count(&ep->st.malformed, 1);
            return;
        }
        if (ch->state == CH_HELLO_SENT && me->node_id < peer->node_id)
            return; /* simultaneous open: the lower node id initiates */
        if (ch->state == CH_UP && h.src_creation == ch->peer_creation &&
            memcmp(ch->peer_nonce, pay, 16) == 0)
            return; /* a repeat of the HELLO we answered */
        bool again = ch->state == CH_CHALLENGED && h.src_creation == ch->peer_creation &&
                     memcmp(ch->peer_nonce, pay, 16) == 0;
        if (again) {
            /* a repeat (retry, duplicate, late copy) of the HELLO we are
             * answering: the same CHALLENGE again, or the CONFIRM that may
             * already be on its way would not match a fresh nonce */
            uint8_t out[48];
            memcpy(out, ch->my_nonce, 16);
            hy__dist_mac(out + 16, "B", ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation,
                me->node_id, hy__rt.creation);
            hy__chan_xmit(ch, HY_WT_CHALLENGE, 0, 0, 0, 0, out, sizeof(out), NULL);
            return;
        }
        if (ch->state == CH_UP || ch->state == CH_CONFIRM_SENT) {
            /* the peer lost the session (or restarted): start over */
            bool restarted = ch->peer_creation && h.src_creation != ch->peer_creation;
            hy__chan_reset(ch, true);
            if (restarted && ch->master)
                hy__dist_node_went_down(sh, pi);
        }
        memcpy(ch->peer_nonce, pay, 16);
        randombytes_buf(ch->my_nonce, 16);
        ch->peer_creation = h.src_creation;
        uint8_t out[48];
        memcpy(out, ch->my_nonce, 16);
        hy__dist_mac(out + 16, "B", ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation,
            me->node_id, hy__rt.creation);
        ch->state = CH_CHALLENGED;
        ch->hs_began = now;
        ch->last_rx = now;
        hy__chan_activate(ch);
        hy__chan_xmit(ch, HY_WT_CHALLENGE, 0, 0, 0, 0, out, sizeof(out), NULL);
        return;
    }
    case HY_WT_CHALLENGE: {
        if (ch->state != CH_HELLO_SENT || h.len != 48) {
            hy__dist_count(&ep->st.stale, 1);
            return;
        }
        uint8_t want[32];
        hy__dist_mac(want, "B", ch->my_nonce, pay, me->node_id, hy__rt.creation, peer->node_id,
            h.src_creation);
        if (sodium_memcmp(want, pay + 16, 32) != 0) {
            hy__dist_count(&ep->st.auth_failures, 1);
            ch->refused = true;
            hy__chan_xmit(ch, HY_WT_REJECT, 0, 0, 0, 0, NULL, 0, NULL);
            return;
        }
        memcpy(ch->peer_nonce, pay, 16);
        ch->peer_creation = h.src_creation;
        uint8_t proof[32];
        hy__dist_mac(proof, "A", ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation, me->node_id,
            hy__rt.creation);
        hy__hs_derive(ch, ch->my_nonce, ch->peer_nonce, me->node_id, hy__rt.creation, peer->node_id,
               h.src_creation);
        ch->state = CH_CONFIRM_SENT;
        ch->hs_retry = now + HS_RETRY_NS;
        ch->last_rx = now;
        uint32_t sess = ch->session;
        ch->session = 0; /* CONFIRM itself goes without a session */
        hy__chan_xmit(ch, HY_WT_CONFIRM, 0, 0, 0, 0, proof, 32, NULL);
        ch->session = sess;
        return;
    }
    case HY_WT_CONFIRM: {
        if (ch->state == CH_UP && h.src_creation == ch->peer_creation) {
            hy__chan_xmit(ch, HY_WT_ACK, 0, 0, 0, 0, NULL, 0, NULL); /* our ACK was lost */
            return;
        }
        if (ch->state != CH_CHALLENGED || h.len != 32 || h.src_creation != ch->peer_creation) {
            hy__dist_count(&ep->st.stale, 1);
            return;
        }
        uint8_t want[32];
        hy__dist_mac(want, "A", ch->my_nonce, ch->peer_nonce, me->node_id, hy__rt.creation,
            peer->node_id, h.src_creation);
        if (sodium_memcmp(want, pay, 32) != 0) {
            hy__dist_count(&ep->st.auth_failures, 1);
            hy__chan_xmit(ch, HY_WT_REJECT, 0, 0, 0, 0, NULL, 0, NULL);
            ch->state = CH_IDLE;
            return;
        }
        hy__hs_derive(ch, ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation, me->node_id,
               hy__rt.creation);
        hy__hs_established(ch);
        hy__chan_xmit(ch, HY_WT_ACK, 0, 0, 0, 0, NULL, 0, NULL);
        return;
    }
    case HY_WT_REJECT:
        if (ch->state == CH_HELLO_SENT || ch->state == CH_CONFIRM_SENT) {
            hy__dist_count(&ep->st.auth_failures, 1);
            ch->refused = true;
            if (ch->master)
                hy__chan_fail_waiters(ch, HY_ECONNREFUSED);
        }
        return;
    default:
        break;
    }
    /* DATA, ACK, HEARTBEAT, CLOSE: only within the current session */
    if (h.session == 0 || h.session != ch->session || h.src_creation != ch->peer_creation ||
        h.dst_creation != hy__rt.creation) {
        hy__dist_count(&ep->st.stale, 1);
        return;
    }
    if (h.flags & HY_WF_AUTH) {
        uint8_t tag[16];
        hy__dist_frame_tag(ch, buf, n - HY_WIRE_TAG, tag);
        if (sodium_memcmp(tag, buf + n - HY_WIRE_TAG, 16) != 0) {
            hy__dist_count(&ep->st.auth_failures, 1);
            return;
        }
    } else if (hy__dist.cfg.authenticate) {
        hy__dist_count(&ep->st.auth_failures, 1);
        return;
    }
    if (ch->state == CH_CONFIRM_SENT)
        hy__hs_established(ch); /* the responder took our CONFIRM */
    if (ch->state != CH_UP)
        return;
    ch->last_rx = now;
    if (h.type == HY_WT_CLOSE) {
        if (ch->master)
            hy__dist_node_went_down(sh, pi);
        else
            hy__chan_reset(ch, false);
        return;
    }
    hy__chan_on_acks(ch, &h);
    if (h.type == HY_WT_DATA)
        hy__chan_on_data(ch, &h, pay);
}

