/* The CUDA backend's batch norm as split reductions (backend/cuda/cuda_layers.cu), run here on the CPU: every block
 * of every run and every thread of each block go through the single-source pieces of kernels/bn_kernel.h (run
 * ranges, indices, per-thread float sums, the per-slice statistics and coefficients, the elementwise passes) in
 * plain loops, and the result is compared with the reference backend's BN (forward with the running statistics,
 * backward with dgamma and dbeta; plain and Split-BN, with and without the fused ReLU; slices cut into several runs,
 * uneven runs, rows not a multiple of 4, and values far from 0, where a variance of raw sums would cancel); a NaN
 * stays in its slice's outputs through the fused ReLU, as the reference's and torch's. The
 * block's double reduction is a sum in thread order here and a tree on the GPU: equal to rounding. Tolerances:
 * atol 2e-5 + rtol 2e-5 on y and the saved statistics, 1e-4 + 1e-3 on dx and the parameter gradients (sums). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "kernels/bn_kernel.h"
#include "test_util.h"

enum { THREADS = 256 };

typedef struct {
  int n, c, h, w, groups, relu;
  float offset; /* added to x: values far from 0 */
} shape;

/* The GPU's blocks and threads, in loops: runs [gc·S][2] of the forward (bwd = 0) or the backward (bwd = 1). */
static void run_sums(double *runs, const shape *s, int S, int bwd, const float *x, const float *dy, const float *y,
                     const float *save_mean) {
  const int C = s->c, ng = s->n / s->groups, gcs = s->groups * C;
  const unsigned hw = (unsigned)(s->h * s->w);
  for (int b = 0; b < gcs * S; b++) {
    const int gc = b / S, r = b % S, g = gc / C, c = gc % C;
    unsigned first, count;
    synco_k_bn_run(ng, S, r, hw, &first, &count);
    const float p = x[synco_k_bn_at(g, ng, C, c, hw, 0)];
    double sa = 0.0, sb = 0.0;
    for (unsigned t = 0; t < THREADS; t++) {
      float a, q;
      if (bwd) synco_k_bn_thread_bwd(dy, y, x, g, ng, C, c, hw, first, count, save_mean[gc], t, THREADS, &a, &q);
      else synco_k_bn_thread_stats(x, g, ng, C, c, hw, first, count, p, t, THREADS, &a, &q);
      sa += a;
      sb += q;
    }
    runs[2 * b] = sa;
    runs[2 * b + 1] = sb;
  }
}

/* The forward's statistics and coefficients and y, as the GPU's kernels make them (part [gc][2], coef [gc][COEF]). */
static void split_forward(float *y, float *sm, float *si, double *part, float *coef, const shape *s, const float *x,
                          const float *gamma, const float *beta, float eps) {
  const int C = s->c, ng = s->n / s->groups, gcs = s->groups * C;
  const unsigned hw = (unsigned)(s->h * s->w), total = (unsigned)(s->n * C) * hw;
  const int S = synco_k_bn_runs(gcs, ng, hw);
  double *runs = malloc((size_t)gcs * S * 2 * sizeof(double));
  run_sums(runs, s, S, 0, x, NULL, NULL, NULL);
  for (int gc = 0; gc < gcs; gc++) {
    const int g = gc / C, c = gc % C;
    synco_k_bn_stats_finish(runs + (size_t)gc * S * 2, S, x[synco_k_bn_at(g, ng, C, c, hw, 0)], (double)ng * hw, eps,
                            gamma[c], beta[c], &sm[gc], &si[gc], &part[2 * gc], &coef[SYNCO_K_BN_COEF * gc]);
  }
  for (unsigned e = 0; e < total; e++)
    y[e] = synco_k_bn_apply(x[e], coef + SYNCO_K_BN_COEF * synco_k_bn_slice(e / hw, C, ng), s->relu);
  free(runs);
}

/* A NaN in one slice makes that slice's y NaN (the fused ReLU keeps it, as the reference and torch do) and leaves
 * the other slices finite. */
static void nan_slice(void) {
  const shape s = {16, 2, 8, 8, 2, 1, 0.f};
  const unsigned hw = 64, total = 16 * 2 * 64;
  float x[16 * 2 * 64], y[16 * 2 * 64], gamma[2] = {1, 1}, beta[2] = {0.1f, -0.1f}, sm[4], si[4], coef[4 * SYNCO_K_BN_COEF];
  double part[8];
  synco_test_fill(x, total, 3, -1, 1);
  x[hw + 5] = NAN; /* image 0, channel 1: slice (group 0, channel 1) */
  split_forward(y, sm, si, part, coef, &s, x, gamma, beta, 1e-5f);
  int nan_in = 0, nan_out = 0;
  for (unsigned e = 0; e < total; e++) {
    const int slice = synco_k_bn_slice(e / hw, 2, 8);
    if (slice == 1) nan_in += isnan(y[e]) != 0;
    else nan_out += !isfinite(y[e]);
  }
  CHECK(nan_in == 8 * 64 && nan_out == 0);
}

