/* TCP server: a listener per shard, a pool of acceptors and one process per
 * connection (the shape Erlang users know from Ranch).
 *
 * hy_tcp_server_start() starts, on every selected shard, a manager process
 * that listens on the same port (SO_REUSEPORT: the kernel spreads incoming
 * connections over the shards) and a few acceptor processes. Each accepted
 * connection gets its own handler process on the shard that accepted it: the
 * process runs ops->handle(sock, arg) owning the socket, and the socket is
 * closed when the handler returns or dies, so a crashing handler costs only
 * its own connection. The manager supervises the handlers (counts them,
 * reports crashes as the logger's crash reports do) and is the only one that
 * kills them, at stop.
 *
 * max_connections bounds the handlers alive on the whole node: a connection
 * accepted beyond it is closed at once and counted as refused.
 *
 * hy_tcp_server_stop() drains: the listeners close (no new connections),
 * handlers may finish on their own up to drain_ns, then those left are
 * killed with reason shutdown (their sockets closed).
 */
#ifndef HY_OTP_TCP_SERVER_H
#define HY_OTP_TCP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/pid.h"
#include "../core/tcp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Callbacks of a server (behaviour table; arg is hy_tcp_server_opts.arg). */
struct hy_tcp_server_ops {
    /* Entry point of a connection's process, on the shard that accepted sock.
     * The process owns sock: it may hand it on (controlling_process) or
     * close it; whatever it still owns is closed when it ends. Return to end
     * the connection normally. Required. */
    void (*handle)(struct hy_tcp *sock, void *arg);
};

struct hy_tcp_server_opts {
    /* Listening address and the options of accepted sockets. Port 0 picks an
     * ephemeral port (the same on every shard: hy_tcp_server_port). */
    struct hy_tcp_listen_opts listen;
    const struct hy_tcp_server_ops *ops; /* borrowed until stopped */
    void *arg;                  /* passed to ops->handle on every shard:
                                   borrowed, shared by all shards */
    unsigned acceptors;         /* acceptor processes per shard (default 4) */
    unsigned max_connections;   /* node-wide bound (0 = unlimited) */
    const unsigned *shards;     /* shards to serve on (borrowed for the call;
                                   NULL = every shard) */
    unsigned nshards;           /* entries in shards */
    int handler_stack_mode;     /* HY_STACK_DEFAULT, _GUARDED or _COMPACT */
    size_t handler_stack_size;  /* 0 = runtime default */
};

/* Fills *o: hy_tcp_listen_opts_init() defaults, 4 acceptors, unlimited,
 * every shard, default stacks. Context: anywhere. */
void hy_tcp_server_opts_init(struct hy_tcp_server_opts *o);

/* A running server; opaque, shared by its shards, owned by the process that
 * started it until stopped. */
struct hy_tcp_server;

/* Counters, node-wide. */
struct hy_tcp_server_stats {
    uint64_t accepted; /* connections accepted (refused ones included) */
    uint64_t active;   /* handler processes alive now */
    uint64_t refused;  /* closed at once because of max_connections */
    uint64_t crashed;  /* handlers that ended abnormally */
};

/* Starts a server (o borrowed, see the fields for what is kept) and
 * returns it owned in *out once every shard listens.
 * The shards share the port by SO_REUSEPORT; before they listen, a plain
 * bind of the address checks that no one else listens on that port (another
 * program with SO_REUSEPORT would otherwise silently share it).
 * Errors: HY_EADDRINUSE (someone listens on the port), HY_EADDRNOTAVAIL,
 * HY_EINVAL (ops or handle NULL, bad shard, bad options), HY_ENOMEM,
 * HY_ENOTPROC. On error nothing is left listening. Context: a process. */
int hy_tcp_server_start(const struct hy_tcp_server_opts *o, struct hy_tcp_server **out);

/* The port the server listens on (the chosen one after port 0).
 * Context: anywhere while the server runs. */
uint16_t hy_tcp_server_port(const struct hy_tcp_server *srv);

/* Copies the counters into *out (borrowed). Context: anywhere while the
 * server runs. */
void hy_tcp_server_stats(const struct hy_tcp_server *srv, struct hy_tcp_server_stats *out);

/* Stops srv (transferred; freed on return): closes the listeners, lets the
 * handlers run up to drain_ns (HY_INFINITY = wait for all of them), kills
 * those left with reason shutdown, and returns when every manager has ended.
 * Errors: HY_EINVAL (srv NULL), HY_ENOTPROC.
 * Context: a process. */
int hy_tcp_server_stop(struct hy_tcp_server *srv, int64_t drain_ns);

#ifdef __cplusplus
}
#endif

#endif /* HY_OTP_TCP_SERVER_H */
