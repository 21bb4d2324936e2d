/*
 * test_server.c - demixd streaming end to end over loopback: the real
 * server (server_fixture.h) on 127.0.0.1, a socket-level WebSocket client,
 * the CPU engine.
 *
 * Two servers run for the whole file:
 *   - "identity": a model at 48 kHz whose every source is 1/4 of its input
 *     (fx_save_identity_model: the input itself before the mixture-
 *     consistency projection, 1/T of it after). Output position p of every
 *     stem must then equal FX_IDENTITY_GAIN times input position p:
 *     exactly (float rounding) for PCM at 48 kHz,
 *     up to the resampler for other rates (correlation peak at lag 0, SNR),
 *     up to the codec for Opus. So stems, length and alignment are checked
 *     against the input itself.
 *   - "tiny": tests/data/tiny.safetensors (random weights, 44.1 kHz; with
 *     --service-threads 4, so its sessions live on several threads), whose
 *     stems differ from each other, for the mix and the concurrency tests.
 *
 * Cases: (a) PCM f32 stereo round trip; (b) PCM s16 mono with a subset of
 * stems in a chosen order; (c) PCM at 44.1 kHz against the 48 kHz model
 * (resampling both ways); (d) Opus in and out, stereo 48 kHz and mono
 * 24 kHz (lag 0, SNR > 20 dB at 192/128 kb/s); (e) the latency announced in
 * ready against the latency measured from positions, with and without
 * resampling and with Opus output (see latency_case); (f) the mix
 * equals the gain-weighted sum of the stems of a stems session on the
 * same input; (g) a gains message during the stream: the mix switches from
 * the old to the new weighted sum at one model-hop boundary, at or after
 * the output already received when the message was sent; (h) 8 concurrent
 * sessions with different audio (rates, channels, codecs), spread by the
 * accept thread over the server's service threads (the log says which;
 * each of the four holds one to three) and batched into shared steps
 * (stats: batch mean above 1), get the same stems as each alone; (i) a
 * client that does not read its output is
 * paused (its input stops being read) and then gets every frame; (j) both
 * servers exit 0 on SIGTERM (teardown); (k) --opus-complexity 0: a third
 * identity server's Opus output still has lag 0 and SNR > 20 dB, and it
 * differs from the default server's (complexity 10) for the same input,
 * so the option reaches the encoders; (l) out-of-range or malformed
 * --opus-complexity, --service-threads, --device, --steps-in-flight and
 * --drain-seconds values stop the start with exit
 * status 2 and a message naming the option and the value; (m) PCM s16
 * stereo at the tiny model's rate, two stems in a chosen order and the
 * mix (the exact int16 path: the engine's 16-bit samples go into the
 * messages without a float round trip) equal the same session's float32
 * output rounded to 16 bits.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h" /* demix_sample_to_s16 */
#include "server_fixture.h"

#define ID_RATE 48000
#define TINY_RATE 44100

static struct {
    char dir[256];
    char identity_model[512];
    server_fixture id;
    server_fixture tiny;
    int id_started, tiny_started;
    uint64_t seed;
} g;

static const char *const all_stems[] = {"drums", "bass", "vocals", "other",
                                        NULL};

/* ------------------------------------------------------------ helpers */

/* max |y - x| over the first frames frames. */
static double max_diff(const float *y, const float *x, int64_t frames, int ch)
{
    double m = 0;
    for (int64_t i = 0; i < frames * ch; i++) {
        double d = fabs((double)y[i] - (double)x[i]);
        if (d > m || d != d)
            m = d;
    }
    return m;
}

/* Correlation lag (|lag| <= max_lag) of y against x for one channel, and
 * the SNR of y against x in dB. */
static void lag_and_snr(const float *y, const float *x, int64_t frames, int ch,
                        int c, int *lag_out, double *snr_out)
{
    const int max_lag = 40;
    int best = 0;
    double best_corr = -INFINITY;
    for (int lag = -max_lag; lag <= max_lag; lag++) {
        double s = 0;
        for (int64_t i = max_lag; i + max_lag < frames; i++)
            s += (double)x[i * ch + c] * y[(i + lag) * ch + c];
        if (s > best_corr) {
            best_corr = s;
            best = lag;
        }
    }
    double sig = 0, err = 0;
    for (int64_t i = 0; i < frames; i++) {
        double a = x[i * ch + c], d = y[i * ch + c] - a;
        sig += a * a;
        err += d * d;
    }
    *lag_out = best;
    *snr_out = 10.0 * log10(sig / fmax(err, 1e-30));
}

static void check_ready_identity(const fx_session *s)
{
    const demix_proto_ready *r = &s->ready;
    assert_int_equal(r->model_rate_hz, ID_RATE);
    assert_int_equal(r->hop_samples, 512);
    assert_int_equal(r->window_samples, 1024);
    assert_int_equal(r->latency_samples, 1024);
    assert_int_equal(r->source_count, 4);
    for (int t = 0; t < 4; t++)
        assert_string_equal(r->sources[t], all_stems[t]);
    assert_true(r->session[0] != '\0');
}

/* The stream ran cleanly and the summary counts input_frames. */
static void check_summary(const fx_session *s, int64_t input_frames)
{
    assert_true(s->have_summary);
    assert_int_equal((int64_t)s->summary.input_frames, input_frames);
    assert_int_equal((int64_t)s->summary.output_frames, input_frames);
    assert_int_equal(s->close_code, 1000);
    assert_string_equal(s->violation, "");
}

