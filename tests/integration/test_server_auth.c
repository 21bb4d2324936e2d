/*
 * test_server_auth.c - demixd with access tokens (--tokens FILE,
 * $DEMIXD_TOKENS_FILE; docs/server.md, protocol sections 5.1, 7 and 14).
 *
 * The main server runs an identity model at 48 kHz with a tokens file that
 * has comments, blank lines and whitespace around its two tokens. Cases:
 *
 *   - a start with either token streams (its stems equal its input
 *     times FX_IDENTITY_GAIN);
 *   - a start without a token, or with a wrong one (same length, shorter,
 *     longer, a prefix, empty, another case, padded, the longest allowed)
 *     gets `unauthorized` (field `token`), then close 1008 "unauthorized",
 *     and never `ready`; all of them while a good session keeps streaming
 *     undisturbed; demixd_auth_refused_total{api="stream"} counts them;
 *   - POST /v1/separate: the right `Authorization: Bearer` -> 200 ZIP
 *     (the scheme in any case); none, a wrong one, another scheme -> 401
 *     with the JSON error shape, code `unauthorized`, and a
 *     WWW-Authenticate challenge; /v1/health, /metrics and the page answer
 *     200 without a token; the refusals are counted;
 *   - no token value appears in /metrics or in the server's log;
 *   - `demix stream` passes --token or $DEMIX_TOKEN and is refused without;
 *   - $DEMIXD_TOKENS_FILE works like --tokens; without either the server
 *     logs auth=none and accepts any token or none;
 *   - a tokens file that is missing, a directory, without tokens, with an
 *     over-long token or a token with a space stops the start with exit
 *     status 1 and a log line naming the file (and the line).
 */
#include "testutil.h"
#include "audio_files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server_fixture.h"

#define RATE 48000
#define TOKEN_A "alpha-token-1234"
#define TOKEN_B "beta-0987"

static struct {
    char dir[256];
    char model[512];
    char tokens[512];
    char web[512];
    char wav[512];
    server_fixture fx;
    int started;
    uint64_t seed;
} g;

static const char *const all_stems[] = {"drums", "bass", "vocals", "other",
                                        NULL};

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A whole file into a malloc'd NUL-terminated buffer. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    assert_non_null(b);
    size_t r;
    while ((r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
            assert_non_null(b);
        }
    }
    fclose(f);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

/* A start (PCM f32 both ways, all stems) with a token, or none (NULL). */
static void start_with(demix_proto_start *st, const char *token)
{
    fx_start_init(st, RATE, 2, DEMIX_PROTO_CODEC_PCM_F32,
                  DEMIX_PROTO_CODEC_PCM_F32, all_stems);
    if (token) {
        st->has_token = 1;
        snprintf(st->token, sizeof st->token, "%s", token);
    }
}

/* The value of a metric line "NAME VALUE" in a /metrics body, or -1. */
static long long metric(int port, const char *name)
{
    wst_http_response r;
    assert_int_equal(
        wst_http(port, "GET", "/metrics", NULL, NULL, 0, &r, 10000), 0);
    assert_int_equal(r.status, 200);
    assert_null(strstr((const char *)r.body, TOKEN_A));
    assert_null(strstr((const char *)r.body, TOKEN_B));
    long long v = -1;
    size_t nl = strlen(name);
    for (const char *p = (const char *)r.body; p && *p;) {
        if (!strncmp(p, name, nl) && p[nl] == ' ')
            v = atoll(p + nl + 1);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    wst_http_response_free(&r);
    return v;
}

#define REFUSED_STREAM "demixd_auth_refused_total{api=\"stream\"}"
#define REFUSED_FILE "demixd_auth_refused_total{api=\"file\"}"

/* A whole short stream with a token; its stems must equal its input times
 * FX_IDENTITY_GAIN. */
static void stream_ok(int port, const char *token, int64_t frames)
{
    float *x = fx_make_signal(RATE, 2, frames, g.seed);
    float *want = fx_scaled(x, frames * 2, FX_IDENTITY_GAIN);
    assert_non_null(want);
    demix_proto_start st;
    start_with(&st, token);
    fx_session s;
    assert_int_equal(fx_session_open(&s, port, &st), 0);
    if (fx_session_run(&s, x, frames, 1024))
        fx_session_print(&s, token ? token : "(no token)");
    assert_string_equal(s.violation, "");
    assert_true(s.have_ready);
    assert_false(s.have_error);
    assert_true(s.have_summary);
    assert_int_equal(s.close_code, 1000);
    assert_int_equal((int64_t)s.summary.input_frames, frames);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&s, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        assert_true(demix_test_max_abs_diff(tr->x, want,
                                            (size_t)frames * 2) <= 1e-5);
    }
    fx_session_free(&s);
    free(want);
    free(x);
}

