/* The DPDK transport: one RX and one TX queue per shard on one DPDK port;
 * frames are Ethernet/IPv4/UDP, UDP destination port = the peer's base port
 * plus the destination shard, MAC and IP from the peer table. The channel
 * code (dist.c) is the same as over kernel UDP.
 *
 * Threads. EAL is initialised once per OS process, on a helper thread
 * (rte_eal_init pins its caller and runs for a while: no shard and no
 * process stack should bear that), with the core list (-l) made of the
 * shard CPUs and the user's EAL arguments passed through. Shards stay plain
 * pthreads: each registers itself with rte_thread_register() when its
 * endpoint opens (so mempool per-lcore caches work; if DPDK has no lcore id
 * left, the mempool falls back to its lock-free ring) and payloads are
 * copied out of the mbufs on the receiving shard, so an mbuf never outlives
 * the rx call that received it. Each queue is touched by its shard only, so
 * there are no locks on the path.
 *
 * Memory: one mbuf pool per NUMA socket of the shards; a shard's RX queue
 * and its TX mbufs come from its socket's pool.
 *
 * Steering. At start the port is asked what it can do (rte_eth_dev_info,
 * rte_flow_validate): with rte_flow, one rule per shard sends the shard's
 * UDP port to its queue; else with RSS on IPv4/UDP, flows are spread over
 * the queues (a channel's frames always land on the same queue); else
 * frames land wherever the device puts them (memif: the queue with the
 * sender's shard index). A frame on the wrong shard's queue is handed over
 * through the ring mesh by dist.c; that is the path the tests exercise on
 * virtual devices. The rte_flow and RSS paths are UNTESTED: no NIC with them
 * was available (net/README.md).
 *
 * Idle. A device with RX interrupts (rte_eth_dev_rx_intr_ctl_q_get_fd works;
 * tested with net_tap, untested with a real NIC's vfio interrupts)
 * gets an epoll descriptor per endpoint that the poll hook exposes as its fd:
 * right before the shard sleeps, next_deadline arms the queue's interrupt
 * and looks at the queue once more (what it finds is kept for the next rx),
 * then the shard sleeps in ppoll until a frame, a message or a timer wakes
 * it; the first rx after waking disarms. Without RX interrupts (memif, as
 * DPDK 22.11 implements it, af_packet) the shard polls while busy and, idle,
 * sleeps in bounded steps that grow from SLEEP_MIN_NS to SLEEP_MAX_NS: the
 * first frame after a quiet spell waits up to that step (net/README.md).
 */
#define _GNU_SOURCE
#include <rte_config.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <rte_alarm.h>
#include <rte_byteorder.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_eal.h>
#include <rte_epoll.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_flow.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_udp.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "proc.h"
#include "runtime.h"

#define BURST 32
#define NB_DESC 1024
#define POOL_CACHE 256
#define HDRS (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr))
/* dpdk_rx prefetches a received frame's lines up to this many bytes */
#define RX_PREFETCH_END 256u
#define SLEEP_MIN_NS 50000ull     /* first idle sleep without RX interrupts */
#define SLEEP_MAX_NS 5000000ull   /* longest idle sleep without RX interrupts */
#define LINK_WAIT_NS 3000000000ull /* start waits this long for the link to come up */
#define START_RETRY_NS 5000000000ull /* rte_eth_dev_start retried this long (memif client) */
/* A memif client whose link is still down this long after it dialled dials
 * again, each wait twice the last. Never sooner: a dial again cuts the
 * handshake in progress, and DPDK's memif does not survive that (the
 * server's interrupt thread panicking on a closed descriptor, the
 * zero-copy client offering a closed one: docs/BENCHMARKS.md, session 31).
 * A handshake takes 5-15 ms here even at load 25; one whose server is not
 * scheduled for 250 ms (the old period) happened at load 13. */
#define CLIENT_REDIAL_NS 2000000000ull
#define CLIENT_LINK_WAIT_NS 30000000000ull /* ... for this long at its start */
#define MAX_SOCKETS 8

struct dpdk_ep {
    uint16_t port, q;
    uint16_t base_port, nshards;
    uint32_t ip;                  /* this node's, host order */
    struct rte_ether_addr mac;    /* source MAC */
    struct rte_mempool *pool;
    uint16_t ip_id;
    bool registered;              /* rte_thread_register() done by us */
    /* idle */
    int epfd;                     /* RX interrupt epoll, or -1 */
    bool armed;
    uint64_t sleep_ns;            /* next bounded sleep (no interrupts) */
    /* frames received by the pre-sleep look at the queue */
    struct rte_mbuf *stash[BURST];
    unsigned nstash;
    /* TX batch */
    struct rte_mbuf *tx[BURST];
    unsigned ntx;
    /* the last rx's mbufs: the frames it returned point into them (valid
     * until the next rx); freed by the next rx or close */
    struct rte_mbuf *held[BURST];
    unsigned nheld;
    /* payload copies of frames that span segments (valid until the next rx) */
    uint8_t rxbuf[BURST][HY_WIRE_MTU];
};

