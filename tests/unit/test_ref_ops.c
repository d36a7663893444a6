/* Tests of the reference backend (backend/ref), the truth every fast backend is compared to.
 * Every backward is checked against central finite differences of the scalar L = Σ R ⊙ y with a fixed
 * random R (ops run in float, L is summed in double). Kinks are kept out of the differences: ReLU gets
 * inputs at least 0.05 (> 2·eps) from zero and skips any element whose perturbation still flips the mask;
 * fused BN+ReLU is differenced with the ReLU mask of the unperturbed output held fixed; max pooling gets
 * inputs spaced 0.05 apart, so no window holds a near-tie. Besides the
 * gradients: convolution forward against a direct 7-loop convolution, BN running-statistic updates
 * (unbiased variance, Split-BN mean over groups), BN eval mode, max-pool tie and padding rules,
 * accumulation (+=) of parameter gradients, and the argument checks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/rng.h"
#include "base/status.h"
#include "tensor/backend.h"
#include "test_util.h"

static synco_backend *g_be;

static synco_tensor tensor(float *data, int n, int c, int h, int w) {
  synco_tensor t = {n, c, h, w, SYNCO_F32, SYNCO_LAYOUT_PLAIN, data};
  return t;
}

static float *alloc_fill(size_t n, unsigned seed, float lo, float hi) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  synco_test_fill(p, n, seed, lo, hi);
  return p;
}

/* ---- finite-difference harness ----------------------------------------------------------------- */

/* An op under test: fwd() recomputes y (ny floats) from the current inputs held in ctx. */
typedef struct {
  synco_status (*fwd)(void *ctx);
  void *ctx;
  const float *y;
  size_t ny;
  int relu_mask; /* 1: skip elements whose perturbation flips a ReLU */
} fd_op;

static double loss(const fd_op *op, const float *R) {
  double L = 0.0;
  for (size_t i = 0; i < op->ny; i++) L += (double)R[i] * op->y[i];
  return L;
}

/* Checks analytic[i] = dL/dparam[i] for up to max_checks elements of param (spread evenly). */
static void fd_check(const char *what, const fd_op *op, const float *R, float *param, size_t n,
                     const float *analytic, double eps, double atol, double rtol, size_t max_checks) {
  const size_t step = n > max_checks ? (n + max_checks - 1) / max_checks : 1;
  float *num = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
  unsigned char *mask = malloc(op->ny ? op->ny : 1);
  size_t checked = 0, skipped = 0;
  for (size_t i = 0; i < n; i += step) {
    const float v = param[i];
    param[i] = (float)(v + eps);
    CHECK_OK(op->fwd(op->ctx));
    const double lp = loss(op, R);
    if (op->relu_mask)
      for (size_t j = 0; j < op->ny; j++) mask[j] = op->y[j] > 0.f;
    param[i] = (float)(v - eps);
    CHECK_OK(op->fwd(op->ctx));
    const double lm = loss(op, R);
    param[i] = v;
    int kink = 0;
    if (op->relu_mask)
      for (size_t j = 0; j < op->ny && !kink; j++) kink = mask[j] != (op->y[j] > 0.f);
    if (kink) {
      skipped++;
      continue;
    }
    /* The perturbation is what float made of v ± eps. */
    const double h = (double)(float)(v + eps) - (double)(float)(v - eps);
    num[checked] = (float)((lp - lm) / h);
    ref[checked] = analytic[i];
    checked++;
  }
  CHECK_OK(op->fwd(op->ctx)); /* leave y as it was */
  CHECK(checked > 0);
  char label[160];
  snprintf(label, sizeof label, "%s (%zu checked, %zu skipped at kinks)", what, checked, skipped);
  /* The check must not become vacuous: at most a quarter skipped (half for a handful of elements). */
  const size_t tried = checked + skipped;
  if (skipped > (tried >= 20 ? tried / 4 : tried / 2)) {
    fprintf(stderr, "%s: too many elements skipped\n", label);
    synco_test_failures++;
  }
  if (getenv("SYNCO_TEST_VERBOSE")) printf("%s\n", label);
  CHECK_CLOSE(label, num, ref, checked, atol, rtol);
  free(num);
  free(ref);
  free(mask);
}

/* ---- convolution ------------------------------------------------------------------------------- */

typedef struct {
  synco_conv_op op;
  synco_tensor x, y;
  float *w;
} conv_ctx;

static synco_status conv_fwd(void *p) {
  conv_ctx *c = p;
  return g_be->conv_fwd(g_be, &c->op, &c->y, &c->x, c->w);
}

