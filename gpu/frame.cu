/*
 * frame.cu - the kernels at the input end of a frame: the gather of every
 * listed slot's past hop and LSTM h into the batch's GEMM inputs, the
 * encoder epilogue (bias, ReLU x sigmoid gate), a bias-add that routes a
 * result into a GEMM input, and two create-time helpers (the folded
 * spectral encoder, float32 -> bf16).
 *
 * Shapes: B rows (the bucket), one CUDA block row per batch row
 * (blockIdx.y), 256 threads striding over the row's items.
 *
 * Variants: each GEMM input is written as float or bf16 (the GEMM group's
 * precision); the branch on the flag is uniform across a launch. The
 * gather is segmented (a block works in the frame or in one layer's h,
 * 128 threads of 4 items with 16-byte accesses where sizes allow, else 1;
 * the round-1 per-item kernel measured 52 us against 39 at 1024 rows).
 * Validation: tests/gpu/test_cuda_engine.c compares every stage these
 * kernels produce (spec_feat, spec, basis, wave) with the CPU engine.
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#include <math.h>

#define THREADS 256

static __device__ __forceinline__ void store_act(void *base, size_t i,
                                                 float v, int bf16)
{
    if (bf16)
        ((__nv_bfloat16 *)base)[i] = __float2bfloat16_rn(v);
    else
        ((float *)base)[i] = v;
}

static __device__ __forceinline__ float sigmoidf_(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* Block x of a row works in one segment, the frame (blocks
 * [0, frame_blocks)) or layer k (blocks [blk0, next blk0)); V consecutive
 * items a thread, V = 4 where every size and offset allows 16-byte
 * accesses (then V divides W and H, so a thread's items share the channel
 * and the side of the past/new boundary). */
#define GATHER_THREADS 128

template <int V>
static __global__ void __launch_bounds__(GATHER_THREADS)
    gather_kernel(demix_gather_params p)
{
    const int b = blockIdx.y;
    const int blk = blockIdx.x;
    const int slot = p.slots[b];
    float *st = p.state + (size_t)slot * p.P;
    float v[V];
    if (blk < p.frame_blocks) {
        const int i = (blk * GATHER_THREADS + threadIdx.x) * V;
        const int CW = p.C * p.W;
        if (i >= CW)
            return;
        const int ch = i / p.W, n = i - ch * p.W;
        const float *x = p.in + (size_t)b * p.C * p.H + (size_t)ch * p.H;
        if (n < p.H) {
            float *past = st + p.off_past + ch * p.H + n;
            float xv[V];
            load_v<V>(past, v);
            load_v<V>(x + n, xv);
            store_v<V>(past, xv); /* this thread alone reads these */
        } else {
            load_v<V>(x + n - p.H, v);
        }
        store_act_v<V>(p.frame, (size_t)b * p.ld_frame + i, v, p.frame_bf16);
        float w[V];
        load_v<V>(p.window + n, w);
#pragma unroll
        for (int k = 0; k < V; k++)
            w[k] *= v[k];
        store_v<V>(p.frame_win + (size_t)b * CW + i, w);
        return;
    }
    int k = p.nlayers - 1;
    while (k > 0 && blk < p.layer[k].blk0)
        k--;
    const int j = ((blk - p.layer[k].blk0) * GATHER_THREADS + threadIdx.x) * V;
    if (j >= p.layer[k].hid)
        return;
    load_v<V>(st + p.layer[k].off_h + j, v);
    store_act_v<V>(p.layer[k].xh,
                   (size_t)b * p.layer[k].ld + p.layer[k].col + j, v,
                   p.layer[k].bf16);
}

bool demix__launch_gather(demix_cuda_err *e, cudaStream_t s, int rows,
                          demix_gather_params *p)
{
    bool vec = p->H % 4 == 0 && p->W % 4 == 0 && (p->C * p->H) % 4 == 0 &&
               p->P % 4 == 0 && p->off_past % 4 == 0 && p->ld_frame % 4 == 0;
    for (int k = 0; k < p->nlayers; k++)
        vec = vec && p->layer[k].hid % 4 == 0 && p->layer[k].off_h % 4 == 0 &&
              p->layer[k].col % 4 == 0 && p->layer[k].ld % 4 == 0;
    const int V = vec ? 4 : 1, per = GATHER_THREADS * V;
    p->frame_blocks = (p->C * p->W + per - 1) / per;
    int blk = p->frame_blocks;
    for (int k = 0; k < p->nlayers; k++) {
        p->layer[k].blk0 = blk;
        blk += (p->layer[k].hid + per - 1) / per;
    }
    dim3 grid(blk, rows);
    if (vec)
        gather_kernel<4><<<grid, GATHER_THREADS, 0, s>>>(*p);
    else
        gather_kernel<1><<<grid, GATHER_THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}

