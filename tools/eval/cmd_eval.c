/*
 * cmd_eval.c - `demix eval`: separation quality on a data set, as the SDR
 * (sdr.h) of each source of each track, the median per source over the
 * tracks and the mean of those medians ("mean SDR").
 *
 * Data set: DATASET_DIR/<track>/mixture.* and DATASET_DIR/<track>/<source>.*
 * (any format libsndfile reads), one folder per track, sources named as the
 * model names them. A missing source file means that source is silent in
 * that track: its SDR is n/a there, as for a silent reference.
 *
 * Design. Every track is checked before any work (eval_dataset.h: files
 * found, opened for format, rate, channels and length): an evaluation that
 * quietly left out a track would report the median of another data set, so
 * any problem is reported, file by file, and nothing is scored (exit 1).
 * Then each track
 * is separated on one engine slot exactly as `demix separate` does it
 * (separate_signal.h: resampling to the model's rate and back, outputs
 * aligned sample for sample and as long as the mixture), and each
 * separated block is scored against the same frames of its reference as it
 * comes out. Nothing is held whole: memory does not grow with the track.
 * With --estimates DIR the separation is replaced by reading
 * DIR/<track>/<source>.*, precomputed estimates (museval's way).
 *
 * Lengths. References and estimates must be exactly as long as their
 * mixture, or the track is an error naming the file. Trimming or padding
 * would change the score silently, and a file a few samples off usually
 * carries an encoder delay: shifted by even one sample, a reference scores
 * far lower than any trim could account for. Our own estimates have the
 * mixture's length by construction.
 *
 * Output: a table on stdout (one row per track, one column per source, the
 * medians, the mean SDR), or with --json one JSON object (eval_report.h).
 * stderr: the backend once, a progress bar on a terminal, else one line
 * per track scored; errors.
 *
 * Thread context: the main thread; the pool's workers only inside
 * demix_engine_step().
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio_io.h"
#include "commands.h"
#include "engine.h"
#include "eval_dataset.h"
#include "eval_report.h"
#include "model_choice.h"
#include "progress.h"
#include "sdr.h"
#include "separate_signal.h"

#define READ_CHUNK_FRAMES 4096
#define MAX_CHANNELS 2 /* what the model path takes (separate_signal.h) */

static const char *const default_sources[] = {"drums", "bass", "vocals",
                                              "other"};

typedef struct eval_options {
    const char *dataset_dir;
    const char *model_path;
    const char *estimates_dir;
    const char *sources; /* --sources A,B or NULL */
    const char *model_only_option; /* the first option that needs a model */
    demix_backend backend;
    demix_precision precision;
    long threads;
    int json;
} eval_options;

/* The model path: one engine slot and its buffers. */
typedef struct model_run {
    demix_model *model;
    const demix_model_config *cfg;
    demix_threadpool *pool;
    demix_engine *engine;
    int slot;
    int slot_buf;
    float *in_buf;  /* C*H */
    float *out_buf; /* T*C*H */
} model_run;

/* One track being separated: each source's reference, read along as the
 * estimate is emitted. Indexed by the model's source index. */
typedef struct scorer {
    audio_reader *ref[DEMIX_MAX_SOURCES];
    const char *ref_path[DEMIX_MAX_SOURCES];
    sdr_sum sum[DEMIX_MAX_SOURCES];
    int channels;
    float buf[READ_CHUNK_FRAMES * MAX_CHANNELS];
    char err[EVAL_PATH_BYTES + 1024];
} scorer;

