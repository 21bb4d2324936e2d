/*
 * test_wsio_frame.c - tools/wsio_frame.c, the lean client's RFC 6455
 * framing: crafted streams (text, binary with 7-, 16- and 64-bit lengths,
 * empty messages, ping, pong, close, a fragmented message with a ping in
 * the middle), masked and not, parsed whole, split at every byte boundary
 * (and at every pair of boundaries), and byte by byte, give the same
 * events; a whole frame is handed out in place; every broken frame gives
 * its close code and the parser stays dead; the header encoder's lengths
 * and bytes; masking at any offset equals the bytewise definition.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsio_frame.h"

#define MAX_EVENTS 64
#define ARENA_BYTES (1u << 20)

typedef struct ev_rec {
    wsio_frame_kind kind;
    int binary;
    int code;
    size_t off, len; /* payload copy in the arena */
} ev_rec;

typedef struct evs {
    ev_rec ev[MAX_EVENTS];
    int n;
    uint8_t *arena;
    size_t used;
} evs;

static void evs_add(evs *e, const wsio_frame_event *fe)
{
    assert_true(e->n < MAX_EVENTS);
    ev_rec *r = &e->ev[e->n++];
    r->kind = fe->kind;
    r->binary = fe->binary;
    r->code = fe->close_code;
    r->off = e->used;
    r->len = fe->kind == WSIO_FRAME_ERROR ? 0 : fe->len;
    assert_true(e->used + r->len <= ARENA_BYTES);
    if (r->len)
        memcpy(e->arena + e->used, fe->data, r->len);
    e->used += r->len;
}

/* Append a frame to out (masked with a key from *rng when masked). */
static size_t put_frame(uint8_t *out, int op, int fin, const void *payload,
                        size_t len, int masked, uint64_t *rng)
{
    uint8_t key[4];
    uint64_t r = demix_test_rand(rng);
    memcpy(key, &r, 4);
    size_t h = wsio_frame_header(out, op, fin, len, masked ? key : NULL);
    if (len)
        memcpy(out + h, payload, len);
    if (masked)
        wsio_frame_mask(out + h, len, key, 0);
    return h + len;
}

/* Parse stream[0..n) cut into pieces at cuts[0..ncuts) (ascending). */
static void feed(const uint8_t *stream, size_t n, const size_t *cuts, int ncuts,
                 int accept_masked, size_t max_bytes, evs *out)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, stream, n);
    wsio_rx rx;
    wsio_rx_init(&rx, max_bytes, accept_masked);
    out->n = 0;
    out->used = 0;
    size_t start = 0;
    for (int p = 0; p <= ncuts; p++) {
        size_t end = p < ncuts ? cuts[p] : n;
        size_t off = start;
        for (;;) {
            wsio_frame_event fe;
            off += wsio_rx_next(&rx, copy + off, end - off, &fe);
            if (fe.kind == WSIO_FRAME_MORE)
                break;
            evs_add(out, &fe);
            if (fe.kind == WSIO_FRAME_ERROR)
                goto done;
        }
        assert_int_equal(off, end);
        start = end;
    }
done:
    wsio_rx_free(&rx);
    free(copy);
}

static void assert_same(const evs *a, const evs *b, const char *how)
{
    if (a->n != b->n)
        fail_msg("%s: %d events, expected %d", how, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const ev_rec *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->binary != y->binary ||
            x->code != y->code || x->len != y->len ||
            memcmp(a->arena + x->off, b->arena + y->off, x->len) != 0)
            fail_msg("%s: event %d differs (kind %d/%d, len %zu/%zu, code "
                     "%d/%d)",
                     how, i, x->kind, y->kind, x->len, y->len, x->code,
                     y->code);
    }
}

