/* Crash isolation: a hardware fault in a process's own code ends that
 * process with reason crash; a fault anywhere in the runtime (or in a
 * system library it called) aborts the node with a diagnostic. See
 * signals.h for what this can and cannot protect against.
 *
 * Only user code is survivable. Which code is whose is decided by the
 * faulting address, against a table built when the handlers are installed
 * (dl_iterate_phdr, outside any handler):
 *  - the runtime: the section hydra_text (the archive programs link gathers
 *    the whole library there, see the root meson.build), or every code
 *    segment of libhydra.so when the library is shared;
 *  - system libraries: objects under /lib, /usr/lib (libc, the loader,
 *    libgcc, the sanitizer runtimes, DPDK, ...): they may hold locks;
 *  - user code: the main program and objects outside the system
 *    directories, minus the runtime's section.
 * A fault is the process's own only if its address is user code, a process
 * is current, and the shard is not in the scheduler or a bracketed runtime
 * section (HY_RT_ENTER: the runtime calling back into user code with its
 * own state in flux).
 *
 * The handler is async-signal-safe: it reads the precomputed table, walks
 * frame pointers inside the process's stack, writes with write(2), and
 * leaves by a context switch after restoring the signal mask with
 * pthread_sigmask. Signals sent with kill(2)/tgkill/sigqueue (si_code <= 0)
 * are not faults of the running code, and faults on threads that are not
 * shards are not ours: both go to the handler that was installed before
 * (or the default action). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "crash_internal.h"
#include "ctx_internal.h"
#include "errors.h"
#include "log.h"
#include "shard_internal.h"
#include "symbol_internal.h"

#ifdef HY_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define ALTSTACK_SIZE (256 * 1024) /* >= 64 KiB; ASan's handlers need room */

static const int fault_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#define NFAULT (sizeof(fault_signals) / sizeof(fault_signals[0]))
static struct sigaction saved[NFAULT];
static int installed;

_Atomic int hy__fault_point;
_Atomic uint64_t hy__fail_monitor_hi, hy__fail_monitor_lo;

/* (not instrumented: the sanitizers would report the store instead of
 * letting it fault) */
#if defined(__clang__)
__attribute__((noinline, no_sanitize("address", "undefined", "thread")))
#else
__attribute__((noinline, no_sanitize_address, no_sanitize_thread, no_sanitize("undefined")))
#endif
void hy__fault_hit(void)
{
    volatile int *p = NULL;
    __asm__ volatile("" : "+r"(p));
    *p = 1;
}

/* ---- who owns the code ------------------------------------------------------ */

enum { CODE_RUNTIME = 1, CODE_LIBC, CODE_LIB, CODE_USER };

struct code_range {
    uintptr_t lo, hi;
    uintptr_t base; /* the object's load address: offsets in a fatal report are from it */
    int kind;
    char name[40]; /* the object's file name (for the diagnostic) */
};

#define MAX_RANGES 256
static struct code_range ranges[MAX_RANGES];
static unsigned nranges;
static int runtime_known; /* the runtime's code could be told apart */

/* Bounds of the runtime's section, defined by the linker when the program
 * links the archive built for it; NULL otherwise (shared library). */
extern char __start_hydra_text[] __attribute__((weak, visibility("hidden")));
extern char __stop_hydra_text[] __attribute__((weak, visibility("hidden")));

static void add_range(uintptr_t lo, uintptr_t hi, uintptr_t base, int kind, const char *path)
{
    if (nranges == MAX_RANGES || lo >= hi)
        return;
    struct code_range *r = &ranges[nranges++];
    r->lo = lo;
    r->hi = hi;
    r->base = base;
    r->kind = kind;
    const char *slash = path ? strrchr(path, '/') : NULL;
    snprintf(r->name, sizeof(r->name), "%s", slash ? slash + 1 : (path && *path ? path : "?"));
}

static bool in_system_dir(const char *path)
{
    static const char *const dirs[] = {"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/",
                                       "/usr/libexec/"};
    if (!path || !strchr(path, '/'))
        return true; /* the vDSO and other kernel-provided objects */
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (strncmp(path, dirs[i], strlen(dirs[i])) == 0)
            return true;
    return false;
}

