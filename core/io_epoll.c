/* epoll backend of the socket poller: the fallback where io_uring_setup is
 * refused. Descriptors are registered once, edge-triggered, for input,
 * output and hang-up; a turn with watches registered costs one
 * epoll_wait(0). The idle shard sleeps in ppoll on the epoll descriptor. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "errors.h"
#include "io_internal.h"
#include "shard_internal.h"

#define BATCH 128

struct ep {
    int fd;
};

static int ep_init(struct hy_shard *sh, void **state)
{
    (void)sh;
    struct ep *e = malloc(sizeof(*e));
    if (!e)
        return HY_ENOMEM;
    e->fd = epoll_create1(EPOLL_CLOEXEC);
    if (e->fd < 0) {
        int rc = hy__errno_to_hy(errno);
        free(e);
        return rc;
    }
    *state = e;
    return 0;
}

static void ep_fini(struct hy_shard *sh, void *state)
{
    (void)sh;
    struct ep *e = state;
    close(e->fd);
    free(e);
}

static int ep_add(void *state, int fd, uint64_t cookie)
{
    struct ep *e = state;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = cookie};
    if (epoll_ctl(e->fd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return hy__errno_to_hy(errno);
    return 0;
}

static void ep_del(void *state, int fd, uint64_t cookie)
{
    (void)cookie;
    struct ep *e = state;
    /* needed: a descriptor dup'ed elsewhere would keep the registration */
    epoll_ctl(e->fd, EPOLL_CTL_DEL, fd, NULL);
}

static inline void stat_inc(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static unsigned ep_poll(struct hy_shard *sh, void *state)
{
    struct ep *e = state;
    struct epoll_event evs[BATCH];
    unsigned total = 0;
    for (;;) {
        int n = epoll_wait(e->fd, evs, BATCH, 0);
        stat_inc(&sh->st.io_syscalls);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            uint32_t r = evs[i].events, ev = 0;
            if (r & EPOLLIN)
                ev |= HY_IO_IN;
            if (r & EPOLLRDHUP) /* latched: a short read must not hide the EOF */
                ev |= HY_IO_IN | HY_IO_HUP;
            if (r & EPOLLOUT)
                ev |= HY_IO_OUT;
            if (r & (EPOLLERR | EPOLLHUP))
                ev |= HY_IO_IN | HY_IO_OUT | HY_IO_HUP;
            hy__io_dispatch(sh, evs[i].data.u64, ev);
        }
        total += (unsigned)n;
        if (n < BATCH)
            break;
    }
    return total;
}

static bool ep_pending(void *state)
{
    (void)state;
    return false; /* only a system call could tell; the sleep's ppoll does */
}

static int ep_sleep_fd(void *state)
{
    return ((struct ep *)state)->fd;
}

static bool ep_pre_sleep(struct hy_shard *sh, void *state)
{
    (void)sh;
    (void)state;
    return true;
}

const struct hy__io_backend hy__io_epoll_backend = {
    .name = "epoll",
    .kind = HY_IO_EPOLL,
    .init = ep_init,
    .fini = ep_fini,
    .add = ep_add,
    .del = ep_del,
    .poll = ep_poll,
    .pending = ep_pending,
    .sleep_fd = ep_sleep_fd,
    .pre_sleep = ep_pre_sleep,
};
