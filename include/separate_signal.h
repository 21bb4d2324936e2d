/*
 * separate_signal.h - separate one whole signal (a file, a pipe, an upload)
 * with one slot of an engine, streaming, with every output sample aligned
 * to its input sample. Shared by `demix separate`, `demix eval` and the
 * server's file API (demix_audio, audio/).
 *
 * A separate_signal does no engine calls and no I/O of its own: the caller
 * pushes input frames (any rate, 1 or 2 channels, interleaved), takes model
 * hops out to put into an engine step, gives the step's output back, and
 * receives the separated sources through a callback, at the input's rate and
 * channel count. So several signals can share one batched engine step
 * (separate_signal_step() does that for a list), and the caller chooses how
 * input is read and where output goes.
 *
 * Usage sketch (one signal, one slot):
 *
 *     separate_signal_params p = {.in_rate_hz = 48000, .in_channels = 1,
 *                                 .emit = write_stem, .user = files};
 *     separate_signal *sig;
 *     separate_signal_create(cfg, &p, &sig, err, sizeof err);
 *     while (!separate_signal_done(sig)) {
 *         if (!separate_signal_hop_ready(sig)) {
 *             n = read(buf, 4096);
 *             n ? separate_signal_push(sig, buf, n) : separate_signal_finish(sig);
 *             continue;
 *         }
 *         separate_signal_step(eng, &sig, &slot, 1, in, out, ...);
 *     }
 *
 * Alignment. The pipeline is: input -> soxr to the model rate (delay
 * compensated by soxr itself, see resample.h) -> hops of H frames -> engine
 * -> drop the first emitted hop (the engine's output after input hop k
 * covers input samples [(k-1)H, kH), engine.h) -> soxr back to the input
 * rate -> trim. At the end the model-rate signal (M frames) is padded with
 * zeros to ceil(M/H) + 1 hops, so every input sample has its output hop
 * (model-spec.md, "offline equivalence"). Each source's output has exactly
 * as many frames as were pushed, sample k aligned with input sample k; with
 * equal rates no resampler runs and the path is exact.
 *
 * Channels. The model's C channels (2) are fed from the input: mono is
 * duplicated (stereo into a mono model is averaged); the output has the
 * input's channel count: the mean of the model's two channels for mono.
 * More than 2 input channels is DEMIX_EFORMAT at create.
 *
 * Memory. Bounded per signal and independent of its length: a model-rate
 * FIFO that holds at most one pushed block (resampled) plus a hop, and
 * soxr's own buffers. Nothing is allocated per hop; the FIFO may grow when
 * a pushed block is larger than any before.
 *
 * Threads. A signal belongs to one thread at a time; the emit callback runs
 * on that thread, inside give_hop / finish / step.
 */
#ifndef DEMIX_SEPARATE_SIGNAL_H
#define DEMIX_SEPARATE_SIGNAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

typedef struct separate_signal separate_signal;

/* Output of one source: n_frames interleaved frames of the input's channel
 * count at the input's rate. source indexes cfg->source_names. A non-zero
 * return (a demix_status) fails the signal with that status. */
typedef int (*separate_emit_fn)(void *user, int source, const float *frames,
                                size_t n_frames);

typedef struct separate_signal_params {
    int in_rate_hz;       /* > 0 */
    int in_channels;      /* 1 or 2; the output has the same */
    unsigned source_mask; /* bit t: emit source t; 0 means all */
    separate_emit_fn emit;
    void *user;
} separate_signal_params;

/* DEMIX_EARG (bad parameters), DEMIX_EFORMAT (channel count the model
 * cannot take), DEMIX_ENOMEM; err says which. cfg must outlive the signal. */
DEMIX_WARN_UNUSED int separate_signal_create(const demix_model_config *cfg,
                                             const separate_signal_params *p,
                                             separate_signal **out, char *err,
                                             size_t err_cap);
void separate_signal_destroy(separate_signal *s);

/* Input frames (interleaved). Push only while no hop is ready, to keep the
 * FIFO small. DEMIX_EARG after finish. */
DEMIX_WARN_UNUSED int separate_signal_push(separate_signal *s,
                                           const float *frames,
                                           size_t n_frames);
/* End of input. */
DEMIX_WARN_UNUSED int separate_signal_finish(separate_signal *s);

/* 1 when a hop can be taken for the engine. */
int separate_signal_hop_ready(const separate_signal *s);
/* Copy the next hop, C x H planar (engine.h layout), into in_hop. */
DEMIX_WARN_UNUSED int separate_signal_take_hop(separate_signal *s,
                                               float *in_hop);
/* The engine's output for the hop taken last: T x C x H planar. Emits the
 * sources' frames that are now complete. */
DEMIX_WARN_UNUSED int separate_signal_give_hop(separate_signal *s,
                                               const float *out_hop);

/* 1 when the input has ended and every output frame was emitted. */
int separate_signal_done(const separate_signal *s);
/* Frames pushed, and frames emitted per source (at the input rate). */
int64_t separate_signal_frames_in(const separate_signal *s);
int64_t separate_signal_frames_out(const separate_signal *s);
/* The first failure's status (0 if none) and sentence. */
int separate_signal_status(const separate_signal *s);
const char *separate_signal_error(const separate_signal *s);

/* One engine step for those of the n signals with a hop ready (each on its
 * own open slot, slots[i]). in_buf holds n*C*H floats, out_buf n*T*C*H,
 * slot_buf n ints (caller's scratch; nothing is allocated). *stepped gets
 * how many signals took part (0: none was ready, no step ran). An engine
 * failure returns its status with engine's last error in err; an emit
 * failure fails only that signal (see separate_signal_status) and is not an
 * error of the step. */
DEMIX_WARN_UNUSED int separate_signal_step(demix_engine *engine,
                                           separate_signal *const *sig,
                                           const int *slots, int n,
                                           float *in_buf, float *out_buf,
                                           int *slot_buf, int *stepped,
                                           char *err, size_t err_cap);

#endif /* DEMIX_SEPARATE_SIGNAL_H */