void cmd_eval_usage(FILE *out)
{
    fprintf(out,
            "usage: demix eval [OPTIONS] DATASET_DIR\n"
            "\n"
            "Measure separation quality: separate each track's mixture with the\n"
            "model and score every source against its reference by its SDR,\n"
            "\n"
            "    SDR = 10 log10( sum s^2 / sum (s - s_hat)^2 )  dB\n"
            "\n"
            "over all samples of all channels (s: reference, s_hat: estimate); then\n"
            "the median over tracks per source, and the mean of those medians\n"
            "(\"mean SDR\"). Higher is better.\n"
            "\n"
            "DATASET_DIR holds one folder per track (hidden folders are skipped):\n"
            "  DATASET_DIR/TRACK/mixture.wav    the input\n"
            "  DATASET_DIR/TRACK/SOURCE.wav     one reference per source, named as the\n"
            "                                   model names its sources (default\n"
            "                                   drums, bass, vocals, other)\n"
            "Any extension libsndfile reads will do (.wav, .flac, .ogg, .opus ...),\n"
            "one file per name. A missing source file means the source is silent in\n"
            "that track. A silent reference (RMS below one 16-bit step, -90.3 dBFS)\n"
            "has no SDR: it shows as n/a and is left out of that source's median.\n"
            "Every file of a track must have the mixture's sample rate, channel\n"
            "count and length (in frames), exactly. The mixture is resampled to the\n"
            "model's rate and back when they differ, as by demix separate.\n"
            "\n"
            "options:\n"
            "      --estimates DIR  score precomputed estimates instead of running a\n"
            "                       model: DIR/TRACK/SOURCE.* (any format, the\n"
            "                       mixture's rate, channels and length); only the\n"
            "                       sources with a reference need one\n"
            "      --sources A,B    score only these sources (default: all the model\n"
            "                       has; with --estimates: drums,bass,vocals,other)\n"
            "      --json           print the results as one JSON object:\n"
            "                       {\"model\", \"backend\", \"engine\", \"estimates\",\n"
            "                        \"sources\": [...], \"tracks\": [{\"name\",\n"
            "                        \"sdr\": {SOURCE: dB or null}}], \"median\":\n"
            "                        {SOURCE: dB or null}, \"mean\": dB or null}\n");
    model_choice_usage(out);
    fprintf(out,
            "  -b, --backend NAME   auto (default: CUDA when a GPU opens), cpu or cuda\n"
            "  -p, --precision P    fast (the default: bf16 products on CUDA and where the\n"
            "                       CPU has AVX512-BF16, else float32) or fp32 (the\n"
            "                       float32 reference)\n"
            "  -t, --threads N      threads for the CPU engine's math, this one included\n"
            "                       (default: one per online CPU, here %d)\n"
            "  -h, --help           this text\n"
            "\n"
            "output: a table on stdout, SDR in dB with 3 decimals, one row per track\n"
            "(sorted by name), then the median row and the mean SDR; progress on\n"
            "stderr (a bar on a terminal, else one line per track).\n"
            "\n"
            "examples:\n"
            "  demix eval musdb18hq/test\n"
            "  demix eval --model my.safetensors --json musdb18hq/test > scores.json\n"
            "  demix eval --estimates other_system/ musdb18hq/test\n"
            "\n"
            "exit status: 0 when every track was scored, 1 for a problem with a\n"
            "file or the model (named in the message; nothing is scored then),\n"
            "2 for a usage error.\n",
            cli_default_threads());
}

/* ----------------------------------------------------------- arguments */

enum { OPT_JSON = 256, OPT_ESTIMATES, OPT_SOURCES };

static const struct option eval_longs[] = {
    {"help", no_argument, NULL, 'h'},
    {"json", no_argument, NULL, OPT_JSON},
    {"estimates", required_argument, NULL, OPT_ESTIMATES},
    {"sources", required_argument, NULL, OPT_SOURCES},
    {"model", required_argument, NULL, 'm'},
    {"backend", required_argument, NULL, 'b'},
    {"threads", required_argument, NULL, 't'},
    {"precision", required_argument, NULL, 'p'},
    {NULL, 0, NULL, 0},
};

