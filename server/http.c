/*
 * http.c - demixd's HTTP side on the one port: routing, static files of
 * web/, GET /v1/health, GET /metrics, and the response writer shared with
 * the file API (fileapi.c).
 *
 *   GET  /v1/health     200 {"status":"ok","sessions":..,"max_sessions":..,
 *                       "capacity":..,"backend":..,"file_jobs":..,
 *                       "max_file_jobs":..,"uptime_s":..}; 503 with status
 *                       "shutting_down" while stopping
 *   GET  /v1/health/live   200 {"status":"live","uptime_s":..} while the
 *                       process serves HTTP, also while it shuts down (a
 *                       liveness probe must not kill a draining server)
 *   GET  /v1/health/ready  200 {"status":"ready",..} while a new session
 *                       would be admitted; 503 {"status":"not_ready",
 *                       "reason":"at_capacity"|"shutting_down",..} while
 *                       live sessions >= max_sessions or once shutdown
 *                       began (the load balancer's and Kubernetes' view)
 *   GET  /metrics       Prometheus text (metrics.h)
 *   POST /v1/separate   the file API (fileapi.c); the only path that asks
 *                       for a token (--tokens): health, metrics and the
 *                       static files carry no secret and stay open
 *   GET  /v1/stream     without an Upgrade: 426
 *   GET  /anything      a file under web/ (static_files.h), else 404
 *   other methods       405
 *
 * Every response carries X-Content-Type-Options: nosniff, a strict
 * Content-Security-Policy (default-src 'self'; connect-src 'self' ws: wss:;
 * no inline script, no framing), Referrer-Policy and X-Frame-Options, also
 * those lws writes itself (the vhost's headers, demixd_http_security_
 * headers); API responses add Cache-Control: no-store.
 *
 * Thread context: the request's service thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "http_impl.h"
#include "log.h"
#include "static_files.h"

#define CSP                                                                    \
    "default-src 'self'; script-src 'self'; style-src 'self'; "                \
    "img-src 'self' data:; media-src 'self' blob:; "                           \
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "        \
    "frame-ancestors 'none'; form-action 'self'"

_Static_assert(sizeof(((demixd_service *)0)->http_chunk) ==
                   LWS_PRE + HTTP_CHUNK_BYTES,
               "the service's chunk buffer holds one chunk");

static int add_header(struct lws *wsi, const char *name, const char *value,
                      unsigned char **p, unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value,
                                       (int)strlen(value), p, end);
}

/* The security headers of every response, demixd's own and those lws
 * writes itself (403 for a method or path it refuses, ...): lws adds a
 * vhost's `headers` in lws_add_http_header_status, which every response
 * goes through (service.c gives it this list). */
static const struct lws_protocol_vhost_options sec_xfo = {
    NULL, NULL, "x-frame-options:", "DENY"};
static const struct lws_protocol_vhost_options sec_ref = {
    &sec_xfo, NULL, "referrer-policy:", "no-referrer"};
static const struct lws_protocol_vhost_options sec_csp = {
    &sec_ref, NULL, "content-security-policy:", CSP};
static const struct lws_protocol_vhost_options sec_nosniff = {
    &sec_csp, NULL, "x-content-type-options:", "nosniff"};

const struct lws_protocol_vhost_options *demixd_http_security_headers(void)
{
    return &sec_nosniff;
}

int demixd__http_respond(demixd_http *h, int status, const char *ctype,
                         char *body, size_t len)
{
    free(h->body);
    h->body = body;
    h->body_len = body ? len : 0;
    h->body_off = 0;
    h->status = status;
    h->ctype = ctype;
    h->responding = 1;
    h->headers_done = 0;
    if (!body && !h->zip)
        h->close_after = 1; /* out of memory: say nothing, close */
    lws_callback_on_writable(h->wsi);
    return 0;
}

/* {"error":{"code":"<code>","message":"<msg>"}} and a newline, in memory
 * from malloc (the body demixd__http_respond() frees); NULL when out of
 * memory. cJSON escapes both strings. */
static char *error_body(const char *code, const char *msg, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    char *text = NULL, *body = NULL;
    if (error && cJSON_AddStringToObject(error, "code", code) &&
        cJSON_AddStringToObject(error, "message", msg))
        text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text) {
        size_t n = strlen(text);
        body = malloc(n + 2);
        if (body) {
            memcpy(body, text, n);
            body[n] = '\n';
            body[n + 1] = '\0';
            *len = n + 1;
        }
        cJSON_free(text);
    }
    return body;
}

