/* Weighted kNN against a brute-force reference (full sort of every similarity, vote, rank) on noisy synthetic
 * clusters: predictions agree exactly; tiled and untiled runs agree; small hand-checked cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "eval/knn.h"
#include "test_util.h"

typedef struct {
  double sim;
  int idx;
} ent;

static int cmp_ent(const void *a, const void *b) {
  const ent *x = a, *y = b;
  if (x->sim != y->sim) return x->sim < y->sim ? 1 : -1;
  return x->idx - y->idx;
}

/* Reference: every similarity, a full sort, the first k vote. */
static void brute(int *pred, int *rank_true, const float *tr, const int *ytr, int ntr, const float *va, const int *yva,
                  int nva, int d, int k, double t, int C) {
  ent *e = malloc(ntr * sizeof(ent));
  double *s = malloc(C * sizeof(double));
  for (int i = 0; i < nva; i++) {
    for (int j = 0; j < ntr; j++) {
      float dot = 0;
      for (int c = 0; c < d; c++) dot += va[i * d + c] * tr[j * d + c];
      e[j].sim = dot;
      e[j].idx = j;
    }
    qsort(e, ntr, sizeof(ent), cmp_ent);
    for (int c = 0; c < C; c++) s[c] = 0;
    for (int j = 0; j < (k < ntr ? k : ntr); j++) s[ytr[e[j].idx]] += exp(e[j].sim / t);
    int best = 0;
    for (int c = 1; c < C; c++)
      if (s[c] > s[best]) best = c;
    pred[i] = best;
    int r = 0;
    for (int c = 0; c < C; c++)
      if (s[c] > s[yva[i]] || (s[c] == s[yva[i]] && c < yva[i])) r++;
    rank_true[i] = r;
  }
  free(e), free(s);
}

static void clusters(float *x, int *y, int n, int d, int C, const float *centers, unsigned seed, float noise) {
  synco_rng r = synco_rng_make(seed, 0, 0, SYNCO_RNG_TEST);
  for (int i = 0; i < n; i++) {
    y[i] = (int)synco_rng_below(&r, C);
    for (int j = 0; j < d; j++) x[i * d + j] = centers[y[i] * d + j] + noise * synco_rng_normal(&r);
  }
  synco_rows_l2_normalize(x, n, d);
}

