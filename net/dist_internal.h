/* Internals of net/: endpoints, channels, transports. Not installed. */
#ifndef HY_NET_DIST_INTERNAL_H
#define HY_NET_DIST_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dist.h"
#include "hook.h"
#include "hy_config.h"
#include "shard_internal.h"
#include "wire_internal.h"

struct hy__ep;

struct hy__rx {
    uint8_t *buf;
    uint16_t len;
    bool src_known;   /* the transport filled the source address: it is checked */
    uint16_t src_port;
    uint32_t src_ip;  /* host byte order */
};

/* A transport moves datagrams for one shard's endpoint. Buffers returned by
 * rx stay valid until the next rx call on that endpoint. */
struct hy__transport {
    const char *name;
    /* optional: once per hy_dist_start, in the starting process, before any
     * endpoint opens (cfg and self are borrowed for the call) */
    int (*start)(const struct hy_dist_config *cfg, const struct hy_dist_peer *self,
                 unsigned nshards);
    /* optional: once every endpoint has closed (hy_dist_stop, failed start) */
    void (*stop)(void);
    /* optional: whether a peer still shares this node's rings (memif: the
     * link is up), so that stop() would free them under the peer's poller:
     * hy_dist_stop waits (bounded) for the peer to detach first unless the
     * peer said it no longer polls (HY_WCLOSE_STOPPED) */
    bool (*peer_attached)(void);
    int (*open)(struct hy__ep *ep);
    void (*close)(struct hy__ep *ep);
    unsigned (*rx)(struct hy__ep *ep, struct hy__rx *out, unsigned max);
    /* queues one datagram for peer (its base port + dst_shard) */
    int (*tx)(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t dst_shard,
              const uint8_t *buf, size_t len);
    void (*flush)(struct hy__ep *ep);
    /* optional: asked by the poll hook's next_deadline_ns, i.e. right before
     * the idle shard sleeps: the latest time it may sleep until (UINT64_MAX
     * = no limit, 0 = poll again now) */
    uint64_t (*next_deadline)(struct hy__ep *ep);
};

extern const struct hy__transport hy__transport_udp;
#if HY_HAVE_DPDK
extern const struct hy__transport hy__transport_dpdk;
#endif

/* Per-shard endpoint. */
struct hy__ep {
    unsigned shard;
    const struct hy_dist_peer *self;
    struct hy_poll_hook hook;
    int fd;             /* transport's descriptor to sleep on, or -1 */
    void *tp;           /* transport's private state */
    struct hy__chan **chans; /* [npeers * HY_MAX_SHARDS], lazily */
    struct hy_dist_stats st;
    bool open;
    bool quiet; /* polling stopped (hy_dist_stop's first step) */
    /* set by the transport's open when its rx is a look at memory (memif's
     * rings), no system call: an idle shard's poll hook then calls it back
     * to back for a while (hy__ep_poll's rx spin, RX_SPIN) */
    bool rx_spin;
    _Atomic unsigned unsent; /* channels with data not yet acknowledged (for a graceful stop) */
};

/* ---- the channels' machinery, shared by net/dist*.c -------------------------------- */

#define WIN 256               /* frames in flight / held out of order per channel */
#define MAX_PEERS 64
#define RTO_MIN_NS 1000000ull /* 1 ms */
#define RTO_MAX_NS 1000000000ull
#define HS_RETRY_NS 50000000ull /* handshake frames repeated every 50 ms */
#define CHAN_SPARE 8          /* frame buffers a channel keeps for reuse */
#define ACK_DELAY_NS 200000ull /* 200 us */
#define POLL_EVERY 4            /* turns between socket reads while busy */
/* An idle shard's poll hook looks at a cheap transport's queue up to this
 * many more times, back to back, before it returns to the scheduler's turn
 * (~250 cycles: the clock read, timers, the rings, the hooks), so a frame
 * that arrives meanwhile is taken within ~100 cycles instead of somewhere
 * in the next turn; the inbound rings and the stop flag end it at once.
 * ~0.5 us at most between two turns. */
#define RX_SPIN 16
/* the channels' timers (retransmission >= RTO_MIN_NS, heartbeats, the
 * handshake's 50 ms repeats, silence) are looked at this often at most,
 * not on every poll of a spinning shard */