/* Process-wide state: written by start/stop (control path, while no
 * endpoint is open), read by the shards afterwards. */
static struct {
    bool eal_tried, eal_ok;
    char **argv; /* kept: EAL may hold on to its arguments */
    int argc;
    bool port_configured;
    uint16_t port;
    unsigned nshards;
    uint32_t ip;
    uint16_t base_port;
    struct rte_ether_addr mac;
    struct rte_mempool *pool_of_shard[HY_MAX_SHARDS];
    int socket_of_shard[HY_MAX_SHARDS];
    struct rte_mempool *pools[MAX_SOCKETS];
    bool intr;     /* the port has per-queue RX interrupt descriptors */
    bool flow;     /* rte_flow rules steer each shard's port to its queue */
    bool rss;      /* RSS spreads UDP flows over the queues */
    bool memif;    /* the port is a net_memif (its peer shares our rings) */
    struct rte_flow *flows[HY_MAX_SHARDS];
} G;

static inline void st_inc(uint64_t *c)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* ---- running control-path work on a helper thread ------------------------------------ */

struct job {
    int (*fn)(void *);
    void *arg;
    int rc;
    _Atomic int done;
};

static void *job_main(void *a)
{
    struct job *j = a;
    j->rc = j->fn(j->arg);
    atomic_store(&j->done, 1);
    return NULL;
}

/* Runs fn on a fresh pthread (default stack, no shard's affinity kept by
 * EAL) and waits for it: sleeping as a process when called from one, so the
 * shard keeps running its other work meanwhile. */
static int run_on_helper(int (*fn)(void *), void *arg)
{
    struct job j = {.fn = fn, .arg = arg, .rc = 0};
    atomic_init(&j.done, 0);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 8u << 20);
    int e = pthread_create(&t, &at, job_main, &j);
    pthread_attr_destroy(&at);
    if (e != 0)
        return HY_ENOMEM;
    while (!atomic_load(&j.done)) {
        if (hy_sleep_ns(1000000) != 0)
            usleep(1000); /* not in a process */
    }
    pthread_join(t, NULL);
    return j.rc;
}

/* ---- EAL ------------------------------------------------------------------------------------ */

static bool has_arg(const char *const *args, int n, const char *const *names)
{
    for (int i = 0; i < n; i++) {
        if (!args[i])
            continue;
        for (const char *const *nm = names; *nm; nm++) {
            size_t l = strlen(*nm);
            if (strncmp(args[i], *nm, l) == 0 && (args[i][l] == '\0' || args[i][l] == '=' ||
                                                  (l == 2 && args[i][0] == '-' && args[i][1] != '-')))
                return true;
        }
    }
    return false;
}

struct start_args {
    const struct hy_dist_config *cfg;
    const struct hy_dist_peer *self;
    unsigned nshards;
    int cpus[HY_MAX_SHARDS];
    int sockets[HY_MAX_SHARDS];
};

static int push_arg(char ***v, int *n, int *cap, const char *s)
{
    if (*n + 1 >= *cap) {
        int nc = *cap ? *cap * 2 : 16;
        char **nv = realloc(*v, (size_t)nc * sizeof(*nv));
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[*n] = strdup(s);
    if (!(*v)[*n])
        return -1;
    (*n)++;
    (*v)[*n] = NULL;
    return 0;
}

static int eal_init(struct start_args *sa)
{
    const struct hy_dist_config *cfg = sa->cfg;
    char **v = NULL;
    int n = 0, cap = 0;
    char buf[1024];
    int ok = push_arg(&v, &n, &cap, "hydra");
    /* quiet by default; a --log-level among the user's arguments wins */
    ok |= push_arg(&v, &n, &cap, "--log-level=5");
    static const char *const core_opts[] = {"-l", "-c", "--lcores", NULL};
    if (!has_arg(cfg->eal_args, cfg->eal_argc, core_opts)) {
        /* the shard CPUs, each once, in order */
        size_t off = 0;
        buf[0] = '\0';
        for (unsigned i = 0; i < sa->nshards; i++) {
            bool seen = false;
            for (unsigned k = 0; k < i; k++)
                seen |= sa->cpus[k] == sa->cpus[i];
            if (seen || sa->cpus[i] < 0)
                continue;
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%d", off ? "," : "",
                                    sa->cpus[i]);
            if (off >= sizeof(buf))
                return HY_EINVAL;
        }
        if (off) {
            ok |= push_arg(&v, &n, &cap, "-l");
            ok |= push_arg(&v, &n, &cap, buf);
        }
    }
    static const char *const prefix_opts[] = {"--file-prefix", NULL};
    if (!has_arg(cfg->eal_args, cfg->eal_argc, prefix_opts)) {
        /* one per node id: a restarted node reuses its runtime directory
         * (EAL leaves it behind when the process exits without
         * rte_eal_cleanup) instead of piling up new ones */
        snprintf(buf, sizeof(buf), "--file-prefix=hydra-node%u", cfg->node_id);
        ok |= push_arg(&v, &n, &cap, buf);
    }
    for (int i = 0; i < cfg->eal_argc; i++)
        if (cfg->eal_args[i])
            ok |= push_arg(&v, &n, &cap, cfg->eal_args[i]);
    if (ok != 0)
        return HY_ENOMEM;
    G.argv = v;
    G.argc = n;
    /* rte_eal_init permutes its argv: give it a copy of the pointers */
    char **copy = calloc((size_t)n + 1, sizeof(*copy));
    if (!copy)
        return HY_ENOMEM;
    memcpy(copy, v, (size_t)n * sizeof(*copy));
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 1; i < n && off < sizeof(buf); i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %s", v[i]);
    hy_log(HY_LOG_INFO, "dist/dpdk: rte_eal_init%s", buf);
    int rc = rte_eal_init(n, copy);
    free(copy);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dist/dpdk: rte_eal_init failed: %s", rte_strerror(rte_errno));
        return HY_EIO;
    }
    return 0;
}

