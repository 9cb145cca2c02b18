/* kvcache_store: slab classes, hash table, per-class LRU, expiry. */
#include "kvcache_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define IT_FETCHED 1u
#define IT_STALE 2u
#define IT_WIN 4u
#define IT_ACTIVE 8u /* read since it was last put at its LRU's head */
#define LRU_ROTATE_MAX 64 /* active tail items moved to the head per eviction, at most */

struct kv_item {
    struct kv_item *hnext;
    struct kv_item *prev, *next; /* LRU: prev is towards the head (newest) */
    uint64_t cas;
    uint32_t exptime; /* store clock, 0 = never */
    uint32_t atime;   /* last access, store clock */
    uint32_t flags;
    uint32_t nbytes;  /* value length without the trailing CRLF */
    uint32_t hlo;     /* the key's hash, low half: its bucket without hashing
                       * again (the header's size is unchanged: it was padding) */
    uint8_t nkey;
    uint8_t cls;
    uint8_t iflags;
    char data[];      /* key, value, "\r\n" */
};

struct kv_free {
    struct kv_free *next;
};

struct kv_class {
    uint32_t size, perslab;
    struct kv_free *freelist;
    uint64_t nfree;
    char *end_ptr;      /* uncarved part of the newest page */
    uint64_t end_free;  /* chunks left there */
    uint64_t pages;
    struct kv_item *head, *tail;
    struct kvcache_class_stats st; /* the counters (figures computed on demand) */
};

struct kvcache_store {
    struct kvcache_store_settings set;
    uint32_t page_size;
    unsigned nclasses;
    struct kv_class cls[KVCACHE_MAX_CLASSES + 1];
    struct kv_item **buckets;
    uint64_t nbuckets; /* a power of two */
    char **pages;
    uint64_t npages, pages_cap;
    uint64_t table_map; /* bytes mapped for buckets (hugepages), 0: calloc'd */
    char *region;       /* hugepages: the slab pages' reservation (NULL: none yet) */
    uint64_t region_size, region_used;
    bool region_failed; /* its mmap failed: pages from malloc */
    uint32_t now;
    uint32_t oldest_live; /* flush_all with a delay: items touched before it are gone */
    uint64_t oldest_cas;  /* flush_all now: items with a cas up to it are gone */
    uint64_t next_cas;
    struct kvcache_counters c;
};

/* ---- hashing ---------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

/* the full 128-bit product of a and b, its halves xored together */
static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load_tail(const unsigned char *p, size_t n) /* n < 8 */
{
    uint64_t t = 0;
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        t = a | (uint64_t)b << (8 * (n - 4));
    } else if (n > 0) {
        t = p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
    }
    return t;
}

/* 16 bytes per step, one 64x64->128 multiply each: a 64-byte key costs a
 * quarter of a per-word mixer's instructions (keys are hashed on every
 * command: the owner's choice and the table's bucket) */
KV_HOT uint64_t kvcache_hash(const void *key, size_t n, uint64_t seed)
{
    const uint64_t k1 = 0xa0761d6478bd642full, k2 = 0xe7037ed1a0b428dbull,
                   k3 = 0x8ebc6af09c88c6e3ull;
    const unsigned char *p = key;
    uint64_t h = mix64(seed ^ (k1 * (n + 1)));
    size_t left = n;
    while (left >= 16) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        h = fold_mul(a ^ k1 ^ h, b ^ k2);
        p += 16;
        left -= 16;
    }
    uint64_t a = 0, b = 0;
    if (left >= 8) {
        memcpy(&a, p, 8);
        b = load_tail(p + 8, left - 8);
    } else {
        a = load_tail(p, left);
    }
    h = fold_mul(a ^ k3 ^ h, b ^ k2 ^ (uint64_t)left);
    return mix64(h ^ n);
}

/* ---- sizes ------------------------------------------------------------------ */

size_t kvcache_store_item_size(size_t nkey, size_t nbytes)
{
    return sizeof(struct kv_item) + nkey + nbytes + 2;
}

