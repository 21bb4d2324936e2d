/*
 * loadgen_verify.c - the reference stems, the per-session comparison and
 * the Opus packet check of `demix loadgen` (see loadgen_verify.h).
 *
 * Thread context: see loadgen_verify.h (a reference is written by one
 * thread, then only read; a verifier belongs to one thread).
 */
#include "loadgen_verify.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opus/opus.h>

#define OPUS_MAX_PACKET_FRAMES 5760 /* 120 ms at 48 kHz */
#define PCM16_SCALE (1.0f / 32768.0f)

struct loadgen_reference {
    int stem_count, channels;
    int64_t frames;                        /* positions per stem */
    int64_t filled[DEMIX_PROTO_MAX_STEMS]; /* recorded so far */
    float *pcm; /* [stem][frames][channels] */
};

typedef struct stem_state {
    int64_t pos;  /* the next position of this stem (after pre_skip) */
    int64_t skip; /* Opus decoded frames still to drop */
    double ref_energy, diff_energy;
    int64_t compared;
} stem_state;

struct loadgen_verifier {
    loadgen_reference *ref;
    int recording;
    demix_proto_codec codec;
    int rate_hz, channels;
    stem_state stem[DEMIX_PROTO_MAX_STEMS];
    OpusDecoder *dec[DEMIX_PROTO_MAX_STEMS]; /* Opus only */
    float *decoded; /* OPUS_MAX_PACKET_FRAMES x channels */
};

/* --------------------------------------------------------- reference */

int loadgen_reference_create(int stem_count, int channels, int64_t frames,
                             loadgen_reference **out)
{
    *out = NULL;
    if (stem_count < 1 || stem_count > DEMIX_PROTO_MAX_STEMS || channels < 1 ||
        channels > 2 || frames < 1)
        return DEMIX_EARG;
    loadgen_reference *r = calloc(1, sizeof *r);
    if (!r)
        return DEMIX_ENOMEM;
    r->stem_count = stem_count;
    r->channels = channels;
    r->frames = frames;
    r->pcm = malloc((size_t)stem_count * (size_t)frames * (size_t)channels *
                    sizeof *r->pcm);
    if (!r->pcm) {
        free(r);
        return DEMIX_ENOMEM;
    }
    *out = r;
    return DEMIX_OK;
}

void loadgen_reference_destroy(loadgen_reference *r)
{
    if (!r)
        return;
    free(r->pcm);
    free(r);
}

int loadgen_reference_complete(const loadgen_reference *r)
{
    for (int i = 0; i < r->stem_count; i++)
        if (r->filled[i] < r->frames)
            return 0;
    return 1;
}

int64_t loadgen_reference_frames(const loadgen_reference *r)
{
    return r->frames;
}

/* ---------------------------------------------------------- verifier */

int loadgen_verifier_create(loadgen_reference *ref, int recording,
                            demix_proto_codec codec, int rate_hz, int channels,
                            loadgen_verifier **out)
{
    *out = NULL;
    if (!ref || channels != ref->channels || rate_hz <= 0)
        return DEMIX_EARG;
    loadgen_verifier *v = calloc(1, sizeof *v);
    if (!v)
        return DEMIX_ENOMEM;
    v->ref = ref;
    v->recording = recording;
    v->codec = codec;
    v->rate_hz = rate_hz;
    v->channels = channels;
    if (codec == DEMIX_PROTO_CODEC_OPUS) {
        v->decoded = malloc((size_t)OPUS_MAX_PACKET_FRAMES * (size_t)channels *
                            sizeof *v->decoded);
        int ok = v->decoded != NULL;
        for (int i = 0; ok && i < ref->stem_count; i++) {
            int e;
            v->dec[i] = opus_decoder_create(rate_hz, channels, &e);
            ok = v->dec[i] != NULL;
        }
        if (!ok) {
            loadgen_verifier_destroy(v);
            return DEMIX_ENOMEM;
        }
    }
    *out = v;
    return DEMIX_OK;
}

void loadgen_verifier_destroy(loadgen_verifier *v)
{
    if (!v)
        return;
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        if (v->dec[i])
            opus_decoder_destroy(v->dec[i]);
    free(v->decoded);
    free(v);
}

void loadgen_verifier_set_pre_skip(loadgen_verifier *v, int frames)
{
    for (int i = 0; i < DEMIX_PROTO_MAX_STEMS; i++)
        v->stem[i].skip = frames > 0 ? frames : 0;
}

/* n frames of stem `slot` at its next position: record them or compare. */
static void take(loadgen_verifier *v, int slot, const float *x, int64_t n)
{
    stem_state *st = &v->stem[slot];
    loadgen_reference *r = v->ref;
    int64_t left = r->frames - st->pos;
    if (n > left)
        n = left; /* beyond the compared span */
    if (n <= 0)
        return;
    size_t ch = (size_t)v->channels;
    float *at = r->pcm + ((size_t)slot * (size_t)r->frames + (size_t)st->pos) * ch;
    size_t count = (size_t)n * ch;
    if (v->recording) {
        memcpy(at, x, count * sizeof *x);
        r->filled[slot] = st->pos + n;
    } else {
        double sig = 0, diff = 0;
        for (size_t i = 0; i < count; i++) {
            double d = (double)x[i] - (double)at[i];
            sig += (double)at[i] * (double)at[i];
            diff += d * d;
        }
        st->ref_energy += sig;
        st->diff_energy += diff;
        st->compared += n;
    }
    st->pos += n;
}

