/* Tests of otp/registry.c: unique keys and their conflict error, duplicate
 * keys and dispatch to all of them (and only them), removal of entries when
 * the process exits, unregister, lookups from any shard, the routing of keys
 * to one partition per shard, counts, start on demand (once, even when two
 * processes ask while a start is under way; errors; a started process that
 * registers itself), errors.
 *
 * Bodies run as processes (hy_test_run, 2 shards) and record failures with
 * HY_CHECK. Conditions are awaited for real (lookups, messages, DOWNs,
 * process states), never with sleeps used as synchronisation. */
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
    T_READY = 1,
    T_NEWS,
    T_GOT,
    T_PING,
    T_PONG,
    T_STOP,
    T_STARTING,
    T_GO,
    T_CALLING,
    T_RESULT,
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

static hy_pid reg_start(const char *name, int kind, hy_registry_start_fn fn)
{
    struct hy_registry_opts o = HY_REGISTRY_OPTS_INIT;
    o.kind = kind;
    o.start = fn;
    hy_pid sup = HY_PID_NONE;
    HY_CHECK_EQ(hy_registry_start_link(name, &o, &sup), 0);
    return sup;
}

static size_t entries_of(const char *reg, const char *key)
{
    size_t n = 999;
    HY_CHECK_EQ(hy_registry_lookup(reg, key, strlen(key), NULL, 0, &n), 0);
    return n;
}

struct gone_cond {
    const char *reg;
    const char *key;
};

static bool key_empty(void *a)
{
    struct gone_cond *g = a;
    size_t n = 1;
    return hy_registry_lookup(g->reg, g->key, strlen(g->key), NULL, 0, &n) == 0 && n == 0;
}

static void wait_key_empty(const char *reg, const char *key)
{
    struct gone_cond g = {reg, key};
    HY_CHECK(hy_test_wait_until(key_empty, &g, WAIT_MS));
}

/* A key that lands in partition `part` (there is one per shard). */
static void key_in_partition(int part, const char *prefix, char *out, size_t cap)
{
    for (unsigned i = 0;; i++) {
        snprintf(out, cap, "%s%u", prefix, i);
        if (hy_registry_partition(out, strlen(out)) == part)
            return;
    }
}

/* ---- a generic member process --------------------------------------------------- */

struct member_arg {
    hy_pid test;
    char reg[HY_REGISTRY_NAME_MAX];
    char keys[3][32];
    unsigned nkeys;
    uint64_t value;
    unsigned id;
};

/* Registers under its keys, reports T_READY (payload: first rc), then
 * serves: T_NEWS -> T_GOT(id) to the test; T_PING -> T_PONG(1 if the
 * previous message was not news, i.e. nothing arrived before the ping);
 * T_STOP -> exits. */
static void member_main(void *a)
{
    struct member_arg ma;
    memcpy(&ma, a, sizeof(ma));
    int rc = 0;
    for (unsigned i = 0; i < ma.nkeys && rc == 0; i++)
        rc = hy_registry_register(ma.reg, ma.keys[i], strlen(ma.keys[i]), ma.value, NULL);
    hy_send(ma.test, T_READY, &rc, sizeof(rc));
    unsigned news = 0;
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            continue;
        uint64_t tag = m->tag;
        if (tag == T_NEWS) {
            news++;
            HY_CHECK_EQ(m->size, 2);
            HY_CHECK(memcmp(m->data, "hi", 2) == 0);
            hy_send(ma.test, T_GOT, &ma.id, sizeof(ma.id));
        } else if (tag == T_PING) {
            hy_send(ma.test, T_PONG, &news, sizeof(news));
        }
        hy_msg_free(m);
        if (tag == T_STOP)
            return;
    }
}