KV_HOT unsigned kvcache_store_class_of(const struct kvcache_store *st, size_t ntotal)
{
    if (ntotal == 0 || ntotal > st->set.item_size_max)
        return 0;
    unsigned lo = 1, hi = st->nclasses;
    if (ntotal > st->cls[hi].size)
        return 0;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (st->cls[mid].size >= ntotal)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

bool kvcache_store_fits(const struct kvcache_store *st, size_t nkey, size_t nbytes)
{
    if (nbytes > st->set.item_size_max)
        return false;
    return kvcache_store_class_of(st, kvcache_store_item_size(nkey, nbytes)) != 0;
}

/* ---- huge pages --------------------------------------------------------------- */

#define HUGE_SZ (2ull << 20)
#define REGION_MAX (64ull << 30) /* a larger store's pages past this come from malloc */

/* size bytes (a multiple of HUGE_SZ) of zeroed memory at a HUGE_SZ-aligned
 * address, advised MADV_HUGEPAGE: the kernel backs each aligned 2 MiB with a
 * huge page where it can (THP "always" or "madvise"), with 4 KiB pages where
 * it cannot ("never", no THP, fragmented memory), same contents either way.
 * noreserve: address space only, memory as it is touched. NULL if the mmap
 * fails. */
static void *huge_map(uint64_t size, bool noreserve)
{
    int fl = MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0);
    char *p = mmap(NULL, size + HUGE_SZ, PROT_READ | PROT_WRITE, fl, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1);
    size_t head = a - (uintptr_t)p, tail = HUGE_SZ - head;
    if (head)
        munmap(p, head);
    if (tail)
        munmap((char *)a + size, tail);
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)a, size, MADV_HUGEPAGE); /* EINVAL without THP: plain pages */
#endif
    return (void *)a;
}

