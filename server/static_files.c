/*
 * static_files.c - safe path resolution and MIME types for web/
 * (static_files.h).
 *
 * Thread context: any (reentrant).
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include "static_files.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_URI 1024

static int path_ok(const char *uri)
{
    size_t n = strlen(uri);
    if (n == 0 || n > MAX_URI || uri[0] != '/')
        return 0;
    if (strstr(uri, ".."))
        return 0;
    for (const char *p = uri; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '\\' || c == '%')
            return 0;
        if (c == '/' && p[1] == '.')
            return 0; /* a dot segment or dot file */
    }
    return 1;
}

int demixd_static_resolve(const char *root, const char *uri, char *out,
                          size_t cap)
{
    if (!root || !root[0])
        return 404;
    if (!uri || !path_ok(uri))
        return 400;
    char joined[PATH_MAX];
    size_t n = strlen(uri);
    int w = snprintf(joined, sizeof joined, "%s%s%s", root, uri,
                     uri[n - 1] == '/' ? "index.html" : "");
    if (w < 0 || (size_t)w >= sizeof joined)
        return 400;
    char real[PATH_MAX];
    if (!realpath(joined, real))
        return 404;
    struct stat st;
    if (stat(real, &st))
        return 404;
    if (S_ISDIR(st.st_mode)) {
        /* "/docs" -> "/docs/index.html", never a listing */
        char idx[PATH_MAX];
        if (snprintf(idx, sizeof idx, "%s/index.html", real) >=
                (int)sizeof idx ||
            !realpath(idx, real) || stat(real, &st))
            return 404;
    }
    if (!S_ISREG(st.st_mode))
        return 404;
    size_t rl = strlen(root);
    if (strncmp(real, root, rl) || real[rl] != '/')
        return 404; /* a symlink out of the root */
    if (strlen(real) >= cap)
        return 400;
    memcpy(out, real, strlen(real) + 1);
    return 0;
}

const char *demixd_static_mime(const char *path)
{
    static const struct {
        const char *ext, *mime;
    } table[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"webmanifest", "application/manifest+json"},
        {"wasm", "application/wasm"},
        {"png", "image/png"},
        {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},
        {"opus", "audio/ogg; codecs=opus"},
        {"ogg", "audio/ogg"},
        {"wav", "audio/wav"},
        {"txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
            if (!strcasecmp(dot + 1, table[i].ext))
                return table[i].mime;
    return "application/octet-stream";
}
