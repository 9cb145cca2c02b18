/* The handshake: the cookie challenge/response that opens a channel's
 * session, and its crypto: HMAC-SHA256 with the cookie (libsodium) for
 * the proofs and the session key, SipHash-2-4 (64-bit output, or 128 with
 * the dist option tag_bits = 128) for frame tags.
 *
 * A (initiator) sends HELLO(nA); B answers CHALLENGE(nB, proof_B), proof_B
 * = HMAC(cookie, "B", nA, nB, ids); A checks it and sends CONFIRM(proof_A);
 * B checks that and the session is up (B's first session frame tells A).
 * Only a proof shows the cookie: a HELLO or a REJECT proves nothing. So an
 * established session survives them: the handshake a HELLO opens is kept
 * beside the session (hy__chan.rsp) and replaces it only once its CONFIRM
 * proves it; a REJECT or a bad proof is counted and logged, and the
 * handshake goes on waiting for the real answer until its timeout (then
 * HY_ECONNREFUSED if a refusal was seen, HY_ETIMEDOUT if not). Answers to
 * HELLOs are rate-limited per peer (HS_BURST), so a forged flood is not
 * reflected. */
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
    uint8_t tlen = hy__dist.tag_len; /* this node's: a peer with another length fails the proof */
    crypto_auth_hmacsha256_update(&st, &tlen, 1);
    crypto_auth_hmacsha256_final(&st, out);
}

/* A frame's tag: SipHash-2-4 (a PRF, hence a MAC) keyed with the first 16
 * bytes of the session key, over header and payload: its standard 64-bit
 * output (byte for byte libsodium's crypto_shorthash_siphash24), or with
 * tag_bits = 128 its 128-bit output (crypto_shorthash_siphashx24). ~40 ns
 * for a small frame here, against ~520 ns for keyed BLAKE2b and ~900 ns for
 * HMAC-SHA256. Its cost is the algorithm's: two rounds per 8-byte word,
 * four to finish (eight for 128 bits). Written here (not libsodium's call)
 * for one reason: a frame's first HY__TAG_MID (32) bytes are the same on
 * every DATA frame of a session in one direction (wire_internal.h), so the
 * state after them is kept per channel and direction
 * (hy__dist_frame_tag_mid) and each tag starts from it. */
_Static_assert(crypto_shorthash_siphashx24_BYTES == HY_WIRE_TAG128, "tag size");
_Static_assert(crypto_shorthash_siphash24_BYTES == HY_WIRE_TAG64, "tag size");
_Static_assert(crypto_shorthash_siphashx24_KEYBYTES <= sizeof(((struct hy__chan *)0)->key),
               "session key size");
_Static_assert(HY__TAG_MID % 8 == 0 && HY__TAG_MID <= HY_WIRE_HDR, "whole words of the header");

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND                                                                                  \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = SIP_ROTL(v1, 13);                                                                     \
        v1 ^= v0;                                                                                  \
        v0 = SIP_ROTL(v0, 32);                                                                     \
        v2 += v3;                                                                                  \
        v3 = SIP_ROTL(v3, 16);                                                                     \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = SIP_ROTL(v3, 21);                                                                     \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = SIP_ROTL(v1, 17);                                                                     \
        v1 ^= v2;                                                                                  \
        v2 = SIP_ROTL(v2, 32);                                                                     \
    } while (0)

/* tlen: the output's bytes, 8 or 16 (the initial state differs) */
static void sip_init(uint64_t v[4], const uint8_t key[16], unsigned tlen)
{
    uint64_t k0 = hy__rd64(key), k1 = hy__rd64(key + 8);
    v[0] = 0x736f6d6570736575ull ^ k0;
    v[1] = 0x646f72616e646f6dull ^ k1 ^ (tlen == 16 ? 0xee : 0); /* 0xee: the 128-bit output */
    v[2] = 0x6c7967656e657261ull ^ k0;
    v[3] = 0x7465646279746573ull ^ k1;
}

/* Absorbs the nw whole 8-byte words at p. */
static inline __attribute__((always_inline)) void sip_words(uint64_t v[4], const uint8_t *p,
                                                         size_t nw)
{
    uint64_t v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
    for (size_t i = 0; i < nw; i++) {
        uint64_t m = hy__rd64(p + 8 * i);
        v3 ^= m;
        SIP_ROUND;
        SIP_ROUND;
        v0 ^= m;
    }
    v[0] = v0, v[1] = v1, v[2] = v2, v[3] = v3;
}

