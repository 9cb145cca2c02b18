/* The per-shard socket poller: one internal interface (io.c) over two
 * backends in files of their own (io_uring.c, io_epoll.c), as Redis keeps
 * ae_epoll.c beside ae.c. Not installed.
 *
 * The poller is a readiness source. A socket registers its descriptor once
 * (edge-triggered interest in input, output and hang-up; io_uring leaves
 * input out while the socket is read through its receives, poll_noin); the backend
 * reports readiness, which is latched in the watch's `ready` bits until the
 * socket code sees EAGAIN and clears them. The read and write system calls
 * themselves are made by the socket code: by the owning process while it
 * runs (passive calls), or by the scheduler into buffers the socket owns
 * (active mode). With io_uring, a raw passive socket whose owner parks for
 * input has one receive made by the poller into a buffer of the shard's
 * pool (struct hy__io_watch's rx_* fields), copied out when the owner runs,
 * and a send of up to 16 KiB is copied into the socket's send queue (tx_*
 * fields) and made by the poller with the turn's submission.
 * So the kernel never writes into a suspended process's memory, whatever
 * its stack mode.
 *
 * Watches live in a per-shard table; the backend's cookie for an event is
 * (generation << 32 | index), so an event for a watch removed meanwhile
 * (a completion still in the ring, an epoll batch being walked) is
 * recognised and dropped, never dereferenced.
 *
 * Everything here runs on the shard's own thread.
 */
#ifndef HY_CORE_IO_INTERNAL_H
#define HY_CORE_IO_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <sys/uio.h>

#include "addr.h"
#include "runtime.h"

struct hy_shard;
struct hy_proc;
struct hy_ring_send; /* tcp.h */

enum {
    HY_IO_IN = 1u,   /* readable, or a connection to accept */
    HY_IO_OUT = 2u,  /* writable, or a connect finished */
    HY_IO_HUP = 4u,  /* peer shut its side, hung up or error: latched (a short
                        read does not clear IN), wakes readers and writers */
    HY_IO_TX = 8u,   /* a queued send completed (never latched in ready) */
};

/* The head of a shard's poller (struct hy__io in io.c): what the scheduler
 * reads each turn to decide whether hy__io_poll has anything to do, without
 * a call or a system call. io_uring: the rings' heads, tails and flags are
 * in memory shared with the kernel, so the peek is exact; it is made every
 * turn that found work and every HY__IO_BUSY_EVERY-th idle turn (a spin
 * turn costs ~300 instructions, the peek ~15: the idle shard of a
 * cross-shard ping-pong would pay it some 80 times per message). epoll:
 * only a system call could tell, so every HY__IO_BUSY_EVERY-th turn. Before
 * a shard sleeps, its pre-sleep check and then its ppoll look at the poller
 * whatever the count. */
struct hy__io_peek {
    const unsigned *cq_head, *cq_tail; /* io_uring completion ring; NULL: epoll */
    const unsigned *sq_head;           /* io_uring: the kernel's submission head */
    const unsigned *sq_tail;           /* io_uring: liburing's tail of queued entries */
    const unsigned *kflags;            /* io_uring: the ring's flags */
    unsigned kmask;                    /* flags that ask for an io_uring_enter */
    uint32_t nwatch;                   /* watches registered */
    uint32_t skip;                     /* turns left to skip */
    uint32_t lazy;                     /* io_uring: queued entries that may wait
                                          for the sleep's io_uring_enter (the
                                          receives armed since the last submit) */
    uint32_t lazy_turns;               /* io_uring: busy turns seen with lazy != 0 */
    uint32_t rx_size;                  /* the receive pool's buffers: rx_size bytes */
    const uint8_t *rx_base;            /* each, buffer i at rx_base + i * rx_size */
};

