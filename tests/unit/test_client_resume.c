/*
 * test_client_resume.c - the reconnect policy and the resume arithmetic of
 * tools/client/client_resume.h: the backoff doubles from
 * CLIENT_RESUME_DELAY_MIN_S up to its ceiling, each delay within [d/2, d]
 * (jitter), seeds give different delays, the attempts and the outage's
 * time are bounded, done() ends an outage and counts it, 0 attempts never
 * resume; the hop grid for equal and resampled rates (and 1 when too
 * coarse); the base snapped onto the grid and never below 0; the overlap
 * of an output span with what a stem has; the option parser.
 *
 * Thread context: single-threaded.
 */
#include "testutil.h"

#include <string.h>

#include "client_resume.h"

static void test_backoff_doubles_with_jitter(void **state)
{
    (void)state;
    client_resume_options o;
    client_resume_options_default(&o);
    o.max_attempts = 8;
    o.max_wait_s = 1000;
    client_resume r;
    client_resume_init(&r, &o, 12345);
    assert_false(client_resume_in_outage(&r));
    double d = CLIENT_RESUME_DELAY_MIN_S, delay;
    for (int k = 0; k < 8; k++) {
        assert_int_equal(client_resume_next(&r, 10.0, &delay), 1);
        assert_true(client_resume_in_outage(&r));
        assert_true(delay >= d / 2 && delay <= d);
        d = d * 2 > CLIENT_RESUME_DELAY_MAX_S ? CLIENT_RESUME_DELAY_MAX_S
                                              : d * 2;
    }
    assert_int_equal(r.attempt, 8);
    assert_int_equal(client_resume_next(&r, 10.0, &delay), 0); /* spent */
    client_resume_done(&r);
    assert_int_equal(r.resumes, 1);
    assert_false(client_resume_in_outage(&r));
    /* a new outage starts from the shortest delay again */
    assert_int_equal(client_resume_next(&r, 20.0, &delay), 1);
    assert_true(delay <= CLIENT_RESUME_DELAY_MIN_S);
}

static void test_seeds_differ(void **state)
{
    (void)state;
    client_resume_options o;
    client_resume_options_default(&o);
    client_resume a, b;
    client_resume_init(&a, &o, 1);
    client_resume_init(&b, &o, 2);
    int differ = 0;
    for (int k = 0; k < 4; k++) {
        double da, db;
        assert_int_equal(client_resume_next(&a, 0, &da), 1);
        assert_int_equal(client_resume_next(&b, 0, &db), 1);
        differ += da != db;
    }
    assert_true(differ > 0);
}

static void test_time_bound(void **state)
{
    (void)state;
    client_resume_options o;
    client_resume_options_default(&o);
    o.max_attempts = 100;
    o.max_wait_s = 3;
    client_resume r;
    client_resume_init(&r, &o, 7);
    double now = 100, delay;
    while (client_resume_next(&r, now, &delay)) {
        assert_true(now + delay <= 103.0 + 1e-9); /* never past the bound */
        now += delay;
    }
    assert_true(r.attempt < 100);
    assert_true(now >= 103.0 - 1e-9);

    o.max_attempts = 0; /* --reconnect 0 */
    client_resume_init(&r, &o, 7);
    assert_int_equal(client_resume_next(&r, 0, &delay), 0);
    client_resume_done(&r);
    assert_int_equal(r.resumes, 0); /* nothing was survived */
}

static void test_grid_and_base(void **state)
{
    (void)state;
    /* equal rates: one hop */
    assert_int_equal(client_resume_grid(44100, 44100, 512), 512);
    assert_int_equal(client_resume_grid(48000, 48000, 512), 512);
    /* 22050 into a 44.1 kHz model: half a hop of client frames */
    assert_int_equal(client_resume_grid(22050, 44100, 512), 256);
    /* 44.1 kHz into a 48 kHz model: 2352 client frames = 5 hops */
    assert_int_equal(client_resume_grid(44100, 48000, 512), 2352);
    /* 48 kHz into a 44.1 kHz model: 81920 frames (1.7 s), still used */
    assert_int_equal(client_resume_grid(48000, 44100, 512), 81920);
    /* coarser than 2 s, or nonsense: no grid */
    assert_int_equal(client_resume_grid(8000, 44100, 512), 1);
    assert_int_equal(client_resume_grid(0, 44100, 512), 1);
    assert_int_equal(client_resume_grid(48000, 48000, 0), 1);

    /* base: resume point - tail, down onto the grid, >= 0 */
    assert_int_equal(client_resume_base(100000, 1000, 44100, 512),
                     (100000 - 44100) / 512 * 512);
    assert_int_equal(client_resume_base(100000, 0, 44100, 1), 100000);
    assert_int_equal(client_resume_base(30000, 1000, 44100, 512), 0);
    assert_int_equal(client_resume_base(0, 1000, 44100, 512), 0);
    int64_t b = client_resume_base(1234567, 300, 48000, 512);
    assert_int_equal(b % 512, 0);
    assert_true(b <= 1234567 - 14400 && b > 1234567 - 14400 - 512);
}

static void test_overlap(void **state)
{
    (void)state;
    assert_int_equal(client_resume_overlap(1000, 0, 512), 512);   /* had */
    assert_int_equal(client_resume_overlap(1000, 900, 512), 100); /* part */
    assert_int_equal(client_resume_overlap(1000, 1000, 512), 0);  /* new */
    assert_int_equal(client_resume_overlap(1000, 1200, 512), 0);
    assert_int_equal(client_resume_overlap(0, 0, 512), 0);
}

static void test_options(void **state)
{
    (void)state;
    client_resume_options o;
    client_resume_options_default(&o);
    assert_int_equal(o.max_attempts, CLIENT_RESUME_DEFAULT_ATTEMPTS);
    char err[256];
    assert_int_equal(client_resume_parse_option("--reconnect", "0", &o, err,
                                                sizeof err),
                     1);
    assert_int_equal(o.max_attempts, 0);
    assert_int_equal(client_resume_parse_option("--reconnect-wait", "90", &o,
                                                err, sizeof err),
                     1);
    assert_true(o.max_wait_s == 90.0);
    assert_int_equal(client_resume_parse_option("--resume-tail-ms", "250", &o,
                                                err, sizeof err),
                     1);
    assert_true(o.tail_ms == 250.0);
    assert_int_equal(client_resume_parse_option("--timeout", "3", &o, err,
                                                sizeof err),
                     0);
    assert_int_equal(client_resume_parse_option("--reconnect", "-1", &o, err,
                                                sizeof err),
                     -1);
    assert_string_equal(err, "--reconnect must be a number of attempts, a "
                             "whole number from 0 to 1000 (got '-1')");
    assert_int_equal(client_resume_parse_option("--resume-tail-ms", "1.5", &o,
                                                err, sizeof err),
                     -1);
    assert_int_equal(client_resume_parse_option("--reconnect-wait", "0", &o,
                                                err, sizeof err),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_with_jitter),
        cmocka_unit_test(test_seeds_differ),
        cmocka_unit_test(test_time_bound),
        cmocka_unit_test(test_grid_and_base),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
