/* memcache: a closed-loop client of any memcached-compatible server (the
 * text protocol), for hydra-kvcache and stock memcached alike.
 *
 * Each of MC_CONNS connections keeps exactly one request in flight: it
 * sends a get or a set (MC_MIX, gets:sets), waits for the whole reply,
 * checks it, records the latency and sends the next. Keys are 64 bytes,
 * chosen uniformly among MC_KEYS; the value of key i is a pattern derived
 * from i, so every get hit is compared byte for byte. Before the timed
 * window every key is set once, so gets hit (a miss is counted, not an
 * error: a cache may evict). Any other reply is an error and fails the
 * benchmark. Plain sockets and epoll on MC_THREADS threads (default 1),
 * so the client costs little next to the server.
 *
 * Settings (environment):
 *   MC_SERVER=HOST:PORT   the server (required; without it the benchmark is
 *                         skipped, so "hydra-bench" alone does not need one)
 *   MC_CONNS=50           connections
 *   MC_MIX=9:1            gets:sets
 *   MC_VALUE=32           value bytes
 *   MC_KEYS=10000         distinct keys
 *   MC_SECS=5             length of the timed window (times SCALE)
 *   MC_THREADS=1          client threads (connections split among them)
 *
 * Output: "bench=memcache value=OPS unit=ops/s p50_us=.. p99_us=.. p999_us=..
 * gets=.. sets=.. misses=.. errors=0 replies=.. conns=.. mix=.. value_bytes=.."
 * (replies: every reply, the fill's included, for a CPU-per-reply figure).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MC_KEY_LEN 64
#define MC_MAX_CONNS 20000
#define MC_MAX_THREADS 16

struct mc_opts {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned conns, threads, keys, value, get_w, set_w;
    double secs;
};

struct mc_conn {
    int fd;
    bool is_get;
    unsigned key;
    uint64_t sent_ns;
    size_t rlen;
    char *rbuf; /* reply so far; capacity opts.value + 256 */
};

struct mc_thread {
    const struct mc_opts *o;
    unsigned first, n; /* its connections: keys of the fill phase */
    pthread_t tid;
    uint64_t seed;
    /* results */
    uint64_t gets, sets, misses, errors, ops;
    uint64_t replies; /* all, the fill's and the drain's too */
    uint32_t *lat; /* ns, capped */
    size_t nlat, caplat;
    char err[160];
};

static uint64_t mc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mc_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void mc_key(unsigned i, char *k)
{
    char tmp[MC_KEY_LEN + 1];
    snprintf(tmp, sizeof(tmp), "hb:%061u", i);
    memcpy(k, tmp, MC_KEY_LEN);
}

static void mc_value(unsigned key, char *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        v[i] = (char)('a' + (key * 7u + i) % 26u);
}

static void mc_seterr(struct mc_thread *t, const char *what, const struct mc_conn *c)
{
    t->errors++;
    if (t->err[0])
        return;
    size_t n = c && c->rlen < 40 ? c->rlen : 40;
    snprintf(t->err, sizeof(t->err), "%s (reply starts '%.*s')", what, (int)n, c ? c->rbuf : "");
    for (char *p = t->err; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = '|';
}

/* sends the next request of c; false: the socket failed */
static bool mc_send(struct mc_thread *t, struct mc_conn *c, bool is_get, unsigned key, char *scratch)
{
    const struct mc_opts *o = t->o;
    char k[MC_KEY_LEN];
    mc_key(key, k);
    size_t n;
    if (is_get) {
        memcpy(scratch, "get ", 4);
        memcpy(scratch + 4, k, MC_KEY_LEN);
        memcpy(scratch + 4 + MC_KEY_LEN, "\r\n", 2);
        n = 4 + MC_KEY_LEN + 2;
    } else {
        memcpy(scratch, "set ", 4);
        memcpy(scratch + 4, k, MC_KEY_LEN);
        n = 4 + MC_KEY_LEN;
        n += (size_t)sprintf(scratch + n, " 0 0 %u\r\n", o->value);
        mc_value(key, scratch + n, o->value);
        n += o->value;
        memcpy(scratch + n, "\r\n", 2);
        n += 2;
    }
    c->is_get = is_get;
    c->key = key;
    c->rlen = 0;
    c->sent_ns = mc_now();
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, scratch + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            /* a request of at most a few KiB into an empty socket buffer:
             * only a stalled server gets here; wait for room */
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (w <= 0)
            return false;
        off += (size_t)w;
    }
    return true;
}

