/*
 * stream_url.c - see stream_url.h.
 */
#include "stream_url.h"

#include <stdio.h>
#include <string.h>

#include "protocol.h"

/* The path of a ws:// or wss:// URL: from the first '/' after the host
 * ("" when there is none); NULL without "://". */
static const char *url_path(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return NULL;
    p += 3;
    if (*p == '[') { /* an IPv6 literal holds ':' but no '/' */
        const char *close = strchr(p, ']');
        p = close ? close : p;
    }
    return p + strcspn(p, "/?#");
}

int stream_url_complete(const char *url, char *out, size_t cap)
{
    const char *path = url_path(url);
    int append = path && (*path == '\0' || *path == '?' || *path == '#' ||
                          ((path[0] == '/') &&
                           (path[1] == '\0' || path[1] == '?' ||
                            path[1] == '#')));
    if (!append) {
        int n = snprintf(out, cap, "%s", url);
        return n >= 0 && (size_t)n < cap ? 0 : -1;
    }
    /* host part, the protocol's path, then any query or fragment */
    size_t host_len = (size_t)(path - url);
    const char *rest = path[0] == '/' ? path + 1 : path;
    int n = snprintf(out, cap, "%.*s%s%s", (int)host_len, url,
                     DEMIX_PROTO_PATH, rest);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(out, cap, "%s", url);
        return -1;
    }
    return 1;
}

const char *stream_url_hint(const char *url, const char *why)
{
    const char *path = url_path(url);
    if (!path || !why || !strstr(why, "not 101"))
        return "";
    size_t len = strcspn(path, "?#");
    if (len == strlen(DEMIX_PROTO_PATH) &&
        strncmp(path, DEMIX_PROTO_PATH, len) == 0)
        return "";
    return " (the server refused the WebSocket upgrade on this path; "
           "demixd's stream endpoint is " DEMIX_PROTO_PATH ")";
}
