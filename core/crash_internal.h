/* Fault injection for the tests of crash isolation. Not installed.
 *
 * Setting hy__fault_point to one of the points below makes the runtime
 * fault (a NULL write inside the library) the next time it passes that
 * point, on any shard: the tests check that such a fault aborts the node
 * with a diagnostic instead of being taken for the running process's own.
 * The check is one relaxed load of a global that is never written outside
 * tests. */
#ifndef HY_CORE_CRASH_INTERNAL_H
#define HY_CORE_CRASH_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

enum hy__fault_point {
    HY_FP_NONE = 0,
    HY_FP_SPAWN,       /* proc.c: creating a process */
    HY_FP_MONITOR,     /* signals.c: hy_monitor, after the monitor is recorded */
    HY_FP_TIMER,       /* timer.c: arming a timer */
    HY_FP_NAME,        /* name.c: registering a name */
    HY_FP_GEN_SERVER,  /* otp/gen_server.c: a call, before it is sent */
    HY_FP_HANDOFF,     /* sched.c: switching straight to the next process */
    HY_FP_MSG,         /* msg.c: routing a message */
};

/* hidden: the library's code reads it directly, not through the GOT (the
 * hand-over's test is on every switch) */
extern _Atomic int hy__fault_point __attribute__((visibility("hidden")));

/* Faults (NULL write). Lives in the runtime's code. */
void hy__fault_hit(void);

#define HY_FAULT_POINT(id)                                                                \
    do {                                                                                  \
        if (__builtin_expect(                                                             \
                atomic_load_explicit(&hy__fault_point, memory_order_relaxed) == (id), 0)) \
            hy__fault_hit();                                                              \
    } while (0)

/* Allocation-failure injection, for paths only out-of-memory can reach:
 * while hy__fail_monitor_hi/lo name a pid (both 0: none), hy_monitor of that
 * pid fails with HY_ENOMEM as if the monitor could not be recorded. Written
 * only by tests, around the step they test. */
extern _Atomic uint64_t hy__fail_monitor_hi, hy__fail_monitor_lo;
/* Likewise: while they name a pid, an exit signal that pid traps finds no
 * memory for its EXIT message. */
extern _Atomic uint64_t hy__fail_exit_hi, hy__fail_exit_lo;

#endif /* HY_CORE_CRASH_INTERNAL_H */
