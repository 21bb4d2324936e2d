/*
 * loadgen_report.c - gathering and printing a loadgen round (see
 * loadgen_report.h).
 *
 * Thread context: the main thread.
 */
#include "loadgen_report.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ gather */

static void add_error(loadgen_round *r, const loadgen_session *s)
{
    for (int i = 0; i < r->error_groups; i++) {
        loadgen_error_group *g = &r->errors[i];
        if (g->outcome == s->outcome && g->failure == s->failure &&
            g->has_code == s->has_error_code &&
            (!g->has_code || g->code == s->error_code) &&
            g->close_code == s->close_code) {
            g->count++;
            return;
        }
    }
    if (r->error_groups == LOADGEN_ERROR_GROUPS) {
        r->errors_ungrouped++;
        return;
    }
    loadgen_error_group *g = &r->errors[r->error_groups++];
    g->outcome = s->outcome;
    g->failure = s->failure;
    g->has_code = s->has_error_code;
    g->code = s->error_code;
    g->close_code = s->close_code;
    g->count = 1;
    snprintf(g->example, sizeof g->example, "%s", s->message);
}

static void add_verify(loadgen_verify_summary *v, const loadgen_session *x)
{
    const loadgen_verify_result *res = &x->verify;
    if (!res->sampled || x->t_ready == 0.0)
        return; /* refused or failed before ready: nothing to compare */
    v->sampled++;
    if (!res->complete)
        return;
    v->complete++;
    if (res->identical) {
        v->identical++;
        return;
    }
    if (res->mismatch)
        v->mismatched++;
    if (res->snr_db < v->snr_db_min)
        v->snr_db_min = res->snr_db;
}

double loadgen_round_added_p99_ms(const loadgen_round *r)
{
    return 1e3 * latency_hist_quantile(&r->added, 0.99);
}

void loadgen_round_collect(loadgen_round *r, const loadgen_session *s, int n)
{
    latency_hist_init(&r->latency);
    r->started = 0;
    r->verify.sampled = r->verify.complete = r->verify.identical = 0;
    r->verify.mismatched = 0;
    r->verify.snr_db_min = INFINITY;
    for (int i = 0; i < n; i++) {
        const loadgen_session *x = &s[i];
        r->started += x->connect_started;
        if (!r->rate_hz)
            r->rate_hz = x->rate_hz;
        r->timed_hops += x->timed_hops;
        r->client_late_hops += x->late_hops;
        r->lost_hops += loadgen_session_lost_hops(x);
        r->reconnects += loadgen_session_reconnects(x);
        add_verify(&r->verify, x);
        if (x->t_ready > 0.0) {
            r->ready++;
            int64_t sent = loadgen_session_positions_sent(x);
            r->audio_s += (double)sent / x->rate_hz;
            r->frames_expected += (long long)sent * x->cfg->stem_count;
            for (int k = 0; k < x->cfg->stem_count; k++)
                r->frames_received += loadgen_session_frames_received(x, k);
            if (x->latency_frames > r->latency_frames_max)
                r->latency_frames_max = x->latency_frames;
            if (x->judged && x->lag_end_s > r->lag_end_max_s)
                r->lag_end_max_s = x->lag_end_s;
        }
        if (x->judged && x->kept_up)
            r->kept_up++;
        if (x->have_summary) {
            r->summaries++;
            r->hops += x->summary.hops;
            r->late_hops += x->summary.late_hops;
        }
        latency_hist_merge(&r->latency, &x->latency);
        switch (x->outcome) {
        case LOADGEN_OK:
            r->ok++;
            break;
        case LOADGEN_REFUSED:
            r->refused++;
            add_error(r, x);
            break;
        default:
            r->failed++;
            add_error(r, x);
            break;
        }
    }
    r->held = r->refused == 0 && r->failed == 0 && n > 0 &&
              r->lost_hops == 0 &&
              loadgen_round_added_p99_ms(r) <= r->max_p99_ms &&
              (double)r->kept_up >= LOADGEN_HELD_FRACTION * n;
}

