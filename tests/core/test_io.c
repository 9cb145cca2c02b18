/* Tests of core/io.c and its backends: the backend choice (io_uring refused
 * by a seccomp filter falls back to epoll; demanded and refused fails the
 * start), the backend in stats, no poller system call while no socket is
 * registered, and an idle node with open idle connections that sleeps
 * (near 0% CPU) instead of spinning, a shard served by its sockets that
 * sleeps between requests instead of spinning, and readiness that reaches
 * a shard which makes no system call, and an idle shard that sleeps in the
 * io_uring ring (one system call) and wakes for readiness, a message from
 * another shard and a timer; a served shard that sleeps after one idle
 * turn, and one whose hook's descriptor makes it sleep in ppoll after it
 * slept in the ring, still woken by readiness; a reply's send linked ahead
 * of the next receive that the kernel cannot finish at once, that has bytes
 * appended while in the kernel, or that fails: no reply byte reordered or
 * lost, the next request still received; a socket read through the
 * ring's receives (its poll leaves input out) whose input is then waited
 * for otherwise: beside a process that keeps the shard busy, by a try
 * without waiting, in active mode, by a framed read; the receive pool
 * running dry (a small pool set by hy__io_set_rx_pool): input still seen,
 * receives through the ring again once buffers return, no socket stranded;
 * a burst to a socket whose owner does not read, with the default pool and
 * with one emptied mid-stream: every byte, in order (with multishot
 * receives, HYDRA_IO_RX_MULTISHOT=1: bytes queued behind the held buffer,
 * the receive cancelled at three held or ended by the empty pool, and
 * armed again);
 * poll updates that race the poll's own completion (-EALREADY); tries
 * without waiting between waits that make no poll update; such sockets
 * closed, orphaned or moved with an update queued. Backend from
 * HYDRA_IO_BACKEND. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_support.h"

#define SECOND 1000000000LL
#define MS 1000000LL

/* ---- io_uring refused by seccomp ---------------------------------------------- */

static void echo_once(void *arg)
{
    int *ok = arg;
    struct hy_tcp *ls, *c, *s;
    if (hy_tcp_listen(NULL, &ls) != 0)
        return;
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    char b[4];
    size_t got;
    if (hy_tcp_connect(&a, NULL, SECOND, &c) == 0 && hy_tcp_accept(ls, &s, SECOND) == 0 &&
        hy_tcp_send(c, "ping", 4, SECOND) == 0 &&
        hy_tcp_recv_exact(s, b, 4, &got, SECOND) == 0 && memcmp(b, "ping", 4) == 0)
        *ok = 1;
    struct hy_stats st;
    hy_stats_get(0, &st);
    if (st.io_backend != HY_IO_EPOLL)
        *ok = 0;
}

/* In a child: a filter makes io_uring_setup fail with EPERM, as container
 * runtimes do; auto must fall back to epoll, io_uring must refuse to start.
 * Exit status: 0 all as expected, 1.. which check failed. */
static int child_under_seccomp(void)
{
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
    if (!f || seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0) != 0 ||
        seccomp_load(f) != 0)
        return 10;
    seccomp_release(f);
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.io_backend = HY_IO_URING;
    if (hy_run(&cfg, echo_once, NULL) != HY_ENOTSUP)
        return 1;
    cfg.io_backend = HY_IO_AUTO;
    int ok = 0;
    if (hy_run(&cfg, echo_once, &ok) != 0)
        return 2;
    return ok ? 0 : 3;
}

static void test_io_seccomp_refuses_io_uring_falls_back_to_epoll(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_under_seccomp());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- the backend in stats; no syscalls without sockets ------------------------ */

struct quiet_ctx {
    uint64_t backend;
    uint64_t sys_before_socket, sys_after_idle, sys_closed_a, sys_closed_b;
};

static void quiet_main(void *arg)
{
    struct quiet_ctx *c = arg;
    struct hy_stats st;
    hy_sleep_ns(20 * MS);
    hy_stats_get(0, &st);
    c->backend = st.io_backend;
    c->sys_before_socket = st.io_syscalls;
    hy_sleep_ns(20 * MS);
    hy_stats_get(0, &st);
    c->sys_after_idle = st.io_syscalls;
    /* a socket comes and goes; then the poller is quiet again */
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    for (int i = 0; i < 100; i++)
        hy_yield();
    hy_tcp_close(ls);
    for (int i = 0; i < 10; i++)
        hy_yield();
    hy_sleep_ns(5 * MS);
    hy_stats_get(0, &st);
    c->sys_closed_a = st.io_syscalls;
    for (int i = 0; i < 1000; i++)
        hy_yield();
    hy_sleep_ns(20 * MS);
    hy_stats_get(0, &st);
    c->sys_closed_b = st.io_syscalls;
}

static void test_io_backend_in_stats_and_no_syscalls_without_sockets(void **state)
{
    (void)state;
    struct quiet_ctx c = {0};
    hy_test_run(1, quiet_main, &c);
    enum hy_io_backend want = hy_test_io_backend();
    if (want != HY_IO_AUTO)
        assert_int_equal(c.backend, want);
    else
        assert_true(c.backend == HY_IO_URING || c.backend == HY_IO_EPOLL);
    assert_int_equal(c.sys_before_socket, 0);
    assert_int_equal(c.sys_after_idle, 0);
    assert_int_equal(c.sys_closed_b, c.sys_closed_a);
}

/* ---- an idle node with idle connections sleeps --------------------------------- */

struct idle_ctx {
    double cpu_share;
    uint64_t sleeps;
    int echo_after;
};

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void idle_main(void *arg)
{
    struct idle_ctx *c = arg;
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    enum { N = 50 };
    struct hy_tcp *cl[N], *sv[N];
    for (int i = 0; i < N; i++) {
        HY_CHECK_EQ(hy_tcp_connect(&a, NULL, SECOND, &cl[i]), 0);
        HY_CHECK_EQ(hy_tcp_accept(ls, &sv[i], SECOND), 0);
        hy_tcp_set_active(sv[i], HY_TCP_ACTIVE_ONCE); /* armed, waiting for input */
    }
    struct hy_stats s0, s1;
    hy_stats_get(0, &s0);
    uint64_t cpu0 = process_cpu_ns(), t0 = hy_now_ns();
    /* this process sleeps on a timer: the shard has nothing else to do */
    hy_sleep_ns(500 * MS);
    uint64_t cpu1 = process_cpu_ns(), t1 = hy_now_ns();
    hy_stats_get(0, &s1);
    c->cpu_share = (double)(cpu1 - cpu0) / (double)(t1 - t0);
    c->sleeps = s1.sleeps - s0.sleeps;
    /* and it still wakes up for input */
    HY_CHECK_EQ(hy_tcp_send(cl[7], "hi", 2, SECOND), 0);
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_DATA, 5 * SECOND);
    c->echo_after = m && hy_tcp_msg_of(m)->sock == sv[7] && hy_tcp_msg_of(m)->len == 2;
    hy_msg_free(m);
    for (int i = 0; i < N; i++) {
        hy_tcp_close(cl[i]);
        hy_tcp_close(sv[i]);
    }
    hy_tcp_close(ls);
}

static void test_io_idle_connections_sleep(void **state)
{
    (void)state;
    struct idle_ctx c = {0};
    hy_test_run(1, idle_main, &c);
    /* the whole test process (watchdog, pool included) over half a second */
    assert_true(c.cpu_share < 0.05);
    assert_true(c.sleeps >= 1);
    assert_true(c.echo_after);
}

/* ---- a shard served by its sockets does not spin between requests -------- */

/* A client outside the runtime: connects to 127.0.0.1:port, then sends one
 * byte and waits for its echo, `count` times, `gap_ns` apart (the load
 * pattern), or sends one byte once `go` is set (count 0). */
struct client {
    uint16_t port;
    int count;
    long gap_ns;
    atomic_int *go;
    atomic_int done;
    atomic_int finished; /* the client made its requests (or gave up) */
    int echoed;
};

