/*
 * cuda_internal.h - the inside of the CUDA backend, shared by its .cu files
 * (never included by C code): the context struct, the check macros, and
 * the launchers of the fused kernels.
 *
 * Design. Every slot's state lives on the device in one slot-indexed array
 * state[max_slots + 1][P] (P floats per slot: the past hop, h and c of every
 * LSTM layer of the five branches, the two overlap tails); the extra slot
 * is a scratch slot that the padded rows of a batch bucket read and write,
 * so padding never touches a real stream. Activations are sized for one
 * chunk of R rows (R = min(max_slots, DEMIX_CUDA_CHUNK_ROWS)); a step of n
 * rows runs ceil(n / R) chunks, each a CUDA graph captured for the batch
 * bucket (a size >= its row count) at create time. Matrices are row-major
 * with padded leading dimensions (multiples of DEMIX_CUDA_GEMM_PAD
 * elements), and every product's N and K are rounded up to that multiple
 * (zero weight rows and columns), so that cuBLAS takes its aligned sm90
 * tensor-core kernels (gpu/NOTES.md, round 2, item 13).
 *
 * Thread context: a context is used by one thread at a time (engine.h).
 */
#ifndef DEMIX_CUDA_INTERNAL_H
#define DEMIX_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cufft.h>

#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "engine_stages.h"
#include "engine_impl.h"
}

#define DEMIX_CUDA_CHUNK_ROWS 4096  /* rows of one graph launch, at most */
#define DEMIX_CUDA_STAGE_ROWS 16384 /* rows of the pinned staging buffers */
#define DEMIX_CUDA_MAX_BUCKETS 48
#define DEMIX_CUDA_LAYERS (DEMIX_BRANCH_COUNT * DEMIX_LSTM_MAX_LAYERS)
#define DEMIX_CUDA_CUBLAS_WS_BYTES ((size_t)32 << 20)
#define DEMIX_CUDA_PROF_MARKS 64
#define DEMIX_CUDA_IO_GRAPH_ROWS 64 /* buckets up to this size get exec_io */
/* Products' N, K and leading dimensions: multiples of this many elements
 * (16 bytes of bf16 and more: cuBLAS's sm90 kernels need N, K % 8 == 0;
 * 32..128 measured the same as 16, 0 (unpadded) up to 40% slower). */
#define DEMIX_CUDA_GEMM_PAD 16

/* ------------------------------------------------------------ errors */

/* The first failure of a context: later ones are not recorded, and every
 * later step is refused (engine.h: the server closes the sessions). */
typedef struct demix_cuda_err {
    int failed;
    int oom; /* the failure was an allocation */
    char text[512];
} demix_cuda_err;

bool demix__cuda_ok(demix_cuda_err *e, cudaError_t rc, const char *call,
                    const char *file, int line);
bool demix__cuda_ok(demix_cuda_err *e, cublasStatus_t rc, const char *call,
                    const char *file, int line);
bool demix__cuda_ok(demix_cuda_err *e, cufftResult rc, const char *call,
                    const char *file, int line);

/* CK(err, call): run a CUDA, cuBLAS or cuFFT call; false (and the first
 * error kept with its call text, file and line) when it failed. */
#define CK(err, call) demix__cuda_ok((err), (call), #call, __FILE__, __LINE__)
/* After a kernel launch: the launch error, if any. */
#define CK_LAUNCH(err) CK((err), cudaGetLastError())

/* -------------------------------------------------------- precision */

enum demix_cuda_group { /* the GEMMs, grouped by what they compute */
    DEMIX_CUDA_G_ENC,   /* frame -> spec | a | g */
    DEMIX_CUDA_G_B2E,   /* basis -> wave */
    DEMIX_CUDA_G_LSTM,  /* [x | h] -> gates, all ten layers */
    DEMIX_CUDA_G_MASK,  /* RMSNorm(s2), RMSNorm(w2) -> masks */
    DEMIX_CUDA_G_DEC,   /* masked basis -> waveform decoder */
    DEMIX_CUDA_G_COUNT
};

