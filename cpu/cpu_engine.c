/*
 * cpu_engine.c - the CPU reference backend: create/destroy, slot reset and
 * the batched step that runs model-spec.md's frame for every listed slot.
 *
 * Design. A step computes each stage for all n listed slots at once: every
 * linear layer is one demix__cpu_matmul() over the n rows (the decoder one
 * over the n*T rows; demix__cpu_matmul_bf16() in the fast mode), so the
 * weights are streamed from memory once per step whatever n; the FFTs and
 * elementwise parts run row by row. Results are bit-identical whichever
 * slots share a step and in whatever order they are listed: every operation
 * on a row is the same sequence of float operations as when the row is
 * alone (see cpu_matmul.h for why the products are not cblas_sgemm). All
 * memory is taken at create for max_slots rows (cpu_context.h); a step
 * allocates nothing and cannot fail once engine.c has checked its slot list.
 *
 * Threads. With a pool in the options (engine.h), each product is split by
 * output columns, the LSTM cells and the gated basis by units
 * (cpu_parallel.h), the spectral features by rows and the inverse FFTs by
 * (row, source), each task with its own FFT plan and scratch. No element
 * is computed differently from the single-thread step, so the output is
 * bit-identical for any thread count. Gathers, norms, windows and the
 * overlap-add (a few microseconds) stay on the calling thread.
 *
 * Precision: DEMIX_PRECISION_FAST, and DEMIX_PRECISION_DEFAULT with it,
 * rounds weights and the activations entering each product to bfloat16
 * (cpu_bf16.h) where the CPU has AVX512-BF16, and runs float32 elsewhere;
 * DEMIX_PRECISION_FP32 is float32 throughout (the reference); describe()
 * says which.
 *
 * Threads: none are started. The math runs on the calling thread and, when
 * the options carry a pool, on the pool's workers during step() (OpenBLAS
 * is not called).
 * Thread context: one thread at a time per context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_bf16.h"
#include "cpu_context.h"
#include "cpu_features.h"
#include "cpu_lstm.h"
#include "cpu_masks.h"
#include "cpu_matmul.h"
#include "cpu_parallel.h"

static void cpu_destroy(void *vctx)
{
    demix_cpu_context *x = vctx;
    if (!x)
        return;
    if (x->fft)
        for (int i = 0; i < x->threads; i++)
            demix__cpu_fft_destroy(x->fft[i]);
    free(x->fft);
    free(x->params);
    free(x->bf16_weights);
    free(x->bf16_act);
    free(x->work);
    free(x);
}

/* Constant derived parameters: the overlap-add envelope, the transposed
 * decoder and the summed LSTM biases. */
static int make_params(demix_cpu_context *x)
{
    const demix_model *m = x->model;
    size_t floats = (size_t)x->H + (size_t)x->CW * x->NB;
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++)
        floats += (size_t)m->lstm[b].layers * 4 * m->lstm[b].hidden_size;
    x->params = malloc(floats * sizeof(float));
    if (!x->params)
        return DEMIX_ENOMEM;
    float *p = x->params;

    x->env = p, p += x->H;
    const float *w = m->window;
    for (int n = 0; n < x->H; n++)
        x->env[n] = w[n] * w[n] + w[n + x->H] * w[n + x->H];

    /* conv_decode.weight is [NB][C*W]; the product wants [C*W][NB]. */
    x->decode_t = p, p += (size_t)x->CW * x->NB;
    for (size_t k = 0; k < (size_t)x->NB; k++)
        for (size_t i = 0; i < (size_t)x->CW; i++)
            x->decode_t[i * x->NB + k] = m->conv_decode_w[k * x->CW + i];

    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        const demix_lstm_weights *l = &m->lstm[b];
        for (int k = 0; k < l->layers; k++) {
            x->lstm_bias[b][k] = p;
            for (int i = 0; i < 4 * l->hidden_size; i++)
                p[i] = l->b_ih[k][i] + l->b_hh[k][i];
            p += 4 * l->hidden_size;
        }
    }
    return DEMIX_OK;
}

/* Fast mode: every product's weights packed as bf16 rows padded to
 * DEMIX_CPU_BF16_PAD, and the activation rows they will be multiplied with. */
