/*
 * test_server_errors.c - demixd against bad clients: every malformed input
 * gets its documented error (docs/protocol.md sections 7 and 8.5: the code
 * in the JSON error message, then the close code, with the code name as
 * close reason) and closes only that session, while a concurrent good
 * session goes on undisturbed (its output still exactly its input times
 * FX_IDENTITY_GAIN, through an identity model); a client that vanishes mid-stream has its slot freed;
 * a server at capacity refuses with at_capacity and close 1013.
 *
 * The bad clients use ws_test_client.h directly, so they can send what no
 * real client library would: truncated JSON, oversized messages, garbage
 * Opus packets, wrong sequence numbers, a TCP reset.
 *
 * Servers: one with --max-sessions 8 for the malformed inputs; one with
 * --max-sessions 1 for the vanishing client; one with --max-sessions 2 for
 * the capacity test. All must exit 0 on SIGTERM.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_fixture.h"

#define RATE 48000

static struct {
    char dir[256];
    char model[512];
    server_fixture fx;
    int started;
    uint64_t seed;
} g;

static const char *const all_stems[] = {"drums", "bass", "vocals", "other",
                                        NULL};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* --------------------------------------------------------- bad clients */

typedef struct bad_case {
    const char *name;
    /* Do the bad thing on a fresh session; s->c is connected. */
    void (*act)(fx_session *s);
    demix_proto_code code;
    int close_code;
    const char *field; /* expected error field, or NULL for any */
} bad_case;

static void send_start(fx_session *s, demix_proto_codec in, int wait_ready)
{
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, in, DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    if (in == DEMIX_PROTO_CODEC_OPUS) {
        st.input_pre_skip_frames = 312;
        s->in_codec = in;
    }
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_start(&st, buf, sizeof buf, &len), 0);
    assert_int_equal(wst_send_text(s->c, buf), 0);
    s->channels = 2;
    s->rate = RATE;
    s->out_codec = DEMIX_PROTO_CODEC_PCM_F32;
    if (wait_ready)
        assert_int_equal(fx_session_wait_ready(s), 0);
}

static void raw_audio(fx_session *s, uint8_t magic, uint8_t kind,
                      uint8_t codec, uint32_t seq, const void *payload,
                      size_t bytes)
{
    uint8_t msg[8 + 4096];
    msg[0] = magic;
    msg[1] = kind;
    msg[2] = codec;
    msg[3] = 0;
    msg[4] = (uint8_t)seq;
    msg[5] = (uint8_t)(seq >> 8);
    msg[6] = (uint8_t)(seq >> 16);
    msg[7] = (uint8_t)(seq >> 24);
    assert_true(bytes <= sizeof msg - 8);
    memcpy(msg + 8, payload, bytes);
    assert_int_equal(wst_send_binary(s->c, msg, 8 + bytes), 0);
}

static void act_bad_json(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":48000,");
}

static void act_not_object(fx_session *s)
{
    wst_send_text(s->c, "[1,2,3]");
}

static void act_unknown_type(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"hello\"}");
}

static void act_audio_before_start(fx_session *s)
{
    float pcm[2 * 64] = {0};
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_PCM_F32, 0, pcm, sizeof pcm);
}

static void act_text_too_large(fx_session *s)
{
    size_t n = DEMIX_PROTO_MAX_TEXT_BYTES + 100;
    char *t = malloc(n + 1);
    assert_non_null(t);
    /* Valid JSON, only too long: {"type":"stats","x":"aaaa..."} */
    int h = snprintf(t, n + 1, "{\"type\":\"stats\",\"x\":\"");
    memset(t + h, 'a', n - (size_t)h - 2);
    t[n - 2] = '"';
    t[n - 1] = '}';
    t[n] = '\0';
    wst_send_text(s->c, t);
    free(t);
}

static void act_binary_too_large(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    size_t n = DEMIX_PROTO_MAX_BINARY_BYTES + 8; /* whole f32 frames */
    uint8_t *m = calloc(n, 1);
    assert_non_null(m);
    m[0] = 0xD1;
    m[1] = 0x01;
    m[2] = DEMIX_PROTO_CODEC_PCM_F32;
    wst_send_binary(s->c, m, n);
    free(m);
}

