/* The --precision check shared by the commands (bench, pretrain, the evaluation commands): parses "fp32" /
 * "bf16" and refuses bf16 with a clear message where this CPU cannot run it. bf16 here means oneDNN's
 * AVX-512-BF16 kernels (bf16 activations and weights in the convolutions, fp32 master weights, loss and
 * optimizer); on a CPU below avx512_core_bf16 oneDNN would only emulate it, slower than fp32, so it is refused.
 * Header-only so that it works in builds without oneDNN (where bf16 is always refused). The bf16 kernels
 * themselves are not wired through the encoder yet: on a CPU that passes this check, the caller still has to
 * refuse until they are (synco_cpu_bf16_wired). */
#ifndef SYNCO_BACKEND_CPU_PRECISION_H
#define SYNCO_BACKEND_CPU_PRECISION_H

#include <string.h>

#include "base/status.h"
#include "tensor/tensor.h"
#ifdef SYNCO_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#endif

/* 1 once the encoder runs its convolutions in bf16; until then every bf16 request is refused. */
#define synco_cpu_bf16_wired 0

/* precision: "fp32" or "bf16" (NULL = fp32). On success *dt is the activation dtype. */
static inline synco_status synco_cpu_precision_check(const char *precision, synco_dtype *dt) {
  if (!precision || !strcmp(precision, "fp32")) {
    if (dt) *dt = SYNCO_F32;
    return SYNCO_OK;
  }
  if (strcmp(precision, "bf16"))
    return synco_fail(SYNCO_ERR_ARG, "--precision %s: expected fp32 or bf16", precision);
#ifdef SYNCO_HAVE_ONEDNN
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16)
    return synco_fail(SYNCO_ERR_UNSUPPORTED,
                      "--precision bf16 needs a CPU with AVX512-BF16 (oneDNN avx512_core_bf16); this one runs %s: "
                      "use --precision fp32",
                      dnnl_cpu_isa2str(isa));
  if (!synco_cpu_bf16_wired)
    return synco_fail(SYNCO_ERR_UNSUPPORTED,
                      "--precision bf16: this CPU supports it (%s) but this build runs fp32 only so far: use "
                      "--precision fp32",
                      dnnl_cpu_isa2str(isa));
  if (dt) *dt = SYNCO_BF16;
  return SYNCO_OK;
#else
  return synco_fail(SYNCO_ERR_UNSUPPORTED, "--precision bf16 needs the oneDNN backend (this build has none): use "
                                           "--precision fp32");
#endif
}

#endif
