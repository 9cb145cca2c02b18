/* Process stacks: the guarded pool and the compact (copy-stack) mode, and
 * the switch into and out of a process, annotated for AddressSanitizer. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctx_internal.h"
#include "errors.h"
#include "shard_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define HY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HY_ASAN 1
#endif
#endif

#ifdef HY_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define TRIM_INTERVAL_NS 1000000000ull

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
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

static void stack_unmap(struct hy_stack *s)
{
    void *map = s->map;
    size_t sz = s->map_size;
    munmap(map, sz);
}

void hy__stack_fini_shard(struct hy_shard *sh)
{
    while (sh->stack_pool) {
        struct hy_stack *s = sh->stack_pool;
        sh->stack_pool = s->next;
        stack_unmap(s);
    }
    sh->stack_pool_n = 0;
    if (sh->compact_map)
        munmap(sh->compact_map, sh->compact_map_size);
    sh->compact_map = NULL;
}

struct hy_stack *hy__stack_get(struct hy_shard *sh, size_t size)
{
    size = round_page(size);
    if (size == round_page(hy__rt.cfg.stack_size) && sh->stack_pool) {
        struct hy_stack *s = sh->stack_pool;
        sh->stack_pool = s->next;
        sh->stack_pool_n--;
        if (sh->stack_pool_n < sh->stack_pool_low)
            sh->stack_pool_low = sh->stack_pool_n;
        atomic_store_explicit(&sh->st.stacks_pooled, sh->stack_pool_n, memory_order_relaxed);
        return s;
    }
    size_t ps = page_size();
    size_t map_size = size + ps;
    void *map = mmap(NULL, map_size, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect((char *)map + ps, size, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, map_size);
        return NULL;
    }
    /* the record lives at the top of the stack it describes */
    struct hy_stack *s = (struct hy_stack *)((char *)map + map_size - sizeof(struct hy_stack));
    s->map = map;
    s->map_size = map_size;
    s->lo = (char *)map + ps;
    s->size = size - sizeof(struct hy_stack);
    s->next = NULL;
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
    stack_unmap(s);
}

/* Called before a shard sleeps: give back stacks the pool has not needed
 * since the last trim (a spike's leftovers), keeping stack_pool_keep. */
void hy__stack_trim(struct hy_shard *sh)
{
    uint64_t now = sh->now;
    if (now - sh->last_trim_ns < TRIM_INTERVAL_NS)
        return;
    sh->last_trim_ns = now;
    unsigned keep = hy__rt.cfg.stack_pool_keep;
    unsigned excess = sh->stack_pool_low > keep ? sh->stack_pool_low - keep : 0;
    while (excess-- && sh->stack_pool) {
        struct hy_stack *s = sh->stack_pool;
        sh->stack_pool = s->next;
        sh->stack_pool_n--;
        stack_unmap(s);
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
    if (p->stack) {
        hy__stack_put(sh, p->stack);
        p->stack = NULL;
    }
    if (sh->compact_owner == p)
        sh->compact_owner = NULL;
    free(p->copy);
    p->copy = NULL;
    p->copy_len = p->copy_cap = 0;
}

/* ---- switching ----------------------------------------------------------- */

bool hy__stack_ready(struct hy_shard *sh, struct hy_proc *p)
{
    if (p->stack)
        return true;
    p->stack = hy__stack_get(sh, p->stack_size);
    if (!p->stack)
        return false;
    p->sp = hy__ctx_make((char *)p->stack->lo + p->stack->size, hy__proc_entry, p);
    return true;
}

void hy__stack_switch_direct(struct hy_shard *sh, struct hy_proc *from, struct hy_proc *to,
                             bool dying)
{
    (void)sh;
    if (!to->tsan_fiber)
        to->tsan_fiber = hy__tsan_fiber_new();
    hy__tsan_switch(to->tsan_fiber);
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
        if (!hy__stack_ready(sh, p)) {
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
