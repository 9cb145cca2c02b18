#define _GNU_SOURCE
/* The blocking-call pool: a few plain threads that run functions which
 * would block a shard, and send the result back to the waiting process
 * through its shard's foreign inbox. */
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blocking.h"
#include "errors.h"
#include "shard_internal.h"

#define HY_TAG_BLOCKING_DONE (HY_TAG_SYSTEM | 0x424c)

void hy__inbox_push(struct hy_shard *target, struct hy_msg *m);

/* A job is shared by its worker and its requester: each drops its reference
 * under `lock`, the last one frees it. If the requester dies first (killed
 * while it waits), its stack and arena -- where arg may point -- are handed
 * to the job ("held") instead of being reused, and the worker releases them
 * once fn has returned, so fn never writes into memory someone else owns. */
struct job {
    struct job *next;
    hy_blocking_fn fn;
    void *arg;
    hy_pid requester;
    hy_ref ref;
    uint64_t epoch;           /* the runtime it belongs to */
    int refs;                 /* worker + requester */
    bool done;                /* fn returned */
    bool orphan;              /* the requester died while fn ran */
    struct hy_stack *held_stack;
    unsigned held_shard;      /* the shard held_stack belongs to */
    struct hy__arena_chunk *held_arena;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static uint64_t epoch = 1;    /* bumped at every stop: older threads leave */
static pthread_t threads[16];
static bool busy[16];
static unsigned nthreads;

_Atomic unsigned hy__stacks_held[HY_MAX_SHARDS];

static void release_held(struct hy_stack *st, unsigned shard, struct hy__arena_chunk *a)
{
    /* not back to the pool: its shard may be gone. A slab's stack is never
     * unmapped alone (the slab is unmapped whole at the shard's teardown,
     * which leaves it mapped while this stack is held): its memory is given
     * back and the count lets the teardown go ahead. Release pairs with the
     * teardown's acquire load: the pool thread is done with the stack. */
    if (st && st->slab) {
        size_t ps = (size_t)sysconf(_SC_PAGESIZE);
        madvise((char *)st->map + ps, st->map_size - ps, MADV_DONTNEED); /* guard kept */
        atomic_fetch_sub_explicit(&hy__stacks_held[shard], 1, memory_order_release);
    } else if (st) {
        munmap(st->map, st->map_size);
    }
    while (a) {
        struct hy__arena_chunk *n = a->next;
        free(a);
        a = n;
    }
}

/* Drops one reference (lock held); true when the caller must free j. */
static bool job_unref(struct job *j)
{
    return --j->refs == 0;
}

struct worker_arg {
    unsigned index;
    uint64_t epoch;
};

static void *worker(void *warg)
{
    struct worker_arg wa = *(struct worker_arg *)warg;
    free(warg);
    pthread_setname_np(pthread_self(), "hydra-blocking");
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!head && epoch == wa.epoch)
            pthread_cond_wait(&cond, &lock);
        if (epoch != wa.epoch) { /* the runtime stopped: leave */
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        struct job *j = head;
        head = j->next;
        if (!head)
            tail = NULL;
        busy[wa.index] = true;
        pthread_mutex_unlock(&lock);

        intptr_t res = j->fn(j->arg);

        pthread_mutex_lock(&lock);
        if (epoch == wa.epoch)
            busy[wa.index] = false;
        j->done = true;
        struct hy_stack *hs = NULL;
        struct hy__arena_chunk *ha = NULL;
        unsigned hshard = j->held_shard;
        if (j->orphan) {
            hs = j->held_stack;
            ha = j->held_arena;
        } else if (j->epoch == epoch) {
            /* the reply buffer is malloc'd: this thread is not a shard */
            struct hy_msg *m = malloc(sizeof(struct hy_msg) + sizeof(res));
            if (!m)
                hy__fatal("out of memory returning a blocking call's result");
            memset(m, 0, sizeof(*m));
            memcpy(m->data, &res, sizeof(res));
            m->home = HY_HOME_MALLOC;
            m->cls = HY_MSG_CLASSES - 1;
            m->size = m->cap = sizeof(res);
            m->tag = HY_TAG_BLOCKING_DONE;
            m->ref = j->ref;
            m->to = j->requester;
            m->kind = HY_K_MSG;
            /* under the lock: the runtime cannot be freed meanwhile */
            hy__inbox_push(hy__rt.shards[hy_pid_shard(j->requester)], m);
        }
        bool free_it = job_unref(j);
        bool leave = epoch != wa.epoch;
        pthread_mutex_unlock(&lock);
        release_held(hs, hshard, ha);
        if (free_it)
            free(j);
        if (leave)
            return NULL; /* abandoned by a stop while in fn: done now */
    }
}

