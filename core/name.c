/* Registered names: the node-wide, read-mostly name table.
 *
 * DESIGN.md's one documented exception to shared-nothing: every shard reads
 * the table lock-free (acquire loads along immutable, published entries);
 * only shard 0 changes it, on request messages. A removed entry is retired
 * and freed once every shard has passed a quiescent state (a scheduler turn,
 * or sleeping) after the removal: RCU's QSBR flavour, hand-written here.
 *
 * Registration goes first to the process's own shard (which checks that it
 * is alive and has no name, and remembers the name so that its exit removes
 * it), then to shard 0 (which checks that the name is free); the answer goes
 * back to the caller. FIFO order between the shards keeps a name's removal
 * after its insertion.
 */
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "shard_internal.h"
#include "signals.h"

#define NBUCKETS 4096
#define HY_TAG_NAME_REPLY (HY_TAG_SYSTEM | 0x4e414dull)

char *hy__psig_name(struct hy_proc *p);

struct name_ent {
    _Atomic(struct name_ent *) next;
    hy_pid pid;
    uint32_t hash;
    struct name_ent *retired_next; /* shard 0 only */
    char name[HY_NAME_MAX];
};

static _Atomic(struct name_ent *) buckets[NBUCKETS];
static _Atomic size_t nnames;

/* shard 0's reclamation state */
static struct name_ent *retired;      /* waiting for a grace period to start */
static struct name_ent *grace_list;   /* waiting for the grace period in progress */
static uint64_t grace_snap[HY_MAX_SHARDS];

struct name_req {
    int op;
    hy_pid pid;
    hy_pid caller;
    char name[HY_NAME_MAX];
};

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static bool name_ok(const char *name)
{
    return name && *name && strnlen(name, HY_NAME_MAX) < HY_NAME_MAX;
}

int hy__name_lookup(const char *name, hy_pid *out);
int hy__name_lookup(const char *name, hy_pid *out)
{
    uint32_t h = hash_name(name);
    /* acquire: pairs with shard 0's release when it publishes an entry */
    struct name_ent *e = atomic_load_explicit(&buckets[h % NBUCKETS], memory_order_acquire);
    for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire)) {
        if (e->hash == h && strcmp(e->name, name) == 0) {
            *out = e->pid;
            return 0;
        }
    }
    return HY_ENONAME;
}

/* ---- shard 0: changes -------------------------------------------------------------- */

static int table_insert(const char *name, hy_pid pid)
{
    hy_pid old;
    if (hy__name_lookup(name, &old) == 0)
        return HY_EEXIST;
    struct name_ent *e = calloc(1, sizeof(*e));
    if (!e)
        return HY_ENOMEM;
    strcpy(e->name, name);
    e->pid = pid;
    e->hash = hash_name(name);
    _Atomic(struct name_ent *) *b = &buckets[e->hash % NBUCKETS];
    atomic_store_explicit(&e->next, atomic_load_explicit(b, memory_order_relaxed),
                          memory_order_relaxed);
    /* release: the entry's fields are visible before it is reachable */
    atomic_store_explicit(b, e, memory_order_release);
    atomic_fetch_add(&nnames, 1);
    return 0;
}

/* Removes name (only if it maps to pid, unless pid is NONE); returns the pid
 * it mapped to in *was. */
static int table_remove(const char *name, hy_pid pid, hy_pid *was)
{
    uint32_t h = hash_name(name);
    _Atomic(struct name_ent *) *link = &buckets[h % NBUCKETS];
    struct name_ent *e;
    while ((e = atomic_load_explicit(link, memory_order_relaxed)) != NULL) {
        if (e->hash == h && strcmp(e->name, name) == 0) {
            if (!hy_pid_is_none(pid) && !hy_pid_eq(pid, e->pid))
                return HY_ENONAME;
            if (was)
                *was = e->pid;
            atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed),
                                  memory_order_release);
            e->retired_next = retired;
            retired = e;
            atomic_fetch_sub(&nnames, 1);
            return 0;
        }
        link = &e->next;
    }
    return HY_ENONAME;
}

