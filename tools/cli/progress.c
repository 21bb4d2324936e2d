/*
 * progress.c - the terminal progress bar of progress.h: a carriage return
 * and a redraw of one line, "\r\033[K" to erase it.
 *
 * Thread context: the caller's thread.
 */
#include "progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_CELLS 30
#define LABEL_CHARS 32

double progress_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void progress_init(progress *p, FILE *out, double total_audio_s)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->enabled = out && isatty(fileno(out));
    p->total_s = total_audio_s;
    p->start_s = progress_now_s();
    p->last_draw_s = -1.0;
}

void progress_update(progress *p, double done_audio_s, const char *label)
{
    if (!p->enabled)
        return;
    double now = progress_now_s();
    if (p->drawn && now - p->last_draw_s < 0.1)
        return;
    p->last_draw_s = now;
    double elapsed = now - p->start_s;
    double speed = elapsed > 0 ? done_audio_s / elapsed : 0.0;
    double frac = p->total_s > 0 ? done_audio_s / p->total_s : 0.0;
    if (frac > 1.0)
        frac = 1.0;
    if (frac < 0.0)
        frac = 0.0;
    char bar[BAR_CELLS + 1];
    int full = (int)(frac * BAR_CELLS + 0.5);
    for (int i = 0; i < BAR_CELLS; i++)
        bar[i] = i < full ? '#' : '.';
    bar[BAR_CELLS] = '\0';
    /* Keep the end of a long name: it is the part that differs. */
    const char *name = label ? label : "";
    size_t len = strlen(name);
    if (len > LABEL_CHARS)
        name += len - LABEL_CHARS;
    if (p->total_s > 0)
        fprintf(p->out, "\r\033[K[%s] %3.0f%%  %6.1fx real time  %s", bar,
                frac * 100.0, speed, name);
    else
        fprintf(p->out, "\r\033[K%.1f s  %6.1fx real time  %s", done_audio_s,
                speed, name);
    fflush(p->out);
    p->drawn = 1;
}

void progress_clear(progress *p)
{
    if (!p->enabled || !p->drawn)
        return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = 0;
}

void progress_finish(progress *p)
{
    progress_clear(p);
    p->enabled = 0;
}
