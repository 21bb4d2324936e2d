/*
 * fileapi.c - POST /v1/separate?stems=a,b&format=wav|flac|opus on the lws
 * thread: checks the query and the size, reserves a file slot, receives
 * the body into memory (bounded by --max-file-mb), hands it to a file
 * worker (files.h) and, when the job ends, answers with the ZIP (200,
 * application/zip, Content-Length known) or a JSON error.
 *
 *   401 unauthorized  tokens are configured (--tokens) and the request has
 *                     no `Authorization: Bearer TOKEN` or a wrong token;
 *                     checked first, before the body is read, with a
 *                     WWW-Authenticate challenge; the connection is closed
 *                     after the answer (the body is not taken)
 *   400 bad_request   unknown or repeated query parameter, empty stems list,
 *                     repeated stem, unknown format
 *   400 unknown_stem  a stem the model does not have
 *   400 bad_audio     empty body, or not audio the server reads (worker)
 *   400 too_long      over --max-file-seconds (worker)
 *   408 timeout       the body came slower than --min-upload-rate bytes
 *                     per second over one of its UPLOAD_WINDOW_S windows
 *                     (a dribbling or stalled client would hold a file
 *                     slot for ever); the connection is closed
 *   411 length_required  no Content-Length (lws 4.1 does not decode a
 *                     chunked request body); the connection is closed
 *   413 too_large     Content-Length over --max-file-mb; the connection is
 *                     closed after the answer
 *   503 busy          --file-jobs jobs already running
 *   503 shutting_down
 *   500 internal
 *
 * The response streams from the job's temporary files in HTTP_WRITEABLE,
 * 32 KiB at a time (http.c); nothing blocks the lws thread but those reads.
 *
 * Thread context: the request's service thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_impl.h"
#include "log.h"

#define ARG_BYTES 512
#define UPLOAD_WINDOW_S 5 /* the upload rate is checked over each window */
/* "Bearer " + the longest token + some blanks: anything longer is wrong */
#define AUTH_HEADER_BYTES (DEMIX_PROTO_TOKEN_MAX_BYTES + 64)

static void unlink_waiting(demixd_http *h)
{
    if (!h->waiting)
        return;
    if (h->wprev)
        h->wprev->wnext = h->wnext;
    else
        h->svc->waiting = h->wnext;
    if (h->wnext)
        h->wnext->wprev = h->wprev;
    h->wprev = h->wnext = NULL;
    h->waiting = 0;
}

void demixd__fileapi_free(demixd_http *h)
{
    unlink_waiting(h);
    demixd_job_release(h->job); /* cancels it if still running */
    h->job = NULL;
    h->zip = NULL;
    if (h->reserved) {
        demixd_scheduler_unreserve(h->d->sched, DEMIXD_LANE_FILE);
        h->reserved = 0;
    }
    free(h->buf);
    h->buf = NULL;
    h->upload = 0;
}

/* Refuse now; the body that may follow is discarded (413, 411, 401: the
 * connection is closed after the answer instead). The file slot is given
 * back at once. */
static int reject(demixd_http *h, int status, const char *code, const char *msg)
{
    h->rejecting = 1;
    h->upload = 0;
    if (h->reserved) {
        demixd_scheduler_unreserve(h->d->sched, DEMIXD_LANE_FILE);
        h->reserved = 0;
    }
    free(h->buf);
    h->buf = NULL;
    if (status == 413 || status == 411 || status == 401 || status == 408)
        h->close_after = 1;
    return demixd__http_error(h, status, code, "%s", msg);
}

static int parse_stems(demixd_http *h, char *list)
{
    demixd *d = h->d;
    h->rq.stem_count = 0;
    char *save = NULL;
    if (!list[0]) {
        reject(h, 400, "bad_request", "The stems list is empty.");
        return -1;
    }
    for (char *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int idx = -1;
        for (int t = 0; t < d->num_sources; t++)
            if (!strcmp(tok, d->names[t]))
                idx = t;
        if (idx < 0) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "Unknown stem '%.40s'; this model has "
                     "%s%s%s%s%s%s%s.",
                     tok, d->names[0], d->num_sources > 1 ? ", " : "",
                     d->num_sources > 1 ? d->names[1] : "",
                     d->num_sources > 2 ? ", " : "",
                     d->num_sources > 2 ? d->names[2] : "",
                     d->num_sources > 3 ? ", " : "",
                     d->num_sources > 3 ? d->names[3] : "");
            reject(h, 400, "unknown_stem", msg);
            return -1;
        }
        for (int i = 0; i < h->rq.stem_count; i++)
            if (h->rq.stems[i] == idx) {
                reject(h, 400, "bad_request", "A stem is named twice.");
                return -1;
            }
        h->rq.stems[h->rq.stem_count++] = idx;
    }
    if (!h->rq.stem_count) {
        reject(h, 400, "bad_request", "The stems list is empty.");
        return -1;
    }
    return 0;
}

