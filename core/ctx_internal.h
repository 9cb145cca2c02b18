/* Hand-written context switch (x86-64 System V and aarch64).
 *
 * A context is just a saved stack pointer: hy__ctx_switch pushes the
 * callee-saved registers (and the FP control words) on the current stack,
 * stores the stack pointer in *from, loads `to` and pops the registers of the
 * other context. A new context is prepared by hy__ctx_make so that the first
 * switch to it "returns" into hy__ctx_entry, which calls fn(arg) on the new
 * stack. fn must never return (it switches away for good instead).
 */
#ifndef HY_CORE_CTX_INTERNAL_H
#define HY_CORE_CTX_INTERNAL_H

#include <stddef.h>

typedef void (*hy__ctx_fn)(void *arg);

/* Saves the current context in *from and resumes `to`. Returns when someone
 * switches back to *from. */
void hy__ctx_switch(void **from, void *to);

/* Prepares a context on the stack [stack_lo, stack_hi) that starts fn(arg) at
 * the first switch to it; returns the stack pointer to switch to. */
void *hy__ctx_make(void *stack_hi, hy__ctx_fn fn, void *arg);

#include "sanitize_internal.h"

/* ThreadSanitizer follows the switches only when told: each process is a
 * TSan fiber, created at its first switch-in and destroyed when it is
 * reaped; hy__tsan_switch() is called immediately before hy__ctx_switch()
 * with the fiber about to run (synchronising: what one fiber did before a
 * switch happens-before what the next does after it). No-ops otherwise. */
#ifdef HY_TSAN
#include <sanitizer/tsan_interface.h>
static inline void *hy__tsan_current(void) { return __tsan_get_current_fiber(); }
static inline void *hy__tsan_fiber_new(void) { return __tsan_create_fiber(0); }
static inline void hy__tsan_fiber_free(void *f)
{
    if (f)
        __tsan_destroy_fiber(f);
}
static inline void hy__tsan_switch(void *f) { __tsan_switch_to_fiber(f, 0); }
#else
static inline void *hy__tsan_current(void) { return NULL; }
static inline void *hy__tsan_fiber_new(void) { return NULL; }
static inline void hy__tsan_fiber_free(void *f) { (void)f; }
static inline void hy__tsan_switch(void *f) { (void)f; }
#endif

#endif /* HY_CORE_CTX_INTERNAL_H */
