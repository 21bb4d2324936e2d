/*
 * gemm.cu - the backend's matrix products: Y[M][N] = A[M][K] W^T (or A W
 * when W is stored [K][N]), row-major, float32 output, in the precision of
 * the product's group (float32 pedantic, TF32, or bf16 with float32
 * accumulation).
 *
 * Design. Each distinct product (shape, leading dimensions, precision) of
 * an engine gets a plan the first time it runs, which is at create time,
 * in the direct warm-up run of each batch bucket before its graph is
 * captured. By default the plan is cublasGemmEx's default algorithm. With
 * tuning on (demix__cuda_set_gemm_tuning), the candidates are that and the
 * algorithms cuBLASLt's heuristic proposes for the shape (up to 16), each
 * timed on the live buffers, the fastest kept. Measured on an H100
 * (gpu/NOTES.md): no gain at B = 1024 and 4096 (the slow mid-size
 * products, N = 3500 or K = 500, stay at 150-230 TFLOP/s whichever
 * algorithm), a loss at B = 1 (a product timed alone finds its weights in
 * L2; inside the frame it does not), so tuning is off by default.
 * Reduction schemes that accumulate in place (atomics) are excluded, so a
 * plan's results do not vary from run to run.
 *
 * Variants: cublasGemmEx (CUBLAS_GEMM_DEFAULT) or cublasLtMatmul with the
 * plan's algorithm; C = A W^T or C += A W^T (the split LSTM products). Validation: tests/gpu/test_cuda_engine.c (stage and
 * end-to-end parity with the CPU in fp32 mode, the fast mode's SDR).
 *
 * Thread context: the engine's thread; plans are made outside any capture.
 */
#include "cuda_internal.h"

#include <stdlib.h>
#include <string.h>

#define TUNE_ALGOS 16
#define TUNE_REPS 5

struct demix_gemm_plan {
    int kind, M, N, K, lda, ldw, ldc, trans, acc;
    int use_lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

static cudaDataType elem_type(int kind)
{
    return kind == DEMIX_CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static cublasComputeType_t compute_type(int kind)
{
    return kind == DEMIX_CUDA_F32    ? CUBLAS_COMPUTE_32F_PEDANTIC
           : kind == DEMIX_CUDA_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                     : CUBLAS_COMPUTE_32F;
}

typedef struct gemm_args {
    cublasHandle_t h;
    cudaStream_t s;
    void *ws;
    int M, N, K;
    const dmat *A, *W;
    bool trans;
    float *C;
    int ldc, kind;
    int acc; /* 1: C += A W^T (beta = 1) */
} gemm_args;

static cublasStatus_t run_ex(const gemm_args *a)
{
    const float one = 1.0f, beta = a->acc ? 1.0f : 0.0f;
    const cudaDataType t = elem_type(a->kind);
    /* Row-major Y[M][N] = A[M][K] W^T is column-major Y^T = W A^T. */
    return cublasGemmEx(a->h, a->trans ? CUBLAS_OP_T : CUBLAS_OP_N,
                        CUBLAS_OP_N, a->N, a->M, a->K, &one, a->W->p, t,
                        a->W->ld, a->A->p, t, a->A->ld, &beta, a->C,
                        CUDA_R_32F, a->ldc, compute_type(a->kind),
                        CUBLAS_GEMM_DEFAULT);
}

static cublasStatus_t run_lt(demix_cuda *g, const gemm_args *a,
                             const demix_gemm_plan *p,
                             const cublasLtMatmulAlgo_t *algo)
{
    const float one = 1.0f, beta = a->acc ? 1.0f : 0.0f;
    return cublasLtMatmul(g->lt, p->op, &one, a->W->p, p->la, a->A->p, p->lb,
                          &beta, a->C, p->lc, a->C, p->lc, algo, a->ws,
                          DEMIX_CUDA_CUBLAS_WS_BYTES, a->s);
}

static void free_lt(demix_gemm_plan *p)
{
    if (p->lc)
        cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->op)
        cublasLtMatmulDescDestroy(p->op);
    p->op = NULL;
    p->la = p->lb = p->lc = NULL;
    p->use_lt = 0;
}

/* Mean ms of TUNE_REPS runs after two warm-ups; < 0 when a run fails
 * (that candidate is dropped; the failure is not an engine error). */
static float time_candidate(demix_cuda *g, const gemm_args *a,
                            const demix_gemm_plan *p,
                            const cublasLtMatmulAlgo_t *algo,
                            cudaEvent_t t0, cudaEvent_t t1)
{
    for (int i = 0; i < 2 + TUNE_REPS; i++) {
        if (i == 2 && cudaEventRecord(t0, a->s) != cudaSuccess)
            return -1;
        cublasStatus_t rc = algo ? run_lt(g, a, p, algo) : run_ex(a);
        if (rc != CUBLAS_STATUS_SUCCESS)
            return -1;
    }
    float ms = 0;
    if (cudaEventRecord(t1, a->s) != cudaSuccess ||
        cudaEventSynchronize(t1) != cudaSuccess ||
        cudaEventElapsedTime(&ms, t0, t1) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    return ms / TUNE_REPS;
}

/* The cuBLASLt descriptors of a plan; false when cuBLASLt will not take
 * the product (the plan then stays on cublasGemmEx). */
static bool make_lt(demix_cuda *g, demix_gemm_plan *p)
{
    const cudaDataType t = elem_type(p->kind);
    cublasOperation_t ta = p->trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t tb = CUBLAS_OP_N;
    (void)g;
    if (cublasLtMatmulDescCreate(&p->op, compute_type(p->kind), CUDA_R_32F) ||
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                       sizeof ta) ||
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                       sizeof tb) ||
        cublasLtMatrixLayoutCreate(&p->la, t, p->trans ? p->K : p->N,
                                   p->trans ? p->N : p->K, p->ldw) ||
        cublasLtMatrixLayoutCreate(&p->lb, t, p->K, p->M, p->lda) ||
        cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, p->N, p->M, p->ldc)) {
        free_lt(p);
        return false;
    }
    return true;
}

