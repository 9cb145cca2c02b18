/* A channel's reliable protocol: framing queued messages, sequence
 * numbers, acks and selective acks, retransmission, the in-order byte
 * stream, the per-shard poll hook and the remote-send hook. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* ---- channels ------------------------------------------------------------------------- */

struct hy__chan *hy__chan_get(struct hy__ep *ep, int pi, uint16_t rshard, bool create)
{
    size_t idx = (size_t)pi * HY_MAX_SHARDS + rshard;
    struct hy__chan *ch = ep->chans[idx];
    if (ch || !create)
        return ch;
    ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->ep = ep;
    ch->pi = pi;
    ch->rshard = rshard;
    ch->master = ep->shard == 0 && rshard == 0;
    ch->q_tailp = &ch->q_head;
    ch->rto = 50000000ull;
    ch->cst.rto_ns = ch->rto;
    __atomic_store_n(&ep->chans[idx], ch, __ATOMIC_RELEASE); /* (stats readers) */
    return ch;
}

/* The send and receive windows (~12 KB) come with the first session, so a
 * HELLO (unproven) costs a small channel only. */
int hy__chan_windows(struct hy__chan *ch)
{
    if (!ch->win)
        ch->win = calloc(WIN, sizeof(*ch->win));
    if (!ch->ooo)
        ch->ooo = calloc(WIN, sizeof(*ch->ooo));
    return ch->win && ch->ooo ? 0 : HY_ENOMEM;
}

void hy__chan_activate(struct hy__chan *ch)
{
    if (ch->active)
        return;
    struct ep_priv *pv = &hy__dist.priv[ch->ep->shard];
    if (pv->nactive == pv->capactive) {
        size_t nc = pv->capactive ? pv->capactive * 2 : 16;
        struct hy__chan **na = realloc(pv->active, nc * sizeof(*na));
        if (!na)
            return;
        pv->active = na;
        pv->capactive = nc;
    }
    pv->active[pv->nactive++] = ch;
    ch->active = true;
}

/* Writes the frame header (acks, selective acks, timestamps) in front of the
 * len payload bytes already at buf + HY_WIRE_HDR, and the tag after them
 * when the session authenticates; returns the frame's length. */
static size_t frame_build(struct hy__chan *ch, uint8_t type, uint32_t seq, uint8_t *buf,
                          uint16_t len)
{
    bool auth = hy__dist.cfg.authenticate && ch->session && type != HY_WT_HELLO &&
                type != HY_WT_CHALLENGE && type != HY_WT_CONFIRM && type != HY_WT_REJECT;
    if (type == HY_WT_DATA && ch->session && ch->tx_pre_session == ch->session &&
        ch->tx_pre_creation == ch->peer_creation) {
        /* a DATA frame of this session: its first 32 bytes are the session's
         * (the nodes, creations and shards, the flags from the session and
         * the options, all fixed while session and creation are) */
        memcpy(buf, ch->tx_pre, HY_WIRE_HDR_FIXED);
    } else {
        struct hy_wire_hdr h = {
            .magic = HY_WIRE_MAGIC,
            .version = HY_WIRE_VERSION,
            .type = type,
            .src_node = hy__rt.node_id,
            .src_creation = hy__rt.creation,
            .dst_node = hy__dist.peers[ch->pi].node_id,
            .dst_creation = ch->peer_creation,
            .src_shard = (uint16_t)ch->ep->shard,
            .dst_shard = ch->rshard,
            .session = ch->session,
        };
        if (auth)
            h.flags |= hy__dist.tag_flags;
        hy__wire_put_hdr(buf, &h);
        if (type == HY_WT_DATA && ch->session) {
            memcpy(ch->tx_pre, buf, HY_WIRE_HDR_FIXED);
            ch->tx_pre_session = ch->session;
            ch->tx_pre_creation = ch->peer_creation;
        }
    }
    uint64_t sack = 0;
    /* (nothing is held out of order while the next frame is missing, the
     * common case: rcv_next's slot then holds no frame either) */
    if (ch->state == CH_UP && ch->nooo) {
        for (unsigned i = 0; i < 64 && i + 1 < WIN; i++)
            if (ch->ooo[(ch->rcv_next + 1 + i) % WIN].buf &&
                ch->ooo[(ch->rcv_next + 1 + i) % WIN].h.seq == ch->rcv_next + 1 + i)
                sack |= 1ull << i;
    }
    hy__wire_put_hdr_frame(buf, seq, ch->rcv_next, sack, hy__dist_ts(hy__dist_now()),
                           ch->ts_recent);
    size_t n = HY_WIRE_HDR + len;
    if (auth) {
        hy__dist_frame_tag_mid(ch, &ch->tag_tx, buf, n, hy__dist.tag_len, buf + n);
        n += hy__dist.tag_len;
    }
    return n;
}

