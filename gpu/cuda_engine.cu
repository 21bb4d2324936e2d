/*
 * cuda_engine.cu - the CUDA backend of engine.h: device set-up (weights in
 * the precision of each product group, the slot-indexed state, activations
 * for one chunk of rows, pinned staging, cuBLAS handles and cuFFT plans),
 * CUDA graphs per batch bucket captured at create time, and the step:
 * per chunk, input and slot ids up, one graph launch, output down; the
 * synchronous step is the pipelined one followed by its wait.
 *
 * Design.
 * - Slots: state[max_slots + 1][P] on the device; reset is one memset of a
 *   slot's P floats, stream-ordered before the next step. The extra slot
 *   is the scratch slot that a bucket's padded rows point at.
 * - Buckets: 1, 2, 4, ... 128, then four sizes per octave (x1.25, x1.5,
 *   x1.75, x2) up to R, and R itself. A step of m rows runs the smallest
 *   bucket >= m; padding costs at most 25% above 128 rows.
 * - One step path (enqueue_step): copies on two copy streams (h2d, d2h)
 *   and compute on the main stream, through two device landing zones for
 *   the input (d_pin) and two for the output (d_pout), alternating by
 *   chunk: chunk c's upload and download overlap the compute of its
 *   neighbours. Each bucket has a graph per zone (exec_p[2]), captured on
 *   that zone's input and output. cuda_submit enqueues and returns
 *   (engine.h's submit; cuda_wait is its collect); cuda_step enqueues and
 *   waits. Page-locked caller buffers (the engine's ring, cudaHostAlloc,
 *   cudaHostRegister) are copied to and from directly; pageable ones go
 *   through pinned staging, copied by the driver's thread pool
 *   (demix_engine_options.pool) when it gave one.
 * - Small synchronous steps (buckets of at most 64 rows) are one launch:
 *   a third graph per bucket with the staging copies inside (exec_io).
 * - One way to run each step: the variants measured in gpu/NOTES.md and
 *   found slower or no faster (a fused small-batch LSTM kernel, cuBLASLt
 *   tuning, split LSTM products, transposed decoder weights, unpadded
 *   products, the round-1 gather, cell and RMSNorm kernels) are gone from
 *   the product; git history has them. What remains switchable, for tests
 *   and benchmarks only (cuda_backend.h): the fast policy and graphs off.
 * - State per slot: the past hop, h and c of every layer, and one overlap
 *   tail (overlap_add.cu: both paths' second halves summed, the spectral
 *   one divided by the envelope beforehand).
 * - Errors: every CUDA, cuBLAS and cuFFT call goes through CK(), which
 *   keeps the first failure (call text, file, line). A failed step returns
 *   DEMIX_EDEVICE and every later step and reset is refused: the state is
 *   undefined and the server closes the engine's sessions. Nothing aborts.
 * - Create fails with DEMIX_ENOMEM and the number of slots that would fit
 *   (from cudaMemGetInfo) when the asked slots do not fit; with
 *   DEMIX_EDEVICE when no device opens (cudaGetDeviceCount returns an
 *   error, 35, on a machine without a GPU: any error means "no GPU").
 *
 * Thread context: one context is used by one thread at a time (engine.h);
 * the test switches (policy, graphs) are process-wide and set before create.
 */
#include "cuda_internal.h"

extern "C" {
#include "cuda_backend.h"
}

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static demix_cuda_policy fast_policy = DEMIX_CUDA_POLICY_BF16;
static int use_graphs = 1;

/* ------------------------------------------------------------ errors */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool record_failure(demix_cuda_err *e, int oom, const char *name,
                           const char *what, const char *call,
                           const char *file, int line)
{
    if (!e->failed) {
        e->failed = 1;
        e->oom = oom;
        snprintf(e->text, sizeof e->text, "%s (%s) in %s at %s:%d", name,
                 what, call, base_name(file), line);
    }
    return false;
}

bool demix__cuda_ok(demix_cuda_err *e, cudaError_t rc, const char *call,
                    const char *file, int line)
{
    if (rc == cudaSuccess)
        return true;
    return record_failure(e, rc == cudaErrorMemoryAllocation,
                          cudaGetErrorName(rc), cudaGetErrorString(rc), call,
                          file, line);
}

bool demix__cuda_ok(demix_cuda_err *e, cublasStatus_t rc, const char *call,
                    const char *file, int line)
{
    if (rc == CUBLAS_STATUS_SUCCESS)
        return true;
    return record_failure(e, rc == CUBLAS_STATUS_ALLOC_FAILED,
                          cublasGetStatusName(rc), cublasGetStatusString(rc),
                          call, file, line);
}

static const char *cufft_name(cufftResult rc)
{
    switch (rc) {
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "CUFFT_ERROR";
    }
}

bool demix__cuda_ok(demix_cuda_err *e, cufftResult rc, const char *call,
                    const char *file, int line)
{
    if (rc == CUFFT_SUCCESS)
        return true;
    char code[32];
    snprintf(code, sizeof code, "cufftResult %d", (int)rc);
    return record_failure(e, rc == CUFFT_ALLOC_FAILED, cufft_name(rc), code,
                          call, file, line);
}

