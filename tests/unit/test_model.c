/*
 * test_model.c - the model loader (engine/model.c) and writer
 * (engine/model_save.c) on tiny random models (D = 24, NB = 40, full and
 * small): save as F32/F16/BF16 and load back (config inferred exactly,
 * weights exact in F32 and within half an ulp in F16/BF16, ties rounded to
 * even); every broken file is refused with the documented status and a
 * message naming the tensor or field; extra and window tensors are
 * ignored; metadata defaults and parsing; the committed PyTorch-made
 * tests/data/tiny*.safetensors load (skipped while absent); NULL arguments.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_impl.h"
#include "safetensors.h"

#define TEST_D 24
#define TEST_NB 40

static void assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("message \"%s\" lacks \"%s\"", text, part);
}

static demix_model *random_model(int small, int rate)
{
    demix_model *m = NULL;
    assert_int_equal(
        demix_model_create_random(TEST_D, TEST_NB, small, rate,
                                  demix_test_seed() + (uint64_t)small, &m),
        DEMIX_OK);
    assert_non_null(m);
    return m;
}

static int64_t ref_elements(const demix_tensor_ref *r)
{
    int64_t e = 1;
    for (int d = 0; d < r->ndim; d++)
        e *= r->shape[d];
    return e;
}

/* Saves to a fresh temporary directory, reads the file back into memory. */
static unsigned char *save_image(const demix_model *m, demix_dtype dtype,
                                 size_t *size)
{
    const char *dir = demix_test_tmpdir();
    assert_non_null(dir);
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (demix__model_save(m, path, dtype, err, sizeof err))
        fail_msg("save: %s", err);
    unsigned char *data;
    if (demix_read_file(path, (size_t)1 << 30, &data, size, err, sizeof err))
        fail_msg("read: %s", err);
    demix_test_rmtree(dir);
    return data;
}

static demix_model *load_ok(const unsigned char *data, size_t size)
{
    demix_model *m = NULL;
    char err[512];
    int rc = demix_model_load_memory(data, size, &m, err, sizeof err);
    if (rc)
        fail_msg("load failed: %s: %s", demix_errname(rc), err);
    assert_string_equal(err, "");
    return m;
}

static void expect_reject(const unsigned char *data, size_t size,
                          const char *part1, const char *part2)
{
    demix_model *m = (demix_model *)1;
    char err[512];
    int rc = demix_model_load_memory(data, size, &m, err, sizeof err);
    if (rc != DEMIX_EFORMAT)
        fail_msg("expected DEMIX_EFORMAT, got %s (%s)", demix_errname(rc), err);
    assert_null(m);
    assert_has(err, part1);
    if (part2)
        assert_has(err, part2);
}

static void assert_same_config(const demix_model_config *a,
                               const demix_model_config *b)
{
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->num_basis, b->num_basis);
    assert_int_equal(a->small, b->small);
    assert_int_equal(a->lstm_layers, b->lstm_layers);
    assert_int_equal(a->fusion_dim, b->fusion_dim);
    assert_int_equal(a->window_samples, b->window_samples);
    assert_int_equal(a->hop_samples, b->hop_samples);
    assert_int_equal(a->bins, b->bins);
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->spec_features, b->spec_features);
    assert_int_equal(a->num_sources, b->num_sources);
    assert_int_equal(a->sample_rate_hz, b->sample_rate_hz);
    for (int t = 0; t < a->num_sources; t++)
        assert_string_equal(a->source_names[t], b->source_names[t]);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->license, b->license);
    assert_int_equal(a->parameter_count, b->parameter_count);
}

/* F32: bit-exact. F16/BF16: |got - want| <= half an ulp of the stored type,
 * i.e. 2^-11 |want| (F16, plus 2^-25 below its normal range) or 2^-8 |want|
 * (BF16). */
static void assert_weights(demix_model *want, demix_model *got,
                           demix_dtype dtype)
{
    demix_tensor_ref a[DEMIX_MODEL_MAX_TENSORS], b[DEMIX_MODEL_MAX_TENSORS];
    int n = demix__model_tensors(want, a, DEMIX_MODEL_MAX_TENSORS);
    assert_int_equal(demix__model_tensors(got, b, DEMIX_MODEL_MAX_TENSORS), n);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        assert_string_equal(a[i].name, b[i].name);
        int64_t e = ref_elements(&a[i]);
        total += e;
        if (dtype == DEMIX_DTYPE_F32) {
            assert_memory_equal(a[i].data, b[i].data,
                                (size_t)e * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < e; j++) {
            double w = a[i].data[j], g = b[i].data[j];
            double tol = dtype == DEMIX_DTYPE_F16
                             ? fabs(w) * ldexp(1.0, -11) + ldexp(1.0, -25)
                             : fabs(w) * ldexp(1.0, -8);
            if (!(fabs(w - g) <= tol))
                fail_msg("%s[%lld]: %.9g stored as %s reads %.9g", a[i].name,
                         (long long)j, w,
                         dtype == DEMIX_DTYPE_F16 ? "F16" : "BF16", g);
        }
    }
    assert_int_equal(total, want->config.parameter_count);
    assert_memory_equal(want->window, got->window,
                        (size_t)want->config.window_samples * sizeof(float));
}

