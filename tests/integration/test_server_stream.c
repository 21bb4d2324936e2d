/*
 * test_server_stream.c - `demix stream` (tools/cmd_stream.c) against the
 * real demixd: its files must be what `demix separate` writes for the same
 * input and model (tests/data/tiny.safetensors, 44.1 kHz, CPU engine).
 *
 * Cases: (a) --float32 (PCM f32 on the wire, float files): every stem
 * equals demix separate --float32's to 1e-5, for a 44.1 kHz stereo float
 * file (no resampling anywhere) and for a 48 kHz mono 16-bit file (the
 * server resamples both ways), the latter also with --realtime; (b) the
 * default (PCM s16, 16-bit files) of a 16-bit input: within one LSB of
 * demix separate's 16-bit files; (c) --codec opus: same layout, length,
 * rate and channels, aligned (correlation peak at lag 0 against separate's
 * output); (d) --stems writes only those, --mix writes mix.wav equal to the
 * gain-weighted sum of separate's stems; (e) errors: a refused connection,
 * a server error (unknown stem: code and message printed), a connection
 * that drops after the handshake (a fake server in a child process), a
 * missing --url; none leaves files behind; (f) a model with other source
 * names; (g) a URL without the path (appended) and with a wrong one (a
 * hint names /v1/stream).
 */
#include "testutil.h"
#include "audio_files.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sndfile.h>

#include "engine.h"
#include "model_impl.h"
#include "server_fixture.h"

static struct {
    char dir[256];
    const char *bin;
    const char *model;
    server_fixture fx;
    int started;
    char url[128];
    char in44[512];  /* 44.1 kHz stereo float WAV */
    char in48[512];  /* 48 kHz mono 16-bit WAV */
    char stderr_text[16384];
    uint64_t seed;
} g;

static const char *const sources[] = {"drums", "bass", "vocals", "other"};

/* ------------------------------------------------------------ helpers */

static int path_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int demix(const char *fmt, ...) DEMIX_PRINTF(1, 2);
static int demix(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return demix_test_run_tool(g.bin, args, g.dir, NULL, 0, g.stderr_text,
                               sizeof g.stderr_text);
}

static void stem_path(char *out, size_t cap, const char *dir, const char *name,
                      const char *source)
{
    snprintf(out, cap, "%s/%s/%s.wav", dir, name, source);
}

/* Compare two files: same length, rate, channels, subtype; returns the
 * largest sample difference. */
static double compare_files(const char *a_path, const char *b_path)
{
    SF_INFO a, b;
    float *x = demix_test_read_audio(a_path, &a);
    float *y = demix_test_read_audio(b_path, &b);
    assert_int_equal(a.frames, b.frames);
    assert_int_equal(a.samplerate, b.samplerate);
    assert_int_equal(a.channels, b.channels);
    assert_int_equal(a.format, b.format);
    double m = 0;
    for (int64_t i = 0; i < a.frames * a.channels; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (d > m || d != d)
            m = d;
    }
    free(x);
    free(y);
    return m;
}

/* -------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    g.seed = demix_test_seed();
    g.bin = getenv("DEMIX_BIN");
    if (!g.bin || !path_exists(g.bin)) {
        print_error("DEMIX_BIN is not set to the demix binary\n");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    g.model = strdup(demix_test_data_path("tiny.safetensors"));
    if (server_fixture_start(&g.fx, g.model, "--max-sessions", "4",
                             (const char *)NULL))
        return -1;
    g.started = 1;
    snprintf(g.url, sizeof g.url, "ws://127.0.0.1:%d/v1/stream", g.fx.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free((void *)g.model);
    return server_fixture_finish(&g.fx, g.started, g.dir);
}

static void make_inputs(void)
{
    if (g.in44[0])
        return;
    snprintf(g.in44, sizeof g.in44, "%s/song44.wav", g.dir);
    snprintf(g.in48, sizeof g.in48, "%s/voice48.wav", g.dir);
    int64_t n44 = 44100 * 5 / 2 + 333, n48 = 48000 * 2 + 71;
    float *a = fx_make_signal(44100, 2, n44, g.seed + 1);
    float *b = fx_make_signal(48000, 1, n48, g.seed + 2);
    demix_test_write_audio(g.in44, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 2, a, n44);
    demix_test_write_audio(g.in48, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 48000, 1, b, n48);
    free(a);
    free(b);
}

/* ------------------------------------------------------------- tests */

