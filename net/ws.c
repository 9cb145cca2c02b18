/* WebSocket frame codec (RFC 6455 sections 4.2.2, 5 and 7; see ws.h). */
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/uio.h>

#include "errors.h"
#include "msg.h"
#include "proc.h"
#include "runtime.h"
#include "sha1_internal.h"
#include "tcp.h"

#define WS_GUID             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define DEFAULT_MAX_MESSAGE (1u << 20)

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

int hy_ws_accept_key(const char *key, size_t key_len, char out[HY_WS_ACCEPT_LEN + 1])
{
    /* 16 bytes in base64: 22 characters of the alphabet and "==". */
    if (key_len != 24 || key[22] != '=' || key[23] != '=')
        return HY_EINVAL;
    for (size_t i = 0; i < 22; i++)
        if (!key[i] || !strchr(b64, key[i]))
            return HY_EINVAL;
    struct hy__sha1 s;
    uint8_t digest[20];
    hy__sha1_init(&s);
    hy__sha1_update(&s, key, key_len);
    hy__sha1_update(&s, WS_GUID, sizeof(WS_GUID) - 1);
    hy__sha1_final(&s, digest);
    base64_encode(digest, sizeof(digest), out);
    return 0;
}

bool hy_ws_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += n + 1;
    }
    return true;
}

size_t hy_ws_frame_header(uint8_t out[HY_WS_MAX_HEADER], enum hy_ws_opcode op, bool fin,
                          uint64_t payload_len, const uint8_t *mask_key)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
    uint8_t m = mask_key ? 0x80 : 0;
    if (payload_len < 126) {
        out[n++] = (uint8_t)(m | payload_len);
    } else if (payload_len <= 0xffff) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(payload_len >> 8);
        out[n++] = (uint8_t)payload_len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(payload_len >> (8 * i));
    }
    if (mask_key) {
        memcpy(out + n, mask_key, 4);
        n += 4;
    }
    return n;
}

void hy_ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= key[(offset + i) & 3];
}

void hy_ws_decoder_init(struct hy_ws_decoder *d, size_t max_message, bool require_mask)
{
    memset(d, 0, sizeof(*d));
    d->max_message = max_message ? max_message : DEFAULT_MAX_MESSAGE;
    d->require_mask = require_mask;
}

void hy_ws_decoder_fini(struct hy_ws_decoder *d)
{
    free(d->msg);
    d->msg = NULL;
    d->msg_len = d->msg_cap = 0;
    d->msg_op = 0;
}

static int fail(struct hy_ws_decoder *d, uint16_t code, int err)
{
    d->close_code = code;
    return err;
}

static bool close_code_valid(uint16_t c)
{
    if (c >= 1000 && c <= 1003)
        return true;
    if (c >= 1007 && c <= 1014)
        return true;
    return c >= 3000 && c <= 4999;
}

static int append(struct hy_ws_decoder *d, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (d->msg_len + n > d->msg_cap) {
        size_t cap = d->msg_cap ? d->msg_cap : 4096;
        while (cap < d->msg_len + n)
            cap *= 2;
        if (cap > d->max_message)
            cap = d->max_message;
        uint8_t *nb = realloc(d->msg, cap);
        if (!nb)
            return fail(d, HY_WS_CLOSE_INTERNAL, HY_ENOMEM);
        d->msg = nb;
        d->msg_cap = cap;
    }
    memcpy(d->msg + d->msg_len, p, n);
    d->msg_len += n;
    return 0;
}

