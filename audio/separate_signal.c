/*
 * separate_signal.c - the streaming file separation pipeline of
 * separate_signal.h.
 *
 * Frame accounting, all per channel:
 *   in_frames     pushed at the input rate (N once finished);
 *   model_frames  out of the input resampler at the model rate (M);
 *   hops_fed      hops taken; past M they are zeros;
 *   hops_given    engine outputs received; output hop k (0-based) covers
 *                 model frames [(k-1)H, kH), so hop 0 is dropped and only
 *                 frames below M are kept;
 *   out_frames    emitted per source at the input rate, never more than
 *                 in_frames; after the output resampler's flush the rest
 *                 (at most a frame of rounding) is zero-padded up to N.
 * hops_total = ceil(M/H) + 1 is known only after finish(); until then a hop
 * is ready when the FIFO holds H frames.
 *
 * Thread context: the owner's thread.
 */
#include "separate_signal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"

#define FIFO_START_FRAMES 16384

struct separate_signal {
    const demix_model_config *cfg;
    int C, H, T;            /* model channels, hop, sources */
    int in_ch;              /* input = output channels */
    int nsel;               /* selected sources */
    int sel[DEMIX_MAX_SOURCES];
    separate_emit_fn emit;
    void *user;

    resampler *rs_in;       /* in_ch channels, input -> model rate */
    resampler *rs_out;      /* nsel*in_ch channels, model -> input rate */

    float *fifo;            /* model-rate frames, in_ch interleaved */
    size_t fifo_frames, fifo_cap;

    float *mix;             /* [H][nsel*in_ch] one output hop, interleaved */
    float *split;           /* [split_frames][in_ch] one source's block */
    size_t split_frames;

    int64_t in_frames, model_frames, out_frames;
    int64_t hops_fed, hops_given, hops_total; /* total: -1 until finish */
    int finished, done;
    int status;
    char error[512];
};

static int fail(separate_signal *s, int status, const char *fmt, ...)
    DEMIX_PRINTF(3, 4);
static int fail(separate_signal *s, int status, const char *fmt, ...)
{
    if (s->status == DEMIX_OK) {
        s->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->error, sizeof s->error, fmt, ap);
        va_end(ap);
    }
    return status;
}

int separate_signal_create(const demix_model_config *cfg,
                           const separate_signal_params *p,
                           separate_signal **out, char *err, size_t err_cap)
{
    if (!out || !cfg || !p || !p->emit) {
        if (err && err_cap)
            snprintf(err, err_cap, "separate: model, parameters and an emit "
                                   "callback are required");
        return DEMIX_EARG;
    }
    *out = NULL;
    if (p->in_rate_hz <= 0) {
        if (err && err_cap)
            snprintf(err, err_cap, "separate: bad sample rate %d", p->in_rate_hz);
        return DEMIX_EARG;
    }
    if (p->in_channels < 1 || p->in_channels > 2) {
        if (err && err_cap)
            snprintf(err, err_cap,
                     "%d channels: only mono and stereo can be separated",
                     p->in_channels);
        return DEMIX_EFORMAT;
    }
    if (cfg->channels < 1 || cfg->channels > 2 || cfg->num_sources < 1 ||
        cfg->num_sources > DEMIX_MAX_SOURCES || cfg->hop_samples < 1 ||
        cfg->sample_rate_hz <= 0) {
        if (err && err_cap)
            snprintf(err, err_cap, "separate: unsupported model configuration");
        return DEMIX_EARG;
    }
    separate_signal *s = calloc(1, sizeof *s);
    if (!s)
        return DEMIX_ENOMEM;
    s->cfg = cfg;
    s->C = cfg->channels;
    s->H = cfg->hop_samples;
    s->T = cfg->num_sources;
    s->in_ch = p->in_channels;
    s->emit = p->emit;
    s->user = p->user;
    s->hops_total = -1;
    for (int t = 0; t < s->T; t++)
        if (!p->source_mask || (p->source_mask >> t) & 1u)
            s->sel[s->nsel++] = t;
    int rc = DEMIX_OK;
    if (s->nsel == 0) {
        if (err && err_cap)
            snprintf(err, err_cap, "separate: no source selected");
        rc = DEMIX_EARG;
        goto fail;
    }
    rc = resampler_create(p->in_rate_hz, cfg->sample_rate_hz, s->in_ch,
                          &s->rs_in, err, err_cap);
    if (rc)
        goto fail;
    rc = resampler_create(cfg->sample_rate_hz, p->in_rate_hz,
                          s->nsel * s->in_ch, &s->rs_out, err, err_cap);
    if (rc)
        goto fail;
    s->fifo_cap = FIFO_START_FRAMES + (size_t)s->H;
    s->fifo = malloc(s->fifo_cap * (size_t)s->in_ch * sizeof *s->fifo);
    s->mix = malloc((size_t)s->H * (size_t)(s->nsel * s->in_ch) * sizeof *s->mix);
    s->split_frames = (size_t)(s->H > RESAMPLE_BLOCK_FRAMES ? s->H
                                                            : RESAMPLE_BLOCK_FRAMES);
    s->split = calloc(s->split_frames * (size_t)s->in_ch, sizeof *s->split);
    if (!s->fifo || !s->mix || !s->split) {
        rc = DEMIX_ENOMEM;
        if (err && err_cap)
            snprintf(err, err_cap, "separate: out of memory");
        goto fail;
    }
    *out = s;
    return DEMIX_OK;
fail:
    separate_signal_destroy(s);
    return rc;
}

