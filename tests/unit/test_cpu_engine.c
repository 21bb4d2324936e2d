/*
 * test_cpu_engine.c - the CPU backend end to end through engine.h:
 *  (a) identity masks (spectral mask 1, waveform mask 0) give every source
 *      the input delayed by one hop;
 *  (b) the engine equals a plain double-precision reference of
 *      model-spec.md's frame written out below (no BLAS, no FFT library),
 *      output and every stage of every row, full and small variants;
 *  (c) slots are independent: 8 slots stepped in random subsets and orders
 *      give bit-identical outputs to each slot run alone in its own engine;
 *  (d) close/reopen and reset start a slot from zero state;
 *  (e) bad slot lists through demix_engine_step return DEMIX_EARG and
 *      change nothing;
 *  (f) the stage reader's DEMIX_EARG and DEMIX_ENOSPACE cases;
 *  (g) name, description and precision options (the default is the fast
 *      mode where the CPU has AVX512-BF16, fp32 elsewhere);
 *  (h) the fast mode (bf16 products, where the CPU has AVX512-BF16): SDR
 *      against float32 >= 40 dB on music-like input, and the slot
 *      independence of (c), bit for bit, in that mode too;
 *  (i) threads: engines given a pool of 1, 2 and 3 threads produce outputs
 *      bit-identical (memcmp) to the engine without a pool, hop by hop over
 *      30 hops of 5 slots (and steps of fewer slots in between), fp32 and
 *      fast, and describe() gives the thread count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_bf16.h"
#include "engine.h"
#include "engine_impl.h"
#include "model_impl.h"
#include "testutil.h"

/* ------------------------------------------------------------ helpers */

static demix_model *random_model(int dim, int num_basis, int small,
                                 uint64_t seed)
{
    demix_model *m = NULL;
    assert_int_equal(demix_model_create_random(dim, num_basis, small, 44100,
                                               seed, &m),
                     DEMIX_OK);
    return m;
}

static demix_engine *cpu_engine_prec(const demix_model *m, int max_slots,
                                     demix_precision precision)
{
    demix_engine_options opt;
    demix_engine_options_init(&opt);
    opt.backend = DEMIX_BACKEND_CPU;
    opt.max_slots = max_slots;
    opt.precision = precision;
    demix_engine *e = NULL;
    char err[256];
    int rc = demix_engine_create(m, &opt, &e, err, sizeof err);
    if (rc)
        fail_msg("engine create: %s (%s)", demix_errname(rc), err);
    return e;
}

/* float32, the reference: the cases below compare with a double
 * reference to 1e-5 (the default is bf16 where the CPU has it). */
static demix_engine *cpu_engine(const demix_model *m, int max_slots)
{
    return cpu_engine_prec(m, max_slots, DEMIX_PRECISION_FP32);
}

static int open_slot(demix_engine *e)
{
    int slot = -1;
    assert_int_equal(demix_engine_open_slot(e, &slot), DEMIX_OK);
    return slot;
}

static float *alloc_floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static void set_tensor(demix_model *m, const char *name, float value)
{
    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    int n = demix__model_tensors(m, refs, DEMIX_MODEL_MAX_TENSORS);
    for (int i = 0; i < n; i++)
        if (strcmp(refs[i].name, name) == 0) {
            int64_t count = 1;
            for (int d = 0; d < refs[i].ndim; d++)
                count *= refs[i].shape[d];
            for (int64_t j = 0; j < count; j++)
                refs[i].data[j] = value;
            return;
        }
    fail_msg("no tensor %s", name);
}

/* ---------------------------------------- double-precision reference */

typedef struct ref_stream {
    const demix_model *m;
    int D, NB, DF, C, W, H, F, S, T, CW, small;
    double *window, *cos_table, *sin_table; /* [W] */
    double *past;                           /* [C][H] */
    double *h[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];
    double *c[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];
    double *tail_spec, *tail_wave;          /* [T][C][H] */
    double *stage[DEMIX_CPU_STAGE_COUNT];   /* last frame, spec layout */
    size_t stage_size[DEMIX_CPU_STAGE_COUNT];
    double *frame, *scratch;                /* [C][W], scratch [4 * DF] */
} ref_stream;

static double *dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    assert_non_null(p);
    return p;
}

