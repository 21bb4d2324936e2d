/*
 * txq.c - the outbound message queue of txq.h.
 *
 * Thread context: the lws service thread.
 */
#include "txq.h"

#include <stdlib.h>
#include <string.h>

#define REC_BYTES 8u
#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

typedef struct rec {
    uint32_t len;
    uint8_t type;
    uint8_t pad[3];
} rec;

int demixd_txq_init(demixd_txq *q, size_t cap, size_t pre)
{
    memset(q, 0, sizeof *q);
    q->pre = ALIGN8(pre);
    q->cap = ALIGN8(cap);
    q->buf = malloc(q->cap);
    return q->buf ? DEMIX_OK : DEMIX_ENOMEM;
}

void demixd_txq_free(demixd_txq *q)
{
    if (!q)
        return;
    free(q->buf);
    memset(q, 0, sizeof *q);
}

int demixd_txq_grow(demixd_txq *q, size_t cap)
{
    cap = ALIGN8(cap);
    if (cap <= q->cap)
        return DEMIX_OK;
    uint8_t *b = malloc(cap);
    if (!b)
        return DEMIX_ENOMEM;
    memcpy(b, q->buf + q->head, q->tail - q->head);
    free(q->buf);
    q->buf = b;
    q->tail -= q->head;
    q->head = 0;
    q->cap = cap;
    q->reserved = 0;
    return DEMIX_OK;
}

size_t demixd_txq_entry_bytes(const demixd_txq *q, size_t len)
{
    return REC_BYTES + q->pre + ALIGN8(len);
}

uint8_t *demixd_txq_reserve(demixd_txq *q, size_t max_len)
{
    size_t need = demixd_txq_entry_bytes(q, max_len);
    q->reserved = 0;
    if (q->tail + need > q->cap) {
        if (q->head > 0) {
            memmove(q->buf, q->buf + q->head, q->tail - q->head);
            q->tail -= q->head;
            q->head = 0;
        }
        if (q->tail + need > q->cap)
            return NULL;
    }
    q->reserved = need;
    return q->buf + q->tail + REC_BYTES + q->pre;
}

void demixd_txq_commit(demixd_txq *q, demixd_txq_type type, size_t len)
{
    if (!q->reserved || demixd_txq_entry_bytes(q, len) > q->reserved)
        return; /* programmer error; callers check their lengths */
    rec r = {(uint32_t)len, (uint8_t)type, {0}};
    memcpy(q->buf + q->tail, &r, sizeof r);
    q->tail += demixd_txq_entry_bytes(q, len);
    q->reserved = 0;
    q->count++;
}

int demixd_txq_peek(demixd_txq *q, demixd_txq_type *type, uint8_t **payload,
                    size_t *len)
{
    if (!q->count)
        return 0;
    rec r;
    memcpy(&r, q->buf + q->head, sizeof r);
    *type = (demixd_txq_type)r.type;
    *payload = q->buf + q->head + REC_BYTES + q->pre;
    *len = r.len;
    return 1;
}

void demixd_txq_pop(demixd_txq *q)
{
    if (!q->count)
        return;
    rec r;
    memcpy(&r, q->buf + q->head, sizeof r);
    q->head += demixd_txq_entry_bytes(q, r.len);
    if (--q->count == 0)
        q->head = q->tail = 0;
}

void demixd_txq_pop_n(demixd_txq *q, int n)
{
    while (n-- > 0)
        demixd_txq_pop(q);
}

size_t demixd_txq_frame_header_bytes(size_t len)
{
    return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

/* RFC 6455 5.2: FIN | opcode, then the payload length in 7 bits, or 126
 * and 16 bits, or 127 and 64 bits, big-endian; a server never masks. */
static size_t put_frame_header(uint8_t *dst, demixd_txq_type type, size_t len)
{
    dst[0] = (uint8_t)(0x80 | (type == DEMIXD_TXQ_TEXT ? 0x1 : 0x2));
    if (len < 126) {
        dst[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        dst[1] = 126;
        dst[2] = (uint8_t)(len >> 8);
        dst[3] = (uint8_t)len;
        return 4;
    }
    dst[1] = 127;
    for (int i = 0; i < 8; i++)
        dst[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

size_t demixd_txq_frame(const demixd_txq *q, uint8_t *dst, size_t cap,
                        int *entries)
{
    size_t at = q->head, out = 0;
    int n = 0;
    while (n < q->count) {
        rec r;
        memcpy(&r, q->buf + at, sizeof r);
        if (r.type != DEMIXD_TXQ_TEXT && r.type != DEMIXD_TXQ_BINARY)
            break;
        size_t frame = demixd_txq_frame_header_bytes(r.len) + r.len;
        if (out + frame > cap)
            break;
        out += put_frame_header(dst + out, (demixd_txq_type)r.type, r.len);
        memcpy(dst + out, q->buf + at + REC_BYTES + q->pre, r.len);
        out += r.len;
        at += demixd_txq_entry_bytes(q, r.len);
        n++;
    }
    *entries = n;
    return out;
}

size_t demixd_txq_used(const demixd_txq *q)
{
    return q->tail - q->head;
}

size_t demixd_txq_room(const demixd_txq *q)
{
    size_t free_bytes = q->cap - (q->tail - q->head);
    size_t over = REC_BYTES + q->pre;
    return free_bytes > over ? (free_bytes - over) & ~(size_t)7u : 0;
}
