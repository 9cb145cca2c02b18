/* Tests of otp/hash_ring.c: the seed Hydra's four hash_ring tests
 * (hash_ring_works, hash_ring_set_nodes, hash_ring_clear,
 * hash_ring_overrides: integer keys there, 8-byte little-endian keys here),
 * the canonical consistent-hashing properties (empty ring, one node, even
 * spread with virtual nodes, removing/adding a node moves only ~1/N of the
 * keys), determinism (the fixed hash and a placement computed independently
 * from the documented definition), overrides, weights, clones, errors and
 * concurrent readers. The ring is a plain data structure: no runtime. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"

/* The seed's keys are integers; ours are byte strings. */
struct u64key {
    uint8_t b[8];
};

static struct u64key k64(uint64_t v)
{
    struct u64key k;
    for (int i = 0; i < 8; i++)
        k.b[i] = (uint8_t)(v >> (8 * i));
    return k;
}

static struct hy_hash_ring *ring_new(unsigned vnodes)
{
    struct hy_hash_ring *r = NULL;
    assert_int_equal(hy_hash_ring_create(vnodes, &r), 0);
    assert_non_null(r);
    return r;
}

static void add_u64(struct hy_hash_ring *r, uint64_t key, uint64_t node)
{
    struct u64key k = k64(key);
    assert_int_equal(hy_hash_ring_add_node(r, k.b, 8, node, NULL, NULL), 0);
}

static uint64_t find_u64(const struct hy_hash_ring *r, uint64_t key)
{
    struct u64key k = k64(key);
    uint64_t node = 0;
    assert_int_equal(hy_hash_ring_find(r, k.b, 8, &node), 0);
    return node;
}

static void add_named(struct hy_hash_ring *r, unsigned i, unsigned vnodes)
{
    char name[32];
    int n = snprintf(name, sizeof(name), "node-%u", i);
    assert_int_equal(hy_hash_ring_add_node_vnodes(r, name, (size_t)n, i, vnodes, NULL, NULL), 0);
}

static uint64_t find_str(const struct hy_hash_ring *r, const char *fmt, unsigned i)
{
    char key[32];
    int n = snprintf(key, sizeof(key), fmt, i);
    uint64_t node = UINT64_MAX;
    assert_int_equal(hy_hash_ring_find(r, key, (size_t)n, &node), 0);
    return node;
}

/* ---- the seed's four tests ----------------------------------------------- */

