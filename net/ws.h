/* WebSocket (RFC 6455): the frame codec and a server where each connection
 * is a process.
 *
 * The codec (hy_ws_decoder, hy_ws_frame_header, hy_ws_accept_key) knows
 * nothing of sockets and is usable on its own. The decoder enforces the
 * rules a server must: client frames must be masked, reserved bits must be
 * zero (no extension is negotiated), control frames are at most 125 bytes
 * and never fragmented, fragments of a message must continue it, text must
 * be valid UTF-8 and messages are bounded. A violation gives the close code
 * to fail the connection with: 1002 (protocol error), 1007 (invalid text)
 * or 1009 (too big).
 *
 * The server part (hy_ws_serve and the hy_ws_send_* calls) runs inside the
 * process of an accepted TCP connection whose HTTP request asked for an
 * upgrade: it answers the handshake, then calls the handler's callbacks for
 * each complete message, answers pings and the closing handshake itself, and
 * delivers every Hydra message sent to the connection's process to the
 * handler's on_info callback, so other processes (a chat room, say) can
 * push data to the client by sending to the connection's pid.
 */
#ifndef HY_NET_WS_H
#define HY_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/pid.h"
#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hy_msg;
struct hy_tcp;

enum hy_ws_opcode {
    HY_WS_CONT = 0x0,
    HY_WS_TEXT = 0x1,
    HY_WS_BINARY = 0x2,
    HY_WS_CLOSE = 0x8,
    HY_WS_PING = 0x9,
    HY_WS_PONG = 0xA,
};

/* Close codes (RFC 6455 section 7.4.1). */
enum hy_ws_close_code {
    HY_WS_CLOSE_NORMAL = 1000,
    HY_WS_CLOSE_GOING_AWAY = 1001,
    HY_WS_CLOSE_PROTOCOL = 1002,
    HY_WS_CLOSE_UNSUPPORTED = 1003,
    HY_WS_CLOSE_NO_STATUS = 1005,   /* never sent: a close frame without a code */
    HY_WS_CLOSE_ABNORMAL = 1006,    /* never sent: the connection dropped */
    HY_WS_CLOSE_INVALID_DATA = 1007,
    HY_WS_CLOSE_POLICY = 1008,
    HY_WS_CLOSE_TOO_BIG = 1009,
    HY_WS_CLOSE_INTERNAL = 1011,
};

/* Length of the Sec-WebSocket-Accept value, without its NUL. */
#define HY_WS_ACCEPT_LEN 28
/* Longest frame header: 2 + 8 (length) + 4 (mask key). */
#define HY_WS_MAX_HEADER 14

/* Computes the Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key
 * (borrowed, key_len bytes): base64(SHA-1(key + the RFC's GUID)), written
 * NUL-terminated to out.
 * Errors: HY_EINVAL (the key is not 24 base64 characters, i.e. not 16
 * bytes encoded). Context: anywhere. */
int hy_ws_accept_key(const char *key, size_t key_len, char out[HY_WS_ACCEPT_LEN + 1]);

/* True if s[0..len) (borrowed) is well-formed UTF-8: no overlong forms, no
 * surrogates, nothing above U+10FFFF. Context: anywhere. */
bool hy_ws_utf8_valid(const uint8_t *s, size_t len);

/* Writes the header of one frame to out and returns its length (2..14).
 * mask_key (borrowed, 4 bytes) is NULL for a server's (unmasked) frame; a
 * client masks the payload itself with hy_ws_mask(). Context: anywhere. */
size_t hy_ws_frame_header(uint8_t out[HY_WS_MAX_HEADER], enum hy_ws_opcode op, bool fin,
                          uint64_t payload_len, const uint8_t *mask_key);

/* XORs data[0..len) (borrowed, changed in place) with key (borrowed, 4
 * bytes), starting at byte offset of the payload. Context: anywhere. */
void hy_ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset);

/* What the decoder gives back: one complete message or control frame. */
struct hy_ws_event {
    enum hy_ws_opcode op;  /* HY_WS_TEXT, HY_WS_BINARY, HY_WS_PING, HY_WS_PONG, HY_WS_CLOSE */
    const uint8_t *data;   /* payload (borrowed: see hy_ws_decode) */
    size_t len;
    uint16_t close_code;   /* HY_WS_CLOSE: the peer's code (1005 when none) */
};

/* Decoder state of one connection. Fill with hy_ws_decoder_init(); read
 * close_code after an error. Owns a buffer for fragmented messages. */
struct hy_ws_decoder {
    size_t max_message;     /* bound on a message, all fragments together */
    bool require_mask;      /* server side: client frames must be masked */
    uint16_t close_code;    /* after an error: the code to close with */
    uint8_t msg_op;         /* opcode of the fragmented message in progress, 0 = none */
    uint8_t *msg;           /* its bytes so far (owned) */
    size_t msg_len;
    size_t msg_cap;
};

/* Initialises d for a server (require_mask true) or a client, accepting
 * messages of up to max_message bytes (0 = 1 MiB). Context: anywhere. */
void hy_ws_decoder_init(struct hy_ws_decoder *d, size_t max_message, bool require_mask);

