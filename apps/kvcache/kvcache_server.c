/* kvcache_server: the key owner of a shard (a GenServer). It creates the
 * shard's store, serves the requests other shards' connections forward to
 * it (plain messages, answered by reference), and frees the store when it
 * ends however it ends: a restarted owner starts empty (a cache may lose
 * data; the node keeps serving). Connections of its own shard use the store
 * directly (same thread, no yield inside a store call). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvcache.h"

#define REQ_TIMEOUT_NS 5000000000LL

struct kvcache_config kvcache_cfg;
struct kvcache_shard kvcache_shards[KVCACHE_MAX_SHARDS];

KV_HOT unsigned kvcache_hash_owner(uint64_t hash)
{
    unsigned n = kvcache_cfg.set.nshards;
    if (n <= 1)
        return 0;
    /* the high bits (the store's bucket takes the low ones) */
    return (unsigned)(((unsigned __int128)hash * n) >> 64);
}

KV_HOT unsigned kvcache_key_owner(const char *key, size_t nkey)
{
    return kvcache_hash_owner(kvcache_key_hash(key, nkey));
}

KV_HOT uint64_t kvcache_unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec;
}

void kvcache_owner_name(unsigned shard, char *buf, size_t len)
{
    /* "kvcache_owner_N" without snprintf: every forwarded batch looks its
     * owner up by this name */
    static const char pre[] = "kvcache_owner_";
    char tmp[sizeof(pre) + 10];
    size_t n = sizeof(pre) - 1;
    memcpy(tmp, pre, n);
    char d[10];
    int k = 0;
    do {
        d[k++] = (char)('0' + shard % 10);
        shard /= 10;
    } while (shard);
    while (k)
        tmp[n++] = d[--k];
    if (len == 0)
        return;
    if (n > len - 1)
        n = len - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
}

/* ---- the owner ---------------------------------------------------------------- */

static void owner_cleanup(void *arg)
{
    struct kvcache_shard *sh = arg;
    atomic_fetch_add_explicit(&sh->owner_gen, 1, memory_order_release); /* looked up again */
    kvcache_store_destroy(sh->store);
    sh->store = NULL;
}

/* Connections to wake whose direct command was dropped unrun: the drop
 * function may not call the runtime, so it queues the connection's pid and
 * the command's ref on the dropping shard (the owner's), and that shard's
 * owner sends each KVCACHE_TAG_FAIL under the ref: in its init (an owner
 * that ended with commands queued is restarted there, the common case) and
 * before each message it handles (at the latest its next clock tick). The
 * message ends the connection's wait at once, and it answers SERVER_ERROR
 * (the command is DROPPED) instead of at its give-up (DIRECT_GIVE_UP_NS,
 * 5 s). Each list is touched by its shard's thread only. */
struct drop_wake {
    struct drop_wake *next;
    hy_pid to;
    hy_ref ref;
};

static struct drop_wake *drop_wakes[KVCACHE_MAX_SHARDS];

static void send_drop_wakes(void);

static int owner_init(struct hy_gs *gs, void *arg)
{
    (void)arg;
    send_drop_wakes(); /* connections waiting on commands its predecessor dropped */
    int shard = hy_shard_id();
    struct kvcache_shard *sh = &kvcache_shards[shard];
    unsigned n = kvcache_cfg.set.nshards ? kvcache_cfg.set.nshards : 1;
    struct kvcache_store_settings s = {
        .maxbytes = kvcache_cfg.set.maxbytes / n,
        .item_size_max = kvcache_cfg.set.item_size_max,
        .factor = kvcache_cfg.set.factor,
        .chunk_min = kvcache_cfg.set.chunk_size,
        .started = kvcache_cfg.started,
        .cas_first = (uint64_t)shard + 1,
        .cas_step = n,
        .hugepages = kvcache_cfg.hugepages,
    };
    struct kvcache_store *st = kvcache_store_create(&s);
    if (!st) {
        hy_gs_stop(gs, hy_reason_user(HY_ENOMEM, "kvcache: store"));
        return HY_GS_STOP;
    }
    kvcache_store_set_time(st, kvcache_unix_now());
    if (hy_on_exit(owner_cleanup, sh) != 0) {
        kvcache_store_destroy(st);
        return HY_GS_STOP;
    }
    if (!sh->conns.next) {
        sh->conns.next = &sh->conns;
        sh->conns.prev = &sh->conns;
    }
    sh->store = st;
    /* the other shards' cached look-ups of the owner are stale now (its
     * name is registered before init runs) */
    atomic_fetch_add_explicit(&sh->owner_gen, 1, memory_order_release);
    /* the store's clock advances on a tick, as memcached's does (a timer
     * once a second), not by a clock read per command: the vDSO's code and
     * data are two more pages per command, each a page walk after the
     * command's system calls. The timer ends with this process (the store
     * with it, by owner_cleanup). */
    int trc = hy_send_after(KVCACHE_TICK_NS, hy_self(), KVCACHE_TAG_TICK, NULL, 0, 0, NULL);
    if (trc != 0) {
        hy_gs_stop(gs, hy_reason_user(trc, "kvcache: clock tick"));
        return HY_GS_STOP;
    }
    return HY_GS_OK;
}

