/* TCP sockets for processes (tcp.h) on the shard's poller (io_internal.h).
 *
 * Passive calls make their system calls from the calling process while it
 * runs, straight into or out of the caller's buffer, and park the process
 * on the socket when the kernel says EAGAIN. Framed and active sockets read
 * into a buffer the socket owns (rbuf) and cut packets out of it; in active
 * mode the scheduler does that when the poller reports input, and turns
 * packets into messages for the owner. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"
#include "io_internal.h"
#include "log.h"
#include "shard_internal.h"
#include "tcp.h"

/* recv and sendmsg without the C library's cancellation-point bracketing
 * (two calls around every system call: ~60 instructions per echoed request;
 * shard threads are never cancelled). Sanitizer builds keep the library
 * calls, whose interceptors check the buffers. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TCP_LIBC_IO 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TCP_LIBC_IO 1
#endif
#endif

#if !defined(TCP_LIBC_IO) && defined(__x86_64__)
/* The system call instruction inline, not through the C library's
 * syscall(): on a kernel with page-table isolation and no PCID, each system
 * call empties the TLB, and returning into the library's page of code cost
 * a page walk per call (the echo benchmark's profile: 7% of the server's
 * time on the instruction after the library's syscall). */
static inline long tcp_sys(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    if ((unsigned long)ret > -4096ul) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}
#define TCP_SYSCALL(nr, a1, a2, a3, a4, a5, a6) \
    tcp_sys(nr, (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5), (long)(a6))
#else
#define TCP_SYSCALL(nr, a1, a2, a3, a4, a5, a6) syscall(nr, a1, a2, a3, a4, a5, a6)
#endif

