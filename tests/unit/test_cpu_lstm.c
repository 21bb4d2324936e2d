/*
 * test_cpu_lstm.c - the CPU backend's LSTM layer (cpu/cpu_lstm.h) against
 * PyTorch's cell written out in double precision: two stacked layers over
 * three time steps for a batch of two streams, the second layer fed by the
 * first one's h. Also: a stream's result does not depend on the stream
 * beside it (bit for bit), and the cell alone on hand-picked gates.
 */
#include <math.h>
#include <string.h>

#include "cpu_lstm.h"
#include "testutil.h"

#define IN 5
#define HID 3
#define ROWS 2
#define STEPS 3
#define LAYERS 2

typedef struct layer_weights {
    float w_ih[4 * HID][IN]; /* layer 1 uses the first HID columns */
    float w_hh[4 * HID][HID];
    float b_ih[4 * HID], b_hh[4 * HID], bias[4 * HID];
    int in;
} layer_weights;

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* PyTorch's LSTM cell in double: gate order i, f, g, o. */
static void ref_cell(const layer_weights *lw, const double *x, double *h,
                     double *c)
{
    double g[4 * HID];
    for (int j = 0; j < 4 * HID; j++) {
        double s = (double)lw->b_ih[j] + (double)lw->b_hh[j];
        for (int k = 0; k < lw->in; k++)
            s += (double)lw->w_ih[j][k] * x[k];
        for (int k = 0; k < HID; k++)
            s += (double)lw->w_hh[j][k] * h[k];
        g[j] = s;
    }
    for (int u = 0; u < HID; u++) {
        double i = sigm(g[u]), f = sigm(g[HID + u]), gg = tanh(g[2 * HID + u]);
        double o = sigm(g[3 * HID + u]);
        c[u] = f * c[u] + i * gg;
        h[u] = o * tanh(c[u]);
    }
}

static void make_weights(layer_weights *lw, int in, uint64_t *rng)
{
    memset(lw, 0, sizeof *lw);
    lw->in = in;
    for (int j = 0; j < 4 * HID; j++) {
        for (int k = 0; k < in; k++)
            lw->w_ih[j][k] = 0.8f * demix_test_uniform(rng);
        for (int k = 0; k < HID; k++)
            lw->w_hh[j][k] = 0.8f * demix_test_uniform(rng);
        lw->b_ih[j] = 0.5f * demix_test_uniform(rng);
        lw->b_hh[j] = 0.5f * demix_test_uniform(rng);
        lw->bias[j] = lw->b_ih[j] + lw->b_hh[j];
    }
}

/* Layer 1's w_ih is [4*HID][HID]: repack the first HID columns densely. */
static void dense_w_ih(const layer_weights *lw, float *out)
{
    for (int j = 0; j < 4 * HID; j++)
        for (int k = 0; k < lw->in; k++)
            out[j * lw->in + k] = lw->w_ih[j][k];
}