static int make_bf16(demix_cpu_context *x)
{
    const demix_model *m = x->model;
    int pS = demix__cpu_bf16_padded(x->S), pCW = demix__cpu_bf16_padded(x->CW);
    int pNB = demix__cpu_bf16_padded(x->NB), pD = demix__cpu_bf16_padded(x->D);
    size_t total = (size_t)x->D * pS + 2 * (size_t)x->NB * pCW +
                   (size_t)x->D * pNB + (size_t)x->T * x->S * pD +
                   (size_t)x->T * x->NB * pD + (size_t)x->CW * pNB;
    int act_row = pS > pCW ? pS : pCW;
    if (x->T * pNB > act_row)
        act_row = x->T * pNB;
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        const demix_lstm_weights *l = &m->lstm[b];
        for (int k = 0; k < l->layers; k++) {
            int in = k == 0 ? l->input_size : l->hidden_size;
            int pad = demix__cpu_bf16_padded(in + l->hidden_size);
            total += 4 * (size_t)l->hidden_size * pad;
            if (pad > act_row)
                act_row = pad;
        }
    }
    x->bf16_weights = malloc(total * sizeof(uint16_t));
    x->bf16_act = malloc((size_t)x->max_slots * act_row * sizeof(uint16_t));
    if (!x->bf16_weights || !x->bf16_act)
        return DEMIX_ENOMEM;

    uint16_t *p = x->bf16_weights;
#define PACK(dst, rows, a, ka, b, kb)                                          \
    do {                                                                       \
        int pad_ = demix__cpu_bf16_padded((ka) + (kb));                        \
        demix__cpu_bf16_rows((rows), (a), (size_t)(ka), (ka), (b),             \
                             (size_t)(kb), (kb), p, pad_);                     \
        (dst).w = p;                                                           \
        (dst).k_pad = pad_;                                                    \
        p += (size_t)(rows) * pad_;                                            \
    } while (0)
    PACK(x->bf16_spec_encode, x->D, m->spec_encode_w, x->S, NULL, 0);
    PACK(x->bf16_conv_encode, 2 * x->NB, m->conv_encode_w, x->CW, NULL, 0);
    PACK(x->bf16_basis_to_embed, x->D, m->basis_to_embed_w, x->NB, NULL, 0);
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        const demix_lstm_weights *l = &m->lstm[b];
        for (int k = 0; k < l->layers; k++) {
            int in = k == 0 ? l->input_size : l->hidden_size;
            PACK(x->bf16_lstm[b][k], 4 * l->hidden_size, l->w_ih[k], in,
                 l->w_hh[k], l->hidden_size);
        }
    }
    PACK(x->bf16_spec_mask, x->T * x->S, m->spec_mask_w, x->D, NULL, 0);
    PACK(x->bf16_wave_mask, x->T * x->NB, m->wave_mask_w, x->D, NULL, 0);
    PACK(x->bf16_decode, x->CW, x->decode_t, x->NB, NULL, 0);
#undef PACK
    DEMIX_ASSERT((size_t)(p - x->bf16_weights) == total);
    return DEMIX_OK;
}

/* Per-row widths of the work buffers, in carving order. */
static size_t work_row_floats(const demix_cpu_context *x)
{
    size_t D = x->D, NB = x->NB, DF = x->DF, S = x->S, T = x->T;
    size_t TCW = T * x->CW;
    size_t rows = x->CW + S + D + 2 * NB + NB + D + 2 * D + 2 * DF + 2 * D +
                  2 * D + D + T * S + T * NB + TCW + T * NB + TCW + 4 * DF;
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++)
        rows += 2 * (size_t)x->L * x->model->lstm[b].hidden_size;
    return rows;
}

static int make_work(demix_cpu_context *x, char *err, size_t err_cap)
{
    const demix_model *m = x->model;
    size_t S_rows = (size_t)x->max_slots;

    size_t off = (size_t)x->C * x->H; /* past first */
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++)
        for (int k = 0; k < x->L; k++) {
            x->off_h[b][k] = off, off += m->lstm[b].hidden_size;
            x->off_c[b][k] = off, off += m->lstm[b].hidden_size;
        }
    x->off_tail_spec = off, off += (size_t)x->T * x->C * x->H;
    x->off_tail_wave = off, off += (size_t)x->T * x->C * x->H;
    x->slot_floats = off;

    size_t row_floats = work_row_floats(x);
    size_t scratch = (2 * (size_t)x->F + 2) * (size_t)x->threads;
    x->work_floats = S_rows * (x->slot_floats + row_floats) + scratch;
    x->work = calloc(x->work_floats, sizeof(float));
    if (!x->work) {
        double per_slot_mb =
            (double)(x->slot_floats + row_floats) * sizeof(float) / 1e6;
        demix__set_err(
            err, err_cap,
            "cpu backend: out of memory for %d slots (%.2f MB of state "
            "and work buffers per slot, %.1f MB in all); ask for fewer",
            x->max_slots, per_slot_mb, per_slot_mb * x->max_slots);
        return DEMIX_ENOMEM;
    }

    float *p = x->work;
