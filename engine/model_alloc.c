/*
 * model_alloc.c - model configuration, storage layout, the tensor table and
 * random models.
 *
 * The loader (model.c) and demix_model_create_random() both start from a
 * finished demix_model_config, allocate with demix__model_alloc() and then
 * fill the tensors named by demix__model_tensors(): one place knows the
 * names and shapes of model-spec.md.
 *
 * Thread context: any thread; no shared state.
 */
#include "model_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const default_sources[] = {"drums", "bass", "vocals",
                                              "other"};

static const char *const branch_names[DEMIX_BRANCH_COUNT] = {
    "pre_spec_branch", "pre_waveform_branch", "fusion_branch",
    "post_spec_branch", "post_waveform_branch"};

int demix__model_config_finish(demix_model_config *cfg, char *err,
                               size_t err_cap)
{
    if (cfg->dim < 1 || cfg->dim > 8192) {
        demix__set_err(err, err_cap,
                       "hidden size D must be between 1 and 8192");
        return DEMIX_EARG;
    }
    if (cfg->num_basis < 1 || cfg->num_basis > 16384) {
        demix__set_err(err, err_cap,
                       "basis count NB must be between 1 and 16384");
        return DEMIX_EARG;
    }
    if (cfg->window_samples < 4 || cfg->window_samples > 16384 ||
        cfg->window_samples % 2) {
        demix__set_err(err, err_cap,
                       "window W must be even, between 4 and 16384");
        return DEMIX_EARG;
    }
    if (cfg->channels < 1 || cfg->channels > 2) {
        demix__set_err(err, err_cap, "channels C must be 1 or 2");
        return DEMIX_EARG;
    }
    if (cfg->num_sources < 1 || cfg->num_sources > DEMIX_MAX_SOURCES) {
        demix__set_err(err, err_cap, "source count T must be between 1 and 8");
        return DEMIX_EARG;
    }
    if (cfg->sample_rate_hz <= 0)
        cfg->sample_rate_hz = 44100;
    cfg->small = cfg->small ? 1 : 0;
    cfg->lstm_layers = cfg->small ? 1 : 2;
    cfg->fusion_dim = cfg->small ? cfg->dim : 2 * cfg->dim;
    cfg->hop_samples = cfg->window_samples / 2;
    cfg->bins = cfg->window_samples / 2 + 1;
    cfg->spec_features = cfg->channels * cfg->bins * 2;
    for (int t = 0; t < cfg->num_sources; t++) {
        if (cfg->source_names[t][0] == '\0') {
            if (t < 4)
                snprintf(cfg->source_names[t], DEMIX_SOURCE_NAME_BYTES, "%s",
                         default_sources[t]);
            else
                snprintf(cfg->source_names[t], DEMIX_SOURCE_NAME_BYTES,
                         "source%d", t);
        }
    }

    int64_t D = cfg->dim, NB = cfg->num_basis, S = cfg->spec_features;
    int64_t CW = (int64_t)cfg->channels * cfg->window_samples;
    int64_t T = cfg->num_sources, DF = cfg->fusion_dim, L = cfg->lstm_layers;
    int64_t lstm_d = L * (4 * D * D * 2 + 8 * D);
    int64_t lstm_f = L * (4 * DF * DF * 2 + 8 * DF);
    cfg->parameter_count = D * S + D + 2 * NB * CW + 2 * NB + D * NB + D +
                           4 * lstm_d + lstm_f + D + T * S * D + T * S + D +
                           T * NB * D + T * NB + NB * CW;
    return DEMIX_OK;
}

