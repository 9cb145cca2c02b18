/* kvcache_conn: one process per client connection. It reads into a buffer
 * that grows only as bytes arrive (up to a line plus the item limit), parses
 * commands with kvcache_proto, runs those whose key its shard owns against
 * the shard's store directly and forwards the others to their owner, and
 * writes replies in bounded batches: a client that stops reading is closed
 * after the write timeout, so its replies never pile up. */
#include <fcntl.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcache.h"

#define IN_MIN 4096
#define OUT_HIGH (256 * 1024) /* flush replies beyond this before parsing more */
#define SEC 1000000000LL
#define CONN_PAGE 4096
#define OUT_INLINE 1536 /* a get's reply of a value up to ~1.4 KiB */
#define CONN_COLORS 8   /* record offsets in the page: 0, 64, ... 448 bytes */

/* A connection's record, its first input buffer and its first output
 * buffer share one page (CONN_PAGE, page-aligned): a command that fits
 * touches that page, not three (the record, a 4 KiB input malloc straddling
 * two pages, the output malloc), and every system call (page-table
 * isolation, no PCID) makes each distinct page a page walk. Larger input or
 * output moves to malloc'd buffers (as it grows: a command or a reply that
 * does not fit); a very large one is freed once empty (the rules below:
 * flush, process) and the connection goes back to its page. The record
 * starts at one of CONN_COLORS cache-line offsets in its page, in turn, so
 * that the records of hundreds of connections do not all fall in the same
 * cache sets. */
struct conn {
    struct kvcache_conn_link link;
    struct hy_tcp *sock;
    struct kvcache_shard *sh;
    unsigned shard;
    char *in;
    size_t in_len, in_cap;
    uint64_t swallow;
    struct kvcache_out out;
    struct kvcache_out scratch; /* forwarded replies, sub-requests */
    uint64_t partial_since;     /* when the incomplete command began (0: none) */
    struct kvcache_direct *d;   /* replies an owner writes itself (NULL: none yet) */
    hy_ref dref;                /* the ack of the command at the owner */
    uint32_t dseq;              /* direct commands sent so far (the one in hand: the last) */
    uint32_t gu_seq;            /* the one the give-up checks saw pending, gu_seen times */
    uint8_t gu_seen;
    bool gu_armed;              /* a give-up check (KVCACHE_TAG_GIVE_UP) is on its way */
    bool may_direct;            /* the command in hand may go direct */
    bool last;                  /* it is the last of what was read: a local get's
                                 * reply goes out at once (send_get) */
    bool close;
    uint16_t color;    /* the record's offset in its page */
    uint16_t in_inline_cap;
    char out_inline[OUT_INLINE];
    char in_inline[]; /* the rest of the page */
};

_Static_assert(offsetof(struct conn, in_inline) + (CONN_COLORS - 1) * 64 + 1536 <= CONN_PAGE,
               "a connection and 1.5 KiB of input fit one page");

/* a connection whose last command is at an owner gives up on it after this
 * long without an answer (the owner died with it, or restarted, or is slow:
 * kvcache_cfg.direct_give_up_ns when set) */
#define DIRECT_GIVE_UP_NS \
    (kvcache_cfg.direct_give_up_ns ? (int64_t)kvcache_cfg.direct_give_up_ns : 5 * SEC)
/* The give-up is not a timeout on each direct command's wait (a clock read
 * and a timer-wheel entry added and removed per forwarded command): one
 * check message (hy_send_after, KVCACHE_TAG_GIVE_UP) every GIVE_UP_STEPS-th
 * of DIRECT_GIVE_UP_NS goes to the connection while it has a command at an
 * owner, armed by the first direct command with none on its way and not
 * re-armed by a check that finds nothing pending. A command that the checks
 * have seen pending GIVE_UP_STEPS + 1 times in a row (the command's number,
 * dseq, unchanged) is given up on: its first sighting was after it was sent
 * and each check comes at least a step after the one before, so that is at
 * least DIRECT_GIVE_UP_NS after it was sent, and, as a check wakes a
 * connection that waits on the owner at once, at most a step more. */
#define GIVE_UP_STEPS 4

static void fwd_fail_all(struct kvcache_fwd *f);
static int forward(struct conn *c, unsigned o, const struct kvcache_cmd *cmd, const char *raw,
                   size_t len, struct kvcache_out *out);

