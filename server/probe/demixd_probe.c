/*
 * demixd_probe.c - a tiny raw-socket WebSocket client for poking demixd by
 * hand (development aid; the real client is `demix stream`, the real tests
 * are tests/integration/test_server*.c).
 *
 *   demixd-probe PORT STEP...
 *
 * Steps, run in order:
 *   text:JSON         send a text message
 *   frag:N:JSON       send a text message in fragments of N bytes
 *   pcm:CODEC:CH:N    send an audio_in message of N frames of a sine
 *                     (CODEC s16|f32), next seq
 *   opus:HEX          send an audio_in message with this Opus payload
 *   raw:HEX           send these bytes as a binary message
 *   big:N             send a binary message of N bytes (header d1 01 01 00)
 *   read:MS           print what arrives for MS milliseconds
 *   wait              print everything until the server closes
 *   drop              close the socket without a close frame, exit
 *
 * Prints one line per received message: text as is, binary as its
 * audio_out header, and the close code and reason.
 *
 * Thread context: single-threaded.
 */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static uint32_t seq;
static uint8_t rbuf[1 << 20];
static size_t rlen;
static uint8_t msg[1 << 20];
static size_t msg_len;
static int msg_bin;
static long frames_out[256];

static void die(const char *m)
{
    fprintf(stderr, "probe: %s (%s)\n", m, strerror(errno));
    exit(1);
}

static void send_frame(int op, int fin, const uint8_t *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(h + hl, mask, 4);
    hl += 4;
    uint8_t *b = malloc(hl + n);
    memcpy(b, h, hl);
    for (size_t i = 0; i < n; i++)
        b[hl + i] = p[i] ^ mask[i & 3];
    size_t off = 0;
    while (off < hl + n) {
        ssize_t w = write(fd, b + off, hl + n - off);
        if (w <= 0)
            die("write");
        off += (size_t)w;
    }
    free(b);
}

/* Parse whole frames out of rbuf; 1 when the connection closed. */
static int parse(void)
{
    for (;;) {
        if (rlen < 2)
            return 0;
        size_t n = rbuf[1] & 0x7f, hl = 2;
        if (n == 126) {
            if (rlen < 4)
                return 0;
            n = (size_t)rbuf[2] << 8 | rbuf[3];
            hl = 4;
        } else if (n == 127) {
            if (rlen < 10)
                return 0;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | rbuf[2 + i];
            hl = 10;
        }
        if (rlen < hl + n)
            return 0;
        int op = rbuf[0] & 0x0f, fin = rbuf[0] & 0x80;
        const uint8_t *p = rbuf + hl;
        if (op == 8) {
            int code = n >= 2 ? p[0] << 8 | p[1] : 1005;
            printf("close %d '%.*s'\n", code, n > 2 ? (int)(n - 2) : 0,
                   (const char *)p + 2);
            return 1;
        }
        if (op == 1 || op == 2) {
            msg_len = 0;
            msg_bin = op == 2;
        }
        if (op <= 2) {
            memcpy(msg + msg_len, p, n);
            msg_len += n;
            if (fin) {
                if (!msg_bin) {
                    printf("text %.*s\n", (int)msg_len, (const char *)msg);
                } else if (msg_len >= 24) {
                    unsigned stem = msg[8];
                    uint32_t fr = msg[12] | msg[13] << 8 | msg[14] << 16 |
                                  (uint32_t)msg[15] << 24;
                    uint64_t pos = 0;
                    for (int i = 7; i >= 0; i--)
                        pos = pos << 8 | msg[16 + i];
                    if (frames_out[stem] != (long)pos)
                        printf("binary GAP stem %u expected %ld got %llu\n",
                               stem, frames_out[stem], (unsigned long long)pos);
                    frames_out[stem] = (long)(pos + fr);
                    if (msg[3] & 1)
                        printf("binary stem %u LAST pos %llu frames %u "
                               "(total %ld)\n",
                               stem, (unsigned long long)pos, fr,
                               frames_out[stem]);
                }
            }
        }
        memmove(rbuf, rbuf + hl + n, rlen - hl - n);
        rlen -= hl + n;
    }
}

/* Read for ms (-1: until close). 1 when closed. */
static int pump(int ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int left = -1;
        if (ms >= 0) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            long el = (t.tv_sec - t0.tv_sec) * 1000 +
                      (t.tv_nsec - t0.tv_nsec) / 1000000;
            if (el >= ms)
                return 0;
            left = (int)(ms - el);
        }
        struct pollfd pf = {fd, POLLIN, 0};
        int r = poll(&pf, 1, left);
        if (r <= 0)
            continue;
        ssize_t k = read(fd, rbuf + rlen, sizeof rbuf - rlen);
        if (k <= 0) {
            printf("eof\n");
            return 1;
        }
        rlen += (size_t)k;
        if (parse())
            return 1;
    }
}

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;
    while (h[0] && h[1]) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

