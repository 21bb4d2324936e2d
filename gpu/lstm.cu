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
 * without bias; state c and h [slot][hid]. Grid (hid / 256, B), or
 * (hid / 512, B) for the four-units-a-thread kernel, used when every
 * size and address allows 16-byte accesses (one unit a thread measured
 * 106 against 86 us for the eight cells at 1024 rows; gpu/NOTES.md). The
 * post branches' last layer runs the cell and the RMSNorm that feeds the
 * mask products as one kernel, a block per row (cell_norm_kernel). A
 * fused product-and-cell kernel for small batches measured 30 us slower
 * than cuBLAS + cell at 1 row and was dropped (NOTES.md, round 1, item 2).
 *
 * Variants: routes write GEMM inputs as float or bf16. Validation:
 * tests/gpu/test_cuda_engine.c compares s1, w1, fused, s2, w2 and the end
 * outputs with the CPU engine over hundreds of hops (the recurrence).
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#include <stdint.h>

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
 * everything after it up to the next product; returns R (= res + h, or h
 * without a residual). */
static __device__ __forceinline__ float cell_apply(const demix_cell_params &p,
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
    return r;
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

/* Four consecutive units a thread: 16-byte loads of each gate, of c, of
 * the residual and the skip additions, 16-byte stores of c, h, R and the
 * routes (8 bytes for bf16 GEMM inputs). Same arithmetic as cell_apply. */
#define CELL_V4_THREADS 128

static __global__ void __launch_bounds__(CELL_V4_THREADS)
    cell_v4_kernel(demix_cell_params p)
{
    const int b = blockIdx.y;
    const int j = (blockIdx.x * blockDim.x + threadIdx.x) * 4;
    const int hid = p.hid;
    if (j >= hid)
        return;
    const float *g = p.gates + (size_t)b * p.ld_gates;
    float gi[4], gf[4], gg[4], go[4], bi[4], bf[4], bg[4], bo[4], c[4], h[4];
    load_v<4>(g + j, gi);
    load_v<4>(g + hid + j, gf);
    load_v<4>(g + 2 * hid + j, gg);
    load_v<4>(g + 3 * hid + j, go);
    load_v<4>(p.bias + j, bi);
    load_v<4>(p.bias + hid + j, bf);
    load_v<4>(p.bias + 2 * hid + j, bg);
    load_v<4>(p.bias + 3 * hid + j, bo);
    float *st = p.state + (size_t)p.slots[b] * p.P;
    load_v<4>(st + p.off_c + j, c);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        c[k] = sigmoidf_(gf[k] + bf[k]) * c[k] +
               sigmoidf_(gi[k] + bi[k]) * tanhf(gg[k] + bg[k]);
        h[k] = sigmoidf_(go[k] + bo[k]) * tanhf(c[k]);
    }
    store_v<4>(st + p.off_c + j, c);
    store_v<4>(st + p.off_h + j, h);
    float r[4];
    if (p.res) {
        load_v<4>(p.res + (size_t)b * p.ld_res + j, r);
#pragma unroll
        for (int k = 0; k < 4; k++)
            r[k] += h[k];
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++)
            r[k] = h[k];
    }
    if (p.stage)
        store_v<4>(p.stage + (size_t)b * p.ld_stage + j, r);
#pragma unroll
    for (int q = 0; q < 2; q++) {
        if (q >= p.nroutes || j < p.route[q].j0 || j >= p.route[q].j1)
            continue;
        const int jj = j - p.route[q].j0;
        float v[4];
        if (p.route[q].add) {
            load_v<4>(p.route[q].add + (size_t)b * p.route[q].ld_add + jj, v);
#pragma unroll
            for (int k = 0; k < 4; k++)
                v[k] += r[k];
        } else {
#pragma unroll
            for (int k = 0; k < 4; k++)
                v[k] = r[k];
        }
        if (p.route[q].f32)
            store_v<4>(p.route[q].f32 + (size_t)b * p.route[q].ld_f32 + jj, v);
        if (p.route[q].act)
            store_act_v<4>(p.route[q].act, (size_t)b * p.route[q].ld_act + jj,
                           v, p.route[q].act_bf16);
    }
}