/* sends out[0..len) back in parts; chunked: split only at chunk borders */
static KV_HOT void reply_parts(const struct hy_msg *m, const struct kvcache_out *out, bool chunked)
{
    size_t part_max = (size_t)kvcache_cfg.set.item_size_max + 64 * 1024;
    size_t off = 0;
    while (out->len - off > part_max) {
        size_t end = off;
        if (chunked) {
            /* take whole chunks up to part_max (at least one) */
            while (end < out->len) {
                uint32_t n;
                memcpy(&n, out->buf + end, 4);
                if (end > off && end + 4 + n - off > part_max)
                    break;
                end += 4 + n;
            }
        } else {
            end = off + part_max;
        }
        if (end >= out->len)
            break;
        hy_send_ref(m->from, KVCACHE_TAG_PART, m->ref, out->buf + off, end - off);
        off = end;
    }
    hy_send_ref(m->from, KVCACHE_TAG_LAST, m->ref, out->buf + off, out->len - off);
}

static void serve_getkeys(struct kvcache_store *st, const char *p, size_t n, struct kvcache_out *out)
{
    struct kvcache_cmd cmd;
    size_t need;
    if (kvcache_proto_parse(p, n, kvcache_cfg.set.item_size_max, &cmd, &need) <= 0 ||
        cmd.op < KVCACHE_OP_GET || cmd.op > KVCACHE_OP_GATS)
        return;
    size_t pos = 0;
    const char *k;
    size_t nk;
    while (kvcache_proto_next_key(&cmd, &pos, &k, &nk)) {
        size_t at = out->len;
        uint32_t zero = 0;
        kvcache_out_put(out, &zero, 4);
        if (out->oom)
            return;
        kvcache_proto_get_one(st, &cmd, k, nk, out);
        uint32_t len = (uint32_t)(out->len - at - 4);
        memcpy(out->buf + at, &len, 4);
    }
}

/* runs one forwarded command: p[0..n) is [struct kvcache_cmd_wire][text]
 * when parsed (the connection parsed it: no second parse), else the text */
static KV_HOT void run_forwarded(struct kvcache_store *st, const char *p, size_t n, bool parsed,
                                 struct kvcache_out *out)
{
    struct kvcache_cmd cmd;
    size_t need;
    bool ok;
    if (parsed) {
        struct kvcache_cmd_wire w;
        ok = n >= sizeof(w);
        if (ok) {
            memcpy(&w, p, sizeof(w));
            ok = kvcache_proto_unpack(&w, p + sizeof(w), n - sizeof(w), &cmd);
        }
    } else {
        ok = kvcache_proto_parse(p, n, kvcache_cfg.set.item_size_max, &cmd, &need) > 0;
    }
    if (ok)
        kvcache_proto_exec(st, &cmd, out);
    else
        kvcache_out_str(out, "SERVER_ERROR forwarded command incomplete\r\n");
}

/* [u32 len][command] ...: runs each, one [u32 len][output] chunk each; an
 * entry whose len has KVCACHE_BATCH_CMD set is [struct kvcache_cmd_wire]
 * [command] */