/* PCM payload -> floats, a chunk at a time. */
static void take_pcm(loadgen_verifier *v, int slot,
                     const demix_proto_audio_out *h)
{
    enum { CHUNK = 512 };
    float buf[CHUNK * 2];
    size_t ch = (size_t)v->channels;
    const uint8_t *p = h->payload;
    int64_t frames = h->frames;
    while (frames > 0) {
        int64_t n = frames < CHUNK ? frames : CHUNK;
        size_t count = (size_t)n * ch;
        if (v->codec == DEMIX_PROTO_CODEC_PCM_S16) {
            for (size_t i = 0; i < count; i++, p += 2)
                buf[i] = (float)(int16_t)(uint16_t)(p[0] | (p[1] << 8)) *
                         PCM16_SCALE;
        } else {
            for (size_t i = 0; i < count; i++, p += 4) {
                uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                             (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
                memcpy(&buf[i], &u, sizeof u);
            }
        }
        take(v, slot, buf, n);
        frames -= n;
    }
}

int loadgen_verifier_add(loadgen_verifier *v, int slot,
                         const demix_proto_audio_out *h, char *why,
                         size_t why_cap)
{
    if (slot < 0 || slot >= v->ref->stem_count)
        return DEMIX_EARG;
    if (v->stem[slot].pos >= v->ref->frames)
        return DEMIX_OK; /* past the compared span: nothing to decode */
    if (v->codec != DEMIX_PROTO_CODEC_OPUS) {
        take_pcm(v, slot, h);
        return DEMIX_OK;
    }
    int n = opus_decode_float(v->dec[slot], h->payload,
                              (opus_int32)h->payload_bytes, v->decoded,
                              OPUS_MAX_PACKET_FRAMES, 0);
    if (n < 0) {
        snprintf(why, why_cap, "an Opus packet at position %llu does not "
                 "decode: %s",
                 (unsigned long long)h->position, opus_strerror(n));
        return DEMIX_EFORMAT;
    }
    stem_state *st = &v->stem[slot];
    int64_t drop = st->skip < n ? st->skip : n;
    st->skip -= drop;
    take(v, slot, v->decoded + drop * v->channels, n - drop);
    return DEMIX_OK;
}

void loadgen_verifier_result(const loadgen_verifier *v, double min_snr_db,
                             loadgen_verify_result *out)
{
    memset(out, 0, sizeof *out);
    out->sampled = 1;
    out->complete = 1;
    out->identical = 1;
    out->snr_db = INFINITY;
    for (int i = 0; i < v->ref->stem_count; i++) {
        const stem_state *st = &v->stem[i];
        out->compared_frames += st->compared;
        if (st->compared < v->ref->frames)
            out->complete = 0;
        if (st->diff_energy > 0) {
            out->identical = 0;
            /* a silent reference against a sound: -inf, a mismatch */
            double snr = st->ref_energy > 0
                             ? 10.0 * log10(st->ref_energy / st->diff_energy)
                             : -INFINITY;
            if (snr < out->snr_db)
                out->snr_db = snr;
        }
    }
    if (!out->complete) {
        out->identical = 0;
        return;
    }
    out->mismatch = !out->identical && !(out->snr_db >= min_snr_db);
}

/* ------------------------------------------------------- Opus packets */

int loadgen_opus_packet_check(const uint8_t *packet, size_t bytes,
                              int rate_hz, uint32_t frames, char *why,
                              size_t why_cap)
{
    unsigned char toc;
    const unsigned char *parts[48];
    opus_int16 sizes[48];
    int offset;
    if (bytes > INT32_MAX) {
        snprintf(why, why_cap, "an Opus packet of %zu bytes", bytes);
        return DEMIX_EFORMAT;
    }
    int count = opus_packet_parse(packet, (opus_int32)bytes, &toc, parts,
                                  sizes, &offset);
    if (count < 0) {
        snprintf(why, why_cap, "an Opus packet (%zu bytes) does not parse: %s",
                 bytes, opus_strerror(count));
        return DEMIX_EFORMAT;
    }
    int samples = opus_packet_get_nb_samples(packet, (opus_int32)bytes,
                                             (opus_int32)rate_hz);
    if (samples < 0 || (uint32_t)samples != frames) {
        snprintf(why, why_cap,
                 "an Opus packet lasts %d frames, its header says %lu",
                 samples, (unsigned long)frames);
        return DEMIX_EFORMAT;
    }
    return DEMIX_OK;
}
