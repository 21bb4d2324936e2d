/*
 * safetensors.c - the defensive safetensors reader declared in safetensors.h.
 *
 * Design. A file is checked in passes, each of which trusts only what the
 * previous one proved:
 *   1. the 8-byte little-endian header length: capped, inside the file;
 *   2. the JSON header: a cheap scan bounds the number of JSON values (so a
 *      16 MiB header cannot make cJSON allocate gigabytes), then cJSON parses
 *      a NUL-terminated private copy (an over-read inside cJSON stops at the
 *      terminator, never in the caller's buffer); only whitespace may follow;
 *   3. every entry on its own: object, known dtype, shape of non-negative
 *      integers whose byte size does not overflow, data_offsets two integers
 *      begin <= end inside the data section, byte size == elements x dtype
 *      size; __metadata__ an object of strings;
 *   4. the whole set: no duplicate name, no two tensors overlapping (entries
 *      sorted by begin).
 * Every message names the tensor or field and says what is wrong. Tensor data
 * is never copied here: demix_st_read_f32 widens it on demand with byte-wise
 * little-endian loads, so unaligned data and big-endian hosts both work.
 *
 * JSON numbers arrive from cJSON as doubles: an integer field must be a
 * whole, non-negative number no larger than 2^53 (beyond that a double is no
 * longer exact; no valid file of ours comes near it). cJSON does not keep
 * the literal, so "2.0" reads as the integer 2.
 *
 * Thread context: any thread; no shared state of its own. cJSON writes a
 * process-wide "last error" pointer on every parse, so two threads parsing
 * at the same instant race on that (unused) variable; the model is loaded
 * once at start-up, so this is accepted.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* At most this many JSON values ('{', '[', ',' and ':' outside strings) in a
 * header: ~20 per tensor entry x DEMIX_ST_MAX_TENSORS, plus metadata. */
#define ST_MAX_JSON_TOKENS (1u << 18)
#define ST_MAX_META 1024
#define ST_MAX_EXACT_INTEGER 9007199254740992.0 /* 2^53 */

/* A name from the file as it may appear in a one-line message: quoted,
 * control and non-ASCII bytes escaped, cut after 64 bytes. */
typedef struct quoted {
    char text[64 * 4 + 8];
} quoted;

static quoted quote(const char *s)
{
    quoted q;
    size_t o = 0;
    q.text[o++] = '"';
    size_t i = 0;
    for (; s && s[i] && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(q.text + o, sizeof q.text - o, "\\x%02x", c);
        else
            q.text[o++] = (char)c;
    }
    q.text[o++] = '"';
    if (s && s[i])
        o += (size_t)snprintf(q.text + o, sizeof q.text - o, "...");
    q.text[o] = '\0';
    return q;
}

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, d ? ", " : "",
                              shape[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/* ------------------------------------------------------------ dtypes */

typedef struct dtype_info {
    const char *name;
    int bytes;
    demix_st_dtype dtype;
} dtype_info;

/* The safetensors dtypes of whole-byte size. Sub-byte ones (F4, F6_*) are
 * not accepted: their shape-to-size rule differs and no model uses them. */
static const dtype_info dtypes[] = {
    {"F32", 4, DEMIX_ST_F32},       {"F16", 2, DEMIX_ST_F16},
    {"BF16", 2, DEMIX_ST_BF16},     {"F64", 8, DEMIX_ST_OTHER},
    {"I64", 8, DEMIX_ST_OTHER},     {"U64", 8, DEMIX_ST_OTHER},
    {"I32", 4, DEMIX_ST_OTHER},     {"U32", 4, DEMIX_ST_OTHER},
    {"I16", 2, DEMIX_ST_OTHER},     {"U16", 2, DEMIX_ST_OTHER},
    {"I8", 1, DEMIX_ST_OTHER},      {"U8", 1, DEMIX_ST_OTHER},
    {"BOOL", 1, DEMIX_ST_OTHER},    {"F8_E4M3", 1, DEMIX_ST_OTHER},
    {"F8_E5M2", 1, DEMIX_ST_OTHER}, {"F8_E8M0", 1, DEMIX_ST_OTHER},
    {"C64", 8, DEMIX_ST_OTHER},
};

static const dtype_info *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return &dtypes[i];
    return NULL;
}

