/*
 * cmd_separate.c - `demix separate`: split audio files into one WAV file per
 * source, each exactly as long as its input and aligned with it sample for
 * sample (separate_signal.h does the signal path).
 *
 * Design. Inputs are checked first (opened once for their format, rate and
 * length: unreadable ones are reported and skipped), then separated up to
 * --jobs at a time, each on its own slot of ONE engine, so that the hops of
 * several files share a batched step. Every file is streamed in blocks of
 * READ_CHUNK_FRAMES: memory per file is bounded and does not grow with its
 * length; nothing is held whole. A file that fails (read, write) has its
 * partial outputs removed and does not stop the others; the exit status is
 * 1 when any failed.
 *
 * Output: DIR/<input name without extension>/<source>.wav, 16-bit PCM
 * (samples beyond [-1, 1] clipped, counted and warned about) or 32-bit float.
 * stderr: the backend once, a progress bar on a terminal, one line per file
 * written, errors.
 *
 * Threads: --threads N makes a demix_threadpool of N threads (the main
 * thread and N - 1 workers; default one per online CPU) for the engine's
 * math; the output does not depend on N, bit for bit.
 *
 * Thread context: the main thread; the pool's workers only inside
 * demix_engine_step().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio_io.h"
#include "commands.h"
#include "engine.h"
#include "model_choice.h"
#include "out_paths.h"
#include "progress.h"
#include "separate_signal.h"

#define READ_CHUNK_FRAMES 4096
#define DEFAULT_JOBS 4
#define MAX_JOBS 64
#define PATH_BYTES 4096

typedef struct separate_options {
    const char *model_path;
    const char *out_dir;
    const char *stems;
    demix_backend backend;
    int float32;
    long threads;
    demix_precision precision;
    long jobs;
} separate_options;

typedef struct input_file {
    const char *path;
    char name[256];  /* file name without directory and extension */
    audio_info info;
    int usable;      /* passed the check */
} input_file;

/* One file being separated on one engine slot. */
typedef struct task {
    int active;
    int input;
    int slot;
    int eof;
    audio_reader *reader;
    separate_signal *sig;
    audio_writer *writers[DEMIX_MAX_SOURCES];
    char dir[PATH_BYTES];
    char err[1024];
    float buf[READ_CHUNK_FRAMES * 2];
} task;

void cmd_separate_usage(FILE *out)
{
    fprintf(out,
            "usage: demix separate [OPTIONS] INPUT...\n"
            "\n"
            "Split each INPUT (WAV, FLAC, OGG Vorbis/Opus, MP3, any sample rate,\n"
            "mono or stereo) into one file per source: DIR/NAME/SOURCE.wav, where\n"
            "NAME is the input's file name without its extension. Every output has\n"
            "the input's length, sample rate and channels, aligned sample for sample.\n"
            "\n"
            "options:\n");
    model_choice_usage(out);
    fprintf(out,
            "  -b, --backend NAME   auto (default: CUDA when a GPU opens), cpu or cuda\n"
            "  -o, --out DIR        output folder (default: separated)\n"
            "      --float32        write 32-bit float WAV (default: 16-bit PCM, clipped)\n"
            "      --stems A,B      write only these sources (default: all the model has)\n"
            "  -p, --precision P    fast (the default: bf16 products on CUDA and where the\n"
            "                       CPU has AVX512-BF16, else float32) or fp32 (the\n"
            "                       float32 reference)\n"
            "  -t, --threads N      threads for the CPU engine's math, this one included\n"
            "                       (default: one per online CPU, here %d)\n"
            "  -j, --jobs N         files separated at once, in one batched step\n"
            "                       (default: %d)\n"
            "  -h, --help           this text\n"
            "\n"
            "exit status: 0 when every input was separated, 1 when any failed,\n"
            "2 for a usage error.\n",
            cli_default_threads(), DEFAULT_JOBS);
}

/* ------------------------------------------------------------- helpers */