/* Hands a built frame to the transport; an ack is now on its way. */
static void frame_send(struct hy__chan *ch, const uint8_t *buf, size_t n)
{
    struct hy__ep *ep = ch->ep;
    hy__dist_frame_tx(ep, &hy__dist.peers[ch->pi], ch->rshard, buf, n);
    hy__dist_count(&ep->st.frames_tx, 1);
    hy__dist_count(&ch->cst.frames_tx, 1);
    hy__dist_count(&ep->st.bytes_tx, n);
    ch->last_tx = hy__dist_now();
    ch->sent_this_poll = true;
    ch->ack_due = false;
    ch->unacked_rx = 0;
}

void hy__chan_xmit(struct hy__chan *ch, uint8_t type, uint32_t seq, const uint8_t *pay,
                   uint16_t len, uint8_t *keep)
{
    uint8_t buf[HY_WIRE_MTU];
    if (len)
        memcpy(buf + HY_WIRE_HDR, pay, len);
    size_t n = frame_build(ch, type, seq, buf, len);
    if (keep)
        memcpy(keep, buf, n);
    frame_send(ch, buf, n);
}

/* Re-sends a kept DATA frame, refreshing its ack fields. */
static void retransmit(struct hy__chan *ch, struct txf *f)
{
    struct hy_wire_hdr h;
    size_t n = f->len;
    if (hy__wire_get_hdr(f->buf, n, &h) != 0)
        return;
    h.ack = ch->rcv_next;
    h.ts = hy__dist_ts(hy__dist_now());
    h.ts_echo = ch->ts_recent;
    hy__wire_put_hdr(f->buf, &h);
    unsigned tl = hy__wire_tag_len(h.flags);
    if (tl)
        hy__dist_frame_tag_mid(ch, &ch->tag_tx, f->buf, n - tl, tl, f->buf + n - tl);
    hy__dist_frame_tx(ch->ep, &hy__dist.peers[ch->pi], ch->rshard, f->buf, n);
    f->rtx++;
    f->sent = hy__dist_now();
    hy__dist_count(&ch->ep->st.retransmits, 1);
    hy__dist_count(&ch->ep->st.frames_tx, 1);
    hy__dist_count(&ch->cst.retransmits, 1);
    hy__dist_count(&ch->cst.frames_tx, 1);
    HY__CH_SET(ch, rto_ns, ch->rto);
    ch->last_tx = f->sent;
    ch->sent_this_poll = true;
}

static void drop_queue(struct hy__chan *ch)
{
    struct hy_shard *sh = hy__shard();
    struct hy_msg *m = ch->q_head;
    while (m) {
        struct hy_msg *n = m->next;
        hy__msg_free_local(sh, m);
        m = n;
    }
    ch->q_head = NULL;
    ch->q_tailp = &ch->q_head;
    ch->q_len = 0;
    if (ch->cur) {
        hy__msg_free_local(sh, ch->cur);
        ch->cur = NULL;
    }
}

/* Forgets the session: in-flight frames, reassembly, queued messages. */
void hy__chan_reset(struct hy__chan *ch, bool keep_queue)
{
    struct hy_shard *sh = hy__shard();
    for (unsigned i = 0; ch->win && i < WIN; i++) {
        free(ch->win[i].buf);
        ch->win[i].buf = NULL;
    }
    for (unsigned i = 0; ch->ooo && i < WIN; i++) {
        free(ch->ooo[i].buf);
        ch->ooo[i].buf = NULL;
    }
    ch->nooo = 0;
    while (ch->nspare)
        free(ch->spare[--ch->nspare]);
    if (ch->in_msg) {
        hy__msg_free_local(sh, ch->in_msg);
        ch->in_msg = NULL;
    }
    ch->in_hdr_got = ch->in_hdr_len = ch->in_got = ch->in_len = 0;
    ch->in_skip = false;
    if (ch->cur) {
        /* a half-framed message cannot be resumed in a new session */
        hy__msg_free_local(sh, ch->cur);
        ch->cur = NULL;
    }
    if (!keep_queue)
        drop_queue(ch);
    ch->state = CH_IDLE;
    ch->session = 0;
    ch->rx_ok = false;
    ch->tx_pre_session = 0; /* (the prefix is rebuilt for the next session) */
    ch->snd_next = ch->snd_una = ch->rcv_next = 0;
    ch->ts_recent = 0;
    HY__CH_SET(ch, up, 0);
    HY__CH_SET(ch, in_flight, 0);
    HY__CH_SET(ch, queue_depth, ch->q_len);
    ch->ack_due = false;
}

