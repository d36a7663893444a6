/* Fused SGD and EMA loops. The arithmetic follows PyTorch's order (d_p = grad + wd·p; buf = buf·m + d_p;
 * p = p − lr·buf) so that results agree with torch.optim.SGD to rounding. Parallel over chunks; the loops are
 * simple enough for the compiler to vectorize. */
#include "optim/sgd.h"

void synco_sgd_step(float *p, float *buf, const float *grad, size_t n, float lr, float momentum, float wd, int first) {
  const long nn = (long)n;
  if (momentum == 0.f) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < nn; i++) p[i] = p[i] - lr * (grad[i] + wd * p[i]);
  } else if (first) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < nn; i++) {
      const float g = grad[i] + wd * p[i];
      buf[i] = g;
      p[i] = p[i] - lr * g;
    }
  } else {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < nn; i++) {
      const float b = buf[i] * momentum + (grad[i] + wd * p[i]);
      buf[i] = b;
      p[i] = p[i] - lr * b;
    }
  }
}

void synco_ema_update(float *k, const float *q, size_t n, float m) {
  const long nn = (long)n;
  const float w = 1.0f - m;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < nn; i++) k[i] = k[i] * m + q[i] * w;
}
