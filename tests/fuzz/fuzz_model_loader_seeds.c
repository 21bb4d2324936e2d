/*
 * fuzz_model_loader_seeds.c - writes the seed corpus of fuzz_model_loader into
 * a directory: tiny valid HS-TasNet models (W = 4 or 8, so a whole model is a
 * few kilobytes) in F32, F16 and BF16, full and small, one or two channels,
 * one to three sources, with and without metadata, plus a few bare
 * containers. Usage: fuzz_model_loader_seeds DIR
 */
#include <stdio.h>
#include <string.h>

#include "model_impl.h"

static int write_bytes(const char *dir, const char *name, const void *data,
                       size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "fuzz_model_loader_seeds: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

/* A container with the given JSON header and data_bytes of zeros. */
static int write_container(const char *dir, const char *name, const char *json,
                           size_t data_bytes)
{
    unsigned char buf[4096];
    size_t n = strlen(json);
    if (8 + n + data_bytes > sizeof buf)
        return 1;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0, data_bytes);
    return write_bytes(dir, name, buf, 8 + n + data_bytes);
}

static int write_model(const char *dir, int dim, int nb, int channels,
                       int window, int sources, int small, const char *names)
{
    demix_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dim = dim;
    cfg.num_basis = nb;
    cfg.channels = channels;
    cfg.window_samples = window;
    cfg.num_sources = sources;
    cfg.small = small;
    cfg.sample_rate_hz = 16000;
    if (names) {
        for (int t = 0; t < sources; t++)
            snprintf(cfg.source_names[t], DEMIX_SOURCE_NAME_BYTES, "%c%s",
                     names[t], "x");
        snprintf(cfg.name, sizeof cfg.name, "seed");
        snprintf(cfg.license, sizeof cfg.license, "CC0-1.0");
    }
    char err[256] = "out of memory";
    demix_model *m;
    if (demix__model_config_finish(&cfg, err, sizeof err) ||
        demix__model_alloc(&cfg, &m)) {
        fprintf(stderr, "fuzz_model_loader_seeds: %s\n", err);
        return 1;
    }
    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    int n = demix__model_tensors(m, refs, DEMIX_MODEL_MAX_TENSORS);
    float v = 0.25f;
    for (int i = 0; i < n; i++) {
        int64_t e = 1;
        for (int d = 0; d < refs[i].ndim; d++)
            e *= refs[i].shape[d];
        for (int64_t j = 0; j < e; j++, v = -v * 0.75f + 0.01f)
            refs[i].data[j] = v;
    }
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    int rc = 0;
    for (int d = 0; d < 3 && !rc; d++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/model-D%d-NB%d-C%d-W%d-T%d%s-%s.st",
                 dir, dim, nb, channels, window, sources, small ? "-small" : "",
                 dtypes[d]);
        if (demix__model_save(m, path, (demix_dtype)d, err, sizeof err)) {
            fprintf(stderr, "fuzz_model_loader_seeds: %s\n", err);
            rc = 1;
        }
    }
    demix_model_destroy(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_model_loader_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int rc = 0;
    rc |= write_model(dir, 1, 1, 1, 4, 1, 1, NULL);
    rc |= write_model(dir, 2, 1, 1, 4, 1, 0, NULL);
    rc |= write_model(dir, 2, 2, 2, 4, 2, 1, "ab");
    rc |= write_model(dir, 3, 1, 2, 8, 3, 0, "abc");
    rc |= write_container(dir, "empty.st", "{}", 0);
    rc |= write_container(dir, "meta.st",
                          "{\"__metadata__\":{\"sample_rate\":\"44100\","
                          "\"sources\":\"drums,bass,vocals,other\"}}",
                          0);
    rc |= write_container(dir, "mixed.st",
                          "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],"
                          "\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],"
                          "\"data_offsets\":[8,14]},"
                          "\"c\":{\"dtype\":\"I64\",\"shape\":[],"
                          "\"data_offsets\":[16,24]},"
                          "\"d\":{\"dtype\":\"F32\",\"shape\":[0],"
                          "\"data_offsets\":[24,24]}}    ",
                          24);
    return rc ? 1 : 0;
}
