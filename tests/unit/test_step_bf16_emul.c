/* Whole MoCo-v2 and SynCo steps under the cuda backend's bf16 arithmetic, emulated on the CPU (the strict backend
 * under --precision bf16: NHWC bf16 activations, bf16 products; backend/strict/bf16_emul.c), against the fp32
 * reference backend one step at a time from the same state (tests/unit/step_compare.h says what is compared). It
 * states how far a GPU's bf16 step may move from fp32 (test_cuda_step.c under SYNCO_CUDA_BF16=1 takes the same
 * bounds) and runs the whole step through a backend whose activations are bf16 and NHWC, with the strict backend's
 * memory checks, so that no host code that assumes fp32 activations goes unseen without a GPU. Bounds: every
 * tolerance of the fp32 comparison scaled by 30, the parameter gradients' and momentum's by 60. Measured (2026-12-06,
 * an Intel Xeon with AVX-512; OpenBLAS's sums differ by CPU): relative L2 errors at most 0.30 for the parameter
 * gradients, 0.24 the momentum, 0.064 dL/dlogits, 0.0085 the queue, 0.0020 the updated parameters; the steps pass
 * at 20 and 40 and fail at 10 and 40 or at 20 and 30 (the environment's LOOSE and GRAD_LOOSE set them, to measure).
 * test_cuda_step.c takes twice these bounds for a GPU's own sums. */
#include "backend/registry.h"
#include "step_compare.h"

int main(void) {
  synco_backend *ref_be = NULL, *emul = NULL;
  CHECK_OK(synco_backend_ref_create(&ref_be));
  CHECK_OK(synco_backend_strict_create(&emul));
  CHECK_OK(synco_backend_set_precision(emul, "bf16"));
  if (!ref_be || !emul) return synco_test_finish("step_bf16_emul");
  CHECK(emul->act_layout(emul, 16, 8, 8, SYNCO_F32) == SYNCO_LAYOUT_NHWC_BF16);
  const char *l = getenv("LOOSE"), *g = getenv("GRAD_LOOSE");
  step_compare t = {.ref = ref_be, .other = emul, .loose = l ? atof(l) : 30, .grad_loose = g ? atof(g) : 60};
  step_compare_all(&t);
  synco_backend_destroy(emul);
  synco_backend_destroy(ref_be);
  return synco_test_finish("step_bf16_emul");
}
