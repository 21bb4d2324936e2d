/*
 * cpu_stages.c - the stage reader of cpu_backend.h: copies one stage of one
 * row of the last step out of the work buffers, for the golden tests.
 *
 * Design. Every stage is kept in a row-major [max_slots][count] work buffer
 * whose row layout already is model-spec.md's (the spectral mask is never
 * permuted, cpu_masks.c), so reading is one bounded copy.
 *
 * Thread context: the engine's thread, between steps.
 */
#include <string.h>

#include "cpu_backend.h"
#include "cpu_context.h"

static const char *const stage_names[DEMIX_CPU_STAGE_COUNT] = {
    "spec_feat", "spec", "basis",     "wave",      "s1",       "w1",      "fused",
    "s2",        "w2",   "spec_mask", "wave_mask", "spec_out", "wave_out"};

const char *demix__cpu_stage_name(demix_cpu_stage stage)
{
    if ((int)stage < 0 || stage >= DEMIX_CPU_STAGE_COUNT)
        return "unknown";
    return stage_names[stage];
}

int demix__cpu_read_stage(void *vctx, demix_cpu_stage stage, int row,
                          float *dst, size_t cap)
{
    demix_cpu_context *x = vctx;
    if (!x || (int)stage < 0 || stage >= DEMIX_CPU_STAGE_COUNT || row < 0 ||
        row >= x->last_rows)
        return DEMIX_EARG;
    size_t TCW = (size_t)x->T * x->CW;
    const float *base = NULL;
    size_t count = 0;
    switch (stage) {
    case DEMIX_CPU_STAGE_SPEC_FEAT: base = x->spec_feat, count = x->S; break;
    case DEMIX_CPU_STAGE_SPEC: base = x->spec, count = x->D; break;
    case DEMIX_CPU_STAGE_BASIS: base = x->basis, count = x->NB; break;
    case DEMIX_CPU_STAGE_WAVE: base = x->wave, count = x->D; break;
    case DEMIX_CPU_STAGE_S1: base = x->s1, count = x->D; break;
    case DEMIX_CPU_STAGE_W1: base = x->w1, count = x->D; break;
    case DEMIX_CPU_STAGE_FUSED: base = x->fused, count = x->DF; break;
    case DEMIX_CPU_STAGE_S2: base = x->s2, count = x->D; break;
    case DEMIX_CPU_STAGE_W2: base = x->w2, count = x->D; break;
    case DEMIX_CPU_STAGE_SPEC_MASK:
        base = x->spec_mask, count = (size_t)x->T * x->S;
        break;
    case DEMIX_CPU_STAGE_WAVE_MASK:
        base = x->wave_mask, count = (size_t)x->T * x->NB;
        break;
    case DEMIX_CPU_STAGE_SPEC_OUT: base = x->spec_out, count = TCW; break;
    case DEMIX_CPU_STAGE_WAVE_OUT: base = x->wave_out, count = TCW; break;
    default: return DEMIX_EARG;
    }
    if (cap < count)
        return DEMIX_ENOSPACE;
    if (!dst)
        return DEMIX_EARG;
    memcpy(dst, base + (size_t)row * count, count * sizeof *dst);
    return (int)count;
}
