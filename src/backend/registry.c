/* The backend registry (registry.h): a backend by name, and the process-wide setup every backend relies on. */
#include "backend/registry.h"

#include <stdio.h>
#include <string.h>

#include <cblas.h>
#ifdef SYNCO_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#endif

#include "backend/host_gemm.h"
#include "base/status.h"
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

/* OpenBLAS (pthread flavour) and OpenMP both keep spinning worker threads; on a few cores they steal time
 * from each other (measured: the synthetic-negative cost went from 7.5 to 27 ms per step on 2 cores). The
 * compute path parallelizes with OpenMP, so BLAS calls run on one thread. */
static void single_threaded_blas(void) { openblas_set_num_threads(1); }

synco_status synco_backend_name_check(const char *name) {
  static const char *const known[] = {"auto", "cpu", "onednn", "ref", "strict"};
  if (!name) return SYNCO_OK;
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (!strcmp(name, known[i])) return SYNCO_OK;
  if (!strncmp(name, "cuda", 4) && (!name[4] || name[4] == ':')) return SYNCO_OK; /* its device: when made */
  return synco_fail(SYNCO_ERR_ARG, "unknown backend '%s' (expected cpu, ref, strict, cuda or auto)", name);
}

synco_status synco_backend_create(const char *name, synco_backend **out) {
  *out = NULL;
  SYNCO_TRY(synco_backend_name_check(name));
  single_threaded_blas();
  SYNCO_TRY(synco_host_sgemm_check_env());
  if (!name || !strcmp(name, "auto")) {
#ifdef SYNCO_HAVE_ONEDNN
    return synco_backend_cpu_create(out);
#else
    return synco_backend_ref_create(out);
#endif
  }
  if (!strcmp(name, "ref")) return synco_backend_ref_create(out);
  if (!strcmp(name, "strict")) return synco_backend_strict_create(out);
  if (!strcmp(name, "cpu") || !strcmp(name, "onednn")) { /* onednn: its name until December 2026 */
#ifdef SYNCO_HAVE_ONEDNN
    return synco_backend_cpu_create(out);
#else
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "backend '%s' is not built in (it needs oneDNN: install libdnnl-dev and rebuild)", name);
#endif
  }
#ifdef SYNCO_HAVE_CUDA
  int cuda_device;
  if (synco_cuda_device_name(name, &cuda_device)) { /* "cuda", "cuda:N" */
    if (cuda_device < 0) return synco_fail(SYNCO_ERR_ARG, "backend '%s': expected cuda or cuda:N", name);
    return synco_backend_cuda_create(cuda_device, out);
  }
#else
  if (!strncmp(name, "cuda", 4) && (!name[4] || name[4] == ':'))
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "backend '%s' is not built in (rebuild with make CUDA=1)", name);
#endif
  return synco_fail(SYNCO_ERR_ARG, "backend '%s': not available", name); /* past synco_backend_name_check */
}

const char *synco_backend_rank_name(const char *name, int local_rank, int gpus, char *buf, size_t n) {
  if (!name || strcmp(name, "cuda") || local_rank < 0 || gpus <= 0) return name;
  snprintf(buf, n, "cuda:%d", local_rank % gpus);
  return buf;
}

int synco_backend_gpu_count(void) {
#ifdef SYNCO_HAVE_CUDA
  return synco_cuda_device_count();
#else
  return 0;
#endif
}

void synco_backend_destroy(synco_backend *be) {
  if (be && be->destroy) be->destroy(be);
}

/* bf16 here means oneDNN's bf16 kernels on a CPU that has them (AVX512-BF16, AMX), or a GPU's bf16 tensor cores:
 * bf16 copies of the inputs of the convolutions and linear layers, fp32 everywhere else; the reference backend is fp32
 * only. The messages name the CPU as oneDNN does. */
synco_status synco_backend_precision(const char *backend, const char *precision) {
  SYNCO_TRY(synco_backend_name_check(backend)); /* a misspelt --device is a usage error, found with the flags */
  if (!precision || !strcmp(precision, "fp32")) return SYNCO_OK;
  if (strcmp(precision, "bf16") && strcmp(precision, "tf32"))
    return synco_fail(SYNCO_ERR_ARG, "--precision %s: expected fp32, tf32 or bf16", precision);
#ifdef SYNCO_HAVE_CUDA
  int cuda_device;
  if (backend && synco_cuda_device_name(backend, &cuda_device)) return SYNCO_OK; /* the GPU's own check, when made */
#endif
  /* a CPU backend (auto is one): the backend asked for says whether it computes in that precision, with the flags
   * (bf16 on ref, tf32 on any CPU were refused only once the command had started, exit 1) */
  synco_backend *be = NULL;
  SYNCO_TRY(synco_backend_create(backend, &be));
  const synco_status s = synco_backend_set_precision(be, precision);
  synco_backend_destroy(be);
  return s;
}

