#include "pid.h"

#include <stdio.h>

/* snprintf is not async-signal-safe in general; this small formatter is. */
static size_t put_u64(char *buf, size_t pos, size_t len, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && pos + 1 < len)
        buf[pos++] = tmp[--n];
    return pos;
}

static size_t put_str(char *buf, size_t pos, size_t len, const char *s)
{
    while (*s && pos + 1 < len)
        buf[pos++] = *s++;
    return pos;
}

char *hy_pid_format(hy_pid pid, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    size_t pos = 0;
    pos = put_str(buf, pos, len, "<");
    pos = put_u64(buf, pos, len, hy_pid_node(pid));
    pos = put_str(buf, pos, len, ".");
    pos = put_u64(buf, pos, len, hy_pid_shard(pid));
    pos = put_str(buf, pos, len, ".");
    pos = put_u64(buf, pos, len, hy_pid_slot(pid));
    pos = put_str(buf, pos, len, ".");
    pos = put_u64(buf, pos, len, hy_pid_gen(pid));
    pos = put_str(buf, pos, len, "@");
    static const char hex[] = "0123456789abcdef";
    uint32_t c = hy_pid_creation(pid);
    for (int sh = 20; sh >= 0; sh -= 4)
        if (pos + 1 < len)
            buf[pos++] = hex[(c >> sh) & 0xf];
    pos = put_str(buf, pos, len, ">");
    buf[pos] = '\0';
    return buf;
}

char *hy_ref_format(hy_ref ref, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    size_t pos = 0;
    pos = put_str(buf, pos, len, "#Ref<");
    pos = put_u64(buf, pos, len, hy_ref_node(ref));
    pos = put_str(buf, pos, len, ".");
    pos = put_u64(buf, pos, len, hy_ref_shard(ref));
    pos = put_str(buf, pos, len, ".");
    pos = put_u64(buf, pos, len, ref.lo >> 52);
    pos = put_str(buf, pos, len, ".");
    pos = put_u64(buf, pos, len, ref.lo & ((1ull << 52) - 1));
    pos = put_str(buf, pos, len, ">");
    buf[pos] = '\0';
    return buf;
}