#define HY__IO_BUSY_EVERY 4u
/* Receives queued alone wait for the sleep's io_uring_enter at most this
 * many busy turns: a shard kept busy (a process that computes) submits
 * them then. A socket whose poll leaves input out (poll_noin) has nothing
 * else to tell that its bytes came. */
#define HY__IO_LAZY_TURNS 4u

/* True when this turn should call hy__io_poll; work = what the turn found
 * to do so far. Context: the shard's thread. */
static inline bool hy__io_due(void *io, unsigned work)
{
    struct hy__io_peek *pk = io;
    if (pk->cq_head) {
        if (!work && pk->skip) { /* spinning: every HY__IO_BUSY_EVERY-th turn */
            pk->skip--;
            return false;
        }
        pk->skip = HY__IO_BUSY_EVERY - 1;
        /* queued receives alone wait for the sleep, which submits them
         * in its own system call, or for a completion or another entry
         * (this turn submits them), or HY__IO_LAZY_TURNS busy turns */
        if (!pk->lazy) {
            pk->lazy_turns = 0;
        } else if (++pk->lazy_turns >= HY__IO_LAZY_TURNS) {
            pk->lazy_turns = 0;
            pk->lazy = 0;
        }
        return *pk->sq_tail - __atomic_load_n(pk->sq_head, __ATOMIC_ACQUIRE) > pk->lazy ||
               __atomic_load_n(pk->cq_tail, __ATOMIC_ACQUIRE) != *pk->cq_head ||
               (__atomic_load_n(pk->kflags, __ATOMIC_RELAXED) & pk->kmask);
    }
    if (!pk->nwatch)
        return false;
    if (pk->skip) {
        pk->skip--;
        return false;
    }
    pk->skip = HY__IO_BUSY_EVERY - 1;
    return true;
}

struct hy__io_watch;
typedef void (*hy__io_ready_fn)(struct hy_shard *sh, struct hy__io_watch *w, uint32_t ev);

struct hy__io_watch {
    /* What a request touches (the poller's dispatch of a completion, the
     * wake-up, the owner's recv and send, the park) is here: with the
     * socket record aligned to a cache line (hy__sock_new), the watch is
     * its first line, and a completion reads no other line of the socket. */
    int fd;
    uint32_t idx;          /* slot in the shard's table, 0 = not registered */
    /* Receive through the poller (io_uring): a one-shot receive into a
     * buffer of the shard's pool, armed when the owner parks for input.
     * While it is armed, input readiness from the poll is not latched (the
     * receive brings the bytes); its bytes are held here, [rx_off, rx_len)
     * of pool buffer rx_bid (hy__io_rx_data), until the owner takes them
     * (hy__io_recv_release gives the buffer back). At most one buffer per
     * socket, none while idle, with one-shot receives. A multishot receive
     * (hy_config.io_rx_multishot) stays armed across requests, and what it
     * brings while a buffer is held waits in a queue of buffers behind it,
     * [rx_qhead, rx_qtail] (buffer ids + 1, 0: empty; chained through
     * struct hy__io's rxq), taken in order as each is given back; a third
     * buffer held cancels the receive (HY__IO_RX_CANCEL) until the owner
     * has taken them all (the kernel's window then holds the peer back). */
    uint16_t rx_off, rx_len; /* at most the pool's buffer size */
    uint16_t rx_qhead, rx_qtail;
    uint16_t rx_bid;
    uint8_t rx_armed; /* a receive in the kernel: 1, | HY__IO_RX_CANCEL */
    uint8_t tx_busy;       /* see tx_* below */
    uint8_t ready;         /* latched HY_IO_* bits */
    uint8_t wait_ev;       /* HY_IO_* the waiter needs */
    uint8_t tx_link;       /* HY__IO_TX_* below: the send request's link */
    /* The backend's readiness watch leaves input out (io_uring): set when a
     * receive through the poller is first armed, so the bytes a receive
     * waits for do not also complete the socket's poll; cleared (input
     * watched again, readiness re-read) when input is waited for with no
     * receive armed (hy__io_watch_input). */
    uint8_t poll_noin;
    hy__io_ready_fn on_ready;
    struct hy_proc *waiter; /* the process parked on it (its owner, hy__sock_wait) */
    /* Sends through the poller (io_uring): bytes the owner sent, copied
     * into tx_buf (the socket's, tx_cap bytes), [tx_off, tx_len) not yet
     * taken by the kernel; while tx_busy one send request for
     * [tx_off, tx_len) at its submission is queued or in the kernel
     * (the buffer may not move or be freed), and bytes appended meanwhile
     * go with the next request, made when it completes. tx_err: the
     * HY_* error a send request ended with (sticky; the rest dropped). */
    int tx_err;
    uint32_t tx_off, tx_len, tx_cap;
    uint8_t *tx_buf;
};
_Static_assert(sizeof(struct hy__io_watch) == 64, "a socket's watch is one cache line");

