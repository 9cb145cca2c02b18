/* Tests of core/pidset_internal.h: the pid set, against a brute-force
 * reference (a flat array), with random pids and with pids chosen to share
 * one home slot (long probe runs, runs that wrap past the table's end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pidset_internal.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static hy_pid rand_pid(void)
{
    hy_pid p = {next(), next()};
    return hy_pid_is_none(p) ? (hy_pid){1, 1} : p;
}

struct ref {
    hy_pid *v;
    size_t n;
};

static bool ref_has(const struct ref *r, hy_pid p)
{
    for (size_t i = 0; i < r->n; i++)
        if (hy_pid_eq(r->v[i], p))
            return true;
    return false;
}

static void ref_del(struct ref *r, hy_pid p)
{
    for (size_t i = 0; i < r->n; i++)
        if (hy_pid_eq(r->v[i], p)) {
            r->v[i] = r->v[--r->n];
            return;
        }
}

/* every reference member is found, and the counts agree */
static void check_all(const struct hy__pidset *s, const struct ref *r)
{
    assert_int_equal(s->n, r->n);
    for (size_t i = 0; i < r->n; i++)
        assert_true(hy__pidset_has(s, r->v[i]));
    size_t occupied = 0;
    for (size_t i = 0; i < s->cap; i++)
        occupied += !hy_pid_is_none(s->slot[i]);
    assert_int_equal(occupied, r->n);
}

/* a random mix of adds and removals, checked after each step */
static void test_pidset_random_against_reference(void **state)
{
    (void)state;
    struct hy__pidset s = {0};
    struct ref r = {calloc(4096, sizeof(hy_pid)), 0};
    assert_non_null(r.v);
    for (unsigned step = 0; step < 20000; step++) {
        unsigned op = (unsigned)(next() % 10);
        if (op < 6 && r.n < 4096) {
            hy_pid p = rand_pid();
            assert_int_equal(hy__pidset_add(&s, p), 0);
            if (!ref_has(&r, p))
                r.v[r.n++] = p;
            assert_int_equal(hy__pidset_add(&s, p), 0); /* again: no change */
        } else if (op < 9 && r.n > 0) {
            hy_pid p = r.v[next() % r.n];
            assert_true(hy__pidset_del(&s, p));
            ref_del(&r, p);
            assert_false(hy__pidset_has(&s, p));
            assert_false(hy__pidset_del(&s, p));
        } else {
            hy_pid p = rand_pid();
            assert_int_equal(hy__pidset_has(&s, p), ref_has(&r, p));
        }
        if (step % 97 == 0)
            check_all(&s, &r);
    }
    check_all(&s, &r);
    assert_int_equal(hy__pidset_add(&s, HY_PID_NONE), HY_EINVAL);
    assert_false(hy__pidset_has(&s, HY_PID_NONE));
    hy__pidset_fini(&s);
    assert_false(hy__pidset_has(&s, rand_pid()));
    free(r.v);
}

/* pids sharing one home slot, that slot at the table's end (the run wraps):
 * removing from the front, the middle and the end of the run keeps every
 * other member reachable */
static void test_pidset_collisions_and_wrap(void **state)
{
    (void)state;
    struct hy__pidset s = {0};
    assert_int_equal(hy__pidset_add(&s, (hy_pid){7, 7}), 0); /* cap is now 64 */
    assert_int_equal(s.cap, 64);
    assert_true(hy__pidset_del(&s, (hy_pid){7, 7}));
    for (size_t home = 0; home < 64; home += 61) { /* homes 0 and 61 */
        hy_pid same[12];
        unsigned k = 0;
        while (k < 12) {
            hy_pid p = rand_pid();
            if (hy__pidset_home(&s, p) == home)
                same[k++] = p;
        }
        struct ref r = {same, 0};
        hy_pid mine[12];
        memcpy(mine, same, sizeof(mine));
        r.v = mine;
        for (unsigned i = 0; i < 12; i++) {
            assert_int_equal(hy__pidset_add(&s, same[i]), 0);
            r.n++;
        }
        assert_int_equal(s.cap, 64);
        check_all(&s, &r);
        unsigned order[12] = {0, 6, 11, 3, 9, 1, 10, 5, 2, 8, 4, 7};
        for (unsigned i = 0; i < 12; i++) {
            assert_true(hy__pidset_del(&s, same[order[i]]));
            ref_del(&r, same[order[i]]);
            check_all(&s, &r);
            assert_false(hy__pidset_has(&s, same[order[i]]));
        }
    }
    hy__pidset_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pidset_random_against_reference),
        cmocka_unit_test(test_pidset_collisions_and_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
