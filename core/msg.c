/* Message buffers, routing, mailboxes and selective receive. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "crash_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"

#define MSG_HDR sizeof(struct hy_msg)
#define SLAB_BYTES (64 * 1024)
#define SMALL_CLASS_MAX 5 /* classes 0..5 (128 B .. 4 KiB) are carved from slabs */
#define BIG_CLASS (HY_MSG_CLASSES - 1)
#define RET_BATCH 32
#define RET_BLOCK_MAX 16 /* buffers a return block lists (one class-0 buffer holds it) */
#define POOL_KEEP_LARGE 64

/* aux of an ordinary message (HY_K_MSG, whose aux is otherwise 0): the
 * high byte is 1 + the index of its drop function (hy_msg_set_drop) in
 * drop_fns, 0 for none */
#define DROP_SHIFT 24
_Static_assert(HY_MSG_DROP_FNS <= 255, "a drop function's number fits aux's high byte");

static inline size_t class_bytes(unsigned cls) { return (size_t)128 << cls; }

static inline unsigned class_of(size_t len)
{
    size_t need = len + MSG_HDR;
    if (need <= 128)
        return 0;
    /* smallest c with 128 << c >= need */
    unsigned c = (unsigned)(64 - __builtin_clzll((unsigned long long)(need - 1))) - 7;
    return c < BIG_CLASS ? c : BIG_CLASS;
}

/* hy__charge's common case inlined: a reduction taken from a budget that
 * is not spent, no signal from another shard waiting. A pending exit signal
 * needs no test of its own: setting exit_pending on the running process
 * spends its budget (hy__kill), and a process the scheduler runs with one
 * pending starts with a spent budget (run_proc, sched.c). */
static inline __attribute__((always_inline)) void charge(struct hy_proc *p)
{
    /* two tests and branches (fewer instructions than or-ing the
     * conditions' values) */
    if (__builtin_expect(p->budget <= 1, 0) || __builtin_expect(hy__mesh_sig_in(p->shard), 0))
        hy__charge(p);
    else
        p->budget--;
}

/* charge() for the current process p of shard sh (p->shard), with sh at
 * hand. */
static inline __attribute__((always_inline)) void charge_on(struct hy_shard *sh,
                                                            struct hy_proc *p)
{
    if (__builtin_expect(p->budget <= 1, 0) || __builtin_expect(hy__mesh_sig_in(sh), 0))
        hy__charge(p);
    else
        p->budget--;
}

struct slab {
    struct slab *next;
};

static int refill_small(struct hy_shard *sh, unsigned cls)
{
    char *slab = hy__shard_mem_alloc(sh, SLAB_BYTES);
    if (!slab)
        return HY_ENOMEM;
    /* the first object of each slab holds the slab-list link */
    struct slab *sl = (struct slab *)slab;
    sl->next = sh->msg_slabs;
    sh->msg_slabs = sl;
    size_t sz = class_bytes(cls);
    size_t first = sz > 64 ? sz : 64;
    if (first < sizeof(struct slab))
        first = sizeof(struct slab);
    first = (first + sz - 1) / sz * sz;
    for (size_t off = first; off + sz <= SLAB_BYTES; off += sz) {
        struct hy_msg *m = (struct hy_msg *)(slab + off);
        m->cls = (uint8_t)cls;
        m->home = (uint16_t)sh->id;
        m->cap = (uint32_t)(sz - MSG_HDR);
        m->next = sh->pools[cls].free;
        sh->pools[cls].free = m;
        sh->pools[cls].nfree++;
    }
    return 0;
}

static int msg_alloc_body(struct hy_shard *sh, size_t len, struct hy_msg **out, size_t max)
{
    if (len > max)
        return HY_EMSGSIZE;
    unsigned cls = class_of(len);
    struct hy_msg *m;
    if (cls == BIG_CLASS || class_bytes(cls) < len + MSG_HDR) {
        m = malloc(MSG_HDR + len);
        if (!m)
            return HY_ENOMEM;
        m->cls = BIG_CLASS;
        m->cap = (uint32_t)len;
    } else {
        struct hy__msg_pool *pool = &sh->pools[cls];
        if (!pool->free) {
            if (cls <= SMALL_CLASS_MAX) {
                if (refill_small(sh, cls))
                    return HY_ENOMEM;
            } else {
                struct hy_msg *nm = hy__shard_mem_alloc(sh, class_bytes(cls));
                if (!nm)
                    return HY_ENOMEM;
                nm->cls = (uint8_t)cls;
                nm->cap = (uint32_t)(class_bytes(cls) - MSG_HDR);
                nm->next = NULL;
                pool->free = nm;
                pool->nfree = 1;
            }
        }
        m = pool->free;
        pool->free = m->next;
        pool->nfree--;
    }
    m->next = NULL;
    m->home = (uint16_t)sh->id;
    m->size = (uint32_t)len;
    m->kind = HY_K_MSG;
    m->aux = 0;
    m->ref = HY_REF_NONE;
    struct hy_proc *cur = sh->current;
    m->from = cur ? cur->pid : HY_PID_NONE;
    hy__stat_add(&sh->st.buffers_out, 1);
    *out = m;
    return 0;
}

/* Frees a buffer whose home is this shard. */
static void free_home(struct hy_shard *sh, struct hy_msg *m)
{
    hy__stat_add(&sh->st.buffers_out, (uint64_t)-1);
    unsigned cls = m->cls;
    if (cls == BIG_CLASS) {
        free(m);
        return;
    }
    struct hy__msg_pool *pool = &sh->pools[cls];
    if (cls > SMALL_CLASS_MAX && pool->nfree >= POOL_KEEP_LARGE) {
        hy__shard_mem_free(sh, m, class_bytes(cls));
        return;
    }
    m->next = pool->free;
    pool->free = m;
    pool->nfree++;
}

static void ret_push(struct hy_shard *sh, unsigned home, struct hy__ret_list *rl);

/* Puts a buffer of another shard (home) on the list going back there. */
static inline void ret_add(struct hy_shard *sh, unsigned home, struct hy_msg *m)
{
    struct hy__ret_list *rl = &sh->ret[home];
    unsigned cls = m->cls;
    m->next = rl->head;
    if (!rl->head) {
        rl->tail = m;
        rl->cls = cls;
    } else if (rl->cls != cls) {
        rl->cls = UINT32_MAX;
    }
    rl->head = m;
    if (++rl->n >= (rl->cls <= SMALL_CLASS_MAX ? RET_BLOCK_MAX : RET_BATCH))
        ret_push(sh, home, rl);
    else if (rl->n == 1)
        sh->ret_pending = 1;
}

static void msg_free_body(struct hy_shard *sh, struct hy_msg *m)
{
    unsigned home = m->home;
    if (home == sh->id) {
        free_home(sh, m);
    } else if (home == HY_HOME_MALLOC) {
        free(m);
    } else {
        ret_add(sh, home, m);
    }
}

/* What a return list of slab buffers of one class carries, written over its
 * first buffer (free: every buffer on the list is): the others' addresses
 * in an array. The home shard then reaches every buffer at once, instead of
 * following next links through lines last written by this shard's core, one
 * dependent miss per buffer (the allocator paid that chase per message). A
 * class-0 buffer (128 bytes) holds the count and 15 addresses. */
struct ret_block {
    uint32_t n;   /* buffers on the list, the first included */
    uint32_t cls; /* their slab class */
    struct hy_msg *v[RET_BLOCK_MAX - 1];
};
_Static_assert(sizeof(struct ret_block) <= 128, "a return block fits the smallest class");

/* Sends rl's buffers home in one ring entry: bit 0 marks a return list,
 * bit 1 a list of one slab class written as a ret_block over its head. */