static hy_pid spawn_member(struct member_arg ma, int shard, hy_ref *mon, int *reg_rc)
{
    ma.test = hy_self();
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.shard = shard;
    so.arg_size = sizeof(ma);
    so.monitor = mon != NULL;
    so.monitor_ref = mon;
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn_opt(member_main, &ma, &so, &pid), 0);
    struct hy_msg *m = hy_test_must_recv_tag(T_READY, WAIT_NS);
    int rc = -1;
    if (m) {
        memcpy(&rc, m->data, sizeof(rc));
        hy_msg_free(m);
    }
    if (reg_rc)
        *reg_rc = rc;
    return pid;
}

static struct member_arg member(const char *reg, const char *key, unsigned id)
{
    struct member_arg ma;
    memset(&ma, 0, sizeof(ma));
    snprintf(ma.reg, sizeof(ma.reg), "%s", reg);
    snprintf(ma.keys[0], sizeof(ma.keys[0]), "%s", key);
    ma.nkeys = 1;
    ma.id = id;
    ma.value = 100 + id;
    return ma;
}

static void stop_member(hy_pid pid, hy_ref mon)
{
    HY_CHECK_EQ(hy_send(pid, T_STOP, NULL, 0), 0);
    must_down(mon);
}

/* ---- unique keys ------------------------------------------------------------------- */

static void body_unique(void *a)
{
    (void)a;
    hy_pid sup = reg_start("reg_u", HY_REGISTRY_UNIQUE, NULL);
    hy_pid owner = HY_PID_NONE;
    HY_CHECK_EQ(hy_registry_register("reg_u", "alpha", 5, 7, &owner), 0);
    /* taken, also for its holder */
    HY_CHECK_EQ(hy_registry_register("reg_u", "alpha", 5, 8, &owner), HY_EEXIST);
    HY_CHECK(hy_pid_eq(owner, hy_self()));
    /* from another process on the other shard: the conflict names the holder */
    hy_ref mon;
    int rc = 0;
    hy_pid other = spawn_member(member("reg_u", "alpha", 1), 1, &mon, &rc);
    HY_CHECK_EQ(rc, HY_EEXIST);
    struct hy_registry_entry e[2];
    size_t n = 0;
    HY_CHECK_EQ(hy_registry_lookup("reg_u", "alpha", 5, e, 2, &n), 0);
    HY_CHECK_EQ(n, 1);
    HY_CHECK(hy_pid_eq(e[0].pid, hy_self()));
    HY_CHECK_EQ(e[0].value, 7);
    hy_pid w = HY_PID_NONE;
    HY_CHECK_EQ(hy_registry_whereis("reg_u", "alpha", 5, &w), 0);
    HY_CHECK(hy_pid_eq(w, hy_self()));
    HY_CHECK_EQ(hy_registry_whereis("reg_u", "beta", 4, &w), HY_ENOENT);
    stop_member(other, mon);
    /* once freed, the key can be taken by someone else */
    HY_CHECK_EQ(hy_registry_unregister("reg_u", "alpha", 5), 0);
    other = spawn_member(member("reg_u", "alpha", 2), 1, &mon, &rc);
    HY_CHECK_EQ(rc, 0);
    HY_CHECK_EQ(hy_registry_whereis("reg_u", "alpha", 5, &w), 0);
    HY_CHECK(hy_pid_eq(w, other));
    stop_member(other, mon);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
}

static void test_registry_unique_key_conflict(void **state)
{
    (void)state;
    hy_test_run(2, body_unique, NULL);
}

/* ---- duplicate keys and dispatch ----------------------------------------------------- */