/* Called by every shard once per scheduler turn. */
void hy__name_quiescent(struct hy_shard *sh)
{
    atomic_store_explicit(&sh->qs_count,
                          atomic_load_explicit(&sh->qs_count, memory_order_relaxed) + 1,
                          memory_order_release);
    if (sh->id != 0 || (!retired && !grace_list))
        return;
    if (grace_list) {
        for (unsigned i = 1; i < hy__rt.nshards; i++) {
            struct hy_shard *o = hy__rt.shards[i];
            if (atomic_load_explicit(&o->qs_count, memory_order_acquire) == grace_snap[i] &&
                !atomic_load_explicit(&o->sleeping, memory_order_acquire))
                return; /* shard i may still be reading */
        }
        while (grace_list) {
            struct name_ent *n = grace_list->retired_next;
            free(grace_list);
            grace_list = n;
        }
    }
    if (retired) {
        grace_list = retired;
        retired = NULL;
        for (unsigned i = 1; i < hy__rt.nshards; i++)
            grace_snap[i] = atomic_load_explicit(&hy__rt.shards[i]->qs_count,
                                                 memory_order_acquire);
    }
}

void hy__name_fini(void)
{
    for (unsigned b = 0; b < NBUCKETS; b++) {
        struct name_ent *e = atomic_load(&buckets[b]);
        while (e) {
            struct name_ent *n = atomic_load(&e->next);
            free(e);
            e = n;
        }
        atomic_store(&buckets[b], NULL);
    }
    struct name_ent *lists[2] = {retired, grace_list};
    for (int i = 0; i < 2; i++) {
        while (lists[i]) {
            struct name_ent *n = lists[i]->retired_next;
            free(lists[i]);
            lists[i] = n;
        }
    }
    retired = grace_list = NULL;
    atomic_store(&nnames, 0);
}

/* ---- request handling --------------------------------------------------------------- */

enum { OP_REG = 1, OP_INSERT, OP_REJECT, OP_REMOVE, OP_UNREG, OP_CLEAR };

static hy_pid shard_pid(unsigned s)
{
    return hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)s, 0, 0);
}

static void send_req(struct hy_shard *sh, unsigned kind, hy_pid to, hy_ref ref,
                     const struct name_req *rq)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, sizeof(*rq), &m) != 0)
        return;
    memcpy(m->data, rq, sizeof(*rq));
    m->kind = (uint8_t)kind;
    m->ref = ref;
    m->to = to;
    hy__route(sh, m);
}

static void reply(struct hy_shard *sh, hy_pid caller, hy_ref ref, int rc)
{
    struct hy_msg *m;
    if (hy__msg_alloc(sh, sizeof(rc), &m) != 0)
        return;
    memcpy(m->data, &rc, sizeof(rc));
    m->tag = HY_TAG_NAME_REPLY;
    m->ref = ref;
    m->to = caller;
    hy__route(sh, m);
}

/* On the registered process's shard. */
static void on_reg(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    struct hy_proc *p = hy__proc_lookup(sh, rq.pid);
    char *pname = p && p->state < HY_P_EXITING ? hy__psig_name(p) : NULL;
    if (!p || p->state >= HY_P_EXITING)
        reply(sh, rq.caller, m->ref, HY_ENOPROC);
    else if (!pname)
        reply(sh, rq.caller, m->ref, HY_ENOMEM);
    else if (pname[0])
        reply(sh, rq.caller, m->ref, HY_EEXIST);
    else {
        strcpy(pname, rq.name); /* pending: its exit will remove it */
        send_req(sh, HY_K_NAME_INSERT, shard_pid(0), m->ref, &rq);
    }
    hy__msg_free_local(sh, m);
}

static void on_insert(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    int rc = table_insert(rq.name, rq.pid);
    if (rc)
        send_req(sh, HY_K_NAME_REJECT, rq.pid, HY_REF_NONE, &rq);
    reply(sh, rq.caller, m->ref, rc);
    hy__msg_free_local(sh, m);
}

/* On the process's shard: forget a name it does not (or no longer) hold. */
static void on_clear(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    struct hy_proc *p = hy__proc_lookup(sh, rq.pid);
    if (p && p->sig) {
        char *pname = hy__psig_name(p);
        if (strcmp(pname, rq.name) == 0)
            pname[0] = '\0';
    }
    hy__msg_free_local(sh, m);
}

