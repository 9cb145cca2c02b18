/* Tests of apps/kvcache/kvcache_store.c: one shard's cache without a
 * runtime. Expiry runs on the store's clock, set by the test; eviction and
 * memory reuse under a small memory limit; slab and item counters; cas;
 * counters that wrap as memcached's do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kvcache_store.h"

#define T0 1700000000ull /* the tests' "unix time" at store start */

/* a store of maxbytes with the tests' settings; hashpower 0: the default table */
static struct kvcache_store *mk_store(uint64_t maxbytes, unsigned hashpower, bool hugepages)
{
    struct kvcache_store_settings s = {
        .maxbytes = maxbytes,
        .item_size_max = 1 << 20,
        .factor = 1.25,
        .chunk_min = 48,
        .started = T0 - 2,
        .cas_first = 1,
        .cas_step = 1,
        .hashpower = hashpower,
        .hugepages = hugepages,
    };
    struct kvcache_store *st = kvcache_store_create(&s);
    assert_non_null(st);
    kvcache_store_set_time(st, T0);
    return st;
}

static struct kvcache_store *mk(uint64_t maxbytes)
{
    return mk_store(maxbytes, 0, false);
}

static enum kvcache_result put(struct kvcache_store *st, const char *k, const char *v, int64_t exp)
{
    return kvcache_store_set(st, KVCACHE_SET, k, strlen(k), 0, exp, v, strlen(v), 0, 0, NULL);
}

static bool has(struct kvcache_store *st, const char *k)
{
    struct kvcache_view v;
    return kvcache_store_get(st, k, strlen(k), false, false, 0, false, &v);
}

static struct kvcache_counters counters(struct kvcache_store *st)
{
    struct kvcache_counters c;
    memset(&c, 0, sizeof(c));
    kvcache_store_counters(st, &c);
    return c;
}

static void test_kvcache_store_classes_grow_by_factor(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    unsigned n = kvcache_store_nclasses(st);
    assert_true(n > 30 && n < KVCACHE_MAX_CLASSES);
    struct kvcache_class_stats prev = {0};
    for (unsigned i = 1; i <= n; i++) {
        struct kvcache_class_stats cs = {0};
        kvcache_store_class_stats(st, i, &cs);
        assert_int_equal(cs.chunk_size % 8, 0);
        if (i > 1 && i < n) {
            double r = (double)cs.chunk_size / prev.chunk_size;
            assert_true(r > 1.18 && r < 1.35);
        }
        assert_int_equal(cs.chunks_per_page, (1u << 20) / cs.chunk_size);
        prev = cs;
    }
    assert_int_equal(prev.chunk_size, 1 << 20); /* the last class holds the largest item */
    /* an item goes to the smallest class that holds it */
    size_t sz = kvcache_store_item_size(1, 1);
    unsigned c1 = kvcache_store_class_of(st, sz);
    assert_int_equal(c1, 1);
    assert_int_equal(kvcache_store_class_of(st, (1 << 20) + 1), 0);
    kvcache_store_destroy(st);
}

static void test_kvcache_store_set_get_delete(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    uint64_t cas = 0;
    assert_int_equal(kvcache_store_set(st, KVCACHE_SET, "k", 1, 42, 0, "hello", 5, 0, 0, &cas),
                     KVCACHE_STORED);
    struct kvcache_view v;
    assert_true(kvcache_store_get(st, "k", 1, true, false, 0, true, &v));
    assert_int_equal(v.nbytes, 5);
    assert_memory_equal(v.value, "hello\r\n", 7);
    assert_int_equal(v.flags, 42);
    assert_int_equal(v.cas, cas);
    assert_int_equal(v.ttl, -1);
    assert_int_equal(kvcache_store_delete(st, "k", 1, 0), KVCACHE_DELETED);
    assert_int_equal(kvcache_store_delete(st, "k", 1, 0), KVCACHE_NOT_FOUND);
    assert_false(kvcache_store_get(st, "k", 1, true, false, 0, true, &v));
    struct kvcache_counters c = counters(st);
    assert_int_equal(c.cmd_get, 2);
    assert_int_equal(c.get_hits, 1);
    assert_int_equal(c.get_misses, 1);
    assert_int_equal(c.delete_hits, 1);
    assert_int_equal(c.delete_misses, 1);
    assert_int_equal(c.curr_items, 0);
    assert_int_equal(c.total_items, 1);
    assert_int_equal(c.bytes, 0);
    kvcache_store_destroy(st);
}

