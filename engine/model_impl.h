/*
 * model_impl.h - the inside of demix_model, shared by the loader, the random
 * model maker and the backends (never by drivers such as server/ or tools/).
 *
 * All tensors are float32, row-major, in one owned allocation. Shapes follow
 * model-spec.md with PyTorch's (out, in) convention, so a linear layer is
 * y = W x + b with W of shape [out][in]:
 *   spec_encode_w      [D][S]          spec_encode_b   [D]
 *   conv_encode_w      [2NB][C*W]      conv_encode_b   [2NB]  (a rows, then g)
 *   basis_to_embed_w   [D][NB]         basis_to_embed_b [D]
 *   lstm.w_ih[k]       [4*hid][in]     lstm.w_hh[k]    [4*hid][hid]
 *   lstm.b_ih[k], b_hh[k] [4*hid]      gate order i, f, g, o
 *   spec_mask_gain     [D]             spec_mask_w [T*S][D], spec_mask_b [T*S]
 *                                      (rows ordered channel, bin, re/im, source)
 *   wave_mask_gain     [D]             wave_mask_w [T*NB][D], wave_mask_b [T*NB]
 *                                      (rows ordered source, basis)
 *   conv_decode_w      [NB][C*W]
 *   window             [W]  periodic Hann sin^2(pi n / W), always recomputed
 *
 * Thread context: immutable after creation; readable from any thread.
 */
#ifndef DEMIX_MODEL_IMPL_H
#define DEMIX_MODEL_IMPL_H

#include "engine.h"

#define DEMIX_LSTM_MAX_LAYERS 2
#define DEMIX_PI 3.14159265358979323846

typedef struct demix_lstm_weights {
    int input_size;  /* width of x for layer 0 */
    int hidden_size; /* width of h, c (and x for layers >= 1) */
    int layers;
    float *w_ih[DEMIX_LSTM_MAX_LAYERS];
    float *w_hh[DEMIX_LSTM_MAX_LAYERS];
    float *b_ih[DEMIX_LSTM_MAX_LAYERS];
    float *b_hh[DEMIX_LSTM_MAX_LAYERS];
} demix_lstm_weights;

/* The five recurrent branches, in the order of the state layout. */
enum demix_branch {
    DEMIX_BRANCH_PRE_SPEC = 0,
    DEMIX_BRANCH_PRE_WAVE,
    DEMIX_BRANCH_FUSION,
    DEMIX_BRANCH_POST_SPEC,
    DEMIX_BRANCH_POST_WAVE,
    DEMIX_BRANCH_COUNT
};

struct demix_model {
    demix_model_config config;
    demix_dtype stored_dtype;

    float *spec_encode_w, *spec_encode_b;
    float *conv_encode_w, *conv_encode_b;
    float *basis_to_embed_w, *basis_to_embed_b;
    demix_lstm_weights lstm[DEMIX_BRANCH_COUNT];
    float *spec_mask_gain, *spec_mask_w, *spec_mask_b;
    float *wave_mask_gain, *wave_mask_w, *wave_mask_b;
    float *conv_decode_w;
    float *window;

    float *storage;       /* owns every tensor above */
    size_t storage_floats;
};

/* Fill the derived fields of cfg (lstm_layers, fusion_dim, hop_samples,
 * bins, spec_features, parameter_count) from dim, num_basis, small,
 * window_samples, channels and num_sources. Returns DEMIX_EARG, with a
 * sentence in err, when those are out of range. */
int demix__model_config_finish(demix_model_config *cfg, char *err,
                               size_t err_cap);

/* Allocate a zeroed model for a finished config and point every tensor
 * field into its storage; the window is filled in. */
int demix__model_alloc(const demix_model_config *cfg, demix_model **out);

/* The table of named tensors of a model (the stft and conv_decode windows
 * are not in it: they are recomputed, never read): the loader walks it to
 * find and check each tensor, tests walk it to edit weights. */
typedef struct demix_tensor_ref {
    char name[64];
    float *data;
    int ndim;
    int64_t shape[3];
} demix_tensor_ref;

/* Write at most cap entries into refs; returns the number of tensors. */
int demix__model_tensors(demix_model *model, demix_tensor_ref *refs, int cap);

#define DEMIX_MODEL_MAX_TENSORS 64

/* Write a model as a safetensors file (model-spec.md names, tensors stored
 * as dtype, metadata sample_rate, sources, name, license) so it loads back
 * with demix_model_load(). For tests and tools. DEMIX_EIO names the path. */
int demix__model_save(const demix_model *model, const char *path,
                      demix_dtype dtype, char *err, size_t err_cap);

#endif /* DEMIX_MODEL_IMPL_H */
