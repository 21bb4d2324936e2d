/*
 * scheduler.c - the scheduler thread of scheduler.h.
 *
 * Round: (1) take the pending streams and open their slots; (2) when
 * fewer than `depth` steps are in flight, build a batch: walk the live
 * streams (reaping released ones with no hop in flight: close slot,
 * drop), select one hop from each that has one and has output room (room
 * counts the hops already in flight for it); then walk the file streams
 * from a rotating start and select hops while the batch is below
 * `capacity`; gather the selected hops into the engine's input buffer
 * (on the copy pool when the batch is large) and submit the step;
 * (3) collect the oldest step in flight, scatter each output hop into its
 * stream's ring (on the copy pool when large), count late hops, put the
 * live streams into their owners' ready rings and wake those owners once
 * each, record metrics; (4) with nothing ready and nothing in flight,
 * sleep until kicked. A kick that arrives during a round sets `work`, so
 * the next round does not sleep: no wake-up is lost.
 *
 * Two in flight (depth 2). Step k+1 is built while step k runs, but not
 * at once: a batch taken right after k's submit would hold only the few
 * hops that arrived in between. The scheduler waits until half of k's
 * expected duration (an average of the last steps' submit-to-collect
 * times) has passed, then takes what is ready, submits, and collects k.
 * So the device always has the next step queued when one ends, and each
 * step carries the hops of about half a step's time.
 *
 * Late hops (live only). Hop k of a stream has the deadline
 *   d_k = max(arrival_k, d_(k-1), resume) + one hop of real time,
 * where arrival_k is when its last input frame was written and resume the
 * moment the stream was last un-paused after an output backlog. A client
 * sending faster than real time gets deadlines one hop apart, and is late
 * only if the server falls below real-time throughput for it; a client
 * that stops reading is not late for the hops it held back itself.
 *
 * Failed steps. Every stream of the step gets the error (its owner ends
 * it) and its slot is closed at once: engine.h leaves a failed step's slot
 * state undefined, and a closed slot is zeroed when it is handed out again.
 * Streams outside the step go on.
 *
 * Test hook. The CPU engine never fails a step, so nothing would reach the
 * failure path in a test. DEMIXD_TEST_FAIL_STEPS=K[,N] (read once by
 * create; N defaults to 1) makes the scheduler's steps K..K+N-1, counted
 * from 1, fail with DEMIX_EDEVICE and "injected failure
 * (DEMIXD_TEST_FAIL_STEPS)" instead of calling the engine
 * (tests/integration/test_server_engine_failure.c). A variable with TEST
 * in its name, logged as a warning at start, so no deployment sets it by
 * accident; a malformed value stops the start.
 *
 * Engine buffers. A batch is gathered straight into the engine's input
 * buffer and stepped with submit + collect, and the outputs are read from
 * the engine's output buffer: on CUDA those are page-locked, so the
 * device copies them directly (a pageable buffer costs a staging copy
 * each way: 5.3 against 3.4 ms for 4096 full-size streams on an H100,
 * bench/results/round2-final-h100). Gathering and scattering move
 * 4 KB in and 16 KB out per hop (the shipped model): 80 MB a step for
 * 4096 sessions, too much for one core within a hop period, so batches of
 * COPY_SPLIT_HOPS or more are split into tasks of the copy pool.
 *
 * Memory: batch buffers for max_live + max_file hops per step in flight,
 * the owners' ready rings (max_live entries each) and the engine's I/O
 * buffers (demix_engine_reserve_io) are allocated by create; a round
 * allocates nothing.
 *
 * Thread context: sched_main and everything it calls run on the scheduler
 * thread; the public functions of scheduler.h say theirs. `lock` guards the
 * fields marked "lock"; the rest belongs to the scheduler thread.
 */
#define _GNU_SOURCE /* pthread_setname_np */

#include "scheduler.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "spsc_ring.h"
#include "lane_impl.h"

/* Batches from this size on are gathered and scattered by the copy pool,
 * in tasks of about this many hops. */
#define COPY_SPLIT_HOPS 128

/* Most copy tasks of one batch (a few per copy-pool thread). */
#define MAX_COPY_TASKS 64

