/*
 * cpu_bf16.c - bfloat16 conversion and the AVX512-BF16 product of the fast
 * mode (cpu_bf16.h).
 *
 * Design: the fp32 kernel's (cpu_matmul.c) with 512-bit registers. Tiles of
 * RB rows x JB weight rows, weight-row blocks outer so the weights stream
 * from memory once per call, the next block prefetched while the current
 * one computes:
 *   rows 1: 1 x 8    rows 2: 2 x 8    rows 3: 3 x 6    rows >= 4: 4 x 4
 *   leftover rows in a block: (1..3) x 4; leftover weight rows: (1..4) x 1
 * Tile shapes do not change any element's operation sequence.
 *
 * Variants: AVX512F + AVX512-BF16 only (no portable emulation: fast mode
 * is not offered elsewhere). Validated against double sums and for row
 * stability in tests/unit/test_cpu_matmul.c, end to end against the fp32
 * path in test_cpu_engine.c.
 *
 * Thread context: reentrant.
 */
#include "cpu_bf16.h"

#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) &&                              \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10) ||           \
     (defined(__clang__) && __clang_major__ >= 9))
#define DEMIX_CPU_HAVE_BF16 1
#include <immintrin.h>
#else
#define DEMIX_CPU_HAVE_BF16 0
#endif

int demix__cpu_bf16_padded(int k)
{
    return (k + DEMIX_CPU_BF16_PAD - 1) / DEMIX_CPU_BF16_PAD * DEMIX_CPU_BF16_PAD;
}

