/*
 * client_resume.h - reconnecting a streaming session after the server went
 * away and carrying on where it stopped (docs/protocol.md, "Reconnecting
 * and resuming"), without any I/O: the policy (backoff with jitter,
 * bounded attempts and time) and the arithmetic of a resume (where the new
 * session starts, which of its output is discarded). `demix stream` and
 * `demix loadgen` share it; which closes call for a reconnect is the
 * client-session core's verdict (client_session.h, CLIENT_CLOSE_RETRY).
 *
 * Positions. The stream has one timeline, its "global" positions: those of
 * the first session. A resumed session starts at global position `base`:
 * its position p is global base + p, for input and output alike (the
 * server aligns output to input, protocol section 9). The client sends
 * its input again from base and keeps, per stem, the output from the
 * first global position it does not have yet; what the new session sends
 * before that (the re-primed tail) is discarded, so the output has no
 * gap and no repeat.
 *
 * The tail. base = resume point - tail, rounded down onto the model's hop
 * grid (client_resume_grid): the new session then cuts its STFT frames
 * where the old one did, and once its LSTM state has caught up its output
 * equals the old session's to the bit. Measured with bench/reprime.c
 * (bench/RESULTS.md): with the tiny test model a 1 s tail gives output
 * equal to an uninterrupted run from the seam on; the shipped model's
 * state remembers longer (SDR of the resumed stems against an
 * uninterrupted run about 17 dB in the first 20 ms without a tail, about
 * 30 dB with 1 s, 48-54 dB with 2 s).
 *
 * Usage sketch (one session's driver):
 *
 *     client_resume_init(&r, &opts, seed);
 *     on a close the core calls CLIENT_CLOSE_RETRY (or a failed attempt):
 *         if (client_resume_next(&r, now, &delay)) reconnect after delay;
 *         else give up, with the core's retry text;
 *     on the new session's ready:
 *         base = client_resume_base(resume_at, r.o.tail_ms, rate, grid);
 *         client_resume_done(&r);  // the outage is over
 *     each output span [pos, pos + n) (global) of a stem that has `have`:
 *         drop = client_resume_overlap(have, pos, n);
 *
 * Thread context: a client_resume belongs to its session's thread.
 */
#ifndef DEMIX_CLIENT_RESUME_H
#define DEMIX_CLIENT_RESUME_H

#include <stddef.h>
#include <stdint.h>

#define CLIENT_RESUME_DEFAULT_ATTEMPTS 8
#define CLIENT_RESUME_DEFAULT_WAIT_S 60.0
#define CLIENT_RESUME_DEFAULT_TAIL_MS 1000.0
#define CLIENT_RESUME_MAX_TAIL_MS 10000.0
#define CLIENT_RESUME_DELAY_MIN_S 0.25 /* first attempt: 0.125..0.25 s */
#define CLIENT_RESUME_DELAY_MAX_S 8.0  /* the backoff's ceiling */
#define CLIENT_RESUME_MAX_GRID_S 2.0   /* coarser hop grids are not used */

typedef struct client_resume_options {
    int max_attempts;  /* connection attempts per outage; 0: never resume */
    double max_wait_s; /* an outage that lasts longer gives up */
    double tail_ms;    /* audio re-sent before the resume point */
} client_resume_options;

typedef struct client_resume {
    client_resume_options o;
    uint64_t rng;
    int resumes;           /* outages survived (a new session got ready) */
    int attempt;           /* attempts made in the current outage; 0: none */
    double outage_start_s; /* when the current outage began */
} client_resume;

/* The defaults above. */
void client_resume_options_default(client_resume_options *o);

/* The command-line options of both commands, by name: "--reconnect N"
 * (attempts, 0..1000), "--reconnect-wait S" (1..86400 s),
 * "--resume-tail-ms MS" (0..CLIENT_RESUME_MAX_TAIL_MS). 1 and the field
 * set; 0 when name is none of them; -1 with a sentence in err for a bad
 * value. */
#define CLIENT_RESUME_OPTIONS 3
extern const char *const client_resume_option_names[CLIENT_RESUME_OPTIONS];
int client_resume_parse_option(const char *name, const char *text,
                               client_resume_options *o, char *err,
                               size_t err_cap);

/* Set up (seed: the jitter's; different clients should differ). */
void client_resume_init(client_resume *r, const client_resume_options *o,
                        uint64_t seed);

/* The connection ended in a way that calls for a reconnect (or an attempt
 * failed) at `now` (seconds, any monotonic clock). 1 with *delay_s when
 * another attempt is due after that delay: exponential from
 * CLIENT_RESUME_DELAY_MIN_S, doubling per attempt up to
 * CLIENT_RESUME_DELAY_MAX_S, with "equal jitter" (uniform in [d/2, d]) so
 * that the clients of a restarted server do not come back in step; never
 * past the outage's max_wait_s. 0 when the attempts or the time are spent
 * (or max_attempts is 0). */
int client_resume_next(client_resume *r, double now, double *delay_s);

/* A session got ready after an outage: it is over (resumes + 1). */
void client_resume_done(client_resume *r);

/* 1 between client_resume_next and client_resume_done. */
int client_resume_in_outage(const client_resume *r);

/* The hop grid in client frames: the smallest g > 0 such that g client
 * frames are a whole number of model hops at the model rate, so that a
 * session started at a multiple of g cuts the same frames (and its
 * resamplers sample the same instants) as one started at 0. 1 when g
 * would exceed CLIENT_RESUME_MAX_GRID_S or an argument is not positive. */
int64_t client_resume_grid(int client_rate, int model_rate, int hop);

/* Where the new session starts: resume_at minus tail_ms at rate, rounded
 * down to a multiple of grid (>= 1), at least 0. */
int64_t client_resume_base(int64_t resume_at, double tail_ms, int rate,
                           int64_t grid);

/* Of an output span [pos, pos + n) of a stem of which the client has the
 * global positions [0, have): how many frames at its front it has already
 * (0..n), to be dropped. */
int64_t client_resume_overlap(int64_t have, int64_t pos, int64_t n);

#endif /* DEMIX_CLIENT_RESUME_H */
