/* Spawning a registered function for another node. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* ---- spawning for other nodes ------------------------------------------------------ */

#define MAX_FNS 256

struct fn_ent {
    char name[HY_DIST_NAME_MAX];
    hy_proc_fn fn;
};

static struct fn_ent fns[MAX_FNS];
static size_t nfns;

struct spawn_req {
    char name[HY_DIST_NAME_MAX];
    uint32_t shard;
    uint8_t link, monitor;
};

int hy_dist_register_fn(const char *name, hy_proc_fn fn)
{
    if (!name || !*name || strlen(name) >= HY_DIST_NAME_MAX || !fn)
        return HY_EINVAL;
    for (size_t i = 0; i < nfns; i++)
        if (strcmp(fns[i].name, name) == 0)
            return HY_EEXIST;
    if (nfns == MAX_FNS)
        return HY_ENOSPC;
    strcpy(fns[nfns].name, name);
    fns[nfns].fn = fn;
    nfns++;
    return 0;
}

static hy_proc_fn find_fn(const char *name)
{
    for (size_t i = 0; i < nfns; i++)
        if (strcmp(fns[i].name, name) == 0)
            return fns[i].fn;
    return NULL;
}

/* A spawn request from another node, on the shard it asked for. */
void hy__dist_spawn_here(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy__spawn_reply rep = {.rc = HY_EINVAL};
    struct spawn_req rq;
    if (m->size >= sizeof(rq)) {
        memcpy(&rq, m->data, sizeof(rq));
        rq.name[HY_DIST_NAME_MAX - 1] = '\0';
        hy_proc_fn fn = find_fn(rq.name);
        rep.link = rq.link;
        rep.monitor = rq.monitor;
        if (!fn) {
            rep.rc = HY_ESRCH;
        } else {
            struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
            struct hy_proc *child = NULL;
            size_t alen = m->size - sizeof(rq);
            rep.rc = hy__proc_create(sh, fn, NULL, &o, m->data + sizeof(rq), alen, &rep.pid,
                                     &child);
            if (rep.rc == 0 && (rq.link || rq.monitor))
                hy__spawn_install_child(sh, child, rq.link, rq.monitor, m->from, m->ref);
        }
    }
    struct hy_msg *r;
    if (hy__msg_alloc(sh, sizeof(rep), &r) == 0) {
        memcpy(r->data, &rep, sizeof(rep));
        r->kind = HY_K_SPAWN_REPLY;
        r->tag = HY_TAG_SPAWN_REPLY;
        r->ref = m->ref;
        r->to = m->from;
        r->from = rep.rc == 0 ? rep.pid : m->to; /* a pid of this node either way */
        hy__route(sh, r);
    }
    hy__msg_free_local(sh, m);
}

int hy_dist_spawn(uint32_t node, const char *fn_name, const void *arg, size_t len,
                  const struct hy_dist_spawn_opts *opts, hy_pid *out)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    struct hy_proc *p = sh->current;
    if (!fn_name || !*fn_name || strlen(fn_name) >= HY_DIST_NAME_MAX || (len && !arg))
        return HY_EINVAL;
    if (!atomic_load(&hy__dist.started))
        return HY_ENOTSTARTED;
    if (hy__dist_peer_index(node) < 0)
        return HY_ENOENT;
    struct hy_dist_spawn_opts def = {0};
    if (!opts)
        opts = &def;
    if (opts->shard < 0 || opts->shard >= HY_MAX_SHARDS)
        return HY_EINVAL;
    struct spawn_req rq;
    memset(&rq, 0, sizeof(rq));
    strcpy(rq.name, fn_name);
    rq.shard = (uint32_t)opts->shard;
    rq.link = opts->link;
    rq.monitor = opts->monitor;
    struct hy_msg *m;
    int rc = hy__msg_alloc(sh, sizeof(rq) + len, &m);
    if (rc)
        return rc;
    memcpy(m->data, &rq, sizeof(rq));
    if (len)
        memcpy(m->data + sizeof(rq), arg, len);
    hy_ref ref;
    hy_ref_make(&ref);
    m->kind = HY_K_DIST_SPAWN;
    m->ref = ref;
    m->to = hy_pid_make(node, 0, (uint16_t)opts->shard, 0, 0);
    hy__route(sh, m);
    struct hy_msg *r;
    p->defer_exit++;
    rc = hy_recv_ref(ref, &r, opts->timeout_ns ? opts->timeout_ns : (int64_t)hy__dist.cfg.down_after_ns);
    p->defer_exit--;
    if (rc)
        return rc;
    struct hy__spawn_reply rep;
    memcpy(&rep, r->data, sizeof(rep));
    hy_msg_free(r);
    if (rep.rc == 0) {
        if (out)
            *out = rep.pid;
        if (opts->monitor && opts->monitor_ref)
            *opts->monitor_ref = ref;
    }
    if (p->exit_pending && !p->defer_exit)
        hy__proc_exit_current(p, p->exit_reason_pending);
    return rep.rc;
}

