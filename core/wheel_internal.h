/* Per-shard hierarchical timer wheel.
 *
 * A standalone data structure that knows nothing of processes: the user embeds
 * a struct hy_wtimer in its own timer record (container_of in the callback)
 * and the shard embeds a struct hy_wheel. Nothing is allocated here. A wheel
 * belongs to one shard and is not thread-safe.
 *
 * Resolution. Time is absolute monotonic nanoseconds, grouped in ticks of
 * 1 << HY_WHEEL_TICK_SHIFT = 1024 ns. Level l (0..5) has 64 slots of 64^l
 * ticks each, so level 0 spans 65.5 us at 1 us resolution and level 5 spans
 * 2^36 ticks (about 19.5 hours); timers further away wait on an overflow list
 * that is re-examined once the wheel reaches their 19.5-hour period. Expiry is
 * exact: a timer fires in the first hy__wheel_expire call whose now_ns is
 * >= its expire_ns, and never before (the current tick's slot is checked
 * timer by timer). Callbacks of one call run in order of expiry tick; timers
 * of the same tick, and timers that were already due when added, run in
 * unspecified order.
 *
 * Placement. A timer goes to the level of the highest 6-bit group in which its
 * expiry tick differs from the wheel's current tick, at the slot given by that
 * group. Hence within a level the occupied slots all lie after the current
 * one (no wrap-around), every timer of level l expires before every timer of
 * level l+1, and the earliest slot is the lowest set bit of the lowest
 * non-empty level's 64-bit occupancy map. When the wheel reaches the start of
 * a higher-level slot, that slot is cascaded: its timers move to lower
 * levels (at most 6 moves per timer, plus one each time the overflow list is
 * re-examined).
 *
 * Complexity. add and del are O(1). hy__wheel_next_expiry is O(levels)
 * (plus the timers of the current tick, see there).
 * hy__wheel_expire costs O(levels) when nothing is due, whatever the jump of
 * now (the wheel moves from one occupied slot to the next through the
 * occupancy maps, never tick by tick), plus O(1) per timer fired or cascaded
 * and one look at each not-yet-due timer sharing the current 1 us tick.
 */
#ifndef HY_CORE_WHEEL_INTERNAL_H
#define HY_CORE_WHEEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HY_WHEEL_TICK_SHIFT 10 /* 1 tick = 1024 ns */
#define HY_WHEEL_SLOT_BITS  6
#define HY_WHEEL_SLOTS      (1u << HY_WHEEL_SLOT_BITS)
#define HY_WHEEL_LEVELS     6

/* Indices into hy_wheel.lists after the level slots (private to wheel.c). */
#define HY__WHEEL_OVERFLOW (HY_WHEEL_LEVELS * HY_WHEEL_SLOTS) /* beyond level 5 */
#define HY__WHEEL_DUE      (HY__WHEEL_OVERFLOW + 1)           /* already due when added */
#define HY__WHEEL_FIRING   (HY__WHEEL_OVERFLOW + 2)           /* being run by expire */
#define HY__WHEEL_NLISTS   (HY__WHEEL_OVERFLOW + 3)

/* A timer, embedded by the user in its own record. Initialise it with
 * hy__wtimer_init (or zero it) before first use; between uses the wheel
 * leaves it disarmed, so it can be re-added straight away. */
struct hy_wtimer {
    struct hy_wtimer *next, **pprev; /* wheel's links; pprev == NULL when not armed */
    uint64_t expire_ns;              /* absolute monotonic ns */
};

/* A wheel; embed it (about 3 KB) in the shard. Fields are private. */
struct hy_wheel {
    uint64_t tick;                      /* current tick: every timer of an earlier tick has fired */
    uint64_t now_ns;                    /* latest now_ns seen (init or expire) */
    uint64_t due_min;                   /* while DUE is non-empty: <= its expiries */
    uint64_t firing_min;                /* while FIRING is non-empty: <= its expiries */
    uint64_t overflow_min;              /* while overflow is non-empty: <= its expiry ticks */
    unsigned count;                     /* armed timers */
    bool expiring;                      /* inside hy__wheel_expire (re-entry check) */
    uint64_t occupied[HY_WHEEL_LEVELS]; /* bit s of level l: lists[l * 64 + s] non-empty */
    struct hy_wtimer *lists[HY__WHEEL_NLISTS];
};

/* Marks t as not armed. Equivalent to zeroing it. Context: any. */
static inline void hy__wtimer_init(struct hy_wtimer *t)
{
    t->next = NULL;
    t->pprev = NULL;
    t->expire_ns = 0;
}

/* Whether t is armed (added and neither fired nor deleted). */
static inline bool hy__wtimer_armed(const struct hy_wtimer *t)
{
    return t->pprev != NULL;
}

/* Initialises an empty wheel whose clock starts at now_ns. w is borrowed;
 * there is no fini (an empty wheel holds nothing; timers still armed are
 * simply forgotten). Context: the owning shard. */
void hy__wheel_init(struct hy_wheel *w, uint64_t now_ns);

/* Arms t (borrowed: it must stay alive and in place until it fires or is
 * deleted) to expire at expire_ns (absolute). A time at or before the latest
 * now_ns given to the wheel fires at the next hy__wheel_expire call, never in
 * the one in progress (so a callback that re-adds its timer in the past
 * cannot loop). t must not be armed (checked by assert). O(1).
 * Context: the owning shard, including from an expire callback. */
void hy__wheel_add(struct hy_wheel *w, struct hy_wtimer *t, uint64_t expire_ns);

/* Disarms t; a no-op if t is not armed. After it returns t will not fire and
 * the wheel holds no reference to it. O(1). Context: the owning shard,
 * including from an expire callback (for any timer). */
void hy__wheel_del(struct hy_wheel *w, struct hy_wtimer *t);

/* Advances the wheel to now_ns and calls cb(t, arg) for every timer armed at
 * the call's start whose expire_ns <= now_ns, in order of expiry tick. Each
 * timer is disarmed before its callback, which may add or delete any timers
 * of this wheel, including re-adding t. Timers added by callbacks never fire
 * in the same call (one added with expire_ns <= now_ns waits for the next
 * call). A timer deleted by a callback before its turn does not fire.
 * now_ns should not decrease; a smaller value counts as the latest one
 * seen. Returns how many callbacks ran. Not re-entrant (a callback must not
 * call hy__wheel_expire on the same wheel). Cost: see the file comment; cheap
 * when nothing is due. Context: the owning shard. */
unsigned hy__wheel_expire(struct hy_wheel *w, uint64_t now_ns,
                          void (*cb)(struct hy_wtimer *t, void *arg), void *arg);

/* A lower bound of the earliest expire_ns among armed timers, UINT64_MAX when
 * none: never later than the true earliest, possibly earlier (a value at or
 * before the current time means "call hy__wheel_expire now"). It is within
 * one tick for timers on level 0 but may be as early as the start of the
 * slot for higher levels (or of the 19.5-hour period for the overflow list),
 * so a shard that sleeps until it and then calls hy__wheel_expire wakes at
 * most HY_WHEEL_LEVELS + 2 times for a lone timer, however far. Between
 * expire calls it is always after the latest now_ns unless a timer is due.
 * O(levels), plus a look at the timers sharing the current 1 us tick.
 * Context: the owning shard. */
uint64_t hy__wheel_next_expiry(struct hy_wheel *w);

/* Number of armed timers (including due ones not yet run). O(1). */
unsigned hy__wheel_count(const struct hy_wheel *w);

#endif /* HY_CORE_WHEEL_INTERNAL_H */
