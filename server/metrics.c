/*
 * metrics.c - counters and histograms of metrics.h.
 *
 * The recent window for `stats` is a ring of the last WINDOW steps (time
 * and batch size); percentiles sort a copy of it on request (the lws
 * thread, on a stats message or /metrics scrape, never per hop).
 *
 * Thread context: any thread; `lock` guards every field below it.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW 1024

static const double step_bounds[] = {0.0005, 0.001, 0.002, 0.004, 0.008, 0.016,
                                     0.032,  0.064, 0.128, 0.256, 0.512, 1.024};
#define STEP_BUCKETS (sizeof step_bounds / sizeof step_bounds[0])
/* a live hop's wait: its last input frame in the lane -> its output back
 * in the lane (gather, queueing, the step, scatter) */
static const double wait_bounds[] = {0.0005, 0.001, 0.002, 0.004, 0.006,
                                     0.008,  0.010, 0.012, 0.016, 0.024,
                                     0.032,  0.064, 0.128, 0.256};
#define WAIT_BUCKETS (sizeof wait_bounds / sizeof wait_bounds[0])
_Static_assert(WAIT_BUCKETS + 1 == DEMIXD_HOP_WAIT_BINS,
               "metrics.h's bin count");
static const int batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define BATCH_BUCKETS (sizeof batch_bounds / sizeof batch_bounds[0])

static const char *const phase_names[DEMIXD_PHASE_COUNT] = {
    "receive", "writeable", "wake"};

static const char *const result_names[DEMIXD_RESULT_COUNT] = {
    "ok", "error", "vanished", "refused", "shutdown"};

struct demixd_metrics {
    pthread_mutex_t lock;
    int64_t start_ns; /* immutable */
    /* lock: */
    uint64_t hops, late_hops, steps, step_errors;
    uint64_t step_hist[STEP_BUCKETS + 1];
    double step_sum;
    uint64_t batch_hist[BATCH_BUCKETS + 1];
    uint64_t batch_sum;
    uint64_t wait_hist[WAIT_BUCKETS + 1];
    double wait_sum;
    float win_ms[WINDOW];
    int win_batch[WINDOW];
    int win_n, win_head;
    int paused[2];
    uint64_t sessions_ended[DEMIXD_RESULT_COUNT];
    uint64_t file_ok, file_failed;
    uint64_t auth_refused[2]; /* by demixd_auth_api */
    uint64_t address_refused;
    float scratch[WINDOW];
};

int64_t demixd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int demixd_metrics_create(demixd_metrics **out)
{
    if (!out)
        return DEMIX_EARG;
    demixd_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return DEMIX_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->start_ns = demixd_now_ns();
    *out = m;
    return DEMIX_OK;
}

