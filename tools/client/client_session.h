/*
 * client_session.h - the client side of one demixd streaming session
 * (docs/protocol.md), without any I/O: the state machine and the checks
 * that `demix stream` and `demix loadgen` share. The caller owns the
 * connection (ws_client, wsio or anything else) and feeds its events in;
 * the core answers through a small table of operations (what to send, when
 * to close) and callbacks (ready, each audio message, summary, failure).
 *
 *   connect -> open -> start (first writable) -> ready -> audio in while
 *   audio out comes back -> end -> the rest, summary -> close 1000
 *
 * Usage sketch (the connection's events call the core):
 *
 *     client_session_init(&cs, &ops, me);
 *     on open:      client_session_on_open(&cs);      // -> want_write
 *     on writable:  if (client_session_on_writable(&cs)) {  // streaming
 *                       size_t cap;
 *                       uint8_t *p = client_session_audio_payload(&cs, &cap);
 *                       ... write n payload bytes at p ...
 *                       client_session_send_audio(&cs, n);  // or _send_end
 *                   }
 *     on text:      client_session_on_text(&cs, data, len);
 *     on binary:    if (client_session_on_binary(&cs, data, len)) ...
 *     on close:     switch (client_session_on_close(&cs, &code, reason)) ...
 *
 * What the core checks, and the failure it reports (kind and text):
 *  - text messages parse (client_parse.h): else PROTOCOL "the server sent
 *    a malformed message: ..."; ready only once, only after start, and
 *    matching the start (rate, channels, codecs, mode, stem count, stem
 *    indices); summary only after end; stats ignored; anything else
 *    PROTOCOL. An error message is SERVER "server error CODE: MESSAGE
 *    (field F)", with its code kept (has_error_code, error_code); the
 *    server closes after it, so the core does not.
 *  - audio messages: none before ready; each header valid for the agreed
 *    codec and channels with the next seq (demix_proto_audio_out_decode);
 *    the stem one that ready announced; each stem's positions contiguous
 *    from 0 (no gap, no repeat); nothing on a stem after its LAST flag.
 *  - the close: the peer's code corrected (demix_proto_received_close_code)
 *    and classified (client_close_verdict); the wording of what it means
 *    is the caller's.
 * Reconnects (client_resume.h): with client_session_allow_retry the
 * ways a server goes away that call for a reconnect are not failures: an
 * error `restarting`, `at_capacity` or `shutting_down` (kept in
 * error_code, not reported), then a close before the summary with 1012,
 * 1013 or 1001, or a connection that drops (1006) before the summary. The
 * close's verdict is then CLIENT_CLOSE_RETRY, with retry_why saying what
 * happened; the driver reconnects, or reports retry_why as its failure
 * when it gives up (client_session_note). Without it they are failures as
 * before.
 * A failure is reported once (the first word stands) through on_failure;
 * after it the core ignores messages and writable events. A failure seen
 * on our side (client_session_fail) also closes the connection with 1000
 * "client error"; client_session_note records one without closing.
 *
 * Slots: the output streams in ready's order (stems mode: ready.stems[i],
 * wire index ready.stem_source[i]; mix mode: one slot, wire index
 * DEMIX_PROTO_STEM_MIX, named "mix").
 *
 * Memory: the struct only (about 0.5 KB); nothing allocated.
 *
 * Thread context: one session belongs to the thread that delivers its
 * connection's events; sessions on different threads are independent (the
 * text parser takes client_parse's lock).
 */
#ifndef DEMIX_CLIENT_SESSION_H
#define DEMIX_CLIENT_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"
#include "protocol.h"

typedef enum client_state {
    CLIENT_CONNECTING = 0,
    CLIENT_WAIT_READY, /* open; start goes on the first writable */
    CLIENT_STREAMING,  /* ready came: audio goes out */
    CLIENT_ENDING,     /* end sent: the rest, then the summary */
    CLIENT_FINISHING,  /* summary (or an error) came: waiting for the close */
    CLIENT_CLOSED,
} client_state;

/* What went wrong (loadgen's report names them, loadgen_failure_name). */
typedef enum client_failure {
    CLIENT_FAIL_NONE = 0,
    CLIENT_FAIL_CONNECT,     /* no connection (refused, unreachable, ...) */
    CLIENT_FAIL_SERVER,      /* an error message (error_code) */
    CLIENT_FAIL_CLOSED,      /* closed, dropped or a send failed */
    CLIENT_FAIL_PROTOCOL,    /* the server broke the protocol */
    CLIENT_FAIL_TIMEOUT,     /* the server went silent */
    CLIENT_FAIL_INTERRUPTED, /* stopped by the user */
    CLIENT_FAIL_CLIENT,      /* our side (out of memory, files, ...) */
} client_failure;

/* What a close means (client_session_on_close). */
typedef enum client_close_verdict {
    CLIENT_CLOSE_CLEAN = 0,      /* after the summary, with 1000 */
    CLIENT_CLOSE_AFTER_SUMMARY,  /* after the summary, another code */
    CLIENT_CLOSE_DROPPED,        /* before the summary, no close frame */
    CLIENT_CLOSE_EARLY,          /* before the summary, a close frame */
    CLIENT_CLOSE_AFTER_FAILURE,  /* a failure was already reported */
    CLIENT_CLOSE_RETRY,          /* before the summary, a way of going away
                                    that calls for a reconnect (only with
                                    client_session_allow_retry) */
} client_close_verdict;

