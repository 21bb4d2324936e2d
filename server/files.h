/*
 * files.h - the file API's workers: each runs one job at a time. A job
 * decodes an uploaded audio file (anything libsndfile reads, from memory),
 * separates it through a FILE stream of the shared scheduler (so its hops
 * ride in the same engine steps as live sessions, filling spare capacity
 * only), encodes the chosen stems (WAV 16-bit, FLAC 16-bit or Ogg Opus)
 * into temporary files, and lays out a stored ZIP of them (zip.h).
 *
 * Usage sketch (the HTTP side, on the lws thread):
 *
 *     if (demixd_scheduler_reserve(sched, DEMIXD_LANE_FILE)) -> 503 busy
 *     ... receive the body ...
 *     demixd_job_request rq = {.body = buf, .body_bytes = n, ...};
 *     demixd_job *job;
 *     demixd_job_submit(files, &rq, &job);    // owns body + reservation
 *     ... on a wake-up:
 *     if (demixd_job_state(job) == DEMIXD_JOB_DONE)
 *         stream demixd_job_zip(job) out in HTTP_WRITEABLE;
 *     demixd_job_release(job);                // also cancels a running job
 *
 * Errors a job reports (demixd_job_failure): 400 bad_audio (not an audio
 * file, more than 2 channels, a rate outside 8..384 kHz, a decode error),
 * 400 too_long (over the duration limit), 500 internal (engine, encoder or
 * disk), 503 shutting_down.
 *
 * Memory: the body (at most --max-file-mb) while decoding; per job one
 * separate_signal, a stream, a sndfile writer per stem; the stems go to
 * unlinked temporary files (tmpfile()), so long files do not sit in memory.
 *
 * Threads: submit, state, zip, failure and release from any one thread
 * (the lws thread); the job's processing on its worker; `done` is called
 * on the worker, without locks held, when a job ends.
 */
#ifndef DEMIXD_FILES_H
#define DEMIXD_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "metrics.h"
#include "protocol.h"
#include "scheduler.h"
#include "zip.h"

typedef struct demixd_files demixd_files;
typedef struct demixd_job demixd_job;

typedef enum demixd_job_format {
    DEMIXD_FORMAT_WAV = 0,
    DEMIXD_FORMAT_FLAC = 1,
    DEMIXD_FORMAT_OPUS = 2,
} demixd_job_format;

typedef enum demixd_job_state {
    DEMIXD_JOB_RUNNING = 0, /* queued or working */
    DEMIXD_JOB_DONE = 1,    /* the zip is ready */
    DEMIXD_JOB_FAILED = 2,  /* see demixd_job_failure */
} demixd_job_state;

typedef struct demixd_files_params {
    const demix_model_config *cfg;
    demixd_scheduler *sched;
    demixd_metrics *metrics;
    int workers;     /* = the scheduler's max_file */
    int max_seconds; /* duration limit */
    void (*done)(void *user);
    void *done_user;
} demixd_files_params;

DEMIX_WARN_UNUSED int demixd_files_create(const demixd_files_params *p,
                                          demixd_files **out);
/* Cancel every job, join the workers. Jobs not yet released stay valid
 * (FAILED, 503) until released. NULL: no-op. */
void demixd_files_destroy(demixd_files *f);

typedef struct demixd_job_request {
    uint8_t *body; /* malloc'd; the job frees it */
    size_t body_bytes;
    int stem_count;                   /* 1..T */
    int stems[DEMIX_PROTO_MAX_STEMS]; /* source indices, in response order */
    demixd_job_format format;
    char id[32]; /* for logs */
} demixd_job_request;

/* Queue a job; it takes the body and one FILE reservation of the
 * scheduler (made by the caller). DEMIX_ENOMEM or DEMIX_EBUSY (stopping):
 * then nothing was taken. */
DEMIX_WARN_UNUSED int demixd_job_submit(demixd_files *f, demixd_job_request *rq,
                                        demixd_job **out);

demixd_job_state demixd_job_get_state(demixd_job *j);
/* DONE: the archive (read it from one thread until release). */
demixd_zip *demixd_job_zip(demixd_job *j);
/* FAILED: HTTP status, error code and sentence (valid until release). */
void demixd_job_failure(demixd_job *j, int *http_status, const char **code,
                        const char **message);
/* The caller is done; a running job is cancelled. NULL: no-op. */
void demixd_job_release(demixd_job *j);

/* File extension of a format: "wav", "flac", "opus". */
const char *demixd_format_ext(demixd_job_format f);

#endif /* DEMIXD_FILES_H */
