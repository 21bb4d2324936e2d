/*
 * stream_report.c - see stream_report.h.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include "stream_report.h"

#include <stdio.h>
#include <stdlib.h>

#include "stream_output.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void stream_report_probe_push(stream_session *s, int64_t pos, double t)
{
    if (pos < 0 || s->probe_head - s->probe_tail >= STREAM_PROBE_RING)
        return;
    s->probes[s->probe_head % STREAM_PROBE_RING] = (stream_probe){pos, t};
    s->probe_head++;
}

void stream_report_probes_resolve(stream_session *s, double now)
{
    int64_t reached = stream_output_reached(s);
    while (s->probe_tail < s->probe_head) {
        const stream_probe *p = &s->probes[s->probe_tail % STREAM_PROBE_RING];
        if (p->pos >= reached)
            break;
        if (s->lat_n == s->lat_cap) {
            size_t cap = s->lat_cap ? 2 * s->lat_cap : 1024;
            double *q = realloc(s->lat, cap * sizeof *q);
            if (!q)
                break; /* figures only: stop collecting */
            s->lat = q;
            s->lat_cap = cap;
        }
        s->lat[s->lat_n++] = now - p->t;
        s->probe_tail++;
    }
}

void stream_report_print(stream_session *s)
{
    if (s->o->quiet)
        return;
    const demix_proto_ready *r = &s->ready;
    double rate = r->client_rate_hz;
    if (s->lat_n) {
        qsort(s->lat, s->lat_n, sizeof *s->lat, cmp_double);
        double med = s->lat[s->lat_n / 2];
        double p90 = s->lat[(size_t)(0.9 * (double)(s->lat_n - 1))];
        double max = s->lat[s->lat_n - 1];
        fprintf(stderr,
                "demix stream: latency: announced %.1f ms (%d frames, the "
                "worst case), measured median %.1f ms, p90 %.1f ms, max %.1f "
                "ms over %zu positions%s\n",
                1000.0 * r->latency_frames / rate, r->latency_frames,
                1000.0 * med, 1000.0 * p90, 1000.0 * max, s->lat_n,
                s->o->realtime ? "" : " (--fast: includes queueing)");
    }
    const demix_proto_summary *m = &s->summary;
    fprintf(stderr,
            "demix stream: summary: session %s, %llu frames in, %llu out, "
            "%.2f s of audio in %.2f s (%.1fx real time), %llu hops, %llu "
            "late\n",
            m->session, (unsigned long long)m->input_frames,
            (unsigned long long)m->output_frames, m->duration_s, m->wall_s,
            m->wall_s > 0 ? m->duration_s / m->wall_s : 0.0,
            (unsigned long long)m->hops, (unsigned long long)m->late_hops);
}
