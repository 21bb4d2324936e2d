/*
 * model_save.c - write a demix_model as a safetensors file that
 * demix_model_load() reads back (demix__model_save in model_impl.h).
 *
 * Design. The header JSON (built with cJSON: metadata strings are escaped
 * for us) lists the tensors of demix__model_tensors() in storage order with
 * consecutive data_offsets, then __metadata__ sample_rate, sources
 * (comma-joined), name and license. It is padded with spaces so the data
 * section starts 8-byte aligned, as the safetensors writers do. Tensor data
 * is converted and written in fixed-size chunks, little-endian whatever the
 * host: F32 as is, F16 and BF16 rounded to nearest, ties to even (F16
 * overflows to infinity past 65520, as IEEE rounding does; NaN stays NaN).
 * The window is not written: every loader recomputes it.
 *
 * Thread context: any thread; no shared state.
 */
#include "model_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAVE_CHUNK_FLOATS 16384

static uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

/* float -> IEEE half, round to nearest even, subnormals included. */
static uint16_t f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* >= 65520 rounds past 65504: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: a half subnormal or zero */
        uint32_t e = ax >> 23;
        if (e < 102) /* below 2^-25, half of the smallest subnormal */
            return sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* value / 2^-24 = m >> shift; 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++; /* may carry into the smallest normal: still right */
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3ffu);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* a carry into the exponent is the correct result */
    return (uint16_t)(sign | h);
}

/* float -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
static uint16_t f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static const char *dtype_name(demix_dtype d)
{
    return d == DEMIX_DTYPE_F16    ? "F16"
           : d == DEMIX_DTYPE_BF16 ? "BF16"
                                   : "F32";
}

static int64_t ref_elements(const demix_tensor_ref *r)
{
    int64_t e = 1;
    for (int d = 0; d < r->ndim; d++)
        e *= r->shape[d];
    return e;
}

/* The header JSON, unpadded; NULL when out of memory. */
static char *make_header(const demix_model *model, const demix_tensor_ref *refs,
                         int n, demix_dtype dtype)
{
    const demix_model_config *c = &model->config;
    int elem_bytes = dtype == DEMIX_DTYPE_F32 ? 4 : 2;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    int ok = root && meta;

    char text[DEMIX_MAX_SOURCES * DEMIX_SOURCE_NAME_BYTES + 16];
    snprintf(text, sizeof text, "%d", c->sample_rate_hz);
    ok = ok && cJSON_AddStringToObject(meta, "sample_rate", text);
    size_t o = 0;
    text[0] = '\0';
    for (int t = 0; t < c->num_sources && t < DEMIX_MAX_SOURCES; t++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s%.*s", t ? "," : "",
                              DEMIX_SOURCE_NAME_BYTES - 1, c->source_names[t]);
    ok = ok && cJSON_AddStringToObject(meta, "sources", text);
    if (c->name[0])
        ok = ok && cJSON_AddStringToObject(meta, "name", c->name);
    if (c->license[0])
        ok = ok && cJSON_AddStringToObject(meta, "license", c->license);

    int64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const demix_tensor_ref *r = &refs[i];
        int64_t bytes = ref_elements(r) * elem_bytes;
        cJSON *e = cJSON_AddObjectToObject(root, r->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = NULL;
        ok = e && shape &&
             cJSON_AddStringToObject(e, "dtype", dtype_name(dtype));
        for (int d = 0; ok && d < r->ndim; d++)
            ok = cJSON_AddItemToArray(shape,
                                      cJSON_CreateNumber((double)r->shape[d]));
        ok = ok && (offs = cJSON_AddArrayToObject(e, "data_offsets")) != NULL;
        ok = ok &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        ok = ok && cJSON_AddItemToArray(
                       offs, cJSON_CreateNumber((double)(offset + bytes)));
        offset += bytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

static int write_tensor(FILE *fp, const float *x, int64_t count,
                        demix_dtype dtype, unsigned char *buf)
{
    for (int64_t at = 0; at < count; at += SAVE_CHUNK_FLOATS) {
        int64_t k =
            count - at < SAVE_CHUNK_FLOATS ? count - at : SAVE_CHUNK_FLOATS;
        size_t o = 0;
        for (int64_t j = 0; j < k; j++) {
            float v = x[at + j];
            if (dtype == DEMIX_DTYPE_F32) {
                uint32_t b = f32_bits(v);
                buf[o++] = (unsigned char)b;
                buf[o++] = (unsigned char)(b >> 8);
                buf[o++] = (unsigned char)(b >> 16);
                buf[o++] = (unsigned char)(b >> 24);
            } else {
                uint16_t b =
                    dtype == DEMIX_DTYPE_F16 ? f32_to_f16(v) : f32_to_bf16(v);
                buf[o++] = (unsigned char)b;
                buf[o++] = (unsigned char)(b >> 8);
            }
        }
        if (fwrite(buf, 1, o, fp) != o)
            return -1;
    }
    return 0;
}

int demix__model_save(const demix_model *model, const char *path,
                      demix_dtype dtype, char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!model || !path) {
        demix__set_err(err, err_cap, "model save: model and path are required");
        return DEMIX_EARG;
    }
    if (dtype != DEMIX_DTYPE_F32 && dtype != DEMIX_DTYPE_F16 &&
        dtype != DEMIX_DTYPE_BF16) {
        demix__set_err(err, err_cap, "model save: unknown dtype %d",
                       (int)dtype);
        return DEMIX_EARG;
    }
    /* The table only reads the model's pointers; it takes a non-const
     * model because tests use it to edit weights. */
    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    int n = demix__model_tensors((demix_model *)model, refs,
                                 DEMIX_MODEL_MAX_TENSORS);
    DEMIX_ASSERT(n <= DEMIX_MODEL_MAX_TENSORS);

    char *json = make_header(model, refs, n, dtype);
    unsigned char *buf = malloc(SAVE_CHUNK_FLOATS * 4);
    if (!json || !buf) {
        free(json);
        free(buf);
        demix__set_err(err, err_cap, "model save: out of memory");
        return DEMIX_ENOMEM;
    }
    size_t json_bytes = strlen(json);
    size_t header_bytes = (json_bytes + 7) & ~(size_t)7;

    FILE *fp = fopen(path, "wb");
    if (!fp) {
        demix__set_err(err, err_cap, "%s: cannot create: %s", path,
                       strerror(errno));
        free(json);
        free(buf);
        return DEMIX_EIO;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
    int bad = fwrite(len, 1, 8, fp) != 8 ||
              fwrite(json, 1, json_bytes, fp) != json_bytes;
    for (size_t i = json_bytes; !bad && i < header_bytes; i++)
        bad = fputc(' ', fp) == EOF;
    for (int i = 0; !bad && i < n; i++)
        bad =
            write_tensor(fp, refs[i].data, ref_elements(&refs[i]), dtype, buf);
    int saved_errno = errno;
    if (fclose(fp) != 0 && !bad) {
        bad = 1;
        saved_errno = errno;
    }
    free(json);
    free(buf);
    if (bad) {
        demix__set_err(err, err_cap, "%s: write failed: %s", path,
                       strerror(saved_errno));
        remove(path);
        return DEMIX_EIO;
    }
    return DEMIX_OK;
}