int hy_ws_decode(struct hy_ws_decoder *d, uint8_t *buf, size_t len, size_t *consumed,
                 struct hy_ws_event *ev)
{
    size_t off = 0;
    *consumed = 0;
    if (d->close_code)
        return HY_EINVAL;
    if (d->msg_op == 0)
        d->msg_len = 0; /* a fragmented message delivered last time */
    for (;;) {
        if (len - off < 2)
            return HY_EAGAIN;
        uint8_t b0 = buf[off], b1 = buf[off + 1];
        bool fin = b0 & 0x80;
        uint8_t op = b0 & 0x0f;
        if (b0 & 0x70)
            return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL); /* no extension agreed */
        if ((op > HY_WS_BINARY && op < HY_WS_CLOSE) || op > HY_WS_PONG)
            return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
        bool masked = b1 & 0x80;
        if (masked != d->require_mask)
            return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
        uint64_t plen = b1 & 0x7f;
        size_t hdr = 2;
        if (plen == 126) {
            if (len - off < 4)
                return HY_EAGAIN;
            plen = (uint64_t)buf[off + 2] << 8 | buf[off + 3];
            if (plen < 126)
                return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL); /* not minimal */
            hdr = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                return HY_EAGAIN;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | buf[off + 2 + (size_t)i];
            if ((plen >> 63) || plen <= 0xffff)
                return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
            hdr = 10;
        }
        bool control = op >= HY_WS_CLOSE;
        if (control && (!fin || plen > 125))
            return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
        if (!control) {
            if (op == HY_WS_CONT && d->msg_op == 0)
                return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
            if (op != HY_WS_CONT && d->msg_op != 0)
                return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
            /* Refuse an oversized message from its header, before its bytes. */
            if (plen > d->max_message || d->msg_len + plen > d->max_message)
                return fail(d, HY_WS_CLOSE_TOO_BIG, HY_EMSGSIZE);
        }
        const uint8_t *key = NULL;
        if (masked) {
            if (len - off < hdr + 4)
                return HY_EAGAIN;
            key = buf + off + hdr;
            hdr += 4;
        }
        if (len - off - hdr < plen)
            return HY_EAGAIN;
        uint8_t *payload = buf + off + hdr;
        if (key)
            hy_ws_mask(payload, (size_t)plen, key, 0);
        off += hdr + (size_t)plen;
        *consumed = off;

        if (control) {
            ev->op = (enum hy_ws_opcode)op;
            ev->data = payload;
            ev->len = (size_t)plen;
            ev->close_code = 0;
            if (op == HY_WS_CLOSE) {
                if (plen == 1)
                    return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
                ev->close_code = HY_WS_CLOSE_NO_STATUS;
                if (plen >= 2) {
                    uint16_t code = (uint16_t)(payload[0] << 8 | payload[1]);
                    if (!close_code_valid(code))
                        return fail(d, HY_WS_CLOSE_PROTOCOL, HY_EINVAL);
                    if (!hy_ws_utf8_valid(payload + 2, (size_t)plen - 2))
                        return fail(d, HY_WS_CLOSE_INVALID_DATA, HY_EINVAL);
                    ev->close_code = code;
                    ev->data = payload + 2;
                    ev->len = (size_t)plen - 2;
                }
            }
            return 0;
        }
        if (op != HY_WS_CONT && fin) { /* a whole message in one frame */
            if (op == HY_WS_TEXT && !hy_ws_utf8_valid(payload, (size_t)plen))
                return fail(d, HY_WS_CLOSE_INVALID_DATA, HY_EINVAL);
            ev->op = (enum hy_ws_opcode)op;
            ev->data = payload;
            ev->len = (size_t)plen;
            ev->close_code = 0;
            return 0;
        }
        if (op != HY_WS_CONT)
            d->msg_op = op;
        int rc = append(d, payload, (size_t)plen);
        if (rc < 0)
            return rc;
        if (fin) {
            if (d->msg_op == HY_WS_TEXT && !hy_ws_utf8_valid(d->msg, d->msg_len))
                return fail(d, HY_WS_CLOSE_INVALID_DATA, HY_EINVAL);
            ev->op = (enum hy_ws_opcode)d->msg_op;
            ev->data = d->msg;
            ev->len = d->msg_len;
            ev->close_code = 0;
            d->msg_op = 0;
            return 0;
        }
    }
}

/* ---- the server ------------------------------------------------------------ */

#define SEND_TIMEOUT_NS          (5ull * 1000000000ull)
#define DEFAULT_CLOSE_TIMEOUT_NS (2ull * 1000000000ull)

struct hy_ws_conn {
    struct hy_tcp *sock;
    hy_pid pid;
    bool close_sent;
    bool broken; /* a send failed: the connection is gone */
    uint64_t close_deadline;
};

static int send_frame(struct hy_ws_conn *c, enum hy_ws_opcode op, const void *data, size_t len)
{
    if (c->broken)
        return HY_EIO;
    uint8_t h[HY_WS_MAX_HEADER];
    size_t hl = hy_ws_frame_header(h, op, true, len, NULL);
    struct iovec iov[2] = {{h, hl}, {(void *)data, len}};
    int rc = hy_tcp_sendv(c->sock, iov, len ? 2 : 1, (int64_t)SEND_TIMEOUT_NS);
    if (rc < 0) {
        c->broken = true;
        return HY_EIO;
    }
    return 0;
}

