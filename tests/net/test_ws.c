/* The WebSocket codec: SHA-1 against FIPS 180 vectors, the handshake key of
 * RFC 6455, UTF-8 validation, and the decoder against hostile frames
 * (unmasked, reserved bits, bad opcodes, oversized, fragments out of order,
 * bad close frames), fed whole and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"
#include "sha1_internal.h"
#include "test_support.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_ws_sha1_vectors(void **state)
{
    (void)state;
    uint8_t d[20];
    char h[41];
    hy__sha1("abc", 3, d);
    hex(d, 20, h);
    assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    hy__sha1("", 0, d);
    hex(d, 20, h);
    assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hy__sha1(two, strlen(two), d);
    hex(d, 20, h);
    assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    /* One million 'a', fed in uneven pieces. */
    struct hy__sha1 s;
    hy__sha1_init(&s);
    char a[1000];
    memset(a, 'a', sizeof(a));
    size_t left = 1000000, step = 1;
    while (left) {
        size_t n = step < left ? step : left;
        hy__sha1_update(&s, a, n);
        left -= n;
        step = step % 987 + 13; /* at most 999 */
    }
    hy__sha1_final(&s, d);
    hex(d, 20, h);
    assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

static void test_ws_accept_key(void **state)
{
    (void)state;
    char out[HY_WS_ACCEPT_LEN + 1];
    const char *k = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(hy_ws_accept_key(k, strlen(k), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(hy_ws_accept_key("short", 5, out), HY_EINVAL);
    assert_int_equal(hy_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=!", 24, out), HY_EINVAL);
    assert_int_equal(hy_ws_accept_key("dGhlIHNhbXBsZ\x01Bub25jZQ==", 24, out), HY_EINVAL);
}

static void test_ws_utf8(void **state)
{
    (void)state;
    struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"hello", true},
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
        {"\xf0\x9f\x98\x80", true},
        {"\xf4\x8f\xbf\xbf", true},  /* U+10FFFF */
        {"\xf4\x90\x80\x80", false}, /* above */
        {"\xed\xa0\x80", false},     /* surrogate */
        {"\xc0\xaf", false},         /* overlong '/' */
        {"\xe0\x80\xaf", false},     /* overlong */
        {"\xf0\x80\x80\xaf", false}, /* overlong */
        {"\xce", false},             /* truncated */
        {"\x80", false},
        {"\xff", false},
        {"a\xe1\xbd", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (hy_ws_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu", i);
}

/* Builds a client frame (masked with a fixed key unless mask is false). */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload, size_t len, bool mask)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h =
        hy_ws_frame_header(out, (enum hy_ws_opcode)(b0 & 0x0f), b0 & 0x80, len, mask ? key : NULL);
    out[0] = b0; /* keep reserved bits the test sets */
    memcpy(out + h, payload, len);
    if (mask)
        hy_ws_mask(out + h, len, key, 0);
    return h + len;
}

/* Decodes a whole buffer; returns the first non-EAGAIN result and the event. */
static int decode_one(struct hy_ws_decoder *d, uint8_t *buf, size_t len, struct hy_ws_event *ev,
                      size_t *used)
{
    size_t off = 0;
    for (;;) {
        size_t c;
        int rc = hy_ws_decode(d, buf + off, len - off, &c, ev);
        off += c;
        if (rc != HY_EAGAIN || c == 0) {
            *used = off;
            return rc;
        }
    }
}

static void test_ws_decode_messages(void **state)
{
    (void)state;
    uint8_t buf[70000];
    struct hy_ws_decoder d;
    struct hy_ws_event ev;
    size_t used;
    hy_ws_decoder_init(&d, 0, true);
    size_t n = frame(buf, 0x81, "hello", 5, true);
    assert_int_equal(decode_one(&d, buf, n, &ev, &used), 0);
    assert_int_equal(used, n);
    assert_int_equal(ev.op, HY_WS_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "hello", 5);
    /* 16-bit and 64-bit lengths. */
    static uint8_t big[66000];
    memset(big, 'x', sizeof(big));
    n = frame(buf, 0x82, big, 300, true);
    assert_int_equal(decode_one(&d, buf, n, &ev, &used), 0);
    assert_int_equal(ev.len, 300);
    n = frame(buf, 0x82, big, sizeof(big), true);
    assert_int_equal(buf[1] & 0x7f, 127);
    assert_int_equal(decode_one(&d, buf, n, &ev, &used), 0);
    assert_int_equal(ev.len, sizeof(big));
    assert_memory_equal(ev.data, big, sizeof(big));
    /* A fragmented text message with a ping between its fragments. */
    n = frame(buf, 0x01, "frag", 4, true);
    n += frame(buf + n, 0x89, "p", 1, true);
    n += frame(buf + n, 0x00, "men", 3, true);
    n += frame(buf + n, 0x80, "ted", 3, true);
    size_t off = 0;
    assert_int_equal(decode_one(&d, buf, n, &ev, &used), 0);
    assert_int_equal(ev.op, HY_WS_PING);
    assert_memory_equal(ev.data, "p", 1);
    off += used;
    assert_int_equal(decode_one(&d, buf + off, n - off, &ev, &used), 0);
    assert_int_equal(ev.op, HY_WS_TEXT);
    assert_int_equal(ev.len, 10);
    assert_memory_equal(ev.data, "fragmented", 10);
    assert_int_equal(off + used, n);
    /* Close with a code and a reason. */
    uint8_t cl[] = {0x03, 0xe8, 'b', 'y', 'e'};
    n = frame(buf, 0x88, cl, sizeof(cl), true);
    assert_int_equal(decode_one(&d, buf, n, &ev, &used), 0);
    assert_int_equal(ev.op, HY_WS_CLOSE);
    assert_int_equal(ev.close_code, 1000);
    assert_int_equal(ev.len, 3);
    n = frame(buf, 0x88, "", 0, true);
    assert_int_equal(decode_one(&d, buf, n, &ev, &used), 0);
    assert_int_equal(ev.close_code, HY_WS_CLOSE_NO_STATUS);
    hy_ws_decoder_fini(&d);
}

static void expect_fail(const uint8_t *in, size_t n, size_t max, int err, uint16_t code)
{
    uint8_t buf[512];
    memcpy(buf, in, n);
    struct hy_ws_decoder d;
    struct hy_ws_event ev;
    size_t used;
    hy_ws_decoder_init(&d, max, true);
    int rc = decode_one(&d, buf, n, &ev, &used);
    if (rc != err || d.close_code != code)
        fail_msg("got %d/%u, want %d/%u", rc, d.close_code, err, code);
    hy_ws_decoder_fini(&d);
}

static void test_ws_decode_violations(void **state)
{
    (void)state;
    uint8_t b[512];
    size_t n;
    n = frame(b, 0x81, "hi", 2, false); /* unmasked client frame */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0xc1, "hi", 2, true); /* RSV1 */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x83, "hi", 2, true); /* reserved opcode */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x8b, "hi", 2, true);
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x09, "hi", 2, true); /* fragmented ping */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    uint8_t long_ping[126] = {0};
    n = frame(b, 0x89, long_ping, sizeof(long_ping), true);
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x80, "hi", 2, true); /* continuation with nothing to continue */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x01, "a", 1, true); /* new message inside a fragmented one */
    n += frame(b + n, 0x81, "b", 1, true);
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x81, "\xc0\xaf", 2, true); /* invalid UTF-8 */
    expect_fail(b, n, 0, HY_EINVAL, 1007);
    n = frame(b, 0x01, "\xce", 1, true); /* split code point is fine, truncated is not */
    n += frame(b + n, 0x80, "\xba", 1, true);
    {
        struct hy_ws_decoder d;
        struct hy_ws_event ev;
        size_t used;
        hy_ws_decoder_init(&d, 0, true);
        assert_int_equal(decode_one(&d, b, n, &ev, &used), 0);
        assert_int_equal(ev.len, 2);
        hy_ws_decoder_fini(&d);
    }
    n = frame(b, 0x01, "\xce", 1, true);
    n += frame(b + n, 0x80, "a", 1, true);
    expect_fail(b, n, 0, HY_EINVAL, 1007);
    n = frame(b, 0x88, "\x03", 1, true); /* 1-byte close payload */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x88, "\x03\xed", 2, true); /* code 1005 may not be sent */
    expect_fail(b, n, 0, HY_EINVAL, 1002);
    n = frame(b, 0x88, "\x03\xe8\xc0\xaf", 4, true);
    expect_fail(b, n, 0, HY_EINVAL, 1007);
    /* Non-minimal length encoding. */
    uint8_t nm[] = {0x82, 0x80 | 126, 0x00, 0x05, 1, 2, 3, 4, 0, 0, 0, 0, 0};
    expect_fail(nm, sizeof(nm), 0, HY_EINVAL, 1002);
    uint8_t top[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
    expect_fail(top, sizeof(top), 0, HY_EINVAL, 1002);
    /* Oversized: refused from the header alone. */
    uint8_t huge[] = {0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0};
    expect_fail(huge, sizeof(huge), 0, HY_EMSGSIZE, 1009);
    n = frame(b, 0x82, long_ping, 101, true);
    expect_fail(b, n, 100, HY_EMSGSIZE, 1009);
    n = frame(b, 0x02, long_ping, 60, true); /* fragments adding up past the bound */
    n += frame(b + n, 0x80, long_ping, 60, true);
    expect_fail(b, n, 100, HY_EMSGSIZE, 1009);
    /* A client decoder refuses masked server frames. */
    struct hy_ws_decoder d;
    struct hy_ws_event ev;
    size_t used;
    n = frame(b, 0x81, "hi", 2, true);
    hy_ws_decoder_init(&d, 0, false);
    assert_int_equal(decode_one(&d, b, n, &ev, &used), HY_EINVAL);
    hy_ws_decoder_fini(&d);
}

