/* Tests of core/signals.c (and the exit paths of core/proc.c): links, unlink,
 * exit signals and their rules, trap_exit, kill/killed, monitors (by pid and
 * by name), demonitor with and without flush, spawn_link/spawn_monitor,
 * ordering of signals against messages, aliases, process information and
 * the process list, cleanup handlers.
 *
 * Almost every rule is checked twice: with the two processes on one shard
 * (`_same_shard`) and on two shards (`_cross_shard`, the child spawned with
 * opts.shard = 1). Test bodies run as processes (hy_test_run) and record
 * failures with HY_CHECK. Every receive that must succeed has a generous
 * deadline; a message or signal that must NOT arrive is shown absent behind
 * a barrier that the ordering guarantee places after it (a later message
 * from the same sender, or the DOWN of a monitor on the would-be sender),
 * never behind a sleep (STYLE.md rule 13). */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crash_internal.h"
#include "hydra.h"
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (10000 * MS) /* for a message that must come */
#define WAIT_MS 10000u

enum {
    T_DATA = 1,
    T_GO,
    T_READY,
    T_PING,
    T_PONG,
    T_STOP,
    T_REPORT,
    T_ALIVE,
    T_SURVIVED,
    T_CMD,
    T_BARRIER,
    T_AFTER,
    T_DONE,
};

#define FAIL(what) hy_test_check_fail(__FILE__, __LINE__, "%s", (what))

#define CHECK_KIND(r, k) HY_CHECK_EQ((r).kind, (k))
#define CHECK_USER(r, c, t)                                                                        \
    do {                                                                                           \
        HY_CHECK_EQ((r).kind, HY_REASON_USER);                                                     \
        HY_CHECK_EQ((r).code, (c));                                                                \
        HY_CHECK(strcmp((r).text, (t)) == 0);                                                      \
    } while (0)

/* What a child gets (copied into its arena with arg_size). */
struct carg {
    hy_pid peer; /* usually the test's main process */
    hy_pid peer2;
    struct hy_reason reason;
    hy_alias alias;
    uint32_t n;
    uint32_t mode;
    char name[HY_NAME_MAX];
};

enum { M_REPORT_EXIT = 1 };

/* ---- helpers ------------------------------------------------------------- */

static struct hy_spawn_opts on(int shard)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = shard;
    return o;
}

static hy_pid spawn_a(struct hy_spawn_opts o, hy_proc_fn fn, const struct carg *a)
{
    o.arg_size = a ? sizeof(*a) : 0;
    hy_pid pid = HY_PID_NONE;
    int rc = hy_spawn_opt(fn, (void *)a, &o, &pid);
    HY_CHECK_EQ(rc, 0);
    return pid;
}

/* Spawns with a monitor set atomically with the spawn. */
static hy_pid spawn_mon(struct hy_spawn_opts o, hy_proc_fn fn, const struct carg *a, hy_ref *ref)
{
    o.monitor = true;
    o.monitor_ref = ref;
    *ref = HY_REF_NONE;
    hy_pid pid = spawn_a(o, fn, a);
    HY_CHECK(!hy_ref_is_none(*ref));
    return pid;
}





static struct hy_msg *must_recv(void)
{
    struct hy_msg *m = NULL;
    int rc = hy_recv(&m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    return rc == 0 ? m : NULL;
}

static void recv_tag_free(uint64_t tag)
{
    hy_msg_free(hy_test_must_recv_tag(tag, WAIT_NS));
}

static uint32_t recv_u32(uint64_t tag)
{
    struct hy_msg *m = hy_test_must_recv_tag(tag, WAIT_NS);
    if (!m)
        return UINT32_MAX;
    uint32_t v = hy_test_payload_u32(m);
    hy_msg_free(m);
    return v;
}

/* True when a message with tag is queued now (it is left queued). */
static int match_tag(const struct hy_msg *m, void *arg)
{
    return m->tag == *(const uint64_t *)arg;
}

static size_t count_tag_now(uint64_t tag)
{
    /* receive them all, then put nothing back: callers only use it where any
     * such message is already a failure or is being drained */
    size_t n = 0;
    struct hy_msg *m;
    while (hy_recv_match(match_tag, &tag, &m, HY_NOWAIT) == 0) {
        hy_msg_free(m);
        n++;
    }
    return n;
}

/* Receives the DOWN of ref; false (and a failed check) if none came. */
static bool recv_down(hy_ref ref, struct hy_down_info *out)
{
    struct hy_msg *m = NULL;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc != 0)
        return false;
    bool ok = m->tag == HY_TAG_DOWN && m->size == sizeof(*out);
    HY_CHECK(m->tag == HY_TAG_DOWN);
    HY_CHECK_EQ(m->size, sizeof(*out));
    HY_CHECK(hy_ref_eq(m->ref, ref));
    if (ok) {
        memcpy(out, m->data, sizeof(*out));
        HY_CHECK(hy_ref_eq(out->ref, ref));
        HY_CHECK(hy_pid_eq(m->from, out->pid));
    }
    hy_msg_free(m);
    return ok;
}

struct exit_match {
    hy_pid from;
};

static int is_exit_from(const struct hy_msg *m, void *arg)
{
    const struct exit_match *em = arg;
    return m->tag == HY_TAG_EXIT && hy_pid_eq(m->from, em->from);
}

/* Receives the trapped {EXIT, from, reason} message from `from`. */
static bool recv_exit(hy_pid from, struct hy_exit_info *out)
{
    struct exit_match em = {from};
    struct hy_msg *m = NULL;
    int rc = hy_recv_match(is_exit_from, &em, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc != 0)
        return false;
    bool ok = m->size == sizeof(*out);
    HY_CHECK_EQ(m->size, sizeof(*out));
    if (ok) {
        memcpy(out, m->data, sizeof(*out));
        HY_CHECK(hy_pid_eq(out->from, from));
    }
    hy_msg_free(m);
    return ok;
}

static hy_ref mon(hy_pid pid)
{
    hy_ref r = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor(pid, &r), 0);
    HY_CHECK(!hy_ref_is_none(r));
    return r;
}

static struct hy_proc_info info_of(hy_pid pid)
{
    struct hy_proc_info i;
    memset(&i, 0, sizeof(i));
    HY_CHECK_EQ(hy_proc_info(pid, &i), 0);
    return i;
}

static bool info_has_link(const struct hy_proc_info *i, hy_pid peer)
{
    for (size_t k = 0; k < i->nlinks && k < 16; k++)
        if (hy_pid_eq(i->links[k], peer))
            return true;
    return false;
}

struct pong_match {
    hy_pid from;
    uint64_t v;
};

static int is_pong(const struct hy_msg *m, void *arg)
{
    const struct pong_match *pm = arg;
    uint64_t v;
    if (m->tag != T_PONG || !hy_pid_eq(m->from, pm->from) || m->size != sizeof(v))
        return 0;
    memcpy(&v, m->data, sizeof(v));
    return v == pm->v;
}

/* A round trip with a server: proves it is alive and has handled everything
 * sent to it before. */
static bool ping(hy_pid p)
{
    static _Atomic uint64_t seq;
    struct pong_match pm = {p, atomic_fetch_add(&seq, 1) + 1};
    HY_CHECK_EQ(hy_send(p, T_PING, &pm.v, sizeof(pm.v)), 0);
    struct hy_msg *m = NULL;
    int rc = hy_recv_match(is_pong, &pm, &m, WAIT_NS);
    hy_msg_free(m);
    return rc == 0;
}

/* ---- children ------------------------------------------------------------ */

static void return_now(void *arg)
{
    (void)arg;
}

static void exit_now(void *arg)
{
    hy_exit(((const struct carg *)arg)->reason);
}

static void panic_now(void *arg)
{
    (void)arg;
    hy_panic("now %d", 3);
}

/* Waits for T_GO, then ends with a->reason (or panics with mode 1). */
static void exit_on_go(void *arg)
{
    const struct carg *a = arg;
    struct hy_msg *m = NULL;
    if (hy_recv_tag(T_GO, &m, WAIT_NS) != 0) {
        FAIL("exit_on_go: no T_GO");
        return;
    }
    hy_msg_free(m);
    if (a->mode == 1)
        hy_panic("boom %d", 9);
    hy_exit(a->reason);
}

struct server_sel {
    bool report;
};

static int server_match(const struct hy_msg *m, void *arg)
{
    const struct server_sel *s = arg;
    return m->tag == T_PING || m->tag == T_STOP || (s->report && m->tag == HY_TAG_EXIT);
}

/* Answers T_PING with T_PONG until T_STOP; other messages stay queued. With
 * M_REPORT_EXIT it forwards trapped EXIT payloads to a->peer as T_REPORT. */
static void server(void *arg)
{
    const struct carg *a = arg;
    hy_pid peer = a ? a->peer : HY_PID_NONE;
    struct server_sel sel = {a && (a->mode & M_REPORT_EXIT)};
    for (;;) {
        struct hy_msg *m = NULL;
        if (hy_recv_match(server_match, &sel, &m, WAIT_NS) != 0) {
            FAIL("server: idle for too long");
            return;
        }
        uint64_t tag = m->tag;
        if (tag == T_PING)
            hy_send(m->from, T_PONG, m->data, m->size);
        else if (tag == HY_TAG_EXIT)
            hy_send(peer, T_REPORT, m->data, m->size);
        hy_msg_free(m);
        if (tag == T_STOP)
            return;
    }
}

/* Stops a server and waits for it to end normally. */
static void stop_server(hy_pid p)
{
    hy_ref r = mon(p);
    hy_test_send_tag(p, T_STOP);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
}

/* Links to a->peer, tells a->peer2, then waits to be killed (or T_GO: then
 * exits with a->reason). */
static void linker(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_link(a->peer), 0);
    hy_test_send_tag(a->peer2, T_READY);
    struct hy_msg *m = NULL;
    if (hy_recv_tag(T_GO, &m, WAIT_NS) != 0) {
        FAIL("linker: neither killed nor told to go");
        return;
    }
    hy_msg_free(m);
    hy_exit(a->reason);
}

/* A pid that was a process and is dead now. */
static hy_pid dead_pid_on(int shard)
{
    hy_ref r;
    struct carg a = {0};
    hy_pid p = spawn_mon(on(shard), return_now, &a, &r);
    struct hy_down_info d;
    recv_down(r, &d);
    return p;
}

/* A pid of this node that never named a process (slot never used). */
static hy_pid unknown_pid_on(int shard)
{
    return hy_pid_make(hy_node_id(), hy_node_creation(), (uint16_t)shard, 1u << 22, 1);
}

