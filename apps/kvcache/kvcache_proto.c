/* kvcache_proto: memcached's text and meta protocols (parser, executor). */
#include "kvcache_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOKENS 24

static const char E_FORMAT[] = "CLIENT_ERROR bad command line format";
static const char E_CHUNK[] = "CLIENT_ERROR bad data chunk";
static const char E_EXPTIME[] = "CLIENT_ERROR invalid exptime argument";
static const char E_DELTA[] = "CLIENT_ERROR invalid numeric delta argument";
static const char E_NONNUM[] = "CLIENT_ERROR cannot increment or decrement non-numeric value";
static const char E_TOO_LARGE[] = "SERVER_ERROR object too large for cache";
static const char E_NO_MEMORY[] = "SERVER_ERROR out of memory storing object";
static const char E_DELETE[] = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
static const char E_FLAG[] = "CLIENT_ERROR invalid flag";
static const char E_DUPFLAG[] = "CLIENT_ERROR duplicate flag";
static const char E_TOKEN[] = "CLIENT_ERROR bad token in command line format";
static const char E_KEYDEC[] = "CLIENT_ERROR error decoding key";
static const char E_OPAQUE[] = "CLIENT_ERROR opaque token too long";
static const char E_MA_FLAG[] = "CLIENT_ERROR invalid or duplicate flag";
static const char E_MA_MODE[] = "CLIENT_ERROR invalid mode for ma M token";
static const char E_MS_MODE[] = "CLIENT_ERROR invalid mode for ms M token";

const char *kvcache_proto_version(void)
{
    return "1.6.18-hydra";
}

/* ---- output ----------------------------------------------------------------- */

static KV_HOT bool out_reserve(struct kvcache_out *o, size_t n)
{
    if (o->len + n <= o->cap)
        return true;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n)
        cap *= 2;
    char *b = o->borrowed ? malloc(cap) : realloc(o->buf, cap);
    if (!b) {
        o->oom = true;
        return false;
    }
    if (o->borrowed && o->len)
        memcpy(b, o->buf, o->len);
    o->borrowed = false;
    o->buf = b;
    o->cap = cap;
    return true;
}

void kvcache_out_use(struct kvcache_out *o, char *buf, size_t cap)
{
    *o = (struct kvcache_out){.buf = buf, .cap = cap, .borrowed = true};
}

bool kvcache_out_grow(struct kvcache_out *o, size_t n)
{
    return out_reserve(o, n);
}

KV_HOT void kvcache_out_str(struct kvcache_out *o, const char *s)
{
    kvcache_out_put(o, s, strlen(s));
}

KV_HOT void kvcache_out_fini(struct kvcache_out *o)
{
    if (!o->borrowed)
        free(o->buf);
    o->buf = NULL;
    o->len = o->cap = 0;
    o->borrowed = false;
}

static void out_line(struct kvcache_out *o, const char *s)
{
    kvcache_out_str(o, s);
    kvcache_out_put(o, "\r\n", 2);
}

static KV_HOT char *fmt_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static KV_HOT char *fmt_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return fmt_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(p, (uint64_t)v);
}

/* ---- numbers, as memcached's safe_strto* read them ---------------------------- */

static bool tok_copy(const char *s, size_t n, char *buf)
{
    if (n == 0 || n > 64)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return true;
}

/* the common case, up to 9 plain digits (no sign, no space; below 10^9,
 * so it fits every type read here): read directly; anything else goes
 * through strto*, which decides what memcached accepts */
static KV_HOT bool digits9(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 9)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static KV_HOT bool num_u32(const char *s, size_t n, uint32_t *out)
{
    if (digits9(s, n, out))
        return true;
    char b[72];
    if (!tok_copy(s, n, b))
        return false;
    char *end;
    errno = 0;
    unsigned long l = strtoul(b, &end, 10);
    if (errno == ERANGE || end == b || *end != '\0')
        return false;
    if ((long)l < 0 && memchr(b, '-', (size_t)(end - b)))
        return false;
    *out = (uint32_t)l;
    return true;
}

static KV_HOT bool num_i32(const char *s, size_t n, int32_t *out)
{
    uint32_t d;
    if (digits9(s, n, &d)) {
        *out = (int32_t)d;
        return true;
    }
    char b[72];
    if (!tok_copy(s, n, b))
        return false;
    char *end;
    errno = 0;
    long l = strtol(b, &end, 10);
    if (errno == ERANGE || end == b || *end != '\0')
        return false;
    *out = (int32_t)l; /* memcached truncates the same way */
    return true;
}

static KV_HOT bool num_u64(const char *s, size_t n, uint64_t *out)
{
    uint32_t d;
    if (digits9(s, n, &d)) {
        *out = d;
        return true;
    }
    char b[72];
    if (!tok_copy(s, n, b))
        return false;
    char *end;
    errno = 0;
    unsigned long long l = strtoull(b, &end, 10);
    if (errno == ERANGE || end == b || *end != '\0')
        return false;
    if ((long long)l < 0 && memchr(b, '-', (size_t)(end - b)))
        return false;
    *out = (uint64_t)l;
    return true;
}

/* ---- base64 (meta b flag) ------------------------------------------------------ */

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* decodes s[0..n) into out (cap bytes); returns the length or -1 */
static long b64_decode(const char *s, size_t n, char *out, size_t cap)
{
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)s[i + (size_t)j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else if (pad) {
                return -1;
            } else if ((v[j] = b64_val(c)) < 0) {
                return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        int bytes = 3 - pad;
        if (o + (size_t)bytes > cap)
            return -1;
        out[o++] = (char)(w >> 16);
        if (bytes > 1)
            out[o++] = (char)(w >> 8);
        if (bytes > 2)
            out[o++] = (char)w;
    }
    return (long)o;
}

static void b64_put(struct kvcache_out *o, const char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char buf[4 * ((KVCACHE_KEY_MAX + 2) / 3) + 4];
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            w |= (uint32_t)(unsigned char)s[i + 2];
        buf[k++] = tab[(w >> 18) & 63];
        buf[k++] = tab[(w >> 12) & 63];
        buf[k++] = i + 1 < n ? tab[(w >> 6) & 63] : '=';
        buf[k++] = i + 2 < n ? tab[w & 63] : '=';
    }
    kvcache_out_put(o, buf, k);
}

/* ---- parser --------------------------------------------------------------------- */

struct tok {
    const char *s;
    size_t n;
};

