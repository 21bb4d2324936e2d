/*
 * test_separate.c - `demix separate` end to end: the real binary (DEMIX_BIN)
 * run on audio files written here with libsndfile, its outputs read back.
 *
 * Models are written by the test: a tiny random network at 32 kHz
 * (D=24, NB=40) for the real signal path, and "identity" networks whose
 * every source is ID_GAIN = 1/4 of the input (spectral masks 1, waveform
 * masks 0: the overlap-add gives back each hop exactly, model-spec.md
 * steps 6-9, and the mixture-consistency projection of docs/model.md then
 * leaves 1/T of it in each of the T = 4 sources). With those, output
 * sample k must equal ID_GAIN times input sample k: through a 44.1 or
 * 48 kHz -> 32 kHz -> back resampling path up to the resampler's error
 * (correlation peak at lag 0, SNR > 30 dB on band-limited content), and to
 * float rounding when the rates match. So alignment, length, rate, channel
 * handling and the end padding are all checked against the input itself.
 *
 * Cases: (a) 44.1 kHz stereo WAV through the 32 kHz models: 4 files, exact
 * frames, 44100 Hz, 2 channels, 16-bit, aligned; (b) 48 kHz mono FLAC: mono
 * 48 kHz outputs, exact length, aligned, 16-bit by default and float with
 * --float32; (c) a model at the input's rate: outputs equal the input to
 * float rounding, and 16-bit output of louder input is clipped with a
 * warning; (d) an unreadable input among two good ones; (e) a bad
 * model path or file; (f) --stems; (g) an --out that cannot be created;
 * (h) the stems add up to the input (docs/model.md): tests/data/tiny
 * .safetensors at its own rate (44.1 kHz), seeded noise and tones: with
 * --float32 the residual 10 log10(|x - sum_t s_t|^2 / |x|^2) is at most
 * -60 dB (float rounding: about -140); in 16-bit files each stem is
 * rounded on its own, so |x - sum_t s_t| <= T/2 steps per sample and the
 * residual stays below -60 dB at this level (about -80).
 * (i) inputs of the same file name in different folders: refused together,
 * never overwritten by a later run, --name-by parent, --overwrite.
 */
#include "testutil.h"
#include "audio_files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sndfile.h>

#include "engine.h"
#include "model_impl.h"

#define D_TINY 24
#define NB_TINY 40
#define FADE_S 0.02
/* Every stem of an identity model: 1/T of the input (exact in binary). */
#define ID_GAIN 0.25f

static struct {
    char dir[256];
    char model_random32[512];
    char model_id32[512];
    char model_id44[512];
    const char *bin;
    char stderr_text[16384];
} g;

static const char *const sources[] = {"drums", "bass", "vocals", "other"};

/* ------------------------------------------------------------ helpers */

static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Band-limited test content (< 10 kHz, under every resampler's passband
 * here): a linear chirp 100 Hz -> 9 kHz plus three tones, faded in and out,
 * different per channel. */
static float *make_signal(int rate, int channels, size_t frames)
{
    float *x = malloc(frames * (size_t)channels * sizeof *x);
    assert_non_null(x);
    double dur = (double)frames / rate;
    for (size_t i = 0; i < frames; i++) {
        double t = (double)i / rate;
        double fade = 1.0;
        if (t < FADE_S)
            fade = 0.5 - 0.5 * cos(DEMIX_PI * t / FADE_S);
        else if (dur - t < FADE_S)
            fade = 0.5 - 0.5 * cos(DEMIX_PI * (dur - t) / FADE_S);
        double f0 = 100.0, f1 = 9000.0;
        double chirp = sin(2 * DEMIX_PI * (f0 * t + 0.5 * (f1 - f0) / dur * t * t));
        for (int c = 0; c < channels; c++) {
            double v = 0.35 * chirp + 0.2 * sin(2 * DEMIX_PI * 330.0 * t + c) +
                       0.1 * sin(2 * DEMIX_PI * 2500.0 * t + 0.7 * c) +
                       0.05 * sin(2 * DEMIX_PI * (6000.0 + 500.0 * c) * t);
            x[i * (size_t)channels + (size_t)c] = (float)(fade * v);
        }
    }
    return x;
}