static inline ssize_t tcp_recv(int fd, void *buf, size_t len, int flags)
{
#ifdef TCP_LIBC_IO
    return recv(fd, buf, len, flags);
#else
    return (ssize_t)TCP_SYSCALL(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
#endif
}

/* One buffer: sendto, which spares the kernel sendmsg's copy of the
 * message header and vector (~1% of the echo server's time at 1,000
 * connections). */
static inline ssize_t tcp_send1(int fd, const void *buf, size_t len, int flags)
{
#ifdef TCP_LIBC_IO
    return send(fd, buf, len, flags);
#else
    return (ssize_t)TCP_SYSCALL(SYS_sendto, fd, buf, len, flags, NULL, 0);
#endif
}

static inline ssize_t tcp_sendmsg(int fd, const struct msghdr *mh, int flags)
{
#ifdef TCP_LIBC_IO
    return sendmsg(fd, mh, flags);
#else
    return (ssize_t)TCP_SYSCALL(SYS_sendmsg, fd, mh, flags, 0, 0, 0);
#endif
}

#define RAW_CHUNK (16u * 1024u)
/* Sends of up to this many bytes go through the poller's queue (io_uring);
 * larger ones are made by the caller, after what is queued. */
#define TX_QUEUE_MAX (16u * 1024u)
/* How long a shutdown, a close by the owner or a move to another shard
 * waits for queued sends to reach the kernel. */
#define TX_DRAIN_NS (5ll * 1000000000)
#define MAX_IOV 64

struct hy_tcp {
    struct hy__sock s; /* first: the poller and the owner's list see this */
    /* What a request reads of the socket's own state comes first: with the
     * end of s, the record's second cache line (io_internal.h). */
    uint8_t listening;
    uint8_t connecting;
    uint8_t eof;       /* the peer's FIN was read */
    uint8_t wr_shut;   /* no more sending */
    uint8_t ev_done;   /* active: CLOSED or ERROR was delivered */
    int rd_err;        /* sticky read error (HY_ECONNRESET, HY_EMSGSIZE, ...) */
    int active;        /* HY_TCP_ACTIVE_* or N */
    uint32_t rlen, roff; /* bytes read but not consumed: [roff, rlen) of rbuf */
    enum hy_tcp_packet packet;
    uint32_t max_packet;
    uint8_t *rbuf;
    uint32_t rcap;
    struct hy_tcp_opts conn; /* listener: options of accepted sockets */
};
_Static_assert(offsetof(struct hy_tcp, max_packet) + sizeof(uint32_t) <= 128,
               "a request's fields of a TCP socket are in its record's first two lines");

/* ---- options ------------------------------------------------------------ */

void hy_tcp_opts_init(struct hy_tcp_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->packet = HY_TCP_PACKET_RAW;
    o->max_packet = HY_TCP_DEFAULT_MAX_PACKET;
    o->active = HY_TCP_ACTIVE_OFF;
    o->nodelay = true;
}

void hy_tcp_listen_opts_init(struct hy_tcp_listen_opts *o)
{
    memset(o, 0, sizeof(*o));
    hy_addr_parse("127.0.0.1", 0, &o->addr);
    o->backlog = 1024;
    o->reuseport = true;
    hy_tcp_opts_init(&o->conn);
}

static bool packet_ok(enum hy_tcp_packet p)
{
    return p >= HY_TCP_PACKET_RAW && p <= HY_TCP_PACKET_4;
}

static bool active_ok(int a)
{
    return a == HY_TCP_ACTIVE_ALWAYS || a == HY_TCP_ACTIVE_ONCE || a >= 0;
}

static int check_opts(const struct hy_tcp_opts *o)
{
    if (!packet_ok(o->packet) || !active_ok(o->active) || o->sndbuf < 0 || o->rcvbuf < 0)
        return HY_EINVAL;
    if (o->max_packet > hy__rt.cfg.max_message_size) {
        hy_log(HY_LOG_WARNING, "tcp: max_packet %u above max_message_size", o->max_packet);
        return HY_EINVAL;
    }
    return 0;
}

static int setint(int fd, int level, int name, int v)
{
    if (setsockopt(fd, level, name, &v, sizeof(v)) != 0)
        return hy__errno_to_hy(errno);
    return 0;
}

static int apply_opts(int fd, const struct hy_tcp_opts *o)
{
    int rc = 0;
    if (o->nodelay)
        rc = setint(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (!rc && o->keepalive)
        rc = setint(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
    if (!rc && o->sndbuf > 0)
        rc = setint(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf);
    if (!rc && o->rcvbuf > 0)
        rc = setint(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf);
    return rc;
}

/* ---- socket objects ----------------------------------------------------- */

static void on_ready(struct hy_shard *sh, struct hy__io_watch *w, uint32_t ev);
static void set_active(struct hy_tcp *s, int active);

static void tcp_destroy(struct hy__sock *hs)
{
    struct hy_tcp *s = (struct hy_tcp *)hs;
    struct hy_shard *sh = hs->sh;
    hy__io_del(sh, &hs->w);
    if (hs->w.fd >= 0)
        close(hs->w.fd);
    hy__sock_detach(hs);
    hy__sock_count_add(sh, -1);
    free(s->rbuf);
    hy__sock_free(hs);
}

/* Wraps fd (owned) in a socket owned by p on sh. On error fd is closed. */
static int tcp_new(struct hy_shard *sh, struct hy_proc *p, int fd, const struct hy_tcp_opts *o,
                   struct hy_tcp **out)
{
    struct hy__sock *hs;
    int rc = hy__sock_new(sizeof(struct hy_tcp), sh, fd, on_ready, tcp_destroy, p, &hs);
    if (rc)
        return rc;
    /* set before the shard next polls: no event reaches s until then */
    struct hy_tcp *s = (struct hy_tcp *)hs;
    set_active(s, o ? o->active : 0);
    s->packet = o ? o->packet : HY_TCP_PACKET_RAW;
    s->max_packet = o && o->max_packet ? o->max_packet : HY_TCP_DEFAULT_MAX_PACKET;
    *out = s;
    return 0;
}

/* The calling process, when it owns s; else an error. */
static int owner_check(struct hy_tcp *s, struct hy_proc **pp)
{
    return hy__sock_owner_check(s ? &s->s : NULL, pp);
}

/* A call's timeout. The clock starts at the call's first wait: a call
 * that never waits reads no clock (a send that fits in the socket buffer,
 * the common case, would otherwise pay a clock read per call). Before its
 * first wait a call has only made non-blocking system calls. */
struct tmo {
    int64_t ns;        /* < 0: no limit */
    uint64_t deadline; /* 0 until the first wait */
};

static inline struct tmo tmo_of(int64_t timeout_ns)
{
    return (struct tmo){.ns = timeout_ns, .deadline = 0};
}

static inline int64_t remaining(struct tmo *t)
{
    if (t->ns <= 0)
        return t->ns < 0 ? HY_INFINITY : 0;
    uint64_t now = hy_now_ns();
    if (!t->deadline) {
        t->deadline = now + (uint64_t)t->ns;
        return t->ns;
    }
    return now >= t->deadline ? 0 : (int64_t)(t->deadline - now);
}

/* False when the call may not wait at all (timeout 0). */
static inline bool remaining_nonzero(const struct tmo *t)
{
    return t->ns != 0;
}

/* The input edge is consumed: the kernel queue was seen empty. A hang-up
 * stays latched so that the next read sees the EOF. */
static inline void input_drained(struct hy_tcp *s)
{
    if (!(s->s.w.ready & HY_IO_HUP))
        s->s.w.ready &= ~HY_IO_IN;
}

/* ---- the receive buffer and framing ------------------------------------- */

static uint32_t header_len(enum hy_tcp_packet p)
{
    switch (p) {
    case HY_TCP_PACKET_1:
        return 1;
    case HY_TCP_PACKET_2:
        return 2;
    case HY_TCP_PACKET_4:
        return 4;
    default:
        return 0;
    }
}

/* One packet at rbuf+roff? 1 = yes (*hdr, *body set), 0 = need more bytes,
 * HY_EMSGSIZE = the packet can only exceed max_packet. */
static int frame(const struct hy_tcp *s, uint32_t *hdr, uint32_t *body)
{
    uint32_t avail = s->rlen - s->roff;
    const uint8_t *p = s->rbuf + s->roff;
    if (!avail)
        return 0;
    switch (s->packet) {
    case HY_TCP_PACKET_RAW:
        *hdr = 0;
        *body = avail < s->max_packet ? avail : s->max_packet;
        return 1;
    case HY_TCP_PACKET_LINE: {
        uint32_t lim = avail < s->max_packet ? avail : s->max_packet;
        const uint8_t *nl = memchr(p, '\n', lim);
        if (nl) {
            *hdr = 0;
            *body = (uint32_t)(nl - p) + 1;
            return 1;
        }
        return avail >= s->max_packet ? HY_EMSGSIZE : 0;
    }
    default: {
        uint32_t h = header_len(s->packet);
        if (avail < h)
            return 0;
        uint32_t len = 0;
        for (uint32_t i = 0; i < h; i++)
            len = len << 8 | p[i];
        if (len > s->max_packet)
            return HY_EMSGSIZE;
        if (avail - h < len)
            return 0;
        *hdr = h;
        *body = len;
        return 1;
    }
    }
}

/* Makes room for at least one more byte, up to what one packet needs. */
static int rbuf_room(struct hy_tcp *s, uint32_t *room)
{
    if (s->roff && s->roff == s->rlen)
        s->roff = s->rlen = 0;
    uint32_t want = s->packet == HY_TCP_PACKET_RAW
                        ? (s->max_packet < RAW_CHUNK ? s->max_packet : RAW_CHUNK)
                        : s->max_packet + 4;
    if (want < 512)
        want = 512;
    if (s->roff && s->rcap - s->rlen < 512) {
        memmove(s->rbuf, s->rbuf + s->roff, s->rlen - s->roff);
        s->rlen -= s->roff;
        s->roff = 0;
    }
    if (s->rcap - s->rlen == 0 || (s->rcap < want && s->rcap - s->rlen < 4096)) {
        uint32_t ncap = s->rcap ? s->rcap * 2 : (want < RAW_CHUNK ? want : RAW_CHUNK);
        if (ncap > want && want > s->rcap)
            ncap = want;
        if (ncap <= s->rcap)
            ncap = s->rcap + 4096;
        uint8_t *nb = realloc(s->rbuf, ncap);
        if (!nb)
            return HY_ENOMEM;
        s->rbuf = nb;
        s->rcap = ncap;
    }
    *room = s->rcap - s->rlen;
    return 0;
}

/* Ends a receive through the poller and appends what it brought to rbuf,
 * so that what follows reads in order by other means (framing, active
 * mode, a move to another shard). 0, or HY_ENOMEM (the bytes stay held). */
static int rx_settle(struct hy_tcp *s)
{
    struct hy__io_watch *w = &s->s.w;
    if (w->rx_armed)
        hy__io_recv_settle(s->s.sh, w);
    while (w->rx_len) {
        uint32_t room;
        int rc = rbuf_room(s, &room);
        if (rc)
            return rc;
        uint32_t n = w->rx_len - w->rx_off;
        if (n > room)
            n = room;
        memcpy(s->rbuf + s->rlen, hy__io_rx_data(s->s.sh->io, w) + w->rx_off, n);
        s->rlen += n;
        w->rx_off += n;
        if (w->rx_off == w->rx_len)
            hy__io_recv_release(s->s.sh, w);
    }
    return 0;
}

/* One read into rbuf: > 0 bytes, 0 nothing now (EAGAIN), < 0 error or
 * HY_ECLOSED (EOF; s->eof set). */
static int fill(struct hy_tcp *s)
{
    uint32_t room;
    int rc = rx_settle(s);
    if (rc)
        return rc;
    rc = rbuf_room(s, &room);
    if (rc)
        return rc;
    ssize_t n = tcp_recv(s->s.w.fd, s->rbuf + s->rlen, room, MSG_DONTWAIT);
    if (n > 0) {
        s->rlen += (uint32_t)n;
        if ((uint32_t)n < room)
            input_drained(s);
        return (int)n;
    }
    if (n == 0) {
        s->eof = 1;
        return HY_ECLOSED;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s->s.w.ready &= ~HY_IO_IN;
        return 0;
    }
    if (errno == EINTR)
        return 0;
    s->rd_err = hy__errno_to_hy(errno);
    return s->rd_err;
}

/* ---- active mode -------------------------------------------------------- */

static void deliver(struct hy_tcp *s, uint64_t tag, int err, const void *data, uint32_t len)
{
    struct hy_shard *sh = s->s.sh;
    struct hy_msg *m;
    if (hy__msg_alloc_rt(sh, sizeof(struct hy_tcp_msg) + len, &m) != 0) {
        hy_log(HY_LOG_WARNING, "tcp: no memory for an active-mode message: dropped");
        return;
    }
    m->tag = tag;
    m->from = s->s.owner->pid;
    m->to = s->s.owner->pid;
    m->ref = HY_REF_NONE;
    m->kind = HY_K_MSG;
    m->aux = 0;
    struct hy_tcp_msg *tm = (struct hy_tcp_msg *)m->data;
    tm->sock = s;
    tm->err = err;
    tm->len = len;
    if (len)
        memcpy(tm->data, data, len);
    hy__deliver(sh, m);
}

static void spend(struct hy_tcp *s)
{
    if (s->active == HY_TCP_ACTIVE_ONCE) {
        set_active(s, 0);
    } else if (s->active > 0 && (set_active(s, s->active - 1), s->active == 0)) {
        deliver(s, HY_TCP_TAG_PASSIVE, 0, NULL, 0);
    }
}

/* Turns buffered and readable input into messages while the owner asks. */
static void pump(struct hy_tcp *s)
{
    while (s->active != 0 && !s->ev_done && !s->listening && !s->connecting) {
        uint32_t hdr, body;
        int f = frame(s, &hdr, &body);
        if (f == 1) {
            deliver(s, HY_TCP_TAG_DATA, 0, s->rbuf + s->roff + hdr, body);
            s->roff += hdr + body;
            spend(s);
            continue;
        }
        if (f == HY_EMSGSIZE) {
            s->rd_err = HY_EMSGSIZE;
            shutdown(s->s.w.fd, SHUT_RD);
        }
        if (s->rd_err) {
            s->ev_done = 1;
            deliver(s, HY_TCP_TAG_ERROR, s->rd_err, NULL, 0);
            return;
        }
        if (s->eof) {
            s->ev_done = 1;
            deliver(s, HY_TCP_TAG_CLOSED, HY_ECLOSED, NULL, 0);
            return;
        }
        if (!(s->s.w.ready & HY_IO_IN))
            return;
        if (fill(s) == 0 && !(s->s.w.ready & HY_IO_IN))
            return;
    }
}

/* The poller's callback of a passive socket: wakes the owner parked for
 * ev. It reads only the watch, the record's first cache line. */
HY__HOT static void on_ready(struct hy_shard *sh, struct hy__io_watch *w, uint32_t ev)
{
    struct hy_proc *p = w->waiter;
    if (p && (ev & (w->wait_ev | HY_IO_HUP))) {
        w->waiter = NULL;
        hy__io_wake(sh, p);
    }
}

/* ... and of a socket in active mode (set_active): input becomes messages. */
static void on_ready_active(struct hy_shard *sh, struct hy__io_watch *w, uint32_t ev)
{
    struct hy_tcp *s = (struct hy_tcp *)w;
    on_ready(sh, w, ev);
    if (s->active && (ev & HY_IO_IN))
        pump(s);
}

/* Sets s's active mode and the poller's callback that goes with it. */
static void set_active(struct hy_tcp *s, int active)
{
    s->active = active;
    s->s.w.on_ready = active ? on_ready_active : on_ready;
    /* the pump reads on input readiness: the poll must report it (it may
     * have left input out while receives through the poller read) */
    if (active)
        hy__io_watch_input(s->s.sh, &s->s.w);
}

/* ---- listen, accept, connect -------------------------------------------- */

int hy_tcp_listen(const struct hy_tcp_listen_opts *o, struct hy_tcp **out)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    struct hy_tcp_listen_opts def;
    if (!o) {
        hy_tcp_listen_opts_init(&def);
        o = &def;
    }
    if (!out || !o->addr.len || o->backlog < 0 || check_opts(&o->conn)) {
        hy_log(HY_LOG_WARNING, "tcp_listen: bad options (address, backlog or conn)");
        return HY_EINVAL;
    }
    int fd = socket(o->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return hy__errno_to_hy(errno);
    int rc = setint(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!rc && o->reuseport)
        rc = setint(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (!rc && bind(fd, (const struct sockaddr *)&o->addr.ss, o->addr.len) != 0)
        rc = hy__errno_to_hy(errno);
    if (!rc && listen(fd, o->backlog ? o->backlog : 1024) != 0)
        rc = hy__errno_to_hy(errno);
    if (rc) {
        close(fd);
        return rc;
    }
    struct hy_tcp *s;
    rc = tcp_new(p->shard, p, fd, NULL, &s);
    if (rc)
        return rc;
    s->listening = 1;
    s->conn = o->conn;
    *out = s;
    return 0;
}

int hy_tcp_accept(struct hy_tcp *ls, struct hy_tcp **out, int64_t timeout_ns)
{
    struct hy_proc *p;
    int rc = owner_check(ls, &p);
    if (rc)
        return rc;
    if (!ls->listening || !out)
        return HY_EINVAL;
    hy__charge(p);
    struct tmo deadline = tmo_of(timeout_ns);
    for (;;) {
        if (ls->s.w.ready & HY_IO_IN) {
            int fd = accept4(ls->s.w.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                rc = apply_opts(fd, &ls->conn);
                if (rc) {
                    close(fd);
                    continue; /* the connection died already */
                }
                return tcp_new(p->shard, p, fd, &ls->conn, out);
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                return hy__errno_to_hy(errno);
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                ls->s.w.ready &= ~HY_IO_IN;
            else if (errno != ECONNABORTED && errno != EINTR && errno != EPROTO)
                return hy__errno_to_hy(errno);
            continue;
        }
        rc = hy__sock_wait(&ls->s, HY_IO_IN, remaining(&deadline));
        if (rc)
            return rc;
    }
}

int hy_tcp_connect(const struct hy_addr *addr, const struct hy_tcp_opts *o, int64_t timeout_ns,
                   struct hy_tcp **out)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    struct hy_tcp_opts def;
    if (!o) {
        hy_tcp_opts_init(&def);
        o = &def;
    }
    if (!addr || !addr->len || !out || check_opts(o)) {
        hy_log(HY_LOG_WARNING, "tcp_connect: bad address or options");
        return HY_EINVAL;
    }
    hy__charge(p);
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return hy__errno_to_hy(errno);
    int rc = apply_opts(fd, o);
    if (rc) {
        close(fd);
        return rc;
    }
    bool pending = false;
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        if (errno != EINPROGRESS) {
            rc = hy__errno_to_hy(errno);
            close(fd);
            return rc;
        }
        pending = true;
    }
    struct hy_tcp *s;
    rc = tcp_new(p->shard, p, fd, o, &s);
    if (rc)
        return rc;
    if (pending) {
        s->connecting = 1;
        s->s.w.ready = 0;
        struct tmo deadline = tmo_of(timeout_ns);
        while (!(s->s.w.ready & (HY_IO_OUT | HY_IO_HUP))) {
            rc = hy__sock_wait(&s->s, HY_IO_OUT, remaining(&deadline));
            if (rc) {
                tcp_destroy(&s->s);
                return rc;
            }
        }
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            tcp_destroy(&s->s);
            return hy__errno_to_hy(err);
        }
        s->connecting = 0;
        s->s.w.ready |= HY_IO_IN;
    }
    *out = s;
    if (s->active)
        pump(s);
    return 0;
}

int hy_tcp_connect_host(const char *host, uint16_t port, const struct hy_tcp_opts *o,
                        int64_t timeout_ns, struct hy_tcp **out)
{
    struct hy_addr a;
    int rc = hy_addr_resolve(host, port, &a);
    if (rc)
        return rc;
    return hy_tcp_connect(&a, o, timeout_ns, out);
}

/* ---- data --------------------------------------------------------------- */

/* Checks a passive receive into buf (len bytes) on s, owned by the caller,
 * and charges the caller for the call. */
HY__HOT static int recv_begin(struct hy_tcp *s, const void *buf, size_t len)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (s->listening || s->connecting)
        return HY_EINVAL;
    if (s->active)
        return HY_EBUSY;
    if (!buf && len)
        return HY_EINVAL;
    hy__charge(p);
    return 0;
}

/* Raw receive of up to len bytes into buf (the caller runs: its stack,
 * compact or not, is in place while the kernel copies). */
HY__HOT static inline __attribute__((always_inline)) int
recv_some_(struct hy_tcp *s, uint8_t *buf, size_t len, size_t *got, struct tmo *deadline, bool msg)
{
    for (;;) {
        if (s->roff < s->rlen) {
            size_t n = s->rlen - s->roff;
            if (n > len)
                n = len;
            memcpy(buf, s->rbuf + s->roff, n);
            s->roff += (uint32_t)n;
            *got = n;
            return 0;
        }
        struct hy__io_watch *w = &s->s.w;
        if (w->rx_len) { /* bytes the poller's receive brought */
            size_t n = w->rx_len - w->rx_off;
            if (n > len)
                n = len;
            memcpy(buf, hy__io_rx_data(s->s.sh->io, w) + w->rx_off, n);
            w->rx_off += (uint32_t)n;
            if (w->rx_off == w->rx_len)
                hy__io_recv_release(s->s.sh, w);
            *got = n;
            return 0;
        }
        if (s->rd_err)
            return s->rd_err;
        if (s->eof)
            return HY_ECLOSED;
        if ((w->ready & HY_IO_IN) && !w->rx_armed) {
            ssize_t n = tcp_recv(s->s.w.fd, buf, len, MSG_DONTWAIT);
            if (n > 0) {
                if ((size_t)n < len)
                    input_drained(s);
                *got = (size_t)n;
                return 0;
            }
            if (n == 0) {
                s->eof = 1;
                return HY_ECLOSED;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->s.w.ready &= ~HY_IO_IN;
            } else if (errno != EINTR) {
                s->rd_err = hy__errno_to_hy(errno);
                return s->rd_err;
            }
            continue;
        }
        /* the poller receives for us while we wait: the bytes come with
         * the wake-up, no recv after it (no-op when armed or unavailable).
         * A try without waiting arms one too once the socket is read
         * through the ring (its poll leaves input out): the bytes come for
         * the next call, and the poll is not made to watch input for the
         * try and to leave it out again at the next wait (two updates a
         * request for a process that alternates the two) */
        if (!w->rx_armed && (remaining_nonzero(deadline) || w->poll_noin))
            hy__io_recv_arm(s->s.sh, w);
        int rc = msg ? hy__sock_wait_msg(&s->s, HY_IO_IN, remaining(deadline))
                     : hy__sock_wait(&s->s, HY_IO_IN, remaining(deadline));
        if (rc)
            return rc;
    }
}

HY__HOT static int recv_some(struct hy_tcp *s, uint8_t *buf, size_t len, size_t *got,
                             struct tmo *deadline)
{
    return recv_some_(s, buf, len, got, deadline, false);
}

/* hy_tcp_recv and hy_tcp_recv_or_msg: msg, a constant at each call, says
 * whether a message in the caller's mailbox ends the wait (HY_EINTR). */
static inline __attribute__((always_inline)) int recv_(struct hy_tcp *s, void *buf, size_t len,
                                                       size_t *got, int64_t timeout_ns, bool msg)
{
    int rc = recv_begin(s, buf, len);
    if (rc)
        return rc;
    size_t dummy;
    if (!got)
        got = &dummy;
    *got = 0;
    struct tmo deadline = tmo_of(timeout_ns);
    if (s->packet == HY_TCP_PACKET_RAW)
        return len ? recv_some_(s, buf, len, got, &deadline, msg) : 0;
    for (;;) {
        uint32_t hdr, body;
        int f = frame(s, &hdr, &body);
        if (f == 1) {
            if (body > len)
                return HY_EMSGSIZE; /* the packet stays queued */
            memcpy(buf, s->rbuf + s->roff + hdr, body);
            s->roff += hdr + body;
            *got = body;
            return 0;
        }
        if (f == HY_EMSGSIZE && !s->rd_err) {
            s->rd_err = HY_EMSGSIZE;
            shutdown(s->s.w.fd, SHUT_RD);
        }
        if (s->rd_err)
            return s->rd_err;
        if (s->eof)
            return HY_ECLOSED;
        if (s->s.w.ready & HY_IO_IN) {
            rc = fill(s);
            if (rc < 0 && rc != HY_ECLOSED)
                return rc;
            continue;
        }
        rc = msg ? hy__sock_wait_msg(&s->s, HY_IO_IN, remaining(&deadline))
                 : hy__sock_wait(&s->s, HY_IO_IN, remaining(&deadline));
        if (rc)
            return rc;
    }
}

HY__HOT int hy_tcp_recv(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns)
{
    return recv_(s, buf, len, got, timeout_ns, false);
}

HY__HOT int hy_tcp_recv_or_msg(struct hy_tcp *s, void *buf, size_t len, size_t *got,
                               int64_t timeout_ns)
{
    return recv_(s, buf, len, got, timeout_ns, true);
}

int hy_tcp_recv_exact(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns)
{
    int rc = recv_begin(s, buf, len);
    if (rc)
        return rc;
    struct tmo deadline = tmo_of(timeout_ns);
    size_t have = 0;
    while (have < len) {
        size_t n = 0;
        rc = recv_some(s, (uint8_t *)buf + have, len - have, &n, &deadline);
        if (rc)
            break;
        have += n;
    }
    if (got)
        *got = have;
    return rc;
}

/* What hy_tcp_sendv could not send at once: the rest of iov after the
 * first done bytes, waiting for room as needed. Out of line, with its copy
 * of the vector (1 KiB): the common send, all out in one call, keeps a small
 * frame (one page of stack less to touch per request). */
__attribute__((noinline)) static int sendv_rest(struct hy_tcp *s, const struct iovec *iov,
                                                int iovcnt, size_t done, int64_t timeout_ns)
{
    struct iovec v[MAX_IOV];
    int nv = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        v[nv].iov_base = (char *)iov[i].iov_base + done;
        v[nv++].iov_len = iov[i].iov_len - done;
        done = 0;
    }
    struct tmo deadline = tmo_of(timeout_ns);
    int first = 0;
    while (first < nv) {
        if (s->s.w.ready & HY_IO_OUT) {
            struct msghdr mh = {.msg_iov = v + first, .msg_iovlen = (size_t)(nv - first)};
            ssize_t n = tcp_sendmsg(s->s.w.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0) {
                size_t left = (size_t)n;
                while (first < nv && left >= v[first].iov_len)
                    left -= v[first++].iov_len;
                if (first < nv) {
                    v[first].iov_base = (char *)v[first].iov_base + left;
                    v[first].iov_len -= left;
                }
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->s.w.ready &= ~HY_IO_OUT;
            } else if (errno != EINTR) {
                s->wr_shut = 1;
                return errno == EPIPE ? HY_ECLOSED : hy__errno_to_hy(errno);
            }
            continue;
        }
        int rc = hy__sock_wait(&s->s, HY_IO_OUT, remaining(&deadline));
        if (rc) {
            /* part of the stream may be out: never let a later send tear it */
            shutdown(s->s.w.fd, SHUT_WR);
            s->wr_shut = 1;
            return rc;
        }
    }
    return 0;
}

