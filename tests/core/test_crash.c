/* Tests of core/crash.c (with core/stack.c and the exit path of core/proc.c):
 * crash isolation. A hardware fault in a process's own code -- a NULL read or
 * write, an integer division by zero, an illegal instruction, a bus error,
 * a runaway recursion into the guard page (guarded or compact stack) -- ends
 * that process with reason crash (code = signal, addr = faulting address,
 * text = signal name); hy_panic ends it with a user reason. Monitors get
 * their DOWN, links their exit signal, cleanup handlers run, the shard goes
 * on serving, and the next fault on the same shard is caught as well. A
 * fault while the shard is inside the runtime or libc is not survivable:
 * the node aborts with a diagnostic (checked in a forked child).
 *
 * Faults come from the small injectors below, which neither the optimiser
 * nor UBSan/ASan can remove or intercept: inline asm, volatile accesses
 * through pointers laundered by an empty asm, no_sanitize attributes. Each
 * check accepts whichever of SIGSEGV/SIGBUS/SIGFPE/SIGILL the platform
 * raises for a fault (addresses are checked only for the usual signal).
 *
 * Test bodies run as processes (hy_test_run) and record failures with
 * HY_CHECK. Every wait for something that must come has a generous deadline;
 * nothing here relies on a sleep. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crash_internal.h"
#include "hy_config.h"
#include "hydra.h"
#include "test_support.h"

#define MS      INT64_C(1000000)
#define WAIT_NS (20000 * MS) /* for a message that must come */
#define PAGE    ((size_t)sysconf(_SC_PAGESIZE))

#if defined(__SANITIZE_ADDRESS__)
/* ASan's own fault handlers stay installed (its defaults, as users run it):
 * the runtime's sigaction replaces them while it runs, which
 * allow_user_segv_handler permits. Use-after-return mode puts the fault
 * handler's locals on a fake stack that is dropped when the crashed
 * process's fiber ends: the handler must not depend on them. Overridable
 * with ASAN_OPTIONS. */
const char *__asan_default_options(void);
__attribute__((used, visibility("default"), no_sanitize_address)) const char *
__asan_default_options(void)
{
    return "allow_user_segv_handler=1:detect_stack_use_after_return=1:detect_leaks=1";
}
#endif

/* ---- fault injection ------------------------------------------------------ */

#if defined(__clang__)
#define FAULT_FN __attribute__((noinline, used, no_sanitize("address", "undefined")))
#else
#define FAULT_FN                                                                          \
    __attribute__((noinline, noclone, used, no_sanitize_address, no_sanitize("undefined")))
#endif

/* Integer division by zero traps on x86-64; aarch64's udiv returns 0. */
#if defined(__x86_64__) || defined(__i386__)
#define DIV_TRAPS 1
#else
#define DIV_TRAPS 0
#endif

/* Hides the value from the optimiser: it cannot prove p is NULL. */
static inline void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

FAULT_FN static int fault_null_read(void)
{
    volatile int *p = launder(NULL);
    return *p;
}

FAULT_FN static void fault_null_write(void)
{
    volatile int *p = launder(NULL);
    *p = 42;
}

FAULT_FN static unsigned fault_div_zero(unsigned num)
{
#if defined(__x86_64__)
    unsigned zero = 0;
    __asm__ volatile("" : "+r"(zero));
    __asm__ volatile("xorl %%edx, %%edx\n\tdivl %[d]" : "+a"(num) : [d] "r"(zero) : "rdx", "cc");
    return num;
#elif defined(__aarch64__)
    unsigned zero = 0, q;
    __asm__ volatile("" : "+r"(zero));
    __asm__ volatile("udiv %w0, %w1, %w2" : "=r"(q) : "r"(num), "r"(zero));
    return q; /* no trap on this platform */
#else
    volatile unsigned zero = 0;
    return num / zero;
#endif
}

FAULT_FN static void fault_illegal(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("ud2");
#elif defined(__aarch64__)
    __asm__ volatile("udf #0");
#else
    __builtin_trap();
#endif
}

FAULT_FN static int fault_read_at(void *addr)
{
    volatile char *p = launder(addr);
    return *p;
}

static volatile unsigned recurse_stop = UINT_MAX; /* never reached */

/* One frame per call with a volatile array the compiler must keep, and work
 * after the call, so it can become neither a loop nor a tail call. Frames
 * stay well below a page, so the guard page cannot be jumped over. */
FAULT_FN static unsigned fault_recurse(unsigned depth)
{
    volatile unsigned char pad[192];
    pad[0] = (unsigned char)depth;
    pad[sizeof(pad) - 1] = (unsigned char)(depth >> 8);
    if (depth == recurse_stop)
        return 0;
    unsigned r = fault_recurse(depth + 1);
    return r + pad[depth % sizeof(pad)];
}

/* ---- the crashing process ------------------------------------------------- */

enum fault_kind {
    F_NULL_READ,
    F_NULL_WRITE,
    F_DIV_ZERO,
    F_ILLEGAL,
    F_BUS,
    F_OVERFLOW,
    F_PANIC,
    F_NKINDS,
};

static const char *const kind_names[] = {"null_read", "null_write", "div_zero", "illegal",
                                         "bus",       "overflow",   "panic"};

struct crash_arg {
    int kind;
    unsigned idx;
    size_t stack_span;        /* usable stack of its mode (overflow address check) */
    uintptr_t stack_hint;     /* address of a local, just before the fault */
    uintptr_t bus_addr;       /* F_BUS: the mapping that faults */
    int bus_fd;               /* F_BUS: closed by a cleanup handler */
    _Atomic int reached;      /* got to the fault */
    _Atomic int survived;     /* came back from it (only DIV on non-trapping CPUs) */
    _Atomic unsigned trail;   /* cleanup handlers, in the order they ran */
};

static void trail_add(struct crash_arg *a, unsigned id)
{
    unsigned t = atomic_load_explicit(&a->trail, memory_order_relaxed);
    atomic_store_explicit(&a->trail, t * 10 + id, memory_order_relaxed);
}

static void cleanup_one(void *arg)
{
    trail_add(arg, 1);
}

