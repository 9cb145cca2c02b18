/* hydra-kvcache: a memcached-compatible cache on Hydra, one shard per core.
 * Reads memcached-style options, raises the descriptor limit, configures the
 * runtime and runs the application until SIGINT or SIGTERM (exit 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kvcache.h"

static void usage(FILE *f)
{
    fprintf(f,
            "hydra-kvcache %s: a memcached-compatible cache (text and meta protocols)\n"
            "usage: hydra-kvcache [options]\n"
            "  -p, --port=PORT          TCP port to listen on (default 11211)\n"
            "  -l, --listen=ADDR        address to listen on (default 127.0.0.1)\n"
            "  -m, --memory-limit=MB    item memory of the whole node in megabytes (default\n"
            "                           64), split evenly over the shards: each shard owns\n"
            "                           its keys and gets MB / shards\n"
            "  -c, --conn-limit=N       max simultaneous connections (default 1024); the\n"
            "                           descriptor limit is raised to fit\n"
            "  -t, --threads=N          shards (threads, one per core; default: one per\n"
            "                           CPU this process may use, at most %d)\n"
            "  -I, --max-item-size=SIZE largest item, e.g. 512k or 2m (default 1m)\n"
            "  -f, --slab-growth-factor=F  chunk size growth factor (default 1.25)\n"
            "  -n, --slab-min-size=N    minimum space for key and value (default 48)\n"
            "  -o, --extended=OPT[,OPT] idle_timeout=S (close connections idle S seconds;\n"
            "                           default 0: never), write_timeout=S (close a client\n"
            "                           that takes no reply for S seconds; default 5),\n"
            "                           read_timeout=S (close when a command stays\n"
            "                           incomplete S seconds; default 30, 0: never),\n"
            "                           stats_interval=S (print a stats line every S\n"
            "                           seconds; default 0: never), acceptors=N (per\n"
            "                           shard), io=auto|io_uring|epoll (socket poller),\n"
            "                           idle_spin_us=N (a shard with nothing to do spins\n"
            "                           N us before it sleeps; default 0: it sleeps at once),\n"
            "                           wake_defer_us=N (a busy shard wakes a sleeping one\n"
            "                           it sent commands or replies to once it has nothing\n"
            "                           ready to run, or N us after the first, instead of\n"
            "                           as each connection sends; default 0: at once),\n"
            "                           xshard_spin_us=N (a shard that just forwarded a\n"
            "                           command to an awake shard or took in one, or a\n"
            "                           reply, waits up to N us for more in a spin before\n"
            "                           it sleeps; default 20; 0: it sleeps at once),\n"
            "                           rx_multishot=0|1 (io_uring: one receive kept armed\n"
            "                           per connection across requests; default 0),\n"
            "                           pin=0|1 (0, the default: the kernel places the\n"
            "                           shards' threads, next to the clients and the TCP\n"
            "                           work they wake, as memcached's threads; 1: each\n"
            "                           shard's thread stays on its CPU, so every wake-up\n"
            "                           of it from another CPU costs an interrupt),\n"
            "                           direct=0|1 (1, the default: a connection's last\n"
            "                           command for a key of another shard is answered by\n"
            "                           that shard on the socket itself, one hand-off\n"
            "                           between shards instead of two; 0: the reply travels\n"
            "                           back to the connection's shard),\n"
            "                           direct_ring=0|1|2 (1: that shard sends the reply\n"
            "                           through its io_uring, with its other submissions;\n"
            "                           2: submitted as soon as its owner's mailbox is\n"
            "                           empty; 0, the default, or the epoll poller: the\n"
            "                           owner's send(2)),\n"
            "                           direct_home=0|1 (1: when the connection's shard is\n"
            "                           awake, the reply goes back to it and it writes the\n"
            "                           reply with its other output; asleep: as direct=1;\n"
            "                           default 0),\n"
            "                           send_from_item=BYTES (a get on the connection's own\n"
            "                           shard of a value this large or larger is sent from\n"
            "                           the item, not copied first; 0: never; default 512),\n"
            "                           hugepages=0|1 (1, the default: each shard's slab\n"
            "                           pages come from one 2 MiB-aligned reservation and\n"
            "                           its hash table from 2 MiB-aligned memory, both\n"
            "                           advised for transparent huge pages, which the\n"
            "                           kernel gives where it can (THP enabled = always or\n"
            "                           madvise); 0: malloc's pages)\n"
            "  --console=ADDR:PORT      serve the node console (dashboard, /metrics, /api)\n"
            "                           there, e.g. 127.0.0.1:8080; a non-loopback address\n"
            "                           needs HYDRA_CONSOLE_TOKEN set (actions need it too)\n"
            "  -v, --verbose            more log output (repeat for more)\n"
            "  -h, --help               this text\n"
            "  -V, --version            print the version\n"
            "SIGINT or SIGTERM stops it in order: no new connections, idle ones closed at\n"
            "once, requests in flight answered; exit status 0.\n",
            kvcache_proto_version(), KVCACHE_MAX_SHARDS);
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (*end)
        return false;
    *out = v;
    return true;
}

static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static enum hy_io_backend io_backend = HY_IO_AUTO;
/* -o idle_spin_us: a shard with nothing to do sleeps at once by default, as
 * memcached's threads do: the spin of the runtime's default would take CPU
 * from the clients and the kernel's TCP work sharing the cores */
