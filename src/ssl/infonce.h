/* The MoCo / SynCo contrastive loss for one direction: logits [q·k | q·Qᵀ | synthetic] / T per query,
 * cross-entropy with the positive at index 0, averaged over the batch; its proxy accuracy; and dL/dq.
 * k, the queue and the synthetic negatives are constants for the backward (docs/method.md). A symmetric loss is two
 * calls with the views swapped. */
#ifndef SYNCO_SSL_INFONCE_H
#define SYNCO_SSL_INFONCE_H

#include "ssl/negatives.h"
#include "synco.h"
#include "tensor/backend.h"

typedef struct {
  synco_backend *be; /* runs the GEMMs */
  int B, K, dim, S; /* S: synthetic logits per query this scratch has room for */
  int ld;           /* 1 + K + S: row stride of logits */
  float *logits;    /* [B, ld]: after a call, the softmax probabilities of each row */
  double *row_loss; /* [2B] and [2B], backend memory: each row's losses (all logits, then the positive and the
                       queue alone) and proxy hits */
  int *hits;
  double *rec;      /* [SYNCO_REC_LEN], backend memory: the record of one call, downloaded when it asks for *loss or
                       *acc (the row sums made by the backend's loss_record, as for a run's record) */
  float acc_queue;  /* after a call: share of rows whose positive logit is at least every queue logit (the
                       paper's proxy accuracy; *acc of the call also counts the synthetic logits) */
  float loss_queue; /* after a call: the mean loss over the positive and the queue logits alone (MoCo's loss;
                       *loss of the call also counts the synthetic logits, which the gradient follows) */
} synco_infonce_scratch;

/* Allocates for B queries of size dim, a queue of K rows and up to S synthetic logits per query. */
synco_status synco_infonce_init(synco_infonce_scratch *s, synco_backend *be, int B, int K, int dim, int S);
void synco_infonce_free(synco_infonce_scratch *s);
/* Bytes synco_infonce_init allocates for these sizes (backend and host memory together). */
size_t synco_infonce_bytes(int B, int K, int S);

/* One direction of the loss. q, k: [B, dim] unit rows; queue: [K, dim]; T > 0. cfg/draws: the synthetic
 * negatives (draws already filled for this step), or both NULL (or a config with all counts 0) for plain
 * MoCo-v2. Outputs: *loss (mean cross-entropy), *acc (share of rows whose positive logit is the largest, ties
 * going to the positive as torch's argmax/topk does with index 0 first), dq [B, dim] = dL/dq (assigned; NULL to
 * skip the backward). Any output pointer may be NULL; with loss and acc both NULL nothing is downloaded (the
 * backend is not waited for: synco_infonce_record keeps the scalars on the backend). The backend's gemm computes
 * q·Qᵀ and the queue part of dq. After the call, s->logits holds the softmax of each row over all its logits. */
synco_status synco_contrastive_loss(synco_infonce_scratch *s, float *loss, float *acc, float *dq, const float *q,
                                    const float *k, const float *queue, int B, int K, int dim, float T,
                                    const synco_negatives_config *cfg, synco_negatives_draws *draws);

/* Adds the last call's loss, accuracies and a non-finite flag (tagged with `step`) to rec [SYNCO_REC_LEN], backend
 * memory (tensor/loss_record.h), on the backend: no download. */
synco_status synco_infonce_record(synco_infonce_scratch *s, double *rec, uint64_t step);

#endif
