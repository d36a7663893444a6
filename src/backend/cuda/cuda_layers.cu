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
 *    L2 normalization (double per row).
 * Under bf16 the activations of 8k channels are NHWC bf16 (cuda_backend.cu), and every op here takes them too: BN as
 * the same split reductions with a block over a run of rows and 32 channels side by side (kernels/bn_kernel.h's NHWC
 * pieces, which tests/unit/test_bn_nhwc.c runs on the CPU), the elementwise passes eight values (16 bytes) at a time,
 * pooling per channel; every value read as fp32 and every result rounded to bf16 once (kernels/bf16_kernel.h). */
#include <math.h>
#include <stdlib.h>

#include <stdint.h>

#include "backend/cuda/cuda_internal.h"
#include "kernels/bf16_kernel.h"
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

/* An element of an activation as fp32, and a result stored: fp32 tensors as they are, bf16 ones rounded. */
__device__ static inline float ld(const float *p, size_t i) { return p[i]; }
__device__ static inline float ld(const uint16_t *p, size_t i) { return synco_k_f32_of_bf16(p[i]); }
__device__ static inline void st(float *p, size_t i, float v) { p[i] = v; }
__device__ static inline void st(uint16_t *p, size_t i, float v) { p[i] = synco_k_bf16_of(v); }

/* Eight bf16 values (16 bytes) as fp32, and back. */
__device__ static inline void ld8(const uint16_t *p, size_t v, float *f) {
  const uint4 u = reinterpret_cast<const uint4 *>(p)[v];
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
  for (int j = 0; j < 4; j++) {
    f[2 * j] = synco_k_f32_of_bf16((uint16_t)(w[j] & 0xffffu));
    f[2 * j + 1] = synco_k_f32_of_bf16((uint16_t)(w[j] >> 16));
  }
}
__device__ static inline void st8(uint16_t *p, size_t v, const float *f) {
  uint32_t w[4];
  for (int j = 0; j < 4; j++) w[j] = (uint32_t)synco_k_bf16_of(f[2 * j]) | (uint32_t)synco_k_bf16_of(f[2 * j + 1]) << 16;
  reinterpret_cast<uint4 *>(p)[v] = make_uint4(w[0], w[1], w[2], w[3]);
}

/* Whether pointers allow the 16-byte passes (cudaMalloc'ed activations do). */
static int aligned16(const void *a, const void *b, const void *c) {
  return ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % 16 == 0;
}

/* ---- batch norm --------------------------------------------------------------------------------------- */

static int bn_split_fits(const synco_bn_op *op);
static size_t bn_split_bytes(const synco_bn_op *op, int S);

/* Whether the layer's activations are NHWC bf16 on this backend. */
static int bn_nhwc(synco_backend *be, const synco_bn_op *op) {
  return synco_cuda_act_layout(be, op->c, op->h, op->w) == SYNCO_LAYOUT_NHWC_BF16;
}

/* The split kernels unless SYNCO_CUDA_BN=block or the tensor is too large for their 32-bit indices; NHWC always. */
static int bn_split(synco_backend *be, const synco_bn_op *op) {
  return bn_nhwc(be, op) || (!synco_cuda(be)->bn_block && bn_split_fits(op));
}

/* Runs per slice of the split kernels, by layout. */
static int bn_runs(synco_backend *be, const synco_bn_op *op) {
  const int ng = op->n / op->groups;
  const long hw = (long)op->h * op->w;
  return bn_nhwc(be, op) ? synco_k_bn_nhwc_runs(op->groups, op->c, ng, hw) : synco_k_bn_runs(op->groups * op->c, ng, hw);
}

