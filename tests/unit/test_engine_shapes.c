/*
 * test_engine_shapes.c - output shapes of engine.h (demix_engine_set_output,
 * demix_engine_output_row) on the CPU backend, against the synchronous
 * step of a twin engine, whose full float32 outputs are reduced here by
 * code written from engine.h's definition alone:
 *
 * - shaped_rows_match_the_definition: 120 pipelined steps over random slot
 *   subsets, each slot with a random shape (float32 or 16-bit; a random
 *   subset of the sources in a random order, or a mix with random gains,
 *   some zero), reshaped at random between submits: every row has the
 *   size of its shape at submit and equal contents (16-bit: equal to
 *   lroundf(x * 32768) clamped; float32 mixes: equal bits).
 * - default_shape_is_unchanged: slots left at (or set back to) the default
 *   shape give the unshaped layout and bytes, row by row.
 * - s16_rounding: halves away from zero, clamping, NaN as 0.
 * - shape_errors: set_output on a closed slot, an unknown format, 0 or
 *   T + 1 sources, a source out of range, a NaN gain: DEMIX_EARG; opening
 *   a slot resets its shape; row_bytes of each shape.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

#define SLOTS 5
#define STEPS 120

static demix_model *random_model(uint64_t seed)
{
    demix_model *m = NULL;
    assert_int_equal(demix_model_create_random(24, 40, 0, 44100, seed, &m),
                     DEMIX_OK);
    return m;
}

static demix_engine *cpu_engine(const demix_model *m)
{
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.backend = DEMIX_BACKEND_CPU;
    o.precision = DEMIX_PRECISION_FP32;
    o.max_slots = SLOTS;
    demix_engine *e = NULL;
    char err[256] = "";
    int rc = demix_engine_create(m, &o, &e, err, sizeof err);
    if (rc)
        fail_msg("engine create: %s (%s)", demix_errname(rc), err);
    return e;
}

/* engine.h's 16-bit sample, from its definition. */
static int16_t ref_s16(float x)
{
    float v = x * 32768.0f;
    if (isnan(v))
        return 0;
    long r = lroundf(fmaxf(fminf(v, 40000.0f), -40000.0f));
    return (int16_t)(r < -32768 ? -32768 : r > 32767 ? 32767 : r);
}

static void random_shape(demix_output_shape *sh, const demix_model_config *c,
                         uint64_t *st)
{
    demix_output_shape_init(sh, c);
    const int T = c->num_sources;
    sh->format = demix_test_rand(st) % 2 ? DEMIX_SAMPLE_S16 : DEMIX_SAMPLE_F32;
    switch (demix_test_rand(st) % 3) {
    case 0: /* default sources */
        break;
    case 1: { /* a subset in a random order */
        int perm[DEMIX_MAX_SOURCES];
        for (int t = 0; t < T; t++)
            perm[t] = t;
        for (int t = T - 1; t > 0; t--) {
            int j = (int)(demix_test_rand(st) % (uint64_t)(t + 1));
            int x = perm[t];
            perm[t] = perm[j];
            perm[j] = x;
        }
        sh->count = 1 + (int)(demix_test_rand(st) % (uint64_t)T);
        for (int j = 0; j < sh->count; j++)
            sh->sources[j] = perm[j];
        break;
    }
    default: /* a mix, some gains zero */
        sh->mix = 1;
        for (int t = 0; t < T; t++)
            sh->gains[t] = demix_test_rand(st) % 4 == 0
                               ? 0.0f
                               : (float)(demix_test_rand(st) % 2001) / 1000.0f -
                                     0.5f;
        break;
    }
}

/* Row of the full output (T x CH floats) reduced to the shape, into buf;
 * returns its bytes. */
static size_t reduce(const float *full, int T, int CH,
                     const demix_output_shape *sh, unsigned char *buf)
{
    int planes = sh->mix ? 1 : sh->count;
    float *f = (float *)buf;
    int16_t *s = (int16_t *)buf;
    for (int p = 0; p < planes; p++)
        for (int k = 0; k < CH; k++) {
            float v;
            if (sh->mix) {
                v = 0.0f;
                for (int t = 0; t < T; t++)
                    if (sh->gains[t] != 0.0f) {
                        volatile float term =
                            sh->gains[t] * full[(size_t)t * CH + k];
                        v = v + term;
                    }
            } else {
                v = full[(size_t)sh->sources[p] * CH + k];
            }
            if (sh->format == DEMIX_SAMPLE_S16)
                s[(size_t)p * CH + k] = ref_s16(v);
            else
                f[(size_t)p * CH + k] = v;
        }
    return (size_t)planes * (size_t)CH *
           (sh->format == DEMIX_SAMPLE_S16 ? 2 : 4);
}

