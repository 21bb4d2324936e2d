/*
 * scheduler.h - the scheduler: one thread that owns the engine and batches
 * continuously. Each round it takes one ready hop from every live stream
 * that has one (and whose output ring has room), whichever service thread
 * owns it, fills the rest of the real-time capacity with hops of file
 * jobs, submits one engine step for all of them, and hands each stream
 * its output hop when the step is collected. While a step runs, new hops
 * pile up in the streams' rings and go into the next step: batching
 * without a timer. With `depth` 2 (an asynchronous engine: CUDA) the next
 * step is submitted while the previous one still runs, and collected
 * after it, so the copies and compute of neighbouring steps overlap. It
 * sleeps on a condition variable when no stream has a ready hop.
 *
 * Usage sketch:
 *
 *     demixd_scheduler_params p = {.engine = eng, .max_live = 12,
 *                              .max_file = 2, .capacity = 12, .depth = 1,
 *                              .owners = 4, .metrics = m,
 *                              .wake_owner = wake, ...};
 *     demixd_scheduler *s;
 *     demixd_scheduler_create(&p, &s);            // starts the thread
 *     if (demixd_scheduler_reserve(s, DEMIXD_LANE_LIVE) == DEMIX_EBUSY)
 *         refuse();                           // at capacity
 *     demixd_scheduler_submit(s, stream);         // slot opened by the thread
 *     ...                                     // on owner k's wake-up:
 *     while ((st = demixd_scheduler_pop_ready(s, k))) {
 *         if (!demixd_lane_is_released(st))
 *             service(demixd_lane_owner_ctx(st));
 *         demixd_scheduler_ready_done(st);
 *     }
 *     demixd_scheduler_destroy(s);                // stops and joins the thread
 *
 * Admission. max_live + max_file engine slots exist. A reservation counts
 * against its kind's limit from reserve until the scheduler has closed the
 * stream's slot after its release (or until unreserve, for a reservation
 * never submitted), so open_slot never finds the engine full.
 *
 * News for owners. Each service thread (owner 0..owners-1) has a ready
 * ring (spsc_ring.h: the scheduler produces, the owner consumes). After a
 * step, every LIVE stream of it that is not already in its owner's ring
 * goes in (with a reference), and every owner that got one is woken once
 * through wake_owner. The ring holds each stream at most once, so
 * max_live entries always suffice.
 *
 * Errors. A failed step (DEMIX_EDEVICE) marks every stream of that step
 * failed with the engine's sentence (demixd_lane_error), closes their
 * slots and notifies their owners, which end them; the scheduler logs and
 * goes on. DEMIXD_TEST_FAIL_STEPS injects such failures (scheduler.c).
 *
 * Locks. The scheduler's mutex guards the pending list, the work/sleep/stop
 * flags and the reservation counts. It is never held across a step and
 * never taken while a stream lock is held (and vice versa), so there is no
 * lock order to keep. No memory is allocated after create.
 *
 * Threads: create/destroy from the main thread; reserve, unreserve, submit,
 * sessions and kick from any thread; pop_ready from owner k's thread only,
 * ready_done from any; wake_owner is called on the scheduler thread
 * without locks held, a file stream's notify with that stream's lock held
 * (lane.h).
 */
#ifndef DEMIXD_SCHEDULER_H
#define DEMIXD_SCHEDULER_H

#include "engine.h"
#include "metrics.h"
#include "lane.h"
#include "threadpool.h"

typedef struct demixd_scheduler demixd_scheduler;

typedef struct demixd_scheduler_params {
    demix_engine *engine; /* max_slots >= max_live + max_file; used only by
                             the scheduler thread until destroy */
    int max_live;         /* live streams at once, >= 1 */
    int max_file;         /* file streams at once, >= 0 */
    int capacity;         /* hops per step that keep real time, >= 1:
                             file hops fill a step up to it */
    int depth;            /* steps in flight: 1 (synchronous engine) or 2 */
    int owners;           /* service threads that own LIVE streams, >= 1 */
    demix_threadpool *copy_pool; /* gathers inputs and scatters outputs of
                                    large batches; NULL: the scheduler
                                    thread alone. Used only by the
                                    scheduler thread, outside steps. */
    demixd_metrics *metrics;
    /* After a step: owner k has streams in its ready ring. */
    void (*wake_owner)(void *user, int owner);
    void *wake_user;
} demixd_scheduler_params;

DEMIX_WARN_UNUSED int demixd_scheduler_create(const demixd_scheduler_params *p,
                                          demixd_scheduler **out);

/* Stop the thread after its current step, close every slot still open and
 * drop the scheduler's references. NULL: no-op. */
void demixd_scheduler_destroy(demixd_scheduler *s);

/* DEMIX_OK, or DEMIX_EBUSY when the kind is at its limit. */
DEMIX_WARN_UNUSED int demixd_scheduler_reserve(demixd_scheduler *s,
                                           demixd_lane_kind kind);
void demixd_scheduler_unreserve(demixd_scheduler *s, demixd_lane_kind kind);

/* Hand a stream (of a reserved kind) to the scheduler, which takes a
 * reference and opens its engine slot on its own thread. */
void demixd_scheduler_submit(demixd_scheduler *s, demixd_lane *st);

/* Reservations of a kind now: live sessions, or file jobs. */
int demixd_scheduler_count(demixd_scheduler *s, demixd_lane_kind kind);

/* The next stream with news for owner k (a reference the caller gives
 * back with demixd_scheduler_ready_done), or NULL. Owner k's thread. */
demixd_lane *demixd_scheduler_pop_ready(demixd_scheduler *s, int owner);
void demixd_scheduler_ready_done(demixd_lane *st);

/* Something changed for a stream (a hop completed, output room freed, a
 * release): make sure the thread looks again. */
void demixd_scheduler_kick(demixd_scheduler *s);

#endif /* DEMIXD_SCHEDULER_H */
