/* Process identifiers and references.
 *
 * Both are 128-bit values passed by value.
 *
 *   hy_pid.hi = node id (24 bits) | node creation (24 bits) | shard (16 bits)
 *   hy_pid.lo = slot (32 bits)    | generation (32 bits)
 *
 *   hy_ref.hi = node id (24 bits) | node creation (24 bits) | home shard (16 bits)
 *   hy_ref.lo = creating shard (12 bits) | counter (52 bits)
 *
 * The node creation changes every time a node starts, so pids of an earlier
 * incarnation never reach a process of a later one; the generation changes
 * every time a slot is reused, so a stale pid never reaches the new occupant.
 * A pid prints as <node.shard.slot>. The all-zero pid (HY_PID_NONE) is never
 * a live process; neither is the all-zero ref.
 */
#ifndef HY_CORE_PID_H
#define HY_CORE_PID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hy_pid {
    uint64_t hi;
    uint64_t lo;
} hy_pid;

typedef struct hy_ref {
    uint64_t hi;
    uint64_t lo;
} hy_ref;

#define HY_PID_NONE ((hy_pid){0, 0})
#define HY_REF_NONE ((hy_ref){0, 0})

/* Longest string hy_pid_format() writes, NUL included. */
#define HY_PID_STRLEN 40

static inline hy_pid hy_pid_make(uint32_t node, uint32_t creation, uint16_t shard, uint32_t slot,
                                 uint32_t gen)
{
    hy_pid p;
    p.hi = ((uint64_t)(node & 0xffffffu) << 40) | ((uint64_t)(creation & 0xffffffu) << 16) | shard;
    p.lo = ((uint64_t)slot << 32) | gen;
    return p;
}

static inline uint32_t hy_pid_node(hy_pid p) { return (uint32_t)(p.hi >> 40); }
static inline uint32_t hy_pid_creation(hy_pid p) { return (uint32_t)(p.hi >> 16) & 0xffffffu; }
static inline uint16_t hy_pid_shard(hy_pid p) { return (uint16_t)p.hi; }
static inline uint32_t hy_pid_slot(hy_pid p) { return (uint32_t)(p.lo >> 32); }
static inline uint32_t hy_pid_gen(hy_pid p) { return (uint32_t)p.lo; }

/* True when both pids name the same process. Context: anywhere. */
static inline bool hy_pid_eq(hy_pid a, hy_pid b) { return a.hi == b.hi && a.lo == b.lo; }
/* True for HY_PID_NONE. Context: anywhere. */
static inline bool hy_pid_is_none(hy_pid p) { return p.hi == 0 && p.lo == 0; }

static inline uint16_t hy_ref_shard(hy_ref r) { return (uint16_t)r.hi; }
static inline uint32_t hy_ref_node(hy_ref r) { return (uint32_t)(r.hi >> 40); }
/* True when both refs are the same reference. Context: anywhere. */
static inline bool hy_ref_eq(hy_ref a, hy_ref b) { return a.hi == b.hi && a.lo == b.lo; }
/* True for HY_REF_NONE. Context: anywhere. */
static inline bool hy_ref_is_none(hy_ref r) { return r.hi == 0 && r.lo == 0; }

/* Writes "<node.shard.slot>" into buf (borrowed, at least HY_PID_STRLEN bytes)
 * and returns buf. Context: anywhere, signal-safe. */
char *hy_pid_format(hy_pid pid, char *buf, size_t len);

/* Writes "#Ref<node.shard.origin.counter>" into buf and returns buf.
 * Context: anywhere, signal-safe. */
char *hy_ref_format(hy_ref ref, char *buf, size_t len);

/* Returns a fresh reference, unique on this node incarnation, homed on the
 * calling shard. Fails with HY_ENOTSHARD off a shard thread (refs are made
 * from per-shard counters, without atomics).
 * Context: any shard thread (process or runtime callback). */
int hy_ref_make(hy_ref *out);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_PID_H */
