/*
 * txq.h - a session's outbound queue: WebSocket messages (text, binary, and
 * a final close) waiting for LWS_CALLBACK_SERVER_WRITEABLE, in one
 * fixed-size byte buffer allocated at session open.
 *
 * Usage sketch:
 *
 *     demixd_txq q;
 *     demixd_txq_init(&q, 256 * 1024, LWS_PRE);
 *     uint8_t *p = demixd_txq_reserve(&q, max_len); // NULL: no room now
 *     n = write_message(p, max_len);                // p has `pre` bytes
 *     demixd_txq_commit(&q, DEMIXD_TXQ_BINARY, n);  // of headroom before it
 *     ...
 *     while (demixd_txq_peek(&q, &type, &p, &n)) {  // SERVER_WRITEABLE
 *         lws_write(wsi, p, n, ...);
 *         demixd_txq_pop(&q);
 *     }
 *
 * or several entries to one send: demixd_txq_frame() writes the oldest
 * text and binary entries as WebSocket frames into a buffer, to be
 * written raw (LWS_WRITE_RAW) and then popped (demixd_txq_pop_n).
 *
 * Layout: entries follow each other from `head` to `tail`; each is an
 * 8-byte record header, `pre` bytes of headroom (lws writes its frame
 * header there), the payload, padding to 8 bytes. When the end of the
 * buffer is reached the live entries are moved to the front (rare: the
 * queue is usually drained to empty, which resets it). Nothing grows.
 *
 * Threads: one thread (the lws service thread).
 */
#ifndef DEMIXD_TXQ_H
#define DEMIXD_TXQ_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

typedef enum demixd_txq_type {
    DEMIXD_TXQ_TEXT = 1,
    DEMIXD_TXQ_BINARY = 2,
    DEMIXD_TXQ_CLOSE = 3, /* payload: u16 close code (host order), reason */
} demixd_txq_type;

typedef struct demixd_txq {
    uint8_t *buf;
    size_t cap, pre; /* pre rounded up to 8 */
    size_t head, tail;
    size_t reserved; /* bytes reserved by the last reserve, 0 if none */
    int count;       /* entries */
} demixd_txq;

DEMIX_WARN_UNUSED int demixd_txq_init(demixd_txq *q, size_t cap, size_t pre);
void demixd_txq_free(demixd_txq *q);

/* Enlarge the buffer to cap bytes, keeping the queued entries.
 * DEMIX_ENOMEM (the queue is unchanged). */
DEMIX_WARN_UNUSED int demixd_txq_grow(demixd_txq *q, size_t cap);

/* Room for one payload of up to max_len bytes: its address (with `pre`
 * writable bytes before it), or NULL when it does not fit now. The space is
 * the caller's until commit or the next reserve. */
uint8_t *demixd_txq_reserve(demixd_txq *q, size_t max_len);
/* Append the reserved entry with its real length (<= max_len). */
void demixd_txq_commit(demixd_txq *q, demixd_txq_type type, size_t len);

/* The oldest entry; 0 when empty. */
int demixd_txq_peek(demixd_txq *q, demixd_txq_type *type, uint8_t **payload,
                    size_t *len);
void demixd_txq_pop(demixd_txq *q);
void demixd_txq_pop_n(demixd_txq *q, int n);

/* Frame the oldest entries, in order, as RFC 6455 server frames (FIN, the
 * text or binary opcode, no mask: section 5.2) into dst: as many whole
 * frames as fit in cap bytes, stopping before a CLOSE entry (lws closes).
 * Returns the bytes written and sets *entries to the entries framed; 0
 * entries when the queue is empty, starts with a CLOSE, or its first
 * entry does not fit in cap. The queue is unchanged. */
size_t demixd_txq_frame(const demixd_txq *q, uint8_t *dst, size_t cap,
                        int *entries);
/* The bytes of a frame header for a payload of len (2, 4 or 10). */
size_t demixd_txq_frame_header_bytes(size_t len);

/* Bytes held by entries (headers included). */
size_t demixd_txq_used(const demixd_txq *q);
/* Largest payload a reserve could get now. */
size_t demixd_txq_room(const demixd_txq *q);

/* Entry bytes for a payload of len (for sizing). */
size_t demixd_txq_entry_bytes(const demixd_txq *q, size_t len);

#endif /* DEMIXD_TXQ_H */