/* y[n][o][oy][ox] = Σ_c Σ_ki Σ_kj x[n][c][oy·s-p+ki][ox·s-p+kj] · w[o][c][ki][kj], in double. */
static void naive_conv(const synco_conv_op *op, const float *x, const float *w, float *y) {
  for (int n = 0; n < op->n; n++)
    for (int o = 0; o < op->cout; o++)
      for (int oy = 0; oy < op->oh; oy++)
        for (int ox = 0; ox < op->ow; ox++) {
          double s = 0.0;
          for (int c = 0; c < op->cin; c++)
            for (int ki = 0; ki < op->kh; ki++)
              for (int kj = 0; kj < op->kw; kj++) {
                const int iy = oy * op->stride - op->pad + ki, ix = ox * op->stride - op->pad + kj;
                if (iy < 0 || iy >= op->h || ix < 0 || ix >= op->w) continue;
                s += (double)x[((size_t)(n * op->cin + c) * op->h + iy) * op->w + ix] *
                     w[((size_t)(o * op->cin + c) * op->kh + ki) * op->kw + kj];
              }
          y[((size_t)(n * op->cout + o) * op->oh + oy) * op->ow + ox] = (float)s;
        }
}

static void test_conv(int n, int cin, int h, int cout, int k, int stride, int pad, unsigned seed, size_t checks) {
  char what[128];
  conv_ctx c;
  memset(&c, 0, sizeof c);
  c.op = (synco_conv_op){.n = n, .cin = cin, .h = h, .w = h, .cout = cout, .kh = k, .kw = k, .stride = stride,
                         .pad = pad, .dtype = SYNCO_F32};
  c.op.oh = synco_conv_out_size(h, k, stride, pad);
  c.op.ow = c.op.oh;
  CHECK_OK(g_be->conv_plan(g_be, &c.op));
  const size_t nx = (size_t)n * cin * h * h, ny = (size_t)n * cout * c.op.oh * c.op.ow, nw = (size_t)cout * cin * k * k;
  float *x = alloc_fill(nx, seed, -1.f, 1.f), *w = alloc_fill(nw, seed + 1, -0.5f, 0.5f);
  float *y = calloc(ny, sizeof(float)), *yref = calloc(ny, sizeof(float)), *R = alloc_fill(ny, seed + 2, -1.f, 1.f);
  float *dx = calloc(nx, sizeof(float)), *dw = calloc(nw, sizeof(float)), *dw2 = malloc(sizeof(float) * nw);
  c.x = tensor(x, n, cin, h, h);
  c.y = tensor(y, n, cout, c.op.oh, c.op.ow);
  c.w = w;

  CHECK_OK(conv_fwd(&c));
  naive_conv(&c.op, x, w, yref);
  snprintf(what, sizeof what, "conv %dx%d s%d p%d fwd vs naive", k, k, stride, pad);
  CHECK_CLOSE(what, y, yref, ny, 1e-5, 1e-5);

  /* dy = R makes dx, dw the gradients of L = Σ R ⊙ y. */
  synco_tensor dxt = tensor(dx, n, cin, h, h), dyt = tensor(R, n, cout, c.op.oh, c.op.ow);
  CHECK_OK(g_be->conv_bwd_data(g_be, &c.op, &dxt, &dyt, w));
  CHECK_OK(g_be->conv_bwd_weights(g_be, &c.op, dw, &dyt, &c.x));
  fd_op fop = {conv_fwd, &c, y, ny, 0};
  snprintf(what, sizeof what, "conv %dx%d s%d p%d dx", k, k, stride, pad);
  fd_check(what, &fop, R, x, nx, dx, 1e-2, 1e-3, 1e-2, checks);
  snprintf(what, sizeof what, "conv %dx%d s%d p%d dw", k, k, stride, pad);
  fd_check(what, &fop, R, w, nw, dw, 1e-2, 1e-3, 1e-2, checks);

  /* Parameter gradients accumulate: a second call adds the same amount again. */
  memcpy(dw2, dw, sizeof(float) * nw);
  CHECK_OK(g_be->conv_bwd_weights(g_be, &c.op, dw2, &dyt, &c.x));
  for (size_t i = 0; i < nw; i++) dw[i] *= 2.f;
  snprintf(what, sizeof what, "conv %dx%d s%d p%d dw accumulates", k, k, stride, pad);
  CHECK_CLOSE(what, dw2, dw, nw, 1e-5, 1e-5);

  /* Activation gradients assign: garbage in dx is overwritten. */
  float *dx2 = alloc_fill(nx, seed + 3, 100.f, 200.f);
  synco_tensor dx2t = tensor(dx2, n, cin, h, h);
  CHECK_OK(g_be->conv_bwd_data(g_be, &c.op, &dx2t, &dyt, w));
  snprintf(what, sizeof what, "conv %dx%d s%d p%d dx assigns", k, k, stride, pad);
  CHECK_CLOSE(what, dx2, dx, nx, 0, 0);

  g_be->conv_release(g_be, &c.op);
  CHECK(c.op.impl == NULL);
  free(x); free(w); free(y); free(yref); free(R); free(dx); free(dw); free(dw2); free(dx2);
}

/* ---- batch norm -------------------------------------------------------------------------------- */

typedef struct {
  synco_bn_op op;
  synco_tensor x, y;
  float *gamma, *beta, *mean, *invstd, *rm, *rv;
  /* With the fused ReLU, finite differences run on L = Σ R ⊙ mask ⊙ bn(x) with the ReLU mask of the
   * unperturbed output held fixed: exactly what the masked backward differentiates, and free of kinks
   * (shifting gamma or beta moves every output of a channel, so some always cross zero). */
  synco_bn_op lin_op; /* the same op without ReLU */
  synco_tensor z;     /* its output */
  const float *y0;    /* the unperturbed ReLU output, whose mask is held */
  float *ym;          /* mask ⊙ z */
} bn_ctx;

