/*
 * loadgen_chaos.c - misbehaving clients beside a loadgen round (see
 * loadgen_chaos.h): one thread, one poll() loop, plain sockets.
 *
 * An episode: IDLE -> CONNECTING (non-blocking connect) -> UPGRADE (the
 * request written, the answer read and checked) -> RUN (the kind's
 * misbehaviour and the wait for the server's reaction) -> IDLE again
 * after a pause. Every outbound message is one masked frame built in the
 * client's send buffer; what the socket does not take stays there and
 * nothing new is queued behind it (a no_read client stuck on a full
 * socket just skips its sends).
 *
 * Thread context: loadgen_chaos_start/stop on the caller's thread; every
 * static function below on the chaos thread.
 */
#include "loadgen_chaos.h"

#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_parse.h"
#include "loadgen_audio.h"
#include "protocol.h"
#include "ws_client.h"
#include "wsio_frame.h"
#include "wsio_handshake.h"

#define RBUF_BYTES 65536
#define SBUF_BYTES (DEMIX_PROTO_MAX_BINARY_BYTES + WSIO_FRAME_MAX_HEADER)
#define POLL_MS 5
#define FLOOD_PER_TICK 64   /* messages a flooding client writes per turn */
#define CATCH_UP_S 0.2      /* a paced client further behind restarts */
#define STALL_MAX_MSGS 20   /* a stalling client sends 0..this first */
#define MALFORMED_VARIANTS 7
#define GARBAGE_VARIANTS 4
#define OVERSIZE_TEXT_BYTES (DEMIX_PROTO_MAX_TEXT_BYTES + 904)

enum phase { P_IDLE = 0, P_CONNECTING, P_UPGRADE, P_RUN };

typedef struct chaos_client {
    loadgen_chaos *owner;
    int index;
    uint64_t rng;
    int bag[LOADGEN_CHAOS_KINDS];
    int bag_left;

    /* the episode */
    loadgen_chaos_kind kind;
    unsigned variant;
    int phase;
    int fd;
    double t_next;       /* IDLE: when the next episode begins */
    double t_act;        /* vanish: drop at; flood: send end at */
    double t_wait;       /* give up waiting for the server at */
    double t_send;       /* the next paced message */
    int ready, reading, streaming, flooding, end_sent;
    int stall_left;      /* stall: messages before it stops */
    int got_error, got_summary, got_close, eof, dropped;
    demix_proto_code error_code;
    uint64_t summary_frames;
    int close_code;
    uint32_t seq;
    uint64_t cursor;
    int64_t wire_frames;
    char key[WSIO_HANDSHAKE_KEY_BYTES];
    wsio_rx rx;
    int rx_live;

    uint8_t *rbuf;
    size_t rlen;
    uint8_t *sbuf;
    size_t slen, soff;
} chaos_client;

struct loadgen_chaos {
    const loadgen_config *cfg;
    int n;
    chaos_client *c;
    struct pollfd *pfd;
    int *pmap;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[256];
    char path[1024];
    int port;
    int msg_frames, rate_hz, pre_skip;
    double period_s;
    uint8_t msg[DEMIX_PROTO_MAX_BINARY_BYTES + OVERSIZE_TEXT_BYTES];
    atomic_int stop;
    pthread_t thread;
    int running;
    loadgen_chaos_report rep; /* the chaos thread's until joined */
};

static const char *const kind_names[LOADGEN_CHAOS_KINDS] = {
    "vanish", "stall", "no_read", "garbage", "malformed", "flood"};

const char *loadgen_chaos_kind_name(loadgen_chaos_kind k)
{
    return (int)k >= 0 && k < LOADGEN_CHAOS_KINDS ? kind_names[k] : "?";
}

int loadgen_chaos_count(double fraction, int n)
{
    if (!(fraction > 0.0) || n < 2)
        return 0;
    int c = (int)(fraction * n + 0.5);
    if (c < 1)
        c = 1;
    return c > n - 1 ? n - 1 : c;
}

void loadgen_chaos_report_add(loadgen_chaos_report *a,
                              const loadgen_chaos_report *b)
{
    for (int k = 0; k < LOADGEN_CHAOS_KINDS; k++) {
        loadgen_chaos_counts *x = &a->kind[k];
        const loadgen_chaos_counts *y = &b->kind[k];
        x->episodes += y->episodes;
        x->answered += y->answered;
        x->unanswered += y->unanswered;
        x->refused += y->refused;
        x->cut += y->cut;
        x->failed += y->failed;
        if (!x->example[0])
            snprintf(x->example, sizeof x->example, "%s", y->example);
    }
}

