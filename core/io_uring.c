/* io_uring backend of the socket poller. Each registered descriptor has a
 * multishot poll request for input, output and hang-up (input left out,
 * by one poll update, while the socket is read through the ring's
 * receives: the bytes a receive waits for would also complete the poll,
 * a wake-up, a task work and a completion a request; ur_poll_input);
 * its completions are
 * reaped straight from the shared completion ring (no system call), and the
 * submissions of a turn (new polls, re-arms, removals) go to the kernel in
 * one io_uring_enter at the end of the turn.
 *
 * The idle shard sleeps in the ring itself: one io_uring_enter submits what
 * is queued and waits for a completion (or the timer deadline), as a plain
 * io_uring server's loop does. The shard's wake_fd (written by other shards
 * to wake it) has a multishot poll in the ring, so a wake-up is a
 * completion too. Sleeping in ppoll on an eventfd instead cost two more
 * system calls per sleep (the eventfd's read before it, and the ppoll
 * restarted after the task work that posts the completion), and on this
 * machine every system call empties the TLB. A shard whose hooks watch
 * descriptors still sleeps in ppoll: an eventfd registered with the ring is
 * signalled for every completion, so a completion wakes that sleep (the
 * signal is switched off, IORING_CQ_EVENTFD_DISABLED, while the shard sleeps
 * in the ring: nobody reads it then). No ring
 * flag that would need an io_uring_enter to post completions
 * (DEFER_TASKRUN) is used.
 *
 * The ring is set up with COOP_TASKRUN and TASKRUN_FLAG where the kernel
 * has them (5.19): a socket's readiness then reaches the ring as task work
 * run at the shard thread's next system call (it makes a recv or send for
 * nearly every event) instead of an inter-processor interrupt per event,
 * which cost more than the system calls themselves under the tcp_echo
 * load. When the shard makes no system call, the kernel raises
 * IORING_SQ_TASKRUN in the ring's flags; the poll (each turn, a read of
 * shared memory) sees it and enters the kernel once to have the work run,
 * and a sleeping shard is woken by the task work itself.
 *
 * A send queued last may have the same socket's receive linked behind it
 * (recv_arm_linked: IOSQE_IO_LINK, the send with IOSQE_CQE_SKIP_SUCCESS and
 * MSG_WAITALL): a reply and the wait for the next request go to the kernel
 * in the sleep's one io_uring_enter, and only the receive completes. A
 * send that fails or is cut short completes, and the kernel cancels the
 * receive behind it without a completion (io.c's tx_progress).
 *
 * With hy_config.io_rx_multishot (off by default) a
 * socket's receive is multishot (IORING_RECV_MULTISHOT with the provided
 * buffers): armed once, it stays armed across requests, each of its
 * completions (IORING_CQE_F_MORE set) carrying one buffer, and the kernel
 * waits for the socket's next bytes by itself. A one-shot receive armed
 * per request costs the kernel, for nearly every request, a try that finds
 * no bytes, an internal poll set up (io_arm_apoll: ~1.0 io_uring_poll_arm
 * per kvcache op) and torn down, and a request submitted (~1.25 per op);
 * multishot makes those ~0.01 and ~0.3 (docs/BENCHMARKS.md, session 32). A
 * receive that brings bytes while the owner still holds a buffer queues
 * them behind it (io.c); with three held the receive is cancelled, so a
 * peer that sends faster than its owner reads is held back by the TCP
 * window, not by our memory, and the owner's next wait arms it again. The
 * kernel ends it at the end of the stream, on an error, or with the pool
 * empty (-ENOBUFS): the owner's recv then reads on as with a one-shot
 * receive that failed. Multishot receives are never linked behind a send.
 * The kernel is taken to have them when it has receive bundles (6.10;
 * they came in 6.0, but the ring's features do not say so); one refused
 * (-EINVAL) switches the ring back to one-shot receives.
 *
 * A send on a descriptor the poller does not watch (hy_ring_send, core/tcp.h)
 * is one IORING_OP_SEND with MSG_DONTWAIT, its record's address in the
 * completion's user data (RSEND_BITS): it completes at its submission with
 * what the socket took, and the poll hands its end to io.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors.h"
#include "io_internal.h"
#include "log.h"
#include "shard_internal.h"
#include "tcp.h"

#define SQ_ENTRIES 256
#define CQ_ENTRIES 8192
#define POLL_MASK (POLLIN | POLLOUT | POLLRDHUP)
/* A socket read through the ring's receives (its watch's poll_noin): the
 * bytes a receive waits for do not also complete the poll */