static synco_status bn_fwd(void *p) {
  bn_ctx *b = p;
  return g_be->bn_fwd_train(g_be, &b->op, &b->y, b->mean, b->invstd, b->rm, b->rv, &b->x, b->gamma, b->beta);
}

static synco_status bn_fwd_masked(void *p) {
  bn_ctx *b = p;
  SYNCO_TRY(g_be->bn_fwd_train(g_be, &b->lin_op, &b->z, b->mean, b->invstd, b->rm, b->rv, &b->x, b->gamma, b->beta));
  const float *z = b->z.data;
  for (size_t i = 0; i < synco_tensor_numel(&b->z); i++) b->ym[i] = b->y0[i] > 0.f ? z[i] : 0.f;
  return SYNCO_OK;
}

static void test_bn(int n, int c, int h, int groups, int relu, unsigned seed, size_t checks) {
  char what[128], tag[64];
  snprintf(tag, sizeof tag, "bn n%d c%d groups %d relu %d", n, c, groups, relu);
  bn_ctx b;
  memset(&b, 0, sizeof b);
  b.op = (synco_bn_op){.n = n, .c = c, .h = h, .w = h, .groups = groups, .relu = relu, .eps = 1e-5f,
                       .momentum = 0.1f, .dtype = SYNCO_F32};
  CHECK_OK(g_be->bn_plan(g_be, &b.op));
  const size_t nx = (size_t)n * c * h * h, hw = (size_t)h * h;
  float *x = alloc_fill(nx, seed, -1.f, 1.f);
  /* Give each channel its own offset and scale, so the statistics are not all alike. */
  for (size_t i = 0; i < nx; i++) {
    const int ch = (int)(i / hw) % c;
    x[i] = x[i] * (0.5f + 0.3f * ch) + 0.2f * ch - 0.3f;
  }
  b.gamma = alloc_fill(c, seed + 1, 0.5f, 1.5f);
  b.beta = alloc_fill(c, seed + 2, -0.3f, 0.3f);
  b.mean = calloc((size_t)groups * c, sizeof(float));
  b.invstd = calloc((size_t)groups * c, sizeof(float));
  b.rm = alloc_fill(c, seed + 3, -0.2f, 0.2f);
  b.rv = alloc_fill(c, seed + 4, 0.5f, 1.5f);
  float *rm0 = malloc(sizeof(float) * c), *rv0 = malloc(sizeof(float) * c);
  memcpy(rm0, b.rm, sizeof(float) * c);
  memcpy(rv0, b.rv, sizeof(float) * c);
  float *y = calloc(nx, sizeof(float)), *R = alloc_fill(nx, seed + 5, -1.f, 1.f);
  b.x = tensor(x, n, c, h, h);
  b.y = tensor(y, n, c, h, h);
  CHECK_OK(bn_fwd(&b));

  /* Saved statistics and running-statistic update, recomputed here in double. */
  const int ng = n / groups;
  const double m = (double)ng * hw;
  float *smean = malloc(sizeof(float) * groups * c), *sinv = malloc(sizeof(float) * groups * c);
  float *erm = malloc(sizeof(float) * c), *erv = malloc(sizeof(float) * c);
  float *yref = malloc(sizeof(float) * nx);
  for (int ch = 0; ch < c; ch++) {
    double mu_avg = 0, var_avg = 0;
    for (int g = 0; g < groups; g++) {
      double s = 0, s2 = 0;
      for (int i = g * ng; i < (g + 1) * ng; i++)
        for (size_t j = 0; j < hw; j++) s += x[((size_t)i * c + ch) * hw + j];
      const double mu = s / m;
      for (int i = g * ng; i < (g + 1) * ng; i++)
        for (size_t j = 0; j < hw; j++) {
          const double d = x[((size_t)i * c + ch) * hw + j] - mu;
          s2 += d * d;
        }
      smean[g * c + ch] = (float)mu;
      sinv[g * c + ch] = (float)(1.0 / sqrt(s2 / m + 1e-5));
      mu_avg += mu / groups;
      var_avg += s2 / (m - 1) / groups;
      for (int i = g * ng; i < (g + 1) * ng; i++)
        for (size_t j = 0; j < hw; j++) {
          const size_t o = ((size_t)i * c + ch) * hw + j;
          double v = (x[o] - mu) / sqrt(s2 / m + 1e-5) * b.gamma[ch] + b.beta[ch];
          yref[o] = (float)(relu && v < 0 ? 0 : v);
        }
    }
    erm[ch] = (float)(0.9 * rm0[ch] + 0.1 * mu_avg);
    erv[ch] = (float)(0.9 * rv0[ch] + 0.1 * var_avg);
  }
  snprintf(what, sizeof what, "%s: y", tag);
  CHECK_CLOSE(what, y, yref, nx, 1e-5, 1e-5);
  snprintf(what, sizeof what, "%s: saved mean", tag);
  CHECK_CLOSE(what, b.mean, smean, (size_t)groups * c, 1e-6, 1e-5);
  snprintf(what, sizeof what, "%s: saved invstd", tag);
  CHECK_CLOSE(what, b.invstd, sinv, (size_t)groups * c, 1e-6, 1e-5);
  snprintf(what, sizeof what, "%s: running mean", tag);
  CHECK_CLOSE(what, b.rm, erm, c, 1e-6, 1e-5);
  snprintf(what, sizeof what, "%s: running var (unbiased)", tag);
  CHECK_CLOSE(what, b.rv, erv, c, 1e-6, 1e-5);

  /* Eval mode normalizes with the running statistics. */
  float *ye = malloc(sizeof(float) * nx), *yeref = malloc(sizeof(float) * nx);
  synco_tensor yet = tensor(ye, n, c, h, h);
  CHECK_OK(g_be->bn_fwd_eval(g_be, &b.op, &yet, &b.x, b.gamma, b.beta, b.rm, b.rv));
  for (size_t i = 0; i < nx; i++) {
    const int ch = (int)(i / hw) % c;
    double v = (x[i] - b.rm[ch]) / sqrt((double)b.rv[ch] + 1e-5) * b.gamma[ch] + b.beta[ch];
    yeref[i] = (float)(relu && v < 0 ? 0 : v);
  }
  snprintf(what, sizeof what, "%s: eval uses running stats", tag);
  CHECK_CLOSE(what, ye, yeref, nx, 1e-5, 1e-5);

  /* Backward, then finite differences of x, gamma and beta. */
  float *dx = calloc(nx, sizeof(float)), *dg = calloc(c, sizeof(float)), *db = calloc(c, sizeof(float));
  synco_tensor dxt = tensor(dx, n, c, h, h), dyt = tensor(R, n, c, h, h);
  CHECK_OK(g_be->bn_bwd(g_be, &b.op, &dxt, dg, db, &dyt, &b.y, &b.x, b.gamma, b.mean, b.invstd));
  fd_op fop = {bn_fwd, &b, y, nx, 0};
  float *y0 = NULL, *zbuf = NULL;
  if (relu) {
    b.lin_op = b.op;
    b.lin_op.relu = 0;
    CHECK_OK(g_be->bn_plan(g_be, &b.lin_op));
    y0 = malloc(sizeof(float) * nx);
    memcpy(y0, y, sizeof(float) * nx);
    zbuf = calloc(nx, sizeof(float));
    b.z = tensor(zbuf, n, c, h, h);
    b.y0 = y0;
    b.ym = calloc(nx, sizeof(float));
    fop = (fd_op){bn_fwd_masked, &b, b.ym, nx, 0};
  }
  snprintf(what, sizeof what, "%s: dx", tag);
  fd_check(what, &fop, R, x, nx, dx, 1e-2, 1e-3, 1e-2, checks);
  snprintf(what, sizeof what, "%s: dgamma", tag);
  fd_check(what, &fop, R, b.gamma, c, dg, 1e-2, 1e-3, 1e-2, checks);
  snprintf(what, sizeof what, "%s: dbeta", tag);
  fd_check(what, &fop, R, b.beta, c, db, 1e-2, 1e-3, 1e-2, checks);

  /* dgamma and dbeta accumulate. */
  CHECK_OK(bn_fwd(&b));
  float *dg2 = malloc(sizeof(float) * c), *db2 = malloc(sizeof(float) * c);
  memcpy(dg2, dg, sizeof(float) * c);
  memcpy(db2, db, sizeof(float) * c);
  CHECK_OK(g_be->bn_bwd(g_be, &b.op, &dxt, dg2, db2, &dyt, &b.y, &b.x, b.gamma, b.mean, b.invstd));
  for (int ch = 0; ch < c; ch++) {
    dg[ch] *= 2.f;
    db[ch] *= 2.f;
  }
  snprintf(what, sizeof what, "%s: dgamma accumulates", tag);
  CHECK_CLOSE(what, dg2, dg, c, 1e-5, 1e-5);
  snprintf(what, sizeof what, "%s: dbeta accumulates", tag);
  CHECK_CLOSE(what, db2, db, c, 1e-5, 1e-5);

  g_be->bn_release(g_be, &b.op);
  if (relu) g_be->bn_release(g_be, &b.lin_op);
  free(y0); free(zbuf); free(b.ym);
  free(x); free(b.gamma); free(b.beta); free(b.mean); free(b.invstd); free(b.rm); free(b.rv); free(rm0); free(rv0);
  free(y); free(R); free(smean); free(sinv); free(erm); free(erv); free(yref); free(ye); free(yeref); free(dx);
  free(dg); free(db); free(dg2); free(db2);
}

