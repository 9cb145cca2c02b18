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
 * A ring may also have an entry array (hy__ring_set_entries): a line per
 * position, indexed by the ring position modulo its own size, that carries
 * a small message whole (struct hy__centry) where a slot would carry a
 * pointer to a buffer. The slot at that position then holds HY_RING_ENTRY.
 * The producer writes one line per such message, as a ring of pointers
 * moves one pointer, and no buffer of its own pool crosses to the other
 * core. An entry is usable only while fewer than its array's size of
 * positions are in use, so its line is never one the consumer has yet to
 * read. Entries and pointers share the one sequence of positions: nothing
 * overtakes anything.
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

/* A slot's value when the message is in the entry array at its position
 * (slots otherwise hold 16-byte aligned pointers, some tagged in bits 0-1). */
#define HY_RING_ENTRY ((uintptr_t)4)

/* Payload bytes a ring entry carries. */
#define HY_RING_ENTRY_DATA 32

/* A small ordinary message in one line of a ring's entry array. The pids'
 * high halves are not carried: the consumer rebuilds them (this node, this
 * creation, the producing shard for the sender, its own for the receiver). */
struct hy__centry {
    uint64_t tag;
    uint64_t from_lo; /* the sender pid's low half (slot, generation) */
    uint64_t to_lo;   /* the receiver pid's low half */
    uint32_t size;    /* payload bytes, <= HY_RING_ENTRY_DATA */
    uint32_t flags;   /* HY__CE_NO_SENDER */
    uint8_t data[HY_RING_ENTRY_DATA];
};
#define HY__CE_NO_SENDER 1u /* sent outside a process: from is HY_PID_NONE */
_Static_assert(sizeof(struct hy__centry) == HY_CACHE_LINE, "an entry is one line");

struct hy_ring {
    /* published by the producer, polled by the consumer */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t head;
    /* the producer's own line */
    _Alignas(HY_CACHE_LINE) uint32_t head_local; /* staged (>= head) */
    uint32_t tail_cache;                          /* last tail seen */
    uint32_t head_pub;                            /* == head (only the producer writes it) */
    uint32_t mask;
    struct hy__centry *ents;                      /* entry array (NULL: none) */
    uint32_t emask;                               /* its size - 1 (<= mask) */
    /* published by the consumer, read by the producer when full */
    _Alignas(HY_CACHE_LINE) _Atomic uint32_t tail;
    /* the consumer's own line */
    _Alignas(HY_CACHE_LINE) uint32_t head_cache; /* last head seen */
    uint32_t tail_local;                          /* == tail (only the consumer writes it) */
    uint32_t cmask;
    const struct hy__centry *cents;               /* == ents */
    uint32_t cemask;                              /* == emask */
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
    r->ents = NULL;
    r->cents = NULL;
    r->emask = 0;
    r->cemask = 0;
}

/* Gives an empty ring an entry array of n lines (a power of two, at most
 * the ring's size; borrowed: the caller frees it after the ring). */
static inline void hy__ring_set_entries(struct hy_ring *r, struct hy__centry *ents, uint32_t n)
{
    r->ents = ents;
    r->cents = ents;
    r->emask = n - 1;
    r->cemask = n - 1;
}

/* Producer: the entry at the next position, for the caller to fill and
 * then stage with hy__ring_entry_commit(); NULL when the ring has no entry
 * array or fewer than its size of positions are free (send a pointer). */
static inline struct hy__centry *hy__ring_entry_reserve(struct hy_ring *r)
{
    uint32_t h = r->head_local;
    struct hy__centry *ents = r->ents;
    if (__builtin_expect(!ents, 0))
        return NULL;
    if (__builtin_expect(h - r->tail_cache > r->emask, 0)) {
        /* acquire: pairs with the consumer's release of tail (it has read
         * the entry this position last held) */
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h - r->tail_cache > r->emask)
            return NULL;
    }
    return &ents[h & r->emask];
}

/* Positions ahead of the next one whose entry line, and slot, the
 * producer fetches for writing at each entry it writes: their last reader
 * was the consumer's core, and moving a line between the cores takes longer
 * than several sends (with 2 lines ahead, the producer waited for them). */
#define HY_RING_PREFETCH_ENTRY 8
#define HY_RING_PREFETCH_SLOT 16

/* Producer, after filling the entry hy__ring_entry_reserve() returned (and
 * before staging it): fetches for writing the entry line and the slot a
 * later push writes, HY_RING_PREFETCH_ENTRY and HY_RING_PREFETCH_SLOT
 * positions on, when the consumer is done with them as far as the tail
 * last seen says (else the prefetch would take a line from the consumer
 * before it has read it: a near-full ring, the consumer behind). A hint. */
static inline __attribute__((always_inline)) void hy__ring_entry_prefetch(const struct hy_ring *r)
{
    _Static_assert(HY_RING_PREFETCH_ENTRY <= HY_RING_PREFETCH_SLOT, "one bound for both");
    uint32_t h = r->head_local;
    if (__builtin_expect(h + HY_RING_PREFETCH_SLOT - r->tail_cache <= r->emask, 1)) {
        hy__prefetch_w(&r->ents[(h + HY_RING_PREFETCH_ENTRY) & r->emask]);
        hy__prefetch_w(&r->slots[(h + HY_RING_PREFETCH_SLOT) & r->mask]);
    }
}

/* Producer: true when a pointer could still be pushed, as far as the tail
 * last seen says (the entry array may be smaller than the ring). */
static inline bool hy__ring_has_room(const struct hy_ring *r)
{
    return r->head_local - r->tail_cache <= r->mask;
}

/* Producer: stages the entry hy__ring_entry_reserve() returned. */
static inline void hy__ring_entry_commit(struct hy_ring *r)
{
    uint32_t h = r->head_local;
    r->slots[h & r->mask] = HY_RING_ENTRY;
    r->head_local = h + 1;
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

/* Consumer: copies up to max published entries into out and returns how
 * many, without releasing their slots: the entries of the array at those
 * positions (hy__ring_entry_at) stay the consumer's to read until
 * hy__ring_release(). */
static inline uint32_t hy__ring_peek_burst(struct hy_ring *r, uintptr_t *out, uint32_t max)
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
    return avail;
}

/* Consumer: how many positions are published and not yet released, at
 * most max (acquire load of head only when the last one seen is used up). */
static inline uint32_t hy__ring_avail(struct hy_ring *r, uint32_t max)
{
    uint32_t t = r->tail_local;
    uint32_t avail = r->head_cache - t;
    if (avail == 0) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        avail = r->head_cache - t;
    }
    return avail > max ? max : avail;
}

/* Consumer: the slot k positions past the first unreleased one (k below
 * what hy__ring_avail returned). */
static inline uintptr_t hy__ring_slot_at(const struct hy_ring *r, uint32_t k)
{
    return r->slots[(r->tail_local + k) & r->cmask];
}

/* Consumer: the entry of the k-th position of the burst peeked last (its
 * slot held HY_RING_ENTRY). */
static inline const struct hy__centry *hy__ring_entry_at(const struct hy_ring *r, uint32_t k)
{
    return &r->cents[(r->tail_local + k) & r->cemask];
}

/* Consumer: releases the first n positions peeked. */
static inline void hy__ring_release(struct hy_ring *r, uint32_t n)
{
    uint32_t t = r->tail_local + n;
    r->tail_local = t;
    /* release: the slots and entries were read before the producer may
     * overwrite them */
    atomic_store_explicit(&r->tail, t, memory_order_release);
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
