/*
 * protocol.h - the demixd wire format, version 1, as pure functions: the
 * JSON control messages (text frames) and the audio message headers (binary
 * frames) of one WebSocket session, for the server and for clients alike.
 * docs/protocol.md is the specification written from this file.
 *
 * Usage sketch (server side, one session, on the lws service thread):
 *
 *     demix_proto_client_msg msg;          // ~1.2 KiB
 *     demix_proto_error perr;
 *     if (demix_proto_parse_client(text, len, &msg, &perr) ||
 *         demix_proto_check_order(sess->state, sess->mode, msg.type, &perr) ||
 *         (msg.type == DEMIX_PROTO_START &&
 *          demix_proto_start_resolve(&msg.start, cfg->source_names,
 *                                    cfg->num_sources, &perr))) {
 *         demix_proto_write_error(&perr, buf, sizeof buf, &n);  // send it,
 *         close_with(demix_proto_close_code(perr.code));        // then close
 *     }
 *
 *     // a binary message:
 *     demix_proto_audio_in in;
 *     if (demix_proto_audio_in_decode(data, len, sess->in_codec,
 *                                     sess->channels, sess->next_seq, &in,
 *                                     &perr) == DEMIX_OK)
 *         feed(in.payload, in.payload_bytes, in.frames);
 *
 *     // an output message: header, then the payload right behind it
 *     demix_proto_audio_out h = {.codec = ..., .stem = 2, .seq = s++,
 *                                .frames = n, .position = pos};
 *     demix_proto_audio_out_write_header(&h, buf, sizeof buf);
 *
 * A client does the mirror image: demix_proto_write_start / _gains / _end /
 * _stats_request, demix_proto_parse_server, demix_proto_audio_in_write_header
 * and demix_proto_audio_out_decode.
 *
 * Design. Parsers validate everything a message can be wrong about and
 * report it as a demix_proto_error {code, field, message}: the code is the
 * wire error code (bad_json, bad_field, ...), field the JSON path of the
 * offending value ("output.codec", "stems[1]", "mix.gains.vocals") or empty,
 * message one English sentence. A server sends exactly that error back with
 * demix_proto_write_error and closes with demix_proto_close_code(code).
 * Servers are strict (unknown fields, duplicate keys, reserved bits: error);
 * clients are lenient (unknown fields and flag bits in server messages are
 * ignored), so a server may add information without breaking clients.
 *
 * Byte order. Binary headers are little-endian, written and read byte by
 * byte, so the code is portable; PCM payloads are little-endian samples.
 *
 * Memory. Nothing here keeps state or allocates, except that the JSON
 * parsers build a cJSON tree (malloc through cJSON's hooks) and free all of
 * it before returning. Writers format straight into the caller's buffer,
 * never allocate, and return DEMIX_ENOSPACE when it is short (the buffer's
 * content is then unspecified). No writer produces more than
 * DEMIX_PROTO_MAX_TEXT_BYTES: a buffer of that + 1 bytes never gets
 * DEMIX_ENOSPACE, and a message that would be longer (only a ready whose
 * names are mostly control characters, each escaped to six bytes) is
 * refused with DEMIX_EARG.
 *
 * Threads. Every function is reentrant except one caveat: cJSON 1.7 resets a
 * process-wide "last error" pointer on every parse, so the two JSON parsers
 * (demix_proto_parse_client, demix_proto_parse_server) race on that word
 * when called from two threads at once. The value is never read here, but
 * call them from one thread at a time to stay clean under TSan (demixd
 * parses only on its lws service thread).
 *
 * Errors. Functions return DEMIX_OK (0) or a negative demix_status:
 * DEMIX_EARG for a NULL pointer or an invalid struct handed to a writer (a
 * programmer error; err->code is then DEMIX_PROTO_ERR_INTERNAL),
 * DEMIX_ENOSPACE for a short output buffer, DEMIX_EPROTOCOL for bad input
 * from the peer (err filled). err may be NULL wherever it appears.
 */
#ifndef DEMIX_PROTOCOL_H
#define DEMIX_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ endpoint */

#define DEMIX_PROTO_VERSION 1
#define DEMIX_PROTO_PATH "/v1/stream"      /* the WebSocket path */
#define DEMIX_PROTO_SUBPROTOCOL "demix.v1" /* Sec-WebSocket-Protocol */

/* ---------------------------------------------------------------- limits */

