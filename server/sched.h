/*
 * sched.h - the scheduler: one thread that owns the engine and batches
 * continuously. Each round it takes one ready hop from every live stream
 * that has one (and whose output ring has room), fills the rest of the
 * real-time capacity with hops of file jobs, runs one demix_engine_step
 * for all of them, and hands each stream its output hop. While a step
 * runs, new hops pile up in the streams' rings and go into the next step:
 * batching without a timer. It sleeps on a condition variable when no
 * stream has a ready hop.
 *
 * Usage sketch:
 *
 *     demixd_sched_params p = {.engine = eng, .max_live = 12,
 *                              .max_file = 2, .capacity = 12,
 *                              .metrics = m, .wake_live = wake, ...};
 *     demixd_sched *s;
 *     demixd_sched_create(&p, &s);            // starts the thread
 *     if (demixd_sched_reserve(s, DEMIXD_STREAM_LIVE) == DEMIX_EBUSY)
 *         refuse();                           // at capacity
 *     demixd_sched_submit(s, stream);         // slot opened by the thread
 *     ...
 *     demixd_sched_destroy(s);                // stops and joins the thread
 *
 * Admission. max_live + max_file engine slots exist. A reservation counts
 * against its kind's limit from reserve until the scheduler has closed the
 * stream's slot after its release (or until unreserve, for a reservation
 * never submitted), so open_slot never finds the engine full.
 *
 * Errors. A failed step (DEMIX_EDEVICE) marks every stream of that step
 * failed with the engine's sentence (demixd_stream_error), closes their
 * slots and notifies their owners, which end them; the scheduler logs and
 * goes on. DEMIXD_TEST_FAIL_STEPS injects such failures (sched.c).
 *
 * Locks. The scheduler's mutex guards the pending list, the work/sleep/stop
 * flags and the reservation counts. It is never held across a step and
 * never taken while a stream lock is held (and vice versa), so there is no
 * lock order to keep. No memory is allocated after create.
 *
 * Threads: create/destroy from the main thread; reserve, unreserve, submit,
 * sessions and kick from any thread; wake_live is called on the scheduler
 * thread without locks held, a file stream's notify with that stream's
 * lock held (stream.h).
 */
#ifndef DEMIXD_SCHED_H
#define DEMIXD_SCHED_H

#include "engine.h"
#include "metrics.h"
#include "stream.h"

typedef struct demixd_sched demixd_sched;

typedef struct demixd_sched_params {
    demix_engine *engine; /* max_slots >= max_live + max_file; used only by
                             the scheduler thread until destroy */
    int max_live;         /* live streams at once, >= 1 */
    int max_file;         /* file streams at once, >= 0 */
    int capacity;         /* hops per step that keep real time, >= 1:
                             file hops fill a step up to it */
    demixd_metrics *metrics;
    void (*wake_live)(void *user); /* after a step with live hops */
    void *wake_user;
} demixd_sched_params;

DEMIX_WARN_UNUSED int demixd_sched_create(const demixd_sched_params *p,
                                          demixd_sched **out);

/* Stop the thread after its current step, close every slot still open and
 * drop the scheduler's references. NULL: no-op. */
void demixd_sched_destroy(demixd_sched *s);

/* DEMIX_OK, or DEMIX_EBUSY when the kind is at its limit. */
DEMIX_WARN_UNUSED int demixd_sched_reserve(demixd_sched *s,
                                           demixd_stream_kind kind);
void demixd_sched_unreserve(demixd_sched *s, demixd_stream_kind kind);

/* Hand a stream (of a reserved kind) to the scheduler, which takes a
 * reference and opens its engine slot on its own thread. */
void demixd_sched_submit(demixd_sched *s, demixd_stream *st);

/* Reservations of a kind now: live sessions, or file jobs. */
int demixd_sched_count(demixd_sched *s, demixd_stream_kind kind);

/* Something changed for a stream (a hop completed, output room freed, a
 * release): make sure the thread looks again. */
void demixd_sched_kick(demixd_sched *s);

#endif /* DEMIXD_SCHED_H */
