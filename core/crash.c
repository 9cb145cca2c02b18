/* Crash isolation: a hardware fault in a process's own code ends that
 * process with reason crash; a fault anywhere else aborts the node with a
 * diagnostic. See signals.h for what this can and cannot protect against. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "ctx_internal.h"
#include "errors.h"
#include "shard_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define HY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HY_ASAN 1
#endif
#endif

#ifdef HY_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define ALTSTACK_SIZE (256 * 1024) /* >= 64 KiB; ASan's handlers need room */

static const int fault_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#define NFAULT (sizeof(fault_signals) / sizeof(fault_signals[0]))
static struct sigaction saved[NFAULT];
static int installed;

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

static uintptr_t fault_pc(void *uc)
{
    ucontext_t *u = uc;
#if defined(__x86_64__)
    return (uintptr_t)u->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)u->uc_mcontext.pc;
#else
    (void)u;
    return 0;
#endif
}

/* True when pc lies in the C library (a fault there may leave its locks
 * held: not survivable). */
static bool pc_in_libc(uintptr_t pc)
{
    Dl_info di;
    if (!pc || !dladdr((void *)pc, &di) || !di.dli_fname)
        return false;
    return strstr(di.dli_fname, "/libc.so") != NULL || strstr(di.dli_fname, "/libc-") != NULL;
}

static __attribute__((noreturn)) void die(int sig, siginfo_t *si, const char *where)
{
    put("hydra: fatal: ");
    put(signame(sig));
    put(" at ");
    put_hex((uint64_t)(uintptr_t)si->si_addr);
    put(" ");
    put(where);
    put(": not survivable, aborting\n");
    signal(SIGABRT, SIG_DFL);
    abort();
}

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
    struct hy_shard *sh = hy__tls_shard;
    struct hy_proc *p = sh ? sh->current : NULL;
    if (!sh)
        die(sig, si, "outside any shard");
    if (!p || sh->in_runtime || p->in_rt)
        die(sig, si, "while the shard was inside the Hydra runtime");
    if (pc_in_libc(fault_pc(ucv)))
        die(sig, si, "inside the C library, called from a process");
    /* The fault is the process's own: end it, resume the scheduler. */
    struct hy_reason r = hy_reason_make(HY_REASON_CRASH);
    r.code = sig;
    r.addr = (uint64_t)(uintptr_t)si->si_addr;
    strncpy(r.text, signame(sig), HY_REASON_TEXT_MAX - 1);
    p->reason = r;
    p->state = HY_P_DEAD;
    /* leaving the handler by a stack switch: restore the mask it blocked */
    ucontext_t *uc = ucv;
    sigprocmask(SIG_SETMASK, &uc->uc_sigmask, NULL);
    sh->in_runtime = true;
#ifdef HY_ASAN
    /* this frame is abandoned on the alternate stack, never returned from:
     * clear its poison, or the next fault's handler inherits stale marks */
    if (sh->altstack)
        __asan_unpoison_memory_region(sh->altstack, sh->altstack_size);
    __sanitizer_start_switch_fiber(NULL, sh->sched_stack_lo, sh->sched_stack_size);
#endif
    /* save into the dead process's record, not a local: under ASan's
     * use-after-return mode a local lives on the fake stack just dropped */
    hy__ctx_switch(&p->sp, sh->sched_sp);
    __builtin_unreachable();
}

int hy__crash_install(void)
{
    if (installed++)
        return 0;
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
