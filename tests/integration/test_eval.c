/*
 * test_eval.c - `demix eval` end to end: the real binary (DEMIX_BIN) on
 * small data sets written here with libsndfile, its JSON read back with
 * cJSON.
 *
 * Cases: (a) --estimates with known errors: every estimate is its
 * reference plus g times the reference, so each SDR is -20 log10|g|
 * exactly; a missing and a silent reference are n/a (null) and left out of
 * the medians (odd and even counts); the medians and the mean SDR are
 * checked against those known answers to 1e-3 dB, and the table prints
 * the same; (b) the model path: tests/data/tiny.safetensors (44.1 kHz,
 * random weights) on a 48 kHz data set (a stereo and a mono track), so
 * the mixture is resampled there and back; every figure is finite and
 * equals the SDR computed here from `demix separate --float32`'s files of
 * the same mixtures; (c) errors, each exit 1 with a message naming the
 * file and nothing on stdout: no track folders, a track without mixture,
 * an unreadable file, a channel count, a sample rate and a length that
 * differ from the mixture, two files for one source, a missing estimate;
 * (d) usage errors, exit 2.
 */
#include "testutil.h"
#include "audio_files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sndfile.h>

#include "demix_error.h"

#define PI 3.14159265358979323846
#define N_SOURCES 4
#define TOL_DB 1e-3

static const char *const sources[N_SOURCES] = {"drums", "bass", "vocals",
                                               "other"};

static struct {
    char dir[256];
    const char *bin;
    char stdout_text[65536];
    char stderr_text[16384];
} g;

/* Run demix with the given arguments; stdout and stderr kept in g. */
static int demix(const char *fmt, ...) DEMIX_PRINTF(1, 2);
static int demix(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return demix_test_run_tool(g.bin, args, g.dir, g.stdout_text,
                               sizeof g.stdout_text, g.stderr_text,
                               sizeof g.stderr_text);
}

static void make_dir(const char *fmt, ...) DEMIX_PRINTF(1, 2);
static void make_dir(const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    assert_int_equal(demix_test_system("mkdir -p '%s'", path), 0);
}

/* A source of its own: two tones (per source and track), faded in and out,
 * a phase per channel. */
static float *make_source(int rate, int channels, size_t frames, int track,
                          int source)
{
    float *x = malloc(frames * (size_t)channels * sizeof *x);
    assert_non_null(x);
    double f1 = 110.0 * (source + 1) + 17.0 * track;
    double f2 = 1000.0 + 530.0 * source + 41.0 * track;
    for (size_t i = 0; i < frames; i++) {
        double t = (double)i / rate;
        double fade = fmin(1.0, fmin((double)i, (double)(frames - 1 - i)) /
                                    (0.01 * rate));
        for (int c = 0; c < channels; c++)
            x[i * (size_t)channels + (size_t)c] =
                (float)(fade * (0.15 * sin(2 * PI * f1 * t + 0.4 * c) +
                                0.05 * sin(2 * PI * f2 * t + 1.1 * c)));
    }
    return x;
}

static void write_float_wav(const char *path, int rate, int channels,
                            const float *x, size_t frames)
{
    demix_test_write_audio(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, rate,
                           channels, x, (int64_t)frames);
}

/* SDR of est against ref, computed here on its own (double sums). NAN for
 * a silent reference, as the tool defines it. */
static double sdr_db(const float *ref, const float *est, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)ref[i] - (double)est[i];
        num += (double)ref[i] * ref[i];
        den += d * d;
    }
    if (num / (double)n < 1.0 / (32768.0 * 32768.0))
        return NAN;
    return 10.0 * log10(num / den);
}

/* Median with the NANs left out (NAN when none is left). */
static double median(const double *v, int n)
{
    double s[16];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            s[m++] = v[i];
    for (int i = 1; i < m; i++) /* insertion sort */
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            double t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    if (m == 0)
        return NAN;
    return m % 2 ? s[m / 2] : 0.5 * (s[m / 2 - 1] + s[m / 2]);
}

/* want NAN: the JSON value must be null; else a number within TOL_DB. */
static void check_value(const cJSON *v, double want, const char *what)
{
    assert_non_null(v);
    if (isnan(want)) {
        if (!cJSON_IsNull(v))
            print_error("%s: want null, got %g\n", what, v->valuedouble);
        assert_true(cJSON_IsNull(v));
        return;
    }
    assert_true(cJSON_IsNumber(v));
    print_message("%s: %.6f (want %.6f)\n", what, v->valuedouble, want);
    assert_true(isfinite(v->valuedouble));
    assert_true(fabs(v->valuedouble - want) < TOL_DB);
}

