/*
 * encode_pool.h - the sessions' output encoding spread over cores.
 *
 * Why: the lws thread runs every session's codecs (server.h), and encoding
 * four stems is most of a session's CPU (opusenc --comp 10: 94x real time
 * per stereo stream on one core, so about 4% of a core per session): one
 * thread held 20 Opus sessions on 2 cores while the GPU steps thousands
 * (bench/RESULTS.md, 2026-12-02 evening). Debian's libwebsockets has no
 * SMP service threads (LWS_MAX_SMP 1).
 *
 * How: when the scheduler wakes the lws thread, before its usual scan,
 * demixd_encode_ready_all() collects the sessions that stream and runs
 * demixd__session_encode_ready() for them as the tasks of one run of a
 * thread pool (--codec-threads participants, the lws thread one of them).
 * A task touches only its session's own state, and the lws thread, which
 * owns every session and every lws object, waits in the run: nothing is
 * shared but the streams, which have their own locks. The scan that
 * follows (demixd_session_wake) then only finishes what encoding left:
 * the end of a stream, errors, write requests.
 *
 * With codec threads, a session's encoding outside the wake-up (after a
 * write drained its queue, say) asks for a wake-up instead of encoding on
 * the lws thread (session.c, service).
 *
 * Input decoding stays on the lws thread.
 *
 * Measured (2026-12-02, 2 cores, tests/data/tiny.safetensors, `demix
 * loadgen --codec opus --ramp 20:40:10`): no gain, 20 sessions held with
 * 1 and with 2 threads, and the step's p99 rose from 2.1 to 5.2 ms: the
 * codec threads take the cores the engine's math needs, and with a model
 * that cheap a step carries 2-3 hops, so a wake-up has little to spread.
 * It is meant for many-core GPU servers, whose steps carry hundreds of
 * hops; hence off by default (--codec-threads 1) until it is measured
 * there.
 *
 * Memory: the pool and an array of max_sessions pointers, at create.
 */
#ifndef DEMIXD_ENCODE_POOL_H
#define DEMIXD_ENCODE_POOL_H

#include "server.h"

/* threads: participants including the lws thread; 1 is no pool (the scan
 * encodes, as before). DEMIX_OK, DEMIX_ENOMEM. Main thread, at start. */
int demixd_encode_pool_create(demixd *d, int threads);
void demixd_encode_pool_destroy(demixd *d);

/* Encode the ready hops of every streaming session, in parallel. lws
 * thread. */
void demixd_encode_ready_all(demixd *d);

#endif /* DEMIXD_ENCODE_POOL_H */
