/*
 * opus_cost.c - what one Opus stream costs demixd: CPU time per encoded
 * frame and the waveform SNR of the round trip, for each encoder
 * application and complexity, on a real recording.
 *
 *   build/bench/opus_cost FILE [FRAME_MS [BITRATE]]   defaults 10, 128000
 *
 * FILE: any stereo file libsndfile reads, at 48 kHz (the rate demixd's
 * sessions encode at on a 48 kHz model); its first 20 s are used. Prints
 * one JSON object per (application, complexity): the lookahead the
 * decoder must skip, microseconds per encoded frame (best of 3 passes,
 * one core), and the SNR of the decoded signal against the input after
 * that lookahead. An Opus session of four stems runs four such encoders
 * and one decoder per hop, so this bounds Opus sessions per core
 * (bench/RESULTS.md, docs/server.md's capacity section).
 */
#include <math.h>
#include <opus/opus.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RATE 48000
#define SECONDS 20

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One pass: encode every frame (timed) and decode it (not timed) into y;
 * returns the seconds spent in opus_encode_float. */
static double round_trip(OpusEncoder *enc, OpusDecoder *dec, const float *x,
                         float *y, long frames, int frame)
{
    unsigned char packet[4000];
    double spent = 0;
    for (long k = 0; k < frames; k++) {
        double t0 = now_s();
        int bytes = opus_encode_float(enc, x + k * frame * 2, frame, packet,
                                      (opus_int32)sizeof packet);
        spent += now_s() - t0;
        if (bytes < 0 ||
            opus_decode_float(dec, packet, bytes, y + k * frame * 2, frame,
                              0) != frame) {
            fprintf(stderr, "opus_cost: round trip failed at frame %ld\n", k);
            exit(1);
        }
    }
    return spent;
}

static double snr_db(const float *x, const float *y, long n, int lookahead)
{
    double signal = 0, noise = 0;
    for (long i = lookahead; i < n; i++)
        for (int c = 0; c < 2; c++) {
            double ref = x[(i - lookahead) * 2 + c];
            double d = y[i * 2 + c] - ref;
            signal += ref * ref;
            noise += d * d;
        }
    return 10.0 * log10(signal / (noise > 0 ? noise : 1e-30));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: opus_cost FILE [FRAME_MS [BITRATE]]\n");
        return 2;
    }
    double frame_ms = argc > 2 ? atof(argv[2]) : 10.0;
    int bitrate = argc > 3 ? atoi(argv[3]) : 128000;
    int frame = (int)(RATE * frame_ms / 1000.0);
    SF_INFO info = {0};
    SNDFILE *f = sf_open(argv[1], SFM_READ, &info);
    if (!f || info.samplerate != RATE || info.channels != 2) {
        fprintf(stderr, "opus_cost: %s: need a stereo %d Hz file\n", argv[1],
                RATE);
        return 1;
    }
    long n = info.frames < (long)RATE * SECONDS ? (long)info.frames
                                                 : (long)RATE * SECONDS;
    long frames = n / frame;
    float *x = calloc((size_t)n * 2, sizeof *x);
    float *y = calloc((size_t)n * 2, sizeof *y);
    if (!x || !y || sf_readf_float(f, x, n) != n) {
        fprintf(stderr, "opus_cost: cannot read %s\n", argv[1]);
        return 1;
    }
    sf_close(f);
    const struct {
        int id;
        const char *name;
    } apps[] = {{OPUS_APPLICATION_AUDIO, "audio"},
                {OPUS_APPLICATION_RESTRICTED_LOWDELAY, "restricted_lowdelay"}};
    const int complexities[] = {0, 2, 5, 10};
    for (size_t a = 0; a < sizeof apps / sizeof apps[0]; a++)
        for (size_t c = 0; c < sizeof complexities / sizeof *complexities;
             c++) {
            double best = INFINITY;
            int lookahead = 0;
            for (int pass = 0; pass < 3; pass++) {
                int err = 0;
                OpusEncoder *enc = opus_encoder_create(RATE, 2, apps[a].id,
                                                       &err);
                OpusDecoder *dec = opus_decoder_create(RATE, 2, &err);
                if (!enc || !dec) {
                    fprintf(stderr, "opus_cost: %s\n", opus_strerror(err));
                    return 1;
                }
                opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));
                opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(complexities[c]));
                opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&lookahead));
                double s = round_trip(enc, dec, x, y, frames, frame);
                best = s < best ? s : best;
                opus_encoder_destroy(enc);
                opus_decoder_destroy(dec);
            }
            printf("{\"application\": \"%s\", \"complexity\": %d, "
                   "\"frame_ms\": %g, \"bitrate\": %d, \"lookahead\": %d, "
                   "\"us_per_frame\": %.2f, \"us_per_second\": %.1f, "
                   "\"snr_db\": %.2f}\n",
                   apps[a].name, complexities[c], frame_ms, bitrate,
                   lookahead, best / (double)frames * 1e6,
                   best / ((double)frames * frame / RATE) * 1e6,
                   snr_db(x, y, frames * frame, lookahead));
        }
    free(x);
    free(y);
    return 0;
}