/* tx_link: the send request in flight (tx_busy) is
 * HY__IO_TX_HELD: queued, not submitted, and the last entry: the owner's
 *   receive armed next is linked after it (hy__io_recv_arm);
 * HY__IO_TX_LINKED: linked ahead of the socket's receive, without a
 *   completion when it takes every byte: the receive's completion (anything
 *   but -ECANCELED) says it did;
 * HY__IO_TX_CANCEL: a linked send being cancelled (its -ECANCELED means
 *   nothing taken, not an error; the rest goes in a new request). */
/* rx_armed: the multishot receive's cancel is queued (its end comes) */
#define HY__IO_RX_CANCEL 2u

#define HY__IO_TX_HELD 1
#define HY__IO_TX_LINKED 2
#define HY__IO_TX_CANCEL 3

/* A backend: what io.c asks of io_uring.c and io_epoll.c. */
struct hy__io_backend {
    const char *name;
    enum hy_io_backend kind;
    /* Creates the backend's state on the calling shard. */
    int (*init)(struct hy_shard *sh, void **state);
    void (*fini)(struct hy_shard *sh, void *state);
    /* Starts watching fd; cookie comes back with each event. */
    int (*add)(void *state, int fd, uint64_t cookie);
    /* Stops watching fd (the descriptor is still open). */
    void (*del)(void *state, int fd, uint64_t cookie);
    /* Submits what is queued and reports readiness through
     * hy__io_dispatch(sh, cookie, events), without waiting. */
    unsigned (*poll)(struct hy_shard *sh, void *state);
    /* True when events are waiting to be reaped (no system call). */
    bool (*pending)(void *state);
    /* Descriptor the idle shard sleeps on (POLLIN = events to reap). */
    int (*sleep_fd)(void *state);
    /* Prepares to sleep: consumes stale wake-ups; false = do not sleep. */
    bool (*pre_sleep)(struct hy_shard *sh, void *state);
    /* Sleeps until readiness, a wake-up of the shard (its wake_fd) or the
     * absolute deadline (hy_now_ns; UINT64_MAX: none), submitting what is
     * queued in the same system call. false: the backend cannot sleep for
     * this shard now (the caller sleeps in ppoll on sleep_fd). NULL: never. */
    bool (*sleep)(struct hy_shard *sh, void *state, uint64_t deadline);
    /* Queues a one-shot receive on fd into a pool buffer, its completion
     * reported through hy__io_dispatch_recv(cookie). false: not available
     * (NULL: never). */
    bool (*recv_arm)(void *state, int fd, uint64_t cookie);
    /* As recv_arm, and when the last entry queued is the send of cookie
     * (the last send queued, not submitted), links the two: the send
     * without a completion when it takes every byte, the receive cancelled
     * when it does not. 1: armed and linked, 0: armed alone, -1: not
     * armed. NULL: never links. */
    int (*recv_arm_linked)(void *state, int fd, uint64_t cookie);
    /* Ends the link of cookie's send: 0 when it was still queued here (an
     * ordinary send now, its completion will come); 1 when the kernel no
     * longer has it (it took every byte, or it failed and its completion
     * is in the ring or comes with the next poll); 2 when it was cancelled
     * in the kernel (its completion, with the bytes taken, comes). */
    int (*send_unlink)(void *state, uint64_t cookie);
    /* The held send of cookie (the last entry queued, not submitted) now
     * sends len bytes from the same address; false: it is not held (an
     * entry came after it, or it was submitted). */
    bool (*send_grow)(void *state, uint64_t cookie, uint32_t len);
    /* Cancels the receive of cookie; sync: returns once its completion is
     * in the ring. */
    void (*recv_cancel)(void *state, uint64_t cookie, bool sync);
    /* Multishot receives (hy_config.io_rx_multishot, where the kernel has
     * them): the number of buffers in the pool, which a watch's queue of
     * buffers is chained through; 0: one-shot receives. NULL: never. */
    unsigned (*recv_multishot)(void *state);
    /* Address of pool buffer bid. */
    const uint8_t *(*recv_buf)(void *state, uint16_t bid);
    /* Ends what a receive reserved: its buffer bid goes back to the pool
     * (bid < 0: it brought none). Once per receive armed. */
    void (*recv_put)(void *state, int bid);
    /* Queues a send of len bytes at buf (kept in place until its
     * completion) on fd, reported through hy__io_dispatch_send(cookie).
     * false: not available (NULL: never). */
    bool (*send)(void *state, int fd, const void *buf, uint32_t len, uint64_t cookie);
    /* Queues a send of len bytes at buf on fd that never waits for room
     * (MSG_DONTWAIT: what the socket takes at the submission), its end
     * reported through hy__io_dispatch_ring_send(rs) (hy_ring_send). false:
     * not available (NULL: never). */
    bool (*send_fd)(void *state, struct hy_ring_send *rs);
    /* Hands what is queued to the kernel now (one system call). */
    void (*flush)(struct hy_shard *sh, void *state);
    /* Hands what is queued to the kernel now (sends that fit the socket's
     * buffer complete in the call), then cancels the send of cookie if it
     * is still in the kernel: returns once its completion is in the ring. */
    void (*send_cancel)(void *state, uint64_t cookie);
    /* Changes the readiness watch of fd (cookie) to watch input (in) or
     * not (output and hang-up only), queued with the turn's submission;
     * the kernel re-reads the socket's readiness, so input already queued
     * is reported. The watch's current choice is w->poll_noin, read back
     * (hy__io_cookie_fd) when the change must be retried or the poll
     * re-armed; each update queued (retries too) counts in
     * hy_stats.io_poll_updates. NULL: input always watched. */
    void (*poll_input)(struct hy_shard *sh, void *state, int fd, uint64_t cookie, bool in);
    /* Fills the ring pointers of pk (NULL: the backend has no ring to peek). */
    void (*peek_init)(void *state, struct hy__io_peek *pk);
};

