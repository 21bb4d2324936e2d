/*
 * server_fixture.h - the real demixd for integration tests: start it on
 * 127.0.0.1 with a free port (--port 0, the port read from its log line
 * "listening on 127.0.0.1:PORT"), stop it with SIGTERM and check that it
 * exits 0; and a streaming session driver over ws_test_client.h that sends
 * audio, collects every stem by position and checks the protocol as it
 * goes (contiguous positions from 0, output seq numbers, LAST flags).
 *
 * Usage sketch:
 *
 *     server_fixture fx;
 *     assert_int_equal(server_fixture_start(&fx, model_path,
 *                                           "--max-sessions", "4", NULL), 0);
 *     fx_session s;
 *     demix_proto_start st;   // demix_proto_start_init + fields
 *     assert_int_equal(fx_session_open(&s, fx.port, &st), 0);
 *     assert_int_equal(fx_session_run(&s, input, frames, 4096), 0);
 *     const fx_track *vocals = fx_session_track(&s, 2);  // by stem index
 *     ... vocals->x[i * channels + c] is output position i ...
 *     fx_session_free(&s);
 *     assert_int_equal(server_fixture_stop(&fx), 0);   // exit status 0
 *
 * Environment: DEMIXD_BIN, the server binary (set by tests/CMakeLists.txt);
 * DEMIX_TEST_KEEP=1 keeps the server logs (their paths are printed).
 * The server's stdout and stderr go to a log file in a temporary folder;
 * it is printed when a start or a stop fails (server_fixture_print_log).
 *
 * Timeouts (FX_TIMEOUT_MS) are liveness bounds: a broken server fails the
 * test instead of hanging it. Nothing here measures time. Under a
 * sanitizer (DEMIX_TEST_TIMEOUT_SCALE) they stretch.
 *
 * Threads: one thread drives a session (or fx_run_many's set).
 */
#ifndef DEMIX_SERVER_FIXTURE_H
#define DEMIX_SERVER_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <opus/opus.h>

#include "protocol.h"
#include "ws_test_client.h"

/* 60 s, times DEMIX_TEST_TIMEOUT_SCALE (a whole number, default 1): the
 * sanitizer runs of scripts/test.sh make every step several times slower
 * and set it (fx_timeout_ms). */
#define FX_TIMEOUT_MS fx_timeout_ms()
int fx_timeout_ms(void);

/* 1 when DEMIX_TEST_SANITIZER is set (the sanitizer runs of
 * scripts/test.sh): tests then still run every path, but do not assert
 * what only timing decides (a slot back within the server's 2 s settle
 * bound under a step-heavy load, say); each such place says so. */
int fx_under_sanitizer(void);
#define FX_MIX_TRACK DEMIX_PROTO_MAX_STEMS /* tracks[] index of the mix */

typedef struct server_fixture {
    pid_t pid;
    int port;
    char dir[256];
    char log_path[512];
} server_fixture;

/* The server binary (DEMIXD_BIN), or NULL when it is not there. */
const char *server_fixture_bin(void);

/* Start demixd --model MODEL --backend cpu --host 127.0.0.1 --port 0
 * --service-threads 3 plus the extra arguments (NULL-terminated list; a
 * repeated option overrides). 0 once it logged its port;
 * -1 (log printed) when it exited or said nothing within the time limit. */
int server_fixture_start(server_fixture *fx, const char *model_path, ...);

/* SIGTERM, then wait for the exit. Returns its exit status (0 is a clean
 * shutdown), or -1 when it died of a signal or did not exit in time (then
 * it is killed). The log is printed when the status is not 0. */
int server_fixture_stop(server_fixture *fx);

/* A loopback port nothing listens on (bound to port 0, read, closed), for
 * tests of clients that must fail to connect. */
int fx_unused_port(void);

/* A test file's teardown: stop the server when `started` (a failure, also
 * an exit status other than 0 on SIGTERM, is printed), then remove `dir`.
 * 0, or -1 when the server did not stop cleanly. */
int server_fixture_finish(server_fixture *fx, int started, const char *dir);

/* 1 while the process runs. */
int server_fixture_alive(server_fixture *fx);

void server_fixture_print_log(const server_fixture *fx, const char *why);

/* The server's whole log so far, NUL-terminated (free it); NULL when it
 * cannot be read. */
char *server_fixture_read_log(const server_fixture *fx);

/* Band-limited music-like test audio (below 10 kHz, within every
 * resampler's passband): a chirp and tones, faded in and out, different per
 * channel and per seed. malloc'd, frames * channels floats, peak < 0.75. */
float *fx_make_signal(int rate, int channels, int64_t frames, uint64_t seed);

