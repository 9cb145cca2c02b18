/* Symbolisation for diagnostics: see symbol_internal.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "errors.h"
#include "hy_config.h"
#include "shard_internal.h"
#include "symbol_internal.h"

#if HY_HAVE_LIBDW
#include <elfutils/libdwfl.h>
#endif

static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;

#if HY_HAVE_LIBDW
static Dwfl *dwfl;
static const Dwfl_Callbacks dwfl_cbs = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
};

/* Reads the process's module list once; again after a miss (an object
 * loaded since). Called with sym_lock held. */
static Dwfl *dwfl_session(int refresh)
{
    if (dwfl && !refresh)
        return dwfl;
    if (!dwfl) {
        dwfl = dwfl_begin(&dwfl_cbs);
        if (!dwfl)
            return NULL;
    }
    dwfl_report_begin(dwfl);
    int rc = dwfl_linux_proc_report(dwfl, getpid());
    dwfl_report_end(dwfl, NULL, NULL);
    return rc == 0 ? dwfl : NULL;
}

static int dw_name(uintptr_t pc, uintptr_t look, char *buf, size_t len)
{
    Dwfl *d = dwfl_session(0);
    Dwfl_Module *mod = d ? dwfl_addrmodule(d, (Dwarf_Addr)look) : NULL;
    if (!mod && (d = dwfl_session(1)) != NULL)
        mod = dwfl_addrmodule(d, (Dwarf_Addr)look);
    if (!mod)
        return -1;
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *fn = dwfl_module_addrinfo(mod, (GElf_Addr)pc, &off, &sym, NULL, NULL, NULL);
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *dl = dwfl_module_getsrc(mod, (Dwarf_Addr)look);
    if (dl)
        file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
    if (file) {
        const char *slash = strrchr(file, '/');
        file = slash ? slash + 1 : file;
    }
    if (!fn) {
        Dwarf_Addr base = 0;
        const char *mname = dwfl_module_info(mod, NULL, &base, NULL, NULL, NULL, NULL, NULL);
        const char *slash = mname ? strrchr(mname, '/') : NULL;
        snprintf(buf, len, "%s+0x%llx", slash ? slash + 1 : (mname ? mname : "?"),
                 (unsigned long long)(pc - base));
    } else if (file && line > 0) {
        snprintf(buf, len, "%s+0x%llx (%s:%d)", fn, (unsigned long long)off, file, line);
    } else {
        snprintf(buf, len, "%s+0x%llx", fn, (unsigned long long)off);
    }
    return 0;
}
#endif

void hy__symbol_release(void)
{
#if HY_HAVE_LIBDW
    pthread_mutex_lock(&sym_lock);
    if (dwfl)
        dwfl_end(dwfl);
    dwfl = NULL;
    pthread_mutex_unlock(&sym_lock);
#endif
}

char *hy__symbolize(uintptr_t pc, int return_addr, char *buf, size_t len)
{
    if (!buf || !len)
        return buf;
    uintptr_t look = return_addr && pc ? pc - 1 : pc;
    pthread_mutex_lock(&sym_lock);
#if HY_HAVE_LIBDW
    if (dw_name(pc, look, buf, len) == 0) {
        pthread_mutex_unlock(&sym_lock);
        return buf;
    }
#endif
    Dl_info di;
    if (pc && dladdr((void *)look, &di) && di.dli_fname) {
        const char *slash = strrchr(di.dli_fname, '/');
        const char *mod = slash ? slash + 1 : di.dli_fname;
        if (di.dli_sname)
            snprintf(buf, len, "%s+0x%llx (%s)", di.dli_sname,
                     (unsigned long long)(pc - (uintptr_t)di.dli_saddr), mod);
        else
            snprintf(buf, len, "%s+0x%llx", mod,
                     (unsigned long long)(pc - (uintptr_t)di.dli_fbase));
    } else {
        snprintf(buf, len, "0x%llx", (unsigned long long)pc);
    }
    pthread_mutex_unlock(&sym_lock);
    return buf;
}