/* Runs body twice: children on the main process's shard, and on shard 1. */
#define BOTH_SHARDS(name)                                                                          \
    static void test_signals_##name##_same_shard(void **state)                                     \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 0;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }                                                                                              \
    static void test_signals_##name##_cross_shard(void **state)                                    \
    {                                                                                              \
        (void)state;                                                                               \
        int s = 1;                                                                                 \
        hy_test_run(2, body_##name, &s);                                                           \
    }
#define BOTH_TESTS(name)                                                                           \
    cmocka_unit_test(test_signals_##name##_same_shard),                                            \
        cmocka_unit_test(test_signals_##name##_cross_shard)

/* ---- links ----------------------------------------------------------------- */

/* hydra tests/link.rs: a linked crash kills a process that does not trap. */
static void body_link_crash_kills(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    struct carg ba = {.mode = 1}; /* panics "boom 9" on T_GO */
    hy_ref rb;
    hy_pid b = spawn_mon(on(s), exit_on_go, &ba, &rb);
    struct carg la = {.peer = b, .peer2 = self};
    hy_ref rl;
    hy_pid l = spawn_mon(on(0), linker, &la, &rl);
    recv_tag_free(T_READY);
    hy_test_send_tag(b, T_GO);
    struct hy_down_info d;
    if (recv_down(rb, &d)) {
        CHECK_USER(d.reason, 0, "boom 9");
        HY_CHECK(hy_pid_eq(d.pid, b));
    }
    if (recv_down(rl, &d)) {
        /* the linked process died of the same reason */
        CHECK_USER(d.reason, 0, "boom 9");
        HY_CHECK(hy_pid_eq(d.pid, l));
    } else {
        hy_exit_pid(l, hy_reason_make(HY_REASON_KILL));
    }
}
BOTH_SHARDS(link_crash_kills)

/* hydra tests/link.rs: a trapped EXIT carries the reason. For every kind of
 * reason a linked child can end with. */
static void body_trapped_exit_carries_reason(void *arg)
{
    int s = *(int *)arg;
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    struct hy_reason reasons[] = {
        hy_reason_user(42, "bad input"),
        hy_reason_make(HY_REASON_NORMAL),
        hy_reason_make(HY_REASON_SHUTDOWN),
        hy_reason_make(HY_REASON_NOCONNECTION),
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        struct hy_spawn_opts o = on(s);
        o.link = true;
        struct carg a = {.reason = reasons[i]};
        hy_pid b = spawn_a(o, exit_now, &a);
        struct hy_msg *m = hy_test_must_recv_tag(HY_TAG_EXIT, WAIT_NS);
        if (!m)
            continue;
        HY_CHECK(hy_pid_eq(m->from, b));
        HY_CHECK(hy_ref_is_none(m->ref));
        HY_CHECK_EQ(m->size, sizeof(struct hy_exit_info));
        struct hy_exit_info ei;
        memcpy(&ei, m->data, sizeof(ei));
        hy_msg_free(m);
        HY_CHECK(hy_pid_eq(ei.from, b));
        HY_CHECK_EQ(ei.reason.kind, reasons[i].kind);
        HY_CHECK_EQ(ei.reason.code, reasons[i].code);
        HY_CHECK(strcmp(ei.reason.text, reasons[i].text) == 0);
        /* the link went with the signal */
        HY_CHECK_EQ(info_of(hy_self()).nlinks, 0);
    }
    /* the longest user text travels whole; a longer one is truncated */
    char text[HY_REASON_TEXT_MAX + 10];
    for (size_t k = 0; k < sizeof(text) - 1; k++)
        text[k] = (char)('a' + k % 26);
    text[sizeof(text) - 1] = '\0';
    struct hy_reason longr = hy_reason_user(-77, text);
    HY_CHECK_EQ(strlen(longr.text), HY_REASON_TEXT_MAX - 1);
    HY_CHECK(strncmp(longr.text, text, HY_REASON_TEXT_MAX - 1) == 0);
    {
        struct hy_spawn_opts lo = on(s);
        lo.link = true;
        struct carg la = {.reason = longr};
        hy_pid lb = spawn_a(lo, exit_now, &la);
        struct hy_exit_info lei;
        if (recv_exit(lb, &lei))
            CHECK_USER(lei.reason, -77, longr.text);
    }
    /* a panic's formatted text travels too */
    struct hy_spawn_opts o = on(s);
    o.link = true;
    hy_pid b = spawn_a(o, panic_now, NULL);
    struct hy_exit_info ei;
    if (recv_exit(b, &ei))
        CHECK_USER(ei.reason, 0, "now 3");
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
}
BOTH_SHARDS(trapped_exit_carries_reason)

/* Traps exits, links to a child that exits with a->reason on T_GO, tells
 * a->peer the child's pid (T_READY), and reports an EXIT if one comes. */
static void trapper(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    struct hy_spawn_opts o = on((int)a->mode);
    o.link = true;
    struct carg ca = {.reason = a->reason};
    hy_pid c = spawn_a(o, exit_on_go, &ca);
    hy_send(a->peer, T_READY, &c, sizeof(c));
    struct hy_msg *m = NULL;
    if (hy_recv_tag(HY_TAG_EXIT, &m, WAIT_NS) == 0) {
        hy_msg_free(m);
        hy_send(a->peer, T_REPORT, NULL, 0);
    }
}

/* No memory for the EXIT message of a trapping process (injected): the
 * signal is not lost, the process dies of it (a normal reason becomes an
 * error, so its supervisor notices). */
static void body_trapped_exit_no_memory(void *arg)
{
    int s = *(int *)arg;
    struct hy_reason reasons[] = {hy_reason_user(7, "boom"), hy_reason_make(HY_REASON_NORMAL)};
    for (size_t i = 0; i < 2; i++) {
        struct carg ta = {.peer = hy_self(), .reason = reasons[i], .mode = (uint32_t)s};
        hy_ref rt;
        hy_pid t = spawn_mon(on(0), trapper, &ta, &rt);
        struct hy_msg *m = hy_test_must_recv_tag(T_READY, WAIT_NS);
        if (!m)
            return;
        hy_pid c;
        memcpy(&c, m->data, sizeof(c));
        hy_msg_free(m);
        atomic_store(&hy__fail_exit_hi, t.hi);
        atomic_store(&hy__fail_exit_lo, t.lo);
        hy_test_send_tag(c, T_GO);
        struct hy_down_info d;
        bool down = recv_down(rt, &d);
        atomic_store(&hy__fail_exit_lo, 0);
        atomic_store(&hy__fail_exit_hi, 0);
        if (down && i == 0)
            CHECK_USER(d.reason, 7, "boom");
        if (down && i == 1)
            CHECK_USER(d.reason, HY_ENOMEM, "exit signal lost: out of memory");
        HY_CHECK(hy_recv_tag(T_REPORT, &m, 0) == HY_ETIMEDOUT); /* it never got an EXIT */
    }
}
BOTH_SHARDS(trapped_exit_no_memory)

/* The link made by A's hy_link() also carries A's death to B, which never
 * called link itself. */
static void body_link_is_bidirectional(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    struct carg sa = {0};
    hy_ref rb;
    hy_pid b = spawn_mon(on(s), server, &sa, &rb);
    struct carg la = {.peer = b, .peer2 = self, .reason = hy_reason_user(3, "a quits")};
    hy_ref ra;
    hy_pid a = spawn_mon(on(0), linker, &la, &ra);
    recv_tag_free(T_READY);
    /* once hy_link returned, the other side holds the link too */
    struct hy_proc_info ib = info_of(b);
    HY_CHECK_EQ(ib.nlinks, 1);
    HY_CHECK(info_has_link(&ib, a));
    struct hy_proc_info ia = info_of(a);
    HY_CHECK_EQ(ia.nlinks, 1);
    HY_CHECK(info_has_link(&ia, b));
    hy_test_send_tag(a, T_GO);
    struct hy_down_info d;
    if (recv_down(ra, &d))
        CHECK_USER(d.reason, 3, "a quits");
    if (recv_down(rb, &d))
        CHECK_USER(d.reason, 3, "a quits");
    else
        stop_server(b);
}
BOTH_SHARDS(link_is_bidirectional)

/* Linking twice is one link; linking yourself does nothing; one unlink
 * removes it on both sides; unlinking what is not linked is not an error. */
static void body_link_twice_is_one_link(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    struct carg sa = {0};
    hy_pid b = spawn_a(on(s), server, &sa);
    HY_CHECK_EQ(hy_link(self), 0);
    HY_CHECK_EQ(info_of(self).nlinks, 0);
    HY_CHECK_EQ(hy_link(b), 0);
    HY_CHECK_EQ(hy_link(b), 0);
    HY_CHECK_EQ(info_of(self).nlinks, 1);
    HY_CHECK_EQ(info_of(b).nlinks, 1);
    HY_CHECK_EQ(hy_unlink(b), 0);
    HY_CHECK_EQ(info_of(self).nlinks, 0);
    HY_CHECK_EQ(info_of(b).nlinks, 0);
    HY_CHECK_EQ(hy_unlink(b), 0);
    HY_CHECK_EQ(hy_unlink(unknown_pid_on(s)), 0);
    stop_server(b);
}
BOTH_SHARDS(link_twice_is_one_link)

/* Link to a dead or unknown pid: HY_ENOPROC to a caller that does not trap;
 * 0 and {EXIT, pid, noproc} to one that traps (OTP 25). */
static void body_link_to_dead_pid(void *arg)
{
    int s = *(int *)arg;
    hy_pid targets[3] = {
        dead_pid_on(s),
        unknown_pid_on(s),
        /* a pid of an earlier incarnation of this node */
        hy_pid_make(hy_node_id(), hy_node_creation() + 1, (uint16_t)s, 1, 1),
    };
    for (int i = 0; i < 3; i++) {
        HY_CHECK_EQ(hy_link(targets[i]), HY_ENOPROC);
        HY_CHECK_EQ(info_of(hy_self()).nlinks, 0);
    }
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    for (int i = 0; i < 3; i++) {
        HY_CHECK_EQ(hy_link(targets[i]), 0);
        struct hy_exit_info ei;
        if (recv_exit(targets[i], &ei))
            CHECK_KIND(ei.reason, HY_REASON_NOPROC);
        HY_CHECK_EQ(info_of(hy_self()).nlinks, 0);
    }
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(link_to_dead_pid)

/* Non-trapping intermediary for the unlink test: spawn_link a child, unlink
 * it, let it die, and report being alive afterwards. */
static void unlink_then_survive(void *arg)
{
    const struct carg *a = arg;
    struct hy_spawn_opts o = on((int)a->n);
    o.link = true;
    struct carg ca = {.reason = hy_reason_user(12, "late")};
    hy_pid b = spawn_a(o, exit_on_go, &ca);
    HY_CHECK_EQ(hy_unlink(b), 0);
    hy_ref r = mon(b);
    hy_test_send_tag(b, T_GO);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_USER(d.reason, 12, "late");
    hy_test_send_tag(a->peer, T_ALIVE);
}

/* hydra tests/link.rs: unlink really prevents the signal. The child's DOWN
 * is the barrier: it comes after any EXIT the child could have sent. */
static void body_unlink_prevents_exit(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    struct hy_spawn_opts o = on(s);
    o.link = true;
    struct carg ca = {.reason = hy_reason_user(11, "after unlink")};
    hy_pid b = spawn_a(o, exit_on_go, &ca);
    HY_CHECK_EQ(info_of(b).nlinks, 1);
    HY_CHECK_EQ(hy_unlink(b), 0);
    /* both directions are gone */
    HY_CHECK_EQ(info_of(self).nlinks, 0);
    HY_CHECK_EQ(info_of(b).nlinks, 0);
    hy_ref r = mon(b);
    hy_test_send_tag(b, T_GO);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_USER(d.reason, 11, "after unlink");
    HY_CHECK_EQ(count_tag_now(HY_TAG_EXIT), 0);
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);

    /* the same without trapping: the unlinker lives on */
    struct carg ua = {.peer = self, .n = (uint32_t)s};
    hy_ref ru;
    hy_pid u = spawn_mon(on(0), unlink_then_survive, &ua, &ru);
    struct hy_msg *m = must_recv();
    HY_CHECK(m && m->tag == T_ALIVE && hy_pid_eq(m->from, u));
    hy_msg_free(m);
    if (recv_down(ru, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
}
BOTH_SHARDS(unlink_prevents_exit)

/* B (trapping, monitored by nobody) is linked to A by A; B monitors A and
 * lets it go: A unlinks and dies. B must see A's DOWN and no EXIT: the
 * unlink removed A's side as well as B's. */
static void unlink_dier(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_link(a->peer), 0);
    hy_test_send_tag(a->peer, T_READY);
    recv_tag_free(T_GO);
    HY_CHECK_EQ(hy_unlink(a->peer), 0);
    hy_exit(hy_reason_user(7, "a"));
}

static void unlink_watcher(void *arg)
{
    const struct carg *a = arg;
    struct carg da = {.peer = hy_self()};
    hy_pid d = spawn_a(on((int)a->n), unlink_dier, &da);
    recv_tag_free(T_READY);
    hy_ref r = mon(d);
    hy_test_send_tag(d, T_GO);
    struct hy_down_info di;
    uint32_t ok = recv_down(r, &di) && di.reason.kind == HY_REASON_USER && di.reason.code == 7;
    ok = ok && count_tag_now(HY_TAG_EXIT) == 0;
    ok = ok && info_of(hy_self()).nlinks == 0;
    hy_test_send_u32(a->peer, T_REPORT, ok);
}

static void body_unlink_removes_both_directions(void *arg)
{
    int s = *(int *)arg;
    struct hy_spawn_opts o = on(0);
    o.trap_exit = true;
    struct carg wa = {.peer = hy_self(), .n = (uint32_t)s};
    hy_ref r;
    spawn_mon(o, unlink_watcher, &wa, &r);
    HY_CHECK_EQ(recv_u32(T_REPORT), 1);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
}
BOTH_SHARDS(unlink_removes_both_directions)

/* Unlink across shards while the peer is dying (OTP 23's unlink-id
 * exchange): once hy_unlink() returned, no EXIT from that link arrives, even
 * one already in flight. The exits race the unlink at varying distances;
 * an EXIT delivered before hy_unlink() returned is legitimate and drained
 * (the main process is not preempted between the two: huge budget). */
static void yield_then_exit(void *arg)
{
    const struct carg *a = arg;
    for (uint32_t i = 0; i < a->n; i++)
        hy_yield();
    hy_exit(a->reason);
}

static void body_unlink_races_exit(void *arg)
{
    int s = *(int *)arg;
    unsigned iters = (unsigned)hy_test_scaled(2000);
    unsigned before = 0;
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    for (unsigned i = 0; i < iters; i++) {
        struct hy_spawn_opts o = on(s);
        o.link = true;
        struct carg a = {.n = i % 5, .reason = hy_reason_user((int32_t)i, "race")};
        hy_ref r;
        hy_pid b = spawn_mon(o, yield_then_exit, &a, &r);
        for (unsigned k = 0; k < i % 4; k++)
            hy_yield();
        HY_CHECK_EQ(hy_unlink(b), 0);
        before += (unsigned)count_tag_now(HY_TAG_EXIT);
        struct hy_down_info d;
        if (recv_down(r, &d))
            CHECK_USER(d.reason, (int32_t)i, "race");
        size_t late = count_tag_now(HY_TAG_EXIT);
        if (late)
            hy_test_check_fail(__FILE__, __LINE__, "iteration %u: EXIT after hy_unlink", i);
        HY_CHECK_EQ(info_of(hy_self()).nlinks, 0);
    }
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
    print_message("unlink race: %u of %u exits arrived before the unlink\n", before, iters);
}

static void test_signals_unlink_races_exit_same_shard(void **state)
{
    (void)state;
    int s = 0;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.reductions = 1u << 30;
    hy_test_run_cfg(&cfg, body_unlink_races_exit, &s);
}

static void test_signals_unlink_races_exit_cross_shard(void **state)
{
    (void)state;
    int s = 1;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.reductions = 1u << 30;
    hy_test_run_cfg(&cfg, body_unlink_races_exit, &s);
}

/* ---- exit signals ------------------------------------------------------------- */

/* A normal exit signal is ignored by a process that does not trap; a linked
 * process that ends normally does not take it along either. */
static void normal_link_survivor(void *arg)
{
    const struct carg *a = arg;
    struct hy_spawn_opts o = on((int)a->n);
    o.link = true;
    hy_ref r;
    struct carg ca = {0};
    spawn_mon(o, return_now, &ca, &r);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
    /* its EXIT (normal) came before its DOWN: we are still here */
    hy_test_send_tag(a->peer, T_ALIVE);
}

static int alive_or_down(const struct hy_msg *m, void *arg)
{
    (void)arg;
    return m->tag == T_ALIVE || m->tag == HY_TAG_DOWN;
}

static void body_exit_normal_ignored(void *arg)
{
    int s = *(int *)arg;
    struct carg sa = {0};
    hy_ref rb;
    hy_pid b = spawn_mon(on(s), server, &sa, &rb);
    HY_CHECK_EQ(hy_exit_pid(b, hy_reason_make(HY_REASON_NORMAL)), 0);
    /* the signal came before the ping: b handled it and lives */
    HY_CHECK(ping(b));
    HY_CHECK(info_of(b).status != HY_STATUS_EXITING);
    stop_server(b);
    struct hy_down_info d;
    recv_down(rb, &d);

    struct carg na = {.peer = hy_self(), .n = (uint32_t)s};
    hy_ref rn;
    spawn_mon(on(0), normal_link_survivor, &na, &rn);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_match(alive_or_down, NULL, &m, WAIT_NS), 0);
    HY_CHECK(m && m->tag == T_ALIVE);
    hy_msg_free(m);
    if (recv_down(rn, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
}
BOTH_SHARDS(exit_normal_ignored)

/* exit(self, normal) ends the caller (not trapping) ... */
static void self_normal_exit(void *arg)
{
    const struct carg *a = arg;
    bool trapping = false;
    hy_trap_exit(a->mode != 0, &trapping);
    HY_CHECK(!trapping);
    if (a->mode == 2)
        hy_exit_pid(hy_self(), hy_reason_make(HY_REASON_KILL)); /* even trapping */
    hy_exit_pid(hy_self(), hy_reason_make(HY_REASON_NORMAL));
    uint32_t got_exit = 0;
    struct hy_msg *m = NULL;
    if (hy_recv_tag(HY_TAG_EXIT, &m, HY_NOWAIT) == 0) {
        struct hy_exit_info ei;
        memcpy(&ei, m->data, sizeof(ei));
        got_exit = hy_pid_eq(ei.from, hy_self()) && ei.reason.kind == HY_REASON_NORMAL;
        hy_msg_free(m);
    }
    hy_test_send_u32(a->peer, T_SURVIVED, got_exit);
}

static void body_exit_self_normal(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {.peer = hy_self(), .mode = 0};
    hy_ref r;
    spawn_mon(on(s), self_normal_exit, &a, &r);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
    /* its DOWN comes after anything it sent */
    HY_CHECK_EQ(count_tag_now(T_SURVIVED), 0);

    /* ... but a trapping caller gets {EXIT, self, normal} and goes on */
    a.mode = 1;
    spawn_mon(on(s), self_normal_exit, &a, &r);
    HY_CHECK_EQ(recv_u32(T_SURVIVED), 1);
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);

    /* exit(self, kill) ends even a trapping caller, with killed */
    a.mode = 2;
    spawn_mon(on(s), self_normal_exit, &a, &r);
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_KILLED);
    HY_CHECK_EQ(count_tag_now(T_SURVIVED), 0);
}
BOTH_SHARDS(exit_self_normal)

/* Any other reason ends a process that does not trap, with that reason; a
 * trapping one gets {EXIT, sender, reason}. A signal to a dead pid is
 * dropped. */
static void body_exit_signal_reason(void *arg)
{
    int s = *(int *)arg;
    struct hy_reason reasons[] = {
        hy_reason_user(5, "x"),
        hy_reason_make(HY_REASON_SHUTDOWN),
        hy_reason_make(HY_REASON_NOPROC),
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        struct carg sa = {0};
        hy_ref r;
        hy_pid b = spawn_mon(on(s), server, &sa, &r);
        HY_CHECK_EQ(hy_exit_pid(b, reasons[i]), 0);
        struct hy_down_info d;
        if (recv_down(r, &d)) {
            HY_CHECK_EQ(d.reason.kind, reasons[i].kind);
            HY_CHECK_EQ(d.reason.code, reasons[i].code);
            HY_CHECK(strcmp(d.reason.text, reasons[i].text) == 0);
        }
    }
    struct hy_spawn_opts o = on(s);
    o.trap_exit = true;
    struct carg ta = {.peer = hy_self(), .mode = M_REPORT_EXIT};
    hy_ref r;
    hy_pid t = spawn_mon(o, server, &ta, &r);
    HY_CHECK_EQ(hy_exit_pid(t, hy_reason_user(6, "trapped")), 0);
    struct hy_msg *m = hy_test_must_recv_tag(T_REPORT, WAIT_NS);
    if (m) {
        struct hy_exit_info ei;
        HY_CHECK_EQ(m->size, sizeof(ei));
        memcpy(&ei, m->data, sizeof(ei));
        HY_CHECK(hy_pid_eq(ei.from, hy_self()));
        CHECK_USER(ei.reason, 6, "trapped");
        hy_msg_free(m);
    }
    HY_CHECK(ping(t));
    stop_server(t);
    struct hy_down_info d;
    recv_down(r, &d);
    /* to the dead: dropped, not an error */
    HY_CHECK_EQ(hy_exit_pid(dead_pid_on(s), hy_reason_user(1, "late")), 0);
    HY_CHECK_EQ(hy_exit_pid(unknown_pid_on(s), hy_reason_make(HY_REASON_KILL)), 0);
}
BOTH_SHARDS(exit_signal_reason)

/* exit(pid, kill) ends even a trapping process, with reason killed; the
 * trapping target never sees it as a message. */
static void body_kill_is_untrappable(void *arg)
{
    int s = *(int *)arg;
    struct hy_spawn_opts o = on(s);
    o.trap_exit = true;
    struct carg ta = {.peer = hy_self(), .mode = M_REPORT_EXIT};
    hy_ref r;
    hy_pid t = spawn_mon(o, server, &ta, &r);
    HY_CHECK(info_of(t).trap_exit);
    HY_CHECK(ping(t)); /* it runs and traps */
    HY_CHECK_EQ(hy_exit_pid(t, hy_reason_make(HY_REASON_KILL)), 0);
    struct hy_down_info d;
    if (recv_down(r, &d)) {
        CHECK_KIND(d.reason, HY_REASON_KILLED);
        HY_CHECK(hy_pid_eq(d.pid, t));
    }
    HY_CHECK_EQ(count_tag_now(T_REPORT), 0);
}
BOTH_SHARDS(kill_is_untrappable)

/* A process that died of kill propagates killed, not kill, to its links: a
 * trapping linked process gets {EXIT, b, killed}; a non-trapping one dies
 * with killed (so kill does not cascade as kill). */
static void body_killed_propagates_as_killed(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    struct hy_spawn_opts o = on(s);
    o.trap_exit = true;
    o.link = true;
    struct carg ta = {.peer = self, .mode = M_REPORT_EXIT};
    hy_ref rb;
    hy_pid b = spawn_mon(o, server, &ta, &rb);
    struct carg la = {.peer = b, .peer2 = self};
    hy_ref rc;
    hy_pid c = spawn_mon(on(0), linker, &la, &rc);
    recv_tag_free(T_READY);
    HY_CHECK_EQ(hy_exit_pid(b, hy_reason_make(HY_REASON_KILL)), 0);
    struct hy_exit_info ei;
    if (recv_exit(b, &ei))
        CHECK_KIND(ei.reason, HY_REASON_KILLED);
    struct hy_down_info d;
    if (recv_down(rb, &d))
        CHECK_KIND(d.reason, HY_REASON_KILLED);
    if (recv_down(rc, &d))
        CHECK_KIND(d.reason, HY_REASON_KILLED);
    else
        hy_exit_pid(c, hy_reason_make(HY_REASON_KILL));
    /* b never trapped the kill */
    HY_CHECK_EQ(count_tag_now(T_REPORT), 0);
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
}
BOTH_SHARDS(killed_propagates_as_killed)

/* A process that ends with reason kill by itself sends kill through its
 * links as an ordinary link signal: trappable (OTP); a non-trapping linked
 * process dies with reason kill. */
static void body_link_signal_kill_is_trappable(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    struct hy_spawn_opts o = on(s);
    o.link = true;
    struct carg ka = {.reason = hy_reason_make(HY_REASON_KILL)};
    hy_ref rb;
    hy_pid b = spawn_mon(o, exit_on_go, &ka, &rb);
    struct carg la = {.peer = b, .peer2 = self};
    hy_ref rc;
    hy_pid c = spawn_mon(on(0), linker, &la, &rc);
    recv_tag_free(T_READY);
    hy_test_send_tag(b, T_GO);
    struct hy_exit_info ei;
    if (recv_exit(b, &ei))
        CHECK_KIND(ei.reason, HY_REASON_KILL);
    struct hy_down_info d;
    if (recv_down(rb, &d))
        CHECK_KIND(d.reason, HY_REASON_KILL);
    if (recv_down(rc, &d))
        CHECK_KIND(d.reason, HY_REASON_KILL);
    else
        hy_exit_pid(c, hy_reason_make(HY_REASON_KILL));
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
}
BOTH_SHARDS(link_signal_kill_is_trappable)

/* A signal takes effect at the target's next runtime call: a process busy
 * in a loop of hy_yield() (or of sends) is ended by it. */
static void busy_yielder(void *arg)
{
    const struct carg *a = arg;
    hy_pid dead = a->peer2;
    hy_test_send_tag(a->peer, T_READY);
    uint64_t deadline = hy_now_ns() + (uint64_t)WAIT_NS;
    uint32_t i = 0;
    while (hy_now_ns() < deadline) {
        if (a->mode)
            hy_send(dead, T_DATA, &i, sizeof(i));
        else
            hy_yield();
        i++;
    }
    FAIL("busy process was not ended by the signal");
}

static void body_busy_process_killed(void *arg)
{
    int s = *(int *)arg;
    hy_pid dead = dead_pid_on(s);
    for (uint32_t mode = 0; mode < 2; mode++) {
        struct carg a = {.peer = hy_self(), .peer2 = dead, .mode = mode};
        hy_ref r;
        hy_pid b = spawn_mon(on(s), busy_yielder, &a, &r);
        recv_tag_free(T_READY);
        HY_CHECK_EQ(hy_exit_pid(b, hy_reason_user(1, "stop")), 0);
        struct hy_down_info d;
        if (recv_down(r, &d))
            CHECK_USER(d.reason, 1, "stop");
        struct hy_spawn_opts o = on(s);
        o.trap_exit = true;
        b = spawn_mon(o, busy_yielder, &a, &r);
        recv_tag_free(T_READY);
        HY_CHECK_EQ(hy_exit_pid(b, hy_reason_make(HY_REASON_KILL)), 0);
        if (recv_down(r, &d))
            CHECK_KIND(d.reason, HY_REASON_KILLED);
    }
}
BOTH_SHARDS(busy_process_killed)

/* trap_exit reports the previous value and shows in the process info;
 * opts.trap_exit sets it from the start. */
static void body_trap_exit_flag(void *arg)
{
    int s = *(int *)arg;
    bool old = true;
    HY_CHECK_EQ(hy_trap_exit(true, &old), 0);
    HY_CHECK(!old);
    HY_CHECK(info_of(hy_self()).trap_exit);
    HY_CHECK_EQ(hy_trap_exit(false, &old), 0);
    HY_CHECK(old);
    HY_CHECK(!info_of(hy_self()).trap_exit);
    struct hy_spawn_opts o = on(s);
    o.trap_exit = true;
    struct carg a = {0};
    hy_pid t = spawn_a(o, server, &a);
    HY_CHECK(info_of(t).trap_exit);
    stop_server(t);
    hy_pid n = spawn_a(on(s), server, &a);
    HY_CHECK(!info_of(n).trap_exit);
    stop_server(n);
}
BOTH_SHARDS(trap_exit_flag)

/* ---- ordering --------------------------------------------------------------------- */

static void send_then_exit(void *arg)
{
    const struct carg *a = arg;
    for (uint32_t i = 0; i < a->n; i++)
        hy_test_send_u32(a->peer, T_DATA, i);
    hy_exit(a->reason);
}

/* Messages a process sent before it ended arrive before its EXIT and DOWN. */
static void body_messages_before_exit_and_down(void *arg)
{
    int s = *(int *)arg;
    unsigned iters = (unsigned)hy_test_scaled(1000);
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    for (unsigned it = 0; it < iters; it++) {
        struct hy_spawn_opts o = on(s);
        o.link = true;
        struct carg a = {
            .peer = hy_self(), .n = 1 + it % 40, .reason = hy_reason_user((int32_t)it, "order")};
        hy_ref r;
        hy_pid b = spawn_mon(o, send_then_exit, &a, &r);
        uint32_t next = 0;
        bool got_exit = false, got_down = false;
        while (!(got_exit && got_down)) {
            struct hy_msg *m = must_recv();
            if (!m)
                break;
            if (m->tag == T_DATA) {
                HY_CHECK(!got_exit && !got_down);
                HY_CHECK_EQ(hy_test_payload_u32(m), next);
                next++;
            } else if (m->tag == HY_TAG_EXIT) {
                HY_CHECK(hy_pid_eq(m->from, b));
                HY_CHECK_EQ(next, a.n);
                got_exit = true;
            } else if (m->tag == HY_TAG_DOWN) {
                HY_CHECK(hy_ref_eq(m->ref, r));
                HY_CHECK_EQ(next, a.n);
                got_down = true;
            } else {
                FAIL("unexpected message");
            }
            hy_msg_free(m);
        }
    }
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
}
BOTH_SHARDS(messages_before_exit_and_down)

/* A trapping process receives the messages sent to it before an exit
 * signal, in order, and then the EXIT. */
static void trap_collect(void *arg)
{
    const struct carg *a = arg;
    uint32_t next = 0, ok = 1;
    for (;;) {
        struct hy_msg *m = must_recv();
        if (!m) {
            ok = 0;
            break;
        }
        if (m->tag == T_DATA) {
            ok &= hy_test_payload_u32(m) == next;
            next++;
            hy_msg_free(m);
            continue;
        }
        if (m->tag == HY_TAG_EXIT) {
            struct hy_exit_info ei;
            memcpy(&ei, m->data, sizeof(ei));
            ok &= next == a->n && hy_pid_eq(ei.from, a->peer) && ei.reason.kind == HY_REASON_USER &&
                  ei.reason.code == a->reason.code;
        } else {
            ok = 0;
        }
        hy_msg_free(m);
        break;
    }
    hy_test_send_u32(a->peer, T_REPORT, ok);
}

static void body_messages_before_exit_signal(void *arg)
{
    int s = *(int *)arg;
    unsigned iters = (unsigned)hy_test_scaled(1000);
    for (unsigned it = 0; it < iters; it++) {
        struct hy_spawn_opts o = on(s);
        o.trap_exit = true;
        struct carg a = {
            .peer = hy_self(), .n = 1 + it % 40, .reason = hy_reason_user((int32_t)it, "sig")};
        hy_pid b = spawn_a(o, trap_collect, &a);
        for (uint32_t i = 0; i < a.n; i++)
            hy_test_send_u32(b, T_DATA, i);
        HY_CHECK_EQ(hy_exit_pid(b, a.reason), 0);
        if (recv_u32(T_REPORT) != 1)
            hy_test_check_fail(__FILE__, __LINE__, "iteration %u: order broken", it);
    }
}
BOTH_SHARDS(messages_before_exit_signal)

/* ---- monitors ----------------------------------------------------------------------- */

/* The DOWN carries the monitor reference (message ref and payload), the
 * monitored pid, no name, and the reason; the monitor shows in both
 * processes' info until it fires. */
static void body_monitor_down_fields(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {.reason = hy_reason_user(4, "m")};
    hy_pid b = spawn_a(on(s), exit_on_go, &a);
    hy_ref r = mon(b);
    HY_CHECK_EQ(info_of(hy_self()).nmonitors, 1);
    HY_CHECK_EQ(info_of(b).nmonitored_by, 1);
    hy_test_send_tag(b, T_GO);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv(&m, WAIT_NS), 0);
    if (m) {
        HY_CHECK(m->tag == HY_TAG_DOWN);
        HY_CHECK(hy_ref_eq(m->ref, r));
        HY_CHECK(hy_pid_eq(m->from, b));
        HY_CHECK_EQ(m->size, sizeof(struct hy_down_info));
        struct hy_down_info d;
        memcpy(&d, m->data, sizeof(d));
        HY_CHECK(hy_ref_eq(d.ref, r));
        HY_CHECK(hy_pid_eq(d.pid, b));
        HY_CHECK_EQ(d.name[0], '\0');
        CHECK_USER(d.reason, 4, "m");
        hy_msg_free(m);
    }
    HY_CHECK_EQ(info_of(hy_self()).nmonitors, 0);
}
BOTH_SHARDS(monitor_down_fields)

/* hydra tests/monitor.rs: DOWN by name carries the name; an unregistered
 * name gives DOWN noproc at once, with the name. */
static void register_then_exit_on_go(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_register(a->name, HY_PID_NONE), 0);
    hy_test_send_tag(a->peer, T_READY);
    recv_tag_free(T_GO);
    hy_exit(a->reason);
}

static void body_monitor_by_name(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {.peer = hy_self(), .reason = hy_reason_user(8, "bye")};
    snprintf(a.name, sizeof(a.name), "sig_svc_%d", s);
    hy_pid b = spawn_a(on(s), register_then_exit_on_go, &a);
    recv_tag_free(T_READY);
    hy_ref r = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor_name(a.name, &r), 0);
    HY_CHECK_EQ(info_of(b).nmonitored_by, 1);
    hy_test_send_tag(b, T_GO);
    struct hy_down_info d;
    if (recv_down(r, &d)) {
        HY_CHECK(strcmp(d.name, a.name) == 0);
        HY_CHECK(hy_pid_eq(d.pid, b));
        CHECK_USER(d.reason, 8, "bye");
    }
    /* the monitor is on the process the name named at the call: a new
     * holder of the name is not watched */
    struct carg sa = {0};
    hy_pid x = spawn_a(on(s), server, &sa);
    hy_pid y = spawn_a(on(s), server, &sa);
    HY_CHECK_EQ(hy_register(a.name, x), 0);
    HY_CHECK_EQ(hy_monitor_name(a.name, &r), 0);
    HY_CHECK_EQ(hy_unregister(a.name), 0);
    HY_CHECK_EQ(hy_register(a.name, y), 0);
    HY_CHECK_EQ(hy_exit_pid(x, hy_reason_user(9, "x")), 0);
    if (recv_down(r, &d)) {
        HY_CHECK(hy_pid_eq(d.pid, x));
        HY_CHECK(strcmp(d.name, a.name) == 0);
        CHECK_USER(d.reason, 9, "x");
    }
    HY_CHECK_EQ(info_of(y).nmonitored_by, 0);
    stop_server(y);
    HY_CHECK_EQ(hy_monitor_name("nobody_here", &r), 0);
    if (recv_down(r, &d)) {
        HY_CHECK(strcmp(d.name, "nobody_here") == 0);
        HY_CHECK(hy_pid_is_none(d.pid));
        CHECK_KIND(d.reason, HY_REASON_NOPROC);
    }
    char longname[HY_NAME_MAX + 1];
    memset(longname, 'x', HY_NAME_MAX);
    longname[HY_NAME_MAX] = '\0';
    HY_CHECK_EQ(hy_monitor_name(NULL, &r), HY_EINVAL);
    HY_CHECK_EQ(hy_monitor_name("", &r), HY_EINVAL);
    HY_CHECK_EQ(hy_monitor_name(longname, &r), HY_EINVAL);
}
BOTH_SHARDS(monitor_by_name)

