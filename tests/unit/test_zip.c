/*
 * test_zip.c - server/zip.c, the stored-entry ZIP writer of the file API:
 * CRC-32 known answers and chaining; names and limits refused with the
 * documented status; an archive of two files read whole is byte for byte
 * the PKWARE layout (local headers, data, central directory, end record,
 * DOS time and date) and the same whatever the read chunk size; a file
 * shorter than its declared size ends the read with DEMIX_EIO.
 *
 * Thread context: the test's one thread.
 */
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zip.h"

/* 2024-02-27 12:34:56 UTC */
#define MTIME ((time_t)1709037296)
#define DOS_TIME (12 << 11 | 34 << 5 | 56 / 2)
#define DOS_DATE ((2024 - 1980) << 9 | 2 << 5 | 27)

static uint32_t get16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
    return get16(p) | get16(p + 2) << 16;
}

static FILE *file_with(const void *data, size_t n)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    return f;
}

static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(demixd_crc32(0, NULL, 0), 0);
    assert_int_equal(demixd_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(demixd_crc32(0, "a", 1), 0xE8B7BE43u);
    uint32_t part = demixd_crc32(0, "1234", 4);
    assert_int_equal(demixd_crc32(part, "56789", 5), 0xCBF43926u);
}

static void test_add_refuses(void **state)
{
    (void)state;
    FILE *f = file_with("x", 1);
    demixd_zip z;
    demixd_zip_init(&z, MTIME);
    char long_name[DEMIXD_ZIP_NAME_BYTES + 1];
    memset(long_name, 'n', DEMIXD_ZIP_NAME_BYTES);
    long_name[DEMIXD_ZIP_NAME_BYTES] = '\0';
    assert_int_equal(demixd_zip_add(&z, "", f, 1, 0), DEMIX_EARG);
    assert_int_equal(demixd_zip_add(&z, NULL, f, 1, 0), DEMIX_EARG);
    assert_int_equal(demixd_zip_add(&z, "a/b.wav", f, 1, 0), DEMIX_EARG);
    assert_int_equal(demixd_zip_add(&z, "a\\b.wav", f, 1, 0), DEMIX_EARG);
    assert_int_equal(demixd_zip_add(&z, "..wav", f, 1, 0), DEMIX_EARG);
    assert_int_equal(demixd_zip_add(&z, long_name, f, 1, 0), DEMIX_EARG);
    long_name[DEMIXD_ZIP_NAME_BYTES - 1] = '\0'; /* 63 bytes: fits */
    assert_int_equal(demixd_zip_add(&z, long_name, f, 1, 0), DEMIX_OK);
    assert_int_equal(demixd_zip_add(&z, "a.wav", NULL, 1, 0), DEMIX_EARG);
    assert_int_equal(demixd_zip_add(&z, "big.wav", f, 0x100000000ull, 0),
                     DEMIX_ENOSPACE);
    for (int i = 1; i < DEMIXD_ZIP_MAX_ENTRIES; i++)
        assert_int_equal(demixd_zip_add(&z, "e.wav", f, 1, 0), DEMIX_OK);
    assert_int_equal(demixd_zip_add(&z, "one_more.wav", f, 1, 0),
                     DEMIX_ENOSPACE);
    assert_int_equal(z.n, DEMIXD_ZIP_MAX_ENTRIES);

    demixd_zip y;
    demixd_zip_init(&y, MTIME);
    assert_int_equal(demixd_zip_add(&y, "a.wav", f, 1, 0), DEMIX_OK);
    assert_int_equal(demixd_zip_finish(&y), DEMIX_OK);
    assert_int_equal(demixd_zip_add(&y, "b.wav", f, 1, 0), DEMIX_EARG);
    fclose(f);
}

/* The whole archive, read cap bytes at a time. */
static size_t read_all(demixd_zip *z, uint8_t *out, size_t out_cap, size_t cap,
                       int *status)
{
    assert_int_equal(demixd_zip_finish(z), DEMIX_OK);
    size_t total = 0, n;
    uint8_t *chunk = malloc(cap);
    assert_non_null(chunk);
    while ((n = demixd_zip_read(z, chunk, cap, status)) > 0) {
        assert_true(total + n <= out_cap);
        memcpy(out + total, chunk, n);
        total += n;
        if (*status)
            break;
    }
    free(chunk);
    return total;
}

