/*
 * fd_limit.h - the open-file limit demixd needs for its sessions.
 *
 * Every live session and every file-API request holds one socket, and a
 * process gets at most RLIMIT_NOFILE descriptors: 1024 by default on
 * Debian (the soft limit), while the calibrated capacity of a GPU reaches
 * thousands of sessions. Without this check the sessions past the limit
 * would fail at accept(), as a refused connection with no protocol error.
 * So demixd raises its soft limit to what it needs (never past the hard
 * limit, never lowering it) and, where even the hard limit is short,
 * lowers a calibrated capacity, or refuses an explicit --max-sessions,
 * with a message naming the numbers.
 */
#ifndef DEMIXD_FD_LIMIT_H
#define DEMIXD_FD_LIMIT_H

/* Descriptors beyond one per session and file job: the listening socket,
 * the model and web files, logs, the page's HTTP requests, libwebsockets'
 * own (event loop, signalling pipe), the engine's (a GPU driver opens
 * several device files). */
#define DEMIXD_FD_RESERVE 64

/* Raise the soft RLIMIT_NOFILE to at least `want` where the hard limit
 * allows (it stays as it is when it is higher already). Returns the soft
 * limit in effect afterwards, saturated at `want` when it is larger or
 * unlimited; -1 when the limit cannot be read (errno set). */
long demixd_fd_limit_raise(long want);

/* Descriptors needed for `sessions` live sessions and `file_jobs` file
 * jobs at once. */
long demixd_fd_needed(long sessions, long file_jobs);

#endif /* DEMIXD_FD_LIMIT_H */
