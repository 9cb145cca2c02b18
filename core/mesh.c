/* The ring mesh: one SPSC ring per ordered pair of shards, a local overflow
 * queue behind each full ring, batched publish, and the foreign inbox.
 *
 * Entries are pointers to struct hy_msg (16-byte aligned), or, with bit 0
 * set, the head of a list of buffers going back to their home shard (bit 1
 * also set: a list of one slab class, put back on the pool whole). Both
 * travel in the same FIFO so nothing can overtake anything else. A small
 * ordinary message may instead travel whole in the ring's entry array (slot
 * value HY_RING_ENTRY): the consumer turns it into a buffer of its own pool
 * at the drain, in its place in the sequence, before it releases the slots.
 */
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"
#include "shard_internal.h"

#define PUBLISH_BATCH HY__MESH_PUBLISH_BATCH
#define DRAIN_BURST 32
#define DRAIN_MAX_PER_RING 512
/* Bytes of entry arrays the mesh may take in all (a line per position):
 * each ring gets the largest power of two of positions that fits its share,
 * at most its own size, at least 16. */
#define ENTRY_BUDGET (16u << 20)

static uint32_t entry_count(unsigned nshards, uint32_t ring_size)
{
    size_t pairs = (size_t)nshards * (nshards - 1);
    size_t fit = pairs ? ENTRY_BUDGET / sizeof(struct hy__centry) / pairs : ring_size;
    uint32_t n = ring_size;
    while (n > 16 && n > fit)
        n >>= 1;
    return n;
}

void hy__ret_receive(struct hy_shard *sh, struct hy_msg *list);
void hy__ret_receive_bulk(struct hy_shard *sh, struct hy_msg *head);
void hy__inbox_push(struct hy_shard *target, struct hy_msg *m);
void hy__deliver_run(struct hy_shard *sh, const uintptr_t *ms, unsigned n);

int hy__mesh_create(void)
{
    unsigned n = hy__rt.nshards;
    uint32_t size = hy__rt.cfg.ring_size;
    uint32_t ne = entry_count(n, size);
    for (unsigned i = 0; i < n; i++) {
        for (unsigned j = 0; j < n; j++) {
            if (i == j)
                continue;
            /* the ring lives on the consumer's node: it polls it constantly */
            struct hy_shard *cons = hy__rt.shards[j];
            struct hy_ring *r = hy__shard_mem_alloc(cons, hy__ring_bytes(size));
            if (!r)
                return HY_ENOMEM;
            hy__ring_init(r, size);
            struct hy__centry *ents =
                hy__shard_mem_alloc(cons, (size_t)ne * sizeof(struct hy__centry));
            if (!ents) {
                hy__shard_mem_free(cons, r, hy__ring_bytes(size));
                return HY_ENOMEM;
            }
            hy__ring_set_entries(r, ents, ne);
            hy__rt.shards[i]->out[j] = r;
            cons->in[i] = r;
        }
    }
    return 0;
}

void hy__mesh_destroy(void)
{
    unsigned n = hy__rt.nshards;
    uint32_t size = hy__rt.cfg.ring_size;
    for (unsigned i = 0; i < n; i++) {
        struct hy_shard *sh = hy__rt.shards[i];
        if (!sh)
            continue;
        for (unsigned j = 0; j < n; j++) {
            if (sh->out[j]) {
                struct hy_ring *r = sh->out[j];
                if (r->ents)
                    hy__shard_mem_free(hy__rt.shards[j], r->ents,
                                       (size_t)(r->emask + 1) * sizeof(struct hy__centry));
                hy__shard_mem_free(hy__rt.shards[j], r, hy__ring_bytes(size));
                sh->out[j] = NULL;
                hy__rt.shards[j]->in[i] = NULL;
            }
            struct hy__ovf_chunk *c = sh->ovf[j].head;
            while (c) {
                struct hy__ovf_chunk *next = c->next;
                free(c);
                c = next;
            }
            memset(&sh->ovf[j], 0, sizeof(sh->ovf[j]));
        }
    }
}

