/*
 * test_golden.c - the CPU engine against the PyTorch reference, stage by
 * stage and end to end (style.md section 8, link (a); llm.c's test_gpt2.c
 * check_tensor in spirit).
 *
 * Data: tests/data/tiny{,_small}.safetensors are tiny random HS-TasNet
 * models (D = 24, NB = 40, full and small variant) and
 * tests/data/tiny{,_small}_golden.safetensors hold, computed in float64 by
 * train/reference.py from exactly those float32 weights (make_golden.py):
 *   "input"          [C, N]    64 hops of music-like audio
 *   "output"         [T, C, N] the offline forward (output j = input j)
 *   "stage.<name>"   [K, ...]  the first K frames' intermediates, named by
 *                              demix__cpu_stage_name(), layouts as
 *                              cpu_backend.h
 *
 * Design: one slot of a CPU engine (float32) is stepped through the input
 * hop by hop. After each of the first K steps every stage is read with
 * demix__cpu_read_stage() and compared with stage.<name>[k]. End to end,
 * the emitted hops, the first dropped, with one zero hop fed at the end,
 * must equal "output" except its last H samples (model-spec.md, "offline
 * equivalence"). The bar is a relative error ||a - b|| / ||b|| of 1e-5 for
 * each stage of each frame and each source; a float32 PyTorch run of the
 * same models is within about 1e-6 of the truth (make_golden.py prints it).
 * Every stage error is printed, so a failure shows where the engine first
 * departs from the reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "cpu_backend.h"
#include "engine.h"
#include "engine_impl.h"
#include "safetensors.h"

#define GOLDEN_MAX_FILE_BYTES ((size_t)64 << 20)
#define GOLDEN_STAGE_TOL 1e-5
#define GOLDEN_OUTPUT_TOL 1e-5
#define GOLDEN_MAX_FRAMES 16

/* The tiny models make_golden.py writes. */
#define GOLDEN_DIM 24
#define GOLDEN_NUM_BASIS 40

typedef struct golden_file {
    unsigned char *data;
    size_t size;
    demix_st_file st;
} golden_file;

/* A tensor of a golden file, widened to float32 (malloc'd). */
typedef struct golden_tensor {
    float *data;
    int ndim;
    int64_t shape[DEMIX_ST_MAX_DIMS];
    size_t elements;
} golden_tensor;

static void golden_open(const char *name, golden_file *g)
{
    char err[512] = "";
    memset(g, 0, sizeof *g);
    int rc = demix_read_file(demix_test_data_path(name), GOLDEN_MAX_FILE_BYTES,
                             &g->data, &g->size, err, sizeof err);
    if (rc != DEMIX_OK)
        fail_msg("demix_read_file(%s): %s: %s", name, demix_errname(rc), err);
    rc = demix_st_parse(g->data, g->size, &g->st, err, sizeof err);
    if (rc != DEMIX_OK)
        fail_msg("demix_st_parse(%s): %s: %s", name, demix_errname(rc), err);
}

static void golden_close(golden_file *g)
{
    demix_st_free(&g->st);
    free(g->data);
    memset(g, 0, sizeof *g);
}

static void golden_read(const golden_file *g, const char *name,
                        golden_tensor *out)
{
    char err[512] = "";
    const demix_st_tensor *t = demix_st_find(&g->st, name);
    if (!t)
        fail_msg("golden file has no tensor \"%s\"", name);
    memset(out, 0, sizeof *out);
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->elements = (size_t)t->elements;
    out->data = malloc((out->elements ? out->elements : 1) * sizeof(float));
    assert_non_null(out->data);
    int rc = demix_st_read_f32(t, out->data, out->elements, err, sizeof err);
    if (rc != DEMIX_OK)
        fail_msg("demix_st_read_f32(%s): %s: %s", name, demix_errname(rc),
                 err);
}

/* Floats per frame of each stage, from the model's configuration. */
static size_t stage_size(const demix_model_config *cfg, demix_cpu_stage s)
{
    size_t D = (size_t)cfg->dim, NB = (size_t)cfg->num_basis;
    size_t S = (size_t)cfg->spec_features, T = (size_t)cfg->num_sources;
    size_t CW = (size_t)cfg->channels * (size_t)cfg->window_samples;
    switch (s) {
    case DEMIX_CPU_STAGE_SPEC_FEAT: return S;
    case DEMIX_CPU_STAGE_SPEC: return D;
    case DEMIX_CPU_STAGE_BASIS: return NB;
    case DEMIX_CPU_STAGE_WAVE: return D;
    case DEMIX_CPU_STAGE_S1: return D;
    case DEMIX_CPU_STAGE_W1: return D;
    case DEMIX_CPU_STAGE_FUSED: return (size_t)cfg->fusion_dim;
    case DEMIX_CPU_STAGE_S2: return D;
    case DEMIX_CPU_STAGE_W2: return D;
    case DEMIX_CPU_STAGE_SPEC_MASK: return T * S;
    case DEMIX_CPU_STAGE_WAVE_MASK: return T * NB;
    case DEMIX_CPU_STAGE_SPEC_OUT: return T * CW;
    case DEMIX_CPU_STAGE_WAVE_OUT: return T * CW;
    default: return 0;
    }
}

