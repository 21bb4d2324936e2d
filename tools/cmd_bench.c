/*
 * cmd_bench.c - `demix bench`: step time of an engine for several batch
 * sizes B (streams per step), and from it the real-time capacity.
 *
 * Method. For each B: open B fresh slots, run WARMUP_STEPS steps, then step
 * with random input (uniform in [-0.5, 0.5]) until --seconds have passed
 * and at least MIN_STEPS steps ran, timing each demix_engine_step() call
 * alone with clock_gettime(CLOCK_MONOTONIC). Reported per B: median and p99
 * step time, rtf = median step time / hop period (the fraction of one hop's
 * real time that a step of all B streams takes: <= 1 means all B keep up),
 * realtime_streams = B when rtf <= 1 else 0, and GFLOP/s = B * FLOP per
 * stream per hop / median step time.
 *
 * FLOP per stream per hop = 2 x the multiply-adds of the matrix products of
 * one frame (model-spec.md): spec_encode D*S, conv_encode 2NB*C*W,
 * basis_to_embed D*NB, each LSTM layer 4*hid*(in+hid) over the five
 * branches, the two mask heads T*S*D and T*NB*D, and the decoder
 * T*NB*C*W. FFTs and element-wise work (well under 1 %) are left out.
 *
 * Threads: --threads N makes a demix_threadpool of N threads (the main
 * thread and N - 1 workers; default one per online CPU) and hands it to the
 * engine; the table header and every JSON line say N and the precision.
 *
 * --pipelined: the same through demix_engine_submit()/collect() with up to
 * DEMIX_ENGINE_MAX_IN_FLIGHT steps in flight (on CUDA a step's copies then
 * overlap the neighbouring steps' compute). The random input is written
 * into each of the engine's input buffers once (the ring of
 * DEMIX_ENGINE_MAX_IN_FLIGHT + 1), outputs stay in the engine's buffer
 * (collect without a copy); a step's time is the interval between
 * consecutive collects in the steady pipeline.
 *
 * Capacity: the largest measured B whose median step fits in one hop
 * period, and an estimate between measured points by linear interpolation
 * of step time in B (extrapolated past the last point when all fit).
 *
 * Thread context: the main thread; the pool's workers only inside
 * demix_engine_step().
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "engine.h"

#define WARMUP_STEPS 3
#define MIN_STEPS 10
#define MAX_BATCHES 32
#define MAX_STREAMS 65536
#define BENCH_SEED 20240227u

typedef struct bench_options {
    demix_backend backend;
    const char *model_path;
    int dim, num_basis, small;
    int streams[MAX_BATCHES];
    int n_streams;
    double seconds;
    long threads;
    demix_precision precision;
    int json;
    int pipelined;
} bench_options;

typedef struct bench_result {
    int streams;
    int steps;
    double ms_median, ms_p99, rtf, gflops;
    int realtime_streams;
} bench_result;

void cmd_bench_usage(FILE *out)
{
    fprintf(out,
            "usage: demix bench [OPTIONS]\n"
            "\n"
            "Time batched engine steps for several stream counts B and report the\n"
            "real-time capacity: how many streams one engine keeps up with.\n"
            "\n"
            "options:\n"
            "  -b, --backend NAME   auto (default), cpu or cuda\n"
            "  -m, --model PATH     time this model's weights, or instead:\n"
            "      --size SIZE      random weights: full (D=500, NB=1500; default),\n"
            "                       small (D=500, NB=1500, one-layer LSTMs) or D,NB\n"
            "      --streams LIST   batch sizes B to measure (default: 1,8,32)\n"
            "      --seconds S      timed seconds per B (default: 3; >= %d steps)\n"
            "  -p, --precision P    fast (the default: bf16 products on CUDA and where the\n"
            "                       CPU has AVX512-BF16, else float32) or fp32 (the\n"
            "                       float32 reference)\n"
            "  -t, --threads N      threads for the CPU engine's math, this one included\n"
            "                       (default: one per online CPU, here %d)\n"
            "      --pipelined      steps through submit/collect, up to %d in flight\n"
            "                       (CUDA: copies overlap the neighbouring steps)\n"
            "      --json           one JSON object per line per B, then a summary line\n"
            "  -h, --help           this text\n"
            "\n"
            "columns: ms/step median and p99 of one step of B streams; rtf = median\n"
            "step / hop period (<= 1: all B streams run in real time); realtime =\n"
            "B when rtf <= 1, else 0; GFLOP/s of the matrix products.\n",
            MIN_STEPS, cli_default_threads(), DEMIX_ENGINE_MAX_IN_FLIGHT);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* "1,8,32" */
