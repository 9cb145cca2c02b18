/* hydra-bench: shared declarations of the benchmark program.
 *
 * Every benchmark is one row of the table in main.c: a name, a unit, the
 * number of decimals printed, and either a repetition function (run inside
 * the runtime's main process: warm-up, then BENCH_REPS measured calls, the
 * median is printed) or a driver of its own (proc_memory, ring_raw, ...).
 * The workloads mirror ../shared/peers/erlang/peerbench.erl: same counts,
 * same message shapes, receivers that really receive each message.
 */
#ifndef HY_APPS_BENCH_BENCH_H
#define HY_APPS_BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "msg.h"
#include "pid.h"
#include "proc.h"
#include "runtime.h"

/* Measured repetitions after the warm-up (peerbench's ?REPS); the
 * environment variable HYDRA_BENCH_REPS (1..BENCH_REPS_MAX) lowers it for
 * smoke runs (scripts/test). Arrays of repetitions have BENCH_REPS_MAX
 * slots. */
#define BENCH_REPS_MAX 5
extern int bench_reps;
#define BENCH_REPS bench_reps

/* Message tags of the workloads (user tags: HY_TAG_SYSTEM clear). */
enum bench_tag {
    BENCH_TAG_PING = 1,   /* {ping, Pid}: payload one hy_pid (16 bytes) */
    BENCH_TAG_PONG,       /* pong: empty */
    BENCH_TAG_STOP,       /* stop (and {stop, From}): empty or one hy_pid */
    BENCH_TAG_STOPPED,    /* acknowledgement of stop: empty */
    BENCH_TAG_NEXT,       /* {next, Next}: payload one hy_pid */
    BENCH_TAG_TOKEN,      /* ring token: one int64 (hops still to go) */
    BENCH_TAG_RING_DONE,  /* ring_done: empty */
    BENCH_TAG_GO,         /* go: empty */
    BENCH_TAG_MSG,        /* {msg, I}: one int64 */
    BENCH_TAG_DONE,       /* a worker's result: struct bench_done */
    BENCH_TAG_ALL_EXITED, /* all_exited: empty */
    BENCH_TAG_UNIT,       /* (): empty (hydra_pingpong's reply) */
    BENCH_TAG_WORKER_UP,  /* {worker_up, Pid}: one hy_pid */
    BENCH_TAG_READY,      /* a process is set up (blocked in receive next): one hy_pid */
    BENCH_TAG_HELLO,      /* {pb_hello, From}: one hy_pid */
    BENCH_TAG_PIDS,       /* {pb_pids, Echo, Sink}: two hy_pid */
    BENCH_TAG_COUNT,      /* {count, N, From}: struct bench_count */
    BENCH_TAG_COUNTED,    /* {counted, N}: struct bench_count (from = the sink, errors) */
};

/* A worker's report to the main process: when it started and finished
 * (hy_now_ns), the shard it ran on, and how many messages it found wrong
 * (0 when all is well). */
struct bench_done {
    uint64_t t0;
    uint64_t t1;
    int32_t shard;
    uint32_t errors;
};

struct bench_env {
    double scale;            /* SCALE, > 0 */
    unsigned ncpus;          /* CPUs of the affinity mask at start-up */
    int cpus[HY_MAX_SHARDS]; /* those CPUs, in order (shard i -> cpus[i]) */
};

struct bench;

/* One repetition inside the main process of a runtime; returns the metric,
 * or a negative value after bench_fail(). */
typedef double (*bench_rep_fn)(const struct bench_env *env);
/* Prints the description ("# ..." lines) of a benchmark. */
typedef void (*bench_describe_fn)(const struct bench_env *env);
/* A benchmark that drives itself: prints its result line(s); returns 0, or
 * 1 when it failed (having said why in a "#" line). */
typedef int (*bench_run_fn)(const struct bench *b, const struct bench_env *env);