static void cleanup_two(void *arg)
{
    trail_add(arg, 2);
}

static void cleanup_bus(void *arg)
{
    struct crash_arg *a = arg;
    munmap((void *)a->bus_addr, PAGE);
    close(a->bus_fd);
    trail_add(a, 3);
}

static unsigned expected_trail(int kind)
{
    return kind == F_BUS ? 321u : 21u;
}

static void crasher(void *arg)
{
    struct crash_arg *a = arg;
    HY_CHECK_EQ(hy_on_exit(cleanup_one, a), 0);
    HY_CHECK_EQ(hy_on_exit(cleanup_two, a), 0);
    /* arena memory: must be released however the process ends (LSan) */
    char *mem = hy_alloc(700);
    HY_CHECK(mem != NULL);
    if (mem)
        memset(mem, 0x5a, 700);
    if (a->kind == F_BUS) {
        /* a shared mapping past the end of an empty file: SIGBUS on access */
        a->bus_fd = memfd_create("hydra-crash", MFD_CLOEXEC);
        HY_CHECK(a->bus_fd >= 0);
        void *map = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, a->bus_fd, 0);
        HY_CHECK(map != MAP_FAILED);
        a->bus_addr = (uintptr_t)map;
        HY_CHECK_EQ(hy_on_exit(cleanup_bus, a), 0);
    }
    /* the real frame (a local could live on ASan's fake stack) */
    a->stack_hint = (uintptr_t)__builtin_frame_address(0);
    atomic_store(&a->reached, 1);
    switch (a->kind) {
    case F_NULL_READ:
        (void)fault_null_read();
        break;
    case F_NULL_WRITE:
        fault_null_write();
        break;
    case F_DIV_ZERO:
        (void)fault_div_zero(a->idx + 7);
        break;
    case F_ILLEGAL:
        fault_illegal();
        break;
    case F_BUS:
        (void)fault_read_at((void *)a->bus_addr);
        break;
    case F_OVERFLOW:
        (void)fault_recurse(0);
        break;
    case F_PANIC:
        hy_panic("panic %u", a->idx);
        break;
    }
    atomic_store(&a->survived, 1);
}

static void crash_arg_init(struct crash_arg *a, int kind, unsigned idx, int stack_mode)
{
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->idx = idx;
    a->bus_fd = -1;
    a->stack_span = stack_mode == HY_STACK_COMPACT ? 256 * 1024 : 64 * 1024;
}

static bool fault_signal(int s)
{
    return s == SIGSEGV || s == SIGBUS || s == SIGFPE || s == SIGILL;
}

static const char *sig_text(int s)
{
    switch (s) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    default:
        return "?";
    }
}

static bool in_code(uint64_t addr, void *fn)
{
    uintptr_t lo = (uintptr_t)fn;
    return addr >= lo && addr < lo + 512;
}

/* Checks that r is the right end for the crasher a (which must be gone). */
static void check_reason(const struct crash_arg *a, const struct hy_reason *r)
{
    HY_CHECK(atomic_load(&a->reached));
    if (a->kind == F_PANIC) {
        char want[HY_REASON_TEXT_MAX];
        snprintf(want, sizeof(want), "panic %u", a->idx);
        HY_CHECK_EQ(r->kind, HY_REASON_USER);
        HY_CHECK_EQ(r->code, 0);
        HY_CHECK(strcmp(r->text, want) == 0);
        HY_CHECK(!atomic_load(&a->survived));
        return;
    }
    if (a->kind == F_DIV_ZERO && !DIV_TRAPS && r->kind == HY_REASON_NORMAL) {
        HY_CHECK(atomic_load(&a->survived)); /* the platform raises nothing */
        return;
    }
    HY_CHECK(!atomic_load(&a->survived));
    HY_CHECK_EQ(r->kind, HY_REASON_CRASH);
    if (r->kind != HY_REASON_CRASH)
        return;
    HY_CHECK(fault_signal(r->code));
    if (strcmp(r->text, sig_text(r->code)) != 0)
        hy_test_check_fail(__FILE__, __LINE__, "crash text '%s' for signal %d", r->text,
                           r->code);
    char buf[96], want[96];
    snprintf(want, sizeof(want), "crash(%s at 0x%llx)", sig_text(r->code),
             (unsigned long long)r->addr);
    hy_reason_format(r, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
        hy_test_check_fail(__FILE__, __LINE__, "format '%s', want '%s'", buf, want);
    switch (a->kind) {
    case F_NULL_READ:
    case F_NULL_WRITE:
        if (r->code == SIGSEGV)
            HY_CHECK_EQ(r->addr, 0);
        break;
    case F_DIV_ZERO:
        if (r->code == SIGFPE)
            HY_CHECK(in_code(r->addr, (void *)fault_div_zero));
        break;
    case F_ILLEGAL:
        if (r->code == SIGILL)
            HY_CHECK(in_code(r->addr, (void *)fault_illegal));
        break;
    case F_BUS:
        if (r->code == SIGBUS)
            HY_CHECK_EQ(r->addr, a->bus_addr);
        break;
    case F_OVERFLOW:
        /* in the guard page below the stack the process started on */
        if (r->code == SIGSEGV || r->code == SIGBUS) {
            HY_CHECK(r->addr < a->stack_hint);
            if (a->stack_hint - r->addr > a->stack_span + 2 * PAGE)
                hy_test_check_fail(__FILE__, __LINE__,
                                   "overflow fault %#llx is %llu bytes below the stack top",
                                   (unsigned long long)r->addr,
                                   (unsigned long long)(a->stack_hint - r->addr));
        }
        break;
    }
}

/* ---- helpers -------------------------------------------------------------- */

enum {
    T_PING = 1,
    T_PONG,
    T_STOP,
    T_READY,
    T_CHECK,
    T_CHECKED,
    T_RESULT,
};

/* Spawns fn(arg) on shard with a monitor; the reference goes to *ref. */
static hy_pid spawn_monitored(int shard, int stack_mode, hy_proc_fn fn, void *arg, hy_ref *ref)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = shard;
    o.stack_mode = stack_mode;
    o.monitor = true;
    o.monitor_ref = ref;
    hy_pid pid = HY_PID_NONE;
    int rc = hy_spawn_opt(fn, arg, &o, &pid);
    HY_CHECK_EQ(rc, 0);
    return pid;
}

