/*
 * cuda_frame.cu - one frame of model-spec.md for the B rows of a batch
 * bucket, as a sequence of cuBLAS products, cuFFT transforms and the fused
 * kernels, recorded on two streams: captured once per bucket into a CUDA
 * graph at create time (or run directly when graphs are off).
 *
 * The order, with the side stream s1 taking the independent halves:
 *
 *   s0: gather --+--> enc GEMM, enc_post --+--> b2e GEMM, bias, pre_wave
 *   s1:          +--> rfft (X)             +--> pre_spec
 *   s0: fusion (joins s1) --+--> post_wave, RMSNorm, wave mask GEMM,
 *                           |    wave mask, decoder GEMM
 *   s1:                     +--> post_spec, RMSNorm, spec mask GEMM,
 *                                spec mask, irfft
 *   s0: overlap-add (joins s1)
 *
 * The small variant (u = s1 + w1 needs both pre-branches) runs on s0 alone.
 * Each LSTM layer is one product [x | h] @ [W_ih | W_hh]^T followed by the
 * cell kernel, which also routes the layer's result to its consumers; the
 * post branches' last cell also applies the RMSNorm (for D up to
 * DEMIX_CUDA_NORM_MAX_HID; beyond, a kernel of its own). Splitting each
 * product to run h W_hh^T off the critical path measured slower at small
 * batches (gpu/NOTES.md, round 2, item 10) and was dropped.
 *
 * Thread context: the engine's thread, at create time (capture) or in step
 * (graphs off).
 */
#include "cuda_internal.h"

#include <string.h>

static bool gemm(demix_cuda *g, cublasHandle_t h, int group, int M, int N,
                 int K, const dmat *A, const dmat *Wm, bool w_trans,
                 float *C, int ldc)
{
    return demix__gemm(g, h, group, M, N, K, A, Wm, w_trans, C, ldc);
}

/* Column `col` of a typed matrix's first row. */
static void *act_at(const dmat *m, int col)
{
    return m->bf16 ? (void *)((__nv_bfloat16 *)m->p + col)
                   : (void *)((float *)m->p + col);
}

static demix_cell_route route(int j0, int j1, const float *add, int ld_add,
                              float *f32, int ld_f32, const dmat *act,
                              int act_col)
{
    demix_cell_route r;
    r.j0 = j0;
    r.j1 = j1;
    r.add = add;
    r.ld_add = ld_add;
    r.f32 = f32;
    r.ld_f32 = ld_f32;
    r.act = act ? act_at(act, act_col) : NULL;
    r.ld_act = act ? act->ld : 0;
    r.act_bf16 = act ? act->bf16 : 0;
    return r;
}

/* Profiling: an event after the op just issued, with its name. */
static bool mark(demix_cuda *g, const char *label)
{
    if (!g->prof || g->prof_n >= DEMIX_CUDA_PROF_MARKS)
        return true;
    g->prof_label[g->prof_n] = label;
    return CK(&g->err, cudaEventRecord(g->prof_ev[g->prof_n++], g->stream));
}

/* Every layer of one branch: the product, then the cell. Layer k < L-1
 * feeds layer k+1's x; the last layer gets the residual, the stage buffer
 * and the routes of `last`, and with `norm` also the RMSNorm into the mask
 * product's input (one kernel; else the caller runs it). */
static bool run_lstm(demix_cuda *g, cudaStream_t s, cublasHandle_t h, int br,
                     int rows, const int *slots, const demix_cell_params *last,
                     const demix_norm_params *norm = NULL)
{
    for (int l = 0; l < g->L; l++) {
        demix_cuda_layer *ly = &g->layer[br][l];
        if (!gemm(g, h, DEMIX_CUDA_G_LSTM, rows, 4 * ly->hid,
                  ly->in + ly->hid, &ly->xh, &ly->w, true, ly->gates,
                  ly->ld_gates) ||
            !mark(g, "lstm gemm"))
            return false;
        demix_cell_params p;
        if (l == g->L - 1) {
            p = *last;
        } else {
            memset(&p, 0, sizeof p);
            p.nroutes = 1;
            p.route[0] = route(0, ly->hid, NULL, 0, NULL, 0,
                               &g->layer[br][l + 1].xh, 0);
        }
        p.gates = ly->gates;
        p.ld_gates = ly->ld_gates;
        p.hid = ly->hid;
        p.bias = ly->bias;
        p.state = g->state;
        p.slots = slots;
        p.P = g->P;
        p.off_h = ly->off_h;
        p.off_c = ly->off_c;
        if (g->small)
            p.res = NULL; /* no residual in the small variant */
        const bool with_norm = norm && l == g->L - 1;
        bool ok = with_norm ? demix__launch_cell_norm(&g->err, s, rows, &p, norm)
                            : demix__launch_cell(&g->err, s, rows, &p);
        if (!ok || !mark(g, with_norm ? "lstm cell+rmsnorm" : "lstm cell"))
            return false;
    }
    return true;
}

