/* Tests of core/udp.c: datagrams between two sockets of different shards,
 * a receive that waits (only its process) and one that times out,
 * truncation, misuse, and sockets closed with their owner (descriptors
 * counted before and after). Backend from HYDRA_IO_BACKEND. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "test_support.h"

#define SECOND 1000000000LL
#define TAG_PORT 0x504f5254u

/* Echoes datagrams back to their sender until killed (socket never closed
 * by hand: its exit closes it). */
static void udp_echo(void *arg)
{
    hy_pid parent = *(hy_pid *)arg;
    struct hy_addr a = hy_test_loopback(0);
    struct hy_udp *u;
    HY_CHECK_EQ(hy_udp_open(&a, false, &u), 0);
    struct hy_addr me;
    hy_udp_sockname(u, &me);
    hy_test_send_u32(parent, TAG_PORT, hy_addr_port(&me));
    for (;;) {
        char b[2048];
        size_t n;
        struct hy_addr from;
        if (hy_udp_recvfrom(u, b, sizeof(b), &n, &from, HY_INFINITY) == 0)
            hy_udp_sendto(u, &from, b, n);
    }
}

struct udp_ctx {
    int timeout_rc, trunc_rc, not_owner_rc;
    unsigned echoed;
    size_t trunc_got;
};

static void not_owner(void *arg)
{
    struct udp_ctx *c = ((void **)arg)[0];
    struct hy_udp *u = ((void **)arg)[1];
    c->not_owner_rc = hy_udp_close(u);
}

static void udp_main(void *arg)
{
    struct udp_ctx *c = arg;
    hy_pid me = hy_self(), echo;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 1;
    o.arg_size = sizeof(me);
    HY_CHECK_EQ(hy_spawn_opt(udp_echo, &me, &o, &echo), 0);
    struct hy_msg *m = hy_test_must_recv_tag(TAG_PORT, 5 * SECOND);
    if (!m)
        return;
    struct hy_addr to = hy_test_loopback((uint16_t)hy_test_payload_u32(m));
    hy_msg_free(m);
    struct hy_udp *u;
    HY_CHECK_EQ(hy_udp_open(NULL, false, &u), 0);
    char b[64];
    size_t n;
    c->timeout_rc = hy_udp_recvfrom(u, b, sizeof(b), &n, NULL, 20 * 1000000LL);
    for (unsigned i = 0; i < 100; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "datagram %u", i);
        HY_CHECK_EQ(hy_udp_sendto(u, &to, msg, (size_t)len), 0);
        struct hy_addr from;
        if (hy_udp_recvfrom(u, b, sizeof(b), &n, &from, 5 * SECOND) == 0 && n == (size_t)len &&
            memcmp(b, msg, n) == 0 && hy_addr_port(&from) == hy_addr_port(&to))
            c->echoed++;
    }
    char big[1000];
    memset(big, 'b', sizeof(big));
    HY_CHECK_EQ(hy_udp_sendto(u, &to, big, sizeof(big)), 0);
    c->trunc_rc = hy_udp_recvfrom(u, b, 10, &c->trunc_got, NULL, 5 * SECOND);
    void *args[2] = {c, u};
    hy_ref r;
    struct hy_spawn_opts mo = HY_SPAWN_OPTS_INIT;
    mo.monitor = true;
    mo.monitor_ref = &r;
    hy_spawn_opt(not_owner, args, &mo, NULL);
    hy_msg_free(hy_test_must_recv_tag(HY_TAG_DOWN, 5 * SECOND));
    hy_exit_pid(echo, hy_reason_make(HY_REASON_KILL));
    /* u is left open: closed when this process ends */
}

static void test_udp_echo_timeout_truncation_ownership(void **state)
{
    (void)state;
    struct udp_ctx c = {0};
    hy_test_run_fd_checked(2, udp_main, &c);
    assert_int_equal(c.timeout_rc, HY_ETIMEDOUT);
    assert_int_equal(c.echoed, 100);
    assert_int_equal(c.trunc_rc, HY_EMSGSIZE);
    assert_int_equal(c.trunc_got, 10);
    assert_int_equal(c.not_owner_rc, HY_EPERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_echo_timeout_truncation_ownership),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
