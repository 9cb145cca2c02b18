/* The node console: HTTP routes, per-shard collectors, JSON, Prometheus
 * text and the WebSocket push (see console.h). */
#include "console.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "blocking.h"
#include "dist.h"
#include "errors.h"
#include "http.h"
#include "log.h"
#include "msg.h"
#include "proc.h"
#include "report.h"
#include "runtime.h"
#include "signals.h"
#include "symbol_internal.h"
#include "stats.h"
#include "supervisor.h"
#include "application.h"
#include "tcp.h"
#include "tcp_server.h"
#include "timer.h"
#include "ws.h"

#define SEC               1000000000ull
#define TAG_SNAP_REQ      0x48435351ull /* "HCSQ" */
#define TAG_SNAP_REPLY    0x48435352ull /* "HCSR" */
#define TAG_STOP          0x48435354ull /* "HCST" */
#define TAG_TICK          0x48435449ull /* "HCTI" */
#define TAG_PROC_REQ      0x48435051ull /* "HCPQ" */
#define TAG_PROC_REPLY    0x48435052ull /* "HCPR" */
#define MAX_BODY          4096
#define MAX_HEAD          8192
#define NREPORTS          16
#define NRESTARTS         256
#define MAX_TREE_DEPTH    8
#define MAX_TREE_CHILDREN 256

extern const char hy__console_page[];

struct report_line {
    uint64_t at_ns;
    int kind; /* 0 crash, 1 supervisor, 2 log warning/error */
    char text[256];
};

struct hy_console {
    struct hy_console_options o;
    char token[128];
    bool has_token;
    struct hy_tcp_server *srv;
    unsigned nshards;
    hy_pid collectors[HY_MAX_SHARDS];
    _Atomic uint64_t collect_ns[HY_MAX_SHARDS];
    _Atomic uint64_t collections[HY_MAX_SHARDS];
    _Atomic uint64_t requests, bad_requests, ws_pushes;

    pthread_mutex_t lock; /* reports and restart counts (short critical sections) */
    struct report_line reports[NREPORTS];
    unsigned nreports, report_next;
    struct {
        hy_pid sup;
        uint64_t restarts;
    } restarts[NRESTARTS];
    unsigned nrestart;

    struct console_hook *hook; /* the ctx of its report handler and log sink */
};

/* The ctx of the console's report handler and log sink, apart from the
 * console: a handler or sink set after the console's may have read ours
 * (hy_log_get_sink) and call it from its own, and still be in place when
 * the console stops. The console cannot take itself out of that chain, so
 * the hook then outlives it (never freed): c goes NULL and every report
 * and line is passed straight on. Freeing the console under such a chain
 * was a use-after-free (on_log wrote into the freed console). */
struct console_hook {
    pthread_mutex_t lock;  /* c's liveness; taken before c->lock */
    struct hy_console *c;  /* NULL once the console stopped */
    /* what was installed before the console: every report and line is
     * passed on to it, and it is set back when the console stops */
    hy_report_fn prev_report;
    void *prev_report_ctx;
    hy_log_sink_fn prev_sink;
    void *prev_sink_ctx;
    struct console_hook *next_retired;
};

static _Atomic(struct hy_console *) the_console;
/* hooks left in a chain by a stopped console (kept reachable: never freed) */
static struct console_hook *_Atomic retired_hooks;

/* ---- a growable text buffer ---------------------------------------------- */