/* ------------------------------------------------------------ header */

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Counts the JSON values of a header without parsing it; stops early past
 * the cap. */
static size_t count_json_tokens(const char *s, size_t n)
{
    size_t count = 0;
    int in_string = 0;
    for (size_t i = 0; i < n && count <= ST_MAX_JSON_TOKENS; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[' || c == ',' || c == ':') {
            count++;
        }
    }
    return count;
}

static const char *json_type_name(const cJSON *it)
{
    if (cJSON_IsObject(it))
        return "an object";
    if (cJSON_IsArray(it))
        return "an array";
    if (cJSON_IsString(it))
        return "a string";
    if (cJSON_IsNumber(it))
        return "a number";
    if (cJSON_IsBool(it))
        return "a boolean";
    if (cJSON_IsNull(it))
        return "null";
    return "invalid";
}

/* An exact non-negative integer, or a sentence on why not. */
static int json_uint(const cJSON *it, uint64_t *out, char *why, size_t cap)
{
    if (!cJSON_IsNumber(it)) {
        snprintf(why, cap, "is %s, expected an integer", json_type_name(it));
        return -1;
    }
    double v = it->valuedouble;
    if (v != v) {
        snprintf(why, cap, "is not a number");
        return -1;
    }
    if (v < 0) {
        snprintf(why, cap, "is %.17g, expected a non-negative integer", v);
        return -1;
    }
    if (v > ST_MAX_EXACT_INTEGER) {
        snprintf(why, cap, "is %.17g, larger than 2^53", v);
        return -1;
    }
    uint64_t u = (uint64_t)v;
    if ((double)u != v) {
        snprintf(why, cap, "is %.17g, not an integer", v);
        return -1;
    }
    *out = u;
    return 0;
}

/* ------------------------------------------------------------ entries */

