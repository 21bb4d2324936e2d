/*
 * server_fixture.c - see server_fixture.h: demixd as a child process for
 * the integration tests, and the streaming session driver.
 *
 * Every started server is remembered; an atexit handler kills any that a
 * failed test left running, so no test run leaves a demixd behind.
 *
 * Thread context: the test's thread.
 */
#include "server_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "model_impl.h"
#include "testutil.h"

#define FX_MAX_SERVERS 16
#define FX_MAX_ARGS 32
#define FX_TX_HIGH_WATER (256 * 1024)

static pid_t g_running[FX_MAX_SERVERS];
static int g_atexit_set;

static void kill_leftovers(void)
{
    for (int i = 0; i < FX_MAX_SERVERS; i++)
        if (g_running[i] > 0) {
            kill(g_running[i], SIGKILL);
            waitpid(g_running[i], NULL, 0);
            g_running[i] = 0;
        }
}

static void remember(pid_t pid, int add)
{
    if (!g_atexit_set) {
        atexit(kill_leftovers);
        g_atexit_set = 1;
    }
    for (int i = 0; i < FX_MAX_SERVERS; i++) {
        if (add && g_running[i] == 0) {
            g_running[i] = pid;
            return;
        }
        if (!add && g_running[i] == pid) {
            g_running[i] = 0;
            return;
        }
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

const char *server_fixture_bin(void)
{
    const char *bin = getenv("DEMIXD_BIN");
    struct stat st;
    if (!bin || !*bin || stat(bin, &st) != 0 || !(st.st_mode & S_IXUSR))
        return NULL;
    return bin;
}

void server_fixture_print_log(const server_fixture *fx, const char *why)
{
    print_message("---- demixd log (%s): %s\n", why, fx->log_path);
    FILE *f = fopen(fx->log_path, "r");
    if (!f)
        return;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) && n++ < 400)
        print_message("  | %s", line);
    fclose(f);
    print_message("---- end of log\n");
}

char *server_fixture_read_log(const server_fixture *fx)
{
    FILE *f = fopen(fx->log_path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        char *grown = realloc(b, cap *= 2);
        if (!grown)
            free(b);
        b = grown;
    }
    fclose(f);
    if (b)
        b[n] = '\0';
    return b;
}

static int read_port(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    int port = 0;
    while (!port && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "listening on 127.0.0.1:");
        if (p)
            port = atoi(p + strlen("listening on 127.0.0.1:"));
    }
    fclose(f);
    return port;
}

int server_fixture_start(server_fixture *fx, const char *model_path, ...)
{
    memset(fx, 0, sizeof *fx);
    const char *bin = server_fixture_bin();
    if (!bin) {
        print_error("DEMIXD_BIN (%s) is not the demixd binary: build the "
                    "server (target demixd) first\n",
                    getenv("DEMIXD_BIN") ? getenv("DEMIXD_BIN") : "unset");
        return -1;
    }
    const char *dir = demix_test_tmpdir();
    if (!dir)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "%s", dir);
    snprintf(fx->log_path, sizeof fx->log_path, "%s/demixd.log", fx->dir);

    const char *argv[FX_MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--model";
    argv[argc++] = model_path;
    argv[argc++] = "--backend";
    argv[argc++] = "cpu";
    argv[argc++] = "--host";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = "0";
    /* Several service threads, whatever the machine (a 2-core CI machine
     * would default to one): every server test runs the threaded server,
     * with sessions spread over threads by the kernel. A test's own
     * --service-threads comes later and wins. */
    argv[argc++] = "--service-threads";
    argv[argc++] = "3";
    va_list ap;
    va_start(ap, model_path);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < FX_MAX_ARGS)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    char cmdline[2048] = "";
    for (int i = 0; i < argc; i++) {
        strncat(cmdline, argv[i], sizeof cmdline - strlen(cmdline) - 2);
        strncat(cmdline, " ", sizeof cmdline - strlen(cmdline) - 1);
    }
    print_message("$ %s\n", cmdline);

    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Die with the test process, even when it is killed (timeout). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(fx->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    fx->pid = pid;
    remember(pid, 1);
    double deadline = now_ms() + 30000;
    while (now_ms() < deadline) {
        fx->port = read_port(fx->log_path);
        if (fx->port > 0) {
            print_message("demixd pid %d listening on port %d\n", (int)pid,
                          fx->port);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            remember(pid, 0);
            fx->pid = 0;
            server_fixture_print_log(fx, "exited at start");
            return -1;
        }
        sleep_ms(20);
    }
    server_fixture_print_log(fx, "no 'listening on 127.0.0.1:PORT' line");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    remember(pid, 0);
    fx->pid = 0;
    return -1;
}

