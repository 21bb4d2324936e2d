/*
 * cpu_bf16.h - the CPU backend's fast mode (DEMIX_PRECISION_FAST): weights
 * and activations rounded to bfloat16, products accumulated in float32 with
 * AVX512-BF16 dot products (vdpbf16ps), state and everything between the
 * products kept in float32. Half the weight bytes to stream and twice the
 * multiply-adds per instruction of the float32 path.
 *
 * Row stability, as in cpu_matmul.h: each output element is sixteen float
 * lanes accumulated with vdpbf16ps over k in steps of 32 (rows are
 * zero-padded to a multiple of 32, so there is no tail), then one fixed
 * horizontal sum, then + bias, whatever the batch around it.
 *
 * Accuracy: on the default-size random model (D 500, NB 1500), 30 s of
 * music-like input, 48.7 to 50.7 dB SDR per source against the float32 path (test_cpu_engine.c checks >= 40
 * dB on a smaller model, per model-spec's reduced-precision bar).
 *
 * Only where the CPU has AVX512F and AVX512-BF16 (Zen 4, Cooper Lake,
 * Sapphire Rapids and later); elsewhere the engine runs float32 and says so.
 *
 * Thread context: reentrant; the caller owns every buffer.
 */
#ifndef DEMIX_CPU_BF16_H
#define DEMIX_CPU_BF16_H

#include <stddef.h>
#include <stdint.h>

/* Row lengths are padded to this many bfloat16 values. */
#define DEMIX_CPU_BF16_PAD 32

/* Output columns come in blocks of 8, 8, 6 or 4 (cpu_bf16.c): a column
 * range starting at a multiple of this tiles as in the call over all
 * columns (see DEMIX_CPU_MATMUL_COLUMN_ALIGN). */
#define DEMIX_CPU_BF16_COLUMN_ALIGN 24

/* 1 when this CPU runs the bf16 kernels. */
int demix__cpu_bf16_available(void);

/* k rounded up to a multiple of DEMIX_CPU_BF16_PAD. */
int demix__cpu_bf16_padded(int k);

/* float -> bfloat16, round to nearest even (NaN stays NaN). */
uint16_t demix__cpu_bf16_from_float(float f);
float demix__cpu_bf16_to_float(uint16_t b);

/* dst[r] = bf16([a[r][0..ka) | b[r][0..kb)]), then zeros up to k_pad, for
 * `rows` rows (row strides a_stride, b_stride; b may be NULL with kb 0).
 * Packs weights at create ([W_ih | W_hh] for an LSTM layer) and converts
 * activations at each product. */
void demix__cpu_bf16_rows(int rows, const float *a, size_t a_stride, int ka,
                          const float *b, size_t b_stride, int kb,
                          uint16_t *dst, int k_pad);

/* y[r][j] = bias[j] + sum_k x[r][k] w[j][k] for r < rows, j < n, with x
 * [rows][k_pad] and w [n][k_pad] packed by demix__cpu_bf16_rows(); bias may
 * be NULL. Only when demix__cpu_bf16_available(). */
void demix__cpu_matmul_bf16(int rows, int n, int k_pad, const uint16_t *x,
                            const uint16_t *w, const float *bias, float *y,
                            size_t y_stride);

#endif /* DEMIX_CPU_BF16_H */
