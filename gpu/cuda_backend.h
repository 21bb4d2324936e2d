/*
 * cuda_backend.h - what the CUDA backend shows beyond the backend table,
 * for its tests and benchmarks only (never for server/ or tools/): its
 * intermediate stages (same names and layout as engine_stages.h, so the two
 * engines can be compared stage by stage), the device memory it holds,
 * and two switches for engines created afterwards (the fast policy, and
 * graphs off). The kernel variants measured in gpu/NOTES.md are not
 * switches: the product runs one way.
 *
 * Precision. DEMIX_PRECISION_FP32: every product in float32 with
 * CUBLAS_COMPUTE_32F_PEDANTIC (no TF32); the CPU engine's figures to
 * within 1e-5 relative per hop. DEMIX_PRECISION_FAST (and DEFAULT): the
 * products of the groups below in the fast policy's format, with float32
 * accumulation, float32 state, float32 FFTs and elementwise work.
 *
 * Thread context: the switches are process-wide and not synchronised; set
 * them before creating engines, from the thread that creates them.
 */
#ifndef DEMIX_CUDA_BACKEND_H
#define DEMIX_CUDA_BACKEND_H

#include <stddef.h>

#include "engine_stages.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices that open here; 0 when cudaGetDeviceCount fails
 * (no driver or no GPU: error 35 on a machine without one). */
int demix__cuda_device_count(void);

/* Fast policies: which format each product group uses in FAST mode. */
typedef enum demix_cuda_policy {
    DEMIX_CUDA_POLICY_BF16 = 0,      /* every product bf16 x bf16 -> f32 */
    DEMIX_CUDA_POLICY_BF16_LSTM = 1, /* LSTM products bf16, the rest TF32 */
    DEMIX_CUDA_POLICY_TF32 = 2,      /* every product TF32 */
    DEMIX_CUDA_POLICY_COUNT
} demix_cuda_policy;

/* The policy of FAST engines created from now on (default BF16). */
void demix__cuda_set_fast_policy(demix_cuda_policy policy);
const char *demix__cuda_policy_name(demix_cuda_policy policy);

/* 0: run each step's kernels directly instead of replaying the captured
 * graphs (for isolating capture problems). Default 1. */
void demix__cuda_set_graphs(int on);

/* Per-op device time of the frame for n rows (n <= 4096), run directly on
 * one stream with an event after each op, averaged over `iters` runs:
 * "name=us;name=us;...;total=us" into text. Benchmarks only. */
int demix__cuda_profile(void *ctx, int n, int iters, char *text, size_t cap);

/* Copy stage `stage` of row `row` of the last step (its last chunk of at
 * most 4096 rows) into dst (cap floats), in engine_stages.h's layout.
 * Returns the number of floats, DEMIX_EARG, DEMIX_ENOSPACE or
 * DEMIX_EDEVICE. ctx is demix__engine_backend_context() of a CUDA engine. */
int demix__cuda_read_stage(void *ctx, demix_cpu_stage stage, int row,
                           float *dst, size_t cap);

/* Bytes of device memory the backend allocated (weights, activations,
 * state, workspaces). */
size_t demix__cuda_device_bytes(void *ctx);

/* Device time of one step's frame for n rows (n <= 4096) without the host
 * copies: the bucket's graph of landing zone 0 replayed `iters` times
 * between CUDA events, over the slot ids the zone holds (those of the
 * last chunk that went through it, padded to the bucket by earlier ones;
 * their state moves on). Returns DEMIX_OK and *ms per replay. Benchmarks
 * only. */
int demix__cuda_time_graph(void *ctx, int n, int iters, double *ms);

/* Rows of the batch bucket a step of n rows runs at (n <= 4096). */
int demix__cuda_bucket_rows(void *ctx, int n);

#ifdef __cplusplus
}
#endif

#endif /* DEMIX_CUDA_BACKEND_H */
