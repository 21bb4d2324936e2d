/*
 * resample.h - streaming sample-rate conversion (soxr, high quality) for
 * interleaved float frames, output pushed to a sink callback.
 *
 * Usage sketch:
 *
 *     resampler *rs;
 *     if (resampler_create(48000, 44100, 2, &rs, err, sizeof err)) die(err);
 *     while (more input)
 *         if (resampler_process(rs, in, n_frames, sink, user)) ...;
 *     resampler_flush(rs, sink, user);   // end of input: the tail
 *     resampler_destroy(rs);
 *
 * Alignment (measured, tests/integration/test_separate.c checks it end to
 * end): soxr compensates its own filter delay. Output sample j is the
 * signal at input time j * in_rate / out_rate; nothing is emitted for the
 * filter's warm-up, and after resampler_flush() the total output is
 * round(n_in * out_rate / in_rate) frames, whatever the chunking. An
 * impulse at input sample 3000 comes out centred on 3000 * ratio (44.1 k ->
 * 32 k, 32 k -> 44.1 k, 48 k <-> 44.1 k, 22.05 k and 8 k -> 44.1 k). So a
 * caller needs no delay bookkeeping beyond trimming the final length.
 *
 * Equal rates: no soxr at all; input goes to the sink unchanged (bit-exact).
 *
 * Memory: one output block of RESAMPLE_BLOCK_FRAMES frames made at create;
 * process() allocates nothing (soxr's own buffers are sized at create and on
 * its first calls).
 *
 * Threads: a resampler belongs to one thread at a time.
 */
#ifndef DEMIX_RESAMPLE_H
#define DEMIX_RESAMPLE_H

#include <stddef.h>

#include "demix_error.h"

#define RESAMPLE_BLOCK_FRAMES 4096

typedef struct resampler resampler;

/* Receives n_frames interleaved frames (at most RESAMPLE_BLOCK_FRAMES unless
 * the rates are equal, when it gets the caller's own blocks). A non-zero
 * return stops the resampler call, which returns that value. */
typedef int (*resampler_sink)(void *user, const float *frames, size_t n_frames);

DEMIX_WARN_UNUSED int resampler_create(int in_rate_hz, int out_rate_hz,
                                       int channels, resampler **out,
                                       char *err, size_t err_cap);

/* Resample n_frames of input; the sink gets whatever output is ready. */
DEMIX_WARN_UNUSED int resampler_process(resampler *r, const float *in,
                                        size_t n_frames, resampler_sink sink,
                                        void *user);

/* End of input: emit the rest. The resampler then takes no more input. */
DEMIX_WARN_UNUSED int resampler_flush(resampler *r, resampler_sink sink,
                                      void *user);

/* out_rate / in_rate. */
double resampler_ratio(const resampler *r);

void resampler_destroy(resampler *r);

#endif /* DEMIX_RESAMPLE_H */
