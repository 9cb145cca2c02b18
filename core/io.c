/* The per-shard socket poller: the watch table, the backend choice, parking
 * processes on sockets and closing the sockets of exiting processes. The
 * backends (io_uring.c, io_epoll.c) only register descriptors and report
 * readiness; see io_internal.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors.h"
#include "io_internal.h"
#include "log.h"
#include "sanitize_internal.h"
#include "shard_internal.h"
#include "tcp.h"

#ifdef HY_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* Socket records of one size (hy__sock_new): carved from chunks of
 * SOCK_CHUNK records, 64-byte aligned, so a shard's sockets sit densely on
 * few pages; a freed record goes on the head of its class's free list and
 * the next socket takes it (its lines are likely still in the cache). */
#define SOCK_CHUNK 64u
#define SOCK_CLASSES 4

struct sock_chunk {
    struct sock_chunk *next;
    void *mem;
};

struct sock_class {
    uint32_t size;            /* record bytes, a multiple of 64; 0 = unused */
    uint32_t left;            /* records not yet carved from next */
    char *next;               /* the next record to carve */
    void *free;               /* freed records (link in the first word) */
    struct sock_chunk *chunks;
};

struct hy__io {
    struct hy__io_peek pk;       /* first: read by hy__io_due */
    const struct hy__io_backend *be;
    void *state;
    struct hy__io_watch **slots; /* index 1..cap-1 */
    uint32_t *gen;
    uint32_t *next_free;
    uint32_t cap;
    uint32_t free_head;          /* 0 = none */
    /* Send buffers of TX_BUF bytes given back by sockets whose queue
     * emptied, reused last-in first-out: the sends of a turn write into
     * the few most recently used (warm) buffers instead of one buffer per
     * connection, 1,000 of them on 500 pages at 1,000 connections. */
    uint8_t *tx_free[64];
    uint32_t ntx_free;
    struct sock_class sock[SOCK_CLASSES];
    struct hy_ring_send *rsend; /* hy_ring_send()s queued, their ends not reported */
    /* Multishot receives (be->recv_multishot): per pool buffer, a watch's
     * queue link, (next buffer id + 1) << 16 | the bytes it holds (the
     * watch's rx_qhead and rx_qtail; NULL: one-shot receives) */
    uint32_t *rxq;
};

#define TX_BUF 2048u

static const struct hy__io_backend *chosen;

_Atomic uint64_t hy__io_stray_input;

void hy__tcp_init(void);

int hy__io_select(enum hy_io_backend want, enum hy_io_backend *out)
{
    hy__tcp_init();
    const struct hy__io_backend *be = NULL;
    switch (want) {
    case HY_IO_AUTO:
    case HY_IO_URING: {
        void *st = NULL;
        /* a probe: io_uring_setup is refused by some seccomp filters */
        if (hy__io_uring_backend.init(NULL, &st) == 0) {
            hy__io_uring_backend.fini(NULL, st);
            be = &hy__io_uring_backend;
        } else if (want == HY_IO_URING) {
            hy_log(HY_LOG_ERROR, "io_backend: io_uring requested but refused by the kernel");
            return HY_ENOTSUP;
        } else {
            be = &hy__io_epoll_backend;
        }
        break;
    }
    case HY_IO_EPOLL:
        be = &hy__io_epoll_backend;
        break;
    default:
        hy_log(HY_LOG_ERROR, "io_backend: unknown value %d", (int)want);
        return HY_EINVAL;
    }
    chosen = be;
    if (out)
        *out = be->kind;
    hy_log(HY_LOG_INFO, "socket poller: %s", be->name);
    return 0;
}

static struct hy__io *io_get(struct hy_shard *sh)
{
    if (sh->io)
        return sh->io;
    struct hy__io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->be = chosen ? chosen : &hy__io_epoll_backend;
    if (io->be->init(sh, &io->state) != 0 &&
        (io->be == &hy__io_epoll_backend ||
         (io->be = &hy__io_epoll_backend)->init(sh, &io->state) != 0)) {
        free(io);
        return NULL;
    }
    if (io->be->peek_init)
        io->be->peek_init(io->state, &io->pk);
    /* the pool's buffers, for hy__io_rx_data (NULL: no pool) */
    if (io->be->recv_buf && (io->pk.rx_base = io->be->recv_buf(io->state, 0)) != NULL)
        io->pk.rx_size = (uint32_t)(io->be->recv_buf(io->state, 1) - io->pk.rx_base);
    unsigned nbuf = io->be->recv_multishot ? io->be->recv_multishot(io->state) : 0;
    if (nbuf && !(io->rxq = calloc(nbuf, sizeof(*io->rxq)))) {
        io->be->fini(sh, io->state);
        free(io);
        return NULL;
    }
    sh->io = io;
    return io;
}

