/*
 * test_protocol.c - protocol/: every message and frame kind round-trips;
 * every malformed input class gets its documented error code (and field);
 * writers report short buffers and refuse invalid structs; the byte layout
 * of the binary headers is pinned against literal bytes; NULL arguments
 * return DEMIX_EARG.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static const char SOURCES[4][DEMIX_PROTO_NAME_BYTES] = {"drums", "bass",
                                                        "vocals", "other"};

/* ------------------------------------------------------------ helpers */

static int parse_c(const char *json, demix_proto_client_msg *m,
                   demix_proto_error *e)
{
    return demix_proto_parse_client(json, strlen(json), m, e);
}

/* Parse json as a client message and expect failure with code and field
 * (field NULL: not checked). */
static void expect_client_error(const char *json, demix_proto_code code,
                                const char *field)
{
    demix_proto_client_msg m;
    demix_proto_error e;
    int rc = parse_c(json, &m, &e);
    if (rc != DEMIX_EPROTOCOL || e.code != code ||
        (field && strcmp(e.field, field) != 0))
        print_error("input: %s\n got rc %d code %s field '%s' (%s)\n"
                    " want code %s field '%s'\n",
                    json, rc, demix_proto_code_name(e.code), e.field, e.message,
                    demix_proto_code_name(code), field ? field : "*");
    assert_int_equal(rc, DEMIX_EPROTOCOL);
    assert_int_equal(e.code, code);
    if (field)
        assert_string_equal(e.field, field);
    assert_true(e.message[0] != '\0');
    assert_int_equal(m.type, DEMIX_PROTO_NONE);
}

static void expect_client_ok(const char *json, demix_proto_client_msg *m)
{
    demix_proto_error e;
    int rc = parse_c(json, m, &e);
    if (rc != DEMIX_OK)
        print_error("input: %s\n got %s field '%s': %s\n", json,
                    demix_proto_code_name(e.code), e.field, e.message);
    assert_int_equal(rc, DEMIX_OK);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_NONE);
}

static int utf8_ok(const char *s)
{
    /* Enough for the tests: every byte >= 0x80 belongs to a well-formed
     * 2..4-byte sequence. */
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80                 ? 1
                : *p >= 0xC2 && *p < 0xE0 ? 2
                : *p >= 0xE0 && *p < 0xF0 ? 3
                : *p >= 0xF0 && *p < 0xF5 ? 4
                                          : 0;
        if (!n)
            return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xC0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

static demix_proto_start make_start_stems(void)
{
    demix_proto_start s;
    demix_proto_start_init(&s);
    s.sample_rate_hz = 44100;
    s.channels = 2;
    s.input_codec = DEMIX_PROTO_CODEC_PCM_S16;
    s.output_codec = DEMIX_PROTO_CODEC_PCM_F32;
    s.mode = DEMIX_PROTO_MODE_STEMS;
    s.stem_count = 2;
    strcpy(s.stems[0], "vocals");
    strcpy(s.stems[1], "drums");
    return s;
}

static demix_proto_ready make_ready(void)
{
    demix_proto_ready r;
    memset(&r, 0, sizeof r);
    strcpy(r.session, "0123456789abcdef");
    strcpy(r.model_name, "hstasnet \"small\" \xc3\xa9");
    r.model_rate_hz = 44100;
    r.hop_samples = 512;
    r.window_samples = 1024;
    r.latency_samples = 1024;
    r.source_count = 4;
    memcpy(r.sources, SOURCES, sizeof SOURCES);
    r.client_rate_hz = 48000;
    r.channels = 2;
    r.input_codec = DEMIX_PROTO_CODEC_OPUS;
    r.output_codec = DEMIX_PROTO_CODEC_OPUS;
    r.opus_bitrate_bps = 96000;
    r.opus_frame_ms = 20;
    r.opus_pre_skip_frames = 312;
    r.input_pre_skip_frames = 120;
    r.latency_frames = 1427;
    r.mode = DEMIX_PROTO_MODE_STEMS;
    r.stem_count = 2;
    r.stem_source[0] = 2;
    r.stem_source[1] = 0;
    return r;
}

/* ------------------------------------------------------ tables, names */

static void test_codes_and_close_codes(void **state)
{
    (void)state;
    static const struct {
        demix_proto_code code;
        const char *name;
        int close;
    } want[] = {
        {DEMIX_PROTO_ERR_BAD_JSON, "bad_json", 1008},
        {DEMIX_PROTO_ERR_UNKNOWN_TYPE, "unknown_type", 1008},
        {DEMIX_PROTO_ERR_BAD_FIELD, "bad_field", 1008},
        {DEMIX_PROTO_ERR_UNKNOWN_STEM, "unknown_stem", 1008},
        {DEMIX_PROTO_ERR_BAD_ORDER, "bad_order", 1008},
        {DEMIX_PROTO_ERR_AUDIO_BEFORE_START, "audio_before_start", 1008},
        {DEMIX_PROTO_ERR_BAD_AUDIO, "bad_audio", 1003},
        {DEMIX_PROTO_ERR_TOO_LARGE, "too_large", 1009},
        {DEMIX_PROTO_ERR_UNAUTHORIZED, "unauthorized", 1008},
        {DEMIX_PROTO_ERR_TIMEOUT, "timeout", 1008},
        {DEMIX_PROTO_ERR_AT_CAPACITY, "at_capacity", 1013},
        {DEMIX_PROTO_ERR_SHUTTING_DOWN, "shutting_down", 1001},
        {DEMIX_PROTO_ERR_RESTARTING, "restarting", 1012},
        {DEMIX_PROTO_ERR_INTERNAL, "internal", 1011},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(demix_proto_code_name(want[i].code), want[i].name);
        assert_int_equal(demix_proto_code_from_name(want[i].name),
                         want[i].code);
        assert_int_equal(demix_proto_close_code(want[i].code), want[i].close);
    }
    /* every enum value between NONE and UNKNOWN is in the table above */
    assert_int_equal(DEMIX_PROTO_ERR_UNKNOWN,
                     (int)(sizeof want / sizeof want[0]) + 1);
    assert_int_equal(demix_proto_close_code(DEMIX_PROTO_ERR_NONE), 1000);
    assert_int_equal(demix_proto_close_code(DEMIX_PROTO_ERR_UNKNOWN), 1011);
    assert_int_equal(demix_proto_close_code((demix_proto_code)999), 1011);

    /* a 1002 whose reason names an error maps back to its close code;
     * anything else is left as received */
    assert_int_equal(demix_proto_received_close_code(1002, "at_capacity"),
                     demix_proto_close_code(DEMIX_PROTO_ERR_AT_CAPACITY));
    assert_int_equal(demix_proto_received_close_code(1002, "unauthorized"),
                     1008);
    assert_int_equal(demix_proto_received_close_code(1002, "internal"), 1011);
    /* lws 4.1 turns a received 1012 into 1002: the reason restores it */
    assert_int_equal(demix_proto_received_close_code(1002, "restarting"),
                     1012);
    assert_int_equal(demix_proto_received_close_code(1002, ""), 1002);
    assert_int_equal(demix_proto_received_close_code(1002, "no_such_code"),
                     1002);
    assert_int_equal(demix_proto_received_close_code(1002, NULL), 1002);
    assert_int_equal(demix_proto_received_close_code(1002, "none"), 1002);
    assert_int_equal(demix_proto_received_close_code(1013, "at_capacity"),
                     1013);
    assert_int_equal(demix_proto_received_close_code(1000, "internal"), 1000);
    assert_string_equal(demix_proto_code_name(DEMIX_PROTO_ERR_NONE), "none");
    assert_string_equal(demix_proto_code_name((demix_proto_code)-5), "unknown");
    assert_int_equal(demix_proto_code_from_name("nope"),
                     DEMIX_PROTO_ERR_UNKNOWN);
    assert_int_equal(demix_proto_code_from_name(NULL), DEMIX_PROTO_ERR_UNKNOWN);
}

static void test_names_and_frame_bytes(void **state)
{
    (void)state;
    demix_proto_codec c;
    const char *names[] = {"pcm_s16", "pcm_f32", "opus"};
    for (int i = 0; i < DEMIX_PROTO_CODEC_COUNT; i++) {
        assert_string_equal(demix_proto_codec_name((demix_proto_codec)i),
                            names[i]);
        assert_int_equal(demix_proto_codec_from_name(names[i], &c), DEMIX_OK);
        assert_int_equal(c, i);
    }
    assert_int_equal(demix_proto_codec_from_name("PCM_S16", &c), DEMIX_EFORMAT);
    assert_int_equal(demix_proto_codec_from_name(NULL, &c), DEMIX_EARG);
    assert_int_equal(demix_proto_codec_from_name("opus", NULL), DEMIX_EARG);
    assert_string_equal(demix_proto_codec_name((demix_proto_codec)7),
                        "unknown");
    assert_int_equal(demix_proto_frame_bytes(DEMIX_PROTO_CODEC_PCM_S16, 1), 2);
    assert_int_equal(demix_proto_frame_bytes(DEMIX_PROTO_CODEC_PCM_S16, 2), 4);
    assert_int_equal(demix_proto_frame_bytes(DEMIX_PROTO_CODEC_PCM_F32, 1), 4);
    assert_int_equal(demix_proto_frame_bytes(DEMIX_PROTO_CODEC_PCM_F32, 2), 8);
    assert_int_equal(demix_proto_frame_bytes(DEMIX_PROTO_CODEC_OPUS, 2), 0);
    assert_int_equal(demix_proto_frame_bytes(DEMIX_PROTO_CODEC_PCM_F32, 3), 0);
    const char *types[] = {"none",  "start", "gains",   "end",  "stats",
                           "ready", "error", "summary", "audio"};
    for (int t = 0; t <= DEMIX_PROTO_AUDIO; t++)
        assert_string_equal(demix_proto_type_name((demix_proto_type)t),
                            types[t]);
}

/* ------------------------------------------------- client round trips */

static void assert_start_equal(const demix_proto_start *a,
                               const demix_proto_start *b)
{
    assert_int_equal(a->sample_rate_hz, b->sample_rate_hz);
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->input_codec, b->input_codec);
    assert_int_equal(a->output_codec, b->output_codec);
    assert_int_equal(a->input_pre_skip_frames, b->input_pre_skip_frames);
    assert_int_equal(a->opus_bitrate_bps, b->opus_bitrate_bps);
    assert_int_equal(a->opus_frame_ms, b->opus_frame_ms);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->stem_count, b->stem_count);
    for (int i = 0; i < a->stem_count; i++)
        assert_string_equal(a->stems[i], b->stems[i]);
    assert_int_equal(a->gain_count, b->gain_count);
    for (int i = 0; i < a->gain_count; i++) {
        assert_string_equal(a->gains[i].name, b->gains[i].name);
        assert_true(a->gains[i].gain == b->gains[i].gain);
    }
    assert_int_equal(a->has_token, b->has_token);
    if (a->has_token)
        assert_string_equal(a->token, b->token);
}

