/*
 * demix_error.h - the status codes every demixd library returns.
 *
 * One X-macro list makes the enum, demix_strerror() and demix_errname(), so
 * the three can never disagree (libuv's UV_ERRNO_MAP). 0 is success; errors
 * are negative. Detail text (which tensor, which offset, what to do) travels
 * separately, in a caller buffer or an object's last-error string.
 *
 * Thread safety: everything here is pure and reentrant.
 */
#ifndef DEMIX_ERROR_H
#define DEMIX_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DEMIX_ERRNO_MAP(X)                                                     \
    X(ARG, -1, "invalid argument")                                             \
    X(NOMEM, -2, "out of memory")                                              \
    X(NOSPACE, -3, "buffer or capacity too small")                            \
    X(IO, -4, "input/output error")                                            \
    X(FORMAT, -5, "malformed or unsupported data")                             \
    X(DEVICE, -6, "accelerator error")                                         \
    X(PROTOCOL, -7, "protocol violation")                                      \
    X(BUSY, -8, "resource busy or at capacity")

enum demix_status {
    DEMIX_OK = 0,
#define DEMIX__ERR_ENUM(name, value, text) DEMIX_E##name = (value),
    DEMIX_ERRNO_MAP(DEMIX__ERR_ENUM)
#undef DEMIX__ERR_ENUM
};

/* Short English sentence for a status ("invalid argument"); never NULL. */
const char *demix_strerror(int status);

/* Symbolic name of a status ("DEMIX_EFORMAT"); never NULL. */
const char *demix_errname(int status);

#if defined(__GNUC__) || defined(__clang__)
#define DEMIX_WARN_UNUSED __attribute__((warn_unused_result))
#define DEMIX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DEMIX_WARN_UNUSED
#define DEMIX_PRINTF(fmt, args)
#endif

/* Detail text for a caller buffer, as snprintf into err (cap bytes, always
 * terminated, cut when longer); nothing when err is NULL or cap is 0. The
 * one helper behind every library's "char *err, size_t err_cap" arguments
 * (internal to the libraries: drivers format their own messages). */
void demix__set_err(char *err, size_t cap, const char *fmt, ...)
    DEMIX_PRINTF(3, 4);

/* Always-on assertion for programmer errors (never for file or network
 * input, which must be reported as a status). Prints file:line and aborts. */
void demix__assert_fail(const char *expr, const char *file, int line);
#define DEMIX_ASSERT(expr)                                                     \
    ((expr) ? (void)0 : demix__assert_fail(#expr, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif

#endif /* DEMIX_ERROR_H */