extern const struct hy__io_backend hy__io_uring_backend;
extern const struct hy__io_backend hy__io_epoll_backend;

/* Chooses the backend for cfg->io_backend (probing io_uring once) before
 * the shards start. Errors: HY_EINVAL (unknown value), HY_ENOTSUP (io_uring
 * demanded and refused). */
int hy__io_select(enum hy_io_backend want, enum hy_io_backend *chosen);

/* Registers w (borrowed until hy__io_del) on the calling shard, creating
 * the shard's poller on first use. w->ready starts as IN|OUT (try first). */
int hy__io_add(struct hy_shard *sh, struct hy__io_watch *w);
/* Unregisters w: no callback for it after this returns. */
void hy__io_del(struct hy_shard *sh, struct hy__io_watch *w);

/* Scheduler side (sched.c). */
bool hy__io_active(struct hy_shard *sh);       /* a watch is registered */
unsigned hy__io_poll(struct hy_shard *sh);     /* in a turn where hy__io_due */
bool hy__io_pending(struct hy_shard *sh);      /* events to reap: do not sleep */
int hy__io_sleep_fd(struct hy_shard *sh);      /* -1 when inactive */
bool hy__io_pre_sleep(struct hy_shard *sh);
/* After hy__io_pre_sleep said yes: sleeps in the backend itself (io_uring:
 * one io_uring_enter that submits and waits, with the shard's wake_fd
 * watched by the ring) until readiness, a wake-up or deadline; false = not
 * done (epoll, or hooks with descriptors): sleep in ppoll on sleep_fd. */
