/* Processes: the per-shard process table, spawn (local and onto another
 * shard), exit from any depth, reaping, the per-process arena. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "crash_internal.h"
#include "errors.h"
#include "io_internal.h"
#include "ctx_internal.h"
#include "shard_internal.h"

#ifdef HY_ASAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

#define PROC_CHUNK 64

void (*hy__on_proc_exit_hook)(struct hy_shard *sh, struct hy_proc *p);

int hy__send_kind(struct hy_shard *sh, hy_pid to, unsigned kind, uint64_t tag, hy_ref ref,
                  const void *data, size_t len, uint32_t aux);

/* ---- reasons ------------------------------------------------------------ */

struct hy_reason hy_reason_make(enum hy_reason_kind k)
{
    struct hy_reason r;
    memset(&r, 0, sizeof(r));
    r.kind = (uint16_t)k;
    return r;
}

struct hy_reason hy_reason_user(int32_t code, const char *text)
{
    struct hy_reason r = hy_reason_make(HY_REASON_USER);
    r.code = code;
    if (text) {
        size_t n = strnlen(text, HY_REASON_TEXT_MAX - 1);
        memcpy(r.text, text, n);
        r.text[n] = '\0';
    }
    return r;
}

char *hy_reason_format(const struct hy_reason *r, char *buf, size_t len)
{
    static const char *const names[] = {"normal", "kill",   "killed",       "shutdown",
                                        "noproc", "noconnection", "crash", "user"};
    const char *name = r->kind < sizeof(names) / sizeof(names[0]) ? names[r->kind] : "?";
    if (r->kind == HY_REASON_USER)
        snprintf(buf, len, "user(%d, %s)", r->code, r->text);
    else if (r->kind == HY_REASON_CRASH)
        snprintf(buf, len, "crash(%s at 0x%llx)", r->text, (unsigned long long)r->addr);
    else
        snprintf(buf, len, "%s", name);
    return buf;
}

/* ---- refs --------------------------------------------------------------- */

static hy_ref ref_new(struct hy_shard *sh, unsigned home)
{
    return hy__ref_new_inl(sh, home);
}

hy_ref hy__ref_new_home(struct hy_shard *sh, unsigned home);
hy_ref hy__ref_new_home(struct hy_shard *sh, unsigned home)
{
    return ref_new(sh, home);
}

int hy_ref_make(hy_ref *out)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (!out)
        return HY_EINVAL;
    *out = ref_new(sh, sh->id);
    struct hy_proc *p = sh->current;
    if (p) {
        /* receive marker: a hy_recv_ref for this ref skips what is queued now */
        p->mark = p->mb_tailp;
        p->mark_ref = *out;
    }
    return 0;
}

/* ---- process table -------------------------------------------------------- */

static inline struct hy__slot *slot_at(struct hy_shard *sh, uint32_t idx)
{
    return &sh->slot_chunks[idx >> HY_SLOT_CHUNK_BITS][idx & (HY_SLOT_CHUNK - 1)];
}

struct hy_proc *hy__proc_lookup(struct hy_shard *sh, hy_pid pid)
{
    return hy__proc_lookup_inl(sh, pid);
}

/* Zeroes a record up to its cold reasons with 16-byte stores, unrolled: a
 * spawn's largest single cost was the string store a memset of this size
 * compiles to (records are 64-byte aligned). */
typedef uint64_t hy__v16 __attribute__((vector_size(16), may_alias));
typedef uint64_t hy__u64a __attribute__((may_alias));
#define CLEAR_LEN offsetof(struct hy_proc, reason)
_Static_assert(CLEAR_LEN % 8 == 0, "the cleared part is 8-byte words");
static inline void clear_record(struct hy_proc *p)
{
    hy__v16 *w = (hy__v16 *)(void *)p;
    const hy__v16 z = {0, 0};
#pragma GCC unroll 32
    for (size_t i = 0; i < CLEAR_LEN / 16; i++)
        w[i] = z;
    if (CLEAR_LEN % 16)
        ((hy__u64a *)(void *)p)[CLEAR_LEN / 8 - 1] = 0;
}

static void *proc_carve(struct hy_shard *sh, size_t len);

