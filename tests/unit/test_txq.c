/*
 * test_txq.c - server/txq.c, a session's outbound queue: entries come out
 * in order with their type, length and bytes; the headroom before each
 * payload is writable without touching its neighbours; a reserve that
 * does not fit returns NULL and room() says what does; a queue drained to
 * empty starts over at the front; live entries are moved to the front
 * when the end is reached; a commit without a reserve, or longer than it,
 * is ignored; grow keeps the entries; frame() writes the oldest entries
 * as RFC 6455 server frames (the three length forms, text and binary
 * opcodes, FIN, no mask), whole frames only, stopping at a CLOSE entry,
 * and leaves the queue as it was; pop_n pops that many.
 *
 * Thread context: the test's one thread.
 */
#include "testutil.h"

#include <stdint.h>
#include <string.h>

#include "txq.h"

#define PRE 12 /* rounded up to 16 by the queue */

/* Queue one entry of len bytes, each byte (seed + i). */
static void push(demixd_txq *q, demixd_txq_type type, size_t len, uint8_t seed)
{
    uint8_t *p = demixd_txq_reserve(q, len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i);
    demixd_txq_commit(q, type, len);
}

/* The oldest entry is (type, len, seed); pop it. */
static void expect_pop(demixd_txq *q, demixd_txq_type type, size_t len,
                       uint8_t seed)
{
    demixd_txq_type t;
    uint8_t *p;
    size_t n;
    assert_int_equal(demixd_txq_peek(q, &t, &p, &n), 1);
    assert_int_equal(t, type);
    assert_int_equal(n, len);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(p[i], (uint8_t)(seed + i));
    demixd_txq_pop(q);
}

static void test_entry_size(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 1000, PRE), DEMIX_OK);
    assert_int_equal(q.pre, 16);
    assert_int_equal(q.cap, 1000); /* already a multiple of 8 */
    /* 8-byte record, 16 of headroom, payload padded to 8. */
    assert_int_equal(demixd_txq_entry_bytes(&q, 0), 24);
    assert_int_equal(demixd_txq_entry_bytes(&q, 1), 32);
    assert_int_equal(demixd_txq_entry_bytes(&q, 8), 32);
    assert_int_equal(demixd_txq_entry_bytes(&q, 9), 40);
    demixd_txq_free(&q);
    assert_null(q.buf);
    demixd_txq_free(NULL); /* a no-op */
}

static void test_fifo_round_trip(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 4096, PRE), DEMIX_OK);
    demixd_txq_type t;
    uint8_t *p;
    size_t n;
    assert_int_equal(demixd_txq_peek(&q, &t, &p, &n), 0); /* empty */
    demixd_txq_pop(&q);                                   /* a no-op */
    assert_int_equal(demixd_txq_used(&q), 0);

    push(&q, DEMIXD_TXQ_TEXT, 5, 'a');
    push(&q, DEMIXD_TXQ_BINARY, 300, 7);
    push(&q, DEMIXD_TXQ_BINARY, 0, 0);
    uint8_t *c = demixd_txq_reserve(&q, 4);
    assert_non_null(c);
    c[0] = 0x03, c[1] = 0xe8, c[2] = 'o', c[3] = 'k'; /* 1000, "ok" */
    demixd_txq_commit(&q, DEMIXD_TXQ_CLOSE, 4);
    assert_int_equal(q.count, 4);
    assert_int_equal(demixd_txq_used(&q), demixd_txq_entry_bytes(&q, 5) +
                                              demixd_txq_entry_bytes(&q, 300) +
                                              demixd_txq_entry_bytes(&q, 0) +
                                              demixd_txq_entry_bytes(&q, 4));

    expect_pop(&q, DEMIXD_TXQ_TEXT, 5, 'a');
    expect_pop(&q, DEMIXD_TXQ_BINARY, 300, 7);
    expect_pop(&q, DEMIXD_TXQ_BINARY, 0, 0);
    assert_int_equal(demixd_txq_peek(&q, &t, &p, &n), 1);
    assert_int_equal(t, DEMIXD_TXQ_CLOSE);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "\x03\xe8ok", 4);
    demixd_txq_pop(&q);
    /* Drained: the queue starts over at the front. */
    assert_int_equal(q.count, 0);
    assert_int_equal(q.head, 0);
    assert_int_equal(q.tail, 0);
    assert_int_equal(demixd_txq_used(&q), 0);
    demixd_txq_free(&q);
}