void loadgen_server_view_set(loadgen_server_view *v, const loadgen_stats *q)
{
    memset(v, 0, sizeof *v);
    v->asked = 1;
    v->ok = q->ok;
    if (q->ok)
        v->stats = q->stats;
    else
        snprintf(v->err, sizeof v->err, "%s", q->err);
}

void loadgen_round_verdict(const loadgen_round *r, char *out, size_t cap)
{
    if (r->held) {
        snprintf(out, cap, "%s", "");
        return;
    }
    if (r->refused)
        snprintf(out, cap, "the server refused %d of %d sessions", r->refused,
                 r->sessions);
    else if (r->failed)
        snprintf(out, cap, "%d of %d sessions failed", r->failed, r->sessions);
    else if (r->lost_hops)
        snprintf(out, cap, "%lld hops lost (output that never arrived)",
                 r->lost_hops);
    else if (loadgen_round_added_p99_ms(r) > r->max_p99_ms)
        snprintf(out, cap,
                 "p99 added latency %.1f ms is above %.1f ms (--max-p99-ms)",
                 loadgen_round_added_p99_ms(r), r->max_p99_ms);
    else
        snprintf(out, cap, "%d of %d sessions kept up (fewer than %.0f%%)",
                 r->kept_up, r->sessions, 100.0 * LOADGEN_HELD_FRACTION);
}

/* -------------------------------------------------------------- text */

static double pct(double part, double whole)
{
    return whole > 0 ? 100.0 * part / whole : 0.0;
}

static void print_view(FILE *out, const char *label,
                       const loadgen_server_view *v)
{
    if (!v->asked)
        return;
    if (!v->ok) {
        fprintf(out, "  %-7s %s\n", label, v->err);
        return;
    }
    const demix_proto_stats *t = &v->stats;
    fprintf(out,
            "  %-7s %d of %d sessions, %llu hops run, step p50 %.2f ms "
            "p99 %.2f ms, batch mean %.1f\n",
            label, t->sessions, t->max_sessions, (unsigned long long)t->hops,
            t->step_ms_p50, t->step_ms_p99, t->batch_mean);
}

static const char *outcome_name(loadgen_outcome o)
{
    switch (o) {
    case LOADGEN_OK:
        return "ok";
    case LOADGEN_REFUSED:
        return "refused";
    case LOADGEN_FAILED:
        return "failed";
    default:
        return "running";
    }
}