void hy__chan_fail_waiters(struct hy__chan *ch, int rc)
{
    struct hy_shard *sh = hy__shard();
    for (size_t i = 0; i < ch->nwaiters; i++)
        hy__dist_reply_rc(sh, ch->waiters[i].pid, ch->waiters[i].ref, rc);
    free(ch->waiters);
    ch->waiters = NULL;
    ch->nwaiters = 0;
}

/* Streams queued messages into DATA frames, packing several small
 * messages into one frame and splitting a large one over many, as far as
 * the window allows. Called at the end of the turn (the poll hook), so the
 * messages a turn produced share frames. */
void hy__chan_pump(struct hy__chan *ch)
{
    struct hy_shard *sh = hy__shard();
    while (ch->state == CH_UP && (ch->cur || ch->q_head)) {
        if (ch->snd_next - ch->snd_una >= WIN)
            return; /* window full: acks will make room */
        /* the frame's buffer first: without memory the messages stay queued
         * and, as they cannot go out, the connection goes down */
        uint8_t *fbuf = ch->nspare ? ch->spare[--ch->nspare] : malloc(HY_WIRE_MTU);
        if (!fbuf) {
            int pi = ch->pi;
            uint32_t since = ch->epoch;
            hy__dist_count(&ch->ep->st.dropped_nomem, 1);
            hy_log(HY_LOG_ERROR, "dist: shard %u: no memory to frame messages to node %u: down",
                   ch->ep->shard, hy__dist.peers[pi].node_id);
            hy__chan_reset(ch, false);
            hy__dist_node_went_down(sh, pi, since);
            return;
        }
        uint8_t *pay = fbuf + HY_WIRE_HDR; /* the frame is built in its kept buffer */
        uint32_t n = 0;
        while (n < HY_WIRE_MAXPAY) {
            if (!ch->cur) {
                struct hy_msg *m = ch->q_head;
                if (!m)
                    break;
                ch->q_head = m->next;
                if (!ch->q_head)
                    ch->q_tailp = &ch->q_head;
                ch->q_len--;
                struct hy_wire_msg wm = {.tag = m->tag, .from = m->from, .to = m->to,
                                         .ref = m->ref, .aux = m->aux, .kind = m->kind};
                uint64_t from_base = hy__wire_pid_base(hy__rt.node_id, hy__rt.creation);
                uint64_t to_base =
                    hy__wire_pid_base(hy__dist.peers[ch->pi].node_id, ch->peer_creation);
                if (HY_WIRE_MAXPAY - n >= HY_WIRE_RECHDR_MAX &&
                    m->size <= HY_WIRE_MAXPAY - n - HY_WIRE_RECHDR_MAX) {
                    /* the whole record fits: its header is written in the
                     * frame, no copy through cur_hdr */
                    uint32_t hl = hy__wire_put_rec(pay + n, &wm, m->size, from_base, to_base);
                    memcpy(pay + n + hl, m->data, m->size);
                    n += hl + m->size;
                    hy__msg_free_local(sh, m);
                    hy__dist_count(&ch->ep->st.msgs_tx, 1);
                    continue;
                }
                ch->cur_hdr_len = hy__wire_put_rec(ch->cur_hdr, &wm, m->size, from_base, to_base);
                ch->cur = m;
                ch->cur_off = 0;
                ch->cur_len = ch->cur_hdr_len + m->size;
            }
            uint32_t room = HY_WIRE_MAXPAY - n;
            uint32_t left = ch->cur_len - ch->cur_off;
            uint32_t take = left < room ? left : room;
            uint32_t hdr = ch->cur_hdr_len;
            uint32_t off = ch->cur_off;
            if (off < hdr) {
                uint32_t k = hdr - off < take ? hdr - off : take;
                memcpy(pay + n, ch->cur_hdr + off, k);
                n += k;
                off += k;
                take -= k;
            }
            if (take) {
                memcpy(pay + n, ch->cur->data + (off - hdr), take);
                n += take;
                off += take;
            }
            ch->cur_off = off;
            if (ch->cur_off == ch->cur_len) {
                hy__msg_free_local(sh, ch->cur);
                ch->cur = NULL;
                hy__dist_count(&ch->ep->st.msgs_tx, 1);
            }
        }
        struct txf *f = &ch->win[ch->snd_next % WIN];
        if (f->buf) /* (acknowledged frames' buffers are gone: rarely any) */
            free(f->buf);
        f->buf = fbuf;
        f->len = (uint16_t)frame_build(ch, HY_WT_DATA, ch->snd_next, fbuf, (uint16_t)n);
        f->rtx = 0;
        f->sacked = false;
        f->sent = hy__dist_now_on(sh);
        frame_send(ch, fbuf, f->len);
        ch->snd_next++;
        HY__CH_SET(ch, in_flight, ch->snd_next - ch->snd_una);
        HY__CH_SET(ch, queue_depth, ch->q_len);
    }
}