/* The token of `Authorization: Bearer TOKEN` (RFC 6750 2.1; the scheme is
 * case-insensitive) checked against the server's tokens. 0 when it passes
 * (always without --tokens); else the 401 answer is set and -1 returned. */
static int check_bearer(demixd_http *h)
{
    demixd *d = h->d;
    if (!d->tokens)
        return 0;
    char hdr[AUTH_HEADER_BYTES];
    demixd_auth a = DEMIXD_AUTH_MISSING;
    int total = lws_hdr_total_length(h->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (total >= (int)sizeof hdr) {
        a = DEMIXD_AUTH_WRONG; /* longer than any token */
    } else if (total > 0 &&
               lws_hdr_copy(h->wsi, hdr, sizeof hdr,
                            WSI_TOKEN_HTTP_AUTHORIZATION) >= 0 &&
               !strncasecmp(hdr, "Bearer ", 7)) {
        const char *tok = hdr + 7;
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
            n--;
        a = demixd_tokens_check(d->tokens, tok, n);
    }
    if (a == DEMIXD_AUTH_OK)
        return 0;
    demixd_metrics_auth_refused(d->metrics, DEMIXD_AUTH_API_FILE);
    char peer[64] = "";
    lws_get_peer_simple(h->wsi, peer, sizeof peer);
    demixd_log(DEMIXD_LOG_INFO, "auth_refused",
               "req=%s api=file reason=%s peer=%s", h->id,
               a == DEMIXD_AUTH_MISSING ? "missing" : "wrong", peer);
    h->www_authenticate = a == DEMIXD_AUTH_MISSING ? "Bearer realm=\"demixd\""
                                                   : "Bearer realm=\"demixd\", "
                                                     "error=\"invalid_token\"";
    reject(h, 401, "unauthorized",
           a == DEMIXD_AUTH_MISSING
               ? "This server requires a token: send Authorization: Bearer "
                 "TOKEN."
               : "The token is not one this server accepts.");
    return -1;
}

int demixd__fileapi_begin(demixd_http *h)
{
    demixd *d = h->d;
    struct lws *wsi = h->wsi;
    if (check_bearer(h))
        return 0;
    int have_stems = 0, have_format = 0;
    h->rq.format = DEMIXD_FORMAT_WAV;
    char arg[ARG_BYTES];
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, arg, sizeof arg,
                                      WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        if (!strncmp(arg, "stems=", 6) && !have_stems) {
            have_stems = 1;
            if (parse_stems(h, arg + 6))
                return 0;
        } else if (!strncmp(arg, "format=", 7) && !have_format) {
            have_format = 1;
            const char *f = arg + 7;
            if (!strcmp(f, "wav"))
                h->rq.format = DEMIXD_FORMAT_WAV;
            else if (!strcmp(f, "flac"))
                h->rq.format = DEMIXD_FORMAT_FLAC;
            else if (!strcmp(f, "opus"))
                h->rq.format = DEMIXD_FORMAT_OPUS;
            else
                return reject(h, 400, "bad_request",
                              "Unknown format; use wav, flac or opus.");
        } else {
            char msg[128];
            snprintf(msg, sizeof msg,
                     "Unknown or repeated query parameter '%.40s'.", arg);
            return reject(h, 400, "bad_request", msg);
        }
    }
    if (!have_stems) {
        h->rq.stem_count = d->num_sources;
        for (int t = 0; t < d->num_sources; t++)
            h->rq.stems[t] = t;
    }
    h->limit = (size_t)d->opt.max_file_bytes;
    long long content_len = -1;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        char cl[32];
        lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        char *end;
        errno = 0;
        content_len = strtoll(cl, &end, 10);
        if (errno || end == cl || *end || content_len < 0)
            return reject(h, 400, "bad_request", "Bad Content-Length.");
    }
    if (content_len < 0)
        /* lws 4.1 does not decode a chunked request body */
        return reject(h, 411, "length_required",
                      "Send the file with a Content-Length (no chunked "
                      "upload).");
    if (content_len > (long long)h->limit) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "The file is larger than the limit of %ld "
                 "MiB.",
                 d->opt.max_file_bytes >> 20);
        return reject(h, 413, "too_large", msg);
    }
    if (demixd_scheduler_reserve(d->sched, DEMIXD_LANE_FILE)) {
        h->rejecting = 1;
        return demixd__http_error(h, 503, "busy",
                                  "All %d file jobs are taken; try again "
                                  "later.",
                                  d->opt.file_jobs);
    }
    h->reserved = 1;
    if (content_len == 0)
        return reject(h, 400, "bad_audio",
                      "The body is empty: send the "
                      "audio file as the body.");
    h->cap = (size_t)content_len;
    h->buf = malloc(h->cap);
    if (!h->buf)
        return reject(h, 500, "internal", "Out of memory.");
    h->upload = 1;
    snprintf(h->rq.id, sizeof h->rq.id, "%s", h->id);
    h->window_bytes = 0;
    if (d->opt.min_upload_rate > 0)
        lws_set_timer_usecs(wsi, (lws_usec_t)UPLOAD_WINDOW_S * 1000000);
    return 0;
}