/* Waits for the DOWN of ref; returns its reason (kind -1 if none came). */
static struct hy_reason wait_down(hy_ref ref, hy_pid pid)
{
    struct hy_reason r = hy_reason_make(HY_REASON_NORMAL);
    r.kind = 0xffff;
    struct hy_msg *m = NULL;
    int rc = hy_recv_ref(ref, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return r;
    HY_CHECK(m->tag == HY_TAG_DOWN);
    HY_CHECK(m->size >= sizeof(struct hy_down_info));
    struct hy_down_info d;
    memcpy(&d, m->data, sizeof(d));
    HY_CHECK(hy_ref_eq(d.ref, ref));
    HY_CHECK(hy_pid_eq(d.pid, pid));
    hy_msg_free(m);
    return d.reason;
}

/* Runs one crasher of kind on shard and checks everything about its end:
 * the DOWN and its reason, the cleanup handlers and their order. */
static void crash_once(int shard, int stack_mode, int kind, unsigned idx)
{
    struct crash_arg a;
    crash_arg_init(&a, kind, idx, stack_mode);
    hy_ref ref;
    hy_pid pid = spawn_monitored(shard, stack_mode, crasher, &a, &ref);
    struct hy_reason r = wait_down(ref, pid);
    check_reason(&a, &r);
    HY_CHECK_EQ(atomic_load(&a.trail), expected_trail(kind));
    if (kind == F_BUS) {
        /* the cleanup handler closed it */
        errno = 0;
        HY_CHECK(fcntl(a.bus_fd, F_GETFD) == -1 && errno == EBADF);
    }
}

/* A process that counts the pings it answers. */
static void counter(void *arg)
{
    (void)arg;
    uint64_t n = 0;
    for (;;) {
        struct hy_msg *m = NULL;
        if (hy_recv(&m, HY_INFINITY) != 0)
            return;
        uint64_t tag = m->tag;
        hy_pid from = m->from;
        hy_msg_free(m);
        if (tag == T_STOP)
            return;
        if (tag == T_PING) {
            n++;
            hy_send(from, T_PONG, &n, sizeof(n));
        }
    }
}

struct counter_h {
    hy_pid pid;
    hy_ref ref;
    uint64_t pings;
};

static void counter_start(struct counter_h *c, int shard)
{
    c->pings = 0;
    c->pid = spawn_monitored(shard, HY_STACK_DEFAULT, counter, NULL, &c->ref);
}

/* The counter answers, with the count of every ping so far. */
static void counter_ping(struct counter_h *c)
{
    HY_CHECK_EQ(hy_send(c->pid, T_PING, NULL, 0), 0);
    struct hy_msg *m = NULL;
    int rc = hy_recv_tag(T_PONG, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc)
        return;
    uint64_t n;
    memcpy(&n, m->data, sizeof(n));
    hy_msg_free(m);
    HY_CHECK_EQ(n, ++c->pings);
}

static void counter_stop(struct counter_h *c)
{
    HY_CHECK_EQ(hy_send(c->pid, T_STOP, NULL, 0), 0);
    struct hy_reason r = wait_down(c->ref, c->pid);
    HY_CHECK_EQ(r.kind, HY_REASON_NORMAL);
}

/* ---- links --------------------------------------------------------------- */

struct linker_arg {
    struct crash_arg ca;
    int crash_shard;
    bool trap;
    hy_pid main;
};

/* Spawns a linked crasher; trapping, forwards the EXIT's payload to main;
 * not trapping, must die of the crasher's reason before a message comes. */
static void linker(void *arg)
{
    struct linker_arg *la = arg;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = la->crash_shard;
    o.link = true;
    hy_pid child = HY_PID_NONE;
    HY_CHECK_EQ(hy_spawn_opt(crasher, &la->ca, &o, &child), 0);
    struct hy_msg *m = NULL;
    if (la->trap) {
        int rc = hy_recv_tag(HY_TAG_EXIT, &m, WAIT_NS);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            return;
        struct hy_exit_info info;
        memcpy(&info, m->data, sizeof(info));
        hy_msg_free(m);
        HY_CHECK(hy_pid_eq(info.from, child));
        hy_send(la->main, T_RESULT, &info, sizeof(info));
        return;
    }
    /* nothing is ever sent to it: only the exit signal can end this wait */
    int rc = hy_recv(&m, WAIT_NS);
    hy_test_check_fail(__FILE__, __LINE__, "linked process outlived a %s crash (rc %d)",
                       kind_names[la->ca.kind], rc);
    if (rc == 0)
        hy_msg_free(m);
}

static void check_links(int kind, int link_shard, int crash_shard)
{
    if (kind == F_DIV_ZERO && !DIV_TRAPS)
        return; /* nothing to propagate: the division returned */
    hy_pid self = hy_self();
    /* trapping: {EXIT, crasher, crash} */
    struct linker_arg t = {.crash_shard = crash_shard, .trap = true, .main = self};
    crash_arg_init(&t.ca, kind, 100, HY_STACK_GUARDED);
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = link_shard;
    o.trap_exit = true;
    o.monitor = true;
    hy_ref ref;
    o.monitor_ref = &ref;
    hy_pid lp;
    HY_CHECK_EQ(hy_spawn_opt(linker, &t, &o, &lp), 0);
    struct hy_msg *m = NULL;
    int rc = hy_recv_tag(T_RESULT, &m, WAIT_NS);
    HY_CHECK_EQ(rc, 0);
    if (rc == 0) {
        struct hy_exit_info info;
        memcpy(&info, m->data, sizeof(info));
        hy_msg_free(m);
        check_reason(&t.ca, &info.reason);
    }
    struct hy_reason lr = wait_down(ref, lp);
    HY_CHECK_EQ(lr.kind, HY_REASON_NORMAL);
    HY_CHECK_EQ(atomic_load(&t.ca.trail), expected_trail(kind));

    /* not trapping: the linked process dies of the same reason */
    struct linker_arg n = {.crash_shard = crash_shard, .trap = false, .main = self};
    crash_arg_init(&n.ca, kind, 101, HY_STACK_GUARDED);
    hy_pid np = spawn_monitored(link_shard, HY_STACK_DEFAULT, linker, &n, &ref);
    struct hy_reason nr = wait_down(ref, np);
    check_reason(&n.ca, &nr);
    HY_CHECK_EQ(atomic_load(&n.ca.trail), expected_trail(kind));
}

/* ---- signal mask --------------------------------------------------------- */

static void mask_probe(void *arg)
{
    (void)arg;
    sigset_t cur;
    HY_CHECK_EQ(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigismember(&cur, sigs[i]))
            hy_test_check_fail(__FILE__, __LINE__, "%s blocked after a crash",
                               sig_text(sigs[i]));
}

static void probe_mask(int shard)
{
    hy_ref ref;
    hy_pid p = spawn_monitored(shard, HY_STACK_DEFAULT, mask_probe, NULL, &ref);
    struct hy_reason r = wait_down(ref, p);
    HY_CHECK_EQ(r.kind, HY_REASON_NORMAL);
}

/* ---- one kind of fault, everything about it -------------------------------- */

/* On each shard: the crasher ends with the right reason (same shard as the
 * watcher and across shards), a counter on that shard keeps answering,
 * links are told (trapping and not, same shard and across), and a second
 * and a third fault on the same shard are caught as well. */
static void kind_body(void *arg)
{
    int kind = *(int *)arg;
    for (int s = 0; s < 2; s++) {
        struct counter_h c;
        counter_start(&c, s);
        counter_ping(&c);
        for (unsigned i = 0; i < 3; i++) {
            crash_once(s, HY_STACK_DEFAULT, kind, i);
            counter_ping(&c);
            probe_mask(s);
        }
        check_links(kind, s, s);     /* linked process on the crasher's shard */
        check_links(kind, s, 1 - s); /* ... and on the other one */
        counter_ping(&c);
        counter_stop(&c);
    }
}

static void run_kind(int kind)
{
    hy_test_run(2, kind_body, &kind);
}

static void test_crash_null_read(void **state)
{
    (void)state;
    run_kind(F_NULL_READ);
}

static void test_crash_null_write(void **state)
{
    (void)state;
    run_kind(F_NULL_WRITE);
}

static void test_crash_divide_by_zero(void **state)
{
    (void)state;
    run_kind(F_DIV_ZERO);
}

static void test_crash_illegal_instruction(void **state)
{
    (void)state;
    run_kind(F_ILLEGAL);
}

static void test_crash_bus_error(void **state)
{
    (void)state;
    run_kind(F_BUS);
}

static void test_crash_stack_overflow(void **state)
{
    (void)state;
    run_kind(F_OVERFLOW);
}

static void test_crash_panic(void **state)
{
    (void)state;
    run_kind(F_PANIC);
}

/* ---- faults of every kind in a row on one shard ----------------------------- */

static void mixed_body(void *arg)
{
    (void)arg;
    for (int s = 0; s < 2; s++) {
        struct counter_h c;
        counter_start(&c, s);
        for (unsigned round = 0; round < 3; round++) {
            for (int k = 0; k < F_NKINDS; k++) {
                crash_once(s, HY_STACK_DEFAULT, k, round);
                probe_mask(s);
            }
            counter_ping(&c);
        }
        counter_stop(&c);
    }
}

static void test_crash_every_kind_in_a_row(void **state)
{
    (void)state;
    hy_test_run(2, mixed_body, NULL);
}

/* ---- hy_exit from depth ---------------------------------------------------- */

struct deep_arg {
    _Atomic unsigned trail;
};

static void deep_cleanup(void *arg)
{
    struct deep_arg *d = arg;
    atomic_store(&d->trail, atomic_load(&d->trail) * 10 + 7);
}

static void exit_from(unsigned depth)
{
    volatile char pad[64];
    pad[0] = (char)depth;
    if (depth == 0) {
        hy_exit(hy_reason_user(42, "deep"));
        hy_test_check_fail(__FILE__, __LINE__, "hy_exit returned");
        return;
    }
    exit_from(depth - 1);
    pad[1] = pad[0]; /* not a tail call */
}

static void deep_exiter(void *arg)
{
    HY_CHECK_EQ(hy_on_exit(deep_cleanup, arg), 0);
    HY_CHECK(hy_alloc(3000) != NULL);
    exit_from(50);
}

static void exit_depth_body(void *arg)
{
    (void)arg;
    for (int s = 0; s < 2; s++) {
        for (int mode = HY_STACK_GUARDED; mode <= HY_STACK_COMPACT; mode++) {
            struct deep_arg d = {0};
            hy_ref ref;
            hy_pid p = spawn_monitored(s, mode, deep_exiter, &d, &ref);
            struct hy_reason r = wait_down(ref, p);
            HY_CHECK_EQ(r.kind, HY_REASON_USER);
            HY_CHECK_EQ(r.code, 42);
            HY_CHECK(strcmp(r.text, "deep") == 0);
            HY_CHECK_EQ(atomic_load(&d.trail), 7);
        }
    }
}

static void test_crash_exit_from_depth(void **state)
{
    (void)state;
    hy_test_run(2, exit_depth_body, NULL);
    /* off any process: an error, nothing ends */
    assert_int_equal(hy_exit(hy_reason_make(HY_REASON_NORMAL)), HY_ENOTPROC);
    assert_int_equal(hy_panic("x %d", 1), HY_ENOTPROC);
}

/* ---- compact stack mode ----------------------------------------------------- */

static void compact_overflow_body(void *arg)
{
    (void)arg;
    for (int s = 0; s < 2; s++) {
        struct counter_h c;
        counter_start(&c, s);
        for (unsigned i = 0; i < 3; i++) {
            crash_once(s, HY_STACK_COMPACT, F_OVERFLOW, i);
            counter_ping(&c);
            probe_mask(s);
        }
        /* a compact process runs fine on the shared stack afterwards */
        struct deep_arg d = {0};
        hy_ref ref;
        hy_pid p = spawn_monitored(s, HY_STACK_COMPACT, deep_exiter, &d, &ref);
        struct hy_reason r = wait_down(ref, p);
        HY_CHECK_EQ(r.kind, HY_REASON_USER);
        HY_CHECK_EQ(atomic_load(&d.trail), 7);
        counter_stop(&c);
    }
}

static void test_crash_compact_overflow(void **state)
{
    (void)state;
    hy_test_run(2, compact_overflow_body, NULL);
}

#define HOLDERS     4
#define HOLD_DEPTH  4
#define HOLD_BYTES  1024

struct holder_arg {
    unsigned idx;
    hy_pid main;
    volatile unsigned char *frames[HOLD_DEPTH]; /* into its own stack */
};

static unsigned char hold_byte(unsigned idx, unsigned depth, unsigned i)
{
    return (unsigned char)(idx * 131u + depth * 29u + i * 7u + 1u);
}

static unsigned hold_verify(struct holder_arg *h)
{
    unsigned bad = 0;
    for (unsigned d = 0; d < HOLD_DEPTH; d++)
        for (unsigned i = 0; i < HOLD_BYTES; i++)
            bad += h->frames[d][i] != hold_byte(h->idx, d, i);
    return bad;
}

/* Fills a frame per level with its pattern; at the bottom answers checks
 * until told to stop; each level checks its own frame again on the way out
 * (and a corrupted return address would end the process with a crash). */
__attribute__((noinline)) static unsigned holder_level(struct holder_arg *h, unsigned d)
{
    volatile unsigned char frame[HOLD_BYTES];
    for (unsigned i = 0; i < HOLD_BYTES; i++)
        frame[i] = hold_byte(h->idx, d, i);
    h->frames[d] = frame;
    unsigned bad = 0;
    if (d + 1 < HOLD_DEPTH) {
        bad = holder_level(h, d + 1);
    } else {
        HY_CHECK_EQ(hy_send(h->main, T_READY, &h->idx, sizeof(h->idx)), 0);
        for (;;) {
            struct hy_msg *m = NULL;
            if (hy_recv(&m, WAIT_NS) != 0) {
                hy_test_check_fail(__FILE__, __LINE__, "holder %u: no stop", h->idx);
                break;
            }
            uint64_t tag = m->tag;
            hy_msg_free(m);
            if (tag == T_STOP)
                break;
            unsigned v = hold_verify(h);
            HY_CHECK_EQ(hy_send(h->main, T_CHECKED, &v, sizeof(v)), 0);
        }
    }
    for (unsigned i = 0; i < HOLD_BYTES; i++)
        bad += frame[i] != hold_byte(h->idx, d, i);
    return bad;
}

static void holder(void *arg)
{
    struct holder_arg *h = arg;
    unsigned bad = holder_level(h, 0);
    if (bad)
        hy_test_check_fail(__FILE__, __LINE__, "holder %u: %u bytes of its stack changed",
                           h->idx, bad);
}

static void check_holders(const hy_pid *pids)
{
    for (unsigned i = 0; i < HOLDERS; i++)
        HY_CHECK_EQ(hy_send(pids[i], T_CHECK, NULL, 0), 0);
    for (unsigned i = 0; i < HOLDERS; i++) {
        struct hy_msg *m = NULL;
        int rc = hy_recv_tag(T_CHECKED, &m, WAIT_NS);
        HY_CHECK_EQ(rc, 0);
        if (rc)
            return;
        unsigned bad;
        memcpy(&bad, m->data, sizeof(bad));
        hy_msg_free(m);
        HY_CHECK_EQ(bad, 0);
    }
}

static void compact_intact_body(void *arg)
{
    (void)arg;
    for (int s = 0; s < 2; s++) {
        struct holder_arg h[HOLDERS];
        hy_pid pids[HOLDERS];
        hy_ref refs[HOLDERS];
        for (unsigned i = 0; i < HOLDERS; i++) {
            memset(&h[i], 0, sizeof(h[i]));
            h[i].idx = i + 1 + 10 * (unsigned)s;
            h[i].main = hy_self();
            pids[i] = spawn_monitored(s, HY_STACK_COMPACT, holder, &h[i], &refs[i]);
        }
        for (unsigned i = 0; i < HOLDERS; i++) {
            struct hy_msg *m = NULL;
            int rc = hy_recv_tag(T_READY, &m, WAIT_NS);
            HY_CHECK_EQ(rc, 0);
            if (rc == 0)
                hy_msg_free(m);
        }
        /* compact crashers of every kind between the holders' turns, the
         * overflow (which writes over the whole shared stack) more often */
        for (unsigned round = 0; round < 3; round++) {
            for (int k = 0; k < F_NKINDS; k++) {
                crash_once(s, HY_STACK_COMPACT, k, round);
                check_holders(pids);
                crash_once(s, HY_STACK_COMPACT, F_OVERFLOW, round);
                check_holders(pids);
            }
            /* and a guarded one */
            crash_once(s, HY_STACK_GUARDED, F_OVERFLOW, round);
            check_holders(pids);
        }
        for (unsigned i = 0; i < HOLDERS; i++)
            HY_CHECK_EQ(hy_send(pids[i], T_STOP, NULL, 0), 0);
        for (unsigned i = 0; i < HOLDERS; i++) {
            struct hy_reason r = wait_down(refs[i], pids[i]);
            HY_CHECK_EQ(r.kind, HY_REASON_NORMAL);
        }
    }
}

static void test_crash_compact_other_stacks_intact(void **state)
{
    (void)state;
    hy_test_run(2, compact_intact_body, NULL);
}

/* ---- the loop: many faulting processes, both shards, every DOWN ------------ */

#define WINDOW 256

static void loop_body(void *arg)
{
    (void)arg;
    static const int rotation[] = {F_NULL_READ, F_DIV_ZERO, F_OVERFLOW, F_PANIC,
                                   F_NULL_WRITE, F_ILLEGAL, F_BUS};
    const unsigned nrot = sizeof(rotation) / sizeof(rotation[0]);
    uint64_t n = hy_test_scaled(10000);
    struct crash_arg *args = calloc(WINDOW, sizeof(*args));
    hy_ref refs[WINDOW];
    hy_pid pids[WINDOW];
    bool seen[WINDOW];
    HY_CHECK(args != NULL);
    if (!args)
        return;
    struct counter_h c[2];
    counter_start(&c[0], 0);
    counter_start(&c[1], 1);
    uint64_t downs = 0, crashes = 0, panics = 0;
    for (uint64_t base = 0; base < n; base += WINDOW) {
        unsigned w = (unsigned)(n - base < WINDOW ? n - base : WINDOW);
        for (unsigned j = 0; j < w; j++) {
            uint64_t i = base + j;
            int mode = (i / nrot) % 5 == 4 ? HY_STACK_COMPACT : HY_STACK_GUARDED;
            crash_arg_init(&args[j], rotation[i % nrot], (unsigned)i, mode);
            pids[j] = spawn_monitored((int)(i % 2), mode, crasher, &args[j], &refs[j]);
            seen[j] = false;
        }
        for (unsigned got = 0; got < w; got++) {
            struct hy_msg *m = NULL;
            int rc = hy_recv_tag(HY_TAG_DOWN, &m, WAIT_NS);
            HY_CHECK_EQ(rc, 0);
            if (rc)
                break;
            struct hy_down_info d;
            memcpy(&d, m->data, sizeof(d));
            hy_msg_free(m);
            unsigned j = 0;
            while (j < w && !hy_ref_eq(refs[j], d.ref))
                j++;
            HY_CHECK(j < w);
            if (j == w)
                continue;
            HY_CHECK(!seen[j]);
            seen[j] = true;
            HY_CHECK(hy_pid_eq(d.pid, pids[j]));
            check_reason(&args[j], &d.reason);
            HY_CHECK_EQ(atomic_load(&args[j].trail), expected_trail(args[j].kind));
            downs++;
            crashes += d.reason.kind == HY_REASON_CRASH;
            panics += d.reason.kind == HY_REASON_USER;
        }
        /* the runtime keeps serving on both shards */
        counter_ping(&c[0]);
        counter_ping(&c[1]);
    }
    HY_CHECK_EQ(downs, n);
    HY_CHECK_EQ(panics, (n + nrot - 1 - 3) / nrot);
    HY_CHECK(crashes + panics >= n - (DIV_TRAPS ? 0 : (n + nrot - 2) / nrot));
    counter_stop(&c[0]);
    counter_stop(&c[1]);
    free(args);
}

static void test_crash_loop(void **state)
{
    (void)state;
    hy_test_run(2, loop_body, NULL);
}

/* ---- faults that are not survivable: a forked node aborts ------------------- */

/* Runs body as the main process of a fresh two-shard runtime in a child
 * forked before any runtime starts; returns its stderr (malloc'd) and
 * asserts that it was killed by SIGABRT. */
static char *run_in_child_sig(hy_proc_fn body, int want_sig);
static char *run_in_child(hy_proc_fn body)
{
    return run_in_child_sig(body, SIGABRT);
}

/* The child starts with SIGSEGV's default action (not cmocka's handler). */
static bool default_segv_in_child;

static char *run_in_child_sig(hy_proc_fn body, int want_sig)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        if (default_segv_in_child)
            signal(SIGSEGV, SIG_DFL);
        struct hy_config cfg;
        hy_config_init(&cfg);
        cfg.nshards = 2;
        hy_run(&cfg, body, NULL);
        fprintf(stderr, "child: the runtime survived the fault\n");
        _exit(3);
    }
    close(fds[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (;;) {
        ssize_t k = read(fds[0], out + len, cap - 1 - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != want_sig)
        print_error("child status %#x, stderr:\n%s\n", status, out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), want_sig);
    return out;
}

static void expect_diagnostic(const char *out, const char *where)
{
    if (!strstr(out, "hydra: fatal: SIGSEGV at 0x") || !strstr(out, where) ||
        !strstr(out, "not survivable, aborting"))
        print_error("stderr of the child:\n%s\n", out);
    assert_non_null(strstr(out, "hydra: fatal: SIGSEGV at 0x"));
    assert_non_null(strstr(out, where));
    assert_non_null(strstr(out, "not survivable, aborting"));
}

/* hy_msg_free() of a wild pointer: the fault is in the runtime's own code
 * (the message allocator), with the process's in-runtime count raised. */
static void wild_free_main(void *arg)
{
    (void)arg;
    hy_msg_free(launder((void *)(uintptr_t)0x40));
}

static void test_crash_in_runtime_aborts(void **state)
{
    (void)state;
    char *out = run_in_child(wild_free_main);
    expect_diagnostic(out, "inside the Hydra runtime");
    /* the faulting code's object and offset, then the frames that led there
     * (at least the allocator and the process's function) */
    const char *pc = strstr(out, "(pc 0x");
    if (!pc || !strstr(pc, " in ") || !strstr(out, "  #00 0x") || !strstr(out, "  #01 0x"))
        print_error("stderr of the child:\n%s\n", out);
    assert_non_null(pc);
    assert_true(strstr(pc, " in ") != NULL && strstr(pc, " in ") < strchr(pc, ')'));
    assert_non_null(strstr(out, "  #00 0x"));
    assert_non_null(strstr(out, "  #01 0x"));
    free(out);
}

/* strlen() of a wild pointer: the fault is inside the C library. */
static void wild_strlen_main(void *arg)
{
    (void)arg;
    size_t n = strlen(launder((void *)(uintptr_t)0x10));
    HY_CHECK_EQ(n, 0);
}

static void test_crash_in_libc_aborts(void **state)
{
    (void)state;
    char *out = run_in_child(wild_strlen_main);
    /* ASan's interceptor may be the code that faults: a library too */
    expect_diagnostic(out, strstr(out, "inside the C library") ? "inside the C library"
                                                               : "inside a library");
    free(out);
}

/* hy_send() of a wild payload: the runtime copies it with memcpy (in libc,
 * after the buffer is taken): a fault inside the C library. */
static void wild_send_main(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_send(hy_self(), 1, launder((void *)(uintptr_t)0x20), 64), 0);
}

