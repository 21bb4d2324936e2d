/*
 * cpu_parallel.h - the CPU backend's stages split over a caller's thread
 * pool (threadpool.h; NULL = the calling thread alone).
 *
 * Splits, and why every split gives the single-thread bits:
 *  - a product is cut into contiguous ranges of OUTPUT COLUMNS (weight
 *    rows), every task taking all the rows of the batch, so each weight row
 *    is still streamed from memory once per step. Range starts are
 *    multiples of the kernel's column tile (DEMIX_CPU_MATMUL_COLUMN_ALIGN,
 *    DEMIX_CPU_BF16_COLUMN_ALIGN), so every output element falls in the
 *    same tile shape, and goes through the same instructions, as in the
 *    single call over all columns (cpu_matmul.h: an element's operation
 *    sequence never depends on its tile anyway);
 *  - the LSTM cell and the gated basis are cut into ranges of units, all
 *    rows each: per-element functions, exact under any split.
 * A product gets about DEMIX_CPU_TASKS_PER_THREAD tasks per thread, so a
 * late worker (wake-up, another process on its core) costs a small chunk,
 * not half the product: tasks are handed out dynamically.
 *
 * Thread context: called by the engine's thread; the tasks run on the
 * pool's threads. Buffers are the caller's; tasks write disjoint parts.
 */
#ifndef DEMIX_CPU_PARALLEL_H
#define DEMIX_CPU_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_matmul.h"
#include "threadpool.h"

#define DEMIX_CPU_TASKS_PER_THREAD 4

/* Cut count items into chunks of a multiple of align items, about
 * `per_thread` chunks per thread of `threads`; returns the chunk length and
 * the number of chunks in *tasks (1 when threads is 1 or count is small). */
int demix__cpu_split(int count, int threads, int per_thread, int align,
                     int *tasks);

/* demix__cpu_matmul() split by output columns over the pool. */
void demix__cpu_matmul_pool(demix_threadpool *pool, int rows, int n,
                            const demix_cpu_operand *ops, int op_count,
                            const float *bias, float *y, size_t y_stride);

/* demix__cpu_matmul_bf16() split by output columns over the pool. */
void demix__cpu_matmul_bf16_pool(demix_threadpool *pool, int rows, int n,
                                 int k_pad, const uint16_t *x,
                                 const uint16_t *w, const float *bias,
                                 float *y, size_t y_stride);

/* demix__cpu_lstm_cell() split by hidden units over the pool. */
void demix__cpu_lstm_cell_pool(demix_threadpool *pool, int rows, int hid,
                               const float *gates, float *h, float *c);

/* demix__cpu_gate_basis() split by basis entries over the pool. */
void demix__cpu_gate_basis_pool(demix_threadpool *pool, int rows,
                                int num_basis, const float *ag, float *basis);

#endif /* DEMIX_CPU_PARALLEL_H */