/* ------------------------------------------------------------ round trips */

static void round_trip(int small, demix_dtype dtype)
{
    demix_model *m = random_model(small, 48000);
    snprintf(m->config.license, sizeof m->config.license, "CC-BY-4.0");
    size_t size;
    unsigned char *img = save_image(m, dtype, &size);
    /* The data section starts 8-byte aligned. */
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | img[i];
    assert_int_equal((8 + header) % 8, 0);
    assert_int_equal(img[8 + header - 1] == ' ' || img[8 + header - 1] == '}',
                     1);

    demix_model *l = load_ok(img, size);
    const demix_model_config *c = demix_model_get_config(l);
    assert_int_equal(c->dim, TEST_D);
    assert_int_equal(c->num_basis, TEST_NB);
    assert_int_equal(c->small, small);
    assert_int_equal(c->lstm_layers, small ? 1 : 2);
    assert_int_equal(c->fusion_dim, small ? TEST_D : 2 * TEST_D);
    assert_int_equal(c->channels, 2);
    assert_int_equal(c->window_samples, 1024);
    assert_int_equal(c->num_sources, 4);
    assert_int_equal(c->sample_rate_hz, 48000);
    assert_string_equal(c->source_names[0], "drums");
    assert_string_equal(c->source_names[1], "bass");
    assert_string_equal(c->source_names[2], "vocals");
    assert_string_equal(c->source_names[3], "other");
    assert_string_equal(c->name,
                        small ? "random-D24-NB40-small" : "random-D24-NB40");
    assert_string_equal(c->license, "CC-BY-4.0");
    assert_same_config(&m->config, c);
    assert_int_equal(l->stored_dtype, dtype);
    assert_weights(m, l, dtype);

    /* Through a path, too. */
    const char *dir = demix_test_tmpdir();
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    assert_int_equal(demix__model_save(m, path, dtype, err, sizeof err),
                     DEMIX_OK);
    demix_model *p = NULL;
    assert_int_equal(demix_model_load(path, &p, err, sizeof err), DEMIX_OK);
    assert_same_config(&m->config, &p->config);
    assert_weights(m, p, dtype);
    demix_model_destroy(p);
    demix_test_rmtree(dir);

    demix_model_destroy(l);
    demix_model_destroy(m);
    free(img);
}

static void test_round_trip_f32(void **state)
{
    (void)state;
    round_trip(0, DEMIX_DTYPE_F32);
    round_trip(1, DEMIX_DTYPE_F32);
}

static void test_round_trip_f16(void **state)
{
    (void)state;
    round_trip(0, DEMIX_DTYPE_F16);
    round_trip(1, DEMIX_DTYPE_F16);
}

static void test_round_trip_bf16(void **state)
{
    (void)state;
    round_trip(0, DEMIX_DTYPE_BF16);
    round_trip(1, DEMIX_DTYPE_BF16);
}

/* Values on and beside rounding ties, saved narrow and read back. */
static void test_save_rounding(void **state)
{
    (void)state;
    demix_model *m = random_model(1, 44100);
    float *x = m->spec_encode_b; /* D = 24 values to play with */
    const float f16_in[] = {
        1.0f + 0x1p-11f,            /* tie -> even: 1 */
        1.0f + 3 * 0x1p-11f,        /* tie -> even: 1 + 2^-9 */
        1.0f + 0x1p-11f + 0x1p-20f, /* just above the tie: 1 + 2^-10 */
        0x1p-25f,                   /* tie at half the smallest subnormal: 0 */
        3 * 0x1p-25f,               /* tie between 1 and 2 subnormal ulps: 2 */
        0x1p-25f + 0x1p-35f,        /* above the tie: 2^-24 */
        -5 * 0x1p-25f,              /* tie between 2 and 3 ulps: -2 ulps */
        65504.0f,                   /* largest half */
        65519.0f,                   /* rounds down to 65504 */
        0x1p-14f - 0x1p-26f,        /* just below the normal range */
        -0.0f,
    };
    const float f16_out[] = {
        1.0f,         1.0f + 0x1p-9f, 1.0f + 0x1p-10f, 0.0f,
        2 * 0x1p-24f, 0x1p-24f,       -2 * 0x1p-24f,   65504.0f,
        65504.0f,     0x1p-14f,       -0.0f,
    };
    const int nf = (int)(sizeof f16_in / sizeof f16_in[0]);
    memcpy(x, f16_in, sizeof f16_in);
    size_t size;
    unsigned char *img = save_image(m, DEMIX_DTYPE_F16, &size);
    demix_model *l = load_ok(img, size);
    for (int i = 0; i < nf; i++)
        if (memcmp(&l->spec_encode_b[i], &f16_out[i], sizeof(float)))
            fail_msg("F16 of %a read back as %a, expected %a",
                     (double)f16_in[i], (double)l->spec_encode_b[i],
                     (double)f16_out[i]);
    demix_model_destroy(l);
    free(img);

    const float bf16_in[] = {
        1.0f + 0x1p-8f,            /* tie -> even: 1 */
        1.0f + 3 * 0x1p-8f,        /* tie -> even: 1 + 2^-6 */
        1.0f + 0x1p-8f + 0x1p-20f, /* above the tie: 1 + 2^-7 */
        -3.0f,
        0x1p-130f, /* a float subnormal, exact in BF16 */
    };
    const float bf16_out[] = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -3.0f,
                              0x1p-130f};
    const int nb = (int)(sizeof bf16_in / sizeof bf16_in[0]);
    memcpy(x, bf16_in, sizeof bf16_in);
    img = save_image(m, DEMIX_DTYPE_BF16, &size);
    l = load_ok(img, size);
    for (int i = 0; i < nb; i++)
        if (memcmp(&l->spec_encode_b[i], &bf16_out[i], sizeof(float)))
            fail_msg("BF16 of %a read back as %a, expected %a",
                     (double)bf16_in[i], (double)l->spec_encode_b[i],
                     (double)bf16_out[i]);
    demix_model_destroy(l);
    free(img);

    /* Past the F16 range a weight becomes infinite: the loader refuses it. */
    x[3] = 70000.0f;
    img = save_image(m, DEMIX_DTYPE_F16, &size);
    expect_reject(img, size, "tensor \"spec_encode.1.bias\"",
                  "non-finite value (inf) at index 3");
    free(img);
    demix_model_destroy(m);
}

