/*
 * audio_io.c - libsndfile behind audio_io.h.
 *
 * Files are opened with open(2) first and handed to libsndfile by
 * descriptor, so that "cannot open" is reported with the system's own reason
 * (strerror) and "not an audio file" with libsndfile's. The 16-bit writer
 * converts in fixed blocks through a buffer made at open: writing allocates
 * nothing.
 *
 * Thread context: whichever thread owns the reader or writer.
 */
#include "audio_io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sndfile.h>

#define PCM16_BLOCK_SAMPLES 8192

struct audio_reader {
    SNDFILE *sf;
    audio_info info;
    char error[256];
};

struct audio_writer {
    SNDFILE *sf;
    audio_format format;
    int channels;
    int64_t frames;
    int64_t clipped;
    short *pcm; /* [PCM16_BLOCK_SAMPLES] */
    char path[4096];
};

/* libsndfile's messages end with a period or newline; trim those. */
static void trim_message(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '.' || s[n - 1] == ' '))
        s[--n] = '\0';
}

int audio_reader_open(const char *path, audio_reader **out, char *err,
                      size_t err_cap)
{
    if (!out || !path) {
        demix__set_err(err, err_cap, "audio: no path");
        return DEMIX_EARG;
    }
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        demix__set_err(err, err_cap, "%s: cannot open: %s", path,
                       strerror(errno));
        return DEMIX_EIO;
    }
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_fd(fd, SFM_READ, &info, 1);
    if (!sf) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sf_strerror(NULL));
        trim_message(msg);
        demix__set_err(err, err_cap, "%s: cannot read as audio: %s", path, msg);
        close(fd);
        return DEMIX_EFORMAT;
    }
    if (info.samplerate <= 0 || info.channels <= 0) {
        demix__set_err(err, err_cap, "%s: no sample rate or channel count",
                       path);
        sf_close(sf);
        return DEMIX_EFORMAT;
    }
    audio_reader *r = calloc(1, sizeof *r);
    if (!r) {
        sf_close(sf);
        demix__set_err(err, err_cap, "%s: out of memory", path);
        return DEMIX_ENOMEM;
    }
    /* Decoders hand out floats in [-1, 1] for every integer format. */
    sf_command(sf, SFC_SET_NORM_FLOAT, NULL, SF_TRUE);
    r->sf = sf;
    r->info.frames = info.frames >= 0 && info.frames < INT64_MAX / 2
                         ? (int64_t)info.frames
                         : -1;
    r->info.rate_hz = info.samplerate;
    r->info.channels = info.channels;
    *out = r;
    return DEMIX_OK;
}

const audio_info *audio_reader_info(const audio_reader *r)
{
    return &r->info;
}

size_t audio_reader_read(audio_reader *r, float *buf, size_t max_frames)
{
    if (!r || !r->sf || max_frames == 0)
        return 0;
    sf_count_t got = sf_readf_float(r->sf, buf, (sf_count_t)max_frames);
    if (got <= 0) {
        if (sf_error(r->sf) != SF_ERR_NO_ERROR && !r->error[0]) {
            snprintf(r->error, sizeof r->error, "%s", sf_strerror(r->sf));
            trim_message(r->error);
        }
        return 0;
    }
    return (size_t)got;
}

const char *audio_reader_error(const audio_reader *r)
{
    return r ? r->error : "";
}

void audio_reader_close(audio_reader *r)
{
    if (!r)
        return;
    if (r->sf)
        sf_close(r->sf);
    free(r);
}