/* Random frames and mutations: the decoder never reads out of bounds (ASan)
 * and byte-by-byte feeding gives the same results as whole. */
static void test_ws_random_input(void **state)
{
    (void)state;
    uint32_t seed = 99;
    for (unsigned iter = 0; iter < 5000; iter++) {
        uint8_t src[400];
        size_t len = 0;
        seed = seed * 1103515245u + 12345u;
        unsigned nframes = 1 + (seed >> 16) % 4;
        for (unsigned f = 0; f < nframes; f++) {
            seed = seed * 1103515245u + 12345u;
            static const uint8_t ops[] = {0x81, 0x82, 0x01, 0x00, 0x80, 0x89, 0x8a, 0x88};
            uint8_t payload[80];
            size_t pl = (seed >> 8) % 80;
            for (size_t i = 0; i < pl; i++)
                payload[i] = (uint8_t)('a' + i % 26);
            len += frame(src + len, ops[(seed >> 20) % 8], payload, pl, true);
        }
        seed = seed * 1103515245u + 12345u;
        if (seed & 1)
            src[(seed >> 8) % len] = (uint8_t)(seed >> 24);
        uint8_t *a = malloc(len), *b = malloc(len);
        memcpy(a, src, len);
        memcpy(b, src, len);
        struct hy_ws_decoder d1, d2;
        hy_ws_decoder_init(&d1, 200, true);
        hy_ws_decoder_init(&d2, 200, true);
        /* Whole. */
        int res1[16], res2[16];
        size_t lens1[16], lens2[16];
        unsigned k1 = 0, k2 = 0;
        size_t off = 0;
        while (k1 < 16) {
            size_t c;
            struct hy_ws_event ev;
            int rc = hy_ws_decode(&d1, a + off, len - off, &c, &ev);
            assert_true(c <= len - off);
            off += c;
            if (rc == HY_EAGAIN && c == 0)
                break;
            if (rc == HY_EAGAIN)
                continue;
            lens1[k1] = rc == 0 ? ev.len : 0;
            res1[k1++] = rc;
            if (rc < 0)
                break;
        }
        /* Byte by byte: the window grows one byte at a time. */
        size_t start = 0;
        for (size_t end = 1; end <= len && k2 < 16; end++) {
            for (;;) {
                size_t c;
                struct hy_ws_event ev;
                int rc = hy_ws_decode(&d2, b + start, end - start, &c, &ev);
                start += c;
                if (rc == HY_EAGAIN)
                    break;
                lens2[k2] = rc == 0 ? ev.len : 0;
                res2[k2++] = rc;
                if (rc < 0)
                    goto done;
            }
        }
    done:
        assert_int_equal(k1, k2);
        for (unsigned i = 0; i < k1; i++) {
            assert_int_equal(res1[i], res2[i]);
            assert_int_equal(lens1[i], lens2[i]);
        }
        hy_ws_decoder_fini(&d1);
        hy_ws_decoder_fini(&d2);
        free(a);
        free(b);
    }
}