/* A start with this token (NULL: none) must get unauthorized, field
 * token, close 1008 "unauthorized", and no ready. 0 when it did. */
static int refused(int port, const char *label, const char *token)
{
    demix_proto_start st;
    start_with(&st, token);
    fx_session s;
    if (fx_session_open(&s, port, &st) || fx_session_finish(&s)) {
        print_error("[%s] the session did not run to its end\n", label);
        fx_session_free(&s);
        return -1;
    }
    int ok = 1;
    if (s.have_ready) {
        print_error("[%s] got ready\n", label);
        ok = 0;
    }
    if (!s.have_error || s.error.code != DEMIX_PROTO_ERR_UNAUTHORIZED) {
        print_error("[%s] error %s, expected unauthorized\n", label,
                    s.have_error ? demix_proto_code_name(s.error.code)
                                 : "(none)");
        ok = 0;
    } else if (strcmp(s.error.field, "token") || !s.error.message[0]) {
        print_error("[%s] field '%s', message '%s'\n", label, s.error.field,
                    s.error.message);
        ok = 0;
    }
    if (!s.closed || s.close_code != 1008 ||
        strcmp(s.close_reason, "unauthorized")) {
        print_error("[%s] close %d '%s', expected 1008 'unauthorized'\n", label,
                    s.close_code, s.close_reason);
        ok = 0;
    }
    if (ok)
        print_message("[%s] unauthorized '%s', close %d '%s'\n", label,
                      s.error.message, s.close_code, s.close_reason);
    fx_session_free(&s);
    return ok ? 0 : -1;
}

/* -------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    g.seed = demix_test_seed();
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    snprintf(g.model, sizeof g.model, "%s/identity48k.safetensors", g.dir);
    if (fx_save_identity_model(g.model, RATE, g.seed))
        return -1;
    /* Comments, blank lines, blanks around the tokens, a CRLF. */
    snprintf(g.tokens, sizeof g.tokens, "%s/tokens.txt", g.dir);
    write_text(g.tokens, "# demixd access tokens\n"
                         "\n"
                         "   " TOKEN_A "  \n"
                         "   # an indented comment\n"
                         "\t" TOKEN_B "\r\n");
    snprintf(g.web, sizeof g.web, "%s/web", g.dir);
    if (mkdir(g.web, 0755))
        return -1;
    char index[600];
    snprintf(index, sizeof index, "%s/index.html", g.web);
    write_text(index, "<!doctype html><title>demixd</title>\n");
    int64_t frames = RATE / 4;
    float *x = fx_make_signal(RATE, 2, frames, g.seed + 1);
    snprintf(g.wav, sizeof g.wav, "%s/in.wav", g.dir);
    demix_test_write_audio(g.wav, SF_FORMAT_WAV | SF_FORMAT_PCM_16, RATE, 2, x,
                           frames);
    free(x);
    if (server_fixture_start(&g.fx, g.model, "--tokens", g.tokens, "--web",
                             g.web, "--max-sessions", "4", (const char *)NULL))
        return -1;
    g.started = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

/* -------------------------------------------------------------- tests */

/* Both tokens of the file (trimmed of their blanks) are accepted. */
static void test_right_tokens_stream(void **state)
{
    (void)state;
    stream_ok(g.fx.port, TOKEN_A, 4 * 512);
    stream_ok(g.fx.port, TOKEN_B, 4 * 512);
}