/* Write an "identity" model at rate_hz (D=24, NB=40, T=4, random weights;
 * spectral masks 1, waveform masks 0): before the engines' mixture-
 * consistency projection every source equals the input (model-spec.md
 * steps 6-9: the masked STFT overlap-adds back to the input exactly); the
 * projection (docs/model.md) then takes (T-1)/T of it back from each, so
 * every stem is FX_IDENTITY_GAIN times the input and the stems add up to
 * it: a stem at output position p must equal FX_IDENTITY_GAIN times input
 * position p. 0 or -1. */
int fx_save_identity_model(const char *path, int rate_hz, uint64_t seed);

/* What every stem of an identity model is: 1/T of the input (T = 4; exact
 * in binary, so scaling a reference by it adds no rounding). */
#define FX_IDENTITY_GAIN 0.25f

/* gain * x[i] for n floats (malloc'd): the reference an identity model's
 * stems are compared with. */
float *fx_scaled(const float *x, int64_t n, float gain);

/* ------------------------------------------------------------- sessions */

/* One output stream (a stem or the mix), decoded, at the client rate. */
typedef struct fx_track {
    int expected;      /* ready says it comes */
    float *x;          /* frames * channels, interleaved; x[i] is position i */
    int64_t frames;
    int64_t cap;
    int64_t next_pos;  /* what the next message must start at */
    int last;          /* the LAST flag came */
    int messages;
} fx_track;

typedef struct fx_session {
    wst_conn *c;
    int channels;
    int rate;
    demix_proto_codec in_codec, out_codec;

    int have_ready, have_error, have_summary;
    demix_proto_ready ready;
    demix_proto_error error;
    demix_proto_summary summary;
    int stats_count;
    demix_proto_stats stats; /* the last stats reply */
    int closed;              /* a close frame came */
    int close_code;
    char close_reason[128];
    int eof;                 /* the TCP connection ended */
    char violation[512];     /* first protocol violation by the server */

    /* input */
    int64_t sent;            /* frames queued (Opus: real frames encoded) */
    uint32_t seq;
    int end_sent;
    OpusEncoder *enc;
    int enc_lookahead;
    int opus_frame;          /* input packet frames (20 ms) */
    float *opus_pending;     /* frames not yet a whole packet */
    int opus_pending_frames;

    /* output */
    uint32_t seq_out;
    fx_track tracks[DEMIX_PROTO_MAX_STEMS + 1];
    OpusDecoder *dec[DEMIX_PROTO_MAX_STEMS + 1];
    int skip[DEMIX_PROTO_MAX_STEMS + 1];
} fx_session;

/* A start for a session: rate, channels, codecs, and stems (names, NULL-
 * terminated; NULL means mix mode with every gain 1). */
void fx_start_init(demix_proto_start *st, int rate, int channels,
                   demix_proto_codec in, demix_proto_codec out,
                   const char *const *stems);

/* Connect, upgrade (subprotocol demix.v1) and send the start (for Opus
 * input its pre_skip is set to the encoder's lookahead). 0, or -1 when the
 * connection or handshake failed. Does not wait for ready. */
int fx_session_open(fx_session *s, int port, demix_proto_start *st);

/* Handle one incoming message, waiting up to timeout_ms: 1 handled, 0
 * nothing came, -1 the connection has ended (s->eof). Answers a close. */
int fx_session_poll(fx_session *s, int timeout_ms);

/* Until ready, an error or the end of the connection. 0 when ready came. */
int fx_session_wait_ready(fx_session *s);

/* Queue n input frames (interleaved floats) as one audio message (PCM; n
 * within the size limit) or as Opus packets (whole 20 ms packets; a partial
 * packet waits for more input or for fx_session_send_end). */
int fx_session_send(fx_session *s, const float *frames, int64_t n);

/* Flush a partial Opus packet (zero-padded, plus the encoder's lookahead),
 * then send end. */
int fx_session_send_end(fx_session *s);

/* Until the connection ends (close handshake and TCP end) or timeout. */
int fx_session_finish(fx_session *s);

/* The whole stream: wait ready, send in chunks of `chunk` frames while
 * reading output (never more than 256 KiB queued unsent), end, then read to
 * the close. 0 when ready, summary and close 1000 all came. */
int fx_session_run(fx_session *s, const float *in, int64_t frames,
                   int64_t chunk);

/* The same for n sessions at once, interleaved message by message. in[i]
 * and frames[i] per session. 0 when all succeeded. */
int fx_run_many(fx_session **s, const float *const *in, const int64_t *frames,
                int n, int64_t chunk);

/* Position every expected track has reached (frames decoded). */
int64_t fx_session_reached(const fx_session *s);

/* Track of a stem index (DEMIX_PROTO_STEM_MIX for the mix); NULL if none. */
const fx_track *fx_session_track(const fx_session *s, int stem);

/* Print the session's state (for a failing assertion). */
void fx_session_print(const fx_session *s, const char *label);

void fx_session_free(fx_session *s);

#endif /* DEMIX_SERVER_FIXTURE_H */
