/*
 * cpu_context.h - the CPU backend's context, shared by cpu_engine.c (create,
 * steps) and cpu_stages.c (the stage reader). Nothing outside cpu/ sees it.
 *
 * Layout. One allocation holds every slot's state and every work buffer:
 *   state: [max_slots][slot_floats], per slot: past [C][H], then h and c of
 *          each layer of the five branches, then tail_spec and tail_wave
 *          [T][C][H] (model-spec.md "State per stream"); zero = fresh.
 *   work:  row-major [max_slots][...] buffers, row i = the i-th listed slot
 *          of the current step, so each layer is one product over n rows.
 * A step gathers the listed slots' LSTM state into the h/c work rows,
 * computes, and scatters it back; past and the tails are read and written
 * in place. Nothing is allocated after create.
 *
 * Thread context: one thread at a time per context (engine_impl.h). With a
 * pool, a step's tasks run on the pool's threads and write disjoint parts
 * of the work rows; per-task resources (FFT plan, FFT scratch) are indexed
 * by the task, which no two threads run at once (threadpool.h).
 */
#ifndef DEMIX_CPU_CONTEXT_H
#define DEMIX_CPU_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_fft.h"
#include "engine_impl.h"
#include "threadpool.h"

/* A weight matrix in the fast mode's packed bfloat16 form (cpu_bf16.h). */
typedef struct demix_cpu_bf16_weight {
    const uint16_t *w; /* [out][k_pad] */
    int k_pad;
} demix_cpu_bf16_weight;

typedef struct demix_cpu_context {
    const demix_model *model;
    /* sizes, from the model config */
    int D, NB, DF, L, C, W, H, F, S, T, CW, small;
    int max_slots;
    int fast_requested; /* DEMIX_PRECISION_FAST asked for */
    int bf16;           /* ... and running it: bf16 products (cpu_bf16.h) */

    demix_threadpool *pool; /* the caller's (opt->pool), or NULL */
    int threads;            /* its participants; 1 without a pool */

    demix_cpu_fft **fft; /* [threads]: plan i serves task i of a run */
    float *env;        /* [H] w[n]^2 + w[n+H]^2 */
    float *decode_t;   /* [CW][NB] conv_decode.weight transposed */
    float *lstm_bias[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS]; /* b_ih+b_hh */
    float *params;     /* owns env, decode_t, lstm_bias */

    /* fast mode only: packed bf16 weights ([W_ih | W_hh] per LSTM layer)
     * and the bf16 activation rows of the product being computed */
    demix_cpu_bf16_weight bf16_spec_encode, bf16_conv_encode;
    demix_cpu_bf16_weight bf16_basis_to_embed;
    demix_cpu_bf16_weight bf16_lstm[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];
    demix_cpu_bf16_weight bf16_spec_mask, bf16_wave_mask, bf16_decode;
    uint16_t *bf16_weights; /* owns every bf16_* weight above */
    uint16_t *bf16_act;     /* [max_slots * act_row] */

    /* per-slot state */
    size_t slot_floats;
    size_t off_h[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];
    size_t off_c[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];
    size_t off_tail_spec, off_tail_wave; /* past is at offset 0 */
    float *state;

    /* work rows [max_slots][...] (stages first: read by cpu_stages.c) */
    float *frame;     /* [C*W] */
    float *spec_feat; /* [S] */
    float *spec;      /* [D] */
    float *ag;        /* [2NB] */
    float *basis;     /* [NB] */
    float *wave;      /* [D] */
    float *s1, *w1;   /* [D] */
    float *fuse_in;   /* [DF] */
    float *fused;     /* [DF] */
    float *post_in_s, *post_in_w; /* [D] */
    float *s2, *w2;   /* [D] */
    float *norm;      /* [D] */
    float *spec_mask; /* [T*S] */
    float *wave_mask; /* [T*NB] */
    float *spec_out;  /* [T*C*W] */
    float *dec_in;    /* [T*NB] */
    float *wave_out;  /* [T*C*W] */
    float *gates;     /* [4*DF] */
    float *h_work[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS]; /* [hid] */
    float *c_work[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];
    float *fft_scratch; /* [threads][2F + 2]: row i for task i of a run */
    float *work;        /* owns state and every work buffer above */
    size_t work_floats;

    int last_rows; /* rows of the last successful step; 0 before any */
    char describe[160];
    char error[256];
} demix_cpu_context;

#endif /* DEMIX_CPU_CONTEXT_H */
