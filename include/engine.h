/*
 * engine.h - the one engine API of demixd: load an HS-TasNet model, create an
 * engine with S stream slots on a backend (CPU or CUDA), and run batched
 * streaming steps over any subset of the open slots.
 *
 * Usage sketch:
 *
 *     char err[512];
 *     demix_model *model;
 *     if (demix_model_load("model.safetensors", &model, err, sizeof err))
 *         die(err);
 *     const demix_model_config *cfg = demix_model_get_config(model);
 *
 *     demix_engine_options opt;
 *     demix_engine_options_init(&opt);
 *     opt.max_slots = 64;
 *     demix_engine *eng;
 *     if (demix_engine_create(model, &opt, &eng, err, sizeof err))
 *         die(err);
 *
 *     int slot;
 *     demix_engine_open_slot(eng, &slot);          // state zeroed
 *     // in:  n x C x H floats, out: n x T x C x H floats (see below)
 *     demix_engine_step(eng, 1, &slot, in, out);
 *     demix_engine_close_slot(eng, slot);
 *     demix_engine_destroy(eng);                   // before the model
 *     demix_model_destroy(model);
 *
 * Audio layout. A hop is H (= W/2, 512) frames of C (2) channels, planar:
 * in[i][ch][k] at in[(i*C + ch)*H + k] for the i-th listed slot. The output
 * of a step holds T sources per listed slot, planar as well:
 * out[i][t][ch][k] at out[((i*T + t)*C + ch)*H + k], sources in the order of
 * cfg->source_names. The hop emitted after input hop k covers input samples
 * [(k-1)H, kH): the algorithmic latency is W samples (model-spec.md).
 *
 * Semantics. A slot's output depends only on the hops fed to that slot since
 * it was opened, never on which other slots share a step or their order.
 *
 * Ownership. The model is immutable after loading and may be shared by any
 * number of engines, which must be destroyed before it. destroy(NULL) is a
 * no-op. Nothing here allocates after create/open except as documented.
 *
 * Threads. The engine starts no threads of its own. A driver that wants a
 * step's math spread over several cores creates a demix_threadpool
 * (threadpool.h) and passes it in demix_engine_options.pool: the CPU
 * backend then splits each step across the pool's threads, with results
 * bit-identical to a single thread's. One engine is used by one thread at a
 * time; different engines may run concurrently (with a pool each, or one
 * pool shared by engines of one thread). A model may be read by many
 * threads at once.
 *
 * Errors. Functions return DEMIX_OK (0) or a negative demix_status. Creation
 * and loading write a one-line explanation into the caller's err buffer;
 * step/open/close errors are explained by demix_engine_last_error().
 */
#ifndef DEMIX_ENGINE_H
#define DEMIX_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"
#include "threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DEMIX_MAX_SOURCES 8
#define DEMIX_SOURCE_NAME_BYTES 32
#define DEMIX_META_TEXT_BYTES 256

/* ---------------------------------------------------------------- model */

typedef struct demix_model demix_model;

/* Hyper-parameters, all inferred from the tensor shapes and metadata. */
typedef struct demix_model_config {
    int dim;              /* D: hidden size of every branch */
    int num_basis;        /* NB: waveform basis count */
    int small;            /* 1: one-layer LSTMs, summed fusion, no residual */
    int lstm_layers;      /* L: 2, or 1 when small */
    int fusion_dim;       /* DF: 2D, or D when small */
    int window_samples;   /* W: window = segment = n_fft (1024) */
    int hop_samples;      /* H = W/2 (512) */
    int bins;             /* F = W/2 + 1 */
    int channels;         /* C: 2 */
    int spec_features;    /* S = C*F*2 */
    int num_sources;      /* T: 4 */
    int sample_rate_hz;   /* metadata sample_rate, default 44100 */
    char source_names[DEMIX_MAX_SOURCES][DEMIX_SOURCE_NAME_BYTES];
    char name[DEMIX_META_TEXT_BYTES];    /* metadata, may be empty */
    char license[DEMIX_META_TEXT_BYTES]; /* metadata, may be empty */
    int64_t parameter_count;
} demix_model_config;

/* Which stored dtype the tensors had (widened to float32 on load). */
typedef enum demix_dtype {
    DEMIX_DTYPE_F32 = 0,
    DEMIX_DTYPE_F16 = 1,
    DEMIX_DTYPE_BF16 = 2,
} demix_dtype;