static void set_msg(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_msg(char *dst, size_t cap, const char *fmt, ...)
{
    if (!dst || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

/* The status of a failed set-up step, its sentence in g->last_error. */
static int setup_failed(demix_cuda *g)
{
    set_msg(g->last_error, sizeof g->last_error, "%s", g->err.text);
    return g->err.oom ? DEMIX_ENOMEM : DEMIX_EDEVICE;
}

/* ------------------------------------------------------------ layout */

typedef struct carver {
    char *base; /* NULL: measuring */
    size_t off;
} carver;

static void *take(carver *c, size_t bytes)
{
    c->off = (c->off + 255) & ~(size_t)255;
    void *p = c->base ? c->base + c->off : NULL;
    c->off += bytes;
    return p;
}

static void take_mat(carver *c, dmat *m, size_t rows, int cols, int kind)
{
    m->ld = demix__ld(cols);
    m->bf16 = kind == DEMIX_CUDA_BF16;
    m->p = take(c, rows * (size_t)m->ld * (m->bf16 ? 2 : 4));
}

static float *take_f(carver *c, size_t n)
{
    return (float *)take(c, n * sizeof(float));
}

static void layout_weights(demix_cuda *g, carver *c)
{
    const int D = g->D, NB = g->NB, T = g->T, S = g->S;
    /* weights [N][K] (rows rounded up to the pad: zero rows) */
    take_mat(c, &g->w_enc, demix__ld(D + 2 * NB), g->CW,
             g->kind[DEMIX_CUDA_G_ENC]);
    take_mat(c, &g->w_b2e, demix__ld(D), NB, g->kind[DEMIX_CUDA_G_B2E]);
    for (int br = 0; br < DEMIX_BRANCH_COUNT; br++)
        for (int l = 0; l < g->L; l++) {
            demix_cuda_layer *ly = &g->layer[br][l];
            take_mat(c, &ly->w, demix__ld(4 * ly->hid), ly->in + ly->hid,
                     g->kind[DEMIX_CUDA_G_LSTM]);
            ly->bias = take_f(c, 4 * (size_t)ly->hid);
        }
    take_mat(c, &g->w_smask, demix__ld(T * S), D,
             g->kind[DEMIX_CUDA_G_MASK]);
    take_mat(c, &g->w_wmask, demix__ld(T * NB), D,
             g->kind[DEMIX_CUDA_G_MASK]);
    /* [K][N]: K rows */
    take_mat(c, &g->w_dec, demix__ld(NB), g->CW, g->kind[DEMIX_CUDA_G_DEC]);
    g->b_spec = take_f(c, D);
    g->b_conv = take_f(c, 2 * (size_t)NB);
    g->b_b2e = take_f(c, D);
    g->gain_s = take_f(c, D);
    g->gain_w = take_f(c, D);
    g->b_smask = take_f(c, (size_t)T * S);
    g->b_wmask = take_f(c, (size_t)T * NB);
    g->window = take_f(c, g->W);
    g->env = take_f(c, g->H);
}

static void layout_activations(demix_cuda *g, carver *c, size_t R)
{
    const int D = g->D, NB = g->NB, T = g->T, C = g->C;
    const int *k = g->kind;
    g->d_inbuf = (char *)take(c, demix__slot_bytes((int)R) +
                                     R * C * g->H * sizeof(float));
    take_mat(c, &g->frame, R, g->CW, k[DEMIX_CUDA_G_ENC]);
    g->frame_win = take_f(c, R * g->CW);
    g->X = (float2 *)take(c, R * C * g->F * sizeof(float2));
    g->ld_enc = demix__ld(D + 2 * NB);
    g->enc = take_f(c, R * g->ld_enc);
    g->ldD = demix__ld(D);
    g->ldNB = demix__ld(NB);
    g->ldDF = demix__ld(g->DF);
    float **d_bufs[] = {&g->spec, &g->wave_raw, &g->wave, &g->s1, &g->w1,
                        &g->ps_in, &g->pw_in, &g->s2, &g->w2};
    for (size_t i = 0; i < sizeof d_bufs / sizeof d_bufs[0]; i++)
        *d_bufs[i] = take_f(c, R * g->ldD);
    g->basis = take_f(c, R * g->ldNB);
    take_mat(c, &g->basis_act, R, NB, k[DEMIX_CUDA_G_B2E]);
    g->u = take_f(c, R * g->ldDF);
    g->fused = take_f(c, R * g->ldDF);
    for (int br = 0; br < DEMIX_BRANCH_COUNT; br++)
        for (int l = 0; l < g->L; l++) {
            demix_cuda_layer *ly = &g->layer[br][l];
            take_mat(c, &ly->xh, R, ly->in + ly->hid, k[DEMIX_CUDA_G_LSTM]);
            ly->ld_gates = demix__ld(4 * ly->hid);
            ly->gates = take_f(c, R * ly->ld_gates);
        }
    take_mat(c, &g->norm_s, R, D, k[DEMIX_CUDA_G_MASK]);
    take_mat(c, &g->norm_w, R, D, k[DEMIX_CUDA_G_MASK]);
    g->ld_ms = demix__ld(T * g->S);
    g->ms = take_f(c, R * g->ld_ms);
    g->ld_mw = demix__ld(T * NB);
    g->mw = take_f(c, R * g->ld_mw);
    g->Y = (float2 *)take(c, R * T * C * g->F * sizeof(float2));
    g->yraw = take_f(c, R * T * C * g->W);
    take_mat(c, &g->mb, R * T, NB, k[DEMIX_CUDA_G_DEC]);
    g->ld_z = demix__ld(g->CW);
    g->z = take_f(c, R * T * g->ld_z);
    g->d_out = take_f(c, R * T * C * g->H);
    for (int i = 0; i < 2; i++) {
        g->d_pin[i] = (char *)take(c, demix__slot_bytes((int)R) +
                                          R * C * g->H * sizeof(float));
        g->d_pout[i] = take_f(c, R * T * C * g->H);
        g->d_pack[i] = (unsigned char *)take(c, R * T * C * g->H *
                                                    sizeof(float));
        g->d_shapes[i] =
            (demix_row_shape *)take(c, R * sizeof(demix_row_shape));
    }
}

static size_t activation_bytes(demix_cuda *g, size_t R)
{
    carver c = {NULL, 0};
    layout_activations(g, &c, R);
    return c.off + 256;
}

/* --------------------------------------------------------- weights */

typedef struct part {
    const float *src;
    int cols, col;
} part;

/* Copy row-major parts (each rows x cols, side by side at column col) into
 * a device matrix: directly when it is float, through tmp (float, same
 * ld) and a conversion when it is bf16. Stream-ordered on s0. */
static bool upload_mat(demix_cuda *g, const dmat *m, int rows,
                       const part *parts, int nparts, float *tmp)
{
    demix_cuda_err *e = &g->err;
    float *target = m->bf16 ? tmp : (float *)m->p;
    size_t n = (size_t)rows * m->ld;
    if (m->bf16 &&
        !CK(e, cudaMemsetAsync(tmp, 0, n * sizeof(float), g->stream)))
        return false;
    for (int i = 0; i < nparts; i++)
        if (!CK(e, cudaMemcpy2DAsync(target + parts[i].col,
                                     (size_t)m->ld * sizeof(float),
                                     parts[i].src,
                                     (size_t)parts[i].cols * sizeof(float),
                                     (size_t)parts[i].cols * sizeof(float),
                                     rows, cudaMemcpyHostToDevice, g->stream)))
            return false;
    if (m->bf16)
        return demix__launch_to_bf16(e, g->stream, tmp, (__nv_bfloat16 *)m->p,
                                     n) &&
               CK(e, cudaStreamSynchronize(g->stream));
    return true;
}

static bool upload_vec(demix_cuda *g, float *dst, const float *src, size_t n)
{
    return CK(&g->err, cudaMemcpyAsync(dst, src, n * sizeof(float),
                                       cudaMemcpyHostToDevice, g->stream));
}

static bool upload_weights(demix_cuda *g, const demix_model *m, float *tmp)
{
    const int D = g->D, NB = g->NB, S = g->S, W = g->W, H = g->H;
    demix_cuda_err *e = &g->err;

    /* small vectors; the window is the model's own float32 values */
    float *env = (float *)malloc((size_t)H * sizeof(float));
    double *tables = (double *)malloc(2 * (size_t)W * sizeof(double));
    if (!env || !tables) {
        free(env);
        free(tables);
        return record_failure(e, 1, "ENOMEM", "host memory", "malloc",
                              __FILE__, __LINE__);
    }
    for (int n = 0; n < H; n++)
        env[n] = m->window[n] * m->window[n] + m->window[n + H] * m->window[n + H];
    for (int n = 0; n < W; n++) {
        tables[n] = cos(2.0 * DEMIX_PI * n / W);
        tables[W + n] = sin(2.0 * DEMIX_PI * n / W);
    }
    bool ok = upload_vec(g, g->window, m->window, W) &&
              upload_vec(g, g->env, env, H) &&
              upload_vec(g, g->b_spec, m->spec_encode_b, D) &&
              upload_vec(g, g->b_conv, m->conv_encode_b, 2 * (size_t)NB) &&
              upload_vec(g, g->b_b2e, m->basis_to_embed_b, D) &&
              upload_vec(g, g->gain_s, m->spec_mask_gain, D) &&
              upload_vec(g, g->gain_w, m->wave_mask_gain, D) &&
              upload_vec(g, g->b_smask, m->spec_mask_b, (size_t)g->T * S) &&
              upload_vec(g, g->b_wmask, m->wave_mask_b, (size_t)g->T * NB);

    /* encoder: rows [0, D) the spectral encoder folded onto the raw frame
     * (float64 on the device), rows [D, D + 2NB) conv_encode */
    if (ok) {
        const dmat *we = &g->w_enc;
        size_t enc_n = ((size_t)D + 2 * NB) * we->ld;
        float *target = we->bf16 ? tmp : (float *)we->p;
        float *ws = tmp + ((enc_n + 63) & ~(size_t)63);
        double *tab = (double *)(ws + (((size_t)D * S + 63) & ~(size_t)63));
        ok = (!we->bf16 ||
              CK(e, cudaMemsetAsync(tmp, 0, enc_n * sizeof(float), g->stream))) &&
             upload_vec(g, ws, m->spec_encode_w, (size_t)D * S) &&
             CK(e, cudaMemcpyAsync(tab, tables, 2 * (size_t)W * sizeof(double),
                                   cudaMemcpyHostToDevice, g->stream)) &&
             demix__launch_fold(e, g->stream, D, g->C, W, g->F, S, ws, tab,
                                tab + W, g->window, target, we->ld);
        part p = {m->conv_encode_w, g->CW, 0};
        dmat rest = *we;
        rest.bf16 = 0;
        rest.p = target + (size_t)D * we->ld;
        ok = ok && upload_mat(g, &rest, 2 * NB, &p, 1, NULL);
        if (ok && we->bf16)
            ok = demix__launch_to_bf16(e, g->stream, tmp,
                                       (__nv_bfloat16 *)we->p, enc_n) &&
                 CK(e, cudaStreamSynchronize(g->stream));
    }
    if (ok) {
        part p = {m->basis_to_embed_w, NB, 0};
        ok = upload_mat(g, &g->w_b2e, D, &p, 1, tmp);
    }
    float *bias = NULL;
    for (int br = 0; ok && br < DEMIX_BRANCH_COUNT; br++) {
        const demix_lstm_weights *lw = &m->lstm[br];
        for (int l = 0; ok && l < g->L; l++) {
            demix_cuda_layer *ly = &g->layer[br][l];
            part p[2] = {{lw->w_ih[l], ly->in, 0},
                         {lw->w_hh[l], ly->hid, ly->in}};
            ok = upload_mat(g, &ly->w, 4 * ly->hid, p, 2, tmp);
            free(bias);
            bias = (float *)malloc(4 * (size_t)ly->hid * sizeof(float));
            if (!bias) {
                ok = record_failure(e, 1, "ENOMEM", "host memory", "malloc",
                                    __FILE__, __LINE__);
                break;
            }
            for (int j = 0; j < 4 * ly->hid; j++)
                bias[j] = lw->b_ih[l][j] + lw->b_hh[l][j];
            ok = ok && upload_vec(g, ly->bias, bias, 4 * (size_t)ly->hid);
        }
    }
    if (ok) {
        part p = {m->spec_mask_w, D, 0};
        ok = upload_mat(g, &g->w_smask, g->T * S, &p, 1, tmp);
    }
    if (ok) {
        part p = {m->wave_mask_w, D, 0};
        ok = upload_mat(g, &g->w_wmask, g->T * NB, &p, 1, tmp);
    }
    if (ok) {
        part p = {m->conv_decode_w, g->CW, 0};
        ok = upload_mat(g, &g->w_dec, NB, &p, 1, tmp);
    }
    ok = ok && CK(e, cudaStreamSynchronize(g->stream));
    free(bias);
    free(env);
    free(tables);
    return ok;
}

/* Floats of the create-time scratch buffer: the largest weight matrix as
 * float, plus spec_encode_w and the twiddle tables for the fold. */
static size_t weight_tmp_floats(const demix_cuda *g)
{
    size_t mx = ((size_t)g->D + 2 * g->NB) * demix__ld(g->CW);
    size_t v[] = {(size_t)g->D * demix__ld(g->NB),
                  (size_t)g->T * g->S * demix__ld(g->D),
                  (size_t)g->T * g->NB * demix__ld(g->D),
                  (size_t)g->NB * demix__ld(g->CW)};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        mx = v[i] > mx ? v[i] : mx;
    for (int br = 0; br < DEMIX_BRANCH_COUNT; br++)
        for (int l = 0; l < g->L; l++) {
            const demix_cuda_layer *ly = &g->layer[br][l];
            size_t n = 4 * (size_t)ly->hid * demix__ld(ly->in + ly->hid);
            mx = n > mx ? n : mx;
        }
    return mx + 64 + (size_t)g->D * g->S + 64 + 4 * (size_t)g->W;
}

/* --------------------------------------------------------- buckets */

static void make_buckets(demix_cuda *g)
{
    const int R = g->rows;
    int n = 0, v = 1;
    while (v < R && v <= 128) {
        g->bucket[n++].rows = v;
        v *= 2;
    }
    if (v > 128) {
        for (int p = 128; n < DEMIX_CUDA_MAX_BUCKETS - 1; p *= 2) {
            int q;
            for (q = 5; q <= 8; q++) {
                v = p * q / 4;
                if (v >= R)
                    break;
                g->bucket[n++].rows = v;
            }
            if (q <= 8)
                break;
        }
    }
    g->bucket[n++].rows = R;
    g->nbuckets = n;
    for (int m = 0, b = 0; m <= R; m++) {
        while (g->bucket[b].rows < m)
            b++;
        g->bucket_of[m] = (uint8_t)b;
    }
}

static bool make_plans(demix_cuda *g)
{
    demix_cuda_err *e = &g->err;
    size_t ws_r2c = 1, ws_c2r = 1;
    int n[1] = {g->W};
    cudaStream_t fs = g->small ? g->stream : g->side;
    for (int i = 0; i < g->nbuckets; i++) {
        demix_cuda_bucket *b = &g->bucket[i];
        size_t ws = 0;
        if (!CK(e, cufftCreate(&b->r2c)))
            return false;
        b->have_r2c = 1;
        if (!CK(e, cufftSetAutoAllocation(b->r2c, 0)) ||
            !CK(e, cufftMakePlanMany(b->r2c, 1, n, NULL, 1, g->W, NULL, 1,
                                     g->F, CUFFT_R2C, b->rows * g->C, &ws)) ||
            !CK(e, cufftSetStream(b->r2c, fs)))
            return false;
        ws_r2c = ws > ws_r2c ? ws : ws_r2c;
        if (!CK(e, cufftCreate(&b->c2r)))
            return false;
        b->have_c2r = 1;
        if (!CK(e, cufftSetAutoAllocation(b->c2r, 0)) ||
            !CK(e, cufftMakePlanMany(b->c2r, 1, n, NULL, 1, g->F, NULL, 1,
                                     g->W, CUFFT_C2R,
                                     b->rows * g->T * g->C, &ws)) ||
            !CK(e, cufftSetStream(b->c2r, fs)))
            return false;
        ws_c2r = ws > ws_c2r ? ws : ws_c2r;
    }
    if (!CK(e, cudaMalloc(&g->fft_ws_r2c, ws_r2c)) ||
        !CK(e, cudaMalloc(&g->fft_ws_c2r, ws_c2r)))
        return false;
    g->device_bytes += ws_r2c + ws_c2r;
    for (int i = 0; i < g->nbuckets; i++)
        if (!CK(e, cufftSetWorkArea(g->bucket[i].r2c, g->fft_ws_r2c)) ||
            !CK(e, cufftSetWorkArea(g->bucket[i].c2r, g->fft_ws_c2r)))
            return false;
    return true;
}

/* The frame of bucket b recorded on input `in` ([pad16(rows) slot ids]
 * [rows][C][H]) and output `out` ([rows][T][C][H]): the landing zones of
 * the pipelined path, or d_inbuf/d_out. */
static bool record_frame_on(demix_cuda *g, demix_cuda_bucket *b, char *in,
                            float *out)
{
    char *keep_in = g->d_inbuf;
    float *keep_out = g->d_out;
    g->d_inbuf = in;
    g->d_out = out;
    bool ok = demix__cuda_record_frame(g, b);
    g->d_inbuf = keep_in;
    g->d_out = keep_out;
    return ok;
}

/* Upload all-scratch slot ids and zero input for a bucket (warm-up). */
static bool stage_scratch(demix_cuda *g, int rows)
{
    int *ids = (int *)g->h_stage_in;
    for (int i = 0; i < rows; i++)
        ids[i] = g->max_slots;
    size_t sb = demix__slot_bytes(rows);
    size_t in_bytes = (size_t)rows * g->C * g->H * sizeof(float);
    memset(g->h_stage_in + sb, 0, in_bytes);
    return CK(&g->err, cudaMemcpyAsync(g->d_inbuf, g->h_stage_in,
                                       sb + in_bytes, cudaMemcpyHostToDevice,
                                       g->stream));
}

/* Capture bucket b's frame on `in` and `out`; with io, between the copies
 * of a whole bucket from h_stage_in and to h_stage_out. */
static bool capture(demix_cuda *g, demix_cuda_bucket *b, char *in,
                    float *out, bool io, cudaGraph_t *graph,
                    cudaGraphExec_t *exec)
{
    demix_cuda_err *e = &g->err;
    const size_t in_bytes = demix__slot_bytes(b->rows) +
                            (size_t)b->rows * g->C * g->H * sizeof(float);
    const size_t out_bytes =
        (size_t)b->rows * g->T * g->C * g->H * sizeof(float);
    if (!CK(e, cudaStreamBeginCapture(g->stream,
                                      cudaStreamCaptureModeThreadLocal)))
        return false;
    bool ok = (!io || CK(e, cudaMemcpyAsync(in, g->h_stage_in, in_bytes,
                                            cudaMemcpyHostToDevice,
                                            g->stream))) &&
              record_frame_on(g, b, in, out) &&
              (!io || CK(e, cudaMemcpyAsync(g->h_stage_out, out, out_bytes,
                                            cudaMemcpyDeviceToHost,
                                            g->stream)));
    cudaError_t rc = cudaStreamEndCapture(g->stream, graph);
    return ok && CK(e, rc) && CK(e, cudaGraphInstantiate(exec, *graph, 0)) &&
           CK(e, cudaGraphUpload(*exec, g->stream));
}

/* Run each bucket once directly (library set-up happens outside any
 * capture, and only the scratch slot is touched), then capture it: a
 * graph per landing zone (every step's path, chunk_io), and for small
 * buckets one more with the staging copies inside (step_in_graph). */
static bool make_graphs(demix_cuda *g)
{
    demix_cuda_err *e = &g->err;
    for (int i = 0; i < g->nbuckets; i++) {
        demix_cuda_bucket *b = &g->bucket[i];
        if (!stage_scratch(g, b->rows) || !demix__cuda_record_frame(g, b) ||
            !CK(e, cudaStreamSynchronize(g->stream)))
            return false;
        if (!g->use_graphs)
            continue;
        for (int p = 0; p < 2; p++)
            if (!capture(g, b, g->d_pin[p], g->d_pout[p], false,
                         &b->graph_p[p], &b->exec_p[p]))
                return false;
        if (b->rows <= DEMIX_CUDA_IO_GRAPH_ROWS &&
            !capture(g, b, g->d_inbuf, g->d_out, true, &b->graph_io,
                     &b->exec_io))
            return false;
    }
    return CK(e, cudaStreamSynchronize(g->stream));
}

/* ----------------------------------------------------------- create */

static void cuda_destroy(void *ctx);

static void set_kinds(demix_cuda *g)
{
    int all = DEMIX_CUDA_F32, lstm = DEMIX_CUDA_F32;
    if (g->precision == DEMIX_PRECISION_FAST) {
        switch (g->policy) {
        case DEMIX_CUDA_POLICY_BF16_LSTM:
            all = DEMIX_CUDA_TF32;
            lstm = DEMIX_CUDA_BF16;
            break;
        case DEMIX_CUDA_POLICY_TF32:
            all = lstm = DEMIX_CUDA_TF32;
            break;
        default:
            all = lstm = DEMIX_CUDA_BF16;
            break;
        }
    }
    for (int i = 0; i < DEMIX_CUDA_G_COUNT; i++)
        g->kind[i] = all;
    g->kind[DEMIX_CUDA_G_LSTM] = lstm;
}

/* Sizes from the model and the options, and the state layout: past | h,
 * c of every layer | the overlap tail. */
static void set_sizes(demix_cuda *g, const demix_model *m,
                      const demix_engine_options *opt)
{
    const demix_model_config *cfg = &m->config;
    g->D = cfg->dim;
    g->NB = cfg->num_basis;
    g->S = cfg->spec_features;
    g->W = cfg->window_samples;
    g->H = cfg->hop_samples;
    g->F = cfg->bins;
    g->C = cfg->channels;
    g->T = cfg->num_sources;
    g->L = cfg->lstm_layers;
    g->DF = cfg->fusion_dim;
    g->small = cfg->small;
    g->CW = g->C * g->W;
    g->max_slots = opt->max_slots;
    g->rows = opt->max_slots < DEMIX_CUDA_CHUNK_ROWS ? opt->max_slots
                                                     : DEMIX_CUDA_CHUNK_ROWS;
    g->precision = opt->precision == DEMIX_PRECISION_FP32
                       ? DEMIX_PRECISION_FP32
                       : DEMIX_PRECISION_FAST;
    g->policy = fast_policy;
    g->use_graphs = use_graphs;
    g->pool = opt->pool;
    set_kinds(g);

    int off = g->C * g->H;
    g->off_past = 0;
    for (int br = 0; br < DEMIX_BRANCH_COUNT; br++) {
        int in0 = m->lstm[br].input_size, hid = m->lstm[br].hidden_size;
        for (int l = 0; l < g->L; l++) {
            demix_cuda_layer *ly = &g->layer[br][l];
            ly->in = l == 0 ? in0 : hid;
            ly->hid = hid;
            ly->off_h = off;
            off += hid;
            ly->off_c = off;
            off += hid;
        }
    }
    g->off_tail = off;
    off += g->T * g->C * g->H;
    g->P = (off + 63) & ~63;
}

/* What create allocates on the device, by part. */
typedef struct setup_bytes {
    size_t weights, activations, weight_tmp, slot;
    size_t device_total; /* the device's memory (cudaMemGetInfo) */
} setup_bytes;

/* Whether weights, activations, workspaces and the slots' state fit in
 * the device's free memory; DEMIX_ENOMEM, with the number of slots that
 * would fit in last_error, when they do not. */
static int check_fit(demix_cuda *g, const cudaDeviceProp *prop,
                     setup_bytes *sz)
{
    carver wc = {NULL, 0};
    layout_weights(g, &wc);
    sz->weights = wc.off + 256;
    sz->activations = activation_bytes(g, (size_t)g->rows);
    sz->weight_tmp = weight_tmp_floats(g) * sizeof(float);
    sz->slot = (size_t)g->P * sizeof(float);
    size_t fft_est = (size_t)g->rows * g->C * g->W * sizeof(float) * (1 + g->T);
    size_t fixed = sz->weights + sz->activations +
                   2 * DEMIX_CUDA_CUBLAS_WS_BYTES + fft_est;
    if (sz->weight_tmp > sz->activations + fft_est)
        fixed += sz->weight_tmp - sz->activations - fft_est;
    const size_t margin = (size_t)512 << 20;
    size_t free_b = 0, total_b = 0;
    if (!CK(&g->err, cudaMemGetInfo(&free_b, &total_b)))
        return setup_failed(g);
    sz->device_total = total_b;
    size_t need = fixed + margin + ((size_t)g->max_slots + 1) * sz->slot;
    if (need <= free_b)
        return DEMIX_OK;
    size_t fixed_full = sz->weights + 2 * DEMIX_CUDA_CUBLAS_WS_BYTES +
                        activation_bytes(g, DEMIX_CUDA_CHUNK_ROWS) +
                        (size_t)DEMIX_CUDA_CHUNK_ROWS * g->C * g->W *
                            sizeof(float) * (1 + g->T);
    long long fit = 0;
    if (free_b > fixed_full + margin)
        fit = (long long)((free_b - fixed_full - margin) / sz->slot) - 1;
    if (g->max_slots < DEMIX_CUDA_CHUNK_ROWS && free_b > fixed + margin) {
        long long f2 = (long long)((free_b - fixed - margin) / sz->slot) - 1;
        fit = f2 < g->max_slots ? f2 : fit;
    }
    if (fit < 0)
        fit = 0;
    set_msg(g->last_error, sizeof g->last_error,
            "%d slots do not fit on %s: %.2f GiB of device memory is "
            "free, weights and activations take %.2f GiB and each slot "
            "%.1f KiB of state; at most %lld slots fit",
            g->max_slots, prop->name, free_b / 1073741824.0,
            (fixed + margin) / 1073741824.0, sz->slot / 1024.0, fit);
    return DEMIX_ENOMEM;
}

/* Streams (compute: main and side; copies: h2d and d2h), their events,
 * and a cuBLAS handle with its workspace per compute stream. */
static_assert(DEMIX_ENGINE_MAX_IN_FLIGHT == 2, "ev_done's events below");
static bool make_streams(demix_cuda *g)
{
    demix_cuda_err *e = &g->err;
    cudaStream_t *streams[] = {&g->stream, &g->side, &g->h2d, &g->d2h};
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++)
        if (!CK(e, cudaStreamCreateWithFlags(streams[i],
                                             cudaStreamNonBlocking)))
            return false;
    for (int i = 0; i < 8; i++) {
        if (!CK(e, cudaEventCreateWithFlags(&g->ev[i],
                                            cudaEventDisableTiming)))
            return false;
        g->have_ev = i + 1;
    }
    cudaEvent_t *evs[] = {&g->ev_h2d[0],      &g->ev_h2d[1],
                          &g->ev_comp[0],     &g->ev_comp[1],
                          &g->ev_out_free[0], &g->ev_out_free[1],
                          &g->ev_done[0],     &g->ev_done[1],
                          &g->ev_step};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (!CK(e, cudaEventCreateWithFlags(evs[i], cudaEventDisableTiming)))
            return false;
    if (!CK(e, cublasCreate(&g->h0)) || !CK(e, cublasCreate(&g->h1)) ||
        !CK(e, cudaMalloc(&g->ws0, DEMIX_CUDA_CUBLAS_WS_BYTES)) ||
        !CK(e, cudaMalloc(&g->ws1, DEMIX_CUDA_CUBLAS_WS_BYTES)) ||
        !CK(e, cublasSetStream(g->h0, g->stream)) ||
        !CK(e, cublasSetStream(g->h1, g->side)) ||
        !CK(e, cublasSetWorkspace(g->h0, g->ws0, DEMIX_CUDA_CUBLAS_WS_BYTES)) ||
        !CK(e, cublasSetWorkspace(g->h1, g->ws1, DEMIX_CUDA_CUBLAS_WS_BYTES)))
        return false;
    g->device_bytes += 2 * DEMIX_CUDA_CUBLAS_WS_BYTES;
    return true;
}

/* The weights, in their groups' formats, through a create-time scratch
 * buffer (freed before returning). */
static bool load_weights(demix_cuda *g, const demix_model *m,
                         const setup_bytes *sz)
{
    demix_cuda_err *e = &g->err;
    if (!CK(e, cudaMalloc(&g->wblock, sz->weights)))
        return false;
    g->device_bytes += sz->weights;
    carver wc = {(char *)g->wblock, 0};
    layout_weights(g, &wc);
    float *tmp = NULL;
    bool ok = CK(e, cudaMemsetAsync(g->wblock, 0, sz->weights, g->stream)) &&
              CK(e, cudaMalloc(&tmp, sz->weight_tmp)) &&
              upload_weights(g, m, tmp);
    if (tmp)
        cudaFree(tmp);
    return ok;
}

/* The slots' state and the activations (zeroed), the pinned staging of
 * synchronous steps, and the pinned slot-id room: halves 0 and 1 for the
 * two pipelined steps in flight, 2 for a synchronous step. */
static bool alloc_buffers(demix_cuda *g, const setup_bytes *sz)
{
    demix_cuda_err *e = &g->err;
    size_t state_bytes = ((size_t)g->max_slots + 1) * sz->slot;
    if (!CK(e, cudaMalloc(&g->state, state_bytes)) ||
        !CK(e, cudaMemsetAsync(g->state, 0, state_bytes, g->stream)))
        return false;
    g->device_bytes += state_bytes;
    if (!CK(e, cudaMalloc(&g->ablock, sz->activations)) ||
        !CK(e, cudaMemsetAsync(g->ablock, 0, sz->activations, g->stream)))
        return false;
    g->device_bytes += sz->activations;
    carver ac = {(char *)g->ablock, 0};
    layout_activations(g, &ac, (size_t)g->rows);

    /* staging: stage_rows rows of input (or, for an in-graph step, a
     * bucket's slot ids and input) and of output */
    int chunks = (g->max_slots + g->rows - 1) / g->rows;
    int max_chunks = DEMIX_CUDA_STAGE_ROWS / g->rows;
    if (max_chunks < 1)
        max_chunks = 1;
    if (chunks > max_chunks)
        chunks = max_chunks;
    g->stage_rows = chunks * g->rows;
    size_t chunk_in_bytes = demix__slot_bytes(g->rows) +
                            (size_t)g->rows * g->C * g->H * sizeof(float);
    chunk_in_bytes = (chunk_in_bytes + 255) & ~(size_t)255;
    size_t chunks_all = ((size_t)g->max_slots + g->rows - 1) / g->rows;
    g->ids_cap = chunks_all * (size_t)demix__pad16(g->rows);
    return CK(e, cudaMallocHost(&g->h_stage_in, chunks * chunk_in_bytes)) &&
           CK(e, cudaMallocHost(&g->h_stage_out,
                                (size_t)g->stage_rows * g->T * g->C * g->H *
                                    sizeof(float))) &&
           CK(e, cudaMallocHost(&g->h_ids, 3 * g->ids_cap * sizeof(int)));
}

/* The batch buckets and their row-count index, cuFFT plans, graphs. */
static bool make_steps(demix_cuda *g)
{
    g->bucket_of = (uint8_t *)malloc((size_t)g->rows + 1);
    if (!g->bucket_of)
        return record_failure(&g->err, 1, "ENOMEM", "host memory", "malloc",
                              __FILE__, __LINE__);
    make_buckets(g);
    return make_plans(g) && make_graphs(g);
}

static void describe(demix_cuda *g, const cudaDeviceProp *prop,
                     const setup_bytes *sz)
{
    const char *prec =
        g->precision == DEMIX_PRECISION_FP32
            ? "fp32 (float32 products, no TF32)"
            : g->policy == DEMIX_CUDA_POLICY_BF16
                  ? "fast (bf16 products, f32 accumulation and state)"
                  : g->policy == DEMIX_CUDA_POLICY_BF16_LSTM
                        ? "fast (bf16 LSTM products, TF32 others, f32 state)"
                        : "fast (TF32 products, f32 state)";
    set_msg(g->describe, sizeof g->describe,
            "cuda: %s (sm_%d%d, %.1f GiB), %s, %d slots, %d batch buckets "
            "up to %d rows%s, %.2f GiB on the device",
            prop->name, prop->major, prop->minor,
            sz->device_total / 1073741824.0, prec, g->max_slots,
            g->nbuckets, g->rows,
            g->use_graphs ? " as CUDA graphs" : " (graphs off)",
            g->device_bytes / 1073741824.0);
}

/* Everything create makes, in order; on failure the caller destroys the
 * part made (cuda_destroy takes any partial context). */
static int setup(demix_cuda *g, const demix_model *m,
                 const demix_engine_options *opt)
{
    demix_cuda_err *e = &g->err;
    cudaDeviceProp prop;
    if (!CK(e, cudaSetDevice(g->device)) || !CK(e, cudaFree(0)) ||
        !CK(e, cudaGetDeviceProperties(&prop, g->device)))
        return setup_failed(g);
    set_sizes(g, m, opt);
    setup_bytes sz;
    int rc = check_fit(g, &prop, &sz);
    if (rc)
        return rc;
    if (!make_streams(g) || !load_weights(g, m, &sz) ||
        !alloc_buffers(g, &sz) || !make_steps(g))
        return setup_failed(g);
    describe(g, &prop, &sz);
    return DEMIX_OK;
}

/* Why no device opened, in words a user can act on. A machine without a
 * GPU has no NVIDIA driver, and cudaGetDeviceCount then says error 35,
 * "CUDA driver version is insufficient for CUDA runtime version", which
 * reads like an outdated driver; cudaDriverGetVersion gives 0 when no
 * driver is loaded at all, which tells the two apart. Messages of a
 * machine without a GPU start with "no GPU" (engine.c turns that into
 * "no GPU, using the CPU"). */
static void no_device_message(cudaError_t rc, char *err, size_t err_cap)
{
    int driver = 0, runtime = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess)
        driver = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaGetLastError();
    if (driver == 0)
        set_msg(err, err_cap, "no GPU (no NVIDIA driver is loaded)");
    else if (rc == cudaSuccess || rc == cudaErrorNoDevice)
        set_msg(err, err_cap, "no GPU (the NVIDIA driver finds no device)");
    else if (rc == cudaErrorInsufficientDriver)
        set_msg(err, err_cap,
                "the NVIDIA driver supports CUDA %d.%d, this build needs "
                "%d.%d: update the driver",
                driver / 1000, driver % 1000 / 10, runtime / 1000,
                runtime % 1000 / 10);
    else
        set_msg(err, err_cap, "no CUDA device opens (cudaGetDeviceCount: %s)",
                cudaGetErrorString(rc));
}

static int cuda_create(const demix_model *model,
                       const demix_engine_options *opt, void **out, char *err,
                       size_t err_cap)
{
    *out = NULL;
    int ndev = 0;
    cudaError_t rc = cudaGetDeviceCount(&ndev);
    if (rc != cudaSuccess || ndev < 1) {
        (void)cudaGetLastError();
        no_device_message(rc, err, err_cap);
        return DEMIX_EDEVICE;
    }
    if (opt->device < 0 || opt->device >= ndev) {
        set_msg(err, err_cap, "CUDA device %d asked for, but %d present",
                opt->device, ndev);
        return DEMIX_EDEVICE;
    }
    demix_cuda *g = (demix_cuda *)calloc(1, sizeof *g);
    if (!g) {
        set_msg(err, err_cap, "out of host memory");
        return DEMIX_ENOMEM;
    }
    g->model = model;
    g->device = opt->device;
    int rc2 = setup(g, model, opt);
    if (rc2) {
        set_msg(err, err_cap, "%s", g->last_error);
        cuda_destroy(g);
        return rc2;
    }
    *out = g;
    return DEMIX_OK;
}

static void cuda_destroy(void *ctx)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (!g)
        return;
    cudaSetDevice(g->device);
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    if (g->side)
        cudaStreamSynchronize(g->side);
    if (g->h2d)
        cudaStreamSynchronize(g->h2d);
    if (g->d2h)
        cudaStreamSynchronize(g->d2h);
    cudaEvent_t pev[] = {g->ev_h2d[0],      g->ev_h2d[1],  g->ev_comp[0],
                         g->ev_comp[1],     g->ev_out_free[0],
                         g->ev_out_free[1], g->ev_done[0], g->ev_done[1],
                         g->ev_step};
    for (size_t i = 0; i < sizeof pev / sizeof pev[0]; i++)
        if (pev[i])
            cudaEventDestroy(pev[i]);
    if (g->h_ids)
        cudaFreeHost(g->h_ids);
    if (g->h2d)
        cudaStreamDestroy(g->h2d);
    if (g->d2h)
        cudaStreamDestroy(g->d2h);
    for (int i = 0; i < g->nbuckets; i++) {
        demix_cuda_bucket *b = &g->bucket[i];
        if (b->exec_io)
            cudaGraphExecDestroy(b->exec_io);
        for (int p = 0; p < 2; p++) {
            if (b->exec_p[p])
                cudaGraphExecDestroy(b->exec_p[p]);
            if (b->graph_p[p])
                cudaGraphDestroy(b->graph_p[p]);
        }
        if (b->graph_io)
            cudaGraphDestroy(b->graph_io);
        if (b->have_r2c)
            cufftDestroy(b->r2c);
        if (b->have_c2r)
            cufftDestroy(b->c2r);
    }
    if (g->h0)
        cublasDestroy(g->h0);
    if (g->h1)
        cublasDestroy(g->h1);
    void *dev[] = {g->ws0, g->ws1, g->wblock, g->state, g->ablock,
                   g->fft_ws_r2c, g->fft_ws_c2r};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i])
            cudaFree(dev[i]);
    if (g->h_stage_in)
        cudaFreeHost(g->h_stage_in);
    if (g->h_stage_out)
        cudaFreeHost(g->h_stage_out);
    for (int i = 0; i < g->have_ev; i++)
        cudaEventDestroy(g->ev[i]);
    if (g->stream)
        cudaStreamDestroy(g->stream);
    if (g->side)
        cudaStreamDestroy(g->side);
    (void)cudaGetLastError();
    free(g->bucket_of);
    free(g);
}

