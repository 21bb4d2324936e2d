/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

char *mkdtemp(char *template);

uint64_t demix_test_seed(void)
{
    static int have;
    static uint64_t seed;
    if (!have) {
        const char *env = getenv("DEMIX_TEST_SEED");
        if (env && *env)
            seed = strtoull(env, NULL, 0);
        else
            seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        have = 1;
        printf("# DEMIX_TEST_SEED=%llu\n", (unsigned long long)seed);
        fflush(stdout);
    }
    return seed;
}

uint64_t demix_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float demix_test_uniform(uint64_t *state)
{
    double u = (double)(demix_test_rand(state) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(2.0 * u - 1.0);
}

void demix_test_fill_uniform(float *x, size_t n, float scale, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * demix_test_uniform(state);
}

double demix_test_rel_error(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double demix_test_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d;
    }
    return m;
}

const char *demix_test_data_path(const char *name)
{
    static char path[4096];
    const char *dir = getenv("DEMIX_TEST_DATA");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data", name);
    return path;
}

const char *demix_test_tmpdir(void)
{
    static char paths[8][256];
    static int next;
    char *p = paths[next++ % 8];
    const char *base = getenv("TMPDIR");
    snprintf(p, 256, "%s/demix-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p))
        return NULL;
    return p;
}

void demix_test_rmtree(const char *path)
{
    if (path && strncmp(path, "/tmp/", 5) == 0)
        demix_test_system("rm -rf '%s'", path);
}

int demix_test_system(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* Whole file into buf (NUL-terminated, truncated); empty when unreadable. */
static void read_text_file(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

int demix_test_run_tool(const char *bin, const char *args, const char *dir,
                        char *out, size_t out_cap, char *err, size_t err_cap)
{
    char out_path[1024], err_path[1024];
    snprintf(out_path, sizeof out_path, "%s/stdout.txt", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", dir);
    int rc = demix_test_system("'%s' %s >'%s' 2>'%s'", bin, args,
                               out ? out_path : "/dev/null", err_path);
    if (out)
        read_text_file(out_path, out, out_cap);
    read_text_file(err_path, err, err_cap);
    print_message("$ %s %s -> %d\n%s%s", bin, args, rc, out ? out : "", err);
    return rc;
}
