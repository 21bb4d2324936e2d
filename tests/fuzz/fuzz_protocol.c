/*
 * fuzz_protocol.c - libFuzzer target for protocol/: every input goes
 * through both JSON parsers (client and server messages) and both audio
 * decoders (under a codec and channel count taken from the last byte), and
 * the results are checked for consistency, not only for crashes:
 *   - a failure carries a known code and a NUL-terminated, non-empty
 *     sentence, and the server can always send it back (write_error works
 *     and parses as the same code);
 *   - a client message that parses is written back by the client writer
 *     (the writer accepts all the parser accepts) and parses to the same
 *     text again (write -> parse -> write is a fixed point); a start either
 *     resolves against drums/bass/vocals/other or fails as unknown_stem;
 *   - a server message that parses and is written again parses again;
 *   - an audio message that decodes has a payload inside the message and,
 *     for PCM, a whole number of frames; its header re-encodes to the same
 *     bytes (audio_in) or the same fields (audio_out).
 * Any violation calls __builtin_trap().
 *
 * Build and run: scripts/fuzz.sh [SECONDS] (clang, -DDEMIX_FUZZ=ON); seeds
 * come from fuzz_protocol_seeds, tokens from fuzz_protocol.dict.
 */
#include <stdint.h>
#include <string.h>

#include "protocol.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            __builtin_trap();                                                  \
    } while (0)

static const char SOURCES[4][DEMIX_PROTO_NAME_BYTES] = {"drums", "bass",
                                                        "vocals", "other"};

static void check_error(int rc, const demix_proto_error *e)
{
    CHECK(rc == DEMIX_EPROTOCOL);
    CHECK(e->code > DEMIX_PROTO_ERR_NONE && e->code < DEMIX_PROTO_ERR_UNKNOWN);
    CHECK(memchr(e->message, '\0', sizeof e->message) && e->message[0]);
    CHECK(memchr(e->field, '\0', sizeof e->field));
    /* the server sends every parse error back as-is */
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    CHECK(demix_proto_write_error(e, buf, sizeof buf, &len) == DEMIX_OK);
    demix_proto_server_msg m;
    demix_proto_error pe;
    CHECK(demix_proto_parse_server(buf, len, &m, &pe) == DEMIX_OK);
    CHECK(m.type == DEMIX_PROTO_ERROR && m.error.code == e->code);
}

static void client_text(const uint8_t *data, size_t size)
{
    static demix_proto_client_msg m, m2;
    demix_proto_error e;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1], buf2[sizeof buf];
    size_t len = 0, len2 = 0;
    int rc = demix_proto_parse_client((const char *)data, size, &m, &e);
    if (rc != DEMIX_OK) {
        check_error(rc, &e);
        CHECK(m.type == DEMIX_PROTO_NONE);
        return;
    }
    CHECK(e.code == DEMIX_PROTO_ERR_NONE);
    switch (m.type) {
    case DEMIX_PROTO_START:
        CHECK(demix_proto_write_start(&m.start, buf, sizeof buf, &len) ==
              DEMIX_OK);
        rc = demix_proto_start_resolve(&m.start, SOURCES, 4, &e);
        if (rc != DEMIX_OK) {
            check_error(rc, &e);
            CHECK(e.code == DEMIX_PROTO_ERR_UNKNOWN_STEM);
        }
        break;
    case DEMIX_PROTO_GAINS: {
        CHECK(demix_proto_write_gains(&m.gains, buf, sizeof buf, &len) ==
              DEMIX_OK);
        float g[4] = {1, 1, 1, 1};
        rc = demix_proto_gains_apply(&m.gains, SOURCES, 4, g, &e);
        if (rc != DEMIX_OK)
            check_error(rc, &e);
        break;
    }
    case DEMIX_PROTO_END:
        CHECK(demix_proto_write_end(buf, sizeof buf, &len) == DEMIX_OK);
        break;
    case DEMIX_PROTO_STATS:
        CHECK(demix_proto_write_stats_request(buf, sizeof buf, &len) ==
              DEMIX_OK);
        break;
    default:
        __builtin_trap();
    }
    for (int s = DEMIX_PROTO_STATE_IDLE; s <= DEMIX_PROTO_STATE_ENDING; s++) {
        rc = demix_proto_check_order((demix_proto_state)s, DEMIX_PROTO_MODE_MIX,
                                     m.type, &e);
        if (rc != DEMIX_OK)
            check_error(rc, &e);
    }
    /* write -> parse -> write is a fixed point */
    CHECK(demix_proto_parse_client(buf, len, &m2, &e) == DEMIX_OK);
    CHECK(m2.type == m.type);
    switch (m2.type) {
    case DEMIX_PROTO_START:
        CHECK(demix_proto_write_start(&m2.start, buf2, sizeof buf2, &len2) ==
              DEMIX_OK);
        break;
    case DEMIX_PROTO_GAINS:
        CHECK(demix_proto_write_gains(&m2.gains, buf2, sizeof buf2, &len2) ==
              DEMIX_OK);
        break;
    default:
        memcpy(buf2, buf, len + 1);
        len2 = len;
    }
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
}