/* ---- pooling ----------------------------------------------------------------------------------- */

typedef struct {
  synco_pool_op op;
  synco_tensor x, y;
} pool_ctx;

static synco_status maxpool_fwd(void *p) {
  pool_ctx *c = p;
  return g_be->maxpool_fwd(g_be, &c->op, &c->y, &c->x);
}

static void test_maxpool(int n, int c, int h, int k, int stride, int pad, unsigned seed) {
  char what[128];
  pool_ctx pc;
  memset(&pc, 0, sizeof pc);
  pc.op = (synco_pool_op){.n = n, .c = c, .h = h, .w = h, .k = k, .stride = stride, .pad = pad, .dtype = SYNCO_F32};
  CHECK_OK(g_be->pool_plan(g_be, &pc.op)); /* fills oh, ow */
  CHECK(pc.op.oh == synco_conv_out_size(h, k, stride, pad));
  const size_t nx = (size_t)n * c * h * h, ny = (size_t)n * c * pc.op.oh * pc.op.ow;
  /* Distinct values 0.05 apart in shuffled order: no window holds two within 2·eps of each other. */
  uint32_t *perm = malloc(sizeof(uint32_t) * nx);
  for (size_t i = 0; i < nx; i++) perm[i] = (uint32_t)i;
  synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_TEST);
  synco_rng_shuffle(&r, perm, (uint32_t)nx);
  float *x = malloc(sizeof(float) * nx);
  for (size_t i = 0; i < nx; i++) x[i] = 0.05f * (float)perm[i] - 0.025f * (float)nx;
  float *y = calloc(ny, sizeof(float)), *R = alloc_fill(ny, seed + 1, -1.f, 1.f), *dx = calloc(nx, sizeof(float));
  pc.x = tensor(x, n, c, h, h);
  pc.y = tensor(y, n, c, pc.op.oh, pc.op.ow);
  CHECK_OK(maxpool_fwd(&pc));
  synco_tensor dxt = tensor(dx, n, c, h, h), dyt = tensor(R, n, c, pc.op.oh, pc.op.ow);
  CHECK_OK(g_be->maxpool_bwd(g_be, &pc.op, &dxt, &dyt));
  fd_op fop = {maxpool_fwd, &pc, y, ny, 0};
  snprintf(what, sizeof what, "maxpool k%d s%d p%d dx", k, stride, pad);
  fd_check(what, &fop, R, x, nx, dx, 1e-2, 1e-3, 1e-2, 200);

  /* Padding never wins: an all-negative input pools to negative values. */
  for (size_t i = 0; i < nx; i++) x[i] = -1.f - (float)(i % 7);
  CHECK_OK(maxpool_fwd(&pc));
  int padding_won = 0;
  for (size_t i = 0; i < ny; i++) padding_won |= !(y[i] < 0.f);
  CHECK(!padding_won);

  /* Ties: the first in-image element of the window (row-major) wins, as in PyTorch. */
  for (size_t i = 0; i < nx; i++) x[i] = 1.f;
  for (size_t i = 0; i < ny; i++) R[i] = 1.f;
  CHECK_OK(maxpool_fwd(&pc));
  CHECK_OK(g_be->maxpool_bwd(g_be, &pc.op, &dxt, &dyt));
  float *dxref = calloc(nx, sizeof(float));
  for (int pl = 0; pl < n * c; pl++)
    for (int oy = 0; oy < pc.op.oh; oy++)
      for (int ox = 0; ox < pc.op.ow; ox++) {
        int iy = oy * stride - pad, ix = ox * stride - pad;
        if (iy < 0) iy = 0;
        if (ix < 0) ix = 0;
        dxref[(size_t)pl * h * h + (size_t)iy * h + ix] += 1.f;
      }
  snprintf(what, sizeof what, "maxpool k%d s%d p%d ties go to the first", k, stride, pad);
  CHECK_CLOSE(what, dx, dxref, nx, 0, 0);

  g_be->pool_release(g_be, &pc.op);
  CHECK(pc.op.impl == NULL);
  free(perm); free(x); free(y); free(R); free(dx); free(dxref);
}