/* ------------------------------------------------------------ a test writer */

/* A safetensors image written by the test itself, so that any field can be
 * made wrong. Data of F32 entries comes from the model; other dtypes, and
 * entries without data, are zeros. */
typedef struct entry {
    char name[64];
    char dtype[16];
    int ndim;
    int64_t shape[3];
    const float *data;
    int64_t data_count; /* floats available at data */
    int offsets_set;
    int64_t begin, end;
} entry;

typedef struct entries {
    entry e[DEMIX_MODEL_MAX_TENSORS + 8];
    int n;
    char meta[1024]; /* raw JSON value of __metadata__, "" for none */
} entries;

static void entries_from_model(demix_model *m, entries *s)
{
    memset(s, 0, sizeof *s);
    demix_tensor_ref refs[DEMIX_MODEL_MAX_TENSORS];
    s->n = demix__model_tensors(m, refs, DEMIX_MODEL_MAX_TENSORS);
    for (int i = 0; i < s->n; i++) {
        entry *e = &s->e[i];
        memcpy(e->name, refs[i].name, sizeof e->name);
        snprintf(e->dtype, sizeof e->dtype, "F32");
        e->ndim = refs[i].ndim;
        memcpy(e->shape, refs[i].shape, sizeof e->shape);
        e->data = refs[i].data;
        e->data_count = ref_elements(&refs[i]);
    }
    snprintf(
        s->meta, sizeof s->meta,
        "{\"sample_rate\":\"44100\",\"sources\":\"drums,bass,vocals,other\"}");
}

static entry *entry_find(entries *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->e[i].name, name) == 0)
            return &s->e[i];
    fail_msg("no entry %s", name);
    return NULL;
}

static void entry_remove(entries *s, const char *name)
{
    entry *e = entry_find(s, name);
    int i = (int)(e - s->e);
    memmove(&s->e[i], &s->e[i + 1], (size_t)(s->n - i - 1) * sizeof s->e[0]);
    s->n--;
}

static entry *entry_add(entries *s, const char *name, const char *dtype,
                        int ndim, int64_t d0, int64_t d1)
{
    entry *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->dtype, sizeof e->dtype, "%s", dtype);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
    return e;
}

static int dtype_bytes(const char *d)
{
    if (!strcmp(d, "F16") || !strcmp(d, "BF16"))
        return 2;
    if (!strcmp(d, "I64") || !strcmp(d, "F64"))
        return 8;
    return 4;
}