static bool aligned(const void *p, size_t bytes)
{
    return ((uintptr_t)p & (bytes - 1)) == 0;
}

/* Whether every access of cell_v4_kernel is aligned for these parameters. */
static bool cell_v4_ok(const demix_cell_params *p)
{
    if (p->hid % 4 || p->ld_gates % 4 || p->P % 4 || p->off_c % 4 ||
        p->off_h % 4 || !aligned(p->gates, 16) || !aligned(p->bias, 16) ||
        !aligned(p->state, 16))
        return false;
    if (p->res && (p->ld_res % 4 || !aligned(p->res, 16)))
        return false;
    if (p->stage && (p->ld_stage % 4 || !aligned(p->stage, 16)))
        return false;
    for (int q = 0; q < p->nroutes; q++) {
        const demix_cell_route *r = &p->route[q];
        if (r->j0 % 4 || (r->j1 % 4 && r->j1 < p->hid))
            return false;
        if (r->add && (r->ld_add % 4 || !aligned(r->add, 16)))
            return false;
        if (r->f32 && (r->ld_f32 % 4 || !aligned(r->f32, 16)))
            return false;
        if (r->act &&
            (r->ld_act % 4 || !aligned(r->act, r->act_bf16 ? 8 : 16)))
            return false;
    }
    return true;
}

bool demix__launch_cell(demix_cuda_err *e, cudaStream_t s, int rows,
                        const demix_cell_params *p)
{
    if (cell_v4_ok(p)) {
        dim3 grid((p->hid / 4 + CELL_V4_THREADS - 1) / CELL_V4_THREADS, rows);
        cell_v4_kernel<<<grid, CELL_V4_THREADS, 0, s>>>(*p);
        return CK_LAUNCH(e);
    }
    dim3 grid((p->hid + THREADS - 1) / THREADS, rows);
    cell_kernel<<<grid, THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}

/* One block of NORM_THREADS per row: each thread keeps the R of its units
 * (at most NORM_UNITS, indexed by unrolled constants so they stay in
 * registers), the block sums their squares, then writes
 * R / sqrt(eps + mean) * gain (masks.cu's RMSNorm, eps = 2^-23). */
#define NORM_THREADS 512
#define NORM_UNITS (DEMIX_CUDA_NORM_MAX_HID / NORM_THREADS)

static __global__ void __launch_bounds__(NORM_THREADS)
    cell_norm_kernel(demix_cell_params p, demix_norm_params q)
{
    __shared__ float partial[NORM_THREADS / 32];
    const int b = blockIdx.x;
    const float *g = p.gates + (size_t)b * p.ld_gates;
    float r[NORM_UNITS];
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < NORM_UNITS; u++) {
        const int j = threadIdx.x + u * NORM_THREADS;
        r[u] = 0.0f;
        if (j < p.hid) {
            r[u] = cell_apply(p, b, j, g[j], g[p.hid + j], g[2 * p.hid + j],
                              g[3 * p.hid + j]);
            ss += r[u] * r[u];
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0)
        partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < NORM_THREADS / 32; w++)
        total += partial[w];
    const float eps = 1.1920928955078125e-07f; /* 2^-23 */
    const float denom = sqrtf(eps + total / (float)p.hid);
#pragma unroll
    for (int u = 0; u < NORM_UNITS; u++) {
        const int j = threadIdx.x + u * NORM_THREADS;
        if (j < p.hid)
            store_act(q.out, (size_t)b * q.ld_out + j, r[u] / denom * q.gain[j],
                      q.out_bf16);
    }
}

bool demix__launch_cell_norm(demix_cuda_err *e, cudaStream_t s, int rows,
                             const demix_cell_params *p,
                             const demix_norm_params *q)
{
    if (p->hid > DEMIX_CUDA_NORM_MAX_HID)
        return demix__cuda_ok(e, cudaErrorInvalidValue,
                              "demix__launch_cell_norm(hid)", __FILE__,
                              __LINE__);
    cell_norm_kernel<<<rows, NORM_THREADS, 0, s>>>(*p, *q);
    return CK_LAUNCH(e);
}
