/*
 * zip_read.h - reading the ZIP answers of demixd's file API in the
 * integration tests: the archive parsed from its central directory (stored
 * entries only, no ZIP64; every entry's CRC-32 checked), entries found by
 * "<source>.<ext>", an audio entry decoded with libsndfile. Failures are
 * cmocka assertions.
 */
#ifndef DEMIX_TEST_ZIP_READ_H
#define DEMIX_TEST_ZIP_READ_H

#include <stddef.h>
#include <stdint.h>

#include <sndfile.h>

typedef struct zip_entry {
    char name[256];
    const uint8_t *data; /* inside the archive given to zip_parse */
    size_t size;
} zip_entry;

/* Parse a whole ZIP into at most cap entries; returns the count. */
int zip_parse(const uint8_t *z, size_t n, zip_entry *out, int cap);

/* The entry whose name ends in "<source>.<ext>" (any folder before it), or
 * NULL; zip_find looks for "<source>.wav". */
const zip_entry *zip_find_ext(const zip_entry *e, int n, const char *source,
                              const char *ext);
const zip_entry *zip_find(const zip_entry *e, int n, const char *source);

/* Decode an audio entry (written to tmp_dir/entry.bin first, as libsndfile
 * reads files): interleaved floats, malloc'd; info filled in. */
float *demix_test_read_zip_audio(const zip_entry *e, const char *tmp_dir,
                                 SF_INFO *info);

#endif
