/* Stochastic gradient descent with momentum and weight decay, as torch.optim.SGD (dampening 0, no Nesterov),
 * and the key encoder's exponential moving average. Each is one op of the backend over a flat parameter buffer
 * in backend memory, which is how the encoders keep their parameters (docs/design.md); the element arithmetic is
 * kernels/sgd_kernel.h. */
#ifndef SYNCO_OPTIM_SGD_H
#define SYNCO_OPTIM_SGD_H

#include <stddef.h>

#include "tensor/backend.h"

/* One SGD step over n parameters: g = grad + wd·p; buf = momentum·buf + g (buf = g when `first`, as PyTorch
 * creates the buffer from the first gradient); p -= lr·buf. With momentum 0 buf is not touched and may be NULL. */
synco_status synco_sgd_step(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                            float momentum, float wd, int first);

/* Key-encoder update: k = m·k + (1 − m)·q over n values. */
synco_status synco_ema_update(synco_backend *be, float *k, const float *q, size_t n, float m);

#endif