static bool fork(demix_cuda *g, cudaStream_t from, cudaStream_t to, int ev)
{
    if (from == to)
        return true;
    return CK(&g->err, cudaEventRecord(g->ev[ev], from)) &&
           CK(&g->err, cudaStreamWaitEvent(to, g->ev[ev], 0));
}

/* One frame's recording context: the bucket, its rows, the input and the
 * streams with their cuBLAS handles (s1 = s0 for the small variant and
 * while profiling). */
typedef struct frame_ctx {
    demix_cuda_bucket *bk;
    int B;
    const int *slots; /* [B] slot ids on the device */
    const float *in;  /* [B][C][H] */
    cudaStream_t s0, s1;
    cublasHandle_t h0, h1;
} frame_ctx;

/* 1. frames and the h half of every LSTM input (s0), then s1 joins */
static bool frame_gather(demix_cuda *g, const frame_ctx *f)
{
    demix_cuda_layer(*ly)[DEMIX_LSTM_MAX_LAYERS] = g->layer;
    demix_gather_params gp;
    memset(&gp, 0, sizeof gp);
    gp.slots = f->slots;
    gp.in = f->in;
    gp.state = g->state;
    gp.P = g->P;
    gp.off_past = g->off_past;
    gp.C = g->C;
    gp.W = g->W;
    gp.H = g->H;
    gp.window = g->window;
    gp.frame = g->frame.p;
    gp.ld_frame = g->frame.ld;
    gp.frame_bf16 = g->frame.bf16;
    gp.frame_win = g->frame_win;
    for (int br = 0; br < DEMIX_BRANCH_COUNT; br++) {
        for (int l = 0; l < g->L; l++) {
            int k = gp.nlayers++;
            gp.layer[k].off_h = ly[br][l].off_h;
            gp.layer[k].hid = ly[br][l].hid;
            gp.layer[k].xh = ly[br][l].xh.p;
            gp.layer[k].ld = ly[br][l].xh.ld;
            gp.layer[k].col = ly[br][l].in;
            gp.layer[k].bf16 = ly[br][l].xh.bf16;
        }
    }
    return demix__launch_gather(&g->err, f->s0, f->B, &gp) &&
           mark(g, "gather") && fork(g, f->s0, f->s1, 0);
}

/* 2. the spectrum, for the masks at the end (s1); 3. encoders: one
 * product for spec (folded DFT) and a | g, then their epilogue (s0) */
static bool frame_encode(demix_cuda *g, const frame_ctx *f)
{
    const int D = g->D, NB = g->NB;
    demix_cuda_layer(*ly)[DEMIX_LSTM_MAX_LAYERS] = g->layer;
    if (!CK(&g->err, cufftExecR2C(f->bk->r2c, g->frame_win,
                                  (cufftComplex *)g->X)) ||
        !mark(g, "rfft"))
        return false;
    if (!gemm(g, f->h0, DEMIX_CUDA_G_ENC, f->B, D + 2 * NB, g->CW, &g->frame,
              &g->w_enc, true, g->enc, g->ld_enc) ||
        !mark(g, "encoder gemm"))
        return false;
    demix_enc_post_params ep;
    ep.enc = g->enc;
    ep.ld_enc = g->ld_enc;
    ep.D = D;
    ep.NB = NB;
    ep.b_spec = g->b_spec;
    ep.b_conv = g->b_conv;
    ep.spec = g->spec;
    ep.ldD = g->ldD;
    ep.xh = ly[DEMIX_BRANCH_PRE_SPEC][0].xh.p;
    ep.ld_xh = ly[DEMIX_BRANCH_PRE_SPEC][0].xh.ld;
    ep.xh_bf16 = ly[DEMIX_BRANCH_PRE_SPEC][0].xh.bf16;
    ep.basis = g->basis;
    ep.basis_act = g->basis_act.p;
    ep.ldNB = g->ldNB;
    ep.act_bf16 = g->basis_act.bf16;
    return demix__launch_enc_post(&g->err, f->s0, f->B, &ep) &&
           mark(g, "encoder post") && fork(g, f->s0, f->s1, 1);
}

