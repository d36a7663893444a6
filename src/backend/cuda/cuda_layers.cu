/* The CUDA backend's layers other than convolution, on PLAIN NCHW fp32, each written to compute what the
 * reference backend computes (backend/ref) in the same precision:
 *  - batch norm (+ReLU) with Split-BN groups, as split reductions that fill the GPU: each (group, channel) slice is
 *    cut into S runs of whole images (S from the shape alone, so results do not depend on the GPU), one block per
 *    run sums x − p and (x − p)² in float per thread and in double across the block (p: the slice's first value,
 *    so the variance does not cancel); a thread per slice adds its S runs in order and makes the statistics and
 *    the per-slice scale and shift; one elementwise pass (float4 where rows allow) normalizes. The backward is the
 *    same shape (Σ dy', Σ dy'·(x − mean), then dx = a·dy' + b·(x − mean) + c). The running statistics and
 *    dgamma / dbeta are combined over groups in group order by a per-channel kernel. SYNCO_CUDA_BN=block selects the first
 *    kernels instead (one block per slice, three passes, double throughout);
 *  - max pooling with the reference's argmax rules (first maximum, NaN wins, padding never wins) and a backward
 *    that gathers, per input pixel, the gradients of the windows it won in output order, so it needs no atomics
 *    and sums in the reference's order;
 *  - ReLU, add, global average pooling (double per row), linear (cuBLAS + bias / bias-gradient kernels), row-wise
 *    L2 normalization (double per row). */
#include <math.h>
#include <stdlib.h>

#include <stdint.h>

#include "backend/cuda/cuda_internal.h"
#include "kernels/bn_kernel.h"
#include "kernels/l2norm_kernel.h"
#include "kernels/pool_kernel.h"

#define BN_THREADS 512

static unsigned grid_for(size_t n) {
  const unsigned b = synco_cuda_blocks(n, SYNCO_CUDA_THREADS);
  return b < 65536u ? b : 65536u;
}

#define GRID_STRIDE(e, total) \
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < (total); e += (size_t)gridDim.x * blockDim.x)

/* Sum of v over the block (every thread gets it). sh: blockDim.x doubles. */
__device__ static double block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

/* ---- batch norm --------------------------------------------------------------------------------------- */

static int bn_split_fits(const synco_bn_op *op);
static size_t bn_split_bytes(const synco_bn_op *op);

/* The split kernels unless SYNCO_CUDA_BN=block or the tensor is too large for their 32-bit indices. */
static int bn_split(synco_backend *be, const synco_bn_op *op) {
  return !synco_cuda(be)->bn_block && bn_split_fits(op);
}

static size_t bn_ws_bytes(synco_backend *be, const synco_bn_op *op) {
  return bn_split(be, op) ? bn_split_bytes(op) : (size_t)op->groups * op->c * 2 * sizeof(double);
}

synco_status synco_cuda_bn_plan(synco_backend *be, synco_bn_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda bn_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda bn_plan: only f32 is implemented");
  if (op->n <= 0 || op->c <= 0 || op->h <= 0 || op->w <= 0)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_plan: bad shape %dx%dx%dx%d", op->n, op->c, op->h, op->w);
  if (op->groups < 1 || op->n % op->groups != 0)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_plan: batch %d does not split into %d groups", op->n, op->groups);
  if (!(op->eps > 0.f)) return synco_fail(SYNCO_ERR_ARG, "cuda bn_plan: eps must be positive (got %g)", op->eps);
  if ((double)(op->n / op->groups) * op->h * op->w >= 2147483648.0)
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda bn_plan: %d images of %dx%d per group is too many for one block",
                      op->n / op->groups, op->h, op->w);
  void *ws; /* the partials, shared by every BN of the backend */
  return synco_cuda_ws(be, SYNCO_CUDA_WS_BN, bn_ws_bytes(be, op), &ws);
}

void synco_cuda_bn_release(synco_backend *be, synco_bn_op *op) {
  if (op) op->impl = NULL;
}

/* bn_plan keeps nothing per op; it grows the shared partials to its layer's need. */
synco_status synco_cuda_bn_plan_bytes(synco_backend *be, const synco_bn_op *op, synco_plan_bytes *b) {
  synco_plan_share(b, SYNCO_CUDA_SHARED_BN, bn_ws_bytes(be, op));
  return SYNCO_OK;
}