/* (a) */
static void test_stream_f32_equals_separate(void **state)
{
    (void)state;
    make_inputs();
    char sep[512], str[512], rt[512];
    snprintf(sep, sizeof sep, "%s/sep_f32", g.dir);
    snprintf(str, sizeof str, "%s/str_f32", g.dir);
    snprintf(rt, sizeof rt, "%s/str_f32_rt", g.dir);
    assert_int_equal(demix("separate --model '%s' --backend cpu --float32 -o "
                           "'%s' '%s' '%s'",
                           g.model, sep, g.in44, g.in48),
                     0);
    assert_int_equal(demix("stream --url %s --float32 -o '%s' '%s'", g.url, str,
                           g.in44),
                     0);
    assert_non_null(strstr(g.stderr_text, "latency announced"));
    assert_non_null(strstr(g.stderr_text, "summary"));
    assert_int_equal(demix("stream --url %s --float32 --fast -o '%s' '%s'",
                           g.url, str, g.in48),
                     0);
    assert_int_equal(demix("stream --url %s --float32 --realtime -o '%s' '%s'",
                           g.url, rt, g.in48),
                     0);
    assert_non_null(strstr(g.stderr_text, "measured median"));
    const char *names[2] = {"song44", "voice48"};
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 4; t++) {
            char a[1024], b[1024], c[1024];
            stem_path(a, sizeof a, sep, names[f], sources[t]);
            stem_path(b, sizeof b, str, names[f], sources[t]);
            double d = compare_files(a, b);
            print_message("%s %s: stream vs separate max diff %.3g\n", names[f],
                          sources[t], d);
            assert_true(d <= 1e-5);
            if (f == 1) {
                stem_path(c, sizeof c, rt, names[f], sources[t]);
                d = compare_files(a, c);
                print_message("%s %s --realtime: max diff %.3g\n", names[f],
                              sources[t], d);
                assert_true(d <= 1e-5);
            }
        }
}

/* (b) */
static void test_stream_s16_default(void **state)
{
    (void)state;
    make_inputs();
    char sep[512], str[512];
    snprintf(sep, sizeof sep, "%s/sep_s16", g.dir);
    snprintf(str, sizeof str, "%s/str_s16", g.dir);
    assert_int_equal(demix("separate --model '%s' --backend cpu -o '%s' '%s'",
                           g.model, sep, g.in48),
                     0);
    assert_int_equal(demix("stream --url %s -o '%s' '%s'", g.url, str, g.in48),
                     0);
    for (int t = 0; t < 4; t++) {
        char a[1024], b[1024];
        stem_path(a, sizeof a, sep, "voice48", sources[t]);
        stem_path(b, sizeof b, str, "voice48", sources[t]);
        double d = compare_files(a, b);
        print_message("s16 %s: max diff %.3g (1 LSB = %.3g)\n", sources[t], d,
                      1.0 / 32768);
        assert_true(d <= 1.0 / 32768 + 1e-9);
    }
}

