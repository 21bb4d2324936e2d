/*
 * test_server_file.c - demixd's file API: POST /v1/separate with an audio
 * file as the body returns the stems in one ZIP (stored entries), and its
 * limits give clear errors.
 *
 * The server runs an identity model at 48 kHz (every source is the input
 * times FX_IDENTITY_GAIN, server_fixture.h), so each returned stem must
 * equal the uploaded audio times that gain: same length, rate and
 * channels, equal to 16-bit rounding. The ZIP is parsed here from
 * its central directory (entry names, stored method, sizes, CRC-32), each
 * WAV entry is read with libsndfile.
 *
 * Cases: (a) a 48 kHz stereo WAV: four stems; (b) a 44.1 kHz mono FLAC
 * with ?stems=vocals,drums: two stems, resampled both ways (aligned: SNR);
 * (b') format=flac and format=opus: the entries are FLAC and Ogg Opus of
 * the right length, rate and channels (SNR against the input);
 * (c) limits: a body over --max-file-mb gets 413; audio longer than
 * --max-file-seconds and a body that is not audio get a 4xx with a
 * sentence; an unknown stem gets 400; GET is not allowed.
 */
#include "testutil.h"
#include "audio_files.h"
#include "zip_read.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sndfile.h>

#include "server_fixture.h"

#define RATE 48000

static struct {
    char dir[256];
    char model[512];
    server_fixture fx;
    int started;
    uint64_t seed;
} g;

static const char *const sources[] = {"drums", "bass", "vocals", "other"};

/* ---------------------------------------------------------- audio */

static uint8_t *file_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* An audio entry of the response, decoded. */
static float *read_entry(const zip_entry *e, SF_INFO *info)
{
    return demix_test_read_zip_audio(e, g.dir, info);
}