struct bench {
    const char *name;
    const char *unit;
    int decimals;
    unsigned nshards; /* shards of the runtime (rep benchmarks) */
    enum hy_stack_mode stack_mode;
    bench_describe_fn describe;
    bench_rep_fn rep; /* either rep ... */
    bench_run_fn run; /* ... or run */
};

/* ---- main.c: helpers shared by the benchmark files --------------------- */

/* max(1, round(base * scale)), as peerbench's scaled/2. */
uint64_t bench_scaled(const struct bench_env *env, uint64_t base);
/* Prints a "# " line. */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Records a failure of the running benchmark (first one wins) and prints it
 * as a "#" line. Callable from any shard thread. */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True once bench_fail() was called for the running benchmark. */
bool bench_failed(void);
/* HYDRA_BENCH_RTT_PCT=1: a round-trip row also times every round trip and
 * prints the 1st, 10th, 25th and 50th percentiles of each repetition. On a
 * loaded machine the mean mostly measures the scheduler's time slices (one
 * side preempted mid round trip); the low percentiles are the round trips
 * during which both sides ran, i.e. the code's own latency. Returns an
 * array of n zeroed slots (the caller frees it), or NULL when the variable
 * is not set (or on no memory): then time nothing. */
uint32_t *bench_rtt_pct_alloc(uint64_t n);
/* Prints "# ROW rep R: p1 .. p10 .. p25 .. p50 .. us" from ns[0..n) (sorts
 * it in place; nothing when ns is NULL). */
void bench_rtt_pct_print(const char *row, int rep, uint32_t *ns, uint64_t n);
/* Median of n values (sorts vals in place). */
double bench_median(double *vals, size_t n);
/* Prints "# NAME reps: [...] UNIT" and "bench=NAME value=V unit=UNIT". */
void bench_report(const struct bench *b, const char *name, double *vals, size_t n);
/* Adds " mode=MODE" to the bench= lines bench_report prints from now on
 * (NULL: nothing), for a row whose figure depends on how it ran (the memif
 * rows: "hugepages" or "4k-pages"); scripts/bench shows it beside the
 * figure. MODE must outlive the row. Inherited by forked children. */
void bench_set_mode(const char *mode);
/* Fills cfg for a benchmark run: defaults, nshards, explicit CPU list from
 * the start-up affinity mask, stack mode. */
void bench_config(struct hy_config *cfg, const struct bench_env *env, unsigned nshards,
                  enum hy_stack_mode stack_mode);
/* Prints how the runtime runs: shards, CPUs, idle policy and spin window. */
void bench_describe_runtime(const char *name, const struct hy_config *cfg);
/* Restores the calling thread's CPU affinity to the start-up mask (hy_run
 * pins the calling thread as shard 0). */
void bench_restore_affinity(void);

/* Spawns fn on shard (HY_SHARD_SELF for the caller's) with a copy of
 * arg_size bytes of arg; on failure calls bench_fail() and returns it. */
int bench_spawn(hy_proc_fn fn, const void *arg, size_t arg_size, int shard, hy_pid *out);
/* Sends; on failure calls bench_fail() and returns the error. */
int bench_send(hy_pid to, uint64_t tag, const void *data, size_t len);
/* Receives the next message with tag, waiting at most the benchmark's
 * generous timeout; on failure calls bench_fail() and returns the error. */
int bench_recv_tag(uint64_t tag, struct hy_msg **out);
/* Receives the next struct bench_done sent by `from` into *done (the
 * message is freed); on failure calls bench_fail() and returns the error. */
int bench_recv_done(hy_pid from, struct bench_done *done);
/* Sends a struct bench_done {t0, t1, this shard, errors} to `to`. */
void bench_send_done(hy_pid to, uint64_t t0, uint64_t t1, uint32_t errors);
/* Timeout of the waits above, in ns (60 s, times SCALE when larger). */
extern int64_t bench_timeout_ns;

