/* One row of a classifier's softmax cross-entropy, and the record its calls add to, single-source (see
 * kernels/hd.h): the reference backend loops over rows, the CUDA backend runs a thread per row, and both sum the
 * rows' losses in row order (synco_k_xent_add), so the record is the same up to libm's exp and log. */
#ifndef SYNCO_KERNELS_XENT_KERNEL_H
#define SYNCO_KERNELS_XENT_KERNEL_H

#include <math.h>

#include "kernels/hd.h"
#include "tensor/loss_record.h"

/* Row z [C] against class y: returns its cross-entropy log Σ exp z − z[y] (in double); with g, g = (softmax −
 * onehot(y))·scale; *hit1 = 1 when z[y] is the top-1 (ties go to the lower class index, as synco_topk_hits). */
SYNCO_HD static inline double synco_k_xent_row(const float *z, int C, int y, float *g, float scale, int *hit1) {
  float m = z[0];
  for (int c = 1; c < C; c++) m = z[c] > m ? z[c] : m;
  double s = 0;
  for (int c = 0; c < C; c++) s += exp((double)z[c] - m);
  const double lse = m + log(s);
  if (g) {
    for (int c = 0; c < C; c++) g[c] = (float)(exp((double)z[c] - lse) * scale);
    g[y] -= scale;
  }
  int r = 0;
  for (int c = 0; c < C; c++) r += z[c] > z[y] || (z[c] == z[y] && c < y);
  *hit1 = r < 1;
  return lse - z[y];
}

/* Adds a call of n rows whose losses sum to loss_sum (in row order) with `hits` top-1 hits to rec [SYNCO_XREC_LEN];
 * tag is kept with the first call whose loss is not finite. */
SYNCO_HD static inline void synco_k_xent_add(double *rec, double loss_sum, long hits, int n, double tag) {
  rec[SYNCO_XREC_LOSS] += loss_sum / n;
  rec[SYNCO_XREC_HITS] += (double)hits;
  rec[SYNCO_XREC_ROWS] += n;
  rec[SYNCO_XREC_CALLS] += 1.0;
  if (!isfinite(loss_sum) && rec[SYNCO_XREC_BAD] == 0.0) {
    rec[SYNCO_XREC_BAD] = 1.0;
    rec[SYNCO_XREC_BAD_TAG] = tag;
  }
}

#endif
