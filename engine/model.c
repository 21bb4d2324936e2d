/*
 * model.c - the HS-TasNet model loader: a safetensors file (model-spec.md)
 * -> an immutable demix_model.
 *
 * Design. safetensors.c proves the container sound (header, offsets, sizes,
 * overlaps); this file proves it is an HS-TasNet model:
 *   1. infer the hyper-parameters from four tensors (D from
 *      spec_encode.1.weight rows, NB, C and W from conv_encode.weight,
 *      small from the absence of pre_spec_branch.weight_ih_l1, T from
 *      to_waveform_masks.1.weight rows / NB) and read the metadata
 *      (sample_rate, sources, name, license);
 *   2. walk the tensor table of demix__model_tensors() over a shape-only
 *      model and check every tensor exists with exactly its shape and a
 *      float dtype, BEFORE allocating: the allocation is then bounded by the
 *      bytes the file really holds, so a tiny hostile header cannot ask for
 *      gigabytes;
 *   3. allocate (demix__model_alloc), widen every tensor to float32 and
 *      refuse non-finite weights.
 * Window tensors and unknown extra tensors are ignored (model-spec.md).
 * Errors: DEMIX_EIO when the path cannot be read, DEMIX_EFORMAT for anything
 * about the content (the message names the tensor or field), DEMIX_ENOMEM.
 *
 * Thread context: any thread; a loaded model is immutable.
 */
#include "model_impl.h"
#include "safetensors.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest model file accepted: 4 GiB (the default model is ~200 MB). */
#define DEMIX_MODEL_MAX_FILE_BYTES ((uint64_t)4 << 30)

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, d ? ", " : "",
                              shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/* A tensor that must exist with ndim dims (what stands for in the text). */
static const demix_st_tensor *need(const demix_st_file *f, const char *name,
                                   int ndim, const char *what, char *err,
                                   size_t cap)
{
    const demix_st_tensor *t = demix_st_find(f, name);
    if (!t) {
        demix__set_err(err, cap, "missing tensor \"%s\"", name);
        return NULL;
    }
    if (t->ndim != ndim) {
        char s[DEMIX_ST_MAX_DIMS * 24 + 4];
        format_shape(t->shape, t->ndim, s, sizeof s);
        demix__set_err(err, cap,
                       "tensor \"%s\" has shape %s, expected %d dims %s", name,
                       s, ndim, what);
        return NULL;
    }
    return t;
}

/* ------------------------------------------------------------ metadata */