/* Run one session to its end; fails the test unless it ended cleanly. */
static void run_one(fx_session *s, int port, demix_proto_start *st,
                    const float *x, int64_t frames, int64_t chunk)
{
    assert_int_equal(fx_session_open(s, port, st), 0);
    int rc = fx_session_run(s, x, frames, chunk);
    if (rc)
        fx_session_print(s, "run_one");
    assert_int_equal(rc, 0);
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
    snprintf(g.identity_model, sizeof g.identity_model,
             "%s/identity48k.safetensors", g.dir);
    if (fx_save_identity_model(g.identity_model, ID_RATE, g.seed))
        return -1;
    /* --event-loop poll: the identity server's cases run on lws's own
     * loop, the tiny server's on the default (libev on epoll), so both
     * loops pass the same bit-exact checks */
    if (server_fixture_start(&g.id, g.identity_model, "--max-sessions", "16",
                             "--event-loop", "poll", (const char *)NULL))
        return -1;
    g.id_started = 1;
    /* --service-threads 4: the concurrency case (h) checks sessions on
     * different threads that share steps against sessions alone */
    if (server_fixture_start(&g.tiny, demix_test_data_path("tiny.safetensors"),
                             "--max-sessions", "16", "--service-threads", "4",
                             (const char *)NULL))
        return -1;
    g.tiny_started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (g.id_started && server_fixture_stop(&g.id) != 0) {
        print_error("identity demixd did not exit 0 on SIGTERM\n");
        rc = -1;
    }
    if (g.tiny_started && server_fixture_stop(&g.tiny) != 0) {
        print_error("tiny demixd did not exit 0 on SIGTERM\n");
        rc = -1;
    }
    demix_test_rmtree(g.dir);
    return rc;
}

/* ------------------------------------------------------------- tests */

/* (a) */
static void test_pcm_f32_round_trip(void **state)
{
    (void)state;
    int64_t frames = 2 * ID_RATE + 123; /* not a whole number of hops */
    float *x = fx_make_signal(ID_RATE, 2, frames, g.seed);
    float *want = fx_scaled(x, frames * 2, FX_IDENTITY_GAIN);
    assert_non_null(want);
    demix_proto_start st;
    fx_start_init(&st, ID_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session s;
    run_one(&s, g.id.port, &st, x, frames, 4096);
    check_ready_identity(&s);
    assert_int_equal(s.ready.client_rate_hz, ID_RATE);
    assert_int_equal(s.ready.channels, 2);
    /* Same rate, PCM: no resampler, no codec; the model's window only. */
    assert_int_equal(s.ready.latency_frames, 1024);
    check_summary(&s, frames);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&s, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        assert_true(tr->last);
        double d = max_diff(tr->x, want, frames, 2);
        print_message("f32 %s: max |stem - input / 4| = %.3g\n",
                      all_stems[t], d);
        assert_true(d <= 1e-5);
    }
    fx_session_free(&s);
    free(want);
    free(x);
}

/* (b) */
static void test_pcm_s16_mono_subset(void **state)
{
    (void)state;
    int64_t frames = ID_RATE + 777;
    float *x = fx_make_signal(ID_RATE, 1, frames, g.seed + 1);
    for (int64_t i = 0; i < frames; i++) /* what s16 carries */
        x[i] = roundf(x[i] * 32768.0f) / 32768.0f;
    float *want = fx_scaled(x, frames, FX_IDENTITY_GAIN);
    assert_non_null(want);
    const char *const stems[] = {"vocals", "drums", NULL};
    demix_proto_start st;
    fx_start_init(&st, ID_RATE, 1, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, stems);
    fx_session s;
    run_one(&s, g.id.port, &st, x, frames, 1000);
    check_ready_identity(&s);
    assert_int_equal(s.ready.mode, DEMIX_PROTO_MODE_STEMS);
    assert_int_equal(s.ready.stem_count, 2);
    assert_int_equal(s.ready.stem_source[0], 2);
    assert_int_equal(s.ready.stem_source[1], 0);
    assert_null(fx_session_track(&s, 1));
    assert_null(fx_session_track(&s, 3));
    check_summary(&s, frames);
    for (int k = 0; k < 2; k++) {
        const fx_track *tr = fx_session_track(&s, k == 0 ? 2 : 0);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        double d = max_diff(tr->x, want, frames, 1);
        print_message("s16 mono %s: max |stem - input / 4| = %.3g (1 LSB = "
                      "%.3g)\n",
                      stems[k], d, 1.0 / 32768);
        /* Half a step of rounding, plus the float rounding of the stem
         * before it (input / 4 can sit on a half step). */
        assert_true(d <= 0.5 / 32768.0 + 1e-6);
    }
    fx_session_free(&s);
    free(want);
    free(x);
}

