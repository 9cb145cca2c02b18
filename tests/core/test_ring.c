/* Tests of the SPSC ring of core/ring_internal.h: empty and full, staged
 * entries invisible until published, index wrap-around, bursts, and plain
 * producer/consumer threads checking every sequence number and the data the
 * entries point to (with buffers going back on a second ring, as the mesh
 * returns them).
 *
 * Needs nothing but the header, so scripts/tsan-ring also builds it alone
 * under ThreadSanitizer:
 *
 *   cc -std=gnu11 -fsanitize=thread -Icore tests/core/test_ring.c -lcmocka -lpthread
 *
 * Threads never call cmocka's assertions (they longjmp to the runner): they
 * count errors, and the test function checks the counts after joining. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ring_internal.h"

/* Count multiplier from HYDRA_TEST_SCALE, as tests/support does (this file
 * does not link the support code, see above). */
static uint64_t scaled(uint64_t n)
{
    const char *e = getenv("HYDRA_TEST_SCALE");
    double s = e ? atof(e) : 1.0;
    if (s <= 0)
        s = 1.0;
    double v = (double)n * s;
    return v < 1 ? 1 : (uint64_t)v;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct hy_ring *ring_new(uint32_t size)
{
    void *mem = NULL;
    if (posix_memalign(&mem, HY_CACHE_LINE, hy__ring_bytes(size)) != 0)
        abort();
    struct hy_ring *r = mem;
    memset(r, 0xa5, hy__ring_bytes(size)); /* init must not rely on zeroed memory */
    hy__ring_init(r, size);
    return r;
}

/* Sets every index of an empty ring to start (to test wrap-around). */
static void ring_set_start(struct hy_ring *r, uint32_t start)
{
    atomic_store(&r->head, start);
    atomic_store(&r->tail, start);
    r->head_local = start;
    r->tail_cache = start;
    r->head_pub = start;
    r->head_cache = start;
    r->tail_local = start;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* ---- single-threaded behaviour --------------------------------------------- */

#define LINE_OF(f) (offsetof(struct hy_ring, f) / HY_CACHE_LINE)

/* What each side writes per entry (the staged head, the cached indexes) is on
 * a line of its own, apart from the index the other side reads (head, tail):
 * an idle consumer polling head must not take the producer's working line
 * away at every poll, nor the producer checking tail the consumer's. */
static void test_ring_private_state_apart_from_published_indexes(void **state)
{
    (void)state;
    assert_int_equal(offsetof(struct hy_ring, head) % HY_CACHE_LINE, 0);
    assert_int_not_equal(LINE_OF(head), LINE_OF(head_local));
    assert_int_equal(LINE_OF(head_local), LINE_OF(tail_cache));
    assert_int_equal(LINE_OF(head_local), LINE_OF(head_pub));
    assert_int_equal(LINE_OF(head_local), LINE_OF(mask));
    assert_int_not_equal(LINE_OF(tail), LINE_OF(head_local));
    assert_int_not_equal(LINE_OF(tail), LINE_OF(head_cache));
    assert_int_not_equal(LINE_OF(head), LINE_OF(head_cache));
    assert_int_equal(LINE_OF(head_cache), LINE_OF(tail_local));
    assert_int_equal(LINE_OF(head_cache), LINE_OF(cmask));
    assert_int_not_equal(LINE_OF(head_cache), LINE_OF(head_local));
    assert_true(offsetof(struct hy_ring, slots) / HY_CACHE_LINE > LINE_OF(head_cache));
    assert_int_equal(offsetof(struct hy_ring, slots) % HY_CACHE_LINE, 0);
}

static void test_ring_empty_and_full(void **state)
{
    (void)state;
    struct hy_ring *r = ring_new(16);
    uintptr_t out[64];
    assert_true(hy__ring_empty(r));
    assert_int_equal(hy__ring_pop_burst(r, out, 64), 0);
    for (uintptr_t i = 0; i < 16; i++)
        assert_true(hy__ring_push(r, 100 + i));
    assert_false(hy__ring_push(r, 999)); /* full: 16 staged */
    assert_int_equal(hy__ring_staged(r), 16);
    /* staged entries are invisible until published */
    assert_true(hy__ring_empty(r));
    assert_int_equal(hy__ring_pop_burst(r, out, 64), 0);
    hy__ring_publish(r);
    assert_int_equal(hy__ring_staged(r), 0);
    assert_false(hy__ring_empty(r));
    assert_false(hy__ring_push(r, 999)); /* still full until the consumer pops */
    assert_int_equal(hy__ring_pop_burst(r, out, 64), 16);
    for (uintptr_t i = 0; i < 16; i++)
        assert_int_equal(out[i], 100 + i);
    assert_true(hy__ring_empty(r));
    assert_int_equal(hy__ring_pop_burst(r, out, 64), 0);
    /* the slots came back */
    for (uintptr_t i = 0; i < 16; i++)
        assert_true(hy__ring_push(r, 200 + i));
    assert_false(hy__ring_push(r, 999));
    hy__ring_publish(r);
    assert_int_equal(hy__ring_pop_burst(r, out, 64), 16);
    assert_int_equal(out[0], 200);
    assert_int_equal(out[15], 215);
    free(r);
}

static void test_ring_pop_burst_limits(void **state)
{
    (void)state;
    struct hy_ring *r = ring_new(32);
    uintptr_t out[32];
    for (uintptr_t i = 0; i < 20; i++)
        assert_true(hy__ring_push(r, i));
    hy__ring_publish(r);
    assert_int_equal(hy__ring_pop_burst(r, out, 0), 0);
    assert_int_equal(hy__ring_pop_burst(r, out, 7), 7);
    for (uintptr_t i = 0; i < 7; i++)
        assert_int_equal(out[i], i);
    /* a partial pop frees slots at once: 7 more fit */
    for (uintptr_t i = 20; i < 32 + 7; i++)
        assert_true(hy__ring_push(r, i));
    assert_false(hy__ring_push(r, 999));
    /* only what was published is seen */
    assert_int_equal(hy__ring_pop_burst(r, out, 32), 13);
    for (uintptr_t i = 0; i < 13; i++)
        assert_int_equal(out[i], 7 + i);
    assert_true(hy__ring_empty(r));
    hy__ring_publish(r);
    assert_int_equal(hy__ring_pop_burst(r, out, 32), 19);
    for (uintptr_t i = 0; i < 19; i++)
        assert_int_equal(out[i], 20 + i);
    free(r);
}

/* Indices are free-running 32-bit counters: run through 2^32 with bursts of
 * every size and check FIFO order and the full/empty edges all the way. */
static void test_ring_index_wraparound(void **state)
{
    (void)state;
    uint64_t rs = 42;
    for (uint32_t size = 1; size <= 64; size *= 4) {
        struct hy_ring *r = ring_new(size);
        ring_set_start(r, UINT32_MAX - 3 * size - 5);
        uintptr_t out[64];
        uintptr_t next_in = 1, next_out = 1;
        uint32_t queued; /* published and not popped */
        for (int step = 0; step < 20000; step++) {
            uint32_t n = (uint32_t)(rnd(&rs) % (size + 2));
            uint32_t room = size - (uint32_t)(next_in - next_out);
            uint32_t pushed = 0;
            while (pushed < n && hy__ring_push(r, next_in)) {
                next_in++;
                pushed++;
            }
            /* it refuses exactly when size entries (staged or published)
             * are outstanding */
            assert_int_equal(pushed, n < room ? n : room);
            if ((rnd(&rs) & 1) || next_in - next_out == size)
                hy__ring_publish(r); /* a full ring must be published to drain */
            queued = (uint32_t)(atomic_load(&r->head) - atomic_load(&r->tail));
            uint32_t max = (uint32_t)(rnd(&rs) % (size + 3));
            uint32_t got = hy__ring_pop_burst(r, out, max);
            assert_true(got <= max);
            assert_true(got <= queued);
            /* the consumer may see only up to its cached head, but never
             * nothing when something is published */
            if (max > 0 && queued > 0)
                assert_true(got >= 1);
            for (uint32_t i = 0; i < got; i++)
                assert_int_equal(out[i], next_out++);
            queued = (uint32_t)(atomic_load(&r->head) - atomic_load(&r->tail));
            assert_int_equal(hy__ring_empty(r), queued == 0);
            /* staged entries are never counted as queued */
            assert_int_equal(queued + hy__ring_staged(r), (uint32_t)(next_in - next_out));
        }
        /* we went through the wrap of the 32-bit counters */
        assert_true(atomic_load(&r->tail) < UINT32_MAX - 3 * size - 5);
        free(r);
    }
}

/* ---- two threads ---------------------------------------------------------------- */

/* The producer hands out buffers it owns (written before the push) and gets
 * them back on a return ring, like the mesh: the consumer must see every
 * write made before the publish, and the producer must see the consumer done
 * with a buffer before it writes it again. */
struct item {
    uint64_t seq;
    uint64_t check;
    uint8_t fill[48];
};

struct duo {
    struct hy_ring *fwd, *back;
    uint64_t n;
    uint32_t nbuf;
    struct item *items;
    unsigned max_batch;
    _Atomic uint64_t errors;
    _Atomic int abort;
    uint64_t fulls, empties; /* producer saw full / consumer saw empty */
    uint32_t nfree_end;      /* buffers the producer held at the end */
};

#define STALL_NS (60ull * 1000000000ull) /* no progress this long: give up */

static void *producer(void *arg)
{
    struct duo *d = arg;
    uint64_t rs = 7;
    uintptr_t *free_list = malloc(d->nbuf * sizeof(uintptr_t));
    uint32_t nfree = 0;
    for (uint32_t i = 0; i < d->nbuf; i++)
        free_list[nfree++] = (uintptr_t)&d->items[i];
    uintptr_t back[64];
    uint64_t seq = 0, last_progress = now_ns();
    while (seq < d->n && !atomic_load_explicit(&d->abort, memory_order_relaxed)) {
        /* take back what the consumer is done with */
        uint32_t got;
        while ((got = hy__ring_pop_burst(d->back, back, 64)) != 0)
            for (uint32_t i = 0; i < got; i++)
                free_list[nfree++] = back[i];
        uint64_t batch = 1 + rnd(&rs) % d->max_batch;
        uint64_t done = 0;
        while (done < batch && seq < d->n && nfree > 0) {
            struct item *it = (struct item *)free_list[nfree - 1];
            it->seq = seq;
            it->check = seq * 0x9e3779b97f4a7c15ull;
            memset(it->fill, (int)(seq & 0xff), sizeof(it->fill));
            if (!hy__ring_push(d->fwd, (uintptr_t)it)) {
                d->fulls++;
                break;
            }
            nfree--;
            seq++;
            done++;
        }
        hy__ring_publish(d->fwd);
        if (done) {
            last_progress = now_ns();
        } else {
            sched_yield();
            if (now_ns() - last_progress > STALL_NS) {
                atomic_fetch_add(&d->errors, 1);
                atomic_store(&d->abort, 1);
            }
        }
    }
    d->nfree_end = nfree;
    free(free_list);
    return NULL;
}

static void *consumer(void *arg)
{
    struct duo *d = arg;
    uint64_t rs = 11;
    uintptr_t buf[64];
    uint64_t expect = 0, last_progress = now_ns();
    while (expect < d->n && !atomic_load_explicit(&d->abort, memory_order_relaxed)) {
        uint32_t max = 1 + (uint32_t)(rnd(&rs) % 64);
        uint32_t got = hy__ring_pop_burst(d->fwd, buf, max);
        if (!got) {
            d->empties++;
            sched_yield();
            if (now_ns() - last_progress > STALL_NS) {
                atomic_fetch_add(&d->errors, 1);
                atomic_store(&d->abort, 1);
            }
            continue;
        }
        last_progress = now_ns();
        for (uint32_t i = 0; i < got; i++) {
            struct item *it = (struct item *)buf[i];
            bool ok = it->seq == expect && it->check == expect * 0x9e3779b97f4a7c15ull;
            for (size_t k = 0; ok && k < sizeof(it->fill); k++)
                ok = it->fill[k] == (uint8_t)(expect & 0xff);
            if (!ok && atomic_fetch_add(&d->errors, 1) < 5)
                fprintf(stderr, "ring: expected seq %llu, got %llu\n", (unsigned long long)expect,
                        (unsigned long long)it->seq);
            expect++;
            it->seq = UINT64_MAX; /* poison: the producer rewrites it */
            /* the return ring has room for every buffer: never full */
            if (!hy__ring_push(d->back, (uintptr_t)it))
                atomic_fetch_add(&d->errors, 1);
        }
        hy__ring_publish(d->back);
    }
    return NULL;
}

static void run_duo(uint32_t size, uint64_t n, unsigned max_batch)
{
    struct duo d;
    memset(&d, 0, sizeof(d));
    d.fwd = ring_new(size);
    d.nbuf = size * 2 + 3; /* more buffers than slots: the ring fills */
    uint32_t back_size = 1;
    while (back_size < d.nbuf)
        back_size *= 2;
    d.back = ring_new(back_size);
    d.n = n;
    d.max_batch = max_batch;
    d.items = calloc(d.nbuf, sizeof(struct item));
    assert_non_null(d.items);
    pthread_t p, c;
    assert_int_equal(pthread_create(&c, NULL, consumer, &d), 0);
    assert_int_equal(pthread_create(&p, NULL, producer, &d), 0);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    assert_int_equal(atomic_load(&d.errors), 0);
    assert_int_equal(atomic_load(&d.abort), 0);
    /* every buffer can be had back: nothing was lost on the return path */
    uintptr_t back[64];
    uint32_t total = 0, got;
    while ((got = hy__ring_pop_burst(d.back, back, 64)) != 0)
        total += got;
    assert_int_equal(total + d.nfree_end, d.nbuf);
    assert_true(hy__ring_empty(d.fwd));
    free(d.items);
    free(d.fwd);
    free(d.back);
}

static void test_ring_spsc_threads(void **state)
{
    (void)state;
    run_duo(1024, scaled(2000000), 64);
}

static void test_ring_spsc_small_ring(void **state)
{
    (void)state;
    /* a ring that is full or empty most of the time */
    run_duo(16, scaled(500000), 32);
    run_duo(2, scaled(200000), 4);
}

/* One entry at a time both ways: every publish is seen, in order. */
struct pingpong {
    struct hy_ring *ab, *ba;
    uint64_t n;
    _Atomic uint64_t errors;
};

static void *pong(void *arg)
{
    struct pingpong *pp = arg;
    uintptr_t v;
    for (uint64_t i = 0; i < pp->n; i++) {
        while (hy__ring_pop_burst(pp->ab, &v, 1) == 0)
            sched_yield();
        if (v != 2 * i + 1)
            atomic_fetch_add(&pp->errors, 1);
        while (!hy__ring_push(pp->ba, v + 1))
            sched_yield();
        hy__ring_publish(pp->ba);
    }
    return NULL;
}

static void test_ring_ping_pong(void **state)
{
    (void)state;
    struct pingpong pp = {.ab = ring_new(16), .ba = ring_new(16), .n = scaled(100000)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pong, &pp), 0);
    uintptr_t v = 0;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < pp.n; i++) {
        while (!hy__ring_push(pp.ab, 2 * i + 1))
            bad++; /* never full: one entry in flight */
        hy__ring_publish(pp.ab);
        while (hy__ring_pop_burst(pp.ba, &v, 1) == 0)
            sched_yield();
        if (v != 2 * i + 2)
            bad++;
    }
    pthread_join(t, NULL);
    assert_int_equal(bad, 0);
    assert_int_equal(v, 2 * pp.n);
    assert_int_equal(atomic_load(&pp.errors), 0);
    free(pp.ab);
    free(pp.ba);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_private_state_apart_from_published_indexes),
        cmocka_unit_test(test_ring_empty_and_full),   cmocka_unit_test(test_ring_pop_burst_limits),
        cmocka_unit_test(test_ring_index_wraparound), cmocka_unit_test(test_ring_spsc_threads),
        cmocka_unit_test(test_ring_spsc_small_ring),  cmocka_unit_test(test_ring_ping_pong),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
