/*
 * listener.h - demixd's listening sockets: one per service thread, all on
 * the same address and port with SO_REUSEPORT, so that the kernel spreads
 * new connections over the threads (by a hash of the peer's address and
 * port) and no thread has to hand connections to another.
 *
 * Why not lws's own listener: Debian's lws 4.1 sets SO_REUSEADDR only
 * (LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE does something on Windows alone),
 * so a second context cannot bind the port. demixd binds the sockets
 * itself and each service thread's context adopts its socket
 * (service.c).
 *
 * Usage sketch:
 *
 *     int fd, port = 0;                        // 0: the kernel picks
 *     if (demixd_listener_open("127.0.0.1", port, &fd, &port, err, cap))
 *         die(err);                            // the first socket
 *     demixd_listener_open("127.0.0.1", port, &fd2, NULL, err, cap);
 *
 * Errors: DEMIX_EARG for an address that does not resolve, DEMIX_EIO for
 * a socket, bind or listen failure (err names the call and errno's text).
 *
 * Thread context: any thread; no shared state.
 */
#ifndef DEMIXD_LISTENER_H
#define DEMIXD_LISTENER_H

#include <stddef.h>

#include "demix_error.h"

/* A non-blocking, close-on-exec TCP socket listening on host:port (port 0:
 * any free port) with SO_REUSEADDR and SO_REUSEPORT. *bound_port (if not
 * NULL) gets the port it bound. */
DEMIX_WARN_UNUSED int demixd_listener_open(const char *host, int port,
                                           int *fd, int *bound_port,
                                           char *err, size_t err_cap);

/* Accept one pending connection: its descriptor (non-blocking,
 * close-on-exec, TCP_NODELAY), or -1 when none is pending or accept
 * failed (errno). */
int demixd_listener_accept(int fd);

#endif /* DEMIXD_LISTENER_H */
