/* Registered names: the node-wide, read-mostly name table.
 *
 * DESIGN.md's one documented exception to shared-nothing: every shard reads
 * the table lock-free (acquire loads along immutable, published entries).
 * Changes take a writer lock, on the shard of the process concerned, so that
 * a name is gone *before* its process's exit signals are sent (OTP
 * guarantees this: a supervisor restarting a registered child must find the
 * name free). DESIGN.md asked for changes by message to an owner shard; that
 * made the removal race the EXIT to a supervisor on a third shard.
 * A removed entry is retired and freed by shard 0 once every shard has passed
 * a quiescent state (a scheduler turn, or sleeping) after the removal: RCU's
 * QSBR flavour, hand-written here.
 *
 * The process's own record of its name (for its exit and for info) lives on
 * its shard; registering a process of another shard asks that shard, which
 * checks that the process is alive and nameless, inserts, and answers.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crash_internal.h"
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
    struct name_ent *retired_next;
    char name[HY_NAME_MAX];
};

static _Atomic(struct name_ent *) buckets[NBUCKETS];
static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;
static struct name_ent *retired;          /* under the writer lock */
static _Atomic unsigned nretired;         /* hint for shard 0, read without the lock */
static struct name_ent *grace_list;       /* shard 0 only */
static uint64_t grace_snap[HY_MAX_SHARDS]; /* shard 0 only */

struct name_req {
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
    /* acquire: pairs with the writer's release when it publishes an entry */
    struct name_ent *e = atomic_load_explicit(&buckets[h % NBUCKETS], memory_order_acquire);
    for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire)) {
        if (e->hash == h && strcmp(e->name, name) == 0) {
            *out = e->pid;
            return 0;
        }
    }
    return HY_ENONAME;
}

/* ---- changes (writer lock) --------------------------------------------------------- */

static int table_insert(const char *name, hy_pid pid)
{
    struct name_ent *e = calloc(1, sizeof(*e));
    if (!e)
        return HY_ENOMEM;
    strcpy(e->name, name);
    e->pid = pid;
    e->hash = hash_name(name);
    pthread_mutex_lock(&writer);
    hy_pid old;
    if (hy__name_lookup(name, &old) == 0) {
        pthread_mutex_unlock(&writer);
        free(e);
        return HY_EEXIST;
    }
    _Atomic(struct name_ent *) *b = &buckets[e->hash % NBUCKETS];
    atomic_store_explicit(&e->next, atomic_load_explicit(b, memory_order_relaxed),
                          memory_order_relaxed);
    /* release: the entry's fields are visible before it is reachable */
    atomic_store_explicit(b, e, memory_order_release);
    pthread_mutex_unlock(&writer);
    return 0;
}

/* Removes name, only if it maps to pid unless pid is NONE; *was gets the pid
 * it mapped to. */
static int table_remove(const char *name, hy_pid pid, hy_pid *was)
{
    uint32_t h = hash_name(name);
    int rc = HY_ENONAME;
    pthread_mutex_lock(&writer);
    _Atomic(struct name_ent *) *link = &buckets[h % NBUCKETS];
    struct name_ent *e;
    while ((e = atomic_load_explicit(link, memory_order_relaxed)) != NULL) {
        if (e->hash == h && strcmp(e->name, name) == 0) {
            if (hy_pid_is_none(pid) || hy_pid_eq(pid, e->pid)) {
                if (was)
                    *was = e->pid;
                /* readers still on e see its next: it stays valid until reclaimed */
                atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed),
                                      memory_order_release);
                e->retired_next = retired;
                retired = e;
                atomic_fetch_add_explicit(&nretired, 1, memory_order_relaxed);
                rc = 0;
            }
            break;
        }
        link = &e->next;
    }
    pthread_mutex_unlock(&writer);
    return rc;
}

static void free_list(struct name_ent *l)
{
    while (l) {
        struct name_ent *n = l->retired_next;
        free(l);
        l = n;
    }
}

