/*
 * lstm.cu - the LSTM cell of one layer for B rows, fused with everything
 * that follows it up to the next matrix product: the gate bias, the cell
 * update of the slot's c and h in the state array, the residual around
 * the whole multi-layer LSTM (R(x) = x + LSTM(x), none in the small
 * variant), and the routing of R into the next consumers (the next layer's
 * [x | h] input, the fusion input, the post-branch inputs with their skip
 * additions, float32 stage buffers).
 *
 * Shapes: gates [B][4*hid] (i, f, g, o; PyTorch order) from the GEMM,
 * without bias; state c and h [slot][hid]. Grid (hid / 256, B).
 *
 * Variants: routes write GEMM inputs as float or bf16. Validation:
 * tests/gpu/test_cuda_engine.c compares s1, w1, fused, s2, w2 and the end
 * outputs with the CPU engine over hundreds of hops (the recurrence).
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#define THREADS 256

static __device__ __forceinline__ float sigmoidf_(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static __device__ __forceinline__ void store_act(void *base, size_t i,
                                                 float v, int bf16)
{
    if (bf16)
        ((__nv_bfloat16 *)base)[i] = __float2bfloat16_rn(v);
    else
        ((float *)base)[i] = v;
}

/* The cell of unit j of row b from its four gate sums (without bias), and
 * everything after it up to the next product. */
static __device__ __forceinline__ void cell_apply(const demix_cell_params &p,
                                                  int b, int j, float gi,
                                                  float gf, float gg, float go)
{
    const int hid = p.hid;
    gi += p.bias[j];
    gf += p.bias[hid + j];
    gg += p.bias[2 * hid + j];
    go += p.bias[3 * hid + j];
    float *st = p.state + (size_t)p.slots[b] * p.P;
    float c = sigmoidf_(gf) * st[p.off_c + j] + sigmoidf_(gi) * tanhf(gg);
    float h = sigmoidf_(go) * tanhf(c);
    st[p.off_c + j] = c;
    st[p.off_h + j] = h;

    float r = p.res ? p.res[(size_t)b * p.ld_res + j] + h : h;
    if (p.stage)
        p.stage[(size_t)b * p.ld_stage + j] = r;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        if (k >= p.nroutes || j < p.route[k].j0 || j >= p.route[k].j1)
            continue;
        int jj = j - p.route[k].j0;
        const float *add = p.route[k].add;
        float v = add ? r + add[(size_t)b * p.route[k].ld_add + jj] : r;
        if (p.route[k].f32)
            p.route[k].f32[(size_t)b * p.route[k].ld_f32 + jj] = v;
        if (p.route[k].act)
            store_act(p.route[k].act, (size_t)b * p.route[k].ld_act + jj, v,
                      p.route[k].act_bf16);
    }
}

static __global__ void cell_kernel(demix_cell_params p)
{
    const int b = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.hid)
        return;
    const float *g = p.gates + (size_t)b * p.ld_gates;
    cell_apply(p, b, j, g[j], g[p.hid + j], g[2 * p.hid + j],
               g[3 * p.hid + j]);
}

bool demix__launch_cell(demix_cuda_err *e, cudaStream_t s, int rows,
                        const demix_cell_params *p)
{
    dim3 grid((p->hid + THREADS - 1) / THREADS, rows);
    cell_kernel<<<grid, THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}

/* ------------------------------------------------ small batches: fused */

/* Eight consecutive elements of a row as floats (one 16-byte load for
 * bf16, two for float). Rows start 16-element aligned (padded ld). */
template <typename TE>
static __device__ __forceinline__ void load8(const TE *row, int k, float *v);

template <>
__device__ __forceinline__ void load8<float>(const float *row, int k, float *v)
{
    float4 a = __ldg((const float4 *)(row + k));
    float4 b = __ldg((const float4 *)(row + k + 4));
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

template <>
__device__ __forceinline__ void load8<__nv_bfloat16>(const __nv_bfloat16 *row,
                                                     int k, float *v)
{
    uint4 a = __ldg((const uint4 *)(row + k));
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&a;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
    }
}

template <typename TE>
static __device__ __forceinline__ float load1(const TE *row, int k)
{
    return (float)row[k];
}

