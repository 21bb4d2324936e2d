/*
 * engine.c - backend choice, slot bookkeeping and argument checks: the only
 * file that knows both backends.
 *
 * Slots are handed out from a stack of free ids so open/close cost O(1) and
 * never allocate. A step's slot list is checked (range, open, distinct)
 * before the backend sees it, using a per-engine stamp array instead of a
 * per-step set, so the check allocates nothing either.
 *
 * Pipelined steps (submit/collect): a ring of DEMIX_ENGINE_MAX_IN_FLIGHT + 1
 * input and output buffers from the backend's host_alloc (page-locked on
 * CUDA). Step k uses entry k % 3: with at most two steps in flight at a
 * submit, the entry it takes is neither in flight nor the last collected
 * output (which stays readable until the next collect). A backend without
 * submit/wait (the CPU) runs the step inside submit, so its outputs are the
 * synchronous ones, bit for bit.
 *
 * Output shapes (engine.h): each slot has one (default: every source,
 * float32). At submit, when a listed slot has another, the step gets a
 * row_shape per row with its byte offset in the packed output (in the
 * ring entry, from host_alloc). A backend with submit_shaped packs on its
 * device; otherwise the step runs into a float32 scratch buffer and
 * demix__pack_row packs each row into the ring's output here. A step whose
 * slots all have the default shape takes the unshaped path, unchanged.
 *
 * Thread context: an engine belongs to one thread at a time (the server's
 * scheduler thread); nothing here is shared between engines.
 */
#include "engine_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct demix_engine {
    const demix_backend_ops *ops;
    void *ctx;
    const demix_model *model;
    int max_slots;
    unsigned char *slot_open;  /* [max_slots] */
    int *free_slots;           /* stack of closed slot ids */
    int free_count;
    uint32_t *seen_stamp;      /* [max_slots] duplicate check per step */
    uint32_t stamp;
    char describe[512];
    char error[512];
    /* output shapes */
    demix_row_shape *slot_shape; /* [max_slots], offset unused */
    size_t *slot_bytes;          /* [max_slots] row bytes in its shape */
    unsigned char *slot_custom;  /* [max_slots] not the default shape */
    float *scratch;              /* full outputs before packing (no
                                    submit_shaped) */
    size_t scratch_cap;          /* floats */
    /* pipelined steps */
    struct {
        float *in, *out;
        size_t in_cap, out_cap; /* floats */
        int n;                  /* rows of the step that used it last */
        demix_row_shape *shapes; /* [shapes_cap], when shaped */
        size_t shapes_cap;
        int shaped;         /* the step's rows are packed by shape */
        size_t total_bytes; /* its output's bytes */
    } ring[DEMIX_ENGINE_MAX_IN_FLIGHT + 1];
    uint64_t submitted, collected;
    int have_output; /* the entry of step collected - 1 holds an output */
};

#define RING (DEMIX_ENGINE_MAX_IN_FLIGHT + 1)

#define ENGINE_ERROR(e, ...) snprintf((e)->error, sizeof (e)->error, __VA_ARGS__)

void demix_engine_options_init(demix_engine_options *opt)
{
    if (!opt)
        return;
    memset(opt, 0, sizeof *opt);
    opt->backend = DEMIX_BACKEND_AUTO;
    opt->precision = DEMIX_PRECISION_DEFAULT;
    opt->max_slots = 1;
    opt->pool = NULL; /* single-threaded unless the driver gives a pool */
}

int demix_backend_parse(const char *text, demix_backend *out)
{
    if (!text || !out)
        return DEMIX_EARG;
    if (strcmp(text, "auto") == 0)
        *out = DEMIX_BACKEND_AUTO;
    else if (strcmp(text, "cpu") == 0)
        *out = DEMIX_BACKEND_CPU;
    else if (strcmp(text, "cuda") == 0)
        *out = DEMIX_BACKEND_CUDA;
    else
        return DEMIX_EARG;
    return DEMIX_OK;
}

