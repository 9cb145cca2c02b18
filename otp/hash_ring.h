/* HashRing: consistent hashing with virtual nodes and overrides.
 *
 * A plain data structure, not a process: it maps a key (a byte string) to a
 * node (a uint64_t chosen by the caller: a node id, a shard number, an index
 * into the caller's table of pids...). Every node is identified by a byte
 * string of its own (its "node key", e.g. "node-a" or a little-endian
 * integer) and owns `vnodes` points on a 64-bit ring; a key belongs to the
 * node owning the first point at or after the key's hash, wrapping around.
 * An override pins one key to a node, whatever the ring says.
 *
 * Determinism. Placement depends only on the set of (node key, vnodes) pairs
 * and the overrides — never on insertion order, the process, the machine or
 * a random seed (the seed Hydra seeds its hasher randomly per instance; this
 * one does not), so every process of every node computes the same placement
 * from the same membership. The hash is fixed and part of the API:
 *
 *   hy_hash_ring_hash(b) = fmix64(fnv1a64(b))
 *     fnv1a64: 64-bit FNV-1a, offset basis 0xcbf29ce484222325,
 *              prime 0x100000001b3, over the bytes of b in order;
 *     fmix64:  MurmurHash3's finaliser: x ^= x >> 33; x *= 0xff51afd7ed558ccd;
 *              x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53; x ^= x >> 33.
 *   point i of a node whose key hashes to h:  i = 0: h;
 *                                             i > 0: fmix64(h + i * 0x9e3779b97f4a7c15)
 *   points with equal positions are ordered by node key (memcmp, shorter
 *   first on a common prefix), then by i.
 *
 * So a node's first point sits exactly on the hash of its own key: looking
 * up a node's key finds that node (the seed's tests rely on it). Adding or
 * removing a node moves only the keys that land on its points (about 1/N of
 * them with N equally weighted nodes); every other key stays where it was.
 *
 * Threads. A ring may be used from any thread, processes included: lookups
 * take a read lock for a binary search; changes are serialised by a writer
 * mutex, rebuild the point array aside and swap it in under the write lock,
 * so readers wait only for a pointer swap. No call blocks on the runtime or
 * yields. For zero sharing, give each shard its own hy_hash_ring_clone():
 * copies place keys identically.
 *
 * Ownership: hy_hash_ring_create() returns a ring owned by the caller, who
 * destroys it once no thread uses it any more; every other function borrows
 * the ring for the call. Keys and arrays passed in are borrowed for the call
 * (the ring copies what it keeps); out-parameters are the caller's.
 */
#ifndef HY_OTP_HASH_RING_H
#define HY_OTP_HASH_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Virtual nodes per node when the ring's default is asked for (0). */
#define HY_HASH_RING_VNODES_DEFAULT 160
/* Most virtual nodes one node may have. */
#define HY_HASH_RING_VNODES_MAX 65536
/* Longest node key or override key, in bytes. Lookup keys are unbounded. */
#define HY_HASH_RING_KEY_MAX 1024

struct hy_hash_ring; /* opaque */

/* A node (or an override) for the bulk setters. key is borrowed. */
struct hy_hash_ring_node {
    const void *key;
    size_t len;
    uint64_t node;
    unsigned vnodes; /* 0 = the ring's default; ignored for overrides */
};

/* The ring's fixed 64-bit hash of len bytes at data (borrowed; may be NULL
 * when len is 0), as defined above. Context: anywhere, signal-safe. */
uint64_t hy_hash_ring_hash(const void *data, size_t len);

/* Creates an empty ring whose nodes get vnodes points each unless they say
 * otherwise (0 = HY_HASH_RING_VNODES_DEFAULT). Returns owned in *out.
 * Errors: HY_EINVAL (out NULL, vnodes > HY_HASH_RING_VNODES_MAX), HY_ENOMEM.
 * Context: any thread. */
int hy_hash_ring_create(unsigned vnodes, struct hy_hash_ring **out);

/* Destroys ring (transferred); NULL is a no-op. No thread may be using it.
 * Context: any thread. */
void hy_hash_ring_destroy(struct hy_hash_ring *ring);

