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
    int name_by_parent; /* --name-by parent: NAME is the input's folder */
    int overwrite;      /* --overwrite: replace stems already there */
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
            "NAME is the input's file name without its extension (--name-by parent:\n"
            "the name of the folder it is in). Every output has\n"
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
            "      --name-by WHAT   file (default): DIR/<file name>/; parent:\n"
            "                       DIR/<its folder's name>/, for datasets whose\n"
            "                       files are all called mixture.wav\n"
            "      --overwrite      replace stems an earlier run wrote (default:\n"
            "                       such an input is an error, nothing is replaced)\n"
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

enum { OPT_FLOAT32 = 256, OPT_STEMS, OPT_NAME_BY, OPT_OVERWRITE };

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
    {"name-by", required_argument, NULL, OPT_NAME_BY},
    {"overwrite", no_argument, NULL, OPT_OVERWRITE},
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
        case OPT_NAME_BY:
            if (!strcmp(v, "parent") || !strcmp(v, "file")) {
                o->name_by_parent = !strcmp(v, "parent");
                break;
            }
            fprintf(stderr, "demix separate: --name-by must be file or "
                            "parent (got '%s')\n", v);
            return DEMIX_EXIT_USAGE;
        case OPT_OVERWRITE:
            o->overwrite = 1;
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

/* Everything one `demix separate` holds; separate_teardown() frees it all,
 * whatever the steps before got to. */
typedef struct separate_run {
    separate_options o;
    const char **paths; /* the INPUT operands */
    int n_inputs;
    input_file *inputs; /* n_inputs, checked */
    int usable;         /* inputs that passed the check */
    double total_s;     /* their audio seconds, for the progress bar */
    demix_model *model;
    const demix_model_config *cfg;
    unsigned mask; /* the sources written */
    demix_threadpool *pool;
    demix_engine *engine;
    int jobs; /* files at once: the engine's slots */
    task *tasks;
    separate_signal **sigs; /* per job: the signal in this step, or NULL */
    int *slots, *slot_buf;
    float *in_buf, *out_buf; /* jobs input hops; jobs output hops */
    progress bar;
    int next;      /* the next input to start */
    double done_s; /* audio seconds of finished files */
    int failed;    /* inputs that failed */
    int fatal;     /* the engine failed: nothing more runs */
} separate_run;

static void separate_teardown(separate_run *r)
{
    free(r->tasks);
    free(r->sigs);
    free(r->slots);
    free(r->slot_buf);
    free(r->in_buf);
    free(r->out_buf);
    demix_engine_destroy(r->engine);
    demix_threadpool_destroy(r->pool);
    demix_model_destroy(r->model);
    free(r->inputs);
    free(r->paths);
}

/* The model and the --stems mask. 0, or the exit status after printing. */
static int load_model(separate_run *r)
{
    char model_buf[PATH_BYTES];
    const char *model_path =
        model_choice_path(r->o.model_path, model_buf, sizeof model_buf);
    if (!model_path || model_choice_load(model_path, &r->model))
        return 1;
    r->cfg = demix_model_get_config(r->model);
    r->mask = 0;
    for (int s = 0; s < r->cfg->num_sources; s++)
        r->mask |= 1u << s;
    if (r->o.stems && parse_stems(r->o.stems, r->cfg, &r->mask))
        return DEMIX_EXIT_USAGE;
    return 0;
}

/* 1 when a stem this run would write for `in` is there already (err gets
 * its path). */
static int stems_exist(const separate_run *r, const input_file *in, char *err,
                       size_t err_cap)
{
    for (int s = 0; s < r->cfg->num_sources; s++) {
        if (!((r->mask >> s) & 1u))
            continue;
        char path[PATH_BYTES];
        snprintf(path, sizeof path, "%s/%s/%s.wav", r->o.out_dir, in->name,
                 r->cfg->source_names[s]);
        if (access(path, F_OK) == 0) {
            snprintf(err, err_cap, "%.*s", (int)(err_cap > 1 ? err_cap - 1 : 0),
                     path);
            return 1;
        }
    }
    return 0;
}

/* Check every input before any work: format, channels, name clashes,
 * stems of an earlier run.
 * Failures are reported and counted; -1 only when out of memory. */