/* The input as it reads back (16-bit files are quantised). */
static float *read_input(const char *path, SF_INFO *info)
{
    return demix_test_read_audio(path, info);
}

/* Run demix with the given arguments; stderr kept in g.stderr_text. */
static int demix(const char *fmt, ...) DEMIX_PRINTF(1, 2);
static int demix(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return demix_test_run_tool(g.bin, args, g.dir, NULL, 0, g.stderr_text,
                               sizeof g.stderr_text);
}

/* Check one output of an identity model against its input: same length,
 * rate, channels, file subtype; the correlation of each channel peaks at
 * lag 0 within +-max_lag; SNR (output vs ID_GAIN * input) above
 * min_snr_db. */
static void check_output(const char *path, const float *in, const SF_INFO *in_info,
                         int subtype, double min_snr_db)
{
    SF_INFO info;
    float *y = demix_test_read_audio(path, &info);
    assert_int_equal(info.frames, in_info->frames);
    assert_int_equal(info.samplerate, in_info->samplerate);
    assert_int_equal(info.channels, in_info->channels);
    assert_int_equal(info.format & SF_FORMAT_TYPEMASK, SF_FORMAT_WAV);
    assert_int_equal(info.format & SF_FORMAT_SUBMASK, subtype);
    size_t n = (size_t)info.frames;
    int ch = info.channels;
    const int max_lag = 40;
    for (int c = 0; c < ch; c++) {
        int best = 0;
        double best_corr = -INFINITY;
        for (int lag = -max_lag; lag <= max_lag; lag++) {
            double s = 0;
            for (size_t i = (size_t)max_lag; i + (size_t)max_lag < n; i++)
                s += (double)in[i * (size_t)ch + (size_t)c] *
                     y[(size_t)((long)i + lag) * (size_t)ch + (size_t)c];
            if (s > best_corr)
                best_corr = s, best = lag;
        }
        double sig = 0, err = 0;
        for (size_t i = 0; i < n; i++) {
            double a = ID_GAIN * in[i * (size_t)ch + (size_t)c];
            double d = y[i * (size_t)ch + (size_t)c] - a;
            sig += a * a;
            err += d * d;
        }
        double snr = 10.0 * log10(sig / fmax(err, 1e-30));
        print_message("%s ch %d: correlation peak at lag %d, SNR %.1f dB\n",
                      path, c, best, snr);
        assert_int_equal(best, 0);
        assert_true(snr > min_snr_db);
    }
    free(y);
}

static void stem_path(char *out, size_t cap, const char *outdir,
                      const char *name, const char *source)
{
    snprintf(out, cap, "%s/%s/%s.wav", outdir, name, source);
}

/* An identity network: every source is ID_GAIN times the input (see the
 * file header). */
static void save_identity_model(const char *path, int rate, uint64_t seed)
{
    demix_model *m;
    assert_int_equal(demix_model_create_random(D_TINY, NB_TINY, 0, rate, seed, &m), 0);
    const demix_model_config *c = demix_model_get_config(m);
    size_t spec_rows = (size_t)c->num_sources * (size_t)c->spec_features;
    size_t wave_rows = (size_t)c->num_sources * (size_t)c->num_basis;
    memset(m->spec_mask_w, 0, spec_rows * (size_t)c->dim * sizeof(float));
    for (size_t i = 0; i < spec_rows; i++)
        m->spec_mask_b[i] = 1.0f;
    memset(m->wave_mask_w, 0, wave_rows * (size_t)c->dim * sizeof(float));
    memset(m->wave_mask_b, 0, wave_rows * sizeof(float));
    char err[512];
    int rc = demix__model_save(m, path, DEMIX_DTYPE_F32, err, sizeof err);
    if (rc)
        print_error("save %s: %s\n", path, err);
    assert_int_equal(rc, 0);
    demix_model_destroy(m);
}

