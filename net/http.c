/* HTTP/1.1 request parser and response writer (see http.h). */
#include "http.h"

#include <stdio.h>
#include <string.h>

#include "errors.h"

#define DEFAULT_MAX_HEAD    8192
#define DEFAULT_MAX_HEADERS 32
#define DEFAULT_MAX_BODY    65536
#define MAX_METHOD          16
#define EARLY_CHECK         256 /* request-line bytes checked before its end comes */

/* RFC 9110 tchar: the characters of a token. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Characters of a field value: VCHAR, SP, HTAB and obs-text. */
static bool is_value_char(unsigned char c)
{
    return c == ' ' || c == '\t' || (c > 0x20 && c != 0x7f);
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

void hy_http_parser_init(struct hy_http_parser *p, const struct hy_http_limits *limits)
{
    memset(p, 0, sizeof(*p));
    if (limits)
        p->limits = *limits;
    if (p->limits.max_head == 0)
        p->limits.max_head = DEFAULT_MAX_HEAD;
    if (p->limits.max_headers == 0)
        p->limits.max_headers = DEFAULT_MAX_HEADERS;
    if (p->limits.max_headers > HY_HTTP_MAX_HEADERS)
        p->limits.max_headers = HY_HTTP_MAX_HEADERS;
    if (p->limits.max_body == 0)
        p->limits.max_body = DEFAULT_MAX_BODY;
}

void hy_http_parser_reset(struct hy_http_parser *p)
{
    struct hy_http_limits l = p->limits;
    memset(p, 0, sizeof(*p));
    p->limits = l;
}

static int fail(struct hy_http_parser *p, unsigned status, int err)
{
    p->status = status;
    return err;
}

/* Checks the request line in buf[0..len): len may stop anywhere inside it
 * (then a valid prefix gives HY_EAGAIN). With a complete line (ending in
 * CRLF at line_end) fills the request-line fields of req. */
static int parse_request_line(struct hy_http_parser *p, const char *buf, size_t len,
                              struct hy_http_request *req)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)buf[i]))
        i++;
    if (i > MAX_METHOD)
        return fail(p, 400, HY_EINVAL);
    if (i == len)
        return HY_EAGAIN;
    if (i == 0 || buf[i] != ' ')
        return fail(p, 400, HY_EINVAL);
    size_t method_len = i++;
    size_t target = i;
    while (i < len && buf[i] > 0x20 && buf[i] != 0x7f)
        i++;
    if (i == len)
        return (i == target || buf[target] == '/' || buf[target] == '*') ? HY_EAGAIN
                                                                         : fail(p, 400, HY_EINVAL);
    if (i == target || buf[i] != ' ' || (buf[target] != '/' && buf[target] != '*'))
        return fail(p, 400, HY_EINVAL);
    if (buf[target] == '*' && i - target != 1)
        return fail(p, 400, HY_EINVAL);
    size_t target_len = i - target;
    i++;
    static const char proto[] = "HTTP/";
    size_t v = i;
    for (; i < len && i - v < 5; i++)
        if (buf[i] != proto[i - v])
            return fail(p, 400, HY_EINVAL);
    if (i == len)
        return HY_EAGAIN;
    /* HTTP/digit.digit CRLF */
    const char *ver = buf + v + 5;
    size_t have = len - (v + 5);
    if (have >= 1 && (ver[0] < '0' || ver[0] > '9'))
        return fail(p, 400, HY_EINVAL);
    if (have >= 2 && ver[1] != '.')
        return fail(p, 400, HY_EINVAL);
    if (have >= 3 && (ver[2] < '0' || ver[2] > '9'))
        return fail(p, 400, HY_EINVAL);
    if (have >= 4 && ver[3] != '\r')
        return fail(p, 400, HY_EINVAL);
    if (have >= 5 && ver[4] != '\n')
        return fail(p, 400, HY_EINVAL);
    if (have < 5)
        return HY_EAGAIN;
    if (ver[0] != '1' || (ver[2] != '0' && ver[2] != '1'))
        return fail(p, 505, HY_ENOTSUP);
    if (req) {
        req->method = buf;
        req->method_len = method_len;
        req->path = buf + target;
        req->path_len = target_len;
        req->query = NULL;
        req->query_len = 0;
        const char *q = memchr(buf + target, '?', target_len);
        if (q) {
            req->path_len = (size_t)(q - (buf + target));
            req->query = q + 1;
            req->query_len = target_len - req->path_len - 1;
        }
        req->minor_version = (unsigned)(ver[2] - '0');
    }
    return 0;
}

