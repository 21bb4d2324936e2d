/*
 * session_out.c - a session's audio output: separated hops from the stream
 * are cut to the output timeline, reduced to what the client asked for
 * (chosen stems, or one mix with the current gains), resampled to the
 * client rate (one resampler for all output streams, so they stay in step)
 * and encoded into messages on the session's queue.
 *
 * Timeline (the same as separate_signal.c). Output hop k of the engine
 * covers model frames [(k-1)H, kH): hop 0 is dropped; after the end, only
 * frames below M are kept. rs_out compensates its own delay, and after
 * its flush the output is trimmed or zero-padded to exactly the input's
 * length N, so output position p is the separation of input position p.
 *
 * Message sizes. PCM: up to SESSION_PCM_MSG_FRAMES frames, whatever the
 * resampler produced, except that before the end one frame is held back
 * whenever a message would reach the input received so far: the stream's
 * last frame must travel in a message that can carry the LAST flag. Opus:
 * one packet of F = rate * frame_ms / 1000 frames per message; at the end
 * the encoder input is padded with silence to N + pre_skip frames, rounded
 * up to whole packets (protocol.md 8.4).
 *
 * Back-pressure: a new hop is taken from the stream only when ostage is
 * drained and the queue holds at most SESSION_TXQ_LOW bytes; audio never
 * uses the queue's last demixd__session_txq_reserve bytes (kept for
 * control messages). A client that does not read leaves its hops in the
 * stream's output ring, which makes the scheduler skip it (scheduler.c).
 *
 * Thread context: the session's service thread.
 */
#define _DEFAULT_SOURCE /* htole16, htole32 */

#include <endian.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session_impl.h"

/* Bytes of one ostage sample: int16 on the exact path, else float. */
static size_t ostage_sample(const demixd_session *s)
{
    return s->out_s16_exact ? sizeof(int16_t) : sizeof(float);
}

int demixd__session_out_setup(demixd_session *s, const demix_proto_start *st,
                              char *err, size_t cap)
{
    int rc;
    s->out_codec = st->output_codec;
    s->mode = st->mode;
    /* The engine makes 16-bit samples unless the client asked for float32
     * (Opus encodes from them too). At the model's rate without a channel
     * mean (out_direct) a hop goes from the lane straight into ostage
     * (hop_to_ostage), not through mixbuf and the resampler; where it
     * then reaches a PCM16 client unchanged (out_s16_exact), ostage holds
     * the 16-bit samples as they are: no float round trip. */
    s->out_s16 = s->out_codec != DEMIX_PROTO_CODEC_PCM_F32;
    s->out_direct =
        s->rate == s->model_rate && (s->ch == s->C || s->C == 1);
    s->out_s16_exact =
        s->out_direct && s->out_codec == DEMIX_PROTO_CODEC_PCM_S16;
    if (s->mode == DEMIX_PROTO_MODE_STEMS) {
        s->nout = st->stem_count;
        for (int j = 0; j < st->stem_count; j++)
            s->out_source[j] = st->stem_source[j];
    } else {
        s->nout = 1;
    }
    for (int t = 0; t < s->T; t++)
        s->gain[t] = st->source_gain[t];
    const int width = s->nout * s->ch;
    if ((rc = resampler_create(s->model_rate, s->rate, width, &s->rs_out, err,
                               cap)))
        return rc;
    if (!s->out_direct)
        s->mixbuf = malloc((size_t)s->H * (size_t)width * sizeof *s->mixbuf);
    double ratio = (double)s->rate / s->model_rate;
    s->ostage_cap = (size_t)ceil(s->H * ratio) + 2 * RESAMPLE_BLOCK_FRAMES +
                    (size_t)s->lag_out + 64;
    s->ostage = malloc(s->ostage_cap * (size_t)width * ostage_sample(s));
    if ((!s->out_direct && !s->mixbuf) || !s->ostage) {
        snprintf(err, cap, "out of memory");
        return DEMIX_ENOMEM;
    }
    if (s->out_codec == DEMIX_PROTO_CODEC_OPUS) {
        s->opus_bitrate = st->opus_bitrate_bps;
        s->opus_frame_ms = st->opus_frame_ms;
        s->opus_frame_frames = s->rate / 1000 * s->opus_frame_ms;
        for (int j = 0; j < s->nout; j++) {
            int oe = 0;
            s->enc[j] = opus_encoder_create(s->rate, s->ch,
                                            OPUS_APPLICATION_AUDIO, &oe);
            if (!s->enc[j]) {
                snprintf(err, cap, "opus encoder: %s", opus_strerror(oe));
                return DEMIX_ENOMEM;
            }
            opus_encoder_ctl(s->enc[j], OPUS_SET_BITRATE(s->opus_bitrate));
            /* --opus-complexity: encoding four stems is most of an Opus
             * session's CPU, so this sets how many Opus sessions a core
             * holds (docs/server.md, capacity) */
            opus_encoder_ctl(s->enc[j],
                             OPUS_SET_COMPLEXITY(s->d->opt.opus_complexity));
            opus_int32 la = 0;
            opus_encoder_ctl(s->enc[j], OPUS_GET_LOOKAHEAD(&la));
            s->opus_pre_skip = (int)la;
        }
        s->opus_acc = malloc((size_t)s->nout * (size_t)s->opus_frame_frames *
                             (size_t)s->ch * sizeof *s->opus_acc);
        if (!s->opus_acc) {
            snprintf(err, cap, "out of memory");
            return DEMIX_ENOMEM;
        }
    }
    return DEMIX_OK;
}

