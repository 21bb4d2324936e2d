/*
 * cpu_matmul.c - the row-stable batched product (cpu_matmul.h).
 *
 * Design. The output is cut into register tiles of RB rows x JB weight rows
 * ([RB][JB] accumulators of 8 float lanes). The weight-row block is the
 * outer loop and the row blocks the inner one, so each weight row is read
 * from memory once per call whatever the batch: at small batches the step
 * is bound by streaming the weights (about 200 MB for the default model),
 * and that is the cost that batching amortises. Tile shapes only decide
 * which elements are computed together; every element goes through the
 * same per-lane fused multiply-add chain and the same horizontal sum, so
 * the result of a row never depends on the batch around it.
 *
 *   rows  1: 1 x 8 tiles    rows 2: 2 x 6    rows 3: 3 x 4    rows >= 4: 4 x 3
 *   leftover rows in a block: (1..3) x 3; leftover weight rows: (1..4) x 1
 *
 * Variants: AVX2+FMA (x86-64, chosen at run time with
 * __builtin_cpu_supports) and portable C with fmaf(), which performs the
 * identical operation sequence (validated bit for bit against each other in
 * tests/unit/test_cpu_matmul.c, and against double sums there and in
 * test_cpu_engine.c).
 *
 * Thread context: reentrant. force_portable is written by tests only.
 */
#include "cpu_matmul.h"

#include <math.h>
#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) &&                              \
    (defined(__GNUC__) || defined(__clang__))
#define DEMIX_CPU_HAVE_AVX2 1
#include <immintrin.h>
#else
#define DEMIX_CPU_HAVE_AVX2 0
#endif

#define LANES 8

static int force_portable;

void demix__cpu_matmul_force_portable(int on) { force_portable = on != 0; }

/* ----------------------------------------------------------- portable */

/* One output element: the reference operation sequence. */
static float element_portable(const demix_cpu_operand *ops, int op_count,
                              size_t r, size_t j)
{
    float lane[LANES] = {0};
    for (int o = 0; o < op_count; o++) {
        const demix_cpu_operand *p = &ops[o];
        const float *x = p->x + r * p->x_stride;
        const float *w = p->w + j * p->w_stride;
        int k8 = p->k & ~(LANES - 1);
        for (int kk = 0; kk < k8; kk += LANES)
            for (int l = 0; l < LANES; l++)
                lane[l] = fmaf(x[kk + l], w[kk + l], lane[l]);
        if (k8 < p->k) {
            int rem = p->k - k8;
            for (int l = 0; l < LANES; l++) {
                float xv = l < rem ? x[k8 + l] : 0.0f;
                float wv = l < rem ? w[k8 + l] : 0.0f;
                lane[l] = fmaf(xv, wv, lane[l]);
            }
        }
    }
    /* The AVX2 horizontal sum: halves, then pairs, then the last two. */
    float s0 = lane[0] + lane[4], s1 = lane[1] + lane[5];
    float s2 = lane[2] + lane[6], s3 = lane[3] + lane[7];
    float t0 = s0 + s2, t1 = s1 + s3;
    return t0 + t1;
}

static void matmul_portable(int rows, int n, const demix_cpu_operand *ops,
                            int op_count, const float *bias, float *y,
                            size_t y_stride)
{
    for (size_t r = 0; r < (size_t)rows; r++)
        for (size_t j = 0; j < (size_t)n; j++) {
            float s = element_portable(ops, op_count, r, j);
            if (bias)
                s += bias[j];
            y[r * y_stride + j] = s;
        }
}

/* --------------------------------------------------------------- AVX2 */

#if DEMIX_CPU_HAVE_AVX2

#define TILE_MAX_ROWS 4
#define TILE_MAX_COLS 8
#define AVX2 __attribute__((target("avx2,fma")))

/* Eight -1 then eight 0: loading at [8 - rem] gives rem leading ones. */
static const int32_t tail_mask_table[2 * LANES] = {-1, -1, -1, -1, -1, -1,
                                                   -1, -1, 0,  0,  0,  0,
                                                   0,  0,  0,  0};

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
}

/* A tile of RB rows (from r0) by JB weight rows (from j0); RB and JB are
 * constants in every caller, so the loops unroll into registers. */
AVX2 __attribute__((always_inline)) static inline void
tile(const int RB, const int JB, const demix_cpu_operand *ops, int op_count,
     size_t r0, size_t j0, int prefetch, const float *bias, float *y,
     size_t y_stride)
{
    __m256 acc[TILE_MAX_ROWS][TILE_MAX_COLS];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int j = 0; j < JB; j++)
            acc[r][j] = _mm256_setzero_ps();

    for (int o = 0; o < op_count; o++) {
        const demix_cpu_operand *p = &ops[o];
        const float *xr[TILE_MAX_ROWS];
        const float *wr[TILE_MAX_COLS];
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++)
            xr[r] = p->x + (r0 + (size_t)r) * p->x_stride;
