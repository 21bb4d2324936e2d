/*
 * files.c - file API workers and jobs (files.h).
 *
 * A job's loop on its worker: read 4096 frames of the upload whenever the
 * separate_signal has no hop ready (or finish it at the end); move ready
 * hops into the stream's input ring while it has room; give every output
 * hop from the stream back to the signal, whose emit callback writes the
 * chosen stems; when none of that moved, wait for the scheduler's notify
 * (after each step the job took part in) or a cancel.
 *
 * Opus output: libsndfile's Ogg Opus writer takes 8, 12, 16, 24 or 48 kHz;
 * other rates are resampled to 48 kHz per stem (resample.h).
 *
 * Lifetime: a job has two references, the submitter's (until
 * demixd_job_release) and its worker's (until the job ends). `lock` guards
 * state, cancelled, kicked and the failure fields; the rest is the
 * worker's until the state becomes DONE, after which the zip and files
 * belong to the submitter's thread (the mutex orders the hand-over).
 *
 * Thread context: workers run worker_main; the public functions say
 * theirs in files.h.
 */
#include "files.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sndfile.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "resample.h"
#include "sample_check.h"
#include "separate_signal.h"
#include "lane.h"

#define READ_FRAMES 4096
#define CONV_FRAMES 4096
#define JOB_RING_HOPS 16
#define COPY_BYTES 65536

struct demixd_files {
    /* immutable */
    demixd_files_params p;
    pthread_t *threads;
    int nthreads;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* lock */
    demixd_job *head, *tail;
    int stop;
};

struct demixd_job {
    demixd_files *f;
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    demixd_job *qnext; /* files lock */

    /* lock */
    demixd_job_state state;
    int cancelled, kicked;
    int http_status;
    char code[32];
    char message[DEMIX_PROTO_MESSAGE_BYTES];

    /* worker (the submitter's after DONE) */
    demixd_job_request rq;
    size_t body_pos;
    int ch, rate_in, rate_out;
    int out_index[DEMIX_PROTO_MAX_STEMS]; /* source -> output j, or -1 */
    FILE *tmp[DEMIX_PROTO_MAX_STEMS];
    SNDFILE *snd[DEMIX_PROTO_MAX_STEMS];
    resampler *rs[DEMIX_PROTO_MAX_STEMS];
    struct sink {
        demixd_job *j;
        int o;
    } sink[DEMIX_PROTO_MAX_STEMS];
    short *conv; /* [CONV_FRAMES * ch]: float -> 16-bit, as audio_io.c */
    int write_failed;
    demixd_zip zip;
};

const char *demixd_format_ext(demixd_job_format f)
{
    return f == DEMIXD_FORMAT_FLAC   ? "flac"
           : f == DEMIXD_FORMAT_OPUS ? "opus"
                                     : "wav";
}

/* ------------------------------------------------------------ job refs */

static void job_free(demixd_job *j)
{
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++) {
        if (j->snd[i])
            sf_close(j->snd[i]);
        if (j->tmp[i])
            fclose(j->tmp[i]);
        resampler_destroy(j->rs[i]);
    }
    free(j->rq.body);
    free(j->conv);
    pthread_cond_destroy(&j->cond);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void job_unref(demixd_job *j)
{
    if (j && atomic_fetch_sub(&j->refs, 1) == 1)
        job_free(j);
}