/* The test's own check that a packet is invalid for every decoder. */
static int opus_does_not_decode(const uint8_t *pkt, size_t n)
{
    int e;
    OpusDecoder *dec = opus_decoder_create(RATE, 2, &e);
    assert_non_null(dec);
    static float out[5760 * 2];
    int r = opus_decode_float(dec, pkt, (opus_int32)n, out, 5760, 0);
    opus_decoder_destroy(dec);
    return r < 0;
}

static void act_opus_garbage(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_OPUS, 1);
    /* TOC code 3 (arbitrary frame count) with a frame count of 0: RFC 6716
     * 3.2.5 says M must not be 0, so no decoder accepts it. */
    const uint8_t pkt[] = {0xFB, 0x00, 0x12, 0x34, 0x56};
    assert_true(opus_does_not_decode(pkt, sizeof pkt));
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_OPUS, 0, pkt, sizeof pkt);
}

static void act_opus_truncated(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_OPUS, 1);
    /* A valid packet first, then one cut short: code 1 (two frames of equal
     * size) needs an even number of bytes after the TOC; this has 3. */
    int e;
    OpusEncoder *enc = opus_encoder_create(RATE, 2, OPUS_APPLICATION_AUDIO, &e);
    assert_non_null(enc);
    float pcm[960 * 2];
    for (int i = 0; i < 960; i++)
        pcm[2 * i] = pcm[2 * i + 1] = 0.3f * sinf(0.05f * (float)i);
    uint8_t pkt[1500];
    int n = opus_encode_float(enc, pcm, 960, pkt, sizeof pkt);
    opus_encoder_destroy(enc);
    assert_true(n > 4);
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_OPUS, 0, pkt, (size_t)n);
    uint8_t cut[4];
    cut[0] = (uint8_t)((pkt[0] & 0xFC) | 0x01);
    memcpy(cut + 1, pkt + 1, 3);
    assert_true(opus_does_not_decode(cut, sizeof cut));
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_OPUS, 1, cut, sizeof cut);
}

static void act_rate_too_high(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":1000000,"
                        "\"channels\":2,\"input\":{\"codec\":\"pcm_f32\"},"
                        "\"output\":{\"codec\":\"pcm_f32\"},"
                        "\"stems\":[\"vocals\"]}");
}

static void act_rate_not_integer(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":44100.5,"
                        "\"channels\":2,\"input\":{\"codec\":\"pcm_f32\"},"
                        "\"output\":{\"codec\":\"pcm_f32\"},"
                        "\"stems\":[\"vocals\"]}");
}

static void act_rate_not_opus(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":44100,"
                        "\"channels\":2,\"input\":{\"codec\":\"opus\"},"
                        "\"output\":{\"codec\":\"pcm_f32\"},"
                        "\"stems\":[\"vocals\"]}");
}

static void act_channels_3(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":48000,"
                        "\"channels\":3,\"input\":{\"codec\":\"pcm_f32\"},"
                        "\"output\":{\"codec\":\"pcm_f32\"},"
                        "\"stems\":[\"vocals\"]}");
}

static void act_channels_0(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":48000,"
                        "\"channels\":0,\"input\":{\"codec\":\"pcm_s16\"},"
                        "\"output\":{\"codec\":\"pcm_s16\"},"
                        "\"stems\":[\"vocals\"]}");
}

static void act_unknown_stem(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"start\",\"sample_rate\":48000,"
                        "\"channels\":2,\"input\":{\"codec\":\"pcm_f32\"},"
                        "\"output\":{\"codec\":\"pcm_f32\"},"
                        "\"stems\":[\"vocals\",\"guitar\"]}");
}

static void act_gains_in_stems_mode(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    wst_send_text(s->c, "{\"type\":\"gains\",\"gains\":{\"vocals\":0}}");
}

static void act_second_start(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 0);
}

static void act_wrong_seq(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    float pcm[2 * 64] = {0};
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_PCM_F32, 0, pcm, sizeof pcm);
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_PCM_F32, 5, pcm, sizeof pcm);
}

