#include <stdint.h>
#include <string.h>

#include "ctx_internal.h"

/* Defined in ctx_<arch>.S; never called from C, only "returned" into. */
void hy__ctx_entry(void);

void *hy__ctx_make(void *stack_hi, hy__ctx_fn fn, void *arg)
{
    uintptr_t top = (uintptr_t)stack_hi & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Layout popped by hy__ctx_switch: ctl(8) r15 r14 r13 r12 rbx rbp ret,
     * then a zero "return address" of hy__ctx_entry's caller. After ret the
     * stack pointer must be 16n+8 as at any function entry. */
    uint64_t *sp = (uint64_t *)(top - 16);
    sp[0] = (uint64_t)(uintptr_t)hy__ctx_entry; /* ret target, rsp after ret = top-8 */
    sp[1] = 0;
    sp -= 7;
    uint32_t mxcsr = 0x1f80;
    uint16_t fcw = 0x037f;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fcw));
    mxcsr &= ~(uint32_t)0x3f; /* fresh context: no sticky exception flags */
    memset(sp, 0, 7 * sizeof(uint64_t));
    memcpy(&sp[0], &mxcsr, 4);
    memcpy((char *)&sp[0] + 4, &fcw, 2);
    sp[1] = 0;                           /* r15 */
    sp[2] = 0;                           /* r14 */
    sp[3] = (uint64_t)(uintptr_t)arg;    /* r13 */
    sp[4] = (uint64_t)(uintptr_t)fn;     /* r12 */
    sp[5] = 0;                           /* rbx */
    sp[6] = 0;                           /* rbp */
    return sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)fn;                /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;               /* x20 */
    sp[10] = 0;                                     /* x29 */
    sp[11] = (uint64_t)(uintptr_t)hy__ctx_entry;    /* x30 */
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    sp[20] = fpcr;
    return sp;
#else
#error "Hydra's context switch supports x86-64 and aarch64 only"
#endif
}
