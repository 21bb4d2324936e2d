/*
 * test_cuda_engine.c - the CUDA engine against the CPU engine (the
 * numerical truth), on fresh random weights and inputs each run (seed from
 * DEMIX_TEST_SEED, printed):
 *
 * - no_device_reports: without a device, --backend cuda fails with
 *   DEMIX_EDEVICE and a sentence and auto falls back to the CPU; with one,
 *   auto picks CUDA. Runs everywhere (CI has no GPU).
 * - stage_parity_fp32: every stage of cpu_backend.h and every emitted hop,
 *   row by row, within 1e-5 relative (fp32 mode), for the full-size model,
 *   the small variant and sizes that are not multiples of 16 (the
 *   vectorised and the one-unit-a-thread kernels).
 * - graphs_match_direct: replayed CUDA graphs give the results of running
 *   the same kernels directly.
 * - end_to_end_fp32: hundreds of hops on several slots (the recurrence),
 *   each hop within 1e-5 relative of the CPU.
 * - batch_compositions: 8 slots stepped in random subsets and orders over
 *   300 hops equal each slot stepped alone (fp32: 1e-5 relative per hop;
 *   fast: 1e-2, its 40 dB bar; different batch buckets run different
 *   product kernels, so equality is to rounding, not to the bit).
 * - reopened_slot_starts_from_zero: a closed and reopened slot, and a
 *   reset one, give what a never-used slot of the same engine gives, fed
 *   the same hops in the same steps.
 * - pinned_and_pageable_buffers_agree: steps from page-locked caller
 *   buffers (copied to and from directly) give what steps from ordinary
 *   buffers (through the engine's staging) give.
 * - too_many_slots: asking for more slots than fit fails at create with
 *   DEMIX_ENOMEM and says how many would fit.
 * - fast_sdr_music: the default (fast) mode's output over 30 s of
 *   music-like input (notes, bass, percussive bursts) has SDR >= 40 dB
 *   against the CPU engine for every source; the other fast policies and
 *   fp32 are measured and printed beside it.
 * - pipelined_matches_step: submit/collect (two steps in flight, the
 *   engine's page-locked buffers and the caller's own) gives the outputs
 *   of demix_engine_step() on a twin engine fed the same lists, to
 *   rounding (1e-6 relative), over mixed batch sizes (in-graph-copy
 *   buckets and larger ones) and over steps of more than one 4096-row
 *   chunk.
 * - shaped_outputs_match_the_packer: output shapes packed on the device
 *   (pack.cu) against the reference packer (demix__pack_row) applied to a
 *   twin engine's full outputs of the same steps: random shapes (16-bit,
 *   source subsets in random orders, mixes), steps of up to 4500 rows
 *   (several chunks, so rows' byte offsets cross chunk bounds); float32
 *   rows within 1e-6 relative, 16-bit samples within 1 (rounding of a
 *   value that differs in its last bits); the count of bit-identical rows
 *   is printed.
 *
 * Every test but the first skips itself when no CUDA device opens.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "engine.h"
#include "engine_impl.h"

#define FP32_TOL 1e-5

static int have_device(void)
{
    static int n = -1;
    if (n < 0) {
        n = demix__cuda_device_count();
        if (n == 0)
            print_message("# no CUDA device opens here: GPU tests skip\n");
    }
    return n > 0;
}

#define REQUIRE_DEVICE()                                                       \
    do {                                                                       \
        if (!have_device())                                                    \
            skip();                                                            \
    } while (0)

static demix_model *random_model(int D, int NB, int small, uint64_t seed)
{
    demix_model *m = NULL;
    assert_int_equal(demix_model_create_random(D, NB, small, 44100, seed, &m),
                     DEMIX_OK);
    return m;
}

/* The CPU reference runs on every core (bit-identical to one thread). */
static demix_threadpool *cpu_pool(void)
{
    static demix_threadpool *pool;
    if (!pool) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int n = cpus < 1 ? 1 : cpus > 16 ? 16 : (int)cpus;
        assert_int_equal(demix_threadpool_create(n, &pool), DEMIX_OK);
    }
    return pool;
}

static demix_engine *make_engine(const demix_model *m, demix_backend be,
                                 demix_precision p, int slots)
{
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.backend = be;
    if (be == DEMIX_BACKEND_CPU)
        o.pool = cpu_pool();
    o.precision = p;
    o.max_slots = slots;
    demix_engine *e = NULL;
    char err[512] = "";
    int rc = demix_engine_create(m, &o, &e, err, sizeof err);
    if (rc)
        print_message("# create (%s) failed: %s: %s\n",
                      be == DEMIX_BACKEND_CPU ? "cpu" : "cuda",
                      demix_errname(rc), err);
    assert_int_equal(rc, DEMIX_OK);
    return e;
}

static void open_slots(demix_engine *e, int n, int *ids)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(demix_engine_open_slot(e, &ids[i]), DEMIX_OK);
}

static void step_ok(demix_engine *e, int n, const int *slots,
                    const float *in, float *out)
{
    int rc = demix_engine_step(e, n, slots, in, out);
    if (rc)
        print_message("# step failed: %s\n", demix_engine_last_error(e));
    assert_int_equal(rc, DEMIX_OK);
}

static void shuffle(int *v, int n, uint64_t *st)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(demix_test_rand(st) % (uint64_t)(i + 1));
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static double dmax(double a, double b)
{
    return a > b ? a : b;
}

/* ------------------------------------------------------------ tests */

