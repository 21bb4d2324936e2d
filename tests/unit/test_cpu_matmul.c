/*
 * test_cpu_matmul.c - the CPU backend's row-stable product
 * (cpu/cpu_matmul.h): agreement with double-precision sums over shapes that
 * hit every tile and tail (k not a multiple of 8, n not a multiple of the
 * tile width, 1..13 rows, one and two operands, with and without bias);
 * every row bit-identical to the same row computed alone, in any batch
 * position; and the AVX2 and portable paths bit-identical to each other.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_bf16.h"
#include "cpu_matmul.h"
#include "testutil.h"

typedef struct problem {
    int rows, n, k0, k1, op_count, with_bias;
    float *x0, *x1, *w0, *w1, *bias;
} problem;

static problem make_problem(int rows, int n, int k0, int k1, int with_bias,
                            uint64_t *rng)
{
    problem p = {rows, n, k0, k1, k1 > 0 ? 2 : 1, with_bias, 0, 0, 0, 0, 0};
    size_t k0s = (size_t)(k0 ? k0 : 1), k1s = (size_t)(k1 ? k1 : 1);
    p.x0 = malloc(sizeof(float) * (size_t)rows * k0s);
    p.x1 = malloc(sizeof(float) * (size_t)rows * k1s);
    p.w0 = malloc(sizeof(float) * (size_t)n * k0s);
    p.w1 = malloc(sizeof(float) * (size_t)n * k1s);
    p.bias = malloc(sizeof(float) * (size_t)n);
    assert_true(p.x0 && p.x1 && p.w0 && p.w1 && p.bias);
    demix_test_fill_uniform(p.x0, (size_t)rows * k0s, 1.0f, rng);
    demix_test_fill_uniform(p.x1, (size_t)rows * k1s, 1.0f, rng);
    demix_test_fill_uniform(p.w0, (size_t)n * k0s, 0.3f, rng);
    demix_test_fill_uniform(p.w1, (size_t)n * k1s, 0.3f, rng);
    demix_test_fill_uniform(p.bias, (size_t)n, 0.5f, rng);
    return p;
}

static void free_problem(problem *p)
{
    free(p->x0);
    free(p->x1);
    free(p->w0);
    free(p->w1);
    free(p->bias);
}

/* Run rows [r0, r0+rows) of p into y [rows][n]. */
static void run(const problem *p, int r0, int rows, float *y)
{
    demix_cpu_operand ops[2] = {
        {p->x0 + (size_t)r0 * p->k0, (size_t)p->k0, p->w0, (size_t)p->k0, p->k0},
        {p->x1 + (size_t)r0 * p->k1, (size_t)p->k1, p->w1, (size_t)p->k1, p->k1},
    };
    demix__cpu_matmul(rows, p->n, ops, p->op_count,
                      p->with_bias ? p->bias : NULL, y, (size_t)p->n);
}

static void check_against_double(const problem *p, const float *y)
{
    for (int r = 0; r < p->rows; r++)
        for (int j = 0; j < p->n; j++) {
            double s = p->with_bias ? p->bias[j] : 0.0, mag = fabs(s);
            for (int k = 0; k < p->k0; k++) {
                double t = (double)p->x0[r * p->k0 + k] * p->w0[j * p->k0 + k];
                s += t, mag += fabs(t);
            }
            for (int k = 0; p->op_count == 2 && k < p->k1; k++) {
                double t = (double)p->x1[r * p->k1 + k] * p->w1[j * p->k1 + k];
                s += t, mag += fabs(t);
            }
            double err = fabs(y[r * p->n + j] - s);
            if (err > 1e-6 * mag + 1e-30)
                fail_msg("rows %d n %d k %d+%d: y[%d][%d] = %.9g, double %.9g",
                         p->rows, p->n, p->k0, p->k1, r, j, y[r * p->n + j], s);
        }
}

static const int shapes[][5] = {
    /* rows, n, k0, k1, bias */
    {1, 1, 1, 0, 0},   {1, 17, 7, 0, 1},   {2, 13, 8, 0, 1},
    {3, 9, 9, 0, 0},   {4, 7, 2052, 0, 1}, {5, 11, 21, 21, 1},
    {6, 25, 40, 0, 1}, {7, 8, 500, 500, 1}, {8, 96, 24, 24, 1},
    {9, 5, 33, 0, 0},  {12, 14, 15, 3, 1}, {13, 31, 64, 17, 1},
};

static void test_matches_double(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0x3A7;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *s = shapes[i];
        problem p = make_problem(s[0], s[1], s[2], s[3], s[4], &rng);
        float *y = malloc(sizeof(float) * (size_t)p.rows * (size_t)p.n);
        assert_non_null(y);
        run(&p, 0, p.rows, y);
        check_against_double(&p, y);
        free(y);
        free_problem(&p);
    }
}