static uint64_t huge_round(uint64_t n)
{
    return (n + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
}

/* a zeroed table of n buckets; *map the bytes mapped (0: calloc'd) */
static struct kv_item **table_alloc(const struct kvcache_store *st, uint64_t n, uint64_t *map)
{
    *map = 0;
    if (st->set.hugepages) {
        uint64_t size = huge_round(n * sizeof(struct kv_item *));
        void *b = huge_map(size, false);
        if (b) {
            *map = size;
            return b;
        }
    }
    return calloc(n, sizeof(struct kv_item *));
}

static void table_free(struct kv_item **b, uint64_t map)
{
    if (map)
        munmap(b, map);
    else
        free(b);
}

static bool in_region(const struct kvcache_store *st, const char *p)
{
    return st->region && p >= st->region && p < st->region + st->region_size;
}

/* a slab page: the next page_size bytes of the reservation (made at the
 * first page: maxbytes plus one page per class, since a class takes its
 * first page past the limit), or malloc once it is used up or failed */
static char *page_alloc(struct kvcache_store *st)
{
    if (st->set.hugepages && !st->region && !st->region_failed) {
        uint64_t want = st->set.maxbytes + (uint64_t)(st->nclasses + 1) * st->page_size;
        if (want > REGION_MAX)
            want = REGION_MAX;
        want = huge_round(want);
        st->region = huge_map(want, true);
        st->region_failed = !st->region;
        st->region_size = st->region ? want : 0;
    }
    if (st->region && st->region_size - st->region_used >= st->page_size) {
        char *p = st->region + st->region_used;
        st->region_used += st->page_size;
        return p;
    }
    return malloc(st->page_size);
}

bool kvcache_store_region(const struct kvcache_store *st, const void **base, uint64_t *size,
                          uint64_t *used)
{
    if (!st->region)
        return false;
    *base = st->region;
    *size = st->region_size;
    *used = st->region_used;
    return true;
}

struct kvcache_store *kvcache_store_create(const struct kvcache_store_settings *s)
{
    if (s->factor <= 1.0 || s->item_size_max < 1024 || s->chunk_min < 8)
        return NULL;
    struct kvcache_store *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->set = *s;
    if (st->set.cas_step == 0)
        st->set.cas_step = 1;
    st->next_cas = st->set.cas_first ? st->set.cas_first : 1;
    st->page_size = st->set.item_size_max > (1u << 20) ? st->set.item_size_max : (1u << 20);
    /* classes: from the smallest item up by factor while two chunks fit a
     * page, then one class of the largest item */
    double size = (double)(sizeof(struct kv_item) + st->set.chunk_min);
    unsigned i = 1;
    for (; i < KVCACHE_MAX_CLASSES; i++) {
        uint32_t sz = ((uint32_t)size + 7u) & ~7u;
        if (sz > st->page_size / 2 || sz >= st->set.item_size_max)
            break;
        st->cls[i].size = sz;
        st->cls[i].perslab = st->page_size / sz;
        size = sz * st->set.factor;
    }
    st->cls[i].size = st->set.item_size_max;
    st->cls[i].perslab = st->page_size / st->set.item_size_max;
    st->nclasses = i;
    st->nbuckets = 1ull << (s->hashpower && s->hashpower < 32 ? s->hashpower : 16);
    st->buckets = table_alloc(st, st->nbuckets, &st->table_map);
    if (!st->buckets) {
        free(st);
        return NULL;
    }
    st->c.hash_bytes = st->nbuckets * sizeof(*st->buckets);
    return st;
}

void kvcache_store_destroy(struct kvcache_store *st)
{
    if (!st)
        return;
    for (uint64_t i = 0; i < st->npages; i++)
        if (!in_region(st, st->pages[i]))
            free(st->pages[i]);
    if (st->region)
        munmap(st->region, st->region_size);
    free(st->pages);
    table_free(st->buckets, st->table_map);
    free(st);
}

/* ---- clock ------------------------------------------------------------------ */

KV_HOT void kvcache_store_set_time(struct kvcache_store *st, uint64_t unix_now)
{
    uint64_t rel = unix_now > st->set.started ? unix_now - st->set.started : 0;
    st->now = rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
}

uint32_t kvcache_store_now(const struct kvcache_store *st)
{
    return st->now;
}

uint32_t kvcache_store_exptime(const struct kvcache_store *st, int64_t exptime)
{
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1; /* in the past: expired at once (the clock starts above 1) */
    if (exptime > KVCACHE_REALTIME_MAXDELTA) {
        if ((uint64_t)exptime <= st->set.started)
            return 1;
        uint64_t rel = (uint64_t)exptime - st->set.started;
        return rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
    }
    uint64_t rel = (uint64_t)exptime + st->now;
    return rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
}

/* ---- hash table and LRU ------------------------------------------------------- */

static inline const char *it_key(const struct kv_item *it) { return it->data; }
static inline char *it_value(struct kv_item *it) { return it->data + it->nkey; }
static inline size_t it_total(const struct kv_item *it)
{
    return kvcache_store_item_size(it->nkey, it->nbytes);
}

/* a key's bucket: the low bits of its hash (its owner shard takes the
 * high ones, kvcache_hash_owner), so one hash serves both */
static KV_HOT struct kv_item **bucket_of(struct kvcache_store *st, uint64_t h)
{
    return &st->buckets[(uint32_t)h & (st->nbuckets - 1)]; /* items keep 32 bits */
}

static void grow_table(struct kvcache_store *st)
{
    uint64_t n = st->nbuckets * 2, map;
    struct kv_item **b = table_alloc(st, n, &map);
    if (!b)
        return; /* longer chains, still correct */
    for (uint64_t i = 0; i < st->nbuckets; i++) {
        struct kv_item *it = st->buckets[i];
        while (it) {
            struct kv_item *next = it->hnext;
            uint64_t h = it->hlo & (n - 1);
            it->hnext = b[h];
            b[h] = it;
            it = next;
        }
    }
    table_free(st->buckets, st->table_map);
    st->buckets = b;
    st->table_map = map;
    st->nbuckets = n;
    st->c.hash_bytes = n * sizeof(*b);
}

static KV_HOT void lru_unlink(struct kvcache_store *st, struct kv_item *it)
{
    struct kv_class *c = &st->cls[it->cls];
    if (it->prev)
        it->prev->next = it->next;
    else
        c->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        c->tail = it->prev;
    it->prev = it->next = NULL;
}

static KV_HOT void lru_push(struct kvcache_store *st, struct kv_item *it)
{
    struct kv_class *c = &st->cls[it->cls];
    it->prev = NULL;
    it->next = c->head;
    if (c->head)
        c->head->prev = it;
    c->head = it;
    if (!c->tail)
        c->tail = it;
}

static KV_HOT void chunk_free(struct kvcache_store *st, struct kv_item *it)
{
    struct kv_class *c = &st->cls[it->cls];
    struct kv_free *f = (struct kv_free *)it;
    f->next = c->freelist;
    c->freelist = f;
    c->nfree++;
}

/* removes it from the table and its LRU, frees its chunk */
static KV_HOT void item_unlink(struct kvcache_store *st, struct kv_item *it)
{
    struct kv_item **pp = bucket_of(st, it->hlo);
    while (*pp && *pp != it)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = it->hnext;
    lru_unlink(st, it);
    struct kv_class *c = &st->cls[it->cls];
    c->st.number--;
    c->st.mem_requested -= it_total(it);
    st->c.curr_items--;
    st->c.bytes -= it_total(it);
    chunk_free(st, it);
}

static KV_HOT void item_link(struct kvcache_store *st, struct kv_item *it)
{
    struct kv_item **b = bucket_of(st, it->hlo);
    it->hnext = *b;
    *b = it;
    lru_push(st, it);
    struct kv_class *c = &st->cls[it->cls];
    c->st.number++;
    c->st.mem_requested += it_total(it);
    st->c.curr_items++;
    st->c.total_items++;
    st->c.bytes += it_total(it);
    if (st->c.curr_items > st->nbuckets + st->nbuckets / 2)
        grow_table(st);
}

/* whether it is dead: expired (1) or flushed (2), else 0 */
static int item_dead(const struct kvcache_store *st, const struct kv_item *it)
{
    if (it->cas <= st->oldest_cas)
        return 2;
    if (st->oldest_live != 0 && st->oldest_live <= st->now && it->atime <= st->oldest_live)
        return 2;
    if (it->exptime != 0 && it->exptime <= st->now)
        return 1;
    return 0;
}

/* finds a live item; a dead one found is unlinked (*dead says why) */
static KV_HOT struct kv_item *find(struct kvcache_store *st, const char *key, size_t nkey,
                                   uint64_t h, int *dead)
{
    if (dead)
        *dead = 0;
    struct kv_item *it = *bucket_of(st, h);
    for (; it; it = it->hnext)
        if (it->nkey == nkey && memcmp(it_key(it), key, nkey) == 0)
            break;
    if (!it)
        return NULL;
    int d = item_dead(st, it);
    if (d) {
        if (dead)
            *dead = d;
        if (d == 1 && !(it->iflags & IT_FETCHED)) {
            st->c.expired_unfetched++;
            st->cls[it->cls].st.expired_unfetched++;
        }
        item_unlink(st, it);
        return NULL;
    }
    return it;
}

static void bump(struct kvcache_store *st, struct kv_item *it)
{
    it->atime = st->now;
    it->iflags &= (uint8_t)~IT_ACTIVE;
    if (st->cls[it->cls].head != it) {
        lru_unlink(st, it);
        lru_push(st, it);
    }
}

/* ---- allocation ------------------------------------------------------------- */

static bool add_page(struct kvcache_store *st, struct kv_class *c)
{
    if (c->pages > 0 && st->c.total_malloced + st->page_size > st->set.maxbytes)
        return false;
    if (st->npages == st->pages_cap) {
        uint64_t cap = st->pages_cap ? st->pages_cap * 2 : 16;
        char **p = realloc(st->pages, cap * sizeof(*p));
        if (!p)
            return false;
        st->pages = p;
        st->pages_cap = cap;
    }
    char *page = page_alloc(st);
    if (!page)
        return false;
    st->pages[st->npages++] = page;
    st->c.total_malloced += st->page_size;
    c->pages++;
    c->end_ptr = page;
    c->end_free = c->perslab;
    return true;
}

static KV_HOT struct kv_item *chunk_take(struct kvcache_store *st, struct kv_class *c)
{
    if (c->freelist) {
        struct kv_free *f = c->freelist;
        c->freelist = f->next;
        c->nfree--;
        return (struct kv_item *)f;
    }
    if (c->end_free == 0 && !add_page(st, c))
        return NULL;
    struct kv_item *it = (struct kv_item *)c->end_ptr;
    c->end_ptr += c->size;
    c->end_free--;
    return it;
}

static KV_HOT struct kv_item *item_alloc(struct kvcache_store *st, size_t nkey, size_t nbytes,
                                  enum kvcache_result *why)
{
    size_t ntotal = kvcache_store_item_size(nkey, nbytes);
    unsigned id = kvcache_store_class_of(st, ntotal);
    if (id == 0 || nkey > KVCACHE_KEY_MAX) {
        st->c.store_too_large++;
        *why = KVCACHE_TOO_LARGE;
        return NULL;
    }
    struct kv_class *c = &st->cls[id];
    struct kv_item *it = chunk_take(st, c);
    if (!it) {
        /* items read since they were last moved (IT_ACTIVE) go back to
         * the head instead of being evicted (a bounded number per eviction:
         * with every item active the tail goes anyway) */
        for (int i = 0; i < LRU_ROTATE_MAX && c->tail && c->tail != c->head &&
                        (c->tail->iflags & IT_ACTIVE);
             i++) {
            struct kv_item *a = c->tail;
            a->iflags &= (uint8_t)~IT_ACTIVE;
            lru_unlink(st, a);
            lru_push(st, a);
        }
        /* reclaim an expired item near the tail, else evict the tail */
        struct kv_item *t = c->tail;
        for (int i = 0; t && i < 5; i++, t = t->prev) {
            if (item_dead(st, t)) {
                if (!(t->iflags & IT_FETCHED) && item_dead(st, t) == 1) {
                    st->c.expired_unfetched++;
                    c->st.expired_unfetched++;
                }
                st->c.reclaimed++;
                c->st.reclaimed++;
                item_unlink(st, t);
                break;
            }
        }
        if (!c->freelist && c->tail) {
            t = c->tail;
            st->c.evictions++;
            c->st.evicted++;
            if (t->exptime != 0)
                c->st.evicted_nonzero++;
            if (!(t->iflags & IT_FETCHED)) {
                st->c.evicted_unfetched++;
                c->st.evicted_unfetched++;
            }
            c->st.evicted_time = st->now - t->atime;
            item_unlink(st, t);
        }
        it = chunk_take(st, c);
    }
    if (!it) {
        c->st.outofmemory++;
        st->c.store_no_memory++;
        *why = KVCACHE_NO_MEMORY;
        return NULL;
    }
    memset(it, 0, sizeof(*it));
    it->cls = (uint8_t)id;
    it->nkey = (uint8_t)nkey;
    it->nbytes = (uint32_t)nbytes;
    it->atime = st->now;
    return it;
}

static uint64_t take_cas(struct kvcache_store *st)
{
    uint64_t c = st->next_cas;
    st->next_cas += st->set.cas_step;
    return c;
}

/* ---- commands --------------------------------------------------------------- */

static void fill_view(const struct kvcache_store *st, struct kv_item *it, bool fetched,
                      struct kvcache_view *v)
{
    v->key = it_key(it);
    v->value = it_value(it);
    v->nkey = it->nkey;
    v->nbytes = it->nbytes;
    v->flags = it->flags;
    v->cas = it->cas;
    v->ttl = it->exptime == 0 ? -1 : (int64_t)it->exptime - (int64_t)st->now;
    v->idle = (int64_t)st->now - (int64_t)it->atime;
    v->cls = it->cls;
    v->total = (uint32_t)it_total(it);
    v->fetched = fetched;
    v->stale = (it->iflags & IT_STALE) != 0;
    v->win_sent = (it->iflags & IT_WIN) != 0;
}

KV_HOT bool kvcache_store_get_hashed(struct kvcache_store *st, const char *key, size_t nkey,
                                     uint64_t h, bool count, bool touch, int64_t exptime,
                                     bool bump_it, struct kvcache_view *v)
{
    int dead;
    struct kv_item *it = find(st, key, nkey, h, &dead);
    if (count) {
        st->c.cmd_get++;
        if (touch)
            st->c.cmd_touch++;
    }
    if (!it) {
        if (count) {
            st->c.get_misses++;
            if (dead == 1)
                st->c.get_expired++;
            else if (dead == 2)
                st->c.get_flushed++;
            if (touch)
                st->c.touch_misses++;
        }
        return false;
    }
    if (count) {
        st->c.get_hits++;
        st->cls[it->cls].st.get_hits++;
        if (touch) {
            st->c.touch_hits++;
            st->cls[it->cls].st.touch_hits++;
        }
    }
    if (touch)
        it->exptime = kvcache_store_exptime(st, exptime);
    bool fetched = (it->iflags & IT_FETCHED) != 0;
    fill_view(st, it, fetched, v);
    if (bump_it) {
        /* a read marks the item active instead of moving it (memcached's
         * ITEM_ACTIVE): moving it writes its two neighbours and the old
         * head, three more items' lines (and pages) per get; an eviction
         * moves an active tail item to the head instead of evicting it */
        it->iflags |= IT_FETCHED;
        it->atime = st->now;
        if (st->cls[it->cls].head != it)
            it->iflags |= IT_ACTIVE;
    }
    return true;
}

KV_HOT enum kvcache_result kvcache_store_set_hashed(struct kvcache_store *st,
                                                    enum kvcache_set_mode mode, const char *key,
                                                    size_t nkey, uint64_t h, uint32_t flags,
                                                    int64_t exptime, const void *data,
                                                    size_t nbytes, uint64_t cas_in,
                                                    uint64_t cas_new, uint64_t *cas_out)
{
    st->c.cmd_set++;
    struct kv_item *old = find(st, key, nkey, h, NULL);
    enum kvcache_result r;
    if (!kvcache_store_fits(st, nkey, nbytes) && mode != KVCACHE_APPEND && mode != KVCACHE_PREPEND) {
        st->c.store_too_large++;
        if (mode == KVCACHE_SET && old)
            item_unlink(st, old); /* memcached drops the old value too */
        return KVCACHE_TOO_LARGE;
    }
    if (mode == KVCACHE_CAS) {
        if (!old) {
            st->c.cas_misses++;
            return KVCACHE_NOT_FOUND;
        }
        if (old->cas != cas_in) {
            st->c.cas_badval++;
            st->cls[old->cls].st.cas_badval++;
            return KVCACHE_EXISTS;
        }
        st->c.cas_hits++;
        st->cls[old->cls].st.cas_hits++;
    } else if (cas_in != 0) {
        if (!old)
            return KVCACHE_NOT_FOUND;
        if (old->cas != cas_in)
            return KVCACHE_EXISTS;
    }
    if (mode == KVCACHE_ADD && old) {
        bump(st, old); /* memcached refreshes an item an add failed on */
        return KVCACHE_NOT_STORED;
    }
    if ((mode == KVCACHE_REPLACE || mode == KVCACHE_APPEND || mode == KVCACHE_PREPEND) && !old)
        return KVCACHE_NOT_STORED;
    size_t total = nbytes;
    if (mode == KVCACHE_APPEND || mode == KVCACHE_PREPEND) {
        total += old->nbytes;
        flags = old->flags;
        if (!kvcache_store_fits(st, nkey, total)) {
            st->c.store_too_large++;
            return KVCACHE_TOO_LARGE;
        }
    }
    /* the old item must survive the allocation (its value is copied from),
     * so it is taken off the LRU tail's reach only by being recent */
    if (old)
        bump(st, old);
    struct kv_item *it = item_alloc(st, nkey, total, &r);
    if (!it)
        return r;
    /* the allocation may have evicted old (only if it was the last item of
     * its class): look again */
    if (old && find(st, key, nkey, h, NULL) != old)
        old = NULL;
    if ((mode == KVCACHE_APPEND || mode == KVCACHE_PREPEND) && !old) {
        chunk_free(st, it);
        return KVCACHE_NOT_STORED;
    }
    memcpy(it->data, key, nkey);
    it->hlo = (uint32_t)h;
    char *v = it_value(it);
    if (mode == KVCACHE_APPEND) {
        memcpy(v, it_value(old), old->nbytes);
        memcpy(v + old->nbytes, data, nbytes);
        it->exptime = old->exptime;
    } else if (mode == KVCACHE_PREPEND) {
        memcpy(v, data, nbytes);
        memcpy(v + nbytes, it_value(old), old->nbytes);
        it->exptime = old->exptime;
    } else {
        memcpy(v, data, nbytes);
        it->exptime = kvcache_store_exptime(st, exptime);
    }
    v[total] = '\r';
    v[total + 1] = '\n';
    it->flags = flags;
    it->cas = cas_new ? cas_new : take_cas(st);
    if (old)
        item_unlink(st, old);
    item_link(st, it);
    st->cls[it->cls].st.cmd_set++;
    if (cas_out)
        *cas_out = it->cas;
    return KVCACHE_STORED;
}

KV_HOT enum kvcache_result kvcache_store_delete_hashed(struct kvcache_store *st, const char *key,
                                                      size_t nkey, uint64_t h,
                                         uint64_t cas_in)
{
    struct kv_item *it = find(st, key, nkey, h, NULL);
    if (!it) {
        st->c.delete_misses++;
        return KVCACHE_NOT_FOUND;
    }
    if (cas_in != 0 && it->cas != cas_in)
        return KVCACHE_EXISTS;
    st->c.delete_hits++;
    st->cls[it->cls].st.delete_hits++;
    item_unlink(st, it);
    return KVCACHE_DELETED;
}

enum kvcache_result kvcache_store_invalidate(struct kvcache_store *st, const char *key,
                                             size_t nkey, uint64_t cas_in, int64_t exptime)
{
    struct kv_item *it = find(st, key, nkey, kvcache_key_hash(key, nkey), NULL);
    if (!it) {
        st->c.delete_misses++;
        return KVCACHE_NOT_FOUND;
    }
    if (cas_in != 0 && it->cas != cas_in)
        return KVCACHE_EXISTS;
    st->c.delete_hits++;
    it->iflags |= IT_STALE;
    it->iflags &= (uint8_t)~IT_WIN;
    it->cas = take_cas(st);
    if (exptime >= 0)
        it->exptime = kvcache_store_exptime(st, exptime);
    return KVCACHE_DELETED;
}

void kvcache_store_mark_win(struct kvcache_store *st, const char *key, size_t nkey)
{
    struct kv_item *it = find(st, key, nkey, kvcache_key_hash(key, nkey), NULL);
    if (it)
        it->iflags |= IT_WIN;
}

/* memcached's rule: digits, optionally followed by spaces (a decr pads) */
static bool parse_counter(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (i == 0)
        return false;
    for (; i < n; i++)
        if (s[i] != ' ')
            return false;
    *out = v;
    return true;
}

enum kvcache_result kvcache_store_delta_hashed(struct kvcache_store *st, const char *key,
                                               size_t nkey, uint64_t h,
                                        bool incr, uint64_t delta, uint64_t cas_in,
                                        uint64_t *value, uint64_t *cas_out)
{
    struct kv_item *it = find(st, key, nkey, h, NULL);
    if (!it) {
        if (incr)
            st->c.incr_misses++;
        else
            st->c.decr_misses++;
        return KVCACHE_NOT_FOUND;
    }
    if (cas_in != 0 && it->cas != cas_in)
        return KVCACHE_EXISTS;
    uint64_t v;
    if (!parse_counter(it_value(it), it->nbytes, &v))
        return KVCACHE_NON_NUMERIC;
    if (incr) {
        v += delta; /* wraps at 2^64 */
        st->c.incr_hits++;
        st->cls[it->cls].st.incr_hits++;
    } else {
        v = delta > v ? 0 : v - delta;
        st->c.decr_hits++;
        st->cls[it->cls].st.decr_hits++;
    }
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);
    *value = v;
    if ((uint32_t)n <= it->nbytes) {
        /* in place, padded with spaces, as memcached does */
        memset(it_value(it), ' ', it->nbytes);
        memcpy(it_value(it), buf, (size_t)n);
        it->cas = take_cas(st);
        bump(st, it);
    } else {
        uint32_t flags = it->flags;
        uint32_t exp = it->exptime;
        enum kvcache_result r;
        bump(st, it);
        struct kv_item *nit = item_alloc(st, nkey, (size_t)n, &r);
        if (!nit)
            return r;
        if (find(st, key, nkey, h, NULL) == it)
            item_unlink(st, it);
        memcpy(nit->data, key, nkey);
        nit->hlo = (uint32_t)h;
        memcpy(it_value(nit), buf, (size_t)n);
        it_value(nit)[n] = '\r';
        it_value(nit)[n + 1] = '\n';
        nit->flags = flags;
        nit->exptime = exp;
        nit->cas = take_cas(st);
        item_link(st, nit);
        it = nit;
    }
    if (cas_out)
        *cas_out = it->cas;
    return KVCACHE_STORED;
}