/* Element e of group g's block of channel c: image g·ng + e / hw, pixel e % hw (32-bit division: bn_plan keeps
 * ng·hw below 2^31). */
__device__ static inline size_t bn_at(int g, int ng, int C, int c, unsigned hw, unsigned e) {
  return ((size_t)(g * ng + (int)(e / hw)) * C + c) * hw + e % hw;
}

/* ---- split reductions (the arithmetic: kernels/bn_kernel.h) ---- */

#define BN_SPLIT_THREADS 256

static int bn_runs(const synco_bn_op *op) {
  return synco_k_bn_runs(op->groups * op->c, op->n / op->groups, (long)op->h * op->w);
}

/* The split kernels index with 32-bit arithmetic: the whole tensor below 2^31 values. */
static int bn_split_fits(const synco_bn_op *op) {
  return (double)op->n * op->c * op->h * op->w < 2147483648.0;
}

/* Workspace of the split path: per run 2 doubles, per slice 2 doubles (the `part` the per-channel kernels read)
 * and the coefficients. */
static size_t bn_split_bytes(const synco_bn_op *op) {
  const size_t gc = (size_t)op->groups * op->c;
  return gc * bn_runs(op) * 2 * sizeof(double) + gc * 2 * sizeof(double) + gc * SYNCO_K_BN_COEF * sizeof(float);
}

/* A block per run: Σ (x − p) and Σ (x − p)², p the slice's first value. */
__global__ void bn_stats_kernel(double *runs, const float *x, int C, int ng, unsigned hw, int S) {
  __shared__ double sh[BN_SPLIT_THREADS];
  const int gc = blockIdx.x / S, s = blockIdx.x % S, g = gc / C, c = gc % C;
  unsigned first, count;
  synco_k_bn_run(ng, S, s, hw, &first, &count);
  float a, q;
  synco_k_bn_thread_stats(x, g, ng, C, c, hw, first, count, x[synco_k_bn_at(g, ng, C, c, hw, 0)], threadIdx.x,
                          blockDim.x, &a, &q);
  const double sa = block_sum(a, sh), sq = block_sum(q, sh);
  if (threadIdx.x == 0) {
    runs[2 * blockIdx.x] = sa;
    runs[2 * blockIdx.x + 1] = sq;
  }
}

/* A thread per slice: its statistics, the running statistics' part and the normalization's scale and shift. */
__global__ void bn_stats_finish_kernel(float *save_mean, float *save_invstd, double *part, float *coef,
                                       const double *runs, const float *x, const float *gamma, const float *beta,
                                       int C, int G, int ng, unsigned hw, int S, float eps) {
  const int gc = blockIdx.x * blockDim.x + threadIdx.x;
  if (gc >= G * C) return;
  const int g = gc / C, c = gc % C;
  synco_k_bn_stats_finish(runs + (size_t)gc * S * 2, S, x[synco_k_bn_at(g, ng, C, c, hw, 0)], (double)ng * hw, eps,
                          gamma[c], beta[c], &save_mean[gc], &save_invstd[gc], &part[2 * gc], &coef[SYNCO_K_BN_COEF * gc]);
}

/* y = (x − mean)·scale + shift of its slice (then ReLU; kernels/bn_kernel.h); with vec (rows a multiple of 4 long,
 * x and y 16-byte aligned) four values at a time. */
__global__ void bn_apply_kernel(float *y, const float *x, const float *coef, int C, int ng, unsigned hw,
                                unsigned total, int relu, int vec) {
  if (vec) {
    const unsigned total4 = total / 4, hw4 = hw / 4;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total4; e += gridDim.x * blockDim.x) {
      const float *k = coef + SYNCO_K_BN_COEF * synco_k_bn_slice(e / hw4, C, ng);
      float4 v = reinterpret_cast<const float4 *>(x)[e];
      v.x = synco_k_bn_apply(v.x, k, relu), v.y = synco_k_bn_apply(v.y, k, relu);
      v.z = synco_k_bn_apply(v.z, k, relu), v.w = synco_k_bn_apply(v.w, k, relu);
      reinterpret_cast<float4 *>(y)[e] = v;
    }
    return;
  }
  for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x)
    y[e] = synco_k_bn_apply(x[e], coef + SYNCO_K_BN_COEF * synco_k_bn_slice(e / hw, C, ng), relu);
}

