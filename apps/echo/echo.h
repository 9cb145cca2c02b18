/* hydra-echo: a TCP echo service on the connection supervisor. */
#ifndef HY_APPS_ECHO_H
#define HY_APPS_ECHO_H

#include <hydra.h>

/* Bytes echoed so far (all shards). */
extern _Atomic uint64_t echo_bytes;

/* Serves one connection (hy_tcp_server_ops.handle). */
void echo_handle(struct hy_tcp *sock, void *arg);

#endif