static void body_dispatch(void *a)
{
    (void)a;
    enum { N = 4 };
    hy_pid sup = reg_start("reg_d", HY_REGISTRY_DUPLICATE, NULL);
    hy_pid sub[N];
    hy_ref mon[N];
    for (unsigned i = 0; i < N; i++) {
        int rc = -1;
        sub[i] = spawn_member(member("reg_d", "topic", i), (int)(i % 2), &mon[i], &rc);
        HY_CHECK_EQ(rc, 0);
    }
    /* the same process twice under one key is allowed in a duplicate registry */
    HY_CHECK_EQ(hy_registry_register("reg_d", "self", 4, 1, NULL), 0);
    HY_CHECK_EQ(hy_registry_register("reg_d", "self", 4, 2, NULL), 0);
    HY_CHECK_EQ(entries_of("reg_d", "self"), 2);
    HY_CHECK_EQ(hy_registry_unregister("reg_d", "self", 4), 0); /* both go */
    HY_CHECK_EQ(entries_of("reg_d", "self"), 0);

    hy_ref omon;
    int rc;
    hy_pid outsider = spawn_member(member("reg_d", "other", 9), 1, &omon, &rc);
    HY_CHECK_EQ(rc, 0);

    struct hy_registry_entry e[N + 1];
    size_t n = 0;
    HY_CHECK_EQ(hy_registry_lookup("reg_d", "topic", 5, e, N + 1, &n), 0);
    HY_CHECK_EQ(n, N);
    for (unsigned i = 0; i < N && i < n; i++) { /* registration order */
        HY_CHECK(hy_pid_eq(e[i].pid, sub[i]));
        HY_CHECK_EQ(e[i].value, 100 + i);
    }
    size_t sent = 0;
    HY_CHECK_EQ(hy_registry_dispatch("reg_d", "topic", 5, T_NEWS, "hi", 2, &sent), 0);
    HY_CHECK_EQ(sent, N);
    unsigned seen = 0;
    for (unsigned i = 0; i < N; i++) {
        struct hy_msg *m = hy_test_must_recv_tag(T_GOT, WAIT_NS);
        if (!m)
            continue;
        unsigned id;
        memcpy(&id, m->data, sizeof(id));
        HY_CHECK(id < N);
        seen |= 1u << id;
        hy_msg_free(m);
    }
    HY_CHECK_EQ(seen, (1u << N) - 1);
    /* the outsider got nothing: dispatch was sent by us, so it would have
     * arrived before this ping */
    HY_CHECK_EQ(hy_send(outsider, T_PING, NULL, 0), 0);
    struct hy_msg *m = hy_test_must_recv_tag(T_PONG, WAIT_NS);
    if (m) {
        unsigned news;
        memcpy(&news, m->data, sizeof(news));
        HY_CHECK_EQ(news, 0);
        hy_msg_free(m);
    }
    /* nobody under the key: not an error */
    HY_CHECK_EQ(hy_registry_dispatch("reg_d", "nobody", 6, T_NEWS, "hi", 2, &sent), 0);
    HY_CHECK_EQ(sent, 0);
    HY_CHECK_EQ(hy_registry_dispatch("reg_d", "topic", 5, HY_TAG_EXIT, NULL, 0, &sent), HY_EINVAL);
    size_t count = 0;
    HY_CHECK_EQ(hy_registry_count("reg_d", &count), 0);
    HY_CHECK_EQ(count, N + 1);
    for (unsigned i = 0; i < N; i++)
        stop_member(sub[i], mon[i]);
    stop_member(outsider, omon);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
}

static void test_registry_duplicate_keys_dispatch_to_all(void **state)
{
    (void)state;
    hy_test_run(2, body_dispatch, NULL);
}

/* ---- removal on exit ------------------------------------------------------------------ */

static bool count_zero(void *a)
{
    size_t n = 1;
    return hy_registry_count((const char *)a, &n) == 0 && n == 0;
}

