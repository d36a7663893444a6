/* The CUDA backend's shared-memory rule (backend/cuda/smem_plan.h), tested on every machine: a launch's static and
 * dynamic shared memory count together against 48 KiB, and past that the kernel must opt in, up to the device's
 * limit. The selection kernel of the synthetic negatives (2,056 bytes of static shared memory: two 256-float
 * reduction arrays and two floats) with K queue rows asks for (4·K + 2048) words of dynamic memory; for K from
 * 2,432 to 2,559 that dynamic part alone is under 48 KiB while the whole is over it, which the first version
 * launched without opting in. */
#include <stdio.h>

#include "backend/cuda/smem_plan.h"
#include "test_util.h"

#define SEL_STATIC (2 * 256 * 4 + 2 * 4)
#define H100_OPTIN (227 * 1024)

static size_t sel_dyn(int K) { return (4 * (size_t)K + 2048) * 4; }

int main(void) {
  CHECK(synco_cuda_smem_plan(0, 48 * 1024, H100_OPTIN) == SYNCO_SMEM_FITS);
  CHECK(synco_cuda_smem_plan(0, 48 * 1024 + 1, H100_OPTIN) == SYNCO_SMEM_OPTIN);
  CHECK(synco_cuda_smem_plan(1, 48 * 1024, H100_OPTIN) == SYNCO_SMEM_OPTIN); /* the static byte tips it */
  CHECK(synco_cuda_smem_plan(1024, H100_OPTIN - 1024, H100_OPTIN) == SYNCO_SMEM_OPTIN);
  CHECK(synco_cuda_smem_plan(1024, H100_OPTIN - 1023, H100_OPTIN) == SYNCO_SMEM_TOO_LARGE);
  /* the selection kernel: every K that needs the opt-in gets it, whatever the dynamic part alone says */
  for (int K = 1024; K <= 16384; K += 32) {
    const size_t dyn = sel_dyn(K), total = dyn + SEL_STATIC;
    const synco_smem_plan p = synco_cuda_smem_plan(SEL_STATIC, dyn, H100_OPTIN);
    if (total <= 48 * 1024) CHECK(p == SYNCO_SMEM_FITS);
    else if (total <= H100_OPTIN) CHECK(p == SYNCO_SMEM_OPTIN);
    else CHECK(p == SYNCO_SMEM_TOO_LARGE);
  }
  for (int K = 2432; K < 2560; K++) {
    CHECK(sel_dyn(K) <= 48 * 1024); /* what the first version compared */
    CHECK(synco_cuda_smem_plan(SEL_STATIC, sel_dyn(K), H100_OPTIN) == SYNCO_SMEM_OPTIN);
  }
  CHECK(synco_cuda_smem_plan(SEL_STATIC, sel_dyn(2431), H100_OPTIN) == SYNCO_SMEM_FITS);
  return synco_test_finish("cuda_smem");
}
