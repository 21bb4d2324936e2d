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
} demix_backend_ops;

/* The backends linked into this build; cuda is NULL-returning when CUDA was
 * not compiled in. */
const demix_backend_ops *demix__cpu_backend(void);
const demix_backend_ops *demix__cuda_backend(void);

/* The backend context of an engine, for tests that look inside a backend
 * (the CPU golden test reads intermediate stages). */
void *demix__engine_backend_context(demix_engine *engine);

#endif /* DEMIX_ENGINE_IMPL_H */