int demix_engine_create(const demix_model *model,
                        const demix_engine_options *opt, demix_engine **out,
                        char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = '\0';
    if (!out) {
        demix__set_err(err, err_cap, "engine: no output pointer");
        return DEMIX_EARG;
    }
    *out = NULL;
    if (!model || !opt) {
        demix__set_err(err, err_cap, "engine: model and options are required");
        return DEMIX_EARG;
    }
    if (opt->max_slots < 1 || opt->max_slots > (1 << 20)) {
        demix__set_err(
            err, err_cap,
            "engine: max_slots must be between 1 and 1048576 (got %d)",
            opt->max_slots);
        return DEMIX_EARG;
    }

    const demix_backend_ops *ops = NULL;
    void *ctx = NULL;
    char why[512] = "";
    int rc = DEMIX_OK;
    if (opt->backend == DEMIX_BACKEND_CUDA || opt->backend == DEMIX_BACKEND_AUTO) {
        const demix_backend_ops *cuda = demix__cuda_backend();
        if (!cuda) {
            snprintf(why, sizeof why,
                     "this build has no CUDA backend (built without nvcc or "
                     "with -DDEMIX_CUDA=OFF)");
            rc = DEMIX_EDEVICE;
        } else {
            rc = cuda->create(model, opt, &ctx, why, sizeof why);
            if (rc == DEMIX_OK)
                ops = cuda;
        }
        if (rc && opt->backend == DEMIX_BACKEND_CUDA) {
            demix__set_err(err, err_cap, "cuda backend: %s", why);
            return rc;
        }
        /* A lack of memory for the asked slots is the caller's to fix, not
         * a reason to fall back silently to a far slower CPU. */
        if (rc == DEMIX_ENOMEM && cuda) {
            demix__set_err(err, err_cap, "cuda backend: %s", why);
            return rc;
        }
    } else if (opt->backend != DEMIX_BACKEND_CPU) {
        demix__set_err(err, err_cap, "engine: unknown backend %d",
                       (int)opt->backend);
        return DEMIX_EARG;
    }
    if (!ops) {
        ops = demix__cpu_backend();
        rc = ops->create(model, opt, &ctx, err, err_cap);
        if (rc)
            return rc;
        /* Leave the reason for the fallback where the caller can log it:
         * a machine without a GPU is the common case, said plainly. */
        if (opt->backend == DEMIX_BACKEND_AUTO && !strncmp(why, "no GPU", 6))
            demix__set_err(err, err_cap, "no GPU, using the CPU%s", why + 6);
        else if (opt->backend == DEMIX_BACKEND_AUTO)
            demix__set_err(err, err_cap, "using the CPU backend: %s", why);
    }

    demix_engine *e = calloc(1, sizeof *e);
    int S = opt->max_slots;
    if (e) {
        e->slot_open = calloc((size_t)S, 1);
        e->free_slots = malloc((size_t)S * sizeof *e->free_slots);
        e->seen_stamp = calloc((size_t)S, sizeof *e->seen_stamp);
        e->slot_shape = calloc((size_t)S, sizeof *e->slot_shape);
        e->slot_bytes = calloc((size_t)S, sizeof *e->slot_bytes);
        e->slot_custom = calloc((size_t)S, 1);
    }
    if (!e || !e->slot_open || !e->free_slots || !e->seen_stamp ||
        !e->slot_shape || !e->slot_bytes || !e->slot_custom) {
        ops->destroy(ctx);
        if (e) {
            free(e->slot_open);
            free(e->free_slots);
            free(e->seen_stamp);
            free(e->slot_shape);
            free(e->slot_bytes);
            free(e->slot_custom);
            free(e);
        }
        demix__set_err(err, err_cap, "engine: out of memory for %d slots", S);
        return DEMIX_ENOMEM;
    }
    e->ops = ops;
    e->ctx = ctx;
    e->model = model;
    e->max_slots = S;
    /* Lowest ids first: slot 0 is on top of the stack. */
    for (int i = 0; i < S; i++)
        e->free_slots[i] = S - 1 - i;
    e->free_count = S;
    snprintf(e->describe, sizeof e->describe, "%s", ops->describe(ctx));
    *out = e;
    return DEMIX_OK;
}

static void ring_free(demix_engine *e, void *p)
{
    if (!p)
        return;
    if (e->ops->host_free)
        e->ops->host_free(e->ctx, p);
    else
        free(p);
}

