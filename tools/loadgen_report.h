/*
 * loadgen_report.h - the figures of one `demix loadgen` round (N sessions
 * for S seconds), gathered from its sessions, and their three forms: the
 * text report of a single run, one row of the ramp table, and a JSON
 * object (docs/loadgen.md documents every field).
 *
 * Thread context: the main thread.
 */
#ifndef DEMIX_LOADGEN_REPORT_H
#define DEMIX_LOADGEN_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "latency_hist.h"
#include "loadgen_session.h"
#include "loadgen_stats.h"

#define LOADGEN_ERROR_GROUPS 16
#define LOADGEN_HELD_FRACTION 0.95 /* of the sessions must keep up */

/* Sessions that ended the same way: same outcome, failure, server code
 * and close code. */
typedef struct loadgen_error_group {
    loadgen_outcome outcome; /* REFUSED or FAILED */
    loadgen_failure failure;
    int has_code;
    demix_proto_code code;
    int close_code;
    int count;
    char example[256]; /* the first one's message */
} loadgen_error_group;

/* The server's stats at one moment: asked, answered (stats) or not (err). */
typedef struct loadgen_server_view {
    int asked;
    int ok;
    demix_proto_stats stats;
    char err[512];
} loadgen_server_view;

typedef struct loadgen_round {
    int sessions;        /* N */
    double seconds;      /* of audio per session, as asked */
    int interrupted;     /* Ctrl-C ended it early */
    double wall_s;       /* first connect to last close */
    double client_cpu_s; /* this process's CPU time meanwhile */
    int rate_hz;

    int started, ready, ok, refused, failed, kept_up;
    double audio_s;            /* real-time audio streamed, all sessions */
    long long frames_expected; /* positions sent x stems (ready sessions) */
    long long frames_received; /* of those, received */
    unsigned long long hops, late_hops; /* the summaries' sums */
    int summaries;
    int latency_frames_max; /* announced, the largest */
    double lag_end_max_s;
    latency_hist latency; /* every session's samples */

    int error_groups;
    int errors_ungrouped; /* beyond LOADGEN_ERROR_GROUPS groups */
    loadgen_error_group errors[LOADGEN_ERROR_GROUPS];

    loadgen_server_view before, loaded, after;
    int held; /* no refusal, no failure, >= 95% kept up */
} loadgen_round;

/* Fill the session figures of r (sessions, seconds and the server views
 * are the caller's) from n sessions that have all ended. */
void loadgen_round_collect(loadgen_round *r, const loadgen_session *s, int n);

/* Copy a finished stats request into a view. */
void loadgen_server_view_set(loadgen_server_view *v, const loadgen_stats *q);

/* The single run's report; verbose adds a line per session. */
void loadgen_report_text(FILE *out, const loadgen_round *r,
                         const loadgen_session *s, int n, int verbose);

/* The ramp's table. */
void loadgen_report_ramp_header(FILE *out);
void loadgen_report_ramp_row(FILE *out, const loadgen_round *r);

/* Why a round did not hold, in a few words ("" when it held). */
void loadgen_round_verdict(const loadgen_round *r, char *out, size_t cap);

/* The round as a JSON object, with one entry per session; NULL when out of
 * memory. */
cJSON *loadgen_report_json(const loadgen_round *r, const loadgen_session *s,
                           int n);

#endif /* DEMIX_LOADGEN_REPORT_H */