static KV_HOT int tokenize(const char *line, size_t n, struct tok *t, int max)
{
    int nt = 0;
    size_t i = 0;
    while (i < n && nt < max) {
        while (i < n && line[i] == ' ')
            i++;
        if (i == n)
            break;
        size_t st = i;
        const char *sp = memchr(line + i, ' ', n - i);
        i = sp ? (size_t)(sp - line) : n;
        t[nt].s = line + st;
        t[nt].n = i - st;
        nt++;
    }
    return nt;
}

static KV_HOT bool tok_is(const struct tok *t, const char *w)
{
    size_t n = strlen(w);
    return t->n == n && memcmp(t->s, w, n) == 0;
}

static int fail(struct kvcache_cmd *c, const char *msg)
{
    c->op = KVCACHE_OP_ERROR;
    c->error = msg;
    return 1;
}

static KV_HOT bool starts_get(const char *b, size_t n)
{
    return (n >= 4 && (memcmp(b, "get ", 4) == 0 || memcmp(b, "gat ", 4) == 0)) ||
           (n >= 5 && (memcmp(b, "gets ", 5) == 0 || memcmp(b, "gats ", 5) == 0));
}

/* keys of a get family line start at t[first]; each at most 250 bytes */
static KV_HOT int parse_get(struct kvcache_cmd *c, const char *line, size_t n, const struct tok *t, int nt,
                     int first)
{
    if (nt <= first)
        return fail(c, "ERROR");
    c->keys = t[first].s;
    c->keys_len = (size_t)(line + n - t[first].s);
    if (nt < MAX_TOKENS) { /* the tokens are all the keys */
        for (int i = first; i < nt; i++)
            if (t[i].n > KVCACHE_KEY_MAX)
                return fail(c, E_FORMAT);
        if (nt == first + 1) { /* the only key: no walk of the list for it */
            c->key = t[first].s;
            c->nkey = t[first].n;
        }
        return 1;
    }
    size_t pos = 0;
    const char *k;
    size_t nk;
    while (kvcache_proto_next_key(c, &pos, &k, &nk))
        if (nk > KVCACHE_KEY_MAX)
            return fail(c, E_FORMAT);
    return 1;
}

KV_HOT bool kvcache_proto_next_key(const struct kvcache_cmd *cmd, size_t *pos, const char **key,
                            size_t *nkey)
{
    size_t i = *pos;
    while (i < cmd->keys_len && cmd->keys[i] == ' ')
        i++;
    if (i >= cmd->keys_len)
        return false;
    size_t st = i;
    const char *sp = memchr(cmd->keys + i, ' ', cmd->keys_len - i);
    i = sp ? (size_t)(sp - cmd->keys) : cmd->keys_len;
    *key = cmd->keys + st;
    *nkey = i - st;
    *pos = i;
    return true;
}

/* what a storage command needs after its line: returns like parse */
static KV_HOT int take_data(struct kvcache_cmd *c, const char *buf, size_t len, size_t line_total,
                     int64_t vlen, uint32_t item_max, size_t *need)
{
    if (kvcache_store_item_size(c->nkey, (size_t)vlen) > item_max) {
        c->too_large = true;
        c->total = line_total;
        c->swallow = (uint64_t)vlen + 2;
        return 1;
    }
    size_t want = line_total + (size_t)vlen + 2;
    if (len < want) {
        *need = want;
        return 0;
    }
    c->total = want;
    c->data = buf + line_total;
    c->nbytes = (size_t)vlen;
    if (buf[want - 2] != '\r' || buf[want - 1] != '\n')
        return fail(c, E_CHUNK);
    return 1;
}

static const char *meta_allowed(enum kvcache_op op)
{
    switch (op) {
    case KVCACHE_OP_MG:
        return "bcfhklOqstuvNRT";
    case KVCACHE_OP_MS:
        return "bcCEFIkOqsStTMN";
    case KVCACHE_OP_MD:
        return "bCEIkOqTx";
    case KVCACHE_OP_MA:
        return "bNJDTMqOtcvkCE";
    default:
        return "";
    }
}

/* parses meta flags t[0..nt); returns NULL or the error line */
static const char *parse_meta(struct kvcache_cmd *c, const struct tok *t, int nt)
{
    struct kvcache_meta *m = &c->meta;
    bool ma = c->op == KVCACHE_OP_MA;
    const char *allowed = meta_allowed(c->op);
    m->ttl_T = -1;
    m->vivify_N = -1;
    m->recache_R = -1;
    m->initial_J = 0;
    m->delta_D = 1;
    m->mode_M = 0;
    if (nt > 0) {
        m->flags = t[0].s;
        m->flags_len = (size_t)(t[nt - 1].s + t[nt - 1].n - t[0].s);
    }
    for (int i = 0; i < nt; i++) {
        char f = t[i].s[0];
        const char *v = t[i].s + 1;
        size_t vn = t[i].n - 1;
        if (!((f >= 'a' && f <= 'z') || (f >= 'A' && f <= 'Z')) || !strchr(allowed, f))
            return ma ? E_MA_FLAG : E_FLAG;
        if (m->has & KVCACHE_MF(f))
            return ma ? E_MA_FLAG : E_DUPFLAG;
        m->has |= KVCACHE_MF(f);
        bool ok = true;
        int32_t i32;
        switch (f) {
        case 'T':
            ok = num_i32(v, vn, &i32);
            m->ttl_T = i32;
            break;
        case 'N':
            ok = num_i32(v, vn, &i32);
            m->vivify_N = i32;
            break;
        case 'R':
            ok = num_i32(v, vn, &i32);
            m->recache_R = i32;
            break;
        case 'J':
            ok = num_u64(v, vn, (uint64_t *)&m->initial_J);
            break;
        case 'C':
            ok = num_u64(v, vn, &m->cas_C);
            break;
        case 'E':
            ok = num_u64(v, vn, &m->cas_E);
            break;
        case 'D':
            ok = num_u64(v, vn, &m->delta_D);
            break;
        case 'F':
            ok = num_u32(v, vn, &m->flags_F);
            break;
        case 'M':
            ok = vn == 1;
            m->mode_M = vn ? v[0] : 0;
            break;
        case 'O':
            if (vn > KVCACHE_OPAQUE_MAX)
                return E_OPAQUE;
            m->opaque = v;
            m->opaque_len = (uint8_t)vn;
            break;
        default:
            break;
        }
        if (!ok)
            return ma ? E_MA_FLAG : E_TOKEN;
    }
    if (m->has & KVCACHE_MF('q'))
        c->noreply = false; /* q is handled per reply code */
    return NULL;
}

