/*
 * test_metrics.c - server/metrics.c, the counters behind /metrics, stats
 * and /v1/health: steps fill the step-time and batch-size histograms
 * (cumulative buckets, sum, count) and the hop counters (a failed step
 * counts as an error, not as hops); pauses, ended sessions, refused
 * clients and file jobs are counted under their labels (out-of-range
 * values ignored); the gauges passed in are rendered as given; the recent
 * window gives the median, 99th percentile and mean batch; a short buffer
 * is DEMIX_ENOSPACE and NULL arguments DEMIX_EARG.
 *
 * Thread context: the test's one thread.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "metrics.h"

#define RENDER_BYTES 16384

/* The rendered text holds the whole line `line`. */
static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("no line '%s' in:\n%s", line, text);
}

static void render(demixd_metrics *m, const demixd_gauges *g, char *buf)
{
    size_t len = 0;
    assert_int_equal(demixd_metrics_render(m, g, buf, RENDER_BYTES, &len),
                     DEMIX_OK);
    assert_true(len > 0 && len < RENDER_BYTES);
    assert_int_equal(strlen(buf), len);
}

static void test_fresh(void **state)
{
    (void)state;
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    demixd_gauges g = {
        .sessions = 3, .max_sessions = 64, .capacity = 40, .file_jobs = 1};
    static char text[RENDER_BYTES];
    render(m, &g, text);
    expect_line(text, "# TYPE demixd_sessions gauge");
    expect_line(text, "demixd_sessions 3");
    expect_line(text, "demixd_max_sessions 64");
    expect_line(text, "demixd_capacity_sessions 40");
    expect_line(text, "demixd_file_jobs 1");
    expect_line(text, "demixd_hops_total 0");
    expect_line(text, "demixd_steps_total 0");
    expect_line(text, "demixd_step_seconds_bucket{le=\"+Inf\"} 0");
    expect_line(text, "demixd_step_seconds_count 0");
    expect_line(text, "demixd_batch_size_count 0");
    expect_line(text, "demixd_sessions_total{result=\"ok\"} 0");
    expect_line(text, "demixd_sessions_total{result=\"shutdown\"} 0");
    assert_non_null(strstr(text, "\ndemixd_uptime_seconds "));

    double p50 = -1, p99 = -1, bm = -1, up = -1;
    uint64_t hops = 99;
    demixd_metrics_recent(m, &p50, &p99, &bm, &hops, &up);
    assert_true(p50 == 0.0 && p99 == 0.0 && bm == 0.0);
    assert_int_equal(hops, 0);
    assert_true(up >= 0.0 && up < 60.0);
    demixd_metrics_destroy(m);
    demixd_metrics_destroy(NULL); /* a no-op */
}

/* Live hops' waits: bins by the bucket bounds (inclusive), counts summed
 * over calls, rendered as a cumulative histogram. */
static void test_hop_waits(void **state)
{
    (void)state;
    assert_int_equal(demixd_metrics_hop_wait_bin(0.0001), 0);
    assert_int_equal(demixd_metrics_hop_wait_bin(0.0005), 0);
    assert_int_equal(demixd_metrics_hop_wait_bin(0.0009), 1);
    assert_int_equal(demixd_metrics_hop_wait_bin(0.011), 7); /* le 0.012 */
    assert_int_equal(demixd_metrics_hop_wait_bin(5.0),
                     DEMIXD_HOP_WAIT_BINS - 1);
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    uint32_t c[DEMIXD_HOP_WAIT_BINS] = {0};
    c[0] = 3;
    c[7] = 2;
    demixd_metrics_hop_waits(m, c, 0.025);
    c[0] = 0;
    c[DEMIXD_HOP_WAIT_BINS - 1] = 1;
    demixd_metrics_hop_waits(m, c, 1.0);
    demixd_gauges g = {0};
    static char text[RENDER_BYTES];
    render(m, &g, text);
    expect_line(text, "demixd_hop_wait_seconds_bucket{le=\"0.0005\"} 3");
    expect_line(text, "demixd_hop_wait_seconds_bucket{le=\"0.01\"} 3");
    expect_line(text, "demixd_hop_wait_seconds_bucket{le=\"0.012\"} 7");
    expect_line(text, "demixd_hop_wait_seconds_bucket{le=\"0.256\"} 7");
    expect_line(text, "demixd_hop_wait_seconds_bucket{le=\"+Inf\"} 8");
    expect_line(text, "demixd_hop_wait_seconds_sum 1.025");
    expect_line(text, "demixd_hop_wait_seconds_count 8");
    demixd_metrics_destroy(m);
}

