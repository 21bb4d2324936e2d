/*
 * test_latency_hist.c - audio/latency_hist.c: exact count, min, max and
 * mean; quantiles within the documented 1.5% of the exact nearest-rank
 * order statistic (uniform and random samples, the seed from
 * DEMIX_TEST_SEED); merging equals adding everything to one histogram;
 * bad samples are ignored; samples outside the range are counted and the
 * quantiles stay within [min, max].
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "latency_hist.h"

#define TOLERANCE 0.015

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The exact nearest-rank q-quantile of sorted x[0..n). */
static double exact_quantile(const double *sorted, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void assert_close(double got, double want)
{
    if (fabs(got - want) > TOLERANCE * want)
        fail_msg("quantile %.9g, exact %.9g (more than %.1f%% apart)", got,
                 want, 100 * TOLERANCE);
}

static void test_empty(void **state)
{
    (void)state;
    latency_hist h;
    latency_hist_init(&h);
    assert_int_equal(h.count, 0);
    assert_true(latency_hist_quantile(&h, 0.5) == 0.0);
    assert_true(latency_hist_mean(&h) == 0.0);
}

static void test_one_sample_is_exact(void **state)
{
    (void)state;
    latency_hist h;
    latency_hist_init(&h);
    latency_hist_add(&h, 0.0421);
    assert_int_equal(h.count, 1);
    const double qs[] = {0.0, 0.5, 0.9, 0.99, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_true(latency_hist_quantile(&h, qs[i]) == 0.0421);
    assert_true(latency_hist_mean(&h) == 0.0421);
}

static void test_uniform_ms(void **state)
{
    (void)state;
    latency_hist h;
    latency_hist_init(&h);
    double x[1000];
    for (int i = 0; i < 1000; i++) {
        x[i] = (i + 1) * 1e-3; /* 1 .. 1000 ms */
        latency_hist_add(&h, x[i]);
    }
    assert_int_equal(h.count, 1000);
    assert_true(h.min_s == 1e-3);
    assert_true(h.max_s == 1.0);
    assert_true(fabs(latency_hist_mean(&h) - 0.5005) < 1e-12);
    const double qs[] = {0.01, 0.1, 0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_close(latency_hist_quantile(&h, qs[i]),
                     exact_quantile(x, 1000, qs[i]));
    assert_true(latency_hist_quantile(&h, 1.0) == 1.0);
    assert_true(latency_hist_quantile(&h, 0.0) == 1e-3);
}

static void test_random_and_merge(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed();
    enum { N = 20000, PARTS = 7 };
    double *x = malloc(N * sizeof *x);
    assert_non_null(x);
    latency_hist whole, parts[PARTS], merged;
    latency_hist_init(&whole);
    latency_hist_init(&merged);
    for (int p = 0; p < PARTS; p++)
        latency_hist_init(&parts[p]);
    for (int i = 0; i < N; i++) {
        /* log-uniform from 0.1 ms to 10 s */
        double u = 0.5 * (demix_test_uniform(&rng) + 1.0);
        x[i] = 1e-4 * pow(1e5, u);
        latency_hist_add(&whole, x[i]);
        latency_hist_add(&parts[i % PARTS], x[i]);
    }
    for (int p = 0; p < PARTS; p++)
        latency_hist_merge(&merged, &parts[p]);
    assert_int_equal(merged.count, whole.count);
    assert_true(merged.min_s == whole.min_s && merged.max_s == whole.max_s);
    assert_true(fabs(merged.sum_s - whole.sum_s) <= 1e-9 * whole.sum_s);
    assert_memory_equal(merged.bucket, whole.bucket, sizeof whole.bucket);
    qsort(x, N, sizeof *x, cmp_double);
    const double qs[] = {0.05, 0.25, 0.5, 0.75, 0.9, 0.99};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_close(latency_hist_quantile(&whole, qs[i]),
                     exact_quantile(x, N, qs[i]));
    free(x);
}

static void test_bad_and_out_of_range(void **state)
{
    (void)state;
    latency_hist h;
    latency_hist_init(&h);
    latency_hist_add(&h, -1.0);
    latency_hist_add(&h, NAN);
    latency_hist_add(&h, INFINITY);
    assert_int_equal(h.count, 0);
    latency_hist_add(&h, 1e-9); /* below the first bucket */
    latency_hist_add(&h, 1e6);  /* beyond the last */
    assert_int_equal(h.count, 2);
    assert_int_equal(h.bucket[0], 1);
    assert_int_equal(h.bucket[LATENCY_HIST_BUCKETS - 1], 1);
    double lo = latency_hist_quantile(&h, 0.25);
    double hi = latency_hist_quantile(&h, 0.75);
    assert_true(lo >= 1e-9 && lo <= 1e6);
    assert_true(hi >= 1e-9 && hi <= 1e6);
    assert_true(lo <= hi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_one_sample_is_exact),
        cmocka_unit_test(test_uniform_ms),
        cmocka_unit_test(test_random_and_merge),
        cmocka_unit_test(test_bad_and_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
