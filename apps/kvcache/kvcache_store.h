/* kvcache_store: one shard's cache: items in a slab allocator with
 * memcached's size classes, a hash table, an LRU list per class, expiry and
 * the counters that `stats`, `stats slabs` and `stats items` report.
 *
 * A store belongs to one shard's key-owner process and is used only from that
 * shard (by the owner and by the connections running there, which never
 * yield inside a call): no locks. Times are seconds on the store's clock,
 * which the caller sets (kvcache_store_set_time): the server from the wall
 * clock, tests by hand.
 *
 * Memory: pages of page_size bytes (1 MiB, or -I when larger) are taken
 * from malloc until the limit; a class is always given its first page, as
 * memcached does. When a class has no free chunk and no page can be had,
 * expired items at the tail of its LRU are reclaimed, else the least
 * recently used item is evicted (counted in `evictions`). Chunks freed by
 * delete, replacement or expiry go back to their class's free list. */
#ifndef HY_APPS_KVCACHE_STORE_H
#define HY_APPS_KVCACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The per-command code (parse, run, reply, forward) sits together at the
 * start of the program's text, on as few pages as possible: with the
 * kernel's page-table isolation and no PCID every system call empties the
 * TLB, and each distinct page a command touches then costs a page walk.
 * KV_COLD keeps a rarely taken branch's code (and its stack frame) out of
 * its hot caller. */
#define KV_HOT __attribute__((section(".text.hot.kvcache")))
#define KV_COLD __attribute__((noinline, cold))

#define KVCACHE_KEY_MAX 250
#define KVCACHE_MAX_CLASSES 64
#define KVCACHE_CHUNK_MIN 48          /* memcached's -n default */
#define KVCACHE_REALTIME_MAXDELTA 2592000 /* 30 days: larger exptimes are unix times */

struct kvcache_store_settings {
    uint64_t maxbytes;      /* this store's memory limit (bytes) */
    uint32_t item_size_max; /* largest item (header, key and value), bytes */
    double factor;          /* growth factor of the size classes (1.25) */
    uint32_t chunk_min;     /* smallest chunk's data part (48) */
    uint64_t started;       /* unix time of the store clock's zero */
    uint64_t cas_first;     /* first cas value handed out (>= 1) */
    uint64_t cas_step;      /* step between cas values (>= 1): shards interleave */
    unsigned hashpower;     /* initial hash table: 2^hashpower buckets (0: 16) */
    bool hugepages;         /* slab pages carved from one 2 MiB-aligned reservation and
                             * the hash table on 2 MiB-aligned memory, both advised
                             * MADV_HUGEPAGE (transparent huge pages where the kernel
                             * gives them; plain pages, same behaviour, where not);
                             * false: malloc and calloc */
};

/* Counters summed over shards for `stats` (every field a uint64_t, so a sum
 * is a loop over the struct). */
struct kvcache_counters {
    uint64_t curr_items, total_items, bytes;
    uint64_t cmd_get, cmd_set, cmd_touch, cmd_flush;
    uint64_t get_hits, get_misses, get_expired, get_flushed;
    uint64_t delete_hits, delete_misses;
    uint64_t incr_hits, incr_misses, decr_hits, decr_misses;
    uint64_t cas_hits, cas_misses, cas_badval;
    uint64_t touch_hits, touch_misses;
    uint64_t store_too_large, store_no_memory;
    uint64_t evictions, reclaimed, expired_unfetched, evicted_unfetched;
    uint64_t total_malloced, hash_bytes;
};

/* One size class as `stats slabs` and `stats items` report it. */
struct kvcache_class_stats {
    uint32_t chunk_size, chunks_per_page;
    uint64_t total_pages, total_chunks, used_chunks, free_chunks, free_chunks_end;
    uint64_t get_hits, cmd_set, delete_hits, incr_hits, decr_hits, cas_hits, cas_badval,
        touch_hits;
    uint64_t number, age, mem_requested, evicted, evicted_nonzero, evicted_time, outofmemory,
        reclaimed, expired_unfetched, evicted_unfetched;
};

/* Outcome of a store command (names as memcached replies them). */
enum kvcache_result {
    KVCACHE_STORED,
    KVCACHE_NOT_STORED,
    KVCACHE_EXISTS,
    KVCACHE_NOT_FOUND,
    KVCACHE_DELETED,
    KVCACHE_TOUCHED,
    KVCACHE_TOO_LARGE,
    KVCACHE_NO_MEMORY,
    KVCACHE_NON_NUMERIC,
};

enum kvcache_set_mode {
    KVCACHE_SET,
    KVCACHE_ADD,
    KVCACHE_REPLACE,
    KVCACHE_APPEND,
    KVCACHE_PREPEND,
    KVCACHE_CAS,
};

