/*
 * engine_impl.h - the backend table behind demix_engine (ggml-backend-impl.h
 * in spirit). engine.c owns slot bookkeeping and argument checks; a backend
 * only keeps per-slot state and runs steps on lists it may trust:
 * 1 <= n <= max_slots, every slot id open and distinct.
 *
 * Thread context: a backend context is used by one thread at a time.
 */
#ifndef DEMIX_ENGINE_IMPL_H
#define DEMIX_ENGINE_IMPL_H

#include "engine.h"
#include "model_impl.h"

/* One row's output shape as backends get it: compact, fixed size, with
 * the row's byte offset in the step's packed output (engine.c fills it at
 * submit from the slot's demix_output_shape). */
typedef struct demix_row_shape {
    uint64_t offset;                  /* bytes from the output's start */
    uint8_t format;                   /* demix_sample_format */
    uint8_t mix;                      /* 1: one plane, the weighted sum */
    uint8_t planes;                   /* planes written */
    uint8_t pad_;
    uint8_t sources[DEMIX_MAX_SOURCES]; /* mix 0: source of each plane */
    float gains[DEMIX_MAX_SOURCES];     /* mix 1 */
} demix_row_shape;

/* Pack one row: from src (T x CH floats, CH = C*H) into dst in the shape
 * (offset ignored). The reference packer: the CPU path uses it, and the
 * CUDA kernel matches it bit for bit. */
void demix__pack_row(const float *src, int T, int CH, const demix_row_shape *sh,
                     void *dst);

typedef struct demix_backend_ops {
    const char *name; /* "cpu", "cuda" */

    /* Make a context for opt->max_slots slots, every slot's state zeroed.
     * err gets one line on failure. */
    int (*create)(const demix_model *model, const demix_engine_options *opt,
                  void **ctx, char *err, size_t err_cap);
    void (*destroy)(void *ctx);

    /* One line for logs: device, precision, threads. */
    const char *(*describe)(void *ctx);

    /* Zero one slot's state (on open and reset). */
    int (*reset_slot)(void *ctx, int slot);

    /* One batched hop; layout as demix_engine_step(). On failure a sentence
     * is left for last_error. */
    int (*step)(void *ctx, int n, const int *slots, const float *in,
                float *out);

    const char *(*last_error)(void *ctx);

    /* Optional (NULL: malloc/free): host memory for the engine's pipelined
     * I/O buffers (CUDA: page-locked). host_alloc returns NULL on failure
     * without failing the context. */
    void *(*host_alloc)(void *ctx, size_t bytes);
    void (*host_free)(void *ctx, void *p);

    /* Optional pipelined step (NULL: engine.c runs step() inside submit).
     * submit starts one step reading in and writing out, both from
     * host_alloc and left alone by engine.c until wait() has returned for
     * this step, and returns without waiting; at most
     * DEMIX_ENGINE_MAX_IN_FLIGHT are outstanding. wait waits for the oldest
     * outstanding step; its out is complete when it returns DEMIX_OK. A
     * failure leaves a sentence for last_error. */
    int (*submit)(void *ctx, int n, const int *slots, const float *in,
                  float *out);
    int (*wait)(void *ctx);

    /* Optional (NULL: engine.c packs on the host after the step): submit
     * with output shapes. shapes[i] (host_alloc memory, left alone until
     * wait) gives row i's shape and its byte offset in out; out receives
     * the packed rows, total_bytes in all. */
    int (*submit_shaped)(void *ctx, int n, const int *slots, const float *in,
                         void *out, const demix_row_shape *shapes,
                         size_t total_bytes);
} demix_backend_ops;

/* The backends linked into this build; cuda is NULL-returning when CUDA was
 * not compiled in. */
const demix_backend_ops *demix__cpu_backend(void);
const demix_backend_ops *demix__cuda_backend(void);

/* The backend context of an engine, for tests that look inside a backend
 * (the CPU golden test reads intermediate stages). */
void *demix__engine_backend_context(demix_engine *engine);

#endif /* DEMIX_ENGINE_IMPL_H */