int audio_writer_open(const char *path, int rate_hz, int channels,
                      audio_format format, audio_writer **out, char *err,
                      size_t err_cap)
{
    if (!out || !path || rate_hz <= 0 || channels <= 0) {
        demix__set_err(err, err_cap, "audio: bad writer arguments");
        return DEMIX_EARG;
    }
    *out = NULL;
    audio_writer *w = calloc(1, sizeof *w);
    if (!w) {
        demix__set_err(err, err_cap, "%s: out of memory", path);
        return DEMIX_ENOMEM;
    }
    if (format == AUDIO_PCM16) {
        w->pcm = malloc(PCM16_BLOCK_SAMPLES * sizeof *w->pcm);
        if (!w->pcm) {
            free(w);
            demix__set_err(err, err_cap, "%s: out of memory", path);
            return DEMIX_ENOMEM;
        }
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->format = format;
    w->channels = channels;

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        demix__set_err(err, err_cap, "cannot write %s: %s", path,
                       strerror(errno));
        free(w->pcm);
        free(w);
        return DEMIX_EIO;
    }
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate_hz;
    info.channels = channels;
    info.format = SF_FORMAT_WAV |
                  (format == AUDIO_FLOAT32 ? SF_FORMAT_FLOAT : SF_FORMAT_PCM_16);
    SNDFILE *sf = sf_open_fd(fd, SFM_WRITE, &info, 1);
    if (!sf) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sf_strerror(NULL));
        trim_message(msg);
        demix__set_err(err, err_cap, "cannot write %s: %s", path, msg);
        close(fd);
        free(w->pcm);
        free(w);
        return DEMIX_EIO;
    }
    w->sf = sf;
    *out = w;
    return DEMIX_OK;
}

static int write_fail(audio_writer *w, char *err, size_t err_cap)
{
    char msg[256];
    int e = errno;
    snprintf(msg, sizeof msg, "%s", sf_strerror(w->sf));
    trim_message(msg);
    /* libsndfile reports a full disk as a generic system error. */
    if (strstr(msg, "System error") && e)
        demix__set_err(err, err_cap, "cannot write %s: %s", w->path,
                       strerror(e));
    else
        demix__set_err(err, err_cap, "cannot write %s: %s", w->path, msg);
    return DEMIX_EIO;
}

int audio_writer_write(audio_writer *w, const float *frames, size_t n_frames,
                       char *err, size_t err_cap)
{
    if (!w || (!frames && n_frames)) {
        demix__set_err(err, err_cap, "audio: bad write arguments");
        return DEMIX_EARG;
    }
    if (n_frames == 0)
        return DEMIX_OK;
    errno = 0;
    if (w->format == AUDIO_FLOAT32) {
        sf_count_t put = sf_writef_float(w->sf, frames, (sf_count_t)n_frames);
        if (put != (sf_count_t)n_frames)
            return write_fail(w, err, err_cap);
        w->frames += (int64_t)n_frames;
        return DEMIX_OK;
    }
    size_t block_frames = PCM16_BLOCK_SAMPLES / (size_t)w->channels;
    size_t done = 0;
    while (done < n_frames) {
        size_t n = n_frames - done < block_frames ? n_frames - done : block_frames;
        const float *src = frames + done * (size_t)w->channels;
        size_t samples = n * (size_t)w->channels;
        for (size_t i = 0; i < samples; i++) {
            float x = src[i];
            if (x > 1.0f || x < -1.0f || x != x)
                w->clipped++;
            double s = x != x ? 0.0 : (double)x * 32768.0;
            if (s > 32767.0)
                s = 32767.0;
            else if (s < -32768.0)
                s = -32768.0;
            w->pcm[i] = (short)lrint(s);
        }
        sf_count_t put = sf_writef_short(w->sf, w->pcm, (sf_count_t)n);
        if (put != (sf_count_t)n)
            return write_fail(w, err, err_cap);
        done += n;
    }
    w->frames += (int64_t)n_frames;
    return DEMIX_OK;
}

int64_t audio_writer_clipped(const audio_writer *w)
{
    return w ? w->clipped : 0;
}

int64_t audio_writer_frames(const audio_writer *w)
{
    return w ? w->frames : 0;
}

const char *audio_writer_path(const audio_writer *w)
{
    return w ? w->path : "";
}

int audio_writer_close(audio_writer *w, char *err, size_t err_cap)
{
    if (!w)
        return DEMIX_OK;
    int rc = DEMIX_OK;
    errno = 0;
    if (w->sf) {
        sf_write_sync(w->sf);
        if (sf_error(w->sf) != SF_ERR_NO_ERROR)
            rc = write_fail(w, err, err_cap);
        if (sf_close(w->sf) != 0 && rc == DEMIX_OK) {
            demix__set_err(err, err_cap, "cannot finish %s", w->path);
            rc = DEMIX_EIO;
        }
    }
    free(w->pcm);
    free(w);
    return rc;
}