void demix_engine_destroy(demix_engine *e)
{
    if (!e)
        return;
    /* steps in flight still write into the ring: let them finish */
    while (e->ops->wait && e->collected < e->submitted) {
        (void)e->ops->wait(e->ctx);
        e->collected++;
    }
    for (int i = 0; i < RING; i++) {
        ring_free(e, e->ring[i].in);
        ring_free(e, e->ring[i].out);
        ring_free(e, e->ring[i].shapes);
    }
    e->ops->destroy(e->ctx);
    free(e->scratch);
    free(e->slot_shape);
    free(e->slot_bytes);
    free(e->slot_custom);
    free(e->slot_open);
    free(e->free_slots);
    free(e->seen_stamp);
    free(e);
}

const char *demix_engine_backend_name(const demix_engine *e)
{
    return e ? e->ops->name : "none";
}

const char *demix_engine_describe(const demix_engine *e)
{
    return e ? e->describe : "";
}

const demix_model_config *demix_engine_config(const demix_engine *e)
{
    return e ? &e->model->config : NULL;
}

int demix_engine_max_slots(const demix_engine *e)
{
    return e ? e->max_slots : 0;
}

int demix_engine_open_count(const demix_engine *e)
{
    return e ? e->max_slots - e->free_count : 0;
}

int demix_engine_open_slot(demix_engine *e, int *slot)
{
    if (!e || !slot)
        return DEMIX_EARG;
    if (e->free_count == 0) {
        ENGINE_ERROR(e, "all %d slots are open", e->max_slots);
        return DEMIX_EBUSY;
    }
    int s = e->free_slots[e->free_count - 1];
    int rc = e->ops->reset_slot(e->ctx, s);
    if (rc) {
        ENGINE_ERROR(e, "open slot %d: %s", s, e->ops->last_error(e->ctx));
        return rc;
    }
    e->free_count--;
    e->slot_open[s] = 1;
    e->slot_custom[s] = 0;
    *slot = s;
    return DEMIX_OK;
}

int demix_engine_close_slot(demix_engine *e, int slot)
{
    if (!e)
        return DEMIX_EARG;
    if (slot < 0 || slot >= e->max_slots || !e->slot_open[slot]) {
        ENGINE_ERROR(e, "close: slot %d is not open", slot);
        return DEMIX_EARG;
    }
    e->slot_open[slot] = 0;
    e->free_slots[e->free_count++] = slot;
    return DEMIX_OK;
}

int demix_engine_reset_slot(demix_engine *e, int slot)
{
    if (!e)
        return DEMIX_EARG;
    if (slot < 0 || slot >= e->max_slots || !e->slot_open[slot]) {
        ENGINE_ERROR(e, "reset: slot %d is not open", slot);
        return DEMIX_EARG;
    }
    int rc = e->ops->reset_slot(e->ctx, slot);
    if (rc)
        ENGINE_ERROR(e, "reset slot %d: %s", slot, e->ops->last_error(e->ctx));
    return rc;
}

/* Range, open and distinct; "what" names the call in the error. */
static int check_list(demix_engine *e, const char *what, int n,
                      const int *slots)
{
    if (++e->stamp == 0) { /* wrapped: old stamps could collide */
        memset(e->seen_stamp, 0, (size_t)e->max_slots * sizeof *e->seen_stamp);
        e->stamp = 1;
    }
    for (int i = 0; i < n; i++) {
        int s = slots[i];
        if (s < 0 || s >= e->max_slots || !e->slot_open[s]) {
            ENGINE_ERROR(e, "%s: slot %d (entry %d) is not open", what, s, i);
            return DEMIX_EARG;
        }
        if (e->seen_stamp[s] == e->stamp) {
            ENGINE_ERROR(e, "%s: slot %d is listed twice", what, s);
            return DEMIX_EARG;
        }
        e->seen_stamp[s] = e->stamp;
    }
    return DEMIX_OK;
}

