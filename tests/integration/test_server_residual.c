/*
 * test_server_residual.c - demixd's stems add up to the input (the
 * mixture-consistency projection, docs/model.md), so that a client that
 * plays every stem at unit gain, or asks for the mix with every gain 1,
 * hears the original: one server on tests/data/tiny.safetensors (random
 * weights, 44.1 kHz, CPU engine), clients at the model's rate, fresh
 * seeded input (white noise and tones, about -14 dBFS RMS, one channel
 * louder than the other). The residual is 10 log10(sum (x - sum_t s_t)^2 /
 * sum x^2) over the whole stream, both channels.
 *
 * Cases: (a) PCM f32 stems: at most -60 dB (float rounding gives about
 * -140); (b) PCM s16 stems: each stem is rounded to 16 bits on its own, so
 * |x - sum_t s_t| <= T/2 = 2 steps of 2^-15 per sample (no stem clips at
 * this level) and the residual is about T/12 steps^2 of noise, -95 dBFS
 * (about -80 dB here; -60 dB holds for input above about -35 dBFS RMS,
 * so the bar is for normal levels, not for quiet passages); (c) the
 * mix with every gain 1, f32 (at most -60 dB) and s16 (within half a step);
 * (d) the file API: a 16-bit WAV in, the four 16-bit WAV stems of the ZIP
 * summed: within 2 steps, at most -60 dB; (e) a client at 48 kHz (the
 * server resamples both ways; resampling is linear, so the stems still
 * add up to the input resampled there and back): content below 10 kHz
 * (fx_make_signal) comes back to float rounding (at most -60 dB; about
 * -130 measured), white noise does not: the sum lacks what the input has
 * above the model's band and in the resamplers' transition band (printed:
 * about -10 dB).
 */
#include "testutil.h"
#include "audio_files.h"
#include "zip_read.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>

#include "server_fixture.h"

#define RATE 44100 /* tiny.safetensors' */
#define SOURCES 4
#define BAR_DB (-60.0)
#define S16_STEP (1.0 / 32768.0)

static struct {
    char dir[256];
    server_fixture fx;
    int started;
    uint64_t seed;
} g;

static const char *const all_stems[] = {"drums", "bass", "vocals", "other",
                                        NULL};

typedef struct residual {
    double db, max_abs;
} residual;

/* The residual of n samples of planes[0..count-1] summed against x. */
static residual residual_of(const float *x, const float *const *planes,
                            int count, int64_t n)
{
    double err = 0, sig = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double sum = 0;
        for (int p = 0; p < count; p++)
            sum += planes[p][i];
        double d = (double)x[i] - sum;
        err += d * d;
        sig += (double)x[i] * x[i];
        mx = fmax(mx, fabs(d));
    }
    residual r = {err > 0 ? 10.0 * log10(err / sig) : -INFINITY, mx};
    return r;
}

/* One stream: the stems (or the mix, stems NULL) of x, summed against x. */
static residual stream_residual(int rate, demix_proto_codec codec,
                                const char *const *stems, const float *x,
                                int64_t frames)
{
    demix_proto_start st;
    fx_start_init(&st, rate, 2, codec, codec, stems);
    fx_session s;
    assert_int_equal(fx_session_open(&s, g.fx.port, &st), 0);
    int rc = fx_session_run(&s, x, frames, 4096);
    if (rc)
        fx_session_print(&s, "residual");
    assert_int_equal(rc, 0);
    assert_int_equal((int64_t)s.summary.output_frames, frames);
    const float *planes[SOURCES];
    int count = stems ? SOURCES : 1;
    for (int p = 0; p < count; p++) {
        const fx_track *tr =
            fx_session_track(&s, stems ? p : DEMIX_PROTO_STEM_MIX);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        planes[p] = tr->x;
    }
    residual r = residual_of(x, planes, count, frames * 2);
    fx_session_free(&s);
    return r;
}

