/*
 * loadgen_audio.c - the shared audio loop of `demix loadgen` (see
 * loadgen_audio.h): the generated test signal, a file read once, and the
 * loop's wire form.
 *
 * Thread context: the main thread (create/destroy); reads from any.
 */
#include "loadgen_audio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opus/opus.h>

#include "audio_io.h"
#include "pcm_wire.h"
#include "resample.h"

#define READ_CHUNK_FRAMES 4096
#define OPUS_PACKET_MAX_BYTES 1500 /* one 20 ms frame is at most 1275 */
#define SIGNAL_PEAK 0.7f
#define SIGNAL_SEED 0x9E3779B97F4A7C15ull
#define TWO_PI 6.283185307179586

struct loadgen_audio {
    int rate_hz;
    int channels;
    demix_proto_codec codec;
    int message_frames;
    int pre_skip;
    int64_t loop_frames; /* of audio, before Opus padding */
    /* PCM: loop_frames frames of wire bytes */
    uint8_t *pcm;
    size_t frame_bytes;
    /* Opus: packet_count packets, packet i at bytes[offset[i]], len[i] */
    uint8_t *opus;
    size_t *offset;
    uint16_t *len;
    int64_t packet_count;
    size_t max_packet;
};

/* ------------------------------------------------------- test signal */