static size_t bn_ws_bytes(synco_backend *be, const synco_bn_op *op) {
  return bn_split(be, op) ? bn_split_bytes(op, bn_runs(be, op)) : (size_t)op->groups * op->c * 2 * sizeof(double);
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

/* The split kernels index with 32-bit arithmetic: the whole tensor below 2^31 values. */
static int bn_split_fits(const synco_bn_op *op) {
  return (double)op->n * op->c * op->h * op->w < 2147483648.0;
}

/* Workspace of the split path: per run 2 doubles, per slice 2 doubles (the `part` the per-channel kernels read)
 * and the coefficients. */
static size_t bn_split_bytes(const synco_bn_op *op, int S) {
  const size_t gc = (size_t)op->groups * op->c;
  return gc * S * 2 * sizeof(double) + gc * 2 * sizeof(double) + gc * SYNCO_K_BN_COEF * sizeof(float);
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
/* (x: NCHW fp32, or x16: NHWC bf16, whose first value of the slice is p) */
__global__ void bn_stats_finish_kernel(float *save_mean, float *save_invstd, double *part, float *coef,
                                       const double *runs, const float *x, const uint16_t *x16, const float *gamma,
                                       const float *beta, int C, int G, int ng, unsigned hw, int S, float eps) {
  const int gc = blockIdx.x * blockDim.x + threadIdx.x;
  if (gc >= G * C) return;
  const int g = gc / C, c = gc % C;
  const float p = x16 ? synco_k_bn_nhwc_at(x16, (size_t)g * ng * hw, C, c) : x[synco_k_bn_at(g, ng, C, c, hw, 0)];
  synco_k_bn_stats_finish(runs + (size_t)gc * S * 2, S, p, (double)ng * hw, eps, gamma[c], beta[c], &save_mean[gc],
                          &save_invstd[gc], &part[2 * gc], &coef[SYNCO_K_BN_COEF * gc]);
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

/* ---- NHWC bf16: a block per (run, group, 32 channels), a thread per channel and row lane ---- */

/* The 8 row lanes of each channel added in lane order by the first lane, into the run's slot of its slice. */
__device__ static void bn_nhwc_block_store(double *runs, float a, float b, int C, int S) {
  __shared__ double sh[2][SYNCO_K_BN_NHWC_ROWS][SYNCO_K_BN_NHWC_CH];
  const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.z * SYNCO_K_BN_NHWC_CH + tx;
  sh[0][ty][tx] = a;
  sh[1][ty][tx] = b;
  __syncthreads();
  if (ty != 0 || c >= C) return;
  double sa = 0.0, sb = 0.0;
  for (int r = 0; r < SYNCO_K_BN_NHWC_ROWS; r++) sa += sh[0][r][tx], sb += sh[1][r][tx];
  const size_t at = ((size_t)(blockIdx.y * C + c) * S + blockIdx.x) * 2;
  runs[at] = sa;
  runs[at + 1] = sb;
}

__global__ void bn_nhwc_stats_kernel(double *runs, const uint16_t *x, int C, int ng, unsigned hw, int S) {
  const int g = blockIdx.y, c = blockIdx.z * SYNCO_K_BN_NHWC_CH + threadIdx.x;
  unsigned first, count;
  synco_k_bn_run(ng, S, blockIdx.x, hw, &first, &count);
  const size_t row0 = (size_t)g * ng * hw;
  float a = 0.f, q = 0.f;
  if (c < C)
    synco_k_bn_nhwc_thread_stats(x, row0 + first, count, C, c, synco_k_bn_nhwc_at(x, row0, C, c), threadIdx.y,
                                 SYNCO_K_BN_NHWC_ROWS, &a, &q);
  bn_nhwc_block_store(runs, a, q, C, S);
}

__global__ void bn_nhwc_bwd_stats_kernel(double *runs, const uint16_t *dy, const uint16_t *y, const uint16_t *x,
                                         const float *save_mean, int C, int ng, unsigned hw, int S) {
  const int g = blockIdx.y, c = blockIdx.z * SYNCO_K_BN_NHWC_CH + threadIdx.x;
  unsigned first, count;
  synco_k_bn_run(ng, S, blockIdx.x, hw, &first, &count);
  float a = 0.f, b = 0.f;
  if (c < C)
    synco_k_bn_nhwc_thread_bwd(dy, y, x, (size_t)g * ng * hw + first, count, C, c, save_mean[g * C + c], threadIdx.y,
                               SYNCO_K_BN_NHWC_ROWS, &a, &b);
  bn_nhwc_block_store(runs, a, b, C, S);
}

static dim3 bn_nhwc_grid(const synco_bn_op *op, int S) {
  return dim3((unsigned)S, (unsigned)op->groups, (unsigned)((op->c + SYNCO_K_BN_NHWC_CH - 1) / SYNCO_K_BN_NHWC_CH));
}
static dim3 bn_nhwc_block(void) { return dim3(SYNCO_K_BN_NHWC_CH, SYNCO_K_BN_NHWC_ROWS); }

/* y = bn(x) (then ReLU), or with res y = relu(bn(x) + res) (a block's end: bn_fwd_train_add_relu, rounded once), per
 * value, eight at a time (C is a multiple of 8, so eight never cross a pixel). */
__device__ static inline float bn_res_relu(float v, float r) {
  const float u = v + r;
  return u < 0.f ? 0.f : u; /* NaN stays NaN */
}

__global__ void bn_nhwc_apply_kernel(uint16_t *y, const uint16_t *x, const uint16_t *res, const float *coef, int C,
                                     int ng, unsigned hw, size_t total, int relu, int vec) {
  if (vec) {
    GRID_STRIDE(v, total / 8) {
      float f[8], r[8];
      ld8(x, v, f);
      if (res) ld8(res, v, r);
      const float *k = coef + SYNCO_K_BN_COEF * synco_k_bn_nhwc_slice(v * 8, C, ng, hw);
      for (int j = 0; j < 8; j++) {
        f[j] = synco_k_bn_apply(f[j], k + SYNCO_K_BN_COEF * j, relu);
        if (res) f[j] = bn_res_relu(f[j], r[j]);
      }
      st8(y, v, f);
    }
    return;
  }
  GRID_STRIDE(e, total) {
    const float v = synco_k_bn_apply(ld(x, e), coef + SYNCO_K_BN_COEF * synco_k_bn_nhwc_slice(e, C, ng, hw), relu);
    st(y, e, res ? bn_res_relu(v, ld(res, e)) : v);
  }
}

/* dx = a·dy' + b·(x − mean) + c per value, eight at a time; in place (dx == dy) is safe. */
__global__ void bn_nhwc_bwd_apply_kernel(uint16_t *dx, const uint16_t *dy, const uint16_t *y, const uint16_t *x,
                                         const float *coef, int C, int ng, unsigned hw, size_t total, int vec) {
  if (vec) {
    GRID_STRIDE(v, total / 8) {
      float g[8], yv[8], xv[8];
      ld8(dy, v, g);
      ld8(x, v, xv);
      if (y) ld8(y, v, yv);
      const float *k = coef + SYNCO_K_BN_COEF * synco_k_bn_nhwc_slice(v * 8, C, ng, hw);
      for (int j = 0; j < 8; j++) g[j] = synco_k_bn_bwd_apply(g[j], y ? yv[j] : 0.f, y != NULL, xv[j], k + SYNCO_K_BN_COEF * j);
      st8(dx, v, g);
    }
    return;
  }
  GRID_STRIDE(e, total)
  st(dx, e, synco_k_bn_bwd_apply(ld(dy, e), y ? ld(y, e) : 0.f, y != NULL, ld(x, e),
                                 coef + SYNCO_K_BN_COEF * synco_k_bn_nhwc_slice(e, C, ng, hw)));
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

/* bn_fwd_train, and with res (NHWC bf16 only) the block end relu(bn(x) + res) in the same elementwise pass. */
static synco_status bn_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean, float *save_invstd,
                             float *running_mean, float *running_var, const synco_tensor *x, const float *gamma,
                             const float *beta, const synco_tensor *res) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_train: op is NULL");
  SYNCO_TRY(synco_cuda_check_act(be, x, "bn_fwd_train", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, y, "bn_fwd_train", "y", op->n, op->c, op->h, op->w));
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
  if (synco_cuda_is_nhwc(x)) {
    const int S = bn_runs(be, op);
    double *runs = part + (size_t)G * C * 2;
    float *coef = (float *)(runs + (size_t)G * C * S * 2);
    const uint16_t *px = (const uint16_t *)x->data;
    bn_nhwc_stats_kernel<<<bn_nhwc_grid(op, S), bn_nhwc_block(), 0, s>>>(runs, px, C, ng, hw, S);
    SYNCO_LAUNCHED();
    bn_stats_finish_kernel<<<synco_cuda_blocks((size_t)G * C, 128), 128, 0, s>>>(
        save_mean, save_invstd, part, coef, runs, NULL, px, gamma, beta, C, G, ng, hw, S, op->eps);
    SYNCO_LAUNCHED();
    const size_t total = synco_tensor_numel(x);
    const uint16_t *pr = res ? (const uint16_t *)res->data : NULL;
    const int vec = C % 8 == 0 && aligned16(px, y->data, pr ? pr : px);
    bn_nhwc_apply_kernel<<<grid_for(vec ? total / 8 : total), SYNCO_CUDA_THREADS, 0, s>>>(
        (uint16_t *)y->data, px, pr, coef, C, ng, hw, total, op->relu, vec);
  } else if (bn_split(be, op)) {
    const int S = bn_runs(be, op);
    double *runs = part + (size_t)G * C * 2;
    float *coef = (float *)(runs + (size_t)G * C * S * 2);
    const float *px = (const float *)x->data;
    bn_stats_kernel<<<G * C * S, BN_SPLIT_THREADS, 0, s>>>(runs, px, C, ng, hw, S);
    SYNCO_LAUNCHED();
    bn_stats_finish_kernel<<<synco_cuda_blocks((size_t)G * C, 128), 128, 0, s>>>(
        save_mean, save_invstd, part, coef, runs, px, NULL, gamma, beta, C, G, ng, hw, S, op->eps);
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

synco_status synco_cuda_bn_fwd_train(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                     float *save_invstd, float *running_mean, float *running_var,
                                     const synco_tensor *x, const float *gamma, const float *beta) {
  return bn_train(be, op, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, NULL);
}

/* A block's end: on NHWC bf16 in BN's elementwise pass (the sum rounded once, where BN, add and ReLU one by one
 * round three times); on fp32 NCHW as those three ops, which give the same values there. */
synco_status synco_cuda_bn_fwd_train_add_relu(synco_backend *be, synco_bn_op *op, synco_tensor *y, float *save_mean,
                                              float *save_invstd, float *running_mean, float *running_var,
                                              const synco_tensor *x, const float *gamma, const float *beta,
                                              const synco_tensor *res) {
  if (!op || op->relu)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_train_add_relu: the BN must be planned without its own ReLU");
  if (!y) return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_train_add_relu: y is missing");
  SYNCO_TRY(synco_cuda_check_act(be, res, "bn_fwd_train_add_relu", "res", op->n, op->c, op->h, op->w));
  if (synco_cuda_is_nhwc(y))
    return bn_train(be, op, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, res);
  SYNCO_TRY(bn_train(be, op, y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, NULL));
  SYNCO_TRY(synco_cuda_add(be, y, res, res, 1));
  return synco_cuda_relu_fwd(be, y, y);
}

/* (T: float in NCHW, uint16_t for NHWC bf16, where the channel is the fastest index) */
template <typename T>
__global__ void bn_fwd_eval_kernel(T *y, const T *x, const float *gamma, const float *beta, const float *rm,
                                   const float *rv, int C, size_t hw, size_t total, float eps, int relu, int nhwc) {
  GRID_STRIDE(e, total) {
    const int c = nhwc ? (int)(e % C) : (int)((e / hw) % C);
    const double mean = rm[c], scale = gamma[c] / sqrt((double)rv[c] + eps), shift = beta[c];
    const float v = (float)((ld(x, e) - mean) * scale + shift);
    st(y, e, relu && v < 0.f ? 0.f : v);
  }
}

synco_status synco_cuda_bn_fwd_eval(synco_backend *be, synco_bn_op *op, synco_tensor *y, const synco_tensor *x,
                                    const float *gamma, const float *beta, const float *running_mean,
                                    const float *running_var) {
  if (!op) return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_eval: op is NULL");
  SYNCO_TRY(synco_cuda_check_act(be, x, "bn_fwd_eval", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, y, "bn_fwd_eval", "y", op->n, op->c, op->h, op->w));
  if (!running_mean || !running_var || !gamma || !beta)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_fwd_eval: a statistics or parameter pointer is NULL");
  const size_t total = synco_tensor_numel(x), hw = (size_t)op->h * op->w;
  if (synco_cuda_is_nhwc(x))
    bn_fwd_eval_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)y->data, (const uint16_t *)x->data, gamma, beta, running_mean, running_var, op->c, hw, total,
        op->eps, op->relu, 1);
  else
    bn_fwd_eval_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (float *)y->data, (const float *)x->data, gamma, beta, running_mean, running_var, op->c, hw, total, op->eps,
        op->relu, 0);
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
  SYNCO_TRY(synco_cuda_check_act(be, dx, "bn_bwd", "dx", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, dy, "bn_bwd", "dy", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, x, "bn_bwd", "x", op->n, op->c, op->h, op->w));
  if (op->relu)
    SYNCO_TRY(synco_cuda_check_act(be, y, "bn_bwd", "y (needed with the fused ReLU)", op->n, op->c, op->h, op->w));
  if (!dgamma || !dbeta || !gamma || !save_mean || !save_invstd)
    return synco_fail(SYNCO_ERR_ARG, "cuda bn_bwd: a statistics or parameter pointer is NULL");
  const int C = op->c, G = op->groups, ng = op->n / G;
  const unsigned hw = (unsigned)op->h * op->w;
  void *ws;
  SYNCO_TRY(synco_cuda_ws(be, SYNCO_CUDA_WS_BN, bn_ws_bytes(be, op), &ws));
  cudaStream_t s = synco_cuda_stream(be);
  double *part = (double *)ws;
  const float *py = op->relu ? (const float *)y->data : NULL;
  if (synco_cuda_is_nhwc(x)) {
    const int S = bn_runs(be, op);
    double *runs = part + (size_t)G * C * 2;
    float *coef = (float *)(runs + (size_t)G * C * S * 2);
    const uint16_t *pdy = (const uint16_t *)dy->data, *px = (const uint16_t *)x->data, *py16 = (const uint16_t *)py;
    bn_nhwc_bwd_stats_kernel<<<bn_nhwc_grid(op, S), bn_nhwc_block(), 0, s>>>(runs, pdy, py16, px, save_mean, C, ng, hw,
                                                                             S);
    SYNCO_LAUNCHED();
    bn_bwd_finish_kernel<<<synco_cuda_blocks((size_t)G * C, 128), 128, 0, s>>>(part, coef, runs, gamma, save_mean,
                                                                              save_invstd, C, G, ng, hw, S);
    SYNCO_LAUNCHED();
    const size_t total = synco_tensor_numel(x);
    const int vec = C % 8 == 0 && aligned16(dx->data, pdy, px) && aligned16(py16, px, px);
    bn_nhwc_bwd_apply_kernel<<<grid_for(vec ? total / 8 : total), SYNCO_CUDA_THREADS, 0, s>>>(
        (uint16_t *)dx->data, pdy, py16, px, coef, C, ng, hw, total, vec);
  } else if (bn_split(be, op)) {
    const int S = bn_runs(be, op);
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

/* NHWC bf16: output e = ((n·OH + oy)·OW + ox)·C + c over the same window and rules as synco_k_maxpool_window (the
 * first maximum in row-major order, a NaN winning and ending the scan, padding never); the argmax is the plane
 * index iy·W + ix, kept at e. */
__global__ void maxpool_nhwc_fwd_kernel(uint16_t *y, int32_t *argmax, const uint16_t *x, int C, int H, int W, int OH,
                                        int OW, int k, int stride, int pad, size_t total) {
  GRID_STRIDE(e, total) {
    const int c = (int)(e % C), ox = (int)(e / C % OW), oy = (int)(e / C / OW % OH);
    const size_t n = e / C / OW / OH;
    const int y0 = oy * stride - pad, x0 = ox * stride - pad;
    float best = -INFINITY;
    int32_t arg = -1;
    for (int iy = y0; iy < y0 + k && !(arg >= 0 && isnan(best)); iy++) {
      if (iy < 0 || iy >= H) continue;
      for (int ix = x0; ix < x0 + k; ix++) {
        if (ix < 0 || ix >= W) continue;
        const float v = ld(x, ((n * H + iy) * W + ix) * C + c);
        if (arg < 0 || v > best || isnan(v)) {
          best = v;
          arg = iy * W + ix;
          if (isnan(v)) break;
        }
      }
    }
    st(y, e, best);
    argmax[e] = arg;
  }
}

/* Input e = ((n·H + iy)·W + ix)·C + c gathers the gradients of the windows it won, in output order. */
__global__ void maxpool_nhwc_bwd_kernel(uint16_t *dx, const uint16_t *dy, const int32_t *argmax, int C, int H, int W,
                                        int OH, int OW, int k, int stride, int pad, size_t total) {
  GRID_STRIDE(e, total) {
    const int c = (int)(e % C), ix = (int)(e / C % W), iy = (int)(e / C / W % H), me = iy * W + ix;
    const size_t n = e / C / W / H;
    int oy0, oy1, ox0, ox1;
    synco_k_pool_windows_of(iy, ix, k, stride, pad, OH, OW, &oy0, &oy1, &ox0, &ox1);
    float acc = 0.f;
    for (int oy = oy0; oy <= oy1; oy++)
      for (int ox = ox0; ox <= ox1; ox++) {
        const size_t o = ((n * OH + oy) * OW + ox) * C + c;
        if (argmax[o] == me) acc += ld(dy, o);
      }
    st(dx, e, acc);
  }
}

synco_status synco_cuda_maxpool_fwd(synco_backend *be, synco_pool_op *op, synco_tensor *y, const synco_tensor *x) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda maxpool_fwd: the op was not planned");
  SYNCO_TRY(synco_cuda_check_act(be, x, "maxpool_fwd", "x", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, y, "maxpool_fwd", "y", op->n, op->c, op->oh, op->ow));
  const size_t total = synco_tensor_numel(y);
  if (synco_cuda_is_nhwc(x))
    maxpool_nhwc_fwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)y->data, (int32_t *)op->impl, (const uint16_t *)x->data, op->c, op->h, op->w, op->oh, op->ow, op->k,
        op->stride, op->pad, total);
  else
    maxpool_fwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (float *)y->data, (int32_t *)op->impl, (const float *)x->data, op->h, op->w, op->oh, op->ow, op->k, op->stride,
        op->pad, total);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_maxpool_bwd(synco_backend *be, synco_pool_op *op, synco_tensor *dx, const synco_tensor *dy) {
  if (!op || !op->impl) return synco_fail(SYNCO_ERR_ARG, "cuda maxpool_bwd: the op was not planned");
  SYNCO_TRY(synco_cuda_check_act(be, dx, "maxpool_bwd", "dx", op->n, op->c, op->h, op->w));
  SYNCO_TRY(synco_cuda_check_act(be, dy, "maxpool_bwd", "dy", op->n, op->c, op->oh, op->ow));
  const size_t total = synco_tensor_numel(dx);
  if (synco_cuda_is_nhwc(dx))
    maxpool_nhwc_bwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)dx->data, (const uint16_t *)dy->data, (const int32_t *)op->impl, op->c, op->h, op->w, op->oh,
        op->ow, op->k, op->stride, op->pad, total);
  else
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