/* hydra tests/monitor.rs: two noproc DOWNs arrive in call order (and so do
 * more, for dead and never-used pids and unregistered names). */
static void body_monitor_noproc_in_call_order(void *arg)
{
    int s = *(int *)arg;
    hy_pid d1 = dead_pid_on(s), d2 = dead_pid_on(s);
    hy_pid targets[4] = {d1, d2, unknown_pid_on(s), d1};
    for (int round = 0; round < 2; round++) {
        hy_ref refs[4];
        for (int i = 0; i < 4; i++)
            refs[i] = mon(targets[i]);
        for (int i = 0; i < 4; i++) {
            struct hy_msg *m = must_recv();
            if (!m)
                break;
            HY_CHECK(m->tag == HY_TAG_DOWN);
            HY_CHECK(hy_ref_eq(m->ref, refs[i]));
            struct hy_down_info d;
            memcpy(&d, m->data, sizeof(d));
            HY_CHECK(hy_pid_eq(d.pid, targets[i]));
            CHECK_KIND(d.reason, HY_REASON_NOPROC);
            hy_msg_free(m);
        }
    }
    /* a shard this node does not have, an earlier incarnation */
    hy_pid bogus[2] = {
        hy_pid_make(hy_node_id(), hy_node_creation(), 7, 1, 1),
        hy_pid_make(hy_node_id(), hy_node_creation() + 1, (uint16_t)s, 1, 1),
    };
    for (int i = 0; i < 2; i++) {
        struct hy_down_info d;
        if (recv_down(mon(bogus[i]), &d)) {
            HY_CHECK(hy_pid_eq(d.pid, bogus[i]));
            CHECK_KIND(d.reason, HY_REASON_NOPROC);
        }
    }
    hy_ref n1, n2;
    HY_CHECK_EQ(hy_monitor_name("no_such_1", &n1), 0);
    HY_CHECK_EQ(hy_monitor_name("no_such_2", &n2), 0);
    struct hy_msg *m = must_recv();
    HY_CHECK(m && hy_ref_eq(m->ref, n1));
    hy_msg_free(m);
    m = must_recv();
    HY_CHECK(m && hy_ref_eq(m->ref, n2));
    hy_msg_free(m);
    HY_CHECK_EQ(info_of(hy_self()).nmonitors, 0);
}
BOTH_SHARDS(monitor_noproc_in_call_order)