/* Load a safetensors model file (model-spec.md). On failure returns
 * DEMIX_EIO (cannot read), DEMIX_EFORMAT (malformed, hostile or not an
 * HS-TasNet file: err names the tensor or field and what is wrong) or
 * DEMIX_ENOMEM. err may be NULL when err_cap is 0. */
DEMIX_WARN_UNUSED int demix_model_load(const char *path, demix_model **out,
                                       char *err, size_t err_cap);

/* The same, from a file image in memory (the fuzz target's entry). */
DEMIX_WARN_UNUSED int demix_model_load_memory(const void *data, size_t size,
                                              demix_model **out, char *err,
                                              size_t err_cap);

/* A model of the given size (D = dim, NB = num_basis, the small variant or
 * not) with random weights at PyTorch's default initialisation scale, for
 * benchmarks and tests; stereo, W = 1024, sources drums,bass,vocals,other.
 * The same seed gives the same weights. */
DEMIX_WARN_UNUSED int demix_model_create_random(int dim, int num_basis,
                                                int small, int sample_rate_hz,
                                                uint64_t seed,
                                                demix_model **out);

void demix_model_destroy(demix_model *model);

const demix_model_config *demix_model_get_config(const demix_model *model);

/* --------------------------------------------------------------- engine */

typedef struct demix_engine demix_engine;

typedef enum demix_backend {
    DEMIX_BACKEND_AUTO = 0, /* CUDA when built in and a device opens, else CPU */
    DEMIX_BACKEND_CPU = 1,
    DEMIX_BACKEND_CUDA = 2,
} demix_backend;

typedef enum demix_precision {
    DEMIX_PRECISION_DEFAULT = 0, /* the backend's best mode that meets the bar */
    DEMIX_PRECISION_FP32 = 1,    /* float32 everywhere: the reference */
    DEMIX_PRECISION_FAST = 2,    /* reduced-precision weights, f32 state */
} demix_precision;

typedef struct demix_engine_options {
    demix_backend backend;
    demix_precision precision;
    int max_slots;  /* S: slots that may be open at once (>= 1) */
    int device;     /* CUDA device ordinal */
    /* Worker threads for the CPU backend's math (the only way to give it
     * more than one core); NULL (the default) runs it on the calling
     * thread only. The caller creates and owns the pool, which must
     * outlive the engine; the engine runs its math on it and starts no
     * threads itself. */
    demix_threadpool *pool;
} demix_engine_options;

void demix_engine_options_init(demix_engine_options *opt);

/* Parse "auto", "cpu", "cuda". Returns DEMIX_EARG for anything else. */
DEMIX_WARN_UNUSED int demix_backend_parse(const char *text, demix_backend *out);

/* Create an engine. DEMIX_EARG for bad options, DEMIX_EDEVICE when CUDA was
 * asked for explicitly and cannot be used, DEMIX_ENOMEM when the slots do
 * not fit (err then says how many would). With DEMIX_BACKEND_AUTO a missing
 * GPU is not an error: the CPU backend is used and err carries the reason. */
DEMIX_WARN_UNUSED int demix_engine_create(const demix_model *model,
                                          const demix_engine_options *opt,
                                          demix_engine **out, char *err,
                                          size_t err_cap);

void demix_engine_destroy(demix_engine *engine);

/* "cpu" or "cuda" (the backend actually in use), and a one-line description
 * of the device and precision for logs. */
const char *demix_engine_backend_name(const demix_engine *engine);
const char *demix_engine_describe(const demix_engine *engine);

const demix_model_config *demix_engine_config(const demix_engine *engine);
int demix_engine_max_slots(const demix_engine *engine);
int demix_engine_open_count(const demix_engine *engine);

/* Open a free slot with zeroed state. DEMIX_EBUSY when all are open. */
DEMIX_WARN_UNUSED int demix_engine_open_slot(demix_engine *engine, int *slot);

/* Close an open slot; it may be handed out again by open. DEMIX_EARG when
 * the slot is not open. */
int demix_engine_close_slot(demix_engine *engine, int slot);

/* Zero an open slot's state, as if it had just been opened. */
DEMIX_WARN_UNUSED int demix_engine_reset_slot(demix_engine *engine, int slot);

