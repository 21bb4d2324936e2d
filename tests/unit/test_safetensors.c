/*
 * test_safetensors.c - the safetensors container reader (engine/safetensors.c)
 * on hand-written files: a valid file parses with the right names, dtypes,
 * shapes, offsets and metadata; F32/F16/BF16 widen exactly (F16 subnormals,
 * infinities, NaN, signed zero); every malformed or hostile header is
 * refused with DEMIX_EFORMAT and a message naming the field or tensor;
 * demix_read_file reports the path and the system's reason; every public
 * function refuses NULL arguments.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* A file image: 8-byte length, the JSON as given, then data_bytes of data
 * (byte i = i & 0xff). */
static unsigned char *image(const char *json, size_t data_bytes, size_t *size)
{
    size_t n = strlen(json);
    *size = 8 + n + data_bytes;
    unsigned char *buf = malloc(*size ? *size : 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    for (size_t i = 0; i < data_bytes; i++)
        buf[8 + n + i] = (unsigned char)i;
    return buf;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void assert_has(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("message \"%s\" lacks \"%s\"", text, part);
}

/* Parse must fail with EFORMAT and a message holding both parts. */
static void expect_reject_buf(const unsigned char *buf, size_t size,
                              const char *part1, const char *part2)
{
    demix_st_file f;
    char err[512];
    int rc = demix_st_parse(buf, size, &f, err, sizeof err);
    if (rc != DEMIX_EFORMAT)
        fail_msg("expected DEMIX_EFORMAT, got %s (%s)", demix_errname(rc), err);
    assert_has(err, part1);
    if (part2)
        assert_has(err, part2);
    assert_int_equal(f.count, 0);
    assert_null(f.tensors);
    demix_st_free(&f);
}

static void expect_reject(const char *json, size_t data_bytes,
                          const char *part1, const char *part2)
{
    size_t size;
    unsigned char *buf = image(json, data_bytes, &size);
    expect_reject_buf(buf, size, part1, part2);
    free(buf);
}

/* ------------------------------------------------------------ valid */

static void test_parse_valid(void **state)
{
    (void)state;
    const char *json =
        "{\"__metadata__\":{\"sample_rate\":\"44100\",\"name\":\"x\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[32,36]},"
        "\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[40,48]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[48,48]},"
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[36,40]}}"
        "      ";
    size_t size;
    unsigned char *buf = image(json, 48, &size);
    demix_st_file f;
    char err[256];
    assert_int_equal(demix_st_parse(buf, size, &f, err, sizeof err), DEMIX_OK);
    assert_string_equal(err, "");
    assert_int_equal(f.count, 6);
    const unsigned char *data = buf + 8 + strlen(json);

    const demix_st_tensor *a = demix_st_find(&f, "a");
    assert_non_null(a);
    assert_string_equal(a->name, "a");
    assert_int_equal(a->dtype, DEMIX_ST_F32);
    assert_string_equal(a->dtype_name, "F32");
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->elements, 6);
    assert_int_equal(a->bytes, 24);
    assert_ptr_equal(a->data, data);

    const demix_st_tensor *b = demix_st_find(&f, "b");
    assert_int_equal(b->dtype, DEMIX_ST_F16);
    assert_ptr_equal(b->data, data + 24);
    const demix_st_tensor *c = demix_st_find(&f, "c");
    assert_int_equal(c->dtype, DEMIX_ST_BF16);
    assert_int_equal(c->bytes, 4);
    const demix_st_tensor *d = demix_st_find(&f, "d");
    assert_int_equal(d->dtype, DEMIX_ST_OTHER);
    assert_string_equal(d->dtype_name, "I64");
    const demix_st_tensor *e = demix_st_find(&f, "e");
    assert_int_equal(e->elements, 0);
    assert_int_equal(e->bytes, 0);
    const demix_st_tensor *s = demix_st_find(&f, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->elements, 1); /* a scalar */
    assert_null(demix_st_find(&f, "z"));

    assert_int_equal(f.meta_count, 2);
    assert_string_equal(demix_st_meta(&f, "sample_rate"), "44100");
    assert_string_equal(demix_st_meta(&f, "name"), "x");
    assert_null(demix_st_meta(&f, "license"));
    assert_null(f.meta_keys[2]);
    assert_null(f.meta_values[2]);

    /* F32 widening reads the bytes little-endian. */
    float v[6];
    assert_int_equal(demix_st_read_f32(a, v, 6, err, sizeof err), DEMIX_OK);
    for (int i = 0; i < 6; i++) {
        uint32_t bits = (uint32_t)(4 * i) | (uint32_t)(4 * i + 1) << 8 |
                        (uint32_t)(4 * i + 2) << 16 |
                        (uint32_t)(4 * i + 3) << 24;
        float want;
        memcpy(&want, &bits, 4);
        assert_memory_equal(&v[i], &want, 4);
    }
    /* Wrong count, and a dtype that is not a float: EFORMAT naming it. */
    assert_int_equal(demix_st_read_f32(a, v, 5, err, sizeof err),
                     DEMIX_EFORMAT);
    assert_has(err, "\"a\"");
    assert_has(err, "6 elements");
    assert_int_equal(demix_st_read_f32(d, v, 1, err, sizeof err),
                     DEMIX_EFORMAT);
    assert_has(err, "\"d\"");
    assert_has(err, "I64");
    /* An empty tensor reads into nothing. */
    assert_int_equal(demix_st_read_f32(e, NULL, 0, err, sizeof err), DEMIX_OK);

    demix_st_free(&f);
    assert_int_equal(f.count, 0);
    assert_null(f.tensors);
    demix_st_free(&f); /* twice is harmless */
    free(buf);
}