static void test_ws_frame_header(void **state)
{
    (void)state;
    uint8_t h[HY_WS_MAX_HEADER];
    assert_int_equal(hy_ws_frame_header(h, HY_WS_TEXT, true, 5, NULL), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 5);
    assert_int_equal(hy_ws_frame_header(h, HY_WS_BINARY, false, 126, NULL), 4);
    assert_int_equal(h[0], 0x02);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[3], 126);
    assert_int_equal(hy_ws_frame_header(h, HY_WS_BINARY, true, 70000, (const uint8_t *)"abcd"), 14);
    assert_int_equal(h[1], 0x80 | 127);
    assert_memory_equal(h + 10, "abcd", 4);
}

/* ---- the server over real sockets ---------------------------------------- */

#define SEC        1000000000LL
#define TAG_PORT   1
#define TAG_RESULT 2

struct result {
    int rc;
    uint16_t code;
};

static void srv_text(struct hy_ws_conn *c, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    hy_ws_send_text(c, d, n);
}

static void srv_binary(struct hy_ws_conn *c, const uint8_t *d, size_t n, void *ctx)
{
    (void)ctx;
    hy_ws_send_binary(c, d, n);
}

static void srv_close(struct hy_ws_conn *c, uint16_t code, void *ctx)
{
    (void)c;
    ((struct result *)ctx)->code = code;
}