static void conn_cleanup(void *arg)
{
    struct conn *c = arg;
    /* a leader that ends with its batch unsent (an exit signal while it
     * yielded): its waiters get KVCACHE_TAG_FAIL now, the next forward
     * opens a new batch */
    for (unsigned o = 0; o < KVCACHE_MAX_SHARDS; o++) {
        struct kvcache_fwd *f = c->sh->fwd[o];
        if (f && f->n && hy_pid_eq(f->leader, c->link.pid))
            fwd_fail_all(f);
    }
    /* a command still at an owner keeps the socket open through its
     * message's reference until it is answered or dropped */
    if (c->d)
        kvcache_direct_put(c->d);
    atomic_store_explicit(&c->sh->curr_conns,
                          atomic_load_explicit(&c->sh->curr_conns, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    c->link.prev->next = c->link.next;
    c->link.next->prev = c->link.prev;
    if (c->in != c->in_inline)
        free(c->in);
    kvcache_out_fini(&c->out);
    kvcache_out_fini(&c->scratch);
    free((char *)c - c->color);
}

void kvcache_conn_stop_shard(void)
{
    struct kvcache_shard *sh = &kvcache_shards[hy_shard_id()];
    sh->stopping = true;
    if (!sh->conns.next)
        return;
    size_t n = 0;
    for (struct kvcache_conn_link *l = sh->conns.next; l != &sh->conns; l = l->next)
        n++;
    hy_pid *idle = malloc((n ? n : 1) * sizeof(*idle));
    size_t k = 0;
    for (struct kvcache_conn_link *l = sh->conns.next; idle && l != &sh->conns; l = l->next)
        if (!l->busy)
            idle[k++] = l->pid;
    /* busy ones end after their current batch: they look at stopping */
    for (size_t i = 0; i < k; i++)
        hy_exit_pid(idle[i], hy_reason_make(HY_REASON_SHUTDOWN));
    free(idle);
}

static void add_counter(_Atomic uint64_t *a, uint64_t n)
{
    /* one writer (this shard's thread); readers load relaxed */
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static KV_HOT bool flush(struct conn *c)
{
    if (c->out.oom)
        return false;
    if (c->out.len == 0)
        return true;
    int rc = hy_tcp_send(c->sock, c->out.buf, c->out.len,
                         (int64_t)kvcache_cfg.write_timeout_s * SEC);
    if (rc != 0)
        return false;
    add_counter(&c->sh->bytes_written, c->out.len);
    c->out.len = 0;
    if (c->out.cap > 4 * OUT_HIGH) {
        kvcache_out_fini(&c->out);
        kvcache_out_use(&c->out, c->out_inline, OUT_INLINE);
    }
    return true;
}

/* ---- direct replies: the owner writes to the socket -------------------------- */

static bool direct_pending(const struct conn *c)
{
    return c->d && atomic_load_explicit(&c->d->state, memory_order_acquire) != KVCACHE_DIRECT_IDLE;
}

/* sends the connection its next give-up check a step from now; without
 * one (no memory) its receive takes the give-up as a timeout instead */
static void give_up_arm(struct conn *c)
{
    uint64_t step = (uint64_t)DIRECT_GIVE_UP_NS / GIVE_UP_STEPS;
    c->gu_armed = hy_send_after(step ? step : 1, c->link.pid, KVCACHE_TAG_GIVE_UP, NULL, 0, 0,
                                NULL) == 0;
}

/* sends the connection's last command (nothing else unwritten) to owner o,
 * which writes the output itself; false: send it the usual way */
static bool direct_send(struct conn *c, unsigned o, const struct kvcache_cmd *cmd,
                        const char *raw)
{
    /* earlier replies the socket took (hy_tcp_send returned 0) may still be
     * queued for this shard's next submission (io_uring), e.g. when the
     * client's next command was already read: the owner's write would
     * overtake them */
    if (hy_tcp_unsent(c->sock) != 0)
        return false;
    if (!c->d) {
        struct kvcache_direct *d = calloc(1, sizeof(*d));
        if (!d)
            return false;
        d->fd = fcntl(hy_tcp_fd(c->sock), F_DUPFD_CLOEXEC, 0);
        if (d->fd < 0) {
            free(d);
            return false;
        }
        atomic_init(&d->refs, 1);
        atomic_init(&d->state, KVCACHE_DIRECT_IDLE);
        c->d = d;
    }
    atomic_store_explicit(&c->d->state, KVCACHE_DIRECT_PENDING, memory_order_relaxed);
    int rc = kvcache_server_send_direct(o, c->d, cmd, raw, cmd->total, &c->dref);
    if (rc != 0) {
        atomic_store_explicit(&c->d->state, KVCACHE_DIRECT_IDLE, memory_order_relaxed);
        return false;
    }
    c->dseq++;
    if (!c->gu_armed)
        give_up_arm(c);
    return true;
}

enum direct_how {
    DIRECT_LOOK,    /* take the answer if the owner gave it */
    DIRECT_WAIT,    /* wait for it: the connection has more to do */
    DIRECT_GIVE_UP, /* no answer in DIRECT_GIVE_UP_NS: the owner died with it, or is slow */
};

/* marks the connection as waiting for the owner's ack (the WAITER bit, on
 * PENDING or RUNNING); false: the command is settled (DONE) already */
static bool direct_wait_mark(struct kvcache_direct *d)
{
    int cur = atomic_load_explicit(&d->state, memory_order_acquire);
    for (;;) {
        int base = cur & ~KVCACHE_DIRECT_WAITER;
        if (base != KVCACHE_DIRECT_PENDING && base != KVCACHE_DIRECT_RUNNING)
            return false;
        if (cur & KVCACHE_DIRECT_WAITER)
            return true;
        if (atomic_compare_exchange_weak_explicit(&d->state, &cur, cur | KVCACHE_DIRECT_WAITER,
                                                  memory_order_acq_rel, memory_order_acquire))
            return true;
    }
}

/* settles the command at the owner; what the owner left unwritten (or its
 * failure) goes to c->out first. Exactly one of the two answers: a
 * connection that gives up claims the command (kvcache_direct_abandon) and
 * answers SERVER_ERROR, unless the owner claimed it first: then the owner's
 * answer is waited for (between its claim and its answer the owner has no
 * preemption point: it cannot end there, and it does not wait) */
static void direct_settle(struct conn *c, enum direct_how how)
{
    struct kvcache_direct *d = c->d;
    int st = atomic_load_explicit(&d->state, memory_order_acquire) & ~KVCACHE_DIRECT_WAITER;
    if (st == KVCACHE_DIRECT_PENDING || st == KVCACHE_DIRECT_RUNNING) {
        if (how == DIRECT_LOOK)
            return;
        bool late = how == DIRECT_GIVE_UP;
        if (!late && direct_wait_mark(d)) {
            struct kvcache_out ack = {0};
            late = kvcache_server_wait(c->dref, &ack) != 0;
            kvcache_out_fini(&ack);
        }
        while (late) {
            if (kvcache_direct_abandon(d)) {
                /* no answer, and now there never will be one from the
                 * owner: it ended with the command in its mailbox (the
                 * message's drop function drops its reference, so the
                 * socket's duplicate closes with ours), or it lives and is
                 * slow (it drops its reference when it takes the command,
                 * unrun) */
                kvcache_direct_put(d);
                c->d = NULL;
                kvcache_out_str(&c->out, "SERVER_ERROR key owner unavailable\r\n");
                return;
            }
            /* the owner claimed it: its answer comes */
            if (!direct_wait_mark(d))
                break; /* answered in the meantime */
            struct kvcache_out ack = {0};
            late = kvcache_server_wait(c->dref, &ack) != 0;
            kvcache_out_fini(&ack);
        }
    }
    if ((atomic_load_explicit(&d->state, memory_order_acquire) & ~KVCACHE_DIRECT_WAITER) ==
        KVCACHE_DIRECT_DROPPED) {
        /* its owner ended before it took the command: nobody ran it */
        kvcache_out_str(&c->out, "SERVER_ERROR key owner unavailable\r\n");
        atomic_store_explicit(&d->state, KVCACHE_DIRECT_IDLE, memory_order_relaxed);
        return;
    }
    if (d->left) {
        kvcache_out_put(&c->out, d->left, d->left_len);
        free(d->left);
        d->left = NULL;
        d->left_len = 0;
    }
    if (d->left_failed) {
        kvcache_out_str(&c->out, "SERVER_ERROR out of memory\r\n");
        d->left_failed = false;
    }
    atomic_store_explicit(&d->state, KVCACHE_DIRECT_IDLE, memory_order_relaxed);
}

/* a give-up check arrived (GIVE_UP_STEPS above): the command at the owner, if
 * any, seen pending once more; given up on at its GIVE_UP_STEPS + 1-th
 * sighting, else the next check is armed (none while nothing is pending) */
static void give_up_check(struct conn *c)
{
    c->gu_armed = false;
    if (!direct_pending(c)) {
        c->gu_seen = 0;
        return;
    }
    if (c->gu_seen == 0 || c->gu_seq != c->dseq) {
        c->gu_seq = c->dseq;
        c->gu_seen = 0;
    }
    if (++c->gu_seen > GIVE_UP_STEPS) {
        c->gu_seen = 0;
        direct_settle(c, DIRECT_GIVE_UP);
        if (!direct_pending(c))
            return;
    }
    give_up_arm(c);
}

/* a message ended the connection's receive: the owner's answer to the
 * command it holds (sent only when it left output to the connection), a
 * give-up check, or a late reply of a request given up on; none is wanted
 * once taken */
static KV_COLD void drain_mailbox(struct conn *c)
{
    struct hy_msg *m;
    bool check = false;
    while (hy_recv(&m, HY_NOWAIT) == 0) {
        check |= m->tag == KVCACHE_TAG_GIVE_UP;
        hy_msg_free(m);
    }
    if (direct_pending(c))
        direct_settle(c, DIRECT_LOOK);
    if (check)
        give_up_check(c);
}

/* ---- forwarding: one batch per owner per turn ---------------------------------- */

static void fwd_reset(struct kvcache_fwd *f)
{
    f->req.len = 0;
    f->req.oom = false;
    f->n = 0;
    f->leader = HY_PID_NONE;
}

/* the commands of a batch that was not sent get KVCACHE_TAG_FAIL, except
 * skip's */
static void fwd_fail(const hy_pid *who, const hy_ref *refs, size_t n, hy_pid skip)
{
    for (size_t i = 0; i < n; i++)
        if (!hy_pid_eq(who[i], skip))
            hy_send_ref(who[i], KVCACHE_TAG_FAIL, refs[i], NULL, 0);
}

static void fwd_fail_all(struct kvcache_fwd *f)
{
    fwd_fail(f->who, f->refs, f->n, f->leader);
    fwd_reset(f);
}

/* runs raw[0..len) (one whole command; cmd: as parsed, NULL: text only) at
 * shard o and appends its output to out; 0, or an error (the owner did not
 * answer, no memory). The owner runs a parsed command without parsing it
 * again (kvcache_proto_pack). Commands of one turn for one owner go as one
 * batch: the first connection to add one (the leader) yields once, sends
 * the batch, waits for its reply and hands each connection its part. */
static KV_HOT int forward(struct conn *c, unsigned o, const struct kvcache_cmd *cmd,
                          const char *raw, size_t len, struct kvcache_out *out)
{
    struct kvcache_fwd *f = c->sh->fwd[o];
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            return HY_ENOMEM;
        c->sh->fwd[o] = f;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        hy_pid *who = realloc(f->who, cap * sizeof(*who));
        if (!who)
            return HY_ENOMEM;
        f->who = who;
        hy_ref *refs = realloc(f->refs, cap * sizeof(*refs));
        if (!refs)
            return HY_ENOMEM;
        f->refs = refs;
        f->cap = cap;
    }
    /* a batch stays within one message (the runtime's limit is the item
     * limit plus 128 KiB): a command that would overflow the open batch
     * goes alone */
    struct kvcache_cmd_wire w;
    bool parsed = cmd && kvcache_proto_pack(cmd, raw, &w);
    if (f->n > 0 &&
        f->req.len + 4 + sizeof(w) + len > (size_t)kvcache_cfg.set.item_size_max + 64 * 1024) {
        struct kvcache_out rep = {0};
        int rr = kvcache_server_request(o, KVCACHE_REQ_RAW, raw, len, &rep);
        if (rr == 0)
            kvcache_out_put(out, rep.buf, rep.len);
        kvcache_out_fini(&rep);
        return rr;
    }
    hy_ref ref;
    int rc = hy_ref_make(&ref);
    if (rc != 0)
        return rc;
    if (parsed) {
        uint32_t l32 = (uint32_t)(sizeof(w) + len) | KVCACHE_BATCH_CMD;
        kvcache_out_put(&f->req, &l32, 4);
        kvcache_out_put(&f->req, &w, sizeof(w));
    } else {
        uint32_t l32 = (uint32_t)len;
        kvcache_out_put(&f->req, &l32, 4);
    }
    kvcache_out_put(&f->req, raw, len);
    bool leader = f->n == 0;
    f->who[f->n] = c->link.pid;
    f->refs[f->n] = ref;
    f->n++;
    if (!leader)
        return kvcache_server_wait(ref, out) == 0 ? 0 : HY_ENOPROC;
    f->leader = c->link.pid;
    /* the other connections ready in this turn add theirs meanwhile */
    hy_yield();
    /* detach the batch: forwards from now on open the next one */
    struct kvcache_out req = f->req;
    size_t n = f->n;
    hy_pid *who = f->who;
    hy_ref *refs = f->refs;
    size_t cap = f->cap;
    f->req = (struct kvcache_out){0};
    f->who = NULL;
    f->refs = NULL;
    f->cap = 0;
    fwd_reset(f);
    struct kvcache_out rep;
    kvcache_spare_take(c->sh, &rep);
    hy_ref bref;
    rc = req.oom ? HY_ENOMEM : kvcache_server_send(o, KVCACHE_REQ_BATCH, req.buf, req.len, &bref);
    bool sent = rc == 0;
    if (!sent) /* every other command is told here */
        fwd_fail(who, refs, n, c->link.pid);
    else
        rc = kvcache_server_wait(bref, &rep);
    size_t cur = 0;
    int own = HY_ENOPROC;
    for (size_t i = 0; i < n && sent; i++) {
        uint32_t l = 0;
        bool have = rc == 0 && cur + 4 <= rep.len;
        if (have) {
            memcpy(&l, rep.buf + cur, 4);
            have = cur + 4 + l <= rep.len;
        }
        if (i == 0) { /* the leader's own command comes first */
            if (have) {
                kvcache_out_put(out, rep.buf + cur + 4, l);
                own = 0;
            }
        } else if (have) {
            hy_send_ref(who[i], KVCACHE_TAG_LAST, refs[i], rep.buf + cur + 4, l);
        } else {
            hy_send_ref(who[i], KVCACHE_TAG_FAIL, refs[i], NULL, 0);
        }
        if (have)
            cur += 4 + l;
    }
    kvcache_spare_give(c->sh, &rep);
    /* the next batch reuses these buffers unless one opened meanwhile */
    if (f->cap == 0 && f->req.cap == 0 && !req.oom && req.cap <= 64 * 1024) {
        f->who = who;
        f->refs = refs;
        f->cap = cap;
        req.len = 0;
        f->req = req;
    } else {
        kvcache_out_fini(&req);
        free(who);
        free(refs);
    }
    return own;
}

static const char *op_word(enum kvcache_op op)
{
    switch (op) {
    case KVCACHE_OP_GETS:
        return "gets";
    case KVCACHE_OP_GAT:
        return "gat";
    case KVCACHE_OP_GATS:
        return "gats";
    default:
        return "get";
    }
}

/* a local get's reply, sent at once without copying the value from the
 * item (values of kvcache_cfg.send_from_item bytes and up): what the connection owed before it,
 * the VALUE line, the value and "END" in one send; what the socket does not
 * take is copied to c->out (flush waits for room), since the item may be
 * replaced or freed once this process yields. Only for the last command of
 * what was read: a later command's reply would have to wait behind it. */
static KV_HOT void send_get(struct conn *c, struct kvcache_store *st, const struct kvcache_cmd *cmd)
{
    /* the VALUE line goes straight into the output buffer (the
     * connection's page), "END" after it, outside the reply's length: no
     * buffer on the stack to write, and the kernel reads two pages, that
     * one and the item's */
    if (!kvcache_out_grow(&c->out, KVCACHE_VALUE_LINE_MAX + 5))
        return;
    size_t hl = 0;
    struct kvcache_view v;
    if (!kvcache_proto_get_head(st, cmd, c->out.buf + c->out.len, &hl, &v)) {
        kvcache_out_put(&c->out, "END\r\n", 5);
        return;
    }
    c->out.len += hl;
    size_t vl = (size_t)v.nbytes + 2;
    if (!kvcache_cfg.send_from_item || vl < kvcache_cfg.send_from_item) {
        kvcache_out_put(&c->out, v.value, vl);
        kvcache_out_put(&c->out, "END\r\n", 5);
        return;
    }
    memcpy(c->out.buf + c->out.len, "END\r\n", 5);
    struct iovec iov[3] = {{c->out.buf, c->out.len},
                           {(void *)v.value, vl},
                           {c->out.buf + c->out.len, 5}};
    size_t sent = 0;
    /* an error leaves everything to c->out: flush reports it */
    hy_tcp_send_some(c->sock, iov, 3, &sent);
    add_counter(&c->sh->bytes_written, sent);
    if (sent >= c->out.len + vl + 5) {
        c->out.len = 0;
        return;
    }
    if (sent < c->out.len) {
        memmove(c->out.buf, c->out.buf + sent, c->out.len - sent);
        c->out.len -= sent;
        sent = 0;
    } else {
        sent -= c->out.len;
        c->out.len = 0;
    }
    if (sent < vl)
        kvcache_out_put(&c->out, v.value + sent, vl - sent);
    sent = sent > vl ? sent - vl : 0;
    kvcache_out_put(&c->out, &"END\r\n"[sent], 5 - sent);
}

/* A command of one key: hashed once, run here when this shard owns the key,
 * else sent to its owner (directly, or forwarded with the reply coming back) */
static KV_HOT void route_one(struct conn *c, struct kvcache_store *st, struct kvcache_cmd *cmd,
                             const char *raw)
{
    cmd->hash = kvcache_key_hash(cmd->key, cmd->nkey);
    cmd->hashed = true;
    unsigned o = kvcache_hash_owner(cmd->hash);
    if (o == c->shard && st) {
        if (c->last && cmd->op >= KVCACHE_OP_GET && cmd->op <= KVCACHE_OP_GATS)
            send_get(c, st, cmd);
        else
            kvcache_proto_exec(st, cmd, &c->out);
        return;
    }
    if (c->may_direct && c->out.len == 0 && direct_send(c, o, cmd, raw))
        return;
    if (forward(c, o, cmd, raw, cmd->total, &c->out) != 0)
        kvcache_out_str(&c->out, "SERVER_ERROR key owner unavailable\r\n");
}

static void do_get_multi(struct conn *c, struct kvcache_store *st, const struct kvcache_cmd *cmd);

/* the get family: keys this shard owns run here, a single other owner gets
 * the command whole, keys of several owners go to do_get_multi */
static KV_HOT void do_get(struct conn *c, struct kvcache_store *st, struct kvcache_cmd *cmd,
                          const char *raw)
{
    unsigned n = kvcache_cfg.set.nshards;
    uint64_t mask = 0;
    size_t pos = 0, nkeys = 0;
    const char *k;
    size_t nk;
    if (cmd->key) { /* the only key */
        route_one(c, st, cmd, raw);
        return;
    }
    while (kvcache_proto_next_key(cmd, &pos, &k, &nk)) {
        if (n <= 1 && nkeys == 1) { /* one shard: only a single key's hash is wanted */
            nkeys++;
            break;
        }
        uint64_t h = kvcache_key_hash(k, nk);
        mask |= 1ull << kvcache_hash_owner(h);
        cmd->hash = h; /* the only key's, if it is the only one: hashed once */
        nkeys++;
    }
    cmd->hashed = nkeys == 1;
    if (n <= 1 && st) { /* one shard: every key is this store's */
        kvcache_proto_exec(st, cmd, &c->out);
        return;
    }
    if ((mask & ~(1ull << c->shard)) == 0 && st) {
        kvcache_proto_exec(st, cmd, &c->out);
        return;
    }
    if (mask && (mask & (mask - 1)) == 0) {
        /* one owner, not this shard's store: the command goes whole */
        unsigned o = (unsigned)__builtin_ctzll(mask);
        if (c->may_direct && c->out.len == 0 && direct_send(c, o, cmd, raw))
            return;
        if (forward(c, o, cmd, raw, cmd->total, &c->out) != 0)
            kvcache_out_str(&c->out, "SERVER_ERROR key owner unavailable\r\n");
        return;
    }
    do_get_multi(c, st, cmd);
}

/* keys of several owners: one sub-request per remote shard, sent together,
 * then the replies stitched in the keys' order. Out of line: its arrays
 * (several KiB) would otherwise sit in every get's stack frame, and every
 * call below a get (the store, the forward's wait and switch) would run
 * on stack pages further down, each a page walk after a system call. */
static KV_COLD void do_get_multi(struct conn *c, struct kvcache_store *st,
                                     const struct kvcache_cmd *shard_cmd)
{
    /* the shard's command is another connection's once this one waits */
    const struct kvcache_cmd own = *shard_cmd;
    const struct kvcache_cmd *cmd = &own;
    unsigned n = kvcache_cfg.set.nshards;
    size_t pos;
    const char *k;
    size_t nk;
    struct kvcache_out req[KVCACHE_MAX_SHARDS];
    struct kvcache_out rep[KVCACHE_MAX_SHARDS];
    size_t cur[KVCACHE_MAX_SHARDS];
    hy_ref refs[KVCACHE_MAX_SHARDS];
    bool ok[KVCACHE_MAX_SHARDS];
    memset(req, 0, sizeof(req[0]) * n);
    memset(rep, 0, sizeof(rep[0]) * n);
    memset(cur, 0, sizeof(cur[0]) * n);
    memset(ok, 0, sizeof(ok[0]) * n);
    char head[48];
    int hl;
    if (cmd->op == KVCACHE_OP_GAT || cmd->op == KVCACHE_OP_GATS)
        hl = snprintf(head, sizeof(head), "%s %lld", op_word(cmd->op), (long long)cmd->exptime);
    else
        hl = snprintf(head, sizeof(head), "%s", op_word(cmd->op));
    pos = 0;
    while (kvcache_proto_next_key(cmd, &pos, &k, &nk)) {
        unsigned o = kvcache_key_owner(k, nk);
        if (o == c->shard)
            continue;
        if (req[o].len == 0)
            kvcache_out_put(&req[o], head, (size_t)hl);
        kvcache_out_put(&req[o], " ", 1);
        kvcache_out_put(&req[o], k, nk);
    }
    for (unsigned s = 0; s < n; s++) {
        if (s == c->shard || req[s].len == 0)
            continue;
        kvcache_out_put(&req[s], "\r\n", 2);
        ok[s] = !req[s].oom &&
                kvcache_server_send(s, KVCACHE_REQ_GETKEYS, req[s].buf, req[s].len, &refs[s]) == 0;
    }
    for (unsigned s = 0; s < n; s++)
        if (ok[s])
            ok[s] = kvcache_server_wait(refs[s], &rep[s]) == 0;
    pos = 0;
    while (kvcache_proto_next_key(cmd, &pos, &k, &nk)) {
        unsigned o = kvcache_key_owner(k, nk);
        if (o == c->shard) {
            if (st)
                kvcache_proto_get_one(st, cmd, k, nk, &c->out);
            continue;
        }
        if (!ok[o] || cur[o] + 4 > rep[o].len)
            continue; /* the owner did not answer: a miss */
        uint32_t len;
        memcpy(&len, rep[o].buf + cur[o], 4);
        if (cur[o] + 4 + len > rep[o].len) {
            ok[o] = false;
            continue;
        }
        kvcache_out_put(&c->out, rep[o].buf + cur[o] + 4, len);
        cur[o] += 4 + len;
    }
    kvcache_out_put(&c->out, "END\r\n", 5);
    for (unsigned s = 0; s < n; s++) {
        kvcache_out_fini(&req[s]);
        kvcache_out_fini(&rep[s]);
    }
}

static KV_COLD void do_broadcast(struct conn *c, uint8_t kind, const void *data, size_t len)
{
    (void)c;
    hy_ref refs[KVCACHE_MAX_SHARDS];
    bool ok[KVCACHE_MAX_SHARDS];
    unsigned n = kvcache_cfg.set.nshards;
    for (unsigned s = 0; s < n; s++)
        ok[s] = kvcache_server_send(s, kind, data, len, &refs[s]) == 0;
    for (unsigned s = 0; s < n; s++) {
        if (!ok[s])
            continue;
        struct kvcache_out r = {0};
        kvcache_server_wait(refs[s], &r);
        kvcache_out_fini(&r);
    }
}

static KV_COLD void do_stats(struct conn *c, const struct kvcache_cmd *shard_cmd)
{
    /* the shard's command is another connection's once this one waits */
    const struct kvcache_cmd own = *shard_cmd;
    const struct kvcache_cmd *cmd = &own;
    if (cmd->args_len >= 5 && memcmp(cmd->args, "reset", 5) == 0 &&
        (cmd->args_len == 5 || cmd->args[5] == ' ')) {
        do_broadcast(c, KVCACHE_REQ_RESET, NULL, 0);
        for (unsigned s = 0; s < kvcache_cfg.set.nshards; s++) {
            atomic_store_explicit(&kvcache_shards[s].bytes_read, 0, memory_order_relaxed);
            atomic_store_explicit(&kvcache_shards[s].bytes_written, 0, memory_order_relaxed);
        }
        kvcache_out_str(&c->out, "RESET\r\n");
        return;
    }
    struct kvcache_stats_reply *r = malloc(sizeof(*r));
    if (!r) {
        kvcache_out_str(&c->out, "SERVER_ERROR out of memory\r\n");
        return;
    }
    kvcache_server_gather(r);
    struct kvcache_conn_stats cs = {0};
    struct hy_tcp_server *srv = atomic_load(&kvcache_tcp);
    if (srv) {
        struct hy_tcp_server_stats ts;
        hy_tcp_server_stats(srv, &ts);
        cs.rejected_connections = ts.refused;
    }
    for (unsigned s = 0; s < kvcache_cfg.set.nshards; s++) {
        cs.bytes_read += atomic_load_explicit(&kvcache_shards[s].bytes_read, memory_order_relaxed);
        cs.bytes_written +=
            atomic_load_explicit(&kvcache_shards[s].bytes_written, memory_order_relaxed);
        cs.cmd_meta += atomic_load_explicit(&kvcache_shards[s].cmd_meta, memory_order_relaxed);
        cs.curr_connections +=
            atomic_load_explicit(&kvcache_shards[s].curr_conns, memory_order_relaxed);
        cs.total_connections +=
            atomic_load_explicit(&kvcache_shards[s].total_conns, memory_order_relaxed);
    }
    uint64_t now = kvcache_unix_now();
    if (!kvcache_proto_stats(cmd->args, cmd->args_len, &kvcache_cfg.set, &r->c, &cs, r->cls,
                             r->nclasses, now - kvcache_cfg.started, now, &c->out))
        kvcache_out_str(&c->out, "ERROR\r\n");
    free(r);
}

/* one parsed command (the shard's, c->sh->cmd: not to be used after a
 * yield, since another connection parses into it); raw is its text (line
 * and data) for forwarding */
static KV_HOT void handle(struct conn *c, struct kvcache_cmd *cmd, const char *raw)
{
    struct kvcache_store *st = c->sh->store;
    switch (cmd->op) {
    case KVCACHE_OP_GET:
    case KVCACHE_OP_GETS:
    case KVCACHE_OP_GAT:
    case KVCACHE_OP_GATS:
        do_get(c, st, cmd, raw);
        return;
    case KVCACHE_OP_STATS:
        do_stats(c, cmd);
        return;
    case KVCACHE_OP_FLUSH_ALL: {
        int64_t delay = cmd->exptime;
        bool noreply = cmd->noreply; /* the shard's command changes during the wait */
        do_broadcast(c, KVCACHE_REQ_FLUSH, &delay, sizeof(delay));
        if (!noreply)
            kvcache_out_str(&c->out, "OK\r\n");
        return;
    }
    case KVCACHE_OP_VERBOSITY:
    case KVCACHE_OP_VERSION:
    case KVCACHE_OP_QUIT:
    case KVCACHE_OP_MN:
    case KVCACHE_OP_ERROR:
        kvcache_proto_exec(st, cmd, &c->out);
        return;
    default:
        break;
    }
    if (cmd->op >= KVCACHE_OP_MG)
        add_counter(&c->sh->cmd_meta, 1);
    route_one(c, st, cmd, raw);
}

/* doubles the input buffer, up to a get line plus the largest item;
 * false: at the bound already, or no memory */
static bool grow_in(struct conn *c)
{
    size_t max = KVCACHE_GET_LINE_MAX + (size_t)kvcache_cfg.set.item_size_max + 2;
    size_t cap = c->in_cap ? c->in_cap * 2 : IN_MIN;
    if (cap > max)
        cap = max;
    if (cap <= c->in_cap)
        return false;
    bool inl = c->in == c->in_inline;
    char *b = inl ? malloc(cap) : realloc(c->in, cap);
    if (!b)
        return false;
    if (inl)
        memcpy(b, c->in, c->in_len);
    c->in = b;
    c->in_cap = cap;
    return true;
}

/* parses and runs what the buffer holds; false: close */
static KV_HOT bool process(struct conn *c)
{
    size_t pos = 0;
    uint32_t item_max = kvcache_cfg.set.item_size_max;
    bool ok = true; /* the store's clock: the owner's tick (kvcache_server.c) */
    if (direct_pending(c))
        direct_settle(c, DIRECT_WAIT); /* its reply comes before the next ones */
    while (pos < c->in_len) {
        if (c->swallow) {
            size_t d = c->in_len - pos < c->swallow ? c->in_len - pos : (size_t)c->swallow;
            pos += d;
            c->swallow -= d;
            continue;
        }
        /* the shard's command (hot in the cache), not one on this
         * process's stack: what is needed after handle() (which may yield)
         * is taken first */
        struct kvcache_cmd *cmd = &c->sh->cmd;
        size_t need;
        int r = kvcache_proto_parse(c->in + pos, c->in_len - pos, item_max, cmd, &need);
        if (r < 0) {
            ok = false;
            break;
        }
        if (r == 0)
            break; /* the rest arrives later; the buffer doubles when full */
        size_t total = cmd->total;
        uint64_t swallow = cmd->swallow;
        bool close = cmd->close;
        /* the last command of what was read, nothing unwritten before it:
         * its owner may write the reply itself */
        c->last = pos + total == c->in_len && swallow == 0 && !close;
        c->may_direct = c->last && kvcache_cfg.direct && kvcache_cfg.set.nshards > 1 &&
                        !c->sh->stopping;
        handle(c, cmd, c->in + pos);
        c->may_direct = false;
        c->last = false;
        pos += total;
        c->swallow = swallow;
        c->partial_since = 0; /* progress: the next command gets its own deadline */
        if (close) {
            c->close = true;
            break;
        }
        if (c->out.len >= OUT_HIGH && !flush(c)) {
            ok = false;
            break;
        }
    }
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
    if (c->in_len == 0 && c->in_cap > 16 * IN_MIN) {
        free(c->in);
        c->in = c->in_inline;
        c->in_cap = c->in_inline_cap;
    }
    return ok;
}

KV_HOT void kvcache_conn_handle(struct hy_tcp *sock, void *arg)
{
    (void)arg;
    unsigned shard = (unsigned)hy_shard_id();
    uint64_t seq = atomic_load_explicit(&kvcache_shards[shard].total_conns, memory_order_relaxed);
    size_t color = (size_t)(seq % CONN_COLORS) * 64;
    char *page = aligned_alloc(CONN_PAGE, CONN_PAGE);
    if (!page)
        return;
    struct conn *c = (struct conn *)(page + color);
    memset(c, 0, offsetof(struct conn, out_inline)); /* the buffers need no zeroes */
    c->color = (uint16_t)color;
    c->in_inline_cap = (uint16_t)(CONN_PAGE - color - offsetof(struct conn, in_inline));
    c->in = c->in_inline;
    c->in_cap = c->in_inline_cap;
    kvcache_out_use(&c->out, c->out_inline, OUT_INLINE);
    c->sock = sock;
    c->shard = (unsigned)hy_shard_id();
    c->sh = &kvcache_shards[c->shard];
    c->link.pid = hy_self();
    if (!c->sh->conns.next) {
        c->sh->conns.next = &c->sh->conns;
        c->sh->conns.prev = &c->sh->conns;
    }
    c->link.next = c->sh->conns.next;
    c->link.prev = &c->sh->conns;
    c->sh->conns.next->prev = &c->link;
    c->sh->conns.next = &c->link;
    add_counter(&c->sh->curr_conns, 1);
    add_counter(&c->sh->total_conns, 1);
    if (hy_on_exit(conn_cleanup, c) != 0) {
        conn_cleanup(c);
        return;
    }
    while (!c->sh->stopping && !c->close) {
        if (c->in_len == c->in_cap && !grow_in(c))
            break;
        /* a command must complete within read_timeout of its first byte,
         * however slowly its bytes trickle in (slowloris); an idle
         * connection waits idle_timeout (default: forever) */
        int64_t timeout = HY_INFINITY;
        bool partial = c->in_len > 0 || c->swallow > 0;
        if (partial && kvcache_cfg.read_timeout_s) {
            uint64_t now = hy_now_ns();
            if (c->partial_since == 0)
                c->partial_since = now;
            int64_t left = (int64_t)(c->partial_since + kvcache_cfg.read_timeout_s * (uint64_t)SEC - now);
            if (left <= 0)
                break;
            timeout = left;
        } else if (!partial) {
            c->partial_since = 0;
            if (kvcache_cfg.set.idle_timeout)
                timeout = (int64_t)kvcache_cfg.set.idle_timeout * SEC;
        }
        bool pending = direct_pending(c), capped = false;
        /* the give-up comes by message (give_up_check); a timeout only
         * when no check could be armed */
        if (pending && !c->gu_armed && (timeout < 0 || timeout > DIRECT_GIVE_UP_NS)) {
            timeout = DIRECT_GIVE_UP_NS;
            capped = true;
        }
        size_t got = 0;
        c->link.busy = false;
        /* with a command at an owner, the owner's message (output it left
         * to the connection: a full socket) ends the wait as bytes do */
        int rc = pending ? hy_tcp_recv_or_msg(sock, c->in + c->in_len, c->in_cap - c->in_len,
                                              &got, timeout)
                         : hy_tcp_recv(sock, c->in + c->in_len, c->in_cap - c->in_len, &got,
                                       timeout);
        c->link.busy = true;
        if (rc == HY_EINTR || (rc == HY_ETIMEDOUT && capped)) {
            if (rc == HY_EINTR)
                drain_mailbox(c);
            else if (direct_pending(c))
                direct_settle(c, DIRECT_GIVE_UP);
            if (!flush(c))
                break;
            continue;
        }
        if (rc != 0)
            break;
        add_counter(&c->sh->bytes_read, got);
        c->in_len += got;
        bool ok = process(c);
        if (!flush(c) || !ok)
            break;
    }
    /* the socket is closed when this process ends */
}