static void ref_init(ref_stream *r, const demix_model *m)
{
    const demix_model_config *c = &m->config;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->D = c->dim, r->NB = c->num_basis, r->DF = c->fusion_dim;
    r->C = c->channels, r->W = c->window_samples, r->H = c->hop_samples;
    r->F = c->bins, r->S = c->spec_features, r->T = c->num_sources;
    r->CW = r->C * r->W, r->small = c->small;
    r->window = dalloc((size_t)r->W);
    r->cos_table = dalloc((size_t)r->W);
    r->sin_table = dalloc((size_t)r->W);
    for (int n = 0; n < r->W; n++) {
        double s = sin(DEMIX_PI * n / r->W);
        r->window[n] = s * s;
        r->cos_table[n] = cos(2.0 * DEMIX_PI * n / r->W);
        r->sin_table[n] = sin(2.0 * DEMIX_PI * n / r->W);
    }
    r->past = dalloc((size_t)r->C * r->H);
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++)
        for (int k = 0; k < m->lstm[b].layers; k++) {
            r->h[b][k] = dalloc((size_t)m->lstm[b].hidden_size);
            r->c[b][k] = dalloc((size_t)m->lstm[b].hidden_size);
        }
    size_t tails = (size_t)r->T * r->C * r->H;
    r->tail_spec = dalloc(tails);
    r->tail_wave = dalloc(tails);
    size_t sizes[DEMIX_CPU_STAGE_COUNT] = {
        (size_t)r->S, (size_t)r->D, (size_t)r->NB, (size_t)r->D,
        (size_t)r->D, (size_t)r->D, (size_t)r->DF, (size_t)r->D,
        (size_t)r->D, (size_t)r->T * r->S, (size_t)r->T * r->NB,
        (size_t)r->T * r->CW, (size_t)r->T * r->CW};
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++) {
        r->stage_size[s] = sizes[s];
        r->stage[s] = dalloc(sizes[s]);
    }
    r->frame = dalloc((size_t)r->CW);
    r->scratch = dalloc(4 * (size_t)r->DF + (size_t)r->CW + 2 * r->NB);
}

static void ref_free(ref_stream *r)
{
    free(r->window), free(r->cos_table), free(r->sin_table), free(r->past);
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++)
        for (int k = 0; k < DEMIX_LSTM_MAX_LAYERS; k++)
            free(r->h[b][k]), free(r->c[b][k]);
    free(r->tail_spec), free(r->tail_wave);
    for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++)
        free(r->stage[s]);
    free(r->frame), free(r->scratch);
}

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* y = W x + b, W [out][in] float, x and y double. */
static void ref_linear(const float *w, const float *b, int out, int in,
                       const double *x, double *y)
{
    for (int i = 0; i < out; i++) {
        double s = b ? b[i] : 0.0;
        for (int j = 0; j < in; j++)
            s += (double)w[(size_t)i * in + j] * x[j];
        y[i] = s;
    }
}

/* R(x) over branch b (model-spec.md step 5). */
static void ref_branch(ref_stream *r, int b, const double *x, double *out)
{
    const demix_lstm_weights *l = &r->m->lstm[b];
    int hid = l->hidden_size;
    const double *in = x;
    int in_size = l->input_size;
    double *g = r->scratch;
    for (int k = 0; k < l->layers; k++) {
        double *h = r->h[b][k], *c = r->c[b][k];
        for (int j = 0; j < 4 * hid; j++) {
            double s = (double)l->b_ih[k][j] + (double)l->b_hh[k][j];
            for (int i = 0; i < in_size; i++)
                s += (double)l->w_ih[k][(size_t)j * in_size + i] * in[i];
            for (int i = 0; i < hid; i++)
                s += (double)l->w_hh[k][(size_t)j * hid + i] * h[i];
            g[j] = s;
        }
        for (int u = 0; u < hid; u++) {
            c[u] = sigm(g[hid + u]) * c[u] + sigm(g[u]) * tanh(g[2 * hid + u]);
            h[u] = sigm(g[3 * hid + u]) * tanh(c[u]);
        }
        in = h;
        in_size = hid;
    }
    for (int i = 0; i < hid; i++)
        out[i] = r->small ? in[i] : x[i] + in[i];
}

static void ref_rmsnorm(const double *x, const float *gain, int n, double *y)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double rms = sqrt(1.1920928955078125e-07 + ss / n);
    for (int i = 0; i < n; i++)
        y[i] = x[i] / rms * gain[i];
}