/* the key token of a meta command, decoded when b is given */
static const char *meta_key(struct kvcache_cmd *c, const struct tok *k)
{
    if (c->meta.has & KVCACHE_MF('b')) {
        long n = b64_decode(k->s, k->n, c->keybuf, KVCACHE_KEY_MAX);
        if (n <= 0)
            return E_KEYDEC;
        c->key = c->keybuf;
        c->nkey = (size_t)n;
    } else {
        c->key = k->s;
        c->nkey = k->n;
    }
    return NULL;
}

static int parse_meta_cmd(struct kvcache_cmd *c, const char *buf, size_t len, size_t line_total,
                          const struct tok *t, int nt, uint32_t item_max, size_t *need)
{
    if (c->op == KVCACHE_OP_MN)
        return 1;
    if (nt < 2)
        return fail(c, "ERROR");
    if (t[1].n > KVCACHE_KEY_MAX)
        return fail(c, E_FORMAT);
    if (c->op == KVCACHE_OP_ME) {
        c->key = t[1].s;
        c->nkey = t[1].n;
        return 1;
    }
    int first = 2;
    int32_t vlen = 0;
    if (c->op == KVCACHE_OP_MS) {
        if (nt < 3 || !num_i32(t[2].s, t[2].n, &vlen) || vlen < 0 || vlen > INT32_MAX - 2)
            return fail(c, E_FORMAT);
        first = 3;
    }
    const char *err = parse_meta(c, t + first, nt - first);
    if (!err)
        err = meta_key(c, &t[1]);
    if (!err && c->op == KVCACHE_OP_MS && c->meta.mode_M &&
        !strchr("EAPRS", c->meta.mode_M))
        err = E_MS_MODE;
    if (!err && c->op == KVCACHE_OP_MA && c->meta.mode_M && !strchr("IiDd+-", c->meta.mode_M))
        err = E_MA_MODE;
    if (c->op != KVCACHE_OP_MS) {
        if (err)
            return fail(c, err);
        return 1;
    }
    int r = take_data(c, buf, len, line_total, vlen, item_max, need);
    if (r > 0 && err && c->op != KVCACHE_OP_ERROR) {
        c->too_large = false; /* the flag error wins; the data is dropped anyway */
        return fail(c, err);
    }
    return r;
}

KV_HOT int kvcache_proto_parse(const char *buf, size_t len, uint32_t item_max, struct kvcache_cmd *c,
                        size_t *need)
{
    *need = 0;
    const char *nl = memchr(buf, '\n', len < KVCACHE_GET_LINE_MAX ? len : KVCACHE_GET_LINE_MAX);
    if (!nl) {
        if (len > KVCACHE_LINE_MAX && (!starts_get(buf, len) || len >= KVCACHE_GET_LINE_MAX))
            return -1;
        return 0;
    }
    size_t line_total = (size_t)(nl - buf) + 1;
    size_t n = line_total - 1;
    if (n > KVCACHE_LINE_MAX && !starts_get(buf, n))
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    memset(c, 0, offsetof(struct kvcache_cmd, keybuf));
    c->total = line_total;
    struct tok t[MAX_TOKENS];
    int nt = tokenize(buf, n, t, MAX_TOKENS);
    if (nt == 0)
        return fail(c, "ERROR");
    const struct tok *cmd = &t[0];
    bool nr = nt > 1 && tok_is(&t[nt - 1], "noreply");

    if (tok_is(cmd, "get") || tok_is(cmd, "gets")) {
        c->op = cmd->n == 3 ? KVCACHE_OP_GET : KVCACHE_OP_GETS;
        return parse_get(c, buf, n, t, nt, 1);
    }
    if (tok_is(cmd, "gat") || tok_is(cmd, "gats")) {
        c->op = cmd->n == 3 ? KVCACHE_OP_GAT : KVCACHE_OP_GATS;
        if (nt < 2)
            return fail(c, "ERROR");
        int32_t e;
        if (!num_i32(t[1].s, t[1].n, &e))
            return fail(c, E_EXPTIME);
        c->exptime = e;
        if (nt == 2)
            return 1; /* no keys: memcached answers END */
        return parse_get(c, buf, n, t, nt, 2);
    }
    static const struct {
        const char *name;
        enum kvcache_op op;
    } stores[] = {
        {"set", KVCACHE_OP_SET},         {"add", KVCACHE_OP_ADD},
        {"replace", KVCACHE_OP_REPLACE}, {"append", KVCACHE_OP_APPEND},
        {"prepend", KVCACHE_OP_PREPEND}, {"cas", KVCACHE_OP_CAS},
    };
    for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
        if (!tok_is(cmd, stores[i].name))
            continue;
        c->op = stores[i].op;
        int base = c->op == KVCACHE_OP_CAS ? 6 : 5;
        if (nt != base && nt != base + 1)
            return fail(c, "ERROR");
        c->noreply = nr;
        c->key = t[1].s;
        c->nkey = t[1].n;
        if (c->nkey > KVCACHE_KEY_MAX)
            return fail(c, E_FORMAT);
        int32_t e, vlen;
        if (!num_u32(t[2].s, t[2].n, &c->flags) || !num_i32(t[3].s, t[3].n, &e) ||
            !num_i32(t[4].s, t[4].n, &vlen))
            return fail(c, E_FORMAT);
        if (c->op == KVCACHE_OP_CAS && !num_u64(t[5].s, t[5].n, &c->cas))
            return fail(c, E_FORMAT);
        c->exptime = e;
        if (vlen < 0 || vlen > INT32_MAX - 2)
            return fail(c, E_FORMAT);
        return take_data(c, buf, len, line_total, vlen, item_max, need);
    }
    if (tok_is(cmd, "delete")) {
        c->op = KVCACHE_OP_DELETE;
        if (nt < 2 || nt > 4)
            return fail(c, "ERROR");
        c->noreply = nr;
        c->key = t[1].s;
        c->nkey = t[1].n;
        if (nt > 2) {
            bool zero = tok_is(&t[2], "0");
            if (!((nt == 3 && (zero || nr)) || (nt == 4 && zero && nr)))
                return fail(c, E_DELETE);
        }
        if (c->nkey > KVCACHE_KEY_MAX)
            return fail(c, E_FORMAT);
        return 1;
    }
    if (tok_is(cmd, "incr") || tok_is(cmd, "decr")) {
        c->op = cmd->s[0] == 'i' ? KVCACHE_OP_INCR : KVCACHE_OP_DECR;
        if (nt != 3 && nt != 4)
            return fail(c, "ERROR");
        c->noreply = nr;
        c->key = t[1].s;
        c->nkey = t[1].n;
        if (c->nkey > KVCACHE_KEY_MAX)
            return fail(c, E_FORMAT);
        if (!num_u64(t[2].s, t[2].n, &c->delta))
            return fail(c, E_DELTA);
        return 1;
    }
    if (tok_is(cmd, "touch")) {
        c->op = KVCACHE_OP_TOUCH;
        if (nt != 3 && nt != 4)
            return fail(c, "ERROR");
        c->noreply = nr;
        c->key = t[1].s;
        c->nkey = t[1].n;
        if (c->nkey > KVCACHE_KEY_MAX)
            return fail(c, E_FORMAT);
        int32_t e;
        if (!num_i32(t[2].s, t[2].n, &e))
            return fail(c, E_EXPTIME);
        c->exptime = e;
        return 1;
    }
    if (tok_is(cmd, "flush_all")) {
        c->op = KVCACHE_OP_FLUSH_ALL;
        if (nt > 3)
            return fail(c, "ERROR");
        c->noreply = nr;
        if (nt == (nr ? 3 : 2)) {
            int32_t e;
            if (!num_i32(t[1].s, t[1].n, &e))
                return fail(c, E_EXPTIME);
            c->exptime = e;
        }
        return 1;
    }
    if (tok_is(cmd, "stats")) {
        c->op = KVCACHE_OP_STATS;
        if (nt > 1) {
            c->args = t[1].s;
            c->args_len = (size_t)(buf + n - t[1].s);
        }
        return 1;
    }
    if (tok_is(cmd, "version")) {
        c->op = KVCACHE_OP_VERSION;
        return 1;
    }
    if (tok_is(cmd, "quit")) {
        c->op = KVCACHE_OP_QUIT;
        c->close = true;
        return 1;
    }
    if (tok_is(cmd, "verbosity")) {
        c->op = KVCACHE_OP_VERBOSITY;
        if (nt < 2)
            return fail(c, "ERROR");
        c->noreply = nr;
        uint32_t lvl;
        if (!num_u32(t[1].s, t[1].n, &lvl))
            return fail(c, E_FORMAT);
        c->flags = lvl;
        return 1;
    }
    if (cmd->n == 2 && cmd->s[0] == 'm') {
        switch (cmd->s[1]) {
        case 'g':
            c->op = KVCACHE_OP_MG;
            break;
        case 's':
            c->op = KVCACHE_OP_MS;
            break;
        case 'd':
            c->op = KVCACHE_OP_MD;
            break;
        case 'a':
            c->op = KVCACHE_OP_MA;
            break;
        case 'n':
            c->op = KVCACHE_OP_MN;
            break;
        case 'e':
            c->op = KVCACHE_OP_ME;
            break;
        default:
            return fail(c, "ERROR");
        }
        return parse_meta_cmd(c, buf, len, line_total, t, nt, item_max, need);
    }
    return fail(c, "ERROR");
}

