/*
 * loadgen_audio.h - the audio every `demix loadgen` session sends: one loop
 * made once - a generated music-like test signal (stereo: kick, snare and
 * hi-hat noise bursts, a bass line, a chord pad and a vibrato melody; 8 s,
 * deterministic) or the first LOADGEN_AUDIO_MAX_FILE_S of a file,
 * resampled to the session rate - and put into its wire form once (PCM
 * bytes, or the Opus packets of one continuous encode), shared read-only
 * by all sessions. A session keeps a cursor into the loop and copies each
 * message's payload out of it, so sending costs no encoding per session
 * and the memory does not grow with the number of sessions or the run's
 * length.
 *
 * Usage sketch:
 *
 *     loadgen_audio_options o = {.input = NULL, .rate_hz = 48000,
 *                                .codec = DEMIX_PROTO_CODEC_PCM_S16};
 *     loadgen_audio *a;
 *     if (loadgen_audio_create(&o, &a, err, sizeof err)) die(err);
 *     uint64_t cur = loadgen_audio_start_cursor(a, k, n);  // session k of n
 *     size_t bytes = loadgen_audio_next(a, &cur, payload, cap);  // a message
 *     loadgen_audio_destroy(a);
 *
 * Messages: PCM LOADGEN_AUDIO_PCM_MESSAGE_MS (10 ms) of frames each, Opus
 * one 20 ms packet each (the protocol's default frame). Opus packets wrap
 * from the loop's end to its start: the decoder sees a seam there, which
 * changes nothing for a load test. The Opus encoder's lookahead is the
 * input pre_skip (loadgen_audio_pre_skip).
 *
 * Thread context: create/destroy on one thread; the rest is read-only.
 */
#ifndef DEMIX_LOADGEN_AUDIO_H
#define DEMIX_LOADGEN_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

#define LOADGEN_AUDIO_PCM_MESSAGE_MS 10
#define LOADGEN_AUDIO_OPUS_FRAME_MS 20
#define LOADGEN_AUDIO_SIGNAL_S 8     /* the generated loop */
#define LOADGEN_AUDIO_MAX_FILE_S 60  /* of a file, at most this is used */
#define LOADGEN_AUDIO_MIN_FILE_S 0.1 /* shorter files are refused */

typedef struct loadgen_audio loadgen_audio;

typedef struct loadgen_audio_options {
    const char *input;       /* a file (audio_io.h); NULL: generated */
    int rate_hz;             /* the session rate */
    demix_proto_codec codec; /* the input codec */
    int opus_bitrate_bps;    /* Opus only; 0: 64000 per channel */
} loadgen_audio_options;

/* Make the loop. DEMIX_EARG (a rate Opus does not take), DEMIX_EIO /
 * DEMIX_EFORMAT (the file: err names it), DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int loadgen_audio_create(const loadgen_audio_options *o,
                                           loadgen_audio **out, char *err,
                                           size_t err_cap);
void loadgen_audio_destroy(loadgen_audio *a);

int loadgen_audio_channels(const loadgen_audio *a);
int loadgen_audio_rate(const loadgen_audio *a);
/* Frames one message carries (decoded frames for Opus). */
int loadgen_audio_message_frames(const loadgen_audio *a);
/* Opus: the encoder's lookahead, sent as input.pre_skip; PCM: 0. */
int loadgen_audio_pre_skip(const loadgen_audio *a);
/* The loop's length in seconds (at the session rate). */
double loadgen_audio_loop_s(const loadgen_audio *a);
/* The largest payload loadgen_audio_next writes. */
size_t loadgen_audio_max_payload(const loadgen_audio *a);

/* Where session k of n starts: spread evenly over the loop, so sessions
 * do not all send the same audio at once. */
uint64_t loadgen_audio_start_cursor(const loadgen_audio *a, int k, int n);

/* The cursor after `messages` messages from `start` (a reconnect sends
 * again from message k). */
uint64_t loadgen_audio_cursor_at(const loadgen_audio *a, uint64_t start,
                                 int64_t messages);

/* Write the next message's payload at *cursor into out (cap bytes, at
 * least loadgen_audio_max_payload) and advance the cursor. Returns the
 * bytes written, 0 when cap is short. */
size_t loadgen_audio_next(const loadgen_audio *a, uint64_t *cursor,
                          uint8_t *out, size_t cap);

#endif /* DEMIX_LOADGEN_AUDIO_H */
