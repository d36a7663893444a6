/* The CUDA backend (built with -DSYNCO_WITH_CUDA=ON / make CUDA=1; SYNCO_HAVE_CUDA is then defined): the op
 * table of tensor/backend.h on one NVIDIA GPU, fp32 (bf16 or TF32 convolutions by choice), cuDNN convolutions, cuBLAS GEMMs and the project's own
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
/* The GPU a CUDA backend runs on, and its CUDA stream (a cudaStream_t): an NCCL transport's collectives go there, in
 * order with the step's kernels (dist/dist.h, synco_dist_nccl_create). */
int synco_cuda_backend_device(struct synco_backend *be);
void *synco_cuda_backend_stream(struct synco_backend *be);
/* "cuda" → 0, "cuda:N" → N; returns 1 when name is a CUDA device name (even a bad one: *device = -1). */
int synco_cuda_device_name(const char *name, int *device);
/* Number of GPUs the runtime sees (0 without a GPU or driver). */
int synco_cuda_device_count(void);
/* Appends to buf (size n, NUL-terminated) one line per GPU (name, compute capability, memory) and the versions
 * of the CUDA runtime and driver, cuDNN and cuBLAS; with no GPU, says so. */
void synco_cuda_describe(char *buf, size_t n);
/* The arithmetic of the convolutions and GEMMs planned after the call (--precision):
 *  - FP32: strict fp32 (CUDNN_FMA_MATH, CUBLAS_PEDANTIC_MATH), the CPU's arithmetic to rounding;
 *  - TF32: TF32 tensor cores for the fp32 convolutions and GEMMs;
 *  - BF16: the convolutions on NHWC bf16 copies of their operands (fp32 accumulation; y, dx and dw converted back to
 *    fp32) and the linear layers' GEMMs in bf16 (CUBLAS_COMPUTE_32F_FAST_16BF); the step's GEMMs (the logits), BN,
 *    the loss, the queue and every activation between layers stay fp32. Refused before compute capability 8.0.
 * The initial mode: SYNCO_CUDA_BF16=1, else SYNCO_CUDA_TF32=1, else strict fp32. */
typedef enum { SYNCO_CUDA_FP32 = 0, SYNCO_CUDA_TF32 = 1, SYNCO_CUDA_BF16 = 2 } synco_cuda_precision;
synco_status synco_cuda_set_precision(struct synco_backend *be, synco_cuda_precision p);
/* cudaProfilerStart (on = 1) / cudaProfilerStop (on = 0): the part of a run that Nsight Compute records when started
 * with --profile-from-start off. */
void synco_cuda_profiler(int on);

#ifdef __cplusplus
}
#endif

#endif
