/* Weighted kNN on L2-normalized features (see knn.h). The outer loop walks query chunks, the inner loop
 * train tiles: one sgemm per tile gives the similarities, then each query row (in parallel) offers the tile's
 * entries to its own size-k min-heap. Train tiles arrive in increasing index order, so an entry that only ties
 * the heap's worst has the larger index and is rejected: the kept set is exactly "sort by (sim desc, index
 * asc), take k", independent of the tile sizes. */
#include "eval/knn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/host_gemm.h"
#include "base/status.h"

typedef struct {
  float sim;
  int idx;
} knn_entry;

synco_knn_config synco_knn_default_config(int num_classes) {
  synco_knn_config c = {.k = 200, .t = 0.1, .num_classes = num_classes, .chunk_val = 256, .chunk_train = 8192};
  return c;
}

void synco_rows_l2_normalize(float *x, size_t n, int d) {
#pragma omp parallel for schedule(static) if (n * (size_t)d >= 65536)
  for (size_t i = 0; i < n; i++) {
    float *r = x + i * (size_t)d;
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
    if (s > 0) {
      const float inv = (float)(1.0 / sqrt(s));
      for (int j = 0; j < d; j++) r[j] *= inv;
    }
  }
}

/* a is a worse neighbour than b: lower similarity, or equal similarity and a larger index. */
static int worse(knn_entry a, knn_entry b) { return a.sim < b.sim || (a.sim == b.sim && a.idx > b.idx); }

static void sift_down(knn_entry *h, int n, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && worse(h[l], h[m])) m = l;
    if (r < n && worse(h[r], h[m])) m = r;
    if (m == i) return;
    knn_entry t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static void sift_up(knn_entry *h, int i) {
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!worse(h[i], h[p])) return;
    knn_entry t = h[i];
    h[i] = h[p];
    h[p] = t;
    i = p;
  }
}

/* Rank of class y among scores (number of classes strictly ahead under "score desc, index asc"). */
static int rank_of(const double *s, int c, int y) {
  int r = 0;
  for (int j = 0; j < c; j++)
    if (s[j] > s[y] || (s[j] == s[y] && j < y)) r++;
  return r;
}

static int argmax_d(const double *s, int c) {
  int b = 0;
  for (int j = 1; j < c; j++)
    if (s[j] > s[b]) b = j;
  return b;
}

void synco_topk_hits(const float *scores, int num_classes, int y, int *hit1, int *hit5) {
  int r = 0;
  if (y < 0 || y >= num_classes) {
    *hit1 = *hit5 = 0;
    return;
  }
  for (int j = 0; j < num_classes; j++)
    if (scores[j] > scores[y] || (scores[j] == scores[y] && j < y)) r++;
  *hit1 = r < 1;
  *hit5 = r < 5;
}

synco_status synco_knn_classify(synco_knn_result *res, int *pred, float *scores, const float *train,
                                const int *train_labels, size_t n_train, const float *val, const int *val_labels,
                                size_t n_val, int d, const synco_knn_config *cfg) {
  if (res) memset(res, 0, sizeof *res);
  if (!cfg || cfg->k <= 0 || cfg->t <= 0 || cfg->num_classes <= 0 || d <= 0)
    return synco_fail(SYNCO_ERR_ARG, "knn: need k > 0, t > 0, num_classes > 0 and d > 0 (k %d, t %g, classes %d, d %d)",
                      cfg ? cfg->k : 0, cfg ? cfg->t : 0.0, cfg ? cfg->num_classes : 0, d);
  if (n_train == 0) return synco_fail(SYNCO_ERR_ARG, "knn: the train set is empty");
  for (size_t i = 0; i < n_train; i++)
    if (train_labels[i] < 0 || train_labels[i] >= cfg->num_classes)
      return synco_fail(SYNCO_ERR_ARG, "knn: train label %d of sample %zu is outside [0, %d)", train_labels[i], i,
                        cfg->num_classes);
  const int k = (size_t)cfg->k > n_train ? (int)n_train : cfg->k;
  const int cv = cfg->chunk_val > 0 ? cfg->chunk_val : 256;
  const int ct = cfg->chunk_train > 0 ? cfg->chunk_train : 8192;
  const int C = cfg->num_classes;
  float *sim = synco_malloc((size_t)cv * ct * sizeof(float));
  knn_entry *heaps = synco_malloc((size_t)cv * k * sizeof(knn_entry));
  int *heap_n = synco_malloc((size_t)cv * sizeof(int));
  double *cls = synco_malloc((size_t)cv * C * sizeof(double));
  if (!sim || !heaps || !heap_n || !cls) {
    free(sim), free(heaps), free(heap_n), free(cls);
    return SYNCO_ERR_NOMEM;
  }
  size_t c1 = 0, c5 = 0;
  for (size_t v0 = 0; v0 < n_val; v0 += cv) {
    const int nv = (int)(n_val - v0 < (size_t)cv ? n_val - v0 : (size_t)cv);
    for (int i = 0; i < nv; i++) heap_n[i] = 0;
    for (size_t t0 = 0; t0 < n_train; t0 += ct) {
      const int nt = (int)(n_train - t0 < (size_t)ct ? n_train - t0 : (size_t)ct);
      const synco_status st =
          synco_host_sgemm(0, 1, nv, nt, d, 1.0f, val + v0 * d, d, train + t0 * d, d, 0.0f, sim, nt);
      if (st != SYNCO_OK) {
        free(sim), free(heaps), free(heap_n), free(cls);
        return st;
      }
#pragma omp parallel for schedule(static) if ((size_t)nv * nt >= 65536)
      for (int i = 0; i < nv; i++) {
        knn_entry *h = heaps + (size_t)i * k;
        int hn = heap_n[i];
        const float *row = sim + (size_t)i * nt;
        for (int j = 0; j < nt; j++) {
          knn_entry e = {row[j], (int)(t0 + j)};
          if (hn < k) {
            h[hn] = e;
            sift_up(h, hn++);
          } else if (worse(h[0], e)) {
            h[0] = e;
            sift_down(h, k, 0);
          }
        }
        heap_n[i] = hn;
      }
    }
#pragma omp parallel for schedule(static) reduction(+ : c1, c5)
    for (int i = 0; i < nv; i++) {
      double *s = cls + (size_t)i * C;
      const knn_entry *h = heaps + (size_t)i * k;
      for (int c = 0; c < C; c++) s[c] = 0;
      for (int j = 0; j < heap_n[i]; j++) s[train_labels[h[j].idx]] += exp((double)h[j].sim / cfg->t);
      const size_t q = v0 + i;
      if (pred) pred[q] = argmax_d(s, C);
      if (scores)
        for (int c = 0; c < C; c++) scores[q * C + c] = (float)s[c];
      if (val_labels && val_labels[q] >= 0 && val_labels[q] < C) {
        const int r = rank_of(s, C, val_labels[q]);
        c1 += r < 1;
        c5 += r < 5;
      }
    }
  }
  free(sim), free(heaps), free(heap_n), free(cls);
  if (res) {
    res->n = n_val;
    res->correct1 = c1;
    res->correct5 = c5;
    res->top1 = n_val ? 100.0 * c1 / n_val : 0;
    res->top5 = n_val ? 100.0 * c5 / n_val : 0;
  }
  return SYNCO_OK;
}