static void test_crash_send_wild_payload_aborts(void **state)
{
    (void)state;
    char *out = run_in_child(wild_send_main);
    expect_diagnostic(out, strstr(out, "inside the C library") ? "inside the C library"
                                                               : "inside a library");
    free(out);
}

/* A cleanup handler runs on the shard, outside any process: a fault there
 * is one inside the runtime. */
static void faulting_cleanup(void *arg)
{
    (void)arg;
    (void)fault_null_read();
}

static void cleanup_fault_main(void *arg)
{
    (void)arg;
    HY_CHECK_EQ(hy_on_exit(faulting_cleanup, NULL), 0);
}

static void test_crash_in_cleanup_handler_aborts(void **state)
{
    (void)state;
    char *out = run_in_child(cleanup_fault_main);
    expect_diagnostic(out, "inside the Hydra runtime");
    free(out);
}

/* ---- a fault inside each part of the runtime aborts ------------------------------ */

static int fp_target;

static void fp_idle(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    (void)hy_recv(&m, WAIT_NS);
}

static void fp_noop(void *arg)
{
    (void)arg;
}

static const struct hy_gen_server_ops fp_server_ops = {0};

static void fp_arm(int point)
{
    atomic_store(&hy__fault_point, point);
}

/* Takes the runtime through the point fp_target with the fault armed: a
 * fault in the runtime's code, while a process is current. */