/* One frame: in [C][H] floats, out [T][C][H]. Stages are kept. */
static void ref_frame(ref_stream *r, const float *in, double *out)
{
    const demix_model *m = r->m;
    int C = r->C, W = r->W, H = r->H, F = r->F, T = r->T, D = r->D;
    int NB = r->NB, DF = r->DF, S = r->S;
    double *feat = r->stage[DEMIX_CPU_STAGE_SPEC_FEAT];
    double *spec = r->stage[DEMIX_CPU_STAGE_SPEC];
    double *basis = r->stage[DEMIX_CPU_STAGE_BASIS];
    double *wave = r->stage[DEMIX_CPU_STAGE_WAVE];
    double *s1 = r->stage[DEMIX_CPU_STAGE_S1], *w1 = r->stage[DEMIX_CPU_STAGE_W1];
    double *v = r->stage[DEMIX_CPU_STAGE_FUSED];
    double *s2 = r->stage[DEMIX_CPU_STAGE_S2], *w2 = r->stage[DEMIX_CPU_STAGE_W2];
    double *ms = r->stage[DEMIX_CPU_STAGE_SPEC_MASK];
    double *mw = r->stage[DEMIX_CPU_STAGE_WAVE_MASK];
    double *y = r->stage[DEMIX_CPU_STAGE_SPEC_OUT];
    double *z = r->stage[DEMIX_CPU_STAGE_WAVE_OUT];

    for (int ch = 0; ch < C; ch++)
        for (int n = 0; n < H; n++) {
            r->frame[ch * W + n] = r->past[ch * H + n];
            r->frame[ch * W + H + n] = in[ch * H + n];
            r->past[ch * H + n] = in[ch * H + n];
        }
    /* 1: plain DFT of the windowed frame. */
    for (int ch = 0; ch < C; ch++)
        for (int k = 0; k < F; k++) {
            double re = 0, im = 0;
            for (int n = 0; n < W; n++) {
                double xw = r->frame[ch * W + n] * r->window[n];
                int a = (int)(((long)k * n) % W);
                re += xw * r->cos_table[a];
                im -= xw * r->sin_table[a];
            }
            feat[(ch * F + k) * 2] = re;
            feat[(ch * F + k) * 2 + 1] = im;
        }
    /* 2-4 */
    ref_linear(m->spec_encode_w, m->spec_encode_b, D, S, feat, spec);
    double *ag = r->scratch;
    ref_linear(m->conv_encode_w, m->conv_encode_b, 2 * NB, r->CW, r->frame, ag);
    for (int k = 0; k < NB; k++)
        basis[k] = fmax(ag[k], 0.0) * sigm(ag[NB + k]);
    ref_linear(m->basis_to_embed_w, m->basis_to_embed_b, D, NB, basis, wave);
    /* 5 */
    double *u = dalloc((size_t)DF), *ps = dalloc((size_t)D);
    double *pw = dalloc((size_t)D);
    ref_branch(r, DEMIX_BRANCH_PRE_SPEC, spec, s1);
    ref_branch(r, DEMIX_BRANCH_PRE_WAVE, wave, w1);
    for (int i = 0; i < D; i++) {
        if (r->small) {
            u[i] = s1[i] + w1[i];
        } else {
            u[i] = s1[i];
            u[D + i] = w1[i];
        }
    }
    ref_branch(r, DEMIX_BRANCH_FUSION, u, v);
    for (int i = 0; i < D; i++) {
        ps[i] = v[i] + spec[i];
        pw[i] = v[r->small ? i : D + i] + wave[i];
    }
    ref_branch(r, DEMIX_BRANCH_POST_SPEC, ps, s2);
    ref_branch(r, DEMIX_BRANCH_POST_WAVE, pw, w2);
    /* 6-7: masks and the inverse DFT (DC and Nyquist imaginary ignored). */
    double *nrm = u;
    ref_rmsnorm(s2, m->spec_mask_gain, D, nrm);
    ref_linear(m->spec_mask_w, m->spec_mask_b, T * S, D, nrm, ms);
    double *Y = dalloc(2 * (size_t)F);
    for (int t = 0; t < T; t++)
        for (int ch = 0; ch < C; ch++) {
            for (int k = 0; k < F; k++)
                for (int q = 0; q < 2; q++)
                    Y[2 * k + q] = feat[(ch * F + k) * 2 + q] *
                                   ms[((ch * F + k) * 2 + q) * T + t];
            for (int n = 0; n < W; n++) {
                double s = Y[0] + Y[2 * (F - 1)] * (n % 2 ? -1.0 : 1.0);
                for (int k = 1; k < F - 1; k++) {
                    int a = (int)(((long)k * n) % W);
                    s += 2.0 * (Y[2 * k] * r->cos_table[a] -
                                Y[2 * k + 1] * r->sin_table[a]);
                }
                y[(t * C + ch) * W + n] = r->window[n] * s / W;
            }
        }
    /* 8: waveform masks and decoder. */
    ref_rmsnorm(w2, m->wave_mask_gain, D, nrm);
    ref_linear(m->wave_mask_w, m->wave_mask_b, T * NB, D, nrm, mw);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < r->CW; i++) {
            double s = 0;
            for (int k = 0; k < NB; k++)
                s += (double)m->conv_decode_w[(size_t)k * r->CW + i] *
                     basis[k] * mw[t * NB + k];
            z[t * r->CW + i] = s * r->window[i % W];
        }
    /* 9: overlap-add. */
    for (int t = 0; t < T; t++)
        for (int ch = 0; ch < C; ch++)
            for (int n = 0; n < H; n++) {
                size_t tc = (size_t)(t * C + ch);
                double wa = r->window[n], wb = r->window[n + H];
                double env = wa * wa + wb * wb;
                double *ts = r->tail_spec + tc * H, *tw = r->tail_wave + tc * H;
                const double *yt = y + tc * W, *zt = z + tc * W;
                out[tc * H + n] = (ts[n] + yt[n]) / env + tw[n] + zt[n];
                ts[n] = yt[H + n];
                tw[n] = zt[H + n];
            }
    free(u), free(ps), free(pw), free(Y);
}

