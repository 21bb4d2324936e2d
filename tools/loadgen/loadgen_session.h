/*
 * loadgen_session.h - one live streaming session of `demix loadgen`, driven
 * by events on a shared loop (loadgen_conn.h: the worker threads' wsio
 * loops, or a ws_client loop for wss:// and the reference session):
 * connect -> start -> ready -> audio
 * at real-time pace while stems come in -> end -> summary -> close 1000
 * (docs/protocol.md). It counts what it sends and receives and measures
 * latency; it keeps no audio.
 *
 * Pacing. Message k (LOADGEN_AUDIO_PCM_MESSAGE_MS or one Opus packet) is
 * due when its last frame would have been captured live: at
 * t0 + (k + 1) * message duration. t0 is the first tick of the run's
 * message clock (cfg->epoch_s + j * message duration) after ready came,
 * plus the session's phase: sessions are spread over the message period
 * in LOADGEN_PHASES groups (index % LOADGEN_PHASES), as independent live
 * clients are, while the sessions of a group share their send times. The
 * session sets no timer of its own: the thread that runs it calls
 * loadgen_session_tick() for a phase group at that group's ticks (one
 * wake-up serves the group; a timer per session and message would cost
 * the client a sorted-list insertion each). A session that fell behind
 * (its thread was busy) sends the overdue messages back to back. It never
 * has more than latency + LOADGEN_IN_FLIGHT_S of audio in flight (sent,
 * not yet back on every stem): a server that falls that far behind is not
 * keeping up, and the bound keeps the client's and the kernel's buffers
 * small. The reference session (LOADGEN_ROLE_REFERENCE) ignores the clock
 * and sends as fast as that bound allows.
 *
 * End. After cfg->seconds of audio (or at Ctrl-C: loadgen_session_stop)
 * the session judges whether the server kept up, then sends end and reads
 * the rest, the summary and the close. When the stream's time is up while
 * the in-flight bound still holds audio back, the session ends there: the
 * audio it could not send is lost (below).
 *
 * Kept up. At that moment the output every stem has reached must be
 * within the announced latency + cfg->keep_up_margin_s of the audio a
 * live source would have produced by then; lag_end_s is the distance
 * (real time minus the output reached, in seconds, so it includes the
 * algorithmic latency).
 *
 * Latency. For each message's first position p: from its send to the
 * moment position p has arrived on every stem (Opus output: decoded,
 * after pre_skip; computed from the packet headers). Samples go to the
 * session's latency_hist (fixed size). The added latency, the same minus
 * the announced latency (ready.latency_frames) and at least 0, goes to
 * the histogram of the session's thread (`added`), and a
 * message whose added latency exceeds cfg->late_s is a late hop of the
 * client's count ("hop" here: one input message, 10 ms PCM or 20 ms Opus).
 * Send times are kept in a ring of LOADGEN_PROBES floats (the delay of the
 * send after the message was due), indexed by message number; the
 * in-flight bound keeps the messages outstanding below the ring's size.
 *
 * Lost hops: positions of the session's stream (cfg->seconds, or what it
 * had sent when stopped by Ctrl-C) that had not arrived on every stem when
 * the session ended, in messages (rounded up): audio the in-flight bound
 * held back at the end, or output of a session that failed or ended early.
 *
 * Output checks: the client-session core's (client_session.h: sequence
 * numbers, each stem's positions contiguous from 0 with no gap and no
 * repeat, payload sizes, the LAST flag), then loadgen's own: every Opus
 * packet of ready's size and parsed (loadgen_verify.h). A
 * sampled or reference session also decodes and compares (or records) its
 * stems (loadgen_verify.h); the result is in `verify` once it has ended.
 *
 * Outcome: OK (summary, close 1000, the server counted the frames sent),
 * REFUSED (error at_capacity), FAILED (anything else; `failure` and
 * `message` say what, `error_code` the server's code if it sent one).
 *
 * Reconnects (client_resume.h). A session that has been ready once and
 * whose server goes away (error restarting / at_capacity / shutting_down,
 * close 1012, 1013 or 1001, a dropped connection) connects again after a
 * backoff with jitter (cfg->resume: attempts, time), starts a new session
 * with the same start, and re-sends from the message boundary at or
 * before the resume point (the first position not yet received on every
 * stem) minus cfg->resume.tail_ms; the output before the resume point is
 * not counted again. Positions stay those of the first session (global):
 * the new session's position p is base + p. Its messages keep their
 * original due times, so the ones the outage held back go out back to
 * back (the in-flight bound applies), and the end of the stream moves by
 * the outage's length. A sampled session's comparison stops at the
 * outage (the re-primed output is not bit-equal to an uninterrupted run's:
 * docs/protocol.md); the reference session does not reconnect. Not
 * resumed: a session never ready (a refusal stays a refusal), and one
 * that stops hearing from the server (--timeout).
 *
 * Memory: a fixed struct per session (about 5.7 KB: the latency histogram
 * 2.6 KB, the send-time ring 2 KB, the client-session core 0.5 KB) plus the connection (loadgen_conn.h) and its
 * receive buffer (grows to the largest message); a sampled session's
 * verifier while it runs (loadgen_verify.h).
 *
 * Thread context: the thread that services the session's loop, only.
 */
