/*
 * cpu_lstm.h - one LSTM layer over a batch of independent streams, the
 * recurrent core of HS-TasNet's five branches (model-spec.md step 5).
 *
 * PyTorch's cell, gate order i, f, g, o:
 *   gates = x W_ih^T + h W_hh^T + (b_ih + b_hh)        [rows][4*hid]
 *   c' = sigmoid(f) c + sigmoid(i) tanh(g),   h' = sigmoid(o) tanh(c')
 * The gate product is one demix__cpu_matmul() with the operands [x | h]
 * against [W_ih | W_hh], so each row's result is independent of the batch.
 *
 * Thread context: reentrant; the caller owns every buffer; with a pool the
 * work runs on its threads (cpu_parallel.h).
 */
#ifndef DEMIX_CPU_LSTM_H
#define DEMIX_CPU_LSTM_H

#include <stddef.h>
#include <stdint.h>

#include "threadpool.h"

/* One layer step for `rows` streams. x: [rows][x_stride] (input_size used);
 * h, c: [rows][hid], read as the previous state and overwritten with the
 * new one; w_ih [4*hid][input_size], w_hh [4*hid][hid]; bias [4*hid] is
 * b_ih + b_hh; gates: scratch [rows][4*hid]. x must not alias h. The
 * product and the cell run on pool (NULL: on the calling thread). */
void demix__cpu_lstm_layer(demix_threadpool *pool, int rows, const float *x,
                           size_t x_stride, int input_size, float *h, float *c, int hid,
                           const float *w_ih, const float *w_hh,
                           const float *bias, float *gates);

/* The same in the fast mode (cpu_bf16.h): the rows [x | h] are rounded to
 * bf16 into act [rows][k_pad] and multiplied with w_packed [4*hid][k_pad],
 * bf16 [W_ih | W_hh] packed by demix__cpu_bf16_rows(). */
void demix__cpu_lstm_layer_bf16(demix_threadpool *pool, int rows,
                                const float *x, size_t x_stride,
                                int input_size, float *h, float *c, int hid,
                                const uint16_t *w_packed, int k_pad,
                                const float *bias, float *gates,
                                uint16_t *act);

/* The elementwise half alone: new h, c from gates [rows][4*hid]. */
void demix__cpu_lstm_cell(int rows, int hid, const float *gates, float *h,
                          float *c);

/* The same for hidden units u0..u1-1 only (every row). */
void demix__cpu_lstm_cell_units(int rows, int hid, int u0, int u1,
                                const float *gates, float *h, float *c);

#endif /* DEMIX_CPU_LSTM_H */