static void roundtrip_start(const demix_proto_start *s)
{
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len = 0;
    assert_int_equal(demix_proto_write_start(s, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_int_equal(strlen(buf), len);
    assert_true(utf8_ok(buf));
    demix_proto_client_msg m;
    demix_proto_error e;
    int rc = demix_proto_parse_client(buf, len, &m, &e);
    if (rc)
        print_error("%s\n-> %s %s: %s\n", buf, demix_proto_code_name(e.code),
                    e.field, e.message);
    assert_int_equal(rc, DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_START);
    assert_start_equal(&m.start, s);
}

static void test_start_roundtrip(void **state)
{
    (void)state;
    demix_proto_start s = make_start_stems();
    roundtrip_start(&s);

    s.sample_rate_hz = 48000;
    s.channels = 1;
    s.input_codec = DEMIX_PROTO_CODEC_OPUS;
    s.output_codec = DEMIX_PROTO_CODEC_OPUS;
    s.opus_bitrate_bps = 510000;
    s.opus_frame_ms = 60;
    s.input_pre_skip_frames = 312;
    s.has_token = 1;
    memset(s.token, 't', DEMIX_PROTO_TOKEN_MAX_BYTES);
    s.token[DEMIX_PROTO_TOKEN_MAX_BYTES] = '\0';
    s.token[3] = '"';
    s.token[4] = '\\';
    roundtrip_start(&s);

    demix_proto_start m;
    demix_proto_start_init(&m);
    m.sample_rate_hz = 8000;
    m.channels = 2;
    m.input_codec = DEMIX_PROTO_CODEC_PCM_F32;
    m.output_codec = DEMIX_PROTO_CODEC_PCM_S16;
    m.mode = DEMIX_PROTO_MODE_MIX;
    roundtrip_start(&m); /* no gains: all 1.0 */
    m.gain_count = 3;
    strcpy(m.gains[0].name, "vocals");
    m.gains[0].gain = 0.0f;
    strcpy(m.gains[1].name, "bass");
    m.gains[1].gain = 4.0f;
    strcpy(m.gains[2].name, "drums");
    m.gains[2].gain = 0.1f; /* not exact in binary: %.9g must round-trip */
    m.sample_rate_hz = 96000;
    roundtrip_start(&m);
}

static void test_start_defaults_and_parse(void **state)
{
    (void)state;
    demix_proto_client_msg m;
    expect_client_ok("{\"type\":\"start\",\"sample_rate\":48000,"
                     "\"channels\":2,\"input\":{\"codec\":\"pcm_f32\"},"
                     "\"output\":{\"codec\":\"opus\"},\"stems\":[\"bass\"]}",
                     &m);
    assert_int_equal(m.type, DEMIX_PROTO_START);
    assert_int_equal(m.start.opus_bitrate_bps, 128000);
    assert_int_equal(m.start.opus_frame_ms, 20);
    assert_int_equal(m.start.has_token, 0);
    assert_int_equal(m.start.mode, DEMIX_PROTO_MODE_STEMS);

    /* integral floats are integers; whitespace and key order are free */
    expect_client_ok(" {\n\"stems\" : [\"bass\",\"vocals\"], \"channels\":1.0,"
                     "\"sample_rate\":4.8e4,\"type\":\"start\",\"output\":"
                     "{\"codec\":\"opus\",\"bitrate\":6000,\"frame_ms\":5},"
                     "\"input\":{\"codec\":\"pcm_s16\"},\"token\":\"\"} \t",
                     &m);
    assert_int_equal(m.start.sample_rate_hz, 48000);
    assert_int_equal(m.start.channels, 1);
    assert_int_equal(m.start.has_token, 1);
    assert_string_equal(m.start.token, "");
}

static void test_other_client_roundtrips(void **state)
{
    (void)state;
    char buf[512];
    size_t len;
    demix_proto_client_msg m;
    demix_proto_error e;

    demix_proto_gains g;
    memset(&g, 0, sizeof g);
    g.count = 2;
    strcpy(g.gains[0].name, "other");
    g.gains[0].gain = 2.5f;
    strcpy(g.gains[1].name, "x\xc3\xa9");
    g.gains[1].gain = 1.0f / 3.0f;
    assert_int_equal(demix_proto_write_gains(&g, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_int_equal(demix_proto_parse_client(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_GAINS);
    assert_int_equal(m.gains.count, 2);
    assert_string_equal(m.gains.gains[1].name, "x\xc3\xa9");
    assert_true(m.gains.gains[0].gain == 2.5f);
    assert_true(m.gains.gains[1].gain == 1.0f / 3.0f);
    g.count = 0; /* an empty gains message is allowed (no change) */
    assert_int_equal(demix_proto_write_gains(&g, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_string_equal(buf, "{\"type\":\"gains\",\"gains\":{}}");
    assert_int_equal(demix_proto_parse_client(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.gains.count, 0);

    assert_int_equal(demix_proto_write_end(buf, sizeof buf, &len), DEMIX_OK);
    assert_string_equal(buf, "{\"type\":\"end\"}");
    assert_int_equal(len, 14);
    assert_int_equal(demix_proto_parse_client(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_END);

    assert_int_equal(demix_proto_write_stats_request(buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_string_equal(buf, "{\"type\":\"stats\"}");
    assert_int_equal(demix_proto_parse_client(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_STATS);
}

/* ------------------------------------------------- server round trips */

static void roundtrip_ready(const demix_proto_ready *r)
{
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_ready(r, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_true(utf8_ok(buf));
    demix_proto_server_msg m;
    demix_proto_error e;
    int rc = demix_proto_parse_server(buf, len, &m, &e);
    if (rc)
        print_error("%s\n-> %s: %s\n", buf, e.field, e.message);
    assert_int_equal(rc, DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_READY);
    const demix_proto_ready *p = &m.ready;
    assert_string_equal(p->session, r->session);
    assert_string_equal(p->model_name, r->model_name);
    assert_int_equal(p->model_rate_hz, r->model_rate_hz);
    assert_int_equal(p->hop_samples, r->hop_samples);
    assert_int_equal(p->window_samples, r->window_samples);
    assert_int_equal(p->latency_samples, r->latency_samples);
    assert_int_equal(p->source_count, r->source_count);
    for (int i = 0; i < r->source_count; i++)
        assert_string_equal(p->sources[i], r->sources[i]);
    assert_int_equal(p->client_rate_hz, r->client_rate_hz);
    assert_int_equal(p->channels, r->channels);
    assert_int_equal(p->input_codec, r->input_codec);
    assert_int_equal(p->output_codec, r->output_codec);
    assert_int_equal(p->input_pre_skip_frames, r->input_pre_skip_frames);
    if (r->output_codec == DEMIX_PROTO_CODEC_OPUS) {
        assert_int_equal(p->opus_bitrate_bps, r->opus_bitrate_bps);
        assert_int_equal(p->opus_frame_ms, r->opus_frame_ms);
        assert_int_equal(p->opus_frame_frames,
                         r->client_rate_hz / 1000 * r->opus_frame_ms);
        assert_int_equal(p->opus_pre_skip_frames, r->opus_pre_skip_frames);
    }
    assert_int_equal(p->latency_frames, r->latency_frames);
    assert_int_equal(p->mode, r->mode);
    if (r->mode == DEMIX_PROTO_MODE_STEMS) {
        assert_int_equal(p->stem_count, r->stem_count);
        for (int i = 0; i < r->stem_count; i++)
            assert_int_equal(p->stem_source[i], r->stem_source[i]);
    } else {
        for (int i = 0; i < r->source_count; i++)
            assert_true(p->source_gain[i] == r->source_gain[i]);
    }
}

static void test_ready_roundtrip(void **state)
{
    (void)state;
    demix_proto_ready r = make_ready();
    roundtrip_ready(&r);

    r.output_codec = DEMIX_PROTO_CODEC_PCM_S16;
    r.input_codec = DEMIX_PROTO_CODEC_PCM_F32;
    r.input_pre_skip_frames = 0;
    r.client_rate_hz = 44100;
    r.mode = DEMIX_PROTO_MODE_MIX;
    r.source_gain[0] = 0.0f;
    r.source_gain[1] = 1.0f;
    r.source_gain[2] = 3.75f;
    r.source_gain[3] = 0.2f;
    r.model_name[0] = '\0';
    roundtrip_ready(&r);

    /* the ready a server builds from a resolved start */
    demix_proto_start s = make_start_stems();
    demix_proto_error e;
    assert_int_equal(demix_proto_start_resolve(&s, SOURCES, 4, &e), DEMIX_OK);
    demix_proto_ready q = make_ready();
    demix_proto_ready_from_start(&q, &s);
    assert_int_equal(q.client_rate_hz, 44100);
    assert_int_equal(q.output_codec, DEMIX_PROTO_CODEC_PCM_F32);
    assert_int_equal(q.stem_count, 2);
    assert_int_equal(q.stem_source[0], 2);
    assert_int_equal(q.stem_source[1], 0);
    roundtrip_ready(&q);

    /* Source names key mix.gains: a ready with a name twice is refused by
     * the writer (EARG) and by the parser (found by fuzz_protocol: the
     * parser took it, the writer wrote gains with a key twice, and the
     * parser refused what the writer wrote). */
    demix_proto_ready d = make_ready();
    snprintf(d.sources[3], sizeof d.sources[3], "%s", d.sources[1]);
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_ready(&d, buf, sizeof buf, &len),
                     DEMIX_EARG);
    demix_proto_ready ok = make_ready();
    assert_int_equal(demix_proto_write_ready(&ok, buf, sizeof buf, &len),
                     DEMIX_OK);
    char twice[DEMIX_PROTO_MAX_TEXT_BYTES + 64];
    const char *src = strstr(buf, "\"sources\":[");
    assert_non_null(src);
    const char *end = strchr(src, ']');
    assert_non_null(end);
    snprintf(twice, sizeof twice, "%.*s,\"%s\"%s", (int)(end - buf), buf,
             ok.sources[0], end);
    demix_proto_server_msg m;
    assert_int_equal(demix_proto_parse_server(twice, strlen(twice), &m, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(m.type, DEMIX_PROTO_NONE);
    assert_string_equal(e.field, "model.sources");
    assert_non_null(strstr(e.message, "appears twice in model.sources"));
}

static void test_error_roundtrip(void **state)
{
    (void)state;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    demix_proto_server_msg m;
    demix_proto_error e, pe;

    for (int c = DEMIX_PROTO_ERR_BAD_JSON; c < DEMIX_PROTO_ERR_UNKNOWN; c++) {
        memset(&e, 0, sizeof e);
        e.code = (demix_proto_code)c;
        strcpy(e.message, "Something \"quoted\"\n went wrong.");
        if (c % 2)
            strcpy(e.field, "mix.gains.vocals");
        assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                         DEMIX_OK);
        assert_int_equal(demix_proto_parse_server(buf, len, &m, &pe), DEMIX_OK);
        assert_int_equal(m.type, DEMIX_PROTO_ERROR);
        assert_int_equal(m.error.code, c);
        assert_string_equal(m.error.message, e.message);
        assert_string_equal(m.error.field, e.field);
    }
    /* field left out when empty */
    memset(&e, 0, sizeof e);
    e.code = DEMIX_PROTO_ERR_AT_CAPACITY;
    strcpy(e.message, "Full.");
    assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_string_equal(buf, "{\"type\":\"error\",\"code\":\"at_capacity\","
                             "\"message\":\"Full.\"}");

    /* an error sentence that quotes a cut-off UTF-8 name stays valid UTF-8 */
    strcpy(e.message, "Unknown stem 'ab\xc3'; \x01 \xff\xfe.");
    assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_true(utf8_ok(buf));
    assert_non_null(strstr(buf, "ab\\ufffd'; \\u0001 \\ufffd\\ufffd."));
    assert_int_equal(demix_proto_parse_server(buf, len, &m, &pe), DEMIX_OK);

    /* a newer server's unknown code: accepted as UNKNOWN */
    const char *newer = "{\"type\":\"error\",\"code\":\"quota\","
                        "\"message\":\"Over quota.\",\"extra\":1}";
    assert_int_equal(demix_proto_parse_server(newer, strlen(newer), &m, &pe),
                     DEMIX_OK);
    assert_int_equal(m.error.code, DEMIX_PROTO_ERR_UNKNOWN);
    assert_string_equal(m.error.message, "Over quota.");
}

static void test_stats_summary_roundtrip(void **state)
{
    (void)state;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    demix_proto_server_msg m;
    demix_proto_error e;

    demix_proto_stats s;
    memset(&s, 0, sizeof s);
    s.sessions = 3;
    s.max_sessions = 8;
    s.hops = 9007199254740992ull; /* 2^53, the largest allowed */
    s.step_ms_p50 = 1.25;
    s.step_ms_p99 = 7.5;
    s.batch_mean = 2.75;
    s.uptime_s = 3600.5;
    assert_int_equal(demix_proto_write_stats(&s, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_int_equal(demix_proto_parse_server(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_STATS);
    assert_int_equal(m.stats.has_session, 0);
    assert_true(m.stats.hops == s.hops);
    assert_true(m.stats.step_ms_p99 == 7.5);
    s.has_session = 1;
    strcpy(s.session, "abc");
    s.session_input_frames = 441000;
    s.session_output_frames = 440000;
    s.session_hops = 861;
    s.session_late_hops = 2;
    assert_int_equal(demix_proto_write_stats(&s, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_int_equal(demix_proto_parse_server(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.stats.has_session, 1);
    assert_string_equal(m.stats.session, "abc");
    assert_int_equal(m.stats.sessions, 3);
    assert_int_equal(m.stats.max_sessions, 8);
    assert_true(m.stats.batch_mean == 2.75);
    assert_true(m.stats.uptime_s == 3600.5);
    assert_true(m.stats.session_input_frames == 441000);
    assert_true(m.stats.session_output_frames == 440000);
    assert_true(m.stats.session_hops == 861);
    assert_true(m.stats.session_late_hops == 2);
    s.hops++; /* above 2^53: not representable in JSON numbers */
    assert_int_equal(demix_proto_write_stats(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);

    demix_proto_summary u;
    memset(&u, 0, sizeof u);
    strcpy(u.session, "abc");
    u.input_frames = 1323000;
    u.output_frames = 1323000;
    u.duration_s = 30.0;
    u.wall_s = 12.5;
    u.hops = 2586;
    u.late_hops = 0;
    assert_int_equal(demix_proto_write_summary(&u, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_int_equal(demix_proto_parse_server(buf, len, &m, &e), DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_SUMMARY);
    assert_string_equal(m.summary.session, "abc");
    assert_true(m.summary.input_frames == 1323000);
    assert_true(m.summary.output_frames == 1323000);
    assert_true(m.summary.duration_s == 30.0);
    assert_true(m.summary.wall_s == 12.5);
    assert_true(m.summary.hops == 2586);
    assert_true(m.summary.late_hops == 0);
}

/* ---------------------------------------------- malformed client input */

#define START_HEAD "{\"type\":\"start\",\"sample_rate\":44100,\"channels\":2,"
#define IO_PCM                                                                 \
    "\"input\":{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":\"pcm_f32\"},"
#define IO_OPUS                                                                \
    "\"input\":{\"codec\":\"opus\"},\"output\":{\"codec\":\"opus\"},"

static void test_malformed_client_messages(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        demix_proto_code code;
        const char *field;
    } cases[] = {
        /* bad JSON, not an object */
        {"", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"end\"", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"end\",}", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{'type':'end'}", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"end\"} x", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"end\"}{}", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"[]", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"\"start\"", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"42", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"null", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"e\xffnd\"}", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"end\xc0\xaf\"}", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"en\\u0000d\"}", DEMIX_PROTO_ERR_BAD_JSON, ""},
        {"{\"type\":\"gains\",\"gains\":{\"a\":NaN}}", DEMIX_PROTO_ERR_BAD_JSON,
         ""},
        {"{\"type\":\"gains\",\"gains\":{\"a\":-nan}}",
         DEMIX_PROTO_ERR_BAD_JSON, ""},
        /* type */
        {"{}", DEMIX_PROTO_ERR_BAD_FIELD, "type"},
        {"{\"Type\":\"end\"}", DEMIX_PROTO_ERR_BAD_FIELD, "type"},
        {"{\"type\":3}", DEMIX_PROTO_ERR_BAD_FIELD, "type"},
        {"{\"type\":null}", DEMIX_PROTO_ERR_BAD_FIELD, "type"},
        {"{\"type\":\"hello\"}", DEMIX_PROTO_ERR_UNKNOWN_TYPE, "type"},
        {"{\"type\":\"ready\"}", DEMIX_PROTO_ERR_UNKNOWN_TYPE, "type"},
        {"{\"type\":\"END\"}", DEMIX_PROTO_ERR_UNKNOWN_TYPE, "type"},
        {"{\"type\":\"end\",\"type\":\"end\"}", DEMIX_PROTO_ERR_BAD_FIELD,
         "type"},
        {"{\"type\":\"end\",\"now\":1}", DEMIX_PROTO_ERR_BAD_FIELD, "now"},
        {"{\"type\":\"stats\",\"all\":true}", DEMIX_PROTO_ERR_BAD_FIELD, "all"},
        /* start: missing and mistyped fields */
        {"{\"type\":\"start\"}", DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":\"44100\",\"channels\":2}",
         DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":44100}",
         DEMIX_PROTO_ERR_BAD_FIELD, "channels"},
        {START_HEAD "\"stems\":[\"bass\"]}", DEMIX_PROTO_ERR_BAD_FIELD,
         "input"},
        {START_HEAD "\"input\":\"pcm_s16\",\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input"},
        {START_HEAD "\"input\":{},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input.codec"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\"},"
                    "\"output\":{\"codec\":5},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.codec"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\",\"rate\":1},"
                    "\"output\":{\"codec\":\"pcm_s16\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input.rate"},
        {START_HEAD IO_PCM "\"stems\":\"bass\"}", DEMIX_PROTO_ERR_BAD_FIELD,
         "stems"},
        {START_HEAD IO_PCM "\"stems\":[\"bass\",1]}", DEMIX_PROTO_ERR_BAD_FIELD,
         "stems[1]"},
        {START_HEAD IO_PCM "\"mix\":[]}", DEMIX_PROTO_ERR_BAD_FIELD, "mix"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":[1]}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains"},
        {START_HEAD IO_PCM "\"mix\":{\"level\":1}}", DEMIX_PROTO_ERR_BAD_FIELD,
         "mix.level"},
        {START_HEAD IO_PCM "\"stems\":[\"bass\"],\"token\":5}",
         DEMIX_PROTO_ERR_BAD_FIELD, "token"},
        {START_HEAD IO_PCM "\"stems\":[\"bass\"],\"tokn\":\"x\"}",
         DEMIX_PROTO_ERR_BAD_FIELD, "tokn"},
        {START_HEAD IO_PCM "\"stems\":[\"bass\"],\"channels\":2}",
         DEMIX_PROTO_ERR_BAD_FIELD, "channels"},
        /* ranges */
        {"{\"type\":\"start\",\"sample_rate\":7999,\"channels\":2," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":96001,\"channels\":2," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":-44100,\"channels\":2," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":44100.5,\"channels\":2," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":1e300,\"channels\":2," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "sample_rate"},
        {"{\"type\":\"start\",\"sample_rate\":44100,\"channels\":0," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "channels"},
        {"{\"type\":\"start\",\"sample_rate\":44100,\"channels\":3," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "channels"},
        {"{\"type\":\"start\",\"sample_rate\":44100,\"channels\":true," IO_PCM
         "\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "channels"},
        /* codecs */
        {START_HEAD "\"input\":{\"codec\":\"mp3\"},"
                    "\"output\":{\"codec\":\"pcm_f32\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input.codec"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\"},"
                    "\"output\":{\"codec\":\"flac\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.codec"},
        {START_HEAD IO_OPUS "\"stems\":[\"bass\"]}", DEMIX_PROTO_ERR_BAD_FIELD,
         "sample_rate"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":"
                    "\"pcm_s16\",\"bitrate\":64000},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.bitrate"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":"
                    "\"pcm_s16\",\"frame_ms\":20},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.frame_ms"},
        {START_HEAD "\"input\":{\"codec\":\"pcm_s16\",\"pre_skip\":0},"
                    "\"output\":{\"codec\":\"pcm_s16\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input.pre_skip"},
        {"{\"type\":\"start\",\"sample_rate\":48000,\"channels\":2,\"input\":"
         "{\"codec\":\"opus\",\"pre_skip\":-1},\"output\":{\"codec\":"
         "\"pcm_s16\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input.pre_skip"},
        {"{\"type\":\"start\",\"sample_rate\":48000,\"channels\":2,\"input\":"
         "{\"codec\":\"opus\",\"pre_skip\":65536},\"output\":{\"codec\":"
         "\"pcm_s16\"},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input.pre_skip"},
        {"{\"type\":\"start\",\"sample_rate\":48000,\"channels\":2,\"input\":"
         "{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":\"opus\",\"bitrate\":"
         "5999},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.bitrate"},
        {"{\"type\":\"start\",\"sample_rate\":48000,\"channels\":2,\"input\":"
         "{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":\"opus\",\"bitrate\":"
         "510001},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.bitrate"},
        {"{\"type\":\"start\",\"sample_rate\":48000,\"channels\":2,\"input\":"
         "{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":\"opus\",\"frame_ms\":"
         "15},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.frame_ms"},
        {"{\"type\":\"start\",\"sample_rate\":48000,\"channels\":2,\"input\":"
         "{\"codec\":\"pcm_s16\"},\"output\":{\"codec\":\"opus\",\"frame_ms\":"
         "2.5},\"stems\":[\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "output.frame_ms"},
        /* stems and mix */
        {START_HEAD IO_PCM "\"stems\":[]}", DEMIX_PROTO_ERR_BAD_FIELD, "stems"},
        {START_HEAD IO_PCM "\"stems\":[\"bass\",\"vocals\",\"bass\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "stems[2]"},
        {START_HEAD IO_PCM "\"stems\":[\"\"]}", DEMIX_PROTO_ERR_BAD_FIELD,
         "stems[0]"},
        {START_HEAD IO_PCM
         "\"stems\":[\"0123456789012345678901234567890123\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "stems[0]"},
        {START_HEAD IO_PCM
         "\"stems\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
         DEMIX_PROTO_ERR_BAD_FIELD, "stems"},
        {START_HEAD IO_PCM "\"stems\":[\"bass\"],\"mix\":{}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix"},
        {START_HEAD IO_PCM "\"token\":\"x\"}", DEMIX_PROTO_ERR_BAD_FIELD,
         "stems"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"bass\":-0.5}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains.bass"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"bass\":4.001}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains.bass"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"bass\":1e999}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains.bass"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"bass\":\"1\"}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains.bass"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"bass\":null}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains.bass"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"bass\":1,\"bass\":2}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains.bass"},
        {START_HEAD IO_PCM "\"mix\":{\"gains\":{\"\":1}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains."},
        {START_HEAD IO_PCM
         "\"mix\":{\"gains\":{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,"
         "\"f\":1,\"g\":1,\"h\":1,\"i\":1}}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "mix.gains"},
        /* gains message */
        {"{\"type\":\"gains\"}", DEMIX_PROTO_ERR_BAD_FIELD, "gains"},
        {"{\"type\":\"gains\",\"gains\":[]}", DEMIX_PROTO_ERR_BAD_FIELD,
         "gains"},
        {"{\"type\":\"gains\",\"gains\":{\"vocals\":-1}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "gains.vocals"},
        {"{\"type\":\"gains\",\"gains\":{\"vocals\":true}}",
         DEMIX_PROTO_ERR_BAD_FIELD, "gains.vocals"},
        {"{\"type\":\"gains\",\"gains\":{\"vocals\":1},\"at\":0}",
         DEMIX_PROTO_ERR_BAD_FIELD, "at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_client_error(cases[i].json, cases[i].code, cases[i].field);

    /* a 257-byte token */
    char json[1024];
    char tok[DEMIX_PROTO_TOKEN_MAX_BYTES + 2];
    memset(tok, 'k', sizeof tok - 1);
    tok[sizeof tok - 1] = '\0';
    snprintf(json, sizeof json,
             START_HEAD IO_PCM "\"stems\":[\"bass\"],\"token\":\"%s\"}", tok);
    expect_client_error(json, DEMIX_PROTO_ERR_BAD_FIELD, "token");
    tok[DEMIX_PROTO_TOKEN_MAX_BYTES] = '\0'; /* 256 bytes: fine */
    snprintf(json, sizeof json,
             START_HEAD IO_PCM "\"stems\":[\"bass\"],\"token\":\"%s\"}", tok);
    demix_proto_client_msg m;
    expect_client_ok(json, &m);
    assert_int_equal(strlen(m.start.token), DEMIX_PROTO_TOKEN_MAX_BYTES);

    /* a NUL byte inside the length */
    demix_proto_error e;
    const char nul[] = "{\"type\":\"end\"}\0{}";
    assert_int_equal(demix_proto_parse_client(nul, sizeof nul - 1, &m, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_BAD_JSON);
    /* the length bounds the parse: a valid prefix alone is fine */
    assert_int_equal(demix_proto_parse_client(nul, 14, &m, &e), DEMIX_OK);
    /* "\\u0000" is a backslash then u0000: allowed */
    expect_client_ok("{\"type\":\"gains\",\"gains\":{\"a\\\\u0000\":1}}", &m);
    assert_string_equal(m.gains.gains[0].name, "a\\u0000");
    /* deep nesting stops inside cJSON's limit, as bad JSON */
    char deep[DEMIX_PROTO_MAX_TEXT_BYTES];
    memset(deep, '[', sizeof deep);
    assert_int_equal(demix_proto_parse_client(deep, sizeof deep, &m, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_BAD_JSON);
}

static void test_oversized_message(void **state)
{
    (void)state;
    char big[DEMIX_PROTO_MAX_TEXT_BYTES + 2];
    const char *end = "{\"type\":\"end\"}";
    size_t n = strlen(end);
    /* exactly the limit: an end message padded with spaces */
    memset(big, ' ', sizeof big);
    memcpy(big, end, n);
    demix_proto_client_msg m;
    demix_proto_server_msg sm;
    demix_proto_error e;
    assert_int_equal(
        demix_proto_parse_client(big, DEMIX_PROTO_MAX_TEXT_BYTES, &m, &e),
        DEMIX_OK);
    assert_int_equal(m.type, DEMIX_PROTO_END);
    assert_int_equal(
        demix_proto_parse_client(big, DEMIX_PROTO_MAX_TEXT_BYTES + 1, &m, &e),
        DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_TOO_LARGE);
    assert_int_equal(demix_proto_close_code(e.code), 1009);
    assert_int_equal(
        demix_proto_parse_server(big, DEMIX_PROTO_MAX_TEXT_BYTES + 1, &sm, &e),
        DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_TOO_LARGE);
    /* a huge length is refused before anything is read past the limit */
    assert_int_equal(demix_proto_parse_client(big, (size_t)-1, &m, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_TOO_LARGE);
}

static void test_malformed_server_messages(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        demix_proto_code code;
        const char *field;
    } cases[] = {
        {"{\"type\":\"start\"}", DEMIX_PROTO_ERR_UNKNOWN_TYPE, "type"},
        {"{\"code\":\"bad_json\"}", DEMIX_PROTO_ERR_BAD_FIELD, "type"},
        {"{\"type\":\"error\",\"message\":\"x\"}", DEMIX_PROTO_ERR_BAD_FIELD,
         "code"},
        {"{\"type\":\"error\",\"code\":\"bad_json\"}",
         DEMIX_PROTO_ERR_BAD_FIELD, "message"},
        {"{\"type\":\"summary\",\"session\":\"a\",\"input_frames\":-1}",
         DEMIX_PROTO_ERR_BAD_FIELD, "input_frames"},
        {"{\"type\":\"ready\",\"session\":\"a\"}", DEMIX_PROTO_ERR_BAD_FIELD,
         "model"},
        {"{\"type\":\"stats\",\"sessions\":1}", DEMIX_PROTO_ERR_BAD_FIELD,
         "max_sessions"},
        {"[1]", DEMIX_PROTO_ERR_BAD_JSON, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        demix_proto_server_msg m;
        demix_proto_error e;
        int rc = demix_proto_parse_server(cases[i].json, strlen(cases[i].json),
                                          &m, &e);
        if (rc != DEMIX_EPROTOCOL || e.code != cases[i].code)
            print_error("input %s -> %s %s\n", cases[i].json,
                        demix_proto_code_name(e.code), e.message);
        assert_int_equal(rc, DEMIX_EPROTOCOL);
        assert_int_equal(e.code, cases[i].code);
        assert_string_equal(e.field, cases[i].field);
        assert_int_equal(m.type, DEMIX_PROTO_NONE);
    }
    /* a ready whose stems name a non-source */
    demix_proto_ready r = make_ready();
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len),
                     DEMIX_OK);
    char *p = strstr(buf, "\"stems\":[\"vocals\"");
    assert_non_null(p);
    memcpy(p + 10, "vacals", 6);
    demix_proto_server_msg m;
    demix_proto_error e;
    assert_int_equal(demix_proto_parse_server(buf, len, &m, &e),
                     DEMIX_EPROTOCOL);
    assert_string_equal(e.field, "stems[0]");
}

/* --------------------------------------------------------- resolution */

static void test_resolve_start(void **state)
{
    (void)state;
    demix_proto_error e;
    demix_proto_start s = make_start_stems();
    assert_int_equal(demix_proto_start_resolve(&s, SOURCES, 4, &e), DEMIX_OK);
    assert_int_equal(s.source_count, 4);
    assert_int_equal(s.stem_source[0], 2);
    assert_int_equal(s.stem_source[1], 0);
    assert_true(s.source_gain[0] == 1.0f && s.source_gain[1] == 0.0f &&
                s.source_gain[2] == 1.0f && s.source_gain[3] == 0.0f);

    strcpy(s.stems[1], "guitar");
    assert_int_equal(demix_proto_start_resolve(&s, SOURCES, 4, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_UNKNOWN_STEM);
    assert_string_equal(e.field, "stems[1]");
    assert_non_null(strstr(e.message, "'guitar'"));
    assert_non_null(strstr(e.message, "drums, bass, vocals, other"));
    assert_int_equal(demix_proto_close_code(e.code), 1008);

    demix_proto_client_msg m;
    expect_client_ok(
        START_HEAD IO_PCM "\"mix\":{\"gains\":{\"vocals\":0,\"bass\":2}}}", &m);
    assert_int_equal(demix_proto_start_resolve(&m.start, SOURCES, 4, &e),
                     DEMIX_OK);
    assert_true(m.start.source_gain[0] == 1.0f);
    assert_true(m.start.source_gain[1] == 2.0f);
    assert_true(m.start.source_gain[2] == 0.0f);
    assert_true(m.start.source_gain[3] == 1.0f);
    expect_client_ok(START_HEAD IO_PCM "\"mix\":{\"gains\":{\"piano\":1}}}",
                     &m);
    assert_int_equal(demix_proto_start_resolve(&m.start, SOURCES, 4, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_UNKNOWN_STEM);
    assert_string_equal(e.field, "mix.gains.piano");
    /* a two-source model: "vocals" of a four-source request is unknown */
    expect_client_ok(START_HEAD IO_PCM "\"stems\":[\"bass\",\"vocals\"]}", &m);
    assert_int_equal(demix_proto_start_resolve(&m.start, SOURCES, 2, &e),
                     DEMIX_EPROTOCOL);
    assert_string_equal(e.field, "stems[1]");

    assert_int_equal(demix_proto_start_resolve(&s, SOURCES, 0, &e), DEMIX_EARG);
    assert_int_equal(demix_proto_start_resolve(&s, SOURCES, 9, &e), DEMIX_EARG);
}

static void test_gains_apply(void **state)
{
    (void)state;
    float g[4] = {1, 1, 1, 1};
    demix_proto_error e;
    demix_proto_client_msg m;
    expect_client_ok("{\"type\":\"gains\",\"gains\":{\"other\":0.5,"
                     "\"drums\":0}}",
                     &m);
    assert_int_equal(demix_proto_gains_apply(&m.gains, SOURCES, 4, g, &e),
                     DEMIX_OK);
    assert_true(g[0] == 0.0f && g[1] == 1.0f && g[2] == 1.0f && g[3] == 0.5f);
    expect_client_ok("{\"type\":\"gains\",\"gains\":{\"bass\":3,"
                     "\"kazoo\":1}}",
                     &m);
    assert_int_equal(demix_proto_gains_apply(&m.gains, SOURCES, 4, g, &e),
                     DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_UNKNOWN_STEM);
    assert_string_equal(e.field, "gains.kazoo");
    /* all or nothing: bass kept its gain */
    assert_true(g[0] == 0.0f && g[1] == 1.0f && g[2] == 1.0f && g[3] == 0.5f);
}

static void test_check_order(void **state)
{
    (void)state;
    enum { OK = 0, ORDER = 1, BEFORE = 2 };
    static const struct {
        demix_proto_state state;
        demix_proto_mode mode;
        demix_proto_type type;
        int want;
    } cases[] = {
        {DEMIX_PROTO_STATE_IDLE, DEMIX_PROTO_MODE_NONE, DEMIX_PROTO_START, OK},
        {DEMIX_PROTO_STATE_IDLE, DEMIX_PROTO_MODE_NONE, DEMIX_PROTO_STATS, OK},
        {DEMIX_PROTO_STATE_IDLE, DEMIX_PROTO_MODE_NONE, DEMIX_PROTO_AUDIO,
         BEFORE},
        {DEMIX_PROTO_STATE_IDLE, DEMIX_PROTO_MODE_NONE, DEMIX_PROTO_GAINS,
         ORDER},
        {DEMIX_PROTO_STATE_IDLE, DEMIX_PROTO_MODE_NONE, DEMIX_PROTO_END, ORDER},
        {DEMIX_PROTO_STATE_STREAMING, DEMIX_PROTO_MODE_STEMS, DEMIX_PROTO_AUDIO,
         OK},
        {DEMIX_PROTO_STATE_STREAMING, DEMIX_PROTO_MODE_STEMS, DEMIX_PROTO_END,
         OK},
        {DEMIX_PROTO_STATE_STREAMING, DEMIX_PROTO_MODE_STEMS, DEMIX_PROTO_STATS,
         OK},
        {DEMIX_PROTO_STATE_STREAMING, DEMIX_PROTO_MODE_STEMS, DEMIX_PROTO_GAINS,
         ORDER},
        {DEMIX_PROTO_STATE_STREAMING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_GAINS,
         OK},
        {DEMIX_PROTO_STATE_STREAMING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_START,
         ORDER},
        {DEMIX_PROTO_STATE_ENDING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_GAINS, OK},
        {DEMIX_PROTO_STATE_ENDING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_STATS, OK},
        {DEMIX_PROTO_STATE_ENDING, DEMIX_PROTO_MODE_STEMS, DEMIX_PROTO_GAINS,
         ORDER},
        {DEMIX_PROTO_STATE_ENDING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_AUDIO,
         ORDER},
        {DEMIX_PROTO_STATE_ENDING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_END,
         ORDER},
        {DEMIX_PROTO_STATE_ENDING, DEMIX_PROTO_MODE_MIX, DEMIX_PROTO_START,
         ORDER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        demix_proto_error e;
        int rc = demix_proto_check_order(cases[i].state, cases[i].mode,
                                         cases[i].type, &e);
        if (cases[i].want == OK) {
            assert_int_equal(rc, DEMIX_OK);
        } else {
            assert_int_equal(rc, DEMIX_EPROTOCOL);
            assert_int_equal(e.code, cases[i].want == BEFORE
                                         ? DEMIX_PROTO_ERR_AUDIO_BEFORE_START
                                         : DEMIX_PROTO_ERR_BAD_ORDER);
            assert_true(e.message[0] != '\0');
        }
    }
    assert_int_equal(demix_proto_check_order(DEMIX_PROTO_STATE_STREAMING,
                                             DEMIX_PROTO_MODE_MIX,
                                             DEMIX_PROTO_READY, NULL),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_check_order((demix_proto_state)7,
                                             DEMIX_PROTO_MODE_MIX,
                                             DEMIX_PROTO_END, NULL),
                     DEMIX_EARG);
}

/* -------------------------------------------------------------- audio */

static void test_audio_in_layout_and_roundtrip(void **state)
{
    (void)state;
    uint8_t msg[DEMIX_PROTO_AUDIO_IN_HEADER_BYTES + 16];
    demix_proto_audio_in h = {.codec = DEMIX_PROTO_CODEC_PCM_F32,
                              .seq = 0x01020304u};
    assert_int_equal(demix_proto_audio_in_write_header(&h, msg, sizeof msg),
                     DEMIX_OK);
    static const uint8_t want[8] = {0xD1, 0x01, 0x01, 0x00,
                                    0x04, 0x03, 0x02, 0x01};
    assert_memory_equal(msg, want, 8);
    for (int i = 0; i < 16; i++)
        msg[8 + i] = (uint8_t)i;

    demix_proto_audio_in d;
    demix_proto_error e;
    assert_int_equal(demix_proto_audio_in_decode(msg, sizeof msg,
                                                 DEMIX_PROTO_CODEC_PCM_F32, 2,
                                                 0x01020304u, &d, &e),
                     DEMIX_OK);
    assert_int_equal(d.codec, DEMIX_PROTO_CODEC_PCM_F32);
    assert_int_equal(d.seq, 0x01020304u);
    assert_int_equal(d.frames, 2); /* 16 bytes of stereo float */
    assert_ptr_equal(d.payload, msg + 8);
    assert_int_equal(d.payload_bytes, 16);
    assert_int_equal(demix_proto_audio_in_decode(msg, sizeof msg,
                                                 DEMIX_PROTO_CODEC_PCM_F32, 1,
                                                 0x01020304u, &d, &e),
                     DEMIX_OK);
    assert_int_equal(d.frames, 4);

    /* s16 mono: one frame is 2 bytes; opus: any non-empty packet */
    h.codec = DEMIX_PROTO_CODEC_PCM_S16;
    h.seq = 0;
    assert_int_equal(demix_proto_audio_in_write_header(&h, msg, 8), DEMIX_OK);
    assert_int_equal(demix_proto_audio_in_decode(
                         msg, 10, DEMIX_PROTO_CODEC_PCM_S16, 1, 0, &d, &e),
                     DEMIX_OK);
    assert_int_equal(d.frames, 1);
    h.codec = DEMIX_PROTO_CODEC_OPUS;
    assert_int_equal(demix_proto_audio_in_write_header(&h, msg, 8), DEMIX_OK);
    assert_int_equal(demix_proto_audio_in_decode(msg, 9, DEMIX_PROTO_CODEC_OPUS,
                                                 2, 0, &d, &e),
                     DEMIX_OK);
    assert_int_equal(d.frames, 0);
    assert_int_equal(d.payload_bytes, 1);

    /* the largest message */
    static uint8_t big[DEMIX_PROTO_MAX_BINARY_BYTES + 1];
    h.codec = DEMIX_PROTO_CODEC_PCM_S16;
    assert_int_equal(demix_proto_audio_in_write_header(&h, big, sizeof big),
                     DEMIX_OK);
    assert_int_equal(
        demix_proto_audio_in_decode(big, DEMIX_PROTO_MAX_BINARY_BYTES,
                                    DEMIX_PROTO_CODEC_PCM_S16, 2, 0, &d, &e),
        DEMIX_OK);
    assert_int_equal(d.frames, (DEMIX_PROTO_MAX_BINARY_BYTES - 8) / 4);
    assert_int_equal(
        demix_proto_audio_in_decode(big, DEMIX_PROTO_MAX_BINARY_BYTES + 1,
                                    DEMIX_PROTO_CODEC_PCM_S16, 1, 0, &d, &e),
        DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_TOO_LARGE);
}

static void expect_in_error(const uint8_t *msg, size_t len,
                            demix_proto_codec codec, int channels, uint32_t seq,
                            demix_proto_code code)
{
    demix_proto_audio_in d;
    demix_proto_error e;
    assert_int_equal(
        demix_proto_audio_in_decode(msg, len, codec, channels, seq, &d, &e),
        DEMIX_EPROTOCOL);
    assert_int_equal(e.code, code);
    assert_true(e.message[0] != '\0');
}

static void test_audio_in_malformed(void **state)
{
    (void)state;
    const demix_proto_code BAD = DEMIX_PROTO_ERR_BAD_AUDIO;
    uint8_t good[8 + 8] = {0xD1, 0x01, 0x00, 0x00, 5, 0, 0, 0};
    const demix_proto_codec S16 = DEMIX_PROTO_CODEC_PCM_S16;
    uint8_t m[sizeof good];
    demix_proto_audio_in d;
    demix_proto_error e;
    assert_int_equal(
        demix_proto_audio_in_decode(good, sizeof good, S16, 2, 5, &d, &e),
        DEMIX_OK);
    for (size_t n = 0; n < 8; n++) /* truncated header */
        expect_in_error(good, n, S16, 2, 5, BAD);
    expect_in_error(good, 8, S16, 2, 5, BAD); /* zero-length payload */
    for (size_t n = 9; n < sizeof good; n++)  /* not whole stereo s16 frames */
        if ((n - 8) % 4)
            expect_in_error(good, n, S16, 2, 5, BAD);
    expect_in_error(good, 8 + 6, DEMIX_PROTO_CODEC_PCM_F32, 1, 5, BAD);
    expect_in_error(good, sizeof good, S16, 2, 6, BAD); /* sequence */
    memcpy(m, good, sizeof m);
    m[0] = 0x7B; /* '{': a JSON message sent as binary */
    expect_in_error(m, sizeof m, S16, 2, 5, BAD);
    m[0] = 0xD2; /* a later version */
    expect_in_error(m, sizeof m, S16, 2, 5, BAD);
    assert_int_equal(
        demix_proto_audio_in_decode(m, sizeof m, S16, 2, 5, &d, &e),
        DEMIX_EPROTOCOL);
    assert_non_null(strstr(e.message, "version 2"));
    memcpy(m, good, sizeof m);
    m[1] = DEMIX_PROTO_KIND_AUDIO_OUT;
    expect_in_error(m, sizeof m, S16, 2, 5, BAD);
    memcpy(m, good, sizeof m);
    m[2] = DEMIX_PROTO_CODEC_OPUS; /* not the session's codec */
    expect_in_error(m, sizeof m, S16, 2, 5, BAD);
    memcpy(m, good, sizeof m);
    m[3] = 0x01; /* flags */
    expect_in_error(m, sizeof m, S16, 2, 5, BAD);
    assert_int_equal(demix_proto_close_code(BAD), 1003);
    /* an opus session: one byte is a packet, zero bytes is not */
    good[2] = DEMIX_PROTO_CODEC_OPUS;
    expect_in_error(good, 8, DEMIX_PROTO_CODEC_OPUS, 2, 5, BAD);
}

static void test_audio_out_layout_and_roundtrip(void **state)
{
    (void)state;
    uint8_t msg[DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES + 8];
    demix_proto_audio_out h = {.codec = DEMIX_PROTO_CODEC_PCM_S16,
                               .flags = DEMIX_PROTO_FLAG_LAST,
                               .stem = 3,
                               .seq = 0xA1B2C3D4u,
                               .frames = 2,
                               .position = 0x0102030405060708ull};
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, sizeof msg),
                     DEMIX_OK);
    static const uint8_t want[24] = {
        0xD1, 0x02, 0x00, 0x01, 0xD4,
        0xC3, 0xB2, 0xA1, /* magic kind codec
                             flags seq */
        0x03, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, /* stem, frames */
        0x08, 0x07, 0x06, 0x05, 0x04,
        0x03, 0x02, 0x01, /* position */
    };
    assert_memory_equal(msg, want, 24);
    demix_proto_audio_out d;
    demix_proto_error e;
    assert_int_equal(demix_proto_audio_out_decode(msg, sizeof msg,
                                                  DEMIX_PROTO_CODEC_PCM_S16, 2,
                                                  0xA1B2C3D4u, &d, &e),
                     DEMIX_OK);
    assert_int_equal(d.flags, DEMIX_PROTO_FLAG_LAST);
    assert_int_equal(d.stem, 3);
    assert_int_equal(d.frames, 2);
    assert_true(d.position == 0x0102030405060708ull);
    assert_ptr_equal(d.payload, msg + 24);
    assert_int_equal(d.payload_bytes, 8);

    /* the mix, opus: frames is the packet's frame size */
    h.codec = DEMIX_PROTO_CODEC_OPUS;
    h.stem = DEMIX_PROTO_STEM_MIX;
    h.flags = 0;
    h.frames = 960;
    h.seq = 0;
    h.position = 0;
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, 24), DEMIX_OK);
    assert_int_equal(demix_proto_audio_out_decode(
                         msg, 27, DEMIX_PROTO_CODEC_OPUS, 1, 0, &d, &e),
                     DEMIX_OK);
    assert_int_equal(d.stem, DEMIX_PROTO_STEM_MIX);
    assert_int_equal(d.frames, 960);
    assert_int_equal(d.payload_bytes, 3);
    /* the client is lenient on unknown flag bits and reserved bytes */
    msg[3] = 0x80;
    msg[9] = 0x55;
    assert_int_equal(demix_proto_audio_out_decode(
                         msg, 27, DEMIX_PROTO_CODEC_OPUS, 1, 0, &d, &e),
                     DEMIX_OK);
}

static void test_audio_out_malformed(void **state)
{
    (void)state;
    uint8_t msg[24 + 8];
    demix_proto_audio_out h = {.codec = DEMIX_PROTO_CODEC_PCM_F32,
                               .stem = 0,
                               .seq = 7,
                               .frames = 1,
                               .position = 512};
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, sizeof msg),
                     DEMIX_OK);
    memset(msg + 24, 0, 8);
    const demix_proto_codec F32 = DEMIX_PROTO_CODEC_PCM_F32;
    demix_proto_audio_out d;
    demix_proto_error e;
    assert_int_equal(
        demix_proto_audio_out_decode(msg, sizeof msg, F32, 2, 7, &d, &e),
        DEMIX_OK);
    for (size_t n = 0; n < sizeof msg; n++)
        assert_int_equal(
            demix_proto_audio_out_decode(msg, n, F32, 2, 7, &d, &e),
            DEMIX_EPROTOCOL);
    assert_int_equal(
        demix_proto_audio_out_decode(msg, sizeof msg, F32, 1, 7, &d, &e),
        DEMIX_EPROTOCOL); /* 8 bytes = 2 mono frames, header says 1 */
    assert_int_equal(e.code, DEMIX_PROTO_ERR_BAD_AUDIO);
    assert_int_equal(
        demix_proto_audio_out_decode(msg, sizeof msg, F32, 2, 8, &d, &e),
        DEMIX_EPROTOCOL);
    uint8_t m[sizeof msg];
    memcpy(m, msg, sizeof m);
    m[8] = 8; /* stem index out of range */
    assert_int_equal(
        demix_proto_audio_out_decode(m, sizeof m, F32, 2, 7, &d, &e),
        DEMIX_EPROTOCOL);
    memcpy(m, msg, sizeof m);
    m[12] = 0; /* zero frames */
    assert_int_equal(
        demix_proto_audio_out_decode(m, sizeof m, F32, 2, 7, &d, &e),
        DEMIX_EPROTOCOL);
    memcpy(m, msg, sizeof m);
    m[1] = DEMIX_PROTO_KIND_AUDIO_IN;
    assert_int_equal(
        demix_proto_audio_out_decode(m, sizeof m, F32, 2, 7, &d, &e),
        DEMIX_EPROTOCOL);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_BAD_AUDIO);

    /* writer refusals */
    h.stem = 8;
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, 24),
                     DEMIX_EARG);
    h.stem = 1;
    h.frames = 0;
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, 24),
                     DEMIX_EARG);
    h.frames = 1;
    h.flags = 0x02;
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, 24),
                     DEMIX_EARG);
    h.flags = 0;
    h.codec = (demix_proto_codec)3;
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, 24),
                     DEMIX_EARG);
    h.codec = F32;
    assert_int_equal(demix_proto_audio_out_write_header(&h, msg, 23),
                     DEMIX_ENOSPACE);
    demix_proto_audio_in hi = {.codec = F32, .flags = 1};
    assert_int_equal(demix_proto_audio_in_write_header(&hi, msg, 8),
                     DEMIX_EARG);
    hi.flags = 0;
    assert_int_equal(demix_proto_audio_in_write_header(&hi, msg, 7),
                     DEMIX_ENOSPACE);
}

/* ------------------------------------------------- writers: space, args */

typedef int (*write_fn)(const void *obj, char *buf, size_t cap, size_t *len);

static int w_start(const void *o, char *b, size_t c, size_t *l)
{
    return demix_proto_write_start(o, b, c, l);
}
static int w_gains(const void *o, char *b, size_t c, size_t *l)
{
    return demix_proto_write_gains(o, b, c, l);
}
static int w_end(const void *o, char *b, size_t c, size_t *l)
{
    (void)o;
    return demix_proto_write_end(b, c, l);
}
static int w_statsreq(const void *o, char *b, size_t c, size_t *l)
{
    (void)o;
    return demix_proto_write_stats_request(b, c, l);
}
static int w_ready(const void *o, char *b, size_t c, size_t *l)
{
    return demix_proto_write_ready(o, b, c, l);
}
static int w_error(const void *o, char *b, size_t c, size_t *l)
{
    return demix_proto_write_error(o, b, c, l);
}
static int w_stats(const void *o, char *b, size_t c, size_t *l)
{
    return demix_proto_write_stats(o, b, c, l);
}
static int w_summary(const void *o, char *b, size_t c, size_t *l)
{
    return demix_proto_write_summary(o, b, c, l);
}

/* Every cap below len + 1 gives NOSPACE; len + 1 gives OK. */
static void check_space(write_fn f, const void *obj)
{
    char full[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len = 0;
    assert_int_equal(f(obj, full, sizeof full, &len), DEMIX_OK);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    for (size_t cap = 0; cap <= len; cap++) {
        size_t l2 = 12345;
        assert_int_equal(f(obj, buf, cap, &l2), DEMIX_ENOSPACE);
    }
    size_t l3 = 0;
    assert_int_equal(f(obj, buf, len + 1, &l3), DEMIX_OK);
    assert_int_equal(l3, len);
    assert_memory_equal(buf, full, len + 1);
    free(buf);
}

static void test_writers_nospace(void **state)
{
    (void)state;
    demix_proto_start s = make_start_stems();
    s.has_token = 1;
    strcpy(s.token, "secret");
    demix_proto_gains g = {.count = 1};
    strcpy(g.gains[0].name, "bass");
    g.gains[0].gain = 0.5f;
    demix_proto_ready r = make_ready();
    demix_proto_error e = {.code = DEMIX_PROTO_ERR_BAD_FIELD};
    strcpy(e.field, "channels");
    strcpy(e.message, "channels must be 1 or 2.");
    demix_proto_stats st = {.sessions = 1, .has_session = 1};
    strcpy(st.session, "x");
    demix_proto_summary su = {.input_frames = 5};
    strcpy(su.session, "x");
    check_space(w_start, &s);
    check_space(w_gains, &g);
    check_space(w_end, NULL);
    check_space(w_statsreq, NULL);
    check_space(w_ready, &r);
    check_space(w_error, &e);
    check_space(w_stats, &st);
    check_space(w_summary, &su);
}

static void test_writers_refuse_invalid(void **state)
{
    (void)state;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    demix_proto_start s = make_start_stems();
    s.sample_rate_hz = 0;
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);
    s = make_start_stems();
    strcpy(s.stems[1], "vocals"); /* duplicate */
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);
    s = make_start_stems();
    s.mode = DEMIX_PROTO_MODE_MIX; /* stems with mode mix */
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);
    s = make_start_stems();
    s.output_codec = DEMIX_PROTO_CODEC_OPUS; /* 44.1 kHz, no bitrate */
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);
    s = make_start_stems();
    s.opus_bitrate_bps = 64000; /* bitrate with pcm */
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);
    s = make_start_stems();
    s.has_token = 1;
    memset(s.token, 'a', sizeof s.token); /* unterminated */
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_EARG);

    demix_proto_gains g = {.count = 1};
    strcpy(g.gains[0].name, "bass");
    g.gains[0].gain = NAN;
    assert_int_equal(demix_proto_write_gains(&g, buf, sizeof buf, &len),
                     DEMIX_EARG);
    g.gains[0].gain = -1.0f;
    assert_int_equal(demix_proto_write_gains(&g, buf, sizeof buf, &len),
                     DEMIX_EARG);
    g.gains[0].gain = INFINITY;
    assert_int_equal(demix_proto_write_gains(&g, buf, sizeof buf, &len),
                     DEMIX_EARG);
    g.gains[0].gain = 1.0f;
    g.count = 9;
    assert_int_equal(demix_proto_write_gains(&g, buf, sizeof buf, &len),
                     DEMIX_EARG);

    demix_proto_ready r = make_ready();
    r.session[0] = '\0';
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len),
                     DEMIX_EARG);
    r = make_ready();
    r.stem_source[1] = 4;
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len),
                     DEMIX_EARG);
    r = make_ready();
    r.mode = DEMIX_PROTO_MODE_MIX;
    r.source_gain[2] = NAN;
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len),
                     DEMIX_EARG);

    demix_proto_error e = {.code = DEMIX_PROTO_ERR_NONE};
    strcpy(e.message, "x");
    assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                     DEMIX_EARG);
    e.code = DEMIX_PROTO_ERR_UNKNOWN;
    assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                     DEMIX_EARG);
    e.code = DEMIX_PROTO_ERR_INTERNAL;
    e.message[0] = '\0';
    assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                     DEMIX_EARG);

    demix_proto_stats st = {.step_ms_p50 = NAN};
    assert_int_equal(demix_proto_write_stats(&st, buf, sizeof buf, &len),
                     DEMIX_EARG);
    demix_proto_summary su = {.duration_s = 1.0};
    assert_int_equal(demix_proto_write_summary(&su, buf, sizeof buf, &len),
                     DEMIX_EARG); /* empty session id */
}

/* The largest server messages fit the limit; a ready that would not (names
 * of control characters, six bytes each once escaped) is refused. */
static void test_worst_case_sizes(void **state)
{
    (void)state;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    demix_proto_ready r = make_ready();
    /* longest names of quotes (two bytes escaped) */
    memset(r.session, '"', sizeof r.session - 1);
    r.session[sizeof r.session - 1] = '\0';
    memset(r.model_name, '"', sizeof r.model_name - 1);
    r.model_name[sizeof r.model_name - 1] = '\0';
    r.source_count = DEMIX_PROTO_MAX_STEMS;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++) {
        memset(r.sources[i], '\\', DEMIX_PROTO_NAME_BYTES - 1);
        r.sources[i][DEMIX_PROTO_NAME_BYTES - 2] = (char)('a' + i);
        r.sources[i][DEMIX_PROTO_NAME_BYTES - 1] = '\0';
    }
    r.model_rate_hz = r.hop_samples = r.window_samples = 2147483647;
    r.latency_samples = r.latency_frames = 2147483647;
    r.opus_pre_skip_frames = 2147483647;
    r.stem_count = DEMIX_PROTO_MAX_STEMS;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        r.stem_source[i] = i;
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len),
                     DEMIX_OK);
    assert_true(len <= DEMIX_PROTO_MAX_TEXT_BYTES);
    roundtrip_ready(&r);
    r.mode = DEMIX_PROTO_MODE_MIX;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        r.source_gain[i] = 1.0f / 3.0f;
    roundtrip_ready(&r);
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        memset(r.sources[i], 0x01, DEMIX_PROTO_NAME_BYTES - 2);
    memset(r.model_name, 0x01, sizeof r.model_name - 1);
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, &len),
                     DEMIX_EARG);
    static char huge[1 << 16];
    assert_int_equal(demix_proto_write_ready(&r, huge, sizeof huge, &len),
                     DEMIX_EARG);

    demix_proto_error e = {.code = DEMIX_PROTO_ERR_SHUTTING_DOWN};
    memset(e.field, 0x1f, sizeof e.field - 1);
    e.field[sizeof e.field - 1] = '\0';
    memset(e.message, 0x1f, sizeof e.message - 1);
    e.message[sizeof e.message - 1] = '\0';
    assert_int_equal(demix_proto_write_error(&e, buf, sizeof buf, &len),
                     DEMIX_OK);

    demix_proto_stats st;
    memset(&st, 0, sizeof st);
    st.has_session = 1;
    memset(st.session, 0x01, sizeof st.session - 1);
    st.sessions = st.max_sessions = 2147483647;
    st.hops = st.session_hops = st.session_late_hops = 9007199254740992ull;
    st.session_input_frames = st.session_output_frames = st.hops;
    st.step_ms_p50 = st.step_ms_p99 = st.batch_mean = st.uptime_s = 1e300;
    assert_int_equal(demix_proto_write_stats(&st, buf, sizeof buf, &len),
                     DEMIX_OK);

    /* the largest client start (a client may send at most the limit) */
    demix_proto_start s;
    demix_proto_start_init(&s);
    s.sample_rate_hz = 48000;
    s.channels = 2;
    s.input_codec = s.output_codec = DEMIX_PROTO_CODEC_OPUS;
    s.opus_bitrate_bps = 510000;
    s.opus_frame_ms = 60;
    s.mode = DEMIX_PROTO_MODE_MIX;
    s.gain_count = DEMIX_PROTO_MAX_STEMS;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++) {
        memset(s.gains[i].name, 0x04, DEMIX_PROTO_NAME_BYTES - 1);
        s.gains[i].name[0] = (char)('a' + i);
        s.gains[i].name[DEMIX_PROTO_NAME_BYTES - 1] = '\0';
        s.gains[i].gain = 1.0f / 3.0f;
    }
    s.has_token = 1;
    memset(s.token, 0x05, DEMIX_PROTO_TOKEN_MAX_BYTES);
    s.token[DEMIX_PROTO_TOKEN_MAX_BYTES] = '\0';
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, &len),
                     DEMIX_OK);
    demix_proto_client_msg m;
    assert_int_equal(demix_proto_parse_client(buf, len, &m, &e), DEMIX_OK);
    assert_start_equal(&m.start, &s);
}

