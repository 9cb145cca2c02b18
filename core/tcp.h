/* TCP sockets for processes, in the manner of Erlang's gen_tcp.
 *
 * A socket belongs to one process, its *owner* (controlling process), and
 * lives on that process's shard: the shard's I/O poller (io_uring, or epoll
 * where io_uring is refused; hy_config.io_backend) drives it, and only the
 * owner may call the functions below with it. Every call that waits parks
 * only the calling process (like a receive) and takes a timeout in ns:
 * HY_INFINITY, HY_NOWAIT (0: try once) or a duration, counted from the
 * call's first wait (before it the call has only made non-blocking system
 * calls). The other processes of the shard keep running.
 *
 * Ownership and lifetime. The owner closes a socket with hy_tcp_close(); if
 * it exits first, whatever the reason (return, hy_exit, kill, crash), the
 * runtime closes every socket it owns after cancelling any operation in
 * flight, so a descriptor can never leak with its process. Ownership moves
 * only by hy_tcp_controlling_process(), to a process on the same shard or
 * another one (the descriptor travels through the ring mesh).
 *
 * Memory. The kernel never writes into a process's stack while the process
 * is suspended: the poller reports readiness or receives into buffers of
 * the shard's own pool (below), and the read and write
 * system calls are made by the calling process itself while it runs (its
 * stack, compact or not, is in place), or, for framed and active sockets,
 * by the runtime into a buffer the socket owns, copied out when the owner
 * runs. No kernel operation holds a user buffer across a wait, so closing a
 * socket (or its owner's exit) never leaves the kernel writing into freed
 * memory, and every call here works for compact-stack processes, with
 * buffers on their stack. Sends through the poller (below) copy the
 * caller's bytes into a buffer the socket owns.
 *
 * Sends made by the poller (io_uring). A send of up to 16 KiB is copied
 * into the socket's send queue (at most 64 KiB queued per socket, owned by
 * the socket, freed when it closes) and returns 0; the queue goes to the
 * kernel with the shard's submission at the end of the scheduler's turn,
 * in one io_uring_enter for every socket served in that turn (at once when
 * no other process of the shard is ready to run; a process alone on its
 * shard with nothing else queued has them go with the receive it arms next
 * on the socket, in the io_uring_enter of the shard's sleep, or with the
 * next turn's submission: its bytes are in the kernel when it next waits,
 * not when the call returns). A socket with
 * room in its kernel buffer takes them in that system call; a full one
 * keeps them queued, and the kernel sends them as the peer reads. Bytes of
 * later sends queue behind them, in order; a send that finds the queue
 * full waits (its timeout) for room, and a larger send waits for the queue
 * to empty and is then made by the caller as without the queue. What
 * changes against a send made by the caller: an error the kernel reports
 * for queued bytes (the peer reset or closed: HY_ECONNRESET, HY_ECLOSED)
 * is returned by the socket's next send, and the rest of the queue is
 * dropped; a send that times out waiting for room also drops what is
 * queued (bytes earlier calls returned 0 for) before shutting the socket
 * down for writing. hy_tcp_shutdown() (writing side), hy_tcp_close() by
 * the owner and a move to another shard first wait up to 5 s for the queue
 * to reach the kernel; when the owner exits, or after those 5 s, what the
 * kernel cannot take at once (its buffer full, the peer not reading) is
 * dropped. With epoll, and for larger sends, the caller makes the send
 * system call itself. The figure is hy_stats.io_sends.
 *
 * Receives made by the poller (io_uring). When the owner of a raw passive
 * socket parks in hy_tcp_recv* for input, the poller queues one receive for
 * it into a buffer of the shard's pool (1,024 buffers of 2 KiB, owned by the
 * shard, never by a process); it goes to the kernel with the shard's next
 * submission, usually the one system call of its sleep (at the latest
 * after a few scheduler turns when other processes keep the shard busy).
 * From the socket's first such receive, the poller's readiness watch
 * leaves input out (the receive brings it); a later wait for input with no
 * receive armed (framing, active mode, an empty pool) watches it again, and
 * input already queued is then reported. A try without waiting (HY_NOWAIT)
 * on such a socket arms a receive instead, as a wait would, and returns
 * HY_ETIMEDOUT: bytes already queued come with the shard's next
 * submission, for a later call (a try on a socket never read through the
 * ring, or with the pool empty, watches input as before). The bytes come
 * with the wake-up, and the owner's call copies them out instead of making
 * a recv system call. The socket holds at most that one buffer, only while
 * those bytes are unread (an idle socket holds none), and gives it back to
 * the pool as soon as they are taken. No more receives are armed or held
 * than the pool has buffers: beyond that, a parked owner reads with recv
 * as it otherwise would, so the pool bounds the memory whatever the number
 * of connections. A receive still
 * armed when the call returns (a timeout, HY_EINTR) stays armed: its bytes
 * come first at the next call. The end of the stream and errors are
 * reported by the owner's own recv, as without it. Switching the socket to
 * framing or active mode, or moving it to another process, first ends the
 * receive (waiting for the kernel to confirm) and keeps the bytes it
 * brought, in order. Closing the socket cancels it. With epoll, and
 * for framed or active sockets, the owner always reads itself. The figure
 * is hy_stats.io_recvs.
 *
 * Modes. A socket is *passive* by default: data is read with hy_tcp_recv*.
 * In *active* mode (hy_tcp_set_active) the socket delivers what arrives to
 * its owner as messages (tags HY_TCP_TAG_*, payload struct hy_tcp_msg), with
 * gen_tcp's once/N flow control: when the owner stops asking for more, the
 * socket stops reading and the peer is slowed down by TCP itself, so memory
 * stays bounded whatever the peer sends.
 *
 * Framing (hy_tcp_set_packet): raw bytes, lines ending in '\n', or packets
 * prefixed with a 1, 2 or 4-byte big-endian length (gen_tcp's
 * {packet, raw | line | 1 | 2 | 4}). A packet longer than the socket's
 * max_packet is an error: the socket is shut down for reading and the caller
 * gets HY_EMSGSIZE (passive) or an HY_TCP_TAG_ERROR message with
 * err = HY_EMSGSIZE (active); it never buffers without bound.
 *
 * Errors common to the calls below: HY_ENOTPROC (not called from a process),
 * HY_EPERM (the caller is not the socket's owner), HY_EBADF (socket NULL or
 * already closed for that direction by an earlier error).
 */
