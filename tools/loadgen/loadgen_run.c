/*
 * loadgen_run.c - a loadgen round over the worker threads, the reference
 * session, the server's stats and the progress line (see loadgen_run.h).
 *
 * Thread context: the main thread only.
 */
#include "loadgen_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "loadgen_usage.h"
#include "loadgen_worker.h"

#define SERVICE_MS 50     /* the main loop's longest wait */
#define POLL_S 0.1        /* the reference session's checks */
#define LOADED_LEAD_S 0.5 /* "loaded" stats: before the streams end */
#define SETTLE_S 5.0      /* wait for the server's sessions to go */
#define SETTLE_RETRY_S 0.2
#define PROGRESS_TTY_S 1.0
#define PROGRESS_LOG_S 5.0
#define PROGRESS_CONNECT_S 1.0 /* while sessions are still connecting */

/* ---------------------------------------------------------- sampling */

int loadgen_run_sample_count(double fraction, int n)
{
    if (!(fraction > 0.0) || n < 1)
        return 0;
    double c = ceil(fraction * n);
    return c >= n ? n : (c < 1 ? 1 : (int)c);
}

/* Exactly `count` of i = 0..n-1 pass, evenly spaced, i = 0 among them. */
int loadgen_run_sampled(int i, int n, int count)
{
    return count > 0 && ((int64_t)i * count) % n < count;
}

/* -------------------------------------------------------------- stats */

void loadgen_run_stats(loadgen_run *g, loadgen_stats *q)
{
    loadgen_stats_start(q, g->loop, g->url, g->timeout_s);
    while (!q->done && *g->interrupts < 2) {
        if (ws_client_loop_service(g->loop, SERVICE_MS) < 0)
            break;
        loadgen_stats_poll(q, ws_client_now_s());
    }
    if (!q->done && !q->err[0])
        snprintf(q->err, sizeof q->err, "interrupted");
    loadgen_stats_free(q);
}

/* Before a round: the server's stats once its session count is back at
 * the baseline (or SETTLE_S passed). */
static void settle(loadgen_run *g, loadgen_server_view *before)
{
    double start = ws_client_now_s();
    for (;;) {
        loadgen_stats q;
        loadgen_run_stats(g, &q);
        loadgen_server_view_set(before, &q);
        if (!q.ok || !g->have_baseline || q.stats.sessions <= g->baseline ||
            *g->interrupts || ws_client_now_s() - start > SETTLE_S)
            return;
        double until = ws_client_now_s() + SETTLE_RETRY_S;
        while (ws_client_now_s() < until && !*g->interrupts)
            (void)ws_client_loop_service(g->loop, SERVICE_MS);
    }
}

/* ----------------------------------------------------------- progress */

static void progress_clear(loadgen_run *g)
{
    if (g->progress_drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        g->progress_drawn = 0;
    }
}

static void progress_line(loadgen_run *g, const loadgen_progress *p, int n,
                          double elapsed)
{
    char connect[64] = "";
    if (p->not_started || p->connecting)
        snprintf(connect, sizeof connect, "%d connecting, %d to go, ",
                 p->connecting, p->not_started);
    char lat[96] = "";
    if (p->added.count)
        snprintf(lat, sizeof lat, "; added latency p50 %.1f ms, p99 %.1f ms",
                 1e3 * latency_hist_quantile(&p->added, 0.5),
                 1e3 * latency_hist_quantile(&p->added, 0.99));
    fprintf(stderr,
            "%sloadgen: %d sessions, %.0f/%.0f s: %s%d ready, %d streaming, "
            "%d behind, %d refused, %d failed%s%s",
            g->progress_tty ? "\r\033[K" : "", n, elapsed, g->seconds, connect,
            p->ready, p->streaming, p->behind, p->refused, p->failed, lat,
            g->progress_tty ? "" : "\n");
    fflush(stderr);
    g->progress_drawn = g->progress_tty;
}

