/*
 * protocol_audio.c - the binary audio messages: an 8-byte header before the
 * client's audio, a 24-byte header before the server's, both little-endian.
 *
 * Design. Headers are packed and unpacked byte by byte (no struct overlay,
 * no alignment or endianness assumptions). Decoders check the whole message
 * against the session's codec and channel count, so that what they accept
 * is exactly what the server can feed to its decoder: whole PCM frames, or
 * one non-empty Opus packet (whether it decodes is the server's codec's
 * business). The output header's 24 bytes keep a float32 payload aligned
 * to 8 bytes from the start of the message.
 *
 * Threads: pure functions, reentrant.
 */
#include "protocol_internal.h"

#include <string.h>

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

#define FAIL_AUDIO(err, ...)                                                   \
    demix__proto_fail(err, DEMIX_PROTO_ERR_BAD_AUDIO, NULL, __VA_ARGS__)

static int args_ok(demix_proto_codec codec, int channels)
{
    return (unsigned)codec < DEMIX_PROTO_CODEC_COUNT &&
           (channels == 1 || channels == 2);
}

/* The checks both directions share: size, magic, kind, codec. */
static int check_common(const uint8_t *msg, size_t len, size_t header_bytes,
                        uint8_t kind, demix_proto_codec codec,
                        demix_proto_error *err)
{
    if (len > DEMIX_PROTO_MAX_BINARY_BYTES)
        return demix__proto_fail(err, DEMIX_PROTO_ERR_TOO_LARGE, NULL,
                                 "A binary message of %zu bytes exceeds the "
                                 "limit of %d bytes.",
                                 len, DEMIX_PROTO_MAX_BINARY_BYTES);
    if (len < header_bytes)
        return FAIL_AUDIO(err,
                          "A binary message of %zu bytes is shorter than its "
                          "%zu-byte header.",
                          len, header_bytes);
    if (msg[0] != DEMIX_PROTO_MAGIC) {
        if ((msg[0] & 0xF0) == (DEMIX_PROTO_MAGIC & 0xF0))
            return FAIL_AUDIO(err,
                              "Binary message version %d is not supported; "
                              "this endpoint speaks version %d.",
                              msg[0] & 0x0F, DEMIX_PROTO_VERSION);
        return FAIL_AUDIO(err,
                          "A binary message must start with 0x%02x, not "
                          "0x%02x.",
                          DEMIX_PROTO_MAGIC, msg[0]);
    }
    if (msg[1] != kind)
        return FAIL_AUDIO(
            err, "Binary message kind %d is not %s (%d).", msg[1],
            kind == DEMIX_PROTO_KIND_AUDIO_IN ? "audio_in" : "audio_out", kind);
    if (msg[2] != (uint8_t)codec)
        return FAIL_AUDIO(err,
                          "Binary message codec %d is not the session's %s "
                          "(%d).",
                          msg[2], demix_proto_codec_name(codec), (int)codec);
    return DEMIX_OK;
}

int demix_proto_audio_in_write_header(const demix_proto_audio_in *h,
                                      uint8_t *buf, size_t cap)
{
    if (!h || !buf)
        return DEMIX_EARG;
    if ((unsigned)h->codec >= DEMIX_PROTO_CODEC_COUNT || h->flags != 0)
        return DEMIX_EARG;
    if (cap < DEMIX_PROTO_AUDIO_IN_HEADER_BYTES)
        return DEMIX_ENOSPACE;
    buf[0] = DEMIX_PROTO_MAGIC;
    buf[1] = DEMIX_PROTO_KIND_AUDIO_IN;
    buf[2] = (uint8_t)h->codec;
    buf[3] = 0;
    put_u32(buf + 4, h->seq);
    return DEMIX_OK;
}