bool hy__io_sleep(struct hy_shard *sh, uint64_t deadline);
void hy__io_fini_shard(struct hy_shard *sh);

/* Backend callback: routes an event to its watch (stale cookies dropped). */
void hy__io_dispatch(struct hy_shard *sh, uint64_t cookie, uint32_t ev);
/* Backend callback: the receive armed for cookie completed with res (bytes,
 * 0 at the end of the stream, -errno) into pool buffer bid (-1: none). The
 * bytes are held by the watch (a stale cookie's buffer goes back to the
 * pool); an end, an error or no buffer latches input readiness instead, so
 * the owner's own recv sees what happened. Wakes through on_ready(IN).
 * fl: HY__IO_RX_MS for a multishot receive's completion, with
 * HY__IO_RX_MORE when the receive stays armed (the backend then counts
 * the buffer as one more reserved, which recv_put ends as for any). */
void hy__io_dispatch_recv(struct hy_shard *sh, uint64_t cookie, int res, int bid, uint32_t bufsz,
                          unsigned fl);
#define HY__IO_RX_MS 1u
#define HY__IO_RX_MORE 2u

/* ---- receive through the poller ----------------------------------------- */

/* Arms a receive for w (registered, none armed, nothing held) when the
 * backend offers it; false: wait for readiness and recv as usual. */
bool hy__io_recv_arm(struct hy_shard *sh, struct hy__io_watch *w);
/* The bytes w holds from a receive through the poller: [rx_off, rx_len) of
 * this (valid while w->rx_len != 0); io is the shard's poller (sh->io).
 * Context: the shard's thread. */
static inline const uint8_t *hy__io_rx_data(const void *io, const struct hy__io_watch *w)
{
    const struct hy__io_peek *pk = io;
    return pk->rx_base + (size_t)w->rx_bid * pk->rx_size;
}
/* Has the backend watch w's input again if it left it out (w->poll_noin):
 * for a wait for input with no receive armed (an empty pool, framing,
 * active mode; a try without waiting arms a receive instead, tcp.c's
 * recv_some_). Readiness already there is reported by a later poll.
 * Context: the shard's thread. */
void hy__io_watch_input_slow(struct hy_shard *sh, struct hy__io_watch *w);
static inline void hy__io_watch_input(struct hy_shard *sh, struct hy__io_watch *w)
{
    if (w->poll_noin)
        hy__io_watch_input_slow(sh, w);
}
/* Gives w's held buffer back to the pool (its bytes are consumed); the
 * first buffer queued behind it (multishot receives), if any, is held next. */
void hy__io_recv_release(struct hy_shard *sh, struct hy__io_watch *w);
/* Ends w's armed receive and waits until its completion is dispatched:
 * afterwards nothing is armed (bytes it brought are held). For a socket
 * about to read by other means (framing, active mode, a move). */
void hy__io_recv_settle(struct hy_shard *sh, struct hy__io_watch *w);

/* ---- for tests ----------------------------------------------------------- */

/* Sets how many receive buffers (RX_SIZE bytes each) the io_uring pollers
 * created from now on give their shard's pool: n 0 (the default, 1,024) to
 * 32,768. Lets a test run the pool dry with a few sockets; set it before
 * hy_start (a runtime already started keeps its pools). Errors: HY_EINVAL
 * (n too large; logged, naming rx_pool). Context: any thread. */