/* ------------------------------------------------------------- step */

static const char *cuda_describe(void *ctx)
{
    return ((demix_cuda *)ctx)->describe;
}

static const char *cuda_last_error(void *ctx)
{
    return ((demix_cuda *)ctx)->last_error;
}

static int refuse(demix_cuda *g)
{
    set_msg(g->last_error, sizeof g->last_error,
            "the CUDA device failed earlier, so this engine runs no more "
            "steps (close its sessions and create a new engine): %s",
            g->err.text);
    return DEMIX_EDEVICE;
}

static int step_failed(demix_cuda *g)
{
    set_msg(g->last_error, sizeof g->last_error, "CUDA step failed: %s",
            g->err.text);
    return DEMIX_EDEVICE;
}

static int cuda_reset_slot(void *ctx, int slot)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (g->err.failed)
        return refuse(g);
    if (!CK(&g->err, cudaMemsetAsync(g->state + (size_t)slot * g->P, 0,
                                     (size_t)g->P * sizeof(float), g->stream)))
        return step_failed(g);
    return DEMIX_OK;
}

/* Copies between the caller's pageable buffers and the pinned staging
 * buffers: split over the driver's thread pool when it gave one (a single
 * core copies about 10 GB/s: 2 ms for the 20 MB of a 1024-stream step). */
