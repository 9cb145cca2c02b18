/* Fault injection for tests (hy_dist_config.test_*): every outgoing frame
 * passes through hy__dist_frame_tx, which may drop, hold back, reorder or
 * duplicate it. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* ---- fault injection (tests only: hy_dist_config.test_*) ---------------------------- */

#define FAULT_HELD 64
#define FAULT_REORDER_MAX_NS 1000000ull /* a reordered frame waits at most 1 ms */
#define FAULT_DELAY_NS 2000000ull       /* default test_delay_ns */

struct hy__held {
    const struct hy_dist_peer *to;
    uint64_t due;    /* sent by the poll hook once the clock passes it */
    uint16_t shard, len;
    uint8_t after;   /* reorder: sent after this many more frames (0: by time only) */
    bool used, dup;
    uint8_t buf[HY_WIRE_MTU];
};

bool hy__dist_faults_on(void)
{
    return (hy__dist.cfg.test_drop_permille | hy__dist.cfg.test_dup_permille | hy__dist.cfg.test_reorder_permille |
            hy__dist.cfg.test_delay_permille) != 0;
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

static void held_out(struct hy__ep *ep, struct ep_priv *pv, struct hy__held *f)
{
    hy__dist.tp->tx(ep, f->to, f->shard, f->buf, f->len);
    if (f->dup)
        hy__dist.tp->tx(ep, f->to, f->shard, f->buf, f->len);
    f->used = false;
    pv->nheld--;
}

/* Sends the held frames that are due: by the clock (now; 0 = not by the
 * clock), after one more frame went out (sent), or all of them. */
void hy__dist_held_release(struct hy__ep *ep, uint64_t now, bool sent, bool all)
{
    struct ep_priv *pv = &hy__dist.priv[ep->shard];
    for (unsigned i = 0; i < FAULT_HELD && pv->nheld; i++) {
        struct hy__held *f = &pv->held[i];
        if (!f->used)
            continue;
        if (all || (sent && f->after && --f->after == 0) || (now && now >= f->due))
            held_out(ep, pv, f);
    }
}

uint64_t hy__dist_held_deadline(const struct ep_priv *pv)
{
    uint64_t d = UINT64_MAX;
    for (unsigned i = 0; pv->nheld && i < FAULT_HELD; i++)
        if (pv->held[i].used && pv->held[i].due < d)
            d = pv->held[i].due;
    return d;
}

/* Every frame goes out through here: straight to the transport, or, with
 * fault injection configured, dropped, held back, or duplicated. */
void hy__dist_frame_tx(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t shard,
                     const uint8_t *buf, size_t n)
{
    if (__builtin_expect(!hy__dist_faults_on(), 1)) {
        hy__dist.tp->tx(ep, to, shard, buf, n);
        return;
    }
    struct ep_priv *pv = &hy__dist.priv[ep->shard];
    if (fault_roll(pv, hy__dist.cfg.test_drop_permille))
        return;
    bool delay = fault_roll(pv, hy__dist.cfg.test_delay_permille);
    bool reorder = !delay && fault_roll(pv, hy__dist.cfg.test_reorder_permille);
    bool dup = fault_roll(pv, hy__dist.cfg.test_dup_permille);
    if ((delay || reorder) && n <= HY_WIRE_MTU) {
        if (!pv->held)
            pv->held = calloc(FAULT_HELD, sizeof(*pv->held));
        for (unsigned i = 0; pv->held && i < FAULT_HELD; i++) {
            struct hy__held *f = &pv->held[i];
            if (f->used)
                continue;
            uint64_t now = hy_now_ns();
            f->to = to;
            f->shard = shard;
            f->len = (uint16_t)n;
            memcpy(f->buf, buf, n);
            f->dup = dup;
            f->after = reorder ? (uint8_t)(1 + (pv->rng >> 32) % 3) : 0;
            f->due = now + (delay ? (hy__dist.cfg.test_delay_ns ? hy__dist.cfg.test_delay_ns : FAULT_DELAY_NS)
                                  : FAULT_REORDER_MAX_NS);
            f->used = true;
            pv->nheld++;
            return;
        }
    }
    hy__dist.tp->tx(ep, to, shard, buf, n);
    if (dup)
        hy__dist.tp->tx(ep, to, shard, buf, n);
    if (pv->nheld)
        hy__dist_held_release(ep, 0, true, false);
}