static void test_kvcache_store_expiry_relative_absolute_negative(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    assert_int_equal(put(st, "rel", "x", 10), KVCACHE_STORED);
    assert_int_equal(put(st, "abs", "x", (int64_t)T0 + 100), KVCACHE_STORED); /* > 30 days: unix */
    assert_int_equal(put(st, "past", "x", (int64_t)T0 - 100), KVCACHE_STORED);
    assert_int_equal(put(st, "neg", "x", -1), KVCACHE_STORED);
    assert_int_equal(put(st, "never", "x", 0), KVCACHE_STORED);
    assert_int_equal(put(st, "month", "x", KVCACHE_REALTIME_MAXDELTA), KVCACHE_STORED);
    assert_false(has(st, "past"));
    assert_false(has(st, "neg"));
    assert_true(has(st, "rel"));
    kvcache_store_set_time(st, T0 + 9);
    assert_true(has(st, "rel"));
    kvcache_store_set_time(st, T0 + 10);
    assert_false(has(st, "rel")); /* expires at exactly now + 10 */
    assert_true(has(st, "abs"));
    kvcache_store_set_time(st, T0 + 100);
    assert_false(has(st, "abs"));
    kvcache_store_set_time(st, T0 + KVCACHE_REALTIME_MAXDELTA - 1);
    assert_true(has(st, "month")); /* 30 days exactly is still relative */
    kvcache_store_set_time(st, T0 + 365ull * 86400);
    assert_true(has(st, "never"));
    kvcache_store_destroy(st);
}

static void test_kvcache_store_expired_memory_is_reused(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    char key[32], val[100];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    unsigned cls = kvcache_store_class_of(st, kvcache_store_item_size(6, 99));
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_int_equal(put(st, key, val, 5), KVCACHE_STORED);
    }
    struct kvcache_class_stats a = {0};
    kvcache_store_class_stats(st, cls, &a);
    assert_int_equal(a.used_chunks, 1000);
    kvcache_store_set_time(st, T0 + 6);
    /* lookups of expired items free their chunks; new items take them */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_false(has(st, key));
    }
    struct kvcache_class_stats b = {0};
    kvcache_store_class_stats(st, cls, &b);
    assert_int_equal(b.used_chunks, 0);
    assert_int_equal(b.free_chunks, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "n%05d", i);
        assert_int_equal(put(st, key, val, 0), KVCACHE_STORED);
    }
    struct kvcache_class_stats c = {0};
    kvcache_store_class_stats(st, cls, &c);
    assert_int_equal(c.total_pages, a.total_pages);
    assert_int_equal(c.free_chunks, 0);
    assert_int_equal(counters(st).expired_unfetched, 1000);
    kvcache_store_destroy(st);
}

/* with 2 MiB, one class fills its page budget; the least recently used
 * items go, recently read ones stay */
static void test_kvcache_store_lru_eviction_small_memory(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(2 << 20);
    char key[32], val[1000];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    int n = 5000; /* ~5 MB of items into 2 MiB */
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_int_equal(put(st, key, val, 0), KVCACHE_STORED);
        if (i >= 10) {
            /* keep k00000 hot */
            assert_true(has(st, "k00000"));
            struct kvcache_view v;
            assert_true(kvcache_store_get(st, "k00000", 6, false, false, 0, true, &v));
        }
    }
    struct kvcache_counters c = counters(st);
    assert_true(c.evictions > 0);
    assert_int_equal(c.curr_items + c.evictions, (uint64_t)n);
    assert_true(c.total_malloced <= 2 << 20);
    assert_true(has(st, "k00000"));
    assert_false(has(st, "k00001")); /* the oldest cold one went first */
    snprintf(key, sizeof(key), "k%05d", n - 1);
    assert_true(has(st, key));
    unsigned cls = kvcache_store_class_of(st, kvcache_store_item_size(6, 999));
    struct kvcache_class_stats cs = {0};
    kvcache_store_class_stats(st, cls, &cs);
    assert_int_equal(cs.evicted, c.evictions);
    assert_int_equal(cs.evicted_unfetched, c.evictions);
    assert_int_equal(cs.number, c.curr_items);
    assert_int_equal(cs.mem_requested, c.bytes);
    kvcache_store_destroy(st);
}

