/* SHA-1 (FIPS 180-4), for the WebSocket handshake only.
 *
 * The opening handshake of RFC 6455 hashes the client's key with SHA-1;
 * libsodium offers no SHA-1, so this small implementation exists. SHA-1 is
 * not collision resistant: never use it for anything that needs security.
 */
#ifndef HY_NET_SHA1_INTERNAL_H
#define HY_NET_SHA1_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct hy__sha1 {
    uint32_t h[5];
    uint64_t total;     /* bytes hashed so far */
    uint8_t block[64];  /* pending input */
    size_t used;
};

void hy__sha1_init(struct hy__sha1 *s);
void hy__sha1_update(struct hy__sha1 *s, const void *data, size_t len);
void hy__sha1_final(struct hy__sha1 *s, uint8_t digest[20]);
/* One-shot digest of data[0..len). */
void hy__sha1(const void *data, size_t len, uint8_t digest[20]);

#endif /* HY_NET_SHA1_INTERNAL_H */