/* (c) */
static void test_stream_opus_layout_and_alignment(void **state)
{
    (void)state;
    make_inputs();
    char sep[512], str[512];
    snprintf(sep, sizeof sep, "%s/sep_opus_ref", g.dir);
    snprintf(str, sizeof str, "%s/str_opus", g.dir);
    assert_int_equal(demix("separate --model '%s' --backend cpu --float32 -o "
                           "'%s' '%s' '%s'",
                           g.model, sep, g.in44, g.in48),
                     0);
    assert_int_equal(demix("stream --url %s --codec opus --bitrate 128000 -o "
                           "'%s' '%s' '%s'",
                           g.url, str, g.in48, ""),
                     2); /* one input at a time */
    assert_int_equal(demix("stream --url %s --codec opus --bitrate 128000 -o "
                           "'%s' '%s'",
                           g.url, str, g.in48),
                     0);
    /* 44.1 kHz is not an Opus rate: the client resamples to 48 kHz and back. */
    assert_int_equal(demix("stream --url %s --codec opus --bitrate 128000 -o "
                           "'%s' '%s'",
                           g.url, str, g.in44),
                     0);
    const char *names[2] = {"voice48", "song44"};
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 4; t++) {
            char a[1024], b[1024];
            stem_path(a, sizeof a, sep, names[f], sources[t]);
            stem_path(b, sizeof b, str, names[f], sources[t]);
            SF_INFO ia, ib;
            float *x = demix_test_read_audio(a, &ia);
            float *y = demix_test_read_audio(b, &ib);
            assert_int_equal(ib.frames, ia.frames);
            assert_int_equal(ib.samplerate, ia.samplerate);
            assert_int_equal(ib.channels, ia.channels);
            assert_int_equal(ib.format & SF_FORMAT_SUBMASK, SF_FORMAT_PCM_16);
            /* Alignment: the correlation with separate's stem peaks at 0. */
            int ch = ia.channels, best = 0;
            double best_c = -INFINITY, sig = 0, err = 0;
            for (int lag = -40; lag <= 40; lag++) {
                double s = 0;
                for (int64_t i = 40; i + 40 < ia.frames; i++)
                    s += (double)x[i * ch] * y[(i + lag) * ch];
                if (s > best_c) {
                    best_c = s;
                    best = lag;
                }
            }
            for (int64_t i = 0; i < ia.frames * ch; i++) {
                sig += (double)x[i] * x[i];
                err += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            }
            print_message("opus %s %s: lag %d, SNR %.1f dB\n", names[f],
                          sources[t], best, 10 * log10(sig / fmax(err, 1e-30)));
            assert_int_equal(best, 0);
            free(x);
            free(y);
        }
}

/* (d) */
static void test_stream_stems_and_mix(void **state)
{
    (void)state;
    make_inputs();
    char sep[512], str[512], mix[512];
    snprintf(sep, sizeof sep, "%s/sep_f32b", g.dir);
    snprintf(str, sizeof str, "%s/str_stems", g.dir);
    snprintf(mix, sizeof mix, "%s/str_mix", g.dir);
    assert_int_equal(demix("separate --model '%s' --backend cpu --float32 -o "
                           "'%s' '%s'",
                           g.model, sep, g.in44),
                     0);
    assert_int_equal(demix("stream --url %s --float32 --stems vocals,bass -o "
                           "'%s' '%s'",
                           g.url, str, g.in44),
                     0);
    for (int t = 0; t < 4; t++) {
        char p[1024];
        stem_path(p, sizeof p, str, "song44", sources[t]);
        int wanted = t == 1 || t == 2;
        assert_int_equal(path_exists(p), wanted);
        if (wanted) {
            char a[1024];
            stem_path(a, sizeof a, sep, "song44", sources[t]);
            assert_true(compare_files(a, p) <= 1e-5);
        }
    }
    assert_int_equal(demix("stream --url %s --float32 --mix vocals=0,drums=0.5 "
                           "-o '%s' '%s'",
                           g.url, mix, g.in44),
                     0);
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/song44/mix.wav", mix);
    SF_INFO im;
    float *m = demix_test_read_audio(mp, &im);
    const float gains[4] = {0.5f, 1.0f, 0.0f, 1.0f};
    float *want = calloc((size_t)(im.frames * im.channels), sizeof *want);
    assert_non_null(want);
    for (int t = 0; t < 4; t++) {
        char a[1024];
        stem_path(a, sizeof a, sep, "song44", sources[t]);
        SF_INFO ia;
        float *x = demix_test_read_audio(a, &ia);
        assert_int_equal(ia.frames, im.frames);
        for (int64_t i = 0; i < ia.frames * ia.channels; i++)
            want[i] += gains[t] * x[i];
        free(x);
    }
    double d = 0;
    for (int64_t i = 0; i < im.frames * im.channels; i++)
        d = fmax(d, fabs((double)m[i] - want[i]));
    print_message("--mix vs weighted sum of separate's stems: max diff %.3g\n",
                  d);
    assert_true(d <= 2e-5);
    free(m);
    free(want);
}

