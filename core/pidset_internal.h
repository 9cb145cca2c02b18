/* A set of pids: open addressing with linear probing, at most half full,
 * deletion by backward shift (no tombstones), so adding, finding and
 * removing cost O(1) on average however many pids it holds. Used where a
 * process tracks many others (a TCP server's manager and its connection
 * handlers). Empty slots hold HY_PID_NONE, which is never a member.
 *
 * Ownership: the set owns its table; hy__pidset_fini frees it. Not
 * thread-safe: one process (or thread) uses a set.
 * Context: anywhere (it allocates with malloc). */
#ifndef HYDRA_CORE_PIDSET_INTERNAL_H
#define HYDRA_CORE_PIDSET_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "errors.h"
#include "pid.h"

struct hy__pidset {
    hy_pid *slot;
    size_t n;   /* members */
    size_t cap; /* slots: 0 or a power of two */
};

static inline size_t hy__pidset_home(const struct hy__pidset *s, hy_pid p)
{
    uint64_t h = (p.hi ^ (p.lo * UINT64_C(0x9e3779b97f4a7c15))) * UINT64_C(0xbf58476d1ce4e5b9);
    return (size_t)(h >> 32) & (s->cap - 1);
}

/* the slot holding p, or the empty slot where it would go (cap > 0) */
static inline size_t hy__pidset_find(const struct hy__pidset *s, hy_pid p)
{
    size_t i = hy__pidset_home(s, p);
    while (!hy_pid_is_none(s->slot[i]) && !hy_pid_eq(s->slot[i], p))
        i = (i + 1) & (s->cap - 1);
    return i;
}

/* True when p is a member. */
static inline bool hy__pidset_has(const struct hy__pidset *s, hy_pid p)
{
    return s->cap && !hy_pid_is_none(p) && hy_pid_eq(s->slot[hy__pidset_find(s, p)], p);
}

/* Adds p (a member already: no change). 0, HY_EINVAL for HY_PID_NONE,
 * HY_ENOMEM when the table cannot grow (the set is unchanged). */
static inline int hy__pidset_add(struct hy__pidset *s, hy_pid p)
{
    if (hy_pid_is_none(p))
        return HY_EINVAL;
    if (2 * (s->n + 1) > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        hy_pid *t = (hy_pid *)calloc(nc, sizeof(*t)); /* all HY_PID_NONE */
        if (!t)
            return HY_ENOMEM;
        struct hy__pidset old = *s;
        s->slot = t;
        s->cap = nc;
        for (size_t i = 0; i < old.cap; i++)
            if (!hy_pid_is_none(old.slot[i]))
                s->slot[hy__pidset_find(s, old.slot[i])] = old.slot[i];
        free(old.slot);
    }
    size_t i = hy__pidset_find(s, p);
    if (hy_pid_is_none(s->slot[i])) {
        s->slot[i] = p;
        s->n++;
    }
    return 0;
}

/* Removes p; true when it was a member. */
static inline bool hy__pidset_del(struct hy__pidset *s, hy_pid p)
{
    if (!s->cap || hy_pid_is_none(p))
        return false;
    size_t m = s->cap - 1, i = hy__pidset_find(s, p);
    if (hy_pid_is_none(s->slot[i]))
        return false;
    /* backward shift: a later entry of the run moves into the hole unless
     * its home lies cyclically in (hole, its slot] */
    for (size_t j = (i + 1) & m; !hy_pid_is_none(s->slot[j]); j = (j + 1) & m) {
        size_t h = hy__pidset_home(s, s->slot[j]);
        if (((j - h) & m) >= ((j - i) & m)) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    s->slot[i] = HY_PID_NONE;
    s->n--;
    return true;
}

/* Frees the table; the set is empty and usable again. */
static inline void hy__pidset_fini(struct hy__pidset *s)
{
    free(s->slot);
    *s = (struct hy__pidset){0};
}

#endif
