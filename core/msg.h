/* Messages, send and selective receive.
 *
 * A message is a 64-bit tag plus a flat byte payload (no pointers into another
 * process: Erlang's semantics). Its buffer comes from the *sending* shard's
 * allocator; the receiver owns it exclusively once received, and
 * hy_msg_free() sends it back to its home shard (in batches when the home is
 * another shard). No shard frees another shard's memory.
 *
 * Order: messages from one sender to one receiver arrive in send order,
 * whatever shards they live on, together with the signals (exit, link,
 * monitor, down) of the same pair.
 *
 * A send to a dead or unknown pid is dropped silently, as in Erlang, and
 * counted (hy_stats.dropped_dead) by the shard that drops it: the sender's
 * for an unknown pid or a dead one of its own shard, the destination's for a
 * dead process on another shard.
 *
 * Mailboxes are unbounded by default, like Erlang's. A bound can be set per
 * process (hy_spawn_opts.max_mailbox) or for the runtime
 * (hy_config.default_max_mailbox); a message to a full mailbox is then either
 * dropped and counted (hy_stats.dropped_full) or the receiver is killed,
 * depending on its policy. The sender is never told: send never blocks.
 * A message carrying the ref its receiver made last (the reply a pending
 * call, spawn or timer request waits for) is accepted even by a full mailbox.
 */
#ifndef HY_CORE_MSG_H
#define HY_CORE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "pid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tags with this bit set are reserved for the runtime (EXIT, DOWN, ...). */
#define HY_TAG_SYSTEM (1ull << 63)

/* Receive timeouts, in ns. */
#define HY_INFINITY (-1)
#define HY_NOWAIT 0

struct hy_msg;

/* A message's drop function (hy_msg_set_drop): releases what its payload
 * holds. */
typedef void (*hy_msg_drop_fn)(const struct hy_msg *m);

/* A received message. Read its fields; do not write them. Payload is
 * 16-byte aligned. */
struct hy_msg {
    struct hy_msg *next; /* runtime's link */
    uint64_t tag;
    hy_pid from;         /* sender (HY_PID_NONE from a foreign thread) */
    hy_pid to;           /* destination */
    hy_ref ref;          /* reference it answers, or HY_REF_NONE */
    uint32_t size;       /* payload bytes */
    uint32_t cap;        /* payload capacity */
    uint16_t home;       /* shard that owns the buffer */
    uint8_t kind;        /* runtime: message or signal kind */
    uint8_t cls;         /* runtime: size class */
    uint32_t aux;        /* runtime: signal argument; hy_msg_set_drop's function */
    uint8_t data[] __attribute__((aligned(16)));
};

/* Copies len bytes of data into a new message with tag and sends it to `to`.
 * Returns 0 also when `to` is dead (the message is dropped and counted).
 * Errors: HY_EMSGSIZE (len above hy_config.max_message_size: nothing is
 * sent), HY_EINVAL (tag has HY_TAG_SYSTEM set, or data NULL with len > 0),
 * HY_ENOMEM, HY_ENOTSHARD (not on a shard thread: use hy_send_foreign).
 * Context: a process or a shard callback. */
int hy_send(hy_pid to, uint64_t tag, const void *data, size_t len);

/* As hy_send(), with a reference carried in the message (replies). */
int hy_send_ref(hy_pid to, uint64_t tag, hy_ref ref, const void *data, size_t len);

/* As hy_send_ref(), but tag may carry HY_TAG_SYSTEM. Reserved for
 * behaviours (otp/: GenServer's call/cast/stop protocol) that need tags no
 * user message can forge. Errors: as hy_send. */
int hy_send_sys(hy_pid to, uint64_t tag, hy_ref ref, const void *data, size_t len);

/* Allocates a message whose payload (len bytes, uninitialised) the caller
 * fills before hy_msg_send(): zero-copy send. Returns owned in *out.
 * Errors: HY_EMSGSIZE, HY_ENOMEM, HY_ENOTSHARD. Context: a shard thread. */
int hy_msg_alloc(size_t len, struct hy_msg **out);

/* Sends m (transferred, even on error: it is then freed) with its tag and
 * ref fields as set by the caller (m->tag, m->ref may be written before the
 * send). Errors: as hy_send. Context: a process or shard callback. */
int hy_msg_send(hy_pid to, struct hy_msg *m);

/* Gives m (from hy_msg_alloc, not yet sent) a drop function, for a payload
 * that holds a resource (a reference to shared memory, a descriptor): when
 * the runtime drops m undelivered, after a successful hy_msg_send (its
 * receiver dead or unknown or gone to another node, its mailbox full, or
 * the receiver ending with m still queued), it calls fn(m) once, on the
 * dropping shard's thread, before the buffer is freed. A process that
 * receives m takes the resource over: hy_msg_free() never calls fn (nor
 * does a hy_msg_send that fails: its caller still holds the resource). fn
 * must not call the runtime (send, receive, allocate or free messages): it
 * runs inside it; free(), close() and atomic operations are fine. A message
 * sent to another node goes as bytes: fn runs as it leaves. NULL clears the
 * function. The runtime keeps each distinct fn in a table of
 * HY_MSG_DROP_FNS for good (the message header has no room for a pointer):
 * use a few static functions, not one per message.
 * Errors: HY_EINVAL (m NULL), HY_ENOMEM (HY_MSG_DROP_FNS distinct
 * functions in use already: m is left without one).
 * Context: any thread; m owned by the caller. */
#define HY_MSG_DROP_FNS 255
int hy_msg_set_drop(struct hy_msg *m, hy_msg_drop_fn fn);

/* Releases a message (transferred): back to its home shard's allocator.
 * NULL is a no-op. Context: a shard thread. */
void hy_msg_free(struct hy_msg *m);

/* From a thread that is not a shard (a library callback thread, say): copies
 * the message into the target shard's multi-producer inbox. Order between
 * two sends of one foreign thread to one receiver is kept.
 * Errors: HY_EMSGSIZE, HY_ENOMEM, HY_EINVAL, HY_ENOTSTARTED.
 * Context: any thread, including a shard (where it is just hy_send). */
int hy_send_foreign(hy_pid to, uint64_t tag, const void *data, size_t len);

/* Predicate for hy_recv_match: nonzero keeps the message. */
typedef int (*hy_match_fn)(const struct hy_msg *m, void *arg);

/* Receives the oldest message. timeout_ns: HY_INFINITY, HY_NOWAIT (0) or a
 * duration. The message is returned owned in *out.
 * Errors: HY_ETIMEDOUT (nothing within the timeout), HY_ENOTPROC.
 * Context: a process. */
int hy_recv(struct hy_msg **out, int64_t timeout_ns);

/* Receives the oldest message whose tag equals tag; the others stay queued
 * in their order. Errors: as hy_recv. */
int hy_recv_tag(uint64_t tag, struct hy_msg **out, int64_t timeout_ns);

/* Receives the oldest message carrying ref. When ref is the last one the
 * calling process created with hy_ref_make(), messages that were already
 * queued before it was made are not scanned (OTP's receive marker), so a
 * long mailbox does not slow down a call. Errors: as hy_recv. */
int hy_recv_ref(hy_ref ref, struct hy_msg **out, int64_t timeout_ns);

/* Receives the oldest message for which fn(m, arg) returns nonzero. fn must
 * not call the runtime. Errors: as hy_recv. */
int hy_recv_match(hy_match_fn fn, void *arg, struct hy_msg **out, int64_t timeout_ns);

/* Messages queued in the calling process's mailbox (0 outside a process). */
size_t hy_mailbox_len(void);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_MSG_H */