struct sb {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_reserve(struct sb *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + more + 1)
        nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
        b->oom = true;
        return;
    }
    b->p = np;
    b->cap = nc;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sb_reserve(b, (size_t)n);
    if (b->oom)
        return;
    if ((size_t)n < sizeof(tmp)) {
        memcpy(b->p + b->len, tmp, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void sb_str(struct sb *b, const char *s)
{
    sb_printf(b, "%s", s);
}

/* A JSON string literal (quotes included). */
static void sb_json(struct sb *b, const char *s)
{
    sb_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            sb_printf(b, "\\u%04x", c);
        else
            sb_printf(b, "%c", c);
    }
    sb_str(b, "\"");
}

/* ---- pids as text ---------------------------------------------------------- */

/* The "id" of a process in the API: both halves of the pid in hex. */
static void pid_id(hy_pid p, char *out, size_t len)
{
    snprintf(out, len, "%llx-%llx", (unsigned long long)p.hi, (unsigned long long)p.lo);
}

static bool pid_parse(const char *s, size_t n, hy_pid *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *dash = strchr(tmp, '-');
    if (!dash)
        return false;
    *dash = '\0';
    char *e1, *e2;
    unsigned long long hi = strtoull(tmp, &e1, 16), lo = strtoull(dash + 1, &e2, 16);
    if (*e1 || *e2 || e1 == tmp || e2 == dash + 1)
        return false;
    out->hi = hi;
    out->lo = lo;
    return true;
}

/* Value of key in a query string a=1&b=2 (borrowed, not decoded). */
static bool query_get(const char *q, size_t qlen, const char *key, const char **val, size_t *vlen)
{
    size_t klen = strlen(key), i = 0;
    while (q && i < qlen) {
        size_t s = i;
        while (i < qlen && q[i] != '&')
            i++;
        if (i - s > klen && memcmp(q + s, key, klen) == 0 && q[s + klen] == '=') {
            *val = q + s + klen + 1;
            *vlen = i - s - klen - 1;
            return true;
        }
        i++;
    }
    return false;
}

/* ---- reports and log lines ------------------------------------------------ */

static void keep_report(struct hy_console *c, int kind, const char *text)
{
    pthread_mutex_lock(&c->lock);
    struct report_line *r = &c->reports[c->report_next];
    r->at_ns = hy_now_ns();
    r->kind = kind;
    snprintf(r->text, sizeof(r->text), "%s", text);
    c->report_next = (c->report_next + 1) % NREPORTS;
    if (c->nreports < NREPORTS)
        c->nreports++;
    pthread_mutex_unlock(&c->lock);
}

static void count_restart(struct hy_console *c, hy_pid sup)
{
    pthread_mutex_lock(&c->lock);
    unsigned i;
    for (i = 0; i < c->nrestart; i++)
        if (hy_pid_eq(c->restarts[i].sup, sup))
            break;
    if (i == c->nrestart && c->nrestart < NRESTARTS) {
        c->restarts[i].sup = sup;
        c->restarts[i].restarts = 0;
        c->nrestart++;
    }
    if (i < c->nrestart)
        c->restarts[i].restarts++;
    pthread_mutex_unlock(&c->lock);
}

static uint64_t restarts_of(struct hy_console *c, hy_pid sup)
{
    uint64_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < c->nrestart; i++)
        if (hy_pid_eq(c->restarts[i].sup, sup))
            n = c->restarts[i].restarts;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void on_report(const struct hy_report *r, void *ctx)
{
    struct console_hook *h = ctx;
    char line[256];
    hy_report_format(r, line, sizeof(line));
    pthread_mutex_lock(&h->lock);
    struct hy_console *c = h->c;
    if (c && r->type == HY_REPORT_SUPERVISOR && r->action && strcmp(r->action, "restart") == 0)
        count_restart(c, r->who);
    if (c && (r->type == HY_REPORT_CRASH || r->type == HY_REPORT_SUPERVISOR))
        keep_report(c, r->type == HY_REPORT_CRASH ? 0 : 1, line);
    pthread_mutex_unlock(&h->lock);
    if (h->prev_report) {
        h->prev_report(r, h->prev_report_ctx);
        return;
    }
    /* What the default handler does: one log line. */
    hy_log(r->level, "%s", line);
}

static void on_log(enum hy_log_level level, const char *line, void *ctx)
{
    struct console_hook *h = ctx;
    if (level <= HY_LOG_WARNING && !strstr(line, "_report ")) { /* reports are kept already */
        pthread_mutex_lock(&h->lock);
        if (h->c)
            keep_report(h->c, 2, line);
        pthread_mutex_unlock(&h->lock);
    }
    if (h->prev_sink) {
        h->prev_sink(level, line, h->prev_sink_ctx);
        return;
    }
    if (level <= hy_log_get_level()) {
        size_t n = strlen(line);
        char buf[1024];
        if (n > sizeof(buf) - 1)
            n = sizeof(buf) - 1;
        memcpy(buf, line, n);
        buf[n] = '\n';
        ssize_t w = write(2, buf, n + 1);
        (void)w;
    }
}

/* ---- collectors (one per shard) ------------------------------------------- */

struct snap_req {
    uint32_t max_procs;
};

struct snap {
    uint32_t shard;
    uint32_t partial; /* process list cut short by the budget or the bound */
    uint64_t nprocs_total;
    uint64_t nprocs; /* entries in procs */
    uint64_t collect_ns;
    uint64_t reductions;  /* sum over the live processes listed */
    uint64_t proc_memory; /* bytes, sum over the live processes listed */
    uint64_t mailbox_total;
    struct hy_stats st;
    /* then struct hy_pair_stats pair[nshards], then struct hy_proc_info procs[nprocs] */
};

struct proc_reply {
    int32_t rc;
    struct hy__proc_detail d;
};

static void collector(void *arg)
{
    struct hy_console *c = arg;
    unsigned n = hy_shard_count();
    unsigned me = (unsigned)hy_shard_id();
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) < 0)
            return;
        if (m->tag == TAG_STOP) {
            hy_msg_free(m);
            return;
        }
        if (m->tag == TAG_PROC_REQ && m->size == sizeof(hy_pid)) {
            /* one process of this shard: its mailbox head and backtrace */
            struct proc_reply pr;
            hy_pid pid;
            memcpy(&pid, m->data, sizeof(pid));
            uint64_t t0 = hy_now_ns();
            pr.rc = hy__proc_detail_local(pid, &pr.d);
            uint64_t spent = hy_now_ns() - t0;
            atomic_fetch_add_explicit(&c->collect_ns[me], spent, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->collections[me], 1, memory_order_relaxed);
            hy_send_ref(m->from, TAG_PROC_REPLY, m->ref, &pr, sizeof(pr));
            hy_msg_free(m);
            continue;
        }
        if (m->tag != TAG_SNAP_REQ || m->size < sizeof(struct snap_req)) {
            hy_msg_free(m);
            continue;
        }
        struct snap_req rq;
        memcpy(&rq, m->data, sizeof(rq));
        hy_pid from = m->from;
        hy_ref ref = m->ref;
        hy_msg_free(m);

        uint64_t t0 = hy_now_ns();
        size_t cap = rq.max_procs;
        size_t bytes = sizeof(struct snap) + n * sizeof(struct hy_pair_stats) +
                       cap * sizeof(struct hy_proc_info);
        uint8_t *out = calloc(1, bytes);
        hy_pid *pids = cap ? calloc(cap, sizeof(hy_pid)) : NULL;
        if (!out || (cap && !pids)) {
            free(out);
            free(pids);
            continue;
        }
        struct snap *s = (struct snap *)out;
        struct hy_pair_stats *pair = (struct hy_pair_stats *)(s + 1);
        struct hy_proc_info *procs = (struct hy_proc_info *)(pair + n);
        s->shard = me;
        hy_stats_get(me, &s->st);
        for (unsigned d = 0; d < n; d++)
            hy_stats_pair(me, d, &pair[d]);
        size_t total = 0;
        hy_proc_list_local(pids, cap, &total);
        s->nprocs_total = total;
        size_t k = 0, listed = total < cap ? total : cap;
        for (size_t i = 0; i < listed; i++) {
            if ((i & 63) == 63 && hy_now_ns() - t0 > c->o.collect_budget_ns) {
                s->partial = 1;
                break;
            }
            if (hy_proc_info(pids[i], &procs[k]) == 0) {
                s->reductions += procs[k].reductions;
                s->proc_memory += procs[k].memory;
                s->mailbox_total += procs[k].mailbox_len;
                k++;
            }
        }
        if (listed < total)
            s->partial = 1;
        s->nprocs = k;
        uint64_t spent = hy_now_ns() - t0;
        s->collect_ns = spent;
        atomic_fetch_add_explicit(&c->collect_ns[me], spent, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->collections[me], 1, memory_order_relaxed);
        size_t len = sizeof(struct snap) + n * sizeof(struct hy_pair_stats) +
                     k * sizeof(struct hy_proc_info);
        hy_send_ref(from, TAG_SNAP_REPLY, ref, out, len);
        free(out);
        free(pids);
    }
}

/* Asks every collector; snaps[s] is its answer (owned) or NULL (stale). */
static void gather(struct hy_console *c, unsigned max_procs, struct hy_msg **snaps)
{
    hy_ref ref;
    hy_ref_make(&ref);
    struct snap_req rq = {max_procs};
    for (unsigned s = 0; s < c->nshards; s++) {
        snaps[s] = NULL;
        hy_send_ref(c->collectors[s], TAG_SNAP_REQ, ref, &rq, sizeof(rq));
    }
    uint64_t deadline = hy_now_ns() + c->o.reply_timeout_ns;
    for (unsigned got = 0; got < c->nshards;) {
        uint64_t now = hy_now_ns();
        if (now >= deadline)
            break;
        struct hy_msg *m;
        if (hy_recv_ref(ref, &m, (int64_t)(deadline - now)) < 0)
            break;
        const struct snap *sn = (const struct snap *)m->data;
        if (m->tag != TAG_SNAP_REPLY || m->size < sizeof(*sn) || sn->shard >= c->nshards ||
            snaps[sn->shard]) {
            hy_msg_free(m);
            continue;
        }
        snaps[sn->shard] = m;
        got++;
    }
}

static void free_snaps(struct hy_console *c, struct hy_msg **snaps)
{
    for (unsigned s = 0; s < c->nshards; s++)
        hy_msg_free(snaps[s]);
}

static const struct hy_pair_stats *snap_pairs(const struct hy_msg *m)
{
    return (const struct hy_pair_stats *)(m->data + sizeof(struct snap));
}

static const struct hy_proc_info *snap_procs(const struct hy_console *c, const struct hy_msg *m)
{
    return (const struct hy_proc_info *)(snap_pairs(m) + c->nshards);
}

/* ---- JSON ----------------------------------------------------------------- */

static const char *status_name(int st)
{
    switch (st) {
    case HY_STATUS_RUNNABLE:
        return "runnable";
    case HY_STATUS_RUNNING:
        return "running";
    case HY_STATUS_WAITING:
        return "waiting";
    default:
        return "exiting";
    }
}