/* Every tensor, in storage order. The loader reads exactly these names. */
int demix__model_tensors(demix_model *m, demix_tensor_ref *refs, int cap)
{
    const demix_model_config *c = &m->config;
    int64_t D = c->dim, NB = c->num_basis, S = c->spec_features;
    int64_t C = c->channels, W = c->window_samples, T = c->num_sources;
    int n = 0;

#define ADD(nm, ptr, nd, s0, s1, s2)                                           \
    do {                                                                       \
        if (n < cap) {                                                         \
            snprintf(refs[n].name, sizeof refs[n].name, "%s", nm);             \
            refs[n].data = (ptr);                                              \
            refs[n].ndim = (nd);                                               \
            refs[n].shape[0] = (s0);                                           \
            refs[n].shape[1] = (s1);                                           \
            refs[n].shape[2] = (s2);                                           \
        }                                                                      \
        n++;                                                                   \
    } while (0)

    ADD("spec_encode.1.weight", m->spec_encode_w, 2, D, S, 0);
    ADD("spec_encode.1.bias", m->spec_encode_b, 1, D, 0, 0);
    ADD("conv_encode.weight", m->conv_encode_w, 3, 2 * NB, C, W);
    ADD("conv_encode.bias", m->conv_encode_b, 1, 2 * NB, 0, 0);
    ADD("basis_to_embed.0.weight", m->basis_to_embed_w, 3, D, NB, 1);
    ADD("basis_to_embed.0.bias", m->basis_to_embed_b, 1, D, 0, 0);
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        demix_lstm_weights *l = &m->lstm[b];
        for (int k = 0; k < l->layers; k++) {
            char nm[64];
            int64_t in = k == 0 ? l->input_size : l->hidden_size;
            int64_t hid = l->hidden_size;
            snprintf(nm, sizeof nm, "%s.weight_ih_l%d", branch_names[b], k);
            ADD(nm, l->w_ih[k], 2, 4 * hid, in, 0);
            snprintf(nm, sizeof nm, "%s.weight_hh_l%d", branch_names[b], k);
            ADD(nm, l->w_hh[k], 2, 4 * hid, hid, 0);
            snprintf(nm, sizeof nm, "%s.bias_ih_l%d", branch_names[b], k);
            ADD(nm, l->b_ih[k], 1, 4 * hid, 0, 0);
            snprintf(nm, sizeof nm, "%s.bias_hh_l%d", branch_names[b], k);
            ADD(nm, l->b_hh[k], 1, 4 * hid, 0, 0);
        }
    }
    ADD("to_spec_masks.0.weight", m->spec_mask_gain, 1, D, 0, 0);
    ADD("to_spec_masks.1.weight", m->spec_mask_w, 2, T * S, D, 0);
    ADD("to_spec_masks.1.bias", m->spec_mask_b, 1, T * S, 0, 0);
    ADD("to_waveform_masks.0.weight", m->wave_mask_gain, 1, D, 0, 0);
    ADD("to_waveform_masks.1.weight", m->wave_mask_w, 2, T * NB, D, 0);
    ADD("to_waveform_masks.1.bias", m->wave_mask_b, 1, T * NB, 0, 0);
    ADD("conv_decode.weight", m->conv_decode_w, 3, NB, C, W);
#undef ADD
    return n;
}

static int64_t ref_elements(const demix_tensor_ref *r)
{
    int64_t e = 1;
    for (int d = 0; d < r->ndim; d++)
        e *= r->shape[d];
    return e;
}

/* One block holds every tensor, laid out in the order of
 * demix__model_tensors(), then the window. */
int demix__model_alloc(const demix_model_config *cfg, demix_model **out)
{
    *out = NULL;
    demix_model *m = calloc(1, sizeof *m);
    if (!m)
        return DEMIX_ENOMEM;
    m->config = *cfg;
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        int fusion = b == DEMIX_BRANCH_FUSION;
        m->lstm[b].input_size = fusion ? cfg->fusion_dim : cfg->dim;
        m->lstm[b].hidden_size = fusion ? cfg->fusion_dim : cfg->dim;
        m->lstm[b].layers = cfg->lstm_layers;
    }

    /* With the pointers still NULL the table gives the sizes. */
    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    int n = demix__model_tensors(m, refs, DEMIX_MODEL_MAX_TENSORS);
    DEMIX_ASSERT(n <= DEMIX_MODEL_MAX_TENSORS);
    size_t total = (size_t)cfg->window_samples;
    for (int i = 0; i < n; i++)
        total += (size_t)ref_elements(&refs[i]);
    m->storage = calloc(total, sizeof(float));
    if (!m->storage) {
        free(m);
        return DEMIX_ENOMEM;
    }
    m->storage_floats = total;

    int64_t D = cfg->dim, NB = cfg->num_basis, S = cfg->spec_features;
    int64_t CW = (int64_t)cfg->channels * cfg->window_samples;
    int64_t T = cfg->num_sources;
    float *p = m->storage;
    m->spec_encode_w = p, p += D * S;
    m->spec_encode_b = p, p += D;
    m->conv_encode_w = p, p += 2 * NB * CW;
    m->conv_encode_b = p, p += 2 * NB;
    m->basis_to_embed_w = p, p += D * NB;
    m->basis_to_embed_b = p, p += D;
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        demix_lstm_weights *l = &m->lstm[b];
        for (int k = 0; k < l->layers; k++) {
            int64_t in = k == 0 ? l->input_size : l->hidden_size;
            int64_t hid = l->hidden_size;
            l->w_ih[k] = p, p += 4 * hid * in;
            l->w_hh[k] = p, p += 4 * hid * hid;
            l->b_ih[k] = p, p += 4 * hid;
            l->b_hh[k] = p, p += 4 * hid;
        }
    }
    m->spec_mask_gain = p, p += D;
    m->spec_mask_w = p, p += T * S * D;
    m->spec_mask_b = p, p += T * S;
    m->wave_mask_gain = p, p += D;
    m->wave_mask_w = p, p += T * NB * D;
    m->wave_mask_b = p, p += T * NB;
    m->conv_decode_w = p, p += NB * CW;
    m->window = p, p += cfg->window_samples;
    DEMIX_ASSERT((size_t)(p - m->storage) == total);

    /* Periodic Hann: w[n] = sin^2(pi n / W). */
    for (int i = 0; i < cfg->window_samples; i++) {
        double s = sin(DEMIX_PI * (double)i / cfg->window_samples);
        m->window[i] = (float)(s * s);
    }
    *out = m;
    return DEMIX_OK;
}

