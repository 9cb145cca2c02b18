/* The ring mesh (core/mesh.c) driven by plain threads, for ThreadSanitizer
 * (which cannot follow the runtime's own stack switches). Built and run by
 * scripts/tsan-ring, with core/mesh.c compiled in and the few runtime
 * functions it calls replaced here:
 *
 *   cc -std=gnu11 -fsanitize=thread -Icore tests/core/tsan_mesh.c core/mesh.c -lpthread
 *
 * Each thread plays a shard: it sends numbered messages to every other
 * shard from a small pool of buffers it owns (so buffers must come home on
 * the return path for it to go on), drains its inbound rings and foreign
 * inbox, returns buffers home as core/msg.c does (return blocks of up to
 * 16 buffers, the addresses of the others written over the first one; now
 * and then a plain linked return list, as a list of mixed classes goes),
 * sends every other message whole in the ring's entry array (or, behind a
 * full ring, in the overflow queue, which moves it into the entry array in
 * its turn; the consumer turns it into a buffer of its own, and now and
 * then finds no buffer: the entry then waits in the ring for the next
 * drain), and sleeps on the futex as the
 * scheduler does when it has nothing to do. Foreign threads push into the
 * inboxes meanwhile. Rings are tiny so the overflow queues are used.
 * Checked: per-sender order with nothing lost or duplicated, payloads
 * intact, every buffer home, no lost wake-up, and TSan's silence.
 *
 * Exit status 0 when all is well, 1 otherwise. */
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shard_internal.h"

#define NSHARDS   3
#define NFOREIGN  2
#define POOL      512 /* buffers per shard */
#define RET_BLOCK_MAX 16 /* as core/msg.c */
#define BUF_BYTES 128    /* a class-0 buffer: holds a return block */
#define BURST     256
#define PAYLOAD   24

/* ---- what mesh.c needs from the rest of the runtime ------------------------ */

struct hy__runtime hy__rt;

void *hy__shard_mem_alloc(struct hy_shard *sh, size_t size)
{
    (void)sh;
    void *p = NULL;
    if (posix_memalign(&p, 64, (size + 63) & ~(size_t)63) != 0)
        return NULL;
    return p;
}

void hy__shard_mem_free(struct hy_shard *sh, void *p, size_t size)
{
    (void)sh;
    (void)size;
    free(p);
}

void hy__fatal(const char *what)
{
    fprintf(stderr, "tsan_mesh: fatal: %s\n", what);
    abort();
}

void hy__dispatch(struct hy_shard *sh, struct hy_msg *m);
void hy__ret_receive(struct hy_shard *sh, struct hy_msg *list);
void hy__ret_receive_bulk(struct hy_shard *sh, struct hy_msg *head);
void hy__deliver_run(struct hy_shard *sh, const uintptr_t *ms, unsigned n);
void hy__inbox_push(struct hy_shard *target, struct hy_msg *m);

/* ---- per-shard test state (touched by its own thread only) ------------------- */

struct tstate {
    struct hy_msg *free; /* own buffers at home */
    unsigned nfree;
    uint64_t sent[NSHARDS];   /* next sequence number per destination */
    uint64_t expect[NSHARDS]; /* next expected per source shard */
    uint64_t fexpect[NFOREIGN];
    uint64_t received, returned, sleeps, sent_total;
    uint64_t sent_buf;     /* of sent_total, those sent as buffers (the rest as entries) */
    uint64_t entries_in;   /* entries turned into buffers here */
    uint64_t no_buffer;    /* entries hy__msg_from_entries found no buffer for (on purpose) */
    struct hy_msg *ret[NSHARDS]; /* buffers to send home, per home */
    unsigned nret[NSHARDS];
    unsigned npush; /* return pushes so far (every fourth goes as a plain list) */
};

/* As core/msg.c's: written over the first buffer of a return block. */
struct ret_block {
    uint32_t n;
    uint32_t cls;
    struct hy_msg *v[RET_BLOCK_MAX - 1];
};
_Static_assert(sizeof(struct ret_block) <= BUF_BYTES, "a return block fits a buffer");
_Static_assert(sizeof(struct hy_msg) + PAYLOAD <= BUF_BYTES, "the payload fits a buffer");

static struct tstate ts[NSHARDS];
static uint64_t per_pair;    /* messages from each shard to each other one */
static uint64_t per_foreign; /* messages from each foreign thread to each shard */
static _Atomic uint64_t errors;
static _Atomic int done_count;
static _Atomic int go;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (atomic_fetch_add(&errors, 1) < 10)                                                     \
            fprintf(stderr, "tsan_mesh: " __VA_ARGS__);                                            \
    } while (0)

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint8_t pat(uint64_t seq, unsigned i)
{
    return (uint8_t)(seq * 31u + i);
}