static int grow(struct hy__io *io)
{
    uint32_t ncap = io->cap ? io->cap * 2 : 64;
    struct hy__io_watch **s = realloc(io->slots, ncap * sizeof(*s));
    if (!s)
        return HY_ENOMEM;
    io->slots = s;
    uint32_t *g = realloc(io->gen, ncap * sizeof(*g));
    if (!g)
        return HY_ENOMEM;
    io->gen = g;
    uint32_t *nf = realloc(io->next_free, ncap * sizeof(*nf));
    if (!nf)
        return HY_ENOMEM;
    io->next_free = nf;
    uint32_t first = io->cap ? io->cap : 1;
    for (uint32_t i = first; i < ncap; i++) {
        s[i] = NULL;
        g[i] = 1;
        nf[i] = i + 1 < ncap ? i + 1 : io->free_head;
    }
    io->free_head = first;
    io->cap = ncap;
    return 0;
}

static inline uint64_t cookie_of(struct hy__io *io, uint32_t idx)
{
    return (uint64_t)io->gen[idx] << 32 | idx;
}

int hy__io_add(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = io_get(sh);
    if (!io)
        return HY_ENOMEM;
    if (!io->free_head) {
        int rc = grow(io);
        if (rc)
            return rc;
    }
    uint32_t idx = io->free_head;
    io->free_head = io->next_free[idx];
    io->slots[idx] = w;
    w->idx = idx;
    w->ready = HY_IO_IN | HY_IO_OUT;
    w->poll_noin = 0; /* the poll watches input until a receive is armed */
    int rc = io->be->add(io->state, w->fd, cookie_of(io, idx));
    hy__stat_add(&sh->st.io_syscalls, io->be->kind == HY_IO_EPOLL); /* epoll_ctl */
    if (rc) {
        io->slots[idx] = NULL;
        io->next_free[idx] = io->free_head;
        io->free_head = idx;
        w->idx = 0;
        return rc;
    }
    io->pk.nwatch++;
    return 0;
}

void hy__io_del(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    if (!io || !w->idx)
        return;
    if (w->tx_busy | (w->tx_buf != NULL))
        hy__io_send_settle(sh, w);
    uint32_t idx = w->idx;
    if (w->rx_armed) /* its completion will find the cookie stale */
        io->be->recv_cancel(io->state, cookie_of(io, idx), false);
    w->rx_armed = 0;
    while (w->rx_len) /* the buffer held and those queued behind it */
        hy__io_recv_release(sh, w);
    io->be->del(io->state, w->fd, cookie_of(io, idx));
    hy__stat_add(&sh->st.io_syscalls, 1); /* epoll_ctl, or io_uring_enter */
    io->slots[idx] = NULL;
    /* 27 bits: bits 59-63 of a cookie are the backend's */
    io->gen[idx] = (io->gen[idx] + 1) & 0x07ffffffu;
    io->next_free[idx] = io->free_head;
    io->free_head = idx;
    io->pk.nwatch--;
    w->idx = 0;
}

HY__HOT void hy__io_dispatch(struct hy_shard *sh, uint64_t cookie, uint32_t ev)
{
    struct hy__io *io = sh->io;
    uint32_t idx = (uint32_t)cookie;
    if (idx == 0 || idx >= io->cap || io->gen[idx] != (uint32_t)(cookie >> 32))
        return; /* the watch went away after the event was produced */
    struct hy__io_watch *w = io->slots[idx];
    if (!w)
        return;
    if (__builtin_expect(w->poll_noin, 0) && (ev & (HY_IO_IN | HY_IO_HUP)) == HY_IO_IN)
        atomic_fetch_add_explicit(&hy__io_stray_input, 1, memory_order_relaxed);
    /* a receive armed or bytes held: input comes through them (a hang-up
     * or an error still wakes) */
    if ((w->rx_armed | (w->rx_len != 0)) && !(ev & HY_IO_HUP))
        ev &= ~HY_IO_IN;
    if (!ev)
        return;
    w->ready |= ev;
    w->on_ready(sh, w, ev);
}

/* What a send request of w (cookie) ended with, res bytes taken or
 * -errno: queues the next request for what is left or was appended, or
 * records the error; wakes through on_ready(HY_IO_TX). */
