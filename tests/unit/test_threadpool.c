/*
 * test_threadpool.c - the persistent thread pool (include/threadpool.h):
 *  (a) bad arguments: create with a NULL out or a thread count outside
 *      1..DEMIX_THREADPOOL_MAX_THREADS, run with a NULL function or negative
 *      tasks return DEMIX_EARG (and run nothing); destroy(NULL) is a no-op;
 *      a NULL pool runs the tasks in order on the calling thread and counts
 *      as 1 thread; tasks 0 runs nothing;
 *  (b) every task index runs exactly once, and the tasks' plain writes are
 *      all visible when run returns, for 1..4 threads and task counts from
 *      1 to more than one internal round (2^20 - 1 tasks);
 *  (c) many runs back to back, and runs with pauses between them long
 *      enough for the workers to go to sleep, each run exactly once per
 *      task;
 *  (d) the workers take part: with N threads, N tasks that each wait until
 *      all N have started all finish (they can only if they run at once);
 *  (e) destroy with workers asleep, spinning, or just started.
 * Tasks wait for each other with a bound of many seconds only to turn a
 * hang into a failure; nothing is timed.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "threadpool.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ (a) args */

typedef struct order_job {
    int seen[8];
    int count;
} order_job;

static void record_order(void *arg, int task)
{
    order_job *j = arg;
    j->seen[j->count++] = task;
}

static void never_run(void *arg, int task)
{
    (void)arg, (void)task;
    fail_msg("a task ran although run was refused or had no tasks");
}

static atomic_int null_arg_runs;

