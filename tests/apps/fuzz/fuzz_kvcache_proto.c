/* libFuzzer target: the kvcache protocol (apps/kvcache/kvcache_proto.c)
 * over a store with a small memory limit. The first input byte picks a
 * chunk size; the rest is fed in chunks as a connection would receive it,
 * and the replies are checked to be the same as when the whole input is fed
 * at once (segmentation must not matter). The parser must never ask for
 * more than a line plus the item limit, and the store's counters must stay
 * consistent. The chunked run executes each command as it travels to a key's
 * owner in another shard: its key hashed once by the connection, packed
 * (kvcache_proto_pack) beside a copy of its text and unpacked there: the
 * owner's replies must be those of the command as parsed. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcache_proto.h"

#define ITEM_MAX (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

struct run {
    struct kvcache_store *st;
    char *buf;
    size_t len, cap;
    uint64_t swallow;
    bool closed;
    bool wire; /* run commands through kvcache_proto_pack/unpack */
    struct kvcache_out out;
};

/* a command as the connection hands it to its key's owner, and as the
 * owner runs it */
static void exec_wire(struct run *r, struct kvcache_cmd *cmd, const char *raw)
{
    if (cmd->op >= KVCACHE_OP_GET && cmd->op <= KVCACHE_OP_GATS) {
        size_t pos = 0, nkeys = 0;
        const char *k;
        size_t nk;
        while (kvcache_proto_next_key(cmd, &pos, &k, &nk)) {
            cmd->hash = kvcache_key_hash(k, nk);
            nkeys++;
        }
        cmd->hashed = nkeys == 1;
    } else if (cmd->op > KVCACHE_OP_GATS && cmd->op <= KVCACHE_OP_TOUCH) {
        cmd->hash = kvcache_key_hash(cmd->key, cmd->nkey);
        cmd->hashed = true;
    }
    struct kvcache_cmd_wire w;
    if (!kvcache_proto_pack(cmd, raw, &w)) {
        kvcache_proto_exec(r->st, cmd, &r->out);
        return;
    }
    char *copy = malloc(cmd->total);
    memcpy(copy, raw, cmd->total);
    struct kvcache_cmd at;
    if (!kvcache_proto_unpack(&w, copy, cmd->total, &at))
        abort();
    kvcache_proto_exec(r->st, &at, &r->out);
    free(copy);
}

static void feed(struct run *r, const char *p, size_t n)
{
    if (r->closed)
        return;
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2;
        r->buf = realloc(r->buf, r->cap);
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    size_t pos = 0;
    for (;;) {
        if (r->swallow) {
            size_t k = r->len - pos < r->swallow ? r->len - pos : (size_t)r->swallow;
            pos += k;
            r->swallow -= k;
            if (r->swallow)
                break;
        }
        if (pos == r->len)
            break;
        struct kvcache_cmd cmd;
        size_t need;
        int rc = kvcache_proto_parse(r->buf + pos, r->len - pos, ITEM_MAX, &cmd, &need);
        if (rc < 0) {
            r->closed = true;
            break;
        }
        if (rc == 0) {
            if (need > KVCACHE_LINE_MAX + ITEM_MAX + 2 || (need && need <= r->len - pos))
                abort();
            if (r->len - pos > KVCACHE_GET_LINE_MAX + ITEM_MAX + 2)
                abort();
            break;
        }
        if (cmd.total == 0 || cmd.total > r->len - pos)
            abort();
        if (r->wire)
            exec_wire(r, &cmd, r->buf + pos);
        else
            kvcache_proto_exec(r->st, &cmd, &r->out);
        pos += cmd.total;
        r->swallow = cmd.swallow;
        if (cmd.close) {
            r->closed = true;
            break;
        }
    }
    memmove(r->buf, r->buf + pos, r->len - pos);
    r->len -= pos;
}

static void run(struct run *r, const char *p, size_t n, size_t chunk, bool wire)
{
    memset(r, 0, sizeof(*r));
    r->wire = wire;
    struct kvcache_store_settings s = {
        .maxbytes = 2 << 20, .item_size_max = ITEM_MAX, .factor = 1.25, .chunk_min = 48,
        .started = 1000, .cas_first = 1, .cas_step = 1, .hashpower = 6,
    };
    r->st = kvcache_store_create(&s);
    kvcache_store_set_time(r->st, 2000);
    for (size_t i = 0; i < n; i += chunk)
        feed(r, p + i, n - i < chunk ? n - i : chunk);
    struct kvcache_counters c = {0};
    kvcache_store_counters(r->st, &c);
    if (c.total_malloced > (2u << 20) + 64u * (1u << 20) || c.curr_items > c.total_items)
        abort();
}

static void done(struct run *r)
{
    kvcache_store_destroy(r->st);
    kvcache_out_fini(&r->out);
    free(r->buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1)
        return 0;
    size_t chunk = (size_t)d[0] % 16 + 1;
    const char *p = (const char *)d + 1;
    n--;
    struct run a, b;
    run(&a, p, n, n ? n : 1, false);
    run(&b, p, n, chunk, true);
    /* stats-free commands only touch the store: the replies must match */
    if (a.out.len != b.out.len || (a.out.len && memcmp(a.out.buf, b.out.buf, a.out.len) != 0) ||
        a.closed != b.closed)
        abort();
    done(&a);
    done(&b);
    return 0;
}