int hy__io_set_rx_pool(unsigned n);
/* Over every io_uring poller since the process started: *retries, poll
 * updates queued again because they found the poll completing (-EALREADY);
 * *inflight, updates queued whose completion was not yet reaped (back where
 * it was once the shards have reaped everything: none lost, none retried
 * for ever; a runtime stopped with updates in flight leaves them counted);
 * *stray_input, readiness events that reported input for a watch whose
 * poll should leave it out (poll_noin): a few while an update is on its
 * way, one a request if the kernel's poll kept watching input.
 * Context: any thread. */
void hy__io_uring_update_counts(uint64_t *retries, int64_t *inflight, uint64_t *stray_input);
/* Over every io_uring poller since the process started: *arms, multishot
 * receives armed (hy_config.io_rx_multishot); *ends, those the kernel
 * ended (a completion without IORING_CQE_F_MORE: the end of the stream, an
 * error, the pool empty, or cancelled because the owner held three
 * buffers). Context: any thread. */
void hy__io_uring_multishot_counts(uint64_t *arms, uint64_t *ends);
extern _Atomic uint64_t hy__io_stray_input;

/* ---- sends through the poller ----------------------------------------- */

/* Largest number of bytes a socket keeps queued for the kernel. */
#define HY__IO_TX_CAP (64u * 1024u)

/* Copies the total bytes of iov into w's send queue and queues a send
 * request for them unless one is in flight (the next one takes them). The
 * request goes to the kernel with the turn's submission, at once when no
 * other process of the shard is ready to run.
 * 1: queued; 0: not through the poller (epoll, the backend refused, or
 * total does not fit the queue now: the caller waits for HY_IO_TX while
 * w->tx_busy, or sends itself once nothing is queued); HY_ENOMEM. */
int hy__io_send(struct hy_shard *sh, struct hy__io_watch *w, const struct iovec *iov, int iovcnt,
                size_t total);
/* Backend callback: the send request of cookie ended with res (bytes
 * taken, -errno). Queues the next request for what is left or was
 * appended, or records the error; wakes through on_ready(HY_IO_TX). */
void hy__io_dispatch_send(struct hy_shard *sh, uint64_t cookie, int res);
/* Backend callback: the send of hy_ring_send(rs) ended with res (bytes
 * taken, -errno): rs->done runs. */
void hy__io_dispatch_ring_send(struct hy_shard *sh, struct hy_ring_send *rs, int res);
/* Makes w's send request an ordinary one (tx_link 0) if it was held for
 * or linked to the socket's receive: its end is then dispatched, or its
 * completion comes (HY_IO_TX). Before waiting for HY_IO_TX or for the
 * queue to empty. Context: the shard's thread; may poll. */
void hy__io_send_unlink(struct hy_shard *sh, struct hy__io_watch *w);
/* Ends w's send queue before its socket closes or moves: hands what is
 * queued to the kernel, cancels what it could not take at once (the peer
 * is not reading; those bytes are dropped, tx_err HY_ECLOSED), and frees
 * the buffer. Afterwards nothing is queued. */
void hy__io_send_settle(struct hy_shard *sh, struct hy__io_watch *w);

/* ---- parking a process on a socket -------------------------------------- */

/* Parks the current process p until hy__io_wake(p) or timeout_ns (HY_INFINITY,
 * or > 0). Returns 0 when woken, HY_ETIMEDOUT. An exit signal that arrives
 * meanwhile ends the process (its sockets are closed by hy__sock_proc_exit). */
int hy__io_park(struct hy_proc *p, int64_t timeout_ns);
void hy__io_wake(struct hy_shard *sh, struct hy_proc *p);

/* ---- ownership: sockets of a process ------------------------------------ */

