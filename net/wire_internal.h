/* Hydra's wire format: the UDP payload of every frame. Not installed.
 *
 * All integers little-endian. A frame is a 56-byte header, `len` payload
 * bytes, and, when the channel authenticates (flag HY_WF_AUTH), a 16-byte
 * SipHash-2-4 (128-bit output) tag over header and payload, keyed with the session key.
 * DATA frames carry a channel's byte stream, in sequence order: each message
 * is a record [u32 length][64-byte message header][payload] (length counts
 * header and payload); small records share a frame, a large one spans many,
 * so fragmentation keeps a message's place in the order. Every frame of a
 * session carries its sender's clock (ts, microseconds, never 0) and echoes
 * the ts of the latest frame that advanced its receive sequence (ts_echo),
 * so an ack gives a round-trip sample even when it covers retransmissions.
 */
#ifndef HY_NET_WIRE_INTERNAL_H
#define HY_NET_WIRE_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "pid.h"

#define HY_WIRE_MAGIC 0x4859u /* "HY" */
#define HY_WIRE_VERSION 3u /* 3: SipHash-2-4 (128-bit) frame tags; 2: keyed BLAKE2b tags, ts/ts_echo, derived first sequence numbers */
#define HY_WIRE_MTU 1472      /* UDP payload within a 1500-byte IPv4 frame */
#define HY_WIRE_HDR 56
#define HY_WIRE_TAG 16
#define HY_WIRE_MSGHDR 64
#define HY_WIRE_MAXPAY (HY_WIRE_MTU - HY_WIRE_HDR - HY_WIRE_TAG)

enum hy_wire_type {
    HY_WT_DATA = 1,      /* a fragment of a message */
    HY_WT_ACK = 2,       /* acks only */
    HY_WT_HELLO = 3,     /* initiator: nonce */
    HY_WT_CHALLENGE = 4, /* responder: nonce + proof */
    HY_WT_CONFIRM = 5,   /* initiator: proof */
    HY_WT_HEARTBEAT = 6,
    HY_WT_CLOSE = 7,     /* the sender is closing the session */
    HY_WT_REJECT = 8,    /* handshake refused (proof or version) */
};

#define HY_WF_AUTH 1u

struct hy_wire_hdr {
    uint16_t magic;
    uint8_t version;
    uint8_t type;
    uint32_t src_node, src_creation;
    uint32_t dst_node, dst_creation;
    uint16_t src_shard, dst_shard;
    uint32_t session;   /* identifies the handshake; 0 before it */
    uint32_t seq;       /* DATA: sequence number */
    uint32_t ack;       /* next sequence expected from the peer */
    uint64_t sack;      /* bit i: seq ack+1+i received */
    uint32_t ts;        /* sender's clock, us (0: none) */
    uint32_t ts_echo;   /* the peer's ts being echoed (0: none) */
    uint16_t len;       /* payload bytes of this frame */
    uint16_t flags;
};

/* Serialised message header (first 64 bytes of a message's first fragment). */
struct hy_wire_msg {
    uint64_t tag;
    hy_pid from, to;
    hy_ref ref;
    uint32_t aux;
    uint8_t kind;
    uint8_t pad[3];
};

_Static_assert(sizeof(struct hy_wire_msg) == HY_WIRE_MSGHDR, "wire message header");