static bool payload_ok(const struct hy_msg *m)
{
    for (unsigned i = 0; i < PAYLOAD; i++)
        if (m->data[i] != pat(m->tag, i))
            return false;
    return true;
}

/* As msg.c: buffers of another shard go home as a return block (ring entry
 * tagged 3: the others' addresses written over the first buffer) or, every
 * fourth time, as a plain linked list (tagged 1). */
static void ret_push(struct hy_shard *sh, unsigned home)
{
    struct tstate *t = &ts[sh->id];
    struct hy_msg *head = t->ret[home];
    if (!head)
        return;
    uintptr_t e = (uintptr_t)head | 1u;
    if (++t->npush % 4 != 0) {
        struct ret_block *b = (struct ret_block *)(void *)head;
        uint32_t n = t->nret[home];
        struct hy_msg *m = head->next; /* read before the block overwrites it */
        for (uint32_t i = 0; i + 1 < n; i++) {
            struct hy_msg *next = m->next;
            b->v[i] = m;
            m = next;
        }
        b->n = n;
        b->cls = 0;
        e |= 2u;
    }
    hy__mesh_push(sh, home, e);
    t->ret[home] = NULL;
    t->nret[home] = 0;
}

void hy__dispatch(struct hy_shard *sh, struct hy_msg *m)
{
    struct tstate *t = &ts[sh->id];
    if (m->home == HY_HOME_MALLOC) {
        unsigned f = (unsigned)m->from.hi;
        if (f >= NFOREIGN || m->tag != t->fexpect[f] || !payload_ok(m))
            FAIL("shard %u: foreign %u: got %llu, expected %llu\n", sh->id, f,
                 (unsigned long long)m->tag, (unsigned long long)t->fexpect[f % NFOREIGN]);
        t->fexpect[f % NFOREIGN] = m->tag + 1;
        t->received++;
        free(m);
        return;
    }
    unsigned src = (unsigned)m->from.hi;
    if (m->aux == 1) { /* a ring entry made into a buffer of this shard */
        if (src >= NSHARDS || m->home != sh->id || (unsigned)m->to.hi != sh->id)
            FAIL("shard %u: bad entry header (from %u home %u)\n", sh->id, src, m->home);
        else if (m->tag != t->expect[src] || !payload_ok(m))
            FAIL("shard %u: from %u (entry): got %llu, expected %llu\n", sh->id, src,
                 (unsigned long long)m->tag, (unsigned long long)t->expect[src]);
        if (src < NSHARDS)
            t->expect[src] = m->tag + 1;
        t->received++;
        free(m);
        return;
    }
    if (src >= NSHARDS || m->home != src || (unsigned)m->to.hi != sh->id) {
        FAIL("shard %u: bad header (from %u home %u)\n", sh->id, src, m->home);
        return;
    }
    if (m->tag != t->expect[src] || !payload_ok(m))
        FAIL("shard %u: from %u: got %llu, expected %llu\n", sh->id, src,
             (unsigned long long)m->tag, (unsigned long long)t->expect[src]);
    t->expect[src] = m->tag + 1;
    t->received++;
    m->next = t->ret[src];
    t->ret[src] = m;
    if (++t->nret[src] >= RET_BLOCK_MAX)
        ret_push(sh, src);
    else
        sh->ret_pending = 1;
}

void hy__ret_receive(struct hy_shard *sh, struct hy_msg *list)
{
    struct tstate *t = &ts[sh->id];
    while (list) {
        struct hy_msg *n = list->next;
        if (list->home != sh->id)
            FAIL("shard %u: got a buffer of shard %u back\n", sh->id, list->home);
        list->tag = UINT64_MAX; /* we own it again: write it */
        list->next = t->free;
        t->free = list;
        t->nfree++;
        t->returned++;
        list = n;
    }
}

/* As msg.c: the entries of a burst become buffers of the consuming shard
 * (here malloc's, marked aux 1, freed by their receiver), in place. Every
 * 97th entry finds no buffer: the call returns its position, and mesh.c
 * must leave it, and what follows it, in the ring. */