/* Copies text, cut at a UTF-8 character boundary when it does not fit. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int parse_sample_rate(const char *text, int *hz, char *err, size_t cap)
{
    size_t n = strlen(text);
    int ok = n >= 1 && n <= 6;
    long v = 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            ok = 0;
        else
            v = v * 10 + (text[i] - '0');
    }
    if (!ok || v < 8000 || v > 384000) {
        char shown[40];
        copy_text(shown, sizeof shown, text);
        demix__set_err(err, cap,
                       "metadata \"sample_rate\" is \"%s\": expected a decimal "
                       "integer between 8000 and 384000",
                       shown);
        return DEMIX_EFORMAT;
    }
    *hz = (int)v;
    return DEMIX_OK;
}

/* "drums,bass,vocals,other" -> cfg->source_names; the count must be T. */
static int parse_sources(const char *text, demix_model_config *cfg, char *err,
                         size_t cap)
{
    char names[DEMIX_MAX_SOURCES][DEMIX_SOURCE_NAME_BYTES];
    int count = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *b = p, *e = p + len;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t n = (size_t)(e - b);
        if (n == 0) {
            demix__set_err(err, cap,
                           "metadata \"sources\": name %d is empty (expected "
                           "comma-separated names such as \"drums,bass,vocals,"
                           "other\")",
                           count + 1);
            return DEMIX_EFORMAT;
        }
        if (n >= DEMIX_SOURCE_NAME_BYTES) {
            demix__set_err(
                err, cap,
                "metadata \"sources\": name %d is %zu bytes, longer than "
                "%d",
                count + 1, n, DEMIX_SOURCE_NAME_BYTES - 1);
            return DEMIX_EFORMAT;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)b[i];
            if (c < 0x20 || c == 0x7f) {
                demix__set_err(err, cap,
                               "metadata \"sources\": name %d holds a control "
                               "character",
                               count + 1);
                return DEMIX_EFORMAT;
            }
        }
        if (count == DEMIX_MAX_SOURCES) {
            demix__set_err(
                err, cap,
                "metadata \"sources\" names more than %d sources, but the "
                "model has T = %d",
                DEMIX_MAX_SOURCES, cfg->num_sources);
            return DEMIX_EFORMAT;
        }
        memcpy(names[count], b, n);
        names[count][n] = '\0';
        for (int j = 0; j < count; j++) {
            if (strcmp(names[j], names[count]) == 0) {
                demix__set_err(err, cap,
                               "metadata \"sources\" names \"%s\" twice",
                               names[count]);
                return DEMIX_EFORMAT;
            }
        }
        count++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (count != cfg->num_sources) {
        demix__set_err(
            err, cap,
            "metadata \"sources\" names %d sources, but the model has "
            "T = %d (to_waveform_masks.1.weight rows / NB)",
            count, cfg->num_sources);
        return DEMIX_EFORMAT;
    }
    for (int t = 0; t < count; t++)
        memcpy(cfg->source_names[t], names[t], DEMIX_SOURCE_NAME_BYTES);
    return DEMIX_OK;
}

/* ------------------------------------------------------------ config */

static int infer_config(const demix_st_file *f, demix_model_config *cfg,
                        char *err, size_t cap)
{
    memset(cfg, 0, sizeof *cfg);

    const demix_st_tensor *se =
        need(f, "spec_encode.1.weight", 2, "(D, S)", err, cap);
    if (!se)
        return DEMIX_EFORMAT;
    if (se->shape[0] < 1 || se->shape[0] > 8192) {
        demix__set_err(err, cap,
                       "tensor \"spec_encode.1.weight\" has %" PRId64
                       " rows: the hidden size D must be between 1 and 8192",
                       se->shape[0]);
        return DEMIX_EFORMAT;
    }
    cfg->dim = (int)se->shape[0];

    const demix_st_tensor *ce =
        need(f, "conv_encode.weight", 3, "(2NB, C, W)", err, cap);
    if (!ce)
        return DEMIX_EFORMAT;
    if (ce->shape[0] < 2 || ce->shape[0] % 2 || ce->shape[0] > 2 * 16384) {
        demix__set_err(
            err, cap,
            "tensor \"conv_encode.weight\" has %" PRId64
            " rows: expected an even number 2NB with NB between 1 and "
            "16384",
            ce->shape[0]);
        return DEMIX_EFORMAT;
    }
    cfg->num_basis = (int)(ce->shape[0] / 2);
    if (ce->shape[1] < 1 || ce->shape[1] > 2) {
        demix__set_err(err, cap,
                       "tensor \"conv_encode.weight\" has %" PRId64
                       " channels (dim 1): expected C = 1 or 2",
                       ce->shape[1]);
        return DEMIX_EFORMAT;
    }
    cfg->channels = (int)ce->shape[1];
    if (ce->shape[2] < 4 || ce->shape[2] > 16384 || ce->shape[2] % 2) {
        demix__set_err(err, cap,
                       "tensor \"conv_encode.weight\" has a window of %" PRId64
                       " taps (dim 2): expected an even W between 4 and 16384",
                       ce->shape[2]);
        return DEMIX_EFORMAT;
    }
    cfg->window_samples = (int)ce->shape[2];
    cfg->small = demix_st_find(f, "pre_spec_branch.weight_ih_l1") == NULL;

    const demix_st_tensor *wm =
        need(f, "to_waveform_masks.1.weight", 2, "(T*NB, D)", err, cap);
    if (!wm)
        return DEMIX_EFORMAT;
    int64_t nb = cfg->num_basis;
    if (wm->shape[0] < nb || wm->shape[0] % nb ||
        wm->shape[0] / nb > DEMIX_MAX_SOURCES) {
        demix__set_err(
            err, cap,
            "tensor \"to_waveform_masks.1.weight\" has %" PRId64
            " rows: expected T*NB with NB = %d and T between 1 and %d",
            wm->shape[0], cfg->num_basis, DEMIX_MAX_SOURCES);
        return DEMIX_EFORMAT;
    }
    cfg->num_sources = (int)(wm->shape[0] / nb);

    const char *v = demix_st_meta(f, "sample_rate");
    cfg->sample_rate_hz = 44100;
    if (v && parse_sample_rate(v, &cfg->sample_rate_hz, err, cap))
        return DEMIX_EFORMAT;
    v = demix_st_meta(f, "sources");
    if (v && parse_sources(v, cfg, err, cap))
        return DEMIX_EFORMAT;
    v = demix_st_meta(f, "name");
    if (v)
        copy_text(cfg->name, sizeof cfg->name, v);
    v = demix_st_meta(f, "license");
    if (v)
        copy_text(cfg->license, sizeof cfg->license, v);

    char why[256];
    if (demix__model_config_finish(cfg, why, sizeof why)) {
        demix__set_err(err, cap, "inferred model size is out of range: %s",
                       why);
        return DEMIX_EFORMAT;
    }
    return DEMIX_OK;
}