static void expect_null_arg(void *arg, int task)
{
    (void)task;
    if (arg == NULL)
        atomic_fetch_add(&null_arg_runs, 1);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    demix_threadpool *p = (demix_threadpool *)&p; /* must be reset to NULL */
    assert_int_equal(demix_threadpool_create(0, &p), DEMIX_EARG);
    assert_null(p);
    p = (demix_threadpool *)&p;
    assert_int_equal(demix_threadpool_create(-3, &p), DEMIX_EARG);
    assert_null(p);
    assert_int_equal(
        demix_threadpool_create(DEMIX_THREADPOOL_MAX_THREADS + 1, &p),
        DEMIX_EARG);
    assert_null(p);
    assert_int_equal(demix_threadpool_create(2, NULL), DEMIX_EARG);
    demix_threadpool_destroy(NULL);
    assert_int_equal(demix_threadpool_threads(NULL), 1);

    /* A NULL pool: in order, on this thread. */
    order_job j = {{0}, 0};
    assert_int_equal(demix_threadpool_run(NULL, 5, record_order, &j), DEMIX_OK);
    assert_int_equal(j.count, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(j.seen[i], i);
    assert_int_equal(demix_threadpool_run(NULL, 3, NULL, &j), DEMIX_EARG);
    assert_int_equal(demix_threadpool_run(NULL, -1, never_run, NULL), DEMIX_EARG);
    assert_int_equal(demix_threadpool_run(NULL, 0, never_run, NULL), DEMIX_OK);

    assert_int_equal(demix_threadpool_create(3, &p), DEMIX_OK);
    assert_non_null(p);
    assert_int_equal(demix_threadpool_threads(p), 3);
    assert_int_equal(demix_threadpool_run(p, 4, NULL, NULL), DEMIX_EARG);
    assert_int_equal(demix_threadpool_run(p, -5, never_run, NULL), DEMIX_EARG);
    assert_int_equal(demix_threadpool_run(p, 0, never_run, NULL), DEMIX_OK);
    /* arg may be NULL: it is passed through untouched. */
    atomic_store(&null_arg_runs, 0);
    assert_int_equal(demix_threadpool_run(p, 6, expect_null_arg, NULL), DEMIX_OK);
    assert_int_equal(atomic_load(&null_arg_runs), 6);
    demix_threadpool_destroy(p);
}

/* ------------------------------------------------------- (b) once each */

typedef struct count_job {
    atomic_int *runs;  /* [tasks] times each task ran */
    int *value;        /* [tasks] plain writes, checked after run */
    int stamp;
} count_job;

static void count_task(void *arg, int task)
{
    count_job *j = arg;
    atomic_fetch_add(&j->runs[task], 1);
    j->value[task] = j->stamp ^ task;
}

static void check_once(demix_threadpool *p, count_job *j, int tasks, int stamp)
{
    for (int i = 0; i < tasks; i++)
        atomic_store(&j->runs[i], 0);
    j->stamp = stamp;
    assert_int_equal(demix_threadpool_run(p, tasks, count_task, j), DEMIX_OK);
    for (int i = 0; i < tasks; i++) {
        if (atomic_load(&j->runs[i]) != 1)
            fail_msg("%d threads, %d tasks: task %d ran %d times",
                     demix_threadpool_threads(p), tasks, i,
                     atomic_load(&j->runs[i]));
        if (j->value[i] != (stamp ^ i))
            fail_msg("%d threads, %d tasks: task %d's write is not visible",
                     demix_threadpool_threads(p), tasks, i);
    }
}

static count_job make_count_job(int tasks)
{
    count_job j;
    j.runs = calloc((size_t)tasks, sizeof *j.runs);
    j.value = calloc((size_t)tasks, sizeof *j.value);
    assert_non_null(j.runs);
    assert_non_null(j.value);
    for (int i = 0; i < tasks; i++)
        atomic_init(&j.runs[i], 0);
    return j;
}

static void test_every_task_once(void **state)
{
    (void)state;
    enum { BIG = (1 << 20) + 7 }; /* more than one round of 2^20 - 1 */
    const int counts[] = {1, 2, 3, 4, 5, 7, 16, 63, 1000, BIG};
    count_job j = make_count_job(BIG);
    int stamp = (int)(demix_test_seed() & 0xffff);
    for (int threads = 1; threads <= 4; threads++) {
        demix_threadpool *p = NULL;
        assert_int_equal(demix_threadpool_create(threads, &p), DEMIX_OK);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
            check_once(p, &j, counts[c], stamp + (int)c);
        demix_threadpool_destroy(p);
    }
    free(j.runs);
    free(j.value);
}

/* ------------------------------------------------------- (c) repeated */

static void test_repeated_runs(void **state)
{
    (void)state;
    count_job j = make_count_job(64);
    for (int threads = 2; threads <= 4; threads++) {
        demix_threadpool *p = NULL;
        assert_int_equal(demix_threadpool_create(threads, &p), DEMIX_OK);
        for (int r = 0; r < 3000; r++) /* workers stay awake between runs */
            check_once(p, &j, 1 + r % 64, r);
        for (int r = 0; r < 6; r++) { /* workers fall asleep between runs */
            sleep_ms(5);
            check_once(p, &j, 1 + r * 11, r);
        }
        demix_threadpool_destroy(p);
    }
    free(j.runs);
    free(j.value);
}

/* --------------------------------------------------- (d) concurrency */

typedef struct meet_job {
    atomic_int arrived;
    int expected;
    atomic_int timed_out;
} meet_job;

/* Each task waits (up to ~20 s) until `expected` tasks have arrived. */
static void meet_task(void *arg, int task)
{
    (void)task;
    meet_job *j = arg;
    atomic_fetch_add(&j->arrived, 1);
    for (int i = 0; i < 20000; i++) {
        if (atomic_load(&j->arrived) >= j->expected)
            return;
        sleep_ms(1);
    }
    atomic_store(&j->timed_out, 1);
}

static void test_workers_take_part(void **state)
{
    (void)state;
    for (int threads = 2; threads <= 4; threads++) {
        demix_threadpool *p = NULL;
        assert_int_equal(demix_threadpool_create(threads, &p), DEMIX_OK);
        for (int round = 0; round < 3; round++) {
            if (round == 2)
                sleep_ms(5); /* workers asleep: the run must wake them */
            meet_job j;
            atomic_init(&j.arrived, 0);
            atomic_init(&j.timed_out, 0);
            j.expected = threads;
            assert_int_equal(demix_threadpool_run(p, threads, meet_task, &j),
                             DEMIX_OK);
            assert_int_equal(atomic_load(&j.arrived), threads);
            if (atomic_load(&j.timed_out))
                fail_msg("%d threads: the %d tasks did not all run at once",
                         threads, threads);
        }
        demix_threadpool_destroy(p);
    }
}

/* ------------------------------------------------------- (e) destroy */

static void test_destroy_idle(void **state)
{
    (void)state;
    count_job j = make_count_job(16);
    for (int threads = 1; threads <= 4; threads++) {
        demix_threadpool *p = NULL;
        /* just started: workers may not have reached their wait yet */
        assert_int_equal(demix_threadpool_create(threads, &p), DEMIX_OK);
        demix_threadpool_destroy(p);
        /* right after a run: workers spinning */
        assert_int_equal(demix_threadpool_create(threads, &p), DEMIX_OK);
        check_once(p, &j, 16, threads);
        demix_threadpool_destroy(p);
        /* asleep on the condition variable */
        assert_int_equal(demix_threadpool_create(threads, &p), DEMIX_OK);
        check_once(p, &j, 16, threads + 100);
        sleep_ms(10);
        demix_threadpool_destroy(p);
    }
    free(j.runs);
    free(j.value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_every_task_once),
        cmocka_unit_test(test_repeated_runs),
        cmocka_unit_test(test_workers_take_part),
        cmocka_unit_test(test_destroy_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