static unsigned char *entries_image(const entries *s, size_t *size)
{
    size_t cap = 1 << 16, o = 0;
    char *json = malloc(cap);
    assert_non_null(json);
    o += (size_t)snprintf(json + o, cap - o, "{");
    if (s->meta[0])
        o +=
            (size_t)snprintf(json + o, cap - o, "\"__metadata__\":%s", s->meta);
    int64_t offset = 0, data_bytes = 0;
    for (int i = 0; i < s->n; i++) {
        const entry *e = &s->e[i];
        int64_t bytes = dtype_bytes(e->dtype);
        for (int d = 0; d < e->ndim; d++)
            bytes *= e->shape[d];
        int64_t b = e->offsets_set ? e->begin : offset;
        int64_t en = e->offsets_set ? e->end : offset + bytes;
        o += (size_t)snprintf(json + o, cap - o,
                              "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                              (i || s->meta[0]) ? "," : "", e->name, e->dtype);
        for (int d = 0; d < e->ndim; d++)
            o += (size_t)snprintf(json + o, cap - o, "%s%lld", d ? "," : "",
                                  (long long)e->shape[d]);
        o += (size_t)snprintf(json + o, cap - o,
                              "],\"data_offsets\":[%lld,%lld]}", (long long)b,
                              (long long)en);
        offset += bytes;
    }
    o += (size_t)snprintf(json + o, cap - o, "}");
    assert_true(o < cap);
    data_bytes = offset;
    *size = 8 + o + (size_t)data_bytes;
    unsigned char *img = calloc(1, *size);
    assert_non_null(img);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)o >> (8 * i));
    memcpy(img + 8, json, o);
    free(json);
    unsigned char *p = img + 8 + o;
    for (int i = 0; i < s->n; i++) {
        const entry *e = &s->e[i];
        int64_t count = 1;
        for (int d = 0; d < e->ndim; d++)
            count *= e->shape[d];
        if (e->data && strcmp(e->dtype, "F32") == 0) /* little-endian host */
            memcpy(p, e->data,
                   (size_t)(count < e->data_count ? count : e->data_count) * 4);
        p += count * dtype_bytes(e->dtype);
    }
    return img;
}

/* Builds the image of s and expects the loader to refuse it. */
static void expect_entries_reject(const entries *s, const char *part1,
                                  const char *part2)
{
    size_t size;
    unsigned char *img = entries_image(s, &size);
    expect_reject(img, size, part1, part2);
    free(img);
}

static demix_model *entries_load(const entries *s)
{
    size_t size;
    unsigned char *img = entries_image(s, &size);
    demix_model *m = load_ok(img, size);
    free(img);
    return m;
}

/* ------------------------------------------------------------ rejects */

static void test_writer_matches_save(void **state)
{
    (void)state;
    /* The test writer's unmodified output loads like a saved file. */
    demix_model *m = random_model(0, 44100);
    entries *s = malloc(sizeof *s);
    entries_from_model(m, s);
    demix_model *l = entries_load(s);
    assert_weights(m, l, DEMIX_DTYPE_F32);
    assert_string_equal(l->config.name, "");
    demix_model_destroy(l);
    free(s);
    demix_model_destroy(m);
}

static void test_reject_truncated(void **state)
{
    (void)state;
    demix_model *m = random_model(0, 44100);
    size_t size;
    unsigned char *img = save_image(m, DEMIX_DTYPE_F32, &size);
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | img[i];
    expect_reject(img, 0, "file is 0 bytes", "too short");
    expect_reject(img, 5, "file is 5 bytes", "too short");
    expect_reject(img, 8, "header length",
                  "beyond the end of the file (8 bytes)");
    expect_reject(img, 8 + header / 2, "header length",
                  "beyond the end of the file");
    expect_reject(img, 8 + header - 1, "header length",
                  "beyond the end of the file");
    /* The data section cut: the first tensor (in header order) past the cut
     * is named. */
    expect_reject(img, 8 + header, "tensor \"spec_encode.1.weight\"",
                  "end beyond the data section (0 bytes)");
    expect_reject(img, 8 + header + 1000, "tensor \"spec_encode.1.weight\"",
                  "end beyond the data section (1000 bytes)");
    expect_reject(img, size - 1, "tensor \"conv_decode.weight\"",
                  "end beyond the data section");

    /* A truncated file on disk: the message starts with its path. */
    const char *dir = demix_test_tmpdir();
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/cut.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(img, 1, size / 2, fp), size / 2);
    assert_int_equal(fclose(fp), 0);
    demix_model *l = (demix_model *)1;
    assert_int_equal(demix_model_load(path, &l, err, sizeof err),
                     DEMIX_EFORMAT);
    assert_null(l);
    assert_has(err, path);
    assert_has(err, "end beyond the data section");
    demix_test_rmtree(dir);
    free(img);
    demix_model_destroy(m);
}

static void test_reject_header(void **state)
{
    (void)state;
    demix_model *m = random_model(1, 44100);
    size_t size;
    unsigned char *img = save_image(m, DEMIX_DTYPE_F16, &size);
    unsigned char saved[9];
    memcpy(saved, img, 9);

    uint64_t big = (uint64_t)DEMIX_ST_MAX_HEADER_BYTES + 8;
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(big >> (8 * i));
    expect_reject(img, size, "header length 16777224 bytes", "exceeds the cap");
    uint64_t past = size - 7;
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(past >> (8 * i));
    expect_reject(img, size, "header length", "beyond the end of the file");
    memcpy(img, saved, 9);
    img[8] = '#';
    expect_reject(img, size, "header JSON does not parse", "near byte 0");
    img[8] = '[';
    expect_reject(img, size, "header JSON does not parse", NULL);
    memcpy(img, saved, 9);
    demix_model *l = load_ok(img, size); /* restored, it loads */
    demix_model_destroy(l);
    free(img);

    /* JSON that is not an object. */
    const char *arr = "[]      ";
    unsigned char buf[16] = {8, 0, 0, 0, 0, 0, 0, 0};
    memcpy(buf + 8, arr, 8);
    expect_reject(buf, 16, "header JSON is an array", "expected an object");
    demix_model_destroy(m);
}

