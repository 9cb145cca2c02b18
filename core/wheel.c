/* Per-shard hierarchical timer wheel; see wheel_internal.h for the design. */
#include "wheel_internal.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define SHIFT     HY_WHEEL_TICK_SHIFT
#define BITS      HY_WHEEL_SLOT_BITS
#define SLOT_MASK ((uint64_t)HY_WHEEL_SLOTS - 1)
#define NSLOTS    (HY_WHEEL_LEVELS * HY_WHEEL_SLOTS)
#define TOP_BITS  (HY_WHEEL_LEVELS * BITS) /* ticks spanned by the levels: 2^36 */

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void push(struct hy_wtimer **head, struct hy_wtimer *t)
{
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
}

static void unlink_timer(struct hy_wtimer *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

/* Links t into the levels or the overflow list relative to w->tick, which
 * must not be after t's tick. */
static void place(struct hy_wheel *w, struct hy_wtimer *t)
{
    uint64_t e = t->expire_ns >> SHIFT;

    assert(e >= w->tick);
    /* | SLOT_MASK makes same-period ticks (xor < 64) land on level 0. */
    unsigned level = (63u - (unsigned)__builtin_clzll((e ^ w->tick) | SLOT_MASK)) / BITS;
    if (level >= HY_WHEEL_LEVELS) {
        /* Restart the bound when the list was empty: deletions may have
         * left it at a time the wheel has since passed. */
        struct hy_wtimer **head = &w->lists[HY__WHEEL_OVERFLOW];
        w->overflow_min = *head ? min_u64(w->overflow_min, e) : e;
        push(head, t);
        return;
    }
    unsigned slot = (unsigned)((e >> (level * BITS)) & SLOT_MASK);
    w->occupied[level] |= UINT64_C(1) << slot;
    push(&w->lists[level * HY_WHEEL_SLOTS + slot], t);
}

void hy__wheel_init(struct hy_wheel *w, uint64_t now_ns)
{
    *w = (struct hy_wheel){
        .tick = now_ns >> SHIFT,
        .now_ns = now_ns,
        .due_min = UINT64_MAX,
        .firing_min = UINT64_MAX,
        .overflow_min = UINT64_MAX,
    };
}

void hy__wheel_add(struct hy_wheel *w, struct hy_wtimer *t, uint64_t expire_ns)
{
    assert(!hy__wtimer_armed(t));
    t->expire_ns = expire_ns;
    w->count++;
    if (expire_ns <= w->now_ns) {
        /* A list apart, so that an expire in progress does not run it. */
        struct hy_wtimer **head = &w->lists[HY__WHEEL_DUE];
        w->due_min = *head ? min_u64(w->due_min, expire_ns) : expire_ns;
        push(head, t);
        return;
    }
    place(w, t);
}

void hy__wheel_del(struct hy_wheel *w, struct hy_wtimer *t)
{
    if (!hy__wtimer_armed(t))
        return;
    /* Only the last timer of a slot empties it, and then pprev points at the
     * slot's head in w->lists: that is how we find which bit to clear. */
    uintptr_t p = (uintptr_t)t->pprev;
    uintptr_t lo = (uintptr_t)&w->lists[0];
    if (t->next == NULL && p >= lo && p < (uintptr_t)&w->lists[NSLOTS]) {
        size_t idx = (p - lo) / sizeof w->lists[0];
        w->occupied[idx / HY_WHEEL_SLOTS] &= ~(UINT64_C(1) << (idx % HY_WHEEL_SLOTS));
    }
    unlink_timer(t);
    w->count--;
}

/* Moves list idx to the FIRING list, whose expiries are >= lower_ns, then
 * runs the due ones and puts the others back. Callbacks may delete timers of
 * the FIRING list (del finds it through pprev like any list). */
static unsigned run_list(struct hy_wheel *w, unsigned idx, uint64_t lower_ns,
                         void (*cb)(struct hy_wtimer *, void *), void *arg)
{
    struct hy_wtimer **firing = &w->lists[HY__WHEEL_FIRING];
    struct hy_wtimer *t;
    unsigned n = 0;

    assert(*firing == NULL);
    *firing = w->lists[idx];
    w->lists[idx] = NULL;
    (*firing)->pprev = firing;
    if (idx < NSLOTS)
        w->occupied[idx / HY_WHEEL_SLOTS] &= ~(UINT64_C(1) << (idx % HY_WHEEL_SLOTS));
    w->firing_min = lower_ns;
    while ((t = *firing) != NULL) {
        unlink_timer(t);
        if (t->expire_ns <= w->now_ns) {
            w->count--;
            n++;
            cb(t, arg);
        } else {
            place(w, t); /* same tick as now, a few ns later */
        }
    }
    return n;
}

/* Re-places every timer of list idx relative to the (just advanced) tick. */
static void cascade(struct hy_wheel *w, unsigned idx)
{
    struct hy_wtimer *t = w->lists[idx];

    w->lists[idx] = NULL;
    if (idx < NSLOTS)
        w->occupied[idx / HY_WHEEL_SLOTS] &= ~(UINT64_C(1) << (idx % HY_WHEEL_SLOTS));
    else
        w->overflow_min = UINT64_MAX;
    while (t != NULL) {
        struct hy_wtimer *next = t->next;
        t->next = NULL;
        t->pprev = NULL;
        place(w, t);
        t = next;
    }
}

/* The earliest occupied position at or after w->tick: sets *level (LEVELS for
 * the overflow list) and returns its first tick, or UINT64_MAX when empty. */
static uint64_t next_event(const struct hy_wheel *w, unsigned *level)
{
    for (unsigned l = 0; l < HY_WHEEL_LEVELS; l++) {
        if (w->occupied[l] == 0)
            continue;
        unsigned slot = (unsigned)__builtin_ctzll(w->occupied[l]);
        uint64_t period = ~((UINT64_C(1) << ((l + 1) * BITS)) - 1);
        *level = l;
        return (w->tick & period) | ((uint64_t)slot << (l * BITS));
    }
    if (w->lists[HY__WHEEL_OVERFLOW] == NULL)
        return UINT64_MAX;
    /* Jump straight to the top-level period of the earliest overflow timer
     * (overflow_min may be early after deletions, never past a period in
     * which an overflow timer lies, and is always after the current one). */
    uint64_t at = (w->overflow_min >> TOP_BITS) << TOP_BITS;
    assert(at > w->tick);
    *level = HY_WHEEL_LEVELS;
    return at;
}

unsigned hy__wheel_expire(struct hy_wheel *w, uint64_t now_ns,
                          void (*cb)(struct hy_wtimer *t, void *arg), void *arg)
{
    unsigned n = 0;

    assert(!w->expiring);
    if (now_ns < w->now_ns)
        now_ns = w->now_ns;
    w->now_ns = now_ns;
    w->expiring = true;

    uint64_t target = now_ns >> SHIFT;
    if (w->lists[HY__WHEEL_DUE] != NULL)
        n += run_list(w, HY__WHEEL_DUE, w->due_min, cb, arg);
    for (;;) {
        unsigned level;
        uint64_t at = next_event(w, &level);
        if (at > target)
            break;
        assert(at >= w->tick);
        w->tick = at;
        if (level == 0) {
            unsigned slot = (unsigned)(at & SLOT_MASK);
            n += run_list(w, slot, at << SHIFT, cb, arg);
            /* Anything still in the slot shares now's tick but is later. */
            if (at == target)
                break;
        } else if (level < HY_WHEEL_LEVELS) {
            unsigned slot = (unsigned)((at >> (level * BITS)) & SLOT_MASK);
            cascade(w, level * HY_WHEEL_SLOTS + slot);
        } else {
            cascade(w, HY__WHEEL_OVERFLOW);
        }
    }
    /* No occupied position lies in (tick, target], so jumping keeps every
     * timer on the level its distance calls for. */
    if (w->tick < target)
        w->tick = target;
    w->expiring = false;
    return n;
}

uint64_t hy__wheel_next_expiry(struct hy_wheel *w)
{
    uint64_t best = UINT64_MAX;
    unsigned level;

    /* The bounds of these lists may be early (deletions) but not stale:
     * each restarts when its list goes from empty to non-empty. */
    if (w->lists[HY__WHEEL_DUE] != NULL)
        best = w->due_min;
    if (w->lists[HY__WHEEL_FIRING] != NULL)
        best = min_u64(best, w->firing_min);
    uint64_t at = next_event(w, &level);

    if (at == UINT64_MAX)
        return best;
    if (level > 0 || at != w->tick)
        return min_u64(best, at << SHIFT);
    /* The current tick's slot: its timers are a few ns after now (or, from a
     * callback, due later in this call); the tick start would say "due now"
     * over and over, so look at them. */
    for (const struct hy_wtimer *t = w->lists[at & SLOT_MASK]; t != NULL; t = t->next)
        best = min_u64(best, t->expire_ns);
    return best;
}

unsigned hy__wheel_count(const struct hy_wheel *w)
{
    return w->count;
}