void demixd__session_out_free(demixd_session *s)
{
    resampler_destroy(s->rs_out);
    s->rs_out = NULL;
    free(s->mixbuf);
    s->mixbuf = NULL;
    free(s->ostage);
    s->ostage = NULL;
    for (int j = 0; j < DEMIX_PROTO_MAX_STEMS; j++) {
        if (s->enc[j])
            opus_encoder_destroy(s->enc[j]);
        s->enc[j] = NULL;
    }
    free(s->opus_acc);
    s->opus_acc = NULL;
}

/* Bytes of one frame of one output stream in ostage. */
static size_t ostage_frame_bytes(const demixd_session *s)
{
    return (size_t)s->ch * ostage_sample(s);
}

/* Output stream j's staged frame f (counted from the first staged one). */
static unsigned char *ostage_at(const demixd_session *s, int j, size_t f)
{
    return s->ostage + ((size_t)j * s->ostage_cap + s->ostage_off + f) *
                           ostage_frame_bytes(s);
}

/* Room for n more frames at the end of every output stream's stage,
 * moving the staged ones to the front when the tail lacks it: *at is the
 * staged frame where they go. DEMIX_ENOSPACE (and out_error) when ostage
 * cannot take them. */
static int ostage_append(demixd_session *s, size_t n, size_t *at)
{
    const size_t fb = ostage_frame_bytes(s);
    if (s->ostage_off + s->ostage_len + n > s->ostage_cap && s->ostage_off) {
        for (int j = 0; j < s->nout; j++)
            memmove(s->ostage + (size_t)j * s->ostage_cap * fb,
                    ostage_at(s, j, 0), s->ostage_len * fb);
        s->ostage_off = 0;
    }
    if (s->ostage_len + n > s->ostage_cap) {
        s->out_error = 1;
        return DEMIX_ENOSPACE;
    }
    *at = s->ostage_len;
    s->ostage_len += n;
    return DEMIX_OK;
}

/* rs_out's sink: client-rate frames [n][nout*ch] -> each output stream's
 * stage (float). */
static int out_sink(void *user, const float *frames, size_t n)
{
    demixd_session *s = user;
    size_t at;
    if (ostage_append(s, n, &at))
        return DEMIX_ENOSPACE;
    const size_t ch = (size_t)s->ch, width = (size_t)s->nout * ch;
    for (int j = 0; j < s->nout; j++) {
        float *dst = (float *)ostage_at(s, j, at);
        const float *src = frames + (size_t)j * ch;
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < ch; c++)
                dst[i * ch + c] = src[i * width + c];
    }
    return DEMIX_OK;
}

