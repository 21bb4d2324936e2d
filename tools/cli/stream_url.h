/*
 * stream_url.h - the stream endpoint's URL as a new user types it.
 * `demix stream --url ws://host:port` (no path) would reach demixd's
 * static page, whose upgrade answer is 404, and lws reports only "ws
 * upgrade response not 101". A URL with no path, or just "/", gets the
 * protocol's path (DEMIX_PROTO_PATH, /v1/stream) appended, and the
 * command says so on stderr; any other path is kept as given (a proxy may
 * serve demixd under a path of its own), and a failed upgrade then gets a
 * hint naming the path (stream_url_hint).
 *
 * Thread context: any thread; no shared state.
 */
#ifndef DEMIX_STREAM_URL_H
#define DEMIX_STREAM_URL_H

#include <stddef.h>

/* Copy url into out, with DEMIX_PROTO_PATH appended when url has no path
 * (or only "/" before a query). Returns 1 when it appended, 0 when out is
 * url unchanged, -1 when out is too small (out is then url, truncated).
 * A URL without "://" is copied as it is (the URL parser reports it). */
int stream_url_complete(const char *url, char *out, size_t cap);

/* A sentence for a failed connection (why: the transport's reason) when
 * the URL's path is not DEMIX_PROTO_PATH and the server answered the
 * upgrade with something other than 101; "" otherwise. */
const char *stream_url_hint(const char *url, const char *why);

#endif /* DEMIX_STREAM_URL_H */
