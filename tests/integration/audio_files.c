/*
 * audio_files.c - see audio_files.h.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audio_files.h"

#define PI 3.14159265358979323846

void demix_test_write_audio(const char *path, int format, int rate,
                            int channels, const float *x, int64_t frames)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    assert_int_equal(sf_writef_float(sf, x, (sf_count_t)frames),
                     (sf_count_t)frames);
    assert_int_equal(sf_close(sf), 0);
}

float *demix_test_read_audio(const char *path, SF_INFO *info)
{
    memset(info, 0, sizeof *info);
    SNDFILE *sf = sf_open(path, SFM_READ, info);
    if (!sf)
        print_error("cannot read %s: %s\n", path, sf_strerror(NULL));
    assert_non_null(sf);
    size_t n = (size_t)info->frames * (size_t)info->channels;
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    assert_int_equal(sf_readf_float(sf, x, info->frames), info->frames);
    sf_close(sf);
    return x;
}

float *demix_test_noisy_signal(int rate, int channels, int64_t frames,
                               uint64_t seed)
{
    float *x = malloc((size_t)(frames * channels + 1) * sizeof *x);
    assert_non_null(x);
    uint64_t st = seed;
    for (int64_t i = 0; i < frames; i++)
        for (int c = 0; c < channels; c++) {
            double t = (double)i / rate;
            double v = 0.35 * demix_test_uniform(&st) +
                       0.15 * sin(2 * PI * (220.0 + 110 * c) * t) +
                       0.1 * sin(2 * PI * 3150.0 * t + c);
            x[i * channels + c] = (float)(c ? 0.5 * v : v);
        }
    return x;
}