#define TAKE(field, per_row) (x->field = p, p += S_rows * (size_t)(per_row))
    x->state = p, p += S_rows * x->slot_floats;
    TAKE(frame, x->CW);
    TAKE(spec_feat, x->S);
    TAKE(spec, x->D);
    TAKE(ag, 2 * x->NB);
    TAKE(basis, x->NB);
    TAKE(wave, x->D);
    TAKE(s1, x->D);
    TAKE(w1, x->D);
    TAKE(fuse_in, x->DF);
    TAKE(fused, x->DF);
    TAKE(post_in_s, x->D);
    TAKE(post_in_w, x->D);
    TAKE(s2, x->D);
    TAKE(w2, x->D);
    TAKE(norm, x->D);
    TAKE(spec_mask, (size_t)x->T * x->S);
    TAKE(wave_mask, (size_t)x->T * x->NB);
    TAKE(spec_out, (size_t)x->T * x->CW);
    TAKE(dec_in, (size_t)x->T * x->NB);
    TAKE(wave_out, (size_t)x->T * x->CW);
    TAKE(gates, 4 * (size_t)x->DF);
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++)
        for (int k = 0; k < x->L; k++) {
            TAKE(h_work[b][k], m->lstm[b].hidden_size);
            TAKE(c_work[b][k], m->lstm[b].hidden_size);
        }
#undef TAKE
    x->fft_scratch = p, p += scratch;
    DEMIX_ASSERT((size_t)(p - x->work) == x->work_floats);
    return DEMIX_OK;
}

static int cpu_create(const demix_model *model, const demix_engine_options *opt,
                      void **out, char *err, size_t err_cap)
{
    *out = NULL;
    if (!model || !opt || opt->max_slots < 1) {
        demix__set_err(err, err_cap,
                       "cpu backend: a model and max_slots >= 1 are "
                       "required");
        return DEMIX_EARG;
    }
    if (opt->precision != DEMIX_PRECISION_DEFAULT &&
        opt->precision != DEMIX_PRECISION_FP32 &&
        opt->precision != DEMIX_PRECISION_FAST) {
        demix__set_err(err, err_cap, "cpu backend: unknown precision %d",
                       (int)opt->precision);
        return DEMIX_EARG;
    }
    const demix_model_config *cfg = &model->config;
    if (cfg->window_samples < 2 || cfg->window_samples % 2 ||
        cfg->hop_samples * 2 != cfg->window_samples) {
        demix__set_err(
            err, err_cap,
            "cpu backend: window %d and hop %d must be even and W = 2H",
            cfg->window_samples, cfg->hop_samples);
        return DEMIX_EARG;
    }

    demix_cpu_context *x = calloc(1, sizeof *x);
    if (!x) {
        demix__set_err(err, err_cap, "cpu backend: out of memory");
        return DEMIX_ENOMEM;
    }
    x->model = model;
    x->D = cfg->dim;
    x->NB = cfg->num_basis;
    x->DF = cfg->fusion_dim;
    x->L = cfg->lstm_layers;
    x->C = cfg->channels;
    x->W = cfg->window_samples;
    x->H = cfg->hop_samples;
    x->F = cfg->bins;
    x->S = cfg->spec_features;
    x->T = cfg->num_sources;
    x->CW = x->C * x->W;
    x->small = cfg->small;
    x->max_slots = opt->max_slots;
    /* The default is the best mode that meets the bar (engine.h): bf16
     * products where the CPU has them (48-51 dB SDR against fp32 in
     * tests/unit/test_cpu_engine.c, over design.md's 40 dB), as on CUDA;
     * fp32, the reference, is asked for by name. */
    x->fast_requested = opt->precision == DEMIX_PRECISION_FAST ||
                        opt->precision == DEMIX_PRECISION_DEFAULT;
    x->pool = opt->pool;
    x->threads = demix_threadpool_threads(opt->pool);

    x->bf16 = x->fast_requested && demix__cpu_bf16_available();

    int rc = DEMIX_ENOMEM;
    x->fft = calloc((size_t)x->threads, sizeof *x->fft);
    if (x->fft) {
        rc = DEMIX_OK;
        for (int i = 0; i < x->threads && rc == DEMIX_OK; i++)
            rc = demix__cpu_fft_create(x->W, &x->fft[i]);
    }
    if (rc == DEMIX_OK)
        rc = make_params(x);
    if (rc == DEMIX_OK && x->bf16)
        rc = make_bf16(x);
    if (rc) {
        demix__set_err(err, err_cap,
                       "cpu backend: out of memory for the FFT plans "
                       "and derived weights");
        cpu_destroy(x);
        return rc;
    }
    rc = make_work(x, err, err_cap);
    if (rc) {
        cpu_destroy(x);
        return rc;
    }
    const char *plural = x->threads == 1 ? "" : "s";
    if (x->bf16)
        snprintf(x->describe, sizeof x->describe,
                 "cpu fast: bf16 weights and activations, fp32 accumulation "
                 "and state, avx512-bf16 row-stable kernels, %d thread%s, "
                 "kissfft",
                 x->threads, plural);
    else
        snprintf(x->describe, sizeof x->describe,
                 "cpu fp32%s, %s row-stable kernels, %d thread%s, kissfft",
                 x->fast_requested ? " (fast mode needs a CPU with "
                                     "AVX512-BF16)"
                                   : "",
                 demix__cpu_matmul_isa(), x->threads, plural);
    *out = x;
    return DEMIX_OK;
}

