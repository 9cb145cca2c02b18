/* Tests of otp/semaphore.c: the bound on permits (never more holders than
 * permits, across shards), FIFO order of grants and no barging past a large
 * head request, release when a holder exits (normally or killed), a dead
 * waiter leaving the queue, timeouts (the request leaves the queue and no
 * permit is granted afterwards), HY_NOWAIT, errors.
 *
 * Bodies run as processes (hy_test_run) and record failures with HY_CHECK.
 * Conditions are awaited for real (hy_semaphore_info, messages, DOWNs),
 * never with sleeps used as synchronisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS)
#define WAIT_MS 10000u

enum {
    T_IN = 1,
    T_LEAVE,
    T_STAY,
};


static struct hy_reason must_down(hy_ref ref)
{
    struct hy_reason r = hy_reason_make(HY_REASON_NOPROC);
    struct hy_msg *m = NULL;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return r;
    if (m->tag == HY_TAG_DOWN) {
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        r = d.reason;
    }
    hy_msg_free(m);
    return r;
}

static struct hy_semaphore_info info_of(hy_pid sem)
{
    struct hy_semaphore_info i;
    memset(&i, 0xff, sizeof(i));
    HY_CHECK_EQ(hy_semaphore_info(sem, &i), 0);
    /* the new name answers the same */
    struct hy_semaphore_info j;
    memset(&j, 0xff, sizeof(j));
    HY_CHECK_EQ(hy_semaphore_get_info(sem, &j), 0);
    HY_CHECK(memcmp(&i, &j, sizeof(i)) == 0);
    return i;
}

static hy_pid sem_start(unsigned permits, int shard)
{
    struct hy_semaphore_opts o = HY_SEMAPHORE_OPTS_INIT;
    o.shard = shard;
    hy_pid sem = HY_PID_NONE;
    HY_CHECK_EQ(hy_semaphore_start(permits, &o, &sem), 0);
    return sem;
}

struct waiting_cond {
    hy_pid sem;
    unsigned waiting;
    unsigned available;
    unsigned holders;
};

/* True once the semaphore shows exactly these counts. */
static bool counts_are(void *a)
{
    struct waiting_cond *w = a;
    struct hy_semaphore_info i;
    if (hy_semaphore_info(w->sem, &i) != 0)
        return false;
    return i.waiting == w->waiting && i.available == w->available && i.holders == w->holders;
}

static void wait_counts(hy_pid sem, unsigned waiting, unsigned available, unsigned holders)
{
    struct waiting_cond w = {sem, waiting, available, holders};
    HY_CHECK(hy_test_wait_until(counts_are, &w, WAIT_MS));
}

/* ---- workers ------------------------------------------------------------------- */

struct worker_arg {
    hy_pid test;
    hy_pid sem;
    unsigned id;
    unsigned n;   /* permits to take */
    bool release; /* release before exiting (else the exit releases) */
};

static atomic_int inside, max_inside;

/* Acquires, reports T_IN with its id, waits for T_LEAVE, releases (or not),
 * exits normally. */
static void worker(void *a)
{
    struct worker_arg w;
    memcpy(&w, a, sizeof(w));
    HY_CHECK_EQ(hy_semaphore_acquire(w.sem, w.n, HY_INFINITY), 0);
    int now = atomic_fetch_add(&inside, (int)w.n) + (int)w.n;
    int seen = atomic_load(&max_inside);
    while (now > seen && !atomic_compare_exchange_weak(&max_inside, &seen, now))
        ;
    HY_CHECK_EQ(hy_send(w.test, T_IN, &w.id, sizeof(w.id)), 0);
    hy_msg_free(hy_test_must_recv_tag(T_LEAVE, WAIT_NS));
    atomic_fetch_sub(&inside, (int)w.n);
    if (w.release)
        HY_CHECK_EQ(hy_semaphore_release(w.sem, w.n), 0);
}