/* The record being read cannot be followed (a length below its own header,
 * unknown header fields): the session ends, counted. */
static void record_error(struct hy__chan *ch, const char *what, uint32_t v)
{
    struct hy__ep *ep = ch->ep;
    hy__dist_count(&ep->st.malformed, 1);
    hy__dist_count(&ep->st.record_errors, 1);
    hy_log(HY_LOG_WARNING,
           "dist: shard %u: node %u shard %u sent a record with %s %u: session closed", ep->shard, hy__dist.peers[ch->pi].node_id, ch->rshard, what, v);
    int pi = ch->pi;
    uint32_t since = ch->epoch;
    hy__chan_xmit(ch, HY_WT_CLOSE, 0, NULL, 0, NULL);
    hy__chan_reset(ch, false);
    hy__dist_node_went_down(hy__shard(), pi, since);
}

/* An in-order DATA frame: its bytes continue the message stream. */
static void take_frame(struct hy__chan *ch, const struct hy_wire_hdr *h, const uint8_t *pay)
{
    struct hy_shard *sh = hy__shard();
    struct hy__ep *ep = ch->ep;
    uint32_t n = h->len, i = 0;
    while (i < n && ch->state == CH_UP) {
        /* The common case: no record begun, and a whole one (header and
         * payload, of a size within the limits) next in the frame: read in
         * place, its header without a copy into in_hdr. Anything else (a
         * record cut between frames, a bad header or length, no memory)
         * goes the general way below, which counts and refuses it. */
        if (ch->in_hdr_got == 0 && n - i >= HY_WIRE_RECHDR_MIN) {
            const uint8_t *r = pay + i;
            uint32_t rh = hy__wire_rec_hdr_size(r[5]);
            uint32_t len = hy__rd32(r);
            struct hy_msg *m;
            if (rh && n - i >= rh && len >= rh - 4 && len - (rh - 4) <= n - i - rh &&
                len - (rh - 4) <= hy__dist.cfg.max_message_size &&
                hy__msg_alloc(sh, len - (rh - 4), &m) == 0) {
                uint32_t size = len - (rh - 4);
                memcpy(m->data, r + rh, size);
                struct hy_wire_msg wm;
                hy__wire_get_rec(r, &wm,
                                 hy__wire_pid_base(hy__dist.peers[ch->pi].node_id, ch->peer_creation),
                                 hy__wire_pid_base(hy__rt.node_id, hy__rt.creation));
                i += rh + size;
                hy__dist_deliver(ch, m, &wm);
                continue;
            }
        }
        uint32_t hdr = ch->in_hdr_len ? ch->in_hdr_len : HY_WIRE_RECHDR_MIN;
        if (ch->in_hdr_got < hdr) {
            uint32_t k = hdr - ch->in_hdr_got;
            if (k > n - i)
                k = n - i;
            memcpy(ch->in_hdr + ch->in_hdr_got, pay + i, k);
            ch->in_hdr_got += k;
            i += k;
            if (ch->in_hdr_got < hdr)
                return;
            if (!ch->in_hdr_len) {
                /* the fixed bytes are in: the fields byte sets the header's size
                 * (always more than the fixed bytes) */
                ch->in_hdr_len = hy__wire_rec_hdr_size(ch->in_hdr[5]);
                if (!ch->in_hdr_len) {
                    record_error(ch, "unknown header fields", ch->in_hdr[5]);
                    return;
                }
                continue;
            }
            ch->in_len = hy__rd32(ch->in_hdr);
            ch->in_got = 0;
            ch->in_msg = NULL;
            ch->in_skip = false;
            if (ch->in_len < hdr - 4) {
                /* a record shorter than its own header: the stream cannot be
                 * followed past it */
                record_error(ch, "a length below its header's, length", ch->in_len);
                return;
            }
            if (ch->in_len - (hdr - 4) > hy__dist.cfg.max_message_size) {
                /* counted and skipped; the stream stays in step */
                hy__dist_count(&ep->st.malformed, 1);
                ch->in_skip = true;
            } else if (hy__msg_alloc(sh, ch->in_len - (hdr - 4), &ch->in_msg) != 0) {
                ch->in_skip = true;
            }
        }
        uint32_t size = ch->in_len - (hdr - 4);
        uint32_t want = size - ch->in_got;
        uint32_t k = want < n - i ? want : n - i;
        if (k && !ch->in_skip)
            memcpy(ch->in_msg->data + ch->in_got, pay + i, k);
        ch->in_got += k;
        i += k;
        if (ch->in_got == size) {
            struct hy_msg *m = ch->in_msg;
            ch->in_msg = NULL;
            ch->in_hdr_got = 0;
            ch->in_hdr_len = 0;
            if (m) {
                struct hy_wire_msg wm;
                uint64_t peer = hy__wire_pid_base(hy__dist.peers[ch->pi].node_id,
                                                  ch->peer_creation);
                hy__wire_get_rec(ch->in_hdr, &wm, peer,
                                 hy__wire_pid_base(hy__rt.node_id, hy__rt.creation));
                hy__dist_deliver(ch, m, &wm);
            }
        }
    }
}

