/*
 * latency_hist.h - a fixed-size histogram of durations (latency samples)
 * with quantiles: logarithmic buckets 3% wide from 10 us to about 1600 s,
 * so any number of samples takes the same 2.6 KB and a quantile is within
 * 1.5% of the exact order statistic (the count, minimum, maximum and mean
 * are exact). Two histograms add up (one per session, one over all).
 *
 * Usage sketch:
 *
 *     latency_hist h;
 *     latency_hist_init(&h);
 *     latency_hist_add(&h, 0.0421);          // seconds
 *     double p99 = latency_hist_quantile(&h, 0.99);
 *     latency_hist_merge(&total, &h);
 *
 * Quantiles use the nearest rank (the smallest sample with at least q of
 * the samples at or below it), reported as the geometric middle of its
 * bucket, clamped to [min, max]. Samples below 10 us count in the first
 * bucket, above the range in the last; negative or NaN samples are
 * ignored.
 *
 * Thread context: a histogram belongs to one thread at a time.
 */
#ifndef DEMIX_LATENCY_HIST_H
#define DEMIX_LATENCY_HIST_H

#include <stdint.h>

#define LATENCY_HIST_BUCKETS 640
#define LATENCY_HIST_MIN_S 1e-5
#define LATENCY_HIST_GROWTH 1.03 /* bucket i: [min * g^i, min * g^(i+1)) */

typedef struct latency_hist {
    uint64_t count;
    double sum_s;
    double min_s, max_s;                   /* valid when count > 0 */
    uint32_t bucket[LATENCY_HIST_BUCKETS]; /* saturate at UINT32_MAX */
} latency_hist;

void latency_hist_init(latency_hist *h);
void latency_hist_add(latency_hist *h, double seconds);
/* total += part. */
void latency_hist_merge(latency_hist *total, const latency_hist *part);
/* q in [0, 1]; 0 when the histogram is empty. */
double latency_hist_quantile(const latency_hist *h, double q);
/* Mean of the samples; 0 when empty. */
double latency_hist_mean(const latency_hist *h);

#endif /* DEMIX_LATENCY_HIST_H */
