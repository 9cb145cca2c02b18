/* Extension points of the scheduler, for net/ and the socket poller.
 *
 * core/ never depends on net/: a message or signal for a pid of another node
 * is handed to the remote-send hook installed by net/ (or dropped and counted
 * when none is installed), and each shard polls the hooks registered on it
 * once per scheduler turn.
 */
#ifndef HY_CORE_HOOK_H
#define HY_CORE_HOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "pid.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hy_msg;

/* Called on the sending shard for every message (or signal) whose
 * destination pid is on another node. Takes ownership of m (it must free it
 * with hy_msg_free(), possibly later). Returns 0, or a negative HY_E* code
 * (the message is then counted as dropped; m is still owned by the hook). */
typedef int (*hy_remote_send_fn)(struct hy_msg *m, void *ctx);

/* Installs the remote-send hook (NULL removes it). ctx is borrowed.
 * Context: before hy_start() or from shard 0 while nothing sends remotely. */
void hy_hook_set_remote_send(hy_remote_send_fn fn, void *ctx);

/* A poll hook runs on its shard's thread once per scheduler turn (and
 * before the shard sleeps). poll() returns how much work it did (0 = none);
 * it may send messages. next_deadline_ns() (optional) tells the idle loop
 * the latest time it may sleep until (UINT64_MAX = no limit; 0 = must not
 * sleep, keep polling). If fd >= 0, the idle shard sleeps in ppoll() on that
 * descriptor too (POLLIN) instead of on its futex, so input on it wakes the
 * shard: kernel sockets need no busy polling. Structures are borrowed until
 * removed. Set fd = -1 when there is none (0 is a valid descriptor). */
struct hy_poll_hook {
    struct hy_poll_hook *next;               /* runtime's link */
    unsigned (*poll)(void *ctx);
    uint64_t (*next_deadline_ns)(void *ctx);
    void *ctx;
    int fd;
};

/* Adds hook to the calling shard. Errors: HY_ENOTSHARD, HY_EINVAL.
 * Context: a shard thread (process or callback). */
int hy_hook_add_poll(struct hy_poll_hook *hook);

/* Removes hook from the calling shard. Errors: HY_ENOTSHARD, HY_ENOENT. */
int hy_hook_remove_poll(struct hy_poll_hook *hook);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_HOOK_H */