static void print_residual(const char *what, residual r)
{
    print_message("%s: residual %.1f dB, max |x - sum| %.3g (%.2f 16-bit "
                  "steps)\n",
                  what, r.db, r.max_abs, r.max_abs / S16_STEP);
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
    if (server_fixture_start(&g.fx, demix_test_data_path("tiny.safetensors"),
                             "--max-sessions", "4", (const char *)NULL))
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

/* (a) */
static void test_stream_f32_stems(void **state)
{
    (void)state;
    int64_t frames = 2 * RATE + 333;
    float *x = demix_test_noisy_signal(RATE, 2, frames, g.seed);
    residual r =
        stream_residual(RATE, DEMIX_PROTO_CODEC_PCM_F32, all_stems, x, frames);
    print_residual("stream f32 stems", r);
    assert_true(r.db <= BAR_DB);
    free(x);
}

/* (b) */
static void test_stream_s16_stems(void **state)
{
    (void)state;
    int64_t frames = 2 * RATE + 55;
    float *x = demix_test_noisy_signal(RATE, 2, frames, g.seed + 1);
    for (int64_t i = 0; i < frames * 2; i++) /* what s16 carries */
        x[i] = roundf(x[i] * 32768.0f) / 32768.0f;
    residual r =
        stream_residual(RATE, DEMIX_PROTO_CODEC_PCM_S16, all_stems, x, frames);
    print_residual("stream s16 stems", r);
    assert_true(r.max_abs <= (SOURCES * 0.5 + 0.01) * S16_STEP);
    assert_true(r.db <= BAR_DB);
    free(x);
}

/* (c) */
static void test_stream_mix_unit_gains(void **state)
{
    (void)state;
    int64_t frames = RATE + 4097;
    float *x = demix_test_noisy_signal(RATE, 2, frames, g.seed + 2);
    residual f = stream_residual(RATE, DEMIX_PROTO_CODEC_PCM_F32, NULL, x,
                                 frames);
    print_residual("stream f32 mix", f);
    assert_true(f.db <= BAR_DB);
    for (int64_t i = 0; i < frames * 2; i++)
        x[i] = roundf(x[i] * 32768.0f) / 32768.0f;
    residual s = stream_residual(RATE, DEMIX_PROTO_CODEC_PCM_S16, NULL, x,
                                 frames);
    print_residual("stream s16 mix", s);
    assert_true(s.max_abs <= 0.51 * S16_STEP);
    assert_true(s.db <= BAR_DB);
    free(x);
}

/* (d) */
static void test_file_api_stems(void **state)
{
    (void)state;
    int64_t frames = 2 * RATE + 999;
    float *x = demix_test_noisy_signal(RATE, 2, frames, g.seed + 3);
    char path[512];
    snprintf(path, sizeof path, "%s/in.wav", g.dir);
    demix_test_write_audio(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, RATE, 2, x,
                           frames);
    free(x);
    SF_INFO ii;
    float *in = demix_test_read_audio(path, &ii); /* as 16 bits hold it */
    assert_int_equal(ii.frames, frames);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *body = malloc(8u << 20);
    assert_non_null(body);
    size_t n = fread(body, 1, 8u << 20, f);
    fclose(f);
    wst_http_response r;
    assert_int_equal(wst_http(g.fx.port, "POST", "/v1/separate", "audio/wav",
                              body, n, &r, FX_TIMEOUT_MS),
                     0);
    assert_int_equal(r.status, 200);
    zip_entry e[8];
    int count = zip_parse(r.body, r.body_len, e, 8);
    assert_int_equal(count, SOURCES);
    float *stem[SOURCES];
    for (int t = 0; t < SOURCES; t++) {
        const zip_entry *z = zip_find(e, count, all_stems[t]);
        assert_non_null(z);
        SF_INFO info;
        stem[t] = demix_test_read_zip_audio(z, g.dir, &info);
        assert_int_equal(info.frames, frames);
        assert_int_equal(info.channels, 2);
        assert_int_equal(info.samplerate, RATE);
    }
    residual res = residual_of(in, (const float *const *)stem, SOURCES,
                               frames * 2);
    print_residual("file API 16-bit WAV stems", res);
    assert_true(res.max_abs <= (SOURCES * 0.5 + 0.01) * S16_STEP);
    assert_true(res.db <= BAR_DB);
    for (int t = 0; t < SOURCES; t++)
        free(stem[t]);
    wst_http_response_free(&r);
    free(body);
    free(in);
}

/* (e) */
static void test_other_rate_is_reported(void **state)
{
    (void)state;
    const int rate = 48000;
    int64_t frames = 2 * rate + 71;
    float *x = demix_test_noisy_signal(rate, 2, frames, g.seed + 4);
    residual wide =
        stream_residual(rate, DEMIX_PROTO_CODEC_PCM_F32, all_stems, x, frames);
    print_residual("48 kHz client, white noise (f32 stems)", wide);
    free(x);
    x = fx_make_signal(rate, 2, frames, g.seed + 5);
    residual band =
        stream_residual(rate, DEMIX_PROTO_CODEC_PCM_F32, all_stems, x, frames);
    print_residual("48 kHz client, content below 10 kHz (f32 stems)", band);
    assert_true(band.db <= BAR_DB);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_f32_stems),
        cmocka_unit_test(test_stream_s16_stems),
        cmocka_unit_test(test_stream_mix_unit_gains),
        cmocka_unit_test(test_file_api_stems),
        cmocka_unit_test(test_other_rate_is_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
