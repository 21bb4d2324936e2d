/*
 * test_server_resume.c - clients that survive a server restart
 * (docs/protocol.md, "Reconnecting and resuming"): a demixd with
 * --drain-seconds 1 is sent SIGTERM while a client streams (after its
 * drain it closes the session with restarting / 1012 and exits), and the
 * test starts a new demixd on the same port; the client reconnects and
 * carries on. Model: tests/data/tiny.safetensors (44.1 kHz), CPU engine.
 *
 * Cases: (a) `demix stream --realtime` of an 8 s 44.1 kHz stereo 16-bit
 * file: exit 0; it says it reconnected and where the stems go on (the
 * seam); each stem has exactly the input's frames and equals the stem of
 * an uninterrupted run (the same file through the same server) sample
 * for sample everywhere outside [seam, seam + 1 s) - the seam window is
 * only reported: with this model and the default 1 s tail, snapped onto
 * the hop grid, it is equal too (bench/RESULTS.md); (b) `demix loadgen`,
 * 2 sessions of 6 s, --json: both ok, one reconnect each and 2 in the
 * round, no lost hop, every stem received every frame expected; (c)
 * `demix stream --reconnect 0`: exit 1 with the server's restarting
 * error, no files left behind.
 *
 * Timing is only a liveness matter here: the restart waits for the
 * sessions to be live on the server (GET /v1/health) and a moment more,
 * so that the seam falls mid-stream.
 */
#include "testutil.h"
#include "audio_files.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "server_fixture.h"
#include "ws_test_client.h"

#define OUT_BYTES (256 * 1024)
#define RATE 44100
#define SECONDS 8
#define HEALTH_WAIT_MS 60000

static const char *const sources[] = {"drums", "bass", "vocals", "other"};

static struct {
    const char *bin;
    const char *model;
    char dir[256];
    server_fixture fx;
    int started;
    char port[16];
    char input[512];
    char *out;
    char err[16384];
} g;

static int demix(const char *fmt, ...) DEMIX_PRINTF(1, 2);
static int demix(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return demix_test_run_tool(g.bin, args, g.dir, g.out, OUT_BYTES, g.err,
                               sizeof g.err);
}

static int start_server(void)
{
    return server_fixture_start(&g.fx, g.model, "--drain-seconds", "1",
                                "--max-sessions", "4", "--port", g.port,
                                (const char *)NULL);
}

static int live_sessions(int port)
{
    wst_http_response r;
    memset(&r, 0, sizeof r);
    int live = -1;
    if (wst_http(port, "GET", "/v1/health", NULL, NULL, 0, &r, 10000) == 0 &&
        r.status == 200) {
        cJSON *j = cJSON_Parse((const char *)r.body);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "sessions");
        if (cJSON_IsNumber(n))
            live = n->valueint;
        cJSON_Delete(j);
    }
    wst_http_response_free(&r);
    return live;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* The restart: once `sessions` stream on the server and a moment more,
 * SIGTERM (the drain ends them with restarting / 1012, then the server
 * exits 0), then a new server on the same port. On the main thread: the
 * fixture's demixd dies with the thread that started it
 * (PR_SET_PDEATHSIG), so the client runs on another (client_thread). */
typedef struct restart {
    int sessions;
    int stopped_status; /* the old server's exit status */
    int restarted;      /* the new one listens */
} restart;

static void restart_when_streaming(restart *r)
{
    r->stopped_status = -2;
    for (int waited = 0; waited < HEALTH_WAIT_MS; waited += 50) {
        if (live_sessions(g.fx.port) >= r->sessions) {
            sleep_ms(1500);
            r->stopped_status = server_fixture_stop(&g.fx);
            g.started = 0;
            r->restarted = start_server() == 0;
            g.started = r->restarted;
            return;
        }
        sleep_ms(50);
    }
}

/* A demix command on its own thread; rc once joined. */
typedef struct client_run {
    char args[2048];
    int rc;
} client_run;

static void *client_thread(void *arg)
{
    client_run *c = arg;
    c->rc = demix("%s", c->args);
    return NULL;
}

/* Run `args` while the server is restarted under it. */
static int run_through_restart(const char *args, int sessions, restart *r)
{
    static client_run c;
    snprintf(c.args, sizeof c.args, "%s", args);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_thread, &c), 0);
    r->sessions = sessions;
    restart_when_streaming(r);
    pthread_join(t, NULL);
    return c.rc;
}

