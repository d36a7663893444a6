/* Linear classifiers on features (see linear.h). The fast probe is host code on cached host features: its
 * objective and gradient are two sgemms over the whole feature matrix; L-BFGS (two-loop recursion, backtracking
 * Armijo line search, curvature pairs with s.y <= 0 skipped) minimizes it. Going down the lambda grid from the
 * largest value, each fit starts from the previous solution, so the small-lambda fits (the slow ones) start close.
 * The MoCo protocol's layer runs as backend ops, its cross-entropy too (the xent op, whose loss and hits stay in a
 * record on the backend until read); only its top-k scoring downloads logits. */
#include "eval/linear.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/host_gemm.h"
#include "base/rng.h"
#include "base/status.h"
#include "eval/knn.h"
#include "kernels/xent_kernel.h"
#include "optim/sgd.h"

double synco_softmax_xent(const float *logits, const int *y, int n, int C, float *dlogits, float scale, int *hits1,
                          int *hits5) {
  double loss = 0;
  int h1 = 0, h5 = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, h1, h5) if ((size_t)n * C >= 65536)
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * C;
    int a, b;
    loss += synco_k_xent_row(z, C, y[i], dlogits ? dlogits + (size_t)i * C : NULL, scale, &a);
    synco_topk_hits(z, C, y[i], &a, &b);
    h1 += a;
    h5 += b;
  }
  if (hits1) *hits1 = h1;
  if (hits5) *hits5 = h5;
  return n ? loss / n : 0;
}

/* ---- fast probe ------------------------------------------------------------------------------- */
synco_probe_config synco_probe_default_config(int num_classes) {
  synco_probe_config c = {.num_classes = num_classes, .normalize = 0, .max_iter = 300, .history = 10, .tol = 1e-5,
                          .lambdas = {1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6}, .n_lambdas = 7, .holdout = 0.2, .seed = 0};
  return c;
}

typedef struct {
  const float *x;
  const int *y;
  int n, d, C;
  double lambda;
  float *logits, *dlogits; /* [n, C] */
} probe_problem;

/* f and g at theta = [W (C x d) | b (C)]; NaN if a GEMM fails (the fit then ends as non-finite; the GEMMs' shapes are
 * consistent, so only oneDNN running out of memory could). */
static double probe_eval(const probe_problem *p, const float *theta, float *g) {
  const int d = p->d, C = p->C, n = p->n;
  const float *W = theta, *b = theta + (size_t)C * d;
  for (int i = 0; i < n; i++) memcpy(p->logits + (size_t)i * C, b, C * sizeof(float));
  if (synco_host_sgemm(0, 1, n, C, d, 1.0f, p->x, d, W, d, 1.0f, p->logits, C) != SYNCO_OK) return NAN;
  double f = synco_softmax_xent(p->logits, p->y, n, C, p->dlogits, 1.0f / n, NULL, NULL);
  /* gW = dlogits^T X + lambda W; gb = column sums of dlogits. */
  memcpy(g, W, (size_t)C * d * sizeof(float));
  if (synco_host_sgemm(1, 0, C, d, n, 1.0f, p->dlogits, C, p->x, d, (float)p->lambda, g, d) != SYNCO_OK) return NAN;
  double reg = 0;
  for (size_t i = 0; i < (size_t)C * d; i++) reg += (double)W[i] * W[i];
  float *gb = g + (size_t)C * d;
  for (int c = 0; c < C; c++) {
    double s = 0;
    for (int i = 0; i < n; i++) s += p->dlogits[(size_t)i * C + c];
    gb[c] = (float)s;
  }
  return f + 0.5 * p->lambda * reg;
}