static void one_shape(synco_backend *ref, const shape *s) {
  const int C = s->c, G = s->groups, ng = s->n / G, gcs = G * C;
  const unsigned hw = (unsigned)(s->h * s->w), total = (unsigned)(s->n * C) * hw;
  const int S = synco_k_bn_runs(gcs, ng, hw);
  printf("bn split: %dx%dx%dx%d, %d group%s%s: %d run%s per slice\n", s->n, C, s->h, s->w, G, G > 1 ? "s" : "",
         s->relu ? ", ReLU" : "", S, S > 1 ? "s" : "");
  float *x = malloc(total * sizeof(float)), *dy = malloc(total * sizeof(float));
  float *y_ref = malloc(total * sizeof(float)), *y = malloc(total * sizeof(float));
  float *dx_ref = malloc(total * sizeof(float)), *dx = malloc(total * sizeof(float));
  synco_test_fill(x, total, 7, -1.5f, 2.5f);
  for (unsigned i = 0; i < total; i++) x[i] += s->offset;
  synco_test_fill(dy, total, 8, -1, 1);
  float gamma[64], beta[64], rm_ref[64], rv_ref[64], rm[64], rv[64], dg_ref[64] = {0}, db_ref[64] = {0};
  float dg[64] = {0}, db[64] = {0};
  synco_test_fill(gamma, C, 9, 0.5f, 1.5f);
  synco_test_fill(beta, C, 10, -0.5f, 0.5f);
  for (int c = 0; c < C; c++) rm_ref[c] = rm[c] = 0.1f * c, rv_ref[c] = rv[c] = 1.0f + 0.1f * c;
  float *sm_ref = malloc(gcs * sizeof(float)), *si_ref = malloc(gcs * sizeof(float));
  float *sm = malloc(gcs * sizeof(float)), *si = malloc(gcs * sizeof(float));
  double *runs = malloc((size_t)gcs * S * 2 * sizeof(double)), *part = malloc((size_t)gcs * 2 * sizeof(double));
  float *coef = malloc((size_t)gcs * SYNCO_K_BN_COEF * sizeof(float));

  synco_bn_op op = {.n = s->n, .c = C, .h = s->h, .w = s->w, .groups = G, .relu = s->relu, .eps = 1e-5f,
                    .momentum = 0.1f, .dtype = SYNCO_F32};
  CHECK_OK(ref->bn_plan(ref, &op));
  synco_tensor tx = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, x};
  synco_tensor ty = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, y_ref};
  synco_tensor tdy = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, dy};
  synco_tensor tdx = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, dx_ref};
  CHECK_OK(ref->bn_fwd_train(ref, &op, &ty, sm_ref, si_ref, rm_ref, rv_ref, &tx, gamma, beta));
  CHECK_OK(ref->bn_bwd(ref, &op, &tdx, dg_ref, db_ref, &tdy, &ty, &tx, gamma, sm_ref, si_ref));
  ref->bn_release(ref, &op);

  /* forward: the runs, a thread per slice, the running statistics over groups in order, the elementwise pass */
  split_forward(y, sm, si, part, coef, s, x, gamma, beta, op.eps);
  for (int c = 0; c < C; c++) {
    double ms = 0, vs = 0;
    for (int g = 0; g < G; g++) ms += part[2 * (g * C + c)], vs += part[2 * (g * C + c) + 1];
    rm[c] = (float)((1.0 - op.momentum) * rm[c] + op.momentum * (ms / G));
    rv[c] = (float)((1.0 - op.momentum) * rv[c] + op.momentum * (vs / G));
  }
  CHECK_CLOSE("save_mean", sm, sm_ref, gcs, 2e-5, 2e-5);
  CHECK_CLOSE("save_invstd", si, si_ref, gcs, 2e-5, 2e-5);
  CHECK_CLOSE("running_mean", rm, rm_ref, C, 2e-5, 2e-5);
  CHECK_CLOSE("running_var", rv, rv_ref, C, 2e-5, 2e-5);
  CHECK_CLOSE("y", y, y_ref, total, 2e-5, 2e-5);

  /* backward, from the reference's saved statistics and y */
  run_sums(runs, s, S, 1, x, dy, s->relu ? y_ref : NULL, sm_ref);
  for (int gc = 0; gc < gcs; gc++)
    synco_k_bn_bwd_finish(runs + (size_t)gc * S * 2, S, (double)ng * hw, gamma[gc % C], sm_ref[gc], si_ref[gc],
                          &part[2 * gc], &coef[SYNCO_K_BN_COEF * gc]);
  for (int c = 0; c < C; c++) {
    double a = 0, b = 0;
    for (int g = 0; g < G; g++) a += part[2 * (g * C + c)], b += part[2 * (g * C + c) + 1];
    dg[c] = (float)a;
    db[c] = (float)b;
  }
  for (unsigned e = 0; e < total; e++)
    dx[e] = synco_k_bn_bwd_apply(dy[e], y_ref[e], s->relu, x[e], coef + SYNCO_K_BN_COEF * synco_k_bn_slice(e / hw, C, ng));
  CHECK_CLOSE("dx", dx, dx_ref, total, 1e-4, 1e-3);
  CHECK_CLOSE("dgamma", dg, dg_ref, C, 1e-4, 1e-3);
  CHECK_CLOSE("dbeta", db, db_ref, C, 1e-4, 1e-3);
  free(x), free(dy), free(y_ref), free(y), free(dx_ref), free(dx), free(sm_ref), free(si_ref), free(sm), free(si);
  free(runs), free(part), free(coef);
}

int main(void) {
  synco_backend *ref = NULL;
  CHECK_OK(synco_backend_ref_create(&ref));
  if (!ref) return synco_test_finish("bn_split");
  const shape shapes[] = {
      {64, 2, 16, 16, 1, 0, 0.f},    /* 8 runs per slice */
      {54, 3, 16, 16, 2, 1, 0.f},    /* 27 images per group: two uneven runs */
      {8, 5, 5, 7, 2, 1, 0.f},       /* rows of 35 (no float4), one run */
      {128, 4, 4, 4, 8, 1, 0.f},     /* 4x4 maps, Split-BN of 8 */
      {64, 2, 16, 16, 1, 1, 1000.f}, /* far from 0 */
  };
  CHECK(synco_k_bn_runs(2, 64, 256) == 8);
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) one_shape(ref, &shapes[i]);
  nan_slice();
  synco_backend_destroy(ref);
  return synco_test_finish("bn_split");
}