/* (c) */
static void test_pcm_resampled_round_trip(void **state)
{
    (void)state;
    const int rate = 44100;
    int64_t frames = 2 * rate + 55;
    float *x = fx_make_signal(rate, 2, frames, g.seed + 2);
    float *want = fx_scaled(x, frames * 2, FX_IDENTITY_GAIN);
    assert_non_null(want);
    demix_proto_start st;
    fx_start_init(&st, rate, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session s;
    run_one(&s, g.id.port, &st, x, frames, 3000);
    check_ready_identity(&s);
    assert_int_equal(s.ready.client_rate_hz, rate);
    /* At least the model's window at the client rate, plus resamplers. */
    assert_true(s.ready.latency_frames >= 1024 * rate / ID_RATE);
    check_summary(&s, frames);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&s, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        for (int c = 0; c < 2; c++) {
            int lag;
            double snr;
            lag_and_snr(tr->x, want, frames, 2, c, &lag, &snr);
            print_message("44.1k %s ch %d: lag %d, SNR %.1f dB\n", all_stems[t],
                          c, lag, snr);
            assert_int_equal(lag, 0);
            assert_true(snr > 30.0);
        }
    }
    fx_session_free(&s);
    free(want);
    free(x);
}

/* (d) Opus both ways: alignment and a codec-sized error. */
static void opus_case(int rate, int channels, double min_snr_db)
{
    int64_t frames = 2 * rate + 301;
    float *x = fx_make_signal(rate, channels, frames, g.seed + 3 + (uint64_t)rate);
    float *want = fx_scaled(x, frames * channels, FX_IDENTITY_GAIN);
    assert_non_null(want);
    demix_proto_start st;
    fx_start_init(&st, rate, channels, DEMIX_PROTO_CODEC_OPUS,
                  DEMIX_PROTO_CODEC_OPUS, all_stems);
    fx_session s;
    run_one(&s, g.id.port, &st, x, frames, 960);
    check_ready_identity(&s);
    assert_int_equal(s.ready.opus_frame_ms, 20);
    assert_int_equal(s.ready.opus_frame_frames, rate / 50);
    assert_true(s.ready.opus_pre_skip_frames >= 0);
    assert_int_equal(s.ready.input_pre_skip_frames, st.input_pre_skip_frames);
    /* The server counts the decoded input after pre_skip: the real frames
     * plus the padding to a whole packet. */
    assert_true((int64_t)s.summary.input_frames >= frames);
    assert_true((int64_t)s.summary.input_frames < frames + s.enc_lookahead +
                                                     s.opus_frame);
    assert_int_equal(s.summary.output_frames, s.summary.input_frames);
    assert_int_equal(s.close_code, 1000);
    assert_string_equal(s.violation, "");
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&s, t);
        assert_non_null(tr);
        assert_true(tr->last);
        /* Decoded (after pre_skip) covers at least output_frames. */
        assert_true(tr->frames >= (int64_t)s.summary.output_frames);
        for (int c = 0; c < channels; c++) {
            int lag;
            double snr;
            lag_and_snr(tr->x, want, frames, channels, c, &lag, &snr);
            print_message("opus %d Hz %s ch %d: lag %d, SNR %.1f dB\n", rate,
                          all_stems[t], c, lag, snr);
            assert_int_equal(lag, 0);
            assert_true(snr > min_snr_db);
        }
    }
    fx_session_free(&s);
    free(want);
    free(x);
}

static void test_opus_round_trip(void **state)
{
    (void)state;
    opus_case(48000, 2, 20.0);
    opus_case(24000, 1, 20.0);
}

/* (k) One stereo 48 kHz session, PCM in and Opus out, on `port`: the
 * decoded first stem (after checking lag 0 and SNR > 20 dB per channel). */
static float *opus_stem(int port, const float *x, int64_t frames,
                        int64_t *out_frames)
{
    static const char *const first[] = {"drums", NULL};
    demix_proto_start st;
    fx_start_init(&st, ID_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_OPUS, first);
    fx_session s;
    run_one(&s, port, &st, x, frames, 960);
    const fx_track *tr = fx_session_track(&s, 0);
    assert_non_null(tr);
    assert_true(tr->last);
    float *want = fx_scaled(x, frames * 2, FX_IDENTITY_GAIN);
    assert_non_null(want);
    for (int c = 0; c < 2; c++) {
        int lag;
        double snr;
        lag_and_snr(tr->x, want, frames, 2, c, &lag, &snr);
        print_message("port %d ch %d: lag %d, SNR %.1f dB\n", port, c, lag,
                      snr);
        assert_int_equal(lag, 0);
        assert_true(snr > 20.0);
    }
    free(want);
    *out_frames = tr->frames;
    float *copy = malloc((size_t)tr->frames * 2 * sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, tr->x, (size_t)tr->frames * 2 * sizeof *copy);
    fx_session_free(&s);
    return copy;
}

static void test_opus_complexity_option(void **state)
{
    (void)state;
    server_fixture low;
    assert_int_equal(server_fixture_start(&low, g.identity_model,
                                          "--max-sessions", "2",
                                          "--opus-complexity", "0",
                                          (const char *)NULL),
                     0);
    int64_t frames = ID_RATE + 123, n_default, n_low;
    float *x = fx_make_signal(ID_RATE, 2, frames, g.seed + 11);
    float *by_default = opus_stem(g.id.port, x, frames, &n_default);
    float *by_low = opus_stem(low.port, x, frames, &n_low);
    assert_int_equal(n_low, n_default);
    assert_memory_not_equal(by_low, by_default,
                            (size_t)n_low * 2 * sizeof *by_low);
    free(by_low);
    free(by_default);
    free(x);
    assert_int_equal(server_fixture_finish(&low, 1, NULL), 0);
    demix_test_rmtree(low.dir);
}