static void audio(uint8_t codec, const uint8_t *payload, size_t n)
{
    uint8_t *m = malloc(8 + n);
    m[0] = 0xD1;
    m[1] = 0x01;
    m[2] = codec;
    m[3] = 0;
    m[4] = (uint8_t)seq;
    m[5] = (uint8_t)(seq >> 8);
    m[6] = (uint8_t)(seq >> 16);
    m[7] = (uint8_t)(seq >> 24);
    seq++;
    memcpy(m + 8, payload, n);
    send_frame(2, 1, m, 8 + n);
    free(m);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: demixd-probe PORT STEP...\n");
        return 2;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a))
        die("connect");
    /* $PROBE_PROTOCOL: offer this subprotocol; $PROBE_PATH: another path */
    const char *proto = getenv("PROBE_PROTOCOL");
    const char *path = getenv("PROBE_PATH");
    char req[1024];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
             path ? path : "/v1/stream",
             proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
             proto ? "\r\n" : "");
    if (write(fd, req, strlen(req)) < 0)
        die("write");
    /* "pipe:JSON" as the first step: send it right behind the handshake,
     * before the server's answer (exercises lws's leftover-rx path). */
    if (argc > 2 && !strncmp(argv[2], "pipe:", 5)) {
        send_frame(1, 1, (uint8_t *)argv[2] + 5, strlen(argv[2] + 5));
        argv[2] = "read:0";
    }
    char resp[4096];
    size_t rl = 0;
    while (!strstr(resp, "\r\n\r\n")) {
        ssize_t k = read(fd, resp + rl, sizeof resp - 1 - rl);
        if (k <= 0)
            die("handshake");
        rl += (size_t)k;
        resp[rl] = 0;
    }
    char *end = strstr(resp, "\r\n\r\n") + 4;
    if (strncmp(resp, "HTTP/1.1 101", 12)) {
        printf("handshake refused: %.40s\n", resp);
        return 1;
    }
    rlen = rl - (size_t)(end - resp);
    memcpy(rbuf, end, rlen);
    if (parse())
        return 0;
    double ph = 0;
    for (int i = 2; i < argc; i++) {
        char *s = argv[i];
        if (!strncmp(s, "text:", 5)) {
            send_frame(1, 1, (uint8_t *)s + 5, strlen(s + 5));
        } else if (!strncmp(s, "frag:", 5)) {
            int n = atoi(s + 5);
            char *j = strchr(s + 5, ':') + 1;
            size_t len = strlen(j);
            for (size_t o = 0; o < len; o += (size_t)n) {
                size_t k = len - o < (size_t)n ? len - o : (size_t)n;
                send_frame(o == 0 ? 1 : 0, o + k >= len, (uint8_t *)j + o, k);
            }
        } else if (!strncmp(s, "pcm:", 4)) {
            char codec[8];
            int ch, n;
            sscanf(s + 4, "%3[^:]:%d:%d", codec, &ch, &n);
            int f32 = !strcmp(codec, "f32");
            size_t bytes = (size_t)n * (size_t)ch * (f32 ? 4 : 2);
            uint8_t *p = malloc(bytes);
            for (int k = 0; k < n; k++) {
                float v = 0.3f * (float)sin(ph);
                ph += 0.05;
                for (int c = 0; c < ch; c++) {
                    if (f32) {
                        memcpy(p + ((size_t)k * ch + c) * 4, &v, 4);
                    } else {
                        int16_t q = (int16_t)(v * 32767);
                        memcpy(p + ((size_t)k * ch + c) * 2, &q, 2);
                    }
                }
            }
            audio(f32 ? 1 : 0, p, bytes);
            free(p);
        } else if (!strncmp(s, "opus:", 5)) {
            uint8_t p[4096];
            audio(2, p, unhex(s + 5, p));
        } else if (!strncmp(s, "raw:", 4)) {
            uint8_t p[4096];
            send_frame(2, 1, p, unhex(s + 4, p));
        } else if (!strncmp(s, "big:", 4)) {
            size_t n = (size_t)atol(s + 4);
            uint8_t *p = calloc(n, 1);
            p[0] = 0xD1;
            p[1] = 1;
            p[2] = 1;
            send_frame(2, 1, p, n);
            free(p);
        } else if (!strncmp(s, "read:", 5)) {
            if (pump(atoi(s + 5)))
                return 0;
        } else if (!strcmp(s, "wait")) {
            pump(-1);
            return 0;
        } else if (!strcmp(s, "drop")) {
            close(fd);
            return 0;
        } else {
            fprintf(stderr, "probe: unknown step %s\n", s);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
