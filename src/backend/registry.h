/* The backend registry: creating a backend by name, and each backend's own constructor. This is the one place
 * above the backends' folders that knows which concrete backends exist and which are built in; everything else
 * sees only the op table (tensor/backend.h). */
#ifndef SYNCO_BACKEND_REGISTRY_H
#define SYNCO_BACKEND_REGISTRY_H

#include <stddef.h>

#include "synco.h"
#include "tensor/backend.h"

/* By name: "cpu" (oneDNN plus the project's own CPU kernels; alias "onednn"), "ref", "strict", "cuda[:N]", or "auto"
 * (cpu when built with oneDNN, else ref). */
synco_status synco_backend_create(const char *name, synco_backend **out);
/* SYNCO_ERR_ARG, with the names there are, unless name is one (NULL, auto, cpu, ref, strict, cuda, cuda:...). */
synco_status synco_backend_name_check(const char *name);
void synco_backend_destroy(synco_backend *be);
/* The backend name a rank uses: "cuda" (no index) on a rank whose launcher gives it local rank r (r >= 0) on a node
 * with `gpus` GPUs becomes "cuda:<r mod gpus>" in buf, so that the ranks of a node spread over its GPUs; every other
 * name, or no local rank or no GPU, stays as it is. */
const char *synco_backend_rank_name(const char *name, int local_rank, int gpus, char *buf, size_t n);
/* GPUs this build can use on this machine (0 without CUDA). */
int synco_backend_gpu_count(void);

/* --precision of the commands: "fp32" (the default everywhere), "tf32" (a GPU's tensor cores for fp32) or "bf16"
 * (NULL = fp32), for the backend named `backend` (--backend; NULL: the default). bf16 is refused, with the reason and
 * what to use instead, unless a backend built in runs it on this machine (SYNCO_CAP_BF16: oneDNN on a CPU with
 * AVX512-BF16 or AMX); for a cuda backend the GPU is asked when the backend is made (compute capability 8.0 and up).
 * Checked before any backend is made, so that a command can report it with its other argument problems. Under every precision the parameters, gradients, optimizer
 * state, BN statistics, the loss, the queue and the logits are fp32; on a CPU bf16 changes only what the convolutions
 * and linear layers multiply (autocast's rule), on a GPU the activations between layers are bf16 too (NHWC, as
 * autocast with channels_last keeps them). */
synco_status synco_backend_precision(const char *backend, const char *precision);
/* Applies --precision to a backend just created, before anything is planned on it: "bf16" makes the cpu or cuda
 * backend's convolutions and linear layers compute in bf16 with fp32 accumulation (refused on any other backend, and
 * where the CPU or GPU lacks bf16); "tf32" turns on a GPU's TF32 tensor cores for fp32 convolutions and GEMMs (refused on CPU
 * backends, which have none); "fp32" asks for strict fp32 (a GPU's TF32 off); NULL keeps the backend's own mode (on
 * a GPU: SYNCO_CUDA_TF32=1, else strict; on a CPU fp32). */
synco_status synco_backend_set_precision(synco_backend *be, const char *precision);
/* The precision a run's header line names (NULL: fp32): the name itself, but for bf16 on a cpu backend that runs its
 * convolutions in fp32 (this CPU's bf16 kernels the slower) a note that says so. */
const char *synco_backend_precision_label(const synco_backend *be, const char *precision);
/* Before anything is planned, for a run whose thread count changes between steps (--adapt-threads): the sums that
 * would otherwise be split by thread count are split as n threads would split them, whatever count runs them, so the
 * results do not depend on the count (on the cpu backend: the convolutions' weight gradients, summed in n fixed batch
 * chunks). n < 2: off. Other backends: nothing to do. */
synco_status synco_backend_fixed_sums(synco_backend *be, int n);

/* What `synco info` reports about the backends: "backends: ..." (those built in, and the default), then, with
 * oneDNN, the CPU it runs on and what that gives (bf16, the convolution path): whole lines into buf. */
void synco_backend_describe(char *buf, size_t n);

/* Marks the part of a run an external profiler records (a GPU backend: cudaProfilerStart/Stop, for Nsight Compute's
 * --profile-from-start off); nothing on the CPU backends. */
void synco_backend_profiler(synco_backend *be, int on);

/* The backends, directly (tests that need one particular backend). */
synco_status synco_backend_ref_create(synco_backend **out);
/* The reference ops over memory the host cannot touch (a test backend that faults where a GPU would:
 * backend/strict/strict_backend.c). */
synco_status synco_backend_strict_create(synco_backend **out);
/* What a strict backend has counted since it was created: downloads (copies to host memory) and waits (sync), the
 * two things that make a GPU's host wait; a step that must not wait for the GPU is tested by them. */
void synco_backend_strict_counts(synco_backend *be, long *downloads, long *syncs);
/* bf16 on (1) or off (0) for a strict backend, before anything is planned: the cuda backend's bf16 arithmetic emulated
 * over the reference ops (synco_backend_bf16_emul_create), so the CPU runs what a GPU runs under --precision bf16. */
synco_status synco_backend_strict_bf16(synco_backend *be, int on);
/* That emulation as a backend of its own, over host memory (backend/strict/bf16_emul.c). */
synco_status synco_backend_bf16_emul_create(synco_backend **out);
#ifdef SYNCO_HAVE_ONEDNN
synco_status synco_backend_cpu_create(synco_backend **out);
/* bf16 on (1) or off (0) for the cpu backend be, before anything is planned (synco_backend_set_precision). */
synco_status synco_backend_cpu_bf16(synco_backend *be, int on);
/* After bf16 is on: 1 when the convolutions multiply in bf16 too, 0 when they run fp32 kernels, this CPU's bf16 ones
 * being the slower (cpu_backend.c's bf16_conv_pays; SYNCO_BF16_CONV=bf16|fp32 chooses). */
int synco_backend_cpu_bf16_conv(const synco_backend *be);
/* See synco_backend_fixed_sums. */
synco_status synco_backend_cpu_sum_threads(synco_backend *be, int n);
#endif

#endif
