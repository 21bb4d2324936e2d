/*
 * engine_stages.h - the intermediate stages of the network, shared by the
 * backends (private to engine/, cpu/ and gpu/; never for drivers). The CPU
 * backend defines the stages' order and layout (model-spec.md) and its
 * tests read them against the PyTorch reference (cpu_backend.h); the CUDA
 * backend copies the same stages out in the same layout (cuda_backend.h),
 * so the two engines can be compared stage by stage. The names keep the
 * CPU prefix: the CPU engine is the reference the stages are defined by.
 *
 * Thread context: declarations only.
 */
#ifndef DEMIX_ENGINE_STAGES_H
#define DEMIX_ENGINE_STAGES_H

typedef enum demix_cpu_stage {
    DEMIX_CPU_STAGE_SPEC_FEAT, /* [S]   rfft of the windowed frame, (ch, bin, re/im) */
    DEMIX_CPU_STAGE_SPEC,      /* [D]   spec_encode output */
    DEMIX_CPU_STAGE_BASIS,     /* [NB]  relu(a) * sigmoid(g) */
    DEMIX_CPU_STAGE_WAVE,      /* [D]   basis_to_embed output */
    DEMIX_CPU_STAGE_S1,        /* [D]   R_pre_spec(spec) */
    DEMIX_CPU_STAGE_W1,        /* [D]   R_pre_waveform(wave) */
    DEMIX_CPU_STAGE_FUSED,     /* [DF]  v = R_fusion(u) */
    DEMIX_CPU_STAGE_S2,        /* [D]   R_post_spec(vs + spec) */
    DEMIX_CPU_STAGE_W2,        /* [D]   R_post_waveform(vw + wave) */
    DEMIX_CPU_STAGE_SPEC_MASK, /* [T*S] (ch, bin, re/im, source), source fastest */
    DEMIX_CPU_STAGE_WAVE_MASK, /* [T*NB] (source, basis), basis fastest */
    DEMIX_CPU_STAGE_SPEC_OUT,  /* [T][C][W] y_t = w * irfft(Y_t), before overlap-add */
    DEMIX_CPU_STAGE_WAVE_OUT,  /* [T][C][W] z_t, windowed decoder output */
    DEMIX_CPU_STAGE_COUNT
} demix_cpu_stage;

#endif /* DEMIX_ENGINE_STAGES_H */