#ifndef HY_CORE_TCP_H
#define HY_CORE_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "addr.h"
#include "msg.h"
#include "pid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A TCP socket (listening or connected); opaque. The pointer is valid on its
 * owner's shard until hy_tcp_close() or the owner's exit, and is what active
 * mode messages carry. */
struct hy_tcp;

/* ---- options ------------------------------------------------------------ */

enum hy_tcp_packet {
    HY_TCP_PACKET_RAW = 0, /* bytes as they come */
    HY_TCP_PACKET_LINE,    /* up to and including '\n' */
    HY_TCP_PACKET_1,       /* 1-byte big-endian length, then the body */
    HY_TCP_PACKET_2,       /* 2-byte big-endian length, then the body */
    HY_TCP_PACKET_4,       /* 4-byte big-endian length, then the body */
};

/* Active modes for hy_tcp_set_active() (N > 0 means N messages). */
#define HY_TCP_ACTIVE_OFF 0       /* passive: read with hy_tcp_recv*() */
#define HY_TCP_ACTIVE_ONCE (-1)   /* one message, then passive */
#define HY_TCP_ACTIVE_ALWAYS (-2) /* messages without flow control */
#define HY_TCP_ACTIVE_MAX 32767   /* largest N counter */

/* Default largest packet (framed modes) and largest raw active chunk. */
#define HY_TCP_DEFAULT_MAX_PACKET (64u * 1024u)

/* Options of a connected socket. Fill with hy_tcp_opts_init(); zero means
 * "the default" for every numeric field. */
struct hy_tcp_opts {
    enum hy_tcp_packet packet; /* framing (default raw) */
    uint32_t max_packet;       /* framed: largest body accepted (default 64 KiB,
                                  at most hy_config.max_message_size for active
                                  sockets); raw active: largest message */
    int active;                /* HY_TCP_ACTIVE_* or N > 0 (default off) */
    bool nodelay;              /* TCP_NODELAY (default true) */
    bool keepalive;            /* SO_KEEPALIVE (default false) */
    int sndbuf;                /* SO_SNDBUF bytes (0 = kernel default) */
    int rcvbuf;                /* SO_RCVBUF bytes (0 = kernel default) */
};

