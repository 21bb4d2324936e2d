/*
 * safetensors.h - a defensive reader of the safetensors container: an 8-byte
 * little-endian header length N, N bytes of JSON, then the raw tensor data.
 *
 * The model loader (model.c) builds on it, and so do the golden tests, which
 * keep their reference tensors in the same format. Every check the
 * safetensors authors advise against hostile files is made here: the header
 * length is capped (DEMIX_ST_MAX_HEADER_BYTES) and must fit in the file, the
 * JSON must parse to an object, every entry needs a known dtype, a shape of
 * at most DEMIX_ST_MAX_DIMS non-negative dims whose byte size matches its
 * data_offsets [begin, end), the offsets must lie inside the data section,
 * and no two tensors may overlap. Errors name the tensor or field.
 *
 * Usage:
 *     demix_st_file f;
 *     if (demix_st_parse(buf, size, &f, err, sizeof err)) fail(err);
 *     const demix_st_tensor *t = demix_st_find(&f, "spec_encode.1.weight");
 *     demix_st_read_f32(t, dst, n, err, sizeof err);   // widens F16/BF16
 *     demix_st_free(&f);
 *
 * Ownership: the parsed file points into buf (not copied): buf must outlive
 * it. demix_st_free releases what parse allocated.
 * Thread context: any thread; no shared state.
 */
#ifndef DEMIX_SAFETENSORS_H
#define DEMIX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

#define DEMIX_ST_MAX_HEADER_BYTES (16u << 20) /* 16 MiB of JSON */
#define DEMIX_ST_MAX_DIMS 8
#define DEMIX_ST_MAX_TENSORS 4096
#define DEMIX_ST_NAME_BYTES 128

typedef enum demix_st_dtype {
    DEMIX_ST_F32,
    DEMIX_ST_F16,
    DEMIX_ST_BF16,
    DEMIX_ST_OTHER, /* a valid safetensors dtype we cannot widen (I64, ...) */
} demix_st_dtype;

typedef struct demix_st_tensor {
    char name[DEMIX_ST_NAME_BYTES];
    demix_st_dtype dtype;
    char dtype_name[16]; /* as written in the file: "F32", "I64", ... */
    int ndim;
    int64_t shape[DEMIX_ST_MAX_DIMS];
    int64_t elements;
    const unsigned char *data; /* into the caller's buffer */
    size_t bytes;
} demix_st_tensor;

typedef struct demix_st_file {
    demix_st_tensor *tensors;
    int count;
    /* __metadata__ string pairs, NULL-terminated arrays (may be empty). */
    char **meta_keys;
    char **meta_values;
    int meta_count;
} demix_st_file;

DEMIX_WARN_UNUSED int demix_st_parse(const void *buf, size_t size,
                                     demix_st_file *out, char *err,
                                     size_t err_cap);
void demix_st_free(demix_st_file *f);

const demix_st_tensor *demix_st_find(const demix_st_file *f, const char *name);
/* A metadata value, or NULL when the key is absent. */
const char *demix_st_meta(const demix_st_file *f, const char *key);

/* Copy a tensor into dst as float32 (F32 copied, F16/BF16 widened). n must
 * equal the tensor's element count: DEMIX_EFORMAT otherwise, or for a dtype
 * that is not F32/F16/BF16. */
DEMIX_WARN_UNUSED int demix_st_read_f32(const demix_st_tensor *t, float *dst,
                                        size_t n, char *err, size_t err_cap);

/* Read a whole file into memory (malloc'd; free() it). DEMIX_EIO with the
 * path and the system's reason in err. max_bytes caps the size read. */
DEMIX_WARN_UNUSED int demix_read_file(const char *path, size_t max_bytes,
                                      unsigned char **data, size_t *size,
                                      char *err, size_t err_cap);

#endif /* DEMIX_SAFETENSORS_H */