static void test_reject_dtype_and_shape(void **state)
{
    (void)state;
    demix_model *m = random_model(0, 44100);
    entries *s = malloc(sizeof *s);

    entries_from_model(m, s);
    snprintf(entry_find(s, "conv_encode.bias")->dtype, 16, "I64");
    expect_entries_reject(s, "tensor \"conv_encode.bias\" has dtype I64",
                          "expected F32, F16 or BF16");

    entries_from_model(m, s);
    snprintf(entry_find(s, "fusion_branch.weight_hh_l1")->dtype, 16, "Q4");
    expect_entries_reject(s, "tensor \"fusion_branch.weight_hh_l1\"",
                          "unknown dtype \"Q4\"");

    entries_from_model(m, s);
    entry_find(s, "basis_to_embed.0.weight")->ndim = 2;
    expect_entries_reject(s,
                          "tensor \"basis_to_embed.0.weight\" has shape "
                          "[24, 40], expected [24, 40, 1]",
                          NULL);

    entries_from_model(m, s);
    entry_find(s, "post_spec_branch.weight_hh_l1")->shape[1] = 23;
    expect_entries_reject(s,
                          "tensor \"post_spec_branch.weight_hh_l1\" has "
                          "shape [96, 23], expected [96, 24]",
                          NULL);

    entries_from_model(m, s);
    entry_find(s, "to_spec_masks.1.weight")->shape[0] = 4 * 2052 - 1;
    expect_entries_reject(s,
                          "tensor \"to_spec_masks.1.weight\" has shape "
                          "[8207, 24], expected [8208, 24]",
                          NULL);

    /* The inferring tensors themselves. */
    entries_from_model(m, s);
    entry_find(s, "spec_encode.1.weight")->shape[1] = 2000;
    expect_entries_reject(s,
                          "tensor \"spec_encode.1.weight\" has shape "
                          "[24, 2000], expected [24, 2052]",
                          NULL);
    entries_from_model(m, s);
    entry_find(s, "spec_encode.1.weight")->ndim = 1;
    expect_entries_reject(s, "tensor \"spec_encode.1.weight\" has shape [24]",
                          "expected 2 dims");
    entries_from_model(m, s);
    entry_find(s, "conv_encode.weight")->shape[0] = 79;
    expect_entries_reject(s, "tensor \"conv_encode.weight\" has 79 rows",
                          "even number");
    entries_from_model(m, s);
    entry_find(s, "conv_encode.weight")->shape[1] = 3;
    expect_entries_reject(s, "tensor \"conv_encode.weight\" has 3 channels",
                          NULL);
    entries_from_model(m, s);
    entry_find(s, "conv_encode.weight")->shape[2] = 1023;
    expect_entries_reject(s,
                          "tensor \"conv_encode.weight\" has a window of "
                          "1023 taps",
                          "even W");
    entries_from_model(m, s);
    entry_find(s, "to_waveform_masks.1.weight")->shape[0] = 150;
    expect_entries_reject(s,
                          "tensor \"to_waveform_masks.1.weight\" has 150 "
                          "rows",
                          "NB = 40");
    entries_from_model(m, s);
    entry_find(s, "to_waveform_masks.1.weight")->shape[0] = 9 * 40;
    expect_entries_reject(s,
                          "tensor \"to_waveform_masks.1.weight\" has 360 "
                          "rows",
                          "T between 1 and 8");

    free(s);
    demix_model_destroy(m);
}

static void test_reject_missing(void **state)
{
    (void)state;
    demix_model *m = random_model(0, 44100);
    entries *s = malloc(sizeof *s);
    const char *names[] = {
        "spec_encode.1.weight",       "conv_encode.weight",
        "to_waveform_masks.1.weight", "fusion_branch.bias_hh_l0",
        "conv_decode.weight",         "to_spec_masks.0.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        entries_from_model(m, s);
        entry_remove(s, names[i]);
        char want[128];
        snprintf(want, sizeof want, "missing tensor \"%s\"", names[i]);
        expect_entries_reject(s, want, NULL);
    }
    /* Without the layer-1 tensor of pre_spec the file reads as the small
     * variant, and the fusion LSTM then has the wrong width. */
    entries_from_model(m, s);
    entry_remove(s, "pre_spec_branch.weight_ih_l1");
    expect_entries_reject(s,
                          "tensor \"fusion_branch.weight_ih_l0\" has shape "
                          "[192, 48], expected [96, 24]",
                          NULL);
    free(s);
    demix_model_destroy(m);
}

