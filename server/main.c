/*
 * main.c - demixd: start-up, the lws service loop, and shutdown.
 *
 * Start-up (main thread): parse options; load the tokens file when one is
 * given (a bad one stops the start before the slow steps); load the model;
 * make the engine's thread pool; measure the real-time capacity unless
 * --max-sessions is given (calibrate.h); create the engine with
 * max_sessions + file_jobs slots; choose the service threads and the
 * scheduler's depth and copy pool for the backend; start the scheduler
 * and the file workers; start the service threads (service.c), which log
 * `listening on HOST:PORT` with the bound port (so --port 0 can be used
 * by tests); start the signal thread; wait for the service threads.
 *
 * Backend choices. CUDA: steps run asynchronously, so two are in flight
 * (scheduler.h depth 2); the scheduler thread is all the engine needs of the
 * CPU, so the default is one service thread per other online CPU, and a
 * copy pool of a few threads gathers and scatters large batches. CPU: a
 * step is the engine's math on --threads cores, synchronous (depth 1);
 * the service threads work between and beside the steps, one per CPU by
 * default (on 2 cores, 2 threads held 75 PCM16 sessions at 60 ms p99
 * added latency where 1 thread gave 464 ms: bench/RESULTS.md
 * 2026-12-07), and the copies use the engine's pool between steps.
 *
 * Signals: SIGINT and SIGTERM are blocked in every thread and taken by the
 * signal thread with sigwait(), which sets stop_requested and wakes every
 * service thread, then keeps waking them every 100 ms so the shutdown
 * deadline is checked (callbacks.c). SIGPIPE is ignored.
 *
 * Shutdown order: every service thread ends its loop and destroys its
 * context (every connection closes, sessions release their streams); the
 * file workers and the scheduler are joined (the scheduler closes the
 * remaining slots); the service threads' memory, the engine, the pools
 * and the model are freed. Exit status 0 after a signal, 1 on a start-up
 * failure or a service thread's failure.
 *
 * Thread context: main() is the main thread; signal_main runs on the
 * signal thread.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "calibrate.h"
#include "fd_limit.h"
#include "files.h"
#include "log.h"
#include "server.h"
#include "zip.h"

#ifndef DEMIXD_VERSION
#define DEMIXD_VERSION "0.0.0"
#endif

/* Calibration measures up to 1024 sessions, and up to 16384 again when
 * 1024 fit: only an accelerator gets there (1024 streams of the shipped
 * model in 0.7 of a hop period is about 5 TFLOP/s), and a CPU engine
 * created for 16384 slots would take gigabytes of work buffers. An H200
 * runs 4096 synchronous steps of the shipped model in 4.2 ms
 * (bench/RESULTS.md, 2026-12-02 evening). */
#define CALIBRATE_RUNS 3     /* calibration runs at least, the best kept */
#define CALIBRATE_MAX_RUNS 6 /* while the last two disagree by more than */
#define CALIBRATE_AGREE 0.1  /* this fraction of the larger */
#define CALIBRATE_PAUSE_MS 500 /* between runs past CALIBRATE_RUNS */
#define CALIBRATE_MAX_SLOTS 1024
#define CALIBRATE_MAX_SLOTS_ACCELERATOR 16384
/* The CUDA scheduler's copy pool: participants, the scheduler included. */
#define CUDA_COPY_THREADS 4

static atomic_int main_done;

static void wake_owner(void *user, int owner)
{
    demixd *d = user;
    demixd_service_wake(&d->services[owner]);
}

static void wake_all(void *user)
{
    demixd_wake_all(user);
}