void separate_signal_destroy(separate_signal *s)
{
    if (!s)
        return;
    resampler_destroy(s->rs_in);
    resampler_destroy(s->rs_out);
    free(s->fifo);
    free(s->mix);
    free(s->split);
    free(s);
}

/* Sink of the input resampler: append model-rate frames to the FIFO. */
static int fifo_sink(void *user, const float *frames, size_t n)
{
    separate_signal *s = user;
    if (s->fifo_frames + n > s->fifo_cap) {
        size_t cap = s->fifo_cap;
        while (cap < s->fifo_frames + n)
            cap *= 2;
        float *f = realloc(s->fifo, cap * (size_t)s->in_ch * sizeof *f);
        if (!f)
            return fail(s, DEMIX_ENOMEM, "separate: out of memory");
        s->fifo = f;
        s->fifo_cap = cap;
    }
    memcpy(s->fifo + s->fifo_frames * (size_t)s->in_ch, frames,
           n * (size_t)s->in_ch * sizeof *frames);
    s->fifo_frames += n;
    s->model_frames += (int64_t)n;
    return DEMIX_OK;
}

/* Emit n frames of zeros per source (the final length trim). */
static int emit_zeros(separate_signal *s, int64_t n)
{
    memset(s->split, 0, s->split_frames * (size_t)s->in_ch * sizeof *s->split);
    while (n > 0) {
        size_t k = n < (int64_t)s->split_frames ? (size_t)n : s->split_frames;
        for (int j = 0; j < s->nsel; j++) {
            int rc = s->emit(s->user, s->sel[j], s->split, k);
            if (rc)
                return fail(s, rc, "separate: output failed");
        }
        s->out_frames += (int64_t)k;
        n -= (int64_t)k;
    }
    return DEMIX_OK;
}

/* Sink of the output resampler: nsel*in_ch interleaved frames at the input
 * rate; cut at in_frames, split per source, emit. */
static int out_sink(void *user, const float *frames, size_t n)
{
    separate_signal *s = user;
    int64_t room = s->in_frames - s->out_frames;
    if ((int64_t)n > room)
        n = room > 0 ? (size_t)room : 0;
    size_t stride = (size_t)(s->nsel * s->in_ch);
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < s->split_frames ? n - done : s->split_frames;
        for (int j = 0; j < s->nsel; j++) {
            const float *src = frames + done * stride + (size_t)j * (size_t)s->in_ch;
            for (size_t i = 0; i < k; i++)
                for (int c = 0; c < s->in_ch; c++)
                    s->split[i * (size_t)s->in_ch + (size_t)c] = src[i * stride + (size_t)c];
            int rc = s->emit(s->user, s->sel[j], s->split, k);
            if (rc)
                return fail(s, rc, "separate: output failed");
        }
        s->out_frames += (int64_t)k;
        done += k;
    }
    return DEMIX_OK;
}

