/* Fuzzing entry points (tests/net/fuzz/): compiled only with -DHY_DIST_FUZZ. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

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
        hy_dist_config_init(&hy__dist.cfg);
        hy__dist.cfg.node_id = hy__rt.node_id;
        memset(hy__dist.peers, 0, sizeof(hy__dist.peers));
        for (unsigned i = 0; i < 3; i++) {
            snprintf(hy__dist.peers[i].name, sizeof(hy__dist.peers[i].name), "f%u", i + 1);
            hy__dist.peers[i].node_id = i == 0 ? hy__rt.node_id : (i == 1 ? HY_FUZZ_PEER : HY_FUZZ_PEER + 1);
            hy__dist.peers[i].ip = 0x7f000001;
            hy__dist.peers[i].base_port = (uint16_t)(47000 + 8 * i);
        }
        hy__dist.npeers = 3;
        hy__dist.self = 0;
        strcpy(hy__dist.cookie, "fuzz-cookie");
        hy__dist.cookie_len = strlen(hy__dist.cookie);
        hy__dist.tag_len = HY_WIRE_TAG64; /* hy_dist_start's for tag_bits 64 */
        hy__dist.tag_flags = HY_WF_AUTH;
        hy__dist.tp = &fuzz_transport;
        struct hy__ep *ep = calloc(1, sizeof(*ep));
        if (!ep || !(ep->chans = calloc(hy__dist.npeers * HY_MAX_SHARDS, sizeof(*ep->chans))))
            abort();
        ep->shard = sh->id;
        ep->self = &hy__dist.peers[0];
        ep->fd = -1;
        ep->open = true;
        hy__dist.eps[sh->id] = ep;
        hy__kind_register(HY_K_DIST_CTRL, hy__dist_on_ctrl);
        hy__kind_register(HY_K_DIST_FRAME, hy__dist_on_handed_frame);
        hy_hook_set_remote_send(hy__dist_remote_send, NULL);
        atomic_store(&hy__dist.started, 1);
        fuzz_ep = ep;
    }
    struct hy__ep *ep = fuzz_ep;
    hy__dist.cfg.authenticate = authenticate;
    hy__dist.cfg.max_message_size = max_message_size < hy__rt.cfg.max_message_size
                                 ? max_message_size
                                 : hy__rt.cfg.max_message_size;
    for (size_t i = 0; i < hy__dist.npeers * HY_MAX_SHARDS; i++) {
        struct hy__chan *ch = ep->chans[i];
        if (ch) {
            hy__chan_reset(ch, false);
            hy__chan_fail_waiters(ch, HY_ENOTSTARTED);
        }
    }
    if (idle)
        return;
    uint64_t now = hy_now_ns();
    for (uint16_t rs = 0; rs < 2; rs++) {
        struct hy__chan *ch = hy__chan_get(ep, 1, rs, true);
        if (!ch)
            abort();
        if (hy__chan_windows(ch) != 0)
            abort();
        ch->state = CH_UP;
        ch->refused = false;
        ch->rsp = false;
        ch->peer_creation = HY_FUZZ_PEER_CREATION;
        ch->session = HY_FUZZ_SESSION;
        memset(ch->my_nonce, 0x11, sizeof(ch->my_nonce));
        memset(ch->peer_nonce, 0x22, sizeof(ch->peer_nonce));
        memset(ch->key, 0x4b, sizeof(ch->key));
        ch->rx_ok = false;
        ch->snd_next = ch->snd_una = ch->rcv_next = 1;
        ch->srtt = ch->rttvar = 0;
        ch->rto = 50000000ull;
        ch->last_rx = ch->last_tx = ch->hs_began = now;
        ch->unacked_rx = 0;
        hy__chan_activate(ch);
    }
}

void hy__dist_fuzz_frame(const uint8_t *buf, size_t n)
{
    hy__dist_on_frame(fuzz_ep, buf, n, NULL);
}

void hy__dist_fuzz_sign(uint8_t *frame, size_t n)
{
    struct hy__chan ch;
    memset(ch.key, 0x4b, sizeof(ch.key));
    unsigned tl = hy__dist.tag_len;
    if (n >= HY_WIRE_HDR + tl)
        hy__dist_frame_tag(&ch, frame, n - tl, tl, frame + n - tl);
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
    return hy__dist_remote_send(m, NULL);
}

void hy__dist_fuzz_poll(void)
{
    hy__ep_poll(fuzz_ep);
}
#endif /* HY_DIST_FUZZ */

