/* Hydra's wire format: the UDP payload of every frame. Not installed.
 *
 * All integers little-endian. A frame is a 56-byte header, a payload, and,
 * when the channel authenticates (flag HY_WF_AUTH), a SipHash-2-4 tag over
 * header and payload, keyed with the session key: 8 bytes (SipHash-2-4's
 * standard 64-bit output), or 16 (its 128-bit output) with flag
 * HY_WF_TAG128. Both nodes of a session use the same length (the dist
 * option tag_bits, checked in the handshake and covered by its proofs); a
 * frame whose flag says the other length is dropped as a failed tag.
 * The payload's length is the datagram's less the header and the tag (the
 * header carries none). The header's first 32 bytes (HY_WIRE_HDR_FIXED:
 * magic, version, type, flags, both nodes, creations and shards, session)
 * are the same on every DATA frame of a session in one direction, so the
 * tag's SipHash state after those four words is kept per channel and
 * direction (dist_handshake.c); only the last 24 bytes (sequence, acks,
 * timestamps) and the payload are absorbed per frame.
 * DATA frames carry a channel's byte stream, in sequence order: each message
 * is a record [u32 length][message header, 6-66 bytes][payload] (length counts
 * what follows it: the rest of the header and the payload; see "message
 * records" below); small records share a frame, a large one spans many,
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
/* 6: 64-bit frame tags by default (HY_WF_TAG128: 128-bit), the tag length
 * in the HELLO and the proofs;
 * 5: per-session fields first (a 32-byte fixed prefix), no length field;
 * 4: message records of 6-66 bytes (fields only when needed); 3: SipHash-2-4
 * (128-bit) frame tags; 2: keyed BLAKE2b tags, ts/ts_echo, derived first
 * sequence numbers */
#define HY_WIRE_VERSION 6u
#define HY_WIRE_MTU 1472      /* UDP payload within a 1500-byte IPv4 frame */
#define HY_WIRE_HDR 56
#define HY_WIRE_HDR_FIXED 32 /* the per-session prefix: see above */
#define HY_WIRE_TAG64 8   /* a tag's bytes without HY_WF_TAG128 */
#define HY_WIRE_TAG128 16 /* with it */
#define HY_WIRE_TAG_MAX HY_WIRE_TAG128
/* (the same for both tag lengths: a session's frames carry at most this) */
#define HY_WIRE_MAXPAY (HY_WIRE_MTU - HY_WIRE_HDR - HY_WIRE_TAG_MAX)

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

#define HY_WF_AUTH 1u   /* the frame ends with a tag */
#define HY_WF_TAG128 2u /* with HY_WF_AUTH: the tag is 16 bytes, not 8 (alone: malformed) */

/* The tag's bytes at the end of a frame with these header flags: 0, 8 or 16. */
static inline unsigned hy__wire_tag_len(uint16_t flags)
{
    unsigned f = flags & (HY_WF_AUTH | HY_WF_TAG128);
    return ((f & HY_WF_AUTH) * HY_WIRE_TAG64) << (f >> 1); /* 0, 8, 0, 16: no branch */
}

/* HELLO's payload: [nonce 16][u8 the sender's frame tag length, 8 or 16] */
#define HY_HELLO_LEN 17u
/* REJECT's optional payload: [u8 why][u8 detail]; why HY_WREJ_TAG_BITS: the
 * HELLO asked for another tag length than the refusing node's (detail: its
 * length in bytes). Unproven, like the REJECT itself: for the log only. */
#define HY_WREJ_TAG_BITS 1u

/* CLOSE's optional first payload byte */
#define HY_WCLOSE_STOPPED 1u /* every shard of the sender has stopped polling its
                              * device: this frame was its last touch of it */

/* The header, in wire order (offsets in bytes). */
struct hy_wire_hdr {
    uint16_t magic;        /*  0 */
    uint8_t version;       /*  2 */
    uint8_t type;          /*  3 */
    uint16_t flags;        /*  4 */
    uint16_t src_shard;    /*  6 */
    uint32_t src_node;     /*  8 */
    uint32_t src_creation; /* 12 */
    uint32_t dst_node;     /* 16 */
    uint32_t dst_creation; /* 20 */
    uint32_t session;      /* 24: identifies the handshake; 0 before it */
    uint16_t dst_shard;    /* 28 */
                           /* 30: u16 reserved, 0 (a frame with another value is malformed) */
    uint32_t seq;          /* 32: DATA: sequence number */
    uint32_t ack;          /* 36: next sequence expected from the peer */
    uint64_t sack;         /* 40: bit i: seq ack+1+i received */
    uint32_t ts;           /* 48: sender's clock, us (0: none) */
    uint32_t ts_echo;      /* 52: the peer's ts being echoed (0: none) */
    uint16_t len;          /* not sent: the payload's bytes, from the datagram's length */
};

