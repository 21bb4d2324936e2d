/*
 * loadgen_report.h - the figures of one `demix loadgen` round (N sessions
 * for S seconds), gathered from its sessions, and their three forms: the
 * text report of a single run, one row of the ramp table, and a JSON
 * object (docs/loadgen.md documents every field).
 *
 * The round holds when no session was refused or failed, no hop was lost,
 * the p99 of the added latency is at most max_p99_ms, and at least
 * LOADGEN_HELD_FRACTION of the sessions kept up.
 *
 * Thread context: the main thread, after the round's threads have been
 * joined.
 */
#ifndef DEMIX_LOADGEN_REPORT_H
#define DEMIX_LOADGEN_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "latency_hist.h"
#include "loadgen_chaos.h"
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

/* One thread's share of the round. */
typedef struct loadgen_thread_figures {
    int sessions;
    double user_s, sys_s; /* CPU time over the round (RUSAGE_THREAD) */
    double wall_s;        /* the thread's time, start to its last close */
} loadgen_thread_figures;

/* The sampled sessions' comparison with the reference. */
typedef struct loadgen_verify_summary {
    int enabled;    /* a reference was made */
    int sampled;    /* sessions sampled that got ready */
    int complete;   /* of those, compared over the whole span */
    int identical;  /* bit-identical to the reference */
    int mismatched; /* SNR below min_snr_db */
    double snr_db_min; /* the lowest SNR of a complete, non-identical
                          session; INFINITY when there is none */
    double min_snr_db; /* the threshold */
} loadgen_verify_summary;

typedef struct loadgen_round {
    int sessions;        /* N */
    double seconds;      /* of audio per session, as asked */
    int interrupted;     /* Ctrl-C ended it early */
    double wall_s;       /* first connect to last close */
    double client_cpu_s; /* this process's CPU time meanwhile */
    double main_cpu_s;   /* the main thread's */
    int threads;
    loadgen_thread_figures *thread; /* threads entries (the caller's) */
    int64_t rss_bytes_per_session;  /* resident memory grown by the round,
                                       per session started, at the loaded
                                       moment; 0: not measured */
    int rate_hz;
    double hop_ms;     /* one input message (the client's hop) */
    double late_ms;    /* a client late hop: added latency above this */
    double max_p99_ms; /* held: p99 added latency at most this */

    int started, ready, ok, refused, failed, kept_up;
    double audio_s;            /* real-time audio streamed, all sessions */
    long long frames_expected; /* positions sent x stems (ready sessions) */
    long long frames_received; /* of those, received */
    unsigned long long hops, late_hops; /* the summaries' sums */
    int summaries;
    int latency_frames_max; /* announced, the largest */
    double lag_end_max_s;
    latency_hist latency; /* every session's samples */
    latency_hist added;   /* the same beyond the announced latency (the
                             caller's: merged from the threads) */
    long long timed_hops, client_late_hops, lost_hops;
    long long reconnects; /* outages the sessions survived */
    loadgen_verify_summary verify; /* enabled, min_snr_db: the caller's */

    int error_groups;
    int errors_ungrouped; /* beyond LOADGEN_ERROR_GROUPS groups */
    loadgen_error_group errors[LOADGEN_ERROR_GROUPS];

    loadgen_server_view before, loaded, after;
    int held; /* see above */

    int chaos_enabled;          /* --chaos: chaos clients ran beside */
    loadgen_chaos_report chaos; /* their episodes (loadgen_chaos.h) */
} loadgen_round;

/* Fill the session figures of r from n sessions that have all ended, and
 * judge it. The caller's beforehand: sessions, seconds, the server views,
 * threads, added, late_ms, max_p99_ms, hop_ms, verify.enabled and
 * verify.min_snr_db. */
void loadgen_round_collect(loadgen_round *r, const loadgen_session *s, int n);

/* The round's p99 added latency in ms (0 when nothing was timed). */
double loadgen_round_added_p99_ms(const loadgen_round *r);

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

/* The round as a JSON object, with one entry per session in session_list
 * when with_sessions (else no session_list); NULL when out of memory. */
cJSON *loadgen_report_json(const loadgen_round *r, const loadgen_session *s,
                           int n, int with_sessions);

#endif /* DEMIX_LOADGEN_REPORT_H */
