/*
 * wsio_frame.c - RFC 6455 frame parser and encoder (see wsio_frame.h).
 *
 * The parser is a two-state machine (header, payload) that consumes as
 * many bytes as it can per call and stops at each event. A header is
 * parsed in place when all of it is in the caller's bytes, else collected
 * in rx->hdr. A payload that is whole in the caller's bytes is handed out
 * in place (control frames, unfragmented messages); the rest is copied
 * into rx->ctl or rx->buf as it arrives, unmasked on the way.
 *
 * Thread context: a parser belongs to one thread.
 */
#include "wsio_frame.h"

#include <stdlib.h>
#include <string.h>

#define WSIO_RX_START_BYTES 4096 /* the message buffer's first size */

void wsio_rx_init(wsio_rx *rx, size_t max_message_bytes, int accept_masked)
{
    memset(rx, 0, sizeof *rx);
    rx->max_message_bytes = max_message_bytes;
    rx->accept_masked = accept_masked;
}

void wsio_rx_free(wsio_rx *rx)
{
    free(rx->buf);
    rx->buf = NULL;
    rx->buf_len = rx->buf_cap = 0;
}

size_t wsio_frame_header_bytes(uint64_t len, int masked)
{
    size_t n = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    return n + (masked ? 4 : 0);
}

size_t wsio_frame_header(uint8_t *out, int opcode, int fin, uint64_t len,
                         const uint8_t *key)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    uint8_t m = key ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        out[1] = m | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (key) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    return n;
}

void wsio_frame_mask(uint8_t *data, size_t len, const uint8_t key[4],
                     uint64_t offset)
{
    /* The key rotated to this offset, twice over: an 8-byte word in
     * memory order, so the XOR is the same on either endianness. */
    uint8_t k8[8];
    for (int i = 0; i < 8; i++)
        k8[i] = key[(offset + (uint64_t)i) & 3];
    uint64_t k;
    memcpy(&k, k8, sizeof k);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, sizeof w);
        w ^= k;
        memcpy(data + i, &w, sizeof w);
    }
    for (; i < len; i++)
        data[i] ^= k8[i & 7];
}

/* Header bytes announced by a frame's first two bytes. */
static unsigned header_need(uint8_t b1)
{
    unsigned len7 = b1 & 0x7F;
    unsigned n = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    return n + ((b1 & 0x80) ? 4 : 0);
}

static void fail(wsio_rx *rx, wsio_frame_event *ev, int code, const char *error)
{
    rx->dead_code = code;
    rx->dead_error = error;
    ev->kind = WSIO_FRAME_ERROR;
    ev->close_code = code;
    ev->error = error;
}

/* Take a complete header h; 0, or -1 after fail(). */
static int start_frame(wsio_rx *rx, const uint8_t *h, wsio_frame_event *ev)
{
    uint8_t b0 = h[0], b1 = h[1];
    if (b0 & 0x70) {
        fail(rx, ev, 1002, "a frame with reserved bits set");
        return -1;
    }
    int op = b0 & 0x0F;
    int fin = (b0 & 0x80) != 0;
    int masked = (b1 & 0x80) != 0;
    uint64_t len = b1 & 0x7F;
    size_t at = 2;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        if (len >> 63) {
            fail(rx, ev, 1002, "a frame length with its top bit set");
            return -1;
        }
    }
    if (masked && !rx->accept_masked) {
        fail(rx, ev, 1002, "a masked frame from the server");
        return -1;
    }
    switch (op) {
    case WSIO_OP_CLOSE:
    case WSIO_OP_PING:
    case WSIO_OP_PONG:
        if (!fin || len > WSIO_FRAME_MAX_CONTROL) {
            fail(rx, ev, 1002, "a fragmented or long control frame");
            return -1;
        }
        rx->ctl_len = 0;
        break;
    case WSIO_OP_TEXT:
    case WSIO_OP_BINARY:
        if (rx->msg_opcode) {
            fail(rx, ev, 1002, "a new message inside a fragmented one");
            return -1;
        }
        if (len > rx->max_message_bytes) {
            fail(rx, ev, 1009, "a message over the size limit");
            return -1;
        }
        rx->msg_opcode = op;
        rx->buf_len = 0;
        break;
    case WSIO_OP_CONTINUATION:
        if (!rx->msg_opcode) {
            fail(rx, ev, 1002, "a continuation frame without a message");
            return -1;
        }
        if (len > rx->max_message_bytes - rx->buf_len) {
            fail(rx, ev, 1009, "a message over the size limit");
            return -1;
        }
        break;
    default:
        fail(rx, ev, 1002, "a frame with an unknown opcode");
        return -1;
    }
    rx->opcode = op;
    rx->fin = fin;
    rx->masked = masked;
    if (masked)
        memcpy(rx->mask, h + at, 4);
    rx->frame_len = rx->frame_left = len;
    rx->in_payload = 1;
    return 0;
}

/* A frame's payload is all in (at p, n bytes): its event, or 0 when it
 * was a fragment of a message still going on. */
