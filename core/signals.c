/* Links, monitors, exit signals, trap_exit, aliases, process information.
 *
 * Every signal is a hy_msg of a signal kind routed like a message, so it
 * travels in the per-shard-pair FIFO; a signal to a process of the same
 * shard is handled at once. Killing a suspended process only queues it: the
 * scheduler reaps it (hy__reap_pending), so a chain of links never recurses.
 */
#include <stdlib.h>
#include <string.h>

#include "crash_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

int hy__send_kind(struct hy_shard *sh, hy_pid to, unsigned kind, uint64_t tag, hy_ref ref,
                  const void *data, size_t len, uint32_t aux);
hy_ref hy__ref_new_home(struct hy_shard *sh, unsigned home);
int hy__name_lookup(const char *name, hy_pid *out);
void hy__name_proc_exit(struct hy_shard *sh, struct hy_proc *p);

#define HY_TAG_LINK_ACK (HY_TAG_SYSTEM | 0x4c4b41ull)
#define HY_TAG_INFO_REPLY (HY_TAG_SYSTEM | 0x494e46ull)
#define HY_TAG_LIST_REPLY (HY_TAG_SYSTEM | 0x4c5354ull)

struct link_ent {
    hy_pid peer;
    uint64_t unlink_id; /* 0 = active; else an unlink in progress */
};

struct mon_out {
    hy_ref ref;
    hy_pid target;
};

struct mon_in {
    hy_ref ref;
    hy_pid watcher;
    char *name; /* monitored by name (malloc'd), or NULL */
};

struct alias_ent {
    hy_ref ref;
    bool once;
};

/* The monitor and reply alias of the one GenServer call in flight, inline
 * (hy__call_monitor): no array entry, no walk. mon: the monitor is active
 * (as a mout entry); alias: the reply alias is active (as a reply-once
 * aliases entry). Free when both are clear; a call that finds it busy uses
 * the arrays. */
struct call_slot {
    hy_ref ref;
    hy_pid target;
    uint8_t mon, alias;
};

struct hy__psig {
    struct link_ent *links;
    uint32_t nlinks, caplinks;
    struct mon_out *mout;
    uint32_t nmout, capmout;
    struct mon_in *min;
    uint32_t nmin, capmin;
    struct alias_ent *aliases;
    uint32_t naliases, capaliases;
    uint64_t unlink_seq;
    uint32_t *node_mons; /* nodes monitored with hy_monitor_node (one entry each) */
    uint32_t nnode_mons, capnode_mons;
    struct call_slot call;  /* a call's monitor and alias, inline */
    char name[HY_NAME_MAX]; /* registered (or being registered) name */
};

static struct hy__psig *psig(struct hy_proc *p)
{
    if (!p->sig)
        p->sig = calloc(1, sizeof(struct hy__psig));
    return p->sig;
}

struct hy__psig *hy__psig_get(struct hy_proc *p);
struct hy__psig *hy__psig_get(struct hy_proc *p)
{
    return psig(p);
}

char *hy__psig_name(struct hy_proc *p);
char *hy__psig_name(struct hy_proc *p)
{
    struct hy__psig *s = psig(p);
    return s ? s->name : NULL;
}

/* grows *arr (elements of size sz) to hold one more */
static int grow(void **arr, uint32_t n, uint32_t *cap, size_t sz)
{
    if (n < *cap)
        return 0;
    uint32_t nc = *cap ? *cap * 2 : 4;
    void *na = realloc(*arr, nc * sz);
    if (!na)
        return HY_ENOMEM;
    *arr = na;
    *cap = nc;
    return 0;
}

static struct link_ent *link_find(struct hy__psig *s, hy_pid peer)
{
    if (!s)
        return NULL;
    for (uint32_t i = 0; i < s->nlinks; i++)
        if (hy_pid_eq(s->links[i].peer, peer))
            return &s->links[i];
    return NULL;
}

static void link_remove(struct hy__psig *s, struct link_ent *e)
{
    *e = s->links[--s->nlinks];
}

static int link_add(struct hy_proc *p, hy_pid peer)
{
    struct hy__psig *s = psig(p);
    if (!s)
        return HY_ENOMEM;
    struct link_ent *e = link_find(s, peer);
    if (e) {
        e->unlink_id = 0; /* (re)activated */
        return 0;
    }
    if (grow((void **)&s->links, s->nlinks, &s->caplinks, sizeof(*s->links)))
        return HY_ENOMEM;
    s->links[s->nlinks++] = (struct link_ent){peer, 0};
    return 0;
}

static int mout_add(struct hy_proc *p, hy_ref ref, hy_pid target)
{
    struct hy__psig *s = psig(p);
    if (!s || grow((void **)&s->mout, s->nmout, &s->capmout, sizeof(*s->mout)))
        return HY_ENOMEM;
    s->mout[s->nmout++] = (struct mon_out){ref, target};
    return 0;
}

static struct mon_out *mout_find(struct hy__psig *s, hy_ref ref)
{
    if (!s)
        return NULL;
    for (uint32_t i = s->nmout; i-- > 0;) /* newest first: a call's monitor */
        if (hy_ref_eq(s->mout[i].ref, ref))
            return &s->mout[i];
    return NULL;
}

static int alias_add(struct hy_proc *p, hy_ref ref, bool once)
{
    struct hy__psig *s = psig(p);
    if (!s || grow((void **)&s->aliases, s->naliases, &s->capaliases, sizeof(*s->aliases)))
        return HY_ENOMEM;
    s->aliases[s->naliases++] = (struct alias_ent){ref, once};
    return 0;
}

static void alias_remove(struct hy__psig *s, hy_ref ref)
{
    if (!s)
        return;
    if (s->call.alias && hy_ref_eq(s->call.ref, ref)) {
        s->call.alias = 0;
        return;
    }
    for (uint32_t i = s->naliases; i-- > 0;) {
        if (hy_ref_eq(s->aliases[i].ref, ref)) {
            s->aliases[i] = s->aliases[--s->naliases];
            return;
        }
    }
}