/* ---- a parsed command for its owner ------------------------------------------ */

KV_HOT bool kvcache_proto_pack(const struct kvcache_cmd *c, const char *raw,
                               struct kvcache_cmd_wire *w)
{
    if (c->op < KVCACHE_OP_GET || c->op > KVCACHE_OP_TOUCH || c->total > UINT32_MAX)
        return false;
    bool list = c->op <= KVCACHE_OP_GATS && !c->key; /* a get of several keys */
    const char *k = list ? c->keys : c->key;
    size_t nk = list ? c->keys_len : c->nkey;
    /* the key must be in the text (not a decoded copy in the command) */
    if (!k || k < raw || (size_t)(k - raw) + nk > c->total)
        return false;
    if (c->data && (c->data < raw || (size_t)(c->data - raw) + c->nbytes > c->total))
        return false;
    w->hash = c->hash;
    w->exptime = c->exptime;
    w->cas = c->cas;
    w->delta = c->delta;
    w->flags = c->flags;
    w->key = (uint32_t)(k - raw);
    w->nkey = (uint32_t)nk;
    w->data = c->data ? (uint32_t)(c->data - raw) : 0;
    w->nbytes = (uint32_t)c->nbytes;
    w->op = (uint8_t)c->op;
    w->noreply = c->noreply;
    w->too_large = c->too_large;
    w->hashed = c->hashed;
    w->single = !list;
    return true;
}

KV_HOT bool kvcache_proto_unpack(const struct kvcache_cmd_wire *w, const char *raw, size_t len,
                                 struct kvcache_cmd *c)
{
    if (w->op < KVCACHE_OP_GET || w->op > KVCACHE_OP_TOUCH || (size_t)w->key + w->nkey > len ||
        (size_t)w->data + w->nbytes > len)
        return false;
    memset(c, 0, offsetof(struct kvcache_cmd, keybuf));
    c->op = (enum kvcache_op)w->op;
    c->total = len;
    c->noreply = w->noreply;
    c->too_large = w->too_large;
    if (c->op <= KVCACHE_OP_GATS && !w->single) {
        c->keys = raw + w->key;
        c->keys_len = w->nkey;
    } else {
        c->key = raw + w->key;
        c->nkey = w->nkey;
        if (c->op <= KVCACHE_OP_GATS) { /* a get's only key is its list too */
            c->keys = c->key;
            c->keys_len = c->nkey;
        }
    }
    c->flags = w->flags;
    c->exptime = w->exptime;
    c->cas = w->cas;
    c->delta = w->delta;
    if (c->op >= KVCACHE_OP_SET && c->op <= KVCACHE_OP_CAS && !c->too_large) {
        c->data = raw + w->data;
        c->nbytes = w->nbytes;
    }
    c->hash = w->hash;
    c->hashed = w->hashed;
    return true;
}

/* ---- executor ----------------------------------------------------------------- */

/* writes a hit's "VALUE key flags bytes [cas]\r\n" line at p (room for
 * 6 + nkey + 3 * 22 + 2 bytes); returns its end */