static hy_pid spawn_worker(struct worker_arg w, int shard, hy_ref *mon)
{
    w.test = hy_self();
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.shard = shard;
    so.arg_size = sizeof(w);
    so.monitor = mon != NULL;
    so.monitor_ref = mon;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn_opt(worker, &w, &so, &pid), 0);
    return pid;
}

static unsigned recv_in(hy_pid *from)
{
    unsigned id = 0;
    struct hy_msg *m = hy_test_must_recv_tag(T_IN, WAIT_NS);
    if (m) {
        memcpy(&id, m->data, sizeof(id));
        if (from)
            *from = m->from;
        hy_msg_free(m);
    }
    return id;
}

/* ---- tests ---------------------------------------------------------------------- */

static void body_bound(void *a)
{
    (void)a;
    enum { PERMITS = 3, N = 9 };
    atomic_store(&inside, 0);
    atomic_store(&max_inside, 0);
    hy_pid sem = sem_start(PERMITS, 1);
    hy_ref mon[N];
    for (unsigned i = 0; i < N; i++) {
        struct worker_arg w = {.sem = sem, .id = i, .n = 1, .release = true};
        spawn_worker(w, (int)(i % 2), &mon[i]);
    }
    /* PERMITS get in; the others queue and nobody else is granted */
    hy_pid in[N];
    for (unsigned i = 0; i < PERMITS; i++)
        recv_in(&in[i]);
    wait_counts(sem, N - PERMITS, 0, PERMITS);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    HY_CHECK_EQ(atomic_load(&inside), PERMITS);
    /* each leaver lets exactly one more in */
    for (unsigned k = PERMITS; k < N; k++) {
        HY_CHECK_EQ(hy_send(in[k - PERMITS], T_LEAVE, NULL, 0), 0);
        recv_in(&in[k]);
        HY_CHECK(atomic_load(&max_inside) <= PERMITS);
    }
    for (unsigned k = N - PERMITS; k < N; k++)
        HY_CHECK_EQ(hy_send(in[k], T_LEAVE, NULL, 0), 0);
    for (unsigned i = 0; i < N; i++)
        must_down(mon[i]);
    HY_CHECK_EQ(atomic_load(&max_inside), PERMITS);
    struct hy_semaphore_info i = info_of(sem);
    HY_CHECK_EQ(i.available, PERMITS);
    HY_CHECK_EQ(i.holders, 0);
    HY_CHECK_EQ(i.waiting, 0);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_permits_bound_respected(void **state)
{
    (void)state;
    hy_test_run(2, body_bound, NULL);
}

static void body_fifo(void *a)
{
    (void)a;
    enum { N = 6 };
    hy_pid sem = sem_start(1, 0);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_INFINITY), 0);
    hy_ref mon[N];
    hy_pid pid[N];
    for (unsigned i = 0; i < N; i++) {
        struct worker_arg w = {.sem = sem, .id = i, .n = 1, .release = true};
        pid[i] = spawn_worker(w, (int)(i % 2), &mon[i]);
        wait_counts(sem, i + 1, 0, 1); /* queued before the next one comes */
    }
    HY_CHECK_EQ(hy_semaphore_release(sem, 1), 0);
    for (unsigned i = 0; i < N; i++) {
        hy_pid from;
        HY_CHECK_EQ(recv_in(&from), i); /* in arrival order */
        HY_CHECK(hy_pid_eq(from, pid[i]));
        HY_CHECK_EQ(hy_send(from, T_LEAVE, NULL, 0), 0);
    }
    for (unsigned i = 0; i < N; i++)
        must_down(mon[i]);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_fifo_order(void **state)
{
    (void)state;
    hy_test_run(2, body_fifo, NULL);
}