/* Everything given: drain the output resampler, pad to the input length. */
static int complete(separate_signal *s)
{
    int rc = resampler_flush(s->rs_out, out_sink, s);
    if (rc)
        return s->status ? s->status
                         : fail(s, rc, "separate: output resampler failed");
    if (s->out_frames < s->in_frames) {
        rc = emit_zeros(s, s->in_frames - s->out_frames);
        if (rc)
            return rc;
    }
    s->done = 1;
    return DEMIX_OK;
}

int separate_signal_push(separate_signal *s, const float *frames,
                         size_t n_frames)
{
    if (!s || (!frames && n_frames))
        return DEMIX_EARG;
    if (s->status)
        return s->status;
    if (s->finished)
        return fail(s, DEMIX_EARG, "separate: input pushed after its end");
    s->in_frames += (int64_t)n_frames;
    int rc = resampler_process(s->rs_in, frames, n_frames, fifo_sink, s);
    if (rc)
        return s->status ? s->status
                         : fail(s, rc, "separate: input resampler failed");
    return DEMIX_OK;
}

int separate_signal_finish(separate_signal *s)
{
    if (!s)
        return DEMIX_EARG;
    if (s->status)
        return s->status;
    if (s->finished)
        return DEMIX_OK;
    int rc = resampler_flush(s->rs_in, fifo_sink, s);
    if (rc)
        return s->status ? s->status
                         : fail(s, rc, "separate: input resampler failed");
    s->finished = 1;
    int64_t M = s->model_frames;
    s->hops_total = M == 0 ? 0 : (M + s->H - 1) / s->H + 1;
    if (s->hops_given >= s->hops_total)
        return complete(s);
    return DEMIX_OK;
}

int separate_signal_hop_ready(const separate_signal *s)
{
    if (!s || s->status || s->done)
        return 0;
    if (s->finished)
        return s->hops_fed < s->hops_total;
    return s->fifo_frames >= (size_t)s->H;
}

int separate_signal_take_hop(separate_signal *s, float *in_hop)
{
    if (!s || !in_hop)
        return DEMIX_EARG;
    if (!separate_signal_hop_ready(s))
        return s->status ? s->status : DEMIX_EARG;
    int H = s->H, C = s->C, ic = s->in_ch;
    size_t n = s->fifo_frames < (size_t)H ? s->fifo_frames : (size_t)H;
    const float *f = s->fifo;
    for (int c = 0; c < C; c++) {
        float *dst = in_hop + (size_t)c * (size_t)H;
        for (size_t k = 0; k < n; k++) {
            const float *fr = f + k * (size_t)ic;
            if (ic == C)
                dst[k] = fr[c];
            else if (ic == 1)
                dst[k] = fr[0];                   /* mono into stereo */
            else
                dst[k] = 0.5f * (fr[0] + fr[1]);  /* stereo into mono */
        }
        for (size_t k = n; k < (size_t)H; k++)
            dst[k] = 0.0f;                        /* the end's zero hops */
    }
    s->fifo_frames -= n;
    if (s->fifo_frames)
        memmove(s->fifo, s->fifo + n * (size_t)ic,
                s->fifo_frames * (size_t)ic * sizeof *s->fifo);
    s->hops_fed++;
    return DEMIX_OK;
}