/* A monitor fires once; two monitors on one process fire once each. The
 * barrier is a third monitor set after the death: its noproc DOWN comes from
 * the same shard, after any duplicate. */
static void body_monitor_fires_once(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {.reason = hy_reason_user(2, "once")};
    hy_pid b = spawn_a(on(s), exit_on_go, &a);
    hy_ref r1 = mon(b), r2 = mon(b);
    HY_CHECK(!hy_ref_eq(r1, r2));
    HY_CHECK_EQ(info_of(b).nmonitored_by, 2);
    hy_test_send_tag(b, T_GO);
    struct hy_down_info d;
    if (recv_down(r1, &d))
        CHECK_USER(d.reason, 2, "once");
    if (recv_down(r2, &d))
        CHECK_USER(d.reason, 2, "once");
    hy_ref r3 = mon(b);
    if (recv_down(r3, &d))
        CHECK_KIND(d.reason, HY_REASON_NOPROC);
    HY_CHECK_EQ(count_tag_now(HY_TAG_DOWN), 0);
}
BOTH_SHARDS(monitor_fires_once)

/* hydra tests/monitor.rs: nothing after demonitor. A second monitor on the
 * same process is the barrier. The target forgets the monitor too. */
static void body_demonitor_nothing_after(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {.reason = hy_reason_user(1, "x")};
    hy_pid b = spawn_a(on(s), exit_on_go, &a);
    hy_ref r1 = mon(b);
    HY_CHECK_EQ(info_of(b).nmonitored_by, 1);
    HY_CHECK_EQ(hy_demonitor(r1, false), 0);
    HY_CHECK_EQ(info_of(hy_self()).nmonitors, 0);
    HY_CHECK_EQ(info_of(b).nmonitored_by, 0);
    hy_ref r2 = mon(b);
    hy_test_send_tag(b, T_GO);
    struct hy_down_info d;
    if (recv_down(r2, &d))
        CHECK_USER(d.reason, 1, "x");
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_ref(r1, &m, HY_NOWAIT), HY_ETIMEDOUT);
    hy_msg_free(m);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    /* demonitoring a fired, an unknown or a removed monitor is fine */
    HY_CHECK_EQ(hy_demonitor(r2, false), 0);
    HY_CHECK_EQ(hy_demonitor(r1, true), 0);
    HY_CHECK_EQ(hy_demonitor(HY_REF_NONE, true), 0);
}
BOTH_SHARDS(demonitor_nothing_after)