/* Fills *o with the defaults above. Context: anywhere. */
void hy_tcp_opts_init(struct hy_tcp_opts *o);

/* Options of a listening socket. */
struct hy_tcp_listen_opts {
    struct hy_addr addr;    /* where to listen; port 0 = an ephemeral port */
    int backlog;            /* listen() backlog (0 = 1024) */
    bool reuseport;         /* SO_REUSEPORT, so every shard may listen on the
                               same port and the kernel spreads connections
                               (default true) */
    struct hy_tcp_opts conn; /* options given to accepted sockets */
};

/* Fills *o: 127.0.0.1 port 0, backlog 1024, reuseport, default conn options.
 * Context: anywhere. */
void hy_tcp_listen_opts_init(struct hy_tcp_listen_opts *o);

/* ---- active mode messages ----------------------------------------------- */

/* Tags of the messages an active socket sends its owner. They carry
 * HY_TAG_SYSTEM (no process can forge them with hy_send) and reach a
 * GenServer's handle_info. Payload: struct hy_tcp_msg. */
#define HY_TCP_TAG_DATA (HY_TAG_SYSTEM | 0x54435044ull)    /* "TCPD": a chunk or packet */
#define HY_TCP_TAG_CLOSED (HY_TAG_SYSTEM | 0x54435043ull)  /* "TCPC": peer closed (EOF) */
#define HY_TCP_TAG_ERROR (HY_TAG_SYSTEM | 0x54435045ull)   /* "TCPE": err says why */
#define HY_TCP_TAG_PASSIVE (HY_TAG_SYSTEM | 0x54435050ull) /* "TCPP": N counter ran out */
#define HY_TCP_TAG_GIVEN (HY_TAG_SYSTEM | 0x54435047ull)   /* "TCPG": you own sock now */

/* Payload of every HY_TCP_TAG_* message.
 *  DATA:    len bytes in data: in raw mode what one read returned (at most
 *           max_packet), in framed modes one whole packet without its length
 *           prefix (a line keeps its '\n').
 *  CLOSED:  the peer closed its side (err = HY_ECLOSED, len 0). No DATA
 *           follows; the socket may still send (half-close).
 *  ERROR:   err = HY_ECONNRESET, HY_EMSGSIZE (packet above max_packet), or
 *           another HY_E* code; reading has stopped. len 0.
 *  PASSIVE: the N counter of hy_tcp_set_active reached 0; the socket is
 *           passive until set active again. len 0.
 *  GIVEN:   ownership was handed to the receiver by
 *           hy_tcp_controlling_process(); sock is the handle valid for it
 *           (on another shard, a new handle). err 0, len 0.
 * The owner still calls hy_tcp_close() after CLOSED or ERROR. */
struct hy_tcp_msg {
    struct hy_tcp *sock; /* the socket, owned by the receiver */
    int32_t err;
    uint32_t len;
    uint8_t data[];
};

/* The struct hy_tcp_msg inside m if m is one of the HY_TCP_TAG_* messages
 * (borrowed from m), else NULL. Context: anywhere. */
const struct hy_tcp_msg *hy_tcp_msg_of(const struct hy_msg *m);

/* ---- listening and connecting ------------------------------------------- */

/* Opens a socket listening on o->addr (o borrowed; NULL = defaults) owned by
 * the calling process; the handle is returned owned in *out.
 * Errors: HY_EADDRINUSE (the port is taken without SO_REUSEPORT on both
 * sides), HY_EADDRNOTAVAIL, HY_EPERM (privileged port), HY_EINVAL (bad
 * options or empty address), HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_tcp_listen(const struct hy_tcp_listen_opts *o, struct hy_tcp **out);

/* Waits up to timeout_ns for a connection on listener ls and returns it, owned
 * by the caller, in *out, with ls's conn options applied. Only the owner
 * accepts; for a pool of acceptors, give each its own listener of the same
 * port (reuseport), as otp/tcp_server.h does.
 * Errors: HY_ETIMEDOUT, HY_EINVAL (ls is not listening), HY_EMFILE (out of
 * descriptors: the connection stays queued), HY_ENOMEM, and the common ones.
 * Context: a process (ls's owner). */