static void act_partial_frame(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    float pcm[2 * 64] = {0};
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_PCM_F32, 0, pcm, sizeof pcm - 1);
}

static void act_wrong_version(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    float pcm[2 * 64] = {0};
    raw_audio(s, 0xD2, 0x01, DEMIX_PROTO_CODEC_PCM_F32, 0, pcm, sizeof pcm);
}

static void act_wrong_codec_byte(fx_session *s)
{
    send_start(s, DEMIX_PROTO_CODEC_PCM_F32, 1);
    int16_t pcm[2 * 64] = {0};
    raw_audio(s, 0xD1, 0x01, DEMIX_PROTO_CODEC_PCM_S16, 0, pcm, sizeof pcm);
}

static void act_empty_text(fx_session *s)
{
    wst_send_text(s->c, "");
}

static void act_bad_utf8(fx_session *s)
{
    wst_send_text(s->c, "{\"type\":\"st\xff\xfe" "art\"}");
}

static const bad_case cases[] = {
    {"bad JSON", act_bad_json, DEMIX_PROTO_ERR_BAD_JSON, 1008, NULL},
    {"JSON not an object", act_not_object, DEMIX_PROTO_ERR_BAD_JSON, 1008, NULL},
    {"empty text", act_empty_text, DEMIX_PROTO_ERR_BAD_JSON, 1008, NULL},
    {"text not UTF-8", act_bad_utf8, DEMIX_PROTO_ERR_BAD_JSON, 1008, NULL},
    {"unknown message type", act_unknown_type, DEMIX_PROTO_ERR_UNKNOWN_TYPE,
     1008, NULL},
    {"audio before start", act_audio_before_start,
     DEMIX_PROTO_ERR_AUDIO_BEFORE_START, 1008, NULL},
    {"oversized text message", act_text_too_large, DEMIX_PROTO_ERR_TOO_LARGE,
     1009, NULL},
    {"oversized binary message", act_binary_too_large,
     DEMIX_PROTO_ERR_TOO_LARGE, 1009, NULL},
    {"garbage Opus packet", act_opus_garbage, DEMIX_PROTO_ERR_BAD_AUDIO, 1003,
     NULL},
    {"truncated Opus packet", act_opus_truncated, DEMIX_PROTO_ERR_BAD_AUDIO,
     1003, NULL},
    {"sample rate 1 MHz", act_rate_too_high, DEMIX_PROTO_ERR_BAD_FIELD, 1008,
     "sample_rate"},
    {"sample rate not an integer", act_rate_not_integer,
     DEMIX_PROTO_ERR_BAD_FIELD, 1008, "sample_rate"},
    {"44.1 kHz with Opus", act_rate_not_opus, DEMIX_PROTO_ERR_BAD_FIELD, 1008,
     "sample_rate"},
    {"3 channels", act_channels_3, DEMIX_PROTO_ERR_BAD_FIELD, 1008, "channels"},
    {"0 channels", act_channels_0, DEMIX_PROTO_ERR_BAD_FIELD, 1008, "channels"},
    {"unknown stem", act_unknown_stem, DEMIX_PROTO_ERR_UNKNOWN_STEM, 1008,
     "stems[1]"},
    {"gains in stems mode", act_gains_in_stems_mode, DEMIX_PROTO_ERR_BAD_ORDER,
     1008, NULL},
    {"second start", act_second_start, DEMIX_PROTO_ERR_BAD_ORDER, 1008, NULL},
    {"audio seq skips", act_wrong_seq, DEMIX_PROTO_ERR_BAD_AUDIO, 1003, NULL},
    {"PCM not whole frames", act_partial_frame, DEMIX_PROTO_ERR_BAD_AUDIO, 1003,
     NULL},
    {"binary version 2", act_wrong_version, DEMIX_PROTO_ERR_BAD_AUDIO, 1003,
     NULL},
    {"codec byte not the session's", act_wrong_codec_byte,
     DEMIX_PROTO_ERR_BAD_AUDIO, 1003, NULL},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* Run one bad case; returns 0 when the error, its close code and reason
 * and the end of the connection all came as documented. */
static int run_bad_case(int port, const bad_case *bc)
{
    fx_session s;
    memset(&s, 0, sizeof s);
    int status;
    if (wst_open(port, DEMIX_PROTO_PATH, DEMIX_PROTO_SUBPROTOCOL, &s.c,
                 &status)) {
        print_error("[%s] handshake failed (HTTP %d)\n", bc->name, status);
        return -1;
    }
    bc->act(&s);
    /* Read to the close: ready may come first (cases that start). */
    if (fx_session_finish(&s)) {
        fx_session_print(&s, bc->name);
        fx_session_free(&s);
        return -1;
    }
    int ok = 1;
    if (!s.have_error) {
        print_error("[%s] no error message (close %d '%s')\n", bc->name,
                    s.close_code, s.close_reason);
        ok = 0;
    } else if (s.error.code != bc->code) {
        print_error("[%s] error code %s, expected %s (message: %s)\n", bc->name,
                    demix_proto_code_name(s.error.code),
                    demix_proto_code_name(bc->code), s.error.message);
        ok = 0;
    }
    if (s.have_error && !s.error.message[0]) {
        print_error("[%s] error without a message sentence\n", bc->name);
        ok = 0;
    }
    if (bc->field && s.have_error && strcmp(s.error.field, bc->field) != 0) {
        print_error("[%s] error field '%s', expected '%s'\n", bc->name,
                    s.error.field, bc->field);
        ok = 0;
    }
    if (!s.closed) {
        print_error("[%s] the connection ended without a close frame\n",
                    bc->name);
        ok = 0;
    } else if (s.close_code != bc->close_code) {
        print_error("[%s] close code %d, expected %d\n", bc->name, s.close_code,
                    bc->close_code);
        ok = 0;
    } else if (strcmp(s.close_reason, demix_proto_code_name(bc->code)) != 0) {
        print_error("[%s] close reason '%s', expected '%s'\n", bc->name,
                    s.close_reason, demix_proto_code_name(bc->code));
        ok = 0;
    }
    if (ok)
        print_message("[%s] %s '%s' (field '%s'), close %d '%s'\n", bc->name,
                      demix_proto_code_name(s.error.code), s.error.message,
                      s.error.field, s.close_code, s.close_reason);
    fx_session_free(&s);
    return ok ? 0 : -1;
}

/* -------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    g.seed = demix_test_seed();
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    snprintf(g.model, sizeof g.model, "%s/identity48k.safetensors", g.dir);
    if (fx_save_identity_model(g.model, RATE, g.seed))
        return -1;
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "8",
                             (const char *)NULL))
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

/* ------------------------------------------------------------- tests */

/* Every bad case, one after the other, while one good session streams. */
static void test_malformed_inputs_close_only_their_session(void **state)
{
    (void)state;
    int64_t frames = 4 * RATE;
    float *x = fx_make_signal(RATE, 2, frames, g.seed);
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session good;
    assert_int_equal(fx_session_open(&good, g.fx.port, &st), 0);
    assert_int_equal(fx_session_wait_ready(&good), 0);
    int64_t per_case = frames / (N_CASES + 1);
    int failures = 0;
    for (int k = 0; k <= N_CASES; k++) {
        /* Some more good audio, read what came back. */
        int64_t end = k == N_CASES ? frames : (k + 1) * per_case;
        while (good.sent < end) {
            int64_t n = end - good.sent < 2048 ? end - good.sent : 2048;
            assert_int_equal(fx_session_send(&good, x + good.sent * 2, n), 0);
            while (fx_session_poll(&good, 0) == 1)
                ;
        }
        assert_false(good.eof);
        assert_false(good.closed);
        if (k < N_CASES && run_bad_case(g.fx.port, &cases[k]))
            failures++;
    }
    assert_int_equal(fx_session_send_end(&good), 0);
    assert_int_equal(fx_session_finish(&good), 0);
    if (good.violation[0] || !good.have_summary || good.close_code != 1000)
        fx_session_print(&good, "good session");
    assert_string_equal(good.violation, "");
    assert_true(good.have_summary);
    assert_false(good.have_error);
    assert_int_equal(good.close_code, 1000);
    assert_int_equal((int64_t)good.summary.input_frames, frames);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&good, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        double m = 0;
        for (int64_t i = 0; i < frames * 2; i++)
            m = fmax(m, fabs((double)tr->x[i] - FX_IDENTITY_GAIN * x[i]));
        print_message("good session %s: max |stem - input / 4| = %.3g\n",
                      all_stems[t], m);
        assert_true(m <= 1e-5);
    }
    fx_session_free(&good);
    free(x);
    assert_int_equal(failures, 0);
    assert_true(server_fixture_alive(&g.fx));
}

