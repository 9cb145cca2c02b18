/* Writes the seed corpus of fuzz_dist (the files in corpus/): valid frames
 * and operation sequences in the format of fuzz_dist.h, built with the real
 * wire encoders. Usage: fuzz_dist_gen_seeds DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "fuzz_dist.h"
#include "hydra.h"
#include "shard_internal.h"

struct buf {
    uint8_t b[1 << 16];
    size_t n;
};

static void put(struct buf *o, const void *p, size_t k)
{
    if (o->n + k > sizeof(o->b)) {
        fprintf(stderr, "gen_seeds: seed too large\n");
        exit(1);
    }
    if (k)
        memcpy(o->b + o->n, p, k);
    o->n += k;
}

static void put8(struct buf *o, uint8_t v) { put(o, &v, 1); }
static void put16(struct buf *o, uint16_t v)
{
    uint8_t b[2];
    hy__wr16(b, v);
    put(o, b, 2);
}
static void put32(struct buf *o, uint32_t v)
{
    uint8_t b[4];
    hy__wr32(b, v);
    put(o, b, 4);
}
static void put64(struct buf *o, uint64_t v)
{
    uint8_t b[8];
    hy__wr64(b, v);
    put(o, b, 8);
}

static hy_pid sink(void)
{
    return hy_pid_make(FUZZ_NODE, FUZZ_CREATION, FUZZ_SINK_SHARD, FUZZ_SINK_SLOT, FUZZ_SINK_GEN);
}

static hy_pid peer_pid(uint32_t slot)
{
    return hy_pid_make(HY_FUZZ_PEER, HY_FUZZ_PEER_CREATION, 0, slot, 1);
}

/* a message record of the channel byte stream */
static void record(struct buf *s, uint8_t kind, uint64_t tag, hy_pid from, hy_pid to, hy_ref ref,
                   uint32_t aux, const void *pay, uint32_t len)
{
    uint8_t h[HY_WIRE_RECHDR_MAX];
    struct hy_wire_msg wm = {.tag = tag, .from = from, .to = to, .ref = ref, .aux = aux,
                             .kind = kind};
    uint32_t hl =
        hy__wire_put_rec(h, &wm, len, hy__wire_pid_base(HY_FUZZ_PEER, HY_FUZZ_PEER_CREATION),
                         hy__wire_pid_base(FUZZ_NODE, FUZZ_CREATION));
    put(s, h, hl);
    if (len)
        put(s, pay, len);
}

/* FUZZ_OP_FRAME */
static void op_frame(struct buf *o, uint8_t type, uint8_t shard, uint32_t seq, uint32_t ack,
                     uint64_t sack, const uint8_t *pay, uint16_t len)
{
    put8(o, FUZZ_OP_FRAME);
    put8(o, (uint8_t)(type - 1));
    put8(o, shard);
    put32(o, seq);
    put32(o, ack);
    put64(o, sack);
    put16(o, len);
    put(o, pay, len);
}

/* FUZZ_OP_RAW with a whole datagram built here */
static void op_raw_frame(struct buf *o, uint8_t type, uint32_t session, uint32_t seq,
                         const uint8_t *pay, uint16_t len)
{
    uint8_t f[HY_WIRE_MTU];
    struct hy_wire_hdr h = {
        .magic = HY_WIRE_MAGIC,
        .version = HY_WIRE_VERSION,
        .type = type,
        .src_node = HY_FUZZ_PEER,
        .src_creation = HY_FUZZ_PEER_CREATION,
        .dst_node = FUZZ_NODE,
        .dst_creation = type == HY_WT_HELLO ? 0 : FUZZ_CREATION,
        .session = session,
        .seq = seq,
        .ack = 1,
        .len = len,
    };
    hy__wire_put_hdr(f, &h);
    if (len)
        memcpy(f + HY_WIRE_HDR, pay, len);
    put8(o, FUZZ_OP_RAW);
    put16(o, (uint16_t)(HY_WIRE_HDR + len));
    put(o, f, HY_WIRE_HDR + len);
}

static void op_send(struct buf *o, uint8_t shard, uint16_t len)
{
    put8(o, FUZZ_OP_SEND);
    put8(o, shard);
    put16(o, len);
}

static void op_poll(struct buf *o) { put8(o, FUZZ_OP_POLL); }

static const char *dir;