/* Called by every shard once per scheduler turn: its quiescent state. */
void hy__name_quiescent(struct hy_shard *sh)
{
    atomic_store_explicit(&sh->qs_count,
                          atomic_load_explicit(&sh->qs_count, memory_order_relaxed) + 1,
                          memory_order_release);
    if (sh->id != 0)
        return;
    if (grace_list) {
        for (unsigned i = 1; i < hy__rt.nshards; i++) {
            struct hy_shard *o = hy__rt.shards[i];
            if (atomic_load_explicit(&o->qs_count, memory_order_acquire) == grace_snap[i] &&
                !atomic_load_explicit(&o->sleeping, memory_order_acquire))
                return; /* shard i may still be reading */
        }
        free_list(grace_list);
        grace_list = NULL;
    }
    if (!atomic_load_explicit(&nretired, memory_order_relaxed))
        return;
    pthread_mutex_lock(&writer);
    grace_list = retired;
    retired = NULL;
    atomic_store_explicit(&nretired, 0, memory_order_relaxed);
    pthread_mutex_unlock(&writer);
    for (unsigned i = 1; i < hy__rt.nshards; i++)
        grace_snap[i] = atomic_load_explicit(&hy__rt.shards[i]->qs_count, memory_order_acquire);
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
    free_list(retired);
    free_list(grace_list);
    retired = grace_list = NULL;
    atomic_store(&nretired, 0);
}

/* ---- on the process's shard ------------------------------------------------------------ */

/* Registers local process pid under name: checks, inserts, records. */
static int reg_local(struct hy_shard *sh, const char *name, hy_pid pid)
{
    struct hy_proc *p = hy__proc_lookup(sh, pid);
    if (!p || p->state >= HY_P_EXITING)
        return HY_ENOPROC;
    char *pname = hy__psig_name(p);
    if (!pname)
        return HY_ENOMEM;
    if (pname[0])
        return HY_EEXIST;
    int rc = table_insert(name, pid);
    if (rc == 0)
        strcpy(pname, name);
    return rc;
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

static void on_reg(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    reply(sh, rq.caller, m->ref, reg_local(sh, rq.name, rq.pid));
    hy__msg_free_local(sh, m);
}

/* The process lost its name (hy_unregister elsewhere): forget it. */
static void clear_local(struct hy_shard *sh, const char *name, hy_pid pid)
{
    struct hy_proc *p = hy__proc_lookup(sh, pid);
    if (p && p->sig) {
        char *pname = hy__psig_name(p);
        if (strcmp(pname, name) == 0)
            pname[0] = '\0';
    }
}

static void on_clear(struct hy_shard *sh, struct hy_msg *m)
{
    struct name_req rq;
    memcpy(&rq, m->data, sizeof(rq));
    clear_local(sh, rq.name, rq.pid);
    hy__msg_free_local(sh, m);
}

/* A registered process is being reaped: its name goes now, before the
 * signals telling others of its exit. */
void hy__name_proc_exit(struct hy_shard *sh, struct hy_proc *p);
void hy__name_proc_exit(struct hy_shard *sh, struct hy_proc *p)
{
    (void)sh;
    char *pname = hy__psig_name(p);
    if (pname && pname[0]) {
        table_remove(pname, p->pid, NULL);
        pname[0] = '\0';
    }
}

__attribute__((constructor)) static void name_register_kinds(void)
{
    hy__kind_register(HY_K_NAME_REG, on_reg);
    hy__kind_register(HY_K_NAME_CLEAR, on_clear);
}

/* ---- public API ---------------------------------------------------------------------------- */

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

int hy_register(const char *name, hy_pid pid)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!name_ok(name))
        return HY_EINVAL;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    HY_FAULT_POINT(HY_FP_NAME);
    if (hy_pid_is_none(pid))
        pid = p->pid;
    if (hy_pid_node(pid) != hy__rt.node_id || hy_pid_creation(pid) != hy__rt.creation ||
        hy_pid_shard(pid) >= hy__rt.nshards)
        return HY_ENOPROC;
    if (hy_pid_shard(pid) == sh->id)
        return reg_local(sh, name, pid);
    struct name_req rq = {.pid = pid, .caller = p->pid};
    strcpy(rq.name, name);
    hy_ref ref;
    hy_ref_make(&ref);
    send_req(sh, HY_K_NAME_REG, pid, ref, &rq);
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

int hy_unregister(const char *name)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!name_ok(name))
        return HY_EINVAL;
    struct hy_shard *sh = p->shard;
    hy__charge(p);
    hy_pid was;
    int rc = table_remove(name, HY_PID_NONE, &was);
    if (rc)
        return rc;
    if (hy_pid_shard(was) == sh->id) {
        clear_local(sh, name, was);
    } else {
        struct name_req rq = {.pid = was, .caller = p->pid};
        strcpy(rq.name, name);
        send_req(sh, HY_K_NAME_CLEAR, was, HY_REF_NONE, &rq);
    }
    return 0;
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
