/*
 * loadgen_worker.c - one loadgen thread: connect schedule, phase ticks,
 * polls, progress snapshots (see loadgen_worker.h).
 *
 * Thread context: worker_main and everything static below run on the
 * worker thread; the exported functions other than loadgen_worker_start's
 * thread body run on the main thread.
 */
#include "loadgen_worker.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* When the worker's k-th session connects. */
static double connect_time(const loadgen_worker *w, int k)
{
    return w->t_start +
           ((double)k * w->threads + w->index) / w->connect_rate;
}

/* The next tick of phase group g at or after `after`. */
static double next_tick(const loadgen_config *cfg, double period, int g,
                        double after)
{
    double origin = cfg->epoch_s + period * g / LOADGEN_PHASES;
    double m = ceil((after - origin) / period);
    return origin + (m > 0 ? m : 0) * period;
}

static void publish(loadgen_worker *w, double now)
{
    loadgen_progress p;
    memset(&p, 0, sizeof p);
    p.sessions = w->count;
    for (int i = 0; i < w->count; i++) {
        const loadgen_session *s = &w->sessions[i];
        if (!s->connect_started && !s->closed) {
            p.not_started++;
            continue;
        }
        if (s->t_ready > 0.0) {
            p.ready++;
            if (p.first_t0 == 0.0 || s->t0 < p.first_t0)
                p.first_t0 = s->t0;
        } else if (!s->closed && s->outcome == LOADGEN_RUNNING) {
            p.connecting++;
        }
        if (s->closed)
            p.ended++;
        p.judged += s->judged;
        if (s->outcome == LOADGEN_REFUSED)
            p.refused++;
        else if (s->outcome == LOADGEN_FAILED)
            p.failed++;
        if (loadgen_session_streaming(s)) {
            p.streaming++;
            double allowed = (double)s->latency_frames / s->rate_hz +
                             s->cfg->keep_up_margin_s;
            if (loadgen_session_lag_s(s, now) > allowed)
                p.behind++;
        }
    }
    pthread_mutex_lock(&w->progress_lock);
    p.added = w->added;
    w->progress = p;
    pthread_mutex_unlock(&w->progress_lock);
}