static void tx_progress(struct hy_shard *sh, struct hy__io_watch *w, uint64_t cookie, int res)
{
    struct hy__io *io = sh->io;
    uint8_t link = w->tx_link;
    if (res == -ECANCELED && link == HY__IO_TX_CANCEL)
        res = 0; /* a linked send cancelled by tx_unlink: nothing taken */
    w->tx_link = 0;
    bool rx_lost = false;
    if (link >= HY__IO_TX_LINKED && w->rx_armed) {
        /* a linked send completes only when it failed or was cut short:
         * the kernel then cancelled the receive behind it without a
         * completion (a failed request that skips its completion on
         * success skips those of its links): the owner's recv finds out */
        w->rx_armed = 0;
        io->be->recv_put(io->state, -1);
        w->ready |= HY_IO_IN;
        rx_lost = true;
    }
    if (res > 0) {
        w->tx_off += (uint32_t)res;
    } else if (res < 0 && res != -EAGAIN && res != -EINTR) {
        w->tx_err = res == -EPIPE || res == -ECANCELED ? HY_ECLOSED : hy__errno_to_hy(-res);
        w->tx_off = w->tx_len; /* the rest can never go in order */
    }
    if (w->tx_off < w->tx_len &&
        io->be->send(io->state, w->fd, w->tx_buf + w->tx_off, w->tx_len - w->tx_off, cookie)) {
        /* a short send, or bytes appended meanwhile: the next request */
    } else {
        if (w->tx_off < w->tx_len && !w->tx_err)
            w->tx_err = HY_ENOMEM;
        w->tx_busy = 0;
        w->tx_off = w->tx_len = 0;
        if (w->tx_cap == TX_BUF && io->ntx_free < sizeof(io->tx_free) / sizeof(io->tx_free[0])) {
            io->tx_free[io->ntx_free++] = w->tx_buf;
            w->tx_buf = NULL;
            w->tx_cap = 0;
        }
    }
    w->on_ready(sh, w, rx_lost ? HY_IO_TX | HY_IO_IN : HY_IO_TX);
}

/* Ends the link of w's send request (tx_link set): afterwards tx_link is 0
 * and the request is an ordinary one whose completion comes, or it ended
 * (its end dispatched). For bytes appended behind it, a receive cancelled
 * or a socket closed or moved: none may wait for the peer's next bytes. */
__attribute__((noinline)) static void tx_unlink(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    uint64_t cookie = cookie_of(io, w->idx);
    if (w->tx_link == HY__IO_TX_HELD) { /* no receive after it yet */
        (void)io->be->send_unlink(io->state, cookie);
        w->tx_link = 0;
        return;
    }
    int r = io->be->send_unlink(io->state, cookie);
    if (r == 0) {
        w->tx_link = 0;
        return;
    }
    w->tx_link = HY__IO_TX_CANCEL;
    /* a failure's completion (1) or the cancelled request's (2): the poll
     * dispatches it (tx_progress clears tx_link) */
    for (int i = 0; w->tx_link && i < (r == 1 ? 1 : 1000); i++)
        hy__io_poll(sh);
    if (w->tx_link) { /* no completion: it took every byte (the receive runs) */
        w->tx_link = 0;
        tx_progress(sh, w, cookie, (int)(w->tx_len - w->tx_off));
    }
}

HY__HOT void hy__io_dispatch_recv(struct hy_shard *sh, uint64_t cookie, int res, int bid,
                                  uint32_t bufsz, unsigned fl)
{
    struct hy__io *io = sh->io;
    uint32_t idx = (uint32_t)cookie;
    struct hy__io_watch *w = NULL;
    if (idx && idx < io->cap && io->gen[idx] == (uint32_t)(cookie >> 32))
        w = io->slots[idx];
    /* the receive ran: the send linked ahead of it took every byte */
    if (w && w->tx_link >= HY__IO_TX_LINKED && res != -ECANCELED) {
        w->tx_link = 0;
        tx_progress(sh, w, cookie, (int)(w->tx_len - w->tx_off));
    }
    if (!w || !w->rx_armed || res <= 0 || bid < 0) {
        /* the watch went away, or no bytes came: the buffer (if any) and
         * the receive's place go back */
        io->be->recv_put(io->state, bid);
        if (!w || !w->rx_armed || (fl & HY__IO_RX_MORE))
            return;
        /* the end, an error or an empty pool: the owner's recv finds out
         * (after the bytes held, which came before) */
        w->rx_armed = 0;
        w->ready |= HY_IO_IN;
        w->on_ready(sh, w, HY_IO_IN);
        return;
    }
    hy__stat_add(&sh->st.io_recvs, 1);
    if (!(fl & HY__IO_RX_MORE))
        w->rx_armed = 0;
    if (__builtin_expect(w->rx_len != 0, 0)) {
        /* a multishot receive's bytes behind those held: queued */
        io->rxq[bid] = (uint32_t)res;
        if (w->rx_qtail) {
            io->rxq[w->rx_qtail - 1] |= (uint32_t)(bid + 1) << 16;
            /* a third buffer held: the owner is behind; no more until it
             * has taken them (its next wait arms a receive again) */
            if ((fl & HY__IO_RX_MORE) && !(w->rx_armed & HY__IO_RX_CANCEL)) {
                w->rx_armed |= HY__IO_RX_CANCEL;
                io->be->recv_cancel(io->state, cookie, false);
            }
        } else {
            w->rx_qhead = (uint16_t)(bid + 1);
        }
        w->rx_qtail = (uint16_t)(bid + 1);
    } else {
        w->rx_bid = (uint16_t)bid;
        w->rx_off = 0;
        w->rx_len = (uint16_t)res;
    }
    /* a one-shot receive's full buffer: more may be queued in the kernel;
     * a multishot receive that ended: whatever came after its last bytes */
    if ((fl & HY__IO_RX_MS) ? !(fl & HY__IO_RX_MORE) : (uint32_t)res >= bufsz)
        w->ready |= HY_IO_IN;
    w->on_ready(sh, w, HY_IO_IN);
}