/* A block per run of the backward: Σ dy' and Σ dy'·(x − mean). */
__global__ void bn_bwd_stats_kernel(double *runs, const float *dy, const float *y, const float *x,
                                    const float *save_mean, int C, int ng, unsigned hw, int S) {
  __shared__ double sh[BN_SPLIT_THREADS];
  const int gc = blockIdx.x / S, s = blockIdx.x % S, g = gc / C, c = gc % C;
  unsigned first, count;
  synco_k_bn_run(ng, S, s, hw, &first, &count);
  float a, b;
  synco_k_bn_thread_bwd(dy, y, x, g, ng, C, c, hw, first, count, save_mean[gc], threadIdx.x, blockDim.x, &a, &b);
  const double sa = block_sum(a, sh), sb = block_sum(b, sh);
  if (threadIdx.x == 0) {
    runs[2 * blockIdx.x] = sa;
    runs[2 * blockIdx.x + 1] = sb;
  }
}

/* A thread per slice: dgamma, dbeta of the slice (part) and dx's coefficients. */
__global__ void bn_bwd_finish_kernel(double *part, float *coef, const double *runs, const float *gamma,
                                     const float *save_mean, const float *save_invstd, int C, int G, int ng,
                                     unsigned hw, int S) {
  const int gc = blockIdx.x * blockDim.x + threadIdx.x;
  if (gc >= G * C) return;
  synco_k_bn_bwd_finish(runs + (size_t)gc * S * 2, S, (double)ng * hw, gamma[gc % C], save_mean[gc],
                        save_invstd[gc], &part[2 * gc], &coef[SYNCO_K_BN_COEF * gc]);
}

/* dx = a·dy' + b·(x − mean) + c of its slice; in place (dx == dy) is safe: each value is read before it is written. */
__global__ void bn_bwd_apply_kernel(float *dx, const float *dy, const float *y, const float *x, const float *coef,
                                    int C, int ng, unsigned hw, unsigned total) {
  for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += gridDim.x * blockDim.x)
    dx[e] = synco_k_bn_bwd_apply(dy[e], y ? y[e] : 0.f, y != NULL, x[e],
                                 coef + SYNCO_K_BN_COEF * synco_k_bn_slice(e / hw, C, ng));
}

/* ---- one block per (group, channel): SYNCO_CUDA_BN=block ---- */

__global__ void bn_fwd_train_kernel(float *y, float *save_mean, float *save_invstd, double *part, const float *x,
                                    const float *gamma, const float *beta, int C, int ng, unsigned hw, float eps,
                                    int relu) {
  __shared__ double sh[BN_THREADS];
  const int g = blockIdx.x / C, c = blockIdx.x % C;
  const unsigned m = (unsigned)ng * hw;
  double s = 0.0;
  for (unsigned e = threadIdx.x; e < m; e += blockDim.x) s += x[bn_at(g, ng, C, c, hw, e)];
  const double mean = block_sum(s, sh) / (double)m;
  double q = 0.0;
  for (unsigned e = threadIdx.x; e < m; e += blockDim.x) {
    const double d = x[bn_at(g, ng, C, c, hw, e)] - mean;
    q += d * d;
  }
  const double sq = block_sum(q, sh);
  const double invstd = 1.0 / sqrt(sq / (double)m + eps);
  if (threadIdx.x == 0) {
    save_mean[g * C + c] = (float)mean;
    save_invstd[g * C + c] = (float)invstd;
    part[2 * (g * C + c)] = mean;
    part[2 * (g * C + c) + 1] = sq / (double)(m - 1);
  }
  const double scale = gamma[c] * invstd, shift = beta[c];
  for (unsigned e = threadIdx.x; e < m; e += blockDim.x) {
    const size_t at = bn_at(g, ng, C, c, hw, e);
    const float v = (float)((x[at] - mean) * scale + shift);
    y[at] = relu && v < 0.f ? 0.f : v;
  }
}

__global__ void bn_running_kernel(float *running_mean, float *running_var, const double *part, int C, int G,
                                  double mom) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double ms = 0.0, vs = 0.0;
  for (int g = 0; g < G; g++) {
    ms += part[2 * (g * C + c)];
    vs += part[2 * (g * C + c) + 1];
  }
  running_mean[c] = (float)((1.0 - mom) * running_mean[c] + mom * (ms / G));
  running_var[c] = (float)((1.0 - mom) * running_var[c] + mom * (vs / G));
}