/* The expected events of the main stream. */
static void expect_main(evs *w, const uint8_t *b300, const uint8_t *b126)
{
    wsio_frame_event fe;
    memset(&fe, 0, sizeof fe);
    w->n = 0;
    w->used = 0;
#define EXPECT(k, bin, p, l, c)                                                \
    do {                                                                       \
        fe.kind = (k);                                                         \
        fe.binary = (bin);                                                     \
        fe.data = (uint8_t *)(p);                                              \
        fe.len = (l);                                                          \
        fe.close_code = (c);                                                   \
        evs_add(w, &fe);                                                       \
    } while (0)
    EXPECT(WSIO_FRAME_MESSAGE, 0, "hello", 5, 0);
    EXPECT(WSIO_FRAME_MESSAGE, 1, b300, 300, 0);
    EXPECT(WSIO_FRAME_PING, 0, "pp", 2, 0);
    EXPECT(WSIO_FRAME_PING, 0, "x", 1, 0);
    EXPECT(WSIO_FRAME_MESSAGE, 1, "abcdefgh", 8, 0);
    EXPECT(WSIO_FRAME_MESSAGE, 0, "", 0, 0);
    EXPECT(WSIO_FRAME_PONG, 0, "q", 1, 0);
    EXPECT(WSIO_FRAME_MESSAGE, 1, b126, 125, 0);
    EXPECT(WSIO_FRAME_MESSAGE, 1, b126, 126, 0);
    EXPECT(WSIO_FRAME_CLOSE, 0, "bye", 3, 1000);
    EXPECT(WSIO_FRAME_CLOSE, 0, "", 0, 1005);
#undef EXPECT
}

static size_t make_main(uint8_t *s, int masked, uint64_t *rng,
                        const uint8_t *b300, const uint8_t *b126)
{
    size_t n = 0;
    n += put_frame(s + n, WSIO_OP_TEXT, 1, "hello", 5, masked, rng);
    n += put_frame(s + n, WSIO_OP_BINARY, 1, b300, 300, masked, rng);
    n += put_frame(s + n, WSIO_OP_PING, 1, "pp", 2, masked, rng);
    /* fragmented: abc, (ping x), empty, defgh */
    n += put_frame(s + n, WSIO_OP_BINARY, 0, "abc", 3, masked, rng);
    n += put_frame(s + n, WSIO_OP_PING, 1, "x", 1, masked, rng);
    n += put_frame(s + n, WSIO_OP_CONTINUATION, 0, "", 0, masked, rng);
    n += put_frame(s + n, WSIO_OP_CONTINUATION, 1, "defgh", 5, masked, rng);
    n += put_frame(s + n, WSIO_OP_TEXT, 1, "", 0, masked, rng);
    n += put_frame(s + n, WSIO_OP_PONG, 1, "q", 1, masked, rng);
    n += put_frame(s + n, WSIO_OP_BINARY, 1, b126, 125, masked, rng);
    n += put_frame(s + n, WSIO_OP_BINARY, 1, b126, 126, masked, rng);
    uint8_t close[5] = {0x03, 0xE8, 'b', 'y', 'e'};
    n += put_frame(s + n, WSIO_OP_CLOSE, 1, close, 5, masked, rng);
    n += put_frame(s + n, WSIO_OP_CLOSE, 1, "", 0, masked, rng);
    return n;
}

static void test_main_stream_every_split(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed();
    uint8_t b300[300], b126[126];
    for (int i = 0; i < 300; i++)
        b300[i] = (uint8_t)(i * 13 + 1);
    for (int i = 0; i < 126; i++)
        b126[i] = (uint8_t)(255 - i);
    static uint8_t arena_w[ARENA_BYTES], arena_g[ARENA_BYTES];
    evs want = {.arena = arena_w}, got = {.arena = arena_g};
    expect_main(&want, b300, b126);
    for (int masked = 0; masked <= 1; masked++) {
        uint8_t s[2048];
        size_t n = make_main(s, masked, &rng, b300, b126);
        char how[96];
        feed(s, n, NULL, 0, 1, 65536, &got);
        assert_same(&got, &want, masked ? "masked, whole" : "whole");
        for (size_t a = 1; a < n; a++) {
            size_t cut[1] = {a};
            feed(s, n, cut, 1, 1, 65536, &got);
            snprintf(how, sizeof how, "%s, cut at %zu",
                     masked ? "masked" : "plain", a);
            assert_same(&got, &want, how);
            for (size_t b = a + 1; b < n; b += 1 + masked * 6) {
                size_t cuts[2] = {a, b};
                feed(s, n, cuts, 2, 1, 65536, &got);
                snprintf(how, sizeof how, "%s, cut at %zu and %zu",
                         masked ? "masked" : "plain", a, b);
                assert_same(&got, &want, how);
            }
        }
        size_t *every = malloc(n * sizeof *every);
        assert_non_null(every);
        for (size_t i = 0; i + 1 < n; i++)
            every[i] = i + 1;
        feed(s, n, every, (int)n - 1, 1, 65536, &got);
        assert_same(&got, &want, "byte by byte");
        free(every);
    }
}

