/* The kvcache application: a memcached-compatible cache, one key-owner
 * process per shard. The interfaces between its modules, shaped like an OTP
 * release (apps/kvcache/README.md):
 *
 *   kvcache_store.c   one shard's items: slab classes, hash table, LRU
 *   kvcache_proto.c   memcached's text and meta protocols
 *   kvcache_server.c  the key-owner GenServer of each shard, and requests to it
 *   kvcache_conn.c    one process per client connection
 *   kvcache_sup.c     the supervisor that keeps each shard's owner running
 *   kvcache_app.c     the application: the tree, and the listener (its main)
 *   main.c            hydra-kvcache: options, then hy_app_run()
 */
#ifndef HY_APPS_KVCACHE_H
#define HY_APPS_KVCACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hydra.h"
#include "kvcache_proto.h"
#include "kvcache_store.h"

#define KVCACHE_MAX_SHARDS 64

/* The node's configuration: filled by main() before the runtime starts,
 * read-only afterwards (every shard reads it). */
struct kvcache_config {
    struct kvcache_settings set; /* maxbytes is the node's total */
    uint32_t write_timeout_s;    /* a client that reads nothing this long is closed */
    uint32_t read_timeout_s;     /* a command left incomplete this long closes (0 off) */
    uint32_t stats_interval_s;   /* the listener prints a stats line (0 off) */
    uint32_t acceptors;          /* acceptor processes per shard */
    bool direct;                 /* owners write forwarded replies to the socket */
    bool direct_ring;            /* ... through their shard's io_uring (hy_ring_send), not
                                  * by send(2) (epoll: send(2) still; default off) */
    bool direct_ring_submit;     /* ... submitted as the owner's mailbox empties */
    bool direct_home;            /* ... except when the connection's shard is awake
                                  * (hy_shard_asleep): then the reply goes back to the
                                  * connection, which writes it itself */
    uint32_t send_from_item;     /* a local get's value (with its CRLF) of this many
                                  * bytes and up is sent from the item (0: never) */
    bool hugepages;              /* stores on transparent huge pages (kvcache_store.h) */
    uint64_t direct_give_up_ns;  /* ... a connection gives up on one after this long, at
                                  * most a quarter more (its checks: 0: 5 s) */
    uint64_t started;            /* unix time the stores' clocks count from */
    const char *console_addr;    /* --console: the node console's address (NULL off) */
    uint16_t console_port;
};

extern struct kvcache_config kvcache_cfg;

/* Per-shard state. Written only by processes of that shard (the owner sets
 * store; connections link themselves into conns), except the counters,
 * which other shards read with relaxed loads for `stats`. */
struct kvcache_conn_link {
    struct kvcache_conn_link *prev, *next;
    hy_pid pid;
    bool busy; /* between reading a request and finishing its reply */
};

/* The commands this shard's connections forward to one owner in the
 * current turn: one KVCACHE_REQ_BATCH message carries them all. The first
 * connection to add one (the leader) yields once, so the other connections
 * ready in the same turn can add theirs, then sends the batch, waits for
 * the reply and hands each connection its part (KVCACHE_TAG_LAST, or
 * KVCACHE_TAG_FAIL when the owner did not answer) under its own ref. */
struct kvcache_fwd {
    struct kvcache_out req; /* [u32 len][command] per command */
    hy_pid *who;            /* the connection of each command */
    hy_ref *refs;           /* the ref it waits on */
    size_t n, cap;
    hy_pid leader;          /* HY_PID_NONE: no batch open */
};

/* A shard's cached look-up of another shard's owner (its registered name):
 * valid while that shard's owner_gen is still gen. */
struct kvcache_owner_cache {
    hy_pid pid;
    uint64_t gen; /* 0: none */
};

