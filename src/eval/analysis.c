/* Feature analyses (definitions in analysis.h). Pairwise quantities walk row tiles x column tiles; one backend gemm
 * per tile gives the dot products (dot_tiles below), squared distances are |a|^2 + |b|^2 - 2 a.b clamped at 0,
 * accumulated in double. Per-thread partial sums are combined in a fixed order, so the result does not depend on
 * timing. */
#include "eval/analysis.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

#define TILE 512

/* Dot products a·bᵀ of row tiles, computed by the backend: a [na, d] and b [nb, d] (host features) are uploaded once,
 * each tile is one gemm into backend memory and is then downloaded (at most max_tile floats: TILE x TILE, or 64
 * queries x the queue) for the host's per-element reductions (log-sum-exp, distances by class, sorted softmax, max),
 * which have no op. */
typedef struct {
  synco_backend *be;
  int d;
  float *a, *b, *tile_be; /* backend memory; b == a when the rows are paired with themselves */
  float *tile;            /* host [max_tile] */
} dot_tiles;

static void tiles_close(dot_tiles *t) {
  if (t->a) t->be->free(t->be, t->a);
  if (t->b && t->b != t->a) t->be->free(t->be, t->b);
  if (t->tile_be) t->be->free(t->be, t->tile_be);
  free(t->tile);
  memset(t, 0, sizeof *t);
}

/* b NULL: the tiles are of a against itself. */
static synco_status tiles_open(dot_tiles *t, synco_backend *be, const float *a, size_t na, const float *b, size_t nb,
                               int d, size_t max_tile) {
  memset(t, 0, sizeof *t);
  if (!be) return synco_fail(SYNCO_ERR_ARG, "analysis: no backend to run the dot products on");
  t->be = be, t->d = d;
  t->a = be->alloc(be, na * d * sizeof(float));
  t->b = b ? be->alloc(be, nb * d * sizeof(float)) : t->a;
  t->tile_be = be->alloc(be, max_tile * sizeof(float));
  t->tile = synco_malloc(max_tile * sizeof(float));
  synco_status s = t->a && t->b && t->tile_be && t->tile ? SYNCO_OK : synco_fail(SYNCO_ERR_NOMEM, "analysis: out of "
                                                                                 "memory for %zu x %d features", na + nb, d);
  if (!s) s = be->copy(be, t->a, a, na * d * sizeof(float), SYNCO_COPY_H2D);
  if (!s && b) s = be->copy(be, t->b, b, nb * d * sizeof(float), SYNCO_COPY_H2D);
  if (s) tiles_close(t);
  return s;
}

/* t->tile [ni, nj] = a[i0..i0+ni) · b[j0..j0+nj)ᵀ. */
static synco_status tiles_get(dot_tiles *t, size_t i0, int ni, size_t j0, int nj) {
  const int d = t->d;
  SYNCO_TRY(t->be->gemm(t->be, 0, 1, ni, nj, d, 1.0f, t->a + i0 * d, d, t->b + j0 * d, d, 0.0f, t->tile_be, nj));
  return t->be->copy(t->be, t->tile, t->tile_be, (size_t)ni * nj * sizeof(float), SYNCO_COPY_D2H);
}

double synco_alignment(const float *a, const float *b, size_t n, int d, double alpha) {
  double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s) if (n * (size_t)d >= 65536)
  for (size_t i = 0; i < n; i++) {
    double d2 = 0;
    for (int j = 0; j < d; j++) {
      double t = (double)a[i * d + j] - b[i * d + j];
      d2 += t * t;
    }
    s += alpha == 2.0 ? d2 : pow(sqrt(d2), alpha);
  }
  return n ? s / n : NAN;
}

static void row_sqnorms(double *out, const float *x, size_t n, int d) {
#pragma omp parallel for schedule(static) if (n * (size_t)d >= 65536)
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
    out[i] = s;
  }
}