static void server_text(const uint8_t *data, size_t size)
{
    static demix_proto_server_msg m, m2;
    demix_proto_error e;
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len = 0;
    int rc = demix_proto_parse_server((const char *)data, size, &m, &e);
    if (rc != DEMIX_OK) {
        check_error(rc, &e);
        CHECK(m.type == DEMIX_PROTO_NONE);
        return;
    }
    /* lenient parsing may accept what the strict writers refuse (EARG);
     * what they write must parse again */
    switch (m.type) {
    case DEMIX_PROTO_READY:
        rc = demix_proto_write_ready(&m.ready, buf, sizeof buf, &len);
        break;
    case DEMIX_PROTO_ERROR:
        rc = demix_proto_write_error(&m.error, buf, sizeof buf, &len);
        break;
    case DEMIX_PROTO_STATS:
        rc = demix_proto_write_stats(&m.stats, buf, sizeof buf, &len);
        break;
    case DEMIX_PROTO_SUMMARY:
        rc = demix_proto_write_summary(&m.summary, buf, sizeof buf, &len);
        break;
    default:
        __builtin_trap();
    }
    CHECK(rc == DEMIX_OK || rc == DEMIX_EARG);
    if (rc == DEMIX_OK) {
        CHECK(demix_proto_parse_server(buf, len, &m2, &e) == DEMIX_OK);
        CHECK(m2.type == m.type);
    }
}

static void audio(const uint8_t *data, size_t size)
{
    uint8_t sel = size ? data[size - 1] : 0;
    demix_proto_codec codec = (demix_proto_codec)(sel % 3);
    int channels = 1 + (sel >> 2) % 2;
    /* mostly the message's own sequence number, sometimes 0 */
    uint32_t seq = size >= 8 && !(sel & 0x40)
                       ? (uint32_t)data[4] | (uint32_t)data[5] << 8 |
                             (uint32_t)data[6] << 16 | (uint32_t)data[7] << 24
                       : 0;
    demix_proto_error e;
    size_t fb = demix_proto_frame_bytes(codec, channels);

    demix_proto_audio_in in;
    int rc =
        demix_proto_audio_in_decode(data, size, codec, channels, seq, &in, &e);
    if (rc == DEMIX_OK) {
        CHECK(in.payload == data + DEMIX_PROTO_AUDIO_IN_HEADER_BYTES);
        CHECK(in.payload_bytes == size - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES);
        CHECK(in.payload_bytes > 0);
        CHECK(fb ? in.frames * fb == in.payload_bytes : in.frames == 0);
        uint8_t hdr[DEMIX_PROTO_AUDIO_IN_HEADER_BYTES];
        CHECK(demix_proto_audio_in_write_header(&in, hdr, sizeof hdr) ==
              DEMIX_OK);
        CHECK(memcmp(hdr, data, sizeof hdr) == 0);
    } else {
        check_error(rc, &e);
        CHECK(e.code == DEMIX_PROTO_ERR_BAD_AUDIO ||
              e.code == DEMIX_PROTO_ERR_TOO_LARGE);
    }

    demix_proto_audio_out out;
    rc = demix_proto_audio_out_decode(data, size, codec, channels, seq, &out,
                                      &e);
    if (rc == DEMIX_OK) {
        CHECK(out.payload == data + DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES);
        CHECK(out.payload_bytes == size - DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES);
        CHECK(out.payload_bytes > 0 && out.frames > 0);
        CHECK(!fb || (size_t)out.frames * fb == out.payload_bytes);
        demix_proto_audio_out h = out;
        h.flags &= DEMIX_PROTO_FLAG_LAST; /* the reader ignores the rest */
        uint8_t hdr[DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES];
        CHECK(demix_proto_audio_out_write_header(&h, hdr, sizeof hdr) ==
              DEMIX_OK);
        /* equal but for undefined flag bits and the reserved bytes */
        CHECK(memcmp(hdr, data, 3) == 0);
        CHECK(hdr[3] == (data[3] & DEMIX_PROTO_FLAG_LAST));
        CHECK(memcmp(hdr + 4, data + 4, 5) == 0);
        CHECK(memcmp(hdr + 12, data + 12, 12) == 0);
    } else {
        check_error(rc, &e);
        CHECK(e.code == DEMIX_PROTO_ERR_BAD_AUDIO ||
              e.code == DEMIX_PROTO_ERR_TOO_LARGE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client_text(data, size);
    server_text(data, size);
    audio(data, size);
    return 0;
}
