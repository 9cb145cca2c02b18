/* Single-producer / single-consumer ring of pointer-sized entries.
 *
 * One per ordered pair of shards. Four cache lines before the slots: the
 * published head (written by the producer once per batch, read by the
 * consumer), the producer's private state (staged head, cached tail: written
 * per push), the published tail (written by the consumer once per burst,
 * read by the producer when the ring looks full) and the consumer's private
 * state (cached head). The private lines never move between the cores, so a
 * push costs no coherence miss however often an idle consumer polls head
 * (with head_local beside head, every poll took the line away from the
 * producer and its next push paid a miss). The producer
 * stages entries and publishes them in batches (hy__ring_publish); the
 * consumer releases slots in batches (after a drain).
 *
 * Memory ordering: the producer writes slots, then store-releases `head`;
 * the consumer load-acquires `head` before reading slots (pairs with it).
 * The consumer store-releases `tail` after it has read the slots; the
 * producer load-acquires `tail` before overwriting them (pairs with it).
 */
#ifndef HY_CORE_RING_INTERNAL_H
#define HY_CORE_RING_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define HY_CACHE_LINE 64

struct hy_ring {
    /* published by the producer, polled by the consumer */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t head;
    /* the producer's own line */
    _Alignas(HY_CACHE_LINE) uint32_t head_local; /* staged (>= head) */
    uint32_t tail_cache;                          /* last tail seen */
    uint32_t head_pub;                            /* == head (only the producer writes it) */
    uint32_t mask;
    /* published by the consumer, read by the producer when full */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t tail;
    /* the consumer's own line */
    _Alignas(HY_CACHE_LINE) uint32_t head_cache; /* last head seen */
    uint32_t tail_local;                          /* == tail (only the consumer writes it) */
    uint32_t cmask;
    /* slots */
    _Alignas(HY_CACHE_LINE) uintptr_t slots[];
};

/* Fetches the line holding p for writing (exclusive), so that a store to a
 * line last written by another core pays one transfer, not a shared copy
 * and then an upgrade. __builtin_prefetch(p, 1, 3) emits a plain read
 * prefetch on x86-64 unless the build targets PRFCHW; PREFETCHW is a hint
 * (never faults, NULL included) that processors without it execute as a
 * no-op. */
static inline __attribute__((always_inline)) void hy__prefetch_w(const void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw (%0)" : : "r"(p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* Bytes needed for a ring of `size` slots (power of two). */
static inline size_t hy__ring_bytes(uint32_t size)
{
    return sizeof(struct hy_ring) + (size_t)size * sizeof(uintptr_t);
}

static inline void hy__ring_init(struct hy_ring *r, uint32_t size)
{
    atomic_store_explicit(&r->head, 0, memory_order_relaxed);
    atomic_store_explicit(&r->tail, 0, memory_order_relaxed);
    r->head_local = 0;
    r->tail_cache = 0;
    r->head_pub = 0;
    r->head_cache = 0;
    r->tail_local = 0;
    r->mask = size - 1;
    r->cmask = size - 1;
}

/* Producer: stages one entry; false when the ring is full. The entry is
 * invisible to the consumer until hy__ring_publish(). */
static inline bool hy__ring_push(struct hy_ring *r, uintptr_t v)
{
    uint32_t h = r->head_local;
    if (h - r->tail_cache > r->mask) {
        /* acquire: pairs with the consumer's release of tail */
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h - r->tail_cache > r->mask)
            return false;
    }
    r->slots[h & r->mask] = v;
    r->head_local = h + 1;
    return true;
}

/* Producer: entries staged and not yet published. */
static inline uint32_t hy__ring_staged(const struct hy_ring *r)
{
    return r->head_local - r->head_pub;
}

/* Producer: makes every staged entry visible. */
static inline void hy__ring_publish(struct hy_ring *r)
{
    r->head_pub = r->head_local;
    /* release: pairs with the consumer's acquire of head */
    atomic_store_explicit(&r->head, r->head_local, memory_order_release);
}

/* Consumer: copies up to max published entries into out and returns how
 * many; their slots are released at once. */
static inline uint32_t hy__ring_pop_burst(struct hy_ring *r, uintptr_t *out, uint32_t max)
{
    uint32_t t = r->tail_local;
    uint32_t avail = r->head_cache - t;
    if (avail == 0) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        avail = r->head_cache - t;
        if (avail == 0)
            return 0;
    }
    if (avail > max)
        avail = max;
    for (uint32_t i = 0; i < avail; i++)
        out[i] = r->slots[(t + i) & r->cmask];
    r->tail_local = t + avail;
    atomic_store_explicit(&r->tail, t + avail, memory_order_release);
    return avail;
}

/* Consumer: true when nothing is published (acquire load of head). */
static inline bool hy__ring_empty(struct hy_ring *r)
{
    uint32_t t = r->tail_local;
    if (r->head_cache != t)
        return false;
    r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
    return r->head_cache == t;
}

#endif /* HY_CORE_RING_INTERNAL_H */