static void test_reject_offsets(void **state)
{
    (void)state;
    demix_model *m = random_model(1, 44100);
    entries *s = malloc(sizeof *s);
    int64_t w_bytes = (int64_t)TEST_D * 2052 * 4; /* spec_encode.1.weight */

    /* spec_encode.1.bias laid over the weight's last bytes. */
    entries_from_model(m, s);
    entry *e = entry_find(s, "spec_encode.1.bias");
    e->offsets_set = 1;
    e->begin = w_bytes - 8;
    e->end = w_bytes - 8 + TEST_D * 4;
    char want[256];
    snprintf(want, sizeof want,
             "tensor \"spec_encode.1.bias\": data_offsets [%lld, %lld] overlap "
             "tensor \"spec_encode.1.weight\" at [0, %lld]",
             (long long)e->begin, (long long)e->end, (long long)w_bytes);
    expect_entries_reject(s, want, NULL);

    /* Beyond the file. */
    entries_from_model(m, s);
    e = entry_find(s, "conv_decode.weight");
    e->offsets_set = 1;
    e->begin = 1 << 30;
    e->end = (1 << 30) + TEST_NB * 2048 * 4;
    expect_entries_reject(s,
                          "tensor \"conv_decode.weight\": data_offsets "
                          "[1073741824, 1074069504] end beyond the data "
                          "section",
                          NULL);

    /* begin > end. */
    entries_from_model(m, s);
    e = entry_find(s, "conv_encode.bias");
    e->offsets_set = 1;
    e->begin = 100;
    e->end = 50;
    expect_entries_reject(s,
                          "tensor \"conv_encode.bias\": data_offsets "
                          "[100, 50] begin after end",
                          NULL);

    /* Byte size that does not match the shape. */
    entries_from_model(m, s);
    e = entry_find(s, "spec_encode.1.weight");
    e->offsets_set = 1;
    e->begin = 0;
    e->end = w_bytes - 4;
    expect_entries_reject(s,
                          "tensor \"spec_encode.1.weight\": shape "
                          "[24, 2052] of F32 needs 196992 bytes",
                          "hold 196988");

    /* The same name twice. */
    entries_from_model(m, s);
    s->e[s->n] = *entry_find(s, "conv_encode.bias");
    s->n++;
    expect_entries_reject(s, "tensor \"conv_encode.bias\" appears twice", NULL);
    free(s);
    demix_model_destroy(m);
}

static void test_reject_metadata(void **state)
{
    (void)state;
    demix_model *m = random_model(1, 44100);
    entries *s = malloc(sizeof *s);
    entries_from_model(m, s);

    snprintf(s->meta, sizeof s->meta, "{\"sample_rate\":44100}");
    expect_entries_reject(s, "\"__metadata__\" key \"sample_rate\" is a number",
                          "expected a string");
    snprintf(s->meta, sizeof s->meta, "{\"license\":[\"MIT\"]}");
    expect_entries_reject(s, "\"__metadata__\" key \"license\" is an array",
                          NULL);
    snprintf(s->meta, sizeof s->meta, "\"44100\"");
    expect_entries_reject(s, "\"__metadata__\" is a string", NULL);

    const char *bad_rates[] = {"48k",     "",       "100",
                               "4800000", "-44100", " 44100",
                               "44100.0", "384001", "7999"};
    for (size_t i = 0; i < sizeof bad_rates / sizeof bad_rates[0]; i++) {
        snprintf(s->meta, sizeof s->meta, "{\"sample_rate\":\"%s\"}",
                 bad_rates[i]);
        char want[128];
        snprintf(want, sizeof want, "metadata \"sample_rate\" is \"%s\"",
                 bad_rates[i]);
        expect_entries_reject(s, want, "between 8000 and 384000");
    }

    snprintf(s->meta, sizeof s->meta, "{\"sources\":\"drums,bass,vocals\"}");
    expect_entries_reject(s, "metadata \"sources\" names 3 sources",
                          "the model has T = 4");
    snprintf(s->meta, sizeof s->meta, "{\"sources\":\"a,b,c,d,e,f,g,h,i\"}");
    expect_entries_reject(s, "metadata \"sources\" names more than 8", NULL);
    snprintf(s->meta, sizeof s->meta, "{\"sources\":\"drums,,vocals,other\"}");
    expect_entries_reject(s, "metadata \"sources\": name 2 is empty", NULL);
    snprintf(s->meta, sizeof s->meta,
             "{\"sources\":\"bass,bass,vocals,other\"}");
    expect_entries_reject(s, "metadata \"sources\" names \"bass\" twice", NULL);
    snprintf(
        s->meta, sizeof s->meta,
        "{\"sources\":\"a,bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb,c,d\"}");
    expect_entries_reject(s, "metadata \"sources\": name 2 is 40 bytes", NULL);
    snprintf(s->meta, sizeof s->meta, "{\"sources\":\"a,b c,\\u0001,d\"}");
    expect_entries_reject(s,
                          "metadata \"sources\": name 3 holds a control "
                          "character",
                          NULL);
    free(s);
    demix_model_destroy(m);
}