static int min_add(struct hy_proc *p, hy_ref ref, hy_pid watcher, const char *name)
{
    struct hy__psig *s = psig(p);
    if (!s || grow((void **)&s->min, s->nmin, &s->capmin, sizeof(*s->min)))
        return HY_ENOMEM;
    char *n = NULL;
    if (name && *name) {
        n = strdup(name);
        if (!n)
            return HY_ENOMEM;
    }
    s->min[s->nmin++] = (struct mon_in){ref, watcher, n};
    return 0;
}

/* ---- killing and reaping ------------------------------------------------------ */

static void runq_remove(struct hy_shard *sh, struct hy_proc *p)
{
    struct hy_proc **pp = &sh->rq_head, *prev = NULL;
    while (*pp && *pp != p) {
        prev = *pp;
        pp = &(*pp)->rq_next;
    }
    if (*pp) {
        *pp = p->rq_next;
        if (sh->rq_tail == p)
            sh->rq_tail = prev;
        sh->rq_len--;
    }
    p->in_runq = 0;
}

void hy__kill(struct hy_shard *sh, struct hy_proc *p, struct hy_reason r)
{
    if (p->state >= HY_P_EXITING || p->exit_pending)
        return;
    p->exit_pending = 1;
    p->exit_reason_pending = r;
    if (p == sh->current) {
        /* it exits at its next preemption point: a spent budget sends its
         * next charge to hy__charge, which acts on exit_pending (the inline
         * charges test the budget only) */
        p->budget = 0;
        return;
    }
    if (p->defer_exit) {
        return; /* it exits when its blocking wait is over */
    }
    if (p->in_runq)
        runq_remove(sh, p);
    p->state = HY_P_EXITING;
    p->rq_next = NULL;
    if (sh->reap_tail)
        sh->reap_tail->rq_next = p;
    else
        sh->reap_head = p;
    sh->reap_tail = p;
}

void hy__reap_pending(struct hy_shard *sh)
{
    struct hy_proc *p;
    while ((p = sh->reap_head) != NULL) {
        sh->reap_head = p->rq_next;
        if (!sh->reap_head)
            sh->reap_tail = NULL;
        p->reason = p->exit_reason_pending;
        hy__proc_reap(sh, p);
    }
}

/* ---- delivering ------------------------------------------------------------- */

_Atomic uint64_t hy__fail_exit_hi, hy__fail_exit_lo;

static bool exit_alloc_fails(hy_pid pid)
{
    return __builtin_expect(atomic_load_explicit(&hy__fail_exit_lo, memory_order_relaxed) != 0,
                            0) &&
           atomic_load_explicit(&hy__fail_exit_lo, memory_order_relaxed) == pid.lo &&
           atomic_load_explicit(&hy__fail_exit_hi, memory_order_relaxed) == pid.hi;
}

/* Queues an EXIT message for trapping p. Returns 0 or HY_ENOMEM. */
static int deliver_exit_msg(struct hy_shard *sh, struct hy_proc *p, hy_pid from,
                            struct hy_reason reason)
{
    struct hy_msg *m;
    if (exit_alloc_fails(p->pid) || hy__msg_alloc(sh, sizeof(struct hy_exit_info), &m) != 0)
        return HY_ENOMEM;
    struct hy_exit_info info = {from, reason};
    memcpy(m->data, &info, sizeof(info));
    m->tag = HY_TAG_EXIT;
    m->from = from;
    m->to = p->pid;
    hy__mailbox_append(sh, p, m);
    return 0;
}

/* The rules of an arriving exit signal. */
static void handle_exit(struct hy_shard *sh, struct hy_proc *p, hy_pid from,
                        struct hy_reason reason, bool linked)
{
    if (linked) {
        struct link_ent *e = link_find(p->sig, from);
        if (!e || e->unlink_id != 0)
            return; /* not linked (any more): the signal is void */
        link_remove(p->sig, e);
    }
    if (!linked && reason.kind == HY_REASON_KILL) {
        hy__kill(sh, p, hy_reason_make(HY_REASON_KILLED));
    } else if (p->trap_exit) {
        if (deliver_exit_msg(sh, p, from, reason) != 0) {
            /* A signal is never lost: with no memory for the EXIT message
             * the trapping process dies of the signal, as if it did not
             * trap (a normal reason, which would let it go unnoticed,
             * becomes an error), so its own links and monitors learn it. */
            hy_log(HY_LOG_ERROR, "out of memory for an EXIT message: the trapping process ends "
                                 "with the exit signal's reason");
            hy__kill(sh, p,
                     reason.kind == HY_REASON_NORMAL
                         ? hy_reason_user(HY_ENOMEM, "exit signal lost: out of memory")
                         : reason);
        }
    } else if (reason.kind == HY_REASON_NORMAL) {
        if (hy_pid_eq(from, p->pid))
            hy__kill(sh, p, reason);
    } else {
        hy__kill(sh, p, reason);
    }
}

static struct hy_proc *live(struct hy_shard *sh, hy_pid pid)
{
    struct hy_proc *p = hy__proc_lookup_inl(sh, pid);
    return p && p->state < HY_P_EXITING ? p : NULL;
}

static void send_sig(struct hy_shard *sh, hy_pid from, hy_pid to, unsigned kind, hy_ref ref,
                     const void *data, size_t len, uint32_t aux)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, len, &m) != 0)
        return;
    if (len)
        memcpy(m->data, data, len);
    m->kind = (uint8_t)kind;
    m->from = from;
    m->to = to;
    m->ref = ref;
    m->aux = aux;
    m->tag = 0;
    hy__route(sh, m);
}

static void send_down(struct hy_shard *sh, hy_pid watcher, hy_ref ref, hy_pid pid,
                      const char *name, struct hy_reason reason)
{
    struct hy_down_info d;
    memset(&d, 0, sizeof(d));
    d.ref = ref;
    d.pid = pid;
    if (name)
        memcpy(d.name, name, strnlen(name, HY_NAME_MAX - 1));
    d.reason = reason;
    send_sig(sh, pid, watcher, HY_K_DOWN, ref, &d, sizeof(d), 0);
}

static void on_exit_sig(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    if (p) {
        struct hy_reason r;
        memcpy(&r, m->data, sizeof(r));
        handle_exit(sh, p, m->from, r, m->aux & 1u);
    }
    hy__msg_free_local(sh, m);
}

