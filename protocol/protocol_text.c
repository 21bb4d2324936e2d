/*
 * protocol_text.c - the JSON control messages: parsing client messages
 * (strict) and server messages (lenient), and writing both.
 *
 * Design. Parsing runs in three steps: the raw bytes are checked (size,
 * UTF-8, NUL, \u0000) and copied into a NUL-terminated stack buffer of at
 * most DEMIX_PROTO_MAX_TEXT_BYTES + 1, so cJSON never reads past the
 * message; cJSON builds a tree (its nesting limit of 1000 bounds the
 * recursion); the tree is read into a fixed-size struct, checking JSON types
 * here and ranges in one validate function per message that the client
 * writers share, so the client library cannot emit what the server
 * rejects. The tree is freed on every path.
 *
 * Writing does not use cJSON: a small writer appends to the caller's buffer
 * and records overflow, strings are escaped, and any byte sequence that is
 * not UTF-8 (a truncated name in an error sentence) becomes U+FFFD, so every
 * text frame sent is valid UTF-8. Numbers: integers exactly, doubles and
 * floats with %.9g (exact for float, the gains).
 *
 * Threads: reentrant, with the cJSON caveat in protocol.h.
 */
#include "protocol_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_SAFE_INTEGER 9007199254740992.0 /* 2^53 */

