/*
 * test_client_session.c - the client-session core of demix stream and
 * demix loadgen (tools/client/client_session.h) over a fake connection: a
 * scripted server drives it through ready -> audio -> end -> summary ->
 * close 1000, and out-of-order or malformed server messages (audio before
 * ready, a position gap, a repeated seq, audio after LAST, bad JSON, an
 * error message with its code, a summary before end, ready twice) give
 * the failure kinds and texts both clients report. With retries allowed
 * (client_session_allow_retry) the ways a server goes away (an error
 * restarting / at_capacity / shutting_down then its close, a bare close
 * 1012 / 1013 / 1001, a dropped connection) are CLIENT_CLOSE_RETRY with a
 * retry text and no failure; other errors and closes stay failures, and
 * nothing is retried after a summary.
 *
 * Thread context: single-threaded.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "client_session.h"

#define TX_BYTES 65536
#define HOP 512

/* The fake connection and what the core did to it. */
typedef struct fake {
    client_session cs;
    uint8_t tx[TX_BYTES];
    int want_writes;
    int open;
    int sent, sent_binary;
    size_t sent_len;
    uint8_t last[TX_BYTES];
    int closes, close_code;
    int mix;            /* ask for the mix instead of two stems */
    int refuse_ready;   /* on_ready answers nonzero */
    int refuse_audio;   /* on_audio answers nonzero */
    int readies, audios, summaries, failures;
    client_failure kind;
    char text[CLIENT_SESSION_TEXT_BYTES];
} fake;

static uint8_t *op_tx_buffer(void *user, size_t *cap)
{
    fake *f = user;
    *cap = sizeof f->tx;
    return f->tx;
}

static int op_send(void *user, int binary, size_t len)
{
    fake *f = user;
    f->sent++;
    f->sent_binary = binary;
    f->sent_len = len;
    memcpy(f->last, f->tx, len);
    return 0;
}

static void op_want_write(void *user) { ((fake *)user)->want_writes++; }
static int op_is_open(void *user) { return ((fake *)user)->open; }

static void op_close(void *user, int code, const char *reason)
{
    fake *f = user;
    (void)reason;
    f->closes++;
    f->close_code = code;
}

static void op_make_start(void *user, demix_proto_start *st)
{
    fake *f = user;
    st->sample_rate_hz = 48000;
    st->channels = 2;
    st->input_codec = DEMIX_PROTO_CODEC_PCM_S16;
    st->output_codec = DEMIX_PROTO_CODEC_PCM_S16;
    if (f->mix) {
        st->mode = DEMIX_PROTO_MODE_MIX;
    } else {
        st->mode = DEMIX_PROTO_MODE_STEMS;
        st->stem_count = 2;
        snprintf(st->stems[0], sizeof st->stems[0], "vocals");
        snprintf(st->stems[1], sizeof st->stems[1], "drums");
    }
}

static int op_on_ready(void *user, const demix_proto_ready *r)
{
    fake *f = user;
    (void)r;
    f->readies++;
    return f->refuse_ready;
}

static int op_on_audio(void *user, int slot, const demix_proto_audio_out *h)
{
    fake *f = user;
    (void)slot;
    (void)h;
    f->audios++;
    return f->refuse_audio;
}

static void op_on_summary(void *user, const demix_proto_summary *m)
{
    (void)m;
    ((fake *)user)->summaries++;
}

static void op_on_failure(void *user, client_failure kind, const char *text)
{
    fake *f = user;
    f->failures++;
    f->kind = kind;
    snprintf(f->text, sizeof f->text, "%s", text);
}

static const client_session_ops ops = {
    .tx_buffer = op_tx_buffer,
    .send = op_send,
    .want_write = op_want_write,
    .is_open = op_is_open,
    .close = op_close,
    .make_start = op_make_start,
    .start_hint = "--stems and --token",
    .on_ready = op_on_ready,
    .on_audio = op_on_audio,
    .on_summary = op_on_summary,
    .on_failure = op_on_failure,
};

/* ------------------------------------------------------- the server */

static void server_text(fake *f, const char *text)
{
    client_session_on_text(&f->cs, (const uint8_t *)text, strlen(text));
}

