/* Whole MoCo-v2 and SynCo steps under --precision bf16 (the cpu backend's convolutions and linear layers on bf16
 * copies of their inputs) against the fp32 reference backend, one step at a time from the same state
 * (tests/unit/step_compare.h says what is compared). Each op is checked against the reference on bf16-rounded
 * inputs in test_onednn_ops; this checks the whole step and states how far bf16 moves it. bf16 keeps 8 bits of
 * mantissa, so each product is off by up to 2^-8 relative, and this test's network (width 8, Split-BN over 8 images)
 * amplifies that through 20 layers of batch norms. Every tolerance of the fp32 comparison is scaled by 20: the loss
 * within 2e-3 + 2e-3·|loss| (measured at most 1.5e-3 relative), dL/dlogits within relative L2 error 0.2 (measured
 * 0.07), the updated parameters, EMA and BN buffers and the queue within relative L2 error 4e-2 (measured 2.3e-3, 0,
 * 5e-4, 8e-3; single queue elements, unit keys of 16 values, move by up to 1.1e-2 where 1.2e-2 + 2e-2·|ref| is allowed); the
 * parameter gradients and the momentum by 40: relative L2 error 0.4 (measured up to 0.32: sums of BN-normalized
 * terms that cancel). A dropped or mis-scaled gradient, or fp32 weights read as bf16, is off by 1 or more. The steps
 * run three times: by the default rule (which, on a CPU without AMX, runs this network's 8-channel layers on synco's
 * direct8 in bf16), with oneDNN's fp32 Winograd forced where it has a kernel (the other fp32 passes such a CPU runs
 * inside bf16 steps), and with fixed sums (pretrain's default: the weight gradients in 2 batch chunks). Skipped where
 * the CPU has no native bf16 or the build has no oneDNN. */
#include "backend/registry.h"
#include "step_compare.h"

/* The steps on a fresh bf16 cpu backend; the count of its convolution passes on oneDNN's fp32 Winograd (its kernel
 * log). 77 when this CPU or build runs no bf16. */
static int compare_bf16(synco_backend *ref_be, int *wino_passes, int chunks) {
  synco_backend *bf16_be = NULL;
  if (synco_backend_create("cpu", &bf16_be) != SYNCO_OK) SKIP("this build has no cpu backend");
  CHECK_OK(synco_backend_fixed_sums(bf16_be, chunks));
  if (synco_backend_set_precision(bf16_be, "bf16") != SYNCO_OK) {
    printf("SKIP: %s\n", synco_last_error());
    synco_backend_destroy(bf16_be);
    return 77;
  }
  step_compare t = {.ref = ref_be, .other = bf16_be, .loose = 20, .grad_loose = 40};
  step_compare_all(&t);
  char *log = synco_test_kernel_log(bf16_be);
  if (chunks) CHECK(strstr(log, "bwd_weights_chunks") != NULL);
  *wino_passes = 0;
  for (const char *q = strstr(log, "jit_wino"); q; q = strstr(q + 1, "jit_wino")) ++*wino_passes;
  free(log);
  synco_backend_destroy(bf16_be);
  return 0;
}

int main(void) {
  synco_backend *ref_be = NULL;
  synco_test_default_kernels();
  CHECK_OK(synco_backend_ref_create(&ref_be));
  int wino = 0;
  if (compare_bf16(ref_be, &wino, 0) == 77) {
    synco_backend_destroy(ref_be);
    return 77;
  }
  /* Again with oneDNN's fp32 Winograd forced wherever it has a kernel. Without AMX the rule runs it inside bf16 steps
   * from 64 channels, and for backward weights from 32, but this network's 64-channel stage has 4x4 outputs, where
   * the rule keeps it to backward weights: forcing it runs the forward and backward-data passes of fp32 layers among bf16 ones in a whole step. */
  setenv("SYNCO_CONV_ALGO", "onednn-winograd", 1);
  CHECK(compare_bf16(ref_be, &wino, 0) == 0);
  unsetenv("SYNCO_CONV_ALGO");
  /* with fixed sums (--adapt-threads, pretrain's default): weight gradients in 2 batch chunks */
  CHECK(compare_bf16(ref_be, &wino, 2) == 0);
  printf("%d convolution passes on oneDNN's fp32 Winograd with SYNCO_CONV_ALGO=onednn-winograd\n", wino);
  CHECK(wino > 0);
  synco_backend_destroy(ref_be);
  return synco_test_finish("step_bf16");
}
