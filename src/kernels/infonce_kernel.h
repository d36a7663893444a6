/* One query's row of the InfoNCE loss, forward and backward, single-source (see kernels/hd.h). A row z has
 * ncol logits: z[0] = q·k (the positive), z[1..K] = q·Qᵀ (raw dots, scaled here by 1/T), z[K+1..ncol) the
 * synthetic negatives (already divided by T). The positive is the class: loss = log Σ exp z − z[0]. */
#ifndef SYNCO_KERNELS_INFONCE_KERNEL_H
#define SYNCO_KERNELS_INFONCE_KERNEL_H

#include <math.h>

#include "kernels/hd.h"
#include "tensor/loss_record.h"

/* Forward of one row, in place: scales the raw dots, replaces z by its softmax and returns the cross-entropy
 * (in double). *loss_moco gets the cross-entropy over the positive and the queue alone (columns 0..K: MoCo's loss,
 * the synthetic negatives left out; equal to the return value without them). hits[0] = the positive is at least
 * every queue logit (the paper's proxy accuracy), hits[1] = at least every logit, synthetic ones included (ties go
 * to the positive, as torch's argmax with index 0 first). */
SYNCO_HD static inline double synco_k_infonce_row(float *z, int K, int ncol, float invT, int hits[2],
                                                  double *loss_moco) {
  for (int j = 0; j <= K; j++) z[j] *= invT;
  float mx = z[0], mneg = -INFINITY;
  for (int j = 1; j <= K; j++) mneg = z[j] > mneg ? z[j] : mneg;
  hits[0] = z[0] >= mneg;
  for (int j = K + 1; j < ncol; j++) mneg = z[j] > mneg ? z[j] : mneg;
  hits[1] = z[0] >= mneg;
  if (mneg > mx) mx = mneg;
  const double z0 = (double)z[0] - mx;
  double sum = 0.0, sum_queue = 0.0;
  for (int j = 0; j < ncol; j++) {
    const float e = expf(z[j] - mx);
    z[j] = e;
    sum += e;
    if (j == K) sum_queue = sum;
  }
  const float r = (float)(1.0 / sum);
  for (int j = 0; j < ncol; j++) z[j] *= r;
  *loss_moco = log(sum_queue) - z0;
  return log(sum) - z0;
}

/* Backward of one row of the batch-mean loss, in place: softmax p → dL/dz = (p − [j = 0]) / B; for the raw dots
 * (columns 0..K) that times 1/T, so they are gradients of q·k and q·Qᵀ themselves. */
SYNCO_HD static inline void synco_k_infonce_grad_row(float *g, int K, int ncol, float invB, float invT) {
  g[0] = (g[0] - 1.0f) * invB * invT;
  for (int j = 1; j <= K; j++) g[j] *= invB * invT;
  for (int j = K + 1; j < ncol; j++) g[j] *= invB;
}

/* Adds one call's scalars to rec: the row losses summed in row order (double), the hits counted (see
 * synco_infonce_fwd_fn for row_loss [2B] and hits [2B]). One thread: the sums' order is the rows'. */
SYNCO_HD static inline void synco_k_loss_record(double *rec, const double *row_loss, const int *hits, int B,
                                                double tag) {
  double l = 0.0, lq = 0.0;
  long c = 0, cq = 0;
  for (int i = 0; i < B; i++) {
    l += row_loss[i];
    lq += row_loss[B + i];
    cq += hits[2 * i];
    c += hits[2 * i + 1];
  }
  rec[SYNCO_REC_LOSS] += l / B;
  rec[SYNCO_REC_ACC] += (double)c / B;
  rec[SYNCO_REC_LOSS_QUEUE] += lq / B;
  rec[SYNCO_REC_ACC_QUEUE] += (double)cq / B;
  rec[SYNCO_REC_CALLS] += 1.0;
  if (!isfinite(l) && rec[SYNCO_REC_BAD] == 0.0) {
    rec[SYNCO_REC_BAD] = 1.0;
    rec[SYNCO_REC_BAD_TAG] = tag;
  }
}

#endif