int demix_proto_audio_in_decode(const uint8_t *msg, size_t len,
                                demix_proto_codec codec, int channels,
                                uint32_t expected_seq,
                                demix_proto_audio_in *out,
                                demix_proto_error *err)
{
    demix__proto_clear(err);
    if (!msg || !out)
        return demix__proto_arg(err, "msg or out is NULL");
    if (!args_ok(codec, channels))
        return demix__proto_arg(err, "codec or channels");
    int rc = check_common(msg, len, DEMIX_PROTO_AUDIO_IN_HEADER_BYTES,
                          DEMIX_PROTO_KIND_AUDIO_IN, codec, err);
    if (rc)
        return rc;
    if (msg[3] != 0)
        return FAIL_AUDIO(err, "audio_in flags must be 0, not 0x%02x.", msg[3]);
    uint32_t seq = get_u32(msg + 4);
    if (seq != expected_seq)
        return FAIL_AUDIO(err,
                          "audio_in sequence number %lu arrived where %lu "
                          "was expected.",
                          (unsigned long)seq, (unsigned long)expected_seq);
    size_t payload = len - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES;
    if (payload == 0)
        return FAIL_AUDIO(err, "An audio_in message has no payload.");
    uint32_t frames = 0;
    size_t frame_bytes = demix_proto_frame_bytes(codec, channels);
    if (frame_bytes) {
        if (payload % frame_bytes)
            return FAIL_AUDIO(err,
                              "A %s payload of %zu bytes is not whole frames "
                              "of %zu bytes (%d channels).",
                              demix_proto_codec_name(codec), payload,
                              frame_bytes, channels);
        frames = (uint32_t)(payload / frame_bytes);
    }
    out->codec = codec;
    out->flags = 0;
    out->seq = seq;
    out->payload = msg + DEMIX_PROTO_AUDIO_IN_HEADER_BYTES;
    out->payload_bytes = payload;
    out->frames = frames;
    return DEMIX_OK;
}

int demix_proto_audio_out_write_header(const demix_proto_audio_out *h,
                                       uint8_t *buf, size_t cap)
{
    if (!h || !buf)
        return DEMIX_EARG;
    if ((unsigned)h->codec >= DEMIX_PROTO_CODEC_COUNT ||
        (h->flags & ~DEMIX_PROTO_FLAG_LAST) != 0 ||
        (h->stem >= DEMIX_PROTO_MAX_STEMS && h->stem != DEMIX_PROTO_STEM_MIX) ||
        h->frames == 0)
        return DEMIX_EARG;
    if (cap < DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES)
        return DEMIX_ENOSPACE;
    buf[0] = DEMIX_PROTO_MAGIC;
    buf[1] = DEMIX_PROTO_KIND_AUDIO_OUT;
    buf[2] = (uint8_t)h->codec;
    buf[3] = h->flags;
    put_u32(buf + 4, h->seq);
    buf[8] = h->stem;
    buf[9] = buf[10] = buf[11] = 0;
    put_u32(buf + 12, h->frames);
    put_u64(buf + 16, h->position);
    return DEMIX_OK;
}

int demix_proto_audio_out_decode(const uint8_t *msg, size_t len,
                                 demix_proto_codec codec, int channels,
                                 uint32_t expected_seq,
                                 demix_proto_audio_out *out,
                                 demix_proto_error *err)
{
    demix__proto_clear(err);
    if (!msg || !out)
        return demix__proto_arg(err, "msg or out is NULL");
    if (!args_ok(codec, channels))
        return demix__proto_arg(err, "codec or channels");
    int rc = check_common(msg, len, DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES,
                          DEMIX_PROTO_KIND_AUDIO_OUT, codec, err);
    if (rc)
        return rc;
    uint32_t seq = get_u32(msg + 4);
    if (seq != expected_seq)
        return FAIL_AUDIO(err,
                          "audio_out sequence number %lu arrived where %lu "
                          "was expected.",
                          (unsigned long)seq, (unsigned long)expected_seq);
    uint8_t stem = msg[8];
    if (stem >= DEMIX_PROTO_MAX_STEMS && stem != DEMIX_PROTO_STEM_MIX)
        return FAIL_AUDIO(err, "audio_out stem index %d is out of range.",
                          stem);
    uint32_t frames = get_u32(msg + 12);
    if (frames == 0)
        return FAIL_AUDIO(err, "An audio_out message carries zero frames.");
    size_t payload = len - DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES;
    if (payload == 0)
        return FAIL_AUDIO(err, "An audio_out message has no payload.");
    size_t frame_bytes = demix_proto_frame_bytes(codec, channels);
    if (frame_bytes && payload != (size_t)frames * frame_bytes)
        return FAIL_AUDIO(err,
                          "An audio_out payload of %zu bytes does not hold "
                          "%lu frames of %zu bytes.",
                          payload, (unsigned long)frames, frame_bytes);
    out->codec = codec;
    out->flags = msg[3];
    out->stem = stem;
    out->seq = seq;
    out->frames = frames;
    out->position = get_u64(msg + 16);
    out->payload = msg + DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES;
    out->payload_bytes = payload;
    return DEMIX_OK;
}
