/*
 * sched.c - the scheduler thread of sched.h.
 *
 * Round: (1) take the pending streams and open their slots; (2) build a
 * batch: walk the live streams (reaping released ones: close slot, drop),
 * take one hop from each that has one and has output room; then walk the
 * file streams from a rotating start and take hops while the batch is
 * below `capacity`; (3) if the batch is empty, sleep until kicked;
 * otherwise step, deliver each output hop into its stream's ring, count
 * late hops, wake the owners, record metrics, and start the next round at
 * once. A kick that arrives during a round sets `work`, so the next round
 * does not sleep: no wake-up is lost.
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
 * bench/results/round2-final-h100). One step at a time: the next batch
 * is taken after the previous one's outputs are delivered.
 *
 * Memory: batch buffers for max_live + max_file hops are allocated by
 * create (demix_engine_reserve_io for the engine's); a round allocates
 * nothing.
 *
 * Thread context: sched_main and everything it calls run on the scheduler
 * thread; the public functions of sched.h say theirs. `lock` guards the
 * fields marked "lock"; the rest belongs to the scheduler thread.
 */
#include "sched.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stream_impl.h"

struct demixd_sched {
    /* immutable */
    demix_engine *engine;
    int C, H, T;
    int max_live, max_file, capacity;
    demixd_metrics *metrics;
    void (*wake_live)(void *user);
    void *wake_user;
    pthread_t thread;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* lock */
    int work, sleeping, stop;
    demixd_stream **pending; /* [max_live + max_file], FIFO */
    int pending_n;
    int reserved[2];

    /* scheduler thread */
    demixd_stream **live, **file; /* active streams */
    int live_n, file_n, file_rr;
    demixd_stream **admit_buf; /* [max_live + max_file] */
    demixd_stream **batch;     /* [max_live + max_file] */
    int *slots;
    float *in; /* the engine's input buffer of the round being built */
    uint64_t steps;                /* steps run (or failed) so far */
    uint64_t fail_first, fail_end; /* the test hook's [first, end) */
};

#define INJECTED_FAILURE "injected failure (DEMIXD_TEST_FAIL_STEPS)"

