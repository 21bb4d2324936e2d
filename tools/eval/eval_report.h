/*
 * eval_report.h - what `demix eval` prints: the per-track progress line,
 * the table (one row per track, one column per source, the medians, the
 * mean SDR) and the JSON object of --json (docs/eval.md).
 *
 * Thread context: the main thread.
 */
#ifndef DEMIX_EVAL_REPORT_H
#define DEMIX_EVAL_REPORT_H

#include <stddef.h>

#include "engine.h"
#include "eval_dataset.h"

/* The sources scored, in column order. */
typedef struct source_list {
    int count;
    char names[DEMIX_MAX_SOURCES][DEMIX_SOURCE_NAME_BYTES];
    int model_index[DEMIX_MAX_SOURCES]; /* into cfg->source_names */
} source_list;

/* One track's SDR per source, in the source_list's order; NAN: n/a. */
typedef struct track_scores {
    double sdr_db[DEMIX_MAX_SOURCES];
} track_scores;

/* "drums 5.123, bass n/a, ..." into out (truncated to cap). */
void eval_report_track_line(const track_scores *t, const source_list *sources,
                            char *out, size_t cap);

/* The table on stdout. medians per source and mean: NAN for n/a. */
void eval_report_table(const eval_track *tracks, const track_scores *scores,
                       int n_tracks, const source_list *sources,
                       const double *medians, double mean);

/* The JSON object on stdout; model_path, engine and estimates_dir may be
 * NULL (null in the output). 0, or -1 (reported) when out of memory. */
int eval_report_json(const eval_track *tracks, const track_scores *scores,
                     int n_tracks, const source_list *sources,
                     const double *medians, double mean, const char *model_path,
                     const demix_engine *engine, const char *estimates_dir);

#endif /* DEMIX_EVAL_REPORT_H */