/* From state v after the message's first len - rest bytes, absorbs the rest
 * bytes at p and writes the tlen-byte output (8 or 16, as v was started
 * with); len is the whole length. Inlined into one function per length, so
 * neither pays for the other's branches. */
static inline __attribute__((always_inline)) void
sip_finish_n(const uint64_t vin[4], const uint8_t *p, size_t rest, size_t len, unsigned tlen,
             uint8_t *out)
{
    uint64_t v[4] = {vin[0], vin[1], vin[2], vin[3]};
    size_t nw = rest / 8;
    sip_words(v, p, nw);
    uint64_t v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
    const uint8_t *q = p + 8 * nw;
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (rest & 7); i++)
        b |= (uint64_t)q[i] << (8 * i);
    v3 ^= b;
    SIP_ROUND;
    SIP_ROUND;
    v0 ^= b;
    v2 ^= tlen == 16 ? 0xee : 0xff;
    SIP_ROUND;
    SIP_ROUND;
    SIP_ROUND;
    SIP_ROUND;
    hy__wr64(out, v0 ^ v1 ^ v2 ^ v3);
    if (tlen != 16)
        return;
    v1 ^= 0xdd;
    SIP_ROUND;
    SIP_ROUND;
    SIP_ROUND;
    SIP_ROUND;
    hy__wr64(out + 8, v0 ^ v1 ^ v2 ^ v3);
}

static void sip_finish64(const uint64_t v[4], const uint8_t *p, size_t rest, size_t len,
                         uint8_t *out)
{
    sip_finish_n(v, p, rest, len, 8, out);
}

static void sip_finish128(const uint64_t v[4], const uint8_t *p, size_t rest, size_t len,
                          uint8_t *out)
{
    sip_finish_n(v, p, rest, len, 16, out);
}

void hy__siphash24_128(const uint8_t key[16], const uint8_t *buf, size_t n, uint8_t out[16])
{
    uint64_t v[4];
    sip_init(v, key, 16);
    sip_finish128(v, buf, n, n, out);
}

void hy__siphash24_64(const uint8_t key[16], const uint8_t *buf, size_t n, uint8_t out[8])
{
    uint64_t v[4];
    sip_init(v, key, 8);
    sip_finish64(v, buf, n, n, out);
}

void hy__dist_frame_tag(const struct hy__chan *ch, const uint8_t *buf, size_t n, unsigned tlen,
                        uint8_t *out)
{
    if (tlen == 16)
        hy__siphash24_128(ch->key, buf, n, out);
    else
        hy__siphash24_64(ch->key, buf, n, out);
}

static void tag_mid_finish(const struct hy__tag_mid *mid, const uint8_t *buf, size_t n,
                           unsigned tlen, uint8_t *out)
{
    if (tlen == 16)
        sip_finish128(mid->v, buf + HY__TAG_MID, n - HY__TAG_MID, n, out);
    else
        sip_finish64(mid->v, buf + HY__TAG_MID, n - HY__TAG_MID, n, out);
}

/* The kept state's miss path (a new session, frame type or tag length):
 * out of line, so the hit path saves no registers and ends in a tail call. */
static __attribute__((noinline)) void tag_mid_fill(const struct hy__chan *ch,
                                                   struct hy__tag_mid *mid, const uint8_t *buf,
                                                   size_t n, unsigned tlen, uint8_t *out)
{
    if (n < HY__TAG_MID) {
        hy__dist_frame_tag(ch, buf, n, tlen, out);
        return;
    }
    sip_init(mid->v, ch->key, tlen);
    sip_words(mid->v, buf, HY__TAG_MID / 8);
    memcpy(mid->prefix, buf, HY__TAG_MID);
    memcpy(mid->key, ch->key, sizeof(mid->key));
    mid->tlen = (uint8_t)tlen;
    tag_mid_finish(mid, buf, n, tlen, out);
}

void hy__dist_frame_tag_mid(const struct hy__chan *ch, struct hy__tag_mid *mid,
                            const uint8_t *buf, size_t n, unsigned tlen, uint8_t *out)
{
    if (__builtin_expect(n < HY__TAG_MID || mid->tlen != tlen ||
                             memcmp(mid->prefix, buf, HY__TAG_MID) != 0 ||
                             memcmp(mid->key, ch->key, sizeof(mid->key)) != 0,
                         0)) {
        tag_mid_fill(ch, mid, buf, n, tlen, out);
        return;
    }
    tag_mid_finish(mid, buf, n, tlen, out);
}

