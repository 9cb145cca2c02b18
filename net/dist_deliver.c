/* Messages that arrive from another node: checked, then delivered into
 * the runtime. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "signals.h"

/* ---- receiving ----------------------------------------------------------------------- */

static bool kind_allowed(unsigned k)
{
    switch (k) {
    case HY_K_MSG:
    case HY_K_EXIT:
    case HY_K_LINK:
    case HY_K_UNLINK:
    case HY_K_UNLINK_ACK:
    case HY_K_MONITOR:
    case HY_K_DEMONITOR:
    case HY_K_DOWN:
    case HY_K_ALIAS_MSG:
    case HY_K_DIST_NAME:
    case HY_K_DIST_SPAWN:
    case HY_K_SPAWN_REPLY:
        return true;
    default:
        return false; /* runtime-internal kinds (spawn, timers, ...) never cross nodes */
    }
}

int hy__name_lookup(const char *name, hy_pid *out);

/* The payload of a signal from another node is a struct its handler copies
 * without looking at the size (a node trusts its own shards): check it here,
 * and make its strings end and its flags be flags. */
static bool payload_ok(const struct hy__chan *ch, struct hy_msg *m)
{
    switch (m->kind) {
    case HY_K_EXIT: {
        if (m->size != sizeof(struct hy_reason))
            return false;
        m->data[offsetof(struct hy_reason, text) + HY_REASON_TEXT_MAX - 1] = '\0';
        return true;
    }
    case HY_K_UNLINK:
    case HY_K_UNLINK_ACK:
        return m->size == sizeof(uint64_t);
    case HY_K_MONITOR: /* optionally a name, NUL included */
        return m->size == 0 || (m->size <= HY_NAME_MAX && m->data[m->size - 1] == '\0');
    case HY_K_DOWN: {
        if (m->size != sizeof(struct hy_down_info))
            return false;
        m->data[offsetof(struct hy_down_info, name) + HY_NAME_MAX - 1] = '\0';
        m->data[offsetof(struct hy_down_info, reason) + offsetof(struct hy_reason, text) +
                HY_REASON_TEXT_MAX - 1] = '\0';
        return true;
    }
    case HY_K_SPAWN_REPLY: {
        if (m->size != sizeof(struct hy__spawn_reply))
            return false;
        uint8_t *link = m->data + offsetof(struct hy__spawn_reply, link);
        uint8_t *mon = m->data + offsetof(struct hy__spawn_reply, monitor);
        *link = *link != 0;
        *mon = *mon != 0;
        int rc;
        hy_pid pid;
        memcpy(&rc, m->data + offsetof(struct hy__spawn_reply, rc), sizeof(rc));
        memcpy(&pid, m->data + offsetof(struct hy__spawn_reply, pid), sizeof(pid));
        /* a process spawned there is a process of that node */
        return rc != 0 || (hy_pid_node(pid) == hy__dist.peers[ch->pi].node_id &&
                           hy_pid_shard(pid) < HY_MAX_SHARDS);
    }
    default:
        return true;
    }
}

void hy__dist_deliver(struct hy__chan *ch, struct hy_msg *m, const struct hy_wire_msg *wm)
{
    struct hy_shard *sh = hy__shard();
    struct hy__ep *ep = ch->ep;
    /* (a sender's shard beyond HY_MAX_SHARDS could not be answered) */
    if (!kind_allowed(wm->kind) || hy_pid_node(wm->to) != hy__rt.node_id ||
        hy_pid_node(wm->from) != hy__dist.peers[ch->pi].node_id ||
        hy_pid_shard(wm->from) >= HY_MAX_SHARDS) {
        hy__dist_count(&ep->st.malformed, 1);
        hy__msg_free_local(sh, m);
        return;
    }
    m->tag = wm->tag;
    m->from = wm->from;
    m->to = wm->to;
    m->ref = wm->ref;
    m->aux = wm->aux & 1u; /* only the link flag has a meaning across nodes */
    m->kind = wm->kind;
    if (m->kind == HY_K_LINK)
        m->aux = 0; /* synchronous link acks are a same-node protocol */
    if (!payload_ok(ch, m)) {
        hy__dist_count(&ep->st.malformed, 1);
        hy__msg_free_local(sh, m);
        return;
    }
    hy__dist_count(&ep->st.msgs_rx, 1);
    if (m->kind == HY_K_DIST_NAME) {
        char name[HY_NAME_MAX];
        hy_pid pid;
        if (m->size < HY_NAME_MAX) {
            hy__dist_count(&ep->st.malformed, 1);
            hy__msg_free_local(sh, m);
            return;
        }
        memcpy(name, m->data, HY_NAME_MAX);
        name[HY_NAME_MAX - 1] = '\0';
        if (hy__name_lookup(name, &pid) != 0) {
            hy__msg_free_local(sh, m); /* no such name: dropped, as a send to a dead pid */
            return;
        }
        memmove(m->data, m->data + HY_NAME_MAX, m->size - HY_NAME_MAX);
        m->size -= HY_NAME_MAX;
        m->kind = HY_K_MSG;
        m->to = pid;
        hy__route(sh, m);
        return;
    }
    if (m->kind == HY_K_DIST_SPAWN) {
        hy__dist_spawn_here(sh, m);
        return;
    }
    if (m->kind == HY_K_MONITOR && hy_pid_slot(m->to) == 0 && hy_pid_gen(m->to) == 0 &&
        m->size > 0) {
        /* a monitor of {name, node}: resolved here, on arrival; an unknown
         * name is answered DOWN noproc (with the name) by the stand-in */
        char name[HY_NAME_MAX];
        size_t k = m->size < HY_NAME_MAX ? m->size : HY_NAME_MAX;
        memcpy(name, m->data, k);
        name[k - 1] = '\0';
        hy_pid pid;
        if (hy__name_lookup(name, &pid) == 0)
            m->to = pid;
    }
    if (hy_pid_shard(m->to) == sh->id)
        hy__dispatch(sh, m); /* a stale creation is looked up and answered as dead */
    else
        hy__route(sh, m);
}

