/* Process stacks: the guarded pool and the compact (copy-stack) mode, and
 * the switch into and out of a process, annotated for AddressSanitizer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ctx_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"

#ifdef HY_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define TRIM_INTERVAL_NS 1000000000ull
#define SLAB_FIRST 16u /* stacks in a shard's first slab; doubling up to SLAB_MAX */
#define SLAB_MAX 16384u
#define GUARD_RUN 256u /* guards installed at once, as the carving reaches them */

/* Linux 6.13+: a guard page without a VMA of its own (uapi value). */
#ifdef MADV_GUARD_INSTALL
#define HY_MADV_GUARD_INSTALL MADV_GUARD_INSTALL
#else
#define HY_MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14+ (uapi value) */
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

static size_t page_size(void)
{
    /* read and set by every shard: relaxed atomics (each writes the same
     * value; ThreadSanitizer saw the plain static race) */
    static size_t ps;
    size_t v = __atomic_load_n(&ps, __ATOMIC_RELAXED);
    if (!v) {
        v = (size_t)sysconf(_SC_PAGESIZE);
        __atomic_store_n(&ps, v, __ATOMIC_RELAXED);
    }
    return v;
}

static size_t round_page(size_t n)
{
    size_t ps = page_size();
    return (n + ps - 1) & ~(ps - 1);
}

int hy__stack_init_shard(struct hy_shard *sh)
{
    sh->last_trim_ns = hy_now_ns();
    sh->compact_map = NULL; /* the compact stack is mapped on first use */
    sh->slab_next = NULL;
    sh->slab_left = 0;
    sh->slab_warm = 0;
    sh->slab_guarded = 0;
    sh->slab_grow = SLAB_FIRST;
    sh->slabs = NULL;
    sh->nslabs = sh->slabs_cap = 0;
    sh->stack_cold = NULL;
    sh->ncold = sh->cold_cap = 0;
    sh->pidfd = -1;
    return 0;
}

static int compact_map(struct hy_shard *sh)
{
    size_t ps = page_size();
    size_t sz = round_page(hy__rt.cfg.compact_stack_size);
    void *map = mmap(NULL, sz + ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED)
        return HY_ENOMEM;
    if (mprotect((char *)map + ps, sz, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, sz + ps);
        return HY_ENOMEM;
    }
    sh->compact_map = map;
    sh->compact_map_size = sz + ps;
    sh->compact_lo = (char *)map + ps;
    sh->compact_hi = (char *)map + ps + sz;
    return 0;
}

/* ---- guard pages ----------------------------------------------------------
 *
 * A guard page is made, best first, by MADV_GUARD_INSTALL for many pages in
 * one process_madvise() call, by MADV_GUARD_INSTALL page by page, or by
 * mprotect(PROT_NONE). The first two leave the mapping one kernel VMA (a
 * million stacks need no raised vm.max_map_count, and no VMA is split);
 * the last splits it in two VMAs per stack. Which one works is learnt once
 * per process. Every way makes an access to the page fault (SIGSEGV), which
 * is how a stack overflow is caught and reported (crash.c). */
enum { GUARD_BATCH = 0, GUARD_MADVISE, GUARD_MPROTECT };
static _Atomic int guard_how = GUARD_BATCH;
#define GUARD_IOV 32 /* iovecs per process_madvise call (on the caller's stack) */

/* The shard's pidfd of this process, for process_madvise(), opened at its
 * first use; -1 where pidfd_open is refused (before Linux 5.3, seccomp). A
 * refusal is tried again at the next use: the callers learn theirs once. */
static int shard_pidfd(struct hy_shard *sh)
{
    if (sh->pidfd < 0)
        sh->pidfd = (int)syscall(SYS_pidfd_open, (long)getpid(), 0L);
    return sh->pidfd;
}