int64_t loadgen_chaos_unanswered(const loadgen_chaos_report *r)
{
    int64_t n = 0;
    for (int k = 0; k < LOADGEN_CHAOS_KINDS; k++)
        n += r->kind[k].unanswered;
    return n;
}

void loadgen_chaos_report_text(FILE *out, const loadgen_chaos_report *r)
{
    int64_t episodes = 0;
    for (int k = 0; k < LOADGEN_CHAOS_KINDS; k++)
        episodes += r->kind[k].episodes;
    fprintf(out,
            "chaos        %d misbehaving client%s (seed %llu): %lld "
            "episodes, %lld not answered as documented\n",
            r->clients, r->clients == 1 ? "" : "s",
            (unsigned long long)r->seed, (long long)episodes,
            (long long)loadgen_chaos_unanswered(r));
    for (int k = 0; k < LOADGEN_CHAOS_KINDS; k++) {
        const loadgen_chaos_counts *x = &r->kind[k];
        fprintf(out,
                "  %-10s %4lld episodes: %lld answered, %lld unanswered, "
                "%lld refused, %lld cut, %lld no connection%s%s\n",
                kind_names[k], (long long)x->episodes, (long long)x->answered,
                (long long)x->unanswered, (long long)x->refused,
                (long long)x->cut, (long long)x->failed,
                x->example[0] ? "; " : "", x->example);
    }
}