static void test_parse_empty_header_object(void **state)
{
    (void)state;
    size_t size;
    unsigned char *buf = image("{}", 0, &size);
    demix_st_file f;
    char err[256];
    assert_int_equal(demix_st_parse(buf, size, &f, err, sizeof err), DEMIX_OK);
    assert_int_equal(f.count, 0);
    assert_int_equal(f.meta_count, 0);
    assert_non_null(f.meta_keys);
    assert_null(f.meta_keys[0]);
    assert_null(demix_st_meta(&f, "x"));
    demix_st_free(&f);
    free(buf);
}

/* A tensor of n 16-bit values given as bit patterns, widened. */
static void widen16(const char *dtype, const uint16_t *bits, int n, float *out)
{
    char json[256];
    snprintf(
        json, sizeof json,
        "{\"t\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[0,%d]}}",
        dtype, n, 2 * n);
    size_t size;
    unsigned char *buf = image(json, (size_t)(2 * n), &size);
    unsigned char *data = buf + 8 + strlen(json);
    for (int i = 0; i < n; i++) {
        data[2 * i] = (unsigned char)(bits[i] & 0xff);
        data[2 * i + 1] = (unsigned char)(bits[i] >> 8);
    }
    demix_st_file f;
    char err[256];
    assert_int_equal(demix_st_parse(buf, size, &f, err, sizeof err), DEMIX_OK);
    const demix_st_tensor *t = demix_st_find(&f, "t");
    assert_non_null(t);
    assert_int_equal(demix_st_read_f32(t, out, (size_t)n, err, sizeof err),
                     DEMIX_OK);
    demix_st_free(&f);
    free(buf);
}

