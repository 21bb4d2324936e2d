/*
 * gpu_bench.c - the CUDA engine's sweep, for bench/gpu_check.sh: ms per
 * step (median, p99) over batch sizes, each step including the host <->
 * device copies of all B hops and its synchronisation, the streams it
 * serves at real time, device memory, and the device-only time of the
 * captured graph; plus the two ceilings of the machine (device copy
 * bandwidth, tensor-core rate through cuBLAS) and the host <-> device copy
 * rates, from which each figure's floor is computed.
 *
 * Output: one machine-readable line per figure, "RESULT key=value ...",
 * "CEILING name=value", "FLOOR ...". The full-size random model (D=500,
 * NB=1500) unless --dim/--basis say otherwise.
 *
 * Usage: demix_gpu_bench [--sizes 1,16,64,256,1024,4096] [--largest]
 *        [--precision fast|fp32] [--ceilings] [--iters N] [--pageable]
 *        [--profile] (per-op device times, one stream, no graph)
 *        [--pipelined] (each B also through submit/collect, 2 steps in
 *        flight: "host=pipelined", the interval between collects)
 *        [--gemm-shapes] (the frame's products alone at 1024 rows, as run
 *        and with N, K rounded up to 64 and 128: "GEMM ..." lines)
 *        [--shape-reps N] (timed runs per shape, default 20; 1: no warm-up,
 *        for ncu)
 *
 * Thread context: a single-threaded program.
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda_backend.h"
#include "engine.h"
#include "engine_impl.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define CUDA_OR_DIE(call)                                                      \
    do {                                                                       \
        cudaError_t rc_ = (call);                                              \
        if (rc_ != cudaSuccess) {                                              \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,      \
                    cudaGetErrorString(rc_));                                  \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define CUBLAS_OR_DIE(call)                                                    \
    do {                                                                       \
        cublasStatus_t rc_ = (call);                                           \
        if (rc_ != CUBLAS_STATUS_SUCCESS) {                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,      \
                    cublasGetStatusString(rc_));                               \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------ ceilings */

static double time_events(cudaEvent_t a, cudaEvent_t b)
{
    float ms = 0;
    CUDA_OR_DIE(cudaEventSynchronize(b));
    CUDA_OR_DIE(cudaEventElapsedTime(&ms, a, b));
    return ms;
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void fill_random_bytes(void *dev, size_t bytes, int as_bf16)
{
    size_t n = bytes / 4;
    uint32_t *h = malloc(n * 4);
    if (!h) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    uint64_t s = 0x1234567;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float f = (float)((int64_t)(s >> 33) % 2001 - 1000) / 1000.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        if (as_bf16) { /* two bf16 values in one word */
            float f2 = -f * 0.5f;
            uint32_t u2;
            memcpy(&u2, &f2, 4);
            u = (u >> 16) | (u2 & 0xffff0000u);
        }
        h[i] = u;
    }
    CUDA_OR_DIE(cudaMemcpy(dev, h, n * 4, cudaMemcpyHostToDevice));
    free(h);
}