enum demix_cuda_kind { /* how one GEMM group multiplies */
    DEMIX_CUDA_F32 = 0, /* float32, CUBLAS_COMPUTE_32F_PEDANTIC (no TF32) */
    DEMIX_CUDA_TF32 = 1, /* float32 storage, TF32 tensor cores */
    DEMIX_CUDA_BF16 = 2, /* bf16 weights and activations, f32 accumulate */
};

/* ------------------------------------------------------------ layout */

/* A row-major matrix on the device: float or bf16 elements, ld in
 * elements. */
typedef struct dmat {
    void *p;
    int ld;
    int bf16;
} dmat;

typedef struct demix_cuda_layer {
    int in, hid;   /* width of x, of h and c; h starts at column in */
    dmat w;        /* [4hid][in + hid]: [W_ih | W_hh] packed */
    float *bias;   /* [4hid]: b_ih + b_hh */
    dmat xh;       /* [R][in + hid]: GEMM input [x | h_prev] */
    float *gates;  /* [R][ld_gates]: GEMM output */
    int ld_gates;
    int off_h, off_c; /* offsets in a slot's state, floats */
} demix_cuda_layer;

typedef struct demix_cuda_bucket {
    int rows;
    cufftHandle r2c, c2r;
    int have_r2c, have_c2r;
    /* every step's path: the frame on landing zone p's input and output
     * (d_pin[p], d_pout[p]) */
    cudaGraph_t graph_p[2];
    cudaGraphExec_t exec_p[2];
    /* small buckets: the frame on d_inbuf/d_out with the host <-> device
     * copies of the pinned staging buffers inside the graph (a small
     * synchronous step is one launch) */
    cudaGraph_t graph_io;
    cudaGraphExec_t exec_io;
} demix_cuda_bucket;