/* Every row of every sub-batch [r0, r0+len) equals the row computed alone. */
static void test_rows_are_batch_independent(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0x5AB1E;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *s = shapes[i];
        problem p = make_problem(13, s[1], s[2], s[3], s[4], &rng);
        size_t row_bytes = sizeof(float) * (size_t)p.n;
        float *alone = malloc(row_bytes * 13);
        float *batch = malloc(row_bytes * 13);
        assert_true(alone && batch);
        for (int r = 0; r < 13; r++)
            run(&p, r, 1, alone + (size_t)r * p.n);
        for (int r0 = 0; r0 < 13; r0++)
            for (int len = 1; r0 + len <= 13; len++) {
                run(&p, r0, len, batch);
                for (int r = 0; r < len; r++)
                    if (memcmp(batch + (size_t)r * p.n,
                               alone + (size_t)(r0 + r) * p.n, row_bytes))
                        fail_msg("n %d k %d+%d: row %d differs in a batch of "
                                 "%d at position %d",
                                 p.n, p.k0, p.k1, r0 + r, len, r);
            }
        free(alone);
        free(batch);
        free_problem(&p);
    }
}

static void test_portable_path_identical(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0x9047;
    print_message("matmul path on this machine: %s\n", demix__cpu_matmul_isa());
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *s = shapes[i];
        problem p = make_problem(s[0], s[1], s[2], s[3], s[4], &rng);
        size_t bytes = sizeof(float) * (size_t)p.rows * (size_t)p.n;
        float *fast = malloc(bytes), *portable = malloc(bytes);
        assert_true(fast && portable);
        run(&p, 0, p.rows, fast);
        demix__cpu_matmul_force_portable(1);
        assert_string_equal(demix__cpu_matmul_isa(), "portable");
        run(&p, 0, p.rows, portable);
        demix__cpu_matmul_force_portable(0);
        assert_memory_equal(fast, portable, bytes);
        free(fast);
        free(portable);
        free_problem(&p);
    }
}

/* ---------------------------------------------------------- bf16 */

static uint16_t bits(float f) { return demix__cpu_bf16_from_float(f); }

static void test_bf16_rounding_and_padding(void **state)
{
    (void)state;
    assert_int_equal(bits(1.0f), 0x3F80);
    assert_int_equal(bits(-2.0f), 0xC000);
    /* Halfway cases go to the even neighbour. */
    assert_int_equal(bits(1.0f + 0x1p-8f), 0x3F80);
    assert_int_equal(bits(1.0f + 3 * 0x1p-8f), 0x3F82);
    assert_int_equal(bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
    assert_int_equal(bits(INFINITY), 0x7F80);
    uint16_t nan = bits(NAN);
    assert_true((nan & 0x7F80) == 0x7F80 && (nan & 0x7F) != 0);
    assert_true(demix__cpu_bf16_to_float(bits(3.140625f)) == 3.140625f);
    assert_int_equal(demix__cpu_bf16_padded(1), 32);
    assert_int_equal(demix__cpu_bf16_padded(32), 32);
    assert_int_equal(demix__cpu_bf16_padded(2052), 2080);

    /* Two segments side by side, then zeros up to the padded length. */
    float a[2][3] = {{1, 2, 3}, {4, 5, 6}}, b[2][2] = {{7, 8}, {9, 10}};
    uint16_t rows[2][32];
    memset(rows, 0xFF, sizeof rows);
    demix__cpu_bf16_rows(2, &a[0][0], 3, 3, &b[0][0], 2, 2, &rows[0][0], 32);
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 3; i++)
            assert_int_equal(rows[r][i], bits(a[r][i]));
        for (int i = 0; i < 2; i++)
            assert_int_equal(rows[r][3 + i], bits(b[r][i]));
        for (int i = 5; i < 32; i++)
            assert_int_equal(rows[r][i], 0);
    }
}

typedef struct bf16_problem {
    int rows, n, k, k_pad;
    uint16_t *x, *w;
    float *bias;
} bf16_problem;

static bf16_problem make_bf16_problem(int rows, int n, int k, uint64_t *rng)
{
    bf16_problem p = {rows, n, k, demix__cpu_bf16_padded(k), 0, 0, 0};
    float *xf = malloc(sizeof(float) * (size_t)rows * (size_t)k);
    float *wf = malloc(sizeof(float) * (size_t)n * (size_t)k);
    p.x = malloc(sizeof(uint16_t) * (size_t)rows * (size_t)p.k_pad);
    p.w = malloc(sizeof(uint16_t) * (size_t)n * (size_t)p.k_pad);
    p.bias = malloc(sizeof(float) * (size_t)n);
    assert_true(xf && wf && p.x && p.w && p.bias);
    demix_test_fill_uniform(xf, (size_t)rows * (size_t)k, 1.0f, rng);
    demix_test_fill_uniform(wf, (size_t)n * (size_t)k, 0.3f, rng);
    demix_test_fill_uniform(p.bias, (size_t)n, 0.5f, rng);
    demix__cpu_bf16_rows(rows, xf, (size_t)k, k, NULL, 0, 0, p.x, p.k_pad);
    demix__cpu_bf16_rows(n, wf, (size_t)k, k, NULL, 0, 0, p.w, p.k_pad);
    free(xf);
    free(wf);
    return p;
}