void hy__chan_on_data(struct hy__chan *ch, const struct hy_wire_hdr *h, const uint8_t *pay)
{
    int32_t d = (int32_t)(h->seq - ch->rcv_next);
    if (!ch->ack_due)
        ch->ack_due_since = hy__dist_now();
    ch->ack_due = true;
    ch->unacked_rx++;
    if (d < 0) {
        hy__dist_count(&ch->ep->st.dup_frames, 1);
        hy__dist_count(&ch->cst.dup_frames, 1);
        return;
    }
    if (d >= WIN) {
        hy__dist_count(&ch->cst.beyond_window, 1);
        return; /* beyond the window: the sender will retransmit */
    }
    struct hy_shard *sh = hy__shard();
    size_t backlog = hy__mesh_backlog(sh, -1);
    size_t backlog_bytes = hy__mesh_backlog_bytes(sh, -1);
    if (backlog > hy__dist.cfg.recv_backlog_max ||
        backlog_bytes > hy__dist.cfg.recv_backlog_bytes_max) {
        /* other shards lag behind what this one hands them: the frame is
         * left unaccepted (not acknowledged, the sender retransmits), which
         * keeps order and exactly-once and bounds the memory a peer uses */
        if (ch->ep->st.dropped_backlog == 0)
            hy_log(HY_LOG_WARNING,
                   "dist: shard %u holds back peers' data: %zu messages (%zu bytes) queue "
                   "behind a full ring (recv_backlog_max %zu, recv_backlog_bytes_max %zu); "
                   "counted in dropped_backlog from now on",
                   ch->ep->shard, backlog, backlog_bytes, hy__dist.cfg.recv_backlog_max,
                   hy__dist.cfg.recv_backlog_bytes_max);
        hy__dist_count(&ch->ep->st.dropped_backlog, 1);
        return;
    }
    if (d > 0) {
        struct rxf *r = &ch->ooo[h->seq % WIN];
        if (r->buf && r->h.seq == h->seq) {
            hy__dist_count(&ch->ep->st.dup_frames, 1);
            hy__dist_count(&ch->cst.dup_frames, 1);
            return;
        }
        if (r->buf)
            ch->nooo--;
        free(r->buf);
        r->buf = malloc(h->len ? h->len : 1);
        if (!r->buf)
            return;
        ch->nooo++;
        memcpy(r->buf, pay, h->len);
        r->h = *h;
        return;
    }
    ch->ts_recent = h->ts; /* this frame advances the sequence: echoed */
    take_frame(ch, h, pay);
    if (ch->state != CH_UP)
        return; /* the session ended on a bad record */
    ch->rcv_next++;
    for (;;) {
        struct rxf *r = &ch->ooo[ch->rcv_next % WIN];
        if (!r->buf || r->h.seq != ch->rcv_next)
            break;
        uint8_t *b = r->buf;
        struct hy_wire_hdr rh = r->h;
        r->buf = NULL;
        ch->nooo--;
        take_frame(ch, &rh, b);
        free(b);
        ch->rcv_next++;
        if (ch->state != CH_UP)
            return;
    }
}

/* One round-trip sample (Jacobson/Karels), and the timeout it gives. */
static void rtt_sample(struct hy__chan *ch, uint64_t rtt)
{
    if (!ch->srtt) {
        ch->srtt = rtt;
        ch->rttvar = rtt / 2;
    } else {
        uint64_t err = rtt > ch->srtt ? rtt - ch->srtt : ch->srtt - rtt;
        ch->rttvar = (3 * ch->rttvar + err) / 4;
        ch->srtt = (7 * ch->srtt + rtt) / 8;
    }
    uint64_t rto = ch->srtt + 4 * ch->rttvar;
    ch->rto = rto < RTO_MIN_NS ? RTO_MIN_NS : rto > RTO_MAX_NS ? RTO_MAX_NS : rto;
    hy__dist_count(&ch->cst.rtt_samples, 1);
    HY__CH_SET(ch, srtt_ns, ch->srtt);
    HY__CH_SET(ch, rttvar_ns, ch->rttvar);
    HY__CH_SET(ch, rto_ns, ch->rto);
}

