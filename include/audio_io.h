/*
 * audio_io.h - audio files for demix and demixd (demix_audio, audio/): read
 * anything libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, MP3 with
 * libsndfile >= 1.1) as interleaved float frames, write WAV as 16-bit PCM
 * (clipped, with a count) or 32-bit float.
 *
 * Usage sketch:
 *
 *     audio_reader *r;
 *     if (audio_reader_open("song.flac", &r, err, sizeof err)) die(err);
 *     const audio_info *in = audio_reader_info(r);
 *     audio_writer *w;
 *     if (audio_writer_open("out.wav", in->rate_hz, in->channels,
 *                           AUDIO_PCM16, &w, err, sizeof err)) die(err);
 *     float buf[4096 * 2];
 *     size_t n;
 *     while ((n = audio_reader_read(r, buf, 4096)) > 0)
 *         if (audio_writer_write(w, buf, n, err, sizeof err)) die(err);
 *     audio_writer_close(w, err, sizeof err);
 *     audio_reader_close(r);
 *
 * Samples are floats with full scale +-1.0 (libsndfile's normalisation:
 * 16-bit s reads as s / 32768). The 16-bit writer scales by 32768 and
 * clamps to [-32768, 32767], so a 16-bit file read and written again is
 * bit-exact; samples beyond [-1, 1] are counted as clipped.
 *
 * Errors: functions return DEMIX_OK or a negative demix_status and write one
 * line, naming the path, into err.
 *
 * Threads: a reader or writer belongs to one thread at a time.
 */
#ifndef DEMIX_AUDIO_IO_H
#define DEMIX_AUDIO_IO_H

#include <stddef.h>
#include <stdint.h>

#include "demix_error.h"

typedef struct audio_info {
    int64_t frames;    /* -1 when the container does not say */
    int rate_hz;
    int channels;
} audio_info;

typedef struct audio_reader audio_reader;

/* Open a file for reading. DEMIX_EIO or DEMIX_EFORMAT with libsndfile's
 * message and the path in err. */
DEMIX_WARN_UNUSED int audio_reader_open(const char *path, audio_reader **out,
                                        char *err, size_t err_cap);
const audio_info *audio_reader_info(const audio_reader *r);
/* Read up to max_frames interleaved frames into buf (max_frames * channels
 * floats). Returns the frames read, 0 at the end of the file. A decoding
 * error ends the stream early; audio_reader_error() then says so. */
size_t audio_reader_read(audio_reader *r, float *buf, size_t max_frames);
/* "" while no read failed, else libsndfile's message. */
const char *audio_reader_error(const audio_reader *r);
void audio_reader_close(audio_reader *r);

typedef enum audio_format {
    AUDIO_PCM16 = 0, /* WAV, 16-bit signed PCM */
    AUDIO_FLOAT32 = 1, /* WAV, 32-bit IEEE float */
} audio_format;

typedef struct audio_writer audio_writer;

/* Create (or truncate) a WAV file. DEMIX_EIO with the path and strerror. */
DEMIX_WARN_UNUSED int audio_writer_open(const char *path, int rate_hz,
                                        int channels, audio_format format,
                                        audio_writer **out, char *err,
                                        size_t err_cap);
/* Append frames (interleaved). DEMIX_EIO with the path and the reason. */
DEMIX_WARN_UNUSED int audio_writer_write(audio_writer *w, const float *frames,
                                         size_t n_frames, char *err,
                                         size_t err_cap);
/* Samples outside [-1, 1] written so far (16-bit only; 0 for float). */
int64_t audio_writer_clipped(const audio_writer *w);
int64_t audio_writer_frames(const audio_writer *w);
const char *audio_writer_path(const audio_writer *w);
/* Finish the header and close. Returns DEMIX_EIO when that fails; the
 * writer is freed either way. NULL is a no-op. */
int audio_writer_close(audio_writer *w, char *err, size_t err_cap);

#endif /* DEMIX_AUDIO_IO_H */