/* data_offsets of an entry, kept beside the tensor for the set checks. */
typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int parse_entry(const cJSON *item, demix_st_tensor *t, span *sp,
                       const unsigned char *data, uint64_t data_bytes,
                       char *err, size_t cap)
{
    quoted q = quote(item->string);
    const char *qn = q.text;
    char why[128];

    if (strlen(item->string) >= DEMIX_ST_NAME_BYTES) {
        demix__set_err(err, cap, "tensor %s: name is %zu bytes, longer than %d",
                       qn, strlen(item->string), DEMIX_ST_NAME_BYTES - 1);
        return DEMIX_EFORMAT;
    }
    snprintf(t->name, sizeof t->name, "%s", item->string);
    if (!cJSON_IsObject(item)) {
        demix__set_err(err, cap, "tensor %s: entry is %s, expected an object",
                       qn, json_type_name(item));
        return DEMIX_EFORMAT;
    }

    /* Each known field once: a file that says two things must not be read
     * one way here and another way by a different reader. */
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    int seen[3] = {0, 0, 0};
    for (const cJSON *c = item->child; c; c = c->next) {
        for (int k = 0; k < 3; k++) {
            if (strcmp(c->string, fields[k]) == 0 && seen[k]++) {
                demix__set_err(err, cap, "tensor %s: \"%s\" appears twice", qn,
                               fields[k]);
                return DEMIX_EFORMAT;
            }
        }
    }

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!dt) {
        demix__set_err(err, cap, "tensor %s: no \"dtype\"", qn);
        return DEMIX_EFORMAT;
    }
    if (!cJSON_IsString(dt)) {
        demix__set_err(err, cap,
                       "tensor %s: \"dtype\" is %s, expected a string", qn,
                       json_type_name(dt));
        return DEMIX_EFORMAT;
    }
    const dtype_info *info = find_dtype(dt->valuestring);
    if (!info) {
        demix__set_err(err, cap, "tensor %s: unknown dtype %s", qn,
                       quote(dt->valuestring).text);
        return DEMIX_EFORMAT;
    }
    t->dtype = info->dtype;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", info->name);

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!sh) {
        demix__set_err(err, cap, "tensor %s: no \"shape\"", qn);
        return DEMIX_EFORMAT;
    }
    if (!cJSON_IsArray(sh)) {
        demix__set_err(err, cap,
                       "tensor %s: \"shape\" is %s, expected an array", qn,
                       json_type_name(sh));
        return DEMIX_EFORMAT;
    }
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > DEMIX_ST_MAX_DIMS) {
        demix__set_err(err, cap, "tensor %s: shape has %d dims, more than %d",
                       qn, ndim, DEMIX_ST_MAX_DIMS);
        return DEMIX_EFORMAT;
    }
    t->ndim = ndim;
    int has_zero = 0;
    int d = 0;
    for (const cJSON *e = sh->child; e; e = e->next, d++) {
        uint64_t v;
        if (json_uint(e, &v, why, sizeof why)) {
            demix__set_err(err, cap, "tensor %s: shape[%d] %s", qn, d, why);
            return DEMIX_EFORMAT;
        }
        t->shape[d] = (int64_t)v;
        has_zero |= v == 0;
    }
    char shape_text[DEMIX_ST_MAX_DIMS * 24 + 4];
    format_shape(t->shape, ndim, shape_text, sizeof shape_text);
    /* elements x dtype size, refusing anything past 2^62 bytes (which no
     * data section can hold anyway). */
    uint64_t elements = 1;
    if (has_zero) {
        elements = 0;
    } else {
        const uint64_t limit = (uint64_t)1 << 62;
        for (d = 0; d < ndim; d++) {
            uint64_t v = (uint64_t)t->shape[d];
            if (elements > limit / v) {
                demix__set_err(
                    err, cap,
                    "tensor %s: shape %s has too many elements (overflow)", qn,
                    shape_text);
                return DEMIX_EFORMAT;
            }
            elements *= v;
        }
        if (elements > limit / (uint64_t)info->bytes) {
            demix__set_err(err, cap,
                           "tensor %s: shape %s of %s is too large (byte size "
                           "overflow)",
                           qn, shape_text, info->name);
            return DEMIX_EFORMAT;
        }
    }
    uint64_t need_bytes = elements * (uint64_t)info->bytes;
    t->elements = (int64_t)elements;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!off) {
        demix__set_err(err, cap, "tensor %s: no \"data_offsets\"", qn);
        return DEMIX_EFORMAT;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) {
        demix__set_err(
            err, cap,
            "tensor %s: \"data_offsets\" is %s, expected an array of two "
            "integers",
            qn,
            cJSON_IsArray(off) ? "an array of another length"
                               : json_type_name(off));
        return DEMIX_EFORMAT;
    }
    uint64_t begin, end;
    if (json_uint(off->child, &begin, why, sizeof why)) {
        demix__set_err(err, cap, "tensor %s: data_offsets[0] %s", qn, why);
        return DEMIX_EFORMAT;
    }
    if (json_uint(off->child->next, &end, why, sizeof why)) {
        demix__set_err(err, cap, "tensor %s: data_offsets[1] %s", qn, why);
        return DEMIX_EFORMAT;
    }
    if (begin > end) {
        demix__set_err(err, cap,
                       "tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                       "] begin after end",
                       qn, begin, end);
        return DEMIX_EFORMAT;
    }
    if (end > data_bytes) {
        demix__set_err(err, cap,
                       "tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                       "] end beyond the data section (%" PRIu64 " bytes)",
                       qn, begin, end, data_bytes);
        return DEMIX_EFORMAT;
    }
    if (end - begin != need_bytes) {
        demix__set_err(
            err, cap,
            "tensor %s: shape %s of %s needs %" PRIu64
            " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64,
            qn, shape_text, info->name, need_bytes, begin, end, end - begin);
        return DEMIX_EFORMAT;
    }
    t->data = data + begin;
    t->bytes = (size_t)need_bytes;
    sp->begin = begin;
    sp->end = end;
    return DEMIX_OK;
}

