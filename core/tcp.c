/* TCP sockets (stubs until the poller lands). */
#include <stddef.h>

#include "errors.h"
#include "tcp.h"


void hy_tcp_opts_init(struct hy_tcp_opts *o)
{
    (void)o;
}

void hy_tcp_listen_opts_init(struct hy_tcp_listen_opts *o)
{
    (void)o;
}

const struct hy_tcp_msg *hy_tcp_msg_of(const struct hy_msg *m)
{
    (void)m;
    return 0;
}

int hy_tcp_listen(const struct hy_tcp_listen_opts *o, struct hy_tcp **out)
{
    (void)o;
    (void)out;
    return HY_ENOSYS;
}

int hy_tcp_accept(struct hy_tcp *ls, struct hy_tcp **out, int64_t timeout_ns)
{
    (void)ls;
    (void)out;
    (void)timeout_ns;
    return HY_ENOSYS;
}

int hy_tcp_connect(const struct hy_addr *addr, const struct hy_tcp_opts *o, int64_t timeout_ns,
                   struct hy_tcp **out)
{
    (void)addr;
    (void)o;
    (void)timeout_ns;
    (void)out;
    return HY_ENOSYS;
}

int hy_tcp_connect_host(const char *host, uint16_t port, const struct hy_tcp_opts *o,
                        int64_t timeout_ns, struct hy_tcp **out)
{
    (void)host;
    (void)port;
    (void)o;
    (void)timeout_ns;
    (void)out;
    return HY_ENOSYS;
}

int hy_tcp_recv(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns)
{
    (void)s;
    (void)buf;
    (void)len;
    (void)got;
    (void)timeout_ns;
    return HY_ENOSYS;
}

int hy_tcp_recv_exact(struct hy_tcp *s, void *buf, size_t len, size_t *got, int64_t timeout_ns)
{
    (void)s;
    (void)buf;
    (void)len;
    (void)got;
    (void)timeout_ns;
    return HY_ENOSYS;
}

int hy_tcp_send(struct hy_tcp *s, const void *data, size_t len, int64_t timeout_ns)
{
    (void)s;
    (void)data;
    (void)len;
    (void)timeout_ns;
    return HY_ENOSYS;
}

int hy_tcp_sendv(struct hy_tcp *s, const struct iovec *iov, int iovcnt, int64_t timeout_ns)
{
    (void)s;
    (void)iov;
    (void)iovcnt;
    (void)timeout_ns;
    return HY_ENOSYS;
}

int hy_tcp_shutdown(struct hy_tcp *s, int how)
{
    (void)s;
    (void)how;
    return HY_ENOSYS;
}

int hy_tcp_close(struct hy_tcp *s)
{
    (void)s;
    return HY_ENOSYS;
}

int hy_tcp_set_active(struct hy_tcp *s, int mode)
{
    (void)s;
    (void)mode;
    return HY_ENOSYS;
}

int hy_tcp_set_packet(struct hy_tcp *s, enum hy_tcp_packet packet, uint32_t max_packet)
{
    (void)s;
    (void)packet;
    (void)max_packet;
    return HY_ENOSYS;
}

int hy_tcp_set_nodelay(struct hy_tcp *s, bool on)
{
    (void)s;
    (void)on;
    return HY_ENOSYS;
}

int hy_tcp_set_keepalive(struct hy_tcp *s, bool on)
{
    (void)s;
    (void)on;
    return HY_ENOSYS;
}

int hy_tcp_set_bufsizes(struct hy_tcp *s, int sndbuf, int rcvbuf)
{
    (void)s;
    (void)sndbuf;
    (void)rcvbuf;
    return HY_ENOSYS;
}

int hy_tcp_peername(struct hy_tcp *s, struct hy_addr *out)
{
    (void)s;
    (void)out;
    return HY_ENOSYS;
}

int hy_tcp_sockname(struct hy_tcp *s, struct hy_addr *out)
{
    (void)s;
    (void)out;
    return HY_ENOSYS;
}

int hy_tcp_fd(const struct hy_tcp *s)
{
    (void)s;
    return HY_ENOSYS;
}

int hy_tcp_controlling_process(struct hy_tcp *s, hy_pid to)
{
    (void)s;
    (void)to;
    return HY_ENOSYS;
}

size_t hy_tcp_count(void)
{
    return 0;
}