void hy__dist_frame_tag_kept(const struct hy__tag_mid *mid, const uint8_t *buf, size_t n,
                             unsigned tlen, uint8_t *out)
{
    tag_mid_finish(mid, buf, n, tlen, out);
}

/* A token of the peer's handshake-answer bucket: false when a flood spent it. */
bool hy__hs_allowed(struct hy__ep *ep, int pi, uint64_t now)
{
    struct ep_priv *pv = &hy__dist.priv[ep->shard];
    __typeof__(pv->hs_bucket[0]) *b = &pv->hs_bucket[pi];
    if (!b->last) {
        b->last = now;
        b->tokens = HS_BURST;
    } else if (now - b->last >= HS_REFILL_NS) {
        uint64_t add = (now - b->last) / HS_REFILL_NS;
        b->tokens = add >= HS_BURST || b->tokens + add >= HS_BURST ? HS_BURST
                                                                   : b->tokens + (uint32_t)add;
        b->last += add * HS_REFILL_NS;
    }
    if (!b->tokens) {
        hy__dist_count(&ep->st.hs_limited, 1);
        return false;
    }
    b->tokens--;
    return true;
}

/* A handshake frame: no session, no tag; dst_creation as given. */
static void hs_send(struct hy__chan *ch, uint8_t type, uint32_t dst_creation, const uint8_t *pay,
                    uint16_t len)
{
    struct hy__ep *ep = ch->ep;
    uint8_t buf[HY_WIRE_HDR + 64];
    struct hy_wire_hdr h = {
        .magic = HY_WIRE_MAGIC,
        .version = HY_WIRE_VERSION,
        .type = type,
        .src_node = hy__rt.node_id,
        .src_creation = hy__rt.creation,
        .dst_node = hy__dist.peers[ch->pi].node_id,
        .dst_creation = dst_creation,
        .src_shard = (uint16_t)ep->shard,
        .dst_shard = ch->rshard,
        .len = len,
    };
    hy__wire_put_hdr(buf, &h);
    if (len)
        memcpy(buf + HY_WIRE_HDR, pay, len);
    hy__dist_frame_tx(ep, &hy__dist.peers[ch->pi], ch->rshard, buf, HY_WIRE_HDR + len);
    hy__dist_count(&ep->st.frames_tx, 1);
    hy__dist_count(&ep->st.bytes_tx, HY_WIRE_HDR + len);
}

static const char *peer_name(const struct hy__chan *ch)
{
    return hy__dist.peers[ch->pi].name;
}

/* HELLO: [nonce 16][u8 the sender's frame tag length in bytes] */
static void hello(struct hy__chan *ch)
{
    uint8_t pay[HY_HELLO_LEN];
    memcpy(pay, ch->my_nonce, 16);
    pay[16] = hy__dist.tag_len;
    hs_send(ch, HY_WT_HELLO, 0, pay, sizeof(pay));
}

void hy__hs_start(struct hy__chan *ch)
{
    randombytes_buf(ch->my_nonce, sizeof(ch->my_nonce));
    ch->state = CH_HELLO_SENT;
    ch->refused = false;
    ch->session = 0;
    ch->peer_creation = 0;
    ch->epoch = atomic_load(&hy__dist.epoch[ch->pi]);
    uint64_t now = hy__dist_now();
    ch->hs_began = now;
    ch->hs_retry = now + HS_RETRY_NS;
    ch->last_rx = now;
    hy__chan_activate(ch);
    hello(ch);
}

/* The session is up: isn is its first sequence number, both ways. */
static void established(struct hy__chan *ch, uint32_t isn)
{
    ch->state = CH_UP;
    ch->epoch = atomic_load(&hy__dist.epoch[ch->pi]);
    uint32_t first = hy__dist.cfg.test_first_seq ? hy__dist.cfg.test_first_seq : isn;
    ch->snd_next = ch->snd_una = ch->rcv_next = first;
    HY__CH_SET(ch, up, 1);
    ch->last_rx = ch->last_tx = hy__dist_now();
    hy__dist_count(&ch->ep->st.handshakes, 1);
    hy_log(HY_LOG_INFO, "dist: shard %u: session with node %u (%s) shard %u up", ch->ep->shard,
           hy__dist.peers[ch->pi].node_id, peer_name(ch), ch->rshard);
    atomic_store(&hy__dist.peer_quiet[ch->pi], 0); /* it polls again */
    if (ch->master) {
        atomic_store(&hy__dist.node_down[ch->pi], 0);
        atomic_store(&hy__dist.node_up[ch->pi], 1);
        hy__chan_fail_waiters(ch, 0);
        hy__dist_broadcast(hy__shard(), CTRL_NODE_UP, hy__dist.peers[ch->pi].node_id, 0);
    }
}