/* (e) Latency from positions, with the input sent in lock-step chunks of
 * 64 frames:
 *   - sufficiency (exact): once `sent` frames are in, every position up to
 *     sent - L must arrive with no more input (plus slack: one Opus packet,
 *     whose packetisation the announced figure leaves out, or 8 frames of
 *     resampler rounding). A server that needs more input than it announced
 *     stalls here and the test fails.
 *   - the need measured: for each position p, the input count when p first
 *     arrived; the largest over p. After each chunk the output is let settle
 *     (SETTLE_MS without a message), so on a quiet machine this is the
 *     server's true need within a chunk; on a busy one output comes later
 *     and the figure only grows, so it is checked from below only: the
 *     announcement may exceed the need by at most a chunk plus 10 ms. */
#define SETTLE_MS 3
static void latency_case(int port, int rate, demix_proto_codec out_codec)
{
    const int64_t chunk = 64;
    int64_t frames = rate / 4;
    float *x = fx_make_signal(rate, 2, frames, g.seed + 9);
    demix_proto_start st;
    fx_start_init(&st, rate, 2, DEMIX_PROTO_CODEC_PCM_F32, out_codec,
                  all_stems);
    fx_session s;
    assert_int_equal(fx_session_open(&s, port, &st), 0);
    assert_int_equal(fx_session_wait_ready(&s), 0);
    int64_t L = s.ready.latency_frames;
    int model_rate = s.ready.model_rate_hz;
    int64_t slack = out_codec == DEMIX_PROTO_CODEC_OPUS
                        ? s.ready.opus_frame_frames
                        : (rate != model_rate ? 8 : 0);
    int64_t measured = 0;
    for (int64_t sent = 0; sent < frames;) {
        int64_t n = frames - sent < chunk ? frames - sent : chunk;
        int64_t before = fx_session_reached(&s);
        assert_int_equal(fx_session_send(&s, x + sent * 2, n), 0);
        sent += n;
        int64_t target = sent - L + 1 - slack;
        int waited = 0;
        while (fx_session_reached(&s) < target) {
            if (waited > FX_TIMEOUT_MS / 10) {
                print_error("%d Hz %s: after %lld input frames output reached "
                            "only %lld; the announced latency %lld (+%lld) "
                            "says %lld\n",
                            rate, demix_proto_codec_name(out_codec),
                            (long long)sent, (long long)fx_session_reached(&s),
                            (long long)L, (long long)slack, (long long)target);
                fx_session_print(&s, "latency");
                fail();
            }
            if (fx_session_poll(&s, 100) == 0)
                waited += 100;
            assert_false(s.eof);
        }
        while (fx_session_poll(&s, SETTLE_MS) == 1)
            ;
        if (fx_session_reached(&s) > before && sent - before > measured)
            measured = sent - before;
    }
    assert_int_equal(fx_session_send_end(&s), 0);
    assert_int_equal(fx_session_finish(&s), 0);
    check_summary(&s, frames);
    print_message("latency %d Hz (model %d Hz) %s: announced %lld frames "
                  "(%.2f ms); largest input ahead of a new position %lld "
                  "frames (%.2f ms; lock-step, chunk %lld)\n",
                  rate, model_rate, demix_proto_codec_name(out_codec),
                  (long long)L, 1000.0 * (double)L / rate, (long long)measured,
                  1000.0 * (double)measured / rate, (long long)chunk);
    assert_true(measured >= L - chunk - rate / 100);
    fx_session_free(&s);
    free(x);
}

static void test_latency_announced_vs_measured(void **state)
{
    (void)state;
    latency_case(g.id.port, ID_RATE, DEMIX_PROTO_CODEC_PCM_F32);
    latency_case(g.id.port, 44100, DEMIX_PROTO_CODEC_PCM_F32);
    latency_case(g.id.port, ID_RATE, DEMIX_PROTO_CODEC_OPUS);
    latency_case(g.tiny.port, 48000, DEMIX_PROTO_CODEC_PCM_F32);
    latency_case(g.tiny.port, 32000, DEMIX_PROTO_CODEC_PCM_S16);
}

/* Weighted sum of the four stems of a stems session. */
static float *weighted_sum(const fx_session *stems, const float *gains,
                           int64_t frames, int ch)
{
    float *y = calloc((size_t)(frames * ch), sizeof *y);
    assert_non_null(y);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(stems, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        for (int64_t i = 0; i < frames * ch; i++)
            y[i] += gains[t] * tr->x[i];
    }
    return y;
}

