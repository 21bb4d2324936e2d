/*
 * cpu_masks.h - the per-row back end of the frame (model-spec.md steps 6 to
 * 9): RMSNorm before the mask layers, the spectral mask and inverse FFT,
 * the waveform decoder's input and window, the overlap-add that emits
 * one hop per source, and the mixture-consistency projection that makes
 * the sources of that hop add up to the input (docs/model.md).
 *
 * Shapes per row: spectral mask [C][F][2][T] (source fastest, the order of
 * to_spec_masks.1's output), waveform mask [T][NB], decoder output and
 * spectral output [T][C][W], tails and emitted hop [T][C][H].
 *
 * Thread context: reentrant apart from the FFT plan (one thread at a time).
 */
#ifndef DEMIX_CPU_MASKS_H
#define DEMIX_CPU_MASKS_H

#include <stddef.h>

#include "cpu_fft.h"

/* The RMSNorm epsilon: 2^-23, float32 machine epsilon (model-spec.md). */
#define DEMIX_CPU_RMSNORM_EPS 1.1920928955078125e-07

/* y[r] = x[r] / sqrt(eps + mean(x[r]^2)) * gain, rows of dim floats. */
void demix__cpu_rmsnorm(int rows, int dim, const float *x, const float *gain,
                        float *y);

/* One row: for each source t and channel, Y = X * mask_t (re and im
 * multiplied separately), out[t][ch] = window * irfft(Y). feat [C][2F] is
 * the row's spectral features; spectrum is scratch of 2F floats. */
void demix__cpu_spec_synth(demix_cpu_fft *fft, const float *window,
                           int sources, int channels, int window_samples,
                           const float *feat, const float *mask,
                           float *spectrum, float *out);

/* The same for source `source` of `sources` only: out[source][ch]. */
void demix__cpu_spec_synth_source(demix_cpu_fft *fft, const float *window,
                                  int source, int sources, int channels,
                                  int window_samples, const float *feat,
                                  const float *mask, float *spectrum,
                                  float *out);

/* dec_in[r*T + t][k] = basis[r][k] * mask[r][t*NB + k]. */
void demix__cpu_decoder_input(int rows, int sources, int num_basis,
                              const float *basis, const float *mask,
                              float *dec_in);

/* z[i][n] *= window[n % W] for count vectors of W floats. */
void demix__cpu_apply_window(int count, int window_samples,
                             const float *window, float *z);

/* One row: out = (tail_spec + y[:H]) / env + tail_wave + z[:H], then
 * tail_spec = y[H:], tail_wave = z[H:]. spec_out and wave_out [T][C][W],
 * tails and out [T][C][H], env [H]. */
void demix__cpu_overlap_add(int sources, int channels, int hop_samples,
                            const float *env, const float *spec_out,
                            const float *wave_out, float *tail_spec,
                            float *tail_wave, float *out);

/* Mixture consistency (docs/model.md, after model-spec.md step 9): per
 * channel and sample, r = past - sum_t out_t (t = 0..T-1 in order), then
 * out_t += r / T, so that the T emitted hops add up to the input hop they
 * cover. out [T][C][H]; past [C] rows of H floats, past_stride apart. */
void demix__cpu_mix_consistency(int sources, int channels, int hop_samples,
                                const float *past, size_t past_stride,
                                float *out);

#endif /* DEMIX_CPU_MASKS_H */
