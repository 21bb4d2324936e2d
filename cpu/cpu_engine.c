/* STUB: replaced by the CPU backend work. */
#include "engine_impl.h"
const demix_backend_ops *demix__cpu_backend(void) { return NULL; }