/* A view of an item, valid until the next call on its store. */
struct kvcache_view {
    const char *key;
    const char *value; /* nbytes bytes followed by "\r\n" */
    uint32_t nkey, nbytes, flags;
    uint64_t cas;
    int64_t ttl;       /* seconds left, -1 never expires */
    int64_t idle;      /* seconds since the last access */
    uint32_t cls;      /* size class */
    uint32_t total;    /* bytes the item takes (header, key, value) */
    bool fetched;      /* read before this access */
    bool stale;        /* invalidated by a meta command (I flag) */
    bool win_sent;     /* a recache token was handed out */
};

struct kvcache_store;

/* Creates a store. Returns NULL on bad settings (factor <= 1,
 * item_size_max < 1 KiB) or out of memory. Returns owned (destroy). */
struct kvcache_store *kvcache_store_create(const struct kvcache_store_settings *s);

/* Frees the store and all its items and pages. NULL is a no-op. */
void kvcache_store_destroy(struct kvcache_store *st);

/* The store's slab reservation (settings.hugepages): *base its start (2 MiB
 * aligned), *size its length, *used the bytes carved into slab pages so far.
 * Returns false (outputs untouched) when the store has none: hugepages off,
 * no page taken yet, or the mmap failed (pages then come from malloc). */
bool kvcache_store_region(const struct kvcache_store *st, const void **base, uint64_t *size,
                          uint64_t *used);

/* Sets the clock: unix_now is a unix time in seconds (>= started). */
void kvcache_store_set_time(struct kvcache_store *st, uint64_t unix_now);

/* The clock as memcached keeps it: seconds since settings.started. */
uint32_t kvcache_store_now(const struct kvcache_store *st);

/* Converts a protocol exptime (0 never, negative already expired, up to 30
 * days relative, beyond a unix time) to the store clock (0 = never). */
uint32_t kvcache_store_exptime(const struct kvcache_store *st, int64_t exptime);

/* Seeded 64-bit hash of a key. */
uint64_t kvcache_hash(const void *key, size_t n, uint64_t seed);

/* The one hash of a key a command computes: its owner shard takes the high
 * bits (kvcache_hash_owner), its bucket in the owner's store the low ones.
 * The store's calls that take a key come in two forms: X(st, key, nkey, ...)
 * hashes the key, X_hashed(st, key, nkey, h, ...) is given its hash
 * h == kvcache_key_hash(key, nkey) (a forwarded command carries it). */
#define KVCACHE_KEY_SEED 0x6b7663616368ull
static inline uint64_t kvcache_key_hash(const void *key, size_t n)
{
    return kvcache_hash(key, n, KVCACHE_KEY_SEED);
}

/* Looks key up. touch: also set its exptime (gat); bump: mark it fetched
 * and recently used: it is not moved now (that would write its LRU
 * neighbours), it is marked active, and an eviction that finds an active
 * item at its LRU's tail moves it to the head instead (memcached's
 * ITEM_ACTIVE; at most 64 such moves per eviction). Counts cmd_get/get_hits/get_misses
 * (and touch counters when touch) when count is true. Returns true and fills
 * v on a hit. */
bool kvcache_store_get_hashed(struct kvcache_store *st, const char *key, size_t nkey,
                              uint64_t h, bool count, bool touch, int64_t exptime, bool bump, struct kvcache_view *v);
static inline bool kvcache_store_get(struct kvcache_store *st, const char *key, size_t nkey,
                                     bool count, bool touch, int64_t exptime, bool bump,
                                     struct kvcache_view *v)
{
    return kvcache_store_get_hashed(st, key, nkey, kvcache_key_hash(key, nkey), count, touch,
                                    exptime, bump, v);
}

/* Stores a value (copied). cas_in is compared for KVCACHE_CAS (and for
 * other modes when non-zero, as the meta protocol's C flag does); flags and
 * exptime are ignored by APPEND/PREPEND. cas_new, when non-zero, is the cas
 * to give the item (meta E flag). On success *cas_out (may be NULL) gets the
 * item's cas. stale marks the stored item stale (meta I flag on a cas
 * mismatch). Returns KVCACHE_STORED, NOT_STORED, EXISTS, NOT_FOUND,
 * TOO_LARGE or NO_MEMORY. */
enum kvcache_result kvcache_store_set_hashed(struct kvcache_store *st,
                                             enum kvcache_set_mode mode, const char *key,
                                             size_t nkey, uint64_t h, uint32_t flags,
                                             int64_t exptime, const void *data, size_t nbytes,
                                             uint64_t cas_in, uint64_t cas_new,
                                             uint64_t *cas_out);