static int add_object(struct dl_phdr_info *info, size_t size, void *ctx)
{
    (void)size;
    unsigned *index = ctx;
    bool main_program = (*index)++ == 0;
    const char *path = main_program ? "the program" : info->dlpi_name;
    uintptr_t marker = (uintptr_t)&hy__crash_install;
    bool runtime = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && marker >= lo && marker < lo + ph->p_memsz)
            runtime = !main_program;
    }
    if (main_program && nranges && ranges[0].kind == CODE_RUNTIME && !ranges[0].base)
        ranges[0].base = info->dlpi_addr; /* the runtime's section: offsets in the program */
    int kind = CODE_USER;
    if (runtime) {
        kind = CODE_RUNTIME;
        runtime_known = 1;
    } else if (!main_program && in_system_dir(info->dlpi_name)) {
        const char *slash = strrchr(info->dlpi_name, '/');
        const char *base = slash ? slash + 1 : info->dlpi_name;
        kind = strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-", 5) == 0 ? CODE_LIBC
                                                                                  : CODE_LIB;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        add_range(lo, lo + ph->p_memsz, info->dlpi_addr, kind, path);
    }
    return 0;
}

static void build_ranges(void)
{
    nranges = 0;
    runtime_known = 0;
    /* the runtime's section first: it lies inside the program's segment and
     * the lookup takes the first match */
    uintptr_t rt_lo = (uintptr_t)__start_hydra_text, rt_hi = (uintptr_t)__stop_hydra_text;
    if (rt_lo && rt_hi > rt_lo) {
        add_range(rt_lo, rt_hi, 0, CODE_RUNTIME, "the program");
        runtime_known = 1;
    }
    unsigned index = 0;
    dl_iterate_phdr(add_object, &index);
    if (!runtime_known)
        hy_log(HY_LOG_WARNING,
               "crash isolation: the runtime's code cannot be told from the program's (static "
               "link without the hydra_text section): only faults outside bracketed runtime "
               "sections are told apart");
}

static const struct code_range *range_of(uintptr_t pc)
{
    for (unsigned i = 0; i < nranges; i++)
        if (pc >= ranges[i].lo && pc < ranges[i].hi)
            return &ranges[i];
    return NULL;
}

/* ---- per shard ------------------------------------------------------------------ */

int hy__crash_shard_init(struct hy_shard *sh)
{
    void *st = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                    0);
    if (st == MAP_FAILED)
        return HY_ENOMEM;
    stack_t ss = {.ss_sp = st, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(st, ALTSTACK_SIZE);
        return HY_EIO;
    }
    sh->altstack = st;
    sh->altstack_size = ALTSTACK_SIZE;
    return 0;
}

void hy__crash_shard_fini(struct hy_shard *sh)
{
    if (!sh->altstack)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(sh->altstack, sh->altstack_size);
    sh->altstack = NULL;
}

/* ---- the handler (async-signal-safe from here to on_fault) ------------------------ */

static const char *signame(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    default:
        return "signal";
    }
}

static void put(const char *s)
{
    (void)!write(2, s, strlen(s));
}

static void put_hex(uint64_t v)
{
    char b[19] = "0x";
    for (int i = 0; i < 16; i++)
        b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
    b[18] = 0;
    put(b);
}

/* The stack p runs on, [lo, hi), and its guard page [glo, lo). */
static void proc_stack(struct hy_shard *sh, struct hy_proc *p, uintptr_t *glo, uintptr_t *lo,
                       uintptr_t *hi)
{
    *glo = *lo = *hi = 0;
    if (p->stack_mode == HY_STACK_COMPACT && sh->compact_map) {
        *glo = (uintptr_t)sh->compact_map;
        *lo = (uintptr_t)sh->compact_lo;
        *hi = (uintptr_t)sh->compact_hi;
    } else if (p->stack) {
        *glo = (uintptr_t)p->stack->map;
        *lo = (uintptr_t)p->stack->lo;
        *hi = (uintptr_t)p->stack->map + p->stack->map_size;
    }
}

static bool hit_guard(struct hy_shard *sh, struct hy_proc *p, uintptr_t addr)
{
    if (!sh || !p)
        return false;
    uintptr_t glo, lo, hi;
    proc_stack(sh, p, &glo, &lo, &hi);
    return glo && addr >= glo && addr < lo;
}

/* " in OBJECT+0xOFFSET" for a code address in a known object (what
 * addr2line -e OBJECT takes), nothing otherwise. */
static void put_where(uintptr_t a)
{
    const struct code_range *r = range_of(a);
    if (!r)
        return;
    put(" in ");
    put(r->name);
    put("+");
    put_hex(a - r->base);
}