/* A stem of the session's output. */
typedef struct client_slot {
    int wire_index;   /* audio_out stem byte */
    char name[DEMIX_PROTO_NAME_BYTES];
    int64_t next_pos; /* position the next message must start at */
    int last_seen;    /* its LAST flag came */
} client_slot;

typedef struct client_session_ops {
    /* The connection's transmit buffer and its capacity (ws_client_tx_*). */
    uint8_t *(*tx_buffer)(void *user, size_t *cap);
    /* Send len bytes of the transmit buffer as one message; 0 or < 0. */
    int (*send)(void *user, int binary, size_t len);
    /* Ask for a writable event. */
    void (*want_write)(void *user);
    /* 1 while the connection is open. */
    int (*is_open)(void *user);
    /* Start the close handshake. */
    void (*close)(void *user, int code, const char *reason);

    /* Fill the start message (demix_proto_start_init done). */
    void (*make_start)(void *user, demix_proto_start *st);
    /* Hint for a start the protocol refuses to write ("--stems and
     * --token"). */
    const char *start_hint;
    /* ready passed the core's checks: take what the client needs. 0 to
     * go on streaming; nonzero to stop here (the client failed, or wants
     * nothing more and called client_session_close). May be NULL. */
    int (*on_ready)(void *user, const demix_proto_ready *r);
    /* An audio message passed the core's checks and is about to advance
     * its slot: 0 to accept it; nonzero when the client failed. May be
     * NULL. */
    int (*on_audio)(void *user, int slot, const demix_proto_audio_out *h);
    /* The summary came (after end). May be NULL. */
    void (*on_summary)(void *user, const demix_proto_summary *m);
    /* The first failure, with its text (at most CLIENT_SESSION_TEXT_BYTES
     * - 1 bytes). */
    void (*on_failure)(void *user, client_failure kind, const char *text);
} client_session_ops;

#define CLIENT_SESSION_TEXT_BYTES 1024

/* Read-only outside client_session.c. */
typedef struct client_session {
    const client_session_ops *ops;
    void *user;
    client_state state;
    int failed;
    client_failure failure;
    int has_error_code;
    demix_proto_code error_code;

    /* what start asked (ready must match) */
    int start_sent;
    int rate_hz, channels;
    demix_proto_codec in_codec, out_codec;
    demix_proto_mode mode;
    int stem_count_req;

    uint32_t seq_in, seq_out;
    int end_sent;
    int slot_count;
    client_slot slots[DEMIX_PROTO_MAX_STEMS];
    int have_summary;
    int close_code; /* 0 until closed */

    int retry_ok;        /* client_session_allow_retry */
    char retry_why[256]; /* CLIENT_CLOSE_RETRY: what happened */
} client_session;

/* Set up (zeroes the struct); ops and user must outlive the session. */
void client_session_init(client_session *cs, const client_session_ops *ops,
                         void *user);

/* The first failure (the first word stands): on_failure, and for a
 * failure on our side, a close with 1000 "client error" when the
 * connection is open. fmt as printf. */
void client_session_fail(client_session *cs, client_failure kind,
                         const char *fmt, ...) DEMIX_PRINTF(3, 4);
/* The same without closing (the caller aborts, or the link is gone). */
void client_session_note(client_session *cs, client_failure kind,
                         const char *fmt, ...) DEMIX_PRINTF(3, 4);

/* Treat the ways a server goes away (above) as a reason to reconnect
 * rather than as failures. Call after client_session_init. */
void client_session_allow_retry(client_session *cs, int on);

/* 1 for the error codes that call for a reconnect (restarting,
 * at_capacity, shutting_down). */
int client_session_retry_code(demix_proto_code code);

/* Events. */
void client_session_on_open(client_session *cs);
/* Sends start when due. 1 when the session is streaming (the caller may
 * send audio or end now), else 0. */
int client_session_on_writable(client_session *cs);
void client_session_on_text(client_session *cs, const uint8_t *data,
                            size_t len);
/* 1 when the message was audio the core accepted (its slot advanced),
 * else 0 (ignored after a failure, or a failure now). */
int client_session_on_binary(client_session *cs, const uint8_t *data,
                             size_t len);
/* *code: the peer's close code, corrected in place (lws 4.1 reports
 * 1012-1015 as 1002). The state becomes CLOSED. */
client_close_verdict client_session_on_close(client_session *cs, int *code,
                                             const char *reason);
/* No connection was made: the state becomes CLOSED (the caller reports
 * it, CLIENT_FAIL_CONNECT). */
void client_session_on_connect_error(client_session *cs);

/* Sending while streaming: the payload goes at the returned pointer (cap
 * bytes there), then client_session_send_audio writes the audio_in
 * header (the start's input codec, the next seq) in front and sends it.
 * NULL (a failure reported) when the buffer cannot hold a header. */
uint8_t *client_session_audio_payload(client_session *cs, size_t *cap);
DEMIX_WARN_UNUSED int client_session_send_audio(client_session *cs,
                                                size_t payload_bytes);
/* The end message; the state becomes ENDING. 0, or -1 (failure
 * reported). */
DEMIX_WARN_UNUSED int client_session_send_end(client_session *cs);

/* We want nothing more (e.g. ready was all we came for): the state
 * becomes FINISHING and an open connection is closed with code. */
void client_session_close(client_session *cs, int code, const char *reason);

/* The slot of a wire stem index, or -1. */
int client_session_slot_of(const client_session *cs, int wire_index);

const char *client_failure_name(client_failure f);

#endif /* DEMIX_CLIENT_SESSION_H */
