/*
 * latency.c - measured path latency with a small cache (latency.h).
 *
 * Thread context: any thread; `cache_lock` guards the cache.
 */
#include "latency.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "resample.h"

#define CACHE_SIZE 64

typedef struct entry {
    int client, model, hop;
    demixd_latency lat;
} entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static entry cache[CACHE_SIZE];
static int cache_n;

static int count_sink(void *user, const float *frames, size_t n)
{
    (void)frames;
    *(int64_t *)user += (int64_t)n;
    return DEMIX_OK;
}

static int measure(int client, int model, int H, demixd_latency *lat)
{
    resampler *rs_in = NULL, *rs_out = NULL;
    float *zeros =
        calloc((size_t)(H > LATENCY_CHUNK_FRAMES ? H : LATENCY_CHUNK_FRAMES),
               sizeof *zeros);
    int rc = zeros ? DEMIX_OK : DEMIX_ENOMEM;
    if (!rc)
        rc = resampler_create(client, model, 1, &rs_in, NULL, 0);
    if (!rc)
        rc = resampler_create(model, client, 1, &rs_out, NULL, 0);
    const double r_in = (double)model / client, r_out = (double)client / model;
    int64_t sent = 0, model_frames = 0, reached = 0, out_fed = 0, k = 1;
    int64_t total = (int64_t)client * 3 / 4;
    if (total < 8 * (int64_t)H)
        total = 8 * (int64_t)H;
    double trail = 0, in_lag = 0, out_lag = 0;
    while (!rc && sent < total) {
        int64_t before = reached;
        rc = resampler_process(rs_in, zeros, LATENCY_CHUNK_FRAMES, count_sink,
                               &model_frames);
        sent += LATENCY_CHUNK_FRAMES;
        double li = (double)sent * r_in - (double)model_frames;
        if (li > in_lag)
            in_lag = li;
        /* output hop k is ready once input hop k is complete */
        while (!rc && model_frames >= (k + 1) * (int64_t)H) {
            rc = resampler_process(rs_out, zeros, (size_t)H, count_sink,
                                   &reached);
            out_fed += H;
            k++;
            double lo = (double)out_fed * r_out - (double)reached;
            if (lo > out_lag)
                out_lag = lo;
        }
        if (reached > before && (double)(sent - before) > trail)
            trail = (double)(sent - before);
    }
    resampler_destroy(rs_in);
    resampler_destroy(rs_out);
    free(zeros);
    if (rc)
        return rc;
    lat->frames = (int)ceil(trail);
    lat->in_lag_max = (int)ceil(in_lag);
    lat->out_lag_max = (int)ceil(out_lag);
    return DEMIX_OK;
}

int demixd_latency_get(int client_rate_hz, int model_rate_hz, int hop_frames,
                       demixd_latency *out)
{
    if (client_rate_hz <= 0 || model_rate_hz <= 0 || hop_frames < 1 || !out)
        return DEMIX_EARG;
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < cache_n; i++)
        if (cache[i].client == client_rate_hz &&
            cache[i].model == model_rate_hz && cache[i].hop == hop_frames) {
            *out = cache[i].lat;
            pthread_mutex_unlock(&cache_lock);
            return DEMIX_OK;
        }
    pthread_mutex_unlock(&cache_lock);
    demixd_latency lat;
    int rc = measure(client_rate_hz, model_rate_hz, hop_frames, &lat);
    if (rc)
        return rc;
    pthread_mutex_lock(&cache_lock);
    if (cache_n < CACHE_SIZE)
        cache[cache_n++] =
            (entry){client_rate_hz, model_rate_hz, hop_frames, lat};
    pthread_mutex_unlock(&cache_lock);
    *out = lat;
    return DEMIX_OK;
}