static void job_kick(void *user)
{
    demixd_job *j = user;
    pthread_mutex_lock(&j->lock);
    j->kicked = 1;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

static int job_cancelled(demixd_job *j)
{
    pthread_mutex_lock(&j->lock);
    int c = j->cancelled;
    pthread_mutex_unlock(&j->lock);
    return c;
}

/* Record the failure (first one wins); returns -1 for `return fail(...)`. */
static int fail(demixd_job *j, int status, const char *code, const char *fmt,
                ...) DEMIX_PRINTF(4, 5);
static int fail(demixd_job *j, int status, const char *code, const char *fmt,
                ...)
{
    pthread_mutex_lock(&j->lock);
    if (!j->http_status) {
        j->http_status = status;
        snprintf(j->code, sizeof j->code, "%s", code);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->message, sizeof j->message, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&j->lock);
    return -1;
}

/* ------------------------------------------------- upload from memory */

static sf_count_t vio_len(void *user)
{
    return (sf_count_t)((demixd_job *)user)->rq.body_bytes;
}

static sf_count_t vio_seek(sf_count_t off, int whence, void *user)
{
    demixd_job *j = user;
    sf_count_t base = whence == SEEK_CUR   ? (sf_count_t)j->body_pos
                      : whence == SEEK_END ? (sf_count_t)j->rq.body_bytes
                                           : 0;
    sf_count_t pos = base + off;
    if (pos < 0)
        pos = 0;
    if (pos > (sf_count_t)j->rq.body_bytes)
        pos = (sf_count_t)j->rq.body_bytes;
    j->body_pos = (size_t)pos;
    return pos;
}

static sf_count_t vio_read(void *ptr, sf_count_t count, void *user)
{
    demixd_job *j = user;
    size_t left = j->rq.body_bytes - j->body_pos;
    size_t k = count < 0 ? 0 : (size_t)count < left ? (size_t)count : left;
    memcpy(ptr, j->rq.body + j->body_pos, k);
    j->body_pos += k;
    return (sf_count_t)k;
}

static sf_count_t vio_write(const void *ptr, sf_count_t count, void *user)
{
    (void)ptr;
    (void)count;
    (void)user;
    return 0;
}

static sf_count_t vio_tell(void *user)
{
    return (sf_count_t)((demixd_job *)user)->body_pos;
}

/* ------------------------------------------------------------- outputs */

static int opus_rate_ok(int r)
{
    return r == 8000 || r == 12000 || r == 16000 || r == 24000 || r == 48000;
}

/* Write n frames of output o. 16-bit formats convert here exactly as
 * audio/audio_io.c does (x * 32768, clamped, lrint), so the stems equal
 * `demix separate`'s WAV files; Opus takes the floats. */
static int snd_sink(void *user, const float *frames, size_t n)
{
    struct sink *k = user;
    demixd_job *j = k->j;
    SNDFILE *snd = j->snd[k->o];
    if (j->rq.format == DEMIXD_FORMAT_OPUS)
        return sf_writef_float(snd, frames, (sf_count_t)n) == (sf_count_t)n
                   ? DEMIX_OK
                   : DEMIX_EIO;
    const size_t ch = (size_t)j->ch;
    while (n > 0) {
        size_t k2 = n < CONV_FRAMES ? n : CONV_FRAMES;
        for (size_t i = 0; i < k2 * ch; i++) {
            float x = frames[i];
            double v = x != x ? 0.0 : (double)x * 32768.0;
            v = v > 32767.0 ? 32767.0 : v < -32768.0 ? -32768.0 : v;
            j->conv[i] = (short)lrint(v);
        }
        if (sf_writef_short(snd, j->conv, (sf_count_t)k2) != (sf_count_t)k2)
            return DEMIX_EIO;
        frames += k2 * ch;
        n -= k2;
    }
    return DEMIX_OK;
}

/* separate_signal's emit: one source's frames at the input rate. */
static int emit(void *user, int source, const float *frames, size_t n)
{
    demixd_job *j = user;
    int o = source >= 0 && source < DEMIX_PROTO_MAX_STEMS ? j->out_index[source]
                                                          : -1;
    if (o < 0)
        return DEMIX_OK;
    int rc = j->rs[o]
                 ? resampler_process(j->rs[o], frames, n, snd_sink, &j->sink[o])
                 : snd_sink(&j->sink[o], frames, n);
    if (rc)
        j->write_failed = 1;
    return rc;
}

static int open_outputs(demixd_job *j)
{
    int major =
        j->rq.format == DEMIXD_FORMAT_FLAC   ? SF_FORMAT_FLAC | SF_FORMAT_PCM_16
        : j->rq.format == DEMIXD_FORMAT_OPUS ? SF_FORMAT_OGG | SF_FORMAT_OPUS
                                             : SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    j->rate_out = j->rate_in;
    if (j->rq.format == DEMIXD_FORMAT_OPUS && !opus_rate_ok(j->rate_in))
        j->rate_out = 48000;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        j->out_index[i] = -1;
    j->conv = malloc((size_t)CONV_FRAMES * (size_t)j->ch * sizeof *j->conv);
    if (!j->conv)
        return fail(j, 500, "internal", "Out of memory.");
    for (int o = 0; o < j->rq.stem_count; o++) {
        j->out_index[j->rq.stems[o]] = o;
        j->sink[o] = (struct sink){j, o};
        j->tmp[o] = tmpfile();
        if (!j->tmp[o])
            return fail(j, 500, "internal", "Cannot create a temporary file.");
        SF_INFO oi = {
            .samplerate = j->rate_out, .channels = j->ch, .format = major};
        j->snd[o] = sf_open_fd(fileno(j->tmp[o]), SFM_WRITE, &oi, 0);
        if (!j->snd[o])
            return fail(j, 500, "internal", "Cannot encode %s: %s.",
                        demixd_format_ext(j->rq.format), sf_strerror(NULL));
        if (j->rate_out != j->rate_in &&
            resampler_create(j->rate_in, j->rate_out, j->ch, &j->rs[o], NULL,
                             0))
            return fail(j, 500, "internal", "Cannot resample to %d Hz.",
                        j->rate_out);
    }
    return 0;
}

/* Close the encoders, then CRC and size each stem file, then the zip. */
static int finish_outputs(demixd_job *j, const demix_model_config *cfg)
{
    for (int o = 0; o < j->rq.stem_count; o++) {
        if (j->rs[o] && resampler_flush(j->rs[o], snd_sink, &j->sink[o]))
            return fail(j, 500, "internal", "Cannot write the stems.");
        if (sf_close(j->snd[o]))
            return fail(j, 500, "internal", "Cannot finish the stems.");
        j->snd[o] = NULL;
    }
    demixd_zip_init(&j->zip, time(NULL));
    uint8_t *buf = malloc(COPY_BYTES);
    if (!buf)
        return fail(j, 500, "internal", "Out of memory.");
    for (int o = 0; o < j->rq.stem_count; o++) {
        FILE *f = j->tmp[o];
        if (fseek(f, 0, SEEK_SET)) {
            free(buf);
            return fail(j, 500, "internal", "Cannot read the stems back.");
        }
        uint32_t crc = 0;
        uint64_t size = 0;
        size_t n;
        while ((n = fread(buf, 1, COPY_BYTES, f)) > 0) {
            crc = demixd_crc32(crc, buf, n);
            size += n;
        }
        char name[DEMIXD_ZIP_NAME_BYTES];
        snprintf(name, sizeof name, "%s.%s", cfg->source_names[j->rq.stems[o]],
                 demixd_format_ext(j->rq.format));
        if (ferror(f) || demixd_zip_add(&j->zip, name, f, size, crc)) {
            free(buf);
            return fail(j, 500, "internal", "Cannot archive the stems.");
        }
    }
    free(buf);
    if (demixd_zip_finish(&j->zip))
        return fail(j, 500, "internal", "The archive would be too large.");
    return 0;
}

/* ------------------------------------------------------------ the job */

static int separate(demixd_job *j, SNDFILE *in, const SF_INFO *info)
{
    demixd_files *f = j->f;
    const demix_model_config *cfg = f->p.cfg;
    const int C = cfg->channels, H = cfg->hop_samples;
    unsigned mask = 0;
    for (int o = 0; o < j->rq.stem_count; o++)
        mask |= 1u << j->rq.stems[o];
    separate_signal_params sp = {.in_rate_hz = info->samplerate,
                                 .in_channels = info->channels,
                                 .source_mask = mask,
                                 .emit = emit,
                                 .user = j};
    separate_signal *sig = NULL;
    demixd_lane *st = NULL;
    float *buf = malloc((size_t)READ_FRAMES * (size_t)j->ch * sizeof *buf);
    float *hop = malloc((size_t)(C * H) * sizeof *hop);
    float *inter = malloc((size_t)(C * H) * sizeof *inter);
    char err[256];
    int rc = -1, submitted = 0;
    if (!buf || !hop || !inter) {
        fail(j, 500, "internal", "Out of memory.");
        goto out;
    }
    if (separate_signal_create(cfg, &sp, &sig, err, sizeof err)) {
        fail(j, 500, "internal", "Cannot set up the separation.");
        goto out;
    }
    demixd_lane_params stp = {
        .kind = DEMIXD_LANE_FILE,
        .channels = C,
        .hop_frames = H,
        .sources = cfg->num_sources,
        .model_rate_hz = cfg->sample_rate_hz,
        .in_frames = (size_t)JOB_RING_HOPS * (size_t)H,
        .out_hops = JOB_RING_HOPS,
        .notify = job_kick,
        .notify_user = j,
    };
    if (demixd_lane_create(&stp, &st)) {
        fail(j, 500, "internal", "Out of memory.");
        goto out;
    }
    demixd_scheduler_submit(f->p.sched, st);
    submitted = 1;
    int64_t max_frames = (int64_t)f->p.max_seconds * info->samplerate;
    int64_t frames_read = 0;
    int finished = 0;
    for (;;) {
        if (job_cancelled(j)) {
            fail(j, 503, "cancelled", "The request was cancelled.");
            goto out;
        }
        int moved = 0;
        if (!finished && !separate_signal_hop_ready(sig)) {
            sf_count_t n = sf_readf_float(in, buf, READ_FRAMES);
            if (n > 0) {
                const size_t ch = (size_t)j->ch;
                size_t bad = demixd_first_bad_sample(buf, (size_t)n * ch);
                if (bad < (size_t)n * ch) {
                    char v[32];
                    fail(j, 400, "bad_audio",
                         "Sample %lld of channel %d is %s; samples must be "
                         "finite and within [-%g, %g].",
                         (long long)(frames_read + (int64_t)(bad / ch)),
                         (int)(bad % ch),
                         demixd_sample_text(buf[bad], v, sizeof v),
                         (double)DEMIXD_SAMPLE_LIMIT,
                         (double)DEMIXD_SAMPLE_LIMIT);
                    goto out;
                }
                frames_read += n;
                if (frames_read > max_frames) {
                    fail(j, 400, "too_long",
                         "The audio is longer than the limit of %d seconds.",
                         f->p.max_seconds);
                    goto out;
                }
                if (separate_signal_push(sig, buf, (size_t)n))
                    goto signal_failed;
            } else {
                if (sf_error(in)) {
                    fail(j, 400, "bad_audio", "The audio does not decode: %s.",
                         sf_strerror(in));
                    goto out;
                }
                if (separate_signal_finish(sig))
                    goto signal_failed;
                finished = 1;
            }
            moved = 1;
        }
        while (separate_signal_hop_ready(sig) &&
               demixd_lane_in_room(st) >= (size_t)H) {
            if (separate_signal_take_hop(sig, hop))
                goto signal_failed;
            for (int k = 0; k < H; k++)
                for (int c = 0; c < C; c++)
                    inter[k * C + c] = hop[c * H + k];
            if (demixd_lane_in_write(st, inter, (size_t)H)) {
                fail(j, 500, "internal", "Input ring overflow.");
                goto out;
            }
            moved = 1;
        }
        const float *out_hop; /* the default shape: T x C x H floats */
        while ((out_hop = (const float *)demixd_lane_out_peek(st))) {
            int g = separate_signal_give_hop(sig, out_hop);
            demixd_lane_out_pop(st);
            if (g)
                goto signal_failed;
            moved = 1;
        }
        if (demixd_lane_error(st, err, sizeof err)) {
            fail(j, 500, "internal", "The engine failed.");
            demixd_log(DEMIXD_LOG_ERROR, "file_job_engine", "job=%s msg=\"%s\"",
                       j->rq.id, err);
            goto out;
        }
        if (separate_signal_done(sig))
            break;
        if (!moved) {
            pthread_mutex_lock(&j->lock);
            while (!j->kicked && !j->cancelled)
                pthread_cond_wait(&j->cond, &j->lock);
            j->kicked = 0;
            pthread_mutex_unlock(&j->lock);
        }
    }
    rc = 0;
    goto out;
signal_failed:
    if (j->write_failed)
        fail(j, 500, "internal", "Cannot write the stems.");
    else
        fail(j, 500, "internal", "The separation failed: %s.",
             separate_signal_error(sig));
out:
    demixd_lane_release(st);
    if (!submitted)
        demixd_scheduler_unreserve(f->p.sched, DEMIXD_LANE_FILE);
    separate_signal_destroy(sig);
    free(buf);
    free(hop);
    free(inter);
    return rc;
}

static void run_job(demixd_job *j)
{
    demixd_files *f = j->f;
    int64_t t0 = demixd_now_ns();
    SF_VIRTUAL_IO vio = {vio_len, vio_seek, vio_read, vio_write, vio_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    int ok = 0, submitted_reservation = 0;
    SNDFILE *in = NULL;
    if (job_cancelled(j)) {
        fail(j, 503, "cancelled", "The request was cancelled.");
        goto done;
    }
    in = sf_open_virtual(&vio, SFM_READ, &info, j);
    if (!in) {
        fail(j, 400, "bad_audio",
             "The body is not an audio file this server reads (%s).",
             sf_strerror(NULL));
        goto done;
    }
    if (info.channels < 1 || info.channels > 2) {
        fail(j, 400, "bad_audio",
             "The audio has %d channels; only mono and stereo are "
             "separated.",
             info.channels);
        goto done;
    }
    if (info.samplerate < 8000 || info.samplerate > 384000) {
        fail(j, 400, "bad_audio",
             "The sample rate %d Hz is outside 8000..384000 Hz.",
             info.samplerate);
        goto done;
    }
    if (info.frames > 0 && info.frames != SF_COUNT_MAX &&
        info.frames > (sf_count_t)f->p.max_seconds * info.samplerate) {
        fail(j, 400, "too_long",
             "The audio lasts %.0f seconds; the limit is %d seconds.",
             (double)info.frames / info.samplerate, f->p.max_seconds);
        goto done;
    }
    j->ch = info.channels;
    j->rate_in = info.samplerate;
    if (open_outputs(j))
        goto done;
    submitted_reservation = 1; /* separate() hands it on or gives it back */
    if (separate(j, in, &info))
        goto done;
    if (finish_outputs(j, f->p.cfg))
        goto done;
    ok = 1;
done:
    if (!submitted_reservation)
        demixd_scheduler_unreserve(f->p.sched, DEMIXD_LANE_FILE);
    if (in)
        sf_close(in);
    free(j->rq.body); /* the upload is no longer needed */
    j->rq.body = NULL;
    pthread_mutex_lock(&j->lock);
    j->state = ok ? DEMIXD_JOB_DONE : DEMIXD_JOB_FAILED;
    int status = j->http_status;
    pthread_mutex_unlock(&j->lock);
    demixd_metrics_file_job(f->p.metrics, ok);
    char q[DEMIX_PROTO_MESSAGE_BYTES];
    if (ok)
        demixd_log(DEMIXD_LOG_INFO, "file_job_done",
                   "job=%s seconds=%.3f rate=%d channels=%d stems=%d "
                   "format=%s zip_bytes=%llu",
                   j->rq.id, (double)(demixd_now_ns() - t0) * 1e-9, j->rate_in,
                   j->ch, j->rq.stem_count, demixd_format_ext(j->rq.format),
                   (unsigned long long)j->zip.total_bytes);
    else
        demixd_log(DEMIXD_LOG_INFO, "file_job_failed",
                   "job=%s status=%d code=%s msg=\"%s\"", j->rq.id, status,
                   j->code, demixd_log_quote(j->message, q, sizeof q));
    if (f->p.done)
        f->p.done(f->p.done_user);
}

static void *worker_main(void *arg)
{
    demixd_files *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->lock);
        while (!f->head && !f->stop)
            pthread_cond_wait(&f->cond, &f->lock);
        demixd_job *j = f->head;
        if (j) {
            f->head = j->qnext;
            if (!f->head)
                f->tail = NULL;
        }
        pthread_mutex_unlock(&f->lock);
        if (!j)
            break;
        run_job(j);
        job_unref(j);
    }
    return NULL;
}