/* lws writes its frame header into the `pre` bytes before a payload: doing
 * so must not disturb the entries before or after. */
static void test_headroom_is_writable(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 4096, PRE), DEMIX_OK);
    push(&q, DEMIXD_TXQ_BINARY, 33, 1);
    push(&q, DEMIXD_TXQ_TEXT, 10, 50);
    push(&q, DEMIXD_TXQ_BINARY, 7, 90);
    demixd_txq_type t;
    uint8_t *p;
    size_t n;
    assert_int_equal(demixd_txq_peek(&q, &t, &p, &n), 1);
    memset(p - PRE, 0xEE, PRE); /* the first entry's headroom */
    expect_pop(&q, DEMIXD_TXQ_BINARY, 33, 1);
    assert_int_equal(demixd_txq_peek(&q, &t, &p, &n), 1);
    memset(p - q.pre, 0xDD, q.pre); /* all of the second's */
    expect_pop(&q, DEMIXD_TXQ_TEXT, 10, 50);
    expect_pop(&q, DEMIXD_TXQ_BINARY, 7, 90);
    demixd_txq_free(&q);
}

static void test_full_and_room(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 256, PRE), DEMIX_OK);
    /* Empty: 256 - 8 - 16 = 232 bytes of payload fit in one entry. */
    assert_int_equal(demixd_txq_room(&q), 232);
    assert_null(demixd_txq_reserve(&q, 233));
    assert_int_equal(q.reserved, 0);
    push(&q, DEMIXD_TXQ_BINARY, 100, 3); /* 128 bytes */
    assert_int_equal(demixd_txq_room(&q), 256 - 128 - 24);
    size_t room = demixd_txq_room(&q);
    assert_null(demixd_txq_reserve(&q, room + 1));
    push(&q, DEMIXD_TXQ_TEXT, room, 9); /* exactly the room */
    assert_int_equal(demixd_txq_used(&q), 256);
    assert_int_equal(demixd_txq_room(&q), 0);
    assert_null(demixd_txq_reserve(&q, 0));
    expect_pop(&q, DEMIXD_TXQ_BINARY, 100, 3);
    expect_pop(&q, DEMIXD_TXQ_TEXT, room, 9);
    demixd_txq_free(&q);
}

/* Entries after a popped one are moved to the front when a reserve would
 * pass the end of the buffer; they stay intact and in order. */
static void test_moves_to_front(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 256, PRE), DEMIX_OK);
    push(&q, DEMIXD_TXQ_BINARY, 96, 1); /* 120 bytes at 0 */
    push(&q, DEMIXD_TXQ_BINARY, 40, 2); /* 64 bytes at 120 */
    expect_pop(&q, DEMIXD_TXQ_BINARY, 96, 1);
    assert_int_equal(q.head, 120);
    /* 184 + 104 > 256 at the tail, but 64 + 104 fits once moved. */
    push(&q, DEMIXD_TXQ_TEXT, 80, 3);
    assert_int_equal(q.head, 0);
    expect_pop(&q, DEMIXD_TXQ_BINARY, 40, 2);
    expect_pop(&q, DEMIXD_TXQ_TEXT, 80, 3);
    demixd_txq_free(&q);
}

static void test_bad_commits_are_ignored(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 1024, PRE), DEMIX_OK);
    demixd_txq_commit(&q, DEMIXD_TXQ_TEXT, 4); /* no reserve */
    assert_int_equal(q.count, 0);
    assert_non_null(demixd_txq_reserve(&q, 16));
    demixd_txq_commit(&q, DEMIXD_TXQ_TEXT, 17); /* longer than reserved */
    assert_int_equal(q.count, 0);
    demixd_txq_commit(&q, DEMIXD_TXQ_TEXT, 16); /* the reserve still holds */
    assert_int_equal(q.count, 1);
    demixd_txq_commit(&q, DEMIXD_TXQ_TEXT, 16); /* used up */
    assert_int_equal(q.count, 1);
    demixd_txq_free(&q);
}

