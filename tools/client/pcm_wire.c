/*
 * pcm_wire.c - PCM payload conversion (see pcm_wire.h).
 *
 * Thread context: any thread.
 */
#include "pcm_wire.h"

#include <math.h>
#include <string.h>

static int16_t to_s16(float x)
{
    float v = roundf(x * 32768.0f);
    if (!(v > -32768.0f)) /* also NaN */
        return v != v ? 0 : -32768;
    if (v > 32767.0f)
        return 32767;
    return (int16_t)v;
}

size_t pcm_wire_write(demix_proto_codec codec, const float *x, size_t n_samples,
                      uint8_t *out)
{
    if (codec == DEMIX_PROTO_CODEC_PCM_S16) {
        for (size_t i = 0; i < n_samples; i++) {
            uint16_t u = (uint16_t)to_s16(x[i]);
            out[2 * i] = (uint8_t)(u & 0xFF);
            out[2 * i + 1] = (uint8_t)(u >> 8);
        }
        return 2 * n_samples;
    }
    if (codec == DEMIX_PROTO_CODEC_PCM_F32) {
        for (size_t i = 0; i < n_samples; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            uint8_t *p = out + 4 * i;
            p[0] = (uint8_t)u;
            p[1] = (uint8_t)(u >> 8);
            p[2] = (uint8_t)(u >> 16);
            p[3] = (uint8_t)(u >> 24);
        }
        return 4 * n_samples;
    }
    return 0;
}

size_t pcm_wire_read(demix_proto_codec codec, const uint8_t *payload,
                     size_t n_samples, float *x)
{
    if (codec == DEMIX_PROTO_CODEC_PCM_S16) {
        for (size_t i = 0; i < n_samples; i++) {
            int16_t v = (int16_t)((uint16_t)payload[2 * i] |
                                  (uint16_t)payload[2 * i + 1] << 8);
            x[i] = (float)v / 32768.0f;
        }
        return 2 * n_samples;
    }
    if (codec == DEMIX_PROTO_CODEC_PCM_F32) {
        for (size_t i = 0; i < n_samples; i++) {
            const uint8_t *p = payload + 4 * i;
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                         (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&x[i], &u, 4);
        }
        return 4 * n_samples;
    }
    return 0;
}
