/* kvcache_proto: memcached's text and meta protocols: an incremental parser
 * over a byte buffer and an executor that applies a parsed command to one
 * store and appends the reply.
 *
 * Parsing never allocates: a command refers into the caller's buffer, and
 * kvcache_proto_parse reports how many bytes it needs before a command is
 * complete (a storage command with its data block), so the caller grows its
 * buffer only as data arrives and never beyond a line plus the item limit.
 * A declared length beyond the item limit is answered at once and its data
 * swallowed (cmd.swallow) without being buffered. Replies and error strings
 * are memcached 1.6's, byte for byte. */
#ifndef HY_APPS_KVCACHE_PROTO_H
#define HY_APPS_KVCACHE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvcache_store.h"

/* A line longer than this without its '\n' closes the connection, as in
 * memcached; get/gets/gat/gats lines may grow to KVCACHE_GET_LINE_MAX. */
#define KVCACHE_LINE_MAX 2048
#define KVCACHE_GET_LINE_MAX (64 * 1024)
#define KVCACHE_OPAQUE_MAX 32

enum kvcache_op {
    KVCACHE_OP_ERROR = 0, /* reply cmd.error, then go on */
    KVCACHE_OP_GET,
    KVCACHE_OP_GETS,
    KVCACHE_OP_GAT,
    KVCACHE_OP_GATS,
    KVCACHE_OP_SET,
    KVCACHE_OP_ADD,
    KVCACHE_OP_REPLACE,
    KVCACHE_OP_APPEND,
    KVCACHE_OP_PREPEND,
    KVCACHE_OP_CAS,
    KVCACHE_OP_DELETE,
    KVCACHE_OP_INCR,
    KVCACHE_OP_DECR,
    KVCACHE_OP_TOUCH,
    KVCACHE_OP_FLUSH_ALL,
    KVCACHE_OP_STATS,
    KVCACHE_OP_VERSION,
    KVCACHE_OP_VERBOSITY,
    KVCACHE_OP_QUIT,
    KVCACHE_OP_MG,
    KVCACHE_OP_MS,
    KVCACHE_OP_MD,
    KVCACHE_OP_MA,
    KVCACHE_OP_MN,
    KVCACHE_OP_ME,
};

/* Meta flags: bit (letter - 'A') for A..Z, 26 + (letter - 'a') for a..z. */
#define KVCACHE_MF(ch) ((ch) >= 'a' ? (1ull << (26 + (ch) - 'a')) : (1ull << ((ch) - 'A')))

struct kvcache_meta {
    uint64_t has;             /* KVCACHE_MF bits of the flags given */
    const char *flags;        /* the flag tokens as given (for reply order) */
    size_t flags_len;
    int64_t ttl_T, vivify_N, recache_R, initial_J;
    uint64_t cas_C, cas_E, delta_D;
    uint32_t flags_F;
    char mode_M;
    const char *opaque;       /* O token (without the O) */
    uint8_t opaque_len;
};

struct kvcache_cmd {
    enum kvcache_op op;
    size_t total;             /* bytes this command took from the buffer */
    uint64_t swallow;         /* bytes to drop after it (data of a refused store) */
    bool close;               /* close the connection after replying */
    bool noreply;
    const char *error;        /* KVCACHE_OP_ERROR: the reply line, no CRLF */
    const char *key;          /* single-key commands (decoded if base64), and the */
    size_t nkey;              /* get family's only key (NULL: several, or too many
                               * tokens to tell: walk keys) */
    const char *keys;         /* get family: the key list, space separated */
    size_t keys_len;
    const char *args;         /* stats: its argument words */
    size_t args_len;
    uint32_t flags;
    int64_t exptime;
    uint64_t cas;             /* cas command */
    uint64_t delta;           /* incr/decr */
    const char *data;         /* storage commands: the value */
    size_t nbytes;
    bool too_large;           /* a store the limit refuses (swallow set) */
    struct kvcache_meta meta;
    uint64_t hash;            /* kvcache_key_hash of key, or of a get's only key, */
    bool hashed;              /* ... when true (the parser leaves it false) */
    char keybuf[KVCACHE_KEY_MAX + 1]; /* a base64 key decoded */
};

/* Output buffer: replies are appended; len grows, buf is owned (or, when
 * borrowed, the caller's storage until an append outgrows it). */
struct kvcache_out {
    char *buf;
    size_t len, cap;
    bool oom;                 /* an append failed (the connection closes) */
    bool borrowed;            /* buf is the caller's, not malloc'd: never freed */
};

/* Starts o empty on the caller's storage buf[0..cap) (borrowed: it must
 * outlive o's use of it; o never frees it). An append that does not fit
 * moves the contents to a malloc'd buffer, which o then owns. */
void kvcache_out_use(struct kvcache_out *o, char *buf, size_t cap);

/* Makes room for n more bytes (moving a borrowed buffer to malloc'd
 * storage); false (and o->oom set) when there is no memory. */
bool kvcache_out_grow(struct kvcache_out *o, size_t n);

/* Appends p[0..n) (copied; lost when out of memory: o->oom). Inline: most
 * appends are a few bytes into room there is. */
static inline void kvcache_out_put(struct kvcache_out *o, const void *p, size_t n)
{
    if (n == 0 || (o->len + n > o->cap && !kvcache_out_grow(o, n)))
        return;
    __builtin_memcpy(o->buf + o->len, p, n);
    o->len += n;
}

