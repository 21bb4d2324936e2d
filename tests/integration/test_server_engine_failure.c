/*
 * test_server_engine_failure.c - what demixd does when an engine step
 * fails: every stream of that step ends with the protocol's internal error
 * (sessions: the error message, then close 1011; file jobs: 500 with a
 * JSON error), and the server goes on serving everything else.
 *
 * The CPU engine never fails a step, so the failures are injected with the
 * scheduler's test hook DEMIXD_TEST_FAIL_STEPS=K,N (server/sched.c): steps
 * K..K+N-1 fail as if the engine had returned DEMIX_EDEVICE. The variable
 * is set in this process's environment just for the fork of that server
 * (server_fixture.c passes the environment on).
 *
 * Model: tests/data/tiny.safetensors (44.1 kHz), CPU engine. A reference
 * server without the hook gives the expected output of a session and of a
 * file job for the same input; the CPU engine is deterministic and a
 * slot's output depends only on its own hops, so a session or job that
 * ran after a failure must give exactly the reference's bytes (which also
 * shows that a slot closed after a failed step comes back zeroed).
 *
 * The server under test runs with DEMIXD_TEST_FAIL_STEPS=3,2,
 * --max-sessions 2 and --file-jobs 1, and the cases run in this order,
 * each alone on the engine so the failing steps are known without timing:
 *   (1) a bystander session gets ready and sends nothing (it holds an open
 *       slot but is in no step); the victim session streams: steps 1 and 2
 *       are its hops, step 3 fails: it gets `internal`, close 1011, and no
 *       summary.
 *   (2) a file job: its first step is step 4, which fails: 500, code
 *       internal.
 *   (3) the bystander and a new session (its slot only free because the
 *       victim's was given back: --max-sessions 2) stream the whole input
 *       at once: both end cleanly with the reference's output.
 *   (4) a second file job: 200 with the reference's stems (same ZIP size,
 *       entry names and CRC-32s; the archives' dates differ).
 *   (5) /v1/health is ok; /metrics counts 2 failed steps, 1 session ended
 *       by an error and 2 ok, 1 failed file job and 1 ok; the log has the
 *       start warning, the failed steps and the session's error.
 *   (6) a malformed DEMIXD_TEST_FAIL_STEPS stops the start (exit 1).
 */
#include "testutil.h"
#include "audio_files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_fixture.h"

#define RATE 44100
#define CHANNELS 2
#define CHUNK_FRAMES 4096
#define FAIL_STEPS "3,2" /* steps 3 (the victim's) and 4 (file job 1's) */

static struct {
    char dir[256];
    const char *model;
    server_fixture fx; /* the server under test, with the hook */
    int started;
    uint64_t seed;
    float *input; /* session input, interleaved */
    int64_t frames;
    uint8_t *wav; /* file job upload */
    size_t wav_bytes;
    /* from the reference server */
    float *ref[DEMIX_PROTO_MAX_STEMS];
    int64_t ref_frames;
    wst_http_response ref_zip;
} g;

static const char *const all_stems[] = {"drums", "bass", "vocals", "other",
                                        NULL};

/* ------------------------------------------------------------ helpers */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[len] = 0;
        *n = (size_t)len;
    }
    return b;
}

static void start_session(fx_session *s, int port)
{
    demix_proto_start st;
    fx_start_init(&st, RATE, CHANNELS, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    assert_int_equal(fx_session_open(s, port, &st), 0);
    assert_int_equal(fx_session_wait_ready(s), 0);
}

/* Every stem of a session equals the reference's, bit for bit. */
static void assert_reference_output(const fx_session *s)
{
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(s, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, g.ref_frames);
        size_t n = (size_t)tr->frames * CHANNELS;
        for (size_t i = 0; i < n; i++)
            assert_true(isfinite(tr->x[i]));
        double d = demix_test_max_abs_diff(tr->x, g.ref[t], n);
        print_message("stem %d: %lld frames, max |out - reference| = %g\n", t,
                      (long long)tr->frames, d);
        assert_memory_equal(tr->x, g.ref[t], n * sizeof *tr->x);
    }
}

