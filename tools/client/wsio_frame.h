/*
 * wsio_frame.h - RFC 6455 framing for the lean WebSocket client (wsio.h):
 * a receive parser that turns a byte stream into whole messages and
 * control frames, and the encoder of a frame header plus the payload mask.
 * No I/O, no threads: bytes in, events out (tests/unit/test_wsio.c feeds
 * it crafted streams split at every byte).
 *
 * Usage sketch (the receive side of one connection):
 *
 *     wsio_rx rx;
 *     wsio_rx_init(&rx, 65536, 0);           // message limit; no masks
 *     ... n = recv(fd, buf, sizeof buf, 0) ...
 *     size_t off = 0;
 *     for (;;) {
 *         wsio_frame_event ev;
 *         off += wsio_rx_next(&rx, buf + off, n - off, &ev);
 *         if (ev.kind == WSIO_FRAME_MORE) break;   // all of buf consumed
 *         if (ev.kind == WSIO_FRAME_ERROR) { close with ev.close_code; }
 *         ... use ev.data, ev.len (valid until the next wsio_rx_next) ...
 *     }
 *     wsio_rx_free(&rx);
 *
 *     // sending: header in front of the payload, then the mask
 *     uint8_t key[4] = {...};                    // fresh per frame
 *     size_t h = wsio_frame_header(hdr, WSIO_OP_BINARY, 1, len, key);
 *     wsio_frame_mask(payload, len, key, 0);
 *
 * Design. The fast path does no per-byte work: when a frame's header and
 * whole payload are inside the bytes given, and it is a control frame or
 * an unfragmented data message, the event points into the caller's bytes
 * (unmasked in place when masked), so data is neither copied nor
 * inspected. Only what straddles two calls is copied: header bytes into a
 * 14-byte array, a control frame's payload into a 125-byte array, a data
 * frame's payload (and the fragments of a fragmented message) into the
 * parser's message buffer, which grows by doubling to the largest message
 * seen and never beyond max_message_bytes: the limit is checked against
 * each header's declared length before anything is buffered. Masks are
 * applied 8 bytes at a time.
 *
 * Errors (event WSIO_FRAME_ERROR; the parser is then dead: every later
 * call returns the same error): reserved bits set, an unknown opcode, a
 * fragmented or long (> 125 bytes) control frame, a continuation without
 * a message or a new message inside a fragmented one, a 64-bit length
 * with its top bit set, a masked frame when masks are not accepted (a
 * client must refuse them: RFC 6455 5.1), all close code 1002; a message
 * over max_message_bytes, 1009; no memory for the buffer, 1011.
 *
 * Thread context: a parser belongs to one thread (its connection's).
 */
#ifndef DEMIX_WSIO_FRAME_H
#define DEMIX_WSIO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WSIO_FRAME_MAX_HEADER 14   /* 2 + 8 (64-bit length) + 4 (mask) */
#define WSIO_FRAME_MAX_CONTROL 125 /* control frame payload */

enum wsio_opcode {
    WSIO_OP_CONTINUATION = 0x0,
    WSIO_OP_TEXT = 0x1,
    WSIO_OP_BINARY = 0x2,
    WSIO_OP_CLOSE = 0x8,
    WSIO_OP_PING = 0x9,
    WSIO_OP_PONG = 0xA,
};

typedef enum wsio_frame_kind {
    WSIO_FRAME_MORE = 0, /* every byte given was consumed; call again */
    WSIO_FRAME_MESSAGE,  /* a whole data message: binary, data, len */
    WSIO_FRAME_PING,     /* data, len: the payload to echo in a pong */
    WSIO_FRAME_PONG,
    WSIO_FRAME_CLOSE, /* close_code (1005: none given), reason: data, len */
    WSIO_FRAME_ERROR, /* close_code, error: the frame broke the rules */
} wsio_frame_kind;

typedef struct wsio_frame_event {
    wsio_frame_kind kind;
    int binary;    /* MESSAGE: 1 binary, 0 text */
    uint8_t *data; /* payload; valid until the next wsio_rx_next */
    size_t len;
    int close_code;    /* CLOSE, ERROR */
    const char *error; /* ERROR: a sentence (static) */
} wsio_frame_event;

typedef struct wsio_rx {
    size_t max_message_bytes;
    int accept_masked;

    /* the frame in progress */
    uint8_t hdr[WSIO_FRAME_MAX_HEADER];
    unsigned hdr_len, hdr_need; /* need: 0 until two bytes are in */
    int in_payload;
    int opcode, fin, masked;
    uint8_t mask[4];
    uint64_t frame_len, frame_left;

    /* the data message in progress: its opcode (0: none) and the bytes
     * copied so far */
    int msg_opcode;
    uint8_t *buf;
    size_t buf_len, buf_cap;
    int reset_buf; /* the last event pointed into buf: empty it first */

    uint8_t ctl[WSIO_FRAME_MAX_CONTROL];
    size_t ctl_len;

    int dead_code; /* != 0 after an error: its close code */
    const char *dead_error;
} wsio_rx;

/* A parser for messages up to max_message_bytes; accept_masked: take
 * masked frames (a server's parser; a client's refuses them). */
void wsio_rx_init(wsio_rx *rx, size_t max_message_bytes, int accept_masked);

/* Free the message buffer (the parser may be initialised again). */
void wsio_rx_free(wsio_rx *rx);

/* Parse from data[0..len) until one event or the end of the bytes.
 * Returns the bytes consumed and sets *ev; WSIO_FRAME_MORE means all of
 * them were. data is written to (frames are unmasked in place), and an
 * event's data may point into it or into the parser. */
size_t wsio_rx_next(wsio_rx *rx, uint8_t *data, size_t len,
                    wsio_frame_event *ev);

/* Write the header of a frame (FIN as given) whose payload is len bytes,
 * masked with key when key is not NULL, into out (at least
 * WSIO_FRAME_MAX_HEADER bytes). Returns the header's length: 2, 4 or 10,
 * plus 4 with a key. */
size_t wsio_frame_header(uint8_t *out, int opcode, int fin, uint64_t len,
                         const uint8_t *key);

/* The header's length for a payload of len bytes, with or without a mask. */
size_t wsio_frame_header_bytes(uint64_t len, int masked);

/* XOR len bytes with the 4-byte key, starting at payload offset `offset`
 * (masking and unmasking are the same). */
void wsio_frame_mask(uint8_t *data, size_t len, const uint8_t key[4],
                     uint64_t offset);

#endif /* DEMIX_WSIO_FRAME_H */