synco_status synco_uniformity(synco_backend *be, double *out, const float *x, size_t n, int d, double t) {
  if (n < 2) return synco_fail(SYNCO_ERR_ARG, "uniformity: needs at least 2 samples, got %zu", n);
  double *nrm = synco_malloc(n * sizeof(double));
  if (!nrm) return SYNCO_ERR_NOMEM;
  dot_tiles dt;
  synco_status st = tiles_open(&dt, be, x, n, NULL, 0, d, (size_t)TILE * TILE);
  if (st) {
    free(nrm);
    return st;
  }
  const float *g = dt.tile;
  row_sqnorms(nrm, x, n, d);
  /* Running log-sum-exp: total = exp(m) * s. Every exponent is <= 0 and the tiles hold many values near the
   * maximum, so one shift per tile keeps s well scaled. */
  double m = -INFINITY, s = 0;
  for (size_t i0 = 0; i0 < n && !st; i0 += TILE) {
    const int ni = (int)(n - i0 < TILE ? n - i0 : TILE);
    for (size_t j0 = i0; j0 < n && !st; j0 += TILE) {
      const int nj = (int)(n - j0 < TILE ? n - j0 : TILE);
      if ((st = tiles_get(&dt, i0, ni, j0, nj))) break;
      double tm = -INFINITY, ts = 0;
#pragma omp parallel for schedule(static) reduction(max : tm)
      for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
          if (j0 + j <= i0 + i) continue;
          double d2 = nrm[i0 + i] + nrm[j0 + j] - 2.0 * g[(size_t)i * nj + j];
          double e = -t * (d2 > 0 ? d2 : 0);
          tm = e > tm ? e : tm;
        }
      if (tm == -INFINITY) continue;
#pragma omp parallel for schedule(static) reduction(+ : ts)
      for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
          if (j0 + j <= i0 + i) continue;
          double d2 = nrm[i0 + i] + nrm[j0 + j] - 2.0 * g[(size_t)i * nj + j];
          ts += exp(-t * (d2 > 0 ? d2 : 0) - tm);
        }
      if (tm > m) {
        s = s * exp(m - tm) + ts;
        m = tm;
      } else {
        s += ts * exp(tm - m);
      }
    }
  }
  const double pairs = (double)n * (n - 1) / 2.0;
  if (!st) *out = m + log(s) - log(pairs);
  free(nrm);
  tiles_close(&dt);
  return st;
}

synco_status synco_distance_ratio(synco_backend *be, double *ratio, const float *x, const int *labels, size_t n,
                                  int d) {
  int C = 0;
  for (size_t i = 0; i < n; i++) {
    if (labels[i] < 0) return synco_fail(SYNCO_ERR_ARG, "distance ratio: sample %zu has no label", i);
    if (labels[i] + 1 > C) C = labels[i] + 1;
  }
  double *nrm = synco_malloc(n * sizeof(double));
  double *sum = synco_calloc(n * (size_t)(C ? C : 1), sizeof(double));
  size_t *cnt = synco_calloc((size_t)(C ? C : 1), sizeof(size_t));
  dot_tiles dt = {0};
  synco_status st = !nrm || !sum || !cnt ? SYNCO_ERR_NOMEM : tiles_open(&dt, be, x, n, NULL, 0, d, (size_t)TILE * TILE);
  if (st) {
    free(nrm), free(sum), free(cnt);
    return st;
  }
  const float *g = dt.tile;
  row_sqnorms(nrm, x, n, d);
  for (size_t i = 0; i < n; i++) cnt[labels[i]]++;
  for (size_t i0 = 0; i0 < n && !st; i0 += TILE) {
    const int ni = (int)(n - i0 < TILE ? n - i0 : TILE);
    for (size_t j0 = 0; j0 < n && !st; j0 += TILE) {
      const int nj = (int)(n - j0 < TILE ? n - j0 : TILE);
      if ((st = tiles_get(&dt, i0, ni, j0, nj))) break;
#pragma omp parallel for schedule(static)
      for (int i = 0; i < ni; i++) {
        double *srow = sum + (i0 + i) * (size_t)C;
        for (int j = 0; j < nj; j++) {
          if (j0 + j == i0 + i) continue;
          double d2 = nrm[i0 + i] + nrm[j0 + j] - 2.0 * g[(size_t)i * nj + j];
          srow[labels[j0 + j]] += sqrt(d2 > 0 ? d2 : 0);
        }
      }
    }
  }
  for (size_t i = 0; i < n && !st; i++) {
    const int c = labels[i];
    double intra = 0, inter = 0;
    for (int k = 0; k < C; k++) *(k == c ? &intra : &inter) += sum[i * C + k];
    const size_t n_intra = cnt[c] - 1, n_inter = n - cnt[c];
    ratio[i] = n_intra && n_inter && intra > 0 ? (inter / n_inter) / (intra / n_intra) : NAN;
  }
  free(nrm), free(sum), free(cnt);
  tiles_close(&dt);
  return st;
}

static int cmp_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