int demix_engine_step(demix_engine *e, int n, const int *slots,
                      const float *in, float *out)
{
    if (!e)
        return DEMIX_EARG;
    if (n < 1 || n > e->max_slots || !slots || !in || !out) {
        ENGINE_ERROR(e, "step: n must be 1..%d with slots, in and out given "
                        "(n = %d)", e->max_slots, n);
        return DEMIX_EARG;
    }
    if (check_list(e, "step", n, slots))
        return DEMIX_EARG;
    int rc = e->ops->step(e->ctx, n, slots, in, out);
    if (rc)
        ENGINE_ERROR(e, "step: %s", e->ops->last_error(e->ctx));
    return rc;
}

/* -------------------------------------------------------- output shapes */

void demix_output_shape_init(demix_output_shape *sh,
                             const demix_model_config *cfg)
{
    if (!sh)
        return;
    memset(sh, 0, sizeof *sh);
    sh->format = DEMIX_SAMPLE_F32;
    sh->count = cfg ? cfg->num_sources : 0;
    for (int t = 0; t < DEMIX_MAX_SOURCES; t++) {
        sh->sources[t] = t;
        sh->gains[t] = 1.0f;
    }
}

/* The compact form of a valid shape; 0, or -1 when it is not valid. */
static int compact_shape(const demix_output_shape *sh,
                         const demix_model_config *cfg, demix_row_shape *out)
{
    const int T = cfg->num_sources;
    if (!sh || (sh->format != DEMIX_SAMPLE_F32 &&
                sh->format != DEMIX_SAMPLE_S16))
        return -1;
    memset(out, 0, sizeof *out);
    out->format = (uint8_t)sh->format;
    out->mix = sh->mix ? 1 : 0;
    if (sh->mix) {
        for (int t = 0; t < T; t++) {
            float g = sh->gains[t];
            if (!isfinite(g))
                return -1;
            out->gains[t] = g;
        }
        out->planes = 1;
        return 0;
    }
    if (sh->count < 1 || sh->count > T)
        return -1;
    for (int j = 0; j < sh->count; j++) {
        if (sh->sources[j] < 0 || sh->sources[j] >= T)
            return -1;
        out->sources[j] = (uint8_t)sh->sources[j];
    }
    out->planes = (uint8_t)sh->count;
    return 0;
}

static size_t shape_bytes(const demix_row_shape *r,
                          const demix_model_config *cfg)
{
    return (size_t)r->planes * (size_t)cfg->channels *
           (size_t)cfg->hop_samples *
           (r->format == DEMIX_SAMPLE_S16 ? 2 : 4);
}

/* Every source in order, float32: the unshaped layout. */
static int is_default_shape(const demix_row_shape *r,
                            const demix_model_config *cfg)
{
    if (r->format != DEMIX_SAMPLE_F32 || r->mix ||
        r->planes != cfg->num_sources)
        return 0;
    for (int t = 0; t < cfg->num_sources; t++)
        if (r->sources[t] != t)
            return 0;
    return 1;
}

size_t demix_output_shape_row_bytes(const demix_output_shape *sh,
                                    const demix_model_config *cfg)
{
    demix_row_shape r;
    if (!cfg || compact_shape(sh, cfg, &r))
        return 0;
    return shape_bytes(&r, cfg);
}

int demix_engine_set_output(demix_engine *e, int slot,
                            const demix_output_shape *sh)
{
    if (!e)
        return DEMIX_EARG;
    if (slot < 0 || slot >= e->max_slots || !e->slot_open[slot]) {
        ENGINE_ERROR(e, "set_output: slot %d is not open", slot);
        return DEMIX_EARG;
    }
    const demix_model_config *cfg = &e->model->config;
    demix_row_shape r;
    if (compact_shape(sh, cfg, &r)) {
        ENGINE_ERROR(e, "set_output: the shape is not valid for this model "
                        "(format F32 or S16; 1..%d sources in 0..%d, or a mix "
                        "with finite gains)",
                     cfg->num_sources, cfg->num_sources - 1);
        return DEMIX_EARG;
    }
    e->slot_shape[slot] = r;
    e->slot_bytes[slot] = shape_bytes(&r, cfg);
    e->slot_custom[slot] = !is_default_shape(&r, cfg);
    return DEMIX_OK;
}

