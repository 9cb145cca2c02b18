/* Registry: one GenServer partition per shard owning a table of keys, each
 * with its entries (registration order) and maybe a start in progress; a
 * table of entries by monitor reference for removal on DOWN; the client side
 * routes by the fixed hash and calls the key's partition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "gen_server.h"
#include "hash_ring.h"
#include "registry.h"
#include "runtime.h"
#include "signals.h"
#include "supervisor.h"

enum {
    REG_REGISTER = 1,
    REG_UNREGISTER,
    REG_LOOKUP,
    REG_LOOKUP_OR_START,
    REG_COUNT,
    REG_STARTED, /* cast from a starter */
};

/* Request payload: the key, and a value for REG_REGISTER. */
struct key_req {
    uint64_t value;
    uint32_t len;
    uint8_t key[HY_REGISTRY_KEY_MAX];
};

/* A starter's report. */
struct started_msg {
    int32_t rc;
    hy_pid pid;
    hy_pid starter;
    uint32_t len;
    uint8_t key[HY_REGISTRY_KEY_MAX];
};

struct part_init {
    char name[HY_NAME_MAX];
    int shard;
    int kind;
    hy_registry_start_fn start;
    void *start_arg;
};

struct kslot;

struct entry {
    hy_pid pid;
    uint64_t value;
    hy_ref mref;
    struct kslot *k;
    struct entry *kprev, *knext; /* the key's entries, registration order */
    struct entry *rnext;         /* chain in the table by mref */
};

struct pending {
    struct kslot *k;
    hy_pid starter;
    hy_ref smref;
    hy_gs_from *waiters;
    size_t nwaiters, capwaiters;
    struct pending *next; /* the partition's pending starts */
};

struct kslot {
    uint64_t hash;
    uint32_t len;
    size_t n;
    struct entry *head, *tail;
    struct pending *pending;
    struct kslot *hnext;
    uint8_t key[];
};

struct part {
    int kind;
    hy_registry_start_fn start;
    void *start_arg;
    struct kslot **kb;
    size_t nkb, nkeys;
    struct entry **rb;
    size_t nrb, nentries;
    struct pending *pendings;
};

/* ---- tables --------------------------------------------------------------------- */

static size_t kbucket(uint64_t hash, size_t nb)
{
    /* the low bits are shared by a partition's keys (hash % shards) */
    return (size_t)(hash >> 32) & (nb - 1);
}

static size_t rbucket(hy_ref r, size_t nb)
{
    uint64_t h = (r.lo ^ (r.hi * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return (size_t)(h >> 32) & (nb - 1);
}

static struct kslot *key_find(struct part *p, const void *key, uint32_t len, uint64_t hash)
{
    for (struct kslot *k = p->kb[kbucket(hash, p->nkb)]; k; k = k->hnext)
        if (k->hash == hash && k->len == len && memcmp(k->key, key, len) == 0)
            return k;
    return NULL;
}

static void grow_keys(struct part *p)
{
    size_t nb = p->nkb * 2;
    struct kslot **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < p->nkb; i++) {
        struct kslot *k = p->kb[i];
        while (k) {
            struct kslot *next = k->hnext;
            size_t h = kbucket(k->hash, nb);
            k->hnext = b[h];
            b[h] = k;
            k = next;
        }
    }
    free(p->kb);
    p->kb = b;
    p->nkb = nb;
}

static struct kslot *key_get(struct part *p, const void *key, uint32_t len, uint64_t hash)
{
    struct kslot *k = key_find(p, key, len, hash);
    if (k)
        return k;
    k = calloc(1, sizeof(*k) + len);
    if (!k)
        return NULL;
    k->hash = hash;
    k->len = len;
    memcpy(k->key, key, len);
    if (p->nkeys >= p->nkb)
        grow_keys(p);
    size_t h = kbucket(hash, p->nkb);
    k->hnext = p->kb[h];
    p->kb[h] = k;
    p->nkeys++;
    return k;
}

/* Frees k once it has neither entries nor a start in progress. */
static void key_maybe_free(struct part *p, struct kslot *k)
{
    if (k->n || k->pending)
        return;
    struct kslot **pp = &p->kb[kbucket(k->hash, p->nkb)];
    while (*pp != k)
        pp = &(*pp)->hnext;
    *pp = k->hnext;
    p->nkeys--;
    free(k);
}

static void grow_refs(struct part *p)
{
    size_t nb = p->nrb * 2;
    struct entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < p->nrb; i++) {
        struct entry *e = p->rb[i];
        while (e) {
            struct entry *next = e->rnext;
            size_t h = rbucket(e->mref, nb);
            e->rnext = b[h];
            b[h] = e;
            e = next;
        }
    }
    free(p->rb);
    p->rb = b;
    p->nrb = nb;
}

