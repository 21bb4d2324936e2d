/*
 * lane.c - the owner's side of a demixd_lane (lane.h) and its
 * reference counting.
 *
 * Ring discipline (single producer, single consumer): the producer writes
 * data into the free part of a ring without the lock, then publishes it by
 * raising the count under the lock; the consumer reads published data and
 * lowers the count under the lock. The mutex orders the data accesses.
 *
 * Thread context: the owner thread (see lane.h), except
 * demixd__lane_unref (any thread).
 */
#include "lane_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "scheduler.h"

int demixd_lane_create(const demixd_lane_params *p, demixd_lane **out)
{
    if (!p || !out || p->channels < 1 || p->hop_frames < 1 || p->sources < 1 ||
        p->model_rate_hz <= 0 || p->in_frames < (size_t)p->hop_frames ||
        p->out_hops < 1)
        return DEMIX_EARG;
    *out = NULL;
    demixd_lane *s = calloc(1, sizeof *s);
    if (!s)
        return DEMIX_ENOMEM;
    s->kind = p->kind;
    s->C = p->channels;
    s->H = p->hop_frames;
    s->T = p->sources;
    s->hop_ns = (int64_t)p->hop_frames * 1000000000 / p->model_rate_hz;
    s->in_cap = p->in_frames;
    s->out_cap = p->out_hops;
    s->arr_cap = (int)(p->in_frames / (size_t)p->hop_frames) + 1;
    s->notify = p->notify;
    s->notify_user = p->notify_user;
    s->owner = p->owner;
    s->owner_ctx = p->owner_ctx;
    int planes = s->T;
    size_t sample_bytes = sizeof(float);
    if (p->shape) {
        s->shape = *p->shape;
        s->custom_shape = 1;
        planes = p->shape->mix ? 1 : p->shape->count;
        sample_bytes = p->shape->format == DEMIX_SAMPLE_S16 ? 2 : 4;
        if (planes < 1 || planes > s->T) {
            free(s);
            return DEMIX_EARG;
        }
    }
    s->out_hop_bytes = (size_t)planes * (size_t)(s->C * s->H) * sample_bytes;
    s->in_ring = malloc(s->in_cap * (size_t)s->C * sizeof *s->in_ring);
    s->out_ring = malloc((size_t)s->out_cap * s->out_hop_bytes);
    s->arrival = malloc((size_t)s->arr_cap * sizeof *s->arrival);
    if (!s->in_ring || !s->out_ring || !s->arrival) {
        free(s->in_ring);
        free(s->out_ring);
        free(s->arrival);
        free(s);
        return DEMIX_ENOMEM;
    }
    atomic_init(&s->refs, 1);
    atomic_init(&s->queued, 0);
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return DEMIX_OK;
}

void demixd__lane_unref(demixd_lane *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->in_ring);
    free(s->out_ring);
    free(s->arrival);
    free(s);
}

size_t demixd_lane_in_room(demixd_lane *s)
{
    pthread_mutex_lock(&s->lock);
    size_t room = s->in_cap - s->in_count;
    pthread_mutex_unlock(&s->lock);
    return room;
}

/* Publish n frames already in the ring at in_head; stamp completed hops. */
static void publish(demixd_lane *s, size_t n)
{
    uint64_t before = s->frames_written;
    s->frames_written += n;
    uint64_t hops =
        s->frames_written / (uint64_t)s->H - before / (uint64_t)s->H;
    int64_t now = hops ? demixd_now_ns() : 0;
    pthread_mutex_lock(&s->lock);
    s->in_count += n;
    for (uint64_t h = 0; h < hops; h++) {
        s->arrival[s->arr_head] = now;
        s->arr_head = (s->arr_head + 1) % s->arr_cap;
        s->arr_count++;
    }
    pthread_mutex_unlock(&s->lock);
    if (hops && s->sched)
        demixd_scheduler_kick(s->sched);
}

int demixd_lane_in_write(demixd_lane *s, const float *frames, size_t n)
{
    if (n > demixd_lane_in_room(s))
        return DEMIX_ENOSPACE;
    size_t C = (size_t)s->C, done = 0;
    while (done < n) {
        size_t k = s->in_cap - s->in_head;
        if (k > n - done)
            k = n - done;
        if (frames)
            memcpy(s->in_ring + s->in_head * C, frames + done * C,
                   k * C * sizeof *frames);
        else
            memset(s->in_ring + s->in_head * C, 0, k * C * sizeof(float));
        s->in_head = (s->in_head + k) % s->in_cap;
        done += k;
    }
    publish(s, n);
    return DEMIX_OK;
}

int demixd_lane_in_zeros(demixd_lane *s, size_t n)
{
    return demixd_lane_in_write(s, NULL, n);
}

const void *demixd_lane_out_peek(demixd_lane *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->out_count;
    pthread_mutex_unlock(&s->lock);
    if (!n)
        return NULL;
    return s->out_ring + (size_t)s->out_tail * s->out_hop_bytes;
}

void demixd_lane_out_pop(demixd_lane *s)
{
    pthread_mutex_lock(&s->lock);
    int was_full = s->out_count == s->out_cap;
    if (s->out_count > 0) {
        s->out_count--;
        s->out_tail = (s->out_tail + 1) % s->out_cap;
    }
    pthread_mutex_unlock(&s->lock);
    if (was_full && s->sched)
        demixd_scheduler_kick(s->sched);
}

int demixd_lane_error(demixd_lane *s, char *msg, size_t cap)
{
    pthread_mutex_lock(&s->lock);
    int status = s->status;
    if (status && msg && cap)
        snprintf(msg, cap, "%s", s->error);
    pthread_mutex_unlock(&s->lock);
    return status;
}

void demixd_lane_counters(demixd_lane *s, uint64_t *hops,
                            uint64_t *late_hops)
{
    pthread_mutex_lock(&s->lock);
    if (hops)
        *hops = s->hops;
    if (late_hops)
        *late_hops = s->late_hops;
    pthread_mutex_unlock(&s->lock);
}

void demixd_lane_set_gains(demixd_lane *s, const float *gains, int count)
{
    pthread_mutex_lock(&s->lock);
    for (int t = 0; t < count && t < DEMIX_MAX_SOURCES; t++)
        s->shape.gains[t] = gains[t];
    s->shape_version++;
    pthread_mutex_unlock(&s->lock);
}

void *demixd_lane_owner_ctx(demixd_lane *s)
{
    return s->owner_ctx;
}

int demixd_lane_is_released(demixd_lane *s)
{
    pthread_mutex_lock(&s->lock);
    int r = s->released;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void demixd_lane_release(demixd_lane *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->released = 1;
    pthread_mutex_unlock(&s->lock);
    struct demixd_scheduler *sched = s->sched;
    /* Kick before dropping our reference: the scheduler holds its own, so
     * the stream outlives this call either way. */
    if (sched)
        demixd_scheduler_kick(sched);
    demixd__lane_unref(s);
}