static void body_no_barging(void *a)
{
    (void)a;
    hy_pid sem = sem_start(2, 1);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 2, HY_INFINITY), 0);
    hy_ref mbig, msmall;
    struct worker_arg big = {.sem = sem, .id = 1, .n = 2, .release = true};
    hy_pid pbig = spawn_worker(big, 0, &mbig);
    wait_counts(sem, 1, 0, 1);
    struct worker_arg small = {.sem = sem, .id = 2, .n = 1, .release = true};
    hy_pid psmall = spawn_worker(small, 1, &msmall);
    wait_counts(sem, 2, 0, 1);
    /* one permit free, but the head wants two: the small one must wait */
    HY_CHECK_EQ(hy_semaphore_release(sem, 1), 0);
    wait_counts(sem, 2, 1, 1);
    /* and a newcomer does not jump the queue either */
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_semaphore_release(sem, 1), 0);
    hy_pid from = HY_PID_NONE;
    HY_CHECK_EQ(recv_in(&from), 1);
    HY_CHECK(hy_pid_eq(from, pbig));
    HY_CHECK_EQ(hy_send(pbig, T_LEAVE, NULL, 0), 0);
    HY_CHECK_EQ(recv_in(&from), 2);
    HY_CHECK(hy_pid_eq(from, psmall));
    HY_CHECK_EQ(hy_send(psmall, T_LEAVE, NULL, 0), 0);
    must_down(mbig);
    must_down(msmall);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_no_barging(void **state)
{
    (void)state;
    hy_test_run(2, body_no_barging, NULL);
}

static void body_release_on_exit(void *a)
{
    (void)a;
    hy_pid sem = sem_start(2, 1);
    /* a holder that ends normally without releasing */
    hy_ref mon;
    struct worker_arg w = {.sem = sem, .id = 1, .n = 2, .release = false};
    hy_pid holder = spawn_worker(w, 0, &mon);
    recv_in(NULL);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, 10 * MS), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_send(holder, T_LEAVE, NULL, 0), 0);
    must_down(mon);
    /* the semaphore saw the exit: waiting for the permit is enough */
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 2, WAIT_NS), 0);
    HY_CHECK_EQ(hy_semaphore_release(sem, 2), 0);

    /* a holder that is killed */
    holder = spawn_worker(w, 1, &mon);
    recv_in(NULL);
    wait_counts(sem, 0, 0, 1);
    HY_CHECK_EQ(hy_exit_pid(holder, hy_reason_make(HY_REASON_KILL)), 0);
    HY_CHECK_EQ(must_down(mon).kind, HY_REASON_KILLED);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 2, WAIT_NS), 0);
    struct hy_semaphore_info i = info_of(sem);
    HY_CHECK_EQ(i.held, 2);
    HY_CHECK_EQ(i.holders, 1);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_release_on_holder_exit(void **state)
{
    (void)state;
    hy_test_run(2, body_release_on_exit, NULL);
}

static void body_dead_waiter(void *a)
{
    (void)a;
    hy_pid sem = sem_start(1, 0);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_INFINITY), 0);
    hy_ref mon;
    struct worker_arg w = {.sem = sem, .id = 1, .n = 1, .release = true};
    hy_pid waiter = spawn_worker(w, 1, &mon);
    wait_counts(sem, 1, 0, 1);
    HY_CHECK_EQ(hy_exit_pid(waiter, hy_reason_make(HY_REASON_KILL)), 0);
    must_down(mon);
    wait_counts(sem, 0, 0, 1); /* it left the queue */
    HY_CHECK_EQ(hy_semaphore_release(sem, 1), 0);
    struct hy_semaphore_info i = info_of(sem);
    HY_CHECK_EQ(i.available, 1); /* not granted to the dead */
    HY_CHECK_EQ(i.holders, 0);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_dead_waiter_leaves_queue(void **state)
{
    (void)state;
    hy_test_run(2, body_dead_waiter, NULL);
}

