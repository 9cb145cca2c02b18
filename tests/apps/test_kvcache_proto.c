/* Tests of apps/kvcache/kvcache_proto.c: memcached's text and meta
 * protocols over one store, without sockets. Expected replies are what
 * memcached 1.6 answers (tests/apps/kvcache_diff.py checks the same and
 * more cases against a running memcached). Every case is also fed one byte
 * at a time and in odd chunks: the replies must not depend on segmentation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvcache_proto.h"

#define T0 1700000000ull

struct conn {
    struct kvcache_store *st;
    char *buf;
    size_t len, cap, max_seen;
    uint64_t swallow;
    bool closed;
    struct kvcache_out out;
};

static void conn_init(struct conn *c)
{
    memset(c, 0, sizeof(*c));
    struct kvcache_store_settings s = {
        .maxbytes = 64 << 20, .item_size_max = 1 << 20, .factor = 1.25, .chunk_min = 48,
        .started = T0 - 2, .cas_first = 1, .cas_step = 1,
    };
    c->st = kvcache_store_create(&s);
    assert_non_null(c->st);
    kvcache_store_set_time(c->st, T0);
}

static void conn_fini(struct conn *c)
{
    kvcache_store_destroy(c->st);
    kvcache_out_fini(&c->out);
    free(c->buf);
}

/* feeds n bytes the way a connection process does */
static void feed(struct conn *c, const char *p, size_t n)
{
    if (c->closed)
        return;
    if (c->len + n > c->cap) {
        c->cap = (c->len + n) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    if (c->len > c->max_seen)
        c->max_seen = c->len;
    size_t pos = 0;
    for (;;) {
        if (c->swallow) {
            size_t d = c->len - pos < c->swallow ? c->len - pos : (size_t)c->swallow;
            pos += d;
            c->swallow -= d;
            if (c->swallow)
                break;
        }
        if (pos == c->len)
            break;
        struct kvcache_cmd cmd;
        size_t need;
        int r = kvcache_proto_parse(c->buf + pos, c->len - pos, 1 << 20, &cmd, &need);
        if (r < 0) {
            c->closed = true;
            break;
        }
        if (r == 0) {
            assert_true(need == 0 || need > c->len - pos);
            assert_true(need <= KVCACHE_LINE_MAX + (1 << 20) + 2);
            break;
        }
        kvcache_proto_exec(c->st, &cmd, &c->out);
        pos += cmd.total;
        c->swallow = cmd.swallow;
        if (cmd.close) {
            c->closed = true;
            break;
        }
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
}

/* runs input in chunks of `chunk` bytes; returns the replies (owned) */
static char *run_chunked(const char *in, size_t n, size_t chunk, bool *closed)
{
    struct conn c;
    conn_init(&c);
    for (size_t i = 0; i < n; i += chunk)
        feed(&c, in + i, n - i < chunk ? n - i : chunk);
    char *r = malloc(c.out.len + 1);
    if (c.out.len)
        memcpy(r, c.out.buf, c.out.len);
    r[c.out.len] = '\0';
    if (closed)
        *closed = c.closed;
    conn_fini(&c);
    return r;
}

/* the same replies whole, byte by byte and in 7-byte chunks */
static void expect_n(const char *in, size_t n, const char *want, bool want_closed)
{
    size_t chunks[] = {n ? n : 1, 1, 7};
    for (size_t i = 0; i < 3; i++) {
        bool closed;
        char *got = run_chunked(in, n, chunks[i], &closed);
        if (strcmp(got, want) != 0)
            print_error("chunk %zu: input \"%.*s\"\n  want \"%s\"\n  got  \"%s\"\n", chunks[i],
                        (int)(n > 200 ? 200 : n), in, want, got);
        assert_string_equal(got, want);
        assert_int_equal(closed, want_closed);
        free(got);
    }
}

static void expect(const char *in, const char *want)
{
    expect_n(in, strlen(in), want, false);
}

static void test_kvcache_proto_storage_commands(void **state)
{
    (void)state;
    expect("set a 0 0 1\r\nx\r\nget a\r\n", "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n");
    expect("set a 5 0 3\r\nabc\r\ngets a\r\n", "STORED\r\nVALUE a 5 3 1\r\nabc\r\nEND\r\n");
    expect("set a 0 0 1\r\nx\r\nappend a 5 5 2\r\nyz\r\nprepend a 0 0 1\r\nw\r\nget a\r\n"
           "append zz 0 0 1\r\nx\r\n",
           "STORED\r\nSTORED\r\nSTORED\r\nVALUE a 0 4\r\nwxyz\r\nEND\r\nNOT_STORED\r\n");
    expect("set a 0 0 1\r\nx\r\nadd a 0 0 1\r\nq\r\nreplace a 0 0 1\r\nr\r\n"
           "replace nn 0 0 1\r\nr\r\nget a\r\n",
           "STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\nVALUE a 0 1\r\nr\r\nEND\r\n");
    expect("set a 4294967295 0 1\r\nx\r\nget a\r\n", "STORED\r\nVALUE a 4294967295 1\r\nx\r\nEND\r\n");
    expect("set a 0 -1 1\r\nx\r\nget a\r\n", "STORED\r\nEND\r\n");
    /* numbers of 9 digits and more, leading zeros, a sign, extra spaces */
    expect("set a 999999999 0 1\r\nx\r\nget a\r\n", "STORED\r\nVALUE a 999999999 1\r\nx\r\nEND\r\n");
    expect("set a 1000000000 0 1\r\nx\r\nget a\r\n",
           "STORED\r\nVALUE a 1000000000 1\r\nx\r\nEND\r\n");
    expect("set a 0000000000007 0 1\r\nx\r\nget a\r\n", "STORED\r\nVALUE a 7 1\r\nx\r\nEND\r\n");
    expect("set a +7 0 1\r\nx\r\nget a\r\n", "STORED\r\nVALUE a 7 1\r\nx\r\nEND\r\n");
    expect("set  a   3  0  1 \r\nx\r\nget   a  b \r\n", "STORED\r\nVALUE a 3 1\r\nx\r\nEND\r\n");
    expect("set a 0 0 1 noreply\r\nx\r\nget a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n");
    expect("set a 0 0 0\r\n\r\nget a\r\n", "STORED\r\nVALUE a 0 0\r\n\r\nEND\r\n");
}

static void test_kvcache_proto_cas(void **state)
{
    (void)state;
    expect("cas a 0 0 1 5\r\nx\r\nset a 0 0 1\r\nx\r\ngets a\r\ncas a 0 0 1 5\r\ny\r\n"
           "cas a 0 0 1 1\r\nz\r\ncas a 0 0 1 1\r\nw\r\ngets a\r\n",
           "NOT_FOUND\r\nSTORED\r\nVALUE a 0 1 1\r\nx\r\nEND\r\nEXISTS\r\nSTORED\r\nEXISTS\r\n"
           "VALUE a 0 1 2\r\nz\r\nEND\r\n");
    expect("cas a 0 0 1 x\r\ny\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n");
}

static void test_kvcache_proto_incr_decr_touch_delete(void **state)
{
    (void)state;
    expect("set n 0 0 2\r\n10\r\ndecr n 1\r\nget n\r\nincr n 18446744073709551615\r\n",
           "STORED\r\n9\r\nVALUE n 0 2\r\n9 \r\nEND\r\n8\r\n");
    expect("set n 0 0 1\r\n5\r\ndecr n 9\r\nincr n abc\r\nincr n -1\r\nincr nn 1\r\n",
           "STORED\r\n0\r\nCLIENT_ERROR invalid numeric delta argument\r\n"
           "CLIENT_ERROR invalid numeric delta argument\r\nNOT_FOUND\r\n");
    expect("set s 0 0 1\r\nx\r\nincr s 1\r\n",
           "STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    expect("touch a 10\r\nset a 0 0 1\r\nx\r\ntouch a 10\r\ntouch a x\r\n",
           "NOT_FOUND\r\nSTORED\r\nTOUCHED\r\nCLIENT_ERROR invalid exptime argument\r\n");
    expect("set a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\ndelete a 0\r\ndelete a 5\r\n"
           "delete a 0 noreply\r\nmn\r\n",
           "STORED\r\nDELETED\r\nNOT_FOUND\r\nNOT_FOUND\r\n"
           "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\nMN\r\n");
    expect("set a 0 0 1\r\nx\r\ngat 100 a b\r\ngats 100 a\r\ngat a\r\ngat 10\r\n",
           "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nVALUE a 0 1 1\r\nx\r\nEND\r\n"
           "CLIENT_ERROR invalid exptime argument\r\nEND\r\n");
}

static void test_kvcache_proto_misc_commands(void **state)
{
    (void)state;
    expect("verbosity 1\r\nverbosity\r\nverbosity x\r\nflush_all\r\nflush_all x\r\n"
           "flush_all 0 noreply\r\nmn\r\n",
           "OK\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nOK\r\n"
           "CLIENT_ERROR invalid exptime argument\r\nMN\r\n");
    expect("set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\n", "STORED\r\nOK\r\nEND\r\n");
    char want[64];
    snprintf(want, sizeof(want), "VERSION %s\r\n", kvcache_proto_version());
    expect("version\r\n", want);
    expect_n("quit\r\nget a\r\n", 12, "", true);
}

static void test_kvcache_proto_bad_input(void **state)
{
    (void)state;
    char line[600];
    char k251[252];
    memset(k251, 'k', 251);
    k251[251] = '\0';
    snprintf(line, sizeof(line), "set %s 0 0 1\r\nx\r\n", k251);
    expect(line, "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    snprintf(line, sizeof(line), "get a %s a\r\n", k251);
    expect(line, "CLIENT_ERROR bad command line format\r\n");
    k251[250] = '\0'; /* 250 bytes is fine */
    snprintf(line, sizeof(line), "set %s 0 0 1\r\nx\r\nget %s\r\n", k251, k251);
    char want[700];
    snprintf(want, sizeof(want), "STORED\r\nVALUE %s 0 1\r\nx\r\nEND\r\n", k251);
    expect(line, want);
    /* 2^32 is truncated to 0 as memcached does; then the data is a bad chunk */
    expect("set a 0 0 4294967296\r\nx\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
    expect("set a 0 0 2147483647\r\nxx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    expect("set a 0 0 -1\r\nxx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    /* a value longer than declared */
    expect("set a 0 0 1\r\nx\r\nset a 0 0 1\r\nxyz\r\nget a\r\n",
           "STORED\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE a 0 1\r\nx\r\nEND\r\n");
    expect("set a 0 0 1 noreply\r\nxyz\r\nmn\r\n", "ERROR\r\nMN\r\n");
    expect("foo\r\n\r\nget\r\nset a 0 0\r\nset a 0 0 1 noreply extra\r\n",
           "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
    expect_n("\x00\x01\x02garbage\xff\r\nmn\r\n", 17, "ERROR\r\nMN\r\n", false);
    /* a line without end beyond 2048 bytes closes the connection */
    static char junk[5000];
    memset(junk, 'j', sizeof(junk));
    expect_n(junk, sizeof(junk), "", true);
    /* a get line may be longer */
    static char big[8000];
    size_t n = (size_t)snprintf(big, sizeof(big), "get");
    while (n < 6000)
        n += (size_t)snprintf(big + n, sizeof(big) - n, " key%zu", n);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    expect_n(big, n, "END\r\n", false);
}

/* a refused store: answered at once, its data swallowed without being
 * buffered (the parser never asks for more than a line plus the limit) */
static void test_kvcache_proto_too_large_is_swallowed(void **state)
{
    (void)state;
    size_t vlen = 2000000;
    static char in[2000200];
    size_t n = (size_t)sprintf(in, "set big 0 0 1\r\nx\r\nset big 0 0 %zu\r\n", vlen);
    memset(in + n, 'z', vlen);
    n += vlen;
    n += (size_t)sprintf(in + n, "\r\nget big\r\nmn\r\n");
    struct conn c;
    conn_init(&c);
    for (size_t i = 0; i < n; i += 4096)
        feed(&c, in + i, n - i < 4096 ? n - i : 4096);
    c.out.buf[c.out.len] = '\0';
    assert_memory_equal(c.out.buf,
                        "STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\nMN\r\n",
                        c.out.len);
    assert_true(c.max_seen <= 8192); /* never buffered the 2 MB */
    conn_fini(&c);
    /* a declared length at the limit is asked for, and no more */
    struct kvcache_cmd cmd;
    size_t need;
    const char *line = "set k 0 0 1000000\r\n";
    assert_int_equal(kvcache_proto_parse(line, strlen(line), 1 << 20, &cmd, &need), 0);
    assert_int_equal(need, strlen(line) + 1000000 + 2);
}

static void test_kvcache_proto_pipelining(void **state)
{
    (void)state;
    /* 200 commands in one buffer: replies in order */
    static char in[20000], want[20000];
    size_t n = 0, w = 0;
    for (int i = 0; i < 100; i++) {
        n += (size_t)sprintf(in + n, "set k%d 0 0 %d\r\n%d\r\nget k%d\r\n", i, i < 10 ? 1 : 2, i,
                             i);
        w += (size_t)sprintf(want + w, "STORED\r\nVALUE k%d 0 %d\r\n%d\r\nEND\r\n", i,
                             i < 10 ? 1 : 2, i);
    }
    expect_n(in, n, want, false);
}

static void test_kvcache_proto_meta_get_set(void **state)
{
    (void)state;
    expect("set a 1 0 2\r\nhi\r\nmg a\r\nmg a v\r\nmg a v f s c k t O123 q\r\nmg miss v\r\n"
           "mg miss v q\r\nmn\r\n",
           "STORED\r\nHD\r\nVA 2\r\nhi\r\nVA 2 f1 s2 c1 ka t-1 O123\r\nhi\r\nEN\r\nMN\r\n");
    expect("ms m 2\r\nhi\r\nms m 2 T0 F5 c\r\nyo\r\nmg m v f\r\nms m S2\r\nyo\r\n",
           "HD\r\nHD c2\r\nVA 2 f5\r\nyo\r\nCLIENT_ERROR bad command line format\r\nERROR\r\n");
    expect("ms m 2\r\nyo\r\nms m 2 MA\r\nzz\r\nmg m v\r\nms m 2 C1\r\nzz\r\nms nx 2 MR\r\nzz\r\n"
           "ms nx 2 q\r\nzz\r\nmn\r\n",
           "HD\r\nHD\r\nVA 4\r\nyozz\r\nEX\r\nNS\r\nMN\r\n");
    expect("ms a 2 MX\r\nhi\r\nms a 2 ME\r\nhi\r\nms a 2 ME\r\nhi\r\nmn\r\n",
           "CLIENT_ERROR invalid mode for ms M token\r\nHD\r\nNS\r\nMN\r\n");
    expect("ms a 2 T100\r\nhi\r\nmg a t v\r\n", "HD\r\nVA 2 t100\r\nhi\r\n");
    /* base64 keys */
    expect("ms YQ== 2 b c k\r\nhi\r\nget a\r\nmg YQ== b v k\r\nmg !!! b\r\n",
           "HD c1 kYQ== b\r\nVALUE a 0 2\r\nhi\r\nEND\r\nVA 2 kYQ== b\r\nhi\r\n"
           "CLIENT_ERROR error decoding key\r\n");
}

static void test_kvcache_proto_meta_delete_arith(void **state)
{
    (void)state;
    expect("ms m 1\r\nx\r\nmd m\r\nmd m\r\nmd m q\r\nmn\r\n", "HD\r\nHD\r\nNF\r\nNF\r\nMN\r\n");
    expect("ma cnt\r\nma cnt N0 J10\r\nma cnt v\r\nma cnt MD D100 v\r\nma cnt q\r\nmn\r\n",
           "NF\r\nHD\r\nVA 2\r\n11\r\nVA 1\r\n0\r\nMN\r\n");
    expect("ms c 2\r\nab\r\nma c\r\nma c MX\r\nma c Dxx\r\nmn\r\n",
           "HD\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
           "CLIENT_ERROR invalid mode for ma M token\r\nCLIENT_ERROR invalid or duplicate flag\r\n"
           "MN\r\n");
    expect("mg\r\nmg a zz\r\nms a\r\nms a x\r\nms a 2 X\r\nhi\r\nmg a v v\r\nmn\r\n",
           "ERROR\r\nCLIENT_ERROR invalid flag\r\nCLIENT_ERROR bad command line format\r\n"
           "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR invalid flag\r\n"
           "CLIENT_ERROR duplicate flag\r\nMN\r\n");
}

/* stale-while-revalidate: vivify on miss, invalidate, win/stale flags */
static void test_kvcache_proto_meta_win_stale(void **state)
{
    (void)state;
    expect("mg n1 N30 v c t\r\nmg n1 N30 v c t\r\nms n1 1 T60\r\nQ\r\nmg n1 v\r\n",
           "VA 0 c1 t30 W\r\n\r\nVA 0 c1 t30 Z\r\n\r\nHD\r\nVA 1\r\nQ\r\n");
    expect("ms a 2 T100\r\nhi\r\nmd a I T30\r\nmg a c v t\r\nmg a c\r\n",
           "HD\r\nHD\r\nVA 2 c2 t30 X W\r\nhi\r\nHD c2 Z X\r\n");
    expect("ms c 1\r\nx\r\nme c\r\nme nope\r\n",
           "HD\r\nME c exp=-1 la=0 cas=1 fetch=no cls=1 size=60\r\nEN\r\n");
}

/* an output on the caller's storage: appends that fit stay there, the
 * first that does not moves everything to an owned buffer (the storage is
 * left as it was), and fini frees only what the output owns (ASan checks) */
static void test_kvcache_proto_out_borrowed_storage(void **state)
{
    (void)state;
    char store[16];
    memset(store, '#', sizeof(store));
    struct kvcache_out o;
    kvcache_out_use(&o, store, 8);
    kvcache_out_put(&o, "abcd", 4);
    kvcache_out_put(&o, "efgh", 4);
    assert_ptr_equal(o.buf, store);
    assert_int_equal(o.len, 8);
    assert_memory_equal(store, "abcdefgh########", 16);
    kvcache_out_put(&o, "ij", 2);
    assert_ptr_not_equal(o.buf, store);
    assert_false(o.borrowed);
    assert_false(o.oom);
    assert_int_equal(o.len, 10);
    assert_true(o.cap >= 10);
    assert_memory_equal(o.buf, "abcdefghij", 10);
    assert_memory_equal(store + 8, "########", 8);
    kvcache_out_fini(&o);
    assert_null(o.buf);
    /* borrowed and never outgrown: fini leaves the storage alone */
    kvcache_out_use(&o, store, sizeof(store));
    kvcache_out_str(&o, "END\r\n");
    kvcache_out_fini(&o);
    assert_memory_equal(store, "END\r\n", 5);
    assert_false(o.borrowed);
    assert_int_equal(o.cap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kvcache_proto_storage_commands),
        cmocka_unit_test(test_kvcache_proto_cas),
        cmocka_unit_test(test_kvcache_proto_incr_decr_touch_delete),
        cmocka_unit_test(test_kvcache_proto_misc_commands),
        cmocka_unit_test(test_kvcache_proto_bad_input),
        cmocka_unit_test(test_kvcache_proto_too_large_is_swallowed),
        cmocka_unit_test(test_kvcache_proto_pipelining),
        cmocka_unit_test(test_kvcache_proto_meta_get_set),
        cmocka_unit_test(test_kvcache_proto_meta_delete_arith),
        cmocka_unit_test(test_kvcache_proto_meta_win_stale),
        cmocka_unit_test(test_kvcache_proto_out_borrowed_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
