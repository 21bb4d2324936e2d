/*
 * log.c - the structured stderr log of log.h.
 *
 * Thread context: any thread. The level is set once before threads start
 * and read without a lock afterwards; `log_lock` serialises the writes.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LINE_BYTES 1024

static demixd_log_level log_level = DEMIXD_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int demixd_log_parse_level(const char *text, demixd_log_level *out)
{
    if (!text || !out)
        return DEMIX_EARG;
    for (int i = 0; i < 4; i++)
        if (!strcmp(text, level_names[i])) {
            *out = (demixd_log_level)i;
            return DEMIX_OK;
        }
    return DEMIX_EARG;
}

void demixd_log_set_level(demixd_log_level level)
{
    log_level = level;
}

int demixd_log_enabled(demixd_log_level level)
{
    return level <= log_level;
}

void demixd_log(demixd_log_level level, const char *event, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[LINE_BYTES];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s "
                     "event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                     level_names[level], event ? event : "-");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (fmt && fmt[0] && len + 2 < sizeof line) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + len, sizeof line - len, fmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof line - len ? (size_t)m
                                                 : sizeof line - len - 1;
    }
    if (len + 1 >= sizeof line)
        len = sizeof line - 2;
    line[len++] = '\n';
    pthread_mutex_lock(&log_lock);
    fwrite(line, 1, len, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

const char *demixd_log_quote(const char *text, char *buf, size_t cap)
{
    if (!buf || !cap)
        return "";
    size_t o = 0;
    for (const char *p = text ? text : ""; *p && o + 1 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        buf[o++] = c == '"' || c == '\\'   ? '\''
                   : c < 0x20 || c == 0x7f ? ' '
                                           : (char)c;
    }
    buf[o] = '\0';
    return buf;
}