static inline __attribute__((always_inline)) int slot_alloc(struct hy_shard *sh, uint32_t *idx_out)
{
    if (sh->free_head) {
        uint32_t idx = sh->free_head - 1;
        struct hy__slot *s = slot_at(sh, idx);
        sh->free_head = s->next_free;
        if (!sh->free_head)
            sh->free_tail = 0;
        *idx_out = idx;
        return 0;
    }
    uint32_t idx = sh->nslots;
    uint32_t chunk = idx >> HY_SLOT_CHUNK_BITS;
    if (chunk >= HY_SLOT_MAX_CHUNKS)
        return HY_ENOMEM;
    if (!sh->slot_chunks[chunk]) {
        size_t len = HY_SLOT_CHUNK * sizeof(struct hy__slot) + HY_SLOT_LIVE_WORDS * sizeof(uint64_t);
        struct hy__slot *c = proc_carve(sh, (len + 63) & ~(size_t)63); /* zeroed */
        if (!c)
            return HY_ENOMEM;
        for (uint32_t i = 0; i < HY_SLOT_CHUNK; i++)
            c[i].gen = 1;
        sh->slot_chunks[chunk] = c;
    }
    sh->nslots++;
    *idx_out = idx;
    return 0;
}

static inline __attribute__((always_inline)) void slot_free(struct hy_shard *sh, uint32_t idx)
{
    struct hy__slot *chunk = sh->slot_chunks[idx >> HY_SLOT_CHUNK_BITS];
    struct hy__slot *s = &chunk[idx & (HY_SLOT_CHUNK - 1)];
    s->proc = NULL;
    hy__slot_live_bits(chunk)[(idx & (HY_SLOT_CHUNK - 1)) >> 6] &= ~(1ull << (idx & 63));
    if (++s->gen == 0)
        s->gen = 1;
    s->next_free = 0;
    /* FIFO reuse: a slot comes back as late as possible */
    if (sh->free_tail)
        slot_at(sh, sh->free_tail - 1)->next_free = idx + 1;
    else
        sh->free_head = idx + 1;
    sh->free_tail = idx + 1;
}

/* Process records (in chunks of PROC_CHUNK) and the slot table's chunks
 * are carved from regions the shard maps itself, doubling from
 * PROC_REGION_MIN to PROC_REGION_MAX bytes (a region's first line holds its
 * header; carved memory is never given back before the shard stops, and
 * comes zeroed from the kernel). They were malloc'd one chunk at a time:
 * the heap then grew by brk or, in a shard thread's arena, by mprotect
 * about once per chunk (~8,000 calls per 10^6 spawns), and each such call
 * takes the process's mmap lock for writing. With the other shard holding
 * that lock for reading (stack tops populated, guards installed) and its
 * thread preempted on a loaded machine, those calls waited 50 ms and more:
 * the stall watchdog's "blocked in a system call" (docs/BENCHMARKS.md,
 * session 25). Regions take 17 mmap calls for 10^6 records. Regions of
 * 2 MiB and more may get transparent huge pages where those are on
 * "always": at most one partly used region per shard. */
#define PROC_REGION_MIN (256u << 10)
#define PROC_REGION_MAX (64u << 20)

struct proc_region {
    struct proc_region *next;
    size_t size;
    size_t used; /* bytes carved, the header's line included */
};

/* len bytes (a multiple of 64, at most PROC_REGION_MIN - 64), line-aligned
 * and zeroed; NULL when no memory can be mapped. */
_Static_assert(((sizeof(struct hy_proc) + 63) & ~(size_t)63) * PROC_CHUNK <= PROC_REGION_MIN - 64,
               "a chunk of records fits in the smallest region");

static void *proc_carve(struct hy_shard *sh, size_t len)
{
    struct proc_region *r = sh->proc_chunks;
    if (!r || r->size - r->used < len) {
        size_t size = r ? r->size * 2 : PROC_REGION_MIN;
        if (size > PROC_REGION_MAX)
            size = PROC_REGION_MAX;
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
#ifdef HY_ASAN
        /* the records hold the only pointers to their heap parts (signal
         * state, names): LeakSanitizer scans the heap, not our mappings */
        __lsan_register_root_region(m, size);
#endif
        r = m;
        r->next = sh->proc_chunks;
        r->size = size;
        r->used = 64;
        sh->proc_chunks = r;
    }
    char *c = (char *)r + r->used;
    r->used += len;
    return c;
}