/* Derives the session id, the frame key and the first sequence number from
 * both nonces (initiator's first) and both ids. */
static uint32_t derive(struct hy__chan *ch, const uint8_t *na, const uint8_t *nb, uint32_t an,
                       uint32_t ac, uint32_t bn, uint32_t bc)
{
    uint8_t s[32];
    hy__dist_mac(s, "session", na, nb, an, ac, bn, bc);
    ch->session = hy__rd32(s) | 1u; /* never 0 */
    ch->rx_ok = false; /* (a new key: the kept receive state is not its) */
    hy__dist_mac(ch->key, "key", na, nb, an, ac, bn, bc);
    return hy__rd32(s + 4); /* a sequence start no one off the path can guess */
}

/* The initiator's session is up: the responder's first session frame came. */
void hy__hs_established(struct hy__chan *ch)
{
    established(ch, ch->isn);
}

static void challenge(struct hy__chan *ch)
{
    const struct hy_dist_peer *me = &hy__dist.peers[hy__dist.self], *peer = &hy__dist.peers[ch->pi];
    uint8_t out[48];
    memcpy(out, ch->rsp_my_nonce, 16);
    hy__dist_mac(out + 16, "B", ch->rsp_peer_nonce, ch->rsp_my_nonce, peer->node_id,
                 ch->rsp_creation, me->node_id, hy__rt.creation);
    hs_send(ch, HY_WT_CHALLENGE, ch->rsp_creation, out, sizeof(out));
}

static void confirm(struct hy__chan *ch)
{
    const struct hy_dist_peer *me = &hy__dist.peers[hy__dist.self], *peer = &hy__dist.peers[ch->pi];
    uint8_t proof[32];
    hy__dist_mac(proof, "A", ch->peer_nonce, ch->my_nonce, peer->node_id, ch->peer_creation,
                 me->node_id, hy__rt.creation);
    hs_send(ch, HY_WT_CONFIRM, ch->peer_creation, proof, 32);
}

static void reject(struct hy__ep *ep, struct hy__chan *ch, uint32_t dst_creation, uint64_t now)
{
    if (hy__hs_allowed(ep, ch->pi, now))
        hs_send(ch, HY_WT_REJECT, dst_creation, NULL, 0);
}

/* The peer's CONFIRM proved the handshake it opened: it becomes the session,
 * replacing an established one (whose links and monitors then get
 * noconnection, as when a connection breaks). */
static void rsp_proven(struct hy__ep *ep, struct hy__chan *ch)
{
    const struct hy_dist_peer *me = &hy__dist.peers[hy__dist.self], *peer = &hy__dist.peers[ch->pi];
    if (ch->state == CH_UP) {
        hy_log(HY_LOG_INFO,
               "dist: shard %u: node %u (%s) shard %u opened a new session (%s): the old one "
               "ends",
               ep->shard, peer->node_id, peer->name, ch->rshard,
               ch->rsp_creation != ch->peer_creation ? "restarted" : "it lost the old one");
        hy__dist_node_went_down(hy__shard(), ch->pi, ch->epoch);
    }
    uint8_t pn[16], mn[16];
    uint32_t pc = ch->rsp_creation;
    memcpy(pn, ch->rsp_peer_nonce, 16);
    memcpy(mn, ch->rsp_my_nonce, 16);
    hy__chan_reset(ch, true);
    if (hy__chan_windows(ch) != 0) {
        hy_log(HY_LOG_ERROR, "dist: shard %u: no memory for a session with node %u", ep->shard,
               peer->node_id);
        return;
    }
    memcpy(ch->peer_nonce, pn, 16);
    memcpy(ch->my_nonce, mn, 16);
    ch->peer_creation = pc;
    uint32_t isn = derive(ch, pn, mn, peer->node_id, pc, me->node_id, hy__rt.creation);
    established(ch, isn);
    hy__chan_xmit(ch, HY_WT_ACK, 0, NULL, 0, NULL);
}

