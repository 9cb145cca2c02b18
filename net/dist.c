/* Distribution: endpoints, reliable channels, handshake, node liveness.
 * See dist.h for what it promises; docs/ARCHITECTURE.md for how. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

#define WIN 256               /* frames in flight / held out of order per channel */
#define MAX_PEERS 64
#define RTO_MIN_NS 1000000ull /* 1 ms */
#define RTO_MAX_NS 1000000000ull
#define HS_RETRY_NS 50000000ull /* handshake frames repeated every 50 ms */
#define ACK_DELAY_NS 200000ull /* 200 us */
#define POLL_EVERY 4            /* turns between socket reads while busy */
#define HY_TAG_DIST_REPLY (HY_TAG_SYSTEM | 0x44535452ull)

enum { CH_IDLE = 0, CH_HELLO_SENT, CH_CHALLENGED, CH_CONFIRM_SENT, CH_UP };

enum { CTRL_OPEN = 1, CTRL_ENSURE, CTRL_CONNECT, CTRL_NODE_DOWN, CTRL_NODE_UP, CTRL_STOP,
       CTRL_DISCONNECT };

struct txf {
    uint8_t *buf;
    uint16_t len;
    uint8_t rtx;
    bool sacked;
    uint64_t sent;
};

struct rxf {
    uint8_t *buf; /* frame payload copy */
    struct hy_wire_hdr h;
};

struct waiter {
    hy_pid pid;
    hy_ref ref;
};

struct hy__chan {
    struct hy__ep *ep;
    int pi;
    uint16_t rshard;
    bool master; /* shard 0 <-> the peer's shard 0: decides node up/down */
    int state;
    bool refused;
    uint32_t peer_creation, session;
    uint8_t my_nonce[16], peer_nonce[16];
    uint8_t key[32];
    uint64_t hs_retry, hs_began;
    uint64_t last_rx, last_tx;
    /* messages waiting to be framed */
    struct hy_msg *q_head, **q_tailp;
    size_t q_len;
    /* the message being streamed out: [u32 len][64-byte header][payload] */
    struct hy_msg *cur;
    uint8_t cur_hdr[4 + HY_WIRE_MSGHDR];
    uint32_t cur_off, cur_len;
    /* sending */
    uint32_t snd_next, snd_una;
    struct txf win[WIN];
    uint64_t srtt, rttvar, rto;
    /* receiving */
    uint32_t rcv_next;
    struct rxf ooo[WIN];
    /* the message being parsed from the in-order byte stream */
    uint8_t in_hdr[4 + HY_WIRE_MSGHDR];
    uint32_t in_hdr_got;     /* bytes of in_hdr filled */
    uint32_t in_len;         /* 64 + payload of the record being read */
    struct hy_msg *in_msg;   /* its buffer (NULL while skipping an oversized one) */
    uint32_t in_got;         /* payload bytes filled */
    bool in_skip;
    bool ack_due, sent_this_poll;
    uint64_t ack_due_since;  /* delayed ack: a reply may carry it */
    uint32_t unacked_rx;     /* frames received since our last ack */
    /* hy_dist_connect waiters (master only) */
    struct waiter *waiters;
    size_t nwaiters;
    bool active; /* listed in the endpoint's active set */
};

struct held; /* a frame held back by fault injection */

struct ep_priv {
    struct hy__chan **active;
    size_t nactive, capactive;
    unsigned turn;
    uint64_t rng;        /* fault injection's pseudo-random state */
    struct held *held;   /* [FAULT_HELD], allocated on first use */
    unsigned nheld;
};

static struct {
    struct hy_dist_config cfg;
    struct hy_dist_peer peers[MAX_PEERS];
    size_t npeers;
    int self;
    const struct hy__transport *tp;
    struct hy__ep *eps[HY_MAX_SHARDS];
    struct ep_priv priv[HY_MAX_SHARDS];
    char cookie[256];
    size_t cookie_len;
    _Atomic int started;
    _Atomic int opened, open_err, stopped;
    _Atomic uint8_t node_up[MAX_PEERS];
    /* 1 from the moment a peer is declared down until a new handshake with
     * it completes: its pids answer noconnection at once (hy_monitor,
     * hy_link) instead of waiting for a connection attempt */
    _Atomic uint8_t node_down[MAX_PEERS];
} D;

/* ---- small helpers -------------------------------------------------------------- */

/* The shard's clock of this scheduler turn (DESIGN: read at most once per
 * turn; a vDSO clock_gettime costs ~23 ns here, and the poll hook and every
 * frame used to read it). Off a shard (never on the paths below) the real
 * clock. */
static inline uint64_t tnow(void)
{
    struct hy_shard *sh = hy__shard();
    return sh ? sh->now : hy_now_ns();
}

static inline void st_add(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static int peer_index(uint32_t node)
{
    for (size_t i = 0; i < D.npeers; i++)
        if (D.peers[i].node_id == node && (int)i != D.self)
            return (int)i;
    return -1;
}

static hy_pid shard_pid(unsigned s)
{
    return hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)s, 0, 0);
}

struct ctrl {
    int op;
    uint32_t node;
    hy_pid requester;
};

static void send_ctrl(struct hy_shard *sh, unsigned to_shard, int op, uint32_t node, hy_pid req,
                      hy_ref ref)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, sizeof(struct ctrl), &m) != 0)
        return;
    struct ctrl c = {op, node, req};
    memcpy(m->data, &c, sizeof(c));
    m->kind = HY_K_DIST_CTRL;
    m->ref = ref;
    m->to = shard_pid(to_shard);
    hy__route(sh, m);
}

static void broadcast(struct hy_shard *sh, int op, uint32_t node)
{
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        send_ctrl(sh, s, op, node, HY_PID_NONE, HY_REF_NONE);
}

static void reply_rc(struct hy_shard *sh, hy_pid to, hy_ref ref, int rc)
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

/* ---- fault injection (tests only: hy_dist_config.test_*) ---------------------------- */

#define FAULT_HELD 64
#define FAULT_REORDER_MAX_NS 1000000ull /* a reordered frame waits at most 1 ms */
#define FAULT_DELAY_NS 2000000ull       /* default test_delay_ns */

struct held {
    const struct hy_dist_peer *to;
    uint64_t due;    /* sent by the poll hook once the clock passes it */
    uint16_t shard, len;
    uint8_t after;   /* reorder: sent after this many more frames (0: by time only) */
    bool used, dup;
    uint8_t buf[HY_WIRE_MTU];
};

static inline bool faults_on(void)
{
    return (D.cfg.test_drop_permille | D.cfg.test_dup_permille | D.cfg.test_reorder_permille |
            D.cfg.test_delay_permille) != 0;
}

/* xorshift64, one sequence per shard: true with probability permille/1000 */
static bool fault_roll(struct ep_priv *pv, unsigned permille)
{
    if (!permille)
        return false;
    uint64_t x = pv->rng ? pv->rng : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pv->rng = x;
    return x % 1000 < permille;
}

static void held_out(struct hy__ep *ep, struct ep_priv *pv, struct held *f)
{
    D.tp->tx(ep, f->to, f->shard, f->buf, f->len);
    if (f->dup)
        D.tp->tx(ep, f->to, f->shard, f->buf, f->len);
    f->used = false;
    pv->nheld--;
}

/* Sends the held frames that are due: by the clock (now; 0 = not by the
 * clock), after one more frame went out (sent), or all of them. */
static void held_release(struct hy__ep *ep, uint64_t now, bool sent, bool all)
{
    struct ep_priv *pv = &D.priv[ep->shard];
    for (unsigned i = 0; i < FAULT_HELD && pv->nheld; i++) {
        struct held *f = &pv->held[i];
        if (!f->used)
            continue;
        if (all || (sent && f->after && --f->after == 0) || (now && now >= f->due))
            held_out(ep, pv, f);
    }
}

