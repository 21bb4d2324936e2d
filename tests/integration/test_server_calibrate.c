/*
 * test_server_calibrate.c - the capacity demixd measures at start
 * (docs/server.md, "Capacity") does not stay low because the machine was
 * busy then: it is the best of several calibration runs, and every run is
 * logged (event=calibrate ... runs=a,b,c).
 *
 * A busy start is acted out with the test hook DEMIXD_TEST_CALIBRATE_BUSY=1
 * (server/main.c: the first run measures its steps 4 times slower, as if
 * the cores were shared with something else). With the shipped model
 * (its steps take milliseconds on the CPU) that run's capacity is well
 * below the others'. Asserted: at least 3 runs logged, the first below
 * the best, the capacity the best run's, and /v1/health's max_sessions
 * that capacity.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_fixture.h"

static const char *real_model(void)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s",
             demix_test_data_path("../../models/default.safetensors"));
    return path;
}

static void test_busy_start_does_not_stick(void **state)
{
    (void)state;
    const char *dir = demix_test_tmpdir();
    assert_non_null(dir);
    setenv("DEMIXD_TEST_CALIBRATE_BUSY", "1", 1);
    server_fixture fx;
    int rc = server_fixture_start(&fx, real_model(), "--threads", "2",
                                  (const char *)NULL);
    unsetenv("DEMIXD_TEST_CALIBRATE_BUSY");
    assert_int_equal(rc, 0);
    char *log = server_fixture_read_log(&fx);
    assert_non_null(log);
    assert_non_null(strstr(log, "DEMIXD_TEST_CALIBRATE_BUSY=1"));
    const char *line = strstr(log, "event=calibrate capacity=");
    assert_non_null(line);
    int capacity = atoi(line + strlen("event=calibrate capacity="));
    const char *runs = strstr(line, " runs=");
    assert_non_null(runs);
    runs += strlen(" runs=");
    int n = 0, first = 0, best = 0;
    for (const char *p = runs; *p >= '0' && *p <= '9';) {
        char *end;
        int v = (int)strtol(p, &end, 10);
        if (n++ == 0)
            first = v;
        if (v > best)
            best = v;
        p = *end == ',' ? end + 1 : end;
    }
    print_message("calibration runs %.*s: capacity %d (first run %d)\n",
                  (int)strcspn(runs, " \n"), runs, capacity, first);
    assert_true(n >= 3);
    assert_int_equal(capacity, best);
    /* Under a sanitizer every step is several times slower and the
     * capacity comes out at 1 or 2 whatever the hook does: there only the
     * choice of the best run is checked. */
    if (fx_under_sanitizer())
        print_message("# under a sanitizer: first < best is not asserted\n");
    else
        assert_true(first < best);
    free(log);

    wst_http_response r;
    memset(&r, 0, sizeof r);
    assert_int_equal(wst_http(fx.port, "GET", "/v1/health", NULL, NULL, 0, &r,
                              FX_TIMEOUT_MS),
                     0);
    const char *m = strstr((const char *)r.body, "\"max_sessions\":");
    assert_non_null(m);
    assert_int_equal(atoi(m + strlen("\"max_sessions\":")), capacity);
    wst_http_response_free(&r);
    assert_int_equal(server_fixture_finish(&fx, 1, dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_start_does_not_stick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
