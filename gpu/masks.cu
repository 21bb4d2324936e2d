/*
 * masks.cu - the kernels around the two mask products: RMSNorm of s2 and
 * w2 into the mask GEMMs' inputs, the spectral mask applied to the frame's
 * spectrum (with the mask bias; real and imaginary parts multiplied
 * apart, model-spec.md step 6) into the irfft input, and the waveform mask
 * applied to the basis (with its bias) into the decoder GEMM's input.
 *
 * Shapes: ms [B][T*S] ordered (channel, bin, re/im, source), source
 * fastest; X [B][C][F] complex; Y [B][T][C][F] complex; mw [B][T*NB]
 * ordered (source, basis); mb [B*T][NB].
 *
 * Variants: RMSNorm and the waveform mask write float or bf16 GEMM inputs;
 * the mask kernels have vectorised forms (four sources a thread for the
 * spectral mask when T = 4, four basis values a thread for the waveform
 * mask) used whenever the sizes and addresses allow.
 * Validation: tests/gpu/test_cuda_engine.c compares spec_mask, wave_mask,
 * spec_out and wave_out with the CPU engine.
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#include <stdint.h>

#define THREADS 256

static __device__ __forceinline__ void store_act(void *base, size_t i,
                                                 float v, int bf16)
{
    if (bf16)
        ((__nv_bfloat16 *)base)[i] = __float2bfloat16_rn(v);
    else
        ((float *)base)[i] = v;
}

/* One block per row: mean of squares, then x / sqrt(eps + mean) * gain,
 * eps = 2^-23 (model-spec.md step 6). */
static __global__ void rmsnorm_kernel(int n, const float *x, int ldx,
                                      const float *gain, void *out,
                                      int ld_out, int out_bf16)
{
    __shared__ float partial[THREADS / 32];
    const int b = blockIdx.x;
    const float *row = x + (size_t)b * ldx;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        ss += row[j] * row[j];
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0)
        partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < THREADS / 32; w++)
        total += partial[w];
    const float eps = 1.1920928955078125e-07f; /* 2^-23 */
    const float denom = sqrtf(eps + total / (float)n);
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        store_act(out, (size_t)b * ld_out + j, row[j] / denom * gain[j],
                  out_bf16);
}

bool demix__launch_rmsnorm(demix_cuda_err *e, cudaStream_t s, int rows,
                           int n, const float *x, int ldx, const float *gain,
                           void *out, int ld_out, int out_bf16)
{
    rmsnorm_kernel<<<rows, THREADS, 0, s>>>(n, x, ldx, gain, out, ld_out,
                                            out_bf16);
    return CK_LAUNCH(e);
}

/* Item e of a row in the mask's own order: t = e % T, q = e / T where
 * q = (ch*F + k)*2 + re/im indexes the spectrum as floats. */
static __global__ void spec_mask_kernel(int T, int S, const float *ms,
                                        int ld_ms, const float *bias,
                                        const float *X, float *Y)
{
    const int b = blockIdx.y;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= T * S)
        return;
    const int t = e % T, q = e / T;
    float m = ms[(size_t)b * ld_ms + e] + bias[e];
    Y[((size_t)b * T + t) * S + q] = X[(size_t)b * S + q] * m;
}

/* T = 4: a thread per spectrum value q, its four masks in one 16-byte
 * load (source fastest in the mask's order), four stores that are
 * contiguous across the warp in each source's row of Y. Same arithmetic
 * as spec_mask_kernel. */
static __global__ void spec_mask_t4_kernel(int S, const float *ms, int ld_ms,
                                           const float *bias, const float *X,
                                           float *Y)
{
    const int b = blockIdx.y;
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= S)
        return;
    float m[4], bb[4];
    load_v<4>(ms + (size_t)b * ld_ms + 4 * (size_t)q, m);
    load_v<4>(bias + 4 * (size_t)q, bb);
    const float x = X[(size_t)b * S + q];
