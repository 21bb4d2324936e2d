/*
 * zip_read.c - see zip_read.h.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zip_read.h"

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
    return rd16(p) | rd16(p + 2) << 16;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

/* Parse a whole ZIP (no ZIP64): stored entries only. Returns the count. */
int zip_parse(const uint8_t *z, size_t n, zip_entry *out, int cap)
{
    assert_true(n >= 22);
    size_t eocd = n - 22;
    while (eocd > 0 && rd32(z + eocd) != 0x06054b50u)
        eocd--;
    assert_int_equal(rd32(z + eocd), 0x06054b50u);
    int count = (int)rd16(z + eocd + 10);
    size_t cd = rd32(z + eocd + 16);
    assert_true(count <= cap);
    for (int i = 0; i < count; i++) {
        assert_true(cd + 46 <= n);
        assert_int_equal(rd32(z + cd), 0x02014b50u);
        uint32_t method = rd16(z + cd + 10);
        uint32_t crc = rd32(z + cd + 16);
        uint32_t csize = rd32(z + cd + 20), usize = rd32(z + cd + 24);
        uint32_t nlen = rd16(z + cd + 28), elen = rd16(z + cd + 30),
                 clen = rd16(z + cd + 32);
        uint32_t local = rd32(z + cd + 42);
        assert_int_equal(method, 0); /* stored */
        assert_int_equal(csize, usize);
        assert_true(nlen < sizeof out[i].name);
        memcpy(out[i].name, z + cd + 46, nlen);
        out[i].name[nlen] = '\0';
        assert_true(local + 30 <= n);
        assert_int_equal(rd32(z + local), 0x04034b50u);
        size_t data = local + 30 + rd16(z + local + 26) + rd16(z + local + 28);
        assert_true(data + csize <= n);
        out[i].data = z + data;
        out[i].size = csize;
        assert_int_equal(crc32_of(out[i].data, out[i].size), crc);
        cd += 46 + nlen + elen + clen;
    }
    return count;
}

/* The entry whose name ends in "<source>.<ext>" (any folder before it). */
const zip_entry *zip_find_ext(const zip_entry *e, int n, const char *source,
                              const char *ext)
{
    char want[64];
    snprintf(want, sizeof want, "%s.%s", source, ext);
    size_t wl = strlen(want);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(e[i].name);
        if (l >= wl && strcmp(e[i].name + l - wl, want) == 0 &&
            (l == wl || e[i].name[l - wl - 1] == '/'))
            return &e[i];
    }
    return NULL;
}

const zip_entry *zip_find(const zip_entry *e, int n, const char *source)
{
    return zip_find_ext(e, n, source, "wav");
}

float *demix_test_read_zip_audio(const zip_entry *e, const char *tmp_dir,
                                 SF_INFO *info)
{
    char path[512];
    snprintf(path, sizeof path, "%s/entry.bin", tmp_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(e->data, 1, e->size, f), e->size);
    fclose(f);
    memset(info, 0, sizeof *info);
    SNDFILE *sf = sf_open(path, SFM_READ, info);
    if (!sf)
        print_error("%s: %s\n", e->name, sf_strerror(NULL));
    assert_non_null(sf);
    float *x = malloc((size_t)(info->frames * info->channels + 1) * sizeof *x);
    assert_non_null(x);
    assert_int_equal(sf_readf_float(sf, x, info->frames), info->frames);
    sf_close(sf);
    return x;
}
