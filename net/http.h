/* HTTP/1.1: an incremental request parser and a response writer.
 *
 * The parser reads requests out of a buffer the caller fills from a socket.
 * It never allocates and never copies: a parsed request points into the
 * caller's buffer. It is strict, since its input is hostile: the request
 * line must be `METHOD SP origin-form SP HTTP/1.x CRLF`, header lines must be
 * `token ":" OWS value OWS CRLF` with no control characters, obsolete line
 * folding is refused, the head and the body are bounded, Content-Length must
 * be plain digits (duplicates must agree) and a Transfer-Encoding on a
 * request is refused. Every refusal sets the HTTP status to answer with
 * (400, 413, 431, 501 or 505); the server then answers it and closes the
 * connection.
 *
 * Typical use, from a connection's process:
 *
 *     struct hy_http_parser p;
 *     hy_http_parser_init(&p, NULL);             // default limits
 *     for (;;) {
 *         ... append received bytes to buf[0..len) ...
 *         struct hy_http_request req;
 *         int rc = hy_http_parse(&p, buf, len, &req);
 *         if (rc == HY_EAGAIN) continue;          // need more bytes
 *         if (rc < 0) { answer p.status, close; }
 *         ... handle req, then drop req.total_len bytes from buf and
 *         hy_http_parser_reset(&p) ...
 *     }
 */
#ifndef HY_NET_HTTP_H
#define HY_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest number of header fields a request may carry (the limit
 * hy_http_limits.max_headers may not exceed). */
#define HY_HTTP_MAX_HEADERS 64

/* Bounds on one request. Zero fields take the defaults in brackets. */
struct hy_http_limits {
    size_t max_head;      /* request line + headers + blank line [8192] */
    unsigned max_headers; /* header fields [32], at most HY_HTTP_MAX_HEADERS */
    size_t max_body;      /* Content-Length [65536] */
};

/* One header field; both strings point into the parsed buffer (not
 * NUL-terminated). The value has its surrounding whitespace removed. */
struct hy_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* A parsed request. Every pointer points into the buffer given to
 * hy_http_parse() (borrowed from it: valid while it is). */
struct hy_http_request {
    const char *method;       /* "GET", ... (not NUL-terminated) */
    size_t method_len;
    const char *path;         /* request target up to '?' ("/api/shards") */
    size_t path_len;
    const char *query;        /* after '?', without it (NULL when absent) */
    size_t query_len;
    unsigned minor_version;   /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    struct hy_http_header headers[HY_HTTP_MAX_HEADERS];
    unsigned nheaders;
    const uint8_t *body;      /* Content-Length bytes after the head */
    size_t body_len;
    size_t head_len;          /* bytes of request line + headers + CRLF */
    size_t total_len;         /* head_len + body_len: bytes to drop */
    bool keep_alive;          /* the connection may carry another request */
    bool upgrade_websocket;   /* Upgrade: websocket with Connection: upgrade */
};

/* Parser state between calls (a request may arrive over many reads). Fill
 * with hy_http_parser_init(); read `status` after an error. */
struct hy_http_parser {
    struct hy_http_limits limits;
    size_t scanned;      /* bytes searched for the end of the head so far */
    bool line_done;      /* the request line is complete and was checked */
    size_t head_len;     /* 0 until the end of the head was found */
    size_t body_len;     /* Content-Length, once the head is parsed */
    unsigned status;     /* HTTP status to answer after an error, else 0 */
};

/* Initialises p with limits (borrowed, copied; NULL = defaults).
 * Context: anywhere. */
void hy_http_parser_init(struct hy_http_parser *p, const struct hy_http_limits *limits);

/* Forgets the request just parsed, keeping the limits, so that the next one
 * (the bytes after it, moved to the front of the buffer) can be parsed.
 * Context: anywhere. */
void hy_http_parser_reset(struct hy_http_parser *p);

/* Parses the request at the start of buf[0..len) (borrowed; buf must start
 * at the same request on every call, with more bytes appended, until a
 * result other than HY_EAGAIN). Work done on earlier calls is not repeated,
 * so feeding a request byte by byte costs time linear in its size.
 * On success fills *req (pointers into buf) and returns 0; req->total_len
 * bytes belong to this request.
 * Errors: HY_EAGAIN (incomplete: call again with more bytes),
 * HY_EINVAL (malformed: status 400), HY_EMSGSIZE (head too large or too
 * many headers: 431; body too large: 413), HY_ENOTSUP (Transfer-Encoding:
 * 501; an HTTP version other than 1.0 or 1.1: 505). After an error
 * p->status holds the status and the parser must not be used again on this
 * connection. A bad request line is refused without waiting for the whole
 * head: as soon as the bad byte has arrived if it lies in the first 256
 * bytes, else once the line's end has.
 * Context: anywhere (no allocation, no runtime call). */
int hy_http_parse(struct hy_http_parser *p, const char *buf, size_t len,
                  struct hy_http_request *req);

/* First header of req named name (case-insensitive; borrowed), or NULL.
 * Context: anywhere. */
const struct hy_http_header *hy_http_header_find(const struct hy_http_request *req,
                                                 const char *name);

/* True if the comma-separated header value (borrowed) holds token,
 * case-insensitively ("keep-alive, Upgrade" holds "upgrade").
 * Context: anywhere. */
bool hy_http_value_has_token(const char *value, size_t value_len, const char *token);

/* Reason phrase of an HTTP status ("Not Found"); "Unknown" when not known.
 * Context: anywhere. */
const char *hy_http_status_text(unsigned status);

/* Writes a response head into buf[0..cap) (borrowed): status line,
 * Content-Type (if content_type is not NULL; borrowed), Content-Length,
 * Connection (keep-alive or close), Cache-Control: no-store, the lines of
 * extra (borrowed, each ending in CRLF; NULL = none) and the blank line.
 * Returns the length written (> 0).
 * Errors: HY_ENOSPC (cap too small: buf holds nothing usable),
 * HY_EINVAL (status outside 100..599).
 * Context: anywhere. */
int hy_http_response_head(char *buf, size_t cap, unsigned status, const char *content_type,
                          size_t content_length, bool keep_alive, const char *extra);

#ifdef __cplusplus
}
#endif

#endif /* HY_NET_HTTP_H */
