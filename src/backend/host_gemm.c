/* Host SGEMM (host_gemm.h): oneDNN's sgemm, or OpenBLAS's in a build without oneDNN, cut into blocks whose sums do
 * not depend on the thread count, one single-threaded call per block on the OpenMP threads. */
#include "backend/host_gemm.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SYNCO_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

enum {
  BLOCK_MACS = 1 << 20, /* a block's least work: ~10 us at 100 GFLOP/s, well above a loop iteration's cost */
  BLOCK_MAX = 64,       /* enough blocks for 16 threads to even out */
  BLOCK_ALIGN = 16      /* rows (columns) of C per block: a multiple of an AVX-512 register's floats */
};

static synco_status check(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda, const float *b,
                          int ldb, const float *c, int ldc) {
  const int a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  if (m < 0 || n < 0 || k < 0)
    return synco_fail(SYNCO_ERR_ARG, "gemm: a negative size (%d x %d x %d)", m, n, k);
  if (!m || !n) return SYNCO_OK;
  if (!c || (k && (!a || !b))) return synco_fail(SYNCO_ERR_ARG, "gemm: %d x %d x %d with a missing matrix", m, n, k);
  if (ldc < n || (k && (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1))))
    return synco_fail(SYNCO_ERR_ARG, "gemm: %d x %d x %d with leading dimensions %d, %d, %d below the rows' lengths", m,
                      n, k, lda, ldb, ldc);
  return SYNCO_OK;
}

/* Cuts `len` rows (or columns) of C into blocks for m*n*k multiply-adds: the count and size follow from the shape
 * alone. Returns the block length; *count receives the number of blocks. */
static int block_len(long len, double macs, int *count) {
  long want = (long)(macs / BLOCK_MACS);
  if (want > BLOCK_MAX) want = BLOCK_MAX;
  const long most = (len + BLOCK_ALIGN - 1) / BLOCK_ALIGN;
  if (want > most) want = most;
  if (want < 1) want = 1;
  long step = (len + want - 1) / want;
  if (want > 1) step = (step + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN;
  *count = (int)((len + step - 1) / step);
  return (int)step;
}

/* One block's product on the calling thread; nonzero when refused. */
typedef int block_fn(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                     const float *b, long ldb, float beta, float *c, long ldc);

static int openblas_block(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                          const float *b, long ldb, float beta, float *c, long ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
              (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
  return 0;
}

#ifdef SYNCO_HAVE_ONEDNN
static int onednn_block(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                        const float *b, long ldb, float beta, float *c, long ldc) {
  return dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) !=
         dnnl_success;
}
#endif

/* SYNCO_HOST_GEMM=onednn|openblas (unset: oneDNN where built in); NULL for another value. */
static block_fn *chosen(const char **name) {
  const char *e = getenv("SYNCO_HOST_GEMM");
#ifdef SYNCO_HAVE_ONEDNN
  if (!e || !*e || !strcmp(e, "onednn")) {
    *name = "oneDNN";
    return onednn_block;
  }
#else
  if (!e || !*e) e = "openblas";
#endif
  *name = "OpenBLAS";
  return !strcmp(e, "openblas") ? openblas_block : NULL;
}

synco_status synco_host_sgemm_check_env(void) {
  const char *name;
  if (chosen(&name)) return SYNCO_OK;
  return synco_fail(SYNCO_ERR_ARG, "SYNCO_HOST_GEMM=%s: expected onednn (where built in) or openblas",
                    getenv("SYNCO_HOST_GEMM"));
}

synco_status synco_host_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                              const float *b, int ldb, float beta, float *c, int ldc) {
  SYNCO_TRY(check(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc));
  SYNCO_TRY(synco_host_sgemm_check_env());
  const char *name;
  block_fn *gemm = chosen(&name);
  if (!m || !n) return SYNCO_OK;
  if (!k) { /* no products: C = beta C (oneDNN refuses k = 0), with beta = 0 writing zeros, as BLAS does */
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.f ? 0.f : beta * c[(size_t)i * ldc + j];
    return SYNCO_OK;
  }
  if (gemm == openblas_block && openblas_get_num_threads() > 1) openblas_set_num_threads(1); /* as registry.c */
  const int by_rows = m >= n;
  int count;
  const int step = block_len(by_rows ? m : n, (double)m * n * k, &count);
  int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) if (count > 1) reduction(| : failed)
  for (int blk = 0; blk < count; blk++) {
    /* this block on this thread alone, also where the loop runs on one thread (an inactive region, in which oneDNN
     * would start a team of its own): its sums are then those of every other thread count */
    omp_set_num_threads(1);
    const long i0 = (long)blk * step;
    const float *ab = a, *bb = b;
    float *cb = c;
    long rows = m, cols = n;
    if (by_rows) {
      rows = m - i0 < step ? m - i0 : step;
      ab = a + (trans_a ? i0 : i0 * lda); /* rows i0.. of op(A): rows of A, or its columns */
      cb = c + i0 * ldc;
    } else {
      cols = n - i0 < step ? n - i0 : step;
      bb = b + (trans_b ? i0 * ldb : i0); /* columns i0.. of op(B): columns of B, or its rows */
      cb = c + i0;
    }
    failed |= gemm(trans_a, trans_b, rows, cols, k, alpha, ab, lda, bb, ldb, beta, cb, ldc);
  }
  if (failed) return synco_fail(SYNCO_ERR_BACKEND, "gemm: %s's sgemm refused %d x %d x %d", name, m, n, k);
  return SYNCO_OK;
}

const char *synco_host_sgemm_name(void) {
  static char buf[128];
  const char *name;
  block_fn *gemm = chosen(&name);
  if (!gemm) return "none (SYNCO_HOST_GEMM names no GEMM of this build)";
#ifdef SYNCO_HAVE_ONEDNN
  if (gemm == onednn_block) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d's sgemm", v->major, v->minor, v->patch);
    return buf;
  }
#endif
  snprintf(buf, sizeof buf, "OpenBLAS's sgemm (its %s kernels on this CPU)", openblas_get_corename());
  return buf;
}