static void server_ready(fake *f)
{
    static const char *sources[] = {"drums", "bass", "vocals", "other"};
    demix_proto_start st;
    demix_proto_start_init(&st);
    op_make_start(f, &st);
    demix_proto_ready r;
    memset(&r, 0, sizeof r);
    demix_proto_ready_from_start(&r, &st);
    snprintf(r.session, sizeof r.session, "5f2c9a1e7b3d4e60");
    r.model_rate_hz = 44100;
    r.hop_samples = HOP;
    r.window_samples = 2 * HOP;
    r.latency_samples = 2 * HOP;
    r.latency_frames = 1200;
    r.source_count = 4;
    for (int i = 0; i < 4; i++)
        snprintf(r.sources[i], sizeof r.sources[i], "%s", sources[i]);
    if (!f->mix) {
        r.stem_count = 2;
        r.stem_source[0] = 2; /* vocals */
        r.stem_source[1] = 0; /* drums */
    } else {
        for (int i = 0; i < 4; i++)
            r.source_gain[i] = 1.0f;
    }
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES];
    size_t len;
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len), 0);
    client_session_on_text(&f->cs, (const uint8_t *)buf, len);
}

/* One PCM s16 stereo audio_out message of HOP frames of silence. */
static int server_audio(fake *f, uint32_t seq, int stem, uint64_t pos,
                        int last)
{
    uint8_t msg[DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES + HOP * 4];
    memset(msg, 0, sizeof msg);
    demix_proto_audio_out h = {.codec = DEMIX_PROTO_CODEC_PCM_S16,
                               .flags = last ? DEMIX_PROTO_FLAG_LAST : 0,
                               .stem = (uint8_t)stem,
                               .seq = seq,
                               .frames = HOP,
                               .position = pos};
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, sizeof msg), 0);
    return client_session_on_binary(&f->cs, msg, sizeof msg);
}

static void server_summary(fake *f)
{
    demix_proto_summary m;
    memset(&m, 0, sizeof m);
    snprintf(m.session, sizeof m.session, "5f2c9a1e7b3d4e60");
    m.input_frames = m.output_frames = 2 * HOP;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES];
    size_t len;
    assert_int_equal(demix_proto_write_summary(&m, buf, sizeof buf, &len), 0);
    client_session_on_text(&f->cs, (const uint8_t *)buf, len);
}

/* Connect, send start, get ready: streaming. */
static void to_streaming(fake *f)
{
    client_session_init(&f->cs, &ops, f);
    f->open = 1;
    client_session_on_open(&f->cs);
    assert_int_equal(f->cs.state, CLIENT_WAIT_READY);
    assert_int_equal(f->want_writes, 1);
    assert_int_equal(client_session_on_writable(&f->cs), 0); /* start */
    assert_int_equal(f->sent, 1);
    assert_int_equal(f->sent_binary, 0);
    demix_proto_client_msg m;
    demix_proto_error perr;
    assert_int_equal(demix_proto_parse_client((const char *)f->last,
                                              f->sent_len, &m, &perr),
                     0);
    assert_int_equal(m.type, DEMIX_PROTO_START);
    server_ready(f);
    assert_int_equal(f->failures, 0);
    assert_int_equal(f->readies, 1);
    assert_int_equal(f->cs.state, CLIENT_STREAMING);
}

static void assert_failure(const fake *f, client_failure kind,
                           const char *text)
{
    assert_int_equal(f->failures, 1);
    assert_int_equal(f->kind, kind);
    assert_string_equal(f->text, text);
}

/* ---------------------------------------------------------- tests */

