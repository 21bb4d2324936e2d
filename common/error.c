/*
 * error.c - status code names and messages, generated from DEMIX_ERRNO_MAP.
 */
#include "demix_error.h"

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

void demix__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "demix: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