#ifdef SYNCO_HAVE_ONEDNN
static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
  }
}
#endif

synco_status synco_backend_set_precision(synco_backend *be, const char *precision) {
  if (!be || !precision) return SYNCO_OK;
  const int bf16 = !strcmp(precision, "bf16"), tf32 = !strcmp(precision, "tf32");
#ifdef SYNCO_HAVE_CUDA
  if (!strcmp(be->name, "cuda"))
    return synco_cuda_set_precision(be, bf16 ? SYNCO_CUDA_BF16 : tf32 ? SYNCO_CUDA_TF32 : SYNCO_CUDA_FP32);
#endif
  if (tf32)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "--precision tf32 is for GPUs (TF32 tensor cores); backend '%s' has none: "
                      "use --precision fp32", be->name);
#ifdef SYNCO_HAVE_ONEDNN
  if (!strcmp(be->name, "cpu")) return synco_backend_cpu_bf16(be, bf16);
#endif
  if (!strcmp(be->name, "strict")) return synco_backend_strict_bf16(be, bf16);
  if (bf16)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "--precision bf16 runs on the cpu backend (a CPU with AVX512-BF16 or AMX), "
                      "on cuda, and emulated on strict; backend '%s' computes in fp32 only: use --backend cpu or "
                      "--precision fp32", be->name);
  return SYNCO_OK;
}

const char *synco_backend_precision_label(const synco_backend *be, const char *precision) {
  if (!precision) return "fp32";
#ifdef SYNCO_HAVE_ONEDNN
  if (be && !strcmp(precision, "bf16") && !strcmp(be->name, "cpu") && !synco_backend_cpu_bf16_conv(be))
    return "bf16 (the linear layers; the convolutions in fp32, faster on this CPU)";
#else
  (void)be;
#endif
  return precision;
}

synco_status synco_backend_fixed_sums(synco_backend *be, int n) {
#ifdef SYNCO_HAVE_ONEDNN
  if (be && !strcmp(be->name, "cpu")) return synco_backend_cpu_sum_threads(be, n);
#else
  (void)be, (void)n;
#endif
  return SYNCO_OK;
}

void synco_backend_profiler(synco_backend *be, int on) {
#ifdef SYNCO_HAVE_CUDA
  if (be && !strcmp(be->name, "cuda")) synco_cuda_profiler(on);
#else
  (void)be, (void)on;
#endif
}

#ifdef SYNCO_HAVE_ONEDNN
/* The kernels a bf16 ResNet-18 takes here for two of its convolutions (batch 32): a 3x3 of 64 channels at 32x32
 * (oneDNN's fp32 Winograd without AMX) and the 1x1 stride-2 shortcut from 128 to 256 channels (bf16 kernels on
 * every bf16 CPU), as "\nbf16 kernels: " and the backend's kernel log (their implementation names); nothing when
 * they cannot be planned. */
static void bf16_probe(synco_backend *be, char *out, size_t n) {
  synco_conv_op op[2] = {{.n = 32, .cin = 64, .h = 32, .w = 32, .cout = 64, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                          .oh = 32, .ow = 32, .dtype = SYNCO_F32},
                         {.n = 32, .cin = 128, .h = 16, .w = 16, .cout = 256, .kh = 1, .kw = 1, .stride = 2,
                          .pad = 0, .oh = 8, .ow = 8, .dtype = SYNCO_F32}};
  if (synco_backend_set_precision(be, "bf16") != SYNCO_OK) {
    snprintf(out, n, "\nbf16 kernels: none planned: %s", synco_last_error());
    return;
  }
  if (!be->kernels) return;
  int planned = 0;
  while (planned < 2 && be->conv_plan(be, &op[planned]) == SYNCO_OK) planned++;
  if (planned == 2) {
    const int k = snprintf(out, n, "\nbf16 kernels (ResNet-18's 3x3 of 64 channels at 32x32 and 1x1 stride-2 shortcut "
                                   "from 128 to 256 channels): ");
    if (k > 0 && (size_t)k < n) be->kernels(be, out + k, n - (size_t)k);
  }
  while (planned > 0) be->conv_release(be, &op[--planned]);
}
#endif