void hy__chan_on_acks(struct hy__chan *ch, const struct hy_wire_hdr *h)
{
    uint64_t now = hy__dist_now();
    int32_t adv = (int32_t)(h->ack - ch->snd_una);
    if (adv > 0 && (int32_t)(h->ack - ch->snd_next) <= 0) {
        /* One sample per ack that advances, from the echoed timestamp of
         * the frame that advanced the peer's sequence: unambiguous even
         * when that frame was a retransmission, so sustained loss does not
         * starve the estimate (Karn's rule would: nearly every ack then
         * covers a retransmitted frame). */
        bool sampled = false;
        if (h->ts_echo) {
            uint32_t us = hy__dist_ts(now) - h->ts_echo;
            if (us < 60000000u) { /* (a bogus echo from the future: no sample) */
                rtt_sample(ch, (uint64_t)us * 1000);
                sampled = true;
            }
        }
        for (uint32_t s = ch->snd_una; s != h->ack; s++) {
            struct txf *f = &ch->win[s % WIN];
            if (f->buf && ch->nspare < CHAN_SPARE)
                ch->spare[ch->nspare++] = f->buf;
            else
                free(f->buf);
            f->buf = NULL;
        }
        ch->snd_una = h->ack;
        HY__CH_SET(ch, in_flight, ch->snd_next - ch->snd_una);
        /* progress ends a backoff: back to the estimate (which a sample
         * just set) */
        if (!sampled && ch->srtt) {
            uint64_t rto = ch->srtt + 4 * ch->rttvar;
            ch->rto = rto < RTO_MIN_NS ? RTO_MIN_NS : rto > RTO_MAX_NS ? RTO_MAX_NS : rto;
        }
    }
    /* selective acks only from a frame whose cumulative ack is current: a
     * late (reordered, delayed) frame's ack lies below snd_una, and a bogus
     * one beyond snd_next; either would send the loop below around the
     * whole sequence space */
    if (h->sack && ch->snd_una != ch->snd_next && h->ack == ch->snd_una) {
        uint32_t highest = h->ack;
        for (unsigned i = 0; i < 64; i++) {
            uint32_t s = h->ack + 1 + i;
            if ((int32_t)(s - ch->snd_next) >= 0)
                break;
            if (h->sack & (1ull << i)) {
                ch->win[s % WIN].sacked = true;
                highest = s;
            }
        }

        /* every hole below the highest frame the peer holds was lost (or is
         * late): resend each now (fast retransmit), unless it was sent less
         * than a smoothed RTT ago */
        uint64_t guard = ch->srtt ? ch->srtt : RTO_MIN_NS;
        for (uint32_t s = ch->snd_una; s != highest; s++) {
            struct txf *f = &ch->win[s % WIN];
            if (f->buf && !f->sacked && now - f->sent >= guard) {
                retransmit(ch, f);
                hy__dist_count(&ch->ep->st.fast_retransmits, 1);
                hy__dist_count(&ch->cst.fast_retransmits, 1);
            }
        }
    }
}

/* ---- the poll hook ------------------------------------------------------------------- */

void hy__chan_timers(struct hy__chan *ch, uint64_t now)
{
    struct hy_shard *sh = hy__shard();
    hy__hs_timers(ch, now);
    switch (ch->state) {
    case CH_UP:
        /* every channel watches its peer: one whose session the peer lost
         * (or never had) must not retransmit forever */
        if (now - ch->last_rx >= hy__dist.cfg.down_after_ns) {
            hy_log(HY_LOG_WARNING, "dist: shard %u: node %u shard %u silent for %.0f ms: down",
                   ch->ep->shard, hy__dist.peers[ch->pi].node_id, ch->rshard,
                   (double)(now - ch->last_rx) / 1e6);
            int pi = ch->pi;
            uint32_t since = ch->epoch;
            if (ch->master)
                hy__chan_fail_waiters(ch, HY_ETIMEDOUT);
            hy__chan_reset(ch, false);
            hy__dist_node_went_down(sh, pi, since);
            return;
        }
        if (ch->snd_una != ch->snd_next) {
            struct txf *f = &ch->win[ch->snd_una % WIN];
            if (f->buf && now - f->sent >= ch->rto) {
                retransmit(ch, f);
                ch->rto = ch->rto * 2 > RTO_MAX_NS ? RTO_MAX_NS : ch->rto * 2;
            }
        }
        if (now - ch->last_tx >= hy__dist.cfg.heartbeat_ns)
            hy__chan_xmit(ch, HY_WT_HEARTBEAT, 0, NULL, 0, NULL);
        return;
    default:
        return;
    }
}

/* Takes what the transport has received (bursts of up to 32, until one
 * comes back short); returns the frames taken. */
