/*
 * test_engine_residual.c - the stems add up to the input (docs/model.md,
 * the mixture-consistency projection) through engine.h on the CPU
 * backend, for the tiny test model (tests/data/tiny.safetensors) and fresh
 * seeded random input (noise and tones, a silent hop, a hop at -60 dBFS):
 *
 * - step_f32_stems: demix_engine_step, fp32 and the default precision
 *   (bf16 products where the CPU has them), 3 slots: the residual
 *   10 log10(sum (x - sum_t s_t)^2 / sum x^2) over every emitted hop
 *   (hop k against input hop k - 1) is at most -60 dB; in practice float
 *   rounding, about -143 dB.
 * - shaped_outputs: submit/collect with the output shapes a driver asks
 *   for: float32 stems (same bar), 16-bit stems (each stem is rounded on
 *   its own, so |x - sum_t s_t| <= T/2 steps of 2^-15 per sample where no
 *   stem clips, and the residual is about T/12 steps^2 of noise, -95
 *   dBFS: -60 dB holds for input above about -35 dBFS RMS, as here), the
 *   float32 mix with unit gains (at most -60 dB; float rounding) and the
 *   16-bit mix (within half a step plus float rounding of the input).
 *   In practice about -140 dB in float32, -80 dB in 16 bits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

#define SLOTS 3
#define HOPS 60
#define BAR_DB (-60.0)
#define S16_STEP (1.0 / 32768.0)

typedef struct sums {
    double err2, sig2, max_abs;
} sums;

static demix_model *tiny_model(void)
{
    demix_model *m = NULL;
    char err[512] = "";
    int rc = demix_model_load(demix_test_data_path("tiny.safetensors"), &m,
                              err, sizeof err);
    if (rc)
        fail_msg("load tiny.safetensors: %s (%s)", demix_errname(rc), err);
    return m;
}

static demix_engine *cpu_engine(const demix_model *m, demix_precision p)
{
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.backend = DEMIX_BACKEND_CPU;
    o.precision = p;
    o.max_slots = SLOTS;
    demix_engine *e = NULL;
    char err[256] = "";
    int rc = demix_engine_create(m, &o, &e, err, sizeof err);
    if (rc)
        fail_msg("engine create: %s (%s)", demix_errname(rc), err);
    return e;
}

/* Hop h of slot r: noise and two tones at a level per slot (about -12,
 * -20 and -30 dBFS RMS), hop 7 silent, hop 11 at -60 dBFS. */
static void fill_hop(float *x, int CH, int h, int r, uint64_t *st)
{
    static const float level[SLOTS] = {0.25f, 0.1f, 0.03f};
    float g = h == 7 ? 0.0f : h == 11 ? 0.001f : level[r];
    for (int k = 0; k < CH; k++) {
        double t = (double)(h * CH + k);
        float tone = (float)(0.6 * sin(0.031 * t * (r + 1)) +
                             0.3 * sin(0.27 * t + r));
        x[k] = g * (0.7f * demix_test_uniform(st) + tone);
    }
}

static void add_residual(sums *s, const float *x, const float *sum, int n)
{
    for (int k = 0; k < n; k++) {
        double d = (double)x[k] - sum[k];
        s->err2 += d * d;
        s->sig2 += (double)x[k] * x[k];
        s->max_abs = fmax(s->max_abs, fabs(d));
    }
}

static double residual_db(const sums *s)
{
    return 10.0 * log10(fmax(s->err2, 1e-300) / s->sig2);
}

static void check_step(demix_precision precision, const char *label)
{
    uint64_t st = demix_test_seed() ^ 0x5E5;
    demix_model *m = tiny_model();
    const demix_model_config *c = demix_model_get_config(m);
    const int T = c->num_sources, CH = c->channels * c->hop_samples;
    demix_engine *e = cpu_engine(m, precision);
    int slots[SLOTS];
    for (int r = 0; r < SLOTS; r++)
        assert_int_equal(demix_engine_open_slot(e, &slots[r]), DEMIX_OK);
    float *in = malloc((size_t)SLOTS * CH * sizeof *in);
    float *prev = calloc((size_t)SLOTS * CH, sizeof *prev);
    float *out = malloc((size_t)SLOTS * T * CH * sizeof *out);
    float *sum = malloc((size_t)CH * sizeof *sum);
    assert_true(in && prev && out && sum);
    sums s = {0};
    for (int h = 0; h < HOPS; h++) {
        for (int r = 0; r < SLOTS; r++)
            fill_hop(in + (size_t)r * CH, CH, h, r, &st);
        assert_int_equal(demix_engine_step(e, SLOTS, slots, in, out),
                         DEMIX_OK);
        for (int r = 0; r < SLOTS; r++) {
            const float *o = out + (size_t)r * T * CH;
            for (int k = 0; k < CH; k++) {
                sum[k] = 0.0f;
                for (int t = 0; t < T; t++)
                    sum[k] += o[(size_t)t * CH + k];
            }
            add_residual(&s, prev + (size_t)r * CH, sum, CH);
        }
        memcpy(prev, in, (size_t)SLOTS * CH * sizeof *in);
    }
    print_message("%s (%s): residual %.1f dB, max |x - sum| %.3g\n", label,
                  demix_engine_describe(e), residual_db(&s), s.max_abs);
    assert_true(residual_db(&s) <= BAR_DB);
    free(in), free(prev), free(out), free(sum);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

static void test_step_f32_stems(void **state)
{
    (void)state;
    check_step(DEMIX_PRECISION_FP32, "fp32");
    check_step(DEMIX_PRECISION_DEFAULT, "default");
}

/* The four shapes, one per slot of one engine (slot 3 is a second engine's
 * slot 0: SLOTS is 3). Index: 0 f32 stems, 1 s16 stems, 2 f32 mix, 3 s16
 * mix. */
enum { SHAPES = 4 };

static void set_shape(demix_engine *e, int slot, int which,
                      const demix_model_config *c)
{
    demix_output_shape sh;
    demix_output_shape_init(&sh, c); /* all sources, mix gains 1 */
    sh.format = which % 2 ? DEMIX_SAMPLE_S16 : DEMIX_SAMPLE_F32;
    sh.mix = which >= 2;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_OK);
}