/* Little-endian loads and stores of any alignment: one move each on a
 * little-endian CPU (a byte loop here was not merged by the compiler and
 * cost ~8 instructions a byte on every frame and message header). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HY__LE16(v) __builtin_bswap16(v)
#define HY__LE32(v) __builtin_bswap32(v)
#define HY__LE64(v) __builtin_bswap64(v)
#else
#define HY__LE16(v) (v)
#define HY__LE32(v) (v)
#define HY__LE64(v) (v)
#endif

static inline void hy__wr16(uint8_t *p, uint16_t v)
{
    v = HY__LE16(v);
    memcpy(p, &v, sizeof(v));
}
static inline void hy__wr32(uint8_t *p, uint32_t v)
{
    v = HY__LE32(v);
    memcpy(p, &v, sizeof(v));
}
static inline void hy__wr64(uint8_t *p, uint64_t v)
{
    v = HY__LE64(v);
    memcpy(p, &v, sizeof(v));
}
static inline uint16_t hy__rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return HY__LE16(v);
}
static inline uint32_t hy__rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return HY__LE32(v);
}
static inline uint64_t hy__rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return HY__LE64(v);
}

static inline void hy__wire_put_hdr(uint8_t *b, const struct hy_wire_hdr *h)
{
    hy__wr16(b + 0, h->magic);
    b[2] = h->version;
    b[3] = h->type;
    hy__wr32(b + 4, h->src_node);
    hy__wr32(b + 8, h->src_creation);
    hy__wr32(b + 12, h->dst_node);
    hy__wr32(b + 16, h->dst_creation);
    hy__wr16(b + 20, h->src_shard);
    hy__wr16(b + 22, h->dst_shard);
    hy__wr32(b + 24, h->session);
    hy__wr32(b + 28, h->seq);
    hy__wr32(b + 32, h->ack);
    hy__wr64(b + 36, h->sack);
    hy__wr32(b + 44, h->ts);
    hy__wr32(b + 48, h->ts_echo);
    hy__wr16(b + 52, h->len);
    hy__wr16(b + 54, h->flags);
}

/* Returns 0, or -1 when the frame is malformed (bad magic, version, or a
 * length that does not match n). */
static inline int hy__wire_get_hdr(const uint8_t *b, size_t n, struct hy_wire_hdr *h)
{
    if (n < HY_WIRE_HDR)
        return -1;
    h->magic = hy__rd16(b);
    h->version = b[2];
    h->type = b[3];
    h->src_node = hy__rd32(b + 4);
    h->src_creation = hy__rd32(b + 8);
    h->dst_node = hy__rd32(b + 12);
    h->dst_creation = hy__rd32(b + 16);
    h->src_shard = hy__rd16(b + 20);
    h->dst_shard = hy__rd16(b + 22);
    h->session = hy__rd32(b + 24);
    h->seq = hy__rd32(b + 28);
    h->ack = hy__rd32(b + 32);
    h->sack = hy__rd64(b + 36);
    h->ts = hy__rd32(b + 44);
    h->ts_echo = hy__rd32(b + 48);
    h->len = hy__rd16(b + 52);
    h->flags = hy__rd16(b + 54);
    if (h->magic != HY_WIRE_MAGIC || h->type < HY_WT_DATA || h->type > HY_WT_REJECT)
        return -1;
    size_t want = HY_WIRE_HDR + (size_t)h->len + ((h->flags & HY_WF_AUTH) ? HY_WIRE_TAG : 0);
    if (want != n || h->len > HY_WIRE_MAXPAY)
        return -1;
    return 0;
}

static inline void hy__wire_put_msg(uint8_t *b, const struct hy_wire_msg *m)
{
    hy__wr64(b, m->tag);
    hy__wr64(b + 8, m->from.hi);
    hy__wr64(b + 16, m->from.lo);
    hy__wr64(b + 24, m->to.hi);
    hy__wr64(b + 32, m->to.lo);
    hy__wr64(b + 40, m->ref.hi);
    hy__wr64(b + 48, m->ref.lo);
    hy__wr32(b + 56, m->aux);
    b[60] = m->kind;
    b[61] = b[62] = b[63] = 0;
}

static inline void hy__wire_get_msg(const uint8_t *b, struct hy_wire_msg *m)
{
    m->tag = hy__rd64(b);
    m->from.hi = hy__rd64(b + 8);
    m->from.lo = hy__rd64(b + 16);
    m->to.hi = hy__rd64(b + 24);
    m->to.lo = hy__rd64(b + 32);
    m->ref.hi = hy__rd64(b + 40);
    m->ref.lo = hy__rd64(b + 48);
    m->aux = hy__rd32(b + 56);
    m->kind = b[60];
}

#endif /* HY_NET_WIRE_INTERNAL_H */