static void test_grow_keeps_entries(void **state)
{
    (void)state;
    demixd_txq q;
    assert_int_equal(demixd_txq_init(&q, 128, PRE), DEMIX_OK);
    push(&q, DEMIXD_TXQ_BINARY, 20, 4);
    push(&q, DEMIXD_TXQ_TEXT, 30, 5);
    expect_pop(&q, DEMIXD_TXQ_BINARY, 20, 4);
    assert_null(demixd_txq_reserve(&q, 200));
    assert_int_equal(demixd_txq_grow(&q, 100), DEMIX_OK); /* smaller: kept */
    assert_int_equal(q.cap, 128);
    assert_int_equal(demixd_txq_grow(&q, 1001), DEMIX_OK);
    assert_int_equal(q.cap, 1008);
    assert_int_equal(q.head, 0);
    push(&q, DEMIXD_TXQ_BINARY, 200, 6);
    expect_pop(&q, DEMIXD_TXQ_TEXT, 30, 5);
    expect_pop(&q, DEMIXD_TXQ_BINARY, 200, 6);
    demixd_txq_free(&q);
}

/* Parse one server frame at p: FIN set, no mask, opcode and payload. */
static const uint8_t *expect_frame(const uint8_t *p, int opcode, size_t len,
                                   uint8_t seed)
{
    assert_int_equal(p[0], 0x80 | opcode);
    assert_int_equal(p[1] & 0x80, 0); /* a server never masks */
    size_t n = p[1] & 0x7f, hdr = 2;
    if (n == 126) {
        n = ((size_t)p[2] << 8) | p[3];
        hdr = 4;
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | p[2 + i];
        hdr = 10;
    }
    assert_int_equal(n, len);
    assert_int_equal(hdr, demixd_txq_frame_header_bytes(len));
    for (size_t i = 0; i < len; i++)
        assert_int_equal(p[hdr + i], (uint8_t)(seed + i));
    return p + hdr + len;
}

static void test_frame_writes_whole_frames(void **state)
{
    (void)state;
    demixd_txq q;
    static uint8_t dst[200000];
    assert_int_equal(demixd_txq_init(&q, 256 * 1024, PRE), DEMIX_OK);
    push(&q, DEMIXD_TXQ_TEXT, 125, 1);        /* 7-bit length */
    push(&q, DEMIXD_TXQ_BINARY, 126, 2);      /* 16-bit */
    push(&q, DEMIXD_TXQ_BINARY, 65535, 3);    /* 16-bit, largest */
    push(&q, DEMIXD_TXQ_BINARY, 65536, 4);    /* 64-bit */
    push(&q, DEMIXD_TXQ_CLOSE, 4, 5);
    push(&q, DEMIXD_TXQ_BINARY, 10, 6);
    int n = -1;
    size_t len = demixd_txq_frame(&q, dst, sizeof dst, &n);
    assert_int_equal(n, 4);
    const uint8_t *p = dst;
    p = expect_frame(p, 0x1, 125, 1);
    p = expect_frame(p, 0x2, 126, 2);
    p = expect_frame(p, 0x2, 65535, 3);
    p = expect_frame(p, 0x2, 65536, 4);
    assert_int_equal((size_t)(p - dst), len);
    assert_int_equal(q.count, 6); /* unchanged */

    /* room for the first two frames only: whole frames, no part of a third */
    size_t two = 2 + 125 + 4 + 126;
    len = demixd_txq_frame(&q, dst, two + 100, &n);
    assert_int_equal(n, 2);
    assert_int_equal(len, two);
    /* a first entry that does not fit: nothing */
    len = demixd_txq_frame(&q, dst, 100, &n);
    assert_int_equal(n, 0);
    assert_int_equal(len, 0);

    demixd_txq_pop_n(&q, 4);
    len = demixd_txq_frame(&q, dst, sizeof dst, &n); /* CLOSE first */
    assert_int_equal(n, 0);
    assert_int_equal(len, 0);
    expect_pop(&q, DEMIXD_TXQ_CLOSE, 4, 5);
    len = demixd_txq_frame(&q, dst, sizeof dst, &n);
    assert_int_equal(n, 1);
    expect_frame(dst, 0x2, 10, 6);
    demixd_txq_pop_n(&q, 1);
    len = demixd_txq_frame(&q, dst, sizeof dst, &n); /* empty */
    assert_int_equal(n, 0);
    assert_int_equal(len, 0);
    demixd_txq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_size),
        cmocka_unit_test(test_fifo_round_trip),
        cmocka_unit_test(test_headroom_is_writable),
        cmocka_unit_test(test_full_and_room),
        cmocka_unit_test(test_moves_to_front),
        cmocka_unit_test(test_bad_commits_are_ignored),
        cmocka_unit_test(test_grow_keeps_entries),
        cmocka_unit_test(test_frame_writes_whole_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