struct kvcache_shard {
    struct kvcache_store *store;   /* NULL while the owner (re)starts */
    _Atomic uint64_t owner_gen;    /* moves on as this shard's owner starts and ends */
    struct kvcache_owner_cache owners[KVCACHE_MAX_SHARDS]; /* this shard's thread only */
    struct kvcache_out spare;      /* a reply buffer kept between batches (empty: none) */
    struct kvcache_fwd *fwd[KVCACHE_MAX_SHARDS]; /* per owner; this shard's thread only */
    bool stopping;                 /* the node stops: connections end */
    /* the command a connection of this shard has just parsed, one for all
     * of them: its lines stay in the cache, where a command on each
     * connection's own stack (hundreds of stacks) would cost a line miss
     * per line the parser writes. Valid only until the connection yields
     * (a forward's wait, a send that waits): what is needed after that is
     * copied first. This shard's thread only. */
    struct kvcache_cmd cmd;
    struct kvcache_conn_link conns; /* list head */
    _Atomic uint64_t bytes_read, bytes_written, cmd_meta, curr_conns, total_conns;
} __attribute__((aligned(64)));

extern struct kvcache_shard kvcache_shards[KVCACHE_MAX_SHARDS];

/* Starts *o empty on the calling shard's spare reply buffer (a forwarded
 * batch's request, reply or owner's output), so that a batch costs no
 * malloc/free pair; kvcache_spare_give() hands it back (or frees it: a
 * spare is kept already, or the buffer grew large). Context: a process on
 * sh's shard. */
static inline void kvcache_spare_take(struct kvcache_shard *sh, struct kvcache_out *o)
{
    *o = sh->spare;
    sh->spare = (struct kvcache_out){0};
    o->len = 0;
}

static inline void kvcache_spare_give(struct kvcache_shard *sh, struct kvcache_out *o)
{
    if (sh->spare.cap == 0 && !o->borrowed && !o->oom && o->cap <= 64 * 1024) {
        sh->spare = *o;
        sh->spare.len = 0;
    } else {
        kvcache_out_fini(o);
    }
    *o = (struct kvcache_out){0};
}

/* The shard that owns the key of hash (kvcache_key_hash): the one function
 * that places keys (a later cluster mode extends it to nodes). It takes the
 * hash's high bits; the store's bucket takes the low ones, so a command
 * hashes its key once. Context: any thread (after the configuration). */
unsigned kvcache_hash_owner(uint64_t hash);

/* kvcache_hash_owner(kvcache_key_hash(key, nkey)). */
unsigned kvcache_key_owner(const char *key, size_t nkey);

/* The current unix time in seconds (a coarse clock). */
uint64_t kvcache_unix_now(void);

/* ---- kvcache_server.c: the key owners ------------------------------------- */

/* Requests to an owner (tag KVCACHE_TAG_REQ, first byte of the payload). */
enum kvcache_req {
    KVCACHE_REQ_RAW = 1,    /* a whole command (line and data): reply its output */
    KVCACHE_REQ_GETKEYS,    /* a get-family line: reply one [u32 len][bytes] chunk per key */
    KVCACHE_REQ_STATS,      /* reply struct kvcache_stats_reply */
    KVCACHE_REQ_FLUSH,      /* int64 delay follows; empty reply */
    KVCACHE_REQ_RESET,      /* `stats reset`; empty reply */
    KVCACHE_REQ_STOP_CONNS, /* the node stops: end idle connections now; no reply */
    KVCACHE_REQ_BATCH,      /* [u32 len][command] ...: reply one [u32 len][output] chunk each;
                             * len | KVCACHE_BATCH_CMD: [struct kvcache_cmd_wire][command],
                             * the command as the connection parsed it */
    KVCACHE_REQ_DIRECT,     /* [struct kvcache_direct *][command]: write the output to
                             * the connection's socket; an empty reply only when the
                             * connection waits (KVCACHE_DIRECT_WAITER) or has output
                             * left to write */
    KVCACHE_REQ_DIRECT_CMD, /* [struct kvcache_direct *][struct kvcache_cmd_wire][command]:
                             * as KVCACHE_REQ_DIRECT, the command as parsed */
};

