/*
 * pack.cu - a step's outputs in the slots' output shapes (engine.h,
 * "output shapes"): from the full [R][T][C][H] float32 outputs of a chunk
 * to the packed rows that cross PCIe: 16-bit samples, chosen sources in
 * their order, or one mix with per-source gains.
 *
 * It must give the bits of the reference packer demix__pack_row
 * (engine.c): the mix is summed over t = 0..T-1 in order with zero-gain
 * terms left out, each product and sum rounded separately (__fmul_rn,
 * __fadd_rn: no fused multiply-add), and 16-bit samples are
 * round(x * 32768), halves away from zero, clamped, NaN as 0, by the same
 * integer steps as engine.h's demix_sample_to_s16 (here with __fmul_rn
 * and __fsub_rn, on the device).
 *
 * Shapes: full [m][T][CH] (CH = C*H); shapes[m] (row_shape: planes,
 * sources or gains, byte offset in the step's packed output); out = the
 * chunk's packed bytes, row r at shapes[r].offset - base. Grid
 * (ceil(T*CH / 256), m): thread k of row r writes sample k of the row's
 * planes*CH samples.
 *
 * Validation: tests/gpu/test_cuda_engine.c compares every shaped row with
 * the CPU engine's (the CPU engine packs with demix__pack_row).
 *
 * Thread context: launched on the engine's compute stream by its one
 * thread.
 */
#include "cuda_internal.h"

#define THREADS 256

static __device__ __forceinline__ short to_s16(float x)
{
    float v = __fmul_rn(x, 32768.0f);
    if (!(v == v))
        return 0;
    if (v >= 32767.0f)
        return 32767;
    if (v <= -32768.0f)
        return -32768;
    int i = (int)v; /* toward zero */
    float frac = __fsub_rn(v, (float)i);
    if (frac >= 0.5f)
        i++;
    else if (frac <= -0.5f)
        i--;
    return (short)(i > 32767 ? 32767 : i);
}

static __global__ void pack_rows_kernel(const float *full, int T, int CH,
                                        const demix_row_shape *shapes,
                                        unsigned long long base,
                                        unsigned char *out)
{
    const int r = blockIdx.y;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const demix_row_shape *sh = &shapes[r];
    const int planes = sh->planes;
    if (k >= planes * CH)
        return;
    const float *src = full + (size_t)r * T * CH;
    float v;
    if (sh->mix) {
        v = 0.0f;
        for (int t = 0; t < T; t++) {
            const float g = sh->gains[t];
            if (g != 0.0f)
                v = __fadd_rn(v, __fmul_rn(g, src[(size_t)t * CH + k]));
        }
    } else {
        const int p = k / CH;
        v = src[(size_t)sh->sources[p] * CH + (k - p * CH)];
    }
    unsigned char *dst = out + (sh->offset - base);
    if (sh->format == DEMIX_SAMPLE_S16)
        ((short *)dst)[k] = to_s16(v);
    else
        ((float *)dst)[k] = v;
}

bool demix__launch_pack_rows(demix_cuda_err *e, cudaStream_t s, int rows,
                             const float *full, int T, int CH,
                             const demix_row_shape *shapes, uint64_t base,
                             unsigned char *out)
{
    dim3 grid((unsigned)((T * CH + THREADS - 1) / THREADS), (unsigned)rows);
    pack_rows_kernel<<<grid, THREADS, 0, s>>>(full, T, CH, shapes,
                                              (unsigned long long)base, out);
    return CK_LAUNCH(e);
}
