/* TCP server (tcp_server.h): per shard, a manager process that owns the
 * shard's share of the server, acceptor processes each owning a listener
 * of the shared port (SO_REUSEPORT), and one handler process per
 * connection, monitored by the manager.
 *
 * Messages: the acceptor tells its manager about every handler it starts
 * (TAG_NEW, payload hy_pid) so the manager monitors it; the manager's DOWN
 * messages keep the active count; stop asks each manager (TAG_STOP, payload
 * int64_t drain ns) and waits for the managers' DOWN. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "msg.h"
#include "pidset_internal.h"
#include "proc.h"
#include "runtime.h"
#include "signals.h"
#include "tcp_server.h"

#define TAG_READY (HY_TAG_SYSTEM | 0x54535244ull) /* manager -> starter: int32 rc + port */
#define TAG_NEW (HY_TAG_SYSTEM | 0x5453454eull)   /* acceptor -> manager: hy_pid */
#define TAG_STOP (HY_TAG_SYSTEM | 0x54535354ull)  /* stopper -> manager: int64 drain */

struct hy_tcp_server {
    struct hy_tcp_server_ops ops;
    void *arg;
    struct hy_tcp_listen_opts listen;
    unsigned acceptors;
    unsigned max_conns;
    int stack_mode;
    size_t stack_size;
    uint16_t port;
    _Atomic uint64_t accepted, active, refused, crashed;
    unsigned nmgr;
    hy_pid mgr[HY_MAX_SHARDS];
};

void hy_tcp_server_opts_init(struct hy_tcp_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    hy_tcp_listen_opts_init(&o->listen);
    o->acceptors = 4;
    o->handler_stack_mode = HY_STACK_DEFAULT;
}

struct ready {
    int32_t rc;
    uint16_t port;
};

struct mgr_arg {
    struct hy_tcp_server *srv;
    uint16_t port;
    hy_pid starter;
};

/* ---- connection handlers --------------------------------------------------- */

static void conn_entry(void *arg)
{
    struct hy_tcp_server *srv = arg;
    struct hy_msg *m;
    if (hy_recv_tag(HY_TCP_TAG_GIVEN, &m, HY_INFINITY) != 0)
        return;
    struct hy_tcp *sock = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    srv->ops.handle(sock, srv->arg);
    /* whatever the handler still owns is closed as the process ends */
}

/* ---- acceptors ---------------------------------------------------------------- */

struct acc_arg {
    struct hy_tcp_server *srv;
    hy_pid manager;
};

static void acceptor(void *arg)
{
    struct acc_arg a = *(struct acc_arg *)arg;
    struct hy_tcp_server *srv = a.srv;
    struct hy_msg *m;
    if (hy_recv_tag(HY_TCP_TAG_GIVEN, &m, HY_INFINITY) != 0)
        return;
    struct hy_tcp *ls = hy_tcp_msg_of(m)->sock;
    hy_msg_free(m);
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.stack_mode = srv->stack_mode;
    so.stack_size = srv->stack_size;
    for (;;) {
        struct hy_tcp *c;
        int rc = hy_tcp_accept(ls, &c, HY_INFINITY);
        if (rc == HY_EMFILE) {
            hy_log(HY_LOG_WARNING, "tcp_server: out of descriptors, accept paused 10 ms");
            hy_sleep_ns(10000000);
            continue;
        }
        if (rc) {
            hy_log(HY_LOG_ERROR, "tcp_server: accept failed: %s", hy_strerror(rc));
            hy_sleep_ns(1000000);
            continue;
        }
        atomic_fetch_add_explicit(&srv->accepted, 1, memory_order_relaxed);
        uint64_t was = atomic_fetch_add_explicit(&srv->active, 1, memory_order_relaxed);
        if (srv->max_conns && was >= srv->max_conns) {
            atomic_fetch_sub_explicit(&srv->active, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&srv->refused, 1, memory_order_relaxed);
            hy_tcp_close(c);
            continue;
        }
        hy_pid h;
        rc = hy_spawn_opt(conn_entry, srv, &so, &h);
        if (rc == 0)
            rc = hy_tcp_controlling_process(c, h);
        if (rc) {
            atomic_fetch_sub_explicit(&srv->active, 1, memory_order_relaxed);
            hy_log(HY_LOG_WARNING, "tcp_server: no handler process: %s", hy_strerror(rc));
            hy_tcp_close(c);
            continue;
        }
        hy_send_sys(a.manager, TAG_NEW, HY_REF_NONE, &h, sizeof(h));
    }
}

/* ---- managers ------------------------------------------------------------------- */

/* The manager's live handlers: a pid set, so a close costs O(1) however
 * many connections are open. */
struct handlers {
    struct hy__pidset set;
};

static void handlers_add(struct handlers *hs, hy_pid p)
{
    if (hy__pidset_add(&hs->set, p) != 0)
        hy_panic("tcp_server: out of memory tracking handlers");
}

