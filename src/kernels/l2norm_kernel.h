/* One row of the L2 normalization (torch.nn.functional.normalize): y = x / max(‖x‖, eps), the raw norm kept for the
 * backward, which is the exact gradient of that expression: the projection (dy − y (y·dy)) / ‖x‖ when ‖x‖ > eps, and
 * dy / eps below it (there the denominator is the constant eps). Norms and dot products accumulate in double, in
 * index order, so every backend computes the same bits. */
#ifndef SYNCO_KERNELS_L2NORM_KERNEL_H
#define SYNCO_KERNELS_L2NORM_KERNEL_H

#include <math.h>

#include "kernels/hd.h"

#define SYNCO_L2NORM_EPS 1e-12

SYNCO_HD static inline void synco_k_l2norm_row(float *y, float *norm_out, const float *x, int d) {
  double sq = 0.0;
  for (int j = 0; j < d; j++) sq += (double)x[j] * x[j];
  const double norm = sqrt(sq), denom = norm > SYNCO_L2NORM_EPS ? norm : SYNCO_L2NORM_EPS;
  *norm_out = (float)norm;
  for (int j = 0; j < d; j++) y[j] = (float)(x[j] / denom);
}

SYNCO_HD static inline void synco_k_l2norm_bwd_row(float *dx, const float *dy, const float *y, float norm_f, int d) {
  const double norm = norm_f;
  if (norm > SYNCO_L2NORM_EPS) {
    double dot = 0.0;
    for (int j = 0; j < d; j++) dot += (double)y[j] * dy[j];
    for (int j = 0; j < d; j++) dx[j] = (float)((dy[j] - y[j] * dot) / norm);
  } else {
    for (int j = 0; j < d; j++) dx[j] = (float)(dy[j] / SYNCO_L2NORM_EPS);
  }
}

#endif