/* Copies ring (borrowed) into a new ring returned owned in *out; the copy
 * places every key as the original does at the time of the copy.
 * Errors: HY_EINVAL, HY_ENOMEM. Context: any thread. */
int hy_hash_ring_clone(const struct hy_hash_ring *ring, struct hy_hash_ring **out);

/* Adds the node identified by key[len] (borrowed, copied) with value node
 * and the ring's default number of virtual nodes. If a node with that key
 * is already there it is replaced (value and points); *replaced (may be
 * NULL) says so and *old (may be NULL) gets the value it had.
 * Errors: HY_EINVAL (ring NULL, key NULL, len 0 or > HY_HASH_RING_KEY_MAX),
 * HY_ENOMEM (the ring is unchanged). Context: any thread. */
int hy_hash_ring_add_node(struct hy_hash_ring *ring, const void *key, size_t len, uint64_t node,
                          bool *replaced, uint64_t *old);

/* As hy_hash_ring_add_node() with vnodes points (0 = the ring's default):
 * a node with twice the points takes about twice the keys.
 * Errors: as hy_hash_ring_add_node, HY_EINVAL (vnodes too large).
 * Context: any thread. */
int hy_hash_ring_add_node_vnodes(struct hy_hash_ring *ring, const void *key, size_t len,
                                 uint64_t node, unsigned vnodes, bool *replaced, uint64_t *old);

/* Removes the node identified by key[len] (borrowed); *node (may be NULL)
 * gets its value. Errors: HY_ENOENT (no such node), HY_EINVAL, HY_ENOMEM.
 * Context: any thread. */
int hy_hash_ring_remove_node(struct hy_hash_ring *ring, const void *key, size_t len,
                             uint64_t *node);

/* Replaces every node with the n given (array and keys borrowed); a key
 * given twice keeps its last entry. Overrides are kept.
 * Errors: HY_EINVAL (a bad entry: nothing changed), HY_ENOMEM (nothing
 * changed). Context: any thread. */
int hy_hash_ring_set_nodes(struct hy_hash_ring *ring, const struct hy_hash_ring_node *nodes,
                           size_t n);

/* Writes to *node the node that key[len] (borrowed) belongs to: its override
 * if it has one, else the owner of the first point at or after
 * hy_hash_ring_hash(key), wrapping around.
 * Errors: HY_ENOENT (no override and no node), HY_EINVAL (ring or node
 * NULL, key NULL with len > 0). Context: any thread. */
int hy_hash_ring_find(const struct hy_hash_ring *ring, const void *key, size_t len, uint64_t *node);

/* Pins key[len] (borrowed, copied) to node: hy_hash_ring_find() returns node
 * for that exact key from now on. Replaces an existing override of the key
 * (*replaced and *old as for add_node; both may be NULL).
 * Errors: HY_EINVAL (len 0 or > HY_HASH_RING_KEY_MAX, key NULL), HY_ENOMEM.
 * Context: any thread. */
int hy_hash_ring_add_override(struct hy_hash_ring *ring, const void *key, size_t len, uint64_t node,
                              bool *replaced, uint64_t *old);

/* Removes the override of key[len]; *node (may be NULL) gets its value.
 * Errors: HY_ENOENT (none), HY_EINVAL. Context: any thread. */
int hy_hash_ring_remove_override(struct hy_hash_ring *ring, const void *key, size_t len,
                                 uint64_t *node);

/* Replaces every override with the n given (vnodes fields ignored).
 * Errors: HY_EINVAL (a bad entry: nothing changed), HY_ENOMEM (nothing
 * changed). Context: any thread. */
int hy_hash_ring_set_overrides(struct hy_hash_ring *ring, const struct hy_hash_ring_node *ovr,
                               size_t n);

/* Removes every node and every override. NULL is a no-op.
 * Context: any thread. */
void hy_hash_ring_clear(struct hy_hash_ring *ring);

/* Number of nodes (not points) in ring (borrowed; 0 for NULL).
 * Context: any thread. */
size_t hy_hash_ring_node_count(const struct hy_hash_ring *ring);

/* Number of overrides in ring (borrowed; 0 for NULL). Context: any thread. */
size_t hy_hash_ring_override_count(const struct hy_hash_ring *ring);

#ifdef __cplusplus
}
#endif

#endif /* HY_OTP_HASH_RING_H */
