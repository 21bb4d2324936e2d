/*
 * test_scheduler.c - server/scheduler.h and server/lane.h without lws: the
 * scheduler thread on the CPU engine (float32, tests/data/tiny.safetensors),
 * this test's threads as the service threads that own the lanes. Every
 * separated hop is compared bit for bit with a second engine stepped
 * directly, one slot per session (the CPU engine's output of a slot does
 * not depend on the other rows of a step, nor on submit/collect against
 * step: engine.h, test_cpu_engine.c (c)).
 *
 * - two_owners_depth1, two_owners_depth2: six sessions, three on each of
 *   two owner threads, 40 hops each. A gate in wake_owner holds the
 *   scheduler thread after its first step while both owners fill their
 *   lanes, so the next step deterministically holds one hop of every lane
 *   (rows of both owners: 6, where one owner has only 3 lanes). Then the
 *   owners stream freely, taking output only for the lanes their ready
 *   ring names: every session's hops come back complete, once, in the
 *   order sent, each equal to the reference. With steps_in_flight 2 a
 *   step is collected while the next one, holding hops of the same lanes,
 *   is in flight (seen in wake_owner). Nothing is allocated by the
 *   server's or the engine's code while they stream (malloc, calloc and
 *   realloc are wrapped for this test, tests/CMakeLists.txt; that sees the
 *   statically linked code, not libc's or shared libraries' own calls).
 * - ring_bounds_depth1, _depth2: an input ring of 4 hops refuses a write
 *   past its room with DEMIX_ENOSPACE and keeps nothing of it; an output
 *   ring of 2 hops that the owner does not read stops the scheduler after
 *   2 hops (the input stays queued, demixd_paused_sessions{direction=
 *   "output"} is 1) and each pop lets exactly one more hop through (with
 *   two steps in flight too: the room counts the hops in flight); every
 *   hop arrives, in order, equal to the reference; no allocation
 *   meanwhile.
 * - release_in_flight: two engine slots, steps_in_flight 2, sessions x
 *   and z streaming, the scheduler held in wake_owner at chosen steps. x
 *   is released while its next hop is in flight: once that step is
 *   delivered, x's reservation is still held (no slot free for anyone);
 *   it comes back after the scheduler has dropped x and closed its slot;
 *   y then gets that slot, zeroed, and exactly its own hops, equal to the
 *   reference of its input alone, while z goes on undisturbed.
 *
 * Waits are for states (a counter reached, a gate held), bounded by
 * WAIT_S seconds so a regression fails instead of hanging.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "lane.h"
#include "metrics.h"
#include "scheduler.h"
#include "testutil.h"

#define OWNERS 2
#define PER_OWNER 3
#define SESSIONS (OWNERS * PER_OWNER)
#define HOPS 40
#define IN_HOPS 8  /* input ring, in hops */
#define OUT_HOPS 4 /* output ring, in hops */
#define WAIT_S 20

/* ---------------------------------------------------- allocation count */

/* The test links with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc:
 * every call from a statically linked object (this file, demixd_sched,
 * demixd_core, the engine and the CPU backend) comes here. Counted while
 * `counting` is set. */
static atomic_int counting;
static atomic_long allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

void *__wrap_malloc(size_t n)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocations, 1);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocations, 1);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&allocations, 1);
    return __real_realloc(p, n);
}

static void count_allocations(int on)
{
    if (on)
        atomic_store(&allocations, 0);
    atomic_store(&counting, on);
}

/* ------------------------------------------------------------- fixture */

typedef enum gate_state { GATE_OFF, GATE_ARMED, GATE_HELD } gate_state;

typedef struct fixture {
    demix_model *model;
    int C, H, T, rate;
    size_t hop_floats, out_floats; /* C*H in, T*C*H out */
    demix_engine *engine;          /* the scheduler's */
    demixd_metrics *metrics;
    demixd_scheduler *sched;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* lock */
    int news[OWNERS];    /* wake_owner called, not yet seen by the owner */
    gate_state gate;     /* ARMED: the next wake_owner holds the thread */
    int rows_after_gate; /* rows of the first step collected after it */
    int gate_passed;
    int max_in_flight; /* steps in flight while one was delivered */
} fixture;

