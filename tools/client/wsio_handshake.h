/*
 * wsio_handshake.h - the client side of the WebSocket opening handshake
 * (RFC 6455 section 4.1) for the lean client (wsio.h): the upgrade
 * request, and the check of the server's answer.
 *
 * Usage sketch:
 *
 *     char key[WSIO_HANDSHAKE_KEY_BYTES];
 *     wsio_handshake_key(random16, key);
 *     size_t n;
 *     wsio_handshake_request(req, sizeof req, "127.0.0.1", 8080,
 *                            "/v1/stream", "demix.v1", key, &n);
 *     ... send req, read the answer into resp ...
 *     size_t head;
 *     int rc = wsio_handshake_check(resp, resp_len, key, "demix.v1",
 *                                   &head, why, sizeof why);
 *     // 1: accepted, frames start at resp + head; 0: read more;
 *     // DEMIX_EPROTOCOL: refused, why says how
 *
 * Design. The request carries what lws's client sends (Host, Origin,
 * Upgrade, Connection, Sec-WebSocket-Key, -Protocol, -Version 13). The
 * answer must be HTTP/1.1 101 with Upgrade: websocket, a Connection
 * header listing upgrade, Sec-WebSocket-Accept equal to
 * base64(SHA-1(key + the RFC's GUID)), and no subprotocol other than the
 * one asked for (none is accepted: RFC 6455 4.1 only refuses an
 * unrequested one). Header names are case-insensitive, values are
 * trimmed; the head may be at most WSIO_HANDSHAKE_MAX_HEAD bytes.
 *
 * Thread context: pure functions, any thread.
 */
#ifndef DEMIX_WSIO_HANDSHAKE_H
#define DEMIX_WSIO_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

#define WSIO_HANDSHAKE_KEY_BYTES 25    /* base64 of 16 bytes + NUL */
#define WSIO_HANDSHAKE_ACCEPT_BYTES 29 /* base64 of 20 bytes + NUL */
#define WSIO_HANDSHAKE_MAX_HEAD 4096   /* the server's answer, headers */
#define WSIO_HANDSHAKE_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Sec-WebSocket-Key from 16 random bytes. */
void wsio_handshake_key(const uint8_t raw[16],
                        char key[WSIO_HANDSHAKE_KEY_BYTES]);

/* The Sec-WebSocket-Accept a server must answer to key. */
void wsio_handshake_accept(const char *key,
                           char out[WSIO_HANDSHAKE_ACCEPT_BYTES]);

/* The GET request for path on host:port (subprotocol NULL: none) into buf;
 * *len its length (no NUL counted). DEMIX_ENOSPACE when it does not fit. */
DEMIX_WARN_UNUSED int wsio_handshake_request(char *buf, size_t cap,
                                             const char *host, int port,
                                             const char *path,
                                             const char *subprotocol,
                                             const char *key, size_t *len);

/* Check the answer's first len bytes (see above). 1 with *head_bytes, the
 * length of the head including its blank line; 0 when the head is not
 * complete yet; DEMIX_EPROTOCOL with a sentence in why. */
DEMIX_WARN_UNUSED int wsio_handshake_check(const char *resp, size_t len,
                                           const char *key,
                                           const char *subprotocol,
                                           size_t *head_bytes, char *why,
                                           size_t why_cap);

#endif /* DEMIX_WSIO_HANDSHAKE_H */