static void ceilings(void)
{
    cudaEvent_t a, b;
    CUDA_OR_DIE(cudaEventCreate(&a));
    CUDA_OR_DIE(cudaEventCreate(&b));
    double t[10];

    /* device copy: 1 GiB device to device, bytes read + written */
    size_t bytes = (size_t)1 << 30;
    void *d1, *d2;
    CUDA_OR_DIE(cudaMalloc(&d1, bytes));
    CUDA_OR_DIE(cudaMalloc(&d2, bytes));
    fill_random_bytes(d1, bytes, 0);
    for (int i = 0; i < 12; i++) {
        CUDA_OR_DIE(cudaEventRecord(a, 0));
        CUDA_OR_DIE(cudaMemcpyAsync(d2, d1, bytes, cudaMemcpyDeviceToDevice, 0));
        CUDA_OR_DIE(cudaEventRecord(b, 0));
        double ms = time_events(a, b);
        if (i >= 2)
            t[i - 2] = ms;
    }
    printf("CEILING d2d_copy_GBps=%.0f (1 GiB device-to-device, read+write)\n",
           2.0 * bytes / (median_of(t, 10) * 1e6));

    /* host <-> device, pinned, 256 MiB */
    size_t hb = (size_t)256 << 20;
    void *h;
    CUDA_OR_DIE(cudaMallocHost(&h, hb));
    memset(h, 1, hb);
    for (int dir = 0; dir < 2; dir++) {
        for (int i = 0; i < 12; i++) {
            CUDA_OR_DIE(cudaEventRecord(a, 0));
            if (dir == 0)
                CUDA_OR_DIE(cudaMemcpyAsync(d1, h, hb, cudaMemcpyHostToDevice, 0));
            else
                CUDA_OR_DIE(cudaMemcpyAsync(h, d1, hb, cudaMemcpyDeviceToHost, 0));
            CUDA_OR_DIE(cudaEventRecord(b, 0));
            double ms = time_events(a, b);
            if (i >= 2)
                t[i - 2] = ms;
        }
        printf("CEILING %s_GBps=%.1f (256 MiB pinned)\n", dir ? "d2h" : "h2d",
               hb / (median_of(t, 10) * 1e6));
    }
    /* small transfers: the latency of one step's copies */
    for (int i = 0; i < 12; i++) {
        CUDA_OR_DIE(cudaEventRecord(a, 0));
        for (int k = 0; k < 100; k++)
            CUDA_OR_DIE(cudaMemcpyAsync(d1, h, 4096, cudaMemcpyHostToDevice, 0));
        CUDA_OR_DIE(cudaEventRecord(b, 0));
        double ms = time_events(a, b);
        if (i >= 2)
            t[i - 2] = ms / 100;
    }
    printf("CEILING h2d_4KiB_us=%.2f (one small pinned copy, back to back)\n",
           median_of(t, 10) * 1e3);
    CUDA_OR_DIE(cudaFreeHost(h));
    CUDA_OR_DIE(cudaFree(d1));
    CUDA_OR_DIE(cudaFree(d2));

    /* tensor-core rate: 8192^3 products through cuBLAS, random data */
    const int n = 8192;
    cublasHandle_t hd;
    CUBLAS_OR_DIE(cublasCreate(&hd));
    void *A, *B, *C;
    CUDA_OR_DIE(cudaMalloc(&A, (size_t)n * n * 4));
    CUDA_OR_DIE(cudaMalloc(&B, (size_t)n * n * 4));
    CUDA_OR_DIE(cudaMalloc(&C, (size_t)n * n * 4));
    const float one = 1, zero = 0;
    struct {
        const char *name;
        cudaDataType ab, c;
        cublasComputeType_t ct;
    } kinds[] = {
        {"bf16", CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F},
        {"tf32", CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32},
        {"fp32", CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC},
    };
    for (int k = 0; k < 3; k++) {
        int bf = kinds[k].ab == CUDA_R_16BF;
        fill_random_bytes(A, (size_t)n * n * (bf ? 2 : 4), bf);
        fill_random_bytes(B, (size_t)n * n * (bf ? 2 : 4), bf);
        int reps = k == 2 ? 4 : 10;
        for (int i = 0; i < reps + 2; i++) {
            CUDA_OR_DIE(cudaEventRecord(a, 0));
            CUBLAS_OR_DIE(cublasGemmEx(hd, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n,
                                       &one, A, kinds[k].ab, n, B, kinds[k].ab,
                                       n, &zero, C, kinds[k].c, n, kinds[k].ct,
                                       CUBLAS_GEMM_DEFAULT));
            CUDA_OR_DIE(cudaEventRecord(b, 0));
            double ms = time_events(a, b);
            if (i >= 2)
                t[i - 2] = ms;
        }
        printf("CEILING %s_TFLOPs=%.0f (cuBLAS %d^3, random data)\n",
               kinds[k].name, 2.0 * n * n * (double)n / (median_of(t, reps) * 1e9),
               n);
    }
    cublasDestroy(hd);
    CUDA_OR_DIE(cudaFree(A));
    CUDA_OR_DIE(cudaFree(B));
    CUDA_OR_DIE(cudaFree(C));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    fflush(stdout);
}

