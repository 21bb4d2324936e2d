/*
 * cpu_fft.h - real FFTs of one window length for the CPU backend, over
 * kissfft (kiss_fftr / kiss_fftri).
 *
 * Spectra are F = n/2 + 1 complex bins stored as 2F floats, (bin, re/im)
 * with re/im fastest: model-spec.md's spectral feature order within one
 * channel. The forward transform is unscaled; the inverse includes the 1/n
 * factor (numpy's and torch's irfft), which kiss_fftri leaves out, and like
 * them it ignores the imaginary parts of the DC and Nyquist bins.
 *
 * Thread context: a plan keeps scratch space, so one plan serves one thread
 * at a time (each engine context owns its own).
 */
#ifndef DEMIX_CPU_FFT_H
#define DEMIX_CPU_FFT_H

typedef struct demix_cpu_fft demix_cpu_fft;

/* A plan for length n (even, >= 2). DEMIX_EARG for a bad n, DEMIX_ENOMEM. */
int demix__cpu_fft_create(int n, demix_cpu_fft **out);
void demix__cpu_fft_destroy(demix_cpu_fft *fft);

/* out[2F] = rfft(in[n]), no scaling. */
void demix__cpu_rfft(demix_cpu_fft *fft, const float *in, float *out);

/* out[n] = irfft(in[2F]) including 1/n. */
void demix__cpu_irfft(demix_cpu_fft *fft, const float *in, float *out);

#endif /* DEMIX_CPU_FFT_H */
