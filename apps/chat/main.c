/* hydra-chat: a broadcast chat room over WebSocket.
 *
 *   hydra-chat [--port N] [--console ADDR:PORT] [--shards N]
 *
 * Every text message a client sends is sent to every connected client.
 * Connections are spread over the shards (one listener per shard); the room
 * lives on shard 0. With --console the node console is served as well
 * (HYDRA_CONSOLE_TOKEN gives its token). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

static uint16_t port = 9000;
static char console_addr[64];
static uint16_t console_port;

static const struct hy_child_spec shard0_children[] = {
    {.id = "room", .start = chat_room_start, .type = HY_WORKER},
};

static const struct hy_child_spec *children_of(unsigned shard, size_t *n, void *arg)
{
    (void)arg;
    *n = shard == 0 ? 1 : 0;
    return shard == 0 ? shard0_children : NULL;
}

static const struct hy_tcp_server_ops ops = {.handle = chat_conn_handle};

static void chat_main(void *arg)
{
    (void)arg;
    struct hy_console *con = NULL;
    if (console_addr[0]) {
        struct hy_console_options co = {.token = getenv("HYDRA_CONSOLE_TOKEN")};
        int rc = hy_console_start(console_addr, console_port, &co, &con);
        if (rc < 0) {
            fprintf(stderr, "hydra-chat: console: %s\n", hy_strerror(rc));
            return;
        }
        printf("console on http://%s:%u/\n", console_addr, hy_console_port(con));
    }
    struct hy_tcp_server_opts so;
    hy_tcp_server_opts_init(&so);
    hy_addr_parse("0.0.0.0", port, &so.listen.addr);
    so.ops = &ops;
    so.max_connections = 10000;
    struct hy_tcp_server *srv;
    int rc = hy_tcp_server_start(&so, &srv);
    if (rc < 0) {
        fprintf(stderr, "hydra-chat: listen on port %u: %s\n", port, hy_strerror(rc));
        hy_console_stop(con);
        return;
    }
    printf("chat on ws://0.0.0.0:%u/\n", hy_tcp_server_port(srv));
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
    struct hy_config cfg;
    hy_config_init(&cfg);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = (uint16_t)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
            cfg.nshards = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--console") == 0 && i + 1 < argc) {
            const char *a = argv[++i];
            const char *colon = strrchr(a, ':');
            if (!colon || (size_t)(colon - a) >= sizeof(console_addr)) {
                fprintf(stderr, "hydra-chat: --console ADDR:PORT\n");
                return 2;
            }
            memcpy(console_addr, a, (size_t)(colon - a));
            console_port = (uint16_t)atoi(colon + 1);
        } else {
            fprintf(stderr, "usage: hydra-chat [--port N] [--console ADDR:PORT] [--shards N]\n");
            return 2;
        }
    }
    struct hy_app app = {.name = "chat", .shard_children = children_of, .main = chat_main};
    return hy_app_run(&app, &cfg, NULL);
}