unsigned hy__msg_from_entries(struct hy_shard *sh, unsigned src, const struct hy_ring *r,
                              uintptr_t *buf, unsigned n)
{
    struct tstate *t = &ts[sh->id];
    for (unsigned k = 0; k < n; k++) {
        if (buf[k] != HY_RING_ENTRY)
            continue;
        if ((t->entries_in + t->no_buffer) % 97 == 96) {
            t->no_buffer++;
            return k;
        }
        const struct hy__centry *e = hy__ring_entry_at(r, k);
        struct hy_msg *m = calloc(1, BUF_BYTES);
        if (!m)
            abort();
        memcpy(m->data, e->data, e->size);
        m->tag = e->tag;
        m->from.hi = src;
        m->from.lo = e->from_lo;
        m->to.hi = sh->id;
        m->to.lo = e->to_lo;
        m->size = e->size;
        m->home = (uint16_t)sh->id;
        m->aux = 1;
        t->entries_in++;
        buf[k] = (uintptr_t)m;
    }
    return n;
}

/* As msg.c: the n leading entries of a burst become buffers, linked into
 * runs of consecutive messages to one receiver; the same refusal as above
 * (every 97th entry finds no buffer: the call returns how many it took,
 * and mesh.c must leave the rest in the ring). */
unsigned hy__msg_take_entries(struct hy_shard *sh, unsigned src, const struct hy_ring *r,
                              unsigned n, struct hy__mrun *runs, unsigned *nruns)
{
    uintptr_t buf[64];
    if (n > 64)
        FAIL("shard %u: a burst of %u entries\n", sh->id, n);
    for (unsigned k = 0; k < n; k++)
        buf[k] = HY_RING_ENTRY;
    unsigned done = hy__msg_from_entries(sh, src, r, buf, n);
    unsigned nr = 0;
    for (unsigned k = 0; k < done; k++) {
        struct hy_msg *m = (struct hy_msg *)buf[k];
        m->next = NULL;
        if (nr && runs[nr - 1].tail->to.lo == m->to.lo) {
            runs[nr - 1].tail->next = m;
            runs[nr - 1].tail = m;
            runs[nr - 1].n++;
        } else {
            runs[nr].head = runs[nr].tail = m;
            runs[nr++].n = 1;
        }
    }
    *nruns = nr;
    return done;
}

/* ... and hands each run over, in order */
void hy__deliver_chain(struct hy_shard *sh, const struct hy__mrun *run)
{
    unsigned n = 0;
    for (struct hy_msg *m = run->head; m;) {
        struct hy_msg *next = m->next;
        m->next = NULL;
        hy__dispatch(sh, m);
        n++;
        m = next;
    }
    if (n != run->n)
        FAIL("shard %u: a run of %u messages said %u\n", sh->id, n, run->n);
}

/* mesh.c hands runs of ordinary messages to one receiver over together */
void hy__deliver_run(struct hy_shard *sh, const uintptr_t *ms, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        hy__dispatch(sh, (struct hy_msg *)ms[i]);
}

/* As msg.c: the block's buffers are read from its array, every one is
 * written (we own them again) and the first one's header is put back. */
void hy__ret_receive_bulk(struct hy_shard *sh, struct hy_msg *head)
{
    const struct ret_block *b = (const struct ret_block *)(const void *)head;
    uint32_t n = b->n;
    if (n == 0 || n > RET_BLOCK_MAX || b->cls != 0) {
        FAIL("shard %u: a return block of %u buffers, class %u\n", sh->id, n, b->cls);
        return;
    }
    struct hy_msg *v[RET_BLOCK_MAX - 1];
    for (uint32_t i = 0; i + 1 < n; i++)
        v[i] = b->v[i];
    head->home = (uint16_t)sh->id;
    for (uint32_t i = 0; i + 1 < n; i++) {
        if (v[i]->home != sh->id)
            FAIL("shard %u: got a buffer of shard %u back in a block\n", sh->id, v[i]->home);
        v[i]->next = NULL;
    }
    head->next = NULL;
    hy__ret_receive(sh, head);
    for (uint32_t i = 0; i + 1 < n; i++)
        hy__ret_receive(sh, v[i]);
}

/* ---- a shard thread ------------------------------------------------------------- */

static bool finished(struct hy_shard *sh)
{
    struct tstate *t = &ts[sh->id];
    uint64_t expect = (NSHARDS - 1) * per_pair + NFOREIGN * per_foreign;
    return t->sent_total == (NSHARDS - 1) * per_pair && t->received == expect &&
           t->returned == t->sent_buf && hy__mesh_idle(sh);
}

/* The scheduler's idle_sleep, minus timers: sleep unless input is there. A
 * sleep that ends by its (long) timeout while input waits, and nobody
 * cleared the flag, is a lost wake-up. */
