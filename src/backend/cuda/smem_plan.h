/* How a kernel launch may use shared memory, as plain C so that the CPU suite tests the rule
 * (tests/unit/test_cuda_smem.c). A block's static shared memory (the kernel's __shared__ arrays) and its dynamic
 * shared memory count against one limit: 48 KiB unless the kernel opts in (cudaFuncAttributeMaxDynamicSharedMemorySize),
 * up to the device's opt-in limit (cudaDevAttrMaxSharedMemoryPerBlockOptin, 227 KiB on Hopper) after it. Comparing
 * the dynamic size alone with 48 KiB misses launches whose static part tips them over (the selection kernel with K
 * from 2,432 to 2,559: 47,104 + 2,056 bytes). */
#ifndef SYNCO_BACKEND_CUDA_SMEM_PLAN_H
#define SYNCO_BACKEND_CUDA_SMEM_PLAN_H

#include <stddef.h>

#define SYNCO_SMEM_DEFAULT_LIMIT (48 * 1024)

typedef enum {
  SYNCO_SMEM_FITS = 0,  /* launch as is */
  SYNCO_SMEM_OPTIN = 1, /* set the kernel's dynamic limit to `dyn` first */
  SYNCO_SMEM_TOO_LARGE, /* the block cannot have this much: use global memory or refuse */
} synco_smem_plan;

static inline synco_smem_plan synco_cuda_smem_plan(size_t static_bytes, size_t dyn, size_t optin_limit) {
  const size_t total = static_bytes + dyn;
  if (total > optin_limit) return SYNCO_SMEM_TOO_LARGE;
  return total > SYNCO_SMEM_DEFAULT_LIMIT ? SYNCO_SMEM_OPTIN : SYNCO_SMEM_FITS;
}

#endif