static void on_link(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    int rc = 0;
    if (p)
        rc = link_add(p, m->from) ? HY_ENOMEM : 0;
    else
        rc = HY_ENOPROC;
    if (m->aux & 1u) {
        /* synchronous link (same node): answer the requester */
        struct hy_msg *r;
        if (hy__msg_alloc(sh, sizeof(rc), &r) == 0) {
            memcpy(r->data, &rc, sizeof(rc));
            r->tag = HY_TAG_LINK_ACK;
            r->ref = m->ref;
            r->to = m->from;
            r->from = m->to;
            hy__route(sh, r);
        }
    } else if (rc == HY_ENOPROC) {
        struct hy_reason nr = hy_reason_make(HY_REASON_NOPROC);
        send_sig(sh, m->to, m->from, HY_K_EXIT, HY_REF_NONE, &nr, sizeof(nr), 1);
    }
    hy__msg_free_local(sh, m);
}

static void on_unlink(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    if (p) {
        struct link_ent *e = link_find(p->sig, m->from);
        if (e)
            link_remove(p->sig, e);
    }
    /* acknowledge even for a dead target, so the unlinker can forget the id */
    send_sig(sh, m->to, m->from, HY_K_UNLINK_ACK, HY_REF_NONE, m->data, sizeof(uint64_t), 0);
    hy__msg_free_local(sh, m);
}

static void on_unlink_ack(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    if (p) {
        uint64_t id;
        memcpy(&id, m->data, sizeof(id));
        struct link_ent *e = link_find(p->sig, m->from);
        if (e && e->unlink_id == id)
            link_remove(p->sig, e);
    }
    hy__msg_free_local(sh, m);
}

static void on_monitor(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    const char *name = m->size ? (const char *)m->data : NULL;
    if (!p || min_add(p, m->ref, m->from, name) != 0)
        send_down(sh, m->from, m->ref, m->to, name, hy_reason_make(HY_REASON_NOPROC));
    hy__msg_free_local(sh, m);
}

static void min_remove(struct hy__psig *s, hy_ref ref)
{
    if (!s)
        return;
    /* newest first: a call's monitor is usually the last one added */
    for (uint32_t i = s->nmin; i-- > 0;) {
        if (hy_ref_eq(s->min[i].ref, ref)) {
            if (s->min[i].name)
                free(s->min[i].name);
            s->min[i] = s->min[--s->nmin];
            return;
        }
    }
}

static void on_demonitor(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    if (p)
        min_remove(p->sig, m->ref);
    hy__msg_free_local(sh, m);
}

static void on_down(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    struct hy__psig *ps = p ? p->sig : NULL;
    if (ps && ps->call.mon && hy_ref_eq(ps->call.ref, m->ref)) {
        ps->call.mon = ps->call.alias = 0; /* the call's monitor: its alias goes too */
        m->kind = HY_K_MSG;
        m->tag = HY_TAG_DOWN;
        hy__mailbox_append(sh, p, m);
        return;
    }
    struct mon_out *mo = ps ? mout_find(ps, m->ref) : NULL;
    if (!mo) {
        /* demonitored meanwhile: no DOWN after hy_demonitor returned */
        hy__msg_free_local(sh, m);
        return;
    }
    *mo = p->sig->mout[--p->sig->nmout];
    alias_remove(p->sig, m->ref);
    m->kind = HY_K_MSG;
    m->tag = HY_TAG_DOWN;
    hy__mailbox_append(sh, p, m);
}

static void on_alias_msg(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = live(sh, m->to);
    struct hy__psig *s = p ? p->sig : NULL;
    if (s) {
        if (s->call.alias && hy_ref_eq(s->call.ref, m->ref)) {
            s->call.alias = 0; /* reply once */
            m->kind = HY_K_MSG;
            hy__mailbox_append(sh, p, m);
            return;
        }
        for (uint32_t i = 0; i < s->naliases; i++) {
            if (hy_ref_eq(s->aliases[i].ref, m->ref)) {
                if (s->aliases[i].once)
                    s->aliases[i] = s->aliases[--s->naliases];
                m->kind = HY_K_MSG;
                hy__mailbox_append(sh, p, m);
                return;
            }
        }
    }
    hy__stat_add(&sh->st.dropped_dead, 1);
    hy__msg_free_local(sh, m);
}

/* ---- the exit hook: a process is being reaped ---------------------------------- */

static void on_proc_exit(struct hy_shard *sh, struct hy_proc *p)
{
    struct hy__psig *s = p->sig;
    if (!s)
        return;
    struct hy_reason r = p->reason;
    /* the name goes first: whoever learns of the exit finds it free */
    if (s->name[0])
        hy__name_proc_exit(sh, p);
    for (uint32_t i = 0; i < s->nlinks; i++)
        if (s->links[i].unlink_id == 0)
            send_sig(sh, p->pid, s->links[i].peer, HY_K_EXIT, HY_REF_NONE, &r, sizeof(r), 1);
    for (uint32_t i = 0; i < s->nmin; i++) {
        send_down(sh, s->min[i].watcher, s->min[i].ref, p->pid, s->min[i].name, r);
        free(s->min[i].name);
    }
    for (uint32_t i = 0; i < s->nmout; i++)
        send_sig(sh, p->pid, s->mout[i].target, HY_K_DEMONITOR, s->mout[i].ref, NULL, 0, 0);
    if (s->call.mon)
        send_sig(sh, p->pid, s->call.target, HY_K_DEMONITOR, s->call.ref, NULL, 0, 0);
    free(s->node_mons);
    free(s->links);
    free(s->mout);
    free(s->min);
    free(s->aliases);
    free(s);
    p->sig = NULL;
}

/* ---- spawn_link / spawn_monitor ------------------------------------------------- */

void hy__spawn_install_child(struct hy_shard *sh, struct hy_proc *child, bool link, bool monitor,
                             hy_pid requester, hy_ref ref)
{
    (void)sh;
    if (link)
        link_add(child, requester);
    if (monitor)
        min_add(child, ref, requester, NULL);
}

void hy__spawn_install_parent(struct hy_shard *sh, struct hy_proc *parent, bool link,
                              bool monitor, hy_pid child, hy_ref ref)
{
    (void)sh;
    if (link)
        link_add(parent, child);
    if (monitor)
        mout_add(parent, ref, child);
}