/* A connection's channel for replies its owner writes itself
 * (KVCACHE_REQ_DIRECT): the connection forwards its last command and goes
 * back to reading; the owner runs it and writes the output to fd, a
 * duplicate of the connection's socket, so a connection that ends while
 * its command is at the owner cannot have its descriptor number reused
 * under the owner's write. Shared by the connection's shard and the
 * owner's: refs, state and (before state becomes DONE) left are the only
 * fields written after creation. */
enum kvcache_direct_state {
    KVCACHE_DIRECT_IDLE = 0,   /* no command at an owner */
    KVCACHE_DIRECT_PENDING,    /* a command is at the owner, unclaimed */
    KVCACHE_DIRECT_RUNNING,    /* the owner claimed it (PENDING -> RUNNING): it answers */
    KVCACHE_DIRECT_DONE,       /* the owner answered; left holds what it could not write */
    KVCACHE_DIRECT_ABANDONED,  /* the connection claimed it (PENDING -> ABANDONED): it
                                * answered the client, the owner does not run it */
    KVCACHE_DIRECT_DROPPED,    /* the message was dropped unrun (PENDING -> DROPPED: its
                                * owner ended first): the connection answers */
    KVCACHE_DIRECT_WAITER = 16, /* or'd into PENDING or RUNNING: the connection waits
                                 * for the owner's ack */
};
/* Exactly one of the owner and the connection answers a direct command:
 * each claims it with a compare-and-swap from PENDING, and the one that
 * loses leaves the answer to the other (a connection that gives up on a
 * slow owner answers SERVER_ERROR; the owner then skips the command). A
 * command whose message is dropped before its owner takes it (the owner
 * ended) is the connection's to answer too (DROPPED). */
struct kvcache_direct {
    _Atomic unsigned refs;  /* the connection's, and one per command message (the
                             * owner's to drop, or the message's drop function) */
    _Atomic int state;      /* enum kvcache_direct_state */
    int fd;                 /* dup of the connection's socket; closed with the last ref */
    char *left;             /* output the owner could not write (owned; NULL: none) */
    size_t left_len;
    bool left_failed;       /* the owner did not answer: reply SERVER_ERROR */
};

/* Drops one reference to d; the last closes d->fd and frees d. Context:
 * any thread. */
void kvcache_direct_put(struct kvcache_direct *d);

#define KVCACHE_BATCH_CMD 0x40000000u

/* For tests: called by an owner as it takes a direct command, before it
 * claims it (NULL: none). Context: the owner's process. */
extern void (*_Atomic kvcache_direct_hook)(void);

/* For tests: called by an owner right after it handed a direct command's
 * reply to its shard's ring (kvcache_cfg.direct_ring), its send not yet
 * submitted, with nothing of the command left on its stack (NULL: none).
 * Context: the owner's process. */
extern void (*_Atomic kvcache_direct_sent_hook)(void);

#define KVCACHE_TAG_REQ 0x4b5652ull       /* "KVR" */
#define KVCACHE_TAG_PART 0x4b5650ull      /* a reply part, more follow */
#define KVCACHE_TAG_LAST 0x4b564cull      /* the last reply part */
#define KVCACHE_TAG_FAIL 0x4b5646ull      /* no reply: the owner did not answer */
#define KVCACHE_TAG_TICK 0x4b5654ull      /* the owner's clock tick (to itself) */
#define KVCACHE_TAG_GIVE_UP 0x4b5647ull   /* a connection's give-up check (to itself) */
#define KVCACHE_TICK_NS 1000000000ull     /* its period: the store's clock is in seconds */

struct kvcache_stats_reply {
    struct kvcache_counters c;
    unsigned nclasses;
    struct kvcache_class_stats cls[KVCACHE_MAX_CLASSES + 1];
};

extern const struct hy_gen_server_ops kvcache_server_ops;

/* Child start function: the owner of the caller's shard, registered under
 * kvcache_owner_name(shard). */
int kvcache_server_start_link(const void *arg, size_t arg_size, hy_pid *pid);

