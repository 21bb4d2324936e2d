/*
 * gemm.cu - the backend's matrix products: Y[M][N] = A[M][K] W^T (or A W
 * when W is stored [K][N]), row-major, float32 output, in the precision of
 * the product's group (float32 pedantic, TF32, or bf16 with float32
 * accumulation), through cublasGemmEx with its default algorithm.
 *
 * Design. N and K are rounded up to DEMIX_CUDA_GEMM_PAD: the weights carry
 * zero rows and columns up to the rounded sizes and the activations zero
 * columns (their leading dimensions are multiples of the pad), so the
 * result is unchanged while cuBLAS takes its aligned sm90 kernels instead
 * of the alignment-2 sm80 ones (gpu/NOTES.md, round 2, items 12-13).
 * Timing cuBLASLt's other algorithms at create was measured and dropped:
 * no gain at 1024 and 4096 rows, a loss at 1 (NOTES.md, round 1, item 4).
 *
 * Validation: tests/gpu/test_cuda_engine.c (stage and end-to-end parity
 * with the CPU in fp32 mode, the fast mode's SDR).
 *
 * Thread context: the engine's thread.
 */
#include "cuda_internal.h"

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

bool demix__gemm(demix_cuda *g, cublasHandle_t h, int group, int M, int N,
                 int K, const dmat *A, const dmat *W, bool w_trans, float *C,
                 int ldc)
{
    const float one = 1.0f, zero = 0.0f;
    const int kind = g->kind[group];
    const cudaDataType t = elem_type(kind);
    /* Row-major Y[M][N] = A[M][K] W^T is column-major Y^T = W A^T. */
    return CK(&g->err,
              cublasGemmEx(h, w_trans ? CUBLAS_OP_T : CUBLAS_OP_N,
                           CUBLAS_OP_N, demix__ld(N), M, demix__ld(K), &one,
                           W->p, t, W->ld, A->p, t, A->ld, &zero, C,
                           CUDA_R_32F, ldc, compute_type(kind),
                           CUBLAS_GEMM_DEFAULT));
}
