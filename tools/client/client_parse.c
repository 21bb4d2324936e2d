/*
 * client_parse.c - demix_proto_parse_server behind one process-wide lock
 * (see client_parse.h).
 *
 * Thread context: any thread; parse_lock serialises the calls.
 */
#include "client_parse.h"

#include <pthread.h>

static pthread_mutex_t parse_lock = PTHREAD_MUTEX_INITIALIZER;

int client_parse_server(const char *text, size_t len,
                         demix_proto_server_msg *out, demix_proto_error *err)
{
    pthread_mutex_lock(&parse_lock);
    int rc = demix_proto_parse_server(text, len, out, err);
    pthread_mutex_unlock(&parse_lock);
    return rc;
}
