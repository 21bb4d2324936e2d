/*
 * test_sdr.c - audio/sdr.c against known answers: estimates that are the
 * reference plus an error of known energy (a scaled copy of the reference,
 * an orthogonal tone, nothing, the negated reference), silent and
 * near-silent references, block-wise accumulation, and the median and mean
 * over tracks with n/a entries.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "sdr.h"

#define PI 3.14159265358979323846
#define N_FRAMES 48000
#define CHANNELS 2
#define N_SAMPLES (N_FRAMES * CHANNELS)

/* A sine of `cycles` whole periods over N_FRAMES, per channel a phase. */
static void fill_tone(float *x, double amplitude, int cycles)
{
    for (int i = 0; i < N_FRAMES; i++)
        for (int c = 0; c < CHANNELS; c++)
            x[i * CHANNELS + c] = (float)(amplitude *
                                          sin(2.0 * PI * cycles * i /
                                                  N_FRAMES +
                                              0.3 * c));
}

static double energy(const float *x, size_t n)
{
    double e = 0.0;
    for (size_t i = 0; i < n; i++)
        e += (double)x[i] * x[i];
    return e;
}

static double sdr_of(const float *ref, const float *est, size_t n)
{
    sdr_sum sum;
    sdr_sum_init(&sum);
    sdr_sum_add(&sum, ref, est, n);
    return sdr_sum_db(&sum);
}

/* est = s + 0.1 s: the error is a tenth of the reference, 20 dB. */
static void test_scaled_error_is_20_db(void **state)
{
    (void)state;
    float *s = malloc(N_SAMPLES * sizeof *s);
    float *est = malloc(N_SAMPLES * sizeof *est);
    assert_non_null(s);
    assert_non_null(est);
    uint64_t rng = demix_test_seed();
    demix_test_fill_uniform(s, N_SAMPLES, 0.5f, &rng);
    for (size_t i = 0; i < N_SAMPLES; i++)
        est[i] = s[i] + 0.1f * s[i];
    double db = sdr_of(s, est, N_SAMPLES);
    print_message("s + 0.1 s: %.6f dB\n", db);
    /* est is rounded to float: a relative error of 2^-24 in e moves the
     * result by well under 1e-4 dB. */
    assert_true(fabs(db - 20.0) < 1e-4);

    for (size_t i = 0; i < N_SAMPLES; i++)
        est[i] = s[i] - 0.5f * s[i]; /* 20 log10(2) = 6.0206 dB */
    db = sdr_of(s, est, N_SAMPLES);
    assert_true(fabs(db - 20.0 * log10(2.0)) < 1e-6);
    free(s);
    free(est);
}

/* est = s + e with e a tone orthogonal to s (other frequency, whole
 * periods): SDR = 10 log10(E_s / E_e), E from the amplitudes alone:
 * a^2/2 per sample. */
static void test_orthogonal_noise(void **state)
{
    (void)state;
    float *s = malloc(N_SAMPLES * sizeof *s);
    float *e = malloc(N_SAMPLES * sizeof *e);
    float *est = malloc(N_SAMPLES * sizeof *est);
    assert_non_null(s);
    assert_non_null(e);
    assert_non_null(est);
    fill_tone(s, 0.8, 440);
    fill_tone(e, 0.05, 1234);
    for (size_t i = 0; i < N_SAMPLES; i++)
        est[i] = s[i] + e[i];
    double want = 10.0 * log10((0.8 * 0.8 / 2.0) / (0.05 * 0.05 / 2.0));
    double db = sdr_of(s, est, N_SAMPLES);
    print_message("tone + orthogonal tone: %.6f dB (want %.6f)\n", db, want);
    assert_true(fabs(db - want) < 1e-3);
    /* And against the energies measured on the very samples. */
    double measured = 10.0 * log10(energy(s, N_SAMPLES) / energy(e, N_SAMPLES));
    assert_true(fabs(db - measured) < 1e-4);
    free(s);
    free(e);
    free(est);
}

/* No estimate at all is 0 dB; the negated reference -6.02 dB; the exact
 * reference SDR_MAX_DB. */
static void test_silent_negated_and_exact_estimates(void **state)
{
    (void)state;
    float *s = malloc(N_SAMPLES * sizeof *s);
    float *est = malloc(N_SAMPLES * sizeof *est);
    assert_non_null(s);
    assert_non_null(est);
    fill_tone(s, 0.3, 100);
    assert_true(fabs(sdr_of(s, NULL, N_SAMPLES)) < 1e-12);
    for (size_t i = 0; i < N_SAMPLES; i++)
        est[i] = -s[i];
    assert_true(fabs(sdr_of(s, est, N_SAMPLES) + 20.0 * log10(2.0)) < 1e-9);
    assert_true(sdr_of(s, s, N_SAMPLES) == SDR_MAX_DB);
    free(s);
    free(est);
}