void demix__pack_row(const float *src, int T, int CH,
                     const demix_row_shape *sh, void *dst)
{
    float *df = dst;
    int16_t *ds = dst;
    const int s16 = sh->format == DEMIX_SAMPLE_S16;
    if (sh->mix) {
        for (int k = 0; k < CH; k++) {
            float acc = 0.0f;
            for (int t = 0; t < T; t++) {
                if (sh->gains[t] == 0.0f)
                    continue;
                float term = sh->gains[t] * src[(size_t)t * (size_t)CH + k];
                acc = acc + term;
            }
            if (s16)
                ds[k] = demix_sample_to_s16(acc);
            else
                df[k] = acc;
        }
        return;
    }
    for (int p = 0; p < sh->planes; p++) {
        const float *a = src + (size_t)sh->sources[p] * (size_t)CH;
        if (s16)
            for (int k = 0; k < CH; k++)
                ds[(size_t)p * (size_t)CH + k] = demix_sample_to_s16(a[k]);
        else
            memcpy(df + (size_t)p * (size_t)CH, a, (size_t)CH * sizeof *a);
    }
}

/* ------------------------------------------------------ pipelined steps */

/* Grow one ring buffer to at least `floats` floats (its contents are not
 * kept). The entry is neither in flight nor the readable output here. */
static int ring_grow(demix_engine *e, float **buf, size_t *cap, size_t floats,
                     const char *what)
{
    if (*cap >= floats)
        return DEMIX_OK;
    ring_free(e, *buf);
    *buf = NULL;
    *cap = 0;
    size_t bytes = floats * sizeof(float);
    void *p = e->ops->host_alloc ? e->ops->host_alloc(e->ctx, bytes)
                                 : malloc(bytes);
    if (!p) {
        ENGINE_ERROR(e, "%s: out of host memory for a %zu-byte I/O buffer",
                     what, bytes);
        return DEMIX_ENOMEM;
    }
    *buf = p;
    *cap = floats;
    return DEMIX_OK;
}

static size_t in_floats(const demix_engine *e, int n);
static size_t out_floats(const demix_engine *e, int n);

/* Ring entry q's row shapes for n rows: grown (from host_alloc, which the
 * CUDA backend reads asynchronously) only when n passes its size. */
static int shapes_grow(demix_engine *e, int q, int n)
{
    if (e->ring[q].shapes_cap >= (size_t)n)
        return DEMIX_OK;
    ring_free(e, e->ring[q].shapes);
    e->ring[q].shapes_cap = 0;
    size_t bytes = (size_t)n * sizeof(demix_row_shape);
    e->ring[q].shapes = e->ops->host_alloc
                            ? e->ops->host_alloc(e->ctx, bytes)
                            : malloc(bytes);
    if (!e->ring[q].shapes) {
        ENGINE_ERROR(e, "submit: out of host memory for %d row shapes", n);
        return DEMIX_ENOMEM;
    }
    e->ring[q].shapes_cap = (size_t)n;
    return DEMIX_OK;
}

/* Ring entry q's input for an asynchronous backend, which reads it after
 * submit returns: the caller's buffer when it is that entry's (filled in
 * place), else a copy into it. */
static int stage_input(demix_engine *e, int q, int n, const float *in)
{
    if (in != e->ring[q].in) {
        int rc = ring_grow(e, &e->ring[q].in, &e->ring[q].in_cap,
                           in_floats(e, n), "submit");
        if (rc)
            return rc;
        memcpy(e->ring[q].in, in, in_floats(e, n) * sizeof(float));
    } else if (e->ring[q].in_cap < in_floats(e, n)) {
        ENGINE_ERROR(e, "submit: the input buffer was asked for fewer than "
                        "%d rows", n);
        return DEMIX_EARG;
    }
    return DEMIX_OK;
}

/* The host packer's float32 buffer for n full rows (grown, never per step
 * at a steady size). */
static int scratch_grow(demix_engine *e, int n, const char *what)
{
    if (e->scratch_cap >= out_floats(e, n))
        return DEMIX_OK;
    free(e->scratch);
    e->scratch_cap = 0;
    e->scratch = malloc(out_floats(e, n) * sizeof(float));
    if (!e->scratch) {
        ENGINE_ERROR(e, "%s: out of memory for the packing buffer", what);
        return DEMIX_ENOMEM;
    }
    e->scratch_cap = out_floats(e, n);
    return DEMIX_OK;
}

