/*
 * loadgen_usage.h - what `demix loadgen` itself uses: the CPU time of the
 * calling thread (getrusage RUSAGE_THREAD, user and system apart) and of
 * the whole process, and the process's resident memory (/proc/self/statm),
 * so the report can say how much of the machine the client took and how
 * many bytes a session costs.
 *
 * Thread context: any thread; loadgen_usage_thread measures the caller.
 */
#ifndef DEMIX_LOADGEN_USAGE_H
#define DEMIX_LOADGEN_USAGE_H

#include <stdint.h>

typedef struct loadgen_cpu {
    double user_s, sys_s;
} loadgen_cpu;

/* The calling thread's CPU time so far (zeros when unavailable). */
loadgen_cpu loadgen_usage_thread(void);

/* The process's CPU time so far, all threads (user + system). */
double loadgen_usage_process_s(void);

/* The process's resident memory in bytes; 0 when unknown. */
int64_t loadgen_usage_rss_bytes(void);

#endif /* DEMIX_LOADGEN_USAGE_H */
