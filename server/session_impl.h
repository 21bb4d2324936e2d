/*
 * session_impl.h - the inside of a WebSocket session, shared by session.c
 * (lifecycle, control messages, writing), session_in.c (audio in: decode,
 * resample, feed the stream) and session_out.c (audio out: select or mix,
 * resample, encode, queue). Not for other files.
 *
 * Every field belongs to the session's service thread; the only state
 * shared with the scheduler is inside `stream` (lane.h).
 *
 * Buffers, all made when `start` is accepted (nothing per hop):
 *   stage    one decoded client message, client rate, `ch` interleaved;
 *            fed to rs_in in chunks while the stream's ring has room
 *   conv     rs_in's output converted to the model's C channels
 *   mixbuf   one model hop of the chosen stems or the mix, [H][nout*ch],
 *            rs_out's input (not made where out_direct)
 *   ostage   rs_out's output, client rate, [nout][frames][ch] (each
 *            output stream's frames together, as its messages carry them),
 *            drained into messages as the queue takes them; at the
 *            model's rate (out_direct) filled from the lane's hops without
 *            mixbuf, as int16 where the client gets them unchanged
 *            (out_s16_exact)
 *   opus_acc one Opus frame per output stream, [nout][F*ch]
 *   txq      outbound messages
 */
#ifndef DEMIXD_SESSION_IMPL_H
#define DEMIXD_SESSION_IMPL_H

#include <opus/opus.h>

#include "resample.h"
#include "server.h"
#include "lane.h"
#include "txq.h"

#define SESSION_IN_RING_HOPS 8         /* model hops the input ring holds */
#define SESSION_OUT_RING_HOPS 8        /* output hops the scheduler may queue */
#define SESSION_PUMP_MODEL_FRAMES 1024 /* resampler chunk, model rate */
#define SESSION_TXQ_BYTES (256 * 1024)
#define SESSION_TXQ_LOW (64 * 1024) /* take a new hop below this */
#define SESSION_PCM_MSG_FRAMES 4096 /* most frames per PCM message */
#define SESSION_OPUS_MAX_PACKET 4000
#define SESSION_START_TIMEOUT_S 10
/* After a session gave up its stream, its close frame waits until the
 * scheduler has returned the slot (looked at every SETTLE_POLL_US), at
 * most SESSION_SETTLE_MAX_MS: a client that reconnects as soon as it saw
 * the close finds the slot free (docs/server.md, session lifetime). */
#define SESSION_SETTLE_POLL_US 2000
#define SESSION_SETTLE_MAX_MS 2000

/* A session's life beside its protocol state (which is IDLE, STREAMING
 * or ENDING while the session is OPEN):
 *
 *   OPEN --demixd__session_fail, or the summary queued--> CLOSING
 *     |                                                    ^
 *     +-- the same while holding a live slot --> SETTLING -+ slot returned
 *                                                            (or deadline)
 *
 * OPEN: messages are handled. CLOSING: an error or the summary and the
 * close are queued; what the client sends is dropped; the queue drains
 * and the close goes last. SETTLING: the same, but the close frame waits
 * until the scheduler has returned the session's slot (demixd_session_
 * timer polls), so a client that reconnects at once finds it free.
 * Apart from these, `force` (a shutdown past its grace) closes with 1001
 * at the next writeable whatever the life or the queue. */
typedef enum demixd_session_life {
    DEMIXD_SESSION_OPEN = 0,
    DEMIXD_SESSION_SETTLING,
    DEMIXD_SESSION_CLOSING,
} demixd_session_life;

/* Who ended the stream (the protocol state ENDING): the client's `end`,
 * or the server's shutdown (the file header of session.c). */
typedef enum demixd_session_end {
    DEMIXD_SESSION_END_NONE = 0,
    DEMIXD_SESSION_END_CLIENT,
    DEMIXD_SESSION_END_SERVER,
} demixd_session_end;

struct demixd_session {
    demixd *d;
    demixd_service *svc; /* the thread it lives on, for life */
    struct lws *wsi;
    demixd_session *prev, *next; /* svc->sessions */
    char id[DEMIX_PROTO_SESSION_BYTES];
    demix_proto_state state;
    demixd_session_life life;
    demixd_session_end ended_by;
    int result;   /* demixd_session_result for metrics */
    int force;    /* close 1001 at the next writeable */
    int64_t opened_ns, start_ns;
    int64_t traffic_ns;  /* last message received or written (idle
                            timeout, --idle-timeout) */
    int held_live;       /* counted in d->live_held */
    int64_t settle_deadline_ns; /* SETTLING: the close goes out by then */

    /* message assembly (rx_buf made on the first fragmented message) */
    uint8_t *rx_buf;
    size_t rx_len;
    int rx_in_msg, rx_binary, rx_dropping;

