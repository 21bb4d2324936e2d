/*
 * cuda_absent.c - the CUDA backend slot of a build without CUDA: there is
 * no backend, and engine.c falls back to the CPU (or reports why).
 */
#include "engine_impl.h"

const demix_backend_ops *demix__cuda_backend(void)
{
    return NULL;
}
