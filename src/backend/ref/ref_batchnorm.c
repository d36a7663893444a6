/* Reference batch normalization (+ optional fused ReLU), exactly as PyTorch's BatchNorm2d and MoCo's
 * SplitBatchNorm. Train mode normalizes with the batch statistics (biased variance) of each group of
 * n/groups contiguous images and updates the running statistics with momentum, using the UNBIASED
 * variance and, for Split-BN, the mean over groups of each group's statistics. Eval mode uses the running
 * statistics. Statistics are accumulated in double so the reference is not the noisy side of a comparison.
 * Channels are independent, so every loop runs over channels in parallel and is deterministic.
 * Backward (train mode): dx is assigned; dgamma and dbeta accumulate. */
#include <math.h>
#include <stdlib.h>

#include "backend/ref/ref_internal.h"

synco_status synco_ref_bn_plan(synco_backend *be, synco_bn_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "ref bn_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "ref bn_plan: only f32 is supported");
  if (op->n <= 0 || op->c <= 0 || op->h <= 0 || op->w <= 0)
    return synco_fail(SYNCO_ERR_ARG, "ref bn_plan: bad shape %dx%dx%dx%d", op->n, op->c, op->h, op->w);
  if (op->groups < 1 || op->n % op->groups != 0)
    return synco_fail(SYNCO_ERR_ARG, "ref bn_plan: batch %d does not split into %d groups", op->n, op->groups);
  if (!(op->eps > 0.f)) return synco_fail(SYNCO_ERR_ARG, "ref bn_plan: eps must be positive (got %g)", op->eps);
  return SYNCO_OK;
}

/* The reference BN keeps nothing: its statistics are the caller's buffers. */
synco_status synco_ref_bn_plan_bytes(synco_backend *be, const synco_bn_op *op, synco_plan_bytes *b) { return SYNCO_OK; }

void synco_ref_bn_release(synco_backend *be, synco_bn_op *op) {
  if (op) op->impl = NULL;
}

static synco_status check_shapes(const synco_bn_op *op, const char *name, const synco_tensor *a, const char *an,
                                 const synco_tensor *b, const char *bn) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "ref %s: op is NULL", name);
  SYNCO_TRY(synco_ref_check(a, name, an, op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_ref_check(b, name, bn, op->n, op->c, op->h, op->w));
  return SYNCO_OK;
}

static inline float relu(float v) { return v < 0.f ? 0.f : v; }

synco_status synco_ref_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                    float *save_invstd, float *running_mean, float *running_var,
                                    const synco_tensor *x, const float *gamma, const float *beta) {
  SYNCO_TRY(check_shapes(op, "bn_fwd_train", y, "y", x, "x"));
  if (!save_mean || !save_invstd || !running_mean || !running_var || !gamma || !beta)
    return synco_fail(SYNCO_ERR_ARG, "ref bn_fwd_train: a statistics or parameter pointer is NULL");
  const int C = op->c, G = op->groups, ng = op->n / G;
  const size_t hw = (size_t)op->h * op->w, m = (size_t)ng * hw; /* values per channel per group */
  if (m < 2)
    return synco_fail(SYNCO_ERR_ARG, "ref bn_fwd_train: expected more than 1 value per channel per group (got %zu)",
                      m);
  const float *xd = x->data;
  float *yd = y->data;
  const int relu_after = op->relu;
  const double mom = op->momentum;
#pragma omp parallel for schedule(static) if ((size_t)op->n * C * hw >= SYNCO_REF_PAR_MIN)
  for (int c = 0; c < C; c++) {
    double mean_sum = 0.0, var_sum = 0.0; /* over groups, for the running statistics */
    for (int g = 0; g < G; g++) {
      double sum = 0.0;
      for (int i = g * ng; i < (g + 1) * ng; i++) {
        const float *p = xd + ((size_t)i * C + c) * hw;
        for (size_t j = 0; j < hw; j++) sum += p[j];
      }
      const double mean = sum / (double)m;
      double sq = 0.0;
      for (int i = g * ng; i < (g + 1) * ng; i++) {
        const float *p = xd + ((size_t)i * C + c) * hw;
        for (size_t j = 0; j < hw; j++) {
          const double d = p[j] - mean;
          sq += d * d;
        }
      }
      const double var = sq / (double)m; /* biased: used to normalize */
      const double invstd = 1.0 / sqrt(var + op->eps);
      save_mean[g * C + c] = (float)mean;
      save_invstd[g * C + c] = (float)invstd;
      mean_sum += mean;
      var_sum += sq / (double)(m - 1); /* unbiased: goes into the running variance */

      const double scale = gamma[c] * invstd, shift = beta[c];
      for (int i = g * ng; i < (g + 1) * ng; i++) {
        const size_t off = ((size_t)i * C + c) * hw;
        for (size_t j = 0; j < hw; j++) {
          const float v = (float)((xd[off + j] - mean) * scale + shift);
          yd[off + j] = relu_after ? relu(v) : v;
        }
      }
    }
    running_mean[c] = (float)((1.0 - mom) * running_mean[c] + mom * (mean_sum / G));
    running_var[c] = (float)((1.0 - mom) * running_var[c] + mom * (var_sum / G));
  }
  return SYNCO_OK;
}