static void test_no_device_reports(void **state)
{
    (void)state;
    demix_model *m = random_model(16, 24, 0, 1);
    demix_engine_options o;
    demix_engine_options_init(&o);
    demix_engine *e = NULL;
    char err[512] = "";
    if (!have_device()) {
        o.backend = DEMIX_BACKEND_CUDA;
        assert_int_equal(demix_engine_create(m, &o, &e, err, sizeof err),
                         DEMIX_EDEVICE);
        assert_null(e);
        assert_true(strlen(err) > 10);
        print_message("# --backend cuda: %s\n", err);
        o.backend = DEMIX_BACKEND_AUTO;
        assert_int_equal(demix_engine_create(m, &o, &e, err, sizeof err),
                         DEMIX_OK);
        assert_string_equal(demix_engine_backend_name(e), "cpu");
        print_message("# --backend auto: %s\n", err);
    } else {
        o.backend = DEMIX_BACKEND_AUTO;
        assert_int_equal(demix_engine_create(m, &o, &e, err, sizeof err),
                         DEMIX_OK);
        assert_string_equal(demix_engine_backend_name(e), "cuda");
        print_message("# %s\n", demix_engine_describe(e));
    }
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

/* Every stage and every hop of `rows` slots, listed in a fresh random
 * order each hop, CPU against CUDA fp32. */
static void stage_parity(int D, int NB, int small, int rows, int hops,
                         uint64_t seed)
{
    demix_model *m = random_model(D, NB, small, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    demix_engine *cpu = make_engine(m, DEMIX_BACKEND_CPU, DEMIX_PRECISION_FP32,
                                    rows);
    demix_engine *gpu = make_engine(m, DEMIX_BACKEND_CUDA,
                                    DEMIX_PRECISION_FP32, rows);
    int ids[32], idg[32];
    open_slots(cpu, rows, ids);
    open_slots(gpu, rows, idg);
    for (int i = 0; i < rows; i++)
        assert_int_equal(ids[i], idg[i]);
    const size_t in_row = (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_row = in_row * cfg->num_sources;
    const size_t cap = (size_t)cfg->num_sources *
                       (cfg->spec_features + cfg->channels * cfg->window_samples);
    float *in = malloc(rows * in_row * sizeof *in);
    float *oc = malloc(rows * out_row * sizeof *oc);
    float *og = malloc(rows * out_row * sizeof *og);
    float *bc = malloc(cap * sizeof *bc), *bg = malloc(cap * sizeof *bg);
    assert_true(in && oc && og && bc && bg);
    uint64_t st = seed ^ 0x5eed;
    double worst[DEMIX_CPU_STAGE_COUNT] = {0}, worst_out = 0;
    void *cctx = demix__engine_backend_context(cpu);
    void *gctx = demix__engine_backend_context(gpu);
    for (int h = 0; h < hops; h++) {
        shuffle(ids, rows, &st);
        demix_test_fill_uniform(in, rows * in_row, 0.5f, &st);
        step_ok(cpu, rows, ids, in, oc);
        step_ok(gpu, rows, ids, in, og);
        for (int r = 0; r < rows; r++) {
            worst_out = dmax(worst_out,
                             demix_test_rel_error(og + r * out_row,
                                                  oc + r * out_row, out_row));
            for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++) {
                int nc = demix__cpu_read_stage(cctx, (demix_cpu_stage)s, r,
                                               bc, cap);
                int ng = demix__cuda_read_stage(gctx, (demix_cpu_stage)s, r,
                                                bg, cap);
                assert_true(nc > 0);
                assert_int_equal(nc, ng);
                worst[s] = dmax(worst[s],
                                demix_test_rel_error(bg, bc, (size_t)nc));
            }
        }
    }
    print_message("# parity D=%d NB=%d%s rows=%d hops=%d: out %.2e |", D, NB,
                  small ? " small" : "", rows, hops, worst_out);
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++)
        print_message(" %s %.1e", demix__cpu_stage_name((demix_cpu_stage)s),
                      worst[s]);
    print_message("\n");
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++)
        if (worst[s] > FP32_TOL)
            print_message("# stage %s over 1e-5: %.3e\n",
                          demix__cpu_stage_name((demix_cpu_stage)s), worst[s]);
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++)
        assert_true(worst[s] <= FP32_TOL);
    assert_true(worst_out <= FP32_TOL);
    free(in);
    free(oc);
    free(og);
    free(bc);
    free(bg);
    demix_engine_destroy(cpu);
    demix_engine_destroy(gpu);
    demix_model_destroy(m);
}

static void test_stage_parity_fp32(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t seed = demix_test_seed();
    stage_parity(24, 40, 0, 3, 6, seed + 1);
    stage_parity(24, 40, 1, 3, 6, seed + 2);
    stage_parity(37, 53, 0, 5, 6, seed + 3);
    stage_parity(500, 1500, 0, 4, 4, seed + 4);
    stage_parity(64, 96, 0, 20, 4, seed + 5); /* bucket 32 */
}

