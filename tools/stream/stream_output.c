/*
 * stream_output.c - see stream_output.h.
 *
 * Thread context: the main thread only (lws service and callbacks).
 */
#include "stream_output.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <opus/opus.h>

#include "out_paths.h"
#include "pcm_wire.h"
#include "stream_report.h"

#define OPUS_MAX_FRAMES 5760    /* 120 ms at 48 kHz, the largest packet */
#define MIX_STEM_SLOT DEMIX_PROTO_MAX_STEMS /* stems[] slot of the mix */

int64_t stream_output_reached(const stream_session *s)
{
    int64_t m = INT64_MAX;
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++)
        if (s->stems[i].active && s->stems[i].avail < m)
            m = s->stems[i].avail;
    return m == INT64_MAX ? 0 : m;
}

static int stem_write_sink(void *user, const float *frames, size_t n)
{
    stream_stem *st = ((void **)user)[0];
    stream_session *s = ((void **)user)[1];
    int64_t room = s->file_frames - st->written;
    if (!s->reader_done)
        room = INT64_MAX; /* the length is not known yet: nothing to trim */
    if ((int64_t)n > room)
        n = room > 0 ? (size_t)room : 0;
    if (n == 0)
        return DEMIX_OK;
    int rc = audio_writer_write(st->writer, frames, n, s->err, sizeof s->err);
    if (rc)
        return rc;
    st->written += (int64_t)n;
    return DEMIX_OK;
}

/* Decoded session-rate frames of one stem: trim to the real input, then
 * (resample and) write. */
static int stem_deliver(stream_session *s, stream_stem *st,
                        const float *frames, size_t n)
{
    st->avail += (int64_t)n;
    if (s->reader_done) {
        int64_t room = s->real_frames - st->fed;
        if ((int64_t)n > room)
            n = room > 0 ? (size_t)room : 0;
    }
    if (n == 0)
        return DEMIX_OK;
    st->fed += (int64_t)n;
    void *ctx[2] = {st, s};
    if (st->rs)
        return resampler_process(st->rs, frames, n, stem_write_sink, ctx);
    return stem_write_sink(ctx, frames, n);
}

static stream_stem *stem_for_index(stream_session *s, int wire)
{
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++)
        if (s->stems[i].active && s->stems[i].wire_index == wire)
            return &s->stems[i];
    return NULL;
}

int stream_output_receive(stream_session *s, const demix_proto_audio_out *h)
{
    stream_stem *st = stem_for_index(s, h->stem);
    if (!st) { /* ready's stems are the core's slots: not reached */
        stream_session_fail(s, "the server sent stem index %u, which was "
                               "not asked for",
                            (unsigned)h->stem);
        return -1;
    }
    size_t ch = (size_t)s->channels;
    size_t frames = 0;
    int64_t pos; /* the session position of the first frame at out */
    const float *out = s->conv;
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
        int n = opus_decode_float(st->dec, h->payload, (opus_int32)h->payload_bytes,
                                  s->conv, OPUS_MAX_FRAMES, 0);
        if (n < 0) {
            stream_session_fail(s, "a %s Opus packet from the server does "
                                   "not decode: %s",
                                st->name, opus_strerror(n));
            return -1;
        }
        frames = (size_t)n;
        if (st->skip_left > 0) {
            size_t drop = (size_t)st->skip_left < frames ? (size_t)st->skip_left
                                                         : frames;
            st->skip_left -= (int)drop;
            frames -= drop;
            out = s->conv + drop * ch;
        }
        pos = st->dec_pos;
        st->dec_pos += (int64_t)frames;
    } else {
        frames = h->frames;
        if (frames * ch > s->conv_cap) {
            stream_session_fail(s, "an audio message from the server is too "
                                   "large");
            return -1;
        }
        (void)pcm_wire_read(s->out_codec, h->payload, frames * ch, s->conv);
        pos = (int64_t)h->position;
    }
    /* After a resume: the re-primed tail's output is had already. */
    int64_t had = client_resume_overlap(st->avail, s->base + pos,
                                        (int64_t)frames);
    out += (size_t)had * ch;
    frames -= (size_t)had;
    if (stem_deliver(s, st, out, frames)) {
        char why[sizeof s->err];
        snprintf(why, sizeof why, "%s", s->err[0] ? s->err : "cannot write a stem");
        stream_session_fail(s, "%s", why);
        return -1;
    }
    stream_report_probes_resolve(s, ws_client_now_s());
    if (!s->core.end_sent)
        ws_client_want_write(s->ws); /* in-flight room may have opened */
    if (!s->o->quiet && s->info.frames > 0)
        progress_update(&s->bar,
                        (double)stream_output_reached(s) / s->session_rate,
                        "stream");
    return 0;
}