/* The first receive armed for w: the bytes it waits for would also
 * complete the socket's poll (a wake-up, a task work that polls the socket
 * and a completion, dispatched and dropped: once a request), so the poll
 * leaves input out from now on; a wait for input without a receive armed
 * watches it again (hy__io_watch_input). Queued after the receive (and
 * after a send linked ahead of it: the link is unchanged). */
__attribute__((noinline)) static void input_unwatch(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    if (!io->be->poll_input)
        return;
    w->poll_noin = 1;
    io->be->poll_input(sh, io->state, w->fd, cookie_of(io, w->idx), false);
}

HY__HOT bool hy__io_recv_arm(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    if (!io->be->recv_arm || !w->idx || w->rx_armed || w->rx_len)
        return false;
    if (w->tx_link == HY__IO_TX_HELD) {
        /* the reply's send and this receive in one submission */
        w->tx_link = 0;
        int r = io->be->recv_arm_linked(io->state, w->fd, cookie_of(io, w->idx));
        if (r < 0)
            return false;
        if (r > 0)
            w->tx_link = HY__IO_TX_LINKED;
        w->rx_armed = 1;
        if (__builtin_expect(!w->poll_noin, 0))
            input_unwatch(sh, w);
        return true;
    }
    if (!io->be->recv_arm(io->state, w->fd, cookie_of(io, w->idx)))
        return false;
    w->rx_armed = 1;
    if (__builtin_expect(!w->poll_noin, 0))
        input_unwatch(sh, w);
    return true;
}

void hy__io_watch_input_slow(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    w->poll_noin = 0;
    if (w->idx && io->be->poll_input)
        io->be->poll_input(sh, io->state, w->fd, cookie_of(io, w->idx), true);
}

HY__HOT void hy__io_recv_release(struct hy_shard *sh, struct hy__io_watch *w)
{
    if (!w->rx_len)
        return;
    struct hy__io *io = sh->io;
    io->be->recv_put(io->state, (int)w->rx_bid);
    w->rx_len = w->rx_off = 0;
    if (__builtin_expect(w->rx_qhead != 0, 0)) {
        /* the next buffer a multishot receive brought */
        uint16_t bid = (uint16_t)(w->rx_qhead - 1);
        uint32_t e = io->rxq[bid];
        w->rx_bid = bid;
        w->rx_len = (uint16_t)e;
        w->rx_qhead = (uint16_t)(e >> 16);
        if (!w->rx_qhead)
            w->rx_qtail = 0;
    }
}

void hy__io_recv_settle(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    if (w->tx_link) /* a cancelled receive would hide the linked send's end */
        tx_unlink(sh, w);
    for (int i = 0; w->rx_armed && i < 1000; i++) {
        io->be->recv_cancel(io->state, cookie_of(io, w->idx), true);
        hy__io_poll(sh);
    }
    if (w->rx_armed)
        hy__fatal("io: a receive through the poller could not be cancelled");
}

/* ---- sends through the poller ------------------------------------------ */