static void *client_thread(void *arg)
{
    struct client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        if (c->count == 0) {
            uint64_t deadline = hy_now_ns() + 10 * SECOND;
            while (!atomic_load(c->go) && hy_now_ns() < deadline)
                sched_yield();
            (void)!write(fd, "x", 1);
        }
        for (int i = 0; i < c->count; i++) {
            char b;
            if (write(fd, "x", 1) != 1 || read(fd, &b, 1) != 1 || b != 'x')
                break;
            c->echoed++;
            struct timespec gap = {.tv_nsec = c->gap_ns};
            nanosleep(&gap, NULL);
        }
    }
    atomic_store(&c->finished, 1);
    /* until the server has read what it needed (closing early would make
     * its read see the end of the stream instead) */
    uint64_t deadline = hy_now_ns() + 10 * SECOND;
    while (!atomic_load(&c->done) && hy_now_ns() < deadline)
        sched_yield();
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Listens, starts a client thread of count requests gap_ns apart and
 * accepts its connection (the harness's checks fail the test otherwise). */
static void client_start(struct client *cl, int count, pthread_t *t, struct hy_tcp **ls,
                         struct hy_tcp **sv)
{
    HY_CHECK_EQ(hy_tcp_listen(NULL, ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(*ls, &a);
    *cl = (struct client){.port = hy_addr_port(&a), .count = count, .gap_ns = 1000000};
    HY_CHECK_EQ(pthread_create(t, NULL, client_thread, cl), 0);
    HY_CHECK_EQ(hy_tcp_accept(*ls, sv, 10 * SECOND), 0);
}

/* Tells the client to go, waits for it and closes both sockets. */
static void client_end(struct client *cl, pthread_t t, struct hy_tcp *ls, struct hy_tcp *sv)
{
    /* the last reply reaches the kernel when this process next waits (a
     * send alone on the shard goes with the submission of the receive
     * armed next, or of the next turn), and the join below blocks the
     * shard's thread: wait here for the client's last read */
    uint64_t deadline = hy_now_ns() + 10 * SECOND;
    while (!atomic_load(&cl->finished) && hy_now_ns() < deadline)
        hy_sleep_ns(100000);
    atomic_store(&cl->done, 1);
    pthread_join(t, NULL);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

/* Echoes up to n one-byte requests (each receive waits up to timeout_ns);
 * returns how many were echoed. */
static int echo_n(struct hy_tcp *sv, int n, int64_t timeout_ns)
{
    char b;
    size_t got;
    int i = 0;
    for (; i < n; i++)
        if (hy_tcp_recv(sv, &b, 1, &got, timeout_ns) != 0 || hy_tcp_send(sv, &b, 1, SECOND) != 0)
            break;
    return i;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct paced_ctx {
    double shard_cpu_share;
    int echoed;
};

static void paced_main(void *arg)
{
    struct paced_ctx *c = arg;
    struct hy_tcp *ls, *sv;
    struct client cl;
    pthread_t t;
    client_start(&cl, 100, &t, &ls, &sv);
    /* this process runs on the shard's thread: its CPU clock is the shard's */
    uint64_t cpu0 = thread_cpu_ns(), t0 = hy_now_ns();
    echo_n(sv, 100, 10 * SECOND);
    uint64_t cpu1 = thread_cpu_ns(), t1 = hy_now_ns();
    client_end(&cl, t, ls, sv);
    c->shard_cpu_share = (double)(cpu1 - cpu0) / (double)(t1 - t0);
    c->echoed = cl.echoed;
}

static void test_io_socket_served_shard_sleeps_between_requests(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.io_backend = hy_test_io_backend();
    /* a spin window longer than the gap between requests: a shard that
     * spun after each request would use all of its thread's time */
    cfg.idle_spin_ns = 5 * MS;
    struct paced_ctx c = {0};
    assert_int_equal(hy_test_run_cfg(&cfg, paced_main, &c), 0);
    assert_int_equal(c.echoed, 100);
    print_message("shard CPU share %.3f\n", c.shard_cpu_share);
    assert_true(c.shard_cpu_share < 0.2);
}

/* ---- a socket-served shard sleeps after one idle turn --------------------- */

/* A poll hook without a descriptor is called once per scheduler turn: it
 * counts them. */
static unsigned count_turn(void *ctx)
{
    atomic_fetch_add_explicit((atomic_ulong *)ctx, 1, memory_order_relaxed);
    return 0;
}

/* The counter and the hook live outside the process's stack: the scheduler
 * writes them while the process is suspended. */
struct turns_ctx {
    atomic_ulong turns;
    struct hy_poll_hook hook;
    double turns_per_req;
    uint64_t sleeps;
    int echoed;
};

static void turns_main(void *arg)
{
    struct turns_ctx *c = arg;
    c->hook = (struct hy_poll_hook){.poll = count_turn, .ctx = &c->turns, .fd = -1};
    struct hy_tcp *ls, *sv;
    struct client cl;
    pthread_t t;
    client_start(&cl, 100, &t, &ls, &sv);
    HY_CHECK_EQ(hy_hook_add_poll(&c->hook), 0);
    struct hy_stats s0, s1;
    /* counted from the 10th request: the shard spins (200 us) until
     * socket input has ended one of its idle periods */
    echo_n(sv, 10, 10 * SECOND);
    hy_stats_get(0, &s0);
    unsigned long t0 = atomic_load(&c->turns);
    int n = echo_n(sv, 90, 10 * SECOND);
    unsigned long t1 = atomic_load(&c->turns);
    hy_stats_get(0, &s1);
    HY_CHECK_EQ(hy_hook_remove_poll(&c->hook), 0);
    client_end(&cl, t, ls, sv);
    c->turns_per_req = n ? (double)(t1 - t0) / n : 0;
    c->sleeps = s1.sleeps - s0.sleeps;
    c->echoed = cl.echoed;
}

/* Between two requests 1 ms apart the shard reaps the input as it wakes,
 * runs the handler in the next turn (it sends and parks in recv), finds
 * nothing in one idle turn and sleeps: two turns a request. With no spin
 * window to wait out, a second idle turn before the sleep only found the
 * same nothing, and a turn after the wake-up that only reaped the input
 * (~350 instructions and a clock read each) only made the handler ready. */
static void test_io_socket_served_shard_sleeps_after_one_idle_turn(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.io_backend = hy_test_io_backend();
    struct turns_ctx c = {0};
    assert_int_equal(hy_test_run_cfg(&cfg, turns_main, &c), 0);
    hy_test_assert_checks();
    assert_int_equal(c.echoed, 100);
    print_message("%.2f scheduler turns a request, %llu sleeps\n", c.turns_per_req,
                  (unsigned long long)c.sleeps);
    assert_true(c.sleeps >= 45);
    /* 2 a request; before: 4 with epoll (a turn to reap, a second idle
     * turn), 5 with io_uring (whose turn after a wake-up did not peek) */
    assert_true(c.turns_per_req < 2.5);
}

/* ---- a hook's descriptor after sleeps in the ring ------------------------- */

static unsigned hook_nothing(void *ctx)
{
    (void)ctx;
    return 0;
}

struct hookfd_ctx {
    struct hy_poll_hook hook; /* outside the process's stack */
    int before, after;  /* requests echoed before and after the hook came */
    int64_t after_ns;   /* how long the requests after it took */
    uint64_t io_sleeps, sleeps; /* after the hook came */
};

static void hookfd_main(void *arg)
{
    struct hookfd_ctx *c = arg;
    struct hy_tcp *ls, *sv;
    struct client cl;
    pthread_t t;
    client_start(&cl, 20, &t, &ls, &sv);
    c->before = echo_n(sv, 10, 10 * SECOND);
    /* a descriptor the hook watches (never readable): the shard now
     * sleeps in ppoll, where only the ring's eventfd tells of completions */
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    HY_CHECK(efd >= 0);
    c->hook = (struct hy_poll_hook){.poll = hook_nothing, .ctx = NULL, .fd = efd};
    HY_CHECK_EQ(hy_hook_add_poll(&c->hook), 0);
    struct hy_stats s0, s1;
    hy_stats_get(0, &s0);
    uint64_t t0 = hy_now_ns();
    c->after = echo_n(sv, 10, 3 * SECOND);
    c->after_ns = (int64_t)(hy_now_ns() - t0);
    hy_stats_get(0, &s1);
    c->io_sleeps = s1.io_sleeps - s0.io_sleeps;
    c->sleeps = s1.sleeps - s0.sleeps;
    HY_CHECK_EQ(hy_hook_remove_poll(&c->hook), 0);
    close(efd);
    client_end(&cl, t, ls, sv);
}

/* While the shard sleeps in the io_uring ring its completions do not
 * signal the ring's eventfd (nobody reads it); once a hook watches a
 * descriptor the shard sleeps in ppoll, on that eventfd among others, and
 * socket input must still wake it at once (not at the receive's timeout). */
static void test_io_hook_descriptor_after_ring_sleeps_still_woken_by_readiness(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.io_backend = hy_test_io_backend();
    struct hookfd_ctx c = {0};
    assert_int_equal(hy_test_run_cfg(&cfg, hookfd_main, &c), 0);
    hy_test_assert_checks();
    print_message("after the hook: %d requests in %.1f ms, %llu sleeps (%llu in the ring)\n",
                  c.after, (double)c.after_ns / 1e6, (unsigned long long)c.sleeps,
                  (unsigned long long)c.io_sleeps);
    assert_int_equal(c.before, 10);
    assert_int_equal(c.after, 10);
    /* 10 requests 1 ms apart; a sleep left to its timeout takes 3 s */
    assert_true(c.after_ns < 2 * SECOND);
    assert_true(c.sleeps >= 5);
    assert_int_equal(c.io_sleeps, 0); /* every one a ppoll */
}

/* ---- readiness reaches a shard that makes no system call ----------------- */

struct nosys_ctx {
    atomic_int go, got;
    int seen_while_busy;
};

/* Yields for up to 10 s without a system call, until the other process
 * got its byte. */
static void busy_yielder(void *arg)
{
    struct nosys_ctx *c = arg;
    atomic_store(&c->go, 1);
    uint64_t deadline = hy_now_ns() + 10 * SECOND;
    while (!atomic_load(&c->got) && hy_now_ns() < deadline)
        hy_yield();
    c->seen_while_busy = atomic_load(&c->got);
}

static void nosys_main(void *arg)
{
    struct nosys_ctx *c = arg;
    struct hy_tcp *ls, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    struct client cl = {.port = hy_addr_port(&a), .go = &c->go};
    pthread_t t;
    HY_CHECK_EQ(pthread_create(&t, NULL, client_thread, &cl), 0);
    HY_CHECK_EQ(hy_tcp_accept(ls, &sv, 10 * SECOND), 0);
    hy_pid y;
    HY_CHECK_EQ(hy_spawn(busy_yielder, c, &y), 0);
    char b;
    size_t got;
    if (hy_tcp_recv(sv, &b, 1, &got, 20 * SECOND) == 0 && b == 'x')
        atomic_store(&c->got, 1);
    atomic_store(&cl.done, 1);
    pthread_join(t, NULL);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

static void test_io_readiness_reaches_shard_without_syscalls(void **state)
{
    (void)state;
    struct nosys_ctx c = {0};
    assert_int_equal(hy_test_run(1, nosys_main, &c), 0);
    assert_true(atomic_load(&c.got));
    assert_true(c.seen_while_busy);
}

/* ---- the idle shard sleeps in the ring --------------------------------------- */

/* Shard 1 holds sockets and sleeps; readiness, a message from shard 0 and
 * a timer each end a sleep. With io_uring each of those sleeps is one
 * io_uring_enter made by the poller (io_sleeps), not a ppoll. */
struct ring_ctx {
    hy_pid main;
    uint16_t port;
    uint64_t base;            /* shard 1's sleep count before it blocks (atomic: main's
                                 last read of a step and shard 1's next write are
                                 ordered only through the socket, which ThreadSanitizer
                                 does not see) */
    uint64_t sleeps0, io_sleeps0, sleeps1, io_sleeps1;
    int64_t timer_ns;         /* how long shard 1's 30 ms sleep took */
    int got_data, got_msg;
};

enum { TAG_READY = 71, TAG_POKE, TAG_DONE };

static uint64_t shard1_sleeps(void)
{
    struct hy_stats st;
    hy_stats_get(1, &st);
    return hy_test_io_backend() == HY_IO_EPOLL ? st.sleeps : st.io_sleeps + st.sleeps;
}

static bool shard1_slept(void *arg)
{
    struct ring_ctx *c = arg;
    return shard1_sleeps() > __atomic_load_n(&c->base, __ATOMIC_ACQUIRE);
}

/* On shard 1: the socket end that sleeps. */
static void ring_sleeper(void *arg)
{
    struct ring_ctx *c = arg;
    struct hy_tcp *ls, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    c->port = hy_addr_port(&a);
    struct hy_stats st;
    hy_stats_get(1, &st);
    c->sleeps0 = st.sleeps;
    c->io_sleeps0 = st.io_sleeps;
    __atomic_store_n(&c->base, shard1_sleeps(), __ATOMIC_RELEASE);
    hy_test_send_tag(c->main, TAG_READY);
    HY_CHECK_EQ(hy_tcp_accept(ls, &sv, 10 * SECOND), 0);
    /* 1: readiness ends the sleep (main sends once shard 1 slept) */
    __atomic_store_n(&c->base, shard1_sleeps(), __ATOMIC_RELEASE);
    hy_test_send_tag(c->main, TAG_READY);
    char b[4];
    size_t got;
    if (hy_tcp_recv_exact(sv, b, 4, &got, 10 * SECOND) == 0 && memcmp(b, "ring", 4) == 0)
        c->got_data = 1;
    /* 2: a message from the other shard ends it */
    __atomic_store_n(&c->base, shard1_sleeps(), __ATOMIC_RELEASE);
    hy_test_send_tag(c->main, TAG_READY);
    struct hy_msg *m = hy_test_must_recv_tag(TAG_POKE, 10 * SECOND);
    c->got_msg = m != NULL;
    hy_msg_free(m);
    /* 3: a timer ends it */
    uint64_t t0 = hy_now_ns();
    hy_sleep_ns(30 * MS);
    c->timer_ns = (int64_t)(hy_now_ns() - t0);
    hy_stats_get(1, &st);
    c->sleeps1 = st.sleeps;
    c->io_sleeps1 = st.io_sleeps;
    hy_tcp_close(sv);
    hy_tcp_close(ls);
    hy_test_send_tag(c->main, TAG_DONE);
}

static void ring_main(void *arg)
{
    struct ring_ctx *c = arg;
    c->main = hy_self();
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    hy_pid sp;
    HY_CHECK_EQ(hy_spawn_opt(ring_sleeper, c, &o, &sp), 0);
    hy_msg_free(hy_test_must_recv_tag(TAG_READY, 10 * SECOND));
    struct hy_tcp *cl;
    struct hy_addr a = hy_test_loopback(c->port);
    HY_CHECK_EQ(hy_tcp_connect(&a, NULL, 10 * SECOND, &cl), 0);
    hy_msg_free(hy_test_must_recv_tag(TAG_READY, 10 * SECOND));
    HY_CHECK(hy_test_wait_until(shard1_slept, c, 10000));
    HY_CHECK_EQ(hy_tcp_send(cl, "ring", 4, SECOND), 0);
    hy_msg_free(hy_test_must_recv_tag(TAG_READY, 10 * SECOND));
    HY_CHECK(hy_test_wait_until(shard1_slept, c, 10000));
    hy_test_send_tag(sp, TAG_POKE);
    hy_msg_free(hy_test_must_recv_tag(TAG_DONE, 10 * SECOND));
    hy_tcp_close(cl);
}

static void test_io_idle_shard_sleeps_in_the_ring_woken_by_readiness_messages_timers(void **state)
{
    (void)state;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.io_backend = hy_test_io_backend();
    struct ring_ctx c = {0};
    assert_int_equal(hy_test_run_cfg(&cfg, ring_main, &c), 0);
    hy_test_assert_checks();
    assert_true(c.got_data);
    assert_true(c.got_msg);
    assert_true(c.timer_ns >= 30 * MS);
    assert_true(c.timer_ns < 10 * SECOND);
    uint64_t sleeps = c.sleeps1 - c.sleeps0, io_sleeps = c.io_sleeps1 - c.io_sleeps0;
    print_message("shard 1: %llu sleeps, %llu in the poller\n", (unsigned long long)sleeps,
                  (unsigned long long)io_sleeps);
    assert_true(sleeps >= 3);
    if (hy_test_io_backend() == HY_IO_EPOLL) {
        assert_int_equal(io_sleeps, 0);
    } else {
        /* no hook watches a descriptor: every sleep is one io_uring_enter */
        assert_int_equal(io_sleeps, sleeps);
    }
}

/* ---- a reply's send linked ahead of the next receive ---------------------- */

/* A process alone on its shard that replies and then waits for the next
 * request has its send held and linked ahead of that receive (io_uring):
 * one submission, the receive's completion standing for the send's. A send
 * the kernel cannot finish at once (the client reads late, small buffers),
 * bytes appended while it is still in the kernel, and a send that fails must
 * neither lose the receive behind it nor reorder or drop reply bytes. */
#define LINK_REPLY (16u * 1024u)
#define LINK_MORE 1000u
#define LINK_ROUNDS 8
#define TAG_LINK_GO 0x4c474f21u
#define TAG_LINK_POKE 0x4c504f4bu

enum link_mode { LINK_SLOW_READER, LINK_APPEND_IN_FLIGHT, LINK_SEND_FAILS };

struct link_ctx {
    enum link_mode mode;
    uint16_t port;
    atomic_int listening;
    atomic_int bad;      /* client: a reply byte out of order, or a read failed */
    atomic_long got;     /* client: reply bytes read */
    atomic_int finished; /* client: done reading */
    int served;          /* server: requests received */
    int first_rc, recv_after_rc, send_after_rc;
    char after;
    uint64_t sends;      /* io_sends during the rounds */
    hy_pid server;
};

static uint8_t link_pat(size_t i)
{
    return (uint8_t)(i * 7 % 253);
}

static void *link_client(void *arg)
{
    struct link_ctx *c = arg;
    uint64_t deadline = hy_now_ns() + 10 * SECOND;
    while (!atomic_load(&c->listening) && hy_now_ns() < deadline)
        sched_yield();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rb = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        atomic_store(&c->bad, 1);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    static uint8_t buf[LINK_REPLY + LINK_MORE];
    size_t off = 0;
    if (c->mode == LINK_SEND_FAILS) {
        /* a request, then the next while the server's write side is shut */
        if (write(fd, "q", 1) != 1)
            atomic_store(&c->bad, 1);
        struct timespec d = {.tv_nsec = 50 * MS};
        nanosleep(&d, NULL);
        if (write(fd, "r", 1) != 1)
            atomic_store(&c->bad, 1);
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            off += (size_t)n;
        atomic_store(&c->got, (long)off);
        atomic_store(&c->finished, 1);
        close(fd);
        return NULL;
    }
    size_t per = LINK_REPLY + (c->mode == LINK_APPEND_IN_FLIGHT ? LINK_MORE : 0);
    for (int r = 0; r < LINK_ROUNDS && !atomic_load(&c->bad); r++) {
        if (write(fd, "q", 1) != 1) {
            atomic_store(&c->bad, 1);
            break;
        }
        /* read late: the reply does not fit the buffers, so its send is
         * still in the kernel (the receive linked behind it) for a while */
        struct timespec d = {.tv_nsec = 20 * MS};
        nanosleep(&d, NULL);
        for (size_t have = 0; have < per;) {
            ssize_t n = read(fd, buf, per - have);
            if (n <= 0) {
                atomic_store(&c->bad, 1);
                break;
            }
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != link_pat(off + (size_t)i))
                    atomic_store(&c->bad, 1);
            have += (size_t)n;
            off += (size_t)n;
        }
    }
    atomic_store(&c->got, (long)off);
    atomic_store(&c->finished, 1);
    close(fd);
    return NULL;
}

static int link_send(struct hy_tcp *s, uint8_t *b, size_t *off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        b[i] = link_pat(*off + i);
    *off += len;
    return hy_tcp_send(s, b, len, 5 * SECOND);
}

/* Pokes the server (a message) 2 ms after its go, once per round. */
static void link_poker(void *arg)
{
    struct link_ctx *c = arg;
    for (int r = 0; r < LINK_ROUNDS; r++) {
        struct hy_msg *m = hy_test_must_recv_tag(TAG_LINK_GO, 10 * SECOND);
        if (!m)
            return;
        hy_msg_free(m);
        hy_sleep_ns(2 * MS);
        hy_test_send_tag(c->server, TAG_LINK_POKE);
    }
}

static void link_main(void *arg)
{
    struct link_ctx *c = arg;
    c->server = hy_self();
    struct hy_tcp *ls, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    c->port = hy_addr_port(&a);
    pthread_t t;
    HY_CHECK_EQ(pthread_create(&t, NULL, link_client, c), 0);
    atomic_store(&c->listening, 1);
    HY_CHECK_EQ(hy_tcp_accept(ls, &sv, 10 * SECOND), 0);
    HY_CHECK_EQ(hy_tcp_set_bufsizes(sv, 4096, -1), 0);
    hy_pid poker = {0};
    if (c->mode == LINK_APPEND_IN_FLIGHT)
        HY_CHECK_EQ(hy_spawn(link_poker, c, &poker), 0);
    uint8_t *b = malloc(LINK_REPLY);
    struct hy_stats s0, s1;
    hy_stats_get(0, &s0);
    size_t off = 0;
    char q;
    size_t got;
    if (c->mode == LINK_SEND_FAILS) {
        if (hy_tcp_recv(sv, &q, 1, &got, 5 * SECOND) == 0)
            c->served++;
        /* the reply's send fails in the kernel (EPIPE): the receive linked
         * behind it is cancelled, and the next request must still come */
        shutdown(hy_tcp_fd(sv), SHUT_WR);
        c->first_rc = link_send(sv, b, &off, 100);
        c->recv_after_rc = hy_tcp_recv(sv, &c->after, 1, &got, 5 * SECOND);
        c->send_after_rc = hy_tcp_send(sv, "x", 1, SECOND);
    } else {
        for (int r = 0; r < LINK_ROUNDS; r++) {
            if (hy_tcp_recv(sv, &q, 1, &got, 5 * SECOND) != 0 || q != 'q')
                break;
            c->served++;
            /* in two sends: the second grows the held first */
            if (link_send(sv, b, &off, LINK_REPLY / 2) != 0 ||
                link_send(sv, b, &off, LINK_REPLY / 2) != 0)
                break;
            if (c->mode != LINK_APPEND_IN_FLIGHT)
                continue;
            /* parked in a receive (linked behind the reply) when the
             * poke comes: more bytes behind the reply still in the kernel */
            hy_test_send_tag(poker, TAG_LINK_GO);
            int rc = hy_tcp_recv_or_msg(sv, &q, 1, &got, 5 * SECOND);
            if (rc != HY_EINTR)
                break;
            hy_msg_free(hy_test_must_recv_tag(TAG_LINK_POKE, SECOND));
            if (link_send(sv, b, &off, LINK_MORE) != 0)
                break;
        }
    }
    hy_stats_get(0, &s1);
    c->sends = s1.io_sends - s0.io_sends;
    /* the last reply goes when this process waits: wait for the client's
     * last read before the join blocks the shard's thread */
    uint64_t deadline = hy_now_ns() + 15 * SECOND;
    while (!atomic_load(&c->finished) && hy_now_ns() < deadline)
        hy_sleep_ns(MS);
    pthread_join(t, NULL);
    free(b);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

static void run_link(struct link_ctx *c, enum link_mode mode)
{
    memset(c, 0, sizeof(*c));
    c->mode = mode;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.io_backend = hy_test_io_backend();
    assert_int_equal(hy_test_run_cfg(&cfg, link_main, c), 0);
    hy_test_assert_checks();
    print_message("mode %d: %d requests, %ld reply bytes read, %llu sends through the poller\n",
                  (int)mode, c->served, (long)atomic_load(&c->got), (unsigned long long)c->sends);
}

static void test_io_linked_reply_slow_reader_keeps_order_and_next_request(void **state)
{
    (void)state;
    struct link_ctx c;
    run_link(&c, LINK_SLOW_READER);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(c.served, LINK_ROUNDS);
    assert_int_equal(atomic_load(&c.got), (long)LINK_ROUNDS * LINK_REPLY);
    if (hy_test_io_backend() != HY_IO_EPOLL)
        assert_true(c.sends >= LINK_ROUNDS); /* each reply went through the ring */
}

static void test_io_linked_reply_bytes_appended_in_flight_keep_order(void **state)
{
    (void)state;
    struct link_ctx c;
    run_link(&c, LINK_APPEND_IN_FLIGHT);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(c.served, LINK_ROUNDS);
    assert_int_equal(atomic_load(&c.got), (long)LINK_ROUNDS * (LINK_REPLY + LINK_MORE));
}

static void test_io_linked_reply_that_fails_keeps_the_next_request(void **state)
{
    (void)state;
    struct link_ctx c;
    run_link(&c, LINK_SEND_FAILS);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(c.served, 1);
    /* queued (io_uring: its error comes with the next send) or sent by
     * the caller (epoll: the error at once) */
    assert_true(c.first_rc == 0 || c.first_rc == HY_ECLOSED);
    assert_int_equal(c.recv_after_rc, 0);
    assert_int_equal(c.after, 'r');
    assert_int_equal(c.send_after_rc, HY_ECLOSED);
    assert_int_equal(atomic_load(&c.got), 0);
}

/* ---- a socket read through the ring's receives: input without them ---- */

/* With io_uring, a socket's first receive through the ring has its poll
 * leave input out (the receive brings the bytes). Input waited for by other
 * means afterwards must still be reported: a receive queued while another
 * process keeps the shard busy (no sleep submits it), a try without waiting,
 * active mode, a framed read. Each mode: 4 one-byte requests answered
 * first (read through the ring), then the client sends "x\n" once told. */
enum noin_mode { NOIN_BUSY, NOIN_NOWAIT, NOIN_ACTIVE, NOIN_LINE };

struct noin_ctx {
    enum noin_mode mode;
    uint16_t port;
    struct nosys_ctx y;  /* go, got, and what busy_yielder saw */
    atomic_int done;
    uint64_t ring_recvs; /* receives through the ring in the 4 requests */
};

static void *noin_client(void *arg)
{
    struct noin_ctx *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        int i = 0;
        for (char b; i < 4; i++)
            if (write(fd, "w", 1) != 1 || read(fd, &b, 1) != 1 || b != 'w')
                break;
        uint64_t deadline = hy_now_ns() + 10 * SECOND;
        while (i == 4 && !atomic_load(&c->y.go) && hy_now_ns() < deadline)
            sched_yield();
        (void)!write(fd, "x\n", 2);
    }
    uint64_t deadline = hy_now_ns() + 20 * SECOND;
    while (!atomic_load(&c->done) && hy_now_ns() < deadline)
        sched_yield();
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void noin_main(void *arg)
{
    struct noin_ctx *c = arg;
    struct hy_tcp *ls, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    c->port = hy_addr_port(&a);
    pthread_t t;
    HY_CHECK_EQ(pthread_create(&t, NULL, noin_client, c), 0);
    HY_CHECK_EQ(hy_tcp_accept(ls, &sv, 10 * SECOND), 0);
    struct hy_stats st0, st1;
    hy_stats_get(0, &st0);
    char b[2];
    size_t got;
    for (int i = 0; i < 4; i++) {
        HY_CHECK_EQ(hy_tcp_recv(sv, b, 1, &got, 10 * SECOND), 0);
        HY_CHECK_EQ(hy_tcp_send(sv, b, 1, 10 * SECOND), 0);
    }
    hy_stats_get(0, &st1);
    c->ring_recvs = st1.io_recvs - st0.io_recvs;
    uint64_t deadline = hy_now_ns() + 10 * SECOND;
    switch (c->mode) {
    case NOIN_BUSY: {
        hy_pid y;
        HY_CHECK_EQ(hy_spawn(busy_yielder, &c->y, &y), 0);
        if (hy_tcp_recv(sv, b, 1, &got, 20 * SECOND) == 0 && b[0] == 'x')
            atomic_store(&c->y.got, 1);
        break;
    }
    case NOIN_NOWAIT:
        atomic_store(&c->y.go, 1);
        /* tries without waiting, the shard's turns in between */
        while (hy_now_ns() < deadline) {
            if (hy_tcp_recv(sv, b, 1, &got, 0) == 0) {
                atomic_store(&c->y.got, got == 1 && b[0] == 'x');
                break;
            }
            hy_yield();
        }
        break;
    case NOIN_ACTIVE: {
        HY_CHECK_EQ(hy_tcp_set_active(sv, HY_TCP_ACTIVE_ONCE), 0);
        atomic_store(&c->y.go, 1);
        struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_DATA, 10 * SECOND);
        if (m) {
            const struct hy_tcp_msg *tm = hy_tcp_msg_of(m);
            atomic_store(&c->y.got, tm->len >= 1 && tm->data[0] == 'x');
            hy_msg_free(m);
        }
        break;
    }
    case NOIN_LINE:
        HY_CHECK_EQ(hy_tcp_set_packet(sv, HY_TCP_PACKET_LINE, 0), 0);
        atomic_store(&c->y.go, 1);
        if (hy_tcp_recv(sv, b, 2, &got, 10 * SECOND) == 0 && got == 2 && b[0] == 'x')
            atomic_store(&c->y.got, 1);
        break;
    }
    atomic_store(&c->done, 1);
    pthread_join(t, NULL);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

static void run_noin(struct noin_ctx *c, enum noin_mode mode)
{
    memset(c, 0, sizeof(*c));
    c->mode = mode;
    assert_int_equal(hy_test_run(1, noin_main, c), 0);
    hy_test_assert_checks();
    /* the case exists only where receives go through the ring */
    if (hy_test_io_backend() != HY_IO_EPOLL)
        assert_true(c->ring_recvs >= 1);
    assert_int_equal(atomic_load(&c->y.got), 1);
}

static void test_io_ring_read_socket_receives_beside_a_busy_process(void **state)
{
    (void)state;
    struct noin_ctx c;
    run_noin(&c, NOIN_BUSY);
    assert_true(c.y.seen_while_busy);
}

static void test_io_ring_read_socket_reports_input_to_a_try_without_waiting(void **state)
{
    (void)state;
    struct noin_ctx c;
    run_noin(&c, NOIN_NOWAIT);
}

static void test_io_ring_read_socket_reports_input_in_active_mode(void **state)
{
    (void)state;
    struct noin_ctx c;
    run_noin(&c, NOIN_ACTIVE);
}

static void test_io_ring_read_socket_reports_input_to_a_framed_read(void **state)
{
    (void)state;
    struct noin_ctx c;
    run_noin(&c, NOIN_LINE);
}

/* ---- the receive pool running dry ------------------------------------------ */

/* core/io_internal.h (the tests reach it through the internal library) */
int hy__io_set_rx_pool(unsigned n);
void hy__io_uring_update_counts(uint64_t *retries, int64_t *inflight, uint64_t *stray_input);
void hy__io_uring_multishot_counts(uint64_t *arms, uint64_t *ends);

/* Multishot receives are on for this run and the kernel has them (6.10
 * and later: core/io_uring.c's probe) */
static bool rx_multishot(void)
{
    const char *e = getenv("HYDRA_IO_RX_MULTISHOT");
    if (hy_test_io_backend() == HY_IO_EPOLL || !e || strcmp(e, "1") != 0)
        return false;
    struct utsname u;
    unsigned maj = 0, min = 0;
    return uname(&u) == 0 && sscanf(u.release, "%u.%u", &maj, &min) == 2 &&
           (maj > 6 || (maj == 6 && min >= 10));
}


#define DRY_POOL 2u

struct dry_ctx {
    int warm_ring_recvs;   /* s0's 4 warm-up requests: receives through the ring */
    int dry_ring_recvs;    /* its request while the pool is empty */
    int dry_updates;       /* poll updates around that request */
    int again_ring_recvs;  /* its request once a buffer came back */
    int again_updates;
    int got_x, got_y;      /* the bytes arrived */
};

static uint64_t shard0_stat(size_t off)
{
    struct hy_stats st;
    hy_stats_get(0, &st);
    return *(const uint64_t *)(const void *)((const char *)&st + off);
}
#define STAT0(f) shard0_stat(offsetof(struct hy_stats, f))

/* One shard, a pool of DRY_POOL buffers: s0 is first read through the
 * ring (its poll leaves input out); s1 and s2 then arm receives that wait
 * (the pool's every buffer reserved); s0's next wait must watch input
 * again and see its byte; once s1 gives its buffer back, s0 gets a receive
 * through the ring again. */
static void dry_main(void *arg)
{
    struct dry_ctx *c = arg;
    struct hy_tcp *ls, *cl[3], *sv[3];
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    for (int i = 0; i < 3; i++) {
        HY_CHECK_EQ(hy_tcp_connect(&a, NULL, 10 * SECOND, &cl[i]), 0);
        HY_CHECK_EQ(hy_tcp_accept(ls, &sv[i], 10 * SECOND), 0);
    }
    char b;
    size_t got;
    uint64_t r0 = STAT0(io_recvs);
    for (int i = 0; i < 4; i++) {
        HY_CHECK_EQ(hy_tcp_send(cl[0], "w", 1, 10 * SECOND), 0);
        HY_CHECK_EQ(hy_tcp_recv(sv[0], &b, 1, &got, 10 * SECOND), 0);
        HY_CHECK_EQ(b, 'w');
    }
    c->warm_ring_recvs = (int)(STAT0(io_recvs) - r0);
    /* the pool's buffers reserved by two receives left armed */
    HY_CHECK_EQ(hy_tcp_recv(sv[1], &b, 1, &got, 1 * MS), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_tcp_recv(sv[2], &b, 1, &got, 1 * MS), HY_ETIMEDOUT);
    r0 = STAT0(io_recvs);
    uint64_t u0 = STAT0(io_poll_updates);
    HY_CHECK_EQ(hy_tcp_send(cl[0], "x", 1, 10 * SECOND), 0);
    c->got_x = hy_tcp_recv(sv[0], &b, 1, &got, 10 * SECOND) == 0 && b == 'x';
    c->dry_ring_recvs = (int)(STAT0(io_recvs) - r0);
    c->dry_updates = (int)(STAT0(io_poll_updates) - u0);
    /* a buffer comes back: s1's receive brings its byte, which is taken */
    HY_CHECK_EQ(hy_tcp_send(cl[1], "h", 1, 10 * SECOND), 0);
    HY_CHECK_EQ(hy_tcp_recv(sv[1], &b, 1, &got, 10 * SECOND), 0);
    HY_CHECK_EQ(b, 'h');
    r0 = STAT0(io_recvs);
    u0 = STAT0(io_poll_updates);
    HY_CHECK_EQ(hy_tcp_send(cl[0], "y", 1, 10 * SECOND), 0);
    c->got_y = hy_tcp_recv(sv[0], &b, 1, &got, 10 * SECOND) == 0 && b == 'y';
    c->again_ring_recvs = (int)(STAT0(io_recvs) - r0);
    c->again_updates = (int)(STAT0(io_poll_updates) - u0);
    for (int i = 0; i < 3; i++) {
        hy_tcp_close(cl[i]);
        hy_tcp_close(sv[i]);
    }
    hy_tcp_close(ls);
}

static void test_io_ring_read_socket_sees_input_while_the_pool_is_empty(void **state)
{
    (void)state;
    struct dry_ctx c = {0};
    assert_int_equal(hy__io_set_rx_pool(DRY_POOL), 0);
    int rc = hy_test_run(1, dry_main, &c);
    hy__io_set_rx_pool(0);
    assert_int_equal(rc, 0);
    assert_true(c.got_x);
    assert_true(c.got_y);
    if (hy_test_io_backend() == HY_IO_EPOLL)
        return;
    assert_true(c.warm_ring_recvs >= 1); /* s0's poll left input out */
    if (rx_multishot()) {
        /* s0's multishot receive stayed armed from the warm-up: each byte
         * through it, no poll update, whatever the others reserved */
        assert_int_equal(c.dry_ring_recvs, 1);
        assert_int_equal(c.dry_updates, 0);
        assert_int_equal(c.again_ring_recvs, 1);
        assert_int_equal(c.again_updates, 0);
        return;
    }
    assert_int_equal(c.dry_ring_recvs, 0); /* the pool was empty: read by recv */
    assert_true(c.dry_updates >= 1);       /* input watched again */
    assert_int_equal(c.again_ring_recvs, 1); /* through the ring again */
    assert_true(c.again_updates >= 1);       /* input left out again */
}

/* Many sockets waiting at once on a pool of DRY_POOL buffers, round after
 * round: the pool runs dry in each round, buffers come back as the owners
 * take their bytes, and no socket may be stranded (no receive armed, its
 * poll without input). */
#define DRY_CONNS 8
#define DRY_ROUNDS 40

struct dry_many_ctx {
    uint16_t port;
    atomic_int served[DRY_CONNS];
    atomic_int rounds_done;
    atomic_int finished;
    uint64_t ring_recvs, updates;
};

struct dry_server {
    struct dry_many_ctx *c;
    int i;
};

static void dry_server(void *arg)
{
    struct dry_server *ds = arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    for (int r = 0; r < DRY_ROUNDS; r++) {
        char b;
        size_t got;
        /* the order the servers wait in turns round by round, so the
         * buffers go to other sockets each round: sockets read through
         * the ring then wait on an empty pool, and the reverse */
        for (int k = (ds->i + r) % DRY_CONNS; k > 0; k--)
            hy_yield();
        if (hy_tcp_recv(s, &b, 1, &got, 10 * SECOND) != 0 ||
            hy_tcp_send(s, &b, 1, 10 * SECOND) != 0)
            break;
        atomic_fetch_add(&ds->c->served[ds->i], 1);
    }
    hy_tcp_close(s);
}

static void *dry_client(void *arg)
{
    struct dry_many_ctx *c = arg;
    int fd[DRY_CONNS];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    int n = 0;
    for (; n < DRY_CONNS; n++) {
        fd[n] = socket(AF_INET, SOCK_STREAM, 0);
        if (fd[n] < 0)
            break;
        setsockopt(fd[n], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd[n], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd[n]);
            break;
        }
    }
    int r = 0;
    for (; n == DRY_CONNS && r < DRY_ROUNDS; r++) {
        /* every socket's byte at once: more waiters than buffers */
        bool ok = true;
        for (int i = 0; i < n; i++)
            ok &= write(fd[i], "q", 1) == 1;
        for (int i = 0; i < n; i++) {
            char b;
            ok &= read(fd[i], &b, 1) == 1 && b == 'q';
        }
        if (!ok)
            break;
    }
    atomic_store(&c->rounds_done, r);
    for (int i = 0; i < n; i++)
        close(fd[i]);
    atomic_store(&c->finished, 1);
    return NULL;
}

static bool dry_client_finished(void *arg)
{
    return atomic_load(&((struct dry_many_ctx *)arg)->finished) != 0;
}

static void dry_many_main(void *arg)
{
    struct dry_many_ctx *c = arg;
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    c->port = hy_addr_port(&a);
    uint64_t r0 = STAT0(io_recvs), u0 = STAT0(io_poll_updates);
    pthread_t t;
    HY_CHECK_EQ(pthread_create(&t, NULL, dry_client, c), 0);
    static struct dry_server ds[DRY_CONNS];
    for (int i = 0; i < DRY_CONNS; i++) {
        struct hy_tcp *s;
        HY_CHECK_EQ(hy_tcp_accept(ls, &s, 10 * SECOND), 0);
        ds[i] = (struct dry_server){.c = c, .i = i};
        hy_pid pid;
        HY_CHECK_EQ(hy_spawn(dry_server, &ds[i], &pid), 0);
        HY_CHECK_EQ(hy_tcp_controlling_process(s, pid), 0);
    }
    /* the shard serves while the client runs: wait in the runtime */
    HY_CHECK(hy_test_wait_until(dry_client_finished, c, 60000));
    pthread_join(t, NULL);
    c->ring_recvs = STAT0(io_recvs) - r0;
    c->updates = STAT0(io_poll_updates) - u0;
    hy_tcp_close(ls);
}

static void test_io_sockets_waiting_on_an_empty_pool_are_never_stranded(void **state)
{
    (void)state;
    struct dry_many_ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(hy__io_set_rx_pool(DRY_POOL), 0);
    int rc = hy_test_run(1, dry_many_main, &c);
    hy__io_set_rx_pool(0);
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&c.rounds_done), DRY_ROUNDS);
    for (int i = 0; i < DRY_CONNS; i++)
        assert_int_equal(atomic_load(&c.served[i]), DRY_ROUNDS);
    if (hy_test_io_backend() == HY_IO_EPOLL)
        return;
    /* the pool served some and ran dry for others */
    assert_true(c.ring_recvs >= 1);
    assert_true(c.ring_recvs < (uint64_t)DRY_CONNS * DRY_ROUNDS);
    assert_true(c.updates >= 1);
}

/* ---- multishot receives (HYDRA_IO_RX_MULTISHOT=1: the io_uring_ms suites) -- */

#define BURST_BYTES (64 * 1024)
#define BURST_CHUNK 1000

static uint8_t burst_byte(size_t i)
{
    return (uint8_t)(i * 7u + i / 251u);
}

struct burst_ctx {
    bool intact;         /* every byte came, in order */
    bool after;          /* a byte sent after the burst came too */
    uint64_t arms, ends; /* multishot receives armed and ended meanwhile */
    uint64_t ring_recvs;
};

/* A receive armed on sv (a wait that times out), then a burst of
 * BURST_BYTES in chunks sent to it while its owner does not read (the
 * same process sends): with multishot receives, the chunks come in
 * through the still-armed receive and queue behind the buffer held until
 * the third cancels it (or the pool runs dry, ENOBUFS); the owner then
 * reads the whole burst (the bytes held, then by recv), waits again (a
 * receive armed again) and gets one more byte. */
static void burst_main(void *arg)
{
    struct burst_ctx *c = arg;
    struct hy_tcp *ls, *cl, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    HY_CHECK_EQ(hy_tcp_connect(&a, NULL, 10 * SECOND, &cl), 0);
    HY_CHECK_EQ(hy_tcp_accept(ls, &sv, 10 * SECOND), 0);
    char b;
    size_t got;
    HY_CHECK_EQ(hy_tcp_send(cl, "s", 1, 10 * SECOND), 0);
    HY_CHECK_EQ(hy_tcp_recv(sv, &b, 1, &got, 10 * SECOND), 0);
    HY_CHECK_EQ(b, 's');
    HY_CHECK_EQ(hy_tcp_recv(sv, &b, 1, &got, 1 * MS), HY_ETIMEDOUT); /* armed */
    uint64_t a0, e0;
    hy__io_uring_multishot_counts(&a0, &e0);
    uint64_t r0 = STAT0(io_recvs);
    static uint8_t out[BURST_BYTES], in[BURST_BYTES];
    for (size_t i = 0; i < BURST_BYTES; i++)
        out[i] = burst_byte(i);
    for (size_t off = 0; off < BURST_BYTES; off += BURST_CHUNK) {
        size_t n = BURST_BYTES - off < BURST_CHUNK ? BURST_BYTES - off : BURST_CHUNK;
        HY_CHECK_EQ(hy_tcp_send(cl, out + off, n, 10 * SECOND), 0);
        /* each chunk its own segment, reaped before the next (the shard's
         * poll runs while this process sleeps) */
        hy_sleep_ns(200000);
    }
    size_t have = 0;
    while (have < BURST_BYTES) {
        if (hy_tcp_recv(sv, in + have, BURST_BYTES - have, &got, 10 * SECOND) != 0)
            break;
        have += got;
    }
    c->intact = have == BURST_BYTES && memcmp(in, out, BURST_BYTES) == 0;
    c->ring_recvs = STAT0(io_recvs) - r0;
    HY_CHECK_EQ(hy_tcp_recv(sv, &b, 1, &got, 1 * MS), HY_ETIMEDOUT); /* armed again */
    HY_CHECK_EQ(hy_tcp_send(cl, "z", 1, 10 * SECOND), 0);
    c->after = hy_tcp_recv(sv, &b, 1, &got, 10 * SECOND) == 0 && b == 'z';
    uint64_t a1, e1;
    hy__io_uring_multishot_counts(&a1, &e1);
    c->arms = a1 - a0;
    c->ends = e1 - e0;
    hy_tcp_close(cl);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

static void run_burst(unsigned pool)
{
    struct burst_ctx c = {0};
    assert_int_equal(hy__io_set_rx_pool(pool), 0);
    int rc = hy_test_run(1, burst_main, &c);
    hy__io_set_rx_pool(0);
    assert_int_equal(rc, 0);
    assert_true(c.intact);
    assert_true(c.after);
    if (!rx_multishot())
        return;
    assert_true(c.ring_recvs >= 2); /* the armed receive brought several chunks */
    assert_true(c.ends >= 1);       /* and was ended (the cancel, ENOBUFS) */
    assert_true(c.arms >= 1);       /* and armed again */
}

static void test_io_burst_to_an_owner_away_arrives_whole_and_in_order(void **state)
{
    (void)state;
    run_burst(0);
}

static void test_io_burst_that_empties_the_pool_arrives_whole_and_in_order(void **state)
{
    (void)state;
    run_burst(DRY_POOL);
}

static void test_io_rx_pool_size_out_of_range_is_refused(void **state)
{
    (void)state;
    assert_int_equal(hy__io_set_rx_pool(32769), HY_EINVAL);
    assert_int_equal(hy__io_set_rx_pool(0), 0);
}

/* A connected pair from listener ls (at a), the accepted end *sv read
 * through the ring (4 bytes): its poll leaves input out from then on. */
static void ring_read_pair(struct hy_tcp *ls, const struct hy_addr *a, struct hy_tcp **cl,
                           struct hy_tcp **sv)
{
    HY_CHECK_EQ(hy_tcp_connect(a, NULL, 10 * SECOND, cl), 0);
    HY_CHECK_EQ(hy_tcp_accept(ls, sv, 10 * SECOND), 0);
    char b;
    size_t got;
    for (int i = 0; i < 4; i++) {
        HY_CHECK_EQ(hy_tcp_send(*cl, "w", 1, 10 * SECOND), 0);
        HY_CHECK_EQ(hy_tcp_recv(*sv, &b, 1, &got, 10 * SECOND), 0);
    }
}

/* ---- a poll update that finds the poll completing (-EALREADY) -------------- */

/* A ring-read socket alternates active mode once (input watched again: an
 * update) and a passive receive (input left out: an update), a byte each.
 * In the passive half the byte's send, the receive and the update go to the
 * kernel in one submission, in that order: the byte wakes the poll (it
 * watches input), whose completion runs as task work after the submission,
 * so the update finds it completing (-EALREADY) and is queued again; the
 * re-enable of the active half meets the completion of the update before
 * it the same way (on this kernel: 8 and 7 retries in 8 cycles, every run).
 * No byte may be lost (the active byte comes only if the re-enable's retry
 * was made: 7 failed without it), every update must complete, and
 * afterwards the poll must leave input out (no input reported by it while
 * requests are read through the ring: 8 of 8 without the retry). */
#define ALREADY_CYCLES 8

struct already_ctx {
    int64_t inflight0;
    int bytes_ok, settled;
    uint64_t retries, stray_after, ring_recvs_after;
};

static bool updates_settled(void *arg)
{
    uint64_t r, st;
    int64_t in;
    hy__io_uring_update_counts(&r, &in, &st);
    return in == ((struct already_ctx *)arg)->inflight0;
}

static void already_main(void *arg)
{
    struct already_ctx *c = arg;
    struct hy_tcp *ls, *cl, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    ring_read_pair(ls, &a, &cl, &sv);
    char b;
    size_t got;
    uint64_t re0, re1, st0, st1;
    int64_t in;
    HY_CHECK(hy_test_wait_until(updates_settled, c, 5000));
    hy__io_uring_update_counts(&re0, &in, &st0);
    c->bytes_ok = 1;
    for (int i = 0; i < ALREADY_CYCLES; i++) {
        /* input watched again for active mode, the byte sent at once: the
         * update (which re-reads the socket) and the byte race the poll's
         * completion of the previous update; the byte must come as a
         * message, which only the poll's input report brings */
        HY_CHECK_EQ(hy_tcp_set_active(sv, HY_TCP_ACTIVE_ONCE), 0);
        char want = (char)('A' + i);
        HY_CHECK_EQ(hy_tcp_send(cl, &want, 1, 10 * SECOND), 0);
        struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_DATA, 10 * SECOND);
        c->bytes_ok &= m && hy_tcp_msg_of(m)->len == 1 && hy_tcp_msg_of(m)->data[0] == want;
        hy_msg_free(m);
        /* passive again (once), input watched: the next byte's send, the
         * receive and the update that leaves input out in one submission */
        HY_CHECK(hy_test_wait_until(updates_settled, c, 5000));
        want = (char)('a' + i);
        HY_CHECK_EQ(hy_tcp_send(cl, &want, 1, 10 * SECOND), 0);
        c->bytes_ok &= hy_tcp_recv(sv, &b, 1, &got, 10 * SECOND) == 0 && b == want;
    }
    c->settled = hy_test_wait_until(updates_settled, c, 5000);
    hy__io_uring_update_counts(&re1, &in, &st1);
    c->retries = re1 - re0;
    uint64_t r0 = STAT0(io_recvs);
    for (int i = 0; i < 8; i++) {
        HY_CHECK_EQ(hy_tcp_send(cl, "z", 1, 10 * SECOND), 0);
        c->bytes_ok &= hy_tcp_recv(sv, &b, 1, &got, 10 * SECOND) == 0 && b == 'z';
    }
    c->ring_recvs_after = STAT0(io_recvs) - r0;
    hy__io_uring_update_counts(&re1, &in, &st0);
    c->stray_after = st0 - st1;
    hy_tcp_close(cl);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

static void test_io_poll_update_racing_the_polls_completion_loses_nothing(void **state)
{
    (void)state;
    struct already_ctx c = {0};
    uint64_t r, st;
    /* what earlier runtimes left in flight when they stopped */
    hy__io_uring_update_counts(&r, &c.inflight0, &st);
    assert_int_equal(hy_test_run(1, already_main, &c), 0);
    assert_true(c.bytes_ok);
    assert_true(c.settled);
    if (hy_test_io_backend() == HY_IO_EPOLL)
        return;
    assert_true(c.retries >= 1);          /* the race happened */
    assert_int_equal(c.ring_recvs_after, 8);
    assert_int_equal(c.stray_after, 0);   /* the retry left input out */
}

/* ---- tries without waiting between waits -------------------------------- */

/* A process that alternates a try without waiting and a wait on a socket
 * read through the ring: the try must not make the poll watch input (and
 * the wait leave it out again: two poll updates a request); it arms the
 * receive a wait would, whose bytes the next call takes. Half the cycles
 * have the byte sent before the try, half after. */
#define TRY_CYCLES 8

struct try_ctx {
    int bytes_ok, tries_ok;
    uint64_t updates, ring_recvs;
};

static void try_main(void *arg)
{
    struct try_ctx *c = arg;
    struct hy_tcp *ls, *cl, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    ring_read_pair(ls, &a, &cl, &sv);
    char b;
    size_t got;
    uint64_t u0 = STAT0(io_poll_updates), r0 = STAT0(io_recvs);
    c->bytes_ok = c->tries_ok = 1;
    for (int i = 0; i < TRY_CYCLES; i++) {
        char want = (char)('a' + i);
        if (i & 1)
            HY_CHECK_EQ(hy_tcp_send(cl, &want, 1, 10 * SECOND), 0);
        int rc = hy_tcp_recv(sv, &b, 1, &got, HY_NOWAIT);
        if (rc == 0) { /* the byte was there (epoll: read at once) */
            c->bytes_ok &= (i & 1) && b == want;
            continue;
        }
        c->tries_ok &= rc == HY_ETIMEDOUT;
        if (!(i & 1))
            HY_CHECK_EQ(hy_tcp_send(cl, &want, 1, 10 * SECOND), 0);
        c->bytes_ok &= hy_tcp_recv(sv, &b, 1, &got, 10 * SECOND) == 0 && b == want;
    }
    c->updates = STAT0(io_poll_updates) - u0;
    c->ring_recvs = STAT0(io_recvs) - r0;
    hy_tcp_close(cl);
    hy_tcp_close(sv);
    hy_tcp_close(ls);
}

static void test_io_tries_between_waits_make_no_poll_updates(void **state)
{
    (void)state;
    struct try_ctx c = {0};
    assert_int_equal(hy_test_run(1, try_main, &c), 0);
    assert_true(c.bytes_ok);
    assert_true(c.tries_ok);
    if (hy_test_io_backend() == HY_IO_EPOLL)
        return;
    assert_int_equal(c.updates, 0);
    assert_int_equal(c.ring_recvs, TRY_CYCLES); /* every byte through the ring */
}

/* ---- a ring-read socket closed, orphaned or moved with an update queued --- */

/* Each socket is first read through the ring (its poll leaves input out),
 * then has input watched again (active mode set and cleared: a poll update
 * queued, not yet submitted) and at once is closed by its owner, loses its
 * owner (exit) or moves to a process on the other shard. The peer must see
 * the end, the next socket (its record and slot reused) must work, the
 * moved one must serve on its new shard through that shard's ring, and
 * every update must complete. Run under ASan by scripts/test. */
struct life_ctx {
    int64_t inflight0;
    int closed_eof, reused_ok, exit_eof, moved_ok, settled;
    uint64_t moved_ring_recvs;
};

static void life_rewatch(struct hy_tcp *sv)
{
    HY_CHECK_EQ(hy_tcp_set_active(sv, HY_TCP_ACTIVE_ONCE), 0);
    HY_CHECK_EQ(hy_tcp_set_active(sv, HY_TCP_ACTIVE_OFF), 0);
}

static bool life_eof(struct hy_tcp *cl)
{
    char b;
    size_t got;
    return hy_tcp_recv(cl, &b, 1, &got, 10 * SECOND) == HY_ECLOSED;
}

static void life_orphan(void *arg)
{
    (void)arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    life_rewatch(hy_tcp_msg_of(m)->sock);
    hy_msg_free(m);
    /* returns: the socket closes with the update queued */
}

static void life_moved(void *arg)
{
    struct life_ctx *c = *(struct life_ctx **)arg;
    struct hy_msg *m = hy_test_must_recv_tag(HY_TCP_TAG_GIVEN, 10 * SECOND);
    if (!m)
        return;
    struct hy_tcp *s = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    struct hy_stats st0, st1;
    hy_stats_get(1, &st0);
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        char b;
        size_t got;
        ok &= hy_tcp_recv(s, &b, 1, &got, 10 * SECOND) == 0 && b == 'm' &&
              hy_tcp_send(s, "M", 1, 10 * SECOND) == 0;
    }
    hy_stats_get(1, &st1);
    c->moved_ring_recvs = st1.io_recvs - st0.io_recvs;
    c->moved_ok = ok;
    hy_tcp_close(s);
}

static void life_main(void *arg)
{
    struct life_ctx *c = arg;
    struct hy_tcp *ls, *cl, *sv;
    HY_CHECK_EQ(hy_tcp_listen(NULL, &ls), 0);
    struct hy_addr a;
    hy_tcp_sockname(ls, &a);
    /* closed by its owner */
    ring_read_pair(ls, &a, &cl, &sv);
    life_rewatch(sv);
    HY_CHECK_EQ(hy_tcp_close(sv), 0);
    c->closed_eof = life_eof(cl);
    hy_tcp_close(cl);
    /* the next socket takes the record and the slot */
    ring_read_pair(ls, &a, &cl, &sv);
    c->reused_ok = 1;
    hy_tcp_close(cl);
    hy_tcp_close(sv);
    /* its owner exits */
    ring_read_pair(ls, &a, &cl, &sv);
    hy_pid p;
    HY_CHECK_EQ(hy_spawn(life_orphan, NULL, &p), 0);
    HY_CHECK_EQ(hy_tcp_controlling_process(sv, p), 0);
    c->exit_eof = life_eof(cl);
    hy_tcp_close(cl);
    /* moved to the other shard */
    ring_read_pair(ls, &a, &cl, &sv);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.arg_size = sizeof(c);
    HY_CHECK_EQ(hy_spawn_opt(life_moved, &c, &o, &p), 0);
    life_rewatch(sv);
    HY_CHECK_EQ(hy_tcp_controlling_process(sv, p), 0);
    for (int i = 0; i < 4; i++) {
        char b;
        size_t got;
        HY_CHECK_EQ(hy_tcp_send(cl, "m", 1, 10 * SECOND), 0);
        HY_CHECK_EQ(hy_tcp_recv(cl, &b, 1, &got, 10 * SECOND), 0);
        HY_CHECK_EQ(b, 'M');
    }
    c->closed_eof &= life_eof(cl);
    hy_tcp_close(cl);
    hy_tcp_close(ls);
    struct already_ctx s = {.inflight0 = c->inflight0};
    c->settled = hy_test_wait_until(updates_settled, &s, 5000);
}

static void test_io_ring_read_socket_closed_orphaned_or_moved_with_an_update_queued(void **state)
{
    (void)state;
    struct life_ctx c = {0};
    uint64_t r, st;
    hy__io_uring_update_counts(&r, &c.inflight0, &st);
    assert_int_equal(hy_test_run_fd_checked(2, life_main, &c), 0);
    assert_true(c.closed_eof);
    assert_true(c.reused_ok);
    assert_true(c.exit_eof);
    assert_true(c.moved_ok);
    assert_true(c.settled);
    if (hy_test_io_backend() != HY_IO_EPOLL)
        assert_true(c.moved_ring_recvs >= 1);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_seccomp_refuses_io_uring_falls_back_to_epoll),
        cmocka_unit_test(test_io_backend_in_stats_and_no_syscalls_without_sockets),
        cmocka_unit_test(test_io_idle_connections_sleep),
        cmocka_unit_test(test_io_socket_served_shard_sleeps_between_requests),
        cmocka_unit_test(test_io_socket_served_shard_sleeps_after_one_idle_turn),
        cmocka_unit_test(test_io_hook_descriptor_after_ring_sleeps_still_woken_by_readiness),
        cmocka_unit_test(test_io_readiness_reaches_shard_without_syscalls),
        cmocka_unit_test(test_io_idle_shard_sleeps_in_the_ring_woken_by_readiness_messages_timers),
        cmocka_unit_test(test_io_linked_reply_slow_reader_keeps_order_and_next_request),
        cmocka_unit_test(test_io_linked_reply_bytes_appended_in_flight_keep_order),
        cmocka_unit_test(test_io_linked_reply_that_fails_keeps_the_next_request),
        cmocka_unit_test(test_io_ring_read_socket_receives_beside_a_busy_process),
        cmocka_unit_test(test_io_ring_read_socket_reports_input_to_a_try_without_waiting),
        cmocka_unit_test(test_io_ring_read_socket_reports_input_in_active_mode),
        cmocka_unit_test(test_io_ring_read_socket_reports_input_to_a_framed_read),
        cmocka_unit_test(test_io_ring_read_socket_sees_input_while_the_pool_is_empty),
        cmocka_unit_test(test_io_sockets_waiting_on_an_empty_pool_are_never_stranded),
        cmocka_unit_test(test_io_burst_to_an_owner_away_arrives_whole_and_in_order),
        cmocka_unit_test(test_io_burst_that_empties_the_pool_arrives_whole_and_in_order),
        cmocka_unit_test(test_io_rx_pool_size_out_of_range_is_refused),
        cmocka_unit_test(test_io_poll_update_racing_the_polls_completion_loses_nothing),
        cmocka_unit_test(test_io_tries_between_waits_make_no_poll_updates),
        cmocka_unit_test(test_io_ring_read_socket_closed_orphaned_or_moved_with_an_update_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
