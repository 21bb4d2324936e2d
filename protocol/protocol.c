/*
 * protocol.c - the parts of the wire format that are neither JSON nor
 * binary: error codes and their close codes, type and codec names, the
 * session's message order, and resolving stem names against a model.
 *
 * Design: the code table is one X-macro list in protocol.h, so names, enum
 * and close codes cannot disagree. Resolution is a linear search over at
 * most DEMIX_PROTO_MAX_STEMS names.
 *
 * Threads: pure functions, reentrant.
 */
#include "protocol_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- errors */

int demix__proto_fail(demix_proto_error *err, demix_proto_code code,
                      const char *field, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        snprintf(err->field, sizeof err->field, "%s", field ? field : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return DEMIX_EPROTOCOL;
}

int demix__proto_arg(demix_proto_error *err, const char *what)
{
    if (err) {
        err->code = DEMIX_PROTO_ERR_INTERNAL;
        err->field[0] = '\0';
        snprintf(err->message, sizeof err->message, "invalid argument: %s",
                 what);
    }
    return DEMIX_EARG;
}

void demix__proto_clear(demix_proto_error *err)
{
    if (err) {
        err->code = DEMIX_PROTO_ERR_NONE;
        err->field[0] = '\0';
        err->message[0] = '\0';
    }
}

int demix__proto_terminated(const char *s, size_t cap)
{
    return s && memchr(s, '\0', cap) != NULL;
}

int demix__proto_name_ok(const char *name)
{
    return demix__proto_terminated(name, DEMIX_PROTO_NAME_BYTES) &&
           name[0] != '\0';
}

int demix__proto_opus_rate_ok(int rate_hz)
{
    return rate_hz == 8000 || rate_hz == 12000 || rate_hz == 16000 ||
           rate_hz == 24000 || rate_hz == 48000;
}

int demix__proto_opus_frame_ms_ok(int frame_ms)
{
    return frame_ms == 5 || frame_ms == 10 || frame_ms == 20 ||
           frame_ms == 40 || frame_ms == 60;
}

const char *demix_proto_code_name(demix_proto_code code)
{
    switch (code) {
    case DEMIX_PROTO_ERR_NONE:
        return "none";
#define DEMIX__PROTO_CODE_NAME(name, text, close)                              \
    case DEMIX_PROTO_ERR_##name:                                               \
        return text;
        DEMIX_PROTO_CODE_MAP(DEMIX__PROTO_CODE_NAME)
#undef DEMIX__PROTO_CODE_NAME
    default:
        return "unknown";
    }
}

demix_proto_code demix_proto_code_from_name(const char *name)
{
    if (!name)
        return DEMIX_PROTO_ERR_UNKNOWN;
#define DEMIX__PROTO_CODE_FROM(cname, text, close)                             \
    if (strcmp(name, text) == 0)                                               \
        return DEMIX_PROTO_ERR_##cname;
    DEMIX_PROTO_CODE_MAP(DEMIX__PROTO_CODE_FROM)
#undef DEMIX__PROTO_CODE_FROM
    return DEMIX_PROTO_ERR_UNKNOWN;
}

int demix_proto_received_close_code(int code, const char *reason)
{
    if (code != 1002 || !reason)
        return code;
    demix_proto_code named = demix_proto_code_from_name(reason);
    if (named == DEMIX_PROTO_ERR_UNKNOWN || named == DEMIX_PROTO_ERR_NONE)
        return code;
    return demix_proto_close_code(named);
}

int demix_proto_close_code(demix_proto_code code)
{
    switch (code) {
    case DEMIX_PROTO_ERR_NONE:
        return 1000;
#define DEMIX__PROTO_CODE_CLOSE(name, text, close)                             \
    case DEMIX_PROTO_ERR_##name:                                               \
        return close;
        DEMIX_PROTO_CODE_MAP(DEMIX__PROTO_CODE_CLOSE)
#undef DEMIX__PROTO_CODE_CLOSE
    default:
        return 1011;
    }
}

/* -------------------------------------------------------------- names */

const char *demix_proto_type_name(demix_proto_type type)
{
    switch (type) {
    case DEMIX_PROTO_START:
        return "start";
    case DEMIX_PROTO_GAINS:
        return "gains";
    case DEMIX_PROTO_END:
        return "end";
    case DEMIX_PROTO_STATS:
        return "stats";
    case DEMIX_PROTO_READY:
        return "ready";
    case DEMIX_PROTO_ERROR:
        return "error";
    case DEMIX_PROTO_SUMMARY:
        return "summary";
    case DEMIX_PROTO_AUDIO:
        return "audio";
    default:
        return "none";
    }
}

static const char *const codec_names[DEMIX_PROTO_CODEC_COUNT] = {
    "pcm_s16", "pcm_f32", "opus"};

const char *demix_proto_codec_name(demix_proto_codec codec)
{
    if ((unsigned)codec < DEMIX_PROTO_CODEC_COUNT)
        return codec_names[codec];
    return "unknown";
}

int demix_proto_codec_from_name(const char *name, demix_proto_codec *out)
{
    if (!name || !out)
        return DEMIX_EARG;
    for (int i = 0; i < DEMIX_PROTO_CODEC_COUNT; i++)
        if (strcmp(name, codec_names[i]) == 0) {
            *out = (demix_proto_codec)i;
            return DEMIX_OK;
        }
    return DEMIX_EFORMAT;
}

size_t demix_proto_frame_bytes(demix_proto_codec codec, int channels)
{
    if (channels != 1 && channels != 2)
        return 0;
    switch (codec) {
    case DEMIX_PROTO_CODEC_PCM_S16:
        return 2u * (size_t)channels;
    case DEMIX_PROTO_CODEC_PCM_F32:
        return 4u * (size_t)channels;
    default:
        return 0;
    }
}

/* -------------------------------------------------------------- order */

int demix_proto_check_order(demix_proto_state state, demix_proto_mode mode,
                            demix_proto_type type, demix_proto_error *err)
{
    switch (type) {
    case DEMIX_PROTO_START:
    case DEMIX_PROTO_GAINS:
    case DEMIX_PROTO_END:
    case DEMIX_PROTO_STATS:
    case DEMIX_PROTO_AUDIO:
        break;
    default:
        return demix__proto_arg(err, "type is not a client message");
    }
    if (state != DEMIX_PROTO_STATE_IDLE &&
        state != DEMIX_PROTO_STATE_STREAMING &&
        state != DEMIX_PROTO_STATE_ENDING)
        return demix__proto_arg(err, "state is not a demix_proto_state");

    if (type == DEMIX_PROTO_STATS)
        return DEMIX_OK;
    switch (state) {
    case DEMIX_PROTO_STATE_IDLE:
        if (type == DEMIX_PROTO_START)
            return DEMIX_OK;
        if (type == DEMIX_PROTO_AUDIO)
            return demix__proto_fail(
                err, DEMIX_PROTO_ERR_AUDIO_BEFORE_START, NULL,
                "Audio arrived before a start message; send start first.");
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_ORDER, "type",
                                 "A %s message arrived before start; send "
                                 "start first.",
                                 demix_proto_type_name(type));
    case DEMIX_PROTO_STATE_STREAMING:
        if (type == DEMIX_PROTO_AUDIO || type == DEMIX_PROTO_END)
            return DEMIX_OK;
        break;
    case DEMIX_PROTO_STATE_ENDING:
        if (type != DEMIX_PROTO_GAINS)
            return demix__proto_fail(
                err, DEMIX_PROTO_ERR_BAD_ORDER,
                type == DEMIX_PROTO_AUDIO ? NULL : "type",
                "A %s message arrived after end; only gains and stats may "
                "follow end.",
                demix_proto_type_name(type));
        break;
    }
    if (type == DEMIX_PROTO_START)
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_ORDER, "type",
                                 "The session has already started; open a "
                                 "new connection for a new stream.");
    /* GAINS, while streaming or ending */
    if (mode != DEMIX_PROTO_MODE_MIX)
        return demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_ORDER, "type",
                                 "A gains message needs a session started "
                                 "with mix, not stems.");
    return DEMIX_OK;
}

