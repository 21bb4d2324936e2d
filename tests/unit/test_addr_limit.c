/*
 * test_addr_limit.c - server/addr_limit.c: connections counted per
 * address up to the limit, released ones free their place, ports do not
 * matter, IPv4-mapped IPv6 is its IPv4 address, loopback is free when
 * asked, 0 is unlimited, entries go with their last connection, and the
 * count holds under threads.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "addr_limit.h"

static struct sockaddr_in v4(const char *ip, int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 v6(const char *ip, int port)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

#define SA(x) ((const struct sockaddr *)&(x)), (socklen_t)sizeof(x)

static void test_limit_and_release(void **state)
{
    (void)state;
    demixd_addr_limit *t;
    assert_int_equal(demixd_addr_limit_create(3, 1, &t), DEMIX_OK);
    demixd_addr_entry *e[4];
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in a = v4("192.0.2.7", 40000 + i); /* ports differ */
        assert_int_equal(demixd_addr_limit_acquire(t, SA(a), &e[i]), 1);
        assert_non_null(e[i]);
    }
    struct sockaddr_in a = v4("192.0.2.7", 50000);
    assert_int_equal(demixd_addr_limit_count(t, SA(a)), 3);
    assert_int_equal(demixd_addr_limit_acquire(t, SA(a), &e[3]), 0);
    assert_null(e[3]);
    /* another address is not affected */
    struct sockaddr_in b = v4("192.0.2.8", 1);
    demixd_addr_entry *eb;
    assert_int_equal(demixd_addr_limit_acquire(t, SA(b), &eb), 1);
    assert_int_equal(demixd_addr_limit_addresses(t), 2);
    /* a released connection frees its place */
    demixd_addr_limit_release(t, e[1]);
    assert_int_equal(demixd_addr_limit_count(t, SA(a)), 2);
    assert_int_equal(demixd_addr_limit_acquire(t, SA(a), &e[1]), 1);
    for (int i = 0; i < 3; i++)
        demixd_addr_limit_release(t, e[i]);
    demixd_addr_limit_release(t, eb);
    demixd_addr_limit_release(t, NULL);
    assert_int_equal(demixd_addr_limit_count(t, SA(a)), 0);
    assert_int_equal(demixd_addr_limit_addresses(t), 0); /* entries freed */
    demixd_addr_limit_destroy(t);
}

static void test_ipv6_and_mapped(void **state)
{
    (void)state;
    demixd_addr_limit *t;
    assert_int_equal(demixd_addr_limit_create(1, 1, &t), DEMIX_OK);
    struct sockaddr_in a = v4("198.51.100.1", 1);
    struct sockaddr_in6 m = v6("::ffff:198.51.100.1", 2);
    demixd_addr_entry *e, *f;
    assert_int_equal(demixd_addr_limit_acquire(t, SA(a), &e), 1);
    assert_int_equal(demixd_addr_limit_acquire(t, SA(m), &f), 0);
    struct sockaddr_in6 x = v6("2001:db8::1", 3), y = v6("2001:db8::2", 3);
    demixd_addr_entry *ex, *ey, *ex2;
    assert_int_equal(demixd_addr_limit_acquire(t, SA(x), &ex), 1);
    assert_int_equal(demixd_addr_limit_acquire(t, SA(y), &ey), 1);
    assert_int_equal(demixd_addr_limit_acquire(t, SA(x), &ex2), 0);
    demixd_addr_limit_release(t, e);
    demixd_addr_limit_release(t, ex);
    demixd_addr_limit_release(t, ey);
    demixd_addr_limit_destroy(t);
}

static void test_loopback_and_unlimited(void **state)
{
    (void)state;
    demixd_addr_limit *t;
    assert_int_equal(demixd_addr_limit_create(1, 1, &t), DEMIX_OK);
    struct sockaddr_in lo = v4("127.0.0.1", 1), lo2 = v4("127.3.4.5", 1);
    struct sockaddr_in6 lo6 = v6("::1", 1);
    demixd_addr_entry *e;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(demixd_addr_limit_acquire(t, SA(lo), &e), 1);
        assert_null(e); /* not counted */
        assert_int_equal(demixd_addr_limit_acquire(t, SA(lo2), &e), 1);
        assert_int_equal(demixd_addr_limit_acquire(t, SA(lo6), &e), 1);
    }
    demixd_addr_limit_destroy(t);

    /* loopback counted when not free */
    assert_int_equal(demixd_addr_limit_create(1, 0, &t), DEMIX_OK);
    demixd_addr_entry *a;
    assert_int_equal(demixd_addr_limit_acquire(t, SA(lo), &a), 1);
    assert_int_equal(demixd_addr_limit_acquire(t, SA(lo), &e), 0);
    demixd_addr_limit_release(t, a);
    demixd_addr_limit_destroy(t);

    /* 0: unlimited, nothing counted */
    assert_int_equal(demixd_addr_limit_create(0, 0, &t), DEMIX_OK);
    struct sockaddr_in x = v4("203.0.113.9", 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(demixd_addr_limit_acquire(t, SA(x), &e), 1);
        assert_null(e);
    }
    assert_int_equal(demixd_addr_limit_max(t), 0);
    demixd_addr_limit_destroy(t);

    /* other families are not counted; bad arguments */
    assert_int_equal(demixd_addr_limit_create(1, 0, &t), DEMIX_OK);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(demixd_addr_limit_acquire(t, &un, sizeof un, &e), 1);
    assert_null(e);
    demixd_addr_limit_destroy(t);
    demixd_addr_limit_destroy(NULL);
    assert_int_equal(demixd_addr_limit_create(-1, 0, &t), DEMIX_EARG);
    assert_int_equal(demixd_addr_limit_create(1, 0, NULL), DEMIX_EARG);
}

/* Threads acquire and release on a few addresses; no count ever passes
 * the limit and everything is released at the end. */
#define THREADS 4
#define ROUNDS 20000
static demixd_addr_limit *g_t;
static atomic_int g_over;

static void *worker(void *arg)
{
    int k = (int)(intptr_t)arg;
    char ip[32];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(ip, sizeof ip, "10.0.0.%d", (i + k) % 3);
        struct sockaddr_in a = v4(ip, k);
        demixd_addr_entry *e;
        if (demixd_addr_limit_acquire(g_t, SA(a), &e) == 1) {
            if (demixd_addr_limit_count(g_t, SA(a)) > 2)
                atomic_fetch_add(&g_over, 1);
            demixd_addr_limit_release(g_t, e);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    assert_int_equal(demixd_addr_limit_create(2, 0, &g_t), DEMIX_OK);
    atomic_init(&g_over, 0);
    pthread_t th[THREADS];
    for (int k = 0; k < THREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, worker, (void *)(intptr_t)k), 0);
    for (int k = 0; k < THREADS; k++)
        pthread_join(th[k], NULL);
    assert_int_equal(atomic_load(&g_over), 0);
    assert_int_equal(demixd_addr_limit_addresses(g_t), 0);
    demixd_addr_limit_destroy(g_t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_and_release),
        cmocka_unit_test(test_ipv6_and_mapped),
        cmocka_unit_test(test_loopback_and_unlimited),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
