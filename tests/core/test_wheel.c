/* Tests of core/wheel.c: the per-shard hierarchical timer wheel, checked
 * against a brute-force reference (a flat array of expiry times). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wheel_internal.h"

#define US  UINT64_C(1000)
#define MS  (1000 * US)
#define SEC (1000 * MS)
#define DAY (86400 * SEC)

/* ---- simple callbacks ---- */

struct rec {
    struct hy_wtimer wt;
    unsigned fired;
    uint64_t fired_at; /* now_ns of the call that fired it */
};

static uint64_t cb_now; /* now_ns of the expire call in progress */

static void count_cb(struct hy_wtimer *t, void *arg)
{
    struct rec *r = (struct rec *)((char *)t - offsetof(struct rec, wt));

    assert_false(hy__wtimer_armed(t));
    assert_true(t->expire_ns <= cb_now);
    r->fired++;
    r->fired_at = cb_now;
    if (arg)
        (*(unsigned *)arg)++;
}

static unsigned expire(struct hy_wheel *w, uint64_t now)
{
    cb_now = now;
    return hy__wheel_expire(w, now, count_cb, NULL);
}

/* ---- brute-force reference ---- */

struct rtimer {
    struct hy_wtimer wt;
    uint64_t expire;      /* reference copy of the expiry */
    uint64_t added_epoch; /* expire calls started before it was added */
    bool due_at_add;      /* added with expire <= now: runs first, any order */
    bool armed;
};

struct sim {
    struct hy_wheel w;
    struct rtimer *t;
    unsigned n;
    unsigned armed;
    uint64_t now;
    uint64_t epoch;     /* expire calls started so far */
    uint64_t last_tick; /* tick of the previous callback of this call */
    bool in_order;      /* a timer not due when added has run in this call */
    unsigned fired;     /* callbacks in this call */
    uint64_t total_fired;
    uint64_t rng;
};