/* ---- the port -------------------------------------------------------------------------------- */

static struct rte_mempool *pool_for(int socket, unsigned nshards)
{
    int slot = socket < 0 ? 0 : socket;
    if (slot >= MAX_SOCKETS)
        slot = MAX_SOCKETS - 1;
    if (G.pools[slot])
        return G.pools[slot];
    char name[RTE_MEMPOOL_NAMESIZE];
    snprintf(name, sizeof(name), "hy_mbuf_%d", slot);
    struct rte_mempool *mp = rte_mempool_lookup(name);
    if (!mp) {
        /* RX ring + TX ring + bursts in flight, per shard; per-lcore caches */
        unsigned want = nshards * (2 * NB_DESC + 4 * BURST) + (nshards + 4) * POOL_CACHE + 1024;
        unsigned n = 1;
        while (n - 1 < want)
            n <<= 1;
        mp = rte_pktmbuf_pool_create(name, n - 1, POOL_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
        if (!mp && socket != SOCKET_ID_ANY) /* e.g. --no-huge: memory on one socket */
            mp = rte_pktmbuf_pool_create(name, n - 1, POOL_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                         SOCKET_ID_ANY);
        if (!mp) {
            hy_log(HY_LOG_ERROR, "dist/dpdk: mbuf pool for socket %d: %s", socket,
                   rte_strerror(rte_errno));
            return NULL;
        }
        hy_log(HY_LOG_INFO, "dist/dpdk: mbuf pool %s: %u mbufs on socket %d", name, n - 1,
               socket);
    }
    G.pools[slot] = mp;
    return mp;
}

/* One rte_flow rule per shard: eth / ipv4 dst = this node / udp dst = base + s
 * -> queue s. Validated for every shard first; created only if all validate.
 * UNTESTED on hardware. */
static bool flow_rules(uint16_t port, unsigned nshards, bool create)
{
    for (unsigned s = 0; s < nshards; s++) {
        struct rte_flow_attr attr = {.ingress = 1};
        struct rte_flow_item_ipv4 ip_spec = {0}, ip_mask = {0};
        ip_spec.hdr.dst_addr = rte_cpu_to_be_32(G.ip);
        ip_mask.hdr.dst_addr = RTE_BE32(0xffffffff);
        struct rte_flow_item_udp udp_spec = {0}, udp_mask = {0};
        udp_spec.hdr.dst_port = rte_cpu_to_be_16((uint16_t)(G.base_port + s));
        udp_mask.hdr.dst_port = RTE_BE16(0xffff);
        struct rte_flow_item pat[] = {
            {.type = RTE_FLOW_ITEM_TYPE_ETH},
            {.type = RTE_FLOW_ITEM_TYPE_IPV4, .spec = &ip_spec, .mask = &ip_mask},
            {.type = RTE_FLOW_ITEM_TYPE_UDP, .spec = &udp_spec, .mask = &udp_mask},
            {.type = RTE_FLOW_ITEM_TYPE_END},
        };
        struct rte_flow_action_queue qa = {.index = (uint16_t)s};
        struct rte_flow_action act[] = {
            {.type = RTE_FLOW_ACTION_TYPE_QUEUE, .conf = &qa},
            {.type = RTE_FLOW_ACTION_TYPE_END},
        };
        struct rte_flow_error err;
        memset(&err, 0, sizeof(err));
        if (!create) {
            int rc = rte_flow_validate(port, &attr, pat, act, &err);
            if (rc != 0) {
                hy_log(HY_LOG_INFO, "dist/dpdk: port %u: no rte_flow steering (%s%s%s)", port,
                       rte_strerror(-rc), err.message ? ": " : "", err.message ? err.message : "");
                return false;
            }
        } else {
            G.flows[s] = rte_flow_create(port, &attr, pat, act, &err);
            if (!G.flows[s]) {
                hy_log(HY_LOG_WARNING, "dist/dpdk: port %u: rte_flow rule for shard %u failed (%s)",
                       port, s, err.message ? err.message : "?");
                return false;
            }
        }
    }
    return true;
}

static void flows_destroy(void)
{
    for (unsigned s = 0; s < HY_MAX_SHARDS; s++) {
        if (G.flows[s]) {
            struct rte_flow_error err;
            rte_flow_destroy(G.port, G.flows[s], &err);
            G.flows[s] = NULL;
        }
    }
    G.flow = false;
}

/* Stopping a port on EAL's interrupt thread.
 *
 * memif handles its peer's disconnect on that thread (its control channel's
 * callback), where it frees the shared rings and regions; a stop of our own
 * frees them too. Run from another thread, the two can free the same
 * regions at once (EAL's "Error: Invalid memory", a corrupted heap). An
 * alarm callback runs on the interrupt thread, one callback at a time, so a
 * stop queued there runs after a disconnect in progress, never beside it. */
struct port_stop {
    uint16_t port;
    int rc;
    _Atomic int done;
};

static void port_stop_cb(void *a)
{
    struct port_stop *ps = a;
    ps->rc = rte_eth_dev_stop(ps->port);
    atomic_store(&ps->done, 1);
}

#define PORT_STOP_WAIT_NS 5000000000ull

static int port_stop(uint16_t port)
{
    struct port_stop *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return rte_eth_dev_stop(port);
    ps->port = port;
    if (rte_eal_alarm_set(1, port_stop_cb, ps) != 0) {
        free(ps);
        return rte_eth_dev_stop(port); /* no interrupt thread to queue on */
    }
    uint64_t t0 = hy_now_ns();
    while (!atomic_load(&ps->done)) {
        if (hy_now_ns() - t0 > PORT_STOP_WAIT_NS) {
            /* the interrupt thread is stuck: leave it the record */
            hy_log(HY_LOG_WARNING, "dist/dpdk: port %u: stop not run by EAL's interrupt thread "
                   "within %llu s", port, PORT_STOP_WAIT_NS / 1000000000ull);
            return -ETIMEDOUT;
        }
        usleep(1000);
    }
    int rc = ps->rc;
    free(ps);
    return rc;
}

/* Whether port's device is a memif client (client is memif's role unless
 * its devargs say role=server): the one kind of port whose link needs this
 * node to dial again. */
static bool memif_client(const struct rte_eth_dev_info *di)
{
    if (!di->driver_name || strcmp(di->driver_name, "net_memif") != 0 || !di->device)
        return false;
    const struct rte_devargs *da = rte_dev_devargs(di->device);
    return !(da && da->args && strstr(da->args, "role=server") != NULL);
}

static int port_up(struct start_args *sa)
{
    const struct hy_dist_config *cfg = sa->cfg;
    uint16_t port = cfg->dpdk_port;
    unsigned nq = sa->nshards;
    if (!rte_eth_dev_is_valid_port(port)) {
        hy_log(HY_LOG_ERROR, "dist/dpdk: no DPDK port %u (%u available: give a device or vdev "
               "in the EAL arguments)", port, rte_eth_dev_count_avail());
        return HY_ENODEV;
    }
    struct rte_eth_dev_info di;
    int rc = rte_eth_dev_info_get(port, &di);
    if (rc != 0) {
        hy_log(HY_LOG_ERROR, "dist/dpdk: port %u: dev_info: %s", port, rte_strerror(-rc));
        return HY_EIO;
    }
    if (di.max_rx_queues < nq || di.max_tx_queues < nq) {
        hy_log(HY_LOG_ERROR, "dist/dpdk: port %u (%s) has %u RX / %u TX queues, %u shards need "
               "one each", port, di.driver_name, di.max_rx_queues, di.max_tx_queues, nq);
        return HY_ENOTSUP;
    }
    G.port = port;
    G.memif = di.driver_name && strcmp(di.driver_name, "net_memif") == 0;
    G.nshards = nq;
    G.ip = sa->self->ip;
    G.base_port = sa->self->base_port;
    for (unsigned s = 0; s < nq; s++) {
        G.socket_of_shard[s] = sa->sockets[s];
        G.pool_of_shard[s] = pool_for(sa->sockets[s], nq);
        if (!G.pool_of_shard[s])
            return HY_ENOMEM;
    }
    /* RSS on UDP/IPv4 where the device has it (spreads; rte_flow steers) */
    uint64_t rss_hf = di.flow_type_rss_offloads & (RTE_ETH_RSS_NONFRAG_IPV4_UDP | RTE_ETH_RSS_IPV4);
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    if (nq > 1 && rss_hf) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
    }
    conf.intr_conf.rxq = 1;
    rc = rte_eth_dev_configure(port, (uint16_t)nq, (uint16_t)nq, &conf);
    if (rc != 0) {
        conf.intr_conf.rxq = 0; /* no RX interrupts: poll-then-sleep */
        rc = rte_eth_dev_configure(port, (uint16_t)nq, (uint16_t)nq, &conf);
    }
    if (rc != 0 && conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE;
        conf.rx_adv_conf.rss_conf.rss_hf = 0;
        rss_hf = 0;
        rc = rte_eth_dev_configure(port, (uint16_t)nq, (uint16_t)nq, &conf);
    }
    if (rc != 0) {
        hy_log(HY_LOG_ERROR, "dist/dpdk: port %u: configure: %s", port, rte_strerror(-rc));
        return HY_EIO;
    }
    G.port_configured = true;
    G.rss = conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS;
    uint16_t nrx = NB_DESC, ntx = NB_DESC;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
    for (unsigned s = 0; s < nq; s++) {
        int sock = G.socket_of_shard[s] < 0 ? SOCKET_ID_ANY : G.socket_of_shard[s];
        rc = rte_eth_rx_queue_setup(port, (uint16_t)s, nrx, (unsigned)sock, NULL,
                                    G.pool_of_shard[s]);
        if (rc == 0)
            rc = rte_eth_tx_queue_setup(port, (uint16_t)s, ntx, (unsigned)sock, NULL);
        if (rc != 0) {
            hy_log(HY_LOG_ERROR, "dist/dpdk: port %u: queue %u setup: %s", port, s,
                   rte_strerror(-rc));
            return HY_EIO;
        }
    }
    /* this node's MAC from the peer table; else the port's own */
    static const uint8_t zero[6];
    if (memcmp(sa->self->mac, zero, 6) != 0) {
        memcpy(G.mac.addr_bytes, sa->self->mac, 6);
        struct rte_ether_addr cur;
        if (rte_eth_macaddr_get(port, &cur) == 0 && !rte_is_same_ether_addr(&cur, &G.mac) &&
            rte_eth_dev_default_mac_addr_set(port, &G.mac) != 0)
            hy_log(HY_LOG_INFO, "dist/dpdk: port %u keeps its MAC; frames are sent from the "
                   "cluster file's, and must reach this port (promiscuous or same MAC)", port);
    } else {
        rte_eth_macaddr_get(port, &G.mac);
    }
    uint64_t t0 = hy_now_ns();
    for (;;) {
        rc = rte_eth_dev_start(port);
        if (rc == 0)
            break;
        /* e.g. a memif client whose server is not there yet */
        if (hy_now_ns() - t0 > START_RETRY_NS) {
            hy_log(HY_LOG_ERROR, "dist/dpdk: port %u: start: %s", port, rte_strerror(-rc));
            return HY_EIO;
        }
        usleep(20000);
    }
    /* what the device offers, logged */
    if (conf.intr_conf.rxq) {
        /* (asking a device without them logs an error: hush it) */
        uint32_t lvl = rte_log_get_global_level();
        rte_log_set_global_level(RTE_LOG_EMERG);
        G.intr = rte_eth_dev_rx_intr_ctl_q_get_fd(port, 0) >= 0;
        rte_log_set_global_level(lvl);
    } else {
        G.intr = false;
    }
    G.flow = false;
    if (nq > 1 && flow_rules(port, nq, false)) {
        G.flow = flow_rules(port, nq, true);
        if (!G.flow)
            flows_destroy();
    }
    hy_log(HY_LOG_NOTICE,
           "dist/dpdk: port %u (%s): %u queue pairs; steering: %s; idle: %s", port,
           di.driver_name, nq,
           G.flow  ? "rte_flow, one rule per shard (untested on hardware)"
           : G.rss ? "RSS over UDP/IPv4 (spreads only; untested on hardware), handover"
           : nq > 1 ? "none, frames on the wrong queue are handed over"
                    : "single queue",
           G.intr ? "RX interrupts" : "bounded poll-then-sleep (no RX interrupts)");
    /* wait a while for the link (a memif client: reconnected while the
     * server refuses it). A memif server does not wait: its client dials it,
     * and a client started once the server's port is up is never refused. */
    bool client = memif_client(&di);
    t0 = hy_now_ns();
    uint64_t tried = t0, redial_ns = CLIENT_REDIAL_NS;
    for (;;) {
        if (G.memif && !client)
            break;
        struct rte_eth_link link;
        memset(&link, 0, sizeof(link));
        if (rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP)
            break;
        uint64_t now = hy_now_ns();
        if (now - t0 > (client ? CLIENT_LINK_WAIT_NS : LINK_WAIT_NS)) {
            hy_log(HY_LOG_NOTICE, "dist/dpdk: port %u: link still down; carrying on", port);
            break;
        }
        if (client && now - tried > redial_ns) {
            /* the server took the connection before its own port started
             * (its socket exists from its EAL's start) and refused it; the
             * memif client does not dial again by itself: stop and start */
            tried = now;
            redial_ns *= 2;
            hy_log(HY_LOG_INFO, "dist/dpdk: port %u: memif link down; dialling the server again",
                   port);
            port_stop(port);
            if ((rc = rte_eth_dev_start(port)) != 0)
                hy_log(HY_LOG_INFO, "dist/dpdk: port %u: start: %s (trying again)", port,
                       rte_strerror(-rc));
        }
        usleep(5000);
    }
    return 0;
}