/* Every refused start while one good session keeps streaming. */
static void test_refusals_leave_good_session_streaming(void **state)
{
    (void)state;
    char longest[DEMIX_PROTO_TOKEN_MAX_BYTES + 1];
    memset(longest, 'a', DEMIX_PROTO_TOKEN_MAX_BYTES);
    longest[DEMIX_PROTO_TOKEN_MAX_BYTES] = '\0';
    const struct {
        const char *label, *token;
    } bad[] = {
        {"no token", NULL},
        {"wrong, same length", "alpha-token-1235"},
        {"wrong, first byte", "blpha-token-1234"},
        {"wrong, shorter", "alpha-token-123"},
        {"wrong, longer", "alpha-token-12345"},
        {"prefix of a token", "beta"},
        {"empty", ""},
        {"another case", "ALPHA-TOKEN-1234"},
        {"padded with a space", " " TOKEN_B},
        {"256 bytes", longest},
    };
    const int n_bad = (int)(sizeof bad / sizeof bad[0]);
    assert_int_equal(strlen(bad[1].token), strlen(TOKEN_A));
    assert_int_equal(strlen(bad[2].token), strlen(TOKEN_A));
    long long before = metric(g.fx.port, REFUSED_STREAM);
    assert_true(before >= 0);

    int64_t frames = 2 * RATE;
    float *x = fx_make_signal(RATE, 2, frames, g.seed + 2);
    demix_proto_start st;
    start_with(&st, TOKEN_A);
    fx_session good;
    assert_int_equal(fx_session_open(&good, g.fx.port, &st), 0);
    assert_int_equal(fx_session_wait_ready(&good), 0);
    int64_t per_case = frames / (n_bad + 1);
    int failures = 0;
    for (int k = 0; k <= n_bad; k++) {
        int64_t end = k == n_bad ? frames : (k + 1) * per_case;
        while (good.sent < end) {
            int64_t n = end - good.sent < 2048 ? end - good.sent : 2048;
            assert_int_equal(fx_session_send(&good, x + good.sent * 2, n), 0);
            while (fx_session_poll(&good, 0) == 1)
                ;
        }
        assert_false(good.eof);
        assert_false(good.closed);
        if (k < n_bad && refused(g.fx.port, bad[k].label, bad[k].token))
            failures++;
    }
    assert_int_equal(fx_session_send_end(&good), 0);
    assert_int_equal(fx_session_finish(&good), 0);
    if (good.violation[0] || !good.have_summary || good.close_code != 1000)
        fx_session_print(&good, "good session");
    assert_string_equal(good.violation, "");
    assert_true(good.have_summary);
    assert_false(good.have_error);
    assert_int_equal(good.close_code, 1000);
    assert_int_equal((int64_t)good.summary.input_frames, frames);
    float *want = fx_scaled(x, frames * 2, FX_IDENTITY_GAIN);
    assert_non_null(want);
    for (int t = 0; t < 4; t++) {
        const fx_track *tr = fx_session_track(&good, t);
        assert_non_null(tr);
        assert_int_equal(tr->frames, frames);
        assert_true(demix_test_max_abs_diff(tr->x, want,
                                            (size_t)frames * 2) <= 1e-5);
    }
    free(want);
    fx_session_free(&good);
    free(x);
    assert_int_equal(failures, 0);
    long long after = metric(g.fx.port, REFUSED_STREAM);
    print_message("%s: %lld -> %lld\n", REFUSED_STREAM, before, after);
    assert_int_equal(after - before, n_bad);
    assert_true(server_fixture_alive(&g.fx));
}

/* One POST /v1/separate of the test WAV with these extra header lines;
 * returns the status, checks the 401 shape. */
static int post_separate(const char *headers)
{
    size_t n;
    char *body = read_all(g.wav, &n);
    wst_http_response r;
    int rc = wst_http_with_headers(g.fx.port, "POST", "/v1/separate", headers,
                                   "audio/wav", body, n, &r, FX_TIMEOUT_MS);
    free(body);
    assert_int_equal(rc, 0);
    char v[256] = "";
    if (r.status == 200) {
        assert_int_equal(wst_http_header(&r, "Content-Type", v, sizeof v), 0);
        assert_string_equal(v, "application/zip");
        assert_true(r.body_len > 22);
    } else {
        print_message("POST with [%s]: %d %s", headers ? headers : "", r.status,
                      (const char *)r.body);
        assert_int_equal(wst_http_header(&r, "Content-Type", v, sizeof v), 0);
        assert_string_equal(v, "application/json");
        assert_non_null(strstr((const char *)r.body,
                               "{\"error\":{\"code\":\"unauthorized\","
                               "\"message\":\""));
        assert_int_equal(wst_http_header(&r, "WWW-Authenticate", v, sizeof v),
                         0);
        assert_int_equal(strncmp(v, "Bearer ", 7), 0);
    }
    int status = r.status;
    wst_http_response_free(&r);
    return status;
}