synco_status synco_ref_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                   const float *gamma, const float *beta, const float *running_mean,
                                   const float *running_var) {
  SYNCO_TRY(check_shapes(op, "bn_fwd_eval", y, "y", x, "x"));
  if (!running_mean || !running_var || !gamma || !beta)
    return synco_fail(SYNCO_ERR_ARG, "ref bn_fwd_eval: a statistics or parameter pointer is NULL");
  const int C = op->c, N = op->n;
  const size_t hw = (size_t)op->h * op->w;
  const float *xd = x->data;
  float *yd = y->data;
  const int relu_after = op->relu;
#pragma omp parallel for schedule(static) if ((size_t)op->n * C * hw >= SYNCO_REF_PAR_MIN)
  for (int c = 0; c < C; c++) {
    const double mean = running_mean[c], scale = gamma[c] / sqrt((double)running_var[c] + op->eps), shift = beta[c];
    for (int i = 0; i < N; i++) {
      const size_t off = ((size_t)i * C + c) * hw;
      for (size_t j = 0; j < hw; j++) {
        const float v = (float)((xd[off + j] - mean) * scale + shift);
        yd[off + j] = relu_after ? relu(v) : v;
      }
    }
  }
  return SYNCO_OK;
}

/* With xhat = (x - mean)·invstd and g = dy (masked by y > 0 after a fused ReLU), per channel and group:
 *   dbeta += Σ g,  dgamma += Σ g·xhat,  dx = gamma·invstd·(g - Σg/m - xhat·Σ(g·xhat)/m). */
synco_status synco_ref_bn_bwd(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                              const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                              const float *gamma, const float *save_mean, const float *save_invstd) {
  SYNCO_TRY(check_shapes(op, "bn_bwd", dx, "dx", dy, "dy"));
  SYNCO_TRY(synco_ref_check(x, "bn_bwd", "x", op->n, op->c, op->h, op->w));
  if (op->relu) SYNCO_TRY(synco_ref_check(y, "bn_bwd", "y (needed with the fused ReLU)", op->n, op->c, op->h, op->w));
  if (!dgamma || !dbeta || !gamma || !save_mean || !save_invstd)
    return synco_fail(SYNCO_ERR_ARG, "ref bn_bwd: a statistics or parameter pointer is NULL");
  const int C = op->c, G = op->groups, ng = op->n / G;
  const size_t hw = (size_t)op->h * op->w, m = (size_t)ng * hw;
  const float *xd = x->data, *dyd = dy->data, *yd = op->relu ? y->data : NULL;
  float *dxd = dx->data;
#pragma omp parallel for schedule(static) if ((size_t)op->n * C * hw >= SYNCO_REF_PAR_MIN)
  for (int c = 0; c < C; c++) {
    double dgamma_c = 0.0, dbeta_c = 0.0;
    for (int g = 0; g < G; g++) {
      const double mean = save_mean[g * C + c], invstd = save_invstd[g * C + c];
      double sum_g = 0.0, sum_gx = 0.0;
      for (int i = g * ng; i < (g + 1) * ng; i++) {
        const size_t off = ((size_t)i * C + c) * hw;
        for (size_t j = 0; j < hw; j++) {
          const double gr = (yd && !(yd[off + j] > 0.f)) ? 0.0 : dyd[off + j];
          sum_g += gr;
          sum_gx += gr * (xd[off + j] - mean) * invstd;
        }
      }
      dbeta_c += sum_g;
      dgamma_c += sum_gx;
      const double k = gamma[c] * invstd, mean_g = sum_g / (double)m, mean_gx = sum_gx / (double)m;
      for (int i = g * ng; i < (g + 1) * ng; i++) {
        const size_t off = ((size_t)i * C + c) * hw;
        for (size_t j = 0; j < hw; j++) {
          const double gr = (yd && !(yd[off + j] > 0.f)) ? 0.0 : dyd[off + j];
          const double xhat = (xd[off + j] - mean) * invstd;
          dxd[off + j] = (float)(k * (gr - mean_g - xhat * mean_gx));
        }
      }
    }
    dgamma[c] += (float)dgamma_c;
    dbeta[c] += (float)dbeta_c;
  }
  return SYNCO_OK;
}