static double rel_error_fd(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

/* ---------------------------------------------------- (a) identity */

static void test_identity_masks_delay_one_hop(void **state)
{
    (void)state;
    demix_model *m = random_model(24, 40, 0, demix_test_seed());
    set_tensor(m, "to_spec_masks.1.weight", 0.0f);
    set_tensor(m, "to_spec_masks.1.bias", 1.0f);
    set_tensor(m, "to_waveform_masks.1.weight", 0.0f);
    set_tensor(m, "to_waveform_masks.1.bias", 0.0f);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    int T = c->num_sources, hops = 8;
    demix_engine *e = cpu_engine(m, 2);
    int slot = open_slot(e);
    uint64_t rng = demix_test_seed() ^ 0x1D;
    float *in = alloc_floats(hop * (size_t)hops);
    float *out = alloc_floats(hop * (size_t)T);
    demix_test_fill_uniform(in, hop * (size_t)hops, 1.0f, &rng);
    for (int k = 0; k < hops; k++) {
        assert_int_equal(demix_engine_step(e, 1, &slot, in + k * hop, out), 0);
        for (int t = 0; t < T; t++) {
            const float *o = out + (size_t)t * hop;
            double err = 0;
            for (size_t i = 0; i < hop; i++) {
                double want = k == 0 ? 0.0 : in[(k - 1) * hop + i];
                err = fmax(err, fabs(o[i] - want));
            }
            if (err > 1e-5)
                fail_msg("hop %d source %d: max error %.3g", k, t, err);
        }
    }
    free(in), free(out);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

/* --------------------------------------------- (b) double reference */

static void check_against_reference(int dim, int num_basis, int small)
{
    enum { ROWS = 3, HOPS = 12 };
    demix_model *m = random_model(dim, num_basis, small,
                                  demix_test_seed() + (uint64_t)small);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    demix_engine *e = cpu_engine(m, 4);
    void *ctx = demix__engine_backend_context(e);
    int slots[ROWS];
    for (int r = 0; r < ROWS; r++)
        slots[r] = open_slot(e);
    ref_stream ref[ROWS];
    for (int r = 0; r < ROWS; r++)
        ref_init(&ref[r], m);

    uint64_t rng = demix_test_seed() ^ (0xB0 + (uint64_t)small);
    float *in = alloc_floats(hop * ROWS);
    float *out = alloc_floats(out_hop * ROWS);
    float *got = alloc_floats((size_t)c->num_sources * c->channels *
                                  c->window_samples * 2 +
                              (size_t)c->num_sources * c->spec_features);
    double *ref_out = dalloc(out_hop * ROWS * HOPS);
    float *eng_out = alloc_floats(out_hop * ROWS * HOPS);
    double worst_stage = 0;
    for (int k = 0; k < HOPS; k++) {
        /* Music-like enough: noise plus a tone, with a silent hop. */
        for (int r = 0; r < ROWS; r++)
            for (size_t i = 0; i < hop; i++) {
                float tone = 0.3f * (float)sin(0.05 * (double)(i + k * hop) *
                                               (r + 1));
                in[r * hop + i] = k == 3 ? 0.0f
                                         : tone + 0.5f * demix_test_uniform(&rng);
            }
        assert_int_equal(demix_engine_step(e, ROWS, slots, in, out), 0);
        memcpy(eng_out + (size_t)k * ROWS * out_hop, out,
               sizeof(float) * out_hop * ROWS);
        for (int r = 0; r < ROWS; r++) {
            ref_frame(&ref[r], in + r * hop,
                      ref_out + ((size_t)k * ROWS + r) * out_hop);
            for (int s = 0; s < DEMIX_CPU_STAGE_COUNT; s++) {
                size_t n = ref[r].stage_size[s];
                int rc = demix__cpu_read_stage(ctx, (demix_cpu_stage)s, r, got,
                                               n);
                assert_int_equal(rc, (int)n);
                double err = rel_error_fd(got, ref[r].stage[s], n);
                worst_stage = fmax(worst_stage, err);
                if (err > 1e-5)
                    fail_msg("%s: hop %d row %d stage %s: relative error %.3g",
                             small ? "small" : "full", k, r,
                             demix__cpu_stage_name((demix_cpu_stage)s), err);
            }
        }
    }
    double err = rel_error_fd(eng_out, ref_out, out_hop * ROWS * HOPS);
    print_message("%s D=%d NB=%d: output relative error %.3g, worst stage "
                  "%.3g\n",
                  small ? "small" : "full", dim, num_basis, err, worst_stage);
    assert_true(err <= 1e-5);
    for (int r = 0; r < ROWS; r++)
        ref_free(&ref[r]);
    free(in), free(out), free(got), free(ref_out), free(eng_out);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

static void test_equals_reference_full(void **state)
{
    (void)state;
    check_against_reference(24, 40, 0);
}

static void test_equals_reference_small(void **state)
{
    (void)state;
    check_against_reference(20, 33, 1);
}

/* ------------------------------------------------ (c) independence */

static void check_slot_independence(int dim, int num_basis, int small,
                                    demix_precision precision)
{
    enum { SLOTS = 8, STEPS = 40 };
    demix_model *m = random_model(dim, num_basis, small,
                                  demix_test_seed() ^ 0xC0FFEE);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    uint64_t rng = demix_test_seed() ^ (0x1DE + (uint64_t)small);

    float *streams = alloc_floats((size_t)SLOTS * STEPS * hop);
    demix_test_fill_uniform(streams, (size_t)SLOTS * STEPS * hop, 0.8f, &rng);
    float *batched = alloc_floats((size_t)SLOTS * STEPS * out_hop);
    int hops_done[SLOTS] = {0};

    demix_engine *e = cpu_engine_prec(m, SLOTS, precision);
    int id[SLOTS];
    for (int s = 0; s < SLOTS; s++)
        id[s] = open_slot(e);
    float *in = alloc_floats(hop * SLOTS), *out = alloc_floats(out_hop * SLOTS);
    int sizes_seen[SLOTS + 1] = {0};
    for (int step = 0; step < STEPS; step++) {
        int list[SLOTS], n = 0;
        for (int s = 0; s < SLOTS; s++)
            if (demix_test_rand(&rng) % 2)
                list[n++] = s;
        if (n == 0 || step % 10 == 0) /* every size, all 8 at times */
            for (n = 0; n < SLOTS; n++)
                list[n] = n;
        for (int i = n - 1; i > 0; i--) { /* random order */
            int j = (int)(demix_test_rand(&rng) % (uint64_t)(i + 1));
            int t = list[i];
            list[i] = list[j], list[j] = t;
        }
        int ids[SLOTS];
        for (int i = 0; i < n; i++) {
            int s = list[i];
            ids[i] = id[s];
            memcpy(in + i * hop, streams + ((size_t)s * STEPS + hops_done[s]) * hop,
                   hop * sizeof(float));
        }
        assert_int_equal(demix_engine_step(e, n, ids, in, out), 0);
        for (int i = 0; i < n; i++) {
            int s = list[i];
            memcpy(batched + ((size_t)s * STEPS + hops_done[s]) * out_hop,
                   out + i * out_hop, out_hop * sizeof(float));
            hops_done[s]++;
        }
        sizes_seen[n]++;
    }
    demix_engine_destroy(e);

    for (int s = 0; s < SLOTS; s++) {
        demix_engine *alone = cpu_engine_prec(m, 1, precision);
        int slot = open_slot(alone);
        for (int k = 0; k < hops_done[s]; k++) {
            assert_int_equal(demix_engine_step(alone, 1, &slot,
                                               streams + ((size_t)s * STEPS + k) * hop,
                                               out),
                             0);
            if (memcmp(out, batched + ((size_t)s * STEPS + k) * out_hop,
                       out_hop * sizeof(float)))
                fail_msg("%s: slot %d hop %d differs from the slot run alone",
                         small ? "small" : "full", s, k);
        }
        demix_engine_destroy(alone);
    }
    print_message("%s %s: 8 slots, %d steps, batch sizes 1..8 seen %d %d %d "
                  "%d %d %d %d %d times: bit-identical\n",
                  small ? "small" : "full",
                  precision == DEMIX_PRECISION_FAST ? "fast" : "fp32", STEPS, sizes_seen[1], sizes_seen[2],
                  sizes_seen[3], sizes_seen[4], sizes_seen[5], sizes_seen[6],
                  sizes_seen[7], sizes_seen[8]);
    free(streams), free(batched), free(in), free(out);
    demix_model_destroy(m);
}

static void test_slots_independent_full(void **state)
{
    (void)state;
    check_slot_independence(21, 37, 0, DEMIX_PRECISION_FP32);
}

static void test_slots_independent_small(void **state)
{
    (void)state;
    check_slot_independence(19, 29, 1, DEMIX_PRECISION_FP32);
}

/* ------------------------------------------- (d) close, reopen, reset */

static void test_reopen_and_reset_start_from_zero(void **state)
{
    (void)state;
    demix_model *m = random_model(16, 24, 0, demix_test_seed() ^ 0xD);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    uint64_t rng = demix_test_seed() ^ 0xDD;
    enum { HOPS = 5 };
    float *warm = alloc_floats(2 * hop * HOPS), *fresh = alloc_floats(hop * HOPS);
    demix_test_fill_uniform(warm, 2 * hop * HOPS, 1.0f, &rng);
    demix_test_fill_uniform(fresh, hop * HOPS, 1.0f, &rng);

    /* Expected: the fresh stream in a new engine. */
    float *expect = alloc_floats(out_hop * HOPS);
    demix_engine *ref = cpu_engine(m, 1);
    int rs = open_slot(ref);
    for (int k = 0; k < HOPS; k++)
        assert_int_equal(demix_engine_step(ref, 1, &rs, fresh + k * hop,
                                           expect + k * out_hop),
                         0);
    demix_engine_destroy(ref);

    demix_engine *e = cpu_engine(m, 3);
    int a = open_slot(e), b = open_slot(e);
    float *in2 = alloc_floats(2 * hop), *out2 = alloc_floats(2 * out_hop);
    int both[2] = {a, b};
    for (int k = 0; k < HOPS; k++)
        assert_int_equal(demix_engine_step(e, 2, both, warm + 2 * k * hop, out2),
                         0);
    assert_int_equal(demix_engine_close_slot(e, a), DEMIX_OK);
    int a2 = open_slot(e);
    assert_int_equal(a2, a); /* the freed id comes back first */
    /* a2 shares steps with the warm slot b and is listed second. */
    int pair[2] = {b, a2};
    for (int k = 0; k < HOPS; k++) {
        memcpy(in2, warm + k * hop, hop * sizeof(float));
        memcpy(in2 + hop, fresh + k * hop, hop * sizeof(float));
        assert_int_equal(demix_engine_step(e, 2, pair, in2, out2), 0);
        assert_memory_equal(out2 + out_hop, expect + k * out_hop,
                            out_hop * sizeof(float));
    }
    /* reset: b, warm until now, starts over as well. */
    assert_int_equal(demix_engine_reset_slot(e, b), DEMIX_OK);
    for (int k = 0; k < HOPS; k++) {
        assert_int_equal(demix_engine_step(e, 1, &b, fresh + k * hop, out2), 0);
        assert_memory_equal(out2, expect + k * out_hop, out_hop * sizeof(float));
    }
    free(warm), free(fresh), free(expect), free(in2), free(out2);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

/* -------------------------------------------------- (e) bad lists */

static void test_bad_step_arguments(void **state)
{
    (void)state;
    demix_model *m = random_model(8, 12, 1, demix_test_seed() ^ 0xE);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    demix_engine *e = cpu_engine(m, 4);
    demix_engine *twin = cpu_engine(m, 4);
    int s0 = open_slot(e), s1 = open_slot(e);
    int t0 = open_slot(twin);
    uint64_t rng = demix_test_seed() ^ 0xEE;
    float *in = alloc_floats(hop * 5), *out = alloc_floats(out_hop * 5);
    float *twin_out = alloc_floats(out_hop);
    demix_test_fill_uniform(in, hop * 5, 1.0f, &rng);

    int not_open[2] = {s0, 3};
    int dup[2] = {s1, s1};
    int negative[1] = {-1};
    int too_big[1] = {4};
    int five[5] = {0, 1, 2, 3, 0};
    assert_int_equal(demix_engine_step(e, 2, not_open, in, out), DEMIX_EARG);
    assert_true(strlen(demix_engine_last_error(e)) > 0);
    assert_int_equal(demix_engine_step(e, 2, dup, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 1, negative, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 1, too_big, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 0, &s0, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, -1, &s0, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 5, five, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 1, NULL, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 1, &s0, NULL, out), DEMIX_EARG);
    assert_int_equal(demix_engine_step(e, 1, &s0, in, NULL), DEMIX_EARG);
    assert_int_equal(demix_engine_step(NULL, 1, &s0, in, out), DEMIX_EARG);
    assert_int_equal(demix_engine_close_slot(e, 3), DEMIX_EARG);
    assert_int_equal(demix_engine_reset_slot(e, 3), DEMIX_EARG);

    /* Nothing changed: s0's first real step matches a fresh slot's. */
    assert_int_equal(demix_engine_step(e, 1, &s0, in, out), 0);
    assert_int_equal(demix_engine_step(twin, 1, &t0, in, twin_out), 0);
    assert_memory_equal(out, twin_out, out_hop * sizeof(float));
    free(in), free(out), free(twin_out);
    demix_engine_destroy(e);
    demix_engine_destroy(twin);
    demix_model_destroy(m);
}

/* ----------------------------------------------- (f) stage reader */

static void test_stage_reader_errors(void **state)
{
    (void)state;
    demix_model *m = random_model(8, 12, 0, demix_test_seed() ^ 0xF);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    demix_engine *e = cpu_engine(m, 4);
    void *ctx = demix__engine_backend_context(e);
    assert_non_null(ctx);
    size_t big = (size_t)c->num_sources * c->channels * c->window_samples;
    float *buf = alloc_floats(big);

    /* Before any step there is nothing to read. */
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 0, buf, big),
                     DEMIX_EARG);
    int s[2] = {open_slot(e), open_slot(e)};
    float *in = alloc_floats(2 * hop), *out = alloc_floats(2 * out_hop);
    uint64_t rng = demix_test_seed() ^ 0xFF;
    demix_test_fill_uniform(in, 2 * hop, 1.0f, &rng);
    assert_int_equal(demix_engine_step(e, 2, s, in, out), 0);

    assert_int_equal(demix__cpu_read_stage(NULL, DEMIX_CPU_STAGE_SPEC, 0, buf, big),
                     DEMIX_EARG);
    assert_int_equal(demix__cpu_read_stage(ctx, (demix_cpu_stage)-1, 0, buf, big),
                     DEMIX_EARG);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_COUNT, 0, buf, big),
                     DEMIX_EARG);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 2, buf, big),
                     DEMIX_EARG);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, -1, buf, big),
                     DEMIX_EARG);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 1, NULL, big),
                     DEMIX_EARG);
    size_t d = (size_t)c->dim;
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 1, buf, d - 1),
                     DEMIX_ENOSPACE);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 1, buf, d),
                     (int)d);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_FUSED, 0, buf, big),
                     c->fusion_dim);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_WAVE_OUT, 1, buf,
                                           big - 1),
                     DEMIX_ENOSPACE);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_WAVE_OUT, 1, buf, big),
                     (int)big);
    /* A failed step keeps the last good one readable. */
    int dup[2] = {s[0], s[0]};
    assert_int_equal(demix_engine_step(e, 2, dup, in, out), DEMIX_EARG);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 1, buf, d),
                     (int)d);
    /* A one-row step shrinks the readable rows. */
    assert_int_equal(demix_engine_step(e, 1, s, in, out), 0);
    assert_int_equal(demix__cpu_read_stage(ctx, DEMIX_CPU_STAGE_SPEC, 1, buf, d),
                     DEMIX_EARG);

    const char *names[DEMIX_CPU_STAGE_COUNT] = {
        "spec_feat", "spec", "basis", "wave", "s1", "w1", "fused",
        "s2", "w2", "spec_mask", "wave_mask", "spec_out", "wave_out"};
    for (int i = 0; i < DEMIX_CPU_STAGE_COUNT; i++)
        assert_string_equal(demix__cpu_stage_name((demix_cpu_stage)i), names[i]);
    assert_non_null(demix__cpu_stage_name(DEMIX_CPU_STAGE_COUNT));
    free(buf), free(in), free(out);
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