static void test_f16_widening(void **state)
{
    (void)state;
    const uint16_t bits[] = {0x0000, 0x8000, 0x0001, 0x8001, 0x03ff,
                             0x0400, 0x3c00, 0xc000, 0x3555, 0x7bff,
                             0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe00};
    const int n = (int)(sizeof bits / sizeof bits[0]);
    float v[sizeof bits / sizeof bits[0]];
    widen16("F16", bits, n, v);
    assert_true(v[0] == 0.0f && !signbit(v[0]));
    assert_true(v[1] == 0.0f && signbit(v[1]));
    assert_true(v[2] == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(v[3] == -ldexpf(1.0f, -24));
    assert_true(v[4] == 1023.0f * ldexpf(1.0f, -24)); /* largest subnormal */
    assert_true(v[5] == ldexpf(1.0f, -14));           /* smallest normal */
    assert_true(v[6] == 1.0f);
    assert_true(v[7] == -2.0f);
    assert_true(v[8] == 1365.0f / 4096.0f); /* 0x3555 = 0.333251953125 */
    assert_true(v[9] == 65504.0f);
    assert_true(isinf(v[10]) && v[10] > 0);
    assert_true(isinf(v[11]) && v[11] < 0);
    assert_true(isnan(v[12]));
    assert_true(isnan(v[13])); /* signalling payload stays a NaN */
    assert_true(isnan(v[14]));
}

static void test_bf16_widening(void **state)
{
    (void)state;
    const uint16_t bits[] = {0x3f80, 0xc040, 0x0001, 0x7f7f,
                             0x7f80, 0xff80, 0x7fc0, 0x8000};
    const int n = (int)(sizeof bits / sizeof bits[0]);
    float v[sizeof bits / sizeof bits[0]];
    widen16("BF16", bits, n, v);
    assert_true(v[0] == 1.0f);
    assert_true(v[1] == -3.0f);
    uint32_t sub = 0x00010000u;
    float subf;
    memcpy(&subf, &sub, 4);
    assert_true(v[2] == subf); /* a float subnormal */
    assert_true(v[3] == 0x1.fep127f);
    assert_true(isinf(v[4]) && v[4] > 0);
    assert_true(isinf(v[5]) && v[5] < 0);
    assert_true(isnan(v[6]));
    assert_true(v[7] == 0.0f && signbit(v[7]));
}

/* ------------------------------------------------------------ rejects */

static void test_reject_length_prefix(void **state)
{
    (void)state;
    unsigned char small[7] = {0};
    expect_reject_buf(small, 0, "0 bytes", "too short");
    expect_reject_buf(small, 7, "7 bytes", "8-byte header length");

    size_t size;
    unsigned char *buf = image("{}", 16, &size);
    put_le64(buf, (uint64_t)DEMIX_ST_MAX_HEADER_BYTES + 1);
    expect_reject_buf(buf, size, "header length 16777217", "exceeds the cap");
    put_le64(buf, UINT64_MAX);
    expect_reject_buf(buf, size, "header length 18446744073709551615",
                      "exceeds the cap");
    put_le64(buf, size - 7);
    expect_reject_buf(buf, size, "header length 19 bytes",
                      "beyond the end of the file (26 bytes)");
    put_le64(buf, 0);
    expect_reject_buf(buf, size, "header JSON is empty", NULL);
    free(buf);
}

static void test_reject_json(void **state)
{
    (void)state;
    expect_reject("{\"a\":", 0, "header JSON does not parse", NULL);
    expect_reject("not json", 0, "header JSON does not parse", NULL);
    expect_reject("[1,2]", 0, "header JSON is an array", "expected an object");
    expect_reject("\"str\"", 0, "header JSON is a string", NULL);
    expect_reject("{} x", 0, "followed by other bytes", "space padding");
    expect_reject("{}{}", 0, "followed by other bytes", NULL);

    /* Nesting deeper than cJSON's limit: refused, not a stack overflow. */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 16);
    assert_non_null(deep);
    size_t o = 0;
    o += (size_t)sprintf(deep, "{\"a\":");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = '\0';
    expect_reject(deep, 0, "does not parse", NULL);
    free(deep);

    /* A header of a million tiny values is refused before cJSON sees it. */
    size_t count = 1u << 20;
    char *wide = malloc(2 * count + 16);
    assert_non_null(wide);
    o = (size_t)sprintf(wide, "{\"a\":[");
    for (size_t i = 0; i < count; i++) {
        wide[o++] = '0';
        wide[o++] = ',';
    }
    wide[o - 1] = ']';
    wide[o++] = '}';
    wide[o] = '\0';
    expect_reject(wide, 0, "more than 262144 values", NULL);
    free(wide);
}

#define ENTRY(name, dtype, shape, offsets)                                     \
    "\"" name "\":{\"dtype\":" dtype ",\"shape\":" shape                       \
    ",\"data_offsets\":" offsets "}"

