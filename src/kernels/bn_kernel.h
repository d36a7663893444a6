/* Batch norm as split reductions, single-source (see kernels/hd.h): the pieces the CUDA backend's split kernels
 * (backend/cuda/cuda_layers.cu) run per thread and per slice, so that a CPU test (tests/unit/test_bn_split.c) runs
 * the same index arithmetic and formulas over every thread of every block and checks them against the reference
 * backend's BN. Layout: PLAIN NCHW; a slice is one (group, channel): the ng images of group g, channel c, hw pixels
 * each; it is cut into S runs of whole images, one block each. */
#ifndef SYNCO_KERNELS_BN_KERNEL_H
#define SYNCO_KERNELS_BN_KERNEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/bf16_kernel.h"
#include "kernels/hd.h"

#define SYNCO_K_BN_TARGET_BLOCKS 1024 /* the split stops once the runs make this many blocks (8 per SM of an H200) */
#define SYNCO_K_BN_MIN_RUN 2048       /* values per run below which a slice is not split further */

/* Runs per slice for gc = groups·channels slices of ng images of hw pixels: doubled while the blocks are fewer
 * than the target, each run keeping at least SYNCO_K_BN_MIN_RUN values and one image. A function of the shape
 * alone, so results do not depend on the GPU. */
SYNCO_HD static inline int synco_k_bn_runs(int gc, int ng, long hw) {
  int S = 1;
  while ((long)gc * S < SYNCO_K_BN_TARGET_BLOCKS && 2 * S <= ng && (long)(ng / (2 * S)) * hw >= SYNCO_K_BN_MIN_RUN)
    S *= 2;
  return S;
}

/* Index of value e of slice (g, c): image g·ng + e / hw, pixel e % hw (32-bit: the tensor is below 2^31 values). */
SYNCO_HD static inline unsigned synco_k_bn_at(int g, int ng, int C, int c, unsigned hw, unsigned e) {
  return ((unsigned)(g * ng) + e / hw) * (unsigned)C * hw + (unsigned)c * hw + e % hw;
}

/* Run s of S: the values [*first, *first + *count) of its slice (images ng·s/S .. ng·(s+1)/S). */
SYNCO_HD static inline void synco_k_bn_run(int ng, int S, int s, unsigned hw, unsigned *first, unsigned *count) {
  const int i0 = (int)((long)ng * s / S), i1 = (int)((long)ng * (s + 1) / S);
  *first = (unsigned)i0 * hw;
  *count = (unsigned)(i1 - i0) * hw;
}

/* The slice (g·C + c) of row r = image·C + channel of the whole tensor. */
SYNCO_HD static inline int synco_k_bn_slice(unsigned row, int C, int ng) {
  const unsigned n = row / (unsigned)C, c = row - n * (unsigned)C;
  return (int)(n / (unsigned)ng) * C + (int)c;
}

/* Thread t of nt over a run: Σ (x − p) and Σ (x − p)² in float (p: the slice's first value). */
SYNCO_HD static inline void synco_k_bn_thread_stats(const float *x, int g, int ng, int C, int c, unsigned hw,
                                                    unsigned first, unsigned count, float p, unsigned t, unsigned nt,
                                                    float *a, float *q) {
  float sa = 0.f, sq = 0.f;
  for (unsigned e = t; e < count; e += nt) {
    const float d = x[synco_k_bn_at(g, ng, C, c, hw, first + e)] - p;
    sa += d;
    sq = fmaf(d, d, sq);
  }
  *a = sa;
  *q = sq;
}

/* Coefficients per slice (SYNCO_K_BN_COEF floats). The mean is kept as two floats (hi + lo: the double's first 48
 * bits) and x is centred as (x − hi) − lo, so that y = (x − μ)·γ·is + β keeps its precision when |μ| is large
 * against the spread (x·scale + shift, or a float μ, would cancel there). Forward: (hi, lo, γ·is, β); backward:
 * (hi, lo, a, b, c) of dx = a·dy' + b·(x − μ) + c. */
#define SYNCO_K_BN_COEF 5

SYNCO_HD static inline void synco_k_bn_split_mean(double mean, float *coef) {
  coef[0] = (float)mean;
  coef[1] = (float)(mean - (double)coef[0]);
}
SYNCO_HD static inline float synco_k_bn_centre(float x, const float *coef) { return (x - coef[0]) - coef[1]; }

/* A slice's statistics from its runs' sums (runs[2s], runs[2s + 1], added in order): save_mean, save_invstd, the
 * mean and unbiased variance for the running statistics (part[0], part[1]), and the forward's coefficients. */
SYNCO_HD static inline void synco_k_bn_stats_finish(const double *runs, int S, float p, double m, float eps, float gamma,
                                                    float beta, float *save_mean, float *save_invstd, double *part,
                                                    float *coef) {
  double sa = 0.0, sq = 0.0;
  for (int s = 0; s < S; s++) {
    sa += runs[2 * s];
    sq += runs[2 * s + 1];
  }
  const double d = sa / m, mean = p + d;
  double var = sq / m - d * d;
  var = var > 0.0 ? var : 0.0;
  const double invstd = 1.0 / sqrt(var + eps);
  *save_mean = (float)mean;
  *save_invstd = (float)invstd;
  part[0] = mean;
  part[1] = var * m / (m - 1.0);
  synco_k_bn_split_mean(mean, coef);
  coef[2] = (float)(gamma * invstd);
  coef[3] = beta;
}

/* Thread t of nt over a run of the backward: Σ dy' and Σ dy'·(x − mean), dy' = dy masked by y > 0 (y non-NULL:
 * the fused ReLU). */
