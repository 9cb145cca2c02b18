/* Socket addresses: literal parsing, name resolution on the blocking pool,
 * formatting. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "blocking.h"
#include "errors.h"
#include "proc.h"

int hy_addr_parse(const char *ip, uint16_t port, struct hy_addr *out)
{
    if (!out)
        return HY_EINVAL;
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
    if (!ip || !*ip) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        out->len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        out->len = sizeof(*a4);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        out->len = sizeof(*a6);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return HY_EINVAL;
}

uint16_t hy_addr_port(const struct hy_addr *a)
{
    if (!a || !a->len)
        return 0;
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

char *hy_addr_format(const struct hy_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (!buf || !len)
        return buf;
    if (a && a->len && a->ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, hy_addr_port(a));
    } else if (a && a->len && a->ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, hy_addr_port(a));
    } else {
        snprintf(buf, len, "(none)");
    }
    return buf;
}

/* Lives in the caller's arena: the pool thread writes it while the caller
 * is suspended, so never on a (possibly compact) stack. */
struct resolve_job {
    char host[256];
    uint16_t port;
    int rc;
    struct hy_addr out;
};

static intptr_t resolve_fn(void *arg)
{
    struct resolve_job *j = arg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(j->host, NULL, &hints, &res);
    if (e != 0 || !res) {
        j->rc = e == EAI_MEMORY ? HY_ENOMEM : HY_ENOENT;
        return 0;
    }
    const struct addrinfo *pick = res;
    for (const struct addrinfo *r = res; r; r = r->ai_next)
        if (r->ai_family == AF_INET) {
            pick = r;
            break;
        }
    memset(&j->out, 0, sizeof(j->out));
    memcpy(&j->out.ss, pick->ai_addr, pick->ai_addrlen);
    j->out.len = pick->ai_addrlen;
    if (pick->ai_family == AF_INET)
        ((struct sockaddr_in *)&j->out.ss)->sin_port = htons(j->port);
    else
        ((struct sockaddr_in6 *)&j->out.ss)->sin6_port = htons(j->port);
    j->rc = 0;
    freeaddrinfo(res);
    return 0;
}

int hy_addr_resolve(const char *host, uint16_t port, struct hy_addr *out)
{
    if (!host || !out || strlen(host) >= sizeof(((struct resolve_job *)0)->host))
        return HY_EINVAL;
    if (hy_addr_parse(host, port, out) == 0)
        return 0;
    if (!hy_in_process())
        return HY_ENOTPROC;
    struct resolve_job *j = hy_alloc(sizeof(*j));
    if (!j)
        return HY_ENOMEM;
    strcpy(j->host, host);
    j->port = port;
    j->rc = HY_ENOENT;
    int rc = hy_blocking_run(resolve_fn, j, NULL);
    if (rc)
        return rc;
    if (j->rc == 0)
        *out = j->out;
    return j->rc;
}
