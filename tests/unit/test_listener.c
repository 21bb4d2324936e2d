/*
 * test_listener.c - server/listener.h: SO_REUSEPORT listening sockets and
 * the accepted connections' options.
 *
 * - two_listeners_share_a_port: the first socket binds port 0 and reports
 *   the port the kernel chose; a second binds the same port (SO_REUSEPORT);
 *   a connection to the port is accepted by one of them.
 * - accepted_sockets_have_nodelay: an accepted connection has TCP_NODELAY
 *   (a hop's stems leave as several messages back to back: with Nagle's
 *   algorithm all but the first waited for the client's next ACK, a
 *   message period later) and is non-blocking.
 * - bad_address_is_an_error: an address that does not resolve is
 *   DEMIX_EARG with a sentence; accept on a listener with nothing pending
 *   returns -1.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "testutil.h"

static int connect_to(int port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    return c;
}

/* Accept from whichever of the listeners has the connection. */
static int accept_any(const int *fds, int n)
{
    struct pollfd p[4];
    for (int i = 0; i < n; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN;
        p[i].revents = 0;
    }
    assert_true(poll(p, (nfds_t)n, 5000) > 0);
    for (int i = 0; i < n; i++)
        if (p[i].revents & POLLIN)
            return demixd_listener_accept(fds[i]);
    return -1;
}

static void test_two_listeners_share_a_port(void **state)
{
    (void)state;
    char err[256] = "";
    int fd[2], port = 0;
    assert_int_equal(
        demixd_listener_open("127.0.0.1", 0, &fd[0], &port, err, sizeof err),
        DEMIX_OK);
    assert_true(port > 0);
    assert_int_equal(
        demixd_listener_open("127.0.0.1", port, &fd[1], NULL, err, sizeof err),
        DEMIX_OK);
    int c = connect_to(port);
    int a = accept_any(fd, 2);
    assert_true(a >= 0);
    close(a);
    close(c);
    close(fd[0]);
    close(fd[1]);
}

static void test_accepted_sockets_have_nodelay(void **state)
{
    (void)state;
    char err[256] = "";
    int fd, port = 0;
    assert_int_equal(
        demixd_listener_open("127.0.0.1", 0, &fd, &port, err, sizeof err),
        DEMIX_OK);
    int c = connect_to(port);
    int a = accept_any(&fd, 1);
    assert_true(a >= 0);
    int on = 0;
    socklen_t len = sizeof on;
    assert_int_equal(getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    assert_int_not_equal(on, 0);
    assert_true(fcntl(a, F_GETFL) & O_NONBLOCK);
    close(a);
    close(c);
    close(fd);
}

static void test_bad_address_is_an_error(void **state)
{
    (void)state;
    char err[256] = "";
    int fd = 123;
    assert_int_equal(demixd_listener_open("no.such.host.invalid", 0, &fd, NULL,
                                          err, sizeof err),
                     DEMIX_EARG);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err, "no.such.host.invalid"));
    int port = 0;
    assert_int_equal(
        demixd_listener_open("127.0.0.1", 0, &fd, &port, err, sizeof err),
        DEMIX_OK);
    errno = 0;
    assert_int_equal(demixd_listener_accept(fd), -1); /* nothing pending */
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_listeners_share_a_port),
        cmocka_unit_test(test_accepted_sockets_have_nodelay),
        cmocka_unit_test(test_bad_address_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