void demixd_sched_kick(demixd_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->work = 1;
    if (s->sleeping)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int demixd_sched_reserve(demixd_sched *s, demixd_stream_kind kind)
{
    int limit = kind == DEMIXD_STREAM_LIVE ? s->max_live : s->max_file;
    int rc = DEMIX_EBUSY;
    pthread_mutex_lock(&s->lock);
    if (!s->stop && s->reserved[kind] < limit) {
        s->reserved[kind]++;
        rc = DEMIX_OK;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void demixd_sched_unreserve(demixd_sched *s, demixd_stream_kind kind)
{
    pthread_mutex_lock(&s->lock);
    if (s->reserved[kind] > 0)
        s->reserved[kind]--;
    pthread_mutex_unlock(&s->lock);
}

int demixd_sched_count(demixd_sched *s, demixd_stream_kind kind)
{
    pthread_mutex_lock(&s->lock);
    int n = s->reserved[kind];
    pthread_mutex_unlock(&s->lock);
    return n;
}

void demixd_sched_submit(demixd_sched *s, demixd_stream *st)
{
    st->sched = s;
    atomic_fetch_add(&st->refs, 1);
    pthread_mutex_lock(&s->lock);
    /* A reservation guarantees room: pending + active <= the limits. */
    s->pending[s->pending_n++] = st;
    s->work = 1;
    if (s->sleeping)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------ scheduler thread */

/* Wake a file stream's owner; call with st->lock held. Only while the
 * owner has not released the stream: its release waits for this lock, so
 * notify_user (a file job, freed once its owner is done) is still alive. */
static void notify_file_locked(demixd_stream *st)
{
    if (st->kind == DEMIXD_STREAM_FILE && !st->released && st->notify)
        st->notify(st->notify_user);
}

static void fail_stream(demixd_sched *s, demixd_stream *st, int status,
                        const char *why)
{
    pthread_mutex_lock(&st->lock);
    if (!st->status) {
        st->status = status;
        snprintf(st->error, sizeof st->error, "%s", why);
    }
    notify_file_locked(st);
    pthread_mutex_unlock(&st->lock);
    if (st->kind == DEMIXD_STREAM_LIVE && s->wake_live)
        s->wake_live(s->wake_user);
}

static void close_slot(demixd_sched *s, demixd_stream *st)
{
    if (!st->slot_open)
        return;
    if (demix_engine_close_slot(s->engine, st->slot))
        demixd_log(DEMIXD_LOG_WARN, "slot_close", "slot=%d msg=\"%s\"",
                   st->slot, demix_engine_last_error(s->engine));
    st->slot_open = 0;
}

/* Close the slot of a released (or abandoned) stream and drop it. */
static void reap(demixd_sched *s, demixd_stream *st)
{
    close_slot(s, st);
    if (st->paused_out) {
        demixd_metrics_pause(s->metrics, DEMIXD_PAUSE_OUTPUT, -1);
        st->paused_out = 0;
    }
    demixd_sched_unreserve(s, st->kind);
    demixd__stream_unref(st);
}

static void admit(demixd_sched *s, int n)
{
    for (int i = 0; i < n; i++) {
        demixd_stream *st = s->admit_buf[i];
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
        }
        st->rt_base_ns = 0;
        if (st->kind == DEMIXD_STREAM_LIVE)
            s->live[s->live_n++] = st;
        else
            s->file[s->file_n++] = st;
    }
}

/* Try to take one hop of st into batch position n. 1: taken, 0: not,
 * -1: the stream is released and was reaped (removed by the caller). */
static int take(demixd_sched *s, demixd_stream *st, int n, int64_t now)
{
    const int C = s->C, H = s->H;
    pthread_mutex_lock(&st->lock);
    if (st->released) {
        pthread_mutex_unlock(&st->lock);
        reap(s, st);
        return -1;
    }
    if (st->status || !st->slot_open) {
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    int ready = st->in_count >= (size_t)H;
    int room = st->out_count < st->out_cap;
    if (ready && !room) {
        pthread_mutex_unlock(&st->lock);
        if (!st->paused_out) {
            st->paused_out = 1;
            demixd_metrics_pause(s->metrics, DEMIXD_PAUSE_OUTPUT, 1);
        }
        return 0;
    }
    if (st->paused_out) {
        st->paused_out = 0;
        demixd_metrics_pause(s->metrics, DEMIXD_PAUSE_OUTPUT, -1);
        if (st->rt_base_ns < now)
            st->rt_base_ns = now;
    }
    if (!ready) {
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    /* C-interleaved ring -> planar [C][H] at batch position n. */
    float *dst = s->in + (size_t)n * (size_t)(C * H);
    size_t t = st->in_tail;
    for (int k = 0; k < H; k++) {
        const float *fr = st->in_ring + t * (size_t)C;
        for (int c = 0; c < C; c++)
            dst[(size_t)c * (size_t)H + (size_t)k] = fr[c];
        if (++t == st->in_cap)
            t = 0;
    }
    st->in_tail = t;
    st->in_count -= (size_t)H;
    int64_t arrival = now;
    if (st->arr_count > 0) {
        arrival = st->arrival[st->arr_tail];
        st->arr_tail = (st->arr_tail + 1) % st->arr_cap;
        st->arr_count--;
    }
    pthread_mutex_unlock(&st->lock);
    int64_t base = st->rt_base_ns > arrival ? st->rt_base_ns : arrival;
    st->deadline_ns = base + st->hop_ns;
    st->rt_base_ns = st->deadline_ns;
    s->batch[n] = st;
    s->slots[n] = st->slot;
    return 1;
}

static int build_batch(demixd_sched *s)
{
    int64_t now = demixd_now_ns();
    int n = 0;
    for (int i = 0; i < s->live_n; i++) {
        int r = take(s, s->live[i], n, now);
        if (r < 0) {
            s->live[i--] = s->live[--s->live_n];
            continue;
        }
        n += r;
    }
    /* File jobs: reap the released ones, then take hops from a rotating
     * start while the batch is below the real-time capacity. */
    for (int i = 0; i < s->file_n; i++) {
        demixd_stream *st = s->file[i];
        pthread_mutex_lock(&st->lock);
        int released = st->released;
        pthread_mutex_unlock(&st->lock);
        if (released) {
            reap(s, st);
            s->file[i--] = s->file[--s->file_n];
        }
    }
    int spare = s->capacity - n, files = 0, gone = 0;
    for (int j = 0; j < s->file_n && files < spare; j++) {
        int i = (s->file_rr + j) % s->file_n;
        int r = take(s, s->file[i], n, now);
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

static void run_step(demixd_sched *s, int n)
{
    const size_t hop_out = (size_t)(s->T * s->C * s->H);
    const uint64_t step = ++s->steps;
    const int injected = step >= s->fail_first && step < s->fail_end;
    int64_t t0 = demixd_now_ns();
    int rc = injected ? DEMIX_EDEVICE
                      : demix_engine_submit(s->engine, n, s->slots, s->in);
    if (!rc)
        rc = demix_engine_collect(s->engine, NULL);
    const float *out = rc ? NULL : demix_engine_output(s->engine, NULL);
    int64_t t1 = demixd_now_ns();
    int any_live = 0, late = 0;
    if (rc) {
        const char *detail =
            injected ? INJECTED_FAILURE : demix_engine_last_error(s->engine);
        char why[160];
        snprintf(why, sizeof why, "engine step failed: %s", detail);
        demixd_log(DEMIXD_LOG_ERROR, "step_failed",
                   "status=%s step=%llu batch=%d msg=\"%s\"", demix_errname(rc),
                   (unsigned long long)step, n, detail);
        for (int i = 0; i < n; i++) {
            fail_stream(s, s->batch[i], rc, why);
            close_slot(s, s->batch[i]);
        }
        demixd_metrics_step(s->metrics, (double)(t1 - t0) * 1e-9, n, 0, 1);
        return;
    }
    for (int i = 0; i < n; i++) {
        demixd_stream *st = s->batch[i];
        /* The slot at out_head is free: take() saw room, and only this
         * thread adds hops. */
        memcpy(st->out_ring + (size_t)st->out_head * hop_out,
               out + (size_t)i * hop_out, hop_out * sizeof *out);
        int is_late = st->kind == DEMIXD_STREAM_LIVE && t1 > st->deadline_ns;
        pthread_mutex_lock(&st->lock);
        if (!st->released) {
            st->out_head = (st->out_head + 1) % st->out_cap;
            st->out_count++;
            st->hops++;
            st->late_hops += (uint64_t)is_late;
        }
        notify_file_locked(st);
        pthread_mutex_unlock(&st->lock);
        late += is_late;
        any_live |= st->kind == DEMIXD_STREAM_LIVE;
    }
    if (any_live && s->wake_live)
        s->wake_live(s->wake_user);
    demixd_metrics_step(s->metrics, (double)(t1 - t0) * 1e-9, n, late, 0);
}

static void *sched_main(void *arg)
{
    demixd_sched *s = arg;
    int idle = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (idle)
            while (!s->work && !s->stop) {
                s->sleeping = 1;
                pthread_cond_wait(&s->cond, &s->lock);
                s->sleeping = 0;
            }
        int stop = s->stop;
        s->work = 0;
        int np = s->pending_n;
        memcpy(s->admit_buf, s->pending, (size_t)np * sizeof *s->pending);
        s->pending_n = 0;
        pthread_mutex_unlock(&s->lock);
        admit(s, np);
        if (stop)
            break;
        /* reserved at create for max_live + max_file hops: no allocation */
        s->in = demix_engine_input_buffer(s->engine, s->max_live + s->max_file);
        int n = build_batch(s);
        if (n == 0) {
            idle = 1;
            continue;
        }
        idle = 0;
        run_step(s, n);
    }
    while (s->live_n)
        reap(s, s->live[--s->live_n]);
    while (s->file_n)
        reap(s, s->file[--s->file_n]);
    return NULL;
}

/* --------------------------------------------------------- create/destroy */

/* The test hook of the file header: DEMIXD_TEST_FAIL_STEPS=K[,N]. */
static int read_fail_steps(demixd_sched *s)
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

static void free_sched(demixd_sched *s)
{
    free(s->pending);
    free(s->live);
    free(s->file);
    free(s->admit_buf);
    free(s->batch);
    free(s->slots);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int demixd_sched_create(const demixd_sched_params *p, demixd_sched **out)
{
    if (!p || !out || !p->engine || p->max_live < 1 || p->max_file < 0 ||
        p->capacity < 1 || !p->metrics ||
        demix_engine_max_slots(p->engine) < p->max_live + p->max_file)
        return DEMIX_EARG;
    *out = NULL;
    demixd_sched *s = calloc(1, sizeof *s);
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
    s->metrics = p->metrics;
    s->wake_live = p->wake_live;
    s->wake_user = p->wake_user;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    size_t total = (size_t)(p->max_live + p->max_file);
    s->pending = calloc(total, sizeof *s->pending);
    s->live = calloc((size_t)p->max_live, sizeof *s->live);
    s->file = calloc((size_t)p->max_file + 1, sizeof *s->file);
    s->admit_buf = calloc(total, sizeof *s->admit_buf);
    s->batch = calloc(total, sizeof *s->batch);
    s->slots = calloc(total, sizeof *s->slots);
    if (!s->pending || !s->live || !s->file || !s->admit_buf || !s->batch ||
        !s->slots) {
        free_sched(s);
        return DEMIX_ENOMEM;
    }
    int io = demix_engine_reserve_io(s->engine, (int)total);
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

void demixd_sched_destroy(demixd_sched *s)
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
        demixd_sched_unreserve(s, s->pending[i]->kind);
        demixd__stream_unref(s->pending[i]);
    }
    free_sched(s);
}
