/*
 * static_files.h - mapping a request path to a file under the web root,
 * safely, and its MIME type.
 *
 * Rules: the path must start with '/', be at most 1024 bytes, and contain
 * no "..", backslash, '%' (lws has already decoded %xx escapes: a '%' left
 * over means a double encoding such as %252e), control character or NUL,
 * and no segment starting with '.' (no dot files). "/" and a path ending
 * in '/' mean its index.html. The joined path is resolved with realpath()
 * and must lie inside the resolved root; it must be a regular file
 * (directories are never listed: a directory without index.html is 404).
 *
 * Threads: reentrant.
 */
#ifndef DEMIXD_STATIC_FILES_H
#define DEMIXD_STATIC_FILES_H

#include <stddef.h>

/* root: the realpath of the web root. 0 and the file's path in out, or an
 * HTTP status: 400 (a path that breaks the rules), 404 (no such file). */
int demixd_static_resolve(const char *root, const char *uri, char *out,
                          size_t cap);

/* MIME type by extension: html, js/mjs (text/javascript), css, json,
 * wasm, png, svg, ico, opus/ogg, wav, txt, map, webmanifest;
 * application/octet-stream otherwise. */
const char *demixd_static_mime(const char *path);

#endif /* DEMIXD_STATIC_FILES_H */