/* Frees d's buffer. Context: anywhere. */
void hy_ws_decoder_fini(struct hy_ws_decoder *d);

/* Decodes from buf[0..len) (borrowed; masked payloads are unmasked in
 * place). Writes to *consumed how many bytes of buf it has used, which the
 * caller drops before the next call, in every case.
 * Returns 0 with *ev filled when a message or a control frame is complete:
 * ev->data points into buf (valid until the caller drops the consumed bytes)
 * or into d's buffer for a fragmented message (valid until the next call).
 * Errors: HY_EAGAIN (more bytes needed; whole frames of a fragmented message
 * may have been consumed), HY_EINVAL (protocol error or invalid UTF-8:
 * close_code 1002 or 1007), HY_EMSGSIZE (message above max_message: 1009),
 * HY_ENOMEM (no memory for a fragmented message: 1011). After an error the
 * decoder must not be used again except by fini.
 * Context: anywhere (allocates with malloc for fragmented messages). */
int hy_ws_decode(struct hy_ws_decoder *d, uint8_t *buf, size_t len, size_t *consumed,
                 struct hy_ws_event *ev);

/* ---- the server ----------------------------------------------------------- */

struct hy_ws_conn;

/* Callbacks of a WebSocket handler, run in the connection's process. NULL
 * members are skipped. A callback may call hy_ws_send_* and hy_ws_close on
 * conn, and any runtime call a process may make. */
struct hy_ws_handler {
    /* After the handshake. Returning nonzero closes with 1011. */
    int (*on_open)(struct hy_ws_conn *conn, void *ctx);
    /* A complete text (valid UTF-8) or binary message (data borrowed for the
     * call). */
    void (*on_text)(struct hy_ws_conn *conn, const char *data, size_t len, void *ctx);
    void (*on_binary)(struct hy_ws_conn *conn, const uint8_t *data, size_t len, void *ctx);
    /* The connection ended: code is the peer's close code, or 1006 when it
     * dropped, or the code the server failed it with. Called once. */
    void (*on_close)(struct hy_ws_conn *conn, uint16_t code, void *ctx);
    /* A Hydra message sent to the connection's process (m borrowed for the
     * call: the server frees it afterwards). */
    void (*on_info)(struct hy_ws_conn *conn, const struct hy_msg *m, void *ctx);
};

/* Bounds of a WebSocket connection. Zero fields take the defaults. */
struct hy_ws_options {
    size_t max_message;       /* [1 MiB] larger messages close with 1009 */
    uint64_t idle_timeout_ns; /* no frame in this long: close 1001 [0 = never] */
    uint64_t close_timeout_ns;/* wait for the peer's close frame [2 s] */
};

/* Runs the WebSocket protocol on an accepted connection whose request req
 * (borrowed) asked for an upgrade (req->upgrade_websocket): answers the
 * handshake (or 400 and returns HY_EINVAL when the request lacks a valid
 * key or version 13), then serves frames until the connection closes.
 * rest[0..rest_len) are bytes already read after the request (borrowed).
 * handler and ctx are borrowed for the call; opts may be NULL.
 * sock is the connection's TCP socket (see core/tcp.h; borrowed: the
 * caller closes it afterwards). The socket is switched to active-once mode
 * while serving and left passive.
 * Returns 0 after a clean close. Errors: HY_EINVAL (not a valid upgrade
 * request: answered 400, or 426 for another protocol version; or the peer
 * broke the protocol: closed with 1002/1007), HY_EMSGSIZE (a message above
 * max_message: closed with 1009), HY_EIO (the connection dropped),
 * HY_ETIMEDOUT (the peer never answered our close), HY_ENOMEM, HY_ENOTPROC.
 * Once the handshake succeeded, on_close has run whatever the result.
 * Context: a process (the connection's, owning sock). */
int hy_ws_serve(struct hy_tcp *sock, const struct hy_http_request *req, const uint8_t *rest,
                size_t rest_len, const struct hy_ws_handler *handler, void *ctx,
                const struct hy_ws_options *opts);

/* Sends one text (data must be valid UTF-8: not checked) or binary message
 * (data borrowed). Errors: HY_EIO (the connection is gone),
 * HY_EALREADY (closing). Context: the connection's process. */
int hy_ws_send_text(struct hy_ws_conn *conn, const char *data, size_t len);
int hy_ws_send_binary(struct hy_ws_conn *conn, const uint8_t *data, size_t len);

/* Starts the closing handshake with code and reason (borrowed, at most 123
 * bytes, UTF-8). hy_ws_serve returns once the peer answers or the close
 * timeout passes. Errors: HY_EINVAL (reason too long), HY_EALREADY.
 * Context: the connection's process. */
int hy_ws_close(struct hy_ws_conn *conn, uint16_t code, const char *reason);

/* Pid of the connection's process (to give to others that push to it).
 * Context: anywhere the conn is valid. */
hy_pid hy_ws_pid(const struct hy_ws_conn *conn);

#ifdef __cplusplus
}
#endif

#endif /* HY_NET_WS_H */