static double dotd(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static double max_abs(const float *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

/* Minimizes the probe objective from theta (in place). Returns iterations, or -1 on allocation failure. */
static int lbfgs(const probe_problem *p, float *theta, int max_iter, int m, double tol, double *fout) {
  const size_t P = (size_t)p->C * p->d + p->C;
  float *g = malloc(P * sizeof(float)), *gn = malloc(P * sizeof(float)), *dir = malloc(P * sizeof(float));
  float *tn = malloc(P * sizeof(float)), *S = malloc((size_t)m * P * sizeof(float));
  float *Y = malloc((size_t)m * P * sizeof(float));
  double *rho = malloc(m * sizeof(double)), *alpha = malloc(m * sizeof(double));
  int it = -1;
  if (!g || !gn || !dir || !tn || !S || !Y || !rho || !alpha) goto out;
  double f = probe_eval(p, theta, g);
  int head = 0, stored = 0;
  for (it = 0; it < max_iter; it++) {
    if (max_abs(g, P) < tol) break;
    /* Two-loop recursion: dir = -H g. */
    for (size_t i = 0; i < P; i++) dir[i] = -g[i];
    for (int j = 0; j < stored; j++) {
      int k = (head - 1 - j + m) % m;
      alpha[k] = rho[k] * dotd(S + k * P, dir, P);
      for (size_t i = 0; i < P; i++) dir[i] -= (float)alpha[k] * Y[k * P + i];
    }
    double gamma = 1.0;
    if (stored) {
      int k = (head - 1 + m) % m;
      gamma = dotd(S + k * P, Y + k * P, P) / dotd(Y + k * P, Y + k * P, P);
    } else {
      gamma = 1.0 / sqrt(dotd(g, g, P)); /* first step has unit length */
    }
    for (size_t i = 0; i < P; i++) dir[i] *= (float)gamma;
    for (int j = stored - 1; j >= 0; j--) {
      int k = (head - 1 - j + m) % m;
      double beta = rho[k] * dotd(Y + k * P, dir, P);
      for (size_t i = 0; i < P; i++) dir[i] += (float)(alpha[k] - beta) * S[k * P + i];
    }
    double gd = dotd(g, dir, P);
    if (gd >= 0) { /* not a descent direction (numerical trouble): restart from steepest descent */
      stored = 0;
      for (size_t i = 0; i < P; i++) dir[i] = -g[i];
      gd = -dotd(g, g, P);
    }
    double step = 1.0, fn = f;
    int accepted = 0;
    for (int ls = 0; ls < 30; ls++) {
      for (size_t i = 0; i < P; i++) tn[i] = theta[i] + (float)step * dir[i];
      fn = probe_eval(p, tn, gn);
      if (isfinite(fn) && fn <= f + 1e-4 * step * gd) {
        accepted = 1;
        break;
      }
      step *= 0.5;
    }
    if (!accepted) break;
    float *s = S + (size_t)head * P, *y = Y + (size_t)head * P;
    for (size_t i = 0; i < P; i++) {
      s[i] = tn[i] - theta[i];
      y[i] = gn[i] - g[i];
    }
    double sy = dotd(s, y, P);
    if (sy > 1e-10 * dotd(y, y, P)) {
      rho[head] = 1.0 / sy;
      head = (head + 1) % m;
      if (stored < m) stored++;
    }
    memcpy(theta, tn, P * sizeof(float));
    memcpy(g, gn, P * sizeof(float));
    const double df = f - fn;
    f = fn;
    if (df <= 1e-12 * (fabs(f) > 1 ? fabs(f) : 1)) {
      it++;
      break;
    }
  }
  if (fout) *fout = f;
out:
  free(g), free(gn), free(dir), free(tn), free(S), free(Y), free(rho), free(alpha);
  return it;
}

static synco_status score(const float *theta, const float *x, const int *y, size_t n, int d, int C, size_t *h1,
                          size_t *h5) {
  *h1 = *h5 = 0;
  float z[64 * 16];
  float *zz = C <= 16 ? z : synco_malloc((size_t)64 * C * sizeof(float));
  if (!zz) return SYNCO_ERR_NOMEM;
  synco_status st = SYNCO_OK;
  for (size_t i0 = 0; i0 < n && st == SYNCO_OK; i0 += 64) {
    int nb = (int)(n - i0 < 64 ? n - i0 : 64);
    for (int i = 0; i < nb; i++) memcpy(zz + (size_t)i * C, theta + (size_t)C * d, C * sizeof(float));
    st = synco_host_sgemm(0, 1, nb, C, d, 1.0f, x + i0 * d, d, theta, d, 1.0f, zz, C);
    for (int i = 0; i < nb && st == SYNCO_OK; i++) {
      int a, b;
      synco_topk_hits(zz + (size_t)i * C, C, y[i0 + i], &a, &b);
      *h1 += a;
      *h5 += b;
    }
  }
  if (zz != z) free(zz);
  return st;
}

synco_status synco_linear_probe_fast(synco_probe_result *res, const float *train, const int *train_labels,
                                     size_t n_train, const float *val, const int *val_labels, size_t n_val, int d,
                                     const synco_probe_config *cfg) {
  memset(res, 0, sizeof *res);
  const int C = cfg->num_classes;
  if (C < 2 || d <= 0 || n_train < 2 || n_train > (size_t)1 << 30)
    return synco_fail(SYNCO_ERR_ARG, "linear probe: need >= 2 classes, d > 0 and 2..2^30 train samples (got %d, %d, %zu)",
                      C, d, n_train);
  for (size_t i = 0; i < n_train; i++)
    if (train_labels[i] < 0 || train_labels[i] >= C)
      return synco_fail(SYNCO_ERR_ARG, "linear probe: train label %d of sample %zu is outside [0, %d)",
                        train_labels[i], i, C);
  if ((cfg->out_weight || cfg->out_bias) && cfg->normalize)
    return synco_fail(SYNCO_ERR_ARG, "linear probe: on L2-normalized features the classifier is not linear in the "
                                     "features, so it cannot be written as one layer");
  double grid[8];
  int ng = cfg->n_lambdas > 0 ? (cfg->n_lambdas > 8 ? 8 : cfg->n_lambdas) : 7;
  const double defaults[7] = {1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};
  for (int i = 0; i < ng; i++) grid[i] = cfg->n_lambdas > 0 ? cfg->lambdas[i] : defaults[i];
  const int max_iter = cfg->max_iter > 0 ? cfg->max_iter : 300, hist = cfg->history > 0 ? cfg->history : 10;
  const double tol = cfg->tol > 0 ? cfg->tol : 1e-5;
  const size_t P = (size_t)C * d + C;

  /* Transformed copies: train rows permuted so the held-out part is a contiguous tail. */
  float *xt = synco_malloc(n_train * d * sizeof(float)), *xv = synco_malloc((n_val ? n_val : 1) * d * sizeof(float));
  int *yt = synco_malloc(n_train * sizeof(int));
  uint32_t *perm = synco_malloc(n_train * sizeof(uint32_t));
  float *theta = synco_calloc(P, sizeof(float)), *best = synco_malloc(P * sizeof(float));
  float *logits = synco_malloc(n_train * C * sizeof(float)), *dlogits = synco_malloc(n_train * C * sizeof(float));
  double *mean = synco_calloc(d, sizeof(double)), *sd = synco_calloc(d, sizeof(double));
  synco_status st = SYNCO_OK;
  if (!xt || !xv || !yt || !perm || !theta || !best || !logits || !dlogits || !mean || !sd) {
    st = SYNCO_ERR_NOMEM;
    goto out;
  }
  for (size_t i = 0; i < n_train; i++) perm[i] = (uint32_t)i;
  synco_rng r = synco_rng_make(cfg->seed, 0, 0, SYNCO_RNG_SPLIT);
  synco_rng_shuffle(&r, perm, (uint32_t)n_train);
  for (size_t i = 0; i < n_train; i++) {
    memcpy(xt + i * d, train + (size_t)perm[i] * d, d * sizeof(float));
    yt[i] = train_labels[perm[i]];
  }
  if (n_val) memcpy(xv, val, n_val * d * sizeof(float));
  if (cfg->normalize) {
    synco_rows_l2_normalize(xt, n_train, d);
    synco_rows_l2_normalize(xv, n_val, d);
  } else {
    for (size_t i = 0; i < n_train; i++)
      for (int j = 0; j < d; j++) mean[j] += xt[i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= n_train;
    for (size_t i = 0; i < n_train; i++)
      for (int j = 0; j < d; j++) sd[j] += (xt[i * d + j] - mean[j]) * (xt[i * d + j] - mean[j]);
    for (int j = 0; j < d; j++) sd[j] = sqrt(sd[j] / n_train) + 1e-6;
    for (size_t i = 0; i < n_train; i++)
      for (int j = 0; j < d; j++) xt[i * d + j] = (float)((xt[i * d + j] - mean[j]) / sd[j]);
    for (size_t i = 0; i < n_val; i++)
      for (int j = 0; j < d; j++) xv[i * d + j] = (float)((xv[i * d + j] - mean[j]) / sd[j]);
  }

  double chosen = grid[0];
  if (ng > 1) {
    double hf = cfg->holdout > 0 && cfg->holdout < 1 ? cfg->holdout : 0.2;
    size_t nh = (size_t)(hf * n_train);
    if (nh < 1) nh = 1;
    size_t nf = n_train - nh;
    if (nf < 1) {
      st = synco_fail(SYNCO_ERR_ARG, "linear probe: too few train samples (%zu) to hold some out", n_train);
      goto out;
    }
    probe_problem pf = {xt, yt, (int)nf, d, C, 0, logits, dlogits};
    double best_acc = -1;
    for (int li = 0; li < ng; li++) {
      pf.lambda = grid[li];
      if (lbfgs(&pf, theta, max_iter, hist, tol, NULL) < 0) {
        st = synco_fail(SYNCO_ERR_NOMEM, "linear probe: out of memory in L-BFGS");
        goto out;
      }
      size_t h1, h5;
      if ((st = score(theta, xt + nf * d, yt + nf, nh, d, C, &h1, &h5)) != SYNCO_OK) goto out;
      res->holdout_top1[li] = 100.0 * h1 / nh;
      if (res->holdout_top1[li] > best_acc) { /* strict: ties keep the larger lambda */
        best_acc = res->holdout_top1[li];
        chosen = grid[li];
        memcpy(best, theta, P * sizeof(float));
      }
    }
    memcpy(theta, best, P * sizeof(float));
  }
  probe_problem pa = {xt, yt, (int)n_train, d, C, chosen, logits, dlogits};
  double f = 0;
  int it = lbfgs(&pa, theta, max_iter, hist, tol, &f);
  if (it < 0) {
    st = synco_fail(SYNCO_ERR_NOMEM, "linear probe: out of memory in L-BFGS");
    goto out;
  }
  if (!isfinite(f)) {
    st = synco_fail(SYNCO_ERR_NUMERIC, "linear probe: the objective became non-finite");
    goto out;
  }
  res->lambda = chosen;
  res->iters = it;
  /* On standardized features z = W (x - mean) / sd + b: as one layer on x, W' = W / sd, b' = b - W' mean. */
  for (int c = 0; c < C && (cfg->out_weight || cfg->out_bias); c++) {
    double bias = theta[(size_t)C * d + c];
    for (int j = 0; j < d; j++) {
      const double wj = theta[(size_t)c * d + j] / sd[j];
      if (cfg->out_weight) cfg->out_weight[(size_t)c * d + j] = (float)wj;
      bias -= wj * mean[j];
    }
    if (cfg->out_bias) cfg->out_bias[c] = (float)bias;
  }
  res->loss = f;
  size_t h1, h5;
  if ((st = score(theta, xt, yt, n_train, d, C, &h1, &h5)) != SYNCO_OK) goto out;
  res->train_top1 = 100.0 * h1 / n_train;
  if (n_val) {
    if ((st = score(theta, xv, val_labels, n_val, d, C, &h1, &h5)) != SYNCO_OK) goto out;
    res->top1 = 100.0 * h1 / n_val;
    res->top5 = 100.0 * h5 / n_val;
  }
out:
  free(xt), free(xv), free(yt), free(perm), free(theta), free(best), free(logits), free(dlogits), free(mean), free(sd);
  return st;
}

/* ---- MoCo protocol: linear layer + SGD on the backend ---------------------------------------------- */
synco_sgd_config synco_sgd_moco_linear_config(void) {
  synco_sgd_config c = {.sched = {.lr = 30.0, .epochs = 100, .cos = 0, .n_milestones = 2, .milestones = {60, 80}},
                        .momentum = 0.9, .weight_decay = 0.0};
  return c;
}

synco_status synco_linear_layer_create(synco_linear_layer **out, synco_backend *be, int dim, int num_classes,
                                       int max_batch, uint64_t seed) {
  *out = NULL;
  if (!be || dim <= 0 || num_classes <= 0 || max_batch <= 0)
    return synco_fail(SYNCO_ERR_ARG, "linear layer: bad sizes dim %d classes %d batch %d%s", dim, num_classes,
                      max_batch, be ? "" : " (or no backend)");
  synco_linear_layer *l = synco_calloc(1, sizeof *l);
  if (!l) return SYNCO_ERR_NOMEM;
  l->be = be, l->dim = dim, l->num_classes = num_classes, l->max_batch = max_batch;
  const size_t nw = (size_t)dim * num_classes, P = nw + num_classes, bc = (size_t)max_batch * num_classes;
  l->params = be->alloc(be, P * sizeof(float));
  l->grads = be->alloc(be, P * sizeof(float));
  l->mom = be->alloc(be, P * sizeof(float));
  l->x = be->alloc(be, (size_t)max_batch * dim * sizeof(float));
  l->dx = be->alloc(be, (size_t)max_batch * dim * sizeof(float));
  l->logits = be->alloc(be, bc * sizeof(float));
  l->dlogits = be->alloc(be, bc * sizeof(float));
  l->labels = be->alloc(be, (size_t)max_batch * sizeof(int));
  l->rec = be->alloc(be, SYNCO_XREC_LEN * sizeof(double));
  l->logits_host = synco_malloc(bc * sizeof(float));
  float *init = synco_calloc(P, sizeof(float)); /* host: drawn here, then uploaded */
  synco_status st = SYNCO_OK;
  if (!l->params || !l->grads || !l->mom || !l->x || !l->dx || !l->logits || !l->dlogits || !l->labels || !l->rec ||
      !l->logits_host || !init)
    st = synco_fail(SYNCO_ERR_NOMEM, "linear layer: out of memory for a %d x %d classifier, batch %d", num_classes,
                    dim, max_batch);
  if (!st) {
    synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_INIT);
    for (size_t i = 0; i < nw; i++) init[i] = 0.01f * synco_rng_normal(&r);
    st = be->copy(be, l->params, init, P * sizeof(float), SYNCO_COPY_H2D);
  }
  if (!st) st = be->memset(be, l->grads, 0, P * sizeof(float));
  if (!st) st = be->memset(be, l->rec, 0, SYNCO_XREC_LEN * sizeof(double));
  free(init);
  if (st) {
    synco_linear_layer_free(l);
    return st;
  }
  *out = l;
  return SYNCO_OK;
}

void synco_linear_layer_free(synco_linear_layer *l) {
  if (!l) return;
  synco_backend *be = l->be;
  void *bufs[] = {l->params, l->grads, l->mom, l->x, l->dx, l->logits, l->dlogits, l->labels, l->rec};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
    if (bufs[i]) be->free(be, bufs[i]);
  free(l->logits_host);
  free(l);
}

static synco_status check_batch(const synco_linear_layer *l, int n) {
  if (n <= 0 || n > l->max_batch)
    return synco_fail(SYNCO_ERR_ARG, "linear layer: batch of %d, planned for 1..%d", n, l->max_batch);
  return SYNCO_OK;
}

/* A plain [n, c] matrix in backend memory, as the linear ops take it. */
static synco_tensor matrix(float *data, int n, int c) {
  return (synco_tensor){.n = n, .c = c, .h = 1, .w = 1, .dtype = SYNCO_F32, .layout = SYNCO_LAYOUT_PLAIN, .data = data};
}

synco_status synco_linear_layer_upload(synco_linear_layer *l, const float *x, int n) {
  SYNCO_TRY(check_batch(l, n));
  return l->be->copy(l->be, l->x, x, (size_t)n * l->dim * sizeof(float), SYNCO_COPY_H2D);
}

/* logits of the n features in l->x, on the backend, then downloaded into l->logits_host: n x C floats, for the
 * top-k counts of scoring (host loops over C classes; training reads only its loss record). */
static synco_status forward_download(synco_linear_layer *l, int n) {
  synco_backend *be = l->be;
  const int C = l->num_classes;
  synco_tensor x = matrix(l->x, n, l->dim), z = matrix(l->logits, n, C);
  SYNCO_TRY(be->linear_fwd(be, &z, &x, l->params, l->params + (size_t)C * l->dim));
  return be->copy(be, l->logits_host, l->logits, (size_t)n * C * sizeof(float), SYNCO_COPY_D2H);
}

synco_status synco_linear_layer_backprop(synco_linear_layer *l, const int *y, int n, int want_dx, double *loss,
                                         int *hits1) {
  SYNCO_TRY(check_batch(l, n));
  const int C = l->num_classes, d = l->dim;
  for (int i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= C) return synco_fail(SYNCO_ERR_ARG, "linear layer: label %d outside [0, %d)", y[i], C);
  synco_backend *be = l->be;
  SYNCO_TRY(be->copy(be, l->labels, y, (size_t)n * sizeof(int), SYNCO_COPY_H2D));
  synco_tensor x = matrix(l->x, n, d), z = matrix(l->logits, n, C), dz = matrix(l->dlogits, n, C),
               dx = matrix(l->dx, n, d);
  SYNCO_TRY(be->linear_fwd(be, &z, &x, l->params, l->params + (size_t)C * d));
  SYNCO_TRY(be->xent(be, l->dlogits, l->logits, l->labels, n, C, 1.0f / n, l->rec, (double)l->steps));
  SYNCO_TRY(be->linear_bwd(be, want_dx ? &dx : NULL, l->grads, l->grads + (size_t)C * d, &dz, &x, l->params));
  if (!loss && !hits1) return SYNCO_OK;
  synco_xent_stats st;
  SYNCO_TRY(synco_linear_layer_read(l, &st));
  if (loss) *loss = st.loss;
  if (hits1) *hits1 = (int)st.hits;
  return SYNCO_OK;
}

synco_status synco_linear_layer_read(synco_linear_layer *l, synco_xent_stats *out) {
  double rec[SYNCO_XREC_LEN];
  SYNCO_TRY(l->be->copy(l->be, rec, l->rec, sizeof rec, SYNCO_COPY_D2H));
  SYNCO_TRY(l->be->memset(l->be, l->rec, 0, sizeof rec));
  const double calls = rec[SYNCO_XREC_CALLS];
  if (out)
    *out = (synco_xent_stats){.loss = calls > 0 ? rec[SYNCO_XREC_LOSS] / calls : 0.0, .hits = (long)rec[SYNCO_XREC_HITS],
                              .rows = (long)rec[SYNCO_XREC_ROWS], .calls = (int)calls};
  if (rec[SYNCO_XREC_BAD] != 0.0)
    return synco_fail(SYNCO_ERR_NUMERIC, "linear layer: the loss became non-finite at its step %.0f (lower the "
                      "learning rate)", rec[SYNCO_XREC_BAD_TAG]);
  return SYNCO_OK;
}

synco_status synco_linear_layer_sgd(synco_linear_layer *l, double lr, double momentum, double weight_decay) {
  synco_backend *be = l->be;
  const size_t P = (size_t)l->dim * l->num_classes + l->num_classes;
  SYNCO_TRY(synco_sgd_step(be, l->params, l->mom, l->grads, P, (float)lr, (float)momentum, (float)weight_decay,
                           l->steps == 0));
  l->steps++;
  return be->memset(be, l->grads, 0, P * sizeof(float));
}

synco_status synco_linear_layer_train_step(synco_linear_layer *l, const int *y, int n, double lr,
                                           const synco_sgd_config *c, double *loss, int *hits1) {
  SYNCO_TRY(synco_linear_layer_backprop(l, y, n, 0, loss, hits1));
  return synco_linear_layer_sgd(l, lr, c->momentum, c->weight_decay);
}

synco_status synco_linear_layer_score(synco_linear_layer *l, const int *y, int n, size_t *hits1, size_t *hits5) {
  SYNCO_TRY(check_batch(l, n));
  SYNCO_TRY(forward_download(l, n));
  for (int i = 0; i < n; i++) {
    int h1, h5;
    synco_topk_hits(l->logits_host + (size_t)i * l->num_classes, l->num_classes, y[i], &h1, &h5);
    *hits1 += (size_t)h1;
    *hits5 += (size_t)h5;
  }
  return SYNCO_OK;
}

synco_status synco_linear_layer_eval(synco_linear_layer *l, const float *x, const int *y, size_t n, size_t *hits1,
                                     size_t *hits5) {
  size_t a1 = 0, a5 = 0;
  for (size_t i0 = 0; i0 < n; i0 += l->max_batch) {
    int nb = (int)(n - i0 < (size_t)l->max_batch ? n - i0 : (size_t)l->max_batch);
    SYNCO_TRY(synco_linear_layer_upload(l, x + i0 * l->dim, nb));
    SYNCO_TRY(synco_linear_layer_score(l, y + i0, nb, &a1, &a5));
  }
  if (hits1) *hits1 = a1;
  if (hits5) *hits5 = a5;
  return SYNCO_OK;
}

synco_status synco_linear_layer_get(synco_linear_layer *l, float *w, float *b) {
  const size_t nw = (size_t)l->dim * l->num_classes;
  synco_backend *be = l->be;
  if (w) SYNCO_TRY(be->copy(be, w, l->params, nw * sizeof(float), SYNCO_COPY_D2H));
  if (b) SYNCO_TRY(be->copy(be, b, l->params + nw, (size_t)l->num_classes * sizeof(float), SYNCO_COPY_D2H));
  return SYNCO_OK;
}

synco_status synco_linear_layer_fit(synco_linear_layer *l, const float *x, const int *y, size_t n,
                                    const synco_sgd_config *c, uint64_t seed) {
  uint32_t *perm = synco_malloc(n * sizeof(uint32_t));
  float *xb = synco_malloc((size_t)l->max_batch * l->dim * sizeof(float));
  int *yb = synco_malloc((size_t)l->max_batch * sizeof(int));
  synco_status st = SYNCO_OK;
  if (!perm || !xb || !yb) st = SYNCO_ERR_NOMEM;
  for (int e = 0; st == SYNCO_OK && e < c->sched.epochs; e++) {
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    synco_rng r = synco_rng_make(seed, (uint64_t)e, 0, SYNCO_RNG_EVAL);
    synco_rng_shuffle(&r, perm, (uint32_t)n);
    const double lr = synco_lr_epoch(&c->sched, e);
    for (size_t i0 = 0; st == SYNCO_OK && i0 < n; i0 += l->max_batch) {
      int nb = (int)(n - i0 < (size_t)l->max_batch ? n - i0 : (size_t)l->max_batch);
      for (int i = 0; i < nb; i++) {
        memcpy(xb + (size_t)i * l->dim, x + (size_t)perm[i0 + i] * l->dim, l->dim * sizeof(float));
        yb[i] = y[perm[i0 + i]];
      }
      st = synco_linear_layer_upload(l, xb, nb);
      if (!st) st = synco_linear_layer_train_step(l, yb, nb, lr, c, NULL, NULL);
    }
    if (!st) st = synco_linear_layer_read(l, NULL); /* once an epoch: a non-finite loss stops the fit */
  }
  free(perm), free(xb), free(yb);
  return st;
}
