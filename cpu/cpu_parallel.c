/*
 * cpu_parallel.c - stages split over a thread pool (cpu_parallel.h).
 *
 * Design. Each function fills a job description on its own stack (run()
 * returns only when every task is done, so the frame outlives the tasks:
 * nothing is allocated), computes the split, and runs one task per chunk.
 * A task offsets the weights, bias and output by its first column and calls
 * the ordinary kernel on its range. With no pool, one thread, or too little
 * work for two chunks, the kernel is called directly on the whole range.
 *
 * Thread context: the functions run on the engine's thread; the *_task
 * functions on any of the pool's threads, writing disjoint column or unit
 * ranges of the output and reading only what the engine's thread wrote
 * before the run.
 */
#include "cpu_parallel.h"

#include "cpu_bf16.h"
#include "cpu_features.h"
#include "cpu_lstm.h"

/* Chunks of the elementwise stages are multiples of this many units. */
#define UNIT_ALIGN 16

int demix__cpu_split(int count, int threads, int per_thread, int align,
                     int *tasks)
{
    int want = threads > 1 ? threads * per_thread : 1;
    int chunk = (count + want - 1) / want;
    chunk = (chunk + align - 1) / align * align;
    if (chunk < align)
        chunk = align;
    if (chunk >= count) {
        *tasks = 1;
        return count > 0 ? count : 1;
    }
    *tasks = (count + chunk - 1) / chunk;
    return chunk;
}

static void run(demix_threadpool *pool, int tasks, demix_threadpool_fn fn,
                void *arg)
{
    int rc = demix_threadpool_run(pool, tasks, fn, arg);
    DEMIX_ASSERT(rc == DEMIX_OK);
}

/* ------------------------------------------------------------ products */

typedef struct product_job {
    int rows, n, chunk, op_count;
    const demix_cpu_operand *ops;
    const float *bias;
    float *y;
    size_t y_stride;
    /* bf16 */
    int k_pad;
    const uint16_t *x16, *w16;
} product_job;

static void matmul_task(void *arg, int task)
{
    const product_job *j = arg;
    int j0 = task * j->chunk;
    int cols = j->n - j0 < j->chunk ? j->n - j0 : j->chunk;
    demix_cpu_operand ops[DEMIX_CPU_MAX_OPERANDS];
    for (int o = 0; o < j->op_count; o++) {
        ops[o] = j->ops[o];
        ops[o].w += (size_t)j0 * ops[o].w_stride;
    }
    demix__cpu_matmul(j->rows, cols, ops, j->op_count,
                      j->bias ? j->bias + j0 : NULL, j->y + j0, j->y_stride);
}

void demix__cpu_matmul_pool(demix_threadpool *pool, int rows, int n,
                            const demix_cpu_operand *ops, int op_count,
                            const float *bias, float *y, size_t y_stride)
{
    int tasks;
    int chunk = demix__cpu_split(n, demix_threadpool_threads(pool),
                                 DEMIX_CPU_TASKS_PER_THREAD,
                                 DEMIX_CPU_MATMUL_COLUMN_ALIGN, &tasks);
    if (tasks == 1) {
        demix__cpu_matmul(rows, n, ops, op_count, bias, y, y_stride);
        return;
    }
    DEMIX_ASSERT(op_count >= 1 && op_count <= DEMIX_CPU_MAX_OPERANDS);
    product_job j = {.rows = rows, .n = n, .chunk = chunk,
                     .op_count = op_count, .ops = ops, .bias = bias, .y = y,
                     .y_stride = y_stride};
    run(pool, tasks, matmul_task, &j);
}

static void matmul_bf16_task(void *arg, int task)
{
    const product_job *j = arg;
    int j0 = task * j->chunk;
    int cols = j->n - j0 < j->chunk ? j->n - j0 : j->chunk;
    demix__cpu_matmul_bf16(j->rows, cols, j->k_pad, j->x16,
                           j->w16 + (size_t)j0 * (size_t)j->k_pad,
                           j->bias ? j->bias + j0 : NULL, j->y + j0,
                           j->y_stride);
}

void demix__cpu_matmul_bf16_pool(demix_threadpool *pool, int rows, int n,
                                 int k_pad, const uint16_t *x,
                                 const uint16_t *w, const float *bias,
                                 float *y, size_t y_stride)
{
    int tasks;
    int chunk = demix__cpu_split(n, demix_threadpool_threads(pool),
                                 DEMIX_CPU_TASKS_PER_THREAD,
                                 DEMIX_CPU_BF16_COLUMN_ALIGN, &tasks);
    if (tasks == 1) {
        demix__cpu_matmul_bf16(rows, n, k_pad, x, w, bias, y, y_stride);
        return;
    }
    product_job j = {.rows = rows, .n = n, .chunk = chunk, .bias = bias,
                     .y = y, .y_stride = y_stride, .k_pad = k_pad, .x16 = x,
                     .w16 = w};
    run(pool, tasks, matmul_bf16_task, &j);
}

/* --------------------------------------------------------- elementwise */

typedef struct units_job {
    int rows, count, chunk;
    const float *in;
    float *out1, *out2;
} units_job;

static void cell_task(void *arg, int task)
{
    const units_job *j = arg;
    int u0 = task * j->chunk;
    int u1 = j->count - u0 < j->chunk ? j->count : u0 + j->chunk;
    demix__cpu_lstm_cell_units(j->rows, j->count, u0, u1, j->in, j->out1,
                               j->out2);
}

void demix__cpu_lstm_cell_pool(demix_threadpool *pool, int rows, int hid,
                               const float *gates, float *h, float *c)
{
    int tasks;
    int chunk = demix__cpu_split(hid, demix_threadpool_threads(pool), 1,
                                 UNIT_ALIGN, &tasks);
    if (tasks == 1) {
        demix__cpu_lstm_cell(rows, hid, gates, h, c);
        return;
    }
    units_job j = {.rows = rows, .count = hid, .chunk = chunk, .in = gates,
                   .out1 = h, .out2 = c};
    run(pool, tasks, cell_task, &j);
}

static void gate_task(void *arg, int task)
{
    const units_job *j = arg;
    int k0 = task * j->chunk;
    int k1 = j->count - k0 < j->chunk ? j->count : k0 + j->chunk;
    demix__cpu_gate_basis_units(j->rows, j->count, k0, k1, j->in, j->out1);
}

void demix__cpu_gate_basis_pool(demix_threadpool *pool, int rows,
                                int num_basis, const float *ag, float *basis)
{
    int tasks;
    int chunk = demix__cpu_split(num_basis, demix_threadpool_threads(pool), 1,
                                 UNIT_ALIGN, &tasks);
    if (tasks == 1) {
        demix__cpu_gate_basis(rows, num_basis, ag, basis);
        return;
    }
    units_job j = {.rows = rows, .count = num_basis, .chunk = chunk,
                   .in = ag, .out1 = basis};
    run(pool, tasks, gate_task, &j);
}
