/* The node console: a live dashboard in the browser, Prometheus metrics and
 * a JSON API, served by the node itself over HTTP/1.1 and WebSocket.
 *
 * One call in a process of a running node turns it on:
 *
 *     struct hy_console *con;
 *     hy_console_start("127.0.0.1", 8080, NULL, &con);
 *
 * then open http://127.0.0.1:8080/ in a browser. Every asset is compiled
 * into the library (no CDN, no internet needed). Paths:
 *
 *   /               the dashboard (one page; fills itself from /api/all and
 *                   then updates over the WebSocket /ws once per refresh)
 *   /metrics        Prometheus text exposition format (names hydra_*)
 *   /api/all        everything below in one object (what /ws pushes)
 *   /api/shards     per-shard figures and the shard x shard ring traffic
 *   /api/procs      the process list
 *   /api/proc?pid=ID  one process (ID as in the process list's "id")
 *   /api/tree       the supervision tree with restart counts
 *   /api/reports    the last crash, supervisor and warning reports
 *   /api/cluster    distribution counters and connected nodes
 *   POST /api/kill?pid=ID           exit signal `kill` to a process
 *   POST /api/restart?sup=ID&child=CHILD_ID   restart a supervisor's child
 *
 * The JSON is documented in net/README.md.
 *
 * How figures are collected: the console runs one collector process per
 * shard. A request for figures sends each collector a message; the
 * collector reads its own shard's counters and processes on that shard and
 * answers, spending at most collect_budget_ns per answer (a longer process
 * list is cut short and marked partial). The time collectors spend is
 * counted and exported (hydra_console_collect_seconds_total). A collector
 * that does not answer within reply_timeout_ns is shown stale; nothing ever
 * waits on a shard from another thread.
 *
 * Security: the console binds to 127.0.0.1 unless told otherwise, and
 * refuses to bind to any other address without a token. Actions (kill,
 * restart) are off unless allow_actions is set, and always need the token
 * (HTTP header `Authorization: Bearer TOKEN`), on localhost too. Requests
 * are bounded in size (8 KiB head, 4 KiB body) and time (request_timeout_ns
 * for a whole request head: a slow sender is cut off with 408); malformed
 * requests get 400 and the connection is closed.
 */
#ifndef HY_NET_CONSOLE_H
#define HY_NET_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/pid.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options; zero fields take the defaults in brackets. */
struct hy_console_options {
    const char *token;            /* secret for actions and remote binds (copied) [none] */
    bool allow_actions;           /* enable kill / restart (token required) [false] */
    hy_pid root;                  /* supervision tree root [the application's root] */
    uint64_t refresh_ns;          /* WebSocket push period [1 s] */
    uint64_t request_timeout_ns;  /* whole request head, and idle keep-alive [10 s] */
    uint64_t collect_budget_ns;   /* a collector's time per answer [2 ms] */
    uint64_t reply_timeout_ns;    /* wait for collectors [500 ms] */
    unsigned max_connections;     /* connections at once [256] */
    unsigned max_procs;           /* processes listed per shard [1000] */
    int shard;                    /* shard whose processes listen and serve
                                     the connections [0]; -1: every shard
                                     (an open socket makes a shard's
                                     scheduler peek at its I/O completions
                                     every turn: one shard keeps that cost
                                     off the others) */
};

/* A running console (opaque, owned by the caller until hy_console_stop). */
struct hy_console;

/* Starts the console on address (an IPv4 or IPv6 literal, borrowed; NULL =
 * "127.0.0.1") and port (0 = an ephemeral one, see hy_console_port) with
 * opts (borrowed, copied; NULL = defaults). Spawns the collectors and the
 * HTTP server's processes on every shard, and puts a report handler and a
 * log sink of its own in front of the ones already set: the console keeps
 * the last reports and lines and passes every one on to the handler and
 * sink that were set before (or, when none was, writes them to stderr as
 * the defaults do).
 * Errors: HY_EPERM (a non-loopback address without a token, or actions
 * without a token), HY_EINVAL (bad address, no such shard), HY_EADDRINUSE,
 * HY_EADDRNOTAVAIL, HY_EALREADY (a console already runs), HY_ENOMEM,
 * HY_ENOTPROC.
 * Context: a process of a running node. */
int hy_console_start(const char *address, uint16_t port, const struct hy_console_options *opts,
                     struct hy_console **out);

/* The port the console listens on. Context: anywhere while it runs. */
uint16_t hy_console_port(const struct hy_console *c);

/* Stops c (transferred; freed on return): closes the listener and the
 * connections, ends the collectors, sets back the report handler and log
 * sink that were set before it started (unless they were replaced while it
 * ran). Where a handler or sink set after the console's is still in place,
 * it may call the console's from its own (hy_log_get_sink's chaining): the
 * console's then stays allocated (a few dozen bytes, for good) and passes
 * every report and line on to the ones set before the console, keeping
 * nothing. NULL is a no-op. Errors: HY_ENOTPROC.
 * Context: a process. */
int hy_console_stop(struct hy_console *c);

/* Writes the Prometheus text of the node into buf[0..cap) (borrowed),
 * NUL-terminated, and the length to *len: what /metrics serves, collected
 * as described above. Errors: HY_ENOSPC (cap too small), HY_ENOTPROC.
 * Context: a process while c runs. */
int hy_console_metrics(struct hy_console *c, char *buf, size_t cap, size_t *len);

/* Writes the JSON that GET target would serve (target borrowed, a path
 * under /api/ with its query, e.g. "/api/proc?pid=0.1.42") into
 * buf[0..cap) (borrowed), NUL-terminated, and its length to *len: for
 * scripts and tests inside the node.
 * Errors: HY_ENOENT (no such path, or no such process), HY_EINVAL (a
 * required query field is missing or malformed, or a NULL argument),
 * HY_ENOSPC (cap too small), HY_ENOMEM, HY_ENOTPROC.
 * Context: a process while c runs. */
int hy_console_api(struct hy_console *c, const char *target, char *buf, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* HY_NET_CONSOLE_H */
