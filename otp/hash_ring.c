/* HashRing: a sorted array of points searched under a read lock; writers
 * rebuild aside (serialised by a mutex) and swap arrays in under the write
 * lock, so the memory a reader may be looking at is freed only once the
 * write lock has shut readers out. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "errors.h"
#include "hash_ring.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull
#define GOLDEN     0x9e3779b97f4a7c15ull

/* What lookups read: (position, value) sorted by position. */
struct point {
    uint64_t pos;
    uint64_t node;
};

/* An override, and (writer side) a node: key bytes owned by the entry. */
struct entry {
    uint64_t hash;
    uint8_t *key;
    size_t len;
    uint64_t node;
    unsigned vnodes;
};

struct hy_hash_ring {
    pthread_rwlock_t lock; /* readers: points/ovr; writers swap under it */
    pthread_mutex_t wlock; /* serialises writers; guards nodes */
    unsigned vnodes;       /* default per node */
    struct point *points;  /* lock */
    size_t npoints;
    struct entry *ovr; /* lock; sorted by (hash, len, bytes) */
    size_t novr;
    struct entry *nodes; /* wlock; in no particular order */
    size_t nnodes;
};

static uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

uint64_t hy_hash_ring_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return fmix64(h);
}

static uint64_t point_pos(uint64_t h, unsigned i)
{
    return i == 0 ? h : fmix64(h + (uint64_t)i * GOLDEN);
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Orders entries by (hash, key): the override table's order. */
static int entry_cmp(uint64_t h, const uint8_t *key, size_t len, const struct entry *e)
{
    if (h != e->hash)
        return h < e->hash ? -1 : 1;
    return key_cmp(key, len, e->key, e->len);
}

static bool key_ok(const void *key, size_t len)
{
    return key && len > 0 && len <= HY_HASH_RING_KEY_MAX;
}

static int entry_init(struct entry *e, const void *key, size_t len, uint64_t node, unsigned vnodes)
{
    e->key = malloc(len);
    if (!e->key)
        return HY_ENOMEM;
    memcpy(e->key, key, len);
    e->len = len;
    e->hash = hy_hash_ring_hash(key, len);
    e->node = node;
    e->vnodes = vnodes;
    return 0;
}

/* ---- building the point array --------------------------------------------- */

struct build_point {
    uint64_t pos;
    const struct entry *n;
    unsigned vi;
};

static int build_cmp(const void *a, const void *b)
{
    const struct build_point *x = a, *y = b;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    int c = key_cmp(x->n->key, x->n->len, y->n->key, y->n->len);
    if (c)
        return c;
    return x->vi < y->vi ? -1 : x->vi > y->vi ? 1 : 0;
}

/* Builds the sorted point array of nodes[n] into *out (NULL when empty). */
static int build_points(const struct entry *nodes, size_t n, struct point **out, size_t *nout)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += nodes[i].vnodes;
    *out = NULL;
    *nout = 0;
    if (!total)
        return 0;
    struct build_point *bp = malloc(total * sizeof(*bp));
    struct point *pts = malloc(total * sizeof(*pts));
    if (!bp || !pts) {
        free(bp);
        free(pts);
        return HY_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (unsigned v = 0; v < nodes[i].vnodes; v++)
            bp[k++] = (struct build_point){point_pos(nodes[i].hash, v), &nodes[i], v};
    qsort(bp, total, sizeof(*bp), build_cmp);
    for (size_t i = 0; i < total; i++)
        pts[i] = (struct point){bp[i].pos, bp[i].n->node};
    free(bp);
    *out = pts;
    *nout = total;
    return 0;
}

/* Swaps in a new point array (with nodes already updated by the caller
 * under wlock) and frees the old one once readers are shut out. */
static void swap_points(struct hy_hash_ring *r, struct point *pts, size_t n)
{
    pthread_rwlock_wrlock(&r->lock);
    struct point *old = r->points;
    r->points = pts;
    r->npoints = n;
    pthread_rwlock_unlock(&r->lock);
    free(old);
}

static void swap_ovr(struct hy_hash_ring *r, struct entry *ovr, size_t n)
{
    pthread_rwlock_wrlock(&r->lock);
    struct entry *old = r->ovr;
    r->ovr = ovr;
    r->novr = n;
    pthread_rwlock_unlock(&r->lock);
    free(old);
}

static void free_entries(struct entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].key);
    free(e);
}

