/*
 * metrics.h - the server's counters: what /metrics exports (Prometheus text
 * format 0.0.4) and what a `stats` reply and /v1/health report.
 *
 *   demixd_sessions                 gauge   live WebSocket sessions
 *   demixd_max_sessions             gauge   the session limit
 *   demixd_capacity_sessions        gauge   measured real-time capacity
 *   demixd_hops_total               counter session-hops stepped (live+file)
 *   demixd_late_hops_total          counter live hops computed after their
 *                                           real-time deadline
 *   demixd_steps_total              counter engine steps
 *   demixd_step_errors_total        counter failed engine steps
 *   demixd_step_seconds             histogram engine step time
 *   demixd_batch_size               histogram hops per step
 *   demixd_paused_sessions{direction="input"|"output"}
 *                                   gauge   sessions paused by flow control
 *   demixd_file_jobs                gauge   file API jobs in progress
 *   demixd_file_jobs_total{result=...} counter finished file API jobs
 *   demixd_sessions_total{result=...}  counter ended sessions by outcome
 *   demixd_auth_refused_total{api="stream"|"file"}
 *   demixd_address_refused_total
 *                                   counter clients refused for a missing
 *                                           or wrong token
 *   demixd_uptime_seconds           gauge
 *   demixd_service_cpu_seconds_total{thread="K"}
 *                                   counter CPU time of each service thread
 *   demixd_service_phase_seconds_total{phase=...}
 *   demixd_service_phase_calls_total{phase=...}
 *                                   counter time inside, and calls of, each
 *                                           kind of service-thread work
 *                                           (demixd_service_phase), all
 *                                           threads; the rest of the
 *                                           threads' CPU is lws's loop and
 *                                           the kernel's socket calls
 *
 * Usage sketch:
 *
 *     demixd_metrics_step(m, seconds, batch, live_hops, late_hops); // sched
 *     demixd_metrics_recent(m, &p50_ms, &p99_ms, &batch_mean);   // stats
 *     demixd_metrics_render(m, &gauges, buf, cap, &len);         // /metrics
 *
 * Threads: the scheduler records steps; the lws thread and file workers
 * record their own counters and read. Every field is guarded by the
 * metrics' mutex; nothing here is called on a per-hop path other than once
 * per step.
 */
#ifndef DEMIXD_METRICS_H
#define DEMIXD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

typedef struct demixd_metrics demixd_metrics;

/* The kinds of work a service thread times (callbacks.c): a WebSocket
 * message received (protocol, decode, into the session's lane), a socket
 * ready to write (hops out of the lane, encode, frame, send), and a
 * wake-up by the scheduler (draining the thread's ready ring). */
typedef enum demixd_service_phase {
    DEMIXD_PHASE_RECEIVE = 0,
    DEMIXD_PHASE_WRITEABLE,
    DEMIXD_PHASE_WAKE,
    DEMIXD_PHASE_COUNT
} demixd_service_phase;

/* Values owned elsewhere, passed in when rendering. */
typedef struct demixd_gauges {
    int sessions;
    int max_sessions;
    int capacity;
    int file_jobs;
    /* connections per service thread (threads entries; may be NULL) */
    const int *thread_connections;
    int threads;
    /* CPU seconds per service thread (threads entries; may be NULL) */
    const double *thread_cpu_seconds;
    /* the service threads' phase totals, summed over threads */
    uint64_t phase_ns[DEMIXD_PHASE_COUNT];
    uint64_t phase_calls[DEMIXD_PHASE_COUNT];
} demixd_gauges;

typedef enum demixd_session_result {
    DEMIXD_RESULT_OK = 0,   /* ended with summary */
    DEMIXD_RESULT_ERROR,    /* closed after an error message */
    DEMIXD_RESULT_VANISHED, /* the client closed or disappeared */
    DEMIXD_RESULT_REFUSED,  /* at capacity */
    DEMIXD_RESULT_SHUTDOWN, /* ended by the server's shutdown */
    DEMIXD_RESULT_COUNT
} demixd_session_result;

typedef enum demixd_pause_dir {
    DEMIXD_PAUSE_INPUT = 0,  /* its socket is not read: input ring full */
    DEMIXD_PAUSE_OUTPUT = 1, /* its hops are skipped: output backlog full */
} demixd_pause_dir;

DEMIX_WARN_UNUSED int demixd_metrics_create(demixd_metrics **out);
void demixd_metrics_destroy(demixd_metrics *m);

/* Scheduler: one step of `batch` hops took `seconds`; late of them missed
 * their deadline. failed: the step returned an error. */
void demixd_metrics_step(demixd_metrics *m, double seconds, int batch, int late,
                         int failed);

/* Histogram bins of a live hop's wait (arrival in its lane -> output back
 * in it), for the scheduler's per-step counts. */
#define DEMIXD_HOP_WAIT_BINS 15
int demixd_metrics_hop_wait_bin(double seconds);
/* Scheduler, once per step: counts per bin and their sum. */
void demixd_metrics_hop_waits(demixd_metrics *m,
                              const uint32_t counts[DEMIXD_HOP_WAIT_BINS],
                              double sum_seconds);

/* Sessions paused in one direction: +1 when one pauses, -1 when it goes on. */
void demixd_metrics_pause(demixd_metrics *m, demixd_pause_dir dir, int delta);

void demixd_metrics_session_end(demixd_metrics *m, demixd_session_result r);

typedef enum demixd_auth_api {
    DEMIXD_AUTH_API_STREAM = 0, /* a WebSocket start */
    DEMIXD_AUTH_API_FILE = 1,   /* a POST /v1/separate */
} demixd_auth_api;

/* A client was refused for a missing or wrong token. */
void demixd_metrics_auth_refused(demixd_metrics *m, demixd_auth_api api);

/* A connection was refused: its address had --max-per-address open. */
void demixd_metrics_address_refused(demixd_metrics *m);

/* A file job finished: ok or not. */
void demixd_metrics_file_job(demixd_metrics *m, int ok);

/* Median and 99th percentile step time (ms) and mean batch over the last
 * steps (a window of 1024), hops since start, uptime. */
void demixd_metrics_recent(demixd_metrics *m, double *p50_ms, double *p99_ms,
                           double *batch_mean, uint64_t *hops,
                           double *uptime_s);

/* Prometheus text into buf. DEMIX_ENOSPACE when cap is short. */
DEMIX_WARN_UNUSED int demixd_metrics_render(demixd_metrics *m,
                                            const demixd_gauges *g, char *buf,
                                            size_t cap, size_t *len);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t demixd_now_ns(void);

#endif /* DEMIXD_METRICS_H */