typedef struct demix_cuda {
    const demix_model *model; /* outlives the engine (engine.h) */
    /* model sizes */
    int D, NB, S, W, H, F, C, T, L, DF, small, CW;
    int max_slots; /* real slots; slot max_slots is the scratch slot */
    int rows;      /* R: rows of one chunk */
    int stage_rows;
    int precision; /* DEMIX_PRECISION_FP32 or _FAST */
    int policy;    /* fast policy, see cuda_backend.h */
    int kind[DEMIX_CUDA_G_COUNT];
    int use_graphs; /* 0: frames run directly (a test switch) */

    /* profiling (demix__cuda_profile): one stream, an event after each op */
    int prof, prof_n;
    cudaEvent_t prof_ev[DEMIX_CUDA_PROF_MARKS];
    const char *prof_label[DEMIX_CUDA_PROF_MARKS];

    demix_cuda_err err;
    char last_error[600];
    char describe[512];

    int device;
    size_t device_bytes; /* what this context allocated on the device */

    cudaStream_t stream, side; /* main stream; side stream in the graphs */
    cudaEvent_t ev[8];
    int have_ev;
    cublasHandle_t h0, h1; /* one per stream, each with its workspace */
    void *ws0, *ws1;
    demix_threadpool *pool; /* the driver's, for host-side copies; may be NULL */

    /* weights */
    void *wblock;
    dmat w_enc;   /* [D + 2NB][CW]: folded (spec_encode . DFT . window) on
                     top of conv_encode */
    dmat w_b2e;   /* [D][NB] */
    dmat w_smask; /* [T*S][D] */
    dmat w_wmask; /* [T*NB][D] */
    dmat w_dec;   /* [NB][CW], used untransposed (A W) */
    float *b_spec, *b_conv, *b_b2e, *gain_s, *gain_w, *b_smask, *b_wmask;
    float *window, *env;
    demix_cuda_layer layer[DEMIX_BRANCH_COUNT][DEMIX_LSTM_MAX_LAYERS];

    /* per-slot state */
    float *state;
    int P; /* floats per slot */
    int off_past, off_tail; /* one tail: both paths' second halves, the
                             * spectral one already divided by env */

    /* activations, [R] rows each */
    void *ablock;
    /* the frame's input and output as recorded (record_frame_on points
     * them at a landing zone for a capture); by default the buffers of
     * the warm-up, the profile and the in-graph steps (exec_io) */
    char *d_inbuf; /* [pad16(bucket*4) slot ids][bucket][C][H] input */
    dmat frame;    /* [R][CW] raw frame, GEMM input */
    float *frame_win; /* [R][C][W] windowed frame, FFT input */
    float2 *X;        /* [R][C][F] spectrum */
    float *enc;       /* [R][ld_enc]: spec_raw | a | g */
    int ld_enc, ldD, ldNB, ldDF;
    float *spec, *basis, *wave_raw, *wave, *s1, *w1, *u, *fused;
    float *ps_in, *pw_in, *s2, *w2; /* f32 stage buffers */
    dmat basis_act, norm_s, norm_w, mb;
    float *ms, *mw; /* [R][ld]: mask GEMM outputs, bias not added */
    int ld_ms, ld_mw;
    float2 *Y;      /* [R][T][C][F] masked spectra (irfft input) */
    float *yraw;    /* [R][T][C][W] unscaled irfft output */
    float *z;       /* [R*T][ld_z] decoder output, before the window */
    int ld_z;
    float *d_out;   /* [R][T][C][H] */

    /* host staging of synchronous steps (pinned): stage_rows rows of
     * input and output for pageable caller buffers, or a small bucket's
     * slot ids and input for its in-graph copies (exec_io) */
    char *h_stage_in;
    float *h_stage_out;

    /* every step (enqueue_step in cuda_engine.cu): chunk c of the stream
     * of chunks uses landing zones c % 2 */
    cudaStream_t h2d, d2h;   /* the two copy directions */
    char *d_pin[2];          /* input, d_inbuf's layout, for R rows */
    float *d_pout[2];        /* [R][T][C][H] outputs */
    unsigned char *d_pack[2];     /* the chunk's outputs in their shapes */
    demix_row_shape *d_shapes[2]; /* [R] the chunk's row shapes */
    int *h_ids;              /* pinned [3][ids_cap]: a step's slot ids
                              * (0, 1: pipelined steps by sub_seq % 2;
                              * 2: the synchronous step) */
    size_t ids_cap;
    cudaEvent_t ev_h2d[2], ev_comp[2], ev_out_free[2];
    cudaEvent_t ev_done[DEMIX_ENGINE_MAX_IN_FLIGHT]; /* pipelined steps */
    cudaEvent_t ev_step; /* a synchronous step's end */
    unsigned long long chunk_seq, sub_seq, wait_seq;

    /* buckets */
    int nbuckets;
    demix_cuda_bucket bucket[DEMIX_CUDA_MAX_BUCKETS];
    uint8_t *bucket_of; /* [R + 1]: row count -> bucket index */
    void *fft_ws_r2c, *fft_ws_c2r;

    /* what the last step left in the activations, for read_stage */
    int last_rows;
} demix_cuda;

static inline int demix__pad16(int n)
{
    return (n + 15) & ~15;
}

/* Leading dimension (elements) of a product's operand or output of n
 * columns, and a product's N or K as run: n rounded up to
 * DEMIX_CUDA_GEMM_PAD (the operands' extra rows and columns are zero, so
 * the result is the same). */
static inline int demix__ld(int n)
{
    return (n + DEMIX_CUDA_GEMM_PAD - 1) / DEMIX_CUDA_GEMM_PAD *
           DEMIX_CUDA_GEMM_PAD;
}

static inline size_t demix__slot_bytes(int bucket_rows)
{
    return (size_t)demix__pad16(bucket_rows) * sizeof(int);
}

/* ---------------------------------------------------------- kernels */

#ifdef __CUDACC__
/* V consecutive floats (V = 4: one 16-byte access, the address aligned)
 * for the vectorised kernels (frame.cu, lstm.cu). */
