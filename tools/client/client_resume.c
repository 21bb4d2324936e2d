/*
 * client_resume.c - see client_resume.h: the reconnect policy and the
 * arithmetic of a resume.
 *
 * Thread context: the session's thread.
 */
#include "client_resume.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const client_resume_option_names[CLIENT_RESUME_OPTIONS] = {
    "--reconnect", "--reconnect-wait", "--resume-tail-ms"};

void client_resume_options_default(client_resume_options *o)
{
    o->max_attempts = CLIENT_RESUME_DEFAULT_ATTEMPTS;
    o->max_wait_s = CLIENT_RESUME_DEFAULT_WAIT_S;
    o->tail_ms = CLIENT_RESUME_DEFAULT_TAIL_MS;
}

int client_resume_parse_option(const char *name, const char *text,
                               client_resume_options *o, char *err,
                               size_t err_cap)
{
    static const double lo[] = {0, 1, 0};
    static const double hi[] = {1000, 86400, CLIENT_RESUME_MAX_TAIL_MS};
    static const char *const what[] = {"a number of attempts",
                                       "a number of seconds",
                                       "a number of milliseconds"};
    int k = 0;
    while (k < CLIENT_RESUME_OPTIONS &&
           strcmp(name, client_resume_option_names[k]) != 0)
        k++;
    if (k == CLIENT_RESUME_OPTIONS)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo[k] || v > hi[k]) {
        snprintf(err, err_cap, "%s must be %s, a whole number from %.0f to "
                               "%.0f (got '%s')",
                 name, what[k], lo[k], hi[k], text);
        return -1;
    }
    if (k == 0)
        o->max_attempts = (int)v;
    else if (k == 1)
        o->max_wait_s = (double)v;
    else
        o->tail_ms = (double)v;
    return 1;
}

void client_resume_init(client_resume *r, const client_resume_options *o,
                        uint64_t seed)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

/* xorshift64*: a uniform double in [0, 1). */
static double uniform(client_resume *r)
{
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

int client_resume_next(client_resume *r, double now, double *delay_s)
{
    if (r->o.max_attempts <= 0)
        return 0;
    if (r->attempt == 0)
        r->outage_start_s = now;
    if (r->attempt >= r->o.max_attempts)
        return 0;
    double left = r->outage_start_s + r->o.max_wait_s - now;
    if (left <= 0)
        return 0;
    double d = CLIENT_RESUME_DELAY_MIN_S;
    for (int i = 0; i < r->attempt && d < CLIENT_RESUME_DELAY_MAX_S; i++)
        d *= 2;
    if (d > CLIENT_RESUME_DELAY_MAX_S)
        d = CLIENT_RESUME_DELAY_MAX_S;
    d = d / 2 + uniform(r) * d / 2;
    if (d > left)
        d = left;
    r->attempt++;
    *delay_s = d;
    return 1;
}

void client_resume_done(client_resume *r)
{
    if (r->attempt > 0)
        r->resumes++;
    r->attempt = 0;
}

int client_resume_in_outage(const client_resume *r)
{
    return r->attempt > 0;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int64_t client_resume_grid(int client_rate, int model_rate, int hop)
{
    if (client_rate <= 0 || model_rate <= 0 || hop <= 0)
        return 1;
    /* g * model_rate / client_rate must be a multiple of hop:
     * g * model_rate in (hop * client_rate) Z. */
    int64_t hc = (int64_t)hop * client_rate;
    int64_t g = hc / gcd64(model_rate, hc);
    if ((double)g > CLIENT_RESUME_MAX_GRID_S * client_rate)
        return 1;
    return g;
}

int64_t client_resume_base(int64_t resume_at, double tail_ms, int rate,
                           int64_t grid)
{
    int64_t tail = tail_ms > 0 ? (int64_t)(tail_ms * rate / 1000.0 + 0.5) : 0;
    int64_t b = resume_at - tail;
    if (b <= 0)
        return 0;
    if (grid > 1)
        b -= b % grid;
    return b;
}

int64_t client_resume_overlap(int64_t have, int64_t pos, int64_t n)
{
    int64_t d = have - pos;
    if (d <= 0)
        return 0;
    return d < n ? d : n;
}
