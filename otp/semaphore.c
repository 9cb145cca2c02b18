/* Semaphore: a GenServer with a count, a FIFO of waiting requests answered
 * by deferred replies, a table of clients (holders and waiters) keyed by
 * pid, one monitor per client, and one timer per waiting request. */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "gen_server.h"
#include "semaphore.h"
#include "signals.h"
#include "timer.h"

enum { SEM_ACQUIRE = 1, SEM_RELEASE, SEM_INFO, SEM_TIMEOUT };

struct acquire_req {
    uint32_t n;
    int64_t timeout_ns;
};

struct timeout_msg {
    hy_pid pid;
    uint64_t seq;
};

struct client {
    hy_pid pid;
    hy_ref mref;
    uint32_t held;
    /* waiting request, if any */
    bool waiting;
    uint32_t want;
    uint64_t seq;
    hy_gs_from from;
    hy_ref timer;
    bool timed;
    struct client *qprev, *qnext; /* FIFO of waiters */
    struct client *hnext;         /* hash chain */
};

struct sem {
    uint32_t permits, available;
    uint32_t nwaiting, nholders;
    uint64_t seq;
    struct client *qhead, *qtail;
    struct client **buckets;
    size_t nbuckets, nclients;
};

/* ---- the client table ----------------------------------------------------------- */