static void on_remove(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    table_remove(rq.name, rq.pid, NULL);
    hy__msg_free_local(sh, m);
}

static void on_unreg(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    hy_pid was;
    int rc = table_remove(rq.name, HY_PID_NONE, &was);
    if (rc == 0) {
        rq.pid = was;
        send_req(sh, HY_K_NAME_CLEAR, was, HY_REF_NONE, &rq);
    }
    reply(sh, rq.caller, m->ref, rc);
    hy__msg_free_local(sh, m);
}

void hy__name_proc_exit(struct hy_shard *sh, struct hy_proc *p);
void hy__name_proc_exit(struct hy_shard *sh, struct hy_proc *p)
{
    struct name_req rq = {.op = OP_REMOVE, .pid = p->pid};
    strcpy(rq.name, hy__psig_name(p));
    send_req(sh, HY_K_NAME_REMOVE, shard_pid(0), HY_REF_NONE, &rq);
}

__attribute__((constructor)) static void name_register_kinds(void)
{
    hy__kind_register(HY_K_NAME_REG, on_reg);
    hy__kind_register(HY_K_NAME_INSERT, on_insert);
    hy__kind_register(HY_K_NAME_REJECT, on_clear);
    hy__kind_register(HY_K_NAME_CLEAR, on_clear);
    hy__kind_register(HY_K_NAME_REMOVE, on_remove);
    hy__kind_register(HY_K_NAME_UNREG, on_unreg);
}

/* ---- public API ---------------------------------------------------------------------- */

static int request(struct hy_proc *p, unsigned kind, hy_pid to, struct name_req *rq)
{
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    hy_ref ref;
    hy_ref_make(&ref);
    rq->caller = p->pid;
    send_req(sh, kind, to, ref, rq);
    struct hy_msg *m;
    p->defer_exit++;
    int rc = hy_recv_ref(ref, &m, HY_INFINITY);
    p->defer_exit--;
    if (rc)
        return rc;
    int res;
    memcpy(&res, m->data, sizeof(res));
    hy_msg_free(m);
    if (p->exit_pending && !p->defer_exit)
        hy__proc_exit_current(p, p->exit_reason_pending);
    return res;
}

int hy_register(const char *name, hy_pid pid)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!name_ok(name))
        return HY_EINVAL;
    if (hy_pid_is_none(pid))
        pid = p->pid;
    if (hy_pid_node(pid) != hy__rt.node_id || hy_pid_creation(pid) != hy__rt.creation ||
        hy_pid_shard(pid) >= hy__rt.nshards)
        return HY_ENOPROC;
    struct name_req rq = {.op = OP_REG, .pid = pid};
    strcpy(rq.name, name);
    return request(p, HY_K_NAME_REG, pid, &rq);
}

int hy_unregister(const char *name)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!name_ok(name))
        return HY_EINVAL;
    struct name_req rq = {.op = OP_UNREG};
    strcpy(rq.name, name);
    return request(p, HY_K_NAME_UNREG, shard_pid(0), &rq);
}

int hy_whereis(const char *name, hy_pid *out)
{
    if (!hy__shard())
        return HY_ENOTSHARD;
    if (!name_ok(name) || !out)
        return HY_EINVAL;
    return hy__name_lookup(name, out);
}

int hy_send_name(const char *name, uint64_t tag, const void *data, size_t len)
{
    hy_pid pid;
    int rc = hy_whereis(name, &pid);
    if (rc)
        return rc;
    return hy_send(pid, tag, data, len);
}

int hy_registered(char (*names)[HY_NAME_MAX], hy_pid *pids, size_t max, size_t *count)
{
    if (!hy__shard())
        return HY_ENOTSHARD;
    if (!count || (max && !names))
        return HY_EINVAL;
    size_t n = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        struct name_ent *e = atomic_load_explicit(&buckets[b], memory_order_acquire);
        for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire)) {
            if (n < max) {
                memcpy(names[n], e->name, HY_NAME_MAX);
                if (pids)
                    pids[n] = e->pid;
            }
            n++;
        }
    }
    *count = n;
    return 0;
}