/* Writes the owner's registered name of shard into buf. */
void kvcache_owner_name(unsigned shard, char *buf, size_t len);

/* Sends request (kind, then data[len], copied) to shard's owner without
 * waiting; *ref (NULL: no reply wanted) gets the reference to wait on.
 * Errors: HY_ENOPROC (no owner), hy_msg_alloc's and send's. Context: a
 * process. */
int kvcache_server_send(unsigned shard, uint8_t kind, const void *data, size_t len, hy_ref *ref);

/* Sends one whole command (raw[0..len)) to shard's owner over d
 * (borrowed; the message takes a reference of it, which the owner drops
 * as it takes the command, or the message's drop function if the owner
 * never does: it ended with the command queued or in flight; the state
 * then goes PENDING -> DROPPED, or ABANDONED -> DONE): with cmd (borrowed;
 * NULL: none), the command as parsed from raw, which the owner then runs
 * without parsing it again (KVCACHE_REQ_DIRECT_CMD, when kvcache_proto_pack
 * takes it), else the text (KVCACHE_REQ_DIRECT). *ref gets the reference
 * of the ack. Errors: HY_ENOPROC (no owner), hy_msg_alloc's and send's
 * (the reference is then dropped again). Context: a process. */
int kvcache_server_send_direct(unsigned shard, struct kvcache_direct *d,
                               const struct kvcache_cmd *cmd, const char *raw, size_t len,
                               hy_ref *ref);

/* A connection gives up on the command it sent over d, or ends with it
 * unanswered. Claims the command (PENDING -> ABANDONED) unless the owner
 * claimed it first. Returns true when the connection holds the claim (now
 * or from an earlier call) or the command was dropped unrun (DROPPED): the
 * owner will never run it, and the connection answers the client. False:
 * the owner claimed it and answers (or has). Either way the reference the
 * command's message holds is not the caller's: the owner drops it when it
 * takes the message, the message's drop function when it is dropped
 * undelivered. The connection's own reference is the caller's to drop.
 * Context: any thread. */
bool kvcache_direct_abandon(struct kvcache_direct *d);

/* Waits for the reply parts of ref and appends them to *reply. Errors:
 * HY_ETIMEDOUT (nothing in 5 s: the owner died or restarted), HY_ENOMEM.
 * Context: a process. */
int kvcache_server_wait(hy_ref ref, struct kvcache_out *reply);

/* Sends request (kind, then data[len], copied) to shard's owner and appends
 * every reply part to *reply (may be NULL: no reply expected). Errors:
 * HY_ENOPROC (no owner), HY_ETIMEDOUT (no reply in 5 s), send's errors.
 * Context: a process. */
int kvcache_server_request(unsigned shard, uint8_t kind, const void *data, size_t len,
                           struct kvcache_out *reply);

/* Sums the stats of every shard's store into *out (zeroed first). Errors:
 * as kvcache_server_request (a shard that does not answer is left out).
 * Context: a process. */
int kvcache_server_gather(struct kvcache_stats_reply *out);

/* ---- kvcache_conn.c ------------------------------------------------------- */

/* Serves one client connection (hy_tcp_server_ops.handle). */
void kvcache_conn_handle(struct hy_tcp *sock, void *arg);

/* Ends the idle connections of the calling shard and marks it stopping.
 * Context: a process on that shard. */
void kvcache_conn_stop_shard(void);

/* ---- kvcache_sup.c -------------------------------------------------------- */

int kvcache_sup_start_link(const void *arg, size_t arg_size, hy_pid *pid);

/* ---- kvcache_app.c -------------------------------------------------------- */

/* The application: every shard's root supervises kvcache_sup; its main
 * process runs the listener until the node stops. */
extern const struct hy_app kvcache_app;

/* The running TCP server (NULL before it starts and after it stops), for
 * the connection counters of `stats`. */
extern struct hy_tcp_server *_Atomic kvcache_tcp;

#endif /* HY_APPS_KVCACHE_H */