static struct entry *entry_by_ref(struct part *p, hy_ref ref)
{
    for (struct entry *e = p->rb[rbucket(ref, p->nrb)]; e; e = e->rnext)
        if (hy_ref_eq(e->mref, ref))
            return e;
    return NULL;
}

/* Adds an entry for pid under k, monitoring pid. */
static int entry_add(struct part *p, struct kslot *k, hy_pid pid, uint64_t value)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        return HY_ENOMEM;
    int rc = hy_monitor(pid, &e->mref);
    if (rc) {
        free(e);
        return rc;
    }
    e->pid = pid;
    e->value = value;
    e->k = k;
    e->kprev = k->tail;
    if (k->tail)
        k->tail->knext = e;
    else
        k->head = e;
    k->tail = e;
    k->n++;
    if (p->nentries >= p->nrb)
        grow_refs(p);
    size_t h = rbucket(e->mref, p->nrb);
    e->rnext = p->rb[h];
    p->rb[h] = e;
    p->nentries++;
    return 0;
}

/* Removes e (and its key if now empty); demonitors unless its DOWN came. */
static void entry_remove(struct part *p, struct entry *e, bool demonitor)
{
    struct kslot *k = e->k;
    if (e->kprev)
        e->kprev->knext = e->knext;
    else
        k->head = e->knext;
    if (e->knext)
        e->knext->kprev = e->kprev;
    else
        k->tail = e->kprev;
    k->n--;
    struct entry **pp = &p->rb[rbucket(e->mref, p->nrb)];
    while (*pp != e)
        pp = &(*pp)->rnext;
    *pp = e->rnext;
    p->nentries--;
    if (demonitor)
        hy_demonitor(e->mref, true);
    free(e);
    key_maybe_free(p, k);
}

/* ---- replies ------------------------------------------------------------------- */

static void reply(hy_gs_from from, int rc, const void *data, size_t len)
{
    if (hy_gen_server_reply(from, (uint64_t) - (int64_t)rc, data, len) == HY_EMSGSIZE)
        hy_gen_server_reply(from, (uint64_t) - (int64_t)HY_EMSGSIZE, NULL, 0);
}

static void reply_pid(hy_gs_from from, int rc, hy_pid pid)
{
    reply(from, rc, &pid, sizeof(pid));
}

/* ---- start on demand ---------------------------------------------------------- */

struct starter_arg {
    hy_registry_start_fn fn;
    void *arg;
    hy_pid part;
    uint32_t len;
    uint8_t key[HY_REGISTRY_KEY_MAX];
};

static void starter_main(void *a)
{
    const struct starter_arg *sa = a;
    struct started_msg m;
    memset(&m, 0, sizeof(m));
    m.pid = HY_PID_NONE;
    m.rc = sa->fn(sa->key, sa->len, sa->arg, &m.pid);
    if (m.rc == 0 && hy_pid_is_none(m.pid))
        m.rc = HY_ESTOPPED;
    m.starter = hy_self();
    m.len = sa->len;
    memcpy(m.key, sa->key, sa->len);
    hy_gen_server_cast(sa->part, REG_STARTED, &m, offsetof(struct started_msg, key) + m.len);
}