/* xorshift64*, uniform in [-1, 1). */
static double noise(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t v = *s * 2685821657736338717ull;
    return (double)(v >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* LOADGEN_AUDIO_SIGNAL_S of music-like stereo at rate: 120 bpm, four bars
 * with a bass note each, a kick on every beat, a snare on 2 and 4, hi-hats
 * on the eighths, a minor chord pad and a vibrato melody. The noise bursts
 * and the tones give each of the four stems something to do. */
static float *make_signal(int rate, int64_t frames)
{
    static const double bass_hz[4] = {55.0, 43.65, 65.41, 49.0};
    static const double melody_hz[5] = {440.0, 523.25, 587.33, 659.25, 783.99};
    float *x = calloc((size_t)frames * 2, sizeof *x);
    if (!x)
        return NULL;
    uint64_t rng = SIGNAL_SEED;
    double kick_phase = 0, bass_phase = 0, mel_phase = 0, prev_noise = 0;
    double pad_phase[2][3] = {{0}};
    int64_t beat_prev = -1;
    double mel_hz = melody_hz[0];
    const double dt = 1.0 / rate;
    for (int64_t i = 0; i < frames; i++) {
        double t = (double)i * dt;
        int64_t beat = (int64_t)(t / 0.5);
        double tb = t - (double)beat * 0.5;     /* since the beat */
        double te = t - floor(t / 0.25) * 0.25; /* since the eighth */
        int bar = (int)((beat / 4) % 4);
        if (beat != beat_prev) {
            beat_prev = beat;
            kick_phase = 0;
            mel_hz = melody_hz[(int)((noise(&rng) + 1.0) * 2.5) % 5];
        }
        double n = noise(&rng);
        double hat = (n - prev_noise) * 0.5; /* first difference: bright */
        prev_noise = n;

        kick_phase += TWO_PI * (50.0 + 70.0 * exp(-tb / 0.03)) * dt;
        double kick = 0.55 * exp(-tb / 0.12) * sin(kick_phase);
        double snare = 0;
        if (beat % 2 == 1)
            snare = 0.3 * n * exp(-tb / 0.06) +
                    0.15 * sin(TWO_PI * 185.0 * tb) * exp(-tb / 0.05);
        double hats = 0.06 * hat * exp(-te / 0.02);

        double f = bass_hz[bar];
        bass_phase += TWO_PI * f * dt;
        double bass = 0.18 * (0.3 + 0.7 * exp(-te / 0.15)) *
                      (sin(bass_phase) + 0.5 * sin(2 * bass_phase) +
                       0.25 * sin(3 * bass_phase));

        double lfo = 0.5 + 0.5 * sin(TWO_PI * 0.25 * t);
        double pad[2] = {0, 0};
        static const double chord[3] = {4.0, 4.8, 6.0}; /* root, m3, 5th */
        for (int c = 0; c < 2; c++)
            for (int k = 0; k < 3; k++) {
                pad_phase[c][k] +=
                    TWO_PI * f * chord[k] * (c ? 1.002 : 1.0) * dt;
                pad[c] += 0.05 * lfo * sin(pad_phase[c][k]);
            }

        mel_phase +=
            TWO_PI * mel_hz * (1.0 + 0.005 * sin(TWO_PI * 5.5 * t)) * dt;
        double env = (tb < 0.02 ? tb / 0.02 : 1.0) * exp(-tb / 0.35);
        double melody = 0.12 * env * sin(mel_phase);

        double centre = kick + bass;
        x[2 * i] =
            (float)(centre + 0.55 * snare + 0.3 * hats + pad[0] + 0.6 * melody);
        x[2 * i + 1] =
            (float)(centre + 0.45 * snare + 0.7 * hats + pad[1] + 0.4 * melody);
    }
    float peak = 0;
    for (int64_t i = 0; i < frames * 2; i++)
        if (fabsf(x[i]) > peak)
            peak = fabsf(x[i]);
    if (peak > 0)
        for (int64_t i = 0; i < frames * 2; i++)
            x[i] *= SIGNAL_PEAK / peak;
    return x;
}

/* ---------------------------------------------------------- the file */

typedef struct growing {
    float *x;
    int64_t frames, cap;
    int channels;
} growing;

static int growing_append(void *user, const float *frames, size_t n)
{
    growing *g = user;
    if (g->frames + (int64_t)n > g->cap) {
        int64_t cap = g->cap ? g->cap : 65536;
        while (cap < g->frames + (int64_t)n)
            cap *= 2;
        float *p = realloc(g->x, (size_t)cap * (size_t)g->channels * sizeof *p);
        if (!p)
            return DEMIX_ENOMEM;
        g->x = p;
        g->cap = cap;
    }
    memcpy(g->x + g->frames * g->channels, frames,
           n * (size_t)g->channels * sizeof *frames);
    g->frames += (int64_t)n;
    return DEMIX_OK;
}

/* Read up to LOADGEN_AUDIO_MAX_FILE_S of the file, at rate. */
static int load_file(const char *path, int rate, growing *out, char *err,
                     size_t err_cap)
{
    audio_reader *r;
    int rc = audio_reader_open(path, &r, err, err_cap);
    if (rc)
        return rc;
    const audio_info info = *audio_reader_info(r);
    if (info.channels < 1 || info.channels > 2) {
        snprintf(err, err_cap,
                 "%s: %d channels; only mono and stereo files "
                 "can be streamed",
                 path, info.channels);
        audio_reader_close(r);
        return DEMIX_EFORMAT;
    }
    growing in = {.channels = info.channels};
    int64_t limit = (int64_t)LOADGEN_AUDIO_MAX_FILE_S * info.rate_hz;
    float *buf =
        malloc((size_t)READ_CHUNK_FRAMES * (size_t)info.channels * sizeof *buf);
    rc = buf ? DEMIX_OK : DEMIX_ENOMEM;
    while (rc == DEMIX_OK && in.frames < limit) {
        size_t want = READ_CHUNK_FRAMES;
        if ((int64_t)want > limit - in.frames)
            want = (size_t)(limit - in.frames);
        size_t n = audio_reader_read(r, buf, want);
        if (n == 0)
            break;
        rc = growing_append(&in, buf, n);
    }
    free(buf);
    if (rc == DEMIX_OK && audio_reader_error(r)[0]) {
        snprintf(err, err_cap, "%s: read failed: %s", path,
                 audio_reader_error(r));
        rc = DEMIX_EFORMAT;
    } else if (rc == DEMIX_ENOMEM) {
        snprintf(err, err_cap, "%s: out of memory", path);
    }
    audio_reader_close(r);
    if (rc == DEMIX_OK &&
        (double)in.frames < LOADGEN_AUDIO_MIN_FILE_S * info.rate_hz) {
        snprintf(err, err_cap,
                 "%s: %lld frames; at least %.1f s of audio "
                 "is needed",
                 path, (long long)in.frames, LOADGEN_AUDIO_MIN_FILE_S);
        rc = DEMIX_EFORMAT;
    }
    if (rc || info.rate_hz == rate) {
        if (rc)
            free(in.x);
        else
            *out = in;
        return rc;
    }
    resampler *rs;
    rc = resampler_create(info.rate_hz, rate, info.channels, &rs, err, err_cap);
    if (rc) {
        free(in.x);
        return rc;
    }
    growing res = {.channels = info.channels};
    rc = resampler_process(rs, in.x, (size_t)in.frames, growing_append, &res);
    if (rc == DEMIX_OK)
        rc = resampler_flush(rs, growing_append, &res);
    resampler_destroy(rs);
    free(in.x);
    if (rc) {
        snprintf(err, err_cap, "%s: resampling to %d Hz failed", path, rate);
        free(res.x);
        return rc == DEMIX_ENOMEM ? rc : DEMIX_EFORMAT;
    }
    *out = res;
    return DEMIX_OK;
}

/* ------------------------------------------------------ wire form */

static int make_pcm(loadgen_audio *a, const float *x)
{
    a->frame_bytes = demix_proto_frame_bytes(a->codec, a->channels);
    a->pcm = malloc((size_t)a->loop_frames * a->frame_bytes);
    if (!a->pcm)
        return DEMIX_ENOMEM;
    (void)pcm_wire_write(a->codec, x,
                         (size_t)a->loop_frames * (size_t)a->channels, a->pcm);
    return DEMIX_OK;
}

static int make_opus(loadgen_audio *a, const float *x, int bitrate_bps,
                     char *err, size_t err_cap)
{
    int e;
    OpusEncoder *enc = opus_encoder_create(a->rate_hz, a->channels,
                                           OPUS_APPLICATION_AUDIO, &e);
    if (!enc) {
        snprintf(err, err_cap, "cannot create an Opus encoder: %s",
                 opus_strerror(e));
        return DEMIX_EARG;
    }
    int bps = bitrate_bps
                  ? bitrate_bps
                  : DEMIX_PROTO_OPUS_DEFAULT_BITRATE_PER_CHANNEL * a->channels;
    opus_int32 lookahead = 0;
    if (opus_encoder_ctl(enc, OPUS_SET_BITRATE(bps)) != OPUS_OK ||
        opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&lookahead)) != OPUS_OK) {
        opus_encoder_destroy(enc);
        snprintf(err, err_cap, "cannot set up the Opus encoder");
        return DEMIX_EARG;
    }
    a->pre_skip = (int)lookahead;
    int64_t pf = a->message_frames;
    a->packet_count = (a->loop_frames + pf - 1) / pf;
    size_t ch = (size_t)a->channels;
    float *frame = calloc((size_t)pf * ch, sizeof *frame);
    a->opus = malloc((size_t)a->packet_count * OPUS_PACKET_MAX_BYTES);
    a->offset = malloc((size_t)a->packet_count * sizeof *a->offset);
    a->len = malloc((size_t)a->packet_count * sizeof *a->len);
    if (!frame || !a->opus || !a->offset || !a->len) {
        free(frame);
        opus_encoder_destroy(enc);
        return DEMIX_ENOMEM;
    }
    size_t used = 0;
    int rc = DEMIX_OK;
    for (int64_t p = 0; p < a->packet_count; p++) {
        /* The last packet is padded with silence to a whole frame. */
        int64_t first = p * pf;
        int64_t n = a->loop_frames - first < pf ? a->loop_frames - first : pf;
        memset(frame, 0, (size_t)pf * ch * sizeof *frame);
        memcpy(frame, x + first * (int64_t)ch, (size_t)n * ch * sizeof *frame);
        int bytes = opus_encode_float(enc, frame, (int)pf, a->opus + used,
                                      OPUS_PACKET_MAX_BYTES);
        if (bytes < 0) {
            snprintf(err, err_cap, "Opus encoding failed: %s",
                     opus_strerror(bytes));
            rc = DEMIX_EARG;
            break;
        }
        a->offset[p] = used;
        a->len[p] = (uint16_t)bytes;
        used += (size_t)bytes;
        if ((size_t)bytes > a->max_packet)
            a->max_packet = (size_t)bytes;
    }
    free(frame);
    opus_encoder_destroy(enc);
    return rc;
}

