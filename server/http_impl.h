/*
 * http_impl.h - one HTTP request's state, shared by http.c (routing,
 * static files, health, metrics, writing responses) and fileapi.c
 * (POST /v1/separate). Not for other files.
 *
 * Every field belongs to the request's service thread. A request's response is
 * either served by lws_serve_http_file (static files) or written by
 * demixd_http_writeable in chunks: headers on the first SERVER_WRITEABLE,
 * then the body from `body` (a buffer) or `zip` (a finished file job).
 */
#ifndef DEMIXD_HTTP_IMPL_H
#define DEMIXD_HTTP_IMPL_H

#include <stdarg.h>

#include "files.h"
#include "server.h"

/* one chunk of a response body: demixd_service.http_chunk */
#define HTTP_CHUNK_BYTES (32 * 1024)

struct demixd_http {
    demixd *d;
    demixd_service *svc; /* the thread the connection lives on */
    struct lws *wsi;
    demixd_http *wprev, *wnext; /* svc->waiting, while `waiting` */
    int waiting;
    char id[32];

    /* the response */
    int responding; /* headers and body to write */
    int headers_done;
    int status;
    const char *ctype;
    char disposition[96];
    /* a 401's WWW-Authenticate challenge (a static string), or NULL */
    const char *www_authenticate;
    int close_after; /* close the connection after the response */
    char *body;      /* owned; or NULL with zip */
    size_t body_len, body_off;
    demixd_zip *zip; /* the job's, while job is held */
    uint64_t zip_sent;

    /* POST /v1/separate */
    int upload;    /* receiving the body */
    int rejecting; /* a response is set: discard the body */
    uint8_t *buf;
    size_t len, cap, limit;
    size_t window_bytes; /* received in the current rate window */
    int reserved; /* holds a FILE reservation of the scheduler */
    demixd_job_request rq;
    demixd_job *job;
};

/* Start a response with a malloc'd body (taken, also on failure). */
int demixd__http_respond(demixd_http *h, int status, const char *ctype,
                         char *body, size_t len);
/* A JSON error {"error":{"code":...,"message":...}}. */
int demixd__http_error(demixd_http *h, int status, const char *code,
                       const char *fmt, ...) DEMIX_PRINTF(4, 5);

/* fileapi.c */
int demixd__fileapi_begin(demixd_http *h);
int demixd__fileapi_body(demixd_http *h, const void *in, size_t len);
int demixd__fileapi_done(demixd_http *h);
/* The job ended: start the ZIP or error response. */
void demixd__fileapi_finished(demixd_http *h);
/* The upload's rate window is over (LWS_CALLBACK_TIMER). */
void demixd__fileapi_timer(demixd_http *h);
void demixd__fileapi_free(demixd_http *h);

#endif /* DEMIXD_HTTP_IMPL_H */