/* Sum of a collected row's planes (1 for a mix) at sample k. */
static float row_sum(const void *row, int which, int T, int CH, int k,
                     int *clipped)
{
    int planes = which >= 2 ? 1 : T;
    float v = 0.0f;
    for (int p = 0; p < planes; p++) {
        if (which % 2) {
            int16_t q = ((const int16_t *)row)[(size_t)p * CH + k];
            *clipped |= q == 32767 || q == -32768;
            v += (float)q / 32768.0f;
        } else {
            v += ((const float *)row)[(size_t)p * CH + k];
        }
    }
    return v;
}

static void test_shaped_outputs(void **state)
{
    (void)state;
    static const char *const names[SHAPES] = {"f32 stems", "s16 stems",
                                              "f32 mix", "s16 mix"};
    uint64_t st = demix_test_seed() ^ 0x5A9E;
    demix_model *m = tiny_model();
    const demix_model_config *c = demix_model_get_config(m);
    const int T = c->num_sources, CH = c->channels * c->hop_samples;
    demix_engine *e[2] = {cpu_engine(m, DEMIX_PRECISION_DEFAULT),
                          cpu_engine(m, DEMIX_PRECISION_DEFAULT)};
    int n_of[2] = {SLOTS, 1}, slots[2][SLOTS];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < n_of[i]; r++) {
            assert_int_equal(demix_engine_open_slot(e[i], &slots[i][r]),
                             DEMIX_OK);
            set_shape(e[i], slots[i][r], i * SLOTS + r, c);
        }
    float *in = malloc((size_t)SHAPES * CH * sizeof *in);
    float *prev = calloc((size_t)SHAPES * CH, sizeof *prev);
    float *sum = malloc((size_t)CH * sizeof *sum);
    assert_true(in && prev && sum);
    sums s[SHAPES];
    memset(s, 0, sizeof s);
    int clipped = 0;
    for (int h = 0; h < HOPS; h++) {
        /* every shape sees the same input, at the level of slot 0 */
        fill_hop(in, CH, h, 0, &st);
        for (int w = 1; w < SHAPES; w++)
            memcpy(in + (size_t)w * CH, in, (size_t)CH * sizeof *in);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(demix_engine_submit(e[i], n_of[i], slots[i],
                                                 in + (size_t)i * SLOTS * CH),
                             DEMIX_OK);
            assert_int_equal(demix_engine_collect(e[i], NULL), DEMIX_OK);
            for (int r = 0; r < n_of[i]; r++) {
                int w = i * SLOTS + r;
                size_t bytes = 0;
                const void *row = demix_engine_output_row(e[i], r, &bytes);
                assert_non_null(row);
                for (int k = 0; k < CH; k++)
                    sum[k] = row_sum(row, w, T, CH, k, &clipped);
                add_residual(&s[w], prev + (size_t)w * CH, sum, CH);
            }
        }
        memcpy(prev, in, (size_t)SHAPES * CH * sizeof *in);
    }
    assert_false(clipped); /* the bound below assumes no stem clips */
    for (int w = 0; w < SHAPES; w++)
        print_message("%s: residual %.1f dB, max |x - sum| %.3g (%.2f "
                      "16-bit steps)\n",
                      names[w], residual_db(&s[w]), s[w].max_abs,
                      s[w].max_abs / S16_STEP);
    assert_true(residual_db(&s[0]) <= BAR_DB);
    assert_true(residual_db(&s[2]) <= BAR_DB);
    /* 16-bit: each of the T stems within half a step, the mix within half
     * a step; plus float rounding of a sum of input-sized values. */
    assert_true(s[1].max_abs <= (T * 0.5 + 0.01) * S16_STEP);
    assert_true(s[3].max_abs <= 0.51 * S16_STEP);
    assert_true(residual_db(&s[1]) <= BAR_DB);
    assert_true(residual_db(&s[3]) <= BAR_DB);
    free(in), free(prev), free(sum);
    demix_engine_destroy(e[0]);
    demix_engine_destroy(e[1]);
    demix_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_f32_stems),
        cmocka_unit_test(test_shaped_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
