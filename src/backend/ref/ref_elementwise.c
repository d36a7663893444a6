/* Reference element-wise ops: ReLU forward/backward and the residual add.
 * ReLU keeps NaN as PyTorch does (only values below zero become zero); its backward masks dy by y > 0, so
 * it needs the output, not the input, and both may run in place. `add` with accumulate = 1 is how a
 * tensor with two consumers (a residual shortcut) receives its second gradient. */
#include "backend/ref/ref_internal.h"

synco_status synco_ref_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  if (!x) return synco_fail(SYNCO_ERR_ARG, "ref relu_fwd: x is missing");
  SYNCO_TRY(synco_ref_check_like(x, "relu_fwd", "x", x));
  SYNCO_TRY(synco_ref_check_like(y, "relu_fwd", "y", x));
  const long n = (long)synco_tensor_numel(x);
  const float *xd = x->data;
  float *yd = y->data;
#pragma omp parallel for schedule(static) if (n >= SYNCO_REF_PAR_MIN)
  for (long i = 0; i < n; i++) yd[i] = xd[i] < 0.f ? 0.f : xd[i];
  return SYNCO_OK;
}

synco_status synco_ref_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y) {
  if (!y) return synco_fail(SYNCO_ERR_ARG, "ref relu_bwd: y is missing");
  SYNCO_TRY(synco_ref_check_like(y, "relu_bwd", "y", y));
  SYNCO_TRY(synco_ref_check_like(dy, "relu_bwd", "dy", y));
  SYNCO_TRY(synco_ref_check_like(dx, "relu_bwd", "dx", y));
  const long n = (long)synco_tensor_numel(y);
  const float *yd = y->data, *dyd = dy->data;
  float *dxd = dx->data;
#pragma omp parallel for schedule(static) if (n >= SYNCO_REF_PAR_MIN)
  for (long i = 0; i < n; i++) dxd[i] = yd[i] > 0.f ? dyd[i] : 0.f;
  return SYNCO_OK;
}

synco_status synco_ref_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                           int accumulate) {
  if (!a) return synco_fail(SYNCO_ERR_ARG, "ref add: a is missing");
  SYNCO_TRY(synco_ref_check_like(a, "add", "a", a));
  SYNCO_TRY(synco_ref_check_like(y, "add", "y", a));
  if (!accumulate) SYNCO_TRY(synco_ref_check_like(b, "add", "b", a));
  const long n = (long)synco_tensor_numel(a);
  const float *ad = a->data, *bd = accumulate ? NULL : b->data;
  float *yd = y->data;
  if (accumulate) {
#pragma omp parallel for schedule(static) if (n >= SYNCO_REF_PAR_MIN)
    for (long i = 0; i < n; i++) yd[i] += ad[i];
  } else {
#pragma omp parallel for schedule(static) if (n >= SYNCO_REF_PAR_MIN)
    for (long i = 0; i < n; i++) yd[i] = ad[i] + bd[i];
  }
  return SYNCO_OK;
}