static int pending_wait(struct pending *pd, hy_gs_from from)
{
    if (pd->nwaiters == pd->capwaiters) {
        size_t cap = pd->capwaiters ? pd->capwaiters * 2 : 4;
        hy_gs_from *w = realloc(pd->waiters, cap * sizeof(*w));
        if (!w)
            return HY_ENOMEM;
        pd->waiters = w;
        pd->capwaiters = cap;
    }
    pd->waiters[pd->nwaiters++] = from;
    return 0;
}

static void pending_finish(struct part *p, struct kslot *k, int rc, hy_pid pid)
{
    struct pending *pd = k->pending;
    for (size_t i = 0; i < pd->nwaiters; i++)
        reply_pid(pd->waiters[i], rc, pid);
    struct pending **pp = &p->pendings;
    while (*pp != pd)
        pp = &(*pp)->next;
    *pp = pd->next;
    free(pd->waiters);
    free(pd);
    k->pending = NULL;
    key_maybe_free(p, k);
}

static void start_key(struct part *p, struct kslot *k, hy_gs_from from)
{
    struct pending *pd = calloc(1, sizeof(*pd));
    if (!pd || pending_wait(pd, from)) {
        free(pd);
        reply_pid(from, HY_ENOMEM, HY_PID_NONE);
        key_maybe_free(p, k);
        return;
    }
    struct starter_arg sa;
    memset(&sa, 0, sizeof(sa));
    sa.fn = p->start;
    sa.arg = p->start_arg;
    sa.part = hy_self();
    sa.len = k->len;
    memcpy(sa.key, k->key, k->len);
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(sa);
    so.monitor = true;
    so.monitor_ref = &pd->smref;
    int rc = hy_spawn_opt(starter_main, &sa, &so, &pd->starter);
    if (rc) {
        free(pd->waiters);
        free(pd);
        reply_pid(from, rc, HY_PID_NONE);
        key_maybe_free(p, k);
        return;
    }
    pd->k = k;
    pd->next = p->pendings;
    p->pendings = pd;
    k->pending = pd;
}

static void on_started(struct part *p, const struct started_msg *m)
{
    uint64_t hash = hy_hash_ring_hash(m->key, m->len);
    struct kslot *k = key_find(p, m->key, m->len, hash);
    if (!k || !k->pending || !hy_pid_eq(k->pending->starter, m->starter))
        return;
    hy_demonitor(k->pending->smref, true);
    int rc = m->rc;
    hy_pid pid = m->pid;
    if (rc == 0 && k->n) {
        /* registered meanwhile: that one wins */
        if (!hy_pid_eq(k->head->pid, pid))
            hy_exit_pid(pid, hy_reason_make(HY_REASON_SHUTDOWN));
        pid = k->head->pid;
    } else if (rc == 0) {
        rc = entry_add(p, k, pid, 0);
        if (rc)
            hy_exit_pid(pid, hy_reason_make(HY_REASON_SHUTDOWN));
    }
    pending_finish(p, k, rc, rc ? HY_PID_NONE : pid);
}

/* ---- the partition ----------------------------------------------------------- */

/* Frees the partition's tables however it ends (a supervisor's shutdown
 * kills it without terminate: it does not trap exits). Callers waiting on a
 * start in progress get the partition's DOWN. */
static void part_free(void *arg)
{
    struct part *p = arg;
    for (size_t i = 0; i < p->nkb; i++) {
        struct kslot *k = p->kb[i];
        while (k) {
            struct kslot *next = k->hnext;
            struct entry *e = k->head;
            while (e) {
                struct entry *en = e->knext;
                free(e);
                e = en;
            }
            free(k);
            k = next;
        }
    }
    while (p->pendings) {
        struct pending *pd = p->pendings;
        p->pendings = pd->next;
        free(pd->waiters);
        free(pd);
    }
    free(p->kb);
    free(p->rb);
    free(p);
}