void loadgen_report_text(FILE *out, const loadgen_round *r,
                         const loadgen_session *s, int n, int verbose)
{
    const latency_hist *h = &r->latency;
    double rate = r->rate_hz > 0 ? r->rate_hz : 1;
    fprintf(out,
            "sessions     %d started, %d ready, %d ok, %d refused, %d "
            "failed, %lld reconnect%s%s\n",
            r->started, r->ready, r->ok, r->refused, r->failed,
            r->reconnects, r->reconnects == 1 ? "" : "s",
            r->interrupted ? " (interrupted)" : "");
    fprintf(out,
            "audio        %.1f s streamed in %.1f s; received %.2f%% of "
            "the expected frames (%lld of %lld, all stems)\n",
            r->audio_s, r->wall_s,
            pct((double)r->frames_received, (double)r->frames_expected),
            r->frames_received, r->frames_expected);
    if (h->count) {
        const latency_hist *a = &r->added;
        fprintf(out,
                "latency      median %.1f ms, p90 %.1f ms, p99 %.1f ms, "
                "p99.9 %.1f ms, max %.1f ms over %llu messages (announced "
                "%.1f ms)\n",
                1e3 * latency_hist_quantile(h, 0.5),
                1e3 * latency_hist_quantile(h, 0.9),
                1e3 * latency_hist_quantile(h, 0.99),
                1e3 * latency_hist_quantile(h, 0.999), 1e3 * h->max_s,
                (unsigned long long)h->count,
                1e3 * r->latency_frames_max / rate);
        fprintf(out,
                "added        p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max "
                "%.1f ms beyond the announced latency (held: p99 <= %.1f "
                "ms)\n",
                1e3 * latency_hist_quantile(a, 0.5),
                1e3 * latency_hist_quantile(a, 0.99),
                1e3 * latency_hist_quantile(a, 0.999), 1e3 * a->max_s,
                r->max_p99_ms);
    } else {
        fprintf(out, "latency      no message came back\n");
    }
    fprintf(out,
            "hops         %lld timed (%.0f ms of input each): %lld late "
            "(added latency > %.1f ms, %.2f%%), %lld lost\n",
            r->timed_hops, r->hop_ms, r->client_late_hops, r->late_ms,
            pct((double)r->client_late_hops, (double)r->timed_hops),
            r->lost_hops);
    fprintf(out,
            "kept up      %d of %d sessions (%.1f%%): output within "
            "latency + 1 s of real time at the end (largest lag %.2f "
            "s)\n",
            r->kept_up, r->sessions, pct(r->kept_up, r->sessions),
            r->lag_end_max_s);
    fprintf(out,
            "late hops    %llu of %llu (%.2f%%), the server's count over "
            "%d summaries\n",
            r->late_hops, r->hops, pct((double)r->late_hops, (double)r->hops),
            r->summaries);
    if (r->verify.enabled) {
        const loadgen_verify_summary *v = &r->verify;
        char snr[48] = "";
        if (isfinite(v->snr_db_min))
            snprintf(snr, sizeof snr, "; lowest SNR %.1f dB", v->snr_db_min);
        fprintf(out,
                "verify       %d session%s decoded and compared with the "
                "reference: %d identical, %d mismatched (below %.0f dB), "
                "%d incomplete%s\n",
                v->sampled, v->sampled == 1 ? "" : "s", v->identical,
                v->mismatched, v->min_snr_db,
                v->sampled - v->complete, snr);
    }
    double lo = 0, hi = 0;
    int hi_at = 0;
    for (int i = 0; i < r->threads; i++) {
        const loadgen_thread_figures *t = &r->thread[i];
        double f = pct(t->user_s + t->sys_s, r->wall_s);
        if (i == 0 || f < lo)
            lo = f;
        if (i == 0 || f > hi) {
            hi = f;
            hi_at = i;
        }
    }
    char mem[48] = "";
    if (r->rss_bytes_per_session > 0)
        snprintf(mem, sizeof mem, "; %.1f KB per session",
                 r->rss_bytes_per_session / 1024.0);
    fprintf(out,
            "client       %.0f%% of one CPU core; %d thread%s at %.0f%% to "
            "%.0f%% of a core each (the busiest: thread %d), main %.0f%%%s\n",
            pct(r->client_cpu_s, r->wall_s), r->threads,
            r->threads == 1 ? "" : "s", lo, hi, hi_at,
            pct(r->main_cpu_s, r->wall_s), mem);
    if (r->chaos_enabled)
        loadgen_chaos_report_text(out, &r->chaos);
    if (r->before.asked || r->loaded.asked || r->after.asked) {
        fprintf(out, "server\n");
        print_view(out, "before", &r->before);
        print_view(out, "loaded", &r->loaded);
        print_view(out, "after", &r->after);
    }
    for (int i = 0; i < r->error_groups; i++) {
        const loadgen_error_group *g = &r->errors[i];
        fprintf(out, "%-12s %d x %s\n", i == 0 ? "errors" : "", g->count,
                g->example);
    }
    if (r->errors_ungrouped)
        fprintf(out, "             %d more of other kinds\n",
                r->errors_ungrouped);
    if (!verbose)
        return;
    fprintf(out, "\n%5s %-17s %-8s %8s %8s %7s %7s %5s %8s %8s %8s  %s\n",
            "#", "session", "outcome", "sent_s", "recv%", "hops", "late",
            "lost", "lag_s", "p50_ms", "max_ms", "message");
    for (int i = 0; i < n; i++) {
        const loadgen_session *x = &s[i];
        int64_t sent = loadgen_session_positions_sent(x);
        long long got = 0;
        for (int k = 0; k < x->cfg->stem_count; k++)
            got += loadgen_session_frames_received(x, k);
        double want = (double)sent * x->cfg->stem_count;
        fprintf(out,
                "%5d %-17.17s %-8s %8.2f %8.2f %7llu %7llu %5lld %8.2f "
                "%8.1f %8.1f  %s\n",
                x->index, x->id[0] ? x->id : "-", outcome_name(x->outcome),
                (double)sent / (x->rate_hz > 0 ? x->rate_hz : 1),
                pct((double)got, want), (unsigned long long)x->summary.hops,
                (unsigned long long)x->summary.late_hops,
                (long long)loadgen_session_lost_hops(x), x->lag_end_s,
                1e3 * latency_hist_quantile(&x->latency, 0.5),
                1e3 * x->latency.max_s,
                x->outcome == LOADGEN_OK ? "" : x->message);
    }
}