/* Random valid starts survive write -> parse. */
static void test_random_start_roundtrip(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed();
    static const int opus_rates[] = {8000, 12000, 16000, 24000, 48000};
    static const int frame_ms[] = {5, 10, 20, 40, 60};
    for (int iter = 0; iter < 500; iter++) {
        demix_proto_start s;
        demix_proto_start_init(&s);
        s.channels = 1 + (int)(demix_test_rand(&rng) % 2);
        s.input_codec = (demix_proto_codec)(demix_test_rand(&rng) % 3);
        s.output_codec = (demix_proto_codec)(demix_test_rand(&rng) % 3);
        if (s.input_codec == DEMIX_PROTO_CODEC_OPUS ||
            s.output_codec == DEMIX_PROTO_CODEC_OPUS)
            s.sample_rate_hz = opus_rates[demix_test_rand(&rng) % 5];
        else
            s.sample_rate_hz =
                8000 + (int)(demix_test_rand(&rng) % (96000 - 8000 + 1));
        if (s.output_codec == DEMIX_PROTO_CODEC_OPUS) {
            s.opus_bitrate_bps =
                6000 + (int)(demix_test_rand(&rng) % (510000 - 6000 + 1));
            s.opus_frame_ms = frame_ms[demix_test_rand(&rng) % 5];
        }
        if (s.input_codec == DEMIX_PROTO_CODEC_OPUS)
            s.input_pre_skip_frames = (int)(demix_test_rand(&rng) % 65536);
        int n = (int)(demix_test_rand(&rng) % 9);
        char names[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];
        for (int i = 0; i < n; i++) {
            int k = 1 + (int)(demix_test_rand(&rng) % 31);
            for (int j = 0; j < k; j++) /* printable, quotes and escapes */
                names[i][j] = (char)(0x20 + demix_test_rand(&rng) % 95);
            names[i][k] = '\0';
            names[i][0] = (char)('A' + i); /* unique */
        }
        if (n > 0 && demix_test_rand(&rng) % 2) {
            s.mode = DEMIX_PROTO_MODE_STEMS;
            s.stem_count = n;
            memcpy(s.stems, names, sizeof names);
        } else {
            s.mode = DEMIX_PROTO_MODE_MIX;
            s.gain_count = n;
            for (int i = 0; i < n; i++) {
                memcpy(s.gains[i].name, names[i], DEMIX_PROTO_NAME_BYTES);
                s.gains[i].gain =
                    (float)(demix_test_uniform(&rng) + 1.0f) * 2.0f;
            }
        }
        if (demix_test_rand(&rng) % 2) {
            s.has_token = 1;
            int k = (int)(demix_test_rand(&rng) % 257);
            for (int j = 0; j < k; j++)
                s.token[j] = (char)(0x01 + demix_test_rand(&rng) % 0x7f);
            s.token[k] = '\0';
        }
        roundtrip_start(&s);
    }
}