/* =================================================================== UTF-8
 */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (c == 0xE0 && s[1] < 0xA0)
        return 0; /* overlong */
    if (c == 0xED && s[1] >= 0xA0)
        return 0; /* surrogate */
    if (c == 0xF0 && s[1] < 0x90)
        return 0; /* overlong */
    if (c == 0xF4 && s[1] >= 0x90)
        return 0; /* above U+10FFFF */
    return len;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(s + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* ================================================================== writer
 */

typedef struct jw {
    char *buf;
    size_t cap;
    size_t len;
    int full;  /* ran out of room */
    int depth; /* open objects/arrays */
    int count[8];
} jw;

static void jw_init(jw *w, char *buf, size_t cap)
{
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = cap;
}

static void jw_raw(jw *w, const char *s, size_t n)
{
    if (w->full || n >= w->cap - w->len) { /* keep one byte for the NUL */
        w->full = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void jw_cstr(jw *w, const char *s)
{
    jw_raw(w, s, strlen(s));
}

/* A JSON string of s (NUL-terminated within cap bytes). */
static void jw_str(jw *w, const char *s, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strnlen(s, cap);
    jw_raw(w, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(p + i, n - i);
            if (k) {
                jw_raw(w, (const char *)p + i, k);
                i += k;
            } else {
                jw_cstr(w, "\\ufffd");
                i++;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jw_raw(w, e, 2);
        } else if (c == '\n') {
            jw_cstr(w, "\\n");
        } else if (c == '\t') {
            jw_cstr(w, "\\t");
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jw_raw(w, e, 6);
        } else {
            char ch = (char)c;
            jw_raw(w, &ch, 1);
        }
        i++;
    }
    jw_raw(w, "\"", 1);
}

/* Separator before the next member or element. */
static void jw_sep(jw *w)
{
    if (w->count[w->depth]++)
        jw_raw(w, ",", 1);
}

static void jw_open(jw *w, char c)
{
    jw_raw(w, &c, 1);
    DEMIX_ASSERT(w->depth < 7);
    w->count[++w->depth] = 0;
}

static void jw_close(jw *w, char c)
{
    w->depth--;
    jw_raw(w, &c, 1);
}

static void jw_key(jw *w, const char *key)
{
    jw_sep(w);
    jw_str(w, key, strlen(key) + 1);
    jw_raw(w, ":", 1);
}

static void jw_int(jw *w, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%lld", v);
    jw_raw(w, num, (size_t)n);
}

static void jw_u64(jw *w, uint64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    jw_raw(w, num, (size_t)n);
}

/* Finite only (callers validate): %.9g round-trips a float exactly. */
static void jw_num(jw *w, double v)
{
    char num[40];
    int n = snprintf(num, sizeof num, "%.9g", v);
    jw_raw(w, num, (size_t)n);
}

static void jw_key_str(jw *w, const char *key, const char *s, size_t cap)
{
    jw_key(w, key);
    jw_str(w, s, cap);
}

static void jw_key_int(jw *w, const char *key, long long v)
{
    jw_key(w, key);
    jw_int(w, v);
}

static void jw_key_u64(jw *w, const char *key, uint64_t v)
{
    jw_key(w, key);
    jw_u64(w, v);
}

static void jw_key_num(jw *w, const char *key, double v)
{
    jw_key(w, key);
    jw_num(w, v);
}

/* NOSPACE when the caller's buffer was short; EARG when the message would
 * exceed the protocol's limit whatever the buffer (only a ready whose names
 * are mostly control characters gets there). */
static int jw_finish(jw *w, size_t *len)
{
    if (w->full) /* with room for the limit, it was the message */
        return w->cap > DEMIX_PROTO_MAX_TEXT_BYTES ? DEMIX_EARG
                                                   : DEMIX_ENOSPACE;
    if (w->len > DEMIX_PROTO_MAX_TEXT_BYTES)
        return DEMIX_EARG;
    w->buf[w->len] = '\0';
    *len = w->len;
    return DEMIX_OK;
}

static int writer_args(char *buf, size_t cap, size_t *len)
{
    if (!buf || !len)
        return DEMIX_EARG;
    if (cap == 0)
        return DEMIX_ENOSPACE;
    return DEMIX_OK;
}

/* ============================================================ validation
 * Range rules shared by the parsers (which report field and sentence) and
 * the writers (which turn any failure into DEMIX_EARG).
 */

#define FAIL_FIELD(err, field, ...)                                            \
    demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_FIELD, field, __VA_ARGS__)

static int validate_gain_list(const demix_proto_gain *g, int count,
                              const char *path, demix_proto_error *err)
{
    char field[DEMIX_PROTO_FIELD_BYTES];
    if (count < 0 || count > DEMIX_PROTO_MAX_STEMS)
        return FAIL_FIELD(err, path, "%s has more than %d stems.", path,
                          DEMIX_PROTO_MAX_STEMS);
    for (int i = 0; i < count; i++) {
        if (!demix__proto_name_ok(g[i].name))
            return FAIL_FIELD(err, path,
                              "A stem name in %s is empty or longer than %d "
                              "bytes.",
                              path, DEMIX_PROTO_NAME_BYTES - 1);
        snprintf(field, sizeof field, "%s.%s", path, g[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(g[j].name, g[i].name) == 0)
                return FAIL_FIELD(err, field, "Stem '%s' appears twice in %s.",
                                  g[i].name, path);
        if (!isfinite(g[i].gain) || g[i].gain < 0.0f ||
            g[i].gain > DEMIX_PROTO_MAX_GAIN)
            return FAIL_FIELD(err, field,
                              "The gain of '%s' must be a number from 0 to 4.",
                              g[i].name);
    }
    return DEMIX_OK;
}

static int validate_start(const demix_proto_start *s, demix_proto_error *err)
{
    if (s->sample_rate_hz < DEMIX_PROTO_MIN_RATE_HZ ||
        s->sample_rate_hz > DEMIX_PROTO_MAX_RATE_HZ)
        return FAIL_FIELD(err, "sample_rate",
                          "sample_rate must be an integer from %d to %d Hz.",
                          DEMIX_PROTO_MIN_RATE_HZ, DEMIX_PROTO_MAX_RATE_HZ);
    if (s->channels != 1 && s->channels != 2)
        return FAIL_FIELD(err, "channels", "channels must be 1 or 2.");
    if ((unsigned)s->input_codec >= DEMIX_PROTO_CODEC_COUNT)
        return FAIL_FIELD(err, "input.codec",
                          "input.codec must be pcm_s16, pcm_f32 or opus.");
    if ((unsigned)s->output_codec >= DEMIX_PROTO_CODEC_COUNT)
        return FAIL_FIELD(err, "output.codec",
                          "output.codec must be pcm_s16, pcm_f32 or opus.");
    if ((s->input_codec == DEMIX_PROTO_CODEC_OPUS ||
         s->output_codec == DEMIX_PROTO_CODEC_OPUS) &&
        !demix__proto_opus_rate_ok(s->sample_rate_hz))
        return FAIL_FIELD(err, "sample_rate",
                          "With opus, sample_rate must be 8000, 12000, 16000, "
                          "24000 or 48000.");
    if (s->input_codec == DEMIX_PROTO_CODEC_OPUS) {
        if (s->input_pre_skip_frames < 0 ||
            s->input_pre_skip_frames > DEMIX_PROTO_MAX_PRE_SKIP)
            return FAIL_FIELD(err, "input.pre_skip",
                              "input.pre_skip must be an integer from 0 to "
                              "%d frames.",
                              DEMIX_PROTO_MAX_PRE_SKIP);
    } else if (s->input_pre_skip_frames != 0) {
        return FAIL_FIELD(err, "input.pre_skip",
                          "input.pre_skip applies only to opus.");
    }
    if (s->output_codec == DEMIX_PROTO_CODEC_OPUS) {
        if (s->opus_bitrate_bps < DEMIX_PROTO_OPUS_MIN_BITRATE ||
            s->opus_bitrate_bps > DEMIX_PROTO_OPUS_MAX_BITRATE)
            return FAIL_FIELD(err, "output.bitrate",
                              "output.bitrate must be an integer from %d to "
                              "%d bits per second.",
                              DEMIX_PROTO_OPUS_MIN_BITRATE,
                              DEMIX_PROTO_OPUS_MAX_BITRATE);
        if (!demix__proto_opus_frame_ms_ok(s->opus_frame_ms))
            return FAIL_FIELD(err, "output.frame_ms",
                              "output.frame_ms must be 5, 10, 20, 40 or 60.");
    } else if (s->opus_bitrate_bps != 0 || s->opus_frame_ms != 0) {
        return FAIL_FIELD(
            err, s->opus_bitrate_bps ? "output.bitrate" : "output.frame_ms",
            "output.bitrate and output.frame_ms apply only to "
            "opus.");
    }
    if (s->mode == DEMIX_PROTO_MODE_STEMS) {
        if (s->stem_count < 1 || s->stem_count > DEMIX_PROTO_MAX_STEMS)
            return FAIL_FIELD(err, "stems",
                              "stems must list 1 to %d stem names.",
                              DEMIX_PROTO_MAX_STEMS);
        if (s->gain_count != 0)
            return FAIL_FIELD(err, "mix",
                              "Give either stems or mix, not "
                              "both.");
        for (int i = 0; i < s->stem_count; i++) {
            char field[DEMIX_PROTO_FIELD_BYTES];
            snprintf(field, sizeof field, "stems[%d]", i);
            if (!demix__proto_name_ok(s->stems[i]))
                return FAIL_FIELD(err, field,
                                  "A stem name is empty or longer than %d "
                                  "bytes.",
                                  DEMIX_PROTO_NAME_BYTES - 1);
            for (int j = 0; j < i; j++)
                if (strcmp(s->stems[j], s->stems[i]) == 0)
                    return FAIL_FIELD(err, field,
                                      "Stem '%s' appears twice in stems.",
                                      s->stems[i]);
        }
    } else if (s->mode == DEMIX_PROTO_MODE_MIX) {
        if (s->stem_count != 0)
            return FAIL_FIELD(err, "mix",
                              "Give either stems or mix, not "
                              "both.");
        int rc = validate_gain_list(s->gains, s->gain_count, "mix.gains", err);
        if (rc)
            return rc;
    } else {
        return FAIL_FIELD(err, "stems", "start needs stems or mix.");
    }
    if (s->has_token && !demix__proto_terminated(s->token, sizeof s->token))
        return FAIL_FIELD(err, "token", "token is longer than %d bytes.",
                          DEMIX_PROTO_TOKEN_MAX_BYTES);
    return DEMIX_OK;
}

static int session_ok(const char *s)
{
    return demix__proto_terminated(s, DEMIX_PROTO_SESSION_BYTES) && s[0];
}

static int finite_nonneg(double v)
{
    return isfinite(v) && v >= 0.0;
}

static int validate_ready(const demix_proto_ready *r)
{
    if (!session_ok(r->session) ||
        !demix__proto_terminated(r->model_name, sizeof r->model_name))
        return 0;
    if (r->model_rate_hz <= 0 || r->hop_samples <= 0 ||
        r->window_samples <= 0 || r->latency_samples < 0)
        return 0;
    if (r->source_count < 1 || r->source_count > DEMIX_PROTO_MAX_STEMS)
        return 0;
    for (int i = 0; i < r->source_count; i++) {
        if (!demix__proto_name_ok(r->sources[i]))
            return 0;
        for (int j = 0; j < i; j++) /* names key the gains: distinct */
            if (strcmp(r->sources[i], r->sources[j]) == 0)
                return 0;
    }
    if (r->client_rate_hz < DEMIX_PROTO_MIN_RATE_HZ ||
        r->client_rate_hz > DEMIX_PROTO_MAX_RATE_HZ)
        return 0;
    if (r->channels != 1 && r->channels != 2)
        return 0;
    if ((unsigned)r->input_codec >= DEMIX_PROTO_CODEC_COUNT ||
        (unsigned)r->output_codec >= DEMIX_PROTO_CODEC_COUNT)
        return 0;
    if (r->output_codec == DEMIX_PROTO_CODEC_OPUS &&
        (r->opus_bitrate_bps < DEMIX_PROTO_OPUS_MIN_BITRATE ||
         r->opus_bitrate_bps > DEMIX_PROTO_OPUS_MAX_BITRATE ||
         !demix__proto_opus_frame_ms_ok(r->opus_frame_ms) ||
         !demix__proto_opus_rate_ok(r->client_rate_hz) ||
         r->opus_pre_skip_frames < 0))
        return 0;
    if (r->input_pre_skip_frames < 0 ||
        r->input_pre_skip_frames > DEMIX_PROTO_MAX_PRE_SKIP ||
        (r->input_codec != DEMIX_PROTO_CODEC_OPUS &&
         r->input_pre_skip_frames != 0))
        return 0;
    if (r->latency_frames < 0)
        return 0;
    if (r->mode == DEMIX_PROTO_MODE_STEMS) {
        if (r->stem_count < 1 || r->stem_count > r->source_count)
            return 0;
        for (int i = 0; i < r->stem_count; i++) {
            if (r->stem_source[i] < 0 || r->stem_source[i] >= r->source_count)
                return 0;
            for (int j = 0; j < i; j++)
                if (r->stem_source[j] == r->stem_source[i])
                    return 0;
        }
    } else if (r->mode == DEMIX_PROTO_MODE_MIX) {
        for (int i = 0; i < r->source_count; i++)
            if (!isfinite(r->source_gain[i]) || r->source_gain[i] < 0.0f ||
                r->source_gain[i] > DEMIX_PROTO_MAX_GAIN)
                return 0;
    } else {
        return 0;
    }
    return 1;
}

/* ========================================================= client writers
 */

static void write_gain_object(jw *w, const demix_proto_gain *g, int count)
{
    jw_open(w, '{');
    for (int i = 0; i < count; i++)
        jw_key_num(w, g[i].name, g[i].gain);
    jw_close(w, '}');
}

int demix_proto_write_start(const demix_proto_start *s, char *buf, size_t cap,
                            size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    if (!s || validate_start(s, NULL))
        return DEMIX_EARG;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", "start", 6);
    jw_key_int(&w, "sample_rate", s->sample_rate_hz);
    jw_key_int(&w, "channels", s->channels);
    jw_key(&w, "input");
    jw_open(&w, '{');
    jw_key_str(&w, "codec", demix_proto_codec_name(s->input_codec), 16);
    if (s->input_codec == DEMIX_PROTO_CODEC_OPUS)
        jw_key_int(&w, "pre_skip", s->input_pre_skip_frames);
    jw_close(&w, '}');
    jw_key(&w, "output");
    jw_open(&w, '{');
    jw_key_str(&w, "codec", demix_proto_codec_name(s->output_codec), 16);
    if (s->output_codec == DEMIX_PROTO_CODEC_OPUS) {
        jw_key_int(&w, "bitrate", s->opus_bitrate_bps);
        jw_key_int(&w, "frame_ms", s->opus_frame_ms);
    }
    jw_close(&w, '}');
    if (s->mode == DEMIX_PROTO_MODE_STEMS) {
        jw_key(&w, "stems");
        jw_open(&w, '[');
        for (int i = 0; i < s->stem_count; i++) {
            jw_sep(&w);
            jw_str(&w, s->stems[i], DEMIX_PROTO_NAME_BYTES);
        }
        jw_close(&w, ']');
    } else {
        jw_key(&w, "mix");
        jw_open(&w, '{');
        jw_key(&w, "gains");
        write_gain_object(&w, s->gains, s->gain_count);
        jw_close(&w, '}');
    }
    if (s->has_token)
        jw_key_str(&w, "token", s->token, sizeof s->token);
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

int demix_proto_write_gains(const demix_proto_gains *g, char *buf, size_t cap,
                            size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    if (!g || validate_gain_list(g->gains, g->count, "gains", NULL))
        return DEMIX_EARG;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", "gains", 6);
    jw_key(&w, "gains");
    write_gain_object(&w, g->gains, g->count);
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

static int write_bare(const char *type, char *buf, size_t cap, size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", type, strlen(type) + 1);
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

int demix_proto_write_end(char *buf, size_t cap, size_t *len)
{
    return write_bare("end", buf, cap, len);
}

int demix_proto_write_stats_request(char *buf, size_t cap, size_t *len)
{
    return write_bare("stats", buf, cap, len);
}

/* ========================================================= server writers
 */

int demix_proto_write_ready(const demix_proto_ready *r, char *buf, size_t cap,
                            size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    if (!r || !validate_ready(r))
        return DEMIX_EARG;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", "ready", 6);
    jw_key_int(&w, "version", DEMIX_PROTO_VERSION);
    jw_key_str(&w, "session", r->session, sizeof r->session);

    jw_key(&w, "model");
    jw_open(&w, '{');
    jw_key_str(&w, "name", r->model_name, sizeof r->model_name);
    jw_key_int(&w, "sample_rate", r->model_rate_hz);
    jw_key_int(&w, "hop", r->hop_samples);
    jw_key_int(&w, "window", r->window_samples);
    jw_key_int(&w, "latency_samples", r->latency_samples);
    jw_key_num(&w, "latency_ms",
               1000.0 * r->latency_samples / r->model_rate_hz);
    jw_key(&w, "sources");
    jw_open(&w, '[');
    for (int i = 0; i < r->source_count; i++) {
        jw_sep(&w);
        jw_str(&w, r->sources[i], DEMIX_PROTO_NAME_BYTES);
    }
    jw_close(&w, ']');
    jw_close(&w, '}');

    jw_key_int(&w, "client_rate", r->client_rate_hz);
    jw_key_int(&w, "channels", r->channels);
    jw_key(&w, "input");
    jw_open(&w, '{');
    jw_key_str(&w, "codec", demix_proto_codec_name(r->input_codec), 16);
    if (r->input_codec == DEMIX_PROTO_CODEC_OPUS)
        jw_key_int(&w, "pre_skip", r->input_pre_skip_frames);
    jw_close(&w, '}');
    jw_key(&w, "output");
    jw_open(&w, '{');
    jw_key_str(&w, "codec", demix_proto_codec_name(r->output_codec), 16);
    if (r->output_codec == DEMIX_PROTO_CODEC_OPUS) {
        jw_key_int(&w, "bitrate", r->opus_bitrate_bps);
        jw_key_int(&w, "frame_ms", r->opus_frame_ms);
        jw_key_int(&w, "frame_frames",
                   (long long)r->client_rate_hz / 1000 * r->opus_frame_ms);
        jw_key_int(&w, "pre_skip", r->opus_pre_skip_frames);
    }
    jw_close(&w, '}');
    jw_key_int(&w, "latency_frames", r->latency_frames);
    jw_key_num(&w, "latency_ms",
               1000.0 * r->latency_frames / r->client_rate_hz);

    if (r->mode == DEMIX_PROTO_MODE_STEMS) {
        jw_key(&w, "stems");
        jw_open(&w, '[');
        for (int i = 0; i < r->stem_count; i++) {
            jw_sep(&w);
            jw_str(&w, r->sources[r->stem_source[i]], DEMIX_PROTO_NAME_BYTES);
        }
        jw_close(&w, ']');
    } else {
        jw_key(&w, "mix");
        jw_open(&w, '{');
        jw_key(&w, "gains");
        jw_open(&w, '{');
        for (int i = 0; i < r->source_count; i++)
            jw_key_num(&w, r->sources[i], r->source_gain[i]);
        jw_close(&w, '}');
        jw_close(&w, '}');
    }
    jw_key(&w, "limits");
    jw_open(&w, '{');
    jw_key_int(&w, "text_bytes", DEMIX_PROTO_MAX_TEXT_BYTES);
    jw_key_int(&w, "binary_bytes", DEMIX_PROTO_MAX_BINARY_BYTES);
    jw_close(&w, '}');
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

int demix_proto_write_error(const demix_proto_error *e, char *buf, size_t cap,
                            size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    if (!e || e->code <= DEMIX_PROTO_ERR_NONE ||
        e->code >= DEMIX_PROTO_ERR_UNKNOWN ||
        !demix__proto_terminated(e->field, sizeof e->field) ||
        !demix__proto_terminated(e->message, sizeof e->message) ||
        !e->message[0])
        return DEMIX_EARG;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", "error", 6);
    jw_key_str(&w, "code", demix_proto_code_name(e->code), 32);
    jw_key_str(&w, "message", e->message, sizeof e->message);
    if (e->field[0])
        jw_key_str(&w, "field", e->field, sizeof e->field);
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

static int u64_ok(uint64_t v)
{
    return v <= ((uint64_t)1 << 53); /* exact in a double, and in JS */
}

int demix_proto_write_stats(const demix_proto_stats *s, char *buf, size_t cap,
                            size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    if (!s || s->sessions < 0 || s->max_sessions < 0 || !u64_ok(s->hops) ||
        !finite_nonneg(s->step_ms_p50) || !finite_nonneg(s->step_ms_p99) ||
        !finite_nonneg(s->batch_mean) || !finite_nonneg(s->uptime_s))
        return DEMIX_EARG;
    if (s->has_session &&
        (!session_ok(s->session) || !u64_ok(s->session_input_frames) ||
         !u64_ok(s->session_output_frames) || !u64_ok(s->session_hops) ||
         !u64_ok(s->session_late_hops)))
        return DEMIX_EARG;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", "stats", 6);
    jw_key_int(&w, "sessions", s->sessions);
    jw_key_int(&w, "max_sessions", s->max_sessions);
    jw_key_u64(&w, "hops", s->hops);
    jw_key(&w, "step_ms");
    jw_open(&w, '{');
    jw_key_num(&w, "p50", s->step_ms_p50);
    jw_key_num(&w, "p99", s->step_ms_p99);
    jw_close(&w, '}');
    jw_key_num(&w, "batch_mean", s->batch_mean);
    jw_key_num(&w, "uptime_s", s->uptime_s);
    if (s->has_session) {
        jw_key(&w, "session");
        jw_open(&w, '{');
        jw_key_str(&w, "id", s->session, sizeof s->session);
        jw_key_u64(&w, "input_frames", s->session_input_frames);
        jw_key_u64(&w, "output_frames", s->session_output_frames);
        jw_key_u64(&w, "hops", s->session_hops);
        jw_key_u64(&w, "late_hops", s->session_late_hops);
        jw_close(&w, '}');
    }
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

int demix_proto_write_summary(const demix_proto_summary *s, char *buf,
                              size_t cap, size_t *len)
{
    int rc = writer_args(buf, cap, len);
    if (rc)
        return rc;
    if (!s || !session_ok(s->session) || !u64_ok(s->input_frames) ||
        !u64_ok(s->output_frames) || !u64_ok(s->hops) ||
        !u64_ok(s->late_hops) || !finite_nonneg(s->duration_s) ||
        !finite_nonneg(s->wall_s))
        return DEMIX_EARG;
    jw w;
    jw_init(&w, buf, cap);
    jw_open(&w, '{');
    jw_key_str(&w, "type", "summary", 8);
    jw_key_str(&w, "session", s->session, sizeof s->session);
    jw_key_u64(&w, "input_frames", s->input_frames);
    jw_key_u64(&w, "output_frames", s->output_frames);
    jw_key_num(&w, "duration_s", s->duration_s);
    jw_key_num(&w, "wall_s", s->wall_s);
    jw_key_u64(&w, "hops", s->hops);
    jw_key_u64(&w, "late_hops", s->late_hops);
    jw_close(&w, '}');
    return jw_finish(&w, len);
}

/* ============================================================== parsing
 */

/* Checks on the raw bytes, then cJSON. On success *root is an object the
 * caller deletes. */
static int parse_root(const char *text, size_t len, cJSON **root,
                      demix_proto_error *err)
{
    char copy[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    *root = NULL;
    if (len > DEMIX_PROTO_MAX_TEXT_BYTES)
        return demix__proto_fail(err, DEMIX_PROTO_ERR_TOO_LARGE, NULL,
                                 "A text message of %zu bytes exceeds the "
                                 "limit of %d bytes.",
                                 len, DEMIX_PROTO_MAX_TEXT_BYTES);
    if (len == 0)
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_JSON, NULL,
                                 "The text message is empty; send a JSON "
                                 "object.");
    if (memchr(text, '\0', len))
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_JSON, NULL,
                                 "The text message contains a NUL byte.");
    if (!utf8_valid((const unsigned char *)text, len))
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_JSON, NULL,
                                 "The text message is not valid UTF-8.");
    /* cJSON would decode \u0000 into a NUL that silently cuts a string. A
     * backslash is only legal inside strings, so no string state needed. */
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '\\')
            continue;
        if (len - i >= 6 && text[i + 1] == 'u' &&
            memcmp(text + i + 2, "0000", 4) == 0)
            return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_JSON, NULL,
                                     "A string contains \\u0000, which is "
                                     "not allowed.");
        i++; /* skip the escaped character */
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(copy, &end, 1);
    if (!j) {
        /* cJSON also returns NULL when malloc fails; both read as bad JSON. */
        size_t at =
            end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_JSON, NULL,
                                 "The text message is not valid JSON (error "
                                 "near byte %zu).",
                                 at);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_JSON, NULL,
                                 "A message must be a JSON object.");
    }
    *root = j;
    return DEMIX_OK;
}

/* "path.key" (or "key" at the top) into field, truncated. */
static void join_path(char *field, size_t cap, const char *path,
                      const char *key)
{
    snprintf(field, cap, "%s%s%.40s", path, path[0] ? "." : "", key);
}

/* Strict: every member of obj is in allowed (NULL-terminated) and none
 * appears twice. */
static int check_members(const cJSON *obj, const char *path,
                         const char *const *allowed, demix_proto_error *err)
{
    char field[DEMIX_PROTO_FIELD_BYTES];
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *key = c->string ? c->string : "";
        int known = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                known = 1;
        join_path(field, sizeof field, path, key);
        if (!known)
            return FAIL_FIELD(err, field, "Unknown field '%.40s'.", key);
        /* every earlier member is known, so this loop is short */
        for (const cJSON *d = obj->child; d != c; d = d->next)
            if (strcmp(d->string, key) == 0)
                return FAIL_FIELD(err, field, "Field '%.40s' appears twice.",
                                  key);
    }
    return DEMIX_OK;
}

/* An integer-valued JSON number within int range. */
static int get_int(const cJSON *item, const char *field, int *out,
                   demix_proto_error *err)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) ||
        item->valuedouble != floor(item->valuedouble) ||
        fabs(item->valuedouble) > 2147483647.0)
        return FAIL_FIELD(err, field, "%s must be an integer.", field);
    *out = (int)item->valuedouble;
    return DEMIX_OK;
}

