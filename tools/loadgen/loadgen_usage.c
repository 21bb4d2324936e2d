/*
 * loadgen_usage.c - CPU time per thread and process, resident memory (see
 * loadgen_usage.h). RUSAGE_THREAD is Linux's, declared under _GNU_SOURCE.
 *
 * Thread context: any thread.
 */
#define _GNU_SOURCE
#include "loadgen_usage.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

loadgen_cpu loadgen_usage_thread(void)
{
    loadgen_cpu c = {0, 0};
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
        c.user_s = seconds(ru.ru_utime);
        c.sys_s = seconds(ru.ru_stime);
    }
    return c;
}

double loadgen_usage_process_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0.0;
    return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

int64_t loadgen_usage_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    long long size = 0, resident = 0;
    int n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 2 || page <= 0)
        return 0;
    return (int64_t)resident * page;
}
