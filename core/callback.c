/* A replaceable user callback whose replacement waits for the calls in
 * flight (callback_internal.h). */
#include <sched.h>

#include "callback_internal.h"

unsigned hy__callback_enter(struct hy__callback *cb, hy__callback_fn *fn, void **ctx)
{
    for (;;) {
        unsigned s = atomic_load(&cb->cur);
        /* seq_cst: pairs with the setter's store of cur and its load of
         * calls[s]: either it sees this count or this thread sees its cur */
        atomic_fetch_add(&cb->calls[s], 1);
        if (atomic_load(&cb->cur) == s) {
            *fn = atomic_load_explicit(&cb->fn[s], memory_order_relaxed);
            *ctx = atomic_load_explicit(&cb->ctx[s], memory_order_relaxed);
            return s;
        }
        /* a setter moved on meanwhile: it may be filling slot s again */
        atomic_fetch_sub_explicit(&cb->calls[s], 1, memory_order_release);
    }
}

void hy__callback_exit(struct hy__callback *cb, unsigned slot)
{
    /* release: the call's uses of ctx happen before the setter's return */
    atomic_fetch_sub_explicit(&cb->calls[slot], 1, memory_order_release);
}

void hy__callback_set(struct hy__callback *cb, hy__callback_fn fn, void *ctx)
{
    pthread_mutex_lock(&cb->lock);
    unsigned old = atomic_load_explicit(&cb->cur, memory_order_relaxed);
    unsigned s = old ^ 1u;
    /* no call reads slot s now: the previous set drained it, and a call
     * that counts itself there sees cur == old and retries */
    atomic_store_explicit(&cb->fn[s], fn, memory_order_relaxed);
    atomic_store_explicit(&cb->ctx[s], ctx, memory_order_relaxed);
    atomic_store(&cb->cur, s); /* seq_cst, publishes the pair */
    while (atomic_load(&cb->calls[old]) != 0) /* seq_cst, acquires each exit */
        sched_yield();
    pthread_mutex_unlock(&cb->lock);
}

void hy__callback_get(struct hy__callback *cb, hy__callback_fn *fn, void **ctx)
{
    unsigned s = hy__callback_enter(cb, fn, ctx);
    hy__callback_exit(cb, s);
}