/* splitmix64: small, seedable, identical on every platform. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *state, float bound)
{
    double u = (double)(next_random(state) >> 11) * (1.0 / 9007199254740992.0);
    return (float)((2.0 * u - 1.0) * bound);
}

/* PyTorch's default scale: uniform(+-1/sqrt(fan_in)) for linear and conv
 * layers, uniform(+-1/sqrt(hidden)) for LSTMs, 1 for RMSNorm gains. */
int demix_model_create_random(int dim, int num_basis, int small,
                              int sample_rate_hz, uint64_t seed,
                              demix_model **out)
{
    if (!out)
        return DEMIX_EARG;
    *out = NULL;
    demix_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dim = dim;
    cfg.num_basis = num_basis;
    cfg.small = small;
    cfg.window_samples = 1024;
    cfg.channels = 2;
    cfg.num_sources = 4;
    cfg.sample_rate_hz = sample_rate_hz;
    snprintf(cfg.name, sizeof cfg.name, "random-D%d-NB%d%s", dim, num_basis,
             small ? "-small" : "");
    int rc = demix__model_config_finish(&cfg, NULL, 0);
    if (rc)
        return rc;
    demix_model *m;
    rc = demix__model_alloc(&cfg, &m);
    if (rc)
        return rc;

    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    int n = demix__model_tensors(m, refs, DEMIX_MODEL_MAX_TENSORS);
    uint64_t state = seed;
    for (int i = 0; i < n; i++) {
        demix_tensor_ref *r = &refs[i];
        int64_t e = ref_elements(r);
        const char *nm = r->name;
        float bound;
        if (strstr(nm, "_masks.0.")) { /* RMSNorm gain */
            for (int64_t j = 0; j < e; j++)
                r->data[j] = 1.0f;
            continue;
        }
        if (strstr(nm, "_branch.")) {
            const char *branch_end = strchr(nm, '.');
            int fusion = strncmp(nm, "fusion_branch", (size_t)(branch_end - nm)) == 0;
            bound = 1.0f / sqrtf((float)(fusion ? cfg.fusion_dim : cfg.dim));
        } else if (strncmp(nm, "conv_decode", 11) == 0) {
            /* ConvTranspose1d: fan_in = out_channels * kernel. */
            bound = 1.0f / sqrtf((float)(cfg.channels * cfg.window_samples));
        } else {
            /* The fan-in is the product of a weight's trailing dims; a bias
             * shares its weight's bound (the tensor before it). */
            const demix_tensor_ref *w = r->ndim == 1 && i > 0 ? &refs[i - 1] : r;
            int64_t fan_in = 1;
            for (int d = 1; d < w->ndim; d++)
                fan_in *= w->shape[d];
            bound = 1.0f / sqrtf((float)fan_in);
        }
        for (int64_t j = 0; j < e; j++)
            r->data[j] = uniform(&state, bound);
    }
    m->stored_dtype = DEMIX_DTYPE_F32;
    *out = m;
    return DEMIX_OK;
}

void demix_model_destroy(demix_model *model)
{
    if (!model)
        return;
    free(model->storage);
    free(model);
}

const demix_model_config *demix_model_get_config(const demix_model *model)
{
    return model ? &model->config : NULL;
}