/* The send system call from the caller's buffers (nothing queued). */
static inline __attribute__((always_inline)) int
send_direct(struct hy_tcp *s, const struct iovec *iov, int iovcnt, size_t total, int64_t timeout_ns)
{
    size_t done = 0;
    if (s->s.w.ready & HY_IO_OUT) {
        /* straight from the caller's vector (the kernel only reads it) */
        ssize_t n;
        if (iovcnt == 1) {
            n = tcp_send1(s->s.w.fd, iov[0].iov_base, total, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
            n = tcp_sendmsg(s->s.w.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (n >= 0) {
            if ((size_t)n == total)
                return 0;
            done = (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->s.w.ready &= ~HY_IO_OUT;
        } else if (errno != EINTR) {
            s->wr_shut = 1;
            return errno == EPIPE ? HY_ECLOSED : hy__errno_to_hy(errno);
        }
    }
    return sendv_rest(s, iov, iovcnt, done, timeout_ns);
}

/* A send the poller's queue could not take at once: an earlier queued
 * send failed (its error, once), the queue is full or the bytes are too
 * many for it while it holds some. Waits for the queue's progress; sends
 * itself once nothing is queued. */
__attribute__((noinline)) static int send_slow(struct hy_tcp *s, const struct iovec *iov, int iovcnt,
                                               size_t total, int64_t timeout_ns)
{
    struct hy__io_watch *w = &s->s.w;
    struct tmo deadline = tmo_of(timeout_ns);
    bool waited = false;
    for (;;) {
        if (w->tx_err) {
            s->wr_shut = 1;
            return w->tx_err;
        }
        if (total <= TX_QUEUE_MAX) {
            int q = hy__io_send(s->s.sh, w, iov, iovcnt, total);
            if (q)
                return q < 0 ? q : 0;
        }
        if (w->tx_link) /* its end must not wait for the peer's bytes */
            hy__io_send_unlink(s->s.sh, w);
        if (!w->tx_busy)
            return send_direct(s, iov, iovcnt, total, waited ? remaining(&deadline) : timeout_ns);
        int rc = hy__sock_wait(&s->s, HY_IO_TX, remaining(&deadline));
        if (rc) {
            /* as a send that timed out itself: what is queued is dropped
             * and the stream ends there, never torn by a later send */
            hy__io_send_settle(s->s.sh, w);
            shutdown(s->s.w.fd, SHUT_WR);
            s->wr_shut = 1;
            return rc;
        }
        waited = true;
    }
}

/* Waits up to timeout_ns for the queued sends to reach the kernel (a
 * shutdown or close must not overtake them); what is left is dropped. */
static void tx_drain(struct hy_tcp *s, int64_t timeout_ns)
{
    struct hy__io_watch *w = &s->s.w;
    struct tmo deadline = tmo_of(timeout_ns);
    if (w->tx_link) /* a linked send's end must not wait for the peer's bytes */
        hy__io_send_unlink(s->s.sh, w);
    while (w->tx_busy && hy__sock_wait(&s->s, HY_IO_TX, remaining(&deadline)) == 0) {
    }
    if (w->tx_busy || w->tx_buf)
        hy__io_send_settle(s->s.sh, w);
}

/* What a vectored send checks before it sends: the caller owns s, the
 * vector is well formed, the writing side is open; then the send is
 * charged to the caller. 0 or the error to return. */
static inline __attribute__((always_inline)) int send_begin(struct hy_tcp *s,
                                                            const struct iovec *iov, int iovcnt)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (s->listening || s->connecting || iovcnt < 0 || iovcnt > MAX_IOV || (!iov && iovcnt))
        return HY_EINVAL;
    if (s->wr_shut)
        return HY_ECLOSED;
    hy__charge(p);
    return 0;
}

HY__HOT int hy_tcp_sendv(struct hy_tcp *s, const struct iovec *iov, int iovcnt, int64_t timeout_ns)
{
    int rc = send_begin(s, iov, iovcnt);
    if (rc)
        return rc;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (!total)
        return 0;
    /* copied into the socket's queue, to the kernel with the shard's next
     * submission (one system call for every send of the turn) */
    if (total <= TX_QUEUE_MAX) {
        rc = hy__io_send(s->s.sh, &s->s.w, iov, iovcnt, total);
        if (rc)
            return rc < 0 ? rc : 0;
    }
    if (s->s.w.tx_busy | (s->s.w.tx_err != 0))
        return send_slow(s, iov, iovcnt, total, timeout_ns);
    return send_direct(s, iov, iovcnt, total, timeout_ns);
}

HY__HOT int hy_tcp_send_some(struct hy_tcp *s, const struct iovec *iov, int iovcnt, size_t *sent)
{
    if (!sent)
        return HY_EINVAL;
    *sent = 0;
    int rc = send_begin(s, iov, iovcnt);
    if (rc)
        return rc;
    struct hy__io_watch *w = &s->s.w;
    if (w->tx_err) { /* an earlier queued send failed: its error, once */
        s->wr_shut = 1;
        return w->tx_err;
    }
    /* bytes of earlier sends still queued for the kernel go first: none of
     * these may overtake them, so the kernel takes nothing now */
    if (w->tx_link) /* a linked send's end must not wait for the peer's bytes */
        hy__io_send_unlink(s->s.sh, w);
    if (w->tx_busy || w->tx_len != w->tx_off)
        return 0;
    if (!iovcnt || !(w->ready & HY_IO_OUT))
        return 0;
    ssize_t n;
    if (iovcnt == 1) {
        n = tcp_send1(w->fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        n = tcp_sendmsg(w->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (n >= 0) {
        *sent = (size_t)n;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        w->ready &= ~HY_IO_OUT;
        return 0;
    }
    if (errno == EINTR)
        return 0;
    s->wr_shut = 1;
    return errno == EPIPE ? HY_ECLOSED : hy__errno_to_hy(errno);
}

HY__HOT int hy_tcp_send(struct hy_tcp *s, const void *data, size_t len, int64_t timeout_ns)
{
    if (!data && len)
        return HY_EINVAL;
    struct iovec v = {.iov_base = (void *)data, .iov_len = len};
    return hy_tcp_sendv(s, &v, 1, timeout_ns);
}

int hy_tcp_shutdown(struct hy_tcp *s, int how)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (s->listening || (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR))
        return HY_EINVAL;
    if (how != SHUT_RD && (s->s.w.tx_busy | (s->s.w.tx_buf != NULL)))
        tx_drain(s, TX_DRAIN_NS);
    if (shutdown(s->s.w.fd, how) != 0)
        return hy__errno_to_hy(errno);
    if (how != SHUT_RD)
        s->wr_shut = 1;
    return 0;
}

int hy_tcp_close(struct hy_tcp *s)
{
    struct hy_proc *p;
    if (s && s->s.w.tx_busy && owner_check(s, &p) == 0)
        tx_drain(s, TX_DRAIN_NS);
    return hy__sock_close(s ? &s->s : NULL);
}

/* ---- control ------------------------------------------------------------ */

int hy_tcp_set_active(struct hy_tcp *s, int mode)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (s->listening || !active_ok(mode))
        return HY_EINVAL;
    if (mode != 0 && (rc = rx_settle(s)) != 0)
        return rc;
    if (mode > 0) {
        int cur = s->active > 0 ? s->active : 0;
        set_active(s, cur + mode > HY_TCP_ACTIVE_MAX ? HY_TCP_ACTIVE_MAX : cur + mode);
    } else {
        set_active(s, mode);
    }
    if (s->active && !s->connecting)
        pump(s);
    return 0;
}

int hy_tcp_set_packet(struct hy_tcp *s, enum hy_tcp_packet packet, uint32_t max_packet)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (s->listening || !packet_ok(packet) || max_packet > hy__rt.cfg.max_message_size)
        return HY_EINVAL;
    if ((rc = rx_settle(s)) != 0)
        return rc;
    s->packet = packet;
    s->max_packet = max_packet ? max_packet : HY_TCP_DEFAULT_MAX_PACKET;
    if (s->active)
        pump(s);
    return 0;
}

int hy_tcp_set_nodelay(struct hy_tcp *s, bool on)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    return rc ? rc : setint(s->s.w.fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int hy_tcp_set_keepalive(struct hy_tcp *s, bool on)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    return rc ? rc : setint(s->s.w.fd, SOL_SOCKET, SO_KEEPALIVE, on);
}

int hy_tcp_set_bufsizes(struct hy_tcp *s, int sndbuf, int rcvbuf)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (sndbuf >= 0 && (rc = setint(s->s.w.fd, SOL_SOCKET, SO_SNDBUF, sndbuf)) != 0)
        return rc;
    if (rcvbuf >= 0 && (rc = setint(s->s.w.fd, SOL_SOCKET, SO_RCVBUF, rcvbuf)) != 0)
        return rc;
    return 0;
}

static int name_of(struct hy_tcp *s, struct hy_addr *out, bool peer)
{
    return hy__sock_name(s ? &s->s : NULL, out, peer);
}

int hy_tcp_peername(struct hy_tcp *s, struct hy_addr *out)
{
    return name_of(s, out, true);
}

int hy_tcp_sockname(struct hy_tcp *s, struct hy_addr *out)
{
    return name_of(s, out, false);
}

int hy_tcp_fd(const struct hy_tcp *s)
{
    return s ? s->s.w.fd : -1;
}

size_t hy_tcp_unsent(const struct hy_tcp *s)
{
    return s ? (size_t)(s->s.w.tx_len - s->s.w.tx_off) : 0;
}

size_t hy_tcp_count(void)
{
    struct hy_shard *sh = hy__shard();
    return sh ? (size_t)atomic_load_explicit(&sh->st.io_sockets, memory_order_relaxed) : 0;
}

const struct hy_tcp_msg *hy_tcp_msg_of(const struct hy_msg *m)
{
    if (!m || m->size < sizeof(struct hy_tcp_msg))
        return NULL;
    switch (m->tag) {
    case HY_TCP_TAG_DATA:
    case HY_TCP_TAG_CLOSED:
    case HY_TCP_TAG_ERROR:
    case HY_TCP_TAG_PASSIVE:
    case HY_TCP_TAG_GIVEN:
        return (const struct hy_tcp_msg *)m->data;
    default:
        return NULL;
    }
}

/* ---- ownership handover ------------------------------------------------- */

/* What travels to another shard with a socket. */
struct move {
    int fd;
    int active;
    int rd_err;
    uint32_t packet, max_packet, nbuf;
    uint8_t listening, eof, wr_shut, ev_done;
    struct hy_tcp_opts conn;
    uint8_t buf[];
};

static void tcp_move_arrived(struct hy_shard *sh, struct hy_msg *m)
{
    struct move mv;
    memcpy(&mv, m->data, sizeof(mv));
    struct hy_proc *p = hy__proc_lookup(sh, m->to);
    struct hy_tcp *s = NULL;
    if (!p || p->state >= HY_P_EXITING) {
        close(mv.fd); /* the new owner is gone: so is the socket */
    } else if (tcp_new(sh, p, mv.fd, NULL, &s) == 0) {
        set_active(s, mv.active);
        s->rd_err = mv.rd_err;
        s->packet = (enum hy_tcp_packet)mv.packet;
        s->max_packet = mv.max_packet;
        s->listening = mv.listening;
        s->eof = mv.eof;
        s->wr_shut = mv.wr_shut;
        s->ev_done = mv.ev_done;
        s->conn = mv.conn;
        if (mv.nbuf) {
            s->rbuf = malloc(mv.nbuf);
            if (s->rbuf) {
                memcpy(s->rbuf, m->data + sizeof(mv), mv.nbuf);
                s->rcap = s->rlen = mv.nbuf;
            }
        }
        deliver(s, HY_TCP_TAG_GIVEN, 0, NULL, 0);
        if (s->active)
            pump(s);
    }
    hy__msg_free_local(sh, m);
}

int hy_tcp_controlling_process(struct hy_tcp *s, hy_pid to)
{
    struct hy_proc *p;
    int rc = owner_check(s, &p);
    if (rc)
        return rc;
    if (hy_pid_node(to) != hy_node_id())
        return HY_EINVAL;
    struct hy_shard *sh = p->shard;
    unsigned dst = hy_pid_shard(to);
    if (dst >= hy__rt.nshards)
        return HY_ENOPROC;
    if (dst == sh->id) {
        struct hy_proc *np = hy__proc_lookup(sh, to);
        if (!np || np->state >= HY_P_EXITING)
            return HY_ENOPROC;
        if (np == p)
            return 0;
        hy__sock_detach(&s->s);
        hy__sock_attach(&s->s, np);
        deliver(s, HY_TCP_TAG_GIVEN, 0, NULL, 0);
        if (s->active)
            pump(s);
        return 0;
    }
    if ((rc = rx_settle(s)) != 0)
        return rc;
    if (s->s.w.tx_busy | (s->s.w.tx_buf != NULL))
        tx_drain(s, TX_DRAIN_NS);
    uint32_t nbuf = s->rlen - s->roff;
    struct hy_msg *m;
    rc = hy__msg_alloc_rt(sh, sizeof(struct move) + nbuf, &m);
    if (rc)
        return rc;
    struct move mv = {
        .fd = s->s.w.fd, .active = s->active, .rd_err = s->rd_err,
        .packet = (uint32_t)s->packet, .max_packet = s->max_packet, .nbuf = nbuf,
        .listening = s->listening, .eof = s->eof, .wr_shut = s->wr_shut,
        .ev_done = s->ev_done, .conn = s->conn,
    };
    memcpy(m->data, &mv, sizeof(mv));
    if (nbuf)
        memcpy(m->data + sizeof(mv), s->rbuf + s->roff, nbuf);
    m->kind = HY_K_TCP_MOVE;
    m->tag = 0;
    m->from = p->pid;
    m->to = to;
    m->ref = HY_REF_NONE;
    m->aux = 0;
    /* the descriptor now belongs to the message: unwatch, keep it open */
    hy__io_del(sh, &s->s.w);
    s->s.w.fd = -1;
    tcp_destroy(&s->s);
    hy__route(sh, m);
    return 0;
}

void hy__tcp_init(void);
void hy__tcp_init(void)
{
    hy__kind_register(HY_K_TCP_MOVE, tcp_move_arrived);
}
