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

#endif