/* ------------------------------------------------- (g) description */

static void test_name_describe_precision(void **state)
{
    (void)state;
    demix_model *m = random_model(8, 12, 1, 1);
    demix_engine_options opt;
    demix_engine_options_init(&opt);
    opt.backend = DEMIX_BACKEND_CPU;
    opt.max_slots = 2;
    demix_engine *e = NULL;
    char err[256];
    assert_int_equal(demix_engine_create(m, &opt, &e, err, sizeof err), 0);
    assert_string_equal(demix_engine_backend_name(e), "cpu");
    assert_non_null(strstr(demix_engine_describe(e),
                           demix__cpu_bf16_available() ? "cpu fast"
                                                       : "cpu fp32"));
    print_message("describe (default): %s\n", demix_engine_describe(e));
    demix_engine_destroy(e);

    opt.precision = DEMIX_PRECISION_FP32;
    assert_int_equal(demix_engine_create(m, &opt, &e, err, sizeof err), 0);
    assert_non_null(strstr(demix_engine_describe(e), "cpu fp32"));
    demix_engine_destroy(e);

    opt.precision = DEMIX_PRECISION_FAST;
    assert_int_equal(demix_engine_create(m, &opt, &e, err, sizeof err), 0);
    assert_non_null(strstr(demix_engine_describe(e), "fast"));
    print_message("describe: %s\n", demix_engine_describe(e));
    demix_engine_destroy(e);

    opt.precision = (demix_precision)77;
    assert_int_equal(demix_engine_create(m, &opt, &e, err, sizeof err),
                     DEMIX_EARG);
    assert_null(e);
    assert_true(strlen(err) > 0);
    demix_model_destroy(m);
}