static void test_shaped_rows_match_the_definition(void **state)
{
    (void)state;
    uint64_t st = demix_test_seed();
    demix_model *m = random_model(st);
    const demix_model_config *c = demix_model_get_config(m);
    const int T = c->num_sources, CH = c->channels * c->hop_samples;
    demix_engine *sync = cpu_engine(m), *pipe = cpu_engine(m);
    int ids[SLOTS], idp[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        assert_int_equal(demix_engine_open_slot(sync, &ids[i]), DEMIX_OK);
        assert_int_equal(demix_engine_open_slot(pipe, &idp[i]), DEMIX_OK);
    }
    assert_int_equal(demix_engine_reserve_io(pipe, SLOTS), DEMIX_OK);
    demix_output_shape shape[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        random_shape(&shape[i], c, &st);
        assert_int_equal(demix_engine_set_output(pipe, idp[i], &shape[i]),
                         DEMIX_OK);
    }
    float *in = malloc((size_t)SLOTS * CH * sizeof *in);
    float *full = malloc((size_t)SLOTS * T * CH * sizeof *full);
    unsigned char *want = malloc((size_t)T * CH * sizeof(float));
    long rows = 0, s16_rows = 0, mix_rows = 0;
    for (int h = 0; h < STEPS; h++) {
        int list[SLOTS], n = 0;
        for (int s = 0; s < SLOTS; s++)
            if (demix_test_rand(&st) % 3)
                list[n++] = s;
        if (!n)
            list[n++] = (int)(demix_test_rand(&st) % SLOTS);
        /* reshape one slot now and then: the next steps use the new one */
        if (demix_test_rand(&st) % 5 == 0) {
            int s = (int)(demix_test_rand(&st) % SLOTS);
            random_shape(&shape[s], c, &st);
            assert_int_equal(
                demix_engine_set_output(pipe, idp[s], &shape[s]), DEMIX_OK);
        }
        demix_test_fill_uniform(in, (size_t)n * CH, 0.9f, &st);
        assert_int_equal(demix_engine_step(sync, n, list, in, full), DEMIX_OK);
        assert_int_equal(demix_engine_submit(pipe, n, list, in), DEMIX_OK);
        assert_int_equal(demix_engine_collect(pipe, NULL), DEMIX_OK);
        for (int i = 0; i < n; i++) {
            const demix_output_shape *sh = &shape[list[i]];
            size_t want_bytes =
                reduce(full + (size_t)i * T * CH, T, CH, sh, want);
            assert_int_equal(want_bytes, demix_output_shape_row_bytes(sh, c));
            size_t bytes = 0;
            const void *row = demix_engine_output_row(pipe, i, &bytes);
            assert_non_null(row);
            assert_int_equal(bytes, want_bytes);
            assert_memory_equal(row, want, bytes);
            rows++;
            s16_rows += sh->format == DEMIX_SAMPLE_S16;
            mix_rows += sh->mix;
        }
        assert_null(demix_engine_output_row(pipe, n, NULL));
    }
    print_message("# %ld shaped rows equal (%ld 16-bit, %ld mixes)\n", rows,
                  s16_rows, mix_rows);
    assert_true(s16_rows > 0 && mix_rows > 0);
    free(in);
    free(full);
    free(want);
    demix_engine_destroy(sync);
    demix_engine_destroy(pipe);
    demix_model_destroy(m);
}

static void test_default_shape_is_unchanged(void **state)
{
    (void)state;
    uint64_t st = demix_test_seed() ^ 77;
    demix_model *m = random_model(st);
    const demix_model_config *c = demix_model_get_config(m);
    const size_t CH = (size_t)c->channels * c->hop_samples;
    const size_t row = CH * (size_t)c->num_sources * sizeof(float);
    demix_engine *sync = cpu_engine(m), *pipe = cpu_engine(m);
    int ids[SLOTS], idp[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        assert_int_equal(demix_engine_open_slot(sync, &ids[i]), DEMIX_OK);
        assert_int_equal(demix_engine_open_slot(pipe, &idp[i]), DEMIX_OK);
    }
    /* slot 0 shaped, then set back to the default; slot 1 shaped, so the
     * step is packed, with the default rows in their full layout */
    demix_output_shape sh;
    demix_output_shape_init(&sh, c);
    sh.format = DEMIX_SAMPLE_S16;
    assert_int_equal(demix_engine_set_output(pipe, idp[0], &sh), DEMIX_OK);
    assert_int_equal(demix_engine_set_output(pipe, idp[1], &sh), DEMIX_OK);
    demix_output_shape_init(&sh, c);
    assert_int_equal(demix_engine_set_output(pipe, idp[0], &sh), DEMIX_OK);
    float *in = malloc(SLOTS * CH * sizeof *in);
    float *full = malloc(SLOTS * row);
    int list[SLOTS] = {0, 2, 3, 4, 1};
    for (int h = 0; h < 10; h++) {
        demix_test_fill_uniform(in, SLOTS * CH, 0.5f, &st);
        int n = h % 2 ? SLOTS : SLOTS - 1; /* odd steps include slot 1 */
        assert_int_equal(demix_engine_step(sync, n, list, in, full), DEMIX_OK);
        assert_int_equal(demix_engine_submit(pipe, n, list, in), DEMIX_OK);
        assert_int_equal(demix_engine_collect(pipe, NULL), DEMIX_OK);
        for (int i = 0; i < SLOTS - 1; i++) { /* the default-shaped rows */
            size_t bytes = 0;
            const void *r = demix_engine_output_row(pipe, i, &bytes);
            assert_int_equal(bytes, row);
            assert_memory_equal(r, (char *)full + (size_t)i * row, row);
        }
        if (n == SLOTS - 1) /* unshaped step: the plain layout */
            assert_memory_equal(demix_engine_output(pipe, NULL), full,
                                (size_t)n * row);
    }
    free(in);
    free(full);
    demix_engine_destroy(sync);
    demix_engine_destroy(pipe);
    demix_model_destroy(m);
}