static int check_inputs(separate_run *r)
{
    r->inputs = calloc((size_t)r->n_inputs, sizeof *r->inputs);
    if (!r->inputs) {
        cli_error("out of memory");
        return -1;
    }
    char err[1024];
    for (int i = 0; i < r->n_inputs; i++) {
        input_file *in = &r->inputs[i];
        in->path = r->paths[i];
        audio_reader *rd;
        if (audio_reader_open(in->path, &rd, err, sizeof err)) {
            cli_error("%s", err);
            r->failed++;
            continue;
        }
        in->info = *audio_reader_info(rd);
        audio_reader_close(rd);
        if (in->info.channels > 2) {
            cli_error("%s: %d channels; only mono and stereo files can be "
                      "separated",
                      in->path, in->info.channels);
            r->failed++;
            continue;
        }
        if (!r->o.name_by_parent) {
            out_paths_base_name(in->path, in->name, sizeof in->name);
        } else if (out_paths_parent_name(in->path, in->name, sizeof in->name,
                                         err, sizeof err)) {
            cli_error("%s", err);
            r->failed++;
            continue;
        }
        int clash = -1;
        for (int j = 0; j < i && clash < 0; j++)
            if (r->inputs[j].usable && strcmp(r->inputs[j].name, in->name) == 0)
                clash = j;
        if (clash >= 0) {
            cli_error("%s: its output folder %s/%s is already used by %s; %s",
                      in->path, r->o.out_dir, in->name, r->inputs[clash].path,
                      r->o.name_by_parent
                          ? "they are in folders of the same name: run them "
                            "separately with different --out"
                          : "give --name-by parent to name each output by "
                            "its input's folder, or run them separately with "
                            "different --out");
            r->failed++;
            continue;
        }
        if (!r->o.overwrite && stems_exist(r, in, err, sizeof err)) {
            cli_error("%s: %s exists (an earlier run?); nothing is replaced: "
                      "give --overwrite to replace it, --name-by parent to "
                      "name the output by the input's folder, or another "
                      "--out",
                      in->path, err);
            r->failed++;
            continue;
        }
        in->usable = 1;
        r->usable++;
        if (in->info.frames > 0)
            r->total_s += (double)in->info.frames / in->info.rate_hz;
    }
    return 0;
}

/* The pool and the engine (-1 after printing when either fails), then the
 * step buffers and one open slot per job (a failure there is fatal: the
 * run reports every input as not started). */
static int start_engine(separate_run *r)
{
    r->jobs = (int)(r->o.jobs < r->usable ? r->o.jobs : r->usable);
    if (cli_threadpool((int)r->o.threads, &r->pool))
        return -1;
    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = r->o.backend;
    eo.precision = r->o.precision;
    eo.max_slots = r->jobs;
    eo.pool = r->pool;
    char err[1024] = "";
    if (demix_engine_create(r->model, &eo, &r->engine, err, sizeof err)) {
        cli_error("cannot create the engine: %s", err);
        return -1;
    }
    fprintf(stderr, "demix: backend: %s\n", demix_engine_describe(r->engine));
    if (err[0])
        fprintf(stderr, "demix: %s\n", err);

    size_t jobs = (size_t)r->jobs;
    size_t in_hop = (size_t)r->cfg->channels * (size_t)r->cfg->hop_samples;
    size_t out_hop = in_hop * (size_t)r->cfg->num_sources;
    r->tasks = calloc(jobs, sizeof *r->tasks);
    r->sigs = calloc(jobs, sizeof *r->sigs);
    r->slots = calloc(jobs, sizeof *r->slots);
    r->slot_buf = calloc(jobs, sizeof *r->slot_buf);
    r->in_buf = malloc(jobs * in_hop * sizeof *r->in_buf);
    r->out_buf = malloc(jobs * out_hop * sizeof *r->out_buf);
    if (!r->tasks || !r->sigs || !r->slots || !r->slot_buf || !r->in_buf ||
        !r->out_buf) {
        cli_error("out of memory");
        r->fatal = 1;
    }
    for (int j = 0; j < r->jobs && !r->fatal; j++) {
        if (demix_engine_open_slot(r->engine, &r->slots[j])) {
            cli_error("cannot open an engine slot: %s",
                      demix_engine_last_error(r->engine));
            r->fatal = 1;
        }
    }
    return 0;
}

/* A file that failed: say why (t->err), remove its outputs, count it. */
static void task_fail(separate_run *r, task *t)
{
    progress_clear(&r->bar);
    cli_error("%s", t->err);
    task_abandon(t, r->cfg);
    r->failed++;
}

/* Give idle slots the next inputs. */
static void start_tasks(separate_run *r)
{
    for (int j = 0; j < r->jobs; j++) {
        task *t = &r->tasks[j];
        while (!r->fatal && !t->active && r->next < r->n_inputs) {
            int i = r->next++;
            if (!r->inputs[i].usable)
                continue;
            t->slot = r->slots[j];
            if (demix_engine_reset_slot(r->engine, t->slot)) {
                cli_error("cannot reset an engine slot: %s",
                          demix_engine_last_error(r->engine));
                r->fatal = 1;
                break;
            }
            if (task_start(t, i, &r->inputs[i], &r->o, r->cfg, r->mask))
                task_fail(r, t);
        }
    }
}