/* NHWC bf16: output row r = n·C + c sums its channel over the image's pixels (threads of a warp: neighbouring
 * channels, so the loads coalesce); the backward spreads dy[n·C + c] / hw over them. */
__global__ void avgpool_nhwc_fwd_kernel(float *y, const uint16_t *x, int C, size_t rows, size_t hw) {
  GRID_STRIDE(r, rows) {
    const size_t n = r / C, c = r % C;
    double s = 0.0;
    for (size_t j = 0; j < hw; j++) s += ld(x, (n * hw + j) * C + c);
    y[r] = (float)(s / (double)hw);
  }
}

__global__ void avgpool_nhwc_bwd_kernel(uint16_t *dx, const float *dy, int C, size_t hw, size_t total) {
  GRID_STRIDE(e, total) st(dx, e, (float)(dy[e / ((size_t)C * hw) * C + e % C] / (double)hw));
}

synco_status synco_cuda_avgpool_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  if (!x || !y) return synco_fail(SYNCO_ERR_ARG, "cuda avgpool_fwd: a tensor is missing");
  SYNCO_TRY(synco_cuda_check_act(be, x, "avgpool_fwd", "x", x->n, x->c, x->h, x->w));
  SYNCO_TRY(synco_cuda_check(y, "avgpool_fwd", "y", x->n, x->c, 1, 1));
  const size_t rows = (size_t)x->n * x->c;
  if (synco_cuda_is_nhwc(x))
    avgpool_nhwc_fwd_kernel<<<grid_for(rows), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (float *)y->data, (const uint16_t *)x->data, x->c, rows, (size_t)x->h * x->w);
  else
    avgpool_fwd_kernel<<<grid_for(rows), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (float *)y->data, (const float *)x->data, rows, (size_t)x->h * x->w);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_avgpool_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy) {
  if (!dx || !dy) return synco_fail(SYNCO_ERR_ARG, "cuda avgpool_bwd: a tensor is missing");
  SYNCO_TRY(synco_cuda_check_act(be, dx, "avgpool_bwd", "dx", dx->n, dx->c, dx->h, dx->w));
  SYNCO_TRY(synco_cuda_check(dy, "avgpool_bwd", "dy", dx->n, dx->c, 1, 1));
  const size_t total = synco_tensor_numel(dx);
  if (synco_cuda_is_nhwc(dx))
    avgpool_nhwc_bwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)dx->data, (const float *)dy->data, dx->c, (size_t)dx->h * dx->w, total);
  else
    avgpool_bwd_kernel<<<grid_for(total), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (float *)dx->data, (const float *)dy->data, (size_t)dx->h * dx->w, total);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