/* a read marks an item instead of moving it in its LRU (no write to its
 * neighbours): an item read once since it was stored outlives the items
 * stored around it by one pass of the LRU (eviction moves it to the head
 * instead of evicting it, and clears the mark), then goes in its turn
 * unless read again; items not read go in the order they were stored */
static void test_kvcache_store_lru_read_item_kept_once(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(2 << 20);
    char key[32], val[1000];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_int_equal(put(st, key, val, 0), KVCACHE_STORED);
    }
    struct kvcache_view v;
    assert_true(kvcache_store_get(st, "k00001", 6, true, false, 0, true, &v));
    /* store until k00002 (stored after k00001, never read) is evicted */
    int i = 10;
    for (; i < 100000 && has(st, "k00002"); i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_int_equal(put(st, key, val, 0), KVCACHE_STORED);
    }
    assert_false(has(st, "k00000"));
    assert_false(has(st, "k00002"));
    assert_true(has(st, "k00001")); /* moved to the head, not evicted */
    int moved_at = i;
    snprintf(key, sizeof(key), "k%05d", i - 1);
    assert_true(has(st, key));
    /* not read again: it goes after the items stored before it was moved
     * (as the last one, k(moved_at - 1) was being stored), before those
     * stored after */
    for (; i < 100000 && has(st, "k00001"); i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_int_equal(put(st, key, val, 0), KVCACHE_STORED);
    }
    assert_false(has(st, "k00001"));
    snprintf(key, sizeof(key), "k%05d", moved_at - 2);
    assert_false(has(st, key));
    snprintf(key, sizeof(key), "k%05d", moved_at - 1);
    assert_true(has(st, key));
    struct kvcache_counters c = counters(st);
    assert_int_equal(c.curr_items + c.evictions, (uint64_t)i);
    kvcache_store_destroy(st);
}

