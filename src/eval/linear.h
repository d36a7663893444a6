/* Linear classifiers on features: the fast linear probe on cached features, and the pieces of the MoCo
 * linear-classification protocol (a linear layer trained by SGD with momentum on minibatches that the caller
 * supplies, e.g. augmented features of a frozen backbone; also reused as the classifier of fine-tuning).
 *
 * Fast probe: multinomial logistic regression (softmax cross-entropy) minimizing
 *   (1/n) sum_i CE(W x_i + b, y_i) + (lambda/2) ||W||^2      (the bias is not penalized)
 * on standardized features (train mean / std per dimension; or L2-normalized rows), by full-batch L-BFGS.
 * lambda is chosen among a few values by top-1 accuracy on a seed-determined held-out part of the train
 * features (ties go to the larger lambda), then the model is refit on all train features. Everything is
 * deterministic for a given seed and thread count. The probe stays on the host: it works on cached host features
 * (computed once, downloaded once), full-batch, and L-BFGS's vector arithmetic is host code; the per-minibatch
 * work of the MoCo protocol is what runs on the backend. */
#ifndef SYNCO_EVAL_LINEAR_H
#define SYNCO_EVAL_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "optim/schedule.h"
#include "synco.h"
#include "tensor/backend.h"

/* ---- fast probe ------------------------------------------------------------------------------- */
typedef struct {
  int num_classes;
  int normalize;        /* 0: standardize each dimension (default); 1: L2-normalize rows */
  int max_iter;         /* L-BFGS iterations per fit (default 300) */
  int history;          /* L-BFGS memory (default 10) */
  double tol;           /* stop when the gradient's largest entry is below tol (default 1e-5) */
  double lambdas[8];    /* penalties tried, largest first is fastest (warm starts go down the path) */
  int n_lambdas;        /* 0: the default grid 1, 1e-1, ..., 1e-6 */
  double holdout;       /* fraction of train held out to pick lambda (default 0.2; 0 with one lambda) */
  uint64_t seed;        /* picks the held-out part */
  float *out_weight;    /* optional [num_classes, d] and [num_classes]: the final classifier on the raw features */
  float *out_bias;      /* (standardization folded in: logits = out_weight x + out_bias); NULL to skip */
} synco_probe_config;

synco_probe_config synco_probe_default_config(int num_classes);

typedef struct {
  double top1, top5;        /* on val, percent */
  double train_top1;        /* on all train features with the final model, percent */
  double holdout_top1[8];   /* per lambda tried, percent (the selection criterion) */
  double lambda;            /* chosen */
  int iters;                /* L-BFGS iterations of the final fit */
  double loss;              /* final objective on train */
} synco_probe_result;

/* Trains on train[n_train, d] with labels in [0, num_classes) and scores val[n_val, d]. The inputs are not
 * modified. With out_weight/out_bias set, the classifier is written there; with normalize = 1 (L2-normalized rows,
 * not a linear map of the features) that is refused. */
synco_status synco_linear_probe_fast(synco_probe_result *res, const float *train, const int *train_labels,
                                     size_t n_train, const float *val, const int *val_labels, size_t n_val, int d,
                                     const synco_probe_config *cfg);

/* Softmax cross-entropy of logits[n, C] against y: mean loss, and (if dlogits) its gradient
 * (softmax - onehot) * scale written to dlogits. Counts top-1 / top-5 hits when the pointers are non-NULL. */
double synco_softmax_xent(const float *logits, const int *y, int n, int C, float *dlogits, float scale, int *hits1,
                          int *hits5);

/* ---- MoCo protocol: a linear layer on the backend, trained by minibatch SGD ----------------------- */
/* The optimizer of the MoCo linear-classification recipe: SGD with momentum on the project's one schedule. */
typedef struct {
  synco_lr_schedule sched; /* lr 30, 100 epochs, x0.1 at 60 and 80 (optim/schedule.h) */
  double momentum;         /* 0.9 */
  double weight_decay;     /* 0 */
} synco_sgd_config;

/* The MoCo linear-classification recipe: lr 30, momentum 0.9, no weight decay, 100 epochs, x0.1 at 60 and 80. */
synco_sgd_config synco_sgd_moco_linear_config(void);

/* The layer's parameters, gradients, momentum, features, logits and labels are backend memory, so that an
 * evaluation on a GPU runs there: linear_fwd, the xent op (the cross-entropy, its gradient, and its loss and hits
 * added to a record on the backend), linear_bwd and the one SGD op (optim/sgd.h) over one buffer [W | b]. A training
 * step uploads its labels and downloads nothing unless asked for its loss; scoring downloads the logits (top-k). */