/* One output stream's keep frames from its planes (left, right: the same
 * plane for a mono model) into its stage, `ch` interleaved: a copy or a
 * zip, which vectorise; int16 kept, int16 scaled to float (k / 32768,
 * exact) or float kept. */
static void zip_s16(int16_t *dst, const int16_t *left, const int16_t *right,
                    int ch, size_t keep)
{
    for (size_t i = 0; i < keep; i++)
        dst[(size_t)ch * i] = left[i];
    if (ch == 2)
        for (size_t i = 0; i < keep; i++)
            dst[2 * i + 1] = right[i];
}

static void zip_s16_to_float(float *dst, const int16_t *left,
                             const int16_t *right, int ch, size_t keep)
{
    for (size_t i = 0; i < keep; i++)
        dst[(size_t)ch * i] = (float)left[i] * (1.0f / 32768.0f);
    if (ch == 2)
        for (size_t i = 0; i < keep; i++)
            dst[2 * i + 1] = (float)right[i] * (1.0f / 32768.0f);
}

static void zip_float(float *dst, const float *left, const float *right,
                      int ch, size_t keep)
{
    for (size_t i = 0; i < keep; i++)
        dst[(size_t)ch * i] = left[i];
    if (ch == 2)
        for (size_t i = 0; i < keep; i++)
            dst[2 * i + 1] = right[i];
}

/* out_direct: keep frames of one lane hop (nout planes x C x H) straight
 * into each output stream's stage, in its sample type. */
static int hop_to_ostage(demixd_session *s, const void *hop, size_t keep)
{
    size_t at;
    if (ostage_append(s, keep, &at))
        return DEMIX_ENOSPACE;
    const size_t plane = (size_t)s->H * (s->out_s16 ? 2 : 4);
    for (int j = 0; j < s->nout; j++) {
        const unsigned char *left =
            (const unsigned char *)hop + (size_t)j * (size_t)s->C * plane;
        const unsigned char *right = s->C == 1 ? left : left + plane;
        void *dst = ostage_at(s, j, at);
        if (s->out_s16_exact)
            zip_s16(dst, (const int16_t *)left, (const int16_t *)right,
                    s->ch, keep);
        else if (s->out_s16)
            zip_s16_to_float(dst, (const int16_t *)left,
                             (const int16_t *)right, s->ch, keep);
        else
            zip_float(dst, (const float *)left, (const float *)right, s->ch,
                      keep);
    }
    return DEMIX_OK;
}

/* One plane of keep samples into column dst[i * stride] of mixbuf: int16
 * scaled back (k / 32768, exact) or float. The sample type is decided
 * once per plane, not per sample, so the loops stay branch-free. */
static void plane_to_column(const demixd_session *s, const void *plane,
                            float *dst, size_t stride, int keep)
{
    if (s->out_s16) {
        const int16_t *a = plane;
        for (int i = 0; i < keep; i++)
            dst[(size_t)i * stride] = (float)a[i] * (1.0f / 32768.0f);
    } else {
        const float *a = plane;
        for (int i = 0; i < keep; i++)
            dst[(size_t)i * stride] = a[i];
    }
}

/* The mean of two planes (a stereo model to a mono client). */
static void planes_mean_to_column(const demixd_session *s, const void *left,
                                  const void *right, float *dst,
                                  size_t stride, int keep)
{
    if (s->out_s16) {
        const int16_t *a = left, *b = right;
        for (int i = 0; i < keep; i++)
            dst[(size_t)i * stride] =
                0.5f * ((float)a[i] * (1.0f / 32768.0f) +
                        (float)b[i] * (1.0f / 32768.0f));
    } else {
        const float *a = left, *b = right;
        for (int i = 0; i < keep; i++)
            dst[(size_t)i * stride] = 0.5f * (a[i] + b[i]);
    }
}

