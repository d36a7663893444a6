/* SGEMM on host memory for everything that multiplies matrices on the CPU outside the reference backend: the cpu
 * backend's gemm op (the logits against the queue and their gradient) and fp32 linear layers, the kNN monitor's
 * similarities and the linear probe (eval/).
 *
 * Why not OpenBLAS's cblas_sgemm, as before: Debian's OpenBLAS 0.3.21 picks its kernels from a table of CPU models,
 * and on a model it does not know it runs the SSE3 ones ("Prescott"), whatever the CPU has: on the Intel Xeon model
 * 207 (AVX-512) of 2026-12-06 every GEMM ran on them. It also runs on one thread here (registry.c: its pthreads and
 * OpenMP's steal cores from each other). oneDNN picks its kernels from the CPU's features at run time and threads
 * with OpenMP. The reference backend keeps OpenBLAS, so that the two stay independent of each other in the tests.
 *
 * The sums do not depend on the thread count: C is cut into blocks of rows (or of columns, where C has fewer rows
 * than columns) whose size depends on the shape alone, and each block is one single-threaded call, whichever thread
 * runs it. So a run whose thread count changes (--adapt-threads) gives the same bits as one whose count does not
 * (test_fixed_sums), and 1, 2 or 16 threads give the same kNN similarities. A build without oneDNN (the GPU bundle)
 * runs OpenBLAS's sgemm in the same blocks, so its host GEMMs (the kNN monitor of a GPU run) use every core too.
 * SYNCO_HOST_GEMM=openblas chooses OpenBLAS in a build with oneDNN as well (=onednn: the default there). */
#ifndef SYNCO_BACKEND_HOST_GEMM_H
#define SYNCO_BACKEND_HOST_GEMM_H

#include "base/status.h"

/* C = alpha * op(A) * op(B) + beta * C, row-major; op(A) is m x k, op(B) k x n, C m x n (trans_*: op is the
 * transpose). Runs on the OpenMP threads (on one inside a parallel region). Fails only on a bad argument. */
synco_status synco_host_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                              const float *b, int ldb, float beta, float *c, int ldc);

/* SYNCO_OK when SYNCO_HOST_GEMM is unset or names a GEMM of this build, else the error synco_host_sgemm would give:
 * checked when a backend is made, before a command writes anything. */
synco_status synco_host_sgemm_check_env(void);

/* What runs synco_host_sgemm in this build, for `synco info`: "oneDNN <version>" or "OpenBLAS (<its core>)". */
const char *synco_host_sgemm_name(void);

#endif