synco_status synco_cuda_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                     float *save_invstd, float *running_mean, float *running_var,
                                     const synco_tensor *x, const float *gamma, const float *beta) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_train: op is NULL");
  SYNCO_TRY(synco_cuda_check(x, "bn_fwd_train", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(y, "bn_fwd_train", "y", op->n, op->c, op->h, op->w));
  if (!save_mean || !save_invstd || !running_mean || !running_var || !gamma || !beta)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_train: a statistics or parameter pointer is NULL");
  const int C = op->c, G = op->groups, ng = op->n / G;
  const unsigned hw = (unsigned)op->h * op->w;
  if ((size_t)ng * hw < 2)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_train: expected more than 1 value per channel per group");
  void *ws;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_BN, bn_ws_bytes(be, op), &ws));
  cudaStream_t s = synco_cuda_stream(be);
  double *part = (double *)ws;
  if (bn_split(be, op)) {
    const int S = bn_runs(op);
    double *runs = part + (size_t)G * C * 2;
    float *coef = (float *)(runs + (size_t)G * C * S * 2);
    const float *px = (const float *)x->data;
    bn_stats_kernel<<<G * C * S, BN_SPLIT_THREADS, 0, s>>>(runs, px, C, ng, hw, S);
    SYNCO_LAUNCHED();
    bn_stats_finish_kernel<<<synco_cuda_blocks((size_t)G * C, 128), 128, 0, s>>>(
        save_mean, save_invstd, part, coef, runs, px, gamma, beta, C, G, ng, hw, S, op->eps);
    SYNCO_LAUNCHED();
    const unsigned total = (unsigned)synco_tensor_numel(x);
    const int vec = hw % 4 == 0 && (uintptr_t)px % 16 == 0 && (uintptr_t)y->data % 16 == 0;
    bn_apply_kernel<<<grid_for(vec ? total / 4 : total), SYNCO_CUDA_THREADS, 0, s>>>((float *)y->data, px, coef, C, ng,
                                                                                    hw, total, op->relu, vec);
  } else {
    bn_fwd_train_kernel<<<G * C, BN_THREADS, 0, s>>>((float *)y->data, save_mean, save_invstd, part,
                                                     (const float *)x->data, gamma, beta, C, ng, hw, op->eps, op->relu);
  }
  SYNCO_LAUNCHED();
  bn_running_kernel<<<synco_cuda_blocks(C, 128), 128, 0, s>>>(running_mean, running_var, (const double *)part, C, G,
                                                              op->momentum);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

__global__ void bn_fwd_eval_kernel(float *y, const float *x, const float *gamma, const float *beta, const float *rm,
                                   const float *rv, int C, size_t hw, size_t total, float eps, int relu) {
  GRID_STRIDE(e, total) {
    const int c = (int)((e / hw) % C);
    const double mean = rm[c], scale = gamma[c] / sqrt((double)rv[c] + eps), shift = beta[c];
    const float v = (float)((x[e] - mean) * scale + shift);
    y[e] = relu && v < 0.f ? 0.f : v;
  }
}

synco_status synco_cuda_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                    const float *gamma, const float *beta, const float *running_mean,
                                    const float *running_var) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_eval: op is NULL");
  SYNCO_TRY(synco_cuda_check(x, "bn_fwd_eval", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(y, "bn_fwd_eval", "y", op->n, op->c, op->h, op->w));
  if (!running_mean || !running_var || !gamma || !beta)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_eval: a statistics or parameter pointer is NULL");
  const size_t total = synco_tensor_numel(x), hw = (size_t)op->h * op->w;
  bn_fwd_eval_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)y->data, (const float *)x->data, gamma, beta, running_mean, running_var, op->c, hw, total, op->eps,
      op->relu);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

