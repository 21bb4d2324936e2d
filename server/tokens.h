/*
 * tokens.h - access tokens of demixd: the set loaded from --tokens FILE
 * (or $DEMIXD_TOKENS_FILE) and the check of a client's token against it,
 * for the WebSocket `start` (its `token` member) and the file API
 * (`Authorization: Bearer TOKEN`).
 *
 * Usage sketch:
 *
 *     demixd_tokens *t;
 *     int line;
 *     char err[256];
 *     if (demixd_tokens_load(path, &t, &line, err, sizeof err)) ... exit 1;
 *     switch (demixd_tokens_check(t, token, strlen(token))) ...;
 *     demixd_tokens_destroy(t);
 *
 * The file: one token per line; leading and trailing whitespace (spaces,
 * tabs, CR) is trimmed; blank lines and lines whose first non-blank
 * character is `#` are ignored. A token is 1 to DEMIX_PROTO_TOKEN_MAX_BYTES
 * bytes of printable ASCII without spaces (0x21..0x7E), so it can travel in
 * an Authorization header as it is.
 *
 * The check takes the same time whatever the candidate's bytes and
 * whichever configured token (if any) it equals: every configured token is
 * compared with the candidate over the full DEMIX_PROTO_TOKEN_MAX_BYTES
 * (both zero-padded), lengths included, with no early exit. Only the
 * number of configured tokens and the copy of the candidate (its own
 * length, which its sender knows) show in the time.
 *
 * Token values are never logged or put into messages; the memory holding
 * them is wiped when freed.
 *
 * Threads: load and destroy on the main thread before and after serving;
 * the set is immutable in between, so check may run on any thread.
 */
#ifndef DEMIXD_TOKENS_H
#define DEMIXD_TOKENS_H

#include <stddef.h>

#include "demix_error.h"

#define DEMIXD_TOKENS_MAX 4096 /* tokens in one file */

typedef struct demixd_tokens demixd_tokens;

typedef enum demixd_auth {
    DEMIXD_AUTH_OK = 0,  /* accepted (or no tokens are configured) */
    DEMIXD_AUTH_MISSING, /* tokens are configured and none was given */
    DEMIXD_AUTH_WRONG,   /* a token was given and it is not one of them */
} demixd_auth;

/* Read the tokens of `path` into *out (the caller destroys it). On error
 * returns DEMIX_EIO (cannot open or read), DEMIX_EFORMAT (a bad line, or no
 * token at all) or DEMIX_ENOMEM; *line gets the 1-based line at fault (0
 * when the fault is the whole file) and err a sentence without the path
 * (the caller names it). DEMIX_EARG for NULL arguments. */
DEMIX_WARN_UNUSED int demixd_tokens_load(const char *path, demixd_tokens **out,
                                         int *line, char *err, size_t cap);

/* Number of tokens loaded; 0 for NULL. */
int demixd_tokens_count(const demixd_tokens *t);

/* Check a candidate of len bytes (token NULL: none was given). With t NULL
 * (no tokens configured) every candidate, and none, is DEMIXD_AUTH_OK. */
demixd_auth demixd_tokens_check(const demixd_tokens *t, const char *token,
                                size_t len);

/* Wipe and free; NULL is a no-op. */
void demixd_tokens_destroy(demixd_tokens *t);

#endif /* DEMIXD_TOKENS_H */