int demixd__http_error(demixd_http *h, int status, const char *code,
                       const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = 0;
    char *body = error_body(code, msg, &n);
    demixd_log(status >= 500 ? DEMIXD_LOG_WARN : DEMIXD_LOG_DEBUG, "http_error",
               "req=%s status=%d code=%s", h->id, status, code);
    return demixd__http_respond(h, status, "application/json", body, n);
}

static int health(demixd_http *h)
{
    demixd *d = h->d;
    double p50, p99, bm, up;
    uint64_t hops;
    demixd_metrics_recent(d->metrics, &p50, &p99, &bm, &hops, &up);
    char *body = malloc(512);
    int n = body ? snprintf(body, 512,
                            "{\"status\":\"%s\",\"sessions\":%d,"
                            "\"max_sessions\":%d,\"capacity\":%d,"
                            "\"backend\":\"%s\",\"file_jobs\":%d,"
                            "\"max_file_jobs\":%d,\"uptime_s\":%.3f}\n",
                            h->svc->stopping ? "shutting_down" : "ok",
                            demixd_scheduler_count(d->sched, DEMIXD_LANE_LIVE),
                            d->max_sessions, d->capacity, d->backend,
                            demixd_scheduler_count(d->sched, DEMIXD_LANE_FILE),
                            d->opt.file_jobs, up)
                 : 0;
    return demixd__http_respond(h, h->svc->stopping ? 503 : 200, "application/json",
                                body, n > 0 ? (size_t)n : 0);
}

/* GET /v1/health/live: the process runs its service loop. Nothing else
 * is checked: a liveness probe that fails restarts the process, which only
 * helps when the process is stuck, and a stuck lws thread answers nothing. */
static int health_live(demixd_http *h)
{
    double p50, p99, bm, up;
    uint64_t hops;
    demixd_metrics_recent(h->d->metrics, &p50, &p99, &bm, &hops, &up);
    char *body = malloc(64);
    int n = body ? snprintf(body, 64,
                            "{\"status\":\"live\",\"uptime_s\":%.3f}\n", up)
                 : 0;
    return demixd__http_respond(h, 200, "application/json", body,
                                n > 0 ? (size_t)n : 0);
}

/* GET /v1/health/ready: would a new streaming session be admitted now?
 * 503 while shutting down or while the live sessions (reservations
 * included, as admission counts them) fill max_sessions. The server only
 * listens once the capacity calibration is over, so there is no
 * "calibrating" state to report here. */
static int health_ready(demixd_http *h)
{
    demixd *d = h->d;
    int sessions = demixd_scheduler_count(d->sched, DEMIXD_LANE_LIVE);
    const char *reason = NULL, *msg = NULL;
    if (h->svc->stopping || atomic_load(&d->stop_requested)) {
        reason = "shutting_down";
        msg = "The server is shutting down: new sessions are refused.";
    } else if (sessions >= d->max_sessions) {
        reason = "at_capacity";
        msg = "Every session slot is taken: a new session would get "
              "at_capacity.";
    }
    char *body = malloc(384);
    int n = 0;
    if (body && reason)
        n = snprintf(body, 384,
                     "{\"status\":\"not_ready\",\"reason\":\"%s\","
                     "\"message\":\"%s\",\"sessions\":%d,"
                     "\"max_sessions\":%d}\n",
                     reason, msg, sessions, d->max_sessions);
    else if (body)
        n = snprintf(body, 384,
                     "{\"status\":\"ready\",\"sessions\":%d,"
                     "\"max_sessions\":%d}\n",
                     sessions, d->max_sessions);
    return demixd__http_respond(h, reason ? 503 : 200, "application/json", body,
                                n > 0 ? (size_t)n : 0);
}