static int finish_frame(wsio_rx *rx, uint8_t *p, size_t n, wsio_frame_event *ev)
{
    rx->in_payload = 0;
    switch (rx->opcode) {
    case WSIO_OP_PING:
        ev->kind = WSIO_FRAME_PING;
        break;
    case WSIO_OP_PONG:
        ev->kind = WSIO_FRAME_PONG;
        break;
    case WSIO_OP_CLOSE:
        ev->kind = WSIO_FRAME_CLOSE;
        if (n == 1) {
            fail(rx, ev, 1002, "a close frame of one byte");
            return 1;
        }
        ev->close_code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
        if (n >= 2) {
            p += 2;
            n -= 2;
        }
        break;
    default: /* data */
        if (!rx->fin)
            return 0;
        ev->kind = WSIO_FRAME_MESSAGE;
        ev->binary = rx->msg_opcode == WSIO_OP_BINARY;
        rx->msg_opcode = 0;
        break;
    }
    ev->data = p;
    ev->len = n;
    return 1;
}

/* Room for `more` bytes in the message buffer; 0, or -1 after fail(). */
static int reserve(wsio_rx *rx, size_t more, wsio_frame_event *ev)
{
    size_t need = rx->buf_len + more; /* <= max_message_bytes: checked */
    if (need <= rx->buf_cap)
        return 0;
    size_t cap = rx->buf_cap ? rx->buf_cap : WSIO_RX_START_BYTES;
    while (cap < need)
        cap *= 2;
    if (cap > rx->max_message_bytes)
        cap = rx->max_message_bytes;
    uint8_t *b = realloc(rx->buf, cap);
    if (!b) {
        fail(rx, ev, 1011, "out of memory for a message");
        return -1;
    }
    rx->buf = b;
    rx->buf_cap = cap;
    return 0;
}

size_t wsio_rx_next(wsio_rx *rx, uint8_t *data, size_t len,
                    wsio_frame_event *ev)
{
    memset(ev, 0, sizeof *ev);
    if (rx->dead_code) {
        ev->kind = WSIO_FRAME_ERROR;
        ev->close_code = rx->dead_code;
        ev->error = rx->dead_error;
        return 0;
    }
    if (rx->reset_buf) {
        rx->reset_buf = 0;
        rx->buf_len = 0;
    }
    size_t off = 0;
    for (;;) {
        if (!rx->in_payload) {
            const uint8_t *h;
            if (rx->hdr_len == 0 && len - off >= 2 &&
                len - off >= header_need(data[off + 1])) {
                h = data + off; /* the whole header is here */
                off += header_need(data[off + 1]);
            } else {
                while (off < len && rx->hdr_len < 2)
                    rx->hdr[rx->hdr_len++] = data[off++];
                if (rx->hdr_len < 2)
                    return off; /* kind MORE */
                rx->hdr_need = header_need(rx->hdr[1]);
                size_t n = rx->hdr_need - rx->hdr_len;
                if (n > len - off)
                    n = len - off;
                memcpy(rx->hdr + rx->hdr_len, data + off, n);
                rx->hdr_len += (unsigned)n;
                off += n;
                if (rx->hdr_len < rx->hdr_need)
                    return off;
                h = rx->hdr;
                rx->hdr_len = 0;
            }
            if (start_frame(rx, h, ev))
                return off;
            if (rx->frame_left == 0) {
                uint8_t *p = rx->opcode & 0x08 || !rx->buf ? rx->ctl : rx->buf;
                size_t n = rx->opcode & 0x08 ? 0 : rx->buf_len;
                if (finish_frame(rx, p, n, ev)) {
                    rx->reset_buf = !(rx->opcode & 0x08);
                    return off;
                }
                continue;
            }
        }

        size_t avail = len - off;
        int control = (rx->opcode & 0x08) != 0;
        /* Fast path: the whole payload is here, nothing of it copied, and
         * it is a control frame or a message in one frame. */
        if (rx->frame_left <= avail && rx->frame_left == rx->frame_len &&
            (control || (rx->fin && rx->opcode != WSIO_OP_CONTINUATION))) {
            size_t n = (size_t)rx->frame_left;
            uint8_t *p = data + off;
            if (rx->masked)
                wsio_frame_mask(p, n, rx->mask, 0);
            off += n;
            rx->frame_left = 0;
            finish_frame(rx, p, n, ev);
            return off;
        }
        if (avail == 0)
            return off;

        /* Copy what is here of the payload. */
        size_t n = rx->frame_left < avail ? (size_t)rx->frame_left : avail;
        uint64_t done = rx->frame_len - rx->frame_left;
        uint8_t *dst;
        if (control) {
            dst = rx->ctl + rx->ctl_len;
            rx->ctl_len += n;
        } else {
            if (reserve(rx, (size_t)rx->frame_left, ev))
                return off;
            dst = rx->buf + rx->buf_len;
            rx->buf_len += n;
        }
        memcpy(dst, data + off, n);
        if (rx->masked)
            wsio_frame_mask(dst, n, rx->mask, done);
        off += n;
        rx->frame_left -= n;
        if (rx->frame_left > 0)
            return off; /* off == len */
        uint8_t *p = control ? rx->ctl : rx->buf;
        size_t plen = control ? rx->ctl_len : rx->buf_len;
        if (finish_frame(rx, p, plen, ev)) {
            rx->reset_buf = !control;
            return off;
        }
    }
}