static struct hy_proc *proc_record_alloc(struct hy_shard *sh)
{
    if (!sh->proc_free) {
        size_t rec = (sizeof(struct hy_proc) + 63) & ~(size_t)63;
        size_t len = rec * PROC_CHUNK; /* line-aligned: a record's hot part is its first two lines */
        char *c = proc_carve(sh, len);
        if (!c)
            return NULL;
        /* the loop below writes every record: its pages in one call, not
         * a fault each (stack.c) */
        hy__mem_populate(c, len);
        for (int i = PROC_CHUNK - 1; i >= 0; i--) {
            struct hy_proc *p = (struct hy_proc *)(c + rec * (size_t)i);
            p->rq_next = sh->proc_free;
            sh->proc_free = p;
        }
    }
    struct hy_proc *p = sh->proc_free;
    sh->proc_free = p->rq_next;
    return p;
}

void hy__proc_table_fini(struct hy_shard *sh)
{
    for (uint32_t c = 0; c < HY_SLOT_MAX_CHUNKS && sh->slot_chunks[c]; c++)
        sh->slot_chunks[c] = NULL; /* carved from the regions below */
    sh->nslots = 0;
    sh->free_head = sh->free_tail = 0;
    struct proc_region *r = sh->proc_chunks;
    while (r) {
        struct proc_region *n = r->next;
#ifdef HY_ASAN
        __lsan_unregister_root_region(r, r->size);
#endif
        munmap(r, r->size);
        r = n;
    }
    sh->proc_chunks = NULL;
    sh->proc_free = NULL;
}

/* ---- arena ------------------------------------------------------------------ */

static void *arena_alloc(struct hy_proc *p, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct hy__arena_chunk *c = p->arena;
    if (!c || c->size - c->used < size) {
        size_t csize = c ? c->size * 2 : 256;
        if (csize > 64 * 1024)
            csize = 64 * 1024;
        if (csize < size)
            csize = size;
        struct hy__arena_chunk *n = malloc(sizeof(*n) + csize);
        if (!n)
            return NULL;
        n->size = csize;
        n->used = 0;
        n->next = c;
        p->arena = n;
        p->arena_bytes += sizeof(*n) + csize;
        c = n;
    }
    void *r = c->mem + c->used;
    c->used += size;
    return r;
}

static void arena_free_all(struct hy_proc *p)
{
    struct hy__arena_chunk *c = p->arena;
    while (c) {
        struct hy__arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    p->arena = NULL;
    p->arena_bytes = 0;
}

void *hy_alloc(size_t size)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return NULL;
    return arena_alloc(p, size);
}

size_t hy_arena_bytes(void)
{
    struct hy_proc *p = hy__current();
    return p ? p->arena_bytes : 0;
}

int hy_on_exit(void (*fn)(void *arg), void *arg)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!fn)
        return HY_EINVAL;
    struct hy__cleanup *c = arena_alloc(p, sizeof(*c));
    if (!c)
        return HY_ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = p->cleanups;
    p->cleanups = c;
    return 0;
}

/* ---- create / exit / reap ---------------------------------------------------- */

/* hy__proc_create's body, inlined into hy_spawn (no options, no argument
 * copy: their tests fold away). */
