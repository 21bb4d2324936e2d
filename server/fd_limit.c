/*
 * fd_limit.c - the open-file limit of fd_limit.h.
 *
 * Thread context: the main thread at start, before any other thread.
 */
#include "fd_limit.h"

#include <sys/resource.h>

long demixd_fd_needed(long sessions, long file_jobs)
{
    return sessions + file_jobs + DEMIXD_FD_RESERVE;
}

long demixd_fd_limit_raise(long want)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r))
        return -1;
    if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= (rlim_t)want)
        return want;
    rlim_t target = (rlim_t)want;
    if (r.rlim_max != RLIM_INFINITY && r.rlim_max < target)
        target = r.rlim_max;
    if (target > r.rlim_cur) {
        struct rlimit raised = {target, r.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            r.rlim_cur = target;
    }
    return (long)r.rlim_cur;
}