#define POLL_MASK_NOIN (POLLOUT | POLLRDHUP)

/* The shard's pool of receive buffers (a provided-buffer ring, group 0):
 * RX_N buffers of RX_SIZE bytes. A receive takes one only when bytes
 * arrive, and its socket holds it until the owner copies them out, so
 * idle sockets hold none; with the pool empty a receive fails (ENOBUFS)
 * and the owner reads with recv as it would without the pool. 1,024 of
 * 2 KiB (2 MiB of address space a shard, touched as used): at 1,000
 * connections 64 of 4 KiB left ~0.95 of the requests to a recvfrom of
 * their own, and with sends through the ring too a turn serving N
 * connections now makes one io_uring_enter (docs/BENCHMARKS.md, session 24).
 * Tests make pools of other sizes (hy__io_set_rx_pool) to run one dry. */
#define RX_N 1024u
#define RX_SIZE 2048u
#define RX_BGID 0
/* The most buffers a pool may have (hy__io_set_rx_pool): a buffer's id is
 * 16 bits, and the kernel's provided-buffer ring holds at most 32,768. */
#define RX_N_MAX 32768u

/* Buffers of the pools made from now on (0: RX_N); hy__io_set_rx_pool. */
static _Atomic unsigned rx_pool_n;

/* Poll updates that found the poll completing (-EALREADY) and were queued
 * again, and updates queued whose completion has not been reaped, over
 * every shard (hy__io_uring_update_counts: tests). */
static _Atomic uint64_t upd_retries;
static _Atomic int64_t upd_inflight;

/* Multishot receives armed, and ended by the kernel (a completion without
 * IORING_CQE_F_MORE), over every shard (hy__io_uring_multishot_counts:
 * tests). */
static _Atomic uint64_t ms_arms, ms_ends;

struct ur {
    struct io_uring ring;
    int efd;
    int wake_fd; /* the shard's, polled by the ring; -1: the start-up probe */
    struct io_uring_buf_ring *br; /* NULL: no pool (receive by recv only) */
    uint8_t *rx_mem;
    uint32_t rx_n;        /* buffers in the pool (RX_N unless set for tests) */
    uint32_t rx_mask;     /* the provided-buffer ring's index mask */
    uint32_t rx_reserved; /* receives armed + buffers held: at most rx_n, so
                             an armed receive always finds a buffer */
    uint32_t *lazy; /* the peek's count of receives queued since the last submit */
    uint32_t lazy0; /* its place before peek_init */
    /* A send and its receive in one submission (send_link): the kernel
     * skips completions of successful requests (IORING_FEAT_CQE_SKIP). */
    bool can_link;
    /* Until the next submit: held, the last entry queued when it is a send
     * that the same socket's receive may still be linked after; pair, a
     * send linked ahead of its receive, both queued. */
    struct io_uring_sqe *held, *pair;
    uint64_t held_cookie, pair_cookie;
    /* Receives are multishot (hy_config.io_rx_multishot, where the kernel
     * has them, with a pool): see the header comment */
    bool ms;
};

/* Multishot receives with provided buffers came with 6.0; the ring's
 * features say nothing of them, so a kernel that has receive bundles
 * (6.10, IORING_FEAT_RECVSEND_BUNDLE) is taken to have them. Defined here
 * for headers older than the kernel. */
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_RECV_MULTISHOT
#define IORING_RECV_MULTISHOT (1U << 1)
#endif

/* Hands the queued entries to the kernel (also runs pending task work). */
static inline void submit(struct ur *u)
{
    io_uring_submit(&u->ring);
    *u->lazy = 0;
    u->held = u->pair = NULL;
}