static void test_s16_rounding(void **state)
{
    (void)state;
    demix_model *m = random_model(5);
    const demix_model_config *c = demix_model_get_config(m);
    demix_engine *e = cpu_engine(m);
    int slot;
    assert_int_equal(demix_engine_open_slot(e, &slot), DEMIX_OK);
    /* Feed zeros to find the model's output, then check the packer on
     * chosen values through a mix whose gain scales a known plane: easier
     * to test the definition directly on values via a float32 plane and
     * its 16-bit twin of the same step. */
    demix_output_shape f32, s16;
    demix_output_shape_init(&f32, c);
    f32.count = 1;
    s16 = f32;
    s16.format = DEMIX_SAMPLE_S16;
    const size_t CH = (size_t)c->channels * c->hop_samples;
    float *in = calloc(CH, sizeof *in);
    uint64_t st = 11;
    long checked = 0;
    for (int h = 0; h < 8; h++) {
        demix_test_fill_uniform(in, CH, 2.0f, &st); /* some clip */
        assert_int_equal(demix_engine_reset_slot(e, slot), DEMIX_OK);
        assert_int_equal(demix_engine_set_output(e, slot, &f32), DEMIX_OK);
        assert_int_equal(demix_engine_submit(e, 1, &slot, in), DEMIX_OK);
        assert_int_equal(demix_engine_collect(e, NULL), DEMIX_OK);
        float *plane = malloc(CH * sizeof *plane);
        memcpy(plane, demix_engine_output_row(e, 0, NULL), CH * sizeof *plane);
        assert_int_equal(demix_engine_reset_slot(e, slot), DEMIX_OK);
        assert_int_equal(demix_engine_set_output(e, slot, &s16), DEMIX_OK);
        assert_int_equal(demix_engine_submit(e, 1, &slot, in), DEMIX_OK);
        assert_int_equal(demix_engine_collect(e, NULL), DEMIX_OK);
        const int16_t *q = demix_engine_output_row(e, 0, NULL);
        for (size_t k = 0; k < CH; k++, checked++)
            assert_int_equal(q[k], ref_s16(plane[k]));
        free(plane);
    }
    print_message("# %ld 16-bit samples equal lroundf(x * 32768) clamped\n",
                  checked);
    free(in);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

static void test_shape_errors(void **state)
{
    (void)state;
    demix_model *m = random_model(9);
    const demix_model_config *c = demix_model_get_config(m);
    demix_engine *e = cpu_engine(m);
    demix_output_shape sh;
    demix_output_shape_init(&sh, c);
    const size_t CH = (size_t)c->channels * c->hop_samples;
    assert_int_equal(demix_output_shape_row_bytes(&sh, c),
                     (size_t)c->num_sources * CH * 4);
    assert_int_equal(demix_engine_set_output(e, 0, &sh), DEMIX_EARG);
    int slot;
    assert_int_equal(demix_engine_open_slot(e, &slot), DEMIX_OK);
    assert_int_equal(demix_engine_set_output(e, slot, NULL), DEMIX_EARG);
    sh.format = (demix_sample_format)7;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_EARG);
    assert_int_equal(demix_output_shape_row_bytes(&sh, c), 0);
    demix_output_shape_init(&sh, c);
    sh.count = 0;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_EARG);
    sh.count = c->num_sources + 1;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_EARG);
    sh.count = 2;
    sh.sources[1] = c->num_sources;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_EARG);
    demix_output_shape_init(&sh, c);
    sh.mix = 1;
    sh.gains[1] = NAN;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_EARG);
    sh.gains[1] = 0.5f;
    sh.format = DEMIX_SAMPLE_S16;
    assert_int_equal(demix_engine_set_output(e, slot, &sh), DEMIX_OK);
    assert_int_equal(demix_output_shape_row_bytes(&sh, c), CH * 2);
    /* close and reopen: the default shape again */
    assert_int_equal(demix_engine_close_slot(e, slot), DEMIX_OK);
    assert_int_equal(demix_engine_open_slot(e, &slot), DEMIX_OK);
    float *in = calloc(CH, sizeof *in);
    assert_int_equal(demix_engine_submit(e, 1, &slot, in), DEMIX_OK);
    assert_int_equal(demix_engine_collect(e, NULL), DEMIX_OK);
    size_t bytes = 0;
    assert_non_null(demix_engine_output_row(e, 0, &bytes));
    assert_int_equal(bytes, (size_t)c->num_sources * CH * 4);
    free(in);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shaped_rows_match_the_definition),
        cmocka_unit_test(test_default_shape_is_unchanged),
        cmocka_unit_test(test_s16_rounding),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