/* 4. pre_spec on s1: s1 = R(spec) -> u[:D]; 5. wave on s0, then
 * pre_wave: w1 = R(wave) -> u[D:] (small: u = s1 + w1); s0 joins s1 */
static bool frame_pre(demix_cuda *g, const frame_ctx *f)
{
    const int D = g->D, NB = g->NB;
    demix_cuda_layer(*ly)[DEMIX_LSTM_MAX_LAYERS] = g->layer;
    demix_cell_params cp;
    memset(&cp, 0, sizeof cp);
    cp.res = g->spec;
    cp.ld_res = g->ldD;
    cp.stage = g->s1;
    cp.ld_stage = g->ldD;
    if (!g->small) {
        cp.nroutes = 1;
        cp.route[0] = route(0, D, NULL, 0, g->u, g->ldDF,
                            &ly[DEMIX_BRANCH_FUSION][0].xh, 0);
    }
    if (!run_lstm(g, f->s1, f->h1, DEMIX_BRANCH_PRE_SPEC, f->B, f->slots, &cp))
        return false;

    if (!gemm(g, f->h0, DEMIX_CUDA_G_B2E, f->B, D, NB, &g->basis_act,
              &g->w_b2e, true, g->wave_raw, g->ldD) ||
        !mark(g, "b2e gemm"))
        return false;
    const dmat *pw0 = &ly[DEMIX_BRANCH_PRE_WAVE][0].xh;
    if (!demix__launch_bias_route(&g->err, f->s0, f->B, D, g->wave_raw,
                                  g->ldD, g->b_b2e, g->wave, g->ldD, pw0->p,
                                  pw0->ld, pw0->bf16) ||
        !mark(g, "wave bias"))
        return false;
    memset(&cp, 0, sizeof cp);
    cp.res = g->wave;
    cp.ld_res = g->ldD;
    cp.stage = g->w1;
    cp.ld_stage = g->ldD;
    cp.nroutes = 1;
    if (!g->small)
        cp.route[0] = route(0, D, NULL, 0, g->u + D, g->ldDF,
                            &ly[DEMIX_BRANCH_FUSION][0].xh, D);
    else
        cp.route[0] = route(0, D, g->s1, g->ldD, g->u, g->ldDF,
                            &ly[DEMIX_BRANCH_FUSION][0].xh, 0);
    return run_lstm(g, f->s0, f->h0, DEMIX_BRANCH_PRE_WAVE, f->B, f->slots,
                    &cp) &&
           fork(g, f->s1, f->s0, 2);
}

/* 6. fusion (s0): v = R(u); post inputs vs + spec, vw + wave; s1 joins */
static bool frame_fusion(demix_cuda *g, const frame_ctx *f)
{
    const int D = g->D;
    demix_cuda_layer(*ly)[DEMIX_LSTM_MAX_LAYERS] = g->layer;
    demix_cell_params cp;
    memset(&cp, 0, sizeof cp);
    cp.res = g->u;
    cp.ld_res = g->ldDF;
    cp.stage = g->fused;
    cp.ld_stage = g->ldDF;
    cp.nroutes = 2;
    const int split = g->small ? 0 : D;
    cp.route[0] = route(0, D, g->spec, g->ldD, g->ps_in, g->ldD,
                        &ly[DEMIX_BRANCH_POST_SPEC][0].xh, 0);
    cp.route[1] = route(split, split + D, g->wave, g->ldD, g->pw_in, g->ldD,
                        &ly[DEMIX_BRANCH_POST_WAVE][0].xh, 0);
    return run_lstm(g, f->s0, f->h0, DEMIX_BRANCH_FUSION, f->B, f->slots,
                    &cp) &&
           fork(g, f->s0, f->s1, 3);
}