int main(void) {
  const int d = 16, C = 7, ntr = 1500, nva = 301;
  float *centers = malloc(C * d * sizeof(float));
  synco_rng r = synco_rng_make(1, 0, 0, SYNCO_RNG_TEST);
  for (int i = 0; i < C * d; i++) centers[i] = synco_rng_normal(&r);
  float *tr = malloc(ntr * d * sizeof(float)), *va = malloc(nva * d * sizeof(float));
  int *ytr = malloc(ntr * sizeof(int)), *yva = malloc(nva * sizeof(int));
  clusters(tr, ytr, ntr, d, C, centers, 2, 1.2f);
  clusters(va, yva, nva, d, C, centers, 3, 1.2f);

  int *pred = malloc(nva * sizeof(int)), *pred2 = malloc(nva * sizeof(int)), *ref = malloc(nva * sizeof(int));
  int *rank = malloc(nva * sizeof(int));
  float *sc = malloc(nva * C * sizeof(float)), *sc2 = malloc(nva * C * sizeof(float));
  const int ks[3] = {200, 1, 20};
  for (int ki = 0; ki < 3; ki++) {
    synco_knn_config cfg = synco_knn_default_config(C);
    cfg.k = ks[ki];
    cfg.chunk_val = 37; /* tiles that do not divide the sizes */
    cfg.chunk_train = 211;
    synco_knn_result res;
    CHECK_OK(synco_knn_classify(&res, pred, sc, tr, ytr, ntr, va, yva, nva, d, &cfg));
    brute(ref, rank, tr, ytr, ntr, va, yva, nva, d, cfg.k, cfg.t, C);
    size_t c1 = 0, c5 = 0, agree = 0;
    for (int i = 0; i < nva; i++) {
      agree += pred[i] == ref[i];
      c1 += rank[i] < 1;
      c5 += rank[i] < 5;
    }
    if (agree != (size_t)nva) fprintf(stderr, "k=%d: %zu of %d predictions agree\n", cfg.k, agree, nva);
    CHECK(agree == (size_t)nva);
    CHECK(res.correct1 == c1 && res.correct5 == c5 && res.n == (size_t)nva);
    CHECK(fabs(res.top1 - 100.0 * c1 / nva) < 1e-9);
    /* Noisy enough that the test means something, separable enough that kNN works. */
    printf("k=%d: top1 %.2f%% top5 %.2f%%\n", cfg.k, res.top1, res.top5);
    CHECK(res.top1 > 50 && res.top1 < 100);
    /* Tiling does not change anything. */
    synco_knn_config big = cfg;
    big.chunk_val = nva;
    big.chunk_train = ntr;
    synco_knn_result res2;
    CHECK_OK(synco_knn_classify(&res2, pred2, sc2, tr, ytr, ntr, va, yva, nva, d, &big));
    CHECK(!memcmp(pred, pred2, nva * sizeof(int)));
    CHECK(res2.correct1 == res.correct1 && res2.correct5 == res.correct5);
    CHECK_CLOSE("tiled vs untiled scores", sc, sc2, (size_t)nva * C, 1e-6, 1e-5);
  }

  /* Hand-checked: 2-D unit vectors at angles; query at angle 0. Train: class 0 at +-10 deg, class 1 at 5 deg
   * and 170 deg. k = 3 takes 5 deg (class 1) and +-10 deg (class 0): class 0 wins with two votes. */
  {
    const double a[4] = {10, -10, 5, 170};
    const int yl[4] = {0, 0, 1, 1};
    float t4[8], q[2] = {1, 0};
    for (int i = 0; i < 4; i++) t4[2 * i] = (float)cos(a[i] * M_PI / 180), t4[2 * i + 1] = (float)sin(a[i] * M_PI / 180);
    synco_knn_config cfg = synco_knn_default_config(2);
    cfg.k = 3;
    int p;
    float s[2];
    int yq = 1;
    synco_knn_result res;
    CHECK_OK(synco_knn_classify(&res, &p, s, t4, yl, 4, q, &yq, 1, 2, &cfg));
    CHECK(p == 0 && res.correct1 == 0 && res.correct5 == 1);
    float want0 = (float)(2 * exp(cos(10 * M_PI / 180) / 0.1)), want1 = (float)exp(cos(5 * M_PI / 180) / 0.1);
    CHECK_CLOSE("class scores", s, ((float[]){want0, want1}), 2, 0, 1e-5);
    /* k = 1: only the 5 deg neighbour. k larger than the train set: all four. */
    cfg.k = 1;
    CHECK_OK(synco_knn_classify(NULL, &p, NULL, t4, yl, 4, q, NULL, 1, 2, &cfg));
    CHECK(p == 1);
    cfg.k = 1000;
    CHECK_OK(synco_knn_classify(&res, &p, s, t4, yl, 4, q, &yq, 1, 2, &cfg));
    CHECK(p == 0);
    /* Equal similarities: the lower train index wins the last neighbour slot. */
    float dup[4] = {1, 0, 1, 0};
    const int yd[2] = {1, 0};
    cfg.k = 1;
    CHECK_OK(synco_knn_classify(NULL, &p, NULL, dup, yd, 2, q, NULL, 1, 2, &cfg));
    CHECK(p == 1);
    /* Bad labels are refused. */
    const int bad[4] = {0, 0, 2, 1};
    CHECK(synco_knn_classify(NULL, &p, NULL, t4, bad, 4, q, NULL, 1, 2, &cfg) == SYNCO_ERR_ARG);
  }
  free(centers), free(tr), free(va), free(ytr), free(yva), free(pred), free(pred2), free(ref), free(rank), free(sc),
      free(sc2);
  return synco_test_finish("test_knn");
}
