/*
 * zip.h - a minimal ZIP writer for the file API's response: entries
 * "stored" (method 0, no compression: the stems are already compressed or
 * PCM that deflate barely shrinks), sizes and CRC-32 known before the
 * first byte, so the whole archive's length goes in Content-Length and it
 * streams out in chunks with no seeking.
 *
 * Format (PKWARE APPNOTE 6.3.x, the subset every unzip reads), all
 * integers little-endian:
 *
 *   for each entry:  local file header (30 bytes + name)
 *                      sig 0x04034b50, version needed 10 (1.0: stored),
 *                      flags 0x0800 (UTF-8 name), method 0, DOS time,
 *                      DOS date, crc32, compressed size = size,
 *                      uncompressed size, name length, extra length 0
 *                    file data (size bytes, as is)
 *   central directory, per entry (46 bytes + name)
 *                      sig 0x02014b50, version made by 0x031E (Unix,
 *                      3.0), version needed 10, flags, method, time, date,
 *                      crc32, sizes, name length, extra 0, comment 0,
 *                      disk 0, internal attr 0, external attr (0644 file
 *                      mode << 16), offset of the local header, name
 *   end of central directory (22 bytes)
 *                      sig 0x06054b50, disk 0, disk 0, entries, entries,
 *                      directory size, directory offset, comment length 0
 *
 * No ZIP64: every entry, offset and the total stay below 4 GiB (checked:
 * DEMIX_ENOSPACE otherwise). The file API's limits keep far below.
 *
 * Usage sketch:
 *
 *     demixd_zip z;
 *     demixd_zip_init(&z, unix_time);
 *     demixd_zip_add(&z, "vocals.wav", file, size, crc);  // crc: below
 *     demixd_zip_finish(&z);              // z.total_bytes is now known
 *     while ((n = demixd_zip_read(&z, buf, cap, &rc)) > 0) send(buf, n);
 *
 *     uint32_t crc = demixd_crc32(0, data, n);   // chainable
 *
 * Files are read with fread from their current state (the writer seeks
 * each to its start). The zip does not own or close them.
 *
 * Threads: one thread at a time per zip; demixd_crc32 is reentrant.
 */
#ifndef DEMIXD_ZIP_H
#define DEMIXD_ZIP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "demix_error.h"

#define DEMIXD_ZIP_MAX_ENTRIES 16
#define DEMIXD_ZIP_NAME_BYTES 64

typedef struct demixd_zip_entry {
    char name[DEMIXD_ZIP_NAME_BYTES];
    FILE *file;
    uint64_t size;
    uint32_t crc;
    uint64_t offset; /* of its local header */
} demixd_zip_entry;

typedef struct demixd_zip {
    demixd_zip_entry e[DEMIXD_ZIP_MAX_ENTRIES];
    int n;
    uint16_t dos_time, dos_date;
    uint64_t cd_offset, cd_bytes, total_bytes;
    int finished;
    /* reading */
    int part; /* 0..n-1: entry (header then data), n: directory */
    int in_data;
    uint64_t pos; /* within the current header/data/directory */
} demixd_zip;

/* CRC-32 (ISO 3309, polynomial 0xEDB88320) of n bytes, continuing crc
 * (0 to start). */
uint32_t demixd_crc32(uint32_t crc, const void *data, size_t n);

void demixd_zip_init(demixd_zip *z, time_t mtime);

/* DEMIX_EARG for a name that is empty, too long or holds '/', '\\' or
 * "..", DEMIX_ENOSPACE past DEMIXD_ZIP_MAX_ENTRIES or 4 GiB. */
DEMIX_WARN_UNUSED int demixd_zip_add(demixd_zip *z, const char *name,
                                     FILE *file, uint64_t size, uint32_t crc);

/* Lay out the directory; total_bytes is then the archive's length. */
DEMIX_WARN_UNUSED int demixd_zip_finish(demixd_zip *z);

/* Next bytes of the archive into buf; 0 at the end. *status gets DEMIX_EIO
 * when a file is shorter than its size (the archive is then cut). */
size_t demixd_zip_read(demixd_zip *z, uint8_t *buf, size_t cap, int *status);

#endif /* DEMIXD_ZIP_H */