void hy__hs_frame(struct hy__ep *ep, struct hy__chan *ch, const struct hy_wire_hdr *h,
                  const uint8_t *pay)
{
    uint64_t now = hy__dist_now();
    const struct hy_dist_peer *me = &hy__dist.peers[hy__dist.self], *peer = &hy__dist.peers[ch->pi];
    switch (h->type) {
    case HY_WT_HELLO: {
        if (h->len != HY_HELLO_LEN) {
            hy__dist_count(&ep->st.malformed, 1);
            return;
        }
        if (pay[16] != hy__dist.tag_len) {
            /* a configuration error (or a forged HELLO: a REJECT proves
             * nothing, so it costs the peer nothing but a log line) */
            if (!hy__hs_allowed(ep, ch->pi, now))
                return;
            hy__dist_count(&ep->st.unproven, 1);
            if (!ch->tag_mismatch_logged)
                hy_log(HY_LOG_WARNING,
                       "dist: shard %u: node %u (%s) asks for %u-bit frame tags, this node "
                       "uses %u (hy_dist_config.tag_bits must be the same on every node): "
                       "refused",
                       ep->shard, peer->node_id, peer->name, 8u * pay[16],
                       8u * hy__dist.tag_len);
            ch->tag_mismatch_logged = true;
            uint8_t why[2] = {HY_WREJ_TAG_BITS, hy__dist.tag_len};
            hs_send(ch, HY_WT_REJECT, h->src_creation, why, sizeof(why));
            return;
        }
        if (ch->state == CH_HELLO_SENT && me->node_id < peer->node_id)
            return; /* simultaneous open: the lower node id initiates */
        if (ch->state == CH_UP && h->src_creation == ch->peer_creation &&
            memcmp(ch->peer_nonce, pay, 16) == 0)
            return; /* a late copy of the HELLO that opened this session */
        if (!hy__hs_allowed(ep, ch->pi, now))
            return;
        if (!(ch->rsp && h->src_creation == ch->rsp_creation &&
              memcmp(ch->rsp_peer_nonce, pay, 16) == 0)) {
            /* a new handshake (a repeat gets the same CHALLENGE again: the
             * CONFIRM already on its way must still match) */
            ch->rsp = true;
            ch->rsp_refused = false;
            ch->rsp_creation = h->src_creation;
            memcpy(ch->rsp_peer_nonce, pay, 16);
            randombytes_buf(ch->rsp_my_nonce, 16);
            ch->rsp_began = now;
        }
        hy__chan_activate(ch);
        challenge(ch);
        return;
    }
    case HY_WT_CHALLENGE: {
        if (ch->state != CH_HELLO_SENT || h->len != 48) {
            hy__dist_count(&ep->st.unproven, 1);
            return;
        }
        uint8_t want[32];
        hy__dist_mac(want, "B", ch->my_nonce, pay, me->node_id, hy__rt.creation, peer->node_id,
                     h->src_creation);
        if (sodium_memcmp(want, pay + 16, 32) != 0) {
            hy__dist_count(&ep->st.auth_failures, 1);
            if (!ch->refused)
                hy_log(HY_LOG_INFO,
                       "dist: shard %u: node %u (%s) answered our HELLO with a wrong proof "
                       "(another cookie?); still waiting for a proven answer",
                       ep->shard, peer->node_id, peer->name);
            ch->refused = true;
            reject(ep, ch, h->src_creation, now);
            return;
        }
        if (hy__chan_windows(ch) != 0)
            return; /* no memory: the handshake times out */
        memcpy(ch->peer_nonce, pay, 16);
        ch->peer_creation = h->src_creation;
        ch->isn = derive(ch, ch->my_nonce, ch->peer_nonce, me->node_id, hy__rt.creation,
                         peer->node_id, h->src_creation);
        ch->state = CH_CONFIRM_SENT;
        ch->hs_retry = now + HS_RETRY_NS;
        confirm(ch);
        return;
    }
    case HY_WT_CONFIRM: {
        if (h->len != 32) {
            hy__dist_count(&ep->st.malformed, 1);
            return;
        }
        uint8_t want[32];
        if (ch->rsp && h->src_creation == ch->rsp_creation) {
            hy__dist_mac(want, "A", ch->rsp_my_nonce, ch->rsp_peer_nonce, me->node_id,
                         hy__rt.creation, peer->node_id, h->src_creation);
            if (sodium_memcmp(want, pay, 32) == 0) {
                ch->rsp = false;
                rsp_proven(ep, ch);
                return;
            }
            hy__dist_count(&ep->st.auth_failures, 1);
            if (!ch->rsp_refused)
                hy_log(HY_LOG_INFO,
                       "dist: shard %u: node %u (%s) sent a CONFIRM with a wrong proof "
                       "(another cookie?): refused",
                       ep->shard, peer->node_id, peer->name);
            ch->rsp_refused = true;
            reject(ep, ch, h->src_creation, now);
            return;
        }
        if (ch->state == CH_UP && h->src_creation == ch->peer_creation &&
            hy__hs_allowed(ep, ch->pi, now)) {
            /* a repeat of the CONFIRM that opened this session: our ACK was lost */
            hy__dist_mac(want, "A", ch->my_nonce, ch->peer_nonce, me->node_id, hy__rt.creation,
                         peer->node_id, h->src_creation);
            if (sodium_memcmp(want, pay, 32) == 0) {
                hy__chan_xmit(ch, HY_WT_ACK, 0, NULL, 0, NULL);
                return;
            }
        }
        hy__dist_count(&ep->st.unproven, 1);
        return;
    }
    case HY_WT_REJECT:
        if (ch->state == CH_HELLO_SENT && h->len == 2 && pay[0] == HY_WREJ_TAG_BITS) {
            /* (unproven, like any REJECT: the handshake goes on waiting) */
            hy__dist_count(&ep->st.auth_failures, 1);
            if (!ch->refused)
                hy_log(HY_LOG_WARNING,
                       "dist: shard %u: node %u (%s) refused our handshake: it uses %u-bit "
                       "frame tags, this node %u (hy_dist_config.tag_bits must be the same "
                       "on every node)",
                       ep->shard, peer->node_id, peer->name, 8u * pay[1],
                       8u * hy__dist.tag_len);
            ch->refused = true;
        } else if (ch->state == CH_HELLO_SENT || ch->state == CH_CONFIRM_SENT) {
            hy__dist_count(&ep->st.auth_failures, 1);
            if (!ch->refused)
                hy_log(HY_LOG_INFO,
                       "dist: shard %u: node %u (%s) refused our handshake (another cookie?); "
                       "still waiting for a proven answer",
                       ep->shard, peer->node_id, peer->name);
            ch->refused = true;
        } else if (ch->rsp) {
            hy__dist_count(&ep->st.auth_failures, 1);
            if (!ch->rsp_refused)
                hy_log(HY_LOG_INFO,
                       "dist: shard %u: node %u (%s) refused our CHALLENGE (another cookie?)",
                       ep->shard, peer->node_id, peer->name);
            ch->rsp_refused = true;
        } else {
            hy__dist_count(&ep->st.unproven, 1);
        }
        return;
    default:
        return;
    }
}