static int parse_metadata(const cJSON *meta, demix_st_file *f, char *err,
                          size_t cap)
{
    if (!cJSON_IsObject(meta)) {
        demix__set_err(err, cap, "\"__metadata__\" is %s, expected an object",
                       json_type_name(meta));
        return DEMIX_EFORMAT;
    }
    int n = cJSON_GetArraySize(meta);
    if (n > ST_MAX_META) {
        demix__set_err(err, cap,
                       "\"__metadata__\" has %d entries, more than %d", n,
                       ST_MAX_META);
        return DEMIX_EFORMAT;
    }
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) {
        demix__set_err(err, cap, "out of memory reading \"__metadata__\"");
        return DEMIX_ENOMEM;
    }
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            demix__set_err(err, cap,
                           "\"__metadata__\" key %s is %s, expected a string",
                           quote(e->string).text, json_type_name(e));
            return DEMIX_EFORMAT;
        }
        for (int j = 0; j < f->meta_count; j++) {
            if (strcmp(f->meta_keys[j], e->string) == 0) {
                demix__set_err(err, cap,
                               "\"__metadata__\" key %s appears twice",
                               quote(e->string).text);
                return DEMIX_EFORMAT;
            }
        }
        char *k = strdup(e->string);
        char *v = strdup(e->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            demix__set_err(err, cap, "out of memory reading \"__metadata__\"");
            return DEMIX_ENOMEM;
        }
        f->meta_keys[f->meta_count] = k;
        f->meta_values[f->meta_count] = v;
        f->meta_count++;
    }
    return DEMIX_OK;
}

static int cmp_name(const void *a, const void *b)
{
    const demix_st_tensor *x = *(const demix_st_tensor *const *)a;
    const demix_st_tensor *y = *(const demix_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

/* Duplicate names and overlapping data, over the whole set. */
static int check_set(demix_st_file *f, span *spans, char *err, size_t cap)
{
    int n = f->count;
    if (n < 2)
        return DEMIX_OK;
    const demix_st_tensor **by_name = malloc((size_t)n * sizeof *by_name);
    if (!by_name) {
        demix__set_err(err, cap, "out of memory checking tensor names");
        return DEMIX_ENOMEM;
    }
    for (int i = 0; i < n; i++)
        by_name[i] = &f->tensors[i];
    qsort(by_name, (size_t)n, sizeof *by_name, cmp_name);
    for (int i = 1; i < n; i++) {
        if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0) {
            demix__set_err(err, cap, "tensor %s appears twice in the header",
                           quote(by_name[i]->name).text);
            free(by_name);
            return DEMIX_EFORMAT;
        }
    }
    free(by_name);

    /* Sorted by begin, a tensor overlaps an earlier one exactly when it
     * begins before the furthest end seen so far. Empty tensors hold no
     * bytes and overlap nothing. */
    qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    int last = -1; /* the non-empty span with the furthest end so far */
    for (int i = 0; i < n; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (last >= 0 && spans[i].begin < spans[last].end) {
            demix__set_err(err, cap,
                           "tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                           "] overlap tensor %s at [%" PRIu64 ", %" PRIu64 "]",
                           quote(f->tensors[spans[i].index].name).text,
                           spans[i].begin, spans[i].end,
                           quote(f->tensors[spans[last].index].name).text,
                           spans[last].begin, spans[last].end);
            return DEMIX_EFORMAT;
        }
        if (last < 0 || spans[i].end > spans[last].end)
            last = i;
    }
    return DEMIX_OK;
}