static int setup(void **state)
{
    (void)state;
    g.bin = getenv("DEMIX_BIN");
    if (!g.bin || !path_exists(g.bin)) {
        print_error("DEMIX_BIN is not set to the demix binary\n");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    uint64_t seed = demix_test_seed();
    snprintf(g.model_random32, sizeof g.model_random32, "%s/random32k.safetensors", g.dir);
    snprintf(g.model_id32, sizeof g.model_id32, "%s/identity32k.safetensors", g.dir);
    snprintf(g.model_id44, sizeof g.model_id44, "%s/identity44k.safetensors", g.dir);
    demix_model *m;
    if (demix_model_create_random(D_TINY, NB_TINY, 0, 32000, seed, &m))
        return -1;
    char err[512];
    int rc = demix__model_save(m, g.model_random32, DEMIX_DTYPE_F32, err, sizeof err);
    demix_model_destroy(m);
    if (rc) {
        print_error("save: %s\n", err);
        return -1;
    }
    save_identity_model(g.model_id32, 32000, seed + 1);
    save_identity_model(g.model_id44, 44100, seed + 2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    demix_test_rmtree(g.dir);
    return 0;
}

/* ------------------------------------------------------------- tests */

/* (a) 44.1 kHz stereo WAV through 32 kHz models. */
static void test_stereo_44k_wav_through_32k_model(void **state)
{
    (void)state;
    char in_path[512], out[512], p[1024];
    size_t frames = 3 * 44100 + 321; /* not a whole number of hops */
    float *x = make_signal(44100, 2, frames);
    snprintf(in_path, sizeof in_path, "%s/song_a.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, x, frames);
    free(x);
    SF_INFO in_info;
    float *in = read_input(in_path, &in_info);

    snprintf(out, sizeof out, "%s/out_a", g.dir);
    assert_int_equal(demix("separate --threads 1 --model '%s' --out '%s' '%s'",
                           g.model_id32, out, in_path), 0);
    assert_non_null(strstr(g.stderr_text, "backend"));
    for (int s = 0; s < 4; s++) {
        stem_path(p, sizeof p, out, "song_a", sources[s]);
        assert_non_null(strstr(g.stderr_text, p)); /* "wrote PATH" */
        check_output(p, in, &in_info, SF_FORMAT_PCM_16, 30.0);
    }

    /* The real network path (random weights): files of the right shape. */
    snprintf(out, sizeof out, "%s/out_a_random", g.dir);
    assert_int_equal(demix("separate --threads 1 --model '%s' --out '%s' '%s'",
                           g.model_random32, out, in_path), 0);
    for (int s = 0; s < 4; s++) {
        SF_INFO info;
        stem_path(p, sizeof p, out, "song_a", sources[s]);
        float *y = demix_test_read_audio(p, &info);
        assert_int_equal(info.frames, in_info.frames);
        assert_int_equal(info.samplerate, 44100);
        assert_int_equal(info.channels, 2);
        assert_int_equal(info.format & SF_FORMAT_SUBMASK, SF_FORMAT_PCM_16);
        double energy = 0;
        for (size_t i = 0; i < 2 * frames; i++) {
            assert_true(isfinite(y[i]));
            energy += (double)y[i] * y[i];
        }
        assert_true(energy > 0.0);
        free(y);
    }
    free(in);
}

/* (b) 48 kHz mono FLAC: mono 48 kHz outputs, 16-bit and --float32. */
static void test_mono_48k_flac(void **state)
{
    (void)state;
    char in_path[512], out[512], p[1024];
    size_t frames = 2 * 48000 + 1001;
    float *x = make_signal(48000, 1, frames);
    snprintf(in_path, sizeof in_path, "%s/song_b.flac", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 48000, 1, x, frames);
    free(x);
    SF_INFO in_info;
    float *in = read_input(in_path, &in_info);
    assert_int_equal(in_info.frames, (sf_count_t)frames);

    snprintf(out, sizeof out, "%s/out_b16", g.dir);
    assert_int_equal(demix("separate --threads 1 --model '%s' --out '%s' '%s'",
                           g.model_id32, out, in_path), 0);
    for (int s = 0; s < 4; s++) {
        stem_path(p, sizeof p, out, "song_b", sources[s]);
        check_output(p, in, &in_info, SF_FORMAT_PCM_16, 30.0);
    }
    snprintf(out, sizeof out, "%s/out_bf", g.dir);
    assert_int_equal(demix("separate --float32 --threads 1 --model '%s' --out '%s' '%s'",
                           g.model_id32, out, in_path), 0);
    for (int s = 0; s < 4; s++) {
        stem_path(p, sizeof p, out, "song_b", sources[s]);
        check_output(p, in, &in_info, SF_FORMAT_FLOAT, 30.0);
    }
    free(in);
}

/* (c) Model at the input's rate: no resampling, output = ID_GAIN * input. */
static void test_same_rate_is_exact(void **state)
{
    (void)state;
    char in_path[512], out[512], p[1024];
    size_t frames = 44100 + 77;
    float *x = make_signal(44100, 2, frames);
    snprintf(in_path, sizeof in_path, "%s/song_c.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 2, x, frames);
    SF_INFO in_info;
    float *in = read_input(in_path, &in_info);

    snprintf(out, sizeof out, "%s/out_c", g.dir);
    assert_int_equal(demix("separate --float32 --threads 1 --model '%s' --out '%s' '%s'",
                           g.model_id44, out, in_path), 0);
    for (int s = 0; s < 4; s++) {
        SF_INFO info;
        stem_path(p, sizeof p, out, "song_c", sources[s]);
        float *y = demix_test_read_audio(p, &info);
        assert_int_equal(info.frames, (sf_count_t)frames);
        assert_int_equal(info.samplerate, 44100);
        assert_int_equal(info.channels, 2);
        assert_int_equal(info.format & SF_FORMAT_SUBMASK, SF_FORMAT_FLOAT);
        double diff = 0;
        for (size_t i = 0; i < 2 * frames; i++)
            diff = fmax(diff, fabs((double)y[i] - ID_GAIN * in[i]));
        print_message("%s: max |out - in / 4| = %.3g\n", p, diff);
        assert_true(diff < 1e-5);
        free(y);
    }
    free(in);
    free(x);
}

/* (c') 16-bit output of samples beyond full scale: clipped, counted,
 * warned about. */
static void test_pcm16_clipping_is_reported(void **state)
{
    (void)state;
    char in_path[512], out[512], p[1024];
    size_t frames = 8000;
    float *x = make_signal(44100, 2, frames);
    for (size_t i = 0; i < 2 * frames; i++)
        x[i] *= 12.0f; /* peaks near 8: stems (a quarter) near 2 */
    snprintf(in_path, sizeof in_path, "%s/loud.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 2, x, frames);
    SF_INFO in_info;
    float *in = read_input(in_path, &in_info);

    snprintf(out, sizeof out, "%s/out_loud", g.dir);
    assert_int_equal(demix("separate --threads 1 --stems bass --model '%s' "
                           "--out '%s' '%s'", g.model_id44, out, in_path), 0);
    assert_non_null(strstr(g.stderr_text, "clipped"));
    SF_INFO info;
    stem_path(p, sizeof p, out, "loud", "bass");
    float *y = demix_test_read_audio(p, &info);
    assert_int_equal(info.frames, (sf_count_t)frames);
    for (size_t i = 0; i < 2 * frames; i++) {
        float q = ID_GAIN * in[i];
        float want = q > 1.0f ? 1.0f : q < -1.0f ? -1.0f : q;
        assert_true(fabsf(y[i] - want) <= 1.0f / 32768.0f + 1e-6f);
    }
    free(y);
    free(in);
    free(x);
}

/* (d) One unreadable input among two good ones. */
static void test_bad_input_does_not_stop_others(void **state)
{
    (void)state;
    char good1[512], good2[512], bad[512], out[512], p[1024];
    size_t frames = 22050;
    float *x = make_signal(44100, 2, frames);
    snprintf(good1, sizeof good1, "%s/good1.wav", g.dir);
    snprintf(good2, sizeof good2, "%s/good2.wav", g.dir);
    snprintf(bad, sizeof bad, "%s/x.wav", g.dir);
    demix_test_write_audio(good1, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, x, frames);
    demix_test_write_audio(good2, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, x, frames);
    free(x);
    FILE *f = fopen(bad, "wb");
    assert_non_null(f);
    for (int i = 0; i < 1000; i++)
        fputc((i * 7919) & 0xff, f);
    fclose(f);

    snprintf(out, sizeof out, "%s/out_d", g.dir);
    assert_int_equal(demix("separate --threads 1 --model '%s' --out '%s' '%s' '%s' '%s'",
                           g.model_random32, out, good1, bad, good2), 1);
    assert_non_null(strstr(g.stderr_text, bad));
    for (int s = 0; s < 4; s++) {
        stem_path(p, sizeof p, out, "good1", sources[s]);
        assert_true(path_exists(p));
        stem_path(p, sizeof p, out, "good2", sources[s]);
        assert_true(path_exists(p));
    }
    snprintf(p, sizeof p, "%s/x", out);
    assert_false(path_exists(p));
}

/* (e) A model path that does not exist, and a file that is no model. */
static void test_bad_model(void **state)
{
    (void)state;
    char in_path[512], out[512], missing[512], junk[512];
    size_t frames = 4096;
    float *x = make_signal(44100, 2, frames);
    snprintf(in_path, sizeof in_path, "%s/song_e.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, x, frames);
    free(x);

    snprintf(out, sizeof out, "%s/out_e", g.dir);
    snprintf(missing, sizeof missing, "%s/no-such-model.safetensors", g.dir);
    int rc = demix("separate --model '%s' --out '%s' '%s'", missing, out, in_path);
    assert_true(rc != 0);
    assert_non_null(strstr(g.stderr_text, missing));
    assert_false(path_exists(out));

    snprintf(junk, sizeof junk, "%s/junk.safetensors", g.dir);
    FILE *f = fopen(junk, "wb");
    assert_non_null(f);
    fputs("this is not a safetensors file", f);
    fclose(f);
    rc = demix("separate --model '%s' --out '%s' '%s'", junk, out, in_path);
    assert_true(rc != 0);
    assert_non_null(strstr(g.stderr_text, "cannot load model"));
    assert_non_null(strstr(g.stderr_text, junk));
    assert_false(path_exists(out));
}

/* (f) --stems writes only those; an unknown stem is an error. */
static void test_stems_subset(void **state)
{
    (void)state;
    char in_path[512], out[512], p[1024];
    size_t frames = 20000;
    float *x = make_signal(44100, 2, frames);
    snprintf(in_path, sizeof in_path, "%s/song_f.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, x, frames);
    free(x);
    SF_INFO in_info;
    float *in = read_input(in_path, &in_info);

    snprintf(out, sizeof out, "%s/out_f", g.dir);
    assert_int_equal(demix("separate --threads 1 --stems vocals,drums --model '%s' "
                           "--out '%s' '%s'", g.model_id32, out, in_path), 0);
    for (int s = 0; s < 4; s++) {
        stem_path(p, sizeof p, out, "song_f", sources[s]);
        int wanted = strcmp(sources[s], "vocals") == 0 || strcmp(sources[s], "drums") == 0;
        assert_int_equal(path_exists(p), wanted);
        if (wanted)
            check_output(p, in, &in_info, SF_FORMAT_PCM_16, 30.0);
    }
    free(in);

    snprintf(out, sizeof out, "%s/out_f2", g.dir);
    int rc = demix("separate --stems vocals,piano --model '%s' --out '%s' '%s'",
                   g.model_id32, out, in_path);
    assert_true(rc != 0);
    assert_non_null(strstr(g.stderr_text, "piano"));
    assert_non_null(strstr(g.stderr_text, "drums, bass, vocals, other"));
    assert_false(path_exists(out));
}

/* (g) An output folder under a regular file cannot be made. */
static void test_unwritable_out(void **state)
{
    (void)state;
    char in_path[512], blocker[512], out[600];
    size_t frames = 4096;
    float *x = make_signal(44100, 2, frames);
    snprintf(in_path, sizeof in_path, "%s/song_g.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, x, frames);
    free(x);
    snprintf(blocker, sizeof blocker, "%s/blocker", g.dir);
    FILE *f = fopen(blocker, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(out, sizeof out, "%s/out", blocker);
    int rc = demix("separate --model '%s' --out '%s' '%s'", g.model_id32, out, in_path);
    assert_true(rc != 0);
    assert_non_null(strstr(g.stderr_text, blocker));
    assert_non_null(strstr(g.stderr_text, "Not a directory"));
}

/* (h) */
static double residual_db(const float *x, float *const *stem, size_t n,
                          double *max_abs)
{
    double err = 0, sig = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        for (int t = 0; t < 4; t++)
            sum += stem[t][i];
        double d = (double)x[i] - sum;
        err += d * d;
        sig += (double)x[i] * x[i];
        *max_abs = fmax(*max_abs, fabs(d));
    }
    return err > 0 ? 10.0 * log10(err / sig) : -INFINITY;
}

static void test_stems_add_up_to_the_input(void **state)
{
    (void)state;
    char in_path[512], out[512], p[1024];
    size_t frames = 2 * 44100 + 999;
    float *x = demix_test_noisy_signal(44100, 2, (int64_t)frames,
                                       demix_test_seed());
    snprintf(in_path, sizeof in_path, "%s/song_h.wav", g.dir);
    demix_test_write_audio(in_path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 2,
                           x, (int64_t)frames);
    free(x);
    SF_INFO in_info;
    float *in = read_input(in_path, &in_info);
    const char *tiny = demix_test_data_path("tiny.safetensors");
    for (int f32 = 1; f32 >= 0; f32--) {
        snprintf(out, sizeof out, "%s/out_h%d", g.dir, f32);
        assert_int_equal(demix("separate %s--threads 1 --model '%s' --out "
                               "'%s' '%s'",
                               f32 ? "--float32 " : "", tiny, out, in_path),
                         0);
        float *stem[4];
        for (int s = 0; s < 4; s++) {
            SF_INFO info;
            stem_path(p, sizeof p, out, "song_h", sources[s]);
            stem[s] = demix_test_read_audio(p, &info);
            assert_int_equal(info.frames, (sf_count_t)frames);
        }
        double mx;
        double db = residual_db(in, stem, 2 * frames, &mx);
        print_message("%s stems: residual %.1f dB, max |x - sum| %.3g (%.2f "
                      "16-bit steps)\n",
                      f32 ? "float" : "16-bit", db, mx, mx * 32768.0);
        assert_true(db <= -60.0);
        if (!f32)
            assert_true(mx <= 2.01 / 32768.0);
        for (int s = 0; s < 4; s++)
            free(stem[s]);
    }
    free(in);
}

/* (i) Inputs that share a file name (a dataset's a/mixture.wav and
 * b/mixture.wav): together they are refused (one output folder for two
 * inputs) with a hint at --name-by parent; a later run never overwrites an
 * earlier run's stems (the input is an error, the stems stay as they
 * were); --name-by parent names each by its folder; --overwrite
 * replaces. The identity model at the inputs' rate: a stem is ID_GAIN
 * times its input, so whose stems a folder holds is checked sample by
 * sample. */
static double stem_diff_from_input(const char *stem_path,
                                   const char *input_path)
{
    SF_INFO a, b;
    float *s = demix_test_read_audio(stem_path, &a);
    float *x = demix_test_read_audio(input_path, &b);
    assert_int_equal(a.frames, b.frames);
    assert_int_equal(a.channels, b.channels);
    size_t n = (size_t)(b.frames * b.channels);
    for (size_t i = 0; i < n; i++)
        x[i] *= ID_GAIN;
    double d = demix_test_max_abs_diff(s, x, n);
    free(s);
    free(x);
    return d;
}

static void test_same_file_names_in_folders(void **state)
{
    (void)state;
    char da[512], db[512], ia[600], ib[600], out[512], p[1024], q[1024];
    snprintf(da, sizeof da, "%s/set/Song A", g.dir);
    snprintf(db, sizeof db, "%s/set/Song B", g.dir);
    assert_int_equal(demix_test_system("mkdir -p '%s' '%s'", da, db), 0);
    snprintf(ia, sizeof ia, "%s/mixture.wav", da);
    snprintf(ib, sizeof ib, "%s/mixture.wav", db);
    size_t frames = 44100 / 2 + 99;
    float *x = make_signal(44100, 2, frames);
    demix_test_write_audio(ia, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 2, x,
                           frames);
    for (size_t i = 0; i < 2 * frames; i++)
        x[i] *= -0.5f; /* B differs from A */
    demix_test_write_audio(ib, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 2, x,
                           frames);
    free(x);
    snprintf(out, sizeof out, "%s/out_h", g.dir);

    /* together: one output folder for two inputs */
    assert_int_equal(demix("separate --float32 --threads 1 --model '%s' "
                           "--out '%s' '%s' '%s'",
                           g.model_id44, out, ia, ib),
                     1);
    assert_non_null(strstr(g.stderr_text, "already used by"));
    assert_non_null(strstr(g.stderr_text, "--name-by parent"));
    stem_path(p, sizeof p, out, "mixture", "vocals");
    assert_true(stem_diff_from_input(p, ia) < 1e-5); /* A's stems */

    /* a later run of B into the same place: refused, A's stems stay */
    assert_int_equal(demix("separate --float32 --threads 1 --model '%s' "
                           "--out '%s' '%s'",
                           g.model_id44, out, ib),
                     1);
    assert_non_null(strstr(g.stderr_text, "exists"));
    assert_non_null(strstr(g.stderr_text, "--overwrite"));
    assert_true(stem_diff_from_input(p, ia) < 1e-5);

    /* --name-by parent: out/Song A, out/Song B */
    assert_int_equal(demix("separate --float32 --threads 1 --name-by parent "
                           "--model '%s' --out '%s' '%s' '%s'",
                           g.model_id44, out, ia, ib),
                     0);
    stem_path(q, sizeof q, out, "Song A", "vocals");
    assert_true(stem_diff_from_input(q, ia) < 1e-5);
    stem_path(q, sizeof q, out, "Song B", "vocals");
    assert_true(stem_diff_from_input(q, ib) < 1e-5);

    /* --overwrite: B replaces A in out/mixture */
    assert_int_equal(demix("separate --float32 --threads 1 --overwrite "
                           "--model '%s' --out '%s' '%s'",
                           g.model_id44, out, ib),
                     0);
    assert_true(stem_diff_from_input(p, ib) < 1e-5);

    assert_int_equal(demix("separate --name-by folder '%s'", ia), 2);
    assert_non_null(strstr(g.stderr_text, "--name-by"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stereo_44k_wav_through_32k_model),
        cmocka_unit_test(test_mono_48k_flac),
        cmocka_unit_test(test_same_rate_is_exact),
        cmocka_unit_test(test_pcm16_clipping_is_reported),
        cmocka_unit_test(test_bad_input_does_not_stop_others),
        cmocka_unit_test(test_bad_model),
        cmocka_unit_test(test_stems_subset),
        cmocka_unit_test(test_unwritable_out),
        cmocka_unit_test(test_stems_add_up_to_the_input),
        cmocka_unit_test(test_same_file_names_in_folders),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
