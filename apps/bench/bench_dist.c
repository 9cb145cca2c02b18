/* hydra-bench: peerbench.erl's distribution workloads between two Hydra
 * nodes: dist_rtt and dist_throughput over the DPDK transport on a
 * net_memif pair (HY_DIST_DPDK), dist_rtt_udp and dist_throughput_udp over
 * the kernel UDP transport on loopback (HY_DIST_UDP), dist_rtt_busy (memif,
 * both nodes in HY_IDLE_BUSY_POLL), and the floors udp_raw_rtt and
 * memif_raw_rtt (a bare DPDK ping-pong over memif, no runtime).
 *
 * memif: node a is the memif server, node b the client, each with its own
 * EAL (--no-pci --no-telemetry, its own --file-prefix, 2 MiB hugepages with
 * --in-memory when it can have them, else --no-huge --no-shconf: see
 * memif_mem_prepare;
 * the client also --single-file-segments, in memif's zero-copy mode unless
 * HYDRA_BENCH_MEMIF_ZC=0) and a socket file in a private temporary directory, as tests/net/test_dpdk.c.
 * EAL is initialised once per OS process and never again, so a memif
 * benchmark runs node a in a forked child of this program too (this process
 * stays free of EAL for the next benchmark); the child prints the lines.
 *
 * Each benchmark starts its own peer node, node b: this program re-executed
 * with the hidden argument --dist-node (fork, then exec: the child starts
 * its runtime from scratch), with its own ports. Node b serves, as
 * peerbench's dist_node: a process registered as pb_node that answers
 * {pb_hello, From} with the pids of an echo process ({From, Msg} -> From !
 * Msg) and a counting sink ({count, N, From}, then N {msg, I}, then From !
 * {counted, N}), and halts on pb_stop or when node a goes down. Node a (this
 * process) runs one shard on the first CPU of the affinity mask, node b one
 * shard on the second, so the two nodes share no core.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

#include "dist.h"
#include "hy_config.h"
#include "log.h"
#include "signals.h"

#include "bench.h"

#define SEC 1000000000LL
#define NODE_A 1u
#define NODE_B 2u
#define COOKIE "hydra-bench"

/* {count, N, From} and {counted, N}. */
struct bench_count {
    uint64_t n;
    hy_pid from;
    uint32_t errors; /* counted: messages out of order or malformed */
    uint32_t pad;
};

/* What both nodes agree on: ports, CPUs, queue bound, transport (memif:
 * the private directory of the socket; empty: kernel UDP), idle policy. */
struct dist_setup {
    uint16_t base_a, base_b;
    int cpu_a, cpu_b;
    uint64_t send_queue_max;
    char memif_dir[64];
    int busy_poll;
    int huge; /* memif: the EALs on 2 MiB hugepages (--in-memory), else --no-huge */
};

static void memif_sock_path(const struct dist_setup *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s/memif.sock", s->memif_dir);
}

/* Created by node a once its port has started: node b dials only then. A
 * memif server refuses a client that dials earlier (its socket exists from
 * its EAL's start), and a zero-copy client cannot dial again after that:
 * DPDK's memif closes the descriptor of the client's own memory on the
 * refusal, so every later attempt offers whatever file took its number. */
static void memif_ready_path(const char *dir, char *buf, size_t len)
{
    snprintf(buf, len, "%s/ready", dir);
}

static void fill_peers(const struct dist_setup *s, struct hy_dist_peer peers[2])
{
    memset(peers, 0, 2 * sizeof(*peers));
    snprintf(peers[0].name, sizeof(peers[0].name), "pb_a");
    peers[0].node_id = NODE_A;
    peers[0].ip = s->memif_dir[0] ? 0x0a000001u : 0x7f000001; /* memif: never routed */
    peers[0].base_port = s->base_a;
    peers[0].mac[5] = 1;
    snprintf(peers[1].name, sizeof(peers[1].name), "pb_b");
    peers[1].node_id = NODE_B;
    peers[1].ip = s->memif_dir[0] ? 0x0a000002u : 0x7f000001;
    peers[1].base_port = s->base_b;
    peers[1].mac[5] = 2;
}

/* The memif client (node b; memif_raw_rtt's pong side) runs in memif's
 * zero-copy mode, its EAL with --single-file-segments so memif can share its
 * memory (memfd-backed without hugepages): the client's rx and tx hand
 * mbufs over instead of copying them. For the dist rows and memif_raw_rtt
 * alike, so the floor keeps the same configuration. HYDRA_BENCH_MEMIF_ZC=0:
 * both copy, as memif does by default. */
static bool memif_zc(void)
{
    const char *e = getenv("HYDRA_BENCH_MEMIF_ZC");
    return !(e && strcmp(e, "0") == 0);
}

/* HYDRA_BENCH_MEMIF_RSIZE=N (4..14): memif's rings of 2^N slots (its
 * "rsize"; memif's default is 10), on both sides of every memif row;
 * returns the devarg (with its comma) or "". */
static const char *memif_rsize(void)
{
    static char arg[16];
    const char *e = getenv("HYDRA_BENCH_MEMIF_RSIZE");
    long v = e && *e ? strtol(e, NULL, 10) : 0;
    if (v < 4 || v > 14)
        return "";
    snprintf(arg, sizeof(arg), ",rsize=%ld", v);
    return arg;
}

/* The memory of the memif rows' EALs (both nodes, and memif_raw_rtt's ping
 * and pong, so the floor and dist run alike). HYDRA_BENCH_HUGE=auto (the
 * default): 2 MiB hugepages when MEMIF_HUGE_PAGES of them are free, or can
 * be reserved for the row (root: nr_hugepages raised by the shortfall, at
 * most that many, and lowered by as many when the row ends); otherwise --no-huge,
 * with a note saying so. HYDRA_BENCH_HUGE=0: always --no-huge; =1: hugepages
 * or the row fails. With hugepages the EALs run --in-memory: DPDK 22.11
 * backs them with memfd hugepages (MFD_HUGETLB), no hugetlbfs mount needed
 * and nothing left behind in one. memif's own rings stay on the memfd
 * regions it makes (4 KiB pages) in both modes. */
#if HY_HAVE_DPDK
#define MEMIF_HUGE_SYS "/sys/kernel/mm/hugepages/hugepages-2048kB/"
/* Two EALs, each mapping its heap and mbuf pool on demand: measured (free
 * pages sampled every 10 ms) 22 pages for dist_rtt's or dist_throughput's
 * two nodes together, 8 for memif_raw_rtt's two sides; about 3x that. */
#define MEMIF_HUGE_PAGES 64

static long huge_read(const char *file)
{
    char path[128], buf[32];
    long v = -1;

    snprintf(path, sizeof(path), MEMIF_HUGE_SYS "%s", file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        v = strtol(buf, NULL, 10);
    }
    close(fd);
    return v;
}