/* The workers' snapshots, summed. */
static void gather(loadgen_worker *w, int threads, loadgen_progress *sum)
{
    memset(sum, 0, sizeof *sum);
    latency_hist_init(&sum->added);
    loadgen_progress p;
    for (int j = 0; j < threads; j++) {
        if (!w[j].started)
            continue;
        loadgen_worker_progress(&w[j], &p);
        sum->sessions += p.sessions;
        sum->connecting += p.connecting;
        sum->not_started += p.not_started;
        sum->ready += p.ready;
        sum->streaming += p.streaming;
        sum->behind += p.behind;
        sum->judged += p.judged;
        sum->refused += p.refused;
        sum->failed += p.failed;
        sum->ended += p.ended;
        if (p.first_t0 > 0.0 &&
            (sum->first_t0 == 0.0 || p.first_t0 < sum->first_t0))
            sum->first_t0 = p.first_t0;
        latency_hist_merge(&sum->added, &p.added);
    }
}

/* ---------------------------------------------------------- reference */

int loadgen_run_reference(loadgen_run *g, loadgen_reference **out, char *err,
                          size_t err_cap)
{
    *out = NULL;
    const loadgen_audio *a = g->cfg.audio;
    int rate = loadgen_audio_rate(a), msg = loadgen_audio_message_frames(a);
    int64_t want = (int64_t)(g->seconds * rate + 0.5);
    int64_t positions =
        (want + msg - 1) / msg * msg - loadgen_audio_pre_skip(a);
    int64_t frames = (int64_t)(LOADGEN_VERIFY_MAX_S * rate);
    if (frames > positions)
        frames = positions;
    loadgen_reference *ref;
    if (frames < 1 || loadgen_reference_create(g->cfg.stem_count,
                                               loadgen_audio_channels(a),
                                               frames, &ref)) {
        snprintf(err, err_cap, "out of memory for the reference stems");
        return DEMIX_ENOMEM;
    }
    loadgen_config cfg = g->cfg;
    cfg.reference = ref;
    cfg.epoch_s = ws_client_now_s();
    loadgen_session s;
    loadgen_session_init(&s, &cfg, 0, 1, LOADGEN_ROLE_REFERENCE, NULL);
    if (!g->quiet)
        fprintf(stderr,
                "loadgen: the reference session streams %.1f s alone, as "
                "fast as the server takes it\n",
                (double)positions / rate);
    loadgen_loop main_loop = {.lws = g->loop};
    loadgen_session_connect(&s, &main_loop);
    int stopping = 0, aborting = 0;
    double next_poll = 0.0;
    while (!loadgen_session_done(&s)) {
        if (*g->interrupts >= 1 && !stopping) {
            stopping = 1;
            loadgen_session_stop(&s);
        }
        if (*g->interrupts >= 2 && !aborting) {
            aborting = 1;
            loadgen_session_abort(&s);
        }
        double now = ws_client_now_s();
        if (now >= next_poll) {
            loadgen_session_poll(&s, now);
            next_poll = now + POLL_S;
        }
        if (ws_client_loop_service(g->loop, SERVICE_MS) < 0) {
            loadgen_session_end_now(&s, LOADGEN_FAIL_CLIENT,
                                    "libwebsockets failed in this client");
            break;
        }
    }
    int rc = DEMIX_OK;
    if (s.outcome != LOADGEN_OK) {
        snprintf(err, err_cap, "%s", s.message);
        rc = DEMIX_EIO;
    } else if (s.stop_requested) {
        snprintf(err, err_cap, "interrupted");
        rc = DEMIX_EIO;
    } else if (!loadgen_reference_complete(ref)) {
        snprintf(err, err_cap,
                 "the reference session ended before %lld positions of "
                 "every stem arrived",
                 (long long)frames);
        rc = DEMIX_EPROTOCOL;
    }
    loadgen_session_free(&s);
    if (rc) {
        loadgen_reference_destroy(ref);
        return rc;
    }
    *out = ref;
    return DEMIX_OK;
}

/* -------------------------------------------------------------- round */

void loadgen_run_free(loadgen_round *r, loadgen_session *sessions, int n)
{
    free(r->thread);
    r->thread = NULL;
    if (!sessions)
        return;
    for (int i = 0; i < n; i++)
        loadgen_session_free(&sessions[i]);
    free(sessions);
}