/* Common head of struct hy_tcp and struct hy_udp, 64-byte aligned (the
 * records come from a per-shard slab, hy__sock_new): the watch is the
 * first cache line (a completion and its wake-up read only that line), and
 * what the owner's calls read of the rest (owner, shard) starts the second,
 * which the protocol's own hot fields fill. The owner's list links and the destructor, read
 * only when a socket is made, changes owner or closes, are kept after the
 * protocol's record (hy__sock_cold, at cold_off), not in those lines. */
struct hy__sock {
    struct hy__io_watch w;           /* w.waiter, w.wait_ev: who is parked on it, for what */
    struct hy_proc *owner;
    struct hy_shard *sh;
    uint16_t cold_off;               /* offset of its struct hy__sock_cold */
};

struct hy__sock_cold {
    struct hy__sock *onext, **oprev; /* owner's list */
    void (*destroy)(struct hy__sock *s); /* closes and frees */
};

static inline struct hy__sock_cold *hy__sock_cold(struct hy__sock *s)
{
    return (struct hy__sock_cold *)(void *)((char *)s + s->cold_off);
}

void hy__sock_attach(struct hy__sock *s, struct hy_proc *owner);
/* Allocates a zeroed socket of size bytes whose head (offset 0) is a
 * struct hy__sock, 64-byte aligned, from sh's slab of socket records
 * (records of a size are reused last freed first, so the few most recently
 * closed are taken again while in the cache), wraps fd in it on sh (registers its watch with the
 * shard's poller, counts it) and makes owner its owner. fd is transferred:
 * closed on error. On success *out is the new socket, owned through owner's
 * list and freed by destroy. Errors: HY_ENOMEM, those of hy__io_add.
 * Context: sh's shard. */
int hy__sock_new(size_t size, struct hy_shard *sh, int fd, hy__io_ready_fn on_ready,
                 void (*destroy)(struct hy__sock *s), struct hy_proc *owner,
                 struct hy__sock **out);
/* The calling process into *pp when it owns s. Errors: HY_ENOTPROC (not
 * called from a process), HY_EBADF (s NULL), HY_EPERM (another owner). */
int hy__sock_owner_check(struct hy__sock *s, struct hy_proc **pp);
/* Closes s (NULL: nothing to do) for the calling process, its owner:
 * s->destroy(s). Errors: those of hy__sock_owner_check (s stays open). */
int hy__sock_close(struct hy__sock *s);
/* Local (peer false) or peer address of s, owned by the calling process,
 * into *out. Errors: those of hy__sock_owner_check, HY_EINVAL (out NULL),
 * the system call's mapped by hy__errno_to_hy. */
int hy__sock_name(struct hy__sock *s, struct hy_addr *out, bool peer);
void hy__sock_detach(struct hy__sock *s);
/* Gives the record of a socket made by hy__sock_new (detached, its watch
 * removed) back to its shard's slab. Context: s->sh's shard. */
void hy__sock_free(struct hy__sock *s);
/* Closes every socket p owns (p is exiting; called by proc.c). */
void hy__sock_proc_exit(struct hy_shard *sh, struct hy_proc *p);
/* Waits on s for ev (0 woken, HY_ETIMEDOUT): the common park for sockets. */
int hy__sock_wait(struct hy__sock *s, uint32_t ev, int64_t timeout_ns);
/* As hy__sock_wait, and a message in the owner's mailbox (there at the call
 * or arriving during the wait, left there) ends it with HY_EINTR; readiness
 * that came with it wins (0). */
int hy__sock_wait_msg(struct hy__sock *s, uint32_t ev, int64_t timeout_ns);
/* Counts of sockets open on the shard. */
void hy__sock_count_add(struct hy_shard *sh, int d);

/* errno -> HY_E*. */
int hy__errno_to_hy(int e);

#endif /* HY_CORE_IO_INTERNAL_H */
