/*
 * audio_files.h - whole-file audio reads and writes for the integration
 * tests (libsndfile), asserting success through cmocka.
 */
#ifndef DEMIX_TEST_AUDIO_FILES_H
#define DEMIX_TEST_AUDIO_FILES_H

#include <stdint.h>

#include <sndfile.h>

/* Write frames of interleaved float x as a file of the given libsndfile
 * format (SF_FORMAT_WAV | SF_FORMAT_PCM_16, ...). */
void demix_test_write_audio(const char *path, int format, int rate,
                            int channels, const float *x, int64_t frames);

/* Read a whole file as interleaved float (malloc'd; free() it); info is
 * filled in. */
float *demix_test_read_audio(const char *path, SF_INFO *info);

/* Seeded test input for the residual checks: white noise and two tones
 * per channel (about -14 dBFS RMS on channel 0, channel 1 at half that
 * level; peak below 0.6), full band. frames * channels floats, malloc'd. */
float *demix_test_noisy_signal(int rate, int channels, int64_t frames,
                               uint64_t seed);

#endif