/* A step with output shapes: fill ring entry q's row shapes and offsets,
 * then let the backend pack on its device, or run the step into the
 * scratch buffer and pack here. */
static int submit_shaped(demix_engine *e, int q, int n, const int *slots,
                         const float *in)
{
    int rc = shapes_grow(e, q, n);
    if (rc)
        return rc;
    const demix_model_config *cfg = &e->model->config;
    demix_row_shape *sh = e->ring[q].shapes;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        int s = slots[i];
        if (e->slot_custom[s]) {
            sh[i] = e->slot_shape[s];
        } else {
            memset(&sh[i], 0, sizeof sh[i]);
            sh[i].format = DEMIX_SAMPLE_F32;
            sh[i].planes = (uint8_t)cfg->num_sources;
            for (int t = 0; t < cfg->num_sources; t++)
                sh[i].sources[t] = (uint8_t)t;
        }
        sh[i].offset = off;
        off += shape_bytes(&sh[i], cfg);
    }
    e->ring[q].total_bytes = off;
    if (e->ops->submit_shaped) {
        rc = stage_input(e, q, n, in);
        if (rc)
            return rc;
        return e->ops->submit_shaped(e->ctx, n, slots, e->ring[q].in,
                                     e->ring[q].out, sh, off);
    }
    /* host packing: the full outputs into the scratch, then row by row */
    rc = scratch_grow(e, n, "submit");
    if (rc)
        return rc;
    /* an asynchronous backend packs on its device (submit_shaped): its
     * wait() could not pick this step out of the ones in flight */
    DEMIX_ASSERT(!e->ops->submit);
    rc = e->ops->step(e->ctx, n, slots, in, e->scratch);
    if (rc)
        return rc;
    const int CH = cfg->channels * cfg->hop_samples;
    const size_t row = (size_t)cfg->num_sources * (size_t)CH;
    unsigned char *out = (unsigned char *)e->ring[q].out;
    for (int i = 0; i < n; i++)
        demix__pack_row(e->scratch + (size_t)i * row, cfg->num_sources, CH,
                        &sh[i], out + sh[i].offset);
    return DEMIX_OK;
}

static size_t in_floats(const demix_engine *e, int n)
{
    const demix_model_config *c = &e->model->config;
    return (size_t)n * (size_t)c->channels * (size_t)c->hop_samples;
}

static size_t out_floats(const demix_engine *e, int n)
{
    return in_floats(e, n) * (size_t)e->model->config.num_sources;
}

float *demix_engine_input_buffer(demix_engine *e, int n)
{
    if (!e)
        return NULL;
    if (n < 1 || n > e->max_slots) {
        ENGINE_ERROR(e, "input_buffer: n must be 1..%d (n = %d)",
                     e->max_slots, n);
        return NULL;
    }
    int q = (int)(e->submitted % RING);
    if (ring_grow(e, &e->ring[q].in, &e->ring[q].in_cap, in_floats(e, n),
                  "input_buffer"))
        return NULL;
    return e->ring[q].in;
}

int demix_engine_reserve_io(demix_engine *e, int n)
{
    if (!e)
        return DEMIX_EARG;
    if (n < 1 || n > e->max_slots) {
        ENGINE_ERROR(e, "reserve_io: n must be 1..%d (n = %d)", e->max_slots,
                     n);
        return DEMIX_EARG;
    }
    if (e->submitted != e->collected) {
        ENGINE_ERROR(e, "reserve_io: %d steps are in flight; collect them "
                        "first", (int)(e->submitted - e->collected));
        return DEMIX_EBUSY;
    }
    e->have_output = 0; /* its buffer may move below */
    for (int q = 0; q < RING; q++) {
        int rc = ring_grow(e, &e->ring[q].in, &e->ring[q].in_cap,
                           in_floats(e, n), "reserve_io");
        if (!rc)
            rc = ring_grow(e, &e->ring[q].out, &e->ring[q].out_cap,
                           out_floats(e, n), "reserve_io");
        if (!rc)
            rc = shapes_grow(e, q, n);
        if (rc)
            return rc;
    }
    return e->ops->submit_shaped ? DEMIX_OK
                                 : scratch_grow(e, n, "reserve_io");
}