#pragma unroll
    for (int t = 0; t < 4; t++)
        Y[((size_t)b * 4 + t) * S + q] = x * (m[t] + bb[t]);
}

bool demix__launch_spec_mask(demix_cuda_err *e, cudaStream_t s, int rows,
                             int T, int S, const float *ms, int ld_ms,
                             const float *bias, const float2 *X, float2 *Y)
{
    if (T == 4 && ld_ms % 4 == 0 && ((uintptr_t)ms & 15) == 0 &&
        ((uintptr_t)bias & 15) == 0) {
        dim3 grid((S + THREADS - 1) / THREADS, rows);
        spec_mask_t4_kernel<<<grid, THREADS, 0, s>>>(
            S, ms, ld_ms, bias, (const float *)X, (float *)Y);
        return CK_LAUNCH(e);
    }
    dim3 grid((T * S + THREADS - 1) / THREADS, rows);
    spec_mask_kernel<<<grid, THREADS, 0, s>>>(T, S, ms, ld_ms, bias,
                                              (const float *)X, (float *)Y);
    return CK_LAUNCH(e);
}

static __global__ void wave_mask_kernel(int T, int NB, const float *mw,
                                        int ld_mw, const float *bias,
                                        const float *basis, int ldNB,
                                        void *mb, int ld_mb, int mb_bf16)
{
    const int b = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * NB)
        return;
    const int t = i / NB, n = i - t * NB;
    float v = basis[(size_t)b * ldNB + n] * (mw[(size_t)b * ld_mw + i] + bias[i]);
    store_act(mb, ((size_t)b * T + t) * ld_mb + n, v, mb_bf16);
}

/* Four consecutive basis values a thread (NB, ld_mw, ldNB, ld_mb
 * multiples of 4): 16-byte loads, 16- or 8-byte stores. Same arithmetic
 * as wave_mask_kernel. */
static __global__ void wave_mask_v4_kernel(int T, int NB, const float *mw,
                                           int ld_mw, const float *bias,
                                           const float *basis, int ldNB,
                                           void *mb, int ld_mb, int mb_bf16)
{
    const int b = blockIdx.y;
    const int i = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= T * NB)
        return;
    const int t = i / NB, n = i - t * NB;
    float x[4], m[4], bb[4], v[4];
    load_v<4>(basis + (size_t)b * ldNB + n, x);
    load_v<4>(mw + (size_t)b * ld_mw + i, m);
    load_v<4>(bias + i, bb);
#pragma unroll
    for (int k = 0; k < 4; k++)
        v[k] = x[k] * (m[k] + bb[k]);
    store_act_v<4>(mb, ((size_t)b * T + t) * ld_mb + n, v, mb_bf16);
}

bool demix__launch_wave_mask(demix_cuda_err *e, cudaStream_t s, int rows,
                             int T, int NB, const float *mw, int ld_mw,
                             const float *bias, const float *basis, int ldNB,
                             void *mb, int ld_mb, int mb_bf16)
{
    if (NB % 4 == 0 && ld_mw % 4 == 0 && ldNB % 4 == 0 && ld_mb % 4 == 0 &&
        ((uintptr_t)mw & 15) == 0 && ((uintptr_t)bias & 15) == 0 &&
        ((uintptr_t)basis & 15) == 0 && ((uintptr_t)mb & 15) == 0) {
        dim3 grid((T * NB / 4 + THREADS - 1) / THREADS, rows);
        wave_mask_v4_kernel<<<grid, THREADS, 0, s>>>(T, NB, mw, ld_mw, bias,
                                                     basis, ldNB, mb, ld_mb,
                                                     mb_bf16);
        return CK_LAUNCH(e);
    }
    dim3 grid((T * NB + THREADS - 1) / THREADS, rows);
    wave_mask_kernel<<<grid, THREADS, 0, s>>>(T, NB, mw, ld_mw, bias, basis,
                                              ldNB, mb, ld_mb, mb_bf16);
    return CK_LAUNCH(e);
}