/* ---- element-wise ------------------------------------------------------------------------------------- */

/* (T: float, or uint16_t for NHWC bf16: each value read as fp32 and the result rounded once) */
template <typename T> __global__ void relu_fwd_kernel(T *y, const T *x, size_t n) {
  GRID_STRIDE(i, n) {
    const float v = ld(x, i);
    st(y, i, v < 0.f ? 0.f : v);
  }
}
template <typename T> __global__ void relu_bwd_kernel(T *dx, const T *dy, const T *y, size_t n) {
  GRID_STRIDE(i, n) st(dx, i, ld(y, i) > 0.f ? ld(dy, i) : 0.f);
}
template <typename T> __global__ void add_kernel(T *y, const T *a, const T *b, size_t n) {
  GRID_STRIDE(i, n) st(y, i, b ? ld(a, i) + ld(b, i) : ld(y, i) + ld(a, i));
}

/* The same on NHWC bf16, eight values (16 bytes) a thread: numel is a multiple of 8 there (8k channels). */
__global__ void relu_fwd8_kernel(uint16_t *y, const uint16_t *x, size_t n8) {
  GRID_STRIDE(v, n8) {
    float f[8];
    ld8(x, v, f);
    for (int j = 0; j < 8; j++) f[j] = f[j] < 0.f ? 0.f : f[j];
    st8(y, v, f);
  }
}
__global__ void relu_bwd8_kernel(uint16_t *dx, const uint16_t *dy, const uint16_t *y, size_t n8) {
  GRID_STRIDE(v, n8) {
    float g[8], f[8];
    ld8(dy, v, g);
    ld8(y, v, f);
    for (int j = 0; j < 8; j++) g[j] = f[j] > 0.f ? g[j] : 0.f;
    st8(dx, v, g);
  }
}
__global__ void add8_kernel(uint16_t *y, const uint16_t *a, const uint16_t *b, size_t n8) {
  GRID_STRIDE(v, n8) {
    float f[8], g[8];
    ld8(a, v, f);
    ld8(b ? b : y, v, g);
    for (int j = 0; j < 8; j++) f[j] += g[j];
    st8(y, v, f);
  }
}