/* One lane hop (nout planes x C x H, in the session's shape: its stems in
 * order, or its mix, made by the engine) -> mixbuf [keep][nout*ch], with
 * the client's channel count. */
static void planes_to_mixbuf(demixd_session *s, const void *hop, int keep)
{
    const size_t C = (size_t)s->C, H = (size_t)s->H;
    const int ch = s->ch;
    const size_t stride = (size_t)(s->nout * ch);
    const size_t sample = s->out_s16 ? sizeof(int16_t) : sizeof(float);
    for (int j = 0; j < s->nout; j++) {
        const unsigned char *plane =
            (const unsigned char *)hop + (size_t)j * C * H * sample;
        const void *left = plane, *right = plane + H * sample;
        for (int oc = 0; oc < ch; oc++) {
            float *dst = s->mixbuf + (size_t)(j * ch + oc);
            if ((size_t)ch == C)
                plane_to_column(s, plane + (size_t)oc * H * sample, dst,
                                stride, keep);
            else if (ch == 1) /* stereo model, mono out: mean */
                planes_mean_to_column(s, left, right, dst, stride, keep);
            else /* mono model, stereo out */
                plane_to_column(s, left, dst, stride, keep);
        }
    }
}

static int process_hop(demixd_session *s, const void *hop)
{
    int64_t k = s->hops_out++;
    if (k == 0)
        return DEMIX_OK; /* covers [-H, 0): before the stream */
    int64_t keep = s->H;
    if (s->input_flushed) {
        int64_t left = s->model_frames - (k - 1) * s->H;
        keep = left < 0 ? 0 : left < s->H ? left : s->H;
    }
    if (keep == 0)
        return DEMIX_OK;
    if (s->out_direct)
        return hop_to_ostage(s, hop, (size_t)keep);
    planes_to_mixbuf(s, hop, (int)keep);
    return resampler_process(s->rs_out, s->mixbuf, (size_t)keep, out_sink, s);
}

/* Every hop is in: flush rs_out, then trim or plan zero padding to N. */
static int finalize(demixd_session *s)
{
    int rc = resampler_flush(s->rs_out, out_sink, s);
    if (rc)
        return rc;
    int64_t N = s->in_frames;
    int64_t total = s->out_frames + (int64_t)s->ostage_len;
    if (total > N) {
        int64_t cut = total - N;
        s->ostage_len -=
            (size_t)(cut < (int64_t)s->ostage_len ? cut
                                                  : (int64_t)s->ostage_len);
    }
    s->pad_out_left = N > total ? N - total : 0;
    s->out_final = 1;
    return DEMIX_OK;
}

/* At the end: append planned silence into ostage as it has room. */
static void pad_output(demixd_session *s)
{
    if (!s->out_final || s->pad_out_left <= 0)
        return;
    size_t room = s->ostage_cap - s->ostage_len;
    size_t k = (int64_t)room < s->pad_out_left ? room : (size_t)s->pad_out_left;
    size_t at;
    if (!k || ostage_append(s, k, &at))
        return;
    for (int j = 0; j < s->nout; j++)
        memset(ostage_at(s, j, at), 0, k * ostage_frame_bytes(s));
    s->pad_out_left -= (int64_t)k;
}

static size_t txq_free(const demixd_session *s)
{
    return s->txq.cap - demixd_txq_used(&s->txq);
}

static uint8_t stem_index(const demixd_session *s, int j)
{
    return s->mode == DEMIX_PROTO_MODE_MIX ? DEMIX_PROTO_STEM_MIX
                                           : (uint8_t)s->out_source[j];
}

/* n frames of one output stream (ch interleaved samples each) ->
 * little-endian payload. Whole samples are stored (htole + memcpy), so
 * the loops compile to plain stores (the exact path: a copy). */
