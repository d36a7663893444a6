/* Linear classifiers: the fast probe reaches 100% train and val accuracy on linearly separable data, and on
 * noisy isotropic Gaussian blobs (where the nearest-class-mean rule is Bayes-optimal) comes within a few points
 * of that optimum; it is deterministic. The SGD layer does the same on the blobs, its gradients match finite
 * differences, and the MoCo schedule steps at 60 and 80. The layer runs on the strict backend: its buffers are
 * reached only through copies. A training step that does not ask for its loss downloads nothing and does not sync;
 * the read after several steps reports what a read after each would (mean loss, hits), and a non-finite loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/rng.h"
#include "eval/linear.h"
#include "test_util.h"

static void blobs(float *x, int *y, int n, int d, int C, const float *mu, float noise, unsigned seed) {
  synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_TEST);
  for (int i = 0; i < n; i++) {
    y[i] = i % C;
    for (int j = 0; j < d; j++) x[i * d + j] = mu[y[i] * d + j] + noise * synco_rng_normal(&r);
  }
}

/* Accuracy (%) of the nearest-true-mean rule: Bayes-optimal for equal isotropic Gaussians, equal priors. */
static double bayes_acc(const float *x, const int *y, int n, int d, int C, const float *mu) {
  int hit = 0;
  for (int i = 0; i < n; i++) {
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int j = 0; j < d; j++) s += (x[i * d + j] - mu[c * d + j]) * (x[i * d + j] - mu[c * d + j]);
      if (s < bd) bd = s, best = c;
    }
    hit += best == y[i];
  }
  return 100.0 * hit / n;
}

/* The mean cross-entropy at [W | b] = theta on features x[max_batch, dim], through the backend (its backward runs
 * too: grads accumulate, dx is written). */
static double loss_at(synco_linear_layer *l, const float *theta, const float *x, const int *y) {
  const size_t P = (size_t)l->num_classes * l->dim + l->num_classes;
  double f = NAN;
  CHECK_OK(l->be->copy(l->be, l->params, theta, P * sizeof(float), SYNCO_COPY_H2D));
  CHECK_OK(synco_linear_layer_upload(l, x, l->max_batch));
  CHECK_OK(synco_linear_layer_backprop(l, y, l->max_batch, 1, &f, NULL));
  return f;
}

/* d loss / d v[i] by central differences, v being theta or x. */
static float central_diff(synco_linear_layer *l, float *v, int i, const float *theta, const float *x, const int *y) {
  const float s = v[i], h = 1e-2f;
  v[i] = s + h;
  const double fp = loss_at(l, theta, x, y);
  v[i] = s - h;
  const double fm = loss_at(l, theta, x, y);
  v[i] = s;
  return (float)((fp - fm) / (2 * h));
}