void hy__wake_shard(struct hy_shard *t)
{
    /* Dekker pairing: the sleeper stores sleeping=1 then re-checks its
     * rings; we published (release) then load sleeping; the seq_cst fence
     * on both sides orders store-before-load. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&t->sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&t->sleeping, 0, memory_order_seq_cst)) {
        if (atomic_load_explicit(&t->sleep_kind, memory_order_relaxed)) {
            uint64_t one = 1;
            (void)!write(t->wake_fd, &one, sizeof(one));
        } else {
            syscall(SYS_futex, &t->sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        }
    }
}

static inline bool ovf_empty(const struct hy__overflow *o)
{
    return o->head == o->tail && o->rd == o->wr;
}

/* The payload bytes entry e carries (0 for buffers going home). */
static inline size_t ovf_bytes(uintptr_t e)
{
    if (e == HY_RING_ENTRY)
        return HY_RING_ENTRY_DATA; /* filled after it is queued: at most this */
    if (e & 1u)
        return 0;
    return ((const struct hy_msg *)e)->size;
}

static void ovf_push(struct hy__overflow *o, uintptr_t e)
{
    if (!o->tail || o->wr == HY_OVF_CHUNK) {
        struct hy__ovf_chunk *c = malloc(sizeof(*c));
        if (!c)
            hy__fatal("out of memory queueing behind a full ring (losing the message "
                      "would break the ordering promise)");
        c->next = NULL;
        if (o->tail)
            o->tail->next = c;
        else
            o->head = c;
        o->tail = c;
        o->wr = 0;
        if (o->head == c)
            o->rd = 0;
    }
    o->tail->e[o->wr++] = e;
    o->len++;
    o->bytes += ovf_bytes(e);
}

/* Moves one queued entry into the ring; false when it has no room. A
 * message queued whole goes into the ring's entry array. */
static inline bool ovf_move_one(struct hy__ovf_chunk *c, uint32_t i, struct hy_ring *r)
{
    uintptr_t e = c->e[i];
    if (e != HY_RING_ENTRY)
        return hy__ring_push(r, e);
    struct hy__centry *d = hy__ring_entry_reserve(r);
    if (!d)
        return false;
    *d = c->ce[i];
    hy__ring_entry_commit(r);
    return true;
}

/* Moves entries into the ring while it has room; true when emptied. */
static bool ovf_drain_into(struct hy__overflow *o, struct hy_ring *r)
{
    while (o->head) {
        uint32_t end = o->head == o->tail ? o->wr : HY_OVF_CHUNK;
        while (o->rd < end) {
            /* read before the move: the consumer may free it after */
            size_t b = ovf_bytes(o->head->e[o->rd]);
            if (!ovf_move_one(o->head, o->rd, r))
                break;
            o->rd++;
            o->len--;
            o->bytes -= b;
        }
        if (o->rd < end)
            return false; /* the ring is full again */
        if (o->head == o->tail) {
            o->rd = o->wr = 0; /* keep the last chunk for next time */
            return true;
        }
        struct hy__ovf_chunk *done = o->head;
        o->head = done->next;
        o->rd = 0;
        free(done);
    }
    return true;
}

/* Counts one published batch of n entries towards dst: two relaxed adds per
 * batch, nothing per message. Only this shard writes them. */
static inline void count_batch(struct hy_shard *sh, unsigned dst, uint32_t n)
{
    struct hy__pair_stats *ps = &sh->pair[dst];
    atomic_store_explicit(&ps->entries,
                          atomic_load_explicit(&ps->entries, memory_order_relaxed) + n,
                          memory_order_relaxed);
    atomic_store_explicit(&ps->batches,
                          atomic_load_explicit(&ps->batches, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void mark_dirty(struct hy_shard *sh, unsigned dst)
{
    if (!sh->is_dirty[dst]) {
        sh->is_dirty[dst] = 1;
        sh->dirty[sh->ndirty++] = (uint16_t)dst;
    }
}

void hy__mesh_batch_full(struct hy_shard *sh, unsigned dst)
{
    struct hy_ring *r = sh->out[dst];
    uint32_t staged = hy__ring_staged(r);
    hy__ring_publish(r);
    count_batch(sh, dst, staged);
    /* No full barrier here (it would wait, once per batch, for every store
     * still buffered: the entry lines and head, each a transfer from the
     * other core): a plain load of the flag. A consumer that set it just
     * now, too late for this load, re-checked its rings after it set it
     * (and may have missed this publish, still in a store buffer): the
     * ring stays dirty, and the end of the turn's hy__mesh_flush makes
     * the full check (hy__wake_shard) for it. */
    struct hy_shard *t = hy__rt.shards[dst];
    /* with wake-ups put off, the ring is dirty: the flush owes it one */
    if (!sh->wake_defer_ns && atomic_load_explicit(&t->sleeping, memory_order_relaxed))
        hy__wake_shard(t);
}

/* After a push into the ring towards dst: flushed at the end of the turn,
 * or published now when a batch is full. */
static inline void pushed(struct hy_shard *sh, unsigned dst, struct hy_ring *r)
{
    mark_dirty(sh, dst);
    if (hy__ring_staged(r) >= PUBLISH_BATCH)
        hy__mesh_batch_full(sh, dst);
}

/* Counts one entry queued behind the full ring towards dst, and has the
 * sender yield. */
static void queued(struct hy_shard *sh, unsigned dst)
{
    /* Like BEAM's send penalty: a sender that outruns its receiver's shard
     * yields at its next runtime call, so the flood is paced by the consumer
     * instead of piling up in memory (send itself never blocks). */
    if (sh->current)
        sh->current->budget = 0;
    atomic_store_explicit(&sh->pair[dst].overflows,
                          atomic_load_explicit(&sh->pair[dst].overflows, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&sh->st.ring_overflows,
                          atomic_load_explicit(&sh->st.ring_overflows, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

struct hy__centry *hy__mesh_entry_queue(struct hy_shard *sh, unsigned dst)
{
    struct hy__overflow *o = &sh->ovf[dst];
    struct hy_ring *r = sh->out[dst];
    bool empty = ovf_empty(o);
    /* no entry array, or one smaller than the ring (many shards) whose
     * lines are all in use while the ring has room: a buffer goes now,
     * where an entry would wait */
    if (!r->ents || (empty && hy__ring_has_room(r)))
        return NULL;
    if (empty)
        sh->ovf_list[sh->novf++] = (uint16_t)dst;
    ovf_push(o, HY_RING_ENTRY);
    sh->entry_queued = 1;
    /* filled by the caller before anything else is pushed towards dst */
    return &o->tail->ce[o->wr - 1];
}

void hy__mesh_entry_commit_rest(struct hy_shard *sh, unsigned dst)
{
    if (sh->entry_queued) {
        sh->entry_queued = 0;
        queued(sh, dst);
        return;
    }
    /* staged and marked dirty inline; a full batch goes now, as pushed() */
    hy__mesh_batch_full(sh, dst);
}

void hy__mesh_push(struct hy_shard *sh, unsigned dst, uintptr_t entry)
{
    struct hy__overflow *o = &sh->ovf[dst];
    struct hy_ring *r = sh->out[dst];
    bool empty = ovf_empty(o);
    if (__builtin_expect(empty, 1) && hy__ring_push(r, entry)) {
        pushed(sh, dst, r);
        return;
    }
    if (empty)
        sh->ovf_list[sh->novf++] = (uint16_t)dst;
    ovf_push(o, entry);
    queued(sh, dst);
}

/* Owes dst the wake-up check that publishing to it calls for; the first
 * owed one starts the deferral's clock (the turn's, sh->now). */
static void owe_wake(struct hy_shard *sh, unsigned dst)
{
    if (sh->is_owed[dst])
        return;
    if (!sh->nowed)
        sh->owed_since = sh->now;
    sh->is_owed[dst] = 1;
    sh->owed[sh->nowed++] = (uint16_t)dst;
}

void hy__mesh_flush(struct hy_shard *sh)
{
    /* move what waits behind full rings first, in order */
    for (unsigned k = 0; k < sh->novf;) {
        unsigned dst = sh->ovf_list[k];
        struct hy__overflow *o = &sh->ovf[dst];
        struct hy_ring *r = sh->out[dst];
        bool emptied = ovf_drain_into(o, r);
        mark_dirty(sh, dst);
        if (emptied) {
            sh->ovf_list[k] = sh->ovf_list[--sh->novf];
        } else {
            k++;
        }
    }
    for (unsigned k = 0; k < sh->ndirty; k++) {
        unsigned dst = sh->dirty[k];
        sh->is_dirty[dst] = 0;
        struct hy_ring *r = sh->out[dst];
        uint32_t staged = hy__ring_staged(r);
        if (staged) {
            hy__ring_publish(r);
            count_batch(sh, dst, staged);
        }
        /* pushed to this turn: the full check, also when every entry went
         * in a batch published earlier (hy__mesh_batch_full's plain load
         * may have missed a consumer falling asleep); or, with wake-ups
         * put off, owed (hy__mesh_wake_owed makes the check) */
        /* an exchange under way: its answer may come soon, while dst
         * works (hy_config.xshard_spin_ns) */
        if (sh->xshard_spin_ns) {
            sh->xs_turn = 1;
            sh->xs_mask |= 1ull << (dst < 63 ? dst : 63);
        }
        if (sh->wake_defer_ns)
            owe_wake(sh, dst);
        else
            hy__wake_shard(hy__rt.shards[dst]);
    }
    sh->ndirty = 0;
}

void hy__mesh_wake_owed(struct hy_shard *sh)
{
    for (unsigned k = 0; k < sh->nowed; k++) {
        unsigned dst = sh->owed[k];
        sh->is_owed[dst] = 0;
        hy__wake_shard(hy__rt.shards[dst]);
    }
    sh->nowed = 0;
}

void hy__mesh_publish_staged(struct hy_shard *sh)
{
    for (unsigned k = 0; k < sh->ndirty; k++) {
        unsigned dst = sh->dirty[k];
        if (hy__ring_staged(sh->out[dst]))
            hy__mesh_batch_full(sh, dst);
    }
}

bool hy__mesh_idle(struct hy_shard *sh)
{
    return sh->novf == 0 && sh->ndirty == 0 && !sh->ret_pending;
}

void hy__inbox_push(struct hy_shard *target, struct hy_msg *m)
{
    struct hy_msg *head = atomic_load_explicit(&target->inbox, memory_order_relaxed);
    do {
        m->next = head;
        /* release: the message body is visible before the push */
    } while (!atomic_compare_exchange_weak_explicit(&target->inbox, &head, m,
                                                    memory_order_release, memory_order_relaxed));
    hy__wake_shard(target);
}

static unsigned drain_inbox(struct hy_shard *sh)
{
    if (!atomic_load_explicit(&sh->inbox, memory_order_relaxed))
        return 0;
    /* acquire: pairs with the producers' release CAS */
    struct hy_msg *list = atomic_exchange_explicit(&sh->inbox, NULL, memory_order_acquire);
    struct hy_msg *rev = NULL;
    unsigned n = 0;
    while (list) {
        struct hy_msg *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        struct hy_msg *next = rev->next;
        rev->next = NULL;
        hy__dispatch(sh, rev);
        rev = next;
        n++;
    }
    return n;
}

/* Dispatches one burst popped from an inbound ring, in ring order. The
 * buffers were last written by the producing shard's core: with prefetch,
 * their header lines are fetched for the whole burst first, so that the
 * misses overlap instead of being paid one message at a time. A run of
 * ordinary messages to the same receiver is linked onto its mailbox in one
 * step. */
static void drain_burst(struct hy_shard *sh, const uintptr_t *buf, unsigned got, bool prefetch)
{
    for (unsigned k = 0; prefetch && k < got; k++) {
        const char *b = (const char *)(buf[k] & ~(uintptr_t)3);
        /* the first line for writing (the mailbox link writes next in
         * it), the second for reading (size and payload are only read) */
        hy__prefetch_w(b);
        __builtin_prefetch(b + HY_CACHE_LINE, 0, 3);
    }
    for (unsigned k = 0; k < got;) {
        uintptr_t e = buf[k];
        if (e & 1u) {
            if (e & 2u)
                hy__ret_receive_bulk(sh, (struct hy_msg *)(e & ~(uintptr_t)3));
            else
                hy__ret_receive(sh, (struct hy_msg *)(e & ~(uintptr_t)1));
            k++;
            continue;
        }
        struct hy_msg *m = (struct hy_msg *)e;
        if (m->kind != HY_K_MSG) {
            hy__dispatch(sh, m);
            k++;
            continue;
        }
        unsigned end = k + 1;
        while (end < got && !(buf[end] & 1u)) {
            const struct hy_msg *x = (const struct hy_msg *)buf[end];
            if (x->kind != HY_K_MSG || x->to.hi != m->to.hi || x->to.lo != m->to.lo)
                break;
            end++;
        }
        hy__deliver_run(sh, &buf[k], end - k);
        k = end;
    }
}

/* Pops a burst from the ring from shard src: the entries carried whole in
 * the ring's entry array become buffers of this shard's pool, in their
 * place, before the positions are released to the producer. When no buffer
 * can be had the burst ends before that entry (it stays for the next
 * drain: nothing is lost or reordered). *nent: how many of the burst were
 * entries (their buffers are this shard's own, in its cache). */
static unsigned pop_burst(struct hy_shard *sh, unsigned src, struct hy_ring *r, uintptr_t *buf,
                          unsigned *nent)
{
    unsigned got = hy__ring_peek_burst(r, buf, DRAIN_BURST);
    unsigned ne = 0;
    for (unsigned k = 0; k < got; k++) {
        if (buf[k] == HY_RING_ENTRY) {
            __builtin_prefetch(hy__ring_entry_at(r, k), 0, 3);
            ne++;
        }
    }
    if (ne) {
        unsigned done = hy__msg_from_entries(sh, src, r, buf, got);
        if (__builtin_expect(done < got, 0)) {
            got = done;
            ne = 0; /* not all converted: have drain_burst prefetch them all */
        }
    }
    if (got)
        hy__ring_release(r, got);
    *nent = ne;
    return got;
}

unsigned hy__mesh_drain(struct hy_shard *sh)
{
    unsigned total = 0;
    unsigned n = hy__rt.nshards;
    uintptr_t buf[DRAIN_BURST];
    for (unsigned j = 0; j < n; j++) {
        struct hy_ring *r = sh->in[j];
        if (!r)
            continue;
        unsigned got, nent, done = 0;
        while (done < DRAIN_MAX_PER_RING && (got = hy__ring_avail(r, DRAIN_BURST)) != 0) {
            /* the burst's leading entries (all of it, in a stream of small
             * messages): converted and linked into runs in one pass */
            unsigned ne = 0;
            while (ne < got && hy__ring_slot_at(r, ne) == HY_RING_ENTRY) {
                __builtin_prefetch(hy__ring_entry_at(r, ne), 0, 3);
                ne++;
            }
            if (ne) {
                struct hy__mrun runs[DRAIN_BURST];
                unsigned nr;
                unsigned c = hy__msg_take_entries(sh, j, r, ne, runs, &nr);
                if (c)
                    hy__ring_release(r, c);
                for (unsigned i = 0; i < nr; i++)
                    hy__deliver_chain(sh, &runs[i]);
                done += c;
                if (__builtin_expect(c < ne, 0))
                    break; /* no buffer: the rest waits for the next drain */
                continue;
            }
            /* a pointer first: the burst as it comes, entries after it
             * included */
            got = pop_burst(sh, j, r, buf, &nent);
            if (!got)
                break;
            /* the buffers of entries are this shard's own, just written:
             * nothing to fetch when the burst was all entries */
            drain_burst(sh, buf, got, nent < got);
            done += got;
        }
        total += done;
    }
    total += drain_inbox(sh);
    return total;
}

void hy__mesh_push_signal(struct hy_shard *sh, unsigned dst)
{
    hy__mesh_flush(sh);
    /* release: pairs with the acquire exchange in hy__mesh_poll, so the
     * entries published above are seen by the drain that takes the flag */
    atomic_store_explicit(&hy__rt.shards[dst]->sig_in, 1, memory_order_release);
}

unsigned hy__mesh_poll(struct hy_shard *sh)
{
    /* take the flag before draining: a signal published after the drain
     * raises it again (acquire: pairs with hy__mesh_push_signal) */
    if (hy__mesh_sig_in(sh))
        atomic_exchange_explicit(&sh->sig_in, 0, memory_order_acquire);
    return hy__mesh_drain(sh);
}

bool hy__mesh_has_input(struct hy_shard *sh)
{
    for (unsigned j = 0; j < hy__rt.nshards; j++)
        if (sh->in[j] && !hy__ring_empty(sh->in[j]))
            return true;
    return atomic_load_explicit(&sh->inbox, memory_order_acquire) != NULL;
}
