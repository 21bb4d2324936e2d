/*
 * out_paths.c - see out_paths.h.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include "out_paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "demix_error.h"

#define PATH_BYTES 4096

/* mkdir -p. On failure err names the folder that could not be made. */
int out_paths_make_dirs(const char *path, char *err, size_t err_cap)
{
    char buf[PATH_BYTES];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, err_cap, "%s: path too long", path);
        return DEMIX_EARG;
    }
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            snprintf(err, err_cap, "cannot create folder %s: %s", buf,
                     strerror(errno));
            return DEMIX_EIO;
        }
        if (c == '\0') {
            struct stat st;
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                snprintf(err, err_cap, "cannot create folder %s: %s", buf,
                         stat(buf, &st) != 0 ? strerror(errno)
                                             : "a file of that name exists");
                return DEMIX_EIO;
            }
            return DEMIX_OK;
        }
        *p = '/';
    }
}

/* "dir/song.take2.flac" -> "song.take2"; a leading dot is kept. */
void out_paths_base_name(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    snprintf(out, cap, "%s", name);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
    if (!out[0])
        snprintf(out, cap, "output");
}


int out_paths_parent_name(const char *path, char *out, size_t cap, char *err,
                          size_t err_cap)
{
    char full[PATH_MAX];
    if (!realpath(path, full)) {
        snprintf(err, err_cap, "%s: %s", path, strerror(errno));
        return DEMIX_EIO;
    }
    char *slash = strrchr(full, '/');
    if (slash)
        *slash = '\0'; /* the folder */
    slash = strrchr(full, '/');
    const char *name = slash ? slash + 1 : full;
    snprintf(out, cap, "%s", name[0] ? name : "output");
    return DEMIX_OK;
}