#ifndef DEMIX_LOADGEN_SESSION_H
#define DEMIX_LOADGEN_SESSION_H

#include <stdint.h>

#include "client_resume.h"
#include "client_session.h"
#include "latency_hist.h"
#include "loadgen_audio.h"
#include "loadgen_verify.h"
#include "protocol.h"
#include "loadgen_conn.h"

#define LOADGEN_PROBES 512
#define LOADGEN_PHASES 4        /* send-time groups per message period */
#define LOADGEN_IN_FLIGHT_S 2.0 /* beyond the announced latency */
#define LOADGEN_CLOSE_GRACE_S 3.0
/* A message this early counts as due: lws 4.1 waits in whole
 * milliseconds, so a thread may wake up to 1 ms before a tick. */
#define LOADGEN_DUE_SLACK_S 0.001

/* What every session of a run shares (read-only while they run). */
typedef struct loadgen_config {
    const char *url;
    const char *token; /* NULL: none sent */
    const loadgen_audio *audio;
    demix_proto_codec codec; /* both directions */
    int stem_count;
    char stems[DEMIX_PROTO_MAX_STEMS][DEMIX_PROTO_NAME_BYTES];
    double seconds;          /* audio per session */
    double epoch_s;          /* origin of the message clock (monotonic s) */
    double timeout_s;        /* no message from the server for this long */
    double keep_up_margin_s; /* kept up: lag <= latency + this */
    double late_s;           /* a client late hop: added latency above */
    loadgen_reference *reference; /* NULL: no output is compared */
    double verify_min_snr_db;     /* a sampled session below: mismatch */
    client_resume_options resume; /* reconnects; max_attempts 0: none */
} loadgen_config;

typedef enum loadgen_role {
    LOADGEN_ROLE_LOAD = 0,  /* paced, output parsed and counted */
    LOADGEN_ROLE_SAMPLE,    /* paced, output also decoded and compared */
    LOADGEN_ROLE_REFERENCE, /* as fast as it may, output recorded */
} loadgen_role;

typedef enum loadgen_outcome {
    LOADGEN_RUNNING = 0,
    LOADGEN_OK,
    LOADGEN_REFUSED,
    LOADGEN_FAILED,
} loadgen_outcome;

/* The client-session core's failures (client_session.h), by loadgen's
 * names. */
typedef enum loadgen_failure {
    LOADGEN_FAIL_NONE = CLIENT_FAIL_NONE,
    LOADGEN_FAIL_CONNECT = CLIENT_FAIL_CONNECT, /* no connection (refused,
                                                   unreachable, ...) */
    LOADGEN_FAIL_SERVER = CLIENT_FAIL_SERVER,   /* an error message
                                                   (error_code) */
    LOADGEN_FAIL_CLOSED = CLIENT_FAIL_CLOSED,   /* closed or dropped before
                                                   the summary */
    LOADGEN_FAIL_PROTOCOL = CLIENT_FAIL_PROTOCOL, /* the server broke the
                                                     protocol */
    LOADGEN_FAIL_TIMEOUT = CLIENT_FAIL_TIMEOUT, /* no message for timeout_s */
    LOADGEN_FAIL_INTERRUPTED = CLIENT_FAIL_INTERRUPTED, /* Ctrl-C before
                                                           ready */
    LOADGEN_FAIL_CLIENT = CLIENT_FAIL_CLIENT,   /* our side (out of memory,
                                                   ...) */
} loadgen_failure;