static int get_u64(const cJSON *item, const char *field, uint64_t *out,
                   demix_proto_error *err)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) ||
        item->valuedouble != floor(item->valuedouble) ||
        item->valuedouble < 0.0 || item->valuedouble > MAX_SAFE_INTEGER)
        return FAIL_FIELD(err, field, "%s must be an integer from 0 to 2^53.",
                          field);
    *out = (uint64_t)item->valuedouble;
    return DEMIX_OK;
}

static int get_double(const cJSON *item, const char *field, double *out,
                      demix_proto_error *err)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return FAIL_FIELD(err, field, "%s must be a finite number.", field);
    *out = item->valuedouble;
    return DEMIX_OK;
}

/* A string of at most cap - 1 bytes into out. */
static int get_string(const cJSON *item, const char *field, char *out,
                      size_t cap, demix_proto_error *err)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return FAIL_FIELD(err, field, "%s must be a string.", field);
    size_t n = strlen(item->valuestring);
    if (n >= cap)
        return FAIL_FIELD(err, field, "%s is longer than %zu bytes.", field,
                          cap - 1);
    memcpy(out, item->valuestring, n + 1);
    return DEMIX_OK;
}

static int get_name(const cJSON *item, const char *field, char *out,
                    demix_proto_error *err)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return FAIL_FIELD(err, field, "%s must be a stem name (a string).",
                          field);
    size_t n = strlen(item->valuestring);
    if (n == 0 || n >= DEMIX_PROTO_NAME_BYTES)
        return FAIL_FIELD(err, field, "A stem name must be 1 to %d bytes long.",
                          DEMIX_PROTO_NAME_BYTES - 1);
    memcpy(out, item->valuestring, n + 1);
    return DEMIX_OK;
}