static void ret_push(struct hy_shard *sh, unsigned home, struct hy__ret_list *rl)
{
    struct hy_msg *head = rl->head;
    uintptr_t e = (uintptr_t)head | 1u;
    if (rl->cls <= SMALL_CLASS_MAX && rl->n <= RET_BLOCK_MAX) {
        struct ret_block *b = (struct ret_block *)(void *)head;
        uint32_t n = rl->n, cls = rl->cls;
        struct hy_msg *m = head->next; /* read before the block overwrites it */
        for (uint32_t i = 0; i + 1 < n; i++) {
            struct hy_msg *next = m->next;
            b->v[i] = m;
            m = next;
        }
        b->n = n;
        b->cls = cls;
        e |= 2u;
    }
    hy__mesh_push(sh, home, e);
    rl->head = NULL;
    rl->tail = NULL;
    rl->n = 0;
}

void hy__ret_flush(struct hy_shard *sh)
{
    if (!sh->ret_pending)
        return;
    sh->ret_pending = 0;
    for (unsigned j = 0; j < hy__rt.nshards; j++) {
        struct hy__ret_list *rl = &sh->ret[j];
        if (rl->head)
            ret_push(sh, j, rl);
    }
}

/* A return list arrived home: every buffer on it is ours. */
void hy__ret_receive(struct hy_shard *sh, struct hy_msg *list);
void hy__ret_receive(struct hy_shard *sh, struct hy_msg *list)
{
    while (list) {
        struct hy_msg *n = list->next;
        free_home(sh, list);
        list = n;
    }
}

/* A return block arrived home (ret_push set bit 1): the buffers are fetched
 * for writing all at once (independent misses that overlap), linked in
 * array order onto their pool, and the first one's header is put back. */
void hy__ret_receive_bulk(struct hy_shard *sh, struct hy_msg *head);
void hy__ret_receive_bulk(struct hy_shard *sh, struct hy_msg *head)
{
    const struct ret_block *b = (const struct ret_block *)(const void *)head;
    uint32_t n = b->n, cls = b->cls;
    struct hy_msg *v[RET_BLOCK_MAX - 1];
    /* the head's first line is here (the block was just read from it); its
     * second, where the next send writes size, cap and the payload, is not */
    hy__prefetch_w((const char *)head + 64);
    for (uint32_t i = 0; i + 1 < n; i++) {
        v[i] = b->v[i];
        hy__prefetch_w(v[i]);
        hy__prefetch_w((const char *)v[i] + 64);
    }
    struct hy__msg_pool *pool = &sh->pools[cls];
    struct hy_msg *next = pool->free;
    for (uint32_t i = n - 1; i-- > 0;) {
        v[i]->next = next;
        next = v[i];
    }
    head->cls = (uint8_t)cls;
    head->home = (uint16_t)sh->id;
    head->cap = (uint32_t)(class_bytes(cls) - MSG_HDR);
    head->next = next;
    pool->free = head;
    pool->nfree += n;
    hy__stat_add(&sh->st.buffers_out, -(uint64_t)n);
}

void hy__msg_pools_fini(struct hy_shard *sh)
{
    for (unsigned c = SMALL_CLASS_MAX + 1; c < BIG_CLASS; c++) {
        struct hy_msg *m = sh->pools[c].free;
        while (m) {
            struct hy_msg *n = m->next;
            hy__shard_mem_free(sh, m, class_bytes(c));
            m = n;
        }
        sh->pools[c].free = NULL;
    }
    struct slab *sl = sh->msg_slabs;
    while (sl) {
        struct slab *n = sl->next;
        hy__shard_mem_free(sh, sl, SLAB_BYTES);
        sl = n;
    }
    sh->msg_slabs = NULL;
    for (unsigned c = 0; c <= SMALL_CLASS_MAX; c++)
        sh->pools[c].free = NULL;
}

int hy__msg_alloc(struct hy_shard *sh, size_t len, struct hy_msg **out)
{
    HY_RT_ENTER(sh);
    int rc = msg_alloc_body(sh, len, out, hy__rt.cfg.max_message_size);
    HY_RT_LEAVE();
    return rc;
}

int hy__msg_alloc_rt(struct hy_shard *sh, size_t len, struct hy_msg **out)
{
    HY_RT_ENTER(sh);
    int rc = msg_alloc_body(sh, len, out, hy__rt.cfg.max_message_size + HY_MSG_RT_HEADROOM);
    HY_RT_LEAVE();
    return rc;
}

void hy__msg_free_local(struct hy_shard *sh, struct hy_msg *m)
{
    HY_RT_ENTER(sh);
    msg_free_body(sh, m);
    HY_RT_LEAVE();
}

/* ---- public buffer API ----------------------------------------------- */

int hy_msg_alloc(size_t len, struct hy_msg **out)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (!out)
        return HY_EINVAL;
    return hy__msg_alloc(sh, len, out);
}

/* What hy_msg_free does with a buffer that is not a class-0 one of the
 * calling shard's own (another shard's, a bigger one, a foreign one), inside
 * the runtime bracket (it may call free()). Out of line: the common case
 * then needs no saved registers. */
static __attribute__((noinline)) void msg_free_other(struct hy_shard *sh, struct hy_msg *m,
                                                     unsigned home)
{
    HY_RT_ENTER(sh);
    if (home < hy__rt.nshards && home != sh->id)
        ret_add(sh, home, m); /* another shard's: back home with the next batch */
    else
        msg_free_body(sh, m);
    HY_RT_LEAVE();
}

/* A buffer's home, kind and class read as one 32-bit word (they are
 * adjacent): masked, it equals HOME_CLS0(id) exactly for a class-0 buffer
 * of shard id, the one every fast send takes, so that hy_msg_free tells its
 * common case with one load and compare. */
_Static_assert(offsetof(struct hy_msg, kind) == offsetof(struct hy_msg, home) + 2 &&
                   offsetof(struct hy_msg, cls) == offsetof(struct hy_msg, home) + 3,
               "home, kind and cls are one 32-bit word");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOME_CLS_MASK 0xff00ffffu /* cls in the high byte, home in the low half */
#define HOME_CLS0(id) ((uint32_t)(id))
#else
#define HOME_CLS_MASK 0xffff00ffu
#define HOME_CLS0(id) ((uint32_t)(id) << 16)
#endif

static inline uint32_t home_cls_word(const struct hy_msg *m)
{
    uint32_t w;
    memcpy(&w, &m->home, sizeof(w));
    return w & HOME_CLS_MASK;
}

void hy_msg_free(struct hy_msg *m)
{
    struct hy_shard *sh = hy__shard();
    if (__builtin_expect(!m || !sh, 0)) {
        /* Off a shard only foreign-inbox buffers may be freed directly. */
        if (m && m->home == HY_HOME_MALLOC)
            free(m);
        return;
    }
    /* a class-0 buffer of this shard goes straight back on its pool. No
     * runtime bracket (in_rt) on this path: a wild pointer faults here, in
     * the runtime's code, which crash.c tells by the faulting address. */
    if (__builtin_expect(home_cls_word(m) != HOME_CLS0(sh->id), 0)) {
        msg_free_other(sh, m, m->home);
        return;
    }
    struct hy__msg_pool *pool = &sh->pools[0];
    hy__stat_add(&sh->st.buffers_out, (uint64_t)-1);
    m->next = pool->free;
    pool->free = m; /* nfree: not kept for a small class */
}

/* ---- routing ----------------------------------------------------------- */

/* Set by one shard (net/), read by all: ctx is stored before fn (release)
 * and loaded after it (acquire), so a shard that sees a hook sees its ctx. */
static _Atomic(hy_remote_send_fn) remote_send_fn;
static void *_Atomic remote_send_ctx;