int separate_signal_give_hop(separate_signal *s, const float *out_hop)
{
    if (!s || !out_hop)
        return DEMIX_EARG;
    if (s->status)
        return s->status;
    if (s->hops_given >= s->hops_fed)
        return fail(s, DEMIX_EARG, "separate: output given for no hop");
    int64_t k = s->hops_given++;
    int H = s->H, C = s->C, ic = s->in_ch;
    if (k > 0) {
        /* Hop k covers model frames [(k-1)H, kH); keep those below M. */
        int64_t keep = H;
        if (s->finished) {
            int64_t left = s->model_frames - (k - 1) * H;
            keep = left < 0 ? 0 : left < H ? left : H;
        }
        size_t stride = (size_t)(s->nsel * ic);
        for (int j = 0; j < s->nsel; j++) {
            const float *src = out_hop + (size_t)s->sel[j] * (size_t)C * (size_t)H;
            for (int c = 0; c < ic; c++) {
                float *dst = s->mix + (size_t)j * (size_t)ic + (size_t)c;
                const float *a = src + (size_t)(c < C ? c : 0) * (size_t)H;
                if (ic == 1 && C == 2) { /* mono out: the mean */
                    const float *b = src + (size_t)H;
                    for (int64_t i = 0; i < keep; i++)
                        dst[(size_t)i * stride] = 0.5f * (a[i] + b[i]);
                } else {
                    for (int64_t i = 0; i < keep; i++)
                        dst[(size_t)i * stride] = a[i];
                }
            }
        }
        if (keep > 0) {
            int rc = resampler_process(s->rs_out, s->mix, (size_t)keep,
                                       out_sink, s);
            if (rc)
                return s->status ? s->status
                                 : fail(s, rc, "separate: output resampler failed");
        }
    }
    if (s->finished && s->hops_given >= s->hops_total)
        return complete(s);
    return DEMIX_OK;
}

int separate_signal_done(const separate_signal *s)
{
    return s && s->done;
}

int64_t separate_signal_frames_in(const separate_signal *s)
{
    return s ? s->in_frames : 0;
}

int64_t separate_signal_frames_out(const separate_signal *s)
{
    return s ? s->out_frames : 0;
}

int separate_signal_status(const separate_signal *s)
{
    return s ? s->status : DEMIX_EARG;
}

const char *separate_signal_error(const separate_signal *s)
{
    return s ? s->error : "no signal";
}

int separate_signal_step(demix_engine *engine, separate_signal *const *sig,
                         const int *slots, int n, float *in_buf,
                         float *out_buf, int *slot_buf, int *stepped,
                         char *err, size_t err_cap)
{
    if (stepped)
        *stepped = 0;
    if (!engine || !sig || !slots || n < 0 || !in_buf || !out_buf ||
        !slot_buf || !stepped) {
        if (err && err_cap)
            snprintf(err, err_cap, "separate: bad step arguments");
        return DEMIX_EARG;
    }
    const demix_model_config *cfg = demix_engine_config(engine);
    size_t in_hop = (size_t)cfg->channels * (size_t)cfg->hop_samples;
    size_t out_hop = in_hop * (size_t)cfg->num_sources;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!sig[i] || !separate_signal_hop_ready(sig[i]))
            continue;
        if (separate_signal_take_hop(sig[i], in_buf + (size_t)m * in_hop))
            continue;
        slot_buf[m++] = i;
    }
    if (m == 0)
        return DEMIX_OK;
    /* slot_buf held signal indices; make them slot ids. Slots are distinct,
     * so the signals are found again below by their slot, in step order. */
    int *ids = slot_buf;
    for (int j = 0; j < m; j++)
        ids[j] = slots[ids[j]];
    int rc = demix_engine_step(engine, m, ids, in_buf, out_buf);
    if (rc) {
        if (err && err_cap)
            snprintf(err, err_cap, "%s", demix_engine_last_error(engine));
        return rc;
    }
    int j = 0;
    for (int i = 0; i < n && j < m; i++) {
        if (!sig[i] || slots[i] != ids[j])
            continue;
        /* A failure stays in that signal's status for the caller. */
        if (separate_signal_give_hop(sig[i], out_buf + (size_t)j * out_hop) &&
            !separate_signal_status(sig[i]))
            return DEMIX_EARG; /* not reached: give_hop records its failures */
        j++;
    }
    *stepped = m;
    return DEMIX_OK;
}