static int get_codec(const cJSON *obj, const char *path, demix_proto_codec *out,
                     demix_proto_error *err)
{
    char field[DEMIX_PROTO_FIELD_BYTES];
    join_path(field, sizeof field, path, "codec");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "codec");
    if (!c)
        return FAIL_FIELD(err, field, "%s is missing.", field);
    if (!cJSON_IsString(c) || !c->valuestring)
        return FAIL_FIELD(err, field, "%s must be a string.", field);
    if (demix_proto_codec_from_name(c->valuestring, out) != DEMIX_OK)
        return FAIL_FIELD(err, field,
                          "Unknown codec '%.40s'; use pcm_s16, pcm_f32 or "
                          "opus.",
                          c->valuestring);
    return DEMIX_OK;
}

static const cJSON *get_object(const cJSON *parent, const char *key,
                               const char *field, int required, int *rc,
                               demix_proto_error *err)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);
    *rc = DEMIX_OK;
    if (!o) {
        if (required)
            *rc = FAIL_FIELD(err, field, "%s is missing.", field);
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        *rc = FAIL_FIELD(err, field, "%s must be an object.", field);
        return NULL;
    }
    return o;
}

/* A {name: gain} object into g[], strict. */
static int parse_gain_object(const cJSON *obj, const char *path,
                             demix_proto_gain *g, int *count,
                             demix_proto_error *err)
{
    char field[DEMIX_PROTO_FIELD_BYTES];
    int n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *key = c->string ? c->string : "";
        join_path(field, sizeof field, path, key);
        if (n == DEMIX_PROTO_MAX_STEMS)
            return FAIL_FIELD(err, path, "%s names more than %d stems.", path,
                              DEMIX_PROTO_MAX_STEMS);
        size_t k = strlen(key);
        if (k == 0 || k >= DEMIX_PROTO_NAME_BYTES)
            return FAIL_FIELD(err, field,
                              "A stem name must be 1 to %d bytes long.",
                              DEMIX_PROTO_NAME_BYTES - 1);
        for (int i = 0; i < n; i++)
            if (strcmp(g[i].name, key) == 0)
                return FAIL_FIELD(err, field, "Stem '%s' appears twice in %s.",
                                  key, path);
        if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble) ||
            c->valuedouble < 0.0 || c->valuedouble > DEMIX_PROTO_MAX_GAIN)
            return FAIL_FIELD(err, field,
                              "The gain of '%s' must be a number from 0 to 4.",
                              key);
        memcpy(g[n].name, key, k + 1);
        g[n].gain = (float)c->valuedouble + 0.0f; /* -0 becomes +0 */
        n++;
    }
    *count = n;
    return DEMIX_OK;
}