static const char *cpu_describe(void *vctx)
{
    demix_cpu_context *x = vctx;
    return x ? x->describe : "cpu";
}

static const char *cpu_last_error(void *vctx)
{
    demix_cpu_context *x = vctx;
    return x ? x->error : "";
}

static int cpu_reset_slot(void *vctx, int slot)
{
    demix_cpu_context *x = vctx;
    if (slot < 0 || slot >= x->max_slots) {
        snprintf(x->error, sizeof x->error, "slot %d is out of range 0..%d",
                 slot, x->max_slots - 1);
        return DEMIX_EARG;
    }
    memset(x->state + (size_t)slot * x->slot_floats, 0,
           x->slot_floats * sizeof(float));
    return DEMIX_OK;
}

/* y[r] = W x[r] + b for n rows: a PyTorch linear layer (w16: the same
 * weights packed for the fast mode). */
static void linear(demix_cpu_context *x, int rows, const float *in,
                   int in_size, const float *w, const demix_cpu_bf16_weight *w16,
                   const float *b, int out_size, float *y)
{
    if (x->bf16) {
        demix__cpu_bf16_rows(rows, in, (size_t)in_size, in_size, NULL, 0, 0,
                             x->bf16_act, w16->k_pad);
        demix__cpu_matmul_bf16_pool(x->pool, rows, out_size, w16->k_pad,
                                    x->bf16_act, w16->w, b, y,
                                    (size_t)out_size);
        return;
    }
    demix_cpu_operand op = {in, (size_t)in_size, w, (size_t)in_size, in_size};
    demix__cpu_matmul_pool(x->pool, rows, out_size, &op, 1, b, y,
                           (size_t)out_size);
}

/* R(x) = x + LSTM(x) over every layer of branch b (small: R(x) = LSTM(x)).
 * x [rows][in], out [rows][hid]; the h/c work rows hold the state. */
static void run_branch(demix_cpu_context *x, int b, int rows, const float *in,
                       float *out)
{
    const demix_lstm_weights *l = &x->model->lstm[b];
    int hid = l->hidden_size;
    const float *layer_in = in;
    int layer_in_size = l->input_size;
    for (int k = 0; k < l->layers; k++) {
        if (x->bf16)
            demix__cpu_lstm_layer_bf16(
                x->pool, rows, layer_in, (size_t)layer_in_size, layer_in_size,
                x->h_work[b][k], x->c_work[b][k], hid, x->bf16_lstm[b][k].w,
                x->bf16_lstm[b][k].k_pad, x->lstm_bias[b][k], x->gates,
                x->bf16_act);
        else
            demix__cpu_lstm_layer(x->pool, rows, layer_in,
                                  (size_t)layer_in_size,
                                  layer_in_size, x->h_work[b][k],
                                  x->c_work[b][k], hid, l->w_ih[k], l->w_hh[k],
                                  x->lstm_bias[b][k], x->gates);
        layer_in = x->h_work[b][k];
        layer_in_size = hid;
    }
    size_t count = (size_t)rows * hid;
    const float *h = x->h_work[b][l->layers - 1];
    if (x->small) {
        memcpy(out, h, count * sizeof *out);
    } else {
        for (size_t i = 0; i < count; i++)
            out[i] = in[i] + h[i];
    }
}

