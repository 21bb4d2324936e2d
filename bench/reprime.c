/*
 * reprime.c - how long an audio tail must a client re-send to re-prime a
 * new session after a reconnect (docs/protocol.md, "Reconnecting and
 * resuming")? A measurement, not a test.
 *
 * The server's pipeline for one session is separate_signal's (resampler
 * to the model rate, hops, engine, the first hop dropped, resampler back:
 * docs/server.md "Data path", with PCM f32 the stems equal `demix
 * separate`'s to the bit). So an uninterrupted session is one
 * separate_signal over the whole input, and a session resumed at position
 * R with a tail of L ms is a fresh separate_signal (fresh slot: LSTM state
 * zero, fresh resamplers) fed from base = R - L, whose output before R is
 * discarded. This program compares the two after R:
 *
 *   for each tail L, each seam R, each source: the error of the resumed
 *   output against the uninterrupted one over windows after the seam
 *   ([0, 20) ms, [20, 100), [100, 500), [500, 2000)), as SDR in dB (the
 *   uninterrupted output's energy over the error's, all sources and
 *   channels of the window together), the largest absolute difference,
 *   and "settle": the time after R past which no sample differs by more
 *   than 1/32768 (one 16-bit step).
 *
 * --align rounds base down to the model's hop grid (a multiple of H model
 * frames, as client frames, when that is a whole number of frames of at
 * most one second), so the resumed session cuts its STFT frames where the
 * uninterrupted one did.
 *
 * Usage:
 *   reprime --model M [--input FILE] [--seconds S] [--seams 4]
 *           [--tails 0,50,100,200,300,500,1000] [--align] [--threads N]
 * Without --input a synthetic music-like signal (tones, chirps, noise
 * bursts) at the model's rate is used. One line per (tail, window):
 *   tail_ms=L align=A window_ms=[a,b) sdr_db=X max_abs=Y seams=K
 * and one settle line per tail.
 *
 * Thread context: main thread (the engine's pool does its own).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio_io.h"
#include "engine.h"
#include "separate_signal.h"
#include "threadpool.h"

#define MAX_TAILS 32
#define MAX_SEAMS 16
#define AFTER_S 2.0 /* compared after each seam */
#define MARGIN_S 0.2 /* run on past it: the flush at the end differs */
#define LSB (1.0 / 32768.0)
#define PI 3.14159265358979323846

static const double window_ms[][2] = {
    {0, 20}, {20, 100}, {100, 500}, {500, 2000}};
#define WINDOWS (int)(sizeof window_ms / sizeof window_ms[0])

typedef struct sink {
    float *out[DEMIX_MAX_SOURCES]; /* per source, frames * ch */
    int64_t have[DEMIX_MAX_SOURCES];
    int64_t cap;
    int ch;
} sink;

static int emit(void *user, int source, const float *frames, size_t n)
{
    sink *k = user;
    int64_t room = k->cap - k->have[source];
    if ((int64_t)n > room)
        n = room > 0 ? (size_t)room : 0;
    memcpy(k->out[source] + k->have[source] * k->ch, frames,
           n * (size_t)k->ch * sizeof *frames);
    k->have[source] += (int64_t)n;
    return DEMIX_OK;
}

/* Separate in[0, n) with a fresh slot; out per source, n frames each. */
static int separate(demix_engine *eng, const demix_model_config *cfg,
                    const float *in, int64_t n, int rate, int ch, sink *k)
{
    separate_signal_params p = {.in_rate_hz = rate, .in_channels = ch,
                                .emit = emit, .user = k};
    separate_signal *sig;
    char err[512];
    if (separate_signal_create(cfg, &p, &sig, err, sizeof err)) {
        fprintf(stderr, "reprime: %s\n", err);
        return -1;
    }
    int slot;
    if (demix_engine_open_slot(eng, &slot)) {
        fprintf(stderr, "reprime: %s\n", demix_engine_last_error(eng));
        separate_signal_destroy(sig);
        return -1;
    }
    size_t C = (size_t)cfg->channels, H = (size_t)cfg->hop_samples;
    size_t T = (size_t)cfg->num_sources;
    float *ib = malloc(C * H * sizeof *ib);
    float *ob = malloc(T * C * H * sizeof *ob);
    int sb, stepped, rc = 0;
    int64_t pos = 0;
    memset(k->have, 0, sizeof k->have);
    k->cap = n;
    k->ch = ch;
    while (!rc && !separate_signal_done(sig)) {
        if (!separate_signal_hop_ready(sig)) {
            if (pos < n) {
                int64_t m = n - pos < 4096 ? n - pos : 4096;
                rc = separate_signal_push(sig, in + pos * ch, (size_t)m);
                pos += m;
            } else {
                rc = separate_signal_finish(sig);
            }
            continue;
        }
        rc = separate_signal_step(eng, &sig, &slot, 1, ib, ob, &sb, &stepped,
                                  err, sizeof err);
        if (!rc)
            rc = separate_signal_status(sig);
    }
    if (rc)
        fprintf(stderr, "reprime: separation failed: %s\n",
                separate_signal_error(sig));
    free(ib);
    free(ob);
    (void)demix_engine_close_slot(eng, slot);
    separate_signal_destroy(sig);
    return rc ? -1 : 0;
}

