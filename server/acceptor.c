/*
 * acceptor.c - demixd's accept thread: takes every new connection on the
 * one listening socket and hands it to the service thread with the
 * fewest connections (server.h, demixd_acceptor_*).
 *
 * Why not let the kernel spread them (one SO_REUSEPORT socket per
 * thread, as before): it hashes the peer's address and port, so the
 * busiest of T threads gets about 1 + sqrt(2 ln T * T / N) times the mean
 * of N connections: 20 % over the mean for 2,000 sessions on 15 threads,
 * 40 % for 500, and a service thread's CPU is what bounds the sessions
 * per box (bench/RESULTS.md). Counting is exact here.
 *
 * Handoff: each service thread has a bounded single-producer ring of
 * descriptors (this thread produces, the service thread consumes in its
 * wake callback and adopts them into its lws context: service.c). The
 * load of a thread is its live lws connections (`wsi_live`, counted by
 * its own WSI_CREATE and WSI_DESTROY callbacks) plus what waits in its
 * ring. A full ring moves the connection to the next thread; when every
 * ring is full the connection is closed (logged): the threads are not
 * keeping up with accepting, and the kernel's backlog holds the rest.
 *
 * Stop: demixd_acceptor_stop writes the thread's eventfd; the thread
 * leaves its poll, and stop closes whatever still waits in the rings.
 *
 * Thread context: demixd_acceptor_start/stop on the main thread; the
 * loop on the accept thread ("demixd-accept").
 */
#define _GNU_SOURCE /* pthread_setname_np */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "server.h"

#define ACCEPT_RING_FDS 1024 /* per service thread */

/* Descriptors travel as ring items, which may not be NULL: fd + 1. */
static void *fd_item(int fd)
{
    return (void *)(intptr_t)(fd + 1);
}

static int item_fd(void *item)
{
    return (int)(intptr_t)item - 1;
}

static int ring_waiting(demixd_spsc_ring *r)
{
    return (int)(atomic_load_explicit(&r->head, memory_order_acquire) -
                 atomic_load_explicit(&r->tail, memory_order_acquire));
}

/* The service threads in order of load, lightest first, into order[]. */
static void by_load(demixd *d, int *order)
{
    int load[DEMIXD_MAX_SERVICE_THREADS];
    const int n = d->service_count;
    for (int k = 0; k < n; k++) {
        demixd_service *svc = &d->services[k];
        load[k] = demixd_service_connections(svc);
        order[k] = k;
    }
    for (int i = 1; i < n; i++) /* insertion sort: n is the thread count */
        for (int j = i; j > 0 && load[order[j]] < load[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

static void hand_over(demixd *d, int fd)
{
    int order[DEMIXD_MAX_SERVICE_THREADS];
    by_load(d, order);
    for (int i = 0; i < d->service_count; i++) {
        demixd_service *svc = &d->services[order[i]];
        if (demixd_spsc_ring_push(&svc->accepted, fd_item(fd))) {
            demixd_service_wake(svc);
            return;
        }
    }
    close(fd);
    demixd_log(DEMIXD_LOG_WARN, "accept_dropped",
               "msg=\"every service thread's accept ring is full\"");
}

static void *accept_main(void *arg)
{
    demixd *d = arg;
    pthread_setname_np(pthread_self(), "demixd-accept");
    struct pollfd pf[2] = {{d->listen_fd, POLLIN, 0},
                           {d->acceptor_stop_fd, POLLIN, 0}};
    for (;;) {
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            break;
        if (pf[1].revents)
            break;
        int fd;
        while ((fd = demixd_listener_accept(d->listen_fd)) >= 0)
            hand_over(d, fd);
        if (errno == EMFILE || errno == ENFILE) {
            /* out of descriptors: the pending connection stays in the
             * backlog; wait for closes rather than spin on it */
            demixd_log(DEMIXD_LOG_WARN, "accept",
                       "msg=\"out of file descriptors\"");
            poll(&pf[1], 1, 100);
        }
    }
    return NULL;
}

int demixd_acceptor_start(demixd *d)
{
    d->acceptor_stop_fd = eventfd(0, EFD_CLOEXEC);
    if (d->acceptor_stop_fd < 0)
        return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* main.c takes the signals */
    int rc = pthread_create(&d->acceptor, NULL, accept_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        close(d->acceptor_stop_fd);
        d->acceptor_stop_fd = -1;
        return -1;
    }
    d->acceptor_running = 1;
    return 0;
}

void demixd_acceptor_stop(demixd *d)
{
    if (d->acceptor_running) {
        uint64_t one = 1;
        if (write(d->acceptor_stop_fd, &one, sizeof one) < 0)
            demixd_log(DEMIXD_LOG_WARN, "accept", "msg=\"cannot stop: %s\"",
                       strerror(errno));
        pthread_join(d->acceptor, NULL);
        d->acceptor_running = 0;
    }
    if (d->acceptor_stop_fd >= 0)
        close(d->acceptor_stop_fd);
    d->acceptor_stop_fd = -1;
    /* connections handed to threads that had stopped adopting */
    for (int k = 0; k < d->service_count; k++) {
        void *item;
        while ((item = demixd_spsc_ring_pop(&d->services[k].accepted)))
            close(item_fd(item));
    }
}

int demixd_acceptor_ring_init(demixd_service *svc)
{
    return demixd_spsc_ring_init(&svc->accepted, ACCEPT_RING_FDS);
}

int demixd_service_connections(demixd_service *svc)
{
    return atomic_load_explicit(&svc->wsi_live, memory_order_relaxed) -
           svc->wsi_base + ring_waiting(&svc->accepted);
}

int demixd_acceptor_take(demixd_service *svc)
{
    void *item = demixd_spsc_ring_pop(&svc->accepted);
    return item ? item_fd(item) : -1;
}