/* demonitor with flush, racing the target's death at varying distances:
 * once it returned, no DOWN for that reference is ever received. */
static void body_demonitor_flush_races_down(void *arg)
{
    int s = *(int *)arg;
    unsigned iters = (unsigned)hy_test_scaled(2000);
    for (unsigned i = 0; i < iters; i++) {
        struct carg a = {.n = i % 3};
        hy_pid b = spawn_a(on(s), yield_then_exit, &a);
        hy_ref r1 = mon(b);
        for (unsigned k = 0; k < i % 5; k++)
            hy_yield();
        HY_CHECK_EQ(hy_demonitor(r1, true), 0);
        hy_ref r2 = mon(b);
        struct hy_down_info d;
        recv_down(r2, &d);
        struct hy_msg *m = NULL;
        if (hy_recv_ref(r1, &m, HY_NOWAIT) == 0) {
            hy_test_check_fail(__FILE__, __LINE__, "iteration %u: DOWN after demonitor", i);
            hy_msg_free(m);
        }
    }
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(demonitor_flush_races_down)

/* demonitor(flush) removes a DOWN already queued; without flush a queued
 * DOWN stays (only later ones are suppressed). */
static bool mailbox_nonempty(void *arg)
{
    (void)arg;
    return hy_mailbox_len() > 0;
}

static void body_demonitor_flush_removes_queued(void *arg)
{
    int s = *(int *)arg;
    struct carg a = {0};
    hy_ref r;
    spawn_mon(on(s), return_now, &a, &r);
    HY_CHECK(hy_test_wait_until(mailbox_nonempty, NULL, WAIT_MS));
    HY_CHECK_EQ(hy_mailbox_len(), 1);
    HY_CHECK_EQ(hy_demonitor(r, true), 0);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_tag(HY_TAG_DOWN, &m, HY_NOWAIT), HY_ETIMEDOUT);

    spawn_mon(on(s), return_now, &a, &r);
    HY_CHECK(hy_test_wait_until(mailbox_nonempty, NULL, WAIT_MS));
    HY_CHECK_EQ(hy_demonitor(r, false), 0);
    HY_CHECK_EQ(hy_mailbox_len(), 1);
    struct hy_down_info d;
    recv_down(r, &d);
}
BOTH_SHARDS(demonitor_flush_removes_queued)

/* Monitoring yourself returns a reference (as OTP) and never fires. */
static void self_monitor(void *arg)
{
    const struct carg *a = arg;
    hy_ref r1 = HY_REF_NONE, r2 = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor(hy_self(), &r1), 0);
    HY_CHECK_EQ(hy_monitor(hy_self(), &r2), 0);
    HY_CHECK(!hy_ref_is_none(r1) && !hy_ref_is_none(r2) && !hy_ref_eq(r1, r2));
    struct hy_proc_info i = info_of(hy_self());
    HY_CHECK_EQ(i.nmonitors, 0);
    HY_CHECK_EQ(i.nmonitored_by, 1); /* the parent's monitor only */
    uint32_t ok = hy_test_check_failures() == 0;
    ok = ok && ping(a->peer) && hy_mailbox_len() == 0;
    ok = ok && hy_demonitor(r1, true) == 0;
    hy_test_send_u32(a->peer, T_REPORT, ok);
    hy_exit(hy_reason_user(1, "self"));
}

/* the child pings its peer: answer it here */
static void body_monitor_self_main(void *arg)
{
    int s = *(int *)arg;
    struct carg b = {.peer = hy_self()};
    hy_ref r;
    spawn_mon(on(s), self_monitor, &b, &r);
    /* serve the child's ping, then collect its report and DOWN */
    struct hy_msg *m = hy_test_must_recv_tag(T_PING, WAIT_NS);
    if (m) {
        hy_send(m->from, T_PONG, m->data, m->size);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(recv_u32(T_REPORT), 1);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_USER(d.reason, 1, "self");
    HY_CHECK_EQ(hy_mailbox_len(), 0);
    /* and in the main process itself */
    hy_ref rs = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor(hy_self(), &rs), 0);
    HY_CHECK(!hy_ref_is_none(rs));
    HY_CHECK_EQ(info_of(hy_self()).nmonitors, 0);
    HY_CHECK_EQ(hy_demonitor(rs, false), 0);
}

static void test_signals_monitor_self_same_shard(void **state)
{
    (void)state;
    int s = 0;
    hy_test_run(2, body_monitor_self_main, &s);
}

static void test_signals_monitor_self_cross_shard(void **state)
{
    (void)state;
    int s = 1;
    hy_test_run(2, body_monitor_self_main, &s);
}

/* ---- spawn_link / spawn_monitor -------------------------------------------------------- */

