/*
 * test_soak_chaos.c - a 60 s soak of demixd with misbehaving clients
 * (ctest label `soak`; issue 15): the CPU engine with the tiny model
 * (tests/data/tiny.safetensors), `demix loadgen --sessions 16 --chaos
 * 0.25 --seconds 60 --verify 1`: 12 good sessions stream for 60 s while
 * 4 chaos clients vanish, stall, stop reading, send garbage or malformed
 * messages and flood, episode after episode (docs/loadgen.md, "Chaos").
 *
 * Asserted:
 *   - the good sessions: all 12 ok, none refused or failed, no hop lost,
 *     every one compared with loadgen's reference session (a clean run
 *     of the same audio, alone, before the round) and bit-identical to it
 *     (the CPU engine's kernels are row-stable: batching with anything
 *     does not change a session's numbers);
 *   - the chaos: every kind ran and was answered as docs/server.md
 *     promises at least once, none unanswered (loadgen exits 0);
 *   - demixd's resident memory (VmRSS of /proc/PID/status, sampled every
 *     250 ms) is flat after warm-up: the highest sample of the last 20 s
 *     is at most RSS_TOLERANCE_BYTES above the highest of the 20 s
 *     before (below);
 *   - the server is still ready afterwards (GET /v1/health/ready 200),
 *     its session count goes back to 0 (every slot returned), and it stops
 *     cleanly on SIGTERM (exit 0).
 *
 * The tolerance. Over a 60 s round the chaos clients run about 50
 * episodes, each holding a session's memory (at most about 1 MB:
 * docs/server.md, "Queues") for a while: a leak of even a fraction of a
 * session per episode grows the resident size by tens of MB from the
 * first window to the second. Without a leak the size still moves by what
 * is live at the moment (a flood or a non-reader holding its full queues)
 * and by glibc's per-thread arenas, which keep freed memory and grow
 * towards a plateau. Measured on the shared 2-core machine (2026-12-07,
 * load average 13): growth between the windows 3.4 and 1.2 MB in two
 * runs; a 240 s run of the same load (VmRSS every 5 s) went 35.8 MB at
 * 20 s, 43.4 at 60 s, 44.6 at 100 s, 46.1 at 160 s, 46.7 at 220 s: a
 * slowing climb to a plateau, not a line. RSS_TOLERANCE_BYTES is 6 MB:
 * above that noise, below one leaked session per ten episodes.
 *
 * DEMIX_SOAK_SECONDS shortens or lengthens the round (default 60). The
 * ASan run of scripts/test.sh runs it for 30 s, where LeakSanitizer
 * checks demixd's heap at exit in place of the resident size.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "server_fixture.h"
#include "ws_test_client.h"

#define SESSIONS 16
#define CHAOS "0.25"
#define GOOD 12
#define SAMPLE_MS 250
#define WINDOW_S 20.0
#define RSS_TOLERANCE_BYTES (6 << 20)
#define MAX_SAMPLES 4096

static struct {
    char dir[256];
    const char *bin;
    const char *model;
    server_fixture fx;
    int started;
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* VmRSS of pid in bytes, or -1. */
static long long rss_bytes(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) {
        print_error("JSON field %s missing\n", key);
        fail();
    }
    return v->valuedouble;
}

static int setup(void **state)
{
    (void)state;
    g.bin = getenv("DEMIX_BIN");
    if (!g.bin) {
        print_error("DEMIX_BIN is not set\n");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.model = strdup(demix_test_data_path("tiny.safetensors"));
    /* --idle-timeout 3: stalled and non-reading clients end within the
     * round (3 s, and 3 + 10 s), so their episodes are judged */
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "32",
                             "--idle-timeout", "3", (const char *)NULL))
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free((void *)g.model);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