static void body_timeout(void *a)
{
    (void)a;
    hy_pid sem = sem_start(1, 1);
    hy_ref mon;
    struct worker_arg w = {.sem = sem, .id = 1, .n = 1, .release = true};
    hy_pid holder = spawn_worker(w, 0, &mon);
    recv_in(NULL);
    uint64_t t0 = hy_now_ns();
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, 20 * MS), HY_ETIMEDOUT);
    HY_CHECK(hy_now_ns() - t0 >= (uint64_t)(20 * MS));
    /* the request left the queue: the permit is not granted to us later */
    struct hy_semaphore_info i = info_of(sem);
    HY_CHECK_EQ(i.waiting, 0);
    HY_CHECK_EQ(i.held, 0);
    HY_CHECK_EQ(hy_send(holder, T_LEAVE, NULL, 0), 0);
    must_down(mon);
    i = info_of(sem);
    HY_CHECK_EQ(i.available, 1);
    HY_CHECK_EQ(i.held, 0);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    /* HY_NOWAIT: at once */
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_NOWAIT), 0);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_NOWAIT), HY_ETIMEDOUT);
    HY_CHECK_EQ(hy_semaphore_release(sem, 1), 0);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_timeout(void **state)
{
    (void)state;
    hy_test_run(2, body_timeout, NULL);
}

static void body_errors(void *a)
{
    (void)a;
    hy_pid sem = sem_start(2, 0);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 0, 0), HY_EINVAL);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 3, 0), HY_EINVAL);
    HY_CHECK_EQ(hy_semaphore_release(sem, 1), HY_EPERM);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, 0), 0);
    HY_CHECK_EQ(hy_semaphore_release(sem, 2), HY_EPERM);
    HY_CHECK_EQ(hy_semaphore_release(sem, 0), HY_EINVAL);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, 0), 0); /* re-entrant count */
    HY_CHECK_EQ(info_of(sem).held, 2);
    HY_CHECK_EQ(hy_semaphore_release(sem, 2), 0);
    HY_CHECK_EQ(hy_semaphore_info(sem, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, 0), HY_ENOPROC);
    hy_pid none;
    HY_CHECK_EQ(hy_semaphore_start(0, NULL, &none), HY_EINVAL);
    /* by name, and a name taken */
    struct hy_semaphore_opts o = HY_SEMAPHORE_OPTS_INIT;
    o.name = "test_sem";
    HY_CHECK_EQ(hy_semaphore_start(1, &o, &sem), 0);
    hy_pid other = HY_PID_NONE;
    HY_CHECK_EQ(hy_semaphore_start(1, &o, &other), HY_EEXIST);
    HY_CHECK(hy_pid_eq(other, sem));
    hy_pid named = HY_PID_NONE;
    HY_CHECK_EQ(hy_whereis("test_sem", &named), 0);
    HY_CHECK(hy_pid_eq(named, sem));
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
}

static void test_semaphore_errors(void **state)
{
    (void)state;
    hy_test_run(2, body_errors, NULL);
}

static void waiter_expecting_exit(void *a)
{
    hy_pid sem;
    memcpy(&sem, a, sizeof(sem));
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_INFINITY), HY_EEXIT);
}

static void body_stop_with_waiters(void *a)
{
    (void)a;
    hy_pid sem = sem_start(1, 1);
    HY_CHECK_EQ(hy_semaphore_acquire(sem, 1, HY_INFINITY), 0);
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.arg_size = sizeof(sem);
    hy_ref mon;
    so.monitor = true;
    so.monitor_ref = &mon;
    HY_CHECK_EQ(hy_spawn_opt(waiter_expecting_exit, &sem, &so, NULL), 0);
    wait_counts(sem, 1, 0, 1);
    HY_CHECK_EQ(hy_semaphore_stop(sem, WAIT_NS), 0);
    HY_CHECK_EQ(must_down(mon).kind, HY_REASON_NORMAL);
}

static void test_semaphore_stop_fails_waiters(void **state)
{
    (void)state;
    hy_test_run(2, body_stop_with_waiters, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_semaphore_permits_bound_respected),
        cmocka_unit_test(test_semaphore_fifo_order),
        cmocka_unit_test(test_semaphore_no_barging),
        cmocka_unit_test(test_semaphore_release_on_holder_exit),
        cmocka_unit_test(test_semaphore_dead_waiter_leaves_queue),
        cmocka_unit_test(test_semaphore_timeout),
        cmocka_unit_test(test_semaphore_errors),
        cmocka_unit_test(test_semaphore_stop_fails_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
