/*
 * test_loadgen_verify.c - tools/loadgen_verify.c: the Opus packet check
 * and the comparison of sampled loadgen sessions with the reference.
 *
 * Cases: bad arguments are DEMIX_EARG; a recorded reference is complete
 * only when every stem holds all its positions; a session sending the
 * reference's samples is identical; one with a known error has the SNR
 * that error gives (within 0.01 dB) and is a mismatch exactly when that
 * is below the threshold; one that stops early is incomplete, neither
 * identical nor a mismatch; positions beyond the compared span are
 * ignored; Opus: a real packet passes the check and decodes to the
 * reference it recorded, a wrong frame count or a garbage packet fails
 * the check with a sentence.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <opus/opus.h>

#include "loadgen_verify.h"

#define RATE 48000
#define FRAMES 4800 /* compared per stem */
#define CH 2

/* An audio_out header over a PCM16 payload of `frames` frames. */
static demix_proto_audio_out pcm16_msg(uint8_t *payload, const float *x,
                                       int frames, uint64_t pos)
{
    for (int i = 0; i < frames * CH; i++) {
        long v = lroundf(x[i] * 32768.0f);
        v = v > 32767 ? 32767 : (v < -32768 ? -32768 : v);
        payload[2 * i] = (uint8_t)((uint16_t)v & 0xff);
        payload[2 * i + 1] = (uint8_t)((uint16_t)v >> 8);
    }
    demix_proto_audio_out h = {.codec = DEMIX_PROTO_CODEC_PCM_S16,
                               .frames = (uint32_t)frames,
                               .position = pos,
                               .payload = payload,
                               .payload_bytes = (size_t)frames * CH * 2};
    return h;
}

static void signal_into(float *x, int frames, double hz, double amp)
{
    for (int i = 0; i < frames; i++)
        for (int c = 0; c < CH; c++)
            x[i * CH + c] = (float)(amp * sin(6.283185307179586 * hz * i / RATE));
}

