/*
 * zip.c - the stored-entry ZIP writer of zip.h.
 *
 * Reading walks parts in order: for each entry its local header (built on
 * the fly from the entry) then its data (fread), then the central
 * directory and end record (built on the fly too). pos is the offset
 * within the current piece, so any chunk size works.
 *
 * Thread context: the caller's (one thread at a time per zip).
 */
#include "zip.h"

#include <string.h>

#define LOCAL_BYTES 30u
#define CENTRAL_BYTES 46u
#define END_BYTES 22u
#define LIMIT_4G 0xFFFFFFFFull

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t demixd_crc32(uint32_t crc, const void *data, size_t n)
{
    /* The table is the same whoever builds it; a race writes equal
     * values. Build it before threads start to stay clean under TSan
     * (main.c calls demixd_crc32(0, NULL, 0) at start-up). */
    if (!crc_ready)
        crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void demixd_zip_init(demixd_zip *z, time_t mtime)
{
    memset(z, 0, sizeof *z);
    struct tm tm;
    gmtime_r(&mtime, &tm);
    if (tm.tm_year < 80) { /* DOS dates start in 1980 */
        tm.tm_year = 80;
        tm.tm_mon = 0;
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    }
    z->dos_time = (uint16_t)(tm.tm_hour << 11 | tm.tm_min << 5 | tm.tm_sec / 2);
    z->dos_date =
        (uint16_t)((tm.tm_year - 80) << 9 | (tm.tm_mon + 1) << 5 | tm.tm_mday);
}

int demixd_zip_add(demixd_zip *z, const char *name, FILE *file, uint64_t size,
                   uint32_t crc)
{
    size_t nl = name ? strlen(name) : 0;
    if (!nl || nl >= DEMIXD_ZIP_NAME_BYTES || strchr(name, '/') ||
        strchr(name, '\\') || strstr(name, "..") || !file || z->finished)
        return DEMIX_EARG;
    if (z->n >= DEMIXD_ZIP_MAX_ENTRIES || size > LIMIT_4G)
        return DEMIX_ENOSPACE;
    demixd_zip_entry *e = &z->e[z->n];
    memcpy(e->name, name, nl + 1);
    e->file = file;
    e->size = size;
    e->crc = crc;
    z->n++;
    return DEMIX_OK;
}

int demixd_zip_finish(demixd_zip *z)
{
    uint64_t off = 0, cd = 0;
    for (int i = 0; i < z->n; i++) {
        z->e[i].offset = off;
        off += LOCAL_BYTES + strlen(z->e[i].name) + z->e[i].size;
        cd += CENTRAL_BYTES + strlen(z->e[i].name);
    }
    if (off > LIMIT_4G || off + cd + END_BYTES > LIMIT_4G)
        return DEMIX_ENOSPACE;
    z->cd_offset = off;
    z->cd_bytes = cd;
    z->total_bytes = off + cd + END_BYTES;
    z->finished = 1;
    z->part = 0;
    z->in_data = 0;
    z->pos = 0;
    for (int i = 0; i < z->n; i++)
        if (fseek(z->e[i].file, 0, SEEK_SET))
            return DEMIX_EIO;
    return DEMIX_OK;
}

static size_t local_header(const demixd_zip *z, const demixd_zip_entry *e,
                           uint8_t *h)
{
    size_t nl = strlen(e->name);
    put32(h, 0x04034b50u);
    put16(h + 4, 10);
    put16(h + 6, 0x0800);
    put16(h + 8, 0);
    put16(h + 10, z->dos_time);
    put16(h + 12, z->dos_date);
    put32(h + 14, e->crc);
    put32(h + 18, (uint32_t)e->size);
    put32(h + 22, (uint32_t)e->size);
    put16(h + 26, (uint32_t)nl);
    put16(h + 28, 0);
    memcpy(h + LOCAL_BYTES, e->name, nl);
    return LOCAL_BYTES + nl;
}

static size_t central_header(const demixd_zip *z, const demixd_zip_entry *e,
                             uint8_t *h)
{
    size_t nl = strlen(e->name);
    put32(h, 0x02014b50u);
    put16(h + 4, 0x031E);
    put16(h + 6, 10);
    put16(h + 8, 0x0800);
    put16(h + 10, 0);
    put16(h + 12, z->dos_time);
    put16(h + 14, z->dos_date);
    put32(h + 16, e->crc);
    put32(h + 20, (uint32_t)e->size);
    put32(h + 24, (uint32_t)e->size);
    put16(h + 28, (uint32_t)nl);
    put16(h + 30, 0);
    put16(h + 32, 0);
    put16(h + 34, 0);
    put16(h + 36, 0);
    put32(h + 38, 0100644u << 16);
    put32(h + 42, (uint32_t)e->offset);
    memcpy(h + CENTRAL_BYTES, e->name, nl);
    return CENTRAL_BYTES + nl;
}

/* Copy bytes [pos, pos + cap) of a built piece. */
static size_t copy_piece(const uint8_t *piece, size_t len, uint64_t *pos,
                         uint8_t *buf, size_t cap)
{
    size_t k = len - (size_t)*pos;
    if (k > cap)
        k = cap;
    memcpy(buf, piece + *pos, k);
    *pos += k;
    return k;
}

size_t demixd_zip_read(demixd_zip *z, uint8_t *buf, size_t cap, int *status)
{
    uint8_t piece[CENTRAL_BYTES + DEMIXD_ZIP_NAME_BYTES];
    size_t done = 0;
    *status = DEMIX_OK;
    if (!z->finished)
        return 0;
    while (done < cap && z->part <= z->n) {
        if (z->part < z->n) {
            demixd_zip_entry *e = &z->e[z->part];
            if (!z->in_data) {
                size_t len = local_header(z, e, piece);
                done += copy_piece(piece, len, &z->pos, buf + done, cap - done);
                if (z->pos == len) {
                    z->in_data = 1;
                    z->pos = 0;
                }
                continue;
            }
            uint64_t left = e->size - z->pos;
            size_t k = cap - done < left ? cap - done : (size_t)left;
            if (k) {
                size_t r = fread(buf + done, 1, k, e->file);
                done += r;
                z->pos += r;
                if (r < k) {
                    *status = DEMIX_EIO;
                    z->part = z->n + 1;
                    return done;
                }
            }
            if (z->pos == e->size) {
                z->part++;
                z->in_data = 0;
                z->pos = 0;
            }
            continue;
        }
        /* The directory: entries then the end record, as one piece whose
         * bytes are rebuilt per entry. */
        uint64_t at = 0;
        int progressed = 0;
        for (int i = 0; i < z->n && done < cap; i++) {
            size_t len = central_header(z, &z->e[i], piece);
            if (z->pos < at + len) {
                uint64_t p = z->pos - at;
                size_t k = copy_piece(piece, len, &p, buf + done, cap - done);
                done += k;
                z->pos += k;
                progressed = 1;
            }
            at += len;
        }
        if (done < cap && z->pos >= at) {
            uint8_t end[END_BYTES];
            put32(end, 0x06054b50u);
            put16(end + 4, 0);
            put16(end + 6, 0);
            put16(end + 8, (uint32_t)z->n);
            put16(end + 10, (uint32_t)z->n);
            put32(end + 12, (uint32_t)z->cd_bytes);
            put32(end + 16, (uint32_t)z->cd_offset);
            put16(end + 20, 0);
            uint64_t p = z->pos - at;
            size_t k = copy_piece(end, END_BYTES, &p, buf + done, cap - done);
            done += k;
            z->pos += k;
            progressed = 1;
            if (p == END_BYTES)
                z->part = z->n + 1;
        }
        if (!progressed)
            break;
    }
    return done;
}
