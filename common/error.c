/*
 * error.c - status code names and messages, generated from DEMIX_ERRNO_MAP;
 * the detail-text helper demix__set_err() and the always-on assertion.
 *
 * Thread context: any thread; everything here is reentrant (the assertion
 * writes to stderr and aborts).
 */
#include "demix_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *demix_strerror(int status)
{
    switch (status) {
    case DEMIX_OK:
        return "success";
#define DEMIX__ERR_TEXT(name, value, text)                                     \
    case DEMIX_E##name:                                                        \
        return text;
        DEMIX_ERRNO_MAP(DEMIX__ERR_TEXT)
#undef DEMIX__ERR_TEXT
    default:
        return "unknown error";
    }
}

const char *demix_errname(int status)
{
    switch (status) {
    case DEMIX_OK:
        return "DEMIX_OK";
#define DEMIX__ERR_NAME(name, value, text)                                     \
    case DEMIX_E##name:                                                        \
        return "DEMIX_E" #name;
        DEMIX_ERRNO_MAP(DEMIX__ERR_NAME)
#undef DEMIX__ERR_NAME
    default:
        return "DEMIX_E_UNKNOWN";
    }
}

void demix__set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

void demix__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "demix: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