/* 7. post_spec on s1, its RMSNorm, spectral masks, irfft */
static bool frame_post_spec(demix_cuda *g, const frame_ctx *f)
{
    const int D = g->D, T = g->T, S = g->S, B = f->B;
    const bool fuse_norm = D <= DEMIX_CUDA_NORM_MAX_HID;
    demix_norm_params nq = {g->gain_s, g->norm_s.p, g->norm_s.ld,
                            g->norm_s.bf16};
    demix_cell_params cp;
    memset(&cp, 0, sizeof cp);
    cp.res = g->ps_in;
    cp.ld_res = g->ldD;
    cp.stage = g->s2;
    cp.ld_stage = g->ldD;
    return run_lstm(g, f->s1, f->h1, DEMIX_BRANCH_POST_SPEC, B, f->slots,
                    &cp, fuse_norm ? &nq : NULL) &&
           (fuse_norm ||
            (demix__launch_rmsnorm(&g->err, f->s1, B, D, g->s2, g->ldD,
                                   g->gain_s, g->norm_s.p, g->norm_s.ld,
                                   g->norm_s.bf16) &&
             mark(g, "rmsnorm"))) &&
           gemm(g, f->h1, DEMIX_CUDA_G_MASK, B, T * S, D, &g->norm_s,
                &g->w_smask, true, g->ms, g->ld_ms) &&
           mark(g, "spec mask gemm") &&
           demix__launch_spec_mask(&g->err, f->s1, B, T, S, g->ms, g->ld_ms,
                                   g->b_smask, g->X, g->Y) &&
           mark(g, "spec mask apply") &&
           CK(&g->err, cufftExecC2R(f->bk->c2r, (cufftComplex *)g->Y,
                                    g->yraw)) &&
           mark(g, "irfft");
}

/* 8. post_wave on s0, its RMSNorm, waveform masks, decoder; s0 joins s1 */
static bool frame_post_wave(demix_cuda *g, const frame_ctx *f)
{
    const int D = g->D, T = g->T, NB = g->NB, B = f->B;
    const bool fuse_norm = D <= DEMIX_CUDA_NORM_MAX_HID;
    demix_norm_params nq = {g->gain_w, g->norm_w.p, g->norm_w.ld,
                            g->norm_w.bf16};
    demix_cell_params cp;
    memset(&cp, 0, sizeof cp);
    cp.res = g->pw_in;
    cp.ld_res = g->ldD;
    cp.stage = g->w2;
    cp.ld_stage = g->ldD;
    return run_lstm(g, f->s0, f->h0, DEMIX_BRANCH_POST_WAVE, B, f->slots,
                    &cp, fuse_norm ? &nq : NULL) &&
           (fuse_norm ||
            (demix__launch_rmsnorm(&g->err, f->s0, B, D, g->w2, g->ldD,
                                   g->gain_w, g->norm_w.p, g->norm_w.ld,
                                   g->norm_w.bf16) &&
             mark(g, "rmsnorm"))) &&
           gemm(g, f->h0, DEMIX_CUDA_G_MASK, B, T * NB, D, &g->norm_w,
                &g->w_wmask, true, g->mw, g->ld_mw) &&
           mark(g, "wave mask gemm") &&
           demix__launch_wave_mask(&g->err, f->s0, B, T, NB, g->mw, g->ld_mw,
                                   g->b_wmask, g->basis, g->ldNB, g->mb.p,
                                   g->mb.ld, g->mb.bf16) &&
           mark(g, "wave mask apply") &&
           gemm(g, f->h0, DEMIX_CUDA_G_DEC, B * T, g->CW, NB, &g->mb,
                &g->w_dec, false, g->z, g->ld_z) &&
           mark(g, "decoder gemm") && fork(g, f->s1, f->s0, 4);
}

/* 9. overlap-add of both paths with the slots' tails, the hop out (s0) */
static bool frame_emit(demix_cuda *g, const frame_ctx *f)
{
    demix_ola_params op;
    op.slots = f->slots;
    op.state = g->state;
    op.P = g->P;
    op.off_tail = g->off_tail;
    op.T = g->T;
    op.C = g->C;
    op.W = g->W;
    op.H = g->H;
    op.yraw = g->yraw;
    op.z = g->z;
    op.ld_z = g->ld_z;
    op.window = g->window;
    op.env = g->env;
    op.inv_w = 1.0f / (float)g->W;
    op.out = g->d_out;
    return demix__launch_overlap_add(&g->err, f->s0, f->B, &op) &&
           mark(g, "overlap-add");
}

bool demix__cuda_record_frame(demix_cuda *g, demix_cuda_bucket *bk)
{
    const bool par = !g->small && !g->prof;
    frame_ctx f;
    f.bk = bk;
    f.B = bk->rows;
    f.slots = (const int *)g->d_inbuf;
    f.in = (const float *)(g->d_inbuf + demix__slot_bytes(f.B));
    f.s0 = g->stream;
    f.s1 = par ? g->side : g->stream;
    f.h0 = g->h0;
    f.h1 = par ? g->h1 : g->h0;
    return frame_gather(g, &f) && frame_encode(g, &f) && frame_pre(g, &f) &&
           frame_fusion(g, &f) && frame_post_spec(g, &f) &&
           frame_post_wave(g, &f) && frame_emit(g, &f);
}
