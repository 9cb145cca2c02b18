/* hydra-echo: a TCP echo service, the smallest service on Hydra's
 * connection supervisor (otp/tcp_server.h), and the server of the tcp_echo
 * benchmark.
 *
 *   hydra-echo --port P [--shards N] [--acceptors A] [--io auto|epoll|io_uring] [--spin-ns NS]
 *                [--rx-multishot]
 *
 * Listens on 127.0.0.1:P with one listener per shard (default: one shard
 * per CPU; --io, --spin-ns and --rx-multishot set hy_config.io_backend,
 * idle_spin_ns and io_rx_multishot), echoes every byte, and exits 0 on SIGTERM or SIGINT after
 * printing how many connections it served. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.h"

static unsigned port, acceptors = 2;
static int start_rc;
static struct hy_tcp_server *srv;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int phase; /* 0 starting, 1 serving, 2 stop asked */

static hy_pid main_pid;

static const struct hy_tcp_server_ops echo_ops = {.handle = echo_handle};

/* The main process: starts the server, waits for the stop, drains. */
static void echo_main(void *arg)
{
    (void)arg;
    struct hy_tcp_server_opts o;
    hy_tcp_server_opts_init(&o);
    hy_addr_parse("127.0.0.1", (uint16_t)port, &o.listen.addr);
    o.ops = &echo_ops;
    o.acceptors = acceptors;
    start_rc = hy_tcp_server_start(&o, &srv);
    pthread_mutex_lock(&lock);
    main_pid = hy_self();
    phase = start_rc ? 2 : 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    if (start_rc)
        return;
    fprintf(stderr, "hydra-echo: listening on 127.0.0.1:%u, %u shards\n",
            hy_tcp_server_port(srv), hy_shard_count());
    /* TAG 1 from the signal thread means stop */
    struct hy_msg *m;
    while (hy_recv_tag(1, &m, HY_INFINITY) != 0)
        ;
    hy_msg_free(m);
    struct hy_tcp_server_stats st;
    hy_tcp_server_stats(srv, &st);
    struct hy_stats t;
    hy_stats_total(&t);
    hy_tcp_server_stop(srv, 1000000000);
    /* one line: the benchmark driver keeps the server's last line */
    uint64_t bytes = atomic_load(&echo_bytes);
    double req = bytes / 64.0;
    fprintf(stderr,
            "hydra-echo: served %llu connections (%llu crashed), echoed %llu bytes; poller %s: "
            "%.3f poller syscalls and %.3f sleeps (%.3f in the poller: one system call each) per "
            "64-byte request; receives and sends made by the poller %.3f and %.3f per request "
            "(the rest: a recv or a send system call each); poll updates %.4f per request\n",
            (unsigned long long)st.accepted, (unsigned long long)st.crashed,
            (unsigned long long)bytes, t.io_backend == HY_IO_URING ? "io_uring" : "epoll",
            req > 0 ? (double)t.io_syscalls / req : 0.0, req > 0 ? (double)t.sleeps / req : 0.0,
            req > 0 ? (double)t.io_sleeps / req : 0.0, req > 0 ? (double)t.io_recvs / req : 0.0,
            req > 0 ? (double)t.io_sends / req : 0.0,
            req > 0 ? (double)t.io_poll_updates / req : 0.0);
}

/* Takes SIGTERM/SIGINT (blocked in every other thread) and tells the main
 * process, once it serves. */
static void *signals(void *arg)
{
    sigset_t *set = arg;
    int sig;
    sigwait(set, &sig);
    pthread_mutex_lock(&lock);
    while (phase == 0)
        pthread_cond_wait(&cond, &lock);
    bool serving = phase == 1;
    pthread_mutex_unlock(&lock);
    if (serving)
        hy_send_foreign(main_pid, 1, NULL, 0);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: hydra-echo --port P [--shards N] [--acceptors A] [--io auto|epoll|io_uring] [--spin-ns NS] [--rx-multishot]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct hy_config cfg;
    hy_config_init(&cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            cfg.nshards = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--acceptors") && i + 1 < argc)
            acceptors = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--io") && i + 1 < argc) {
            i++;
            if (!strcmp(argv[i], "epoll"))
                cfg.io_backend = HY_IO_EPOLL;
            else if (!strcmp(argv[i], "io_uring"))
                cfg.io_backend = HY_IO_URING;
            else if (strcmp(argv[i], "auto"))
                usage();
        } else if (!strcmp(argv[i], "--spin-ns") && i + 1 < argc)
            cfg.idle_spin_ns = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rx-multishot"))
            cfg.io_rx_multishot = true;
        else
            usage();
    }
    if (port == 0 || port > 65535)
        usage();
    /* every thread (shards included) inherits the blocked mask: only the
     * signal thread takes SIGTERM/SIGINT */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    pthread_create(&t, NULL, signals, &set);
    pthread_detach(t);
    /* shard 0 runs here; hy_run returns when echo_main has ended */
    int rc = hy_run(&cfg, echo_main, NULL);
    if (rc) {
        fprintf(stderr, "hydra-echo: cannot start: %s\n", hy_strerror(rc));
        return 1;
    }
    if (start_rc) {
        fprintf(stderr, "hydra-echo: cannot listen on port %u: %s\n", port,
                hy_strerror(start_rc));
        return 1;
    }
    return 0;
}
