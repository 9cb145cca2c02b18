/* kvcache_replay: runs the kvcache protocol over stdin without sockets, as
 * one connection of a one-shard server would, and writes the replies to
 * stdout. Input is fed to the parser in chunks of CHUNK bytes (argv[1],
 * default 1: every command split into one-byte segments), so the output
 * must not depend on how the bytes arrive. tests/apps/kvcache_diff.py sends
 * the same bytes to Debian's memcached and compares. Stats are answered as
 * ERROR here (the server answers them). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvcache_proto.h"

int main(int argc, char **argv)
{
    size_t chunk = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    if (chunk == 0)
        chunk = 1;
    size_t cap = 1 << 16, len = 0, inlen = 0;
    char *all = malloc(cap);
    size_t got;
    while ((got = fread(all + inlen, 1, cap - inlen, stdin)) > 0) {
        inlen += got;
        if (inlen == cap)
            all = realloc(all, cap *= 2);
    }
    struct kvcache_store_settings s = {
        .maxbytes = 64 << 20, .item_size_max = 1 << 20, .factor = 1.25, .chunk_min = 48,
        .started = (uint64_t)time(NULL) - 2, .cas_first = 1, .cas_step = 1,
    };
    struct kvcache_store *st = kvcache_store_create(&s);
    kvcache_store_set_time(st, (uint64_t)time(NULL));
    char *buf = malloc(inlen + 1);
    uint64_t swallow = 0;
    struct kvcache_out out = {0};
    size_t fed = 0;
    while (fed < inlen) {
        size_t n = inlen - fed < chunk ? inlen - fed : chunk;
        memcpy(buf + len, all + fed, n);
        len += n;
        fed += n;
        size_t pos = 0;
        for (;;) {
            if (swallow) {
                size_t d = len - pos < swallow ? len - pos : (size_t)swallow;
                pos += d;
                swallow -= d;
                if (swallow)
                    break;
            }
            if (pos == len)
                break;
            struct kvcache_cmd cmd;
            size_t need;
            int r = kvcache_proto_parse(buf + pos, len - pos, s.item_size_max, &cmd, &need);
            if (r < 0)
                goto close;
            if (r == 0)
                break;
            kvcache_proto_exec(st, &cmd, &out);
            pos += cmd.total;
            swallow = cmd.swallow;
            if (cmd.close)
                goto close;
        }
        memmove(buf, buf + pos, len - pos);
        len -= pos;
    }
    bool closed = false;
    if (0) {
    close:
        closed = true;
    }
    fwrite(out.buf, 1, out.len, stdout);
    if (closed)
        fputs("<CLOSED>", stdout);
    fflush(stdout);
    kvcache_out_fini(&out);
    kvcache_store_destroy(st);
    free(buf);
    free(all);
    return 0;
}
