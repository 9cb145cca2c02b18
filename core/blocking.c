#define _GNU_SOURCE
/* The blocking-call pool: a few plain threads that run functions which
 * would block a shard, and send the result back to the waiting process
 * through its shard's foreign inbox. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blocking.h"
#include "errors.h"
#include "shard_internal.h"

#define HY_TAG_BLOCKING_DONE (HY_TAG_SYSTEM | 0x424c)

void hy__inbox_push(struct hy_shard *target, struct hy_msg *m);

struct job {
    struct job *next;
    hy_blocking_fn fn;
    void *arg;
    hy_pid requester;
    hy_ref ref;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static bool quit;
static pthread_t threads[16];
static unsigned nthreads;

static void *worker(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "hydra-blocking");
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!head && !quit)
            pthread_cond_wait(&cond, &lock);
        if (!head && quit) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        struct job *j = head;
        head = j->next;
        if (!head)
            tail = NULL;
        pthread_mutex_unlock(&lock);

        intptr_t res = j->fn(j->arg);
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
        hy__inbox_push(hy__rt.shards[hy_pid_shard(j->requester)], m);
        free(j);
    }
}

int hy__blocking_start(unsigned n)
{
    if (n == 0)
        n = 1;
    if (n > sizeof(threads) / sizeof(threads[0]))
        n = sizeof(threads) / sizeof(threads[0]);
    quit = false;
    nthreads = 0;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0) {
            hy__blocking_stop();
            return HY_ENOMEM;
        }
        nthreads++;
    }
    return 0;
}

void hy__blocking_stop(void)
{
    pthread_mutex_lock(&lock);
    quit = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    nthreads = 0;
    /* jobs never started (runtime stopping): their requesters are gone */
    while (head) {
        struct job *j = head;
        head = j->next;
        free(j);
    }
    tail = NULL;
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
    j->fn = fn;
    j->arg = arg;
    j->requester = p->pid;
    j->next = NULL;
    hy_ref_make(&j->ref);
    hy_ref ref = j->ref;
    pthread_mutex_lock(&lock);
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    /* arg may live on our stack: exit signals wait until fn has returned */
    p->defer_exit++;
    struct hy_msg *m;
    int rc = hy_recv_ref(ref, &m, HY_INFINITY);
    p->defer_exit--;
    if (rc)
        return rc;
    intptr_t res;
    memcpy(&res, m->data, sizeof(res));
    hy_msg_free(m);
    if (result)
        *result = res;
    if (p->exit_pending && !p->defer_exit)
        hy__proc_exit_current(p, p->exit_reason_pending);
    return 0;
}