typedef struct {
  synco_backend *be;
  int dim, num_classes, max_batch;
  float *params;           /* backend [C·dim + C]: W [C, dim], then b [C]: one SGD call updates both */
  float *grads;            /* backend, mirrors params: accumulated by the backward, zeroed by each SGD step */
  float *mom;              /* backend, mirrors params: SGD momentum */
  float *x;                /* backend [max_batch, dim]: the features a step or a score reads (the encoder writes
                              them here, or synco_linear_layer_upload copies host features in) */
  float *dx;               /* backend [max_batch, dim]: dL/dx of the last backward with want_dx (fine-tuning) */
  float *logits, *dlogits; /* backend [max_batch, C] */
  int *labels;             /* backend [max_batch]: a step's labels, uploaded */
  double *rec;             /* backend [SYNCO_XREC_LEN]: the loss record since the last read (tensor/loss_record.h) */
  float *logits_host;      /* host [max_batch, C]: the download of the logits (scoring) */
  long steps;              /* SGD steps taken: the first creates the momentum buffer, as torch */
} synco_linear_layer;

/* Weight ~ N(0, 0.01^2), bias 0 (MoCo's init of the classifier), from the counter-based RNG keyed by seed, in be's
 * memory. */
synco_status synco_linear_layer_create(synco_linear_layer **out, synco_backend *be, int dim, int num_classes,
                                       int max_batch, uint64_t seed);
void synco_linear_layer_free(synco_linear_layer *l);
/* Copies host features x[n, dim] into l->x (n <= max_batch). */
synco_status synco_linear_layer_upload(synco_linear_layer *l, const float *x, int n);
/* On the n features in l->x: forward, mean cross-entropy against y (host labels, uploaded), backward:
 * grads += dL/d[W | b], and with want_dx l->dx = dL/dx. With loss or hits1 (either may be NULL) the record is read
 * (synco_linear_layer_read: the mean loss and the hits since the last read; this call's when every call asks), a
 * non-finite loss returned as SYNCO_ERR_NUMERIC; with both NULL nothing is downloaded and the backend is not
 * waited for. */
synco_status synco_linear_layer_backprop(synco_linear_layer *l, const int *y, int n, int want_dx, double *loss,
                                         int *hits1);
/* What the steps since the last read scored (on their training batches, before each update). */
typedef struct {
  double loss; /* mean over the calls of each call's batch-mean loss */
  long hits;   /* top-1 hits */
  long rows;   /* rows scored */
  int calls;
} synco_xent_stats;
/* Reads the layer's loss record (one download) into out (may be NULL) and zeroes it; SYNCO_ERR_NUMERIC when a loss
 * since the last read was not finite. */
synco_status synco_linear_layer_read(synco_linear_layer *l, synco_xent_stats *out);
/* One SGD step over [W | b] at learning rate lr (torch.optim.SGD: kernels/sgd_kernel.h), then zeroes the grads. */
synco_status synco_linear_layer_sgd(synco_linear_layer *l, double lr, double momentum, double weight_decay);
/* Backprop and SGD on the n features in l->x. */
synco_status synco_linear_layer_train_step(synco_linear_layer *l, const int *y, int n, double lr,
                                           const synco_sgd_config *c, double *loss, int *hits1);
/* Adds the top-1 / top-5 hits of the n features in l->x against y to *hits1 / *hits5. */
synco_status synco_linear_layer_score(synco_linear_layer *l, const int *y, int n, size_t *hits1, size_t *hits5);
/* Scores host features x[n, dim] in batches of max_batch: top-1 / top-5 hits against y. */
synco_status synco_linear_layer_eval(synco_linear_layer *l, const float *x, const int *y, size_t n, size_t *hits1,
                                     size_t *hits5);
/* Downloads the classifier: w [C, dim] and b [C] host memory (either may be NULL). */
synco_status synco_linear_layer_get(synco_linear_layer *l, float *w, float *b);

/* Trains l on cached host features by the SGD schedule: each epoch a seed-determined shuffle, minibatches of
 * l->max_batch, each uploaded. The reference use of the pieces above (the CLI feeds augmented features instead). */
synco_status synco_linear_layer_fit(synco_linear_layer *l, const float *x, const int *y, size_t n,
                                    const synco_sgd_config *c, uint64_t seed);

#endif