int main(void) {
  synco_backend *be = NULL;
  if (synco_backend_strict_create(&be) != SYNCO_OK) {
    fprintf(stderr, "strict backend: %s\n", synco_last_error());
    return 1;
  }
  /* Separable: four classes around well-separated means, tiny noise, an offset so the bias matters. */
  {
    const int d = 20, C = 4, ntr = 800, nva = 200;
    float mu[4 * 20] = {0};
    for (int c = 0; c < C; c++) {
      mu[c * d + c] = 3.0f;
      for (int j = 0; j < d; j++) mu[c * d + j] += 5.0f;
    }
    float *xt = malloc(ntr * d * sizeof(float)), *xv = malloc(nva * d * sizeof(float));
    int *yt = malloc(ntr * sizeof(int)), *yv = malloc(nva * sizeof(int));
    blobs(xt, yt, ntr, d, C, mu, 0.3f, 1);
    blobs(xv, yv, nva, d, C, mu, 0.3f, 2);
    for (int norm = 0; norm < 2; norm++) {
      synco_probe_config cfg = synco_probe_default_config(C);
      cfg.normalize = norm;
      synco_probe_result res;
      CHECK_OK(synco_linear_probe_fast(&res, xt, yt, ntr, xv, yv, nva, d, &cfg));
      printf("separable (%s): train %.2f%% val %.2f%% top5 %.2f%% lambda %g iters %d\n",
             norm ? "l2" : "standardized", res.train_top1, res.top1, res.top5, res.lambda, res.iters);
      CHECK(res.train_top1 == 100.0 && res.top1 == 100.0 && res.top5 == 100.0);
    }
    free(xt), free(xv), free(yt), free(yv);
  }
  /* Noisy blobs. */
  {
    const int d = 10, C = 5, ntr = 3000, nva = 2000;
    float mu[5 * 10];
    synco_rng r = synco_rng_make(7, 0, 0, SYNCO_RNG_TEST);
    for (int i = 0; i < C * d; i++) mu[i] = 1.2f * synco_rng_normal(&r);
    float *xt = malloc(ntr * d * sizeof(float)), *xv = malloc(nva * d * sizeof(float));
    int *yt = malloc(ntr * sizeof(int)), *yv = malloc(nva * sizeof(int));
    blobs(xt, yt, ntr, d, C, mu, 1.0f, 3);
    blobs(xv, yv, nva, d, C, mu, 1.0f, 4);
    const double opt = bayes_acc(xv, yv, nva, d, C, mu);
    synco_probe_config cfg = synco_probe_default_config(C);
    synco_probe_result res, res2;
    CHECK_OK(synco_linear_probe_fast(&res, xt, yt, ntr, xv, yv, nva, d, &cfg));
    printf("blobs: Bayes %.2f%%, probe val %.2f%% (train %.2f%%) lambda %g iters %d loss %.4f\n", opt, res.top1,
           res.train_top1, res.lambda, res.iters, res.loss);
    CHECK(res.top1 > opt - 3.0 && res.top1 < 100.0);
    CHECK(res.top5 == 100.0);
    CHECK_OK(synco_linear_probe_fast(&res2, xt, yt, ntr, xv, yv, nva, d, &cfg));
    CHECK(res2.top1 == res.top1 && res2.lambda == res.lambda && res2.loss == res.loss);

    /* SGD layer on standardized-scale blobs. */
    synco_linear_layer *l = NULL;
    CHECK_OK(synco_linear_layer_create(&l, be, d, C, 64, 5));
    synco_sgd_config sc = {.sched = {.lr = 0.1, .epochs = 20, .n_milestones = 2, .milestones = {12, 16}},
                           .momentum = 0.9};
    if (l) {
      CHECK_OK(synco_linear_layer_fit(l, xt, yt, ntr, &sc, 9));
      size_t h1 = 0, h5 = 0;
      CHECK_OK(synco_linear_layer_eval(l, xv, yv, nva, &h1, &h5));
      printf("blobs: SGD layer val %.2f%%\n", 100.0 * h1 / nva);
      CHECK(100.0 * h1 / nva > opt - 4.0);
      int bad = C;
      CHECK(synco_linear_layer_train_step(l, &bad, 1, 0.1, &sc, NULL, NULL) == SYNCO_ERR_ARG);
      CHECK(synco_linear_layer_upload(l, xv, 65) == SYNCO_ERR_ARG);
    }
    synco_linear_layer_free(l);
    free(xt), free(xv), free(yt), free(yv);
  }
  /* Gradients of the layer + cross-entropy against central differences (double-checked in float). */
  {
    enum { d = 6, C = 4, n = 5, P = C * d + C };
    synco_linear_layer *l = NULL;
    CHECK_OK(synco_linear_layer_create(&l, be, d, C, n, 1));
    float x[n * d], theta[P], g[P], dx[n * d], num[P], num_x[n * d];
    int y[n] = {0, 3, 1, 2, 3};
    synco_test_fill(x, n * d, 3, -1, 1);
    synco_test_fill(theta, C * d, 4, -0.5f, 0.5f);
    synco_test_fill(theta + C * d, C, 5, -0.5f, 0.5f);
    loss_at(l, theta, x, y);
    CHECK_OK(be->copy(be, g, l->grads, sizeof g, SYNCO_COPY_D2H));
    CHECK_OK(be->copy(be, dx, l->dx, sizeof dx, SYNCO_COPY_D2H));
    for (int i = 0; i < P; i++) num[i] = central_diff(l, theta, i, theta, x, y);
    for (int i = 0; i < n * d; i++) num_x[i] = central_diff(l, x, i, theta, x, y);
    CHECK_CLOSE("dW", g, num, C * d, 2e-4, 1e-2);
    CHECK_CLOSE("db", g + C * d, num + C * d, C, 2e-4, 1e-2);
    CHECK_CLOSE("dx", dx, num_x, n * d, 2e-4, 1e-2);
    synco_linear_layer_free(l);
  }
  /* No download in a step; one read for three steps. */
  {
    enum { d = 6, C = 4, n = 8, STEPS = 3 };
    synco_linear_layer *each = NULL, *once = NULL;
    CHECK_OK(synco_linear_layer_create(&each, be, d, C, n, 2));
    CHECK_OK(synco_linear_layer_create(&once, be, d, C, n, 2));
    float x[n * d];
    int y[n];
    for (int i = 0; i < n; i++) y[i] = (i * 3) % C;
    double mean = 0;
    long hits = 0;
    for (int s = 0; s < STEPS; s++) {
      synco_test_fill(x, n * d, 20 + s, -2, 2);
      double f;
      int h;
      CHECK_OK(synco_linear_layer_upload(each, x, n));
      CHECK_OK(synco_linear_layer_backprop(each, y, n, 0, &f, &h));
      CHECK_OK(synco_linear_layer_sgd(each, 0.5, 0.9, 0));
      mean += f / STEPS;
      hits += h;
      long d0, s0, d1, s1;
      synco_backend_strict_counts(be, &d0, &s0);
      CHECK_OK(synco_linear_layer_upload(once, x, n));
      CHECK_OK(synco_linear_layer_backprop(once, y, n, 0, NULL, NULL));
      CHECK_OK(synco_linear_layer_sgd(once, 0.5, 0.9, 0));
      synco_backend_strict_counts(be, &d1, &s1);
      CHECK(d1 == d0 && s1 == s0);
    }
    synco_xent_stats st;
    CHECK_OK(synco_linear_layer_read(once, &st));
    CHECK(st.calls == STEPS && st.rows == STEPS * n && st.hits == hits);
    CHECK(fabs(st.loss - mean) <= 1e-12 * (1 + fabs(mean)));
    x[5] = NAN;
    CHECK_OK(synco_linear_layer_upload(once, x, n));
    CHECK_OK(synco_linear_layer_backprop(once, y, n, 0, NULL, NULL));
    CHECK(synco_linear_layer_read(once, &st) == SYNCO_ERR_NUMERIC);
    CHECK_OK(synco_linear_layer_read(once, &st)); /* zeroed by the read */
    CHECK(st.calls == 0);
    synco_linear_layer_free(each);
    synco_linear_layer_free(once);
  }
  /* The MoCo schedule (optim/schedule.h). */
  {
    synco_sgd_config c = synco_sgd_moco_linear_config();
    CHECK(c.sched.lr == 30 && c.momentum == 0.9 && c.weight_decay == 0 && c.sched.epochs == 100);
    CHECK(fabs(synco_lr_epoch(&c.sched, 59) - 30) < 1e-12 && fabs(synco_lr_epoch(&c.sched, 60) - 3) < 1e-12);
    CHECK(fabs(synco_lr_epoch(&c.sched, 79) - 3) < 1e-12 && fabs(synco_lr_epoch(&c.sched, 80) - 0.3) < 1e-12);
    c.sched.cos = 1;
    CHECK(fabs(synco_lr_epoch(&c.sched, 50) - 15) < 1e-9);
  }
  synco_backend_destroy(be);
  return synco_test_finish("test_linear_probe");
}