static __attribute__((noreturn)) void die(int sig, siginfo_t *si, const void *ucv, uintptr_t pc,
                                          const char *where, const char *object)
{
    struct hy_shard *sh = hy__tls_shard;
    put("hydra: fatal: ");
    put(signame(sig));
    put(" at ");
    put_hex((uint64_t)(uintptr_t)si->si_addr);
    put(" (pc ");
    put_hex(pc);
    put_where(pc);
    put(") ");
    put(where);
    if (object) {
        put(" (");
        put(object);
        put(")");
    }
    if (sh && hit_guard(sh, sh->current, (uintptr_t)si->si_addr))
        put(", stack overflow");
    put(": not survivable, aborting\n");
    /* where it happened: frame pointers (objects built without them end the
     * walk early), each address with its object and offset */
    if (sh) {
        uintptr_t bt[16];
        unsigned n = hy__crash_backtrace(sh, ucv, bt, 16);
        for (unsigned i = 0; i < n; i++) {
            char num[8] = "  #";
            num[3] = (char)('0' + (i / 10) % 10);
            num[4] = (char)('0' + i % 10);
            num[5] = ' ';
            num[6] = 0;
            put(num);
            put_hex(bt[i]);
            put_where(bt[i]);
            put("\n");
        }
    }
    signal(SIGABRT, SIG_DFL);
    abort();
}

static const struct sigaction *saved_for(int sig)
{
    for (size_t i = 0; i < NFAULT; i++)
        if (fault_signals[i] == sig)
            return &saved[i];
    return NULL;
}

/* Hands a signal that is not a fault of a process's code to whoever had
 * it before: the application's handler, or the default action. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = saved_for(sig);
    bool sent = si->si_code <= 0;
    if (old && (old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old && !(old->sa_flags & SA_SIGINFO) && old->sa_handler != SIG_DFL) {
        if (old->sa_handler == SIG_IGN) {
            if (sent)
                return; /* ignored, as it would have been without us */
        } else {
            old->sa_handler(sig);
            return;
        }
    }
    /* the default action: reinstate it, then let it happen (a fault
     * re-executes the instruction on return; a sent signal is sent again) */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (sent)
        syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

/* A fault in a leaf function that set up no frame: its caller's return
 * address is at the stack pointer, and the frame-pointer walk would skip
 * that caller. Taken when it follows a call instruction in known code. */
static uintptr_t leaf_return(const void *ucv, uintptr_t lo, uintptr_t hi)
{
#if defined(__x86_64__)
    const ucontext_t *u = ucv;
    uintptr_t sp = (uintptr_t)u->uc_mcontext.gregs[REG_RSP];
    if (sp < lo || sp + sizeof(uintptr_t) > hi || (sp & 7))
        return 0;
    uintptr_t ret = *(const uintptr_t *)sp;
    const struct code_range *r = range_of(ret);
    if (!r || ret - 6 < r->lo)
        return 0;
    const unsigned char *c = (const unsigned char *)ret;
    if (c[-5] == 0xe8 || c[-2] == 0xff || c[-3] == 0xff || c[-6] == 0xff)
        return ret;
#elif defined(__aarch64__)
    (void)lo;
    (void)hi;
    const ucontext_t *u = ucv;
    return (uintptr_t)u->uc_mcontext.regs[30]; /* the link register */
#else
    (void)ucv;
    (void)lo;
    (void)hi;
#endif
    return 0;
}

unsigned hy__crash_backtrace(struct hy_shard *sh, const void *ucv, uintptr_t *out, unsigned max)
{
    uintptr_t pc, fp, glo = 0, lo = 0, hi = 0;
    hy__uc_pc_fp(ucv, &pc, &fp);
    if (sh->current) {
        proc_stack(sh, sh->current, &glo, &lo, &hi);
    } else if (sh->sched_stack_lo) {
        lo = (uintptr_t)sh->sched_stack_lo;
        hi = lo + sh->sched_stack_size;
    }
    unsigned n = hy__fp_backtrace(pc, fp, lo, hi, out, max);
    uintptr_t leaf = leaf_return(ucv, lo, hi);
    if (leaf && n >= 1 && n < max && (n < 2 || out[1] != leaf)) {
        memmove(&out[2], &out[1], (n - 1) * sizeof(uintptr_t));
        out[1] = leaf;
        n++;
    }
    return n;
}

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
    /* kill(2), tgkill, sigqueue: not a fault of whatever runs now */
    if (si->si_code <= 0) {
        chain(sig, si, ucv);
        return;
    }
    struct hy_shard *sh = hy__tls_shard;
    if (!sh) {
        chain(sig, si, ucv); /* a thread of the application's own */
        return;
    }
    struct hy_proc *p = sh->current;
    uintptr_t pc, fp;
    hy__uc_pc_fp(ucv, &pc, &fp);
    if (!p || sh->in_runtime || p->in_rt)
        die(sig, si, ucv, pc, "while the shard was inside the Hydra runtime", NULL);
    const struct code_range *r = range_of(pc);
    if (!r)
        die(sig, si, ucv, pc, "in code unknown to the runtime (not loaded when it started)", NULL);
    switch (r->kind) {
    case CODE_RUNTIME:
        die(sig, si, ucv, pc, "inside the Hydra runtime", NULL);
    case CODE_LIBC:
        die(sig, si, ucv, pc, "inside the C library, called from a process", r->name);
    case CODE_LIB:
        die(sig, si, ucv, pc, "inside a library, called from a process", r->name);
    default:
        break;
    }
    /* The fault is the process's own: end it, resume the scheduler, which
     * logs it (hy__crash_log) with what is recorded here. */
    sh->fault_overflow = hit_guard(sh, p, (uintptr_t)si->si_addr);
    sh->fault_nbt = (uint8_t)hy__crash_backtrace(sh, ucv, sh->fault_bt, HY_BT_MAX);
    sh->fault_pending = 1;
    struct hy_reason reason = hy_reason_make(HY_REASON_CRASH);
    reason.code = sig;
    reason.addr = (uint64_t)(uintptr_t)si->si_addr;
    strncpy(reason.text, signame(sig), HY_REASON_TEXT_MAX - 1);
    p->reason = reason;
    p->state = HY_P_DEAD;
    /* leaving the handler by a stack switch, not sigreturn: restore the mask
     * the kernel set for it (this thread's only) */
    ucontext_t *uc = ucv;
    pthread_sigmask(SIG_SETMASK, &uc->uc_sigmask, NULL);
    sh->in_runtime = true;
