/*
 * resample.c - soxr behind resample.h.
 *
 * soxr_process() may keep part of its input when the output block is full;
 * process() therefore loops until all input is taken and the last call left
 * room in the block (nothing more pending). The flush loop calls soxr with
 * in = NULL (soxr's end-of-input) until it returns nothing.
 *
 * Thread context: the owner's thread.
 */
#include "resample.h"

#include <stdio.h>
#include <stdlib.h>

#include <soxr.h>

struct resampler {
    soxr_t soxr;          /* NULL when the rates are equal */
    int channels;
    double ratio;
    int flushed;
    float *block;         /* [RESAMPLE_BLOCK_FRAMES * channels] */
};

int resampler_create(int in_rate_hz, int out_rate_hz, int channels,
                     resampler **out, char *err, size_t err_cap)
{
    if (!out || in_rate_hz <= 0 || out_rate_hz <= 0 || channels < 1) {
        if (err && err_cap)
            snprintf(err, err_cap, "resampler: bad rates or channels");
        return DEMIX_EARG;
    }
    *out = NULL;
    resampler *r = calloc(1, sizeof *r);
    if (!r)
        return DEMIX_ENOMEM;
    r->channels = channels;
    r->ratio = (double)out_rate_hz / in_rate_hz;
    if (in_rate_hz != out_rate_hz) {
        r->block = malloc((size_t)RESAMPLE_BLOCK_FRAMES * (size_t)channels *
                          sizeof *r->block);
        if (!r->block) {
            free(r);
            return DEMIX_ENOMEM;
        }
        soxr_error_t e = NULL;
        soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        soxr_runtime_spec_t rt = soxr_runtime_spec(1);
        r->soxr = soxr_create(in_rate_hz, out_rate_hz, (unsigned)channels, &e,
                              &io, &q, &rt);
        if (!r->soxr || e) {
            if (err && err_cap)
                snprintf(err, err_cap, "resampler %d -> %d Hz: %s", in_rate_hz,
                         out_rate_hz, soxr_strerror(e));
            if (r->soxr)
                soxr_delete(r->soxr);
            free(r->block);
            free(r);
            return DEMIX_EARG;
        }
    }
    *out = r;
    return DEMIX_OK;
}

int resampler_process(resampler *r, const float *in, size_t n_frames,
                      resampler_sink sink, void *user)
{
    if (!r || (!in && n_frames) || r->flushed)
        return DEMIX_EARG;
    if (n_frames == 0)
        return DEMIX_OK;
    if (!r->soxr)
        return sink(user, in, n_frames);
    for (;;) {
        size_t idone = 0, odone = 0;
        soxr_error_t e = soxr_process(r->soxr, in, n_frames, &idone, r->block,
                                      RESAMPLE_BLOCK_FRAMES, &odone);
        if (e)
            return DEMIX_EARG;
        in += idone * (size_t)r->channels;
        n_frames -= idone;
        if (odone) {
            int rc = sink(user, r->block, odone);
            if (rc)
                return rc;
        }
        if (n_frames == 0 && odone < RESAMPLE_BLOCK_FRAMES)
            return DEMIX_OK;
    }
}

int resampler_flush(resampler *r, resampler_sink sink, void *user)
{
    if (!r || r->flushed)
        return DEMIX_EARG;
    r->flushed = 1;
    if (!r->soxr)
        return DEMIX_OK;
    for (;;) {
        size_t odone = 0;
        soxr_error_t e = soxr_process(r->soxr, NULL, 0, NULL, r->block,
                                      RESAMPLE_BLOCK_FRAMES, &odone);
        if (e)
            return DEMIX_EARG;
        if (odone == 0)
            return DEMIX_OK;
        int rc = sink(user, r->block, odone);
        if (rc)
            return rc;
    }
}

double resampler_ratio(const resampler *r)
{
    return r ? r->ratio : 1.0;
}

void resampler_destroy(resampler *r)
{
    if (!r)
        return;
    if (r->soxr)
        soxr_delete(r->soxr);
    free(r->block);
    free(r);
}