/* Make, time and keep the plan of a product not seen before. */
static demix_gemm_plan *new_plan(demix_cuda *g, const gemm_args *a)
{
    demix_cuda_err *e = &g->err;
    if (g->nplans == g->plans_cap) {
        int cap = g->plans_cap ? 2 * g->plans_cap : 64;
        void *np = realloc(g->plans, (size_t)cap * sizeof *g->plans);
        if (!np) {
            demix__cuda_ok(e, cudaErrorMemoryAllocation, "realloc(plans)",
                           __FILE__, __LINE__);
            return NULL;
        }
        g->plans = (demix_gemm_plan *)np;
        g->plans_cap = cap;
    }
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (!CK(e, cudaStreamIsCapturing(a->s, &cs)))
        return NULL;
    if (cs != cudaStreamCaptureStatusNone) {
        demix__cuda_ok(e, cudaErrorStreamCaptureUnsupported,
                       "a product without a plan inside a capture", __FILE__,
                       __LINE__);
        return NULL;
    }
    demix_gemm_plan *p = &g->plans[g->nplans];
    memset(p, 0, sizeof *p);
    p->kind = a->kind;
    p->M = a->M;
    p->N = a->N;
    p->K = a->K;
    p->lda = a->A->ld;
    p->ldw = a->W->ld;
    p->ldc = a->ldc;
    p->trans = a->trans;
    p->acc = a->acc;
    /* an accumulating product is not timed (each run would add again) */
    if (g->gemm_tuning && !a->acc && make_lt(g, p)) {
        cudaEvent_t t0 = NULL, t1 = NULL;
        if (!CK(e, cudaEventCreate(&t0)) || !CK(e, cudaEventCreate(&t1))) {
            if (t0)
                cudaEventDestroy(t0);
            free_lt(p);
            return NULL;
        }
        float best = time_candidate(g, a, p, NULL, t0, t1);
        cublasLtMatmulPreference_t pref = NULL;
        size_t ws = DEMIX_CUDA_CUBLAS_WS_BYTES;
        uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_MASK &
                           ~(uint32_t)CUBLASLT_REDUCTION_SCHEME_INPLACE;
        cublasLtMatmulHeuristicResult_t res[TUNE_ALGOS];
        int found = 0;
        if (cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                sizeof ws) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                sizeof schemes) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc,
                                           p->lc, pref, TUNE_ALGOS, res,
                                           &found) != CUBLAS_STATUS_SUCCESS)
            found = 0;
        if (pref)
            cublasLtMatmulPreferenceDestroy(pref);
        for (int i = 0; i < found; i++) {
            if (res[i].state != CUBLAS_STATUS_SUCCESS ||
                res[i].workspaceSize > ws)
                continue;
            float ms = time_candidate(g, a, p, &res[i].algo, t0, t1);
            if (ms > 0 && (best < 0 || ms < best)) {
                best = ms;
                p->algo = res[i].algo;
                p->use_lt = 1;
            }
        }
        cudaEventDestroy(t0);
        cudaEventDestroy(t1);
        (void)cudaGetLastError(); /* a dropped candidate's launch error */
        if (!p->use_lt)
            free_lt(p);
    }
    g->nplans++;
    return p;
}

bool demix__gemm(demix_cuda *g, cublasHandle_t h, int group, int M, int N,
                 int K, const dmat *A, const dmat *W, bool w_trans, float *C,
                 int ldc, bool accumulate)
{
    gemm_args a;
    a.h = h;
    a.s = h == g->h1 ? g->side : h == g->h2 ? g->aux : g->stream;
    a.ws = h == g->h1 ? g->ws1 : h == g->h2 ? g->ws2 : g->ws0;
    a.acc = accumulate ? 1 : 0;
    a.M = M;
    a.N = N;
    a.K = K;
    a.A = A;
    a.W = W;
    a.trans = w_trans;
    a.C = C;
    a.ldc = ldc;
    a.kind = g->kind[group];
    demix_gemm_plan *p = NULL;
    for (int i = 0; i < g->nplans; i++) {
        demix_gemm_plan *q = &g->plans[i];
        if (q->kind == a.kind && q->M == M && q->N == N && q->K == K &&
            q->lda == A->ld && q->ldw == W->ld && q->ldc == ldc &&
            q->trans == (int)w_trans && q->acc == a.acc) {
            p = q;
            break;
        }
    }
    if (!p && !(p = new_plan(g, &a)))
        return false;
    if (p->use_lt)
        return CK(&g->err, run_lt(g, &a, p, &p->algo));
    return CK(&g->err, run_ex(&a));
}

int demix__gemm_lt_count(const demix_cuda *g)
{
    int n = 0;
    for (int i = 0; i < g->nplans; i++)
        n += g->plans[i].use_lt;
    return n;
}

void demix__gemm_free(demix_cuda *g)
{
    for (int i = 0; i < g->nplans; i++)
        if (g->plans[i].use_lt)
            free_lt(&g->plans[i]);
    free(g->plans);
    g->plans = NULL;
    g->nplans = g->plans_cap = 0;
}