template <int V>
static __device__ __forceinline__ void load_v(const float *src, float *v)
{
    if (V == 4) {
        float4 a = *(const float4 *)src;
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    } else {
#pragma unroll
        for (int i = 0; i < V; i++)
            v[i] = src[i];
    }
}

template <int V>
static __device__ __forceinline__ void store_v(float *dst, const float *v)
{
    if (V == 4) {
        *(float4 *)dst = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int i = 0; i < V; i++)
            dst[i] = v[i];
    }
}

/* V values into a GEMM input at element i (float or bf16). */
template <int V>
static __device__ __forceinline__ void store_act_v(void *base, size_t i,
                                                   const float *v, int bf16)
{
    if (!bf16) {
        store_v<V>((float *)base + i, v);
    } else if (V == 4) {
        __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]);
        __nv_bfloat162 hi = __floats2bfloat162_rn(v[2], v[3]);
        uint2 u;
        u.x = *(const unsigned int *)&lo;
        u.y = *(const unsigned int *)&hi;
        *(uint2 *)((__nv_bfloat16 *)base + i) = u;
    } else {
#pragma unroll
        for (int k = 0; k < V; k++)
            ((__nv_bfloat16 *)base)[i + k] = __float2bfloat16_rn(v[k]);
    }
}

#endif

/* gather: build the frames of B rows and the h half of every LSTM input,
 * move the new hop into the slot's past; segmented (a block works in the
 * frame or in one layer) and four items a thread where the sizes allow
 * (C*H, W, every hid, off_h and col multiples of 4). */
typedef struct demix_gather_params {
    const int *slots;
    const float *in; /* [B][C][H] */
    float *state;
    int P, off_past;
    int C, W, H;
    const float *window;
    void *frame;
    int ld_frame, frame_bf16;
    float *frame_win;
    int nlayers;
    struct {
        int off_h, hid;
        void *xh;
        int ld, col, bf16;
        int blk0; /* first block (blockIdx.x) of this layer; set by launch */
    } layer[DEMIX_CUDA_LAYERS];
    int frame_blocks; /* blocks of the frame segment; set by launch */
} demix_gather_params;
bool demix__launch_gather(demix_cuda_err *e, cudaStream_t s, int rows,
                          demix_gather_params *p);

/* enc_post: spec = enc[:D] + b; basis = relu(a + ba) * sigmoid(g + bg). */
typedef struct demix_enc_post_params {
    const float *enc;
    int ld_enc, D, NB;
    const float *b_spec, *b_conv;
    float *spec; /* [B][ldD] */
    int ldD;
    void *xh; /* pre_spec layer 0 input, x half */
    int ld_xh, xh_bf16;
    float *basis; /* [B][ldNB] */
    void *basis_act;
    int ldNB, act_bf16;
} demix_enc_post_params;
bool demix__launch_enc_post(demix_cuda_err *e, cudaStream_t s, int rows,
                            const demix_enc_post_params *p);

/* bias_route: y = x + b -> f32 buffer and a GEMM input (wave). */
bool demix__launch_bias_route(demix_cuda_err *e, cudaStream_t s, int rows,
                              int n, const float *x, int ldx, const float *b,
                              float *y, int ldy, void *act, int ld_act,
                              int act_bf16);

/* The LSTM cell with its residual and the routing of its output. */
typedef struct demix_cell_route {
    int j0, j1;        /* columns [j0, j1) of the layer output */
    const float *add;  /* optional, [B][ld_add], column j - j0 */
    int ld_add;
    float *f32;        /* optional, column j - j0 */
    int ld_f32;
    void *act;         /* optional GEMM input, column j - j0 */
    int ld_act, act_bf16;
} demix_cell_route;

typedef struct demix_cell_params {
    const float *gates;
    int ld_gates, hid;
    const float *bias;
    float *state;
    const int *slots;
    int P, off_h, off_c;
    const float *res; /* optional residual x: R = res + h */
    int ld_res;
    float *stage;     /* optional: R itself */
    int ld_stage;
    int nroutes;
    demix_cell_route route[2];
} demix_cell_params;
/* Four units a thread where every size and address allows 16-byte
 * accesses, else one. */
