/*
 * service_phase.c - where a service thread's time goes: each callback of
 * demixd's kinds of work (demixd_service_phase: receive, writeable, wake)
 * adds its wall time and one call to the thread's counters, and /metrics
 * reads them beside the thread's CPU time. The thread's CPU minus the
 * phases is lws's event loop and the kernel's socket calls. That split is
 * what names the bottleneck of a loaded GPU box (bench/server_capacity.py
 * reports it per session-hop), where no profiler may run.
 *
 * Cost: two clock reads (vDSO, about 20 ns each) per callback, against
 * tens of microseconds of work per session-hop.
 *
 * Thread context: demixd_service_phase_done on the service thread that
 * owns the counters (one writer: a relaxed load and store, no atomic
 * read-modify-write); the readers on any thread.
 */
#include <pthread.h>
#include <time.h>

#include "server.h"

static void add(_Atomic uint64_t *counter, uint64_t v)
{
    atomic_store_explicit(
        counter, atomic_load_explicit(counter, memory_order_relaxed) + v,
        memory_order_relaxed);
}

void demixd_service_phase_done(demixd_service *svc, demixd_service_phase p,
                               int64_t t0)
{
    int64_t spent = demixd_now_ns() - t0;
    add(&svc->phase_ns[p], spent > 0 ? (uint64_t)spent : 0);
    add(&svc->phase_calls[p], 1);
}

double demixd_service_cpu_seconds(demixd_service *svc)
{
    clockid_t clock;
    struct timespec ts;
    if (pthread_getcpuclockid(svc->thread, &clock) ||
        clock_gettime(clock, &ts))
        return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void demixd_service_phase_totals(demixd_service *svc, uint64_t *ns,
                                 uint64_t *calls)
{
    for (int p = 0; p < DEMIXD_PHASE_COUNT; p++) {
        ns[p] += atomic_load_explicit(&svc->phase_ns[p], memory_order_relaxed);
        calls[p] +=
            atomic_load_explicit(&svc->phase_calls[p], memory_order_relaxed);
    }
}