static void test_whole_session(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    assert_int_equal(f.cs.slot_count, 2);
    assert_string_equal(f.cs.slots[0].name, "vocals");
    assert_int_equal(f.cs.slots[0].wire_index, 2);
    assert_string_equal(f.cs.slots[1].name, "drums");

    /* audio in: the header in front of the payload, seq counting */
    for (uint32_t k = 0; k < 2; k++) {
        assert_int_equal(client_session_on_writable(&f.cs), 1);
        size_t cap;
        uint8_t *p = client_session_audio_payload(&f.cs, &cap);
        assert_non_null(p);
        assert_true(cap >= HOP * 4);
        memset(p, 0, HOP * 4);
        assert_int_equal(client_session_send_audio(&f.cs, HOP * 4), 0);
        assert_int_equal(f.sent_binary, 1);
        demix_proto_audio_in in;
        demix_proto_error perr;
        assert_int_equal(demix_proto_audio_in_decode(
                             f.last, f.sent_len, DEMIX_PROTO_CODEC_PCM_S16, 2,
                             k, &in, &perr),
                         0);
        assert_int_equal(in.frames, HOP);
    }
    /* audio out on both stems, the second with LAST */
    assert_int_equal(server_audio(&f, 0, 2, 0, 0), 1);
    assert_int_equal(server_audio(&f, 1, 0, 0, 0), 1);
    assert_int_equal(server_audio(&f, 2, 2, HOP, 1), 1);
    assert_int_equal(server_audio(&f, 3, 0, HOP, 1), 1);
    assert_int_equal(f.audios, 4);
    assert_int_equal(f.cs.slots[0].next_pos, 2 * HOP);
    assert_true(f.cs.slots[0].last_seen && f.cs.slots[1].last_seen);
    /* stats are ignored */
    server_text(&f, "{\"type\":\"stats\",\"sessions\":1,\"max_sessions\":4,"
                    "\"hops\":10,\"step_ms\":{\"p50\":1,\"p99\":2},"
                    "\"batch_mean\":1,\"uptime_s\":3}");
    assert_int_equal(f.failures, 0);
    /* end, summary, close 1000 */
    assert_int_equal(client_session_send_end(&f.cs), 0);
    assert_int_equal(f.cs.state, CLIENT_ENDING);
    assert_int_equal(f.sent_binary, 0);
    assert_memory_equal(f.last, "{\"type\":\"end\"}", 14);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    server_summary(&f);
    assert_int_equal(f.summaries, 1);
    assert_int_equal(f.cs.state, CLIENT_FINISHING);
    f.open = 0;
    int code = 1000;
    assert_int_equal(client_session_on_close(&f.cs, &code, ""),
                     CLIENT_CLOSE_CLEAN);
    assert_int_equal(f.cs.state, CLIENT_CLOSED);
    assert_int_equal(f.failures, 0);
    assert_int_equal(f.closes, 0);
}

static void test_mix_mode_has_one_slot(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    f.mix = 1;
    to_streaming(&f);
    assert_int_equal(f.cs.slot_count, 1);
    assert_string_equal(f.cs.slots[0].name, "mix");
    assert_int_equal(server_audio(&f, 0, DEMIX_PROTO_STEM_MIX, 0, 0), 1);
    assert_int_equal(server_audio(&f, 1, 2, 0, 0), 0);
    assert_failure(&f, CLIENT_FAIL_PROTOCOL,
                   "the server sent stem index 2, which was not asked for");
}

static void test_audio_before_ready(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    client_session_init(&f.cs, &ops, &f);
    f.open = 1;
    client_session_on_open(&f.cs);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    assert_int_equal(server_audio(&f, 0, 2, 0, 0), 0);
    assert_failure(&f, CLIENT_FAIL_PROTOCOL,
                   "the server sent audio before ready");
    /* our side saw it: close 1000, and nothing more is read */
    assert_int_equal(f.closes, 1);
    assert_int_equal(f.close_code, 1000);
    server_ready(&f);
    assert_int_equal(f.readies, 0);
    assert_int_equal(f.failures, 1);
    f.open = 0;
    int code = 1000;
    assert_int_equal(client_session_on_close(&f.cs, &code, ""),
                     CLIENT_CLOSE_AFTER_FAILURE);
}

static void test_position_gap(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    assert_int_equal(server_audio(&f, 0, 2, 0, 0), 1);
    assert_int_equal(server_audio(&f, 1, 2, 2 * HOP, 0), 0);
    assert_failure(&f, CLIENT_FAIL_PROTOCOL,
                   "the server sent vocals at position 1024, expected 512 "
                   "(a gap or an overlap)");
    assert_int_equal(f.closes, 1);
}

static void test_repeated_seq(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    assert_int_equal(server_audio(&f, 0, 2, 0, 0), 1);
    assert_int_equal(server_audio(&f, 0, 0, 0, 0), 0);
    assert_int_equal(f.failures, 1);
    assert_int_equal(f.kind, CLIENT_FAIL_PROTOCOL);
    const char *want = "the server sent a malformed audio message (seq 1): ";
    assert_memory_equal(f.text, want, strlen(want));
}

static void test_audio_after_last(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    assert_int_equal(server_audio(&f, 0, 0, 0, 1), 1);
    assert_int_equal(server_audio(&f, 1, 0, HOP, 0), 0);
    assert_failure(&f, CLIENT_FAIL_PROTOCOL,
                   "the server sent drums audio after its LAST message");
}

static void test_bad_json(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    server_text(&f, "{\"type\":\"ready\",");
    assert_int_equal(f.failures, 1);
    assert_int_equal(f.kind, CLIENT_FAIL_PROTOCOL);
    const char *want = "the server sent a malformed message: ";
    assert_memory_equal(f.text, want, strlen(want));
    assert_true(strlen(f.text) > strlen(want));
}