SYNCO_HD static inline void synco_k_bn_thread_bwd(const float *dy, const float *y, const float *x, int g, int ng,
                                                  int C, int c, unsigned hw, unsigned first, unsigned count, float mean,
                                                  unsigned t, unsigned nt, float *a, float *b) {
  float sa = 0.f, sb = 0.f;
  for (unsigned e = t; e < count; e += nt) {
    const unsigned at = synco_k_bn_at(g, ng, C, c, hw, first + e);
    const float gr = (y && !(y[at] > 0.f)) ? 0.f : dy[at];
    sa += gr;
    sb = fmaf(gr, x[at] - mean, sb);
  }
  *a = sa;
  *b = sb;
}

/* A slice's backward from its runs' sums: dgamma, dbeta of the slice (part[0], part[1]) and the coefficients of
 * dx = a·dy' + b·(x − μ) + c: dx = γ·is·(dy' − Σdy'/m − (x − μ)·is²·Σdy'(x − μ)/m). */
SYNCO_HD static inline void synco_k_bn_bwd_finish(const double *runs, int S, double m, float gamma, float mean,
                                                  float invstd, double *part, float *coef) {
  /* the saved mean is a float: it is the μ of the sums (thread_bwd centres on it) and of dx */
  double sg = 0.0, sgx = 0.0;
  for (int s = 0; s < S; s++) {
    sg += runs[2 * s];
    sgx += runs[2 * s + 1];
  }
  const double is = invstd, gm = gamma;
  part[0] = sgx * is;
  part[1] = sg;
  synco_k_bn_split_mean(mean, coef);
  coef[2] = (float)(gm * is);
  coef[3] = (float)(-gm * is * is * is * sgx / m);
  coef[4] = (float)(-gm * is * sg / m);
}

/* One value of the forward's normalization (then ReLU) and of the backward's dx. */
SYNCO_HD static inline float synco_k_bn_apply(float x, const float *coef, int relu) {
  const float v = fmaf(synco_k_bn_centre(x, coef), coef[2], coef[3]);
  return relu && v < 0.f ? 0.f : v; /* NaN stays NaN, as torch's ReLU (fmaxf would make it 0) */
}
SYNCO_HD static inline float synco_k_bn_bwd_apply(float dy, float y, int relu, float x, const float *coef) {
  const float gr = (relu && !(y > 0.f)) ? 0.f : dy;
  return fmaf(coef[2], gr, fmaf(coef[3], synco_k_bn_centre(x, coef), coef[4]));
}

/* ---- channels last, bf16 values (the cuda backend's NHWC bf16 activations) ----
 * A slice (g, c) is channel c of the rows (pixels) g·ng·hw .. (g + 1)·ng·hw − 1; a run is a range of whole images
 * of it as above (synco_k_bn_run, in rows). A block covers one run of up to 32 channels side by side (a thread per
 * channel and row lane), so the runs per slice come from the groups times the blocks of 32 channels. Statistics,
 * coefficients and the elementwise formulas are the ones above: only the indices and the bf16 loads differ. */
#define SYNCO_K_BN_NHWC_CH 32  /* channels of a block */
#define SYNCO_K_BN_NHWC_ROWS 8 /* row lanes of a block */

SYNCO_HD static inline int synco_k_bn_nhwc_runs(int groups, int C, int ng, long hw) {
  return synco_k_bn_runs(groups * ((C + SYNCO_K_BN_NHWC_CH - 1) / SYNCO_K_BN_NHWC_CH), ng, hw);
}

/* The value of row `row`, channel c of an NHWC bf16 tensor of C channels. */
SYNCO_HD static inline float synco_k_bn_nhwc_at(const uint16_t *x, size_t row, int C, int c) {
  return synco_k_f32_of_bf16(x[row * (size_t)C + c]);
}

/* Row lane t of nt over a run of count rows from row0: Σ (x − p) and Σ (x − p)² of channel c, in float. */
SYNCO_HD static inline void synco_k_bn_nhwc_thread_stats(const uint16_t *x, size_t row0, unsigned count, int C, int c,
                                                         float p, unsigned t, unsigned nt, float *a, float *q) {
  float sa = 0.f, sq = 0.f;
  for (unsigned e = t; e < count; e += nt) {
    const float d = synco_k_bn_nhwc_at(x, row0 + e, C, c) - p;
    sa += d;
    sq = fmaf(d, d, sq);
  }
  *a = sa;
  *q = sq;
}

/* Row lane t of nt over a run of the backward: Σ dy' and Σ dy'·(x − mean) of channel c (y non-NULL: the ReLU). */
SYNCO_HD static inline void synco_k_bn_nhwc_thread_bwd(const uint16_t *dy, const uint16_t *y, const uint16_t *x,
                                                       size_t row0, unsigned count, int C, int c, float mean,
                                                       unsigned t, unsigned nt, float *a, float *b) {
  float sa = 0.f, sb = 0.f;
  for (unsigned e = t; e < count; e += nt) {
    const size_t r = row0 + e;
    const float gr = (y && !(synco_k_bn_nhwc_at(y, r, C, c) > 0.f)) ? 0.f : synco_k_bn_nhwc_at(dy, r, C, c);
    sa += gr;
    sb = fmaf(gr, synco_k_bn_nhwc_at(x, r, C, c) - mean, sb);
  }
  *a = sa;
  *b = sb;
}

/* The slice (g·C + c) of NHWC element e (C channels, ng·hw rows a group). */
SYNCO_HD static inline int synco_k_bn_nhwc_slice(size_t e, int C, int ng, unsigned hw) {
  const size_t row = e / (size_t)C;
  return (int)(row / ((size_t)ng * hw)) * C + (int)(e % (size_t)C);
}

#endif