static uint64_t held_deadline(const struct ep_priv *pv)
{
    uint64_t d = UINT64_MAX;
    for (unsigned i = 0; pv->nheld && i < FAULT_HELD; i++)
        if (pv->held[i].used && pv->held[i].due < d)
            d = pv->held[i].due;
    return d;
}

/* Every frame goes out through here: straight to the transport, or, with
 * fault injection configured, dropped, held back, or duplicated. */
static void frame_tx(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t shard,
                     const uint8_t *buf, size_t n)
{
    if (__builtin_expect(!faults_on(), 1)) {
        D.tp->tx(ep, to, shard, buf, n);
        return;
    }
    struct ep_priv *pv = &D.priv[ep->shard];
    if (fault_roll(pv, D.cfg.test_drop_permille))
        return;
    bool delay = fault_roll(pv, D.cfg.test_delay_permille);
    bool reorder = !delay && fault_roll(pv, D.cfg.test_reorder_permille);
    bool dup = fault_roll(pv, D.cfg.test_dup_permille);
    if ((delay || reorder) && n <= HY_WIRE_MTU) {
        if (!pv->held)
            pv->held = calloc(FAULT_HELD, sizeof(*pv->held));
        for (unsigned i = 0; pv->held && i < FAULT_HELD; i++) {
            struct held *f = &pv->held[i];
            if (f->used)
                continue;
            uint64_t now = hy_now_ns();
            f->to = to;
            f->shard = shard;
            f->len = (uint16_t)n;
            memcpy(f->buf, buf, n);
            f->dup = dup;
            f->after = reorder ? (uint8_t)(1 + (pv->rng >> 32) % 3) : 0;
            f->due = now + (delay ? (D.cfg.test_delay_ns ? D.cfg.test_delay_ns : FAULT_DELAY_NS)
                                  : FAULT_REORDER_MAX_NS);
            f->used = true;
            pv->nheld++;
            return;
        }
    }
    D.tp->tx(ep, to, shard, buf, n);
    if (dup)
        D.tp->tx(ep, to, shard, buf, n);
    if (pv->nheld)
        held_release(ep, 0, true, false);
}

/* ---- crypto ------------------------------------------------------------------------ */

static void mac(uint8_t out[32], const char *label, const uint8_t *a, const uint8_t *b,
                uint32_t n1, uint32_t c1, uint32_t n2, uint32_t c2)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)D.cookie, D.cookie_len);
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

static void frame_tag(const struct hy__chan *ch, const uint8_t *buf, size_t n, uint8_t out[16])
{
    uint8_t full[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, ch->key, sizeof(ch->key));
    crypto_auth_hmacsha256_update(&st, buf, n);
    crypto_auth_hmacsha256_final(&st, full);
    memcpy(out, full, 16);
}

/* ---- channels ------------------------------------------------------------------------- */

static struct hy__chan *chan_get(struct hy__ep *ep, int pi, uint16_t rshard, bool create)
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
    ep->chans[idx] = ch;
    return ch;
}

static void activate(struct hy__chan *ch)
{
    if (ch->active)
        return;
    struct ep_priv *pv = &D.priv[ch->ep->shard];
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

static void xmit(struct hy__chan *ch, uint8_t type, uint32_t seq, uint16_t fidx, uint16_t fcnt,
                 uint32_t msg_len, const uint8_t *pay, uint16_t len, uint8_t *keep)
{
    struct hy__ep *ep = ch->ep;
    uint8_t buf[HY_WIRE_MTU];
    struct hy_wire_hdr h = {
        .magic = HY_WIRE_MAGIC,
        .version = HY_WIRE_VERSION,
        .type = type,
        .src_node = hy__rt.node_id,
        .src_creation = hy__rt.creation,
        .dst_node = D.peers[ch->pi].node_id,
        .dst_creation = ch->peer_creation,
        .src_shard = (uint16_t)ep->shard,
        .dst_shard = ch->rshard,
        .session = ch->session,
        .seq = seq,
        .ack = ch->rcv_next,
        .frag_idx = fidx,
        .frag_cnt = fcnt,
        .msg_len = msg_len,
        .len = len,
    };
    uint64_t sack = 0;
    if (ch->state == CH_UP) {
        for (unsigned i = 0; i < 64 && i + 1 < WIN; i++)
            if (ch->ooo[(ch->rcv_next + 1 + i) % WIN].buf &&
                ch->ooo[(ch->rcv_next + 1 + i) % WIN].h.seq == ch->rcv_next + 1 + i)
                sack |= 1ull << i;
    }
    h.sack = sack;
    bool auth = D.cfg.authenticate && ch->session && type != HY_WT_HELLO &&
                type != HY_WT_CHALLENGE && type != HY_WT_CONFIRM && type != HY_WT_REJECT;
    if (auth)
        h.flags |= HY_WF_AUTH;
    hy__wire_put_hdr(buf, &h);
    if (len)
        memcpy(buf + HY_WIRE_HDR, pay, len);
    size_t n = HY_WIRE_HDR + len;
    if (auth) {
        frame_tag(ch, buf, n, buf + n);
        n += HY_WIRE_TAG;
    }
    if (keep)
        memcpy(keep, buf, n);
    frame_tx(ep, &D.peers[ch->pi], ch->rshard, buf, n);
    st_add(&ep->st.frames_tx, 1);
    st_add(&ep->st.bytes_tx, n);
    ch->last_tx = tnow();
    ch->sent_this_poll = true;
    ch->ack_due = false;
    ch->unacked_rx = 0;
}

/* Re-sends a kept DATA frame, refreshing its ack fields. */
static void retransmit(struct hy__chan *ch, struct txf *f)
{
    struct hy_wire_hdr h;
    size_t n = f->len;
    if (hy__wire_get_hdr(f->buf, n, &h) != 0)
        return;
    h.ack = ch->rcv_next;
    hy__wire_put_hdr(f->buf, &h);
    if (h.flags & HY_WF_AUTH)
        frame_tag(ch, f->buf, n - HY_WIRE_TAG, f->buf + n - HY_WIRE_TAG);
    frame_tx(ch->ep, &D.peers[ch->pi], ch->rshard, f->buf, n);
    f->rtx++;
    f->sent = tnow();
    st_add(&ch->ep->st.retransmits, 1);
    st_add(&ch->ep->st.frames_tx, 1);
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
static void chan_reset(struct hy__chan *ch, bool keep_queue)
{
    struct hy_shard *sh = hy__shard();
    for (unsigned i = 0; i < WIN; i++) {
        free(ch->win[i].buf);
        ch->win[i].buf = NULL;
        free(ch->ooo[i].buf);
        ch->ooo[i].buf = NULL;
    }
    if (ch->in_msg) {
        hy__msg_free_local(sh, ch->in_msg);
        ch->in_msg = NULL;
    }
    ch->in_hdr_got = ch->in_got = ch->in_len = 0;
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
    ch->snd_next = ch->snd_una = ch->rcv_next = 0;
    ch->ack_due = false;
}

static void fail_waiters(struct hy__chan *ch, int rc)
{
    struct hy_shard *sh = hy__shard();
    for (size_t i = 0; i < ch->nwaiters; i++)
        reply_rc(sh, ch->waiters[i].pid, ch->waiters[i].ref, rc);
    free(ch->waiters);
    ch->waiters = NULL;
    ch->nwaiters = 0;
}

static void start_handshake(struct hy__chan *ch)
{
    randombytes_buf(ch->my_nonce, sizeof(ch->my_nonce));
    ch->state = CH_HELLO_SENT;
    ch->refused = false;
    ch->session = 0;
    ch->peer_creation = 0;
    uint64_t now = tnow();
    ch->hs_began = now;
    ch->hs_retry = now + HS_RETRY_NS;
    ch->last_rx = now;
    activate(ch);
    xmit(ch, HY_WT_HELLO, 0, 0, 0, 0, ch->my_nonce, 16, NULL);
}

/* Streams queued messages into DATA frames, packing several small
 * messages into one frame and splitting a large one over many, as far as
 * the window allows. Called at the end of the turn (the poll hook), so the
 * messages a turn produced share frames. */
static void pump(struct hy__chan *ch)
{
    struct hy_shard *sh = hy__shard();
    while (ch->state == CH_UP && (ch->cur || ch->q_head)) {
        if (ch->snd_next - ch->snd_una >= WIN)
            return; /* window full: acks will make room */
        uint8_t pay[HY_WIRE_MAXPAY];
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
                hy__wr32(ch->cur_hdr, HY_WIRE_MSGHDR + m->size);
                hy__wire_put_msg(ch->cur_hdr + 4, &wm);
                ch->cur = m;
                ch->cur_off = 0;
                ch->cur_len = 4 + HY_WIRE_MSGHDR + m->size;
            }
            uint32_t room = HY_WIRE_MAXPAY - n;
            uint32_t left = ch->cur_len - ch->cur_off;
            uint32_t take = left < room ? left : room;
            uint32_t hdr = 4 + HY_WIRE_MSGHDR;
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
                st_add(&ch->ep->st.msgs_tx, 1);
            }
        }
        struct txf *f = &ch->win[ch->snd_next % WIN];
        free(f->buf);
        f->buf = malloc(HY_WIRE_MTU);
        if (!f->buf)
            return;
        f->len = (uint16_t)(HY_WIRE_HDR + n + (D.cfg.authenticate ? HY_WIRE_TAG : 0));
        f->rtx = 0;
        f->sacked = false;
        f->sent = tnow();
        xmit(ch, HY_WT_DATA, ch->snd_next, 0, 1, 0, pay, (uint16_t)n, f->buf);
        ch->snd_next++;
    }
}

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

