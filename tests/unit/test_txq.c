/*
 * test_txq.c - server/txq.c, a session's outbound queue: entries come out
 * in order with their type, length and bytes; the headroom before each
 * payload is writable without touching its neighbours; a reserve that
 * does not fit returns NULL and room() says what does; a queue drained to
 * empty starts over at the front; live entries are moved to the front
 * when the end is reached; a commit without a reserve, or longer than it,
 * is ignored; grow keeps the entries.
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
