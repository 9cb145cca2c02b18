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

#endif /* HY_CORE_SYMBOL_INTERNAL_H */