typedef struct {
  synco_tensor x, y;
} unary_ctx;

static synco_status avgpool_fwd(void *p) {
  unary_ctx *u = p;
  return g_be->avgpool_fwd(g_be, &u->y, &u->x);
}

static void test_avgpool(void) {
  const int n = 3, c = 4, h = 5;
  const size_t nx = (size_t)n * c * h * h, ny = (size_t)n * c;
  float *x = alloc_fill(nx, 41, -1.f, 1.f), *y = calloc(ny, sizeof(float)), *R = alloc_fill(ny, 42, -1.f, 1.f);
  float *dx = alloc_fill(nx, 43, 5.f, 6.f);
  unary_ctx u = {tensor(x, n, c, h, h), tensor(y, n, c, 1, 1)};
  CHECK_OK(avgpool_fwd(&u));
  synco_tensor dxt = tensor(dx, n, c, h, h), dyt = tensor(R, n, c, 1, 1);
  CHECK_OK(g_be->avgpool_bwd(g_be, &dxt, &dyt));
  fd_op fop = {avgpool_fwd, &u, y, ny, 0};
  fd_check("avgpool dx", &fop, R, x, nx, dx, 1e-2, 1e-3, 1e-2, 200);
  free(x); free(y); free(R); free(dx);
}

/* ---- element-wise ------------------------------------------------------------------------------ */

static synco_status relu_fwd(void *p) {
  unary_ctx *u = p;
  return g_be->relu_fwd(g_be, &u->y, &u->x);
}