static const struct hy_ws_handler srv_handler = {
    .on_text = srv_text, .on_binary = srv_binary, .on_close = srv_close};

/* Accepts `n` connections one after the other, serves each with the echo
 * handler, and reports each result to the parent. */
static void ws_server(void *arg)
{
    hy_pid parent = *(const hy_pid *)arg;
    struct hy_tcp_listen_opts lo;
    hy_tcp_listen_opts_init(&lo);
    struct hy_tcp *ls;
    HY_CHECK_EQ(hy_tcp_listen(&lo, &ls), 0);
    struct hy_addr me;
    hy_tcp_sockname(ls, &me);
    hy_test_send_u32(parent, TAG_PORT, hy_addr_port(&me));
    for (;;) {
        struct hy_tcp *c;
        if (hy_tcp_accept(ls, &c, 30 * SEC) < 0)
            break;
        char buf[4096];
        size_t len = 0, got;
        struct hy_http_parser p;
        hy_http_parser_init(&p, NULL);
        struct hy_http_request req;
        int rc = HY_EAGAIN;
        while (rc == HY_EAGAIN &&
               hy_tcp_recv(c, buf + len, sizeof(buf) - len, &got, 10 * SEC) == 0) {
            len += got;
            rc = hy_http_parse(&p, buf, len, &req);
        }
        struct result r = {rc, 0};
        if (rc == 0) {
            struct hy_ws_options o = {.max_message = 1000, .close_timeout_ns = 5 * SEC};
            r.rc = hy_ws_serve(c, &req, (const uint8_t *)buf + req.total_len, len - req.total_len,
                               &srv_handler, &r, &o);
        }
        hy_tcp_close(c);
        hy_send(parent, TAG_RESULT, &r, sizeof(r));
    }
    hy_tcp_close(ls);
}

