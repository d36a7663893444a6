/* Reference pooling: max pooling with its argmax, and global average pooling.
 * Max pooling follows PyTorch: padded positions never win (only in-image values are compared), the first
 * maximum in row-major window order wins ties, and a NaN wins and propagates. The argmax (index within the
 * h×w plane) lives in op->impl, sized at plan time, so backward routes each dy to the input that won.
 * Backward of both pools assigns dx. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"
#include "kernels/pool_kernel.h"

typedef struct {
  int32_t *argmax; /* [n·c·oh·ow], index into the input's h×w plane */
} ref_pool_impl;

static size_t argmax_bytes(const synco_pool_op *op) {
  return sizeof(int32_t) * (size_t)op->n * op->c * op->oh * op->ow;
}

synco_status synco_ref_pool_plan_bytes(synco_backend *be, const synco_pool_op *op, synco_plan_bytes *b) {
  b->kept += sizeof(ref_pool_impl) + argmax_bytes(op);
  return SYNCO_OK;
}

synco_status synco_ref_pool_plan(synco_backend *be, synco_pool_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "ref pool_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "ref pool_plan: only f32 is supported");
  if (op->n <= 0 || op->c <= 0 || op->h <= 0 || op->w <= 0 || op->k <= 0 || op->stride <= 0 || op->pad < 0)
    return synco_fail(SYNCO_ERR_ARG, "ref pool_plan: bad shape %dx%dx%dx%d k %d stride %d pad %d", op->n, op->c,
                      op->h, op->w, op->k, op->stride, op->pad);
  /* As PyTorch requires: otherwise a window could hold padding only. */
  if (2 * op->pad > op->k)
    return synco_fail(SYNCO_ERR_ARG, "ref pool_plan: pad %d exceeds half the kernel %d", op->pad, op->k);
  const int oh = synco_conv_out_size(op->h, op->k, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->k, op->stride, op->pad);
  if (op->oh == 0 && op->ow == 0) {
    op->oh = oh;
    op->ow = ow;
  }
  if (oh <= 0 || ow <= 0 || op->oh != oh || op->ow != ow)
    return synco_fail(SYNCO_ERR_ARG, "ref pool_plan: output %dx%d given, %dx%d follows from the input", op->oh, op->ow,
                      oh, ow);
  ref_pool_impl *impl = synco_calloc(1, sizeof *impl);
  if (!impl) return SYNCO_ERR_NOMEM;
  impl->argmax = synco_malloc(argmax_bytes(op));
  if (!impl->argmax) {
    free(impl);
    return SYNCO_ERR_NOMEM;
  }
  op->impl = impl;
  return SYNCO_OK;
}

void synco_ref_pool_release(synco_backend *be, synco_pool_op *op) {
  if (!op || !op->impl) return;
  ref_pool_impl *impl = op->impl;
  free(impl->argmax);
  free(impl);
  op->impl = NULL;
}

synco_status synco_ref_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "ref maxpool_fwd: the op was not planned");
  SYNCO_TRY(synco_ref_check(x, "maxpool_fwd", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_ref_check(y, "maxpool_fwd", "y", op->n, op->c, op->oh, op->ow));
  ref_pool_impl *impl = op->impl;
  const int planes = op->n * op->c, H = op->h, W = op->w, OH = op->oh, OW = op->ow;
  const float *xd = x->data;
  float *yd = y->data;
#pragma omp parallel for schedule(static) if ((size_t)planes * H * W >= SYNCO_REF_PAR_MIN)
  for (int pl = 0; pl < planes; pl++) {
    const float *xp = xd + (size_t)pl * H * W;
    float *yp = yd + (size_t)pl * OH * OW;
    int32_t *ap = impl->argmax + (size_t)pl * OH * OW;
    for (int oy = 0; oy < OH; oy++)
      for (int ox = 0; ox < OW; ox++)
        yp[oy * OW + ox] = synco_k_maxpool_window(xp, H, W, oy, ox, op->k, op->stride, op->pad, &ap[oy * OW + ox]);
  }
  return SYNCO_OK;
}

synco_status synco_ref_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "ref maxpool_bwd: the op was not planned");
  SYNCO_TRY(synco_ref_check(dx, "maxpool_bwd", "dx", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_ref_check(dy, "maxpool_bwd", "dy", op->n, op->c, op->oh, op->ow));
  const ref_pool_impl *impl = op->impl;
  const int planes = op->n * op->c;
  const size_t in_plane = (size_t)op->h * op->w, out_plane = (size_t)op->oh * op->ow;
  const float *dyd = dy->data;
  float *dxd = dx->data;
#pragma omp parallel for schedule(static) if (planes * in_plane >= SYNCO_REF_PAR_MIN)
  for (int pl = 0; pl < planes; pl++) {
    float *dxp = dxd + pl * in_plane;
    const float *dyp = dyd + pl * out_plane;
    const int32_t *ap = impl->argmax + pl * out_plane;
    memset(dxp, 0, sizeof(float) * in_plane);
    for (size_t j = 0; j < out_plane; j++) dxp[ap[j]] += dyp[j];
  }
  return SYNCO_OK;
}

synco_status synco_ref_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  if (!x || !y) return synco_fail(SYNCO_ERR_ARG, "ref avgpool_fwd: a tensor is missing");
  SYNCO_TRY(synco_ref_check(x, "avgpool_fwd", "x", x->n, x->c, x->h, x->w));
  SYNCO_TRY(synco_ref_check(y, "avgpool_fwd", "y", x->n, x->c, 1, 1));
  const int rows = x->n * x->c;
  const size_t hw = (size_t)x->h * x->w;
  const float *xd = x->data;
  float *yd = y->data;
#pragma omp parallel for schedule(static) if (rows * hw >= SYNCO_REF_PAR_MIN)
  for (int r = 0; r < rows; r++) {
    double sum = 0.0;
    for (size_t j = 0; j < hw; j++) sum += xd[r * hw + j];
    yd[r] = (float)(sum / (double)hw);
  }
  return SYNCO_OK;
}

synco_status synco_ref_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy) {
  if (!dx || !dy) return synco_fail(SYNCO_ERR_ARG, "ref avgpool_bwd: a tensor is missing");
  SYNCO_TRY(synco_ref_check(dx, "avgpool_bwd", "dx", dx->n, dx->c, dx->h, dx->w));
  SYNCO_TRY(synco_ref_check(dy, "avgpool_bwd", "dy", dx->n, dx->c, 1, 1));
  const int rows = dx->n * dx->c;
  const size_t hw = (size_t)dx->h * dx->w;
  const float *dyd = dy->data;
  float *dxd = dx->data;
#pragma omp parallel for schedule(static) if (rows * hw >= SYNCO_REF_PAR_MIN)
  for (int r = 0; r < rows; r++) {
    const float g = (float)(dyd[r] / (double)hw);
    for (size_t j = 0; j < hw; j++) dxd[r * hw + j] = g;
  }
  return SYNCO_OK;
}
