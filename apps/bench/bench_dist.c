/* hydra-bench: dist_rtt and dist_throughput, peerbench.erl's distribution
 * workloads between two Hydra nodes over the kernel UDP transport on
 * loopback (net/dist.h; the only transport built so far).
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

#include "dist.h"
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

/* What both nodes agree on: ports, CPUs, queue bound. */
struct dist_setup {
    uint16_t base_a, base_b;
    int cpu_a, cpu_b;
    uint64_t send_queue_max;
};

static void fill_peers(const struct dist_setup *s, struct hy_dist_peer peers[2])
{
    memset(peers, 0, 2 * sizeof(*peers));
    snprintf(peers[0].name, sizeof(peers[0].name), "pb_a");
    peers[0].node_id = NODE_A;
    peers[0].ip = 0x7f000001;
    peers[0].base_port = s->base_a;
    peers[0].mac[5] = 1;
    snprintf(peers[1].name, sizeof(peers[1].name), "pb_b");
    peers[1].node_id = NODE_B;
    peers[1].ip = 0x7f000001;
    peers[1].base_port = s->base_b;
    peers[1].mac[5] = 2;
}

static int dist_up(const struct dist_setup *s, uint32_t self)
{
    struct hy_dist_peer peers[2];
    struct hy_dist_config c;

    fill_peers(s, peers);
    hy_dist_config_init(&c);
    c.node_id = self;
    c.cookie = COOKIE;
    c.transport = HY_DIST_UDP;
    c.peers = peers;
    c.npeers = 2;
    /* The machine may be loaded: be slow to declare the other node down. */
    c.heartbeat_ns = 100000000ull;
    c.down_after_ns = 10ull * SEC;
    c.send_queue_max = s->send_queue_max;
    return hy_dist_start(&c);
}

static void node_config(struct hy_config *cfg, uint32_t node, int cpu)
{
    static int cpus[2];

    hy_config_init(cfg);
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
            node_b_status = 0;
            break;
        }
        if (tag == HY_TAG_NODEDOWN) /* node a ended without pb_stop */
            break;
    }
    hy_dist_stop();
}

/* argv: base_a base_b cpu_a cpu_b send_queue_max */
int bench_dist_node_main(int argc, char **argv)
{
    struct dist_setup s;
    struct hy_config cfg;

    if (argc != 5) {
        fprintf(stderr, "hydra-bench --dist-node: expected 5 arguments\n");
        return 2;
    }
    s.base_a = (uint16_t)atoi(argv[0]);
    s.base_b = (uint16_t)atoi(argv[1]);
    s.cpu_a = atoi(argv[2]);
    s.cpu_b = atoi(argv[3]);
    s.send_queue_max = strtoull(argv[4], NULL, 10);
    hy_log_set_level(HY_LOG_WARNING);
    node_config(&cfg, NODE_B, s.cpu_b);
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
    struct hy_dist_stats st0, st1;
};

static double rtt_rep(struct dist_run *run, hy_pid echo)
{
    hy_pid self = hy_self();
    uint32_t errors = 0;
    struct hy_msg *m;

    uint64_t t0 = hy_now_ns();
    for (uint64_t k = 0; k < run->n; k++) {
        if (hy_send(echo, BENCH_TAG_PING, &self, sizeof(self)) < 0 ||
            hy_recv(&m, bench_timeout_ns) < 0) {
            bench_fail("round trip %llu: send or receive failed", (unsigned long long)k + 1);
            return -1;
        }
        if (m->tag != BENCH_TAG_PING)
            errors++;
        hy_msg_free(m);
    }
    uint64_t dt = hy_now_ns() - t0;
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
        hy_ref ref;

        if (hy_monitor(node, &ref) == 0) {
            hy_send(node, BENCH_TAG_STOP, NULL, 0);
            if (hy_recv_ref(ref, &m, 10 * SEC) == 0)
                hy_msg_free(m);
        }
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

static int dist_run(const struct bench *b, const struct bench_env *env, int throughput)
{
    static uint16_t bump; /* two benchmarks in one invocation: other ports */
    struct dist_setup s;
    struct dist_run run = {.b = b, .env = env, .setup = &s, .throughput = throughput};
    struct hy_config cfg;
    char exe[4096], a0[16], a1[16], a2[16], a3[16], a4[32];
    ssize_t len;
    int rc;

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

    node_config(&cfg, NODE_A, s.cpu_a);
    bench_describe_runtime(b->name, &cfg);
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
        execl(exe, exe, "--dist-node", a0, a1, a2, a3, a4, (char *)NULL);
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
    bench_note("node a sent %llu messages in %llu UDP frames (%.2f frames per message, acks "
               "included), %llu retransmits, %llu fast retransmits",
               (unsigned long long)msgs, (unsigned long long)frames,
               msgs ? (double)frames / (double)msgs : 0.0,
               (unsigned long long)(run.st1.retransmits - run.st0.retransmits),
               (unsigned long long)(run.st1.fast_retransmits - run.st0.fast_retransmits));
    bench_report(b, b->name, run.vals, run.nvals);
    return 0;
}

int bench_dist_rtt_run(const struct bench *b, const struct bench_env *env)
{
    return dist_run(b, env, 0);
}

int bench_dist_throughput_run(const struct bench *b, const struct bench_env *env)
{
    return dist_run(b, env, 1);
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