int hy_tcp_accept(struct hy_tcp *ls, struct hy_tcp **out, int64_t timeout_ns);

/* Connects to addr (borrowed) within timeout_ns; the socket, owned by the
 * caller, is returned in *out with options o (borrowed; NULL = defaults).
 * Errors: HY_ECONNREFUSED, HY_ETIMEDOUT (nothing answered in time; the
 * attempt is abandoned and its descriptor closed), HY_ENETUNREACH,
 * HY_EHOSTUNREACH, HY_EADDRNOTAVAIL, HY_EINVAL, HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_tcp_connect(const struct hy_addr *addr, const struct hy_tcp_opts *o, int64_t timeout_ns,
                   struct hy_tcp **out);

/* As hy_tcp_connect(), to host (name or literal, borrowed) resolved with
 * hy_addr_resolve(). Errors: as both. Context: a process. */
int hy_tcp_connect_host(const char *host, uint16_t port, const struct hy_tcp_opts *o,
                        int64_t timeout_ns, struct hy_tcp **out);

/* ---- data --------------------------------------------------------------- */

/* Passive receive. Raw mode: waits until at least one byte is available and
 * copies up to len of them into buf; framed modes: waits for one whole packet
 * and copies its body (a line with its '\n'). *got (may be NULL) receives the
 * byte count. buf is borrowed
 * for the call.
 * Errors: HY_ECLOSED (the peer closed and everything before was read),
 * HY_ECONNRESET, HY_ETIMEDOUT (nothing complete in time; partial packets
 * stay buffered), HY_EMSGSIZE (framed: the packet exceeds max_packet, the
 * socket stops reading; or exceeds len, the packet stays queued),
 * HY_EBUSY (the socket is active), HY_EINVAL (listening socket, buf NULL
 * with len > 0), and the common ones.
 * Context: a process (the owner). */
int hy_tcp_recv(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns);

/* As hy_tcp_recv(), and a message in the caller's mailbox also ends the
 * wait, as it would end a receive: a process that waits for its client and
 * for other processes at once (gen_tcp's {active, once} without turning
 * the socket active) parks here. Bytes (or a packet) the socket is known to
 * hold (read ahead by the runtime, or reported readable by the poller and
 * not yet drained) win: they are returned with 0 whatever the mailbox
 * holds. Otherwise, if the
 * mailbox holds a message when the call would wait, or one arrives during
 * the wait, it returns HY_EINTR with *got 0 and leaves the message in the
 * mailbox for hy_recv() and the like; a caller that leaves messages there
 * gets HY_EINTR again at once, so it takes (or drops) what it does not
 * want. Errors: HY_EINTR, and those of hy_tcp_recv.
 * Context: a process (the owner). */
int hy_tcp_recv_or_msg(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns);

/* Receives exactly len bytes (raw mode; framing ignored) within timeout_ns
 * for the whole call. On HY_ETIMEDOUT, HY_ECLOSED or HY_ECONNRESET, *got (may
 * be NULL) tells how many bytes were stored in buf before the error; those
 * bytes are consumed. Errors: as hy_tcp_recv. Context: a process (owner). */
int hy_tcp_recv_exact(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns);

/* Sends all len bytes of data (borrowed for the call) or fails, waiting up to
 * timeout_ns while the kernel's buffer (or the socket's send queue, see
 * "Sends made by the poller" above) is full. Framing is not applied: the
 * caller writes prefixes and newlines itself. On HY_ETIMEDOUT the bytes not
 * sent (and those still queued) are dropped and the socket is shut down for
 * writing (the stream would be torn). Errors: HY_ECLOSED / HY_ECONNRESET
 * (the peer is gone: EPIPE or RST, for this call's bytes or for queued
 * ones), HY_ETIMEDOUT, HY_ENOMEM (no memory for the queue), HY_EINVAL, and
 * the common ones.
 * Context: a process (the owner). */
int hy_tcp_send(struct hy_tcp *s, const void *data, size_t len, int64_t timeout_ns);

