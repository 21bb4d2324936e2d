/*
 * make-demo.c - makes web/demo/<song>.opus, the page's demo song: an
 * excerpt of one 'Everything is Remixed' song (CC0 1.0), mixed down from
 * its four stems (drums, bass, vocals, other; a missing file is silence)
 * and written as stereo Ogg Opus through libsndfile.
 *
 *   cc -O2 -o /tmp/make-demo web/demo/make-demo.c $(pkg-config --cflags --libs sndfile)
 *   /tmp/make-demo scan SONG_DIR              per-5 s RMS of each stem (dB)
 *   /tmp/make-demo make SONG_DIR START_S SECONDS OUT.opus
 *
 * web/demo/potassium.opus: make ../shared/data/everything-is-remixed/potassium
 * 150 45 (all four sources play from 2:30 to 3:15).
 *
 * The excerpt gets 0.5 s fades at both ends. The stems of the data set
 * are scaled so that their sum never clips; the mix is written as is.
 * Not part of the build: run by hand when the demo song changes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>

#define STEMS 4
#define BLOCK_FRAMES 4096

static const char *const stem_names[STEMS] = {"drums", "bass", "vocals",
                                              "other"};

static SNDFILE *open_stem(const char *dir, int i, SF_INFO *info)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.opus", dir, stem_names[i]);
    memset(info, 0, sizeof *info);
    SNDFILE *f = sf_open(path, SFM_READ, info);
    if (f && (info->channels != 2 || info->samplerate != 48000)) {
        fprintf(stderr, "%s: want 48 kHz stereo\n", path);
        exit(1);
    }
    return f;
}

static int scan(const char *dir)
{
    SNDFILE *f[STEMS];
    SF_INFO info[STEMS];
    for (int i = 0; i < STEMS; i++)
        f[i] = open_stem(dir, i, &info[i]);
    const long span = 5 * 48000;
    float *buf = malloc(sizeof(float) * 2 * (size_t)span);
    printf("   t  drums   bass vocals  other\n");
    for (long t = 0;; t += span) {
        int any = 0;
        printf("%4ld", t / 48000);
        for (int i = 0; i < STEMS; i++) {
            double e = 0;
            sf_count_t n = f[i] ? sf_readf_float(f[i], buf, span) : 0;
            for (sf_count_t k = 0; k < 2 * n; k++)
                e += (double)buf[k] * buf[k];
            any |= n > 0;
            printf(" %6.1f", n > 0 ? 10 * log10(e / (2.0 * n) + 1e-12) : -120.0);
        }
        printf("\n");
        if (!any)
            break;
    }
    free(buf);
    return 0;
}

static int make(const char *dir, double start_s, double seconds, const char *out)
{
    SNDFILE *f[STEMS];
    SF_INFO info[STEMS];
    const sf_count_t start = (sf_count_t)(start_s * 48000);
    const sf_count_t total = (sf_count_t)(seconds * 48000);
    const sf_count_t fade = 24000;
    for (int i = 0; i < STEMS; i++) {
        f[i] = open_stem(dir, i, &info[i]);
        if (f[i] && sf_seek(f[i], start, SEEK_SET) < 0) {
            fprintf(stderr, "%s: seek failed\n", stem_names[i]);
            return 1;
        }
    }
    SF_INFO oi = {.samplerate = 48000, .channels = 2,
                  .format = SF_FORMAT_OGG | SF_FORMAT_OPUS};
    SNDFILE *o = sf_open(out, SFM_WRITE, &oi);
    if (!o) {
        fprintf(stderr, "%s: %s\n", out, sf_strerror(NULL));
        return 1;
    }
    int mode = SF_BITRATE_MODE_VARIABLE;
    sf_command(o, SFC_SET_BITRATE_MODE, &mode, sizeof mode);
    /* libsndfile maps 0..1 onto Opus bitrates: 0.83 is about 96 kbit/s */
    double level = 0.83;
    sf_command(o, SFC_SET_COMPRESSION_LEVEL, &level, sizeof level);
    static float mix[2 * BLOCK_FRAMES], buf[2 * BLOCK_FRAMES];
    double peak = 0;
    for (sf_count_t done = 0; done < total;) {
        sf_count_t n = total - done < BLOCK_FRAMES ? total - done : BLOCK_FRAMES;
        memset(mix, 0, sizeof mix);
        for (int i = 0; i < STEMS; i++) {
            if (!f[i])
                continue;
            sf_count_t got = sf_readf_float(f[i], buf, n);
            for (sf_count_t k = 0; k < 2 * got; k++)
                mix[k] += buf[k];
        }
        for (sf_count_t k = 0; k < n; k++) {
            sf_count_t t = done + k;
            double g = 1.0;
            if (t < fade)
                g = (double)t / fade;
            if (total - t < fade)
                g = (double)(total - t) / fade;
            for (int c = 0; c < 2; c++) {
                mix[2 * k + c] = (float)(mix[2 * k + c] * g);
                if (fabs(mix[2 * k + c]) > peak)
                    peak = fabs(mix[2 * k + c]);
            }
        }
        if (sf_writef_float(o, mix, n) != n) {
            fprintf(stderr, "%s: write failed: %s\n", out, sf_strerror(o));
            return 1;
        }
        done += n;
    }
    sf_close(o);
    for (int i = 0; i < STEMS; i++)
        if (f[i])
            sf_close(f[i]);
    fprintf(stderr, "wrote %s: %.1f s from %.1f s, peak %.3f\n", out,
            seconds, start_s, peak);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "scan"))
        return scan(argv[2]);
    if (argc == 6 && !strcmp(argv[1], "make"))
        return make(argv[2], atof(argv[3]), atof(argv[4]), argv[5]);
    fprintf(stderr, "usage: make-demo scan SONG_DIR | make SONG_DIR START_S SECONDS OUT.opus\n");
    return 2;
}