/* Copy the listed slots' LSTM state into the work rows (to_work) or back. */
static void move_lstm_state(demix_cpu_context *x, int n, const int *slots,
                            int to_work)
{
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        size_t hid = (size_t)x->model->lstm[b].hidden_size;
        for (int k = 0; k < x->L; k++)
            for (int r = 0; r < n; r++) {
                float *st = x->state + (size_t)slots[r] * x->slot_floats;
                float *h = st + x->off_h[b][k], *c = st + x->off_c[b][k];
                float *hw = x->h_work[b][k] + (size_t)r * hid;
                float *cw = x->c_work[b][k] + (size_t)r * hid;
                if (to_work) {
                    memcpy(hw, h, hid * sizeof *h);
                    memcpy(cw, c, hid * sizeof *c);
                } else {
                    memcpy(h, hw, hid * sizeof *h);
                    memcpy(c, cw, hid * sizeof *c);
                }
            }
    }
}

/* The per-row FFT stages: `items` work items (rows, or (row, source)
 * pairs) dealt round-robin to min(threads, items) tasks; task i uses FFT
 * plan i and scratch row i. */
typedef struct rows_job {
    demix_cpu_context *x;
    int items, tasks;
} rows_job;

static float *task_scratch(const demix_cpu_context *x, int task)
{
    return x->fft_scratch + (size_t)task * (2 * (size_t)x->F + 2);
}

static void spec_features_task(void *arg, int task)
{
    const rows_job *j = arg;
    demix_cpu_context *x = j->x;
    for (int r = task; r < j->items; r += j->tasks)
        demix__cpu_spec_features(x->fft[task], x->model->window, x->C, x->W,
                                 x->frame + (size_t)r * x->CW,
                                 task_scratch(x, task),
                                 x->spec_feat + (size_t)r * x->S);
}

static void spec_synth_task(void *arg, int task)
{
    const rows_job *j = arg;
    demix_cpu_context *x = j->x;
    size_t T = (size_t)x->T;
    for (int i = task; i < j->items; i += j->tasks) {
        size_t r = (size_t)i / T;
        int t = (int)((size_t)i % T);
        demix__cpu_spec_synth_source(
            x->fft[task], x->model->window, t, x->T, x->C, x->W,
            x->spec_feat + r * x->S, x->spec_mask + r * T * x->S,
            task_scratch(x, task), x->spec_out + r * T * x->CW);
    }
}

static void run_rows(demix_cpu_context *x, int items, demix_threadpool_fn fn)
{
    rows_job j = {.x = x, .items = items,
                  .tasks = items < x->threads ? items : x->threads};
    int rc = demix_threadpool_run(x->pool, j.tasks, fn, &j);
    DEMIX_ASSERT(rc == DEMIX_OK);
}