/* 1: the reply is complete and right; 0: more to come; -1: wrong */
static int mc_check(struct mc_thread *t, struct mc_conn *c, bool *miss)
{
    const struct mc_opts *o = t->o;
    const char *r = c->rbuf;
    size_t n = c->rlen;
    *miss = false;
    if (!c->is_get) {
        if (n < 8)
            return memcmp(r, "STORED\r\n", n) == 0 ? 0 : -1;
        return n == 8 && memcmp(r, "STORED\r\n", 8) == 0 ? 1 : -1;
    }
    if (n <= 5 && memcmp(r, "END\r\n", n) == 0) {
        if (n < 5)
            return 0;
        *miss = true;
        return 1;
    }
    /* VALUE <key> 0 <len>\r\n<data>\r\nEND\r\n */
    char head[MC_KEY_LEN + 40];
    char k[MC_KEY_LEN];
    mc_key(c->key, k);
    int hl = snprintf(head, sizeof(head), "VALUE %.*s 0 %u\r\n", MC_KEY_LEN, k, o->value);
    size_t total = (size_t)hl + o->value + 2 + 5;
    size_t cmp = n < (size_t)hl ? n : (size_t)hl;
    if (memcmp(r, head, cmp) != 0)
        return -1;
    if (n < total)
        return 0;
    if (n > total)
        return -1;
    char *v = malloc(o->value ? o->value : 1);
    if (!v)
        return -1;
    mc_value(c->key, v, o->value);
    bool ok = memcmp(r + hl, v, o->value) == 0 &&
              memcmp(r + hl + o->value, "\r\nEND\r\n", 7) == 0;
    free(v);
    return ok ? 1 : -1;
}

