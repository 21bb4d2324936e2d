/*
 * sdr.c - the SDR sums and summaries of sdr.h.
 *
 * Thread context: the caller's thread.
 */
#include "sdr.h"

#include <math.h>
#include <stdlib.h>

void sdr_sum_init(sdr_sum *sum)
{
    sum->ref_energy = 0.0;
    sum->err_energy = 0.0;
    sum->samples = 0;
}

void sdr_sum_add(sdr_sum *sum, const float *ref, const float *est,
                 size_t n_samples)
{
    double ref_energy = 0.0, err_energy = 0.0;
    for (size_t i = 0; i < n_samples; i++) {
        double s = ref ? (double)ref[i] : 0.0;
        double d = s - (est ? (double)est[i] : 0.0);
        ref_energy += s * s;
        err_energy += d * d;
    }
    /* Per-block partial sums keep the terms of one block together before
     * they meet the (much larger) running total. */
    sum->ref_energy += ref_energy;
    sum->err_energy += err_energy;
    sum->samples += (int64_t)n_samples;
}

double sdr_sum_db(const sdr_sum *sum)
{
    if (sum->samples <= 0 ||
        sum->ref_energy / (double)sum->samples < SDR_SILENT_MEAN_SQUARE)
        return NAN;
    if (sum->err_energy <= 0.0)
        return SDR_MAX_DB;
    double db = 10.0 * log10(sum->ref_energy / sum->err_energy);
    return db > SDR_MAX_DB ? SDR_MAX_DB : db;
}

int sdr_is_na(double db)
{
    return isnan(db);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sdr_median(const double *values, size_t n, double *scratch)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!sdr_is_na(values[i]))
            scratch[m++] = values[i];
    if (m == 0)
        return NAN;
    qsort(scratch, m, sizeof *scratch, compare_double);
    if (m % 2)
        return scratch[m / 2];
    return 0.5 * (scratch[m / 2 - 1] + scratch[m / 2]);
}

double sdr_mean(const double *values, size_t n)
{
    double total = 0.0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!sdr_is_na(values[i])) {
            total += values[i];
            m++;
        }
    return m ? total / (double)m : NAN;
}