static int64_t idle_spin_us = 0;
/* -o wake_defer_us: hy_config.wake_defer_ns */
static int64_t wake_defer_us = 0;
/* -o xshard_spin_us: hy_config.xshard_spin_ns. 20 by default: in a quiet
 * interleaved A/B (docs/BENCHMARKS.md, session 32) higher ops/s in 12 of 16
 * rows and lower CPU per op in 12 of 16, p99 lower in 4 of 8. */
static int64_t xshard_spin_us = 20;
/* -o rx_multishot: hy_config.io_rx_multishot */
static bool rx_multishot = false;
/* -o pin: unpinned by default. A pinned shard cannot follow the kernel's
 * wake-affine placement of the client and of the softirq work that wakes
 * it, so each wake-up crosses CPUs (an IPI, a VM exit under a hypervisor);
 * on a quiet machine pinned shards took 1.2-2.0x memcached's CPU per op,
 * unpinned 1.0-1.3x (docs/BENCHMARKS.md, kvcache section). */
static bool pin = false;

static bool parse_ext(char *arg)
{
    for (char *save = NULL, *t = strtok_r(arg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        uint64_t v;
        if (eq && strncmp(t, "io=", 3) == 0) {
            if (strcmp(eq + 1, "epoll") == 0)
                io_backend = HY_IO_EPOLL;
            else if (strcmp(eq + 1, "io_uring") == 0)
                io_backend = HY_IO_URING;
            else if (strcmp(eq + 1, "auto") == 0)
                io_backend = HY_IO_AUTO;
            else {
                fprintf(stderr, "hydra-kvcache: -o %s: io is auto, io_uring or epoll\n", t);
                return false;
            }
            continue;
        }
        if (!eq || !parse_uint(eq + 1, UINT32_MAX, &v)) {
            fprintf(stderr, "hydra-kvcache: -o %s: expected NAME=NUMBER\n", t);
            return false;
        }
        *eq = '\0';
        if (strcmp(t, "idle_timeout") == 0)
            kvcache_cfg.set.idle_timeout = (uint32_t)v;
        else if (strcmp(t, "write_timeout") == 0 && v > 0)
            kvcache_cfg.write_timeout_s = (uint32_t)v;
        else if (strcmp(t, "read_timeout") == 0)
            kvcache_cfg.read_timeout_s = (uint32_t)v;
        else if (strcmp(t, "stats_interval") == 0)
            kvcache_cfg.stats_interval_s = (uint32_t)v;
        else if (strcmp(t, "idle_spin_us") == 0 && v <= 1000000)
            idle_spin_us = (int64_t)v;
        else if (strcmp(t, "wake_defer_us") == 0 && v <= 1000000)
            wake_defer_us = (int64_t)v;
        else if (strcmp(t, "xshard_spin_us") == 0 && v <= 1000)
            xshard_spin_us = (int64_t)v;
        else if (strcmp(t, "pin") == 0 && v <= 1)
            pin = v == 1;
        else if (strcmp(t, "rx_multishot") == 0 && v <= 1)
            rx_multishot = v == 1;
        else if (strcmp(t, "direct") == 0 && v <= 1)
            kvcache_cfg.direct = v == 1;
        else if (strcmp(t, "direct_ring") == 0 && v <= 2) {
            kvcache_cfg.direct_ring = v >= 1;
            kvcache_cfg.direct_ring_submit = v == 2;
        }
        else if (strcmp(t, "hugepages") == 0 && v <= 1)
            kvcache_cfg.hugepages = v == 1;
        else if (strcmp(t, "direct_home") == 0 && v <= 1)
            kvcache_cfg.direct_home = v == 1;
        else if (strcmp(t, "send_from_item") == 0)
            kvcache_cfg.send_from_item = (uint32_t)v;
        else if (strcmp(t, "acceptors") == 0 && v > 0 && v <= 64)
            kvcache_cfg.acceptors = (uint32_t)v;
        else {
            fprintf(stderr, "hydra-kvcache: -o %s: unknown option or bad value\n", t);
            return false;
        }
    }
    return true;
}

/* room for every connection twice (its socket, and the duplicate the key
 * owners write direct replies through) plus listeners, rings' eventfds and
 * the like */
static void raise_nofile(uint32_t conns, unsigned shards)
{
    rlim_t want = 2 * (rlim_t)conns + 64 + 16 * (rlim_t)shards;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
        fprintf(stderr,
                "hydra-kvcache: -c %u needs %llu descriptors; the hard limit is %llu: "
                "connections beyond it are refused\n",
                conns, (unsigned long long)want, (unsigned long long)rl.rlim_max);
        want = rl.rlim_max;
    }
    rl.rlim_cur = want;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
    struct kvcache_settings *s = &kvcache_cfg.set;
    s->port = 11211;
    s->inter = "127.0.0.1";
    s->maxbytes = 64ull << 20;
    s->maxconns = 1024;
    s->item_size_max = 1u << 20;
    s->factor = 1.25;
    s->chunk_size = KVCACHE_CHUNK_MIN;
    kvcache_cfg.write_timeout_s = 5;
    kvcache_cfg.read_timeout_s = 30;
    kvcache_cfg.acceptors = 4;
    /* direct replies: fewer hand-offs, lower CPU per op in two interleaved
     * A/B runs (docs/BENCHMARKS.md, kvcache section) */
    kvcache_cfg.direct = true;
    /* the owner's reply through its ring (-o direct_ring=1|2): no win in
     * interleaved A/B runs at 50 connections, lower CPU per op at 500
     * (docs/BENCHMARKS.md, session 29): off until a quiet run decides */
    kvcache_cfg.direct_ring = false;
    /* a local get of 512 B and up sent from the item: lower user time per
     * op at 500 connections in an interleaved A/B (docs/BENCHMARKS.md) */
    kvcache_cfg.send_from_item = 512;
    /* the stores on transparent huge pages: lower CPU per op in 35 of 48
     * interleaved pairs with 1 KiB values, 26 of 56 with 32 B (even)
     * (docs/BENCHMARKS.md, session 30) */
    kvcache_cfg.hugepages = true;
    /* a forwarded reply home when the connection's shard is awake (-o
     * direct_home=1): fewer system calls, lower CPU per op in 23 of 48
     * pairs (18 of 32 at 500 connections, 5 of 16 at 50) (same) */
    kvcache_cfg.direct_home = false;
    unsigned shards = 0;

    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"listen", required_argument, NULL, 'l'},
        {"memory-limit", required_argument, NULL, 'm'},
        {"conn-limit", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"max-item-size", required_argument, NULL, 'I'},
        {"slab-growth-factor", required_argument, NULL, 'f'},
        {"slab-min-size", required_argument, NULL, 'n'},
        {"extended", required_argument, NULL, 'o'},
        {"verbose", no_argument, NULL, 'v'},
        {"console", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "p:l:m:c:t:I:f:n:o:vhV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            if (!parse_uint(optarg, 65535, &v))
                goto bad;
            s->port = (uint16_t)v;
            break;
        case 'l':
            s->inter = optarg;
            break;
        case 'm':
            if (!parse_uint(optarg, 1ull << 30, &v) || v == 0)
                goto bad;
            s->maxbytes = v << 20;
            break;
        case 'c':
            if (!parse_uint(optarg, 1u << 24, &v) || v == 0)
                goto bad;
            s->maxconns = (uint32_t)v;
            break;
        case 't':
            if (!parse_uint(optarg, KVCACHE_MAX_SHARDS, &v) || v == 0)
                goto bad;
            shards = (unsigned)v;
            break;
        case 'I':
            if (!parse_size(optarg, &v) || v < 1024 || v > (1u << 30)) {
                fprintf(stderr, "hydra-kvcache: -I %s: between 1k and 1024m\n", optarg);
                return 2;
            }
            s->item_size_max = (uint32_t)v;
            break;
        case 'f':
            s->factor = strtod(optarg, NULL);
            if (!(s->factor > 1.0 && s->factor <= 4.0))
                goto bad;
            break;
        case 'n':
            if (!parse_uint(optarg, 1u << 16, &v) || v < 8)
                goto bad;
            s->chunk_size = (uint32_t)v;
            break;
        case 'o':
            if (!parse_ext(optarg))
                return 2;
            break;
        case 'v':
            s->verbosity++;
            break;
        case 'C': {
            /* ADDR:PORT, the port after the last colon ([::1]:8080 for IPv6) */
            char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || !parse_uint(colon + 1, 65535, &v)) {
                fprintf(stderr, "hydra-kvcache: --console %s: expected ADDR:PORT\n", optarg);
                return 2;
            }
            *colon = '\0';
            char *a = optarg;
            size_t n = strlen(a);
            if (a[0] == '[' && n > 2 && a[n - 1] == ']') {
                a[n - 1] = '\0';
                a++;
            }
            kvcache_cfg.console_addr = a;
            kvcache_cfg.console_port = (uint16_t)v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("hydra-kvcache %s\n", kvcache_proto_version());
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "hydra-kvcache: -%c %s: bad value\n", ch, optarg);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "hydra-kvcache: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (shards == 0) {
        cpu_set_t set;
        shards = sched_getaffinity(0, sizeof(set), &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
        if (shards > KVCACHE_MAX_SHARDS)
            shards = KVCACHE_MAX_SHARDS;
    }
    s->nshards = shards;
    if (s->item_size_max > s->maxbytes / shards / 2) {
        fprintf(stderr,
                "hydra-kvcache: -I %u is more than half a shard's memory (-m %" PRIu64
                " MB over %u shards)\n",
                s->item_size_max, s->maxbytes >> 20, shards);
        return 2;
    }
    raise_nofile(s->maxconns, shards);
    kvcache_cfg.started = kvcache_unix_now() - 2; /* as memcached: the clock starts above 0 */

    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = shards;
    cfg.io_backend = io_backend;
    cfg.idle_spin_ns = (uint64_t)idle_spin_us * 1000;
    cfg.wake_defer_ns = (uint64_t)wake_defer_us * 1000;
    cfg.xshard_spin_ns = (uint64_t)xshard_spin_us * 1000;
    cfg.pin = pin;
    cfg.io_rx_multishot = rx_multishot;
    size_t msg = (size_t)s->item_size_max + 128 * 1024;
    if (cfg.max_message_size < msg)
        cfg.max_message_size = msg;
    if (s->verbosity == 0)
        hy_log_set_level(HY_LOG_WARNING);
    else if (s->verbosity > 1)
        hy_log_set_level(HY_LOG_DEBUG);

    struct hy_app_result res;
    int status = hy_app_run(&kvcache_app, &cfg, &res);
    if (status != HY_APP_STOPPED) {
        char why[96];
        fprintf(stderr, "hydra-kvcache: ended with status %d (%s, %s)\n", status,
                hy_err_name(res.error), hy_reason_format(&res.reason, why, sizeof(why)));
        return 1;
    }
    return 0;
}