static void free_bf16_problem(bf16_problem *p)
{
    free(p->x);
    free(p->w);
    free(p->bias);
}

static const int bf16_shapes[][3] = {
    /* rows, n, k */
    {1, 1, 1},   {1, 19, 31},  {2, 17, 32}, {3, 13, 33},   {4, 9, 2052},
    {5, 11, 64}, {7, 30, 500}, {8, 96, 48}, {12, 14, 100}, {13, 33, 70},
};

static void test_bf16_matches_double(void **state)
{
    (void)state;
    if (!demix__cpu_bf16_available()) {
        print_message("no AVX512-BF16 here: bf16 kernel not run\n");
        skip();
    }
    uint64_t rng = demix_test_seed() ^ 0xBF16;
    for (size_t i = 0; i < sizeof bf16_shapes / sizeof bf16_shapes[0]; i++) {
        const int *s = bf16_shapes[i];
        bf16_problem p = make_bf16_problem(s[0], s[1], s[2], &rng);
        float *y = malloc(sizeof(float) * (size_t)p.rows * (size_t)p.n);
        assert_non_null(y);
        demix__cpu_matmul_bf16(p.rows, p.n, p.k_pad, p.x, p.w, p.bias, y,
                               (size_t)p.n);
        /* Products of bf16 values are exact in float: only the float
         * accumulation rounds. */
        for (int r = 0; r < p.rows; r++)
            for (int j = 0; j < p.n; j++) {
                double sum = p.bias[j], mag = fabs(sum);
                for (int k = 0; k < p.k; k++) {
                    double t = (double)demix__cpu_bf16_to_float(
                                   p.x[(size_t)r * p.k_pad + k]) *
                               demix__cpu_bf16_to_float(
                                   p.w[(size_t)j * p.k_pad + k]);
                    sum += t, mag += fabs(t);
                }
                if (fabs(y[r * p.n + j] - sum) > 1e-6 * mag)
                    fail_msg("bf16 rows %d n %d k %d: y[%d][%d] = %.9g, "
                             "double %.9g",
                             p.rows, p.n, p.k, r, j, y[r * p.n + j], sum);
            }
        free(y);
        free_bf16_problem(&p);
    }
}

static void test_bf16_rows_are_batch_independent(void **state)
{
    (void)state;
    if (!demix__cpu_bf16_available())
        skip();
    uint64_t rng = demix_test_seed() ^ 0xB16B;
    for (size_t i = 0; i < sizeof bf16_shapes / sizeof bf16_shapes[0]; i++) {
        const int *s = bf16_shapes[i];
        bf16_problem p = make_bf16_problem(13, s[1], s[2], &rng);
        size_t row_bytes = sizeof(float) * (size_t)p.n;
        float *alone = malloc(row_bytes * 13), *batch = malloc(row_bytes * 13);
        assert_true(alone && batch);
        for (int r = 0; r < 13; r++)
            demix__cpu_matmul_bf16(1, p.n, p.k_pad, p.x + (size_t)r * p.k_pad,
                                   p.w, p.bias, alone + (size_t)r * p.n,
                                   (size_t)p.n);
        for (int r0 = 0; r0 < 13; r0++)
            for (int len = 1; r0 + len <= 13; len++) {
                demix__cpu_matmul_bf16(len, p.n, p.k_pad,
                                       p.x + (size_t)r0 * p.k_pad, p.w, p.bias,
                                       batch, (size_t)p.n);
                for (int r = 0; r < len; r++)
                    if (memcmp(batch + (size_t)r * p.n,
                               alone + (size_t)(r0 + r) * p.n, row_bytes))
                        fail_msg("bf16 n %d k %d: row %d differs in a batch "
                                 "of %d at position %d",
                                 p.n, p.k, r0 + r, len, r);
            }
        free(alone);
        free(batch);
        free_bf16_problem(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_double),
        cmocka_unit_test(test_rows_are_batch_independent),
        cmocka_unit_test(test_portable_path_identical),
        cmocka_unit_test(test_bf16_rounding_and_padding),
        cmocka_unit_test(test_bf16_matches_double),
        cmocka_unit_test(test_bf16_rows_are_batch_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