static inline __attribute__((always_inline)) int
proc_create(struct hy_shard *sh, hy_proc_fn fn, void *arg, const struct hy_spawn_opts *o,
            const void *argcopy, size_t argsize, hy_pid *out, struct hy_proc **pout)
{
    HY_FAULT_POINT(HY_FP_SPAWN);
    uint32_t idx;
    int rc = slot_alloc(sh, &idx);
    if (rc)
        return rc;
    struct hy_proc *p = proc_record_alloc(sh);
    if (!p) {
        slot_free(sh, idx);
        return HY_ENOMEM;
    }
    struct hy__slot *chunk = sh->slot_chunks[idx >> HY_SLOT_CHUNK_BITS];
    struct hy__slot *s = &chunk[idx & (HY_SLOT_CHUNK - 1)];
    clear_record(p); /* the reasons are written before use */
    p->pid = hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)sh->id, idx, s->gen);
    p->shard = sh;
    p->fn = fn;
    p->arg = arg;
    p->state = HY_P_NEW;
    p->mb_tailp = &p->mb_head;
    p->wait_timer.type = HY_WT_WAIT;
    p->wait_timer.proc = p;
    int mode = o && o->stack_mode != HY_STACK_DEFAULT ? o->stack_mode : (int)hy__rt.cfg.stack_mode;
    p->stack_mode = (uint8_t)mode;
    p->stack_size = o && o->stack_size ? o->stack_size : hy__rt.cfg.stack_size;
    p->mb_max = o && o->max_mailbox ? o->max_mailbox : hy__rt.cfg.default_max_mailbox;
    p->mailbox_policy = o ? (uint8_t)o->mailbox_policy : HY_MAILBOX_DROP_NEW;
    p->trap_exit = o ? o->trap_exit : 0;
    if (argsize) {
        void *copy = arena_alloc(p, argsize);
        if (!copy) {
            slot_free(sh, idx);
            p->rq_next = sh->proc_free;
            sh->proc_free = p;
            return HY_ENOMEM;
        }
        memcpy(copy, argcopy, argsize);
        p->arg = copy;
    }
    s->proc = p;
    hy__slot_live_bits(chunk)[(idx & (HY_SLOT_CHUNK - 1)) >> 6] |= 1ull << (idx & 63);
    hy__stat_add(&sh->st.procs_spawned, 1);
    hy__stat_add(&sh->st.procs_alive, 1);
    hy__sched_make_ready(sh, p);
    if (out)
        *out = p->pid;
    if (pout)
        *pout = p;
    return 0;
}

int hy__proc_create(struct hy_shard *sh, hy_proc_fn fn, void *arg, const struct hy_spawn_opts *o,
                    const void *argcopy, size_t argsize, hy_pid *out, struct hy_proc **pout)
{
    return proc_create(sh, fn, arg, o, argcopy, argsize, out, pout);
}

void hy__proc_entry(void *arg)
{
#ifdef HY_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    static const struct hy_reason normal = {.kind = HY_REASON_NORMAL};
    struct hy_proc *p = arg;
    p->fn(p->arg);
    hy__proc_exit_current(p, normal);
}

void hy__proc_exit_current(struct hy_proc *p, struct hy_reason r)
{
    struct hy_shard *sh = p->shard;
    /* Through the scheduler, not a direct hand-over: the stack is released
     * before the next process needs one, so a spawn/exit churn reuses a
     * single stack (a hand-over would hold up to run_batch of them). */
    p->reason = r;
    p->state = HY_P_DEAD;
    hy__stack_switch_out(sh, p);
    __builtin_unreachable();
}

static void run_cleanups(struct hy_proc *p)
{
    struct hy__cleanup *c = p->cleanups;
    p->cleanups = NULL;
    p->shard->exiting = p;
    for (; c; c = c->next)
        c->fn(c->arg);
    p->shard->exiting = NULL;
}

int hy_exit_reason(struct hy_reason *out)
{
    struct hy_shard *sh = hy__shard();
    if (!sh || !sh->exiting)
        return HY_ENOTPROC;
    if (!out)
        return HY_EINVAL;
    *out = sh->exiting->reason;
    return 0;
}

void hy__proc_reap(struct hy_shard *sh, struct hy_proc *p)
{
    p->state = HY_P_EXITING;
    /* The common exit (no cleanups, sockets, links, timers, messages,
     * blocking call or arena) tests them at once and calls nothing. */
    if (((uintptr_t)p->cleanups | (uintptr_t)p->socks | (uintptr_t)p->sig |
         (uintptr_t)p->timers | (uintptr_t)p->wait_timer.arm_pprev | (uintptr_t)p->mb_head |
         (uintptr_t)p->handed | (uintptr_t)p->blocking_job | (uintptr_t)p->arena) == 0 &&
        !hy__wtimer_armed(&p->wait_timer.wt)) {
        p->mark = NULL;
        goto release;
    }
    if (p->cleanups)
        run_cleanups(p);
    if (p->socks)
        hy__sock_proc_exit(sh, p);
    if (hy__on_proc_exit_hook && p->sig) /* the hook handles links, monitors, names */
        hy__on_proc_exit_hook(sh, p);
    if (p->timers)
        hy__timer_proc_exit(sh, p);
    if (p->wait_timer.arm_pprev || hy__wtimer_armed(&p->wait_timer.wt))
        hy__wait_disarm(sh, p);
    if (p->mb_head || p->handed)
        hy__mailbox_drop_all(sh, p);
    p->mark = NULL;
    if (p->blocking_job)
        hy__blocking_proc_exit(sh, p); /* keeps its stack and arena for fn */
    if (p->arena)
        arena_free_all(p);
release:
    hy__stack_release(sh, p);
    p->state = HY_P_DEAD;
    slot_free(sh, hy_pid_slot(p->pid));
    hy__stat_add(&sh->st.procs_exited, 1);
    hy__stat_add(&sh->st.procs_alive, (uint64_t)-1);
    bool was_main = hy__rt.stop_on_main_exit && hy_pid_eq(p->pid, hy__rt.main_pid);
    p->rq_next = sh->proc_free;
    sh->proc_free = p;
    if (was_main) {
        atomic_store(&hy__rt.stop, 1);
        for (unsigned i = 0; i < hy__rt.nshards; i++)
            if (hy__rt.shards[i] != sh)
                hy__wake_shard(hy__rt.shards[i]);
    }
}