static void json_shards(struct hy_console *c, struct hy_msg **snaps, struct sb *b)
{
    sb_printf(b, "{\"node\":%u,\"now_ns\":%llu,\"shards\":[", hy_node_id(),
              (unsigned long long)hy_now_ns());
    for (unsigned s = 0; s < c->nshards; s++) {
        if (s)
            sb_str(b, ",");
        int cpu = -1, numa = -1;
        hy_shard_cpu(s, &cpu, &numa);
        if (!snaps[s]) {
            sb_printf(b, "{\"shard\":%u,\"cpu\":%d,\"stale\":true}", s, cpu);
            continue;
        }
        const struct snap *sn = (const struct snap *)snaps[s]->data;
        const struct hy_stats *st = &sn->st;
        sb_printf(b,
                  "{\"shard\":%u,\"cpu\":%d,\"numa\":%d,\"stale\":false,\"procs\":%llu,"
                  "\"run_queue\":%llu,\"busy_ns\":%llu,\"idle_ns\":%llu,",
                  s, cpu, numa, (unsigned long long)st->procs_alive,
                  (unsigned long long)st->runq_len, (unsigned long long)st->busy_ns,
                  (unsigned long long)st->idle_ns);
        sb_printf(b,
                  "\"msgs_local\":%llu,\"msgs_cross\":%llu,\"msgs_received\":%llu,"
                  "\"dropped_dead\":%llu,\"dropped_full\":%llu,\"ring_overflows\":%llu,",
                  (unsigned long long)st->msgs_sent_local, (unsigned long long)st->msgs_sent_cross,
                  (unsigned long long)st->msgs_received, (unsigned long long)st->dropped_dead,
                  (unsigned long long)st->dropped_full, (unsigned long long)st->ring_overflows);
        sb_printf(b,
                  "\"reductions\":%llu,\"stalls\":%llu,\"sleeps\":%llu,\"spawned\":%llu,"
                  "\"exited\":%llu,\"timers\":%llu,",
                  (unsigned long long)sn->reductions, (unsigned long long)st->stalls,
                  (unsigned long long)st->sleeps, (unsigned long long)st->procs_spawned,
                  (unsigned long long)st->procs_exited, (unsigned long long)st->timers_armed);
        sb_printf(b,
                  "\"memory\":{\"procs\":%llu,\"mailbox_msgs\":%llu,\"stacks_pooled\":%llu,"
                  "\"buffers_out\":%llu},\"collect_ns\":%llu,\"partial\":%s,",
                  (unsigned long long)sn->proc_memory, (unsigned long long)sn->mailbox_total,
                  (unsigned long long)st->stacks_pooled, (unsigned long long)st->buffers_out,
                  (unsigned long long)sn->collect_ns, sn->partial ? "true" : "false");
        sb_str(b, "\"turn_log2\":[");
        for (unsigned k = 0; k < HY_STATS_TURN_BUCKETS; k++)
            sb_printf(b, "%s%llu", k ? "," : "", (unsigned long long)st->turn_log2[k]);
        sb_str(b, "]}");
    }
    sb_str(b, "],\"pairs\":[");
    for (unsigned s = 0; s < c->nshards; s++) {
        sb_str(b, s ? ",[" : "[");
        for (unsigned d = 0; d < c->nshards; d++) {
            struct hy_pair_stats ps = {0};
            hy_stats_pair(s, d, &ps);
            sb_printf(b, "%s[%llu,%llu,%llu]", d ? "," : "", (unsigned long long)ps.ring_entries,
                      (unsigned long long)ps.batches, (unsigned long long)ps.overflows);
        }
        sb_str(b, "]");
    }
    sb_str(b, "]}");
}

static void json_proc(const struct hy_proc_info *pi, struct sb *b, bool details)
{
    char id[48], pidtxt[HY_PID_STRLEN];
    pid_id(pi->pid, id, sizeof(id));
    hy_pid_format(pi->pid, pidtxt, sizeof(pidtxt));
    sb_printf(b, "{\"id\":\"%s\",\"pid\":", id);
    sb_json(b, pidtxt);
    sb_str(b, ",\"name\":");
    sb_json(b, pi->name);
    sb_printf(b,
              ",\"shard\":%u,\"status\":\"%s\",\"mailbox\":%zu,\"memory\":%zu,"
              "\"reductions\":%llu,\"links\":%zu,\"monitors\":%zu,\"monitored_by\":%zu,"
              "\"trap_exit\":%s",
              hy_pid_shard(pi->pid), status_name(pi->status), pi->mailbox_len, pi->memory,
              (unsigned long long)pi->reductions, pi->nlinks, pi->nmonitors, pi->nmonitored_by,
              pi->trap_exit ? "true" : "false");
    if (details) {
        sb_str(b, ",\"linked\":[");
        size_t nl = pi->nlinks < 16 ? pi->nlinks : 16;
        for (size_t i = 0; i < nl; i++) {
            pid_id(pi->links[i], id, sizeof(id));
            hy_pid_format(pi->links[i], pidtxt, sizeof(pidtxt));
            sb_printf(b, "%s{\"id\":\"%s\",\"pid\":", i ? "," : "", id);
            sb_json(b, pidtxt);
            sb_str(b, "}");
        }
        sb_str(b, "]");
    }
    sb_str(b, "}");
}

/* Asks the collector of pid's shard for the process's mailbox head and
 * backtrace; returns the reply (owned) or NULL (stale, or it exited). */
static struct hy_msg *ask_detail(struct hy_console *c, hy_pid pid)
{
    unsigned s = hy_pid_shard(pid);
    if (s >= c->nshards)
        return NULL;
    hy_ref ref;
    hy_ref_make(&ref);
    hy_send_ref(c->collectors[s], TAG_PROC_REQ, ref, &pid, sizeof(pid));
    uint64_t deadline = hy_now_ns() + c->o.reply_timeout_ns;
    for (;;) {
        uint64_t now = hy_now_ns();
        struct hy_msg *m;
        if (now >= deadline || hy_recv_ref(ref, &m, (int64_t)(deadline - now)) < 0)
            return NULL;
        if (m->tag == TAG_PROC_REPLY && m->size == sizeof(struct proc_reply))
            return m;
        hy_msg_free(m);
    }
}

static const char *bt_state(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case HY_EBUSY:
        return "running";
    case HY_ENODATA:
        return "not started";
    default:
        return "unavailable";
    }
}

struct bt_names {
    unsigned n;
    uintptr_t pc[HY_BT_MAX];
    char name[HY_BT_MAX][160];
};

static intptr_t symbolize_all(void *arg)
{
    struct bt_names *bn = arg;
    for (unsigned i = 0; i < bn->n; i++)
        hy__symbolize(bn->pc[i], 1, bn->name[i], sizeof(bn->name[i]));
    return 0;
}

/* The process page: json_proc with its details, its mailbox head and its
 * backtrace (see net/README.md). */
