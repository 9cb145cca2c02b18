/* Internals of net/: endpoints, channels, transports. Not installed. */
#ifndef HY_NET_DIST_INTERNAL_H
#define HY_NET_DIST_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "dist.h"
#include "hook.h"
#include "hy_config.h"
#include "wire_internal.h"

struct hy__ep;

struct hy__rx {
    uint8_t *buf;
    uint16_t len;
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
    _Atomic unsigned unsent; /* channels with data not yet acknowledged (for a graceful stop) */
};

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
 * into the last HY_WIRE_TAG bytes of a frame; hy__dist_fuzz_send queues a
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