int loadgen_audio_create(const loadgen_audio_options *o, loadgen_audio **out,
                         char *err, size_t err_cap)
{
    *out = NULL;
    int opus = o->codec == DEMIX_PROTO_CODEC_OPUS;
    if (o->rate_hz < DEMIX_PROTO_MIN_RATE_HZ ||
        o->rate_hz > DEMIX_PROTO_MAX_RATE_HZ ||
        (opus && o->rate_hz != 8000 && o->rate_hz != 12000 &&
         o->rate_hz != 16000 && o->rate_hz != 24000 && o->rate_hz != 48000)) {
        snprintf(err, err_cap, "%d Hz is not a session rate for %s", o->rate_hz,
                 demix_proto_codec_name(o->codec));
        return DEMIX_EARG;
    }
    loadgen_audio *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, err_cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    a->rate_hz = o->rate_hz;
    a->codec = o->codec;
    a->message_frames =
        o->rate_hz *
        (opus ? LOADGEN_AUDIO_OPUS_FRAME_MS : LOADGEN_AUDIO_PCM_MESSAGE_MS) /
        1000;
    float *x = NULL;
    int rc = DEMIX_OK;
    if (o->input) {
        growing g;
        rc = load_file(o->input, o->rate_hz, &g, err, err_cap);
        if (rc) {
            free(a);
            return rc;
        }
        x = g.x;
        a->loop_frames = g.frames;
        a->channels = g.channels;
    } else {
        a->channels = 2;
        a->loop_frames = (int64_t)LOADGEN_AUDIO_SIGNAL_S * o->rate_hz;
        x = make_signal(o->rate_hz, a->loop_frames);
        if (!x)
            rc = DEMIX_ENOMEM;
    }
    if (rc == DEMIX_OK)
        rc = opus ? make_opus(a, x, o->opus_bitrate_bps, err, err_cap)
                  : make_pcm(a, x);
    free(x);
    if (rc) {
        if (rc == DEMIX_ENOMEM)
            snprintf(err, err_cap, "out of memory for the audio loop");
        loadgen_audio_destroy(a);
        return rc;
    }
    *out = a;
    return DEMIX_OK;
}