static void test_reject_non_finite(void **state)
{
    (void)state;
    demix_model *m = random_model(0, 44100);
    m->spec_mask_b[5] = NAN;
    size_t size;
    unsigned char *img = save_image(m, DEMIX_DTYPE_F32, &size);
    expect_reject(img, size, "tensor \"to_spec_masks.1.bias\"",
                  "non-finite value (nan) at index 5");
    free(img);
    img = save_image(m, DEMIX_DTYPE_BF16, &size);
    expect_reject(img, size, "tensor \"to_spec_masks.1.bias\"", "(nan)");
    free(img);
    m->spec_mask_b[5] = 0.0f;
    m->lstm[DEMIX_BRANCH_POST_WAVE].w_hh[1][7] = -INFINITY;
    img = save_image(m, DEMIX_DTYPE_F32, &size);
    expect_reject(img, size, "tensor \"post_waveform_branch.weight_hh_l1\"",
                  "non-finite value (-inf) at index 7");
    free(img);
    demix_model_destroy(m);
}

/* ------------------------------------------------------------ accepted */

static void test_extra_and_window_tensors_ignored(void **state)
{
    (void)state;
    demix_model *m = random_model(0, 44100);
    entries *s = malloc(sizeof *s);
    entries_from_model(m, s);
    entry_add(s, "stft.window", "F32", 1, 1024, 0);
    entry_add(s, "conv_decode.window", "F32", 1, 1024, 0);
    entry_add(s, "conv_decode.bias", "F32", 1, 2, 0);
    entry_add(s, "num_batches_tracked", "I64", 0, 0, 0);
    entry_add(s, "some.other.weight", "F16", 2, 3, 5);
    demix_model *l = entries_load(s);
    assert_weights(m, l, DEMIX_DTYPE_F32); /* window recomputed, not zeros */
    demix_model_destroy(l);
    free(s);
    demix_model_destroy(m);
}

static void test_metadata(void **state)
{
    (void)state;
    demix_model *m = random_model(1, 44100);
    entries *s = malloc(sizeof *s);
    entries_from_model(m, s);

    /* No metadata at all: 44100 Hz, the default names, no name. */
    s->meta[0] = '\0';
    demix_model *l = entries_load(s);
    assert_int_equal(l->config.sample_rate_hz, 44100);
    assert_string_equal(l->config.source_names[0], "drums");
    assert_string_equal(l->config.source_names[3], "other");
    assert_string_equal(l->config.name, "");
    assert_string_equal(l->config.license, "");
    demix_model_destroy(l);

    /* Names trimmed; free-form keys ignored; a long name cut to fit at a
     * UTF-8 boundary. */
    char name[400];
    size_t o = 0;
    while (o < 300) {
        memcpy(name + o, "\xc3\xa9", 2); /* e-acute, 2 bytes */
        o += 2;
    }
    name[o] = '\0';
    snprintf(
        s->meta, sizeof s->meta,
        "{\"sample_rate\":\"8000\",\"sources\":\" one ,two,\\tthree,four\","
        "\"name\":\"%s\",\"license\":\"MIT\",\"trained_on\":\"x\"}",
        name);
    l = entries_load(s);
    assert_int_equal(l->config.sample_rate_hz, 8000);
    assert_string_equal(l->config.source_names[0], "one");
    assert_string_equal(l->config.source_names[1], "two");
    assert_string_equal(l->config.source_names[2], "three");
    assert_string_equal(l->config.source_names[3], "four");
    assert_int_equal(strlen(l->config.name), 254);
    assert_memory_equal(l->config.name, name, 254);
    assert_string_equal(l->config.license, "MIT");
    demix_model_destroy(l);

    snprintf(s->meta, sizeof s->meta, "{\"sample_rate\":\"384000\"}");
    l = entries_load(s);
    assert_int_equal(l->config.sample_rate_hz, 384000);
    demix_model_destroy(l);
    free(s);
    demix_model_destroy(m);
}

static void test_mixed_dtypes(void **state)
{
    (void)state;
    demix_model *m = random_model(1, 44100);
    entries *s = malloc(sizeof *s);
    entries_from_model(m, s);
    snprintf(entry_find(s, "conv_encode.bias")->dtype, 16, "F16");
    demix_model *l = entries_load(s);
    assert_int_equal(l->stored_dtype, DEMIX_DTYPE_F16);
    for (int i = 0; i < 2 * TEST_NB; i++)
        assert_true(l->conv_encode_b[i] == 0.0f); /* the writer's zeros */
    assert_memory_equal(l->spec_encode_w, m->spec_encode_w,
                        (size_t)TEST_D * 2052 * sizeof(float));
    demix_model_destroy(l);
    snprintf(entry_find(s, "spec_encode.1.bias")->dtype, 16, "BF16");
    l = entries_load(s);
    assert_int_equal(l->stored_dtype, DEMIX_DTYPE_BF16);
    demix_model_destroy(l);
    free(s);
    demix_model_destroy(m);
}

/* ------------------------------------------------------------ files */

