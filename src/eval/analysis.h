/* The paper's feature analyses, on feature matrices the caller has computed.
 * Definitions (Wang & Isola 2020 for the first two; every feature is an L2-normalized row):
 *   alignment   = mean_i ||f(x_i) - f(x_i+)||^alpha                     (alpha = 2 in the paper)
 *   uniformity  = log( mean_{i<j} exp(-t ||f(x_i) - f(x_j)||^2) )      (t = 2; all distinct pairs, as pdist)
 *   ratio_i     = inter_i / intra_i, where, with Euclidean (not squared) distances,
 *                 inter_i = mean distance from sample i to the samples of OTHER classes,
 *                 intra_i = mean distance from sample i to the OTHER samples of ITS class;
 *                 samples whose class has no other sample, or with no sample of another class, get NaN.
 *   matching probabilities: for each query q, p = softmax(q . Q^T / T) over the K queue entries, sorted in
 *                 descending order; averaged over queries element by element; the first min(K, 1024) kept.
 *   proxy accuracy: the percentage of queries whose positive logit q . k+ is strictly greater than every
 *                 negative logit q . Q_j (the positive ranked first among 1 + K candidates).
 * Pairwise work is done in tiles: the dot products of a tile are one gemm of the backend `be` (the features are
 * uploaded once, each tile's products downloaded for the host's reductions, which have no op); ||a-b||^2 = 2 - 2 a.b
 * for unit rows is NOT assumed: squared norms are added explicitly, so unnormalized inputs give the plain Euclidean
 * definitions. Every matrix argument is host memory. */
#ifndef SYNCO_EVAL_ANALYSIS_H
#define SYNCO_EVAL_ANALYSIS_H

#include <stddef.h>

#include "synco.h"
#include "tensor/backend.h"

/* Alignment of positive pairs a[i], b[i] (rows of [n, d]). */
double synco_alignment(const float *a, const float *b, size_t n, int d, double alpha);
/* Uniformity of x[n, d] over the n(n-1)/2 distinct pairs; n >= 2. Computed with a running log-sum-exp. */
synco_status synco_uniformity(synco_backend *be, double *out, const float *x, size_t n, int d, double t);
/* Per-sample inter/intra distance ratio (definition above): ratio[n], NaN where undefined. */
synco_status synco_distance_ratio(synco_backend *be, double *ratio, const float *x, const int *labels, size_t n,
                                  int d);
/* Mean sorted matching probabilities: probs[min(K, max_out)]. */
synco_status synco_matching_probs(synco_backend *be, double *probs, size_t max_out, const float *q, size_t n,
                                  const float *queue, size_t K, int d, double T);
/* Per-query margin of the positive over the hardest negative: margin[i] = q_i . k_i - max_j q_i . Q_j
 * (positive: the proxy task is solved for that query). q, k: [n, d]; queue: [K, d]. */
synco_status synco_proxy_margins(synco_backend *be, double *margin, const float *q, const float *k, size_t n,
                                 const float *queue, size_t K, int d);
/* Proxy-task accuracy in percent (definition above); q, k: [n, d]; queue: [K, d]. */
synco_status synco_proxy_accuracy(synco_backend *be, double *acc, const float *q, const float *k, size_t n,
                                  const float *queue, size_t K, int d);

/* Histogram of the finite values of v[n] into bins equal bins over [lo, hi) (the last bin includes hi;
 * values outside are clamped into the end bins). counts[bins]. Returns the number of finite values. */
size_t synco_histogram(size_t *counts, int bins, double lo, double hi, const double *v, size_t n);

/* Basic statistics of the finite values of v[n]: mean, median, min, max; returns their number. */
size_t synco_stats(const double *v, size_t n, double *mean, double *median, double *vmin, double *vmax);

#endif
