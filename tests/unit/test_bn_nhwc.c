/* The CUDA backend's batch norm on NHWC bf16 activations (--precision bf16; backend/cuda/cuda_layers.cu), run here
 * on the CPU: every block (a run of whole images of one group, 32 channels side by side) and every thread of it (a
 * channel and one of 8 row lanes) go through the single-source pieces of kernels/bn_kernel.h in plain loops, the
 * block's 8 row lanes added in order as the kernel's first lane adds them, then a thread per slice makes the
 * statistics and the elementwise passes round their results to bf16. Compared with the reference backend's BN of
 * the same bf16-rounded inputs, in NCHW: the saved statistics and running statistics within 2e-5 + 2e-5·|ref|; y
 * and dx within one bf16 step of the reference rounded the same way (1e-5 + 2^-7·|ref|; dx 1e-4 + 1e-2·|ref|,
 * whose sums cancel), dgamma and dbeta within 1e-4 + 1e-3·|ref|. Shapes: channels that fill one block, two, and a
 * part of one (40 and 24: 8 idle threads), Split-BN with uneven runs, values far from 0, and the fused ReLU. A
 * wrong row or channel index, a group's rows taken from another, or a slice's first value from the wrong place
 * is off by the values themselves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "kernels/bf16_kernel.h"
#include "kernels/bn_kernel.h"
#include "test_util.h"

enum { CH = SYNCO_K_BN_NHWC_CH, ROWS = SYNCO_K_BN_NHWC_ROWS };

typedef struct {
  int n, c, h, w, groups, relu;
  float offset;
} shape;

/* Every block of the GPU's grid (run s, group g, channel block cb) and its threads: runs [(g·C + c)·S + s][2]. */
static void run_sums(double *runs, const shape *s, int S, int bwd, const uint16_t *x, const uint16_t *dy,
                     const uint16_t *y, const float *save_mean) {
  const int C = s->c, G = s->groups, ng = s->n / G;
  const unsigned hw = (unsigned)(s->h * s->w);
  for (int r = 0; r < S; r++)
    for (int g = 0; g < G; g++)
      for (int cb = 0; cb < (C + CH - 1) / CH; cb++) {
        unsigned first, count;
        synco_k_bn_run(ng, S, r, hw, &first, &count);
        const size_t row0 = (size_t)g * ng * hw;
        for (int tx = 0; tx < CH; tx++) {
          const int c = cb * CH + tx;
          if (c >= C) continue;
          float a[ROWS], q[ROWS];
          for (int ty = 0; ty < ROWS; ty++) {
            if (bwd)
              synco_k_bn_nhwc_thread_bwd(dy, y, x, row0 + first, count, C, c, save_mean[g * C + c], ty, ROWS, &a[ty],
                                         &q[ty]);
            else
              synco_k_bn_nhwc_thread_stats(x, row0 + first, count, C, c, synco_k_bn_nhwc_at(x, row0, C, c), ty, ROWS,
                                           &a[ty], &q[ty]);
          }
          double sa = 0.0, sq = 0.0;
          for (int ty = 0; ty < ROWS; ty++) sa += a[ty], sq += q[ty];
          runs[((size_t)(g * C + c) * S + r) * 2] = sa;
          runs[((size_t)(g * C + c) * S + r) * 2 + 1] = sq;
        }
      }
}

static uint16_t *to_nhwc16(const float *x, int n, int c, int hw) {
  uint16_t *d = malloc((size_t)n * c * hw * 2);
  synco_k_to_nhwc16(d, x, n, c, hw);
  return d;
}

static float *from_nhwc16(const uint16_t *x, int n, int c, int hw) {
  float *d = malloc((size_t)n * c * hw * 4);
  synco_k_from_nhwc16(d, x, n, c, hw, 0);
  return d;
}

static float *rounded(const float *x, size_t n) {
  float *r = malloc(n * 4);
  for (size_t i = 0; i < n; i++) r[i] = synco_k_f32_of_bf16(synco_k_bf16_of(x[i]));
  return r;
}