void synco_backend_describe(char *buf, size_t n) {
  if (!n) return;
#ifdef SYNCO_HAVE_ONEDNN
  const dnnl_version_t *v = dnnl_version();
  int k = snprintf(buf, n, "backends: cpu (oneDNN %d.%d.%d, own kernels; default), ref (plain C + OpenBLAS)\ncpu isa (oneDNN): %s\n",
                   v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()));
  if (k < 0 || (size_t)k >= n) return;
  synco_backend *be = NULL;
  if (synco_backend_cpu_create(&be) != SYNCO_OK) {
    snprintf(buf + k, n - (size_t)k, "cpu backend (oneDNN): does not start here: %s\n", synco_last_error());
    return;
  }
  const int bf16 = synco_backend_supports(be, SYNCO_CAP_BF16);
  const int wino = synco_backend_supports(be, SYNCO_CAP_WINOGRAD);
  char probe[1024] = "";
  if (bf16) bf16_probe(be, probe, sizeof probe);
  const int bf16_conv = bf16 && synco_backend_cpu_bf16_conv(be);
  synco_backend_destroy(be);
  snprintf(buf + k, n - (size_t)k, "bf16: %s%s\n3x3 stride-1 convolutions: %s\n",
           !bf16       ? "no (needs AVX512-BF16 or AMX; fp32 only)"
           : bf16_conv ? "yes, with --precision bf16 (convolutions and linear layers; the default is fp32; on AMX, the "
                         "layers of at most 16 output pixels, and backward weights up to 64, as im2col + matmul; without "
                         "AMX, layers of 8 or 24 channels on synco's direct8 (bf16), and, in fp32, which "
                         "is faster there, 3x3 stride-1 layers from 64 channels (backward weights from 32 up to 16x16 "
                         "outputs) on oneDNN's Winograd and, under 64 channels, "
                         "1x1 layers and backward weights of stride-2 layers and the CIFAR stem on oneDNN's direct "
                         "kernels; SYNCO_BF16_CONV=fp32: every convolution in fp32)"
                       : "yes, with --precision bf16 (the default is fp32), for the linear layers; the convolutions run "
                         "the fp32 kernels of an fp32 run, since on this CPU (Intel with AVX512-BF16, no AMX) oneDNN's bf16 "
                         "convolution kernels are 1.4-2.8x slower than its fp32 ones (SYNCO_BF16_CONV=bf16 runs them "
                         "anyway)",
           probe,
           wino ? "a fixed rule by ISA and channels (the default, so runs are reproducible): on AVX2 synco's Winograd, "
                  "F(4x4,3x3) for forward and backward data where the sides are multiples of 4, the layer has at most 256 "
                  "channels and the batch 1,024 output pixels, else F(2x2,3x3) from 64 channels, and F(2x2,3x3) backward "
                  "weights from 32 (SYNCO_WINO_TILE=2|4 chooses the tile); Winograd from 32 channels on AVX-512 (oneDNN's; backward weights from 16; where a batch has few output pixels, direct), "
                  "and on a Zen 4 (AMD family 19h with AVX-512) synco's F(4x4,3x3) for forward and backward data "
                  "of 16 or 24 channels from 8,192 output pixels, synco's direct8 for 8 or 24 channels "
                  "(nChw8c) on AVX-512, oneDNN direct elsewhere; on AVX-512 also synco's stem kernel for the CIFAR "
                  "stem's forward into 8 channels and synco's stride2 kernels for stride-2 layers from nChw8c into nChw16c (forwards, "
                  "and the 1x1 layer's backward passes), in fp32; SYNCO_CONV_ALGO=auto measures each shape once per "
                  "process instead, =direct|winograd|onednn-winograd|direct-fp32|direct8|gemm|stem|stride2 forces one; "
                  "`bench --json` lists the kernels chosen"
                : "oneDNN direct (SYNCO_CONV_ALGO forces a kernel; `bench --json` lists the kernels chosen)");
#else
  snprintf(buf, n, "backends: ref (plain C + OpenBLAS)\n\noneDNN: not built in (install libdnnl-dev and rebuild for the "
                   "fast CPU backend)\n");
#endif
  size_t used = strlen(buf);
  if (used < n)
    snprintf(buf + used, n - used,
             "matrix products outside the convolutions (the head, logits against the queue, kNN, linear probe): %s; "
             "the ref backend's: OpenBLAS (its %s kernels on this CPU)\n",
             synco_host_sgemm_name(), openblas_get_corename());
  used = strlen(buf);
#ifdef SYNCO_HAVE_CUDA
  int k2 = snprintf(buf + used, n - used, "cuda: built in (--backend cuda or cuda:N)\n");
  if (k2 > 0 && used + (size_t)k2 < n) synco_cuda_describe(buf + used + k2, n - used - (size_t)k2);
#else
  snprintf(buf + used, n - used, "cuda: not built in (make CUDA=1)\n");
#endif
}
