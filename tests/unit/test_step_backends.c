/* Whole MoCo-v2 and SynCo steps through the reference backend and through the cpu backend on the same inputs
 * and weights, one step at a time from the same state (tests/unit/step_compare.h says what is compared and
 * within what), by the cpu backend's default kernels and again with fixed sums (2 and 3 batch chunks, as
 * --adapt-threads runs them: test_fixed_sums.c shows they do not depend on the thread count, this that they are
 * right). Skipped in a build without oneDNN.
 * The parameter gradients and the momentum are held to relative L2 error 2e-2, not step_compare.h's 1e-2: with
 * oneDNN's fp32 Winograd on this network's 16- and 32-channel layers (the rule since f16f636), the ASan + UBSan
 * build's reference rounds differently and SynCo's step 3 read 1.14e-2, a quarter of its squared error in 0.1 % of
 * the elements (the CIFAR stem's weight gradient, which sums every pixel's dy) while the loss and dL/dlogits agreed
 * to 1e-7: a ReLU flipped on a near-zero input. The plain build reads at most 6.1e-3, with these kernels and with
 * oneDNN's direct ones alike. A dropped or mis-scaled gradient is off by 0.1 or more, every element is still held
 * to atol + 0.1·|ref|, and test_cpu_ops checks each pass of each kernel at 1e-4. */
#include "backend/registry.h"
#include "step_compare.h"

int main(void) {
  synco_backend *ref_be = NULL, *fast_be = NULL;
  CHECK_OK(synco_backend_ref_create(&ref_be));
  if (synco_backend_create("cpu", &fast_be) != SYNCO_OK) {
    synco_backend_destroy(ref_be);
    SKIP("this build has no cpu backend (oneDNN)");
  }
  step_compare t = {.ref = ref_be, .other = fast_be, .loose = 1, .grad_l2 = 2e-2};
  step_compare_all(&t);
  synco_backend_destroy(fast_be);
  /* again with fixed sums (--adapt-threads, the default of pretrain): the weight gradients summed in 2 and in 3
   * batch chunks (16 images: 8 + 8, and 5 + 5 + 6) must meet the same tolerances */
  for (int chunks = 2; chunks <= 3; chunks++) {
    CHECK_OK(synco_backend_create("cpu", &fast_be));
    CHECK_OK(synco_backend_fixed_sums(fast_be, chunks));
    step_compare f = {.ref = ref_be, .other = fast_be, .loose = 1, .grad_l2 = 2e-2};
    step_compare_all(&f);
    char *log = synco_test_kernel_log(fast_be);
    CHECK(strstr(log, "bwd_weights_chunks") != NULL);
    free(log);
    synco_backend_destroy(fast_be);
  }
  synco_backend_destroy(ref_be);
  return synco_test_finish("step_backends");
}
