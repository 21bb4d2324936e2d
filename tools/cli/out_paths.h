/*
 * out_paths.h - where demix writes its stems: DIR/<input name>/<source>.wav.
 * Shared by `demix separate` and `demix stream`, which must lay out their
 * files identically.
 *
 * Thread context: any thread; no shared state.
 */
#ifndef DEMIX_OUT_PATHS_H
#define DEMIX_OUT_PATHS_H

#include <stddef.h>

/* mkdir -p path. DEMIX_EARG when the path is too long, DEMIX_EIO when a
 * folder cannot be made (err names it and says why). */
int out_paths_make_dirs(const char *path, char *err, size_t err_cap);

/* "dir/song.take2.flac" -> "song.take2"; a leading dot is kept; an empty
 * result becomes "output". */
void out_paths_base_name(const char *path, char *out, size_t cap);

/* The name of the folder that holds the file at path: "musdb/Song
 * A/mixture.wav" -> "Song A" (resolved: "mixture.wav" in the current
 * folder gets the current folder's name; symbolic links are followed).
 * "output" when there is none (the file is in /). DEMIX_EIO when path
 * cannot be resolved (err says why). For datasets that name every file
 * alike (MUSDB18's mixture.wav). */
int out_paths_parent_name(const char *path, char *out, size_t cap, char *err,
                          size_t err_cap);

#endif