/* Receive requests carry their socket's cookie with this bit; the
 * completion of a cancel of one has this cookie (nothing to do). */
#define RECV_BIT (1ull << 61)
#define CANCEL_COOKIE (1ull << 60)
/* Send requests carry their socket's cookie with this bit. */
#define SEND_BIT (1ull << 59)
/* A poll's update (ur_poll_input) carries its cookie with both of these
 * (REMOVE_BIT below alone: a removal; SEND_BIT alone: a send). */
#define UPDATE_BITS ((1ull << 63) | SEND_BIT)

/* A hy_ring_send's request carries the address of its record with both
 * of these (never a watch's cookie, a receive's or the wake_fd's). */
#define RSEND_BITS ((1ull << 62) | (1ull << 61))

/* The cookie of the wake_fd's poll (no watch: bit 62 is never set in a
 * watch's cookie, whose generation has 31 bits). */
#define WAKE_COOKIE (1ull << 62)

static void arm(struct ur *u, int fd, uint64_t cookie, bool input);
static void arm_wake(struct ur *u);

static inline void stat_inc(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Sets up the receive pool; without it (a kernel before 5.19, no memory)
 * receives are made by recv. */
static void rx_pool_init(struct ur *u)
{
    unsigned n = atomic_load_explicit(&rx_pool_n, memory_order_relaxed);
    if (!n)
        n = RX_N;
    unsigned entries = 1; /* the kernel's ring: a power of two */
    while (entries < n)
        entries <<= 1;
    void *br = NULL;
    if (posix_memalign(&br, 4096, entries * sizeof(struct io_uring_buf)) != 0)
        return;
    u->rx_mem = malloc((size_t)n * RX_SIZE);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br,
                                   .ring_entries = entries, .bgid = RX_BGID};
    if (!u->rx_mem || io_uring_register_buf_ring(&u->ring, &reg, 0) != 0) {
        free(u->rx_mem);
        u->rx_mem = NULL;
        free(br);
        return;
    }
    u->br = br;
    u->rx_n = n;
    u->rx_mask = (uint32_t)io_uring_buf_ring_mask(entries);
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < n; i++)
        io_uring_buf_ring_add(u->br, u->rx_mem + (size_t)i * RX_SIZE, RX_SIZE, (unsigned short)i,
                              (int)u->rx_mask, (int)i);
    io_uring_buf_ring_advance(u->br, (int)n);
}

int hy__io_set_rx_pool(unsigned n)
{
    if (n > RX_N_MAX) {
        hy_log(HY_LOG_ERROR, "io: rx_pool = %u buffers: must be 0 (the default, %u) to %u", n,
               RX_N, RX_N_MAX);
        return HY_EINVAL;
    }
    atomic_store_explicit(&rx_pool_n, n, memory_order_relaxed);
    return 0;
}

void hy__io_uring_multishot_counts(uint64_t *arms, uint64_t *ends)
{
    *arms = atomic_load_explicit(&ms_arms, memory_order_relaxed);
    *ends = atomic_load_explicit(&ms_ends, memory_order_relaxed);
}

void hy__io_uring_update_counts(uint64_t *retries, int64_t *inflight, uint64_t *stray_input)
{
    *retries = atomic_load_explicit(&upd_retries, memory_order_relaxed);
    *inflight = atomic_load_explicit(&upd_inflight, memory_order_relaxed);
    *stray_input = atomic_load_explicit(&hy__io_stray_input, memory_order_relaxed);
}

static int ur_init(struct hy_shard *sh, void **state)
{
    (void)sh;
    struct ur *u = calloc(1, sizeof(*u));
    if (!u)
        return HY_ENOMEM;
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN |
                                         IORING_SETUP_TASKRUN_FLAG,
                                .cq_entries = CQ_ENTRIES};
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &p);
    if (rc == -EINVAL) { /* a kernel before 5.19 */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(SQ_ENTRIES, &u->ring, &p);
    }
    if (rc < 0) {
        free(u);
        return hy__errno_to_hy(-rc);
    }
    u->can_link = (p.features & IORING_FEAT_CQE_SKIP) != 0;
    u->efd = -1;
    u->wake_fd = -1;
    u->lazy = &u->lazy0;
    if (sh) { /* not for the start-up probe */
        u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (u->efd < 0 || io_uring_register_eventfd(&u->ring, u->efd) < 0) {
            if (u->efd >= 0)
                close(u->efd);
            io_uring_queue_exit(&u->ring);
            free(u);
            return HY_ENOMEM;
        }
        if (sh->wake_fd >= 0) {
            u->wake_fd = sh->wake_fd;
            arm_wake(u);
        }
        rx_pool_init(u);
        u->ms = u->br && hy__rt.cfg.io_rx_multishot &&
                (p.features & IORING_FEAT_RECVSEND_BUNDLE) != 0;
    }
    *state = u;
    return 0;
}