/* ---- public API ------------------------------------------------------------------- */

static struct hy_proc *cur_or(int *rc)
{
    struct hy_proc *p = hy__current();
    *rc = p ? 0 : HY_ENOTPROC;
    return p;
}

int hy_msg_exit_info(const struct hy_msg *m, struct hy_exit_info *out)
{
    if (!m || !out || m->tag != HY_TAG_EXIT || m->size != sizeof(*out))
        return HY_EINVAL;
    memcpy(out, m->data, sizeof(*out));
    return 0;
}

int hy_msg_down_info(const struct hy_msg *m, struct hy_down_info *out)
{
    if (!m || !out || m->tag != HY_TAG_DOWN || m->size != sizeof(*out))
        return HY_EINVAL;
    memcpy(out, m->data, sizeof(*out));
    return 0;
}

int hy_msg_node_event(const struct hy_msg *m, uint32_t *node)
{
    if (!m || !node || (m->tag != HY_TAG_NODEUP && m->tag != HY_TAG_NODEDOWN) ||
        m->size != sizeof(*node))
        return HY_EINVAL;
    memcpy(node, m->data, sizeof(*node));
    return 0;
}

_Atomic(hy_dist_reachable_fn) hy__dist_reachable_hook;

/* Whether a pid of node can be reached: its node is this one, or
 * distribution is on and says there is a route (a configured peer that has
 * not been declared down). */
static bool node_reachable(uint32_t node)
{
    if (node == hy__rt.node_id)
        return true;
    /* acquire: pairs with net/'s release store when it starts */
    hy_dist_reachable_fn fn = atomic_load_explicit(&hy__dist_reachable_hook, memory_order_acquire);
    return fn && fn(node);
}

/* After an operation that may have signalled the caller itself. */
static void check_self(struct hy_proc *p)
{
    if (p->exit_pending && !p->defer_exit)
        hy__proc_exit_current(p, p->exit_reason_pending);
}

int hy_link(hy_pid pid)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    if (hy_pid_eq(pid, p->pid))
        return 0;
    bool same_node = hy_pid_node(pid) == hy__rt.node_id;
    bool alive_node = same_node && hy_pid_creation(pid) == hy__rt.creation &&
                      hy_pid_shard(pid) < hy__rt.nshards;
    if (same_node && !alive_node)
        goto noproc;
    if (!same_node && !node_reachable(hy_pid_node(pid))) {
        /* no route to its node: as a dead pid, with reason noconnection */
        if (p->trap_exit)
            return deliver_exit_msg(sh, p, pid, hy_reason_make(HY_REASON_NOCONNECTION));
        return HY_ENOPROC;
    }
    if (same_node && hy_pid_shard(pid) == sh->id) {
        struct hy_proc *t = live(sh, pid);
        if (!t)
            goto noproc;
        if (link_add(p, pid) || link_add(t, p->pid))
            return HY_ENOMEM;
        return 0;
    }
    if ((rc = link_add(p, pid)) != 0)
        return rc;
    if (!same_node) {
        /* another node answers asynchronously: a dead target sends EXIT noproc */
        send_sig(sh, p->pid, pid, HY_K_LINK, HY_REF_NONE, NULL, 0, 0);
        return 0;
    }
    hy_ref ref;
    hy_ref_make(&ref);
    send_sig(sh, p->pid, pid, HY_K_LINK, ref, NULL, 0, 1);
    struct hy_msg *m;
    p->defer_exit++;
    rc = hy_recv_ref(ref, &m, HY_INFINITY);
    p->defer_exit--;
    if (rc)
        return rc;
    int ack;
    memcpy(&ack, m->data, sizeof(ack));
    hy_msg_free(m);
    if (ack == HY_ENOPROC) {
        struct link_ent *e = link_find(p->sig, pid);
        if (e)
            link_remove(p->sig, e);
        check_self(p);
        goto noproc;
    }
    check_self(p);
    return ack;
noproc:
    if (p->trap_exit)
        return deliver_exit_msg(sh, p, pid, hy_reason_make(HY_REASON_NOPROC));
    return HY_ENOPROC;
}

int hy_unlink(hy_pid pid)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    struct link_ent *e = link_find(p->sig, pid);
    if (!e)
        return 0;
    bool local = hy_pid_node(pid) == hy__rt.node_id && hy_pid_shard(pid) == sh->id;
    if (local) {
        link_remove(p->sig, e);
        struct hy_proc *t = live(sh, pid);
        struct link_ent *te = t ? link_find(t->sig, p->pid) : NULL;
        if (te)
            link_remove(t->sig, te);
        return 0;
    }
    /* OTP 23: mark the link as being removed with an id; exit signals from
     * pid are void from now on; the entry goes when the id is acknowledged */
    struct hy__psig *s = p->sig;
    e->unlink_id = ++s->unlink_seq;
    send_sig(sh, p->pid, pid, HY_K_UNLINK, HY_REF_NONE, &e->unlink_id, sizeof(uint64_t), 0);
    return 0;
}

int hy_exit_pid(hy_pid pid, struct hy_reason reason)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    struct hy_proc *p = sh->current;
    hy_pid from = p ? p->pid : HY_PID_NONE;
    if (p && hy_pid_eq(pid, p->pid)) {
        handle_exit(sh, p, from, reason, false);
        check_self(p);
        return 0;
    }
    send_sig(sh, from, pid, HY_K_EXIT, HY_REF_NONE, &reason, sizeof(reason), 0);
    if (p)
        hy__charge(p);
    return 0;
}

int hy_trap_exit(bool on, bool *old)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (old)
        *old = p->trap_exit;
    p->trap_exit = on;
    return 0;
}

