/* The HTTP/1.1 request parser and response writer, with hostile input:
 * malformed request lines and headers, smuggling attempts, oversized heads
 * and bodies, byte-by-byte arrival, random bytes and mutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"

static int parse_all(const char *s, struct hy_http_parser *p, struct hy_http_request *r)
{
    hy_http_parser_init(p, NULL);
    return hy_http_parse(p, s, strlen(s), r);
}

static void expect_status(const char *s, int err, unsigned status)
{
    struct hy_http_parser p;
    struct hy_http_request r;
    int rc = parse_all(s, &p, &r);
    if (rc != err || p.status != status)
        fail_msg("input %.60s: got %d/%u, want %d/%u", s, rc, p.status, err, status);
}

static void test_http_parses_a_get(void **state)
{
    (void)state;
    const char *s = "GET /api/shards?x=1&y=2 HTTP/1.1\r\nHost: localhost\r\n"
                    "User-Agent:  curl/8  \r\nAccept: */*\r\n\r\n";
    struct hy_http_parser p;
    struct hy_http_request r;
    assert_int_equal(parse_all(s, &p, &r), 0);
    assert_int_equal(r.method_len, 3);
    assert_memory_equal(r.method, "GET", 3);
    assert_int_equal(r.path_len, strlen("/api/shards"));
    assert_memory_equal(r.path, "/api/shards", r.path_len);
    assert_int_equal(r.query_len, 7);
    assert_memory_equal(r.query, "x=1&y=2", 7);
    assert_int_equal(r.minor_version, 1);
    assert_int_equal(r.nheaders, 3);
    const struct hy_http_header *ua = hy_http_header_find(&r, "user-agent");
    assert_non_null(ua);
    assert_int_equal(ua->value_len, 6); /* surrounding spaces removed */
    assert_memory_equal(ua->value, "curl/8", 6);
    assert_true(r.keep_alive);
    assert_false(r.upgrade_websocket);
    assert_int_equal(r.total_len, strlen(s));
    assert_int_equal(r.body_len, 0);
}

static void test_http_keep_alive_rules(void **state)
{
    (void)state;
    struct hy_http_parser p;
    struct hy_http_request r;
    assert_int_equal(parse_all("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &p, &r),
                     0);
    assert_false(r.keep_alive);
    assert_int_equal(parse_all("GET / HTTP/1.0\r\n\r\n", &p, &r), 0);
    assert_false(r.keep_alive);
    assert_int_equal(parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &p, &r), 0);
    assert_true(r.keep_alive);
    assert_int_equal(parse_all("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                               "Upgrade: websocket\r\n\r\n",
                               &p, &r),
                     0);
    assert_true(r.upgrade_websocket);
}

static void test_http_body_and_pipelining(void **state)
{
    (void)state;
    const char *s = "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / "
                    "HTTP/1.1\r\nHost: a\r\n\r\n";
    struct hy_http_parser p;
    struct hy_http_request r;
    hy_http_parser_init(&p, NULL);
    size_t len = strlen(s);
    assert_int_equal(hy_http_parse(&p, s, len, &r), 0);
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "hello", 5);
    size_t used = r.total_len;
    hy_http_parser_reset(&p);
    assert_int_equal(hy_http_parse(&p, s + used, len - used, &r), 0);
    assert_memory_equal(r.method, "GET", 3);
    assert_int_equal(used + r.total_len, len);
}

/* Fed one byte at a time, the parser answers EAGAIN until the last byte and
 * then the same request as in one piece. */
static void test_http_byte_by_byte(void **state)
{
    (void)state;
    const char *s = "PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc";
    size_t len = strlen(s);
    struct hy_http_parser p;
    struct hy_http_request r;
    hy_http_parser_init(&p, NULL);
    for (size_t n = 1; n < len; n++)
        assert_int_equal(hy_http_parse(&p, s, n, &r), HY_EAGAIN);
    assert_int_equal(hy_http_parse(&p, s, len, &r), 0);
    assert_int_equal(r.nheaders, 3);
    assert_memory_equal(r.body, "abc", 3);
}

static void test_http_bad_request_lines(void **state)
{
    (void)state;
    expect_status("GARBAGE\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTX/1.1\r\nHost: a\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/1.1\nHost: a\n\n", HY_EINVAL, 400);
    expect_status("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", HY_EINVAL, 400);
    expect_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HY_ENOTSUP, 505);
    expect_status("GET / HTTP/1.1\r\n\r\n", HY_EINVAL, 400); /* no Host */
    expect_status("\r\n\r\n", HY_EINVAL, 400);
    /* Caught before the head is complete: */
    expect_status("\x16\x03\x01\x02\x00", HY_EINVAL, 400); /* a TLS hello */
    expect_status("GET / XYZ", HY_EINVAL, 400);
    /* A bad byte deep in a long request line is refused when the line ends. */
    {
        char line[1200];
        int n = snprintf(line, sizeof(line), "GET /");
        memset(line + n, 'a', 1000);
        line[n + 500] = '\x01';
        struct hy_http_parser p;
        struct hy_http_request r;
        hy_http_parser_init(&p, NULL);
        assert_int_equal(hy_http_parse(&p, line, (size_t)n + 1000, &r), HY_EAGAIN);
        memcpy(line + n + 1000, "\r\n", 2);
        assert_int_equal(hy_http_parse(&p, line, (size_t)n + 1002, &r), HY_EINVAL);
        assert_int_equal(p.status, 400);
    }
    /* A valid prefix waits. */
    expect_status("GET / HTTP/1.", HY_EAGAIN, 0);
}