/* A message's header fields, decoded (the record header's content). */
struct hy_wire_msg {
    uint64_t tag;
    hy_pid from, to;
    hy_ref ref;
    uint32_t aux;
    uint8_t kind;
};

/* Message records. A record begins with 6 fixed bytes:
 *   [u32 length][u8 kind][u8 fields]
 * then, in this order, only the fields its `fields` bits name:
 *   HY_WR_TAG       u64 tag                  (absent: 0)
 *   from            HY_WR_FROM_FULL: u64 hi, u64 lo; otherwise u16 shard,
 *                   u64 lo, the node and creation being the sending node's
 *   to              HY_WR_TO_FULL: u64 hi, u64 lo; otherwise u16 shard,
 *                   u64 lo, the node and creation being the receiving node's
 *   HY_WR_AUX       u32 aux                  (absent: 0)
 *   HY_WR_REF       u64 hi, u64 lo           (absent: no ref)
 * and the payload. `length` counts every byte after itself (the header's
 * other bytes and the payload), so a record is 4 + length bytes. A set bit
 * outside HY_WR_ALL makes the record unreadable (the stream cannot be
 * followed past it). The encoding is exact: any field value round-trips. */
#define HY_WR_TAG 1u
#define HY_WR_FROM_FULL 2u
#define HY_WR_TO_FULL 4u
#define HY_WR_AUX 8u
#define HY_WR_REF 16u
#define HY_WR_ALL 31u
#define HY_WIRE_RECHDR_MIN 6u                       /* fixed bytes, read first */
#define HY_WIRE_RECHDR_MAX (6u + 8 + 16 + 16 + 4 + 16) /* every field, both pids in full */

/* The hi word of a pid with the given node and creation and shard 0: what
 * a compact pid's shard is added to. */
static inline uint64_t hy__wire_pid_base(uint32_t node, uint32_t creation)
{
    return hy_pid_make(node, creation, 0, 0, 0).hi;
}

/* Bytes of a record header (the length word included) whose fields byte is
 * `fields`, or 0 when it has a bit outside HY_WR_ALL. */
static inline uint32_t hy__wire_rec_hdr_size(uint8_t fields)
{
    if (fields & ~HY_WR_ALL)
        return 0;
    return HY_WIRE_RECHDR_MIN + ((fields & HY_WR_TAG) ? 8u : 0u) +
           ((fields & HY_WR_FROM_FULL) ? 16u : 10u) + ((fields & HY_WR_TO_FULL) ? 16u : 10u) +
           ((fields & HY_WR_AUX) ? 4u : 0u) + ((fields & HY_WR_REF) ? 16u : 0u);
}

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

/* Writes a header's per-frame fields (its last HY_WIRE_HDR -
 * HY_WIRE_HDR_FIXED bytes) at b, the header's start. */
static inline void hy__wire_put_hdr_frame(uint8_t *b, uint32_t seq, uint32_t ack, uint64_t sack,
                                          uint32_t ts, uint32_t ts_echo)
{
    hy__wr32(b + 32, seq);
    hy__wr32(b + 36, ack);
    hy__wr64(b + 40, sack);
    hy__wr32(b + 48, ts);
    hy__wr32(b + 52, ts_echo);
}

/* Writes h's fields at b (HY_WIRE_HDR bytes); h->len is not written. */
static inline void hy__wire_put_hdr(uint8_t *b, const struct hy_wire_hdr *h)
{
    hy__wr16(b + 0, h->magic);
    b[2] = h->version;
    b[3] = h->type;
    hy__wr16(b + 4, h->flags);
    hy__wr16(b + 6, h->src_shard);
    hy__wr32(b + 8, h->src_node);
    hy__wr32(b + 12, h->src_creation);
    hy__wr32(b + 16, h->dst_node);
    hy__wr32(b + 20, h->dst_creation);
    hy__wr32(b + 24, h->session);
    hy__wr16(b + 28, h->dst_shard);
    hy__wr16(b + 30, 0);
    hy__wire_put_hdr_frame(b, h->seq, h->ack, h->sack, h->ts, h->ts_echo);
}

/* Reads the header of the n-byte frame at b into h, h->len being the
 * payload's length (n less the header and, with HY_WF_AUTH, the tag of
 * hy__wire_tag_len(flags) bytes). Returns 0, or -1 when the frame is
 * malformed (short, bad magic, type or reserved field, HY_WF_TAG128 without
 * HY_WF_AUTH, a payload longer than HY_WIRE_MAXPAY); the version is the
 * caller's to check. */