static int parse_streams(const char *text, bench_options *o)
{
    o->n_streams = 0;
    const char *p = text;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || v < 1 || v > MAX_STREAMS ||
            o->n_streams == MAX_BATCHES) {
            fprintf(stderr, "demix bench: --streams takes up to %d numbers from 1 "
                            "to %d separated by commas (got '%s')\n",
                    MAX_BATCHES, MAX_STREAMS, text);
            return -1;
        }
        o->streams[o->n_streams++] = (int)v;
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

static int parse_size(const char *text, bench_options *o)
{
    if (strcmp(text, "full") == 0) {
        o->dim = 500, o->num_basis = 1500, o->small = 0;
        return 0;
    }
    if (strcmp(text, "small") == 0) {
        o->dim = 500, o->num_basis = 1500, o->small = 1;
        return 0;
    }
    int d, nb;
    char tail;
    if (sscanf(text, "%d,%d%c", &d, &nb, &tail) == 2 && d >= 1 && d <= 8192 &&
        nb >= 1 && nb <= 16384) {
        o->dim = d, o->num_basis = nb, o->small = 0;
        return 0;
    }
    fprintf(stderr, "demix bench: --size must be full, small or D,NB with D in "
                    "1..8192 and NB in 1..16384 (got '%s')\n", text);
    return -1;
}

enum { OPT_JSON = 256, OPT_PIPELINED, OPT_SIZE, OPT_STREAMS, OPT_SECONDS };

static const struct option bench_longs[] = {
    {"help", no_argument, NULL, 'h'},
    {"json", no_argument, NULL, OPT_JSON},
    {"pipelined", no_argument, NULL, OPT_PIPELINED},
    {"backend", required_argument, NULL, 'b'},
    {"model", required_argument, NULL, 'm'},
    {"size", required_argument, NULL, OPT_SIZE},
    {"streams", required_argument, NULL, OPT_STREAMS},
    {"seconds", required_argument, NULL, OPT_SECONDS},
    {"threads", required_argument, NULL, 't'},
    {"precision", required_argument, NULL, 'p'},
    {NULL, 0, NULL, 0},
};