int demix_engine_submit(demix_engine *e, int n, const int *slots,
                        const float *in)
{
    if (!e)
        return DEMIX_EARG;
    if (n < 1 || n > e->max_slots || !slots || !in) {
        ENGINE_ERROR(e, "submit: n must be 1..%d with slots and in given "
                        "(n = %d)", e->max_slots, n);
        return DEMIX_EARG;
    }
    if (e->submitted - e->collected >= DEMIX_ENGINE_MAX_IN_FLIGHT) {
        ENGINE_ERROR(e, "submit: %d steps are in flight already; collect one "
                        "first", DEMIX_ENGINE_MAX_IN_FLIGHT);
        return DEMIX_EBUSY;
    }
    if (check_list(e, "submit", n, slots))
        return DEMIX_EARG;
    int q = (int)(e->submitted % RING);
    int rc = ring_grow(e, &e->ring[q].out, &e->ring[q].out_cap,
                       out_floats(e, n), "submit");
    if (rc)
        return rc;
    int shaped = 0;
    for (int i = 0; i < n && !shaped; i++)
        shaped = e->slot_custom[slots[i]];
    e->ring[q].shaped = shaped;
    e->ring[q].total_bytes = out_floats(e, n) * sizeof(float);
    if (shaped)
        rc = submit_shaped(e, q, n, slots, in);
    else if (!e->ops->submit) {
        /* synchronous backend: the step runs here, collect hands it over */
        rc = e->ops->step(e->ctx, n, slots, in, e->ring[q].out);
    } else {
        /* the backend reads its input asynchronously: from the ring entry,
         * which the caller filled in place or which gets a copy now */
        rc = stage_input(e, q, n, in);
        if (rc)
            return rc;
        rc = e->ops->submit(e->ctx, n, slots, e->ring[q].in, e->ring[q].out);
    }
    if (rc) {
        ENGINE_ERROR(e, "submit: %s", e->ops->last_error(e->ctx));
        return rc;
    }
    e->ring[q].n = n;
    e->submitted++;
    return DEMIX_OK;
}

int demix_engine_collect(demix_engine *e, float *out)
{
    if (!e)
        return DEMIX_EARG;
    if (e->collected == e->submitted) {
        ENGINE_ERROR(e, "collect: no step is in flight");
        return DEMIX_EARG;
    }
    int q = (int)(e->collected % RING);
    int rc = e->ops->wait ? e->ops->wait(e->ctx) : DEMIX_OK;
    e->collected++;
    if (rc) {
        e->have_output = 0;
        ENGINE_ERROR(e, "collect: %s", e->ops->last_error(e->ctx));
        return rc;
    }
    e->have_output = 1;
    if (out)
        memcpy(out, e->ring[q].out, e->ring[q].total_bytes);
    return DEMIX_OK;
}

const void *demix_engine_output_row(const demix_engine *e, int i,
                                    size_t *bytes)
{
    if (bytes)
        *bytes = 0;
    if (!e || !e->have_output)
        return NULL;
    int q = (int)((e->collected - 1) % RING);
    if (i < 0 || i >= e->ring[q].n)
        return NULL;
    const unsigned char *base = (const unsigned char *)e->ring[q].out;
    if (e->ring[q].shaped) {
        const demix_row_shape *sh = &e->ring[q].shapes[i];
        if (bytes)
            *bytes = shape_bytes(sh, &e->model->config);
        return base + sh->offset;
    }
    size_t row = out_floats(e, 1) * sizeof(float);
    if (bytes)
        *bytes = row;
    return base + (size_t)i * row;
}

const float *demix_engine_output(const demix_engine *e, int *n)
{
    if (n)
        *n = 0;
    if (!e || !e->have_output)
        return NULL;
    int q = (int)((e->collected - 1) % RING);
    if (n)
        *n = e->ring[q].n;
    return e->ring[q].out;
}

int demix_engine_in_flight(const demix_engine *e)
{
    return e ? (int)(e->submitted - e->collected) : 0;
}

const char *demix_engine_last_error(const demix_engine *e)
{
    return e ? e->error : "no engine";
}

void *demix__engine_backend_context(demix_engine *e)
{
    return e ? e->ctx : NULL;
}
