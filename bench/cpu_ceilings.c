/*
 * cpu_ceilings.c - the two ceilings a CPU engine step is measured against:
 * memory read bandwidth (a step at small B streams every weight once) and
 * the float32 FMA rate of one core (a step at large B is compute-bound).
 *
 *   build/bench/cpu_ceilings [MiB]     default 1024 MiB read buffer
 *
 * Prints one JSON object per figure. Read bandwidth: best of 5 passes of a
 * vectorisable sum over a buffer far larger than the caches. FMA rate: a
 * register-resident loop of independent multiply-adds (the compiler
 * vectorises it at -O2 -march=native), best of 5.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double read_bandwidth_gbs(const float *buf, size_t n, float *sink)
{
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        float acc[16] = {0};
        double t0 = now_s();
        for (size_t i = 0; i + 16 <= n; i += 16)
            for (int k = 0; k < 16; k++)
                acc[k] += buf[i + k];
        double dt = now_s() - t0;
        for (int k = 0; k < 16; k++)
            *sink += acc[k];
        double gbs = (double)n * sizeof(float) / dt / 1e9;
        if (gbs > best)
            best = gbs;
    }
    return best;
}

static double fma_gflops(float *sink)
{
    enum { LANES = 128 };
    float a[LANES], b[LANES];
    for (int k = 0; k < LANES; k++)
        a[k] = 0.0f, b[k] = 1.0f + 1e-7f * (float)k;
    const long iters = 20000000 / 16;
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        for (long it = 0; it < iters; it++)
            for (int k = 0; k < LANES; k++)
                a[k] = a[k] * 0.999999f + b[k];
        double dt = now_s() - t0;
        double g = 2.0 * (double)iters * LANES / dt / 1e9;
        if (g > best)
            best = g;
    }
    for (int k = 0; k < LANES; k++)
        *sink += a[k];
    return best;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    if (!buf) {
        fprintf(stderr, "cpu_ceilings: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 1023) * 1e-3f;
    float sink = 0;
    double bw = read_bandwidth_gbs(buf, n, &sink);
    double gf = fma_gflops(&sink);
    printf("{\"figure\":\"read_bandwidth\",\"GB_per_s\":%.1f,\"buffer_MiB\":%zu}\n",
           bw, mib);
    printf("{\"figure\":\"fp32_fma_one_core\",\"GFLOP_per_s\":%.1f}\n", gf);
    fprintf(stderr, "(sink %g)\n", (double)sink);
    free(buf);
    return 0;
}