static unsigned rx_frames(struct hy__ep *ep)
{
    struct hy__rx rx[32];
    unsigned n, work = 0;
    while ((n = hy__dist.tp->rx(ep, rx, 32)) != 0) {
        for (unsigned i = 0; i < n; i++)
            hy__dist_on_frame(ep, rx[i].buf, rx[i].len, &rx[i]);
        work += n;
        if (n < 32)
            break;
    }
    return work;
}

/* The idle shard's rx spin (RX_SPIN): frames taken, 0 when none came or
 * other shards' input or a stop request ended it. No pause between two
 * looks (memif_raw_rtt's loop has none either): with one, the round trip
 * was ~40 ns longer in interleaved pairs (docs/BENCHMARKS.md, session 29);
 * the scheduler's idle loop still pauses once per turn. */
static unsigned rx_spin(struct hy__ep *ep, struct hy_shard *sh)
{
    for (unsigned i = 0; i < RX_SPIN; i++) {
        if (hy__mesh_input_hint(sh) || atomic_load_explicit(&hy__rt.stop, memory_order_relaxed))
            return 0;
        unsigned n = rx_frames(ep);
        if (n) {
            hy__dist_count(&ep->st.rx_spin_frames, n);
            hy__dist.tp->flush(ep); /* (acks may have sent retransmissions) */
            return n;
        }
    }
    return 0;
}

unsigned hy__ep_poll(void *ctx)
{
    struct hy__ep *ep = ctx;
    struct ep_priv *pv = &hy__dist.priv[ep->shard];
    if (!ep->open)
        return 0;
    struct hy_shard *sh = hy__shard();
    unsigned work = 0;
    bool poll_now = (++pv->turn % POLL_EVERY) == 0 || sh->rq_len == 0;
    if (poll_now) {
        work += rx_frames(ep);
        uint64_t now = hy__dist_now_on(sh);
        if (now - pv->timers_at >= TIMERS_EVERY_NS) {
            pv->timers_at = now;
            for (size_t i = 0; i < pv->nactive; i++)
                hy__chan_timers(pv->active[i], now);
        }
    }
    unsigned unsent = 0;
    for (size_t i = 0; i < pv->nactive; i++) {
        struct hy__chan *ch = pv->active[i];
        if (ch->state == CH_UP && (ch->cur || ch->q_head)) {
            hy__chan_pump(ch);
            work++;
        }
        if ((ch->state == CH_UP && ch->snd_una != ch->snd_next) || ch->q_head || ch->cur)
            unsent++;
        /* delayed ack: alone only after ACK_DELAY_NS (a reply would have
         * carried it) or when many frames wait for it; out of order at once */
        if (ch->ack_due && ch->state == CH_UP && !ch->sent_this_poll &&
            (ch->unacked_rx >= 16 || hy__dist_now() - ch->ack_due_since >= ACK_DELAY_NS ||
             ch->ooo[(ch->rcv_next + 1) % WIN].buf))
            hy__chan_xmit(ch, HY_WT_ACK, 0, NULL, 0, NULL);
        ch->sent_this_poll = false;
    }
    if (pv->nheld)
        hy__dist_held_release(ep, hy__dist_now(), false, false); /* fault injection's delayed frames */
    hy__dist.tp->flush(ep);
    atomic_store_explicit(&ep->unsent, unsent, memory_order_relaxed);
    /* nothing came, nothing went out, nothing is ready to run: the shard
     * is idle, look at a cheap queue a while longer before the turn ends */
    if (!work && poll_now && ep->rx_spin && sh->rq_len == 0)
        work = rx_spin(ep, sh);
    return work;
}

uint64_t hy__ep_deadline(void *ctx)
{
    struct hy__ep *ep = ctx;
    struct ep_priv *pv = &hy__dist.priv[ep->shard];
    uint64_t d = UINT64_MAX;
    for (size_t i = 0; i < pv->nactive; i++) {
        struct hy__chan *ch = pv->active[i];
        uint64_t t = UINT64_MAX;
        if (ch->state == CH_UP) {
            t = ch->last_tx + hy__dist.cfg.heartbeat_ns;
            if (ch->last_rx + hy__dist.cfg.down_after_ns < t)
                t = ch->last_rx + hy__dist.cfg.down_after_ns;
            if (ch->snd_una != ch->snd_next && ch->win[ch->snd_una % WIN].buf) {
                uint64_t r = ch->win[ch->snd_una % WIN].sent + ch->rto;
                if (r < t)
                    t = r;
            }
        } else if (ch->state != CH_IDLE) {
            t = ch->hs_retry;
            if (ch->hs_began + hy__dist.cfg.down_after_ns < t)
                t = ch->hs_began + hy__dist.cfg.down_after_ns;
        }
        if (ch->rsp && ch->rsp_began + hy__dist.cfg.down_after_ns < t)
            t = ch->rsp_began + hy__dist.cfg.down_after_ns;
        /* (the timers above run TIMERS_EVERY_NS apart at most: waking
         * earlier would find nothing to do) */
        if (t != UINT64_MAX && t < pv->timers_at + TIMERS_EVERY_NS)
            t = pv->timers_at + TIMERS_EVERY_NS;
        /* the delayed ack is sent by every poll (hy__ep_poll) */
        if (ch->state == CH_UP && ch->ack_due && ch->ack_due_since + ACK_DELAY_NS < t)
            t = ch->ack_due_since + ACK_DELAY_NS;
        if (t < d)
            d = t;
    }
    if (pv->nheld) {
        uint64_t t = hy__dist_held_deadline(pv);
        if (t < d)
            d = t;
    }
    if (hy__dist.tp->next_deadline) {
        uint64_t t = hy__dist.tp->next_deadline(ep);
        if (t < d)
            d = t;
    }
    return d;
}

