/*
 * ws_test_client.h - a small WebSocket and HTTP/1.1 client for the server's
 * integration tests: plain POSIX sockets, no library, so a test can send
 * exactly the bytes it wants (bad frames, oversized messages, garbage,
 * a vanishing peer) and see exactly what comes back (messages, the close
 * code and reason, a dropped connection).
 *
 * Usage sketch:
 *
 *     wst_conn *c;
 *     int status;
 *     if (wst_open(port, "/v1/stream", "demix.v1", &c, &status)) fail();
 *     wst_send_text(c, "{\"type\":\"stats\"}");
 *     wst_msg m;
 *     if (wst_recv(c, &m, 5000) == 1 && m.opcode == WST_TEXT) ...;
 *     wst_free(c);
 *
 *     wst_http_response r;
 *     wst_http(port, "POST", "/v1/separate", "audio/wav", body, n, &r, 30000);
 *     ... r.status, r.body, r.body_len ...
 *     wst_http_response_free(&r);
 *
 * Design. RFC 6455 itself (frame headers, masks, the receive parser, the
 * handshake's key and accept) is demix_client's (tools/client/wsio_frame.h,
 * wsio_handshake.h); what is here is the socket side a test needs to
 * control. The socket is non-blocking; sends go into a transmit buffer that
 * wst_pump() writes out while it also reads whatever arrived into a receive
 * buffer, so a test never deadlocks against a server that applies
 * back-pressure (it stops reading until its output is read). Received
 * frames are reassembled into whole messages; pings are answered; a close
 * frame is reported as a message with opcode WST_CLOSE, its code and reason.
 * Client frames are masked (RFC 6455 5.3) with a fixed per-connection key
 * stream; the handshake's Sec-WebSocket-Accept is checked. Messages from
 * the server are at most WST_MAX_MESSAGE_BYTES (larger: -1, as garbage).
 *
 * Timeouts are liveness bounds only (a test fails instead of hanging); no
 * test measures time with them.
 *
 * Threads: a connection belongs to one thread.
 */
#ifndef DEMIX_WS_TEST_CLIENT_H
#define DEMIX_WS_TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define WST_CONT 0x0
#define WST_TEXT 0x1
#define WST_BINARY 0x2
#define WST_CLOSE 0x8
#define WST_PING 0x9
#define WST_PONG 0xA

#define WST_MAX_MESSAGE_BYTES ((size_t)64 << 20)

typedef struct wst_conn wst_conn;

typedef struct wst_msg {
    int opcode;          /* WST_TEXT, WST_BINARY or WST_CLOSE */
    const uint8_t *data; /* valid until the next wst_recv on this conn;
                            text is NUL-terminated */
    size_t len;
    int close_code;      /* WST_CLOSE: the code, 1005 when none was given */
    char close_reason[128];
} wst_msg;

/* TCP connect to 127.0.0.1:port. 0 or -1 (errno-style failure, e.g. the
 * connection was refused). */
int wst_connect(int port, wst_conn **out);

/* The WebSocket upgrade on a connected socket. subprotocol may be NULL (no
 * header). *http_status gets the response status (101 on success). 0 on a
 * valid 101 with the right Sec-WebSocket-Accept, -1 otherwise. The response
 * headers are kept (wst_response_headers). */
int wst_handshake(wst_conn *c, int port, const char *path,
                  const char *subprotocol, int *http_status, int timeout_ms);

/* Connect and upgrade; on failure *out is NULL and the connection freed. */
int wst_open(int port, const char *path, const char *subprotocol,
             wst_conn **out, int *http_status);

const char *wst_response_headers(const wst_conn *c);

/* A header of the handshake response (case-insensitive name) into out;
 * 0 when present. */
int wst_response_header(const wst_conn *c, const char *name, char *out,
                        size_t cap);

/* Queue one frame (masked) and try to write it. fin 0/1, any opcode, any
 * length (a test may break the limits on purpose). 0 or -1 (connection
 * gone). */
int wst_send_frame(wst_conn *c, int fin, int opcode, const void *data,
                   size_t len);
int wst_send_text(wst_conn *c, const char *text);
int wst_send_binary(wst_conn *c, const void *data, size_t len);
/* A close frame with a code (and reason). */
int wst_send_close(wst_conn *c, int code, const char *reason);
/* Raw bytes, unframed. */
int wst_send_raw(wst_conn *c, const void *data, size_t len);

/* Write what is queued and read what arrived, waiting up to timeout_ms for
 * either. Returns 0, or -1 once the peer closed the TCP connection or it
 * failed (buffered input can still be read with wst_recv). */
int wst_pump(wst_conn *c, int timeout_ms);

/* Stop (1) or resume (0) reading from the socket, as a client that does not
 * read its output: the peer's data then waits in the kernel buffers. */
void wst_set_read_paused(wst_conn *c, int paused);

/* Bytes queued but not yet written to the socket. */
size_t wst_tx_pending(const wst_conn *c);

/* The next whole message: 1 (m filled), 0 nothing within timeout_ms
 * (0: do not wait), -1 the TCP connection ended without (more) messages. */
int wst_recv(wst_conn *c, wst_msg *m, int timeout_ms);

/* Wait for the end of the TCP connection (after a close frame), up to
 * timeout_ms, discarding data. 0 when it ended, -1 on timeout. */
int wst_wait_eof(wst_conn *c, int timeout_ms);

/* Vanish: close the socket at once with a TCP reset (SO_LINGER 0), no close
 * frame. The conn can then only be freed. */
void wst_abort(wst_conn *c);

int wst_fd(const wst_conn *c);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (for a test's fake server):
 * base64(SHA-1(key + RFC 6455 GUID)), out of at least 29 bytes. */
void wst_accept_key(const char *key, char *out);
void wst_free(wst_conn *c);

/* ------------------------------------------------------------- HTTP */

typedef struct wst_http_response {
    int status;          /* 0 when no response came */
    char headers[8192];  /* the header block, NUL-terminated */
    uint8_t *body;       /* malloc'd, NUL-terminated, may contain NULs */
    size_t body_len;
} wst_http_response;

/* One HTTP/1.1 request with "Connection: close" on a new connection;
 * content_type and body may be NULL. The body is sent while the response
 * is read, so a server that answers early (413) and closes is seen. 0 when
 * a whole response was read, -1 otherwise (r->status may still be set). */
int wst_http(int port, const char *method, const char *path,
             const char *content_type, const void *body, size_t body_len,
             wst_http_response *r, int timeout_ms);
/* The same with extra header lines, each ending in "\r\n" ("Authorization:
 * Bearer x\r\n"), or NULL. */
int wst_http_with_headers(int port, const char *method, const char *path,
                          const char *headers, const char *content_type,
                          const void *body, size_t body_len,
                          wst_http_response *r, int timeout_ms);
void wst_http_response_free(wst_http_response *r);

/* The value of a response header (case-insensitive name) copied into out;
 * 0 when found. */
int wst_http_header(const wst_http_response *r, const char *name, char *out,
                    size_t cap);

#endif /* DEMIX_WS_TEST_CLIENT_H */