static void body_removed_on_exit(void *a)
{
    (void)a;
    for (int kind = 0; kind < 2; kind++) {
        const char *reg = kind ? "reg_xd" : "reg_xu";
        hy_pid sup = reg_start(reg, kind, NULL);
        /* keys in both partitions, the member on either shard */
        struct member_arg ma = member(reg, "", 1);
        key_in_partition(0, "p0-", ma.keys[0], sizeof(ma.keys[0]));
        key_in_partition(1, "p1-", ma.keys[1], sizeof(ma.keys[1]));
        ma.nkeys = 2;
        for (int shard = 0; shard < 2; shard++) {
            hy_ref mon;
            int rc = -1;
            hy_pid pid = spawn_member(ma, shard, &mon, &rc);
            HY_CHECK_EQ(rc, 0);
            HY_CHECK_EQ(entries_of(reg, ma.keys[0]), 1);
            HY_CHECK_EQ(entries_of(reg, ma.keys[1]), 1);
            /* killed, not unregistered: the partitions see the DOWN */
            HY_CHECK_EQ(hy_exit_pid(pid, hy_reason_make(HY_REASON_KILL)), 0);
            must_down(mon);
            wait_key_empty(reg, ma.keys[0]);
            wait_key_empty(reg, ma.keys[1]);
            HY_CHECK(hy_test_wait_until(count_zero, (void *)reg, WAIT_MS));
            /* and the key is free again */
            HY_CHECK_EQ(hy_registry_register(reg, ma.keys[0], strlen(ma.keys[0]), 0, NULL), 0);
            HY_CHECK_EQ(hy_registry_unregister(reg, ma.keys[0], strlen(ma.keys[0])), 0);
        }
        /* a normal exit removes entries too */
        hy_ref mon;
        hy_pid pid = spawn_member(ma, 1, &mon, NULL);
        stop_member(pid, mon);
        wait_key_empty(reg, ma.keys[0]);
        wait_key_empty(reg, ma.keys[1]);
        HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
    }
}

static void test_registry_removed_on_exit(void **state)
{
    (void)state;
    hy_test_run(2, body_removed_on_exit, NULL);
}

static void body_unregister(void *a)
{
    (void)a;
    hy_pid sup = reg_start("reg_un", HY_REGISTRY_UNIQUE, NULL);
    HY_CHECK_EQ(hy_registry_register("reg_un", "k", 1, 0, NULL), 0);
    HY_CHECK_EQ(hy_registry_unregister("reg_un", "k", 1), 0);
    HY_CHECK_EQ(entries_of("reg_un", "k"), 0);
    HY_CHECK_EQ(hy_registry_unregister("reg_un", "k", 1), HY_ENOENT);
    /* someone else's entry is not ours to remove */
    hy_ref mon;
    hy_pid pid = spawn_member(member("reg_un", "k", 1), 1, &mon, NULL);
    HY_CHECK_EQ(hy_registry_unregister("reg_un", "k", 1), HY_ENOENT);
    HY_CHECK_EQ(entries_of("reg_un", "k"), 1);
    stop_member(pid, mon);
    wait_key_empty("reg_un", "k");
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
}

static void test_registry_unregister(void **state)
{
    (void)state;
    hy_test_run(2, body_unregister, NULL);
}

/* ---- routing ---------------------------------------------------------------------- */

static void body_routing(void *a)
{
    (void)a;
    hy_pid sup = reg_start("reg_r", HY_REGISTRY_UNIQUE, NULL);
    /* one partition per shard, partition i on shard i, registered "<name>/<i>" */
    for (unsigned i = 0; i < 2; i++) {
        char name[HY_NAME_MAX];
        snprintf(name, sizeof(name), "reg_r/%u", i);
        hy_pid p = HY_PID_NONE;
        HY_CHECK_EQ(hy_whereis(name, &p), 0);
        HY_CHECK_EQ(hy_pid_shard(p), i);
    }
    hy_pid s = HY_PID_NONE;
    HY_CHECK_EQ(hy_whereis("reg_r", &s), 0);
    HY_CHECK(hy_pid_eq(s, sup));
    /* the documented, fixed routing */
    unsigned per[2] = {0, 0};
    for (unsigned i = 0; i < 200; i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "key%u", i);
        int part = hy_registry_partition(key, (size_t)n);
        HY_CHECK_EQ(part, (int)(hy_hash_ring_hash(key, (size_t)n) % 2));
        if (part >= 0 && part < 2)
            per[part]++;
    }
    HY_CHECK(per[0] > 50 && per[1] > 50);
    /* registered on one shard, seen from the other, in both partitions */
    for (int part = 0; part < 2; part++) {
        char key[32];
        key_in_partition(part, "route-", key, sizeof(key));
        hy_ref mon;
        hy_pid pid = spawn_member(member("reg_r", key, 1), 1 - part, &mon, NULL);
        hy_pid w = HY_PID_NONE;
        HY_CHECK_EQ(hy_registry_whereis("reg_r", key, strlen(key), &w), 0);
        HY_CHECK(hy_pid_eq(w, pid));
        stop_member(pid, mon);
    }
    HY_CHECK_EQ(hy_registry_partition(NULL, 1), -1);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
}

