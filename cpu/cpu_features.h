/*
 * cpu_features.h - the per-row front end of the frame (model-spec.md steps
 * 1 and 3): windowed real spectra of the frame and the gated waveform basis.
 *
 * Thread context: reentrant apart from the FFT plan (one thread at a time).
 */
#ifndef DEMIX_CPU_FEATURES_H
#define DEMIX_CPU_FEATURES_H

#include "cpu_fft.h"

/* feat [C][2F] = for each channel rfft(frame[ch] * window), frame [C][W];
 * scratch holds W floats. */
void demix__cpu_spec_features(demix_cpu_fft *fft, const float *window,
                              int channels, int window_samples,
                              const float *frame, float *scratch, float *feat);

/* basis[r][k] = relu(a[r][k]) * sigmoid(g[r][k]) where ag [rows][2NB] holds
 * a (first NB) then g; basis [rows][NB]. */
void demix__cpu_gate_basis(int rows, int num_basis, const float *ag,
                           float *basis);

/* The same for basis entries k0..k1-1 only (every row). */
void demix__cpu_gate_basis_units(int rows, int num_basis, int k0, int k1,
                                 const float *ag, float *basis);

#endif /* DEMIX_CPU_FEATURES_H */