/* A start split into three WebSocket fragments is one message. */
static void test_fragmented_start_is_one_message(void **state)
{
    (void)state;
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_start(&st, buf, sizeof buf, &len), 0);
    fx_session s;
    memset(&s, 0, sizeof s);
    s.channels = 2;
    s.rate = RATE;
    s.in_codec = s.out_codec = DEMIX_PROTO_CODEC_PCM_F32;
    int status;
    assert_int_equal(wst_open(g.fx.port, DEMIX_PROTO_PATH, NULL, &s.c, &status),
                     0);
    size_t a = len / 3, b = 2 * len / 3;
    assert_int_equal(wst_send_frame(s.c, 0, WST_TEXT, buf, a), 0);
    assert_int_equal(wst_send_frame(s.c, 0, WST_CONT, buf + a, b - a), 0);
    assert_int_equal(wst_send_frame(s.c, 1, WST_CONT, buf + b, len - b), 0);
    assert_int_equal(fx_session_wait_ready(&s), 0);
    /* No subprotocol offered: accepted, and none selected. */
    char proto[64];
    assert_int_not_equal(wst_response_header(s.c, "Sec-WebSocket-Protocol",
                                             proto, sizeof proto),
                         0);
    assert_int_equal(fx_session_send_end(&s), 0);
    assert_int_equal(fx_session_finish(&s), 0);
    assert_true(s.have_summary);
    assert_int_equal((int64_t)s.summary.input_frames, 0);
    assert_int_equal(s.close_code, 1000);
    fx_session_free(&s);
}