#define DEMIX_PROTO_MAX_TEXT_BYTES 4096    /* one JSON message, either way */
#define DEMIX_PROTO_MAX_BINARY_BYTES 65536 /* audio message, with header */
#define DEMIX_PROTO_MAX_STEMS 8            /* == DEMIX_MAX_SOURCES */
#define DEMIX_PROTO_NAME_BYTES 32          /* == DEMIX_SOURCE_NAME_BYTES */
#define DEMIX_PROTO_TOKEN_MAX_BYTES 256    /* token length, excluding NUL */
#define DEMIX_PROTO_SESSION_BYTES 64       /* session id, including NUL */
#define DEMIX_PROTO_TEXT_BYTES 256         /* model name, including NUL */
#define DEMIX_PROTO_FIELD_BYTES 64         /* error field path, incl. NUL */
#define DEMIX_PROTO_MESSAGE_BYTES 192      /* error sentence, incl. NUL */

#define DEMIX_PROTO_MIN_RATE_HZ 8000
#define DEMIX_PROTO_MAX_RATE_HZ 96000
#define DEMIX_PROTO_MAX_GAIN 4.0f /* gains are finite, in [0, 4] */

/* Opus: allowed client rates are 8000, 12000, 16000, 24000 and 48000 Hz
 * (Opus's own); frame_ms one of 5, 10, 20, 40, 60. */
#define DEMIX_PROTO_OPUS_MIN_BITRATE 6000
#define DEMIX_PROTO_OPUS_MAX_BITRATE 510000
#define DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL 64000
#define DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS 20
#define DEMIX_PROTO_MAX_PRE_SKIP 65535 /* input.pre_skip, in frames */

/* ----------------------------------------------------------- error codes */

/* X(NAME, "wire name", close code): the wire error codes and the WebSocket
 * close code the server uses after sending each (RFC 6455 section 7.4). */
#define DEMIX_PROTO_CODE_MAP(X)                                                \
    X(BAD_JSON, "bad_json", 1008)                                              \
    X(UNKNOWN_TYPE, "unknown_type", 1008)                                      \
    X(BAD_FIELD, "bad_field", 1008)                                            \
    X(UNKNOWN_STEM, "unknown_stem", 1008)                                      \
    X(BAD_ORDER, "bad_order", 1008)                                            \
    X(AUDIO_BEFORE_START, "audio_before_start", 1008)                          \
    X(BAD_AUDIO, "bad_audio", 1003)                                            \
    X(TOO_LARGE, "too_large", 1009)                                            \
    X(UNAUTHORIZED, "unauthorized", 1008)                                      \
    X(TIMEOUT, "timeout", 1008)                                                \
    X(AT_CAPACITY, "at_capacity", 1013)                                        \
    X(SHUTTING_DOWN, "shutting_down", 1001)                                    \
    X(RESTARTING, "restarting", 1012)                                          \
    X(INTERNAL, "internal", 1011)

/* clang-format off */
typedef enum demix_proto_code {
    DEMIX_PROTO_ERR_NONE = 0, /* no error (close code 1000) */
#define DEMIX__PROTO_CODE_ENUM(name, text, close) DEMIX_PROTO_ERR_##name,
    DEMIX_PROTO_CODE_MAP(DEMIX__PROTO_CODE_ENUM)
#undef DEMIX__PROTO_CODE_ENUM
    DEMIX_PROTO_ERR_UNKNOWN, /* a code string this version does not know */
} demix_proto_code;
/* clang-format on */

/* An error: what a parser reports, and the content of an error message. */
typedef struct demix_proto_error {
    demix_proto_code code;
    char field[DEMIX_PROTO_FIELD_BYTES];     /* JSON path, or "" */
    char message[DEMIX_PROTO_MESSAGE_BYTES]; /* one sentence, never empty
                                                after a failure */
} demix_proto_error;

/* "bad_json", ...; "none" for NONE, "unknown" for anything else. */
const char *demix_proto_code_name(demix_proto_code code);

/* The code of a wire name; DEMIX_PROTO_ERR_UNKNOWN when not one. */
demix_proto_code demix_proto_code_from_name(const char *name);

/* WebSocket close code to send after an error of this code: 1000 for NONE,
 * 1011 for UNKNOWN or out-of-range values. */
int demix_proto_close_code(demix_proto_code code);