/* Graph replay against running the same work directly. */
static void test_graphs_match_direct(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t seed = demix_test_seed() + 10;
    demix_model *m = random_model(500, 1500, 0, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    demix__cuda_set_graphs(0);
    demix_engine *direct = make_engine(m, DEMIX_BACKEND_CUDA,
                                       DEMIX_PRECISION_DEFAULT, 3);
    demix__cuda_set_graphs(1);
    demix_engine *graph = make_engine(m, DEMIX_BACKEND_CUDA,
                                      DEMIX_PRECISION_DEFAULT, 3);
    int ids[3], idg[3];
    open_slots(direct, 3, ids);
    open_slots(graph, 3, idg);
    const size_t in_row = (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_row = in_row * cfg->num_sources;
    float *in = malloc(3 * in_row * sizeof *in);
    float *o1 = malloc(3 * out_row * sizeof *o1);
    float *o2 = malloc(3 * out_row * sizeof *o2);
    assert_true(in && o1 && o2);
    uint64_t st = seed;
    double worst = 0;
    for (int h = 0; h < 8; h++) {
        int n = 1 + h % 3;
        demix_test_fill_uniform(in, n * in_row, 0.5f, &st);
        step_ok(direct, n, ids, in, o1);
        step_ok(graph, n, idg, in, o2);
        worst = dmax(worst, demix_test_max_abs_diff(o1, o2, n * out_row));
    }
    print_message("# graphs vs direct: max abs diff %.3e\n", worst);
    assert_true(worst <= 1e-6);
    free(in);
    free(o1);
    free(o2);
    demix_engine_destroy(direct);
    demix_engine_destroy(graph);
    demix_model_destroy(m);
}

static void end_to_end(int D, int NB, int small, int rows, int hops,
                       uint64_t seed)
{
    demix_model *m = random_model(D, NB, small, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    demix_engine *cpu = make_engine(m, DEMIX_BACKEND_CPU, DEMIX_PRECISION_FP32,
                                    rows);
    demix_engine *gpu = make_engine(m, DEMIX_BACKEND_CUDA,
                                    DEMIX_PRECISION_FP32, rows);
    int ids[32], idg[32];
    open_slots(cpu, rows, ids);
    open_slots(gpu, rows, idg);
    const size_t in_row = (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_row = in_row * cfg->num_sources;
    float *in = malloc(rows * in_row * sizeof *in);
    float *oc = malloc(rows * out_row * sizeof *oc);
    float *og = malloc(rows * out_row * sizeof *og);
    assert_true(in && oc && og);
    uint64_t st = seed;
    double worst = 0, sum = 0;
    int worst_hop = -1;
    for (int h = 0; h < hops; h++) {
        demix_test_fill_uniform(in, rows * in_row, 0.5f, &st);
        step_ok(cpu, rows, ids, in, oc);
        step_ok(gpu, rows, idg, in, og);
        for (int r = 0; r < rows; r++) {
            double e = demix_test_rel_error(og + r * out_row, oc + r * out_row,
                                            out_row);
            sum += e;
            if (e > worst) {
                worst = e;
                worst_hop = h;
            }
        }
    }
    print_message("# end to end D=%d NB=%d%s, %d slots x %d hops: worst hop "
                  "%.2e (hop %d), mean %.2e\n",
                  D, NB, small ? " small" : "", rows, hops, worst, worst_hop,
                  sum / (rows * hops));
    assert_true(worst <= FP32_TOL);
    free(in);
    free(oc);
    free(og);
    demix_engine_destroy(cpu);
    demix_engine_destroy(gpu);
    demix_model_destroy(m);
}

static void test_end_to_end_fp32(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t seed = demix_test_seed() + 20;
    end_to_end(500, 1500, 0, 4, 200, seed);
    end_to_end(500, 1500, 0, 12, 50, seed + 2); /* bucket 16 */
    end_to_end(64, 96, 1, 3, 300, seed + 1);
}

/* 8 slots in random subsets and orders, each compared with its own copy
 * run alone (n = 1) on a second engine. */
static void compositions(demix_precision prec, double tol, uint64_t seed)
{
    enum { SLOTS = 8, HOPS = 300 };
    demix_model *m = random_model(500, 1500, 0, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    demix_engine *mix = make_engine(m, DEMIX_BACKEND_CUDA, prec, SLOTS);
    demix_engine *alone = make_engine(m, DEMIX_BACKEND_CUDA, prec, SLOTS);
    int im[SLOTS], ia[SLOTS];
    open_slots(mix, SLOTS, im);
    open_slots(alone, SLOTS, ia);
    const size_t in_row = (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_row = in_row * cfg->num_sources;
    float *in = malloc(SLOTS * in_row * sizeof *in);
    float *om = malloc(SLOTS * out_row * sizeof *om);
    float *oa = malloc(out_row * sizeof *oa);
    assert_true(in && om && oa);
    uint64_t st = seed, src[SLOTS];
    for (int s = 0; s < SLOTS; s++)
        src[s] = seed * 31 + (uint64_t)s; /* each slot's own input stream */
    double worst = 0;
    long compared = 0, exact = 0;
    int sizes[SLOTS + 1] = {0};
    for (int h = 0; h < HOPS; h++) {
        int list[SLOTS], n = 0;
        for (int s = 0; s < SLOTS; s++)
            if (demix_test_rand(&st) % 10 < 6)
                list[n++] = s;
        if (n == 0)
            list[n++] = (int)(demix_test_rand(&st) % SLOTS);
        shuffle(list, n, &st);
        sizes[n]++;
        int sl[SLOTS];
        for (int i = 0; i < n; i++) {
            sl[i] = im[list[i]];
            demix_test_fill_uniform(in + i * in_row, in_row, 0.5f,
                                    &src[list[i]]);
        }
        step_ok(mix, n, sl, in, om);
        for (int i = 0; i < n; i++) {
            step_ok(alone, 1, &ia[list[i]], in + i * in_row, oa);
            double e = demix_test_rel_error(om + i * out_row, oa, out_row);
            worst = dmax(worst, e);
            exact += demix_test_max_abs_diff(om + i * out_row, oa, out_row) == 0;
            compared++;
        }
    }
    print_message("# compositions (%s): %ld slot-hops, worst rel %.2e, %ld "
                  "bit-identical; batch sizes",
                  prec == DEMIX_PRECISION_FP32 ? "fp32" : "fast", compared,
                  worst, exact);
    for (int n = 1; n <= SLOTS; n++)
        print_message(" %d:%d", n, sizes[n]);
    print_message("\n");
    assert_true(worst <= tol);
    free(in);
    free(om);
    free(oa);
    demix_engine_destroy(mix);
    demix_engine_destroy(alone);
    demix_model_destroy(m);
}

static void test_batch_compositions(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t seed = demix_test_seed() + 30;
    compositions(DEMIX_PRECISION_FP32, FP32_TOL, seed);
    compositions(DEMIX_PRECISION_DEFAULT, 1e-2, seed + 1); /* 40 dB */
}

/* Feed the same random hops to slots x and y in the same steps ([x, y]);
 * returns the largest relative difference of their outputs over the hops. */
static double twin_hops(demix_engine *e, int x, int y, int hops, uint64_t seed,
                        float *in, float *out, size_t in_row, size_t out_row,
                        double *max_abs)
{
    uint64_t st = seed;
    int list[2] = {x, y};
    double worst = 0;
    *max_abs = 0;
    for (int h = 0; h < hops; h++) {
        demix_test_fill_uniform(in, in_row, 0.5f, &st);
        memcpy(in + in_row, in, in_row * sizeof *in);
        step_ok(e, 2, list, in, out);
        worst = dmax(worst, demix_test_rel_error(out, out + out_row, out_row));
        *max_abs = dmax(*max_abs, demix_test_max_abs_diff(out, out + out_row,
                                                          out_row));
    }
    return worst;
}

static void test_reopened_slot_starts_from_zero(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    enum { HOPS = 12 };
    uint64_t seed = demix_test_seed() + 40;
    demix_model *m = random_model(500, 1500, 0, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    const size_t in_row = (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_row = in_row * cfg->num_sources;
    float *in = malloc(2 * in_row * sizeof *in);
    float *out = malloc(2 * out_row * sizeof *out);
    assert_true(in && out);
    demix_engine *e = make_engine(m, DEMIX_BACKEND_CUDA,
                                  DEMIX_PRECISION_DEFAULT, 3);
    int a, a2, b, c;
    open_slots(e, 1, &a);
    uint64_t other = seed + 99;
    for (int h = 0; h < HOPS; h++) { /* give slot a some history */
        demix_test_fill_uniform(in, in_row, 0.5f, &other);
        step_ok(e, 1, &a, in, out);
    }
    assert_int_equal(demix_engine_close_slot(e, a), DEMIX_OK);
    open_slots(e, 1, &a2);
    assert_int_equal(a2, a); /* the freed id comes back */
    open_slots(e, 1, &b);    /* never used */
    double reopen_abs;
    double reopen = twin_hops(e, a2, b, HOPS, seed, in, out, in_row, out_row,
                              &reopen_abs);

    for (int h = 0; h < HOPS; h++) { /* more history, then a reset */
        demix_test_fill_uniform(in, in_row, 0.5f, &other);
        step_ok(e, 1, &a2, in, out);
    }
    assert_int_equal(demix_engine_reset_slot(e, a2), DEMIX_OK);
    open_slots(e, 1, &c); /* never used */
    double reset_abs;
    double reset = twin_hops(e, a2, c, HOPS, seed + 1, in, out, in_row,
                             out_row, &reset_abs);
    print_message("# reopened slot vs never-used slot: rel %.2e (max abs "
                  "%.3e); reset slot: rel %.2e (max abs %.3e)\n",
                  reopen, reopen_abs, reset, reset_abs);
    assert_true(reopen <= 1e-6);
    assert_true(reset <= 1e-6);
    free(in);
    free(out);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

static void test_pinned_and_pageable_buffers_agree(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    enum { ROWS = 8, HOPS = 6 };
    uint64_t seed = demix_test_seed() + 45;
    demix_model *m = random_model(500, 1500, 0, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    const size_t in_n = ROWS * (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_n = in_n * cfg->num_sources;
    demix_engine *e = make_engine(m, DEMIX_BACKEND_CUDA,
                                  DEMIX_PRECISION_DEFAULT, 2 * ROWS);
    int plain[ROWS], locked[ROWS];
    open_slots(e, ROWS, plain);
    open_slots(e, ROWS, locked);
    float *in = malloc(in_n * sizeof *in), *out = malloc(out_n * sizeof *out);
    float *in_h = NULL, *out_h = NULL;
    assert_true(in && out);
    assert_int_equal(cudaMallocHost((void **)&in_h, in_n * sizeof *in_h),
                     cudaSuccess);
    assert_int_equal(cudaMallocHost((void **)&out_h, out_n * sizeof *out_h),
                     cudaSuccess);
    uint64_t st = seed;
    double worst = 0;
    for (int h = 0; h < HOPS; h++) {
        demix_test_fill_uniform(in, in_n, 0.5f, &st);
        memcpy(in_h, in, in_n * sizeof *in);
        step_ok(e, ROWS, plain, in, out);
        step_ok(e, ROWS, locked, in_h, out_h);
        worst = dmax(worst, demix_test_max_abs_diff(out_h, out, out_n));
    }
    print_message("# pinned vs pageable caller buffers, %d rows x %d hops: "
                  "max abs diff %.3e\n", ROWS, HOPS, worst);
    assert_true(worst == 0.0);
    cudaFreeHost(in_h);
    cudaFreeHost(out_h);
    free(in);
    free(out);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

static void test_too_many_slots(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    /* D = 1536: about 180 KiB of state per slot, 1M slots = 180 GiB */
    demix_model *m = random_model(1536, 64, 0, demix_test_seed() + 50);
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.backend = DEMIX_BACKEND_CUDA;
    o.max_slots = 1 << 20;
    demix_engine *e = NULL;
    char err[512] = "";
    int rc = demix_engine_create(m, &o, &e, err, sizeof err);
    print_message("# %d slots: %s: %s\n", o.max_slots, demix_errname(rc), err);
    assert_int_equal(rc, DEMIX_ENOMEM);
    assert_null(e);
    const char *at = strstr(err, "at most ");
    assert_non_null(at);
    long fit = strtol(at + 8, NULL, 10);
    assert_true(fit > 0 && fit < o.max_slots);
    demix_model_destroy(m);
}

/* ------------------------------------------------------ music, SDR */

static double tone_phase_step(double midi, int sr)
{
    return 2.0 * DEMIX_PI * 440.0 * pow(2.0, (midi - 69.0) / 12.0) / sr;
}

/* Stereo music-like signal x[ch][n], n < N: drums (kick, snare, hats),
 * a bass line, chords of harmonic notes with envelopes, a gliding lead
 * voice with vibrato. Peak 0.8. */
static void music(float *x, long N, int sr, uint64_t seed)
{
    uint64_t st = seed;
    memset(x, 0, 2 * (size_t)N * sizeof *x);
    float *L = x, *R = x + N;
    const double beat = 0.5; /* 120 bpm */
    const double secs = (double)N / sr;
    /* drums on eighth notes */
    for (int k = 0; k * beat / 2 < secs; k++) {
        long s0 = (long)(k * beat / 2 * sr);
        if (k % 4 == 0) { /* kick */
            double ph = 0;
            for (long i = 0; i < sr / 4 && s0 + i < N; i++) {
                double f = 50 + 100 * exp(-(double)i / (0.03 * sr));
                ph += 2 * DEMIX_PI * f / sr;
                float v = (float)(0.6 * sin(ph) * exp(-(double)i / (0.08 * sr)));
                L[s0 + i] += v;
                R[s0 + i] += v;
            }
        }
        if (k % 4 == 2) { /* snare */
            for (long i = 0; i < sr / 6 && s0 + i < N; i++) {
                double env = exp(-(double)i / (0.04 * sr));
                double v = 0.3 * demix_test_uniform(&st) * env +
                           0.2 * sin(2 * DEMIX_PI * 185.0 * i / sr) * env;
                L[s0 + i] += (float)v;
                R[s0 + i] += (float)(0.9 * v);
            }
        }
        for (long i = 0; i < sr / 30 && s0 + i < N; i++) { /* hat */
            double v = 0.12 * demix_test_uniform(&st) *
                       exp(-(double)i / (0.008 * sr));
            L[s0 + i] += (float)(0.6 * v);
            R[s0 + i] += (float)v;
        }
    }
    /* bass: one note a beat from a four-bar pattern */
    static const int bass[8] = {33, 33, 36, 38, 31, 31, 36, 35};
    for (int k = 0; k * beat < secs; k++) {
        long s0 = (long)(k * beat * sr);
        double step = tone_phase_step(bass[(k / 2) % 8], sr);
        for (long i = 0; i < (long)(0.45 * sr) && s0 + i < N; i++) {
            double env = (1 - exp(-(double)i / (0.005 * sr))) *
                         exp(-(double)i / (0.3 * sr));
            double v = 0;
            for (int hm = 1; hm <= 8; hm++)
                v += sin(hm * step * i) / hm;
            v *= 0.25 * env;
            L[s0 + i] += (float)v;
            R[s0 + i] += (float)v;
        }
    }
    /* chords and notes: random onsets, harmonic spectra, ADSR, panning */
    static const int scale[7] = {0, 2, 4, 5, 7, 9, 11};
    for (double t = 0; t < secs;) {
        long s0 = (long)(t * sr);
        int notes = 1 + (int)(demix_test_rand(&st) % 3);
        double dur = 0.3 + 0.9 * (demix_test_uniform(&st) + 1) / 2;
        for (int q = 0; q < notes; q++) {
            int deg = (int)(demix_test_rand(&st) % 7);
            int oct = 4 + (int)(demix_test_rand(&st) % 3);
            double step = tone_phase_step(12 * oct + scale[deg], sr);
            double pan = (demix_test_uniform(&st) + 1) / 2;
            double bright = 1.0 + (demix_test_uniform(&st) + 1);
            long len = (long)(dur * sr);
            for (long i = 0; i < len && s0 + i < N; i++) {
                double a = (double)i / sr;
                double env = a < 0.01 ? a / 0.01
                                      : 0.7 + 0.3 * exp(-(a - 0.01) / 0.1);
                if (i > len - sr / 20)
                    env *= (double)(len - i) / (sr / 20);
                double v = 0;
                for (int hm = 1; hm <= 6; hm++)
                    v += sin(hm * step * i) / pow(hm, bright);
                v *= 0.08 * env;
                L[s0 + i] += (float)(v * (1 - pan));
                R[s0 + i] += (float)(v * pan);
            }
        }
        t += 0.25 * (1 + (int)(demix_test_rand(&st) % 3));
    }
    /* lead voice: glides between pitches, vibrato, formant-like spectrum */
    double ph = 0, midi = 64;
    for (long i = 0; i < N; i++) {
        if (i % (sr / 2) == 0)
            midi = 60 + scale[demix_test_rand(&st) % 7] + 12 * (int)(demix_test_rand(&st) % 2);
        double vib = 0.3 * sin(2 * DEMIX_PI * 5.5 * i / sr);
        ph += tone_phase_step(midi + vib, sr);
        double v = 0.5 * sin(ph) + 0.3 * sin(2 * ph) + 0.25 * sin(3 * ph) +
                   0.15 * sin(5 * ph);
        double gate = (i / (sr / 4)) % 4 == 3 ? 0.0 : 1.0;
        v *= 0.12 * gate;
        L[i] += (float)(0.8 * v);
        R[i] += (float)v;
    }
    float peak = 0;
    for (long i = 0; i < 2 * N; i++)
        peak = fabsf(x[i]) > peak ? fabsf(x[i]) : peak;
    if (peak > 0)
        for (long i = 0; i < 2 * N; i++)
            x[i] *= 0.8f / peak;
}

/* Run a whole signal through one slot, hop by hop: out[hop][T][C][H]. */
static void run_signal(demix_engine *e, const float *x, long hops, int H,
                       float *out, size_t out_row)
{
    int s;
    open_slots(e, 1, &s);
    float in[2 * 4096];
    long N = hops * H;
    for (long k = 0; k < hops; k++) {
        memcpy(in, x + k * H, H * sizeof *in);
        memcpy(in + H, x + N + k * H, H * sizeof *in);
        step_ok(e, 1, &s, in, out + k * out_row);
    }
}

/* SDR per source of est against ref, both [hops][T][C][H]. */
static void sdr(const float *est, const float *ref, long hops, int T,
                size_t per_source, double *out_db)
{
    for (int t = 0; t < T; t++) {
        double num = 0, den = 0;
        for (long k = 0; k < hops; k++) {
            const float *r = ref + (k * T + t) * per_source;
            const float *g = est + (k * T + t) * per_source;
            for (size_t i = 0; i < per_source; i++) {
                double d = (double)g[i] - r[i];
                num += (double)r[i] * r[i];
                den += d * d;
            }
        }
        out_db[t] = den > 0 ? 10 * log10(num / den) : 999;
    }
}

static void test_fast_sdr_music(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t seed = demix_test_seed() + 60;
    double seconds = 30;
    const char *env = getenv("DEMIX_SDR_SECONDS");
    if (env && atof(env) > 0)
        seconds = atof(env);
    demix_model *m = random_model(500, 1500, 0, seed);
    const demix_model_config *cfg = demix_model_get_config(m);
    const int H = cfg->hop_samples, T = cfg->num_sources;
    const long hops = (long)(seconds * cfg->sample_rate_hz / H);
    const size_t per_source = (size_t)cfg->channels * H;
    const size_t out_row = per_source * T;
    float *x = malloc(2 * (size_t)hops * H * sizeof *x);
    float *ref = malloc(hops * out_row * sizeof *ref);
    float *got = malloc(hops * out_row * sizeof *got);
    assert_true(x && ref && got);
    music(x, hops * H, cfg->sample_rate_hz, seed);

    demix_engine *cpu = make_engine(m, DEMIX_BACKEND_CPU, DEMIX_PRECISION_FP32,
                                    1);
    run_signal(cpu, x, hops, H, ref, out_row);
    demix_engine_destroy(cpu);

    struct {
        const char *name;
        demix_precision prec;
        int policy; /* -1: leave the default */
    } runs[] = {
        {"default", DEMIX_PRECISION_DEFAULT, -1},
        {"fast bf16", DEMIX_PRECISION_FAST, DEMIX_CUDA_POLICY_BF16},
        {"fast bf16-lstm+tf32", DEMIX_PRECISION_FAST,
         DEMIX_CUDA_POLICY_BF16_LSTM},
        {"fast tf32", DEMIX_PRECISION_FAST, DEMIX_CUDA_POLICY_TF32},
        {"fp32", DEMIX_PRECISION_FP32, -1},
    };
    double default_min = 0;
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (runs[r].policy >= 0)
            demix__cuda_set_fast_policy((demix_cuda_policy)runs[r].policy);
        demix_engine *gpu = make_engine(m, DEMIX_BACKEND_CUDA, runs[r].prec, 1);
        if (runs[r].policy >= 0)
            demix__cuda_set_fast_policy(DEMIX_CUDA_POLICY_BF16);
        run_signal(gpu, x, hops, H, got, out_row);
        double db[DEMIX_MAX_SOURCES], mn = 1e9;
        sdr(got, ref, hops, T, per_source, db);
        print_message("# SDR vs CPU, %.0f s music-like, %-20s:", seconds,
                      runs[r].name);
        for (int t = 0; t < T; t++) {
            print_message(" %s %.1f dB", cfg->source_names[t], db[t]);
            mn = db[t] < mn ? db[t] : mn;
        }
        print_message("  [%s]\n", demix_engine_describe(gpu));
        if (r == 0)
            default_min = mn;
        demix_engine_destroy(gpu);
    }
    assert_true(default_min >= 40.0);
    free(x);
    free(ref);
    free(got);
    demix_model_destroy(m);
}

/* One engine stepped synchronously, a twin through submit/collect, the
 * same random lists of sizes from `sizes`; returns the worst relative
 * difference of a collected output from the synchronous one. */
static double pipeline_vs_step(demix_model *m, demix_precision prec, int slots,
                               const int *sizes, int nsizes, int hops,
                               uint64_t seed)
{
    const demix_model_config *cfg = demix_model_get_config(m);
    demix_engine *sync = make_engine(m, DEMIX_BACKEND_CUDA, prec, slots);
    demix_engine *pipe = make_engine(m, DEMIX_BACKEND_CUDA, prec, slots);
    int *ids = malloc((size_t)slots * sizeof *ids);
    int *idp = malloc((size_t)slots * sizeof *idp);
    int *list = malloc((size_t)slots * sizeof *list);
    assert_true(ids && idp && list);
    open_slots(sync, slots, ids);
    open_slots(pipe, slots, idp);
    const size_t in_row = (size_t)cfg->channels * cfg->hop_samples;
    const size_t out_row = in_row * cfg->num_sources;
    const int Q = DEMIX_ENGINE_MAX_IN_FLIGHT + 1;
    float *in = malloc((size_t)slots * in_row * sizeof *in);
    float *ref[DEMIX_ENGINE_MAX_IN_FLIGHT + 1];
    int nq[DEMIX_ENGINE_MAX_IN_FLIGHT + 1];
    for (int i = 0; i < Q; i++) {
        ref[i] = malloc((size_t)slots * out_row * sizeof(float));
        assert_non_null(ref[i]);
    }
    float *own = malloc((size_t)slots * out_row * sizeof *own);
    assert_true(in && own);
    uint64_t st = seed;
    long head = 0, tail = 0;
    double worst = 0;
    for (int h = 0; h < hops || tail < head; h++) {
        if (h < hops) {
            int n = sizes[demix_test_rand(&st) % (uint64_t)nsizes];
            for (int i = 0; i < slots; i++)
                list[i] = i;
            shuffle(list, slots, &st);
            demix_test_fill_uniform(in, (size_t)n * in_row, 0.5f, &st);
            int q = (int)(head % Q);
            nq[q] = n;
            step_ok(sync, n, list, in, ref[q]);
            const float *src = in;
            if (h % 3) { /* the engine's page-locked buffer, mostly */
                float *buf = demix_engine_input_buffer(pipe, n);
                assert_non_null(buf);
                memcpy(buf, in, (size_t)n * in_row * sizeof *buf);
                src = buf;
            }
            int rc = demix_engine_submit(pipe, n, list, src);
            if (rc)
                print_message("# submit failed: %s\n",
                              demix_engine_last_error(pipe));
            assert_int_equal(rc, DEMIX_OK);
            head++;
        }
        while (tail < head &&
               (demix_engine_in_flight(pipe) == DEMIX_ENGINE_MAX_IN_FLIGHT ||
                h >= hops)) {
            int q = (int)(tail % Q), copy = (int)(tail % 2), n = 0;
            int rc = demix_engine_collect(pipe, copy ? own : NULL);
            if (rc)
                print_message("# collect failed: %s\n",
                              demix_engine_last_error(pipe));
            assert_int_equal(rc, DEMIX_OK);
            const float *view = demix_engine_output(pipe, &n);
            assert_int_equal(n, nq[q]);
            size_t cnt = (size_t)n * out_row;
            worst = dmax(worst, demix_test_rel_error(view, ref[q], cnt));
            if (copy)
                assert_memory_equal(own, view, cnt * sizeof *own);
            tail++;
        }
    }
    for (int i = 0; i < Q; i++)
        free(ref[i]);
    free(in);
    free(own);
    free(ids);
    free(idp);
    free(list);
    demix_engine_destroy(sync);
    demix_engine_destroy(pipe);
    return worst;
}

static void test_pipelined_matches_step(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t seed = demix_test_seed() + 70;
    demix_model *m = random_model(500, 1500, 0, seed);
    static const int sizes[] = {1, 2, 3, 7, 16, 33, 40};
    double w = pipeline_vs_step(m, DEMIX_PRECISION_DEFAULT, 40, sizes, 7, 60,
                                seed);
    print_message("# pipelined vs step, full size, 60 steps of 1..40 rows: "
                  "worst rel %.2e\n", w);
    assert_true(w <= 1e-6);
    demix_model_destroy(m);
    /* more rows than one 4096-row chunk */
    m = random_model(24, 40, 0, seed + 1);
    static const int big[] = {4500, 4097, 4096, 300};
    w = pipeline_vs_step(m, DEMIX_PRECISION_FP32, 4500, big, 4, 8, seed + 1);
    print_message("# pipelined vs step, D=24, 8 steps of up to 4500 rows: "
                  "worst rel %.2e\n", w);
    assert_true(w <= 1e-6);
    demix_model_destroy(m);
}

/* A random output shape (as test_engine_shapes.c's). */
static void random_shape(demix_output_shape *sh, const demix_model_config *c,
                         uint64_t *st)
{
    demix_output_shape_init(sh, c);
    const int T = c->num_sources;
    sh->format = demix_test_rand(st) % 2 ? DEMIX_SAMPLE_S16 : DEMIX_SAMPLE_F32;
    int kind = (int)(demix_test_rand(st) % 3);
    if (kind == 1) {
        int perm[DEMIX_MAX_SOURCES];
        for (int t = 0; t < T; t++)
            perm[t] = t;
        shuffle(perm, T, st);
        sh->count = 1 + (int)(demix_test_rand(st) % (uint64_t)T);
        for (int j = 0; j < sh->count; j++)
            sh->sources[j] = perm[j];
    } else if (kind == 2) {
        sh->mix = 1;
        for (int t = 0; t < T; t++)
            sh->gains[t] = demix_test_rand(st) % 4 == 0
                               ? 0.0f
                               : (float)(demix_test_rand(st) % 2001) / 1000.0f -
                                     0.5f;
    }
}

static void test_shaped_outputs_match_the_packer(void **state)
{
    (void)state;
    REQUIRE_DEVICE();
    uint64_t st = demix_test_seed() + 90;
    demix_model *m = random_model(24, 40, 0, st);
    const demix_model_config *c = demix_model_get_config(m);
    const int S = 4500, T = c->num_sources, CH = c->channels * c->hop_samples;
    demix_engine *plain = make_engine(m, DEMIX_BACKEND_CUDA,
                                      DEMIX_PRECISION_FP32, S);
    demix_engine *shaped = make_engine(m, DEMIX_BACKEND_CUDA,
                                       DEMIX_PRECISION_FP32, S);
    int *idp = malloc((size_t)S * sizeof *idp);
    int *ids = malloc((size_t)S * sizeof *ids);
    int *list = malloc((size_t)S * sizeof *list);
    assert_true(idp && ids && list);
    open_slots(plain, S, idp);
    open_slots(shaped, S, ids);
    assert_int_equal(demix_engine_reserve_io(shaped, S), DEMIX_OK);
    demix_output_shape *shape = malloc((size_t)S * sizeof *shape);
    assert_non_null(shape);
    for (int i = 0; i < S; i++) {
        random_shape(&shape[i], c, &st);
        assert_int_equal(demix_engine_set_output(shaped, ids[i], &shape[i]),
                         DEMIX_OK);
    }
    float *in = malloc((size_t)S * CH * sizeof *in);
    unsigned char *want = malloc((size_t)T * CH * sizeof(float));
    assert_true(in && want);
    static const int sizes[] = {1, 7, 300, 4096, 4097, 4500};
    double worst = 0;
    int worst16 = 0;
    long rows = 0, identical = 0;
    for (int h = 0; h < 12; h++) {
        int n = sizes[h % 6];
        for (int i = 0; i < S; i++)
            list[i] = i;
        shuffle(list, S, &st);
        demix_test_fill_uniform(in, (size_t)n * CH, 0.9f, &st);
        assert_int_equal(demix_engine_submit(plain, n, list, in), DEMIX_OK);
        assert_int_equal(demix_engine_submit(shaped, n, list, in), DEMIX_OK);
        assert_int_equal(demix_engine_collect(plain, NULL), DEMIX_OK);
        assert_int_equal(demix_engine_collect(shaped, NULL), DEMIX_OK);
        const float *full = demix_engine_output(plain, NULL);
        for (int i = 0; i < n; i++) {
            const demix_output_shape *sh = &shape[list[i]];
            demix_row_shape r;
            memset(&r, 0, sizeof r);
            r.format = (uint8_t)sh->format;
            r.mix = (uint8_t)sh->mix;
            r.planes = (uint8_t)(sh->mix ? 1 : sh->count);
            for (int t = 0; t < T; t++) {
                r.sources[t] = (uint8_t)sh->sources[t];
                r.gains[t] = sh->gains[t];
            }
            demix__pack_row(full + (size_t)i * T * CH, T, CH, &r, want);
            size_t bytes = 0;
            const void *got = demix_engine_output_row(shaped, i, &bytes);
            assert_non_null(got);
            assert_int_equal(bytes, demix_output_shape_row_bytes(sh, c));
            size_t cnt = (size_t)r.planes * CH;
            identical += !memcmp(got, want, bytes);
            if (r.format == DEMIX_SAMPLE_S16) {
                for (size_t k = 0; k < cnt; k++) {
                    int d = abs(((const int16_t *)got)[k] -
                                ((const int16_t *)want)[k]);
                    worst16 = d > worst16 ? d : worst16;
                }
            } else {
                worst = dmax(worst, demix_test_rel_error(
                                        (const float *)got,
                                        (const float *)want, cnt));
            }
            rows++;
        }
    }
    print_message("# shaped rows: %ld, %ld bit-identical to the reference "
                  "packer on a twin's outputs; float worst rel %.2e, 16-bit "
                  "worst %d\n",
                  rows, identical, worst, worst16);
    assert_true(worst <= 1e-6);
    assert_true(worst16 <= 1);
    free(shape);
    free(in);
    free(want);
    free(idp);
    free(ids);
    free(list);
    demix_engine_destroy(plain);
    demix_engine_destroy(shaped);
    demix_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_device_reports),
        cmocka_unit_test(test_stage_parity_fp32),
        cmocka_unit_test(test_graphs_match_direct),
        cmocka_unit_test(test_end_to_end_fp32),
        cmocka_unit_test(test_batch_compositions),
        cmocka_unit_test(test_reopened_slot_starts_from_zero),
        cmocka_unit_test(test_pinned_and_pageable_buffers_agree),
        cmocka_unit_test(test_too_many_slots),
        cmocka_unit_test(test_fast_sdr_music),
        cmocka_unit_test(test_pipelined_matches_step),
        cmocka_unit_test(test_shaped_outputs_match_the_packer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
