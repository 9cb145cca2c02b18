/* Registry: keyed process registration (Elixir's Registry), partitioned
 * per shard, with optional start on demand (the seed's Registry::with_start).
 *
 * A registry has a name and a kind: HY_REGISTRY_UNIQUE (a key names at most
 * one process) or HY_REGISTRY_DUPLICATE (a key names any number: a pub/sub
 * topic). Keys are byte strings of 1..HY_REGISTRY_KEY_MAX bytes; each entry
 * also carries a 64-bit value chosen by the registering process.
 *
 * Layout. hy_registry_start_link() starts a supervisor (one_for_one) with
 * one partition process per shard, partition i on shard i, registered as
 * "<name>/<i>". A key lives in partition
 *     hy_hash_ring_hash(key) % hy_shard_count()
 * (the fixed hash of hash_ring.h, so every process computes the same
 * partition without asking anyone). Every operation is a GenServer call to
 * the key's partition, from any shard; the partition owns its table alone.
 *
 * Consistency guarantees:
 *  - Per key, operations are linearizable: they are all executed, one at a
 *    time, by the key's single partition process, and each call returns
 *    after its effect. Once hy_registry_register() has returned, every
 *    lookup, dispatch or register of that key started afterwards, from any
 *    process on any shard, sees the entry (read-your-writes across
 *    processes); once unregister has returned, none sees it.
 *  - Across keys there is no atomicity: hy_registry_count() sums
 *    per-partition snapshots taken at slightly different times.
 *  - Removal on exit is asynchronous: the partition monitors every
 *    registered process and removes its entries when the DOWN arrives.
 *    Until then a lookup may return a process that has just died (as in
 *    Erlang, a pid may die right after any lookup anyway); no entry of a
 *    dead process survives its DOWN.
 *  - A partition that crashes loses its entries: its supervisor restarts it
 *    empty; processes registered there are not told (register again, or
 *    monitor "<name>/<i>" to notice).
 *  - Start on demand: for a given key the start function runs at most once
 *    at a time; callers asking for the key while it runs wait for that same
 *    start and all get its pid. It runs in a short-lived process on the
 *    partition's shard (so the partition keeps serving other keys, and the
 *    started process may itself use the registry); the partition then
 *    registers and monitors the pid under the key. If the key got
 *    registered meanwhile by someone else, that process wins: the callers
 *    get it, and the newly started one is stopped (exit reason shutdown).
 *
 * Dispatch sends from the calling process, after fetching the entries, so a
 * dispatched message keeps the per-sender order with the caller's other
 * messages to the same receivers.
 *
 * Registry names, keys and output arrays are borrowed for the duration of
 * each call.
 *
 * Every call below waits for the partition without a timeout (a partition
 * answers at once, except lookup_or_start, which waits for the start) and
 * may also fail with HY_ENOPROC (no such registry, or the key's partition
 * is not running) or HY_EEXIT (the partition died during the call): a dead
 * partition is an error, never a hang.
 */
#ifndef HY_OTP_REGISTRY_H
#define HY_OTP_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/pid.h"

/* Longest registry name (partitions are registered as "<name>/<i>"). */
#define HY_REGISTRY_NAME_MAX 48
/* Longest key, in bytes. */
#define HY_REGISTRY_KEY_MAX 256

enum hy_registry_kind {
    HY_REGISTRY_UNIQUE = 0,
    HY_REGISTRY_DUPLICATE = 1,
};

/* Starts on demand the process for key[len] (borrowed for the call) and
 * writes its pid; arg is hy_registry_opts.start_arg. Runs in a temporary
 * process on the key's partition's shard, which exits normally right after
 * (a link from the started process to it is harmless). Returns 0 or a
 * negative error, given to the callers as is. */
typedef int (*hy_registry_start_fn)(const void *key, size_t len, void *arg, hy_pid *out);

struct hy_registry_opts {
    int kind;                   /* enum hy_registry_kind */
    hy_registry_start_fn start; /* start on demand (unique only); NULL: none */
    void *start_arg;            /* borrowed for the registry's life; used from
                                 * every shard (static data, typically) */
};