static void test_two_layers_three_steps(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0x157;
    layer_weights lw[LAYERS];
    make_weights(&lw[0], IN, &rng);
    make_weights(&lw[1], HID, &rng);
    float w_ih[LAYERS][4 * HID * IN];
    dense_w_ih(&lw[0], w_ih[0]);
    dense_w_ih(&lw[1], w_ih[1]);

    float x[STEPS][ROWS][IN];
    demix_test_fill_uniform(&x[0][0][0], sizeof x / sizeof(float), 1.5f, &rng);

    float h[LAYERS][ROWS][HID], c[LAYERS][ROWS][HID], gates[ROWS][4 * HID];
    double rh[LAYERS][ROWS][HID], rc[LAYERS][ROWS][HID];
    memset(h, 0, sizeof h);
    memset(c, 0, sizeof c);
    memset(rh, 0, sizeof rh);
    memset(rc, 0, sizeof rc);

    for (int t = 0; t < STEPS; t++) {
        demix__cpu_lstm_layer(NULL, ROWS, &x[t][0][0], IN, IN,
                              &h[0][0][0], &c[0][0][0], HID, w_ih[0],
                              &lw[0].w_hh[0][0], lw[0].bias, &gates[0][0]);
        demix__cpu_lstm_layer(NULL, ROWS, &h[0][0][0], HID, HID,
                              &h[1][0][0], &c[1][0][0], HID, w_ih[1],
                              &lw[1].w_hh[0][0], lw[1].bias, &gates[0][0]);
        for (int r = 0; r < ROWS; r++) {
            double xin[IN];
            for (int k = 0; k < IN; k++)
                xin[k] = x[t][r][k];
            ref_cell(&lw[0], xin, rh[0][r], rc[0][r]);
            ref_cell(&lw[1], rh[0][r], rh[1][r], rc[1][r]);
        }
        for (int l = 0; l < LAYERS; l++)
            for (int r = 0; r < ROWS; r++)
                for (int u = 0; u < HID; u++) {
                    assert_true(fabs(h[l][r][u] - rh[l][r][u]) < 1e-6);
                    assert_true(fabs(c[l][r][u] - rc[l][r][u]) < 1e-6);
                }
    }
    /* The state moved away from zero: the test exercised the recurrence. */
    assert_true(fabs(rh[1][0][0]) > 1e-3 || fabs(rh[1][0][1]) > 1e-3);
}

/* Row 1 alone gives bit for bit what it gave next to row 0. */
static void test_rows_independent(void **state)
{
    (void)state;
    uint64_t rng = demix_test_seed() ^ 0x2157;
    layer_weights lw;
    make_weights(&lw, IN, &rng);
    float w_ih[4 * HID * IN];
    dense_w_ih(&lw, w_ih);
    float x[ROWS][IN], h[ROWS][HID], c[ROWS][HID], gates[ROWS][4 * HID];
    demix_test_fill_uniform(&x[0][0], ROWS * IN, 1.0f, &rng);
    demix_test_fill_uniform(&h[0][0], ROWS * HID, 0.5f, &rng);
    demix_test_fill_uniform(&c[0][0], ROWS * HID, 0.5f, &rng);
    float h1[HID], c1[HID], g1[4 * HID];
    memcpy(h1, h[1], sizeof h1);
    memcpy(c1, c[1], sizeof c1);
    demix__cpu_lstm_layer(NULL, ROWS, &x[0][0], IN, IN, &h[0][0], &c[0][0],
                          HID, w_ih, &lw.w_hh[0][0], lw.bias, &gates[0][0]);
    demix__cpu_lstm_layer(NULL, 1, x[1], IN, IN, h1, c1, HID, w_ih,
                          &lw.w_hh[0][0], lw.bias, g1);
    assert_memory_equal(h1, h[1], sizeof h1);
    assert_memory_equal(c1, c[1], sizeof c1);
}

/* The cell on gates chosen by hand: i = f = o = sigmoid(0) = 0.5,
 * g = tanh(0) = 0, so c' = 0.5 c and h' = 0.5 tanh(c'). */
static void test_cell_by_hand(void **state)
{
    (void)state;
    float gates[4] = {0, 0, 0, 0}, h = 7.0f, c = 2.0f;
    demix__cpu_lstm_cell(1, 1, gates, &h, &c);
    assert_true(fabs(c - 1.0) < 1e-7);
    assert_true(fabs(h - 0.5 * tanh(1.0)) < 1e-7);
    /* Saturated gates: i = o = 1, f = 0, g = tanh(big) = 1 -> c = 1. */
    float sat[4] = {100.0f, -100.0f, 100.0f, 100.0f};
    h = 0.0f, c = 5.0f;
    demix__cpu_lstm_cell(1, 1, sat, &h, &c);
    assert_true(fabs(c - 1.0) < 1e-6);
    assert_true(fabs(h - tanh(1.0)) < 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_layers_three_steps),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_cell_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