static void test_steps(void **state)
{
    (void)state;
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    demixd_metrics_step(m, 0.0004, 1, 0, 0); /* le 0.0005, batch le 1 */
    demixd_metrics_step(m, 0.003, 5, 2, 0);  /* le 0.004, batch le 8 */
    demixd_metrics_step(m, 0.004, 8, 0, 0);  /* le 0.004 (inclusive) */
    demixd_metrics_step(m, 2.0, 2000, 7, 1); /* +Inf, +Inf; failed */
    demixd_gauges g = {0};
    static char text[RENDER_BYTES];
    render(m, &g, text);
    expect_line(text, "demixd_steps_total 4");
    expect_line(text, "demixd_step_errors_total 1");
    expect_line(text, "demixd_hops_total 14");     /* 1 + 5 + 8 */
    expect_line(text, "demixd_late_hops_total 2"); /* not the failed one */
    expect_line(text, "demixd_step_seconds_bucket{le=\"0.0005\"} 1");
    expect_line(text, "demixd_step_seconds_bucket{le=\"0.002\"} 1");
    expect_line(text, "demixd_step_seconds_bucket{le=\"0.004\"} 3");
    expect_line(text, "demixd_step_seconds_bucket{le=\"1.024\"} 3");
    expect_line(text, "demixd_step_seconds_bucket{le=\"+Inf\"} 4");
    expect_line(text, "demixd_step_seconds_sum 2.0074");
    expect_line(text, "demixd_step_seconds_count 4");
    expect_line(text, "demixd_batch_size_bucket{le=\"1\"} 1");
    expect_line(text, "demixd_batch_size_bucket{le=\"4\"} 1");
    expect_line(text, "demixd_batch_size_bucket{le=\"8\"} 3");
    expect_line(text, "demixd_batch_size_bucket{le=\"1024\"} 3");
    expect_line(text, "demixd_batch_size_bucket{le=\"+Inf\"} 4");
    expect_line(text, "demixd_batch_size_sum 2014");
    expect_line(text, "demixd_batch_size_count 4");

    double p50, p99, bm, up;
    uint64_t hops;
    demixd_metrics_recent(m, &p50, &p99, &bm, &hops, &up);
    assert_float_equal(p50, 3.0, 1e-4); /* of 0.4, 3, 4, 2000 ms */
    assert_float_equal(p99, 4.0, 1e-4); /* rank (4 - 1) * 0.99 = 2 */
    assert_float_equal(bm, 2014.0 / 4, 1e-9);
    assert_int_equal(hops, 14);
    demixd_metrics_destroy(m);
}

/* The window keeps the last 1024 steps. */
static void test_recent_window(void **state)
{
    (void)state;
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    for (int i = 0; i < 1024; i++)
        demixd_metrics_step(m, 1.0, 100, 0, 0); /* pushed out below */
    for (int i = 1; i <= 1024; i++)
        demixd_metrics_step(m, i * 1e-3, 2, 0, 0); /* 1..1024 ms */
    double p50, p99, bm, up;
    uint64_t hops;
    demixd_metrics_recent(m, &p50, &p99, &bm, &hops, &up);
    assert_float_equal(p50, 512.0, 1e-3);  /* sorted[(1024 - 1) / 2] */
    assert_float_equal(p99, 1013.0, 1e-3); /* sorted[(int)(1023 * .99)] */
    assert_float_equal(bm, 2.0, 1e-9);
    assert_int_equal(hops, 1024 * 100 + 1024 * 2);
    demixd_metrics_destroy(m);
}

static void test_labelled_counters(void **state)
{
    (void)state;
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    demixd_metrics_pause(m, DEMIXD_PAUSE_INPUT, 1);
    demixd_metrics_pause(m, DEMIXD_PAUSE_INPUT, 1);
    demixd_metrics_pause(m, DEMIXD_PAUSE_OUTPUT, 1);
    demixd_metrics_pause(m, DEMIXD_PAUSE_INPUT, -1);
    demixd_metrics_session_end(m, DEMIXD_RESULT_OK);
    demixd_metrics_session_end(m, DEMIXD_RESULT_OK);
    demixd_metrics_session_end(m, DEMIXD_RESULT_REFUSED);
    demixd_metrics_session_end(m, DEMIXD_RESULT_VANISHED);
    demixd_metrics_session_end(m, DEMIXD_RESULT_COUNT);       /* ignored */
    demixd_metrics_session_end(m, (demixd_session_result)-1); /* ignored */
    demixd_metrics_auth_refused(m, DEMIXD_AUTH_API_FILE);
    demixd_metrics_auth_refused(m, DEMIXD_AUTH_API_STREAM);
    demixd_metrics_auth_refused(m, DEMIXD_AUTH_API_STREAM);
    demixd_metrics_auth_refused(m, (demixd_auth_api)2); /* ignored */
    demixd_metrics_file_job(m, 1);
    demixd_metrics_file_job(m, 0);
    demixd_metrics_file_job(m, 1);
    demixd_gauges g = {0};
    static char text[RENDER_BYTES];
    render(m, &g, text);
    expect_line(text, "demixd_paused_sessions{direction=\"input\"} 1");
    expect_line(text, "demixd_paused_sessions{direction=\"output\"} 1");
    expect_line(text, "demixd_sessions_total{result=\"ok\"} 2");
    expect_line(text, "demixd_sessions_total{result=\"error\"} 0");
    expect_line(text, "demixd_sessions_total{result=\"vanished\"} 1");
    expect_line(text, "demixd_sessions_total{result=\"refused\"} 1");
    expect_line(text, "demixd_sessions_total{result=\"shutdown\"} 0");
    expect_line(text, "demixd_auth_refused_total{api=\"stream\"} 2");
    expect_line(text, "demixd_auth_refused_total{api=\"file\"} 1");
    expect_line(text, "demixd_file_jobs_total{result=\"ok\"} 2");
    expect_line(text, "demixd_file_jobs_total{result=\"error\"} 1");
    demixd_metrics_destroy(m);
}