static void test_error_message_with_code(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    client_session_init(&f.cs, &ops, &f);
    f.open = 1;
    client_session_on_open(&f.cs);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    server_text(&f, "{\"type\":\"error\",\"code\":\"at_capacity\",\"message\":"
                    "\"The server is full.\"}");
    assert_failure(&f, CLIENT_FAIL_SERVER,
                   "server error at_capacity: The server is full.");
    assert_true(f.cs.has_error_code);
    assert_int_equal(f.cs.error_code, DEMIX_PROTO_ERR_AT_CAPACITY);
    assert_int_equal(f.cs.state, CLIENT_FINISHING);
    assert_int_equal(f.closes, 0); /* the server closes */
    /* lws 4.1 reports 1013 as 1002; the reason names the code */
    f.open = 0;
    int code = 1002;
    assert_int_equal(client_session_on_close(&f.cs, &code, "at_capacity"),
                     CLIENT_CLOSE_AFTER_FAILURE);
    assert_int_equal(code, 1013);
}

static void test_error_message_with_field(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    client_session_init(&f.cs, &ops, &f);
    f.open = 1;
    client_session_on_open(&f.cs);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    server_text(&f, "{\"type\":\"error\",\"code\":\"unknown_stem\",\"message\":"
                    "\"No stem 'voice'.\",\"field\":\"stems[0]\"}");
    assert_failure(&f, CLIENT_FAIL_SERVER,
                   "server error unknown_stem: No stem 'voice'. (field "
                   "stems[0])");
    assert_int_equal(f.cs.error_code, DEMIX_PROTO_ERR_UNKNOWN_STEM);
}

static void test_out_of_order_text(void **state)
{
    (void)state;
    static fake f;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    server_ready(&f);
    assert_failure(&f, CLIENT_FAIL_PROTOCOL, "the server sent ready twice");

    memset(&f, 0, sizeof f);
    to_streaming(&f);
    server_summary(&f);
    assert_failure(&f, CLIENT_FAIL_PROTOCOL,
                   "the server sent a summary before the end");
    assert_int_equal(f.summaries, 0);
}

static void test_close_verdicts(void **state)
{
    (void)state;
    static fake f;
    int code;
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    code = 1006;
    assert_int_equal(client_session_on_close(&f.cs, &code, ""),
                     CLIENT_CLOSE_DROPPED);

    memset(&f, 0, sizeof f);
    to_streaming(&f);
    code = 1001;
    assert_int_equal(client_session_on_close(&f.cs, &code, "shutting_down"),
                     CLIENT_CLOSE_EARLY);

    memset(&f, 0, sizeof f);
    to_streaming(&f);
    assert_int_equal(client_session_send_end(&f.cs), 0);
    server_summary(&f);
    code = 1011;
    assert_int_equal(client_session_on_close(&f.cs, &code, "internal"),
                     CLIENT_CLOSE_AFTER_SUMMARY);
    assert_int_equal(f.failures, 0); /* the wording is the caller's */
}

