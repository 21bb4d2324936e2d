/*
 * cpu_backend.h - what the CPU backend shows beyond the backend table: its
 * intermediate stages, read by the golden tests to check the network stage
 * by stage against the PyTorch reference (llm.c's check_tensor in spirit).
 *
 * After a successful step, each stage of every row of that step can be
 * copied out, in the order and layout of model-spec.md (not in whatever
 * internal layout the backend prefers). Golden files name the same stages
 * "stage.<name>" with demix__cpu_stage_name(). The stage enum itself is in
 * engine/engine_stages.h, shared with the CUDA backend.
 *
 * Thread context: the engine's thread, between steps.
 */
#ifndef DEMIX_CPU_BACKEND_H
#define DEMIX_CPU_BACKEND_H

#include <stddef.h>

#include "engine_stages.h"

/* "spec_feat", "spec", "basis", "wave", "s1", "w1", "fused", "s2", "w2",
 * "spec_mask", "wave_mask", "spec_out", "wave_out". */
const char *demix__cpu_stage_name(demix_cpu_stage stage);

/* Copy stage `stage` of row `row` (0..n-1 of the last step) into dst, which
 * holds cap floats. Returns the number of floats written, or DEMIX_EARG
 * (bad stage/row, no step yet) or DEMIX_ENOSPACE (cap too small). ctx is
 * demix__engine_backend_context() of a CPU engine. */
int demix__cpu_read_stage(void *ctx, demix_cpu_stage stage, int row,
                          float *dst, size_t cap);

#endif /* DEMIX_CPU_BACKEND_H */