/* The close code a client should report for a received (code, reason):
 * some WebSocket libraries (libwebsockets 4.1) turn close codes they do not
 * know (1012-1015) into 1002 before the application sees them; a server of
 * this protocol sends the error's wire name as the reason, so a 1002 whose
 * reason names an error maps back to that error's close code. Any other
 * pair is returned unchanged. */
int demix_proto_received_close_code(int code, const char *reason);

/* ----------------------------------------------------------- basic types */

typedef enum demix_proto_type {
    DEMIX_PROTO_NONE = 0,
    /* client -> server */
    DEMIX_PROTO_START,
    DEMIX_PROTO_GAINS,
    DEMIX_PROTO_END,
    DEMIX_PROTO_STATS, /* the request, and (server -> client) the reply */
    /* server -> client */
    DEMIX_PROTO_READY,
    DEMIX_PROTO_ERROR,
    DEMIX_PROTO_SUMMARY,
    /* a binary audio message, for demix_proto_check_order */
    DEMIX_PROTO_AUDIO,
} demix_proto_type;

/* "start", "gains", ..., "audio" for AUDIO; "none" otherwise. */
const char *demix_proto_type_name(demix_proto_type type);

typedef enum demix_proto_codec {
    DEMIX_PROTO_CODEC_PCM_S16 = 0, /* "pcm_s16": int16 LE, interleaved */
    DEMIX_PROTO_CODEC_PCM_F32 = 1, /* "pcm_f32": IEEE float32 LE, interleaved */
    DEMIX_PROTO_CODEC_OPUS = 2,    /* "opus": one Opus packet per message */
} demix_proto_codec;
#define DEMIX_PROTO_CODEC_COUNT 3

/* "pcm_s16", "pcm_f32", "opus"; "unknown" otherwise. */
const char *demix_proto_codec_name(demix_proto_codec codec);

/* Codec of a wire name; DEMIX_EFORMAT when not one. */
DEMIX_WARN_UNUSED int demix_proto_codec_from_name(const char *name,
                                                  demix_proto_codec *out);

/* Bytes of one PCM frame (all channels): 2 or 4 times channels; 0 for Opus
 * or invalid arguments. */
size_t demix_proto_frame_bytes(demix_proto_codec codec, int channels);

typedef enum demix_proto_mode {
    DEMIX_PROTO_MODE_NONE = 0,
    DEMIX_PROTO_MODE_STEMS = 1, /* each chosen stem sent on its own */
    DEMIX_PROTO_MODE_MIX = 2,   /* one server-side mix with per-stem gains */
} demix_proto_mode;

typedef struct demix_proto_gain {
    char name[DEMIX_PROTO_NAME_BYTES];
    float gain; /* finite, [0, DEMIX_PROTO_MAX_GAIN] */
} demix_proto_gain;

/* ------------------------------------------------ client -> server (JSON) */

typedef struct demix_proto_start {
    int sample_rate_hz; /* the client's rate, both directions */
    int channels;       /* 1 or 2, both directions */
    demix_proto_codec input_codec;
    demix_proto_codec output_codec;
    int input_pre_skip_frames; /* input opus only: decoded frames the server
                                  drops first (the client encoder's
                                  lookahead), 0..65535, default 0 */
    int opus_bitrate_bps;      /* output opus only (parser fills the default:
                                  64000 per channel); 0 for PCM */
    int opus_frame_ms;         /* output opus only (default 20); 0 for PCM */
    demix_proto_mode mode;
    /* MODE_STEMS: the stems wanted, in the order given, no duplicates. */
    int stem_count;
    char stems[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];
    /* MODE_MIX: gains named in the start (the others are 1.0). */
    int gain_count;
    demix_proto_gain gains[DEMIX_PROTO_MAX_STEMS];
    int has_token;
    char token[DEMIX_PROTO_TOKEN_MAX_BYTES + 1];

    /* Filled by demix_proto_start_resolve against the model's sources: */
    int source_count;
    int stem_source[DEMIX_PROTO_MAX_STEMS];   /* stems[i] is source
                                                 stem_source[i] */
    float source_gain[DEMIX_PROTO_MAX_STEMS]; /* mix gain of each source */
} demix_proto_start;

/* A gains message: the named stems change, the others keep theirs. */
typedef struct demix_proto_gains {
    int count; /* 0..DEMIX_PROTO_MAX_STEMS, names unique */
    demix_proto_gain gains[DEMIX_PROTO_MAX_STEMS];
} demix_proto_gains;

