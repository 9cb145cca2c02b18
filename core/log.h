/* Logging: one line per event to stderr (or a sink set by the user).
 * Safe from any thread; lines are written with one write(2) each so they do
 * not interleave. */
#ifndef HY_CORE_LOG_H
#define HY_CORE_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum hy_log_level {
    HY_LOG_ERROR = 0,
    HY_LOG_WARNING,
    HY_LOG_NOTICE,
    HY_LOG_INFO,
    HY_LOG_DEBUG,
};

/* Receives each formatted line (without trailing newline). line is
 * borrowed for the call. It runs inside the runtime: a fault in a sink
 * aborts the node like one in the runtime's own code. It may be called from
 * any thread, also outside a process: it must not yield, receive or wait
 * for a process, and must not set a sink itself. */
typedef void (*hy_log_sink_fn)(enum hy_log_level level, const char *line, void *ctx);

/* Sets the most verbose level printed (default HY_LOG_NOTICE, or the
 * HYDRA_LOG environment variable: error|warning|notice|info|debug). */
void hy_log_set_level(enum hy_log_level level);
enum hy_log_level hy_log_get_level(void);

/* Replaces the sink (NULL restores stderr). ctx is borrowed. Returns once
 * every line being written through the previous sink, on any thread, has
 * left it: the previous sink's ctx may then be destroyed. Meanwhile the
 * calling thread yields the CPU (the wait is as long as the longest sink
 * call in flight).
 * Context: anywhere but a signal handler or a sink. */
void hy_log_set_sink(hy_log_sink_fn fn, void *ctx);

/* Stores the current sink and its ctx in *fn and *ctx (both borrowed; either
 * may be NULL to skip it); *fn is NULL when lines go to stderr. A module
 * that installs a sink of its own reads the previous one first, calls it
 * from its sink, and sets it back when it is done.
 * Context: anywhere but a signal handler; the pair is read as one (a sink
 * and the ctx it was set with). */
void hy_log_get_sink(hy_log_sink_fn *fn, void **ctx);

/* Formats and emits one line, prefixed with the level and, on a shard, the
 * shard and running pid. Context: any thread, not signal-safe. */
void hy_log(enum hy_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_LOG_H */