static void test_hash_ring_works(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    add_u64(r, 0, 0xDEADBEEF);
    add_u64(r, 1, 0xDEADC0DE);
    /* a node's first point sits on its own key's hash */
    assert_int_equal(find_u64(r, 0), 0xDEADBEEF);
    assert_int_equal(find_u64(r, 1), 0xDEADC0DE);
    uint64_t n3 = find_u64(r, 1337);
    assert_true(n3 == 0xDEADBEEF || n3 == 0xDEADC0DE);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_set_nodes(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    add_u64(r, 0, 0xDEADBEEF);
    add_u64(r, 1, 0xDEADC0DE);
    struct u64key k0 = k64(0), k1 = k64(1);
    struct hy_hash_ring_node nodes[] = {
        {.key = k0.b, .len = 8, .node = 0xDEADC0DE},
        {.key = k1.b, .len = 8, .node = 0xDEADBEEF},
    };
    assert_int_equal(hy_hash_ring_set_nodes(r, nodes, 2), 0);
    assert_int_equal(find_u64(r, 0), 0xDEADC0DE);
    assert_int_equal(find_u64(r, 1), 0xDEADBEEF);
    assert_int_equal(hy_hash_ring_node_count(r), 2);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_clear(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    add_u64(r, 0, 0xDEADBEEF);
    add_u64(r, 1, 0xDEADC0DE);
    struct u64key k = k64(0);
    uint64_t node;
    assert_int_equal(hy_hash_ring_find(r, k.b, 8, &node), 0);
    struct u64key k7 = k64(7);
    assert_int_equal(hy_hash_ring_add_override(r, k7.b, 8, 42, NULL, NULL), 0);
    hy_hash_ring_clear(r);
    assert_int_equal(hy_hash_ring_find(r, k.b, 8, &node), HY_ENOENT);
    /* overrides go too */
    assert_int_equal(hy_hash_ring_find(r, k7.b, 8, &node), HY_ENOENT);
    assert_int_equal(hy_hash_ring_node_count(r), 0);
    assert_int_equal(hy_hash_ring_override_count(r), 0);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_overrides(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    add_u64(r, 0, 0xDEADBEEF);
    add_u64(r, 1, 0xDEADC0DE);
    assert_int_equal(find_u64(r, 0), 0xDEADBEEF);
    struct u64key k3 = k64(3);
    assert_int_equal(hy_hash_ring_add_override(r, k3.b, 8, 0xC0DEBEEF, NULL, NULL), 0);
    assert_int_equal(find_u64(r, 3), 0xC0DEBEEF);
    /* other keys are untouched */
    assert_int_equal(find_u64(r, 0), 0xDEADBEEF);
    assert_int_equal(find_u64(r, 1), 0xDEADC0DE);
    hy_hash_ring_destroy(r);
}

/* ---- canonical properties ------------------------------------------------ */

static void test_hash_ring_empty_returns_none(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    uint64_t node = 77;
    assert_int_equal(hy_hash_ring_find(r, "any-key", 7, &node), HY_ENOENT);
    assert_int_equal(hy_hash_ring_find(r, NULL, 0, &node), HY_ENOENT);
    assert_int_equal(node, 77);
    assert_int_equal(hy_hash_ring_node_count(r), 0);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_one_node_gets_everything(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    assert_int_equal(hy_hash_ring_add_node(r, "only", 4, 9, NULL, NULL), 0);
    for (unsigned i = 0; i < 5000; i++)
        assert_int_equal(find_str(r, "key-%u", i), 9);
    uint64_t node;
    assert_int_equal(hy_hash_ring_find(r, NULL, 0, &node), 0);
    assert_int_equal(node, 9);
    hy_hash_ring_destroy(r);
}

#define NKEYS 40000u

static void test_hash_ring_spreads_evenly_with_vnodes(void **state)
{
    (void)state;
    enum { N = 5 };
    struct hy_hash_ring *r = ring_new(0); /* 160 points per node */
    for (unsigned i = 0; i < N; i++)
        add_named(r, i, 0);
    unsigned count[N] = {0};
    for (unsigned k = 0; k < NKEYS; k++) {
        uint64_t n = find_str(r, "user:%u", k);
        assert_true(n < N);
        count[n]++;
    }
    for (unsigned i = 0; i < N; i++) {
        double share = (double)count[i] / NKEYS;
        print_message("node %u: %.3f of the keys\n", i, share);
        assert_true(share > 0.8 / N && share < 1.2 / N);
    }
    /* with one point per node the spread is visibly worse: vnodes matter */
    struct hy_hash_ring *one = ring_new(1);
    for (unsigned i = 0; i < N; i++)
        add_named(one, i, 0);
    unsigned c1[N] = {0};
    for (unsigned k = 0; k < NKEYS; k++)
        c1[find_str(one, "user:%u", k)]++;
    unsigned max1 = 0, maxv = 0;
    for (unsigned i = 0; i < N; i++) {
        max1 = c1[i] > max1 ? c1[i] : max1;
        maxv = count[i] > maxv ? count[i] : maxv;
    }
    assert_true(max1 > maxv);
    hy_hash_ring_destroy(one);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_remove_moves_only_its_keys(void **state)
{
    (void)state;
    enum { N = 5, GONE = 2 };
    struct hy_hash_ring *r = ring_new(0);
    for (unsigned i = 0; i < N; i++)
        add_named(r, i, 0);
    static uint8_t before[NKEYS];
    for (unsigned k = 0; k < NKEYS; k++)
        before[k] = (uint8_t)find_str(r, "obj/%u", k);
    uint64_t gone = 99;
    assert_int_equal(hy_hash_ring_remove_node(r, "node-2", 6, &gone), 0);
    assert_int_equal(gone, GONE);
    unsigned moved = 0;
    for (unsigned k = 0; k < NKEYS; k++) {
        uint64_t now = find_str(r, "obj/%u", k);
        assert_true(now != GONE);
        if (before[k] == GONE)
            moved++;
        else
            assert_int_equal(now, before[k]); /* nobody else's key moved */
    }
    double frac = (double)moved / NKEYS;
    print_message("removing 1 of %d nodes moved %.3f of the keys\n", N, frac);
    assert_true(frac > 0.5 / N && frac < 1.5 / N);
    assert_int_equal(hy_hash_ring_remove_node(r, "node-2", 6, NULL), HY_ENOENT);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_add_moves_about_one_nth(void **state)
{
    (void)state;
    enum { N = 4 };
    struct hy_hash_ring *r = ring_new(0);
    for (unsigned i = 0; i < N; i++)
        add_named(r, i, 0);
    static uint8_t before[NKEYS];
    for (unsigned k = 0; k < NKEYS; k++)
        before[k] = (uint8_t)find_str(r, "obj/%u", k);
    add_named(r, N, 0);
    unsigned moved = 0;
    for (unsigned k = 0; k < NKEYS; k++) {
        uint64_t now = find_str(r, "obj/%u", k);
        if (now != before[k]) {
            assert_int_equal(now, N); /* keys move only to the new node */
            moved++;
        }
    }
    double frac = (double)moved / NKEYS;
    print_message("adding a node to %d moved %.3f of the keys\n", N, frac);
    assert_true(frac > 0.5 / (N + 1) && frac < 1.5 / (N + 1));
    hy_hash_ring_destroy(r);
}

/* ---- determinism ------------------------------------------------------------ */

static void test_hash_ring_hash_is_fixed(void **state)
{
    (void)state;
    /* fmix64(fnv1a64(bytes)), values computed outside this code base */
    assert_true(hy_hash_ring_hash("", 0) == 0xefd01f60ba992926ull);
    assert_true(hy_hash_ring_hash(NULL, 0) == 0xefd01f60ba992926ull);
    assert_true(hy_hash_ring_hash("a", 1) == 0x82a2a958a9bece5bull);
    assert_true(hy_hash_ring_hash("hello", 5) == 0xe9c562c0fdb23244ull);
    assert_true(hy_hash_ring_hash("node-a", 6) == 0x48e86629c152a3f3ull);
}

/* Placement of "key-0".."key-15" over "node-0".."node-3" (8 points each),
 * computed by an independent implementation of the definition in
 * hash_ring.h: any process on any machine must agree. */
static const uint8_t golden[16] = {3, 1, 0, 2, 2, 1, 3, 3, 1, 2, 2, 2, 2, 0, 2, 2};

static void check_golden(const struct hy_hash_ring *r)
{
    for (unsigned k = 0; k < 16; k++)
        assert_int_equal(find_str(r, "key-%u", k), golden[k]);
}

static void test_hash_ring_placement_is_deterministic(void **state)
{
    (void)state;
    struct hy_hash_ring *a = ring_new(8), *b = ring_new(8);
    for (unsigned i = 0; i < 4; i++)
        add_named(a, i, 0);
    for (unsigned i = 4; i-- > 0;) /* other insertion order */
        add_named(b, i, 0);
    check_golden(a);
    check_golden(b);
    /* and after churn that ends in the same membership */
    add_named(b, 9, 0);
    assert_int_equal(hy_hash_ring_remove_node(b, "node-1", 6, NULL), 0);
    assert_int_equal(hy_hash_ring_remove_node(b, "node-9", 6, NULL), 0);
    add_named(b, 1, 0);
    check_golden(b);
    for (unsigned k = 0; k < 5000; k++)
        assert_int_equal(find_str(a, "x%u", k), find_str(b, "x%u", k));
    hy_hash_ring_destroy(a);
    hy_hash_ring_destroy(b);
}

static void test_hash_ring_clone_places_alike(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(8);
    for (unsigned i = 0; i < 4; i++)
        add_named(r, i, 0);
    assert_int_equal(hy_hash_ring_add_override(r, "key-0", 5, 1234, NULL, NULL), 0);
    struct hy_hash_ring *c = NULL;
    assert_int_equal(hy_hash_ring_clone(r, &c), 0);
    assert_int_equal(hy_hash_ring_node_count(c), 4);
    assert_int_equal(hy_hash_ring_override_count(c), 1);
    assert_int_equal(find_str(c, "key-%u", 0), 1234);
    for (unsigned k = 1; k < 16; k++)
        assert_int_equal(find_str(c, "key-%u", k), golden[k]);
    /* independent afterwards */
    hy_hash_ring_clear(r);
    assert_int_equal(find_str(c, "key-%u", 1), golden[1]);
    hy_hash_ring_destroy(r);
    hy_hash_ring_destroy(c);
}

/* ---- nodes, overrides, weights ------------------------------------------------ */

static void test_hash_ring_add_replaces_same_key(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    bool replaced = true;
    uint64_t old = 0;
    assert_int_equal(hy_hash_ring_add_node(r, "n", 1, 1, &replaced, &old), 0);
    assert_false(replaced);
    assert_int_equal(hy_hash_ring_add_node(r, "n", 1, 2, &replaced, &old), 0);
    assert_true(replaced);
    assert_int_equal(old, 1);
    assert_int_equal(hy_hash_ring_node_count(r), 1);
    assert_int_equal(find_str(r, "k%u", 5), 2);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_override_replace_and_remove(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    add_named(r, 0, 0);
    bool replaced = true;
    uint64_t old = 0, node = 0;
    assert_int_equal(hy_hash_ring_add_override(r, "pinned", 6, 5, &replaced, &old), 0);
    assert_false(replaced);
    assert_int_equal(hy_hash_ring_add_override(r, "pinned", 6, 6, &replaced, &old), 0);
    assert_true(replaced);
    assert_int_equal(old, 5);
    /* an override is for that exact key only */
    assert_int_equal(hy_hash_ring_find(r, "pinned", 6, &node), 0);
    assert_int_equal(node, 6);
    assert_int_equal(hy_hash_ring_find(r, "pinne", 5, &node), 0);
    assert_int_equal(node, 0);
    assert_int_equal(hy_hash_ring_remove_override(r, "pinned", 6, &old), 0);
    assert_int_equal(old, 6);
    assert_int_equal(hy_hash_ring_find(r, "pinned", 6, &node), 0);
    assert_int_equal(node, 0);
    assert_int_equal(hy_hash_ring_remove_override(r, "pinned", 6, NULL), HY_ENOENT);
    /* an override answers even on an empty ring */
    hy_hash_ring_clear(r);
    assert_int_equal(hy_hash_ring_add_override(r, "pinned", 6, 8, NULL, NULL), 0);
    assert_int_equal(hy_hash_ring_find(r, "pinned", 6, &node), 0);
    assert_int_equal(node, 8);
    assert_int_equal(hy_hash_ring_find(r, "other", 5, &node), HY_ENOENT);
    /* set_overrides replaces them all; the last of a repeated key wins */
    struct hy_hash_ring_node ovr[] = {
        {.key = "a", .len = 1, .node = 1},
        {.key = "b", .len = 1, .node = 2},
        {.key = "a", .len = 1, .node = 3},
    };
    assert_int_equal(hy_hash_ring_set_overrides(r, ovr, 3), 0);
    assert_int_equal(hy_hash_ring_override_count(r), 2);
    assert_int_equal(hy_hash_ring_find(r, "a", 1, &node), 0);
    assert_int_equal(node, 3);
    assert_int_equal(hy_hash_ring_find(r, "b", 1, &node), 0);
    assert_int_equal(node, 2);
    assert_int_equal(hy_hash_ring_find(r, "pinned", 6, &node), HY_ENOENT);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_vnodes_weight(void **state)
{
    (void)state;
    struct hy_hash_ring *r = ring_new(0);
    add_named(r, 0, 100);
    add_named(r, 1, 200);
    unsigned c[2] = {0};
    for (unsigned k = 0; k < NKEYS; k++)
        c[find_str(r, "w%u", k)]++;
    double ratio = (double)c[1] / c[0];
    print_message("200 vs 100 points: %.2f times the keys\n", ratio);
    assert_true(ratio > 1.5 && ratio < 2.6);
    hy_hash_ring_destroy(r);
}

static void test_hash_ring_rejects_bad_arguments(void **state)
{
    (void)state;
    struct hy_hash_ring *r = NULL;
    assert_int_equal(hy_hash_ring_create(0, NULL), HY_EINVAL);
    assert_int_equal(hy_hash_ring_create(HY_HASH_RING_VNODES_MAX + 1, &r), HY_EINVAL);
    r = ring_new(0);
    uint64_t node;
    static char big[HY_HASH_RING_KEY_MAX + 1];
    assert_int_equal(hy_hash_ring_add_node(r, NULL, 1, 0, NULL, NULL), HY_EINVAL);
    assert_int_equal(hy_hash_ring_add_node(r, "x", 0, 0, NULL, NULL), HY_EINVAL);
    assert_int_equal(hy_hash_ring_add_node(r, big, sizeof(big), 0, NULL, NULL), HY_EINVAL);
    assert_int_equal(hy_hash_ring_add_node(NULL, "x", 1, 0, NULL, NULL), HY_EINVAL);
    assert_int_equal(
        hy_hash_ring_add_node_vnodes(r, "x", 1, 0, HY_HASH_RING_VNODES_MAX + 1, NULL, NULL),
        HY_EINVAL);
    assert_int_equal(hy_hash_ring_find(r, NULL, 3, &node), HY_EINVAL);
    assert_int_equal(hy_hash_ring_find(r, "x", 1, NULL), HY_EINVAL);
    assert_int_equal(hy_hash_ring_add_override(r, "", 0, 1, NULL, NULL), HY_EINVAL);
    struct hy_hash_ring_node bad[] = {{.key = "ok", .len = 2}, {.key = NULL, .len = 2}};
    add_named(r, 0, 0);
    assert_int_equal(hy_hash_ring_set_nodes(r, bad, 2), HY_EINVAL);
    assert_int_equal(hy_hash_ring_node_count(r), 1); /* unchanged */
    hy_hash_ring_destroy(r);
    hy_hash_ring_destroy(NULL);
    hy_hash_ring_clear(NULL);
}

/* ---- threads ------------------------------------------------------------------ */

struct readers {
    struct hy_hash_ring *r;
    atomic_bool stop;
    atomic_uint bad;
    atomic_ulong reads;
};

static void *reader(void *a)
{
    struct readers *rd = a;
    unsigned k = 0;
    while (!atomic_load(&rd->stop)) {
        char key[16];
        int n = snprintf(key, sizeof(key), "r%u", k++);
        uint64_t node = UINT64_MAX;
        /* node 0 never leaves; 1..3 come and go */
        if (hy_hash_ring_find(rd->r, key, (size_t)n, &node) != 0 || node > 3)
            atomic_fetch_add(&rd->bad, 1);
        atomic_fetch_add(&rd->reads, 1);
    }
    return NULL;
}

static void test_hash_ring_concurrent_readers_and_writer(void **state)
{
    (void)state;
    struct readers rd = {.r = ring_new(32)};
    add_named(rd.r, 0, 0);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &rd), 0);
    /* let the readers get going, so that the changes meet them */
    while (atomic_load(&rd.reads) < 100)
        sched_yield();
    for (unsigned round = 0; round < 300; round++) {
        if (round % 16 == 0)
            sched_yield();
        unsigned i = 1 + round % 3;
        add_named(rd.r, i, 0);
        char key[8];
        int n = snprintf(key, sizeof(key), "k%u", round);
        hy_hash_ring_add_override(rd.r, key, (size_t)n, i, NULL, NULL);
        if (round % 2) {
            char name[16];
            int m = snprintf(name, sizeof(name), "node-%u", i);
            assert_int_equal(hy_hash_ring_remove_node(rd.r, name, (size_t)m, NULL), 0);
            hy_hash_ring_remove_override(rd.r, key, (size_t)n, NULL);
        }
    }
    atomic_store(&rd.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&rd.bad), 0);
    hy_hash_ring_destroy(rd.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_ring_works),
        cmocka_unit_test(test_hash_ring_set_nodes),
        cmocka_unit_test(test_hash_ring_clear),
        cmocka_unit_test(test_hash_ring_overrides),
        cmocka_unit_test(test_hash_ring_empty_returns_none),
        cmocka_unit_test(test_hash_ring_one_node_gets_everything),
        cmocka_unit_test(test_hash_ring_spreads_evenly_with_vnodes),
        cmocka_unit_test(test_hash_ring_remove_moves_only_its_keys),
        cmocka_unit_test(test_hash_ring_add_moves_about_one_nth),
        cmocka_unit_test(test_hash_ring_hash_is_fixed),
        cmocka_unit_test(test_hash_ring_placement_is_deterministic),
        cmocka_unit_test(test_hash_ring_clone_places_alike),
        cmocka_unit_test(test_hash_ring_add_replaces_same_key),
        cmocka_unit_test(test_hash_ring_override_replace_and_remove),
        cmocka_unit_test(test_hash_ring_vnodes_weight),
        cmocka_unit_test(test_hash_ring_rejects_bad_arguments),
        cmocka_unit_test(test_hash_ring_concurrent_readers_and_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