static void fault_point_main(void *arg)
{
    (void)arg;
    hy_pid pid = HY_PID_NONE;
    struct hy_msg *reply = NULL;
    hy_ref ref;
    switch (fp_target) {
    case HY_FP_SPAWN:
        fp_arm(HY_FP_SPAWN);
        (void)hy_spawn(fp_noop, NULL, &pid);
        break;
    case HY_FP_MONITOR: {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = 1;
        HY_CHECK_EQ(hy_spawn_opt(fp_idle, NULL, &o, &pid), 0);
        fp_arm(HY_FP_MONITOR);
        (void)hy_monitor(pid, &ref);
        break;
    }
    case HY_FP_TIMER:
        fp_arm(HY_FP_TIMER);
        (void)hy_send_after(1000000, hy_self(), 5, NULL, 0, 0, &ref);
        break;
    case HY_FP_NAME:
        fp_arm(HY_FP_NAME);
        (void)hy_register("fault_point", hy_self());
        break;
    case HY_FP_GEN_SERVER:
        HY_CHECK_EQ(hy_gen_server_start(&fp_server_ops, NULL, NULL, &pid), 0);
        fp_arm(HY_FP_GEN_SERVER);
        (void)hy_gen_server_call(pid, 1, NULL, 0, WAIT_NS, &reply, NULL);
        break;
    case HY_FP_HANDOFF:
        /* a ready guarded process: the yield hands the shard straight to it */
        HY_CHECK_EQ(hy_spawn(fp_noop, NULL, &pid), 0);
        fp_arm(HY_FP_HANDOFF);
        (void)hy_yield();
        break;
    case HY_FP_MSG:
        fp_arm(HY_FP_MSG);
        (void)hy_send(hy_self(), 5, NULL, 0);
        break;
    }
    fp_arm(HY_FP_NONE);
}