/* Handshake timers: repeats of our HELLO or CONFIRM, and the timeouts. */
void hy__hs_timers(struct hy__chan *ch, uint64_t now)
{
    if (ch->rsp && now - ch->rsp_began >= hy__dist.cfg.down_after_ns)
        ch->rsp = false; /* the peer never proved it: forgotten */
    if (ch->state != CH_HELLO_SENT && ch->state != CH_CONFIRM_SENT)
        return;
    const struct hy_dist_peer *peer = &hy__dist.peers[ch->pi];
    if (now - ch->hs_began >= hy__dist.cfg.down_after_ns) {
        int rc = ch->refused ? HY_ECONNREFUSED : HY_ETIMEDOUT;
        hy_log(HY_LOG_INFO, "dist: shard %u: handshake with node %u (%s) shard %u failed: %s",
               ch->ep->shard, peer->node_id, peer->name, ch->rshard,
               ch->refused ? "refused (another cookie?)" : "no answer");
        bool master = ch->master;
        int pi = ch->pi;
        uint32_t since = ch->epoch;
        if (master)
            hy__chan_fail_waiters(ch, rc);
        hy__chan_reset(ch, false);
        if (master)
            hy__dist_node_went_down(hy__shard(), pi, since);
        return;
    }
    if (now >= ch->hs_retry) {
        ch->hs_retry = now + HS_RETRY_NS;
        if (ch->state == CH_HELLO_SENT)
            hello(ch);
        else
            confirm(ch);
    }
}
