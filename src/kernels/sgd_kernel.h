/* One element of the optimizer and of the key encoder's moving average, as torch.optim.SGD computes them
 * (dampening 0, no Nesterov): d = grad + wd·p; buf = momentum·buf + d (buf = d on the first step, as PyTorch
 * creates the buffer from the first gradient); p −= lr·buf. With momentum 0 the buffer is not touched. */
#ifndef SYNCO_KERNELS_SGD_KERNEL_H
#define SYNCO_KERNELS_SGD_KERNEL_H

#include "kernels/hd.h"

SYNCO_HD static inline void synco_k_sgd(float *p, float *buf, float grad, float lr, float momentum, float wd,
                                        int first) {
  const float d = grad + wd * *p;
  if (momentum == 0.f) {
    *p = *p - lr * d;
    return;
  }
  const float b = first ? d : *buf * momentum + d;
  *buf = b;
  *p = *p - lr * b;
}

/* k = m·k + (1 − m)·q, with w = 1 − m computed once by the caller. */
SYNCO_HD static inline float synco_k_ema(float k, float q, float m, float w) { return k * m + q * w; }

#endif