int hy__blocking_start(unsigned n)
{
    if (n == 0)
        n = 1;
    if (n > sizeof(threads) / sizeof(threads[0]))
        n = sizeof(threads) / sizeof(threads[0]);
    nthreads = 0;
    for (unsigned i = 0; i < n; i++) {
        struct worker_arg *wa = malloc(sizeof(*wa));
        if (!wa) {
            hy__blocking_stop();
            return HY_ENOMEM;
        }
        pthread_mutex_lock(&lock);
        wa->index = i;
        wa->epoch = epoch;
        busy[i] = false;
        pthread_mutex_unlock(&lock);
        if (pthread_create(&threads[i], NULL, worker, wa) != 0) {
            free(wa);
            hy__blocking_stop();
            return HY_ENOMEM;
        }
        nthreads++;
    }
    return 0;
}

/* Called after the shards have stopped (every requester is dead). Idle
 * threads are joined; a thread still inside a call is detached and
 * abandoned: when its call returns it releases what it holds, sends
 * nothing, and exits. hy_run() does not wait for it. */
void hy__blocking_stop(void)
{
    pthread_mutex_lock(&lock);
    epoch++;
    pthread_cond_broadcast(&cond);
    bool was_busy[16];
    memcpy(was_busy, busy, sizeof(busy));
    /* jobs never started: their requesters are gone */
    struct job *q = head;
    head = tail = NULL;
    pthread_mutex_unlock(&lock);
    for (unsigned i = 0; i < nthreads; i++) {
        if (was_busy[i])
            pthread_detach(threads[i]);
        else
            pthread_join(threads[i], NULL);
    }
    nthreads = 0;
    while (q) {
        struct job *j = q;
        q = j->next;
        pthread_mutex_lock(&lock);
        struct hy_stack *hs = j->orphan ? j->held_stack : NULL;
        unsigned hshard = j->held_shard;
        struct hy__arena_chunk *ha = j->orphan ? j->held_arena : NULL;
        bool free_it = job_unref(j); /* the worker's reference */
        pthread_mutex_unlock(&lock);
        release_held(hs, hshard, ha);
        if (free_it)
            free(j);
    }
}

/* The requester p is being reaped while its job may still run (proc.c). */
void hy__blocking_proc_exit(struct hy_shard *sh, struct hy_proc *p)
{
    struct job *j = p->blocking_job;
    p->blocking_job = NULL;
    pthread_mutex_lock(&lock);
    if (!j->done) {
#ifdef __SANITIZE_ADDRESS__
        /* the dead frames' redzones: fn may still write into arg there */
        if (p->stack)
            __asan_unpoison_memory_region(p->stack->lo, p->stack->size);
#endif
        j->orphan = true;
        j->held_stack = p->stack;
        j->held_shard = sh->id;
        if (p->stack && p->stack->slab)
            atomic_fetch_add_explicit(&hy__stacks_held[sh->id], 1, memory_order_relaxed);
        j->held_arena = p->arena;
        p->stack = NULL;
        p->arena = NULL;
        p->arena_bytes = 0;
    }
    bool free_it = job_unref(j);
    pthread_mutex_unlock(&lock);
    if (free_it)
        free(j);
}

int hy_blocking_run(hy_blocking_fn fn, void *arg, intptr_t *result)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    if (!fn)
        return HY_EINVAL;
    /* the shared compact stack holds other processes' frames while we wait:
     * fn would write into them, and our copy would be restored over it */
    if (p->stack_mode == HY_STACK_COMPACT && (char *)arg >= (char *)p->shard->compact_lo &&
        (char *)arg < (char *)p->shard->compact_hi)
        return HY_EINVAL;
    if (!nthreads)
        return HY_ENOTSTARTED;
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return HY_ENOMEM;
    memset(j, 0, sizeof(*j));
    j->fn = fn;
    j->arg = arg;
    j->requester = p->pid;
    j->refs = 2;
    hy_ref_make(&j->ref);
    hy_ref ref = j->ref;
    p->blocking_job = j;
    pthread_mutex_lock(&lock);
    j->epoch = epoch;
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    /* An exit signal ends us now; arg (our stack, our arena) stays valid for
     * fn because the reap hands that memory to the job (hy__blocking_proc_exit). */
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, HY_INFINITY);
    if (rc)
        return rc; /* not reached: no timeout */
    p->blocking_job = NULL;
    pthread_mutex_lock(&lock);
    bool free_it = job_unref(j);
    pthread_mutex_unlock(&lock);
    if (free_it)
        free(j);
    intptr_t res;
    memcpy(&res, m->data, sizeof(res));
    hy_msg_free(m);
    if (result)
        *result = res;
    return 0;
}