static int start_job(void *a)
{
    struct start_args *sa = a;
    if (!G.eal_tried) {
        G.eal_tried = true;
        int rc = eal_init(sa);
        if (rc)
            return rc;
        G.eal_ok = true;
    }
    if (!G.eal_ok)
        return HY_EIO; /* EAL cannot be initialised twice in a process */
    return port_up(sa);
}

static int dpdk_start(const struct hy_dist_config *cfg, const struct hy_dist_peer *self,
                      unsigned nshards)
{
    if (nshards == 0 || nshards > HY_MAX_SHARDS || (cfg->eal_argc > 0 && !cfg->eal_args) ||
        cfg->eal_argc < 0)
        return HY_EINVAL;
    struct start_args *sa = calloc(1, sizeof(*sa));
    if (!sa)
        return HY_ENOMEM;
    sa->cfg = cfg;
    sa->self = self;
    sa->nshards = nshards;
    for (unsigned s = 0; s < nshards; s++) {
        int cpu = -1, numa = 0;
        hy_shard_cpu(s, &cpu, &numa);
        sa->cpus[s] = cpu;
        sa->sockets[s] = numa;
    }
    int rc = run_on_helper(start_job, sa);
    free(sa);
    return rc;
}

static int stop_job(void *a)
{
    (void)a;
    flows_destroy();
    if (G.port_configured) {
        /* memif tells its peer; queues are released by the next configure */
        int rc = port_stop(G.port);
        if (rc != 0)
            hy_log(HY_LOG_WARNING, "dist/dpdk: port %u: stop: %s", G.port, rte_strerror(-rc));
    }
    return 0;
}