int demix_st_parse(const void *buf, size_t size, demix_st_file *out, char *err,
                   size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!out) {
        demix__set_err(err, err_cap, "safetensors: no output struct");
        return DEMIX_EARG;
    }
    memset(out, 0, sizeof *out);
    if (!buf) {
        demix__set_err(err, err_cap, "safetensors: no buffer");
        return DEMIX_EARG;
    }
    const unsigned char *bytes = buf;
    if (size < 8) {
        demix__set_err(
            err, err_cap,
            "file is %zu bytes, too short for the 8-byte header length", size);
        return DEMIX_EFORMAT;
    }
    uint64_t header_bytes = load_le64(bytes);
    if (header_bytes > DEMIX_ST_MAX_HEADER_BYTES) {
        demix__set_err(err, err_cap,
                       "header length %" PRIu64
                       " bytes exceeds the cap of %u bytes",
                       header_bytes, (unsigned)DEMIX_ST_MAX_HEADER_BYTES);
        return DEMIX_EFORMAT;
    }
    if (header_bytes > size - 8) {
        demix__set_err(err, err_cap,
                       "header length %" PRIu64
                       " bytes runs beyond the end of the file (%zu bytes)",
                       header_bytes, size);
        return DEMIX_EFORMAT;
    }
    if (header_bytes == 0) {
        demix__set_err(err, err_cap, "header JSON is empty (header length 0)");
        return DEMIX_EFORMAT;
    }
    const char *json = (const char *)bytes + 8;
    size_t json_bytes = (size_t)header_bytes;
    const unsigned char *data = bytes + 8 + json_bytes;
    uint64_t data_bytes = (uint64_t)(size - 8 - json_bytes);

    if (count_json_tokens(json, json_bytes) > ST_MAX_JSON_TOKENS) {
        demix__set_err(
            err, err_cap,
            "header JSON has more than %u values; not a model header",
            ST_MAX_JSON_TOKENS);
        return DEMIX_EFORMAT;
    }
    char *copy = malloc(json_bytes + 1);
    if (!copy) {
        demix__set_err(err, err_cap,
                       "out of memory copying the %zu-byte header", json_bytes);
        return DEMIX_ENOMEM;
    }
    memcpy(copy, json, json_bytes);
    copy[json_bytes] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, json_bytes, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - copy) : 0;
        demix__set_err(
            err, err_cap,
            "header JSON does not parse (error near byte %zu of %zu)", at,
            json_bytes);
        free(copy);
        return DEMIX_EFORMAT;
    }
    for (size_t i = end ? (size_t)(end - copy) : json_bytes; i < json_bytes;
         i++) {
        char c = copy[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            demix__set_err(
                err, err_cap,
                "header JSON is followed by other bytes (at byte %zu of "
                "%zu); only space padding may follow",
                i, json_bytes);
            cJSON_Delete(root);
            free(copy);
            return DEMIX_EFORMAT;
        }
    }
    free(copy);
    if (!cJSON_IsObject(root)) {
        demix__set_err(err, err_cap, "header JSON is %s, expected an object",
                       json_type_name(root));
        cJSON_Delete(root);
        return DEMIX_EFORMAT;
    }

    int rc = DEMIX_OK;
    int entries = 0, meta_seen = 0;
    span *spans = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta_seen++) {
                demix__set_err(err, err_cap, "\"__metadata__\" appears twice");
                rc = DEMIX_EFORMAT;
                goto done;
            }
        } else {
            entries++;
        }
    }
    if (entries > DEMIX_ST_MAX_TENSORS) {
        demix__set_err(err, err_cap, "header lists %d tensors, more than %d",
                       entries, DEMIX_ST_MAX_TENSORS);
        rc = DEMIX_EFORMAT;
        goto done;
    }
    out->tensors = calloc((size_t)entries + 1, sizeof *out->tensors);
    spans = calloc((size_t)entries + 1, sizeof *spans);
    if (!out->tensors || !spans) {
        demix__set_err(err, err_cap, "out of memory for %d tensor entries",
                       entries);
        rc = DEMIX_ENOMEM;
        goto done;
    }
    for (const cJSON *e = root->child; e && rc == DEMIX_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            rc = parse_metadata(e, out, err, err_cap);
            continue;
        }
        int i = out->count;
        spans[i].index = i;
        rc = parse_entry(e, &out->tensors[i], &spans[i], data, data_bytes, err,
                         err_cap);
        if (rc == DEMIX_OK)
            out->count++;
    }
    if (rc == DEMIX_OK && !out->meta_keys) {
        out->meta_keys = calloc(1, sizeof *out->meta_keys);
        out->meta_values = calloc(1, sizeof *out->meta_values);
        if (!out->meta_keys || !out->meta_values) {
            demix__set_err(err, err_cap, "out of memory");
            rc = DEMIX_ENOMEM;
        }
    }
    if (rc == DEMIX_OK)
        rc = check_set(out, spans, err, err_cap);