/* The value of a request header (case-insensitive name) in buf. */
static int request_header(const char *buf, const char *name, char *out,
                          size_t cap)
{
    size_t nl = strlen(name);
    for (const char *line = buf; line && *line;) {
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        line = strstr(line, "\r\n");
        if (line)
            line += 2;
    }
    return -1;
}

/* A fake server: accepts one connection, answers the upgrade, reads the
 * start, then drops the connection without a close frame. */
static void fake_server_child(int listen_fd)
{
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0)
        _exit(1);
    char buf[8192];
    size_t n = 0;
    while (n < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0)
            _exit(1);
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    char key[128], accept_key[64], reply[512];
    if (request_header(buf, "Sec-WebSocket-Key", key, sizeof key))
        _exit(1);
    wst_accept_key(key, accept_key);
    int len = snprintf(reply, sizeof reply,
                       "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n"
                       "Sec-WebSocket-Protocol: demix.v1\r\n\r\n",
                       accept_key);
    if (send(fd, reply, (size_t)len, 0) != len)
        _exit(1);
    /* The start frame (any bytes), then vanish. */
    if (recv(fd, buf, sizeof buf, 0) <= 0)
        _exit(1);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    _exit(0);
}

/* (e) */
static void test_stream_errors(void **state)
{
    (void)state;
    make_inputs();
    char out[512], dir[1024];
    snprintf(out, sizeof out, "%s/str_err", g.dir);
    snprintf(dir, sizeof dir, "%s/song44", out);

    int port = fx_unused_port();
    assert_int_equal(demix("stream --url ws://127.0.0.1:%d/v1/stream -o '%s' "
                           "'%s'",
                           port, out, g.in44),
                     1);
    assert_non_null(strstr(g.stderr_text, "cannot connect"));
    assert_false(path_exists(dir));

    assert_int_equal(demix("stream --url %s --stems vocals,guitar -o '%s' '%s'",
                           g.url, out, g.in44),
                     1);
    assert_non_null(strstr(g.stderr_text, "unknown_stem"));
    assert_non_null(strstr(g.stderr_text, "guitar"));
    assert_non_null(strstr(g.stderr_text, "1008"));
    assert_false(path_exists(dir));

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 1), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        fake_server_child(lfd);
    close(lfd);
    int rc = demix("stream --url ws://127.0.0.1:%d/v1/stream --timeout 20 -o "
                   "'%s' '%s'",
                   ntohs(a.sin_port), out, g.in44);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(g.stderr_text, "dropped"));
    assert_false(path_exists(dir));

    assert_int_equal(demix("stream '%s'", g.in44), 2);
    assert_non_null(strstr(g.stderr_text, "--url"));
    assert_int_equal(demix("stream --url %s --codec mp3 '%s'", g.url, g.in44),
                     2);
    assert_int_equal(demix("stream --url %s --mix vocals '%s'", g.url, g.in44),
                     2);
}

/* (g) The first hour: --url ws://HOST:PORT without the path gets demixd's
 * /v1/stream appended (said on stderr) and the stream works; a wrong path
 * fails with a sentence naming the right one, and writes nothing. */