void loadgen_report_ramp_header(FILE *out)
{
    fprintf(out,
            "%8s %6s %7s %6s %8s %8s %8s %8s %8s %9s %6s %12s %9s %6s "
            "%7s\n",
            "sessions", "ready", "refused", "failed", "kept_up", "recv%",
            "p50_ms", "p99_ms", "max_ms", "add99_ms", "lost", "late_hops",
            "step_p99", "batch", "client");
}

void loadgen_report_ramp_row(FILE *out, const loadgen_round *r)
{
    const latency_hist *h = &r->latency;
    char late[32];
    snprintf(late, sizeof late, "%llu/%llu", r->late_hops, r->hops);
    char step[16] = "-", batch[16] = "-";
    if (r->loaded.ok) {
        snprintf(step, sizeof step, "%.2f", r->loaded.stats.step_ms_p99);
        snprintf(batch, sizeof batch, "%.1f", r->loaded.stats.batch_mean);
    }
    fprintf(out,
            "%8d %6d %7d %6d %7.1f%% %8.2f %8.1f %8.1f %8.1f %9.1f %6lld "
            "%12s %9s %6s %6.0f%%\n",
            r->sessions, r->ready, r->refused, r->failed,
            pct(r->kept_up, r->sessions),
            pct((double)r->frames_received, (double)r->frames_expected),
            1e3 * latency_hist_quantile(h, 0.5),
            1e3 * latency_hist_quantile(h, 0.99), 1e3 * h->max_s,
            loadgen_round_added_p99_ms(r), r->lost_hops, late, step, batch,
            pct(r->client_cpu_s, r->wall_s));
    fflush(out);
}

/* -------------------------------------------------------------- JSON */