static void put_pcm(const demixd_session *s, uint8_t *p, const void *first,
                    size_t n)
{
    const size_t count = n * (size_t)s->ch;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (s->out_s16_exact || s->out_codec == DEMIX_PROTO_CODEC_PCM_F32) {
        memcpy(p, first, count * ostage_sample(s)); /* already the wire's */
        return;
    }
#endif
    if (s->out_s16_exact) {
        const int16_t *k = first;
        for (size_t i = 0; i < count; i++) {
            uint16_t u = htole16((uint16_t)k[i]);
            memcpy(p + 2 * i, &u, 2);
        }
    } else if (s->out_codec == DEMIX_PROTO_CODEC_PCM_S16) {
        const float *x = first;
        for (size_t i = 0; i < count; i++) {
            uint16_t u = htole16((uint16_t)demix_sample_to_s16(x[i]));
            memcpy(p + 2 * i, &u, 2);
        }
    } else {
        const float *x = first;
        for (size_t i = 0; i < count; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            u = htole32(u);
            memcpy(p + 4 * i, &u, 4);
        }
    }
}

/* PCM: ostage -> messages. 1: nothing more to send now; 0: queue full. */
static int emit_pcm(demixd_session *s)
{
    const size_t fb = demix_proto_frame_bytes(s->out_codec, s->ch);
    const size_t reserve = demixd__session_txq_reserve(s);
    for (;;) {
        pad_output(s);
        int64_t avail = (int64_t)s->ostage_len;
        int end_known = s->out_final && s->pad_out_left == 0;
        if (!s->out_final) {
            int64_t limit = s->in_frames - s->out_frames - 1;
            if (limit < 0)
                limit = 0;
            if (avail > limit)
                avail = limit;
        }
        if (avail == 0) {
            if (end_known && s->ostage_len == 0)
                s->last_sent = 1; /* only an empty stream gets here */
            return 1;
        }
        size_t n = avail > SESSION_PCM_MSG_FRAMES ? SESSION_PCM_MSG_FRAMES
                                                  : (size_t)avail;
        int last = end_known && n == s->ostage_len;
        size_t bytes = DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES + n * fb;
        if (txq_free(s) <
            (size_t)s->nout * demixd_txq_entry_bytes(&s->txq, bytes) + reserve)
            return 0;
        for (int j = 0; j < s->nout; j++) {
            uint8_t *p = demixd_txq_reserve(&s->txq, bytes);
            if (!p)
                return 0; /* cannot happen after the check above */
            demix_proto_audio_out h = {
                .codec = s->out_codec,
                .flags = last ? DEMIX_PROTO_FLAG_LAST : 0,
                .stem = stem_index(s, j),
                .seq = s->out_seq++,
                .frames = (uint32_t)n,
                .position = (uint64_t)s->out_frames,
            };
            if (demix_proto_audio_out_write_header(&h, p, bytes)) {
                s->out_error = 1;
                return 0;
            }
            put_pcm(s, p + DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES,
                    ostage_at(s, j, 0), n);
            demixd_txq_commit(&s->txq, DEMIXD_TXQ_BINARY, bytes);
        }
        s->ostage_off += n;
        s->ostage_len -= n;
        if (!s->ostage_len)
            s->ostage_off = 0;
        s->out_frames += (int64_t)n;
        if (last)
            s->last_sent = 1;
    }
}