static size_t pid_hash(hy_pid p, size_t nb)
{
    uint64_t h = (p.hi ^ (p.lo * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return (size_t)(h >> 32) & (nb - 1);
}

static struct client *client_find(struct sem *s, hy_pid pid)
{
    for (struct client *c = s->buckets[pid_hash(pid, s->nbuckets)]; c; c = c->hnext)
        if (hy_pid_eq(c->pid, pid))
            return c;
    return NULL;
}

static void table_grow(struct sem *s)
{
    size_t nb = s->nbuckets * 2;
    struct client **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct client *c = s->buckets[i];
        while (c) {
            struct client *next = c->hnext;
            size_t h = pid_hash(c->pid, nb);
            c->hnext = b[h];
            b[h] = c;
            c = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

/* The client record of pid, created (and monitored) if new; NULL when out
 * of memory. */
static struct client *client_get(struct sem *s, hy_pid pid)
{
    struct client *c = client_find(s, pid);
    if (c)
        return c;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (hy_monitor(pid, &c->mref) != 0) {
        free(c);
        return NULL;
    }
    c->pid = pid;
    if (s->nclients >= s->nbuckets)
        table_grow(s);
    size_t h = pid_hash(pid, s->nbuckets);
    c->hnext = s->buckets[h];
    s->buckets[h] = c;
    s->nclients++;
    return c;
}

/* Forgets c (neither holding nor waiting any more). */
static void client_drop(struct sem *s, struct client *c, bool demonitor)
{
    struct client **pp = &s->buckets[pid_hash(c->pid, s->nbuckets)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    s->nclients--;
    if (demonitor)
        hy_demonitor(c->mref, true);
    free(c);
}

static void maybe_drop(struct sem *s, struct client *c)
{
    if (!c->held && !c->waiting)
        client_drop(s, c, true);
}

/* ---- the queue ------------------------------------------------------------------ */

static void enqueue(struct sem *s, struct client *c)
{
    c->qnext = NULL;
    c->qprev = s->qtail;
    if (s->qtail)
        s->qtail->qnext = c;
    else
        s->qhead = c;
    s->qtail = c;
    c->waiting = true;
    s->nwaiting++;
}

static void dequeue(struct sem *s, struct client *c)
{
    if (c->qprev)
        c->qprev->qnext = c->qnext;
    else
        s->qhead = c->qnext;
    if (c->qnext)
        c->qnext->qprev = c->qprev;
    else
        s->qtail = c->qprev;
    c->qprev = c->qnext = NULL;
    c->waiting = false;
    s->nwaiting--;
    if (c->timed) {
        hy_timer_cancel(c->timer, NULL); /* HY_ENOENT: fired, the seq check drops it */
        c->timed = false;
    }
}

static void reply_rc(hy_gs_from from, int rc)
{
    hy_gen_server_reply(from, (uint64_t) - (int64_t)rc, NULL, 0);
}

static void give(struct sem *s, struct client *c, uint32_t n)
{
    if (!c->held)
        s->nholders++;
    c->held += n;
    s->available -= n;
}

/* Grants waiting requests in order while the head one fits. */
static void grant(struct sem *s)
{
    struct client *c;
    while ((c = s->qhead) != NULL && c->want <= s->available) {
        dequeue(s, c);
        give(s, c, c->want);
        reply_rc(c->from, 0);
    }
}

static void take_back(struct sem *s, struct client *c, uint32_t n)
{
    c->held -= n;
    s->available += n;
    if (!c->held)
        s->nholders--;
}

/* ---- callbacks ------------------------------------------------------------------ */

/* Frees the state however the semaphore ends (killed by a supervisor's
 * shutdown, it gets no terminate call). */
static void sem_free(void *arg)
{
    struct sem *s = arg;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct client *c = s->buckets[i];
        while (c) {
            struct client *next = c->hnext;
            free(c);
            c = next;
        }
    }
    free(s->buckets);
    free(s);
}

static int sem_init(struct hy_gs *gs, void *arg)
{
    struct sem *s = calloc(1, sizeof(*s));
    if (s) {
        s->nbuckets = 16;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    }
    if (!s || !s->buckets) {
        free(s);
        hy_gen_server_stop_reason(gs, hy_reason_user(HY_ENOMEM, "out of memory"));
        return HY_GS_STOP;
    }
    memcpy(&s->permits, arg, sizeof(s->permits));
    s->available = s->permits;
    if (hy_on_exit(sem_free, s) != 0) {
        sem_free(s);
        hy_gen_server_stop_reason(gs, hy_reason_user(HY_ENOMEM, "out of memory"));
        return HY_GS_STOP;
    }
    hy_gen_server_set_state(gs, s);
    return HY_GS_OK;
}

static void on_acquire(struct hy_gs *gs, struct sem *s, const struct acquire_req *rq,
                       hy_gs_from from)
{
    if (rq->n == 0 || rq->n > s->permits) {
        reply_rc(from, HY_EINVAL);
        return;
    }
    bool fits = !s->qhead && rq->n <= s->available;
    if (!fits && rq->timeout_ns == HY_NOWAIT) {
        reply_rc(from, HY_ETIMEDOUT);
        return;
    }
    struct client *c = client_get(s, from.pid);
    if (!c) {
        reply_rc(from, HY_ENOMEM);
        return;
    }
    if (c->waiting) {
        /* a call cannot be made while another is pending: a forged request */
        reply_rc(from, HY_EALREADY);
        return;
    }
    if (fits) {
        give(s, c, rq->n);
        reply_rc(from, 0);
        return;
    }
    c->want = rq->n;
    c->from = from;
    c->seq = ++s->seq;
    enqueue(s, c);
    if (rq->timeout_ns > 0) {
        struct timeout_msg tm = {c->pid, c->seq};
        hy_pid self = hy_self();
        c->timed = hy_gen_server_cast_after((uint64_t)rq->timeout_ns, self, SEM_TIMEOUT, &tm,
                                            sizeof(tm), &c->timer) == 0;
        if (!c->timed) {
            dequeue(s, c);
            reply_rc(from, HY_ENOMEM);
            maybe_drop(s, c);
        }
    }
    (void)gs;
}

static int sem_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    struct sem *s = hy_gen_server_state(gs);
    switch (tag) {
    case SEM_ACQUIRE: {
        struct acquire_req rq;
        if (len != sizeof(rq)) {
            reply_rc(from, HY_EINVAL);
            break;
        }
        memcpy(&rq, data, sizeof(rq));
        on_acquire(gs, s, &rq, from);
        break;
    }
    case SEM_RELEASE: {
        uint32_t n;
        if (len != sizeof(n)) {
            reply_rc(from, HY_EINVAL);
            break;
        }
        memcpy(&n, data, sizeof(n));
        struct client *c = client_find(s, from.pid);
        if (n == 0) {
            reply_rc(from, HY_EINVAL);
            break;
        }
        if (!c || c->held < n) {
            reply_rc(from, HY_EPERM);
            break;
        }
        take_back(s, c, n);
        maybe_drop(s, c);
        grant(s);
        reply_rc(from, 0);
        break;
    }
    case SEM_INFO: {
        struct client *c = client_find(s, from.pid);
        struct hy_semaphore_info info = {
            .permits = s->permits,
            .available = s->available,
            .waiting = s->nwaiting,
            .holders = s->nholders,
            .held = c ? c->held : 0,
        };
        hy_gen_server_reply(from, 0, &info, sizeof(info));
        break;
    }
    default:
        reply_rc(from, HY_EINVAL);
        break;
    }
    return HY_GS_OK;
}

static int sem_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    struct sem *s = hy_gen_server_state(gs);
    struct timeout_msg tm;
    if (tag != SEM_TIMEOUT || len != sizeof(tm))
        return HY_GS_OK;
    memcpy(&tm, data, sizeof(tm));
    struct client *c = client_find(s, tm.pid);
    if (!c || !c->waiting || c->seq != tm.seq)
        return HY_GS_OK; /* granted or gone meanwhile */
    c->timed = false;    /* it fired: nothing to cancel */
    dequeue(s, c);
    reply_rc(c->from, HY_ETIMEDOUT);
    maybe_drop(s, c);
    grant(s); /* the head may have been what held the others back */
    return HY_GS_OK;
}

static int sem_info_msg(struct hy_gs *gs, const struct hy_msg *m)
{
    struct sem *s = hy_gen_server_state(gs);
    if (m->tag != HY_TAG_DOWN || m->size != sizeof(struct hy_down_info))
        return HY_GS_OK;
    struct hy_down_info d;
    memcpy(&d, m->data, sizeof(d));
    struct client *c = client_find(s, d.pid);
    if (!c || !hy_ref_eq(c->mref, d.ref))
        return HY_GS_OK;
    if (c->waiting)
        dequeue(s, c);
    if (c->held)
        take_back(s, c, c->held);
    client_drop(s, c, false);
    grant(s);
    return HY_GS_OK;
}

static const struct hy_gen_server_ops sem_ops = {
    .init = sem_init,
    .handle_call = sem_call,
    .handle_cast = sem_cast,
    .handle_info = sem_info_msg,
};

/* ---- API ------------------------------------------------------------------------ */

static int start(unsigned permits, const struct hy_semaphore_opts *opts, bool link, hy_pid *out)
{
    if (permits == 0 || permits > HY_SEMAPHORE_MAX_PERMITS)
        return HY_EINVAL;
    struct hy_gen_server_opts go = HY_GEN_SERVER_OPTS_INIT;
    if (opts) {
        go.name = opts->name;
        go.shard = opts->shard;
    }
    uint32_t p = permits;
    go.arg_size = sizeof(p);
    return link ? hy_gen_server_start_link(&sem_ops, &p, &go, out)
                : hy_gen_server_start(&sem_ops, &p, &go, out);
}

int hy_semaphore_start(unsigned permits, const struct hy_semaphore_opts *opts, hy_pid *out)
{
    return start(permits, opts, false, out);
}

int hy_semaphore_start_link(unsigned permits, const struct hy_semaphore_opts *opts, hy_pid *out)
{
    return start(permits, opts, true, out);
}

int hy_semaphore_stop(hy_pid sem, int64_t timeout_ns)
{
    /* normal: a linked parent is not taken down with it */
    return hy_gen_server_stop(sem, hy_reason_make(HY_REASON_NORMAL), timeout_ns);
}

/* Calls the semaphore; the reply's tag is the negated result code. */
static int sem_request(hy_pid sem, uint64_t tag, const void *data, size_t len,
                       struct hy_msg **reply)
{
    struct hy_msg *m;
    int rc = hy_gen_server_call(sem, tag, data, len, HY_INFINITY, &m, NULL);
    if (rc)
        return rc;
    rc = (int)-(int64_t)m->tag;
    if (reply && rc == 0)
        *reply = m;
    else
        hy_msg_free(m);
    return rc;
}

int hy_semaphore_acquire(hy_pid sem, unsigned n, int64_t timeout_ns)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (n == 0 || n > HY_SEMAPHORE_MAX_PERMITS)
        return HY_EINVAL;
    struct acquire_req rq = {n, timeout_ns < 0 ? HY_INFINITY : timeout_ns};
    return sem_request(sem, SEM_ACQUIRE, &rq, sizeof(rq), NULL);
}

int hy_semaphore_release(hy_pid sem, unsigned n)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (n == 0 || n > HY_SEMAPHORE_MAX_PERMITS)
        return HY_EINVAL;
    uint32_t v = n;
    return sem_request(sem, SEM_RELEASE, &v, sizeof(v), NULL);
}

int hy_semaphore_info(hy_pid sem, struct hy_semaphore_info *out)
{
    return hy_semaphore_get_info(sem, out);
}

int hy_semaphore_get_info(hy_pid sem, struct hy_semaphore_info *out)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!out)
        return HY_EINVAL;
    struct hy_msg *m = NULL;
    int rc = sem_request(sem, SEM_INFO, NULL, 0, &m);
    if (rc)
        return rc;
    if (m->size == sizeof(*out))
        memcpy(out, m->data, sizeof(*out));
    else
        rc = HY_EINVAL;
    hy_msg_free(m);
    return rc;
}