static inline int hy__wire_get_hdr(const uint8_t *b, size_t n, struct hy_wire_hdr *h)
{
    if (n < HY_WIRE_HDR)
        return -1;
    h->magic = hy__rd16(b);
    h->version = b[2];
    h->type = b[3];
    h->flags = hy__rd16(b + 4);
    h->src_shard = hy__rd16(b + 6);
    h->src_node = hy__rd32(b + 8);
    h->src_creation = hy__rd32(b + 12);
    h->dst_node = hy__rd32(b + 16);
    h->dst_creation = hy__rd32(b + 20);
    h->session = hy__rd32(b + 24);
    h->dst_shard = hy__rd16(b + 28);
    h->seq = hy__rd32(b + 32);
    h->ack = hy__rd32(b + 36);
    h->sack = hy__rd64(b + 40);
    h->ts = hy__rd32(b + 48);
    h->ts_echo = hy__rd32(b + 52);
    if (h->magic != HY_WIRE_MAGIC || h->type < HY_WT_DATA || h->type > HY_WT_REJECT ||
        hy__rd16(b + 30) != 0 || (h->flags & (HY_WF_AUTH | HY_WF_TAG128)) == HY_WF_TAG128)
        return -1;
    size_t over = HY_WIRE_HDR + hy__wire_tag_len(h->flags);
    if (n < over || n - over > HY_WIRE_MAXPAY)
        return -1;
    h->len = (uint16_t)(n - over);
    return 0;
}

/* Writes the header of a record carrying m and `size` payload bytes at b
 * (room for HY_WIRE_RECHDR_MAX bytes) and returns its length in bytes.
 * from_base / to_base: hy__wire_pid_base of the sending / receiving node. */
static inline uint32_t hy__wire_put_rec(uint8_t *b, const struct hy_wire_msg *m, uint32_t size,
                                        uint64_t from_base, uint64_t to_base)
{
    uint8_t fields = 0;
    uint8_t *p = b + HY_WIRE_RECHDR_MIN;
    if (m->tag) {
        fields |= HY_WR_TAG;
        hy__wr64(p, m->tag);
        p += 8;
    }
    if ((m->from.hi & ~(uint64_t)0xffff) == from_base) {
        hy__wr16(p, (uint16_t)m->from.hi);
        hy__wr64(p + 2, m->from.lo);
        p += 10;
    } else {
        fields |= HY_WR_FROM_FULL;
        hy__wr64(p, m->from.hi);
        hy__wr64(p + 8, m->from.lo);
        p += 16;
    }
    if ((m->to.hi & ~(uint64_t)0xffff) == to_base) {
        hy__wr16(p, (uint16_t)m->to.hi);
        hy__wr64(p + 2, m->to.lo);
        p += 10;
    } else {
        fields |= HY_WR_TO_FULL;
        hy__wr64(p, m->to.hi);
        hy__wr64(p + 8, m->to.lo);
        p += 16;
    }
    if (m->aux) {
        fields |= HY_WR_AUX;
        hy__wr32(p, m->aux);
        p += 4;
    }
    if (m->ref.hi | m->ref.lo) {
        fields |= HY_WR_REF;
        hy__wr64(p, m->ref.hi);
        hy__wr64(p + 8, m->ref.lo);
        p += 16;
    }
    uint32_t n = (uint32_t)(p - b);
    hy__wr32(b, n - 4 + size);
    b[4] = m->kind;
    b[5] = fields;
    return n;
}

/* Reads a record header whose hy__wire_rec_hdr_size(b[5]) bytes are at b
 * (the caller checked it is not 0) into m. from_base / to_base: as for
 * hy__wire_put_rec, of the node that sent it and of this one. */
static inline void hy__wire_get_rec(const uint8_t *b, struct hy_wire_msg *m, uint64_t from_base,
                                    uint64_t to_base)
{
    uint8_t fields = b[5];
    const uint8_t *p = b + HY_WIRE_RECHDR_MIN;
    m->kind = b[4];
    m->tag = 0;
    if (fields & HY_WR_TAG) {
        m->tag = hy__rd64(p);
        p += 8;
    }
    if (fields & HY_WR_FROM_FULL) {
        m->from.hi = hy__rd64(p);
        m->from.lo = hy__rd64(p + 8);
        p += 16;
    } else {
        m->from.hi = from_base | hy__rd16(p);
        m->from.lo = hy__rd64(p + 2);
        p += 10;
    }
    if (fields & HY_WR_TO_FULL) {
        m->to.hi = hy__rd64(p);
        m->to.lo = hy__rd64(p + 8);
        p += 16;
    } else {
        m->to.hi = to_base | hy__rd16(p);
        m->to.lo = hy__rd64(p + 2);
        p += 10;
    }
    m->aux = 0;
    if (fields & HY_WR_AUX) {
        m->aux = hy__rd32(p);
        p += 4;
    }
    m->ref.hi = m->ref.lo = 0;
    if (fields & HY_WR_REF) {
        m->ref.hi = hy__rd64(p);
        m->ref.lo = hy__rd64(p + 8);
    }
}

#endif /* HY_NET_WIRE_INTERNAL_H */