HY__HOT int hy__io_send(struct hy_shard *sh, struct hy__io_watch *w, const struct iovec *iov,
                        int iovcnt, size_t total)
{
    struct hy__io *io = sh->io;
    if (!io->be->send || !w->idx || w->tx_err)
        return 0;
    /* appended bytes may not wait for the peer: a linked send's link ends
     * (a held one, still the ring's last entry, grows to take them) */
    if (w->tx_link > HY__IO_TX_HELD)
        tx_unlink(sh, w);
    if (total > HY__IO_TX_CAP - w->tx_len)
        return 0;
    bool hold = false;
    if (!sh->rq_head && !w->tx_busy) {
        /* alone on the shard with nothing queued for the kernel: no send
         * of another process to go with. Where the backend links a send
         * to the receive armed next, the send is held for it (the reply
         * and the wait for the next request: one system call, the
         * sleep's); otherwise the caller's own send system call is
         * cheaper than a copy, a submission and a completion */
        const struct hy__io_peek *pk = &io->pk;
        if (*pk->sq_tail - __atomic_load_n(pk->sq_head, __ATOMIC_ACQUIRE) <= pk->lazy) {
            /* held only when no completion waits either: the shard is then
             * about to sleep, and the sleep's io_uring_enter submits the
             * pair at once. With completions waiting (many connections) it
             * runs more turns first, and the reply would wait for the next
             * submission: 1,000 connections lost a third of their req/s */
            if (!io->be->recv_arm_linked || w->tx_err ||
                __atomic_load_n(pk->cq_tail, __ATOMIC_ACQUIRE) != *pk->cq_head)
                return 0;
            hold = true;
        }
    }
    uint32_t need = w->tx_len + (uint32_t)total;
    if (!w->tx_buf && need <= TX_BUF && io->ntx_free) {
        w->tx_buf = io->tx_free[--io->ntx_free];
        w->tx_cap = TX_BUF;
    }
    if (need > w->tx_cap) {
        if (w->tx_busy) { /* the kernel reads the buffer: it may not move */
            if (w->tx_link)
                tx_unlink(sh, w);
            return 0;
        }
        uint32_t ncap = w->tx_cap ? w->tx_cap : TX_BUF;
        while (ncap < need)
            ncap *= 2;
        uint8_t *nb = realloc(w->tx_buf, ncap);
        if (!nb)
            return HY_ENOMEM;
        w->tx_buf = nb;
        w->tx_cap = ncap;
    }
    uint8_t *d = w->tx_buf + w->tx_len;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(d, iov[i].iov_base, iov[i].iov_len);
        d += iov[i].iov_len;
    }
    w->tx_len = need;
    hy__stat_add(&sh->st.io_sends, 1);
    if (w->tx_busy) {
        /* a held send takes them if it is still the last entry; else
         * they go with the next request */
        if (w->tx_link == HY__IO_TX_HELD &&
            !io->be->send_grow(io->state, cookie_of(io, w->idx), w->tx_len - w->tx_off))
            w->tx_link = 0;
        return 1;
    }
    if (!io->be->send(io->state, w->fd, w->tx_buf + w->tx_off, w->tx_len - w->tx_off,
                      cookie_of(io, w->idx))) {
        w->tx_len -= (uint32_t)total;
        return 0;
    }
    w->tx_busy = 1;
    if (hold) {
        /* to the kernel with the receive armed next (hy__io_recv_arm), or
         * with the submission of the next turn or sleep */
        w->tx_link = HY__IO_TX_HELD;
        return 1;
    }
    /* no other process to run: the turn ends when this one parks, so
     * nothing is gained by waiting, and a caller that next blocks the
     * thread must not hold its bytes back */
    if (!sh->rq_head)
        io->be->flush(sh, io->state);
    return 1;
}

HY__HOT void hy__io_dispatch_send(struct hy_shard *sh, uint64_t cookie, int res)
{
    struct hy__io *io = sh->io;
    uint32_t idx = (uint32_t)cookie;
    struct hy__io_watch *w = NULL;
    if (idx && idx < io->cap && io->gen[idx] == (uint32_t)(cookie >> 32))
        w = io->slots[idx];
    if (!w || !w->tx_busy)
        return;
    tx_progress(sh, w, cookie, res);
}

/* ---- a send on a descriptor, made by the ring (hy_ring_send) ----------- */

int hy_ring_send(struct hy_ring_send *rs)
{
    const char *bad = !rs             ? "rs"
                      : !rs->buf      ? "buf"
                      : !rs->done     ? "done"
                      : rs->fd < 0    ? "fd"
                      : rs->len == 0 || rs->len > INT32_MAX ? "len"
                                      : NULL;
    if (bad) {
        hy_log(HY_LOG_ERROR, "hy_ring_send: invalid %s", bad);
        return HY_EINVAL;
    }
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    struct hy__io *io = io_get(sh);
    if (!io)
        return HY_ENOMEM;
    if (!io->be->send_fd || !io->be->send_fd(io->state, rs))
        return HY_ENOTSUP;
    rs->next_ = io->rsend;
    rs->prev_ = &io->rsend;
    if (io->rsend)
        io->rsend->prev_ = &rs->next_;
    io->rsend = rs;
    hy__stat_add(&sh->st.io_sends, 1);
    return 0;
}