typedef struct demix_proto_client_msg {
    demix_proto_type type;   /* START, GAINS, END or STATS */
    demix_proto_start start; /* when type == START */
    demix_proto_gains gains; /* when type == GAINS */
} demix_proto_client_msg;

/* Parse one text message from a client. On success out->type says which
 * member holds it. DEMIX_EPROTOCOL with err filled for: more than
 * DEMIX_PROTO_MAX_TEXT_BYTES (too_large); empty, not UTF-8, a NUL byte or
 * \u0000, not JSON, trailing data, not an object (bad_json); no "type" or
 * not a string (bad_field, field "type"); a type that is not a client
 * message (unknown_type); any field missing, of the wrong JSON type, out of
 * range, not allowed for the codec, duplicated, unknown, or both/neither of
 * stems and mix (bad_field, field = its path). Stem names are not checked
 * against a model here: see demix_proto_start_resolve. */
DEMIX_WARN_UNUSED int demix_proto_parse_client(const char *text, size_t len,
                                               demix_proto_client_msg *out,
                                               demix_proto_error *err);

/* Check a parsed start against the model's source names (count of them,
 * 1..DEMIX_PROTO_MAX_STEMS, each NUL-terminated) and fill source_count,
 * stem_source and source_gain (MODE_MIX: the named gains, 1.0 for sources
 * the start does not name; MODE_STEMS: 1.0 for the chosen stems, 0 for the
 * others). DEMIX_EPROTOCOL, code unknown_stem, naming the first name that
 * is not a source (field "stems[i]" or "mix.gains.NAME"). */
DEMIX_WARN_UNUSED int
demix_proto_start_resolve(demix_proto_start *start,
                          const char (*names)[DEMIX_PROTO_NAME_BYTES],
                          int count, demix_proto_error *err);

/* Apply a gains message to the per-source gains (count entries, in the
 * order of names). All names are checked first: on unknown_stem nothing
 * changes. */
DEMIX_WARN_UNUSED int
demix_proto_gains_apply(const demix_proto_gains *gains,
                        const char (*names)[DEMIX_PROTO_NAME_BYTES], int count,
                        float *source_gain, demix_proto_error *err);

/* Client writers: validate the struct by the parser's rules (DEMIX_EARG when
 * it would be rejected), then write the JSON and a NUL; *len excludes the
 * NUL, so cap must exceed it. */
DEMIX_WARN_UNUSED int demix_proto_write_start(const demix_proto_start *start,
                                              char *buf, size_t cap,
                                              size_t *len);
DEMIX_WARN_UNUSED int demix_proto_write_gains(const demix_proto_gains *gains,
                                              char *buf, size_t cap,
                                              size_t *len);
DEMIX_WARN_UNUSED int demix_proto_write_end(char *buf, size_t cap, size_t *len);
DEMIX_WARN_UNUSED int demix_proto_write_stats_request(char *buf, size_t cap,
                                                      size_t *len);

/* Fill a start with the defaults of the optional fields and no stems:
 * the caller sets rate, channels, codecs and stems or mix. */
void demix_proto_start_init(demix_proto_start *start);

/* ------------------------------------------------ server -> client (JSON) */

typedef struct demix_proto_ready {
    char session[DEMIX_PROTO_SESSION_BYTES]; /* server-chosen id, 1..63 B */
    /* the model */
    char model_name[DEMIX_PROTO_TEXT_BYTES]; /* may be empty */
    int model_rate_hz;
    int hop_samples;     /* H, model rate */
    int window_samples;  /* W, model rate */
    int latency_samples; /* algorithmic latency, model rate (W) */
    int source_count;
    char sources[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES]; /* order =
                                           the stem index of audio messages */
    /* the session, as agreed */
    int client_rate_hz;
    int channels;
    demix_proto_codec input_codec;
    demix_proto_codec output_codec;
    int input_pre_skip_frames; /* input opus only: as in the start */
    int opus_bitrate_bps;      /* output opus only, else 0 */
    int opus_frame_ms;         /* output opus only, else 0 */
    int opus_frame_frames;     /* client_rate * frame_ms / 1000; the writer
                                  computes it, the parser reads it */
    int opus_pre_skip_frames;  /* output opus only: decoded frames to drop at
                                  the start of each stem's stream */
    int latency_frames;        /* the session's algorithmic latency at the
                                  client rate: model, resamplers and codec */
    demix_proto_mode mode;
    int stem_count; /* MODE_STEMS */
    int stem_source[DEMIX_PROTO_MAX_STEMS];
    float source_gain[DEMIX_PROTO_MAX_STEMS]; /* MODE_MIX: every source */
} demix_proto_ready;