static struct hy_tcp *ws_connect(uint16_t port, const char *version)
{
    struct hy_addr a;
    hy_addr_parse("127.0.0.1", port, &a);
    struct hy_tcp *s;
    if (hy_tcp_connect(&a, NULL, 10 * SEC, &s) < 0)
        return NULL;
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: %s\r\n\r\n",
                     version);
    HY_CHECK_EQ(hy_tcp_send(s, req, (size_t)n, 10 * SEC), 0);
    /* Read the response head byte by byte (no bytes after it are taken). */
    char head[512];
    size_t len = 0;
    while (len < sizeof(head) - 1) {
        size_t got;
        if (hy_tcp_recv_exact(s, head + len, 1, &got, 10 * SEC) < 0)
            break;
        len++;
        if (len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[len] = '\0';
    if (strcmp(version, "13") == 0) {
        HY_CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
        HY_CHECK(strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
    } else {
        HY_CHECK(strncmp(head, "HTTP/1.1 426 ", 13) == 0);
    }
    return s;
}

static void client_send(struct hy_tcp *s, uint8_t b0, const void *p, size_t n, bool mask)
{
    uint8_t f[2048];
    size_t len = frame(f, b0, p, n, mask);
    HY_CHECK_EQ(hy_tcp_send(s, f, len, 10 * SEC), 0);
}

/* Reads one server frame: returns its first byte, payload into out. */
static int client_read(struct hy_tcp *s, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t h[8];
    if (hy_tcp_recv_exact(s, h, 2, NULL, 10 * SEC) < 0)
        return -1;
    HY_CHECK((h[1] & 0x80) == 0); /* servers never mask */
    size_t n = h[1] & 0x7f;
    if (n == 126) {
        hy_tcp_recv_exact(s, h + 2, 2, NULL, 10 * SEC);
        n = (size_t)h[2] << 8 | h[3];
    }
    HY_CHECK(n <= cap);
    if (n > cap || (n && hy_tcp_recv_exact(s, out, n, NULL, 10 * SEC) < 0))
        return -1;
    *len = n;
    return h[0];
}

static struct result must_result(void)
{
    struct result r = {-999, 0};
    struct hy_msg *m = hy_test_must_recv_tag(TAG_RESULT, 30 * SEC);
    if (m) {
        memcpy(&r, m->data, sizeof(r));
        hy_msg_free(m);
    }
    return r;
}

static void body_server(void *arg)
{
    (void)arg;
    hy_pid me = hy_self(), srv;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.arg_size = sizeof(me);
    o.shard = 1;
    HY_CHECK_EQ(hy_spawn_opt(ws_server, &me, &o, &srv), 0);
    struct hy_msg *m = hy_test_must_recv_tag(TAG_PORT, 10 * SEC);
    if (!m)
        return;
    uint16_t port = (uint16_t)hy_test_payload_u32(m);
    hy_msg_free(m);
    uint8_t buf[2048];
    size_t n;

    /* 1. echo, ping, fragments, then a clean close handshake. */
    struct hy_tcp *s = ws_connect(port, "13");
    client_send(s, 0x81, "hello", 5, true);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x81);
    HY_CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
    client_send(s, 0x89, "p!", 2, true);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x8a);
    HY_CHECK(n == 2 && memcmp(buf, "p!", 2) == 0);
    client_send(s, 0x02, "ab", 2, true);
    client_send(s, 0x89, "", 0, true); /* a ping between fragments */
    client_send(s, 0x80, "cd", 2, true);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x8a);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x82);
    HY_CHECK(n == 4 && memcmp(buf, "abcd", 4) == 0);
    client_send(s, 0x88,
                "\x0f\xa0"
                "done",
                6, true); /* 4000 */
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x88);
    HY_CHECK(n >= 2 && buf[0] == 0x0f && buf[1] == 0xa0);
    hy_tcp_close(s);
    struct result r = must_result();
    HY_CHECK_EQ(r.rc, 0);
    HY_CHECK_EQ(r.code, 4000);

    /* 2. an unmasked client frame: closed with 1002. */
    s = ws_connect(port, "13");
    client_send(s, 0x81, "hi", 2, false);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x88);
    HY_CHECK(n == 2 && (buf[0] << 8 | buf[1]) == 1002);
    hy_tcp_close(s);
    r = must_result();
    HY_CHECK_EQ(r.rc, HY_EINVAL);
    HY_CHECK_EQ(r.code, 1002);

    /* 3. a message above max_message: closed with 1009. */
    s = ws_connect(port, "13");
    static uint8_t big[1001];
    client_send(s, 0x82, big, sizeof(big), true);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x88);
    HY_CHECK(n == 2 && (buf[0] << 8 | buf[1]) == 1009);
    hy_tcp_close(s);
    r = must_result();
    HY_CHECK_EQ(r.rc, HY_EMSGSIZE);

    /* 4. invalid UTF-8 in a text message: 1007. */
    s = ws_connect(port, "13");
    client_send(s, 0x81, "\xed\xa0\x80", 3, true);
    HY_CHECK_EQ(client_read(s, buf, sizeof(buf), &n), 0x88);
    HY_CHECK(n == 2 && (buf[0] << 8 | buf[1]) == 1007);
    hy_tcp_close(s);
    r = must_result();
    HY_CHECK_EQ(r.code, 1007);

    /* 5. the peer just goes away: on_close sees 1006. */
    s = ws_connect(port, "13");
    hy_tcp_close(s);
    r = must_result();
    HY_CHECK_EQ(r.code, 1006);

    /* 6. a version other than 13: 426 and no connection. */
    s = ws_connect(port, "8");
    hy_tcp_close(s);
    r = must_result();
    HY_CHECK_EQ(r.rc, HY_EINVAL);

    hy_exit_pid(srv, hy_reason_make(HY_REASON_KILL));
    HY_CHECK(hy_test_quiesce(1, 10000));
}

static void test_ws_server_over_tcp(void **state)
{
    (void)state;
    assert_int_equal(hy_test_run(2, body_server, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_sha1_vectors),
        cmocka_unit_test(test_ws_accept_key),
        cmocka_unit_test(test_ws_utf8),
        cmocka_unit_test(test_ws_decode_messages),
        cmocka_unit_test(test_ws_decode_violations),
        cmocka_unit_test(test_ws_random_input),
        cmocka_unit_test(test_ws_frame_header),
        cmocka_unit_test(test_ws_server_over_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
