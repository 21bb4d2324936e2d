/*
 * test_engine_pipeline.c - the pipelined step API of engine.h (submit,
 * collect, the engine's input and output buffers) on the CPU backend,
 * against demix_engine_step() on a twin engine of the same model:
 *
 * - pipelined_equals_step: 200 hops of random slot subsets in random
 *   orders, with up to DEMIX_ENGINE_MAX_IN_FLIGHT steps in flight, inputs
 *   written into the engine's input buffer or passed from the caller's
 *   own, outputs read from the engine's buffer or copied into the
 *   caller's: every collected output is bit-identical (memcmp) to the
 *   synchronous step's, in submission order, in fp32 and fast mode.
 * - slot_changes_between_submits: a reset, and a close + reopen, issued
 *   between submits act on the steps submitted after them, exactly as
 *   between synchronous steps; a synchronous step with steps in flight
 *   runs after them.
 * - pipeline_errors: submit with DEMIX_ENGINE_MAX_IN_FLIGHT in flight is
 *   DEMIX_EBUSY, collect with none in flight is DEMIX_EARG, a bad slot
 *   list is DEMIX_EARG and submits nothing, input_buffer(0) and
 *   input_buffer(max_slots + 1) are NULL, output() is NULL before the
 *   first collect; destroying an engine with steps in flight is clean.
 * - reserve_io_fixes_the_buffers: after demix_engine_reserve_io(SLOTS),
 *   the input and output buffers of 3 rounds of the ring, at batch sizes
 *   growing 1..SLOTS, are the same RING pointers over and over (nothing
 *   reallocates); the outputs still equal step()'s; reserve_io with a step
 *   in flight is DEMIX_EBUSY, with n = 0 or max_slots + 1 DEMIX_EARG, and
 *   it voids the last output.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

#define SLOTS 6
#define HOPS 200

static demix_model *random_model(uint64_t seed)
{
    demix_model *m = NULL;
    assert_int_equal(demix_model_create_random(24, 40, 0, 44100, seed, &m),
                     DEMIX_OK);
    return m;
}

static demix_engine *cpu_engine(const demix_model *m, demix_precision p)
{
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.backend = DEMIX_BACKEND_CPU;
    o.precision = p;
    o.max_slots = SLOTS;
    demix_engine *e = NULL;
    char err[256] = "";
    int rc = demix_engine_create(m, &o, &e, err, sizeof err);
    if (rc)
        fail_msg("engine create: %s (%s)", demix_errname(rc), err);
    return e;
}

static void open_all(demix_engine *e, int *ids)
{
    for (int i = 0; i < SLOTS; i++)
        assert_int_equal(demix_engine_open_slot(e, &ids[i]), DEMIX_OK);
}

/* A submitted step, remembered until it is collected. */
typedef struct pending {
    int n;
    float *ref; /* the synchronous engine's output of the same step */
} pending;

