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

#include <cjson/cJSON.h>

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
    const char *output; /* --output: f32 (NULL), s16, mix16 */
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
            "      --output SHAPE   with --pipelined, what each stream gets back:\n"
            "                       f32 (every source, float32; default), s16\n"
            "                       (every source, 16-bit) or mix16 (one 16-bit\n"
            "                       mix): fewer bytes copied back\n"
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

enum {
    OPT_JSON = 256,
    OPT_PIPELINED,
    OPT_SIZE,
    OPT_STREAMS,
    OPT_SECONDS,
    OPT_OUTPUT
};

static const struct option bench_longs[] = {
    {"help", no_argument, NULL, 'h'},
    {"json", no_argument, NULL, OPT_JSON},
    {"pipelined", no_argument, NULL, OPT_PIPELINED},
    {"output", required_argument, NULL, OPT_OUTPUT},
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
        case OPT_OUTPUT:
            if (strcmp(v, "f32") && strcmp(v, "s16") && strcmp(v, "mix16")) {
                fprintf(stderr, "demix bench: --output must be f32, s16 or "
                                "mix16 (got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
            o->output = strcmp(v, "f32") ? v : NULL;
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
    if (o->output && !o->pipelined) {
        fprintf(stderr, "demix bench: --output %s needs --pipelined (output "
                        "shapes apply to submit/collect)\n", o->output);
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

/* s as a JSON string (cJSON escapes it); -1 after printing why. */
static int json_string(FILE *out, const char *s)
{
    cJSON *node = cJSON_CreateString(s);
    char *text = node ? cJSON_PrintUnformatted(node) : NULL;
    cJSON_Delete(node);
    if (!text) {
        cli_error("out of memory");
        return -1;
    }
    fputs(text, out);
    cJSON_free(text);
    return 0;
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
                               double hop_ms, size_t in_hop, const char *output)
{
    int rc = 0, oom = 0, filled = 0;
    if (output) { /* --output: every slot in that shape */
        demix_output_shape sh;
        demix_output_shape_init(&sh, demix_engine_config(eng));
        sh.format = DEMIX_SAMPLE_S16;
        sh.mix = !strcmp(output, "mix16");
        for (int i = 0; i < B && !rc; i++)
            rc = demix_engine_set_output(eng, slots[i], &sh);
    }
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
                     double flops, double hop_ms, int pipelined,
                     const char *output)
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
                                   flops, hop_ms, in_hop, output);
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

/* ------------------------------------------------------------ the run */

/* Everything one run holds; bench_teardown() frees it all, whatever
 * bench_setup() got to. */
typedef struct bench_run {
    demix_model *model;
    const demix_model_config *cfg;
    demix_threadpool *pool;
    demix_engine *eng;
    const char *describe, *backend;
    int max_b;            /* the largest B: the engine's slots */
    double hop_ms, flops; /* hop period; FLOP per stream per hop */
    float *in, *out;      /* two input hops of max_b streams; one output */
    int *slots;           /* max_b */
    double *times;        /* step times, ms; room for cap (grows) */
    size_t cap;
} bench_run;

static void bench_teardown(bench_run *r)
{
    free(r->in);
    free(r->out);
    free(r->slots);
    free(r->times);
    demix_engine_destroy(r->eng);
    demix_threadpool_destroy(r->pool);
    demix_model_destroy(r->model);
}

static int load_model(const bench_options *o, demix_model **model)
{
    char err[1024];
    if (o->model_path) {
        if (demix_model_load(o->model_path, model, err, sizeof err)) {
            if (strstr(err, o->model_path))
                cli_error("cannot load model: %s", err);
            else
                cli_error("cannot load model %s: %s", o->model_path, err);
            return -1;
        }
    } else if (demix_model_create_random(o->dim, o->num_basis, o->small, 44100,
                                         BENCH_SEED, model)) {
        cli_error("cannot make a random model D=%d NB=%d (out of memory?)",
                  o->dim, o->num_basis);
        return -1;
    }
    return 0;
}

/* The model, the pool, the engine and the buffers, the input filled with
 * seeded uniform noise. 0, or -1 after printing why (then tear down). */
static int bench_setup(bench_run *r, const bench_options *o)
{
    memset(r, 0, sizeof *r);
    if (load_model(o, &r->model))
        return -1;
    const demix_model_config *cfg = demix_model_get_config(r->model);
    r->cfg = cfg;
    for (int i = 0; i < o->n_streams; i++)
        if (o->streams[i] > r->max_b)
            r->max_b = o->streams[i];
    if (cli_threadpool((int)o->threads, &r->pool))
        return -1;

    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = o->backend;
    eo.precision = o->precision;
    eo.max_slots = r->max_b;
    eo.pool = r->pool;
    char err[1024] = "";
    if (demix_engine_create(r->model, &eo, &r->eng, err, sizeof err)) {
        cli_error("cannot create the engine with %d slots: %s", r->max_b, err);
        return -1;
    }
    r->describe = demix_engine_describe(r->eng);
    r->backend = demix_engine_backend_name(r->eng);
    if (err[0])
        fprintf(stderr, "demix: %s\n", err);

    r->hop_ms = 1e3 * cfg->hop_samples / cfg->sample_rate_hz;
    r->flops = flops_per_hop(cfg);
    size_t in_floats =
        2 * (size_t)r->max_b * (size_t)cfg->channels * (size_t)cfg->hop_samples;
    size_t out_floats = (size_t)r->max_b * (size_t)cfg->num_sources *
                        (size_t)cfg->channels * (size_t)cfg->hop_samples;
    r->in = malloc(in_floats * sizeof *r->in);
    r->out = malloc(out_floats * sizeof *r->out);
    r->slots = malloc((size_t)r->max_b * sizeof *r->slots);
    r->cap = 1024;
    r->times = malloc(r->cap * sizeof *r->times);
    if (!r->in || !r->out || !r->slots || !r->times) {
        cli_error("out of memory for %d streams", r->max_b);
        return -1;
    }
    uint64_t state = BENCH_SEED;
    for (size_t i = 0; i < in_floats; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        r->in[i] = (float)((double)(state >> 40) / (double)(1ull << 24) - 0.5);
    }
    return 0;
}

/* The table's header (not with --json). */
static void print_header(const bench_run *r, const bench_options *o)
{
    const demix_model_config *cfg = r->cfg;
    printf("model:   %s (D=%d, NB=%d, %s), %.1f M parameters, %.1f MFLOP "
           "per stream per hop\n",
           cfg->name[0] ? cfg->name : (o->model_path ? o->model_path : "?"),
           cfg->dim, cfg->num_basis, cfg->small ? "small" : "full",
           (double)cfg->parameter_count / 1e6, r->flops / 1e6);
    printf("backend: %s\n", r->describe);
    printf("hop:     %d samples at %d Hz = %.2f ms; %g s per batch size\n",
           cfg->hop_samples, cfg->sample_rate_hz, r->hop_ms, o->seconds);
    printf("threads: %ld; precision: %s%s%s%s\n\n", o->threads,
           cli_precision_name(o->precision),
           o->pipelined ? "; pipelined (submit/collect)" : "",
           o->output ? "; output " : "", o->output ? o->output : "");
    printf("%7s  %10s  %10s  %7s  %8s  %8s  %6s\n", "streams", "ms median",
           "ms p99", "rtf", "realtime", "GFLOP/s", "steps");
    fflush(stdout);
}

/* One B's figures: a table row, or with --json one object on a line. */
static int print_result(const bench_run *r, const bench_options *o,
                        const bench_result *res)
{
    const demix_model_config *cfg = r->cfg;
    if (!o->json) {
        printf("%7d  %10.3f  %10.3f  %7.3f  %8d  %8.1f  %6d\n", res->streams,
               res->ms_median, res->ms_p99, res->rtf, res->realtime_streams,
               res->gflops, res->steps);
        fflush(stdout);
        return 0;
    }
    printf("{\"backend\":");
    if (json_string(stdout, r->backend))
        return -1;
    printf(",\"streams\":%d,\"ms_median\":%.4f,\"ms_p99\":%.4f,"
           "\"hop_ms\":%.4f,\"rtf\":%.4f,\"realtime_streams\":%d,"
           "\"gflops\":%.2f,\"steps\":%d,\"mflop_per_stream_hop\":%.3f,"
           "\"model_dim\":%d,\"model_num_basis\":%d,\"model_small\":%d,"
           "\"parameters\":%lld,\"threads\":%ld,\"precision\":\"%s\","
           "\"pipelined\":%d,\"output\":\"%s\",\"describe\":",
           res->streams, res->ms_median, res->ms_p99, r->hop_ms, res->rtf,
           res->realtime_streams, res->gflops, res->steps, r->flops / 1e6,
           cfg->dim, cfg->num_basis, cfg->small,
           (long long)cfg->parameter_count, o->threads,
           cli_precision_name(o->precision), o->pipelined,
           o->output ? o->output : "f32");
    if (json_string(stdout, r->describe))
        return -1;
    printf("}\n");
    fflush(stdout);
    return 0;
}

/* Real-time capacity over the measured points (see the file header). */
typedef struct bench_capacity {
    int measured;    /* largest measured B with median step <= hop */
    double estimate; /* streams, between or beyond the measured points */
    const char *how; /* "interpolated between", "extrapolated from", ... */
    int lo_b, hi_b;  /* the points the estimate comes from */
} bench_capacity;

static void estimate_capacity(const bench_result *res, int n_res, double hop_ms,
                              bench_capacity *cap)
{
    int order[MAX_BATCHES];
    int sorted_b[MAX_BATCHES];
    for (int i = 0; i < n_res; i++)
        sorted_b[i] = res[i].streams;
    qsort(sorted_b, (size_t)n_res, sizeof *sorted_b, cmp_int);
    for (int i = 0; i < n_res; i++)
        for (int j = 0; j < n_res; j++)
            if (res[j].streams == sorted_b[i])
                order[i] = j;
    memset(cap, 0, sizeof *cap);
    cap->how = "";
    for (int i = 0; i < n_res; i++)
        if (res[i].realtime_streams > cap->measured)
            cap->measured = res[i].realtime_streams;
    const bench_result *first = &res[order[0]];
    const bench_result *last = &res[order[n_res - 1]];
    if (first->ms_median > hop_ms) {
        /* Not even the smallest batch keeps up: scale down proportionally. */
        cap->estimate = first->streams * hop_ms / first->ms_median;
        cap->how = "scaled down from";
        cap->lo_b = cap->hi_b = first->streams;
    } else if (last->ms_median <= hop_ms) {
        if (n_res >= 2) {
            const bench_result *prev = &res[order[n_res - 2]];
            double slope = (last->ms_median - prev->ms_median) /
                           (last->streams - prev->streams);
            cap->estimate =
                slope > 0 ? last->streams + (hop_ms - last->ms_median) / slope
                          : last->streams;
            cap->lo_b = prev->streams, cap->hi_b = last->streams;
        } else {
            cap->estimate = last->streams * hop_ms / last->ms_median;
            cap->lo_b = cap->hi_b = last->streams;
        }
        cap->how = "extrapolated from";
    } else {
        for (int i = 1; i < n_res; i++) {
            const bench_result *a = &res[order[i - 1]], *b = &res[order[i]];
            if (a->ms_median <= hop_ms && b->ms_median > hop_ms) {
                cap->estimate = a->streams + (hop_ms - a->ms_median) *
                                                 (b->streams - a->streams) /
                                                 (b->ms_median - a->ms_median);
                cap->lo_b = a->streams, cap->hi_b = b->streams;
                cap->how = "interpolated between";
                break;
            }
        }
    }
}

static int print_summary(const bench_run *r, const bench_options *o,
                         const bench_capacity *cap)
{
    double hop_ms = r->hop_ms;
    if (o->json) {
        printf("{\"summary\":true,\"backend\":");
        if (json_string(stdout, r->backend))
            return -1;
        printf(",\"hop_ms\":%.4f,\"realtime_capacity\":%d,"
               "\"capacity_estimate\":%.1f,\"estimate_method\":\"%s\"}\n",
               hop_ms, cap->measured, cap->estimate,
               cap->how[0] == 'i'   ? "interpolated"
               : cap->how[0] == 'e' ? "extrapolated"
                                    : "scaled");
        return 0;
    }
    printf("\nrtf = median step time / hop period (%.2f ms); a step of B "
           "streams keeps all B real-time when rtf <= 1.\n",
           hop_ms);
    printf("real-time capacity: %d streams (largest measured B with "
           "median step <= %.2f ms)\n",
           cap->measured, hop_ms);
    if (cap->lo_b == cap->hi_b)
        printf("estimate:           %.1f streams (%s B=%d, assuming step "
               "time proportional to B)\n",
               cap->estimate, cap->how, cap->lo_b);
    else
        printf("estimate:           %.1f streams (step time linear in B, "
               "%s B=%d and B=%d)\n",
               cap->estimate, cap->how, cap->lo_b, cap->hi_b);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    bench_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    bench_run r;
    bench_result res[MAX_BATCHES];
    rc = bench_setup(&r, &o) ? 1 : 0;
    if (!rc && !o.json)
        print_header(&r, &o);
    for (int i = 0; !rc && i < o.n_streams; i++)
        if (bench_one(r.eng, o.streams[i], o.seconds, r.in, r.out, r.slots,
                      &r.times, &r.cap, &res[i], r.cfg, r.flops, r.hop_ms,
                      o.pipelined, o.output) ||
            print_result(&r, &o, &res[i]))
            rc = 1;
    if (!rc) {
        bench_capacity cap;
        estimate_capacity(res, o.n_streams, r.hop_ms, &cap);
        if (print_summary(&r, &o, &cap))
            rc = 1;
    }
    bench_teardown(&r);
    return rc;
}
