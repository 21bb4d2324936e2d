/*
 * wsio_crypto.h - the two digests a WebSocket client handshake needs:
 * SHA-1 (FIPS 180-4) and base64 (RFC 4648, with padding), for
 * Sec-WebSocket-Key and Sec-WebSocket-Accept (RFC 6455 section 4). Not for
 * anything that needs SHA-1 to be collision resistant: here it only
 * proves that the server read our key.
 *
 * Usage sketch:
 *
 *     uint8_t digest[WSIO_SHA1_BYTES];
 *     wsio_crypto_sha1(data, len, digest);
 *     char text[WSIO_BASE64_BYTES(WSIO_SHA1_BYTES)];   // 29: 28 + NUL
 *     wsio_crypto_base64(digest, sizeof digest, text, sizeof text);
 *
 * Design: one-shot functions on caller buffers; no allocation, no state.
 * Tested against the FIPS 180 vectors and RFC 6455's handshake example
 * (tests/unit/test_wsio.c).
 *
 * Thread context: pure functions, any thread.
 */
#ifndef DEMIX_WSIO_CRYPTO_H
#define DEMIX_WSIO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

#define WSIO_SHA1_BYTES 20
/* base64 text of n bytes, with its NUL */
#define WSIO_BASE64_BYTES(n) ((((n) + 2) / 3) * 4 + 1)

/* SHA-1 of len bytes into out. */
void wsio_crypto_sha1(const void *data, size_t len,
                      uint8_t out[WSIO_SHA1_BYTES]);

/* base64 of len bytes into out (NUL-terminated): DEMIX_OK, or
 * DEMIX_ENOSPACE when out_cap < WSIO_BASE64_BYTES(len) (out untouched). */
DEMIX_WARN_UNUSED int wsio_crypto_base64(const void *in, size_t len, char *out,
                                         size_t out_cap);

#endif /* DEMIX_WSIO_CRYPTO_H */