static int parse_start(const cJSON *root, demix_proto_start *s,
                       demix_proto_error *err)
{
    static const char *const top[] = {"type",  "sample_rate", "channels",
                                      "input", "output",      "stems",
                                      "mix",   "token",       NULL};
    static const char *const in_keys[] = {"codec", "pre_skip", NULL};
    static const char *const out_keys[] = {"codec", "bitrate", "frame_ms",
                                           NULL};
    static const char *const mix_keys[] = {"gains", NULL};
    int rc = check_members(root, "", top, err);
    if (rc)
        return rc;
    demix_proto_start_init(s);

    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "sample_rate");
    if (!v)
        return FAIL_FIELD(err, "sample_rate", "sample_rate is missing.");
    if ((rc = get_int(v, "sample_rate", &s->sample_rate_hz, err)))
        return rc;
    v = cJSON_GetObjectItemCaseSensitive(root, "channels");
    if (!v)
        return FAIL_FIELD(err, "channels", "channels is missing.");
    if ((rc = get_int(v, "channels", &s->channels, err)))
        return rc;

    const cJSON *in = get_object(root, "input", "input", 1, &rc, err);
    if (rc || (rc = check_members(in, "input", in_keys, err)) ||
        (rc = get_codec(in, "input", &s->input_codec, err)))
        return rc;
    const cJSON *pre_skip = cJSON_GetObjectItemCaseSensitive(in, "pre_skip");
    if (pre_skip && s->input_codec != DEMIX_PROTO_CODEC_OPUS)
        return FAIL_FIELD(err, "input.pre_skip",
                          "input.pre_skip applies only to opus.");
    if (pre_skip && (rc = get_int(pre_skip, "input.pre_skip",
                                  &s->input_pre_skip_frames, err)))
        return rc;
    const cJSON *out = get_object(root, "output", "output", 1, &rc, err);
    if (rc || (rc = check_members(out, "output", out_keys, err)) ||
        (rc = get_codec(out, "output", &s->output_codec, err)))
        return rc;
    const cJSON *bitrate = cJSON_GetObjectItemCaseSensitive(out, "bitrate");
    const cJSON *frame_ms = cJSON_GetObjectItemCaseSensitive(out, "frame_ms");
    if (s->output_codec == DEMIX_PROTO_CODEC_OPUS) {
        s->opus_bitrate_bps =
            DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL *
            (s->channels == 1 || s->channels == 2 ? s->channels : 1);
        s->opus_frame_ms = DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS;
        if (bitrate && (rc = get_int(bitrate, "output.bitrate",
                                     &s->opus_bitrate_bps, err)))
            return rc;
        if (frame_ms &&
            (rc = get_int(frame_ms, "output.frame_ms", &s->opus_frame_ms, err)))
            return rc;
    } else if (bitrate || frame_ms) {
        return FAIL_FIELD(err, bitrate ? "output.bitrate" : "output.frame_ms",
                          "output.bitrate and output.frame_ms apply only to "
                          "opus.");
    }

    const cJSON *stems = cJSON_GetObjectItemCaseSensitive(root, "stems");
    const cJSON *mix = cJSON_GetObjectItemCaseSensitive(root, "mix");
    if (stems && mix)
        return FAIL_FIELD(err, "mix", "Give either stems or mix, not both.");
    if (!stems && !mix)
        return FAIL_FIELD(err, "stems", "start needs stems or mix.");
    if (stems) {
        if (!cJSON_IsArray(stems))
            return FAIL_FIELD(err, "stems",
                              "stems must be an array of stem names.");
        s->mode = DEMIX_PROTO_MODE_STEMS;
        int n = 0;
        for (const cJSON *c = stems->child; c; c = c->next) {
            char field[DEMIX_PROTO_FIELD_BYTES];
            snprintf(field, sizeof field, "stems[%d]", n);
            if (n == DEMIX_PROTO_MAX_STEMS)
                return FAIL_FIELD(err, "stems",
                                  "stems lists more than %d stems.",
                                  DEMIX_PROTO_MAX_STEMS);
            if ((rc = get_name(c, field, s->stems[n], err)))
                return rc;
            for (int j = 0; j < n; j++)
                if (strcmp(s->stems[j], s->stems[n]) == 0)
                    return FAIL_FIELD(err, field,
                                      "Stem '%s' appears twice in stems.",
                                      s->stems[n]);
            n++;
        }
        if (n == 0)
            return FAIL_FIELD(err, "stems",
                              "stems is empty; name at least one stem.");
        s->stem_count = n;
    } else {
        const cJSON *m = get_object(root, "mix", "mix", 1, &rc, err);
        if (rc || (rc = check_members(m, "mix", mix_keys, err)))
            return rc;
        s->mode = DEMIX_PROTO_MODE_MIX;
        const cJSON *g = get_object(m, "gains", "mix.gains", 0, &rc, err);
        if (rc)
            return rc;
        if (g && (rc = parse_gain_object(g, "mix.gains", s->gains,
                                         &s->gain_count, err)))
            return rc;
    }

    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "token");
    if (token) {
        if ((rc = get_string(token, "token", s->token, sizeof s->token, err)))
            return rc;
        s->has_token = 1;
    }
    return validate_start(s, err);
}

