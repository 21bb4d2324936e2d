/*
 * overlap_add.cu - the end of a frame (model-spec.md step 9, then the
 * mixture-consistency projection of docs/model.md): both paths' first
 * halves added to the slot's tails, the spectral path divided by the
 * squared-window envelope, the second halves kept as the new tails, the T
 * sources' hops moved onto the input hop they cover, and that hop's
 * successor (the step's input) made the slot's past. The irfft's 1/W
 * (cuFFT's inverse is unnormalised) and the synthesis window of both paths
 * are applied here, so the spectral and decoder products stay plain.
 *
 * One tail per slot: the spectral path's second half divided by the
 * envelope plus the decoder's second half, so
 *   out = tail + y[:H] / env + z[:H],  tail = y[H:] / env + z[H:]
 * which is model-spec.md's (tail_spec + y[:H]) / env + tail_wave + z[:H]
 * up to float rounding (the division distributes over the sum), with half
 * the state and half the tail traffic.
 *
 * Mixture consistency: the emitted hop covers the slot's past (the input
 * hop before this step's), so per channel and sample
 *   r = past - sum_t out_t,  out_t += r / T
 * with the same float operations as the CPU engine's
 * demix__cpu_mix_consistency (the sum in source order, a division, each
 * rounded on its own: __fadd_rn, __fsub_rn, __fdiv_rn, no FMA). The
 * gather (frame.cu) only reads the past; this kernel, the last reader,
 * replaces it by the step's input hop, in the same thread that read it.
 *
 * Shapes: yraw [B][T][C][W] (unscaled irfft of Y), z [B*T][ld_z] with
 * columns (C, W); tail [slot][T][C][H]; past [slot][C][H]; in [B][C][H];
 * out [B][T][C][H]. Grid (C*H / 256 / V, B): a thread owns V consecutive
 * samples of one channel, for every source (the projection needs them
 * all), V = 4 where sizes allow.
 *
 * Validation: tests/gpu/test_cuda_engine.c compares emitted hops with the
 * CPU engine per hop, over hundreds of hops and random batch compositions.
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#define THREADS 256

/* V consecutive samples a thread (V = 4 when H, W, ld_z, P, off_tail and
 * off_past are multiples of 4: 16-byte accesses); i = ch*H + n. */
template <int V>
static __global__ void overlap_add_kernel(demix_ola_params p)
{
    const int b = blockIdx.y;
    const int i = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    const int CH = p.C * p.H;
    if (i >= CH)
        return;
    const int ch = i / p.H, n = i % p.H;
    float *st = p.state + (size_t)p.slots[b] * p.P;
    float *out = p.out + (size_t)b * p.T * CH + i;
    float w0[V], w1[V], en[V], sum[V];
    load_v<V>(p.window + n, w0);
    load_v<V>(p.window + n + p.H, w1);
    load_v<V>(p.env + n, en);
    for (int t = 0; t < p.T; t++) {
        const size_t tc = ((size_t)b * p.T + t) * p.C + ch;
        const float *y = p.yraw + tc * p.W;
        const float *z =
            p.z + ((size_t)b * p.T + t) * p.ld_z + (size_t)ch * p.W;
        float *tl = st + p.off_tail + (size_t)t * CH + i;
        float ya[V], yb[V], za[V], zb[V], tv[V], o[V];
        load_v<V>(y + n, ya);
        load_v<V>(y + n + p.H, yb);
        load_v<V>(z + n, za);
        load_v<V>(z + n + p.H, zb);
        load_v<V>(tl, tv);
#pragma unroll
        for (int k = 0; k < V; k++) {
            float y0 = ya[k] * p.inv_w * w0[k], y1 = yb[k] * p.inv_w * w1[k];
            float z0 = za[k] * w0[k], z1 = zb[k] * w1[k];
            o[k] = tv[k] + y0 / en[k] + z0;
            tv[k] = y1 / en[k] + z1;
            sum[k] = t == 0 ? o[k] : __fadd_rn(sum[k], o[k]);
        }
        store_v<V>(out + (size_t)t * CH, o);
        store_v<V>(tl, tv);
    }
    /* The projection: this thread's own outputs, read back. */
    float *past = st + p.off_past + i;
    float x[V], share[V];
    load_v<V>(past, x);
    const float count = (float)p.T;
#pragma unroll
    for (int k = 0; k < V; k++)
        share[k] = __fdiv_rn(__fsub_rn(x[k], sum[k]), count);
    for (int t = 0; t < p.T; t++) {
        float o[V];
        load_v<V>(out + (size_t)t * CH, o);
#pragma unroll
        for (int k = 0; k < V; k++)
            o[k] = __fadd_rn(o[k], share[k]);
        store_v<V>(out + (size_t)t * CH, o);
    }
    load_v<V>(p.in + (size_t)b * CH + i, x);
    store_v<V>(past, x);
}

bool demix__launch_overlap_add(demix_cuda_err *e, cudaStream_t s, int rows,
                               const demix_ola_params *p)
{
    const bool vec = p->H % 4 == 0 && p->W % 4 == 0 && p->ld_z % 4 == 0 &&
                     p->P % 4 == 0 && p->off_tail % 4 == 0 &&
                     p->off_past % 4 == 0;
    const int V = vec ? 4 : 1;
    dim3 grid((p->C * p->H / V + THREADS - 1) / THREADS, rows);
    if (vec)
        overlap_add_kernel<4><<<grid, THREADS, 0, s>>>(*p);
    else
        overlap_add_kernel<1><<<grid, THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}