static void test_relu(void) {
  const int n = 2, c = 3, h = 4;
  const size_t nx = (size_t)n * c * h * h;
  /* Values at least 0.05 from the kink at zero (> 2·eps). */
  float *x = alloc_fill(nx, 51, -1.f, 1.f);
  for (size_t i = 0; i < nx; i++) x[i] += x[i] < 0 ? -0.05f : 0.05f;
  float *y = calloc(nx, sizeof(float)), *R = alloc_fill(nx, 52, -1.f, 1.f), *dx = calloc(nx, sizeof(float));
  unary_ctx u = {tensor(x, n, c, h, h), tensor(y, n, c, h, h)};
  CHECK_OK(relu_fwd(&u));
  synco_tensor dxt = tensor(dx, n, c, h, h), dyt = tensor(R, n, c, h, h);
  CHECK_OK(g_be->relu_bwd(g_be, &dxt, &dyt, &u.y));
  fd_op fop = {relu_fwd, &u, y, nx, 1};
  fd_check("relu dx", &fop, R, x, nx, dx, 1e-2, 1e-3, 1e-2, 200);

  /* In place, forward and backward. */
  float *z = malloc(sizeof(float) * nx), *g = malloc(sizeof(float) * nx);
  memcpy(z, x, sizeof(float) * nx);
  memcpy(g, R, sizeof(float) * nx);
  synco_tensor zt = tensor(z, n, c, h, h), gt = tensor(g, n, c, h, h);
  CHECK_OK(g_be->relu_fwd(g_be, &zt, &zt));
  CHECK_CLOSE("relu in place fwd", z, y, nx, 0, 0);
  CHECK_OK(g_be->relu_bwd(g_be, &gt, &gt, &zt));
  CHECK_CLOSE("relu in place bwd", g, dx, nx, 0, 0);
  free(x); free(y); free(R); free(dx); free(z); free(g);
}

typedef struct {
  synco_tensor a, b, y;
} add_ctx;

static synco_status add_fwd(void *p) {
  add_ctx *c = p;
  return g_be->add(g_be, &c->y, &c->a, &c->b, 0);
}

static void test_add(void) {
  const int n = 2, c = 3, h = 4;
  const size_t nx = (size_t)n * c * h * h;
  float *a = alloc_fill(nx, 61, -1.f, 1.f), *b = alloc_fill(nx, 62, -1.f, 1.f), *y = calloc(nx, sizeof(float));
  float *R = alloc_fill(nx, 63, -1.f, 1.f);
  add_ctx ac = {tensor(a, n, c, h, h), tensor(b, n, c, h, h), tensor(y, n, c, h, h)};
  CHECK_OK(add_fwd(&ac));
  fd_op fop = {add_fwd, &ac, y, nx, 0};
  /* dL/da = dL/db = R: the gradient passes through unchanged to both inputs. */
  fd_check("add da", &fop, R, a, nx, R, 1e-2, 1e-3, 1e-2, 200);
  fd_check("add db", &fop, R, b, nx, R, 1e-2, 1e-3, 1e-2, 200);
  /* accumulate = 1: y += a, b ignored (may be NULL). */
  float *expect = malloc(sizeof(float) * nx);
  for (size_t i = 0; i < nx; i++) expect[i] = y[i] + a[i];
  CHECK_OK(g_be->add(g_be, &ac.y, &ac.a, NULL, 1));
  CHECK_CLOSE("add accumulate", y, expect, nx, 0, 0);
  free(a); free(b); free(y); free(R); free(expect);
}

/* ---- matrices ---------------------------------------------------------------------------------- */

typedef struct {
  synco_tensor x, y;
  float *w, *b;
} linear_ctx;

static synco_status linear_fwd(void *p) {
  linear_ctx *l = p;
  return g_be->linear_fwd(g_be, &l->y, &l->x, l->w, l->b);
}