/* What the model file of a golden pair must be. */
typedef struct golden_model {
    const char *file;   /* relative to tests/data */
    int small, dim, num_basis, sample_rate_hz;
} golden_model;

static void run_golden(const golden_model *expect, const char *golden_name)
{
    const char *model_name = expect->file;
    char err[512] = "";
    demix_model *model = NULL;
    int rc = demix_model_load(demix_test_data_path(model_name), &model, err,
                              sizeof err);
    if (rc != DEMIX_OK)
        fail_msg("demix_model_load(%s): %s: %s", model_name,
                 demix_errname(rc), err);
    const demix_model_config *cfg = demix_model_get_config(model);
    assert_int_equal(cfg->small, expect->small);
    assert_int_equal(cfg->dim, expect->dim);
    assert_int_equal(cfg->num_basis, expect->num_basis);
    assert_int_equal(cfg->sample_rate_hz, expect->sample_rate_hz);
    assert_int_equal(cfg->num_sources, 4);
    assert_string_equal(cfg->source_names[0], "drums");
    assert_string_equal(cfg->source_names[3], "other");
    const size_t C = (size_t)cfg->channels, H = (size_t)cfg->hop_samples;
    const size_t T = (size_t)cfg->num_sources;

    golden_file g;
    golden_open(golden_name, &g);
    golden_tensor input, want, stage[DEMIX_CPU_STAGE_COUNT];
    golden_read(&g, "input", &input);
    golden_read(&g, "output", &want);
    assert_int_equal(input.ndim, 2);
    assert_int_equal(input.shape[0], (int64_t)C);
    const size_t N = (size_t)input.shape[1];
    assert_true(N >= 2 * H && N % H == 0);
    assert_int_equal(want.ndim, 3);
    assert_int_equal(want.shape[0], (int64_t)T);
    assert_int_equal(want.shape[1], (int64_t)C);
    assert_int_equal(want.shape[2], (int64_t)N);

    size_t frames = 0, max_stage = 0;
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++) {
        char name[64];
        snprintf(name, sizeof name, "stage.%s",
                 demix__cpu_stage_name((demix_cpu_stage)s));
        golden_read(&g, name, &stage[s]);
        size_t per = stage_size(cfg, (demix_cpu_stage)s);
        if (s == 0)
            frames = (size_t)stage[s].shape[0];
        if ((size_t)stage[s].shape[0] != frames ||
            stage[s].elements != frames * per)
            fail_msg("%s: %zu floats, expected %zu frames of %zu", name,
                     stage[s].elements, frames, per);
        if (per > max_stage)
            max_stage = per;
    }
    assert_true(frames >= 1 && frames <= GOLDEN_MAX_FRAMES);
    assert_true(frames <= N / H);

    demix_engine_options opt;
    demix_engine_options_init(&opt);
    opt.backend = DEMIX_BACKEND_CPU;
    opt.precision = DEMIX_PRECISION_FP32;
    opt.max_slots = 1;
    demix_engine *engine = NULL;
    rc = demix_engine_create(model, &opt, &engine, err, sizeof err);
    if (rc != DEMIX_OK)
        fail_msg("demix_engine_create: %s: %s", demix_errname(rc), err);
    assert_string_equal(demix_engine_backend_name(engine), "cpu");
    int slot = -1;
    assert_int_equal(demix_engine_open_slot(engine, &slot), DEMIX_OK);
    void *ctx = demix__engine_backend_context(engine);
    assert_non_null(ctx);

    const size_t hops = N / H, steps = hops + 1, len = N + H;
    float *in_hop = calloc(C * H, sizeof(float));
    float *out_hop = calloc(T * C * H, sizeof(float));
    float *got = calloc(T * C * len, sizeof(float));
    float *buf = calloc(max_stage, sizeof(float));
    float *a = calloc(C * (N - H), sizeof(float));
    float *b = calloc(C * (N - H), sizeof(float));
    assert_true(in_hop && out_hop && got && buf && a && b);

    double stage_err[DEMIX_CPU_STAGE_COUNT][GOLDEN_MAX_FRAMES];
    int failed = 0;
    for (size_t k = 0; k < steps; k++) {
        for (size_t ch = 0; ch < C; ch++)
            for (size_t i = 0; i < H; i++)
                in_hop[ch * H + i] =
                    k < hops ? input.data[ch * N + k * H + i] : 0.0f;
        rc = demix_engine_step(engine, 1, &slot, in_hop, out_hop);
        if (rc != DEMIX_OK)
            fail_msg("step %zu: %s: %s", k, demix_errname(rc),
                     demix_engine_last_error(engine));
        for (size_t tc = 0; tc < T * C; tc++)
            memcpy(&got[tc * len + k * H], &out_hop[tc * H],
                   H * sizeof(float));
        if (k >= frames)
            continue;
        for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++) {
            size_t per = stage_size(cfg, (demix_cpu_stage)s);
            int n = demix__cpu_read_stage(ctx, (demix_cpu_stage)s, 0, buf,
                                          max_stage);
            if (n < 0 || (size_t)n != per)
                fail_msg("demix__cpu_read_stage(%s, frame %zu) returned %d, "
                         "expected %zu floats",
                         demix__cpu_stage_name((demix_cpu_stage)s), k, n, per);
            double e = demix_test_rel_error(buf, stage[s].data + k * per, per);
            stage_err[s][k] = e;
            if (!(e <= GOLDEN_STAGE_TOL))
                failed = 1;
        }
    }

    print_message("%s vs %s (float64 reference), relative error per frame:\n",
                  model_name, golden_name);
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++) {
        char line[256];
        int used = snprintf(line, sizeof line, "  stage %-9s",
                            demix__cpu_stage_name((demix_cpu_stage)s));
        for (size_t k = 0; k < frames && used > 0 &&
                           (size_t)used < sizeof line; k++)
            used += snprintf(line + used, sizeof line - (size_t)used,
                             " %9.2e%s", stage_err[s][k],
                             stage_err[s][k] <= GOLDEN_STAGE_TOL ? "" : "!");
        print_message("%s\n", line);
    }

    /* End to end: emitted sample H + j is output sample j. */
    for (size_t t = 0; t < T; t++) {
        for (size_t ch = 0; ch < C; ch++) {
            memcpy(&a[ch * (N - H)], &got[(t * C + ch) * len + H],
                   (N - H) * sizeof(float));
            memcpy(&b[ch * (N - H)], &want.data[(t * C + ch) * N],
                   (N - H) * sizeof(float));
        }
        double e = demix_test_rel_error(a, b, C * (N - H));
        double m = demix_test_max_abs_diff(a, b, C * (N - H));
        int ok = e <= GOLDEN_OUTPUT_TOL;
        print_message("  output %-8s rel %9.2e, max abs %9.2e%s\n",
                      cfg->source_names[t], e, m, ok ? "" : "  FAIL");
        if (!ok)
            failed = 1;
    }

    free(in_hop);
    free(out_hop);
    free(got);
    free(buf);
    free(a);
    free(b);
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++)
        free(stage[s].data);
    free(input.data);
    free(want.data);
    golden_close(&g);
    assert_int_equal(demix_engine_close_slot(engine, slot), DEMIX_OK);
    demix_engine_destroy(engine);
    demix_model_destroy(model);

    if (failed)
        fail_msg("%s: the CPU engine departs from the reference by more than "
                 "%.0e (marked '!' above)", model_name, GOLDEN_STAGE_TOL);
}

static void test_full_model_matches_reference(void **state)
{
    (void)state;
    const golden_model m = {"tiny.safetensors", 0, GOLDEN_DIM,
                            GOLDEN_NUM_BASIS, 44100};
    run_golden(&m, "tiny_golden.safetensors");
}

static void test_small_model_matches_reference(void **state)
{
    (void)state;
    const golden_model m = {"tiny_small.safetensors", 1, GOLDEN_DIM,
                            GOLDEN_NUM_BASIS, 44100};
    run_golden(&m, "tiny_small_golden.safetensors");
}

/* The shipped model (models/, trained weights in float16 storage): its
 * golden file was computed in float64 from the widened weights by
 * `train/make_golden.py --model models/hstasnet-d256-48k.safetensors
 * --hops 32 --frames 2`. */
static void test_shipped_model_matches_reference(void **state)
{
    (void)state;
    const golden_model m = {"../../models/hstasnet-d256-48k.safetensors", 0,
                            256, 512, 48000};
    run_golden(&m, "hstasnet-d256-48k_golden.safetensors");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_model_matches_reference),
        cmocka_unit_test(test_small_model_matches_reference),
        cmocka_unit_test(test_shipped_model_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