/* Feed `frames` frames of x (PCM16, in 480-frame messages) to stem slot. */
static void feed(loadgen_verifier *v, int slot, const float *x, int frames)
{
    uint8_t payload[480 * CH * 2];
    char why[160];
    for (int at = 0; at < frames; at += 480) {
        int n = frames - at < 480 ? frames - at : 480;
        demix_proto_audio_out h = pcm16_msg(payload, x + at * CH, n, (uint64_t)at);
        assert_int_equal(loadgen_verifier_add(v, slot, &h, why, sizeof why),
                         DEMIX_OK);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    loadgen_reference *r;
    assert_int_equal(loadgen_reference_create(0, CH, FRAMES, &r), DEMIX_EARG);
    assert_int_equal(loadgen_reference_create(2, 3, FRAMES, &r), DEMIX_EARG);
    assert_int_equal(loadgen_reference_create(2, CH, 0, &r), DEMIX_EARG);
    assert_null(r);
    assert_int_equal(loadgen_reference_create(2, CH, FRAMES, &r), DEMIX_OK);
    loadgen_verifier *v;
    assert_int_equal(loadgen_verifier_create(NULL, 0, DEMIX_PROTO_CODEC_PCM_S16,
                                             RATE, CH, &v),
                     DEMIX_EARG);
    assert_int_equal(loadgen_verifier_create(r, 0, DEMIX_PROTO_CODEC_PCM_S16,
                                             RATE, 1, &v),
                     DEMIX_EARG);
    assert_null(v);
    loadgen_reference_destroy(r);
    loadgen_reference_destroy(NULL);
    loadgen_verifier_destroy(NULL);
}

static void test_pcm_comparison(void **state)
{
    (void)state;
    float *x = malloc(sizeof(float) * FRAMES * CH * 2);
    float *y = malloc(sizeof(float) * FRAMES * CH * 2);
    assert_non_null(x);
    assert_non_null(y);
    signal_into(x, FRAMES * 2, 440.0, 0.5);

    loadgen_reference *r;
    assert_int_equal(loadgen_reference_create(2, CH, FRAMES, &r), DEMIX_OK);
    loadgen_verifier *rec;
    assert_int_equal(loadgen_verifier_create(r, 1, DEMIX_PROTO_CODEC_PCM_S16,
                                             RATE, CH, &rec),
                     DEMIX_OK);
    feed(rec, 0, x, FRAMES * 2); /* beyond the span: ignored */
    assert_false(loadgen_reference_complete(r));
    feed(rec, 1, x, FRAMES);
    assert_true(loadgen_reference_complete(r));
    assert_int_equal(loadgen_reference_frames(r), FRAMES);
    loadgen_verifier_destroy(rec);

    /* the same samples: identical */
    loadgen_verifier *v;
    loadgen_verify_result res;
    assert_int_equal(loadgen_verifier_create(r, 0, DEMIX_PROTO_CODEC_PCM_S16,
                                             RATE, CH, &v),
                     DEMIX_OK);
    feed(v, 0, x, FRAMES);
    feed(v, 1, x, FRAMES * 2);
    loadgen_verifier_result(v, 60.0, &res);
    assert_true(res.sampled && res.complete && res.identical);
    assert_false(res.mismatch);
    assert_int_equal(res.compared_frames, 2 * FRAMES);
    loadgen_verifier_destroy(v);

    /* stem 1 off by a tone 0.01 of the signal's amplitude: 40 dB */
    signal_into(y, FRAMES, 440.0, 0.5);
    for (int i = 0; i < FRAMES * CH; i++)
        y[i] += (float)(0.005 * sin(6.283185307179586 * 1000.0 * (i / CH) / RATE));
    for (int pass = 0; pass < 2; pass++) {
        double threshold = pass == 0 ? 60.0 : 30.0;
        assert_int_equal(loadgen_verifier_create(
                             r, 0, DEMIX_PROTO_CODEC_PCM_S16, RATE, CH, &v),
                         DEMIX_OK);
        feed(v, 0, x, FRAMES);
        feed(v, 1, y, FRAMES);
        loadgen_verifier_result(v, threshold, &res);
        assert_true(res.complete);
        assert_false(res.identical);
        if (fabs(res.snr_db - 40.0) > 0.05)
            fail_msg("SNR %.3f dB, expected 40 dB", res.snr_db);
        assert_int_equal(res.mismatch, pass == 0);
        loadgen_verifier_destroy(v);
    }

    /* a session that stops early: incomplete, neither */
    assert_int_equal(loadgen_verifier_create(r, 0, DEMIX_PROTO_CODEC_PCM_S16,
                                             RATE, CH, &v),
                     DEMIX_OK);
    feed(v, 0, x, FRAMES);
    feed(v, 1, y, FRAMES / 2);
    loadgen_verifier_result(v, 60.0, &res);
    assert_false(res.complete);
    assert_false(res.identical);
    assert_false(res.mismatch);
    loadgen_verifier_destroy(v);

    loadgen_reference_destroy(r);
    free(x);
    free(y);
}

static void test_opus(void **state)
{
    (void)state;
    enum { PACKET = 960, PACKETS = 10 };
    int e;
    OpusEncoder *enc =
        opus_encoder_create(RATE, CH, OPUS_APPLICATION_AUDIO, &e);
    assert_non_null(enc);
    float x[PACKET * CH];
    uint8_t packets[PACKETS][1500];
    int bytes[PACKETS];
    for (int p = 0; p < PACKETS; p++) {
        for (int i = 0; i < PACKET; i++)
            for (int c = 0; c < CH; c++)
                x[i * CH + c] = (float)(0.3 * sin(6.283185307179586 * 330.0 *
                                                  (p * PACKET + i) / RATE));
        bytes[p] = opus_encode_float(enc, x, PACKET, packets[p], 1500);
        assert_true(bytes[p] > 0);
    }
    opus_encoder_destroy(enc);

    char why[160];
    assert_int_equal(loadgen_opus_packet_check(packets[0], (size_t)bytes[0],
                                               RATE, PACKET, why, sizeof why),
                     DEMIX_OK);
    assert_int_equal(loadgen_opus_packet_check(packets[0], (size_t)bytes[0],
                                               RATE, PACKET / 2, why,
                                               sizeof why),
                     DEMIX_EFORMAT);
    assert_non_null(strstr(why, "header says 480"));
    const uint8_t garbage[3] = {0xff, 0xff, 0xff}; /* code 3, bad count */
    assert_int_equal(loadgen_opus_packet_check(garbage, 0, RATE, PACKET, why,
                                               sizeof why),
                     DEMIX_EFORMAT);
    assert_int_equal(loadgen_opus_packet_check(garbage, sizeof garbage, RATE,
                                               PACKET, why, sizeof why),
                     DEMIX_EFORMAT);
    assert_true(strlen(why) > 0);

    /* Recorded, then compared: the same packets are identical. */
    loadgen_reference *r;
    int64_t span = (int64_t)(PACKETS - 1) * PACKET - 312;
    assert_int_equal(loadgen_reference_create(1, CH, span, &r), DEMIX_OK);
    for (int role = 1; role >= 0; role--) {
        loadgen_verifier *v;
        assert_int_equal(loadgen_verifier_create(r, role, DEMIX_PROTO_CODEC_OPUS,
                                                 RATE, CH, &v),
                         DEMIX_OK);
        loadgen_verifier_set_pre_skip(v, 312);
        for (int p = 0; p < PACKETS; p++) {
            demix_proto_audio_out h = {.codec = DEMIX_PROTO_CODEC_OPUS,
                                       .frames = PACKET,
                                       .position = (uint64_t)p * PACKET,
                                       .payload = packets[p],
                                       .payload_bytes = (size_t)bytes[p]};
            assert_int_equal(loadgen_verifier_add(v, 0, &h, why, sizeof why),
                             DEMIX_OK);
        }
        if (role == 1) {
            assert_true(loadgen_reference_complete(r));
        } else {
            loadgen_verify_result res;
            loadgen_verifier_result(v, 20.0, &res);
            assert_true(res.complete && res.identical);
        }
        loadgen_verifier_destroy(v);
    }
    loadgen_reference_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_pcm_comparison),
        cmocka_unit_test(test_opus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