/* ---- spawning for other nodes ------------------------------------------------------ */

#define MAX_FNS 256

struct fn_ent {
    char name[HY_DIST_NAME_MAX];
    hy_proc_fn fn;
};

static struct fn_ent fns[MAX_FNS];
static size_t nfns;

struct spawn_req {
    char name[HY_DIST_NAME_MAX];
    uint32_t shard;
    uint8_t link, monitor;
};

int hy_dist_register_fn(const char *name, hy_proc_fn fn)
{
    if (!name || !*name || strlen(name) >= HY_DIST_NAME_MAX || !fn)
        return HY_EINVAL;
    for (size_t i = 0; i < nfns; i++)
        if (strcmp(fns[i].name, name) == 0)
            return HY_EEXIST;
    if (nfns == MAX_FNS)
        return HY_ENOSPC;
    strcpy(fns[nfns].name, name);
    fns[nfns].fn = fn;
    nfns++;
    return 0;
}

static hy_proc_fn find_fn(const char *name)
{
    for (size_t i = 0; i < nfns; i++)
        if (strcmp(fns[i].name, name) == 0)
            return fns[i].fn;
    return NULL;
}

/* A spawn request from another node, on the shard it asked for. */
static void dist_spawn_here(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy__spawn_reply rep = {.rc = HY_EINVAL};
    struct spawn_req rq;
    if (m->size >= sizeof(rq)) {
        memcpy(&rq, m->data, sizeof(rq));
        rq.name[HY_DIST_NAME_MAX - 1] = '\0';
        hy_proc_fn fn = find_fn(rq.name);
        rep.link = rq.link;
        rep.monitor = rq.monitor;
        if (!fn) {
            rep.rc = HY_ESRCH;
        } else {
            struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
            struct hy_proc *child = NULL;
            size_t alen = m->size - sizeof(rq);
            rep.rc = hy__proc_create(sh, fn, NULL, &o, m->data + sizeof(rq), alen, &rep.pid,
                                     &child);
            if (rep.rc == 0 && (rq.link || rq.monitor))
                hy__spawn_install_child(sh, child, rq.link, rq.monitor, m->from, m->ref);
        }
    }
    struct hy_msg *r;
    if (hy__msg_alloc(sh, sizeof(rep), &r) == 0) {
        memcpy(r->data, &rep, sizeof(rep));
        r->kind = HY_K_SPAWN_REPLY;
        r->tag = HY_TAG_SPAWN_REPLY;
        r->ref = m->ref;
        r->to = m->from;
        r->from = rep.rc == 0 ? rep.pid : m->to; /* a pid of this node either way */
        hy__route(sh, r);
    }
    hy__msg_free_local(sh, m);
}

int hy_dist_spawn(uint32_t node, const char *fn_name, const void *arg, size_t len,
                  const struct hy_dist_spawn_opts *opts, hy_pid *out)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    struct hy_proc *p = sh->current;
    if (!fn_name || !*fn_name || strlen(fn_name) >= HY_DIST_NAME_MAX || (len && !arg))
        return HY_EINVAL;
    if (!atomic_load(&D.started))
        return HY_ENOTSTARTED;
    if (peer_index(node) < 0)
        return HY_ENOENT;
    struct hy_dist_spawn_opts def = {0};
    if (!opts)
        opts = &def;
    if (opts->shard < 0 || opts->shard >= HY_MAX_SHARDS)
        return HY_EINVAL;
    struct spawn_req rq;
    memset(&rq, 0, sizeof(rq));
    strcpy(rq.name, fn_name);
    rq.shard = (uint32_t)opts->shard;
    rq.link = opts->link;
    rq.monitor = opts->monitor;
    struct hy_msg *m;
    int rc = hy__msg_alloc(sh, sizeof(rq) + len, &m);
    if (rc)
        return rc;
    memcpy(m->data, &rq, sizeof(rq));
    if (len)
        memcpy(m->data + sizeof(rq), arg, len);
    hy_ref ref;
    hy_ref_make(&ref);
    m->kind = HY_K_DIST_SPAWN;
    m->ref = ref;
    m->to = hy_pid_make(node, 0, (uint16_t)opts->shard, 0, 0);
    hy__route(sh, m);
    struct hy_msg *r;
    p->defer_exit++;
    rc = hy_recv_ref(ref, &r, (int64_t)D.cfg.down_after_ns);
    p->defer_exit--;
    if (rc)
        return rc;
    struct hy__spawn_reply rep;
    memcpy(&rep, r->data, sizeof(rep));
    hy_msg_free(r);
    if (rep.rc == 0) {
        if (out)
            *out = rep.pid;
        if (opts->monitor && opts->monitor_ref)
            *opts->monitor_ref = ref;
    }
    if (p->exit_pending && !p->defer_exit)
        hy__proc_exit_current(p, p->exit_reason_pending);
    return rep.rc;
}

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
        return rc != 0 || (hy_pid_node(pid) == D.peers[ch->pi].node_id &&
                           hy_pid_shard(pid) < HY_MAX_SHARDS);
    }
    default:
        return true;
    }
}