static void one_shape(synco_backend *ref, const shape *s) {
  const int C = s->c, G = s->groups, ng = s->n / G, gcs = G * C, hw = s->h * s->w;
  const size_t total = (size_t)s->n * C * hw;
  const int S = synco_k_bn_nhwc_runs(G, C, ng, hw);
  printf("bn nhwc: %dx%dx%dx%d, %d group%s%s: %d run%s per slice\n", s->n, C, s->h, s->w, G, G > 1 ? "s" : "",
         s->relu ? ", ReLU" : "", S, S > 1 ? "s" : "");
  float *x = malloc(total * 4), *dy = malloc(total * 4), *y_ref = malloc(total * 4), *dx_ref = malloc(total * 4);
  synco_test_fill(x, total, 17, -1.5f, 2.5f);
  for (size_t i = 0; i < total; i++) x[i] += s->offset;
  synco_test_fill(dy, total, 18, -1, 1);
  float *xr = rounded(x, total), *dyr = rounded(dy, total);
  float gamma[64], beta[64], rm_ref[64], rv_ref[64], rm[64], rv[64], dg_ref[64] = {0}, db_ref[64] = {0};
  float dg[64] = {0}, db[64] = {0};
  synco_test_fill(gamma, C, 19, 0.5f, 1.5f);
  synco_test_fill(beta, C, 20, -0.5f, 0.5f);
  for (int c = 0; c < C; c++) rm_ref[c] = rm[c] = 0.1f * c, rv_ref[c] = rv[c] = 1.0f + 0.1f * c;
  float *sm_ref = malloc(gcs * 4), *si_ref = malloc(gcs * 4), *sm = malloc(gcs * 4), *si = malloc(gcs * 4);
  double *runs = malloc((size_t)gcs * S * 2 * sizeof(double)), *part = malloc((size_t)gcs * 2 * sizeof(double));
  float *coef = malloc((size_t)gcs * SYNCO_K_BN_COEF * sizeof(float));

  /* the reference, on the bf16-rounded inputs, its y and dx rounded as the GPU's stores round them */
  synco_bn_op op = {.n = s->n, .c = C, .h = s->h, .w = s->w, .groups = G, .relu = s->relu, .eps = 1e-5f,
                    .momentum = 0.1f, .dtype = SYNCO_F32};
  CHECK_OK(ref->bn_plan(ref, &op));
  synco_tensor tx = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, xr};
  synco_tensor ty = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, y_ref};
  synco_tensor tdy = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, dyr};
  synco_tensor tdx = {s->n, C, s->h, s->w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, dx_ref};
  CHECK_OK(ref->bn_fwd_train(ref, &op, &ty, sm_ref, si_ref, rm_ref, rv_ref, &tx, gamma, beta));
  CHECK_OK(ref->bn_bwd(ref, &op, &tdx, dg_ref, db_ref, &tdy, &ty, &tx, gamma, sm_ref, si_ref));
  ref->bn_release(ref, &op);
  float *y_ref16 = rounded(y_ref, total), *dx_ref16 = rounded(dx_ref, total);

  /* forward as the GPU runs it */
  uint16_t *x16 = to_nhwc16(x, s->n, C, hw), *dy16 = to_nhwc16(dy, s->n, C, hw), *y16 = malloc(total * 2);
  uint16_t *dx16 = malloc(total * 2);
  run_sums(runs, s, S, 0, x16, NULL, NULL, NULL);
  for (int gc = 0; gc < gcs; gc++) {
    const int g = gc / C, c = gc % C;
    synco_k_bn_stats_finish(runs + (size_t)gc * S * 2, S, synco_k_bn_nhwc_at(x16, (size_t)g * ng * hw, C, c),
                            (double)ng * hw, op.eps, gamma[c], beta[c], &sm[gc], &si[gc], &part[2 * gc],
                            &coef[SYNCO_K_BN_COEF * gc]);
  }
  for (size_t e = 0; e < total; e++)
    y16[e] = synco_k_bf16_of(synco_k_bn_apply(synco_k_f32_of_bf16(x16[e]),
                                              coef + SYNCO_K_BN_COEF * synco_k_bn_nhwc_slice(e, C, ng, hw), s->relu));
  for (int c = 0; c < C; c++) {
    double ms = 0, vs = 0;
    for (int g = 0; g < G; g++) ms += part[2 * (g * C + c)], vs += part[2 * (g * C + c) + 1];
    rm[c] = (float)((1.0 - op.momentum) * rm[c] + op.momentum * (ms / G));
    rv[c] = (float)((1.0 - op.momentum) * rv[c] + op.momentum * (vs / G));
  }
  float *y = from_nhwc16(y16, s->n, C, hw);
  CHECK_CLOSE("nhwc save_mean", sm, sm_ref, gcs, 2e-5, 2e-5);
  CHECK_CLOSE("nhwc save_invstd", si, si_ref, gcs, 2e-5, 2e-5);
  CHECK_CLOSE("nhwc running_mean", rm, rm_ref, C, 2e-5, 2e-5);
  CHECK_CLOSE("nhwc running_var", rv, rv_ref, C, 2e-5, 2e-5);
  CHECK_CLOSE("nhwc y", y, y_ref16, total, 1e-5, 1.0 / 128);

  /* backward, from the reference's saved statistics and this y */
  run_sums(runs, s, S, 1, x16, dy16, s->relu ? y16 : NULL, sm_ref);
  for (int gc = 0; gc < gcs; gc++)
    synco_k_bn_bwd_finish(runs + (size_t)gc * S * 2, S, (double)ng * hw, gamma[gc % C], sm_ref[gc], si_ref[gc],
                          &part[2 * gc], &coef[SYNCO_K_BN_COEF * gc]);
  for (int c = 0; c < C; c++) {
    double a = 0, b = 0;
    for (int g = 0; g < G; g++) a += part[2 * (g * C + c)], b += part[2 * (g * C + c) + 1];
    dg[c] = (float)a;
    db[c] = (float)b;
  }
  for (size_t e = 0; e < total; e++)
    dx16[e] = synco_k_bf16_of(synco_k_bn_bwd_apply(synco_k_f32_of_bf16(dy16[e]), synco_k_f32_of_bf16(y16[e]), s->relu,
                                                   synco_k_f32_of_bf16(x16[e]),
                                                   coef + SYNCO_K_BN_COEF * synco_k_bn_nhwc_slice(e, C, ng, hw)));
  float *dx = from_nhwc16(dx16, s->n, C, hw);
  CHECK_CLOSE("nhwc dx", dx, dx_ref16, total, 1e-4, 1e-2);
  CHECK_CLOSE("nhwc dgamma", dg, dg_ref, C, 1e-4, 1e-3);
  CHECK_CLOSE("nhwc dbeta", db, db_ref, C, 1e-4, 1e-3);
  free(x), free(dy), free(y_ref), free(dx_ref), free(xr), free(dyr), free(sm_ref), free(si_ref), free(sm), free(si);
  free(runs), free(part), free(coef), free(y_ref16), free(dx_ref16), free(x16), free(dy16), free(y16), free(dx16);
  free(y), free(dx);
}

int main(void) {
  synco_backend *ref = NULL;
  CHECK_OK(synco_backend_ref_create(&ref));
  if (!ref) return synco_test_finish("bn_nhwc");
  const shape shapes[] = {
      {64, 32, 16, 16, 1, 0, 0.f},   /* one channel block, several runs */
      {54, 64, 8, 8, 2, 1, 0.f},     /* two channel blocks, 27 images a group: uneven runs */
      {16, 40, 5, 7, 2, 1, 0.f},     /* a part of a second block, rows of 35 */
      {128, 24, 4, 4, 8, 1, 0.f},    /* 4x4 maps, Split-BN of 8, 24 channels */
      {32, 16, 16, 16, 1, 1, 300.f}, /* far from 0 (bf16 keeps 3 digits: 300 ± 2) */
  };
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) one_shape(ref, &shapes[i]);
  synco_backend_destroy(ref);
  return synco_test_finish("bn_nhwc");
}
