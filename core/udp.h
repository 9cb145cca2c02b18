/* UDP sockets for processes.
 *
 * Same rules as tcp.h: a UDP socket belongs to the process that opened it,
 * lives on its shard, is driven by the shard's I/O poller and is closed when
 * its owner exits, whatever the reason. A receive parks only the calling
 * process, with a timeout in ns (HY_INFINITY, HY_NOWAIT or a duration), and
 * datagrams are read by the calling process itself after it is woken, so
 * buffers may live on a compact stack.
 *
 * Errors common to the calls below: HY_ENOTPROC (not from a process),
 * HY_EPERM (the caller is not the owner), HY_EBADF (socket NULL).
 */
#ifndef HY_CORE_UDP_H
#define HY_CORE_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* A UDP socket; opaque, valid on its owner's shard until closed. */
struct hy_udp;

/* Opens a UDP socket bound to addr (borrowed; port 0 = ephemeral; NULL =
 * 0.0.0.0 port 0), owned by the caller, returned owned in *out. With
 * reuseport, SO_REUSEPORT is set before binding.
 * Errors: HY_EADDRINUSE, HY_EADDRNOTAVAIL, HY_EINVAL, HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_udp_open(const struct hy_addr *addr, bool reuseport, struct hy_udp **out);

/* Sends one datagram of len bytes (data borrowed) to `to` (borrowed). Never
 * waits: a full kernel buffer drops the datagram with HY_EAGAIN.
 * Errors: HY_EMSGSIZE (above the path's limit), HY_EAGAIN, HY_ENETUNREACH,
 * HY_EHOSTUNREACH, HY_ECONNREFUSED (an ICMP error from an earlier datagram),
 * HY_EINVAL, common ones.
 * Context: a process (the owner). */
int hy_udp_sendto(struct hy_udp *u, const struct hy_addr *to, const void *data, size_t len);

/* Waits up to timeout_ns for one datagram and copies up to len bytes of it
 * into buf; *got (may be NULL) gets the bytes stored, *from (may be NULL) the
 * sender. A datagram longer than len is truncated and HY_EMSGSIZE returned
 * (the datagram is consumed, *got = len).
 * Errors: HY_ETIMEDOUT, HY_EMSGSIZE, HY_EINVAL, common ones.
 * Context: a process (the owner). */
int hy_udp_recvfrom(struct hy_udp *u, void *buf, size_t len, size_t *got, struct hy_addr *from,
                    int64_t timeout_ns);

/* Local address of u (after port 0, the port chosen). Errors: common ones.
 * Context: a process (the owner). */
int hy_udp_sockname(struct hy_udp *u, struct hy_addr *out);

/* Closes u (transferred). NULL is a no-op. Errors: HY_EPERM, HY_ENOTPROC.
 * Context: a process (the owner). */
int hy_udp_close(struct hy_udp *u);

#endif /* HY_CORE_UDP_H */