/* monitor_common after its charge */
static int monitor_install(struct hy_proc *p, hy_pid pid, const char *name, unsigned flags,
                           hy_ref *out)
{
    struct hy_shard *sh = p->shard;
    hy_ref ref;
    hy_ref_make(&ref);
    if (out)
        *out = ref;
    struct hy__psig *s = p->sig;
    if (s && s->naliases < s->capaliases) {
        if (flags & HY_MONITOR_ALIAS)
            s->aliases[s->naliases++] = (struct alias_ent){ref, true};
    } else if ((flags & HY_MONITOR_ALIAS) && alias_add(p, ref, true)) {
        return HY_ENOMEM;
    }
    if (hy_pid_eq(pid, p->pid))
        return 0; /* OTP: a monitor on yourself never fires */
    if (hy_pid_is_none(pid)) {
        /* by name, not registered: DOWN noproc at once */
        if (mout_add(p, ref, pid))
            return HY_ENOMEM;
        send_down(sh, p->pid, ref, pid, name, hy_reason_make(HY_REASON_NOPROC));
        return 0;
    }
    s = p->sig;
    if (s && s->nmout < s->capmout)
        s->mout[s->nmout++] = (struct mon_out){ref, pid}; /* room already */
    else if (mout_add(p, ref, pid))
        return HY_ENOMEM;
    HY_FAULT_POINT(HY_FP_MONITOR);
    if (!node_reachable(hy_pid_node(pid))) {
        /* no route to its node: DOWN noconnection at once (OTP) */
        send_down(sh, p->pid, ref, pid, name, hy_reason_make(HY_REASON_NOCONNECTION));
        return 0;
    }
    if (hy_pid_node(pid) == hy__rt.node_id && hy_pid_shard(pid) == sh->id) {
        /* same shard: install it now, no signal message (a GenServer call
         * monitors its server every time) */
        struct hy_proc *t = live(sh, pid);
        struct hy__psig *ts = t ? t->sig : NULL;
        if (!name && ts && ts->nmin < ts->capmin) {
            /* room already: the entry in place (min_add without its calls) */
            ts->min[ts->nmin++] = (struct mon_in){ref, p->pid, NULL};
            return 0;
        }
        if (!t || min_add(t, ref, p->pid, name) != 0)
            send_down(sh, p->pid, ref, pid, name, hy_reason_make(HY_REASON_NOPROC));
        return 0;
    }
    size_t nlen = name ? strlen(name) + 1 : 0;
    send_sig(sh, p->pid, pid, HY_K_MONITOR, ref, name, nlen, 0);
    /* a dead target on another shard/node answers DOWN noproc itself; a
     * dead local target was answered synchronously by the dispatch above */
    if (hy__rt.nshards && hy_pid_node(pid) == hy__rt.node_id &&
        (hy_pid_creation(pid) != hy__rt.creation || hy_pid_shard(pid) >= hy__rt.nshards)) {
        send_down(sh, p->pid, ref, pid, name, hy_reason_make(HY_REASON_NOPROC));
    }
    return 0;
}

static int monitor_common(struct hy_proc *p, hy_pid pid, const char *name, unsigned flags,
                          hy_ref *out)
{
    hy__charge(p);
    return monitor_install(p, pid, name, flags, out);
}

/* For net/: monitors whatever pid stands for (a node's shard-0 stand-in
 * when the name is resolved on arrival); the DOWN carries name. */
int hy__monitor_named(hy_pid pid, const char *name, hy_ref *ref);
int hy__monitor_named(hy_pid pid, const char *name, hy_ref *ref)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    return monitor_common(p, pid, name, 0, ref);
}

int hy_monitor(hy_pid pid, hy_ref *ref)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (__builtin_expect(atomic_load_explicit(&hy__fail_monitor_lo, memory_order_relaxed) != 0, 0) &&
        atomic_load_explicit(&hy__fail_monitor_lo, memory_order_relaxed) == pid.lo &&
        atomic_load_explicit(&hy__fail_monitor_hi, memory_order_relaxed) == pid.hi)
        return HY_ENOMEM; /* injected by a test (crash_internal.h) */
    return monitor_common(p, pid, NULL, 0, ref);
}

int hy_monitor_opt(hy_pid pid, unsigned flags, hy_ref *ref)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (flags & ~HY_MONITOR_ALIAS)
        return HY_EINVAL;
    return monitor_common(p, pid, NULL, flags, ref);
}

/* For otp/gen_server.c: a call's monitor with its reply alias on server,
 * one lookup of the caller. HY_ENOTPROC outside a process, HY_EINVAL when
 * server is the caller (the call could only time out); else as
 * hy_monitor_opt(server, HY_MONITOR_ALIAS, ref). */
int hy__call_monitor(hy_pid server, hy_ref *ref);
int hy__call_monitor(hy_pid server, hy_ref *ref)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (hy_pid_eq(server, p->pid))
        return HY_EINVAL;
    hy__charge(p); /* may yield: what is checked below is checked after it */
    struct hy_shard *sh = p->shard;
    struct hy__psig *s = p->sig;
    if (s && !(s->call.mon | s->call.alias) && hy_pid_node(server) == hy__rt.node_id &&
        hy_pid_shard(server) == sh->id) {
        /* A live server on this shard with room for the monitored-by entry:
         * the caller's side goes in its inline call slot. */
        struct hy_proc *t = live(sh, server);
        struct hy__psig *ts = t ? t->sig : NULL;
        if (ts && ts->nmin < ts->capmin) {
            hy_ref r = hy__ref_new_inl(sh, sh->id);
            p->mark = p->mb_tailp; /* the receive marker, as hy_ref_make */
            p->mark_ref = r;
            *ref = r;
            s->call.ref = r;
            s->call.target = server;
            s->call.mon = s->call.alias = 1;
            HY_FAULT_POINT(HY_FP_MONITOR);
            ts->min[ts->nmin++] = (struct mon_in){r, p->pid, NULL};
            return 0;
        }
    }
    return monitor_install(p, server, NULL, HY_MONITOR_ALIAS, ref);
}

int hy_monitor_name(const char *name, hy_ref *ref)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (!name || !*name || strlen(name) >= HY_NAME_MAX)
        return HY_EINVAL;
    hy_pid pid = HY_PID_NONE;
    hy__name_lookup(name, &pid);
    return monitor_common(p, pid, name, 0, ref);
}

static int is_down_for(const struct hy_msg *m, void *arg)
{
    return m->tag == HY_TAG_DOWN && hy_ref_eq(m->ref, *(hy_ref *)arg);
}