static double peak(const float *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* (f) */
static void test_mix_is_weighted_sum(void **state)
{
    (void)state;
    int64_t frames = 2 * TINY_RATE + 99;
    float *x = fx_make_signal(TINY_RATE, 2, frames, g.seed + 20);
    demix_proto_start st;
    fx_start_init(&st, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session stems;
    run_one(&stems, g.tiny.port, &st, x, frames, 4096);

    const float gains[4] = {0.5f, 1.5f, 0.0f, 2.0f};
    demix_proto_start mt;
    fx_start_init(&mt, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, NULL);
    mt.gain_count = 3; /* "other" left out: it gets 1.0 ... */
    const char *names[3] = {"drums", "bass", "vocals"};
    for (int i = 0; i < 3; i++) {
        snprintf(mt.gains[i].name, sizeof mt.gains[i].name, "%s", names[i]);
        mt.gains[i].gain = gains[i];
    }
    fx_session mix;
    run_one(&mix, g.tiny.port, &mt, x, frames, 4096);
    assert_int_equal(mix.ready.mode, DEMIX_PROTO_MODE_MIX);
    assert_true(fabsf(mix.ready.source_gain[0] - 0.5f) < 1e-7f);
    assert_true(fabsf(mix.ready.source_gain[1] - 1.5f) < 1e-7f);
    assert_true(fabsf(mix.ready.source_gain[2] - 0.0f) < 1e-7f);
    assert_true(fabsf(mix.ready.source_gain[3] - 1.0f) < 1e-7f);
    check_summary(&mix, frames);
    const float expect_gains[4] = {0.5f, 1.5f, 0.0f, 1.0f};
    float *want = weighted_sum(&stems, expect_gains, frames, 2);
    const fx_track *mt_track = fx_session_track(&mix, DEMIX_PROTO_STEM_MIX);
    assert_non_null(mt_track);
    assert_int_equal(mt_track->frames, frames);
    double d = max_diff(mt_track->x, want, frames, 2);
    double p = peak(want, frames * 2);
    print_message("mix vs weighted sum: max diff %.3g, peak %.3g\n", d, p);
    assert_true(p > 1e-3); /* the check has something to compare */
    assert_true(d <= 1e-5 * fmax(1.0, p));
    (void)gains[3];
    free(want);
    fx_session_free(&mix);
    fx_session_free(&stems);
    free(x);
}

/* (g) */
static void test_gain_change_lands_on_hop_boundary(void **state)
{
    (void)state;
    int64_t frames = 3 * TINY_RATE;
    float *x = fx_make_signal(TINY_RATE, 2, frames, g.seed + 30);
    demix_proto_start st;
    fx_start_init(&st, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session stems;
    run_one(&stems, g.tiny.port, &st, x, frames, 4096);

    const float g1[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    const float g2[4] = {0.0f, 2.0f, 0.5f, 1.0f};
    demix_proto_start mt;
    fx_start_init(&mt, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, NULL);
    fx_session mix;
    assert_int_equal(fx_session_open(&mix, g.tiny.port, &mt), 0);
    assert_int_equal(fx_session_wait_ready(&mix), 0);
    int hop = mix.ready.hop_samples;
    /* First half, then wait for output to pass a third of the stream. */
    int64_t half = frames / 2;
    for (int64_t sent = 0; sent < half; sent += 4096)
        assert_int_equal(fx_session_send(&mix, x + sent * 2,
                                         half - sent < 4096 ? half - sent : 4096),
                         0);
    while (fx_session_reached(&mix) < frames / 3) {
        assert_false(mix.eof);
        fx_session_poll(&mix, 100);
    }
    while (fx_session_poll(&mix, 0) == 1)
        ;
    int64_t received_at_change = fx_session_reached(&mix);
    demix_proto_gains gm = {.count = 3};
    snprintf(gm.gains[0].name, sizeof gm.gains[0].name, "drums");
    gm.gains[0].gain = g2[0];
    snprintf(gm.gains[1].name, sizeof gm.gains[1].name, "bass");
    gm.gains[1].gain = g2[1];
    snprintf(gm.gains[2].name, sizeof gm.gains[2].name, "vocals");
    gm.gains[2].gain = g2[2];
    char buf[512];
    size_t len;
    assert_int_equal(demix_proto_write_gains(&gm, buf, sizeof buf, &len), 0);
    assert_int_equal(wst_send_text(mix.c, buf), 0);
    for (int64_t sent = half; sent < frames; sent += 4096)
        assert_int_equal(fx_session_send(&mix, x + sent * 2,
                                         frames - sent < 4096 ? frames - sent
                                                              : 4096),
                         0);
    assert_int_equal(fx_session_send_end(&mix), 0);
    assert_int_equal(fx_session_finish(&mix), 0);
    check_summary(&mix, frames);

    float *a = weighted_sum(&stems, g1, frames, 2);
    float *b = weighted_sum(&stems, g2, frames, 2);
    const fx_track *m = fx_session_track(&mix, DEMIX_PROTO_STEM_MIX);
    assert_non_null(m);
    assert_int_equal(m->frames, frames);
    double tol = 1e-5 * fmax(1.0, peak(a, frames * 2));
    /* Each hop block is entirely the old or the new sum; one switch. */
    int64_t switch_pos = -1;
    for (int64_t start = 0; start < frames; start += hop) {
        int64_t n = frames - start < hop ? frames - start : hop;
        double da = max_diff(m->x + start * 2, a + start * 2, n, 2);
        double db = max_diff(m->x + start * 2, b + start * 2, n, 2);
        int is_a = da <= tol, is_b = db <= tol;
        if (!is_a && !is_b) {
            print_error("hop block at %lld is neither the old (%.3g) nor the "
                        "new (%.3g) mix\n",
                        (long long)start, da, db);
            fail();
        }
        if (switch_pos < 0 && is_b && !is_a)
            switch_pos = start;
        if (switch_pos >= 0 && !is_b) {
            print_error("the old gains came back at %lld after the switch at "
                        "%lld\n",
                        (long long)start, (long long)switch_pos);
            fail();
        }
    }
    print_message("gains sent with %lld frames received; the mix switched at "
                  "position %lld (hop %d)\n",
                  (long long)received_at_change, (long long)switch_pos, hop);
    assert_true(switch_pos >= 0);
    assert_int_equal(switch_pos % hop, 0);
    assert_true(switch_pos >= received_at_change);
    free(a);
    free(b);
    fx_session_free(&mix);
    fx_session_free(&stems);
    free(x);
}

/* The service thread the server's log names for a session (its
 * session_start line), or -1. */
static int session_thread(const server_fixture *fx, const char *id)
{
    FILE *f = fopen(fx->log_path, "r");
    if (!f)
        return -1;
    char line[1024], key[64];
    snprintf(key, sizeof key, "event=session_start session=%s thread=", id);
    int thread = -1;
    while (thread < 0 && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, key);
        if (p)
            thread = atoi(p + strlen(key));
    }
    fclose(f);
    return thread;
}

/* The value of the /metrics line that starts with `series` (a name with
 * its labels); fails the test when the line is missing. */
static double metric(int port, const char *series)
{
    wst_http_response r;
    assert_int_equal(
        wst_http(port, "GET", "/metrics", NULL, NULL, 0, &r, 10000), 0);
    assert_int_equal(r.status, 200);
    char key[160];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = strstr((const char *)r.body, key);
    double v = p ? atof(p + strlen(key)) : -1.0;
    wst_http_response_free(&r);
    if (!p)
        fail_msg("/metrics has no line %s", series);
    return v;
}

/* Engine steps that carried more than one hop so far (/metrics' batch
 * size histogram: all steps minus those of batch 1). */
static long long shared_steps(int port)
{
    return (long long)(metric(port, "demixd_batch_size_count") -
                       metric(port, "demixd_batch_size_bucket{le=\"1\"}"));
}

/* A session's messages, writes and wake-ups show in the service threads'
 * phase counters, and each thread reports its CPU time. */
static void test_metrics_time_service_phases(void **state)
{
    (void)state;
    const char *calls = "demixd_service_phase_calls_total{phase=\"%s\"}";
    const char *secs = "demixd_service_phase_seconds_total{phase=\"%s\"}";
    const char *phases[3] = {"receive", "writeable", "wake"};
    char name[128];
    double calls0[3], secs0[3];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, calls, phases[k]);
        calls0[k] = metric(g.tiny.port, name);
        snprintf(name, sizeof name, secs, phases[k]);
        secs0[k] = metric(g.tiny.port, name);
    }
    int64_t frames = 44100;
    float *x = fx_make_signal(44100, 2, frames, g.seed + 7);
    demix_proto_start st;
    fx_start_init(&st, 44100, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, all_stems);
    fx_session s;
    run_one(&s, g.tiny.port, &st, x, frames, 2048);
    check_summary(&s, frames);
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, calls, phases[k]);
        double dc = metric(g.tiny.port, name) - calls0[k];
        snprintf(name, sizeof name, secs, phases[k]);
        double ds = metric(g.tiny.port, name) - secs0[k];
        print_message("phase %s: %.0f calls, %.6f s\n", phases[k], dc, ds);
        /* one second of audio in 2048-frame messages is 22 of them, and
         * its 87 hops come back through wake-ups and writes */
        assert_true(dc >= (k == 0 ? 22 : 1));
        assert_true(ds > 0);
    }
    for (int t = 0; t < 4; t++) {
        snprintf(name, sizeof name,
                 "demixd_service_cpu_seconds_total{thread=\"%d\"}", t);
        assert_true(metric(g.tiny.port, name) > 0);
    }
    fx_session_free(&s);
    free(x);
}