/* dx = (a + b)·(y > 0): a block's input gradient, its two paths' sum masked by the previous block's ReLU. */
template <typename T> __global__ void add_relu_bwd_kernel(T *dx, const T *a, const T *b, const T *y, size_t n) {
  GRID_STRIDE(i, n) st(dx, i, ld(y, i) > 0.f ? ld(a, i) + ld(b, i) : 0.f);
}
__global__ void add_relu_bwd8_kernel(uint16_t *dx, const uint16_t *a, const uint16_t *b, const uint16_t *y, size_t n8) {
  GRID_STRIDE(v, n8) {
    float f[8], g[8], m[8];
    ld8(a, v, f);
    ld8(b, v, g);
    ld8(y, v, m);
    for (int j = 0; j < 8; j++) f[j] = m[j] > 0.f ? f[j] + g[j] : 0.f;
    st8(dx, v, f);
  }
}

/* Whether an NHWC bf16 op of n values can take the 16-byte kernels. */
static int vec8(size_t n, const void *a, const void *b, const void *c) { return n % 8 == 0 && aligned16(a, b, c); }

synco_status synco_cuda_relu_fwd(synco_backend *be, synco_tensor *y, const synco_tensor *x) {
  if (!x) return synco_fail(SYNCO_ERR_ARG, "cuda relu_fwd: x is missing");
  SYNCO_TRY(synco_cuda_check_act(be, x, "relu_fwd", "x", x->n, x->c, x->h, x->w));
  SYNCO_TRY(synco_cuda_check_act(be, y, "relu_fwd", "y", x->n, x->c, x->h, x->w));
  const size_t n = synco_tensor_numel(x);
  if (synco_cuda_is_nhwc(x) && vec8(n, x->data, y->data, y->data))
    relu_fwd8_kernel<<<grid_for(n / 8), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>((uint16_t *)y->data,
                                                                                       (const uint16_t *)x->data, n / 8);
  else if (synco_cuda_is_nhwc(x))
    relu_fwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>((uint16_t *)y->data,
                                                                                  (const uint16_t *)x->data, n);
  else
    relu_fwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>((float *)y->data,
                                                                                  (const float *)x->data, n);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *dy, const synco_tensor *y) {
  if (!y) return synco_fail(SYNCO_ERR_ARG, "cuda relu_bwd: y is missing");
  SYNCO_TRY(synco_cuda_check_act(be, y, "relu_bwd", "y", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check_act(be, dy, "relu_bwd", "dy", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check_act(be, dx, "relu_bwd", "dx", y->n, y->c, y->h, y->w));
  const size_t n = synco_tensor_numel(y);
  if (synco_cuda_is_nhwc(y) && vec8(n, dx->data, dy->data, y->data))
    relu_bwd8_kernel<<<grid_for(n / 8), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)dx->data, (const uint16_t *)dy->data, (const uint16_t *)y->data, n / 8);
  else if (synco_cuda_is_nhwc(y))
    relu_bwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)dx->data, (const uint16_t *)dy->data, (const uint16_t *)y->data, n);
  else
    relu_bwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (float *)dx->data, (const float *)dy->data, (const float *)y->data, n);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}