static void ur_fini(struct hy_shard *sh, void *state)
{
    (void)sh;
    struct ur *u = state;
    io_uring_queue_exit(&u->ring); /* cancels the receives in flight */
    if (u->efd >= 0)
        close(u->efd);
    free(u->br);
    free(u->rx_mem);
    free(u);
}

static struct io_uring_sqe *sqe_get(struct ur *u)
{
    u->held = NULL; /* an entry after a send: no receive linked to it */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        /* the queue of this turn is full: hand it over now */
        submit(u);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

static void arm_mask(struct ur *u, int fd, unsigned mask, uint64_t cookie)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        hy__fatal("io_uring: no submission entry after a submit");
    io_uring_prep_poll_multishot(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, cookie);
}

static void arm(struct ur *u, int fd, uint64_t cookie, bool input)
{
    arm_mask(u, fd, input ? POLL_MASK : POLL_MASK_NOIN, cookie);
}

/* The wake_fd's poll: input only. Every write to an eventfd wakes its
 * waiters, so each wake-up posts a completion whatever the counter holds,
 * and the counter is never read back while the shard sleeps in the ring
 * (poll_sleep reads it when it sleeps in ppoll instead). Reading it after
 * each wake-up cost two system calls: the read, and a second one for the
 * completion the read's own wake-up (POLLOUT) posted, which found 0. */
static void arm_wake(struct ur *u)
{
    arm_mask(u, u->wake_fd, POLLIN, WAKE_COOKIE);
}

static int ur_add(void *state, int fd, uint64_t cookie)
{
    arm(state, fd, cookie, true);
    return 0;
}

/* Queues the update of cookie's poll to watch input or not; the kernel
 * re-reads the socket's readiness (a completion for what is already
 * there). Its completion: 0, or -EALREADY (the poll was completing: the
 * update is queued again, with the watch's choice then) or -ENOENT (the
 * poll ended: re-armed by its last completion, with that choice). */
static void queue_update(struct hy_shard *sh, struct ur *u, uint64_t cookie, bool input)
{
    stat_inc(&sh->st.io_poll_updates);
    atomic_fetch_add_explicit(&upd_inflight, 1, memory_order_relaxed);
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        hy__fatal("io_uring: no submission entry after a submit");
    /* new user data 0: the kernel refuses another without
     * IORING_POLL_UPDATE_USER_DATA (-EINVAL) */
    io_uring_prep_poll_update(sqe, cookie, 0, input ? POLL_MASK : POLL_MASK_NOIN,
                              IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI);
    io_uring_sqe_set_data64(sqe, cookie | UPDATE_BITS);
}

static void ur_poll_input(struct hy_shard *sh, void *state, int fd, uint64_t cookie, bool in)
{
    (void)fd;
    queue_update(sh, state, cookie, in);
}

/* Removal requests carry the poll's cookie with this bit: their completion
 * says whether the poll is gone (never a watch: dispatch ignores it). */
#define REMOVE_BIT (1ull << 63)

static void queue_remove(struct ur *u, uint64_t cookie)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        hy__fatal("io_uring: no submission entry after a submit");
    io_uring_prep_poll_remove(sqe, cookie);
    io_uring_sqe_set_data64(sqe, cookie | REMOVE_BIT);
}