static void test_linear(void) {
  const int n = 5, in = 7, out = 6;
  float *x = alloc_fill((size_t)n * in, 71, -1.f, 1.f), *w = alloc_fill((size_t)out * in, 72, -0.5f, 0.5f);
  float *b = alloc_fill(out, 73, -0.5f, 0.5f), *y = calloc((size_t)n * out, sizeof(float));
  float *R = alloc_fill((size_t)n * out, 74, -1.f, 1.f);
  linear_ctx l = {tensor(x, n, in, 1, 1), tensor(y, n, out, 1, 1), w, b};
  CHECK_OK(linear_fwd(&l));
  float *yref = malloc(sizeof(float) * n * out);
  for (int i = 0; i < n; i++)
    for (int o = 0; o < out; o++) {
      double s = b[o];
      for (int j = 0; j < in; j++) s += (double)x[i * in + j] * w[o * in + j];
      yref[i * out + o] = (float)s;
    }
  CHECK_CLOSE("linear fwd", y, yref, (size_t)n * out, 1e-6, 1e-5);
  float *dx = calloc((size_t)n * in, sizeof(float)), *dw = calloc((size_t)out * in, sizeof(float));
  float *db = calloc(out, sizeof(float));
  synco_tensor dxt = tensor(dx, n, in, 1, 1), dyt = tensor(R, n, out, 1, 1);
  CHECK_OK(g_be->linear_bwd(g_be, &dxt, dw, db, &dyt, &l.x, w));
  fd_op fop = {linear_fwd, &l, y, (size_t)n * out, 0};
  fd_check("linear dx", &fop, R, x, (size_t)n * in, dx, 1e-2, 1e-3, 1e-2, 200);
  fd_check("linear dw", &fop, R, w, (size_t)out * in, dw, 1e-2, 1e-3, 1e-2, 200);
  fd_check("linear db", &fop, R, b, out, db, 1e-2, 1e-3, 1e-2, 200);
  /* dw, db accumulate; dx may be skipped. */
  float *dw2 = malloc(sizeof(float) * out * in), *db2 = malloc(sizeof(float) * out);
  memcpy(dw2, dw, sizeof(float) * out * in);
  memcpy(db2, db, sizeof(float) * out);
  CHECK_OK(g_be->linear_bwd(g_be, NULL, dw2, db2, &dyt, &l.x, w));
  for (int i = 0; i < out * in; i++) dw[i] *= 2.f;
  for (int i = 0; i < out; i++) db[i] *= 2.f;
  CHECK_CLOSE("linear dw accumulates", dw2, dw, (size_t)out * in, 1e-6, 1e-5);
  CHECK_CLOSE("linear db accumulates", db2, db, out, 1e-6, 1e-5);
  /* Without bias. */
  l.b = NULL;
  CHECK_OK(linear_fwd(&l));
  for (int i = 0; i < n; i++)
    for (int o = 0; o < out; o++) yref[i * out + o] -= b[o];
  CHECK_CLOSE("linear fwd without bias", y, yref, (size_t)n * out, 1e-6, 1e-5);
  free(x); free(w); free(b); free(y); free(R); free(yref); free(dx); free(dw); free(db); free(dw2); free(db2);
}

typedef struct {
  synco_tensor x, y;
  float *norms;
} l2_ctx;

static synco_status l2_fwd(void *p) {
  l2_ctx *l = p;
  return g_be->l2norm_fwd(g_be, &l->y, l->norms, &l->x);
}

static void test_l2norm(void) {
  const int n = 4, d = 9;
  float *x = alloc_fill((size_t)n * d, 81, -1.f, 1.f), *y = calloc((size_t)n * d, sizeof(float));
  float *R = alloc_fill((size_t)n * d, 82, -1.f, 1.f), *norms = calloc(n, sizeof(float));
  l2_ctx l = {tensor(x, n, d, 1, 1), tensor(y, n, d, 1, 1), norms};
  CHECK_OK(l2_fwd(&l));
  float *yref = malloc(sizeof(float) * n * d);
  for (int i = 0; i < n; i++) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
    for (int j = 0; j < d; j++) yref[i * d + j] = (float)(x[i * d + j] / sqrt(s));
  }
  CHECK_CLOSE("l2norm fwd", y, yref, (size_t)n * d, 1e-7, 1e-6);
  float *dx = calloc((size_t)n * d, sizeof(float));
  synco_tensor dxt = tensor(dx, n, d, 1, 1), dyt = tensor(R, n, d, 1, 1);
  CHECK_OK(g_be->l2norm_bwd(g_be, &dxt, &dyt, &l.y, norms));
  fd_op fop = {l2_fwd, &l, y, (size_t)n * d, 0};
  fd_check("l2norm dx", &fop, R, x, (size_t)n * d, dx, 1e-3, 1e-3, 1e-2, 1000);

  /* A zero row stays zero (the norm is clamped at 1e-12), as in torch.nn.functional.normalize. */
  for (int j = 0; j < d; j++) x[j] = 0.f;
  CHECK_OK(l2_fwd(&l));
  int finite_zero = 1;
  for (int j = 0; j < d; j++) finite_zero &= y[j] == 0.f;
  CHECK(finite_zero);
  free(x); free(y); free(R); free(norms); free(yref); free(dx);
}

/* ---- argument checks --------------------------------------------------------------------------- */