static int part_init(struct hy_gs *gs, void *arg)
{
    const struct part_init *pi = arg;
    struct part *p = calloc(1, sizeof(*p));
    if (p) {
        p->nkb = 64;
        p->nrb = 64;
        p->kb = calloc(p->nkb, sizeof(*p->kb));
        p->rb = calloc(p->nrb, sizeof(*p->rb));
    }
    if (!p || !p->kb || !p->rb) {
        if (p) {
            free(p->kb);
            free(p->rb);
        }
        free(p);
        hy_gen_server_stop_reason(gs, hy_reason_user(HY_ENOMEM, "out of memory"));
        return HY_GS_STOP;
    }
    p->kind = pi->kind;
    p->start = pi->start;
    p->start_arg = pi->start_arg;
    if (hy_on_exit(part_free, p) != 0) {
        part_free(p);
        hy_gen_server_stop_reason(gs, hy_reason_user(HY_ENOMEM, "out of memory"));
        return HY_GS_STOP;
    }
    hy_gen_server_set_state(gs, p);
    return HY_GS_OK;
}

static bool parse_key(const void *data, size_t len, struct key_req *rq)
{
    size_t head = offsetof(struct key_req, key);
    if (len < head)
        return false;
    memcpy(rq, data, head);
    if (rq->len == 0 || rq->len > HY_REGISTRY_KEY_MAX || len != head + rq->len)
        return false;
    memcpy(rq->key, (const uint8_t *)data + head, rq->len);
    return true;
}

static void on_register(struct part *p, const struct key_req *rq, uint64_t hash, hy_gs_from from)
{
    struct kslot *k = key_get(p, rq->key, rq->len, hash);
    if (!k) {
        reply_pid(from, HY_ENOMEM, HY_PID_NONE);
        return;
    }
    if (p->kind == HY_REGISTRY_UNIQUE && k->n) {
        reply_pid(from, HY_EEXIST, k->head->pid);
        return;
    }
    int rc = entry_add(p, k, from.pid, rq->value);
    if (rc)
        key_maybe_free(p, k);
    reply_pid(from, rc, from.pid);
}

static void on_unregister(struct part *p, const struct key_req *rq, uint64_t hash, hy_gs_from from)
{
    struct kslot *k = key_find(p, rq->key, rq->len, hash);
    bool found = false;
    struct entry *e = k ? k->head : NULL;
    while (e) {
        struct entry *next = e->knext;
        if (hy_pid_eq(e->pid, from.pid)) {
            found = true;
            bool last = k->n == 1; /* removing the last entry may free k */
            entry_remove(p, e, true);
            if (last)
                break;
        }
        e = next;
    }
    reply(from, found ? 0 : HY_ENOENT, NULL, 0);
}

static void on_lookup(struct part *p, const struct key_req *rq, uint64_t hash, hy_gs_from from)
{
    struct kslot *k = key_find(p, rq->key, rq->len, hash);
    size_t n = k ? k->n : 0;
    if (!n) {
        reply(from, 0, NULL, 0);
        return;
    }
    struct hy_registry_entry *out = malloc(n * sizeof(*out));
    if (!out) {
        reply(from, HY_ENOMEM, NULL, 0);
        return;
    }
    size_t i = 0;
    for (struct entry *e = k->head; e; e = e->knext)
        out[i++] = (struct hy_registry_entry){e->pid, e->value};
    reply(from, 0, out, n * sizeof(*out));
    free(out);
}

