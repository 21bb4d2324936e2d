/*
 * sdr.h - the signal-to-distortion ratio of `demix eval`, as the Music
 * Demixing challenges score it (one figure per source and track, no
 * framing, no projection):
 *
 *     SDR = 10 log10( sum s^2 / sum (s - s_hat)^2 )   [dB]
 *
 * over every sample of every channel, s the reference, s_hat the estimate;
 * and its summaries over tracks: the median per source with the n/a entries
 * left out, and the mean of those medians.
 *
 * Usage sketch:
 *
 *     sdr_sum sum;
 *     sdr_sum_init(&sum);
 *     while (blocks)                         // any split, same result
 *         sdr_sum_add(&sum, ref, est, frames * channels);
 *     double db = sdr_sum_db(&sum);          // NAN: n/a (silent reference)
 *     double med = sdr_median(per_track_db, n_tracks, scratch);
 *
 * n/a is NAN throughout: a silent reference has no SDR (see
 * SDR_SILENT_MEAN_SQUARE), and medians and means skip such entries.
 *
 * Sums are kept in double: a 4-minute stereo track has 2e7 samples, and a
 * float sum would lose the small terms of the error long before the end.
 *
 * Thread context: any thread; no shared state.
 */
#ifndef DEMIX_SDR_H
#define DEMIX_SDR_H

#include <stddef.h>
#include <stdint.h>

/* A reference whose mean square per sample is below this is silent: its
 * SDR is n/a. The level is one step of 16-bit audio squared (an RMS of
 * 1/32768, -90.3 dBFS), the format music data sets ship their stems in.
 * Below it a stem holds nothing but rounding and dither (or is digital
 * silence, where the ratio is 0/x): the ratio would score that noise and
 * swing by tens of dB on a track where the source simply does not play.
 * A source that plays anywhere in a track is far above it: 2 s at -40 dBFS
 * in 4 minutes is a mean square of 8e-7. */
#define SDR_SILENT_MEAN_SQUARE (1.0 / (32768.0 * 32768.0))

/* The SDR of an estimate equal to its reference is infinite; it is given
 * as this instead, so it stays a number in JSON and in means. float32
 * samples resolve about 144 dB (24-bit mantissa): above 150 dB reference
 * and estimate are the same numbers, rounding aside. */
#define SDR_MAX_DB 150.0

typedef struct sdr_sum {
    double ref_energy; /* sum s^2 */
    double err_energy; /* sum (s - s_hat)^2 */
    int64_t samples;   /* samples added (frames x channels) */
} sdr_sum;

void sdr_sum_init(sdr_sum *sum);

/* Add n_samples samples. ref and est have the same layout (interleaved
 * frames, say); ref NULL stands for a silent reference, est NULL for a
 * silent estimate. */
void sdr_sum_add(sdr_sum *sum, const float *ref, const float *est,
                 size_t n_samples);

/* The SDR in dB, at most SDR_MAX_DB; NAN (n/a) when no samples were added
 * or the reference is silent (mean square below SDR_SILENT_MEAN_SQUARE). */
double sdr_sum_db(const sdr_sum *sum);

/* 1 when db is n/a. */
int sdr_is_na(double db);

/* Median of the n values that are not n/a (the mean of the middle two when
 * their count is even); NAN when all are n/a or n is 0. values is not
 * changed; scratch is the caller's room for n doubles. */
double sdr_median(const double *values, size_t n, double *scratch);

/* Mean of the n values that are not n/a; NAN when all are n/a. */
double sdr_mean(const double *values, size_t n);

#endif /* DEMIX_SDR_H */
