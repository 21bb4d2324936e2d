/*
 * overlap_add.cu - the end of a frame (model-spec.md step 9): both paths'
 * first halves added to the slot's tails, the spectral path divided by the
 * squared-window envelope, the emitted hop written out, and the second
 * halves kept as the new tails. The irfft's 1/W (cuFFT's inverse is
 * unnormalised) and the synthesis window of both paths are applied here,
 * so the spectral and decoder products stay plain.
 *
 * One tail per slot: the spectral path's second half divided by the
 * envelope plus the decoder's second half, so
 *   out = tail + y[:H] / env + z[:H],  tail = y[H:] / env + z[H:]
 * which is model-spec.md's (tail_spec + y[:H]) / env + tail_wave + z[:H]
 * up to float rounding (the division distributes over the sum), with half
 * the state and half the tail traffic.
 *
 * Shapes: yraw [B][T][C][W] (unscaled irfft of Y), z [B*T][ld_z] with
 * columns (C, W); tail [slot][T][C][H]; out [B][T][C][H]. Grid
 * (T*C*H / 256 / V, B), V = 4 samples a thread where sizes allow.
 *
 * Validation: tests/gpu/test_cuda_engine.c compares emitted hops with the
 * CPU engine per hop, over hundreds of hops and random batch compositions.
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#define THREADS 256

/* V consecutive samples a thread (V = 4 when H, W, ld_z, P and off_tail
 * are multiples of 4: 16-byte accesses); i = (t*C + ch)*H + n. */
template <int V>
static __global__ void overlap_add_kernel(demix_ola_params p)
{
    const int b = blockIdx.y;
    const int i = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    const int CH = p.C * p.H;
    if (i >= p.T * CH)
        return;
    const int t = i / CH, ch = (i / p.H) % p.C, n = i % p.H;
    const size_t tc = ((size_t)b * p.T + t) * p.C + ch;
    const float *y = p.yraw + tc * p.W;
    const float *z = p.z + ((size_t)b * p.T + t) * p.ld_z + (size_t)ch * p.W;
    float *tl = p.state + (size_t)p.slots[b] * p.P + p.off_tail + i;
    float w0[V], w1[V], ya[V], yb[V], za[V], zb[V], en[V], tv[V], o[V];
    load_v<V>(p.window + n, w0);
    load_v<V>(p.window + n + p.H, w1);
    load_v<V>(y + n, ya);
    load_v<V>(y + n + p.H, yb);
    load_v<V>(z + n, za);
    load_v<V>(z + n + p.H, zb);
    load_v<V>(p.env + n, en);
    load_v<V>(tl, tv);
#pragma unroll
    for (int k = 0; k < V; k++) {
        float y0 = ya[k] * p.inv_w * w0[k], y1 = yb[k] * p.inv_w * w1[k];
        float z0 = za[k] * w0[k], z1 = zb[k] * w1[k];
        o[k] = tv[k] + y0 / en[k] + z0;
        tv[k] = y1 / en[k] + z1;
    }
    store_v<V>(p.out + (size_t)b * p.T * CH + i, o);
    store_v<V>(tl, tv);
}

bool demix__launch_overlap_add(demix_cuda_err *e, cudaStream_t s, int rows,
                               const demix_ola_params *p)
{
    const bool vec = p->H % 4 == 0 && p->W % 4 == 0 && p->ld_z % 4 == 0 &&
                     p->P % 4 == 0 && p->off_tail % 4 == 0;
    const int V = vec ? 4 : 1;
    dim3 grid((p->T * p->C * p->H / V + THREADS - 1) / THREADS, rows);
    if (vec)
        overlap_add_kernel<4><<<grid, THREADS, 0, s>>>(*p);
    else
        overlap_add_kernel<1><<<grid, THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}