done:
    free(spans);
    cJSON_Delete(root);
    if (rc)
        demix_st_free(out);
    return rc;
}

void demix_st_free(demix_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const demix_st_tensor *demix_st_find(const demix_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *demix_st_meta(const demix_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

/* ------------------------------------------------------------ widening */

static float bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE half -> single, exact: zero, subnormals (m x 2^-24), normals,
 * infinities and NaNs (payload kept, so a NaN stays a NaN). */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)man * 0x1p-24f; /* exact: man < 2^11 */
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

int demix_st_read_f32(const demix_st_tensor *t, float *dst, size_t n, char *err,
                      size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!t || (!dst && n)) {
        demix__set_err(err, err_cap,
                       "safetensors: read_f32 needs a tensor and a "
                       "destination");
        return DEMIX_EARG;
    }
    if ((uint64_t)n != (uint64_t)t->elements) {
        demix__set_err(err, err_cap,
                       "tensor %s: holds %" PRId64
                       " elements, %zu were asked for",
                       quote(t->name).text, t->elements, n);
        return DEMIX_EFORMAT;
    }
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case DEMIX_ST_F32:
        for (size_t i = 0; i < n; i++, p += 4)
            dst[i] = bits_to_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                 (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        return DEMIX_OK;
    case DEMIX_ST_F16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        return DEMIX_OK;
    case DEMIX_ST_BF16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = bits_to_f32((uint32_t)p[0] << 16 | (uint32_t)p[1] << 24);
        return DEMIX_OK;
    default:
        demix__set_err(
            err, err_cap,
            "tensor %s: dtype %s cannot be read as float32 (expected F32, "
            "F16 or BF16)",
            quote(t->name).text, t->dtype_name);
        return DEMIX_EFORMAT;
    }
}

/* ------------------------------------------------------------ files */

/* DEMIX_EIO when the file cannot be opened or read (path and strerror in
 * err), DEMIX_EFORMAT when it is not a regular file or is larger than
 * max_bytes (a property of the content, not a failure to read), DEMIX_ENOMEM
 * when the buffer cannot be had. */
int demix_read_file(const char *path, size_t max_bytes, unsigned char **data,
                    size_t *size, char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!path || !data || !size) {
        demix__set_err(err, err_cap,
                       "read_file: path, data and size are required");
        return DEMIX_EARG;
    }
    *data = NULL;
    *size = 0;
    int fd;
    do
        fd = open(path, O_RDONLY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        demix__set_err(err, err_cap, "%s: cannot open: %s", path,
                       strerror(errno));
        return DEMIX_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        demix__set_err(err, err_cap, "%s: cannot stat: %s", path,
                       strerror(errno));
        close(fd);
        return DEMIX_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        demix__set_err(err, err_cap, "%s: not a regular file", path);
        close(fd);
        return DEMIX_EFORMAT;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max_bytes) {
        demix__set_err(
            err, err_cap,
            "%s: file is %jd bytes, more than the limit of %zu bytes", path,
            (intmax_t)st.st_size, max_bytes);
        close(fd);
        return DEMIX_EFORMAT;
    }
    size_t want = (size_t)st.st_size;
    unsigned char *buf = malloc(want ? want : 1);
    if (!buf) {
        demix__set_err(err, err_cap, "%s: out of memory for %zu bytes", path,
                       want);
        close(fd);
        return DEMIX_ENOMEM;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            demix__set_err(err, err_cap, "%s: read failed: %s", path,
                           strerror(errno));
            free(buf);
            close(fd);
            return DEMIX_EIO;
        }
        if (r == 0) {
            demix__set_err(
                err, err_cap,
                "%s: file shrank while being read (%zu of %zu bytes)", path,
                got, want);
            free(buf);
            close(fd);
            return DEMIX_EIO;
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = want;
    return DEMIX_OK;
}