synco_status synco_matching_probs(synco_backend *be, double *probs, size_t max_out, const float *q, size_t n,
                                  const float *queue, size_t K, int d, double T) {
  if (n == 0 || K == 0 || T <= 0)
    return synco_fail(SYNCO_ERR_ARG, "matching probabilities: need queries, a queue and T > 0 (n %zu, K %zu, T %g)", n, K, T);
  const size_t m = K < max_out ? K : max_out;
  const int nt = omp_get_max_threads();
  const int rows = 64;
  double *acc = synco_calloc((size_t)nt * m, sizeof(double));
  double *p = synco_malloc((size_t)nt * K * sizeof(double));
  dot_tiles dt = {0};
  synco_status st = !acc || !p ? SYNCO_ERR_NOMEM : tiles_open(&dt, be, q, n, queue, K, d, (size_t)rows * K);
  for (size_t i0 = 0; i0 < n && !st; i0 += rows) {
    const int ni = (int)(n - i0 < (size_t)rows ? n - i0 : (size_t)rows);
    if ((st = tiles_get(&dt, i0, ni, 0, (int)K))) break;
    const float *l = dt.tile;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < ni; i++) {
      const int tid = omp_get_thread_num();
      double *pp = p + (size_t)tid * K;
      const float *li = l + (size_t)i * K;
      double mx = -INFINITY, s = 0;
      for (size_t j = 0; j < K; j++) mx = li[j] / T > mx ? li[j] / T : mx;
      for (size_t j = 0; j < K; j++) s += pp[j] = exp(li[j] / T - mx);
      for (size_t j = 0; j < K; j++) pp[j] /= s;
      qsort(pp, K, sizeof(double), cmp_desc);
      for (size_t j = 0; j < m; j++) acc[(size_t)tid * m + j] += pp[j];
    }
  }
  for (size_t j = 0; j < m && !st; j++) {
    double s = 0;
    for (int t = 0; t < nt; t++) s += acc[(size_t)t * m + j];
    probs[j] = s / n;
  }
  free(acc), free(p);
  tiles_close(&dt);
  return st;
}

synco_status synco_proxy_margins(synco_backend *be, double *margin, const float *q, const float *k, size_t n,
                                 const float *queue, size_t K, int d) {
  const int rows = 64;
  dot_tiles dt = {0};
  if (K) SYNCO_TRY(tiles_open(&dt, be, q, n, queue, K, d, (size_t)rows * K));
  synco_status st = SYNCO_OK;
  for (size_t i0 = 0; i0 < n && !st; i0 += rows) {
    const int ni = (int)(n - i0 < (size_t)rows ? n - i0 : (size_t)rows);
    if (K && (st = tiles_get(&dt, i0, ni, 0, (int)K))) break;
    const float *l = dt.tile;
#pragma omp parallel for schedule(static) if ((size_t)ni * (K + d) >= 65536)
    for (int i = 0; i < ni; i++) {
      const float *qi = q + (i0 + i) * d, *ki = k + (i0 + i) * d;
      float pos = 0;
      for (int j = 0; j < d; j++) pos += qi[j] * ki[j];
      float neg = -INFINITY;
      for (size_t j = 0; j < K; j++) neg = l[(size_t)i * K + j] > neg ? l[(size_t)i * K + j] : neg;
      margin[i0 + i] = (double)pos - (double)neg;
    }
  }
  if (K) tiles_close(&dt);
  return st;
}

synco_status synco_proxy_accuracy(synco_backend *be, double *acc, const float *q, const float *k, size_t n,
                                  const float *queue, size_t K, int d) {
  if (n == 0) return synco_fail(SYNCO_ERR_ARG, "proxy accuracy: no queries");
  double *m = synco_malloc(n * sizeof(double));
  if (!m) return SYNCO_ERR_NOMEM;
  synco_status s = synco_proxy_margins(be, m, q, k, n, queue, K, d);
  size_t hits = 0;
  for (size_t i = 0; i < n; i++) hits += m[i] > 0;
  free(m);
  *acc = 100.0 * hits / n;
  return s;
}

size_t synco_histogram(size_t *counts, int bins, double lo, double hi, const double *v, size_t n) {
  memset(counts, 0, bins * sizeof(size_t));
  size_t f = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(v[i])) continue;
    f++;
    long b = hi > lo ? (long)floor((v[i] - lo) / (hi - lo) * bins) : 0;
    if (b < 0) b = 0;
    if (b >= bins) b = bins - 1;
    counts[b]++;
  }
  return f;
}

static int cmp_asc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

size_t synco_stats(const double *v, size_t n, double *mean, double *median, double *vmin, double *vmax) {
  double *t = malloc((n ? n : 1) * sizeof(double));
  size_t f = 0;
  double s = 0;
  if (t)
    for (size_t i = 0; i < n; i++)
      if (isfinite(v[i])) s += t[f++] = v[i];
  if (!f) {
    *mean = *median = *vmin = *vmax = NAN;
    free(t);
    return 0;
  }
  qsort(t, f, sizeof(double), cmp_asc);
  *mean = s / f;
  *median = f % 2 ? t[f / 2] : 0.5 * (t[f / 2 - 1] + t[f / 2]);
  *vmin = t[0];
  *vmax = t[f - 1];
  free(t);
  return f;
}