static void test_soak_with_chaos(void **state)
{
    (void)state;
    const char *env = getenv("DEMIX_SOAK_SECONDS");
    int seconds = env && atoi(env) >= 10 ? atoi(env) : 60;
    char url[128], secs[16], out_path[512], err_path[512];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/v1/stream", g.fx.port);
    snprintf(secs, sizeof secs, "%d", seconds);
    snprintf(out_path, sizeof out_path, "%s/loadgen.json", g.dir);
    snprintf(err_path, sizeof err_path, "%s/loadgen.err", g.dir);
    print_message("$ %s loadgen --url %s --sessions %d --chaos %s --seconds "
                  "%s --verify 1 --json --no-session-list --quiet\n",
                  g.bin, url, SESSIONS, CHAOS, secs);
    fflush(stdout);
    double t0 = now_s();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0)
            _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        char n[16];
        snprintf(n, sizeof n, "%d", SESSIONS);
        execl(g.bin, g.bin, "loadgen", "--url", url, "--sessions", n,
              "--chaos", CHAOS, "--seconds", secs, "--verify", "1", "--json",
              "--no-session-list", "--quiet", (char *)NULL);
        _exit(127);
    }

    /* demixd's resident size while loadgen runs */
    static double t[MAX_SAMPLES];
    static long long rss[MAX_SAMPLES];
    int ns = 0, status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        assert_true(w == 0);
        long long r = rss_bytes(g.fx.pid);
        assert_true(r > 0); /* the server is alive */
        if (ns < MAX_SAMPLES) {
            t[ns] = now_s() - t0;
            rss[ns++] = r;
        }
        sleep_ms(SAMPLE_MS);
    }
    double end = now_s() - t0;
    char *err_text = read_file(err_path);
    print_message("loadgen exit %d after %.1f s; stderr: %s\n",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1, end,
                  err_text ? err_text : "");
    free(err_text);

    /* the report */
    char *json = read_file(out_path);
    assert_non_null(json);
    cJSON *root = cJSON_Parse(json);
    if (!root)
        print_error("loadgen's output is not JSON:\n%s\n", json);
    assert_non_null(root);
    const cJSON *r =
        cJSON_GetArrayItem(cJSON_GetObjectItem(root, "rounds"), 0);
    assert_non_null(r);
    const cJSON *v = cJSON_GetObjectItem(r, "verify");
    const cJSON *c = cJSON_GetObjectItem(r, "chaos");
    assert_true(cJSON_IsObject(v));
    assert_true(cJSON_IsObject(c));
    print_message("good sessions: %g ok, %g refused, %g failed, %g lost hops; "
                  "verify: %g sampled, %g identical, %g mismatched\n",
                  num(r, "ok"), num(r, "refused"), num(r, "failed"),
                  num(r, "lost_hops"), num(v, "sampled"), num(v, "identical"),
                  num(v, "mismatched"));
    const cJSON *kinds = cJSON_GetObjectItem(c, "kinds");
    const cJSON *k;
    cJSON_ArrayForEach(k, kinds)
    {
        const cJSON *ex = cJSON_GetObjectItem(k, "example");
        print_message("chaos %-9s %3g episodes: %g answered, %g unanswered, "
                      "%g refused, %g cut%s%s\n",
                      k->string, num(k, "episodes"), num(k, "answered"),
                      num(k, "unanswered"), num(k, "refused"), num(k, "cut"),
                      cJSON_IsString(ex) ? "; " : "",
                      cJSON_IsString(ex) ? ex->valuestring : "");
    }
    assert_int_equal((int)num(r, "sessions"), GOOD);
    assert_int_equal((int)num(r, "ok"), GOOD);
    assert_int_equal((int)num(r, "refused"), 0);
    assert_int_equal((int)num(r, "failed"), 0);
    assert_int_equal((int)num(r, "lost_hops"), 0);
    assert_int_equal((int)num(v, "sampled"), GOOD);
    assert_int_equal((int)num(v, "complete"), GOOD);
    assert_int_equal((int)num(v, "identical"), GOOD);
    assert_int_equal((int)num(v, "mismatched"), 0);
    assert_int_equal((int)num(c, "clients"), SESSIONS - GOOD);
    assert_int_equal((int)num(c, "unanswered"), 0);
    int kinds_seen = 0;
    cJSON_ArrayForEach(k, kinds)
    {
        assert_true(num(k, "answered") >= 1);
        kinds_seen++;
    }
    assert_int_equal(kinds_seen, 6);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cJSON_Delete(root);
    free(json);

    /* flat memory: the last WINDOW_S against the WINDOW_S before */
    long long before = 0, last = 0;
    for (int i = 0; i < ns; i++) {
        if (t[i] >= end - WINDOW_S)
            last = rss[i] > last ? rss[i] : last;
        else if (t[i] >= end - 2 * WINDOW_S)
            before = rss[i] > before ? rss[i] : before;
    }
    print_message("demixd VmRSS: first %.1f MB, highest %.1f MB in "
                  "[%.0f, %.0f) s, %.1f MB in the last %.0f s (%d samples); "
                  "growth %.2f MB, tolerance %.1f MB\n",
                  ns ? rss[0] / 1048576.0 : 0.0, before / 1048576.0,
                  end - 2 * WINDOW_S, end - WINDOW_S, last / 1048576.0,
                  WINDOW_S, ns, (last - before) / 1048576.0,
                  RSS_TOLERANCE_BYTES / 1048576.0);
    assert_true(before > 0 && last > 0);
    /* Under ASan freed memory waits in its quarantine (up to 256 MB), so
     * the resident size says nothing there; LeakSanitizer checks demixd's
     * heap at its exit instead (the fixture's stop expects exit 0). */
    if (fx_under_sanitizer())
        print_message("# under a sanitizer: the resident size is not "
                      "asserted\n");
    else
        assert_true(last - before <= RSS_TOLERANCE_BYTES);

    /* still ready, and every slot returned */
    wst_http_response h;
    memset(&h, 0, sizeof h);
    assert_int_equal(wst_http(g.fx.port, "GET", "/v1/health/ready", NULL, NULL,
                              0, &h, FX_TIMEOUT_MS),
                     0);
    assert_int_equal(h.status, 200);
    wst_http_response_free(&h);
    int sessions = -1;
    for (int i = 0; i < 100 && sessions != 0; i++) {
        memset(&h, 0, sizeof h);
        assert_int_equal(wst_http(g.fx.port, "GET", "/v1/health", NULL, NULL,
                                  0, &h, FX_TIMEOUT_MS),
                         0);
        const char *p = strstr((const char *)h.body, "\"sessions\":");
        sessions = p ? atoi(p + strlen("\"sessions\":")) : -1;
        wst_http_response_free(&h);
        if (sessions)
            sleep_ms(100);
    }
    print_message("sessions after the soak: %d\n", sessions);
    assert_int_equal(sessions, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak_with_chaos),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
