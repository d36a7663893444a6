/* The CUDA backend (built with -DSYNCO_WITH_CUDA=ON / make CUDA=1; SYNCO_HAVE_CUDA is then defined): the op
 * table of tensor/backend.h on one NVIDIA GPU, fp32, cuDNN convolutions, cuBLAS GEMMs and the project's own
 * kernels, whose per-element and per-row bodies are the single-source headers of src/kernels/. C interface. */
#ifndef SYNCO_BACKEND_CUDA_BACKEND_H
#define SYNCO_BACKEND_CUDA_BACKEND_H

#include <stddef.h>

#include "synco.h"

#ifdef __cplusplus
extern "C" {
#endif

struct synco_backend;

/* The backend on GPU `device` (0..count-1). Fails with SYNCO_ERR_UNSUPPORTED when there is no usable GPU. */
synco_status synco_backend_cuda_create(int device, struct synco_backend **out);
/* "cuda" → 0, "cuda:N" → N; returns 1 when name is a CUDA device name (even a bad one: *device = -1). */
int synco_cuda_device_name(const char *name, int *device);
/* Number of GPUs the runtime sees (0 without a GPU or driver). */
int synco_cuda_device_count(void);
/* Appends to buf (size n, NUL-terminated) one line per GPU (name, compute capability, memory) and the versions
 * of the CUDA runtime and driver, cuDNN and cuBLAS; with no GPU, says so. */
void synco_cuda_describe(char *buf, size_t n);
/* TF32 tensor cores for fp32 convolutions and GEMMs (on = 1), or strict fp32 (0); the initial mode is
 * SYNCO_CUDA_TF32=1 or strict. Affects convolutions planned after the call. */
synco_status synco_cuda_set_tf32(struct synco_backend *be, int on);
/* cudaProfilerStart (on = 1) / cudaProfilerStop (on = 0): the part of a run that Nsight Compute records when started
 * with --profile-from-start off. */
void synco_cuda_profiler(int on);

#ifdef __cplusplus
}
#endif

#endif