#define TIMERS_EVERY_NS 20000ull
#define HY_TAG_DIST_REPLY (HY_TAG_SYSTEM | 0x44535452ull)

/* A channel's session state. A handshake the peer opens (its HELLO) does
 * not change it: that one is kept aside (hy__chan.rsp) until its CONFIRM
 * proves it, so an unproven frame never disturbs an established session. */
enum { CH_IDLE = 0, CH_HELLO_SENT, CH_CONFIRM_SENT, CH_UP };

/* Answers to HELLOs (CHALLENGE) and to bad proofs (REJECT) are limited per
 * endpoint and peer to a burst of HS_BURST, refilled one per HS_REFILL_NS:
 * a forged HELLO flood is not reflected at the claimed peer. */
#define HS_BURST 64u
#define HS_REFILL_NS 1000000ull

enum { CTRL_OPEN = 1, CTRL_ENSURE, CTRL_CONNECT, CTRL_NODE_DOWN, CTRL_NODE_UP, CTRL_STOP,
       CTRL_DISCONNECT, CTRL_QUIESCE };

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

/* SipHash-2-4's state after a frame's first HY__TAG_MID bytes (magic,
 * version, type, flags, nodes, creations, shards, session: the same on every
 * DATA frame of a session in one direction), with the key and the bytes it
 * was computed from; recomputed whenever either differs, so it is never
 * stale. */
#define HY__TAG_MID HY_WIRE_HDR_FIXED
struct hy__tag_mid {
    uint64_t v[4];
    uint8_t key[16];
    uint8_t tlen; /* the tag length it was computed for (its initial state
                   * differs); 0: not computed yet */
    uint8_t prefix[HY__TAG_MID];
};

struct hy__chan {
    struct hy__ep *ep;
    int pi;
    uint16_t rshard;
    bool master; /* shard 0 <-> the peer's shard 0: decides node up/down */
    int state;
    bool refused;  /* our handshake saw a REJECT or a bad proof (unproven: it goes on) */
    bool tag_mismatch_logged; /* a HELLO with another tag length was refused and logged */
    uint32_t epoch; /* the peer's node-down epoch when this session or handshake began */
    uint32_t peer_creation, session;
    uint32_t isn;  /* the session's first sequence number (derived with its key) */
    /* the handshake the peer opened, kept beside the session until proven */
    bool rsp, rsp_refused;
    uint32_t rsp_creation;
    uint8_t rsp_my_nonce[16], rsp_peer_nonce[16];
    uint64_t rsp_began;
    uint8_t my_nonce[16], peer_nonce[16];
    uint8_t key[32];
    /* frame tags' SipHash state after the first 32 bytes, which are the same
     * on every DATA frame of a session, per direction (hy__dist_frame_tag_mid) */
    struct hy__tag_mid tag_tx, tag_rx;
    /* rx_ok: tag_rx holds the state of a prefix that a tagged DATA or ACK
     * frame of this session passed every check with (hy__dist_on_frame), under
     * the current key: a frame beginning with the same 32 bytes is checked
     * by its tag alone (the fast path). Cleared by every new key and reset,
     * and before the slow path recomputes tag_rx. */
    bool rx_ok;
    /* the DATA frames' 32-byte prefix, built once per session (frame_build);
     * valid while session and peer_creation are the ones it was built for,
     * until the next reset (the options it depends on can change only with
     * a reset: a new hy_dist_start, the fuzz target's resets) */
    uint32_t tx_pre_session, tx_pre_creation;
    uint8_t tx_pre[HY_WIRE_HDR_FIXED];
    uint64_t hs_retry, hs_began;
    uint64_t last_rx, last_tx;
    /* messages waiting to be framed */
    struct hy_msg *q_head, **q_tailp;
    size_t q_len;
    /* the message being streamed out: [record header][payload] */
    struct hy_msg *cur;
    uint8_t cur_hdr[HY_WIRE_RECHDR_MAX];
    uint32_t cur_off, cur_len, cur_hdr_len;
    /* sending */
    uint32_t snd_next, snd_una;
    struct txf *win;          /* [WIN], allocated when the first session begins */
    uint64_t srtt, rttvar, rto;
    uint32_t ts_recent;       /* ts of the peer's latest frame that advanced rcv_next */
    /* receiving */
    uint32_t rcv_next;
    struct rxf *ooo;          /* [WIN], likewise: a channel no session reached stays small */
    unsigned nooo;            /* frames held in ooo (selective acks scan only when some are) */
    /* the message being parsed from the in-order byte stream */
    uint8_t in_hdr[HY_WIRE_RECHDR_MAX];
    uint32_t in_hdr_got;     /* bytes of in_hdr filled */
    uint32_t in_hdr_len;     /* the record header's bytes (0: its fields byte not read yet) */
    uint32_t in_len;         /* the record's length word: the bytes after it */
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
    /* acknowledged frames' buffers kept for the next frames (no malloc per
     * frame while a flow runs); freed by hy__chan_reset */
    uint8_t *spare[CHAN_SPARE];
    unsigned nspare;
    /* its figures: written by the owning shard with relaxed atomic
     * stores, read by any thread (hy_dist_channel_stats_get) */
    struct hy_dist_channel_stats cst;
};