/* (h) */
#define N_CONCURRENT 8
static void test_concurrent_sessions_match_alone(void **state)
{
    (void)state;
    struct {
        int rate, channels;
        demix_proto_codec codec;
    } cfg[N_CONCURRENT] = {
        {44100, 2, DEMIX_PROTO_CODEC_PCM_F32}, {44100, 2, DEMIX_PROTO_CODEC_PCM_F32},
        {44100, 2, DEMIX_PROTO_CODEC_PCM_F32}, {44100, 1, DEMIX_PROTO_CODEC_PCM_F32},
        {48000, 2, DEMIX_PROTO_CODEC_PCM_F32}, {32000, 2, DEMIX_PROTO_CODEC_PCM_F32},
        {44100, 2, DEMIX_PROTO_CODEC_PCM_S16}, {22050, 1, DEMIX_PROTO_CODEC_PCM_S16},
    };
    float *in[N_CONCURRENT];
    int64_t frames[N_CONCURRENT];
    fx_session alone[N_CONCURRENT], together[N_CONCURRENT];
    fx_session *ptr[N_CONCURRENT];
    demix_proto_start st[N_CONCURRENT];
    for (int i = 0; i < N_CONCURRENT; i++) {
        frames[i] = (int64_t)cfg[i].rate + 1000 * i + 17;
        in[i] = fx_make_signal(cfg[i].rate, cfg[i].channels, frames[i],
                               g.seed + 100 + (uint64_t)i);
        assert_non_null(in[i]);
        fx_start_init(&st[i], cfg[i].rate, cfg[i].channels, cfg[i].codec,
                      cfg[i].codec, all_stems);
        run_one(&alone[i], g.tiny.port, &st[i], in[i], frames[i], 2048);
        check_summary(&alone[i], frames[i]);
    }
    long long shared_before = shared_steps(g.tiny.port);
    for (int i = 0; i < N_CONCURRENT; i++) {
        assert_int_equal(fx_session_open(&together[i], g.tiny.port, &st[i]), 0);
        ptr[i] = &together[i];
    }
    /* All eight are live at once: the server's stats say so. */
    for (int i = 0; i < N_CONCURRENT; i++)
        assert_int_equal(fx_session_wait_ready(&together[i]), 0);
    char req[64];
    size_t req_len;
    assert_int_equal(demix_proto_write_stats_request(req, sizeof req, &req_len),
                     0);
    assert_int_equal(wst_send_text(together[0].c, req), 0);
    int rc = fx_run_many(ptr, (const float *const *)in, frames, N_CONCURRENT,
                         1024);
    assert_int_equal(rc, 0);
    assert_int_equal(together[0].stats_count, 1);
    print_message("stats during the run: %d sessions (max %d), batch mean "
                  "%.2f\n",
                  together[0].stats.sessions, together[0].stats.max_sessions,
                  together[0].stats.batch_mean);
    assert_true(together[0].stats.sessions >= N_CONCURRENT);
    /* The accept thread spread them over the four service threads by
     * connection count (2 each; 1 to 3 allows for a connection of an
     * earlier case still closing), and sessions of several threads took
     * part in shared steps. */
    int per_thread[4] = {0};
    for (int i = 0; i < N_CONCURRENT; i++) {
        int t = session_thread(&g.tiny, together[i].ready.session);
        assert_true(t >= 0 && t < 4);
        per_thread[t]++;
    }
    print_message("the %d sessions per service thread: %d %d %d %d\n",
                  N_CONCURRENT, per_thread[0], per_thread[1], per_thread[2],
                  per_thread[3]);
    for (int t = 0; t < 4; t++)
        assert_true(per_thread[t] >= 1 && per_thread[t] <= 3);
    long long shared = shared_steps(g.tiny.port) - shared_before;
    print_message("steps of more than one hop during the run: %lld\n", shared);
    assert_true(shared > 0);
    double worst = 0;
    for (int i = 0; i < N_CONCURRENT; i++) {
        check_summary(&together[i], frames[i]);
        for (int t = 0; t < 4; t++) {
            const fx_track *a = fx_session_track(&alone[i], t);
            const fx_track *b = fx_session_track(&together[i], t);
            assert_non_null(a);
            assert_non_null(b);
            assert_int_equal(a->frames, frames[i]);
            assert_int_equal(b->frames, frames[i]);
            double d = max_diff(b->x, a->x, frames[i], cfg[i].channels);
            worst = fmax(worst, d);
            if (d > 1e-6)
                print_error("session %d (%d Hz, %d ch, %s) %s: concurrent "
                            "differs from alone by %.3g\n",
                            i, cfg[i].rate, cfg[i].channels,
                            demix_proto_codec_name(cfg[i].codec), all_stems[t],
                            d);
            assert_true(d <= 1e-6);
        }
    }
    print_message("8 concurrent sessions: largest difference from alone %.3g\n",
                  worst);
    for (int i = 0; i < N_CONCURRENT; i++) {
        fx_session_free(&alone[i]);
        fx_session_free(&together[i]);
        free(in[i]);
    }
}