void hy_hook_set_remote_send(hy_remote_send_fn fn, void *ctx)
{
    atomic_store_explicit(&remote_send_ctx, ctx, memory_order_release);
    atomic_store_explicit(&remote_send_fn, fn, memory_order_release);
}

/* The drop functions in use, each once, never removed: an entry is written
 * before the count that covers it (release), so a reader that loads the
 * count (acquire) sees the entries below it. Appended under the lock. */
static hy_msg_drop_fn drop_fns[HY_MSG_DROP_FNS];
static _Atomic unsigned ndrop_fns;
static pthread_mutex_t drop_fns_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1 + fn's index in drop_fns (added if new); 0 when the table is full */
static unsigned drop_fn_number(hy_msg_drop_fn fn)
{
    unsigned n = atomic_load_explicit(&ndrop_fns, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (drop_fns[i] == fn)
            return i + 1;
    pthread_mutex_lock(&drop_fns_lock);
    n = atomic_load_explicit(&ndrop_fns, memory_order_relaxed);
    unsigned i = 0;
    while (i < n && drop_fns[i] != fn)
        i++;
    if (i == n && n < HY_MSG_DROP_FNS) {
        drop_fns[n] = fn;
        atomic_store_explicit(&ndrop_fns, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&drop_fns_lock);
    return i < HY_MSG_DROP_FNS ? i + 1 : 0;
}

int hy_msg_set_drop(struct hy_msg *m, hy_msg_drop_fn fn)
{
    if (!m)
        return HY_EINVAL;
    unsigned k = 0;
    if (fn && (k = drop_fn_number(fn)) == 0) {
        hy_log(HY_LOG_ERROR, "hy_msg_set_drop: fn: %d drop functions in use already",
               HY_MSG_DROP_FNS);
        return HY_ENOMEM;
    }
    m->aux = (m->aux & ((1u << DROP_SHIFT) - 1)) | (k << DROP_SHIFT);
    return 0;
}

/* m is dropped undelivered: its drop function releases what its payload
 * holds (once: the number goes with the call). Cold: only messages given
 * one by hy_msg_set_drop come here. */
static __attribute__((noinline, cold)) void run_drop_fn(struct hy_msg *m)
{
    unsigned k = m->aux >> DROP_SHIFT;
    m->aux &= (1u << DROP_SHIFT) - 1;
    hy_msg_drop_fn fn = drop_fns[k - 1]; /* k <= ndrop_fns: read after its set */
    fn(m);
}

static inline void drop_fn(struct hy_msg *m)
{
    if (__builtin_expect(m->kind == HY_K_MSG && (m->aux >> DROP_SHIFT) != 0, 0))
        run_drop_fn(m);
}

/* Frees m, a message no process received. */
static inline void msg_drop(struct hy_shard *sh, struct hy_msg *m)
{
    drop_fn(m);
    hy__msg_free_local(sh, m);
}

static inline void drop_dead(struct hy_shard *sh, struct hy_msg *m)
{
    hy__stat_add(&sh->st.dropped_dead, 1);
    msg_drop(sh, m);
}

static __attribute__((noinline)) void route_cross(struct hy_shard *sh, unsigned dst,
                                                  struct hy_msg *m)
{
    unsigned kind = m->kind;
    if (kind == HY_K_MSG)
        hy__stat_add(&sh->st.msgs_sent_cross, 1);
    hy__mesh_push(sh, dst, (uintptr_t)m);
    if (__builtin_expect(kind == HY_K_EXIT, 0))
        hy__mesh_push_signal(sh, dst); /* acts at the target's next runtime call */
}

static void route_body(struct hy_shard *sh, struct hy_msg *m)
{
    hy_pid to = m->to;
    if (hy_pid_node(to) != hy__rt.node_id) {
        drop_fn(m); /* its payload goes as bytes: what it holds stays here */
        hy_remote_send_fn fn = atomic_load_explicit(&remote_send_fn, memory_order_acquire);
        if (fn && fn(m, atomic_load_explicit(&remote_send_ctx, memory_order_acquire)) == 0)
            return;
        if (!fn)
            drop_dead(sh, m);
        else
            hy__stat_add(&sh->st.dropped_dead, 1);
        return;
    }
    unsigned dst = hy_pid_shard(to);
    if (hy_pid_creation(to) != hy__rt.creation || dst >= hy__rt.nshards) {
        drop_dead(sh, m);
        return;
    }
    if (dst == sh->id) {
        if (m->kind == HY_K_MSG)
            hy__stat_add(&sh->st.msgs_sent_local, 1);
        hy__dispatch(sh, m);
        return;
    }
    route_cross(sh, dst, m);
}

void hy__route(struct hy_shard *sh, struct hy_msg *m)
{
    HY_RT_ENTER(sh);
    HY_FAULT_POINT(HY_FP_MSG);
    route_body(sh, m);
    HY_RT_LEAVE();
}

static hy__kind_fn kind_table[HY_K_MAX + 1];

void hy__kind_register(unsigned kind, hy__kind_fn fn)
{
    if (kind <= HY_K_MAX)
        kind_table[kind] = fn;
}

void hy__dispatch(struct hy_shard *sh, struct hy_msg *m)
{
    if (__builtin_expect(m->kind == HY_K_MSG, 1)) {
        hy__deliver(sh, m);
        return;
    }
    hy__kind_fn fn = kind_table[m->kind];
    if (fn)
        fn(sh, m);
    else
        hy__msg_free_local(sh, m);
}

/* The common case of hy__mailbox_append, inlined into the delivery paths:
 * room in the mailbox; false when the general function must decide. */
static inline __attribute__((always_inline)) bool append_fast(struct hy_shard *sh,
                                                              struct hy_proc *p,
                                                              struct hy_msg *m)
{
    if (__builtin_expect(p->mb_max && p->mb_len >= p->mb_max, 0))
        return false;
    m->next = NULL;
    *p->mb_tailp = m;
    p->mb_tailp = &m->next;
    p->mb_len++;
    if (p->state == HY_P_WAITING && p->wait_msg)
        hy__sched_make_ready_inline(sh, p);
    return true;
}

void hy__mailbox_append(struct hy_shard *sh, struct hy_proc *p, struct hy_msg *m)
{
    /* The reply carrying the receiver's latest ref is exempt: it may be
     * blocked in the call that waits for it (spawn, timer, blocking call). */
    if (p->mb_max && p->mb_len >= p->mb_max &&
        !(hy_ref_eq(m->ref, p->mark_ref) && !hy_ref_is_none(m->ref))) {
        if (p->mailbox_policy == HY_MAILBOX_KILL && !p->exit_pending) {
            p->exit_pending = 1;
            p->exit_reason_pending = hy_reason_user(0, "mailbox_overflow");
            if (p == sh->current)
                p->budget = 0; /* its next charge acts on it (hy__kill's note) */
            if (p->state == HY_P_WAITING)
                hy__sched_make_ready(sh, p);
        }
        hy__stat_add(&sh->st.dropped_full, 1);
        msg_drop(sh, m);
        return;
    }
    m->next = NULL;
    *p->mb_tailp = m;
    p->mb_tailp = &m->next;
    p->mb_len++;
    if (p->state == HY_P_WAITING && p->wait_msg)
        hy__sched_make_ready(sh, p);
}

/* The process of sh that a message to `to` goes to: NULL when the pid's
 * slot is free or reused, or the process is exiting (the message is then
 * dropped as to a dead pid). */
static inline __attribute__((always_inline)) struct hy_proc *live_receiver(struct hy_shard *sh,
                                                                          hy_pid to)
{
    struct hy_proc *p = hy__proc_lookup_inl(sh, to);
    return p && p->state < HY_P_EXITING ? p : NULL;
}

/* The process in the slot a pid of this shard names (hi word already
 * checked), whatever its state: NULL when the slot is free or reused. */
static inline __attribute__((always_inline)) struct hy_proc *local_slot_proc(struct hy_shard *sh,
                                                                            hy_pid to)
{
    uint32_t idx = hy_pid_slot(to);
    if (__builtin_expect(idx >= sh->nslots, 0))
        return NULL;
    struct hy__slot *s = &sh->slot_chunks[idx >> HY_SLOT_CHUNK_BITS][idx & (HY_SLOT_CHUNK - 1)];
    struct hy_proc *p = s->proc;
    return s->gen == hy_pid_gen(to) ? p : NULL;
}

static inline __attribute__((always_inline)) void deliver_body(struct hy_shard *sh,
                                                               struct hy_msg *m)
{
    hy_pid to = m->to;
    struct hy_proc *p = live_receiver(sh, to);
    if (!p) {
        drop_dead(sh, m);
        return;
    }
    if (!append_fast(sh, p, m))
        hy__mailbox_append(sh, p, m);
}

void hy__deliver(struct hy_shard *sh, struct hy_msg *m)
{
    deliver_body(sh, m);
}

/* Delivers a run of n ordinary messages (kind HY_K_MSG, all to the same
 * pid, in order; ms holds their ring entries) drained from one inbound ring: the
 * receiver is looked up once and the run linked onto its mailbox in one
 * step, then made ready once. A receiver with a mailbox limit takes them
 * one at a time (each is checked against the limit). */
void hy__deliver_run(struct hy_shard *sh, const uintptr_t *ms, unsigned n);
void hy__deliver_run(struct hy_shard *sh, const uintptr_t *ms, unsigned n)
{
    hy_pid to = ((const struct hy_msg *)ms[0])->to;
    struct hy_proc *p = live_receiver(sh, to);
    if (!p) {
        for (unsigned i = 0; i < n; i++)
            drop_dead(sh, (struct hy_msg *)ms[i]);
        return;
    }
    if (__builtin_expect(p->mb_max != 0, 0)) {
        for (unsigned i = 0; i < n; i++) {
            struct hy_msg *m = (struct hy_msg *)ms[i];
            if (!append_fast(sh, p, m))
                hy__mailbox_append(sh, p, m);
        }
        return;
    }
    struct hy_msg **tailp = p->mb_tailp;
    for (unsigned i = 0; i < n; i++) {
        struct hy_msg *m = (struct hy_msg *)ms[i];
        *tailp = m;
        tailp = &m->next;
    }
    *tailp = NULL;
    p->mb_tailp = tailp;
    p->mb_len += n;
    if (p->state == HY_P_WAITING && p->wait_msg)
        hy__sched_make_ready(sh, p);
}

void hy__mailbox_drop_all(struct hy_shard *sh, struct hy_proc *p)
{
    if (p->handed) {
        /* the send counted it received (local_handed): it never was */
        hy__stat_add(&sh->st.msgs_received, (uint64_t)-1);
        msg_drop(sh, p->handed);
        p->handed = NULL;
    }
    struct hy_msg *m = p->mb_head;
    while (m) {
        struct hy_msg *n = m->next;
        msg_drop(sh, m);
        m = n;
    }
    p->mb_head = NULL;
    p->mb_tailp = &p->mb_head;
    p->mb_len = 0;
    p->mark = NULL;
}

/* ---- send -------------------------------------------------------------- */

hy_dist_busy_fn hy__dist_busy_hook;

#define DIST_BUSY_WAIT_NS 100000ull /* re-checks of a busy channel, 100 us apart */

/* A process that sent to another node waits while the channel is over its
 * limit (what it sent is queued already: nothing is dropped or reordered).
 * Only a process in its own code waits; inside the runtime (in_rt), in a
 * shard callback or a timer, nobody does. */
static void dist_wait(struct hy_shard *sh, struct hy_proc *p, hy_pid to)
{
    hy_dist_busy_fn busy = __atomic_load_n(&hy__dist_busy_hook, __ATOMIC_ACQUIRE);
    if (__builtin_expect(!busy || hy_pid_node(to) == hy__rt.node_id, 1) || !p || p->in_rt ||
        sh->current != p)
        return;
    while (busy(sh, to)) {
        if (hy_sleep_ns(DIST_BUSY_WAIT_NS) != 0)
            return;
        busy = __atomic_load_n(&hy__dist_busy_hook, __ATOMIC_ACQUIRE);
        if (!busy)
            return;
    }
}

static int send_common(hy_pid to, uint64_t tag, hy_ref ref, const void *data, size_t len,
                       bool sys)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (((tag & HY_TAG_SYSTEM) && !sys) || (!data && len))
        return HY_EINVAL;
    struct hy_msg *m;
    int rc = hy__msg_alloc(sh, len, &m);
    if (rc)
        return rc;
    if (len)
        memcpy(m->data, data, len);
    m->tag = tag;
    m->ref = ref;
    m->to = to;
    hy__route(sh, m);
    struct hy_proc *p = sh->current;
    if (p) {
        charge(p);
        dist_wait(sh, p, to);
    }
    return 0;
}

#define FAST_LEN_MAX HY__FAST_LEN_MAX /* payloads that fit pool class 0 */

/* Copies len (1 .. FAST_LEN_MAX) bytes with a few fixed-size moves instead
 * of a call to memcpy; the source is never read past len (a destination of
 * class 0 has room for FAST_LEN_MAX). */
static inline __attribute__((always_inline)) void copy_small_nz(unsigned char *d,
                                                                const unsigned char *s,
                                                                size_t len)
{
    _Static_assert(FAST_LEN_MAX <= 48, "copy_small copies at most 48 bytes");
    if (len >= 16) {
        __builtin_memcpy(d, s, 16);
        if (len > 32)
            __builtin_memcpy(d + 16, s + 16, 16);
        __builtin_memcpy(d + len - 16, s + len - 16, 16);
    } else if (len >= 8) {
        __builtin_memcpy(d, s, 8);
        __builtin_memcpy(d + len - 8, s + len - 8, 8);
    } else if (len >= 4) {
        __builtin_memcpy(d, s, 4);
        __builtin_memcpy(d + len - 4, s + len - 4, 4);
    } else {
        /* 1 to 3 bytes: one temporary register at a time (a third one
         * here made the inline send save a callee-saved register) */
        d[0] = s[0];
        if (len > 1)
            __builtin_memcpy(d + len - 2, s + len - 2, 2);
    }
}

/* copy_small_nz for len 0 .. FAST_LEN_MAX. */
static inline __attribute__((always_inline)) void copy_small(unsigned char *d,
                                                             const unsigned char *s, size_t len)
{
    if (len)
        copy_small_nz(d, s, len);
}

/* The allocator inlined into the fast sends: a buffer of the smallest class
 * straight off the shard's pool, filled (a copy of data, the header, the
 * current process as sender). NULL (nothing taken) when the destination is
 * not for the caller's path (dest_ok false), the pool is empty or the
 * payload does not fit: the general path decides. */
static inline __attribute__((always_inline)) struct hy_msg *
small_msg_body(struct hy_shard *sh, struct hy_proc *cur, bool dest_ok, unsigned kind,
               uint64_t tag, hy_ref ref, hy_pid to, const void *data, size_t len, bool count_out)
{
    struct hy__msg_pool *pool = &sh->pools[0];
    struct hy_msg *m = pool->free;
    /* small_max: FAST_LEN_MAX or max_message_size, the smaller */
    if (__builtin_expect(!dest_ok || !m || len > sh->small_max, 0))
        return NULL;
    /* the payload first, while the buffer is still on the pool (a fault
     * here is the sender's bytes'); an empty one costs one test and
     * branch, the NULL data test only a payload's */
    if (len) {
        if (__builtin_expect(!data, 0))
            return NULL;
        copy_small_nz(m->data, data, len);
    }
    pool->free = m->next; /* nfree: not kept for a small class */
    if (count_out)
        hy__stat_add(&sh->st.buffers_out, 1);
    m->next = NULL;
    m->size = (uint32_t)len;
    m->kind = (uint8_t)kind;
    m->aux = 0;
    m->ref = ref;
    m->from = cur ? cur->pid : HY_PID_NONE;
    m->tag = tag;
    m->to = to;
    return m;
}

static inline __attribute__((always_inline)) struct hy_msg *
small_msg(struct hy_shard *sh, bool dest_ok, unsigned kind, uint64_t tag, hy_ref ref, hy_pid to,
          const void *data, size_t len)
{
    return small_msg_body(sh, sh->current, dest_ok, kind, tag, ref, to, data, len, true);
}

/* hy__sched_make_ready_inline for p WAITING: not on the run queue (a
 * process is queued only once ready, and leaves the queue to run; only a
 * running process makes itself WAITING) and not new. */
static inline __attribute__((always_inline)) void ready_waiting(struct hy_shard *sh,
                                                                struct hy_proc *p)
{
    p->in_runq = 1;
    p->state = HY_P_READY;
    hy__runq_append(sh, p);
}

/* The same-shard fast path of the sends: a small message to a process of
 * the sender's own shard. The buffer comes from small_msg and goes straight
 * to the receiver (an ordinary message into its mailbox, other kinds to
 * their handler); a blocked receiver is made ready and, at the sender's next
 * switch-out, handed the CPU directly. Ordering is unchanged: a same-shard
 * message always reached its receiver within the send. Anything else (no
 * buffer in the pool, another shard or node, a bigger payload) returns
 * false for the general path. Does not charge the sender. */
static inline __attribute__((always_inline)) bool send_fast_body(struct hy_shard *sh, hy_pid to,
                                                                 unsigned kind, uint64_t tag,
                                                                 hy_ref ref, const void *data,
                                                                 size_t len)
{
    struct hy_msg *m = small_msg(sh, to.hi == sh->pid_hi, kind, tag, ref, to, data, len);
    if (!m)
        return false;
    struct hy_proc *cur = sh->current;
    if (cur)
        cur->in_rt++;
    if (kind == HY_K_MSG) {
        hy__stat_add(&sh->st.msgs_sent_local, 1);
        deliver_body(sh, m);
    } else {
        hy__dispatch(sh, m);
    }
    if (cur)
        cur->in_rt--;
    return true;
}

bool hy__send_fast(struct hy_shard *sh, hy_pid to, unsigned kind, uint64_t tag, hy_ref ref,
                   const void *data, size_t len)
{
    return send_fast_body(sh, to, kind, tag, ref, data, len);
}

/* The cross-shard fast path of the user sends: a small ordinary message to
 * a process of another shard of this node. The buffer comes from small_msg;
 * it then goes into the ring towards the receiver's shard (the one FIFO per
 * shard pair, as hy__route would). False (nothing done) when the general
 * path must decide. Does not charge the sender. */
static inline bool send_cross_fast(struct hy_shard *sh, hy_pid to, uint64_t tag, hy_ref ref,
                                   const void *data, size_t len)
{
    uint64_t here = sh->pid_hi & ~(uint64_t)0xffff; /* node and creation */
    unsigned dst = hy_pid_shard(to);
    bool dest_ok =
        (to.hi & ~(uint64_t)0xffff) == here && dst < hy__rt.nshards && dst != sh->id;
    if (__builtin_expect(dest_ok && len <= HY_RING_ENTRY_DATA && (ref.hi | ref.lo) == 0 &&
                             len <= hy__rt.cfg.max_message_size && (data || !len),
                         1)) {
        /* the whole message in one line of the ring's entry array: no
         * buffer of this shard's pool crosses to the other core. The
         * sender's bytes are read first (a fault there is the sender's),
         * so that nothing can stop between the reserve and the commit (an
         * entry reserved in an overflow queue is queued already). */
        unsigned char bytes[HY_RING_ENTRY_DATA];
        copy_small(bytes, data, len);
        struct hy_proc *cur = sh->current;
        if (cur)
            cur->in_rt++;
        HY_FAULT_POINT(HY_FP_MSG);
        struct hy__centry *e = hy__mesh_entry_reserve(sh, dst);
        if (__builtin_expect(e != NULL, 1)) {
            copy_small(e->data, bytes, len);
            e->tag = tag;
            e->to_lo = to.lo;
            e->size = (uint32_t)len;
            e->from_lo = cur ? cur->pid.lo : 0;
            e->flags = cur ? 0 : HY__CE_NO_SENDER;
            /* the line a later send writes: its last reader was the other
             * shard's drain; fetched for writing while this one is staged */
            hy__prefetch_w(e + 2);
            hy__stat_add(&sh->st.msgs_sent_cross, 1);
            hy__mesh_entry_commit(sh, dst);
            if (cur)
                cur->in_rt--;
            return true;
        }
        if (cur)
            cur->in_rt--;
    }
    struct hy_msg *m = small_msg(sh, dest_ok, HY_K_MSG, tag, ref, to, data, len);
    if (!m)
        return false;
    /* The buffer the next send takes: fetched for writing now, so that its
     * lines, which the other shard's core may still hold from the last
     * receive of it, move while this message is staged and not when the
     * next send fills it (prefetching NULL, an empty pool, is harmless). */
    uintptr_t nx = (uintptr_t)sh->pools[0].free;
    hy__prefetch_w((const void *)nx);
    hy__prefetch_w((const void *)(nx + 64));
    struct hy_proc *cur = sh->current;
    if (cur)
        cur->in_rt++;
    HY_FAULT_POINT(HY_FP_MSG);
    hy__stat_add(&sh->st.msgs_sent_cross, 1);
    hy__mesh_push(sh, dst, (uintptr_t)m);
    if (cur)
        cur->in_rt--;
    return true;
}

unsigned hy__msg_from_entries(struct hy_shard *sh, unsigned src, const struct hy_ring *r,
                              uintptr_t *buf, unsigned n)
{
    struct hy__msg_pool *pool = &sh->pools[0];
    uint64_t node = sh->pid_hi & ~(uint64_t)0xffff; /* node and creation */
    uint64_t from_hi = node | src;
    struct hy_msg *fl = pool->free;
    uint32_t taken = 0;
    unsigned k;
    _Static_assert(HY_RING_ENTRY_DATA <= FAST_LEN_MAX, "an entry's payload fits class 0");
    for (k = 0; k < n; k++) {
        if (buf[k] != HY_RING_ENTRY)
            continue;
        const struct hy__centry *e = hy__ring_entry_at(r, k);
        struct hy_msg *m = fl;
        if (__builtin_expect(m != NULL, 1)) {
            fl = m->next;
            taken++;
        } else {
            /* the pool is empty: the general allocator (which counts what
             * it hands out) refills it from a new slab, or fails */
            pool->free = NULL;
            pool->nfree -= taken;
            hy__stat_add(&sh->st.buffers_out, taken);
            taken = 0;
            if (hy__msg_alloc(sh, e->size, &m) != 0)
                return k; /* this entry and what follows wait in the ring */
            fl = pool->free;
        }
        memcpy(m->data, e->data, HY_RING_ENTRY_DATA);
        m->next = NULL;
        m->tag = e->tag;
        m->from.hi = (e->flags & HY__CE_NO_SENDER) ? 0 : from_hi;
        m->from.lo = e->from_lo;
        m->to.hi = sh->pid_hi;
        m->to.lo = e->to_lo;
        m->ref = HY_REF_NONE;
        m->size = e->size;
        m->kind = HY_K_MSG;
        m->aux = 0;
        buf[k] = (uintptr_t)m;
    }
    pool->free = fl;
    pool->nfree -= taken;
    hy__stat_add(&sh->st.buffers_out, taken);
    return k;
}

/* hy__msg_take_entries's refill: the pool ran dry after `taken` buffers
 * were taken off it; the general allocator (which counts what it hands
 * out) refills it from a new slab, or fails (NULL). */
static __attribute__((noinline)) struct hy_msg *take_refill(struct hy_shard *sh, uint32_t taken,
                                                            uint32_t size)
{
    struct hy__msg_pool *pool = &sh->pools[0];
    struct hy_msg *m;
    pool->free = NULL;
    pool->nfree -= taken;
    hy__stat_add(&sh->st.buffers_out, taken);
    return hy__msg_alloc(sh, size, &m) == 0 ? m : NULL;
}

unsigned hy__msg_take_entries(struct hy_shard *sh, unsigned src, const struct hy_ring *r,
                              unsigned n, struct hy__mrun *runs, unsigned *nruns)
{
    struct hy__msg_pool *pool = &sh->pools[0];
    uint64_t to_hi = sh->pid_hi;
    uint64_t from_hi = (to_hi & ~(uint64_t)0xffff) | src; /* node, creation, shard */
    /* the ring's consumer fields, read once: the stores below are to
     * buffers, which the compiler cannot tell from the ring */
    const struct hy__centry *cents = r->cents;
    uint32_t t = r->tail_local, cemask = r->cemask;
    struct hy_msg *fl = pool->free;
    unsigned k, k_pool = 0; /* taken off the pool: k - k_pool */
    unsigned nr = 0, run_k = 0;
    struct hy_msg *tail = NULL;
    uint64_t run_to = 0;
    for (k = 0; k < n; k++) {
        const struct hy__centry *e = &cents[(t + k) & cemask];
        struct hy_msg *m = fl;
        if (__builtin_expect(m != NULL, 1)) {
            fl = m->next;
        } else {
            m = take_refill(sh, k - k_pool, e->size);
            k_pool = k + 1; /* this one is counted by the allocator */
            if (!m)
                break; /* this entry and what follows wait in the ring */
            fl = pool->free;
        }
        memcpy(m->data, e->data, HY_RING_ENTRY_DATA);
        uint64_t to_lo = e->to_lo;
        m->tag = e->tag;
        m->from.hi = (e->flags & HY__CE_NO_SENDER) ? 0 : from_hi;
        m->from.lo = e->from_lo;
        m->to.hi = to_hi;
        m->to.lo = to_lo;
        m->ref = HY_REF_NONE;
        m->size = e->size;
        m->kind = HY_K_MSG;
        m->aux = 0;
        if (__builtin_expect(to_lo == run_to && k != 0, 1)) {
            tail->next = m; /* the same receiver: the run goes on */
        } else {
            if (k != 0) {
                tail->next = NULL;
                runs[nr - 1].tail = tail;
                runs[nr - 1].n = k - run_k;
            }
            runs[nr++].head = m;
            run_to = to_lo;
            run_k = k;
        }
        tail = m;
    }
    if (k != 0) {
        tail->next = NULL;
        runs[nr - 1].tail = tail;
        runs[nr - 1].n = k - run_k;
    }
    uint32_t taken = k > k_pool ? k - k_pool : 0;
    pool->free = fl;
    pool->nfree -= taken;
    hy__stat_add(&sh->st.buffers_out, taken);
    *nruns = nr;
    return k;
}

void hy__deliver_chain(struct hy_shard *sh, const struct hy__mrun *run)
{
    struct hy_msg *m = run->head;
    struct hy_proc *p = live_receiver(sh, m->to);
    if (__builtin_expect(!p || p->mb_max != 0, 0)) {
        /* one at a time: each is dropped or checked against the limit */
        while (m) {
            struct hy_msg *next = m->next;
            m->next = NULL;
            if (!p)
                drop_dead(sh, m);
            else if (!append_fast(sh, p, m))
                hy__mailbox_append(sh, p, m);
            m = next;
        }
        return;
    }
    *p->mb_tailp = m;
    p->mb_tailp = &run->tail->next;
    p->mb_len += run->n;
    if (p->state == HY_P_WAITING && p->wait_msg)
        hy__sched_make_ready(sh, p);
}

/* The end of a same-shard user send whose receiver is gone or has a full
 * mailbox (p NULL or not), then the charge. Out of line, with hy__charge's
 * call below, so that the common path of the sends calls nothing and saves
 * no registers. */
static __attribute__((noinline)) int send_local_rest(struct hy_shard *sh, struct hy_proc *p,
                                                     struct hy_msg *m)
{
    struct hy_proc *cur = sh->current;
    if (cur)
        cur->in_rt++;
    if (p)
        hy__mailbox_append(sh, p, m);
    else
        drop_dead(sh, m);
    if (cur) {
        cur->in_rt--;
        charge(cur);
    }
    return 0;
}

static __attribute__((noinline)) int charge_slow(struct hy_proc *p)
{
    hy__charge(p);
    return 0;
}

/* The end of an inline cross-shard send whose entry made a full batch:
 * published now (hy__mesh_batch_full), then the charge. Out of line, a tail
 * call of send_user's cross branch, so that the branch calls nothing on its
 * common path. */
static __attribute__((noinline)) int send_cross_batch(struct hy_shard *sh, unsigned dst)
{
    hy__mesh_batch_full(sh, dst);
    if (sh->current)
        charge(sh->current);
    return 0;
}

static __attribute__((noinline)) int send_user_slow(hy_pid to, uint64_t tag, hy_ref ref,
                                                    const void *data, size_t len, bool sys)
{
    struct hy_shard *sh = hy__tls_shard;
    if (sh && ((tag & HY_TAG_SYSTEM) == 0 || sys) && hy_pid_shard(to) != sh->id &&
        send_cross_fast(sh, to, tag, ref, data, len)) {
        if (sh->current)
            charge(sh->current);
        return 0;
    }
    return send_common(to, tag, ref, data, len, sys);
}

/* send_user_slow for a message without a ref: five arguments, all in
 * registers, so that the send's call of it is a jump and its common path
 * needs no frame of its own (send_user_slow's eight take stack slots). */
static __attribute__((noinline)) int send_user_slow_noref(hy_pid to, uint64_t tag,
                                                          const void *data, size_t len)
{
    return send_user_slow(to, tag, HY_REF_NONE, data, len, false);
}

/* The user sends' exit to the general paths. */
static inline __attribute__((always_inline)) int send_slow(hy_pid to, uint64_t tag, hy_ref ref,
                                                           const void *data, size_t len, bool sys,
                                                           bool noref)
{
    if (noref)
        return send_user_slow_noref(to, tag, data, len);
    return send_user_slow(to, tag, ref, data, len, sys);
}

/* send_cross_small's way out to the general path (the system tag was
 * checked: sys true is the same as the caller's flag now). Out of line, a
 * tail call, so that send_cross_small needs no frame. */
static __attribute__((noinline)) int send_cross_other(uint64_t to_hi, uint64_t to_lo, uint64_t tag,
                                                     const void *data, size_t len)
{
    hy_pid to = {.hi = to_hi, .lo = to_lo};
    return send_user_slow(to, tag, HY_REF_NONE, data, len, true);
}

/* The cross-shard branch of the user sends, jumped to (a tail call, no
 * frame) by send_user for a message without a ref to a pid of another
 * shard (or node): a small ordinary message (at most HY_RING_ENTRY_DATA
 * payload bytes) to a process of another shard of this node goes whole
 * into the line of the ring's entry array at the ring's next position, and
 * HY_RING_ENTRY into its slot, when nothing waits in the overflow queue
 * towards that shard and the array has a line free: send_cross_fast and
 * hy__mesh_entry_reserve / hy__mesh_entry_commit's ring case without their
 * calls, frames and re-checks, the same stores in the same order, so the
 * one FIFO per shard pair holds. Anything else (a bigger payload, a full
 * array, a backlog, another node) goes to send_user_slow. It calls out
 * only by tail calls. No runtime code that can fault runs between the
 * first store into the line and the slot's store, so in_rt is not raised
 * (a fault reading the sender's bytes aborts the node as any fault in the
 * runtime's code does). */
static __attribute__((noinline)) int send_cross_small(struct hy_shard *sh, uint64_t to_hi,
                                                     uint64_t to_lo, uint64_t tag,
                                                     const void *data, size_t len)
{
    uint64_t dst = to_hi & 0xffff;
    /* same node and creation (the pid words differ in the shard only);
     * small_max bounds len by max_message_size too */
    if (__builtin_expect((to_hi ^ sh->pid_hi) > 0xffff || dst >= HY_MAX_SHARDS ||
                             len > HY_RING_ENTRY_DATA || len > sh->small_max || (!data && len),
                         0))
        return send_cross_other(to_hi, to_lo, tag, data, len);
    struct hy_ring *r = sh->out[dst]; /* NULL: no such shard */
    struct hy__centry *e;
    if (__builtin_expect(!r || (e = hy__mesh_entry_try(sh, (unsigned)dst)) == NULL, 0))
        return send_cross_other(to_hi, to_lo, tag, data, len);
    e->tag = tag;
    e->to_lo = to_lo;
    e->size = (uint32_t)len;
    copy_small(e->data, data, len);
    struct hy_proc *cur = sh->current;
    e->from_lo = cur ? cur->pid.lo : 0;
    e->flags = cur ? 0 : HY__CE_NO_SENDER;
    hy__ring_entry_prefetch(r);
    hy__stat_add(&sh->st.msgs_sent_cross, 1);
    if (hy__mesh_entry_stage(sh, (unsigned)dst, r))
        return send_cross_batch(sh, (unsigned)dst);
    if (cur) {
        if (__builtin_expect(cur->budget <= 1, 0) || __builtin_expect(hy__mesh_sig_in(sh), 0))
            return charge_slow(cur);
        cur->budget--;
    }
    return 0;
}

/* The user sends: a small message to a live process of the caller's own
 * shard with room in its mailbox is sent here, inline (send_fast_body's
 * path for kind HY_K_MSG, with every call moved to the uncommon exits); a
 * small one to another shard of the node goes into the ring
 * (send_cross_small, a tail call); anything else goes to send_user_slow
 * (the cross-shard fast path, then the general one). */
static inline __attribute__((always_inline)) int send_user(hy_pid to_in, uint64_t tag, hy_ref ref,
                                                           const void *data, size_t len, bool sys,
                                                           bool noref)
{
    /* the pid word by word (the empty asm): as one 16-byte value the
     * compiler took it through the stack into a vector register */
    hy_pid to;
    uint64_t to_hi = to_in.hi, to_lo = to_in.lo;
    __asm__("" : "+r"(to_hi), "+r"(to_lo));
    to.hi = to_hi;
    to.lo = to_lo;
    struct hy_shard *sh = hy__tls_shard;
    if (__builtin_expect(!sh || ((tag & HY_TAG_SYSTEM) && !sys), 0))
        return send_slow(to, tag, ref, data, len, sys, noref);
    /* one compare for node, creation and shard: the shard's cached pid word */
    if (__builtin_expect(to.hi != sh->pid_hi, 0)) {
        if ((ref.hi | ref.lo) == 0)
            return send_cross_small(sh, to.hi, to.lo, tag, data, len);
        return send_slow(to, tag, ref, data, len, sys, noref);
    }
    /* buffers_out and msgs_sent_local counted at once, in local_fast (or
     * with msgs_received too, in local_handed), added to each when the
     * statistics are read (stats.c) */
    /* loaded once, before the payload's byte stores (which the compiler
     * would otherwise assume may change it) */
    struct hy_proc *cur = sh->current;
    struct hy_msg *m = small_msg_body(sh, cur, true, HY_K_MSG, tag, ref, to, data, len, false);
    if (!m)
        return send_slow(to, tag, ref, data, len, sys, noref);
    /* No runtime bracket (in_rt) from here to the charge: nothing here
     * calls out of the runtime, and a fault in this code is told to be the
     * runtime's by its address (crash.c), bracket or not. */
    struct hy_proc *p = local_slot_proc(sh, to);
    if (__builtin_expect(!p, 0)) {
        hy__stat_add(&sh->st.local_fast, 1);
        return send_local_rest(sh, p, m);
    }
    /* WAITING implies alive: the handed case is tested first, the
     * state bound (an exiting receiver: dropped as dead) only after it */
    if (p->state == HY_P_WAITING && p->wait_msg == HY_WAIT_ANY) {
        /* blocked in a plain receive with an empty mailbox: handed over,
         * the receive returns it when p resumes (what arrives meanwhile
         * goes to the mailbox, behind it: p is ready from now on); counted
         * received now (a kill that frees it takes that back) */
        p->handed = m;
        ready_waiting(sh, p);
        hy__stat_add(&sh->st.local_handed, 1);
    } else {
        hy__stat_add(&sh->st.local_fast, 1);
        if (__builtin_expect(p->state >= HY_P_EXITING, 0))
            return send_local_rest(sh, NULL, m);
        if (__builtin_expect(p->mb_max && p->mb_len >= p->mb_max, 0))
            return send_local_rest(sh, p, m);
        *p->mb_tailp = m; /* small_msg set m->next to NULL */
        p->mb_tailp = &m->next;
        p->mb_len++;
        if (p->state == HY_P_WAITING && p->wait_msg)
            hy__sched_make_ready_inline(sh, p);
    }
    if (cur) {
        if (__builtin_expect(cur->budget <= 1, 0) || __builtin_expect(hy__mesh_sig_in(sh), 0))
            return charge_slow(cur);
        cur->budget--;
    }
    return 0;
}

int hy_send(hy_pid to, uint64_t tag, const void *data, size_t len)
{
    return send_user(to, tag, HY_REF_NONE, data, len, false, true);
}

int hy_send_ref(hy_pid to, uint64_t tag, hy_ref ref, const void *data, size_t len)
{
    return send_user(to, tag, ref, data, len, false, false);
}

int hy_send_sys(hy_pid to, uint64_t tag, hy_ref ref, const void *data, size_t len)
{
    return send_user(to, tag, ref, data, len, true, false);
}

int hy_msg_send(hy_pid to, struct hy_msg *m)
{
    struct hy_shard *sh = hy__shard();
    if (!m)
        return HY_EINVAL;
    if (!sh)
        return HY_ENOTSHARD; /* cannot free another shard's buffer from here */
    if (m->tag & HY_TAG_SYSTEM) {
        hy__msg_free_local(sh, m);
        return HY_EINVAL;
    }
    m->kind = HY_K_MSG;
    m->to = to;
    struct hy_proc *p = sh->current;
    m->from = p ? p->pid : HY_PID_NONE;
    hy__route(sh, m);
    if (p) {
        charge(p);
        dist_wait(sh, p, to);
    }
    return 0;
}

/* Sends a runtime message of kind k (data copied) on behalf of the runtime. */
int hy__send_kind(struct hy_shard *sh, hy_pid to, unsigned kind, uint64_t tag, hy_ref ref,
                  const void *data, size_t len, uint32_t aux);
int hy__send_kind(struct hy_shard *sh, hy_pid to, unsigned kind, uint64_t tag, hy_ref ref,
                  const void *data, size_t len, uint32_t aux)
{
    if (aux == 0 && hy__send_fast(sh, to, kind, tag, ref, data, len))
        return 0;
    struct hy_msg *m;
    int rc = hy__msg_alloc(sh, len, &m);
    if (rc)
        return rc;
    if (len)
        memcpy(m->data, data, len);
    m->kind = (uint8_t)kind;
    m->tag = tag;
    m->ref = ref;
    m->to = to;
    m->aux = aux;
    hy__route(sh, m);
    return 0;
}

static int send_foreign_body(hy_pid to, uint64_t tag, const void *data, size_t len);

int hy_send_foreign(hy_pid to, uint64_t tag, const void *data, size_t len)
{
    struct hy_shard *sh = hy__shard();
    if (sh)
        return hy_send(to, tag, data, len);
    /* teardown takes the lock for writing to end the running state before it
     * frees shards and closes their descriptors */
    pthread_rwlock_rdlock(&hy__foreign_lock);
    int rc = atomic_load(&hy__rt.state) == 2 ? send_foreign_body(to, tag, data, len)
                                               : HY_ENOTSTARTED;
    pthread_rwlock_unlock(&hy__foreign_lock);
    return rc;
}

static int send_foreign_body(hy_pid to, uint64_t tag, const void *data, size_t len)
{
    if ((tag & HY_TAG_SYSTEM) || (!data && len))
        return HY_EINVAL;
    if (len > hy__rt.cfg.max_message_size)
        return HY_EMSGSIZE;
    unsigned dst = hy_pid_shard(to);
    if (hy_pid_node(to) != hy__rt.node_id || dst >= hy__rt.nshards)
        return 0; /* dead or remote: dropped, as any send to a dead pid */
    struct hy_msg *m = malloc(MSG_HDR + len);
    if (!m)
        return HY_ENOMEM;
    memset(m, 0, MSG_HDR);
    if (len)
        memcpy(m->data, data, len);
    m->home = HY_HOME_MALLOC;
    m->cls = BIG_CLASS;
    m->size = m->cap = (uint32_t)len;
    m->tag = tag;
    m->to = to;
    m->kind = HY_K_MSG;
    void hy__inbox_push(struct hy_shard * target, struct hy_msg * msg);
    hy__inbox_push(hy__rt.shards[dst], m);
    return 0;
}

/* ---- receive ------------------------------------------------------------ */

/* The receive loop; inlined into the receives with a known match so that
 * the compiler sees the test (hy_recv_tag, hy_recv_ref). */
static inline __attribute__((always_inline)) int
recv_body(int (*match)(const struct hy_msg *, void *), void *arg, struct hy_msg **out,
          int64_t timeout_ns, bool from_mark)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!out)
        return HY_EINVAL;
    struct hy_shard *sh = p->shard;
    charge(p);
    struct hy_msg **link = (from_mark && p->mark) ? p->mark : &p->mb_head;
    bool armed = false;
    /* a timeout that fired in the turn a message woke us is stale here */
    p->timed_out = 0;
    for (;;) {
        struct hy_msg *m;
        while ((m = *link) != NULL) {
            if (!match || match(m, arg)) {
                *link = m->next;
                if (p->mb_tailp == &m->next)
                    p->mb_tailp = link;
                if (p->mark == &m->next)
                    p->mark = link;
                p->mb_len--;
                m->next = NULL;
                if (armed)
                    hy__wait_disarm(sh, p);
                hy__stat_add(&sh->st.msgs_received, 1);
                *out = m;
                return 0;
            }
            link = &m->next;
        }
        if (p->timed_out || timeout_ns == 0) {
            p->timed_out = 0;
            return HY_ETIMEDOUT;
        }
        if (!armed && timeout_ns > 0) {
            armed = true;
            p->timed_out = 0;
            hy__wait_arm(sh, p, (uint64_t)timeout_ns);
        }
        p->state = HY_P_WAITING;
        p->wait_msg = 1;
        hy__sched_switch_out(p);
        p->wait_msg = 0;
        if (p->exit_pending && !p->defer_exit) {
            if (armed)
                hy__wait_disarm(sh, p);
            hy__proc_exit_current(p, p->exit_reason_pending);
        }
    }
}

