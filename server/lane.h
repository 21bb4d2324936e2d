/*
 * lane.h - the hand-off between one engine client (a live WebSocket
 * session or a file API job) and the scheduler: a bounded input ring of
 * model-rate frames and a bounded output ring of separated hops, with the
 * client's lifetime in a small state machine under one lock.
 *
 * Usage sketch (the owner's side; the scheduler's side is scheduler.c):
 *
 *     demixd_lane_params p = {.kind = DEMIXD_LANE_LIVE, .channels = 2,
 *                               .hop_frames = 512, .sources = 4, ...};
 *     demixd_lane *st;
 *     demixd_lane_create(&p, &st);          // at session open: all memory
 *     demixd_scheduler_reserve(sched, p.kind);    // admission (BUSY at limit)
 *     demixd_scheduler_submit(sched, st);         // scheduler opens a slot
 *     ...
 *     if (demixd_lane_in_room(st) >= n)
 *         demixd_lane_in_write(st, frames, n);     // C-interleaved frames
 *     const float *hop;
 *     while ((hop = demixd_lane_out_peek(st))) {   // T x C x H planar
 *         use(hop);
 *         demixd_lane_out_pop(st);
 *     }
 *     demixd_lane_release(st);              // owner done, at any time
 *
 * Lifetime. A stream is reference counted: the owner holds one reference
 * from create to release, the scheduler one from submit until it has seen
 * the release, closed the engine slot and dropped the stream from its
 * lists. After release the owner must not touch the stream; the scheduler
 * never touches a released stream's slot again (it checks `released` under
 * the stream's lock before every take and every delivery, and closes the
 * slot on the scheduler thread, between steps). The last reference frees
 * the memory. So a client that vanishes mid-step is safe: its output is
 * discarded, its slot freed after the step.
 *
 * Flow control. in_write never grows anything: the caller checks
 * in_room first (a session stops reading its socket when the room is too
 * small). The scheduler takes a hop only when the output ring has a free
 * slot, so an owner that stops popping output stops its own input.
 *
 * Memory: everything is allocated by create; nothing after.
 *
 * News. After a step in which a LIVE stream took part (or that failed it),
 * the scheduler puts the stream into its owner's ready ring
 * (demixd_scheduler_pop_ready) once until the owner takes it out, holding a
 * reference for the ring; the owner then services the stream's session,
 * so a wake-up costs the streams that have news, not every session.
 *
 * Threads: create, in_*, out_*, error, counters and release are called by
 * the owner thread (the lws service thread for sessions, a file worker for
 * jobs); the scheduler thread uses the internals (lane_impl.h). Rings are
 * single-producer single-consumer: data moves outside the lock, the counts
 * that publish it change under it.
 */
#ifndef DEMIXD_LANE_H
#define DEMIXD_LANE_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"
#include "engine.h"

typedef enum demixd_lane_kind {
    DEMIXD_LANE_LIVE = 0, /* a WebSocket session: stepped first */
    DEMIXD_LANE_FILE = 1, /* a file API job: spare capacity only */
} demixd_lane_kind;

typedef struct demixd_lane demixd_lane;

/* Called by the scheduler thread after a step in which the stream took
 * part, or when it failed, with the stream's lock held and never after
 * release (so notify_user may die with the owner). Must be cheap and must
 * not call this stream's functions. */
typedef void (*demixd_lane_notify_fn)(void *user);

typedef struct demixd_lane_params {
    demixd_lane_kind kind;
    int channels;      /* C, the model's */
    int hop_frames;    /* H */
    int sources;       /* T */
    int model_rate_hz; /* for real-time deadlines */
    size_t in_frames;  /* input ring capacity, model-rate frames, >= H */
    int out_hops;      /* output ring capacity in hops, >= 1 */
    demixd_lane_notify_fn notify; /* FILE streams; LIVE ones are handed
                                       to their owner's ready ring */
    void *notify_user;
    int owner;       /* LIVE: the owning service thread, 0..owners-1 */
    void *owner_ctx; /* LIVE: the owner's object (its session), given back
                        by demixd_lane_owner_ctx */
    /* The output hops' shape (engine.h's output shapes: 16-bit, chosen
     * sources, or a mix made by the engine); NULL: every source, float32.
     * Copied. */
    const demix_output_shape *shape;
} demixd_lane_params;

/* DEMIX_EARG for bad parameters, DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int demixd_lane_create(const demixd_lane_params *p,
                                           demixd_lane **out);

/* Free frames in the input ring. */
size_t demixd_lane_in_room(demixd_lane *s);

/* Append n model-rate frames (C interleaved). DEMIX_ENOSPACE (nothing
 * written) when n exceeds the room. Each completed hop gets its arrival
 * time (for the late-hop measure) and wakes the scheduler. */
DEMIX_WARN_UNUSED int demixd_lane_in_write(demixd_lane *s,
                                             const float *frames, size_t n);

/* Append n frames of silence, as in_write. */
DEMIX_WARN_UNUSED int demixd_lane_in_zeros(demixd_lane *s, size_t n);

/* The oldest separated hop, in the lane's shape (planes x C x H, planar,
 * float or int16: engine.h's output shapes; by default T x C x H floats)
 * or NULL. Valid until out_pop. */
const void *demixd_lane_out_peek(demixd_lane *s);

/* New mix gains (a shape with mix set), for the steps submitted from
 * now: hops already separated keep the old ones. Owner thread. */
void demixd_lane_set_gains(demixd_lane *s, const float *gains, int count);
void demixd_lane_out_pop(demixd_lane *s);

/* 0 while the stream is healthy; else the scheduler's status (e.g.
 * DEMIX_EDEVICE) with its sentence copied into msg. */
int demixd_lane_error(demixd_lane *s, char *msg, size_t cap);

/* Hops run for this stream and, of those, late ones (LIVE only). */
void demixd_lane_counters(demixd_lane *s, uint64_t *hops,
                            uint64_t *late_hops);

/* The owner's object given at create. Owner thread. */
void *demixd_lane_owner_ctx(demixd_lane *s);

/* 1 when the owner has released the stream (only the owner thread asks:
 * it is the one that releases). */
int demixd_lane_is_released(demixd_lane *s);

/* The owner is done with the stream (NULL: no-op). */
void demixd_lane_release(demixd_lane *s);

#endif /* DEMIXD_LANE_H */