static int get_status(const char *path)
{
    wst_http_response r;
    assert_int_equal(wst_http(g.fx.port, "GET", path, NULL, NULL, 0, &r, 10000),
                     0);
    int status = r.status;
    wst_http_response_free(&r);
    return status;
}

static void test_file_api_bearer(void **state)
{
    (void)state;
    long long before = metric(g.fx.port, REFUSED_FILE);
    assert_int_equal(post_separate("Authorization: Bearer " TOKEN_A "\r\n"),
                     200);
    assert_int_equal(post_separate("authorization: bearer " TOKEN_B "\r\n"),
                     200);
    assert_int_equal(post_separate(NULL), 401);
    assert_int_equal(post_separate("Authorization: Bearer "
                                   "alpha-token-1235\r\n"),
                     401);
    assert_int_equal(post_separate("Authorization: Bearer alpha-token\r\n"),
                     401);
    assert_int_equal(post_separate("Authorization: Basic "
                                   "YWxwaGEtdG9rZW4tMTIzNA==\r\n"),
                     401);
    assert_int_equal(post_separate("Authorization: " TOKEN_A "\r\n"), 401);
    long long after = metric(g.fx.port, REFUSED_FILE);
    print_message("%s: %lld -> %lld\n", REFUSED_FILE, before, after);
    assert_int_equal(after - before, 5);

    /* Open without a token. */
    assert_int_equal(get_status("/v1/health"), 200);
    assert_int_equal(get_status("/metrics"), 200);
    assert_int_equal(get_status("/"), 200);
}

/* No token value in the log (tokens file, refusals, requests). */
static void test_log_has_no_token(void **state)
{
    (void)state;
    char *log = read_all(g.fx.log_path, NULL);
    assert_non_null(strstr(log, "auth=tokens count=2"));
    assert_null(strstr(log, TOKEN_A));
    assert_null(strstr(log, TOKEN_B));
    assert_null(strstr(log, "alpha-token"));
    free(log);
}

/* demix stream: --token, $DEMIX_TOKEN, and refused without. */
static void test_demix_stream_token(void **state)
{
    (void)state;
    const char *bin = getenv("DEMIX_BIN");
    assert_non_null(bin);
    char args[2048], err[8192];
    snprintf(args, sizeof args,
             "stream --url ws://127.0.0.1:%d/v1/stream -q -o '%s/out1' "
             "--token " TOKEN_A " '%s'",
             g.fx.port, g.dir, g.wav);
    assert_int_equal(
        demix_test_run_tool(bin, args, g.dir, NULL, 0, err, sizeof err), 0);
    char stem[1024];
    snprintf(stem, sizeof stem, "%s/out1/in/vocals.wav", g.dir);
    assert_int_equal(access(stem, F_OK), 0);

    assert_int_equal(setenv("DEMIX_TOKEN", TOKEN_B, 1), 0);
    snprintf(args, sizeof args,
             "stream --url ws://127.0.0.1:%d/v1/stream -q -o '%s/out2' '%s'",
             g.fx.port, g.dir, g.wav);
    int rc = demix_test_run_tool(bin, args, g.dir, NULL, 0, err, sizeof err);
    unsetenv("DEMIX_TOKEN");
    assert_int_equal(rc, 0);

    snprintf(args, sizeof args,
             "stream --url ws://127.0.0.1:%d/v1/stream -q -o '%s/out3' '%s'",
             g.fx.port, g.dir, g.wav);
    assert_int_equal(
        demix_test_run_tool(bin, args, g.dir, NULL, 0, err, sizeof err), 1);
    assert_non_null(strstr(err, "unauthorized"));
}

/* $DEMIXD_TOKENS_FILE instead of --tokens; and neither: any token. */
static void test_env_file_and_no_tokens(void **state)
{
    (void)state;
    assert_int_equal(setenv("DEMIXD_TOKENS_FILE", g.tokens, 1), 0);
    server_fixture env;
    int rc = server_fixture_start(&env, g.model, "--max-sessions", "2",
                                  (const char *)NULL);
    unsetenv("DEMIXD_TOKENS_FILE");
    assert_int_equal(rc, 0);
    assert_int_equal(refused(env.port, "env file, no token", NULL), 0);
    stream_ok(env.port, TOKEN_B, 512);
    char *log = read_all(env.log_path, NULL);
    assert_non_null(strstr(log, "auth=tokens count=2"));
    free(log);
    assert_int_equal(server_fixture_stop(&env), 0);

    server_fixture open;
    assert_int_equal(server_fixture_start(&open, g.model, "--max-sessions", "2",
                                          (const char *)NULL),
                     0);
    log = read_all(open.log_path, NULL);
    assert_non_null(strstr(log, "auth=none"));
    free(log);
    stream_ok(open.port, NULL, 512);
    stream_ok(open.port, "anything-goes", 512);
    assert_int_equal(server_fixture_stop(&open), 0);
}