static int huge_write_total(long total)
{
    char buf[32];
    int fd = open(MEMIF_HUGE_SYS "nr_hugepages", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int len = snprintf(buf, sizeof(buf), "%ld\n", total);
    ssize_t n = write(fd, buf, (size_t)len);
    close(fd);
    return n == len ? 0 : -1;
}

/* pages this row added to nr_hugepages (taken off again at its end: by
 * difference, so two benchmarks that overlap give back what each added),
 * and the process that added them (its forked children inherit the signal
 * handler below, and must not give the pages back a second time) */
static volatile sig_atomic_t huge_added;
static pid_t huge_owner;

/* Takes ADDED pages back off nr_hugepages (never below 0): 0, or -1 with
 * errno. Only open, read, write and close: also called from the signal
 * handler below. */
static int huge_give_back(long added)
{
    char buf[32];
    int fd = open(MEMIF_HUGE_SYS "nr_hugepages", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    long total = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
        total = total * 10 + (buf[i] - '0');
    if (n <= 0 || buf[0] < '0' || buf[0] > '9') {
        errno = EIO;
        return -1;
    }
    long back = total > added ? total - added : 0;
    /* the digits of back, then a newline, from the end of buf */
    size_t k = sizeof(buf);
    buf[--k] = '\n';
    do {
        buf[--k] = (char)('0' + back % 10);
        back /= 10;
    } while (back && k > 0);
    fd = open(MEMIF_HUGE_SYS "nr_hugepages", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, buf + k, sizeof(buf) - k);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)(sizeof(buf) - k) ? 0 : -1;
}

/* A row stopped by SIGINT or SIGTERM (Ctrl-C, timeout(1), scripts/bench's
 * own timeout) gives back the pages it added before it ends as the signal
 * says; installed while huge_added > 0. (SIGKILL cannot be caught: then
 * nr_hugepages keeps the row's pages until someone lowers it.) */
static struct sigaction huge_old_int, huge_old_term;
static bool huge_on_int, huge_on_term; /* (not where the signal was ignored) */

static void huge_on_signal(int sig)
{
    if (huge_added > 0 && getpid() == huge_owner) {
        int saved = errno;
        huge_give_back(huge_added);
        huge_added = 0;
        errno = saved;
    }
    sigaction(sig, sig == SIGINT ? &huge_old_int : &huge_old_term, NULL);
    raise(sig);
}

static void huge_signals(bool on)
{
    if (on) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = huge_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
        /* a signal this process ignores (SIGINT in a background job) does
         * not end it: leave it ignored */
        sigaction(SIGINT, NULL, &huge_old_int);
        sigaction(SIGTERM, NULL, &huge_old_term);
        huge_on_int = huge_old_int.sa_handler != SIG_IGN;
        huge_on_term = huge_old_term.sa_handler != SIG_IGN;
        if (huge_on_int)
            sigaction(SIGINT, &sa, NULL);
        if (huge_on_term)
            sigaction(SIGTERM, &sa, NULL);
    } else {
        if (huge_on_int)
            sigaction(SIGINT, &huge_old_int, NULL);
        if (huge_on_term)
            sigaction(SIGTERM, &huge_old_term, NULL);
        huge_on_int = huge_on_term = false;
    }
}

/* Picks the row's memory mode (1: hugepages) before its processes start;
 * memif_mem_release() after they ended. Returns -1 (after bench_fail) only
 * for HYDRA_BENCH_HUGE=1 without hugepages. */
static int memif_mem_prepare(const char *row)
{
    const char *e = getenv("HYDRA_BENCH_HUGE");
    int want = e && strcmp(e, "1") == 0 ? 1 : e && strcmp(e, "0") == 0 ? 0 : -1;
    char why[160];

    huge_added = 0;
    bench_set_mode("4k-pages");
    if (want == 0) {
        bench_note("%s: EAL memory --no-huge (HYDRA_BENCH_HUGE=0)", row);
        return 0;
    }
    long total = huge_read("nr_hugepages"), free_ = huge_read("free_hugepages");
    if (total < 0 || free_ < 0) {
        snprintf(why, sizeof(why), "no 2 MiB hugepage support (%s)", MEMIF_HUGE_SYS);
    } else if (free_ >= MEMIF_HUGE_PAGES) {
        bench_note("%s: EAL memory 2 MiB hugepages (--in-memory; %ld of %ld free)", row, free_,
                   total);
        bench_set_mode("hugepages");
        return 1;
    } else if (huge_write_total(total + (MEMIF_HUGE_PAGES - free_)) != 0) {
        snprintf(why, sizeof(why), "%ld free, %d needed, nr_hugepages not writable: %s", free_,
                 MEMIF_HUGE_PAGES, strerror(errno));
    } else {
        huge_owner = getpid();
        huge_added = MEMIF_HUGE_PAGES - free_;
        huge_signals(true);
        long got = huge_read("free_hugepages");
        if (got >= MEMIF_HUGE_PAGES) {
            bench_note("%s: EAL memory 2 MiB hugepages (--in-memory; nr_hugepages raised %ld -> "
                       "%ld for the row)",
                       row, total, total + (long)huge_added);
            bench_set_mode("hugepages");
            return 1;
        }
        snprintf(why, sizeof(why), "raised nr_hugepages but only %ld free (fragmented memory?)",
                 got);
        huge_write_total(total); /* (what this row added, nothing else yet) */
        huge_added = 0;
        huge_signals(false);
    }
    if (want == 1) {
        bench_fail("%s: HYDRA_BENCH_HUGE=1 but no hugepages: %s", row, why);
        return -1;
    }
    bench_note("%s: EAL memory --no-huge (4 KiB pages), falling back: %s", row, why);
    return 0;
}

static void memif_mem_release(void)
{
    if (huge_added > 0) {
        long added = huge_added;
        if (huge_give_back(added) != 0)
            bench_note("could not take the %ld hugepages added back off nr_hugepages: %s", added,
                       strerror(errno));
        huge_added = 0;
        huge_signals(false);
    }
    bench_set_mode(NULL);
}
#endif /* HY_HAVE_DPDK */

/* The EAL arguments of the memory mode: ARGS gets one or two of them. */
static int memif_mem_args(int huge, const char **args)
{
    if (huge) {
        args[0] = "--in-memory";
        return 1;
    }
    args[0] = "--no-huge";
    args[1] = "--no-shconf";
    return 2;
}

