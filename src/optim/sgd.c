/* SGD and EMA as backend ops. The arithmetic follows PyTorch's order (d_p = grad + wd·p; buf = buf·m + d_p;
 * p = p − lr·buf) so that results agree with torch.optim.SGD to rounding; it lives in kernels/sgd_kernel.h,
 * shared by every backend. */
#include "optim/sgd.h"

#include "base/status.h"

synco_status synco_sgd_step(synco_backend *be, float *p, float *buf, const float *grad, size_t n, float lr,
                            float momentum, float wd, int first) {
  if (!(lr >= 0.f) || !(momentum >= 0.f) || !(wd >= 0.f))
    return synco_fail(SYNCO_ERR_ARG, "sgd: lr %g, momentum %g, weight decay %g: expected values >= 0", (double)lr,
                      (double)momentum, (double)wd);
  return be->sgd(be, p, buf, grad, n, lr, momentum, wd, first);
}

synco_status synco_ema_update(synco_backend *be, float *k, const float *q, size_t n, float m) {
  if (!(m >= 0.f && m <= 1.f)) return synco_fail(SYNCO_ERR_ARG, "ema: momentum %g outside [0, 1]", (double)m);
  return be->ema(be, k, q, n, m);
}