void loadgen_audio_destroy(loadgen_audio *a)
{
    if (!a)
        return;
    free(a->pcm);
    free(a->opus);
    free(a->offset);
    free(a->len);
    free(a);
}

int loadgen_audio_channels(const loadgen_audio *a)
{
    return a->channels;
}

int loadgen_audio_rate(const loadgen_audio *a)
{
    return a->rate_hz;
}

int loadgen_audio_message_frames(const loadgen_audio *a)
{
    return a->message_frames;
}

int loadgen_audio_pre_skip(const loadgen_audio *a)
{
    return a->pre_skip;
}

double loadgen_audio_loop_s(const loadgen_audio *a)
{
    return (double)a->loop_frames / a->rate_hz;
}

size_t loadgen_audio_max_payload(const loadgen_audio *a)
{
    return a->opus ? a->max_packet : (size_t)a->message_frames * a->frame_bytes;
}

uint64_t loadgen_audio_start_cursor(const loadgen_audio *a, int k, int n)
{
    uint64_t units =
        a->opus ? (uint64_t)a->packet_count : (uint64_t)a->loop_frames;
    if (n < 1 || k < 0)
        return 0;
    return units * (uint64_t)(k % n) / (uint64_t)n;
}

uint64_t loadgen_audio_cursor_at(const loadgen_audio *a, uint64_t start,
                                 int64_t messages)
{
    if (a->opus)
        return (start + (uint64_t)messages) % (uint64_t)a->packet_count;
    return (start + (uint64_t)messages * (uint64_t)a->message_frames) %
           (uint64_t)a->loop_frames;
}

size_t loadgen_audio_next(const loadgen_audio *a, uint64_t *cursor,
                          uint8_t *out, size_t cap)
{
    if (cap < loadgen_audio_max_payload(a))
        return 0;
    if (a->opus) {
        uint64_t p = *cursor % (uint64_t)a->packet_count;
        memcpy(out, a->opus + a->offset[p], a->len[p]);
        *cursor = (p + 1) % (uint64_t)a->packet_count;
        return a->len[p];
    }
    /* A message may wrap around the loop's end (even several times, for a
     * loop shorter than a message). */
    uint64_t pos = *cursor % (uint64_t)a->loop_frames;
    size_t left = (size_t)a->message_frames, done = 0;
    while (left > 0) {
        size_t n = (size_t)((uint64_t)a->loop_frames - pos);
        if (n > left)
            n = left;
        memcpy(out + done * a->frame_bytes, a->pcm + pos * a->frame_bytes,
               n * a->frame_bytes);
        done += n;
        left -= n;
        pos = (pos + n) % (uint64_t)a->loop_frames;
    }
    *cursor = pos;
    return done * a->frame_bytes;
}