/* The tensor table of a model of this config, names and shapes only (data
 * pointers NULL). The LSTM sizes follow demix__model_alloc(). */
static int expected_tensors(const demix_model_config *cfg,
                            demix_tensor_ref *refs)
{
    demix_model shape_only;
    memset(&shape_only, 0, sizeof shape_only);
    shape_only.config = *cfg;
    for (int b = 0; b < DEMIX_BRANCH_COUNT; b++) {
        int fusion = b == DEMIX_BRANCH_FUSION;
        shape_only.lstm[b].input_size = fusion ? cfg->fusion_dim : cfg->dim;
        shape_only.lstm[b].hidden_size = fusion ? cfg->fusion_dim : cfg->dim;
        shape_only.lstm[b].layers = cfg->lstm_layers;
    }
    int n = demix__model_tensors(&shape_only, refs, DEMIX_MODEL_MAX_TENSORS);
    DEMIX_ASSERT(n <= DEMIX_MODEL_MAX_TENSORS);
    return n;
}

static int check_tensor(const demix_st_file *f, const demix_tensor_ref *r,
                        const demix_st_tensor **found, char *err, size_t cap)
{
    const demix_st_tensor *t = demix_st_find(f, r->name);
    if (!t) {
        demix__set_err(err, cap, "missing tensor \"%s\"", r->name);
        return DEMIX_EFORMAT;
    }
    int same = t->ndim == r->ndim;
    for (int d = 0; same && d < r->ndim; d++)
        same = t->shape[d] == r->shape[d];
    if (!same) {
        char have[DEMIX_ST_MAX_DIMS * 24 + 4], want[3 * 24 + 4];
        format_shape(t->shape, t->ndim, have, sizeof have);
        format_shape(r->shape, r->ndim, want, sizeof want);
        demix__set_err(err, cap, "tensor \"%s\" has shape %s, expected %s",
                       r->name, have, want);
        return DEMIX_EFORMAT;
    }
    if (t->dtype != DEMIX_ST_F32 && t->dtype != DEMIX_ST_F16 &&
        t->dtype != DEMIX_ST_BF16) {
        demix__set_err(err, cap,
                       "tensor \"%s\" has dtype %s, expected F32, F16 or BF16",
                       r->name, t->dtype_name);
        return DEMIX_EFORMAT;
    }
    *found = t;
    return DEMIX_OK;
}