int hy_ws_send_text(struct hy_ws_conn *conn, const char *data, size_t len)
{
    if (conn->close_sent)
        return HY_EALREADY;
    return send_frame(conn, HY_WS_TEXT, data, len);
}

int hy_ws_send_binary(struct hy_ws_conn *conn, const uint8_t *data, size_t len)
{
    if (conn->close_sent)
        return HY_EALREADY;
    return send_frame(conn, HY_WS_BINARY, data, len);
}

static int send_close(struct hy_ws_conn *c, uint16_t code, const char *reason, size_t rlen)
{
    uint8_t p[125];
    size_t n = 0;
    if (code != HY_WS_CLOSE_NO_STATUS) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (rlen)
            memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    c->close_sent = true;
    return send_frame(c, HY_WS_CLOSE, p, n);
}

int hy_ws_close(struct hy_ws_conn *conn, uint16_t code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123 || !close_code_valid(code))
        return HY_EINVAL;
    if (conn->close_sent)
        return HY_EALREADY;
    conn->close_deadline = 0; /* set by the serve loop */
    return send_close(conn, code, reason, rlen);
}

hy_pid hy_ws_pid(const struct hy_ws_conn *conn)
{
    return conn->pid;
}

static int reject(struct hy_tcp *sock, unsigned status, const char *extra)
{
    char head[256];
    int n = hy_http_response_head(head, sizeof(head), status, "text/plain", 0, false, extra);
    if (n > 0)
        hy_tcp_send(sock, head, (size_t)n, (int64_t)SEND_TIMEOUT_NS);
    return HY_EINVAL;
}