/* 0: parsed; -1: --help was printed (exit 0); else the exit status. */
static int parse_args(int argc, char **argv, bench_options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = DEMIX_BACKEND_AUTO;
    o->dim = 500, o->num_basis = 1500;
    o->streams[0] = 1, o->streams[1] = 8, o->streams[2] = 32;
    o->n_streams = 3;
    o->seconds = 3.0;
    o->threads = cli_default_threads();
    o->precision = DEMIX_PRECISION_DEFAULT;
    int have_size = 0, c;
    cli_args a;
    cli_args_init(&a);
    while ((c = cli_args_next(&a, argc, argv, "hb:m:t:p:", bench_longs)) !=
           -1) {
        const char *v = a.value;
        switch (c) {
        case 'h':
            cmd_bench_usage(stdout);
            return -1;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_PIPELINED:
            o->pipelined = 1;
            break;
        case 'b':
            if (demix_backend_parse(v, &o->backend)) {
                fprintf(stderr, "demix bench: --backend must be auto, cpu or "
                                "cuda (got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
            break;
        case 'm':
            o->model_path = v;
            break;
        case OPT_SIZE:
            if (parse_size(v, o))
                return DEMIX_EXIT_USAGE;
            have_size = 1;
            break;
        case OPT_STREAMS:
            if (parse_streams(v, o))
                return DEMIX_EXIT_USAGE;
            break;
        case OPT_SECONDS: {
            char *end;
            o->seconds = strtod(v, &end);
            if (end == v || *end || !(o->seconds >= 0.0 && o->seconds <= 3600.0)) {
                fprintf(stderr, "demix bench: --seconds must be from 0 to 3600 "
                                "(got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
            break;
        }
        case 't':
            if (cli_int("bench", "--threads", v, 0,
                        DEMIX_THREADPOOL_MAX_THREADS, &o->threads))
                return DEMIX_EXIT_USAGE;
            if (o->threads == 0)
                o->threads = cli_default_threads();
            break;
        case 'p':
            if (cli_precision("bench", v, &o->precision))
                return DEMIX_EXIT_USAGE;
            break;
        case CLI_MISSING:
            return DEMIX_EXIT_USAGE;
        default: /* CLI_UNKNOWN, or an operand: bench takes none */
            fprintf(stderr, "demix bench: unknown argument '%s' (see demix "
                            "help bench)\n", v);
            return DEMIX_EXIT_USAGE;
        }
    }
    if (have_size && o->model_path) {
        fprintf(stderr, "demix bench: give --model or --size, not both\n");
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

/* 2 x multiply-adds of one frame's matrix products (see the file header). */
static double flops_per_hop(const demix_model_config *c)
{
    double D = c->dim, NB = c->num_basis, S = c->spec_features;
    double CW = (double)c->channels * c->window_samples, T = c->num_sources;
    double DF = c->fusion_dim, L = c->lstm_layers;
    double macs = D * S + 2 * NB * CW + D * NB;
    macs += 4 * L * (4 * D * (D + D));   /* pre/post spec and waveform */
    macs += L * (4 * DF * (DF + DF));    /* fusion */
    macs += T * S * D + T * NB * D;      /* mask heads */
    macs += T * NB * CW;                 /* decoder */
    return 2.0 * macs;
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void summarise(double *times, size_t n, int B, double flops,
                      double hop_ms, bench_result *res)
{
    qsort(times, n, sizeof *times, cmp_double);
    res->streams = B;
    res->steps = (int)n;
    res->ms_median = n % 2 ? times[n / 2]
                           : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    size_t k99 = (size_t)ceil(0.99 * (double)n);
    res->ms_p99 = times[k99 ? k99 - 1 : 0];
    res->rtf = res->ms_median / hop_ms;
    res->realtime_streams = res->ms_median <= hop_ms ? B : 0;
    res->gflops = B * flops / (res->ms_median * 1e-3) / 1e9;
}

/* --pipelined: the slots are open; times are the intervals between
 * consecutive collects once WARMUP_STEPS steps have been collected. */
static int bench_one_pipelined(demix_engine *eng, int B, double seconds,
                               const float *in, int *slots, double **times,
                               size_t *cap, bench_result *res, double flops,
                               double hop_ms, size_t in_hop)
{
    int rc = 0, oom = 0, filled = 0;
    long submitted = 0, collected = 0;
    size_t n = 0;
    double last = 0, start = 0;
    while (!rc) {
        if (collected >= WARMUP_STEPS + MIN_STEPS &&
            now_s() - start >= seconds)
            break;
        float *buf = demix_engine_input_buffer(eng, B);
        if (!buf) {
            rc = DEMIX_ENOMEM;
            break;
        }
        if (filled < DEMIX_ENGINE_MAX_IN_FLIGHT + 1) /* each ring entry once */
            memcpy(buf, in + (size_t)(filled++ & 1) * in_hop,
                   in_hop * sizeof *buf);
        rc = demix_engine_submit(eng, B, slots, buf);
        if (rc)
            break;
        submitted++;
        if (demix_engine_in_flight(eng) < DEMIX_ENGINE_MAX_IN_FLIGHT)
            continue;
        rc = demix_engine_collect(eng, NULL);
        double t = now_s();
        if (rc)
            break;
        if (++collected == WARMUP_STEPS)
            start = t;
        if (collected > WARMUP_STEPS) {
            if (n == *cap) {
                double *nt = realloc(*times, 2 * *cap * sizeof *nt);
                if (!nt) {
                    cli_error("out of memory");
                    oom = 1;
                    break;
                }
                *times = nt;
                *cap *= 2;
            }
            (*times)[n++] = (t - last) * 1e3;
        }
        last = t;
    }
    if (rc)
        cli_error("pipelined step of %d streams failed: %s", B,
                  demix_engine_last_error(eng));
    while (demix_engine_in_flight(eng) > 0)
        if (demix_engine_collect(eng, NULL) && !rc)
            rc = -1;
    for (int i = 0; i < B; i++)
        (void)demix_engine_close_slot(eng, slots[i]);
    if (rc || oom || n == 0)
        return -1;
    summarise(*times, n, B, flops, hop_ms, res);
    return 0;
}

/* Time one batch size. times holds room for *cap doubles (may grow). */
static int bench_one(demix_engine *eng, int B, double seconds, const float *in,
                     float *out, int *slots, double **times, size_t *cap,
                     bench_result *res, const demix_model_config *cfg,
                     double flops, double hop_ms, int pipelined)
{
    for (int i = 0; i < B; i++)
        if (demix_engine_open_slot(eng, &slots[i])) {
            cli_error("cannot open slot %d of %d: %s", i + 1, B,
                      demix_engine_last_error(eng));
            for (int j = 0; j < i; j++)
                (void)demix_engine_close_slot(eng, slots[j]);
            return -1;
        }
    size_t in_hop = (size_t)B * (size_t)cfg->channels * (size_t)cfg->hop_samples;
    int rc = 0;
    if (pipelined)
        return bench_one_pipelined(eng, B, seconds, in, slots, times, cap, res,
                                   flops, hop_ms, in_hop);
    for (int w = 0; w < WARMUP_STEPS && !rc; w++)
        rc = demix_engine_step(eng, B, slots, in + (size_t)(w & 1) * in_hop, out);
    size_t n = 0;
    int oom = 0;
    double start = now_s();
    while (!rc && (n < MIN_STEPS || now_s() - start < seconds)) {
        if (n == *cap) {
            double *t = realloc(*times, 2 * *cap * sizeof *t);
            if (!t) {
                cli_error("out of memory");
                oom = 1;
                break;
            }
            *times = t;
            *cap *= 2;
        }
        double t0 = now_s();
        rc = demix_engine_step(eng, B, slots, in + (n & 1) * in_hop, out);
        double t1 = now_s();
        (*times)[n++] = (t1 - t0) * 1e3;
    }
    if (rc)
        cli_error("step of %d streams failed: %s", B, demix_engine_last_error(eng));
    for (int i = 0; i < B; i++)
        (void)demix_engine_close_slot(eng, slots[i]);
    if (rc || oom)
        return -1;
    summarise(*times, n, B, flops, hop_ms, res);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    bench_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    char err[1024];
    demix_model *model = NULL;
    if (o.model_path) {
        if (demix_model_load(o.model_path, &model, err, sizeof err)) {
            if (strstr(err, o.model_path))
                cli_error("cannot load model: %s", err);
            else
                cli_error("cannot load model %s: %s", o.model_path, err);
            return 1;
        }
    } else if (demix_model_create_random(o.dim, o.num_basis, o.small, 44100,
                                         BENCH_SEED, &model)) {
        cli_error("cannot make a random model D=%d NB=%d (out of memory?)",
                  o.dim, o.num_basis);
        return 1;
    }
    const demix_model_config *cfg = demix_model_get_config(model);
    int max_b = 0;
    for (int i = 0; i < o.n_streams; i++)
        if (o.streams[i] > max_b)
            max_b = o.streams[i];

    demix_threadpool *pool = NULL;
    if (cli_threadpool((int)o.threads, &pool)) {
        demix_model_destroy(model);
        return 1;
    }
    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = o.backend;
    eo.precision = o.precision;
    eo.max_slots = max_b;
    eo.threads = (int)o.threads;
    eo.pool = pool;
    demix_engine *eng = NULL;
    err[0] = '\0';
    if (demix_engine_create(model, &eo, &eng, err, sizeof err)) {
        cli_error("cannot create the engine with %d slots: %s", max_b, err);
        demix_threadpool_destroy(pool);
        demix_model_destroy(model);
        return 1;
    }
    const char *describe = demix_engine_describe(eng);
    const char *backend = demix_engine_backend_name(eng);
    if (err[0])
        fprintf(stderr, "demix: %s\n", err);

    double hop_ms = 1e3 * cfg->hop_samples / cfg->sample_rate_hz;
    double flops = flops_per_hop(cfg);
    size_t in_floats = 2 * (size_t)max_b * (size_t)cfg->channels * (size_t)cfg->hop_samples;
    size_t out_floats = (size_t)max_b * (size_t)cfg->num_sources *
                        (size_t)cfg->channels * (size_t)cfg->hop_samples;
    float *in = malloc(in_floats * sizeof *in);
    float *out = malloc(out_floats * sizeof *out);
    int *slots = malloc((size_t)max_b * sizeof *slots);
    size_t cap = 1024;
    double *times = malloc(cap * sizeof *times);
    if (!in || !out || !slots || !times) {
        cli_error("out of memory for %d streams", max_b);
        rc = 1;
        goto done;
    }
    uint64_t state = BENCH_SEED;
    for (size_t i = 0; i < in_floats; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (float)((double)(state >> 40) / (double)(1ull << 24) - 0.5);
    }

    const char *variant = cfg->small ? "small" : "full";
    if (!o.json) {
        printf("model:   %s (D=%d, NB=%d, %s), %.1f M parameters, %.1f MFLOP "
               "per stream per hop\n",
               cfg->name[0] ? cfg->name : (o.model_path ? o.model_path : "?"),
               cfg->dim, cfg->num_basis, variant,
               (double)cfg->parameter_count / 1e6, flops / 1e6);
        printf("backend: %s\n", describe);
        printf("hop:     %d samples at %d Hz = %.2f ms; %g s per batch size\n",
               cfg->hop_samples, cfg->sample_rate_hz, hop_ms, o.seconds);
        printf("threads: %ld; precision: %s%s\n\n", o.threads,
               cli_precision_name(o.precision),
               o.pipelined ? "; pipelined (submit/collect)" : "");
        printf("%7s  %10s  %10s  %7s  %8s  %8s  %6s\n", "streams", "ms median",
               "ms p99", "rtf", "realtime", "GFLOP/s", "steps");
        fflush(stdout);
    }

    bench_result res[MAX_BATCHES];
    int n_res = 0;
    for (int i = 0; i < o.n_streams; i++) {
        bench_result *r = &res[n_res];
        if (bench_one(eng, o.streams[i], o.seconds, in, out, slots, &times, &cap,
                      r, cfg, flops, hop_ms, o.pipelined)) {
            rc = 1;
            goto done;
        }
        n_res++;
        if (o.json) {
            printf("{\"backend\":");
            json_string(stdout, backend);
            printf(",\"streams\":%d,\"ms_median\":%.4f,\"ms_p99\":%.4f,"
                   "\"hop_ms\":%.4f,\"rtf\":%.4f,\"realtime_streams\":%d,"
                   "\"gflops\":%.2f,\"steps\":%d,\"mflop_per_stream_hop\":%.3f,"
                   "\"model_dim\":%d,\"model_num_basis\":%d,\"model_small\":%d,"
                   "\"parameters\":%lld,\"threads\":%ld,\"precision\":\"%s\","
                   "\"pipelined\":%d,\"describe\":",
                   r->streams, r->ms_median, r->ms_p99, hop_ms, r->rtf,
                   r->realtime_streams, r->gflops, r->steps, flops / 1e6,
                   cfg->dim, cfg->num_basis, cfg->small,
                   (long long)cfg->parameter_count, o.threads,
                   cli_precision_name(o.precision), o.pipelined);
            json_string(stdout, describe);
            printf("}\n");
        } else {
            printf("%7d  %10.3f  %10.3f  %7.3f  %8d  %8.1f  %6d\n", r->streams,
                   r->ms_median, r->ms_p99, r->rtf, r->realtime_streams,
                   r->gflops, r->steps);
        }
        fflush(stdout);
    }

    /* Capacity over the measured points, in increasing B. */
    int order[MAX_BATCHES];
    int sorted_b[MAX_BATCHES];
    for (int i = 0; i < n_res; i++)
        sorted_b[i] = res[i].streams;
    qsort(sorted_b, (size_t)n_res, sizeof *sorted_b, cmp_int);
    for (int i = 0; i < n_res; i++)
        for (int j = 0; j < n_res; j++)
            if (res[j].streams == sorted_b[i])
                order[i] = j;
    int capacity = 0;
    for (int i = 0; i < n_res; i++)
        if (res[i].realtime_streams > capacity)
            capacity = res[i].realtime_streams;
    double estimate = 0.0;
    const char *how = "";
    int lo_b = 0, hi_b = 0;
    const bench_result *first = &res[order[0]];
    const bench_result *last = &res[order[n_res - 1]];
    if (first->ms_median > hop_ms) {
        /* Not even the smallest batch keeps up: scale down proportionally. */
        estimate = first->streams * hop_ms / first->ms_median;
        how = "scaled down from";
        lo_b = hi_b = first->streams;
    } else if (last->ms_median <= hop_ms) {
        if (n_res >= 2) {
            const bench_result *prev = &res[order[n_res - 2]];
            double slope = (last->ms_median - prev->ms_median) /
                           (last->streams - prev->streams);
            estimate = slope > 0
                           ? last->streams + (hop_ms - last->ms_median) / slope
                           : last->streams;
            lo_b = prev->streams, hi_b = last->streams;
        } else {
            estimate = last->streams * hop_ms / last->ms_median;
            lo_b = hi_b = last->streams;
        }
        how = "extrapolated from";
    } else {
        for (int i = 1; i < n_res; i++) {
            const bench_result *a = &res[order[i - 1]], *b = &res[order[i]];
            if (a->ms_median <= hop_ms && b->ms_median > hop_ms) {
                estimate = a->streams + (hop_ms - a->ms_median) *
                                            (b->streams - a->streams) /
                                            (b->ms_median - a->ms_median);
                lo_b = a->streams, hi_b = b->streams;
                how = "interpolated between";
                break;
            }
        }
    }
    if (o.json) {
        printf("{\"summary\":true,\"backend\":");
        json_string(stdout, backend);
        printf(",\"hop_ms\":%.4f,\"realtime_capacity\":%d,"
               "\"capacity_estimate\":%.1f,\"estimate_method\":\"%s\"}\n",
               hop_ms, capacity, estimate,
               how[0] == 'i' ? "interpolated" : how[0] == 'e' ? "extrapolated"
                                                              : "scaled");
    } else {
        printf("\nrtf = median step time / hop period (%.2f ms); a step of B "
               "streams keeps all B real-time when rtf <= 1.\n", hop_ms);
        printf("real-time capacity: %d streams (largest measured B with "
               "median step <= %.2f ms)\n", capacity, hop_ms);
        if (lo_b == hi_b)
            printf("estimate:           %.1f streams (%s B=%d, assuming step "
                   "time proportional to B)\n", estimate, how, lo_b);
        else
            printf("estimate:           %.1f streams (step time linear in B, "
                   "%s B=%d and B=%d)\n", estimate, how, lo_b, hi_b);
    }

done:
    free(in);
    free(out);
    free(slots);
    free(times);
    demix_engine_destroy(eng);
    demix_threadpool_destroy(pool);
    demix_model_destroy(model);
    return rc;
}
