/*
 * eval_report.c - see eval_report.h.
 */
#include "eval_report.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "sdr.h"

/* "drums 5.123, bass n/a, ..." for the per-track progress line. */
void eval_report_track_line(const track_scores *t, const source_list *sources,
                            char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; k < sources->count && used < cap; k++) {
        int n;
        if (sdr_is_na(t->sdr_db[k]))
            n = snprintf(out + used, cap - used, "%s%s n/a", k ? ", " : "",
                         sources->names[k]);
        else
            n = snprintf(out + used, cap - used, "%s%s %.3f", k ? ", " : "",
                         sources->names[k], t->sdr_db[k]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static void print_cell(double db, int width)
{
    if (sdr_is_na(db))
        printf(" %*s", width, "n/a");
    else
        printf(" %*.3f", width, db);
}

void eval_report_table(const eval_track *tracks, const track_scores *scores,
                       int n_tracks, const source_list *sources,
                       const double *medians, double mean)
{
    int name_width = (int)strlen("mean SDR");
    for (int i = 0; i < n_tracks; i++)
        if ((int)strlen(tracks[i].name) > name_width)
            name_width = (int)strlen(tracks[i].name);
    int width[DEMIX_MAX_SOURCES];
    printf("%-*s", name_width, "SDR (dB)");
    for (int k = 0; k < sources->count; k++) {
        width[k] = (int)strlen(sources->names[k]);
        if (width[k] < 8)
            width[k] = 8;
        printf(" %*s", width[k], sources->names[k]);
    }
    putchar('\n');
    for (int i = 0; i < n_tracks; i++) {
        printf("%-*s", name_width, tracks[i].name);
        for (int k = 0; k < sources->count; k++)
            print_cell(scores[i].sdr_db[k], width[k]);
        putchar('\n');
    }
    printf("%-*s", name_width, "median");
    for (int k = 0; k < sources->count; k++)
        print_cell(medians[k], width[k]);
    putchar('\n');
    printf("%-*s", name_width, "mean SDR");
    print_cell(mean, width[0]);
    putchar('\n');
}

static cJSON *json_number_or_null(double v)
{
    return sdr_is_na(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

/* Add per source {name: value or null} to parent under key. */
static int json_add_per_source(cJSON *parent, const char *key,
                               const source_list *sources, const double *v)
{
    cJSON *obj = cJSON_AddObjectToObject(parent, key);
    if (!obj)
        return -1;
    for (int k = 0; k < sources->count; k++) {
        cJSON *item = json_number_or_null(v[k]);
        if (!item || !cJSON_AddItemToObject(obj, sources->names[k], item)) {
            cJSON_Delete(item);
            return -1;
        }
    }
    return 0;
}

static cJSON *json_string_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

int eval_report_json(const eval_track *tracks, const track_scores *scores,
                     int n_tracks, const source_list *sources,
                     const double *medians, double mean, const char *model_path,
                     const demix_engine *engine, const char *estimates_dir)
{
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    ok = ok &&
         cJSON_AddItemToObject(root, "model", json_string_or_null(model_path));
    ok = ok && cJSON_AddItemToObject(
                   root, "backend",
                   json_string_or_null(
                       engine ? demix_engine_backend_name(engine) : NULL));
    ok =
        ok &&
        cJSON_AddItemToObject(
            root, "engine",
            json_string_or_null(engine ? demix_engine_describe(engine) : NULL));
    ok = ok && cJSON_AddItemToObject(root, "estimates",
                                     json_string_or_null(estimates_dir));
    cJSON *names = ok ? cJSON_AddArrayToObject(root, "sources") : NULL;
    ok = ok && names;
    for (int k = 0; ok && k < sources->count; k++)
        ok = cJSON_AddItemToArray(names, cJSON_CreateString(sources->names[k]));
    cJSON *list = ok ? cJSON_AddArrayToObject(root, "tracks") : NULL;
    ok = ok && list;
    for (int i = 0; ok && i < n_tracks; i++) {
        cJSON *t = cJSON_CreateObject();
        ok = t && cJSON_AddItemToArray(list, t) &&
             cJSON_AddStringToObject(t, "name", tracks[i].name) &&
             json_add_per_source(t, "sdr", sources, scores[i].sdr_db) == 0;
    }
    ok = ok && json_add_per_source(root, "median", sources, medians) == 0;
    ok = ok && cJSON_AddItemToObject(root, "mean", json_number_or_null(mean));
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        cli_error("out of memory writing the JSON output");
        return -1;
    }
    puts(text);
    cJSON_free(text);
    return 0;
}