/* Reads another computation's stack from a signal handler: racy by nature
 * (ThreadSanitizer is told not to look). */
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize_thread))
#endif
unsigned hy__fp_backtrace(uintptr_t pc, uintptr_t fp, uintptr_t lo, uintptr_t hi,
                          uintptr_t *out, unsigned max)
{
    unsigned n = 0;
    if (max && pc)
        out[n++] = pc;
    /* Each frame: [fp] = the caller's fp, [fp + 8] = the return address
     * (x86-64 and aarch64 alike). Frames only grow towards hi. */
    while (n < max && fp >= lo && fp + 2 * sizeof(uintptr_t) <= hi &&
           (fp & (sizeof(uintptr_t) - 1)) == 0) {
        const uintptr_t *f = (const uintptr_t *)fp;
        uintptr_t ret = f[1];
        uintptr_t next = f[0];
        if (!ret)
            break;
        out[n++] = ret;
        if (next <= fp)
            break;
        fp = next;
    }
    return n;
}

void hy__uc_pc_fp(const void *ucontext, uintptr_t *pc, uintptr_t *fp)
{
    const ucontext_t *u = ucontext;
#if defined(__x86_64__)
    *pc = (uintptr_t)u->uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)u->uc_mcontext.gregs[REG_RBP];
#elif defined(__aarch64__)
    *pc = (uintptr_t)u->uc_mcontext.pc;
    *fp = (uintptr_t)u->uc_mcontext.regs[29];
#else
    (void)u;
    *pc = 0;
    *fp = 0;
#endif
}

/* The frame pointer and return address saved by hy__ctx_switch (its frame
 * layout: ctx_x86_64.S, ctx_aarch64.S). */
static bool saved_pc_fp(const void *sp, uintptr_t *pc, uintptr_t *fp)
{
    const uintptr_t *f = sp;
#if defined(__x86_64__)
    *fp = f[6]; /* mxcsr word, r15, r14, r13, r12, rbx, rbp, return address */
    *pc = f[7];
    return true;
#elif defined(__aarch64__)
    *fp = f[10]; /* x19..x28, x29, x30 */
    *pc = f[11];
    return true;
#else
    (void)f;
    *pc = *fp = 0;
    return false;
#endif
}

int hy__proc_detail_local(hy_pid pid, struct hy__proc_detail *out)
{
    struct hy_shard *sh = hy__tls_shard;
    if (!sh || !sh->current)
        return HY_ENOTPROC;
    if (!out)
        return HY_EINVAL;
    struct hy_proc *p = hy__proc_lookup(sh, pid);
    if (!p || p->state >= HY_P_EXITING)
        return HY_ENOPROC;
    memset(out, 0, sizeof(*out));
    out->mailbox_len = p->mb_len + (p->handed != NULL);
    /* a message handed over by a send comes first, then the mailbox's */
    for (const struct hy_msg *m = p->handed ? p->handed : p->mb_head;
         m && out->nmsgs < HY_PD_MSGS; m = m == p->handed ? p->mb_head : m->next) {
        struct hy__pd_msg *d = &out->msgs[out->nmsgs++];
        d->tag = m->tag;
        d->from = m->from;
        d->size = m->size;
        d->preview_len = m->size < HY_PD_PREVIEW ? m->size : HY_PD_PREVIEW;
        memcpy(d->preview, m->data, d->preview_len);
    }
    uintptr_t pc, fp;
    if (p == sh->current || p->state == HY_P_RUNNING || p->blocking_job) {
        out->bt_rc = HY_EBUSY;
    } else if (p->state == HY_P_NEW || !p->sp) {
        out->bt_rc = HY_ENODATA;
    } else if (p->stack_mode == HY_STACK_COMPACT || !p->stack || !saved_pc_fp(p->sp, &pc, &fp)) {
        out->bt_rc = HY_ENOTSUP;
    } else {
        uintptr_t lo = (uintptr_t)p->stack->lo;
        uintptr_t hi = (uintptr_t)p->stack->map + p->stack->map_size;
        if ((uintptr_t)p->sp < lo || (uintptr_t)p->sp >= hi)
            out->bt_rc = HY_ENOTSUP;
        else
            out->nframes = hy__fp_backtrace(pc, fp, lo, hi, out->frames, HY_BT_MAX);
    }
    return 0;
}