static void test_reject_entries(void **state)
{
    (void)state;
    expect_reject("{\"w\":5}", 16, "tensor \"w\"", "entry is a number");
    expect_reject("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 16,
                  "tensor \"w\"", "no \"dtype\"");
    expect_reject("{" ENTRY("w", "4", "[1]", "[0,4]") "}", 16, "tensor \"w\"",
                  "\"dtype\" is a number, expected a string");
    expect_reject("{" ENTRY("w", "\"F99\"", "[1]", "[0,4]") "}", 16,
                  "tensor \"w\"", "unknown dtype \"F99\"");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 16,
                  "tensor \"w\"", "no \"shape\"");
    expect_reject("{" ENTRY("w", "\"F32\"", "{}", "[0,4]") "}", 16,
                  "tensor \"w\"", "\"shape\" is an object, expected an array");
    expect_reject("{" ENTRY("w", "\"F32\"", "[2,-1]", "[0,4]") "}", 16,
                  "tensor \"w\": shape[1] is -1",
                  "expected a non-negative integer");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1.5]", "[0,4]") "}", 16,
                  "tensor \"w\": shape[0] is 1.5", "not an integer");
    expect_reject("{" ENTRY("w", "\"F32\"", "[\"4\"]", "[0,4]") "}", 16,
                  "tensor \"w\": shape[0] is a string", NULL);
    expect_reject("{" ENTRY("w", "\"F32\"", "[1e300]", "[0,4]") "}", 16,
                  "tensor \"w\": shape[0]", "larger than 2^53");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}",
                  16, "tensor \"w\"", "9 dims, more than 8");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1048576,1048576,1048576,1048576]",
                            "[0,4]") "}",
                  16, "tensor \"w\"", "too many elements (overflow)");
    expect_reject(
        "{" ENTRY("w", "\"F64\"", "[1073741824,1073741824]", "[0,4]") "}", 16,
        "tensor \"w\"", "byte size overflow");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"dtype\":\"F16\","
                  "\"data_offsets\":[0,4]}}",
                  16, "tensor \"w\": \"dtype\" appears twice", NULL);
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 16,
                  "tensor \"w\"", "no \"data_offsets\"");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[0]") "}", 16,
                  "tensor \"w\"", "expected an array of two integers");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[0,4,8]") "}", 16,
                  "tensor \"w\"", "expected an array of two integers");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "\"0-4\"") "}", 16,
                  "tensor \"w\": \"data_offsets\" is a string", NULL);
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[0,\"4\"]") "}", 16,
                  "tensor \"w\": data_offsets[1] is a string", NULL);
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[-4,0]") "}", 16,
                  "tensor \"w\": data_offsets[0] is -4", NULL);
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[8,4]") "}", 16,
                  "tensor \"w\": data_offsets [8, 4] begin after end", NULL);
    expect_reject(
        "{" ENTRY("conv_encode.weight", "\"F32\"", "[1]", "[10,99999]") "}",
        4096,
        "tensor \"conv_encode.weight\": data_offsets [10, 99999] end "
        "beyond the data section (4096 bytes)",
        NULL);
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[12,20]") "}", 16,
                  "tensor \"w\"", "end beyond the data section (16 bytes)");
    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[0,8]") "}", 16,
                  "tensor \"w\": shape [1] of F32 needs 4 bytes",
                  "data_offsets [0, 8] hold 8");
    expect_reject("{" ENTRY("w", "\"F16\"", "[2,3]", "[0,8]") "}", 16,
                  "tensor \"w\": shape [2, 3] of F16 needs 12 bytes", NULL);
}