/* every class gets its first page even past the limit (as memcached) */
static void test_kvcache_store_first_page_per_class(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(1 << 20);
    char val[600000];
    memset(val, 'x', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    assert_int_equal(put(st, "small", "x", 0), KVCACHE_STORED);
    assert_int_equal(put(st, "big", val, 0), KVCACHE_STORED);
    assert_true(has(st, "small"));
    assert_true(has(st, "big"));
    assert_int_equal(counters(st).total_malloced, 2 << 20);
    kvcache_store_destroy(st);
}

static void test_kvcache_store_too_large(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    static char val[(1 << 20) + 1];
    memset(val, 'x', sizeof(val) - 1);
    assert_int_equal(put(st, "k", "old", 0), KVCACHE_STORED);
    assert_int_equal(put(st, "k", val, 0), KVCACHE_TOO_LARGE);
    assert_false(has(st, "k")); /* a refused set drops the old value, as memcached */
    assert_int_equal(counters(st).store_too_large, 1);
    size_t fit = (1 << 20) - kvcache_store_item_size(1, 0);
    assert_true(kvcache_store_fits(st, 1, fit));
    assert_false(kvcache_store_fits(st, 1, fit + 1));
    kvcache_store_destroy(st);
}

static void test_kvcache_store_cas_conflicts(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    uint64_t c1, c2, c3;
    assert_int_equal(kvcache_store_set(st, KVCACHE_SET, "k", 1, 0, 0, "a", 1, 0, 0, &c1),
                     KVCACHE_STORED);
    assert_int_equal(kvcache_store_set(st, KVCACHE_CAS, "k", 1, 0, 0, "b", 1, c1, 0, &c2),
                     KVCACHE_STORED);
    assert_true(c2 != c1);
    /* the second writer with the old cas loses */
    assert_int_equal(kvcache_store_set(st, KVCACHE_CAS, "k", 1, 0, 0, "c", 1, c1, 0, &c3),
                     KVCACHE_EXISTS);
    assert_int_equal(kvcache_store_set(st, KVCACHE_CAS, "x", 1, 0, 0, "c", 1, c1, 0, &c3),
                     KVCACHE_NOT_FOUND);
    struct kvcache_counters c = counters(st);
    assert_int_equal(c.cas_hits, 1);
    assert_int_equal(c.cas_badval, 1);
    assert_int_equal(c.cas_misses, 1);
    /* every modification gets a new cas */
    uint64_t v, c4;
    assert_int_equal(put(st, "n", "1", 0), KVCACHE_STORED);
    struct kvcache_view view;
    assert_true(kvcache_store_get(st, "n", 1, false, false, 0, false, &view));
    assert_int_equal(kvcache_store_delta(st, "n", 1, true, 1, 0, &v, &c4), KVCACHE_STORED);
    assert_true(c4 > view.cas);
    kvcache_store_destroy(st);
}

static void test_kvcache_store_cas_interleaved_shards(void **state)
{
    (void)state;
    struct kvcache_store_settings s = {
        .maxbytes = 8 << 20, .item_size_max = 1 << 20, .factor = 1.25, .chunk_min = 48,
        .started = T0, .cas_first = 2, .cas_step = 3,
    };
    struct kvcache_store *st = kvcache_store_create(&s);
    uint64_t a, b;
    kvcache_store_set(st, KVCACHE_SET, "a", 1, 0, 0, "x", 1, 0, 0, &a);
    kvcache_store_set(st, KVCACHE_SET, "b", 1, 0, 0, "x", 1, 0, 0, &b);
    assert_int_equal(a, 2);
    assert_int_equal(b, 5); /* shard 1 of 3: values never collide with other shards' */
    kvcache_store_destroy(st);
}

static void test_kvcache_store_counters_wrap(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    uint64_t v;
    assert_int_equal(put(st, "n", "18446744073709551615", 0), KVCACHE_STORED);
    assert_int_equal(kvcache_store_delta(st, "n", 1, true, 2, 0, &v, NULL), KVCACHE_STORED);
    assert_int_equal(v, 1); /* 2^64 - 1 + 2 wraps to 1 */
    assert_int_equal(put(st, "d", "10", 0), KVCACHE_STORED);
    assert_int_equal(kvcache_store_delta(st, "d", 1, false, 1, 0, &v, NULL), KVCACHE_STORED);
    assert_int_equal(v, 9);
    struct kvcache_view view;
    assert_true(kvcache_store_get(st, "d", 1, false, false, 0, false, &view));
    assert_int_equal(view.nbytes, 2);
    assert_memory_equal(view.value, "9 ", 2); /* padded in place */
    assert_int_equal(kvcache_store_delta(st, "d", 1, false, 100, 0, &v, NULL), KVCACHE_STORED);
    assert_int_equal(v, 0); /* decr floors at 0 */
    assert_int_equal(kvcache_store_delta(st, "d", 1, true, 12345, 0, &v, NULL), KVCACHE_STORED);
    assert_int_equal(v, 12345); /* grew: a new item */
    assert_true(kvcache_store_get(st, "d", 1, false, false, 0, false, &view));
    assert_int_equal(view.nbytes, 5);
    assert_int_equal(put(st, "s", "abc", 0), KVCACHE_STORED);
    assert_int_equal(kvcache_store_delta(st, "s", 1, true, 1, 0, &v, NULL), KVCACHE_NON_NUMERIC);
    assert_int_equal(kvcache_store_delta(st, "zz", 2, true, 1, 0, &v, NULL), KVCACHE_NOT_FOUND);
    kvcache_store_destroy(st);
}

static void test_kvcache_store_flush_now_and_delayed(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    assert_int_equal(put(st, "a", "1", 0), KVCACHE_STORED);
    kvcache_store_flush(st, 0);
    assert_false(has(st, "a"));
    assert_int_equal(put(st, "b", "1", 0), KVCACHE_STORED); /* stored after the flush: kept */
    assert_true(has(st, "b"));
    kvcache_store_flush(st, 10);
    kvcache_store_set_time(st, T0 + 5);
    assert_true(has(st, "b"));
    kvcache_store_set_time(st, T0 + 10);
    assert_false(has(st, "b"));
    assert_int_equal(put(st, "c", "1", 0), KVCACHE_STORED);
    kvcache_store_set_time(st, T0 + 11);
    assert_true(has(st, "c"));
    assert_int_equal(counters(st).cmd_flush, 2);
    kvcache_store_destroy(st);
}

static void test_kvcache_store_append_prepend_add_replace(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    assert_int_equal(kvcache_store_set(st, KVCACHE_APPEND, "k", 1, 0, 0, "x", 1, 0, 0, NULL),
                     KVCACHE_NOT_STORED);
    assert_int_equal(kvcache_store_set(st, KVCACHE_REPLACE, "k", 1, 0, 0, "x", 1, 0, 0, NULL),
                     KVCACHE_NOT_STORED);
    assert_int_equal(kvcache_store_set(st, KVCACHE_ADD, "k", 1, 7, 100, "b", 1, 0, 0, NULL),
                     KVCACHE_STORED);
    assert_int_equal(kvcache_store_set(st, KVCACHE_ADD, "k", 1, 0, 0, "z", 1, 0, 0, NULL),
                     KVCACHE_NOT_STORED);
    assert_int_equal(kvcache_store_set(st, KVCACHE_APPEND, "k", 1, 9, 0, "cd", 2, 0, 0, NULL),
                     KVCACHE_STORED);
    assert_int_equal(kvcache_store_set(st, KVCACHE_PREPEND, "k", 1, 9, 0, "a", 1, 0, 0, NULL),
                     KVCACHE_STORED);
    struct kvcache_view v;
    assert_true(kvcache_store_get(st, "k", 1, false, false, 0, false, &v));
    assert_memory_equal(v.value, "abcd\r\n", 6);
    assert_int_equal(v.flags, 7);  /* append keeps flags */
    assert_int_equal(v.ttl, 100);  /* and the expiry */
    kvcache_store_destroy(st);
}

static void test_kvcache_store_touch_and_gat(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(64 << 20);
    assert_int_equal(put(st, "k", "v", 5), KVCACHE_STORED);
    assert_int_equal(kvcache_store_touch(st, "k", 1, 100), KVCACHE_TOUCHED);
    kvcache_store_set_time(st, T0 + 50);
    assert_true(has(st, "k"));
    struct kvcache_view v;
    assert_true(kvcache_store_get(st, "k", 1, true, true, 10, true, &v)); /* gat 10 */
    kvcache_store_set_time(st, T0 + 60);
    assert_false(has(st, "k"));
    assert_int_equal(kvcache_store_touch(st, "k", 1, 100), KVCACHE_NOT_FOUND);
    struct kvcache_counters c = counters(st);
    assert_int_equal(c.touch_hits, 2);
    assert_int_equal(c.touch_misses, 1);
    assert_int_equal(c.cmd_touch, 3);
    kvcache_store_destroy(st);
}

/* hugepages: slab pages carved from one 2 MiB-aligned reservation, the hash
 * table (and its regrowths) on mapped memory; the same commands give the
 * same replies, counters and slab figures as on malloc's memory (eviction
 * under the limit, expiry's reuse, deletes, several classes, the table
 * grown from 16 buckets), every item inside the reservation, which holds
 * exactly the pages total_malloced counts */
static void test_kvcache_store_hugepages_same_as_malloc(void **state)
{
    (void)state;
    struct kvcache_store *st[2];
    for (int h = 0; h < 2; h++)
        st[h] = mk_store(6 << 20, 4, h == 1);
    const void *base = NULL;
    uint64_t size = 0, used = 0;
    assert_false(kvcache_store_region(st[0], &base, &size, &used));
    assert_false(kvcache_store_region(st[1], &base, &size, &used)); /* no page yet */
    static char val[3000];
    memset(val, 'v', sizeof(val));
    char key[32];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 60000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int kl = snprintf(key, sizeof(key), "k%u", (unsigned)(x % 20000));
        size_t vl = (size_t)(x >> 40) % sizeof(val);
        int op = (int)((x >> 20) % 10);
        if (i % 5000 == 4999)
            for (int h = 0; h < 2; h++)
                kvcache_store_set_time(st[h], T0 + (uint64_t)i / 5000);
        int r[2];
        uint32_t nb[2] = {0, 0};
        for (int h = 0; h < 2; h++) {
            struct kvcache_view v;
            if (op < 5) {
                r[h] = kvcache_store_set(st[h], KVCACHE_SET, key, (size_t)kl, 7, (int64_t)(x % 3),
                                         val, vl, 0, 0, NULL);
            } else if (op < 9) {
                r[h] = kvcache_store_get(st[h], key, (size_t)kl, false, false, 0, true, &v);
                if (r[h])
                    nb[h] = v.nbytes;
                if (h == 1 && r[h]) {
                    assert_true(kvcache_store_region(st[1], &base, &size, &used));
                    assert_true((const char *)v.value >= (const char *)base &&
                                (const char *)v.value < (const char *)base + used);
                }
            } else {
                r[h] = kvcache_store_delete(st[h], key, (size_t)kl, 0);
            }
        }
        assert_int_equal(r[0], r[1]);
        assert_int_equal(nb[0], nb[1]);
    }
    struct kvcache_counters c0 = counters(st[0]), c1 = counters(st[1]);
    assert_true(c0.evictions > 0 && c0.reclaimed > 0);
    assert_true(c0.hash_bytes > 16 * sizeof(void *));
    assert_memory_equal(&c0, &c1, sizeof(c0));
    unsigned n = kvcache_store_nclasses(st[0]);
    assert_int_equal(n, kvcache_store_nclasses(st[1]));
    for (unsigned i = 1; i <= n; i++) {
        struct kvcache_class_stats a = {0}, b = {0};
        kvcache_store_class_stats(st[0], i, &a);
        kvcache_store_class_stats(st[1], i, &b);
        assert_memory_equal(&a, &b, sizeof(a));
    }
    assert_true(kvcache_store_region(st[1], &base, &size, &used));
    assert_int_equal((uintptr_t)base % (2u << 20), 0);
    assert_int_equal(size % (2u << 20), 0);
    assert_int_equal(used, c1.total_malloced);
    assert_true(size >= used);
    for (int h = 0; h < 2; h++)
        kvcache_store_destroy(st[h]);
}

