/*
 * cpu_fft.c - kissfft wrapper (cpu_fft.h).
 *
 * Design. kissfft's real transforms work on kiss_fft_cpx {r, i} arrays,
 * which have the layout of our interleaved (re, im) float arrays, so
 * spectra are passed through without copies. The only extra step is the
 * explicit 1/n of the inverse (style.md: cuFFT is unnormalised too, and
 * both backends scale in the same place).
 *
 * Thread context: see cpu_fft.h.
 */
#include "cpu_fft.h"

#include <stdlib.h>

#include <kiss_fftr.h>

#include "demix_error.h"

struct demix_cpu_fft {
    int n;
    float inv_n;
    kiss_fftr_cfg forward;
    kiss_fftr_cfg inverse;
};

int demix__cpu_fft_create(int n, demix_cpu_fft **out)
{
    *out = NULL;
    if (n < 2 || n % 2)
        return DEMIX_EARG;
    demix_cpu_fft *f = calloc(1, sizeof *f);
    if (!f)
        return DEMIX_ENOMEM;
    f->n = n;
    f->inv_n = 1.0f / (float)n;
    f->forward = kiss_fftr_alloc(n, 0, NULL, NULL);
    f->inverse = kiss_fftr_alloc(n, 1, NULL, NULL);
    if (!f->forward || !f->inverse) {
        demix__cpu_fft_destroy(f);
        return DEMIX_ENOMEM;
    }
    *out = f;
    return DEMIX_OK;
}

void demix__cpu_fft_destroy(demix_cpu_fft *f)
{
    if (!f)
        return;
    kiss_fftr_free(f->forward);
    kiss_fftr_free(f->inverse);
    free(f);
}

void demix__cpu_rfft(demix_cpu_fft *f, const float *in, float *out)
{
    kiss_fftr(f->forward, in, (kiss_fft_cpx *)out);
}

void demix__cpu_irfft(demix_cpu_fft *f, const float *in, float *out)
{
    kiss_fftri(f->inverse, (const kiss_fft_cpx *)in, out);
    for (int i = 0; i < f->n; i++)
        out[i] *= f->inv_n;
}