static int metrics(demixd_http *h)
{
    demixd *d = h->d;
    int conns[DEMIXD_MAX_SERVICE_THREADS];
    double cpu[DEMIXD_MAX_SERVICE_THREADS];
    demixd_gauges g = {
        .thread_connections = conns,
        .thread_cpu_seconds = cpu,
        .threads = d->service_count,
        .sessions = demixd_scheduler_count(d->sched, DEMIXD_LANE_LIVE),
        .max_sessions = d->max_sessions,
        .capacity = d->capacity,
        .file_jobs = demixd_scheduler_count(d->sched, DEMIXD_LANE_FILE),
    };
    for (int k = 0; k < d->service_count; k++) {
        conns[k] = demixd_service_connections(&d->services[k]);
        cpu[k] = demixd_service_cpu_seconds(&d->services[k]);
        demixd_service_phase_totals(&d->services[k], g.phase_ns,
                                    g.phase_calls);
    }
    size_t cap = 16384, len = 0;
    for (;;) {
        char *body = malloc(cap);
        if (!body)
            return demixd__http_respond(h, 500, "text/plain", NULL, 0);
        int rc = demixd_metrics_render(d->metrics, &g, body, cap, &len);
        if (rc == DEMIX_OK)
            return demixd__http_respond(h, 200,
                                        "text/plain; version=0.0.4; "
                                        "charset=utf-8",
                                        body, len);
        free(body);
        if (rc != DEMIX_ENOSPACE || cap > (1u << 20))
            return demixd__http_respond(h, 500, "text/plain", NULL, 0);
        cap *= 4;
    }
}

static int static_file(demixd_http *h, const char *uri)
{
    demixd *d = h->d;
    char path[PATH_MAX];
    int st = demixd_static_resolve(d->web_root, uri, path, sizeof path);
    if (st == 400)
        return demixd__http_error(h, 400, "bad_path",
                                  "The path is not allowed.");
    if (st)
        return demixd__http_error(h, 404, "not_found", "No such file.");
    unsigned char hdr[1024], *p = hdr, *end = hdr + sizeof hdr;
    if (add_header(h->wsi, "cache-control:", "no-cache", &p, end))
        return -1;
    int n = lws_serve_http_file(h->wsi, path, demixd_static_mime(path),
                                (const char *)hdr, (int)(p - hdr));
    if (n < 0 || (n > 0 && lws_http_transaction_completed(h->wsi)))
        return -1;
    return 0;
}

static void http_free(demixd_http *h)
{
    demixd__fileapi_free(h);
    free(h->body);
    free(h);
}

size_t demixd_http_header_bytes(struct lws *wsi)
{
    size_t n = 0;
    for (int t = 0; t < (int)WSI_TOKEN_COUNT; t++) {
        int k = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (k > 0)
            n += (size_t)k;
    }
    return n;
}

int demixd_http_request(demixd_service *svc, struct lws *wsi, demixd_conn *c,
                        const char *uri)
{
    demixd *d = svc->d;
    if (c->http) { /* the previous request of a keep-alive connection */
        http_free(c->http);
        c->http = NULL;
    }
    demixd_http *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->d = d;
    h->svc = svc;
    h->wsi = wsi;
    snprintf(h->id, sizeof h->id, "h%d.%" PRIu64, svc->index, ++svc->serial);
    c->http = h;
    char *mu;
    int mulen;
    int method = lws_http_get_uri_and_method(wsi, &mu, &mulen);
    if (!uri)
        uri = "/";
    /* The URI as lws gives it must not hide a NUL. */
    if (mu && mulen >= 0 && (size_t)mulen != strlen(mu))
        return demixd__http_error(h, 400, "bad_path",
                                  "The path is not allowed.");
    demixd_log(DEMIXD_LOG_DEBUG, "http_request", "req=%s method=%d uri=%s",
               h->id, method, uri);
    if (demixd_conn_over_limit(wsi)) {
        h->close_after = 1;
        return demixd__http_error(h, 429, "too_many_connections",
                                  "This address has %d connections open "
                                  "already; close one and retry.",
                                  demixd_addr_limit_max(d->addr_limit));
    }
    if (demixd_http_header_bytes(wsi) > DEMIXD_MAX_HEADER_BYTES) {
        h->close_after = 1;
        return demixd__http_error(h, 431, "headers_too_large",
                                  "The request's headers are larger than %d "
                                  "bytes.",
                                  DEMIXD_MAX_HEADER_BYTES);
    }
    /* The probes answer during shutdown too: live stays 200 while the
     * process serves, ready says why it is not. */
    if (method == LWSHUMETH_GET && !strcmp(uri, "/v1/health/live"))
        return health_live(h);
    if (method == LWSHUMETH_GET && !strcmp(uri, "/v1/health/ready"))
        return health_ready(h);
    if (svc->stopping)
        return demixd__http_error(h, 503, "shutting_down",
                                  "The server is shutting down.");
    if (!strcmp(uri, "/v1/separate")) {
        if (method != LWSHUMETH_POST)
            return demixd__http_error(h, 405, "method_not_allowed",
                                      "Use POST with the audio file as the "
                                      "body.");
        return demixd__fileapi_begin(h);
    }
    if (method != LWSHUMETH_GET)
        return demixd__http_error(h, 405, "method_not_allowed",
                                  "Only GET here.");
    if (!strcmp(uri, "/v1/health"))
        return health(h);
    if (!strcmp(uri, "/metrics"))
        return metrics(h);
    if (!strcmp(uri, DEMIX_PROTO_PATH))
        return demixd__http_error(h, 426, "upgrade_required",
                                  "This is the WebSocket endpoint: connect "
                                  "with a WebSocket client.");
    return static_file(h, uri);
}

