/*
 * overlap_add.cu - the end of a frame (model-spec.md step 9): both paths'
 * first halves added to the slot's tails, the spectral path divided by the
 * squared-window envelope, the emitted hop written out, and the second
 * halves kept as the new tails. The irfft's 1/W (cuFFT's inverse is
 * unnormalised) and the synthesis window of both paths are applied here,
 * so the spectral and decoder products stay plain.
 *
 * Shapes: yraw [B][T][C][W] (unscaled irfft of Y), z [B*T][ld_z] with
 * columns (C, W); tails [slot][T][C][H]; out [B][T][C][H]. Grid
 * (T*C*H / 256, B).
 *
 * Validation: tests/gpu/test_cuda_engine.c compares emitted hops with the
 * CPU engine per hop, over hundreds of hops and random batch compositions.
 *
 * Thread context: launched on the engine's streams by its one thread.
 */
#include "cuda_internal.h"

#define THREADS 256

static __global__ void overlap_add_kernel(demix_ola_params p)
{
    const int b = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int CH = p.C * p.H;
    if (i >= p.T * CH)
        return;
    const int t = i / CH, ch = (i / p.H) % p.C, n = i % p.H;
    const size_t tc = ((size_t)b * p.T + t) * p.C + ch;
    const float *y = p.yraw + tc * p.W;
    const float *z = p.z + ((size_t)b * p.T + t) * p.ld_z + (size_t)ch * p.W;
    const float w0 = p.window[n], w1 = p.window[n + p.H];
    float y0 = y[n] * p.inv_w * w0, y1 = y[n + p.H] * p.inv_w * w1;
    float z0 = z[n] * w0, z1 = z[n + p.H] * w1;
    float *st = p.state + (size_t)p.slots[b] * p.P;
    float *ts = st + p.off_tail_spec + i; /* i = (t*C + ch)*H + n */
    float *tw = st + p.off_tail_wave + i;
    p.out[(size_t)b * p.T * CH + i] = (*ts + y0) / p.env[n] + *tw + z0;
    *ts = y1;
    *tw = z1;
}

bool demix__launch_overlap_add(demix_cuda_err *e, cudaStream_t s, int rows,
                               const demix_ola_params *p)
{
    dim3 grid((p->T * p->C * p->H + THREADS - 1) / THREADS, rows);
    overlap_add_kernel<<<grid, THREADS, 0, s>>>(*p);
    return CK_LAUNCH(e);
}