int hy_ws_serve(struct hy_tcp *sock, const struct hy_http_request *req, const uint8_t *rest,
                size_t rest_len, const struct hy_ws_handler *handler, void *ctx,
                const struct hy_ws_options *opts)
{
    if (!hy_in_process())
        return HY_ENOTPROC;
    struct hy_ws_options o = {0};
    if (opts)
        o = *opts;
    if (!o.max_message)
        o.max_message = DEFAULT_MAX_MESSAGE;
    if (!o.close_timeout_ns)
        o.close_timeout_ns = DEFAULT_CLOSE_TIMEOUT_NS;

    const struct hy_http_header *key = hy_http_header_find(req, "sec-websocket-key");
    const struct hy_http_header *ver = hy_http_header_find(req, "sec-websocket-version");
    if (!req->upgrade_websocket || req->method_len != 3 || memcmp(req->method, "GET", 3) != 0 ||
        !key)
        return reject(sock, 400, NULL);
    if (!ver || ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0)
        return reject(sock, 426, "Sec-WebSocket-Version: 13\r\n");
    char accept[HY_WS_ACCEPT_LEN + 1];
    if (hy_ws_accept_key(key->value, key->value_len, accept) < 0)
        return reject(sock, 400, NULL);
    char head[256];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      accept);
    if (hy_tcp_send(sock, head, (size_t)hn, (int64_t)SEND_TIMEOUT_NS) < 0)
        return HY_EIO;

    /* Input buffer: one whole frame at most plus one read. */
    size_t cap = o.max_message + HY_WS_MAX_HEADER + HY_TCP_DEFAULT_MAX_PACKET;
    size_t bcap = rest_len + 16384 < cap ? rest_len + 16384 : cap;
    if (rest_len > cap)
        return HY_EMSGSIZE;
    uint8_t *buf = malloc(bcap);
    if (!buf)
        return HY_ENOMEM;
    memcpy(buf, rest, rest_len);
    size_t blen = rest_len;

    struct hy_ws_conn conn = {.sock = sock, .pid = hy_self()};
    struct hy_ws_decoder dec;
    hy_ws_decoder_init(&dec, o.max_message, true);
    uint16_t code = HY_WS_CLOSE_ABNORMAL;
    int result = 0;
    bool done = false, armed = false;
    if (handler->on_open && handler->on_open(&conn, ctx) != 0) {
        send_close(&conn, HY_WS_CLOSE_INTERNAL, NULL, 0);
        code = HY_WS_CLOSE_INTERNAL;
    }
    while (!done) {
        /* Everything complete in the buffer first. */
        size_t off = 0;
        while (!done) {
            size_t used;
            struct hy_ws_event ev;
            int rc = hy_ws_decode(&dec, buf + off, blen - off, &used, &ev);
            off += used;
            if (rc == HY_EAGAIN)
                break;
            if (rc < 0) {
                code = dec.close_code;
                if (!conn.close_sent)
                    send_close(&conn, code, NULL, 0);
                result = rc;
                done = true;
                break;
            }
            switch (ev.op) {
            case HY_WS_TEXT:
                if (handler->on_text && !conn.close_sent)
                    handler->on_text(&conn, (const char *)ev.data, ev.len, ctx);
                break;
            case HY_WS_BINARY:
                if (handler->on_binary && !conn.close_sent)
                    handler->on_binary(&conn, ev.data, ev.len, ctx);
                break;
            case HY_WS_PING:
                if (!conn.close_sent)
                    send_frame(&conn, HY_WS_PONG, ev.data, ev.len);
                break;
            case HY_WS_CLOSE:
                code = ev.close_code;
                if (!conn.close_sent) /* echo the peer's code (none for none) */
                    send_close(&conn, code, NULL, 0);
                done = true;
                break;
            default: /* pong: nothing to do */
                break;
            }
            if (conn.broken) {
                code = HY_WS_CLOSE_ABNORMAL;
                result = HY_EIO;
                done = true;
            }
        }
        memmove(buf, buf + off, blen - off);
        blen -= off;
        if (done)
            break;
        if (conn.close_sent && conn.close_deadline == 0)
            conn.close_deadline = hy_now_ns() + o.close_timeout_ns;
        /* Wait for bytes or a message for the handler. */
        if (!armed) {
            if (hy_tcp_set_active(sock, HY_TCP_ACTIVE_ONCE) < 0) {
                result = HY_EIO;
                break;
            }
            armed = true;
        }
        int64_t timeout = HY_INFINITY;
        if (conn.close_sent) {
            uint64_t now = hy_now_ns();
            timeout = conn.close_deadline > now ? (int64_t)(conn.close_deadline - now) : 0;
        } else if (o.idle_timeout_ns) {
            timeout = (int64_t)o.idle_timeout_ns;
        }
        struct hy_msg *m;
        int rc = hy_recv(&m, timeout);
        if (rc == HY_ETIMEDOUT) {
            if (conn.close_sent) {
                result = HY_ETIMEDOUT;
                break;
            }
            send_close(&conn, HY_WS_CLOSE_GOING_AWAY, NULL, 0);
            code = HY_WS_CLOSE_GOING_AWAY;
            continue;
        }
        if (rc < 0) {
            result = rc;
            break;
        }
        const struct hy_tcp_msg *tm = hy_tcp_msg_of(m);
        if (!tm) {
            if (handler->on_info)
                handler->on_info(&conn, m, ctx);
            hy_msg_free(m);
            if (conn.broken) {
                result = HY_EIO;
                break;
            }
            continue;
        }
        if (m->tag == HY_TCP_TAG_DATA) {
            armed = false;
            if (blen + tm->len > bcap) {
                size_t nc = bcap * 2;
                while (nc < blen + tm->len)
                    nc *= 2;
                if (nc > cap)
                    nc = cap;
                uint8_t *nb = blen + tm->len <= nc ? realloc(buf, nc) : NULL;
                if (!nb) {
                    hy_msg_free(m);
                    send_close(&conn, HY_WS_CLOSE_TOO_BIG, NULL, 0);
                    code = HY_WS_CLOSE_TOO_BIG;
                    result = HY_EMSGSIZE;
                    break;
                }
                buf = nb;
                bcap = nc;
            }
            memcpy(buf + blen, tm->data, tm->len);
            blen += tm->len;
            hy_msg_free(m);
            continue;
        }
        if (m->tag == HY_TCP_TAG_PASSIVE) {
            armed = false;
            hy_msg_free(m);
            continue;
        }
        /* CLOSED or ERROR: the peer is gone without a closing handshake. */
        hy_msg_free(m);
        code = HY_WS_CLOSE_ABNORMAL;
        result = conn.close_sent ? 0 : HY_EIO;
        break;
    }
    if (handler->on_close)
        handler->on_close(&conn, code, ctx);
    hy_ws_decoder_fini(&dec);
    free(buf);
    hy_tcp_set_active(sock, HY_TCP_ACTIVE_OFF);
    return result;
}