static void pipelined_equals_step(demix_precision prec, uint64_t seed)
{
    demix_model *m = random_model(seed);
    const demix_model_config *c = demix_model_get_config(m);
    const size_t in_row = (size_t)c->channels * c->hop_samples;
    const size_t out_row = in_row * c->num_sources;
    demix_engine *sync = cpu_engine(m, prec), *pipe = cpu_engine(m, prec);
    int ids[SLOTS], idp[SLOTS];
    open_all(sync, ids);
    open_all(pipe, idp);
    float *in = malloc(SLOTS * in_row * sizeof *in);
    float *own = malloc(SLOTS * out_row * sizeof *own);
    pending q[DEMIX_ENGINE_MAX_IN_FLIGHT + 1];
    for (int i = 0; i <= DEMIX_ENGINE_MAX_IN_FLIGHT; i++)
        q[i].ref = malloc(SLOTS * out_row * sizeof(float));
    assert_true(in && own);
    uint64_t st = seed ^ 0x9e3779b97f4a7c15ull;
    long head = 0, tail = 0, compared = 0;
    for (int h = 0; h < HOPS || tail < head; h++) {
        if (h < HOPS) {
            int list[SLOTS], n = 0;
            for (int s = 0; s < SLOTS; s++)
                if (demix_test_rand(&st) % 3)
                    list[n++] = s;
            if (!n)
                list[n++] = (int)(demix_test_rand(&st) % SLOTS);
            for (int i = n - 1; i > 0; i--) {
                int j = (int)(demix_test_rand(&st) % (uint64_t)(i + 1));
                int t = list[i];
                list[i] = list[j];
                list[j] = t;
            }
            demix_test_fill_uniform(in, (size_t)n * in_row, 0.5f, &st);
            pending *p = &q[head % (DEMIX_ENGINE_MAX_IN_FLIGHT + 1)];
            p->n = n;
            assert_int_equal(demix_engine_step(sync, n, list, in, p->ref),
                             DEMIX_OK);
            /* half the steps through the engine's buffer, half from ours */
            const float *src = in;
            if (demix_test_rand(&st) % 2) {
                float *buf = demix_engine_input_buffer(pipe, n);
                assert_non_null(buf);
                memcpy(buf, in, (size_t)n * in_row * sizeof *buf);
                memset(in, 0xff, (size_t)n * in_row * sizeof *in); /* NaN */
                src = buf;
            }
            int rc = demix_engine_submit(pipe, n, list, src);
            if (rc)
                fail_msg("submit: %s", demix_engine_last_error(pipe));
            memset(in, 0xff, (size_t)n * in_row * sizeof *in);
            head++;
        }
        /* collect when full, at the end, or at random */
        while (tail < head &&
               (demix_engine_in_flight(pipe) == DEMIX_ENGINE_MAX_IN_FLIGHT ||
                h >= HOPS || demix_test_rand(&st) % 4 == 0)) {
            pending *p = &q[tail % (DEMIX_ENGINE_MAX_IN_FLIGHT + 1)];
            int copy = (int)(demix_test_rand(&st) % 2);
            assert_int_equal(demix_engine_collect(pipe, copy ? own : NULL),
                             DEMIX_OK);
            int n = -1;
            const float *view = demix_engine_output(pipe, &n);
            assert_non_null(view);
            assert_int_equal(n, p->n);
            size_t bytes = (size_t)n * out_row * sizeof(float);
            assert_memory_equal(view, p->ref, bytes);
            if (copy)
                assert_memory_equal(own, p->ref, bytes);
            tail++;
            compared++;
        }
    }
    assert_int_equal(compared, HOPS);
    assert_int_equal(demix_engine_in_flight(pipe), 0);
    print_message("# %s: %ld pipelined steps bit-identical to step()\n",
                  prec == DEMIX_PRECISION_FP32 ? "fp32" : "fast", compared);
    for (int i = 0; i <= DEMIX_ENGINE_MAX_IN_FLIGHT; i++)
        free(q[i].ref);
    free(in);
    free(own);
    demix_engine_destroy(sync);
    demix_engine_destroy(pipe);
    demix_model_destroy(m);
}

static void test_pipelined_equals_step(void **state)
{
    (void)state;
    uint64_t seed = demix_test_seed();
    pipelined_equals_step(DEMIX_PRECISION_FP32, seed);
    pipelined_equals_step(DEMIX_PRECISION_FAST, seed + 1);
}