/* hydra tests/monitor.rs: spawn_monitor catches an immediate crash. */
static void body_spawn_monitor_immediate_crash(void *arg)
{
    int s = *(int *)arg;
    unsigned iters = (unsigned)hy_test_scaled(100);
    for (unsigned i = 0; i < iters; i++) {
        hy_ref r;
        hy_pid c = spawn_mon(on(s), panic_now, NULL, &r);
        struct hy_down_info d;
        if (recv_down(r, &d)) {
            HY_CHECK(hy_pid_eq(d.pid, c));
            CHECK_USER(d.reason, 0, "now 3");
        }
    }
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(spawn_monitor_immediate_crash)

/* spawn_link catches an immediate crash: a trapping parent gets the EXIT; a
 * non-trapping parent dies of it. */
static void spawn_link_crasher(void *arg)
{
    struct hy_spawn_opts o = on(((const struct carg *)arg)->n);
    o.link = true;
    spawn_a(o, panic_now, NULL);
    struct hy_msg *m = NULL;
    if (hy_recv_tag(T_GO, &m, WAIT_NS) == 0)
        hy_msg_free(m);
    FAIL("parent outlived its spawn_linked child's crash");
}

static void body_spawn_link_immediate_crash(void *arg)
{
    int s = *(int *)arg;
    unsigned iters = (unsigned)hy_test_scaled(100);
    HY_CHECK_EQ(hy_trap_exit(true, NULL), 0);
    for (unsigned i = 0; i < iters; i++) {
        struct hy_spawn_opts o = on(s);
        o.link = true;
        hy_pid c = spawn_a(o, panic_now, NULL);
        struct hy_exit_info ei;
        if (recv_exit(c, &ei))
            CHECK_USER(ei.reason, 0, "now 3");
    }
    HY_CHECK_EQ(hy_trap_exit(false, NULL), 0);
    for (unsigned i = 0; i < iters / 4 + 1; i++) {
        struct carg a = {.n = (uint32_t)s};
        hy_ref r;
        spawn_mon(on(0), spawn_link_crasher, &a, &r);
        struct hy_down_info d;
        if (recv_down(r, &d))
            CHECK_USER(d.reason, 0, "now 3");
    }
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(spawn_link_immediate_crash)

/* ---- ending a process: hy_exit from depth, hy_panic, cleanup handlers ----------------------- */

struct cleanup_log {
    _Atomic unsigned n;
    int ids[8];
};

static struct cleanup_log cleanups_seen;

static void cleanup_fn(void *arg)
{
    unsigned k = atomic_fetch_add(&cleanups_seen.n, 1);
    if (k < 8)
        cleanups_seen.ids[k] = (int)(intptr_t)arg;
}

static void deep_exit(int depth, struct hy_reason r)
{
    if (depth > 0)
        deep_exit(depth - 1, r);
    else
        hy_exit(r);
    FAIL("hy_exit returned");
}

enum { END_RETURN, END_EXIT_DEEP, END_PANIC, END_KILLED_WAITING, END_KILLED_BUSY };

static void with_cleanups(void *arg)
{
    const struct carg *a = arg;
    for (intptr_t i = 1; i <= 3; i++)
        HY_CHECK_EQ(hy_on_exit(cleanup_fn, (void *)i), 0);
    HY_CHECK(hy_alloc(1000) != NULL);
    switch (a->mode) {
    case END_RETURN:
        return;
    case END_EXIT_DEEP:
        deep_exit(20, hy_reason_user(20, "deep"));
        break;
    case END_PANIC:
        hy_panic("panic %s", "text");
        break;
    case END_KILLED_WAITING: {
        hy_test_send_tag(a->peer, T_READY);
        struct hy_msg *m = NULL;
        hy_recv_tag(T_GO, &m, WAIT_NS);
        hy_msg_free(m);
        break;
    }
    case END_KILLED_BUSY: {
        hy_test_send_tag(a->peer, T_READY);
        uint64_t deadline = hy_now_ns() + (uint64_t)WAIT_NS;
        while (hy_now_ns() < deadline)
            hy_yield();
        break;
    }
    }
    FAIL("with_cleanups: not ended");
}

static void body_exit_runs_cleanups(void *arg)
{
    int s = *(int *)arg;
    for (uint32_t mode = END_RETURN; mode <= END_KILLED_BUSY; mode++) {
        atomic_store(&cleanups_seen.n, 0);
        memset(cleanups_seen.ids, 0, sizeof(cleanups_seen.ids));
        struct carg a = {.peer = hy_self(), .mode = mode};
        hy_ref r;
        hy_pid c = spawn_mon(on(s), with_cleanups, &a, &r);
        if (mode == END_KILLED_WAITING || mode == END_KILLED_BUSY) {
            recv_tag_free(T_READY);
            hy_exit_pid(c, hy_reason_make(HY_REASON_KILL));
        }
        struct hy_down_info d;
        if (recv_down(r, &d)) {
            switch (mode) {
            case END_RETURN:
                CHECK_KIND(d.reason, HY_REASON_NORMAL);
                break;
            case END_EXIT_DEEP:
                CHECK_USER(d.reason, 20, "deep");
                break;
            case END_PANIC:
                CHECK_USER(d.reason, 0, "panic text");
                break;
            default:
                CHECK_KIND(d.reason, HY_REASON_KILLED);
            }
        }
        /* the handlers ran before the DOWN was sent, last registered first */
        HY_CHECK_EQ(atomic_load(&cleanups_seen.n), 3);
        HY_CHECK_EQ(cleanups_seen.ids[0], 3);
        HY_CHECK_EQ(cleanups_seen.ids[1], 2);
        HY_CHECK_EQ(cleanups_seen.ids[2], 1);
    }
}
BOTH_SHARDS(exit_runs_cleanups)

/* ---- aliases ------------------------------------------------------------------------------- */

static void alias_sender(void *arg)
{
    const struct carg *a = arg;
    for (uint32_t i = 0; i < a->n; i++)
        HY_CHECK_EQ(hy_alias_send(a->alias, T_DATA, &i, sizeof(i)), 0);
    /* barrier: a plain message after them */
    hy_test_send_tag(a->peer, T_BARRIER);
}

/* A message through an alias arrives with ref = alias.ref, from the sender;
 * hy_recv_ref(alias.ref) finds it past older and newer messages. */
static void body_alias_send_carries_ref(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    for (uint32_t i = 0; i < 3; i++)
        hy_test_send_u32(self, T_AFTER, i); /* queued before the alias: skipped by the marker */
    hy_alias al;
    HY_CHECK_EQ(hy_alias_create(0, &al), 0);
    HY_CHECK(hy_pid_eq(al.pid, self));
    HY_CHECK(!hy_ref_is_none(al.ref));
    struct carg a = {.peer = self, .alias = al, .n = 2};
    hy_pid b = spawn_a(on(s), alias_sender, &a);
    recv_tag_free(T_BARRIER);
    hy_test_send_u32(self, T_AFTER, 3);
    for (uint32_t i = 0; i < 2; i++) {
        struct hy_msg *m = NULL;
        HY_CHECK_EQ(hy_recv_ref(al.ref, &m, WAIT_NS), 0);
        if (!m)
            break;
        HY_CHECK_EQ(m->tag, T_DATA);
        HY_CHECK(hy_ref_eq(m->ref, al.ref));
        HY_CHECK(hy_pid_eq(m->from, b));
        HY_CHECK_EQ(hy_test_payload_u32(m), i);
        hy_msg_free(m);
    }
    /* the others are still there, in order */
    for (uint32_t i = 0; i < 4; i++) {
        struct hy_msg *m = must_recv();
        HY_CHECK(m && m->tag == T_AFTER && hy_test_payload_u32(m) == i);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_alias_deactivate(al), 0);
    hy_alias bad;
    HY_CHECK_EQ(hy_alias_create(0x80, &bad), HY_EINVAL);
    HY_CHECK_EQ(hy_alias_create(0, NULL), HY_EINVAL);
}
BOTH_SHARDS(alias_send_carries_ref)

/* After deactivation, messages through the alias are dropped (the plain
 * message the sender sends afterwards is the barrier). Deactivating twice,
 * or another process's alias, is HY_ENOENT; an alias of a dead process
 * drops silently. */
static void alias_owner(void *arg)
{
    const struct carg *a = arg;
    hy_alias al;
    HY_CHECK_EQ(hy_alias_create(0, &al), 0);
    HY_CHECK_EQ(hy_send(a->peer, T_REPORT, &al, sizeof(al)), 0);
}

static void body_alias_deactivate_drops(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    hy_alias al;
    HY_CHECK_EQ(hy_alias_create(0, &al), 0);
    HY_CHECK_EQ(hy_alias_deactivate(al), 0);
    HY_CHECK_EQ(hy_alias_deactivate(al), HY_ENOENT);
    struct carg a = {.peer = self, .alias = al, .n = 3};
    spawn_a(on(s), alias_sender, &a);
    recv_tag_free(T_BARRIER);
    HY_CHECK_EQ(hy_mailbox_len(), 0);

    /* another process's alias: not ours to deactivate; once it is dead,
     * sends through it vanish */
    struct carg oa = {.peer = self};
    hy_ref r;
    spawn_mon(on(s), alias_owner, &oa, &r);
    struct hy_msg *m = hy_test_must_recv_tag(T_REPORT, WAIT_NS);
    hy_alias other;
    memset(&other, 0, sizeof(other));
    if (m) {
        memcpy(&other, m->data, sizeof(other));
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_alias_deactivate(other), HY_ENOENT);
    struct hy_down_info d;
    recv_down(r, &d);
    HY_CHECK_EQ(hy_alias_send(other, T_DATA, NULL, 0), 0);
    HY_CHECK_EQ(hy_alias_send(al, HY_TAG_SYSTEM | 1, NULL, 0), HY_EINVAL);
    /* a sender on the dead owner's shard sends through it, then a barrier */
    a.alias = other;
    a.n = 2;
    spawn_a(on(s), alias_sender, &a);
    recv_tag_free(T_BARRIER);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(alias_deactivate_drops)

/* HY_ALIAS_REPLY_ONCE: the first message deactivates it. */
static void body_alias_reply_once(void *arg)
{
    int s = *(int *)arg;
    hy_alias al;
    HY_CHECK_EQ(hy_alias_create(HY_ALIAS_REPLY_ONCE, &al), 0);
    struct carg a = {.peer = hy_self(), .alias = al, .n = 3};
    spawn_a(on(s), alias_sender, &a);
    recv_tag_free(T_BARRIER);
    HY_CHECK_EQ(hy_mailbox_len(), 1);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_ref(al.ref, &m, HY_NOWAIT), 0);
    if (m) {
        HY_CHECK_EQ(hy_test_payload_u32(m), 0);
        hy_msg_free(m);
    }
    HY_CHECK_EQ(hy_alias_deactivate(al), HY_ENOENT);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}
BOTH_SHARDS(alias_reply_once)

/* ---- process information --------------------------------------------------------------------- */

/* Holds a link to a->peer (set by the spawn) and to a->peer2, monitors
 * a->peer2, then serves T_CMD (0: stop, 1: answer T_PONG), leaving every
 * other message queued. */
static void info_target(void *arg)
{
    const struct carg *a = arg;
    HY_CHECK_EQ(hy_link(a->peer2), 0);
    mon(a->peer2);
    hy_test_send_tag(a->peer, T_READY);
    for (;;) {
        struct hy_msg *m = hy_test_must_recv_tag(T_CMD, WAIT_NS);
        if (!m)
            return;
        uint32_t cmd = hy_test_payload_u32(m);
        hy_msg_free(m);
        if (cmd == 0)
            return;
        hy_test_send_tag(a->peer, T_PONG);
    }
}

static void body_info_fields(void *arg)
{
    int s = *(int *)arg;
    hy_pid self = hy_self();
    struct carg sa = {0};
    hy_pid c = spawn_a(on(s), server, &sa);
    struct hy_spawn_opts o = on(s);
    o.trap_exit = true;
    o.link = true;
    struct carg a = {.peer = self, .peer2 = c};
    hy_ref r;
    hy_pid b = spawn_mon(o, info_target, &a, &r);
    recv_tag_free(T_READY);
    char name[32];
    snprintf(name, sizeof(name), "info_target_%d", s);
    HY_CHECK_EQ(hy_register(name, b), 0);
    static const char big[4096];
    /* blocked in its receive */
    HY_CHECK_EQ(info_of(b).status, HY_STATUS_WAITING);
    for (int i = 0; i < 5; i++)
        HY_CHECK_EQ(hy_send(b, T_DATA, big, sizeof(big)), 0);
    struct hy_proc_info i1 = info_of(b);
    HY_CHECK(hy_pid_eq(i1.pid, b));
    /* a message woke it up to look (runnable), or it looked and waits again */
    HY_CHECK(i1.status == HY_STATUS_RUNNABLE || i1.status == HY_STATUS_WAITING);
    HY_CHECK(strcmp(i1.name, name) == 0);
    HY_CHECK_EQ(i1.mailbox_len, 5);
    HY_CHECK_EQ(i1.nlinks, 2);
    HY_CHECK(info_has_link(&i1, self));
    HY_CHECK(info_has_link(&i1, c));
    HY_CHECK_EQ(i1.nmonitors, 1);
    HY_CHECK_EQ(i1.nmonitored_by, 1);
    HY_CHECK(i1.trap_exit);
    HY_CHECK(i1.reductions >= 1);
    HY_CHECK(i1.memory >= 5 * sizeof(big));

    /* scheduled again: more reductions; more mail: more memory */
    hy_test_send_u32(b, T_CMD, 1);
    recv_tag_free(T_PONG);
    for (int i = 0; i < 3; i++)
        HY_CHECK_EQ(hy_send(b, T_DATA, big, sizeof(big)), 0);
    struct hy_proc_info i2 = info_of(b);
    HY_CHECK(i2.reductions > i1.reductions);
    HY_CHECK_EQ(i2.mailbox_len, 8);
    HY_CHECK(i2.memory >= i1.memory + 3 * sizeof(big));

    /* the other ends */
    struct hy_proc_info ic = info_of(c);
    HY_CHECK_EQ(ic.nlinks, 1);
    HY_CHECK(info_has_link(&ic, b));
    HY_CHECK_EQ(ic.nmonitored_by, 1);
    HY_CHECK_EQ(ic.name[0], '\0');
    HY_CHECK(!ic.trap_exit);

    /* the caller itself: running */
    struct hy_proc_info is = info_of(self);
    HY_CHECK(hy_pid_eq(is.pid, self));
    HY_CHECK_EQ(is.status, HY_STATUS_RUNNING);
    HY_CHECK_EQ(is.nlinks, 1);
    HY_CHECK(info_has_link(&is, b));
    HY_CHECK_EQ(is.nmonitors, 1);
    HY_CHECK_EQ(is.nmonitored_by, 0);
    HY_CHECK_EQ(is.mailbox_len, hy_mailbox_len());
    HY_CHECK(is.memory > 0);

    /* a process that has not run yet (same shard only: it cannot run before we yield) */
    if (s == 0) {
        hy_pid n = spawn_a(on(0), server, &sa);
        struct hy_proc_info in = info_of(n);
        HY_CHECK_EQ(in.status, HY_STATUS_RUNNABLE);
        HY_CHECK_EQ(in.reductions, 0);
        stop_server(n);
    }

    hy_test_send_u32(b, T_CMD, 0);
    struct hy_down_info d;
    if (recv_down(r, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
    stop_server(c);
    HY_CHECK_EQ(info_of(self).nlinks, 0);
}
BOTH_SHARDS(info_fields)

/* Info on a dead, never-used or foreign pid is HY_ENOPROC. */
static void body_info_dead_pid(void *arg)
{
    int s = *(int *)arg;
    struct hy_proc_info i;
    HY_CHECK_EQ(hy_proc_info(dead_pid_on(s), &i), HY_ENOPROC);
    HY_CHECK_EQ(hy_proc_info(unknown_pid_on(s), &i), HY_ENOPROC);
    HY_CHECK_EQ(hy_proc_info(hy_pid_make(hy_node_id(), hy_node_creation(), 7, 1, 1), &i),
                HY_ENOPROC);
    HY_CHECK_EQ(hy_proc_info(HY_PID_NONE, &i), HY_ENOPROC);
    HY_CHECK_EQ(hy_proc_info(hy_self(), NULL), HY_EINVAL);
}
BOTH_SHARDS(info_dead_pid)

/* hy_proc_list sees every live process of the node, on both shards. */
static bool pid_in(const hy_pid *pids, size_t n, hy_pid p)
{
    for (size_t i = 0; i < n; i++)
        if (hy_pid_eq(pids[i], p))
            return true;
    return false;
}

static bool only_main_left(void *arg)
{
    (void)arg;
    size_t count = 0;
    return hy_proc_list(NULL, 0, &count) == 0 && count == 1;
}

static void body_proc_list(void *arg)
{
    (void)arg;
    hy_pid self = hy_self();
    size_t count = 0;
    HY_CHECK_EQ(hy_proc_list(NULL, 0, &count), 0);
    HY_CHECK_EQ(count, 1);
    hy_pid kids[6];
    struct carg sa = {0};
    for (int i = 0; i < 6; i++)
        kids[i] = spawn_a(on(i % 2), server, &sa);
    hy_pid pids[32];
    HY_CHECK_EQ(hy_proc_list(pids, 32, &count), 0);
    HY_CHECK_EQ(count, 7);
    HY_CHECK(pid_in(pids, count < 32 ? count : 32, self));
    for (int i = 0; i < 6; i++)
        HY_CHECK(pid_in(pids, count < 32 ? count : 32, kids[i]));
    /* a short array: the total still comes back, nothing written past max */
    hy_pid few[4];
    memset(few, 0xab, sizeof(few));
    HY_CHECK_EQ(hy_proc_list(few, 2, &count), 0);
    HY_CHECK_EQ(count, 7);
    HY_CHECK(pid_in(&few[0], 1, self) || pid_in(kids, 6, few[0]));
    HY_CHECK(pid_in(&few[1], 1, self) || pid_in(kids, 6, few[1]));
    HY_CHECK_EQ(few[2].hi, 0xababababababababull);
    HY_CHECK_EQ(few[3].lo, 0xababababababababull);
    HY_CHECK_EQ(hy_proc_list(NULL, 3, &count), HY_EINVAL);
    HY_CHECK_EQ(hy_proc_list(pids, 3, NULL), HY_EINVAL);
    for (int i = 0; i < 6; i++)
        stop_server(kids[i]);
    HY_CHECK(hy_test_wait_until(only_main_left, NULL, WAIT_MS));
}

static void test_signals_proc_list_both_shards(void **state)
{
    (void)state;
    hy_test_run(2, body_proc_list, NULL);
}

/* hy_reason_format names every kind. */
static void test_signals_reason_format(void **state)
{
    (void)state;
    char buf[96];
    struct hy_reason r = hy_reason_make(HY_REASON_NORMAL);
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "normal");
    r = hy_reason_make(HY_REASON_KILL);
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "kill");
    r = hy_reason_make(HY_REASON_KILLED);
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "killed");
    r = hy_reason_make(HY_REASON_SHUTDOWN);
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "shutdown");
    r = hy_reason_make(HY_REASON_NOPROC);
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "noproc");
    r = hy_reason_make(HY_REASON_NOCONNECTION);
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "noconnection");
    r = hy_reason_user(3, "bad input");
    assert_string_equal(hy_reason_format(&r, buf, sizeof(buf)), "user(3, bad input)");
    r = hy_reason_user(1, NULL);
    assert_int_equal(r.text[0], '\0');
}

