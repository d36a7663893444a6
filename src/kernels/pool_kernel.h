/* Max pooling of one output pixel, as torch.nn.MaxPool2d: the maximum of the k×k window at (oy·stride − pad,
 * ox·stride − pad) clipped to the plane, the first maximum in row-major order winning ties, a NaN winning over
 * everything (and ending the scan). The argmax (an index into the plane) is kept for the backward, where each input
 * pixel receives the gradients of the outputs whose argmax it is, in output order (synco_k_pool_windows_of gives the
 * outputs whose window holds a pixel, for a backward that gathers per input pixel). */
#ifndef SYNCO_KERNELS_POOL_KERNEL_H
#define SYNCO_KERNELS_POOL_KERNEL_H

#include <math.h>
#include <stdint.h>

#include "kernels/hd.h"

SYNCO_HD static inline float synco_k_maxpool_window(const float *plane, int H, int W, int oy, int ox, int k, int stride,
                                                    int pad, int32_t *argmax) {
  const int y0 = oy * stride - pad, x0 = ox * stride - pad;
  float best = -INFINITY;
  int32_t arg = -1;
  for (int iy = y0; iy < y0 + k; iy++) {
    if (iy < 0 || iy >= H) continue;
    for (int ix = x0; ix < x0 + k; ix++) {
      if (ix < 0 || ix >= W) continue;
      const float v = plane[iy * W + ix];
      if (arg < 0 || v > best || isnan(v)) {
        best = v;
        arg = iy * W + ix;
        if (isnan(v)) {
          *argmax = arg;
          return best;
        }
      }
    }
  }
  *argmax = arg;
  return best;
}

/* The outputs [oy0, oy1] × [ox0, ox1] whose windows hold input pixel (iy, ix): oy·stride − pad <= iy <
 * oy·stride − pad + k, clipped to the output. */
SYNCO_HD static inline void synco_k_pool_windows_of(int iy, int ix, int k, int stride, int pad, int OH, int OW,
                                                    int *oy0, int *oy1, int *ox0, int *ox1) {
  *oy0 = iy + pad - k + 1 < 0 ? 0 : (iy + pad - k + stride) / stride;
  *ox0 = ix + pad - k + 1 < 0 ? 0 : (ix + pad - k + stride) / stride;
  *oy1 = (iy + pad) / stride;
  *ox1 = (ix + pad) / stride;
  if (*oy1 > OH - 1) *oy1 = OH - 1;
  if (*ox1 > OW - 1) *ox1 = OW - 1;
}

#endif
