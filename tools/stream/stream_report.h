/*
 * stream_report.h - the figures `demix stream` prints at the end: the
 * latency it measured (from probes taken while streaming) beside the
 * latency the server announced, then the server's summary.
 *
 * Latency. "announced" is ready.latency_frames, the algorithmic worst case;
 * "measured" is, for each message's first position p, the time from sending
 * it to the moment output position p was there on every stem (median, 90th
 * percentile, max). Positions late in a model hop or a resampler block need
 * less lookahead than the worst case, so the median is below the announced
 * figure and the max near it plus network and compute time. In --fast mode
 * it includes the time spent queued behind earlier audio.
 *
 * A ring of STREAM_PROBE_RING outstanding probes: a message sent while it
 * is full is not timed. The measured times are kept (one double per
 * message) until the report.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#ifndef DEMIX_STREAM_REPORT_H
#define DEMIX_STREAM_REPORT_H

#include <stdint.h>

#include "stream_session.h"

/* Input position pos was sent at time t (ws_client_now_s). */
void stream_report_probe_push(stream_session *s, int64_t pos, double t);

/* Output arrived: time the probes whose position every stem has reached. */
void stream_report_probes_resolve(stream_session *s, double now);

/* The latency and summary lines on stderr (nothing with --quiet). */
void stream_report_print(stream_session *s);

#endif /* DEMIX_STREAM_REPORT_H */
