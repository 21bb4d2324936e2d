/*
 * progress.h - a one-line progress bar on a terminal: percent done and speed
 * as a multiple of real time. Draws only when the stream is a terminal
 * (isatty); elsewhere every call is a no-op, so callers need no checks.
 *
 * Usage sketch:
 *
 *     progress p;
 *     progress_init(&p, stderr, total_audio_seconds);
 *     while (work) progress_update(&p, audio_seconds_done, "song.wav");
 *     progress_clear(&p);   // before printing a line of your own
 *     progress_finish(&p);
 *
 * Redraws at most ten times a second. Threads: one thread per bar.
 */
#ifndef DEMIX_PROGRESS_H
#define DEMIX_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    FILE *out;
    int enabled;        /* out is a terminal */
    int drawn;          /* a bar is on the line now */
    double total_s;     /* audio seconds to do; <= 0 when unknown */
    double start_s;     /* monotonic clock at init */
    double last_draw_s;
} progress;

void progress_init(progress *p, FILE *out, double total_audio_s);
/* done_audio_s: audio seconds finished so far; label: a short name. */
void progress_update(progress *p, double done_audio_s, const char *label);
/* Erase the bar (it comes back on the next update). */
void progress_clear(progress *p);
/* Erase the bar for good. */
void progress_finish(progress *p);

/* The monotonic clock in seconds. */
double progress_now_s(void);

#endif /* DEMIX_PROGRESS_H */