void hy__proc_kill_suspended(struct hy_shard *sh, struct hy_proc *p, struct hy_reason r)
{
    if (p->in_runq) {
        /* unlink from the run queue */
        struct hy_proc **pp = &sh->rq_head, *prev = NULL;
        while (*pp && *pp != p) {
            prev = *pp;
            pp = &(*pp)->rq_next;
        }
        if (*pp) {
            *pp = p->rq_next;
            if (sh->rq_tail == p)
                sh->rq_tail = prev;
            sh->rq_len--;
        }
        p->in_runq = 0;
    }
    p->reason = r;
    hy__proc_reap(sh, p);
}

/* ---- spawn API ----------------------------------------------------------------- */

struct hy__spawn_req {
    hy_proc_fn fn;
    void *arg;
    struct hy_spawn_opts opts;
    hy_pid requester;
    size_t argsize;
    unsigned char argcopy[] __attribute__((aligned(16)));
};


static void on_spawn_req(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy__spawn_req *rq = (struct hy__spawn_req *)m->data;
    struct hy__spawn_reply rep = {0};
    struct hy_proc *child = NULL;
    rep.link = rq->opts.link;
    rep.monitor = rq->opts.monitor;
    rep.rc = hy__proc_create(sh, rq->fn, rq->arg, &rq->opts, rq->argcopy, rq->argsize, &rep.pid,
                             &child);
    /* the child's side of spawn_link/spawn_monitor, before it ever runs */
    if (rep.rc == 0 && (rep.link || rep.monitor))
        hy__spawn_install_child(sh, child, rep.link, rep.monitor, rq->requester, m->ref);
    hy_pid to = rq->requester;
    hy_ref ref = m->ref;
    hy__msg_free_local(sh, m);
    struct hy_msg *r;
    if (hy__msg_alloc(sh, sizeof(rep), &r) == 0) {
        memcpy(r->data, &rep, sizeof(rep));
        r->kind = HY_K_SPAWN_REPLY;
        r->tag = HY_TAG_SPAWN_REPLY;
        r->ref = ref;
        r->to = to;
        r->from = rep.pid;
        hy__route(sh, r);
    }
}

/* The reply passes through the requester's shard: the parent's side of the
 * link/monitor is installed here, before any signal the child sends after
 * it (same FIFO) can be handled, then the reply becomes a message. */
static void on_spawn_reply(struct hy_shard *sh, struct hy_msg *m)
{
    struct hy_proc *p = hy__proc_lookup(sh, m->to);
    struct hy__spawn_reply rep;
    memcpy(&rep, m->data, sizeof(rep));
    if (p && p->state < HY_P_EXITING && rep.rc == 0 && (rep.link || rep.monitor))
        hy__spawn_install_parent(sh, p, rep.link, rep.monitor, rep.pid, m->ref);
    m->kind = HY_K_MSG;
    hy__deliver(sh, m);
}

__attribute__((constructor)) static void proc_register_kinds(void)
{
    hy__kind_register(HY_K_SPAWN_REQ, on_spawn_req);
    hy__kind_register(HY_K_SPAWN_REPLY, on_spawn_reply);
}