__global__ void bn_bwd_kernel(float *dx, double *part, const float *dy, const float *y, const float *x,
                              const float *gamma, const float *save_mean, const float *save_invstd, int C, int ng,
                              unsigned hw) {
  __shared__ double sh[BN_THREADS];
  const int g = blockIdx.x / C, c = blockIdx.x % C;
  const unsigned m = (unsigned)ng * hw;
  const double mean = save_mean[g * C + c], invstd = save_invstd[g * C + c];
  double a = 0.0, b = 0.0;
  for (unsigned e = threadIdx.x; e < m; e += blockDim.x) {
    const size_t at = bn_at(g, ng, C, c, hw, e);
    const double gr = (y && !(y[at] > 0.f)) ? 0.0 : dy[at];
    a += gr;
    b += gr * (x[at] - mean) * invstd;
  }
  const double sum_g = block_sum(a, sh), sum_gx = block_sum(b, sh);
  if (threadIdx.x == 0) {
    part[2 * (g * C + c)] = sum_gx;
    part[2 * (g * C + c) + 1] = sum_g;
  }
  const double k = gamma[c] * invstd, mean_g = sum_g / (double)m, mean_gx = sum_gx / (double)m;
  for (unsigned e = threadIdx.x; e < m; e += blockDim.x) {
    const size_t at = bn_at(g, ng, C, c, hw, e);
    const double gr = (y && !(y[at] > 0.f)) ? 0.0 : dy[at];
    const double xhat = (x[at] - mean) * invstd;
    dx[at] = (float)(k * (gr - mean_g - xhat * mean_gx));
  }
}

__global__ void bn_param_grad_kernel(float *dgamma, float *dbeta, const double *part, int C, int G) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double dg = 0.0, db = 0.0;
  for (int g = 0; g < G; g++) {
    dg += part[2 * (g * C + c)];
    db += part[2 * (g * C + c) + 1];
  }
  dgamma[c] += (float)dg;
  dbeta[c] += (float)db;
}

synco_status synco_cuda_bn_bwd(synco_backend *be, synco_bn_op *op, synco_tensor *dx, float *dgamma, float *dbeta,
                               const synco_tensor *dy, const synco_tensor *y, const synco_tensor *x,
                               const float *gamma, const float *save_mean, const float *save_invstd) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda bn_bwd: op is NULL");
  SYNCO_TRY(synco_cuda_check(dx, "bn_bwd", "dx", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(dy, "bn_bwd", "dy", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(x, "bn_bwd", "x", op->n, op->c, op->h, op->w));
  if (op->relu) SYNCO_TRY(synco_cuda_check(y, "bn_bwd", "y (needed with the fused ReLU)", op->n, op->c, op->h, op->w));
  if (!dgamma || !dbeta || !gamma || !save_mean || !save_invstd)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_bwd: a statistics or parameter pointer is NULL");
  const int C = op->c, G = op->groups, ng = op->n / G;
  const unsigned hw = (unsigned)op->h * op->w;
  void *ws;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_BN, bn_ws_bytes(be, op), &ws));
  cudaStream_t s = synco_cuda_stream(be);
  double *part = (double *)ws;
  const float *py = op->relu ? (const float *)y->data : NULL;
  if (bn_split(be, op)) {
    const int S = bn_runs(op);
    double *runs = part + (size_t)G * C * 2;
    float *coef = (float *)(runs + (size_t)G * C * S * 2);
    const float *pdy = (const float *)dy->data, *px = (const float *)x->data;
    bn_bwd_stats_kernel<<<G * C * S, BN_SPLIT_THREADS, 0, s>>>(runs, pdy, py, px, save_mean, C, ng, hw, S);
    SYNCO_LAUNCHED();
    bn_bwd_finish_kernel<<<synco_cuda_blocks((size_t)G * C, 128), 128, 0, s>>>(part, coef, runs, gamma, save_mean,
                                                                              save_invstd, C, G, ng, hw, S);
    SYNCO_LAUNCHED();
    const unsigned total = (unsigned)synco_tensor_numel(x);
    bn_bwd_apply_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, s>>>((float *)dx->data, pdy, py, px, coef, C, ng,
                                                                       hw, total);
  } else {
    bn_bwd_kernel<<<G * C, BN_THREADS, 0, s>>>((float *)dx->data, part, (const float *)dy->data, py,
                                               (const float *)x->data, gamma, save_mean, save_invstd, C, ng, hw);
  }
  SYNCO_LAUNCHED();
  bn_param_grad_kernel<<<synco_cuda_blocks(C, 128), 128, 0, s>>>(dgamma, dbeta, (const double *)part, C, G);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- pooling ------------------------------------------------------------------------------------------ */

