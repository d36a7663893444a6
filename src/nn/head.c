/* The projection head on top of the pooled features, as MoCo builds it from torchvision's fc: with --mlp,
 * fc = Sequential(Linear(d, d) "fc.0", ReLU, Linear(d, dim) "fc.2"); without, fc = Linear(d, dim) "fc". Without
 * a head the encoder's output is the feature matrix itself. All tensors here are PLAIN [batch, c] matrices.
 * Parameter gradients accumulate; the activation gradients (dh1, dfeat) assign. */
#include <stdio.h>

#include "base/status.h"
#include "nn/encoder_internal.h"

static synco_status linear_make(synco_encoder *enc, synco_nn_linear *l, const char *name, const synco_tensor *x,
                                synco_tensor *y, int out) {
  char key[64];
  const int in = x->c, wshape[2] = {out, in};
  snprintf(key, sizeof key, "%s.weight", name);
  SYNCO_TRY(synco_nn_param(enc, &l->w, key, 2, wshape, SYNCO_NN_INIT_UNIFORM_FAN_IN, in));
  snprintf(key, sizeof key, "%s.bias", name);
  SYNCO_TRY(synco_nn_param(enc, &l->b, key, 1, &out, SYNCO_NN_INIT_UNIFORM_FAN_IN, in));
  SYNCO_TRY(synco_nn_act(enc, y, out, 1, 1));
  snprintf(l->name, sizeof l->name, "%s", name);
  l->in = in;
  l->out = out;
  l->x = x;
  l->y = y;
  enc->macs += (double)in * out;
  return SYNCO_OK;
}

synco_status synco_nn_head_build(synco_encoder *enc) {
  const synco_encoder_config *cfg = &enc->cfg;
  const int d = enc->feature_dim;
  if (!cfg->head) {
    enc->out_dim = d;
    enc->out_t = &enc->feat;
    SYNCO_TRY(synco_nn_act(enc, &enc->dout_t, d, 1, 1));
    return SYNCO_OK;
  }
  if (cfg->mlp) {
    SYNCO_TRY(linear_make(enc, &enc->fc0, "fc.0", &enc->feat, &enc->h1, d));
    SYNCO_TRY(linear_make(enc, &enc->fc2, "fc.2", &enc->h1, &enc->hout, cfg->dim));
    SYNCO_TRY(synco_nn_act(enc, &enc->dh1, d, 1, 1));
  } else {
    SYNCO_TRY(linear_make(enc, &enc->fc2, "fc", &enc->feat, &enc->hout, cfg->dim));
  }
  enc->out_dim = cfg->dim;
  enc->out_t = &enc->hout;
  SYNCO_TRY(synco_nn_act(enc, &enc->dout_t, cfg->dim, 1, 1));
  return synco_nn_act(enc, &enc->dfeat, d, 1, 1);
}

static synco_status linear_fwd(synco_encoder *enc, synco_nn_linear *l) {
  const double t0 = synco_nn_time_begin(enc);
  const synco_status s = enc->be->linear_fwd(enc->be, l->y, l->x, enc->params + l->w, enc->params + l->b);
  synco_nn_time_end(enc, &l->tslot, l->name, "linear", SYNCO_PASS_FWD, t0);
  return s;
}

/* both backward passes in one call: timed as its backward data */
static synco_status linear_bwd(synco_encoder *enc, synco_nn_linear *l, synco_tensor *dx, const synco_tensor *dy) {
  const double t0 = synco_nn_time_begin(enc);
  const synco_status s =
      enc->be->linear_bwd(enc->be, dx, enc->grads + l->w, enc->grads + l->b, dy, l->x, enc->params + l->w);
  synco_nn_time_end(enc, &l->tslot, l->name, "linear", SYNCO_PASS_BWD_DATA, t0);
  return s;
}

static synco_status head_relu(synco_encoder *enc, int pass) {
  const double t0 = synco_nn_time_begin(enc);
  const synco_status s = pass == SYNCO_PASS_FWD ? enc->be->relu_fwd(enc->be, &enc->h1, &enc->h1)
                                                : enc->be->relu_bwd(enc->be, &enc->dh1, &enc->dh1, &enc->h1);
  synco_nn_time_end(enc, &enc->tslot_head_relu, "fc.1", "relu", pass, t0);
  return s;
}

synco_status synco_nn_head_forward(synco_encoder *enc) {
  if (!enc->cfg.head) return SYNCO_OK;
  if (enc->cfg.mlp) {
    SYNCO_TRY(linear_fwd(enc, &enc->fc0));
    SYNCO_TRY(head_relu(enc, SYNCO_PASS_FWD));
  }
  return linear_fwd(enc, &enc->fc2);
}

synco_status synco_nn_head_backward(synco_encoder *enc, const synco_tensor **dfeat) {
  if (!enc->cfg.head) {
    *dfeat = &enc->dout_t;
    return SYNCO_OK;
  }
  *dfeat = &enc->dfeat;
  if (!enc->cfg.mlp) return linear_bwd(enc, &enc->fc2, &enc->dfeat, &enc->dout_t);
  SYNCO_TRY(linear_bwd(enc, &enc->fc2, &enc->dh1, &enc->dout_t));
  SYNCO_TRY(head_relu(enc, SYNCO_PASS_BWD_DATA));
  return linear_bwd(enc, &enc->fc0, &enc->dfeat, &enc->dh1);
}