static void fault_point_aborts(int point)
{
    fp_target = point;
    char *out = run_in_child(fault_point_main);
    expect_diagnostic(out, "inside the Hydra runtime");
    free(out);
}

static void test_crash_fault_in_spawn_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_SPAWN);
}

static void test_crash_fault_in_monitor_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_MONITOR);
}

static void test_crash_fault_in_timer_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_TIMER);
}

static void test_crash_fault_in_names_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_NAME);
}

static void test_crash_fault_in_gen_server_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_GEN_SERVER);
}

static void test_crash_fault_in_handoff_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_HANDOFF);
}

static void test_crash_fault_in_message_path_aborts(void **state)
{
    (void)state;
    fault_point_aborts(HY_FP_MSG);
}

/* ---- signals that are not the running process's fault ------------------------------ */

static _Atomic int app_hits;
static _Atomic int app_code;

static void app_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    atomic_fetch_add(&app_hits, 1);
    atomic_store(&app_code, si->si_code);
}

/* A SIGSEGV sent to the shard thread (tgkill) while a process runs. */
static void sent_segv_main(void *arg)
{
    (void)arg;
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGSEGV);
    /* still alive: the signal was not taken for this process's fault */
    HY_CHECK_EQ(atomic_load(&app_hits), 1);
    HY_CHECK_EQ(atomic_load(&app_code), SI_TKILL);
}