synco_status synco_cuda_pool_plan(synco_backend *be, synco_pool_op *op) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda pool_plan: op is NULL");
  op->impl = NULL;
  if (op->dtype != SYNCO_F32) return synco_fail(SYNCO_ERR_UNSUPPORTED, "cuda pool_plan: only f32 is implemented");
  if (op->n <= 0 || op->c <= 0 || op->h <= 0 || op->w <= 0 || op->k <= 0 || op->stride <= 0 || op->pad < 0)
    return synco_fail(SYNCO_ERR_ARG, "cuda pool_plan: bad shape");
  if (2 * op->pad > op->k)
    return synco_fail(SYNCO_ERR_ARG, "cuda pool_plan: pad %d exceeds half the kernel %d", op->pad, op->k);
  const int oh = synco_conv_out_size(op->h, op->k, op->stride, op->pad);
  const int ow = synco_conv_out_size(op->w, op->k, op->stride, op->pad);
  if (op->oh == 0 && op->ow == 0) {
    op->oh = oh;
    op->ow = ow;
  }
  if (oh <= 0 || ow <= 0 || op->oh != oh || op->ow != ow)
    return synco_fail(SYNCO_ERR_ARG, "cuda pool_plan: output %dx%d given, %dx%d follows from the input", op->oh,
                      op->ow, oh, ow);
  void *argmax = NULL; /* index into the input plane, per output */
  SYNCO_TRY(synco_cuda_malloc(be, &argmax, sizeof(int32_t) * (size_t)op->n * op->c * oh * ow, "the max-pool argmax"));
  op->impl = argmax;
  return SYNCO_OK;
}

/* pool_plan keeps the argmax per output. */
synco_status synco_cuda_pool_plan_bytes(synco_backend *be, const synco_pool_op *op, synco_plan_bytes *b) {
  b->kept += sizeof(int32_t) * (size_t)op->n * op->c * op->oh * op->ow;
  return SYNCO_OK;
}

void synco_cuda_pool_release(synco_backend *be, synco_pool_op *op) {
  if (!op || !op->impl) return;
  cudaFree(op->impl);
  op->impl = NULL;
}

__global__ void maxpool_fwd_kernel(float *y, int32_t *argmax, const float *x, int H, int W, int OH, int OW, int k,
                                   int stride, int pad, size_t total) {
  GRID_STRIDE(e, total) {
    const size_t pl = e / ((size_t)OH * OW);
    const int oy = (int)(e / OW % OH), ox = (int)(e % OW);
    y[e] = synco_k_maxpool_window(x + pl * H * W, H, W, oy, ox, k, stride, pad, &argmax[e]);
  }
}

__global__ void maxpool_bwd_kernel(float *dx, const float *dy, const int32_t *argmax, int H, int W, int OH, int OW,
                                   int k, int stride, int pad, size_t total) {
  GRID_STRIDE(e, total) {
    const size_t pl = e / ((size_t)H * W);
    const int iy = (int)(e / W % H), ix = (int)(e % W), me = iy * W + ix;
    int oy0, oy1, ox0, ox1;
    synco_k_pool_windows_of(iy, ix, k, stride, pad, OH, OW, &oy0, &oy1, &ox0, &ox1);
    const float *dyp = dy + pl * OH * OW;
    const int32_t *ap = argmax + pl * OH * OW;
    float acc = 0.f;
    for (int oy = oy0; oy <= oy1; oy++)
      for (int ox = ox0; ox <= ox1; ox++)
        if (ap[oy * OW + ox] == me) acc += dyp[oy * OW + ox];
    dx[e] = acc;
  }
}

synco_status synco_cuda_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda maxpool_fwd: the op was not planned");
  SYNCO_TRY(synco_cuda_check(x, "maxpool_fwd", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(y, "maxpool_fwd", "y", op->n, op->c, op->oh, op->ow));
  const size_t total = synco_tensor_numel(y);
  maxpool_fwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)y->data, (int32_t *)op->impl, (const float *)x->data, op->h, op->w, op->oh, op->ow, op->k, op->stride,
      op->pad, total);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda maxpool_bwd: the op was not planned");
  SYNCO_TRY(synco_cuda_check(dx, "maxpool_bwd", "dx", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check(dy, "maxpool_bwd", "dy", op->n, op->c, op->oh, op->ow));
  const size_t total = synco_tensor_numel(dx);
  maxpool_bwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)dx->data, (const float *)dy->data, (const int32_t *)op->impl, op->h, op->w, op->oh, op->ow, op->k,
      op->stride, op->pad, total);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

__global__ void avgpool_fwd_kernel(float *y, const float *x, size_t rows, size_t hw) {
  GRID_STRIDE(r, rows) {
    double s = 0.0;
    for (size_t j = 0; j < hw; j++) s += x[r * hw + j];
    y[r] = (float)(s / (double)hw);
  }
}

