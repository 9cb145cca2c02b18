/* A user callback and its context, replaced while other threads may be
 * calling it (the log sink, the report handler).
 *
 * The {fn, ctx} pair lives in one of two slots; `cur` names the slot in
 * use. A call enters by counting itself in calls[slot] and checking that the
 * slot is still the current one (retrying if not), and leaves by
 * uncounting itself. hy__callback_set() fills the other slot, makes it
 * current, and then waits until the old slot's count drains: when it
 * returns, no thread is still inside the old callback (nor will enter it),
 * so its ctx may be destroyed. Both counters are seq_cst, so either the
 * setter sees a caller's count or the caller sees the new slot (the
 * store/load pairs of Dekker's algorithm). Setters are serialised by a
 * mutex; a caller takes no lock.
 *
 * A callback must therefore not block waiting on anything a setter's thread
 * does, and must not set its own callback (the set would wait for itself).
 */
#ifndef HY_CORE_CALLBACK_INTERNAL_H
#define HY_CORE_CALLBACK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

typedef void (*hy__callback_fn)(void);

struct hy__callback {
    _Atomic(hy__callback_fn) fn[2];
    void *_Atomic ctx[2];
    _Atomic unsigned cur;
    _Atomic unsigned long calls[2];
    pthread_mutex_t lock; /* serialises setters */
};

#define HY__CALLBACK_INIT {.lock = PTHREAD_MUTEX_INITIALIZER}

/* Enters a call: stores the current pair in *fn (NULL when none is set) and
 * *ctx, and returns the slot to pass to hy__callback_exit(). Context: any
 * thread; never blocks. */
unsigned hy__callback_enter(struct hy__callback *cb, hy__callback_fn *fn, void **ctx);

/* Leaves a call entered with hy__callback_enter(). */
void hy__callback_exit(struct hy__callback *cb, unsigned slot);

/* Replaces the pair and returns once every call of the previous pair has
 * returned. Context: any thread but from inside the callback itself; it
 * waits (yielding the thread) for calls in flight on other threads. */
void hy__callback_set(struct hy__callback *cb, hy__callback_fn fn, void *ctx);

/* Reads the current pair, consistently. */
void hy__callback_get(struct hy__callback *cb, hy__callback_fn *fn, void **ctx);

#endif /* HY_CORE_CALLBACK_INTERNAL_H */