static int path_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    g.bin = getenv("DEMIX_BIN");
    if (!g.bin || !path_exists(g.bin)) {
        print_error("DEMIX_BIN is not set to the demix binary\n");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.out = malloc(OUT_BYTES);
    if (!g.out)
        return -1;
    g.model = demix_test_data_path("tiny.safetensors");
    snprintf(g.input, sizeof g.input, "%s/song.wav", g.dir);
    int64_t frames = (int64_t)RATE * SECONDS;
    float *x = fx_make_signal(RATE, 2, frames, 20261207);
    if (!x)
        return -1;
    demix_test_write_audio(g.input, SF_FORMAT_WAV | SF_FORMAT_PCM_16, RATE, 2,
                           x, frames);
    free(x);
    snprintf(g.port, sizeof g.port, "0");
    if (start_server())
        return -1;
    g.started = 1;
    snprintf(g.port, sizeof g.port, "%d", g.fx.port); /* restarts keep it */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(g.out);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

static void wait_idle(void)
{
    for (int waited = 0; waited < HEALTH_WAIT_MS; waited += 100) {
        if (live_sessions(g.fx.port) == 0)
            return;
        sleep_ms(100);
    }
    fail_msg("the server still has live sessions");
}

/* ------------------------------------------------------------- tests */

/* (a) */
static void test_stream_survives_restart(void **state)
{
    (void)state;
    wait_idle();
    assert_int_equal(demix("stream --url ws://127.0.0.1:%d/v1/stream -q -o "
                           "'%s/ref' '%s'",
                           g.fx.port, g.dir, g.input),
                     0);
    restart r;
    char args[2048];
    snprintf(args, sizeof args,
             "stream --url ws://127.0.0.1:%d/v1/stream --realtime -o "
             "'%s/resumed' '%s'",
             g.fx.port, g.dir, g.input);
    int rc = run_through_restart(args, 1, &r);
    assert_int_equal(r.stopped_status, 0);
    assert_true(r.restarted);
    if (rc != 0)
        fail_msg("demix stream exited %d: %s", rc, g.err);
    const char *said = strstr(g.err, "the stems go on at ");
    if (!strstr(g.err, "server error restarting") || !said)
        fail_msg("no restart and reconnect reported: %s", g.err);
    double seam_s = atof(said + strlen("the stems go on at "));
    int64_t seam = (int64_t)llround(seam_s * RATE);
    print_message("the stems go on at %.3f s\n", seam_s);
    assert_true(seam > 0 && seam < (int64_t)RATE * SECONDS);

    for (int k = 0; k < 4; k++) {
        char a_path[768], b_path[768];
        snprintf(a_path, sizeof a_path, "%s/ref/song/%s.wav", g.dir, sources[k]);
        snprintf(b_path, sizeof b_path, "%s/resumed/song/%s.wav", g.dir,
                 sources[k]);
        SF_INFO ai, bi;
        float *a = demix_test_read_audio(a_path, &ai);
        float *b = demix_test_read_audio(b_path, &bi);
        assert_int_equal(bi.frames, (sf_count_t)RATE * SECONDS); /* exact */
        assert_int_equal(ai.frames, bi.frames);
        assert_int_equal(bi.channels, 2);
        assert_int_equal(bi.samplerate, RATE);
        double seam_max = 0;
        for (int64_t i = 0; i < (int64_t)bi.frames; i++)
            for (int c = 0; c < 2; c++) {
                double d = fabs((double)a[i * 2 + c] - b[i * 2 + c]);
                if (i >= seam && i < seam + RATE) {
                    if (d > seam_max)
                        seam_max = d;
                } else if (d != 0.0) {
                    fail_msg("%s differs from the uninterrupted run at frame "
                             "%lld (%.3f s), %.3f s from the seam: %g",
                             sources[k], (long long)i, (double)i / RATE,
                             (double)(i - seam) / RATE, d);
                }
            }
        print_message("%s: largest difference in the second after the "
                      "seam %g\n",
                      sources[k], seam_max);
        free(a);
        free(b);
    }
}

/* (b) */
static const cJSON *item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        fail_msg("JSON: no member '%s'", key);
    return v;
}

static double number(const cJSON *o, const char *key)
{
    const cJSON *v = item(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("JSON: '%s' is not a number", key);
    return v->valuedouble;
}

static void test_loadgen_counts_the_reconnect(void **state)
{
    (void)state;
    wait_idle();
    restart r;
    char args[2048];
    snprintf(args, sizeof args,
             "loadgen --url ws://127.0.0.1:%d/v1/stream --sessions 2 "
             "--seconds 6 --rate %d --threads 1 --verify 0 --json --quiet",
             g.fx.port, RATE);
    int rc = run_through_restart(args, 2, &r);
    assert_int_equal(r.stopped_status, 0);
    assert_true(r.restarted);
    cJSON *root = cJSON_Parse(g.out);
    if (!root)
        fail_msg("demix loadgen --json printed no JSON (exit %d): %s", rc,
                 g.err);
    const cJSON *round = cJSON_GetArrayItem(item(root, "rounds"), 0);
    assert_non_null(round);
    if (number(round, "ok") != 2)
        fail_msg("not both sessions ok: %s", g.out);
    assert_int_equal(rc, 0);
    assert_true(number(round, "failed") == 0);
    assert_true(number(round, "reconnects") == 2);
    assert_true(number(round, "lost_hops") == 0);
    assert_true(number(round, "frames_received") ==
                number(round, "frames_expected"));
    const cJSON *s;
    cJSON_ArrayForEach(s, item(round, "session_list"))
    {
        assert_true(number(s, "reconnects") == 1);
        assert_true(number(s, "lost_hops") == 0);
        assert_true(number(s, "frames_received") ==
                    number(s, "frames_expected"));
    }
    cJSON_Delete(root);
}

/* (c) */
static void test_no_reconnect_fails(void **state)
{
    (void)state;
    wait_idle();
    restart r;
    char args[2048];
    snprintf(args, sizeof args,
             "stream --url ws://127.0.0.1:%d/v1/stream --realtime "
             "--reconnect 0 -q -o '%s/once' '%s'",
             g.fx.port, g.dir, g.input);
    int rc = run_through_restart(args, 1, &r);
    assert_true(r.restarted);
    assert_int_equal(rc, 1);
    if (!strstr(g.err, "restarting"))
        fail_msg("the restarting error is not reported: %s", g.err);
    char p[768];
    snprintf(p, sizeof p, "%s/once/song/vocals.wav", g.dir);
    assert_false(path_exists(p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_survives_restart),
        cmocka_unit_test(test_loadgen_counts_the_reconnect),
        cmocka_unit_test(test_no_reconnect_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