static void test_io_errors(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/no-such-model.safetensors", dir);
    demix_model *m = (demix_model *)1;
    assert_int_equal(demix_model_load(path, &m, err, sizeof err), DEMIX_EIO);
    assert_null(m);
    assert_has(err, path);
    assert_has(err, "No such file or directory");

    demix_model *r = random_model(1, 44100);
    snprintf(path, sizeof path, "%s/no-such-dir/m.safetensors", dir);
    assert_int_equal(
        demix__model_save(r, path, DEMIX_DTYPE_F32, err, sizeof err),
        DEMIX_EIO);
    assert_has(err, path);
    assert_has(err, "No such file or directory");
    demix_model_destroy(r);
    demix_test_rmtree(dir);
}

static void test_null_arguments(void **state)
{
    (void)state;
    char err[256];
    demix_model *m = (demix_model *)1;
    unsigned char buf[8] = {0};
    assert_int_equal(demix_model_load(NULL, &m, err, sizeof err), DEMIX_EARG);
    assert_null(m);
    assert_true(err[0] != '\0');
    assert_int_equal(demix_model_load("x.safetensors", NULL, err, sizeof err),
                     DEMIX_EARG);
    m = (demix_model *)1;
    assert_int_equal(demix_model_load_memory(NULL, 8, &m, err, sizeof err),
                     DEMIX_EARG);
    assert_null(m);
    assert_int_equal(demix_model_load_memory(buf, 8, NULL, err, sizeof err),
                     DEMIX_EARG);
    /* An empty image is content, not an argument error. */
    assert_int_equal(demix_model_load_memory(NULL, 0, &m, err, sizeof err),
                     DEMIX_EFORMAT);
    /* Without an error buffer: refused all the same. */
    assert_int_equal(demix_model_load_memory(buf, 8, &m, NULL, 0),
                     DEMIX_EFORMAT);
    assert_int_equal(demix_model_load(NULL, &m, NULL, 0), DEMIX_EARG);

    assert_int_equal(
        demix_model_create_random(TEST_D, TEST_NB, 0, 44100, 1, NULL),
        DEMIX_EARG);
    demix_model_destroy(NULL);
    assert_null(demix_model_get_config(NULL));

    demix_model *r = random_model(1, 44100);
    assert_int_equal(
        demix__model_save(NULL, "x", DEMIX_DTYPE_F32, err, sizeof err),
        DEMIX_EARG);
    assert_int_equal(
        demix__model_save(r, NULL, DEMIX_DTYPE_F32, err, sizeof err),
        DEMIX_EARG);
    assert_int_equal(demix__model_save(r, "x", (demix_dtype)7, err, sizeof err),
                     DEMIX_EARG);
    assert_has(err, "dtype");
    demix_model_destroy(r);
}

/* ------------------------------------------------------------ golden files */

static void check_committed(const char *file, int small)
{
    const char *path = demix_test_data_path(file);
    demix_model *m = NULL;
    char err[1024];
    int rc = demix_model_load(path, &m, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", demix_errname(rc), err);
    const demix_model_config *c = demix_model_get_config(m);
    assert_int_equal(c->dim, TEST_D);
    assert_int_equal(c->num_basis, TEST_NB);
    assert_int_equal(c->small, small);
    assert_int_equal(c->channels, 2);
    assert_int_equal(c->window_samples, 1024);
    assert_int_equal(c->num_sources, 4);
    assert_true(c->parameter_count > 0);
    /* Saved again as F32 by our writer, it loads to the same weights. */
    size_t size;
    unsigned char *img = save_image(m, DEMIX_DTYPE_F32, &size);
    demix_model *again = load_ok(img, size);
    assert_same_config(c, &again->config);
    assert_weights(m, again, DEMIX_DTYPE_F32);
    demix_model_destroy(again);
    free(img);
    demix_model_destroy(m);
}

static void test_committed_files(void **state)
{
    (void)state;
    const char *files[] = {"tiny.safetensors", "tiny_small.safetensors"};
    for (int i = 0; i < 2; i++) {
        FILE *fp = fopen(demix_test_data_path(files[i]), "rb");
        if (!fp) {
            printf("# skipped: %s is absent (made by train/make_golden.py)\n",
                   demix_test_data_path(files[i]));
            fflush(stdout);
            skip();
        }
        fclose(fp);
    }
    check_committed("tiny.safetensors", 0);
    check_committed("tiny_small.safetensors", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_f32),
        cmocka_unit_test(test_round_trip_f16),
        cmocka_unit_test(test_round_trip_bf16),
        cmocka_unit_test(test_save_rounding),
        cmocka_unit_test(test_writer_matches_save),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_header),
        cmocka_unit_test(test_reject_dtype_and_shape),
        cmocka_unit_test(test_reject_missing),
        cmocka_unit_test(test_reject_offsets),
        cmocka_unit_test(test_reject_metadata),
        cmocka_unit_test(test_reject_non_finite),
        cmocka_unit_test(test_extra_and_window_tensors_ignored),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_mixed_dtypes),
        cmocka_unit_test(test_io_errors),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_committed_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