/* The service threads' CPU and phase totals come from the gauges and are
 * printed per thread and per phase, in seconds. */
static void test_service_phases(void **state)
{
    (void)state;
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    const int conns[2] = {3, 4};
    const double cpu[2] = {1.5, 0.25};
    demixd_gauges g = {.thread_connections = conns,
                       .thread_cpu_seconds = cpu,
                       .threads = 2};
    g.phase_ns[DEMIXD_PHASE_RECEIVE] = 2500000000u;
    g.phase_ns[DEMIXD_PHASE_WRITEABLE] = 1000;
    g.phase_calls[DEMIXD_PHASE_RECEIVE] = 7;
    g.phase_calls[DEMIXD_PHASE_WAKE] = 9;
    static char text[RENDER_BYTES];
    render(m, &g, text);
    expect_line(text, "demixd_service_cpu_seconds_total{thread=\"0\"} 1.500000");
    expect_line(text, "demixd_service_cpu_seconds_total{thread=\"1\"} 0.250000");
    expect_line(text,
                "demixd_service_phase_seconds_total{phase=\"receive\"} 2.500000");
    expect_line(text,
                "demixd_service_phase_seconds_total{phase=\"writeable\"} 0.000001");
    expect_line(text, "demixd_service_phase_seconds_total{phase=\"wake\"} 0.000000");
    expect_line(text, "demixd_service_phase_calls_total{phase=\"receive\"} 7");
    expect_line(text, "demixd_service_phase_calls_total{phase=\"writeable\"} 0");
    expect_line(text, "demixd_service_phase_calls_total{phase=\"wake\"} 9");
    /* without per-thread CPU (a NULL array) that family is left out */
    g.thread_cpu_seconds = NULL;
    render(m, &g, text);
    assert_null(strstr(text, "demixd_service_cpu_seconds_total"));
    demixd_metrics_destroy(m);
}

static void test_render_arguments(void **state)
{
    (void)state;
    demixd_metrics *m = NULL;
    assert_int_equal(demixd_metrics_create(NULL), DEMIX_EARG);
    assert_int_equal(demixd_metrics_create(&m), DEMIX_OK);
    demixd_gauges g = {0};
    static char text[RENDER_BYTES];
    size_t len = 0;
    assert_int_equal(demixd_metrics_render(NULL, &g, text, sizeof text, &len),
                     DEMIX_EARG);
    assert_int_equal(demixd_metrics_render(m, NULL, text, sizeof text, &len),
                     DEMIX_EARG);
    assert_int_equal(demixd_metrics_render(m, &g, NULL, sizeof text, &len),
                     DEMIX_EARG);
    assert_int_equal(demixd_metrics_render(m, &g, text, 0, &len), DEMIX_EARG);
    assert_int_equal(demixd_metrics_render(m, &g, text, sizeof text, NULL),
                     DEMIX_EARG);
    assert_int_equal(demixd_metrics_render(m, &g, text, sizeof text, &len),
                     DEMIX_OK);
    size_t full = len;
    len = 12345;
    assert_int_equal(demixd_metrics_render(m, &g, text, full / 2, &len),
                     DEMIX_ENOSPACE);
    assert_int_equal(len, 12345); /* untouched */
    assert_int_equal(demixd_metrics_render(m, &g, text, 100, &len),
                     DEMIX_ENOSPACE);
    demixd_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh),
        cmocka_unit_test(test_steps),
        cmocka_unit_test(test_hop_waits),
        cmocka_unit_test(test_recent_window),
        cmocka_unit_test(test_labelled_counters),
        cmocka_unit_test(test_service_phases),
        cmocka_unit_test(test_render_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
