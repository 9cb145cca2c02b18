/* The kernel UDP transport: one socket per shard bound to this node's IP
 * and base port + shard; bursts with recvmmsg/sendmmsg. Frames are the same
 * as over DPDK, so the channel code does not know which carries them. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dist_internal.h"
#include "errors.h"

#define BURST 32

struct udp {
    int fd;
    uint8_t rxbuf[BURST][HY_WIRE_MTU + 64];
    struct sockaddr_in rxa[BURST];
    struct mmsghdr rxm[BURST];
    struct iovec rxv[BURST];
    uint8_t txbuf[BURST][HY_WIRE_MTU];
    struct mmsghdr txm[BURST];
    struct iovec txv[BURST];
    struct sockaddr_in txa[BURST];
    unsigned ntx;
};

static int udp_open(struct hy__ep *ep)
{
    struct udp *u = calloc(1, sizeof(*u));
    if (!u)
        return HY_ENOMEM;
    u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0) {
        free(u);
        return HY_EIO;
    }
    int big = 4 << 20;
    setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(ep->self->ip);
    a.sin_port = htons((uint16_t)(ep->self->base_port + ep->shard));
    if (bind(u->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(u->fd);
        free(u);
        return HY_EIO;
    }
    for (unsigned i = 0; i < BURST; i++) {
        u->rxv[i].iov_base = u->rxbuf[i];
        u->rxv[i].iov_len = sizeof(u->rxbuf[i]);
        u->rxm[i].msg_hdr.msg_iov = &u->rxv[i];
        u->rxm[i].msg_hdr.msg_name = &u->rxa[i];
        u->rxm[i].msg_hdr.msg_namelen = sizeof(u->rxa[i]);
        u->rxm[i].msg_hdr.msg_iovlen = 1;
    }
    ep->tp = u;
    ep->fd = u->fd;
    return 0;
}

static void udp_flush(struct hy__ep *ep)
{
    struct udp *u = ep->tp;
    unsigned done = 0;
    while (done < u->ntx) {
        int n = sendmmsg(u->fd, u->txm + done, u->ntx - done, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break; /* socket buffer full or error: the channels retransmit */
        }
        done += (unsigned)n;
    }
    u->ntx = 0;
}

static void udp_close(struct hy__ep *ep)
{
    struct udp *u = ep->tp;
    if (!u)
        return;
    udp_flush(ep);
    close(u->fd);
    free(u);
    ep->tp = NULL;
    ep->fd = -1;
}

static unsigned udp_rx(struct hy__ep *ep, struct hy__rx *out, unsigned max)
{
    struct udp *u = ep->tp;
    if (max > BURST)
        max = BURST;
    for (unsigned i = 0; i < max; i++)
        u->rxm[i].msg_hdr.msg_namelen = sizeof(u->rxa[i]);
    int n = recvmmsg(u->fd, u->rxm, max, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return 0;
    for (int i = 0; i < n; i++) {
        out[i].buf = u->rxbuf[i];
        out[i].len = (uint16_t)u->rxm[i].msg_len;
        /* the source, which the channel code checks against the peer's */
        out[i].src_known = u->rxm[i].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in) &&
                           u->rxa[i].sin_family == AF_INET;
        out[i].src_ip = ntohl(u->rxa[i].sin_addr.s_addr);
        out[i].src_port = ntohs(u->rxa[i].sin_port);
    }
    return (unsigned)n;
}

static int udp_tx(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t dst_shard,
                  const uint8_t *buf, size_t len)
{
    struct udp *u = ep->tp;
    if (len > HY_WIRE_MTU)
        return HY_EMSGSIZE;
    if (u->ntx == BURST)
        udp_flush(ep);
    unsigned i = u->ntx++;
    memcpy(u->txbuf[i], buf, len);
    u->txa[i].sin_family = AF_INET;
    u->txa[i].sin_addr.s_addr = htonl(to->ip);
    u->txa[i].sin_port = htons((uint16_t)(to->base_port + dst_shard));
    u->txv[i].iov_base = u->txbuf[i];
    u->txv[i].iov_len = len;
    memset(&u->txm[i], 0, sizeof(u->txm[i]));
    u->txm[i].msg_hdr.msg_name = &u->txa[i];
    u->txm[i].msg_hdr.msg_namelen = sizeof(u->txa[i]);
    u->txm[i].msg_hdr.msg_iov = &u->txv[i];
    u->txm[i].msg_hdr.msg_iovlen = 1;
    return 0;
}

const struct hy__transport hy__transport_udp = {
    .name = "udp",
    .open = udp_open,
    .close = udp_close,
    .rx = udp_rx,
    .tx = udp_tx,
    .flush = udp_flush,
};
