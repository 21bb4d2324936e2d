/*
 * model_choice.h - which model a demix command runs: --model PATH, else the
 * default model (DEFAULT_MODEL_FILE) looked up in a fixed order. Shared by
 * `demix separate` and `demix eval`, which must find the same default.
 *
 * Lookup order for the default: $DEMIX_MODEL (when it names a file; a
 * warning when it does not), then DEMIX_INSTALL_MODELS_DIR/default.safetensors,
 * then DEMIX_SOURCE_MODELS_DIR/default.safetensors (both set by
 * tools/CMakeLists.txt).
 *
 * Thread context: the main thread (prints to stderr).
 */
#ifndef DEMIX_MODEL_CHOICE_H
#define DEMIX_MODEL_CHOICE_H

#include <stddef.h>
#include <stdio.h>

#include "engine.h"

/* The help lines of "-m, --model PATH" with the default's places. */
void model_choice_usage(FILE *out);

/* given when not NULL, else the default model's path (written into buf).
 * NULL after printing an error naming every place looked at. */
const char *model_choice_path(const char *given, char *buf, size_t cap);

/* Load the model at path; on failure print "demix: error: cannot load
 * model ..." naming the path and return -1. The caller destroys *out. */
int model_choice_load(const char *path, demix_model **out);

#endif /* DEMIX_MODEL_CHOICE_H */