/* ---- create / destroy / clone --------------------------------------------- */

static int ring_alloc(unsigned vnodes, struct hy_hash_ring **out)
{
    struct hy_hash_ring *r = calloc(1, sizeof(*r));
    if (!r)
        return HY_ENOMEM;
    if (pthread_rwlock_init(&r->lock, NULL) != 0) {
        free(r);
        return HY_ENOMEM;
    }
    if (pthread_mutex_init(&r->wlock, NULL) != 0) {
        pthread_rwlock_destroy(&r->lock);
        free(r);
        return HY_ENOMEM;
    }
    r->vnodes = vnodes ? vnodes : HY_HASH_RING_VNODES_DEFAULT;
    *out = r;
    return 0;
}

int hy_hash_ring_create(unsigned vnodes, struct hy_hash_ring **out)
{
    if (!out || vnodes > HY_HASH_RING_VNODES_MAX)
        return HY_EINVAL;
    return ring_alloc(vnodes, out);
}

void hy_hash_ring_destroy(struct hy_hash_ring *ring)
{
    if (!ring)
        return;
    free(ring->points);
    free_entries(ring->ovr, ring->novr);
    free_entries(ring->nodes, ring->nnodes);
    pthread_mutex_destroy(&ring->wlock);
    pthread_rwlock_destroy(&ring->lock);
    free(ring);
}

static int copy_entries(const struct entry *src, size_t n, struct entry **out)
{
    *out = NULL;
    if (!n)
        return 0;
    struct entry *e = calloc(n, sizeof(*e));
    if (!e)
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (entry_init(&e[i], src[i].key, src[i].len, src[i].node, src[i].vnodes)) {
            free_entries(e, i);
            return HY_ENOMEM;
        }
    }
    *out = e;
    return 0;
}