/* Guard pages at first, first + stride, ... (n of them); 0 or HY_ENOMEM. */
static int guard_install(struct hy_shard *sh, char *first, size_t stride, unsigned n)
{
    size_t ps = page_size();
    unsigned done = 0;
    int how = atomic_load_explicit(&guard_how, memory_order_relaxed);

    if (how == GUARD_BATCH && n > 1) {
        int pidfd = shard_pidfd(sh);
        while (pidfd >= 0 && done < n) {
            struct iovec iov[GUARD_IOV];
            unsigned k = n - done < GUARD_IOV ? n - done : GUARD_IOV;
            for (unsigned i = 0; i < k; i++) {
                iov[i].iov_base = first + (size_t)(done + i) * stride;
                iov[i].iov_len = ps;
            }
            long r = syscall(SYS_process_madvise, pidfd, iov, (unsigned long)k,
                             HY_MADV_GUARD_INSTALL, 0u);
            if (r < 0)
                break;
            done += (unsigned)((size_t)r / ps); /* whole iovecs: each one page */
            if ((size_t)r != k * ps)
                break;
        }
        if (done < n && done == 0)
            atomic_store_explicit(&guard_how, GUARD_MADVISE, memory_order_relaxed);
    }
    for (; done < n; done++) {
        char *g = first + (size_t)done * stride;
        how = atomic_load_explicit(&guard_how, memory_order_relaxed);
        if (how != GUARD_MPROTECT && madvise(g, ps, HY_MADV_GUARD_INSTALL) == 0)
            continue;
        if (how != GUARD_MPROTECT)
            atomic_store_explicit(&guard_how, GUARD_MPROTECT, memory_order_relaxed);
        if (mprotect(g, ps, PROT_NONE) != 0)
            return HY_ENOMEM;
    }
    return 0;
}

/* ---- backing stack tops in batches -----------------------------------------
 *
 * A process touches its stack's top page first (the stack record lives
 * there, then its first frames). Left to the first touch, every such page
 * costs a page fault of its own; on a VM each of those also costs the
 * hypervisor an exit. One process_madvise(MADV_POPULATE_WRITE) call backs
 * the top pages of the next POP_AHEAD stacks of a slab at once, so the
 * spawns that take them fault no more (the hypervisor's own first-touch
 * work remains; docs/BENCHMARKS.md has the measures). Only pages that the
 * next spawns will touch anyway are backed: at most POP_AHEAD - 1 stack
 * tops (4 KiB each) are backed ahead of need per shard. Where the kernel
 * refuses the advice (before Linux 6.13 for process_madvise on oneself, or
 * before 5.14 for the advice), this is learnt once per process and stack
 * tops are left to their first touch, as before. A failure for want of
 * memory is not learnt: the touch then faults, as it would have. */
#define POP_AHEAD 32u
static _Atomic int populate_ok = 1;

/* Backs the top page of n stacks whose guard pages are at first, first +
 * stride, ... Best effort: nothing to report on failure. */
static void populate_tops(struct hy_shard *sh, char *first, size_t stride, unsigned n)
{
    size_t ps = page_size();
    struct iovec iov[POP_AHEAD];

    if (!atomic_load_explicit(&populate_ok, memory_order_relaxed) || n < 2)
        return;
    int pidfd = shard_pidfd(sh);
    if (pidfd < 0) {
        atomic_store_explicit(&populate_ok, 0, memory_order_relaxed);
        return;
    }
    if (n > POP_AHEAD)
        n = POP_AHEAD;
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = first + (size_t)(i + 1) * stride - ps;
        iov[i].iov_len = ps;
    }
    long r = syscall(SYS_process_madvise, pidfd, iov, (unsigned long)n, MADV_POPULATE_WRITE, 0u);
    if (r < 0 && (errno == EINVAL || errno == EPERM || errno == ENOSYS || errno == EBADF)) {
        hy_log(HY_LOG_DEBUG, "shard %u: stack tops left to their first touch (process_madvise "
                             "MADV_POPULATE_WRITE: %s)", sh->id, strerror(errno));
        atomic_store_explicit(&populate_ok, 0, memory_order_relaxed);
    }
}