typedef struct copy_job {
    char *dst;
    const char *src;
    size_t bytes, chunk;
} copy_job;

static void copy_task(void *arg, int i)
{
    const copy_job *j = (const copy_job *)arg;
    size_t off = (size_t)i * j->chunk;
    size_t n = j->bytes - off < j->chunk ? j->bytes - off : j->chunk;
    memcpy(j->dst + off, j->src + off, n);
}

static void host_copy(demix_cuda *g, void *dst, const void *src, size_t bytes)
{
    const size_t min_split = (size_t)512 << 10;
    if (!g->pool || bytes < min_split) {
        memcpy(dst, src, bytes);
        return;
    }
    size_t parts = 2 * (size_t)demix_threadpool_threads(g->pool);
    size_t chunk = (bytes + parts - 1) / parts;
    chunk = (chunk + 4095) & ~(size_t)4095;
    if (chunk < ((size_t)128 << 10))
        chunk = (size_t)128 << 10;
    copy_job j = {(char *)dst, (const char *)src, bytes, chunk};
    int tasks = (int)((bytes + chunk - 1) / chunk);
    if (demix_threadpool_run(g->pool, tasks, copy_task, &j) != DEMIX_OK)
        memcpy(dst, src, bytes);
}

/* Host memory the device can copy from directly (page-locked). */
static bool pinned(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeHost;
}

