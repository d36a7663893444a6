/* Whole MoCo-v2 and SynCo steps through the reference backend and through the CUDA backend on the same inputs and
 * weights, one step at a time from the same state, the GPU's state uploaded and its tensors downloaded
 * (tests/unit/step_compare.h says what is compared and within what: the same test and tolerances as
 * test_step_backends.c). Strict fp32 (SYNCO_CUDA_TF32 unset), and with SYNCO_CUDA_TF32=1 in the environment of a
 * second run (tools/gpu_check.sh) at 10x the tolerances; with SYNCO_CUDA_BF16=1 (the convolutions and linear layers
 * in bf16) at test_step_bf16.c's tolerances for the CPU's bf16, 20x and 40x for the parameter gradients, whose
 * reasons hold here too, when the activations stay fp32 (SYNCO_CUDA_NHWC=0), and 40x and 80x with the default NHWC
 * bf16 activations, which round every BN output, sum and gradient to bf16 as well: twice what the same arithmetic
 * emulated on the CPU passes with (test_step_bf16_emul.c, which measures it), for the GPU's own order of sums. Not
 * yet run on a GPU: the failure lines give the errors seen. Skipped (77) in a build without CUDA or on a machine
 * without a GPU. */
#include <string.h>

#include "test_util.h"
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/registry.h"
#include "step_compare.h"
#endif

int main(void) {
#ifndef SYNCO_HAVE_CUDA
  SKIP("built without CUDA (make CUDA=1)");
#else
  if (synco_cuda_device_count() == 0) SKIP("no GPU on this machine");
  const char *tf = getenv("SYNCO_CUDA_TF32"), *bf = getenv("SYNCO_CUDA_BF16"), *nhwc = getenv("SYNCO_CUDA_NHWC");
  const int bf16 = bf && !strcmp(bf, "1") ? (nhwc && !strcmp(nhwc, "0") ? 1 : 2) : 0;
  synco_backend *ref_be = NULL, *gpu = NULL;
  CHECK_OK(synco_backend_ref_create(&ref_be));
  CHECK_OK(synco_backend_create("cuda", &gpu));
  if (!ref_be || !gpu) return synco_test_finish("cuda_step");
  step_compare t = {.ref = ref_be, .other = gpu, .loose = bf16 ? 20 * bf16 : tf && !strcmp(tf, "1") ? 10 : 1,
                    .grad_loose = 40 * bf16};
  step_compare_all(&t);
  synco_backend_destroy(gpu);
  synco_backend_destroy(ref_be);
  return synco_test_finish("cuda_step");
#endif
}