int server_fixture_alive(server_fixture *fx)
{
    if (fx->pid <= 0)
        return 0;
    int st;
    if (waitpid(fx->pid, &st, WNOHANG) == fx->pid) {
        remember(fx->pid, 0);
        fx->pid = 0;
        print_message("demixd exited: %s %d\n",
                      WIFEXITED(st) ? "status" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return 0;
    }
    return 1;
}

int server_fixture_stop(server_fixture *fx)
{
    if (fx->pid <= 0) {
        server_fixture_print_log(fx, "was not running at stop");
        return -1;
    }
    kill(fx->pid, SIGTERM);
    double deadline = now_ms() + 30000;
    int st = 0, done = 0;
    while (now_ms() < deadline) {
        if (waitpid(fx->pid, &st, WNOHANG) == fx->pid) {
            done = 1;
            break;
        }
        sleep_ms(10);
    }
    int rc;
    if (!done) {
        kill(fx->pid, SIGKILL);
        waitpid(fx->pid, NULL, 0);
        server_fixture_print_log(fx, "did not exit within 30 s of SIGTERM");
        rc = -1;
    } else if (WIFEXITED(st)) {
        rc = WEXITSTATUS(st);
        if (rc)
            server_fixture_print_log(fx, "exit status not 0");
    } else {
        print_message("demixd died of signal %d\n", WTERMSIG(st));
        server_fixture_print_log(fx, "killed by a signal");
        rc = -1;
    }
    remember(fx->pid, 0);
    fx->pid = 0;
    if (rc == 0 && !getenv("DEMIX_TEST_KEEP"))
        demix_test_rmtree(fx->dir);
    else
        print_message("demixd log kept in %s\n", fx->log_path);
    return rc;
}

/* ------------------------------------------------------------ signals */

float *fx_make_signal(int rate, int channels, int64_t frames, uint64_t seed)
{
    float *x = malloc((size_t)(frames > 0 ? frames : 1) * (size_t)channels *
                      sizeof *x);
    if (!x)
        return NULL;
    uint64_t st = seed;
    double f0 = 80.0 + 200.0 * (0.5 + 0.5 * demix_test_uniform(&st));
    double f1 = 4000.0 + 5000.0 * (0.5 + 0.5 * demix_test_uniform(&st));
    double tone[3], phase[3];
    for (int k = 0; k < 3; k++) {
        tone[k] = 150.0 + 3000.0 * (0.5 + 0.5 * demix_test_uniform(&st));
        phase[k] = 3.0 * demix_test_uniform(&st);
    }
    double dur = (double)frames / rate;
    const double fade_s = 0.02, pi = 3.14159265358979323846;
    for (int64_t i = 0; i < frames; i++) {
        double t = (double)i / rate;
        double fade = 1.0;
        if (t < fade_s)
            fade = 0.5 - 0.5 * cos(pi * t / fade_s);
        else if (dur - t < fade_s)
            fade = 0.5 - 0.5 * cos(pi * (dur - t) / fade_s);
        double chirp =
            sin(2 * pi * (f0 * t + 0.5 * (f1 - f0) / (dur > 0 ? dur : 1) * t * t));
        for (int c = 0; c < channels; c++) {
            double v = 0.3 * chirp;
            for (int k = 0; k < 3; k++)
                v += (0.15 / (k + 1)) *
                     sin(2 * pi * tone[k] * t + phase[k] + 0.9 * c);
            x[i * channels + c] = (float)(fade * v);
        }
    }
    return x;
}

float *fx_scaled(const float *x, int64_t n, float gain)
{
    float *y = malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
    if (!y)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        y[i] = gain * x[i];
    return y;
}

int fx_save_identity_model(const char *path, int rate_hz, uint64_t seed)
{
    demix_model *m;
    if (demix_model_create_random(24, 40, 0, rate_hz, seed, &m))
        return -1;
    const demix_model_config *c = demix_model_get_config(m);
    size_t spec_rows = (size_t)c->num_sources * (size_t)c->spec_features;
    size_t wave_rows = (size_t)c->num_sources * (size_t)c->num_basis;
    memset(m->spec_mask_w, 0, spec_rows * (size_t)c->dim * sizeof(float));
    for (size_t i = 0; i < spec_rows; i++)
        m->spec_mask_b[i] = 1.0f;
    memset(m->wave_mask_w, 0, wave_rows * (size_t)c->dim * sizeof(float));
    memset(m->wave_mask_b, 0, wave_rows * sizeof(float));
    char err[512];
    int rc = demix__model_save(m, path, DEMIX_DTYPE_F32, err, sizeof err);
    if (rc)
        print_error("save %s: %s\n", path, err);
    demix_model_destroy(m);
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------ sessions */

static void violation(fx_session *s, const char *fmt, ...) DEMIX_PRINTF(2, 3);
static void violation(fx_session *s, const char *fmt, ...)
{
    if (s->violation[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->violation, sizeof s->violation, fmt, ap);
    va_end(ap);
    print_message("protocol violation: %s\n", s->violation);
}

void fx_start_init(demix_proto_start *st, int rate, int channels,
                   demix_proto_codec in, demix_proto_codec out,
                   const char *const *stems)
{
    demix_proto_start_init(st);
    st->sample_rate_hz = rate;
    st->channels = channels;
    st->input_codec = in;
    st->output_codec = out;
    if (out == DEMIX_PROTO_CODEC_OPUS) {
        st->opus_bitrate_bps = 96000 * channels;
        st->opus_frame_ms = 20;
    }
    if (stems) {
        st->mode = DEMIX_PROTO_MODE_STEMS;
        for (int i = 0; stems[i] && i < DEMIX_PROTO_MAX_STEMS; i++)
            snprintf(st->stems[st->stem_count++], DEMIX_PROTO_NAME_BYTES, "%s",
                     stems[i]);
    } else {
        st->mode = DEMIX_PROTO_MODE_MIX;
    }
}

int fx_session_open(fx_session *s, int port, demix_proto_start *st)
{
    memset(s, 0, sizeof *s);
    s->channels = st->channels;
    s->rate = st->sample_rate_hz;
    s->in_codec = st->input_codec;
    s->out_codec = st->output_codec;
    if (st->input_codec == DEMIX_PROTO_CODEC_OPUS) {
        int e;
        s->enc = opus_encoder_create(st->sample_rate_hz, st->channels,
                                     OPUS_APPLICATION_AUDIO, &e);
        if (!s->enc)
            return -1;
        opus_encoder_ctl(s->enc, OPUS_SET_BITRATE(128000 * st->channels));
        opus_int32 la = 0;
        opus_encoder_ctl(s->enc, OPUS_GET_LOOKAHEAD(&la));
        s->enc_lookahead = (int)la;
        st->input_pre_skip_frames = (int)la;
        s->opus_frame = st->sample_rate_hz / 50;
        s->opus_pending =
            calloc((size_t)s->opus_frame * (size_t)st->channels, sizeof(float));
        if (!s->opus_pending)
            return -1;
    }
    int status;
    if (wst_open(port, DEMIX_PROTO_PATH, DEMIX_PROTO_SUBPROTOCOL, &s->c,
                 &status)) {
        print_message("handshake with port %d failed (HTTP status %d)\n", port,
                      status);
        return -1;
    }
    char buf[DEMIX_PROTO_MAX_TEXT_BYTES + 1];
    size_t len;
    if (demix_proto_write_start(st, buf, sizeof buf, &len)) {
        print_message("the test's start is invalid\n");
        return -1;
    }
    return wst_send_text(s->c, buf);
}

static int track_append(fx_track *t, const float *x, int64_t n, int ch)
{
    if (t->frames + n > t->cap) {
        int64_t cap = t->cap ? t->cap : 65536;
        while (cap < t->frames + n)
            cap *= 2;
        float *p = realloc(t->x, (size_t)cap * (size_t)ch * sizeof *p);
        if (!p)
            return -1;
        t->x = p;
        t->cap = cap;
    }
    memcpy(t->x + t->frames * ch, x, (size_t)n * (size_t)ch * sizeof *x);
    t->frames += n;
    return 0;
}

static int track_index(int stem)
{
    if (stem == DEMIX_PROTO_STEM_MIX)
        return FX_MIX_TRACK;
    if (stem >= 0 && stem < DEMIX_PROTO_MAX_STEMS)
        return stem;
    return -1;
}

static void on_ready(fx_session *s, const demix_proto_ready *r)
{
    if (s->have_ready) {
        violation(s, "ready twice");
        return;
    }
    s->have_ready = 1;
    s->ready = *r;
    if (r->mode == DEMIX_PROTO_MODE_MIX) {
        s->tracks[FX_MIX_TRACK].expected = 1;
    } else {
        for (int i = 0; i < r->stem_count; i++)
            s->tracks[r->stem_source[i]].expected = 1;
    }
    for (int t = 0; t <= DEMIX_PROTO_MAX_STEMS; t++) {
        if (!s->tracks[t].expected || s->out_codec != DEMIX_PROTO_CODEC_OPUS)
            continue;
        int e;
        s->dec[t] = opus_decoder_create(s->rate, s->channels, &e);
        s->skip[t] = r->opus_pre_skip_frames;
    }
}

static void on_audio(fx_session *s, const uint8_t *data, size_t len)
{
    demix_proto_audio_out h;
    demix_proto_error perr;
    if (!s->have_ready) {
        violation(s, "audio before ready");
        return;
    }
    if (demix_proto_audio_out_decode(data, len, s->out_codec, s->channels,
                                     s->seq_out, &h, &perr)) {
        violation(s, "bad audio_out (expected seq %u): %s",
                  (unsigned)s->seq_out, perr.message);
        s->seq_out++;
        return;
    }
    s->seq_out++;
    int ti = track_index(h.stem);
    fx_track *t = ti >= 0 ? &s->tracks[ti] : NULL;
    if (!t || !t->expected) {
        violation(s, "stem %u was not asked for", (unsigned)h.stem);
        return;
    }
    if ((int64_t)h.position != t->next_pos) {
        violation(s, "stem %u: position %llu, expected %lld", (unsigned)h.stem,
                  (unsigned long long)h.position, (long long)t->next_pos);
    }
    if (t->last)
        violation(s, "stem %u: audio after LAST", (unsigned)h.stem);
    t->next_pos = (int64_t)h.position + h.frames;
    t->messages++;
    if (h.flags & DEMIX_PROTO_FLAG_LAST)
        t->last = 1;
    int ch = s->channels;
    static float buf[65536];
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
        if (h.frames != (uint32_t)s->ready.opus_frame_frames)
            violation(s, "opus message of %u frames, ready said %d",
                      (unsigned)h.frames, s->ready.opus_frame_frames);
        int n = opus_decode_float(s->dec[ti], h.payload,
                                  (opus_int32)h.payload_bytes, buf, 5760, 0);
        if (n < 0) {
            violation(s, "stem %u: opus packet does not decode: %s",
                      (unsigned)h.stem, opus_strerror(n));
            return;
        }
        int drop = s->skip[ti] < n ? s->skip[ti] : n;
        s->skip[ti] -= drop;
        track_append(t, buf + drop * ch, n - drop, ch);
        return;
    }
    for (uint32_t i = 0; i < h.frames * (uint32_t)ch; i++) {
        if (s->out_codec == DEMIX_PROTO_CODEC_PCM_F32) {
            uint32_t u = (uint32_t)h.payload[4 * i] |
                         (uint32_t)h.payload[4 * i + 1] << 8 |
                         (uint32_t)h.payload[4 * i + 2] << 16 |
                         (uint32_t)h.payload[4 * i + 3] << 24;
            memcpy(&buf[i], &u, 4);
        } else {
            int16_t v = (int16_t)((uint16_t)h.payload[2 * i] |
                                  (uint16_t)h.payload[2 * i + 1] << 8);
            buf[i] = (float)v / 32768.0f;
        }
    }
    track_append(t, buf, h.frames, ch);
}

static void on_text(fx_session *s, const uint8_t *data, size_t len)
{
    static demix_proto_server_msg m;
    demix_proto_error perr;
    if (demix_proto_parse_server((const char *)data, len, &m, &perr)) {
        violation(s, "unparsable server text (%s): %.200s", perr.message,
                  (const char *)data);
        return;
    }
    switch (m.type) {
    case DEMIX_PROTO_READY:
        on_ready(s, &m.ready);
        break;
    case DEMIX_PROTO_ERROR:
        if (s->have_error)
            violation(s, "two error messages");
        s->have_error = 1;
        s->error = m.error;
        print_message("server error: %s: %s (field '%s')\n",
                      demix_proto_code_name(m.error.code), m.error.message,
                      m.error.field);
        break;
    case DEMIX_PROTO_SUMMARY:
        if (!s->end_sent)
            violation(s, "summary before end");
        for (int t = 0; t <= DEMIX_PROTO_MAX_STEMS; t++)
            if (s->tracks[t].expected && s->tracks[t].messages > 0 &&
                !s->tracks[t].last)
                violation(s, "summary before the LAST message of track %d", t);
        s->have_summary = 1;
        s->summary = m.summary;
        break;
    case DEMIX_PROTO_STATS:
        s->stats_count++;
        s->stats = m.stats;
        break;
    default:
        violation(s, "unexpected server message type %d", (int)m.type);
        break;
    }
}

int fx_session_poll(fx_session *s, int timeout_ms)
{
    if (s->eof)
        return -1;
    wst_msg m;
    int r = wst_recv(s->c, &m, timeout_ms);
    if (r < 0) {
        s->eof = 1;
        return -1;
    }
    if (r == 0)
        return 0;
    if (m.opcode == WST_CLOSE) {
        if (!s->closed) {
            s->closed = 1;
            s->close_code = m.close_code;
            snprintf(s->close_reason, sizeof s->close_reason, "%s",
                     m.close_reason);
            wst_send_close(s->c, m.close_code == 1005 ? 1000 : m.close_code,
                           "");
        }
        return 1;
    }
    if (s->closed) {
        violation(s, "data after the close frame");
        return 1;
    }
    if (m.opcode == WST_BINARY)
        on_audio(s, m.data, m.len);
    else
        on_text(s, m.data, m.len);
    return 1;
}

int fx_session_wait_ready(fx_session *s)
{
    double deadline = now_ms() + FX_TIMEOUT_MS;
    while (!s->have_ready && !s->have_error && !s->eof && !s->closed) {
        if (now_ms() > deadline) {
            print_message("no ready within %d ms\n", FX_TIMEOUT_MS);
            return -1;
        }
        fx_session_poll(s, 100);
    }
    return s->have_ready ? 0 : -1;
}

static int send_audio(fx_session *s, const uint8_t *payload, size_t bytes)
{
    static uint8_t msg[DEMIX_PROTO_MAX_BINARY_BYTES + 64];
    demix_proto_audio_in h = {.codec = s->in_codec, .flags = 0, .seq = s->seq};
    if (demix_proto_audio_in_write_header(&h, msg, sizeof msg) ||
        bytes > sizeof msg - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES)
        return -1;
    memcpy(msg + DEMIX_PROTO_AUDIO_IN_HEADER_BYTES, payload, bytes);
    s->seq++;
    return wst_send_binary(s->c, msg, DEMIX_PROTO_AUDIO_IN_HEADER_BYTES + bytes);
}

static int send_opus_packet(fx_session *s, const float *pcm)
{
    uint8_t pkt[4000];
    int n = opus_encode_float(s->enc, pcm, s->opus_frame, pkt, sizeof pkt);
    if (n < 0)
        return -1;
    return send_audio(s, pkt, (size_t)n);
}

int fx_session_send(fx_session *s, const float *frames, int64_t n)
{
    int ch = s->channels;
    if (s->in_codec == DEMIX_PROTO_CODEC_OPUS) {
        for (int64_t i = 0; i < n; i++) {
            memcpy(s->opus_pending + s->opus_pending_frames * ch,
                   frames + i * ch, (size_t)ch * sizeof *frames);
            if (++s->opus_pending_frames == s->opus_frame) {
                if (send_opus_packet(s, s->opus_pending))
                    return -1;
                s->opus_pending_frames = 0;
            }
        }
        s->sent += n;
        return 0;
    }
    static uint8_t payload[DEMIX_PROTO_MAX_BINARY_BYTES];
    size_t bps = s->in_codec == DEMIX_PROTO_CODEC_PCM_F32 ? 4 : 2;
    if ((size_t)n * (size_t)ch * bps > sizeof payload -
                                           DEMIX_PROTO_AUDIO_IN_HEADER_BYTES)
        return -1;
    for (int64_t i = 0; i < n * ch; i++) {
        if (bps == 4) {
            uint32_t u;
            memcpy(&u, &frames[i], 4);
            payload[4 * i] = (uint8_t)u;
            payload[4 * i + 1] = (uint8_t)(u >> 8);
            payload[4 * i + 2] = (uint8_t)(u >> 16);
            payload[4 * i + 3] = (uint8_t)(u >> 24);
        } else {
            float v = roundf(frames[i] * 32768.0f);
            if (v > 32767.0f)
                v = 32767.0f;
            if (v < -32768.0f)
                v = -32768.0f;
            int16_t q = (int16_t)v;
            payload[2 * i] = (uint8_t)((uint16_t)q & 0xFF);
            payload[2 * i + 1] = (uint8_t)((uint16_t)q >> 8);
        }
    }
    s->sent += n;
    return send_audio(s, payload, (size_t)n * (size_t)ch * bps);
}

int fx_session_send_end(fx_session *s)
{
    if (s->enc) {
        /* Pad: the encoder's lookahead, then to a whole packet. */
        int ch = s->channels;
        int64_t pad = s->enc_lookahead;
        while (pad > 0 || s->opus_pending_frames > 0) {
            while (s->opus_pending_frames < s->opus_frame) {
                memset(s->opus_pending + s->opus_pending_frames * ch, 0,
                       (size_t)ch * sizeof(float));
                s->opus_pending_frames++;
                if (pad > 0)
                    pad--;
            }
            if (send_opus_packet(s, s->opus_pending))
                return -1;
            s->opus_pending_frames = 0;
        }
    }
    char buf[64];
    size_t len;
    if (demix_proto_write_end(buf, sizeof buf, &len))
        return -1;
    s->end_sent = 1;
    return wst_send_text(s->c, buf);
}

int fx_session_finish(fx_session *s)
{
    double deadline = now_ms() + FX_TIMEOUT_MS;
    while (!s->eof) {
        if (now_ms() > deadline) {
            print_message("the connection did not end within %d ms\n",
                          FX_TIMEOUT_MS);
            return -1;
        }
        fx_session_poll(s, 100);
    }
    return 0;
}

static int session_ok(const fx_session *s)
{
    return s->have_ready && s->have_summary && s->closed &&
           s->close_code == 1000 && !s->have_error && !s->violation[0];
}

int fx_session_run(fx_session *s, const float *in, int64_t frames,
                   int64_t chunk)
{
    fx_session *one[1] = {s};
    const float *ins[1] = {in};
    int64_t fr[1] = {frames};
    return fx_run_many(one, ins, fr, 1, chunk);
}

int fx_run_many(fx_session **s, const float *const *in, const int64_t *frames,
                int n, int64_t chunk)
{
    for (int i = 0; i < n; i++)
        if (fx_session_wait_ready(s[i])) {
            fx_session_print(s[i], "no ready");
            return -1;
        }
    double deadline = now_ms() + 4.0 * FX_TIMEOUT_MS;
    int active = n;
    while (active > 0) {
        if (now_ms() > deadline) {
            print_message("sessions did not finish in time\n");
            return -1;
        }
        active = 0;
        int progressed = 0;
        for (int i = 0; i < n; i++) {
            fx_session *x = s[i];
            if (x->eof)
                continue;
            active++;
            if (!x->end_sent && !x->closed &&
                wst_tx_pending(x->c) < FX_TX_HIGH_WATER) {
                int64_t left = frames[i] - x->sent;
                int64_t m = left < chunk ? left : chunk;
                if (m > 0) {
                    if (fx_session_send(x, in[i] + x->sent * x->channels, m))
                        return -1;
                } else if (fx_session_send_end(x)) {
                    return -1;
                }
                progressed = 1;
            }
            while (fx_session_poll(x, 0) == 1)
                progressed = 1;
            wst_pump(x->c, 0);
        }
        if (!progressed && active > 0) {
            /* Nothing to do: wait on the first live session's socket. */
            for (int i = 0; i < n; i++)
                if (!s[i]->eof) {
                    fx_session_poll(s[i], n > 1 ? 5 : 100);
                    break;
                }
        }
    }
    int rc = 0;
    for (int i = 0; i < n; i++)
        if (!session_ok(s[i])) {
            fx_session_print(s[i], "session did not end cleanly");
            rc = -1;
        }
    return rc;
}

int64_t fx_session_reached(const fx_session *s)
{
    int64_t m = INT64_MAX;
    for (int t = 0; t <= DEMIX_PROTO_MAX_STEMS; t++)
        if (s->tracks[t].expected && s->tracks[t].frames < m)
            m = s->tracks[t].frames;
    return m == INT64_MAX ? 0 : m;
}

const fx_track *fx_session_track(const fx_session *s, int stem)
{
    int t = track_index(stem);
    if (t < 0 || !s->tracks[t].expected)
        return NULL;
    return &s->tracks[t];
}

void fx_session_print(const fx_session *s, const char *label)
{
    print_message("session [%s]: ready %d error %d (%s: %s) summary %d "
                  "(in %llu out %llu) closed %d code %d '%s' eof %d sent %lld "
                  "violation '%s'\n",
                  label, s->have_ready, s->have_error,
                  demix_proto_code_name(s->error.code), s->error.message,
                  s->have_summary, (unsigned long long)s->summary.input_frames,
                  (unsigned long long)s->summary.output_frames, s->closed,
                  s->close_code, s->close_reason, s->eof, (long long)s->sent,
                  s->violation);
    for (int t = 0; t <= DEMIX_PROTO_MAX_STEMS; t++)
        if (s->tracks[t].expected)
            print_message("  track %d: %lld frames, %d messages, last %d\n", t,
                          (long long)s->tracks[t].frames, s->tracks[t].messages,
                          s->tracks[t].last);
}

void fx_session_free(fx_session *s)
{
    wst_free(s->c);
    s->c = NULL;
    if (s->enc)
        opus_encoder_destroy(s->enc);
    s->enc = NULL;
    free(s->opus_pending);
    s->opus_pending = NULL;
    for (int t = 0; t <= DEMIX_PROTO_MAX_STEMS; t++) {
        free(s->tracks[t].x);
        s->tracks[t].x = NULL;
        if (s->dec[t])
            opus_decoder_destroy(s->dec[t]);
        s->dec[t] = NULL;
    }
}

int server_fixture_finish(server_fixture *fx, int started, const char *dir)
{
    int rc = 0;
    if (started && server_fixture_stop(fx) != 0) {
        print_error("demixd did not exit 0 on SIGTERM\n");
        rc = -1;
    }
    demix_test_rmtree(dir);
    return rc;
}

int fx_unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

int fx_timeout_ms(void)
{
    static int ms;
    if (!ms) {
        const char *e = getenv("DEMIX_TEST_TIMEOUT_SCALE");
        int scale = e ? atoi(e) : 1;
        ms = 60000 * (scale >= 1 && scale <= 100 ? scale : 1);
    }
    return ms;
}

int fx_under_sanitizer(void)
{
    const char *e = getenv("DEMIX_TEST_SANITIZER");
    return e && e[0] && strcmp(e, "0") != 0;
}
