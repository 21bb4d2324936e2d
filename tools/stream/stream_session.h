/*
 * stream_session.h - one connection of `demix stream` (cmd_stream.c): the
 * state its pieces share, and the glue (stream_session.c) between the
 * connection's events (ws_client.h) and the protocol's client side, the
 * shared client-session core (client_session.h: start, ready, error,
 * summary, the audio_out checks, end and the close). What stays here is
 * stream's own: the start it asks for, the ready's report, the timer
 * (silence, the grace after a failure), the close's wording, and the
 * resume after a reconnect (client_resume.h): a server that goes away
 * (1012 restarting, 1013, 1001, a dropped connection) is connected to
 * again, and the new session re-sends a tail of input before the first
 * position not yet received on every stem; the output it sends for the
 * tail is discarded, so the files have no gap and no repeat. The pieces:
 *
 *   stream_input.h    file -> FIFO -> audio_in messages, paced
 *   stream_output.h   audio_out messages -> one WAV file per stem
 *   stream_report.h   latency probes and the final report
 *
 * Private to demix stream: only cmd_stream.c and the stream_*.c files
 * include it.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#ifndef DEMIX_STREAM_SESSION_H
#define DEMIX_STREAM_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <opus/opus.h>

#include "audio_io.h"
#include "client_resume.h"
#include "client_session.h"
#include "demix_error.h"
#include "progress.h"
#include "protocol.h"
#include "resample.h"
#include "ws_client.h"

#define STREAM_PATH_BYTES 4096
#define STREAM_PROBE_RING 8192 /* latency probes outstanding */

typedef struct stream_options {
    const char *url;
    const char *input;
    const char *out_dir;
    const char *stems;
    const char *mix;
    const char *token;
    int opus;
    int float32;
    int realtime;
    int quiet;
    long bitrate_bps;
    long timeout_s;
    client_resume_options resume; /* max_attempts 0: --reconnect 0 */
} stream_options;

/* One output stream: a source in stems mode, or the mix. */
typedef struct stream_stem {
    int active;
    int wire_index;      /* audio_out stem byte */
    char name[DEMIX_PROTO_NAME_BYTES];
    audio_writer *writer;
    OpusDecoder *dec;
    int skip_left;       /* Opus pre_skip frames still to drop */
    int64_t dec_pos;     /* Opus: the session position of the next decoded
                            frame (after pre_skip) */
    resampler *rs;       /* session rate -> file rate; NULL when equal */
    int64_t avail;       /* global positions received, contiguous from 0
                            (after pre_skip, over every session) */
    int64_t fed;         /* of those, passed on (trimmed to the input) */
    int64_t written;     /* file-rate frames written */
} stream_stem;

typedef struct stream_probe {
    int64_t pos;
    double t;
} stream_probe;

typedef struct stream_session {
    const stream_options *o;
    ws_client *ws;
    client_session core; /* the protocol's state (core.state) and checks */
    int failed;
    int server_error;  /* failed because of an error message (its code:
                          core.error_code) */
    double failed_at;  /* when the failure was noticed (timer) */
    char err[1024];
    int probe_only;    /* stop at ready (reading the model's sources) */
    int probe_done;    /* ready came; closing */
    int stem_count_req;
    char stem_req[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];

    /* reconnects (client_resume.h); positions below are global: those of
     * the first session, whose position p the session of a resume calls
     * p - base */
    client_resume resume;
    int64_t base;          /* the current session's position 0 */
    int64_t resume_at;     /* where the current resume's output continues */
    int64_t grid;          /* the model's hop grid in session frames */
    int retry_pending;     /* the connection went away: reconnect at */
    double reconnect_at;
    int ever_ready;        /* a session got ready (the model is known) */

    /* input */
    audio_reader *reader;
    audio_info info;
    int file_rate;
    int channels;
    int session_rate;
    resampler *in_rs;
    float *read_buf;
    float *fifo;          /* session-rate frames from global position
                             fifo_start: those not yet sent and, for a
                             resume, the tail before them */
    int64_t fifo_start;
    size_t fifo_len;
    size_t fifo_cap;
    int reader_done;      /* file read and resampler flushed */
    int64_t file_frames;  /* frames read from the file */
    int64_t real_frames;  /* session-rate frames of real input, known
                             once reader_done */
    int64_t frames_sent;  /* the global position of the next frame to send
                             (Opus: the padding counts) */
    int64_t sent_max;     /* the largest frames_sent so far */
    int chunk_frames;
    OpusEncoder *enc;
    int enc_lookahead;
    int pad_added;
    double t0;            /* first audio sent */
    int64_t max_in_flight;

    /* ready and output */
    demix_proto_ready ready;
    demix_proto_codec in_codec, out_codec;
    stream_stem stems[DEMIX_PROTO_MAX_STEMS + 1];
    int stem_count;
    float *conv;
    size_t conv_cap;      /* floats */
    char dir[STREAM_PATH_BYTES];
    int dir_made;
    demix_proto_summary summary;
    int close_code;
    char close_reason[128];
    double last_rx;
    double start_time;

    /* latency */
    stream_probe probes[STREAM_PROBE_RING];
    size_t probe_head, probe_tail;
    int64_t probe_floor;  /* positions below were timed before a resume */
    double *lat;
    size_t lat_n, lat_cap;

    progress bar;
} stream_session;

/* Note a failure (client_session_fail): the first one's text goes into
 * s->err (later ones are dropped), and an open connection is closed with
 * 1000. Only once stream_session_connect has run. */
void stream_session_fail(stream_session *s, const char *fmt, ...)
    DEMIX_PRINTF(2, 3);

/* Set up s->core and create s->ws, connecting to s->o->url with the
 * session's event callbacks; the state is CLIENT_CONNECTING from here on.
 * 0, or -1 with s->err set. Also after a connection went away
 * (retry_pending): the old connection is destroyed first. */
int stream_session_connect(stream_session *s);

/* Free what the session holds (files still open are closed, not removed:
 * stream_output_remove first for that). The struct itself is the
 * caller's, ready to be zeroed and used again. */
void stream_session_free(stream_session *s);

#endif /* DEMIX_STREAM_SESSION_H */
