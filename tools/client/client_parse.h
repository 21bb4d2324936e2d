/*
 * client_parse.h - the protocol's server-message parser for clients on
 * several threads (the client-session core, client_session.h, and the
 * stats connections of `demix loadgen`). demix_proto_parse_server goes
 * through cJSON, whose 1.7 parser resets a process-wide error pointer on
 * every call (protocol.h, "Threads"), so the callers take one lock
 * around it.
 * Only text messages pass here (ready, error, summary, stats: a few per
 * session), never audio, so the lock is off the hot path.
 *
 * Thread context: any thread.
 */
#ifndef DEMIX_CLIENT_PARSE_H
#define DEMIX_CLIENT_PARSE_H

#include <stddef.h>

#include "protocol.h"

/* demix_proto_parse_server under the lock: same arguments and returns. */
DEMIX_WARN_UNUSED int client_parse_server(const char *text, size_t len,
                                           demix_proto_server_msg *out,
                                           demix_proto_error *err);

#endif /* DEMIX_CLIENT_PARSE_H */