cJSON *loadgen_chaos_report_json(const loadgen_chaos_report *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *kinds = o ? cJSON_AddObjectToObject(o, "kinds") : NULL;
    int ok = kinds && cJSON_AddNumberToObject(o, "clients", r->clients) &&
             cJSON_AddNumberToObject(o, "seed", (double)r->seed) &&
             cJSON_AddNumberToObject(o, "unanswered",
                                     (double)loadgen_chaos_unanswered(r));
    for (int k = 0; ok && k < LOADGEN_CHAOS_KINDS; k++) {
        const loadgen_chaos_counts *x = &r->kind[k];
        cJSON *e = cJSON_AddObjectToObject(kinds, kind_names[k]);
        ok = e && cJSON_AddNumberToObject(e, "episodes", (double)x->episodes) &&
             cJSON_AddNumberToObject(e, "answered", (double)x->answered) &&
             cJSON_AddNumberToObject(e, "unanswered", (double)x->unanswered) &&
             cJSON_AddNumberToObject(e, "refused", (double)x->refused) &&
             cJSON_AddNumberToObject(e, "cut", (double)x->cut) &&
             cJSON_AddNumberToObject(e, "failed", (double)x->failed);
        cJSON *ex = ok ? (x->example[0] ? cJSON_CreateString(x->example)
                                        : cJSON_CreateNull())
                       : NULL;
        ok = ex && cJSON_AddItemToObject(e, "example", ex);
        if (!ok)
            cJSON_Delete(ex);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------- random */

static uint64_t next_random(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

static double uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(next_random(s) >> 11) * 0x1p-53;
}

/* The next kind from the client's bag (refilled with a shuffle of every
 * kind when empty). */
static loadgen_chaos_kind draw_kind(chaos_client *cl)
{
    if (cl->bag_left == 0) {
        for (int k = 0; k < LOADGEN_CHAOS_KINDS; k++)
            cl->bag[k] = k;
        for (int k = LOADGEN_CHAOS_KINDS - 1; k > 0; k--) {
            int j = (int)(next_random(&cl->rng) % (uint64_t)(k + 1));
            int t = cl->bag[k];
            cl->bag[k] = cl->bag[j];
            cl->bag[j] = t;
        }
        cl->bag_left = LOADGEN_CHAOS_KINDS;
    }
    return (loadgen_chaos_kind)cl->bag[--cl->bag_left];
}

/* ------------------------------------------------------------ episodes */

static void close_fd(chaos_client *cl, int reset)
{
    if (cl->fd < 0)
        return;
    if (reset) { /* RST instead of FIN: a client that crashed */
        struct linger lg = {1, 0};
        (void)setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(cl->fd);
    cl->fd = -1;
}

/* The episode is over: count it, drop the connection, pause. */
static void finish(chaos_client *cl, double now, int64_t *counter,
                   const char *fmt, ...) DEMIX_PRINTF(4, 5);
static void finish(chaos_client *cl, double now, int64_t *counter,
                   const char *fmt, ...)
{
    loadgen_chaos_counts *k = &cl->owner->rep.kind[cl->kind];
    (*counter)++;
    if (counter == &k->unanswered && !k->example[0] && fmt) {
        char why[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        snprintf(k->example, sizeof k->example, "client %d: %s", cl->index,
                 why);
    }
    close_fd(cl, cl->kind == LOADGEN_CHAOS_VANISH && (cl->variant & 1));
    if (cl->rx_live)
        wsio_rx_free(&cl->rx);
    cl->rx_live = 0;
    cl->phase = P_IDLE;
    cl->t_next = now + uniform(&cl->rng, 0.0, LOADGEN_CHAOS_PAUSE_S);
}

/* Write what is pending. 0: all of it, or the rest waits for POLLOUT;
 * -1: the connection is gone. */
static int flush(chaos_client *cl)
{
    while (cl->soff < cl->slen) {
        ssize_t k = send(cl->fd, cl->sbuf + cl->soff, cl->slen - cl->soff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            cl->dropped = 1;
            return -1;
        }
        cl->soff += (size_t)k;
    }
    cl->slen = cl->soff = 0;
    return 0;
}

/* Queue raw bytes (nothing may be pending) and try to write them. */
static int send_raw(chaos_client *cl, const uint8_t *data, size_t len)
{
    if (cl->slen || len > SBUF_BYTES)
        return 0; /* busy: skipped */
    memcpy(cl->sbuf, data, len);
    cl->slen = len;
    cl->soff = 0;
    return flush(cl);
}

/* Queue one masked frame (nothing may be pending) and try to write it. */
static int send_frame(chaos_client *cl, int opcode, const uint8_t *data,
                      size_t len)
{
    if (cl->slen || len + WSIO_FRAME_MAX_HEADER > SBUF_BYTES)
        return 0;
    uint64_t r = next_random(&cl->rng);
    uint8_t key[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16),
                      (uint8_t)(r >> 24)};
    size_t h = wsio_frame_header(cl->sbuf, opcode, 1, len, key);
    memcpy(cl->sbuf + h, data, len);
    wsio_frame_mask(cl->sbuf + h, len, key, 0);
    cl->slen = h + len;
    cl->soff = 0;
    return flush(cl);
}

static int send_text(chaos_client *cl, const char *text, size_t len)
{
    return send_frame(cl, WSIO_OP_TEXT, (const uint8_t *)text, len);
}

/* A start as loadgen's good sessions send it (optionally with a rate no
 * server takes: the malformed kind). */
static int send_start(chaos_client *cl, int bad_rate)
{
    loadgen_chaos *ch = cl->owner;
    const loadgen_config *c = ch->cfg;
    demix_proto_start st;
    demix_proto_start_init(&st);
    st.sample_rate_hz = ch->rate_hz;
    st.channels = loadgen_audio_channels(c->audio);
    st.input_codec = c->codec;
    st.output_codec = c->codec;
    if (c->codec == DEMIX_PROTO_CODEC_OPUS) {
        st.input_pre_skip_frames = ch->pre_skip;
        st.opus_bitrate_bps =
            DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL * st.channels;
        st.opus_frame_ms = DEMIX_PROTO_OPUS_DEFAULT_FRAME_MS;
    }
    st.mode = DEMIX_PROTO_MODE_STEMS;
    st.stem_count = c->stem_count;
    for (int i = 0; i < c->stem_count; i++)
        memcpy(st.stems[i], c->stems[i], sizeof st.stems[i]);
    if (c->token) {
        st.has_token = 1;
        snprintf(st.token, sizeof st.token, "%s", c->token);
    }
    size_t len;
    char *buf = (char *)ch->msg;
    if (demix_proto_write_start(&st, buf, DEMIX_PROTO_MAX_TEXT_BYTES + 1,
                                &len))
        return -1;
    if (bad_rate) { /* "sample_rate_hz":48000 -> 7 */
        char *p = strstr(buf, "\"sample_rate_hz\":");
        if (p) {
            p += strlen("\"sample_rate_hz\":");
            size_t digits = strspn(p, "0123456789");
            memmove(p + 1, p + digits, strlen(p + digits) + 1);
            *p = '7';
            len = strlen(buf);
        }
    }
    return send_text(cl, buf, len);
}

/* The next audio message of the loop (seq as given). */
static int send_audio(chaos_client *cl, uint32_t seq)
{
    loadgen_chaos *ch = cl->owner;
    demix_proto_audio_in h = {.codec = ch->cfg->codec, .flags = 0, .seq = seq};
    uint8_t *m = ch->msg;
    if (demix_proto_audio_in_write_header(&h, m, DEMIX_PROTO_MAX_BINARY_BYTES))
        return -1;
    size_t n = loadgen_audio_next(
        ch->cfg->audio, &cl->cursor, m + DEMIX_PROTO_AUDIO_IN_HEADER_BYTES,
        DEMIX_PROTO_MAX_BINARY_BYTES - DEMIX_PROTO_AUDIO_IN_HEADER_BYTES);
    if (n == 0)
        return -1;
    int was_free = cl->slen == 0;
    if (send_frame(cl, WSIO_OP_BINARY, m,
                   DEMIX_PROTO_AUDIO_IN_HEADER_BYTES + n))
        return -1;
    if (was_free) { /* queued: it counts */
        cl->seq++;
        cl->wire_frames += ch->msg_frames;
    }
    return 0;
}

/* Bytes that are no valid WebSocket frame from a client. */
static void send_garbage(chaos_client *cl)
{
    uint8_t g[1024];
    size_t len;
    switch ((cl->variant >> 1) % GARBAGE_VARIANTS) {
    case 0: { /* reserved bits set */
        const uint8_t f[] = {0xF2, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'};
        memcpy(g, f, len = sizeof f);
        break;
    }
    case 1: { /* opcode 3 is reserved */
        const uint8_t f[] = {0x83, 0x84, 9, 9, 9, 9, 1, 2, 3, 4};
        memcpy(g, f, len = sizeof f);
        break;
    }
    case 2: { /* unmasked (lws 4.1 takes it: docs/server.md) */
        const uint8_t f[] = {0x82, 0x05, 'h', 'e', 'l', 'l', 'o'};
        memcpy(g, f, len = sizeof f);
        break;
    }
    default: /* noise */
        len = 64 + (size_t)(next_random(&cl->rng) % (sizeof g - 64));
        for (size_t i = 0; i < len; i++)
            g[i] = (uint8_t)next_random(&cl->rng);
        break;
    }
    (void)send_raw(cl, g, len);
}

/* Valid frames, invalid messages; variants 4 and 6 need a started
 * session (sent after ready). */
static int malformed_after_ready(const chaos_client *cl)
{
    unsigned v = cl->variant % MALFORMED_VARIANTS;
    return v == 4 || v == 6;
}

static void send_malformed(chaos_client *cl)
{
    loadgen_chaos *ch = cl->owner;
    switch (cl->variant % MALFORMED_VARIANTS) {
    case 0: {
        const char t[] = "{\"type\":\"start\",\"sample_rate_hz\":";
        (void)send_text(cl, t, sizeof t - 1);
        break;
    }
    case 1: {
        const char t[] = "{\"type\":\"dance\"}";
        (void)send_text(cl, t, sizeof t - 1);
        break;
    }
    case 2:
        (void)send_start(cl, 1);
        break;
    case 3: /* audio before start */
        (void)send_audio(cl, 0);
        break;
    case 4: /* a sequence number out of order */
        (void)send_audio(cl, cl->seq + 5);
        break;
    case 5: { /* text over the protocol's limit */
        char *t = (char *)ch->msg;
        memset(t, 'x', OVERSIZE_TEXT_BYTES);
        t[0] = '"';
        t[OVERSIZE_TEXT_BYTES - 1] = '"';
        (void)send_text(cl, t, OVERSIZE_TEXT_BYTES);
        break;
    }
    default: { /* an audio header with the wrong magic */
        uint8_t b[8 + 64] = {0xD2, 0x01, (uint8_t)ch->cfg->codec, 0};
        (void)send_frame(cl, WSIO_OP_BINARY, b, sizeof b);
        break;
    }
    }
}

/* Connect to the server (non-blocking). */
static void begin(chaos_client *cl, double now)
{
    loadgen_chaos *ch = cl->owner;
    cl->kind = draw_kind(cl);
    cl->variant = (unsigned)(next_random(&cl->rng) >> 33);
    ch->rep.kind[cl->kind].episodes++;
    cl->ready = cl->reading = cl->streaming = cl->flooding = 0;
    cl->end_sent = cl->got_error = cl->got_summary = cl->got_close = 0;
    cl->eof = cl->dropped = 0;
    cl->error_code = DEMIX_PROTO_ERR_NONE;
    cl->summary_frames = 0;
    cl->close_code = 0;
    cl->seq = 0;
    cl->wire_frames = 0;
    cl->cursor = next_random(&cl->rng) % 1000000u;
    cl->rlen = cl->slen = cl->soff = 0;
    cl->t_wait = now + LOADGEN_CHAOS_WAIT_S;
    cl->t_act = 0.0;
    cl->stall_left = (int)(next_random(&cl->rng) % (STALL_MAX_MSGS + 1));
    wsio_rx_init(&cl->rx, DEMIX_PROTO_MAX_BINARY_BYTES, 0);
    cl->rx_live = 1;

    cl->fd = socket(ch->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (cl->fd < 0) {
        finish(cl, now, &ch->rep.kind[cl->kind].failed, NULL);
        return;
    }
    int one = 1;
    (void)setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(cl->fd, (struct sockaddr *)&ch->addr, ch->addr_len) &&
        errno != EINPROGRESS) {
        finish(cl, now, &ch->rep.kind[cl->kind].failed, NULL);
        return;
    }
    cl->phase = P_CONNECTING;
}

/* Connected: write the upgrade request. */
static void connected(chaos_client *cl, double now)
{
    loadgen_chaos *ch = cl->owner;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(cl->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
        finish(cl, now, &ch->rep.kind[cl->kind].failed, NULL);
        return;
    }
    uint8_t raw[16];
    for (int i = 0; i < 16; i++)
        raw[i] = (uint8_t)next_random(&cl->rng);
    wsio_handshake_key(raw, cl->key);
    size_t n;
    if (wsio_handshake_request((char *)ch->msg, sizeof ch->msg, ch->host,
                               ch->port, ch->path, DEMIX_PROTO_SUBPROTOCOL,
                               cl->key, &n) ||
        send_raw(cl, ch->msg, n)) {
        finish(cl, now, &ch->rep.kind[cl->kind].failed, NULL);
        return;
    }
    cl->phase = P_UPGRADE;
    cl->reading = 1;
}

/* 101 came: the misbehaviour begins (or the start that leads to it). */
static void opened(chaos_client *cl)
{
    switch (cl->kind) {
    case LOADGEN_CHAOS_GARBAGE:
        if (cl->variant & 1)
            (void)send_start(cl, 0); /* garbage after ready */
        else
            send_garbage(cl);
        break;
    case LOADGEN_CHAOS_MALFORMED:
        if (malformed_after_ready(cl))
            (void)send_start(cl, 0);
        else
            send_malformed(cl);
        break;
    default:
        (void)send_start(cl, 0);
        break;
    }
}

static void got_ready(chaos_client *cl, double now)
{
    cl->ready = 1;
    cl->t_send = now;
    switch (cl->kind) {
    case LOADGEN_CHAOS_VANISH:
        cl->streaming = 1;
        cl->t_act = now + uniform(&cl->rng, 0.2, 3.0);
        break;
    case LOADGEN_CHAOS_STALL:
        cl->streaming = cl->stall_left > 0;
        break;
    case LOADGEN_CHAOS_NO_READ:
        cl->streaming = 1;
        cl->reading = 0; /* from here on, never */
        break;
    case LOADGEN_CHAOS_GARBAGE:
        send_garbage(cl);
        break;
    case LOADGEN_CHAOS_MALFORMED:
        if (malformed_after_ready(cl))
            send_malformed(cl);
        break;
    case LOADGEN_CHAOS_FLOOD:
        cl->flooding = 1;
        cl->t_act = now + uniform(&cl->rng, 1.0, 3.0);
        break;
    default:
        break;
    }
}

static void on_text(chaos_client *cl, const uint8_t *data, size_t len,
                    double now)
{
    demix_proto_server_msg m;
    demix_proto_error perr;
    if (client_parse_server((const char *)data, len, &m, &perr))
        return; /* not the server's fault to judge here */
    if (m.type == DEMIX_PROTO_READY && !cl->ready) {
        got_ready(cl, now);
    } else if (m.type == DEMIX_PROTO_ERROR && !cl->got_error) {
        cl->got_error = 1;
        cl->error_code = m.error.code;
    } else if (m.type == DEMIX_PROTO_SUMMARY) {
        cl->got_summary = 1;
        cl->summary_frames = m.summary.input_frames;
    }
}

/* Frames from the server in data[0..len). */
static void on_bytes(chaos_client *cl, uint8_t *data, size_t len, double now)
{
    size_t off = 0;
    while (off < len && cl->reading && !cl->got_close) {
        wsio_frame_event ev;
        off += wsio_rx_next(&cl->rx, data + off, len - off, &ev);
        switch (ev.kind) {
        case WSIO_FRAME_MESSAGE:
            if (!ev.binary)
                on_text(cl, ev.data, ev.len, now);
            break;
        case WSIO_FRAME_CLOSE:
            cl->got_close = 1;
            cl->close_code = ev.close_code;
            break;
        case WSIO_FRAME_ERROR: /* the server broke the framing */
            cl->got_close = 1;
            cl->close_code = -ev.close_code;
            break;
        default:
            break;
        }
    }
}

static void read_some(chaos_client *cl, double now)
{
    loadgen_chaos *ch = cl->owner;
    for (int i = 0; i < 4 && cl->reading && !cl->eof && !cl->got_close; i++) {
        size_t room = RBUF_BYTES - cl->rlen;
        ssize_t k = recv(cl->fd, cl->rbuf + cl->rlen, room, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR)) {
            cl->eof = 1;
            return;
        }
        if (k < 0)
            return;
        if (cl->phase == P_UPGRADE) {
            cl->rlen += (size_t)k;
            size_t head;
            char why[256];
            int rc = wsio_handshake_check((const char *)cl->rbuf, cl->rlen,
                                          cl->key, DEMIX_PROTO_SUBPROTOCOL,
                                          &head, why, sizeof why);
            if (rc == 0 && cl->rlen < RBUF_BYTES)
                continue;
            if (rc != 1) { /* 429, 503, ...: the server refused */
                finish(cl, now, &ch->rep.kind[cl->kind].refused, NULL);
                return;
            }
            cl->phase = P_RUN;
            size_t rest = cl->rlen - head;
            cl->rlen = 0;
            opened(cl);
            on_bytes(cl, cl->rbuf + head, rest, now);
        } else {
            on_bytes(cl, cl->rbuf, (size_t)k, now);
        }
    }
}

/* The kind's verdict once the server acted (or we did). */
static void judge(chaos_client *cl, double now)
{
    loadgen_chaos *ch = cl->owner;
    loadgen_chaos_counts *k = &ch->rep.kind[cl->kind];
    int ended = cl->eof || cl->got_close || cl->dropped;
    if (cl->got_error && cl->error_code == DEMIX_PROTO_ERR_AT_CAPACITY) {
        finish(cl, now, &k->refused, NULL);
        return;
    }
    switch (cl->kind) {
    case LOADGEN_CHAOS_VANISH:
        if (ended || cl->got_error)
            finish(cl, now, &k->unanswered,
                   "the server ended a streaming session (%s, close %d)",
                   cl->got_error ? demix_proto_code_name(cl->error_code)
                                 : "no error",
                   cl->close_code);
        break;
    case LOADGEN_CHAOS_STALL:
        if (cl->got_error && cl->error_code == DEMIX_PROTO_ERR_TIMEOUT)
            finish(cl, now, &k->answered, NULL);
        else if (cl->got_error || ended)
            finish(cl, now, &k->unanswered,
                   "a stalled session ended with %s (close %d), not timeout",
                   cl->got_error ? demix_proto_code_name(cl->error_code)
                                 : "no error",
                   cl->close_code);
        break;
    case LOADGEN_CHAOS_NO_READ:
        if (ended)
            finish(cl, now, cl->ready ? &k->answered : &k->unanswered,
                   "the connection ended before ready");
        break;
    case LOADGEN_CHAOS_GARBAGE:
        if (ended)
            finish(cl, now, &k->answered, NULL);
        break;
    case LOADGEN_CHAOS_MALFORMED:
        if (ended)
            finish(cl, now, cl->got_error ? &k->answered : &k->unanswered,
                   "closed without an error message (variant %u, close %d)",
                   cl->variant % MALFORMED_VARIANTS, cl->close_code);
        break;
    case LOADGEN_CHAOS_FLOOD: {
        if (!ended && !cl->got_error)
            break;
        int64_t sent = cl->wire_frames - ch->pre_skip;
        if (sent < 0)
            sent = 0;
        if (cl->got_summary && !cl->got_error && cl->close_code == 1000 &&
            (int64_t)cl->summary_frames == sent)
            finish(cl, now, &k->answered, NULL);
        else
            finish(cl, now, &k->unanswered,
                   "a flood ended with %s, close %d, summary %s (%llu of "
                   "%lld frames)",
                   cl->got_error ? demix_proto_code_name(cl->error_code)
                                 : "no error",
                   cl->close_code, cl->got_summary ? "yes" : "no",
                   (unsigned long long)cl->summary_frames, (long long)sent);
        break;
    }
    default:
        break;
    }
}

/* Time-driven work: episodes, paced sends, floods, deadlines. */
static void step(chaos_client *cl, double now)
{
    loadgen_chaos *ch = cl->owner;
    if (cl->phase == P_IDLE) {
        if (now >= cl->t_next)
            begin(cl, now);
        return;
    }
    if (now >= cl->t_wait) {
        finish(cl, now, &ch->rep.kind[cl->kind].unanswered,
               "no reaction from the server in %.0f s (%s)",
               LOADGEN_CHAOS_WAIT_S,
               cl->phase == P_RUN ? (cl->ready ? "after ready" : "no ready")
                                  : "no upgrade answer");
        return;
    }
    if (cl->phase != P_RUN)
        return;
    if (cl->kind == LOADGEN_CHAOS_VANISH && cl->ready && now >= cl->t_act) {
        finish(cl, now, &ch->rep.kind[cl->kind].answered, NULL);
        return;
    }
    if (cl->streaming && !cl->slen) {
        if (now - cl->t_send > CATCH_UP_S)
            cl->t_send = now;
        while (now >= cl->t_send && !cl->slen && !cl->dropped) {
            if (send_audio(cl, cl->seq))
                break;
            cl->t_send += ch->period_s;
            if (cl->kind == LOADGEN_CHAOS_STALL && --cl->stall_left <= 0) {
                cl->streaming = 0; /* from here on, silence */
                break;
            }
        }
    }
    if (cl->flooding) {
        for (int i = 0; i < FLOOD_PER_TICK && !cl->slen && !cl->dropped; i++)
            if (send_audio(cl, cl->seq))
                break;
        if (now >= cl->t_act && !cl->slen) {
            char end[64];
            size_t len;
            cl->flooding = 0;
            if (!demix_proto_write_end(end, sizeof end, &len) &&
                !send_text(cl, end, len))
                cl->end_sent = 1;
        }
    }
}

static void *chaos_main(void *arg)
{
    loadgen_chaos *ch = arg;
    double t0 = ws_client_now_s();
    /* the first episodes spread over the first second */
    for (int i = 0; i < ch->n; i++)
        ch->c[i].t_next = t0 + (double)i / ch->n;
    while (!atomic_load(&ch->stop)) {
        double now = ws_client_now_s();
        int np = 0;
        for (int i = 0; i < ch->n; i++) {
            chaos_client *cl = &ch->c[i];
            step(cl, now);
            if (cl->phase == P_IDLE || cl->fd < 0)
                continue;
            short ev = 0;
            if (cl->phase == P_CONNECTING || cl->slen)
                ev |= POLLOUT;
            if (cl->reading)
                ev |= POLLIN;
            ch->pfd[np].fd = cl->fd;
            ch->pfd[np].events = ev;
            ch->pfd[np].revents = 0;
            ch->pmap[np++] = i;
        }
        if (poll(ch->pfd, (nfds_t)np, POLL_MS) < 0 && errno != EINTR)
            break;
        now = ws_client_now_s();
        for (int j = 0; j < np; j++) {
            chaos_client *cl = &ch->c[ch->pmap[j]];
            short re = ch->pfd[j].revents;
            if (!re || cl->fd != ch->pfd[j].fd)
                continue;
            if (cl->phase == P_CONNECTING) {
                connected(cl, now);
                continue;
            }
            if (re & POLLOUT)
                (void)flush(cl);
            if (re & POLLIN)
                read_some(cl, now);
            if (cl->phase == P_IDLE)
                continue; /* finished inside */
            if ((re & (POLLERR | POLLHUP)) && !(re & POLLIN))
                cl->dropped = 1;
            if (cl->phase == P_UPGRADE &&
                (cl->eof || cl->dropped)) {
                finish(cl, now, &ch->rep.kind[cl->kind].failed, NULL);
                continue;
            }
            if (cl->phase == P_RUN)
                judge(cl, now);
        }
    }
    return NULL;
}

/* -------------------------------------------------------------- public */

static int resolve(loadgen_chaos *ch, char *err, size_t err_cap)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof port, "%d", ch->port);
    int rc = getaddrinfo(ch->host, port, &hints, &res);
    if (rc || !res) {
        snprintf(err, err_cap, "chaos: cannot resolve %s: %s", ch->host,
                 rc ? gai_strerror(rc) : "no address");
        return DEMIX_EIO;
    }
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    memcpy(&ch->addr, pick->ai_addr, pick->ai_addrlen);
    ch->addr_len = pick->ai_addrlen;
    freeaddrinfo(res);
    return DEMIX_OK;
}

static void free_all(loadgen_chaos *ch)
{
    for (int i = 0; ch->c && i < ch->n; i++) {
        close_fd(&ch->c[i], 0);
        if (ch->c[i].rx_live)
            wsio_rx_free(&ch->c[i].rx);
        free(ch->c[i].rbuf);
        free(ch->c[i].sbuf);
    }
    free(ch->c);
    free(ch->pfd);
    free(ch->pmap);
    free(ch);
}

int loadgen_chaos_start(const loadgen_chaos_params *p, loadgen_chaos **out,
                        char *err, size_t err_cap)
{
    *out = NULL;
    if (!p || !p->cfg || p->clients < 1 || !p->host || !p->path) {
        snprintf(err, err_cap, "chaos: bad parameters");
        return DEMIX_EARG;
    }
    loadgen_chaos *ch = calloc(1, sizeof *ch);
    if (!ch) {
        snprintf(err, err_cap, "chaos: out of memory");
        return DEMIX_ENOMEM;
    }
    ch->cfg = p->cfg;
    ch->n = p->clients;
    ch->port = p->port;
    snprintf(ch->host, sizeof ch->host, "%s", p->host);
    snprintf(ch->path, sizeof ch->path, "%s", p->path);
    ch->rate_hz = loadgen_audio_rate(p->cfg->audio);
    ch->msg_frames = loadgen_audio_message_frames(p->cfg->audio);
    ch->pre_skip = loadgen_audio_pre_skip(p->cfg->audio);
    ch->period_s = (double)ch->msg_frames / ch->rate_hz;
    ch->rep.clients = p->clients;
    ch->rep.seed = p->seed;
    atomic_init(&ch->stop, 0);
    int rc = resolve(ch, err, err_cap);
    if (rc) {
        free(ch);
        return rc;
    }
    ch->c = calloc((size_t)ch->n, sizeof *ch->c);
    ch->pfd = calloc((size_t)ch->n, sizeof *ch->pfd);
    ch->pmap = calloc((size_t)ch->n, sizeof *ch->pmap);
    int ok = ch->c && ch->pfd && ch->pmap;
    for (int i = 0; ok && i < ch->n; i++) {
        chaos_client *cl = &ch->c[i];
        cl->owner = ch;
        cl->index = i;
        cl->fd = -1;
        /* splitmix64 of seed and index: distinct, never 0 */
        uint64_t z = p->seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        cl->rng = (z ^ (z >> 31)) | 1;
        cl->rbuf = malloc(RBUF_BYTES);
        cl->sbuf = malloc(SBUF_BYTES);
        ok = cl->rbuf && cl->sbuf;
    }
    if (!ok) {
        free_all(ch);
        snprintf(err, err_cap, "chaos: out of memory for %d clients",
                 p->clients);
        return DEMIX_ENOMEM;
    }
    rc = pthread_create(&ch->thread, NULL, chaos_main, ch);
    if (rc) {
        free_all(ch);
        snprintf(err, err_cap, "chaos: cannot start its thread: %s",
                 strerror(rc));
        return DEMIX_EIO;
    }
    ch->running = 1;
    *out = ch;
    return DEMIX_OK;
}

void loadgen_chaos_stop(loadgen_chaos *ch, loadgen_chaos_report *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!ch)
        return;
    atomic_store(&ch->stop, 1);
    if (ch->running)
        pthread_join(ch->thread, NULL);
    for (int i = 0; i < ch->n; i++)
        if (ch->c[i].phase != P_IDLE)
            ch->rep.kind[ch->c[i].kind].cut++;
    if (out)
        *out = ch->rep;
    free_all(ch);
}