static void test_slot_changes_between_submits(void **state)
{
    (void)state;
    enum { N_HOPS = 12 };
    uint64_t seed = demix_test_seed() + 2;
    demix_model *m = random_model(seed);
    const demix_model_config *c = demix_model_get_config(m);
    const size_t in_row = (size_t)c->channels * c->hop_samples;
    const size_t out_row = in_row * c->num_sources;
    demix_engine *sync = cpu_engine(m, DEMIX_PRECISION_FP32);
    demix_engine *pipe = cpu_engine(m, DEMIX_PRECISION_FP32);
    int ids[SLOTS], idp[SLOTS];
    open_all(sync, ids);
    open_all(pipe, idp);
    float *in = malloc(3 * in_row * sizeof *in);
    float *ref = malloc(N_HOPS * 3 * out_row * sizeof *ref);
    float *got = malloc(3 * out_row * sizeof *got);
    assert_true(in && ref && got);
    uint64_t st = seed;
    int list[3] = {0, 1, 2};
    int queue[N_HOPS], qh = 0, qt = 0, checked = 0;
#define COLLECT_ONE()                                                          \
    do {                                                                       \
        assert_int_equal(demix_engine_collect(pipe, got), DEMIX_OK);           \
        assert_memory_equal(got, ref + (size_t)queue[qt++] * 3 * out_row,      \
                            3 * out_row * sizeof *got);                        \
        checked++;                                                             \
    } while (0)
    for (int h = 0; h < N_HOPS; h++) {
        demix_test_fill_uniform(in, 3 * in_row, 0.5f, &st);
        /* the same change on both engines before this hop, with steps of
         * the pipelined engine in flight (hops 3; 5 and 6) */
        if (h == 4) {
            assert_int_equal(demix_engine_in_flight(pipe), 1);
            assert_int_equal(demix_engine_reset_slot(sync, 1), DEMIX_OK);
            assert_int_equal(demix_engine_reset_slot(pipe, 1), DEMIX_OK);
        }
        if (h == 7) {
            int s1 = -1, s2 = -1;
            assert_int_equal(demix_engine_in_flight(pipe), 2);
            assert_int_equal(demix_engine_close_slot(sync, 2), DEMIX_OK);
            assert_int_equal(demix_engine_close_slot(pipe, 2), DEMIX_OK);
            assert_int_equal(demix_engine_open_slot(sync, &s1), DEMIX_OK);
            assert_int_equal(demix_engine_open_slot(pipe, &s2), DEMIX_OK);
            assert_int_equal(s1, 2);
            assert_int_equal(s2, 2);
        }
        float *r = ref + (size_t)h * 3 * out_row;
        assert_int_equal(demix_engine_step(sync, 3, list, in, r), DEMIX_OK);
        if (h == 9) {
            /* a synchronous step with steps 7 and 8 in flight runs after
             * them */
            assert_int_equal(demix_engine_in_flight(pipe), 2);
            assert_int_equal(demix_engine_step(pipe, 3, list, in, got),
                             DEMIX_OK);
            assert_memory_equal(got, r, 3 * out_row * sizeof *got);
            continue;
        }
        if (demix_engine_in_flight(pipe) == DEMIX_ENGINE_MAX_IN_FLIGHT)
            COLLECT_ONE();
        assert_int_equal(demix_engine_submit(pipe, 3, list, in), DEMIX_OK);
        queue[qh++] = h;
        if (h == 2 || h == 10 || h == 11)
            while (demix_engine_in_flight(pipe) > 0)
                COLLECT_ONE();
    }
#undef COLLECT_ONE
    assert_int_equal(checked, N_HOPS - 1);
    free(in);
    free(ref);
    free(got);
    demix_engine_destroy(sync);
    demix_engine_destroy(pipe);
    demix_model_destroy(m);
}

