/*
 * test_cpu_fft.c - the CPU backend's kissfft wrapper (cpu/cpu_fft.h):
 * known spectra (a cosine at bin k gives W/2 at bin k, a sine -W/2 in the
 * imaginary part, a constant W at DC), agreement with a double-precision
 * DFT, the 1/W of the inverse, numpy's treatment of the DC and Nyquist
 * imaginary parts, the irfft(rfft(x)) round trip, and bad lengths.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_fft.h"
#include "demix_error.h"
#include "model_impl.h"
#include "testutil.h"

#define W 1024
#define F (W / 2 + 1)

static demix_cpu_fft *make_fft(int n)
{
    demix_cpu_fft *fft = NULL;
    assert_int_equal(demix__cpu_fft_create(n, &fft), DEMIX_OK);
    assert_non_null(fft);
    return fft;
}

/* Largest |X[bin]| over the bins other than `skip`. */
static double max_other_bins(const float *spec, int skip)
{
    double m = 0;
    for (int b = 0; b < F; b++)
        if (b != skip)
            m = fmax(m, hypot(spec[2 * b], spec[2 * b + 1]));
    return m;
}

static void test_cosine_sine_dc(void **state)
{
    (void)state;
    demix_cpu_fft *fft = make_fft(W);
    float x[W], spec[2 * F];
    const int bins[] = {1, 5, 100, W / 2 - 1};
    for (size_t i = 0; i < sizeof bins / sizeof bins[0]; i++) {
        int k = bins[i];
        for (int n = 0; n < W; n++)
            x[n] = (float)cos(2.0 * DEMIX_PI * k * n / W);
        demix__cpu_rfft(fft, x, spec);
        assert_true(fabs(spec[2 * k] - W / 2.0) < 1e-3);
        assert_true(fabs(spec[2 * k + 1]) < 1e-3);
        assert_true(max_other_bins(spec, k) < 1e-3);

        for (int n = 0; n < W; n++)
            x[n] = (float)sin(2.0 * DEMIX_PI * k * n / W);
        demix__cpu_rfft(fft, x, spec);
        assert_true(fabs(spec[2 * k]) < 1e-3);
        assert_true(fabs(spec[2 * k + 1] + W / 2.0) < 1e-3);
        assert_true(max_other_bins(spec, k) < 1e-3);
    }
    for (int n = 0; n < W; n++)
        x[n] = 1.0f;
    demix__cpu_rfft(fft, x, spec);
    assert_true(fabs(spec[0] - W) < 1e-3);
    assert_true(max_other_bins(spec, 0) < 1e-3);
    /* Nyquist: (-1)^n gives W at bin W/2. */
    for (int n = 0; n < W; n++)
        x[n] = n % 2 ? -1.0f : 1.0f;
    demix__cpu_rfft(fft, x, spec);
    assert_true(fabs(spec[2 * (F - 1)] - W) < 1e-3);
    assert_true(max_other_bins(spec, F - 1) < 1e-3);
    demix__cpu_fft_destroy(fft);
}

static void test_matches_double_dft(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0xF00D;
    demix_cpu_fft *fft = make_fft(W);
    static float x[W], spec[2 * F], ref[2 * F];
    demix_test_fill_uniform(x, W, 1.0f, &rng);
    demix__cpu_rfft(fft, x, spec);
    for (int k = 0; k < F; k++) {
        double re = 0, im = 0;
        for (int n = 0; n < W; n++) {
            double a = 2.0 * DEMIX_PI * (double)((long)k * n % W) / W;
            re += x[n] * cos(a);
            im -= x[n] * sin(a);
        }
        ref[2 * k] = (float)re;
        ref[2 * k + 1] = (float)im;
    }
    double rel = demix_test_rel_error(spec, ref, 2 * F);
    print_message("rfft vs double DFT: relative error %.3g\n", rel);
    assert_true(rel < 1e-6);
    demix__cpu_fft_destroy(fft);
}

static void test_inverse_scaling_and_dc_nyquist_imag(void **state)
{
    (void)state;
    demix_cpu_fft *fft = make_fft(W);
    float spec[2 * F], y[W], y2[W];
    memset(spec, 0, sizeof spec);
    spec[0] = (float)W; /* DC of a constant 1 signal */
    demix__cpu_irfft(fft, spec, y);
    for (int n = 0; n < W; n++)
        assert_true(fabs(y[n] - 1.0) < 1e-6);

    /* numpy.fft.irfft drops the imaginary parts of the DC and Nyquist bins. */
    uint64_t rng = demix_test_seed() ^ 0xBEEF;
    demix_test_fill_uniform(spec, 2 * F, 10.0f, &rng);
    spec[1] = 0.0f;
    spec[2 * F - 1] = 0.0f;
    demix__cpu_irfft(fft, spec, y);
    spec[1] = 123.0f;
    spec[2 * F - 1] = -77.0f;
    demix__cpu_irfft(fft, spec, y2);
    assert_memory_equal(y, y2, sizeof y);
    demix__cpu_fft_destroy(fft);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0x5EED;
    const int sizes[] = {W, 16, 2, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int n = sizes[i];
        demix_cpu_fft *fft = make_fft(n);
        float *x = malloc(sizeof(float) * (size_t)n);
        float *y = malloc(sizeof(float) * (size_t)n);
        float *spec = malloc(sizeof(float) * (size_t)(n + 2));
        assert_non_null(x);
        assert_non_null(y);
        assert_non_null(spec);
        demix_test_fill_uniform(x, (size_t)n, 1.0f, &rng);
        demix__cpu_rfft(fft, x, spec);
        demix__cpu_irfft(fft, spec, y);
        double err = demix_test_max_abs_diff(y, x, (size_t)n);
        print_message("n=%d: max |irfft(rfft(x)) - x| = %.3g\n", n, err);
        assert_true(err < 1e-5);
        free(x);
        free(y);
        free(spec);
        demix__cpu_fft_destroy(fft);
    }
}

static void test_bad_lengths(void **state)
{
    (void)state;
    demix_cpu_fft *fft = (demix_cpu_fft *)&fft;
    assert_int_equal(demix__cpu_fft_create(0, &fft), DEMIX_EARG);
    assert_null(fft);
    assert_int_equal(demix__cpu_fft_create(1023, &fft), DEMIX_EARG);
    assert_int_equal(demix__cpu_fft_create(-4, &fft), DEMIX_EARG);
    demix__cpu_fft_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cosine_sine_dc),
        cmocka_unit_test(test_matches_double_dft),
        cmocka_unit_test(test_inverse_scaling_and_dc_nyquist_imag),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