static KV_HOT char *value_line(char *p, const struct kvcache_cmd *cmd, const char *key,
                               size_t nkey, const struct kvcache_view *v)
{
    bool with_cas = cmd->op == KVCACHE_OP_GETS || cmd->op == KVCACHE_OP_GATS;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key, nkey);
    p += nkey;
    *p++ = ' ';
    p = fmt_u64(p, v->flags);
    *p++ = ' ';
    p = fmt_u64(p, v->nbytes);
    if (with_cas) {
        *p++ = ' ';
        p = fmt_u64(p, v->cas);
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

KV_HOT bool kvcache_proto_get_head(struct kvcache_store *st, const struct kvcache_cmd *cmd,
                                   char *head, size_t *head_len, struct kvcache_view *v)
{
    bool touch = cmd->op == KVCACHE_OP_GAT || cmd->op == KVCACHE_OP_GATS;
    uint64_t h = cmd->hashed ? cmd->hash : kvcache_key_hash(cmd->key, cmd->nkey);
    if (!kvcache_store_get_hashed(st, cmd->key, cmd->nkey, h, true, touch, cmd->exptime, true, v))
        return false;
    *head_len = (size_t)(value_line(head, cmd, cmd->key, cmd->nkey, v) - head);
    return true;
}

/* the get family for one key of hash h */
static KV_HOT void get_one(struct kvcache_store *st, const struct kvcache_cmd *cmd,
                           const char *key, size_t nkey, uint64_t h, struct kvcache_out *out)
{
    bool touch = cmd->op == KVCACHE_OP_GAT || cmd->op == KVCACHE_OP_GATS;
    struct kvcache_view v;
    if (!kvcache_store_get_hashed(st, key, nkey, h, true, touch, cmd->exptime, true, &v))
        return;
    if (!out_reserve(out, 6 + nkey + 3 * 22 + 2 + v.nbytes + 2))
        return;
    char *p = value_line(out->buf + out->len, cmd, key, nkey, &v);
    memcpy(p, v.value, v.nbytes + 2);
    p += v.nbytes + 2;
    out->len = (size_t)(p - out->buf);
}

KV_HOT void kvcache_proto_get_one(struct kvcache_store *st, const struct kvcache_cmd *cmd,
                                  const char *key, size_t nkey, struct kvcache_out *out)
{
    get_one(st, cmd, key, nkey, kvcache_key_hash(key, nkey), out);
}

/* the hash of a single-key command's key: the one the connection computed
 * to choose its owner, when it did */
static inline uint64_t key_hash(const struct kvcache_cmd *c)
{
    return c->hashed ? c->hash : kvcache_key_hash(c->key, c->nkey);
}

static KV_HOT void reply(const struct kvcache_cmd *c, struct kvcache_out *out, const char *s)
{
    if (!c->noreply)
        out_line(out, s);
}

static KV_HOT const char *store_reply(enum kvcache_result r)
{
    switch (r) {
    case KVCACHE_STORED:
        return "STORED";
    case KVCACHE_NOT_STORED:
        return "NOT_STORED";
    case KVCACHE_EXISTS:
        return "EXISTS";
    case KVCACHE_NOT_FOUND:
        return "NOT_FOUND";
    case KVCACHE_DELETED:
        return "DELETED";
    case KVCACHE_TOUCHED:
        return "TOUCHED";
    case KVCACHE_TOO_LARGE:
        return E_TOO_LARGE;
    case KVCACHE_NON_NUMERIC:
        return E_NONNUM;
    case KVCACHE_NO_MEMORY:
    default:
        return E_NO_MEMORY;
    }
}

static enum kvcache_set_mode set_mode(enum kvcache_op op)
{
    switch (op) {
    case KVCACHE_OP_ADD:
        return KVCACHE_ADD;
    case KVCACHE_OP_REPLACE:
        return KVCACHE_REPLACE;
    case KVCACHE_OP_APPEND:
        return KVCACHE_APPEND;
    case KVCACHE_OP_PREPEND:
        return KVCACHE_PREPEND;
    case KVCACHE_OP_CAS:
        return KVCACHE_CAS;
    default:
        return KVCACHE_SET;
    }
}

/* return flags of a meta reply, in the order the request gave them */
static void meta_ret(struct kvcache_out *out, const struct kvcache_cmd *c,
                     const struct kvcache_view *v, const char *which)
{
    const struct kvcache_meta *m = &c->meta;
    size_t i = 0;
    char num[48];
    while (i < m->flags_len) {
        while (i < m->flags_len && m->flags[i] == ' ')
            i++;
        if (i >= m->flags_len)
            break;
        char f = m->flags[i];
        while (i < m->flags_len && m->flags[i] != ' ')
            i++;
        if (!strchr(which, f))
            continue;
        char *p = num;
        *p++ = ' ';
        *p++ = f;
        switch (f) {
        case 'c':
            p = fmt_u64(p, v->cas);
            break;
        case 'f':
            p = fmt_u64(p, v->flags);
            break;
        case 's':
            p = fmt_u64(p, v->nbytes);
            break;
        case 't':
            p = fmt_i64(p, v->ttl);
            break;
        case 'h':
            *p++ = v->fetched ? '1' : '0';
            break;
        case 'l':
            p = fmt_i64(p, v->idle);
            break;
        case 'k':
            kvcache_out_put(out, num, 2);
            if (m->has & KVCACHE_MF('b')) {
                b64_put(out, c->key, c->nkey);
                kvcache_out_put(out, " b", 2);
            } else {
                kvcache_out_put(out, c->key, c->nkey);
            }
            continue;
        case 'O':
            kvcache_out_put(out, num, 2);
            kvcache_out_put(out, m->opaque, m->opaque_len);
            continue;
        default:
            break;
        }
        kvcache_out_put(out, num, (size_t)(p - num));
    }
}

/* "EN", "NF", "NS", "EX", "HD" and friends with the k/O flags */
static void meta_code(struct kvcache_out *out, const struct kvcache_cmd *c, const char *code)
{
    kvcache_out_str(out, code);
    struct kvcache_view v = {0};
    meta_ret(out, c, &v, "kO");
    kvcache_out_put(out, "\r\n", 2);
}

static bool q(const struct kvcache_cmd *c)
{
    return (c->meta.has & KVCACHE_MF('q')) != 0;
}

static void exec_mg(struct kvcache_store *st, const struct kvcache_cmd *c, struct kvcache_out *out)
{
    const struct kvcache_meta *m = &c->meta;
    bool touch = (m->has & KVCACHE_MF('T')) != 0;
    bool bump = !(m->has & KVCACHE_MF('u'));
    struct kvcache_view v;
    bool won = false;
    if (!kvcache_store_get(st, c->key, c->nkey, true, touch, m->ttl_T, bump, &v)) {
        if (!(m->has & KVCACHE_MF('N'))) {
            if (!q(c))
                out_line(out, "EN");
            return;
        }
        /* vivify: an empty item; this client wins the right to fill it */
        enum kvcache_result r = kvcache_store_set(st, KVCACHE_ADD, c->key, c->nkey, 0,
                                                  m->vivify_N, "", 0, 0, 0, NULL);
        if (r != KVCACHE_STORED || !kvcache_store_get(st, c->key, c->nkey, false, false, 0,
                                                      false, &v)) {
            out_line(out, store_reply(r == KVCACHE_STORED ? KVCACHE_NO_MEMORY : r));
            return;
        }
        kvcache_store_mark_win(st, c->key, c->nkey);
        won = true;
    }
    bool z = false, x = v.stale, w = won;
    if (!won) {
        z = v.win_sent;
        if (!v.win_sent && (v.stale || (m->recache_R >= 0 && v.ttl != -1 && v.ttl < m->recache_R))) {
            w = true;
            kvcache_store_mark_win(st, c->key, c->nkey);
        }
    }
    bool val = (m->has & KVCACHE_MF('v')) != 0;
    if (val) {
        char num[32];
        char *p = fmt_u64(num, v.nbytes);
        kvcache_out_put(out, "VA ", 3);
        kvcache_out_put(out, num, (size_t)(p - num));
    } else {
        kvcache_out_put(out, "HD", 2);
    }
    meta_ret(out, c, &v, "cfhklOst");
    if (z)
        kvcache_out_put(out, " Z", 2);
    if (x)
        kvcache_out_put(out, " X", 2);
    if (w)
        kvcache_out_put(out, " W", 2);
    kvcache_out_put(out, "\r\n", 2);
    if (val)
        kvcache_out_put(out, v.value, v.nbytes + 2);
}

static void exec_ms(struct kvcache_store *st, const struct kvcache_cmd *c, struct kvcache_out *out)
{
    const struct kvcache_meta *m = &c->meta;
    enum kvcache_set_mode mode = KVCACHE_SET;
    switch (m->mode_M) {
    case 'E':
        mode = KVCACHE_ADD;
        break;
    case 'A':
        mode = KVCACHE_APPEND;
        break;
    case 'P':
        mode = KVCACHE_PREPEND;
        break;
    case 'R':
        mode = KVCACHE_REPLACE;
        break;
    default:
        break;
    }
    int64_t ttl = (m->has & KVCACHE_MF('T')) ? m->ttl_T : 0;
    if (c->too_large) {
        if (mode == KVCACHE_SET)
            kvcache_store_delete(st, c->key, c->nkey, 0);
        out_line(out, E_TOO_LARGE);
        return;
    }
    if ((mode == KVCACHE_APPEND || mode == KVCACHE_PREPEND) && (m->has & KVCACHE_MF('N'))) {
        struct kvcache_view v;
        if (!kvcache_store_get(st, c->key, c->nkey, false, false, 0, false, &v))
            kvcache_store_set(st, KVCACHE_ADD, c->key, c->nkey, m->flags_F, m->vivify_N, "", 0,
                              0, 0, NULL);
    }
    uint64_t cas = 0;
    enum kvcache_result r = kvcache_store_set(st, mode, c->key, c->nkey, m->flags_F, ttl, c->data,
                                              c->nbytes, m->cas_C, m->cas_E, &cas);
    const char *code;
    switch (r) {
    case KVCACHE_STORED:
        if (q(c))
            return;
        code = "HD";
        break;
    case KVCACHE_NOT_STORED:
        code = "NS";
        break;
    case KVCACHE_EXISTS:
        code = "EX";
        break;
    case KVCACHE_NOT_FOUND:
        code = "NF";
        break;
    default:
        out_line(out, store_reply(r));
        return;
    }
    kvcache_out_str(out, code);
    struct kvcache_view v = {.cas = cas, .nbytes = (uint32_t)c->nbytes, .flags = m->flags_F,
                             .ttl = -1};
    meta_ret(out, c, &v, r == KVCACHE_STORED ? "ckO" : "kO");
    kvcache_out_put(out, "\r\n", 2);
}

static void exec_md(struct kvcache_store *st, const struct kvcache_cmd *c, struct kvcache_out *out)
{
    const struct kvcache_meta *m = &c->meta;
    enum kvcache_result r;
    if (m->has & KVCACHE_MF('I')) {
        r = kvcache_store_invalidate(st, c->key, c->nkey, m->cas_C, m->ttl_T);
    } else if (m->has & KVCACHE_MF('x')) {
        struct kvcache_view v;
        if (!kvcache_store_get(st, c->key, c->nkey, false, false, 0, false, &v))
            r = KVCACHE_NOT_FOUND;
        else if (m->cas_C && v.cas != m->cas_C)
            r = KVCACHE_EXISTS;
        else {
            int64_t ttl = v.ttl < 0 ? 0 : (v.ttl == 0 ? -1 : v.ttl);
            kvcache_store_set(st, KVCACHE_SET, c->key, c->nkey, 0, ttl, "", 0, 0, 0, NULL);
            r = KVCACHE_DELETED;
        }
    } else {
        r = kvcache_store_delete(st, c->key, c->nkey, m->cas_C);
    }
    if (r == KVCACHE_DELETED) {
        if (!q(c))
            meta_code(out, c, "HD");
    } else {
        meta_code(out, c, r == KVCACHE_EXISTS ? "EX" : "NF");
    }
}

static void exec_ma(struct kvcache_store *st, const struct kvcache_cmd *c, struct kvcache_out *out)
{
    const struct kvcache_meta *m = &c->meta;
    bool incr = !(m->mode_M == 'D' || m->mode_M == 'd' || m->mode_M == '-');
    uint64_t value = 0, cas = 0;
    enum kvcache_result r = kvcache_store_delta(st, c->key, c->nkey, incr, m->delta_D, m->cas_C,
                                                &value, &cas);
    if (r == KVCACHE_NOT_FOUND && (m->has & KVCACHE_MF('N'))) {
        char num[24];
        char *p = fmt_u64(num, (uint64_t)m->initial_J);
        r = kvcache_store_set(st, KVCACHE_ADD, c->key, c->nkey, 0, m->vivify_N, num,
                              (size_t)(p - num), 0, m->cas_E, &cas);
        value = (uint64_t)m->initial_J;
        if (r == KVCACHE_NOT_STORED)
            r = KVCACHE_EXISTS;
    }
    struct kvcache_view v = {.cas = cas, .ttl = -1};
    switch (r) {
    case KVCACHE_STORED: {
        if (m->has & KVCACHE_MF('T'))
            kvcache_store_touch(st, c->key, c->nkey, m->ttl_T);
        struct kvcache_view cur;
        if (kvcache_store_get(st, c->key, c->nkey, false, false, 0, false, &cur))
            v.ttl = cur.ttl;
        char num[24];
        char *p = fmt_u64(num, value);
        if (m->has & KVCACHE_MF('v')) {
            char len[24];
            char *lp = fmt_u64(len, (uint64_t)(p - num));
            kvcache_out_put(out, "VA ", 3);
            kvcache_out_put(out, len, (size_t)(lp - len));
            meta_ret(out, c, &v, "ctkO");
            kvcache_out_put(out, "\r\n", 2);
            kvcache_out_put(out, num, (size_t)(p - num));
            kvcache_out_put(out, "\r\n", 2);
        } else if (!q(c)) {
            kvcache_out_put(out, "HD", 2);
            meta_ret(out, c, &v, "ctkO");
            kvcache_out_put(out, "\r\n", 2);
        }
        return;
    }
    case KVCACHE_NOT_FOUND:
        meta_code(out, c, "NF");
        return;
    case KVCACHE_EXISTS:
        meta_code(out, c, "EX");
        return;
    case KVCACHE_NOT_STORED:
        meta_code(out, c, "NS");
        return;
    default:
        out_line(out, store_reply(r));
        return;
    }
}

static KV_COLD void exec_me(struct kvcache_store *st, const struct kvcache_cmd *c, struct kvcache_out *out)
{
    struct kvcache_view v;
    if (!kvcache_store_get(st, c->key, c->nkey, false, false, 0, false, &v)) {
        out_line(out, "EN");
        return;
    }
    char line[KVCACHE_KEY_MAX + 160];
    int n = snprintf(line, sizeof(line), "ME %.*s exp=%" PRId64 " la=%" PRId64 " cas=%" PRIu64
                     " fetch=%s cls=%u size=%u\r\n",
                     (int)c->nkey, c->key, v.ttl, v.idle, v.cas, v.fetched ? "yes" : "no", v.cls,
                     v.total);
    kvcache_out_put(out, line, (size_t)n);
}

KV_HOT void kvcache_proto_exec(struct kvcache_store *st, const struct kvcache_cmd *c,
                        struct kvcache_out *out)
{
    switch (c->op) {
    case KVCACHE_OP_ERROR:
        reply(c, out, c->error);
        return;
    case KVCACHE_OP_GET:
    case KVCACHE_OP_GETS:
    case KVCACHE_OP_GAT:
    case KVCACHE_OP_GATS: {
        if (c->key) { /* the only key */
            get_one(st, c, c->key, c->nkey, key_hash(c), out);
        } else {
            size_t pos = 0;
            const char *k;
            size_t nk;
            bool first = c->hashed; /* the hash of the only key */
            while (kvcache_proto_next_key(c, &pos, &k, &nk)) {
                get_one(st, c, k, nk, first ? c->hash : kvcache_key_hash(k, nk), out);
                first = false;
            }
        }
        kvcache_out_put(out, "END\r\n", 5);
        return;
    }
    case KVCACHE_OP_SET:
    case KVCACHE_OP_ADD:
    case KVCACHE_OP_REPLACE:
    case KVCACHE_OP_APPEND:
    case KVCACHE_OP_PREPEND:
    case KVCACHE_OP_CAS: {
        if (c->too_large) {
            if (c->op == KVCACHE_OP_SET)
                kvcache_store_delete_hashed(st, c->key, c->nkey, key_hash(c), 0);
            reply(c, out, E_TOO_LARGE);
            return;
        }
        enum kvcache_result r = kvcache_store_set_hashed(st, set_mode(c->op), c->key, c->nkey,
                                                         key_hash(c), c->flags, c->exptime,
                                                         c->data, c->nbytes, c->cas, 0, NULL);
        reply(c, out, store_reply(r));
        return;
    }
    case KVCACHE_OP_DELETE:
        reply(c, out,
              store_reply(kvcache_store_delete_hashed(st, c->key, c->nkey, key_hash(c), 0)));
        return;
    case KVCACHE_OP_INCR:
    case KVCACHE_OP_DECR: {
        uint64_t v;
        enum kvcache_result r = kvcache_store_delta_hashed(st, c->key, c->nkey, key_hash(c),
                                                           c->op == KVCACHE_OP_INCR, c->delta, 0,
                                                           &v, NULL);
        if (r == KVCACHE_STORED) {
            char num[24];
            char *p = fmt_u64(num, v);
            *p = '\0';
            reply(c, out, num);
        } else {
            reply(c, out, store_reply(r));
        }
        return;
    }
    case KVCACHE_OP_TOUCH:
        reply(c, out, store_reply(kvcache_store_touch_hashed(st, c->key, c->nkey, key_hash(c),
                                                             c->exptime)));
        return;
    case KVCACHE_OP_FLUSH_ALL:
        kvcache_store_flush(st, c->exptime);
        reply(c, out, "OK");
        return;
    case KVCACHE_OP_VERSION:
        kvcache_out_str(out, "VERSION ");
        out_line(out, kvcache_proto_version());
        return;
    case KVCACHE_OP_VERBOSITY:
        reply(c, out, "OK");
        return;
    case KVCACHE_OP_QUIT:
        return;
    case KVCACHE_OP_MN:
        out_line(out, "MN");
        return;
    case KVCACHE_OP_MG:
        exec_mg(st, c, out);
        return;
    case KVCACHE_OP_MS:
        exec_ms(st, c, out);
        return;
    case KVCACHE_OP_MD:
        exec_md(st, c, out);
        return;
    case KVCACHE_OP_MA:
        exec_ma(st, c, out);
        return;
    case KVCACHE_OP_ME:
        exec_me(st, c, out);
        return;
    case KVCACHE_OP_STATS:
        out_line(out, "ERROR"); /* the server answers stats itself */
        return;
    }
}

/* ---- stats ------------------------------------------------------------------- */

static void stat_u(struct kvcache_out *o, const char *name, uint64_t v)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "STAT %s %" PRIu64 "\r\n", name, v);
    kvcache_out_put(o, line, (size_t)n);
}