/* One step's host side as enqueue_step reads it. in and out are
 * page-locked, or staged: then chunk c's input is copied into h_stage_in
 * first (overlapping the device work of the chunks before it) and its
 * output lands in h_stage_out, for the caller to copy out after the wait;
 * a staged step has at most stage_rows rows. */
typedef struct step_io {
    const int *slots;
    const float *in;
    void *out;
    const demix_row_shape *shapes; /* NULL: every source in float32 */
    size_t total_bytes;            /* with shapes: the packed output's size */
    int *ids;                      /* pinned room for the chunks' slot ids */
    bool stage_in, stage_out;
} step_io;

/* Enqueue a step of n rows on three streams, per chunk of at most R rows,
 * with landing zone p alternating between chunks (chunk_seq):
 *   h2d:     slot ids and input -> landing zone p, once the graph that
 *            last read it is done (ev_comp[p])              -> ev_h2d[p]
 *   compute: the bucket's graph captured on zone p (its input and output
 *            there), once the upload is in and the zone's last output
 *            has left (ev_out_free[p]); with shapes, the packing of its
 *            rows (pack.cu)                                 -> ev_comp[p]
 *   d2h:     output zone p (or its packed bytes) -> out     -> ev_out_free[p]
 * so chunk c's copies overlap the compute of chunks c - 1 and c + 1, and
 * no device-to-device copy is needed. With shapes, the row shapes go up
 * with the chunk's input and the download of a chunk is its rows' bytes,
 * from shapes[off].offset on. Returns without waiting; the step is done
 * when d2h has passed the last download. */