static uint64_t rnd(struct sim *s)
{
    /* xorshift64*, fixed seed: failures replay exactly. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * UINT64_C(2685821657736338717);
}

static uint64_t rnd_below(struct sim *s, uint64_t n)
{
    return n ? rnd(s) % n : 0;
}

/* An expiry around now: past, same tick, near, or far beyond the levels. */
static uint64_t rnd_expiry(struct sim *s)
{
    uint64_t r = rnd_below(s, 100);

    if (r < 5)
        return s->now - rnd_below(s, s->now < MS ? s->now + 1 : MS);
    if (r < 10)
        return s->now;
    if (r < 40)
        return s->now + rnd_below(s, 4096);
    if (r < 65)
        return s->now + rnd_below(s, 100 * US);
    if (r < 80)
        return s->now + rnd_below(s, 50 * MS);
    if (r < 95)
        return s->now + rnd_below(s, 2000 * SEC);
    return s->now + rnd_below(s, 30 * DAY);
}

static uint64_t rnd_advance(struct sim *s)
{
    uint64_t r = rnd_below(s, 100);

    if (r < 45)
        return rnd_below(s, 2048);
    if (r < 75)
        return rnd_below(s, 100 * US);
    if (r < 90)
        return rnd_below(s, 20 * MS);
    if (r < 97)
        return rnd_below(s, 100 * SEC);
    return rnd_below(s, 2 * DAY);
}

static void sim_add(struct sim *s, unsigned i, uint64_t expire_ns)
{
    struct rtimer *rt = &s->t[i];

    assert_false(rt->armed);
    hy__wheel_add(&s->w, &rt->wt, expire_ns);
    assert_true(hy__wtimer_armed(&rt->wt));
    rt->armed = true;
    rt->expire = expire_ns;
    rt->added_epoch = s->epoch;
    rt->due_at_add = expire_ns <= s->now;
    s->armed++;
}

static void sim_del(struct sim *s, unsigned i)
{
    struct rtimer *rt = &s->t[i];

    hy__wheel_del(&s->w, &rt->wt); /* also on unarmed ones: a no-op */
    assert_false(hy__wtimer_armed(&rt->wt));
    if (rt->armed) {
        rt->armed = false;
        s->armed--;
    }
}

/* A few random adds and deletes, from outside or inside a callback. */
static void sim_mutate(struct sim *s, unsigned ops)
{
    for (unsigned k = 0; k < ops; k++) {
        unsigned i = (unsigned)rnd_below(s, s->n);
        if (s->t[i].armed && rnd_below(s, 3) == 0)
            sim_del(s, i);
        else if (!s->t[i].armed)
            sim_add(s, i, rnd_expiry(s));
        else
            sim_del(s, (unsigned)rnd_below(s, s->n));
    }
}

static uint64_t sim_true_min(const struct sim *s)
{
    uint64_t m = UINT64_MAX;

    for (unsigned i = 0; i < s->n; i++)
        if (s->t[i].armed && s->t[i].expire < m)
            m = s->t[i].expire;
    return m;
}

static void sim_cb(struct hy_wtimer *t, void *arg)
{
    struct sim *s = arg;
    struct rtimer *rt = (struct rtimer *)((char *)t - offsetof(struct rtimer, wt));
    uint64_t tick = t->expire_ns >> HY_WHEEL_TICK_SHIFT;

    assert_true(rt >= s->t && rt < s->t + s->n);
    assert_true(rt->armed);            /* not deleted, not fired twice */
    assert_false(hy__wtimer_armed(t)); /* disarmed before the callback */
    assert_int_equal(t->expire_ns, rt->expire);
    assert_true(rt->expire <= s->now);       /* never early */
    assert_true(rt->added_epoch < s->epoch); /* not added during this call */
    if (rt->due_at_add) {
        assert_false(s->in_order); /* past-due ones first, in any order */
    } else {
        assert_true(tick >= s->last_tick); /* then in order of expiry tick */
        s->last_tick = tick;
        s->in_order = true;
    }
    rt->armed = false;
    s->armed--;
    s->fired++;
    assert_int_equal(hy__wheel_count(&s->w), s->armed);

    /* Re-arm this timer (possibly in the past), touch others. */
    if (rnd_below(s, 4) == 0)
        sim_add(s, (unsigned)(rt - s->t), rnd_expiry(s));
    if (rnd_below(s, 4) == 0)
        sim_mutate(s, 1 + (unsigned)rnd_below(s, 3));
    /* The bound must hold from inside a callback too. */
    if (rnd_below(s, 16) == 0)
        assert_true(hy__wheel_next_expiry(&s->w) <= sim_true_min(s));
}

/* Everything the reference knows must match the wheel. */
static void sim_check(struct sim *s, bool after_expire)
{
    uint64_t m = UINT64_MAX;

    assert_int_equal(hy__wheel_count(&s->w), s->armed);
    for (unsigned i = 0; i < s->n; i++) {
        struct rtimer *rt = &s->t[i];
        assert_int_equal(hy__wtimer_armed(&rt->wt), rt->armed);
        if (!rt->armed)
            continue;
        if (rt->expire < m)
            m = rt->expire;
        /* Exactness: all that was due at the call's start has fired. */
        if (after_expire && rt->expire <= s->now)
            assert_true(rt->added_epoch == s->epoch);
    }
    uint64_t ne = hy__wheel_next_expiry(&s->w);
    assert_true(ne <= m);
    if (m == UINT64_MAX)
        assert_true(ne == UINT64_MAX);
}

/* Static, so that a failed assertion (a longjmp) leaks nothing. */
static struct sim sim_state;
static struct rtimer sim_pool[8192];

static void sim_run(uint64_t seed, uint64_t start_ns, unsigned n, unsigned steps)
{
    struct sim *s = &sim_state;

    assert_true(n <= sizeof sim_pool / sizeof sim_pool[0]);
    *s = (struct sim){0};
    memset(sim_pool, 0, sizeof sim_pool);
    s->t = sim_pool;
    s->n = n;
    s->rng = seed;
    s->now = start_ns;
    hy__wheel_init(&s->w, start_ns);
    for (unsigned i = 0; i < n; i++)
        hy__wtimer_init(&s->t[i].wt);
    for (unsigned i = 0; i < n * 3 / 4; i++)
        sim_add(s, i, rnd_expiry(s));
    sim_check(s, false);

    for (unsigned step = 0; step < steps; step++) {
        sim_mutate(s, (unsigned)rnd_below(s, 8));
        sim_check(s, false);
        s->now += rnd_advance(s);
        s->epoch++;
        s->last_tick = 0;
        s->in_order = false;
        s->fired = 0;
        unsigned got = hy__wheel_expire(&s->w, s->now, sim_cb, s);
        assert_int_equal(got, s->fired);
        s->total_fired += got;
        sim_check(s, true);
    }
    /* Drain: one call far enough ahead fires everything not re-added. */
    while (s->armed > 0) {
        s->now = sim_true_min(s) + rnd_below(s, 3 * DAY);
        s->epoch++;
        s->last_tick = 0;
        s->in_order = false;
        s->fired = 0;
        unsigned got = hy__wheel_expire(&s->w, s->now, sim_cb, s);
        assert_int_equal(got, s->fired);
        sim_check(s, true);
    }
    assert_int_equal(hy__wheel_count(&s->w), 0);
    assert_true(hy__wheel_next_expiry(&s->w) == UINT64_MAX);
    assert_true(s->total_fired > n); /* the run did exercise firing */
}

static void test_wheel_random_vs_reference(void **state)
{
    (void)state;
    sim_run(UINT64_C(0x9e3779b97f4a7c15), UINT64_C(123456789012345), 4096, 6000);
}

/* Starts just before a 2^46 ns boundary (the span of the top level), so
 * the run crosses top-level periods and moves overflow timers. */
static void test_wheel_random_across_top_boundary(void **state)
{
    (void)state;
    sim_run(UINT64_C(0xdeadbeefcafef00d), (UINT64_C(7) << 46) - 3 * MS, 2048, 6000);
}

/* Many timers, few advances, each mostly small: lots of same-tick work. */
static void test_wheel_random_dense(void **state)
{
    (void)state;
    sim_run(42, 1, 8192, 1500);
}

/* ---- targeted tests ---- */

static void test_wheel_exact_boundary(void **state)
{
    struct hy_wheel w;
    uint64_t now = 1000 * 1024; /* tick-aligned */
    uint64_t cases[] = {
        now + 3,            /* same tick as now */
        now + 1024,         /* next tick */
        now + 5037,         /* a few ticks, unaligned */
        now + 70 * US + 11, /* level 1 */
        now + 300 * MS + 7, /* level 3 */
        now + 3 * DAY + 1,  /* overflow */
        UINT64_MAX,         /* the very end of time */
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rec r = {0};
        hy__wheel_init(&w, now);
        hy__wheel_add(&w, &r.wt, cases[i]);
        assert_true(hy__wheel_next_expiry(&w) <= cases[i]);
        assert_int_equal(expire(&w, cases[i] - 1), 0);
        assert_true(hy__wtimer_armed(&r.wt));
        assert_true(hy__wheel_next_expiry(&w) <= cases[i]);
        assert_int_equal(expire(&w, cases[i]), 1);
        assert_int_equal(r.fired, 1);
        assert_int_equal(hy__wheel_count(&w), 0);
        assert_true(hy__wheel_next_expiry(&w) == UINT64_MAX);
    }
}

static void test_wheel_past_due(void **state)
{
    struct hy_wheel w;
    struct rec r[4] = {0};
    uint64_t now = 5 * SEC + 77;

    (void)state;
    hy__wheel_init(&w, now);
    hy__wheel_add(&w, &r[0].wt, 0);
    hy__wheel_add(&w, &r[1].wt, now / 2);
    hy__wheel_add(&w, &r[2].wt, now); /* exactly now is due */
    hy__wheel_add(&w, &r[3].wt, now + 1);
    assert_int_equal(hy__wheel_count(&w), 4);
    assert_true(hy__wheel_next_expiry(&w) == 0);
    /* Due at the next call, even one that does not advance time. */
    assert_int_equal(expire(&w, now), 3);
    assert_int_equal(r[3].fired, 0);
    assert_true(hy__wheel_next_expiry(&w) <= now + 1);
    assert_true(hy__wheel_next_expiry(&w) > now);
    /* A time going backwards counts as the latest one seen. */
    hy__wheel_add(&w, &r[0].wt, now - 10);
    cb_now = now;
    assert_int_equal(hy__wheel_expire(&w, now - 1000, count_cb, NULL), 1);
    assert_int_equal(r[0].fired, 2);
    assert_int_equal(expire(&w, now + 1), 1);
    assert_int_equal(r[3].fired, 1);
    assert_int_equal(hy__wheel_count(&w), 0);
}

static void test_wheel_del_unarmed(void **state)
{
    struct hy_wheel w;
    struct rec never = {0}, once = {0}, other = {0};

    (void)state;
    hy__wheel_init(&w, 0);
    hy__wheel_del(&w, &never.wt);
    assert_false(hy__wtimer_armed(&never.wt));
    assert_int_equal(hy__wheel_count(&w), 0);

    hy__wheel_add(&w, &once.wt, 10 * US);
    hy__wheel_add(&w, &other.wt, 10 * US);
    hy__wheel_del(&w, &once.wt);
    hy__wheel_del(&w, &once.wt);
    assert_false(hy__wtimer_armed(&once.wt));
    assert_int_equal(hy__wheel_count(&w), 1);
    assert_int_equal(expire(&w, SEC), 1);
    assert_int_equal(once.fired, 0);
    assert_int_equal(other.fired, 1);
    /* After firing, a timer is unarmed: del is again a no-op. */
    hy__wheel_del(&w, &other.wt);
    assert_int_equal(hy__wheel_count(&w), 0);
    assert_true(hy__wheel_next_expiry(&w) == UINT64_MAX);

    /* A deleted past-due timer leaves no "due now" behind (an idle shard
     * would spin on it). */
    hy__wheel_add(&w, &once.wt, 1);
    assert_true(hy__wheel_next_expiry(&w) <= 1);
    hy__wheel_del(&w, &once.wt);
    assert_true(hy__wheel_next_expiry(&w) == UINT64_MAX);
    hy__wheel_add(&w, &once.wt, SEC + 5);
    assert_true(hy__wheel_next_expiry(&w) > 1);

    hy__wheel_del(&w, &once.wt);
    /* Deleting the last timer of a far slot clears its bit: the bound
     * returns to "none" and expire finds nothing. */
    hy__wheel_add(&w, &once.wt, 5 * DAY);
    hy__wheel_add(&w, &other.wt, SEC + 300 * MS);
    hy__wheel_del(&w, &other.wt);
    hy__wheel_del(&w, &once.wt);
    assert_true(hy__wheel_next_expiry(&w) == UINT64_MAX);
    assert_int_equal(expire(&w, 10 * DAY), 0);
}

static void test_wheel_count(void **state)
{
    struct hy_wheel w;
    struct rec r[100];
    unsigned fired = 0;

    (void)state;
    hy__wheel_init(&w, MS);
    for (unsigned i = 0; i < 100; i++) {
        r[i] = (struct rec){0};
        hy__wheel_add(&w, &r[i].wt, MS + (uint64_t)i * 997 * US);
        assert_int_equal(hy__wheel_count(&w), i + 1);
    }
    for (unsigned i = 0; i < 100; i += 3)
        hy__wheel_del(&w, &r[i].wt);
    assert_int_equal(hy__wheel_count(&w), 66);
    cb_now = MS + 50 * 997 * US;
    fired = 0;
    hy__wheel_expire(&w, cb_now, count_cb, &fired);
    /* i in 1..50 not a multiple of 3 */
    assert_int_equal(fired, 34);
    assert_int_equal(hy__wheel_count(&w), 66 - 34);
    assert_int_equal(expire(&w, SEC), 32);
    assert_int_equal(hy__wheel_count(&w), 0);
}

/* Callbacks deleting due and later timers. */
struct killer {
    struct hy_wtimer wt;
    struct hy_wheel *w;
    struct killer *victims[2];
    unsigned fired;
};

static void killer_cb(struct hy_wtimer *t, void *arg)
{
    struct killer *k = (struct killer *)t;

    (void)arg;
    k->fired++;
    for (int i = 0; i < 2; i++)
        if (k->victims[i])
            hy__wheel_del(k->w, &k->victims[i]->wt);
}

static void test_wheel_del_from_callback(void **state)
{
    struct hy_wheel w;
    struct killer a = {.w = &w}, b = {.w = &w}, c = {.w = &w};
    uint64_t t = 10 * MS + 5;

    (void)state;
    hy__wheel_init(&w, 0);
    a.victims[0] = &b, a.victims[1] = &c;
    b.victims[0] = &a, b.victims[1] = &c;
    hy__wheel_add(&w, &a.wt, t);
    hy__wheel_add(&w, &b.wt, t + 1); /* same tick: one kills the other */
    hy__wheel_add(&w, &c.wt, t + 5 * SEC);
    assert_int_equal(hy__wheel_expire(&w, t + 1, killer_cb, NULL), 1);
    assert_int_equal(a.fired + b.fired, 1);
    assert_int_equal(hy__wheel_count(&w), 0);
    assert_true(hy__wheel_next_expiry(&w) == UINT64_MAX);
    assert_int_equal(hy__wheel_expire(&w, 100 * DAY, killer_cb, NULL), 0);
    assert_int_equal(c.fired, 0);
}

/* Overflow timers deleted, the wheel moved past their time, new ones added:
 * a stale record of the deleted ones must not confuse the wheel. */
static void test_wheel_overflow_after_deletes(void **state)
{
    struct hy_wheel w;
    struct rec a = {0}, b = {0}, c = {0};
    uint64_t now = 1 * SEC;

    (void)state;
    hy__wheel_init(&w, now);
    hy__wheel_add(&w, &a.wt, now + 2 * DAY);
    hy__wheel_add(&w, &b.wt, now + 9 * DAY);
    hy__wheel_del(&w, &a.wt);
    assert_true(hy__wheel_next_expiry(&w) <= now + 9 * DAY);
    hy__wheel_del(&w, &b.wt);
    assert_int_equal(expire(&w, now + 5 * DAY), 0);
    now += 5 * DAY;
    hy__wheel_add(&w, &c.wt, now + 3 * DAY);
    assert_true(hy__wheel_next_expiry(&w) > now);
    assert_true(hy__wheel_next_expiry(&w) <= now + 3 * DAY);
    assert_int_equal(expire(&w, now + 3 * DAY - 1), 0);
    assert_int_equal(expire(&w, now + 3 * DAY), 1);
    assert_int_equal(c.fired, 1);
}

/* A timer that re-adds itself at the current time fires once per call. */
struct periodic {
    struct hy_wtimer wt;
    struct hy_wheel *w;
    uint64_t interval;
    unsigned fired;
};

static void periodic_cb(struct hy_wtimer *t, void *arg)
{
    struct periodic *p = (struct periodic *)t;
    uint64_t now = *(uint64_t *)arg;

    p->fired++;
    hy__wheel_add(p->w, &p->wt, now + p->interval);
}

static void test_wheel_readd_from_callback(void **state)
{
    struct hy_wheel w;
    struct periodic zero = {.w = &w, .interval = 0};
    struct periodic tick = {.w = &w, .interval = 1 * US};
    uint64_t now = 1 * SEC;

    (void)state;
    hy__wheel_init(&w, now);
    hy__wheel_add(&w, &zero.wt, now);
    hy__wheel_add(&w, &tick.wt, now + US);
    for (unsigned i = 1; i <= 100; i++) {
        hy__wheel_expire(&w, now, periodic_cb, &now);
        assert_int_equal(zero.fired, i);
        assert_int_equal(hy__wheel_count(&w), 2);
    }
    assert_int_equal(tick.fired, 0);
    /* Re-armed relative to now, the 1 us timer fires once per big step. */
    for (unsigned i = 1; i <= 50; i++) {
        now += 10 * MS;
        assert_int_equal(hy__wheel_expire(&w, now, periodic_cb, &now), 2);
        assert_int_equal(tick.fired, i);
    }
}

/* An idle shard sleeping until next_expiry wakes a few times per timer,
 * whatever its distance, and never after the timer is due. */
static void test_wheel_next_expiry_converges(void **state)
{
    uint64_t dists[] = {1,        1000,       70 * US,         5 * MS,   300 * MS,
                        20 * SEC, 3600 * SEC, 25 * 3600 * SEC, 30 * DAY, UINT64_C(1) << 62};

    (void)state;
    for (size_t i = 0; i < sizeof dists / sizeof dists[0]; i++) {
        struct hy_wheel w;
        struct rec r = {0};
        uint64_t now = 987654321;
        uint64_t at = now + dists[i];
        unsigned wakes = 0;

        hy__wheel_init(&w, now);
        hy__wheel_add(&w, &r.wt, at);
        while (r.fired == 0) {
            uint64_t ne = hy__wheel_next_expiry(&w);
            assert_true(ne <= at);
            assert_true(ne > now); /* nothing due: no busy loop */
            now = ne;
            expire(&w, now);
            wakes++;
        }
        assert_int_equal(r.fired_at, at);
        assert_true(wakes <= HY_WHEEL_LEVELS + 2);
    }
}

/* A jump across centuries with timers on every level and in overflow:
 * everything fires in order in one call (tick by tick, it would never end). */
static void test_wheel_large_jump(void **state)
{
    enum { N = 64 };
    struct sim s = {0};
    struct rtimer t[N];

    (void)state;
    s.t = t;
    s.n = N;
    s.now = 3;
    s.rng = 7;
    hy__wheel_init(&s.w, s.now);
    for (unsigned i = 0; i < N; i++) {
        hy__wtimer_init(&t[i].wt);
        t[i].armed = false;
        sim_add(&s, i, s.now + (UINT64_C(1) << (i % 63)) + rnd_below(&s, 1000));
    }
    s.now = UINT64_C(1) << 63;
    s.epoch++;
    s.last_tick = 0;
    s.in_order = false;
    /* sim_cb checks order and may re-add or delete timers on the way. */
    unsigned got = hy__wheel_expire(&s.w, s.now, sim_cb, &s);
    assert_int_equal(got, s.fired);
    assert_true(got >= N / 2);
    sim_check(&s, true);
    s.now = UINT64_MAX;
    s.epoch++;
    s.last_tick = 0;
    s.in_order = false;
    hy__wheel_expire(&s.w, s.now, sim_cb, &s);
    sim_check(&s, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wheel_exact_boundary),
        cmocka_unit_test(test_wheel_past_due),
        cmocka_unit_test(test_wheel_del_unarmed),
        cmocka_unit_test(test_wheel_count),
        cmocka_unit_test(test_wheel_del_from_callback),
        cmocka_unit_test(test_wheel_overflow_after_deletes),
        cmocka_unit_test(test_wheel_readd_from_callback),
        cmocka_unit_test(test_wheel_next_expiry_converges),
        cmocka_unit_test(test_wheel_large_jump),
        cmocka_unit_test(test_wheel_random_vs_reference),
        cmocka_unit_test(test_wheel_random_across_top_boundary),
        cmocka_unit_test(test_wheel_random_dense),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