static void ur_del(void *state, int fd, uint64_t cookie)
{
    (void)fd;
    struct ur *u = state;
    queue_remove(u, cookie);
    /* the poll holds a reference to the file until removed: the socket is
     * really closed only when this removal reaches the kernel */
    /* now, not at the end of the turn: a listener closed by the caller must
     * refuse the connect it makes next */
    submit(u);
}

/* descriptor of a live cookie, for re-arming a poll that ended */
int hy__io_cookie_fd(struct hy_shard *sh, uint64_t cookie, bool *input);

/* the kernel holds completions back: task work not run yet, or overflow */
static inline bool kernel_holds(const struct ur *u)
{
    return IO_URING_READ_ONCE(*u->ring.sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN);
}

HY__HOT static unsigned ur_poll(struct hy_shard *sh, void *state)
{
    struct ur *u = state;
    unsigned total = 0;
    /* receives queued alone wait for the sleep's io_uring_enter, for
     * input readiness reaped below (their socket may be the one, if its
     * poll still watches input), or HY__IO_LAZY_TURNS busy turns */
    if (io_uring_sq_ready(&u->ring) > *u->lazy) {
        submit(u); /* also runs pending task work */
        stat_inc(&sh->st.io_syscalls);
    } else if (kernel_holds(u)) {
        io_uring_get_events(&u->ring);
        stat_inc(&sh->st.io_syscalls);
    }
    bool input = false;
    for (;;) {
        struct io_uring_cqe *cqes[64];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, 64);
        if (!n)
            break;
        for (unsigned i = 0; i < n; i++) {
            uint64_t cookie = io_uring_cqe_get_data64(cqes[i]);
            int res = cqes[i]->res;
            unsigned flags = cqes[i]->flags;
            if (cookie == WAKE_COOKIE) {
                /* another shard woke us: keep watching (arm_wake) */
                if (!(flags & IORING_CQE_F_MORE))
                    arm_wake(u);
                continue;
            }
            if (cookie == CANCEL_COOKIE)
                continue;
            if ((cookie & RSEND_BITS) == RSEND_BITS) {
                hy__io_dispatch_ring_send(
                    sh, (struct hy_ring_send *)(uintptr_t)(cookie & ~RSEND_BITS), res);
                continue;
            }
            if ((cookie & UPDATE_BITS) == UPDATE_BITS) {
                /* -EALREADY: the poll was completing; ask again with the
                 * watch's choice now (-ENOENT: its end re-arms it) */
                bool in;
                atomic_fetch_sub_explicit(&upd_inflight, 1, memory_order_relaxed);
                if (res == -EALREADY && hy__io_cookie_fd(sh, cookie & ~UPDATE_BITS, &in) >= 0) {
                    atomic_fetch_add_explicit(&upd_retries, 1, memory_order_relaxed);
                    queue_update(sh, u, cookie & ~UPDATE_BITS, in);
                }
                continue;
            }
            if ((cookie & (SEND_BIT | REMOVE_BIT)) == SEND_BIT) {
                hy__io_dispatch_send(sh, cookie & ~SEND_BIT, res);
                continue;
            }
            if (cookie & RECV_BIT) {
                int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT)
                                                        : -1;
                unsigned fl = 0;
                if (u->ms) {
                    fl = HY__IO_RX_MS;
                    if (flags & IORING_CQE_F_MORE) {
                        /* still armed: the buffer is one more reserved */
                        fl |= HY__IO_RX_MORE;
                        u->rx_reserved++;
                    } else {
                        atomic_fetch_add_explicit(&ms_ends, 1, memory_order_relaxed);
                    }
                    if (!(flags & IORING_CQE_F_MORE) && res == -EINVAL) {
                        /* refused after all: one-shot receives from now on */
                        u->ms = false;
                        hy_log(HY_LOG_WARNING, "io_uring: multishot receive refused (%d): "
                                            "one-shot receives", res);
                    }
                }
                hy__io_dispatch_recv(sh, cookie & ~RECV_BIT, res, bid, RX_SIZE, fl);
                continue;
            }
            if (cookie & REMOVE_BIT) {
                /* -EALREADY: the poll was completing; the kernel keeps the
                 * socket's file until the poll is gone, so ask again */
                if (res == -EALREADY)
                    queue_remove(u, cookie & ~REMOVE_BIT);
                continue;
            }
            uint32_t ev = 0;
            /* input, a hang-up or an error (also one ending the poll) */
            input |= res < 0 || (res & (POLLIN | POLLRDHUP | POLLERR | POLLHUP));
            if (res > 0) {
                if (res & POLLIN)
                    ev |= HY_IO_IN;
                if (res & POLLRDHUP) /* latched: a short read must not hide the EOF */
                    ev |= HY_IO_IN | HY_IO_HUP;
                if (res & POLLOUT)
                    ev |= HY_IO_OUT;
                if (res & (POLLERR | POLLHUP))
                    ev |= HY_IO_IN | HY_IO_OUT | HY_IO_HUP;
            }
            if (!(flags & IORING_CQE_F_MORE) && res != -ECANCELED && res != -ENOENT) {
                /* the multishot poll ended (or the kernel only does one
                 * shot): re-arm it if the watch still exists */
                bool in;
                int fd = hy__io_cookie_fd(sh, cookie, &in);
                if (fd >= 0)
                    arm(u, fd, cookie, in);
            }
            if (ev)
                hy__io_dispatch(sh, cookie, ev);
        }
        io_uring_cq_advance(&u->ring, n);
        total += n;
    }
    if (input && io_uring_sq_ready(&u->ring)) {
        submit(u);
        stat_inc(&sh->st.io_syscalls);
    }
    return total;
}