static bool enqueue_step(demix_cuda *g, int n, const step_io *io)
{
    demix_cuda_err *e = &g->err;
    const size_t in_row = (size_t)g->C * g->H;
    const size_t out_row = (size_t)g->T * g->C * g->H;
    const demix_row_shape *shapes = io->shapes;
    size_t id_off = 0;
    for (int off = 0; off < n;) {
        const int m = n - off < g->rows ? n - off : g->rows;
        demix_cuda_bucket *b = &g->bucket[g->bucket_of[m]];
        const int p = (int)(g->chunk_seq++ % 2);
        const size_t sb = demix__slot_bytes(b->rows);
        int *cid = io->ids + id_off;
        id_off += (size_t)demix__pad16(b->rows);
        for (int i = 0; i < m; i++)
            cid[i] = io->slots[off + i];
        for (int i = m; i < b->rows; i++)
            cid[i] = g->max_slots; /* padding: the scratch slot */
        const size_t in_bytes = (size_t)m * in_row * sizeof(float);
        const float *src = io->in + (size_t)off * in_row;
        if (io->stage_in) {
            float *staged = (float *)g->h_stage_in + (size_t)off * in_row;
            host_copy(g, staged, src, in_bytes);
            src = staged;
        }
        size_t out_bytes = (size_t)m * out_row * sizeof(float);
        size_t out_at = (size_t)off * out_row * sizeof(float);
        if (shapes) {
            out_at = (size_t)shapes[off].offset;
            out_bytes = (off + m < n ? (size_t)shapes[off + m].offset
                                     : io->total_bytes) -
                        out_at;
        }
        unsigned char *dst = io->stage_out ? (unsigned char *)g->h_stage_out
                                           : (unsigned char *)io->out;
        bool ok =
            CK(e, cudaStreamWaitEvent(g->h2d, g->ev_comp[p], 0)) &&
            CK(e, cudaMemcpyAsync(g->d_pin[p], cid, sb,
                                  cudaMemcpyHostToDevice, g->h2d)) &&
            CK(e, cudaMemcpyAsync(g->d_pin[p] + sb, src, in_bytes,
                                  cudaMemcpyHostToDevice, g->h2d)) &&
            (!shapes ||
             CK(e, cudaMemcpyAsync(g->d_shapes[p], shapes + off,
                                   (size_t)m * sizeof *shapes,
                                   cudaMemcpyHostToDevice, g->h2d))) &&
            CK(e, cudaEventRecord(g->ev_h2d[p], g->h2d)) &&
            CK(e, cudaStreamWaitEvent(g->stream, g->ev_h2d[p], 0)) &&
            CK(e, cudaStreamWaitEvent(g->stream, g->ev_out_free[p], 0)) &&
            (g->use_graphs
                 ? CK(e, cudaGraphLaunch(b->exec_p[p], g->stream))
                 : record_frame_on(g, b, g->d_pin[p], g->d_pout[p])) &&
            (!shapes ||
             demix__launch_pack_rows(e, g->stream, m, g->d_pout[p], g->T,
                                     g->C * g->H, g->d_shapes[p],
                                     shapes[off].offset, g->d_pack[p]));
        const void *result = shapes ? (const void *)g->d_pack[p]
                                    : (const void *)g->d_pout[p];
        ok = ok && CK(e, cudaEventRecord(g->ev_comp[p], g->stream)) &&
             CK(e, cudaStreamWaitEvent(g->d2h, g->ev_comp[p], 0)) &&
             CK(e, cudaMemcpyAsync(dst + out_at, result, out_bytes,
                                   cudaMemcpyDeviceToHost, g->d2h)) &&
             CK(e, cudaEventRecord(g->ev_out_free[p], g->d2h));
        if (!ok)
            return false;
        g->last_rows = m;
        off += m;
    }
    return true;
}

