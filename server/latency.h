/*
 * latency.h - what a session's audio path delays, measured once per pair of
 * rates by running the real resamplers (audio/ (resample.h)) on silence in the
 * session's own arrangement: client -> rs_in -> hops of H model frames ->
 * the model's delay (output hop k covers model frames [(k-1)H, kH), ready
 * when input hop k is) -> rs_out -> client.
 *
 * soxr compensates its filter delay but releases output in blocks, so how
 * far the output trails the input varies with time (48k -> 44.1k: between
 * about 100 and 840 frames). What a client can rely on is the largest
 * trail: `frames` is the maximum, over the stream, of (input frames sent -
 * output frames received) at the moments output advances, fed in chunks of
 * LATENCY_CHUNK_FRAMES. With equal rates it is exactly W = 2H (a hop waits
 * to be complete, then the model's one-hop delay). This is the session's
 * latency_frames in `ready` for PCM output (Opus adds the encoder's
 * lookahead).
 *
 * The same run gives the most frames each resampler holds back at once,
 * which sizes a session's buffers (its flush emits that much).
 *
 * Cost: about 0.75 s of audio through two resamplers; the result is cached
 * per (client rate, model rate, hop), at most 64 entries (more are measured
 * each time).
 *
 * Threads: any thread; the cache has its own mutex.
 */
#ifndef DEMIXD_LATENCY_H
#define DEMIXD_LATENCY_H

#include "demix_error.h"

#define LATENCY_CHUNK_FRAMES 8

typedef struct demixd_latency {
    int frames;      /* largest input-to-output trail, client frames */
    int in_lag_max;  /* most model frames rs_in holds back */
    int out_lag_max; /* most client frames rs_out holds back */
} demixd_latency;

/* DEMIX_EARG for bad rates/hop, DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int demixd_latency_get(int client_rate_hz, int model_rate_hz,
                                         int hop_frames, demixd_latency *out);

#endif /* DEMIXD_LATENCY_H */