/* Check the JSON output against want[track][source]; the medians and the
 * mean against those computed here from want. */
static void check_json(const char *text, int n_tracks,
                       const char *const *track_names,
                       double want[][N_SOURCES])
{
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    const cJSON *tracks = cJSON_GetObjectItemCaseSensitive(root, "tracks");
    assert_true(cJSON_IsArray(tracks));
    assert_int_equal(cJSON_GetArraySize(tracks), n_tracks);
    char what[256];
    for (int i = 0; i < n_tracks; i++) {
        const cJSON *t = cJSON_GetArrayItem(tracks, i);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        assert_true(cJSON_IsString(name));
        assert_string_equal(name->valuestring, track_names[i]);
        const cJSON *sdr = cJSON_GetObjectItemCaseSensitive(t, "sdr");
        assert_true(cJSON_IsObject(sdr));
        for (int s = 0; s < N_SOURCES; s++) {
            snprintf(what, sizeof what, "%s %s", track_names[i], sources[s]);
            check_value(cJSON_GetObjectItemCaseSensitive(sdr, sources[s]),
                        want[i][s], what);
        }
    }
    const cJSON *med = cJSON_GetObjectItemCaseSensitive(root, "median");
    assert_true(cJSON_IsObject(med));
    double medians[N_SOURCES];
    for (int s = 0; s < N_SOURCES; s++) {
        double column[16];
        for (int i = 0; i < n_tracks; i++)
            column[i] = want[i][s];
        medians[s] = median(column, n_tracks);
        snprintf(what, sizeof what, "median %s", sources[s]);
        check_value(cJSON_GetObjectItemCaseSensitive(med, sources[s]),
                    medians[s], what);
    }
    double total = 0.0;
    int counted = 0;
    for (int s = 0; s < N_SOURCES; s++)
        if (!isnan(medians[s])) {
            total += medians[s];
            counted++;
        }
    check_value(cJSON_GetObjectItemCaseSensitive(root, "mean"),
                counted ? total / counted : NAN, "mean");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(root, "sources");
    assert_int_equal(cJSON_GetArraySize(names), N_SOURCES);
    for (int s = 0; s < N_SOURCES; s++)
        assert_string_equal(cJSON_GetArrayItem(names, s)->valuestring,
                            sources[s]);
    cJSON_Delete(root);
}