static void emit(const char *name, const struct buf *o)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(o->b, 1, o->n, f) != o->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    static struct buf o, s;
    hy_ref ref = {((uint64_t)HY_FUZZ_PEER << 40) | 5, 77};
    const char hello[] = "hello, sink";

    /* two small messages in one DATA frame, as a whole datagram */
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    put8(&o, 0);
    record(&s, HY_K_MSG, 7, peer_pid(5), sink(), HY_REF_NONE, 0, hello, sizeof(hello));
    record(&s, HY_K_MSG, 8, peer_pid(5), sink(), HY_REF_NONE, 0, NULL, 0);
    op_raw_frame(&o, HY_WT_DATA, HY_FUZZ_SESSION, 1, s.b, (uint16_t)s.n);
    op_poll(&o);
    emit("raw-data-two-messages", &o);

    /* by name, and the sink's link and monitor requests */
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    put8(&o, 0);
    uint8_t named[HY_NAME_MAX + 4] = "sink";
    memcpy(named + HY_NAME_MAX, "abcd", 4);
    record(&s, HY_K_DIST_NAME, 9, peer_pid(6), hy_pid_make(FUZZ_NODE, 0, 0, 0, 0), HY_REF_NONE,
           0, named, sizeof(named));
    record(&s, HY_K_MSG, FUZZ_SINK_TAG_LINK, peer_pid(6), sink(), HY_REF_NONE, 0, NULL, 0);
    record(&s, HY_K_MSG, FUZZ_SINK_TAG_MONITOR, peer_pid(7), sink(), HY_REF_NONE, 0, NULL, 0);
    op_frame(&o, HY_WT_DATA, 0, 1, 1, 0, s.b, (uint16_t)s.n);
    op_poll(&o);
    emit("frame-name-link-monitor", &o);

    /* signals: link, monitor by pid and by name, demonitor, unlink, exit,
     * down, spawn reply, spawn request, alias */
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    put8(&o, 0);
    record(&s, HY_K_LINK, 0, peer_pid(8), sink(), HY_REF_NONE, 0, NULL, 0);
    record(&s, HY_K_MONITOR, 0, peer_pid(8), sink(), ref, 0, NULL, 0);
    record(&s, HY_K_MONITOR, 0, peer_pid(8), hy_pid_make(FUZZ_NODE, 0, 0, 0, 0), ref, 0, "sink",
           5);
    record(&s, HY_K_MONITOR, 0, peer_pid(8), hy_pid_make(FUZZ_NODE, 0, 0, 0, 0), ref, 0,
           "nobody", 7);
    record(&s, HY_K_DEMONITOR, 0, peer_pid(8), sink(), ref, 0, NULL, 0);
    uint64_t unlink_id = 3;
    record(&s, HY_K_UNLINK, 0, peer_pid(8), sink(), HY_REF_NONE, 0, &unlink_id, 8);
    record(&s, HY_K_UNLINK_ACK, 0, peer_pid(8), sink(), HY_REF_NONE, 0, &unlink_id, 8);
    struct hy_reason rs;
    memset(&rs, 0, sizeof(rs));
    rs.kind = HY_REASON_USER;
    strcpy(rs.text, "remote");
    record(&s, HY_K_EXIT, 0, peer_pid(8), sink(), HY_REF_NONE, 1, &rs, sizeof(rs));
    struct hy_down_info di;
    memset(&di, 0, sizeof(di));
    di.ref = ref;
    di.pid = peer_pid(8);
    di.reason = rs;
    record(&s, HY_K_DOWN, 0, peer_pid(8), sink(), ref, 0, &di, sizeof(di));
    op_frame(&o, HY_WT_DATA, 0, 1, 1, 0, s.b, (uint16_t)s.n);
    memset(&s, 0, sizeof(s));
    struct hy__spawn_reply sr;
    memset(&sr, 0, sizeof(sr));
    sr.pid = peer_pid(9);
    sr.link = true;
    record(&s, HY_K_SPAWN_REPLY, HY_TAG_SPAWN_REPLY, peer_pid(9), sink(), ref, 0, &sr,
           sizeof(sr));
    uint8_t spawn[HY_DIST_NAME_MAX + 8 + 4];
    memset(spawn, 0, sizeof(spawn));
    strcpy((char *)spawn, "worker");
    spawn[HY_DIST_NAME_MAX + 4] = 1; /* link */
    record(&s, HY_K_DIST_SPAWN, 0, peer_pid(9), hy_pid_make(FUZZ_NODE, 0, 0, 0, 0), ref, 0,
           spawn, sizeof(spawn));
    record(&s, HY_K_ALIAS_MSG, 5, peer_pid(9), sink(), ref, 0, "x", 1);
    op_frame(&o, HY_WT_DATA, 0, 2, 1, 0, s.b, (uint16_t)s.n);
    op_poll(&o);
    emit("frame-signals", &o);

    /* a 5000-byte message over four frames, out of order, one twice */
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    put8(&o, 0);
    static uint8_t big[5000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 13);
    record(&s, HY_K_MSG, 10, peer_pid(10), sink(), HY_REF_NONE, 0, big, sizeof(big));
    record(&s, HY_K_MSG, 11, peer_pid(10), sink(), HY_REF_NONE, 0, "after", 5);
    size_t per = (s.n + 3) / 4;
    const int order[5] = {2, 0, 3, 0, 1};
    for (int k = 0; k < 5; k++) {
        size_t off = (size_t)order[k] * per;
        size_t len = off + per <= s.n ? per : s.n - off;
        op_frame(&o, HY_WT_DATA, 1, (uint32_t)(1 + order[k]), 1, 0, s.b + off, (uint16_t)len);
    }
    op_poll(&o);
    emit("frame-large-out-of-order", &o);

    /* sending: frames go out; acks, selective acks, heartbeat, close */
    memset(&o, 0, sizeof(o));
    put8(&o, 0);
    op_send(&o, 0, 100);
    op_send(&o, 1, 3000);
    op_send(&o, 0, 20000);
    op_poll(&o);
    op_frame(&o, HY_WT_ACK, 0, 0, 2, 0x5, NULL, 0);
    op_frame(&o, HY_WT_ACK, 1, 0, 2, 0, NULL, 0);
    op_frame(&o, HY_WT_HEARTBEAT, 0, 0, 4, 0, NULL, 0);
    op_poll(&o);
    op_frame(&o, HY_WT_CLOSE, 1, 0, 1, 0, NULL, 0);
    op_frame(&o, HY_WT_CLOSE, 0, 0, 1, 0, NULL, 0);
    emit("send-ack-close", &o);

    /* authenticated: the target signs the frame */
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    put8(&o, FUZZ_MODE_AUTH);
    record(&s, HY_K_MSG, 12, peer_pid(11), sink(), HY_REF_NONE, 0, hello, sizeof(hello));
    op_frame(&o, HY_WT_DATA, 0, 1, 1, 0, s.b, (uint16_t)s.n);
    op_raw_frame(&o, HY_WT_DATA, HY_FUZZ_SESSION, 2, s.b, (uint16_t)s.n); /* no tag: refused */
    op_poll(&o);
    emit("auth-data", &o);

    /* handshake from idle: HELLO, then a CONFIRM that cannot be right */
    memset(&o, 0, sizeof(o));
    put8(&o, FUZZ_MODE_IDLE);
    uint8_t nonce[48];
    memset(nonce, 0x22, sizeof(nonce));
    uint8_t hello_f[HY_HELLO_LEN];
    memset(hello_f, 0x22, 16);
    hello_f[16] = HY_WIRE_TAG128; /* another tag length: refused, with a REJECT saying why */
    op_raw_frame(&o, HY_WT_HELLO, 0, 0, hello_f, HY_HELLO_LEN);
    hello_f[16] = HY_WIRE_TAG64; /* the fuzz endpoint's */
    op_raw_frame(&o, HY_WT_HELLO, 0, 0, hello_f, HY_HELLO_LEN);
    op_raw_frame(&o, HY_WT_HELLO, 0, 0, hello_f, HY_HELLO_LEN);
    op_raw_frame(&o, HY_WT_CONFIRM, 0, 0, nonce, 32);
    op_raw_frame(&o, HY_WT_CHALLENGE, 0, 0, nonce, 48);
    op_raw_frame(&o, HY_WT_REJECT, 0, 0, NULL, 0);
    uint8_t why[2] = {HY_WREJ_TAG_BITS, HY_WIRE_TAG128};
    op_raw_frame(&o, HY_WT_REJECT, 0, 0, why, sizeof(why));
    op_poll(&o);
    emit("idle-handshake", &o);

    /* a HELLO on an UP channel (the peer restarted), and a bad magic */
    memset(&o, 0, sizeof(o));
    put8(&o, 0);
    op_raw_frame(&o, HY_WT_HELLO, 0, 0, hello_f, HY_HELLO_LEN);
    put8(&o, FUZZ_OP_RAW);
    put16(&o, 60);
    for (int i = 0; i < 60; i++)
        put8(&o, (uint8_t)i);
    emit("up-hello-and-junk", &o);

    /* a record above the largest message (200 bytes in mode 3 << 2): skipped,
     * and the one after it still arrives */
    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    put8(&o, 3 << 2);
    record(&s, HY_K_MSG, 13, peer_pid(12), sink(), HY_REF_NONE, 0, big, 1000);
    record(&s, HY_K_MSG, 14, peer_pid(12), sink(), HY_REF_NONE, 0, "ok", 2);
    op_frame(&o, HY_WT_DATA, 0, 1, 1, 0, s.b, (uint16_t)s.n);
    emit("oversized-record-skipped", &o);
    return 0;
}
