/*
 * model_choice.c - the --model / default model lookup of model_choice.h.
 *
 * Thread context: the main thread.
 */
#include "model_choice.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"

#ifndef DEMIX_SOURCE_MODELS_DIR
#define DEMIX_SOURCE_MODELS_DIR "models"
#endif
#ifndef DEMIX_INSTALL_MODELS_DIR
#define DEMIX_INSTALL_MODELS_DIR "/usr/local/share/demixd/models"
#endif
#define DEFAULT_MODEL_FILE "default.safetensors"

void model_choice_usage(FILE *out)
{
    fprintf(out,
            "  -m, --model PATH     model weights (.safetensors); default: $DEMIX_MODEL,\n"
            "                       else %s/%s,\n"
            "                       else %s/%s\n",
            DEMIX_INSTALL_MODELS_DIR, DEFAULT_MODEL_FILE,
            DEMIX_SOURCE_MODELS_DIR, DEFAULT_MODEL_FILE);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *model_choice_path(const char *given, char *buf, size_t cap)
{
    if (given)
        return given;
    if (!buf || cap == 0)
        return NULL; /* no room for a path: nothing can be found */
    const char *env = getenv("DEMIX_MODEL");
    if (env && env[0]) {
        if (file_exists(env))
            return env;
        fprintf(stderr, "demix: warning: DEMIX_MODEL=%s does not exist; "
                        "looking further\n", env);
    }
    snprintf(buf, cap, "%s/%s", DEMIX_INSTALL_MODELS_DIR, DEFAULT_MODEL_FILE);
    if (file_exists(buf))
        return buf;
    snprintf(buf, cap, "%s/%s", DEMIX_SOURCE_MODELS_DIR, DEFAULT_MODEL_FILE);
    if (file_exists(buf))
        return buf;
    cli_error("no model given and no default model found (looked at "
              "$DEMIX_MODEL, %s/%s and %s/%s): pass --model PATH",
              DEMIX_INSTALL_MODELS_DIR, DEFAULT_MODEL_FILE,
              DEMIX_SOURCE_MODELS_DIR, DEFAULT_MODEL_FILE);
    return NULL;
}

int model_choice_load(const char *path, demix_model **out)
{
    char err[1024];
    if (demix_model_load(path, out, err, sizeof err) == DEMIX_OK)
        return 0;
    /* The loader's sentence usually names the path already. */
    if (strstr(err, path))
        cli_error("cannot load model: %s", err);
    else
        cli_error("cannot load model %s: %s", path, err);
    return -1;
}