#define HY_REGISTRY_OPTS_INIT {.kind = HY_REGISTRY_UNIQUE}

/* One registration. */
struct hy_registry_entry {
    hy_pid pid;
    uint64_t value;
};

/* Starts the registry called name (copied, 1..HY_REGISTRY_NAME_MAX-1 chars,
 * no '/') with opts (borrowed; NULL = unique, no start function): a
 * supervisor linked to the caller with one partition per shard. *sup (may be
 * NULL) gets the supervisor's pid.
 * The supervisor is registered under name itself.
 * Errors: HY_EINVAL (bad name or opts), HY_EEXIST (name taken, e.g. by a
 * running registry), HY_ESTOPPED (a partition failed to start: a
 * "<name>/<i>" name taken), HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_registry_start_link(const char *name, const struct hy_registry_opts *opts, hy_pid *sup);

/* Stops the registry whose supervisor is sup (its partitions first) with
 * reason normal (so the linked parent is not taken down) and waits up to
 * timeout_ns; callers waiting on a partition get HY_EEXIT.
 * Errors: as hy_gen_server_stop. Context: a process. */
int hy_registry_stop(hy_pid sup, int64_t timeout_ns);

/* Registers the calling process under key[len] (borrowed) with value.
 * Errors: HY_EEXIST (unique registry, key taken — also by the caller
 * itself: *owner, if not NULL, gets the holder), HY_EINVAL (bad key or
 * name), HY_ENOPROC (no such registry), HY_ENOMEM, HY_ENOTPROC.
 * Context: a process. */
int hy_registry_register(const char *registry, const void *key, size_t len, uint64_t value,
                         hy_pid *owner);

/* Removes every entry of the calling process under key[len].
 * Errors: HY_ENOENT (it had none), HY_EINVAL, HY_ENOPROC, HY_ENOTPROC.
 * Context: a process. */
int hy_registry_unregister(const char *registry, const void *key, size_t len);

/* Copies up to max entries under key[len] into out (borrowed; may be NULL
 * when max is 0) and their total number into *count (may be NULL). Order:
 * registration order. Errors: HY_EINVAL, HY_ENOPROC, HY_EMSGSIZE (more
 * entries than one message can carry), HY_ENOTPROC. Context: a process. */
int hy_registry_lookup(const char *registry, const void *key, size_t len,
                       struct hy_registry_entry *out, size_t max, size_t *count);

/* Unique registries: the process under key[len] (borrowed) in *pid.
 * Errors: HY_ENOENT (none), and hy_registry_lookup's. Context: a process. */
int hy_registry_whereis(const char *registry, const void *key, size_t len, hy_pid *pid);

/* Sends {tag, data[dlen]} (copied) from the caller to every process under
 * key[len]; *sent (may be NULL) gets how many. No entry is not an error.
 * Errors: HY_EINVAL (also a system tag), HY_EMSGSIZE, HY_ENOPROC,
 * HY_ENOTPROC, hy_send's. Context: a process. */
int hy_registry_dispatch(const char *registry, const void *key, size_t len, uint64_t tag,
                         const void *data, size_t dlen, size_t *sent);

/* Unique registries with a start function: the process under key[len], or
 * one started now by the start function (see above) and registered.
 * Errors: HY_ENOTSUP (no start function), HY_EINVAL (duplicate registry,
 * bad key), whatever the start function returned (its pid is then not
 * registered), HY_ESTOPPED (the start process crashed), HY_ENOPROC,
 * HY_ENOTPROC. Context: a process. */
int hy_registry_lookup_or_start(const char *registry, const void *key, size_t len, hy_pid *pid);

/* Number of entries in the whole registry (see the consistency note).
 * Errors: HY_EINVAL, HY_ENOPROC, HY_ENOTPROC. Context: a process. */
int hy_registry_count(const char *registry, size_t *count);

/* Index of the partition (and shard) that holds key[len]: hash % shards.
 * Returns -1 when the runtime is not running or the key is bad.
 * Context: anywhere. */
int hy_registry_partition(const void *key, size_t len);

#endif /* HY_OTP_REGISTRY_H */
