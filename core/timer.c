/* Timers on the per-shard wheel: process wait timeouts, send_after,
 * cancel and read (OTP semantics, see timer.h). */
#include <stdlib.h>
#include <string.h>

#include "crash_internal.h"
#include "errors.h"
#include "shard_internal.h"
#include "timer.h"

hy_ref hy__ref_new_home(struct hy_shard *sh, unsigned home);

struct hy__timer {
    struct hy_wtimer wt;
    int type;                      /* HY_WT_TIMER */
    hy_ref ref;
    struct hy_msg *msg;            /* owned: sent on expiry */
    struct hy_proc *owner;         /* process whose exit cancels it */
    struct hy__timer *pnext, **pprev; /* owner's list */
    struct hy__timer *hnext;       /* hash chain */
};

/* Per-shard table of live timers by ref; kept in a side structure hung on
 * the shard through a small static array (one per shard id). */
struct timer_table {
    struct hy__timer **buckets;
    uint32_t nbuckets;
    uint32_t count;
};

static struct timer_table tables[HY_MAX_SHARDS];

#define HY_TAG_TIMER_REPLY (HY_TAG_SYSTEM | 0x544d)

struct timer_start {
    uint64_t expire_ns;
    uint64_t tag;
    hy_pid creator;
};

struct timer_cancel {
    int cancel; /* 1 = cancel, 0 = read */
    hy_ref timer;
};

struct timer_reply {
    int rc;
    uint64_t remaining;
};

static inline uint32_t hash_ref(hy_ref r)
{
    uint64_t x = r.lo * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 32);
}

