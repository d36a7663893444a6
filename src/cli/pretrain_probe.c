/* synco pretrain's online linear probe (as solo-learn's online classifier): a linear classifier on the query
 * encoder's pooled backbone features of each step's first view, trained each step by its own SGD against the
 * training labels, its accuracy logged. It runs on the run's backend (the linear_fwd / linear_bwd ops and the one
 * SGD op over [W | b], as synco linear does: eval/linear.h) and reads the features after the encoder's forward,
 * detached: nothing flows back, so the pretraining is bit for bit what it is without the probe. Its weights and
 * momentum are saved in each checkpoint, so a resumed run continues it exactly.
 *
 * Its accuracy is measured on the step's augmented training views before its update: a running estimate of how
 * linearly separable the features are, which moves with the encoder (not the frozen-feature evaluation of
 * synco linear, whose numbers it does not replace). Several processes: each computes its block's gradient, the
 * gradients are averaged before the update (every process keeps the same probe), rank 0 logs its block's
 * accuracy. */
#include <stdio.h>
#include <string.h>

#include "base/status.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pretrain.h"
#include "dist/dist.h"
#include "io/safetensors.h"

/* SGD of the probe: momentum 0.9 and no weight decay, as the MoCo linear protocol; the rate is --probe-lr,
 * constant (the features it reads keep moving, so the probe keeps learning to the end). */
#define PROBE_MOMENTUM 0.9

int pretrain_probe_open(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  pretrain_probe *p = &c->probe;
  memset(p, 0, sizeof *p);
  if (!o->probe) return PRETRAIN_GO;
  p->classes = synco_dataset_num_classes(c->train);
  /* every image labelled: STL-10's unlabeled split has classes, but labels -1 */
  if (p->classes < 2 || synco_dataset_num_labelled(c->train) < synco_dataset_size(c->train)) {
    if (synco_args_seen(c->args, "probe"))
      fprintf(stderr, "synco pretrain: --probe needs labelled training images (class folders, every image with a "
                      "label): the probe is off\n");
    o->probe = 0; /* config.json says what ran */
    return PRETRAIN_GO;
  }
  synco_encoder *q = synco_moco_query(c->moco);
  const int d = synco_encoder_feature_dim(q), C = p->classes;
  /* a resumed run's probe classifies the run's classes: another class count cannot continue it (its tensors would
   * be refused by their size, a message about tensors where the cause is the data) */
  synco_safetensors h;
  if (o->resume && synco_st_open_header(&h, o->resume) == SYNCO_OK) {
    const synco_st_entry *e = synco_st_find(&h, "probe.bias");
    const size_t had = e ? synco_st_numel(e) : (size_t)C;
    synco_st_close(&h);
    if (had != (size_t)C) {
      fprintf(stderr, "synco pretrain: %s: the run's online probe classifies %zu classes, and --data %s has %d: pass "
                      "--no-probe to continue on this data (the probe only reports; pretraining does not use it)\n",
              o->resume, had, o->data, C);
      return 2;
    }
  }
  if (synco_linear_layer_create(&p->layer, c->be, d, C, c->cfg.moco.batch, (uint64_t)o->seed + 7) != SYNCO_OK)
    return synco_cli_error("pretrain");
  synco_linear_layer *l = p->layer;
  p->shape[0][0] = C, p->shape[0][1] = d;
  p->shape[1][0] = C;
  p->shape[2][0] = C * d + C;
  p->state[0] = (synco_named_buffer){"probe.weight", l->params, (size_t)C * d, 2, p->shape[0]};
  p->state[1] = (synco_named_buffer){"probe.bias", l->params + (size_t)C * d, (size_t)C, 1, p->shape[1]};
  p->state[2] = (synco_named_buffer){"probe.momentum", l->mom, (size_t)C * d + C, 1, p->shape[2]};
  synco_moco_set_feature_sink(c->moco, l->x);
  synco_moco_set_extra_state(c->moco, p->state, 3);
  return PRETRAIN_GO;
}

void pretrain_probe_free(pretrain_probe *p) {
  synco_linear_layer_free(p->layer);
  memset(p, 0, sizeof *p);
}

synco_status pretrain_probe_step_run(pretrain_ctx *c, const int *y) {
  synco_linear_layer *l = c->probe.layer;
  if (!l) return SYNCO_OK;
  /* its loss and hits stay in the layer's record on the backend (read with the step's, pretrain_probe_read) */
  SYNCO_TRY(synco_linear_layer_backprop(l, y, c->cfg.moco.batch, 0, NULL, NULL));
  const size_t P = (size_t)l->dim * l->num_classes + l->num_classes;
  SYNCO_TRY(synco_dist_allreduce_mean(c->dist, l->grads, P));
  return synco_linear_layer_sgd(l, c->o.probe_lr, PROBE_MOMENTUM, 0.0);
}

synco_status pretrain_probe_read(pretrain_ctx *c, synco_xent_stats *out) {
  memset(out, 0, sizeof *out);
  return c->probe.layer ? synco_linear_layer_read(c->probe.layer, out) : SYNCO_OK;
}
