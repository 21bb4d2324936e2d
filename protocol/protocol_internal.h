/*
 * protocol_internal.h - helpers shared by the files of protocol/ (not part
 * of the public API): filling a demix_proto_error and the small checks the
 * JSON and binary halves both need.
 *
 * Threads: pure functions, reentrant.
 */
#ifndef DEMIX_PROTOCOL_INTERNAL_H
#define DEMIX_PROTOCOL_INTERNAL_H

#include <stddef.h>

#include "protocol.h"

/* Fill err (when not NULL) with code, field (NULL for none) and a printf
 * sentence; returns DEMIX_EPROTOCOL. */
int demix__proto_fail(demix_proto_error *err, demix_proto_code code,
                      const char *field, const char *fmt, ...)
    DEMIX_PRINTF(4, 5);

/* Fill err with code INTERNAL and "invalid argument: WHAT"; returns
 * DEMIX_EARG. */
int demix__proto_arg(demix_proto_error *err, const char *what);

/* Clear err (when not NULL) to code NONE and empty strings. */
void demix__proto_clear(demix_proto_error *err);

/* A name as the protocol allows it: NUL within DEMIX_PROTO_NAME_BYTES and
 * not empty. */
int demix__proto_name_ok(const char *name);

/* NUL within cap bytes. */
int demix__proto_terminated(const char *s, size_t cap);

/* Whether rate is one of Opus's rates (8, 12, 16, 24, 48 kHz). */
int demix__proto_opus_rate_ok(int rate_hz);

/* Whether frame_ms is one of 5, 10, 20, 40, 60. */
int demix__proto_opus_frame_ms_ok(int frame_ms);

#endif /* DEMIX_PROTOCOL_INTERNAL_H */