static void on_lookup_or_start(struct part *p, const struct key_req *rq, uint64_t hash,
                               hy_gs_from from)
{
    if (p->kind != HY_REGISTRY_UNIQUE) {
        reply_pid(from, HY_EINVAL, HY_PID_NONE);
        return;
    }
    struct kslot *k = key_find(p, rq->key, rq->len, hash);
    if (k && k->n) {
        reply_pid(from, 0, k->head->pid);
        return;
    }
    if (!p->start) {
        reply_pid(from, HY_ENOTSUP, HY_PID_NONE);
        return;
    }
    if (k && k->pending) {
        /* a start of this key is under way: wait for the same one */
        if (pending_wait(k->pending, from))
            reply_pid(from, HY_ENOMEM, HY_PID_NONE);
        return;
    }
    k = key_get(p, rq->key, rq->len, hash);
    if (!k) {
        reply_pid(from, HY_ENOMEM, HY_PID_NONE);
        return;
    }
    start_key(p, k, from); /* the reply is deferred until the start ends */
}

static int part_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    struct part *p = hy_gen_server_state(gs);
    if (tag == REG_COUNT) {
        uint64_t n = p->nentries;
        reply(from, 0, &n, sizeof(n));
        return HY_GS_OK;
    }
    struct key_req rq;
    if (!parse_key(data, len, &rq)) {
        reply(from, HY_EINVAL, NULL, 0);
        return HY_GS_OK;
    }
    uint64_t hash = hy_hash_ring_hash(rq.key, rq.len);
    switch (tag) {
    case REG_REGISTER:
        on_register(p, &rq, hash, from);
        break;
    case REG_UNREGISTER:
        on_unregister(p, &rq, hash, from);
        break;
    case REG_LOOKUP:
        on_lookup(p, &rq, hash, from);
        break;
    case REG_LOOKUP_OR_START:
        on_lookup_or_start(p, &rq, hash, from);
        break;
    default:
        reply(from, HY_EINVAL, NULL, 0);
        break;
    }
    return HY_GS_OK;
}

static int part_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    struct part *p = hy_gen_server_state(gs);
    size_t head = offsetof(struct started_msg, key);
    if (tag != REG_STARTED || len < head)
        return HY_GS_OK;
    struct started_msg m;
    memcpy(&m, data, head);
    if (m.len == 0 || m.len > HY_REGISTRY_KEY_MAX || len != head + m.len)
        return HY_GS_OK;
    memcpy(m.key, (const uint8_t *)data + head, m.len);
    on_started(p, &m);
    return HY_GS_OK;
}

static int part_info(struct hy_gs *gs, const struct hy_msg *m)
{
    struct part *p = hy_gen_server_state(gs);
    if (m->tag != HY_TAG_DOWN || m->size != sizeof(struct hy_down_info))
        return HY_GS_OK;
    struct hy_down_info d;
    memcpy(&d, m->data, sizeof(d));
    struct entry *e = entry_by_ref(p, d.ref);
    if (e) {
        entry_remove(p, e, false);
        return HY_GS_OK;
    }
    /* a starter that died without reporting */
    for (struct pending *pd = p->pendings; pd; pd = pd->next) {
        if (hy_ref_eq(pd->smref, d.ref)) {
            pending_finish(p, pd->k, HY_ESTOPPED, HY_PID_NONE);
            break;
        }
    }
    return HY_GS_OK;
}

static const struct hy_gen_server_ops part_ops = {
    .init = part_init,
    .handle_call = part_call,
    .handle_cast = part_cast,
    .handle_info = part_info,
};

static int part_child_start(const void *arg, size_t arg_size, hy_pid *pid)
{
    if (arg_size != sizeof(struct part_init))
        return HY_EINVAL;
    const struct part_init *pi = arg;
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = pi->name;
    o.shard = pi->shard;
    o.arg_size = sizeof(*pi);
    return hy_gen_server_start_link(&part_ops, (void *)pi, &o, pid);
}

/* ---- API ---------------------------------------------------------------------- */

static bool name_ok(const char *name)
{
    if (!name)
        return false;
    size_t n = strlen(name);
    return n > 0 && n < HY_REGISTRY_NAME_MAX && !strchr(name, '/');
}