static inline enum kvcache_result kvcache_store_set(struct kvcache_store *st,
                                                    enum kvcache_set_mode mode, const char *key,
                                                    size_t nkey, uint32_t flags, int64_t exptime,
                                                    const void *data, size_t nbytes,
                                                    uint64_t cas_in, uint64_t cas_new,
                                                    uint64_t *cas_out)
{
    return kvcache_store_set_hashed(st, mode, key, nkey, kvcache_key_hash(key, nkey), flags,
                                    exptime, data, nbytes, cas_in, cas_new, cas_out);
}

/* Whether an item of nkey and nbytes could ever be stored (TOO_LARGE). */
bool kvcache_store_fits(const struct kvcache_store *st, size_t nkey, size_t nbytes);

/* Deletes key (if cas_in is non-zero, only when the cas matches: else
 * EXISTS). Returns DELETED or NOT_FOUND or EXISTS. */
enum kvcache_result kvcache_store_delete_hashed(struct kvcache_store *st, const char *key,
                                                size_t nkey, uint64_t h, uint64_t cas_in);
static inline enum kvcache_result kvcache_store_delete(struct kvcache_store *st, const char *key,
                                                       size_t nkey, uint64_t cas_in)
{
    return kvcache_store_delete_hashed(st, key, nkey, kvcache_key_hash(key, nkey), cas_in);
}

/* Marks key stale and gives it a new cas (meta delete with I); exptime
 * non-negative also sets its ttl. Returns DELETED or NOT_FOUND or EXISTS. */
enum kvcache_result kvcache_store_invalidate(struct kvcache_store *st, const char *key,
                                             size_t nkey, uint64_t cas_in, int64_t exptime);

/* Records that a recache token was handed out for key (meta W flag). */
void kvcache_store_mark_win(struct kvcache_store *st, const char *key, size_t nkey);

/* Adds (incr) or subtracts (decr, floored at 0) delta to the decimal value
 * of key, 64-bit unsigned with wrap-around as memcached does; a shorter
 * result is padded with spaces in place. *value gets the new value, *cas_out
 * (may be NULL) the item's cas. cas_in non-zero must match (else EXISTS).
 * Returns STORED, NOT_FOUND, NON_NUMERIC, EXISTS or NO_MEMORY. */
enum kvcache_result kvcache_store_delta_hashed(struct kvcache_store *st, const char *key,
                                               size_t nkey, uint64_t h, bool incr, uint64_t delta,
                                               uint64_t cas_in, uint64_t *value,
                                               uint64_t *cas_out);
static inline enum kvcache_result kvcache_store_delta(struct kvcache_store *st, const char *key,
                                                      size_t nkey, bool incr, uint64_t delta,
                                                      uint64_t cas_in, uint64_t *value,
                                                      uint64_t *cas_out)
{
    return kvcache_store_delta_hashed(st, key, nkey, kvcache_key_hash(key, nkey), incr, delta,
                                      cas_in, value, cas_out);
}

/* Sets the exptime of key. Returns TOUCHED or NOT_FOUND. */
enum kvcache_result kvcache_store_touch_hashed(struct kvcache_store *st, const char *key,
                                               size_t nkey, uint64_t h, int64_t exptime);
static inline enum kvcache_result kvcache_store_touch(struct kvcache_store *st, const char *key,
                                                      size_t nkey, int64_t exptime)
{
    return kvcache_store_touch_hashed(st, key, nkey, kvcache_key_hash(key, nkey), exptime);
}

/* Invalidates every item now (delay <= 0) or at now + delay (an exptime as
 * for items: relative or a unix time). */
void kvcache_store_flush(struct kvcache_store *st, int64_t delay);

/* Adds this store's counters to *c. */
void kvcache_store_counters(const struct kvcache_store *st, struct kvcache_counters *c);

/* Number of size classes (1..n are valid class ids). */
unsigned kvcache_store_nclasses(const struct kvcache_store *st);

/* Adds class cls's figures to *out (age: the age of its LRU tail). */
void kvcache_store_class_stats(const struct kvcache_store *st, unsigned cls,
                               struct kvcache_class_stats *out);

/* Resets the counters (`stats reset`). */
void kvcache_store_reset(struct kvcache_store *st);

/* Size class for an item of ntotal bytes; 0 when too large. */
unsigned kvcache_store_class_of(const struct kvcache_store *st, size_t ntotal);

/* Bytes an item of nkey and nbytes takes. */
size_t kvcache_store_item_size(size_t nkey, size_t nbytes);


#endif /* HY_APPS_KVCACHE_STORE_H */
