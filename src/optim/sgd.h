/* Stochastic gradient descent with momentum and weight decay, as torch.optim.SGD (dampening 0, no Nesterov),
 * and the key encoder's exponential moving average. Each is one fused loop over a flat parameter buffer, which
 * is how the encoders keep their parameters (DESIGN.md). */
#ifndef SYNCO_OPTIM_SGD_H
#define SYNCO_OPTIM_SGD_H

#include <stddef.h>

/* One SGD step over n parameters: g = grad + wd·p; buf = momentum·buf + g (buf = g when `first`, as PyTorch
 * creates the buffer from the first gradient); p -= lr·buf. With momentum 0 buf is not touched and may be NULL. */
void synco_sgd_step(float *p, float *buf, const float *grad, size_t n, float lr, float momentum, float wd, int first);

/* Key-encoder update: k = m·k + (1 − m)·q over n values. */
void synco_ema_update(float *k, const float *q, size_t n, float m);

#endif