static void dpdk_stop(void)
{
    if (G.eal_ok)
        run_on_helper(stop_job, NULL);
}

/* memif: whether the peer is still attached (the link up), i.e. still
 * sharing rings that our stop would free under its poller. Other devices:
 * false (their peers share no memory with us). */
static bool dpdk_peer_attached(void)
{
    if (!G.eal_ok || !G.port_configured || !G.memif)
        return false;
    struct rte_eth_link link;
    memset(&link, 0, sizeof(link));
    return rte_eth_link_get_nowait(G.port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

/* ---- endpoints (each on its shard's thread) ---------------------------------------------------- */

static int dpdk_open(struct hy__ep *ep)
{
    if (ep->shard >= G.nshards)
        return HY_EINVAL;
    /* allocated by the shard's thread: first touch puts it on its node */
    struct dpdk_ep *d = calloc(1, sizeof(*d));
    if (!d)
        return HY_ENOMEM;
    d->port = G.port;
    d->q = (uint16_t)ep->shard;
    d->base_port = G.base_port;
    d->nshards = (uint16_t)G.nshards;
    d->ip = G.ip;
    d->mac = G.mac;
    d->pool = G.pool_of_shard[ep->shard];
    d->epfd = -1;
    d->sleep_ns = SLEEP_MIN_NS;
    if (rte_lcore_id() == LCORE_ID_ANY) {
        if (rte_thread_register() == 0) {
            d->registered = rte_lcore_id() != LCORE_ID_ANY;
        } else {
            hy_log(HY_LOG_INFO, "dist/dpdk: shard %u not registered with DPDK (%s): mbuf "
                   "allocation bypasses the per-lcore cache", ep->shard, rte_strerror(rte_errno));
        }
    }
    if (G.intr) {
        d->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (d->epfd >= 0 &&
            rte_eth_dev_rx_intr_ctl_q(d->port, d->q, d->epfd, RTE_INTR_EVENT_ADD, NULL) != 0) {
            hy_log(HY_LOG_INFO, "dist/dpdk: queue %u: RX interrupt not available: polling",
                   d->q);
            close(d->epfd);
            d->epfd = -1;
        }
    }
    ep->tp = d;
    ep->fd = d->epfd;
    /* memif's rx burst reads the shared rings: an idle shard may look
     * again and again (hy__ep_poll). Not tap's (a read(2) a call) nor
     * other drivers' (untested) */
    ep->rx_spin = G.memif;
    return 0;
}

static void dpdk_flush(struct hy__ep *ep)
{
    struct dpdk_ep *d = ep->tp;
    unsigned sent = 0, tries = 0;
    while (sent < d->ntx && tries < 4) {
        uint16_t k = rte_eth_tx_burst(d->port, d->q, d->tx + sent, (uint16_t)(d->ntx - sent));
        sent += k;
        if (k == 0)
            tries++;
    }
    if (sent < d->ntx) /* the device is full: dropped, the channels retransmit */
        rte_pktmbuf_free_bulk(d->tx + sent, d->ntx - sent);
    d->ntx = 0;
}

static void drain_intr(struct dpdk_ep *d)
{
    struct rte_epoll_event ev[4];
    while (rte_epoll_wait(d->epfd, ev, 4, 0) == 4) {
    }
}

static void disarm(struct dpdk_ep *d)
{
    rte_eth_dev_rx_intr_disable(d->port, d->q);
    drain_intr(d);
    d->armed = false;
}

static void dpdk_close(struct hy__ep *ep)
{
    struct dpdk_ep *d = ep->tp;
    if (!d)
        return;
    dpdk_flush(ep);
    if (d->nstash)
        rte_pktmbuf_free_bulk(d->stash, d->nstash);
    d->nstash = 0;
    if (d->nheld)
        rte_pktmbuf_free_bulk(d->held, d->nheld);
    d->nheld = 0;
    if (d->epfd >= 0) {
        if (d->armed)
            disarm(d);
        rte_eth_dev_rx_intr_ctl_q(d->port, d->q, d->epfd, RTE_INTR_EVENT_DEL, NULL);
        close(d->epfd);
    }
    if (d->registered)
        rte_thread_unregister();
    free(d);
    ep->tp = NULL;
    ep->fd = -1;
}

/* Validates Ethernet/IPv4/UDP to this node's ports and points rx->buf at
 * the payload: in the mbuf when it is contiguous there, else copied into
 * out. Returns its length, 0 for a frame that is not ours (silently
 * ignored), -1 for one of ours that is malformed. */
static int parse(const struct dpdk_ep *d, struct rte_mbuf *m, uint8_t *out, struct hy__rx *rx)
{
    uint8_t tmp[HDRS + 64];
    uint32_t plen = rte_pktmbuf_pkt_len(m);
    if (plen < HDRS)
        return 0;
    const struct rte_ether_hdr *eh = rte_pktmbuf_read(m, 0, sizeof(*eh), tmp);
    if (!eh || eh->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4))
        return 0;
    uint32_t off = sizeof(*eh);
    const struct rte_ipv4_hdr *ip = rte_pktmbuf_read(m, off, sizeof(*ip), tmp);
    if (!ip || (ip->version_ihl >> 4) != 4 || ip->next_proto_id != IPPROTO_UDP ||
        rte_be_to_cpu_32(ip->dst_addr) != d->ip)
        return 0;
    uint32_t ihl = (uint32_t)(ip->version_ihl & 0xf) * 4;
    uint32_t tot = rte_be_to_cpu_16(ip->total_length);
    if (ihl < sizeof(*ip) || tot < ihl + sizeof(struct rte_udp_hdr) || off + tot > plen)
        return -1;
    if (rte_be_to_cpu_16(ip->fragment_offset) & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
        return -1; /* Hydra never fragments at the IP level */
    uint64_t ck = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
    if (ck == RTE_MBUF_F_RX_IP_CKSUM_BAD)
        return -1;
    if (ck != RTE_MBUF_F_RX_IP_CKSUM_GOOD) {
        const void *iph = rte_pktmbuf_read(m, off, ihl, tmp);
        if (!iph || rte_raw_cksum(iph, ihl) != 0xffff)
            return -1;
    }
    off += ihl;
    const struct rte_udp_hdr *uh = rte_pktmbuf_read(m, off, sizeof(*uh), tmp);
    if (!uh)
        return -1;
    uint16_t dport = rte_be_to_cpu_16(uh->dst_port);
    rx->src_known = true;
    rx->src_ip = rte_be_to_cpu_32(ip->src_addr);
    rx->src_port = rte_be_to_cpu_16(uh->src_port);
    if (dport < d->base_port || dport >= d->base_port + d->nshards)
        return 0;
    uint32_t ulen = rte_be_to_cpu_16(uh->dgram_len);
    if (ulen < sizeof(*uh) || ulen > tot - ihl)
        return -1;
    uint32_t n = ulen - (uint32_t)sizeof(*uh);
    if (n > HY_WIRE_MTU)
        return -1;
    off += sizeof(*uh);
    const void *p = rte_pktmbuf_read(m, off, n, out);
    if (!p)
        return -1;
    rx->buf = (uint8_t *)(uintptr_t)p; /* (the mbuf is ours until the next rx) */
    return (int)n;
}

static unsigned dpdk_rx(struct hy__ep *ep, struct hy__rx *out, unsigned max)
{
    struct dpdk_ep *d = ep->tp;
    struct rte_mbuf *mb[BURST];
    unsigned got;
    if (max > BURST)
        max = BURST;
    if (d->armed)
        disarm(d);
    if (d->nheld) {
        /* (a burst of a few, the round trip's one frame: rte_pktmbuf_free
         * costs ~63 instructions a frame here, rte_pktmbuf_free_bulk ~110
         * for one; the bulk call wins only for many) */
        if (d->nheld <= 4) {
            for (unsigned i = 0; i < d->nheld; i++)
                rte_pktmbuf_free(d->held[i]);
        } else {
            rte_pktmbuf_free_bulk(d->held, d->nheld);
        }
        d->nheld = 0;
    }
    if (d->nstash) {
        got = d->nstash < max ? d->nstash : max;
        memcpy(mb, d->stash, got * sizeof(*mb));
        d->nstash -= got;
        memmove(d->stash, d->stash + got, d->nstash * sizeof(*mb));
    } else {
        got = rte_eth_rx_burst(d->port, d->q, mb, (uint16_t)max);
    }
    if (!got)
        return 0;
    /* The frames' lines after the first, asked for at once: a memif
     * zero-copy client's frames were written by the other process's CPU,
     * and read in order (parse, then the tag's word by word loop, too long
     * for the CPU to run ahead to the next line) each line's miss would
     * wait for the one before. Up to RX_PREFETCH_END bytes a frame: a
     * small message's whole frame; longer ones are read sequentially,
     * which the hardware prefetcher follows. */
    for (unsigned i = 0; i < got; i++) {
        const char *fp = rte_pktmbuf_mtod(mb[i], const char *);
        unsigned end = mb[i]->data_len < RX_PREFETCH_END ? mb[i]->data_len : RX_PREFETCH_END;
        for (unsigned o = 64; o < end; o += 64)
            rte_prefetch0(fp + o);
    }
    /* traffic shortens the idle steps: a burst brings them down to the
     * minimum at once, a lone heartbeat only a little */
    d->sleep_ns = d->sleep_ns / 4 > SLEEP_MIN_NS ? d->sleep_ns / 4 : SLEEP_MIN_NS;
    unsigned n = 0;
    for (unsigned i = 0; i < got; i++) {
        int len = parse(d, mb[i], d->rxbuf[n], &out[n]);
        if (len > 0) {
            out[n].len = (uint16_t)len;
            n++;
        } else if (len < 0) {
            st_inc(&ep->st.malformed);
        }
    }
    memcpy(d->held, mb, got * sizeof(*mb)); /* freed by the next rx */
    d->nheld = got;
    return n;
}

static int dpdk_tx(struct hy__ep *ep, const struct hy_dist_peer *to, uint16_t dst_shard,
                   const uint8_t *buf, size_t len)
{
    struct dpdk_ep *d = ep->tp;
    if (len > HY_WIRE_MTU)
        return HY_EMSGSIZE;
    if (d->ntx == BURST)
        dpdk_flush(ep);
    struct rte_mbuf *m = rte_pktmbuf_alloc(d->pool);
    if (!m)
        return HY_ENOMEM; /* the channels retransmit */
    uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)(HDRS + len));
    if (!p) {
        rte_pktmbuf_free(m);
        return HY_EMSGSIZE;
    }
    struct rte_ether_hdr *eh = (struct rte_ether_hdr *)p;
    memcpy(eh->dst_addr.addr_bytes, to->mac, 6);
    eh->src_addr = d->mac;
    eh->ether_type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eh + 1);
    ip->version_ihl = RTE_IPV4_VHL_DEF;
    ip->type_of_service = 0;
    ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + sizeof(struct rte_udp_hdr) + len));
    ip->packet_id = rte_cpu_to_be_16(d->ip_id++);
    ip->fragment_offset = RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_UDP;
    ip->hdr_checksum = 0;
    ip->src_addr = rte_cpu_to_be_32(d->ip);
    ip->dst_addr = rte_cpu_to_be_32(to->ip);
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    struct rte_udp_hdr *uh = (struct rte_udp_hdr *)(ip + 1);
    uh->src_port = rte_cpu_to_be_16((uint16_t)(d->base_port + d->q));
    uh->dst_port = rte_cpu_to_be_16((uint16_t)(to->base_port + dst_shard));
    uh->dgram_len = rte_cpu_to_be_16((uint16_t)(sizeof(*uh) + len));
    uh->dgram_cksum = 0; /* optional over IPv4; the frames carry their own checks */
    memcpy(uh + 1, buf, len);
    d->tx[d->ntx++] = m;
    return 0;
}

