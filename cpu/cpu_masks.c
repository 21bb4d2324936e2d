/*
 * cpu_masks.c - RMSNorm, mask application, decoder input and overlap-add
 * (cpu_masks.h).
 *
 * Design. The spectral mask stays in to_spec_masks.1's output order,
 * (ch, bin, re/im, source) with the source fastest, and is read with a
 * stride of T here rather than permuted: the stage reader can then hand it
 * out as it is, and the strided read costs nothing next to the inverse
 * FFTs. Every loop is per row and per element in a fixed order, so no
 * result depends on the batch.
 *
 * Thread context: see cpu_masks.h.
 */
#include "cpu_masks.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

void demix__cpu_rmsnorm(int rows, int dim, const float *x, const float *gain,
                        float *y)
{
    for (size_t r = 0; r < (size_t)rows; r++) {
        const float *xr = x + r * (size_t)dim;
        float *yr = y + r * (size_t)dim;
        double sum_sq = 0.0;
        for (int i = 0; i < dim; i++)
            sum_sq += (double)xr[i] * xr[i];
        float rms = (float)sqrt(DEMIX_CPU_RMSNORM_EPS + sum_sq / dim);
        for (int i = 0; i < dim; i++)
            yr[i] = xr[i] / rms * gain[i];
    }
}

void demix__cpu_spec_synth_source(demix_cpu_fft *fft, const float *window,
                                  int source, int sources, int channels,
                                  int window_samples, const float *feat,
                                  const float *mask, float *spectrum,
                                  float *out)
{
    size_t W = (size_t)window_samples, F = W / 2 + 1, T = (size_t)sources;
    size_t t = (size_t)source;
    for (size_t ch = 0; ch < (size_t)channels; ch++) {
        const float *X = feat + ch * 2 * F;
        const float *m = mask + ch * 2 * F * T + t;
        for (size_t i = 0; i < 2 * F; i++)
            spectrum[i] = X[i] * m[i * T];
        float *y = out + (t * (size_t)channels + ch) * W;
        demix__cpu_irfft(fft, spectrum, y);
        for (size_t n = 0; n < W; n++)
            y[n] *= window[n];
    }
}

void demix__cpu_spec_synth(demix_cpu_fft *fft, const float *window,
                           int sources, int channels, int window_samples,
                           const float *feat, const float *mask,
                           float *spectrum, float *out)
{
    for (int t = 0; t < sources; t++)
        demix__cpu_spec_synth_source(fft, window, t, sources, channels,
                                     window_samples, feat, mask, spectrum,
                                     out);
}

void demix__cpu_decoder_input(int rows, int sources, int num_basis,
                              const float *basis, const float *mask,
                              float *dec_in)
{
    size_t NB = (size_t)num_basis, T = (size_t)sources;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (size_t t = 0; t < T; t++) {
            const float *b = basis + r * NB, *m = mask + (r * T + t) * NB;
            float *d = dec_in + (r * T + t) * NB;
            for (size_t k = 0; k < NB; k++)
                d[k] = b[k] * m[k];
        }
}

void demix__cpu_apply_window(int count, int window_samples,
                             const float *window, float *z)
{
    size_t W = (size_t)window_samples;
    for (size_t i = 0; i < (size_t)count; i++)
        for (size_t n = 0; n < W; n++)
            z[i * W + n] *= window[n];
}

void demix__cpu_overlap_add(int sources, int channels, int hop_samples,
                            const float *env, const float *spec_out,
                            const float *wave_out, float *tail_spec,
                            float *tail_wave, float *out)
{
    size_t H = (size_t)hop_samples, W = 2 * H;
    size_t vectors = (size_t)sources * (size_t)channels;
    for (size_t v = 0; v < vectors; v++) {
        const float *y = spec_out + v * W, *z = wave_out + v * W;
        float *ts = tail_spec + v * H, *tw = tail_wave + v * H;
        float *o = out + v * H;
        for (size_t n = 0; n < H; n++) {
            float s = (ts[n] + y[n]) / env[n];
            o[n] = s + tw[n] + z[n];
        }
        memcpy(ts, y + H, H * sizeof *ts);
        memcpy(tw, z + H, H * sizeof *tw);
    }
}

void demix__cpu_mix_consistency(int sources, int channels, int hop_samples,
                                const float *past, size_t past_stride,
                                float *out)
{
    size_t H = (size_t)hop_samples, T = (size_t)sources;
    size_t plane = (size_t)channels * H; /* floats between two sources */
    float count = (float)sources;
    for (size_t ch = 0; ch < (size_t)channels; ch++) {
        const float *x = past + ch * past_stride;
        float *o = out + ch * H;
        for (size_t n = 0; n < H; n++) {
            /* The sum in source order and a division (not a product with
             * 1/T) so that gpu/overlap_add.cu can do the same float
             * operations, none of them fusable into an FMA. */
            float sum = o[n];
            for (size_t t = 1; t < T; t++)
                sum += o[t * plane + n];
            float share = (x[n] - sum) / count;
            for (size_t t = 0; t < T; t++)
                o[t * plane + n] += share;
        }
    }
}