int hy_registry_start_link(const char *name, const struct hy_registry_opts *opts, hy_pid *sup)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    struct hy_registry_opts def = HY_REGISTRY_OPTS_INIT;
    if (!opts)
        opts = &def;
    if (!name_ok(name) ||
        (opts->kind != HY_REGISTRY_UNIQUE && opts->kind != HY_REGISTRY_DUPLICATE) ||
        (opts->start && opts->kind != HY_REGISTRY_UNIQUE))
        return HY_EINVAL;
    unsigned n = hy_shard_count();
    struct part_init *pi = calloc(n, sizeof(*pi));
    struct hy_child_spec *specs = calloc(n, sizeof(*specs));
    char(*ids)[32] = calloc(n, sizeof(*ids));
    if (!pi || !specs || !ids) {
        free(pi);
        free(specs);
        free(ids);
        return HY_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        snprintf(pi[i].name, sizeof(pi[i].name), "%s/%u", name, i);
        pi[i].shard = (int)i;
        pi[i].kind = opts->kind;
        pi[i].start = opts->start;
        pi[i].start_arg = opts->start_arg;
        snprintf(ids[i], sizeof(ids[i]), "partition-%u", i);
        specs[i] = (struct hy_child_spec){
            .id = ids[i],
            .start = part_child_start,
            .arg = &pi[i],
            .arg_size = sizeof(pi[i]),
            .restart = HY_PERMANENT,
            .shutdown_ns = HY_SHUTDOWN_DEFAULT,
            .type = HY_WORKER,
        };
    }
    struct hy_sup_flags flags = {.strategy = HY_ONE_FOR_ONE, .intensity = 3, .period_s = 5};
    struct hy_sup_opts so = HY_SUP_OPTS_INIT;
    so.name = name;
    int rc = hy_supervisor_start_link(&flags, specs, n, &so, sup, NULL);
    free(pi);
    free(specs);
    free(ids);
    return rc;
}

int hy_registry_stop(hy_pid sup, int64_t timeout_ns)
{
    /* normal: the linked parent is not taken down with it */
    return hy_gen_server_stop(sup, hy_reason_make(HY_REASON_NORMAL), timeout_ns);
}

int hy_registry_partition(const void *key, size_t len)
{
    unsigned n = hy_shard_count();
    if (!n || !key || len == 0 || len > HY_REGISTRY_KEY_MAX)
        return -1;
    return (int)(hy_hash_ring_hash(key, len) % n);
}

static int part_pid(const char *registry, unsigned i, hy_pid *pid)
{
    char pname[HY_NAME_MAX];
    snprintf(pname, sizeof(pname), "%s/%u", registry, i);
    int rc = hy_whereis(pname, pid);
    return rc == HY_ENONAME ? HY_ENOPROC : rc;
}

/* Calls the key's partition; on success the reply (tag = negated result)
 * is returned owned in *reply when asked for, also for errors carrying a
 * payload. */
static int key_call(const char *registry, uint64_t tag, const void *key, size_t len, uint64_t value,
                    struct hy_msg **reply_out)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!name_ok(registry) || !key || len == 0 || len > HY_REGISTRY_KEY_MAX)
        return HY_EINVAL;
    int part = hy_registry_partition(key, len);
    if (part < 0)
        return HY_EINVAL;
    hy_pid pid;
    int rc = part_pid(registry, (unsigned)part, &pid);
    if (rc)
        return rc;
    struct key_req rq;
    rq.value = value;
    rq.len = (uint32_t)len;
    memcpy(rq.key, key, len);
    struct hy_msg *m;
    rc = hy_gen_server_call(pid, tag, &rq, offsetof(struct key_req, key) + len, HY_INFINITY, &m,
                            NULL);
    if (rc)
        return rc;
    rc = (int)-(int64_t)m->tag;
    if (reply_out)
        *reply_out = m;
    else
        hy_msg_free(m);
    return rc;
}

static hy_pid msg_pid(const struct hy_msg *m)
{
    hy_pid p = HY_PID_NONE;
    if (m->size == sizeof(p))
        memcpy(&p, m->data, sizeof(p));
    return p;
}