void demixd__fileapi_timer(demixd_http *h)
{
    if (!h->upload || h->rejecting || !h->buf)
        return;
    const long rate = h->d->opt.min_upload_rate;
    if ((long long)h->window_bytes >= (long long)rate * UPLOAD_WINDOW_S) {
        h->window_bytes = 0;
        lws_set_timer_usecs(h->wsi, (lws_usec_t)UPLOAD_WINDOW_S * 1000000);
        return;
    }
    demixd_log(DEMIXD_LOG_INFO, "upload_too_slow",
               "req=%s bytes=%zu of=%zu window_bytes=%zu window_s=%d", h->id,
               h->len, h->cap, h->window_bytes, UPLOAD_WINDOW_S);
    char msg[160];
    snprintf(msg, sizeof msg,
             "The upload is slower than %ld bytes per second; send the file "
             "faster.",
             rate);
    reject(h, 408, "timeout", msg);
}

int demixd__fileapi_body(demixd_http *h, const void *in, size_t len)
{
    if (h->rejecting || !h->buf)
        return 0;
    if (h->len + len > h->limit) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "The file is larger than the limit of %ld "
                 "MiB.",
                 h->d->opt.max_file_bytes >> 20);
        return reject(h, 413, "too_large", msg);
    }
    if (h->len + len > h->cap) {
        size_t cap = h->cap;
        while (cap < h->len + len)
            cap *= 2;
        if (cap > h->limit)
            cap = h->limit;
        uint8_t *b = realloc(h->buf, cap);
        if (!b)
            return reject(h, 500, "internal", "Out of memory.");
        h->buf = b;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, in, len);
    h->len += len;
    h->window_bytes += len;
    return 0;
}

int demixd__fileapi_done(demixd_http *h)
{
    if (h->rejecting || !h->buf)
        return 0;
    h->upload = 0;
    lws_set_timer_usecs(h->wsi, LWS_SET_TIMER_USEC_CANCEL);
    if (h->len == 0)
        return reject(h, 400, "bad_audio",
                      "The body is empty: send the "
                      "audio file as the body.");
    h->rq.body = h->buf;
    h->rq.body_bytes = h->len;
    if (demixd_job_submit(h->d->files, &h->rq, &h->job))
        return reject(h, 503, "shutting_down", "The server is stopping.");
    h->buf = NULL; /* the job has the body and the reservation */
    h->reserved = 0;
    h->waiting = 1;
    h->wprev = NULL;
    h->wnext = h->svc->waiting;
    if (h->svc->waiting)
        h->svc->waiting->wprev = h;
    h->svc->waiting = h;
    lws_set_timeout(h->wsi, NO_PENDING_TIMEOUT, 0);
    demixd_log(DEMIXD_LOG_INFO, "file_job_start",
               "job=%s bytes=%zu stems=%d format=%s", h->id, h->len,
               h->rq.stem_count, demixd_format_ext(h->rq.format));
    return 0;
}

void demixd__fileapi_finished(demixd_http *h)
{
    unlink_waiting(h);
    if (demixd_job_get_state(h->job) == DEMIXD_JOB_DONE) {
        h->zip = demixd_job_zip(h->job);
        h->zip_sent = 0;
        snprintf(h->disposition, sizeof h->disposition,
                 "attachment; filename=\"stems.zip\"");
        demixd__http_respond(h, 200, "application/zip", NULL, 0);
        return;
    }
    int status;
    const char *code, *message;
    demixd_job_failure(h->job, &status, &code, &message);
    demixd__http_error(h, status, code, "%s", message);
}
