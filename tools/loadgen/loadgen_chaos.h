/*
 * loadgen_chaos.h - `demix loadgen --chaos FRACTION`: clients that
 * misbehave beside the round's good sessions, so that a run shows the
 * server staying correct for everyone else while some of its clients are
 * hostile or broken (docs/loadgen.md, "Chaos").
 *
 * Usage sketch:
 *
 *     loadgen_chaos_params p = {.cfg = &cfg, .clients = 4, .seed = 1,
 *                               .host = "127.0.0.1", .port = 8080,
 *                               .path = "/v1/stream"};
 *     loadgen_chaos *c;
 *     if (loadgen_chaos_start(&p, &c, err, sizeof err)) ... no chaos ...
 *     ... the good sessions run ...
 *     loadgen_chaos_report rep;
 *     loadgen_chaos_stop(c, &rep);   // connections dropped, thread joined
 *
 * Design. One thread runs every chaos client on its own poll() loop over
 * plain sockets (ws:// only): the misbehaviours need what a well-behaved
 * transport never does (not reading, raw bytes on the socket), so they
 * use the frame and handshake helpers of tools/client/ (wsio_frame.h,
 * wsio_handshake.h) and nothing of a session's transport. Each client
 * runs episodes back to back until the round ends: connect, upgrade,
 * misbehave one way, see how the server reacts, pause up to
 * LOADGEN_CHAOS_PAUSE_S, again. The kind of each episode comes from the
 * client's own generator (xorshift64*, seeded from the run's seed and
 * the client's index), drawn as shuffled bags of every kind, so each
 * client goes through every kind once per LOADGEN_CHAOS_KINDS episodes
 * and a run replays with the same seed (timing decides how many
 * episodes there are, not which).
 *
 * Kinds, and the reaction docs/server.md promises (an episode is
 * "answered" when it comes within LOADGEN_CHAOS_WAIT_S of the
 * misbehaviour, "unanswered" otherwise):
 *   vanish     start, stream 0.2-3 s at real time, then drop the TCP
 *              connection without a close (half of them with a reset);
 *              nothing to wait for: always answered;
 *   stall      start, a few messages, then nothing (still reading): the
 *              server ends it with the error `timeout` (--idle-timeout);
 *   no_read    start, read ready, then stream at real time and never read
 *              again: the server pauses it, then drops the connection
 *              (idle timeout, then the 10 s for its last messages);
 *   garbage    after the upgrade (or after ready), bytes that are no
 *              valid WebSocket frame (reserved bits, unknown opcode, an
 *              unmasked frame, noise): the server closes the connection;
 *   malformed  valid frames, invalid messages (broken JSON, an unknown
 *              type, a bad field, audio before start, a wrong sequence
 *              number, a text over the size limit, a bad audio header):
 *              an error message, then the close;
 *   flood      start, then audio as fast as the socket takes it for
 *              1-3 s while reading, then end: flow control holds it
 *              back, and it ends with a summary counting every frame
 *              sent and close 1000.
 * A refusal (at_capacity, or an HTTP answer other than 101) is counted
 * as refused: it tests nothing of the misbehaviour. An episode still
 * running when the round ends is cut.
 *
 * Memory: per client, a receive buffer and a send buffer of one message
 * each (64 KiB + a frame header), allocated at start.
 *
 * Thread context: start and stop on the caller's thread (loadgen's main
 * thread); the clients on the chaos thread; the report is the caller's
 * after stop.
 */
#ifndef DEMIX_LOADGEN_CHAOS_H
#define DEMIX_LOADGEN_CHAOS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "demix_error.h"
#include "loadgen_session.h"

#define LOADGEN_CHAOS_WAIT_S 45.0 /* for the server's reaction; above
                                     demixd's default --idle-timeout (30)
                                     plus its 10 s for a last message */
#define LOADGEN_CHAOS_PAUSE_S 0.5 /* longest pause between episodes */

typedef enum loadgen_chaos_kind {
    LOADGEN_CHAOS_VANISH = 0,
    LOADGEN_CHAOS_STALL,
    LOADGEN_CHAOS_NO_READ,
    LOADGEN_CHAOS_GARBAGE,
    LOADGEN_CHAOS_MALFORMED,
    LOADGEN_CHAOS_FLOOD,
    LOADGEN_CHAOS_KINDS
} loadgen_chaos_kind;

typedef struct loadgen_chaos_counts {
    int64_t episodes;   /* begun (connected or not) */
    int64_t answered;   /* the server reacted as documented */
    int64_t unanswered; /* it did not (example says how) */
    int64_t refused;    /* at_capacity, or the upgrade refused */
    int64_t cut;        /* still running when the round ended */
    int64_t failed;     /* no connection (refused, reset before the
                           upgrade) */
    char example[200];  /* the first unanswered one, "" when none */
} loadgen_chaos_counts;

typedef struct loadgen_chaos_report {
    int clients;
    uint64_t seed;
    loadgen_chaos_counts kind[LOADGEN_CHAOS_KINDS];
} loadgen_chaos_report;

typedef struct loadgen_chaos_params {
    const loadgen_config *cfg; /* audio, codec, stems, token */
    int clients;
    uint64_t seed;
    const char *host; /* resolved once at start */
    int port;
    const char *path;
} loadgen_chaos_params;

typedef struct loadgen_chaos loadgen_chaos;

/* Make the clients and start the thread (the first episodes connect over
 * the first second). DEMIX_EARG, DEMIX_EIO (the host does not resolve,
 * no thread: err says why), DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int loadgen_chaos_start(const loadgen_chaos_params *p,
                                          loadgen_chaos **out, char *err,
                                          size_t err_cap);

/* Stop: episodes still running are cut and their connections dropped;
 * the thread is joined, the figures copied into out (may be NULL), and
 * everything freed. NULL: no-op (out zeroed when given). */
void loadgen_chaos_stop(loadgen_chaos *c, loadgen_chaos_report *out);

/* How many of n clients misbehave for a fraction (0: none; else at least
 * one and at most n - 1, so one good session is always there). */
int loadgen_chaos_count(double fraction, int n);

/* "vanish", "stall", ... */
const char *loadgen_chaos_kind_name(loadgen_chaos_kind k);

/* Episodes the server did not answer as documented, all kinds. */
int64_t loadgen_chaos_unanswered(const loadgen_chaos_report *r);

/* The report's text lines ("chaos        ..." and one per kind). */
void loadgen_chaos_report_text(FILE *out, const loadgen_chaos_report *r);

/* {"clients", "seed", "unanswered", "kinds": {"vanish": {episodes,
 * answered, unanswered, refused, cut, failed, example|null}, ...}};
 * NULL when out of memory. */
cJSON *loadgen_chaos_report_json(const loadgen_chaos_report *r);

/* Sum b into a (clients and seed from a). */
void loadgen_chaos_report_add(loadgen_chaos_report *a,
                              const loadgen_chaos_report *b);

#endif /* DEMIX_LOADGEN_CHAOS_H */