/* Open the writers and decoders once ready says what comes. */
int stream_output_open(stream_session *s)
{
    const demix_proto_ready *r = &s->ready;
    char name[256];
    out_paths_base_name(s->o->input, name, sizeof name);
    if (snprintf(s->dir, sizeof s->dir, "%s/%s", s->o->out_dir, name) >=
        (int)sizeof s->dir) {
        stream_session_fail(s, "output path too long");
        return -1;
    }
    char err[1024];
    if (out_paths_make_dirs(s->dir, err, sizeof err)) {
        stream_session_fail(s, "%s", err);
        return -1;
    }
    s->dir_made = 1;
    int n = 0;
    if (r->mode == DEMIX_PROTO_MODE_MIX) {
        stream_stem *st = &s->stems[MIX_STEM_SLOT];
        st->active = 1;
        st->wire_index = DEMIX_PROTO_STEM_MIX;
        snprintf(st->name, sizeof st->name, "mix");
        n = 1;
    } else {
        for (int i = 0; i < r->stem_count; i++) {
            int src = r->stem_source[i];
            stream_stem *st = &s->stems[src];
            st->active = 1;
            st->wire_index = src;
            memcpy(st->name, r->sources[src], sizeof st->name);
            st->name[sizeof st->name - 1] = '\0';
            n++;
        }
    }
    s->stem_count = n;
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stream_stem *st = &s->stems[i];
        if (!st->active)
            continue;
        char path[STREAM_PATH_BYTES];
        if (snprintf(path, sizeof path, "%s/%s.wav", s->dir, st->name) >=
            (int)sizeof path) {
            stream_session_fail(s, "output path too long");
            return -1;
        }
        if (audio_writer_open(path, s->file_rate, s->channels,
                              s->o->float32 ? AUDIO_FLOAT32 : AUDIO_PCM16,
                              &st->writer, err, sizeof err)) {
            stream_session_fail(s, "%s", err);
            return -1;
        }
        if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
            int e;
            st->dec = opus_decoder_create(s->session_rate, s->channels, &e);
            if (!st->dec) {
                stream_session_fail(s, "cannot create an Opus decoder: %s",
                                    opus_strerror(e));
                return -1;
            }
            st->skip_left = r->opus_pre_skip_frames;
        }
        if (s->session_rate != s->file_rate &&
            resampler_create(s->session_rate, s->file_rate, s->channels,
                             &st->rs, err, sizeof err)) {
            stream_session_fail(s, "%s", err);
            return -1;
        }
    }
    return 0;
}

/* Remove what a failed session wrote. */
void stream_output_remove(stream_session *s)
{
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stream_stem *st = &s->stems[i];
        if (!st->writer)
            continue;
        char path[STREAM_PATH_BYTES];
        snprintf(path, sizeof path, "%s", audio_writer_path(st->writer));
        (void)audio_writer_close(st->writer, NULL, 0);
        st->writer = NULL;
        unlink(path);
    }
    if (s->dir_made)
        rmdir(s->dir);
}

/* After the summary: flush resamplers, check lengths, close the files. */
int stream_output_finish(stream_session *s)
{
    int rc = 0;
    int64_t target = s->file_frames;
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS && !rc; i++) {
        stream_stem *st = &s->stems[i];
        if (!st->active)
            continue;
        if (st->fed < s->real_frames) {
            snprintf(s->err, sizeof s->err,
                     "the server sent %lld of %lld frames of %s",
                     (long long)st->fed, (long long)s->real_frames, st->name);
            return -1;
        }
        void *ctx[2] = {st, s};
        if (st->rs && resampler_flush(st->rs, stem_write_sink, ctx))
            return -1;
        /* Resampling both ways may leave the length one frame short. */
        float zeros[64] = {0};
        while (st->written < target) {
            size_t n = (size_t)(target - st->written);
            size_t per = sizeof zeros / sizeof zeros[0] / (size_t)s->channels;
            if (n > per)
                n = per;
            if (stem_write_sink(ctx, zeros, n))
                return -1;
        }
        int slot = client_session_slot_of(&s->core, st->wire_index);
        if (slot >= 0 && !s->core.slots[slot].last_seen &&
            s->real_frames > 0 && !s->o->quiet)
            fprintf(stderr, "demix stream: warning: the server sent no LAST "
                            "flag on %s\n", st->name);
    }
    for (int i = 0; i <= DEMIX_PROTO_MAX_STEMS; i++) {
        stream_stem *st = &s->stems[i];
        if (!st->writer)
            continue;
        char path[STREAM_PATH_BYTES];
        snprintf(path, sizeof path, "%s", audio_writer_path(st->writer));
        int64_t clipped = audio_writer_clipped(st->writer);
        if (audio_writer_close(st->writer, s->err, sizeof s->err))
            rc = -1;
        st->writer = NULL;
        if (rc)
            unlink(path);
        else {
            fprintf(stderr, "wrote %s\n", path);
            if (clipped > 0)
                fprintf(stderr,
                        "demix: warning: %s: %lld samples beyond [-1, 1] were "
                        "clipped (--float32 keeps them)\n",
                        path, (long long)clipped);
        }
    }
    return rc;
}