static void json_proc_page(struct hy_console *c, const struct hy_proc_info *pi, struct sb *b)
{
    json_proc(pi, b, true);
    if (b->len)
        b->len--; /* reopen the object: drop its closing brace */
    struct hy_msg *m = ask_detail(c, pi->pid);
    const struct proc_reply *pr = m ? (const struct proc_reply *)m->data : NULL;
    if (!pr || pr->rc != 0) {
        sb_printf(b, ",\"detail\":\"%s\"}", pr ? "exited" : "stale");
        hy_msg_free(m);
        return;
    }
    const struct hy__proc_detail *d = &pr->d;
    sb_str(b, ",\"detail\":\"ok\",\"mailbox_head\":[");
    for (uint32_t i = 0; i < d->nmsgs && i < HY_PD_MSGS; i++) {
        const struct hy__pd_msg *x = &d->msgs[i];
        char from[HY_PID_STRLEN], hex[2 * HY_PD_PREVIEW + 1], text[HY_PD_PREVIEW + 1];
        hy_pid_format(x->from, from, sizeof(from));
        uint32_t n = x->preview_len < HY_PD_PREVIEW ? x->preview_len : HY_PD_PREVIEW;
        for (uint32_t k = 0; k < n; k++) {
            snprintf(hex + 2 * k, 3, "%02x", x->preview[k]);
            text[k] = (x->preview[k] >= 0x20 && x->preview[k] < 0x7f) ? (char)x->preview[k] : '.';
        }
        hex[2 * n] = '\0';
        text[n] = '\0';
        sb_printf(b, "%s{\"tag\":%llu,\"size\":%u,\"from\":", i ? "," : "",
                  (unsigned long long)x->tag, x->size);
        sb_json(b, from);
        sb_printf(b, ",\"hex\":\"%s\",\"text\":", hex);
        sb_json(b, text);
        sb_str(b, "}");
    }
    sb_printf(b, "],\"mailbox_head_more\":%s,\"backtrace_state\":\"%s\",\"backtrace\":[",
              d->mailbox_len > d->nmsgs ? "true" : "false", bt_state(d->bt_rc));
    struct bt_names *bn = calloc(1, sizeof(*bn));
    if (bn) {
        bn->n = d->nframes < HY_BT_MAX ? d->nframes : HY_BT_MAX;
        memcpy(bn->pc, d->frames, bn->n * sizeof(uintptr_t));
        /* libdw wants a thread's stack, not a process's, and may read
         * files: on the blocking pool */
        if (bn->n && hy_blocking_run(symbolize_all, bn, NULL) == 0)
            for (unsigned i = 0; i < bn->n; i++) {
                sb_str(b, i ? "," : "");
                sb_json(b, bn->name[i]);
            }
        free(bn);
    }
    sb_str(b, "]}");
    hy_msg_free(m);
}

static void json_procs(struct hy_console *c, struct hy_msg **snaps, struct sb *b)
{
    sb_str(b, "{\"procs\":[");
    bool first = true, partial = false;
    uint64_t total = 0;
    for (unsigned s = 0; s < c->nshards; s++) {
        if (!snaps[s]) {
            partial = true;
            continue;
        }
        const struct snap *sn = (const struct snap *)snaps[s]->data;
        const struct hy_proc_info *pi = snap_procs(c, snaps[s]);
        partial |= sn->partial != 0;
        total += sn->nprocs_total;
        for (uint64_t i = 0; i < sn->nprocs; i++) {
            if (!first)
                sb_str(b, ",");
            first = false;
            json_proc(&pi[i], b, false);
        }
    }
    sb_printf(b, "],\"total\":%llu,\"partial\":%s}", (unsigned long long)total,
              partial ? "true" : "false");
}

static void json_tree_node(struct hy_console *c, hy_pid sup, const char *id, int depth,
                           struct sb *b)
{
    char pidid[48], pidtxt[HY_PID_STRLEN];
    pid_id(sup, pidid, sizeof(pidid));
    hy_pid_format(sup, pidtxt, sizeof(pidtxt));
    sb_str(b, "{\"id\":");
    sb_json(b, id);
    sb_printf(b, ",\"pid_id\":\"%s\",\"pid\":", pidid);
    sb_json(b, pidtxt);
    sb_printf(b, ",\"type\":\"supervisor\",\"restarts\":%llu,\"children\":[",
              (unsigned long long)restarts_of(c, sup));
    static _Thread_local struct hy_child_info kids[MAX_TREE_CHILDREN];
    size_t count = 0;
    if (depth < MAX_TREE_DEPTH &&
        hy_supervisor_which_children(sup, kids, MAX_TREE_CHILDREN, &count) == 0) {
        size_t n = count < MAX_TREE_CHILDREN ? count : MAX_TREE_CHILDREN;
        /* Copy: a recursive call reuses the thread's array. */
        struct hy_child_info *mine = malloc(n * sizeof(*mine) + 1);
        if (mine) {
            memcpy(mine, kids, n * sizeof(*mine));
            for (size_t i = 0; i < n; i++) {
                if (i)
                    sb_str(b, ",");
                if (mine[i].type == HY_SUPERVISOR && !hy_pid_is_none(mine[i].pid)) {
                    json_tree_node(c, mine[i].pid, mine[i].id, depth + 1, b);
                    continue;
                }
                pid_id(mine[i].pid, pidid, sizeof(pidid));
                hy_pid_format(mine[i].pid, pidtxt, sizeof(pidtxt));
                sb_str(b, "{\"id\":");
                sb_json(b, mine[i].id);
                sb_printf(b, ",\"pid_id\":\"%s\",\"pid\":", pidid);
                sb_json(b, hy_pid_is_none(mine[i].pid) ? "undefined" : pidtxt);
                sb_str(b, ",\"type\":\"worker\"}");
            }
            free(mine);
        }
        if (count > n)
            sb_printf(b, "%s{\"id\":\"(%zu more)\",\"type\":\"more\"}", n ? "," : "", count - n);
    }
    sb_str(b, "]}");
}

static void json_tree(struct hy_console *c, struct sb *b)
{
    hy_pid root = c->o.root;
    if (hy_pid_is_none(root) && hy_app_root(&root) < 0) {
        sb_str(b, "{\"tree\":null}");
        return;
    }
    sb_str(b, "{\"tree\":");
    json_tree_node(c, root, "root", 0, b);
    sb_str(b, "}");
}

static void json_reports(struct hy_console *c, struct sb *b)
{
    static const char *kinds[] = {"crash", "supervisor", "log"};
    struct report_line copy[NREPORTS];
    unsigned n, next;
    pthread_mutex_lock(&c->lock);
    memcpy(copy, c->reports, sizeof(copy));
    n = c->nreports;
    next = c->report_next;
    pthread_mutex_unlock(&c->lock);
    uint64_t now = hy_now_ns();
    sb_str(b, "{\"reports\":[");
    for (unsigned i = 0; i < n; i++) { /* newest first */
        const struct report_line *r = &copy[(next + NREPORTS - 1 - i) % NREPORTS];
        sb_printf(b, "%s{\"kind\":\"%s\",\"age_ms\":%llu,\"text\":", i ? "," : "", kinds[r->kind],
                  (unsigned long long)((now - r->at_ns) / 1000000));
        sb_json(b, r->text);
        sb_str(b, "}");
    }
    sb_str(b, "]}");
}

static void json_cluster(struct sb *b)
{
    struct hy_dist_stats ds;
    if (hy_dist_stats_get(&ds) < 0) {
        sb_str(b, "{\"running\":false}");
        return;
    }
    uint32_t nodes[64];
    size_t count = 0;
    hy_dist_nodes(nodes, 64, &count);
    sb_str(b, "{\"running\":true,\"nodes\":[");
    for (size_t i = 0; i < count && i < 64; i++)
        sb_printf(b, "%s%u", i ? "," : "", nodes[i]);
    sb_printf(b,
              "],\"frames_tx\":%llu,\"frames_rx\":%llu,\"retransmits\":%llu,"
              "\"dropped_queue_full\":%llu,\"malformed\":%llu,\"nodes_down\":%llu}",
              (unsigned long long)ds.frames_tx, (unsigned long long)ds.frames_rx,
              (unsigned long long)ds.retransmits, (unsigned long long)ds.dropped_queue_full,
              (unsigned long long)ds.malformed, (unsigned long long)ds.nodes_down);
}

