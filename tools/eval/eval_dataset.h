/*
 * eval_dataset.h - the files of a `demix eval` data set: one folder per
 * track, DATASET/<track>/mixture.* and DATASET/<track>/<source>.*, and
 * optionally precomputed estimates ESTIMATES/<track>/<source>.*.
 *
 * Rules (docs/eval.md): any extension libsndfile reads, one file per name
 * (bass.wav beside bass.flac is an error); a missing source file means the
 * source is silent; every reference and estimate has the mixture's sample
 * rate, channel count and length in frames, exactly. Folders whose name
 * starts with '.' are not tracks; other files beside the folders, and
 * other files inside them, are ignored.
 *
 * Usage sketch:
 *
 *     eval_track *tracks;
 *     int n = eval_dataset_list(dir, &tracks);           // sorted by name
 *     for (i...) bad += eval_dataset_check_track(&tracks[i], dir, NULL,
 *                                                names, n_sources, 2);
 *     ... open tracks[i].mixture.path, tracks[i].ref[k].path ...
 *     free(tracks);
 *
 * Errors are printed (cli_error), one line each, naming the file or folder.
 *
 * Thread context: the main thread.
 */
#ifndef DEMIX_EVAL_DATASET_H
#define DEMIX_EVAL_DATASET_H

#include "audio_io.h"
#include "engine.h"

#define EVAL_PATH_BYTES 4096
#define EVAL_TRACK_NAME_BYTES 256
#define EVAL_MIXTURE_STEM "mixture"

typedef struct eval_file {
    int present;
    char path[EVAL_PATH_BYTES];
    audio_info info; /* after the check, frames are known (>= 0) */
} eval_file;

typedef struct eval_track {
    char name[EVAL_TRACK_NAME_BYTES]; /* the folder's name */
    eval_file mixture;
    eval_file ref[DEMIX_MAX_SOURCES]; /* by source, as the names given */
    eval_file est[DEMIX_MAX_SOURCES]; /* with estimates only */
} eval_track;

/* The track folders of dataset_dir, sorted by name (strcmp), into *out
 * (malloc'd, the caller frees; only the names are filled in). Returns the
 * count, or -1 after printing why (unreadable folder, no track folders). */
int eval_dataset_list(const char *dataset_dir, eval_track **out);

/* Find and check one track's files: the mixture, the reference of each of
 * the n_sources names, and with estimates_dir (else NULL) each estimate a
 * present reference needs. Files are opened for their format, rate,
 * channels and length (decoded once to count it when the container does
 * not say). max_mixture_channels: what the caller can take. Returns the
 * number of problems found, each printed; 0 when the track can be scored. */
int eval_dataset_check_track(eval_track *t, const char *dataset_dir,
                             const char *estimates_dir,
                             const char (*names)[DEMIX_SOURCE_NAME_BYTES],
                             int n_sources, int max_mixture_channels);

#endif /* DEMIX_EVAL_DATASET_H */