/* Removes the caller's monitor ref (and its alias) as hy_demonitor does,
 * without the flush. Returns true when the monitor was still active: then no
 * DOWN for it is in the mailbox and none will come (a DOWN is queued only by
 * taking the monitor away, on_down), so a caller that would flush can skip
 * the mailbox scan. False: no such monitor (its DOWN, if any, was queued).
 * Context: in a process. */
static bool demonitor_body(struct hy_proc *p, hy_ref ref)
{
    hy__charge(p);
    struct hy__psig *s = p->sig;
    if (!s)
        return false;
    hy_pid target;
    if (s->call.mon && hy_ref_eq(s->call.ref, ref)) {
        target = s->call.target; /* the call's monitor */
        s->call.mon = s->call.alias = 0;
    } else {
        alias_remove(s, ref);
        struct mon_out *mo = mout_find(s, ref);
        if (!mo)
            return false;
        target = mo->target;
        *mo = s->mout[--s->nmout];
    }
    if (hy_pid_is_none(target)) {
        /* nothing to tell */
    } else if (hy_pid_node(target) == hy__rt.node_id && hy_pid_shard(target) == p->shard->id) {
        struct hy_proc *t = live(p->shard, target);
        if (t)
            min_remove(t->sig, ref); /* same shard: at once, no message */
    } else {
        send_sig(p->shard, p->pid, target, HY_K_DEMONITOR, ref, NULL, 0, 0);
    }
    return true;
}

/* For otp/gen_server.c: hy_demonitor(ref, false) telling whether the
 * monitor was still active (see demonitor_body); false outside a process. */
bool hy__demonitor_active(hy_ref ref);
bool hy__demonitor_active(hy_ref ref)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return false;
    struct hy__psig *s = p->sig;
    if (s && s->call.mon && hy_ref_eq(s->call.ref, ref) &&
        hy_pid_node(s->call.target) == hy__rt.node_id &&
        hy_pid_shard(s->call.target) == p->shard->id) {
        /* the call's monitor on a server of this shard (its receive charged
         * the call): the slot and the server's entry, at once */
        s->call.mon = s->call.alias = 0;
        struct hy_proc *t = live(p->shard, s->call.target);
        struct hy__psig *ts = t ? t->sig : NULL;
        if (!ts)
            return true;
        uint32_t n = ts->nmin;
        if (n && hy_ref_eq(ts->min[n - 1].ref, ref) && !ts->min[n - 1].name)
            ts->nmin = n - 1; /* the newest entry, usually: no walk */
        else
            min_remove(ts, ref);
        return true;
    }
    return demonitor_body(p, ref);
}

int hy_demonitor(hy_ref ref, bool flush)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (!demonitor_body(p, ref) && flush) {
        /* an active monitor had queued no DOWN: only a gone one may have */
        struct hy_msg *m;
        while (hy__recv_generic(is_down_for, &ref, &m, 0, false) == 0)
            hy_msg_free(m);
    }
    return 0;
}

/* ---- aliases --------------------------------------------------------------------- */

int hy_alias_create(unsigned flags, hy_alias *out)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (!out || (flags & ~HY_ALIAS_REPLY_ONCE))
        return HY_EINVAL;
    struct hy__psig *s = psig(p);
    if (!s || grow((void **)&s->aliases, s->naliases, &s->capaliases, sizeof(*s->aliases)))
        return HY_ENOMEM;
    hy_ref ref;
    hy_ref_make(&ref);
    s->aliases[s->naliases++] = (struct alias_ent){ref, (flags & HY_ALIAS_REPLY_ONCE) != 0};
    out->pid = p->pid;
    out->ref = ref;
    return 0;
}

int hy_alias_send(hy_alias a, uint64_t tag, const void *data, size_t len)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if ((tag & HY_TAG_SYSTEM) || (!data && len))
        return HY_EINVAL;
    if (hy__send_fast(sh, a.pid, HY_K_ALIAS_MSG, tag, a.ref, data, len)) {
        if (sh->current)
            hy__charge(sh->current);
        return 0;
    }
    struct hy_msg *m;
    int rc = hy__msg_alloc(sh, len, &m);
    if (rc)
        return rc;
    if (len)
        memcpy(m->data, data, len);
    m->kind = HY_K_ALIAS_MSG;
    m->tag = tag;
    m->ref = a.ref;
    m->to = a.pid;
    hy__route(sh, m);
    if (sh->current)
        hy__charge(sh->current);
    return 0;
}

int hy_alias_deactivate(hy_alias a)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    struct hy__psig *s = p->sig;
    if (s && hy_pid_eq(a.pid, p->pid)) {
        for (uint32_t i = 0; i < s->naliases; i++) {
            if (hy_ref_eq(s->aliases[i].ref, a.ref)) {
                s->aliases[i] = s->aliases[--s->naliases];
                return 0;
            }
        }
    }
    return HY_ENOENT;
}

/* ---- process information --------------------------------------------------------- */

static int fill_info(struct hy_shard *sh, hy_pid pid, struct hy_proc_info *info)
{
    struct hy_proc *p = hy__proc_lookup(sh, pid);
    if (!p || p->state == HY_P_DEAD)
        return HY_ENOPROC;
    memset(info, 0, sizeof(*info));
    info->pid = p->pid;
    switch (p->state) {
    case HY_P_RUNNING:
        info->status = HY_STATUS_RUNNING;
        break;
    case HY_P_WAITING:
        info->status = HY_STATUS_WAITING;
        break;
    case HY_P_EXITING:
        info->status = HY_STATUS_EXITING;
        break;
    default:
        info->status = HY_STATUS_RUNNABLE;
    }
    info->mailbox_len = p->mb_len + (p->handed != NULL); /* handed: ahead of the mailbox */
    info->trap_exit = p->trap_exit;
    info->reductions = p->reductions;
    size_t mem = sizeof(*p) + p->arena_bytes + p->copy_cap;
    if (p->handed)
        mem += sizeof(*p->handed) + p->handed->cap;
    for (struct hy_msg *m = p->mb_head; m; m = m->next)
        mem += sizeof(*m) + m->cap;
    if (p->stack)
        mem += 4096; /* at least the touched top page */
    struct hy__psig *s = p->sig;
    if (s) {
        memcpy(info->name, s->name, strnlen(s->name, HY_NAME_MAX - 1));
        for (uint32_t i = 0; i < s->nlinks; i++) {
            if (s->links[i].unlink_id)
                continue;
            if (info->nlinks < 16)
                info->links[info->nlinks] = s->links[i].peer;
            info->nlinks++;
        }
        info->nmonitors = s->nmout + s->call.mon;
        info->nmonitored_by = s->nmin;
        mem += sizeof(*s) + s->caplinks * sizeof(*s->links) + s->capmout * sizeof(*s->mout) +
               s->capmin * sizeof(*s->min);
    }
    info->memory = mem;
    return 0;
}