/* Steps in flight at most (engine.h's DEMIX_ENGINE_MAX_IN_FLIGHT). */
#define MAX_DEPTH 2

/* One submitted step. */
typedef struct sched_step {
    demixd_lane **batch; /* [max_live + max_file] */
    int *slots;            /* [max_live + max_file] */
    int64_t *arrival;      /* [max_live + max_file] each hop's arrival */
    int n;
    uint64_t number; /* counted from 1 */
    int injected;    /* the test hook fails it */
    int rc;          /* submit's status */
    int64_t submit_ns;
} sched_step;

struct demixd_scheduler {
    /* immutable */
    demix_engine *engine;
    int C, H, T;
    int max_live, max_file, capacity, depth, owners;
    demix_threadpool *copy_pool;
    demixd_metrics *metrics;
    void (*wake_owner)(void *user, int owner);
    void *wake_user;
    demixd_spsc_ring *ready; /* [owners]; the scheduler pushes */
    pthread_t thread;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Kicks without the lock (demixd_scheduler_kick, called for every
     * hop by every service thread): `work` says a round has news,
     * `sleeping` that the thread waits on `cond` (set under the lock).
     * Both sequentially consistent: a kicker stores work then loads
     * sleeping, the sleeper stores sleeping then loads work, so one of
     * them sees the other and no wake-up is lost. */
    atomic_int work, sleeping;
    /* lock */
    int stop;
    demixd_lane **pending; /* [max_live + max_file], FIFO */
    int pending_n;
    int reserved[2];

    /* scheduler thread */
    demixd_lane **live, **file; /* active streams */
    int live_n, file_n, file_rr;
    demixd_lane **admit_buf; /* [max_live + max_file] */
    sched_step steps[MAX_DEPTH];
    int oldest, in_flight; /* steps[oldest] is the oldest in flight */
    unsigned char *woken;  /* [owners] */
    float *in;             /* the engine's input buffer being filled */
    int64_t step_ns_avg;   /* submit-to-collect, recent average */
    uint64_t steps_run;    /* steps submitted (or failed) so far */
    uint64_t fail_first, fail_end; /* the test hook's [first, end) */
};

#define INJECTED_FAILURE "injected failure (DEMIXD_TEST_FAIL_STEPS)"

void demixd_scheduler_kick(demixd_scheduler *s)
{
    if (!s)
        return;
    /* Already set: the round that clears it has not begun, and will see
     * what the caller published before this call. */
    if (atomic_load(&s->work))
        return;
    atomic_store(&s->work, 1);
    if (atomic_load(&s->sleeping)) {
        /* Taking the lock waits until the sleeper is inside cond_wait (it
         * holds the lock from its check of `work` until then); the signal
         * goes after the unlock, so the woken thread does not block on
         * the lock still held here (one futex call, not two). */
        pthread_mutex_lock(&s->lock);
        pthread_mutex_unlock(&s->lock);
        pthread_cond_signal(&s->cond);
    }
}