int hy__recv_generic(int (*match)(const struct hy_msg *, void *), void *arg, struct hy_msg **out,
                     int64_t timeout_ns, bool from_mark)
{
    return recv_body(match, arg, out, timeout_ns, from_mark);
}

static __attribute__((noinline)) int recv_any(struct hy_msg **out, int64_t timeout_ns)
{
    return recv_body(NULL, NULL, out, timeout_ns, false);
}

/* A receive of any message without a timeout, the common one: the same
 * steps as recv_body's with no match, no marker and no timer (so no timer
 * to arm or disarm), with the mailbox's head taken directly. Anything else
 * (a timeout, not a process, no out) goes to recv_body. */
int hy_recv(struct hy_msg **out, int64_t timeout_ns)
{
    struct hy_shard *sh = hy__tls_shard;
    /* one test and branch each (the empty asm keeps the compiler from
     * or-ing the conditions' values, which took more) */
    if (__builtin_expect(timeout_ns >= 0, 0) || __builtin_expect(!sh, 0))
        return recv_any(out, timeout_ns);
    struct hy_proc *p = sh->current;
    if (__builtin_expect(!p, 0))
        return HY_ENOTPROC;
    __asm__("" : "+r"(out));
    if (__builtin_expect(!out, 0))
        return HY_EINVAL;
    charge_on(sh, p);
    p->timed_out = 0;
    struct hy_msg *m = p->mb_head;
    /* the timeout flag was just cleared: it is looked at only after a
     * switch-out (as recv_body: a timeout flag raised meanwhile ends it) */
    while (m == NULL) {
        p->state = HY_P_WAITING;
        p->wait_msg = HY_WAIT_ANY;
        hy__sched_switch_out(p);
        p->wait_msg = 0;
        if (p->exit_pending && !p->defer_exit)
            hy__proc_exit_current(p, p->exit_reason_pending); /* frees a handed one */
        if ((m = p->handed) != NULL) {
            /* a same-shard send handed it over: never in the mailbox
             * (counted received by the send, in local_handed) */
            p->handed = NULL;
            *out = m;
            return 0;
        }
        if ((m = p->mb_head) == NULL && p->timed_out) {
            p->timed_out = 0;
            return HY_ETIMEDOUT;
        }
    }
    p->mb_head = m->next;
    if (p->mb_tailp == &m->next)
        p->mb_tailp = &p->mb_head;
    if (p->mark == &m->next)
        p->mark = &p->mb_head;
    p->mb_len--;
    m->next = NULL;
    /* p->shard, not sh: sh is then not kept across the switch-out (one
     * callee-saved register fewer to save and restore a receive) */
    hy__stat_add(&p->shard->st.msgs_received, 1);
    *out = m;
    return 0;
}

static int match_tag(const struct hy_msg *m, void *arg)
{
    return m->tag == *(const uint64_t *)arg;
}

int hy_recv_tag(uint64_t tag, struct hy_msg **out, int64_t timeout_ns)
{
    return recv_body(match_tag, &tag, out, timeout_ns, false);
}

static int match_ref(const struct hy_msg *m, void *arg)
{
    return hy_ref_eq(m->ref, *(const hy_ref *)arg);
}

int hy_recv_ref(hy_ref ref, struct hy_msg **out, int64_t timeout_ns)
{
    struct hy_proc *p = hy__current();
    bool from_mark = p && hy_ref_eq(p->mark_ref, ref);
    return recv_body(match_ref, &ref, out, timeout_ns, from_mark);
}

int hy_recv_match(hy_match_fn fn, void *arg, struct hy_msg **out, int64_t timeout_ns)
{
    if (!fn)
        return HY_EINVAL;
    return hy__recv_generic(fn, arg, out, timeout_ns, false);
}

size_t hy_mailbox_len(void)
{
    struct hy_proc *p = hy__current();
    return p ? p->mb_len : 0;
}