/* 0: parsed; -1: --help was printed (exit 0); else the exit status. */
static int parse_args(int argc, char **argv, eval_options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = DEMIX_BACKEND_AUTO;
    o->precision = DEMIX_PRECISION_DEFAULT;
    o->threads = cli_default_threads();
    int c;
    cli_args a;
    cli_args_init(&a);
    while ((c = cli_args_next(&a, argc, argv, "hm:b:t:p:", eval_longs)) != -1) {
        const char *v = a.value;
        /* "-" names no folder: an unknown option, as it always was. */
        if (c == CLI_OPERAND && !a.operands_only && strcmp(v, "-") == 0)
            c = CLI_UNKNOWN;
        switch (c) {
        case CLI_OPERAND:
            if (o->dataset_dir) {
                fprintf(stderr, "demix eval: one DATASET_DIR only (got '%s' "
                                "and '%s')\n", o->dataset_dir, v);
                return DEMIX_EXIT_USAGE;
            }
            o->dataset_dir = v;
            break;
        case 'h':
            cmd_eval_usage(stdout);
            return -1;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_ESTIMATES:
            o->estimates_dir = v;
            break;
        case OPT_SOURCES:
            o->sources = v;
            break;
        case 'm':
            o->model_path = v;
            o->model_only_option = "--model";
            break;
        case 'b':
            if (demix_backend_parse(v, &o->backend)) {
                fprintf(stderr, "demix eval: --backend must be auto, cpu or "
                                "cuda (got '%s')\n", v);
                return DEMIX_EXIT_USAGE;
            }
            o->model_only_option = "--backend";
            break;
        case 't':
            if (cli_int("eval", "--threads", v, 0,
                        DEMIX_THREADPOOL_MAX_THREADS, &o->threads))
                return DEMIX_EXIT_USAGE;
            if (o->threads == 0)
                o->threads = cli_default_threads();
            o->model_only_option = "--threads";
            break;
        case 'p':
            if (cli_precision("eval", v, &o->precision))
                return DEMIX_EXIT_USAGE;
            o->model_only_option = "--precision";
            break;
        case CLI_MISSING:
            return DEMIX_EXIT_USAGE;
        default:
            fprintf(stderr, "demix eval: unknown option '%s' (see demix help "
                            "eval)\n", v);
            return DEMIX_EXIT_USAGE;
        }
    }
    if (!o->dataset_dir) {
        fprintf(stderr, "demix eval: no DATASET_DIR\n\n");
        cmd_eval_usage(stderr);
        return DEMIX_EXIT_USAGE;
    }
    if (o->estimates_dir && o->model_only_option) {
        fprintf(stderr, "demix eval: %s has no use with --estimates (no model "
                        "runs)\n", o->model_only_option);
        return DEMIX_EXIT_USAGE;
    }
    if (o->estimates_dir && !o->estimates_dir[0]) {
        fprintf(stderr, "demix eval: --estimates needs a folder name\n");
        return DEMIX_EXIT_USAGE;
    }
    return 0;
}

/* --sources "vocals,drums" into list; with a model, each must be one of
 * its sources. 0, or -1 after printing why. */
static int parse_sources(const char *text, const demix_model_config *cfg,
                         source_list *list)
{
    list->count = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= DEMIX_SOURCE_NAME_BYTES ||
            memchr(p, '/', len)) {
            fprintf(stderr, "demix eval: --sources: '%.*s' is not a source "
                            "name (1 to %d characters, no '/')\n",
                    (int)len, p, DEMIX_SOURCE_NAME_BYTES - 1);
            return -1;
        }
        int model_index = list->count;
        if (cfg) {
            model_index = -1;
            for (int t = 0; t < cfg->num_sources; t++)
                if (strlen(cfg->source_names[t]) == len &&
                    strncmp(cfg->source_names[t], p, len) == 0)
                    model_index = t;
            if (model_index < 0) {
                fprintf(stderr, "demix eval: --sources: the model has no "
                                "source '%.*s'; its sources are:", (int)len, p);
                for (int t = 0; t < cfg->num_sources; t++)
                    fprintf(stderr, "%s %s", t ? "," : "",
                            cfg->source_names[t]);
                fputc('\n', stderr);
                return -1;
            }
        }
        for (int k = 0; k < list->count; k++)
            if (strlen(list->names[k]) == len &&
                strncmp(list->names[k], p, len) == 0) {
                fprintf(stderr, "demix eval: --sources names '%.*s' twice\n",
                        (int)len, p);
                return -1;
            }
        if (list->count == DEMIX_MAX_SOURCES) {
            fprintf(stderr, "demix eval: --sources: at most %d sources\n",
                    DEMIX_MAX_SOURCES);
            return -1;
        }
        memcpy(list->names[list->count], p, len);
        list->names[list->count][len] = '\0';
        list->model_index[list->count] = model_index;
        list->count++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* ------------------------------------------------------------- scoring */

/* Read exactly n frames of r (both references and estimates must last as
 * long as the mixture: the check made sure of it, this keeps a decoder
 * that stops early from going unnoticed). */