uint16_t demix__cpu_bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float demix__cpu_bf16_to_float(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void demix__cpu_bf16_rows(int rows, const float *a, size_t a_stride, int ka,
                          const float *b, size_t b_stride, int kb,
                          uint16_t *dst, int k_pad)
{
    for (size_t r = 0; r < (size_t)rows; r++) {
        uint16_t *d = dst + r * (size_t)k_pad;
        const float *ar = a + r * a_stride;
        for (int i = 0; i < ka; i++)
            d[i] = demix__cpu_bf16_from_float(ar[i]);
        if (b) {
            const float *br = b + r * b_stride;
            for (int i = 0; i < kb; i++)
                d[ka + i] = demix__cpu_bf16_from_float(br[i]);
        } else {
            kb = 0;
        }
        memset(d + ka + kb, 0, (size_t)(k_pad - ka - kb) * sizeof *d);
    }
}

#if DEMIX_CPU_HAVE_BF16

#define BF16 __attribute__((target("avx2,fma,avx512f,avx512bf16")))
#define TILE_MAX_ROWS 4
#define TILE_MAX_COLS 8
#define STEP DEMIX_CPU_BF16_PAD /* bf16 values per 512-bit register */

int demix__cpu_bf16_available(void)
{
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

BF16 static inline float hsum16(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

BF16 __attribute__((always_inline)) static inline void
tile(const int RB, const int JB, int k_pad, const uint16_t *x,
     const uint16_t *w, size_t r0, size_t j0, int prefetch, const float *bias,
     float *y, size_t y_stride)
{
    __m512 acc[TILE_MAX_ROWS][TILE_MAX_COLS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int j = 0; j < JB; j++)
            acc[r][j] = _mm512_setzero_ps();
    const uint16_t *xr[TILE_MAX_ROWS], *wr[TILE_MAX_COLS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
        xr[r] = x + (r0 + (size_t)r) * (size_t)k_pad;
#pragma GCC unroll 8
    for (int j = 0; j < JB; j++)
        wr[j] = w + (j0 + (size_t)j) * (size_t)k_pad;
    size_t next_block = (size_t)JB * (size_t)k_pad;
    for (int kk = 0; kk < k_pad; kk += STEP) {
        __m512bh wv[TILE_MAX_COLS];
#pragma GCC unroll 8
        for (int j = 0; j < JB; j++) {
            if (prefetch)
                _mm_prefetch((const char *)(wr[j] + next_block + kk),
                             _MM_HINT_T0);
            wv[j] = (__m512bh)_mm512_loadu_si512((const void *)(wr[j] + kk));
        }
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m512bh xv =
                (__m512bh)_mm512_loadu_si512((const void *)(xr[r] + kk));
#pragma GCC unroll 8
            for (int j = 0; j < JB; j++)
                acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv, wv[j]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int j = 0; j < JB; j++) {
            float s = hsum16(acc[r][j]);
            if (bias)
                s += bias[j0 + (size_t)j];
            y[(r0 + (size_t)r) * y_stride + j0 + (size_t)j] = s;
        }
}

typedef void (*tile_fn)(int, const uint16_t *, const uint16_t *, size_t,
                        size_t, int, const float *, float *, size_t);

#define DEMIX_TILE(rb, jb)                                                     \
    BF16 __attribute__((noinline)) static void tile_##rb##x##jb(              \
        int k_pad, const uint16_t *x, const uint16_t *w, size_t r0,           \
        size_t j0, int prefetch, const float *bias, float *y,                 \
        size_t y_stride)                                                       \
    {                                                                          \
        tile(rb, jb, k_pad, x, w, r0, j0, prefetch, bias, y, y_stride);        \
    }
DEMIX_TILE(1, 8)
DEMIX_TILE(2, 8)
DEMIX_TILE(3, 6)
DEMIX_TILE(4, 4)
DEMIX_TILE(1, 4)
DEMIX_TILE(2, 4)
DEMIX_TILE(3, 4)
DEMIX_TILE(1, 1)
DEMIX_TILE(2, 1)
DEMIX_TILE(3, 1)
DEMIX_TILE(4, 1)
#undef DEMIX_TILE

static const tile_fn block_tile[TILE_MAX_ROWS + 1] = {0, tile_1x8, tile_2x8,
                                                      tile_3x6, tile_4x4};
static const int block_cols[TILE_MAX_ROWS + 1] = {0, 8, 8, 6, 4};
_Static_assert(DEMIX_CPU_BF16_COLUMN_ALIGN % 8 == 0 &&
                   DEMIX_CPU_BF16_COLUMN_ALIGN % 6 == 0 &&
                   DEMIX_CPU_BF16_COLUMN_ALIGN % 4 == 0,
               "column ranges must start on a block of every tile shape");
static const tile_fn leftover_rows_tile[TILE_MAX_ROWS] = {0, tile_1x4,
                                                          tile_2x4, tile_3x4};
static const tile_fn single_col_tile[TILE_MAX_ROWS + 1] = {
    0, tile_1x1, tile_2x1, tile_3x1, tile_4x1};

void demix__cpu_matmul_bf16(int rows, int n, int k_pad, const uint16_t *x,
                            const uint16_t *w, const float *bias, float *y,
                            size_t y_stride)
{
    if (rows <= 0 || n <= 0)
        return;
    int rb = rows < TILE_MAX_ROWS ? rows : TILE_MAX_ROWS;
    int jb = block_cols[rb];
    int full_rows = rows - rows % rb;
    int j = 0;
    for (; j + jb <= n; j += jb) {
        int next_block = j + 2 * jb <= n;
        for (int r = 0; r < full_rows; r += rb)
            block_tile[rb](k_pad, x, w, (size_t)r, (size_t)j,
                           next_block && r == 0, bias, y, y_stride);
        if (full_rows < rows) /* only when rb == 4, so jb == 4 */
            leftover_rows_tile[rows - full_rows](k_pad, x, w,
                                                 (size_t)full_rows, (size_t)j,
                                                 0, bias, y, y_stride);
    }
    for (; j < n; j++) {
        int r = 0;
        for (; r + TILE_MAX_ROWS <= rows; r += TILE_MAX_ROWS)
            single_col_tile[TILE_MAX_ROWS](k_pad, x, w, (size_t)r, (size_t)j,
                                           0, bias, y, y_stride);
        if (r < rows)
            single_col_tile[rows - r](k_pad, x, w, (size_t)r, (size_t)j, 0,
                                      bias, y, y_stride);
    }
}

#else /* no AVX512-BF16 code in this build */

int demix__cpu_bf16_available(void) { return 0; }

void demix__cpu_matmul_bf16(int rows, int n, int k_pad, const uint16_t *x,
                            const uint16_t *w, const float *bias, float *y,
                            size_t y_stride)
{
    (void)rows, (void)n, (void)k_pad, (void)x, (void)w, (void)bias, (void)y,
        (void)y_stride;
}

#endif