int hy_ring_submit(void)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    struct hy__io *io = sh->io;
    if (!io || !io->be->send_fd || !io->pk.cq_head)
        return HY_ENOTSUP;
    const struct hy__io_peek *pk = &io->pk;
    if (*pk->sq_tail != __atomic_load_n(pk->sq_head, __ATOMIC_ACQUIRE))
        io->be->flush(sh, io->state);
    return 0;
}

static void ring_send_unlink(struct hy_ring_send *rs)
{
    *rs->prev_ = rs->next_;
    if (rs->next_)
        rs->next_->prev_ = rs->prev_;
    rs->next_ = NULL;
    rs->prev_ = NULL;
}

HY__HOT void hy__io_dispatch_ring_send(struct hy_shard *sh, struct hy_ring_send *rs, int res)
{
    (void)sh;
    ring_send_unlink(rs);
    if (res == -EAGAIN || res == -EWOULDBLOCK || res == -EINTR)
        res = 0; /* the socket's buffer was full: nothing taken */
    else if (res == -EPIPE || res == -ECONNRESET)
        res = HY_ECLOSED;
    else if (res < 0)
        res = hy__errno_to_hy(-res);
    rs->done(rs, res); /* may free rs */
}

void hy__io_send_unlink(struct hy_shard *sh, struct hy__io_watch *w)
{
    if (w->tx_link)
        tx_unlink(sh, w);
}

void hy__io_send_settle(struct hy_shard *sh, struct hy__io_watch *w)
{
    struct hy__io *io = sh->io;
    if (w->tx_link)
        tx_unlink(sh, w);
    for (int i = 0; w->tx_busy && i < 1000; i++) {
        io->be->send_cancel(io->state, cookie_of(io, w->idx));
        hy__io_poll(sh);
    }
    if (w->tx_busy)
        hy__fatal("io: a send through the poller could not be cancelled");
    free(w->tx_buf);
    w->tx_buf = NULL;
    w->tx_cap = w->tx_off = w->tx_len = 0;
}

bool hy__io_active(struct hy_shard *sh)
{
    return sh->io && sh->io->pk.nwatch;
}

unsigned hy__io_poll(struct hy_shard *sh)
{
    struct hy__io *io = sh->io;
    /* no descriptor watched and nothing queued for the kernel: no syscall */
    if (!io->pk.nwatch && !io->be->pending(io->state))
        return 0;
    unsigned n = io->be->poll(sh, io->state);
    if (n)
        hy__stat_add(&sh->st.io_events, n);
    return n;
}

bool hy__io_pending(struct hy_shard *sh)
{
    return sh->io && sh->io->be->pending(sh->io->state);
}

int hy__io_sleep_fd(struct hy_shard *sh)
{
    return hy__io_active(sh) ? sh->io->be->sleep_fd(sh->io->state) : -1;
}

bool hy__io_pre_sleep(struct hy_shard *sh)
{
    return sh->io->be->pre_sleep(sh, sh->io->state);
}

bool hy__io_sleep(struct hy_shard *sh, uint64_t deadline)
{
    struct hy__io *io = sh->io;
    return io->be->sleep && io->be->sleep(sh, io->state, deadline);
}

void hy__io_fini_shard(struct hy_shard *sh)
{
    struct hy__io *io = sh->io;
    if (!io)
        return;
    io->be->fini(sh, io->state);
    /* ring sends whose end the kernel reported too late, or that were
     * never submitted: their records go back to their owners */
    while (io->rsend) {
        struct hy_ring_send *rs = io->rsend;
        ring_send_unlink(rs);
        rs->done(rs, HY_ESHUTDOWN);
    }
    while (io->ntx_free)
        free(io->tx_free[--io->ntx_free]);
    free(io->rxq);
    for (unsigned i = 0; i < SOCK_CLASSES; i++) {
        for (struct sock_chunk *c = io->sock[i].chunks, *n; c; c = n) {
            n = c->next;
#ifdef HY_ASAN
            __asan_unpoison_memory_region(c->mem, (size_t)io->sock[i].size * SOCK_CHUNK);
#endif
            free(c->mem);
            free(c);
        }
    }
    free(io->slots);
    free(io->gen);
    free(io->next_free);
    free(io);
    sh->io = NULL;
}

/* ---- parking ------------------------------------------------------------ */

/* The park of hy__sock_wait and hy__sock_wait_msg: msg, a constant at each
 * call, says whether a message in the mailbox ends it (HY_EINTR). */