/* Start the workers on their slices; a worker that cannot start ends its
 * sessions at once. */
static void start_workers(loadgen_run *g, loadgen_worker *w, int threads,
                          loadgen_session *s, int n, double t_start)
{
    for (int j = 0; j < threads; j++) {
        int first = (int)((int64_t)n * j / threads);
        int last = (int)((int64_t)n * (j + 1) / threads);
        w[j].index = j;
        w[j].threads = threads;
        w[j].cfg = &g->cfg;
        w[j].loop = g->loops[j];
        w[j].sessions = s + first;
        w[j].count = last - first;
        w[j].t_start = t_start;
        w[j].connect_rate = g->connect_rate;
        int rc = loadgen_worker_start(&w[j]);
        if (rc) {
            char why[160];
            snprintf(why, sizeof why, "cannot start a loadgen thread: %s",
                     strerror(rc));
            for (int i = first; i < last; i++)
                loadgen_session_end_now(&s[i], LOADGEN_FAIL_CLIENT, why);
        }
    }
}

int loadgen_run_round(loadgen_run *g, int n, loadgen_round *r,
                      loadgen_session **sessions, char *err, size_t err_cap)
{
    memset(r, 0, sizeof *r);
    *sessions = NULL;
    int chaos_clients = loadgen_chaos_count(g->chaos_fraction, n);
    n -= chaos_clients;
    const loadgen_audio *a = g->cfg.audio;
    r->sessions = n;
    r->seconds = g->seconds;
    r->late_ms = g->late_ms;
    r->max_p99_ms = g->max_p99_ms;
    r->hop_ms = 1e3 * loadgen_audio_message_frames(a) / loadgen_audio_rate(a);
    r->verify.enabled = g->cfg.reference != NULL;
    r->verify.min_snr_db = g->cfg.verify_min_snr_db;
    int threads = n < g->threads ? n : g->threads;
    r->threads = threads;
    settle(g, &r->before);

    int64_t rss_before = loadgen_usage_rss_bytes();
    loadgen_session *s = calloc((size_t)n, sizeof *s);
    loadgen_worker *w = calloc((size_t)threads, sizeof *w);
    r->thread = calloc((size_t)threads, sizeof *r->thread);
    if (!s || !w || !r->thread) {
        free(s);
        free(w);
        free(r->thread);
        r->thread = NULL;
        return DEMIX_ENOMEM;
    }
    *sessions = s;
    int samples = g->cfg.reference
                      ? loadgen_run_sample_count(g->verify_fraction, n)
                      : 0;
    for (int j = 0; j < threads; j++) {
        int first = (int)((int64_t)n * j / threads);
        int last = (int)((int64_t)n * (j + 1) / threads);
        for (int i = first; i < last; i++)
            loadgen_session_init(&s[i], &g->cfg, i, n,
                                 loadgen_run_sampled(i, n, samples)
                                     ? LOADGEN_ROLE_SAMPLE
                                     : LOADGEN_ROLE_LOAD,
                                 &w[j].added);
    }

    /* The chaos clients begin with the round, on their own thread. */
    loadgen_chaos *chaos = NULL;
    if (chaos_clients) {
        loadgen_chaos_params cp = {
            .cfg = &g->cfg,
            .clients = chaos_clients,
            .seed = g->chaos_seed,
            .host = g->chaos_host,
            .port = g->chaos_port,
            .path = g->chaos_path,
        };
        int rc = loadgen_chaos_start(&cp, &chaos, err, err_cap);
        if (rc) {
            free(s);
            free(w);
            free(r->thread);
            r->thread = NULL;
            *sessions = NULL;
            return rc;
        }
        r->chaos_enabled = 1;
    }

    double t_start = ws_client_now_s();
    double cpu_start = loadgen_usage_process_s();
    loadgen_cpu main_start = loadgen_usage_thread();
    g->cfg.epoch_s = t_start; /* read by the workers from here on */
    start_workers(g, w, threads, s, n, t_start);

    loadgen_stats loaded;
    int loaded_started = 0, stopping = 0, aborting = 0;
    double next_progress = t_start + PROGRESS_CONNECT_S;
    double lead_s = g->seconds / 4 < LOADED_LEAD_S ? g->seconds / 4
                                                   : LOADED_LEAD_S;
    loadgen_progress p;
    for (;;) {
        int finished = 1;
        for (int j = 0; j < threads; j++)
            finished &= !w[j].started || loadgen_worker_finished(&w[j]);
        gather(w, threads, &p);
        double now = ws_client_now_s();
        /* The server's view under load: shortly before the first stream
         * ends, while every session is still live. */
        if (!loaded_started && !stopping && p.first_t0 > 0.0 &&
            (p.judged > 0 || now >= p.first_t0 + g->seconds - lead_s)) {
            loaded_started = 1;
            int64_t rss = loadgen_usage_rss_bytes();
            int started = p.sessions - p.not_started;
            if (rss > rss_before && started > 0)
                r->rss_bytes_per_session = (rss - rss_before) / started;
            loadgen_stats_start(&loaded, g->loop, g->url, g->timeout_s);
        }
        if (loaded_started && !loaded.done)
            loadgen_stats_poll(&loaded, now);
        if (finished && (!loaded_started || loaded.done))
            break;

        if (*g->interrupts >= 1 && !stopping) {
            stopping = 1;
            r->interrupted = 1;
            for (int j = 0; j < threads; j++)
                if (w[j].started)
                    loadgen_worker_command(&w[j], LOADGEN_WORKER_STOP);
        }
        if (*g->interrupts >= 2 && !aborting) {
            aborting = 1;
            for (int j = 0; j < threads; j++)
                if (w[j].started)
                    loadgen_worker_command(&w[j], LOADGEN_WORKER_ABORT);
            if (loaded_started && !loaded.done) {
                loaded.done = 1;
                snprintf(loaded.err, sizeof loaded.err, "interrupted");
            }
        }
        if (!g->quiet && now >= next_progress) {
            progress_line(g, &p, n, now - t_start);
            int connecting = p.not_started || p.connecting;
            next_progress =
                now + (connecting ? PROGRESS_CONNECT_S
                                  : g->progress_tty ? PROGRESS_TTY_S
                                                    : PROGRESS_LOG_S);
        }
        if (ws_client_loop_service(g->loop, SERVICE_MS) < 0) {
            progress_clear(g);
            cli_error("libwebsockets failed");
            for (int j = 0; j < threads; j++)
                if (w[j].started)
                    loadgen_worker_command(&w[j], LOADGEN_WORKER_ABORT);
            for (int j = 0; j < threads; j++)
                loadgen_worker_join(&w[j]);
            if (loaded_started && !loaded.done) {
                loaded.done = 1;
                snprintf(loaded.err, sizeof loaded.err,
                         "libwebsockets failed");
            }
        }
    }
    progress_clear(g);
    loadgen_chaos_stop(chaos, &r->chaos);
    latency_hist_init(&r->added);
    for (int j = 0; j < threads; j++) {
        loadgen_worker_join(&w[j]);
        r->thread[j].sessions = w[j].count;
        r->thread[j].user_s = w[j].cpu.user_s;
        r->thread[j].sys_s = w[j].cpu.sys_s;
        r->thread[j].wall_s = w[j].wall_s;
        latency_hist_merge(&r->added, &w[j].added);
        loadgen_worker_destroy(&w[j]);
    }
    free(w);
    r->wall_s = ws_client_now_s() - t_start;
    r->client_cpu_s = loadgen_usage_process_s() - cpu_start;
    loadgen_cpu main_end = loadgen_usage_thread();
    r->main_cpu_s = main_end.user_s - main_start.user_s + main_end.sys_s -
                    main_start.sys_s;
    if (loaded_started) {
        loadgen_server_view_set(&r->loaded, &loaded);
        loadgen_stats_free(&loaded);
    }
    if (*g->interrupts < 2) {
        loadgen_stats q;
        loadgen_run_stats(g, &q);
        loadgen_server_view_set(&r->after, &q);
    }
    loadgen_round_collect(r, s, n);
    return DEMIX_OK;
}