static void test_http_bad_headers(void **state)
{
    (void)state;
    expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\x0b\r\n\r\n", HY_EINVAL, 400); /* VT */
    expect_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", HY_EINVAL, 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", HY_EINVAL, 400);
    /* Request smuggling shapes. */
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                  HY_EINVAL, 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", HY_EINVAL, 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                  HY_EINVAL, 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", HY_ENOTSUP,
                  501);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 3\r\n\r\n",
                  HY_EINVAL, 400);
}

static void test_http_limits(void **state)
{
    (void)state;
    struct hy_http_limits lim = {.max_head = 256, .max_headers = 4, .max_body = 10};
    struct hy_http_parser p;
    struct hy_http_request r;
    char big[1024];
    /* A head that never ends: refused as soon as max_head bytes are in. */
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'a', sizeof(big) - (size_t)n);
    hy_http_parser_init(&p, &lim);
    assert_int_equal(hy_http_parse(&p, big, 255, &r), HY_EAGAIN);
    assert_int_equal(hy_http_parse(&p, big, 256, &r), HY_EMSGSIZE);
    assert_int_equal(p.status, 431);
    /* Too many fields. */
    const char *many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    hy_http_parser_init(&p, &lim);
    assert_int_equal(hy_http_parse(&p, many, strlen(many), &r), HY_EMSGSIZE);
    assert_int_equal(p.status, 431);
    /* Body above the bound: refused from the head, before the body. */
    const char *body = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    hy_http_parser_init(&p, &lim);
    assert_int_equal(hy_http_parse(&p, body, strlen(body), &r), HY_EMSGSIZE);
    assert_int_equal(p.status, 413);
    /* A failed parser stays failed. */
    assert_int_equal(hy_http_parse(&p, "GET / HTTP/1.0\r\n\r\n", 18, &r), HY_EINVAL);
}

/* Random bytes and random mutations of valid requests: the parser never
 * reads past len (ASan checks), never succeeds with pointers outside the
 * buffer, and gives the same verdict fed whole or byte by byte. */
static void test_http_random_input(void **state)
{
    (void)state;
    const char *seeds[] = {
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /api/proc/kill HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nAuthorization: Bearer "
        "t\r\n\r\nabcd",
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    };
    uint32_t seed = 12345;
    unsigned ok = 0, bad = 0;
    for (unsigned iter = 0; iter < 20000; iter++) {
        char buf[512];
        size_t len;
        seed = seed * 1103515245u + 12345u;
        if (iter % 4 == 0) {
            len = (seed >> 8) % sizeof(buf);
            for (size_t i = 0; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                buf[i] = (char)(seed >> 16);
            }
        } else {
            const char *s = seeds[iter % 3];
            len = strlen(s);
            memcpy(buf, s, len);
            unsigned muts = 1 + (seed >> 20) % 3;
            for (unsigned m = 0; m < muts; m++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % len;
                buf[at] = (char)(seed >> 24);
            }
        }
        char *heap = malloc(len ? len : 1);
        memcpy(heap, buf, len);
        struct hy_http_parser p1, p2;
        struct hy_http_request r1, r2;
        hy_http_parser_init(&p1, NULL);
        int rc1 = hy_http_parse(&p1, heap, len, &r1);
        hy_http_parser_init(&p2, NULL);
        int rc2 = HY_EAGAIN;
        for (size_t n = 0; n <= len && rc2 == HY_EAGAIN; n++)
            rc2 = hy_http_parse(&p2, heap, n, &r2);
        assert_int_equal(rc1, rc2);
        if (rc1 == 0) {
            ok++;
            assert_true(r1.total_len <= len);
            assert_true(r1.path >= heap && r1.path + r1.path_len <= heap + len);
            for (unsigned k = 0; k < r1.nheaders; k++)
                assert_true(r1.headers[k].value + r1.headers[k].value_len <= heap + len);
            assert_int_equal(r1.total_len, r2.total_len);
        } else if (rc1 != HY_EAGAIN) {
            bad++;
            assert_true(p1.status >= 400 && p1.status <= 505);
            assert_int_equal(p1.status, p2.status);
        }
        free(heap);
    }
    assert_true(ok > 100);
    assert_true(bad > 1000);
}

static void test_http_response_head(void **state)
{
    (void)state;
    char buf[256];
    int n = hy_http_response_head(buf, sizeof(buf), 404, "text/plain", 9, false, "X-A: b\r\n");
    assert_true(n > 0);
    assert_string_equal(buf, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 9\r\nConnection: close\r\n"
                             "Cache-Control: no-store\r\nX-A: b\r\n\r\n");
    assert_int_equal(hy_http_response_head(buf, 20, 200, NULL, 0, true, NULL), HY_ENOSPC);
    assert_int_equal(hy_http_response_head(buf, sizeof(buf), 99, NULL, 0, true, NULL), HY_EINVAL);
    assert_true(hy_http_value_has_token("a, B ,c", 7, "b"));
    assert_false(hy_http_value_has_token("ab", 2, "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_parses_a_get),
        cmocka_unit_test(test_http_keep_alive_rules),
        cmocka_unit_test(test_http_body_and_pipelining),
        cmocka_unit_test(test_http_byte_by_byte),
        cmocka_unit_test(test_http_bad_request_lines),
        cmocka_unit_test(test_http_bad_headers),
        cmocka_unit_test(test_http_limits),
        cmocka_unit_test(test_http_random_input),
        cmocka_unit_test(test_http_response_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
