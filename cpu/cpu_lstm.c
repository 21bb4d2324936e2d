/*
 * cpu_lstm.c - LSTM layer step (cpu_lstm.h).
 *
 * Design. The four gate blocks of a row sit side by side in one [4*hid]
 * vector, so the product fills them in one call and the cell reads i, f, g
 * and o at offsets 0, hid, 2hid, 3hid. Activations are plain expf (tanh
 * from expf too):
 * per-element functions, so their result does not depend on the batch
 * either. With a thread pool the product is split by output columns and
 * the cell by hidden units (cpu_parallel.h): the same bits for any split.
 *
 * Thread context: reentrant; the tasks run on the pool's threads.
 */
#include "cpu_lstm.h"

#include <math.h>

#include "cpu_bf16.h"
#include "cpu_matmul.h"
#include "cpu_parallel.h"

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* tanh from one expf: glibc's tanhf goes through expm1f and took 16% of a
 * step of the shipped model (perf, 2026-12-02); this form is within
 * 9e-8 of tanh everywhere (glibc's: 1e-7), per element as before. */
static float tanh_by_exp(float x)
{
    float t = expf(-2.0f * fabsf(x));
    return copysignf((1.0f - t) / (1.0f + t), x);
}

void demix__cpu_lstm_cell_units(int rows, int hid, int u0, int u1,
                                const float *gates, float *h, float *c)
{
    for (size_t r = 0; r < (size_t)rows; r++) {
        const float *gi = gates + r * 4 * (size_t)hid;
        const float *gf = gi + hid, *gg = gi + 2 * hid, *go = gi + 3 * hid;
        float *hr = h + r * (size_t)hid, *cr = c + r * (size_t)hid;
        for (int u = u0; u < u1; u++) {
            float cn =
                sigmoid(gf[u]) * cr[u] + sigmoid(gi[u]) * tanh_by_exp(gg[u]);
            cr[u] = cn;
            hr[u] = sigmoid(go[u]) * tanh_by_exp(cn);
        }
    }
}

void demix__cpu_lstm_cell(int rows, int hid, const float *gates, float *h,
                          float *c)
{
    demix__cpu_lstm_cell_units(rows, hid, 0, hid, gates, h, c);
}

void demix__cpu_lstm_layer(demix_threadpool *pool, int rows, const float *x,
                           size_t x_stride, int input_size, float *h, float *c, int hid,
                           const float *w_ih, const float *w_hh,
                           const float *bias, float *gates)
{
    demix_cpu_operand ops[2] = {
        {x, x_stride, w_ih, (size_t)input_size, input_size},
        {h, (size_t)hid, w_hh, (size_t)hid, hid},
    };
    demix__cpu_matmul_pool(pool, rows, 4 * hid, ops, 2, bias, gates,
                           4 * (size_t)hid);
    demix__cpu_lstm_cell_pool(pool, rows, hid, gates, h, c);
}

void demix__cpu_lstm_layer_bf16(demix_threadpool *pool, int rows,
                                const float *x, size_t x_stride,
                                int input_size, float *h, float *c, int hid,
                                const uint16_t *w_packed, int k_pad,
                                const float *bias, float *gates,
                                uint16_t *act)
{
    demix__cpu_bf16_rows(rows, x, x_stride, input_size, h, (size_t)hid, hid,
                         act, k_pad);
    demix__cpu_matmul_bf16_pool(pool, rows, 4 * hid, k_pad, act, w_packed,
                                bias, gates, 4 * (size_t)hid);
    demix__cpu_lstm_cell_pool(pool, rows, hid, gates, h, c);
}