static int blocks_for(int items)
{
    int n = (items + THREADS - 1) / THREADS;
    return n < 1 ? 1 : n;
}

static __global__ void enc_post_kernel(demix_enc_post_params p)
{
    const int b = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const float *row = p.enc + (size_t)b * p.ld_enc;
    if (j < p.D) {
        float v = row[j] + p.b_spec[j];
        p.spec[(size_t)b * p.ldD + j] = v;
        store_act(p.xh, (size_t)b * p.ld_xh + j, v, p.xh_bf16);
    }
    if (j < p.NB) {
        float a = row[p.D + j] + p.b_conv[j];
        float g = row[p.D + p.NB + j] + p.b_conv[p.NB + j];
        float v = fmaxf(a, 0.0f) * sigmoidf_(g);
        p.basis[(size_t)b * p.ldNB + j] = v;
        store_act(p.basis_act, (size_t)b * p.ldNB + j, v, p.act_bf16);
    }
}

bool demix__launch_enc_post(demix_cuda_err *e, cudaStream_t s, int rows,
                            const demix_enc_post_params *p)
{
    int n = p->D > p->NB ? p->D : p->NB;
    dim3 grid(blocks_for(n), rows);
    enc_post_kernel<<<grid, THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}

static __global__ void bias_route_kernel(int n, const float *x, int ldx,
                                         const float *bias, float *y, int ldy,
                                         void *act, int ld_act, int act_bf16)
{
    const int b = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n)
        return;
    float v = x[(size_t)b * ldx + j] + bias[j];
    y[(size_t)b * ldy + j] = v;
    store_act(act, (size_t)b * ld_act + j, v, act_bf16);
}

bool demix__launch_bias_route(demix_cuda_err *e, cudaStream_t s, int rows,
                              int n, const float *x, int ldx, const float *b,
                              float *y, int ldy, void *act, int ld_act,
                              int act_bf16)
{
    dim3 grid(blocks_for(n), rows);
    bias_route_kernel<<<grid, THREADS, 0, s>>>(n, x, ldx, b, y, ldy, act,
                                               ld_act, act_bf16);
    return CK_LAUNCH(e);
}

/* The spectral encoder folded onto the raw frame (create time, float64):
 * spec[d] = sum_{ch,k} Ws[d][ch,k,re] Re X + Ws[d][ch,k,im] Im X with
 * X[k] = sum_n w[n] x[n] e^{-2 pi i k n / W}, so
 * out[d][ch*W + n] = w[n] sum_k (Ws_re cos(2 pi k n / W) - Ws_im sin(...)).
 * Grid (W / 128, C, D). */
static __global__ void fold_kernel(int C, int W, int F, int S,
                                   const float *ws, const double *cos_t,
                                   const double *sin_t, const float *window,
                                   float *out, int ld_out)
{
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const int ch = blockIdx.y, d = blockIdx.z;
    if (n >= W)
        return;
    const float *row = ws + (size_t)d * S + (size_t)ch * F * 2;
    double acc = 0.0;
    for (int k = 0; k < F; k++) {
        int m = (int)(((long long)k * n) % W);
        acc += (double)row[2 * k] * cos_t[m] - (double)row[2 * k + 1] * sin_t[m];
    }
    out[(size_t)d * ld_out + (size_t)ch * W + n] =
        (float)(acc * (double)window[n]);
}

bool demix__launch_fold(demix_cuda_err *e, cudaStream_t s, int D, int C,
                        int W, int F, int S, const float *ws,
                        const double *cos_t, const double *sin_t,
                        const float *window, float *out, int ld_out)
{
    dim3 grid((W + 127) / 128, C, D);
    fold_kernel<<<grid, 128, 0, s>>>(C, W, F, S, ws, cos_t, sin_t, window,
                                     out, ld_out);
    return CK_LAUNCH(e);
}

static __global__ void to_bf16_kernel(const float *src, __nv_bfloat16 *dst,
                                      size_t n)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

bool demix__launch_to_bf16(demix_cuda_err *e, cudaStream_t s,
                           const float *src, __nv_bfloat16 *dst, size_t n)
{
    size_t blocks = (n + THREADS - 1) / THREADS;
    if (blocks > 65535)
        blocks = 65535;
    if (blocks < 1)
        blocks = 1;
    to_bf16_kernel<<<(unsigned)blocks, THREADS, 0, s>>>(src, dst, n);
    return CK_LAUNCH(e);
}