enum kvcache_result kvcache_store_touch_hashed(struct kvcache_store *st, const char *key,
                                               size_t nkey, uint64_t h,
                                        int64_t exptime)
{
    st->c.cmd_touch++;
    struct kv_item *it = find(st, key, nkey, h, NULL);
    if (!it) {
        st->c.touch_misses++;
        return KVCACHE_NOT_FOUND;
    }
    st->c.touch_hits++;
    st->cls[it->cls].st.touch_hits++;
    it->exptime = kvcache_store_exptime(st, exptime);
    bump(st, it);
    return KVCACHE_TOUCHED;
}

void kvcache_store_flush(struct kvcache_store *st, int64_t delay)
{
    st->c.cmd_flush++;
    if (delay > 0) {
        uint32_t t = kvcache_store_exptime(st, delay);
        st->oldest_live = t > 1 ? t - 1 : 1;
    } else {
        st->oldest_live = 0;
        st->oldest_cas = st->next_cas - 1;
    }
}

/* ---- statistics --------------------------------------------------------------- */

void kvcache_store_counters(const struct kvcache_store *st, struct kvcache_counters *c)
{
    const uint64_t *src = (const uint64_t *)&st->c;
    uint64_t *dst = (uint64_t *)c;
    for (size_t i = 0; i < sizeof(*c) / sizeof(uint64_t); i++)
        dst[i] += src[i];
}