int hy_spawn_opt(hy_proc_fn fn, void *arg, const struct hy_spawn_opts *opts, hy_pid *out)
{
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (!fn)
        return HY_EINVAL;
    struct hy_spawn_opts def = HY_SPAWN_OPTS_INIT;
    const struct hy_spawn_opts *o = opts ? opts : &def;
    if (o->stack_mode != HY_STACK_DEFAULT && o->stack_mode != HY_STACK_GUARDED &&
        o->stack_mode != HY_STACK_COMPACT)
        return HY_EINVAL;
    if (o->shard < HY_SHARD_SELF || (o->shard >= 0 && (unsigned)o->shard >= hy__rt.nshards))
        return HY_EINVAL;
    if (o->arg_size > hy__rt.cfg.max_message_size)
        return HY_EINVAL;
    if (o->mailbox_policy != HY_MAILBOX_DROP_NEW && o->mailbox_policy != HY_MAILBOX_KILL)
        return HY_EINVAL;
    unsigned target = o->shard == HY_SHARD_SELF ? sh->id : (unsigned)o->shard;
    struct hy_proc *cur = sh->current;
    bool lm = o->link || o->monitor;
    if (lm && !cur)
        return HY_ENOTPROC;
    if (target == sh->id) {
        struct hy_proc *child;
        hy_pid pid;
        int rc = hy__proc_create(sh, fn, arg, o, arg, o->arg_size, &pid, &child);
        if (rc)
            return rc;
        if (lm) {
            hy_ref ref = HY_REF_NONE;
            if (o->monitor)
                hy_ref_make(&ref);
            hy__spawn_install_child(sh, child, o->link, o->monitor, cur->pid, ref);
            hy__spawn_install_parent(sh, cur, o->link, o->monitor, pid, ref);
            if (o->monitor_ref)
                *o->monitor_ref = ref;
        }
        if (out)
            *out = pid;
        if (cur)
            hy__charge(cur);
        return 0;
    }
    if (!cur)
        return HY_ENOTPROC;
    /* Onto another shard: ask it through the ring mesh, wait for the pid. */
    struct hy_msg *m;
    /* runtime request: its header may go past max_message_size */
    int rc = hy__msg_alloc_rt(sh, sizeof(struct hy__spawn_req) + o->arg_size, &m);
    if (rc)
        return rc;
    struct hy__spawn_req *rq = (struct hy__spawn_req *)m->data;
    rq->fn = fn;
    rq->arg = arg;
    rq->opts = *o;
    rq->opts.monitor_ref = NULL;
    rq->requester = cur->pid;
    rq->argsize = o->arg_size;
    if (o->arg_size)
        memcpy(rq->argcopy, arg, o->arg_size);
    hy_ref ref;
    hy_ref_make(&ref);
    m->kind = HY_K_SPAWN_REQ;
    m->ref = ref;
    m->to = hy_pid_make(hy__rt.node_id, hy__rt.creation, (uint16_t)target, 0, 0);
    hy__route(sh, m);
    struct hy_msg *r;
    cur->defer_exit++;
    rc = hy_recv_ref(ref, &r, HY_INFINITY);
    cur->defer_exit--;
    if (rc)
        return rc;
    struct hy__spawn_reply rep;
    memcpy(&rep, r->data, sizeof(rep));
    hy_msg_free(r);
    if (rep.rc == 0 && out)
        *out = rep.pid;
    if (rep.rc == 0 && o->monitor && o->monitor_ref)
        *o->monitor_ref = ref;
    if (cur->exit_pending && !cur->defer_exit)
        hy__proc_exit_current(cur, cur->exit_reason_pending);
    return rep.rc;
}

int hy_spawn(hy_proc_fn fn, void *arg, hy_pid *out)
{
    /* hy_spawn_opt with the defaults, without checking options it cannot have */
    struct hy_shard *sh = hy__shard();
    if (!sh)
        return HY_ENOTSHARD;
    if (!fn)
        return HY_EINVAL;
    int rc = proc_create(sh, fn, arg, NULL, NULL, 0, out, NULL);
    if (rc == 0 && sh->current)
        hy__charge(sh->current);
    return rc;
}

hy_pid hy_self(void)
{
    struct hy_proc *p = hy__current();
    return p ? p->pid : HY_PID_NONE;
}

bool hy_in_process(void)
{
    return hy__current() != NULL;
}

int hy_exit(struct hy_reason reason)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    hy__proc_exit_current(p, reason);
}

int hy_panic(const char *fmt, ...)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    char text[HY_REASON_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    p->reason = hy_reason_user(0, text);
    hy__crash_log_panic(p);
    hy__proc_exit_current(p, p->reason);
}