static void deliver_msg(struct hy__chan *ch, struct hy_msg *m, const struct hy_wire_msg *wm)
{
    struct hy_shard *sh = hy__shard();
    struct hy__ep *ep = ch->ep;
    /* (a sender's shard beyond HY_MAX_SHARDS could not be answered) */
    if (!kind_allowed(wm->kind) || hy_pid_node(wm->to) != hy__rt.node_id ||
        hy_pid_node(wm->from) != D.peers[ch->pi].node_id ||
        hy_pid_shard(wm->from) >= HY_MAX_SHARDS) {
        st_add(&ep->st.malformed, 1);
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
        st_add(&ep->st.malformed, 1);
        hy__msg_free_local(sh, m);
        return;
    }
    st_add(&ep->st.msgs_rx, 1);
    if (m->kind == HY_K_DIST_NAME) {
        char name[HY_NAME_MAX];
        hy_pid pid;
        if (m->size < HY_NAME_MAX) {
            st_add(&ep->st.malformed, 1);
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
        dist_spawn_here(sh, m);
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

/* An in-order DATA frame: its bytes continue the message stream. */
static void take_frame(struct hy__chan *ch, const struct hy_wire_hdr *h, const uint8_t *pay)
{
    struct hy_shard *sh = hy__shard();
    struct hy__ep *ep = ch->ep;
    uint32_t n = h->len, i = 0;
    const uint32_t hdr = 4 + HY_WIRE_MSGHDR;
    while (i < n && ch->state == CH_UP) {
        if (ch->in_hdr_got < hdr) {
            uint32_t k = hdr - ch->in_hdr_got;
            if (k > n - i)
                k = n - i;
            memcpy(ch->in_hdr + ch->in_hdr_got, pay + i, k);
            ch->in_hdr_got += k;
            i += k;
            if (ch->in_hdr_got < hdr)
                return;
            ch->in_len = hy__rd32(ch->in_hdr);
            ch->in_got = 0;
            ch->in_msg = NULL;
            ch->in_skip = false;
            if (ch->in_len < HY_WIRE_MSGHDR ||
                ch->in_len - HY_WIRE_MSGHDR > D.cfg.max_message_size) {
                /* counted and skipped; the stream stays in step */
                st_add(&ep->st.malformed, 1);
                ch->in_skip = true;
            } else if (hy__msg_alloc(sh, ch->in_len - HY_WIRE_MSGHDR, &ch->in_msg) != 0) {
                ch->in_skip = true;
            }
        }
        uint32_t want = ch->in_len - HY_WIRE_MSGHDR - ch->in_got;
        uint32_t k = want < n - i ? want : n - i;
        if (k && !ch->in_skip)
            memcpy(ch->in_msg->data + ch->in_got, pay + i, k);
        ch->in_got += k;
        i += k;
        if (ch->in_got == ch->in_len - HY_WIRE_MSGHDR) {
            struct hy_msg *m = ch->in_msg;
            ch->in_msg = NULL;
            ch->in_hdr_got = 0;
            if (m) {
                struct hy_wire_msg wm;
                hy__wire_get_msg(ch->in_hdr + 4, &wm);
                deliver_msg(ch, m, &wm);
            }
        }
    }
}

static void on_data(struct hy__chan *ch, const struct hy_wire_hdr *h, const uint8_t *pay)
{
    int32_t d = (int32_t)(h->seq - ch->rcv_next);
    if (!ch->ack_due)
        ch->ack_due_since = tnow();
    ch->ack_due = true;
    ch->unacked_rx++;
    if (d < 0) {
        st_add(&ch->ep->st.dup_frames, 1);
        return;
    }
    if (d >= WIN)
        return; /* beyond the window: the sender will retransmit */
    if (d > 0) {
        struct rxf *r = &ch->ooo[h->seq % WIN];
        if (r->buf && r->h.seq == h->seq) {
            st_add(&ch->ep->st.dup_frames, 1);
            return;
        }
        free(r->buf);
        r->buf = malloc(h->len ? h->len : 1);
        if (!r->buf)
            return;
        memcpy(r->buf, pay, h->len);
        r->h = *h;
        return;
    }
    take_frame(ch, h, pay);
    ch->rcv_next++;
    for (;;) {
        struct rxf *r = &ch->ooo[ch->rcv_next % WIN];
        if (!r->buf || r->h.seq != ch->rcv_next)
            break;
        uint8_t *b = r->buf;
        struct hy_wire_hdr rh = r->h;
        r->buf = NULL;
        take_frame(ch, &rh, b);
        free(b);
        ch->rcv_next++;
        if (ch->state != CH_UP)
            return;
    }
}

static void on_acks(struct hy__chan *ch, const struct hy_wire_hdr *h)
{
    uint64_t now = tnow();
    int32_t adv = (int32_t)(h->ack - ch->snd_una);
    if (adv > 0 && (int32_t)(h->ack - ch->snd_next) <= 0) {
        /* Karn: an ack that covers a retransmitted frame is ambiguous, and
         * so is every frame it covers (received long before the hole was
         * filled): no sample. Otherwise one sample, from the newest frame. */
        bool ambiguous = false;
        for (uint32_t s = ch->snd_una; s != h->ack; s++)
            if (ch->win[s % WIN].rtx)
                ambiguous = true;
        for (uint32_t s = ch->snd_una; s != h->ack; s++) {
            struct txf *f = &ch->win[s % WIN];
            if (f->buf && !ambiguous && s + 1 == h->ack) {
                /* Jacobson/Karels */
                uint64_t rtt = now - f->sent;
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
            }
            free(f->buf);
            f->buf = NULL;
        }
        ch->snd_una = h->ack;
        /* progress ends a backoff: back to the estimate */
        if (ch->srtt) {
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
                st_add(&ch->ep->st.fast_retransmits, 1);
            }
        }
    }
}

static void node_went_down(struct hy_shard *sh, int pi)
{
    atomic_store(&D.node_down[pi], 1);
    if (atomic_exchange(&D.node_up[pi], 0) || true) {
        st_add(&D.eps[sh->id]->st.nodes_down, 1);
        broadcast(sh, CTRL_NODE_DOWN, D.peers[pi].node_id);
    }
}

static void established(struct hy__chan *ch)
{
    ch->state = CH_UP;
    ch->snd_next = ch->snd_una = ch->rcv_next = 1;
    ch->last_rx = ch->last_tx = tnow();
    st_add(&ch->ep->st.handshakes, 1);
    if (ch->master) {
        atomic_store(&D.node_down[ch->pi], 0);
        atomic_store(&D.node_up[ch->pi], 1);
        fail_waiters(ch, 0);
        broadcast(hy__shard(), CTRL_NODE_UP, D.peers[ch->pi].node_id);
    }
}

static void derive(struct hy__chan *ch, const uint8_t *na, const uint8_t *nb, uint32_t an,
                   uint32_t ac, uint32_t bn, uint32_t bc)
{
    uint8_t s[32];
    mac(s, "session", na, nb, an, ac, bn, bc);
    ch->session = hy__rd32(s) | 1u; /* never 0 */
    mac(ch->key, "key", na, nb, an, ac, bn, bc);
}

static void on_frame(struct hy__ep *ep, const uint8_t *buf, size_t n)
{
    struct hy_shard *sh = hy__shard();
    struct hy_wire_hdr h;
    if (hy__wire_get_hdr(buf, n, &h) != 0 || h.version != HY_WIRE_VERSION ||
        h.dst_node != hy__rt.node_id) {
        st_add(&ep->st.malformed, 1);
        return;
    }
    if (h.dst_shard != ep->shard) {
        /* landed on the wrong shard's queue (no hardware steering): hand it
         * over through the ring mesh, copied into a message buffer */
        struct hy_msg *m;
        if (h.dst_shard >= hy__rt.nshards || hy__msg_alloc(sh, n, &m) != 0) {
            st_add(&ep->st.malformed, 1);
            return;
        }
        memcpy(m->data, buf, n);
        m->kind = HY_K_DIST_FRAME;
        m->to = shard_pid(h.dst_shard);
        st_add(&ep->st.handed_over, 1);
        hy__route(sh, m);
        return;
    }
    int pi = peer_index(h.src_node);
    if (pi < 0 || h.src_shard >= HY_MAX_SHARDS) {
        st_add(&ep->st.malformed, 1);
        return;
    }
    st_add(&ep->st.frames_rx, 1);
    st_add(&ep->st.bytes_rx, n);
    const uint8_t *pay = buf + HY_WIRE_HDR;
    struct hy__chan *ch = chan_get(ep, pi, h.src_shard, h.type == HY_WT_HELLO);
    if (!ch) {
        st_add(&ep->st.stale, 1);
        return;
    }
    uint64_t now = tnow();
    const struct hy_dist_peer *me = &D.peers[D.self], *peer = &D.peers[pi];
    switch (h.type) {
    case HY_WT_HELLO: {
        if (h.len != 16) {
            st_add(&ep->st.malformed, 1);
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
            mac(out + 16, "B", ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation,
                me->node_id, hy__rt.creation);
            xmit(ch, HY_WT_CHALLENGE, 0, 0, 0, 0, out, sizeof(out), NULL);
            return;
        }
        if (ch->state == CH_UP || ch->state == CH_CONFIRM_SENT) {
            /* the peer lost the session (or restarted): start over */
            bool restarted = ch->peer_creation && h.src_creation != ch->peer_creation;
            chan_reset(ch, true);
            if (restarted && ch->master)
                node_went_down(sh, pi);
        }
        memcpy(ch->peer_nonce, pay, 16);
        randombytes_buf(ch->my_nonce, 16);
        ch->peer_creation = h.src_creation;
        uint8_t out[48];
        memcpy(out, ch->my_nonce, 16);
        mac(out + 16, "B", ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation,
            me->node_id, hy__rt.creation);
        ch->state = CH_CHALLENGED;
        ch->hs_began = now;
        ch->last_rx = now;
        activate(ch);
        xmit(ch, HY_WT_CHALLENGE, 0, 0, 0, 0, out, sizeof(out), NULL);
        return;
    }
    case HY_WT_CHALLENGE: {
        if (ch->state != CH_HELLO_SENT || h.len != 48) {
            st_add(&ep->st.stale, 1);
            return;
        }
        uint8_t want[32];
        mac(want, "B", ch->my_nonce, pay, me->node_id, hy__rt.creation, peer->node_id,
            h.src_creation);
        if (sodium_memcmp(want, pay + 16, 32) != 0) {
            st_add(&ep->st.auth_failures, 1);
            ch->refused = true;
            xmit(ch, HY_WT_REJECT, 0, 0, 0, 0, NULL, 0, NULL);
            return;
        }
        memcpy(ch->peer_nonce, pay, 16);
        ch->peer_creation = h.src_creation;
        uint8_t proof[32];
        mac(proof, "A", ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation, me->node_id,
            hy__rt.creation);
        derive(ch, ch->my_nonce, ch->peer_nonce, me->node_id, hy__rt.creation, peer->node_id,
               h.src_creation);
        ch->state = CH_CONFIRM_SENT;
        ch->hs_retry = now + HS_RETRY_NS;
        ch->last_rx = now;
        uint32_t sess = ch->session;
        ch->session = 0; /* CONFIRM itself goes without a session */
        xmit(ch, HY_WT_CONFIRM, 0, 0, 0, 0, proof, 32, NULL);
        ch->session = sess;
        return;
    }
    case HY_WT_CONFIRM: {
        if (ch->state == CH_UP && h.src_creation == ch->peer_creation) {
            xmit(ch, HY_WT_ACK, 0, 0, 0, 0, NULL, 0, NULL); /* our ACK was lost */
            return;
        }
        if (ch->state != CH_CHALLENGED || h.len != 32 || h.src_creation != ch->peer_creation) {
            st_add(&ep->st.stale, 1);
            return;
        }
        uint8_t want[32];
        mac(want, "A", ch->my_nonce, ch->peer_nonce, me->node_id, hy__rt.creation,
            peer->node_id, h.src_creation);
        if (sodium_memcmp(want, pay, 32) != 0) {
            st_add(&ep->st.auth_failures, 1);
            xmit(ch, HY_WT_REJECT, 0, 0, 0, 0, NULL, 0, NULL);
            ch->state = CH_IDLE;
            return;
        }
        derive(ch, ch->peer_nonce, ch->my_nonce, peer->node_id, h.src_creation, me->node_id,
               hy__rt.creation);
        established(ch);
        xmit(ch, HY_WT_ACK, 0, 0, 0, 0, NULL, 0, NULL);
        return;
    }
    case HY_WT_REJECT:
        if (ch->state == CH_HELLO_SENT || ch->state == CH_CONFIRM_SENT) {
            st_add(&ep->st.auth_failures, 1);
            ch->refused = true;
            if (ch->master)
                fail_waiters(ch, HY_ECONNREFUSED);
        }
        return;
    default:
        break;
    }
    /* DATA, ACK, HEARTBEAT, CLOSE: only within the current session */
    if (h.session == 0 || h.session != ch->session || h.src_creation != ch->peer_creation ||
        h.dst_creation != hy__rt.creation) {
        st_add(&ep->st.stale, 1);
        return;
    }
    if (h.flags & HY_WF_AUTH) {
        uint8_t tag[16];
        frame_tag(ch, buf, n - HY_WIRE_TAG, tag);
        if (sodium_memcmp(tag, buf + n - HY_WIRE_TAG, 16) != 0) {
            st_add(&ep->st.auth_failures, 1);
            return;
        }
    } else if (D.cfg.authenticate) {
        st_add(&ep->st.auth_failures, 1);
        return;
    }
    if (ch->state == CH_CONFIRM_SENT)
        established(ch); /* the responder took our CONFIRM */
    if (ch->state != CH_UP)
        return;
    ch->last_rx = now;
    if (h.type == HY_WT_CLOSE) {
        if (ch->master)
            node_went_down(sh, pi);
        else
            chan_reset(ch, false);
        return;
    }
    on_acks(ch, &h);
    if (h.type == HY_WT_DATA)
        on_data(ch, &h, pay);
}

/* ---- the poll hook ------------------------------------------------------------------- */

static void chan_timers(struct hy__chan *ch, uint64_t now)
{
    struct hy_shard *sh = hy__shard();
    switch (ch->state) {
    case CH_HELLO_SENT:
    case CH_CONFIRM_SENT:
    case CH_CHALLENGED:
        if (now - ch->hs_began >= D.cfg.down_after_ns || ch->refused) {
            int rc = ch->refused ? HY_ECONNREFUSED : HY_ETIMEDOUT;
            bool master = ch->master;
            int pi = ch->pi;
            if (master)
                fail_waiters(ch, rc);
            chan_reset(ch, false);
            if (master)
                node_went_down(sh, pi);
            return;
        }
        if (ch->state != CH_CHALLENGED && now >= ch->hs_retry) {
            ch->hs_retry = now + HS_RETRY_NS;
            if (ch->state == CH_HELLO_SENT) {
                xmit(ch, HY_WT_HELLO, 0, 0, 0, 0, ch->my_nonce, 16, NULL);
            } else {
                uint8_t proof[32];
                const struct hy_dist_peer *me = &D.peers[D.self], *peer = &D.peers[ch->pi];
                mac(proof, "A", ch->peer_nonce, ch->my_nonce, peer->node_id, ch->peer_creation,
                    me->node_id, hy__rt.creation);
                uint32_t sess = ch->session;
                ch->session = 0;
                xmit(ch, HY_WT_CONFIRM, 0, 0, 0, 0, proof, 32, NULL);
                ch->session = sess;
            }
        }
        return;
    case CH_UP:
        if (ch->master && now - ch->last_rx >= D.cfg.down_after_ns) {
            hy_log(HY_LOG_WARNING, "dist: node %u silent for %.0f ms: down",
                   D.peers[ch->pi].node_id, (double)(now - ch->last_rx) / 1e6);
            node_went_down(sh, ch->pi);
            return;
        }
        if (ch->snd_una != ch->snd_next) {
            struct txf *f = &ch->win[ch->snd_una % WIN];
            if (f->buf && now - f->sent >= ch->rto) {
                retransmit(ch, f);
                ch->rto = ch->rto * 2 > RTO_MAX_NS ? RTO_MAX_NS : ch->rto * 2;
            }
        }
        if (now - ch->last_tx >= D.cfg.heartbeat_ns)
            xmit(ch, HY_WT_HEARTBEAT, 0, 0, 0, 0, NULL, 0, NULL);
        return;
    default:
        return;
    }
}

static unsigned ep_poll(void *ctx)
{
    struct hy__ep *ep = ctx;
    struct ep_priv *pv = &D.priv[ep->shard];
    if (!ep->open)
        return 0;
    unsigned work = 0;
    struct hy__rx rx[32];
    unsigned n;
    bool poll_now = (++pv->turn % POLL_EVERY) == 0 || hy__shard()->rq_len == 0;
    if (poll_now) {
        while ((n = D.tp->rx(ep, rx, 32)) != 0) {
            for (unsigned i = 0; i < n; i++)
                on_frame(ep, rx[i].buf, rx[i].len);
            work += n;
            if (n < 32)
                break;
        }
        uint64_t now = tnow();
        for (size_t i = 0; i < pv->nactive; i++)
            chan_timers(pv->active[i], now);
    }
    unsigned unsent = 0;
    for (size_t i = 0; i < pv->nactive; i++) {
        struct hy__chan *ch = pv->active[i];
        if (ch->state == CH_UP && (ch->cur || ch->q_head)) {
            pump(ch);
            work++;
        }
        if ((ch->state == CH_UP && ch->snd_una != ch->snd_next) || ch->q_head || ch->cur)
            unsent++;
        /* delayed ack: alone only after ACK_DELAY_NS (a reply would have
         * carried it) or when many frames wait for it; out of order at once */
        if (ch->ack_due && ch->state == CH_UP && !ch->sent_this_poll &&
            (ch->unacked_rx >= 16 || tnow() - ch->ack_due_since >= ACK_DELAY_NS ||
             ch->ooo[(ch->rcv_next + 1) % WIN].buf))
            xmit(ch, HY_WT_ACK, 0, 0, 0, 0, NULL, 0, NULL);
        ch->sent_this_poll = false;
    }
    if (pv->nheld)
        held_release(ep, tnow(), false, false); /* fault injection's delayed frames */
    D.tp->flush(ep);
    atomic_store_explicit(&ep->unsent, unsent, memory_order_relaxed);
    return work;
}

static uint64_t ep_deadline(void *ctx)
{
    struct hy__ep *ep = ctx;
    struct ep_priv *pv = &D.priv[ep->shard];
    uint64_t d = UINT64_MAX;
    for (size_t i = 0; i < pv->nactive; i++) {
        struct hy__chan *ch = pv->active[i];
        uint64_t t = UINT64_MAX;
        if (ch->state == CH_UP) {
            t = ch->last_tx + D.cfg.heartbeat_ns;
            if (ch->ack_due && ch->ack_due_since + ACK_DELAY_NS < t)
                t = ch->ack_due_since + ACK_DELAY_NS;
            if (ch->master && ch->last_rx + D.cfg.down_after_ns < t)
                t = ch->last_rx + D.cfg.down_after_ns;
            if (ch->snd_una != ch->snd_next && ch->win[ch->snd_una % WIN].buf) {
                uint64_t r = ch->win[ch->snd_una % WIN].sent + ch->rto;
                if (r < t)
                    t = r;
            }
        } else if (ch->state != CH_IDLE) {
            t = ch->hs_retry;
            if (ch->hs_began + D.cfg.down_after_ns < t)
                t = ch->hs_began + D.cfg.down_after_ns;
        }
        if (t < d)
            d = t;
    }
    if (pv->nheld) {
        uint64_t t = held_deadline(pv);
        if (t < d)
            d = t;
    }
    if (D.tp->next_deadline) {
        uint64_t t = D.tp->next_deadline(ep);
        if (t < d)
            d = t;
    }
    return d;
}

/* ---- the remote-send hook (on the sending shard) ------------------------------------ */

static int remote_send(struct hy_msg *m, void *ctx)
{
    (void)ctx;
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    struct hy__ep *ep = D.eps[sh->id];
    int pi = peer_index(hy_pid_node(m->to));
    if (!ep || !ep->open || pi < 0 || hy_pid_shard(m->to) >= HY_MAX_SHARDS) {
        hy__msg_free_local(sh, m); /* (no such shard: no channel to it either) */
        return HY_ENOENT;
    }
    struct hy__chan *ch = chan_get(ep, pi, hy_pid_shard(m->to), true);
    if (!ch) {
        hy__msg_free_local(sh, m);
        return HY_ENOMEM;
    }
    if (ch->q_len >= D.cfg.send_queue_max) {
        st_add(&ep->st.dropped_queue_full, 1);
        hy__msg_free_local(sh, m);
        return 0;
    }
    m->next = NULL;
    *ch->q_tailp = m;
    ch->q_tailp = &m->next;
    ch->q_len++;
    if (ch->state == CH_IDLE) {
        start_handshake(ch);
        if (!ch->master)
            send_ctrl(sh, 0, CTRL_ENSURE, D.peers[pi].node_id, HY_PID_NONE, HY_REF_NONE);
    }
    activate(ch); /* framed at the end of the turn, with the turn's other sends */
    return 0;
}

/* For hy_monitor/hy_link on a pid of node: a configured peer not declared
 * down can be reached (a connection is made on demand). */
static bool reachable_hook(uint32_t node)
{
    int pi = peer_index(node);
    return pi >= 0 && atomic_load(&D.started) && !atomic_load(&D.node_down[pi]);
}

static int monitor_node_hook(uint32_t node)
{
    struct hy_shard *sh = hy__shard();
    int pi = peer_index(node);
    if (pi < 0 || !sh || !atomic_load(&D.started))
        return -1;
    if (!atomic_load(&D.node_up[pi]))
        send_ctrl(sh, 0, CTRL_ENSURE, node, HY_PID_NONE, HY_REF_NONE);
    return 0;
}

/* ---- control requests, on each shard --------------------------------------------------- */

static void ep_open(struct hy_shard *sh)
{
    struct hy__ep *ep = calloc(1, sizeof(*ep));
    int rc = HY_ENOMEM;
    if (ep) {
        ep->shard = sh->id;
        ep->self = &D.peers[D.self];
        ep->fd = -1;
        ep->chans = calloc(D.npeers * HY_MAX_SHARDS, sizeof(*ep->chans));
        rc = ep->chans ? D.tp->open(ep) : HY_ENOMEM;
        if (rc == 0) {
            D.priv[sh->id].rng = (D.cfg.test_fault_seed ^ 0x9e3779b97f4a7c15ull) +
                                 hy__rt.node_id * 0x100000001b3ull + sh->id * 0xbf58476d1ce4e5b9ull;
            ep->hook.poll = ep_poll;
            ep->hook.next_deadline_ns = ep_deadline;
            ep->hook.ctx = ep;
            ep->hook.fd = ep->fd;
            ep->open = true;
            D.eps[sh->id] = ep;
            hy_hook_add_poll(&ep->hook);
        } else {
            free(ep->chans);
            free(ep);
        }
    }
    if (rc)
        atomic_store(&D.open_err, rc);
    atomic_fetch_add(&D.opened, 1);
}

static void ep_close(struct hy_shard *sh)
{
    struct hy__ep *ep = D.eps[sh->id];
    struct ep_priv *pv = &D.priv[sh->id];
    if (ep) {
        for (size_t i = 0; i < pv->nactive; i++) {
            struct hy__chan *ch = pv->active[i];
            if (ch->state == CH_UP)
                xmit(ch, HY_WT_CLOSE, 0, 0, 0, 0, NULL, 0, NULL);
        }
        if (pv->nheld)
            held_release(ep, 0, false, true);
        D.tp->flush(ep);
        for (size_t i = 0; i < D.npeers * HY_MAX_SHARDS; i++) {
            struct hy__chan *ch = ep->chans[i];
            if (!ch)
                continue;
            chan_reset(ch, false);
            fail_waiters(ch, HY_ENOTSTARTED);
            free(ch);
        }
        hy_hook_remove_poll(&ep->hook);
        D.tp->close(ep);
        free(ep->chans);
        ep->open = false;
    }
    free(pv->active);
    free(pv->held);
    memset(pv, 0, sizeof(*pv));
    /* links and monitors to every peer: noconnection */
    for (size_t i = 0; i < D.npeers; i++)
        if ((int)i != D.self)
            hy__dist_node_down(sh, D.peers[i].node_id);
    D.eps[sh->id] = NULL;
    free(ep);
    atomic_fetch_add(&D.stopped, 1);
}

static void on_handed_frame(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy__ep *ep = D.eps[sh->id];
    if (ep && ep->open)
        on_frame(ep, m->data, m->size);
    hy__msg_free_local(sh, m);
}

static void on_ctrl(struct hy_shard *sh, struct hy_msg *m)
{
    struct ctrl c;
    memcpy(&c, m->data, sizeof(c));
    hy_ref ref = m->ref;
    hy__msg_free_local(sh, m);
    struct hy__ep *ep = D.eps[sh->id];
    int pi = peer_index(c.node);
    switch (c.op) {
    case CTRL_OPEN:
        ep_open(sh);
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
                reply_rc(sh, c.requester, ref, HY_ENOENT);
            return;
        }
        struct hy__chan *ch = chan_get(ep, pi, 0, true); /* shard 0's master channel */
        if (!ch) {
            if (c.op == CTRL_CONNECT)
                reply_rc(sh, c.requester, ref, HY_ENOMEM);
            return;
        }
        if (c.op == CTRL_CONNECT) {
            if (ch->state == CH_UP) {
                reply_rc(sh, c.requester, ref, 0);
            } else {
                struct waiter *nw = realloc(ch->waiters, (ch->nwaiters + 1) * sizeof(*nw));
                if (!nw) {
                    reply_rc(sh, c.requester, ref, HY_ENOMEM);
                    return;
                }
                ch->waiters = nw;
                ch->waiters[ch->nwaiters++] = (struct waiter){c.requester, ref};
            }
        }
        if (ch->state == CH_IDLE)
            start_handshake(ch);
        return;
    }
    case CTRL_DISCONNECT:
        if (pi >= 0) {
            struct hy__chan *ch = chan_get(ep, pi, 0, false);
            if (ch && ch->state == CH_UP)
                xmit(ch, HY_WT_CLOSE, 0, 0, 0, 0, NULL, 0, NULL);
            node_went_down(sh, pi);
        }
        return;
    case CTRL_NODE_DOWN:
        if (pi >= 0) {
            if (sh->id == 0)
                atomic_store(&D.node_up[pi], 0);
            atomic_store(&D.node_down[pi], 1);
            for (unsigned s = 0; s < HY_MAX_SHARDS; s++) {
                struct hy__chan *ch = ep->chans[(size_t)pi * HY_MAX_SHARDS + s];
                if (!ch)
                    continue;
                if (ch->master)
                    fail_waiters(ch, HY_ETIMEDOUT);
                chan_reset(ch, false);
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

/* ---- public API ---------------------------------------------------------------------------- */

void hy_dist_config_init(struct hy_dist_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->node_id = 1;
    cfg->transport = HY_DIST_UDP;
    cfg->heartbeat_ns = 100000000ull;
    cfg->down_after_ns = 1000000000ull;
    cfg->send_queue_max = 65536;
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

int hy_dist_start(const struct hy_dist_config *cfg)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!cfg || !cfg->cookie || !*cfg->cookie || cfg->npeers == 0 || cfg->npeers > MAX_PEERS ||
        !cfg->peers || cfg->node_id != hy__rt.node_id || strlen(cfg->cookie) >= sizeof(D.cookie))
        return HY_EINVAL;
    const struct hy__transport *tp = NULL;
    if (cfg->transport == HY_DIST_UDP)
        tp = &hy__transport_udp;
#if HY_HAVE_DPDK
    else if (cfg->transport == HY_DIST_DPDK)
        tp = &hy__transport_dpdk;
#endif
    if (!tp)
        return HY_ENOTSUP;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&D.started, &expected, 1))
        return HY_EALREADY;
    if (sodium_init() < 0) {
        atomic_store(&D.started, 0);
        return HY_EIO;
    }
    D.cfg = *cfg;
    D.cfg.peers = NULL;
    if (!D.cfg.heartbeat_ns)
        D.cfg.heartbeat_ns = 100000000ull;
    if (!D.cfg.down_after_ns)
        D.cfg.down_after_ns = 1000000000ull;
    if (!D.cfg.send_queue_max)
        D.cfg.send_queue_max = 65536;
    if (!D.cfg.max_message_size || D.cfg.max_message_size > hy__rt.cfg.max_message_size)
        D.cfg.max_message_size = hy__rt.cfg.max_message_size;
    memcpy(D.peers, cfg->peers, cfg->npeers * sizeof(*cfg->peers));
    D.npeers = cfg->npeers;
    D.self = -1;
    for (size_t i = 0; i < D.npeers; i++)
        if (D.peers[i].node_id == cfg->node_id)
            D.self = (int)i;
    strcpy(D.cookie, cfg->cookie);
    D.cookie_len = strlen(cfg->cookie);
    D.tp = tp;
    for (size_t i = 0; i < MAX_PEERS; i++) {
        atomic_store(&D.node_up[i], 0);
        atomic_store(&D.node_down[i], 0);
    }
    if (D.self < 0) {
        atomic_store(&D.started, 0);
        return HY_EINVAL;
    }
    atomic_store(&D.opened, 0);
    atomic_store(&D.open_err, 0);
    atomic_store(&D.stopped, 0);
    if (D.tp->start) {
        int trc = D.tp->start(cfg, &D.peers[D.self], hy__rt.nshards);
        if (trc) {
            atomic_store(&D.started, 0);
            return trc;
        }
    }
    D.cfg.eal_args = NULL; /* borrowed for the start only */
    D.cfg.eal_argc = 0;
    hy__kind_register(HY_K_DIST_CTRL, on_ctrl);
    hy__kind_register(HY_K_DIST_FRAME, on_handed_frame);
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        send_ctrl(sh, s, CTRL_OPEN, 0, HY_PID_NONE, HY_REF_NONE);
    int rc = wait_count(&D.opened, (int)hy__rt.nshards);
    if (rc == 0)
        rc = atomic_load(&D.open_err);
    if (rc) {
        for (unsigned s = 0; s < hy__rt.nshards; s++)
            send_ctrl(sh, s, CTRL_STOP, 0, HY_PID_NONE, HY_REF_NONE);
        wait_count(&D.stopped, (int)hy__rt.nshards);
        if (D.tp->stop)
            D.tp->stop();
        atomic_store(&D.started, 0);
        return rc;
    }
    hy__dist_monitor_node_hook = monitor_node_hook;
    hy_hook_set_remote_send(remote_send, NULL);
    atomic_store_explicit(&hy__dist_reachable_hook, reachable_hook, memory_order_release);
    return 0;
}

int hy_dist_stop(void)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!atomic_load(&D.started))
        return HY_ENOTSTARTED;
    /* graceful: let what was sent reach the peers (bounded by down_after) */
    uint64_t deadline = hy_now_ns() + D.cfg.down_after_ns;
    for (;;) {
        hy_sleep_ns(1000000); /* first: every shard's hook runs after our last sends */
        unsigned busy = 0;
        for (unsigned s = 0; s < hy__rt.nshards; s++)
            if (D.eps[s])
                busy += atomic_load_explicit(&D.eps[s]->unsent, memory_order_relaxed);
        if (!busy || hy_now_ns() > deadline)
            break;
    }
    hy_hook_set_remote_send(NULL, NULL);
    hy__dist_monitor_node_hook = NULL;
    atomic_store_explicit(&hy__dist_reachable_hook, NULL, memory_order_release);
    atomic_store(&D.stopped, 0);
    for (unsigned s = 0; s < hy__rt.nshards; s++)
        send_ctrl(sh, s, CTRL_STOP, 0, HY_PID_NONE, HY_REF_NONE);
    int rc = wait_count(&D.stopped, (int)hy__rt.nshards);
    if (rc == 0 && D.tp->stop)
        D.tp->stop(); /* (a shard that never closed may still use it) */
    atomic_store(&D.started, 0);
    return rc;
}