unsigned kvcache_store_nclasses(const struct kvcache_store *st)
{
    return st->nclasses;
}

void kvcache_store_class_stats(const struct kvcache_store *st, unsigned cls,
                               struct kvcache_class_stats *out)
{
    if (cls == 0 || cls > st->nclasses)
        return;
    const struct kv_class *c = &st->cls[cls];
    out->chunk_size = c->size;
    out->chunks_per_page = c->perslab;
    out->total_pages += c->pages;
    out->total_chunks += c->pages * c->perslab;
    out->free_chunks += c->nfree;
    out->free_chunks_end += c->end_free;
    out->used_chunks += c->pages * c->perslab - c->nfree - c->end_free;
    const uint64_t *from = &c->st.get_hits;
    uint64_t *to = &out->get_hits;
    size_t n = (size_t)(&c->st.evicted_unfetched - &c->st.get_hits) + 1;
    for (size_t i = 0; i < n; i++)
        to[i] += from[i];
    out->age = 0;
    if (c->tail)
        out->age = st->now - c->tail->atime;
}

void kvcache_store_reset(struct kvcache_store *st)
{
    struct kvcache_counters keep = st->c;
    memset(&st->c, 0, sizeof(st->c));
    st->c.curr_items = keep.curr_items;
    st->c.bytes = keep.bytes;
    st->c.total_malloced = keep.total_malloced;
    st->c.hash_bytes = keep.hash_bytes;
    for (unsigned i = 1; i <= st->nclasses; i++) {
        struct kvcache_class_stats *s = &st->cls[i].st;
        uint64_t number = s->number, mem = s->mem_requested;
        memset(s, 0, sizeof(*s));
        s->number = number;
        s->mem_requested = mem;
    }
}