static void idle_sleep(struct hy_shard *sh)
{
    struct tstate *t = &ts[sh->id];
    atomic_store_explicit(&sh->sleeping, 1, memory_order_seq_cst);
    if (hy__mesh_has_input(sh) || atomic_load(&done_count) == NSHARDS) {
        atomic_store_explicit(&sh->sleeping, 0, memory_order_relaxed);
        return;
    }
    t->sleeps++;
    struct timespec to = {2, 0};
    long rc = syscall(SYS_futex, &sh->sleeping, FUTEX_WAIT_PRIVATE, 1, &to, NULL, 0);
    if (rc != 0 && atomic_load(&sh->sleeping) == 1 && hy__mesh_has_input(sh)) {
        /* give a waker caught between its publish and its wake a moment */
        uint64_t until = now_ns() + 200000000u;
        while (now_ns() < until && atomic_load(&sh->sleeping) == 1)
            sched_yield();
        if (atomic_load(&sh->sleeping) == 1)
            FAIL("shard %u: lost wake-up (input waited through a 2 s sleep)\n", sh->id);
    }
    atomic_store_explicit(&sh->sleeping, 0, memory_order_relaxed);
}

static void *shard_main(void *arg)
{
    struct hy_shard *sh = arg;
    struct tstate *t = &ts[sh->id];
    while (!atomic_load(&go))
        sched_yield();
    unsigned idle = 0, iter = 0;
    bool counted = false;
    uint64_t start = now_ns();
    while (atomic_load(&done_count) < NSHARDS) {
        unsigned work = 0;
        /* send a burst, round-robin over the destinations */
        for (unsigned b = 0; b < BURST && t->nfree > 0; b++) {
            unsigned dst = (sh->id + 1 + b % (NSHARDS - 1)) % NSHARDS;
            if (t->sent[dst] >= per_pair)
                continue;
            if (t->sent[dst] % 2 == 0) {
                struct hy__centry *ce = hy__mesh_entry_reserve(sh, dst);
                if (ce) {
                    ce->tag = t->sent[dst]++;
                    ce->from_lo = 0;
                    ce->to_lo = 0;
                    ce->size = PAYLOAD;
                    ce->flags = 0;
                    for (unsigned i = 0; i < PAYLOAD; i++)
                        ce->data[i] = pat(ce->tag, i);
                    hy__mesh_entry_commit(sh, dst);
                    t->sent_total++;
                    work++;
                    continue;
                }
            }
            struct hy_msg *m = t->free;
            t->free = m->next;
            t->nfree--;
            m->next = NULL;
            m->tag = t->sent[dst]++;
            m->from.hi = sh->id;
            m->to.hi = dst;
            for (unsigned i = 0; i < PAYLOAD; i++)
                m->data[i] = pat(m->tag, i);
            hy__mesh_push(sh, dst, (uintptr_t)m);
            t->sent_total++;
            t->sent_buf++;
            work++;
        }
        if (sh->ndirty | sh->novf)
            hy__mesh_flush(sh);
        work += hy__mesh_drain(sh);
        if (sh->ret_pending) {
            sh->ret_pending = 0;
            for (unsigned j = 0; j < NSHARDS; j++)
                ret_push(sh, j);
        }
        if (sh->ndirty | sh->novf)
            hy__mesh_flush(sh);
        if (!counted && finished(sh)) {
            counted = true;
            atomic_fetch_add(&done_count, 1);
        }
        /* now and then stall a little (timing variety only): the others
         * run dry, sleep, and must be woken by this shard's publishes */
        if ((++iter & 63) == (sh->id * 21u & 63))
            usleep(300);
        if (work) {
            idle = 0;
        } else if (++idle > 4 && hy__mesh_idle(sh)) {
            idle = 0;
            idle_sleep(sh);
        } else {
            sched_yield();
        }
        if (now_ns() - start > 240ull * 1000000000u) {
            FAIL("shard %u: stuck (sent %llu received %llu returned %llu)\n", sh->id,
                 (unsigned long long)t->sent_total, (unsigned long long)t->received,
                 (unsigned long long)t->returned);
            atomic_store(&done_count, NSHARDS);
        }
    }
    /* let the others out of their sleep */
    for (unsigned j = 0; j < NSHARDS; j++)
        hy__wake_shard(hy__rt.shards[j]);
    return NULL;
}

static void *foreign_main(void *arg)
{
    unsigned f = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&go))
        sched_yield();
    for (uint64_t seq = 0; seq < per_foreign; seq++) {
        for (unsigned s = 0; s < NSHARDS; s++) {
            struct hy_msg *m = calloc(1, sizeof(*m) + PAYLOAD);
            if (!m)
                abort();
            m->home = HY_HOME_MALLOC;
            m->tag = seq;
            m->from.hi = f;
            for (unsigned i = 0; i < PAYLOAD; i++)
                m->data[i] = pat(seq, i);
            hy__inbox_push(hy__rt.shards[s], m);
        }
        if (seq % 64 == 0)
            sched_yield();
    }
    return NULL;
}