/* Music-like test audio: tones with vibrato, a chirp, noise bursts. */
static float *synth(int rate, int ch, int64_t n)
{
    float *x = malloc((size_t)(n * ch) * sizeof *x);
    uint64_t r = 0x9e3779b97f4a7c15ull;
    double ph[4] = {0};
    for (int64_t i = 0; i < n; i++) {
        double t = (double)i / rate;
        double beat = fmod(t, 0.5);
        double env = exp(-beat * 12.0);
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double noise = ((double)(r >> 11) / 9007199254740992.0) * 2 - 1;
        double f0 = 110 * pow(2, floor(fmod(t, 8.0) / 2) / 12.0);
        ph[0] += 2 * PI * f0 / rate;
        ph[1] += 2 * PI * (440 + 30 * sin(2 * PI * 5 * t)) / rate;
        ph[2] += 2 * PI * (300 + 2000 * fmod(t, 3.0) / 3.0) / rate;
        double v = 0.3 * sin(ph[0]) + 0.15 * sin(ph[1]) * (0.5 + 0.5 * sin(t)) +
                   0.05 * sin(ph[2]) + 0.25 * env * noise;
        for (int c = 0; c < ch; c++)
            x[i * ch + c] = (float)(v * (c ? 0.9 : 1.0));
    }
    return x;
}