static void test_pipeline_errors(void **state)
{
    (void)state;
    demix_model *m = random_model(demix_test_seed() + 3);
    const demix_model_config *c = demix_model_get_config(m);
    const size_t in_row = (size_t)c->channels * c->hop_samples;
    demix_engine *e = cpu_engine(m, DEMIX_PRECISION_FP32);
    int ids[SLOTS];
    open_all(e, ids);
    assert_null(demix_engine_output(e, NULL));
    int n = 5;
    assert_null(demix_engine_output(e, &n));
    assert_int_equal(n, 0);
    assert_int_equal(demix_engine_collect(e, NULL), DEMIX_EARG);
    assert_null(demix_engine_input_buffer(e, 0));
    assert_null(demix_engine_input_buffer(e, SLOTS + 1));
    float *in = demix_engine_input_buffer(e, 2);
    assert_non_null(in);
    uint64_t st = 7;
    demix_test_fill_uniform(in, 2 * in_row, 0.5f, &st);
    int dup[2] = {1, 1}, closed[1] = {SLOTS}, good[2] = {0, 1};
    assert_int_equal(demix_engine_submit(e, 2, dup, in), DEMIX_EARG);
    assert_int_equal(demix_engine_submit(e, 1, closed, in), DEMIX_EARG);
    assert_int_equal(demix_engine_submit(e, 0, good, in), DEMIX_EARG);
    assert_int_equal(demix_engine_in_flight(e), 0);
    for (int i = 0; i < DEMIX_ENGINE_MAX_IN_FLIGHT; i++)
        assert_int_equal(demix_engine_submit(e, 2, good, in), DEMIX_OK);
    assert_int_equal(demix_engine_submit(e, 2, good, in), DEMIX_EBUSY);
    assert_true(strlen(demix_engine_last_error(e)) > 10);
    assert_int_equal(demix_engine_in_flight(e), DEMIX_ENGINE_MAX_IN_FLIGHT);
    assert_int_equal(demix_engine_collect(e, NULL), DEMIX_OK);
    assert_non_null(demix_engine_output(e, &n));
    assert_int_equal(n, 2);
    /* destroyed with a step in flight */
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

static void test_reserve_io_fixes_the_buffers(void **state)
{
    (void)state;
    enum { RING = DEMIX_ENGINE_MAX_IN_FLIGHT + 1 };
    demix_model *m = random_model(demix_test_seed() + 5);
    const demix_model_config *c = demix_model_get_config(m);
    const size_t in_row = (size_t)c->channels * c->hop_samples;
    const size_t out_row = in_row * c->num_sources;
    demix_engine *sync = cpu_engine(m, DEMIX_PRECISION_FP32);
    demix_engine *e = cpu_engine(m, DEMIX_PRECISION_FP32);
    int ids[SLOTS], ids_sync[SLOTS];
    open_all(e, ids);
    open_all(sync, ids_sync);
    assert_int_equal(demix_engine_reserve_io(e, 0), DEMIX_EARG);
    assert_int_equal(demix_engine_reserve_io(e, SLOTS + 1), DEMIX_EARG);
    assert_int_equal(demix_engine_reserve_io(e, SLOTS), DEMIX_OK);
    float *ref = malloc(SLOTS * out_row * sizeof *ref);
    assert_non_null(ref);
    const float *in_seen[RING], *out_seen[RING];
    uint64_t st = 11;
    for (int round = 0; round < 3 * RING; round++) {
        int n = 1 + round * (SLOTS - 1) / (3 * RING - 1); /* 1 .. SLOTS */
        float *in = demix_engine_input_buffer(e, n);
        assert_non_null(in);
        demix_test_fill_uniform(in, (size_t)n * in_row, 0.5f, &st);
        assert_int_equal(demix_engine_step(sync, n, ids_sync, in, ref),
                         DEMIX_OK);
        assert_int_equal(demix_engine_submit(e, n, ids, in), DEMIX_OK);
        assert_int_equal(demix_engine_collect(e, NULL), DEMIX_OK);
        const float *out = demix_engine_output(e, NULL);
        assert_non_null(out);
        assert_memory_equal(out, ref, (size_t)n * out_row * sizeof *out);
        if (round < RING) {
            in_seen[round] = in;
            out_seen[round] = out;
        } else {
            assert_ptr_equal(in, in_seen[round % RING]);
            assert_ptr_equal(out, out_seen[round % RING]);
        }
    }
    float *in = demix_engine_input_buffer(e, 1);
    assert_int_equal(demix_engine_submit(e, 1, ids, in), DEMIX_OK);
    assert_int_equal(demix_engine_reserve_io(e, SLOTS), DEMIX_EBUSY);
    assert_int_equal(demix_engine_collect(e, NULL), DEMIX_OK);
    assert_int_equal(demix_engine_reserve_io(e, SLOTS), DEMIX_OK);
    assert_null(demix_engine_output(e, NULL));
    free(ref);
    demix_engine_destroy(e);
    demix_engine_destroy(sync);
    demix_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_equals_step),
        cmocka_unit_test(test_slot_changes_between_submits),
        cmocka_unit_test(test_pipeline_errors),
        cmocka_unit_test(test_reserve_io_fixes_the_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