static KV_HOT void serve_batch(struct kvcache_store *st, const char *p, size_t n, struct kvcache_out *out)
{
    size_t at = 0;
    while (at + 4 <= n) {
        uint32_t l;
        memcpy(&l, p + at, 4);
        bool parsed = (l & KVCACHE_BATCH_CMD) != 0;
        l &= ~KVCACHE_BATCH_CMD;
        if (l > n - at - 4)
            return;
        size_t start = out->len;
        uint32_t zero = 0;
        kvcache_out_put(out, &zero, 4);
        if (out->oom)
            return;
        run_forwarded(st, p + at + 4, l, parsed, out);
        if (out->oom)
            return;
        uint32_t len = (uint32_t)(out->len - start - 4);
        memcpy(out->buf + start, &len, 4);
        at += 4 + l;
    }
}

void kvcache_direct_put(struct kvcache_direct *d)
{
    if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) != 1)
        return;
    close(d->fd);
    free(d->left);
    free(d);
}

/* the largest output the owner writes itself; more goes back to the
 * connection, which writes it under its write timeout */
#define DIRECT_MAX (16 * 1024)

void (*_Atomic kvcache_direct_hook)(void);

/* claims d's command for the owner: PENDING -> RUNNING (the connection's
 * WAITER bit kept). False: the connection gave up on it first (ABANDONED):
 * it answered the client, the command is not run, and the owner's part of
 * d is done (its reference dropped here, the state DONE so that nobody
 * drops it again) */