void hy__mem_populate(void *p, size_t len)
{
    static _Atomic int refused;
    size_t ps = page_size();
    uintptr_t lo = ((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)(ps - 1);

    if (hi <= lo + ps || atomic_load_explicit(&refused, memory_order_relaxed))
        return; /* a single page: its fault costs no more than the call */
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
        atomic_store_explicit(&refused, 1, memory_order_relaxed);
}

/* ---- the guarded pool -----------------------------------------------------
 *
 * Stacks of the configured size (every stack unless a spawn asks for
 * another size) come from slabs: one mapping of slab_grow stacks, each a
 * guard page followed by the stack, whose guard pages are installed
 * GUARD_RUN at a time as the carving reaches them (mapping work is paid
 * once per slab, guard work once per run of stacks, not per spawn). Slabs
 * double from SLAB_FIRST to SLAB_MAX stacks (1.06 GiB of address space with
 * the default 64 KiB stacks, MAP_NORESERVE: only what runs is backed).
 * Slabs of at most 256 stacks meant an mmap every 256 spawns, and an mmap
 * takes the process's mmap lock for writing: on a loaded machine it then
 * waited for the other shard's populate or guard install (which hold it for
 * reading) whose thread the OS had preempted, 50 ms and more, and the
 * stall watchdog reported the shard "blocked in a system call"
 * (docs/BENCHMARKS.md, session 25). An exiting process's stack goes to the
 * pool (LIFO: the next spawn takes the warmest one); trimming gives the
 * memory of surplus pool stacks back to the kernel (MADV_DONTNEED; guards
 * stay) and keeps their address in the cold list, reused before carving.
 * Slabs are unmapped when the shard stops. Stacks of another size have a
 * mapping of their own. */

static size_t pool_stride(void)
{
    return round_page(hy__rt.cfg.stack_size) + page_size();
}

/* The stack whose guard page is at g, in a mapping of map_size bytes. */
static struct hy_stack *stack_at(char *g, size_t map_size)
{
    size_t ps = page_size();
    /* the record lives at the top of the stack it describes */
    struct hy_stack *s = (struct hy_stack *)(g + map_size - sizeof(struct hy_stack));
    s->map = g;
    s->map_size = map_size;
    s->lo = g + ps;
    s->size = map_size - ps - sizeof(struct hy_stack);
    s->next = NULL;
    return s;
}

static int slab_new(struct hy_shard *sh)
{
    size_t stride = pool_stride();
    unsigned n = sh->slab_grow;
    void *map = MAP_FAILED;

    if (sh->nslabs == sh->slabs_cap) {
        unsigned cap = sh->slabs_cap ? 2 * sh->slabs_cap : 16;
        struct hy__stack_slab *a = realloc(sh->slabs, cap * sizeof(*a));
        if (!a)
            return HY_ENOMEM;
        sh->slabs = a;
        sh->slabs_cap = cap;
    }
    for (; n >= 1; n /= 2) {
        map = mmap(NULL, stride * n, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map != MAP_FAILED)
            break;
    }
    if (map == MAP_FAILED)
        return HY_ENOMEM;
    sh->slabs[sh->nslabs++] = (struct hy__stack_slab){map, stride * n};
    sh->slab_next = map;
    sh->slab_left = n;
    sh->slab_warm = 0;
    sh->slab_guarded = 0;
    if (sh->slab_grow < SLAB_MAX)
        sh->slab_grow *= 2;
    return 0;
}

void hy__stack_fini_shard(struct hy_shard *sh)
{
    /* pool and cold stacks all live in slabs */
    sh->stack_pool = NULL;
    sh->stack_pool_n = 0;
    /* a blocking call whose caller died may still run on one of them: then
     * the slabs stay mapped (until the process exits) rather than vanish
     * under the pool thread */
    unsigned held = atomic_load_explicit(&hy__stacks_held[sh->id], memory_order_acquire);
    if (held)
        hy_log(HY_LOG_DEBUG, "shard %u: %u stack(s) held by running blocking calls: slabs left mapped",
               sh->id, held);
    for (unsigned i = 0; !held && i < sh->nslabs; i++)
        munmap(sh->slabs[i].map, sh->slabs[i].size);
    free(sh->slabs);
    sh->slabs = NULL;
    sh->nslabs = sh->slabs_cap = 0;
    sh->slab_next = NULL;
    sh->slab_left = 0;
    sh->slab_warm = 0;
    sh->slab_guarded = 0;
    free(sh->stack_cold);
    sh->stack_cold = NULL;
    sh->ncold = sh->cold_cap = 0;
    if (sh->pidfd >= 0)
        close(sh->pidfd);
    sh->pidfd = -1;
    if (sh->compact_map)
        munmap(sh->compact_map, sh->compact_map_size);
    sh->compact_map = NULL;
}

struct hy_stack *hy__stack_get(struct hy_shard *sh, size_t size)
{
    size = round_page(size);
    size_t ps = page_size();
    if (size == round_page(hy__rt.cfg.stack_size)) {
        struct hy_stack *s = sh->stack_pool;
        if (s) {
            sh->stack_pool = s->next;
            sh->stack_pool_n--;
            if (sh->stack_pool_n < sh->stack_pool_low)
                sh->stack_pool_low = sh->stack_pool_n;
            atomic_store_explicit(&sh->st.stacks_pooled, sh->stack_pool_n,
                                  memory_order_relaxed);
            return s;
        }
        struct hy_stack *c;
        if (sh->ncold) {
            c = stack_at(sh->stack_cold[--sh->ncold], size + ps);
        } else {
            if (!sh->slab_left && slab_new(sh) != 0)
                return NULL;
            char *g = sh->slab_next;
            if (!sh->slab_guarded) {
                unsigned k = sh->slab_left < GUARD_RUN ? sh->slab_left : GUARD_RUN;
                if (guard_install(sh, g, size + ps, k) != 0)
                    return NULL; /* tried again at the next spawn */
                sh->slab_guarded = k;
            }
            sh->slab_guarded--;
            if (!sh->slab_warm) {
                sh->slab_warm = sh->slab_left < POP_AHEAD ? sh->slab_left : POP_AHEAD;
                populate_tops(sh, g, size + ps, sh->slab_warm);
            }
            sh->slab_warm--;
            sh->slab_next += size + ps;
            sh->slab_left--;
            c = stack_at(g, size + ps);
        }
        c->slab = true;
        return c;
    }
    size_t map_size = size + ps;
    void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (guard_install(sh, map, map_size, 1) != 0) {
        munmap(map, map_size);
        return NULL;
    }
    struct hy_stack *s = stack_at(map, map_size);
    s->slab = false;
    return s;
}

void hy__stack_put(struct hy_shard *sh, struct hy_stack *s)
{
#ifdef HY_ASAN
    /* frames of the dead process leave poisoned redzones behind */
    __asan_unpoison_memory_region(s->lo, s->size);
#endif
    if (s->size + sizeof(struct hy_stack) == round_page(hy__rt.cfg.stack_size)) {
        s->next = sh->stack_pool;
        sh->stack_pool = s;
        sh->stack_pool_n++;
        atomic_store_explicit(&sh->st.stacks_pooled, sh->stack_pool_n, memory_order_relaxed);
        return;
    }
    munmap(s->map, s->map_size);
}

/* Called before a shard sleeps: give back the memory of stacks the pool has
 * not needed since the last trim (a spike's leftovers), keeping
 * stack_pool_keep. */
void hy__stack_trim(struct hy_shard *sh)
{
    uint64_t now = sh->now;
    if (now - sh->last_trim_ns < TRIM_INTERVAL_NS)
        return;
    sh->last_trim_ns = now;
    unsigned keep = hy__rt.cfg.stack_pool_keep;
    unsigned excess = sh->stack_pool_low > keep ? sh->stack_pool_low - keep : 0;
    size_t ps = page_size();
    while (excess-- && sh->stack_pool) {
        if (sh->ncold == sh->cold_cap) {
            unsigned cap = sh->cold_cap ? 2 * sh->cold_cap : 64;
            void **a = realloc(sh->stack_cold, cap * sizeof(*a));
            if (!a)
                break; /* kept pooled: tried again at the next trim */
            sh->stack_cold = a;
            sh->cold_cap = cap;
        }
        struct hy_stack *s = sh->stack_pool;
        sh->stack_pool = s->next;
        sh->stack_pool_n--;
        char *g = s->map;
        size_t len = s->map_size - ps;
        sh->stack_cold[sh->ncold++] = g;
        madvise(g + ps, len, MADV_DONTNEED); /* the record goes too: rebuilt on reuse */
    }
    sh->stack_pool_low = sh->stack_pool_n;
    atomic_store_explicit(&sh->st.stacks_pooled, sh->stack_pool_n, memory_order_relaxed);
}

/* ---- compact mode: copy the used part of the shared stack in and out ---- */

#ifdef HY_ASAN
/* The shared stack holds poisoned redzones of the frames on it: copy it
 * without instrumentation and without letting the compiler call memcpy. */
__attribute__((no_sanitize_address, noinline)) static void raw_copy(void *dst, const void *src,
                                                                    size_t n)
{
    volatile uint64_t *d = dst;
    const volatile uint64_t *s = src;
    for (size_t i = 0; i < n / 8; i++)
        d[i] = s[i];
}
#else
#define raw_copy memcpy
#endif

static void compact_save(struct hy_proc *p)
{
    struct hy_shard *sh = p->shard;
    size_t used = (size_t)((char *)sh->compact_hi - (char *)p->sp);
    if (used > p->copy_cap) {
        size_t cap = (used + 63) & ~(size_t)63;
        void *n = realloc(p->copy, cap);
        if (!n)
            hy__fatal("out of memory saving a compact stack");
        p->copy = n;
        p->copy_cap = (uint32_t)cap;
    }
    raw_copy(p->copy, p->sp, used);
    p->copy_len = (uint32_t)used;
}

static void compact_restore(struct hy_shard *sh, struct hy_proc *p)
{
#ifdef HY_ASAN
    __asan_unpoison_memory_region(sh->compact_lo,
                                  (size_t)((char *)sh->compact_hi - (char *)sh->compact_lo));
#endif
    raw_copy((char *)sh->compact_hi - p->copy_len, p->copy, p->copy_len);
}

void hy__stack_release(struct hy_shard *sh, struct hy_proc *p)
{
    hy__tsan_fiber_free(p->tsan_fiber);
    p->tsan_fiber = NULL;
    struct hy_stack *s = p->stack;
    if (s) {
        p->stack = NULL;
#ifndef HY_ASAN
        if (p->stack_size == hy__rt.cfg.stack_size) {
            /* a pool-sized stack (the record sits at its top): back on the
             * pool's head, where the next spawn takes it */
            s->next = sh->stack_pool;
            sh->stack_pool = s;
            sh->stack_pool_n++;
            atomic_store_explicit(&sh->st.stacks_pooled, sh->stack_pool_n, memory_order_relaxed);
        } else
#endif
            hy__stack_put(sh, s);
    }
    if (sh->compact_owner == p)
        sh->compact_owner = NULL;
    if (p->copy) {
        free(p->copy);
        p->copy = NULL;
        p->copy_len = p->copy_cap = 0;
    }
}

/* ---- switching ----------------------------------------------------------- */

/* hy__stack_ready's body, inlined into the first switch-in */
static inline __attribute__((always_inline)) bool stack_ready(struct hy_shard *sh, struct hy_proc *p)
{
    if (p->stack)
        return true;
    struct hy_stack *s = sh->stack_pool;
    if (s && p->stack_size == hy__rt.cfg.stack_size) {
        /* the pool's head: most often the stack the last exit gave back,
         * still in the cache (a spawn/exit churn reuses one stack) */
        sh->stack_pool = s->next;
        sh->stack_pool_n--;
        if (sh->stack_pool_n < sh->stack_pool_low)
            sh->stack_pool_low = sh->stack_pool_n;
        atomic_store_explicit(&sh->st.stacks_pooled, sh->stack_pool_n, memory_order_relaxed);
        p->stack = s;
    } else {
        p->stack = hy__stack_get(sh, p->stack_size);
        if (!p->stack)
            return false;
    }
    p->sp = hy__ctx_make((char *)p->stack->lo + p->stack->size, hy__proc_entry, p);
    return true;
}

bool hy__stack_ready(struct hy_shard *sh, struct hy_proc *p)
{
    return stack_ready(sh, p);
}

HY__HOT void hy__stack_switch_direct(struct hy_shard *sh, struct hy_proc *from, struct hy_proc *to,
                             bool dying)
{
    (void)sh;
#ifdef HY_TSAN
    /* only here: elsewhere this read and write of a cold field of the
     * record cost a cache line per switch */
    if (!to->tsan_fiber)
        to->tsan_fiber = hy__tsan_fiber_new();
    hy__tsan_switch(to->tsan_fiber);
#endif
#ifdef HY_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake, to->stack->lo,
                                   to->stack->size);
    hy__ctx_switch(&from->sp, to->sp);
    __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#else
    (void)dying;
    hy__ctx_switch(&from->sp, to->sp);
#endif
}