static bool ur_pending(void *state)
{
    struct ur *u = state;
    return io_uring_cq_ready(&u->ring) || io_uring_sq_ready(&u->ring) || kernel_holds(u);
}

static int ur_sleep_fd(void *state)
{
    return ((struct ur *)state)->efd;
}

/* The shard sleeps in the ring (ur_sleep), not in ppoll: its hooks watch
 * no descriptor, and the ring watches its wake_fd. */
static inline bool ring_sleeps(const struct hy_shard *sh, const struct ur *u)
{
    return !sh->nhook_fds && u->wake_fd >= 0;
}

static bool ur_pre_sleep(struct hy_shard *sh, void *state)
{
    struct ur *u = state;
    /* the sleep's own io_uring_enter submits, runs the task work and
     * flushes an overflow: only completions already posted keep us up.
     * Nobody waits on the eventfd then, so the kernel is told not to
     * signal it (a flag in the shared ring, no system call): otherwise
     * each batch of completions costs it an eventfd_signal for nothing,
     * twice a request at one connection. */
    if (ring_sleeps(sh, u)) {
        (void)io_uring_cq_eventfd_toggle(&u->ring, false);
        return !io_uring_cq_ready(&u->ring);
    }
    if (!io_uring_cq_eventfd_enabled(&u->ring)) {
        /* the first ppoll sleep since the ring slept (a hook with a
         * descriptor came): signal again, and do not sleep this time. A
         * completion posted while the kernel still saw the flag set did
         * not signal, and our store of the flag can pass its store of
         * the tail (both sides store, then load); the next pre-sleep,
         * a turn later, finds it in the ring, and later ones signal. */
        (void)io_uring_cq_eventfd_toggle(&u->ring, true);
        atomic_thread_fence(memory_order_seq_cst);
        return false;
    }
    if (io_uring_sq_ready(&u->ring)) {
        submit(u);
        stat_inc(&sh->st.io_syscalls);
    }
    if (kernel_holds(u))
        return false; /* the next turn's poll lets the kernel post them */
    /* completions reaped while running also counted on the eventfd */
    uint64_t v;
    (void)!read(u->efd, &v, sizeof(v));
    return !io_uring_cq_ready(&u->ring);
}