/* kill -SEGV from outside is not a fault of the running process: it goes to
 * the handler the application had installed before the runtime started. */
static void test_crash_sent_signal_goes_to_previous_handler(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = app_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
    atomic_store(&app_hits, 0);
    hy_test_run(2, sent_segv_main, NULL);
    assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
    assert_int_equal(atomic_load(&app_hits), 1);
}

static void sent_segv_default_main(void *arg)
{
    (void)arg;
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGSEGV);
}

/* With no handler of the application's, a sent SIGSEGV has its default
 * action: the node dies of SIGSEGV (it does not end one process). */
static void test_crash_sent_signal_default_action(void **state)
{
    (void)state;
    default_segv_in_child = true;
    char *out = run_in_child_sig(sent_segv_default_main, SIGSEGV);
    default_segv_in_child = false;
    assert_null(strstr(out, "Error in process"));
    free(out);
}

static __thread sigjmp_buf *recover_to;

static void app_recover(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    if (recover_to)
        siglongjmp(*recover_to, 1);
    abort();
}

static _Atomic int foreign_result;

static void *foreign_faulter(void *arg)
{
    (void)arg;
    sigjmp_buf jb;
    recover_to = &jb;
    if (sigsetjmp(jb, 1) == 0) {
        (void)fault_null_read();
        atomic_store(&foreign_result, -1);
    } else {
        atomic_store(&foreign_result, 1);
    }
    recover_to = NULL;
    return NULL;
}

static bool foreign_done(void *arg)
{
    (void)arg;
    return atomic_load(&foreign_result) != 0;
}