static int parse_gains_msg(const cJSON *root, demix_proto_gains *g,
                           demix_proto_error *err)
{
    static const char *const keys[] = {"type", "gains", NULL};
    int rc = check_members(root, "", keys, err);
    if (rc)
        return rc;
    memset(g, 0, sizeof *g);
    const cJSON *o = get_object(root, "gains", "gains", 1, &rc, err);
    if (rc)
        return rc;
    return parse_gain_object(o, "gains", g->gains, &g->count, err);
}

/* The "type" member as a string, or an error. */
static int get_type(const cJSON *root, const char **type,
                    demix_proto_error *err)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!t)
        return FAIL_FIELD(err, "type", "The message has no type.");
    if (!cJSON_IsString(t) || !t->valuestring)
        return FAIL_FIELD(err, "type", "type must be a string.");
    *type = t->valuestring;
    return DEMIX_OK;
}

int demix_proto_parse_client(const char *text, size_t len,
                             demix_proto_client_msg *out,
                             demix_proto_error *err)
{
    static const char *const bare[] = {"type", NULL};
    demix__proto_clear(err);
    if (!text || !out)
        return demix__proto_arg(err, "text or out is NULL");
    out->type = DEMIX_PROTO_NONE;
    cJSON *root;
    int rc = parse_root(text, len, &root, err);
    if (rc)
        return rc;
    const char *type = NULL;
    demix_proto_type t = DEMIX_PROTO_NONE;
    rc = get_type(root, &type, err);
    if (rc == DEMIX_OK) {
        if (strcmp(type, "start") == 0) {
            t = DEMIX_PROTO_START;
            rc = parse_start(root, &out->start, err);
        } else if (strcmp(type, "gains") == 0) {
            t = DEMIX_PROTO_GAINS;
            rc = parse_gains_msg(root, &out->gains, err);
        } else if (strcmp(type, "end") == 0) {
            t = DEMIX_PROTO_END;
            rc = check_members(root, "", bare, err);
        } else if (strcmp(type, "stats") == 0) {
            t = DEMIX_PROTO_STATS;
            rc = check_members(root, "", bare, err);
        } else {
            rc = demix__proto_fail(err, DEMIX_PROTO_ERR_UNKNOWN_TYPE, "type",
                                   "Unknown message type '%.40s'; a client "
                                   "sends start, gains, end or stats.",
                                   type);
        }
    }
    cJSON_Delete(root);
    if (rc == DEMIX_OK)
        out->type = t;
    return rc;
}