int hy_hash_ring_clone(const struct hy_hash_ring *ring, struct hy_hash_ring **out)
{
    if (!ring || !out)
        return HY_EINVAL;
    struct hy_hash_ring *src = (struct hy_hash_ring *)ring;
    struct hy_hash_ring *r;
    int rc = ring_alloc(src->vnodes, &r);
    if (rc)
        return rc;
    pthread_mutex_lock(&src->wlock);
    /* overrides and points change only under wlock too, so they are stable */
    rc = copy_entries(src->nodes, src->nnodes, &r->nodes);
    if (!rc) {
        r->nnodes = src->nnodes;
        rc = copy_entries(src->ovr, src->novr, &r->ovr);
    }
    if (!rc) {
        r->novr = src->novr;
        if (src->npoints) {
            r->points = malloc(src->npoints * sizeof(*r->points));
            if (r->points) {
                memcpy(r->points, src->points, src->npoints * sizeof(*r->points));
                r->npoints = src->npoints;
            } else {
                rc = HY_ENOMEM;
            }
        }
    }
    pthread_mutex_unlock(&src->wlock);
    if (rc) {
        hy_hash_ring_destroy(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- nodes ---------------------------------------------------------------- */

static ssize_t node_find(const struct hy_hash_ring *r, const void *key, size_t len)
{
    for (size_t i = 0; i < r->nnodes; i++)
        if (key_cmp(key, len, r->nodes[i].key, r->nodes[i].len) == 0)
            return (ssize_t)i;
    return -1;
}

int hy_hash_ring_add_node_vnodes(struct hy_hash_ring *ring, const void *key, size_t len,
                                 uint64_t node, unsigned vnodes, bool *replaced, uint64_t *old)
{
    if (!ring || !key_ok(key, len) || vnodes > HY_HASH_RING_VNODES_MAX)
        return HY_EINVAL;
    unsigned vn = vnodes ? vnodes : ring->vnodes;
    pthread_mutex_lock(&ring->wlock);
    ssize_t i = node_find(ring, key, len);
    struct entry saved = {0};
    int rc = 0;
    if (i >= 0) {
        saved = ring->nodes[i];
        ring->nodes[i].node = node;
        ring->nodes[i].vnodes = vn;
    } else {
        struct entry *grown = realloc(ring->nodes, (ring->nnodes + 1) * sizeof(*grown));
        if (!grown) {
            rc = HY_ENOMEM;
            goto out;
        }
        ring->nodes = grown;
        rc = entry_init(&ring->nodes[ring->nnodes], key, len, node, vn);
        if (rc)
            goto out;
        ring->nnodes++;
    }
    struct point *pts;
    size_t npts;
    rc = build_points(ring->nodes, ring->nnodes, &pts, &npts);
    if (rc) {
        /* undo: the ring stays as it was */
        if (i >= 0) {
            ring->nodes[i] = saved;
        } else {
            free(ring->nodes[--ring->nnodes].key);
        }
        goto out;
    }
    swap_points(ring, pts, npts);
    if (replaced)
        *replaced = i >= 0;
    if (old && i >= 0)
        *old = saved.node;
out:
    pthread_mutex_unlock(&ring->wlock);
    return rc;
}

int hy_hash_ring_add_node(struct hy_hash_ring *ring, const void *key, size_t len, uint64_t node,
                          bool *replaced, uint64_t *old)
{
    return hy_hash_ring_add_node_vnodes(ring, key, len, node, 0, replaced, old);
}

int hy_hash_ring_remove_node(struct hy_hash_ring *ring, const void *key, size_t len, uint64_t *node)
{
    if (!ring || !key_ok(key, len))
        return HY_EINVAL;
    pthread_mutex_lock(&ring->wlock);
    int rc = 0;
    ssize_t i = node_find(ring, key, len);
    if (i < 0) {
        rc = HY_ENOENT;
        goto out;
    }
    struct entry gone = ring->nodes[i];
    ring->nodes[i] = ring->nodes[ring->nnodes - 1];
    ring->nnodes--;
    struct point *pts;
    size_t npts;
    rc = build_points(ring->nodes, ring->nnodes, &pts, &npts);
    if (rc) {
        ring->nodes[ring->nnodes++] = ring->nodes[i];
        ring->nodes[i] = gone;
        goto out;
    }
    swap_points(ring, pts, npts);
    if (node)
        *node = gone.node;
    free(gone.key);
out:
    pthread_mutex_unlock(&ring->wlock);
    return rc;
}

int hy_hash_ring_set_nodes(struct hy_hash_ring *ring, const struct hy_hash_ring_node *nodes,
                           size_t n)
{
    if (!ring || (!nodes && n))
        return HY_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!key_ok(nodes[i].key, nodes[i].len) || nodes[i].vnodes > HY_HASH_RING_VNODES_MAX)
            return HY_EINVAL;
    struct entry *ne = n ? calloc(n, sizeof(*ne)) : NULL;
    if (n && !ne)
        return HY_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned vn = nodes[i].vnodes ? nodes[i].vnodes : ring->vnodes;
        /* a key given twice keeps its last entry */
        size_t j;
        for (j = 0; j < k; j++)
            if (key_cmp(nodes[i].key, nodes[i].len, ne[j].key, ne[j].len) == 0)
                break;
        if (j < k) {
            ne[j].node = nodes[i].node;
            ne[j].vnodes = vn;
            continue;
        }
        if (entry_init(&ne[k], nodes[i].key, nodes[i].len, nodes[i].node, vn)) {
            free_entries(ne, k);
            return HY_ENOMEM;
        }
        k++;
    }
    struct point *pts;
    size_t npts;
    int rc = build_points(ne, k, &pts, &npts);
    if (rc) {
        free_entries(ne, k);
        return rc;
    }
    pthread_mutex_lock(&ring->wlock);
    struct entry *oldn = ring->nodes;
    size_t oldcount = ring->nnodes;
    ring->nodes = ne;
    ring->nnodes = k;
    swap_points(ring, pts, npts);
    pthread_mutex_unlock(&ring->wlock);
    free_entries(oldn, oldcount);
    return 0;
}

/* ---- lookups -------------------------------------------------------------- */

/* Index of the override of key in ovr[n], or -1. */
static ssize_t ovr_find(const struct entry *ovr, size_t n, uint64_t h, const void *key, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = entry_cmp(h, key, len, &ovr[mid]);
        if (c == 0)
            return (ssize_t)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Insertion point of key in ovr[n] (first entry not below it). */
static size_t ovr_lower(const struct entry *ovr, size_t n, uint64_t h, const void *key, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (entry_cmp(h, key, len, &ovr[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int hy_hash_ring_find(const struct hy_hash_ring *ring, const void *key, size_t len, uint64_t *node)
{
    if (!ring || !node || (!key && len))
        return HY_EINVAL;
    struct hy_hash_ring *r = (struct hy_hash_ring *)ring;
    uint64_t h = hy_hash_ring_hash(key, len);
    int rc = 0;
    pthread_rwlock_rdlock(&r->lock);
    if (r->novr) {
        ssize_t i = ovr_find(r->ovr, r->novr, h, key, len);
        if (i >= 0) {
            *node = r->ovr[i].node;
            goto out;
        }
    }
    if (!r->npoints) {
        rc = HY_ENOENT;
        goto out;
    }
    /* first point at or after h, wrapping around */
    size_t lo = 0, hi = r->npoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].pos < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    *node = r->points[lo == r->npoints ? 0 : lo].node;
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

/* ---- overrides ------------------------------------------------------------ */

int hy_hash_ring_add_override(struct hy_hash_ring *ring, const void *key, size_t len, uint64_t node,
                              bool *replaced, uint64_t *old)
{
    if (!ring || !key_ok(key, len))
        return HY_EINVAL;
    uint64_t h = hy_hash_ring_hash(key, len);
    pthread_mutex_lock(&ring->wlock);
    int rc = 0;
    ssize_t i = ovr_find(ring->ovr, ring->novr, h, key, len);
    if (i >= 0) {
        /* same key: only the value changes; a 64-bit store under the write lock */
        uint64_t prev = ring->ovr[i].node;
        pthread_rwlock_wrlock(&ring->lock);
        ring->ovr[i].node = node;
        pthread_rwlock_unlock(&ring->lock);
        if (replaced)
            *replaced = true;
        if (old)
            *old = prev;
        goto out;
    }
    size_t at = ovr_lower(ring->ovr, ring->novr, h, key, len);
    struct entry *ne = malloc((ring->novr + 1) * sizeof(*ne));
    if (!ne) {
        rc = HY_ENOMEM;
        goto out;
    }
    rc = entry_init(&ne[at], key, len, node, 0);
    if (rc) {
        free(ne);
        goto out;
    }
    if (at)
        memcpy(ne, ring->ovr, at * sizeof(*ne));
    if (ring->novr > at)
        memcpy(ne + at + 1, ring->ovr + at, (ring->novr - at) * sizeof(*ne));
    swap_ovr(ring, ne, ring->novr + 1);
    if (replaced)
        *replaced = false;
out:
    pthread_mutex_unlock(&ring->wlock);
    return rc;
}

int hy_hash_ring_remove_override(struct hy_hash_ring *ring, const void *key, size_t len,
                                 uint64_t *node)
{
    if (!ring || !key_ok(key, len))
        return HY_EINVAL;
    uint64_t h = hy_hash_ring_hash(key, len);
    pthread_mutex_lock(&ring->wlock);
    int rc = 0;
    ssize_t i = ovr_find(ring->ovr, ring->novr, h, key, len);
    if (i < 0) {
        rc = HY_ENOENT;
        goto out;
    }
    struct entry gone = ring->ovr[i];
    size_t n = ring->novr - 1;
    struct entry *ne = NULL;
    if (n) {
        ne = malloc(n * sizeof(*ne));
        if (!ne) {
            rc = HY_ENOMEM;
            goto out;
        }
        memcpy(ne, ring->ovr, (size_t)i * sizeof(*ne));
        memcpy(ne + i, ring->ovr + i + 1, (n - (size_t)i) * sizeof(*ne));
    }
    swap_ovr(ring, ne, n);
    free(gone.key);
    if (node)
        *node = gone.node;
out:
    pthread_mutex_unlock(&ring->wlock);
    return rc;
}

static int entry_sort_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return entry_cmp(x->hash, x->key, x->len, y);
}

int hy_hash_ring_set_overrides(struct hy_hash_ring *ring, const struct hy_hash_ring_node *ovr,
                               size_t n)
{
    if (!ring || (!ovr && n))
        return HY_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!key_ok(ovr[i].key, ovr[i].len))
            return HY_EINVAL;
    struct entry *ne = n ? calloc(n, sizeof(*ne)) : NULL;
    if (n && !ne)
        return HY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (entry_init(&ne[i], ovr[i].key, ovr[i].len, ovr[i].node, 0)) {
            free_entries(ne, i);
            return HY_ENOMEM;
        }
    }
    /* stable order, then keep the last of equal keys */
    size_t k = 0;
    if (n) {
        for (size_t i = 0; i < n; i++)
            ne[i].vnodes = (unsigned)i; /* remembers input order for the tie */
        qsort(ne, n, sizeof(*ne), entry_sort_cmp);
        for (size_t i = 0; i < n; i++) {
            if (k && entry_cmp(ne[i].hash, ne[i].key, ne[i].len, &ne[k - 1]) == 0) {
                struct entry *keep = ne[i].vnodes > ne[k - 1].vnodes ? &ne[i] : &ne[k - 1];
                struct entry *drop = keep == &ne[i] ? &ne[k - 1] : &ne[i];
                free(drop->key);
                ne[k - 1] = *keep;
                continue;
            }
            ne[k++] = ne[i];
        }
        for (size_t i = 0; i < k; i++)
            ne[i].vnodes = 0;
    }
    pthread_mutex_lock(&ring->wlock);
    pthread_rwlock_wrlock(&ring->lock);
    struct entry *old = ring->ovr;
    size_t oldn = ring->novr;
    ring->ovr = ne;
    ring->novr = k;
    pthread_rwlock_unlock(&ring->lock);
    pthread_mutex_unlock(&ring->wlock);
    free_entries(old, oldn);
    return 0;
}

void hy_hash_ring_clear(struct hy_hash_ring *ring)
{
    if (!ring)
        return;
    pthread_mutex_lock(&ring->wlock);
    pthread_rwlock_wrlock(&ring->lock);
    struct point *pts = ring->points;
    struct entry *ovr = ring->ovr;
    size_t novr = ring->novr;
    ring->points = NULL;
    ring->npoints = 0;
    ring->ovr = NULL;
    ring->novr = 0;
    pthread_rwlock_unlock(&ring->lock);
    free_entries(ring->nodes, ring->nnodes);
    ring->nodes = NULL;
    ring->nnodes = 0;
    pthread_mutex_unlock(&ring->wlock);
    free(pts);
    free_entries(ovr, novr);
}

size_t hy_hash_ring_node_count(const struct hy_hash_ring *ring)
{
    if (!ring)
        return 0;
    struct hy_hash_ring *r = (struct hy_hash_ring *)ring;
    pthread_mutex_lock(&r->wlock);
    size_t n = r->nnodes;
    pthread_mutex_unlock(&r->wlock);
    return n;
}

size_t hy_hash_ring_override_count(const struct hy_hash_ring *ring)
{
    if (!ring)
        return 0;
    struct hy_hash_ring *r = (struct hy_hash_ring *)ring;
    pthread_rwlock_rdlock(&r->lock);
    size_t n = r->novr;
    pthread_rwlock_unlock(&r->lock);
    return n;
}