static void json_all(struct hy_console *c, struct sb *b)
{
    struct hy_msg *snaps[HY_MAX_SHARDS];
    gather(c, c->o.max_procs, snaps);
    sb_str(b, "{\"shards\":");
    json_shards(c, snaps, b);
    sb_str(b, ",\"procs\":");
    json_procs(c, snaps, b);
    free_snaps(c, snaps);
    sb_str(b, ",\"tree\":");
    json_tree(c, b);
    sb_str(b, ",\"reports\":");
    json_reports(c, b);
    sb_str(b, ",\"cluster\":");
    json_cluster(b);
    sb_printf(b, ",\"actions\":%s}", c->o.allow_actions ? "true" : "false");
}

/* ---- Prometheus ----------------------------------------------------------- */

struct metric {
    const char *name, *type, *help;
};

static void prom_head(struct sb *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The turn-time histogram's first exported bucket: le = 2^(k+1) ns = 256 ns
 * (shorter turns do not happen; they are counted in it). */
#define TURN_FIRST_BUCKET 7

static void prometheus(struct hy_console *c, struct sb *b)
{
    struct hy_msg *snaps[HY_MAX_SHARDS];
    gather(c, 0, snaps);
    /* on the heap: a process's stack is small and a hy_stats is not */
    struct hy_stats *st = calloc(c->nshards, sizeof(*st));
    if (!st) {
        free_snaps(c, snaps);
        b->oom = true;
        return;
    }
    bool have[HY_MAX_SHARDS];
    for (unsigned s = 0; s < c->nshards; s++) {
        have[s] = snaps[s] != NULL;
        if (have[s])
            st[s] = ((const struct snap *)snaps[s]->data)->st;
    }
    free_snaps(c, snaps);
#define PER_SHARD(name, type, help, expr)                                                          \
    do {                                                                                           \
        prom_head(b, name, type, help);                                                            \
        for (unsigned s = 0; s < c->nshards; s++)                                                  \
            if (have[s])                                                                           \
                sb_printf(b, "%s{shard=\"%u\"} %llu\n", name, s,                                   \
                          (unsigned long long)(st[s].expr));                                       \
    } while (0)
#define PER_SHARD_SEC(name, help, expr)                                                            \
    do {                                                                                           \
        prom_head(b, name, "counter", help);                                                       \
        for (unsigned s = 0; s < c->nshards; s++)                                                  \
            if (have[s])                                                                           \
                sb_printf(b, "%s{shard=\"%u\"} %.9f\n", name, s, (double)(st[s].expr) / 1e9);      \
    } while (0)
    PER_SHARD("hydra_processes", "gauge", "Processes alive.", procs_alive);
    PER_SHARD("hydra_processes_spawned_total", "counter", "Processes spawned.", procs_spawned);
    PER_SHARD("hydra_processes_exited_total", "counter", "Processes exited.", procs_exited);
    PER_SHARD("hydra_run_queue", "gauge", "Processes ready to run.", runq_len);
    prom_head(b, "hydra_messages_sent_total", "counter",
              "Messages sent, to the same shard (local) or another (cross).");
    for (unsigned s = 0; s < c->nshards; s++)
        if (have[s])
            sb_printf(b,
                      "hydra_messages_sent_total{shard=\"%u\",scope=\"local\"} %llu\n"
                      "hydra_messages_sent_total{shard=\"%u\",scope=\"cross\"} %llu\n",
                      s, (unsigned long long)st[s].msgs_sent_local, s,
                      (unsigned long long)st[s].msgs_sent_cross);
    PER_SHARD("hydra_messages_received_total", "counter", "Messages taken by a receive.",
              msgs_received);
    prom_head(b, "hydra_messages_dropped_total", "counter",
              "Messages dropped: to a dead process, or by a full mailbox.");
    for (unsigned s = 0; s < c->nshards; s++)
        if (have[s])
            sb_printf(b,
                      "hydra_messages_dropped_total{shard=\"%u\",reason=\"dead\"} %llu\n"
                      "hydra_messages_dropped_total{shard=\"%u\",reason=\"full\"} %llu\n",
                      s, (unsigned long long)st[s].dropped_dead, s,
                      (unsigned long long)st[s].dropped_full);
    PER_SHARD("hydra_ring_overflows_total", "counter",
              "Ring entries that waited in an overflow queue.", ring_overflows);
    PER_SHARD_SEC("hydra_busy_seconds_total", "Time with work to do.", busy_ns);
    PER_SHARD_SEC("hydra_idle_seconds_total", "Time idle (spinning or asleep).", idle_ns);
    prom_head(b, "hydra_turn_seconds", "histogram",
              "Scheduler turns that found work, by duration (log2 buckets).");
    for (unsigned s = 0; s < c->nshards; s++) {
        if (!have[s])
            continue;
        uint64_t cum = 0;
        for (unsigned k = 0; k < HY_STATS_TURN_BUCKETS - 1; k++) {
            cum += st[s].turn_log2[k];
            if (k >= TURN_FIRST_BUCKET) /* shorter ones: cumulative, in the first line */
                sb_printf(b, "hydra_turn_seconds_bucket{shard=\"%u\",le=\"%.10g\"} %llu\n", s,
                          (double)(1ull << (k + 1)) / 1e9, (unsigned long long)cum);
        }
        cum += st[s].turn_log2[HY_STATS_TURN_BUCKETS - 1];
        sb_printf(b,
                  "hydra_turn_seconds_bucket{shard=\"%u\",le=\"+Inf\"} %llu\n"
                  "hydra_turn_seconds_sum{shard=\"%u\"} %.9f\n"
                  "hydra_turn_seconds_count{shard=\"%u\"} %llu\n",
                  s, (unsigned long long)cum, s, (double)st[s].busy_ns / 1e9, s,
                  (unsigned long long)cum);
    }
    PER_SHARD("hydra_sleeps_total", "counter", "Times the shard went to sleep.", sleeps);
    PER_SHARD("hydra_buffers_out", "gauge", "Message buffers away from their home shard.",
              buffers_out);
    PER_SHARD("hydra_stacks_pooled", "gauge", "Guarded stacks kept in the pool.", stacks_pooled);
    PER_SHARD("hydra_stalls_total", "counter", "Stalls reported.", stalls);
    PER_SHARD("hydra_timers_armed", "gauge", "Timers armed.", timers_armed);
    PER_SHARD("hydra_io_sockets", "gauge", "Sockets open.", io_sockets);
    PER_SHARD("hydra_io_syscalls_total", "counter", "Poller system calls.", io_syscalls);
    PER_SHARD("hydra_io_events_total", "counter", "Readiness events the poller reaped.",
              io_events);
    PER_SHARD("hydra_io_wakeups_total", "counter", "Sleeps ended by socket readiness.",
              io_wakeups);
    PER_SHARD("hydra_io_sleeps_total", "counter",
              "Sleeps made in the socket poller itself (one system call each).", io_sleeps);
    PER_SHARD("hydra_io_recvs_total", "counter",
              "Receives the poller made for processes parked in a receive.", io_recvs);
    PER_SHARD("hydra_io_sends_total", "counter", "Sends queued to the poller.", io_sends);
    PER_SHARD("hydra_io_poll_updates_total", "counter",
              "Changes of a socket's readiness watch between watching input and not.",
              io_poll_updates);
#undef PER_SHARD
#undef PER_SHARD_SEC
    static const struct metric pm[] = {
        {"hydra_mesh_entries_total", "counter",
         "Entries published into the ring from shard to peer_shard (counted per batch)."},
        {"hydra_mesh_batches_total", "counter", "Batches published from shard to peer_shard."},
        {"hydra_mesh_overflows_total", "counter",
         "Entries from shard to peer_shard that waited in the overflow queue."},
    };
    for (unsigned k = 0; k < 3; k++) {
        prom_head(b, pm[k].name, pm[k].type, pm[k].help);
        for (unsigned s = 0; s < c->nshards; s++)
            for (unsigned d = 0; d < c->nshards; d++) {
                struct hy_pair_stats ps;
                if (s == d || hy_stats_pair(s, d, &ps) < 0)
                    continue;
                uint64_t v = k == 0 ? ps.ring_entries : k == 1 ? ps.batches : ps.overflows;
                sb_printf(b, "%s{shard=\"%u\",peer_shard=\"%u\"} %llu\n", pm[k].name, s, d,
                          (unsigned long long)v);
            }
    }
    prom_head(b, "hydra_console_collect_seconds_total", "counter",
              "Time the console's collector spent on the shard.");
    for (unsigned s = 0; s < c->nshards; s++)
        sb_printf(b, "hydra_console_collect_seconds_total{shard=\"%u\"} %.9f\n", s,
                  (double)atomic_load(&c->collect_ns[s]) / 1e9);
    prom_head(b, "hydra_console_collections_total", "counter",
              "Answers of the console's collector on the shard.");
    for (unsigned s = 0; s < c->nshards; s++)
        sb_printf(b, "hydra_console_collections_total{shard=\"%u\"} %llu\n", s,
                  (unsigned long long)atomic_load(&c->collections[s]));
    prom_head(b, "hydra_console_requests_total", "counter", "HTTP requests served.");
    sb_printf(b, "hydra_console_requests_total %llu\n",
              (unsigned long long)atomic_load(&c->requests));
    prom_head(b, "hydra_console_bad_requests_total", "counter",
              "Malformed, oversized or timed-out HTTP requests.");
    sb_printf(b, "hydra_console_bad_requests_total %llu\n",
              (unsigned long long)atomic_load(&c->bad_requests));
    struct hy_dist_stats ds;
    if (hy_dist_stats_get(&ds) == 0) {
        prom_head(b, "hydra_dist_frames_total", "counter", "Distribution frames.");
        sb_printf(b,
                  "hydra_dist_frames_total{direction=\"tx\"} %llu\n"
                  "hydra_dist_frames_total{direction=\"rx\"} %llu\n",
                  (unsigned long long)ds.frames_tx, (unsigned long long)ds.frames_rx);
        prom_head(b, "hydra_dist_retransmits_total", "counter", "Frames sent again.");
        sb_printf(b, "hydra_dist_retransmits_total %llu\n", (unsigned long long)ds.retransmits);
        prom_head(b, "hydra_dist_malformed_total", "counter", "Frames dropped as malformed.");
        sb_printf(b, "hydra_dist_malformed_total %llu\n", (unsigned long long)ds.malformed);
    }
    free(st);
}

int hy_console_metrics(struct hy_console *c, char *buf, size_t cap, size_t *len)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    struct sb b = {0};
    prometheus(c, &b);
    int rc = 0;
    if (b.oom)
        rc = HY_ENOMEM;
    else if (b.len + 1 > cap)
        rc = HY_ENOSPC;
    else {
        memcpy(buf, b.p, b.len + 1);
        *len = b.len;
    }
    free(b.p);
    return rc;
}