static int post_job(int port, wst_http_response *r)
{
    int rc = wst_http(port, "POST", "/v1/separate", "audio/wav", g.wav,
                      g.wav_bytes, r, FX_TIMEOUT_MS);
    print_message("POST /v1/separate (%zu bytes) -> %d, %zu bytes%s%.300s\n",
                  g.wav_bytes, r->status, r->body_len,
                  r->status >= 400 && r->body ? ": " : "",
                  r->status >= 400 && r->body ? (const char *)r->body : "");
    return rc;
}

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
    return rd16(p) | rd16(p + 2) << 16;
}

/* The ZIP's central directory as "name crc size;" text (zip.h's layout:
 * no comment, no ZIP64), which ignores the archive's dates. */
static void zip_listing(const wst_http_response *r, char *out, size_t cap)
{
    const uint8_t *z = r->body;
    size_t n = r->body_len;
    out[0] = '\0';
    assert_true(n >= 22);
    size_t eocd = n - 22;
    assert_int_equal(rd32(z + eocd), 0x06054b50u);
    int count = (int)rd16(z + eocd + 10);
    size_t cd = rd32(z + eocd + 16);
    assert_int_equal(count, 4);
    for (int i = 0; i < count; i++) {
        assert_true(cd + 46 <= n);
        assert_int_equal(rd32(z + cd), 0x02014b50u);
        uint32_t nlen = rd16(z + cd + 28);
        assert_true(cd + 46 + nlen <= n);
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%.*s %08x %u;", (int)nlen,
                 (const char *)z + cd + 46, (unsigned)rd32(z + cd + 16),
                 (unsigned)rd32(z + cd + 24));
        cd += 46 + nlen + rd16(z + cd + 30) + rd16(z + cd + 32);
    }
}

/* The value of a sample line "NAME VALUE" of /metrics text, or -1. */
static double metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
    }
    return -1;
}

/* ------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    g.seed = demix_test_seed();
    g.model = demix_test_data_path("tiny.safetensors");
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.frames = RATE + 3000; /* about 92 hops */
    g.input = fx_make_signal(RATE, CHANNELS, g.frames, g.seed);
    if (!g.input)
        return -1;
    char wav[512];
    snprintf(wav, sizeof wav, "%s/in.wav", g.dir);
    demix_test_write_audio(wav, SF_FORMAT_WAV | SF_FORMAT_PCM_16, RATE,
                           CHANNELS, g.input, g.frames);
    g.wav = read_file(wav, &g.wav_bytes);
    if (!g.wav)
        return -1;

    /* The reference: the same session and job on a server without the
     * hook. */
    server_fixture ref;
    if (server_fixture_start(&ref, g.model, "--max-sessions", "2",
                             "--file-jobs", "1", (const char *)NULL))
        return -1;
    fx_session s;
    demix_proto_start st;
    fx_start_init(&st, RATE, CHANNELS, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    int ok = fx_session_open(&s, ref.port, &st) == 0 &&
             fx_session_run(&s, g.input, g.frames, CHUNK_FRAMES) == 0;
    if (ok) {
        g.ref_frames = fx_session_track(&s, 0)->frames;
        for (int t = 0; t < 4; t++) {
            const fx_track *tr = fx_session_track(&s, t);
            ok = ok && tr && tr->frames == g.ref_frames;
            size_t n = (size_t)g.ref_frames * CHANNELS;
            g.ref[t] = malloc(n * sizeof(float));
            ok = ok && g.ref[t];
            if (ok)
                memcpy(g.ref[t], tr->x, n * sizeof(float));
        }
    }
    fx_session_free(&s);
    ok = ok && post_job(ref.port, &g.ref_zip) == 0 && g.ref_zip.status == 200;
    if (server_fixture_stop(&ref) != 0 || !ok) {
        print_error("the reference server failed\n");
        return -1;
    }

    /* The server under test: the hook goes only to its process. */
    setenv("DEMIXD_TEST_FAIL_STEPS", FAIL_STEPS, 1);
    int rc = server_fixture_start(&g.fx, g.model, "--max-sessions", "2",
                                  "--file-jobs", "1", (const char *)NULL);
    unsetenv("DEMIXD_TEST_FAIL_STEPS");
    if (rc)
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int t = 0; t < 4; t++)
        free(g.ref[t]);
    wst_http_response_free(&g.ref_zip);
    free(g.input);
    free(g.wav);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