static void *signal_main(void *arg)
{
    demixd *d = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    if (atomic_load(&main_done))
        return NULL;
    demixd_log(DEMIXD_LOG_INFO, "signal", "signal=%s",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&d->stop_requested, 1);
    while (!atomic_load(&main_done)) {
        for (int k = 0; k < d->service_count; k++)
            atomic_store(&d->services[k].wake_pending, 0);
        demixd_wake_all(d);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The tokens of --tokens / $DEMIXD_TOKENS_FILE, or none. The log says
 * which (auth=none or auth=tokens count=N), never a token's value. */
static int load_tokens(demixd *d)
{
    const char *path = d->opt.tokens_path;
    if (!path[0]) {
        demixd_log(DEMIXD_LOG_INFO, "auth",
                   "auth=none msg=\"every client is accepted; give --tokens "
                   "FILE to require a token\"");
        return 0;
    }
    char err[256], q[256];
    int line = 0;
    int rc = demixd_tokens_load(path, &d->tokens, &line, err, sizeof err);
    if (rc) {
        char at[32] = "";
        if (line > 0)
            snprintf(at, sizeof at, " line=%d", line);
        demixd_log(DEMIXD_LOG_ERROR, "auth", "file=%s%s msg=\"%s\"", path, at,
                   demixd_log_quote(err, q, sizeof q));
        return -1;
    }
    demixd_log(DEMIXD_LOG_INFO, "auth", "auth=tokens count=%d file=%s",
               demixd_tokens_count(d->tokens), path);
    return 0;
}

static int load(demixd *d)
{
    char err[512];
    if (!d->opt.model_path[0]) {
        demixd_log(DEMIXD_LOG_ERROR, "model",
                   "msg=\"no model given and no default found: pass --model "
                   "PATH or set DEMIX_MODEL\"");
        return -1;
    }
    if (demix_model_load(d->opt.model_path, &d->model, err, sizeof err)) {
        char q[512];
        demixd_log(DEMIXD_LOG_ERROR, "model", "path=%s msg=\"%s\"",
                   d->opt.model_path, demixd_log_quote(err, q, sizeof q));
        return -1;
    }
    d->cfg = demix_model_get_config(d->model);
    d->num_sources = d->cfg->num_sources;
    if (d->num_sources < 1 || d->num_sources > DEMIX_PROTO_MAX_STEMS) {
        demixd_log(DEMIXD_LOG_ERROR, "model", "msg=\"%d sources\"",
                   d->num_sources);
        return -1;
    }
    for (int t = 0; t < d->num_sources; t++)
        snprintf(d->names[t], sizeof d->names[t], "%s",
                 d->cfg->source_names[t]);
    demixd_log(DEMIXD_LOG_INFO, "model",
               "path=%s name=\"%s\" rate=%d hop=%d window=%d sources=%d "
               "parameters=%" PRId64,
               d->opt.model_path, d->cfg->name, d->cfg->sample_rate_hz,
               d->cfg->hop_samples, d->cfg->window_samples, d->num_sources,
               d->cfg->parameter_count);
    return 0;
}

/* One descriptor per session and file job (fd_limit.h): raise the soft
 * limit to that, or, where the hard limit is short, lower a calibrated
 * capacity (with a warning) or refuse an explicit --max-sessions. */
static int fit_fd_limit(demixd *d)
{
    long need = demixd_fd_needed(d->max_sessions, d->opt.file_jobs);
    long have = demixd_fd_limit_raise(need);
    if (have < 0) {
        demixd_log(DEMIXD_LOG_WARN, "fd_limit",
                   "msg=\"cannot read the open-file limit: %s\"",
                   strerror(errno));
        return 0;
    }
    if (have >= need)
        return 0;
    long fit = have - d->opt.file_jobs - DEMIXD_FD_RESERVE;
    if (d->opt.max_sessions > 0 || fit < 1) {
        demixd_log(DEMIXD_LOG_ERROR, "fd_limit",
                   "sessions=%d file_jobs=%d need=%ld limit=%ld "
                   "msg=\"%d sessions and %d file jobs need %ld open files "
                   "(one each and %d more); the hard limit allows %ld: raise "
                   "it (ulimit -Hn, systemd LimitNOFILE=) or lower "
                   "--max-sessions\"",
                   d->max_sessions, d->opt.file_jobs, need, have,
                   d->max_sessions, d->opt.file_jobs, need, DEMIXD_FD_RESERVE,
                   have);
        return -1;
    }
    demixd_log(DEMIXD_LOG_WARN, "fd_limit",
               "calibrated=%d sessions=%ld limit=%ld msg=\"the open-file "
               "limit lowers the capacity; raise it (ulimit -Hn, systemd "
               "LimitNOFILE=) for more sessions\"",
               d->max_sessions, fit, have);
    d->max_sessions = (int)fit;
    if (d->capacity > d->max_sessions)
        d->capacity = d->max_sessions;
    return 0;
}

/* One calibration run: up to CALIBRATE_MAX_SLOTS, and when those all fit
 * (an accelerator), up to CALIBRATE_MAX_SLOTS_ACCELERATOR. */
static int calibrate_once(demixd *d, const demix_engine_options *eo,
                          double time_scale, demixd_calibration *cal)
{
    char err[512], q[512];
    int rc = demixd_calibrate(d->model, eo, CALIBRATE_MAX_SLOTS, time_scale,
                              cal, err, sizeof err);
    if (!rc && cal->capacity >= CALIBRATE_MAX_SLOTS)
        rc = demixd_calibrate(d->model, eo, CALIBRATE_MAX_SLOTS_ACCELERATOR,
                              time_scale, cal, err, sizeof err);
    if (rc)
        demixd_log(DEMIXD_LOG_ERROR, "calibrate", "status=%s msg=\"%s\"",
                   demix_errname(rc), demixd_log_quote(err, q, sizeof q));
    return rc;
}

/* The capacity without --max-sessions: the best of CALIBRATE_RUNS runs,
 * and more (up to CALIBRATE_MAX_RUNS, CALIBRATE_PAUSE_MS apart) while the
 * last two disagree by more than CALIBRATE_AGREE: a machine busy at start
 * makes a run's steps slow and its capacity low, and that capacity would
 * otherwise stay for the server's life. Every run is logged (runs=...).
 * Test hook: DEMIXD_TEST_CALIBRATE_BUSY=K makes the first K runs measure
 * their steps 4 times slower, as a busy machine would (a warning says so;
 * never set it in production). */
static int calibrate_best(demixd *d, const demix_engine_options *eo,
                          demixd_calibration *best)
{
    const char *busy_env = getenv("DEMIXD_TEST_CALIBRATE_BUSY");
    int busy = busy_env ? atoi(busy_env) : 0;
    if (busy > 0)
        demixd_log(DEMIXD_LOG_WARN, "calibrate",
                   "msg=\"DEMIXD_TEST_CALIBRATE_BUSY=%d: the first %d "
                   "calibration run(s) act out a busy machine (a test hook)\"",
                   busy, busy);
    char runs[256] = "";
    size_t used = 0;
    int n = 0, prev = 0;
    memset(best, 0, sizeof *best);
    for (; n < CALIBRATE_MAX_RUNS; n++) {
        if (n >= CALIBRATE_RUNS) {
            int hi = prev > best->capacity ? prev : best->capacity;
            int lo = prev < best->capacity ? prev : best->capacity;
            if (hi - lo <= CALIBRATE_AGREE * hi)
                break; /* the last run agrees with the best */
            struct timespec ts = {0, CALIBRATE_PAUSE_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        demixd_calibration cal;
        if (calibrate_once(d, eo, n < busy ? 4.0 : 1.0, &cal))
            return -1;
        if (used < sizeof runs)
            used += (size_t)snprintf(runs + used, sizeof runs - used, "%s%d",
                                     n ? "," : "", cal.capacity);
        if (n == 0 || cal.capacity > best->capacity ||
            (cal.capacity == best->capacity && cal.step_ms < best->step_ms))
            *best = cal;
        prev = cal.capacity;
    }
    demixd_log(best->fits_at_one ? DEMIXD_LOG_INFO : DEMIXD_LOG_WARN,
               "calibrate",
               "capacity=%d step_ms=%.3f hop_ms=%.3f threads=%d runs=%s%s",
               best->capacity, best->step_ms, best->hop_ms, d->opt.threads,
               runs,
               best->fits_at_one ? ""
                                 : " msg=\"even one session is slower than "
                                   "real time\"");
    return 0;
}

static int make_engine(demixd *d)
{
    char err[512], q[512];
    if (demix_threadpool_create(d->opt.threads, &d->pool)) {
        demixd_log(DEMIXD_LOG_ERROR, "threads", "threads=%d", d->opt.threads);
        return -1;
    }
    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = d->opt.backend;
    eo.precision = d->opt.precision;
    eo.pool = d->pool;
    eo.device = d->opt.device;
    if (d->opt.max_sessions > 0) {
        d->max_sessions = d->opt.max_sessions;
        d->capacity = d->opt.max_sessions;
    } else {
        demixd_calibration cal;
        if (calibrate_best(d, &eo, &cal))
            return -1;
        d->capacity = cal.capacity;
        d->max_sessions = cal.capacity;
    }
    if (fit_fd_limit(d))
        return -1;
    eo.max_slots = d->max_sessions + d->opt.file_jobs;
    err[0] = '\0';
    int rc = demix_engine_create(d->model, &eo, &d->engine, err, sizeof err);
    if (rc) {
        demixd_log(DEMIXD_LOG_ERROR, "engine", "status=%s msg=\"%s\"",
                   demix_errname(rc), demixd_log_quote(err, q, sizeof q));
        return -1;
    }
    if (err[0]) /* auto fell back to the CPU */
        demixd_log(DEMIXD_LOG_INFO, "engine_fallback", "msg=\"%s\"",
                   demixd_log_quote(err, q, sizeof q));
    snprintf(d->backend, sizeof d->backend, "%s",
             demix_engine_backend_name(d->engine));
    demixd_log(DEMIXD_LOG_INFO, "engine",
               "backend=%s slots=%d max_sessions=%d file_jobs=%d "
               "desc=\"%s\"",
               d->backend, demix_engine_max_slots(d->engine), d->max_sessions,
               d->opt.file_jobs,
               demixd_log_quote(demix_engine_describe(d->engine), q, sizeof q));
    return 0;
}

/* --max-per-address: given, it counts every address; not given, the
 * default leaves loopback out (a proxy on this host, or a local test,
 * brings many clients on one address). */
static int make_addr_limit(demixd *d)
{
    int given = d->opt.max_per_address >= 0;
    int max = given ? d->opt.max_per_address : DEMIXD_DEFAULT_PER_ADDRESS;
    if (demixd_addr_limit_create(max, !given, &d->addr_limit)) {
        demixd_log(DEMIXD_LOG_ERROR, "per_address", "msg=\"out of memory\"");
        return -1;
    }
    if (max)
        demixd_log(DEMIXD_LOG_INFO, "per_address",
                   "max=%d loopback=%s msg=\"at most %d connections per "
                   "client address%s; beyond: 429\"",
                   max, given ? "counted" : "free", max,
                   given ? "" : " (loopback not counted)");
    else
        demixd_log(DEMIXD_LOG_INFO, "per_address",
                   "max=0 msg=\"no limit per client address\"");
    return 0;
}

static void resolve_web(demixd *d)
{
    d->web_root[0] = '\0';
    if (!d->opt.web_dir[0]) {
        demixd_log(DEMIXD_LOG_WARN, "web",
                   "msg=\"no web directory: static paths answer 404\"");
        return;
    }
    if (!realpath(d->opt.web_dir, d->web_root)) {
        demixd_log(DEMIXD_LOG_WARN, "web",
                   "dir=%s msg=\"cannot resolve: static paths answer 404\"",
                   d->opt.web_dir);
        d->web_root[0] = '\0';
        return;
    }
    demixd_log(DEMIXD_LOG_INFO, "web", "dir=%s", d->web_root);
}

static int is_cuda(const demixd *d)
{
    return !strcmp(d->backend, "cuda");
}

/* --service-threads, or the backend's default (the file header). */
static int service_threads(const demixd *d)
{
    if (d->opt.service_threads > 0)
        return d->opt.service_threads;
    long cpus = demixd_usable_cpus();
    long n = is_cuda(d) ? cpus - 1 : cpus;
    return n < 1 ? 1 : n > DEMIXD_MAX_SERVICE_THREADS ? DEMIXD_MAX_SERVICE_THREADS
                                                 : (int)n;
}

/* The scheduler's copy pool: the engine's own on the CPU (idle between
 * steps), a small one of its own on CUDA. */
static int make_copy_pool(demixd *d)
{
    if (!is_cuda(d)) {
        d->copy_pool = d->pool;
        return 0;
    }
    long cpus = demixd_usable_cpus();
    int n = cpus >= 8 ? CUDA_COPY_THREADS : cpus >= 4 ? 2 : 1;
    if (demix_threadpool_create(n, &d->copy_pool)) {
        demixd_log(DEMIXD_LOG_ERROR, "threads", "copy_threads=%d", n);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static demixd d; /* large; zeroed */
    int r = demixd_options_parse(argc, argv, &d.opt);
    if (r)
        return r > 0 ? 0 : 2;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits it */
    signal(SIGPIPE, SIG_IGN);
    (void)demixd_crc32(0, NULL, 0); /* build the table before threads */
    /* glibc sets its time zone state on the first localtime (lws's and
     * OpenSSL's, on every service thread at once): set it here, before
     * any thread exists */
    tzset();
    if (getrandom(&d.id_key, sizeof d.id_key, 0) != sizeof d.id_key)
        d.id_key = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;

    demixd_log(DEMIXD_LOG_INFO, "start", "version=%s pid=%d", DEMIXD_VERSION,
               (int)getpid());
    int status = 1;
    pthread_t sig_thread;
    int have_sig_thread = 0, services_up = 0;
    if (load_tokens(&d) || load(&d) || make_engine(&d))
        goto out;
    if (demixd_metrics_create(&d.metrics) || make_addr_limit(&d))
        goto out;
    int threads = service_threads(&d);
    /* the scheduler wakes owners by index: the array exists before it */
    if (demixd_services_init(&d, threads) || make_copy_pool(&d))
        goto out;
    demixd_scheduler_params sp = {
        .engine = d.engine,
        .max_live = d.max_sessions,
        .max_file = d.opt.file_jobs,
        .capacity = d.capacity,
        .depth = d.opt.steps_in_flight ? d.opt.steps_in_flight
                                       : is_cuda(&d) ? 2 : 1,
        .owners = threads,
        .copy_pool = d.copy_pool,
        .metrics = d.metrics,
        .wake_owner = wake_owner,
        .wake_user = &d,
    };
    if (demixd_scheduler_create(&sp, &d.sched)) {
        demixd_log(DEMIXD_LOG_ERROR, "scheduler", "msg=\"cannot start\"");
        goto out;
    }
    demixd_files_params fp = {
        .cfg = d.cfg,
        .sched = d.sched,
        .metrics = d.metrics,
        .workers = d.opt.file_jobs,
        .max_seconds = d.opt.max_file_seconds,
        .done = wake_all,
        .done_user = &d,
    };
    if (demixd_files_create(&fp, &d.files)) {
        demixd_log(DEMIXD_LOG_ERROR, "files", "msg=\"cannot start workers\"");
        goto out;
    }
    resolve_web(&d);
    if (demixd_services_start(&d))
        goto out;
    services_up = 1;
    if (pthread_create(&sig_thread, NULL, signal_main, &d) == 0)
        have_sig_thread = 1;
    status = demixd_services_join(&d);
    services_up = 0;
out:
    if (services_up) { /* a start failure after the services started */
        atomic_store(&d.stop_requested, 1);
        demixd_wake_all(&d);
        (void)demixd_services_join(&d);
    }
    atomic_store(&main_done, 1);
    if (have_sig_thread) {
        pthread_kill(sig_thread, SIGTERM); /* ends a sigwait, if any */
        pthread_join(sig_thread, NULL);
    }
    demixd_files_destroy(d.files);
    demixd_scheduler_destroy(d.sched);
    demixd_services_free(&d);
    demix_engine_destroy(d.engine);
    if (d.copy_pool != d.pool)
        demix_threadpool_destroy(d.copy_pool);
    demix_threadpool_destroy(d.pool);
    demix_model_destroy(d.model);
    demixd_metrics_destroy(d.metrics);
    demixd_addr_limit_destroy(d.addr_limit);
    demixd_tokens_destroy(d.tokens);
    demixd_log(DEMIXD_LOG_INFO, "stopped", "status=%d", status);
    return status;
}