int hy_dist_connect(uint32_t node)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!atomic_load(&D.started))
        return HY_ENOTSTARTED;
    if (peer_index(node) < 0)
        return HY_ENOENT;
    hy_ref ref;
    hy_ref_make(&ref);
    send_ctrl(sh, 0, CTRL_CONNECT, node, sh->current->pid, ref);
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, (int64_t)(2 * D.cfg.down_after_ns));
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
    if (!atomic_load(&D.started))
        return HY_ENOTSTARTED;
    if (peer_index(node) < 0)
        return HY_ENOENT;
    send_ctrl(sh, 0, CTRL_DISCONNECT, node, HY_PID_NONE, HY_REF_NONE);
    return 0;
}

int hy_dist_nodes(uint32_t *nodes, size_t max, size_t *count)
{
    if (!count || (max && !nodes))
        return HY_EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < D.npeers; i++) {
        if (atomic_load(&D.node_up[i])) {
            if (n < max)
                nodes[n] = D.peers[i].node_id;
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
    if (peer_index(node) < 0)
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
    if (peer_index(node) < 0)
        return HY_ENOENT;
    return hy__monitor_named(hy_pid_make(node, 0, 0, 0, 0), name, ref);
}

int hy_dist_stats_get(struct hy_dist_stats *out)
{
    if (!out)
        return HY_EINVAL;
    if (!atomic_load(&D.started))
        return HY_ENOTSTARTED;
    memset(out, 0, sizeof(*out));
    for (unsigned s = 0; s < HY_MAX_SHARDS; s++) {
        struct hy__ep *ep = D.eps[s];
        if (!ep)
            continue;
        const uint64_t *a = (const uint64_t *)&ep->st;
        uint64_t *b = (uint64_t *)out;
        for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
            b[k] += __atomic_load_n(&a[k], __ATOMIC_RELAXED);
    }
    return 0;
}

/* ---- fuzzing entry points (tests/net/fuzz/, built with -DHY_DIST_FUZZ) ---------------- */

#ifdef HY_DIST_FUZZ
static struct hy__ep *fuzz_ep;

static int fuzz_open(struct hy__ep *ep)
{
    (void)ep;
    return 0;
}

static void fuzz_close(struct hy__ep *ep) { (void)ep; }

static unsigned fuzz_rx(struct hy__ep *ep, struct hy__rx *out, unsigned max)
{
    (void)ep;
    (void)out;
    (void)max;
    return 0;
}

/* What the channels send is discarded, after a check that it decodes. */
static int fuzz_tx(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t dst_shard,
                   const uint8_t *buf, size_t len)
{
    (void)ep;
    (void)to;
    (void)dst_shard;
    struct hy_wire_hdr h;
    if (len > HY_WIRE_MTU || hy__wire_get_hdr(buf, len, &h) != 0) {
        fprintf(stderr, "dist fuzz: sent a frame that does not decode (%zu bytes)\n", len);
        abort();
    }
    return 0;
}

static void fuzz_flush(struct hy__ep *ep) { (void)ep; }

static const struct hy__transport fuzz_transport = {
    .name = "fuzz",
    .open = fuzz_open,
    .close = fuzz_close,
    .rx = fuzz_rx,
    .tx = fuzz_tx,
    .flush = fuzz_flush,
};

void hy__dist_fuzz_reset(bool authenticate, bool idle, size_t max_message_size)
{
    struct hy_shard *sh = hy__shard();
    if (!fuzz_ep) {
        if (sodium_init() < 0)
            abort();
        hy_dist_config_init(&D.cfg);
        D.cfg.node_id = hy__rt.node_id;
        memset(D.peers, 0, sizeof(D.peers));
        for (unsigned i = 0; i < 3; i++) {
            snprintf(D.peers[i].name, sizeof(D.peers[i].name), "f%u", i + 1);
            D.peers[i].node_id = i == 0 ? hy__rt.node_id : (i == 1 ? HY_FUZZ_PEER : HY_FUZZ_PEER + 1);
            D.peers[i].ip = 0x7f000001;
            D.peers[i].base_port = (uint16_t)(47000 + 8 * i);
        }
        D.npeers = 3;
        D.self = 0;
        strcpy(D.cookie, "fuzz-cookie");
        D.cookie_len = strlen(D.cookie);
        D.tp = &fuzz_transport;
        struct hy__ep *ep = calloc(1, sizeof(*ep));
        if (!ep || !(ep->chans = calloc(D.npeers * HY_MAX_SHARDS, sizeof(*ep->chans))))
            abort();
        ep->shard = sh->id;
        ep->self = &D.peers[0];
        ep->fd = -1;
        ep->open = true;
        D.eps[sh->id] = ep;
        hy__kind_register(HY_K_DIST_CTRL, on_ctrl);
        hy__kind_register(HY_K_DIST_FRAME, on_handed_frame);
        hy_hook_set_remote_send(remote_send, NULL);
        atomic_store(&D.started, 1);
        fuzz_ep = ep;
    }
    struct hy__ep *ep = fuzz_ep;
    D.cfg.authenticate = authenticate;
    D.cfg.max_message_size = max_message_size < hy__rt.cfg.max_message_size
                                 ? max_message_size
                                 : hy__rt.cfg.max_message_size;
    for (size_t i = 0; i < D.npeers * HY_MAX_SHARDS; i++) {
        struct hy__chan *ch = ep->chans[i];
        if (ch) {
            chan_reset(ch, false);
            fail_waiters(ch, HY_ENOTSTARTED);
        }
    }
    if (idle)
        return;
    uint64_t now = hy_now_ns();
    for (uint16_t rs = 0; rs < 2; rs++) {
        struct hy__chan *ch = chan_get(ep, 1, rs, true);
        if (!ch)
            abort();
        ch->state = CH_UP;
        ch->refused = false;
        ch->peer_creation = HY_FUZZ_PEER_CREATION;
        ch->session = HY_FUZZ_SESSION;
        memset(ch->my_nonce, 0x11, sizeof(ch->my_nonce));
        memset(ch->peer_nonce, 0x22, sizeof(ch->peer_nonce));
        memset(ch->key, 0x4b, sizeof(ch->key));
        ch->snd_next = ch->snd_una = ch->rcv_next = 1;
        ch->srtt = ch->rttvar = 0;
        ch->rto = 50000000ull;
        ch->last_rx = ch->last_tx = ch->hs_began = now;
        ch->unacked_rx = 0;
        activate(ch);
    }
}

void hy__dist_fuzz_frame(const uint8_t *buf, size_t n)
{
    on_frame(fuzz_ep, buf, n);
}

void hy__dist_fuzz_sign(uint8_t *frame, size_t n)
{
    struct hy__chan ch;
    memset(ch.key, 0x4b, sizeof(ch.key));
    if (n >= HY_WIRE_HDR + HY_WIRE_TAG)
        frame_tag(&ch, frame, n - HY_WIRE_TAG, frame + n - HY_WIRE_TAG);
}

int hy__dist_fuzz_send(uint16_t rshard, size_t len)
{
    struct hy_msg *m;
    int rc = hy__msg_alloc(hy__shard(), len, &m);
    if (rc)
        return rc;
    memset(m->data, 0x5a, len);
    m->tag = len;
    m->to = hy_pid_make(HY_FUZZ_PEER, HY_FUZZ_PEER_CREATION, rshard, 1, 1);
    m->from = hy_pid_make(hy__rt.node_id, hy__rt.creation, 0, 1, 1);
    return remote_send(m, NULL);
}

void hy__dist_fuzz_poll(void)
{
    ep_poll(fuzz_ep);
}
#endif /* HY_DIST_FUZZ */