#ifdef HY_ASAN
    /* this frame is abandoned on the alternate stack, never returned from:
     * clear its poison, or the next fault's handler inherits stale marks */
    if (sh->altstack)
        __asan_unpoison_memory_region(sh->altstack, sh->altstack_size);
    __sanitizer_start_switch_fiber(NULL, sh->sched_stack_lo, sh->sched_stack_size);
#endif
    hy__tsan_switch(sh->tsan_sched_fiber);
    /* save into the dead process's record, not a local: under ASan's
     * use-after-return mode a local lives on the fake stack just dropped */
    hy__ctx_switch(&p->sp, sh->sched_sp);
    __builtin_unreachable();
}

/* ---- the crash log (on the shard, outside any handler) ----------------------------- */

char *hy__psig_name(struct hy_proc *p);

void hy__crash_log(struct hy_shard *sh, struct hy_proc *p, const uintptr_t *bt, unsigned nbt,
                   bool overflow)
{
    (void)sh;
    if (HY_LOG_ERROR > hy_log_get_level())
        return;
    char pid[HY_PID_STRLEN], why[HY_REASON_TEXT_MAX + 64], fn[160];
    hy_pid_format(p->pid, pid, sizeof(pid));
    hy_reason_format(&p->reason, why, sizeof(why));
    hy__symbolize((uintptr_t)p->fn, 0, fn, sizeof(fn));
    const char *name = hy__psig_name(p);
    hy_log(HY_LOG_ERROR, "Error in process %s (%s%s, initial function %s) with exit value %s%s",
           pid, name && *name ? "registered name " : "no registered name",
           name && *name ? name : "", fn, why,
           overflow ? ": stack overflow (the guard page below its stack was hit)" : "");
    for (unsigned i = 0; i < nbt; i++) {
        char sym[200];
        unsigned same = 0;
        while (i + same + 1 < nbt && bt[i + same + 1] == bt[i])
            same++;
        hy__symbolize(bt[i], i > 0, sym, sizeof(sym));
        hy_log(HY_LOG_ERROR, "  #%u 0x%llx %s", i, (unsigned long long)bt[i], sym);
        if (same) {
            hy_log(HY_LOG_ERROR, "  ... #%u repeated %u more times", i, same);
            i += same;
        }
    }
}

__attribute__((noinline)) void hy__crash_log_panic(struct hy_proc *p)
{
    struct hy_shard *sh = p->shard;
    uintptr_t glo, lo, hi, bt[HY_BT_MAX + 1];
    proc_stack(sh, p, &glo, &lo, &hi);
    /* from this frame: [0] is the return into hy_panic, skipped. Named and
     * logged by the scheduler, on its own stack (symbolising needs more
     * stack than a process may have left). */
    unsigned n = hy__fp_backtrace(0, (uintptr_t)__builtin_frame_address(0), lo, hi, bt,
                                  HY_BT_MAX + 1);
    n = n > 0 ? n - 1 : 0;
    memcpy(sh->fault_bt, bt + 1, n * sizeof(uintptr_t));
    sh->fault_nbt = (uint8_t)n;
    sh->fault_overflow = 0;
    sh->fault_pending = 1;
}

/* ---- install ------------------------------------------------------------------------ */

int hy__crash_install(void)
{
    if (installed++)
        return 0;
    build_ranges();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFAULT; i++)
        sigaction(fault_signals[i], &sa, &saved[i]);
    return 0;
}

void hy__crash_uninstall(void)
{
    if (!installed || --installed)
        return;
    for (size_t i = 0; i < NFAULT; i++)
        sigaction(fault_signals[i], &saved[i], NULL);
}
