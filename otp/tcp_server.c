/* TCP server (stubs until the poller lands). */
#include <stddef.h>

#include "errors.h"
#include "tcp_server.h"


void hy_tcp_server_opts_init(struct hy_tcp_server_opts *o)
{
    (void)o;
}

int hy_tcp_server_start(const struct hy_tcp_server_opts *o, struct hy_tcp_server **out)
{
    (void)o;
    (void)out;
    return HY_ENOSYS;
}

uint16_t hy_tcp_server_port(const struct hy_tcp_server *srv)
{
    (void)srv;
    return 0;
}

void hy_tcp_server_stats(const struct hy_tcp_server *srv, struct hy_tcp_server_stats *out)
{
    (void)srv;
    (void)out;
}

int hy_tcp_server_stop(struct hy_tcp_server *srv, int64_t drain_ns)
{
    (void)srv;
    (void)drain_ns;
    return HY_ENOSYS;
}