/* ------------------------------------------------------------- public */

int demixd_files_create(const demixd_files_params *p, demixd_files **out)
{
    if (!p || !out || !p->cfg || !p->sched || !p->metrics || p->workers < 1)
        return DEMIX_EARG;
    demixd_files *f = calloc(1, sizeof *f);
    if (!f)
        return DEMIX_ENOMEM;
    f->p = *p;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->threads = calloc((size_t)p->workers, sizeof *f->threads);
    if (!f->threads) {
        free(f);
        return DEMIX_ENOMEM;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < p->workers; i++) {
        if (pthread_create(&f->threads[i], NULL, worker_main, f))
            break;
        f->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (f->nthreads < p->workers) {
        demixd_files_destroy(f);
        return DEMIX_ENOMEM;
    }
    *out = f;
    return DEMIX_OK;
}

void demixd_files_destroy(demixd_files *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stop = 1;
    /* Queued jobs are failed here; running ones see their cancel flag. */
    demixd_job *q = f->head;
    f->head = f->tail = NULL;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    while (q) {
        demixd_job *next = q->qnext;
        fail(q, 503, "shutting_down", "The server is shutting down.");
        demixd_scheduler_unreserve(f->p.sched, DEMIXD_LANE_FILE);
        pthread_mutex_lock(&q->lock);
        q->state = DEMIXD_JOB_FAILED;
        pthread_mutex_unlock(&q->lock);
        job_unref(q);
        q = next;
    }
    for (int i = 0; i < f->nthreads; i++)
        pthread_join(f->threads[i], NULL);
    free(f->threads);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

int demixd_job_submit(demixd_files *f, demixd_job_request *rq, demixd_job **out)
{
    if (!f || !rq || !out || rq->stem_count < 1 ||
        rq->stem_count > DEMIX_PROTO_MAX_STEMS)
        return DEMIX_EARG;
    demixd_job *j = calloc(1, sizeof *j);
    if (!j)
        return DEMIX_ENOMEM;
    j->f = f;
    j->rq = *rq;
    atomic_init(&j->refs, 2);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    pthread_mutex_lock(&f->lock);
    if (f->stop) {
        pthread_mutex_unlock(&f->lock);
        j->rq.body = NULL; /* not taken */
        job_free(j);
        return DEMIX_EBUSY;
    }
    if (f->tail)
        f->tail->qnext = j;
    else
        f->head = j;
    f->tail = j;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    rq->body = NULL;
    *out = j;
    return DEMIX_OK;
}

demixd_job_state demixd_job_get_state(demixd_job *j)
{
    pthread_mutex_lock(&j->lock);
    demixd_job_state s = j->state;
    pthread_mutex_unlock(&j->lock);
    return s;
}

demixd_zip *demixd_job_zip(demixd_job *j)
{
    return demixd_job_get_state(j) == DEMIXD_JOB_DONE ? &j->zip : NULL;
}

void demixd_job_failure(demixd_job *j, int *http_status, const char **code,
                        const char **message)
{
    pthread_mutex_lock(&j->lock);
    *http_status = j->http_status ? j->http_status : 500;
    *code = j->code[0] ? j->code : "internal";
    *message = j->message[0] ? j->message : "The job failed.";
    pthread_mutex_unlock(&j->lock);
}

void demixd_job_release(demixd_job *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->lock);
    j->cancelled = 1;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    job_unref(j);
}