void kvcache_out_str(struct kvcache_out *o, const char *s);
void kvcache_out_fini(struct kvcache_out *o);

/* Parses the first command of buf[0..len). Returns > 0 with *cmd filled
 * (cmd->total bytes consumed, then cmd->swallow more to drop), 0 when more
 * bytes are needed (*need: the total the command needs when known, else 0),
 * or -1 when the connection must close (a line too long). item_max: the
 * largest value accepted (bigger ones get SERVER_ERROR object too large and
 * are swallowed). */
int kvcache_proto_parse(const char *buf, size_t len, uint32_t item_max, struct kvcache_cmd *cmd,
                        size_t *need);

/* A parsed command as it travels to its key's owner with its text (line
 * and data, as kvcache_proto_parse consumed it), so that the owner runs it
 * without parsing it again: the key (or a get's key list) and the value as
 * offsets into the text. The classic keyed commands only (get, gets, gat,
 * gats, the storage commands, delete, incr, decr, touch); the others travel
 * as text. */
struct kvcache_cmd_wire {
    uint64_t hash;            /* as cmd.hash (valid when hashed) */
    int64_t exptime;
    uint64_t cas, delta;
    uint32_t flags;
    uint32_t key, nkey;       /* the key or key list: text offset, length */
    uint32_t data, nbytes;    /* the value: text offset, length */
    uint8_t op;
    bool noreply, too_large, hashed;
    bool single;              /* a get's span is its only key, not a list */
};

/* Fills *w from cmd, whose text starts at raw (cmd->total bytes). Returns
 * false when cmd is not one of the commands a wire form carries, or refers
 * outside its text: it travels as text then. Context: any thread. */
bool kvcache_proto_pack(const struct kvcache_cmd *cmd, const char *raw,
                        struct kvcache_cmd_wire *w);

/* Fills *cmd from w and the command's text raw[0..len) (borrowed: cmd
 * points into it). Returns false when w's spans do not fit in len. Context:
 * any thread. */
bool kvcache_proto_unpack(const struct kvcache_cmd_wire *w, const char *raw, size_t len,
                          struct kvcache_cmd *cmd);

/* Applies a keyed command (or mn/version/verbosity/quit/error) to st and
 * appends the reply to out. For the get family, every key of cmd is looked
 * up in st. Stats and flush_all are the caller's (they span shards). */
void kvcache_proto_exec(struct kvcache_store *st, const struct kvcache_cmd *cmd,
                        struct kvcache_out *out);

/* The get family for one key: appends its VALUE block if found. */
void kvcache_proto_get_one(struct kvcache_store *st, const struct kvcache_cmd *cmd,
                           const char *key, size_t nkey, struct kvcache_out *out);

/* Room kvcache_proto_get_head needs for a VALUE line. */
#define KVCACHE_VALUE_LINE_MAX (6 + KVCACHE_KEY_MAX + 3 * 22 + 2)

/* The get family for a command of one key (cmd->key; cmd->hash when
 * cmd->hashed), without copying the value: looks it up in st as
 * kvcache_proto_exec would (counters, gat's touch, the LRU mark) and, on a
 * hit, writes its "VALUE key flags bytes [cas]\r\n" line into
 * head[0..KVCACHE_VALUE_LINE_MAX) (*head_len its length) and fills *v: the
 * value and its "\r\n" are v->value[0..v->nbytes + 2), inside the item,
 * valid only until the next call into st (the caller sends or copies them
 * before it yields). The reply ends with "END\r\n", the caller's to add.
 * Returns false on a miss. Context: the store's shard, no yield. */
bool kvcache_proto_get_head(struct kvcache_store *st, const struct kvcache_cmd *cmd, char *head,
                            size_t *head_len, struct kvcache_view *v);

/* Iterates the keys of a get-family command: *pos starts at 0. Returns
 * false at the end. */
bool kvcache_proto_next_key(const struct kvcache_cmd *cmd, size_t *pos, const char **key,
                            size_t *nkey);

/* The version string `version` and `stats` report. */
const char *kvcache_proto_version(void);

/* Settings that `stats settings` and `stats` report. */
struct kvcache_settings {
    uint64_t maxbytes;        /* node total */
    uint32_t maxconns, item_size_max, nshards, idle_timeout, verbosity;
    uint16_t port;
    const char *inter;
    double factor;
    uint32_t chunk_size;
};

/* Connection-level figures for `stats`. */
struct kvcache_conn_stats {
    uint64_t curr_connections, total_connections, rejected_connections;
    uint64_t bytes_read, bytes_written, cmd_meta;
};

/* Appends the reply of a stats command: args ("", "settings", "slabs",
 * "items"); classes[1..nclasses] summed over shards. Returns false for an
 * unknown argument (the caller replies ERROR). */
bool kvcache_proto_stats(const char *args, size_t args_len, const struct kvcache_settings *set,
                         const struct kvcache_counters *c, const struct kvcache_conn_stats *cs,
                         const struct kvcache_class_stats *classes, unsigned nclasses,
                         uint64_t uptime, uint64_t now_unix, struct kvcache_out *out);

#endif /* HY_APPS_KVCACHE_PROTO_H */