__global__ void avgpool_bwd_kernel(float *dx, const float *dy, size_t hw, size_t total) {
  GRID_STRIDE(e, total) dx[e] = (float)(dy[e / hw] / (double)hw);
}

synco_status synco_cuda_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  if (!x || !y) return synco_fail(SYNCO_ERR_ARG, "cuda avgpool_fwd: a tensor is missing");
  SYNCO_TRY(synco_cuda_check(x, "avgpool_fwd", "x", x->n, x->c, x->h, x->w));
  SYNCO_TRY(synco_cuda_check(y, "avgpool_fwd", "y", x->n, x->c, 1, 1));
  const size_t rows = (size_t)x->n * x->c;
  avgpool_fwd_kernel<<<grid_for(rows), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)y->data, (const float *)x->data, rows, (size_t)x->h * x->w);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy) {
  if (!dx || !dy) return synco_fail(SYNCO_ERR_ARG, "cuda avgpool_bwd: a tensor is missing");
  SYNCO_TRY(synco_cuda_check(dx, "avgpool_bwd", "dx", dx->n, dx->c, dx->h, dx->w));
  SYNCO_TRY(synco_cuda_check(dy, "avgpool_bwd", "dy", dx->n, dx->c, 1, 1));
  const size_t total = synco_tensor_numel(dx);
  avgpool_bwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)dx->data, (const float *)dy->data, (size_t)dx->h * dx->w, total);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- element-wise ------------------------------------------------------------------------------------- */

__global__ void relu_fwd_kernel(float *y, const float *x, size_t n) {
  GRID_STRIDE(i, n) y[i] = x[i] < 0.f ? 0.f : x[i];
}
__global__ void relu_bwd_kernel(float *dx, const float *dy, const float *y, size_t n) {
  GRID_STRIDE(i, n) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}
__global__ void add_kernel(float *y, const float *a, const float *b, size_t n) {
  GRID_STRIDE(i, n) y[i] = b ? a[i] + b[i] : y[i] + a[i];
}

synco_status synco_cuda_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  if (!x) return synco_fail(SYNCO_ERR_ARG, "cuda relu_fwd: x is missing");
  SYNCO_TRY(synco_cuda_check(x, "relu_fwd", "x", x->n, x->c, x->h, x->w));
  SYNCO_TRY(synco_cuda_check(y, "relu_fwd", "y", x->n, x->c, x->h, x->w));
  const size_t n = synco_tensor_numel(x);
  relu_fwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>((float *)y->data,
                                                                                (const float *)x->data, n);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y) {
  if (!y) return synco_fail(SYNCO_ERR_ARG, "cuda relu_bwd: y is missing");
  SYNCO_TRY(synco_cuda_check(y, "relu_bwd", "y", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check(dy, "relu_bwd", "dy", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check(dx, "relu_bwd", "dx", y->n, y->c, y->h, y->w));
  const size_t n = synco_tensor_numel(y);
  relu_bwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)dx->data, (const float *)dy->data, (const float *)y->data, n);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                            int accumulate) {
  if (!a) return synco_fail(SYNCO_ERR_ARG, "cuda add: a is missing");
  SYNCO_TRY(synco_cuda_check(a, "add", "a", a->n, a->c, a->h, a->w));
  SYNCO_TRY(synco_cuda_check(y, "add", "y", a->n, a->c, a->h, a->w));
  if (!accumulate) SYNCO_TRY(synco_cuda_check(b, "add", "b", a->n, a->c, a->h, a->w));
  const size_t n = synco_tensor_numel(a);
  add_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
      (float *)y->data, (const float *)a->data, accumulate ? NULL : (const float *)b->data, n);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- matrices ----------------------------------------------------------------------------------------- */

__global__ void bias_kernel(float *y, const float *b, int out, size_t total) {
  GRID_STRIDE(e, total) y[e] += b[e % out];
}

__global__ void bias_grad_kernel(float *db, const float *dy, int n, int out) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out) return;
  double s = 0.0;
  for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
  db[o] += (float)s;
}

