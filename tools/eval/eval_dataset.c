/*
 * eval_dataset.c - finding and checking the files of a `demix eval` data
 * set (eval_dataset.h).
 *
 * A track's folder is read once per name looked for (mixture and each
 * source): a handful of readdir passes over a few files, simpler than a
 * listing kept around. Each file is opened once here, for its format, and
 * closed; scoring opens it again.
 *
 * Thread context: the main thread.
 */
#include "eval_dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"

#define COUNT_CHUNK_FRAMES 4096

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const eval_track *)a)->name, ((const eval_track *)b)->name);
}

int eval_dataset_list(const char *dir, eval_track **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("%s: cannot open the data set folder: %s", dir,
                  strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    eval_track *tracks = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", hidden folders */
        char path[EVAL_PATH_BYTES];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >=
                (int)sizeof path ||
            !is_dir(path))
            continue;
        if (strlen(e->d_name) >= EVAL_TRACK_NAME_BYTES) {
            cli_error("%s: track folder name longer than %d characters", path,
                      EVAL_TRACK_NAME_BYTES - 1);
            free(tracks);
            closedir(d);
            return -1;
        }
        if (n == cap) {
            int new_cap = cap ? 2 * cap : 64;
            eval_track *grown = realloc(tracks, (size_t)new_cap * sizeof *grown);
            if (!grown) {
                cli_error("out of memory");
                free(tracks);
                closedir(d);
                return -1;
            }
            tracks = grown;
            cap = new_cap;
        }
        memset(&tracks[n], 0, sizeof tracks[n]);
        snprintf(tracks[n].name, sizeof tracks[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n == 0) {
        cli_error("%s: no track folders (expected %s/TRACK/mixture.wav and "
                  "%s/TRACK/SOURCE.wav, one folder per track)",
                  dir, dir, dir);
        free(tracks);
        return -1;
    }
    qsort(tracks, (size_t)n, sizeof *tracks, compare_names);
    *out = tracks;
    return n;
}

/* Find dir/stem.* (a regular file whose name up to its last dot is stem).
 * 1 found (path in f->path), 0 none, -1 after printing an error (folder
 * unreadable, or two candidates). */
static int find_file(const char *dir, const char *stem, eval_file *f)
{
    f->present = 0;
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("%s: cannot open: %s", dir, strerror(errno));
        return -1;
    }
    size_t stem_len = strlen(stem);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (!dot || (size_t)(dot - e->d_name) != stem_len ||
            strncmp(e->d_name, stem, stem_len) != 0)
            continue;
        char path[EVAL_PATH_BYTES];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >=
                (int)sizeof path ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (f->present) {
            cli_error("%s: both %s and %s; keep one file per name", dir,
                      strrchr(f->path, '/') + 1, e->d_name);
            rc = -1;
            break;
        }
        snprintf(f->path, sizeof f->path, "%s", path);
        f->present = 1;
        rc = 1;
    }
    closedir(d);
    return rc;
}

/* Decode a file whose container does not state its length, to count it. */
static int count_frames(audio_reader *r, const char *path, int64_t *frames)
{
    int channels = audio_reader_info(r)->channels;
    float *buf = malloc((size_t)COUNT_CHUNK_FRAMES * (size_t)channels *
                        sizeof *buf);
    if (!buf) {
        cli_error("%s: out of memory", path);
        return -1;
    }
    int64_t n = 0;
    size_t got;
    while ((got = audio_reader_read(r, buf, COUNT_CHUNK_FRAMES)) > 0)
        n += (int64_t)got;
    free(buf);
    if (audio_reader_error(r)[0]) {
        cli_error("%s: read failed: %s", path, audio_reader_error(r));
        return -1;
    }
    *frames = n;
    return 0;
}

/* Open f for its format; frames are counted when the file does not say. */
static int probe_file(eval_file *f)
{
    char err[1024];
    audio_reader *r;
    if (audio_reader_open(f->path, &r, err, sizeof err)) {
        cli_error("%s", err);
        return -1;
    }
    f->info = *audio_reader_info(r);
    int rc = 0;
    if (f->info.frames < 0)
        rc = count_frames(r, f->path, &f->info.frames);
    audio_reader_close(r);
    return rc;
}

/* f must match the mixture in rate, channels and length. */
static int check_like_mixture(const eval_file *f, const eval_file *mix)
{
    if (f->info.rate_hz != mix->info.rate_hz) {
        cli_error("%s: %d Hz, but the mixture %s is %d Hz; every file of a "
                  "track must have the mixture's sample rate",
                  f->path, f->info.rate_hz, mix->path, mix->info.rate_hz);
        return -1;
    }
    if (f->info.channels != mix->info.channels) {
        cli_error("%s: %d channel%s, but the mixture %s has %d; every file "
                  "of a track must have the mixture's channel count",
                  f->path, f->info.channels, f->info.channels == 1 ? "" : "s",
                  mix->path, mix->info.channels);
        return -1;
    }
    if (f->info.frames != mix->info.frames) {
        cli_error("%s: %lld frames, but the mixture %s has %lld; every file "
                  "of a track must be exactly as long as its mixture",
                  f->path, (long long)f->info.frames, mix->path,
                  (long long)mix->info.frames);
        return -1;
    }
    return 0;
}

int eval_dataset_check_track(eval_track *t, const char *dataset_dir,
                             const char *estimates_dir,
                             const char (*names)[DEMIX_SOURCE_NAME_BYTES],
                             int n_sources, int max_mixture_channels)
{
    char dir[EVAL_PATH_BYTES], est_dir[EVAL_PATH_BYTES];
    if (snprintf(dir, sizeof dir, "%s/%s", dataset_dir, t->name) >=
            (int)sizeof dir ||
        (estimates_dir && snprintf(est_dir, sizeof est_dir, "%s/%s",
                                   estimates_dir, t->name) >=
                              (int)sizeof est_dir)) {
        cli_error("%s/%s: path too long", dataset_dir, t->name);
        return 1;
    }
    int found = find_file(dir, EVAL_MIXTURE_STEM, &t->mixture);
    if (found < 0)
        return 1;
    if (found == 0) {
        cli_error("%s: no mixture file (expected %s/%s.wav or another audio "
                  "format)", dir, dir, EVAL_MIXTURE_STEM);
        return 1;
    }
    if (probe_file(&t->mixture))
        return 1;
    if (t->mixture.info.channels > max_mixture_channels) {
        cli_error("%s: %d channels; separation takes at most %d (mono or "
                  "stereo)", t->mixture.path, t->mixture.info.channels,
                  max_mixture_channels);
        return 1;
    }
    if (estimates_dir && !is_dir(est_dir)) {
        cli_error("%s: no estimates for track %s (expected a folder with "
                  "SOURCE.wav files)", est_dir, t->name);
        return 1;
    }
    int problems = 0;
    for (int k = 0; k < n_sources; k++) {
        found = find_file(dir, names[k], &t->ref[k]);
        if (found < 0 || (found && (probe_file(&t->ref[k]) ||
                                    check_like_mixture(&t->ref[k],
                                                       &t->mixture)))) {
            problems++;
            continue;
        }
        if (!found || !estimates_dir)
            continue; /* a silent source needs no estimate */
        found = find_file(est_dir, names[k], &t->est[k]);
        if (found == 0)
            cli_error("%s: no estimate for %s (expected %s/%s.wav or another "
                      "audio format)", est_dir, names[k], est_dir, names[k]);
        if (found <= 0 || probe_file(&t->est[k]) ||
            check_like_mixture(&t->est[k], &t->mixture))
            problems++;
    }
    return problems;
}