static int mc_connect(const struct mc_opts *o)
{
    int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&o->addr, o->addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void mc_record(struct mc_thread *t, uint64_t ns)
{
    if (t->nlat == t->caplat) {
        size_t cap = t->caplat ? t->caplat * 2 : 65536;
        uint32_t *p = realloc(t->lat, cap * sizeof(*p));
        if (!p)
            return; /* keep the samples so far */
        t->lat = p;
        t->caplat = cap;
    }
    t->lat[t->nlat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static void *mc_thread_main(void *arg)
{
    struct mc_thread *t = arg;
    const struct mc_opts *o = t->o;
    struct mc_conn *cs = calloc(t->n, sizeof(*cs));
    size_t rcap = (size_t)o->value + MC_KEY_LEN + 128;
    char *scratch = malloc(rcap);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *evs = calloc(t->n, sizeof(*evs));
    if (!cs || !scratch || ep < 0 || !evs) {
        snprintf(t->err, sizeof(t->err), "out of memory");
        t->errors++;
        goto out;
    }
    for (unsigned i = 0; i < t->n; i++) {
        cs[i].fd = -1;
        cs[i].rbuf = malloc(rcap);
        if (!cs[i].rbuf || (cs[i].fd = mc_connect(o)) < 0) {
            snprintf(t->err, sizeof(t->err), "connect: %s", strerror(errno));
            t->errors++;
            goto out;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    /* fill: the keys first, first+threads, ... set once each, then the
     * timed window of random gets and sets */
    unsigned next_fill = t->first;
    bool filling = true;
    unsigned in_flight = 0;
    uint64_t t_end = 0;
    for (unsigned i = 0; i < t->n; i++) {
        unsigned key = next_fill;
        next_fill += o->threads;
        bool more = key < o->keys;
        if (!more)
            break;
        if (!mc_send(t, &cs[i], false, key, scratch)) {
            mc_seterr(t, "send failed", NULL);
            goto out;
        }
        in_flight++;
    }
    if (in_flight == 0) {
        filling = false;
        t_end = mc_now() + (uint64_t)(o->secs * 1e9);
    }
    unsigned idle = 0;
    /* conns without a request during the fill switch to timed requests */
    bool *waiting = calloc(t->n, sizeof(*waiting));
    if (!waiting)
        goto out;
    for (unsigned i = in_flight; i < t->n; i++)
        waiting[i] = true;
    idle = t->n - in_flight;
    for (;;) {
        if (!filling && idle) {
            for (unsigned i = 0; i < t->n; i++) {
                if (!waiting[i])
                    continue;
                waiting[i] = false;
                idle--;
                bool g = mc_rand(&t->seed) % (o->get_w + o->set_w) < o->get_w;
                if (!mc_send(t, &cs[i], g, (unsigned)(mc_rand(&t->seed) % o->keys), scratch)) {
                    mc_seterr(t, "send failed", NULL);
                    goto done;
                }
                in_flight++;
            }
        }
        if (in_flight == 0)
            break;
        int ne = epoll_wait(ep, evs, (int)t->n, 1000);
        if (ne < 0 && errno == EINTR)
            continue;
        if (ne < 0)
            break;
        uint64_t now = mc_now();
        if (!filling && now >= t_end && ne == 0)
            break;
        for (int e = 0; e < ne; e++) {
            struct mc_conn *c = &cs[evs[e].data.u32];
            ssize_t rd = recv(c->fd, c->rbuf + c->rlen, rcap - c->rlen, 0);
            if (rd < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (rd <= 0) {
                mc_seterr(t, rd == 0 ? "server closed the connection" : "recv failed", c);
                goto done;
            }
            c->rlen += (size_t)rd;
            bool miss;
            int r = mc_check(t, c, &miss);
            if (r == 0) {
                if (c->rlen == rcap) {
                    mc_seterr(t, "reply too long", c);
                    goto done;
                }
                continue;
            }
            if (r < 0) {
                mc_seterr(t, c->is_get ? "wrong get reply" : "wrong set reply", c);
                goto done;
            }
            now = mc_now();
            in_flight--;
            t->replies++;
            if (filling) {
                unsigned key = next_fill;
                if (key < o->keys) {
                    next_fill += o->threads;
                    if (!mc_send(t, c, false, key, scratch))
                        goto done;
                    in_flight++;
                } else {
                    waiting[c - cs] = true;
                    idle++;
                    if (in_flight == 0) {
                        filling = false;
                        t_end = now + (uint64_t)(o->secs * 1e9);
                    }
                }
                continue;
            }
            if (now >= t_end)
                continue; /* completed after the window: drained, not counted */
            if (c->is_get)
                t->gets++;
            else
                t->sets++;
            t->misses += miss;
            t->ops++;
            mc_record(t, now - c->sent_ns);
            bool g = mc_rand(&t->seed) % (o->get_w + o->set_w) < o->get_w;
            if (!mc_send(t, c, g, (unsigned)(mc_rand(&t->seed) % o->keys), scratch)) {
                mc_seterr(t, "send failed", NULL);
                goto done;
            }
            in_flight++;
        }
    }
done:
    free(waiting);
out:
    if (cs)
        for (unsigned i = 0; i < t->n; i++) {
            if (cs[i].fd >= 0)
                close(cs[i].fd);
            free(cs[i].rbuf);
        }
    free(cs);
    free(evs);
    free(scratch);
    if (ep >= 0)
        close(ep);
    return NULL;
}

static unsigned mc_env_uint(const char *name, unsigned def, unsigned lo, unsigned hi, bool *bad)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v < lo || v > hi) {
        bench_note("memcache: %s='%s' is not a number in %u..%u", name, s, lo, hi);
        *bad = true;
        return def;
    }
    return (unsigned)v;
}

static int mc_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int bench_memcache_run(const struct bench *b, const struct bench_env *env)
{
    const char *srv = getenv("MC_SERVER");
    if (!srv || !*srv) {
        bench_note("%s skipped: set MC_SERVER=HOST:PORT (a memcached-compatible server)", b->name);
        return 0;
    }
    struct mc_opts o = {0};
    bool bad = false;
    o.conns = mc_env_uint("MC_CONNS", 50, 1, MC_MAX_CONNS, &bad);
    o.threads = mc_env_uint("MC_THREADS", 1, 1, MC_MAX_THREADS, &bad);
    o.keys = mc_env_uint("MC_KEYS", 10000, 1, 100000000, &bad);
    o.value = mc_env_uint("MC_VALUE", 32, 1, 1000000, &bad);
    double secs = mc_env_uint("MC_SECS", 5, 1, 3600, &bad);
    o.secs = secs * env->scale < 0.2 ? 0.2 : secs * env->scale;
    const char *mix = getenv("MC_MIX");
    o.get_w = 9;
    o.set_w = 1;
    if (mix && *mix && (sscanf(mix, "%u:%u", &o.get_w, &o.set_w) != 2 || o.get_w + o.set_w == 0 ||
                        o.get_w > 1000 || o.set_w > 1000)) {
        bench_note("memcache: MC_MIX='%s' is not GETS:SETS such as 9:1", mix);
        bad = true;
    }
    /* HOST:PORT, the port after the last colon */
    char host[256];
    const char *colon = strrchr(srv, ':');
    if (!colon || (size_t)(colon - srv) >= sizeof(host) || colon == srv) {
        bench_note("memcache: MC_SERVER='%s' is not HOST:PORT", srv);
        bad = true;
    }
    if (bad) {
        bench_fail("memcache: bad settings");
        return 1;
    }
    memcpy(host, srv, (size_t)(colon - srv));
    host[colon - srv] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gr = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gr != 0 || !ai) {
        bench_fail("memcache: cannot resolve MC_SERVER='%s': %s", srv, gai_strerror(gr));
        return 1;
    }
    memcpy(&o.addr, ai->ai_addr, ai->ai_addrlen);
    o.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (o.threads > o.conns)
        o.threads = o.conns;
    bench_note("%s: closed loop against %s: %u connections on %u thread(s), one request in flight "
               "each, get:set %u:%u, %u keys of %d bytes, values of %u bytes, %.1f s window "
               "after setting every key once; every reply checked",
               b->name, srv, o.conns, o.threads, o.get_w, o.set_w, o.keys, MC_KEY_LEN, o.value,
               o.secs);

    struct mc_thread th[MC_MAX_THREADS];
    memset(th, 0, sizeof(th));
    for (unsigned i = 0; i < o.threads; i++) {
        th[i].o = &o;
        th[i].first = i;
        th[i].n = o.conns / o.threads + (i < o.conns % o.threads);
        th[i].seed = 0x9e3779b97f4a7c15ull * (i + 1);
    }
    for (unsigned i = 0; i < o.threads; i++)
        if (pthread_create(&th[i].tid, NULL, mc_thread_main, &th[i]) != 0) {
            bench_fail("memcache: pthread_create failed");
            for (unsigned k = 0; k < i; k++)
                pthread_join(th[k].tid, NULL);
            return 1;
        }
    uint64_t ops = 0, gets = 0, sets = 0, misses = 0, errors = 0, replies = 0;
    size_t nlat = 0;
    for (unsigned i = 0; i < o.threads; i++) {
        pthread_join(th[i].tid, NULL);
        ops += th[i].ops;
        gets += th[i].gets;
        sets += th[i].sets;
        misses += th[i].misses;
        errors += th[i].errors;
        replies += th[i].replies;
        nlat += th[i].nlat;
        if (th[i].err[0])
            bench_note("memcache: thread %u: %s", i, th[i].err);
    }
    uint32_t *all = malloc((nlat ? nlat : 1) * sizeof(*all));
    size_t at = 0;
    for (unsigned i = 0; i < o.threads; i++) {
        if (all && th[i].nlat)
            memcpy(all + at, th[i].lat, th[i].nlat * sizeof(*all));
        at += th[i].nlat;
        free(th[i].lat);
    }
    if (errors || ops == 0 || !all) {
        free(all);
        bench_fail("memcache: %llu error(s), %llu operations", (unsigned long long)errors,
                   (unsigned long long)ops);
        return 1;
    }
    qsort(all, nlat, sizeof(*all), mc_cmp_u32);
    double p50 = all[(size_t)((double)(nlat - 1) * 0.5)] / 1e3;
    double p99 = all[(size_t)((double)(nlat - 1) * 0.99)] / 1e3;
    double p999 = all[(size_t)((double)(nlat - 1) * 0.999)] / 1e3;
    free(all);
    /* operations completed inside the window, over its length */
    double rate = (double)ops / o.secs;
    printf("bench=%s value=%.*f unit=%s p50_us=%.1f p99_us=%.1f p999_us=%.1f gets=%llu sets=%llu "
           "misses=%llu errors=0 replies=%llu conns=%u mix=%u:%u value_bytes=%u\n",
           b->name, b->decimals, rate, b->unit, p50, p99, p999, (unsigned long long)gets,
           (unsigned long long)sets, (unsigned long long)misses, (unsigned long long)replies, o.conns, o.get_w, o.set_w,
           o.value);
    fflush(stdout);
    return 0;
}