struct hy__held; /* a frame held back by fault injection */

struct ep_priv {
    struct hy__chan *rx_last; /* the channel of the latest frame taken (the fast path's guess) */
    struct hy__chan **active;
    size_t nactive, capactive;
    unsigned turn;
    uint64_t timers_at;  /* when the channels' timers last ran */
    uint64_t rng;        /* fault injection's pseudo-random state */
    struct hy__held *held;   /* [FAULT_HELD], allocated on first use */
    unsigned nheld;
    struct {
        uint64_t last;   /* when the tokens were last refilled */
        uint32_t tokens;
    } hs_bucket[MAX_PEERS]; /* handshake answers (HS_BURST) */
};

struct hy__dist_state {
    struct hy_dist_config cfg;
    struct hy_dist_peer peers[MAX_PEERS];
    size_t npeers;
    int self;
    const struct hy__transport *tp;
    struct hy__ep *eps[HY_MAX_SHARDS];
    struct ep_priv priv[HY_MAX_SHARDS];
    char cookie[256];
    size_t cookie_len;
    /* frame tags: cfg.tag_bits / 8 (HY_WIRE_TAG64 or HY_WIRE_TAG128), and the
     * header flags of a tagged frame (HY_WF_AUTH, with HY_WF_TAG128 for 16) */
    uint8_t tag_len;
    uint16_t tag_flags;
    _Atomic int started;
    _Atomic int opened, open_err, stopped;
    /* hy_dist_stop: shards that stopped polling (CTRL_QUIESCE), and 1 once
     * all had, before any CLOSE of the stop went out */
    _Atomic int quiesced, all_quiet;
    /* 1 once the peer's CLOSE said none of its shards polls its device any
     * more (HY_WCLOSE_STOPPED), until a new session with it comes up */
    _Atomic uint8_t peer_quiet[MAX_PEERS];
    _Atomic uint8_t node_up[MAX_PEERS];
    /* 1 from the moment a peer is declared down until a new handshake with
     * it completes: its pids answer noconnection at once (hy_monitor,
     * hy_link) instead of waiting for a connection attempt */
    _Atomic uint8_t node_down[MAX_PEERS];
    /* bumped by every node-down event of a peer: a NODE_DOWN request resets
     * only the channels whose session or handshake began before it */
    _Atomic uint32_t epoch[MAX_PEERS];
};

extern struct hy__dist_state hy__dist;

/* The shard's clock of this scheduler turn (read at most once per turn: a
 * vDSO clock_gettime costs ~23 ns here). Off a shard the real clock. */
static inline uint64_t hy__dist_now_on(const struct hy_shard *sh)
{
    return sh ? sh->now : hy_now_ns();
}

static inline uint64_t hy__dist_now(void)
{
    return hy__dist_now_on(hy__shard());
}

/* Adds to a statistics counter that only its shard writes (other threads
 * read it relaxed): no read-modify-write atomics needed. */
static inline void hy__dist_count(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* The index in hy__dist.peers of node, or -1 (unknown, or this node). */
static inline int hy__dist_peer_index(uint32_t node)
{
    for (size_t i = 0; i < hy__dist.npeers; i++)
        if (hy__dist.peers[i].node_id == node && (int)i != hy__dist.self)
            return (int)i;
    return -1;
}

/* The pseudo-pid that addresses a shard of this node (its control plane). */
static inline hy_pid hy__dist_shard_pid(unsigned s)
{
    return hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)s, 0, 0);
}