/* ---- HTTP ----------------------------------------------------------------- */

static int respond(struct hy_tcp *s, unsigned status, const char *ctype, const char *body,
                   size_t blen, bool keep_alive)
{
    char head[512];
    int n = hy_http_response_head(head, sizeof(head), status, ctype, blen, keep_alive,
                                  "X-Content-Type-Options: nosniff\r\n");
    if (n < 0)
        return n;
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, blen}};
    return hy_tcp_sendv(s, iov, blen ? 2 : 1, (int64_t)(5 * SEC));
}

static int respond_sb(struct hy_tcp *s, const char *ctype, struct sb *b, bool keep_alive)
{
    if (b->oom)
        return respond(s, 503, "text/plain", "out of memory\n", 14, false);
    return respond(s, 200, ctype, b->p ? b->p : "", b->len, keep_alive);
}

static bool path_is(const struct hy_http_request *r, const char *p)
{
    return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static bool method_is(const struct hy_http_request *r, const char *m)
{
    return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

/* Constant-time comparison of the request's bearer token with ours. */
static bool authorized(struct hy_console *c, const struct hy_http_request *r)
{
    if (!c->has_token)
        return false;
    const struct hy_http_header *h = hy_http_header_find(r, "authorization");
    if (!h || h->value_len < 7 || memcmp(h->value, "Bearer ", 7) != 0)
        return false;
    size_t n = h->value_len - 7, t = strlen(c->token);
    unsigned diff = (unsigned)(n ^ t);
    for (size_t i = 0; i < n && i < t; i++)
        diff |= (unsigned char)(h->value[7 + i] ^ c->token[i]);
    return diff == 0;
}

/* ---- the WebSocket push ----------------------------------------------------- */

struct ws_ctx {
    struct hy_console *c;
};

static void push(struct hy_ws_conn *conn, struct hy_console *c)
{
    struct sb b = {0};
    json_all(c, &b);
    if (!b.oom)
        hy_ws_send_text(conn, b.p, b.len);
    free(b.p);
    atomic_fetch_add_explicit(&c->ws_pushes, 1, memory_order_relaxed);
}

static int ws_open(struct hy_ws_conn *conn, void *ctx)
{
    struct ws_ctx *w = ctx;
    push(conn, w->c);
    hy_send_after(w->c->o.refresh_ns, hy_self(), TAG_TICK, NULL, 0, 0, NULL);
    return 0;
}

static void ws_text(struct hy_ws_conn *conn, const char *data, size_t len, void *ctx)
{
    (void)data;
    (void)len;
    struct ws_ctx *w = ctx;
    push(conn, w->c); /* any text from the page asks for a fresh push */
}

static void ws_info(struct hy_ws_conn *conn, const struct hy_msg *m, void *ctx)
{
    struct ws_ctx *w = ctx;
    if (m->tag != TAG_TICK)
        return; /* late collector answers and the like */
    push(conn, w->c);
    hy_send_after(w->c->o.refresh_ns, hy_self(), TAG_TICK, NULL, 0, 0, NULL);
}

static const struct hy_ws_handler ws_handler = {
    .on_open = ws_open,
    .on_text = ws_text,
    .on_info = ws_info,
};

/* ---- routes ----------------------------------------------------------------- */

/* Answers an error and closes gracefully: our side is shut down for
 * writing, then what the client still sends is read and dropped for a
 * moment (bounded in bytes and time), so that the kernel does not answer its
 * unread bytes with a reset that could destroy the response in flight. */
static void bad(struct hy_console *c, struct hy_tcp *s, unsigned status)
{
    atomic_fetch_add_explicit(&c->bad_requests, 1, memory_order_relaxed);
    const char *t = hy_http_status_text(status);
    char body[96];
    int n = snprintf(body, sizeof(body), "%u %s\n", status, t);
    if (respond(s, status, "text/plain", body, (size_t)n, false) < 0)
        return;
    if (hy_tcp_shutdown(s, SHUT_WR) < 0)
        return;
    char sink[4096];
    size_t drained = 0, got;
    uint64_t until = hy_now_ns() + SEC;
    while (drained < (64u << 10)) {
        uint64_t now = hy_now_ns();
        if (now >= until || hy_tcp_recv(s, sink, sizeof(sink), &got, (int64_t)(until - now)) < 0)
            break;
        drained += got;
    }
}

static int action(struct hy_console *c, struct hy_tcp *s, const struct hy_http_request *r,
                  bool keep)
{
    if (!method_is(r, "POST"))
        return respond(s, 405, "text/plain", "POST only\n", 10, keep);
    if (!c->o.allow_actions)
        return respond(s, 403, "text/plain", "actions are disabled\n", 21, keep);
    if (!authorized(c, r))
        return respond(s, 401, "text/plain", "token required\n", 15, keep);
    const char *v;
    size_t vl;
    hy_pid pid;
    if (path_is(r, "/api/kill")) {
        if (!query_get(r->query, r->query_len, "pid", &v, &vl) || !pid_parse(v, vl, &pid))
            return respond(s, 400, "text/plain", "pid=ID required\n", 16, keep);
        int rc = hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL));
        hy_log(HY_LOG_NOTICE, "console: kill %.*s: %s", (int)vl, v, hy_strerror(rc));
        char body[96];
        int n = snprintf(body, sizeof(body), "{\"result\":\"%s\"}", hy_err_name(rc));
        return respond(s, rc == 0 ? 200 : 404, "application/json", body, (size_t)n, keep);
    }
    /* /api/restart?sup=ID&child=CHILD */
    const char *cv;
    size_t cl;
    char child[HY_CHILD_ID_MAX];
    if (!query_get(r->query, r->query_len, "sup", &v, &vl) || !pid_parse(v, vl, &pid) ||
        !query_get(r->query, r->query_len, "child", &cv, &cl) || cl == 0 || cl >= sizeof(child))
        return respond(s, 400, "text/plain", "sup=ID&child=CHILD required\n", 28, keep);
    memcpy(child, cv, cl);
    child[cl] = '\0';
    int rc = hy_supervisor_terminate_child(pid, child, HY_PID_NONE);
    if (rc == 0)
        rc = hy_supervisor_restart_child(pid, child, NULL);
    hy_log(HY_LOG_NOTICE, "console: restart %s of %.*s: %s", child, (int)vl, v, hy_strerror(rc));
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"result\":\"%s\"}", hy_err_name(rc));
    return respond(s, rc == 0 ? 200 : 409, "application/json", body, (size_t)n, keep);
}