static int setup(void **state)
{
    (void)state;
    struct stat st;
    g.bin = getenv("DEMIX_BIN");
    if (!g.bin || stat(g.bin, &st) != 0) {
        print_error("DEMIX_BIN is not set to the demix binary\n");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    demix_test_rmtree(g.dir);
    return 0;
}

/* ------------------------------------------------------------- tests */

/* (a) Precomputed estimates with known errors. gain[t][s]: the estimate
 * is ref + gain * ref, SDR -20 log10|gain|; 0 marks a missing reference
 * file, -1 a reference that is present but silent (all zeros). */
static const double gain[3][N_SOURCES] = {
    {0.1, 0.5, 1.0, 0},    /* 20, 6.02, 0, n/a (no other.wav) */
    {0.01, 0.25, -1, 0.1}, /* 40, 12.04, n/a (silent), 20 */
    {0.2, 2.0, 0.5, 0.5},  /* 13.98, -6.02, 6.02, 6.02 */
};

static void test_estimates_known_answers(void **state)
{
    (void)state;
    const char *names[3] = {"alpha", "beta", "gamma"};
    const size_t frames[3] = {20000, 17001, 23456};
    const int rate = 44100, channels = 2;
    char ds[512], est[512], path[1024];
    snprintf(ds, sizeof ds, "%s/known", g.dir);
    snprintf(est, sizeof est, "%s/known_estimates", g.dir);
    double want[3][N_SOURCES];
    for (int t = 0; t < 3; t++) {
        size_t n = frames[t] * (size_t)channels;
        make_dir("%s/%s", ds, names[t]);
        make_dir("%s/%s", est, names[t]);
        float *mix = calloc(n, sizeof *mix);
        assert_non_null(mix);
        for (int s = 0; s < N_SOURCES; s++) {
            double gn = gain[t][s];
            want[t][s] = gn > 0 ? -20.0 * log10(gn) : NAN;
            if (gn == 0)
                continue; /* no reference file: silent */
            float *ref = make_source(rate, channels, frames[t], t, s);
            if (gn < 0)
                memset(ref, 0, n * sizeof *ref);
            /* The second track's references are 24-bit FLAC: the
             * estimates are made from what reads back. */
            if (t == 1) {
                snprintf(path, sizeof path, "%s/%s/%s.flac", ds, names[t],
                         sources[s]);
                demix_test_write_audio(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_24,
                                       rate, channels, ref, (int64_t)frames[t]);
                SF_INFO info;
                free(ref);
                ref = demix_test_read_audio(path, &info);
            } else {
                snprintf(path, sizeof path, "%s/%s/%s.wav", ds, names[t],
                         sources[s]);
                write_float_wav(path, rate, channels, ref, frames[t]);
            }
            float *e = malloc(n * sizeof *e);
            assert_non_null(e);
            for (size_t i = 0; i < n; i++) {
                e[i] = ref[i] + (float)(gn > 0 ? gn : 0.3) * ref[i];
                mix[i] += ref[i];
            }
            snprintf(path, sizeof path, "%s/%s/%s.wav", est, names[t],
                     sources[s]);
            write_float_wav(path, rate, channels, e, frames[t]);
            free(e);
            free(ref);
        }
        snprintf(path, sizeof path, "%s/%s/mixture.%s", ds, names[t],
                 t == 2 ? "flac" : "wav");
        if (t == 2)
            demix_test_write_audio(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16,
                                   rate, channels, mix, (int64_t)frames[t]);
        else
            write_float_wav(path, rate, channels, mix, frames[t]);
        free(mix);
    }
    /* A hidden folder and a stray file are not tracks. */
    make_dir("%s/.cache", ds);
    snprintf(path, sizeof path, "%s/README.txt", ds);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a track\n", f);
    fclose(f);

    assert_int_equal(demix("eval --json --estimates '%s' '%s'", est, ds), 0);
    check_json(g.stdout_text, 3, names, want);
    cJSON *root = cJSON_Parse(g.stdout_text);
    assert_non_null(root);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "model")));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "estimates");
    assert_true(cJSON_IsString(e));
    assert_string_equal(e->valuestring, est);
    cJSON_Delete(root);
    /* Not a terminal: one line per track on stderr. */
    assert_non_null(strstr(g.stderr_text, "scored 1/3 alpha"));
    assert_non_null(strstr(g.stderr_text, "scored 3/3 gamma"));

    /* The table: the same figures, 3 decimals. Medians: drums 20, bass
     * 6.021, vocals (0 + 6.021) / 2, other (20 + 6.021) / 2; mean 10.510. */
    assert_int_equal(demix("eval --estimates '%s' '%s'", est, ds), 0);
    assert_non_null(strstr(g.stdout_text, "drums"));
    assert_non_null(strstr(g.stdout_text,
                           "alpha      20.000    6.021    0.000      n/a"));
    assert_non_null(strstr(g.stdout_text,
                           "beta       40.000   12.041      n/a   20.000"));
    assert_non_null(strstr(g.stdout_text,
                           "median     20.000    6.021    3.010   13.010"));
    assert_non_null(strstr(g.stdout_text, "mean SDR   10.510"));

    /* --sources picks and orders the columns. */
    assert_int_equal(demix("eval --json --sources other,drums --estimates "
                           "'%s' '%s'", est, ds), 0);
    root = cJSON_Parse(g.stdout_text);
    assert_non_null(root);
    const cJSON *med = cJSON_GetObjectItemCaseSensitive(root, "median");
    assert_int_equal(cJSON_GetArraySize(med), 2);
    assert_string_equal(med->child->string, "other");
    check_value(cJSON_GetObjectItemCaseSensitive(med, "other"),
                0.5 * (20.0 + 20.0 * log10(2.0)), "median other");
    cJSON_Delete(root);
}