/* ------------------------------------------------ server messages (lenient)
 */

static const cJSON *need(const cJSON *obj, const char *key, const char *field,
                         int *rc, demix_proto_error *err)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!v && *rc == DEMIX_OK)
        *rc = FAIL_FIELD(err, field, "%s is missing.", field);
    return v;
}

/* Shorthands that stop at the first error (rc holds it). */
#define NEED_INT(obj, key, field, dst)                                         \
    do {                                                                       \
        const cJSON *v_ = need(obj, key, field, &rc, err);                     \
        if (rc || (rc = get_int(v_, field, dst, err)))                         \
            return rc;                                                         \
    } while (0)
#define NEED_U64(obj, key, field, dst)                                         \
    do {                                                                       \
        const cJSON *v_ = need(obj, key, field, &rc, err);                     \
        if (rc || (rc = get_u64(v_, field, dst, err)))                         \
            return rc;                                                         \
    } while (0)
#define NEED_DOUBLE(obj, key, field, dst)                                      \
    do {                                                                       \
        const cJSON *v_ = need(obj, key, field, &rc, err);                     \
        if (rc || (rc = get_double(v_, field, dst, err)))                      \
            return rc;                                                         \
    } while (0)
#define NEED_STRING(obj, key, field, dst)                                      \
    do {                                                                       \
        const cJSON *v_ = need(obj, key, field, &rc, err);                     \
        if (rc || (rc = get_string(v_, field, dst, sizeof(dst), err)))         \
            return rc;                                                         \
    } while (0)

static int source_index(const demix_proto_ready *r, const char *name)
{
    for (int i = 0; i < r->source_count; i++)
        if (strcmp(r->sources[i], name) == 0)
            return i;
    return -1;
}

static int parse_ready(const cJSON *root, demix_proto_ready *r,
                       demix_proto_error *err)
{
    int rc = DEMIX_OK;
    memset(r, 0, sizeof *r);
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        r->stem_source[i] = -1;
    NEED_STRING(root, "session", "session", r->session);
    if (!r->session[0])
        return FAIL_FIELD(err, "session", "session is empty.");

    const cJSON *m = get_object(root, "model", "model", 1, &rc, err);
    if (rc)
        return rc;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
    if (name && (rc = get_string(name, "model.name", r->model_name,
                                 sizeof r->model_name, err)))
        return rc;
    NEED_INT(m, "sample_rate", "model.sample_rate", &r->model_rate_hz);
    NEED_INT(m, "hop", "model.hop", &r->hop_samples);
    NEED_INT(m, "window", "model.window", &r->window_samples);
    NEED_INT(m, "latency_samples", "model.latency_samples",
             &r->latency_samples);
    if (r->model_rate_hz <= 0 || r->hop_samples <= 0 ||
        r->window_samples <= 0 || r->latency_samples < 0)
        return FAIL_FIELD(err, "model",
                          "model has a non-positive rate, hop or window.");
    const cJSON *src = need(m, "sources", "model.sources", &rc, err);
    if (rc)
        return rc;
    if (!cJSON_IsArray(src))
        return FAIL_FIELD(err, "model.sources",
                          "model.sources must be an array of names.");
    for (const cJSON *c = src->child; c; c = c->next) {
        char field[DEMIX_PROTO_FIELD_BYTES];
        snprintf(field, sizeof field, "model.sources[%d]", r->source_count);
        if (r->source_count == DEMIX_PROTO_MAX_STEMS)
            return FAIL_FIELD(err, "model.sources",
                              "model.sources has more than %d names.",
                              DEMIX_PROTO_MAX_STEMS);
        if ((rc = get_name(c, field, r->sources[r->source_count], err)))
            return rc;
        /* the names key mix.gains and name the stems: they must differ */
        for (int j = 0; j < r->source_count; j++)
            if (strcmp(r->sources[j], r->sources[r->source_count]) == 0)
                return FAIL_FIELD(err, "model.sources",
                                  "Source '%s' appears twice in "
                                  "model.sources.",
                                  r->sources[j]);
        r->source_count++;
    }
    if (r->source_count == 0)
        return FAIL_FIELD(err, "model.sources", "model.sources is empty.");

    NEED_INT(root, "client_rate", "client_rate", &r->client_rate_hz);
    NEED_INT(root, "channels", "channels", &r->channels);
    if (r->client_rate_hz < DEMIX_PROTO_MIN_RATE_HZ ||
        r->client_rate_hz > DEMIX_PROTO_MAX_RATE_HZ)
        return FAIL_FIELD(err, "client_rate", "client_rate is out of range.");
    if (r->channels != 1 && r->channels != 2)
        return FAIL_FIELD(err, "channels", "channels must be 1 or 2.");
    const cJSON *in = get_object(root, "input", "input", 1, &rc, err);
    if (rc || (rc = get_codec(in, "input", &r->input_codec, err)))
        return rc;
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(in, "pre_skip");
    if (r->input_codec == DEMIX_PROTO_CODEC_OPUS && ps &&
        (rc = get_int(ps, "input.pre_skip", &r->input_pre_skip_frames, err)))
        return rc;
    const cJSON *out = get_object(root, "output", "output", 1, &rc, err);
    if (rc || (rc = get_codec(out, "output", &r->output_codec, err)))
        return rc;
    if (r->output_codec == DEMIX_PROTO_CODEC_OPUS) {
        NEED_INT(out, "bitrate", "output.bitrate", &r->opus_bitrate_bps);
        NEED_INT(out, "frame_ms", "output.frame_ms", &r->opus_frame_ms);
        NEED_INT(out, "frame_frames", "output.frame_frames",
                 &r->opus_frame_frames);
        NEED_INT(out, "pre_skip", "output.pre_skip", &r->opus_pre_skip_frames);
        if (r->opus_frame_frames <= 0 || r->opus_pre_skip_frames < 0)
            return FAIL_FIELD(err, "output",
                              "output.frame_frames or pre_skip is out of "
                              "range.");
    }
    NEED_INT(root, "latency_frames", "latency_frames", &r->latency_frames);

    const cJSON *stems = cJSON_GetObjectItemCaseSensitive(root, "stems");
    const cJSON *mix = cJSON_GetObjectItemCaseSensitive(root, "mix");
    if (!stems == !mix)
        return FAIL_FIELD(err, "stems",
                          "ready needs exactly one of stems "
                          "and mix.");
    if (stems) {
        if (!cJSON_IsArray(stems))
            return FAIL_FIELD(err, "stems", "stems must be an array.");
        r->mode = DEMIX_PROTO_MODE_STEMS;
        for (const cJSON *c = stems->child; c; c = c->next) {
            char field[DEMIX_PROTO_FIELD_BYTES];
            char nm[DEMIX_PROTO_NAME_BYTES];
            snprintf(field, sizeof field, "stems[%d]", r->stem_count);
            if (r->stem_count == r->source_count)
                return FAIL_FIELD(err, "stems",
                                  "stems lists more stems than sources.");
            if ((rc = get_name(c, field, nm, err)))
                return rc;
            int t = source_index(r, nm);
            if (t < 0)
                return FAIL_FIELD(err, field, "Stem '%s' is not a source.", nm);
            r->stem_source[r->stem_count++] = t;
        }
        if (r->stem_count == 0)
            return FAIL_FIELD(err, "stems", "stems is empty.");
    } else {
        r->mode = DEMIX_PROTO_MODE_MIX;
        if (!cJSON_IsObject(mix))
            return FAIL_FIELD(err, "mix", "mix must be an object.");
        for (int i = 0; i < r->source_count; i++)
            r->source_gain[i] = 1.0f;
        const cJSON *g = get_object(mix, "gains", "mix.gains", 0, &rc, err);
        if (rc)
            return rc;
        demix_proto_gain list[DEMIX_PROTO_MAX_STEMS];
        int n = 0;
        if (g && (rc = parse_gain_object(g, "mix.gains", list, &n, err)))
            return rc;
        for (int i = 0; i < n; i++) {
            int t = source_index(r, list[i].name);
            if (t < 0)
                return FAIL_FIELD(err, "mix.gains",
                                  "Stem '%s' is not a source.", list[i].name);
            r->source_gain[t] = list[i].gain;
        }
    }
    return DEMIX_OK;
}