/* Vectored hy_tcp_send(): iovcnt (<= 64) buffers in order, all or an error.
 * iov is borrowed. Errors: as hy_tcp_send, HY_EINVAL (iovcnt out of range).
 * Context: a process (the owner). */
int hy_tcp_sendv(struct hy_tcp *s, const struct iovec *iov, int iovcnt, int64_t timeout_ns);

/* One attempt to send iov[0..iovcnt) (<= 64 buffers, borrowed for the call)
 * without waiting: *sent gets the bytes the kernel took now (0 when its
 * buffer is full, or while bytes of earlier sends are still queued for the
 * kernel: these never overtake them); the rest is the caller's to send
 * later (hy_tcp_send) or to copy, since the buffers may change once the
 * call returns. A reply sent straight from storage that other processes
 * may change (a cache's item) needs no pin beyond the call. Errors:
 * HY_ECLOSED / HY_ECONNRESET (the peer is gone, also for queued bytes of
 * earlier sends), HY_EINVAL (iovcnt out of range, sent NULL), and the
 * common ones; never HY_ETIMEDOUT. Context: a process (the owner); it
 * never parks. */
int hy_tcp_send_some(struct hy_tcp *s, const struct iovec *iov, int iovcnt, size_t *sent);

/* Bytes that sends on s returned 0 for and the kernel has not taken yet:
 * queued for the shard's next submission, or in a send request in flight
 * (io_uring; see "Sends made by the poller" above). 0 with epoll, where
 * the caller makes every send, and for NULL. While it is 0, bytes written
 * to the socket's descriptor by anyone else (another shard's process on a
 * duplicate, hy_ring_send) come after every byte sent before; while it is
 * not, they may overtake them. Context: the owner. */
size_t hy_tcp_unsent(const struct hy_tcp *s);

/* Half-close: how is SHUT_RD, SHUT_WR or SHUT_RDWR (sys/socket.h). After
 * SHUT_WR the peer reads EOF and this side may still receive. SHUT_WR and
 * SHUT_RDWR first wait up to 5 s for queued sends to reach the kernel.
 * Errors: HY_EINVAL (bad how, listening socket), HY_ENOTCONN, common ones.
 * Context: a process (the owner). */
int hy_tcp_shutdown(struct hy_tcp *s, int how);

/* Closes s (transferred): waits up to 5 s for queued sends to reach the
 * kernel (io_uring; what it still cannot take is then dropped), cancels
 * what is in flight on it, closes the descriptor, frees the handle. Data
 * already received but not read is dropped. NULL is a no-op returning 0. Errors: HY_EPERM (not the owner),
 * HY_ENOTPROC. Context: a process (the owner). */
int hy_tcp_close(struct hy_tcp *s);

/* ---- control ------------------------------------------------------------ */

/* Sets the active mode: HY_TCP_ACTIVE_OFF, _ONCE, _ALWAYS, or N > 0, which
 * (as in gen_tcp) adds N to the counter (capped at HY_TCP_ACTIVE_MAX); each
 * DATA message spends one, and at 0 a PASSIVE message is sent and the socket
 * turns passive. Data already buffered is delivered at once.
 * Errors: HY_EINVAL (bad mode, listening socket), common ones.
 * Context: a process (the owner). */
int hy_tcp_set_active(struct hy_tcp *s, int mode);

/* Sets framing and the largest packet (0 = default). Bytes already buffered
 * are framed under the new mode. Errors: HY_EINVAL (bad mode, max_packet
 * above hy_config.max_message_size), common ones.
 * Context: a process (the owner). */
int hy_tcp_set_packet(struct hy_tcp *s, enum hy_tcp_packet packet, uint32_t max_packet);

/* Socket options. sndbuf/rcvbuf < 0 leave the value unchanged.
 * Errors: HY_EINVAL, common ones. Context: a process (the owner). */
int hy_tcp_set_nodelay(struct hy_tcp *s, bool on);
int hy_tcp_set_keepalive(struct hy_tcp *s, bool on);
int hy_tcp_set_bufsizes(struct hy_tcp *s, int sndbuf, int rcvbuf);

/* Addresses of s: the peer's (HY_ENOTCONN on a listener or unconnected
 * socket) and the local one (a listener's actual port after port 0).
 * out borrowed. Errors: common ones. Context: a process (the owner). */