    /* agreed at start */
    int rate, ch;
    demix_proto_codec in_codec, out_codec;
    demix_proto_mode mode;
    int nout;                              /* output streams */
    int out_s16; /* the lane's hops are int16 (else float) planes */
    int out_direct; /* the model's rate, no channel mean: hops go
                     * straight into ostage (no mixbuf, no resampling) */
    int out_s16_exact; /* PCM16 out and the client gets the engine's
                        * int16 samples unchanged: same rate, no channel
                        * mean */
    int out_source[DEMIX_PROTO_MAX_STEMS]; /* STEMS: source of each */
    float gain[DEMIX_PROTO_MAX_STEMS];     /* MIX: gain of each source */
    int opus_bitrate, opus_frame_ms, opus_frame_frames, opus_pre_skip;
    int latency_frames;
    int path_latency; /* latency.h frames: PCM trail, client rate */
    int C, H, T, model_rate;

    demixd_lane *stream; /* NULL before start and after release */

    /* input */
    uint32_t in_seq;
    OpusDecoder *dec;
    int pre_skip_left;
    float *stage;
    size_t stage_cap, stage_len, stage_pos; /* frames */
    resampler *rs_in;
    size_t pump_chunk; /* client frames per resampler call */
    size_t in_margin;  /* ring room needed before a call */
    int lag_in;        /* most model frames rs_in holds back */
    float *conv;
    size_t conv_frames;
    int rx_paused;
    int in_error;         /* the input sink failed */
    int64_t in_frames;    /* client frames received (after pre_skip) */
    int64_t model_frames; /* M: model frames produced by rs_in */
    int input_flushed;    /* end: rs_in flushed, hops_total known */
    int64_t hops_total;   /* ceil(M/H) + 1, or 0; -1 before the end */
    int64_t pad_left;     /* zero frames still to feed */

    /* output */
    int64_t hops_out; /* hops taken from the stream */
    resampler *rs_out;
    int lag_out; /* most client frames rs_out holds back */
    float *mixbuf;         /* not made where out_direct */
    unsigned char *ostage; /* float, or int16 where out_s16_exact */
    size_t ostage_cap, ostage_off, ostage_len; /* frames */
    int out_error;
    int hop_failed; /* a hop's mix or resampling failed (any thread) */
    int64_t out_frames;   /* frames per stream sent (PCM) or encoded (Opus) */
    int64_t pad_out_left; /* zeros to append at the end */
    int out_final;        /* every output frame is in ostage or sent */
    int last_sent;        /* LAST messages queued */
    OpusEncoder *enc[DEMIX_PROTO_MAX_STEMS];
    float *opus_acc;
    int opus_acc_len; /* frames */
    int64_t opus_packets;
    uint32_t out_seq;

    demixd_txq txq;
    int stats_pending;
    uint64_t hops_cached, late_cached; /* the stream's counters, kept
                                          after its release */
};

/* An error or the final close is queued (CLOSING or SETTLING). */
static inline int demixd__session_closing(const demixd_session *s)
{
    return s->life != DEMIXD_SESSION_OPEN;
}

/* session.c */
void demixd__session_fail(demixd_session *s, demix_proto_code code,
                          const char *field, const char *fmt, ...)
    DEMIX_PRINTF(4, 5);
void demixd__session_request_write(demixd_session *s);
/* Bytes of the queue kept free for control messages (error, close,
 * summary, one stats reply). */
size_t demixd__session_txq_reserve(const demixd_session *s);

/* session_in.c */
DEMIX_WARN_UNUSED int demixd__session_in_setup(demixd_session *s,
                                               const demix_proto_start *st,
                                               char *err, size_t cap);
void demixd__session_in_free(demixd_session *s);
/* A binary message in STREAMING. */
void demixd__session_audio(demixd_session *s, const uint8_t *msg, size_t len);
/* Feed staged input (and, after end, the flush and padding) into the
 * stream as room allows; pauses or resumes the socket. */
void demixd__session_pump(demixd_session *s);
/* The session is closing: read the socket again (what comes is dropped),
 * or a client held back by a paused socket never gets its close reply
 * through. */
void demixd__session_in_resume(demixd_session *s);

/* session_out.c */
DEMIX_WARN_UNUSED int demixd__session_out_setup(demixd_session *s,
                                                const demix_proto_start *st,
                                                char *err, size_t cap);
void demixd__session_out_free(demixd_session *s);
/* Turn output hops into queued messages while the queue is low. 1 when
 * every output message, LAST flags included, is queued (the caller then
 * queues the summary and the close). */
int demixd__session_produce(demixd_session *s);

#endif /* DEMIXD_SESSION_IMPL_H */