static void *worker_main(void *arg)
{
    loadgen_worker *w = arg;
    const loadgen_config *cfg = w->cfg;
    loadgen_cpu cpu0 = loadgen_usage_thread();
    double t_begin = ws_client_now_s();
    double period = (double)loadgen_audio_message_frames(cfg->audio) /
                    loadgen_audio_rate(cfg->audio);
    /* sessions[i] is global session w->sessions[i].index; its phase group
     * is index % LOADGEN_PHASES */
    double tick[LOADGEN_PHASES];
    for (int g = 0; g < LOADGEN_PHASES; g++)
        tick[g] = next_tick(cfg, period, g, t_begin);
    int connected = 0, stopping = 0, aborting = 0, open = w->count;
    double next_poll = t_begin, next_publish = t_begin;

    for (;;) {
        double now = ws_client_now_s();
        int command = atomic_load(&w->command);
        if (command >= LOADGEN_WORKER_STOP && !stopping) {
            stopping = 1;
            for (int i = connected; i < w->count; i++)
                loadgen_session_end_now(&w->sessions[i],
                                        LOADGEN_FAIL_INTERRUPTED,
                                        "interrupted before connecting");
            connected = w->count;
            for (int i = 0; i < w->count; i++)
                loadgen_session_stop(&w->sessions[i]);
        }
        if (command >= LOADGEN_WORKER_ABORT && !aborting) {
            aborting = 1;
            for (int i = 0; i < w->count; i++)
                loadgen_session_abort(&w->sessions[i]);
        }
        double soon = now + LOADGEN_DUE_SLACK_S; /* what counts as now */
        while (connected < w->count && connect_time(w, connected) <= soon)
            loadgen_session_connect(&w->sessions[connected++], &w->loop);

        for (int g = 0; g < LOADGEN_PHASES; g++) {
            if (tick[g] > soon)
                continue;
            for (int i = 0; i < w->count; i++) {
                loadgen_session *s = &w->sessions[i];
                if (s->index % LOADGEN_PHASES == g)
                    loadgen_session_tick(s, now);
            }
            tick[g] = next_tick(cfg, period, g, soon);
            if (tick[g] <= soon)
                tick[g] += period;
        }
        if (soon >= next_poll) {
            open = 0;
            for (int i = 0; i < w->count; i++) {
                loadgen_session_poll(&w->sessions[i], now);
                open += !loadgen_session_done(&w->sessions[i]);
            }
            next_poll = now + LOADGEN_WORKER_POLL_S;
        }
        if (soon >= next_publish || open == 0) {
            publish(w, now);
            next_publish = now + LOADGEN_WORKER_PUBLISH_S;
        }
        if (open == 0 && connected == w->count)
            break;

        double wake = next_poll < next_publish ? next_poll : next_publish;
        for (int g = 0; g < LOADGEN_PHASES; g++)
            if (tick[g] < wake)
                wake = tick[g];
        if (connected < w->count && connect_time(w, connected) < wake)
            wake = connect_time(w, connected);
        /* Whole milliseconds, rounded up (both loops wait in ms): every
         * deadline is more than the slack away, so this never spins. */
        double wait_ms = ceil((wake - ws_client_now_s()) * 1e3);
        if (wait_ms > LOADGEN_WORKER_WAIT_MS)
            wait_ms = LOADGEN_WORKER_WAIT_MS;
        int64_t wait_us = wait_ms > 0 ? (int64_t)wait_ms * 1000 : 0;
        if (loadgen_loop_service_us(&w->loop, wait_us) < 0) {
            char why[96];
            snprintf(why, sizeof why, "%s failed in this client",
                     loadgen_loop_name(&w->loop));
            w->loop_failed = 1;
            for (int i = 0; i < w->count; i++)
                loadgen_session_end_now(&w->sessions[i], LOADGEN_FAIL_CLIENT,
                                        why);
            connected = w->count;
            publish(w, ws_client_now_s());
            break;
        }
    }
    loadgen_cpu cpu1 = loadgen_usage_thread();
    w->cpu.user_s = cpu1.user_s - cpu0.user_s;
    w->cpu.sys_s = cpu1.sys_s - cpu0.sys_s;
    w->wall_s = ws_client_now_s() - t_begin;
    atomic_store(&w->finished, 1);
    return NULL;
}

int loadgen_worker_start(loadgen_worker *w)
{
    atomic_init(&w->command, LOADGEN_WORKER_RUN);
    atomic_init(&w->finished, 0);
    latency_hist_init(&w->added);
    memset(&w->progress, 0, sizeof w->progress);
    w->progress.sessions = w->count;
    w->progress.not_started = w->count;
    w->loop_failed = 0;
    int rc = pthread_mutex_init(&w->progress_lock, NULL);
    if (rc)
        return rc;
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
        pthread_mutex_destroy(&w->progress_lock);
        return rc;
    }
    w->running = 1;
    w->started = 1;
    return 0;
}

void loadgen_worker_command(loadgen_worker *w, int command)
{
    if (atomic_load(&w->command) < command)
        atomic_store(&w->command, command);
    loadgen_loop_wake(&w->loop);
}

void loadgen_worker_progress(loadgen_worker *w, loadgen_progress *out)
{
    pthread_mutex_lock(&w->progress_lock);
    *out = w->progress;
    pthread_mutex_unlock(&w->progress_lock);
}

int loadgen_worker_finished(loadgen_worker *w)
{
    return atomic_load(&w->finished);
}

void loadgen_worker_join(loadgen_worker *w)
{
    if (!w->running)
        return;
    pthread_join(w->thread, NULL);
    w->running = 0;
}

void loadgen_worker_destroy(loadgen_worker *w)
{
    loadgen_worker_join(w);
    if (w->started)
        pthread_mutex_destroy(&w->progress_lock);
    w->started = 0;
}
