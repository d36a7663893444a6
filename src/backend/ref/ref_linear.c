/* Reference matrix ops on PLAIN N×C matrices: the linear layer (OpenBLAS SGEMM; the cpu backend runs the same code
 * on its own SGEMM, synco_ref_linear_*_on) and row-wise L2
 * normalization exactly as torch.nn.functional.normalize (y = x / max(|x|, 1e-12)).
 * Linear backward: dx is assigned (skipped when NULL), dw and db accumulate (db skipped when NULL).
 * l2norm saves the raw row norms |x|; its backward is the exact gradient of x / max(|x|, eps): the
 * projection (dy - y (y·dy)) / |x| when |x| > eps, and dy / eps below it, where the denominator is the
 * constant eps. Norms and dot products are accumulated in double. */
#include <math.h>

#include "backend/ref/ref_internal.h"
#include "kernels/l2norm_kernel.h"

static synco_status blas_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                               const float *b, int ldb, float beta, float *c, int ldc) {
  return synco_ref_gemm(NULL, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

synco_status synco_ref_linear_fwd_on(synco_ref_sgemm_fn *gemm, synco_tensor *y, const synco_tensor *x,
                                     const float *w, const float *b) {
  if (!x || !y) return synco_fail(SYNCO_ERR_ARG, "ref linear_fwd: a tensor is missing");
  SYNCO_TRY(synco_ref_check(x, "linear_fwd", "x", x->n, x->c, 1, 1));
  SYNCO_TRY(synco_ref_check(y, "linear_fwd", "y", x->n, y->c, 1, 1));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "ref linear_fwd: weights are missing");
  const int n = x->n, in = x->c, out = y->c;
  float *yd = y->data;
  SYNCO_TRY(gemm(0, 1, n, out, in, 1.f, x->data, in, w, in, 0.f, yd, out));
  if (b) {
    for (int i = 0; i < n; i++)
      for (int o = 0; o < out; o++) yd[(size_t)i * out + o] += b[o];
  }
  return SYNCO_OK;
}

synco_status synco_ref_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                  const float *b) {
  (void)be;
  return synco_ref_linear_fwd_on(blas_sgemm, y, x, w, b);
}

synco_status synco_ref_linear_bwd_on(synco_ref_sgemm_fn *gemm, synco_tensor *dx, float *dw, float *db,
                                     const synco_tensor *dy, const synco_tensor *x, const float *w) {
  if (!x || !dy) return synco_fail(SYNCO_ERR_ARG, "ref linear_bwd: a tensor is missing");
  SYNCO_TRY(synco_ref_check(x, "linear_bwd", "x", x->n, x->c, 1, 1));
  SYNCO_TRY(synco_ref_check(dy, "linear_bwd", "dy", x->n, dy->c, 1, 1));
  const int n = x->n, in = x->c, out = dy->c;
  const float *dyd = dy->data;
  if (dx) {
    SYNCO_TRY(synco_ref_check(dx, "linear_bwd", "dx", n, in, 1, 1));
    if (!w) return synco_fail(SYNCO_ERR_ARG, "ref linear_bwd: weights are missing (needed for dx)");
    SYNCO_TRY(gemm(0, 0, n, in, out, 1.f, dyd, out, w, in, 0.f, dx->data, in));
  }
  if (dw) SYNCO_TRY(gemm(1, 0, out, in, n, 1.f, dyd, out, x->data, in, 1.f, dw, in));
  if (db) {
    for (int o = 0; o < out; o++) {
      double sum = 0.0;
      for (int i = 0; i < n; i++) sum += dyd[(size_t)i * out + o];
      db[o] += (float)sum;
    }
  }
  return SYNCO_OK;
}

synco_status synco_ref_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                  const synco_tensor *x, const float *w) {
  (void)be;
  return synco_ref_linear_bwd_on(blas_sgemm, dx, dw, db, dy, x, w);
}

synco_status synco_ref_l2norm_fwd(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x) {
  if (!x) return synco_fail(SYNCO_ERR_ARG, "ref l2norm_fwd: x is missing");
  SYNCO_TRY(synco_ref_check(x, "l2norm_fwd", "x", x->n, x->c, 1, 1));
  SYNCO_TRY(synco_ref_check(y, "l2norm_fwd", "y", x->n, x->c, 1, 1));
  if (!norms) return synco_fail(SYNCO_ERR_ARG, "ref l2norm_fwd: norms is missing");
  const int n = x->n, d = x->c;
  const float *xd = x->data;
  float *yd = y->data;
  for (int i = 0; i < n; i++) synco_k_l2norm_row(yd + (size_t)i * d, &norms[i], xd + (size_t)i * d, d);
  return SYNCO_OK;
}

synco_status synco_ref_l2norm_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y,
                                  const float *norms) {
  if (!y) return synco_fail(SYNCO_ERR_ARG, "ref l2norm_bwd: y is missing");
  SYNCO_TRY(synco_ref_check(y, "l2norm_bwd", "y", y->n, y->c, 1, 1));
  SYNCO_TRY(synco_ref_check(dy, "l2norm_bwd", "dy", y->n, y->c, 1, 1));
  SYNCO_TRY(synco_ref_check(dx, "l2norm_bwd", "dx", y->n, y->c, 1, 1));
  if (!norms) return synco_fail(SYNCO_ERR_ARG, "ref l2norm_bwd: norms is missing");
  const int n = y->n, d = y->c;
  const float *yd = y->data, *dyd = dy->data;
  float *dxd = dx->data;
  for (int i = 0; i < n; i++) {
    const size_t o = (size_t)i * d;
    synco_k_l2norm_bwd_row(dxd + o, dyd + o, yd + o, norms[i], d);
  }
  return SYNCO_OK;
}