/* Copy a resolved start's session fields (rate, channels, codecs, Opus
 * settings, mode, stems, gains) into ready; the rest (session, model,
 * opus_pre_skip_frames, latency_frames) is left untouched. */
void demix_proto_ready_from_start(demix_proto_ready *ready,
                                  const demix_proto_start *start);

typedef struct demix_proto_stats {
    int sessions;       /* live sessions on the server */
    int max_sessions;   /* its limit */
    uint64_t hops;      /* session-hops stepped since the server started */
    double step_ms_p50; /* engine step time, recent window */
    double step_ms_p99;
    double batch_mean; /* mean sessions per step, same window */
    double uptime_s;
    int has_session; /* the block below is present */
    char session[DEMIX_PROTO_SESSION_BYTES];
    uint64_t session_input_frames;  /* client rate */
    uint64_t session_output_frames; /* client rate, per stem */
    uint64_t session_hops;
    uint64_t session_late_hops;
} demix_proto_stats;

typedef struct demix_proto_summary {
    char session[DEMIX_PROTO_SESSION_BYTES];
    uint64_t input_frames;  /* client rate */
    uint64_t output_frames; /* client rate, per stem; == input_frames */
    double duration_s;      /* input_frames / client rate */
    double wall_s;          /* start to summary */
    uint64_t hops;          /* model hops run for this session */
    uint64_t late_hops;     /* of those, finished after their deadline */
} demix_proto_summary;

typedef struct demix_proto_server_msg {
    demix_proto_type type; /* READY, ERROR, STATS or SUMMARY */
    demix_proto_ready ready;
    demix_proto_error error;
    demix_proto_stats stats;
    demix_proto_summary summary;
} demix_proto_server_msg;

/* Server writers: DEMIX_EARG for a struct that breaks the documented
 * ranges (a NaN, an empty session id, a stem index out of range, ...). */
DEMIX_WARN_UNUSED int demix_proto_write_ready(const demix_proto_ready *ready,
                                              char *buf, size_t cap,
                                              size_t *len);
DEMIX_WARN_UNUSED int demix_proto_write_error(const demix_proto_error *error,
                                              char *buf, size_t cap,
                                              size_t *len);
DEMIX_WARN_UNUSED int demix_proto_write_stats(const demix_proto_stats *stats,
                                              char *buf, size_t cap,
                                              size_t *len);
DEMIX_WARN_UNUSED int
demix_proto_write_summary(const demix_proto_summary *summary, char *buf,
                          size_t cap, size_t *len);

/* Parse one text message from the server. Lenient: unknown fields are
 * ignored; an error with an unknown code string gets ERR_UNKNOWN. The same
 * size/UTF-8/JSON checks as demix_proto_parse_client; missing or mistyped
 * required fields are bad_field. */
DEMIX_WARN_UNUSED int demix_proto_parse_server(const char *text, size_t len,
                                               demix_proto_server_msg *out,
                                               demix_proto_error *err);

/* ------------------------------------------------------- session order */

typedef enum demix_proto_state {
    DEMIX_PROTO_STATE_IDLE = 0,  /* connected, no start accepted yet */
    DEMIX_PROTO_STATE_STREAMING, /* ready sent */
    DEMIX_PROTO_STATE_ENDING,    /* end received, flushing */
} demix_proto_state;

/* Whether a message of this type (AUDIO for a binary one) may arrive from
 * the client now. IDLE: start, stats; audio is audio_before_start, the rest
 * bad_order. STREAMING: audio, end, stats, gains in MODE_MIX. ENDING:
 * stats, gains in MODE_MIX. Anything else: bad_order. A server-side type:
 * DEMIX_EARG. */
DEMIX_WARN_UNUSED int demix_proto_check_order(demix_proto_state state,
                                              demix_proto_mode mode,
                                              demix_proto_type type,
                                              demix_proto_error *err);

/* --------------------------------------------------------- audio (binary) */

