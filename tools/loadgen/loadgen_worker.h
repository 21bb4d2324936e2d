/*
 * loadgen_worker.h - one thread of `demix loadgen`: its own loop (a wsio
 * epoll loop for ws://, a ws_client lws context for wss://: loadgen_conn.h)
 * and its own share of a round's sessions, which it
 * connects at its part of the run's connect rate, paces, polls and runs to
 * their end.
 *
 * Design. The main thread makes the loops (one per worker, once per run),
 * divides a round's session array into contiguous slices, initialises
 * every session (loadgen_session_init), fills in the worker's fields and
 * starts it. The worker then owns its slice and its loop outright: no lock
 * is taken on the hot path. It
 *   - connects its k-th session at t_start + (k * threads + index) /
 *     connect_rate, so the threads interleave and the run as a whole opens
 *     connect_rate connections a second;
 *   - wakes at each phase group's tick (the message clock of
 *     loadgen_session.h) and ticks that group's sessions, waiting in lws
 *     in between (loadgen_loop_service_us, at most LOADGEN_WORKER_WAIT_MS);
 *   - polls its sessions every LOADGEN_WORKER_POLL_S (timeouts, lag);
 *   - publishes a progress snapshot every LOADGEN_WORKER_PUBLISH_S under
 *     its progress_lock (the only lock; the main thread copies the
 *     snapshot for its progress line and its "loaded" stats moment);
 *   - ends when every session of its slice has ended, measuring its own
 *     CPU time (RUSAGE_THREAD) over the round.
 * The main thread asks it to stop (Ctrl-C: sessions not yet connected end
 * as interrupted, the others are stopped) or abort through `command`, an
 * atomic, and wakes its loop. After loadgen_worker_join the slice, the
 * results and the added-latency histogram are the main thread's again.
 *
 * Thread context: fields marked "main" are written by the main thread
 * before loadgen_worker_start and read-only afterwards; "worker" fields
 * are the worker's until loadgen_worker_join; `command` and `finished`
 * are atomics; `progress` is guarded by progress_lock.
 */
#ifndef DEMIX_LOADGEN_WORKER_H
#define DEMIX_LOADGEN_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "latency_hist.h"
#include "loadgen_session.h"
#include "loadgen_usage.h"
#include "loadgen_conn.h"

#define LOADGEN_WORKER_WAIT_MS 50     /* longest wait in lws */
#define LOADGEN_WORKER_POLL_S 0.1     /* session checks */
#define LOADGEN_WORKER_PUBLISH_S 0.25 /* progress snapshots */

enum loadgen_worker_command {
    LOADGEN_WORKER_RUN = 0,
    LOADGEN_WORKER_STOP,  /* Ctrl-C: end the streams, read their tails */
    LOADGEN_WORKER_ABORT, /* second Ctrl-C: drop every connection */
};

/* A worker's sessions at one moment. */
typedef struct loadgen_progress {
    int sessions;   /* in the slice */
    int connecting; /* connect started, not ready, not ended */
    int not_started;
    int ready;      /* got ready */
    int streaming;
    int behind;     /* lag beyond the announced latency + margin now */
    int judged;
    int refused, failed;
    int ended;
    double first_t0; /* earliest stream start of a ready session, 0: none */
    latency_hist added;
} loadgen_progress;

typedef struct loadgen_worker {
    /* main */
    int index, threads;
    const loadgen_config *cfg;
    loadgen_loop loop;
    loadgen_session *sessions; /* the slice */
    int count;
    double t_start;       /* origin of the connect schedule */
    double connect_rate;  /* connections per second, all workers together */

    /* worker */
    latency_hist added; /* every added-latency sample of the slice */
    loadgen_cpu cpu;    /* over the round */
    double wall_s;
    int loop_failed;

    atomic_int command;
    atomic_int finished;

    pthread_mutex_t progress_lock;
    loadgen_progress progress; /* guarded by progress_lock */

    pthread_t thread;
    int started; /* main: loadgen_worker_start succeeded */
    int running; /* main: started and not joined */
} loadgen_worker;

/* Start the thread (the main fields set, sessions initialised and their
 * `added` pointing at w->added). 0, or an errno value. */
int loadgen_worker_start(loadgen_worker *w);

/* Ask for a stop or an abort and wake the worker (main thread; the wake is
 * also safe from a signal handler through loadgen_loop_wake). */
void loadgen_worker_command(loadgen_worker *w, int command);

/* Copy the latest snapshot (main thread). */
void loadgen_worker_progress(loadgen_worker *w, loadgen_progress *out);

/* 1 once every session of the slice has ended. */
int loadgen_worker_finished(loadgen_worker *w);

/* Wait for the thread to return (main thread); a no-op when not running. */
void loadgen_worker_join(loadgen_worker *w);

/* Join if needed and release the progress lock; a no-op for a worker
 * never started. */
void loadgen_worker_destroy(loadgen_worker *w);

#endif /* DEMIX_LOADGEN_WORKER_H */