static int build_model(const demix_st_file *f, demix_model **out, char *err,
                       size_t cap)
{
    demix_model_config cfg;
    int rc = infer_config(f, &cfg, err, cap);
    if (rc)
        return rc;

    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    const demix_st_tensor *found[DEMIX_MODEL_MAX_TENSORS];
    int n = expected_tensors(&cfg, refs);
    int has_f16 = 0, has_bf16 = 0;
    for (int i = 0; i < n; i++) {
        rc = check_tensor(f, &refs[i], &found[i], err, cap);
        if (rc)
            return rc;
        has_f16 |= found[i]->dtype == DEMIX_ST_F16;
        has_bf16 |= found[i]->dtype == DEMIX_ST_BF16;
    }

    demix_model *m;
    rc = demix__model_alloc(&cfg, &m);
    if (rc) {
        demix__set_err(err, cap,
                       "out of memory for a model of %" PRId64 " parameters",
                       cfg.parameter_count);
        return rc;
    }
    int m_n = demix__model_tensors(m, refs, DEMIX_MODEL_MAX_TENSORS);
    DEMIX_ASSERT(m_n == n);
    for (int i = 0; i < n; i++) {
        size_t count = (size_t)found[i]->elements;
        rc = demix_st_read_f32(found[i], refs[i].data, count, err, cap);
        if (rc) {
            demix_model_destroy(m);
            return rc;
        }
        for (size_t j = 0; j < count; j++) {
            float x = refs[i].data[j];
            if (!isfinite(x)) {
                demix__set_err(err, cap,
                               "tensor \"%s\" holds a non-finite value (%s) at "
                               "index %zu",
                               refs[i].name,
                               isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"), j);
                demix_model_destroy(m);
                return DEMIX_EFORMAT;
            }
        }
    }
    /* The narrowest stored type: BF16 keeps fewer mantissa bits than F16. */
    m->stored_dtype = has_bf16  ? DEMIX_DTYPE_BF16
                      : has_f16 ? DEMIX_DTYPE_F16
                                : DEMIX_DTYPE_F32;
    *out = m;
    return DEMIX_OK;
}

int demix_model_load_memory(const void *data, size_t size, demix_model **out,
                            char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!out) {
        demix__set_err(err, err_cap, "model load: no output pointer");
        return DEMIX_EARG;
    }
    *out = NULL;
    if (!data && size) {
        demix__set_err(err, err_cap, "model load: no data for %zu bytes", size);
        return DEMIX_EARG;
    }
    if ((uint64_t)size > DEMIX_MODEL_MAX_FILE_BYTES) {
        demix__set_err(
            err, err_cap,
            "model file is %zu bytes, more than the limit of %" PRIu64, size,
            DEMIX_MODEL_MAX_FILE_BYTES);
        return DEMIX_EFORMAT;
    }
    static const unsigned char empty[1];
    demix_st_file f;
    int rc = demix_st_parse(data ? data : empty, size, &f, err, err_cap);
    if (rc)
        return rc;
    rc = build_model(&f, out, err, err_cap);
    demix_st_free(&f);
    return rc;
}

int demix_model_load(const char *path, demix_model **out, char *err,
                     size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!out) {
        demix__set_err(err, err_cap, "model load: no output pointer");
        return DEMIX_EARG;
    }
    *out = NULL;
    if (!path) {
        demix__set_err(err, err_cap, "model load: no path");
        return DEMIX_EARG;
    }
    unsigned char *data;
    size_t size;
    size_t cap_bytes = (size_t)-1;
    if ((uint64_t)cap_bytes > DEMIX_MODEL_MAX_FILE_BYTES)
        cap_bytes = (size_t)DEMIX_MODEL_MAX_FILE_BYTES;
    int rc = demix_read_file(path, cap_bytes, &data, &size, err, err_cap);
    if (rc)
        return rc;
    char detail[1024];
    rc = demix_model_load_memory(data, size, out, detail, sizeof detail);
    free(data);
    if (rc)
        demix__set_err(err, err_cap, "%s: %s", path, detail);
    return rc;
}