/* demixd with a tokens file: the exit status, stderr into err. */
static int demixd_with(const char *tokens_arg, char *err, size_t cap)
{
    const char *bin = server_fixture_bin();
    assert_non_null(bin);
    char args[2048];
    snprintf(args, sizeof args,
             "--model '%s' --backend cpu --host 127.0.0.1 --port 0 "
             "--max-sessions 1 %s",
             g.model, tokens_arg);
    return demix_test_run_tool(bin, args, g.dir, NULL, 0, err, cap);
}

static void expect_start_failure(const char *label, const char *path,
                                 const char *line, const char *why)
{
    char arg[1024], err[8192];
    snprintf(arg, sizeof arg, "--tokens '%s'", path);
    int status = demixd_with(arg, err, sizeof err);
    print_message("[%s] exit status %d\n", label, status);
    assert_int_equal(status, 1);
    char file_kv[1024];
    snprintf(file_kv, sizeof file_kv, "event=auth file=%s", path);
    assert_non_null(strstr(err, file_kv));
    if (line)
        assert_non_null(strstr(err, line));
    else
        assert_null(strstr(err, "line="));
    assert_non_null(strstr(err, why));
    assert_null(strstr(err, "listening on"));
}

static void test_bad_tokens_file_stops_the_start(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/missing-tokens.txt", g.dir);
    expect_start_failure("missing", path, NULL, "cannot open");
    expect_start_failure("directory", g.web, NULL, "cannot read");

    snprintf(path, sizeof path, "%s/empty-tokens.txt", g.dir);
    write_text(path, "# only a comment\n\n   \n");
    expect_start_failure("no tokens", path, NULL, "no token");

    char text[1024];
    char big[DEMIX_PROTO_TOKEN_MAX_BYTES + 2];
    memset(big, 'x', DEMIX_PROTO_TOKEN_MAX_BYTES + 1);
    big[DEMIX_PROTO_TOKEN_MAX_BYTES + 1] = '\0';
    snprintf(text, sizeof text, "# tokens\n" TOKEN_A "\n%s\n", big);
    snprintf(path, sizeof path, "%s/long-tokens.txt", g.dir);
    write_text(path, text);
    expect_start_failure("257-byte token", path, "line=3", "257 bytes");

    snprintf(path, sizeof path, "%s/space-tokens.txt", g.dir);
    write_text(path, TOKEN_A "\ntwo words\n");
    expect_start_failure("token with a space", path, "line=2", "space");

    if (geteuid() != 0) { /* root reads any file */
        snprintf(path, sizeof path, "%s/unreadable-tokens.txt", g.dir);
        write_text(path, TOKEN_A "\n");
        assert_int_equal(chmod(path, 0), 0);
        expect_start_failure("unreadable", path, NULL, "cannot open");
    } else {
        print_message("[unreadable] skipped: root reads mode-000 files\n");
    }

    /* The environment's file is not skipped when it is missing. */
    char err[8192];
    snprintf(path, sizeof path, "%s/missing-env-tokens.txt", g.dir);
    assert_int_equal(setenv("DEMIXD_TOKENS_FILE", path, 1), 0);
    int status = demixd_with("", err, sizeof err);
    unsetenv("DEMIXD_TOKENS_FILE");
    assert_int_equal(status, 1);
    assert_non_null(strstr(err, path));

    /* An empty --tokens value is a usage error. */
    assert_int_equal(demixd_with("--tokens=", err, sizeof err), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_right_tokens_stream),
        cmocka_unit_test(test_refusals_leave_good_session_streaming),
        cmocka_unit_test(test_file_api_bearer),
        cmocka_unit_test(test_demix_stream_token),
        cmocka_unit_test(test_log_has_no_token),
        cmocka_unit_test(test_env_file_and_no_tokens),
        cmocka_unit_test(test_bad_tokens_file_stops_the_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
