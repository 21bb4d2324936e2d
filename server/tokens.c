/*
 * tokens.c - the token file and the constant-time check (tokens.h).
 *
 * Each token is kept zero-padded in a fixed DEMIX_PROTO_TOKEN_MAX_BYTES
 * slot with its length, so a check compares every slot in full whatever
 * the candidate looks like: the differences of all bytes and of the
 * lengths are OR-ed together, read through volatile pointers so that the
 * compiler cannot stop at the first difference, and the per-token result
 * is folded into `found` without a branch.
 *
 * Thread context: load/destroy on the main thread; check on any thread
 * (the set is read-only once loaded).
 */
#include "tokens.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "protocol.h"

#define TOKEN_BYTES DEMIX_PROTO_TOKEN_MAX_BYTES

typedef struct token_slot {
    uint8_t bytes[TOKEN_BYTES]; /* the token, zero-padded */
    uint32_t len;
} token_slot;

struct demixd_tokens {
    token_slot *slots;
    int count, cap;
};

/* memset that the compiler may not drop as a dead store. */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

void demixd_tokens_destroy(demixd_tokens *t)
{
    if (!t)
        return;
    if (t->slots)
        wipe(t->slots, (size_t)t->cap * sizeof *t->slots);
    free(t->slots);
    free(t);
}

int demixd_tokens_count(const demixd_tokens *t)
{
    return t ? t->count : 0;
}

static int is_blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* One line: 0 when it is blank or a comment or a token was added. */
static int add_line(demixd_tokens *t, const uint8_t *p, size_t n, char *err,
                    size_t cap)
{
    while (n && is_blank(p[0])) {
        p++;
        n--;
    }
    while (n && is_blank(p[n - 1]))
        n--;
    if (n == 0 || p[0] == '#')
        return DEMIX_OK;
    if (n > TOKEN_BYTES) {
        snprintf(err, cap, "the token is %zu bytes; the limit is %d", n,
                 TOKEN_BYTES);
        return DEMIX_EFORMAT;
    }
    for (size_t k = 0; k < n; k++)
        if (p[k] < 0x21 || p[k] > 0x7E) {
            snprintf(err, cap,
                     "byte %zu of the token is a space, a control or a "
                     "non-ASCII character; tokens are printable ASCII "
                     "without spaces",
                     k + 1);
            return DEMIX_EFORMAT;
        }
    if (t->count == DEMIXD_TOKENS_MAX) {
        snprintf(err, cap, "more than %d tokens", DEMIXD_TOKENS_MAX);
        return DEMIX_EFORMAT;
    }
    if (t->count == t->cap) {
        int ncap = t->cap ? 2 * t->cap : 8;
        /* Not realloc: the old block holds tokens and must be wiped. */
        token_slot *s = calloc((size_t)ncap, sizeof *s);
        if (!s) {
            snprintf(err, cap, "out of memory");
            return DEMIX_ENOMEM;
        }
        if (t->slots) {
            memcpy(s, t->slots, (size_t)t->count * sizeof *s);
            wipe(t->slots, (size_t)t->cap * sizeof *t->slots);
            free(t->slots);
        }
        t->slots = s;
        t->cap = ncap;
    }
    token_slot *slot = &t->slots[t->count++];
    memset(slot->bytes, 0, sizeof slot->bytes);
    memcpy(slot->bytes, p, n);
    slot->len = (uint32_t)n;
    return DEMIX_OK;
}

int demixd_tokens_load(const char *path, demixd_tokens **out, int *line,
                       char *err, size_t cap)
{
    if (!path || !out || !line || !err || !cap)
        return DEMIX_EARG;
    *out = NULL;
    *line = 0;
    err[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, cap, "cannot open the tokens file: %s", strerror(errno));
        return DEMIX_EIO;
    }
    demixd_tokens *t = calloc(1, sizeof *t);
    if (!t) {
        fclose(f);
        snprintf(err, cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    char *buf = NULL;
    size_t buf_cap = 0;
    ssize_t n;
    int rc = DEMIX_OK, lineno = 0;
    errno = 0;
    while ((n = getline(&buf, &buf_cap, f)) >= 0) {
        lineno++;
        rc = add_line(t, (const uint8_t *)buf, (size_t)n, err, cap);
        if (rc) {
            *line = lineno;
            break;
        }
    }
    if (!rc && ferror(f)) { /* a directory, an I/O error */
        snprintf(err, cap, "cannot read the tokens file: %s",
                 strerror(errno ? errno : EIO));
        rc = DEMIX_EIO;
    }
    if (!rc && t->count == 0) {
        snprintf(err, cap,
                 "the tokens file has no token (one per line; blank lines "
                 "and # comments are ignored)");
        rc = DEMIX_EFORMAT;
    }
    if (buf)
        wipe(buf, buf_cap);
    free(buf);
    fclose(f);
    if (rc) {
        demixd_tokens_destroy(t);
        return rc;
    }
    *out = t;
    return DEMIX_OK;
}

demixd_auth demixd_tokens_check(const demixd_tokens *t, const char *token,
                                size_t len)
{
    if (!t)
        return DEMIXD_AUTH_OK;
    if (!token)
        return DEMIXD_AUTH_MISSING;
    /* A candidate longer than any token can match none; it is still
     * compared (cut) so that it takes the usual time. */
    uint8_t cand[TOKEN_BYTES];
    memset(cand, 0, sizeof cand);
    size_t n = len < TOKEN_BYTES ? len : TOKEN_BYTES;
    memcpy(cand, token, n);
    uint32_t too_long = len > TOKEN_BYTES;
    uint32_t found = 0;
    for (int i = 0; i < t->count; i++) {
        const volatile uint8_t *a = t->slots[i].bytes;
        const volatile uint8_t *b = cand;
        uint32_t diff = (t->slots[i].len ^ (uint32_t)n) | too_long;
        for (size_t k = 0; k < TOKEN_BYTES; k++)
            diff |= (uint32_t)(a[k] ^ b[k]);
        /* diff < 2^9, so diff - 1 has its top bit set iff diff == 0 */
        found |= (diff - 1u) >> 31;
    }
    wipe(cand, sizeof cand);
    return found ? DEMIXD_AUTH_OK : DEMIXD_AUTH_WRONG;
}