/* Handshakes: demix.v1 is selected; other subprotocols alone are refused;
 * another path is not a stream. */
static void test_handshake_rules(void **state)
{
    (void)state;
    wst_conn *c;
    int status;
    assert_int_equal(wst_open(g.fx.port, DEMIX_PROTO_PATH, "chat, demix.v1", &c,
                              &status),
                     0);
    char proto[64] = "";
    wst_response_header(c, "Sec-WebSocket-Protocol", proto, sizeof proto);
    assert_string_equal(proto, "demix.v1");
    wst_free(c);
    assert_int_not_equal(wst_open(g.fx.port, DEMIX_PROTO_PATH, "demix.v2", &c,
                                  &status),
                         0);
    print_message("subprotocol demix.v2 only: HTTP %d\n", status);
    assert_int_not_equal(status, 101);
    assert_int_not_equal(wst_open(g.fx.port, "/v2/stream", DEMIX_PROTO_SUBPROTOCOL,
                                  &c, &status),
                         0);
    print_message("/v2/stream: HTTP %d\n", status);
    assert_int_not_equal(status, 101);
}

/* A client that vanishes mid-stream (TCP reset, no close) frees its slot. */
static void test_vanishing_client_frees_its_slot(void **state)
{
    (void)state;
    server_fixture one;
    assert_int_equal(server_fixture_start(&one, g.model, "--max-sessions", "1",
                                          (const char *)NULL),
                     0);
    int64_t frames = RATE;
    float *x = fx_make_signal(RATE, 2, frames, g.seed + 5);
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session a;
    assert_int_equal(fx_session_open(&a, one.port, &st), 0);
    assert_int_equal(fx_session_wait_ready(&a), 0);
    for (int64_t sent = 0; sent < frames / 2; sent += 2048)
        assert_int_equal(fx_session_send(&a, x + sent * 2, 2048), 0);
    while (fx_session_reached(&a) < 4096)
        assert_int_not_equal(fx_session_poll(&a, 100), -1);

    /* While it lives, the one slot is taken. */
    fx_session b;
    assert_int_equal(fx_session_open(&b, one.port, &st), 0);
    assert_int_not_equal(fx_session_wait_ready(&b), 0);
    assert_true(b.have_error);
    assert_int_equal(b.error.code, DEMIX_PROTO_ERR_AT_CAPACITY);
    fx_session_finish(&b);
    assert_int_equal(b.close_code, 1013);
    fx_session_free(&b);

    wst_abort(a.c); /* vanish */
    fx_session_free(&a);

    /* The slot comes back: a new session gets ready (the server notices
     * the reset asynchronously, so a few refusals may come first). */
    int got = 0, attempt;
    for (attempt = 0; attempt < 100 && !got; attempt++) {
        fx_session c;
        assert_int_equal(fx_session_open(&c, one.port, &st), 0);
        if (fx_session_wait_ready(&c) == 0) {
            got = 1;
            print_message("slot free again after %d refused attempts\n",
                          attempt);
            assert_int_equal(fx_session_run(&c, x, frames, 4096), 0);
            assert_int_equal((int64_t)c.summary.input_frames, frames);
        } else {
            assert_int_equal(c.error.code, DEMIX_PROTO_ERR_AT_CAPACITY);
            sleep_ms(50);
        }
        fx_session_free(&c);
    }
    assert_true(got);
    wst_http_response r;
    if (wst_http(one.port, "GET", "/v1/health", NULL, NULL, 0, &r, 10000) == 0)
        print_message("GET /v1/health: %d %s\n", r.status, (const char *)r.body);
    wst_http_response_free(&r);
    free(x);
    assert_int_equal(server_fixture_stop(&one), 0);
}

