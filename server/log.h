/*
 * log.h - demixd's structured log: one line per event on stderr, as
 * key=value pairs that both people and log shippers read:
 *
 *   ts=2024-05-01T12:00:00.123Z level=info event=session_start
 *   session=5f2c9a1e7b3d4e60 rate=48000 channels=2 in=opus out=pcm_s16
 *
 * Usage sketch:
 *
 *     demixd_log_set_level(DEMIXD_LOG_INFO);
 *     demixd_log(DEMIXD_LOG_INFO, "listening", "host=%s port=%d", h, p);
 *
 * The caller writes the fields after ts, level and event as a printf
 * format; values with spaces go in double quotes (msg="..."), which
 * demixd_log_quote() prepares (it drops quotes, backslashes and control
 * characters so a line stays one line and parseable).
 *
 * Threads: any thread. Each line is formatted into a local buffer and
 * written with one fwrite on an unbuffered stream under a mutex, so lines
 * from different threads never interleave.
 */
#ifndef DEMIXD_LOG_H
#define DEMIXD_LOG_H

#include <stddef.h>

#include "demix_error.h"

typedef enum demixd_log_level {
    DEMIXD_LOG_ERROR = 0,
    DEMIXD_LOG_WARN = 1,
    DEMIXD_LOG_INFO = 2,
    DEMIXD_LOG_DEBUG = 3,
} demixd_log_level;

/* "error", "warn", "info", "debug"; DEMIX_EARG for anything else. */
DEMIX_WARN_UNUSED int demixd_log_parse_level(const char *text,
                                             demixd_log_level *out);

/* Lines above this level are dropped (default INFO). Call before threads
 * start. */
void demixd_log_set_level(demixd_log_level level);
int demixd_log_enabled(demixd_log_level level);

/* One line: ts=... level=... event=EVENT then the formatted fields (may be
 * NULL). Lines are cut at 1 KiB. */
void demixd_log(demixd_log_level level, const char *event, const char *fmt, ...)
    DEMIX_PRINTF(3, 4);

/* Copy text into buf (cap bytes, NUL-terminated) so that it can stand
 * between double quotes: '"' and '\' become '\'', control characters a
 * space. Returns buf. */
const char *demixd_log_quote(const char *text, char *buf, size_t cap);

#endif /* DEMIXD_LOG_H */
