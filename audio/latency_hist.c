/*
 * latency_hist.c - the fixed-size latency histogram of latency_hist.h.
 *
 * Thread context: the caller's thread.
 */
#include "latency_hist.h"

#include <math.h>
#include <string.h>

void latency_hist_init(latency_hist *h)
{
    memset(h, 0, sizeof *h);
}

static int bucket_of(double seconds)
{
    if (seconds <= LATENCY_HIST_MIN_S)
        return 0;
    double i =
        floor(log(seconds / LATENCY_HIST_MIN_S) / log(LATENCY_HIST_GROWTH));
    if (i >= LATENCY_HIST_BUCKETS - 1)
        return LATENCY_HIST_BUCKETS - 1;
    return (int)i;
}

static void bucket_add(uint32_t *b, uint64_t n)
{
    uint64_t v = (uint64_t)*b + n;
    *b = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void latency_hist_add(latency_hist *h, double seconds)
{
    if (!(seconds >= 0.0) || isinf(seconds))
        return;
    if (h->count == 0 || seconds < h->min_s)
        h->min_s = seconds;
    if (h->count == 0 || seconds > h->max_s)
        h->max_s = seconds;
    h->count++;
    h->sum_s += seconds;
    bucket_add(&h->bucket[bucket_of(seconds)], 1);
}

void latency_hist_merge(latency_hist *total, const latency_hist *part)
{
    if (part->count == 0)
        return;
    if (total->count == 0 || part->min_s < total->min_s)
        total->min_s = part->min_s;
    if (total->count == 0 || part->max_s > total->max_s)
        total->max_s = part->max_s;
    total->count += part->count;
    total->sum_s += part->sum_s;
    for (int i = 0; i < LATENCY_HIST_BUCKETS; i++)
        if (part->bucket[i])
            bucket_add(&total->bucket[i], part->bucket[i]);
}

double latency_hist_quantile(const latency_hist *h, double q)
{
    if (h->count == 0)
        return 0.0;
    if (q <= 0.0)
        return h->min_s;
    if (q >= 1.0)
        return h->max_s;
    /* Buckets may have saturated: rank against their own sum. */
    uint64_t total = 0;
    for (int i = 0; i < LATENCY_HIST_BUCKETS; i++)
        total += h->bucket[i];
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    int i = 0;
    for (; i < LATENCY_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank)
            break;
    }
    if (i == LATENCY_HIST_BUCKETS)
        i = LATENCY_HIST_BUCKETS - 1;
    double v = LATENCY_HIST_MIN_S * pow(LATENCY_HIST_GROWTH, i + 0.5);
    if (v < h->min_s)
        v = h->min_s;
    if (v > h->max_s)
        v = h->max_s;
    return v;
}

double latency_hist_mean(const latency_hist *h)
{
    return h->count ? h->sum_s / (double)h->count : 0.0;
}