static int parse_error_msg(const cJSON *root, demix_proto_error *e,
                           demix_proto_error *err)
{
    int rc = DEMIX_OK;
    char code[32];
    memset(e, 0, sizeof *e);
    const cJSON *c = need(root, "code", "code", &rc, err);
    if (rc)
        return rc;
    if (!cJSON_IsString(c) || !c->valuestring)
        return FAIL_FIELD(err, "code", "code must be a string.");
    snprintf(code, sizeof code, "%s", c->valuestring);
    e->code = demix_proto_code_from_name(code);
    const cJSON *m = need(root, "message", "message", &rc, err);
    if (rc)
        return rc;
    if (!cJSON_IsString(m) || !m->valuestring)
        return FAIL_FIELD(err, "message", "message must be a string.");
    /* Longer sentences are cut, not refused: the code is what matters. */
    snprintf(e->message, sizeof e->message, "%s", m->valuestring);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "field");
    if (f && cJSON_IsString(f) && f->valuestring)
        snprintf(e->field, sizeof e->field, "%s", f->valuestring);
    return DEMIX_OK;
}

static int parse_stats_msg(const cJSON *root, demix_proto_stats *s,
                           demix_proto_error *err)
{
    int rc = DEMIX_OK;
    memset(s, 0, sizeof *s);
    NEED_INT(root, "sessions", "sessions", &s->sessions);
    NEED_INT(root, "max_sessions", "max_sessions", &s->max_sessions);
    NEED_U64(root, "hops", "hops", &s->hops);
    const cJSON *st = get_object(root, "step_ms", "step_ms", 1, &rc, err);
    if (rc)
        return rc;
    NEED_DOUBLE(st, "p50", "step_ms.p50", &s->step_ms_p50);
    NEED_DOUBLE(st, "p99", "step_ms.p99", &s->step_ms_p99);
    NEED_DOUBLE(root, "batch_mean", "batch_mean", &s->batch_mean);
    NEED_DOUBLE(root, "uptime_s", "uptime_s", &s->uptime_s);
    const cJSON *ses = get_object(root, "session", "session", 0, &rc, err);
    if (rc)
        return rc;
    if (ses) {
        s->has_session = 1;
        NEED_STRING(ses, "id", "session.id", s->session);
        NEED_U64(ses, "input_frames", "session.input_frames",
                 &s->session_input_frames);
        NEED_U64(ses, "output_frames", "session.output_frames",
                 &s->session_output_frames);
        NEED_U64(ses, "hops", "session.hops", &s->session_hops);
        NEED_U64(ses, "late_hops", "session.late_hops", &s->session_late_hops);
    }
    return DEMIX_OK;
}

static int parse_summary(const cJSON *root, demix_proto_summary *s,
                         demix_proto_error *err)
{
    int rc = DEMIX_OK;
    memset(s, 0, sizeof *s);
    NEED_STRING(root, "session", "session", s->session);
    NEED_U64(root, "input_frames", "input_frames", &s->input_frames);
    NEED_U64(root, "output_frames", "output_frames", &s->output_frames);
    NEED_DOUBLE(root, "duration_s", "duration_s", &s->duration_s);
    NEED_DOUBLE(root, "wall_s", "wall_s", &s->wall_s);
    NEED_U64(root, "hops", "hops", &s->hops);
    NEED_U64(root, "late_hops", "late_hops", &s->late_hops);
    return DEMIX_OK;
}

int demix_proto_parse_server(const char *text, size_t len,
                             demix_proto_server_msg *out,
                             demix_proto_error *err)
{
    demix__proto_clear(err);
    if (!text || !out)
        return demix__proto_arg(err, "text or out is NULL");
    out->type = DEMIX_PROTO_NONE;
    cJSON *root;
    int rc = parse_root(text, len, &root, err);
    if (rc)
        return rc;
    const char *type = NULL;
    demix_proto_type t = DEMIX_PROTO_NONE;
    rc = get_type(root, &type, err);
    if (rc == DEMIX_OK) {
        if (strcmp(type, "ready") == 0) {
            t = DEMIX_PROTO_READY;
            rc = parse_ready(root, &out->ready, err);
        } else if (strcmp(type, "error") == 0) {
            t = DEMIX_PROTO_ERROR;
            rc = parse_error_msg(root, &out->error, err);
        } else if (strcmp(type, "stats") == 0) {
            t = DEMIX_PROTO_STATS;
            rc = parse_stats_msg(root, &out->stats, err);
        } else if (strcmp(type, "summary") == 0) {
            t = DEMIX_PROTO_SUMMARY;
            rc = parse_summary(root, &out->summary, err);
        } else {
            rc = demix__proto_fail(err, DEMIX_PROTO_ERR_UNKNOWN_TYPE, "type",
                                   "Unknown message type '%.40s'; a server "
                                   "sends ready, error, stats or summary.",
                                   type);
        }
    }
    cJSON_Delete(root);
    if (rc == DEMIX_OK)
        out->type = t;
    return rc;
}