static void test_errors(void) {
  synco_conv_op cop = {.n = 2, .cin = 3, .h = 8, .w = 8, .cout = 4, .kh = 3, .kw = 3, .stride = 1, .pad = 1,
                       .dtype = SYNCO_BF16};
  CHECK(g_be->conv_plan(g_be, &cop) == SYNCO_ERR_UNSUPPORTED);
  synco_bn_op bop = {.n = 4, .c = 2, .h = 2, .w = 2, .groups = 2, .eps = 1e-5f, .momentum = 0.1f, .dtype = SYNCO_BF16};
  CHECK(g_be->bn_plan(g_be, &bop) == SYNCO_ERR_UNSUPPORTED);
  bop.dtype = SYNCO_F32;
  bop.groups = 3; /* 4 does not split into 3 */
  CHECK(g_be->bn_plan(g_be, &bop) == SYNCO_ERR_ARG);
  synco_pool_op pop = {.n = 1, .c = 1, .h = 8, .w = 8, .k = 3, .stride = 2, .pad = 1, .dtype = SYNCO_BF16};
  CHECK(g_be->pool_plan(g_be, &pop) == SYNCO_ERR_UNSUPPORTED);

  /* A tensor of the wrong shape is refused with a message, not read out of bounds. */
  cop.dtype = SYNCO_F32;
  cop.oh = cop.ow = 0;
  CHECK_OK(g_be->conv_plan(g_be, &cop));
  CHECK(cop.oh == 8 && cop.ow == 8);
  float buf[2 * 4 * 8 * 8] = {0}, wbuf[4 * 3 * 9] = {0};
  synco_tensor x = tensor(buf, 2, 3, 8, 8), y = tensor(buf, 2, 4, 7, 7);
  CHECK(g_be->conv_fwd(g_be, &cop, &y, &x, wbuf) == SYNCO_ERR_ARG);
  CHECK(strstr(synco_last_error(), "conv_fwd") != NULL);
  y.h = y.w = 8;
  y.layout = SYNCO_LAYOUT_NCHW8C;
  CHECK(g_be->conv_fwd(g_be, &cop, &y, &x, wbuf) == SYNCO_ERR_ARG);
  g_be->conv_release(g_be, &cop);

  /* Layout hooks: plain everywhere, bytes = numel · dtype size, copies both ways. */
  CHECK(g_be->act_layout(g_be, 64, 56, 56, SYNCO_F32) == SYNCO_LAYOUT_PLAIN);
  CHECK(g_be->act_bytes(g_be, 2, 3, 4, 5, SYNCO_F32) == 2 * 3 * 4 * 5 * 4);
  float src[6] = {1, 2, 3, 4, 5, 6}, mid[6], back[6];
  synco_tensor t = tensor(mid, 1, 6, 1, 1);
  CHECK_OK(g_be->to_backend(g_be, &t, src));
  CHECK_OK(g_be->to_plain(g_be, back, &t));
  CHECK_CLOSE("to_backend/to_plain round trip", back, src, 6, 0, 0);
}

/* memset and copy, below and above the size from which they split the bytes between the threads (256 KB), with
 * guard bytes on both sides: every byte written, none outside. */
static void test_memory(void) {
  const size_t sizes[] = {0, 1, 100, (1u << 18) - 1, 1u << 18, (1u << 20) + 3};
  const size_t guard = 64;
  for (int k = 0; k < (int)(sizeof sizes / sizeof sizes[0]); k++) {
    const size_t n = sizes[k];
    unsigned char *buf = g_be->alloc(g_be, n + 2 * guard), *src = malloc(n + 1);
    CHECK(buf && src);
    if (!buf || !src) return;
    memset(buf, 0xA5, n + 2 * guard);
    CHECK_OK(g_be->memset(g_be, buf + guard, 0x3C, n));
    size_t bad = 0;
    for (size_t i = 0; i < n + 2 * guard; i++) bad += buf[i] != (i >= guard && i < guard + n ? 0x3C : 0xA5);
    CHECK(bad == 0);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)(i * 7 + 1);
    CHECK_OK(g_be->copy(g_be, buf + guard, src, n, SYNCO_COPY_H2D));
    bad = 0;
    for (size_t i = 0; i < n + 2 * guard; i++)
      bad += buf[i] != (i >= guard && i < guard + n ? (unsigned char)((i - guard) * 7 + 1) : 0xA5);
    CHECK(bad == 0);
    g_be->free(g_be, buf);
    free(src);
  }
}

int main(void) {
  CHECK_OK(synco_backend_ref_create(&g_be)); /* directly: the test needs no other backend */
  if (!g_be) return synco_test_finish("test_ref_ops");
  CHECK(strcmp(g_be->name, "ref") == 0);

  /* n = 3 splits unevenly over threads; 1x1 s1 is the no-im2col path. */
  test_conv(3, 3, 9, 4, 3, 1, 1, 100, 150);
  test_conv(2, 4, 8, 5, 1, 2, 0, 110, 150);
  test_conv(3, 3, 11, 4, 7, 2, 3, 120, 150);
  test_conv(2, 3, 8, 4, 3, 2, 1, 130, 150);
  test_conv(3, 5, 6, 3, 1, 1, 0, 140, 150);
  test_conv(3, 4, 12, 8, 3, 1, 1, 150, 40); /* big enough to run on several threads (partial dw reduction) */

  test_bn(4, 3, 4, 1, 0, 200, 150);
  test_bn(4, 3, 4, 1, 1, 210, 150);
  test_bn(4, 3, 4, 2, 0, 220, 150);
  test_bn(4, 3, 4, 2, 1, 230, 150);
  test_bn(6, 2, 1, 3, 0, 240, 150); /* matrices (h = w = 1), three groups of two */
  test_bn(4, 8, 32, 2, 1, 250, 40); /* big enough to run on several threads */

  test_maxpool(2, 3, 8, 3, 2, 1, 300);
  test_maxpool(1, 2, 7, 3, 2, 1, 310);
  test_maxpool(1, 2, 6, 2, 2, 0, 320);
  test_avgpool();
  test_relu();
  test_add();
  test_linear();
  test_l2norm();
  test_errors();
  test_memory();

  g_be->destroy(g_be);
  return synco_test_finish("test_ref_ops");
}
