/*
 * loadgen_verify.h - checking what a `demix loadgen` session receives,
 * beyond the headers and positions that loadgen_session checks itself:
 *
 *   - every Opus packet of every session is parsed (opus_packet_parse and
 *     opus_packet_get_nb_samples, no decode): a well-formed packet whose
 *     duration is the header's frame count;
 *   - a sample of sessions is fully decoded and compared with a reference.
 *
 * The reference. Every sampled session streams the audio loop from its
 * start (cursor 0) for the same length, so the server owes each of them the
 * same stems. Before the first round one session, the reference session,
 * streams that audio alone (as fast as the server takes it); its first
 * `frames` positions of every stem are recorded here as float samples
 * (PCM16 / 32768, F32 as is, Opus decoded with one decoder per stem after
 * dropping output.pre_skip frames). From then on the reference is
 * read-only, shared by every thread without a lock. A sampled session
 * compares each position below `frames` as it arrives, accumulating per
 * stem the reference's energy and the difference's energy; nothing of the
 * session's audio is kept.
 *
 * SNR. Per stem 10 log10(sum ref^2 / sum (x - ref)^2) over the compared
 * positions; a session's SNR is its lowest stem's. A difference of exactly
 * zero is "identical" (the CPU engine is expected to give that). A session
 * whose SNR is below the threshold (--verify-min-snr) is a mismatch. A
 * session that did not receive every compared position (it failed or was
 * stopped) is "incomplete" and neither.
 *
 * Memory: the reference holds frames x channels x stems floats (at most
 * LOADGEN_VERIFY_MAX_S of audio: 15 MB for 4 stereo stems at 48 kHz); a
 * verifier is about 100 bytes per stem plus, for Opus, one decoder per stem
 * and a decode buffer (about 50 KB + 25 KB per stem).
 *
 * Thread context: a reference is written by the one thread that runs the
 * reference session, before any sampled session starts (the threads are
 * created after it: that is the hand-over); a verifier belongs to its
 * session's thread.
 */
#ifndef DEMIX_LOADGEN_VERIFY_H
#define DEMIX_LOADGEN_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

#define LOADGEN_VERIFY_MAX_S 10.0        /* compared at the start of a stream */
#define LOADGEN_VERIFY_PCM_MIN_SNR_DB 60.0  /* default threshold, PCM */
#define LOADGEN_VERIFY_OPUS_MIN_SNR_DB 20.0 /* default threshold, Opus */

typedef struct loadgen_reference loadgen_reference;
typedef struct loadgen_verifier loadgen_verifier;

/* What a sampled session's comparison came to. */
typedef struct loadgen_verify_result {
    int sampled;   /* the session was one of the sample */
    int complete;  /* every compared position arrived on every stem */
    int identical; /* complete, and not one sample differed */
    int mismatch;  /* complete, and the SNR is below the threshold */
    double snr_db; /* the lowest stem's; meaningless when identical */
    int64_t compared_frames; /* positions compared, summed over stems */
} loadgen_verify_result;

/* A reference for stem_count stems of `frames` positions each. DEMIX_EARG,
 * DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int loadgen_reference_create(int stem_count, int channels,
                                               int64_t frames,
                                               loadgen_reference **out);
void loadgen_reference_destroy(loadgen_reference *r);

/* 1 when every stem holds all of its positions. */
int loadgen_reference_complete(const loadgen_reference *r);

/* Positions compared per stem. */
int64_t loadgen_reference_frames(const loadgen_reference *r);

/* A verifier for one session: it records into ref (recording = 1, the
 * reference session) or compares with it. codec, rate and channels are
 * the session's output. DEMIX_EARG, DEMIX_ENOMEM. */
DEMIX_WARN_UNUSED int loadgen_verifier_create(loadgen_reference *ref,
                                              int recording,
                                              demix_proto_codec codec,
                                              int rate_hz, int channels,
                                              loadgen_verifier **out);
void loadgen_verifier_destroy(loadgen_verifier *v);

/* From ready: Opus decoded frames to drop at the start of every stem. */
void loadgen_verifier_set_pre_skip(loadgen_verifier *v, int frames);

/* One audio message of stem slot `slot` (its header checked, its position
 * the next one of that stem). DEMIX_OK, or DEMIX_EFORMAT (an Opus packet
 * that does not decode) with a sentence in why. */
DEMIX_WARN_UNUSED int loadgen_verifier_add(loadgen_verifier *v, int slot,
                                           const demix_proto_audio_out *h,
                                           char *why, size_t why_cap);

/* The comparison so far against min_snr_db. */
void loadgen_verifier_result(const loadgen_verifier *v, double min_snr_db,
                             loadgen_verify_result *out);

/* Parse one Opus packet of an audio_out message (no decode): DEMIX_OK when
 * it is well-formed and lasts `frames` frames at rate_hz; else
 * DEMIX_EFORMAT with a sentence in why. */
DEMIX_WARN_UNUSED int loadgen_opus_packet_check(const uint8_t *packet,
                                                size_t bytes, int rate_hz,
                                                uint32_t frames, char *why,
                                                size_t why_cap);

#endif /* DEMIX_LOADGEN_VERIFY_H */