/* ------------------------------------------------------ (h) fast */

/* A second of something like music: two tones, a tremolo, a little noise
 * and a click every quarter second; hop k of channel ch at in[k][ch][...]. */
static void music_like(float *in, int hops, int hop_samples, uint64_t *rng)
{
    for (int k = 0; k < hops; k++)
        for (int ch = 0; ch < 2; ch++)
            for (int n = 0; n < hop_samples; n++) {
                long i = (long)k * hop_samples + n;
                double t = i / 44100.0;
                double v = 0.3 * sin(2 * DEMIX_PI * 220 * t) *
                               (1 + 0.5 * sin(2 * DEMIX_PI * 2 * t)) +
                           0.2 * sin(2 * DEMIX_PI * (550 + 3 * ch) * t) +
                           0.03 * demix_test_uniform(rng);
                if (i % 11025 < 300)
                    v += 0.4 * demix_test_uniform(rng);
                in[((size_t)k * 2 + ch) * hop_samples + n] = (float)v;
            }
}

static void test_fast_mode(void **state)
{
    (void)state;
    enum { HOPS = 200 };
    demix_model *m = random_model(64, 128, 0, demix_test_seed() ^ 0xFA57);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    uint64_t rng = demix_test_seed() ^ 0xFA;
    float *in = alloc_floats(hop * HOPS);
    float *ref = alloc_floats(out_hop * HOPS), *fast = alloc_floats(out_hop * HOPS);
    music_like(in, HOPS, c->hop_samples, &rng);
    demix_precision modes[2] = {DEMIX_PRECISION_FP32, DEMIX_PRECISION_FAST};
    float *outs[2] = {ref, fast};
    int bf16 = 0;
    for (int i = 0; i < 2; i++) {
        demix_engine *e = cpu_engine_prec(m, 1, modes[i]);
        if (i == 1) {
            bf16 = strstr(demix_engine_describe(e), "bf16") != NULL;
            print_message("fast: %s\n", demix_engine_describe(e));
        }
        int slot = open_slot(e);
        for (int k = 0; k < HOPS; k++)
            assert_int_equal(demix_engine_step(e, 1, &slot, in + k * hop,
                                               outs[i] + k * out_hop),
                             0);
        demix_engine_destroy(e);
    }
    if (!bf16) { /* no AVX512-BF16: the fast mode is the float32 path */
        assert_memory_equal(ref, fast, out_hop * HOPS * sizeof(float));
    } else {
        for (int t = 0; t < c->num_sources; t++) {
            double sig = 0, noise = 0;
            for (int k = 0; k < HOPS; k++)
                for (size_t i = 0; i < hop; i++) {
                    size_t at = k * out_hop + t * hop + i;
                    double d = (double)fast[at] - ref[at];
                    sig += (double)ref[at] * ref[at];
                    noise += d * d;
                }
            double sdr = 10 * log10(sig / fmax(noise, 1e-300));
            print_message("source %d: SDR fast vs fp32 %.1f dB\n", t, sdr);
            assert_true(sdr >= 40.0);
        }
        check_slot_independence(21, 37, 0, DEMIX_PRECISION_FAST);
        check_slot_independence(19, 29, 1, DEMIX_PRECISION_FAST);
    }
    free(in), free(ref), free(fast);
    demix_model_destroy(m);
}