/* A control request between shards (dist_ctrl.c). */
struct hy__ctrl {
    int op;
    uint32_t node;
    uint32_t epoch; /* CTRL_NODE_DOWN: the peer's epoch it ends */
    hy_pid requester;
};

/* dist.c */
void hy__dist_send_ctrl(struct hy_shard *sh, unsigned to_shard, int op, uint32_t node, hy_pid req,
                        hy_ref ref);
void hy__dist_broadcast(struct hy_shard *sh, int op, uint32_t node, uint32_t epoch);
void hy__dist_reply_rc(struct hy_shard *sh, hy_pid to, hy_ref ref, int rc);

/* dist_fault.c */
bool hy__dist_faults_on(void);
void hy__dist_frame_tx(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t shard,
                       const uint8_t *buf, size_t n);
void hy__dist_held_release(struct hy__ep *ep, uint64_t now, bool sent, bool all);
uint64_t hy__dist_held_deadline(const struct ep_priv *pv);

/* dist_handshake.c */
/* HMAC-SHA256 with the cookie over label, a and b (16 bytes each), the four
 * ids and this node's frame tag length (hy__dist.tag_len: both proofs and
 * the session key cover it, so a changed HELLO cannot make two nodes agree
 * on another length than their own). */
void hy__dist_mac(uint8_t out[32], const char *label, const uint8_t *a, const uint8_t *b,
                  uint32_t n1, uint32_t c1, uint32_t n2, uint32_t c2);
/* A frame's tag of tlen bytes (HY_WIRE_TAG64: SipHash-2-4's 64-bit output;
 * HY_WIRE_TAG128: its 128-bit output) over the n bytes at buf, keyed with
 * the first 16 bytes of ch's session key; written to out[tlen]. */
void hy__dist_frame_tag(const struct hy__chan *ch, const uint8_t *buf, size_t n, unsigned tlen,
                        uint8_t *out);
/* The same tag, byte for byte, starting from mid's state when the frame
 * begins with the bytes mid was computed from under ch's key for this tag
 * length (else mid is recomputed first): 4 of a DATA frame's ~14
 * compression steps saved. */
void hy__dist_frame_tag_mid(const struct hy__chan *ch, struct hy__tag_mid *mid,
                            const uint8_t *buf, size_t n, unsigned tlen, uint8_t *out);
/* The same tag from mid's state without looking at the frame's prefix or
 * the key: only for a caller that knows mid was computed from the frame's
 * first HY__TAG_MID bytes under the session's key for tlen (hy__chan.rx_ok);
 * n >= HY__TAG_MID. */
void hy__dist_frame_tag_kept(const struct hy__tag_mid *mid, const uint8_t *buf, size_t n,
                             unsigned tlen, uint8_t *out);
/* SipHash-2-4 with a 128-bit output (the published algorithm; the same as
 * libsodium's crypto_shorthash_siphashx24) of the n bytes at buf. */
void hy__siphash24_128(const uint8_t key[16], const uint8_t *buf, size_t n, uint8_t out[16]);
/* SipHash-2-4 with its standard 64-bit output (the same as libsodium's
 * crypto_shorthash_siphash24), written little-endian to out[8]. */
void hy__siphash24_64(const uint8_t key[16], const uint8_t *buf, size_t n, uint8_t out[8]);
/* Whether two frame tags of tlen bytes (8 or 16) are equal, in time
 * independent of where they differ (no early exit): 64-bit words,
 * differences OR-ed. */
static inline bool hy__dist_tag_equal(const uint8_t *a, const uint8_t *b, unsigned tlen)
{
    uint64_t a0, a1 = 0, b0, b1 = 0;
    memcpy(&a0, a, 8);
    memcpy(&b0, b, 8);
    if (tlen > 8) {
        memcpy(&a1, a + 8, 8);
        memcpy(&b1, b + 8, 8);
    }
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}
void hy__hs_start(struct hy__chan *ch);
void hy__hs_established(struct hy__chan *ch);
bool hy__hs_allowed(struct hy__ep *ep, int pi, uint64_t now);
void hy__hs_frame(struct hy__ep *ep, struct hy__chan *ch, const struct hy_wire_hdr *h,
                  const uint8_t *pay);
void hy__hs_timers(struct hy__chan *ch, uint64_t now);

