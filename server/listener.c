/*
 * listener.c - the SO_REUSEPORT listening sockets of listener.h.
 *
 * The backlog is SOMAXCONN (the kernel caps it at net.core.somaxconn):
 * thousands of clients connecting within a second must not be refused
 * while a service thread is busy.
 *
 * Thread context: any thread.
 */
#define _GNU_SOURCE /* accept4 */

#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int demixd_listener_open(const char *host, int port, int *fd, int *bound_port,
                         char *err, size_t err_cap)
{
    *fd = -1;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, service, &hints, &ai);
    if (gai) {
        snprintf(err, err_cap, "cannot resolve %s: %s", host,
                 gai_strerror(gai));
        return DEMIX_EARG;
    }
    /* Every demixd socket of the port has SO_REUSEPORT, so a second
     * demixd of the same user would join the port quietly and take half
     * its connections: before the first socket, a plain probe must be
     * able to bind it. */
    if (bound_port && port != 0) {
        int probe = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                           ai->ai_protocol);
        int one_ = 1;
        if (probe >= 0 &&
            !setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one_, sizeof one_) &&
            bind(probe, ai->ai_addr, ai->ai_addrlen) && errno == EADDRINUSE) {
            close(probe);
            freeaddrinfo(ai);
            snprintf(err, err_cap,
                     "%s:%d: address already in use (another demixd?), try "
                     "--port",
                     host, port);
            return DEMIX_EIO;
        }
        if (probe >= 0)
            close(probe);
    }
    int s = socket(ai->ai_family,
                   ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   ai->ai_protocol);
    const char *call = "socket";
    int one = 1;
    if (s >= 0) {
        call = "setsockopt";
        if (!setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) &&
            !setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) {
            call = "bind";
            if (!bind(s, ai->ai_addr, ai->ai_addrlen)) {
                call = "listen";
                if (!listen(s, SOMAXCONN))
                    call = NULL;
            }
        }
    }
    freeaddrinfo(ai);
    if (call) {
        if (errno == EADDRINUSE)
            snprintf(err, err_cap,
                     "%s:%d: address already in use (another demixd?), try "
                     "--port",
                     host, port);
        else
            snprintf(err, err_cap, "%s %s:%d: %s", call, host, port,
                     strerror(errno));
        if (s >= 0)
            close(s);
        return DEMIX_EIO;
    }
    if (bound_port) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(s, (struct sockaddr *)&ss, &len)) {
            snprintf(err, err_cap, "getsockname: %s", strerror(errno));
            close(s);
            return DEMIX_EIO;
        }
        *bound_port = ss.ss_family == AF_INET6
                          ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                          : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    *fd = s;
    return DEMIX_OK;
}

int demixd_listener_accept(int fd)
{
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
        /* A hop's four stems leave as four messages back to back: with
         * Nagle's algorithm the last three wait for the client's ACK,
         * which rides on its next input message, a message period later
         * (measured: +10 ms for a fifth of the positions). lws sets this
         * on the sockets it accepts itself, not on adopted ones. */
        int one = 1;
        (void)setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return c;
}
