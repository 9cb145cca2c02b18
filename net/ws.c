/* WebSocket frame codec (RFC 6455 sections 4.2.2, 5 and 7; see ws.h). */
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "sha1_internal.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
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
