/* STUB: replaced by the loader work. */
#include "model_impl.h"
#include <stdio.h>
int demix_model_load(const char *path, demix_model **out, char *err, size_t err_cap)
{ (void)path; *out = NULL; if (err && err_cap) snprintf(err, err_cap, "not implemented"); return DEMIX_EFORMAT; }
int demix_model_load_memory(const void *d, size_t n, demix_model **out, char *err, size_t err_cap)
{ (void)d; (void)n; *out = NULL; if (err && err_cap) snprintf(err, err_cap, "not implemented"); return DEMIX_EFORMAT; }
