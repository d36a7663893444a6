/* Feature analyses against float64 NumPy references written by tools/make_analysis_fixtures.py: alignment,
 * uniformity, the per-sample inter/intra distance ratio, mean sorted matching probabilities and proxy
 * accuracy; plus the histogram / statistics helpers and the undefined-ratio cases. The dot products run on the
 * strict backend, so a host read of their backend memory would fault here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "eval/analysis.h"
#include "eval/npy.h"
#include "test_util.h"

#define FIX "tests/fixtures/analysis/"

static float *load(const char *name, size_t *rows, size_t *cols) {
  float *p = NULL;
  if (synco_npy_read_f32(name, &p, rows, cols) != SYNCO_OK) {
    fprintf(stderr, "%s: %s\n", name, synco_last_error());
    exit(1);
  }
  return p;
}

int main(void) {
  synco_backend *be = NULL;
  if (synco_backend_strict_create(&be) != SYNCO_OK) {
    fprintf(stderr, "strict backend: %s\n", synco_last_error());
    return 1;
  }
  size_t n, d, n2, d2, K, nq, r, c;
  float *x = load(FIX "x.npy", &n, &d), *xp = load(FIX "x_pos.npy", &n2, &d2);
  float *queue = load(FIX "queue.npy", &K, &c), *q = load(FIX "q.npy", &nq, &c), *k = load(FIX "k.npy", &r, &c);
  float *ratio_ref = load(FIX "ratio.npy", &r, &c), *probs_ref = load(FIX "probs.npy", &r, &c);
  float *sc = load(FIX "scalars.npy", &r, &c);
  int64_t *y64 = NULL;
  size_t ny = 0;
  CHECK_OK(synco_npy_read_i64(FIX "labels.npy", &y64, &ny));
  CHECK(n == n2 && d == d2 && ny == n);
  int *y = malloc(n * sizeof(int));
  for (size_t i = 0; i < n; i++) y[i] = (int)y64[i];

  float got = (float)synco_alignment(x, xp, n, (int)d, 2.0);
  CHECK_CLOSE("alignment", &got, &sc[0], 1, 1e-6, 1e-5);
  double u;
  CHECK_OK(synco_uniformity(be, &u, x, n, (int)d, 2.0));
  got = (float)u;
  CHECK_CLOSE("uniformity", &got, &sc[1], 1, 1e-6, 1e-5);

  double *ratio = malloc(n * sizeof(double));
  float *ratio_f = malloc(n * sizeof(float));
  CHECK_OK(synco_distance_ratio(be, ratio, x, y, n, (int)d));
  for (size_t i = 0; i < n; i++) ratio_f[i] = (float)ratio[i];
  CHECK_CLOSE("distance ratio", ratio_f, ratio_ref, n, 1e-6, 1e-4);

  size_t m = K < 1024 ? K : 1024;
  double *probs = malloc(m * sizeof(double));
  float *probs_f = malloc(m * sizeof(float));
  CHECK_OK(synco_matching_probs(be, probs, 1024, q, nq, queue, K, (int)d, sc[3]));
  for (size_t i = 0; i < m; i++) probs_f[i] = (float)probs[i];
  CHECK_CLOSE("matching probabilities", probs_f, probs_ref, m, 1e-8, 1e-4);
  for (size_t i = 1; i < m; i++) CHECK(probs[i] <= probs[i - 1]);

  double acc;
  CHECK_OK(synco_proxy_accuracy(be, &acc, q, k, nq, queue, K, (int)d));
  got = (float)acc;
  CHECK_CLOSE("proxy accuracy", &got, &sc[2], 1, 1e-4, 0);
  printf("alignment %.6f uniformity %.6f proxy %.2f%% ratio[0] %.5f probs[0] %.5f\n", (double)sc[0], u, acc,
         ratio[0], probs[0]);

  /* A class with one sample has no intra distance: NaN, skipped by the histogram. */
  {
    float pts[8] = {1, 0, 0, 1, -1, 0, 0, -1};
    int lab[4] = {0, 0, 1, 2};
    double rr[4];
    CHECK_OK(synco_distance_ratio(be, rr, pts, lab, 4, 2));
    CHECK(isnan(rr[2]) && isnan(rr[3]) && isfinite(rr[0]));
    /* Sample 0: same class at distance sqrt2, others at 2 and sqrt2 -> (2 + sqrt2)/2 / sqrt2. */
    CHECK(fabs(rr[0] - (2 + sqrt(2)) / 2 / sqrt(2)) < 1e-6);
    size_t h[3];
    CHECK(synco_histogram(h, 3, 0, 3, rr, 4) == 2);
    CHECK(h[0] + h[1] + h[2] == 2);
    double mean, med, lo, hi;
    double v[5] = {3, 1, NAN, 2, 10};
    CHECK(synco_stats(v, 5, &mean, &med, &lo, &hi) == 4);
    CHECK(mean == 4 && med == 2.5 && lo == 1 && hi == 10);
    double one[1];
    CHECK(synco_uniformity(be, one, pts, 1, 2, 2.0) == SYNCO_ERR_ARG);
  }
  free(x), free(xp), free(queue), free(q), free(k), free(ratio_ref), free(probs_ref), free(sc), free(y64), free(y);
  free(ratio), free(ratio_f), free(probs), free(probs_f);
  synco_backend_destroy(be);
  return synco_test_finish("test_analysis");
}