/* (b) The model path: 44.1 kHz model, 48 kHz data. */
static void test_model_matches_separate(void **state)
{
    (void)state;
    const char *names[2] = {"mono_b", "stereo_a"}; /* sorted */
    const int chans[2] = {1, 2};
    const size_t frames[2] = {48000 + 555, 36000 + 77};
    const int rate = 48000;
    char ds[512], out[512], path[1024];
    snprintf(ds, sizeof ds, "%s/model48k", g.dir);
    float *refs[2][N_SOURCES] = {{NULL}};
    for (int t = 0; t < 2; t++) {
        size_t n = frames[t] * (size_t)chans[t];
        make_dir("%s/%s", ds, names[t]);
        float *mix = calloc(n, sizeof *mix);
        assert_non_null(mix);
        for (int s = 0; s < N_SOURCES; s++) {
            if (t == 0 && s == 3)
                continue; /* the mono track has no "other" */
            refs[t][s] = make_source(rate, chans[t], frames[t], t, s);
            snprintf(path, sizeof path, "%s/%s/%s.wav", ds, names[t],
                     sources[s]);
            write_float_wav(path, rate, chans[t], refs[t][s], frames[t]);
            for (size_t i = 0; i < n; i++)
                mix[i] += refs[t][s][i];
        }
        snprintf(path, sizeof path, "%s/%s/mixture.wav", ds, names[t]);
        write_float_wav(path, rate, chans[t], mix, frames[t]);
        free(mix);
    }
    const char *model = demix_test_data_path("tiny.safetensors");
    assert_int_equal(demix("eval --json --backend cpu --threads 1 --model '%s' "
                           "'%s'", model, ds), 0);
    char json_text[sizeof g.stdout_text];
    memcpy(json_text, g.stdout_text, sizeof json_text);
    assert_non_null(strstr(g.stderr_text, "backend"));

    /* The same mixtures through demix separate, scored here. */
    double want[2][N_SOURCES];
    for (int t = 0; t < 2; t++) {
        snprintf(out, sizeof out, "%s/separated_%s", g.dir, names[t]);
        assert_int_equal(demix("separate --float32 --backend cpu --threads 1 "
                               "--model '%s' --out '%s' '%s/%s/mixture.wav'",
                               model, out, ds, names[t]), 0);
        for (int s = 0; s < N_SOURCES; s++) {
            want[t][s] = NAN;
            if (!refs[t][s])
                continue;
            snprintf(path, sizeof path, "%s/mixture/%s.wav", out, sources[s]);
            SF_INFO info;
            float *est = demix_test_read_audio(path, &info);
            assert_int_equal(info.frames, (sf_count_t)frames[t]);
            assert_int_equal(info.samplerate, rate);
            assert_int_equal(info.channels, chans[t]);
            want[t][s] = sdr_db(refs[t][s], est, frames[t] * (size_t)chans[t]);
            assert_true(isfinite(want[t][s]));
            free(est);
            free(refs[t][s]);
        }
    }
    check_json(json_text, 2, names, want);
    cJSON *root = cJSON_Parse(json_text);
    assert_non_null(root);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    assert_true(cJSON_IsString(m));
    assert_string_equal(m->valuestring, model);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "backend");
    assert_true(cJSON_IsString(b));
    assert_string_equal(b->valuestring, "cpu");
    cJSON_Delete(root);
}

/* A valid one-track data set at dir/song (stereo, 44.1 kHz, 8000 frames,
 * float WAV), to be broken by the error cases. */
static void make_valid_track(const char *dir)
{
    char path[1024];
    make_dir("%s/song", dir);
    float *x = make_source(44100, 2, 8000, 0, 0);
    for (int s = 0; s < N_SOURCES; s++) {
        snprintf(path, sizeof path, "%s/song/%s.wav", dir, sources[s]);
        write_float_wav(path, 44100, 2, x, 8000);
    }
    snprintf(path, sizeof path, "%s/song/mixture.wav", dir);
    write_float_wav(path, 44100, 2, x, 8000);
    free(x);
}

/* Run eval on dir (estimates: dir itself); expect exit 1, the named text
 * in the message, nothing on stdout. */
static void expect_failure(const char *dir, const char *named,
                           const char *also)
{
    assert_int_equal(demix("eval --estimates '%s' '%s'", dir, dir), 1);
    assert_non_null(strstr(g.stderr_text, named));
    if (also)
        assert_non_null(strstr(g.stderr_text, also));
    assert_string_equal(g.stdout_text, "");
}