int main(void)
{
    const char *e = getenv("HYDRA_TEST_SCALE");
    double scale = e && atof(e) > 0 ? atof(e) : 1.0;
    per_pair = (uint64_t)(100000 * scale) + 1;
    per_foreign = (uint64_t)(10000 * scale) + 1;

    hy__rt.nshards = NSHARDS;
    hy__rt.cfg.ring_size = 16;
    for (unsigned i = 0; i < NSHARDS; i++) {
        void *mem = NULL;
        if (posix_memalign(&mem, HY_CACHE_LINE, sizeof(struct hy_shard)) != 0)
            return 1;
        struct hy_shard *sh = mem;
        memset(sh, 0, sizeof(*sh));
        sh->id = i;
        hy__rt.shards[i] = sh;
        for (unsigned k = 0; k < POOL; k++) {
            void *mm = NULL;
            if (posix_memalign(&mm, 64, BUF_BYTES) != 0)
                return 1;
            struct hy_msg *m = mm;
            memset(m, 0, sizeof(*m));
            m->home = (uint16_t)i;
            m->next = ts[i].free;
            ts[i].free = m;
            ts[i].nfree++;
        }
    }
    if (hy__mesh_create() != 0)
        return 1;
    pthread_t th[NSHARDS], fth[NFOREIGN];
    for (unsigned i = 0; i < NSHARDS; i++)
        pthread_create(&th[i], NULL, shard_main, hy__rt.shards[i]);
    for (unsigned f = 0; f < NFOREIGN; f++)
        pthread_create(&fth[f], NULL, foreign_main, (void *)(uintptr_t)f);
    atomic_store(&go, 1);
    for (unsigned f = 0; f < NFOREIGN; f++)
        pthread_join(fth[f], NULL);
    for (unsigned i = 0; i < NSHARDS; i++)
        pthread_join(th[i], NULL);

    uint64_t overflows = 0, sleeps = 0;
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct hy_shard *sh = hy__rt.shards[i];
        struct tstate *t = &ts[i];
        overflows += atomic_load(&sh->st.ring_overflows);
        sleeps += t->sleeps;
        for (unsigned j = 0; j < NSHARDS; j++)
            if (j != i && (t->expect[j] != per_pair || t->sent[j] != per_pair))
                FAIL("shard %u: %llu of %llu from shard %u\n", i, (unsigned long long)t->expect[j],
                     (unsigned long long)per_pair, j);
        for (unsigned f = 0; f < NFOREIGN; f++)
            if (t->fexpect[f] != per_foreign)
                FAIL("shard %u: %llu of %llu from foreign %u\n", i,
                     (unsigned long long)t->fexpect[f], (unsigned long long)per_foreign, f);
        if (t->nfree != POOL)
            FAIL("shard %u: %u of %u buffers home\n", i, t->nfree, POOL);
        if (!hy__ring_empty(sh->in[(i + 1) % NSHARDS]))
            FAIL("shard %u: a ring is not empty\n", i);
    }
    uint64_t entries = 0, no_buffer = 0;
    for (unsigned i = 0; i < NSHARDS; i++) {
        entries += ts[i].entries_in;
        no_buffer += ts[i].no_buffer;
    }
    if (overflows == 0)
        FAIL("the overflow queues were never used\n");
    if (entries == 0 || no_buffer == 0)
        FAIL("ring entries: %llu carried, %llu retried (both must happen)\n",
             (unsigned long long)entries, (unsigned long long)no_buffer);
    printf("tsan_mesh: %u shards, %llu messages per pair, %llu per foreign thread and "
           "shard, %llu ring overflows, %llu ring entries (%llu retried), %llu sleeps, "
           "%llu errors\n",
           NSHARDS, (unsigned long long)per_pair, (unsigned long long)per_foreign,
           (unsigned long long)overflows, (unsigned long long)entries,
           (unsigned long long)no_buffer, (unsigned long long)sleeps,
           (unsigned long long)atomic_load(&errors));
    hy__mesh_destroy();
    for (unsigned i = 0; i < NSHARDS; i++) {
        while (ts[i].free) {
            struct hy_msg *m = ts[i].free;
            ts[i].free = m->next;
            free(m);
        }
        free(hy__rt.shards[i]);
    }
    return atomic_load(&errors) ? 1 : 0;
}