/* The JSON of a GET /api/... request into b; returns the HTTP status (200,
 * or 400/404 with a short JSON error in b). */
static unsigned api_get(struct hy_console *c, const struct hy_http_request *r, struct sb *b)
{
    if (path_is(r, "/api/all")) {
        json_all(c, b);
    } else if (path_is(r, "/api/shards") || path_is(r, "/api/procs")) {
        struct hy_msg *snaps[HY_MAX_SHARDS];
        bool procs = path_is(r, "/api/procs");
        gather(c, procs ? c->o.max_procs : 0, snaps);
        if (procs)
            json_procs(c, snaps, b);
        else
            json_shards(c, snaps, b);
        free_snaps(c, snaps);
    } else if (path_is(r, "/api/proc")) {
        const char *v;
        size_t vl;
        hy_pid pid;
        struct hy_proc_info pi;
        if (!query_get(r->query, r->query_len, "pid", &v, &vl) || !pid_parse(v, vl, &pid)) {
            sb_printf(b, "{\"error\":\"pid=ID required\"}");
            return 400;
        }
        if (hy_pid_node(pid) != hy_node_id() || hy_proc_info(pid, &pi) < 0) {
            sb_printf(b, "{\"error\":\"noproc\"}");
            return 404;
        }
        json_proc_page(c, &pi, b);
    } else if (path_is(r, "/api/tree")) {
        json_tree(c, b);
    } else if (path_is(r, "/api/reports")) {
        json_reports(c, b);
    } else if (path_is(r, "/api/cluster")) {
        json_cluster(b);
    } else {
        sb_printf(b, "{\"error\":\"not found\"}");
        return 404;
    }
    return 200;
}

int hy_console_api(struct hy_console *c, const char *target, char *buf, size_t cap, size_t *len)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!c || !target || !buf || !len)
        return HY_EINVAL;
    struct hy_http_request r;
    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.method_len = 3;
    r.path = target;
    const char *q = strchr(target, '?');
    r.path_len = q ? (size_t)(q - target) : strlen(target);
    if (q) {
        r.query = q + 1;
        r.query_len = strlen(q + 1);
    }
    if (r.path_len <= 5 || memcmp(target, "/api/", 5) != 0)
        return HY_ENOENT;
    struct sb b = {0};
    unsigned status = api_get(c, &r, &b);
    int rc = 0;
    if (b.oom)
        rc = HY_ENOMEM;
    else if (status == 400)
        rc = HY_EINVAL;
    else if (status != 200)
        rc = HY_ENOENT;
    else if (b.len + 1 > cap)
        rc = HY_ENOSPC;
    else {
        memcpy(buf, b.p ? b.p : "", b.len);
        buf[b.len] = '\0';
        *len = b.len;
    }
    free(b.p);
    return rc;
}

/* Serves one parsed request; returns < 0 to close the connection. */
static int route(struct hy_console *c, struct hy_tcp *s, const struct hy_http_request *r)
{
    bool keep = r->keep_alive;
    atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
    if (path_is(r, "/api/kill") || path_is(r, "/api/restart"))
        return action(c, s, r, keep);
    if (!method_is(r, "GET"))
        return respond(s, 405, "text/plain", "GET only\n", 9, keep);
    struct sb b = {0};
    int rc;
    if (path_is(r, "/")) {
        rc = respond(s, 200, "text/html; charset=utf-8", hy__console_page, strlen(hy__console_page),
                     keep);
    } else if (path_is(r, "/metrics")) {
        prometheus(c, &b);
        rc = respond_sb(s, "text/plain; version=0.0.4", &b, keep);
    } else if (r->path_len > 5 && memcmp(r->path, "/api/", 5) == 0) {
        unsigned status = api_get(c, r, &b);
        if (status != 200)
            rc = respond(s, status, "application/json", b.p ? b.p : "", b.len, keep);
        else
            rc = respond_sb(s, "application/json", &b, keep);
    } else {
        rc = respond(s, 404, "text/plain", "not found\n", 10, keep);
    }
    free(b.p);
    return rc < 0 ? rc : (keep ? 0 : -1);
}

static void conn_handle(struct hy_tcp *s, void *arg)
{
    struct hy_console *c = arg;
    char *buf = malloc(MAX_HEAD + MAX_BODY);
    if (!buf)
        return;
    size_t len = 0;
    struct hy_http_limits lim = {.max_head = MAX_HEAD, .max_headers = 32, .max_body = MAX_BODY};
    struct hy_http_parser p;
    hy_http_parser_init(&p, &lim);
    uint64_t deadline = hy_now_ns() + c->o.request_timeout_ns;
    for (;;) {
        struct hy_http_request req;
        int rc = len ? hy_http_parse(&p, buf, len, &req) : HY_EAGAIN;
        if (rc == 0) {
            if (req.upgrade_websocket && path_is(&req, "/ws")) {
                struct ws_ctx w = {c};
                struct hy_ws_options wo = {.max_message = 4096};
                hy_ws_serve(s, &req, (const uint8_t *)buf + req.total_len, len - req.total_len,
                            &ws_handler, &w, &wo);
                break;
            }
            if (route(c, s, &req) < 0)
                break;
            memmove(buf, buf + req.total_len, len - req.total_len);
            len -= req.total_len;
            hy_http_parser_reset(&p);
            deadline = hy_now_ns() + c->o.request_timeout_ns;
            continue;
        }
        if (rc != HY_EAGAIN) {
            bad(c, s, p.status);
            break;
        }
        uint64_t now = hy_now_ns();
        if (now >= deadline) {
            if (len)
                bad(c, s, 408);
            break;
        }
        size_t got = 0;
        rc = hy_tcp_recv(s, buf + len, MAX_HEAD + MAX_BODY - len, &got, (int64_t)(deadline - now));
        if (rc == HY_ETIMEDOUT) {
            if (len)
                bad(c, s, 408);
            break;
        }
        if (rc < 0)
            break;
        len += got;
    }
    free(buf);
}

