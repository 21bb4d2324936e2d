/*
 * wsio_handshake.c - WebSocket upgrade request and answer check (see
 * wsio_handshake.h). The answer is read as lines of the head, each header
 * looked up by a case-insensitive scan (a handful of headers: no table).
 *
 * Thread context: pure functions, any thread.
 */
#include "wsio_handshake.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "wsio_crypto.h"

void wsio_handshake_key(const uint8_t raw[16],
                        char key[WSIO_HANDSHAKE_KEY_BYTES])
{
    if (wsio_crypto_base64(raw, 16, key, WSIO_HANDSHAKE_KEY_BYTES))
        key[0] = '\0'; /* cannot happen: the size is exact */
}

void wsio_handshake_accept(const char *key,
                           char out[WSIO_HANDSHAKE_ACCEPT_BYTES])
{
    char cat[128];
    size_t kl = strlen(key);
    size_t gl = sizeof WSIO_HANDSHAKE_GUID - 1;
    if (kl > sizeof cat - gl)
        kl = sizeof cat - gl; /* a key is 24 bytes; never cut in practice */
    memcpy(cat, key, kl);
    memcpy(cat + kl, WSIO_HANDSHAKE_GUID, gl);
    uint8_t digest[WSIO_SHA1_BYTES];
    wsio_crypto_sha1(cat, kl + gl, digest);
    if (wsio_crypto_base64(digest, sizeof digest, out,
                           WSIO_HANDSHAKE_ACCEPT_BYTES))
        out[0] = '\0'; /* cannot happen: the size is exact */
}

int wsio_handshake_request(char *buf, size_t cap, const char *host, int port,
                           const char *path, const char *subprotocol,
                           const char *key, size_t *len)
{
    *len = 0;
    /* an IPv6 literal goes back into brackets in Host */
    int v6 = strchr(host, ':') != NULL;
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s%s%s:%d\r\n"
                     "Origin: http://%s%s%s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "%s%s%s"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     path, v6 ? "[" : "", host, v6 ? "]" : "", port,
                     v6 ? "[" : "", host, v6 ? "]" : "", key,
                     subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return DEMIX_ENOSPACE;
    *len = (size_t)n;
    return DEMIX_OK;
}

/* The value of header `name` in head[0..len) (the status line skipped),
 * trimmed, into out; 0, or -1 when absent. */
static int header(const char *head, size_t len, const char *name, char *out,
                  size_t cap)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < len && head[i] != '\n') /* skip the status line */
        i++;
    while (++i < len) {
        size_t end = i;
        while (end < len && head[end] != '\n')
            end++;
        size_t line_end = end > i && head[end - 1] == '\r' ? end - 1 : end;
        if (line_end - i > nl && head[i + nl] == ':' &&
            strncasecmp(head + i, name, nl) == 0) {
            size_t v = i + nl + 1;
            while (v < line_end && (head[v] == ' ' || head[v] == '\t'))
                v++;
            size_t e = line_end;
            while (e > v && (head[e - 1] == ' ' || head[e - 1] == '\t'))
                e--;
            size_t n = e - v < cap - 1 ? e - v : cap - 1;
            memcpy(out, head + v, n);
            out[n] = '\0';
            return 0;
        }
        i = end;
    }
    return -1;
}

/* 1 when the comma-separated list holds token (case-insensitive). */
static int has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

int wsio_handshake_check(const char *resp, size_t len, const char *key,
                         const char *subprotocol, size_t *head_bytes, char *why,
                         size_t why_cap)
{
    *head_bytes = 0;
    size_t head = 0;
    for (size_t i = 3; i < len; i++)
        if (resp[i] == '\n' && resp[i - 1] == '\r' && resp[i - 2] == '\n' &&
            resp[i - 3] == '\r') {
            head = i + 1;
            break;
        }
    if (!head) {
        if (len >= WSIO_HANDSHAKE_MAX_HEAD) {
            snprintf(why, why_cap,
                     "the server's answer to the WebSocket upgrade has no "
                     "end of headers in %d bytes",
                     WSIO_HANDSHAKE_MAX_HEAD);
            return DEMIX_EPROTOCOL;
        }
        return 0;
    }
    size_t sl = 0;
    while (sl < head && resp[sl] != '\r')
        sl++;
    char status_line[128];
    size_t cl = sl < sizeof status_line - 1 ? sl : sizeof status_line - 1;
    memcpy(status_line, resp, cl);
    status_line[cl] = '\0';
    int status = 0;
    if (strncmp(status_line, "HTTP/1.", 7) != 0 ||
        !isdigit((unsigned char)status_line[7]) || status_line[8] != ' ' ||
        sscanf(status_line + 9, "%3d", &status) != 1) {
        snprintf(why, why_cap,
                 "the server did not answer the WebSocket upgrade with HTTP "
                 "(it sent '%s')",
                 status_line);
        return DEMIX_EPROTOCOL;
    }
    if (status != 101) {
        snprintf(why, why_cap, "the server refused the WebSocket upgrade: %s",
                 status_line);
        return DEMIX_EPROTOCOL;
    }
    char v[256];
    if (header(resp, head, "Upgrade", v, sizeof v) ||
        strcasecmp(v, "websocket") != 0) {
        snprintf(why, why_cap,
                 "the server's 101 answer lacks 'Upgrade: websocket'");
        return DEMIX_EPROTOCOL;
    }
    if (header(resp, head, "Connection", v, sizeof v) ||
        !has_token(v, "upgrade")) {
        snprintf(why, why_cap,
                 "the server's 101 answer lacks 'Connection: Upgrade'");
        return DEMIX_EPROTOCOL;
    }
    char expect[WSIO_HANDSHAKE_ACCEPT_BYTES];
    wsio_handshake_accept(key, expect);
    if (header(resp, head, "Sec-WebSocket-Accept", v, sizeof v)) {
        snprintf(why, why_cap,
                 "the server's 101 answer has no Sec-WebSocket-Accept");
        return DEMIX_EPROTOCOL;
    }
    if (strcmp(v, expect) != 0) {
        snprintf(why, why_cap,
                 "the server's Sec-WebSocket-Accept '%.40s' does not match "
                 "the key (expected '%s')",
                 v, expect);
        return DEMIX_EPROTOCOL;
    }
    if (header(resp, head, "Sec-WebSocket-Protocol", v, sizeof v) == 0 &&
        (!subprotocol || strcmp(v, subprotocol) != 0)) {
        snprintf(why, why_cap, "the server chose subprotocol '%.64s', %s%s%s",
                 v, subprotocol ? "not the '" : "and none was asked for",
                 subprotocol ? subprotocol : "",
                 subprotocol ? "' asked for" : "");
        return DEMIX_EPROTOCOL;
    }
    *head_bytes = head;
    return 1;
}