/* The frame's products alone, B = 1024 rows (the decoder B*T), each
 * timed (median of 20 after 3 warm-ups, random data) in the layouts and
 * output types cuBLAS offers: "TN" = Y = A W^T with W stored [N][K] (what
 * the engine runs), "NN" = Y = A W with W stored [K][N]; output float32
 * (the engine) or bf16. Row-major Y[M][N] is column-major Y^T = W A^T. */
static int shape_reps = 20;

static void gemm_shapes(int rows)
{
    struct {
        const char *name;
        int M, N, K;
    } base[] = {
        {"encoder", rows, 3500, 2048}, {"b2e", rows, 500, 1500},
        {"lstm", rows, 2000, 1000},    {"fusion lstm", rows, 4000, 2000},
        {"spec mask", rows, 8208, 500}, {"wave mask", rows, 6000, 500},
        {"decoder", 4 * rows, 2048, 1500},
    };
    /* each as the engine runs it (ld a multiple of 16), then with N and K
     * rounded up to 64 and to 128 (gemm_pad) */
    enum { NB = sizeof base / sizeof base[0] };
    struct {
        const char *name;
        int M, N, K, pad;
    } sh[3 * NB];
    for (int i = 0; i < NB; i++)
        for (int v = 0; v < 3; v++) {
            int q = v == 0 ? 1 : v == 1 ? 64 : 128;
            sh[3 * i + v].name = base[i].name;
            sh[3 * i + v].M = base[i].M;
            sh[3 * i + v].N = (base[i].N + q - 1) / q * q;
            sh[3 * i + v].K = (base[i].K + q - 1) / q * q;
            sh[3 * i + v].pad = v == 0 ? 0 : q;
        }
    size_t maxA = 0, maxW = 0, maxC = 0;
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        size_t a = (size_t)sh[i].M * (sh[i].K + 16),
               w = (size_t)sh[i].N * (sh[i].K + 16),
               c = (size_t)sh[i].M * (sh[i].N + 16);
        maxA = a > maxA ? a : maxA;
        maxW = w > maxW ? w : maxW;
        maxC = c > maxC ? c : maxC;
    }
    void *A, *Wt, *C;
    CUDA_OR_DIE(cudaMalloc(&A, maxA * 2));
    CUDA_OR_DIE(cudaMalloc(&Wt, maxW * 2));
    CUDA_OR_DIE(cudaMalloc(&C, maxC * 4));
    fill_random_bytes(A, maxA * 2, 1);
    fill_random_bytes(Wt, maxW * 2, 1);
    cublasHandle_t hd;
    CUBLAS_OR_DIE(cublasCreate(&hd));
    void *ws;
    CUDA_OR_DIE(cudaMalloc(&ws, (size_t)32 << 20));
    CUBLAS_OR_DIE(cublasSetWorkspace(hd, ws, (size_t)32 << 20));
    cudaEvent_t a, b;
    CUDA_OR_DIE(cudaEventCreate(&a));
    CUDA_OR_DIE(cudaEventCreate(&b));
    const float one = 1, zero = 0;
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        const int M = sh[i].M, N = sh[i].N, K = sh[i].K;
        const int ldk = (K + 15) / 16 * 16, ldn = (N + 15) / 16 * 16;
        /* TN with float32 output only: round 2 measured NN and bf16
         * output within 10% of it for every shape */
        for (int lay = 0; lay < 1; lay++)
            for (int ob = 0; ob < 1; ob++) {
                double t[64];
                const int reps = shape_reps, warm = reps > 1 ? 3 : 0;
                cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
                for (int r = 0; r < reps + warm && st == CUBLAS_STATUS_SUCCESS;
                     r++) {
                    CUDA_OR_DIE(cudaEventRecord(a, 0));
                    st = cublasGemmEx(hd, lay ? CUBLAS_OP_N : CUBLAS_OP_T,
                                      CUBLAS_OP_N, N, M, K, &one, Wt,
                                      CUDA_R_16BF, lay ? ldn : ldk, A,
                                      CUDA_R_16BF, ldk, &zero, C,
                                      ob ? CUDA_R_16BF : CUDA_R_32F, ldn,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                    CUDA_OR_DIE(cudaEventRecord(b, 0));
                    double ms = time_events(a, b);
                    if (r >= warm)
                        t[r - warm] = ms;
                }
                if (st != CUBLAS_STATUS_SUCCESS) {
                    printf("GEMM shape=%s pad=%d M=%d N=%d K=%d layout=%s out=%s "
                           "failed=%s\n", sh[i].name, sh[i].pad, M, N, K,
                           lay ? "NN" : "TN", ob ? "bf16" : "f32",
                           cublasGetStatusString(st));
                    continue;
                }
                double ms = median_of(t, reps);
                printf("GEMM shape=%s pad=%d M=%d N=%d K=%d layout=%s out=%s "
                       "us=%.1f TFLOPs=%.0f\n", sh[i].name, sh[i].pad, M, N, K,
                       lay ? "NN" : "TN", ob ? "bf16" : "f32", ms * 1e3,
                       2.0 * M * N * (double)K / (ms * 1e9));
            }
    }
    fflush(stdout);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cublasDestroy(hd);
    cudaFree(ws);
    cudaFree(A);
    cudaFree(Wt);
    cudaFree(C);
}