/* Run one hop for n listed slots (distinct, open; 1 <= n <= max_slots) in
 * one batched step. in: n*C*H floats, out: n*T*C*H floats (layout above).
 * DEMIX_EARG for a bad list (nothing is changed), DEMIX_EDEVICE when the
 * accelerator failed (the slots' state is then undefined; close them). */
DEMIX_WARN_UNUSED int demix_engine_step(demix_engine *engine, int n,
                                        const int *slots, const float *in,
                                        float *out);

/* Explanation of the last failed open/close/reset/step; "" if none. */
const char *demix_engine_last_error(const demix_engine *engine);

/* ------------------------------------------------------ pipelined steps
 *
 * demix_engine_submit() starts a step and returns without waiting for it;
 * demix_engine_collect() waits for the oldest step in flight and hands its
 * output over. On CUDA a step's host->device copy, its compute and its
 * device->host copy then overlap those of the steps around it, so a steady
 * pipeline costs about max(compute, copies) per step instead of their sum.
 * On the CPU, submit runs the whole step and collect only hands the output
 * over. Outputs are those of demix_engine_step() called with the same
 * lists and inputs in the same order (bit for bit on the CPU; to rounding
 * on CUDA, whose batch buckets may differ between the two paths).
 *
 *     float *in = demix_engine_input_buffer(eng, n);  // write n hops here
 *     demix_engine_submit(eng, n, slots, in);          // returns at once
 *     ...                                              // prepare the next
 *     demix_engine_collect(eng, NULL);                 // oldest step done
 *     const float *out = demix_engine_output(eng, &n); // its n*T*C*H floats
 *
 * Steps run in submission order: a slot may be listed by consecutive
 * submits, and open/close/reset between submits act on the steps submitted
 * after them. demix_engine_step() may be called with steps in flight; it
 * runs after them. Buffers: the input and output buffers are the engine's
 * (page-locked host memory on CUDA, so the device copies them directly),
 * a ring of DEMIX_ENGINE_MAX_IN_FLIGHT + 1 of each, allocated the first
 * time a size is asked for and grown only when a larger n comes (never per
 * step at a steady size). */

#define DEMIX_ENGINE_MAX_IN_FLIGHT 2

/* The engine's buffer for the input of the next submit: room for n hops
 * (n*C*H floats, layout of demix_engine_step). Asking again before that
 * submit gives the same buffer unless n grew past its size (then it moves
 * and the earlier pointer is void). Its contents are not kept between
 * uses. NULL when n is not in 1..max_slots or memory runs out (last_error
 * says which). */
float *demix_engine_input_buffer(demix_engine *engine, int n);

/* Size every I/O buffer of the ring for n hops now, so that no later
 * input_buffer or submit of up to n hops allocates (a server calls it once
 * with its largest batch: page-locked allocations are slow, and a batch
 * that grows one stream at a time would otherwise reallocate at each new
 * size). DEMIX_EBUSY while steps are in flight, DEMIX_EARG when n is not
 * in 1..max_slots, DEMIX_ENOMEM. The last collected output is void after
 * it (demix_engine_output gives NULL until the next collect). */
DEMIX_WARN_UNUSED int demix_engine_reserve_io(demix_engine *engine, int n);

/* Start one step for n listed slots (checked as demix_engine_step does).
 * in: the buffer from demix_engine_input_buffer() (read in place: leave it
 * alone until this step is collected), or any other buffer, which is
 * copied before submit returns. slots is read before submit returns.
 * DEMIX_EBUSY when DEMIX_ENGINE_MAX_IN_FLIGHT steps are in flight (collect
 * one first), DEMIX_EARG for a bad list, DEMIX_ENOMEM when an I/O buffer
 * cannot grow, DEMIX_EDEVICE when the accelerator failed (as step). */
DEMIX_WARN_UNUSED int demix_engine_submit(demix_engine *engine, int n,
                                          const int *slots, const float *in);

/* Wait for the oldest step in flight and, unless out is NULL, copy its
 * output (n*T*C*H floats in the default shape; the packed rows otherwise,
 * see "output shapes" below) into out. DEMIX_EARG when none is in flight,
 * DEMIX_EDEVICE when the accelerator failed (the step is dropped; its
 * slots' state is undefined, as after a failed step). */
DEMIX_WARN_UNUSED int demix_engine_collect(demix_engine *engine, float *out);

/* The output of the last collected step in the engine's buffer, valid
 * until the next collect; *n (if not NULL) gets its row count. NULL (and
 * *n = 0) before the first collect. */
