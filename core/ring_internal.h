/* Single-producer / single-consumer ring of pointer-sized entries.
 *
 * One per ordered pair of shards. Producer and consumer state live on
 * separate cache lines, each with a cached copy of the other side's index, so
 * that in steady state a push or pop touches only its own line. The producer
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
    /* producer line */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t head; /* published */
    uint32_t head_local;                            /* staged (>= head) */
    uint32_t tail_cache;                            /* last tail seen */
    uint32_t mask;
    /* consumer line */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t tail;
    uint32_t head_cache;
    uint32_t cmask;
    /* slots */
    _Alignas(HY_CACHE_LINE) uintptr_t slots[];
};

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
    r->head_cache = 0;
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
    return r->head_local - atomic_load_explicit(&r->head, memory_order_relaxed);
}

/* Producer: makes every staged entry visible. */
static inline void hy__ring_publish(struct hy_ring *r)
{
    /* release: pairs with the consumer's acquire of head */
    atomic_store_explicit(&r->head, r->head_local, memory_order_release);
}

/* Consumer: copies up to max published entries into out and returns how
 * many; their slots are released at once. */
static inline uint32_t hy__ring_pop_burst(struct hy_ring *r, uintptr_t *out, uint32_t max)
{
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
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
    atomic_store_explicit(&r->tail, t + avail, memory_order_release);
    return avail;
}

/* Consumer: true when nothing is published (acquire load of head). */
static inline bool hy__ring_empty(struct hy_ring *r)
{
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (r->head_cache != t)
        return false;
    r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
    return r->head_cache == t;
}

#endif /* HY_CORE_RING_INTERNAL_H */