static void test_64bit_length(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed();
    size_t len = 70000;
    uint8_t *p = malloc(len), *s = malloc(len + 64);
    static uint8_t arena_w[ARENA_BYTES], arena_g[ARENA_BYTES];
    evs want = {.arena = arena_w}, got = {.arena = arena_g};
    assert_non_null(p);
    assert_non_null(s);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)demix_test_rand(&rng);
    wsio_frame_event fe = {
        .kind = WSIO_FRAME_MESSAGE, .binary = 1, .data = p, .len = len};
    evs_add(&want, &fe);
    fe = (wsio_frame_event){.kind = WSIO_FRAME_PING, .data = p, .len = 3};
    evs_add(&want, &fe);
    for (int masked = 0; masked <= 1; masked++) {
        size_t n = put_frame(s, WSIO_OP_BINARY, 1, p, len, masked, &rng);
        assert_int_equal(n - len, masked ? 14 : 10);
        n += put_frame(s + n, WSIO_OP_PING, 1, p, 3, masked, &rng);
        feed(s, n, NULL, 0, 1, 100000, &got);
        assert_same(&got, &want, "64-bit, whole");
        /* cuts in and around both headers, and in the payload */
        for (size_t a = 1; a < n; a++) {
            if (a > 40 && a < len - 40 && a % 997)
                continue;
            size_t cut[1] = {a};
            feed(s, n, cut, 1, 1, 100000, &got);
            assert_same(&got, &want, "64-bit, one cut");
        }
        size_t *every = malloc(n * sizeof *every);
        assert_non_null(every);
        for (size_t i = 0; i + 1 < n; i++)
            every[i] = i + 1;
        feed(s, n, every, (int)n - 1, 1, 100000, &got);
        assert_same(&got, &want, "64-bit, byte by byte");
        free(every);
        /* the same message over the limit */
        feed(s, n, NULL, 0, 1, 65536, &got);
        assert_int_equal(got.n, 1);
        assert_int_equal(got.ev[0].kind, WSIO_FRAME_ERROR);
        assert_int_equal(got.ev[0].code, 1009);
    }
    free(p);
    free(s);
}

static void test_in_place(void **state)
{
    (void)state;
    uint8_t s[64];
    size_t h = wsio_frame_header(s, WSIO_OP_BINARY, 1, 10, NULL);
    memset(s + h, 7, 10);
    wsio_rx rx;
    wsio_rx_init(&rx, 1000, 0);
    wsio_frame_event fe;
    size_t used = wsio_rx_next(&rx, s, h + 10, &fe);
    assert_int_equal(used, h + 10);
    assert_int_equal(fe.kind, WSIO_FRAME_MESSAGE);
    assert_ptr_equal(fe.data, s + h); /* no copy */
    assert_int_equal(fe.len, 10);
    used = wsio_rx_next(&rx, s, 0, &fe);
    assert_int_equal(used, 0);
    assert_int_equal(fe.kind, WSIO_FRAME_MORE);
    assert_null(rx.buf); /* nothing was ever buffered */
    wsio_rx_free(&rx);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
        int accept_masked;
        int code;
    } cases[] = {
        {"reserved bit", {0xC2, 0x00}, 2, 0, 1002},
        {"opcode 3", {0x83, 0x00}, 2, 0, 1002},
        {"fragmented ping", {0x09, 0x00}, 2, 0, 1002},
        {"long ping", {0x89, 0x7E, 0x00, 0x7E}, 4, 0, 1002},
        {"continuation alone", {0x80, 0x00}, 2, 0, 1002},
        {"message in a message", {0x02, 0x01, 'a', 0x82, 0x00}, 5, 0, 1002},
        {"masked from a server", {0x82, 0x81, 1, 2, 3, 4, 5}, 7, 0, 1002},
        {"too long", {0x82, 0x7E, 0x07, 0xD0}, 4, 0, 1009},
        {"64-bit top bit",
         {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1},
         10,
         0,
         1002},
        {"close of one byte", {0x88, 0x01, 0x03}, 3, 0, 1002},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[16];
        memcpy(b, cases[i].bytes, cases[i].n);
        wsio_rx rx;
        wsio_rx_init(&rx, 1000, cases[i].accept_masked);
        wsio_frame_event fe;
        size_t off = 0;
        do
            off += wsio_rx_next(&rx, b + off, cases[i].n - off, &fe);
        while (fe.kind != WSIO_FRAME_ERROR && fe.kind != WSIO_FRAME_MORE);
        if (fe.kind != WSIO_FRAME_ERROR || fe.close_code != cases[i].code)
            fail_msg("%s: kind %d code %d, expected an error %d", cases[i].what,
                     fe.kind, fe.close_code, cases[i].code);
        assert_non_null(fe.error);
        /* dead from here on */
        assert_int_equal(wsio_rx_next(&rx, b, cases[i].n, &fe), 0);
        assert_int_equal(fe.kind, WSIO_FRAME_ERROR);
        assert_int_equal(fe.close_code, cases[i].code);
        wsio_rx_free(&rx);
    }
    /* fragments that add up to more than the limit */
    uint8_t s[1500];
    uint8_t pay[600];
    memset(pay, 1, sizeof pay);
    size_t n = wsio_frame_header(s, WSIO_OP_BINARY, 0, 600, NULL);
    memcpy(s + n, pay, 600);
    n += 600;
    n += wsio_frame_header(s + n, WSIO_OP_CONTINUATION, 1, 600, NULL);
    wsio_rx rx;
    wsio_rx_init(&rx, 1000, 0);
    wsio_frame_event fe;
    size_t off = wsio_rx_next(&rx, s, n, &fe);
    assert_int_equal(fe.kind, WSIO_FRAME_ERROR);
    assert_int_equal(fe.close_code, 1009);
    assert_true(off <= n);
    wsio_rx_free(&rx);
}

