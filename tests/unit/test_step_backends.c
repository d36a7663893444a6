/* Whole MoCo-v2 and SynCo steps through the reference backend and through the cpu backend on the same inputs
 * and weights, one step at a time from the same state (tests/unit/step_compare.h says what is compared and
 * within what). Skipped in a build without oneDNN. */
#include "backend/registry.h"
#include "step_compare.h"

int main(void) {
  synco_backend *ref_be = NULL, *fast_be = NULL;
  CHECK_OK(synco_backend_ref_create(&ref_be));
  if (synco_backend_create("cpu", &fast_be) != SYNCO_OK) {
    synco_backend_destroy(ref_be);
    SKIP("this build has no cpu backend (oneDNN)");
  }
  step_compare t = {.ref = ref_be, .other = fast_be, .loose = 1};
  step_compare_all(&t);
  synco_backend_destroy(fast_be);
  synco_backend_destroy(ref_be);
  return synco_test_finish("step_backends");
}