typedef struct loadgen_session {
    int index;
    loadgen_role role;
    const loadgen_config *cfg;
    latency_hist *added; /* the thread's added-latency histogram, or NULL */
    loadgen_conn conn;
    client_session core; /* the protocol's state (core.state) and checks */
    int connect_started; /* loadgen_session_connect ran */
    int closed; /* the connection has ended */
    loadgen_outcome outcome;
    loadgen_failure failure;
    int has_error_code;
    demix_proto_code error_code;
    int close_code;    /* 0 until closed */
    char message[256]; /* what went wrong, for people */

    double t_connect, t_ready, t0, t_done, last_rx, failed_at;
    double phase_s;
    int stop_requested;

    /* ready */
    char id[DEMIX_PROTO_SESSION_BYTES];
    int rate_hz, channels;
    int latency_frames;
    int out_pre_skip; /* Opus output: decoded frames to drop */
    int out_packet_frames; /* Opus output: frames per packet */
    int in_pre_skip;  /* Opus input: our encoder's lookahead */
    int msg_frames;
    int64_t max_in_flight;

    /* input */
    uint64_t cursor;
    int64_t messages_sent;
    int64_t wire_frames_sent; /* decoded frames for Opus, pre_skip included */
    int64_t target_wire_frames;

    /* the verdict */
    int judged;
    int kept_up;
    double lag_end_s;
    double lag_max_s; /* largest lag seen while streaming */

    /* output (positions per stem slot: core.slots) */
    int64_t messages_received;

    int have_summary;
    demix_proto_summary summary;

    /* latency: the send delay of message k at [k % LOADGEN_PROBES] */
    float probe_delay_s[LOADGEN_PROBES];
    int64_t probe_tail; /* the first message not yet back on every stem */
    int64_t timed_hops; /* messages whose latency was measured */
    int64_t late_hops;  /* of those, added latency above cfg->late_s */
    latency_hist latency;

    loadgen_verifier *verifier; /* sampled/reference, while it runs */
    loadgen_verify_result verify;

    /* reconnects (positions above are global: the first session's) */
    client_resume resume;
    const loadgen_loop *loop;  /* the loop it connects on */
    uint64_t start_cursor;     /* the audio loop's cursor at message 0 */
    int64_t base;              /* the current session's position 0 */
    int64_t have[DEMIX_PROTO_MAX_STEMS]; /* per slot, output received
                                            before the current session */
    int retry_pending;         /* went away: reconnect at reconnect_at */
    double reconnect_at;
    double outage_start, outage_s; /* the current one; all so far */
} loadgen_session;

/* Set up session `index` of `count` (its phase group and its place in the
 * audio loop follow from those; a sampled or reference session starts at
 * the loop's start). added: where the added latency goes (NULL: nowhere).
 * Nothing is connected yet. */
void loadgen_session_init(loadgen_session *s, const loadgen_config *cfg,
                          int index, int count, loadgen_role role,
                          latency_hist *added);

/* Start connecting on loop (the thread that services loop calls this). A
 * connection that cannot even start ends the session at once (FAILED,
 * CONNECT or CLIENT). */
void loadgen_session_connect(loadgen_session *s, const loadgen_loop *loop);

/* End a session now, connected or not, as FAILED with this failure and
 * message (unless it already has an outcome): for sessions never
 * connected when the round stops, and when the loop itself failed. */
void loadgen_session_end_now(loadgen_session *s, loadgen_failure failure,
                             const char *why);

/* The phase group's tick: ask to send when the next message is due (or
 * the stream's time is up). */
void loadgen_session_tick(loadgen_session *s, double now);

/* End early (Ctrl-C): a streaming session is judged now and sends end; one
 * not yet ready closes (FAILED, INTERRUPTED). */
void loadgen_session_stop(loadgen_session *s);

/* Drop the connection now, without waiting for anything. */
void loadgen_session_abort(loadgen_session *s);

/* Periodic checks (about every 100 ms): the server's silence, the grace
 * after a failure, the end of a stalled stream, the lag. */
void loadgen_session_poll(loadgen_session *s, double now);

/* 1 once the connection has ended and the outcome is final. */
int loadgen_session_done(const loadgen_session *s);

/* 1 while audio is being sent (ready came, end not yet sent). */
int loadgen_session_streaming(const loadgen_session *s);

/* Positions (input frames as the server counts them) sent so far. */
int64_t loadgen_session_positions_sent(const loadgen_session *s);

/* Output frames received on stem slot i (0..cfg->stem_count - 1), counted
 * up to the positions sent. */
int64_t loadgen_session_frames_received(const loadgen_session *s, int slot);

/* Outages survived (a new session got ready after each). */
int loadgen_session_reconnects(const loadgen_session *s);

/* Lost hops (see above); 0 for a session that never got ready. */
int64_t loadgen_session_lost_hops(const loadgen_session *s);

/* Seconds of real time minus output reached on every stem, now. */
double loadgen_session_lag_s(const loadgen_session *s, double now);

/* Destroy the connection (no more events). */
void loadgen_session_free(loadgen_session *s);

const char *loadgen_failure_name(loadgen_failure f);

#endif /* DEMIX_LOADGEN_SESSION_H */