const float *demix_engine_output(const demix_engine *engine, int *n);

/* Steps submitted and not yet collected (0..DEMIX_ENGINE_MAX_IN_FLIGHT). */
int demix_engine_in_flight(const demix_engine *engine);

/* ------------------------------------------------------- output shapes
 *
 * What a slot's pipelined output holds. By default every source in
 * float32 (the layout above: a row is T x C x H floats). A driver that
 * needs less asks for less, and a CUDA step then copies less over PCIe
 * (the stems' download bounds a step of thousands of streams): 16-bit
 * samples, a subset of the sources in a chosen order, or one mix of the
 * sources with per-source gains computed on the device.
 *
 *     demix_output_shape sh;
 *     demix_output_shape_init(&sh, cfg);       // all sources, float32
 *     sh.format = DEMIX_SAMPLE_S16;
 *     sh.mix = 1;                              // one plane: sum g[t] * src t
 *     sh.gains[2] = 0.0f;                      // e.g. karaoke: no vocals
 *     demix_engine_set_output(eng, slot, &sh); // steps submitted from now
 *     ...                                      // submit, collect
 *     size_t bytes;
 *     const void *row = demix_engine_output_row(eng, i, &bytes);
 *
 * A row is `planes` x C x H samples, planar, of the format: the listed
 * sources in their order, or the mix. S16 samples are round(x * 32768)
 * (halves away from zero) clamped to -32768..32767, NaN as 0; a mix is
 * the sum over t = 0..T-1 of gains[t] * source t, in that order, terms
 * with gain 0 left out, in float32 without fused multiply-adds: the CPU
 * and CUDA backends give the same bits for the same float32 sources.
 *
 * Shapes apply to demix_engine_submit/collect only; demix_engine_step
 * always gives every source in float32 (the reference). Rows of a
 * collected step are packed in list order, each in its slot's shape at
 * submit; demix_engine_output() then returns the packed bytes, which
 * demix_engine_output_row() cuts into rows. Opening a slot resets its
 * shape to the default. */

typedef enum demix_sample_format {
    DEMIX_SAMPLE_F32 = 0,
    DEMIX_SAMPLE_S16 = 1,
} demix_sample_format;

typedef struct demix_output_shape {
    demix_sample_format format;
    int mix;                        /* 1: one plane, the weighted sum */
    int count;                      /* mix 0: planes, 1..T */
    int sources[DEMIX_MAX_SOURCES]; /* mix 0: source of each plane */
    float gains[DEMIX_MAX_SOURCES]; /* mix 1: gain of each source (0..T-1) */
} demix_output_shape;

/* The 16-bit rule of S16 rows, for drivers that convert alike (demixd's
 * PCM16 output): round(x * 32768), halves away from zero (as lroundf),
 * clamped to -32768..32767, NaN as 0; by integer steps, no libm call, so
 * that the CUDA packer can do exactly the same. */
static inline int16_t demix_sample_to_s16(float x)
{
    float v = x * 32768.0f;
    if (!(v == v))
        return 0;
    if (v >= 32767.0f)
        return 32767;
    if (v <= -32768.0f)
        return -32768;
    int i = (int)v; /* toward zero */
    float frac = v - (float)i;
    i += (frac >= 0.5f) - (frac <= -0.5f);
    return (int16_t)i;
}

/* Every source in model order, float32; mix gains 1. */
void demix_output_shape_init(demix_output_shape *shape,
                             const demix_model_config *cfg);

/* Bytes of one row in this shape (0 when the shape is invalid for cfg). */
size_t demix_output_shape_row_bytes(const demix_output_shape *shape,
                                    const demix_model_config *cfg);

/* Set an open slot's output shape for the steps submitted after this
 * call. DEMIX_EARG for a slot that is not open or an invalid shape (format
 * unknown; count not 1..T or a source out of range; a gain not finite). */
DEMIX_WARN_UNUSED int demix_engine_set_output(demix_engine *engine, int slot,
                                              const demix_output_shape *shape);

/* Row i (0..n-1) of the last collected step, in its slot's shape at
 * submit, and its size in bytes; NULL before the first collect or for i
 * out of range. Valid until the next collect. */
const void *demix_engine_output_row(const demix_engine *engine, int i,
                                    size_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* DEMIX_ENGINE_H */