/* (c) Errors: exit 1, the file named, nothing scored. */
static void test_errors_name_the_file(void **state)
{
    (void)state;
    char dir[300], path[1024], other[400];

    snprintf(dir, sizeof dir, "%s/err_empty", g.dir);
    make_dir("%s", dir);
    expect_failure(dir, dir, "no track folders");

    snprintf(dir, sizeof dir, "%s/err_nomix", g.dir);
    make_valid_track(dir);
    snprintf(path, sizeof path, "%s/song/mixture.wav", dir);
    assert_int_equal(remove(path), 0);
    snprintf(path, sizeof path, "%s/song", dir);
    expect_failure(dir, path, "no mixture");
    /* The model path checks the data the same way. */
    assert_int_equal(demix("eval --threads 1 --model '%s' '%s'",
                           demix_test_data_path("tiny.safetensors"), dir), 1);
    assert_non_null(strstr(g.stderr_text, "no mixture"));

    snprintf(dir, sizeof dir, "%s/err_junk", g.dir);
    make_valid_track(dir);
    snprintf(path, sizeof path, "%s/song/vocals.wav", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 1000; i++)
        fputc((i * 7919) & 0xff, f);
    fclose(f);
    expect_failure(dir, path, "cannot read");

    snprintf(dir, sizeof dir, "%s/err_channels", g.dir);
    make_valid_track(dir);
    snprintf(path, sizeof path, "%s/song/bass.wav", dir);
    float *mono = make_source(44100, 1, 8000, 0, 1);
    write_float_wav(path, 44100, 1, mono, 8000);
    free(mono);
    expect_failure(dir, path, "channel");

    snprintf(dir, sizeof dir, "%s/err_rate", g.dir);
    make_valid_track(dir);
    snprintf(path, sizeof path, "%s/song/drums.wav", dir);
    float *x = make_source(48000, 2, 8000, 0, 0);
    write_float_wav(path, 48000, 2, x, 8000);
    expect_failure(dir, path, "48000 Hz");

    snprintf(dir, sizeof dir, "%s/err_length", g.dir);
    make_valid_track(dir);
    snprintf(path, sizeof path, "%s/song/other.wav", dir);
    write_float_wav(path, 44100, 2, x, 7999);
    expect_failure(dir, path, "7999 frames");
    free(x);

    snprintf(dir, sizeof dir, "%s/err_twice", g.dir);
    make_valid_track(dir);
    snprintf(path, sizeof path, "%s/song/bass.wav", dir);
    snprintf(other, sizeof other, "%s/song/bass.flac", dir);
    assert_int_equal(demix_test_system("cp '%s' '%s'", path, other), 0);
    expect_failure(dir, "bass.flac", "bass.wav");

    /* Estimates: a source with a reference needs its estimate. */
    snprintf(dir, sizeof dir, "%s/err_noest", g.dir);
    make_valid_track(dir);
    snprintf(other, sizeof other, "%s/err_noest_est", g.dir);
    make_valid_track(other);
    snprintf(path, sizeof path, "%s/song/vocals.wav", other);
    assert_int_equal(remove(path), 0);
    assert_int_equal(demix("eval --estimates '%s' '%s'", other, dir), 1);
    snprintf(path, sizeof path, "%s/song", other);
    assert_non_null(strstr(g.stderr_text, path));
    assert_non_null(strstr(g.stderr_text, "no estimate for vocals"));
    assert_string_equal(g.stdout_text, "");
    /* ... and a silent (missing) reference needs none. */
    snprintf(path, sizeof path, "%s/song/vocals.wav", dir);
    assert_int_equal(remove(path), 0);
    assert_int_equal(demix("eval --json --estimates '%s' '%s'", other, dir), 0);
    cJSON *root = cJSON_Parse(g.stdout_text);
    assert_non_null(root);
    const cJSON *t0 = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(root, "tracks"), 0);
    const cJSON *sdr = cJSON_GetObjectItemCaseSensitive(t0, "sdr");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(sdr, "vocals")));
    /* Estimates equal to their references: the SDR cap, not infinity. */
    check_value(cJSON_GetObjectItemCaseSensitive(sdr, "drums"), 150.0,
                "exact estimate");
    cJSON_Delete(root);
}

/* (d) Usage errors: exit 2. */
static void test_usage_errors(void **state)
{
    (void)state;
    assert_int_equal(demix("eval"), 2);
    assert_non_null(strstr(g.stderr_text, "DATASET_DIR"));
    assert_int_equal(demix("eval --estimates a --model b c"), 2);
    assert_non_null(strstr(g.stderr_text, "--model"));
    assert_int_equal(demix("eval --no-such-option c"), 2);
    assert_int_equal(demix("eval a b"), 2);
    assert_int_equal(demix("eval --estimates a --sources drums,drums c"), 2);
    assert_int_equal(demix("help eval"), 0);
    assert_non_null(strstr(g.stdout_text, "--estimates DIR"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimates_known_answers),
        cmocka_unit_test(test_model_matches_separate),
        cmocka_unit_test(test_errors_name_the_file),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