static inline __attribute__((always_inline)) int sock_wait(struct hy__sock *s, uint32_t ev,
                                                           int64_t timeout_ns, bool msg)
{
    struct hy_proc *p = s->owner;
    struct hy_shard *sh = s->sh;
    /* input waited for without a receive armed: the poll must report it */
    if ((ev & HY_IO_IN) && !s->w.rx_armed)
        hy__io_watch_input(sh, &s->w);
    if (msg && p->mb_head)
        return HY_EINTR;
    if (timeout_ns == 0)
        return HY_ETIMEDOUT;
    s->w.waiter = p;
    s->w.wait_ev = ev;
    bool armed = timeout_ns > 0;
    p->timed_out = 0;
    if (armed)
        hy__wait_arm(sh, p, (uint64_t)timeout_ns);
    /* with msg, every append to the mailbox makes p ready (wait_msg 1: a
     * message is queued, never handed over) */
    while (s->w.waiter == p && !p->timed_out && !(msg && p->mb_head)) {
        p->state = HY_P_WAITING;
        p->wait_msg = msg;
        hy__sched_switch_out(p);
        p->wait_msg = 0;
        if (p->exit_pending && !p->defer_exit) {
            s->w.waiter = NULL;
            if (armed)
                hy__wait_disarm(sh, p);
            hy__proc_exit_current(p, p->exit_reason_pending);
        }
    }
    bool woken = s->w.waiter != p;
    s->w.waiter = NULL;
    if (armed)
        hy__wait_disarm(sh, p);
    p->timed_out = 0;
    if (woken)
        return 0;
    return msg && p->mb_head ? HY_EINTR : HY_ETIMEDOUT;
}

HY__HOT int hy__sock_wait(struct hy__sock *s, uint32_t ev, int64_t timeout_ns)
{
    return sock_wait(s, ev, timeout_ns, false);
}

HY__HOT int hy__sock_wait_msg(struct hy__sock *s, uint32_t ev, int64_t timeout_ns)
{
    return sock_wait(s, ev, timeout_ns, true);
}

HY__HOT void hy__io_wake(struct hy_shard *sh, struct hy_proc *p)
{
    if (p->state == HY_P_WAITING)
        hy__sched_make_ready(sh, p);
}

/* ---- ownership ---------------------------------------------------------- */

void hy__sock_attach(struct hy__sock *s, struct hy_proc *owner)
{
    struct hy__sock_cold *c = hy__sock_cold(s);
    s->owner = owner;
    c->oprev = &owner->socks;
    c->onext = owner->socks;
    if (c->onext)
        hy__sock_cold(c->onext)->oprev = &c->onext;
    owner->socks = s;
}

/* A zeroed record of size bytes (a multiple of 64) from io's slab; NULL
 * without memory. */
static void *sock_alloc(struct hy__io *io, uint32_t size)
{
    struct sock_class *k = NULL;
    for (unsigned i = 0; i < SOCK_CLASSES && !k; i++) {
        if (io->sock[i].size == size || !io->sock[i].size) {
            k = &io->sock[i];
            k->size = size;
        }
    }
    void *r;
    if (!k) { /* more sizes than classes: a record of its own */
        r = aligned_alloc(64, size);
        if (r)
            memset(r, 0, size);
        return r;
    }
    if (k->free) {
        r = k->free;
#ifdef HY_ASAN
        __asan_unpoison_memory_region(r, size);
#endif
        k->free = *(void **)r;
    } else {
        if (!k->left) {
            struct sock_chunk *c = malloc(sizeof(*c));
            void *mem = c ? aligned_alloc(64, (size_t)size * SOCK_CHUNK) : NULL;
            if (!mem) {
                free(c);
                return NULL;
            }
#ifdef HY_ASAN
            __asan_poison_memory_region(mem, (size_t)size * SOCK_CHUNK);
#endif
            c->mem = mem;
            c->next = k->chunks;
            k->chunks = c;
            k->next = mem;
            k->left = SOCK_CHUNK;
        }
        r = k->next;
        k->next += size;
        k->left--;
#ifdef HY_ASAN
        __asan_unpoison_memory_region(r, size);
#endif
    }
    memset(r, 0, size); /* nothing of the record's last socket survives */
    return r;
}

static uint32_t sock_size(size_t size)
{
    return (uint32_t)((size + 7) / 8 * 8 + sizeof(struct hy__sock_cold) + 63) / 64 * 64;
}

void hy__sock_free(struct hy__sock *s)
{
    struct hy__io *io = s->sh->io;
    uint32_t size = sock_size(s->cold_off);
    for (unsigned i = 0; i < SOCK_CLASSES; i++) {
        struct sock_class *k = &io->sock[i];
        if (k->size == size) {
            *(void **)s = k->free;
            k->free = s;
#ifdef HY_ASAN
            /* a use after close is reported (the link word stays readable) */
            __asan_poison_memory_region((char *)s + sizeof(void *), size - sizeof(void *));
#endif
            return;
        }
    }
    free(s);
}