static int read_frames(audio_reader *r, const char *path, float *buf,
                       size_t n, char *err, size_t err_cap)
{
    int channels = audio_reader_info(r)->channels;
    size_t got = 0;
    while (got < n) {
        size_t k = audio_reader_read(r, buf + got * (size_t)channels, n - got);
        if (k == 0)
            break;
        got += k;
    }
    if (got == n)
        return DEMIX_OK;
    if (audio_reader_error(r)[0])
        snprintf(err, err_cap, "%s: read failed: %s", path,
                 audio_reader_error(r));
    else
        snprintf(err, err_cap, "%s: ended early, shorter than its mixture",
                 path);
    return DEMIX_EFORMAT;
}

/* After the last frame: the file must have nothing more. */
static int check_at_end(audio_reader *r, const char *path, float *buf,
                        char *err, size_t err_cap)
{
    if (audio_reader_read(r, buf, 1) == 0 && !audio_reader_error(r)[0])
        return DEMIX_OK;
    snprintf(err, err_cap, "%s: %s", path,
             audio_reader_error(r)[0] ? audio_reader_error(r)
                                      : "longer than its mixture");
    return DEMIX_EFORMAT;
}

static void fill_sdr(const eval_track *t, const sdr_sum *sums,
                     const source_list *sources, int by_model_index,
                     track_scores *out)
{
    for (int k = 0; k < sources->count; k++) {
        if (!t->ref[k].present) {
            out->sdr_db[k] = NAN;
            continue;
        }
        int i = by_model_index ? sources->model_index[k] : k;
        out->sdr_db[k] = sdr_sum_db(&sums[i]);
    }
}

/* --estimates: stream each reference with its estimate. */
static int score_estimates(const eval_track *t, const source_list *sources,
                           track_scores *out)
{
    sdr_sum sums[DEMIX_MAX_SOURCES];
    char err[EVAL_PATH_BYTES + 1024];
    size_t chunk_samples =
        (size_t)READ_CHUNK_FRAMES * (size_t)t->mixture.info.channels;
    float *ref_buf = malloc(chunk_samples * sizeof *ref_buf);
    float *est_buf = malloc(chunk_samples * sizeof *est_buf);
    if (!ref_buf || !est_buf) {
        cli_error("out of memory");
        free(ref_buf);
        free(est_buf);
        return -1;
    }
    int rc = DEMIX_OK;
    for (int k = 0; k < sources->count && rc == DEMIX_OK; k++) {
        sdr_sum_init(&sums[k]);
        if (!t->ref[k].present)
            continue;
        audio_reader *ref = NULL, *est = NULL;
        rc = audio_reader_open(t->ref[k].path, &ref, err, sizeof err);
        if (rc == DEMIX_OK)
            rc = audio_reader_open(t->est[k].path, &est, err, sizeof err);
        int channels = t->mixture.info.channels;
        int64_t left = t->mixture.info.frames;
        while (rc == DEMIX_OK && left > 0) {
            size_t n = left < READ_CHUNK_FRAMES ? (size_t)left
                                                : READ_CHUNK_FRAMES;
            rc = read_frames(ref, t->ref[k].path, ref_buf, n, err, sizeof err);
            if (rc == DEMIX_OK)
                rc = read_frames(est, t->est[k].path, est_buf, n, err,
                                 sizeof err);
            if (rc == DEMIX_OK)
                sdr_sum_add(&sums[k], ref_buf, est_buf, n * (size_t)channels);
            left -= (int64_t)n;
        }
        if (rc == DEMIX_OK)
            rc = check_at_end(ref, t->ref[k].path, ref_buf, err, sizeof err);
        if (rc == DEMIX_OK)
            rc = check_at_end(est, t->est[k].path, est_buf, err, sizeof err);
        audio_reader_close(ref);
        audio_reader_close(est);
    }
    free(ref_buf);
    free(est_buf);
    if (rc) {
        cli_error("%s", err);
        return -1;
    }
    fill_sdr(t, sums, sources, 0, out);
    return 0;
}

/* separate_signal's output of one source: score it against the same
 * frames of the reference. */