/* ------------------------------------------------------------- tests */

static fx_session g_bystander;

/* (1) */
static void test_streaming_session_gets_internal_1011(void **state)
{
    (void)state;
    start_session(&g_bystander, g.fx.port);

    fx_session v;
    start_session(&v, g.fx.port);
    /* Stream until the server ends the session; no end is sent. */
    while (!v.eof) {
        if (!v.closed && v.sent < g.frames &&
            wst_tx_pending(v.c) < 256 * 1024) {
            int64_t m = g.frames - v.sent;
            if (m > CHUNK_FRAMES)
                m = CHUNK_FRAMES;
            if (fx_session_send(&v, g.input + v.sent * CHANNELS, m))
                break; /* the server has gone away from this connection */
        }
        fx_session_poll(&v, v.sent < g.frames ? 0 : 100);
        wst_pump(v.c, 0);
    }
    assert_int_equal(fx_session_finish(&v), 0);
    fx_session_print(&v, "victim");
    assert_true(v.have_error);
    assert_int_equal(v.error.code, DEMIX_PROTO_ERR_INTERNAL);
    assert_non_null(strstr(v.error.message, "engine failed"));
    assert_true(v.closed);
    assert_int_equal(v.close_code, 1011);
    assert_string_equal(v.close_reason, "internal");
    assert_false(v.have_summary);
    assert_string_equal(v.violation, "");
    /* It did not get everything: its third hop was the failed step. */
    assert_true(fx_session_reached(&v) < g.ref_frames);
    fx_session_free(&v);
}

/* (2) */
static void test_file_job_in_failed_step_gets_500(void **state)
{
    (void)state;
    wst_http_response r;
    assert_int_equal(post_job(g.fx.port, &r), 0);
    assert_int_equal(r.status, 500);
    char ct[128] = "";
    assert_int_equal(wst_http_header(&r, "Content-Type", ct, sizeof ct), 0);
    assert_non_null(strstr(ct, "json"));
    assert_non_null(strstr((const char *)r.body, "\"internal\""));
    assert_non_null(strstr((const char *)r.body, "engine failed"));
    wst_http_response_free(&r);
}

/* (3) */
static void test_sessions_after_the_failure_stream_correctly(void **state)
{
    (void)state;
    fx_session late;
    start_session(&late, g.fx.port);
    fx_session *both[2] = {&g_bystander, &late};
    const float *in[2] = {g.input, g.input};
    int64_t frames[2] = {g.frames, g.frames};
    assert_int_equal(fx_run_many(both, in, frames, 2, CHUNK_FRAMES), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal((int64_t)both[i]->summary.input_frames, g.frames);
        assert_reference_output(both[i]);
    }
    fx_session_free(&late);
    fx_session_free(&g_bystander);
}

