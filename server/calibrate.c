/*
 * calibrate.c - the start-up capacity measurement of calibrate.h.
 *
 * The steps are timed as the scheduler runs them (scheduler.c): input in the
 * engine's own buffer, submit + collect, output left in the engine's.
 *
 * Thread context: the main thread, before the scheduler starts.
 */
#include "calibrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define WARMUP 2
#define STEPS 5

/* The share of a hop period a step may take at the calibrated capacity.
 * The rest is for what runs beside the engine: the lws thread's socket,
 * codec and resampling work, and step-time jitter (p99 against the median
 * calibrated on). Measured 2026-12-02 on 2 cores with the shipped model:
 * with the whole period (capacity 24), `demix loadgen` on the same machine
 * kept 16 sessions at real time for 20 s and fell behind at 20; 0.7 gives
 * about 17. */
#define STEP_BUDGET 0.7

typedef struct cal {
    demix_engine *eng;
    double time_scale;
    int C, H, opened, max;
    int *slots;
    float *in; /* random input for max rows, copied into the engine's */
} cal;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median step time in ms for B streams; opens slots as needed. */
static int measure(cal *c, int B, double *ms)
{
    /* the engine's buffers for B rows, allocated here (outside the timed
     * steps) as B grows, as the scheduler's are once at its start */
    int rc = demix_engine_reserve_io(c->eng, B);
    if (rc)
        return rc;
    while (c->opened < B) {
        rc = demix_engine_open_slot(c->eng, &c->slots[c->opened]);
        if (rc)
            return rc;
        c->opened++;
    }
    double t[STEPS];
    const size_t in_bytes = (size_t)B * (size_t)(c->C * c->H) * sizeof *c->in;
    for (int i = 0; i < WARMUP + STEPS; i++) {
        float *in = demix_engine_input_buffer(c->eng, B);
        if (!in)
            return DEMIX_ENOMEM;
        memcpy(in, c->in, in_bytes);
        int64_t t0 = demixd_now_ns();
        rc = demix_engine_submit(c->eng, B, c->slots, in);
        if (!rc)
            rc = demix_engine_collect(c->eng, NULL);
        if (rc)
            return rc;
        if (i >= WARMUP)
            t[i - WARMUP] =
                (double)(demixd_now_ns() - t0) * 1e-6 * c->time_scale;
    }
    qsort(t, STEPS, sizeof *t, cmp_double);
    *ms = t[STEPS / 2];
    demixd_log(DEMIXD_LOG_DEBUG, "calibrate_point", "batch=%d step_ms=%.3f", B,
               *ms);
    return DEMIX_OK;
}

int demixd_calibrate(const demix_model *model, const demix_engine_options *opt,
                     int max_slots, double time_scale, demixd_calibration *out,
                     char *err, size_t err_cap)
{
    if (!model || !opt || !out || max_slots < 1 || !(time_scale > 0.0))
        return DEMIX_EARG;
    memset(out, 0, sizeof *out);
    cal c = {0};
    c.time_scale = time_scale;
    demix_engine_options o = *opt;
    int rc;
    for (;;) {
        o.max_slots = max_slots;
        rc = demix_engine_create(model, &o, &c.eng, err, err_cap);
        if (rc != DEMIX_ENOMEM || max_slots == 1)
            break;
        max_slots /= 2;
    }
    if (rc)
        return rc;
    const demix_model_config *cfg = demix_engine_config(c.eng);
    c.C = cfg->channels;
    c.H = cfg->hop_samples;
    c.max = max_slots;
    c.slots = calloc((size_t)max_slots, sizeof *c.slots);
    c.in = malloc((size_t)max_slots * (size_t)(c.C * c.H) * sizeof *c.in);
    if (!c.slots || !c.in) {
        rc = DEMIX_ENOMEM;
        snprintf(err, err_cap, "calibration: out of memory");
        goto done;
    }
    uint32_t x = 20240227u;
    for (size_t i = 0; i < (size_t)max_slots * (size_t)(c.C * c.H); i++) {
        x = x * 1664525u + 1013904223u;
        c.in[i] = (float)(x >> 8) / (float)(1u << 24) - 0.5f;
    }
    out->hop_ms = 1e3 * c.H / cfg->sample_rate_hz;
    const double budget_ms = STEP_BUDGET * out->hop_ms;

    int lo = 0, hi = 0; /* lo fits (0: none yet), hi does not (0: none) */
    double lo_ms = 0, ms = 0;
    for (int B = 1;;
         B = B * 2 > max_slots && B < max_slots ? max_slots : B * 2) {
        if ((rc = measure(&c, B, &ms)))
            goto engine_error;
        if (ms <= budget_ms) {
            lo = B;
            lo_ms = ms;
        } else {
            hi = B;
            break;
        }
        if (B >= max_slots)
            break;
    }
    while (lo && hi && hi - lo > (lo / 16 > 1 ? lo / 16 : 1)) {
        int mid = lo + (hi - lo) / 2;
        if ((rc = measure(&c, mid, &ms)))
            goto engine_error;
        if (ms <= budget_ms) {
            lo = mid;
            lo_ms = ms;
        } else {
            hi = mid;
        }
    }
    out->fits_at_one = lo > 0;
    out->capacity = lo > 0 ? lo : 1;
    out->step_ms = lo > 0 ? lo_ms : ms;
    rc = DEMIX_OK;
    goto done;
engine_error:
    snprintf(err, err_cap, "calibration step failed: %s",
             demix_engine_last_error(c.eng));
done:
    free(c.slots);
    free(c.in);
    demix_engine_destroy(c.eng);
    return rc;
}