#define DEMIX_PROTO_MAGIC                                                      \
    0xD1 /* "demix, version 1": first byte of every                            \
            binary message */
#define DEMIX_PROTO_KIND_AUDIO_IN 0x01
#define DEMIX_PROTO_KIND_AUDIO_OUT 0x02
#define DEMIX_PROTO_AUDIO_IN_HEADER_BYTES 8
#define DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES 24
#define DEMIX_PROTO_FLAG_LAST 0x01 /* audio_out: this stem's last message */
#define DEMIX_PROTO_STEM_MIX 0xFF  /* audio_out stem index of the mix */

/* Client -> server audio. Layout (little-endian):
 *   0 u8 magic 0xD1 | 1 u8 kind 0x01 | 2 u8 codec | 3 u8 flags (0)
 *   4 u32 seq | 8.. payload                                              */
typedef struct demix_proto_audio_in {
    demix_proto_codec codec; /* the start's input codec */
    uint8_t flags;           /* 0: no flags are defined for audio_in */
    uint32_t seq;            /* 0 for the first message, then +1 (mod 2^32) */
    /* decode only: */
    const uint8_t *payload; /* points into the message */
    size_t payload_bytes;
    uint32_t frames; /* PCM: frames in the payload; Opus: 0 (unknown) */
} demix_proto_audio_in;

/* Server -> client audio. Layout (little-endian):
 *   0 u8 magic 0xD1 | 1 u8 kind 0x02 | 2 u8 codec | 3 u8 flags
 *   4 u32 seq | 8 u8 stem | 9..11 reserved (0) | 12 u32 frames
 *   16 u64 position | 24.. payload                                       */
typedef struct demix_proto_audio_out {
    demix_proto_codec codec; /* the start's output codec */
    uint8_t flags;           /* DEMIX_PROTO_FLAG_LAST */
    uint8_t stem;            /* source index (ready.sources), or STEM_MIX */
    uint32_t seq;            /* per session, over all output messages */
    uint32_t frames;         /* client-rate frames: PCM in the payload; Opus the
                                packet's frame size */
    uint64_t position;       /* client-rate frame of the first frame; output
                                position p is the separation of input frame p */
    /* decode only: */
    const uint8_t *payload;
    size_t payload_bytes;
} demix_proto_audio_out;

/* Write the 8-byte header (cap >= 8). EARG for an invalid codec or flags. */
DEMIX_WARN_UNUSED int
demix_proto_audio_in_write_header(const demix_proto_audio_in *h, uint8_t *buf,
                                  size_t cap);

/* Decode and check a whole client audio message against the session:
 * codec and channels from its start, expected_seq the next sequence number.
 * DEMIX_EPROTOCOL: too_large above DEMIX_PROTO_MAX_BINARY_BYTES; bad_audio
 * for a short header, wrong magic or version, wrong kind, codec not the
 * session's, flags set, a sequence number other than expected_seq, an empty
 * payload, or a PCM payload that is not whole frames. DEMIX_EARG for bad
 * codec/channels arguments. */
DEMIX_WARN_UNUSED int demix_proto_audio_in_decode(
    const uint8_t *msg, size_t len, demix_proto_codec codec, int channels,
    uint32_t expected_seq, demix_proto_audio_in *out, demix_proto_error *err);

/* Write the 24-byte header (cap >= 24). EARG for an invalid codec, a stem
 * index above DEMIX_PROTO_MAX_STEMS - 1 other than STEM_MIX, zero frames,
 * or undefined flags. */
DEMIX_WARN_UNUSED int
demix_proto_audio_out_write_header(const demix_proto_audio_out *h, uint8_t *buf,
                                   size_t cap);

/* Decode and check a whole server audio message (client side). Lenient on
 * undefined flag bits and reserved bytes. DEMIX_EPROTOCOL (bad_audio or
 * too_large) for: short header, wrong magic/kind, codec not expected, a
 * stem index out of range, zero frames, an empty payload, a PCM payload
 * other than frames * frame bytes, or a seq other than expected_seq. */
DEMIX_WARN_UNUSED int demix_proto_audio_out_decode(
    const uint8_t *msg, size_t len, demix_proto_codec codec, int channels,
    uint32_t expected_seq, demix_proto_audio_out *out, demix_proto_error *err);

#ifdef __cplusplus
}
#endif

#endif /* DEMIX_PROTOCOL_H */