/* (i) Flow control: a client that sends a long stream as fast as it can and
 * does not read its output is paused through the socket (the server stops
 * reading its input) instead of having its output buffered without bound;
 * once it reads, every frame arrives, exact. */
static void test_slow_reader_is_paused(void **state)
{
    (void)state;
    int64_t frames = 30 * ID_RATE; /* 11.5 MB of f32 stereo input */
    float *x = fx_make_signal(ID_RATE, 2, frames, g.seed + 40);
    demix_proto_start st;
    fx_start_init(&st, ID_RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    fx_session s;
    assert_int_equal(fx_session_open(&s, g.id.port, &st), 0);
    assert_int_equal(fx_session_wait_ready(&s), 0);
    wst_set_read_paused(s.c, 1);
    for (int64_t sent = 0; sent < frames; sent += 4096)
        assert_int_equal(fx_session_send(&s, x + sent * 2,
                                         frames - sent < 4096 ? frames - sent
                                                              : 4096),
                         0);
    /* Write until the server stops taking input: no progress for a while
     * (each round waits up to 200 ms for the socket to take more). */
    size_t pending = wst_tx_pending(s.c);
    for (int quiet = 0; quiet < 5 && pending > 0;) {
        wst_pump(s.c, 200);
        size_t now = wst_tx_pending(s.c);
        quiet = now < pending ? 0 : quiet + 1;
        pending = now;
    }
    size_t total = (size_t)frames * 8 + (size_t)((frames + 4095) / 4096) * 12;
    print_message("input taken while the client did not read: %zu of %zu "
                  "bytes\n",
                  total - pending, total);
    assert_true(pending > total / 2);
    wst_set_read_paused(s.c, 0);
    assert_int_equal(fx_session_send_end(&s), 0);
    assert_int_equal(fx_session_finish(&s), 0);
    check_summary(&s, frames);
    float *want = fx_scaled(x, frames * 2, FX_IDENTITY_GAIN);
    assert_non_null(want);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&s, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        assert_true(max_diff(tr->x, want, frames, 2) <= 1e-5);
    }
    free(want);
    fx_session_free(&s);
    free(x);
}