int demixd_scheduler_reserve(demixd_scheduler *s, demixd_lane_kind kind)
{
    int limit = kind == DEMIXD_LANE_LIVE ? s->max_live : s->max_file;
    int rc = DEMIX_EBUSY;
    pthread_mutex_lock(&s->lock);
    if (!s->stop && s->reserved[kind] < limit) {
        s->reserved[kind]++;
        rc = DEMIX_OK;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void demixd_scheduler_unreserve(demixd_scheduler *s, demixd_lane_kind kind)
{
    pthread_mutex_lock(&s->lock);
    if (s->reserved[kind] > 0)
        s->reserved[kind]--;
    pthread_mutex_unlock(&s->lock);
}

int demixd_scheduler_count(demixd_scheduler *s, demixd_lane_kind kind)
{
    pthread_mutex_lock(&s->lock);
    int n = s->reserved[kind];
    pthread_mutex_unlock(&s->lock);
    return n;
}

void demixd_scheduler_submit(demixd_scheduler *s, demixd_lane *st)
{
    st->sched = s;
    atomic_fetch_add(&st->refs, 1);
    pthread_mutex_lock(&s->lock);
    /* A reservation guarantees room: pending + active <= the limits. */
    s->pending[s->pending_n++] = st;
    atomic_store(&s->work, 1);
    if (atomic_load(&s->sleeping))
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

demixd_lane *demixd_scheduler_pop_ready(demixd_scheduler *s, int owner)
{
    if (!s || owner < 0 || owner >= s->owners)
        return NULL;
    demixd_lane *st = demixd_spsc_ring_pop(&s->ready[owner]);
    /* Cleared before the owner looks at the stream: news that comes while
     * it does queues the stream again (at worst one needless look). */
    if (st)
        atomic_store(&st->queued, 0);
    return st;
}

void demixd_scheduler_ready_done(demixd_lane *st)
{
    demixd__lane_unref(st);
}

/* ------------------------------------------------------ scheduler thread */

/* Queue a live stream for its owner (once until the owner takes it) and
 * remember to wake the owner. */
static void tell_owner(demixd_scheduler *s, demixd_lane *st)
{
    if (st->kind != DEMIXD_LANE_LIVE || atomic_exchange(&st->queued, 1))
        return;
    atomic_fetch_add(&st->refs, 1);
    /* Each live stream is in at most one ring once, and a ring holds
     * max_live: it cannot be full. */
    int pushed = demixd_spsc_ring_push(&s->ready[st->owner], st);
    DEMIX_ASSERT(pushed);
    s->woken[st->owner] = 1;
}

static void wake_owners(demixd_scheduler *s)
{
    for (int k = 0; k < s->owners; k++)
        if (s->woken[k]) {
            s->woken[k] = 0;
            if (s->wake_owner)
                s->wake_owner(s->wake_user, k);
        }
}

/* Wake a file stream's owner; call with st->lock held. Only while the
 * owner has not released the stream: its release waits for this lock, so
 * notify_user (a file job, freed once its owner is done) is still alive. */
static void notify_file_locked(demixd_lane *st)
{
    if (st->kind == DEMIXD_LANE_FILE && !st->released && st->notify)
        st->notify(st->notify_user);
}

static void fail_stream(demixd_scheduler *s, demixd_lane *st, int status,
                        const char *why)
{
    pthread_mutex_lock(&st->lock);
    if (!st->status) {
        st->status = status;
        snprintf(st->error, sizeof st->error, "%s", why);
    }
    notify_file_locked(st);
    pthread_mutex_unlock(&st->lock);
    tell_owner(s, st);
}

static void close_slot(demixd_scheduler *s, demixd_lane *st)
{
    if (!st->slot_open)
        return;
    if (demix_engine_close_slot(s->engine, st->slot))
        demixd_log(DEMIXD_LOG_WARN, "slot_close", "slot=%d msg=\"%s\"",
                   st->slot, demix_engine_last_error(s->engine));
    st->slot_open = 0;
}

/* Close the slot of a released (or abandoned) stream and drop it. Only
 * with no hop of it in flight: the step's delivery still names it. */
static void reap(demixd_scheduler *s, demixd_lane *st)
{
    close_slot(s, st);
    if (st->paused_out) {
        demixd_metrics_pause(s->metrics, DEMIXD_PAUSE_OUTPUT, -1);
        st->paused_out = 0;
    }
    demixd_scheduler_unreserve(s, st->kind);
    demixd__lane_unref(st);
}

/* Give the engine the lane's output shape (at admission, and after the
 * owner changed its gains), for the steps submitted from now. */
static void apply_shape(demixd_scheduler *s, demixd_lane *st)
{
    if (!st->custom_shape)
        return;
    pthread_mutex_lock(&st->lock);
    demix_output_shape shape = st->shape;
    st->shape_applied = st->shape_version;
    pthread_mutex_unlock(&st->lock);
    int rc = demix_engine_set_output(s->engine, st->slot, &shape);
    if (rc) {
        char why[160];
        snprintf(why, sizeof why, "cannot set the output shape: %s",
                 demix_engine_last_error(s->engine));
        fail_stream(s, st, rc, why);
    }
}

static void admit(demixd_scheduler *s, int n)
{
    for (int i = 0; i < n; i++) {
        demixd_lane *st = s->admit_buf[i];
        int rc = demix_engine_open_slot(s->engine, &st->slot);
        if (rc) {
            char why[160];
            snprintf(why, sizeof why, "cannot open an engine slot: %s",
                     demix_engine_last_error(s->engine));
            demixd_log(DEMIXD_LOG_ERROR, "slot_open", "status=%s msg=\"%s\"",
                       demix_errname(rc), demix_engine_last_error(s->engine));
            fail_stream(s, st, rc, why);
        } else {
            st->slot_open = 1;
            apply_shape(s, st);
        }
        st->rt_base_ns = 0;
        if (st->kind == DEMIXD_LANE_LIVE)
            s->live[s->live_n++] = st;
        else
            s->file[s->file_n++] = st;
    }
    wake_owners(s); /* failed opens */
}

/* Select one hop of st for batch position n of step `step`: check it is
 * ready and has room, note where it starts and its deadline. The data is
 * copied later (gather). 1: selected, 0: not, -1: the stream is released
 * and was reaped (the caller removes it). */
static int select_hop(demixd_scheduler *s, sched_step *step, demixd_lane *st,
                      int n, int64_t now)
{
    pthread_mutex_lock(&st->lock);
    if (st->released) {
        pthread_mutex_unlock(&st->lock);
        if (st->inflight)
            return 0; /* reaped once its hops are delivered */
        reap(s, st);
        return -1;
    }
    if (st->status || !st->slot_open) {
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    /* in_count already excludes hops gathered into steps in flight */
    int ready = st->in_count >= (size_t)s->H;
    int room = st->out_count + st->inflight < st->out_cap;
    if (ready && !room) {
        pthread_mutex_unlock(&st->lock);
        if (!st->paused_out) {
            st->paused_out = 1;
            demixd_metrics_pause(s->metrics, DEMIXD_PAUSE_OUTPUT, 1);
        }
        return 0;
    }
    if (st->paused_out && room) {
        st->paused_out = 0;
        demixd_metrics_pause(s->metrics, DEMIXD_PAUSE_OUTPUT, -1);
        if (st->rt_base_ns < now)
            st->rt_base_ns = now;
    }
    if (!ready) {
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    int64_t arrival = now;
    if (st->arr_count > 0) {
        arrival = st->arrival[st->arr_tail];
        st->arr_tail = (st->arr_tail + 1) % st->arr_cap;
        st->arr_count--;
    }
    int reshape = st->shape_version != st->shape_applied;
    pthread_mutex_unlock(&st->lock);
    if (reshape)
        apply_shape(s, st); /* new gains: from this step on */
    st->take_tail = st->in_tail;
    st->inflight++;
    int64_t base = st->rt_base_ns > arrival ? st->rt_base_ns : arrival;
    st->deadline_ns = base + st->hop_ns;
    st->rt_base_ns = st->deadline_ns;
    step->batch[n] = st;
    step->slots[n] = st->slot;
    step->arrival[n] = arrival;
    return 1;
}

static int select_batch(demixd_scheduler *s, sched_step *step)
{
    int64_t now = demixd_now_ns();
    int n = 0;
    for (int i = 0; i < s->live_n; i++) {
        int r = select_hop(s, step, s->live[i], n, now);
        if (r < 0) {
            s->live[i--] = s->live[--s->live_n];
            continue;
        }
        n += r;
    }
    /* File jobs: reap the released ones, then take hops from a rotating
     * start while the batch is below the real-time capacity. */
    for (int i = 0; i < s->file_n; i++) {
        demixd_lane *st = s->file[i];
        pthread_mutex_lock(&st->lock);
        int released = st->released;
        pthread_mutex_unlock(&st->lock);
        if (released && !st->inflight) {
            reap(s, st);
            s->file[i--] = s->file[--s->file_n];
        }
    }
    int spare = s->capacity - n, files = 0, gone = 0;
    for (int j = 0; j < s->file_n && files < spare; j++) {
        int i = (s->file_rr + j) % s->file_n;
        int r = select_hop(s, step, s->file[i], n, now);
        if (r < 0) {
            s->file[i] = NULL; /* reaped; compacted below */
            gone = 1;
            continue;
        }
        n += r;
        files += r;
    }
    if (gone) {
        int k = 0;
        for (int i = 0; i < s->file_n; i++)
            if (s->file[i])
                s->file[k++] = s->file[i];
        s->file_n = k;
    }
    if (s->file_n)
        s->file_rr = (s->file_rr + 1) % s->file_n;
    return n;
}

/* A range of a step's batch, for the copy pool's tasks. */
typedef struct copy_job {
    demixd_scheduler *s;
    sched_step *step;
    int per_task;
    int64_t done_ns; /* scatter: when the step was collected */
    int late;        /* scatter: late hops, summed after the run */
    int *late_per_task;
} copy_job;

/* Gather batch entries [i0, i1): each selected hop's C-interleaved ring
 * frames -> planar [C][H] in the engine's input buffer, then free the
 * ring space. */
static void gather_range(demixd_scheduler *s, sched_step *step, int i0, int i1)
{
    const int C = s->C, H = s->H;
    for (int i = i0; i < i1; i++) {
        demixd_lane *st = step->batch[i];
        float *dst = s->in + (size_t)i * (size_t)(C * H);
        size_t t = st->take_tail;
        for (int k = 0; k < H; k++) {
            const float *fr = st->in_ring + t * (size_t)C;
            for (int c = 0; c < C; c++)
                dst[(size_t)c * (size_t)H + (size_t)k] = fr[c];
            if (++t == st->in_cap)
                t = 0;
        }
        pthread_mutex_lock(&st->lock);
        st->in_tail = t;
        st->in_count -= (size_t)H;
        pthread_mutex_unlock(&st->lock);
    }
}

static void gather_task(void *arg, int task)
{
    copy_job *j = arg;
    int i0 = task * j->per_task;
    int i1 = i0 + j->per_task < j->step->n ? i0 + j->per_task : j->step->n;
    gather_range(j->s, j->step, i0, i1);
}

/* Scatter batch entries [i0, i1) of a collected step into the streams'
 * output rings and publish them. Late hops counted into *late. */
static void scatter_range(demixd_scheduler *s, sched_step *step, int i0, int i1,
                          int64_t done_ns, int *late)
{
    for (int i = i0; i < i1; i++) {
        demixd_lane *st = step->batch[i];
        size_t bytes = 0;
        const void *row = demix_engine_output_row(s->engine, i, &bytes);
        /* the lane's shape was the slot's at this step's submit */
        DEMIX_ASSERT(row && bytes == st->out_hop_bytes);
        /* The slot at out_head is free: select_hop saw room for every hop
         * in flight, and only this thread adds hops. */
        memcpy(st->out_ring + (size_t)st->out_head * bytes, row, bytes);
        int is_late = st->kind == DEMIXD_LANE_LIVE && done_ns > st->deadline_ns;
        pthread_mutex_lock(&st->lock);
        if (!st->released) {
            st->out_head = (st->out_head + 1) % st->out_cap;
            st->out_count++;
            st->hops++;
            st->late_hops += (uint64_t)is_late;
        }
        notify_file_locked(st);
        pthread_mutex_unlock(&st->lock);
        *late += is_late;
    }
}

static void scatter_task(void *arg, int task)
{
    copy_job *j = arg;
    int i0 = task * j->per_task;
    int i1 = i0 + j->per_task < j->step->n ? i0 + j->per_task : j->step->n;
    scatter_range(j->s, j->step, i0, i1, j->done_ns, &j->late_per_task[task]);
}

/* Tasks for n hops on the copy pool: 1 (inline) below COPY_SPLIT_HOPS. */
static int copy_tasks(const demixd_scheduler *s, int n, int *per_task)
{
    int threads = demix_threadpool_threads(s->copy_pool);
    int tasks = 1;
    if (s->copy_pool && n >= COPY_SPLIT_HOPS && threads > 1) {
        tasks = n / COPY_SPLIT_HOPS;
        if (tasks > 4 * threads)
            tasks = 4 * threads;
        if (tasks > MAX_COPY_TASKS)
            tasks = MAX_COPY_TASKS;
        if (tasks < 1)
            tasks = 1;
    }
    *per_task = (n + tasks - 1) / tasks;
    return (n + *per_task - 1) / *per_task;
}

/* Build and submit the next step. 0 when nothing was ready. */
static int start_step(demixd_scheduler *s)
{
    sched_step *step = &s->steps[(s->oldest + s->in_flight) % MAX_DEPTH];
    /* reserved at create for max_live + max_file hops: no allocation */
    s->in = demix_engine_input_buffer(s->engine, s->max_live + s->max_file);
    int n = select_batch(s, step);
    if (n == 0)
        return 0;
    step->n = n;
    copy_job j = {.s = s, .step = step};
    int tasks = copy_tasks(s, n, &j.per_task);
    if (tasks > 1) {
        if (demix_threadpool_run(s->copy_pool, tasks, gather_task, &j))
            gather_range(s, step, 0, n); /* cannot happen: fn is set */
    } else {
        gather_range(s, step, 0, n);
    }
    step->number = ++s->steps_run;
    step->injected =
        step->number >= s->fail_first && step->number < s->fail_end;
    step->submit_ns = demixd_now_ns();
    step->rc = step->injected
                   ? DEMIX_EDEVICE
                   : demix_engine_submit(s->engine, n, step->slots, s->in);
    s->in_flight++;
    return n;
}

/* Collect the oldest step in flight and hand its outputs over. */
static void finish_step(demixd_scheduler *s)
{
    sched_step *step = &s->steps[s->oldest];
    s->oldest = (s->oldest + 1) % MAX_DEPTH;
    s->in_flight--;
    const int n = step->n;
    int rc = step->rc;
    if (!rc)
        rc = demix_engine_collect(s->engine, NULL);
    int64_t t1 = demixd_now_ns();
    double seconds = (double)(t1 - step->submit_ns) * 1e-9;
    if (rc) {
        const char *detail = step->injected
                                 ? INJECTED_FAILURE
                                 : demix_engine_last_error(s->engine);
        char why[160];
        snprintf(why, sizeof why, "engine step failed: %s", detail);
        demixd_log(DEMIXD_LOG_ERROR, "step_failed",
                   "status=%s step=%llu batch=%d msg=\"%s\"", demix_errname(rc),
                   (unsigned long long)step->number, n, detail);
        for (int i = 0; i < n; i++) {
            demixd_lane *st = step->batch[i];
            st->inflight--;
            fail_stream(s, st, rc, why);
            close_slot(s, st);
        }
        wake_owners(s);
        demixd_metrics_step(s->metrics, seconds, n, 0, 1);
        return;
    }
    /* a running average of the step's duration, for depth 2's timing */
    int64_t took = t1 - step->submit_ns;
    s->step_ns_avg = s->step_ns_avg ? (7 * s->step_ns_avg + took) / 8 : took;
    int late = 0;
    int late_per_task[MAX_COPY_TASKS];
    copy_job j = {.s = s, .step = step, .done_ns = t1,
                  .late_per_task = late_per_task};
    int tasks = copy_tasks(s, n, &j.per_task);
    if (tasks > 1) {
        memset(late_per_task, 0, (size_t)tasks * sizeof(int));
        if (demix_threadpool_run(s->copy_pool, tasks, scatter_task, &j))
            scatter_range(s, step, 0, n, t1, &late);
        else
            for (int k = 0; k < tasks; k++)
                late += late_per_task[k];
    } else {
        scatter_range(s, step, 0, n, t1, &late);
    }
    uint32_t waits[DEMIXD_HOP_WAIT_BINS] = {0};
    double wait_sum = 0;
    for (int i = 0; i < n; i++) {
        demixd_lane *st = step->batch[i];
        st->inflight--;
        if (st->kind == DEMIXD_LANE_LIVE) {
            double w = (double)(t1 - step->arrival[i]) * 1e-9;
            waits[demixd_metrics_hop_wait_bin(w)]++;
            wait_sum += w;
        }
        tell_owner(s, st);
    }
    wake_owners(s);
    demixd_metrics_step(s->metrics, seconds, n, late, 0);
    demixd_metrics_hop_waits(s->metrics, waits, wait_sum);
}

/* Depth 2: wait until about half of the running step's expected time has
 * passed before taking the next batch (see the file header). */
static void pace_second_step(demixd_scheduler *s)
{
    const sched_step *running = &s->steps[s->oldest];
    int64_t until = running->submit_ns + s->step_ns_avg / 2;
    int64_t now = demixd_now_ns();
    if (until - now < 20000) /* not worth a sleep */
        return;
    struct timespec ts = {(time_t)((until - now) / 1000000000),
                          (long)((until - now) % 1000000000)};
    nanosleep(&ts, NULL);
}

static void *sched_main(void *arg)
{
    demixd_scheduler *s = arg;
    pthread_setname_np(pthread_self(), "demixd-sched");
    int idle = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (idle && !s->in_flight) {
            atomic_store(&s->sleeping, 1);
            while (!atomic_load(&s->work) && !s->stop)
                pthread_cond_wait(&s->cond, &s->lock);
            atomic_store(&s->sleeping, 0);
        }
        int stop = s->stop;
        atomic_store(&s->work, 0);
        int np = s->pending_n;
        memcpy(s->admit_buf, s->pending, (size_t)np * sizeof *s->pending);
        s->pending_n = 0;
        pthread_mutex_unlock(&s->lock);
        admit(s, np);
        if (stop)
            break;
        if (s->in_flight == 1 && s->depth > 1)
            pace_second_step(s);
        int n = s->in_flight < s->depth ? start_step(s) : 0;
        if (n > 0 && s->in_flight < s->depth) {
            idle = 0;
            continue; /* the next step is built while this one runs */
        }
        if (s->in_flight > 0) {
            finish_step(s);
            idle = 0;
            continue;
        }
        idle = n == 0;
    }
    while (s->in_flight)
        finish_step(s);
    while (s->live_n)
        reap(s, s->live[--s->live_n]);
    while (s->file_n)
        reap(s, s->file[--s->file_n]);
    return NULL;
}

/* --------------------------------------------------------- create/destroy */

/* The test hook of the file header: DEMIXD_TEST_FAIL_STEPS=K[,N]. */
static int read_fail_steps(demixd_scheduler *s)
{
    const char *v = getenv("DEMIXD_TEST_FAIL_STEPS");
    if (!v || !*v)
        return DEMIX_OK;
    char *end = (char *)v;
    unsigned long long k = 0, n = 1;
    errno = 0;
    if (isdigit((unsigned char)*v))
        k = strtoull(v, &end, 10);
    if (*end == ',' && isdigit((unsigned char)end[1]))
        n = strtoull(end + 1, &end, 10);
    if (errno || *end || k < 1 || n < 1 || n > UINT64_MAX - k) {
        char q[64];
        demixd_log(DEMIXD_LOG_ERROR, "test_fail_steps",
                   "value=\"%s\" msg=\"DEMIXD_TEST_FAIL_STEPS must be K or "
                   "K,N (whole numbers >= 1): fail steps K..K+N-1\"",
                   demixd_log_quote(v, q, sizeof q));
        return DEMIX_EARG;
    }
    s->fail_first = k;
    s->fail_end = k + n;
    demixd_log(DEMIXD_LOG_WARN, "test_fail_steps",
               "first=%llu last=%llu msg=\"test hook: these engine steps "
               "fail on purpose; unset DEMIXD_TEST_FAIL_STEPS outside "
               "tests\"",
               k, k + n - 1);
    return DEMIX_OK;
}

static void free_sched(demixd_scheduler *s)
{
    free(s->pending);
    free(s->live);
    free(s->file);
    free(s->admit_buf);
    for (int k = 0; k < MAX_DEPTH; k++) {
        free(s->steps[k].batch);
        free(s->steps[k].slots);
        free(s->steps[k].arrival);
    }
    if (s->ready)
        for (int k = 0; k < s->owners; k++)
            demixd_spsc_ring_free(&s->ready[k]);
    free(s->ready);
    free(s->woken);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int make_buffers(demixd_scheduler *s)
{
    size_t total = (size_t)(s->max_live + s->max_file);
    s->pending = calloc(total, sizeof *s->pending);
    s->live = calloc((size_t)s->max_live, sizeof *s->live);
    s->file = calloc((size_t)s->max_file + 1, sizeof *s->file);
    s->admit_buf = calloc(total, sizeof *s->admit_buf);
    s->woken = calloc((size_t)s->owners, 1);
    s->ready = calloc((size_t)s->owners, sizeof *s->ready);
    if (!s->pending || !s->live || !s->file || !s->admit_buf || !s->woken ||
        !s->ready)
        return DEMIX_ENOMEM;
    for (int k = 0; k < MAX_DEPTH; k++) {
        s->steps[k].batch = calloc(total, sizeof *s->steps[k].batch);
        s->steps[k].slots = calloc(total, sizeof *s->steps[k].slots);
        s->steps[k].arrival = calloc(total, sizeof *s->steps[k].arrival);
        if (!s->steps[k].batch || !s->steps[k].slots || !s->steps[k].arrival)
            return DEMIX_ENOMEM;
    }
    for (int k = 0; k < s->owners; k++)
        if (demixd_spsc_ring_init(&s->ready[k], (size_t)s->max_live + 1))
            return DEMIX_ENOMEM;
    return DEMIX_OK;
}

int demixd_scheduler_create(const demixd_scheduler_params *p, demixd_scheduler **out)
{
    if (!p || !out || !p->engine || p->max_live < 1 || p->max_file < 0 ||
        p->capacity < 1 || p->depth < 1 || p->depth > MAX_DEPTH ||
        p->depth > DEMIX_ENGINE_MAX_IN_FLIGHT || p->owners < 1 ||
        !p->metrics ||
        demix_engine_max_slots(p->engine) < p->max_live + p->max_file)
        return DEMIX_EARG;
    *out = NULL;
    demixd_scheduler *s = calloc(1, sizeof *s);
    if (!s)
        return DEMIX_ENOMEM;
    const demix_model_config *cfg = demix_engine_config(p->engine);
    s->engine = p->engine;
    s->C = cfg->channels;
    s->H = cfg->hop_samples;
    s->T = cfg->num_sources;
    s->max_live = p->max_live;
    s->max_file = p->max_file;
    s->capacity = p->capacity;
    s->depth = p->depth;
    s->owners = p->owners;
    s->copy_pool = p->copy_pool;
    s->metrics = p->metrics;
    s->wake_owner = p->wake_owner;
    s->wake_user = p->wake_user;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    atomic_init(&s->work, 0);
    atomic_init(&s->sleeping, 0);
    if (make_buffers(s)) {
        free_sched(s);
        return DEMIX_ENOMEM;
    }
    int io = demix_engine_reserve_io(s->engine, s->max_live + s->max_file);
    if (io) {
        demixd_log(DEMIXD_LOG_ERROR, "engine_buffers", "status=%s msg=\"%s\"",
                   demix_errname(io), demix_engine_last_error(s->engine));
        free_sched(s);
        return io;
    }
    int hook = read_fail_steps(s);
    if (hook) {
        free_sched(s);
        return hook;
    }
    /* The thread inherits a mask that blocks the signals demixd handles. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, sched_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        free_sched(s);
        return DEMIX_ENOMEM;
    }
    *out = s;
    return DEMIX_OK;
}

void demixd_scheduler_destroy(demixd_scheduler *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    /* Streams submitted after the thread's last look (none in an orderly
     * shutdown) never got a slot. */
    for (int i = 0; i < s->pending_n; i++) {
        demixd_scheduler_unreserve(s, s->pending[i]->kind);
        demixd__lane_unref(s->pending[i]);
    }
    /* News nobody took: drop the rings' references. */
    for (int k = 0; k < s->owners; k++) {
        demixd_lane *st;
        while ((st = demixd_spsc_ring_pop(&s->ready[k])))
            demixd__lane_unref(st);
    }
    free_sched(s);
}