/* ----------------------------------------------------------- the sweep */

static double model_flops_per_row(const demix_model_config *c)
{
    double D = c->dim, NB = c->num_basis, CW = c->channels * c->window_samples;
    double S = c->spec_features, T = c->num_sources, DF = c->fusion_dim;
    double f = (D + 2 * NB) * CW + D * NB + T * S * D + T * NB * D +
               T * NB * CW;
    for (int br = 0; br < 5; br++) {
        double hid = br == 2 ? DF : D;
        f += c->lstm_layers * 4 * hid * 2 * hid;
    }
    return 2 * f;
}

static int profile_flag, pipelined_flag;

/* Steady pipeline of `iters` steps after `warm`: intervals between
 * consecutive collects; each ring input buffer written once. */
static int run_pipelined(demix_engine *e, int B, const int *slots,
                         const float *in, size_t in_n, int warm, int iters,
                         double *t)
{
    int filled = 0, collected = 0;
    double last = 0;
    while (collected < warm + iters) {
        float *buf = demix_engine_input_buffer(e, B);
        if (!buf)
            return -1;
        if (filled < DEMIX_ENGINE_MAX_IN_FLIGHT + 1) {
            memcpy(buf, in, in_n * sizeof *buf);
            filled++;
        }
        if (demix_engine_submit(e, B, slots, buf))
            return -1;
        if (demix_engine_in_flight(e) < DEMIX_ENGINE_MAX_IN_FLIGHT)
            continue;
        if (demix_engine_collect(e, NULL))
            return -1;
        double now = now_ms();
        if (collected >= warm)
            t[collected - warm] = now - last;
        last = now;
        collected++;
    }
    while (demix_engine_in_flight(e) > 0)
        if (demix_engine_collect(e, NULL))
            return -1;
    return 0;
}