static cJSON *latency_json(const latency_hist *h)
{
    if (!h->count)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok = cJSON_AddNumberToObject(o, "count", (double)h->count) &&
             cJSON_AddNumberToObject(o, "p50",
                                     1e3 * latency_hist_quantile(h, 0.5)) &&
             cJSON_AddNumberToObject(o, "p90",
                                     1e3 * latency_hist_quantile(h, 0.9)) &&
             cJSON_AddNumberToObject(o, "p99",
                                     1e3 * latency_hist_quantile(h, 0.99)) &&
             cJSON_AddNumberToObject(o, "p999",
                                     1e3 * latency_hist_quantile(h, 0.999)) &&
             cJSON_AddNumberToObject(o, "max", 1e3 * h->max_s) &&
             cJSON_AddNumberToObject(o, "mean", 1e3 * latency_hist_mean(h));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *view_json(const loadgen_server_view *v)
{
    if (!v->asked)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok;
    if (!v->ok) {
        ok = cJSON_AddStringToObject(o, "error", v->err) != NULL;
    } else {
        const demix_proto_stats *t = &v->stats;
        ok = cJSON_AddNumberToObject(o, "sessions", t->sessions) &&
             cJSON_AddNumberToObject(o, "max_sessions", t->max_sessions) &&
             cJSON_AddNumberToObject(o, "hops", (double)t->hops) &&
             cJSON_AddNumberToObject(o, "step_ms_p50", t->step_ms_p50) &&
             cJSON_AddNumberToObject(o, "step_ms_p99", t->step_ms_p99) &&
             cJSON_AddNumberToObject(o, "batch_mean", t->batch_mean) &&
             cJSON_AddNumberToObject(o, "uptime_s", t->uptime_s);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int add_item(cJSON *o, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (!cJSON_AddItemToObject(o, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static cJSON *ratio_or_null(double part, double whole)
{
    return whole > 0 ? cJSON_CreateNumber(part / whole) : cJSON_CreateNull();
}

/* A number, or null when it is not finite (JSON has no infinity). */
static cJSON *finite_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static cJSON *session_verify_json(const loadgen_session *x)
{
    const loadgen_verify_result *v = &x->verify;
    if (!v->sampled)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok = cJSON_AddBoolToObject(o, "complete", v->complete) &&
             cJSON_AddBoolToObject(o, "identical", v->identical) &&
             cJSON_AddBoolToObject(o, "mismatch", v->mismatch) &&
             add_item(o, "snr_db",
                      v->complete && !v->identical ? finite_or_null(v->snr_db)
                                                   : cJSON_CreateNull()) &&
             cJSON_AddNumberToObject(o, "compared_frames",
                                     (double)v->compared_frames);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The session's largest latency beyond its announced one, in ms. */
static cJSON *added_max_json(const loadgen_session *x)
{
    if (!x->latency.count || x->rate_hz <= 0)
        return cJSON_CreateNull();
    double added = x->latency.max_s - (double)x->latency_frames / x->rate_hz;
    return cJSON_CreateNumber(added > 0 ? 1e3 * added : 0.0);
}

static cJSON *session_json(const loadgen_session *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int64_t sent = loadgen_session_positions_sent(x);
    long long got = 0;
    for (int k = 0; k < x->cfg->stem_count; k++)
        got += loadgen_session_frames_received(x, k);
    int ok =
        cJSON_AddNumberToObject(o, "index", x->index) &&
        cJSON_AddStringToObject(o, "id", x->id) &&
        cJSON_AddStringToObject(o, "outcome", outcome_name(x->outcome)) &&
        cJSON_AddStringToObject(o, "failure",
                                loadgen_failure_name(x->failure)) &&
        add_item(o, "error_code",
                 x->has_error_code
                     ? cJSON_CreateString(demix_proto_code_name(x->error_code))
                     : cJSON_CreateNull()) &&
        add_item(o, "close_code",
                 x->close_code ? cJSON_CreateNumber(x->close_code)
                               : cJSON_CreateNull()) &&
        cJSON_AddStringToObject(o, "message",
                                x->outcome == LOADGEN_OK ? "" : x->message) &&
        cJSON_AddBoolToObject(o, "ready", x->t_ready > 0.0) &&
        cJSON_AddNumberToObject(o, "messages_sent", (double)x->messages_sent) &&
        cJSON_AddNumberToObject(o, "messages_received",
                                (double)x->messages_received) &&
        cJSON_AddNumberToObject(o, "frames_sent", (double)sent) &&
        cJSON_AddNumberToObject(o, "frames_expected",
                                (double)sent * x->cfg->stem_count) &&
        cJSON_AddNumberToObject(o, "frames_received", (double)got) &&
        add_item(o, "hops",
                 x->have_summary ? cJSON_CreateNumber((double)x->summary.hops)
                                 : cJSON_CreateNull()) &&
        add_item(o, "late_hops",
                 x->have_summary
                     ? cJSON_CreateNumber((double)x->summary.late_hops)
                     : cJSON_CreateNull()) &&
        add_item(o, "latency_announced_ms",
                 x->t_ready > 0.0
                     ? cJSON_CreateNumber(1e3 * x->latency_frames / x->rate_hz)
                     : cJSON_CreateNull()) &&
        add_item(o, "kept_up",
                 x->judged ? cJSON_CreateBool(x->kept_up)
                           : cJSON_CreateFalse()) &&
        add_item(o, "lag_end_s",
                 x->judged ? cJSON_CreateNumber(x->lag_end_s)
                           : cJSON_CreateNull()) &&
        cJSON_AddNumberToObject(o, "lag_max_s", x->lag_max_s) &&
        add_item(o, "latency_ms", latency_json(&x->latency)) &&
        add_item(o, "added_latency_max_ms", added_max_json(x)) &&
        cJSON_AddNumberToObject(o, "timed_hops", (double)x->timed_hops) &&
        cJSON_AddNumberToObject(o, "client_late_hops",
                                (double)x->late_hops) &&
        cJSON_AddNumberToObject(o, "lost_hops",
                                (double)loadgen_session_lost_hops(x)) &&
        cJSON_AddNumberToObject(o, "reconnects",
                                loadgen_session_reconnects(x)) &&
        add_item(o, "verify", session_verify_json(x));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *threads_json(const loadgen_round *r)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < r->threads; i++) {
        const loadgen_thread_figures *t = &r->thread[i];
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            cJSON_Delete(a);
            return NULL;
        }
        int ok = cJSON_AddNumberToObject(e, "index", i) &&
                 cJSON_AddNumberToObject(e, "sessions", t->sessions) &&
                 cJSON_AddNumberToObject(e, "cpu_user_s", t->user_s) &&
                 cJSON_AddNumberToObject(e, "cpu_sys_s", t->sys_s) &&
                 cJSON_AddNumberToObject(e, "cpu_s", t->user_s + t->sys_s) &&
                 add_item(e, "cpu_fraction",
                          ratio_or_null(t->user_s + t->sys_s, r->wall_s));
        if (!ok) {
            cJSON_Delete(a); /* e with it */
            return NULL;
        }
    }
    return a;
}

static cJSON *verify_json(const loadgen_verify_summary *v)
{
    if (!v->enabled)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok = cJSON_AddNumberToObject(o, "sampled", v->sampled) &&
             cJSON_AddNumberToObject(o, "complete", v->complete) &&
             cJSON_AddNumberToObject(o, "incomplete",
                                     v->sampled - v->complete) &&
             cJSON_AddNumberToObject(o, "identical", v->identical) &&
             cJSON_AddNumberToObject(o, "mismatched", v->mismatched) &&
             add_item(o, "snr_db_min", finite_or_null(v->snr_db_min)) &&
             cJSON_AddNumberToObject(o, "min_snr_db", v->min_snr_db);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *loadgen_report_json(const loadgen_round *r, const loadgen_session *s,
                           int n, int with_sessions)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    double rate = r->rate_hz > 0 ? r->rate_hz : 1;
    char verdict[160];
    loadgen_round_verdict(r, verdict, sizeof verdict);
    int ok =
        cJSON_AddNumberToObject(o, "sessions", r->sessions) &&
        cJSON_AddNumberToObject(o, "seconds", r->seconds) &&
        cJSON_AddBoolToObject(o, "interrupted", r->interrupted) &&
        cJSON_AddNumberToObject(o, "wall_s", r->wall_s) &&
        cJSON_AddNumberToObject(o, "started", r->started) &&
        cJSON_AddNumberToObject(o, "ready", r->ready) &&
        cJSON_AddNumberToObject(o, "ok", r->ok) &&
        cJSON_AddNumberToObject(o, "refused", r->refused) &&
        cJSON_AddNumberToObject(o, "failed", r->failed) &&
        cJSON_AddNumberToObject(o, "audio_s", r->audio_s) &&
        cJSON_AddNumberToObject(o, "frames_expected",
                                (double)r->frames_expected) &&
        cJSON_AddNumberToObject(o, "frames_received",
                                (double)r->frames_received) &&
        add_item(o, "received_ratio",
                 ratio_or_null((double)r->frames_received,
                               (double)r->frames_expected)) &&
        add_item(o, "latency_ms", latency_json(&r->latency)) &&
        add_item(o, "latency_announced_ms",
                 r->ready
                     ? cJSON_CreateNumber(1e3 * r->latency_frames_max / rate)
                     : cJSON_CreateNull()) &&
        cJSON_AddNumberToObject(o, "hops", (double)r->hops) &&
        cJSON_AddNumberToObject(o, "late_hops", (double)r->late_hops) &&
        add_item(o, "late_fraction",
                 ratio_or_null((double)r->late_hops, (double)r->hops)) &&
        cJSON_AddNumberToObject(o, "kept_up", r->kept_up) &&
        add_item(o, "kept_up_fraction",
                 ratio_or_null(r->kept_up, r->sessions)) &&
        cJSON_AddNumberToObject(o, "lag_end_max_s", r->lag_end_max_s) &&
        cJSON_AddBoolToObject(o, "held", r->held) &&
        add_item(o, "verdict",
                 r->held ? cJSON_CreateNull() : cJSON_CreateString(verdict)) &&
        add_item(o, "client_cpu_fraction",
                 ratio_or_null(r->client_cpu_s, r->wall_s)) &&
        add_item(o, "added_latency_ms", latency_json(&r->added)) &&
        cJSON_AddNumberToObject(o, "max_p99_ms", r->max_p99_ms) &&
        cJSON_AddNumberToObject(o, "hop_ms", r->hop_ms) &&
        cJSON_AddNumberToObject(o, "late_ms", r->late_ms) &&
        cJSON_AddNumberToObject(o, "timed_hops", (double)r->timed_hops) &&
        cJSON_AddNumberToObject(o, "client_late_hops",
                                (double)r->client_late_hops) &&
        add_item(o, "client_late_fraction",
                 ratio_or_null((double)r->client_late_hops,
                               (double)r->timed_hops)) &&
        cJSON_AddNumberToObject(o, "lost_hops", (double)r->lost_hops) &&
        cJSON_AddNumberToObject(o, "reconnects", (double)r->reconnects) &&
        cJSON_AddNumberToObject(o, "threads", r->threads) &&
        add_item(o, "thread_list", threads_json(r)) &&
        cJSON_AddNumberToObject(o, "main_cpu_s", r->main_cpu_s) &&
        add_item(o, "main_cpu_fraction",
                 ratio_or_null(r->main_cpu_s, r->wall_s)) &&
        add_item(o, "client_rss_bytes_per_session",
                 r->rss_bytes_per_session > 0
                     ? cJSON_CreateNumber((double)r->rss_bytes_per_session)
                     : cJSON_CreateNull()) &&
        add_item(o, "verify", verify_json(&r->verify)) &&
        add_item(o, "chaos", r->chaos_enabled
                                 ? loadgen_chaos_report_json(&r->chaos)
                                 : cJSON_CreateNull());
    cJSON *errors = ok ? cJSON_AddArrayToObject(o, "errors") : NULL;
    ok = ok && errors;
    for (int i = 0; ok && i < r->error_groups; i++) {
        const loadgen_error_group *g = &r->errors[i];
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(errors, e) &&
             cJSON_AddStringToObject(e, "outcome", outcome_name(g->outcome)) &&
             cJSON_AddStringToObject(e, "failure",
                                     loadgen_failure_name(g->failure)) &&
             add_item(e, "code",
                      g->has_code
                          ? cJSON_CreateString(demix_proto_code_name(g->code))
                          : cJSON_CreateNull()) &&
             add_item(e, "close_code",
                      g->close_code ? cJSON_CreateNumber(g->close_code)
                                    : cJSON_CreateNull()) &&
             cJSON_AddNumberToObject(e, "count", g->count) &&
             cJSON_AddStringToObject(e, "message", g->example);
    }
    cJSON *server = ok ? cJSON_AddObjectToObject(o, "server") : NULL;
    ok = ok && server && add_item(server, "before", view_json(&r->before)) &&
         add_item(server, "loaded", view_json(&r->loaded)) &&
         add_item(server, "after", view_json(&r->after));
    cJSON *list = NULL;
    if (with_sessions) {
        list = ok ? cJSON_AddArrayToObject(o, "session_list") : NULL;
        ok = ok && list;
    } else {
        n = 0;
    }
    for (int i = 0; ok && i < n; i++) {
        cJSON *e = session_json(&s[i]);
        ok = e && cJSON_AddItemToArray(list, e);
        if (!ok)
            cJSON_Delete(e);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