int demixd_http_body(demixd_http *h, const void *in, size_t len)
{
    return h->upload ? demixd__fileapi_body(h, in, len) : 0;
}

int demixd_http_body_done(demixd_http *h)
{
    return h->upload ? demixd__fileapi_done(h) : 0;
}

int demixd_http_writeable(demixd_http *h)
{
    if (!h->responding)
        return 0;
    struct lws *wsi = h->wsi;
    unsigned char *chunk = h->svc->http_chunk;
    const size_t chunk_bytes = sizeof h->svc->http_chunk;
    if (!h->headers_done) {
        unsigned char *start = chunk + LWS_PRE, *p = start,
                      *end = chunk + chunk_bytes - 1;
        uint64_t len = h->zip ? h->zip->total_bytes : h->body_len;
        if (lws_add_http_common_headers(wsi, (unsigned)h->status, h->ctype,
                                        (lws_filepos_t)len, &p, end) ||
            add_header(wsi, "cache-control:", "no-store", &p, end) ||
            (h->disposition[0] && add_header(wsi, "content-disposition:",
                                             h->disposition, &p, end)) ||
            (h->www_authenticate && add_header(wsi, "www-authenticate:",
                                               h->www_authenticate, &p, end)) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        h->headers_done = 1;
        if (len == 0)
            goto complete;
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t n;
    int final;
    if (h->zip) {
        int st = DEMIX_OK;
        n = demixd_zip_read(h->zip, chunk + LWS_PRE, HTTP_CHUNK_BYTES, &st);
        if (st || (n == 0 && h->zip_sent < h->zip->total_bytes)) {
            demixd_log(DEMIXD_LOG_ERROR, "zip_read", "req=%s", h->id);
            return -1;
        }
        h->zip_sent += n;
        final = h->zip_sent >= h->zip->total_bytes;
    } else {
        n = h->body_len - h->body_off;
        if (n > HTTP_CHUNK_BYTES)
            n = HTTP_CHUNK_BYTES;
        memcpy(chunk + LWS_PRE, h->body + h->body_off, n);
        h->body_off += n;
        final = h->body_off >= h->body_len;
    }
    if (lws_write(wsi, chunk + LWS_PRE, n,
                  final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
complete:
    h->responding = 0;
    /* The request is over: give back its job, file slot and buffers now
     * (a keep-alive connection may stay open long after). */
    demixd__fileapi_free(h);
    free(h->body);
    h->body = NULL;
    if (h->close_after)
        return -1;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

void demixd_http_timer(demixd_http *h)
{
    demixd__fileapi_timer(h);
}

void demixd_http_closed(demixd_http *h)
{
    http_free(h);
}

void demixd_http_wake(demixd_service *svc)
{
    demixd_http *h = svc->waiting;
    while (h) {
        demixd_http *next = h->wnext;
        if (demixd_job_get_state(h->job) != DEMIXD_JOB_RUNNING)
            demixd__fileapi_finished(h);
        h = next;
    }
}

void demixd_http_shutdown(demixd_service *svc)
{
    demixd_http *h = svc->waiting;
    while (h) {
        demixd_http *next = h->wnext;
        demixd__fileapi_free(h); /* cancels the job, unlinks */
        demixd__http_error(h, 503, "shutting_down",
                           "The server is shutting down.");
        h = next;
    }
}
