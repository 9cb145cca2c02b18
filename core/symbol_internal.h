/* Symbolisation of code addresses for diagnostics (crash logs, the stall
 * detector). Not installed.
 *
 * Backtraces are captured where they happen (in a signal handler: frame
 * pointers only, see hy__fp_backtrace) and turned into names later, on a
 * thread that may take locks and allocate: with libdw when the build found
 * it (function, file:line, also for static functions and executables linked
 * without -rdynamic), else with dladdr (exported symbols only), else as
 * module+offset. */
#ifndef HY_CORE_SYMBOL_INTERNAL_H
#define HY_CORE_SYMBOL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pid.h"

#define HY_BT_MAX 32

/* Writes a readable name for the code address pc into buf (always
 * NUL-terminated): "fn+0x1c (file.c:42)" or "module+0x117d" or "0x...".
 * return_addr: pc is a return address (frames above the first): the line
 * looked up is that of the call. Returns buf.
 * Context: any thread; takes a lock and may allocate; not signal-safe. */
char *hy__symbolize(uintptr_t pc, int return_addr, char *buf, size_t len);

/* Drops what symbolisation keeps between calls (libdw's session and the
 * descriptors of the objects it opened), so a stopped runtime leaves no
 * descriptor behind; the next hy__symbolize() starts a new one.
 * Context: any thread, after the runtime's shards and watchdog stopped. */
void hy__symbol_release(void);

/* Walks the frame-pointer chain from (pc, fp) while frames stay inside
 * [lo, hi) and grow upwards; stores at most max addresses in out (pc first)
 * and returns how many. Reads only memory inside [lo, hi).
 * Context: async-signal-safe. */
unsigned hy__fp_backtrace(uintptr_t pc, uintptr_t fp, uintptr_t lo, uintptr_t hi,
                          uintptr_t *out, unsigned max);

/* The program counter and frame pointer saved in a signal's ucontext. */
void hy__uc_pc_fp(const void *ucontext, uintptr_t *pc, uintptr_t *fp);

/* ---- a look into one process of the calling shard (the node console) ---- */

#define HY_PD_MSGS    8  /* mailbox entries described */
#define HY_PD_PREVIEW 16 /* payload bytes copied from each */

struct hy__pd_msg {
    uint64_t tag;
    hy_pid from;
    uint32_t size;        /* payload bytes */
    uint32_t preview_len; /* bytes in preview (at most HY_PD_PREVIEW) */
    uint8_t preview[HY_PD_PREVIEW];
};

struct hy__proc_detail {
    uint64_t mailbox_len;
    uint32_t nmsgs; /* the first nmsgs messages, oldest first */
    struct hy__pd_msg msgs[HY_PD_MSGS];
    /* 0: frames[0..nframes) walked from its saved context (return
     * addresses, innermost first); HY_EBUSY: it runs now (the caller
     * itself), or a blocking call uses its stack; HY_ENODATA: never ran
     * (no stack yet); HY_ENOTSUP: a compact stack (saved away from its
     * addresses) or an architecture without a walker */
    int32_t bt_rc;
    uint32_t nframes;
    uintptr_t frames[HY_BT_MAX];
};

/* Describes the process pid of the calling shard into *out (borrowed): the
 * head of its mailbox and, when it is suspended on a guarded stack, the
 * return addresses of its stack walked by frame pointers (symbolise them
 * with hy__symbolize(pc, 1, ...)). Reads only the shard's own data and the
 * process's own stack: bounded time (HY_PD_MSGS messages, HY_BT_MAX
 * frames). Errors: HY_ENOPROC (no such live process on this shard),
 * HY_ENOTPROC (not called from a process), HY_EINVAL (out NULL).
 * Context: a process on pid's shard. */
int hy__proc_detail_local(hy_pid pid, struct hy__proc_detail *out);

#endif /* HY_CORE_SYMBOL_INTERNAL_H */
