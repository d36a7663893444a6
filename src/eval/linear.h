/* Linear classifiers on features: the fast linear probe on cached features, and the pieces of the MoCo
 * linear-classification protocol (a linear layer trained by SGD with momentum on minibatches that the caller
 * supplies, e.g. augmented features of a frozen backbone; also reused as the classifier of fine-tuning).
 *
 * Fast probe: multinomial logistic regression (softmax cross-entropy) minimizing
 *   (1/n) sum_i CE(W x_i + b, y_i) + (lambda/2) ||W||^2      (the bias is not penalized)
 * on standardized features (train mean / std per dimension; or L2-normalized rows), by full-batch L-BFGS.
 * lambda is chosen among a few values by top-1 accuracy on a seed-determined held-out part of the train
 * features (ties go to the larger lambda), then the model is refit on all train features. Everything is
 * deterministic for a given seed and thread count. */
#ifndef SYNCO_EVAL_LINEAR_H
#define SYNCO_EVAL_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "synco.h"

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

/* ---- MoCo protocol: a linear layer trained by minibatch SGD --------------------------------------- */
typedef struct {
  double lr;             /* 30 */
  double momentum;       /* 0.9 */
  double weight_decay;   /* 0 */
  int epochs;            /* 100 */
  int milestones[4];     /* 60, 80: lr *= gamma at each */
  int n_milestones;
  double gamma;          /* 0.1 */
  int cosine;            /* 1: cosine schedule over epochs instead of milestones */
} synco_sgd_config;

/* The MoCo linear-classification recipe: lr 30, momentum 0.9, no weight decay, 100 epochs, x0.1 at 60 and 80. */
synco_sgd_config synco_sgd_moco_linear_config(void);
/* Learning rate of epoch e (0-based) under the config's schedule. */
double synco_sgd_lr_at(const synco_sgd_config *c, int epoch);

typedef struct {
  int dim, num_classes, max_batch;
  float *w, *b;          /* [C, dim], [C] */
  float *gw, *gb;        /* gradients */
  float *vw, *vb;        /* momentum buffers */
  float *logits, *dlogits; /* [max_batch, C] scratch */
} synco_linear_layer;

/* Weight ~ N(0, 0.01^2), bias 0 (MoCo's init of the classifier), from the counter-based RNG keyed by seed. */
synco_status synco_linear_layer_create(synco_linear_layer **out, int dim, int num_classes, int max_batch,
                                       uint64_t seed);
void synco_linear_layer_free(synco_linear_layer *l);
/* logits[n, C] = x[n, dim] W^T + b. */
void synco_linear_layer_forward(const synco_linear_layer *l, float *logits, const float *x, int n);
/* Accumulates gw += dlogits^T x, gb += sum dlogits; dx (optional, [n, dim]) = dlogits W (assigned). */
void synco_linear_layer_backward(synco_linear_layer *l, float *dx, const float *dlogits, const float *x, int n);
/* One SGD-with-momentum update at learning rate lr (torch.optim.SGD semantics: v = m v + g + wd w; w -= lr v),
 * then zeroes the gradients. */
void synco_linear_layer_sgd(synco_linear_layer *l, double lr, double momentum, double weight_decay);
/* Forward, mean cross-entropy, backward, SGD update on one minibatch (n <= max_batch). Returns the loss in
 * *loss and the top-1 hits in *hits1 (either may be NULL). */
synco_status synco_linear_layer_train_step(synco_linear_layer *l, const float *x, const int *y, int n, double lr,
                                           const synco_sgd_config *c, double *loss, int *hits1);
/* Scores x[n, dim] in batches of max_batch: top-1 / top-5 hits against y. */
void synco_linear_layer_eval(const synco_linear_layer *l, const float *x, const int *y, size_t n, size_t *hits1,
                             size_t *hits5);

/* Trains l on cached features by the SGD schedule: each epoch a seed-determined shuffle, minibatches of
 * l->max_batch. The reference use of the pieces above (the CLI feeds augmented features instead). */
synco_status synco_linear_layer_fit(synco_linear_layer *l, const float *x, const int *y, size_t n,
                                    const synco_sgd_config *c, uint64_t seed);

#endif