#pragma GCC unroll 8
        for (int j = 0; j < JB; j++)
            wr[j] = p->w + (j0 + (size_t)j) * p->w_stride;
        int k8 = p->k & ~(LANES - 1);
        for (int kk = 0; kk < k8; kk += LANES) {
            /* Pull the next weight-row block towards L1 while this one
             * computes, one 64-byte line per row every other step. */
            if (prefetch && (kk & 15) == 0)
#pragma GCC unroll 8
                for (int j = 0; j < JB; j++)
                    _mm_prefetch((const char *)(wr[j] + (size_t)JB * p->w_stride + kk),
                                 _MM_HINT_T0);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                __m256 xv = _mm256_loadu_ps(xr[r] + kk);
#pragma GCC unroll 8
                for (int j = 0; j < JB; j++)
                    acc[r][j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wr[j] + kk),
                                                acc[r][j]);
            }
        }
        if (k8 < p->k) {
            __m256i m = _mm256_loadu_si256(
                (const __m256i *)(tail_mask_table + LANES - (p->k - k8)));
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                __m256 xv = _mm256_maskload_ps(xr[r] + k8, m);
#pragma GCC unroll 8
                for (int j = 0; j < JB; j++)
                    acc[r][j] = _mm256_fmadd_ps(
                        xv, _mm256_maskload_ps(wr[j] + k8, m), acc[r][j]);
            }
        }
    }

#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int j = 0; j < JB; j++) {
            float s = hsum8(acc[r][j]);
            if (bias)
                s += bias[j0 + (size_t)j];
            y[(r0 + (size_t)r) * y_stride + j0 + (size_t)j] = s;
        }
}

typedef void (*tile_fn)(const demix_cpu_operand *, int, size_t, size_t, int,
                        const float *, float *, size_t);

#define DEMIX_TILE(rb, jb)                                                     \
    AVX2 __attribute__((noinline)) static void tile_##rb##x##jb(              \
        const demix_cpu_operand *ops, int op_count, size_t r0, size_t j0,     \
        int prefetch, const float *bias, float *y, size_t y_stride)            \
    {                                                                          \
        tile(rb, jb, ops, op_count, r0, j0, prefetch, bias, y, y_stride);      \
    }
DEMIX_TILE(1, 8)
DEMIX_TILE(2, 6)
DEMIX_TILE(3, 4)
DEMIX_TILE(4, 3)
DEMIX_TILE(1, 3)
DEMIX_TILE(2, 3)
DEMIX_TILE(3, 3)
DEMIX_TILE(1, 1)
DEMIX_TILE(2, 1)
DEMIX_TILE(3, 1)
DEMIX_TILE(4, 1)
#undef DEMIX_TILE

/* Indexed by the rows of a block (1..4). */
static const tile_fn block_tile[TILE_MAX_ROWS + 1] = {0, tile_1x8, tile_2x6,
                                                      tile_3x4, tile_4x3};
static const int block_cols[TILE_MAX_ROWS + 1] = {0, 8, 6, 4, 3};
_Static_assert(DEMIX_CPU_MATMUL_COLUMN_ALIGN % 8 == 0 &&
                   DEMIX_CPU_MATMUL_COLUMN_ALIGN % 6 == 0 &&
                   DEMIX_CPU_MATMUL_COLUMN_ALIGN % 4 == 0 &&
                   DEMIX_CPU_MATMUL_COLUMN_ALIGN % 3 == 0,
               "column ranges must start on a block of every tile shape");
static const tile_fn leftover_rows_tile[TILE_MAX_ROWS] = {0, tile_1x3,
                                                          tile_2x3, tile_3x3};
static const tile_fn single_col_tile[TILE_MAX_ROWS + 1] = {
    0, tile_1x1, tile_2x1, tile_3x1, tile_4x1};

static void matmul_avx2(int rows, int n, const demix_cpu_operand *ops,
                        int op_count, const float *bias, float *y,
                        size_t y_stride)
{
    int rb = rows < TILE_MAX_ROWS ? rows : TILE_MAX_ROWS;
    int jb = block_cols[rb];
    int full_rows = rows - rows % rb;
    int j = 0;
    for (; j + jb <= n; j += jb) {
        int next_block = j + 2 * jb <= n; /* prefetch stays inside w */
        for (int r = 0; r < full_rows; r += rb)
            block_tile[rb](ops, op_count, (size_t)r, (size_t)j,
                           next_block && r == 0, bias, y, y_stride);
        if (full_rows < rows) /* only when rb == 4, so jb == 3 */
            leftover_rows_tile[rows - full_rows](ops, op_count,
                                                 (size_t)full_rows, (size_t)j,
                                                 0, bias, y, y_stride);
    }
    for (; j < n; j++) {
        int r = 0;
        for (; r + TILE_MAX_ROWS <= rows; r += TILE_MAX_ROWS)
            single_col_tile[TILE_MAX_ROWS](ops, op_count, (size_t)r,
                                           (size_t)j, 0, bias, y, y_stride);
        if (r < rows)
            single_col_tile[rows - r](ops, op_count, (size_t)r, (size_t)j, 0,
                                      bias, y, y_stride);
    }
}

static int have_avx2_fma(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#endif /* DEMIX_CPU_HAVE_AVX2 */

/* ------------------------------------------------------------ dispatch */

void demix__cpu_matmul(int rows, int n, const demix_cpu_operand *ops,
                       int op_count, const float *bias, float *y,
                       size_t y_stride)
{
    if (rows <= 0 || n <= 0)
        return;
#if DEMIX_CPU_HAVE_AVX2
    if (!force_portable && have_avx2_fma()) {
        matmul_avx2(rows, n, ops, op_count, bias, y, y_stride);
        return;
    }
#endif
    matmul_portable(rows, n, ops, op_count, bias, y, y_stride);
}

const char *demix__cpu_matmul_isa(void)
{
#if DEMIX_CPU_HAVE_AVX2
    if (!force_portable && have_avx2_fma())
        return "avx2+fma";
#endif
    return "portable";
}