struct info_reply {
    int rc;
    struct hy_proc_info info;
};

static void on_info_req(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_msg *r;
    if (hy__msg_alloc(sh, sizeof(struct info_reply), &r) == 0) {
        struct info_reply *ir = (struct info_reply *)r->data;
        hy_pid pid;
        memcpy(&pid, m->data, sizeof(pid));
        ir->rc = fill_info(sh, pid, &ir->info);
        r->tag = HY_TAG_INFO_REPLY;
        r->ref = m->ref;
        r->to = m->from;
        hy__route(sh, r);
    }
    hy__msg_free_local(sh, m);
}

int hy_proc_info(hy_pid pid, struct hy_proc_info *info)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if (!info)
        return HY_EINVAL;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    if (hy_pid_node(pid) != hy__rt.node_id || hy_pid_creation(pid) != hy__rt.creation ||
        hy_pid_shard(pid) >= hy__rt.nshards)
        return HY_ENOPROC;
    if (hy_pid_shard(pid) == sh->id)
        return fill_info(sh, pid, info);
    hy_ref ref;
    hy_ref_make(&ref);
    struct hy_msg *m;
    if ((rc = hy__msg_alloc(sh, sizeof(pid), &m)) != 0)
        return rc;
    memcpy(m->data, &pid, sizeof(pid));
    m->kind = HY_K_INFO_REQ;
    m->ref = ref;
    m->to = hy_pid_make(hy__rt.node_id, hy__rt.creation, hy_pid_shard(pid), 0, 0);
    hy__route(sh, m);
    p->defer_exit++;
    rc = hy_recv_ref(ref, &m, HY_INFINITY);
    p->defer_exit--;
    if (rc)
        return rc;
    struct info_reply *ir = (struct info_reply *)m->data;
    rc = ir->rc;
    if (rc == 0)
        *info = ir->info;
    hy_msg_free(m);
    check_self(p);
    return rc;
}

struct list_req {
    size_t max;
};

/* The live processes of sh in slot order, read from each chunk's bitmap of
 * occupied slots (64 slots per word) rather than slot by slot. */
static size_t collect(struct hy_shard *sh, hy_pid *out, size_t max)
{
    size_t n = 0;
    uint32_t nchunks = (sh->nslots + HY_SLOT_CHUNK - 1) >> HY_SLOT_CHUNK_BITS;
    for (uint32_t c = 0; c < nchunks; c++) {
        struct hy__slot *chunk = sh->slot_chunks[c];
        const uint64_t *bits = hy__slot_live_bits(chunk);
        for (uint32_t w = 0; w < HY_SLOT_LIVE_WORDS; w++) {
            for (uint64_t x = bits[w]; x; x &= x - 1) {
                struct hy_proc *p = chunk[w * 64 + (uint32_t)__builtin_ctzll(x)].proc;
                if (p->state < HY_P_EXITING) {
                    if (n < max)
                        out[n] = p->pid;
                    n++;
                }
            }
        }
    }
    return n;
}

static void on_list_req(struct hy_shard *sh, struct hy_msg *m)
{
    struct list_req lr;
    memcpy(&lr, m->data, sizeof(lr));
    size_t total = collect(sh, NULL, 0);
    size_t take = total < lr.max ? total : lr.max;
    size_t cap = (hy__rt.cfg.max_message_size - sizeof(size_t)) / sizeof(hy_pid);
    if (take > cap)
        take = cap;
    struct hy_msg *r;
    if (hy__msg_alloc(sh, sizeof(size_t) + take * sizeof(hy_pid), &r) == 0) {
        memcpy(r->data, &total, sizeof(total));
        collect(sh, (hy_pid *)(r->data + sizeof(size_t)), take);
        r->tag = HY_TAG_LIST_REPLY;
        r->ref = m->ref;
        r->to = m->from;
        hy__route(sh, r);
    }
    hy__msg_free_local(sh, m);
}

int hy_proc_list(hy_pid *pids, size_t max, size_t *count)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    if ((!pids && max) || !count)
        return HY_EINVAL;
    struct hy_shard *sh = p->shard;
    size_t total = 0;
    for (unsigned s = 0; s < hy__rt.nshards; s++) {
        size_t room = total < max ? max - total : 0;
        if (s == sh->id) {
            total += collect(sh, pids ? pids + (total < max ? total : max) : NULL, room);
            continue;
        }
        hy_ref ref;
        hy_ref_make(&ref);
        struct list_req lr = {room};
        struct hy_msg *m;
        if ((rc = hy__msg_alloc(sh, sizeof(lr), &m)) != 0)
            return rc;
        memcpy(m->data, &lr, sizeof(lr));
        m->kind = HY_K_LIST_REQ;
        m->ref = ref;
        m->to = hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)s, 0, 0);
        hy__route(sh, m);
        p->defer_exit++;
        rc = hy_recv_ref(ref, &m, HY_INFINITY);
        p->defer_exit--;
        if (rc)
            return rc;
        size_t n;
        memcpy(&n, m->data, sizeof(n));
        size_t got = (m->size - sizeof(size_t)) / sizeof(hy_pid);
        if (got > room)
            got = room;
        if (got)
            memcpy(pids + total, m->data + sizeof(size_t), got * sizeof(hy_pid));
        hy_msg_free(m);
        total += n;
    }
    *count = total;
    check_self(p);
    return 0;
}

int hy_proc_list_local(hy_pid *pids, size_t max, size_t *count)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if ((!pids && max) || !count)
        return HY_EINVAL;
    *count = collect(sh, pids, max);
    return 0;
}