/* dist_channel.c */
struct hy__chan *hy__chan_get(struct hy__ep *ep, int pi, uint16_t rshard, bool create);
void hy__chan_activate(struct hy__chan *ch);
void hy__chan_xmit(struct hy__chan *ch, uint8_t type, uint32_t seq, const uint8_t *pay,
                   uint16_t len, uint8_t *keep);
void hy__chan_reset(struct hy__chan *ch, bool keep_queue);
int hy__chan_windows(struct hy__chan *ch);
void hy__chan_fail_waiters(struct hy__chan *ch, int rc);
void hy__chan_pump(struct hy__chan *ch);
void hy__chan_on_data(struct hy__chan *ch, const struct hy_wire_hdr *h, const uint8_t *pay);
void hy__chan_on_acks(struct hy__chan *ch, const struct hy_wire_hdr *h);
void hy__chan_timers(struct hy__chan *ch, uint64_t now);
unsigned hy__ep_poll(void *ctx);
uint64_t hy__ep_deadline(void *ctx);
int hy__dist_remote_send(struct hy_msg *m, void *ctx);
bool hy__dist_busy(struct hy_shard *sh, hy_pid to);

/* A frame's ts: the clock in microseconds, never 0. */
static inline uint32_t hy__dist_ts(uint64_t now_ns)
{
    uint32_t t = (uint32_t)(now_ns / 1000);
    return t ? t : 1;
}

/* A channel's gauge (relaxed store; hy__dist_count for its counters). */
#define HY__CH_SET(ch, field, v) __atomic_store_n(&(ch)->cst.field, (uint64_t)(v), __ATOMIC_RELAXED)

/* dist_recv.c: rx is the transport's record (its source address is checked)
 * or NULL for a frame another shard received and checked */
void hy__dist_on_frame(struct hy__ep *ep, const uint8_t *buf, size_t n, const struct hy__rx *rx);
void hy__dist_deliver(struct hy__chan *ch, struct hy_msg *m, const struct hy_wire_msg *wm);

/* dist_ctrl.c */
void hy__dist_node_went_down(struct hy_shard *sh, int pi, uint32_t since);
int hy__dist_monitor_node(uint32_t node);
bool hy__dist_reachable(uint32_t node);
void hy__dist_on_handed_frame(struct hy_shard *sh, struct hy_msg *m);
void hy__dist_on_ctrl(struct hy_shard *sh, struct hy_msg *m);

/* dist_spawn.c */
void hy__dist_spawn_here(struct hy_shard *sh, struct hy_msg *m);

#ifdef HY_DIST_FUZZ
/* Fuzzing the receive path without sockets (tests/net/fuzz/, which compiles
 * dist.c with -DHY_DIST_FUZZ). Context: a shard thread of a runtime whose
 * node id is not 2 or 3, outside any process; distribution not started.
 *
 * hy__dist_fuzz_reset sets up (first call) and resets (every call) a fake
 * endpoint on the calling shard: peers are this node, HY_FUZZ_PEER and
 * HY_FUZZ_PEER + 1; whatever the channels send is checked to decode, then
 * discarded. Unless idle, the channels from HY_FUZZ_PEER's shards 0 and 1
 * are UP: session HY_FUZZ_SESSION, the peer's creation
 * HY_FUZZ_PEER_CREATION, sequence numbers from 1, every byte of the frame
 * key 0x4b. hy__dist_fuzz_frame hands one datagram to the receive path as
 * the transport would; hy__dist_fuzz_sign writes the authentication tag
 * (64-bit: the fuzz endpoint's tag_bits) into the last 8 bytes of a frame; hy__dist_fuzz_send queues a
 * message of len bytes for a process on HY_FUZZ_PEER's shard rshard;
 * hy__dist_fuzz_poll runs the endpoint's poll hook once (framing, acks,
 * timers). */
#define HY_FUZZ_PEER 2u
#define HY_FUZZ_PEER_CREATION 0xc0ffeeu
#define HY_FUZZ_SESSION 0x5e551011u
void hy__dist_fuzz_reset(bool authenticate, bool idle, size_t max_message_size);
void hy__dist_fuzz_frame(const uint8_t *buf, size_t n);
void hy__dist_fuzz_sign(uint8_t *frame, size_t n);
int hy__dist_fuzz_send(uint16_t rshard, size_t len);
void hy__dist_fuzz_poll(void);
#endif

#endif /* HY_NET_DIST_INTERNAL_H */
