/* hydra-echo: a TCP echo service on the connection supervisor. */
#ifndef HY_APPS_ECHO_H
#define HY_APPS_ECHO_H

#include <hydra.h>

/* Serves one connection (hy_tcp_server_ops.handle). */
void echo_handle(struct hy_tcp *sock, void *arg);

#endif