int hy_registry_register(const char *registry, const void *key, size_t len, uint64_t value,
                         hy_pid *owner)
{
    struct hy_msg *m = NULL;
    int rc = key_call(registry, REG_REGISTER, key, len, value, &m);
    if (m) {
        if (rc == HY_EEXIST && owner)
            *owner = msg_pid(m);
        hy_msg_free(m);
    }
    return rc;
}

int hy_registry_unregister(const char *registry, const void *key, size_t len)
{
    return key_call(registry, REG_UNREGISTER, key, len, 0, NULL);
}

/* Fetches the entries of key: an owned message whose payload is the array. */
static int fetch(const char *registry, const void *key, size_t len, struct hy_msg **out)
{
    struct hy_msg *m = NULL;
    int rc = key_call(registry, REG_LOOKUP, key, len, 0, &m);
    if (rc) {
        hy_msg_free(m);
        return rc;
    }
    if (m->size % sizeof(struct hy_registry_entry)) {
        hy_msg_free(m);
        return HY_EINVAL;
    }
    *out = m;
    return 0;
}

int hy_registry_lookup(const char *registry, const void *key, size_t len,
                       struct hy_registry_entry *out, size_t max, size_t *count)
{
    if (!out && max)
        return HY_EINVAL;
    struct hy_msg *m;
    int rc = fetch(registry, key, len, &m);
    if (rc)
        return rc;
    size_t n = m->size / sizeof(struct hy_registry_entry);
    if (count)
        *count = n;
    if (max)
        memcpy(out, m->data, (n < max ? n : max) * sizeof(*out));
    hy_msg_free(m);
    return 0;
}

int hy_registry_whereis(const char *registry, const void *key, size_t len, hy_pid *pid)
{
    if (!pid)
        return HY_EINVAL;
    struct hy_registry_entry e;
    size_t n = 0;
    int rc = hy_registry_lookup(registry, key, len, &e, 1, &n);
    if (rc)
        return rc;
    if (!n)
        return HY_ENOENT;
    *pid = e.pid;
    return 0;
}

int hy_registry_dispatch(const char *registry, const void *key, size_t len, uint64_t tag,
                         const void *data, size_t dlen, size_t *sent)
{
    if ((tag & HY_TAG_SYSTEM) || (!data && dlen))
        return HY_EINVAL;
    struct hy_msg *m;
    int rc = fetch(registry, key, len, &m);
    if (rc)
        return rc;
    size_t n = m->size / sizeof(struct hy_registry_entry);
    size_t done = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct hy_registry_entry e;
        memcpy(&e, m->data + i * sizeof(e), sizeof(e));
        rc = hy_send(e.pid, tag, data, dlen);
        if (rc == 0)
            done++;
    }
    hy_msg_free(m);
    if (sent)
        *sent = done;
    return rc;
}

int hy_registry_lookup_or_start(const char *registry, const void *key, size_t len, hy_pid *pid)
{
    if (!pid)
        return HY_EINVAL;
    struct hy_msg *m = NULL;
    int rc = key_call(registry, REG_LOOKUP_OR_START, key, len, 0, &m);
    if (m) {
        if (rc == 0)
            *pid = msg_pid(m);
        hy_msg_free(m);
    }
    return rc;
}

int hy_registry_count(const char *registry, size_t *count)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    if (!name_ok(registry) || !count)
        return HY_EINVAL;
    size_t total = 0;
    for (unsigned i = 0; i < hy_shard_count(); i++) {
        hy_pid pid;
        int rc = part_pid(registry, i, &pid);
        if (rc)
            return rc;
        struct hy_msg *m;
        rc = hy_gen_server_call(pid, REG_COUNT, NULL, 0, HY_INFINITY, &m, NULL);
        if (rc)
            return rc;
        uint64_t n = 0;
        if (m->size == sizeof(n))
            memcpy(&n, m->data, sizeof(n));
        hy_msg_free(m);
        total += (size_t)n;
    }
    *count = total;
    return 0;
}
