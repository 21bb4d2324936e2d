/*
 * fuzz_model_loader.c - libFuzzer target for the model file: any byte string
 * goes through demix_st_parse (and every float tensor it accepts is widened,
 * so each byte the header points at is read under ASan) and then through
 * demix_model_load_memory. A crash, a sanitizer report, an unterminated
 * error message, a status other than OK/FORMAT/NOMEM, a model returned with
 * an error or an error without a message all abort the run.
 *
 * Build and run: scripts/fuzz.sh [SECONDS] (clang, -DDEMIX_FUZZ=ON); seeds
 * come from fuzz_model_loader_seeds, tokens from fuzz_model_loader.dict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_impl.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(const char *err, size_t cap)
{
    if (!memchr(err, '\0', cap))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    demix_st_file f;
    memset(err, 'x', sizeof err);
    int rc = demix_st_parse(data, size, &f, err, sizeof err);
    check_message(err, sizeof err);
    if (rc == DEMIX_OK) {
        for (int i = 0; i < f.count; i++) {
            const demix_st_tensor *t = &f.tensors[i];
            size_t n = (size_t)t->elements;
            if (t->dtype == DEMIX_ST_OTHER || n > ((size_t)1 << 22))
                continue;
            float *dst = malloc(n ? n * sizeof(float) : 1);
            if (!dst)
                continue;
            if (demix_st_read_f32(t, dst, n, err, sizeof err) != DEMIX_OK)
                __builtin_trap(); /* a float tensor the parser accepted */
            free(dst);
        }
        for (int i = 0; i < f.meta_count; i++)
            if (demix_st_meta(&f, f.meta_keys[i]) != f.meta_values[i])
                __builtin_trap();
        demix_st_free(&f);
    } else if (rc != DEMIX_EFORMAT && rc != DEMIX_ENOMEM) {
        __builtin_trap();
    }

    demix_model *m = (demix_model *)&f; /* must be overwritten */
    memset(err, 'x', sizeof err);
    rc = demix_model_load_memory(data, size, &m, err, sizeof err);
    check_message(err, sizeof err);
    if (rc == DEMIX_OK) {
        const demix_model_config *c = demix_model_get_config(m);
        if (!m || !c || c->dim < 1 || c->num_sources < 1)
            __builtin_trap();
        demix_model_destroy(m);
    } else if (m != NULL || err[0] == '\0' ||
               (rc != DEMIX_EFORMAT && rc != DEMIX_ENOMEM)) {
        __builtin_trap();
    }
    return 0;
}