static void test_stream_url_without_path(void **state)
{
    (void)state;
    make_inputs();
    char out[512], p[1024];
    snprintf(out, sizeof out, "%s/str_url", g.dir);
    assert_int_equal(demix("stream --url ws://127.0.0.1:%d -o '%s' '%s'",
                           g.fx.port, out, g.in44),
                     0);
    assert_non_null(strstr(g.stderr_text, "the URL has no path; using "
                                          "ws://127.0.0.1:"));
    assert_non_null(strstr(g.stderr_text, "/v1/stream"));
    stem_path(p, sizeof p, out, "song44", "vocals");
    assert_true(path_exists(p));

    snprintf(out, sizeof out, "%s/str_url_bad", g.dir);
    assert_int_equal(demix("stream --url ws://127.0.0.1:%d/stream -o '%s' '%s'",
                           g.fx.port, out, g.in44),
                     1);
    assert_non_null(strstr(g.stderr_text, "demixd's stream endpoint is "
                                          "/v1/stream"));
    snprintf(p, sizeof p, "%s/song44", out);
    assert_false(path_exists(p));
}

/* (f) A model with other source names: without --stems, demix stream reads
 * them from the server (a short mix-mode session) and writes one file per
 * source, each equal to the input times FX_IDENTITY_GAIN (an identity
 * model). */
static void test_stream_model_with_other_sources(void **state)
{
    (void)state;
    char model[512];
    snprintf(model, sizeof model, "%s/renamed.safetensors", g.dir);
    assert_int_equal(fx_save_identity_model(model, 44100, g.seed + 7), 0);
    demix_model *m;
    char err[256];
    assert_int_equal(demix_model_load(model, &m, err, sizeof err), 0);
    const char *names[4] = {"lead", "rhythm", "low", "perc"};
    for (int t = 0; t < 4; t++)
        snprintf(m->config.source_names[t], DEMIX_SOURCE_NAME_BYTES, "%s",
                 names[t]);
    assert_int_equal(demix__model_save(m, model, DEMIX_DTYPE_F32, err,
                                       sizeof err),
                     0);
    demix_model_destroy(m);
    server_fixture other;
    assert_int_equal(server_fixture_start(&other, model, "--max-sessions", "2",
                                          (const char *)NULL),
                     0);
    make_inputs();
    char out[512];
    snprintf(out, sizeof out, "%s/str_renamed", g.dir);
    assert_int_equal(demix("stream --url ws://127.0.0.1:%d/v1/stream --float32 "
                           "-o '%s' '%s'",
                           other.port, out, g.in44),
                     0);
    SF_INFO ii;
    float *x = demix_test_read_audio(g.in44, &ii);
    for (int t = 0; t < 4; t++) {
        char p[1024];
        stem_path(p, sizeof p, out, "song44", names[t]);
        SF_INFO io;
        float *y = demix_test_read_audio(p, &io);
        assert_int_equal(io.frames, ii.frames);
        double d = 0;
        for (int64_t i = 0; i < ii.frames * ii.channels; i++)
            d = fmax(d, fabs((double)y[i] - FX_IDENTITY_GAIN * x[i]));
        print_message("%s: max |stem - input / 4| = %.3g\n", names[t], d);
        assert_true(d <= 1e-5);
        free(y);
    }
    char p[1024];
    stem_path(p, sizeof p, out, "song44", "vocals");
    assert_false(path_exists(p));
    free(x);
    assert_int_equal(server_fixture_stop(&other), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_f32_equals_separate),
        cmocka_unit_test(test_stream_s16_default),
        cmocka_unit_test(test_stream_opus_layout_and_alignment),
        cmocka_unit_test(test_stream_stems_and_mix),
        cmocka_unit_test(test_stream_errors),
        cmocka_unit_test(test_stream_model_with_other_sources),
        cmocka_unit_test(test_stream_url_without_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