static int table_grow(struct timer_table *t)
{
    uint32_t n = t->nbuckets ? t->nbuckets * 2 : 64;
    struct hy__timer **b = calloc(n, sizeof(*b));
    if (!b)
        return HY_ENOMEM;
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        struct hy__timer *x = t->buckets[i];
        while (x) {
            struct hy__timer *nx = x->hnext;
            uint32_t h = hash_ref(x->ref) & (n - 1);
            x->hnext = b[h];
            b[h] = x;
            x = nx;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

static struct hy__timer **table_find(struct timer_table *t, hy_ref ref)
{
    if (!t->nbuckets)
        return NULL;
    struct hy__timer **pp = &t->buckets[hash_ref(ref) & (t->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if (hy_ref_eq((*pp)->ref, ref))
            return pp;
    return NULL;
}

static void timer_unlink(struct hy_shard *sh, struct hy__timer *x)
{
    struct timer_table *t = &tables[sh->id];
    struct hy__timer **pp = table_find(t, x->ref);
    if (pp)
        *pp = x->hnext;
    t->count--;
    if (x->pprev) {
        *x->pprev = x->pnext;
        if (x->pnext)
            x->pnext->pprev = x->pprev;
        x->pprev = NULL;
    }
    if (hy__wtimer_armed(&x->wt))
        hy__wheel_del(&sh->wheel, &x->wt);
    atomic_store_explicit(&sh->st.timers_armed, t->count, memory_order_relaxed);
}

static void timer_destroy(struct hy_shard *sh, struct hy__timer *x)
{
    timer_unlink(sh, x);
    if (x->msg)
        hy__msg_free_local(sh, x->msg);
    free(x);
}

void hy__timer_init_shard(struct hy_shard *sh)
{
    hy__wheel_init(&sh->wheel, hy_now_ns());
    memset(&tables[sh->id], 0, sizeof(tables[sh->id]));
}

void hy__timer_fini_shard(struct hy_shard *sh)
{
    struct timer_table *t = &tables[sh->id];
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i])
            timer_destroy(sh, t->buckets[i]);
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

static void expire_cb(struct hy_wtimer *wt, void *arg)
{
    struct hy_shard *sh = arg;
    int type = ((struct hy__wait_timer *)wt)->type;
    if (type == HY_WT_WAIT) {
        struct hy_proc *p = ((struct hy__wait_timer *)wt)->proc;
        p->timed_out = 1;
        if (p->state == HY_P_WAITING)
            hy__sched_make_ready(sh, p);
        return;
    }
    struct hy__timer *x = (struct hy__timer *)wt;
    struct hy_msg *m = x->msg;
    x->msg = NULL;
    timer_unlink(sh, x);
    free(x);
    hy__route(sh, m);
}

void hy__wait_arm(struct hy_shard *sh, struct hy_proc *p, uint64_t rel_ns)
{
    struct hy__wait_timer *w = &p->wait_timer;
    hy__wait_disarm(sh, p);
    w->rel_ns = rel_ns;
    w->arm_next = sh->arm_list;
    if (w->arm_next)
        w->arm_next->arm_pprev = &w->arm_next;
    w->arm_pprev = &sh->arm_list;
    sh->arm_list = w;
}

void hy__wait_disarm(struct hy_shard *sh, struct hy_proc *p)
{
    struct hy__wait_timer *w = &p->wait_timer;
    if (w->arm_pprev) {
        *w->arm_pprev = w->arm_next;
        if (w->arm_next)
            w->arm_next->arm_pprev = w->arm_pprev;
        w->arm_pprev = NULL;
        w->arm_next = NULL;
    } else if (hy__wtimer_armed(&w->wt)) {
        hy__wheel_del(&sh->wheel, &w->wt);
    }
}

void hy__wait_arm_pending(struct hy_shard *sh)
{
    struct hy__wait_timer *w = sh->arm_list;
    sh->arm_list = NULL;
    while (w) {
        struct hy__wait_timer *n = w->arm_next;
        w->arm_next = NULL;
        w->arm_pprev = NULL;
        hy__wheel_add(&sh->wheel, &w->wt, sh->now + w->rel_ns);
        w = n;
    }
}

void hy__timer_expire(struct hy_shard *sh)
{
    if (sh->arm_list)
        hy__wait_arm_pending(sh);
    hy__wheel_expire(&sh->wheel, sh->now, expire_cb, sh);
}

void hy__timer_proc_exit(struct hy_shard *sh, struct hy_proc *p)
{
    while (p->timers)
        timer_destroy(sh, (struct hy__timer *)p->timers);
}

/* Arms a timer on this shard carrying m (owned), tied to owner. */
static int timer_arm(struct hy_shard *sh, hy_ref ref, uint64_t expire, struct hy_msg *m,
                     struct hy_proc *owner)
{
    struct timer_table *t = &tables[sh->id];
    if ((t->count + 1) > t->nbuckets && table_grow(t) != 0)
        return HY_ENOMEM;
    struct hy__timer *x = calloc(1, sizeof(*x));
    if (!x)
        return HY_ENOMEM;
    x->type = HY_WT_TIMER;
    x->ref = ref;
    x->msg = m;
    x->owner = owner;
    uint32_t h = hash_ref(ref) & (t->nbuckets - 1);
    x->hnext = t->buckets[h];
    t->buckets[h] = x;
    t->count++;
    struct hy__timer **head = (struct hy__timer **)&owner->timers;
    x->pnext = *head;
    if (x->pnext)
        x->pnext->pprev = &x->pnext;
    x->pprev = head;
    *head = x;
    hy__wheel_add(&sh->wheel, &x->wt, expire);
    atomic_store_explicit(&sh->st.timers_armed, t->count, memory_order_relaxed);
    return 0;
}

/* TIMER_START arriving on the destination's shard. */
static void on_timer_start(struct hy_shard *sh, struct hy_msg *req)
{
    struct timer_start ts;
    memcpy(&ts, req->data, sizeof(ts));
    size_t len = req->size - sizeof(ts);
    struct hy_proc *dest = hy__proc_lookup(sh, req->to);
    struct hy_msg *m;
    if (!dest || dest->state >= HY_P_EXITING || hy__msg_alloc(sh, len, &m) != 0) {
        hy__msg_free_local(sh, req); /* destination gone: as if cancelled at once */
        return;
    }
    memcpy(m->data, req->data + sizeof(ts), len);
    m->tag = ts.tag;
    m->to = req->to;
    m->from = ts.creator;
    hy_ref ref = req->ref;
    hy__msg_free_local(sh, req);
    if (timer_arm(sh, ref, ts.expire_ns, m, dest) != 0)
        hy__msg_free_local(sh, m);
}

static int local_cancel(struct hy_shard *sh, hy_ref ref, int cancel, uint64_t *remaining)
{
    struct hy__timer **pp = table_find(&tables[sh->id], ref);
    if (!pp)
        return HY_ENOENT;
    struct hy__timer *x = *pp;
    uint64_t now = hy_now_ns();
    uint64_t rem = x->wt.expire_ns > now ? x->wt.expire_ns - now : 0;
    if (remaining)
        *remaining = rem;
    if (cancel)
        timer_destroy(sh, x);
    return 0;
}

static void on_timer_cancel(struct hy_shard *sh, struct hy_msg *req)
{
    struct timer_cancel tc;
    memcpy(&tc, req->data, sizeof(tc));
    struct timer_reply rep = {0};
    rep.rc = local_cancel(sh, tc.timer, tc.cancel, &rep.remaining);
    struct hy_msg *r;
    if (hy__msg_alloc(sh, sizeof(rep), &r) == 0) {
        memcpy(r->data, &rep, sizeof(rep));
        r->tag = HY_TAG_TIMER_REPLY;
        r->ref = req->ref;
        r->to = req->from;
        hy__route(sh, r);
    }
    hy__msg_free_local(sh, req);
}

__attribute__((constructor)) static void timer_register_kinds(void)
{
    hy__kind_register(HY_K_TIMER_START, on_timer_start);
    hy__kind_register(HY_K_TIMER_CANCEL, on_timer_cancel);
}

int hy_send_after(uint64_t ns, hy_pid to, uint64_t tag, const void *data, size_t len,
                  unsigned flags, hy_ref *out)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (((tag & HY_TAG_SYSTEM) && !(flags & HY_TIMER_SYSTEM_TAG)) ||
        (flags & ~(HY_TIMER_TIED | HY_TIMER_SYSTEM_TAG)) || (!data && len))
        return HY_EINVAL;
    if (len > hy__rt.cfg.max_message_size)
        return HY_EMSGSIZE;
    struct hy_shard *sh = p->shard;
    uint64_t expire = hy_now_ns() + ns;
    bool local_node = hy_pid_node(to) == hy__rt.node_id;
    unsigned dst = hy_pid_shard(to);
    bool here = !local_node || (flags & HY_TIMER_TIED) || dst == sh->id ||
                dst >= hy__rt.nshards;
    int rc;
    hy__charge(p);
    HY_FAULT_POINT(HY_FP_TIMER);
    if (here) {
        struct hy_proc *owner = p;
        if (local_node && !(flags & HY_TIMER_TIED) && dst == sh->id) {
            owner = hy__proc_lookup(sh, to);
            if (!owner || owner->state >= HY_P_EXITING) {
                /* OTP: a timer to a dead pid is created and cancelled at once */
                if (out)
                    *out = hy__ref_new_home(sh, sh->id);
                return 0;
            }
        }
        struct hy_msg *m;
        rc = hy__msg_alloc(sh, len, &m);
        if (rc)
            return rc;
        if (len)
            memcpy(m->data, data, len);
        m->tag = tag;
        m->to = to;
        hy_ref ref = hy__ref_new_home(sh, sh->id);
        rc = timer_arm(sh, ref, expire, m, owner);
        if (rc) {
            hy__msg_free_local(sh, m);
            return rc;
        }
        if (out)
            *out = ref;
        return 0;
    }
    /* the destination's shard keeps the timer */
    struct hy_msg *req;
    rc = hy__msg_alloc_rt(sh, sizeof(struct timer_start) + len, &req);
    if (rc)
        return rc;
    struct timer_start ts = {.expire_ns = expire, .tag = tag, .creator = p->pid};
    memcpy(req->data, &ts, sizeof(ts));
    if (len)
        memcpy(req->data + sizeof(ts), data, len);
    req->kind = HY_K_TIMER_START;
    req->to = to;
    req->ref = hy__ref_new_home(sh, dst);
    if (out)
        *out = req->ref;
    hy__route(sh, req);
    return 0;
}

static int cancel_or_read(hy_ref ref, int cancel, uint64_t *remaining)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    unsigned home = hy_ref_shard(ref);
    if (hy_ref_node(ref) != hy__rt.node_id || home >= hy__rt.nshards)
        return HY_ENOENT;
    if (home == sh->id)
        return local_cancel(sh, ref, cancel, remaining);
    struct timer_cancel tc = {.cancel = cancel, .timer = ref};
    hy_ref rq;
    hy_ref_make(&rq);
    int rc = 0;
    struct hy_msg *req;
    rc = hy__msg_alloc(sh, sizeof(tc), &req);
    if (rc)
        return rc;
    memcpy(req->data, &tc, sizeof(tc));
    req->kind = HY_K_TIMER_CANCEL;
    req->ref = rq;
    req->to = hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)home, 0, 0);
    hy__route(sh, req);
    struct hy_msg *r;
    p->defer_exit++;
    rc = hy_recv_ref(rq, &r, HY_INFINITY);
    p->defer_exit--;
    if (rc)
        return rc;
    struct timer_reply rep;
    memcpy(&rep, r->data, sizeof(rep));
    hy_msg_free(r);
    if (rep.rc == 0 && remaining)
        *remaining = rep.remaining;
    return rep.rc;
}

int hy_timer_cancel(hy_ref ref, uint64_t *remaining_ns)
{
    return cancel_or_read(ref, 1, remaining_ns);
}

int hy_timer_read(hy_ref ref, uint64_t *remaining_ns)
{
    return cancel_or_read(ref, 0, remaining_ns);
}

int hy_sleep_ns(uint64_t ns)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    p->timed_out = 0;
    hy__wait_arm(sh, p, ns);
    while (!p->timed_out) {
        p->state = HY_P_WAITING;
        p->wait_msg = 0;
        hy__sched_switch_out(p);
        if (p->exit_pending && !p->defer_exit) {
            hy__wait_disarm(sh, p);
            hy__proc_exit_current(p, p->exit_reason_pending);
        }
    }
    p->timed_out = 0;
    return 0;
}