static int post(const char *query, const char *type, const void *body,
                size_t n, wst_http_response *r)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/separate%s", query);
    int rc = wst_http(g.fx.port, "POST", path, type, body, n, r, FX_TIMEOUT_MS);
    char ct[128] = "";
    wst_http_header(r, "Content-Type", ct, sizeof ct);
    print_message("POST %s (%zu bytes) -> %d %s, %zu bytes%s%.300s\n", path, n,
                  r->status, ct, r->body_len,
                  r->status >= 400 && r->body ? ": " : "",
                  r->status >= 400 && r->body ? (const char *)r->body : "");
    return rc;
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
    snprintf(g.model, sizeof g.model, "%s/identity48k.safetensors", g.dir);
    if (fx_save_identity_model(g.model, RATE, g.seed))
        return -1;
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "4",
                             "--max-file-mb", "1", "--max-file-seconds", "4",
                             (const char *)NULL))
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
static void test_wav_round_trip(void **state)
{
    (void)state;
    int64_t frames = 2 * RATE + 250;
    float *x = fx_make_signal(RATE, 2, frames, g.seed);
    char path[512];
    snprintf(path, sizeof path, "%s/in.wav", g.dir);
    demix_test_write_audio(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, RATE, 2, x, frames);
    free(x);
    SF_INFO ii;
    memset(&ii, 0, sizeof ii);
    SNDFILE *sf = sf_open(path, SFM_READ, &ii);
    assert_non_null(sf);
    float *in = malloc((size_t)frames * 2 * sizeof *in);
    assert_int_equal(sf_readf_float(sf, in, frames), frames);
    sf_close(sf);

    size_t n;
    uint8_t *body = file_bytes(path, &n);
    wst_http_response r;
    assert_int_equal(post("", "audio/wav", body, n, &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128] = "";
    assert_int_equal(wst_http_header(&r, "Content-Type", ct, sizeof ct), 0);
    assert_non_null(strstr(ct, "zip"));
    zip_entry e[16];
    int count = zip_parse(r.body, r.body_len, e, 16);
    for (int i = 0; i < count; i++)
        print_message("  entry %s (%zu bytes)\n", e[i].name, e[i].size);
    for (int t = 0; t < 4; t++) {
        const zip_entry *z = zip_find(e, count, sources[t]);
        assert_non_null(z);
        SF_INFO info;
        float *y = read_entry(z, &info);
        assert_int_equal(info.frames, frames);
        assert_int_equal(info.samplerate, RATE);
        assert_int_equal(info.channels, 2);
        double m = 0;
        for (int64_t i = 0; i < frames * 2; i++)
            m = fmax(m, fabs((double)y[i] - FX_IDENTITY_GAIN * in[i]));
        print_message("%s: max |stem - input / 4| = %.3g\n", sources[t], m);
        assert_true(m <= 1.0 / 32768 + 1e-7);
        free(y);
    }
    wst_http_response_free(&r);
    free(body);
    free(in);
}

/* (b) */
static void test_flac_mono_two_stems(void **state)
{
    (void)state;
    const int rate = 44100;
    int64_t frames = rate + 4321;
    float *x = fx_make_signal(rate, 1, frames, g.seed + 1);
    char path[512];
    snprintf(path, sizeof path, "%s/in.flac", g.dir);
    demix_test_write_audio(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, rate, 1, x, frames);
    size_t n;
    uint8_t *body = file_bytes(path, &n);
    wst_http_response r;
    assert_int_equal(post("?stems=vocals,drums", "audio/flac", body, n, &r), 0);
    assert_int_equal(r.status, 200);
    zip_entry e[16];
    int count = zip_parse(r.body, r.body_len, e, 16);
    assert_int_equal(count, 2);
    assert_null(zip_find(e, count, "bass"));
    assert_null(zip_find(e, count, "other"));
    for (int k = 0; k < 2; k++) {
        const zip_entry *z = zip_find(e, count, k ? "drums" : "vocals");
        assert_non_null(z);
        SF_INFO info;
        float *y = read_entry(z, &info);
        assert_int_equal(info.frames, frames);
        assert_int_equal(info.samplerate, rate);
        assert_int_equal(info.channels, 1);
        double sig = 0, err = 0;
        for (int64_t i = 0; i < frames; i++) {
            double want = FX_IDENTITY_GAIN * x[i];
            sig += want * want;
            err += ((double)y[i] - want) * ((double)y[i] - want);
        }
        double snr = 10 * log10(sig / fmax(err, 1e-30));
        print_message("%s: SNR %.1f dB against the input / 4\n", z->name, snr);
        assert_true(snr > 30.0);
        free(y);
    }
    wst_http_response_free(&r);
    free(body);
    free(x);
}

/* (b') FLAC and Opus output: same stems, length, rate and channels. */
static void test_output_formats(void **state)
{
    (void)state;
    int64_t frames = RATE + 999;
    float *x = fx_make_signal(RATE, 2, frames, g.seed + 3);
    char path[512];
    snprintf(path, sizeof path, "%s/fmt.wav", g.dir);
    demix_test_write_audio(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, RATE, 2, x, frames);
    size_t n;
    uint8_t *body = file_bytes(path, &n);
    const char *fmts[2] = {"flac", "opus"};
    for (int f = 0; f < 2; f++) {
        char q[64];
        snprintf(q, sizeof q, "?stems=bass&format=%s", fmts[f]);
        wst_http_response r;
        assert_int_equal(post(q, "audio/wav", body, n, &r), 0);
        assert_int_equal(r.status, 200);
        zip_entry e[16];
        int count = zip_parse(r.body, r.body_len, e, 16);
        assert_int_equal(count, 1);
        const zip_entry *z = zip_find_ext(e, count, "bass", fmts[f]);
        if (!z)
            print_error("no bass.%s entry (got %s)\n", fmts[f], e[0].name);
        assert_non_null(z);
        SF_INFO info;
        float *y = read_entry(z, &info);
        print_message("%s: %lld frames at %d Hz, %d channels\n", z->name,
                      (long long)info.frames, info.samplerate, info.channels);
        assert_int_equal(info.channels, 2);
        assert_int_equal(info.samplerate, RATE);
        assert_int_equal(info.frames, frames);
        double sig = 0, err = 0;
        for (int64_t i = 0; i < frames * 2; i++) {
            double want = FX_IDENTITY_GAIN * x[i];
            sig += want * want;
            err += ((double)y[i] - want) * ((double)y[i] - want);
        }
        double snr = 10 * log10(sig / fmax(err, 1e-30));
        print_message("%s: SNR %.1f dB against the input / 4\n", z->name,
                      snr);
        /* FLAC: 16-bit rounding of a stem at a quarter of the input's
         * level (about -24 dBFS RMS here): about 77 dB. */
        assert_true(snr > (f == 0 ? 70.0 : 15.0));
        free(y);
        wst_http_response_free(&r);
    }
    free(body);
    free(x);
}

/* (c) */
static void test_limits(void **state)
{
    (void)state;
    wst_http_response r;
    /* Over --max-file-mb 1. */
    size_t big = (size_t)3 << 19; /* 1.5 MiB */
    uint8_t *junk = calloc(big, 1);
    assert_non_null(junk);
    assert_int_equal(post("", "audio/wav", junk, big, &r), 0);
    assert_int_equal(r.status, 413);
    assert_true(r.body_len > 0);
    wst_http_response_free(&r);

    /* Not audio. */
    const char *text = "this is not an audio file";
    assert_int_equal(post("", "audio/wav", text, strlen(text), &r), 0);
    assert_true(r.status >= 400 && r.status < 500);
    assert_true(r.body_len > 0);
    wst_http_response_free(&r);

    /* Longer than --max-file-seconds 4 (8 kHz mono: small enough a body). */
    int64_t frames = 8000 * 6;
    float *x = fx_make_signal(8000, 1, frames, g.seed + 2);
    char path[512];
    snprintf(path, sizeof path, "%s/long.wav", g.dir);
    demix_test_write_audio(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 1, x, frames);
    free(x);
    size_t n;
    uint8_t *body = file_bytes(path, &n);
    assert_true(n < ((size_t)1 << 20));
    assert_int_equal(post("", "audio/wav", body, n, &r), 0);
    assert_true(r.status >= 400 && r.status < 500);
    assert_true(r.body_len > 0);
    wst_http_response_free(&r);

    /* An unknown stem. */
    assert_int_equal(post("?stems=guitar", "audio/wav", body, n, &r), 0);
    assert_int_equal(r.status, 400);
    wst_http_response_free(&r);
    free(body);
    free(junk);

    /* GET is not how it works. */
    assert_int_equal(wst_http(g.fx.port, "GET", "/v1/separate", NULL, NULL, 0,
                              &r, FX_TIMEOUT_MS),
                     0);
    print_message("GET /v1/separate -> %d\n", r.status);
    assert_true(r.status >= 400 && r.status < 500);
    wst_http_response_free(&r);

    /* The server is still fine: a stream works. */
    assert_true(server_fixture_alive(&g.fx));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav_round_trip),
        cmocka_unit_test(test_flac_mono_two_stems),
        cmocka_unit_test(test_output_formats),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