/* Read each active file up to its next hop; the number of signals in the
 * next step (r->sigs). */
static int feed_tasks(separate_run *r)
{
    int active = 0;
    for (int j = 0; j < r->jobs; j++) {
        task *t = &r->tasks[j];
        r->sigs[j] = NULL;
        if (!t->active)
            continue;
        if (task_feed(t, &r->inputs[t->input]) == DEMIX_OK) {
            r->sigs[j] = t->sig;
            active++;
            continue;
        }
        task_fail(r, t);
    }
    return active;
}

/* After a step: fail or complete the files it ended, and move the bar. */
static void finish_step(separate_run *r)
{
    double busy_s = 0.0;
    for (int j = 0; j < r->jobs; j++) {
        task *t = &r->tasks[j];
        if (!t->active)
            continue;
        const input_file *in = &r->inputs[t->input];
        if (separate_signal_status(t->sig)) {
            progress_clear(&r->bar);
            if (t->err[0])
                cli_error("%s", t->err);
            else
                cli_error("%s: %s", in->path, separate_signal_error(t->sig));
            task_abandon(t, r->cfg);
            r->failed++;
            continue;
        }
        if (separate_signal_done(t->sig)) {
            double file_s =
                (double)separate_signal_frames_out(t->sig) / in->info.rate_hz;
            if (task_complete(t, r->cfg, &r->bar)) {
                progress_clear(&r->bar);
                cli_error("%s", t->err);
                r->failed++;
            } else {
                r->done_s += file_s;
            }
            continue;
        }
        busy_s += (double)separate_signal_frames_out(t->sig) / in->info.rate_hz;
    }
    const char *label = "";
    for (int j = 0; j < r->jobs; j++)
        if (r->tasks[j].active) {
            label = r->inputs[r->tasks[j].input].name;
            break;
        }
    progress_update(&r->bar, r->done_s + busy_s, label);
}

/* Separate every usable input, up to jobs at a time in one batched step. */
static void run_tasks(separate_run *r)
{
    progress_init(&r->bar, stderr, r->total_s);
    while (!r->fatal) {
        start_tasks(r);
        int active = feed_tasks(r);
        if (r->fatal || (active == 0 && r->next >= r->n_inputs))
            break;
        int stepped = 0;
        char err[1024];
        if (separate_signal_step(r->engine, r->sigs, r->slots, r->jobs,
                                 r->in_buf, r->out_buf, r->slot_buf, &stepped,
                                 err, sizeof err)) {
            progress_clear(&r->bar);
            cli_error("engine step failed: %s", err);
            r->fatal = 1;
            break;
        }
        finish_step(r);
    }
    progress_finish(&r->bar);
}

/* After a fatal engine failure: every file not written is named. */
static void report_unfinished(separate_run *r)
{
    for (int j = 0; r->tasks && j < r->jobs; j++)
        if (r->tasks[j].active) {
            cli_error("%s: not finished", r->inputs[r->tasks[j].input].path);
            task_abandon(&r->tasks[j], r->cfg);
            r->failed++;
        }
    for (int i = r->next; i < r->n_inputs; i++)
        if (r->inputs[i].usable) {
            cli_error("%s: not started", r->inputs[i].path);
            r->failed++;
        }
}

int cmd_separate(int argc, char **argv)
{
    separate_run r;
    memset(&r, 0, sizeof r);
    int rc = parse_args(argc, argv, &r.o, &r.paths, &r.n_inputs);
    if (rc) {
        separate_teardown(&r);
        return rc < 0 ? 0 : rc;
    }
    rc = load_model(&r);
    if (!rc && (check_inputs(&r) || r.usable == 0))
        rc = 1;
    if (!rc) {
        char err[1024];
        if (out_paths_make_dirs(r.o.out_dir, err, sizeof err)) {
            cli_error("%s", err);
            rc = 1;
        }
    }
    if (!rc && start_engine(&r))
        rc = 1;
    if (!rc) {
        run_tasks(&r);
        if (r.fatal)
            report_unfinished(&r);
        if (r.failed && r.n_inputs > 1)
            fprintf(stderr, "demix: %d of %d inputs failed\n", r.failed,
                    r.n_inputs);
        rc = r.failed || r.fatal ? 1 : 0;
    }
    separate_teardown(&r);
    return rc;
}