/* ---- errors
 * --------------------------------------------------------------------------------------- */

/* Outside a process (here: the test's own thread, no runtime) every call
 * says so instead of acting. */
static void test_signals_calls_outside_a_process(void **state)
{
    (void)state;
    hy_pid p = hy_pid_make(1, 1, 0, 1, 1);
    hy_ref r;
    bool old;
    hy_alias al;
    memset(&al, 0, sizeof(al));
    struct hy_proc_info i;
    size_t count;
    assert_int_equal(hy_link(p), HY_ENOTPROC);
    assert_int_equal(hy_unlink(p), HY_ENOTPROC);
    assert_int_equal(hy_exit_pid(p, hy_reason_make(HY_REASON_KILL)), HY_ENOTSHARD);
    assert_int_equal(hy_trap_exit(true, &old), HY_ENOTPROC);
    assert_int_equal(hy_monitor(p, &r), HY_ENOTPROC);
    assert_int_equal(hy_monitor_name("x", &r), HY_ENOTPROC);
    assert_int_equal(hy_demonitor(r, true), HY_ENOTPROC);
    assert_int_equal(hy_alias_create(0, &al), HY_ENOTPROC);
    assert_int_equal(hy_alias_send(al, T_DATA, NULL, 0), HY_ENOTSHARD);
    assert_int_equal(hy_alias_deactivate(al), HY_ENOTPROC);
    assert_int_equal(hy_proc_info(p, &i), HY_ENOTPROC);
    assert_int_equal(hy_proc_list(NULL, 0, &count), HY_ENOTPROC);
    assert_int_equal(hy_exit(hy_reason_make(HY_REASON_NORMAL)), HY_ENOTPROC);
    assert_int_equal(hy_panic("%s", "no"), HY_ENOTPROC);
    assert_int_equal(hy_on_exit(cleanup_fn, NULL), HY_ENOTPROC);
}

static void body_on_exit_null(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_on_exit(NULL, NULL), HY_EINVAL);
}

static void test_signals_on_exit_rejects_null(void **state)
{
    (void)state;
    hy_test_run(1, body_on_exit_null, NULL);
}

/* ---- cross-shard signals act at the target's next runtime call ------------ */

/* The victim on shard 1 spins without runtime calls until the test has put
 * the signal in its shard's inbound ring (hy_yield publishes what the test
 * sent), then makes exactly one runtime call. */
static atomic_int g_xs_started, g_xs_armed, g_xs_survived, g_xs_mail;

enum { XS_YIELD = 0, XS_SEND, XS_MAIL_YIELD, XS_MAIL_BUDGET };

static void xs_spin_until_armed(void)
{
    uint64_t give_up = hy_now_ns() + (uint64_t)WAIT_NS;
    atomic_store(&g_xs_started, 1);
    while (!atomic_load(&g_xs_armed) && hy_now_ns() < give_up)
        sched_yield(); /* a system call, not a runtime call */
}