static void test_header_encoder(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        size_t bytes;
    } cases[] = {{0, 2},     {125, 2},    {126, 4},
                 {65535, 4}, {65536, 10}, {(uint64_t)1 << 40, 10}};
    const uint8_t key[4] = {0xA1, 0xB2, 0xC3, 0xD4};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t h[WSIO_FRAME_MAX_HEADER];
        size_t n = wsio_frame_header(h, WSIO_OP_BINARY, 1, cases[i].len, NULL);
        assert_int_equal(n, cases[i].bytes);
        assert_int_equal(n, wsio_frame_header_bytes(cases[i].len, 0));
        assert_int_equal(h[0], 0x82);
        assert_int_equal(h[1] & 0x80, 0);
        n = wsio_frame_header(h, WSIO_OP_TEXT, 0, cases[i].len, key);
        assert_int_equal(n, cases[i].bytes + 4);
        assert_int_equal(n, wsio_frame_header_bytes(cases[i].len, 1));
        assert_int_equal(h[0], 0x01);
        assert_int_equal(h[1] & 0x80, 0x80);
        assert_memory_equal(h + n - 4, key, 4);
        /* the length reads back */
        uint64_t len = h[1] & 0x7F;
        if (len == 126) {
            len = (uint64_t)h[2] << 8 | h[3];
        } else if (len == 127) {
            len = 0;
            for (int b = 0; b < 8; b++)
                len = len << 8 | h[2 + b];
        }
        assert_true(len == cases[i].len);
    }
    uint8_t h[WSIO_FRAME_MAX_HEADER];
    wsio_frame_header(h, WSIO_OP_BINARY, 1, 300, NULL);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0x01);
    assert_int_equal(h[3], 0x2C);
}

static void test_mask_any_offset(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed();
    for (int t = 0; t < 2000; t++) {
        uint8_t key[4], a[64] = {0}, b[64] = {0}; /* len 0 compares 1 byte */
        uint64_t r = demix_test_rand(&rng);
        memcpy(key, &r, 4);
        size_t len = demix_test_rand(&rng) % 64;
        uint64_t offset = demix_test_rand(&rng) % 1000;
        for (size_t i = 0; i < len; i++)
            a[i] = b[i] = (uint8_t)demix_test_rand(&rng);
        wsio_frame_mask(a, len, key, offset);
        for (size_t i = 0; i < len; i++)
            b[i] ^= key[(offset + i) % 4];
        assert_memory_equal(a, b, len ? len : 1);
        /* masking twice gives the data back; in two pieces the same */
        wsio_frame_mask(a, len / 3, key, offset);
        wsio_frame_mask(a + len / 3, len - len / 3, key, offset + len / 3);
        for (size_t i = 0; i < len; i++)
            b[i] ^= key[(offset + i) % 4];
        assert_memory_equal(a, b, len ? len : 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_stream_every_split),
        cmocka_unit_test(test_64bit_length),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_header_encoder),
        cmocka_unit_test(test_mask_any_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