static void test_layout(void **state)
{
    (void)state;
    static const char data_a[] = "drums drums drums";
    uint8_t data_b[1000];
    for (size_t i = 0; i < sizeof data_b; i++)
        data_b[i] = (uint8_t)(i * 7);
    FILE *fa = file_with(data_a, sizeof data_a - 1);
    FILE *fb = file_with(data_b, sizeof data_b);
    uint32_t crc_a = demixd_crc32(0, data_a, sizeof data_a - 1);
    uint32_t crc_b = demixd_crc32(0, data_b, sizeof data_b);
    size_t size_a = sizeof data_a - 1, size_b = sizeof data_b;

    static const size_t caps[] = {1, 7, 45, 4096};
    uint8_t first[2048], buf[2048];
    size_t first_len = 0;
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        demixd_zip z;
        demixd_zip_init(&z, MTIME);
        assert_int_equal(demixd_zip_add(&z, "drums.wav", fa, size_a, crc_a),
                         DEMIX_OK);
        assert_int_equal(demixd_zip_add(&z, "bass.wav", fb, size_b, crc_b),
                         DEMIX_OK);
        int status = -99;
        size_t len = read_all(&z, buf, sizeof buf, caps[c], &status);
        assert_int_equal(status, DEMIX_OK);
        assert_int_equal(len, z.total_bytes);
        assert_int_equal(demixd_zip_read(&z, buf, sizeof buf, &status), 0);
        if (c == 0) {
            memcpy(first, buf, len);
            first_len = len;
        } else {
            assert_int_equal(len, first_len);
            assert_memory_equal(buf, first, len);
        }
    }

    /* Local header of drums.wav at 0, its data after the name. */
    const uint8_t *p = first;
    assert_int_equal(get32(p), 0x04034b50u);
    assert_int_equal(get16(p + 4), 10);     /* version needed */
    assert_int_equal(get16(p + 6), 0x0800); /* UTF-8 name */
    assert_int_equal(get16(p + 8), 0);      /* stored */
    assert_int_equal(get16(p + 10), DOS_TIME);
    assert_int_equal(get16(p + 12), DOS_DATE);
    assert_int_equal(get32(p + 14), crc_a);
    assert_int_equal(get32(p + 18), size_a);
    assert_int_equal(get32(p + 22), size_a);
    assert_int_equal(get16(p + 26), 9);
    assert_int_equal(get16(p + 28), 0);
    assert_memory_equal(p + 30, "drums.wav", 9);
    assert_memory_equal(p + 39, data_a, size_a);
    /* bass.wav right after. */
    size_t off_b = 30 + 9 + size_a;
    p = first + off_b;
    assert_int_equal(get32(p), 0x04034b50u);
    assert_int_equal(get32(p + 14), crc_b);
    assert_int_equal(get16(p + 26), 8);
    assert_memory_equal(p + 30, "bass.wav", 8);
    assert_memory_equal(p + 38, data_b, size_b);
    /* The central directory, then the end record. */
    size_t cd = off_b + 30 + 8 + size_b;
    size_t cd_bytes = 46 + 9 + 46 + 8;
    assert_int_equal(first_len, cd + cd_bytes + 22);
    p = first + cd;
    assert_int_equal(get32(p), 0x02014b50u);
    assert_int_equal(get16(p + 4), 0x031E); /* made by Unix, 3.0 */
    assert_int_equal(get16(p + 12), DOS_TIME);
    assert_int_equal(get16(p + 14), DOS_DATE);
    assert_int_equal(get32(p + 16), crc_a);
    assert_int_equal(get32(p + 20), size_a);
    assert_int_equal(get32(p + 38), 0100644u << 16);
    assert_int_equal(get32(p + 42), 0); /* offset of its local header */
    assert_memory_equal(p + 46, "drums.wav", 9);
    p += 46 + 9;
    assert_int_equal(get32(p), 0x02014b50u);
    assert_int_equal(get32(p + 42), off_b);
    assert_memory_equal(p + 46, "bass.wav", 8);
    p = first + first_len - 22;
    assert_int_equal(get32(p), 0x06054b50u);
    assert_int_equal(get16(p + 8), 2);
    assert_int_equal(get16(p + 10), 2);
    assert_int_equal(get32(p + 12), cd_bytes);
    assert_int_equal(get32(p + 16), cd);
    assert_int_equal(get16(p + 20), 0);
    fclose(fa);
    fclose(fb);
}

/* Times before 1980 (DOS dates start there) are written as 1980-01-01. */
static void test_dos_epoch(void **state)
{
    (void)state;
    demixd_zip z;
    demixd_zip_init(&z, 0);
    assert_int_equal(z.dos_time, 0);
    assert_int_equal(z.dos_date, 0 << 9 | 1 << 5 | 1);
    demixd_zip_init(&z, MTIME);
    assert_int_equal(z.dos_time, DOS_TIME);
    assert_int_equal(z.dos_date, DOS_DATE);
}

static void test_short_file_is_an_error(void **state)
{
    (void)state;
    FILE *f = file_with("0123456789", 10);
    demixd_zip z;
    demixd_zip_init(&z, MTIME);
    assert_int_equal(demixd_zip_add(&z, "cut.wav", f, 20, 0), DEMIX_OK);
    uint8_t buf[512];
    int status = DEMIX_OK;
    size_t len = read_all(&z, buf, sizeof buf, 16, &status);
    assert_int_equal(status, DEMIX_EIO);
    assert_int_equal(len, 30 + 7 + 10); /* the header and what there was */
    assert_int_equal(demixd_zip_read(&z, buf, sizeof buf, &status), 0);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_add_refuses),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_dos_epoch),
        cmocka_unit_test(test_short_file_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
