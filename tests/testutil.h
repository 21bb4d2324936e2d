/*
 * testutil.h - helpers shared by the cmocka tests: reproducible random
 * numbers with the seed taken from the environment (DEMIX_TEST_SEED) and
 * printed, relative errors, and paths to the committed test data.
 */
#ifndef DEMIX_TESTUTIL_H
#define DEMIX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* The run's seed: DEMIX_TEST_SEED if set, else from the clock. Printed once
 * on first use so a failure can be replayed. */
uint64_t demix_test_seed(void);

/* splitmix64 stream. */
uint64_t demix_test_rand(uint64_t *state);
/* Uniform in [-1, 1). */
float demix_test_uniform(uint64_t *state);
void demix_test_fill_uniform(float *x, size_t n, float scale, uint64_t *state);

/* ||a - b||_2 / max(||b||_2, tiny). */
double demix_test_rel_error(const float *a, const float *b, size_t n);
/* max |a - b|. */
double demix_test_max_abs_diff(const float *a, const float *b, size_t n);

/* Path of a file under tests/data (DEMIX_TEST_DATA), in a static buffer. */
const char *demix_test_data_path(const char *name);

/* A fresh temporary directory (mkdtemp), path in a static buffer per call
 * slot; removed with demix_test_rmtree. */
const char *demix_test_tmpdir(void);
void demix_test_rmtree(const char *path);

/* Run a shell command, return its exit status (or -1). */
int demix_test_system(const char *fmt, ...);

/* Run the program `bin` with the shell-quoted argument string `args`,
 * standard output and error going to files in `dir` and read back into
 * out / err (truncated to their capacity; out may be NULL to discard it).
 * Prints the command, status and output as cmocka messages; returns the
 * exit status (or -1). */
int demix_test_run_tool(const char *bin, const char *args, const char *dir,
                        char *out, size_t out_cap, char *err, size_t err_cap);

#endif