/* A small synchronous step as one launch: bucket b's graph with the
 * staging copies inside (exec_io), then one synchronisation. Worth it
 * unless the caller's buffers are pinned and the host copies to staging
 * would cost more than the launches saved (above ~2 rows); measured
 * 0.133 -> 0.123 ms at 1 row (gpu/NOTES.md, round 1, item 3). */
static bool step_in_graph(demix_cuda *g, demix_cuda_bucket *b, int n,
                          const int *slots, const float *in, float *out)
{
    const size_t in_row = (size_t)g->C * g->H;
    const size_t out_row = (size_t)g->T * g->C * g->H;
    int *ids = (int *)g->h_stage_in;
    for (int i = 0; i < n; i++)
        ids[i] = slots[i];
    for (int i = n; i < b->rows; i++)
        ids[i] = g->max_slots;
    host_copy(g, g->h_stage_in + demix__slot_bytes(b->rows), in,
              (size_t)n * in_row * sizeof(float));
    if (!CK(&g->err, cudaGraphLaunch(b->exec_io, g->stream)) ||
        !CK(&g->err, cudaStreamSynchronize(g->stream)))
        return false;
    host_copy(g, out, g->h_stage_out, (size_t)n * out_row * sizeof(float));
    g->last_rows = n;
    return true;
}

/* The synchronous step: the pipelined path (enqueue_step) and a wait for
 * it, in groups of stage_rows rows when a caller's buffer is pageable
 * (staged through the pinned buffers); small steps as one launch. It runs
 * after any pipelined steps in flight (same streams, in order) and uses
 * none of their slot-id or event rings. */
static int cuda_step(void *ctx, int n, const int *slots, const float *in,
                     float *out)
{
    demix_cuda *g = (demix_cuda *)ctx;
    demix_cuda_err *e = &g->err;
    if (g->err.failed)
        return refuse(g);
    if (!CK(e, cudaSetDevice(g->device)))
        return step_failed(g);
    const size_t in_row = (size_t)g->C * g->H;
    const size_t out_row = (size_t)g->T * g->C * g->H;
    const bool in_direct = pinned(in), out_direct = pinned(out);

    if (g->use_graphs && n <= g->rows && g->bucket[g->bucket_of[n]].exec_io &&
        (n <= 2 || !in_direct || !out_direct))
        return step_in_graph(g, &g->bucket[g->bucket_of[n]], n, slots, in, out)
                   ? DEMIX_OK
                   : step_failed(g);

    const int group_max = in_direct && out_direct ? n : g->stage_rows;
    for (int done = 0; done < n;) {
        const int group = n - done < group_max ? n - done : group_max;
        step_io io = {slots + done, in + (size_t)done * in_row,
                      out + (size_t)done * out_row, NULL, 0,
                      g->h_ids + 2 * g->ids_cap, !in_direct, !out_direct};
        if (!enqueue_step(g, group, &io) ||
            !CK(e, cudaEventRecord(g->ev_step, g->d2h)) ||
            !CK(e, cudaEventSynchronize(g->ev_step)))
            return step_failed(g);
        if (!out_direct)
            host_copy(g, out + (size_t)done * out_row, g->h_stage_out,
                      (size_t)group * out_row * sizeof(float));
        done += group;
    }
    return DEMIX_OK;
}

/* ---------------------------------------------------- pipelined steps */

static void *cuda_host_alloc(void *ctx, size_t bytes)
{
    demix_cuda *g = (demix_cuda *)ctx;
    void *p = NULL;
    if (cudaSetDevice(g->device) != cudaSuccess ||
        cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError(); /* not a device failure: no pinned memory */
        return NULL;
    }
    return p;
}

static void cuda_host_free(void *ctx, void *p)
{
    (void)ctx;
    if (p)
        cudaFreeHost(p);
}

/* Start a pipelined step (enqueue_step) and return; in and out are
 * page-locked (the engine's ring, from cuda_host_alloc). Its slot ids go
 * to half sub_seq % 2 of h_ids, and ev_done[sub_seq % MAX_IN_FLIGHT]
 * marks its end for cuda_wait. */
static int submit_step(demix_cuda *g, int n, const int *slots,
                       const float *in, void *out,
                       const demix_row_shape *shapes, size_t total_bytes)
{
    if (g->err.failed)
        return refuse(g);
    if (!CK(&g->err, cudaSetDevice(g->device)))
        return step_failed(g);
    step_io io = {slots, in, out, shapes, total_bytes,
                  g->h_ids + (size_t)(g->sub_seq % 2) * g->ids_cap, false,
                  false};
    if (!enqueue_step(g, n, &io) ||
        !CK(&g->err,
            cudaEventRecord(g->ev_done[g->sub_seq % DEMIX_ENGINE_MAX_IN_FLIGHT],
                            g->d2h)))
        return step_failed(g);
    g->sub_seq++;
    return DEMIX_OK;
}

static int cuda_submit(void *ctx, int n, const int *slots, const float *in,
                       float *out)
{
    return submit_step((demix_cuda *)ctx, n, slots, in, out, NULL, 0);
}

static int cuda_submit_shaped(void *ctx, int n, const int *slots,
                              const float *in, void *out,
                              const demix_row_shape *shapes,
                              size_t total_bytes)
{
    return submit_step((demix_cuda *)ctx, n, slots, in, out, shapes,
                       total_bytes);
}

static int cuda_wait(void *ctx)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (g->wait_seq >= g->sub_seq) {
        set_msg(g->last_error, sizeof g->last_error, "no step in flight");
        return DEMIX_EARG;
    }
    cudaEvent_t ev = g->ev_done[g->wait_seq++ % DEMIX_ENGINE_MAX_IN_FLIGHT];
    if (g->err.failed)
        return refuse(g);
    if (!CK(&g->err, cudaEventSynchronize(ev)))
        return step_failed(g);
    return DEMIX_OK;
}

/* ------------------------------------------------------------ hooks */

extern "C" int demix__cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void demix__cuda_set_fast_policy(demix_cuda_policy policy)
{
    if ((int)policy >= 0 && policy < DEMIX_CUDA_POLICY_COUNT)
        fast_policy = policy;
}

extern "C" const char *demix__cuda_policy_name(demix_cuda_policy policy)
{
    switch (policy) {
    case DEMIX_CUDA_POLICY_BF16: return "bf16";
    case DEMIX_CUDA_POLICY_BF16_LSTM: return "bf16-lstm+tf32";
    case DEMIX_CUDA_POLICY_TF32: return "tf32";
    default: return "?";
    }
}

extern "C" void demix__cuda_set_graphs(int on)
{
    use_graphs = on ? 1 : 0;
}

