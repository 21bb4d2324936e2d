/*
 * test_server_fd_limit.c - demixd and the open-file limit (server/
 * fd_limit.h): one descriptor per session and file job, plus 64.
 *
 * The limits are set in this process (setrlimit) and inherited by the
 * demixd it forks. A lowered hard limit cannot be raised again without
 * privileges, so the cases run in this order, the hard limit only going
 * down:
 *   (1) soft limit 100, hard limit as it was (at least 110):
 *       --max-sessions N with N + 2 + 64 above 100 and within the hard
 *       limit starts, with N sessions (demixd raised its soft limit) and
 *       no fd_limit line in the log;
 *   (2) hard limit 200: --max-sessions 500 (566 needed) does not start;
 *       the log's error names the numbers and the way out;
 *   (3) hard limit 67 and no --max-sessions: the calibrated capacity
 *       (tests/data/tiny.safetensors, far above one session) is lowered to
 *       the one session that fits (67 - 2 file jobs - 64), with a warning.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "server_fixture.h"

static const char *model(void)
{
    return demix_test_data_path("tiny.safetensors");
}

static void set_limits(rlim_t soft, rlim_t hard)
{
    struct rlimit r = {soft, hard};
    if (setrlimit(RLIMIT_NOFILE, &r))
        fail_msg("setrlimit(%lu, %lu) failed", (unsigned long)soft,
                 (unsigned long)hard);
}

static char *log_of(const server_fixture *fx)
{
    char *log = server_fixture_read_log(fx);
    assert_non_null(log);
    return log;
}

static void finish(server_fixture *fx, int started)
{
    int rc = server_fixture_finish(fx, started, NULL);
    if (!getenv("DEMIX_TEST_KEEP"))
        demix_test_rmtree(fx->dir);
    assert_int_equal(rc, 0);
}

static void test_soft_limit_is_raised(void **state)
{
    (void)state;
    struct rlimit r;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &r), 0);
    rlim_t hard = r.rlim_max;
    if (hard != RLIM_INFINITY && hard < 110)
        fail_msg("hard open-file limit %lu: this test needs 110",
                 (unsigned long)hard);
    long sessions = 200;
    if (hard != RLIM_INFINITY && (long)hard < sessions + 66)
        sessions = (long)hard - 66;
    set_limits(100, hard);
    char arg[32];
    snprintf(arg, sizeof arg, "%ld", sessions);
    server_fixture fx;
    int started = server_fixture_start(&fx, model(), "--max-sessions", arg,
                                       (const char *)NULL) == 0;
    assert_true(started);
    char *log = log_of(&fx);
    char want[64];
    snprintf(want, sizeof want, " max_sessions=%ld ", sessions);
    assert_non_null(strstr(log, want));
    assert_null(strstr(log, "event=fd_limit"));
    free(log);
    finish(&fx, started);
}

static void test_explicit_sessions_beyond_the_hard_limit_refused(void **state)
{
    (void)state;
    set_limits(200, 200);
    server_fixture fx;
    int rc = server_fixture_start(&fx, model(), "--max-sessions", "500",
                                  (const char *)NULL);
    if (rc == 0)
        server_fixture_stop(&fx);
    assert_int_not_equal(rc, 0);
    char *log = log_of(&fx);
    assert_non_null(strstr(log, "level=error event=fd_limit sessions=500 "
                                "file_jobs=2 need=566 limit=200"));
    assert_non_null(strstr(log, "raise it (ulimit -Hn, systemd "
                                "LimitNOFILE=) or lower --max-sessions"));
    assert_non_null(strstr(log, "event=stopped status=1"));
    free(log);
    if (!getenv("DEMIX_TEST_KEEP"))
        demix_test_rmtree(fx.dir);
}

static void test_calibrated_capacity_lowered_to_fit(void **state)
{
    (void)state;
    set_limits(67, 67);
    server_fixture fx;
    int started =
        server_fixture_start(&fx, model(), (const char *)NULL) == 0;
    assert_true(started);
    char *log = log_of(&fx);
    /* A calibrated capacity of 1 (a slow machine, or a sanitizer build)
     * fits already: there is nothing to lower. */
    if (strstr(log, "event=calibrate capacity=1 ")) {
        print_message("# calibrated to 1 session here: nothing to lower\n");
        free(log);
        finish(&fx, started);
        skip();
    }
    assert_non_null(strstr(log, "level=warn event=fd_limit calibrated="));
    assert_non_null(strstr(log, " sessions=1 limit=67 "));
    assert_non_null(strstr(log, " max_sessions=1 "));
    free(log);
    finish(&fx, started);
}

int main(void)
{
    /* In this order: the hard limit only goes down (file header). */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soft_limit_is_raised),
        cmocka_unit_test(test_explicit_sessions_beyond_the_hard_limit_refused),
        cmocka_unit_test(test_calibrated_capacity_lowered_to_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