/* --------------------------------------------------------- (i) threads */

static void check_threads_bit_identical(demix_precision precision)
{
    enum { SLOTS = 5, HOPS = 30, ENGINES = 4 };
    /* D 64, NB 128: every product splits into several column chunks at 2
     * and 3 threads, and 4D = 256 leaves a partial last chunk. */
    demix_model *m = random_model(64, 128, 0, demix_test_seed() ^ 0x7487);
    const demix_model_config *c = demix_model_get_config(m);
    size_t hop = (size_t)c->channels * c->hop_samples;
    size_t out_hop = hop * (size_t)c->num_sources;
    uint64_t rng = demix_test_seed() ^ 0x74;
    float *in = alloc_floats((size_t)HOPS * SLOTS * hop);
    demix_test_fill_uniform(in, (size_t)HOPS * SLOTS * hop, 0.8f, &rng);
    float *outs[ENGINES];
    int threads[ENGINES] = {0, 1, 2, 3}; /* 0: no pool */
    int sizes[HOPS];
    for (int k = 0; k < HOPS; k++) /* mostly all 5, some 1..4 */
        sizes[k] = k % 4 == 3 ? 1 + (int)(demix_test_rand(&rng) % 4) : SLOTS;

    for (int e = 0; e < ENGINES; e++) {
        demix_threadpool *pool = NULL;
        if (threads[e])
            assert_int_equal(demix_threadpool_create(threads[e], &pool), 0);
        demix_engine_options opt;
        demix_engine_options_init(&opt);
        opt.backend = DEMIX_BACKEND_CPU;
        opt.max_slots = SLOTS;
        opt.precision = precision;
        opt.pool = pool;
        demix_engine *eng = NULL;
        char err[256];
        assert_int_equal(demix_engine_create(m, &opt, &eng, err, sizeof err), 0);
        char want[32];
        snprintf(want, sizeof want, " %d thread%s,", threads[e] ? threads[e] : 1,
                 threads[e] > 1 ? "s" : "");
        if (!strstr(demix_engine_describe(eng), want))
            fail_msg("describe '%s' lacks '%s'", demix_engine_describe(eng), want);
        int ids[SLOTS];
        for (int s = 0; s < SLOTS; s++)
            ids[s] = open_slot(eng);
        outs[e] = alloc_floats((size_t)HOPS * SLOTS * out_hop);
        for (int k = 0; k < HOPS; k++)
            assert_int_equal(demix_engine_step(eng, sizes[k], ids,
                                               in + (size_t)k * SLOTS * hop,
                                               outs[e] + (size_t)k * SLOTS * out_hop),
                             0);
        demix_engine_destroy(eng);
        demix_threadpool_destroy(pool);
    }
    for (int e = 1; e < ENGINES; e++)
        for (int k = 0; k < HOPS; k++) {
            size_t at = (size_t)k * SLOTS * out_hop;
            if (memcmp(outs[e] + at, outs[0] + at,
                       (size_t)sizes[k] * out_hop * sizeof(float)))
                fail_msg("%s: %d-thread pool, hop %d (%d slots) differs from "
                         "the engine without a pool",
                         precision == DEMIX_PRECISION_FAST ? "fast" : "fp32",
                         threads[e], k, sizes[k]);
        }
    print_message("%s: pools of 1, 2, 3 threads bit-identical to no pool over "
                  "%d hops of up to %d slots\n",
                  precision == DEMIX_PRECISION_FAST ? "fast" : "fp32", HOPS,
                  SLOTS);
    for (int e = 0; e < ENGINES; e++)
        free(outs[e]);
    free(in);
    demix_model_destroy(m);
}

static void test_threads_bit_identical(void **state)
{
    (void)state;
    check_threads_bit_identical(DEMIX_PRECISION_FP32);
    check_threads_bit_identical(DEMIX_PRECISION_FAST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_masks_delay_one_hop),
        cmocka_unit_test(test_equals_reference_full),
        cmocka_unit_test(test_equals_reference_small),
        cmocka_unit_test(test_slots_independent_full),
        cmocka_unit_test(test_slots_independent_small),
        cmocka_unit_test(test_reopen_and_reset_start_from_zero),
        cmocka_unit_test(test_bad_step_arguments),
        cmocka_unit_test(test_stage_reader_errors),
        cmocka_unit_test(test_name_describe_precision),
        cmocka_unit_test(test_fast_mode),
        cmocka_unit_test(test_threads_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
