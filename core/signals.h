/* Links, monitors, exit signals, trap_exit, aliases (Erlang/OTP semantics).
 *
 * Signals travel in the same per-shard-pair FIFO as messages, so between one
 * sender and one receiver a message sent before a signal arrives before it,
 * and a process's EXIT/DOWN arrive after every message it sent before dying.
 * All of this holds whether the two processes share a shard or not.
 *
 * Exit signals (from hy_exit_pid() or from a linked process ending):
 *  - to a process that does not trap exits: reason normal is ignored (unless
 *    the process sends it to itself); any other reason ends the process with
 *    that reason;
 *  - to a process that traps exits: the signal becomes a message with tag
 *    HY_TAG_EXIT whose payload is a struct hy_exit_info;
 *  - hy_exit_pid(pid, kill) ends the target even when it traps, with reason
 *    killed; a process that died that way propagates killed (not kill) to its
 *    links, so kill does not cascade as kill.
 * A signal takes effect at the target's next runtime call of any kind
 * (hy_send and hy_yield included), whichever shard sent it: an exit signal
 * for another shard is published at once and raises a flag that the
 * target's runtime calls check, so a busy process does not run on through
 * its shard's batch. A process that never calls the runtime cannot be
 * reached: that is the stall detector's case (runtime.h), not a silent hang.
 */
#ifndef HY_CORE_SIGNALS_H
#define HY_CORE_SIGNALS_H

#include <stdbool.h>
#include <stdint.h>

#include "msg.h"
#include "pid.h"
#include "proc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HY_TAG_EXIT (HY_TAG_SYSTEM | 0x45584954ull) /* payload: struct hy_exit_info */
#define HY_TAG_DOWN (HY_TAG_SYSTEM | 0x444f574eull) /* payload: struct hy_down_info */

#define HY_TAG_NODEUP (HY_TAG_SYSTEM | 0x4e4f4455ull)   /* payload: uint32_t node id */
#define HY_TAG_NODEDOWN (HY_TAG_SYSTEM | 0x4e4f4444ull) /* payload: uint32_t node id */

#define HY_NAME_MAX 64 /* registered names, NUL included */

/* Payload of an HY_TAG_EXIT message (trap_exit). */
struct hy_exit_info {
    hy_pid from;
    struct hy_reason reason;
};

/* Payload of an HY_TAG_DOWN message; the message's ref field is the monitor
 * reference too. */
struct hy_down_info {
    hy_ref ref;
    hy_pid pid;                 /* the monitored process (HY_PID_NONE if it never existed by name) */
    char name[HY_NAME_MAX];     /* the name, when monitored by name; "" otherwise */
    struct hy_reason reason;
};

/* Decodes a trapped exit message: 0 and *out (borrowed) filled when m is an
 * HY_TAG_EXIT message with a struct hy_exit_info payload; HY_EINVAL (and
 * *out untouched) for any other message or a NULL argument. m stays the
 * caller's. Context: anywhere. */
int hy_msg_exit_info(const struct hy_msg *m, struct hy_exit_info *out);

/* Decodes a monitor's DOWN message: 0 and *out (borrowed) filled when m is
 * an HY_TAG_DOWN message with a struct hy_down_info payload; HY_EINVAL (and
 * *out untouched) otherwise. m stays the caller's. Context: anywhere. */
int hy_msg_down_info(const struct hy_msg *m, struct hy_down_info *out);

/* Decodes a node monitor's HY_TAG_NODEUP/HY_TAG_NODEDOWN message: 0 and
 * *node filled; HY_EINVAL for any other message. Context: anywhere. */
int hy_msg_node_event(const struct hy_msg *m, uint32_t *node);

/* Links the caller and pid (bidirectional; linking twice is one link;
 * linking yourself does nothing). If pid is dead or unknown: a caller that
 * does not trap exits gets HY_ENOPROC; a trapping caller gets 0 and an
 * {EXIT, pid, noproc} message (OTP 25). A pid of a node that cannot be
 * reached (distribution off, a node that is not a configured peer, or one
 * declared down) is treated the same way at once, with reason noconnection.
 * Across shards the call waits for the target's shard to answer.
 * Errors: HY_ENOPROC, HY_ENOTPROC, HY_ENOMEM.
 * Context: a process. */
int hy_link(hy_pid pid);

/* Removes the link with pid in both directions. Once it returns, no exit
 * signal due to that link reaches the caller, even one already in flight
 * (OTP 23's unlink-id exchange). Unlinking a pid that is not linked is not
 * an error. Errors: HY_ENOTPROC. Context: a process. */
int hy_unlink(hy_pid pid);

/* Sends an exit signal with reason (copied) to pid, handled by the target
 * as described above; to a dead pid it is dropped. Sending to yourself acts
 * at once (this call does not return unless the signal is ignored or
 * trapped). Errors: HY_ENOTSHARD. Context: a process or shard callback. */
int hy_exit_pid(hy_pid pid, struct hy_reason reason);