/* ---- the benchmarks ------------------------------------------------------ */

/* bench_core.c */
void bench_ctx_switch_describe(const struct bench_env *env);
double bench_ctx_switch_rep(const struct bench_env *env);
void bench_spawn_exit_describe(const struct bench_env *env);
double bench_spawn_exit_rep(const struct bench_env *env);
void bench_pingpong_local_describe(const struct bench_env *env);
double bench_pingpong_local_rep(const struct bench_env *env);
void bench_ring_describe(const struct bench_env *env);
double bench_ring_rep(const struct bench_env *env);
void bench_pingpong_cross_describe(const struct bench_env *env);
double bench_pingpong_cross_rep(const struct bench_env *env);
void bench_throughput_cross_describe(const struct bench_env *env);
double bench_throughput_cross_rep(const struct bench_env *env);

/* bench_otp.c */
void bench_genserver_call_describe(const struct bench_env *env);
double bench_genserver_call_rep(const struct bench_env *env);
void bench_genserver_call_cross_describe(const struct bench_env *env);
double bench_genserver_call_cross_rep(const struct bench_env *env);
void bench_supervisor_restart_describe(const struct bench_env *env);
double bench_supervisor_restart_rep(const struct bench_env *env);
void bench_supervisor_restart_long_describe(const struct bench_env *env);
double bench_supervisor_restart_long_rep(const struct bench_env *env);

/* bench_fault.c */
void bench_kill_down_describe(const struct bench_env *env);
double bench_kill_down_rep(const struct bench_env *env);
void bench_kill_down_cross_describe(const struct bench_env *env);
double bench_kill_down_cross_rep(const struct bench_env *env);
void bench_link_propagation_describe(const struct bench_env *env);
double bench_link_propagation_rep(const struct bench_env *env);
void bench_link_propagation_cross_describe(const struct bench_env *env);
double bench_link_propagation_cross_rep(const struct bench_env *env);

/* bench_dist.c */
int bench_dist_rtt_run(const struct bench *b, const struct bench_env *env);
int bench_dist_throughput_run(const struct bench *b, const struct bench_env *env);
int bench_dist_rtt_busy_run(const struct bench *b, const struct bench_env *env);
int bench_dist_rtt_udp_run(const struct bench *b, const struct bench_env *env);
int bench_dist_throughput_udp_run(const struct bench *b, const struct bench_env *env);
int bench_memif_raw_rtt_run(const struct bench *b, const struct bench_env *env);
int bench_udp_raw_rtt_run(const struct bench *b, const struct bench_env *env);
/* The hidden mode "--dist-node ARGS...": the peer node, in its own process. */
int bench_dist_node_main(int argc, char **argv);

/* bench_hydra_pingpong.c */
int bench_hydra_pingpong_run(const struct bench *b, const struct bench_env *env);

/* bench_mem.c */
int bench_proc_memory_run(const struct bench *b, const struct bench_env *env);
/* The hidden child mode: one repetition in a fresh process. */
int bench_proc_memory_child(const struct bench_env *env, enum hy_stack_mode mode);

/* bench_ring_raw.c */
int bench_ring_raw_run(const struct bench *b, const struct bench_env *env);
int bench_ring_raw_rtt_run(const struct bench *b, const struct bench_env *env);

/* bench_memcache.c: a closed-loop client of a memcached-compatible server
 * (MC_SERVER=HOST:PORT; skipped without it). */
int bench_memcache_run(const struct bench *b, const struct bench_env *env);

/* bench_ctx_floor (main.c) wraps the floor of ctx_floor.c: */
int bench_ctx_floor_run(const struct bench *b, const struct bench_env *env);
/* ctx_floor.c: ns per bare register switch over iters switches, no
 * scheduler involved. */
double hy_bench_ctx_floor_ns(unsigned long iters);

#endif /* HY_APPS_BENCH_BENCH_H */