void demixd_metrics_destroy(demixd_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void demixd_metrics_step(demixd_metrics *m, double seconds, int batch, int late,
                         int failed)
{
    size_t sb = 0, bb = 0;
    while (sb < STEP_BUCKETS && seconds > step_bounds[sb])
        sb++;
    while (bb < BATCH_BUCKETS && batch > batch_bounds[bb])
        bb++;
    pthread_mutex_lock(&m->lock);
    m->steps++;
    if (failed) {
        m->step_errors++;
    } else {
        m->hops += (uint64_t)batch;
        m->late_hops += (uint64_t)late;
    }
    m->step_hist[sb]++;
    m->step_sum += seconds;
    m->batch_hist[bb]++;
    m->batch_sum += (uint64_t)batch;
    m->win_ms[m->win_head] = (float)(seconds * 1e3);
    m->win_batch[m->win_head] = batch;
    m->win_head = (m->win_head + 1) % WINDOW;
    if (m->win_n < WINDOW)
        m->win_n++;
    pthread_mutex_unlock(&m->lock);
}

int demixd_metrics_hop_wait_bin(double seconds)
{
    int b = 0;
    while (b < (int)WAIT_BUCKETS && seconds > wait_bounds[b])
        b++;
    return b;
}

void demixd_metrics_hop_waits(demixd_metrics *m,
                              const uint32_t counts[DEMIXD_HOP_WAIT_BINS],
                              double sum_seconds)
{
    pthread_mutex_lock(&m->lock);
    for (int b = 0; b < DEMIXD_HOP_WAIT_BINS; b++)
        m->wait_hist[b] += counts[b];
    m->wait_sum += sum_seconds;
    pthread_mutex_unlock(&m->lock);
}

void demixd_metrics_pause(demixd_metrics *m, demixd_pause_dir dir, int delta)
{
    pthread_mutex_lock(&m->lock);
    m->paused[dir] += delta;
    pthread_mutex_unlock(&m->lock);
}

void demixd_metrics_session_end(demixd_metrics *m, demixd_session_result r)
{
    if (r < 0 || r >= DEMIXD_RESULT_COUNT)
        return;
    pthread_mutex_lock(&m->lock);
    m->sessions_ended[r]++;
    pthread_mutex_unlock(&m->lock);
}

void demixd_metrics_auth_refused(demixd_metrics *m, demixd_auth_api api)
{
    if (api != DEMIXD_AUTH_API_STREAM && api != DEMIXD_AUTH_API_FILE)
        return;
    pthread_mutex_lock(&m->lock);
    m->auth_refused[api]++;
    pthread_mutex_unlock(&m->lock);
}

void demixd_metrics_address_refused(demixd_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->address_refused++;
    pthread_mutex_unlock(&m->lock);
}

void demixd_metrics_file_job(demixd_metrics *m, int ok)
{
    pthread_mutex_lock(&m->lock);
    if (ok)
        m->file_ok++;
    else
        m->file_failed++;
    pthread_mutex_unlock(&m->lock);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void demixd_metrics_recent(demixd_metrics *m, double *p50_ms, double *p99_ms,
                           double *batch_mean, uint64_t *hops, double *uptime_s)
{
    pthread_mutex_lock(&m->lock);
    int n = m->win_n;
    double bsum = 0;
    for (int i = 0; i < n; i++) {
        m->scratch[i] = m->win_ms[i];
        bsum += m->win_batch[i];
    }
    qsort(m->scratch, (size_t)n, sizeof *m->scratch, cmp_float);
    *p50_ms = n ? m->scratch[(n - 1) / 2] : 0.0;
    *p99_ms = n ? m->scratch[(int)((n - 1) * 0.99)] : 0.0;
    *batch_mean = n ? bsum / n : 0.0;
    *hops = m->hops;
    pthread_mutex_unlock(&m->lock);
    *uptime_s = (double)(demixd_now_ns() - m->start_ns) * 1e-9;
}

typedef struct out_buf {
    char *p;
    size_t cap, len;
    int overflow;
} out_buf;

static void put(out_buf *b, const char *fmt, ...) DEMIX_PRINTF(2, 3);
static void put(out_buf *b, const char *fmt, ...)
{
    if (b->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    b->len += (size_t)n;
}

int demixd_metrics_render(demixd_metrics *m, const demixd_gauges *g, char *buf,
                          size_t cap, size_t *len)
{
    if (!m || !g || !buf || !cap || !len)
        return DEMIX_EARG;
    out_buf b = {buf, cap, 0, 0};
    double uptime = (double)(demixd_now_ns() - m->start_ns) * 1e-9;
    pthread_mutex_lock(&m->lock);
    put(&b,
        "# HELP demixd_sessions Live WebSocket sessions.\n"
        "# TYPE demixd_sessions gauge\ndemixd_sessions %d\n",
        g->sessions);
    put(&b,
        "# HELP demixd_max_sessions Session limit.\n"
        "# TYPE demixd_max_sessions gauge\ndemixd_max_sessions %d\n",
        g->max_sessions);
    put(&b,
        "# HELP demixd_capacity_sessions Sessions the engine serves in "
        "real time (measured at start).\n"
        "# TYPE demixd_capacity_sessions gauge\n"
        "demixd_capacity_sessions %d\n",
        g->capacity);
    if (g->thread_connections && g->threads > 0) {
        put(&b, "# HELP demixd_service_connections Connections served by "
                "each service thread (HTTP and WebSocket).\n"
                "# TYPE demixd_service_connections gauge\n");
        for (int k = 0; k < g->threads; k++)
            put(&b, "demixd_service_connections{thread=\"%d\"} %d\n", k,
                g->thread_connections[k]);
    }
    if (g->thread_cpu_seconds && g->threads > 0) {
        put(&b, "# HELP demixd_service_cpu_seconds_total CPU time of each "
                "service thread.\n"
                "# TYPE demixd_service_cpu_seconds_total counter\n");
        for (int k = 0; k < g->threads; k++)
            put(&b, "demixd_service_cpu_seconds_total{thread=\"%d\"} %.6f\n",
                k, g->thread_cpu_seconds[k]);
    }
    put(&b, "# HELP demixd_service_phase_seconds_total Time the service "
            "threads spent in each kind of work (the rest of their CPU is "
            "the event loop and the kernel's socket calls).\n"
            "# TYPE demixd_service_phase_seconds_total counter\n");
    for (int k = 0; k < DEMIXD_PHASE_COUNT; k++)
        put(&b, "demixd_service_phase_seconds_total{phase=\"%s\"} %.6f\n",
            phase_names[k], (double)g->phase_ns[k] * 1e-9);
    put(&b, "# HELP demixd_service_phase_calls_total Service-thread calls "
            "of each kind of work.\n"
            "# TYPE demixd_service_phase_calls_total counter\n");
    for (int k = 0; k < DEMIXD_PHASE_COUNT; k++)
        put(&b, "demixd_service_phase_calls_total{phase=\"%s\"} %llu\n",
            phase_names[k], (unsigned long long)g->phase_calls[k]);
    put(&b,
        "# HELP demixd_hops_total Session-hops stepped by the engine.\n"
        "# TYPE demixd_hops_total counter\ndemixd_hops_total %llu\n",
        (unsigned long long)m->hops);
    put(&b,
        "# HELP demixd_late_hops_total Live hops finished after their "
        "real-time deadline.\n"
        "# TYPE demixd_late_hops_total counter\n"
        "demixd_late_hops_total %llu\n",
        (unsigned long long)m->late_hops);
    put(&b,
        "# HELP demixd_steps_total Engine steps.\n"
        "# TYPE demixd_steps_total counter\ndemixd_steps_total %llu\n",
        (unsigned long long)m->steps);
    put(&b,
        "# HELP demixd_step_errors_total Engine steps that failed.\n"
        "# TYPE demixd_step_errors_total counter\n"
        "demixd_step_errors_total %llu\n",
        (unsigned long long)m->step_errors);
    put(&b, "# HELP demixd_step_seconds Engine step time.\n"
            "# TYPE demixd_step_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < STEP_BUCKETS; i++) {
        cum += m->step_hist[i];
        put(&b, "demixd_step_seconds_bucket{le=\"%g\"} %llu\n", step_bounds[i],
            (unsigned long long)cum);
    }
    cum += m->step_hist[STEP_BUCKETS];
    put(&b,
        "demixd_step_seconds_bucket{le=\"+Inf\"} %llu\n"
        "demixd_step_seconds_sum %.9g\ndemixd_step_seconds_count %llu\n",
        (unsigned long long)cum, m->step_sum, (unsigned long long)cum);
    put(&b, "# HELP demixd_hop_wait_seconds Live hops: from the last input "
            "frame in the session's lane to the output back in it.\n"
            "# TYPE demixd_hop_wait_seconds histogram\n");
    cum = 0;
    for (size_t i = 0; i < WAIT_BUCKETS; i++) {
        cum += m->wait_hist[i];
        put(&b, "demixd_hop_wait_seconds_bucket{le=\"%g\"} %llu\n",
            wait_bounds[i], (unsigned long long)cum);
    }
    cum += m->wait_hist[WAIT_BUCKETS];
    put(&b,
        "demixd_hop_wait_seconds_bucket{le=\"+Inf\"} %llu\n"
        "demixd_hop_wait_seconds_sum %.9g\ndemixd_hop_wait_seconds_count "
        "%llu\n",
        (unsigned long long)cum, m->wait_sum, (unsigned long long)cum);
    put(&b, "# HELP demixd_batch_size Hops per engine step.\n"
            "# TYPE demixd_batch_size histogram\n");
    cum = 0;
    for (size_t i = 0; i < BATCH_BUCKETS; i++) {
        cum += m->batch_hist[i];
        put(&b, "demixd_batch_size_bucket{le=\"%d\"} %llu\n", batch_bounds[i],
            (unsigned long long)cum);
    }
    cum += m->batch_hist[BATCH_BUCKETS];
    put(&b,
        "demixd_batch_size_bucket{le=\"+Inf\"} %llu\n"
        "demixd_batch_size_sum %llu\ndemixd_batch_size_count %llu\n",
        (unsigned long long)cum, (unsigned long long)m->batch_sum,
        (unsigned long long)cum);
    put(&b,
        "# HELP demixd_paused_sessions Sessions paused by flow control: "
        "input (socket not read) or output (hops skipped until the client "
        "reads).\n"
        "# TYPE demixd_paused_sessions gauge\n"
        "demixd_paused_sessions{direction=\"input\"} %d\n"
        "demixd_paused_sessions{direction=\"output\"} %d\n",
        m->paused[0], m->paused[1]);
    put(&b, "# HELP demixd_sessions_total Ended sessions by outcome.\n"
            "# TYPE demixd_sessions_total counter\n");
    for (int r = 0; r < DEMIXD_RESULT_COUNT; r++)
        put(&b, "demixd_sessions_total{result=\"%s\"} %llu\n", result_names[r],
            (unsigned long long)m->sessions_ended[r]);
    put(&b,
        "# HELP demixd_file_jobs File API jobs in progress.\n"
        "# TYPE demixd_file_jobs gauge\ndemixd_file_jobs %d\n"
        "# HELP demixd_file_jobs_total Finished file API jobs.\n"
        "# TYPE demixd_file_jobs_total counter\n"
        "demixd_file_jobs_total{result=\"ok\"} %llu\n"
        "demixd_file_jobs_total{result=\"error\"} %llu\n",
        g->file_jobs, (unsigned long long)m->file_ok,
        (unsigned long long)m->file_failed);
    put(&b,
        "# HELP demixd_auth_refused_total Clients refused for a missing or "
        "wrong token.\n"
        "# TYPE demixd_auth_refused_total counter\n"
        "demixd_auth_refused_total{api=\"stream\"} %llu\n"
        "demixd_auth_refused_total{api=\"file\"} %llu\n",
        (unsigned long long)m->auth_refused[DEMIXD_AUTH_API_STREAM],
        (unsigned long long)m->auth_refused[DEMIXD_AUTH_API_FILE]);
    put(&b,
        "# HELP demixd_address_refused_total Connections refused (429) "
        "because their address had --max-per-address open.\n"
        "# TYPE demixd_address_refused_total counter\n"
        "demixd_address_refused_total %llu\n",
        (unsigned long long)m->address_refused);
    put(&b,
        "# HELP demixd_uptime_seconds Seconds since start.\n"
        "# TYPE demixd_uptime_seconds gauge\ndemixd_uptime_seconds %.3f\n",
        uptime);
    pthread_mutex_unlock(&m->lock);
    if (b.overflow)
        return DEMIX_ENOSPACE;
    *len = b.len;
    return DEMIX_OK;
}