/* Asked right before the shard sleeps. */
static uint64_t dpdk_next_deadline(struct hy__ep *ep)
{
    struct dpdk_ep *d = ep->tp;
    if (!d)
        return UINT64_MAX;
    if (d->nstash)
        return 0;
    if (d->epfd >= 0) {
        if (!d->armed) {
            /* ENOTSUP: the descriptor signals by itself (e.g. tap's queue fd) */
            rte_eth_dev_rx_intr_enable(d->port, d->q);
            drain_intr(d);
            d->armed = true;
        }
        /* a frame that came before the interrupt was armed wakes nobody:
         * look once more, keep what is there for the next rx */
        d->nstash = rte_eth_rx_burst(d->port, d->q, d->stash, BURST);
        return d->nstash ? 0 : UINT64_MAX;
    }
    uint64_t t = hy_now_ns() + d->sleep_ns;
    d->sleep_ns = d->sleep_ns * 2 > SLEEP_MAX_NS ? SLEEP_MAX_NS : d->sleep_ns * 2;
    return t;
}

const struct hy__transport hy__transport_dpdk = {
    .name = "dpdk",
    .start = dpdk_start,
    .stop = dpdk_stop,
    .peer_attached = dpdk_peer_attached,
    .open = dpdk_open,
    .close = dpdk_close,
    .rx = dpdk_rx,
    .tx = dpdk_tx,
    .flush = dpdk_flush,
    .next_deadline = dpdk_next_deadline,
};