static void xs_victim(void *arg)
{
    const struct carg *a = arg;
    xs_spin_until_armed();
    switch (a->mode) {
    case XS_YIELD:
        hy_yield();
        break;
    case XS_SEND:
        hy_send(hy_self(), T_DATA, NULL, 0);
        break;
    case XS_MAIL_YIELD:
        hy_yield();
        atomic_store(&g_xs_mail, (int)hy_mailbox_len());
        break;
    case XS_MAIL_BUDGET:
        /* spend more than the slice's reductions on local sends to itself */
        for (uint32_t i = 0; i < a->n; i++)
            hy_send(hy_self(), T_DATA, NULL, 0);
        {
            struct hy_msg *m;
            uint64_t tag = T_PING;
            atomic_store(&g_xs_mail, hy_recv_match(match_tag, &tag, &m, HY_NOWAIT) == 0);
            if (atomic_load(&g_xs_mail))
                hy_msg_free(m);
        }
        break;
    }
    atomic_store(&g_xs_survived, 1);
    hy_test_send_tag(a->peer, T_DONE);
}

static bool xs_started(void *arg)
{
    (void)arg;
    return atomic_load(&g_xs_started) != 0;
}

static void body_xs_kill(void *arg)
{
    uint32_t mode = *(const uint32_t *)arg;
    atomic_store(&g_xs_started, 0);
    atomic_store(&g_xs_armed, 0);
    atomic_store(&g_xs_survived, 0);
    struct carg a = {.peer = hy_self(), .mode = mode};
    hy_ref ref;
    hy_pid v = spawn_mon(on(1), xs_victim, &a, &ref);
    HY_CHECK(hy_test_wait_until(xs_started, NULL, WAIT_MS));
    HY_CHECK_EQ(hy_exit_pid(v, hy_reason_make(HY_REASON_KILL)), 0);
    hy_yield(); /* whatever the test staged is published now */
    atomic_store(&g_xs_armed, 1);
    struct hy_down_info d;
    if (recv_down(ref, &d))
        CHECK_KIND(d.reason, HY_REASON_KILLED);
    HY_CHECK_EQ(atomic_load(&g_xs_survived), 0);
    HY_CHECK_EQ(count_tag_now(T_DONE), 0);
}

/* A victim on another shard killed while it runs dies at its next hy_yield,
 * not after the rest of its shard's batch. */
static void test_signals_cross_shard_exit_acts_at_yield(void **state)
{
    (void)state;
    uint32_t mode = XS_YIELD;
    hy_test_run(2, body_xs_kill, &mode);
}

/* ... and at its next hy_send. */
static void test_signals_cross_shard_exit_acts_at_send(void **state)
{
    (void)state;
    uint32_t mode = XS_SEND;
    hy_test_run(2, body_xs_kill, &mode);
}

static void body_xs_mail(void *arg)
{
    uint32_t mode = *(const uint32_t *)arg;
    atomic_store(&g_xs_started, 0);
    atomic_store(&g_xs_armed, 0);
    atomic_store(&g_xs_survived, 0);
    atomic_store(&g_xs_mail, -1);
    struct carg a = {.peer = hy_self(), .mode = mode, .n = 64};
    hy_ref ref;
    hy_pid v = spawn_mon(on(1), xs_victim, &a, &ref);
    HY_CHECK(hy_test_wait_until(xs_started, NULL, WAIT_MS));
    hy_test_send_tag(v, T_PING);
    hy_yield(); /* published now */
    atomic_store(&g_xs_armed, 1);
    recv_tag_free(T_DONE);
    struct hy_down_info d;
    if (recv_down(ref, &d))
        CHECK_KIND(d.reason, HY_REASON_NORMAL);
    HY_CHECK_EQ(atomic_load(&g_xs_mail), 1);
}

/* A busy shard looks at its inbound rings at every yield: the message sent
 * from shard 0 is in the mailbox when hy_yield returns. */
static void test_signals_cross_shard_message_seen_at_yield(void **state)
{
    (void)state;
    uint32_t mode = XS_MAIL_YIELD;
    hy_test_run(2, body_xs_mail, &mode);
}

/* ... and when a reduction slice is spent (reductions = 16, 64 sends). */
static void test_signals_cross_shard_message_seen_per_slice(void **state)
{
    (void)state;
    uint32_t mode = XS_MAIL_BUDGET;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 2;
    cfg.reductions = 16;
    hy_test_run_cfg(&cfg, body_xs_mail, &mode);
}

/* ---- pids of nodes that cannot be reached ---------------------------------- */

/* Distribution is off: a pid of another node answers as OTP's noconnection,
 * at once (the DOWN / EXIT is queued when the call returns). */
static void body_unreachable_node(void *arg)
{
    (void)arg;
    hy_pid far = hy_pid_make(hy_node_id() + 7, 1, 0, 1, 1);
    hy_ref ref = HY_REF_NONE;
    HY_CHECK_EQ(hy_monitor(far, &ref), 0);
    struct hy_msg *m = NULL;
    HY_CHECK_EQ(hy_recv_ref(ref, &m, HY_NOWAIT), 0);
    if (m) {
        struct hy_down_info d;
        HY_CHECK_EQ(m->tag, HY_TAG_DOWN);
        HY_CHECK_EQ(m->size, sizeof(d));
        memcpy(&d, m->data, sizeof(d));
        HY_CHECK(hy_pid_eq(d.pid, far));
        CHECK_KIND(d.reason, HY_REASON_NOCONNECTION);
        hy_msg_free(m);
    }
    /* not trapping: the error a dead local pid gives */
    HY_CHECK_EQ(hy_link(far), HY_ENOPROC);
    /* trapping: 0 and {EXIT, far, noconnection} */
    hy_trap_exit(true, NULL);
    HY_CHECK_EQ(hy_link(far), 0);
    struct exit_match em = {far};
    m = NULL;
    HY_CHECK_EQ(hy_recv_match(is_exit_from, &em, &m, HY_NOWAIT), 0);
    if (m) {
        struct hy_exit_info ei;
        memcpy(&ei, m->data, sizeof(ei));
        CHECK_KIND(ei.reason, HY_REASON_NOCONNECTION);
        hy_msg_free(m);
    }
    hy_trap_exit(false, NULL);
    HY_CHECK_EQ(hy_mailbox_len(), 0);
}

static void test_signals_unreachable_node_noconnection(void **state)
{
    (void)state;
    hy_test_run(2, body_unreachable_node, NULL);
}

/* ---- typed accessors for EXIT, DOWN and node event payloads ------------------ */

static void body_payload_accessors(void *arg)
{
    (void)arg;
    hy_trap_exit(true, NULL);
    struct carg a = {.reason = hy_reason_user(7, "why")};
    struct hy_spawn_opts o = on(1);
    o.link = true;
    hy_ref ref;
    hy_pid c = spawn_mon(o, exit_now, &a, &ref);
    /* the EXIT (link) comes before the DOWN: both from c */
    struct exit_match em = {c};
    struct hy_msg *ex = NULL, *down = NULL;
    HY_CHECK_EQ(hy_recv_match(is_exit_from, &em, &ex, WAIT_NS), 0);
    HY_CHECK_EQ(hy_recv_ref(ref, &down, WAIT_NS), 0);
    struct hy_exit_info ei;
    struct hy_down_info di;
    uint32_t node = 0;
    HY_CHECK_EQ(hy_msg_exit_info(ex, &ei), 0);
    HY_CHECK(hy_pid_eq(ei.from, c));
    CHECK_USER(ei.reason, 7, "why");
    HY_CHECK_EQ(hy_msg_down_info(down, &di), 0);
    HY_CHECK(hy_pid_eq(di.pid, c) && hy_ref_eq(di.ref, ref));
    CHECK_USER(di.reason, 7, "why");
    /* the wrong kind of message, or none */
    HY_CHECK_EQ(hy_msg_exit_info(down, &ei), HY_EINVAL);
    HY_CHECK_EQ(hy_msg_down_info(ex, &di), HY_EINVAL);
    HY_CHECK_EQ(hy_msg_node_event(ex, &node), HY_EINVAL);
    HY_CHECK_EQ(hy_msg_exit_info(NULL, &ei), HY_EINVAL);
    HY_CHECK_EQ(hy_msg_down_info(down, NULL), HY_EINVAL);
    hy_msg_free(ex);
    hy_msg_free(down);
    /* a node monitor on an unreachable node: NODEDOWN at once */
    HY_CHECK_EQ(hy_monitor_node(hy_node_id() + 7, true), 0);
    struct hy_msg *nd = hy_test_must_recv_tag(HY_TAG_NODEDOWN, WAIT_NS);
    HY_CHECK_EQ(hy_msg_node_event(nd, &node), 0);
    HY_CHECK_EQ(node, hy_node_id() + 7);
    hy_msg_free(nd);
    hy_trap_exit(false, NULL);
}

static void test_signals_payload_accessors(void **state)
{
    (void)state;
    hy_test_run(2, body_payload_accessors, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH_TESTS(link_crash_kills),
        BOTH_TESTS(trapped_exit_no_memory),
        BOTH_TESTS(trapped_exit_carries_reason),
        BOTH_TESTS(link_is_bidirectional),
        BOTH_TESTS(link_twice_is_one_link),
        BOTH_TESTS(link_to_dead_pid),
        BOTH_TESTS(unlink_prevents_exit),
        BOTH_TESTS(unlink_removes_both_directions),
        BOTH_TESTS(unlink_races_exit),
        BOTH_TESTS(exit_normal_ignored),
        BOTH_TESTS(exit_self_normal),
        BOTH_TESTS(exit_signal_reason),
        BOTH_TESTS(kill_is_untrappable),
        BOTH_TESTS(killed_propagates_as_killed),
        BOTH_TESTS(link_signal_kill_is_trappable),
        BOTH_TESTS(busy_process_killed),
        BOTH_TESTS(trap_exit_flag),
        BOTH_TESTS(messages_before_exit_and_down),
        BOTH_TESTS(messages_before_exit_signal),
        BOTH_TESTS(monitor_down_fields),
        BOTH_TESTS(monitor_by_name),
        BOTH_TESTS(monitor_noproc_in_call_order),
        BOTH_TESTS(monitor_fires_once),
        BOTH_TESTS(demonitor_nothing_after),
        BOTH_TESTS(demonitor_flush_races_down),
        BOTH_TESTS(demonitor_flush_removes_queued),
        BOTH_TESTS(monitor_self),
        BOTH_TESTS(spawn_monitor_immediate_crash),
        BOTH_TESTS(spawn_link_immediate_crash),
        BOTH_TESTS(exit_runs_cleanups),
        BOTH_TESTS(alias_send_carries_ref),
        BOTH_TESTS(alias_deactivate_drops),
        BOTH_TESTS(alias_reply_once),
        BOTH_TESTS(info_fields),
        BOTH_TESTS(info_dead_pid),
        cmocka_unit_test(test_signals_proc_list_both_shards),
        cmocka_unit_test(test_signals_reason_format),
        cmocka_unit_test(test_signals_calls_outside_a_process),
        cmocka_unit_test(test_signals_on_exit_rejects_null),
        cmocka_unit_test(test_signals_cross_shard_exit_acts_at_yield),
        cmocka_unit_test(test_signals_cross_shard_exit_acts_at_send),
        cmocka_unit_test(test_signals_cross_shard_message_seen_at_yield),
        cmocka_unit_test(test_signals_cross_shard_message_seen_per_slice),
        cmocka_unit_test(test_signals_unreachable_node_noconnection),
        cmocka_unit_test(test_signals_payload_accessors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