static void foreign_fault_main(void *arg)
{
    (void)arg;
    pthread_t t;
    atomic_store(&foreign_result, 0);
    HY_CHECK_EQ(pthread_create(&t, NULL, foreign_faulter, NULL), 0);
    HY_CHECK(hy_test_wait_until(foreign_done, NULL, 20000));
    pthread_join(t, NULL);
    HY_CHECK_EQ(atomic_load(&foreign_result), 1);
}

/* A fault on a thread of the application's own (not a shard) is not the
 * runtime's business: the application's previous handler gets it. */
static void test_crash_fault_on_foreign_thread_chains(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = app_recover;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
    hy_test_run(2, foreign_fault_main, NULL);
    assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
    assert_int_equal(atomic_load(&foreign_result), 1);
}

/* ---- the crash log ------------------------------------------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;

static void log_capture(enum hy_log_level level, const char *line, void *ctx)
{
    (void)level;
    (void)ctx;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(line);
    if (log_len + n + 2 < sizeof(log_buf)) {
        memcpy(log_buf + log_len, line, n);
        log_len += n;
        log_buf[log_len++] = '\n';
        log_buf[log_len] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}

static void log_start(void)
{
    pthread_mutex_lock(&log_lock);
    log_len = 0;
    log_buf[0] = '\0';
    pthread_mutex_unlock(&log_lock);
    hy_log_set_sink(log_capture, NULL);
}

static bool log_has(const char *s)
{
    pthread_mutex_lock(&log_lock);
    bool r = strstr(log_buf, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}

static void expect_log(const char *s)
{
    if (!log_has(s))
        print_error("missing '%s' in the log:\n%s\n", s, log_buf);
    assert_true(log_has(s));
}

/* (code after each call: no tail calls, every frame shows) */
FAULT_FN static void crashy_deep(void)
{
    fault_null_write();
    __asm__ volatile("");
}

static void crashy_main(void *arg)
{
    struct crash_arg *a = arg;
    HY_CHECK_EQ(hy_register("crashy", hy_self()), 0);
    atomic_store(&a->reached, 1);
    if (a->kind == F_OVERFLOW)
        (void)fault_recurse(0);
    else if (a->kind == F_PANIC)
        hy_panic("gave up at %u", a->idx);
    else
        crashy_deep();
    __asm__ volatile("");
}

static hy_pid logged_pid;

static void crash_log_body(void *arg)
{
    struct crash_arg *a = arg;
    hy_ref ref;
    logged_pid = spawn_monitored(1, HY_STACK_DEFAULT, crashy_main, a, &ref);
    (void)wait_down(ref, logged_pid);
}

static void run_logged(int kind)
{
    static struct crash_arg a;
    crash_arg_init(&a, kind, 7, HY_STACK_GUARDED);
    log_start();
    hy_test_run(2, crash_log_body, &a);
    hy_log_set_sink(NULL, NULL);
    char pid[HY_PID_STRLEN], want[128];
    hy_pid_format(logged_pid, pid, sizeof(pid));
    snprintf(want, sizeof(want), "Error in process %s (registered name crashy", pid);
    expect_log(want);
    expect_log("initial function crashy_main");
    expect_log("#0 0x");
}

/* An unsupervised process that faults leaves an error in the log: who, its
 * name and initial function, the fault and a named backtrace. */
static void test_crash_log_fault(void **state)
{
    (void)state;
    run_logged(F_NULL_WRITE);
    expect_log("with exit value crash(SIGSEGV at 0x0)");
#if HY_HAVE_LIBDW
    expect_log("fault_null_write");
    expect_log("crashy_deep");
#endif
}

static void test_crash_log_stack_overflow(void **state)
{
    (void)state;
    run_logged(F_OVERFLOW);
    expect_log("stack overflow");
#if HY_HAVE_LIBDW
    expect_log("fault_recurse");
#endif
}

static void test_crash_log_panic(void **state)
{
    (void)state;
    run_logged(F_PANIC);
    expect_log("with exit value user(0, gave up at 7)");
}

int main(void)
{
#if defined(__SANITIZE_THREAD__)
    /* the fault handler leaves by a stack switch: it never returns into
     * ThreadSanitizer's own signal handling, which delivers these signals */
    fprintf(stderr, "skipped: crash isolation cannot run under ThreadSanitizer\n");
    return 77;
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_null_read),
        cmocka_unit_test(test_crash_null_write),
        cmocka_unit_test(test_crash_divide_by_zero),
        cmocka_unit_test(test_crash_illegal_instruction),
        cmocka_unit_test(test_crash_bus_error),
        cmocka_unit_test(test_crash_stack_overflow),
        cmocka_unit_test(test_crash_panic),
        cmocka_unit_test(test_crash_every_kind_in_a_row),
        cmocka_unit_test(test_crash_exit_from_depth),
        cmocka_unit_test(test_crash_compact_overflow),
        cmocka_unit_test(test_crash_compact_other_stacks_intact),
        cmocka_unit_test(test_crash_loop),
        cmocka_unit_test(test_crash_in_runtime_aborts),
        cmocka_unit_test(test_crash_in_libc_aborts),
        cmocka_unit_test(test_crash_send_wild_payload_aborts),
        cmocka_unit_test(test_crash_in_cleanup_handler_aborts),
        cmocka_unit_test(test_crash_fault_in_spawn_aborts),
        cmocka_unit_test(test_crash_fault_in_monitor_aborts),
        cmocka_unit_test(test_crash_fault_in_timer_aborts),
        cmocka_unit_test(test_crash_fault_in_names_aborts),
        cmocka_unit_test(test_crash_fault_in_gen_server_aborts),
        cmocka_unit_test(test_crash_fault_in_handoff_aborts),
        cmocka_unit_test(test_crash_fault_in_message_path_aborts),
        cmocka_unit_test(test_crash_sent_signal_goes_to_previous_handler),
        cmocka_unit_test(test_crash_sent_signal_default_action),
        cmocka_unit_test(test_crash_fault_on_foreign_thread_chains),
        cmocka_unit_test(test_crash_log_fault),
        cmocka_unit_test(test_crash_log_stack_overflow),
        cmocka_unit_test(test_crash_log_panic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