int hy__sock_new(size_t size, struct hy_shard *sh, int fd, hy__io_ready_fn on_ready,
                 void (*destroy)(struct hy__sock *s), struct hy_proc *owner,
                 struct hy__sock **out)
{
    /* the cold part's offset is 16 bits: records are a few hundred bytes */
    struct hy__io *io = size <= 0x8000 ? io_get(sh) : NULL;
    struct hy__sock *s = io ? sock_alloc(io, sock_size(size)) : NULL;
    if (!s) {
        close(fd);
        return HY_ENOMEM;
    }
    s->cold_off = (uint16_t)((size + 7) / 8 * 8);
    s->w.fd = fd;
    s->w.on_ready = on_ready;
    s->sh = sh;
    hy__sock_cold(s)->destroy = destroy;
    int rc = hy__io_add(sh, &s->w);
    if (rc) {
        close(fd);
        hy__sock_free(s);
        return rc;
    }
    hy__sock_count_add(sh, 1);
    hy__sock_attach(s, owner);
    *out = s;
    return 0;
}

HY__HOT int hy__sock_owner_check(struct hy__sock *s, struct hy_proc **pp)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!s)
        return HY_EBADF;
    if (s->owner != p)
        return HY_EPERM;
    *pp = p;
    return 0;
}

int hy__sock_close(struct hy__sock *s)
{
    if (!s)
        return 0;
    struct hy_proc *p;
    int rc = hy__sock_owner_check(s, &p);
    if (rc)
        return rc;
    hy__sock_cold(s)->destroy(s);
    return 0;
}

int hy__sock_name(struct hy__sock *s, struct hy_addr *out, bool peer)
{
    struct hy_proc *p;
    int rc = hy__sock_owner_check(s, &p);
    if (rc)
        return rc;
    if (!out)
        return HY_EINVAL;
    memset(out, 0, sizeof(*out));
    out->len = sizeof(out->ss);
    int r = peer ? getpeername(s->w.fd, (struct sockaddr *)&out->ss, &out->len)
                 : getsockname(s->w.fd, (struct sockaddr *)&out->ss, &out->len);
    return r ? hy__errno_to_hy(errno) : 0;
}

void hy__sock_detach(struct hy__sock *s)
{
    struct hy__sock_cold *c = hy__sock_cold(s);
    if (!c->oprev)
        return;
    *c->oprev = c->onext;
    if (c->onext)
        hy__sock_cold(c->onext)->oprev = c->oprev;
    c->onext = NULL;
    c->oprev = NULL;
    s->owner = NULL;
}

void hy__sock_proc_exit(struct hy_shard *sh, struct hy_proc *p)
{
    (void)sh;
    while (p->socks) {
        struct hy__sock *s = p->socks;
        s->w.waiter = NULL;
        hy__sock_cold(s)->destroy(s); /* detaches s */
    }
}

void hy__sock_count_add(struct hy_shard *sh, int d)
{
    hy__stat_add(&sh->st.io_sockets, (uint64_t)(int64_t)d);
}

int hy__errno_to_hy(int e)
{
    switch (e) {
    case EAGAIN:
        return HY_EAGAIN;
    case ECONNREFUSED:
        return HY_ECONNREFUSED;
    case ECONNRESET:
        return HY_ECONNRESET;
    case EPIPE:
        return HY_ECLOSED;
    case ETIMEDOUT:
        return HY_ETIMEDOUT;
    case EADDRINUSE:
        return HY_EADDRINUSE;
    case EADDRNOTAVAIL:
        return HY_EADDRNOTAVAIL;
    case ENETUNREACH:
        return HY_ENETUNREACH;
    case EHOSTUNREACH:
        return HY_EHOSTUNREACH;
    case ENOTCONN:
        return HY_ENOTCONN;
    case EMFILE:
    case ENFILE:
        return HY_EMFILE;
    case ENOMEM:
    case ENOBUFS:
        return HY_ENOMEM;
    case EACCES:
    case EPERM:
        return HY_EPERM;
    case EMSGSIZE:
        return HY_EMSGSIZE;
    case EBADF:
        return HY_EBADF;
    case EINTR:
        return HY_EINTR;
    default:
        return HY_EIO;
    }
}

int hy__io_cookie_fd(struct hy_shard *sh, uint64_t cookie, bool *input);
int hy__io_cookie_fd(struct hy_shard *sh, uint64_t cookie, bool *input)
{
    struct hy__io *io = sh->io;
    uint32_t idx = (uint32_t)cookie;
    if (!io || idx == 0 || idx >= io->cap || io->gen[idx] != (uint32_t)(cookie >> 32) ||
        !io->slots[idx])
        return -1;
    *input = !io->slots[idx]->poll_noin;
    return io->slots[idx]->fd;
}
