/* UDP sockets (stubs until the poller lands). */
#include <stddef.h>

#include "errors.h"
#include "udp.h"


int hy_udp_open(const struct hy_addr *addr, bool reuseport, struct hy_udp **out)
{
    (void)addr;
    (void)reuseport;
    (void)out;
    return HY_ENOSYS;
}

int hy_udp_sendto(struct hy_udp *u, const struct hy_addr *to, const void *data, size_t len)
{
    (void)u;
    (void)to;
    (void)data;
    (void)len;
    return HY_ENOSYS;
}

int hy_udp_recvfrom(struct hy_udp *u, void *buf, size_t len, size_t *got, struct hy_addr *from,
                    int64_t timeout_ns)
{
    (void)u;
    (void)buf;
    (void)len;
    (void)got;
    (void)from;
    (void)timeout_ns;
    return HY_ENOSYS;
}

int hy_udp_sockname(struct hy_udp *u, struct hy_addr *out)
{
    (void)u;
    (void)out;
    return HY_ENOSYS;
}

int hy_udp_close(struct hy_udp *u)
{
    (void)u;
    return HY_ENOSYS;
}
