/* The connection handler of hydra-echo: every byte back, in order, until
 * the client closes. One process per connection (run by the TCP server). */
#include <stdatomic.h>

#include "echo.h"

_Atomic uint64_t echo_bytes;

void echo_handle(struct hy_tcp *sock, void *arg)
{
    (void)arg;
    /* 2 KiB: the buffer and the frames of the calls below it stay within
     * the top page of the process's stack. With 1,000 connections each
     * request touches the stack of another process, and where every system
     * call empties the TLB (page-table isolation without PCID) each page
     * touched costs a page walk; a 16 KiB buffer put the handler's locals
     * and the frames of hy_tcp_recv/send on two different pages. Larger
     * requests take more reads, not more memory. */
    char buf[2048];
    for (;;) {
        size_t n;
        if (hy_tcp_recv(sock, buf, sizeof(buf), &n, HY_INFINITY) != 0)
            return; /* closed, reset: the socket is closed as we end */
        if (hy_tcp_send(sock, buf, n, 10ll * 1000000000) != 0)
            return;
        atomic_fetch_add_explicit(&echo_bytes, n, memory_order_relaxed);
    }
}