static const struct hy_tcp_server_ops conn_ops = {.handle = conn_handle};

/* ---- start and stop ----------------------------------------------------------- */

static bool is_loopback(const struct hy_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        return memcmp(&in6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback)) == 0;
    }
    return false;
}

/* Stops the first n collectors and waits until they have ended (they use c). */
static void stop_collectors(struct hy_console *c, unsigned n)
{
    hy_ref refs[HY_MAX_SHARDS];
    for (unsigned s = 0; s < n; s++) {
        if (hy_monitor(c->collectors[s], &refs[s]) < 0)
            refs[s] = HY_REF_NONE;
        hy_send(c->collectors[s], TAG_STOP, NULL, 0);
    }
    for (unsigned s = 0; s < n; s++) {
        struct hy_msg *m;
        if (!hy_ref_is_none(refs[s]) && hy_recv_ref(refs[s], &m, (int64_t)(10 * SEC)) == 0)
            hy_msg_free(m);
    }
}

int hy_console_start(const char *address, uint16_t port, const struct hy_console_options *opts,
                     struct hy_console **out)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!out)
        return HY_EINVAL;
    struct hy_console_options o = {0};
    if (opts)
        o = *opts;
    if (!o.refresh_ns)
        o.refresh_ns = SEC;
    if (!o.request_timeout_ns)
        o.request_timeout_ns = 10 * SEC;
    if (!o.collect_budget_ns)
        o.collect_budget_ns = 2000000;
    if (!o.reply_timeout_ns)
        o.reply_timeout_ns = SEC / 2;
    if (!o.max_connections)
        o.max_connections = 256;
    if (!o.max_procs)
        o.max_procs = 1000;
    if (o.shard < -1 || o.shard >= (int)hy_shard_count())
        return HY_EINVAL;
    struct hy_addr addr;
    int rc = hy_addr_parse(address ? address : "127.0.0.1", port, &addr);
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "console: address %s is not an IP literal", address);
        return HY_EINVAL;
    }
    bool has_token = o.token && o.token[0];
    if (has_token && strlen(o.token) >= sizeof(((struct hy_console *)0)->token))
        return HY_EINVAL;
    if (!is_loopback(&addr) && !has_token) {
        hy_log(HY_LOG_ERROR, "console: refusing to listen on %s without a token", address);
        return HY_EPERM;
    }
    if (o.allow_actions && !has_token) {
        hy_log(HY_LOG_ERROR, "console: actions need a token");
        return HY_EPERM;
    }
    struct hy_console *c = calloc(1, sizeof(*c));
    struct console_hook *hook = calloc(1, sizeof(*hook));
    if (!c || !hook) {
        free(c);
        free(hook);
        return HY_ENOMEM;
    }
    struct hy_console *none = NULL;
    if (!atomic_compare_exchange_strong(&the_console, &none, c)) {
        free(c);
        free(hook);
        return HY_EALREADY;
    }
    pthread_mutex_init(&hook->lock, NULL);
    hook->c = c;
    c->hook = hook;
    c->o = o;
    c->has_token = has_token;
    if (has_token)
        snprintf(c->token, sizeof(c->token), "%s", o.token);
    c->o.token = NULL;
    c->nshards = hy_shard_count();
    pthread_mutex_init(&c->lock, NULL);
    for (unsigned s = 0; s < c->nshards; s++) {
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.shard = (int)s;
        rc = hy_spawn_opt(collector, c, &so, &c->collectors[s]);
        if (rc < 0) {
            stop_collectors(c, s);
            goto fail;
        }
    }
    struct hy_tcp_server_opts so;
    hy_tcp_server_opts_init(&so);
    so.listen.addr = addr;
    so.ops = &conn_ops;
    so.arg = c;
    so.acceptors = 2;
    so.max_connections = o.max_connections;
    unsigned serve_on = (unsigned)o.shard;
    if (o.shard >= 0) {
        so.shards = &serve_on;
        so.nshards = 1;
    }
    rc = hy_tcp_server_start(&so, &c->srv);
    if (rc < 0) {
        stop_collectors(c, c->nshards);
        goto fail;
    }
    bool reports_on = hy_report_enabled();
    hy_report_set_enabled(false);
    hy_report_get_handler(&hook->prev_report, &hook->prev_report_ctx);
    hy_report_set_handler(on_report, hook);
    hy_report_set_enabled(reports_on);
    hy_log_get_sink(&hook->prev_sink, &hook->prev_sink_ctx);
    hy_log_set_sink(on_log, hook);
    *out = c;
    return 0;
fail:
    pthread_mutex_destroy(&hook->lock);
    free(hook);
    pthread_mutex_destroy(&c->lock);
    atomic_store(&the_console, NULL);
    free(c);
    return rc;
}

uint16_t hy_console_port(const struct hy_console *c)
{
    return hy_tcp_server_port(c->srv);
}

int hy_console_stop(struct hy_console *c)
{
    if (!c)
        return 0;
    if (!hy_in_process())
        return HY_ENOTPROC;
    hy_tcp_server_stop(c->srv, 0);
    stop_collectors(c, c->nshards);
    struct console_hook *h = c->hook;
    bool chained = false; /* a handler or sink set after ours may still call ours */
    bool reports_on = hy_report_enabled();
    hy_report_set_enabled(false);
    hy_report_fn cur_report;
    void *cur_ctx;
    hy_report_get_handler(&cur_report, &cur_ctx);
    if (cur_report == on_report && cur_ctx == h) /* unless someone replaced it meanwhile */
        hy_report_set_handler(h->prev_report, h->prev_report_ctx);
    else
        chained = true;
    hy_report_set_enabled(reports_on);
    hy_log_sink_fn cur_sink;
    hy_log_get_sink(&cur_sink, &cur_ctx);
    if (cur_sink == on_log && cur_ctx == h)
        hy_log_set_sink(h->prev_sink, h->prev_sink_ctx);
    else
        chained = true;
    /* from here on no call through the hook touches c: a call in flight
     * holds h->lock while it does */
    pthread_mutex_lock(&h->lock);
    h->c = NULL;
    pthread_mutex_unlock(&h->lock);
    if (chained) {
        h->next_retired = atomic_load(&retired_hooks);
        while (!atomic_compare_exchange_weak(&retired_hooks, &h->next_retired, h))
            ;
        hy_log(HY_LOG_INFO, "console: a report handler or log sink set after the console's "
                            "still calls it: its pass-through stays in place");
    } else {
        /* hy_log_set_sink and hy_report_set_handler returned only once
         * every call through the hook had returned (and acquired each
         * call's end, core/callback_internal.h): nothing calls it now */
        pthread_mutex_destroy(&h->lock);
        free(h);
    }
    /* no thread uses c->lock any more: calls through the hook leave c
     * alone since h->c went NULL above; the console's processes
     * (connections, collectors) have ended above */
    pthread_mutex_destroy(&c->lock);
    atomic_store(&the_console, NULL);
    free(c);
    return 0;
}