/* ---- the remote-send hook (on the sending shard) ------------------------------------ */

int hy__dist_remote_send(struct hy_msg *m, void *ctx)
{
    (void)ctx;
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    struct hy__ep *ep = hy__dist.eps[sh->id];
    int pi = hy__dist_peer_index(hy_pid_node(m->to));
    if (!ep || !ep->open || pi < 0 || hy_pid_shard(m->to) >= HY_MAX_SHARDS) {
        hy__msg_free_local(sh, m); /* (no such shard: no channel to it either) */
        return HY_ENOENT;
    }
    struct hy__chan *ch = hy__chan_get(ep, pi, hy_pid_shard(m->to), true);
    if (!ch) {
        /* no memory for the channel: what it should carry (signals
         * included) is lost, so the connection goes down as a whole */
        hy__dist_count(&ep->st.dropped_nomem, 1);
        hy__msg_free_local(sh, m);
        hy_log(HY_LOG_ERROR, "dist: shard %u: no memory for a channel to node %u: down", sh->id,
               hy__dist.peers[pi].node_id);
        hy__dist_node_went_down(sh, pi, atomic_load(&hy__dist.epoch[pi]));
        return HY_ENOMEM;
    }
    /* Never dropped here, signals or messages, whatever the queue holds: a
     * process that sent waits after its send while the queue is over
     * send_queue_max (hy__dist_busy); other senders do not wait. */
    m->next = NULL;
    *ch->q_tailp = m;
    ch->q_tailp = &m->next;
    ch->q_len++;
    __atomic_store_n(&ch->cst.queue_depth, ch->q_len, __ATOMIC_RELAXED);
    if (ch->q_len > ch->cst.queue_depth_max)
        __atomic_store_n(&ch->cst.queue_depth_max, ch->q_len, __ATOMIC_RELAXED);
    if (ch->state == CH_IDLE) {
        hy__hs_start(ch);
        if (!ch->master)
            hy__dist_send_ctrl(sh, 0, CTRL_ENSURE, hy__dist.peers[pi].node_id, HY_PID_NONE, HY_REF_NONE);
    }
    hy__chan_activate(ch);
    /* A lone message from a process of an otherwise idle shard goes out now:
     * no other process will run before the end of the turn to share its
     * frame, so waiting would only add the turn's remaining work to the
     * round trip. Under load (other processes ready, messages already
     * queued) the end of the turn frames them together (hy__ep_poll). The
     * queue keeps one order either way: only its sole message leaves here. */
    if (ch->state == CH_UP && ch->q_len == 1 && !ch->cur && sh->current && sh->rq_len == 0 &&
        ch->snd_next - ch->snd_una < WIN) {
        if (!ch->nspare) {
            uint8_t *b = malloc(HY_WIRE_MTU); /* (without memory: left to the turn's end) */
            if (!b)
                return 0;
            ch->spare[ch->nspare++] = b;
        }
        hy__chan_pump(ch);
        hy__dist.tp->flush(ep);
        hy__dist_count(&ep->st.immediate_tx, 1);
    }
    return 0;
}


/* The core's busy check (hy__dist_busy_hook), on the sending shard. */
bool hy__dist_busy(struct hy_shard *sh, hy_pid to)
{
    struct hy__ep *ep = hy__dist.eps[sh->id];
    int pi = hy__dist_peer_index(hy_pid_node(to));
    if (!ep || !ep->open || pi < 0 || hy_pid_shard(to) >= HY_MAX_SHARDS)
        return false;
    struct hy__chan *ch = ep->chans[(size_t)pi * HY_MAX_SHARDS + hy_pid_shard(to)];
    if (!ch || ch->q_len <= hy__dist.cfg.send_queue_max)
        return false;
    hy__dist_count(&ep->st.busy_waits, 1);
    return true;
}

