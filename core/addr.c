/* Socket addresses (stubs). */
#include <stddef.h>

#include "addr.h"
#include "errors.h"


int hy_addr_parse(const char *ip, uint16_t port, struct hy_addr *out)
{
    (void)ip;
    (void)port;
    (void)out;
    return HY_ENOSYS;
}

int hy_addr_resolve(const char *host, uint16_t port, struct hy_addr *out)
{
    (void)host;
    (void)port;
    (void)out;
    return HY_ENOSYS;
}

uint16_t hy_addr_port(const struct hy_addr *a)
{
    (void)a;
    return 0;
}

char *hy_addr_format(const struct hy_addr *a, char *buf, size_t len)
{
    (void)a;
    (void)buf;
    (void)len;
    return NULL;
}