/* ---------------------------------------------------------- resolving */

static int find_source(const char (*names)[DEMIX_PROTO_NAME_BYTES], int count,
                       const char *name)
{
    for (int i = 0; i < count; i++)
        if (strncmp(names[i], name, DEMIX_PROTO_NAME_BYTES) == 0)
            return i;
    return -1;
}

static int check_names(const char (*names)[DEMIX_PROTO_NAME_BYTES], int count,
                       demix_proto_error *err)
{
    if (!names)
        return demix__proto_arg(err, "names is NULL");
    if (count < 1 || count > DEMIX_PROTO_MAX_STEMS)
        return demix__proto_arg(err, "source count is not 1..8");
    for (int i = 0; i < count; i++)
        if (!demix__proto_name_ok(names[i]))
            return demix__proto_arg(err, "a source name is empty or long");
    return DEMIX_OK;
}

/* "drums, bass, vocals, other" into buf. */
static void list_names(const char (*names)[DEMIX_PROTO_NAME_BYTES], int count,
                       char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static int unknown_stem(const char (*names)[DEMIX_PROTO_NAME_BYTES], int count,
                        const char *name, const char *field,
                        demix_proto_error *err)
{
    char list[DEMIX_PROTO_MAX_STEMS * (DEMIX_PROTO_NAME_BYTES + 2)];
    list_names(names, count, list, sizeof list);
    return demix__proto_fail(err, DEMIX_PROTO_ERR_UNKNOWN_STEM, field,
                             "Unknown stem '%.40s'; this model has %s.", name,
                             list);
}

int demix_proto_start_resolve(demix_proto_start *start,
                              const char (*names)[DEMIX_PROTO_NAME_BYTES],
                              int count, demix_proto_error *err)
{
    demix__proto_clear(err);
    if (!start)
        return demix__proto_arg(err, "start is NULL");
    int rc = check_names(names, count, err);
    if (rc)
        return rc;
    char field[DEMIX_PROTO_FIELD_BYTES];
    float gain[DEMIX_PROTO_MAX_STEMS];
    int source[DEMIX_PROTO_MAX_STEMS];

    if (start->mode == DEMIX_PROTO_MODE_STEMS) {
        if (start->stem_count < 1 || start->stem_count > DEMIX_PROTO_MAX_STEMS)
            return demix__proto_arg(err, "stem_count is not 1..8");
        for (int t = 0; t < DEMIX_PROTO_MAX_STEMS; t++)
            gain[t] = 0.0f;
        for (int i = 0; i < start->stem_count; i++) {
            int t = demix__proto_name_ok(start->stems[i])
                        ? find_source(names, count, start->stems[i])
                        : -1;
            if (t < 0) {
                snprintf(field, sizeof field, "stems[%d]", i);
                return unknown_stem(names, count,
                                    demix__proto_name_ok(start->stems[i])
                                        ? start->stems[i]
                                        : "",
                                    field, err);
            }
            source[i] = t;
            gain[t] = 1.0f;
        }
        for (int i = start->stem_count; i < DEMIX_PROTO_MAX_STEMS; i++)
            source[i] = -1;
    } else if (start->mode == DEMIX_PROTO_MODE_MIX) {
        if (start->gain_count < 0 || start->gain_count > DEMIX_PROTO_MAX_STEMS)
            return demix__proto_arg(err, "gain_count is not 0..8");
        for (int t = 0; t < DEMIX_PROTO_MAX_STEMS; t++)
            gain[t] = t < count ? 1.0f : 0.0f;
        for (int i = 0; i < start->gain_count; i++) {
            const demix_proto_gain *g = &start->gains[i];
            int t = demix__proto_name_ok(g->name)
                        ? find_source(names, count, g->name)
                        : -1;
            if (t < 0) {
                snprintf(field, sizeof field, "mix.gains.%.40s",
                         demix__proto_name_ok(g->name) ? g->name : "");
                return unknown_stem(
                    names, count, demix__proto_name_ok(g->name) ? g->name : "",
                    field, err);
            }
            gain[t] = g->gain;
        }
        for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
            source[i] = -1;
    } else {
        return demix__proto_arg(err, "start mode is neither stems nor mix");
    }
    start->source_count = count;
    memcpy(start->stem_source, source, sizeof source);
    memcpy(start->source_gain, gain, sizeof gain);
    return DEMIX_OK;
}

int demix_proto_gains_apply(const demix_proto_gains *gains,
                            const char (*names)[DEMIX_PROTO_NAME_BYTES],
                            int count, float *source_gain,
                            demix_proto_error *err)
{
    demix__proto_clear(err);
    if (!gains || !source_gain)
        return demix__proto_arg(err, "gains or source_gain is NULL");
    int rc = check_names(names, count, err);
    if (rc)
        return rc;
    if (gains->count < 0 || gains->count > DEMIX_PROTO_MAX_STEMS)
        return demix__proto_arg(err, "gains count is not 0..8");
    int source[DEMIX_PROTO_MAX_STEMS];
    for (int i = 0; i < gains->count; i++) {
        const demix_proto_gain *g = &gains->gains[i];
        source[i] = demix__proto_name_ok(g->name)
                        ? find_source(names, count, g->name)
                        : -1;
        if (source[i] < 0) {
            char field[DEMIX_PROTO_FIELD_BYTES];
            const char *name = demix__proto_name_ok(g->name) ? g->name : "";
            snprintf(field, sizeof field, "gains.%.40s", name);
            return unknown_stem(names, count, name, field, err);
        }
        if (!isfinite(g->gain) || g->gain < 0.0f ||
            g->gain > DEMIX_PROTO_MAX_GAIN)
            return demix__proto_arg(err, "a gain is not finite in [0, 4]");
    }
    for (int i = 0; i < gains->count; i++)
        source_gain[source[i]] = gains->gains[i].gain;
    return DEMIX_OK;
}

/* ------------------------------------------------------------ helpers */

void demix_proto_start_init(demix_proto_start *start)
{
    if (!start)
        return;
    memset(start, 0, sizeof *start);
    start->input_codec = DEMIX_PROTO_CODEC_PCM_F32;
    start->output_codec = DEMIX_PROTO_CODEC_PCM_F32;
    start->mode = DEMIX_PROTO_MODE_NONE;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        start->stem_source[i] = -1;
}

void demix_proto_ready_from_start(demix_proto_ready *ready,
                                  const demix_proto_start *start)
{
    if (!ready || !start)
        return;
    ready->client_rate_hz = start->sample_rate_hz;
    ready->channels = start->channels;
    ready->input_codec = start->input_codec;
    ready->output_codec = start->output_codec;
    ready->input_pre_skip_frames = start->input_pre_skip_frames;
    ready->opus_bitrate_bps = start->opus_bitrate_bps;
    ready->opus_frame_ms = start->opus_frame_ms;
    ready->opus_frame_frames =
        start->output_codec == DEMIX_PROTO_CODEC_OPUS
            ? start->sample_rate_hz / 1000 * start->opus_frame_ms
            : 0;
    ready->mode = start->mode;
    ready->stem_count =
        start->mode == DEMIX_PROTO_MODE_STEMS ? start->stem_count : 0;
    memcpy(ready->stem_source, start->stem_source, sizeof ready->stem_source);
    memcpy(ready->source_gain, start->source_gain, sizeof ready->source_gain);
}