__attribute__((constructor)) static void signal_register(void)
{
    hy__kind_register(HY_K_EXIT, on_exit_sig);
    hy__kind_register(HY_K_LINK, on_link);
    hy__kind_register(HY_K_UNLINK, on_unlink);
    hy__kind_register(HY_K_UNLINK_ACK, on_unlink_ack);
    hy__kind_register(HY_K_MONITOR, on_monitor);
    hy__kind_register(HY_K_DEMONITOR, on_demonitor);
    hy__kind_register(HY_K_DOWN, on_down);
    hy__kind_register(HY_K_ALIAS_MSG, on_alias_msg);
    hy__kind_register(HY_K_INFO_REQ, on_info_req);
    hy__kind_register(HY_K_LIST_REQ, on_list_req);
    hy__on_proc_exit_hook = on_proc_exit;
}

/* ---- node monitors and node failure (driven by net/) ---------------------------------- */

_Atomic(hy_dist_monitor_node_fn) hy__dist_monitor_node_hook;

static void deliver_node_event(struct hy_shard *sh, struct hy_proc *p, uint64_t tag, uint32_t node)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, sizeof(node), &m) != 0)
        return;
    memcpy(m->data, &node, sizeof(node));
    m->tag = tag;
    m->to = p->pid;
    m->from = HY_PID_NONE;
    hy__mailbox_append(sh, p, m);
}

int hy_monitor_node(uint32_t node, bool on)
{
    int rc;
    struct hy_proc *p = cur_or(&rc);
    if (!p)
        return rc;
    struct hy__psig *s = psig(p);
    if (!s)
        return HY_ENOMEM;
    if (!on) {
        for (uint32_t i = 0; i < s->nnode_mons; i++) {
            if (s->node_mons[i] == node) {
                s->node_mons[i] = s->node_mons[--s->nnode_mons];
                break;
            }
        }
        return 0;
    }
    if (grow((void **)&s->node_mons, s->nnode_mons, &s->capnode_mons, sizeof(uint32_t)))
        return HY_ENOMEM;
    s->node_mons[s->nnode_mons++] = node;
    /* OTP: a node that cannot be reached gives nodedown at once */
    hy_dist_monitor_node_fn reach =
        atomic_load_explicit(&hy__dist_monitor_node_hook, memory_order_acquire);
    bool up = node == hy__rt.node_id || (reach && reach(node) == 0);
    if (!up) {
        s->node_mons[--s->nnode_mons] = 0;
        deliver_node_event(p->shard, p, HY_TAG_NODEDOWN, node);
    }
    return 0;
}

static void for_each_proc(struct hy_shard *sh, void (*fn)(struct hy_shard *, struct hy_proc *, void *),
                          void *arg)
{
    for (uint32_t i = 0; i < sh->nslots; i++) {
        struct hy__slot *sl = &sh->slot_chunks[i >> HY_SLOT_CHUNK_BITS][i & (HY_SLOT_CHUNK - 1)];
        if (sl->proc && sl->proc->state < HY_P_EXITING && sl->proc->sig)
            fn(sh, sl->proc, arg);
    }
}

static void node_down_proc(struct hy_shard *sh, struct hy_proc *p, void *arg)
{
    uint32_t node = *(uint32_t *)arg;
    struct hy__psig *s = p->sig;
    /* node monitors fire once and are removed, as OTP's monitor_node */
    for (uint32_t i = 0; i < s->nnode_mons;) {
        if (s->node_mons[i] == node) {
            s->node_mons[i] = s->node_mons[--s->nnode_mons];
            deliver_node_event(sh, p, HY_TAG_NODEDOWN, node);
        } else {
            i++;
        }
    }
    /* monitors this process held on processes there: DOWN noconnection */
    for (uint32_t i = 0; i < s->nmout + s->call.mon;) {
        bool inl = i == s->nmout; /* the call's monitor, last */
        struct mon_out mo = inl ? (struct mon_out){s->call.ref, s->call.target} : s->mout[i];
        if (!hy_pid_is_none(mo.target) && hy_pid_node(mo.target) == node) {
            if (inl)
                s->call.mon = s->call.alias = 0;
            else
                s->mout[i] = s->mout[--s->nmout];
            alias_remove(s, mo.ref);
            struct hy_down_info d;
            memset(&d, 0, sizeof(d));
            d.ref = mo.ref;
            d.pid = mo.target;
            d.reason = hy_reason_make(HY_REASON_NOCONNECTION);
            struct hy_msg *m;
            if (hy__msg_alloc(sh, sizeof(d), &m) == 0) {
                memcpy(m->data, &d, sizeof(d));
                m->tag = HY_TAG_DOWN;
                m->ref = mo.ref;
                m->from = mo.target;
                m->to = p->pid;
                hy__mailbox_append(sh, p, m);
            }
        } else {
            i++;
        }
    }
    /* monitors held by processes there on this one: gone */
    for (uint32_t i = 0; i < s->nmin;) {
        if (hy_pid_node(s->min[i].watcher) == node) {
            free(s->min[i].name);
            s->min[i] = s->min[--s->nmin];
        } else {
            i++;
        }
    }
    /* links: an exit signal noconnection from each linked process there */
    for (uint32_t i = 0; i < s->nlinks && p->state < HY_P_EXITING;) {
        struct link_ent e = s->links[i];
        if (hy_pid_node(e.peer) == node) {
            if (e.unlink_id) {
                s->links[i] = s->links[--s->nlinks];
                continue;
            }
            /* handle_exit removes the entry */
            handle_exit(sh, p, e.peer, hy_reason_make(HY_REASON_NOCONNECTION), true);
            if (p->sig != s)
                break;
        } else {
            i++;
        }
    }
}

void hy__dist_node_down(struct hy_shard *sh, uint32_t node)
{
    for_each_proc(sh, node_down_proc, &node);
}

static void node_up_proc(struct hy_shard *sh, struct hy_proc *p, void *arg)
{
    uint32_t node = *(uint32_t *)arg;
    struct hy__psig *s = p->sig;
    for (uint32_t i = 0; i < s->nnode_mons; i++)
        if (s->node_mons[i] == node)
            deliver_node_event(sh, p, HY_TAG_NODEUP, node);
}

void hy__dist_node_up(struct hy_shard *sh, uint32_t node)
{
    for_each_proc(sh, node_up_proc, &node);
}