static void test_retry_verdicts(void **state)
{
    (void)state;
    static fake f;
    int code;
    /* restarting, then 1012 (lws says 1002, the reason names the code) */
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    client_session_allow_retry(&f.cs, 1);
    server_text(&f, "{\"type\":\"error\",\"code\":\"restarting\",\"message\":"
                    "\"The server is restarting.\"}");
    assert_int_equal(f.failures, 0);
    assert_int_equal(f.cs.error_code, DEMIX_PROTO_ERR_RESTARTING);
    assert_int_equal(f.cs.state, CLIENT_FINISHING);
    f.open = 0;
    code = 1002;
    assert_int_equal(client_session_on_close(&f.cs, &code, "restarting"),
                     CLIENT_CLOSE_RETRY);
    assert_int_equal(code, 1012);
    assert_string_equal(f.cs.retry_why,
                        "server error restarting: The server is restarting");
    assert_int_equal(f.failures, 0);

    /* at_capacity before ready, then 1013 */
    memset(&f, 0, sizeof f);
    client_session_init(&f.cs, &ops, &f);
    client_session_allow_retry(&f.cs, 1);
    f.open = 1;
    client_session_on_open(&f.cs);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    server_text(&f, "{\"type\":\"error\",\"code\":\"at_capacity\",\"message\":"
                    "\"Full.\"}");
    code = 1013;
    assert_int_equal(client_session_on_close(&f.cs, &code, "at_capacity"),
                     CLIENT_CLOSE_RETRY);
    assert_int_equal(f.failures, 0);

    /* a bare close 1001, 1012, 1013 and a drop while streaming */
    static const int codes[] = {1001, 1012, 1013, 1006};
    static const char *const why[] = {
        "the server closed with 1001 going away",
        "the server closed with 1012 going away",
        "the server closed with 1013 going away",
        "the connection dropped (no close frame)"};
    for (int i = 0; i < 4; i++) {
        memset(&f, 0, sizeof f);
        to_streaming(&f);
        client_session_allow_retry(&f.cs, 1);
        code = codes[i];
        assert_int_equal(client_session_on_close(&f.cs, &code,
                                                 i < 3 ? "going away" : ""),
                         CLIENT_CLOSE_RETRY);
        assert_string_equal(f.cs.retry_why, why[i]);
        assert_int_equal(f.failures, 0);
    }

    /* not retried: another error, another close, after the summary,
     * and without allow_retry */
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    client_session_allow_retry(&f.cs, 1);
    server_text(&f, "{\"type\":\"error\",\"code\":\"timeout\",\"message\":"
                    "\"Idle.\"}");
    assert_failure(&f, CLIENT_FAIL_SERVER, "server error timeout: Idle.");
    code = 1008;
    assert_int_equal(client_session_on_close(&f.cs, &code, "timeout"),
                     CLIENT_CLOSE_AFTER_FAILURE);

    memset(&f, 0, sizeof f);
    to_streaming(&f);
    client_session_allow_retry(&f.cs, 1);
    code = 1011;
    assert_int_equal(client_session_on_close(&f.cs, &code, "internal"),
                     CLIENT_CLOSE_EARLY);

    memset(&f, 0, sizeof f);
    to_streaming(&f);
    client_session_allow_retry(&f.cs, 1);
    assert_int_equal(client_session_send_end(&f.cs), 0);
    server_summary(&f);
    code = 1001;
    assert_int_equal(client_session_on_close(&f.cs, &code, "shutting_down"),
                     CLIENT_CLOSE_AFTER_SUMMARY);

    memset(&f, 0, sizeof f);
    to_streaming(&f);
    server_text(&f, "{\"type\":\"error\",\"code\":\"restarting\",\"message\":"
                    "\"Restarting.\"}");
    assert_failure(&f, CLIENT_FAIL_SERVER,
                   "server error restarting: Restarting.");
    code = 1012;
    assert_int_equal(client_session_on_close(&f.cs, &code, "restarting"),
                     CLIENT_CLOSE_AFTER_FAILURE);
}

static void test_client_refusals(void **state)
{
    (void)state;
    static fake f;
    /* on_ready refusing: no streaming */
    memset(&f, 0, sizeof f);
    f.refuse_ready = 1;
    client_session_init(&f.cs, &ops, &f);
    f.open = 1;
    client_session_on_open(&f.cs);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    server_ready(&f);
    assert_int_equal(f.readies, 1);
    assert_int_equal(f.cs.state, CLIENT_WAIT_READY);
    assert_int_equal(client_session_on_writable(&f.cs), 0);

    /* on_audio refusing: the slot does not advance */
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    f.refuse_audio = 1;
    assert_int_equal(server_audio(&f, 0, 2, 0, 0), 0);
    assert_int_equal(f.cs.slots[0].next_pos, 0);

    /* the first word stands */
    memset(&f, 0, sizeof f);
    to_streaming(&f);
    client_session_fail(&f.cs, CLIENT_FAIL_CLIENT, "disk full (%d)", 28);
    client_session_note(&f.cs, CLIENT_FAIL_TIMEOUT, "later");
    assert_failure(&f, CLIENT_FAIL_CLIENT, "disk full (28)");
    assert_int_equal(f.closes, 1);
    assert_int_equal(client_session_on_writable(&f.cs), 0);
    assert_string_equal(client_failure_name(CLIENT_FAIL_SERVER),
                        "server_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_session),
        cmocka_unit_test(test_mix_mode_has_one_slot),
        cmocka_unit_test(test_audio_before_ready),
        cmocka_unit_test(test_position_gap),
        cmocka_unit_test(test_repeated_seq),
        cmocka_unit_test(test_audio_after_last),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_error_message_with_code),
        cmocka_unit_test(test_error_message_with_field),
        cmocka_unit_test(test_out_of_order_text),
        cmocka_unit_test(test_close_verdicts),
        cmocka_unit_test(test_retry_verdicts),
        cmocka_unit_test(test_client_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
