/*
 * fuzz_protocol_seeds.c - writes the seed corpus of fuzz_protocol into the
 * directory given as argv[1]: one valid message of every JSON kind (client
 * and server) and valid audio_in / audio_out messages whose last byte
 * selects, in the fuzz target, the codec and channel count they were made
 * for. A plain program (no libFuzzer), run by scripts/fuzz.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "protocol.h"

static const char SOURCES[4][DEMIX_PROTO_NAME_BYTES] = {"drums", "bass",
                                                        "vocals", "other"};

static int save(const char *dir, const char *name, const void *data,
                size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size) {
        fprintf(stderr, "fuzz_protocol_seeds: cannot write %s\n", path);
        if (f)
            fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_protocol_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    int bad = 0;

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
    s.has_token = 1;
    strcpy(s.token, "secret");
    bad |= demix_proto_write_start(&s, buf, sizeof buf, &len) ||
           save(dir, "start_stems.json", buf, len);
    s.sample_rate_hz = 48000;
    s.input_codec = s.output_codec = DEMIX_PROTO_CODEC_OPUS;
    s.opus_bitrate_bps = 96000;
    s.opus_frame_ms = 10;
    s.mode = DEMIX_PROTO_MODE_MIX;
    s.stem_count = 0;
    s.gain_count = 2;
    strcpy(s.gains[0].name, "vocals");
    s.gains[0].gain = 0.0f;
    strcpy(s.gains[1].name, "bass");
    s.gains[1].gain = 1.5f;
    s.has_token = 0;
    bad |= demix_proto_write_start(&s, buf, sizeof buf, &len) ||
           save(dir, "start_mix.json", buf, len);
    demix_proto_gains g = {.count = 1};
    strcpy(g.gains[0].name, "other");
    g.gains[0].gain = 0.25f;
    bad |= demix_proto_write_gains(&g, buf, sizeof buf, &len) ||
           save(dir, "gains.json", buf, len);
    bad |= demix_proto_write_end(buf, sizeof buf, &len) ||
           save(dir, "end.json", buf, len);
    bad |= demix_proto_write_stats_request(buf, sizeof buf, &len) ||
           save(dir, "stats_request.json", buf, len);

    demix_proto_ready r;
    memset(&r, 0, sizeof r);
    strcpy(r.session, "a1b2c3d4");
    strcpy(r.model_name, "hstasnet");
    r.model_rate_hz = 44100;
    r.hop_samples = 512;
    r.window_samples = 1024;
    r.latency_samples = 1024;
    r.source_count = 4;
    memcpy(r.sources, SOURCES, sizeof SOURCES);
    r.client_rate_hz = 48000;
    r.channels = 2;
    r.input_codec = DEMIX_PROTO_CODEC_PCM_F32;
    r.output_codec = DEMIX_PROTO_CODEC_OPUS;
    r.opus_bitrate_bps = 128000;
    r.opus_frame_ms = 20;
    r.opus_pre_skip_frames = 312;
    r.latency_frames = 1200;
    r.mode = DEMIX_PROTO_MODE_STEMS;
    r.stem_count = 2;
    r.stem_source[0] = 2;
    r.stem_source[1] = 0;
    bad |= demix_proto_write_ready(&r, buf, sizeof buf, &len) ||
           save(dir, "ready_stems.json", buf, len);
    r.mode = DEMIX_PROTO_MODE_MIX;
    for (int i = 0; i < 4; i++)
        r.source_gain[i] = 0.5f * (float)i;
    bad |= demix_proto_write_ready(&r, buf, sizeof buf, &len) ||
           save(dir, "ready_mix.json", buf, len);
    /* regression (2026-12-02): a ready whose sources repeat a name, with
     * mix gains; the parser must refuse it (the writer wrote gains keyed
     * twice, which the parser then refused) */
    {
        static const char twice[] =
            "{\"type\":\"ready\",\"version\":1,\"session\":\"a1b2c3d4\","
            "\"model\":{\"name\":\"hstasnet\",\"sample_rate\":44100,"
            "\"hop\":512,\"window\":1024,\"latency_samples\":1024,"
            "\"latency_ms\":23.2,\"sources\":[\"drums\",\"bass\",\"vocals\","
            "\"other\",\"bass\"]},\"client_rate\":48000,\"channels\":2,"
            "\"input\":{\"codec\":\"pcm_f32\"},\"output\":{\"codec\":"
            "\"pcm_f32\"},\"latency_frames\":1200,\"latency_ms\":25,"
            "\"mix\":{\"gains\":{\"drums\":0,\"bass\":0.5}},\"limits\":"
            "{\"text_bytes\":4096,\"binary_bytes\":65536}}";
        bad |= save(dir, "ready_sources_twice.json", twice, sizeof twice - 1);
    }
    demix_proto_error e = {.code = DEMIX_PROTO_ERR_BAD_FIELD};
    strcpy(e.field, "output.codec");
    strcpy(e.message, "Unknown codec 'mp3'.");
    bad |= demix_proto_write_error(&e, buf, sizeof buf, &len) ||
           save(dir, "error.json", buf, len);
    demix_proto_stats st = {.sessions = 2,
                            .max_sessions = 8,
                            .hops = 1000,
                            .step_ms_p50 = 1.5,
                            .step_ms_p99 = 4.0,
                            .batch_mean = 1.8,
                            .uptime_s = 60.0,
                            .has_session = 1,
                            .session_hops = 10};
    strcpy(st.session, "a1b2c3d4");
    bad |= demix_proto_write_stats(&st, buf, sizeof buf, &len) ||
           save(dir, "stats.json", buf, len);
    demix_proto_summary su = {.input_frames = 44100,
                              .output_frames = 44100,
                              .duration_s = 1.0,
                              .wall_s = 0.5,
                              .hops = 87};
    strcpy(su.session, "a1b2c3d4");
    bad |= demix_proto_write_summary(&su, buf, sizeof buf, &len) ||
           save(dir, "summary.json", buf, len);

    /* binary: the last byte picks codec (sel % 3) and channels in the
     * target; these seeds end in a byte that matches their header */
    uint8_t bin[DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES + 16];
    demix_proto_audio_in ai = {.codec = DEMIX_PROTO_CODEC_PCM_S16, .seq = 3};
    bad |= demix_proto_audio_in_write_header(&ai, bin, sizeof bin);
    memset(bin + 8, 0, 8);
    bin[15] = 0x00; /* s16, mono: 4 frames */
    bad |= save(dir, "audio_in_s16.bin", bin, 16);
    ai.codec = DEMIX_PROTO_CODEC_OPUS;
    bad |= demix_proto_audio_in_write_header(&ai, bin, sizeof bin);
    bin[8] = 0xFC; /* an Opus TOC byte */
    bin[9] = 0x02;
    bad |= save(dir, "audio_in_opus.bin", bin, 10);
    demix_proto_audio_out ao = {.codec = DEMIX_PROTO_CODEC_PCM_F32,
                                .flags = DEMIX_PROTO_FLAG_LAST,
                                .stem = 2,
                                .seq = 9,
                                .frames = 4,
                                .position = 4096};
    bad |= demix_proto_audio_out_write_header(&ao, bin, sizeof bin);
    memset(bin + 24, 0, 16);
    bin[39] = 0x01; /* f32, mono: 4 frames of 4 bytes */
    bad |= save(dir, "audio_out_f32.bin", bin, 40);
    return bad ? 1 : 0;
}
