/* InfoNCE over [q·k | q·Qᵀ | synthetic] / T. The queue logits and the queue part of dq are each one
 * backend gemm; the row pass (scale, max, Σexp in double, softmax, gradient) runs in place in the logits buffer,
 * parallel over rows. The gradient of the mean loss w.r.t. a logit z_ij is (p_ij − [j = 0]) / B; for the raw dot
 * products (positive and queue columns) it is that times 1/T, and the synthetic negatives fold their queue-row
 * parts into those raw-dot gradients, so dq = g_0·k + G_queue·Q + (q, sign(q), noise parts) needs one GEMM. */
#include "ssl/infonce.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

synco_status synco_infonce_init(synco_infonce_scratch *s, synco_backend *be, int B, int K, int dim, int S) {
  memset(s, 0, sizeof *s);
  if (!be) return synco_fail(SYNCO_ERR_ARG, "infonce: no backend");
  if (B < 1 || K < 1 || dim < 1 || S < 0)
    return synco_fail(SYNCO_ERR_ARG, "infonce: B = %d, K = %d, dim = %d, S = %d, expected B, K, dim >= 1, S >= 0", B,
                      K, dim, S);
  s->be = be;
  s->B = B;
  s->K = K;
  s->dim = dim;
  s->S = S;
  s->ld = 1 + K + S;
  s->logits = be->alloc(be, (size_t)B * (size_t)s->ld * sizeof(float));
  s->row_loss = be->alloc(be, (size_t)B * 2 * sizeof(double));
  s->hits = be->alloc(be, (size_t)B * 2 * sizeof(int));
  s->rec = be->alloc(be, SYNCO_REC_LEN * sizeof(double));
  if (!s->logits || !s->row_loss || !s->hits || !s->rec) {
    synco_infonce_free(s);
    return synco_fail(SYNCO_ERR_NOMEM, "out of memory for the logits of %d x %d", B, s->ld);
  }
  return SYNCO_OK;
}

size_t synco_infonce_bytes(int B, int K, int S) {
  const size_t b = (size_t)(B > 0 ? B : 0), ld = 1 + (size_t)(K > 0 ? K : 0) + (size_t)(S > 0 ? S : 0);
  /* logits; each row's losses and hits; a call's record */
  return b * ld * sizeof(float) + b * 2 * sizeof(double) + b * 2 * sizeof(int) + SYNCO_REC_LEN * sizeof(double);
}

void synco_infonce_free(synco_infonce_scratch *s) {
  if (!s) return;
  if (s->logits) s->be->free(s->be, s->logits);
  if (s->row_loss) s->be->free(s->be, s->row_loss);
  if (s->hits) s->be->free(s->be, s->hits);
  if (s->rec) s->be->free(s->be, s->rec);
  memset(s, 0, sizeof *s);
}

/* The scalars of the last call, downloaded: its record (the two losses summed in row order, the two proxy
 * accuracies), made by the backend as a run's record is. */
static synco_status download_scalars(synco_infonce_scratch *s, float *loss, float *acc) {
  synco_backend *be = s->be;
  double rec[SYNCO_REC_LEN];
  SYNCO_TRY(be->memset(be, s->rec, 0, sizeof rec));
  SYNCO_TRY(synco_infonce_record(s, s->rec, 0));
  SYNCO_TRY(be->copy(be, rec, s->rec, sizeof rec, SYNCO_COPY_D2H));
  if (loss) *loss = (float)rec[SYNCO_REC_LOSS];
  if (acc) *acc = (float)rec[SYNCO_REC_ACC];
  s->loss_queue = (float)rec[SYNCO_REC_LOSS_QUEUE];
  s->acc_queue = (float)rec[SYNCO_REC_ACC_QUEUE];
  return SYNCO_OK;
}

synco_status synco_contrastive_loss(synco_infonce_scratch *s, float *loss, float *acc, float *dq, const float *q,
                                    const float *k, const float *queue, int B, int K, int dim, float T,
                                    const synco_negatives_config *cfg, synco_negatives_draws *draws) {
  if (B != s->B || K != s->K || dim != s->dim)
    return synco_fail(SYNCO_ERR_ARG, "infonce: called with B = %d, K = %d, dim = %d, scratch made for %d, %d, %d", B,
                      K, dim, s->B, s->K, s->dim);
  if (!(T > 0.f) || !isfinite(T)) return synco_fail(SYNCO_ERR_ARG, "infonce: temperature %g, expected > 0", (double)T);
  int S = 0;
  if (cfg && draws) {
    S = synco_negatives_total(cfg);
    if (S != draws->total || (S > 0 && (draws->B != B || draws->dim != dim || draws->K != K)))
      return synco_fail(SYNCO_ERR_ARG, "infonce: negatives draws were made for another configuration");
    if (S > s->S)
      return synco_fail(SYNCO_ERR_ARG, "infonce: %d synthetic logits per query, scratch has room for %d", S, s->S);
  }
  const int ld = s->ld, ncol = 1 + K + S;
  float *L = s->logits;

  SYNCO_TRY(s->be->gemm(s->be, 0, 1, B, K, dim, 1.0f, q, dim, queue, dim, 0.0f, L + 1, ld));
  if (S > 0) SYNCO_TRY(synco_negatives_logits(draws, L + 1 + K, ld, L + 1, ld, q, queue, T));

  synco_backend *be = s->be;
  SYNCO_TRY(be->infonce_fwd(be, L, ld, s->row_loss, s->hits, q, k, B, K, ncol, dim, T));
  if (loss || acc) SYNCO_TRY(download_scalars(s, loss, acc));
  if (!dq) return SYNCO_OK;

  /* gradients: the softmax rows become dL/dz in place; columns 0..K then hold gradients of the raw dots */
  float *G = s->logits;
  SYNCO_TRY(be->infonce_bwd(be, G, ld, dq, k, B, K, ncol, dim, T));
  if (S > 0) SYNCO_TRY(synco_negatives_backward(draws, dq, G + 1, ld, G + 1 + K, ld, q, T));
  return s->be->gemm(s->be, 0, 0, B, dim, K, 1.0f, G + 1, ld, queue, dim, 1.0f, dq, dim);
}

synco_status synco_infonce_record(synco_infonce_scratch *s, double *rec, uint64_t step) {
  return s->be->loss_record(s->be, rec, s->row_loss, s->hits, s->B, (double)step);
}
