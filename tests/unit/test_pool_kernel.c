/* The max-pooling kernel bodies (kernels/pool_kernel.h) as the CUDA backend composes them, on the CPU: the backward
 * that gathers per input pixel over synco_k_pool_windows_of (one GPU thread per pixel, no atomics) equals the
 * reference backend's scatter bit for bit, for windows that overlap, clip at the border and skip pixels; and the
 * window range is exactly the set of outputs whose window holds the pixel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "kernels/pool_kernel.h"
#include "test_util.h"

static void check_windows(int H, int W, int k, int stride, int pad) {
  const int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
  for (int iy = 0; iy < H; iy++)
    for (int ix = 0; ix < W; ix++) {
      int oy0, oy1, ox0, ox1;
      synco_k_pool_windows_of(iy, ix, k, stride, pad, OH, OW, &oy0, &oy1, &ox0, &ox1);
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          const int y0 = oy * stride - pad, x0 = ox * stride - pad;
          const int holds = iy >= y0 && iy < y0 + k && ix >= x0 && ix < x0 + k;
          const int listed = oy >= oy0 && oy <= oy1 && ox >= ox0 && ox <= ox1;
          if (holds != listed) {
            printf("windows_of(%d, %d) k%d s%d p%d: output (%d, %d) %s\n", iy, ix, k, stride, pad, oy, ox,
                   holds ? "missing" : "extra");
            synco_test_failures++;
            return;
          }
        }
    }
}

static void check_backward(synco_backend *be, int n, int c, int H, int W, int k, int stride, int pad) {
  synco_pool_op op = {.n = n, .c = c, .h = H, .w = W, .k = k, .stride = stride, .pad = pad, .dtype = SYNCO_F32};
  CHECK_OK(be->pool_plan(be, &op));
  const size_t ni = (size_t)n * c * H * W, no = (size_t)n * c * op.oh * op.ow;
  float *x = malloc(ni * 4), *y = malloc(no * 4), *dy = malloc(no * 4), *dx = malloc(ni * 4), *dx2 = malloc(ni * 4);
  int32_t *arg = malloc(no * 4);
  uint32_t s = 12345;
  for (size_t i = 0; i < ni; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 24) / 16.f; /* ties */
  for (size_t i = 0; i < no; i++) dy[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 65536.f - 128.f;
  synco_tensor tx = {.data = x, .n = n, .c = c, .h = H, .w = W, .dtype = SYNCO_F32, .layout = SYNCO_LAYOUT_PLAIN};
  synco_tensor ty = tx, tdy, tdx = tx;
  ty.data = y, ty.h = op.oh, ty.w = op.ow;
  tdy = ty, tdy.data = dy;
  tdx.data = dx;
  CHECK_OK(be->maxpool_fwd(be, &op, &ty, &tx));
  CHECK_OK(be->maxpool_bwd(be, &op, &tdx, &tdy));
  /* the forward as the GPU computes it, then its gather */
  for (size_t pl = 0; pl < (size_t)n * c; pl++)
    for (int oy = 0; oy < op.oh; oy++)
      for (int ox = 0; ox < op.ow; ox++) {
        const size_t e = (pl * op.oh + oy) * op.ow + ox;
        const float v = synco_k_maxpool_window(x + pl * H * W, H, W, oy, ox, k, stride, pad, &arg[e]);
        CHECK(!memcmp(&v, &y[e], 4));
      }
  for (size_t pl = 0; pl < (size_t)n * c; pl++)
    for (int iy = 0; iy < H; iy++)
      for (int ix = 0; ix < W; ix++) {
        int oy0, oy1, ox0, ox1;
        synco_k_pool_windows_of(iy, ix, k, stride, pad, op.oh, op.ow, &oy0, &oy1, &ox0, &ox1);
        const int32_t *ap = arg + pl * op.oh * op.ow;
        const float *dyp = dy + pl * op.oh * op.ow;
        float acc = 0.f;
        for (int oy = oy0; oy <= oy1; oy++)
          for (int ox = ox0; ox <= ox1; ox++)
            if (ap[oy * op.ow + ox] == iy * W + ix) acc += dyp[oy * op.ow + ox];
        dx2[(pl * H + iy) * W + ix] = acc;
      }
  CHECK(!memcmp(dx, dx2, ni * 4));
  be->pool_release(be, &op);
  free(x), free(y), free(dy), free(dx), free(dx2), free(arg);
}

int main(void) {
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_ref_create(&be));
  const int cfg[][3] = {{3, 2, 1}, {3, 1, 1}, {2, 2, 0}, {3, 3, 0}, {5, 2, 2}, {1, 2, 0}, {4, 3, 1}};
  for (size_t i = 0; i < sizeof cfg / sizeof *cfg; i++) {
    check_windows(9, 7, cfg[i][0], cfg[i][1], cfg[i][2]);
    check_backward(be, 2, 3, 9, 7, cfg[i][0], cfg[i][1], cfg[i][2]);
  }
  synco_backend_destroy(be);
  return synco_test_finish("pool_kernel");
}
