/* A node for the console's client tests (tests/net/test_console_clients.py):
 * an application with a small supervision tree and message load on every
 * shard, the console (actions on, token given), and a WebSocket echo
 * server. Prints "CONSOLE <port>" and "ECHO <port>" on stdout, then runs
 * until SIGTERM. Usage: console_node SHARDS TOKEN */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra.h"

#define T_LOAD 1

static unsigned nshards;

/* Sends to the worker of the next shard and drains its own mailbox. */
static void worker(void *arg)
{
    (void)arg;
    unsigned me = (unsigned)hy_shard_id();
    char peer[32];
    snprintf(peer, sizeof(peer), "load%u", (me + 1) % nshards);
    uint64_t n = 0;
    for (;;) {
        for (int i = 0; i < 20; i++)
            hy_send_name(peer, T_LOAD, &n, sizeof(n));
        n++;
        struct hy_msg *m;
        while (hy_recv(&m, HY_NOWAIT) == 0)
            hy_msg_free(m);
        hy_sleep_ns(2000000);
    }
}

static int worker_start(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.link = true;
    int rc = hy_spawn_opt(worker, NULL, &o, pid);
    if (rc == 0) {
        char name[32];
        snprintf(name, sizeof(name), "load%d", hy_shard_id());
        hy_unregister(name);
        hy_register(name, *pid);
    }
    return rc;
}

static void idler(void *arg)
{
    (void)arg;
    struct hy_msg *m;
    for (;;)
        if (hy_recv(&m, HY_INFINITY) == 0)
            hy_msg_free(m);
}

static int idler_start(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.link = true;
    return hy_spawn_opt(idler, NULL, &o, pid);
}

static const struct hy_child_spec kids[] = {
    {.id = "load", .start = worker_start, .type = HY_WORKER},
    {.id = "idler", .start = idler_start, .type = HY_WORKER},
};

static int group_start(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_sup_flags f = {0};
    f.intensity = 1000;
    f.period_s = 1;
    return hy_supervisor_start_link(&f, kids, 2, NULL, pid, NULL);
}

static const struct hy_child_spec shard_kids[] = {
    {.id = "group", .start = group_start, .type = HY_SUPERVISOR},
};

/* The WebSocket echo server: text and binary come back as they came. */
static void echo_text(struct hy_ws_conn *c, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    hy_ws_send_text(c, d, n);
}

static void echo_binary(struct hy_ws_conn *c, const uint8_t *d, size_t n, void *ctx)
{
    (void)ctx;
    hy_ws_send_binary(c, d, n);
}

static const struct hy_ws_handler echo = {.on_text = echo_text, .on_binary = echo_binary};

static void echo_conn(struct hy_tcp *s, void *arg)
{
    (void)arg;
    char buf[8192];
    size_t len = 0;
    struct hy_http_parser p;
    hy_http_parser_init(&p, NULL);
    for (;;) {
        size_t got;
        if (hy_tcp_recv(s, buf + len, sizeof(buf) - len, &got, 10000000000LL) < 0)
            return;
        len += got;
        struct hy_http_request req;
        int rc = hy_http_parse(&p, buf, len, &req);
        if (rc == HY_EAGAIN)
            continue;
        if (rc < 0)
            return;
        struct hy_ws_options o = {.max_message = 65536};
        hy_ws_serve(s, &req, (const uint8_t *)buf + req.total_len, len - req.total_len, &echo, NULL,
                    &o);
        return;
    }
}

static const struct hy_tcp_server_ops echo_ops = {.handle = echo_conn};
static const char *token;

static void app_main(void *arg)
{
    (void)arg;
    struct hy_console_options o = {.token = token, .allow_actions = true};
    struct hy_console *con;
    int rc = hy_console_start("127.0.0.1", 0, &o, &con);
    if (rc < 0) {
        fprintf(stderr, "console: %s\n", hy_strerror(rc));
        return;
    }
    struct hy_tcp_server_opts so;
    hy_tcp_server_opts_init(&so);
    so.ops = &echo_ops;
    so.max_connections = 2000;
    struct hy_tcp_server *srv;
    rc = hy_tcp_server_start(&so, &srv);
    if (rc < 0) {
        fprintf(stderr, "echo: %s\n", hy_strerror(rc));
        hy_console_stop(con);
        return;
    }
    printf("CONSOLE %u\nECHO %u\n", hy_console_port(con), hy_tcp_server_port(srv));
    fflush(stdout);
    /* Run until the application stops us (exit signal shutdown), then
     * stop the servers in order. */
    hy_trap_exit(true, NULL);
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) < 0)
            continue;
        bool exit_signal = m->tag == HY_TAG_EXIT;
        hy_msg_free(m);
        if (exit_signal)
            break;
    }
    hy_tcp_server_stop(srv, 0);
    hy_console_stop(con);
}

int main(int argc, char **argv)
{
    nshards = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    token = argc > 2 ? argv[2] : "secret";
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = nshards;
    cfg.pin = false;
    struct hy_app app = {
        .name = "console_node",
        .children = shard_kids,
        .nchildren = 1,
        .main = app_main,
    };
    return hy_app_run(&app, &cfg, NULL);
}