template <>
__device__ __forceinline__ float load1<__nv_bfloat16>(const __nv_bfloat16 *row,
                                                      int k)
{
    return __bfloat162float(row[k]);
}

#define GEMV_UNITS 2 /* hidden units per block: 4 gate rows each, a warp a row */
#define GEMV_MAX_ROWS DEMIX_CUDA_GEMV_MAX_ROWS

/* Warp w of a block computes gate row (w % 4) of unit blockIdx.x * 2 + w / 4
 * for every batch row: lanes stride the reduction in chunks of 8, partial
 * sums meet in a shuffle tree; then one thread per (unit, row) applies the
 * cell. */
template <typename TW, typename TX>
static __global__ void __launch_bounds__(256)
    lstm_gemv_kernel(demix_cell_params p, const TW *w, int ldw, const TX *x,
                     int ldx, int K, int rows)
{
    __shared__ float gate_sum[GEMV_UNITS][4][GEMV_MAX_ROWS];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int unit = blockIdx.x * GEMV_UNITS + warp / 4, gate = warp % 4;
    if (unit < p.hid) {
        const TW *wr = w + (size_t)(gate * p.hid + unit) * ldw;
        float acc[GEMV_MAX_ROWS];
#pragma unroll
        for (int b = 0; b < GEMV_MAX_ROWS; b++)
            acc[b] = 0.0f;
        const int K8 = K & ~7;
#pragma unroll 4
        for (int k = lane * 8; k < K8; k += 32 * 8) {
            float wv[8];
            load8<TW>(wr, k, wv);
#pragma unroll
            for (int b = 0; b < GEMV_MAX_ROWS; b++) {
                if (b < rows) {
                    float xv[8];
                    load8<TX>(x + (size_t)b * ldx, k, xv);
#pragma unroll
                    for (int i = 0; i < 8; i++)
                        acc[b] = fmaf(wv[i], xv[i], acc[b]);
                }
            }
        }
        for (int k = K8 + lane; k < K; k += 32) {
            float wv = load1<TW>(wr, k);
#pragma unroll
            for (int b = 0; b < GEMV_MAX_ROWS; b++)
                if (b < rows)
                    acc[b] = fmaf(wv, load1<TX>(x + (size_t)b * ldx, k), acc[b]);
        }
#pragma unroll
        for (int b = 0; b < GEMV_MAX_ROWS; b++) {
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                acc[b] += __shfl_xor_sync(0xffffffffu, acc[b], o);
        }
        if (lane == 0) {
#pragma unroll
            for (int b = 0; b < GEMV_MAX_ROWS; b++)
                gate_sum[warp / 4][gate][b] = acc[b];
        }
    }
    __syncthreads();
    const int t = threadIdx.x;
    if (t < GEMV_UNITS * rows) {
        const int u = t / rows, b = t % rows;
        const int j = blockIdx.x * GEMV_UNITS + u;
        if (j < p.hid)
            cell_apply(p, b, j, gate_sum[u][0][b], gate_sum[u][1][b],
                       gate_sum[u][2][b], gate_sum[u][3][b]);
    }
}

bool demix__launch_lstm_gemv(demix_cuda_err *e, cudaStream_t s, int rows,
                             const demix_cell_params *p, const dmat *w,
                             const dmat *x, int K)
{
    if (rows < 1 || rows > GEMV_MAX_ROWS)
        return demix__cuda_ok(e, cudaErrorInvalidValue,
                              "demix__launch_lstm_gemv(rows)", __FILE__,
                              __LINE__);
    dim3 grid((p->hid + GEMV_UNITS - 1) / GEMV_UNITS);
    if (w->bf16 && x->bf16)
        lstm_gemv_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 256, 0, s>>>(
            *p, (const __nv_bfloat16 *)w->p, w->ld,
            (const __nv_bfloat16 *)x->p, x->ld, K, rows);
    else if (!w->bf16 && !x->bf16)
        lstm_gemv_kernel<float, float><<<grid, 256, 0, s>>>(
            *p, (const float *)w->p, w->ld, (const float *)x->p, x->ld, K,
            rows);
    else
        return demix__cuda_ok(e, cudaErrorInvalidValue,
                              "demix__launch_lstm_gemv(mixed types)", __FILE__,
                              __LINE__);
    return CK_LAUNCH(e);
}