/* Sets the calling process's trap_exit flag; *old (may be NULL) gets the
 * previous value. An exit signal is never lost: when no memory can be found
 * for the EXIT message of a trapping process, the process ends with the
 * signal's reason as if it did not trap (a normal reason becomes
 * user(HY_ENOMEM, "exit signal lost: out of memory")), logged at error
 * level. Errors: HY_ENOTPROC. Context: a process. */
int hy_trap_exit(bool on, bool *old);

/* Monitors pid: when it ends (or at once, with reason noproc, if it is dead
 * or unknown) the caller receives one HY_TAG_DOWN message carrying *ref.
 * A pid of a node that cannot be reached (distribution off, a node that is
 * not a configured peer, or one declared down) gives a DOWN with reason
 * noconnection at once, as OTP.
 * A target on another shard answers through that shard, so noproc DOWNs for
 * dead targets on different shards (or by name vs by pid) may arrive in
 * another order than the calls; for targets on one shard they come in call
 * order.
 * Monitoring yourself returns a reference and never fires (as OTP).
 * Errors: HY_ENOTPROC, HY_ENOMEM. Context: a process. */
int hy_monitor(hy_pid pid, hy_ref *ref);

/* Monitor options (hy_monitor_opt). */
#define HY_MONITOR_ALIAS 1u /* the monitor's ref is also a reply-once alias of the
                             * caller (OTP's {alias, reply_demonitor}): a message
                             * sent through {caller, ref} with hy_alias_send is
                             * delivered once; hy_demonitor or the DOWN deactivate it */

/* hy_monitor() with options (flags: HY_MONITOR_ALIAS). A GenServer call
 * uses it: the reply and the DOWN carry the same ref, so one hy_recv_ref
 * (with the receive marker) waits for either, and a reply arriving after
 * a timeout is dropped instead of landing in the mailbox.
 * Errors: as hy_monitor, HY_EINVAL (unknown flags). */
int hy_monitor_opt(hy_pid pid, unsigned flags, hy_ref *ref);

/* Monitors the process registered as name now; the DOWN carries the name.
 * An unregistered name gives DOWN noproc at once. Errors: as hy_monitor,
 * HY_EINVAL (name NULL, empty or too long). */
int hy_monitor_name(const char *name, hy_ref *ref);

/* Removes monitor ref. Afterwards no DOWN for ref is placed in the caller's
 * mailbox; with flush, one already queued is removed too. Returns 0 also
 * when the monitor already fired or never existed.
 * Errors: HY_ENOTPROC. Context: a process. */
int hy_demonitor(hy_ref ref, bool flush);

/* Monitors (on) or stops monitoring (off) node: while on, the caller gets
 * an HY_TAG_NODEDOWN message when the node is declared down (the monitor
 * then ends, as OTP's monitor_node) and HY_TAG_NODEUP when it connects. A
 * node that is not reachable (no distribution, unknown node) gives
 * NODEDOWN at once. Monitoring twice gives two messages, as in OTP.
 * Errors: HY_ENOTPROC, HY_ENOMEM. Context: a process. */
int hy_monitor_node(uint32_t node, bool on);

/* ---- names ---------------------------------------------------------------- */

/* Registers the caller (or pid, which must be a live process of this node)
 * under name. One name per process, one process per name; the name is
 * removed when the process exits.
 * Errors: HY_EEXIST (name taken, or the process already has a name),
 * HY_ENOPROC (pid dead), HY_EINVAL (bad name), HY_ENOTPROC.
 * Context: a process (the table is changed by messages to its owner shard 0;
 * the call waits for the answer). */
int hy_register(const char *name, hy_pid pid);

/* Removes name. Errors: HY_ENONAME (not registered), HY_EINVAL, HY_ENOTPROC. */
int hy_unregister(const char *name);

/* Looks name up. Errors: HY_ENONAME, HY_EINVAL, HY_ENOTSHARD.
 * Context: any shard thread; lock-free (names are read-mostly and published
 * with RCU-style quiescent-state reclamation). */
int hy_whereis(const char *name, hy_pid *out);

/* Sends to the process registered as name; the name is resolved here, at the
 * sender, so order between a sender and a receiver is the same whether it is
 * addressed by name or by pid. Errors: HY_ENONAME, and hy_send's. */
int hy_send_name(const char *name, uint64_t tag, const void *data, size_t len);

/* Copies up to max registered names (each HY_NAME_MAX bytes) into names and
 * their pids into pids (may be NULL); returns the number registered (may be
 * more than max) in *count. Errors: HY_EINVAL, HY_ENOTSHARD. */
int hy_registered(char (*names)[HY_NAME_MAX], hy_pid *pids, size_t max, size_t *count);

/* ---- aliases (OTP 24) -------------------------------------------------------- */

/* An alias routes messages to the process that created it while active. */
typedef struct hy_alias {
    hy_pid pid;
    hy_ref ref;
} hy_alias;

#define HY_ALIAS_REPLY_ONCE 1u /* deactivated by the first message through it */

/* Creates an alias of the calling process. Its ref is also the receive
 * marker (hy_recv_ref(alias.ref) skips older messages). Messages sent
 * through it carry ref = alias.ref. Errors: HY_ENOTPROC, HY_ENOMEM, HY_EINVAL. */
int hy_alias_create(unsigned flags, hy_alias *out);

/* Sends through an alias; dropped silently if the alias is not active when
 * the message arrives. Errors: as hy_send. */
int hy_alias_send(hy_alias a, uint64_t tag, const void *data, size_t len);

/* Deactivates an alias of the caller: later messages through it are
 * dropped. Errors: HY_ENOENT (not an active alias of the caller), HY_ENOTPROC. */
int hy_alias_deactivate(hy_alias a);

/* ---- process information --------------------------------------------------------- */

enum hy_proc_status {
    HY_STATUS_RUNNABLE = 0,
    HY_STATUS_RUNNING,
    HY_STATUS_WAITING,
    HY_STATUS_EXITING,
};

struct hy_proc_info {
    hy_pid pid;
    int status;               /* enum hy_proc_status */
    char name[HY_NAME_MAX];   /* "" when not registered */
    size_t mailbox_len;       /* all queued messages */
    size_t nlinks;            /* active links */
    size_t nmonitors;         /* monitors this process holds on others */
    size_t nmonitored_by;     /* monitors others hold on it */
    bool trap_exit;
    uint64_t reductions;      /* times scheduled */
    size_t memory;            /* bytes: record, stack in use, mailbox, arena */
    hy_pid links[16];         /* first min(nlinks, 16) linked pids */
};

/* Fills *info for pid (a process of this node). Across shards the call asks
 * the owning shard and waits. Errors: HY_ENOPROC (dead or unknown),
 * HY_ENOTPROC, HY_EINVAL. Context: a process. */
int hy_proc_info(hy_pid pid, struct hy_proc_info *info);

/* Lists the pids of every live process of the node (up to max into pids);
 * *count gets the total. Errors: HY_ENOTPROC, HY_EINVAL, HY_ENOMEM.
 * Context: a process. */
int hy_proc_list(hy_pid *pids, size_t max, size_t *count);

/* Lists the pids of the live processes of the calling shard only (up to
 * max into pids; *count gets the total), without any message: what a
 * per-shard collector uses. Errors: HY_ENOTSHARD, HY_EINVAL.
 * Context: a shard thread (process or callback). */
int hy_proc_list_local(hy_pid *pids, size_t max, size_t *count);

/* ---- crash isolation ------------------------------------------------------------ */
/*
 * A fault in a process's own code — SIGSEGV, SIGBUS, SIGFPE, SIGILL, or a
 * stack overflow into its guard page (the compact stack has one too) — ends
 * that process with reason crash (code = signal number, addr = faulting
 * address, text = signal name); its links and monitors are told as for any
 * exit and the shard goes on running its other processes. The handler runs
 * on a 64 KiB+ alternate stack per shard and resumes the scheduler with the
 * signal mask restored, so the next fault is caught as well.
 *
 * Only the application's own code is survivable. The faulting instruction's
 * address decides: code of the runtime (every Hydra function: spawn,
 * signals, timers, names, messages, the OTP behaviours' library code, the
 * scheduler's hand-over), of a system library (anything under /lib or
 * /usr/lib: the C library, the loader, libgcc, sanitizer runtimes, DPDK)
 * or of an object loaded after the runtime started is not the process's
 * fault: the node prints a diagnostic ("hydra: fatal: SIGSEGV at ...
 * inside the Hydra runtime: not survivable, aborting") and aborts, since
 * locks may be held and state half-changed. So does a fault in code the
 * runtime calls while its own state is in flux (exit handlers, log sinks).
 * Callbacks that run in a process (a GenServer's handle_call, a process's
 * body) are the application's code.
 *
 * Every such crash, and every hy_panic(), is logged at error level:
 * "Error in process <pid> (registered name, initial function) with exit
 * value crash(SIGSEGV at 0x...)", "stack overflow" when the guard page was
 * hit, then the process's backtrace one frame per line (found by frame
 * pointers; named with function, file and line when libdw is available).
 *
 * Signals that are not faults of the running code go to whoever handled
 * them before the runtime started (the handler the application installed,
 * or the default action): a SIGSEGV sent with kill(2), tgkill or sigqueue,
 * and any fault on a thread that is not a shard. The runtime's handlers are
 * installed when it starts and the previous ones restored when it stops.
 * The handler is async-signal-safe: everything it consults is computed
 * when the runtime starts.
 *
 * What this protects against: a bug that faults inside one process (NULL
 * dereference, division by zero, runaway recursion, a wild read).
 * What it cannot: memory the process corrupted before it faulted (other
 * processes' data, the allocator's state), the faults above, abort() and
 * failed assert()s (not caught), and a process that never calls the
 * runtime (the stall detector's case). A program that links the static
 * archive without the build's hydra_text step (see the root meson.build)
 * cannot tell runtime code from its own: the runtime then logs a warning
 * at start and only its bracketed sections abort.
 */

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_SIGNALS_H */