static void test_reject_set(void **state)
{
    (void)state;
    /* Overlap, whatever the order in the header. */
    expect_reject("{" ENTRY("a", "\"F32\"", "[2]", "[0,8]") "," ENTRY(
                      "b", "\"F32\"", "[2]", "[4,12]") "}",
                  16,
                  "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" "
                  "at [0, 8]",
                  NULL);
    expect_reject("{" ENTRY("b", "\"F32\"", "[1]", "[8,12]") "," ENTRY(
                      "a", "\"F32\"", "[4]", "[0,16]") "}",
                  16, "tensor \"b\"", "overlap tensor \"a\" at [0, 16]");
    /* A tensor wholly inside a longer one. */
    expect_reject("{" ENTRY("long", "\"F32\"", "[4]", "[0,16]") "," ENTRY(
                      "x", "\"F32\"", "[1]", "[4,8]") "}",
                  16, "tensor \"x\"", "overlap tensor \"long\"");
    /* Touching is fine; empty tensors overlap nothing. */
    size_t size;
    unsigned char *buf =
        image("{" ENTRY("a", "\"F32\"", "[2]", "[0,8]") "," ENTRY(
                  "b", "\"F32\"", "[2]",
                  "[8,16]") "," ENTRY("e", "\"F32\"", "[0]", "[4,4]") "}",
              16, &size);
    demix_st_file f;
    char err[256];
    assert_int_equal(demix_st_parse(buf, size, &f, err, sizeof err), DEMIX_OK);
    demix_st_free(&f);
    free(buf);

    expect_reject("{" ENTRY("w", "\"F32\"", "[1]", "[0,4]") "," ENTRY(
                      "w", "\"F32\"", "[1]", "[4,8]") "}",
                  16, "tensor \"w\" appears twice", NULL);

    /* Over DEMIX_ST_MAX_TENSORS entries. */
    size_t n = DEMIX_ST_MAX_TENSORS + 1;
    char *json = malloc(n * 64 + 16);
    assert_non_null(json);
    size_t o = (size_t)sprintf(json, "{");
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(json + o,
                             "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[0],"
                             "\"data_offsets\":[0,0]}",
                             i ? "," : "", i);
    sprintf(json + o, "}");
    expect_reject(json, 0, "header lists 4097 tensors, more than 4096", NULL);
    free(json);

    /* A name longer than the reader keeps, and one with control bytes. */
    char long_name[300];
    memset(long_name, 'n', 200);
    long_name[200] = '\0';
    char big[512];
    snprintf(
        big, sizeof big,
        "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        long_name);
    expect_reject(big, 16, "name is 200 bytes, longer than 127", "...");
    expect_reject("{\"a\\nb\":{\"dtype\":\"F99\",\"shape\":[1],"
                  "\"data_offsets\":[0,4]}}",
                  16, "tensor \"a\\x0ab\"", "unknown dtype");
}

static void test_reject_metadata(void **state)
{
    (void)state;
    expect_reject("{\"__metadata__\":[1]}", 0,
                  "\"__metadata__\" is an array, expected an object", NULL);
    expect_reject("{\"__metadata__\":{\"sample_rate\":44100}}", 0,
                  "\"__metadata__\" key \"sample_rate\" is a number",
                  "expected a string");
    expect_reject("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0,
                  "\"__metadata__\" key \"a\" is an object", NULL);
    expect_reject("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", 0,
                  "\"__metadata__\" key \"a\" appears twice", NULL);
    expect_reject("{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                  "\"__metadata__\" appears twice", NULL);
}

/* ------------------------------------------------------------ files */

static void test_read_file(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    assert_non_null(dir);
    char path[512], err[512];
    unsigned char *data = (unsigned char *)"x";
    size_t size = 99;

    snprintf(path, sizeof path, "%s/missing.bin", dir);
    assert_int_equal(demix_read_file(path, 1024, &data, &size, err, sizeof err),
                     DEMIX_EIO);
    assert_has(err, path);
    assert_has(err, "No such file or directory");
    assert_null(data);
    assert_int_equal(size, 0);

    assert_int_equal(demix_read_file(dir, 1024, &data, &size, err, sizeof err),
                     DEMIX_EFORMAT);
    assert_has(err, "not a regular file");

    snprintf(path, sizeof path, "%s/ten.bin", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite("0123456789", 1, 10, fp), 10);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(demix_read_file(path, 10, &data, &size, err, sizeof err),
                     DEMIX_OK);
    assert_int_equal(size, 10);
    assert_memory_equal(data, "0123456789", 10);
    free(data);
    assert_int_equal(demix_read_file(path, 9, &data, &size, err, sizeof err),
                     DEMIX_EFORMAT);
    assert_has(err, path);
    assert_has(err, "10 bytes, more than the limit of 9");

    snprintf(path, sizeof path, "%s/empty.bin", dir);
    fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(demix_read_file(path, 10, &data, &size, err, sizeof err),
                     DEMIX_OK);
    assert_int_equal(size, 0);
    assert_non_null(data);
    free(data);
    demix_test_rmtree(dir);
}

static void test_null_arguments(void **state)
{
    (void)state;
    char err[256];
    demix_st_file f;
    unsigned char buf[16] = {0};
    assert_int_equal(demix_st_parse(NULL, 16, &f, err, sizeof err), DEMIX_EARG);
    assert_true(err[0] != '\0');
    assert_int_equal(demix_st_parse(buf, 16, NULL, err, sizeof err),
                     DEMIX_EARG);
    /* No error buffer: still refused, nothing written. */
    assert_int_equal(demix_st_parse(buf, 3, &f, NULL, 0), DEMIX_EFORMAT);
    demix_st_free(NULL);

    assert_null(demix_st_find(NULL, "a"));
    assert_null(demix_st_meta(NULL, "a"));
    memset(&f, 0, sizeof f);
    assert_null(demix_st_find(&f, NULL));
    assert_null(demix_st_meta(&f, NULL));
    assert_null(demix_st_find(&f, "a"));

    float v[1];
    demix_st_tensor t;
    memset(&t, 0, sizeof t);
    t.elements = 1;
    assert_int_equal(demix_st_read_f32(NULL, v, 1, err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demix_st_read_f32(&t, NULL, 1, err, sizeof err),
                     DEMIX_EARG);

    unsigned char *data;
    size_t size;
    assert_int_equal(demix_read_file(NULL, 1, &data, &size, err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demix_read_file("x", 1, NULL, &size, err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(demix_read_file("x", 1, &data, NULL, err, sizeof err),
                     DEMIX_EARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_empty_header_object),
        cmocka_unit_test(test_f16_widening),
        cmocka_unit_test(test_bf16_widening),
        cmocka_unit_test(test_reject_length_prefix),
        cmocka_unit_test(test_reject_json),
        cmocka_unit_test(test_reject_entries),
        cmocka_unit_test(test_reject_set),
        cmocka_unit_test(test_reject_metadata),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
