/* UDP sockets for processes (udp.h): the same poller and ownership as
 * tcp.c; datagrams are read by the owner itself once woken. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errors.h"
#include "io_internal.h"
#include "shard_internal.h"
#include "udp.h"

struct hy_udp {
    struct hy__sock s;
};

static void udp_destroy(struct hy__sock *hs)
{
    hy__io_del(hs->sh, &hs->w);
    close(hs->w.fd);
    hy__sock_detach(hs);
    hy__sock_count_add(hs->sh, -1);
    hy__sock_free(hs);
}

static void udp_ready(struct hy_shard *sh, struct hy__io_watch *w, uint32_t ev)
{
    struct hy__sock *s = (struct hy__sock *)w;
    struct hy_proc *p = s->w.waiter;
    if (p && (ev & (s->w.wait_ev | HY_IO_HUP))) {
        s->w.waiter = NULL;
        hy__io_wake(sh, p);
    }
}

int hy_udp_open(const struct hy_addr *addr, bool reuseport, struct hy_udp **out)
{
    struct hy_proc *p = hy__current();
    if (!p)
        return HY_ENOTPROC;
    struct hy_addr any;
    if (!addr) {
        hy_addr_parse(NULL, 0, &any);
        addr = &any;
    }
    if (!out || !addr->len)
        return HY_EINVAL;
    int fd = socket(addr->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return hy__errno_to_hy(errno);
    int one = 1;
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        int rc = hy__errno_to_hy(errno);
        close(fd);
        return rc;
    }
    struct hy__sock *hs;
    int rc = hy__sock_new(sizeof(struct hy_udp), p->shard, fd, udp_ready, udp_destroy, p, &hs);
    if (rc)
        return rc;
    *out = (struct hy_udp *)hs;
    return 0;
}

static int owner_check(struct hy_udp *u, struct hy_proc **pp)
{
    return hy__sock_owner_check(u ? &u->s : NULL, pp);
}

int hy_udp_sendto(struct hy_udp *u, const struct hy_addr *to, const void *data, size_t len)
{
    struct hy_proc *p;
    int rc = owner_check(u, &p);
    if (rc)
        return rc;
    if (!to || !to->len || (!data && len))
        return HY_EINVAL;
    hy__charge(p);
    ssize_t n = sendto(u->s.w.fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)&to->ss, to->len);
    return n < 0 ? hy__errno_to_hy(errno) : 0;
}

int hy_udp_recvfrom(struct hy_udp *u, void *buf, size_t len, size_t *got, struct hy_addr *from,
                    int64_t timeout_ns)
{
    struct hy_proc *p;
    int rc = owner_check(u, &p);
    if (rc)
        return rc;
    if (!buf && len)
        return HY_EINVAL;
    hy__charge(p);
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : hy_now_ns() + (uint64_t)timeout_ns;
    for (;;) {
        if (u->s.w.ready & HY_IO_IN) {
            struct hy_addr a;
            memset(&a, 0, sizeof(a));
            a.len = sizeof(a.ss);
            struct iovec v = {.iov_base = buf, .iov_len = len};
            struct msghdr mh = {.msg_name = &a.ss, .msg_namelen = a.len, .msg_iov = &v,
                                .msg_iovlen = 1};
            ssize_t n = recvmsg(u->s.w.fd, &mh, MSG_DONTWAIT);
            if (n >= 0) {
                a.len = mh.msg_namelen;
                if (from)
                    *from = a;
                if (got)
                    *got = (size_t)n;
                return (mh.msg_flags & MSG_TRUNC) ? HY_EMSGSIZE : 0;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                u->s.w.ready &= ~HY_IO_IN;
            else if (errno != EINTR)
                return hy__errno_to_hy(errno);
            continue;
        }
        int64_t left = -1;
        if (deadline != UINT64_MAX) {
            uint64_t now = hy_now_ns();
            left = now >= deadline ? 0 : (int64_t)(deadline - now);
        }
        rc = hy__sock_wait(&u->s, HY_IO_IN, left);
        if (rc)
            return rc;
    }
}

int hy_udp_sockname(struct hy_udp *u, struct hy_addr *out)
{
    return hy__sock_name(u ? &u->s : NULL, out, false);
}

int hy_udp_close(struct hy_udp *u)
{
    return hy__sock_close(u ? &u->s : NULL);
}
