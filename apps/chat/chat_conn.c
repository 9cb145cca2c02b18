/* One process per connection: reads the HTTP upgrade request, then runs the
 * WebSocket protocol. What the client says goes to the room; what the room
 * sends (CHAT_TAG_TEXT) goes to the client. */
#include <string.h>

#include "chat.h"

static int on_open(struct hy_ws_conn *c, void *ctx)
{
    (void)ctx;
    (void)c;
    return hy_send_name(CHAT_ROOM_NAME, CHAT_TAG_JOIN, NULL, 0);
}

static void on_text(struct hy_ws_conn *c, const char *data, size_t len, void *ctx)
{
    (void)c;
    (void)ctx;
    hy_send_name(CHAT_ROOM_NAME, CHAT_TAG_SAY, data, len);
}

static void on_info(struct hy_ws_conn *c, const struct hy_msg *m, void *ctx)
{
    (void)ctx;
    if (m->tag == CHAT_TAG_TEXT)
        hy_ws_send_text(c, (const char *)m->data, m->size);
}

static const struct hy_ws_handler handler = {
    .on_open = on_open,
    .on_text = on_text,
    .on_info = on_info,
};

void chat_conn_handle(struct hy_tcp *sock, void *arg)
{
    (void)arg;
    char buf[8192];
    size_t len = 0;
    struct hy_http_parser p;
    hy_http_parser_init(&p, NULL);
    for (;;) {
        size_t got;
        if (hy_tcp_recv(sock, buf + len, sizeof(buf) - len, &got, 10000000000LL) < 0)
            return;
        len += got;
        struct hy_http_request req;
        int rc = hy_http_parse(&p, buf, len, &req);
        if (rc == HY_EAGAIN)
            continue;
        if (rc < 0) {
            char head[128];
            int n = hy_http_response_head(head, sizeof(head), p.status, NULL, 0, false, NULL);
            if (n > 0)
                hy_tcp_send(sock, head, (size_t)n, 1000000000LL);
            return;
        }
        struct hy_ws_options o = {.max_message = 16384};
        hy_ws_serve(sock, &req, (const uint8_t *)buf + req.total_len, len - req.total_len, &handler,
                    NULL, &o);
        return;
    }
}