static struct timespec deadline_in(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + (long long)(seconds * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

/* The scheduler thread, after a step, once per owner with news. It owns
 * the engine, so it may ask the engine what it just collected: the row
 * count of that step and how many steps are still in flight. */
static void wake_owner(void *user, int owner)
{
    fixture *fx = user;
    int rows = 0;
    (void)demix_engine_output(fx->engine, &rows);
    int in_flight = demix_engine_in_flight(fx->engine);
    pthread_mutex_lock(&fx->lock);
    if (in_flight > fx->max_in_flight)
        fx->max_in_flight = in_flight;
    if (fx->gate == GATE_ARMED) {
        fx->gate = GATE_HELD;
        pthread_cond_broadcast(&fx->cond);
        struct timespec until = deadline_in(WAIT_S);
        while (fx->gate == GATE_HELD &&
               pthread_cond_timedwait(&fx->cond, &fx->lock, &until) == 0)
            ;
        if (fx->gate == GATE_HELD)
            fx->gate = GATE_OFF; /* the test never opened it */
    } else if (fx->gate == GATE_OFF && !fx->gate_passed) {
        fx->gate_passed = 1;
        fx->rows_after_gate = rows;
    }
    fx->news[owner] = 1;
    pthread_cond_broadcast(&fx->cond);
    pthread_mutex_unlock(&fx->lock);
}

/* Wait until the scheduler thread sits in the armed gate. */
static void wait_gate_held(fixture *fx)
{
    struct timespec until = deadline_in(WAIT_S);
    pthread_mutex_lock(&fx->lock);
    while (fx->gate != GATE_HELD &&
           pthread_cond_timedwait(&fx->cond, &fx->lock, &until) == 0)
        ;
    int held = fx->gate == GATE_HELD;
    pthread_mutex_unlock(&fx->lock);
    if (!held)
        fail_msg("the scheduler never reached the gate in %d s", WAIT_S);
}

/* Let the held scheduler thread go on; rearm: hold it again at its next
 * wake-up. */
static void open_gate(fixture *fx, int rearm)
{
    pthread_mutex_lock(&fx->lock);
    fx->gate = rearm ? GATE_ARMED : GATE_OFF;
    fx->gate_passed = 0;
    pthread_cond_broadcast(&fx->cond);
    pthread_mutex_unlock(&fx->lock);
}

static demix_engine *cpu_engine(const demix_model *m, int slots)
{
    demix_engine_options opt;
    demix_engine_options_init(&opt);
    opt.backend = DEMIX_BACKEND_CPU;
    opt.precision = DEMIX_PRECISION_FP32;
    opt.max_slots = slots;
    demix_engine *e = NULL;
    char err[256];
    int rc = demix_engine_create(m, &opt, &e, err, sizeof err);
    if (rc)
        fail_msg("engine: %s (%s)", demix_errname(rc), err);
    return e;
}

/* The model, the scheduler's engine and the scheduler. gate: armed
 * before the thread starts. */
static void fixture_start(fixture *fx, int max_live, int depth, int gate)
{
    memset(fx, 0, sizeof *fx);
    char err[256];
    if (demix_model_load(demix_test_data_path("tiny.safetensors"), &fx->model,
                         err, sizeof err))
        fail_msg("tiny.safetensors: %s", err);
    const demix_model_config *cfg = demix_model_get_config(fx->model);
    fx->C = cfg->channels;
    fx->H = cfg->hop_samples;
    fx->T = cfg->num_sources;
    fx->rate = cfg->sample_rate_hz;
    fx->hop_floats = (size_t)fx->C * (size_t)fx->H;
    fx->out_floats = (size_t)fx->T * fx->hop_floats;
    fx->engine = cpu_engine(fx->model, max_live);
    assert_int_equal(demixd_metrics_create(&fx->metrics), DEMIX_OK);
    pthread_mutex_init(&fx->lock, NULL);
    pthread_cond_init(&fx->cond, NULL);
    fx->gate = gate ? GATE_ARMED : GATE_OFF;
    demixd_scheduler_params p = {
        .engine = fx->engine,
        .max_live = max_live,
        .max_file = 0,
        .capacity = max_live,
        .depth = depth,
        .owners = OWNERS,
        .metrics = fx->metrics,
        .wake_owner = wake_owner,
        .wake_user = fx,
    };
    assert_int_equal(demixd_scheduler_create(&p, &fx->sched), DEMIX_OK);
}

static void fixture_stop(fixture *fx)
{
    open_gate(fx, 0);
    demixd_scheduler_destroy(fx->sched);
    demix_engine_destroy(fx->engine);
    demixd_metrics_destroy(fx->metrics);
    demix_model_destroy(fx->model);
    pthread_cond_destroy(&fx->cond);
    pthread_mutex_destroy(&fx->lock);
}

/* A value of the Prometheus text: the number after `name ` on its line. */
static double metric(fixture *fx, const char *name)
{
    static char text[32768];
    demixd_gauges g = {0};
    size_t len = 0;
    assert_int_equal(
        demixd_metrics_render(fx->metrics, &g, text, sizeof text, &len),
        DEMIX_OK);
    size_t n = strlen(name);
    for (const char *p = strstr(text, name); p; p = strstr(p + 1, name))
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    fail_msg("no metric %s", name);
    return 0;
}

/* ------------------------------------------------------------ sessions */

typedef struct session {
    fixture *fx;
    demixd_lane *lane;
    int index, owner, hops;
    float *in;  /* [hops][H][C], interleaved as a session writes it */
    float *ref; /* [hops][T][C][H], the engine on this input alone */
    float *out; /* [hops][T][C][H], as received */
    int sent, got;
    int extra;  /* outputs past `hops`: must stay 0 */
    int errors; /* refused writes, foreign lanes (owner threads: no
                   cmocka asserts there) */
} session;

/* Input of random music-like scale, and the reference: a fresh slot of a
 * second engine, stepped hop by hop with this session's input alone. */
static void session_init(fixture *fx, session *se, int index, int owner,
                         int hops, uint64_t seed)
{
    memset(se, 0, sizeof *se);
    se->fx = fx;
    se->index = index;
    se->owner = owner;
    se->hops = hops;
    se->in = malloc((size_t)hops * fx->hop_floats * sizeof(float));
    se->ref = malloc((size_t)hops * fx->out_floats * sizeof(float));
    se->out = calloc((size_t)hops * fx->out_floats, sizeof(float));
    float *planar = malloc(fx->hop_floats * sizeof(float));
    assert_true(se->in && se->ref && se->out && planar);
    uint64_t state = seed;
    demix_test_fill_uniform(se->in, (size_t)hops * fx->hop_floats, 0.5f,
                            &state);
    demix_engine *e = cpu_engine(fx->model, 1);
    int slot;
    assert_int_equal(demix_engine_open_slot(e, &slot), DEMIX_OK);
    for (int h = 0; h < hops; h++) {
        const float *fr = se->in + (size_t)h * fx->hop_floats;
        for (int k = 0; k < fx->H; k++)
            for (int c = 0; c < fx->C; c++)
                planar[(size_t)c * (size_t)fx->H + (size_t)k] =
                    fr[(size_t)k * (size_t)fx->C + (size_t)c];
        assert_int_equal(
            demix_engine_step(e, 1, &slot, planar,
                              se->ref + (size_t)h * fx->out_floats),
            DEMIX_OK);
    }
    demix_engine_destroy(e);
    free(planar);
}

static void session_free(session *se)
{
    free(se->in);
    free(se->ref);
    free(se->out);
}

static demixd_lane *make_lane(fixture *fx, session *se, size_t in_hops,
                              int out_hops)
{
    demixd_lane_params p = {
        .kind = DEMIXD_LANE_LIVE,
        .channels = fx->C,
        .hop_frames = fx->H,
        .sources = fx->T,
        .model_rate_hz = fx->rate,
        .in_frames = in_hops * (size_t)fx->H,
        .out_hops = out_hops,
        .owner = se->owner,
        .owner_ctx = se,
    };
    demixd_lane *lane = NULL;
    assert_int_equal(demixd_lane_create(&p, &lane), DEMIX_OK);
    se->lane = lane;
    return lane;
}

/* Write the session's next hops while its input ring has room. */
static int send_hops(session *se)
{
    int wrote = 0;
    size_t H = (size_t)se->fx->H;
    while (se->sent < se->hops && demixd_lane_in_room(se->lane) >= H) {
        const float *hop = se->in + (size_t)se->sent * se->fx->hop_floats;
        if (demixd_lane_in_write(se->lane, hop, H)) {
            se->errors++; /* room was checked: must not happen */
            break;
        }
        se->sent++;
        wrote = 1;
    }
    return wrote;
}

/* Take the oldest separated hop, if any. */
static int take_one(session *se)
{
    const void *hop = demixd_lane_out_peek(se->lane);
    if (!hop)
        return 0;
    if (se->got < se->hops)
        memcpy(se->out + (size_t)se->got * se->fx->out_floats, hop,
               se->fx->out_floats * sizeof(float));
    else
        se->extra++;
    se->got++;
    demixd_lane_out_pop(se->lane);
    return 1;
}

/* Take every separated hop waiting in the session's output ring. */
static int take_hops(session *se)
{
    int took = 0;
    while (take_one(se))
        took = 1;
    return took;
}

/* Every hop received equals the reference, in order (hop h to hop h),
 * and nothing more came. */
static void check_session(const session *se)
{
    assert_int_equal(se->errors, 0);
    assert_int_equal(se->extra, 0);
    assert_int_equal(se->got, se->hops);
    const size_t n = se->fx->out_floats;
    for (int h = 0; h < se->hops; h++)
        if (memcmp(se->out + (size_t)h * n, se->ref + (size_t)h * n,
                   n * sizeof(float)))
            fail_msg("session %d: hop %d differs from the engine's output for "
                     "its input alone (max |diff| %g)",
                     se->index, h,
                     demix_test_max_abs_diff(se->out + (size_t)h * n,
                                             se->ref + (size_t)h * n, n));
    uint64_t hops = 0;
    demixd_lane_counters(se->lane, &hops, NULL);
    assert_int_equal(hops, (uint64_t)se->hops);
}

/* ---------------------------------------------------------- owner threads */

typedef struct owner_ctx {
    fixture *fx;
    int k;
    session *ss[PER_OWNER];
    atomic_int primed; /* the first writes are done */
    int timed_out;
} owner_ctx;

static int owner_done(const owner_ctx *o)
{
    for (int i = 0; i < PER_OWNER; i++)
        if (o->ss[i]->got < o->ss[i]->hops)
            return 0;
    return 1;
}

/* A service thread: write while there is room, take output for the lanes
 * its ready ring names, sleep until the scheduler has news. */
static void *owner_main(void *arg)
{
    owner_ctx *o = arg;
    fixture *fx = o->fx;
    for (int i = 0; i < PER_OWNER; i++)
        send_hops(o->ss[i]);
    atomic_store(&o->primed, 1);
    struct timespec until = deadline_in(WAIT_S);
    while (!owner_done(o)) {
        int moved = 0;
        demixd_lane *lane;
        while ((lane = demixd_scheduler_pop_ready(fx->sched, o->k))) {
            session *se = demixd_lane_owner_ctx(lane);
            if (se->owner != o->k)
                se->errors++; /* another owner's lane in this ring */
            else
                moved |= take_hops(se);
            demixd_scheduler_ready_done(lane);
        }
        for (int i = 0; i < PER_OWNER; i++)
            moved |= send_hops(o->ss[i]);
        if (moved)
            continue;
        pthread_mutex_lock(&fx->lock);
        int rc = 0;
        while (!fx->news[o->k] && rc == 0)
            rc = pthread_cond_timedwait(&fx->cond, &fx->lock, &until);
        fx->news[o->k] = 0;
        pthread_mutex_unlock(&fx->lock);
        if (rc) {
            o->timed_out = 1;
            break;
        }
    }
    return NULL;
}

static void wait_primed(owner_ctx *o)
{
    for (int i = 0; i < WAIT_S * 1000 && !atomic_load(&o->primed); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    assert_true(atomic_load(&o->primed));
}

/* ----------------------------------------------------------------- tests */

/* Poll (1 ms) until cond holds, at most WAIT_S seconds. */
#define WAIT_UNTIL(cond)                                                       \
    do {                                                                       \
        int waited_ = 0;                                                       \
        while (!(cond) && waited_++ < WAIT_S * 1000) {                         \
            struct timespec ms_ = {0, 1000000};                                \
            nanosleep(&ms_, NULL);                                             \
        }                                                                      \
        if (!(cond))                                                           \
            fail_msg("timed out waiting for %s", #cond);                       \
    } while (0)

static uint64_t lane_hops(demixd_lane *lane)
{
    uint64_t hops = 0;
    demixd_lane_counters(lane, &hops, NULL);
    return hops;
}

static void run_two_owners(int depth)
{
    fixture fx;
    fixture_start(&fx, SESSIONS, depth, 1);
    uint64_t seed = demix_test_seed();
    session ss[SESSIONS];
    owner_ctx owners[OWNERS];
    memset(owners, 0, sizeof owners);
    for (int i = 0; i < SESSIONS; i++) {
        int k = i % OWNERS;
        session_init(&fx, &ss[i], i, k, HOPS, seed + 1000 * (uint64_t)i);
        make_lane(&fx, &ss[i], IN_HOPS, OUT_HOPS);
        owners[k].fx = &fx;
        owners[k].k = k;
        owners[k].ss[i / OWNERS] = &ss[i];
        assert_int_equal(demixd_scheduler_reserve(fx.sched, DEMIXD_LANE_LIVE),
                         DEMIX_OK);
        demixd_scheduler_submit(fx.sched, ss[i].lane);
    }
    assert_int_equal(demixd_scheduler_reserve(fx.sched, DEMIXD_LANE_LIVE),
                     DEMIX_EBUSY); /* at max_live */
    assert_int_equal(demixd_scheduler_count(fx.sched, DEMIXD_LANE_LIVE),
                     SESSIONS);

    /* One hop of session 0 alone; its step's wake-up holds the scheduler
     * thread in the gate. Session 0's owner sends it, before its thread
     * starts. */
    assert_int_equal(demixd_lane_in_write(ss[0].lane, ss[0].in, (size_t)fx.H),
                     DEMIX_OK);
    ss[0].sent = 1;
    wait_gate_held(&fx);
    assert_int_equal(lane_hops(ss[0].lane), 1); /* delivered before the wake */

    /* Both owners fill their lanes (IN_HOPS hops each) while it waits. */
    pthread_t threads[OWNERS];
    for (int k = 0; k < OWNERS; k++)
        assert_int_equal(
            pthread_create(&threads[k], NULL, owner_main, &owners[k]), 0);
    for (int k = 0; k < OWNERS; k++)
        wait_primed(&owners[k]);
    count_allocations(1);
    open_gate(&fx, 0);
    for (int k = 0; k < OWNERS; k++)
        pthread_join(threads[k], NULL);
    count_allocations(0);
    for (int k = 0; k < OWNERS; k++)
        assert_false(owners[k].timed_out);

    /* The step after the gate: one hop of every lane, both owners'. */
    pthread_mutex_lock(&fx.lock);
    int rows = fx.rows_after_gate, max_in_flight = fx.max_in_flight;
    pthread_mutex_unlock(&fx.lock);
    assert_int_equal(rows, SESSIONS);
    /* depth 2: a step was delivered while the next one was in flight */
    assert_int_equal(max_in_flight, depth - 1);

    for (int i = 0; i < SESSIONS; i++)
        check_session(&ss[i]);
    /* metrics are recorded just after the owners are woken */
    WAIT_UNTIL(metric(&fx, "demixd_hops_total") == SESSIONS * HOPS);
    double steps = metric(&fx, "demixd_steps_total");
    assert_int_equal(metric(&fx, "demixd_step_errors_total"), 0);
    print_message("depth %d: %d sessions x %d hops in %.0f steps (mean "
                  "batch %.2f); %ld allocations while streaming\n",
                  depth, SESSIONS, HOPS, steps, SESSIONS * HOPS / steps,
                  atomic_load(&allocations));
    assert_int_equal(atomic_load(&allocations), 0);

    for (int i = 0; i < SESSIONS; i++)
        demixd_lane_release(ss[i].lane);
    fixture_stop(&fx);
    for (int i = 0; i < SESSIONS; i++)
        session_free(&ss[i]);
}

static void test_two_owners_depth1(void **state)
{
    (void)state;
    run_two_owners(1);
}

static void test_two_owners_depth2(void **state)
{
    (void)state;
    run_two_owners(2);
}

static void run_ring_bounds(int depth)
{
    enum { IN = 4, OUT = 2, N = 8 };
    fixture fx;
    fixture_start(&fx, 1, depth, 0);
    session se;
    session_init(&fx, &se, 0, 0, N, demix_test_seed());
    demixd_lane *lane = make_lane(&fx, &se, IN, OUT);
    const size_t H = (size_t)fx.H;

    /* Input: a write past the room is refused whole. */
    assert_int_equal(demixd_lane_in_room(lane), IN * H);
    assert_int_equal(demixd_lane_in_write(lane, se.in, IN * H + 1),
                     DEMIX_ENOSPACE);
    assert_int_equal(demixd_lane_in_room(lane), IN * H);
    /* Filled before the scheduler sees it (as a client may send right
     * behind start), then hop 0 through: the slot open, the engine warm. */
    assert_int_equal(send_hops(&se), 1);
    assert_int_equal(se.sent, IN);
    assert_int_equal(demixd_scheduler_reserve(fx.sched, DEMIXD_LANE_LIVE),
                     DEMIX_OK);
    demixd_scheduler_submit(fx.sched, lane);
    WAIT_UNTIL(lane_hops(lane) >= 1);

    count_allocations(1);
    /* Output: nobody reads, so the scheduler stops at OUT hops; the rest
     * stays in the input ring, which refuses more. */
    WAIT_UNTIL(lane_hops(lane) == OUT &&
               metric(&fx, "demixd_paused_sessions{direction=\"output\"}") ==
                   1);
    assert_int_equal(demixd_lane_in_room(lane), OUT * H);
    assert_int_equal(demixd_lane_in_write(lane, se.in, OUT * H + 1),
                     DEMIX_ENOSPACE);
    /* Each pop lets exactly one more hop through. */
    for (int h = 0; h < N; h++) {
        assert_non_null(demixd_lane_out_peek(lane));
        assert_int_equal(take_one(&se), 1);
        send_hops(&se);
        uint64_t want = (uint64_t)(h + 1 + OUT < N ? h + 1 + OUT : N);
        WAIT_UNTIL(lane_hops(lane) == want);
        if (want < N)
            WAIT_UNTIL(
                metric(&fx, "demixd_paused_sessions{direction=\"output\"}") ==
                1);
        assert_int_equal(lane_hops(lane), want);
    }
    count_allocations(0);
    assert_null(demixd_lane_out_peek(lane));
    check_session(&se);
    assert_int_equal(
        metric(&fx, "demixd_paused_sessions{direction=\"output\"}"), 0);
    assert_int_equal(atomic_load(&allocations), 0);
    demixd_lane_release(lane);
    fixture_stop(&fx);
    session_free(&se);
}

static void test_ring_bounds_depth1(void **state)
{
    (void)state;
    run_ring_bounds(1);
}

/* With two steps in flight the output room counts the hops in flight. */
static void test_ring_bounds_depth2(void **state)
{
    (void)state;
    run_ring_bounds(2);
}

/* As a service thread does: take owner 0's news, so that the next step's
 * news for the same lanes comes again. */
static void pop_news(fixture *fx)
{
    demixd_lane *news;
    while ((news = demixd_scheduler_pop_ready(fx->sched, 0)))
        demixd_scheduler_ready_done(news);
}

static void test_release_in_flight(void **state)
{
    (void)state;
    enum { N = 3 };
    fixture fx;
    fixture_start(&fx, 2, 2, 1); /* two slots, two steps in flight, gate */
    uint64_t seed = demix_test_seed();
    session x, y, z; /* x released mid-flight, y after it, z alongside */
    session_init(&fx, &x, 0, 0, N, seed + 7);
    session_init(&fx, &y, 1, 0, N, seed + 8);
    session_init(&fx, &z, 2, 0, N, seed + 9);

    /* Both admitted before z's first hop is stepped (submitted before it
     * was written; a round admits everything pending at once), and the
     * scheduler held in that step's wake-up while x's and z's remaining
     * hops are written. */
    for (int i = 0; i < 2; i++) {
        session *se = i ? &z : &x;
        make_lane(&fx, se, IN_HOPS, OUT_HOPS);
        assert_int_equal(demixd_scheduler_reserve(fx.sched, DEMIXD_LANE_LIVE),
                         DEMIX_OK);
        demixd_scheduler_submit(fx.sched, se->lane);
    }
    assert_int_equal(demixd_lane_in_write(z.lane, z.in, (size_t)fx.H),
                     DEMIX_OK);
    z.sent = 1;
    wait_gate_held(&fx);
    assert_int_equal(send_hops(&x), 1);
    assert_int_equal(send_hops(&z), 1);
    assert_int_equal(x.sent + z.sent, 2 * N);
    pop_news(&fx);

    /* Step 2 takes x's hop 0 and z's hop 1; step 3, submitted before step
     * 2 is collected, x's hop 1 and z's hop 2. Held in step 2's wake-up,
     * with step 3 in flight. */
    open_gate(&fx, 1);
    wait_gate_held(&fx);
    pthread_mutex_lock(&fx.lock);
    int in_flight = fx.max_in_flight;
    pthread_mutex_unlock(&fx.lock);
    assert_int_equal(in_flight, 1);
    assert_int_equal(lane_hops(x.lane), 1);
    assert_int_equal(take_one(&x), 1);
    assert_memory_equal(x.out, x.ref, fx.out_floats * sizeof(float));
    pop_news(&fx);

    /* x released with hop 1 in flight; the scheduler is held again once
     * step 3 is collected and delivered (z's news): x's reservation (and
     * slot) is still held then, and no slot is free for another session. */
    demixd_lane_release(x.lane);
    x.lane = NULL;
    open_gate(&fx, 1);
    wait_gate_held(&fx);
    assert_int_equal(demixd_scheduler_count(fx.sched, DEMIXD_LANE_LIVE), 2);
    assert_int_equal(demixd_scheduler_reserve(fx.sched, DEMIXD_LANE_LIVE),
                     DEMIX_EBUSY);
    open_gate(&fx, 0);
    /* ... and returned once the scheduler has dropped x and closed its
     * slot, between steps. */
    WAIT_UNTIL(demixd_scheduler_count(fx.sched, DEMIXD_LANE_LIVE) == 1);

    /* y gets x's slot (z holds the other): from zero state, with its own
     * hops only; z goes on undisturbed. */
    assert_int_equal(demixd_scheduler_reserve(fx.sched, DEMIXD_LANE_LIVE),
                     DEMIX_OK);
    make_lane(&fx, &y, IN_HOPS, OUT_HOPS);
    demixd_scheduler_submit(fx.sched, y.lane);
    assert_int_equal(send_hops(&y), 1);
    WAIT_UNTIL(lane_hops(y.lane) == N && lane_hops(z.lane) == N);
    take_hops(&y);
    take_hops(&z);
    check_session(&y);
    check_session(&z);
    /* x's two hops were stepped, one of them delivered */
    WAIT_UNTIL(metric(&fx, "demixd_hops_total") == 2 + 2 * N);
    demixd_lane_release(y.lane);
    demixd_lane_release(z.lane);
    fixture_stop(&fx);
    session_free(&x);
    session_free(&y);
    session_free(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_owners_depth1),
        cmocka_unit_test(test_two_owners_depth2),
        cmocka_unit_test(test_ring_bounds_depth1),
        cmocka_unit_test(test_ring_bounds_depth2),
        cmocka_unit_test(test_release_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