static void test_registry_lookup_from_any_shard(void **state)
{
    (void)state;
    hy_test_run(2, body_routing, NULL);
}

/* ---- start on demand ------------------------------------------------------------------ */

static hy_pid g_test;
static atomic_int g_starts;
static atomic_bool g_gate;

/* A started service: waits for T_STOP. */
static void service_main(void *a)
{
    (void)a;
    struct hy_msg *m;
    if (hy_recv_tag(T_STOP, &m, HY_INFINITY) == 0)
        hy_msg_free(m);
}

/* A service that registers itself under "self", then tells its starter. */
static void self_registering_main(void *a)
{
    hy_pid starter;
    memcpy(&starter, a, sizeof(starter));
    HY_CHECK_EQ(hy_registry_register("reg_s", "self", 4, 5, NULL), 0);
    hy_send(starter, T_READY, NULL, 0);
    service_main(NULL);
}

static int start_service(const void *key, size_t len, void *arg, hy_pid *out)
{
    HY_CHECK(arg == &g_starts);
    atomic_fetch_add(&g_starts, 1);
    if (len == 3 && memcmp(key, "bad", 3) == 0)
        return HY_EIO;
    if (len == 5 && memcmp(key, "crash", 5) == 0)
        hy_panic("start crashed");
    if (len == 4 && memcmp(key, "self", 4) == 0) {
        /* report only once it has registered itself */
        hy_pid self = hy_self();
        struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
        so.arg_size = sizeof(self);
        int rc = hy_spawn_opt(self_registering_main, &self, &so, out);
        struct hy_msg *m;
        if (rc == 0 && hy_recv_tag(T_READY, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
        return rc;
    }
    if (atomic_load(&g_gate)) {
        hy_pid self = hy_self();
        hy_send(g_test, T_STARTING, &self, sizeof(self));
        struct hy_msg *m;
        if (hy_recv_tag(T_GO, &m, HY_INFINITY) == 0)
            hy_msg_free(m);
    }
    struct hy_spawn_opts so = HY_SPAWN_OPTS_INIT;
    so.shard = 1; /* anywhere: the partition registers and monitors it */
    return hy_spawn_opt(service_main, NULL, &so, out);
}

static hy_pid reg_start_s(void)
{
    struct hy_registry_opts o = HY_REGISTRY_OPTS_INIT;
    o.start = start_service;
    o.start_arg = &g_starts;
    hy_pid sup = HY_PID_NONE;
    HY_CHECK_EQ(hy_registry_start_link("reg_s", &o, &sup), 0);
    return sup;
}

/* Asks for "svc", reports T_CALLING before and T_RESULT {rc, pid} after. */
static void asker_main(void *a)
{
    (void)a;
    hy_send(g_test, T_CALLING, NULL, 0);
    struct {
        int rc;
        hy_pid pid;
    } r = {0, HY_PID_NONE};
    r.rc = hy_registry_lookup_or_start("reg_s", "svc", 3, &r.pid);
    hy_send(g_test, T_RESULT, &r, sizeof(r));
}

static bool is_waiting(void *a)
{
    struct hy_proc_info info;
    return hy_proc_info(*(hy_pid *)a, &info) == 0 && info.status == HY_STATUS_WAITING;
}

static hy_pid recv_result(void)
{
    struct {
        int rc;
        hy_pid pid;
    } r = {-1, HY_PID_NONE};
    struct hy_msg *m = hy_test_must_recv_tag(T_RESULT, WAIT_NS);
    if (m) {
        memcpy(&r, m->data, sizeof(r));
        hy_msg_free(m);
    }
    HY_CHECK_EQ(r.rc, 0);
    return r.pid;
}

static void body_start_once(void *a)
{
    (void)a;
    g_test = hy_self();
    atomic_store(&g_starts, 0);
    atomic_store(&g_gate, true);
    hy_pid sup = reg_start_s();
    /* asker A starts "svc"; the start function stops at its gate */
    HY_CHECK_EQ(hy_spawn(asker_main, NULL, NULL), 0);
    hy_msg_free(hy_test_must_recv_tag(T_CALLING, WAIT_NS));
    struct hy_msg *m = hy_test_must_recv_tag(T_STARTING, WAIT_NS);
    hy_pid starter = HY_PID_NONE;
    if (m) {
        memcpy(&starter, m->data, sizeof(starter));
        hy_msg_free(m);
    }
    /* asker B, on our shard, asks while the start is under way */
    hy_pid b = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn(asker_main, NULL, &b), 0);
    hy_msg_free(hy_test_must_recv_tag(T_CALLING, WAIT_NS));
    HY_CHECK(hy_test_wait_until(is_waiting, &b, WAIT_MS)); /* its request is sent */
    /* Our lookup travels behind B's request (same shard, one FIFO per shard
     * pair), so when it answers, the partition has seen B ask: the start
     * is still pending, nothing is registered yet. */
    hy_pid w;
    HY_CHECK_EQ(hy_registry_whereis("reg_s", "svc", 3, &w), HY_ENOENT);
    HY_CHECK_EQ(atomic_load(&g_starts), 1);
    HY_CHECK_EQ(hy_send(starter, T_GO, NULL, 0), 0);
    hy_pid ra = recv_result(), rb = recv_result();
    HY_CHECK(!hy_pid_is_none(ra));
    HY_CHECK(hy_pid_eq(ra, rb));
    HY_CHECK_EQ(atomic_load(&g_starts), 1); /* started once */
    HY_CHECK_EQ(hy_registry_whereis("reg_s", "svc", 3, &w), 0);
    HY_CHECK(hy_pid_eq(w, ra));
    /* now registered: no new start */
    atomic_store(&g_gate, false);
    hy_pid again = HY_PID_NONE;
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_s", "svc", 3, &again), 0);
    HY_CHECK(hy_pid_eq(again, ra));
    HY_CHECK_EQ(atomic_load(&g_starts), 1);
    /* when it dies, the next ask starts a new one */
    hy_ref mon;
    HY_CHECK_EQ(hy_monitor(ra, &mon), 0);
    HY_CHECK_EQ(hy_send(ra, T_STOP, NULL, 0), 0);
    must_down(mon);
    wait_key_empty("reg_s", "svc");
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_s", "svc", 3, &again), 0);
    HY_CHECK(!hy_pid_eq(again, ra));
    HY_CHECK_EQ(atomic_load(&g_starts), 2);
    HY_CHECK_EQ(hy_monitor(again, &mon), 0);
    HY_CHECK_EQ(hy_send(again, T_STOP, NULL, 0), 0);
    must_down(mon);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
}

static void test_registry_start_on_demand_once(void **state)
{
    (void)state;
    hy_test_run(2, body_start_once, NULL);
}

static void body_start_errors(void *a)
{
    (void)a;
    g_test = hy_self();
    atomic_store(&g_starts, 0);
    atomic_store(&g_gate, false);
    hy_pid sup = reg_start_s();
    hy_pid pid = HY_PID_NONE;
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_s", "bad", 3, &pid), HY_EIO);
    HY_CHECK_EQ(entries_of("reg_s", "bad"), 0);
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_s", "crash", 5, &pid), HY_ESTOPPED);
    HY_CHECK_EQ(entries_of("reg_s", "crash"), 0);
    /* a failed start is not remembered: asking again runs it again */
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_s", "bad", 3, &pid), HY_EIO);
    HY_CHECK_EQ(atomic_load(&g_starts), 3);
    /* the started process registers itself: the same pid, one entry */
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_s", "self", 4, &pid), 0);
    struct hy_registry_entry e[2];
    size_t n = 0;
    HY_CHECK_EQ(hy_registry_lookup("reg_s", "self", 4, e, 2, &n), 0);
    HY_CHECK_EQ(n, 1);
    HY_CHECK(hy_pid_eq(e[0].pid, pid));
    hy_ref mon;
    HY_CHECK_EQ(hy_monitor(pid, &mon), 0);
    HY_CHECK_EQ(hy_send(pid, T_STOP, NULL, 0), 0);
    must_down(mon);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);

    /* no start function; duplicate registries cannot start */
    sup = reg_start("reg_ns", HY_REGISTRY_UNIQUE, NULL);
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_ns", "k", 1, &pid), HY_ENOTSUP);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
    sup = reg_start("reg_nd", HY_REGISTRY_DUPLICATE, NULL);
    HY_CHECK_EQ(hy_registry_lookup_or_start("reg_nd", "k", 1, &pid), HY_EINVAL);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
}