/* (m) What an f32 session got, rounded as 16-bit output rounds it. */
static void check_s16_equals_rounded_f32(const fx_session *s16,
                                         const fx_session *f32, int stem,
                                         int64_t frames, const char *what)
{
    const fx_track *a = fx_session_track(s16, stem);
    const fx_track *b = fx_session_track(f32, stem);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->frames, frames);
    assert_int_equal(b->frames, frames);
    assert_true(a->last);
    double worst = 0, p = peak(b->x, frames * 2);
    for (int64_t i = 0; i < frames * 2; i++) {
        float want = (float)demix_sample_to_s16(b->x[i]) / 32768.0f;
        worst = fmax(worst, fabs((double)a->x[i] - want));
    }
    print_message("s16 exact path, %s: largest difference from the rounded "
                  "f32 output %.3g (peak %.3g)\n",
                  what, worst, p);
    assert_true(p > 1e-3); /* the check has something to compare */
    /* the engine rounds the same float stem; its float arithmetic in the
     * two output shapes may differ in the last bit, so a sample sitting on
     * a half step may round the other way: at most one step */
    assert_true(worst <= 1.0 / 32768.0 + 1e-7);
}

static void test_pcm_s16_exact_path(void **state)
{
    (void)state;
    int64_t frames = TINY_RATE + 555;
    float *x = fx_make_signal(TINY_RATE, 2, frames, g.seed + 40);
    assert_non_null(x);
    const char *const stems[] = {"other", "drums", NULL};
    demix_proto_start st;
    fx_session f32, s16, f32mix, s16mix;
    fx_start_init(&st, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_F32, stems);
    run_one(&f32, g.tiny.port, &st, x, frames, 1500);
    fx_start_init(&st, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, stems);
    run_one(&s16, g.tiny.port, &st, x, frames, 1500);
    check_summary(&s16, frames);
    assert_int_equal(s16.ready.stem_count, 2);
    check_s16_equals_rounded_f32(&s16, &f32, 3, frames, "other");
    check_s16_equals_rounded_f32(&s16, &f32, 0, frames, "drums");
    assert_null(fx_session_track(&s16, 1));
    fx_start_init(&st, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_F32, NULL);
    run_one(&f32mix, g.tiny.port, &st, x, frames, 1500);
    fx_start_init(&st, TINY_RATE, 2, DEMIX_PROTO_CODEC_PCM_S16,
                  DEMIX_PROTO_CODEC_PCM_S16, NULL);
    run_one(&s16mix, g.tiny.port, &st, x, frames, 1500);
    assert_int_equal(s16mix.ready.mode, DEMIX_PROTO_MODE_MIX);
    check_s16_equals_rounded_f32(&s16mix, &f32mix, DEMIX_PROTO_STEM_MIX,
                                 frames, "mix");
    fx_session_free(&f32);
    fx_session_free(&s16);
    fx_session_free(&f32mix);
    fx_session_free(&s16mix);
    free(x);
}

/* (l) */
static void test_bad_codec_options_are_usage_errors(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"--opus-complexity", "11"}, {"--opus-complexity", "-1"},
        {"--opus-complexity", "x"},  {"--service-threads", "0"},
        {"--service-threads", "1025"}, {"--service-threads", "2x"},
        {"--device", "-1"},          {"--device", "256"},
        {"--steps-in-flight", "0"},  {"--steps-in-flight", "3"},
        {"--drain-seconds", "-1"},   {"--drain-seconds", "3601"},
    };
    const char *dir = demix_test_tmpdir();
    assert_non_null(dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char args[1024], err[4096], want[128];
        snprintf(args, sizeof args,
                 "--model '%s' --backend cpu --port 0 --max-sessions 1 %s %s",
                 g.identity_model, bad[i][0], bad[i][1]);
        int status = demix_test_run_tool(server_fixture_bin(), args, dir, NULL,
                                         0, err, sizeof err);
        assert_int_equal(status, 2);
        snprintf(want, sizeof want, "%s wants a whole number", bad[i][0]);
        assert_non_null(strstr(err, want));
        snprintf(want, sizeof want, "'%s'", bad[i][1]);
        assert_non_null(strstr(err, want));
    }
    demix_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pcm_f32_round_trip),
        cmocka_unit_test(test_pcm_s16_mono_subset),
        cmocka_unit_test(test_pcm_s16_exact_path),
        cmocka_unit_test(test_pcm_resampled_round_trip),
        cmocka_unit_test(test_opus_round_trip),
        cmocka_unit_test(test_opus_complexity_option),
        cmocka_unit_test(test_bad_codec_options_are_usage_errors),
        cmocka_unit_test(test_latency_announced_vs_measured),
        cmocka_unit_test(test_mix_is_weighted_sum),
        cmocka_unit_test(test_gain_change_lands_on_hop_boundary),
        cmocka_unit_test(test_concurrent_sessions_match_alone),
        cmocka_unit_test(test_metrics_time_service_phases),
        cmocka_unit_test(test_slow_reader_is_paused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