static float *read_file(const char *path, int *rate, int *ch, int64_t *n)
{
    audio_reader *rd;
    char err[512];
    if (audio_reader_open(path, &rd, err, sizeof err)) {
        fprintf(stderr, "reprime: %s\n", err);
        return NULL;
    }
    const audio_info *info = audio_reader_info(rd);
    *rate = info->rate_hz;
    *ch = info->channels;
    size_t cap = 1 << 20, len = 0;
    float *x = malloc(cap * (size_t)*ch * sizeof *x);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            x = realloc(x, cap * (size_t)*ch * sizeof *x);
        }
        size_t m = audio_reader_read(rd, x + len * (size_t)*ch, 4096);
        if (m == 0)
            break;
        len += m;
    }
    audio_reader_close(rd);
    *n = (int64_t)len;
    return x;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *input = NULL;
    double seconds = 30;
    int seams = 4, align = 0, threads = 1;
    double tails[MAX_TAILS] = {0, 50, 100, 200, 300, 500, 1000};
    int ntails = 7;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v)
            model_path = argv[++i];
        else if (!strcmp(a, "--input") && v)
            input = argv[++i];
        else if (!strcmp(a, "--seconds") && v)
            seconds = atof(argv[++i]);
        else if (!strcmp(a, "--seams") && v)
            seams = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v)
            threads = atoi(argv[++i]);
        else if (!strcmp(a, "--align"))
            align = 1;
        else if (!strcmp(a, "--tails") && v) {
            ntails = 0;
            for (char *p = argv[++i]; *p && ntails < MAX_TAILS;) {
                tails[ntails++] = strtod(p, &p);
                if (*p == ',')
                    p++;
            }
        } else {
            fprintf(stderr, "usage: reprime --model M [--input FILE] "
                            "[--seconds S] [--seams K] [--tails L,...] "
                            "[--align] [--threads N]\n");
            return 2;
        }
    }
    if (!model_path || seams < 1 || seams > MAX_SEAMS) {
        fprintf(stderr, "reprime: --model is required; 1..%d seams\n",
                MAX_SEAMS);
        return 2;
    }
    demix_model *model;
    char err[512];
    if (demix_model_load(model_path, &model, err, sizeof err)) {
        fprintf(stderr, "reprime: %s\n", err);
        return 1;
    }
    const demix_model_config *cfg = demix_model_get_config(model);
    demix_threadpool *pool = NULL;
    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = DEMIX_BACKEND_CPU;
    eo.max_slots = 1;
    if (threads > 1) {
        if (demix_threadpool_create(threads, &pool)) {
            fprintf(stderr, "reprime: no thread pool\n");
            return 1;
        }
        eo.pool = pool;
    }
    demix_engine *eng;
    if (demix_engine_create(model, &eo, &eng, err, sizeof err)) {
        fprintf(stderr, "reprime: %s\n", err);
        return 1;
    }

    int rate = cfg->sample_rate_hz, ch = 2;
    int64_t n;
    float *x;
    if (input) {
        x = read_file(input, &rate, &ch, &n);
        if (!x)
            return 1;
        if (n > (int64_t)(seconds * rate))
            n = (int64_t)(seconds * rate);
    } else {
        n = (int64_t)(seconds * rate);
        x = synth(rate, ch, n);
    }
    int64_t after = (int64_t)(AFTER_S * rate);
    double tail_max = 0;
    for (int t = 0; t < ntails; t++)
        if (tails[t] > tail_max)
            tail_max = tails[t];
    /* The hop grid in client frames: H model frames. */
    int64_t H = cfg->hop_samples;
    int64_t g = H * rate / gcd64(cfg->sample_rate_hz, H * rate);
    if (align && g > rate) {
        fprintf(stderr, "reprime: the hop grid is %lld frames (over 1 s); "
                        "not aligning\n", (long long)g);
        align = 0;
    }
    /* Seams spread over the signal, after the longest tail. */
    int64_t first = (int64_t)(tail_max / 1000 * rate) + rate;
    int64_t margin = (int64_t)(MARGIN_S * rate);
    int64_t last = n - after - margin;
    if (last <= first) {
        fprintf(stderr, "reprime: the signal is too short\n");
        return 1;
    }
    int64_t seam[MAX_SEAMS];
    for (int s = 0; s < seams; s++)
        seam[s] = first + (last - first) * (2 * s + 1) / (2 * seams) + 137;

    fprintf(stderr, "reprime: %s, %s; %d Hz x %d, %.1f s; model %d Hz hop "
                    "%lld; %d seams\n",
            model_path, input ? input : "synthetic", rate, ch,
            (double)n / rate, cfg->sample_rate_hz, (long long)H, seams);
    sink ref = {0}, res = {0};
    int T = cfg->num_sources;
    for (int t = 0; t < T; t++) {
        ref.out[t] = malloc((size_t)(n * ch) * sizeof(float));
        res.out[t] = malloc((size_t)(n * ch) * sizeof(float));
    }
    if (separate(eng, cfg, x, n, rate, ch, &ref))
        return 1;

    for (int ti = 0; ti < ntails; ti++) {
        double ref_e[WINDOWS] = {0}, err_e[WINDOWS] = {0}, maxd[WINDOWS] = {0};
        double settle_max_ms = 0, settle_sum_ms = 0;
        for (int s = 0; s < seams; s++) {
            int64_t R = seam[s];
            int64_t base = R - (int64_t)(tails[ti] / 1000 * rate + 0.5);
            if (base < 0)
                base = 0;
            if (align)
                base = base / g * g;
            int64_t len = R + after + margin - base;
            if (separate(eng, cfg, x + base * ch, len, rate, ch, &res))
                return 1;
            int64_t settle = 0;
            for (int t = 0; t < T; t++) {
                for (int64_t i = 0; i < after; i++) {
                    double ms = 1000.0 * i / rate;
                    int w = 0;
                    while (w < WINDOWS && ms >= window_ms[w][1])
                        w++;
                    for (int c = 0; c < ch; c++) {
                        double a = ref.out[t][(R + i) * ch + c];
                        double b = res.out[t][(R - base + i) * ch + c];
                        double d = fabs(a - b);
                        if (w < WINDOWS) {
                            ref_e[w] += a * a;
                            err_e[w] += d * d;
                            if (d > maxd[w])
                                maxd[w] = d;
                        }
                        if (d > LSB && i + 1 > settle)
                            settle = i + 1;
                    }
                }
            }
            double sm = 1000.0 * settle / rate;
            settle_sum_ms += sm;
            if (sm > settle_max_ms)
                settle_max_ms = sm;
        }
        for (int w = 0; w < WINDOWS; w++)
            printf("tail_ms=%g align=%d window_ms=[%g,%g) sdr_db=%.1f "
                   "max_abs=%.2e seams=%d\n",
                   tails[ti], align, window_ms[w][0], window_ms[w][1],
                   err_e[w] > 0 ? 10 * log10(ref_e[w] / err_e[w]) : INFINITY,
                   maxd[w], seams);
        printf("tail_ms=%g align=%d settle_ms_mean=%.0f settle_ms_max=%.0f "
               "(of %.0f compared; settle: no difference above 1/32768 "
               "after it)\n",
               tails[ti], align, settle_sum_ms / seams, settle_max_ms,
               AFTER_S * 1000);
        fflush(stdout);
    }
    for (int t = 0; t < T; t++) {
        free(ref.out[t]);
        free(res.out[t]);
    }
    free(x);
    demix_engine_destroy(eng);
    demix_threadpool_destroy(pool);
    demix_model_destroy(model);
    return 0;
}