static int scorer_emit(void *user, int source, const float *frames,
                       size_t n_frames)
{
    scorer *sc = user;
    audio_reader *ref = sc->ref[source];
    if (!ref)
        return DEMIX_OK; /* not scored (the mask keeps these out) */
    size_t chunk = READ_CHUNK_FRAMES;
    while (n_frames > 0) {
        size_t n = n_frames < chunk ? n_frames : chunk;
        int rc = read_frames(ref, sc->ref_path[source], sc->buf, n, sc->err,
                             sizeof sc->err);
        if (rc)
            return rc;
        sdr_sum_add(&sc->sum[source], sc->buf, frames,
                    n * (size_t)sc->channels);
        frames += n * (size_t)sc->channels;
        n_frames -= n;
    }
    return DEMIX_OK;
}

/* Separate one track with the model and score it as it comes out. */
static int score_with_model(const eval_track *t, const source_list *sources,
                            model_run *m, progress *bar, double done_s,
                            track_scores *out)
{
    scorer *sc = calloc(1, sizeof *sc);
    if (!sc) {
        cli_error("out of memory");
        return -1;
    }
    sc->channels = t->mixture.info.channels;
    unsigned mask = 0;
    int rc = DEMIX_OK;
    for (int k = 0; k < sources->count && rc == DEMIX_OK; k++) {
        int i = sources->model_index[k];
        sdr_sum_init(&sc->sum[i]);
        if (!t->ref[k].present)
            continue;
        mask |= 1u << i;
        sc->ref_path[i] = t->ref[k].path;
        rc = audio_reader_open(t->ref[k].path, &sc->ref[i], sc->err,
                               sizeof sc->err);
    }
    audio_reader *mix = NULL;
    separate_signal *sig = NULL;
    if (rc == DEMIX_OK && mask == 0) {
        /* Every source is silent here: all n/a, nothing to separate. */
        fill_sdr(t, sc->sum, sources, 1, out);
        free(sc);
        return 0;
    }
    if (rc == DEMIX_OK)
        rc = audio_reader_open(t->mixture.path, &mix, sc->err, sizeof sc->err);
    if (rc == DEMIX_OK) {
        separate_signal_params p = {
            .in_rate_hz = t->mixture.info.rate_hz,
            .in_channels = t->mixture.info.channels,
            .source_mask = mask,
            .emit = scorer_emit,
            .user = sc,
        };
        char why[512];
        rc = separate_signal_create(m->cfg, &p, &sig, why, sizeof why);
        if (rc)
            snprintf(sc->err, sizeof sc->err, "%s: %s", t->mixture.path, why);
    }
    if (rc == DEMIX_OK && demix_engine_reset_slot(m->engine, m->slot)) {
        snprintf(sc->err, sizeof sc->err, "cannot reset the engine slot: %s",
                 demix_engine_last_error(m->engine));
        rc = DEMIX_EDEVICE;
    }
    float read_buf[READ_CHUNK_FRAMES * MAX_CHANNELS];
    int eof = 0;
    while (rc == DEMIX_OK && !separate_signal_done(sig)) {
        /* Read until the signal has a hop for the engine or the input ends. */
        while (rc == DEMIX_OK && !eof && !separate_signal_hop_ready(sig)) {
            size_t n = audio_reader_read(mix, read_buf, READ_CHUNK_FRAMES);
            if (n > 0) {
                rc = separate_signal_push(sig, read_buf, n);
            } else if (audio_reader_error(mix)[0]) {
                snprintf(sc->err, sizeof sc->err, "%s: read failed: %s",
                         t->mixture.path, audio_reader_error(mix));
                rc = DEMIX_EFORMAT;
            } else {
                eof = 1;
                rc = separate_signal_finish(sig);
            }
        }
        if (rc || separate_signal_done(sig))
            break;
        int stepped = 0;
        char err[512];
        rc = separate_signal_step(m->engine, &sig, &m->slot, 1, m->in_buf,
                                  m->out_buf, &m->slot_buf, &stepped, err,
                                  sizeof err);
        if (rc) {
            snprintf(sc->err, sizeof sc->err, "engine step failed: %s", err);
            break;
        }
        rc = separate_signal_status(sig);
        if (rc == DEMIX_OK && stepped == 0) {
            snprintf(sc->err, sizeof sc->err, "%s: the separation stalled "
                     "(no hop ready before the end)", t->mixture.path);
            rc = DEMIX_EARG;
        }
        progress_update(bar,
                        done_s + (double)separate_signal_frames_out(sig) /
                                     t->mixture.info.rate_hz,
                        t->name);
    }
    if (rc && !sc->err[0] && sig)
        snprintf(sc->err, sizeof sc->err, "%s: %s", t->mixture.path,
                 separate_signal_error(sig));
    for (int i = 0; i < DEMIX_MAX_SOURCES && rc == DEMIX_OK; i++)
        if (sc->ref[i])
            rc = check_at_end(sc->ref[i], sc->ref_path[i], sc->buf, sc->err,
                              sizeof sc->err);
    if (rc == DEMIX_OK)
        fill_sdr(t, sc->sum, sources, 1, out);
    else
        cli_error("%s", sc->err);
    separate_signal_destroy(sig);
    audio_reader_close(mix);
    for (int i = 0; i < DEMIX_MAX_SOURCES; i++)
        audio_reader_close(sc->ref[i]);
    free(sc);
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------- the model */

static int model_run_start(model_run *m, const char *model_path,
                           const eval_options *o)
{
    demix_engine_options eo;
    demix_engine_options_init(&eo);
    eo.backend = o->backend;
    eo.precision = o->precision;
    eo.max_slots = 1;
    if (cli_threadpool((int)o->threads, &m->pool))
        return -1;
    eo.pool = m->pool;
    char err[1024] = "";
    if (demix_engine_create(m->model, &eo, &m->engine, err, sizeof err)) {
        cli_error("cannot create the engine: %s", err);
        return -1;
    }
    fprintf(stderr, "demix: model: %s\n", model_path);
    fprintf(stderr, "demix: backend: %s\n", demix_engine_describe(m->engine));
    if (err[0])
        fprintf(stderr, "demix: %s\n", err);
    if (demix_engine_open_slot(m->engine, &m->slot)) {
        cli_error("cannot open an engine slot: %s",
                  demix_engine_last_error(m->engine));
        return -1;
    }
    size_t in_hop = (size_t)m->cfg->channels * (size_t)m->cfg->hop_samples;
    m->in_buf = malloc(in_hop * sizeof *m->in_buf);
    m->out_buf = malloc(in_hop * (size_t)m->cfg->num_sources *
                        sizeof *m->out_buf);
    if (!m->in_buf || !m->out_buf) {
        cli_error("out of memory");
        return -1;
    }
    return 0;
}

static void model_run_stop(model_run *m)
{
    free(m->in_buf);
    free(m->out_buf);
    demix_engine_destroy(m->engine);
    demix_threadpool_destroy(m->pool);
    demix_model_destroy(m->model);
}

/* ----------------------------------------------------------------- run */

/* The sources scored: --sources, else the model's, else the default list. */
static int choose_sources(const eval_options *o, const demix_model_config *cfg,
                          source_list *sources)
{
    memset(sources, 0, sizeof *sources);
    if (o->sources)
        return parse_sources(o->sources, cfg, sources);
    int count = cfg ? cfg->num_sources
                    : (int)(sizeof default_sources / sizeof *default_sources);
    for (int k = 0; k < count; k++) {
        snprintf(sources->names[k], sizeof sources->names[k], "%s",
                 cfg ? cfg->source_names[k] : default_sources[k]);
        sources->model_index[k] = k;
    }
    sources->count = count;
    return 0;
}

/* The tracks of the data set, every one checked; -1 (printed) when any
 * cannot be scored. *total_s: the mixtures' length in seconds. */
static int load_tracks(const eval_options *o, const source_list *sources,
                       eval_track **out, double *total_s)
{
    int n_tracks = eval_dataset_list(o->dataset_dir, out);
    if (n_tracks < 0)
        return -1;
    int bad_tracks = 0;
    *total_s = 0.0;
    for (int i = 0; i < n_tracks; i++) {
        eval_track *t = &(*out)[i];
        if (eval_dataset_check_track(
                t, o->dataset_dir, o->estimates_dir,
                (const char(*)[DEMIX_SOURCE_NAME_BYTES])sources->names,
                sources->count, o->estimates_dir ? INT_MAX : MAX_CHANNELS))
            bad_tracks++;
        else
            *total_s += (double)t->mixture.info.frames / t->mixture.info.rate_hz;
    }
    if (bad_tracks) {
        cli_error("%d of %d tracks in %s cannot be scored (see above); "
                  "nothing was scored", bad_tracks, n_tracks, o->dataset_dir);
        free(*out);
        *out = NULL;
        return -1;
    }
    return n_tracks;
}

/* The medians, the mean, and the table or the JSON. */
static int print_results(const eval_options *o, const eval_track *tracks,
                         const track_scores *scores, int n_tracks,
                         const source_list *sources, const char *model_path,
                         const demix_engine *engine)
{
    double medians[DEMIX_MAX_SOURCES];
    double *column = malloc((size_t)n_tracks * sizeof *column);
    double *scratch = malloc((size_t)n_tracks * sizeof *scratch);
    if (!column || !scratch) {
        cli_error("out of memory");
        free(column);
        free(scratch);
        return -1;
    }
    for (int k = 0; k < sources->count; k++) {
        for (int i = 0; i < n_tracks; i++)
            column[i] = scores[i].sdr_db[k];
        medians[k] = sdr_median(column, (size_t)n_tracks, scratch);
    }
    free(column);
    free(scratch);
    double mean = sdr_mean(medians, (size_t)sources->count);
    if (o->json)
        return eval_report_json(tracks, scores, n_tracks, sources, medians, mean,
                          model_path, engine, o->estimates_dir);
    eval_report_table(tracks, scores, n_tracks, sources, medians, mean);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    eval_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    model_run m;
    memset(&m, 0, sizeof m);
    const char *model_path = NULL;
    char model_buf[EVAL_PATH_BYTES];
    if (!o.estimates_dir) {
        model_path = model_choice_path(o.model_path, model_buf,
                                       sizeof model_buf);
        if (!model_path || model_choice_load(model_path, &m.model))
            return 1;
        m.cfg = demix_model_get_config(m.model);
    }
    source_list sources;
    if (choose_sources(&o, m.cfg, &sources)) {
        demix_model_destroy(m.model);
        return DEMIX_EXIT_USAGE;
    }

    /* Check every track before any work. */
    eval_track *tracks = NULL;
    double total_s = 0.0;
    int n_tracks = load_tracks(&o, &sources, &tracks, &total_s);
    track_scores *scores =
        n_tracks > 0 ? calloc((size_t)n_tracks, sizeof *scores) : NULL;
    if (n_tracks > 0 && !scores)
        cli_error("out of memory");
    if (!scores ||
        (!o.estimates_dir && model_run_start(&m, model_path, &o))) {
        model_run_stop(&m);
        free(scores);
        free(tracks);
        return 1;
    }

    progress bar;
    progress_init(&bar, stderr, total_s);
    double done_s = 0.0;
    int failed = 0;
    for (int i = 0; i < n_tracks && !failed; i++) {
        const eval_track *t = &tracks[i];
        int r = o.estimates_dir
                    ? score_estimates(t, &sources, &scores[i])
                    : score_with_model(t, &sources, &m, &bar, done_s,
                                       &scores[i]);
        failed = r != 0;
        done_s += (double)t->mixture.info.frames / t->mixture.info.rate_hz;
        if (failed) {
            progress_clear(&bar);
            break;
        }
        progress_update(&bar, done_s, t->name);
        if (!bar.enabled) {
            char summary[DEMIX_MAX_SOURCES * (DEMIX_SOURCE_NAME_BYTES + 16)];
            eval_report_track_line(&scores[i], &sources, summary, sizeof summary);
            fprintf(stderr, "scored %d/%d %s: %s\n", i + 1, n_tracks, t->name,
                    summary);
        }
    }
    progress_finish(&bar);

    if (!failed && print_results(&o, tracks, scores, n_tracks, &sources,
                                 model_path, m.engine))
        failed = 1;
    if (fflush(stdout) != 0) {
        cli_error("cannot write the results: %s", strerror(errno));
        failed = 1;
    }
    model_run_stop(&m);
    free(scores);
    free(tracks);
    return failed ? 1 : 0;
}
