/*
 * pcm_wire.h - PCM audio payloads of the demixd protocol (docs/protocol.md
 * section 8.3) to and from interleaved float samples: pcm_s16 (signed
 * 16-bit little-endian, float -> s16 as round(x * 32768) clamped, s16 ->
 * float as s / 32768, the server's conversions) and pcm_f32 (IEEE float32
 * little-endian). Written byte by byte, so it is independent of the host's
 * byte order. Shared by `demix stream` and `demix loadgen`.
 *
 * Thread context: any thread; no state.
 */
#ifndef DEMIX_PCM_WIRE_H
#define DEMIX_PCM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/* Write n_samples samples (frames * channels) of x as a codec payload
 * (DEMIX_PROTO_CODEC_PCM_S16 or _PCM_F32) into out, which holds
 * n_samples * demix_proto_frame_bytes(codec, 1) bytes. Returns the bytes
 * written; 0 for any other codec. */
size_t pcm_wire_write(demix_proto_codec codec, const float *x, size_t n_samples,
                      uint8_t *out);

/* Read n_samples samples of a codec payload into x (n_samples floats).
 * Returns the bytes read; 0 for any other codec. */
size_t pcm_wire_read(demix_proto_codec codec, const uint8_t *payload,
                     size_t n_samples, float *x);

#endif /* DEMIX_PCM_WIRE_H */