/* Parses header lines of the complete head buf[start..head_len). */
static int parse_headers(struct hy_http_parser *p, const char *buf, size_t start, size_t head_len,
                         struct hy_http_request *req)
{
    size_t i = start;
    size_t end = head_len - 2; /* the final CRLF */
    req->nheaders = 0;
    while (i < end) {
        size_t name = i;
        while (i < end && is_tchar((unsigned char)buf[i]))
            i++;
        if (i == name || i >= end || buf[i] != ':') /* also obs-fold, space before ':' */
            return fail(p, 400, HY_EINVAL);
        size_t name_len = i - name;
        i++;
        while (i < end && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        size_t value = i;
        while (i < end && buf[i] != '\r') {
            if (!is_value_char((unsigned char)buf[i]))
                return fail(p, 400, HY_EINVAL);
            i++;
        }
        if (i + 1 >= head_len || buf[i] != '\r' || buf[i + 1] != '\n')
            return fail(p, 400, HY_EINVAL);
        size_t value_end = i;
        while (value_end > value && (buf[value_end - 1] == ' ' || buf[value_end - 1] == '\t'))
            value_end--;
        if (req->nheaders >= p->limits.max_headers)
            return fail(p, 431, HY_EMSGSIZE);
        struct hy_http_header *h = &req->headers[req->nheaders++];
        h->name = buf + name;
        h->name_len = name_len;
        h->value = buf + value;
        h->value_len = value_end - value;
        i += 2;
    }
    return 0;
}

/* Content-Length: digits only, no overflow; every copy the same. */
static int content_length(struct hy_http_parser *p, const struct hy_http_request *req, size_t *out)
{
    bool seen = false;
    size_t n = 0;
    for (unsigned k = 0; k < req->nheaders; k++) {
        const struct hy_http_header *h = &req->headers[k];
        if (!ieq(h->name, h->name_len, "content-length"))
            continue;
        if (h->value_len == 0 || h->value_len > 19)
            return fail(p, 400, HY_EINVAL);
        size_t v = 0;
        for (size_t i = 0; i < h->value_len; i++) {
            if (h->value[i] < '0' || h->value[i] > '9')
                return fail(p, 400, HY_EINVAL);
            v = v * 10 + (size_t)(h->value[i] - '0');
        }
        if (seen && v != n)
            return fail(p, 400, HY_EINVAL);
        seen = true;
        n = v;
    }
    *out = n;
    return 0;
}

static int parse_head(struct hy_http_parser *p, const char *buf, struct hy_http_request *req)
{
    int rc = parse_request_line(p, buf, p->head_len, req);
    if (rc == HY_EAGAIN) /* the head ended inside the request line */
        return fail(p, 400, HY_EINVAL);
    if (rc < 0)
        return rc;
    const char *eol = memchr(buf, '\n', p->head_len);
    rc = parse_headers(p, buf, (size_t)(eol - buf) + 1, p->head_len, req);
    if (rc < 0)
        return rc;
    size_t body = 0;
    rc = content_length(p, req, &body);
    if (rc < 0)
        return rc;
    if (hy_http_header_find(req, "transfer-encoding"))
        return hy_http_header_find(req, "content-length") ? fail(p, 400, HY_EINVAL)
                                                          : fail(p, 501, HY_ENOTSUP);
    if (body > p->limits.max_body)
        return fail(p, 413, HY_EMSGSIZE);
    const struct hy_http_header *host = hy_http_header_find(req, "host");
    if (req->minor_version == 1 && !host)
        return fail(p, 400, HY_EINVAL);
    const struct hy_http_header *conn = hy_http_header_find(req, "connection");
    if (req->minor_version == 1)
        req->keep_alive = !(conn && hy_http_value_has_token(conn->value, conn->value_len, "close"));
    else
        req->keep_alive =
            conn && hy_http_value_has_token(conn->value, conn->value_len, "keep-alive");
    const struct hy_http_header *up = hy_http_header_find(req, "upgrade");
    req->upgrade_websocket = up && conn &&
                             hy_http_value_has_token(up->value, up->value_len, "websocket") &&
                             hy_http_value_has_token(conn->value, conn->value_len, "upgrade");
    p->body_len = body;
    req->head_len = p->head_len;
    req->body_len = body;
    req->total_len = p->head_len + body;
    return 0;
}

int hy_http_parse(struct hy_http_parser *p, const char *buf, size_t len,
                  struct hy_http_request *req)
{
    if (p->status)
        return HY_EINVAL;
    if (p->head_len == 0) {
        /* Catch a bad request line early, before the whole head is in:
         * its first EARLY_CHECK bytes as soon as they come, all of it once
         * its end has come. Only new bytes are searched for that end, so
         * a request trickling in costs linear time. */
        size_t line = len < p->limits.max_head ? len : p->limits.max_head;
        if (!p->line_done && p->scanned <= line) {
            const char *eol = memchr(buf + p->scanned, '\n', line - p->scanned);
            size_t upto = eol ? (size_t)(eol - buf) + 1 : (line < EARLY_CHECK ? line : EARLY_CHECK);
            int rc = parse_request_line(p, buf, upto, NULL);
            if (rc < 0 && rc != HY_EAGAIN)
                return rc;
            p->line_done = eol != NULL;
        }
        size_t from = p->scanned >= 3 ? p->scanned - 3 : 0;
        size_t limit = len < p->limits.max_head ? len : p->limits.max_head;
        for (size_t i = from; i + 3 < limit; i++) {
            if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
                p->head_len = i + 4;
                break;
            }
        }
        if (p->head_len == 0) {
            if (len >= p->limits.max_head)
                return fail(p, 431, HY_EMSGSIZE);
            p->scanned = len;
            return HY_EAGAIN;
        }
        int hrc = parse_head(p, buf, req);
        if (hrc < 0)
            return hrc;
    } else if (len < p->head_len + p->body_len) {
        return HY_EAGAIN;
    } else {
        int hrc = parse_head(p, buf, req);
        if (hrc < 0)
            return hrc;
    }
    if (len < p->head_len + p->body_len)
        return HY_EAGAIN;
    req->body = (const uint8_t *)buf + p->head_len;
    return 0;
}

const struct hy_http_header *hy_http_header_find(const struct hy_http_request *req,
                                                 const char *name)
{
    for (unsigned k = 0; k < req->nheaders; k++)
        if (ieq(req->headers[k].name, req->headers[k].name_len, name))
            return &req->headers[k];
    return NULL;
}

bool hy_http_value_has_token(const char *value, size_t value_len, const char *token)
{
    size_t i = 0;
    while (i < value_len) {
        while (i < value_len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t s = i;
        while (i < value_len && value[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
            e--;
        if (e > s && ieq(value + s, e - s, token))
            return true;
    }
    return false;
}

const char *hy_http_status_text(unsigned status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int hy_http_response_head(char *buf, size_t cap, unsigned status, const char *content_type,
                          size_t content_length, bool keep_alive, const char *extra)
{
    if (status < 100 || status > 599)
        return HY_EINVAL;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %u %s\r\n%s%s%sContent-Length: %zu\r\nConnection: %s\r\n"
                     "Cache-Control: no-store\r\n%s\r\n",
                     status, hy_http_status_text(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", content_length,
                     keep_alive ? "keep-alive" : "close", extra ? extra : "");
    if (n < 0 || (size_t)n >= cap)
        return HY_ENOSPC;
    return n;
}