static void test_registry_start_on_demand_errors(void **state)
{
    (void)state;
    hy_test_run(2, body_start_errors, NULL);
}

/* ---- errors ---------------------------------------------------------------------- */

static void body_errors(void *a)
{
    (void)a;
    hy_pid sup = reg_start("reg_e", HY_REGISTRY_UNIQUE, NULL);
    hy_pid other;
    HY_CHECK_EQ(hy_registry_start_link("reg_e", NULL, &other), HY_EEXIST);
    HY_CHECK_EQ(hy_registry_start_link("a/b", NULL, &other), HY_EINVAL);
    HY_CHECK_EQ(hy_registry_start_link("", NULL, &other), HY_EINVAL);
    HY_CHECK_EQ(hy_registry_start_link(NULL, NULL, &other), HY_EINVAL);
    struct hy_registry_opts o = HY_REGISTRY_OPTS_INIT;
    o.kind = HY_REGISTRY_DUPLICATE;
    o.start = start_service;
    HY_CHECK_EQ(hy_registry_start_link("reg_bad", &o, &other), HY_EINVAL);
    o.kind = 7;
    o.start = NULL;
    HY_CHECK_EQ(hy_registry_start_link("reg_bad", &o, &other), HY_EINVAL);
    static char big[HY_REGISTRY_KEY_MAX + 1];
    memset(big, 'x', sizeof(big));
    HY_CHECK_EQ(hy_registry_register("reg_e", big, sizeof(big), 0, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_registry_register("reg_e", big, HY_REGISTRY_KEY_MAX, 0, NULL), 0);
    HY_CHECK_EQ(hy_registry_register("reg_e", "", 0, 0, NULL), HY_EINVAL);
    HY_CHECK_EQ(hy_registry_register("nope", "k", 1, 0, NULL), HY_ENOPROC);
    size_t n;
    HY_CHECK_EQ(hy_registry_count("nope", &n), HY_ENOPROC);
    HY_CHECK_EQ(hy_registry_stop(sup, WAIT_NS), 0);
    HY_CHECK_EQ(hy_registry_lookup("reg_e", "k", 1, NULL, 0, &n), HY_ENOPROC);
}

static void test_registry_errors(void **state)
{
    (void)state;
    hy_test_run(2, body_errors, NULL);
    hy_pid pid;
    assert_int_equal(hy_registry_register("r", "k", 1, 0, &pid), HY_ENOTPROC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_unique_key_conflict),
        cmocka_unit_test(test_registry_duplicate_keys_dispatch_to_all),
        cmocka_unit_test(test_registry_removed_on_exit),
        cmocka_unit_test(test_registry_unregister),
        cmocka_unit_test(test_registry_lookup_from_any_shard),
        cmocka_unit_test(test_registry_start_on_demand_once),
        cmocka_unit_test(test_registry_start_on_demand_errors),
        cmocka_unit_test(test_registry_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