static int cpu_step(void *vctx, int n, const int *slots, const float *in,
                    float *out)
{
    demix_cpu_context *x = vctx;
    const demix_model *m = x->model;
    size_t C = x->C, W = x->W, H = x->H, T = x->T, D = x->D;
    size_t DF = x->DF, CW = x->CW;

    /* frame = [past | x]; past = x (model-spec.md "One frame"). */
    for (int r = 0; r < n; r++) {
        float *past = x->state + (size_t)slots[r] * x->slot_floats;
        for (size_t ch = 0; ch < C; ch++) {
            float *f = x->frame + (size_t)r * CW + ch * W;
            const float *hop = in + ((size_t)r * C + ch) * H;
            memcpy(f, past + ch * H, H * sizeof *f);
            memcpy(f + H, hop, H * sizeof *f);
            memcpy(past + ch * H, hop, H * sizeof *f);
        }
    }

    /* 1-2: spectral features and encoder. */
    run_rows(x, n, spec_features_task);
    linear(x, n, x->spec_feat, x->S, m->spec_encode_w, &x->bf16_spec_encode,
           m->spec_encode_b, x->D, x->spec);

    /* 3-4: waveform encoder, gated basis, embedding. */
    linear(x, n, x->frame, x->CW, m->conv_encode_w, &x->bf16_conv_encode,
           m->conv_encode_b, 2 * x->NB, x->ag);
    demix__cpu_gate_basis_pool(x->pool, n, x->NB, x->ag, x->basis);
    linear(x, n, x->basis, x->NB, m->basis_to_embed_w, &x->bf16_basis_to_embed,
           m->basis_to_embed_b, x->D, x->wave);

    /* 5: the recurrent trunk. */
    move_lstm_state(x, n, slots, 1);
    run_branch(x, DEMIX_BRANCH_PRE_SPEC, n, x->spec, x->s1);
    run_branch(x, DEMIX_BRANCH_PRE_WAVE, n, x->wave, x->w1);
    for (size_t r = 0; r < (size_t)n; r++) {
        float *u = x->fuse_in + r * DF;
        const float *s1 = x->s1 + r * D, *w1 = x->w1 + r * D;
        if (x->small) {
            for (size_t i = 0; i < D; i++)
                u[i] = s1[i] + w1[i];
        } else {
            memcpy(u, s1, D * sizeof *u);
            memcpy(u + D, w1, D * sizeof *u);
        }
    }
    run_branch(x, DEMIX_BRANCH_FUSION, n, x->fuse_in, x->fused);
    size_t vw_offset = x->small ? 0 : D;
    for (size_t r = 0; r < (size_t)n; r++) {
        const float *v = x->fused + r * DF;
        const float *spec = x->spec + r * D, *wave = x->wave + r * D;
        float *ps = x->post_in_s + r * D, *pw = x->post_in_w + r * D;
        for (size_t i = 0; i < D; i++) {
            ps[i] = v[i] + spec[i];
            pw[i] = v[vw_offset + i] + wave[i];
        }
    }
    run_branch(x, DEMIX_BRANCH_POST_SPEC, n, x->post_in_s, x->s2);
    run_branch(x, DEMIX_BRANCH_POST_WAVE, n, x->post_in_w, x->w2);
    move_lstm_state(x, n, slots, 0);

    /* 6-7: spectral masks, masked spectra, inverse FFT and window. */
    demix__cpu_rmsnorm(n, x->D, x->s2, m->spec_mask_gain, x->norm);
    linear(x, n, x->norm, x->D, m->spec_mask_w, &x->bf16_spec_mask,
           m->spec_mask_b, x->T * x->S, x->spec_mask);
    run_rows(x, n * x->T, spec_synth_task);

    /* 8: waveform masks and the transposed-conv decoder, all n*T rows in
     * one product, then the window per tap. */
    demix__cpu_rmsnorm(n, x->D, x->w2, m->wave_mask_gain, x->norm);
    linear(x, n, x->norm, x->D, m->wave_mask_w, &x->bf16_wave_mask,
           m->wave_mask_b, x->T * x->NB, x->wave_mask);
    demix__cpu_decoder_input(n, x->T, x->NB, x->basis, x->wave_mask,
                             x->dec_in);
    linear(x, n * x->T, x->dec_in, x->NB, x->decode_t, &x->bf16_decode, NULL,
           x->CW, x->wave_out);
    demix__cpu_apply_window(n * x->T * x->C, x->W, m->window, x->wave_out);

    /* 9: overlap-add, one hop per source and channel. */
    for (size_t r = 0; r < (size_t)n; r++) {
        float *st = x->state + (size_t)slots[r] * x->slot_floats;
        demix__cpu_overlap_add(x->T, x->C, x->H, x->env,
                               x->spec_out + r * T * CW,
                               x->wave_out + r * T * CW,
                               st + x->off_tail_spec, st + x->off_tail_wave,
                               out + r * T * C * H);
    }
    x->last_rows = n;
    x->error[0] = '\0';
    return DEMIX_OK;
}

static const demix_backend_ops cpu_ops = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .describe = cpu_describe,
    .reset_slot = cpu_reset_slot,
    .step = cpu_step,
    .last_error = cpu_last_error,
};

const demix_backend_ops *demix__cpu_backend(void) { return &cpu_ops; }
