/*
 * calibrate.h - how many sessions this engine serves in real time, measured
 * at start-up with the real model (the default of --max-sessions).
 *
 * Method: an engine with max_slots slots; for B = 1, 2, 4, ... it runs
 * WARMUP steps of B slots, then STEPS timed steps, and takes the median
 * step time. B fits when the median is at most STEP_BUDGET (0.7, see
 * calibrate.c) of one hop period (H / rate): the rest of the period is
 * for the server's socket and codec work and for step jitter.
 * After the first B that does not fit, a bisection between it and the last
 * that did narrows the answer to within 1/16. capacity = the largest B
 * that fits, at least 1 (logged as a warning when even B = 1 is slower
 * than the budget). Stricter than `demix bench`'s realtime column, which
 * counts the whole period for the engine alone.
 *
 * One run can be fooled by a machine that is busy at start (another
 * service starting, a build): its steps are slower than the engine is, so
 * the capacity comes out low, for the server's whole life. main.c
 * therefore takes the best of several runs (make_engine: CALIBRATE_RUNS,
 * more while they disagree) and logs every run.
 *
 * Threads: the calling thread (main, at start-up); the engine it creates
 * uses opt->pool if given, and is destroyed before returning.
 */
#ifndef DEMIXD_CALIBRATE_H
#define DEMIXD_CALIBRATE_H

#include <stddef.h>

#include "engine.h"

typedef struct demixd_calibration {
    int capacity;    /* largest B whose step fits the budget, >= 1 */
    double step_ms;  /* median step time at B = capacity */
    double hop_ms;   /* the hop period */
    int fits_at_one; /* 0 when even one stream's step exceeds the budget */
} demixd_calibration;

/* DEMIX_OK or the engine's status (err says why). max_slots bounds the
 * search (the engine is created with it, halved on DEMIX_ENOMEM).
 * time_scale multiplies every measured step time: 1 in production; the
 * test hook DEMIXD_TEST_CALIBRATE_BUSY (main.c) passes more to act out a
 * machine busy at start. */
DEMIX_WARN_UNUSED int demixd_calibrate(const demix_model *model,
                                       const demix_engine_options *opt,
                                       int max_slots, double time_scale,
                                       demixd_calibration *out, char *err,
                                       size_t err_cap);

#endif /* DEMIXD_CALIBRATE_H */