/* Opus: ostage -> one packet per output stream per F frames. */
static int emit_opus(demixd_session *s)
{
    const int F = s->opus_frame_frames, ch = s->ch;
    const size_t reserve = demixd__session_txq_reserve(s);
    const size_t max_bytes =
        DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES + SESSION_OPUS_MAX_PACKET;
    for (;;) {
        pad_output(s);
        if (s->opus_acc_len < F && s->ostage_len > 0) {
            size_t k = (size_t)(F - s->opus_acc_len);
            if (k > s->ostage_len)
                k = s->ostage_len;
            for (int j = 0; j < s->nout; j++)
                memcpy(s->opus_acc + (size_t)j * (size_t)F * (size_t)ch +
                           (size_t)s->opus_acc_len * (size_t)ch,
                       ostage_at(s, j, 0), k * ostage_frame_bytes(s));
            s->opus_acc_len += (int)k;
            s->ostage_off += k;
            s->ostage_len -= k;
            if (!s->ostage_len)
                s->ostage_off = 0;
            s->out_frames += (int64_t)k;
            continue;
        }
        int end_known =
            s->out_final && s->pad_out_left == 0 && s->ostage_len == 0;
        int64_t target = 0;
        if (end_known) {
            int64_t N = s->in_frames;
            target = N == 0 ? 0 : (N + s->opus_pre_skip + F - 1) / F;
        }
        if (s->opus_acc_len < F) {
            if (!end_known)
                return 1;
            if (s->opus_packets >= target) {
                s->last_sent = 1;
                return 1;
            }
            /* Silence past the end: the encoder's lookahead comes out. */
            for (int j = 0; j < s->nout; j++)
                memset(s->opus_acc + (size_t)j * (size_t)F * (size_t)ch +
                           (size_t)s->opus_acc_len * (size_t)ch,
                       0,
                       (size_t)(F - s->opus_acc_len) * (size_t)ch *
                           sizeof *s->opus_acc);
            s->opus_acc_len = F;
        }
        if (txq_free(s) <
            (size_t)s->nout * demixd_txq_entry_bytes(&s->txq, max_bytes) +
                reserve)
            return 0;
        int last = end_known && s->opus_packets == target - 1;
        for (int j = 0; j < s->nout; j++) {
            uint8_t *p = demixd_txq_reserve(&s->txq, max_bytes);
            if (!p)
                return 0;
            int nb = opus_encode_float(
                s->enc[j], s->opus_acc + (size_t)j * (size_t)F * (size_t)ch, F,
                p + DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES,
                SESSION_OPUS_MAX_PACKET);
            demix_proto_audio_out h = {
                .codec = DEMIX_PROTO_CODEC_OPUS,
                .flags = last ? DEMIX_PROTO_FLAG_LAST : 0,
                .stem = stem_index(s, j),
                .seq = s->out_seq++,
                .frames = (uint32_t)F,
                .position = (uint64_t)(s->opus_packets * F),
            };
            if (nb < 0 ||
                demix_proto_audio_out_write_header(&h, p, max_bytes)) {
                demixd_log(DEMIXD_LOG_ERROR, "opus_encode",
                           "session=%s msg=\"%s\"", s->id,
                           nb < 0 ? opus_strerror(nb) : "header");
                s->out_error = 1;
                return 0;
            }
            demixd_txq_commit(&s->txq, DEMIXD_TXQ_BINARY,
                              DEMIX_PROTO_AUDIO_OUT_HEADER_BYTES + (size_t)nb);
        }
        s->opus_packets++;
        s->opus_acc_len = 0;
        if (last)
            s->last_sent = 1;
    }
}

int demixd__session_produce(demixd_session *s)
{
    if (!s->stream || demixd__session_closing(s))
        return 0;
    while (!s->hop_failed) {
        int drained =
            s->out_codec == DEMIX_PROTO_CODEC_OPUS ? emit_opus(s) : emit_pcm(s);
        if (s->out_error)
            break;
        if (!drained)
            return 0;
        if (s->out_final)
            return s->last_sent;
        if (demixd_txq_used(&s->txq) > SESSION_TXQ_LOW)
            return 0;
        if (s->input_flushed && s->hops_out >= s->hops_total) {
            if (finalize(s))
                break;
            continue;
        }
        const void *hop = demixd_lane_out_peek(s->stream);
        if (!hop)
            return 0;
        int rc = process_hop(s, hop);
        demixd_lane_out_pop(s->stream);
        if (rc)
            break;
    }
    s->hop_failed = 1;
    demixd_log(DEMIXD_LOG_ERROR, "output_failed",
               "session=%s msg=\"output buffer or encoder failed\"", s->id);
    demixd__session_fail(s, DEMIX_PROTO_ERR_INTERNAL, NULL,
                         "The server failed to encode the output.");
    return 0;
}