/* "vocals,drums" -> bit mask over cfg->source_names. */
static int parse_stems(const char *text, const demix_model_config *cfg,
                       unsigned *mask)
{
    *mask = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int found = -1;
        for (int t = 0; t < cfg->num_sources; t++)
            if (strlen(cfg->source_names[t]) == len &&
                strncmp(cfg->source_names[t], p, len) == 0)
                found = t;
        if (found < 0) {
            char valid[DEMIX_MAX_SOURCES * (DEMIX_SOURCE_NAME_BYTES + 2)] = "";
            for (int t = 0; t < cfg->num_sources; t++) {
                if (t)
                    strcat(valid, ", ");
                strcat(valid, cfg->source_names[t]);
            }
            fprintf(stderr,
                    "demix separate: unknown stem '%.*s' in --stems; this "
                    "model's stems are: %s\n",
                    (int)len, p, valid);
            return -1;
        }
        *mask |= 1u << found;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

enum { OPT_FLOAT32 = 256, OPT_STEMS };

static const struct option separate_longs[] = {
    {"help", no_argument, NULL, 'h'},
    {"float32", no_argument, NULL, OPT_FLOAT32},
    {"model", required_argument, NULL, 'm'},
    {"out", required_argument, NULL, 'o'},
    {"stems", required_argument, NULL, OPT_STEMS},
    {"backend", required_argument, NULL, 'b'},
    {"threads", required_argument, NULL, 't'},
    {"precision", required_argument, NULL, 'p'},
    {"jobs", required_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

/* 0: parsed; -1: --help was printed (exit 0); else the exit status.
 * *inputs (the caller frees it) holds the input paths. */
static int parse_args(int argc, char **argv, separate_options *o,
                      const char ***inputs, int *n_inputs)
{
    memset(o, 0, sizeof *o);
    o->out_dir = "separated";
    o->backend = DEMIX_BACKEND_AUTO;
    o->jobs = DEFAULT_JOBS;
    o->threads = cli_default_threads();
    o->precision = DEMIX_PRECISION_DEFAULT;
    *inputs = calloc((size_t)argc, sizeof **inputs);
    *n_inputs = 0;
    if (!*inputs)
        return 1;
    int c;
    cli_args a;
    cli_args_init(&a);
    while ((c = cli_args_next(&a, argc, argv, "hm:o:b:t:p:j:",
                              separate_longs)) != -1) {
        const char *v = a.value;
        switch (c) {
        case CLI_OPERAND:
            (*inputs)[(*n_inputs)++] = v;
            break;
        case 'h':
            cmd_separate_usage(stdout);
            return -1;
        case OPT_FLOAT32:
            o->float32 = 1;
            break;
        case 'm':
            o->model_path = v;
            break;
        case 'o':
            o->out_dir = v;
            break;
        case OPT_STEMS:
            o->stems = v;
            break;
        case 'b':
            if (demix_backend_parse(v, &o->backend)) {
                fprintf(stderr, "demix separate: --backend must be auto, cpu "
                                "or cuda (got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
            break;
        case 't':
            if (cli_int("separate", "--threads", v, 0,
                        DEMIX_THREADPOOL_MAX_THREADS, &o->threads))
                return DEMIX_EXIT_USAGE;
            if (o->threads == 0)
                o->threads = cli_default_threads();
            break;
        case 'p':
            if (cli_precision("separate", v, &o->precision))
                return DEMIX_EXIT_USAGE;
            break;
        case 'j':
            if (cli_int("separate", "--jobs", v, 1, MAX_JOBS, &o->jobs))
                return DEMIX_EXIT_USAGE;
            break;
        case CLI_MISSING:
            return DEMIX_EXIT_USAGE;
        default:
            fprintf(stderr, "demix separate: unknown option '%s' (see demix "
                            "help separate)\n", v);
            return DEMIX_EXIT_USAGE;
        }
    }
    if (*n_inputs == 0) {
        fprintf(stderr, "demix separate: no input files\n\n");
        cmd_separate_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (!o->out_dir[0]) {
        fprintf(stderr, "demix separate: --out needs a folder name\n");
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

/* --------------------------------------------------------------- tasks */

static int task_emit(void *user, int source, const float *frames, size_t n)
{
    task *t = user;
    return audio_writer_write(t->writers[source], frames, n, t->err,
                              sizeof t->err);
}

/* Close and delete whatever a failed file had written. */
static void task_abandon(task *t, const demix_model_config *cfg)
{
    for (int s = 0; s < cfg->num_sources; s++) {
        if (!t->writers[s])
            continue;
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s", audio_writer_path(t->writers[s]));
        (void)audio_writer_close(t->writers[s], NULL, 0);
        t->writers[s] = NULL;
        unlink(path);
    }
    if (t->dir[0])
        rmdir(t->dir); /* only when empty: other files stay */
    audio_reader_close(t->reader);
    separate_signal_destroy(t->sig);
    t->reader = NULL;
    t->sig = NULL;
    t->dir[0] = '\0';
    t->active = 0;
}

static int task_start(task *t, int index, const input_file *in,
                      const separate_options *o, const demix_model_config *cfg,
                      unsigned mask)
{
    memset(t->writers, 0, sizeof t->writers);
    t->input = index;
    t->eof = 0;
    t->err[0] = '\0';
    t->dir[0] = '\0';
    t->active = 1;
    int rc = audio_reader_open(in->path, &t->reader, t->err, sizeof t->err);
    if (rc)
        return rc;
    const audio_info *info = audio_reader_info(t->reader);
    separate_signal_params p = {
        .in_rate_hz = info->rate_hz,
        .in_channels = info->channels,
        .source_mask = mask,
        .emit = task_emit,
        .user = t,
    };
    char why[512];
    rc = separate_signal_create(cfg, &p, &t->sig, why, sizeof why);
    if (rc) {
        snprintf(t->err, sizeof t->err, "%s: %s", in->path, why);
        return rc;
    }
    char dir[PATH_BYTES];
    if (snprintf(dir, sizeof dir, "%s/%s", o->out_dir, in->name) >= (int)sizeof dir) {
        snprintf(t->err, sizeof t->err, "%s: output path too long", in->path);
        return DEMIX_EARG;
    }
    rc = out_paths_make_dirs(dir, t->err, sizeof t->err);
    if (rc)
        return rc;
    snprintf(t->dir, sizeof t->dir, "%s", dir);
    for (int s = 0; s < cfg->num_sources; s++) {
        if (!((mask >> s) & 1u))
            continue;
        char path[PATH_BYTES];
        if (snprintf(path, sizeof path, "%s/%s.wav", dir, cfg->source_names[s]) >=
            (int)sizeof path) {
            snprintf(t->err, sizeof t->err, "%s: output path too long", in->path);
            return DEMIX_EARG;
        }
        rc = audio_writer_open(path, info->rate_hz, info->channels,
                               o->float32 ? AUDIO_FLOAT32 : AUDIO_PCM16,
                               &t->writers[s], t->err, sizeof t->err);
        if (rc)
            return rc;
    }
    return DEMIX_OK;
}

/* Read until the signal has a hop for the engine or the input ends. */
static int task_feed(task *t, const input_file *in)
{
    while (!t->eof && !separate_signal_hop_ready(t->sig) &&
           !separate_signal_done(t->sig)) {
        size_t n = audio_reader_read(t->reader, t->buf, READ_CHUNK_FRAMES);
        int rc;
        if (n > 0) {
            rc = separate_signal_push(t->sig, t->buf, n);
        } else {
            if (audio_reader_error(t->reader)[0]) {
                snprintf(t->err, sizeof t->err, "%s: read failed: %s",
                         in->path, audio_reader_error(t->reader));
                return DEMIX_EFORMAT;
            }
            t->eof = 1;
            rc = separate_signal_finish(t->sig);
        }
        if (rc) {
            if (!t->err[0])
                snprintf(t->err, sizeof t->err, "%s: %s", in->path,
                         separate_signal_error(t->sig));
            return rc;
        }
    }
    return DEMIX_OK;
}

/* Close the outputs of a finished file and say what was written. */
static int task_complete(task *t, const demix_model_config *cfg,
                         progress *bar)
{
    int rc = DEMIX_OK;
    char paths[DEMIX_MAX_SOURCES][PATH_BYTES];
    int64_t clipped[DEMIX_MAX_SOURCES];
    for (int s = 0; s < cfg->num_sources; s++) {
        paths[s][0] = '\0';
        clipped[s] = 0;
        if (!t->writers[s])
            continue;
        snprintf(paths[s], sizeof paths[s], "%s", audio_writer_path(t->writers[s]));
        clipped[s] = audio_writer_clipped(t->writers[s]);
        if (rc == DEMIX_OK)
            rc = audio_writer_close(t->writers[s], t->err, sizeof t->err);
        else
            (void)audio_writer_close(t->writers[s], NULL, 0);
        t->writers[s] = NULL;
        if (rc)
            unlink(paths[s]);
    }
    if (rc) {
        /* Remove the ones closed before the failure too. */
        for (int s = 0; s < cfg->num_sources; s++)
            if (paths[s][0])
                unlink(paths[s]);
        task_abandon(t, cfg);
        return rc;
    }
    progress_clear(bar);
    for (int s = 0; s < cfg->num_sources; s++) {
        if (!paths[s][0])
            continue;
        fprintf(stderr, "wrote %s\n", paths[s]);
        if (clipped[s] > 0)
            fprintf(stderr,
                    "demix: warning: %s: %lld samples beyond [-1, 1] were "
                    "clipped (--float32 keeps them)\n",
                    paths[s], (long long)clipped[s]);
    }
    audio_reader_close(t->reader);
    separate_signal_destroy(t->sig);
    t->reader = NULL;
    t->sig = NULL;
    t->active = 0;
    return DEMIX_OK;
}

/* ----------------------------------------------------------------- run */

int cmd_separate(int argc, char **argv)
{
    separate_options o;
    const char **paths = NULL;
    int n_inputs = 0;
    int rc = parse_args(argc, argv, &o, &paths, &n_inputs);
    if (rc) {
        free(paths);
        return rc < 0 ? 0 : rc;
    }

    char model_buf[PATH_BYTES];
    const char *model_path =
        model_choice_path(o.model_path, model_buf, sizeof model_buf);
    demix_model *model = NULL;
    if (!model_path || model_choice_load(model_path, &model)) {
        free(paths);
        return 1;
    }
    char err[1024];
    const demix_model_config *cfg = demix_model_get_config(model);

    unsigned mask = 0;
    for (int s = 0; s < cfg->num_sources; s++)
        mask |= 1u << s;
    if (o.stems && parse_stems(o.stems, cfg, &mask)) {
        demix_model_destroy(model);
        free(paths);
        return DEMIX_EXIT_USAGE;
    }

    /* Check every input before any work: format, channels, name clashes. */
    input_file *inputs = calloc((size_t)n_inputs, sizeof *inputs);
    if (!inputs) {
        cli_error("out of memory");
        demix_model_destroy(model);
        free(paths);
        return 1;
    }
    int failed = 0, usable = 0;
    double total_s = 0.0;
    for (int i = 0; i < n_inputs; i++) {
        input_file *in = &inputs[i];
        in->path = paths[i];
        audio_reader *r;
        if (audio_reader_open(in->path, &r, err, sizeof err)) {
            cli_error("%s", err);
            failed++;
            continue;
        }
        in->info = *audio_reader_info(r);
        audio_reader_close(r);
        if (in->info.channels > 2) {
            cli_error("%s: %d channels; only mono and stereo files can be "
                      "separated", in->path, in->info.channels);
            failed++;
            continue;
        }
        out_paths_base_name(in->path, in->name, sizeof in->name);
        int clash = -1;
        for (int j = 0; j < i && clash < 0; j++)
            if (inputs[j].usable && strcmp(inputs[j].name, in->name) == 0)
                clash = j;
        if (clash >= 0) {
            cli_error("%s: its output folder %s/%s is already used by %s; "
                      "rename one of them or run them separately",
                      in->path, o.out_dir, in->name, inputs[clash].path);
            failed++;
            continue;
        }
        in->usable = 1;
        usable++;
        if (in->info.frames > 0)
            total_s += (double)in->info.frames / in->info.rate_hz;
    }
    if (usable == 0) {
        free(inputs);
        demix_model_destroy(model);
        free(paths);
        return 1;
    }
    if (out_paths_make_dirs(o.out_dir, err, sizeof err)) {
        cli_error("%s", err);
        free(inputs);
        demix_model_destroy(model);
        free(paths);
        return 1;
    }

    int jobs = (int)(o.jobs < usable ? o.jobs : usable);
    demix_threadpool *pool = NULL;
    if (cli_threadpool((int)o.threads, &pool)) {
        free(inputs);
        demix_model_destroy(model);
        free(paths);
        return 1;
    }
    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = o.backend;
    eo.precision = o.precision;
    eo.max_slots = jobs;
    eo.threads = (int)o.threads;
    eo.pool = pool;
    demix_engine *engine = NULL;
    err[0] = '\0';
    if (demix_engine_create(model, &eo, &engine, err, sizeof err)) {
        cli_error("cannot create the engine: %s", err);
        demix_threadpool_destroy(pool);
        free(inputs);
        demix_model_destroy(model);
        free(paths);
        return 1;
    }
    fprintf(stderr, "demix: backend: %s\n", demix_engine_describe(engine));
    if (err[0])
        fprintf(stderr, "demix: %s\n", err);

    size_t in_hop = (size_t)cfg->channels * (size_t)cfg->hop_samples;
    size_t out_hop = in_hop * (size_t)cfg->num_sources;
    task *tasks = calloc((size_t)jobs, sizeof *tasks);
    separate_signal **sigs = calloc((size_t)jobs, sizeof *sigs);
    int *slots = calloc((size_t)jobs, sizeof *slots);
    int *slot_buf = calloc((size_t)jobs, sizeof *slot_buf);
    float *in_buf = malloc((size_t)jobs * in_hop * sizeof *in_buf);
    float *out_buf = malloc((size_t)jobs * out_hop * sizeof *out_buf);
    int fatal = 0;
    if (!tasks || !sigs || !slots || !slot_buf || !in_buf || !out_buf) {
        cli_error("out of memory");
        fatal = 1;
    }
    for (int j = 0; j < jobs && !fatal; j++) {
        if (demix_engine_open_slot(engine, &slots[j])) {
            cli_error("cannot open an engine slot: %s",
                      demix_engine_last_error(engine));
            fatal = 1;
        }
    }

    progress bar;
    progress_init(&bar, stderr, total_s);
    double done_s = 0.0; /* audio seconds of finished files */
    int next = 0;
    while (!fatal) {
        /* Give idle slots the next inputs. */
        for (int j = 0; j < jobs; j++) {
            task *t = &tasks[j];
            while (!fatal && !t->active && next < n_inputs) {
                int i = next++;
                if (!inputs[i].usable)
                    continue;
                t->slot = slots[j];
                if (demix_engine_reset_slot(engine, t->slot)) {
                    cli_error("cannot reset an engine slot: %s",
                              demix_engine_last_error(engine));
                    fatal = 1;
                    break;
                }
                if (task_start(t, i, &inputs[i], &o, cfg, mask)) {
                    progress_clear(&bar);
                    cli_error("%s", t->err);
                    task_abandon(t, cfg);
                    failed++;
                }
            }
        }
        int active = 0;
        for (int j = 0; j < jobs; j++) {
            task *t = &tasks[j];
            sigs[j] = NULL;
            if (!t->active)
                continue;
            if (task_feed(t, &inputs[t->input]) == DEMIX_OK) {
                sigs[j] = t->sig;
                active++;
                continue;
            }
            progress_clear(&bar);
            cli_error("%s", t->err);
            task_abandon(t, cfg);
            failed++;
        }
        if (fatal || (active == 0 && next >= n_inputs))
            break;

        int stepped = 0;
        if (separate_signal_step(engine, sigs, slots, jobs, in_buf, out_buf,
                                 slot_buf, &stepped, err, sizeof err)) {
            progress_clear(&bar);
            cli_error("engine step failed: %s", err);
            fatal = 1;
            break;
        }

        double busy_s = 0.0;
        for (int j = 0; j < jobs; j++) {
            task *t = &tasks[j];
            if (!t->active)
                continue;
            const input_file *in = &inputs[t->input];
            if (separate_signal_status(t->sig)) {
                progress_clear(&bar);
                if (t->err[0])
                    cli_error("%s", t->err);
                else
                    cli_error("%s: %s", in->path, separate_signal_error(t->sig));
                task_abandon(t, cfg);
                failed++;
                continue;
            }
            if (separate_signal_done(t->sig)) {
                double file_s = (double)separate_signal_frames_out(t->sig) /
                                in->info.rate_hz;
                if (task_complete(t, cfg, &bar)) {
                    progress_clear(&bar);
                    cli_error("%s", t->err);
                    failed++;
                } else {
                    done_s += file_s;
                }
                continue;
            }
            busy_s += (double)separate_signal_frames_out(t->sig) / in->info.rate_hz;
        }
        const char *label = "";
        for (int j = 0; j < jobs; j++)
            if (tasks[j].active) {
                label = inputs[tasks[j].input].name;
                break;
            }
        progress_update(&bar, done_s + busy_s, label);
    }
    progress_finish(&bar);

    if (fatal) {
        for (int j = 0; tasks && j < jobs; j++)
            if (tasks[j].active) {
                cli_error("%s: not finished", inputs[tasks[j].input].path);
                task_abandon(&tasks[j], cfg);
                failed++;
            }
        for (int i = next; i < n_inputs; i++)
            if (inputs[i].usable) {
                cli_error("%s: not started", inputs[i].path);
                failed++;
            }
    }
    if (failed && n_inputs > 1)
        fprintf(stderr, "demix: %d of %d inputs failed\n", failed, n_inputs);

    free(tasks);
    free(sigs);
    free(slots);
    free(slot_buf);
    free(in_buf);
    free(out_buf);
    demix_engine_destroy(engine);
    demix_threadpool_destroy(pool);
    demix_model_destroy(model);
    free(inputs);
    free(paths);
    return failed || fatal ? 1 : 0;
}