bool demix__launch_cell(demix_cuda_err *e, cudaStream_t s, int rows,
                        const demix_cell_params *p);

/* The cell of a branch's last layer followed by RMSNorm of its result
 * (the stage value R) into a GEMM input, one block per row; for hid <=
 * DEMIX_CUDA_NORM_MAX_HID (larger: the cell and demix__launch_rmsnorm). */
#define DEMIX_CUDA_NORM_MAX_HID 2048
typedef struct demix_norm_params {
    const float *gain;
    void *out;
    int ld_out, out_bf16;
} demix_norm_params;
bool demix__launch_cell_norm(demix_cuda_err *e, cudaStream_t s, int rows,
                             const demix_cell_params *p,
                             const demix_norm_params *q);

/* RMSNorm of rows of x into a GEMM input. */
bool demix__launch_rmsnorm(demix_cuda_err *e, cudaStream_t s, int rows,
                           int n, const float *x, int ldx, const float *gain,
                           void *out, int ld_out, int out_bf16);

/* Y[b][t] = X[b] * (ms[b][., t] + bias), real and imaginary apart. */
bool demix__launch_spec_mask(demix_cuda_err *e, cudaStream_t s, int rows,
                             int T, int S, const float *ms, int ld_ms,
                             const float *bias, const float2 *X, float2 *Y);

/* mb[b*T + t][n] = basis[b][n] * (mw[b][t*NB + n] + bias). */
bool demix__launch_wave_mask(demix_cuda_err *e, cudaStream_t s, int rows,
                             int T, int NB, const float *mw, int ld_mw,
                             const float *bias, const float *basis, int ldNB,
                             void *mb, int ld_mb, int mb_bf16);

/* Overlap-add of both paths with the slots' tails; writes the output hop
 * and the new tails. */
typedef struct demix_ola_params {
    const int *slots;
    float *state;
    int P, off_tail;
    int T, C, W, H;
    const float *yraw; /* [B][T][C][W], unscaled irfft */
    const float *z;    /* [B*T][ld_z] */
    int ld_z;
    const float *window, *env;
    float inv_w;
    float *out; /* [B][T][C][H] */
} demix_ola_params;
bool demix__launch_overlap_add(demix_cuda_err *e, cudaStream_t s, int rows,
                               const demix_ola_params *p);

/* pack.cu: rows of full [rows][T][CH] outputs into their shapes, row r at
 * out + shapes[r].offset - base (engine.h's output shapes). */
bool demix__launch_pack_rows(demix_cuda_err *e, cudaStream_t s, int rows,
                             const float *full, int T, int CH,
                             const demix_row_shape *shapes, uint64_t base,
                             unsigned char *out);

/* Create-time helpers. */
bool demix__launch_fold(demix_cuda_err *e, cudaStream_t s, int D, int C,
                        int W, int F, int S, const float *ws,
                        const double *cos_t, const double *sin_t,
                        const float *window, float *out, int ld_out);
bool demix__launch_to_bf16(demix_cuda_err *e, cudaStream_t s,
                           const float *src, __nv_bfloat16 *dst, size_t n);

/* One product Y[M][N] (ld ldc, float32) = A[M][K] W^T (w_trans) or A W,
 * in the precision of `group`, on h's stream (gemm.cu). N and K are
 * rounded up to DEMIX_CUDA_GEMM_PAD here. */
bool demix__gemm(demix_cuda *g, cublasHandle_t h, int group, int M, int N,
                 int K, const dmat *A, const dmat *W, bool w_trans, float *C,
                 int ldc);

/* Record one frame of `rows` rows (a bucket) into the streams: the body of
 * a graph, or run directly when graphs are off. */
bool demix__cuda_record_frame(demix_cuda *g, demix_cuda_bucket *b);

#endif /* DEMIX_CUDA_INTERNAL_H */