static int run_size(const demix_model *m, demix_precision prec, int B,
                    int iters, int pageable, int try_largest)
{
    const demix_model_config *cfg = demix_model_get_config(m);
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.backend = DEMIX_BACKEND_CUDA;
    o.precision = prec;
    o.max_slots = B;
    /* pageable buffers: the staging copies run on a pool of every core */
    static demix_threadpool *pool;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (pageable && !pool &&
        demix_threadpool_create(cpus > 0 ? (int)(cpus > 64 ? 64 : cpus) : 1,
                                &pool) != DEMIX_OK)
        pool = NULL;
    o.pool = pageable ? pool : NULL;
    char err[512] = "";
    demix_engine *e = NULL;
    size_t free0 = 0, total = 0;
    CUDA_OR_DIE(cudaMemGetInfo(&free0, &total));
    double t0 = now_ms();
    int rc = demix_engine_create(m, &o, &e, err, sizeof err);
    if (rc && try_largest && rc == DEMIX_ENOMEM) {
        const char *at = strstr(err, "at most ");
        long fit = at ? strtol(at + 8, NULL, 10) : 0;
        printf("# %d slots: %s\n", B, err);
        if (fit < 1)
            return -1;
        B = (int)fit;
        o.max_slots = B;
        rc = demix_engine_create(m, &o, &e, err, sizeof err);
        while (rc == DEMIX_ENOMEM && B > 1) {
            B = (int)(B * 0.95);
            o.max_slots = B;
            rc = demix_engine_create(m, &o, &e, err, sizeof err);
        }
    }
    if (rc) {
        printf("# B=%d: create failed: %s: %s\n", B, demix_errname(rc), err);
        return -1;
    }
    double create_ms = now_ms() - t0;
    size_t free1 = 0;
    CUDA_OR_DIE(cudaMemGetInfo(&free1, &total));
    void *ctx = demix__engine_backend_context(e);
    printf("# %s (created in %.0f ms)\n", demix_engine_describe(e), create_ms);

    int *slots = malloc((size_t)B * sizeof *slots);
    for (int i = 0; i < B; i++)
        if (demix_engine_open_slot(e, &slots[i])) {
            printf("# open failed: %s\n", demix_engine_last_error(e));
            return -1;
        }
    const size_t in_n = (size_t)B * cfg->channels * cfg->hop_samples;
    const size_t out_n = in_n * cfg->num_sources;
    float *in = NULL, *out = NULL;
    if (pageable) {
        in = malloc(in_n * sizeof *in);
        out = malloc(out_n * sizeof *out);
    } else {
        CUDA_OR_DIE(cudaMallocHost((void **)&in, in_n * sizeof *in));
        CUDA_OR_DIE(cudaMallocHost((void **)&out, out_n * sizeof *out));
    }
    if (!slots || !in || !out) {
        printf("# out of host memory for B=%d\n", B);
        return -1;
    }
    for (size_t i = 0; i < in_n; i++)
        in[i] = 0.3f * sinf(0.01f * (float)(i % 100003)) +
                0.05f * (float)((i * 2654435761u) % 1000) / 1000.0f;

    int warm = iters / 10 < 3 ? 3 : iters / 10;
    double *t = malloc((size_t)iters * sizeof *t);
    for (int i = 0; i < warm + iters; i++) {
        double a = now_ms();
        rc = demix_engine_step(e, B, slots, in, out);
        double b = now_ms();
        if (rc) {
            printf("# step failed: %s\n", demix_engine_last_error(e));
            return -1;
        }
        if (i >= warm)
            t[i - warm] = b - a;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    double med = t[iters / 2];
    double p99 = t[(int)(0.99 * (iters - 1))];
    double hop_ms = 1e3 * cfg->hop_samples / cfg->sample_rate_hz;
    double graph_ms = -1;
    if (B <= 4096 &&
        demix__cuda_time_graph(ctx, B, iters < 50 ? iters : 50, &graph_ms))
        graph_ms = -1;
    printf("RESULT engine=cuda precision=%s host=%s B=%d median_ms=%.4f "
           "p99_ms=%.4f streams_rt=%.0f graph_ms=%.4f bucket=%d "
           "device_GiB=%.2f engine_GiB=%.2f\n",
           prec == DEMIX_PRECISION_FP32 ? "fp32" : "fast",
           pageable ? "pageable" : "pinned", B, med, p99, B * hop_ms / med,
           graph_ms, B <= 4096 ? demix__cuda_bucket_rows(ctx, B) : 4096,
           (double)(free0 - free1) / 1073741824.0,
           demix__cuda_device_bytes(ctx) / 1073741824.0);
    if (pipelined_flag && !try_largest && !pageable) {
        if (run_pipelined(e, B, slots, in, in_n, warm, iters, t)) {
            printf("# pipelined B=%d failed: %s\n", B,
                   demix_engine_last_error(e));
        } else {
            qsort(t, (size_t)iters, sizeof *t, cmp_double);
            double pm = t[iters / 2], pp = t[(int)(0.99 * (iters - 1))];
            printf("RESULT engine=cuda precision=%s host=pipelined B=%d "
                   "median_ms=%.4f p99_ms=%.4f streams_rt=%.0f graph_ms=%.4f "
                   "bucket=%d device_GiB=%.2f engine_GiB=%.2f\n",
                   prec == DEMIX_PRECISION_FP32 ? "fp32" : "fast", B, pm, pp, B * hop_ms / pm, graph_ms,
                   B <= 4096 ? demix__cuda_bucket_rows(ctx, B) : 4096,
                   (double)(free0 - free1) / 1073741824.0,
                   demix__cuda_device_bytes(ctx) / 1073741824.0);
        }
    }
    if (profile_flag && B <= 4096) {
        char text[4096];
        if (demix__cuda_profile(ctx, B, 20, text, sizeof text) == DEMIX_OK)
            printf("PROFILE B=%d us: %s\n", B, text);
    }
    fflush(stdout);
    free(t);
    if (pageable) {
        free(in);
        free(out);
    } else {
        cudaFreeHost(in);
        cudaFreeHost(out);
    }
    free(slots);
    demix_engine_destroy(e);
    return B;
}

int main(int argc, char **argv)
{
    const char *sizes = "1,16,64,256,1024,4096";
    int largest = 0, do_ceilings = 0, iters = 0, pageable = 0, shapes_flag = 0;
    int dim = 500, basis = 1500;
    demix_precision prec = DEMIX_PRECISION_DEFAULT;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            sizes = argv[++i];
        else if (!strcmp(argv[i], "--largest"))
            largest = 1;
        else if (!strcmp(argv[i], "--ceilings"))
            do_ceilings = 1;
        else if (!strcmp(argv[i], "--pageable"))
            pageable = 1;
        else if (!strcmp(argv[i], "--profile"))
            profile_flag = 1;
        else if (!strcmp(argv[i], "--pipelined"))
            pipelined_flag = 1;
        else if (!strcmp(argv[i], "--gemm-shapes"))
            shapes_flag = 1;
        else if (!strcmp(argv[i], "--shape-reps") && i + 1 < argc) {
            shape_reps = atoi(argv[++i]);
            shape_reps = shape_reps < 1 ? 1 : shape_reps > 64 ? 64 : shape_reps;
        }
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
            dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--basis") && i + 1 < argc)
            basis = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            i++;
            prec = !strcmp(argv[i], "fp32") ? DEMIX_PRECISION_FP32
                                            : DEMIX_PRECISION_FAST;
        } else {
            fprintf(stderr,
                    "usage: %s [--sizes 1,16,...] [--largest] [--ceilings] "
                    "[--pageable] [--iters N] [--precision fast|fp32] "
                    "[--profile] [--pipelined] [--gemm-shapes] "
                    "[--shape-reps N] [--dim D --basis NB]\n",
                    argv[0]);
            return 2;
        }
    }
    if (demix__cuda_device_count() < 1) {
        printf("# no CUDA device\n");
        return 1;
    }
    struct cudaDeviceProp prop;
    int drv = 0, rt = 0;
    CUDA_OR_DIE(cudaGetDeviceProperties(&prop, 0));
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    printf("# device: %s, %d SMs, %.1f GiB, L2 %d MiB; CUDA driver %d, "
           "runtime %d\n",
           prop.name, prop.multiProcessorCount,
           prop.totalGlobalMem / 1073741824.0, prop.l2CacheSize >> 20, drv, rt);
    if (do_ceilings)
        ceilings();
    if (shapes_flag)
        gemm_shapes(1024);

    demix_model *m = NULL;
    if (demix_model_create_random(dim, basis, 0, 44100, 7, &m)) {
        printf("# model create failed\n");
        return 1;
    }
    const demix_model_config *cfg = demix_model_get_config(m);
    printf("FLOOR flops_per_row=%.4g params=%lld weight_MB_bf16=%.1f "
           "weight_MB_f32=%.1f io_bytes_per_row=%d\n",
           model_flops_per_row(cfg), (long long)cfg->parameter_count,
           cfg->parameter_count * 2 / 1e6, cfg->parameter_count * 4 / 1e6,
           (int)(4 * cfg->channels * cfg->hop_samples * (1 + cfg->num_sources)));
    fflush(stdout);

    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int B = atoi(tok);
        if (B < 1)
            continue;
        int it = iters ? iters : B <= 256 ? 400 : B <= 1024 ? 200 : 100;
        if (run_size(m, prec, B, it, pageable, 0) < 0)
            printf("# B=%d failed\n", B);
    }
    free(list);
    if (largest) {
        if (run_size(m, prec, 1 << 20, iters ? iters : 8, pageable, 1) < 0)
            printf("# largest failed\n");
    }
    demix_model_destroy(m);
    return 0;
}