/* --max-sessions 2: the third session gets at_capacity and 1013; once one
 * ends, a new one is accepted. */
static void test_at_capacity(void **state)
{
    (void)state;
    server_fixture two;
    assert_int_equal(server_fixture_start(&two, g.model, "--max-sessions", "2",
                                          (const char *)NULL),
                     0);
    demix_proto_start st;
    fx_start_init(&st, RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, all_stems);
    fx_session s[3];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fx_session_open(&s[i], two.port, &st), 0);
        assert_int_equal(fx_session_wait_ready(&s[i]), 0);
    }
    assert_int_equal(fx_session_open(&s[2], two.port, &st), 0);
    assert_int_not_equal(fx_session_wait_ready(&s[2]), 0);
    assert_true(s[2].have_error);
    assert_int_equal(s[2].error.code, DEMIX_PROTO_ERR_AT_CAPACITY);
    assert_int_equal(fx_session_finish(&s[2]), 0);
    assert_true(s[2].closed);
    assert_int_equal(s[2].close_code, 1013);
    assert_string_equal(s[2].close_reason, "at_capacity");
    fx_session_free(&s[2]);

    /* The first ends normally; its slot is free again after its close. */
    assert_int_equal(fx_session_send_end(&s[0]), 0);
    assert_int_equal(fx_session_finish(&s[0]), 0);
    assert_int_equal(s[0].close_code, 1000);
    fx_session_free(&s[0]);
    int got = 0;
    for (int attempt = 0; attempt < 100 && !got; attempt++) {
        fx_session c;
        assert_int_equal(fx_session_open(&c, two.port, &st), 0);
        got = fx_session_wait_ready(&c) == 0;
        if (!got) {
            assert_int_equal(c.error.code, DEMIX_PROTO_ERR_AT_CAPACITY);
            sleep_ms(50);
        }
        fx_session_free(&c);
    }
    assert_true(got);
    fx_session_free(&s[1]);
    assert_int_equal(server_fixture_stop(&two), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_inputs_close_only_their_session),
        cmocka_unit_test(test_fragmented_start_is_one_message),
        cmocka_unit_test(test_handshake_rules),
        cmocka_unit_test(test_vanishing_client_frees_its_slot),
        cmocka_unit_test(test_at_capacity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