void hy__stack_switch_in(struct hy_shard *sh, struct hy_proc *p)
{
    void *lo;
    size_t size;
    if (p->stack_mode == HY_STACK_COMPACT) {
        if (!sh->compact_map && compact_map(sh) != 0)
            hy__fatal("cannot map the compact stack");
        struct hy_proc *owner = sh->compact_owner;
        if (owner != p) {
            if (owner)
                compact_save(owner);
            if (p->sp)
                compact_restore(sh, p);
#ifdef HY_ASAN
            else /* a fresh process: the previous owner's redzones are still poisoned */
                __asan_unpoison_memory_region(
                    sh->compact_lo, (size_t)((char *)sh->compact_hi - (char *)sh->compact_lo));
#endif
            sh->compact_owner = p;
        }
        if (!p->sp)
            p->sp = hy__ctx_make(sh->compact_hi, hy__proc_entry, p);
        lo = sh->compact_lo;
        size = (size_t)((char *)sh->compact_hi - (char *)sh->compact_lo);
    } else {
        if (!stack_ready(sh, p)) {
            /* No memory for a stack: the process dies before running. */
            p->sp = NULL;
            p->state = HY_P_DEAD;
            p->reason = hy_reason_user(0, "no memory for a stack");
            return;
        }
        lo = p->stack->lo;
        size = p->stack->size;
    }
    sh->tsan_sched_fiber = hy__tsan_current();
    if (!p->tsan_fiber)
        p->tsan_fiber = hy__tsan_fiber_new();
    hy__tsan_switch(p->tsan_fiber);
#ifdef HY_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, lo, size);
    hy__ctx_switch(&sh->sched_sp, p->sp);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    (void)lo;
    (void)size;
    hy__ctx_switch(&sh->sched_sp, p->sp);
#endif
}

void hy__stack_switch_out(struct hy_shard *sh, struct hy_proc *p)
{
    hy__tsan_switch(sh->tsan_sched_fiber);
#ifdef HY_ASAN
    bool dying = p->state == HY_P_DEAD;
    __sanitizer_start_switch_fiber(dying ? NULL : &p->asan_fake, sh->sched_stack_lo,
                                   sh->sched_stack_size);
    hy__ctx_switch(&p->sp, sh->sched_sp);
    __sanitizer_finish_switch_fiber(p->asan_fake, NULL, NULL);
#else
    hy__ctx_switch(&p->sp, sh->sched_sp);
#endif
}