static bool handlers_del(struct handlers *hs, hy_pid p)
{
    return hy__pidset_del(&hs->set, p);
}

static void handlers_free(void *arg)
{
    hy__pidset_fini(&((struct handlers *)arg)->set);
}

/* A DOWN of a handler: count it out. */
static void on_down(struct hy_tcp_server *srv, struct handlers *hs, const struct hy_msg *m)
{
    if (m->size < sizeof(struct hy_down_info))
        return;
    const struct hy_down_info *d = (const struct hy_down_info *)m->data;
    if (!handlers_del(hs, d->pid))
        return;
    atomic_fetch_sub_explicit(&srv->active, 1, memory_order_relaxed);
    uint16_t k = d->reason.kind;
    /* noproc: it ended before the monitor was set, we cannot tell how */
    if (k != HY_REASON_NORMAL && k != HY_REASON_SHUTDOWN && k != HY_REASON_NOPROC)
        atomic_fetch_add_explicit(&srv->crashed, 1, memory_order_relaxed);
}

static void manager(void *arg)
{
    struct mgr_arg ma = *(struct mgr_arg *)arg;
    struct hy_tcp_server *srv = ma.srv;
    hy_trap_exit(true, NULL);
    struct handlers *hs = hy_alloc(sizeof(*hs));
    struct ready r = {0, ma.port};
    if (!hs || hy_on_exit(handlers_free, hs) != 0) {
        r.rc = HY_ENOMEM;
        hy_send_sys(ma.starter, TAG_READY, HY_REF_NONE, &r, sizeof(r));
        return;
    }
    memset(hs, 0, sizeof(*hs));
    hy_pid acc[64];
    unsigned nacc = 0;
    struct hy_tcp_listen_opts lo = srv->listen;
    for (unsigned i = 0; i < srv->acceptors && i < 64; i++) {
        struct hy_tcp *ls;
        struct hy_addr a = lo.addr;
        /* the first listener of the first shard may pick the port */
        if (a.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&a.ss)->sin_port = htons(r.port);
        else
            ((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(r.port);
        lo.addr = a;
        lo.reuseport = true;
        int rc = hy_tcp_listen(&lo, &ls);
        if (rc) {
            r.rc = rc;
            break;
        }
        if (!r.port) {
            struct hy_addr me;
            hy_tcp_sockname(ls, &me);
            r.port = hy_addr_port(&me);
        }
        struct acc_arg aa = {srv, hy_self()};
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.link = true;
        so.arg_size = sizeof(aa);
        if ((rc = hy_spawn_opt(acceptor, &aa, &so, &acc[nacc])) != 0 ||
            (rc = hy_tcp_controlling_process(ls, acc[nacc])) != 0) {
            hy_tcp_close(ls);
            r.rc = rc;
            break;
        }
        nacc++;
    }
    hy_send_sys(ma.starter, TAG_READY, HY_REF_NONE, &r, sizeof(r));
    if (r.rc)
        return; /* linked acceptors die with us, their listeners closed */

    int64_t drain = 0;
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            continue;
        if (m->tag == TAG_NEW && m->size == sizeof(hy_pid)) {
            hy_pid h;
            memcpy(&h, m->data, sizeof(h));
            handlers_add(hs, h);
            hy_monitor(h, NULL);
        } else if (m->tag == HY_TAG_DOWN) {
            on_down(srv, hs, m);
        } else if (m->tag == TAG_STOP && m->size == sizeof(drain)) {
            memcpy(&drain, m->data, sizeof(drain));
            hy_msg_free(m);
            break;
        }
        hy_msg_free(m);
    }
    /* stop accepting: the acceptors (and their listeners) go first */
    for (unsigned i = 0; i < nacc; i++)
        hy_exit_pid(acc[i], hy_reason_make(HY_REASON_KILL));
    /* handlers announced but not yet monitored are still in the mailbox */
    struct hy_msg *m;
    uint64_t deadline = drain < 0 ? UINT64_MAX : hy_now_ns() + (uint64_t)drain;
    bool killed = false;
    for (;;) {
        while (hy_recv_tag(TAG_NEW, &m, HY_NOWAIT) == 0) {
            hy_pid h;
            memcpy(&h, m->data, sizeof(h));
            handlers_add(hs, h);
            hy_monitor(h, NULL);
            if (killed)
                hy_exit_pid(h, hy_reason_make(HY_REASON_SHUTDOWN));
            hy_msg_free(m);
        }
        if (hs->set.n == 0)
            break;
        uint64_t now = hy_now_ns();
        if (!killed && now >= deadline) {
            for (size_t i = 0; i < hs->set.cap; i++)
                if (!hy_pid_is_none(hs->set.slot[i]))
                    hy_exit_pid(hs->set.slot[i], hy_reason_make(HY_REASON_SHUTDOWN));
            killed = true;
        }
        int64_t wait = killed || deadline == UINT64_MAX ? 100000000 : (int64_t)(deadline - now);
        if (wait > 100000000)
            wait = 100000000;
        if (hy_recv_tag(HY_TAG_DOWN, &m, wait) == 0) {
            on_down(srv, hs, m);
            hy_msg_free(m);
        }
    }
}

/* ---- start / stop ------------------------------------------------------------------ */

static int stop_managers(struct hy_tcp_server *srv, int64_t drain_ns)
{
    hy_ref refs[HY_MAX_SHARDS];
    for (unsigned i = 0; i < srv->nmgr; i++) {
        hy_monitor(srv->mgr[i], &refs[i]);
        hy_send_sys(srv->mgr[i], TAG_STOP, HY_REF_NONE, &drain_ns, sizeof(drain_ns));
    }
    for (unsigned i = 0; i < srv->nmgr; i++) {
        struct hy_msg *m;
        if (hy_recv_ref(refs[i], &m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
    return 0;
}

/* The shards' listeners share their port by SO_REUSEPORT, which would also
 * let another program (or a second server here) join the port and take part
 * of the connections unnoticed. A plain bind (no SO_REUSEPORT) fails while
 * anyone listens there, so the start fails as a single listener would. Two
 * servers starting at the same instant may both pass: the check is a probe,
 * not a lock. */
static int port_taken(const struct hy_addr *a)
{
    if (hy_addr_port(a) == 0)
        return 0;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0; /* the listeners' own socket() reports it */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ? 0 : errno;
    close(fd);
    return rc == EADDRINUSE ? HY_EADDRINUSE : 0;
}

int hy_tcp_server_start(const struct hy_tcp_server_opts *o, struct hy_tcp_server **out)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!o || !out || !o->ops || !o->ops->handle || o->acceptors > 64 ||
        (o->shards && !o->nshards)) {
        hy_log(HY_LOG_WARNING, "tcp_server_start: bad options (ops, handle, acceptors, shards)");
        return HY_EINVAL;
    }
    unsigned n = o->shards ? o->nshards : hy_shard_count();
    for (unsigned i = 0; o->shards && i < n; i++)
        if (o->shards[i] >= hy_shard_count())
            return HY_EINVAL;
    if (o->listen.reuseport && port_taken(&o->listen.addr)) {
        hy_log(HY_LOG_WARNING, "tcp_server_start: listen.addr: port %u is in use",
               (unsigned)hy_addr_port(&o->listen.addr));
        return HY_EADDRINUSE;
    }
    struct hy_tcp_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return HY_ENOMEM;
    srv->ops = *o->ops;
    srv->arg = o->arg;
    srv->listen = o->listen;
    srv->acceptors = o->acceptors ? o->acceptors : 4;
    srv->max_conns = o->max_connections;
    srv->stack_mode = o->handler_stack_mode;
    srv->stack_size = o->handler_stack_size;
    uint16_t port = hy_addr_port(&o->listen.addr);
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        struct mgr_arg ma = {srv, port, hy_self()};
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.shard = (int)(o->shards ? o->shards[i] : i);
        so.arg_size = sizeof(ma);
        hy_ref mref;
        so.monitor = true;
        so.monitor_ref = &mref;
        rc = hy_spawn_opt(manager, &ma, &so, &srv->mgr[srv->nmgr]);
        if (rc)
            break;
        srv->nmgr++;
        struct hy_msg *m;
        rc = hy_recv_tag(TAG_READY, &m, HY_INFINITY);
        if (rc)
            break;
        struct ready r;
        memcpy(&r, m->data, sizeof(r));
        hy_msg_free(m);
        hy_demonitor(mref, true);
        if (r.rc) {
            rc = r.rc;
            break;
        }
        port = r.port;
    }
    if (rc) {
        stop_managers(srv, 0);
        free(srv);
        return rc;
    }
    srv->port = port;
    *out = srv;
    return 0;
}

uint16_t hy_tcp_server_port(const struct hy_tcp_server *srv)
{
    return srv ? srv->port : 0;
}

void hy_tcp_server_stats(const struct hy_tcp_server *srv, struct hy_tcp_server_stats *out)
{
    if (!srv || !out)
        return;
    out->accepted = atomic_load_explicit(&srv->accepted, memory_order_relaxed);
    out->active = atomic_load_explicit(&srv->active, memory_order_relaxed);
    out->refused = atomic_load_explicit(&srv->refused, memory_order_relaxed);
    out->crashed = atomic_load_explicit(&srv->crashed, memory_order_relaxed);
}

int hy_tcp_server_stop(struct hy_tcp_server *srv, int64_t drain_ns)
{
    if (!srv)
        return HY_EINVAL;
    if (!hy_in_process())
        return HY_ENOTPROC;
    stop_managers(srv, drain_ns);
    free(srv);
    return 0;
}
