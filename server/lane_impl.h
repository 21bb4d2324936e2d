/*
 * lane_impl.h - the inside of a demixd_lane, shared by lane.c (the
 * owner's functions) and scheduler.c (the scheduler's). Not for other files.
 *
 * Each field says who may touch it: "immutable" (set by create or before
 * submit), "lock" (the stream's mutex), "owner" (the owner thread only),
 * "sched" (the scheduler thread only).
 */
#ifndef DEMIXD_LANE_IMPL_H
#define DEMIXD_LANE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "lane.h"

struct demixd_scheduler;

struct demixd_lane {
    /* immutable */
    demixd_lane_kind kind;
    int C, H, T;
    int64_t hop_ns;   /* one hop of real time */
    size_t in_cap;    /* frames */
    int out_cap;      /* hops */
    int arr_cap;      /* arrival stamps: hops the input ring can hold + 1 */
    float *in_ring;   /* [in_cap][C] */
    unsigned char *out_ring; /* [out_cap][out_hop_bytes] */
    size_t out_hop_bytes;    /* one hop in the lane's shape */
    int64_t *arrival; /* [arr_cap] ns */
    demixd_lane_notify_fn notify;
    void *notify_user;
    int owner;       /* LIVE: service thread index */
    void *owner_ctx; /* LIVE: the session */
    struct demixd_scheduler *sched; /* set by submit, before sharing */

    atomic_int refs;
    atomic_int queued; /* in its owner's ready ring (sched sets, owner
                          clears) */
    pthread_mutex_t lock;

    /* lock */
    size_t in_count; /* frames published, not yet taken */
    int arr_count;   /* stamps published */
    int out_count;   /* hops published, not yet popped */
    int released;    /* the owner is gone */
    int status;      /* scheduler failure, 0 if none */
    char error[160];
    demix_output_shape shape; /* gains change (set_gains) */
    unsigned shape_version;   /* raised by each change */
    uint64_t hops, late_hops;

    /* owner */
    size_t in_head; /* next frame written */
    int arr_head;
    int out_tail; /* next hop read */
    uint64_t frames_written;

    /* sched */
    size_t in_tail; /* next frame taken */
    int arr_tail;
    int out_head; /* next hop written */
    size_t take_tail; /* where the hop being gathered starts */
    int inflight;     /* hops in submitted steps, not yet delivered */
    unsigned shape_applied; /* shape_version given to the engine */
    int custom_shape;       /* a shape other than the default */
    int slot;               /* engine slot, valid when slot_open */
    int slot_open;
    int paused_out;      /* skipped because its output ring is full */
    int64_t rt_base_ns;  /* real-time deadline bookkeeping */
    int64_t deadline_ns; /* of the hop in flight */
};

/* Drop one reference; the last frees. Any thread. */
void demixd__lane_unref(demixd_lane *s);

#endif /* DEMIXD_LANE_IMPL_H */