static void stat_s(struct kvcache_out *o, const char *name, const char *v)
{
    char line[192];
    int n = snprintf(line, sizeof(line), "STAT %s %s\r\n", name, v);
    kvcache_out_put(o, line, (size_t)n);
}

static bool args_is(const char *a, size_t n, const char *w)
{
    size_t wn = strlen(w);
    while (n > 0 && a[n - 1] == ' ')
        n--;
    return n == wn && memcmp(a, w, wn) == 0;
}

bool kvcache_proto_stats(const char *args, size_t args_len, const struct kvcache_settings *set,
                         const struct kvcache_counters *c, const struct kvcache_conn_stats *cs,
                         const struct kvcache_class_stats *classes, unsigned nclasses,
                         uint64_t uptime, uint64_t now_unix, struct kvcache_out *o)
{
    char name[64];
    if (args_len == 0) {
        stat_u(o, "pid", (uint64_t)getpid());
        stat_u(o, "uptime", uptime);
        stat_u(o, "time", now_unix);
        stat_s(o, "version", kvcache_proto_version());
        stat_u(o, "pointer_size", 8 * sizeof(void *));
        stat_u(o, "max_connections", set->maxconns);
        stat_u(o, "curr_connections", cs->curr_connections);
        stat_u(o, "total_connections", cs->total_connections);
        stat_u(o, "rejected_connections", cs->rejected_connections);
        stat_u(o, "cmd_get", c->cmd_get);
        stat_u(o, "cmd_set", c->cmd_set);
        stat_u(o, "cmd_flush", c->cmd_flush);
        stat_u(o, "cmd_touch", c->cmd_touch);
        stat_u(o, "cmd_meta", cs->cmd_meta);
        stat_u(o, "get_hits", c->get_hits);
        stat_u(o, "get_misses", c->get_misses);
        stat_u(o, "get_expired", c->get_expired);
        stat_u(o, "get_flushed", c->get_flushed);
        stat_u(o, "delete_misses", c->delete_misses);
        stat_u(o, "delete_hits", c->delete_hits);
        stat_u(o, "incr_misses", c->incr_misses);
        stat_u(o, "incr_hits", c->incr_hits);
        stat_u(o, "decr_misses", c->decr_misses);
        stat_u(o, "decr_hits", c->decr_hits);
        stat_u(o, "cas_misses", c->cas_misses);
        stat_u(o, "cas_hits", c->cas_hits);
        stat_u(o, "cas_badval", c->cas_badval);
        stat_u(o, "touch_hits", c->touch_hits);
        stat_u(o, "touch_misses", c->touch_misses);
        stat_u(o, "store_too_large", c->store_too_large);
        stat_u(o, "store_no_memory", c->store_no_memory);
        stat_u(o, "bytes_read", cs->bytes_read);
        stat_u(o, "bytes_written", cs->bytes_written);
        stat_u(o, "limit_maxbytes", set->maxbytes);
        stat_u(o, "threads", set->nshards);
        stat_u(o, "hash_bytes", c->hash_bytes);
        stat_u(o, "bytes", c->bytes);
        stat_u(o, "curr_items", c->curr_items);
        stat_u(o, "total_items", c->total_items);
        stat_u(o, "expired_unfetched", c->expired_unfetched);
        stat_u(o, "evicted_unfetched", c->evicted_unfetched);
        stat_u(o, "evictions", c->evictions);
        stat_u(o, "reclaimed", c->reclaimed);
        stat_u(o, "total_malloced", c->total_malloced);
    } else if (args_is(args, args_len, "settings")) {
        stat_u(o, "maxbytes", set->maxbytes);
        stat_u(o, "maxconns", set->maxconns);
        stat_u(o, "tcpport", set->port);
        stat_s(o, "inter", set->inter ? set->inter : "NULL");
        stat_u(o, "verbosity", set->verbosity);
        stat_s(o, "evictions", "on");
        char f[32];
        snprintf(f, sizeof(f), "%.2f", set->factor);
        stat_s(o, "growth_factor", f);
        stat_u(o, "chunk_size", set->chunk_size);
        stat_u(o, "num_threads", set->nshards);
        stat_s(o, "cas_enabled", "yes");
        stat_u(o, "item_size_max", set->item_size_max);
        stat_u(o, "slab_chunk_max", set->item_size_max);
        stat_s(o, "flush_enabled", "yes");
        stat_u(o, "idle_timeout", set->idle_timeout);
        stat_u(o, "client_flags_size", 4);
        stat_s(o, "hash_algorithm", "hydra64");
        stat_s(o, "slab_reassign", "no");
        stat_s(o, "lru_segmented", "no");
    } else if (args_is(args, args_len, "slabs")) {
        unsigned active = 0;
        for (unsigned i = 1; i <= nclasses; i++) {
            const struct kvcache_class_stats *s = &classes[i];
            if (s->total_pages == 0)
                continue;
            active++;
#define SLAB(field)                                                                              \
    do {                                                                                         \
        snprintf(name, sizeof(name), "%u:" #field, i);                                           \
        stat_u(o, name, s->field);                                                               \
    } while (0)
            SLAB(chunk_size);
            SLAB(chunks_per_page);
            SLAB(total_pages);
            SLAB(total_chunks);
            SLAB(used_chunks);
            SLAB(free_chunks);
            SLAB(free_chunks_end);
            SLAB(get_hits);
            SLAB(cmd_set);
            SLAB(delete_hits);
            SLAB(incr_hits);
            SLAB(decr_hits);
            SLAB(cas_hits);
            SLAB(cas_badval);
            SLAB(touch_hits);
#undef SLAB
        }
        stat_u(o, "active_slabs", active);
        stat_u(o, "total_malloced", c->total_malloced);
    } else if (args_is(args, args_len, "items")) {
        for (unsigned i = 1; i <= nclasses; i++) {
            const struct kvcache_class_stats *s = &classes[i];
            if (s->number == 0 && s->evicted == 0 && s->total_pages == 0)
                continue;
#define ITEM(field)                                                                              \
    do {                                                                                         \
        snprintf(name, sizeof(name), "items:%u:" #field, i);                                     \
        stat_u(o, name, s->field);                                                               \
    } while (0)
            ITEM(number);
            ITEM(age);
            ITEM(mem_requested);
            ITEM(evicted);
            ITEM(evicted_nonzero);
            ITEM(evicted_time);
            ITEM(outofmemory);
            ITEM(reclaimed);
            ITEM(expired_unfetched);
            ITEM(evicted_unfetched);
#undef ITEM
        }
    } else {
        return false;
    }
    kvcache_out_put(o, "END\r\n", 5);
    return true;
}
