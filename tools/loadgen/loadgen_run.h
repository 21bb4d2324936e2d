/*
 * loadgen_run.h - running `demix loadgen`'s rounds: one round of N sessions
 * spread over the worker threads (loadgen_worker.h), the reference session
 * that the sampled sessions are compared with (loadgen_verify.h), and the
 * server's `stats` around them (loadgen_stats.h), with progress on stderr.
 *
 * Design. The main thread owns one ws_client loop of its own for the
 * stats connections and the reference session, and the workers' loops
 * (made once per run, one per thread: the lean wsio transport for ws://,
 * ws_client for wss://; loadgen_conn.h). A round: ask the server's stats
 * once its session count is back at the baseline; allocate the sessions,
 * choose the sampled ones (evenly spaced, session 0 always), initialise
 * them, give each worker a contiguous slice, start the workers; then,
 * until every worker has finished, sum their progress snapshots, print
 * progress, ask for the "loaded" stats shortly before the first stream
 * ends (and measure the client's resident memory then), and pass Ctrl-C
 * on as worker commands. After joining: the threads' CPU times and
 * added-latency histograms, the "after" stats, the figures
 * (loadgen_round_collect).
 *
 * Thread context: the main thread; the workers run their slices.
 */
#ifndef DEMIX_LOADGEN_RUN_H
#define DEMIX_LOADGEN_RUN_H

#include <signal.h>

#include "loadgen_chaos.h"
#include "loadgen_report.h"
#include "loadgen_session.h"
#include "loadgen_stats.h"
#include "loadgen_conn.h"
#include "ws_client.h"

#define LOADGEN_KEEP_UP_MARGIN_S 1.0

typedef struct loadgen_run {
    /* the caller's, before the first call */
    const char *url;
    double seconds;
    double timeout_s;
    int quiet;
    int progress_tty;
    loadgen_config cfg;
    ws_client_loop *loop;   /* the main thread's: stats, the reference */
    loadgen_loop *loops;    /* one per worker thread */
    int threads;            /* loops made: the most threads a round uses */
    double connect_rate;    /* connections per second */
    double verify_fraction; /* of a round's sessions, compared (0: none) */
    double max_p99_ms, late_ms;
    volatile sig_atomic_t *interrupts; /* Ctrl-C count, from the handler */
    /* --chaos: this fraction of a round's sessions misbehave
     * (loadgen_chaos.h), the rest are the round's sessions */
    double chaos_fraction;
    uint64_t chaos_seed;
    char chaos_host[256];
    int chaos_port;
    char chaos_path[1024];

    /* kept between rounds */
    int baseline; /* the server's sessions before the run */
    int have_baseline;
    int progress_drawn;
} loadgen_run;

/* Ask the server for its stats on the main loop and wait for the answer
 * (q is finished and freed when this returns: read q->ok, q->stats,
 * q->err). */
void loadgen_run_stats(loadgen_run *g, loadgen_stats *q);

/* The reference session: stream the round's audio once, alone, as fast as
 * the server takes it, and keep its stems (the first
 * LOADGEN_VERIFY_MAX_S). DEMIX_OK with *out; else a sentence in err
 * (the session's failure, or out of memory) and *out NULL. */
int loadgen_run_reference(loadgen_run *g, loadgen_reference **out, char *err,
                          size_t err_cap);

/* One round of n sessions until every one has ended. With chaos, the
 * first loadgen_chaos_count(chaos_fraction, n) of them are chaos clients
 * (r->chaos) and r->sessions the rest, which *sessions holds. r is filled
 * and judged; *sessions and r->thread are the caller's to free
 * (loadgen_run_free with r->sessions). DEMIX_ENOMEM when the sessions do
 * not fit, DEMIX_EIO when the chaos clients cannot start (err says why). */
int loadgen_run_round(loadgen_run *g, int n, loadgen_round *r,
                      loadgen_session **sessions, char *err, size_t err_cap);

/* Free a round's sessions and thread figures. */
void loadgen_run_free(loadgen_round *r, loadgen_session *sessions, int n);

/* How many of n sessions are compared, and whether session i is one. */
int loadgen_run_sample_count(double fraction, int n);
int loadgen_run_sampled(int i, int n, int count);

#endif /* DEMIX_LOADGEN_RUN_H */
