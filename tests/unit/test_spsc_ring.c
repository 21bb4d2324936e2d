/*
 * test_spsc_ring.c - server/spsc_ring.h, the lock-free ring of news from
 * the scheduler to a service thread.
 *
 * - fifo_and_bounds: items come out in order; the capacity is the size
 *   asked for rounded up to a power of two; a full ring refuses a push and
 *   keeps what it holds; an empty one pops NULL; bad sizes are DEMIX_EARG.
 * - two_threads: a producer thread pushes 2,000,000 numbered items
 *   (retrying when full) while the consumer pops them: every item arrives
 *   once, in order (run under TSan in the sanitizer job).
 */
#include <pthread.h>
#include <stdint.h>

#include "spsc_ring.h"
#include "testutil.h"

static void test_fifo_and_bounds(void **state)
{
    (void)state;
    demixd_spsc_ring r;
    assert_int_equal(demixd_spsc_ring_init(&r, 0), DEMIX_EARG);
    assert_int_equal(demixd_spsc_ring_init(NULL, 4), DEMIX_EARG);
    assert_int_equal(demixd_spsc_ring_init(&r, 5), DEMIX_OK);
    assert_int_equal(demixd_spsc_ring_capacity(&r), 8);
    assert_null(demixd_spsc_ring_pop(&r));
    for (uintptr_t i = 1; i <= 8; i++)
        assert_int_equal(demixd_spsc_ring_push(&r, (void *)i), 1);
    assert_int_equal(demixd_spsc_ring_push(&r, (void *)99), 0);
    assert_int_equal(demixd_spsc_ring_count(&r), 8);
    for (uintptr_t i = 1; i <= 3; i++)
        assert_ptr_equal(demixd_spsc_ring_pop(&r), (void *)i);
    for (uintptr_t i = 9; i <= 11; i++) /* wraps around */
        assert_int_equal(demixd_spsc_ring_push(&r, (void *)i), 1);
    for (uintptr_t i = 4; i <= 11; i++)
        assert_ptr_equal(demixd_spsc_ring_pop(&r), (void *)i);
    assert_null(demixd_spsc_ring_pop(&r));
    demixd_spsc_ring_free(&r);
    demixd_spsc_ring_free(NULL);
}

#define ITEMS 2000000

static void *producer(void *arg)
{
    demixd_spsc_ring *r = arg;
    for (uintptr_t i = 1; i <= ITEMS; i++)
        while (!demixd_spsc_ring_push(r, (void *)i))
            ;
    return NULL;
}

static void test_two_threads(void **state)
{
    (void)state;
    demixd_spsc_ring r;
    assert_int_equal(demixd_spsc_ring_init(&r, 64), DEMIX_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, &r), 0);
    uintptr_t want = 1;
    while (want <= ITEMS) {
        void *p = demixd_spsc_ring_pop(&r);
        if (!p)
            continue;
        if ((uintptr_t)p != want)
            fail_msg("item %lu came where %lu was due", (unsigned long)(uintptr_t)p,
                     (unsigned long)want);
        want++;
    }
    pthread_join(t, NULL);
    assert_null(demixd_spsc_ring_pop(&r));
    demixd_spsc_ring_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_bounds),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
