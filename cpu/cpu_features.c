/*
 * cpu_features.c - spectral features and the gated waveform basis
 * (cpu_features.h).
 *
 * Design. kissfft writes each channel's F bins straight into its slice of
 * the feature row, which is already model-spec.md's (channel, bin, re/im)
 * order, so the spectral encoder reads the FFT output with no reshuffle.
 *
 * Thread context: see cpu_features.h.
 */
#include "cpu_features.h"

#include <math.h>
#include <stddef.h>

void demix__cpu_spec_features(demix_cpu_fft *fft, const float *window,
                              int channels, int window_samples,
                              const float *frame, float *scratch, float *feat)
{
    size_t W = (size_t)window_samples;
    size_t spectrum_floats = 2 * (W / 2 + 1);
    for (int ch = 0; ch < channels; ch++) {
        const float *x = frame + (size_t)ch * W;
        for (size_t n = 0; n < W; n++)
            scratch[n] = x[n] * window[n];
        demix__cpu_rfft(fft, scratch, feat + (size_t)ch * spectrum_floats);
    }
}

void demix__cpu_gate_basis(int rows, int num_basis, const float *ag,
                           float *basis)
{
    demix__cpu_gate_basis_units(rows, num_basis, 0, num_basis, ag, basis);
}

void demix__cpu_gate_basis_units(int rows, int num_basis, int k0, int k1,
                                 const float *ag, float *basis)
{
    size_t NB = (size_t)num_basis;
    for (size_t r = 0; r < (size_t)rows; r++) {
        const float *a = ag + r * 2 * NB, *g = a + NB;
        float *out = basis + r * NB;
        for (size_t k = (size_t)k0; k < (size_t)k1; k++) {
            float relu = a[k] > 0.0f ? a[k] : 0.0f;
            out[k] = relu * (1.0f / (1.0f + expf(-g[k])));
        }
    }
}