/* ------------------------------------------------------------- NULLs */

static void test_null_args(void **state)
{
    (void)state;
    char buf[64];
    size_t len;
    uint8_t bin[32] = {0};
    demix_proto_client_msg cm;
    demix_proto_server_msg sm;
    demix_proto_error e;
    demix_proto_start s = make_start_stems();
    demix_proto_gains g = {.count = 0};
    demix_proto_ready r = make_ready();
    demix_proto_audio_in ai = {.codec = DEMIX_PROTO_CODEC_PCM_S16};
    demix_proto_audio_out ao = {.codec = DEMIX_PROTO_CODEC_PCM_S16,
                                .frames = 1};
    float gains[4];

    assert_int_equal(demix_proto_parse_client(NULL, 3, &cm, &e), DEMIX_EARG);
    assert_int_equal(e.code, DEMIX_PROTO_ERR_INTERNAL);
    assert_int_equal(demix_proto_parse_client("{}", 2, NULL, &e), DEMIX_EARG);
    assert_int_equal(demix_proto_parse_client("{}", 2, NULL, NULL), DEMIX_EARG);
    assert_int_equal(demix_proto_parse_server(NULL, 3, &sm, &e), DEMIX_EARG);
    assert_int_equal(demix_proto_parse_server("{}", 2, NULL, &e), DEMIX_EARG);
    /* err may be NULL on failure */
    assert_int_equal(demix_proto_parse_client("{", 1, &cm, NULL),
                     DEMIX_EPROTOCOL);
    assert_int_equal(demix_proto_parse_server("{", 1, &sm, NULL),
                     DEMIX_EPROTOCOL);

    assert_int_equal(demix_proto_start_resolve(NULL, SOURCES, 4, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_start_resolve(&s, NULL, 4, &e), DEMIX_EARG);
    assert_int_equal(demix_proto_gains_apply(NULL, SOURCES, 4, gains, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_gains_apply(&g, NULL, 4, gains, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_gains_apply(&g, SOURCES, 4, NULL, &e),
                     DEMIX_EARG);

    assert_int_equal(demix_proto_write_start(NULL, buf, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_start(&s, NULL, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_start(&s, buf, sizeof buf, NULL),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_gains(NULL, buf, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_gains(&g, NULL, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_end(NULL, sizeof buf, &len), DEMIX_EARG);
    assert_int_equal(demix_proto_write_end(buf, sizeof buf, NULL), DEMIX_EARG);
    assert_int_equal(demix_proto_write_stats_request(NULL, 8, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_ready(NULL, buf, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_ready(&r, buf, sizeof buf, NULL),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_error(NULL, buf, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_stats(NULL, buf, sizeof buf, &len),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_write_summary(NULL, buf, sizeof buf, &len),
                     DEMIX_EARG);

    assert_int_equal(demix_proto_audio_in_write_header(NULL, bin, 8),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_in_write_header(&ai, NULL, 8),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_out_write_header(NULL, bin, 24),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_out_write_header(&ao, NULL, 24),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_in_decode(
                         NULL, 10, DEMIX_PROTO_CODEC_PCM_S16, 2, 0, &ai, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_in_decode(
                         bin, 10, DEMIX_PROTO_CODEC_PCM_S16, 2, 0, NULL, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_in_decode(
                         bin, 10, DEMIX_PROTO_CODEC_PCM_S16, 3, 0, &ai, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_in_decode(bin, 10, (demix_proto_codec)5,
                                                 2, 0, &ai, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_out_decode(
                         NULL, 30, DEMIX_PROTO_CODEC_PCM_S16, 2, 0, &ao, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_out_decode(
                         bin, 30, DEMIX_PROTO_CODEC_PCM_S16, 2, 0, NULL, &e),
                     DEMIX_EARG);
    assert_int_equal(demix_proto_audio_out_decode(
                         bin, 30, DEMIX_PROTO_CODEC_PCM_S16, 0, 0, &ao, NULL),
                     DEMIX_EARG);
    /* no-ops */
    demix_proto_start_init(NULL);
    demix_proto_ready_from_start(NULL, &s);
    demix_proto_ready_from_start(&r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_and_close_codes),
        cmocka_unit_test(test_names_and_frame_bytes),
        cmocka_unit_test(test_start_roundtrip),
        cmocka_unit_test(test_start_defaults_and_parse),
        cmocka_unit_test(test_other_client_roundtrips),
        cmocka_unit_test(test_ready_roundtrip),
        cmocka_unit_test(test_error_roundtrip),
        cmocka_unit_test(test_stats_summary_roundtrip),
        cmocka_unit_test(test_malformed_client_messages),
        cmocka_unit_test(test_oversized_message),
        cmocka_unit_test(test_malformed_server_messages),
        cmocka_unit_test(test_resolve_start),
        cmocka_unit_test(test_gains_apply),
        cmocka_unit_test(test_check_order),
        cmocka_unit_test(test_audio_in_layout_and_roundtrip),
        cmocka_unit_test(test_audio_in_malformed),
        cmocka_unit_test(test_audio_out_layout_and_roundtrip),
        cmocka_unit_test(test_audio_out_malformed),
        cmocka_unit_test(test_writers_nospace),
        cmocka_unit_test(test_writers_refuse_invalid),
        cmocka_unit_test(test_worst_case_sizes),
        cmocka_unit_test(test_random_start_roundtrip),
        cmocka_unit_test(test_null_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