/* (4) */
static void test_later_file_job_succeeds(void **state)
{
    (void)state;
    wst_http_response r;
    assert_int_equal(post_job(g.fx.port, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, g.ref_zip.body_len);
    char got[1024], want[1024];
    zip_listing(&r, got, sizeof got);
    zip_listing(&g.ref_zip, want, sizeof want);
    print_message("zip: %s\n", got);
    assert_string_equal(got, want);
    wst_http_response_free(&r);
}

/* (5) */
static void test_health_metrics_and_log(void **state)
{
    (void)state;
    wst_http_response r;
    assert_int_equal(
        wst_http(g.fx.port, "GET", "/v1/health", NULL, NULL, 0, &r, 10000), 0);
    print_message("GET /v1/health: %d %s", r.status, (const char *)r.body);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body, "\"status\":\"ok\""));
    wst_http_response_free(&r);

    /* Sessions are counted when their connection is closed on the
     * server's side, which may come just after the client saw the end:
     * wait until all three are counted (a liveness bound, not a timing). */
    char *text = NULL;
    for (int attempt = 0; attempt < FX_TIMEOUT_MS / 50; attempt++) {
        assert_int_equal(
            wst_http(g.fx.port, "GET", "/metrics", NULL, NULL, 0, &r, 10000),
            0);
        assert_int_equal(r.status, 200);
        free(text);
        text = strdup((const char *)r.body);
        wst_http_response_free(&r);
        assert_non_null(text);
        if (metric(text, "demixd_sessions_total{result=\"ok\"}") +
                metric(text, "demixd_sessions_total{result=\"error\"}") >=
            3)
            break;
        sleep_ms(50);
    }
    static const char *const names[] = {
        "demixd_step_errors_total",
        "demixd_sessions_total{result=\"error\"}",
        "demixd_sessions_total{result=\"ok\"}",
        "demixd_file_jobs_total{result=\"error\"}",
        "demixd_file_jobs_total{result=\"ok\"}",
        "demixd_paused_sessions{direction=\"input\"}",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        print_message("%s %g\n", names[i], metric(text, names[i]));
    assert_true(metric(text, "demixd_step_errors_total") == 2);
    assert_true(metric(text, "demixd_sessions_total{result=\"error\"}") == 1);
    assert_true(metric(text, "demixd_sessions_total{result=\"ok\"}") == 2);
    assert_true(metric(text, "demixd_file_jobs_total{result=\"error\"}") == 1);
    assert_true(metric(text, "demixd_file_jobs_total{result=\"ok\"}") == 1);
    assert_true(metric(text, "demixd_paused_sessions{direction=\"input\"}") ==
                0);
    free(text);

    size_t n;
    char *log = (char *)read_file(g.fx.log_path, &n);
    assert_non_null(log);
    assert_non_null(strstr(log, "level=warn event=test_fail_steps first=3 "
                                "last=4"));
    const char *step3 = strstr(log, "event=step_failed status=DEMIX_EDEVICE "
                                    "step=3 batch=1 msg=\"injected failure "
                                    "(DEMIXD_TEST_FAIL_STEPS)\"");
    if (!step3)
        server_fixture_print_log(&g.fx, "no step_failed line for step 3");
    assert_non_null(step3);
    assert_non_null(
        strstr(log, "event=step_failed status=DEMIX_EDEVICE step=4 "));
    assert_null(strstr(log, "step=5 "));
    assert_non_null(strstr(log, "event=session_error"));
    assert_non_null(strstr(log, "code=internal"));
    assert_non_null(strstr(log, "event=file_job_failed"));
    free(log);
}

/* (6) */
static void test_malformed_hook_value_stops_the_start(void **state)
{
    (void)state;
    const char *bad[] = {"0", "x", "3,", "3,0", "-1", "3,2x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        print_message("DEMIXD_TEST_FAIL_STEPS=%s (must not start)\n", bad[i]);
        server_fixture fx;
        setenv("DEMIXD_TEST_FAIL_STEPS", bad[i], 1);
        int rc = server_fixture_start(&fx, g.model, "--max-sessions", "1",
                                      (const char *)NULL);
        unsetenv("DEMIXD_TEST_FAIL_STEPS");
        if (rc == 0)
            server_fixture_stop(&fx);
        assert_int_not_equal(rc, 0);
        size_t n;
        char *log = (char *)read_file(fx.log_path, &n);
        assert_non_null(log);
        assert_non_null(strstr(log, "level=error event=test_fail_steps"));
        free(log);
        if (!getenv("DEMIX_TEST_KEEP"))
            demix_test_rmtree(fx.dir);
    }
}

int main(void)
{
    /* In this order: each case relies on the steps the ones before ran. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streaming_session_gets_internal_1011),
        cmocka_unit_test(test_file_job_in_failed_step_gets_500),
        cmocka_unit_test(test_sessions_after_the_failure_stream_correctly),
        cmocka_unit_test(test_later_file_job_succeeds),
        cmocka_unit_test(test_health_metrics_and_log),
        cmocka_unit_test(test_malformed_hook_value_stops_the_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