static bool ur_recv_arm(void *state, int fd, uint64_t cookie)
{
    struct ur *u = state;
    /* one buffer per receive armed: with more sockets waiting than the pool
     * has buffers, the others read with recv (a receive that found the pool
     * empty would cost the kernel a request and the owner a recv anyway) */
    if (!u->br || u->rx_reserved >= u->rx_n)
        return false;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return false;
    u->rx_reserved++;
    /* submitted with the turn's queue, or by the sleep's io_uring_enter */
    io_uring_prep_recv(sqe, fd, NULL, RX_SIZE, 0);
    if (u->ms) { /* armed until the kernel ends it (header comment) */
        sqe->ioprio |= IORING_RECV_MULTISHOT;
        atomic_fetch_add_explicit(&ms_arms, 1, memory_order_relaxed);
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RX_BGID;
    io_uring_sqe_set_data64(sqe, cookie | RECV_BIT);
    (*u->lazy)++;
    return true;
}

static int ur_recv_arm_linked(void *state, int fd, uint64_t cookie)
{
    struct ur *u = state;
    struct io_uring_sqe *send = u->held;
    /* a multishot receive is not linked: it outlives the send */
    if (!send || u->held_cookie != cookie || io_uring_sq_space_left(&u->ring) < 1 ||
        !u->br || u->rx_reserved >= u->rx_n || u->ms)
        return ur_recv_arm(state, fd, cookie) ? 0 : -1;
    /* the receive is the entry right after the send: the send succeeds
     * whole (MSG_WAITALL: a short one fails, breaks the link and reports
     * what it took) without a completion, or fails with one and the
     * receive completes -ECANCELED; the receive's completion stands for
     * both, and the sleep's io_uring_enter submits the pair */
    send->msg_flags |= MSG_WAITALL;
    send->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
    if (!ur_recv_arm(state, fd, cookie)) { /* not reached: room checked */
        send->msg_flags &= ~(uint32_t)MSG_WAITALL;
        send->flags &= (uint8_t)~(IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS);
        return -1;
    }
    u->pair = send;
    u->pair_cookie = cookie;
    (*u->lazy)++; /* the send waits for the sleep too */
    return 1;
}

static bool ur_send_grow(void *state, uint64_t cookie, uint32_t len)
{
    struct ur *u = state;
    if (!u->held || u->held_cookie != cookie)
        return false;
    u->held->len = len;
    return true;
}

static int ur_send_unlink(void *state, uint64_t cookie)
{
    struct ur *u = state;
    if (u->held && u->held_cookie == cookie) {
        u->held = NULL;
        return 0;
    }
    if (u->pair && u->pair_cookie == cookie) {
        /* still queued here: an ordinary send, with its completion */
        u->pair->msg_flags &= ~(uint32_t)MSG_WAITALL;
        u->pair->flags &= (uint8_t)~(IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS);
        u->pair = NULL;
        if (*u->lazy)
            (*u->lazy)--;
        return 0;
    }
    struct io_uring_sync_cancel_reg reg = {.addr = cookie | SEND_BIT, .fd = -1,
                                           .timeout = {.tv_sec = -1, .tv_nsec = -1}};
    return io_uring_register_sync_cancel(&u->ring, &reg) == -ENOENT ? 1 : 2;
}

static void ur_recv_cancel(void *state, uint64_t cookie, bool sync)
{
    struct ur *u = state;
    if (sync) {
        /* the receive may still be queued here: hand it over first */
        submit(u);
        struct io_uring_sync_cancel_reg reg = {.addr = cookie | RECV_BIT, .fd = -1,
                                               .timeout = {.tv_sec = -1, .tv_nsec = -1}};
        (void)io_uring_register_sync_cancel(&u->ring, &reg);
        return;
    }
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        hy__fatal("io_uring: no submission entry after a submit");
    io_uring_prep_cancel64(sqe, cookie | RECV_BIT, 0);
    io_uring_sqe_set_data64(sqe, CANCEL_COOKIE);
}

static bool ur_send(void *state, int fd, const void *buf, uint32_t len, uint64_t cookie)
{
    struct ur *u = state;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return false;
    /* submitted with the turn's queue: a socket with room takes the bytes
     * in that io_uring_enter; a full one is polled by the kernel */
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, cookie | SEND_BIT);
    if (u->can_link) { /* the same socket's receive may follow it */
        u->held = sqe;
        u->held_cookie = cookie;
    }
    return true;
}