synco_status synco_cuda_add(synco_backend *be, synco_tensor *y, const synco_tensor *a, const synco_tensor *b,
                            int accumulate) {
  if (!a) return synco_fail(SYNCO_ERR_ARG, "cuda add: a is missing");
  SYNCO_TRY(synco_cuda_check_act(be, a, "add", "a", a->n, a->c, a->h, a->w));
  SYNCO_TRY(synco_cuda_check_act(be, y, "add", "y", a->n, a->c, a->h, a->w));
  if (!accumulate) SYNCO_TRY(synco_cuda_check_act(be, b, "add", "b", a->n, a->c, a->h, a->w));
  const size_t n = synco_tensor_numel(a);
  const void *bd = accumulate ? y->data : b->data;
  if (synco_cuda_is_nhwc(a) && vec8(n, y->data, a->data, bd))
    add8_kernel<<<grid_for(n / 8), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)y->data, (const uint16_t *)a->data, accumulate ? NULL : (const uint16_t *)b->data, n / 8);
  else if (synco_cuda_is_nhwc(a))
    add_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, synco_cuda_stream(be)>>>(
        (uint16_t *)y->data, (const uint16_t *)a->data, accumulate ? NULL : (const uint16_t *)b->data, n);
  else
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

synco_status synco_cuda_add_relu_bwd(synco_backend *be, synco_tensor *dx, const synco_tensor *a, const synco_tensor *b,
                                     const synco_tensor *y) {
  if (!y) return synco_fail(SYNCO_ERR_ARG, "cuda add_relu_bwd: y is missing");
  SYNCO_TRY(synco_cuda_check_act(be, y, "add_relu_bwd", "y", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check_act(be, a, "add_relu_bwd", "a", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check_act(be, b, "add_relu_bwd", "b", y->n, y->c, y->h, y->w));
  SYNCO_TRY(synco_cuda_check_act(be, dx, "add_relu_bwd", "dx", y->n, y->c, y->h, y->w));
  const size_t n = synco_tensor_numel(y);
  cudaStream_t s = synco_cuda_stream(be);
  if (synco_cuda_is_nhwc(y) && vec8(n, dx->data, a->data, b->data) && vec8(n, y->data, y->data, y->data))
    add_relu_bwd8_kernel<<<grid_for(n / 8), SYNCO_CUDA_THREADS, 0, s>>>(
        (uint16_t *)dx->data, (const uint16_t *)a->data, (const uint16_t *)b->data, (const uint16_t *)y->data, n / 8);
  else if (synco_cuda_is_nhwc(y))
    add_relu_bwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, s>>>(
        (uint16_t *)dx->data, (const uint16_t *)a->data, (const uint16_t *)b->data, (const uint16_t *)y->data, n);
  else
    add_relu_bwd_kernel<<<grid_for(n), SYNCO_CUDA_THREADS, 0, s>>>(
        (float *)dx->data, (const float *)a->data, (const float *)b->data, (const float *)y->data, n);
  SYNCO_LAUNCHED();
  return SYNCO_OK;
}