static int dist_up(const struct dist_setup *s, uint32_t self)
{
    struct hy_dist_peer peers[2];
    struct hy_dist_config c;
    char vdev[256], prefix[96], sock[128];
    const char *eal[8];

    fill_peers(s, peers);
    hy_dist_config_init(&c);
    c.node_id = self;
    c.cookie = COOKIE;
    c.transport = HY_DIST_UDP;
    if (s->memif_dir[0]) {
        memif_sock_path(s, sock, sizeof(sock));
        snprintf(vdev, sizeof(vdev), "--vdev=net_memif0,role=%s,socket=%s,socket-abstract=no%s%s",
                 self == NODE_A ? "server" : "client", sock,
                 self != NODE_A && memif_zc() ? ",zero-copy=yes" : "", memif_rsize());
        snprintf(prefix, sizeof(prefix), "--file-prefix=%s-%u", strrchr(s->memif_dir, '/') + 1,
                 self);
        int k = 0;
        eal[k++] = "--no-pci";
        k += memif_mem_args(s->huge, eal + k);
        eal[k++] = "--no-telemetry";
        eal[k++] = prefix;
        eal[k++] = vdev;
        c.transport = HY_DIST_DPDK;
        c.eal_args = eal;
        c.eal_argc = k;
        if (memif_zc())
            eal[c.eal_argc++] = "--single-file-segments";
        c.dpdk_port = 0;
    }
    c.peers = peers;
    c.npeers = 2;
    /* The machine may be loaded: be slow to declare the other node down. */
    c.heartbeat_ns = 100000000ull;
    c.down_after_ns = 10ull * SEC;
    c.send_queue_max = s->send_queue_max;
    /* HYDRA_BENCH_DIST_AUTH=0: unauthenticated frames (the cost of the
     * default's tags); both nodes read it (node b inherits the environment) */
    const char *auth = getenv("HYDRA_BENCH_DIST_AUTH");
    if (auth && strcmp(auth, "0") == 0)
        c.authenticate = false;
    /* HYDRA_BENCH_DIST_TAG_BITS=128: 128-bit frame tags (the default is 64) */
    const char *tb = getenv("HYDRA_BENCH_DIST_TAG_BITS");
    if (tb && *tb)
        c.tag_bits = (unsigned)strtoul(tb, NULL, 10);
    int rc = hy_dist_start(&c);
    if (rc == 0 && s->memif_dir[0] && self == NODE_A) {
        char ready[128];
        memif_ready_path(s->memif_dir, ready, sizeof(ready));
        int fd = open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
    return rc;
}

static void node_config(struct hy_config *cfg, uint32_t node, int cpu, int busy_poll)
{
    static int cpus[2];

    hy_config_init(cfg);
    if (busy_poll)
        cfg->idle_mode = HY_IDLE_BUSY_POLL;
    cfg->nshards = 1;
    cpus[node == NODE_A ? 0 : 1] = cpu;
    cfg->cpus = &cpus[node == NODE_A ? 0 : 1];
    cfg->node_id = node;
}

/* ---- node b --------------------------------------------------------------------- */

static void echo_proc(void *arg)
{
    struct hy_msg *m;
    hy_pid from;

    (void)arg;
    for (;;) {
        if (hy_recv(&m, HY_INFINITY) < 0)
            continue;
        /* {From, ping} -> From ! ping */
        if (m->tag == BENCH_TAG_PING && m->size == sizeof(from)) {
            memcpy(&from, m->data, sizeof(from));
            hy_send(from, BENCH_TAG_PING, NULL, 0);
        }
        hy_msg_free(m);
    }
}

static void sink_proc(void *arg)
{
    struct bench_count c;
    struct hy_msg *m;
    int64_t i;

    (void)arg;
    for (;;) {
        if (hy_recv_tag(BENCH_TAG_COUNT, &m, HY_INFINITY) < 0)
            continue;
        if (m->size != sizeof(c)) {
            hy_msg_free(m);
            continue;
        }
        memcpy(&c, m->data, sizeof(c));
        hy_msg_free(m);
        c.errors = 0;
        /* receive N {msg, I}: I counts down from N to 1, in order */
        for (uint64_t k = c.n; k > 0; k--) {
            if (hy_recv_tag(BENCH_TAG_MSG, &m, HY_INFINITY) < 0)
                return;
            if (m->size != sizeof(i)) {
                c.errors++;
            } else {
                memcpy(&i, m->data, sizeof(i));
                if (i != (int64_t)k)
                    c.errors++;
            }
            hy_msg_free(m);
        }
        hy_send(c.from, BENCH_TAG_COUNTED, &c, sizeof(c));
    }
}

static int node_b_status;

/* pb_node: serves hellos until pb_stop or node a's nodedown. */
static void node_b_main(void *arg)
{
    const struct dist_setup *s = arg;
    hy_pid pids[2];
    bool monitoring = false;
    int rc;

    node_b_status = 1;
    if ((rc = dist_up(s, NODE_B)) < 0) {
        fprintf(stderr, "hydra-bench --dist-node: hy_dist_start: %s (%s)\n", hy_err_name(rc),
                hy_strerror(rc));
        return;
    }
    if (hy_spawn(echo_proc, NULL, &pids[0]) < 0 || hy_spawn(sink_proc, NULL, &pids[1]) < 0 ||
        hy_register("pb_node", HY_PID_NONE) < 0) {
        fprintf(stderr, "hydra-bench --dist-node: cannot start the echo and the sink\n");
        return;
    }
    for (;;) {
        struct hy_msg *m;

        /* node a says hello within seconds, or something is wrong */
        rc = hy_recv(&m, monitoring ? HY_INFINITY : 60 * SEC);
        if (rc < 0) {
            fprintf(stderr, "hydra-bench --dist-node: no hello from node a\n");
            break;
        }
        uint64_t tag = m->tag;
        hy_pid sender = m->from;
        if (tag == BENCH_TAG_HELLO && m->size == sizeof(hy_pid)) {
            hy_pid from;

            memcpy(&from, m->data, sizeof(from));
            hy_send(from, BENCH_TAG_PIDS, pids, sizeof(pids));
            if (!monitoring)
                hy_monitor_node(NODE_A, true);
            monitoring = true;
        }
        hy_msg_free(m);
        if (tag == BENCH_TAG_STOP) {
            /* Teardown order: node a stops its endpoints first, then we do.
             * A memif peer that goes away while the other side still polls
             * its rings can fault inside DPDK (its interrupt thread unmaps
             * them under the poller). So: acknowledge, then wait for node
             * a's CLOSE (NODEDOWN) before closing ours. */
            hy_send(sender, BENCH_TAG_STOP, NULL, 0);
            struct hy_msg *d;
            if (monitoring && hy_recv_tag(HY_TAG_NODEDOWN, &d, 10 * SEC) == 0)
                hy_msg_free(d);
            node_b_status = 0;
            break;
        }
        if (tag == HY_TAG_NODEDOWN) /* node a ended without pb_stop */
            break;
    }
    hy_dist_stop();
}

/* argv: base_a base_b cpu_a cpu_b send_queue_max memif_dir|- busy|sleep huge|nohuge */
int bench_dist_node_main(int argc, char **argv)
{
    struct dist_setup s;
    struct hy_config cfg;

    if (argc != 8) {
        fprintf(stderr, "hydra-bench --dist-node: expected 8 arguments\n");
        return 2;
    }
    memset(&s, 0, sizeof(s));
    if (strcmp(argv[5], "-") != 0)
        snprintf(s.memif_dir, sizeof(s.memif_dir), "%s", argv[5]);
    s.busy_poll = strcmp(argv[6], "busy") == 0;
    s.huge = strcmp(argv[7], "huge") == 0;
    s.base_a = (uint16_t)atoi(argv[0]);
    s.base_b = (uint16_t)atoi(argv[1]);
    s.cpu_a = atoi(argv[2]);
    s.cpu_b = atoi(argv[3]);
    s.send_queue_max = strtoull(argv[4], NULL, 10);
    hy_log_set_level(HY_LOG_WARNING);
    if (s.memif_dir[0]) {
        /* node a's port has started (see memif_ready_path) */
        char ready[128];
        struct stat st;

        memif_ready_path(s.memif_dir, ready, sizeof(ready));
        for (int i = 0; i < 3000 && stat(ready, &st) != 0; i++)
            usleep(10000);
    }
    node_config(&cfg, NODE_B, s.cpu_b, s.busy_poll);
    int rc = hy_run(&cfg, node_b_main, &s);
    if (rc < 0) {
        fprintf(stderr, "hydra-bench --dist-node: hy_run: %s (%s)\n", hy_err_name(rc),
                hy_strerror(rc));
        return 1;
    }
    return node_b_status;
}

/* ---- node a ----------------------------------------------------------------------- */

struct dist_run {
    const struct bench *b;
    const struct bench_env *env;
    const struct dist_setup *setup;
    int throughput;
    uint64_t n;
    double vals[BENCH_REPS_MAX];
    size_t nvals;
    int rep; /* the repetition running (0: warm-up) */
    struct hy_dist_stats st0, st1;
};

static double rtt_rep(struct dist_run *run, hy_pid echo)
{
    hy_pid self = hy_self();
    uint32_t errors = 0;
    struct hy_msg *m;

    uint32_t *pct = bench_rtt_pct_alloc(run->n);
    uint64_t t0 = hy_now_ns(), tk = t0;
    for (uint64_t k = 0; k < run->n; k++) {
        if (hy_send(echo, BENCH_TAG_PING, &self, sizeof(self)) < 0 ||
            hy_recv(&m, bench_timeout_ns) < 0) {
            bench_fail("round trip %llu: send or receive failed", (unsigned long long)k + 1);
            free(pct);
            return -1;
        }
        if (m->tag != BENCH_TAG_PING)
            errors++;
        hy_msg_free(m);
        if (pct) {
            uint64_t t = hy_now_ns();
            pct[k] = (uint32_t)(t - tk < UINT32_MAX ? t - tk : UINT32_MAX);
            tk = t;
        }
    }
    uint64_t dt = hy_now_ns() - t0;
    bench_rtt_pct_print(run->b->name, run->rep, pct, run->n);
    free(pct);
    if (errors) {
        bench_fail("%u unexpected messages", errors);
        return -1;
    }
    return (double)dt / (double)run->n / 1e3;
}

static double throughput_rep(struct dist_run *run, hy_pid sink)
{
    struct bench_count c = {.n = run->n, .from = hy_self()};
    struct hy_dist_stats st;
    struct hy_msg *m;

    uint64_t t0 = hy_now_ns();
    if (bench_send(sink, BENCH_TAG_COUNT, &c, sizeof(c)) < 0)
        return -1;
    for (int64_t i = (int64_t)run->n; i > 0; i--)
        if (bench_send(sink, BENCH_TAG_MSG, &i, sizeof(i)) < 0)
            return -1;
    if (bench_recv_tag(BENCH_TAG_COUNTED, &m) < 0)
        return -1;
    uint64_t dt = hy_now_ns() - t0;
    if (m->size == sizeof(c))
        memcpy(&c, m->data, sizeof(c));
    hy_msg_free(m);
    if (c.n != run->n || c.errors) {
        bench_fail("the sink counted %llu messages, %u out of order",
                   (unsigned long long)c.n, c.errors);
        return -1;
    }
    if (hy_dist_stats_get(&st) == 0 && st.dropped_queue_full) {
        bench_fail("%llu messages dropped on a full send queue",
                   (unsigned long long)st.dropped_queue_full);
        return -1;
    }
    /* n messages / dt ns * 1e3 = millions of messages per second */
    return (double)run->n / (double)dt * 1e3;
}

static void node_a_main(void *arg)
{
    struct dist_run *run = arg;
    hy_pid self = hy_self(), pids[2], node = HY_PID_NONE;
    struct hy_msg *m;
    int rc;

    if ((rc = dist_up(run->setup, NODE_A)) < 0) {
        bench_fail("hy_dist_start: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return;
    }
    /* The peer may still be starting: connect (each attempt waits up to
     * down_after_ns), then say hello until pb_node answers. */
    for (int tries = 0; (rc = hy_dist_connect(NODE_B)) != 0 && tries < 3; tries++)
        ;
    if (rc != 0) {
        bench_fail("cannot connect to node b: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        goto out;
    }
    for (int tries = 0; tries < 100 && hy_pid_is_none(node); tries++) {
        hy_dist_send_name("pb_node", NODE_B, BENCH_TAG_HELLO, &self, sizeof(self));
        if (hy_recv_tag(BENCH_TAG_PIDS, &m, SEC / 5) == 0) {
            if (m->size == sizeof(pids)) {
                memcpy(pids, m->data, sizeof(pids));
                node = m->from;
            }
            hy_msg_free(m);
        }
    }
    if (hy_pid_is_none(node)) {
        bench_fail("node b's pb_node does not answer");
        goto out;
    }
    /* answers to earlier hellos */
    while (hy_recv_tag(BENCH_TAG_PIDS, &m, SEC / 10) == 0)
        hy_msg_free(m);
    if (hy_mailbox_len() != 0) {
        bench_fail("%zu unexpected messages before the start", hy_mailbox_len());
        goto stop;
    }
    hy_dist_stats_get(&run->st0);
    for (int i = 0; i <= BENCH_REPS && !bench_failed(); i++) {
        run->rep = i;
        double v = run->throughput ? throughput_rep(run, pids[1]) : rtt_rep(run, pids[0]);

        if (bench_failed() || !(v >= 0.0))
            break;
        if (i > 0) /* the first one is the warm-up */
            run->vals[run->nvals++] = v;
    }
    hy_dist_stats_get(&run->st1);
stop:
    /* pb_stop, and wait until pb_node has it: hy_dist_stop() drops what is
     * still queued for the wire. */
    {
        /* node b acknowledges, then waits for our CLOSE before closing
         * its own endpoints (see the node b side) */
        hy_send(node, BENCH_TAG_STOP, NULL, 0);
        if (hy_recv_tag(BENCH_TAG_STOP, &m, 10 * SEC) == 0)
            hy_msg_free(m);
    }
out:
    hy_dist_stop();
}

/* A base port for each node: per process, so that concurrent runs (other
 * users of the machine, a leftover node) rarely collide; HYDRA_BENCH_PORT
 * overrides it. */
static uint16_t pick_base(void)
{
    const char *s = getenv("HYDRA_BENCH_PORT");

    if (s && *s)
        return (uint16_t)atoi(s);
    return (uint16_t)(41000 + (getpid() % 2000) * 8);
}

static int wait_child(pid_t p, int ms)
{
    int st = 0;

    for (int t = 0; t < ms; t += 10) {
        pid_t r = waitpid(p, &st, WNOHANG);

        if (r == p)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(p, SIGKILL);
    waitpid(p, &st, 0);
    return -1;
}

static int dist_run(const struct bench *b, const struct bench_env *env, int throughput,
                    const char *memif_dir, int busy_poll, int huge)
{
    static uint16_t bump; /* two benchmarks in one invocation: other ports */
    struct dist_setup s;
    struct dist_run run = {.b = b, .env = env, .setup = &s, .throughput = throughput};
    struct hy_config cfg;
    char exe[4096], a0[16], a1[16], a2[16], a3[16], a4[32];
    ssize_t len;
    int rc;

    memset(&s, 0, sizeof(s));
    if (memif_dir)
        snprintf(s.memif_dir, sizeof(s.memif_dir), "%s", memif_dir);
    s.busy_poll = busy_poll;
    s.huge = huge;
    run.n = throughput ? bench_scaled(env, 1000000) : bench_scaled(env, 100000);
    s.base_a = (uint16_t)(pick_base() + bump);
    s.base_b = (uint16_t)(s.base_a + 2);
    bump += 4;
    s.cpu_a = env->cpus[0];
    s.cpu_b = env->cpus[env->ncpus > 1 ? 1 : 0];
    /* Send never blocks and a full channel queue drops (net/dist.h): make
     * room for every message of a repetition, so none is lost. */
    s.send_queue_max = run.n + 65536;

    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0) {
        bench_fail("readlink /proc/self/exe: %s", strerror(errno));
        return 1;
    }
    exe[len] = '\0';
    snprintf(a0, sizeof(a0), "%u", s.base_a);
    snprintf(a1, sizeof(a1), "%u", s.base_b);
    snprintf(a2, sizeof(a2), "%d", s.cpu_a);
    snprintf(a3, sizeof(a3), "%d", s.cpu_b);
    snprintf(a4, sizeof(a4), "%llu", (unsigned long long)s.send_queue_max);

    node_config(&cfg, NODE_A, s.cpu_a, s.busy_poll);
    bench_describe_runtime(b->name, &cfg);
    if (s.memif_dir[0])
        bench_note("%s: two nodes over DPDK net_memif (net/dist.h, HY_DIST_DPDK; EAL --no-pci "
                   "%s, socket in %s): node a (a child of this program, "
                   "memif server, 1 shard on CPU %d) and node b (its child, memif client%s, 1 "
                   "shard on CPU %d); idle policy of both nodes: %s; send queue bound %llu "
                   "messages",
                   b->name, s.huge ? "--in-memory (2 MiB hugepages)" : "--no-huge --no-shconf",
                   s.memif_dir, s.cpu_a,
                   memif_zc() ? " in zero-copy mode, --single-file-segments" : "", s.cpu_b,
                   s.busy_poll ? "HY_IDLE_BUSY_POLL (a core per shard)"
                               : "default (spin, then memif's poll-then-sleep steps)",
                   (unsigned long long)s.send_queue_max);
    else
        bench_note("%s: two nodes over kernel UDP on loopback (net/dist.h, HY_DIST_UDP): node a "
                   "(this process, 1 shard on CPU %d, base port %u) and node b (a child process "
                   "started for this benchmark, 1 shard on CPU %d, base port %u); send queue "
                   "bound %llu messages",
                   b->name, s.cpu_a, s.base_a, s.cpu_b, s.base_b,
                   (unsigned long long)s.send_queue_max);
    if (throughput)
        bench_note("%llu one-way {msg,I} (8-byte integer) to a counting process on node b "
                   "that checks their order; clock stops at its reply after the last one",
                   (unsigned long long)run.n);
    else
        bench_note("%llu round trips {Pid,ping} -> ping to an echo process on node b",
                   (unsigned long long)run.n);

    fflush(NULL);
    pid_t child = fork();
    if (child < 0) {
        bench_fail("fork: %s", strerror(errno));
        return 1;
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
        execl(exe, exe, "--dist-node", a0, a1, a2, a3, a4, s.memif_dir[0] ? s.memif_dir : "-",
              s.busy_poll ? "busy" : "sleep", s.huge ? "huge" : "nohuge", (char *)NULL);
        _exit(127);
    }
    rc = hy_run(&cfg, node_a_main, &run);
    bench_restore_affinity();
    int crc = wait_child(child, 15000);
    if (rc < 0) {
        bench_fail("hy_run failed: %s (%s)", hy_err_name(rc), hy_strerror(rc));
        return 1;
    }
    if (crc != 0 && !bench_failed())
        bench_fail("node b ended with status %d", crc);
    if (bench_failed() || run.nvals != (size_t)BENCH_REPS) {
        if (!bench_failed())
            bench_fail("only %zu of %d repetitions completed", run.nvals, BENCH_REPS);
        return 1;
    }
    uint64_t msgs = run.st1.msgs_tx - run.st0.msgs_tx;
    uint64_t frames = run.st1.frames_tx - run.st0.frames_tx;
    bench_note("node a sent %llu messages in %llu frames (%.2f frames per message, acks "
               "included), %llu retransmits, %llu fast retransmits; received %llu frames, "
               "%llu of them in the idle rx spin",
               (unsigned long long)msgs, (unsigned long long)frames,
               msgs ? (double)frames / (double)msgs : 0.0,
               (unsigned long long)(run.st1.retransmits - run.st0.retransmits),
               (unsigned long long)(run.st1.fast_retransmits - run.st0.fast_retransmits),
               (unsigned long long)(run.st1.frames_rx - run.st0.frames_rx),
               (unsigned long long)(run.st1.rx_spin_frames - run.st0.rx_spin_frames));
    bench_report(b, b->name, run.vals, run.nvals);
    return 0;
}

int bench_dist_rtt_udp_run(const struct bench *b, const struct bench_env *env)
{
    return dist_run(b, env, 0, NULL, 0, 0);
}

int bench_dist_throughput_udp_run(const struct bench *b, const struct bench_env *env)
{
    return dist_run(b, env, 1, NULL, 0, 0);
}

/* ---- memif: private directory, EAL leftovers, a child for node a ------------------ */

#if HY_HAVE_DPDK
static int memif_mkdir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/hydra-bench-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

/* EAL's runtime directories of the --file-prefixes DIR-1 and DIR-2 (left
 * behind by processes that end without rte_eal_cleanup), the socket, DIR. */
static void memif_cleanup(const char *dir)
{
    const char *base = "/var/run";
    char p[512], f[800];

    if (getuid() != 0)
        base = getenv("XDG_RUNTIME_DIR") ? getenv("XDG_RUNTIME_DIR") : "/tmp";
    for (unsigned k = 1; k <= 2; k++) {
        snprintf(p, sizeof(p), "%s/dpdk/%s-%u", base, strrchr(dir, '/') + 1, k);
        DIR *d = opendir(p);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
                unlink(f);
            }
        }
        closedir(d);
        rmdir(p);
    }
    snprintf(p, sizeof(p), "%s/memif.sock", dir);
    unlink(p);
    memif_ready_path(dir, p, sizeof(p));
    unlink(p);
    rmdir(dir);
}
#endif /* HY_HAVE_DPDK */

static int dist_memif(const struct bench *b, const struct bench_env *env, int throughput,
                      int busy_poll)
{
#if HY_HAVE_DPDK
    char dir[64];
    int st = 0;

    int huge = memif_mem_prepare(b->name);
    if (huge < 0)
        return 1;
    if (memif_mkdir(dir, sizeof(dir)) != 0) {
        bench_fail("mkdtemp: %s", strerror(errno));
        memif_mem_release();
        return 1;
    }
    fflush(NULL);
    pid_t a = fork();
    if (a < 0) {
        bench_fail("fork: %s", strerror(errno));
        memif_cleanup(dir);
        memif_mem_release();
        return 1;
    }
    if (a == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int rc = dist_run(b, env, throughput, dir, busy_poll, huge);
        fflush(NULL);
        _exit(rc != 0 || bench_failed() ? 1 : 0);
    }
    while (waitpid(a, &st, 0) < 0 && errno == EINTR)
        ;
    memif_cleanup(dir);
    memif_mem_release();
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        bench_fail("node a's process ended with %s %d", WIFEXITED(st) ? "status" : "signal",
                   WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return 1;
    }
    return 0;
#else
    (void)env;
    (void)throughput;
    (void)busy_poll;
    bench_note("%s skipped: built without DPDK", b->name);
    return 0;
#endif
}

int bench_dist_rtt_run(const struct bench *b, const struct bench_env *env)
{
    return dist_memif(b, env, 0, 0);
}

int bench_dist_throughput_run(const struct bench *b, const struct bench_env *env)
{
    return dist_memif(b, env, 1, 0);
}

int bench_dist_rtt_busy_run(const struct bench *b, const struct bench_env *env)
{
    return dist_memif(b, env, 0, 1);
}

/* ---- udp_raw_rtt: the kernel's floor under dist_rtt ------------------------------- */

/* Two pthreads pinned to the CPUs of the two nodes, each with a UDP socket
 * on loopback connected to the other's; the ping thread sends a 64-byte
 * datagram (dist_rtt's frames are about that size) and busy-polls
 * recv(MSG_DONTWAIT) for the answer, the pong thread busy-polls and sends it
 * back: one send and one receive system call per direction, no runtime. */

struct ur_side {
    int fd;
    int cpu;
    uint64_t n;
    int ping;
    uint64_t dt;
    int err;
};

static void *ur_thread(void *arg)
{
    struct ur_side *s = arg;
    unsigned char buf[64];
    cpu_set_t one;

    CPU_ZERO(&one);
    CPU_SET(s->cpu, &one);
    pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    memset(buf, 0x5a, sizeof(buf));
    uint64_t t0 = hy_now_ns();
    for (uint64_t k = 0; k < s->n; k++) {
        if (s->ping && send(s->fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
            s->err = errno;
            break;
        }
        ssize_t r;
        while ((r = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT)) < 0 &&
               (errno == EAGAIN || errno == EWOULDBLOCK))
            ;
        if (r != (ssize_t)sizeof(buf) || buf[0] != 0x5a) {
            s->err = r < 0 ? errno : EPROTO;
            break;
        }
        if (!s->ping && send(s->fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
            s->err = errno;
            break;
        }
    }
    s->dt = hy_now_ns() - t0;
    return NULL;
}

static int ur_socket(struct sockaddr_in *addr)
{
    socklen_t len = sizeof(*addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int bench_udp_raw_rtt_run(const struct bench *b, const struct bench_env *env)
{
    struct sockaddr_in aa, ab;
    double vals[BENCH_REPS_MAX];
    uint64_t n = bench_scaled(env, 100000);
    int fa = ur_socket(&aa), fb = ur_socket(&ab), rc = 1;

    if (fa < 0 || fb < 0 || connect(fa, (struct sockaddr *)&ab, sizeof(ab)) != 0 ||
        connect(fb, (struct sockaddr *)&aa, sizeof(aa)) != 0) {
        bench_fail("cannot set up two UDP sockets on loopback: %s", strerror(errno));
        goto out;
    }
    bench_note("%llu round trips of a 64-byte UDP datagram on loopback between pthreads pinned "
               "to CPUs %d and %d (send, busy-polled recv(MSG_DONTWAIT)); no runtime: the "
               "kernel's floor under dist_rtt",
               (unsigned long long)n, env->cpus[0], env->cpus[env->ncpus > 1 ? 1 : 0]);
    for (int r = 0; r <= BENCH_REPS; r++) {
        struct ur_side sa = {.fd = fa, .cpu = env->cpus[0], .n = n, .ping = 1};
        struct ur_side sb = {.fd = fb, .cpu = env->cpus[env->ncpus > 1 ? 1 : 0], .n = n};
        pthread_t ta, tb;

        if (pthread_create(&tb, NULL, ur_thread, &sb) != 0 ||
            pthread_create(&ta, NULL, ur_thread, &sa) != 0) {
            bench_fail("pthread_create failed");
            goto out;
        }
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        if (sa.err || sb.err) {
            bench_fail("repetition %d: %s", r, strerror(sa.err ? sa.err : sb.err));
            goto out;
        }
        if (r > 0) /* the first one is the warm-up */
            vals[r - 1] = (double)sa.dt / (double)n / 1e3;
    }
    bench_report(b, b->name, vals, BENCH_REPS);
    rc = 0;
out:
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    return rc;
}

/* ---- memif_raw_rtt: the DPDK floor under dist_rtt --------------------------------- */

/* Two processes forked from this one (EAL is once per process and this one
 * must stay free of it for the next benchmark), each with its own EAL on the
 * CPU of one node (-l CPU, the main lcore pinned there), one RX and one TX
 * queue on a net_memif port: the ping side (memif server, CPU of node a)
 * sends a 64-byte frame with rte_eth_tx_burst and busy-polls
 * rte_eth_rx_burst for its echo; the pong side (client, CPU of node b)
 * busy-polls and sends each frame back. No Hydra runtime, no channel
 * protocol: what dist_rtt's frames cost on the device itself. */

#if HY_HAVE_DPDK
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#define MR_LEN_DEFAULT 64
#define MR_STOP 0xffffffffffffffffull

static int mr_huge; /* the row's memory mode (memif_mem_prepare), set before the fork */

static int mr_port_up(const char *dir, int server, int cpu)
{
    char core[16], prefix[96], vdev[256];
    struct rte_eth_conf conf;
    struct rte_eth_link link;
    struct rte_mempool *mp;

    snprintf(core, sizeof(core), "%d", cpu);
    snprintf(prefix, sizeof(prefix), "--file-prefix=%s-%d", strrchr(dir, '/') + 1,
             server ? 1 : 2);
    snprintf(vdev, sizeof(vdev),
             "--vdev=net_memif0,role=%s,socket=%s/memif.sock,socket-abstract=no%s%s",
             server ? "server" : "client", dir, !server && memif_zc() ? ",zero-copy=yes" : "",
             memif_rsize());
    const char *mem[2];
    int nm = memif_mem_args(mr_huge, mem);
    char *argv[12] = {"hydra-bench", "-l", core, "--log-level=4", "--no-pci"};
    int argc = 5;
    for (int i = 0; i < nm; i++)
        argv[argc++] = (char *)mem[i];
    argv[argc++] = "--no-telemetry";
    argv[argc++] = prefix;
    argv[argc++] = vdev;
    if (memif_zc())
        argv[argc++] = "--single-file-segments";
    if (rte_eal_init(argc, argv) < 0) {
        fprintf(stdout, "# memif_raw_rtt: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
        return -1;
    }
    if (rte_eth_dev_count_avail() < 1) {
        fprintf(stdout, "# memif_raw_rtt: no DPDK port\n");
        return -1;
    }
    memset(&conf, 0, sizeof(conf));
    mp = rte_pktmbuf_pool_create("mr_pool", 2047, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                 (int)rte_socket_id());
    if (!mp || rte_eth_dev_configure(0, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(0, 0, 512, rte_socket_id(), NULL, mp) != 0 ||
        rte_eth_tx_queue_setup(0, 0, 512, rte_socket_id(), NULL) != 0) {
        fprintf(stdout, "# memif_raw_rtt: port set-up failed\n");
        return -1;
    }
    /* the client's start fails until the server's socket answers */
    uint64_t t0 = hy_now_ns();
    while (rte_eth_dev_start(0) != 0) {
        if (hy_now_ns() - t0 > 10 * SEC) {
            fprintf(stdout, "# memif_raw_rtt: rte_eth_dev_start failed for 10 s\n");
            return -1;
        }
        usleep(10000);
    }
    uint64_t tried = hy_now_ns(), redial = 2 * SEC;
    do {
        memset(&link, 0, sizeof(link));
        if (rte_eth_link_get_nowait(0, &link) == 0 && link.link_status == RTE_ETH_LINK_UP)
            break;
        /* a server that had not started its port yet refused us, and a
         * memif client never dials again by itself (as net/transport_dpdk.c,
         * and as there not sooner than 2 s, then 4, 8 ...: a dial again cuts
         * a handshake in progress, which memif does not survive) */
        if (!server && hy_now_ns() - tried > redial) {
            tried = hy_now_ns();
            redial *= 2;
            rte_eth_dev_stop(0);
            rte_eth_dev_start(0);
        }
        usleep(1000);
    } while (hy_now_ns() - t0 < 20 * SEC);
    if (link.link_status != RTE_ETH_LINK_UP) {
        fprintf(stdout, "# memif_raw_rtt: memif link not up after 20 s\n");
        return -1;
    }
    return 0;
}

/* The frame's length: 64 bytes, or HYDRA_BENCH_MEMIF_LEN (64..1514): the
 * floor for frames of dist_rtt's own size (~190 bytes). */
static unsigned mr_len = MR_LEN_DEFAULT;

/* HYDRA_BENCH_MEMIF_TOUCH=1: each side reads one word of every 64-byte
 * line of a frame it receives and the echo side writes one byte of each
 * before sending it back, as a dist node reads and writes its frames (by
 * default only the 8-byte sequence number is read): what each line of a
 * frame costs between the two CPUs. */
static int mr_touch;
static volatile uint64_t mr_sink;

static inline uint64_t mr_touch_frame(struct rte_mbuf *m, int write)
{
    unsigned char *p = rte_pktmbuf_mtod(m, unsigned char *);
    uint32_t n = rte_pktmbuf_data_len(m);
    uint64_t acc = 0;

    for (uint32_t o = 22; o < n; o += 64) { /* from the word after seq */
        uint64_t v;

        memcpy(&v, p + (o + 8 <= n ? o : n - 8), sizeof(v));
        acc += v;
        if (write)
            p[o < n ? o : n - 1] ^= 1;
    }
    return acc;
}

static unsigned mr_len_from_env(void)
{
    const char *e = getenv("HYDRA_BENCH_MEMIF_LEN");
    long v = e ? strtol(e, NULL, 10) : 0;
    return v >= 64 && v <= 1514 ? (unsigned)v : MR_LEN_DEFAULT;
}

static struct rte_mbuf *mr_frame(struct rte_mempool *mp, uint64_t seq)
{
    struct rte_mbuf *m = rte_pktmbuf_alloc(mp);
    char *p;

    if (!m || !(p = rte_pktmbuf_append(m, (uint16_t)mr_len))) {
        if (m)
            rte_pktmbuf_free(m);
        return NULL;
    }
    memset(p, 0, mr_len);
    memset(p, 0xff, 6);                     /* broadcast */
    p[6] = 0x02;                            /* locally administered source */
    p[12] = (char)0x88, p[13] = (char)0xb5; /* local experimental ethertype */
    memcpy(p + 14, &seq, sizeof(seq));
    return m;
}

static void mr_send(struct rte_mbuf *m)
{
    while (rte_eth_tx_burst(0, 0, &m, 1) == 0)
        ;
}

/* Waits up to timeout_ns for the echo of seq (older echoes are dropped). */
static int mr_wait(uint64_t seq, uint64_t timeout_ns)
{
    struct rte_mbuf *rx[32];
    uint64_t t0 = 0;

    for (unsigned spins = 0;; spins++) {
        uint16_t k = rte_eth_rx_burst(0, 0, rx, 32);
        int got = 0;

        for (uint16_t i = 0; i < k; i++) {
            uint64_t v;

            memcpy(&v, rte_pktmbuf_mtod(rx[i], char *) + 14, sizeof(v));
            got |= v == seq && rte_pktmbuf_pkt_len(rx[i]) == mr_len;
            if (mr_touch)
                mr_sink += mr_touch_frame(rx[i], 0);
            rte_pktmbuf_free(rx[i]);
        }
        if (got)
            return 0;
        if ((spins & 1023) == 0) {
            uint64_t now = hy_now_ns();

            if (!t0)
                t0 = now;
            else if (now - t0 > timeout_ns)
                return -1;
        }
    }
}

static int mr_ping(const char *dir, int cpu, uint64_t n, int reps, int wfd)
{
    if (mr_port_up(dir, 1, cpu) != 0)
        return 1;
    struct rte_mempool *mp = rte_mempool_lookup("mr_pool");
    uint64_t seq = 0;
    struct rte_mbuf *m;

    /* the first echo: the pong side may still be starting, resend */
    int ok = -1;
    for (int i = 0; i < 200 && ok != 0; i++) {
        if (!(m = mr_frame(mp, ++seq)))
            return 1;
        mr_send(m);
        ok = mr_wait(seq, SEC / 10);
    }
    if (ok != 0) {
        fprintf(stdout, "# memif_raw_rtt: no echo for 20 s\n");
        return 1;
    }
    for (int r = 0; r <= reps; r++) {
        uint32_t *pct = bench_rtt_pct_alloc(n);
        uint64_t t0 = hy_now_ns(), tk = t0;

        for (uint64_t k = 0; k < n; k++) {
            if (!(m = mr_frame(mp, ++seq))) {
                fprintf(stdout, "# memif_raw_rtt: mbuf pool empty\n");
                return 1;
            }
            mr_send(m);
            if (mr_wait(seq, 10 * SEC) != 0) {
                fprintf(stdout, "# memif_raw_rtt: echo %llu lost\n", (unsigned long long)k);
                return 1;
            }
            if (pct) {
                uint64_t t = hy_now_ns();
                pct[k] = (uint32_t)(t - tk < UINT32_MAX ? t - tk : UINT32_MAX);
                tk = t;
            }
        }
        double us = (double)(hy_now_ns() - t0) / (double)n / 1e3;
        bench_rtt_pct_print("memif_raw_rtt", r, pct, n);
        free(pct);
        if (r > 0 && write(wfd, &us, sizeof(us)) != (ssize_t)sizeof(us)) /* r 0: warm-up */
            return 1;
    }
    /* one stop frame and no touch of the port after it: the pong side
     * leaves at the first, and memif frees the shared rings on its
     * disconnect (EAL's interrupt thread) under any burst still running
     * here (further stop frames faulted: SIGSEGV, seen under load in CI) */
    if ((m = mr_frame(mp, MR_STOP)))
        mr_send(m);
    usleep(10000);
    return 0;
}

static int mr_pong(const char *dir, int cpu)
{
    struct rte_mbuf *rx[32];

    if (mr_port_up(dir, 0, cpu) != 0)
        return 1;
    for (;;) {
        uint16_t k = rte_eth_rx_burst(0, 0, rx, 32);

        for (uint16_t i = 0; i < k; i++) {
            uint64_t v;

            memcpy(&v, rte_pktmbuf_mtod(rx[i], char *) + 14, sizeof(v));
            if (v == MR_STOP)
                return 0;
            if (mr_touch)
                mr_sink += mr_touch_frame(rx[i], 1);
            mr_send(rx[i]);
        }
    }
}

int bench_memif_raw_rtt_run(const struct bench *b, const struct bench_env *env)
{
    uint64_t n = bench_scaled(env, 100000);
    int cpu_a = env->cpus[0], cpu_b = env->cpus[env->ncpus > 1 ? 1 : 0];
    double vals[BENCH_REPS_MAX];
    size_t nvals = 0;
    char dir[64], sock[128];
    int fds[2], st = 0, rc = 1;
    struct stat sst;

    mr_huge = memif_mem_prepare(b->name);
    if (mr_huge < 0)
        return 1;
    if (memif_mkdir(dir, sizeof(dir)) != 0 || pipe(fds) != 0) {
        bench_fail("mkdtemp or pipe: %s", strerror(errno));
        memif_mem_release();
        return 1;
    }
    mr_len = mr_len_from_env();
    const char *touch = getenv("HYDRA_BENCH_MEMIF_TOUCH");
    mr_touch = touch && strcmp(touch, "1") == 0;
    bench_note("%llu round trips of a %u-byte frame over a net_memif pair between two "
               "processes with their own EAL (-l %d, memif server, ping; -l %d, client%s, pong; "
               "--no-pci %s), one queue, rte_eth_tx_burst and busy-polled "
               "rte_eth_rx_burst%s; no runtime: the DPDK floor under dist_rtt",
               (unsigned long long)n, mr_len, cpu_a, cpu_b,
               memif_zc() ? " in zero-copy mode, --single-file-segments" : "",
               mr_huge ? "--in-memory (2 MiB hugepages)" : "--no-huge --no-shconf",
               mr_touch ? ", every 64-byte line of a received frame read (and written before the echo)"
                        : "");
    fflush(NULL);
    pid_t ping = fork();
    if (ping == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int r = mr_ping(dir, cpu_a, n, BENCH_REPS, fds[1]);
        fflush(NULL);
        _exit(r);
    }
    close(fds[1]);
    snprintf(sock, sizeof(sock), "%s/memif.sock", dir);
    for (int i = 0; i < 2000 && ping > 0 && stat(sock, &sst) != 0; i++)
        usleep(10000);
    pid_t pong = ping > 0 ? fork() : -1;
    if (pong == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int r = mr_pong(dir, cpu_b);
        fflush(NULL);
        _exit(r);
    }
    if (ping < 0 || pong < 0) {
        bench_fail("fork: %s", strerror(errno));
        goto out;
    }
    while (nvals < (size_t)BENCH_REPS) {
        ssize_t r = read(fds[0], &vals[nvals], sizeof(double));

        if (r == (ssize_t)sizeof(double))
            nvals++;
        else if (!(r < 0 && errno == EINTR))
            break;
    }
    int cp = wait_child(ping, 20000);
    int cq = wait_child(pong, 5000);
    if (nvals != (size_t)BENCH_REPS || cp != 0) {
        bench_fail("the ping process ended with %d after %zu of %d repetitions (pong: %d)", cp,
                   nvals, BENCH_REPS, cq);
        goto out;
    }
    bench_report(b, b->name, vals, nvals);
    rc = 0;
out:
    close(fds[0]);
    if (ping > 0)
        kill(ping, SIGKILL), waitpid(ping, &st, 0);
    if (pong > 0)
        kill(pong, SIGKILL), waitpid(pong, &st, 0);
    memif_cleanup(dir);
    memif_mem_release();
    return rc;
}

#else /* !HY_HAVE_DPDK */

int bench_memif_raw_rtt_run(const struct bench *b, const struct bench_env *env)
{
    (void)env;
    bench_note("%s skipped: built without DPDK", b->name);
    return 0;
}

#endif /* HY_HAVE_DPDK */