extern "C" int demix__cuda_profile(void *ctx, int n, int iters, char *text,
                                   size_t cap)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (!g || n < 1 || n > g->rows || iters < 1 || !text || !cap)
        return DEMIX_EARG;
    if (g->err.failed)
        return DEMIX_EDEVICE;
    demix_cuda_err *e = &g->err;
    demix_cuda_bucket *b = &g->bucket[g->bucket_of[n]];
    cudaEvent_t start = NULL;
    int made = 0;
    bool ok = CK(e, cudaEventCreate(&start));
    for (; ok && made < DEMIX_CUDA_PROF_MARKS; made++)
        ok = CK(e, cudaEventCreate(&g->prof_ev[made]));
    /* one stream: the transforms move to it for the measurement */
    ok = ok && CK(e, cufftSetStream(b->r2c, g->stream)) &&
         CK(e, cufftSetStream(b->c2r, g->stream));
    double acc[DEMIX_CUDA_PROF_MARKS] = {0};
    int marks = 0;
    g->prof = 1;
    for (int it = 0; ok && it <= iters; it++) { /* the first one warms up */
        g->prof_n = 0;
        ok = CK(e, cudaEventRecord(start, g->stream)) &&
             demix__cuda_record_frame(g, b) &&
             CK(e, cudaStreamSynchronize(g->stream));
        for (int i = 0; ok && it > 0 && i < g->prof_n; i++) {
            float ms = 0;
            ok = CK(e, cudaEventElapsedTime(&ms, i ? g->prof_ev[i - 1] : start,
                                            g->prof_ev[i]));
            acc[i] += ms;
        }
        marks = g->prof_n;
    }
    g->prof = 0;
    cudaStream_t fs = g->small ? g->stream : g->side;
    ok = CK(e, cufftSetStream(b->r2c, fs)) && CK(e, cufftSetStream(b->c2r, fs)) &&
         ok;
    if (start)
        cudaEventDestroy(start);
    for (int i = 0; i < made; i++)
        cudaEventDestroy(g->prof_ev[i]);
    if (!ok)
        return step_failed(g);
    size_t used = 0;
    double total = 0;
    text[0] = '\0';
    for (int i = 0; i < marks; i++) {
        total += acc[i] / iters;
        int w = snprintf(text + used, cap - used, "%s=%.1f%s",
                         g->prof_label[i], 1e3 * acc[i] / iters,
                         i + 1 < marks ? ";" : "");
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
    }
    if (used + 32 < cap)
        snprintf(text + used, cap - used, ";total=%.1f", 1e3 * total);
    return DEMIX_OK;
}

extern "C" size_t demix__cuda_device_bytes(void *ctx)
{
    return ctx ? ((demix_cuda *)ctx)->device_bytes : 0;
}

extern "C" int demix__cuda_bucket_rows(void *ctx, int n)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (!g || n < 1 || n > g->rows)
        return DEMIX_EARG;
    return g->bucket[g->bucket_of[n]].rows;
}

extern "C" int demix__cuda_time_graph(void *ctx, int n, int iters,
                                      double *ms)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (!g || n < 1 || n > g->rows || iters < 1 || !ms || !g->use_graphs)
        return DEMIX_EARG;
    if (g->err.failed)
        return DEMIX_EDEVICE;
    demix_cuda_bucket *b = &g->bucket[g->bucket_of[n]];
    demix_cuda_err *e = &g->err;
    cudaEvent_t t0 = NULL, t1 = NULL;
    bool ok = CK(e, cudaEventCreate(&t0)) && CK(e, cudaEventCreate(&t1)) &&
              CK(e, cudaEventRecord(t0, g->stream));
    for (int i = 0; ok && i < iters; i++) /* zone 0's graph, as it stands */
        ok = CK(e, cudaGraphLaunch(b->exec_p[0], g->stream));
    float total = 0;
    ok = ok && CK(e, cudaEventRecord(t1, g->stream)) &&
         CK(e, cudaEventSynchronize(t1)) &&
         CK(e, cudaEventElapsedTime(&total, t0, t1));
    if (t0)
        cudaEventDestroy(t0);
    if (t1)
        cudaEventDestroy(t1);
    if (!ok)
        return step_failed(g);
    *ms = total / iters;
    return DEMIX_OK;
}

extern "C" int demix__cuda_read_stage(void *ctx, demix_cpu_stage stage,
                                      int row, float *dst, size_t cap)
{
    demix_cuda *g = (demix_cuda *)ctx;
    if (!g || !dst || row < 0 || row >= g->last_rows)
        return DEMIX_EARG;
    if (g->err.failed)
        return DEMIX_EDEVICE;
    const demix_model *m = g->model;
    const int T = g->T, C = g->C, W = g->W;
    const float *src = NULL;
    size_t n = 0, r = (size_t)row;
    switch (stage) {
    case DEMIX_CPU_STAGE_SPEC_FEAT: src = (const float *)g->X + r * g->S; n = g->S; break;
    case DEMIX_CPU_STAGE_SPEC: src = g->spec + r * g->ldD; n = g->D; break;
    case DEMIX_CPU_STAGE_BASIS: src = g->basis + r * g->ldNB; n = g->NB; break;
    case DEMIX_CPU_STAGE_WAVE: src = g->wave + r * g->ldD; n = g->D; break;
    case DEMIX_CPU_STAGE_S1: src = g->s1 + r * g->ldD; n = g->D; break;
    case DEMIX_CPU_STAGE_W1: src = g->w1 + r * g->ldD; n = g->D; break;
    case DEMIX_CPU_STAGE_FUSED: src = g->fused + r * g->ldDF; n = g->DF; break;
    case DEMIX_CPU_STAGE_S2: src = g->s2 + r * g->ldD; n = g->D; break;
    case DEMIX_CPU_STAGE_W2: src = g->w2 + r * g->ldD; n = g->D; break;
    case DEMIX_CPU_STAGE_SPEC_MASK: src = g->ms + r * g->ld_ms; n = (size_t)T * g->S; break;
    case DEMIX_CPU_STAGE_WAVE_MASK: src = g->mw + r * g->ld_mw; n = (size_t)T * g->NB; break;
    case DEMIX_CPU_STAGE_SPEC_OUT: src = g->yraw + r * T * C * W; n = (size_t)T * C * W; break;
    case DEMIX_CPU_STAGE_WAVE_OUT: src = g->z + r * T * g->ld_z; n = (size_t)T * C * W; break;
    default: return DEMIX_EARG;
    }
    if (cap < n)
        return DEMIX_ENOSPACE;
    if (!CK(&g->err, cudaStreamSynchronize(g->stream)))
        return DEMIX_EDEVICE;
    bool ok;
    if (stage == DEMIX_CPU_STAGE_WAVE_OUT) /* T rows of the decoder output */
        ok = CK(&g->err, cudaMemcpy2D(dst, (size_t)C * W * sizeof(float), src,
                                      (size_t)g->ld_z * sizeof(float),
                                      (size_t)C * W * sizeof(float), T,
                                      cudaMemcpyDeviceToHost));
    else
        ok = CK(&g->err, cudaMemcpy(dst, src, n * sizeof(float),
                                    cudaMemcpyDeviceToHost));
    if (!ok)
        return DEMIX_EDEVICE;
    /* what the step folds into later kernels, applied here */
    if (stage == DEMIX_CPU_STAGE_SPEC_MASK)
        for (size_t i = 0; i < n; i++)
            dst[i] += m->spec_mask_b[i];
    else if (stage == DEMIX_CPU_STAGE_WAVE_MASK)
        for (size_t i = 0; i < n; i++)
            dst[i] += m->wave_mask_b[i];
    else if (stage == DEMIX_CPU_STAGE_SPEC_OUT)
        for (size_t i = 0; i < n; i++)
            dst[i] = dst[i] * (1.0f / (float)W) * m->window[i % W];
    else if (stage == DEMIX_CPU_STAGE_WAVE_OUT)
        for (size_t i = 0; i < n; i++)
            dst[i] *= m->window[i % W];
    return (int)n;
}

/* ------------------------------------------------------------ table */

static const demix_backend_ops cuda_ops = {
    "cuda",          cuda_create,     cuda_destroy,    cuda_describe,
    cuda_reset_slot, cuda_step,       cuda_last_error, cuda_host_alloc,
    cuda_host_free,  cuda_submit,     cuda_wait,       cuda_submit_shaped,
};

extern "C" const demix_backend_ops *demix__cuda_backend(void)
{
    return &cuda_ops;
}