static bool ur_send_fd(void *state, struct hy_ring_send *rs)
{
    struct ur *u = state;
    if ((uintptr_t)rs >> 59) /* not reached: user addresses have 47 or 56 bits */
        return false;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return false;
    /* MSG_DONTWAIT: the request completes at its submission with what the
     * socket took (-EAGAIN: nothing), never polled for room by the kernel */
    io_uring_prep_send(sqe, rs->fd, rs->buf, rs->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)rs | RSEND_BITS);
    return true;
}

static void ur_flush(struct hy_shard *sh, void *state)
{
    submit(state);
    stat_inc(&sh->st.io_syscalls);
}

static void ur_send_cancel(void *state, uint64_t cookie)
{
    struct ur *u = state;
    submit(u);
    struct io_uring_sync_cancel_reg reg = {.addr = cookie | SEND_BIT, .fd = -1,
                                           .timeout = {.tv_sec = -1, .tv_nsec = -1}};
    (void)io_uring_register_sync_cancel(&u->ring, &reg);
}

static unsigned ur_recv_multishot(void *state)
{
    struct ur *u = state;
    return u->ms ? u->rx_n : 0;
}

static const uint8_t *ur_recv_buf(void *state, uint16_t bid)
{
    struct ur *u = state;
    return u->rx_mem + (size_t)bid * RX_SIZE;
}

static void ur_recv_put(void *state, int bid)
{
    struct ur *u = state;
    u->rx_reserved--;
    if (bid < 0)
        return;
    io_uring_buf_ring_add(u->br, u->rx_mem + (size_t)bid * RX_SIZE, RX_SIZE,
                          (unsigned short)bid, (int)u->rx_mask, 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static bool ur_sleep(struct hy_shard *sh, void *state, uint64_t deadline)
{
    struct ur *u = state;
    if (!ring_sleeps(sh, u))
        return false;
    struct __kernel_timespec ts, *tsp = NULL;
    if (deadline != UINT64_MAX) {
        uint64_t now = hy_now_ns();
        uint64_t d = deadline > now ? deadline - now : 0;
        ts.tv_sec = (long long)(d / 1000000000u);
        ts.tv_nsec = (long long)(d % 1000000000u);
        tsp = &ts;
    }
    stat_inc(&sh->st.io_sleeps);
    struct io_uring_cqe *cqe = NULL;
    /* submits this turn's queue and waits in the same call; -ETIME at the
     * deadline, -EINTR on a signal: the scheduler's next turn looks */
    int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
    *u->lazy = 0;
    u->held = u->pair = NULL;
    if (rc >= 0 && cqe && io_uring_cqe_get_data64(cqe) != WAKE_COOKIE)
        stat_inc(&sh->st.io_wakeups);
    return true;
}

static void ur_peek_init(void *state, struct hy__io_peek *pk)
{
    struct ur *u = state;
    pk->cq_head = u->ring.cq.khead;
    pk->cq_tail = u->ring.cq.ktail;
    pk->sq_head = u->ring.sq.khead;
    pk->sq_tail = &u->ring.sq.sqe_tail;
    pk->kflags = u->ring.sq.kflags;
    pk->kmask = IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN;
    pk->lazy = *u->lazy;
    u->lazy = &pk->lazy;
}

const struct hy__io_backend hy__io_uring_backend = {
    .name = "io_uring",
    .kind = HY_IO_URING,
    .init = ur_init,
    .fini = ur_fini,
    .add = ur_add,
    .del = ur_del,
    .poll = ur_poll,
    .pending = ur_pending,
    .sleep_fd = ur_sleep_fd,
    .pre_sleep = ur_pre_sleep,
    .sleep = ur_sleep,
    .recv_arm = ur_recv_arm,
    .recv_arm_linked = ur_recv_arm_linked,
    .send_unlink = ur_send_unlink,
    .send_grow = ur_send_grow,
    .recv_cancel = ur_recv_cancel,
    .recv_multishot = ur_recv_multishot,
    .recv_buf = ur_recv_buf,
    .recv_put = ur_recv_put,
    .send = ur_send,
    .send_fd = ur_send_fd,
    .send_cancel = ur_send_cancel,
    .flush = ur_flush,
    .poll_input = ur_poll_input,
    .peek_init = ur_peek_init,
};
