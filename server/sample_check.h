/*
 * sample_check.h - the one rule for decoded float input, live sessions
 * (session_in.c, pcm_f32) and the file API (files.c) alike: every sample
 * is finite and within [-DEMIXD_SAMPLE_LIMIT, DEMIXD_SAMPLE_LIMIT]; input
 * that breaks it is refused (bad_audio) with the place of the first bad
 * sample, never passed on. NaN, an infinity or a sample near FLT_MAX
 * would make the engine's state non-finite for the rest of the session;
 * the limit (24 dB above full scale) leaves room for hot mixes and
 * inter-sample peaks and still keeps every product of the model finite.
 * s16 and Opus input cannot break it.
 *
 * Thread context: any (pure functions).
 */
#ifndef DEMIXD_SAMPLE_CHECK_H
#define DEMIXD_SAMPLE_CHECK_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

#define DEMIXD_SAMPLE_LIMIT 16.0f

/* Index of the first sample of x[0..n) that is not finite or beyond the
 * limit, or n when all are good. */
static inline size_t demixd_first_bad_sample(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= DEMIXD_SAMPLE_LIMIT)) /* NaN fails too */
            return i;
    return n;
}

/* "NaN", "inf", "-inf" or the value, for an error sentence. */
static inline const char *demixd_sample_text(float v, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "NaN");
    else if (isinf(v))
        snprintf(buf, cap, "%sinf", v < 0 ? "-" : "");
    else
        snprintf(buf, cap, "%.9g", (double)v);
    return buf;
}

#endif /* DEMIXD_SAMPLE_CHECK_H */
