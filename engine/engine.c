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
 * Thread context: an engine belongs to one thread at a time (the server's
 * scheduler thread); nothing here is shared between engines.
 */
#include "engine_impl.h"

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
    /* pipelined steps */
    struct {
        float *in, *out;
        size_t in_cap, out_cap; /* floats */
        int n;                  /* rows of the step that used it last */
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
    if (opt->threads < 0 || opt->threads > 1024) {
        demix__set_err(err, err_cap,
                       "engine: threads must be between 0 and 1024");
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
        /* Leave the reason for the fallback where the caller can log it. */
        if (opt->backend == DEMIX_BACKEND_AUTO)
            demix__set_err(err, err_cap, "using the CPU backend: %s", why);
    }

    demix_engine *e = calloc(1, sizeof *e);
    int S = opt->max_slots;
    if (e) {
        e->slot_open = calloc((size_t)S, 1);
        e->free_slots = malloc((size_t)S * sizeof *e->free_slots);
        e->seen_stamp = calloc((size_t)S, sizeof *e->seen_stamp);
    }
    if (!e || !e->slot_open || !e->free_slots || !e->seen_stamp) {
        ops->destroy(ctx);
        if (e) {
            free(e->slot_open);
            free(e->free_slots);
            free(e->seen_stamp);
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
    }
    e->ops->destroy(e->ctx);
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
        if (rc)
            return rc;
    }
    return DEMIX_OK;
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
    if (!e->ops->submit) {
        /* synchronous backend: the step runs here, collect hands it over */
        rc = e->ops->step(e->ctx, n, slots, in, e->ring[q].out);
    } else {
        /* the backend reads its input asynchronously: from the ring entry,
         * which the caller filled in place or which gets a copy now */
        if (in != e->ring[q].in) {
            rc = ring_grow(e, &e->ring[q].in, &e->ring[q].in_cap,
                           in_floats(e, n), "submit");
            if (rc)
                return rc;
            memcpy(e->ring[q].in, in, in_floats(e, n) * sizeof(float));
        } else if (e->ring[q].in_cap < in_floats(e, n)) {
            ENGINE_ERROR(e, "submit: the input buffer was asked for fewer "
                            "than %d rows", n);
            return DEMIX_EARG;
        }
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
        memcpy(out, e->ring[q].out, out_floats(e, e->ring[q].n) * sizeof(float));
    return DEMIX_OK;
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