static void test_kvcache_store_hash_table_grows(void **state)
{
    (void)state;
    struct kvcache_store *st = mk(256 << 20);
    char key[32];
    uint64_t n = 300000;
    for (uint64_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof(key), "key:%llu", (unsigned long long)i);
        assert_int_equal(kvcache_store_set(st, KVCACHE_SET, key, (size_t)kl, 0, 0, "v", 1, 0, 0,
                                           NULL),
                         KVCACHE_STORED);
    }
    struct kvcache_counters c = counters(st);
    assert_int_equal(c.curr_items, n);
    assert_true(c.hash_bytes > (1u << 16) * sizeof(void *));
    for (uint64_t i = 0; i < n; i += 997) {
        snprintf(key, sizeof(key), "key:%llu", (unsigned long long)i);
        assert_true(has(st, key));
    }
    kvcache_store_destroy(st);
}

/* every byte of a key counts, at every length (the 16-byte steps, the
 * 8-byte and the short tails), and the length itself counts */
static void test_kvcache_store_hash_every_byte_counts(void **state)
{
    (void)state;
    unsigned char k[80];
    for (size_t i = 0; i < sizeof(k); i++)
        k[i] = (unsigned char)('a' + i % 26);
    for (size_t n = 1; n <= 72; n++) {
        uint64_t h = kvcache_hash(k, n, 7);
        assert_true(h != kvcache_hash(k, n - 1, 7));
        assert_true(h != kvcache_hash(k, n, 8));
        for (size_t i = 0; i < n; i++) {
            for (unsigned bit = 0; bit < 8; bit++) {
                k[i] ^= (unsigned char)(1u << bit);
                assert_true(kvcache_hash(k, n, 7) != h);
                k[i] ^= (unsigned char)(1u << bit);
            }
        }
        assert_true(kvcache_hash(k, n, 7) == h);
    }
    /* keys that differ only by trailing zero bytes */
    unsigned char z[24] = {0};
    for (size_t n = 1; n < sizeof(z); n++)
        assert_true(kvcache_hash(z, n, 7) != kvcache_hash(z, n - 1, 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kvcache_store_classes_grow_by_factor),
        cmocka_unit_test(test_kvcache_store_set_get_delete),
        cmocka_unit_test(test_kvcache_store_expiry_relative_absolute_negative),
        cmocka_unit_test(test_kvcache_store_expired_memory_is_reused),
        cmocka_unit_test(test_kvcache_store_lru_eviction_small_memory),
        cmocka_unit_test(test_kvcache_store_lru_read_item_kept_once),
        cmocka_unit_test(test_kvcache_store_first_page_per_class),
        cmocka_unit_test(test_kvcache_store_too_large),
        cmocka_unit_test(test_kvcache_store_cas_conflicts),
        cmocka_unit_test(test_kvcache_store_cas_interleaved_shards),
        cmocka_unit_test(test_kvcache_store_counters_wrap),
        cmocka_unit_test(test_kvcache_store_flush_now_and_delayed),
        cmocka_unit_test(test_kvcache_store_append_prepend_add_replace),
        cmocka_unit_test(test_kvcache_store_touch_and_gat),
        cmocka_unit_test(test_kvcache_store_hash_table_grows),
        cmocka_unit_test(test_kvcache_store_hugepages_same_as_malloc),
        cmocka_unit_test(test_kvcache_store_hash_every_byte_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
