/*
 * encode_pool.c - the parallel output encoding of encode_pool.h.
 *
 * Thread context: create/destroy on the main thread; ready_all on the lws
 * thread; the tasks on the pool's threads and the lws thread.
 */
#include "encode_pool.h"

#include <stdlib.h>

#include "session_impl.h"

int demixd_encode_pool_create(demixd *d, int threads)
{
    d->encode_pool = NULL;
    d->encode_batch = NULL;
    if (threads <= 1)
        return DEMIX_OK;
    d->encode_batch = calloc((size_t)d->max_sessions, sizeof *d->encode_batch);
    if (!d->encode_batch ||
        demix_threadpool_create(threads, &d->encode_pool)) {
        free(d->encode_batch);
        d->encode_batch = NULL;
        return DEMIX_ENOMEM;
    }
    return DEMIX_OK;
}

void demixd_encode_pool_destroy(demixd *d)
{
    demix_threadpool_destroy(d->encode_pool);
    d->encode_pool = NULL;
    free(d->encode_batch);
    d->encode_batch = NULL;
}

static void encode_task(void *arg, int i)
{
    demixd *d = arg;
    demixd__session_encode_ready(d->encode_batch[i]);
}

void demixd_encode_ready_all(demixd *d)
{
    if (!d->encode_pool)
        return;
    /* Only sessions with a stream hold a scheduler reservation, so at most
     * max_sessions qualify; any beyond (none) would be left to the scan. */
    int n = 0;
    for (demixd_session *s = d->sessions; s && n < d->max_sessions;
         s = s->next)
        if (s->stream && !s->closing)
            d->encode_batch[n++] = s;
    if (n < 2)
        return; /* the scan does one as cheaply */
    if (demix_threadpool_run(d->encode_pool, n, encode_task, d))
        demixd_log(DEMIXD_LOG_WARN, "encode_pool", "msg=\"run refused\"");
}