synco_status synco_cuda_linear_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x, const float *w,
                                   const float *b) {
  if (!x || !y) return synco_fail(SYNCO_ERR_ARG, "cuda linear_fwd: a tensor is missing");
  SYNCO_TRY(synco_cuda_check(x, "linear_fwd", "x", x->n, x->c, 1, 1));
  SYNCO_TRY(synco_cuda_check(y, "linear_fwd", "y", x->n, y->c, 1, 1));
  if (!w) return synco_fail(SYNCO_ERR_ARG, "cuda linear_fwd: weights are missing");
  const int n = x->n, in = x->c, out = y->c;
  SYNCO_TRY(synco_cuda_gemm_layer(be, 0, 1, n, out, in, 1.f, (const float *)x->data, in, w, in, 0.f, (float *)y->data, out));
  if (b) {
    const size_t total = (size_t)n * out;
    bias_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>((float *)y->data, b, out, total);
    SYNCO_LAUNCHED();
  }
  return SYNCO_OK;
}

synco_status synco_cuda_linear_bwd(synco_backend *be, synco_tensor *dx, float *dw, float *db, const synco_tensor *dy,
                                   const synco_tensor *x, const float *w) {
  if (!x || !dy) return synco_fail(SYNCO_ERR_ARG, "cuda linear_bwd: a tensor is missing");
  SYNCO_TRY(synco_cuda_check(x, "linear_bwd", "x", x->n, x->c, 1, 1));
  SYNCO_TRY(synco_cuda_check(dy, "linear_bwd", "dy", x->n, dy->c, 1, 1));
  const int n = x->n, in = x->c, out = dy->c;
  const float *dyd = (const float *)dy->data;
  if (dx) {
    SYNCO_TRY(synco_cuda_check(dx, "linear_bwd", "dx", n, in, 1, 1));
    if (!w) return synco_fail(SYNCO_ERR_ARG, "cuda linear_bwd: weights are missing (needed for dx)");
    SYNCO_TRY(synco_cuda_gemm_layer(be, 0, 0, n, in, out, 1.f, dyd, out, w, in, 0.f, (float *)dx->data, in));
  }
  if (dw) SYNCO_TRY(synco_cuda_gemm_layer(be, 1, 0, out, in, n, 1.f, dyd, out, (const float *)x->data, in, 1.f, dw, in));
  if (db) {
    bias_grad_kernel<<<synco_cuda_blocks(out, 128), 128, 0, synco_cuda_stream(be)>>>(db, dyd, n, out);
    SYNCO_LAUNCHED();
  }
  return SYNCO_OK;
}

__global__ void l2norm_fwd_kernel(float *y, float *norms, const float *x, int n, int d) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) synco_k_l2norm_row(y + (size_t)i * d, &norms[i], x + (size_t)i * d, d);
}

__global__ void l2norm_bwd_kernel(float *dx, const float *dy, const float *y, const float *norms, int n, int d) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) synco_k_l2norm_bwd_row(dx + (size_t)i * d, dy + (size_t)i * d, y + (size_t)i * d, norms[i], d);
}

synco_status synco_cuda_l2norm_fwd(synco_backend *be, synco_tensor *y, float *norms, const synco_tensor *x) {
  if (!x) return synco_fail(SYNCO_ERR_ARG, "cuda l2norm_fwd: x is missing");
  SYNCO_TRY(synco_cuda_check(x, "l2norm_fwd", "x", x->n, x->c, 1, 1));
  SYNCO_TRY(synco_cuda_check(y, "l2norm_fwd", "y", x->n, x->c, 1, 1));
  if (!norms) return synco_fail(SYNCO_ERR_ARG, "cuda l2norm_fwd: norms is missing");
  l2norm_fwd_kernel<<<synco_cuda_blocks(x->n, 64), 64, 0, synco_cuda_stream(be)>>>(
      (float *)y->data, norms, (const float *)x->data, x->n, x->c);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_l2norm_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y,
                                   const float *norms) {
  if (!y) return synco_fail(SYNCO_ERR_ARG, "cuda l2norm_bwd: y is missing");
  SYNCO_TRY(synco_cuda_check(y, "l2norm_bwd", "y", y->n, y->c, 1, 1));
  SYNCO_TRY(synco_cuda_check(dy, "l2norm_bwd", "dy", y->n, y->c, 1, 1));
  SYNCO_TRY(synco_cuda_check(dx, "l2norm_bwd", "dx", y->n, y->c, 1, 1));
  if (!norms) return synco_fail(SYNCO_ERR_ARG, "cuda l2norm_bwd: norms is missing");
  l2norm_bwd_kernel<<<synco_cuda_blocks(y->n, 64), 64, 0, synco_cuda_stream(be)>>>(
      (float *)dx->data, (const float *)dy->data, (const float *)y->data, norms, y->n, y->c);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}