/* Block-wise sums give the whole-signal figure. */
static void test_blocks_add_up(void **state)
{
    (void)state;
    float *s = malloc(N_SAMPLES * sizeof *s);
    float *est = malloc(N_SAMPLES * sizeof *est);
    assert_non_null(s);
    assert_non_null(est);
    uint64_t rng = demix_test_seed() + 1;
    demix_test_fill_uniform(s, N_SAMPLES, 0.7f, &rng);
    demix_test_fill_uniform(est, N_SAMPLES, 0.7f, &rng);
    sdr_sum sum;
    sdr_sum_init(&sum);
    size_t block = 1000;
    for (size_t at = 0; at < N_SAMPLES; at += block) {
        size_t n = N_SAMPLES - at < block ? N_SAMPLES - at : block;
        sdr_sum_add(&sum, s + at, est + at, n);
    }
    assert_int_equal(sum.samples, N_SAMPLES);
    assert_true(fabs(sdr_sum_db(&sum) - sdr_of(s, est, N_SAMPLES)) < 1e-9);
    free(s);
    free(est);
}

/* Silent references: digital zero, nothing added, and a level just below
 * and just above SDR_SILENT_MEAN_SQUARE. */
static void test_silent_reference_is_na(void **state)
{
    (void)state;
    float *s = calloc(N_SAMPLES, sizeof *s);
    float *est = malloc(N_SAMPLES * sizeof *est);
    assert_non_null(s);
    assert_non_null(est);
    fill_tone(est, 0.1, 50);
    assert_true(sdr_is_na(sdr_of(s, est, N_SAMPLES)));
    assert_true(sdr_is_na(sdr_of(NULL, est, N_SAMPLES)));
    sdr_sum empty;
    sdr_sum_init(&empty);
    assert_true(sdr_is_na(sdr_sum_db(&empty)));

    /* A tone's mean square is a^2/2: a = sqrt(2 * level * factor). */
    double below = sqrt(2.0 * SDR_SILENT_MEAN_SQUARE * 0.9);
    double above = sqrt(2.0 * SDR_SILENT_MEAN_SQUARE * 1.1);
    fill_tone(s, below, 10);
    assert_true(sdr_is_na(sdr_of(s, NULL, N_SAMPLES)));
    fill_tone(s, above, 10);
    double db = sdr_of(s, NULL, N_SAMPLES);
    assert_false(sdr_is_na(db));
    assert_true(fabs(db) < 1e-9);
    free(s);
    free(est);
}

static void test_median(void **state)
{
    (void)state;
    double scratch[8];
    const double odd[] = {3.0, -1.0, 7.0, 2.0, 5.0};
    assert_true(sdr_median(odd, 5, scratch) == 3.0);
    const double even[] = {4.0, 1.0, 10.0, 2.0};
    assert_true(sdr_median(even, 4, scratch) == 3.0); /* (2 + 4) / 2 */
    const double one[] = {-2.5};
    assert_true(sdr_median(one, 1, scratch) == -2.5);
    /* n/a left out: the median of {1, 9, 4} and of {1, 9, 4, 6}. */
    const double with_na[] = {NAN, 1.0, 9.0, NAN, 4.0};
    assert_true(sdr_median(with_na, 5, scratch) == 4.0);
    const double with_na_even[] = {6.0, NAN, 1.0, 9.0, 4.0};
    assert_true(sdr_median(with_na_even, 5, scratch) == 5.0);
    const double all_na[] = {NAN, NAN};
    assert_true(sdr_is_na(sdr_median(all_na, 2, scratch)));
    assert_true(sdr_is_na(sdr_median(NULL, 0, scratch)));
    /* values is left as it was. */
    assert_true(with_na[1] == 1.0 && with_na[2] == 9.0 && with_na[4] == 4.0);
}

static void test_mean(void **state)
{
    (void)state;
    const double v[] = {1.0, NAN, 2.0, 6.0};
    assert_true(fabs(sdr_mean(v, 4) - 3.0) < 1e-15);
    const double all_na[] = {NAN};
    assert_true(sdr_is_na(sdr_mean(all_na, 1)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scaled_error_is_20_db),
        cmocka_unit_test(test_orthogonal_noise),
        cmocka_unit_test(test_silent_negated_and_exact_estimates),
        cmocka_unit_test(test_blocks_add_up),
        cmocka_unit_test(test_silent_reference_is_na),
        cmocka_unit_test(test_median),
        cmocka_unit_test(test_mean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
