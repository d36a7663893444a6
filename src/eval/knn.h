/* Weighted k-nearest-neighbour classification of features (the InstDisc / MoCo kNN monitor).
 * For each query (validation) feature: cosine similarity to every train feature, the k most similar
 * (ties broken towards the lower train index), each neighbour votes for its class with weight exp(sim / t),
 * and classes are ranked by their summed weight (ties towards the lower class index). Features must be
 * L2-normalized rows (synco_rows_l2_normalize), so the dot product is the cosine similarity.
 * Similarities are computed tile by tile (query rows x train rows) with one SGEMM (backend/host_gemm.h) while a bounded
 * min-heap per query keeps the k best, so memory is O(chunk_val * chunk_train + n_val * k) whatever the
 * size of the train set. Used by `synco knn` and by pretraining's --knn-every. */
#ifndef SYNCO_EVAL_KNN_H
#define SYNCO_EVAL_KNN_H

#include <stddef.h>

#include "synco.h"

typedef struct {
  int k;            /* neighbours (MoCo monitor: 200); clamped to the train size */
  double t;         /* temperature of the vote weights exp(sim / t) (0.1) */
  int num_classes;  /* labels are in [0, num_classes) */
  int chunk_val;    /* query rows per tile (<= 0: 256) */
  int chunk_train;  /* train rows per tile (<= 0: 8192) */
} synco_knn_config;

/* Defaults: k 200, t 0.1, tiles 256 x 8192; num_classes must still be set. */
synco_knn_config synco_knn_default_config(int num_classes);

typedef struct {
  size_t n;              /* queries scored */
  size_t correct1;       /* true label ranked first */
  size_t correct5;       /* true label among the first five classes */
  double top1, top5;     /* in percent */
} synco_knn_result;

/* Scales each row of x[n, d] to unit Euclidean norm (rows of norm 0 stay 0). */
void synco_rows_l2_normalize(float *x, size_t n, int d);

/* Classifies val[n_val, d] by the train[n_train, d] features and their labels. pred (optional, [n_val]) gets
 * the predicted class, scores (optional, [n_val, num_classes]) the summed vote weights. val_labels may be NULL
 * (predictions only; res then counts nothing). */
synco_status synco_knn_classify(synco_knn_result *res, int *pred, float *scores, const float *train,
                                const int *train_labels, size_t n_train, const float *val, const int *val_labels,
                                size_t n_val, int d, const synco_knn_config *cfg);

/* Top-1 / top-5 hits of one score row against label y (ties towards the lower class index, as above). */
void synco_topk_hits(const float *scores, int num_classes, int y, int *hit1, int *hit5);

#endif
