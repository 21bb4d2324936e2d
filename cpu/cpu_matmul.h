/*
 * cpu_matmul.h - the CPU backend's one matrix product: y = sum_i x_i w_i^T
 * (+ bias) over a batch of rows, with every output element computed by the
 * same sequence of float operations whatever the number of rows, the row's
 * position in the batch or the tile it falls in.
 *
 * Why not cblas_sgemm: OpenBLAS 0.3.21 rounds a row differently depending
 * on how many rows share the call and where the row sits (its kernels use
 * different accumulation orders for the 12/8/4/2/1-column edge blocks and
 * its threads split the batch), so a stream's output would depend on which
 * other streams share its step. engine.h promises it never does, bit for
 * bit. Here each element is: eight float lanes accumulated with fused
 * multiply-adds over k in steps of 8 (a partial last step reads zeros),
 * operand after operand, then one fixed horizontal sum, then + bias. The
 * AVX2+FMA path and the portable path implement exactly that sequence, so
 * they agree bit for bit too (tests/unit/test_cpu_matmul.c).
 *
 * Shapes follow PyTorch's linear layers: a weight is [n][k] (out, in), so
 * y[r][j] = bias[j] + sum_i dot(x_i[r][0..k_i), w_i[j][0..k_i)).
 *
 * Thread context: reentrant; no state beyond the test-only switch below.
 */
#ifndef DEMIX_CPU_MATMUL_H
#define DEMIX_CPU_MATMUL_H

#include <stddef.h>

/* One operand of a product: `rows` rows of x against the n rows of w. */
typedef struct demix_cpu_operand {
    const float *x;  /* [rows][x_stride], the first k entries used */
    size_t x_stride; /* floats between rows of x */
    const float *w;  /* [n][w_stride], the first k entries used */
    size_t w_stride; /* floats between rows of w */
    int k;           /* reduction length, >= 0 */
} demix_cpu_operand;

#define DEMIX_CPU_MAX_OPERANDS 2

/* Output columns (weight rows) are computed in blocks of 8, 6, 4 or 3
 * (cpu_matmul.c, by batch size). A call over a column range that starts at
 * a multiple of this (w, bias and y offset by the start) tiles those
 * columns exactly as the call over all of them: cpu_parallel.c splits
 * products that way. */
#define DEMIX_CPU_MATMUL_COLUMN_ALIGN 24

/* y[r][j] (row stride y_stride) for r < rows, j < n. op_count is 1 or 2
 * (an LSTM layer passes [x | h] against [W_ih | W_hh] without packing);
 * bias may be NULL. y must not overlap any x. */
void demix__cpu_matmul(int rows, int n, const demix_cpu_operand *ops,
                       int op_count, const float *bias, float *y,
                       size_t y_stride);

/* "avx2+fma" or "portable": the path demix__cpu_matmul() takes here. */
const char *demix__cpu_matmul_isa(void);

/* Tests only (set before any engine runs, from one thread): force the
 * portable path even where AVX2+FMA is available. */
void demix__cpu_matmul_force_portable(int on);

#endif /* DEMIX_CPU_MATMUL_H */