static KV_HOT bool direct_claim(struct kvcache_direct *d)
{
    int cur = atomic_load_explicit(&d->state, memory_order_acquire);
    for (;;) {
        int base = cur & ~KVCACHE_DIRECT_WAITER;
        if (base == KVCACHE_DIRECT_ABANDONED) {
            if (atomic_compare_exchange_weak_explicit(&d->state, &cur, KVCACHE_DIRECT_DONE,
                                                      memory_order_acq_rel,
                                                      memory_order_acquire)) {
                kvcache_direct_put(d);
                return false;
            }
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(
                &d->state, &cur, KVCACHE_DIRECT_RUNNING | (cur & KVCACHE_DIRECT_WAITER),
                memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

/* The end of a direct command the owner claimed: of the output buf[0..len)
 * the socket took done bytes; the rest (if any) goes to the connection
 * (d->left), then the command is marked answered and the connection told
 * only when it waits or has output left to write. Drops the owner's
 * reference to d (runtime: false when the runtime is stopping, no
 * message then). Context: the owner's shard, in the owner or in the
 * completion of its ring send. */
static KV_HOT void direct_finish(struct kvcache_direct *d, const char *buf, size_t len,
                                 size_t done, bool failed, hy_pid who, hy_ref ref, bool runtime)
{
    if (failed) {
        d->left_failed = true;
    } else if (done < len) {
        d->left = malloc(len - done);
        if (d->left) {
            memcpy(d->left, buf + done, len - done);
            d->left_len = len - done;
        } else {
            d->left_failed = true;
        }
    }
    /* read before DONE: from then on the connection may take and free left */
    bool leftover = d->left || d->left_failed;
    int was = atomic_exchange_explicit(&d->state, KVCACHE_DIRECT_DONE, memory_order_acq_rel);
    /* dropped before the send, which is a preemption point: an owner killed
     * there has already let go of d */
    kvcache_direct_put(d);
    /* a connection waiting for the answer gets it; one parked in its
     * receive (hy_tcp_recv_or_msg) is woken only when it has output to
     * write: everything else went to the client already */
    if (runtime && ((was & KVCACHE_DIRECT_WAITER) || leftover))
        hy_send_ref(who, KVCACHE_TAG_LAST, ref, NULL, 0);
}

static void count_written(size_t n)
{
    struct kvcache_shard *sh = &kvcache_shards[hy_shard_id()];
    atomic_store_explicit(&sh->bytes_written,
                          atomic_load_explicit(&sh->bytes_written, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* A direct reply sent by the owner shard's ring (hy_ring_send): the record
 * owns the bytes and the owner's reference to d (so d->fd stays open until
 * the send's end, whoever else lets go of d meanwhile), and outlives the
 * owner process (killed with the send in flight, its shard's poller still
 * reports the end): the command is answered from the completion. */
struct direct_tx {
    struct hy_ring_send rs;
    struct kvcache_direct *d;
    hy_pid who;
    hy_ref ref;
    char buf[];
};

void (*_Atomic kvcache_direct_sent_hook)(void);

static KV_HOT void direct_tx_done(struct hy_ring_send *rs, int res)
{
    struct direct_tx *t = (struct direct_tx *)rs;
    bool runtime = res != HY_ESHUTDOWN;
    size_t done = 0;
    if (res > 0)
        done = (size_t)res;
    else if (res < 0)
        done = rs->len; /* the client is gone (or the node stops): the connection sees it too */
    if (runtime && res > 0)
        count_written((size_t)res);
    direct_finish(t->d, t->buf, rs->len, done, false, t->who, t->ref, runtime);
    free(t);
}

/* queues out[0..len) on d's socket through the shard's ring; false: not
 * queued (no ring, no memory): the caller sends it itself */
static KV_HOT bool direct_ring(struct kvcache_direct *d, const struct kvcache_out *out, hy_pid who,
                               hy_ref ref)
{
    struct direct_tx *t = malloc(sizeof(*t) + out->len);
    if (!t)
        return false;
    memcpy(t->buf, out->buf, out->len);
    t->rs = (struct hy_ring_send){
        .fd = d->fd, .len = (uint32_t)out->len, .buf = t->buf, .done = direct_tx_done};
    t->d = d;
    t->who = who;
    t->ref = ref;
    if (hy_ring_send(&t->rs) != 0) {
        free(t);
        return false;
    }
    return true;
}

/* runs d's connection's command p[0..n) (parsed: [wire][text], else text)
 * once claimed and writes what the socket takes at once: through the
 * shard's ring (kvcache_cfg.direct_ring, io_uring: the command is answered
 * when the send's end is reported, direct_tx_done) or by send(2) here; the
 * rest (if any) is left for the connection (direct_finish); out (empty) is
 * scratch. True: the reply went to the ring, its end comes later */
static KV_HOT bool direct_run(struct kvcache_store *st, struct kvcache_direct *d, const char *p,
                              size_t n, bool parsed, struct kvcache_out *out, hy_pid who,
                              hy_ref ref)
{
    void (*hook)(void) = atomic_load_explicit(&kvcache_direct_hook, memory_order_relaxed);
    if (hook)
        hook();
    if (!direct_claim(d))
        return false;
    run_forwarded(st, p, n, parsed, out);
    size_t done = 0;
    /* the connection's shard awake (kvcache_cfg.direct_home): the reply
     * goes home as output left to the connection, which writes it with its
     * shard's other sends, the socket's state not moved to this core and
     * no wake-up (a racy hint: a shard that fell asleep since is woken by
     * the message, as for any reply left over) */
    bool home = kvcache_cfg.direct_home && !hy_shard_asleep(hy_pid_shard(who));
    if (!home && !out->oom && out->len > 0 && out->len <= DIRECT_MAX) {
        if (kvcache_cfg.direct_ring && direct_ring(d, out, who, ref))
            return true;
        ssize_t w = send(d->fd, out->buf, out->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            done = (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            done = out->len; /* the client is gone: the connection sees it too */
        count_written(w > 0 ? (size_t)w : 0);
    }
    direct_finish(d, out->buf, out->len, done, out->oom, who, ref, true);
    return false;
}

/* [struct kvcache_direct *]([struct kvcache_cmd_wire])[command]
 * (KVCACHE_REQ_DIRECT, KVCACHE_REQ_DIRECT_CMD): the sender is the
 * connection, the message's ref its ack */
static bool serve_direct(struct kvcache_store *st, const struct hy_msg *m, const char *p, size_t n,
                         bool parsed, struct kvcache_out *out)
{
    struct kvcache_direct *d;
    if (n < sizeof(d))
        return false;
    memcpy(&d, p, sizeof(d));
    return direct_run(st, d, p + sizeof(d), n - sizeof(d), parsed, out, m->from, m->ref);
}

static KV_HOT int owner_info(struct hy_gs *gs, const struct hy_msg *m)
{
    struct kvcache_shard *sh = &kvcache_shards[hy_shard_id()];
    struct kvcache_store *st = sh->store;
    if (__builtin_expect(drop_wakes[sh - kvcache_shards] != NULL, 0))
        send_drop_wakes();
    if (m->tag == KVCACHE_TAG_TICK) {
        kvcache_store_set_time(st, kvcache_unix_now());
        int trc = hy_send_after(KVCACHE_TICK_NS, hy_self(), KVCACHE_TAG_TICK, NULL, 0, 0, NULL);
        if (trc != 0) { /* a clock that stopped would keep items forever */
            hy_gs_stop(gs, hy_reason_user(trc, "kvcache: clock tick"));
            return HY_GS_STOP;
        }
        return HY_GS_OK;
    }
    if (m->tag != KVCACHE_TAG_REQ || m->size < 1)
        return HY_GS_OK;
    const char *p = (const char *)m->data + 1;
    size_t n = m->size - 1;
    struct kvcache_out out;
    kvcache_spare_take(sh, &out);
    switch (m->data[0]) {
    case KVCACHE_REQ_RAW:
        run_forwarded(st, p, n, false, &out);
        reply_parts(m, &out, false);
        break;
    case KVCACHE_REQ_BATCH:
        serve_batch(st, p, n, &out);
        reply_parts(m, &out, true);
        break;
    case KVCACHE_REQ_DIRECT:
    case KVCACHE_REQ_DIRECT_CMD:
        if (serve_direct(st, m, p, n, m->data[0] == KVCACHE_REQ_DIRECT_CMD, &out)) {
            kvcache_spare_give(sh, &out);
            /* the last queued command: its reply (and those of the
             * commands before it) goes now, not after the rest of the
             * shard's turn */
            if (kvcache_cfg.direct_ring_submit && hy_mailbox_len() == 0)
                (void)hy_ring_submit();
            void (*hook)(void) =
                atomic_load_explicit(&kvcache_direct_sent_hook, memory_order_relaxed);
            if (hook)
                hook();
            return HY_GS_OK;
        }
        break;
    case KVCACHE_REQ_GETKEYS:
        serve_getkeys(st, p, n, &out);
        reply_parts(m, &out, true);
        break;
    case KVCACHE_REQ_STATS: {
        struct kvcache_stats_reply *r = calloc(1, sizeof(*r));
        if (r) {
            kvcache_store_counters(st, &r->c);
            r->nclasses = kvcache_store_nclasses(st);
            for (unsigned i = 1; i <= r->nclasses; i++)
                kvcache_store_class_stats(st, i, &r->cls[i]);
            hy_send_ref(m->from, KVCACHE_TAG_LAST, m->ref, r, sizeof(*r));
            free(r);
        } else {
            hy_send_ref(m->from, KVCACHE_TAG_LAST, m->ref, NULL, 0);
        }
        break;
    }
    case KVCACHE_REQ_FLUSH: {
        int64_t delay = 0;
        if (n >= sizeof(delay))
            memcpy(&delay, p, sizeof(delay));
        kvcache_store_flush(st, delay);
        hy_send_ref(m->from, KVCACHE_TAG_LAST, m->ref, NULL, 0);
        break;
    }
    case KVCACHE_REQ_RESET:
        kvcache_store_reset(st);
        hy_send_ref(m->from, KVCACHE_TAG_LAST, m->ref, NULL, 0);
        break;
    case KVCACHE_REQ_STOP_CONNS:
        kvcache_conn_stop_shard();
        break;
    default:
        break;
    }
    kvcache_spare_give(sh, &out);
    return HY_GS_OK;
}

const struct hy_gen_server_ops kvcache_server_ops = {
    .init = owner_init,
    .handle_info = owner_info,
};

int kvcache_server_start_link(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    char name[HY_NAME_MAX];
    kvcache_owner_name((unsigned)hy_shard_id(), name, sizeof(name));
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = name;
    return hy_gen_server_start_link(&kvcache_server_ops, NULL, &o, pid);
}

/* ---- requests ----------------------------------------------------------------- */

/* shard's owner: its registered name, looked up once per owner (a forwarded
 * command would otherwise pay a name look-up): the calling shard keeps the
 * pid while shard's owner_gen stays what it was at the look-up. An owner
 * that ends moves owner_gen on in its cleanup, its successor in its init;
 * a send that races with the end is lost as it would be after a look-up
 * (the connection's give-up answers it) */
static KV_HOT int owner_pid(unsigned shard, hy_pid *out)
{
    struct kvcache_owner_cache *oc = &kvcache_shards[hy_shard_id()].owners[shard];
    uint64_t gen = atomic_load_explicit(&kvcache_shards[shard].owner_gen, memory_order_acquire);
    if (oc->gen == gen && gen != 0) {
        *out = oc->pid;
        return 0;
    }
    char name[HY_NAME_MAX];
    kvcache_owner_name(shard, name, sizeof(name));
    if (hy_whereis(name, out) != 0)
        return HY_ENOPROC;
    oc->pid = *out;
    oc->gen = gen;
    return 0;
}

KV_HOT int kvcache_server_send(unsigned shard, uint8_t kind, const void *data, size_t len, hy_ref *ref)
{
    hy_pid owner;
    if (owner_pid(shard, &owner) != 0)
        return HY_ENOPROC;
    struct hy_msg *m;
    int rc = hy_msg_alloc(len + 1, &m);
    if (rc != 0)
        return rc;
    m->tag = KVCACHE_TAG_REQ;
    m->data[0] = kind;
    if (len)
        memcpy(m->data + 1, data, len);
    m->ref = HY_REF_NONE;
    if (ref) {
        hy_ref_make(ref);
        m->ref = *ref;
    }
    return hy_msg_send(owner, m);
}

static void send_drop_wakes(void)
{
    int shard = hy_shard_id();
    while (drop_wakes[shard]) {
        struct drop_wake *w = drop_wakes[shard];
        drop_wakes[shard] = w->next;
        hy_send_ref(w->to, KVCACHE_TAG_FAIL, w->ref, NULL, 0); /* a dead connection: dropped */
        free(w);
    }
}

/* A direct command's message dropped undelivered (its owner ended with it
 * queued, or before it arrived): the owner will never run it. The reference
 * the message holds goes with it; the connection learns that the command
 * went unanswered (PENDING -> DROPPED: woken by send_drop_wakes), or has
 * given up on it already (ABANDONED -> DONE). Runs inside the runtime
 * (hy_msg_set_drop): no runtime call. */
static void direct_dropped(const struct hy_msg *m)
{
    struct kvcache_direct *d;
    memcpy(&d, m->data + 1, sizeof(d));
    int cur = atomic_load_explicit(&d->state, memory_order_acquire);
    int next;
    for (;;) {
        int base = cur & ~KVCACHE_DIRECT_WAITER;
        next = base == KVCACHE_DIRECT_PENDING     ? KVCACHE_DIRECT_DROPPED
               : base == KVCACHE_DIRECT_ABANDONED ? KVCACHE_DIRECT_DONE
                                                  : -1;
        if (next < 0 || atomic_compare_exchange_weak_explicit(&d->state, &cur, next,
                                                              memory_order_acq_rel,
                                                              memory_order_acquire))
            break;
    }
    int shard = hy_shard_id();
    if (next == KVCACHE_DIRECT_DROPPED && shard >= 0 && !hy_pid_is_none(m->from)) {
        struct drop_wake *w = malloc(sizeof(*w)); /* none: the give-up answers */
        if (w) {
            *w = (struct drop_wake){.next = drop_wakes[shard], .to = m->from, .ref = m->ref};
            drop_wakes[shard] = w;
        }
    }
    kvcache_direct_put(d);
}

int kvcache_server_send_direct(unsigned shard, struct kvcache_direct *d,
                               const struct kvcache_cmd *cmd, const char *raw, size_t len,
                               hy_ref *ref)
{
    hy_pid owner;
    if (owner_pid(shard, &owner) != 0)
        return HY_ENOPROC;
    struct kvcache_cmd_wire w;
    bool parsed = cmd && kvcache_proto_pack(cmd, raw, &w);
    size_t wl = parsed ? sizeof(w) : 0;
    struct hy_msg *m;
    int rc = hy_msg_alloc(1 + sizeof(d) + wl + len, &m);
    if (rc != 0)
        return rc;
    m->tag = KVCACHE_TAG_REQ;
    m->data[0] = parsed ? KVCACHE_REQ_DIRECT_CMD : KVCACHE_REQ_DIRECT;
    memcpy(m->data + 1, &d, sizeof(d));
    if (parsed)
        memcpy(m->data + 1 + sizeof(d), &w, sizeof(w));
    memcpy(m->data + 1 + sizeof(d) + wl, raw, len);
    hy_ref_make(ref);
    m->ref = *ref;
    /* the message's reference: dropped by the owner as it takes the
     * command, or by direct_dropped if it never does */
    rc = hy_msg_set_drop(m, direct_dropped);
    if (rc != 0) {
        hy_msg_free(m);
        return rc;
    }
    atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
    rc = hy_msg_send(owner, m);
    if (rc != 0)
        atomic_fetch_sub_explicit(&d->refs, 1, memory_order_relaxed); /* the connection's stays */
    return rc;
}

bool kvcache_direct_abandon(struct kvcache_direct *d)
{
    /* claim the command: PENDING -> ABANDONED, unless the owner claimed it
     * first (RUNNING, DONE: it answers) or it was dropped unrun (DROPPED:
     * nobody will, the connection answers) */
    int cur = atomic_load_explicit(&d->state, memory_order_acquire);
    for (;;) {
        int base = cur & ~KVCACHE_DIRECT_WAITER;
        if (base == KVCACHE_DIRECT_ABANDONED || base == KVCACHE_DIRECT_DROPPED)
            return true; /* claimed before (the connection gave up, now it ends) */
        if (base != KVCACHE_DIRECT_PENDING)
            return false;
        if (atomic_compare_exchange_weak_explicit(&d->state, &cur, KVCACHE_DIRECT_ABANDONED,
                                                  memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

KV_HOT int kvcache_server_wait(hy_ref ref, struct kvcache_out *reply)
{
    for (;;) {
        struct hy_msg *r;
        int rc = hy_recv_ref(ref, &r, REQ_TIMEOUT_NS);
        if (rc != 0)
            return rc;
        if (r->tag == KVCACHE_TAG_FAIL) {
            hy_msg_free(r);
            return HY_ENOPROC;
        }
        bool last = r->tag == KVCACHE_TAG_LAST;
        kvcache_out_put(reply, r->data, r->size);
        hy_msg_free(r);
        if (last)
            return reply->oom ? HY_ENOMEM : 0;
    }
}

KV_HOT int kvcache_server_request(unsigned shard, uint8_t kind, const void *data, size_t len,
                           struct kvcache_out *reply)
{
    hy_ref ref;
    int rc = kvcache_server_send(shard, kind, data, len, reply ? &ref : NULL);
    if (rc != 0 || !reply)
        return rc;
    return kvcache_server_wait(ref, reply);
}

int kvcache_server_gather(struct kvcache_stats_reply *out)
{
    memset(out, 0, sizeof(*out));
    int err = 0;
    for (unsigned s = 0; s < kvcache_cfg.set.nshards; s++) {
        struct kvcache_out r = {0};
        int rc = kvcache_server_request(s, KVCACHE_REQ_STATS, NULL, 0, &r);
        if (rc == 0 && r.len == sizeof(*out)) {
            const struct kvcache_stats_reply *one = (const void *)r.buf;
            const uint64_t *src = (const uint64_t *)&one->c;
            uint64_t *dst = (uint64_t *)&out->c;
            for (size_t i = 0; i < sizeof(out->c) / sizeof(uint64_t); i++)
                dst[i] += src[i];
            out->nclasses = one->nclasses;
            for (unsigned i = 1; i <= one->nclasses; i++) {
                const struct kvcache_class_stats *a = &one->cls[i];
                struct kvcache_class_stats *b = &out->cls[i];
                b->chunk_size = a->chunk_size;
                b->chunks_per_page = a->chunks_per_page;
                uint64_t age = b->age; /* the oldest tail, not a sum */
                const uint64_t *f = &a->total_pages;
                uint64_t *t = &b->total_pages;
                size_t nf = (size_t)(&a->evicted_unfetched - &a->total_pages) + 1;
                for (size_t j = 0; j < nf; j++)
                    t[j] += f[j];
                b->age = age > a->age ? age : a->age;
            }
        } else if (err == 0) {
            err = rc ? rc : HY_EINVAL;
        }
        kvcache_out_fini(&r);
    }
    return err;
}