int hy_tcp_peername(struct hy_tcp *s, struct hy_addr *out);
int hy_tcp_sockname(struct hy_tcp *s, struct hy_addr *out);

/* The socket's descriptor, for options this API lacks (borrowed: never close
 * it, never read or write it). -1 for NULL. Context: the owner. */
int hy_tcp_fd(const struct hy_tcp *s);

/* Hands s to process `to`, which becomes its owner; the caller must not use
 * s afterwards. `to` receives an HY_TCP_TAG_GIVEN message whose sock is its
 * handle (the same pointer on the same shard; on another shard the
 * descriptor, the options and any bytes buffered travel through the ring
 * mesh and a new handle is made there). Active-mode messages already sent
 * stay with the old owner. If `to` is dead (now, or when the socket reaches
 * its shard), the socket is closed.
 * Errors: HY_ENOPROC (to is not a live local or shard-local pid: s stays
 * with the caller), HY_EINVAL (to is on another node), common ones.
 * Context: a process (the owner). */
int hy_tcp_controlling_process(struct hy_tcp *s, hy_pid to);

/* Sockets currently open on the calling shard (tests check for leaks).
 * Context: a shard thread (0 elsewhere). */
size_t hy_tcp_count(void);

/* ---- a send on a descriptor, made by the shard's ring ------------------ */

struct hy_ring_send;

/* What a ring send ended with: res is the number of bytes the socket took
 * (0 .. len: what its buffer had room for when the send was made; the rest
 * was not sent), or an error: HY_ECLOSED (the peer is gone: EPIPE or RST),
 * another HY_E* for the system's error, HY_ESHUTDOWN (the runtime stopped
 * before the send's end was reported: whether its bytes went is unknown;
 * done must then make no runtime call). Called once per queued send, on the shard that queued it, by its
 * poller, outside any process: it may send messages (hy_send*), close the
 * descriptor and free rs, not block or wait. */
typedef void (*hy_ring_send_fn)(struct hy_ring_send *rs, int res);

/* A send the caller owns from hy_ring_send() until done runs (embed it in
 * a record of its own that holds the bytes and whatever done needs). */
struct hy_ring_send {
    int fd;             /* a connected stream socket, kept open until done runs */
    uint32_t len;       /* 1 .. INT32_MAX bytes at buf */
    const void *buf;    /* unchanged and not freed until done runs */
    hy_ring_send_fn done;
    /* the runtime's while queued */
    struct hy_ring_send *next_, **prev_;
};

/* Sends rs->len bytes at rs->buf on rs->fd without a system call of its
 * own: an IORING_OP_SEND queued on the calling shard's io_uring and handed
 * to the kernel with the turn's other submissions (or its sleep's), then
 * rs->done(rs, res) from the poller once it completed. Like send(2) with
 * MSG_DONTWAIT | MSG_NOSIGNAL made at the submission: it never waits for
 * room in the socket's buffer. The descriptor is not registered with the
 * poller and need not belong to a hy_tcp (a dup of another shard's
 * socket will do); nothing orders this send against others on the same
 * socket but the caller. Every send that returns 0 gets its done call
 * exactly once, also when the calling process ends first.
 * Returns 0 (queued), HY_ENOTSUP (the shard's poller has no ring: epoll,
 * or the ring refused; nothing queued, the caller sends itself), HY_EINVAL
 * (rs, buf or done NULL, fd < 0, len 0 or above INT32_MAX; logged naming
 * the field), HY_ENOMEM (no poller), HY_ENOTSHARD. Context: a shard thread
 * (a process or a shard callback). */
int hy_ring_send(struct hy_ring_send *rs);

/* Hands what the calling shard has queued for its io_uring (ring sends,
 * and the sockets' own requests) to the kernel now, in one system call,
 * instead of at the end of the scheduler's turn: for a caller done with a
 * batch of hy_ring_send()s whose bytes should not wait for the rest of the
 * turn. Nothing queued: no system call. Returns 0, HY_ENOTSUP (no ring:
 * epoll, or no socket on the shard yet), HY_ENOTSHARD. Context: a shard
 * thread. */
int hy_ring_submit(void);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_TCP_H */
