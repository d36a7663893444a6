/* The ResNet backbone exactly as torchvision builds it: stem (7x7/2 conv + BN + ReLU + 3/2/1 max-pool, or the
 * CIFAR stem: 3x3/1 conv + BN + ReLU, no pool), four stages of BasicBlocks (ResNet-18/34) or Bottlenecks
 * (ResNet-50, expansion 4, the stride on the 3x3 conv as in torchvision v1.5), a 1x1-conv + BN downsample where
 * the stride or the channel count changes, and global average pooling. Every layer runs through the backend
 * op table; BN is fused with the ReLU wherever torchvision has BN -> ReLU, and each block's residual is
 * be->add(accumulate) followed by an in-place ReLU, or both in the last BN's pass (bn_fwd_train_add_relu).
 *
 * Gradients: parameter gradients accumulate into the encoder's gradient buffer. Activation gradients assign,
 * alternating between the buffers A and B; a block's shortcut gradient is formed in S and added to the
 * main-path gradient with accumulate = 1 (the block input has two consumers). */
#include <stdio.h>

#include "base/progress.h"
#include "base/status.h"
#include "nn/encoder_internal.h"

static synco_tensor like(void *buf, const synco_tensor *t) {
  synco_tensor r = *t;
  r.data = buf;
  return r;
}

/* Slots of a forward-only encoder (synco_nn_act_slot): block inputs and outputs alternate between IO0 and IO1;
 * a block's intermediates alternate between T0 and T1 (each conv reads one and writes the other; the main path's
 * last conv writes T0, and the downsample conv runs after it, before the block's last BN, into T1, free again). */
enum { SLOT_IO0 = 0, SLOT_IO1 = 1, SLOT_T0 = 2, SLOT_T1 = 3 };

/* Adds "<name>.weight" and plans a bias-free convolution of x into a newly allocated y (slot: see above). */
static synco_status conv_make(synco_encoder *enc, synco_nn_conv *l, const char *name, const synco_tensor *x,
                              synco_tensor *y, int cout, int k, int stride, int pad, int slot) {
  char key[64];
  snprintf(key, sizeof key, "%s.weight", name);
  const int shape[4] = {cout, x->c, k, k};
  SYNCO_TRY(synco_nn_param(enc, &l->w, key, 4, shape, SYNCO_NN_INIT_KAIMING_FAN_OUT, cout * k * k));
  snprintf(l->name, sizeof l->name, "%s", name);
  synco_conv_op *op = &l->op;
  op->n = enc->batch;
  op->cin = x->c;
  op->h = x->h;
  op->w = x->w;
  op->cout = cout;
  op->kh = op->kw = k;
  op->stride = stride;
  op->pad = pad;
  op->oh = synco_conv_out_size(x->h, k, stride, pad);
  op->ow = synco_conv_out_size(x->w, k, stride, pad);
  op->dtype = SYNCO_F32;
  op->impl = NULL;
  if (op->oh < 1 || op->ow < 1)
    return synco_fail(SYNCO_ERR_ARG, "%s: a %dx%d input is too small for a %dx%d/%d convolution", name, x->h, x->w,
                      k, k, stride);
  SYNCO_TRY(synco_nn_act_slot(enc, y, cout, op->oh, op->ow, slot));
  SYNCO_TRY(enc->dry ? enc->be->conv_plan_bytes(enc->be, op, &enc->dry_plans) : enc->be->conv_plan(enc->be, op));
  l->planned = !enc->dry;
  l->x = x;
  l->y = y;
  enc->macs += (double)cout * op->oh * op->ow * x->c * k * k;
  return SYNCO_OK;
}

/* Adds "<name>.weight/.bias" and the running statistics, and plans BN (+ReLU) of x into y (allocated by the
 * caller, or a scratch descriptor). */
static synco_status bn_make(synco_encoder *enc, synco_nn_bn *l, const char *name, const synco_tensor *x,
                            synco_tensor *y, int relu) {
  char key[64];
  const int c = x->c;
  snprintf(key, sizeof key, "%s.weight", name);
  SYNCO_TRY(synco_nn_param(enc, &l->gamma, key, 1, &c, SYNCO_NN_INIT_ONE, 0));
  snprintf(key, sizeof key, "%s.bias", name);
  SYNCO_TRY(synco_nn_param(enc, &l->beta, key, 1, &c, SYNCO_NN_INIT_ZERO, 0));
  snprintf(key, sizeof key, "%s.running_mean", name);
  SYNCO_TRY(synco_nn_buffer(enc, &l->mean, key, c, 0.0f));
  snprintf(key, sizeof key, "%s.running_var", name);
  SYNCO_TRY(synco_nn_buffer(enc, &l->var, key, c, 1.0f));
  snprintf(l->name, sizeof l->name, "%s", name);
  synco_bn_op *op = &l->op;
  op->n = enc->batch;
  op->c = c;
  op->h = x->h;
  op->w = x->w;
  op->groups = enc->cfg.bn_splits;
  op->relu = relu;
  op->eps = 1e-5f;
  op->momentum = 0.1f;
  op->dtype = SYNCO_F32;
  op->impl = NULL;
  const size_t saved = (size_t)op->groups * c * sizeof(float);
  l->save_mean = synco_nn_alloc(enc, saved);
  l->save_invstd = synco_nn_alloc(enc, saved);
  if (!l->save_mean || !l->save_invstd) return SYNCO_ERR_NOMEM;
  SYNCO_TRY(enc->dry ? enc->be->bn_plan_bytes(enc->be, op, &enc->dry_plans) : enc->be->bn_plan(enc->be, op));
  l->planned = !enc->dry;
  l->x = x;
  l->y = y;
  return SYNCO_OK;
}

/* While timing (synco_encoder_set_timing), each call below is timed into the encoder's op table. */
static synco_status conv_fwd(synco_encoder *enc, synco_nn_conv *l) {
  const double t0 = synco_nn_time_begin(enc);
  const synco_status s = enc->be->conv_fwd(enc->be, &l->op, l->y, l->x, enc->params + l->w);
  synco_nn_time_end(enc, &l->tslot, l->name, "conv", SYNCO_PASS_FWD, t0);
  return s;
}

/* dw += corr(x, dy); dx = conv_transpose(dy, w) unless dx is NULL (the network input needs no gradient). */
static synco_status conv_bwd(synco_encoder *enc, synco_nn_conv *l, synco_tensor *dx, const synco_tensor *dy) {
  double t0 = synco_nn_time_begin(enc);
  SYNCO_TRY(enc->be->conv_bwd_weights(enc->be, &l->op, enc->grads + l->w, dy, l->x));
  synco_nn_time_end(enc, &l->tslot, l->name, "conv", SYNCO_PASS_BWD_WEIGHTS, t0);
  if (!dx) return SYNCO_OK;
  t0 = synco_nn_time_begin(enc);
  const synco_status s = enc->be->conv_bwd_data(enc->be, &l->op, dx, dy, enc->params + l->w);
  synco_nn_time_end(enc, &l->tslot, l->name, "conv", SYNCO_PASS_BWD_DATA, t0);
  return s;
}

static synco_status bn_fwd(synco_encoder *enc, synco_nn_bn *l, int train) {
  synco_backend *be = enc->be;
  const float *g = enc->params + l->gamma, *b = enc->params + l->beta;
  float *rm = enc->buffers + l->mean, *rv = enc->buffers + l->var;
  const double t0 = synco_nn_time_begin(enc);
  const synco_status s = train ? be->bn_fwd_train(be, &l->op, l->y, l->save_mean, l->save_invstd, rm, rv, l->x, g, b)
                               : be->bn_fwd_eval(be, &l->op, l->y, l->x, g, b, rm, rv);
  synco_nn_time_end(enc, &l->tslot, l->name, "bn", SYNCO_PASS_FWD, t0);
  return s;
}

/* y is only read with a fused ReLU; for the BN feeding a residual add it is a shape-only stand-in. */
static synco_status bn_bwd(synco_encoder *enc, synco_nn_bn *l, synco_tensor *dx, const synco_tensor *dy) {
  const double t0 = synco_nn_time_begin(enc);
  const synco_status s = enc->be->bn_bwd(enc->be, &l->op, dx, enc->grads + l->gamma, enc->grads + l->beta, dy, l->y,
                                         l->x, enc->params + l->gamma, l->save_mean, l->save_invstd);
  synco_nn_time_end(enc, &l->tslot, l->name, "bn", SYNCO_PASS_BWD_DATA, t0);
  return s;
}

static synco_status block_make(synco_encoder *enc, synco_nn_block *b, int layer, int idx, const synco_tensor *in,
                               int planes, int stride, int out_slot) {
  char p[64];
  const int bottleneck = enc->cfg.depth == 50;
  const int outc = planes * (bottleneck ? 4 : 1);
  b->bottleneck = bottleneck;
  b->has_down = stride != 1 || in->c != outc;
  b->in = in;
  snprintf(b->relu_name, sizeof b->relu_name, "layer%d.%d.relu", layer, idx);
#define NAME(s) (snprintf(p, sizeof p, "layer%d.%d.%s", layer, idx, s), p)
  if (!bottleneck) {
    SYNCO_TRY(conv_make(enc, &b->conv1, NAME("conv1"), in, &b->t1, planes, 3, stride, 1, SLOT_T0));
    SYNCO_TRY(synco_nn_act_slot(enc, &b->a1, planes, b->t1.h, b->t1.w, SLOT_T1));
    SYNCO_TRY(bn_make(enc, &b->bn1, NAME("bn1"), &b->t1, &b->a1, 1));
    SYNCO_TRY(conv_make(enc, &b->conv2, NAME("conv2"), &b->a1, &b->t2, planes, 3, 1, 1, SLOT_T0));
    SYNCO_TRY(synco_nn_act_slot(enc, &b->out, outc, b->t2.h, b->t2.w, out_slot));
    SYNCO_TRY(bn_make(enc, &b->bn2, NAME("bn2"), &b->t2, &b->out, 0));
  } else {
    SYNCO_TRY(conv_make(enc, &b->conv1, NAME("conv1"), in, &b->t1, planes, 1, 1, 0, SLOT_T0));
    SYNCO_TRY(synco_nn_act_slot(enc, &b->a1, planes, b->t1.h, b->t1.w, SLOT_T1));
    SYNCO_TRY(bn_make(enc, &b->bn1, NAME("bn1"), &b->t1, &b->a1, 1));
    SYNCO_TRY(conv_make(enc, &b->conv2, NAME("conv2"), &b->a1, &b->t2, planes, 3, stride, 1, SLOT_T0));
    SYNCO_TRY(synco_nn_act_slot(enc, &b->a2, planes, b->t2.h, b->t2.w, SLOT_T1));
    SYNCO_TRY(bn_make(enc, &b->bn2, NAME("bn2"), &b->t2, &b->a2, 1));
    SYNCO_TRY(conv_make(enc, &b->conv3, NAME("conv3"), &b->a2, &b->t3, outc, 1, 1, 0, SLOT_T0));
    SYNCO_TRY(synco_nn_act_slot(enc, &b->out, outc, b->t3.h, b->t3.w, out_slot));
    SYNCO_TRY(bn_make(enc, &b->bn3, NAME("bn3"), &b->t3, &b->out, 0));
  }
  if (b->has_down) {
    SYNCO_TRY(conv_make(enc, &b->down, NAME("downsample.0"), in, &b->td, outc, 1, stride, 0, SLOT_T1));
    b->sc = b->out;
    b->sc.data = NULL; /* the buffer S, bound after creation */
    SYNCO_TRY(bn_make(enc, &b->down_bn, NAME("downsample.1"), &b->td, &b->sc, 0));
  }
#undef NAME
  return SYNCO_OK;
}

synco_status synco_nn_resnet_build(synco_encoder *enc) {
  static const int stages18[4] = {2, 2, 2, 2}, stages34[4] = {3, 4, 6, 3};
  const synco_encoder_config *cfg = &enc->cfg;
  const int *stages = cfg->depth == 18 ? stages18 : stages34; /* 34 and 50 share [3, 4, 6, 3] */
  const int w = cfg->width, s = enc->image_size;
  synco_backend *be = enc->be;

  SYNCO_TRY(synco_nn_act(enc, &enc->x_t, 3, s, s));
  if (cfg->cifar_stem)
    SYNCO_TRY(conv_make(enc, &enc->conv1, "conv1", &enc->x_t, &enc->t0, w, 3, 1, 1, SLOT_T0));
  else
    SYNCO_TRY(conv_make(enc, &enc->conv1, "conv1", &enc->x_t, &enc->t0, w, 7, 2, 3, SLOT_T0));
  /* the stem's output is the first block's input (IO0); with the max-pool that is the pool's output */
  SYNCO_TRY(synco_nn_act_slot(enc, &enc->a0, w, enc->t0.h, enc->t0.w, cfg->cifar_stem ? SLOT_IO0 : SLOT_T1));
  SYNCO_TRY(bn_make(enc, &enc->bn1, "bn1", &enc->t0, &enc->a0, 1));
  enc->stem_out = &enc->a0;
  if (!cfg->cifar_stem) {
    synco_pool_op *op = &enc->pool;
    op->n = enc->batch;
    op->c = w;
    op->h = enc->t0.h;
    op->w = enc->t0.w;
    op->k = 3;
    op->stride = 2;
    op->pad = 1;
    op->oh = synco_conv_out_size(op->h, 3, 2, 1);
    op->ow = synco_conv_out_size(op->w, 3, 2, 1);
    op->dtype = SYNCO_F32;
    op->impl = NULL;
    SYNCO_TRY(synco_nn_act_slot(enc, &enc->p0, w, op->oh, op->ow, SLOT_IO0));
    SYNCO_TRY(enc->dry ? be->pool_plan_bytes(be, op, &enc->dry_plans) : be->pool_plan(be, op));
    enc->pool_planned = !enc->dry;
    enc->stem_out = &enc->p0;
  }

  enc->nblocks = stages[0] + stages[1] + stages[2] + stages[3];
  enc->blocks = synco_calloc((size_t)enc->nblocks, sizeof *enc->blocks);
  if (!enc->blocks) return SYNCO_ERR_NOMEM;
  const synco_tensor *in = enc->stem_out;
  int k = 0;
  for (int layer = 0; layer < 4; layer++)
    for (int i = 0; i < stages[layer]; i++, k++) {
      SYNCO_TRY(block_make(enc, &enc->blocks[k], layer + 1, i, in, w << layer, i == 0 && layer > 0 ? 2 : 1,
                           k % 2 ? SLOT_IO0 : SLOT_IO1));
      in = &enc->blocks[k].out;
    }
  enc->feature_dim = in->c;
  return synco_nn_act(enc, &enc->feat, in->c, 1, 1);
}

void synco_nn_resnet_bind(synco_encoder *enc) {
  for (int k = 0; k < enc->nblocks; k++)
    if (enc->blocks[k].has_down) enc->blocks[k].sc.data = enc->gS;
}

/* Releases a planned layer's plan and, with replan, plans it again from the op descriptor it keeps. */
static synco_status redo_conv(synco_backend *be, synco_nn_conv *l, int replan) {
  if (!l->planned) return SYNCO_OK;
  if (be->conv_release) be->conv_release(be, &l->op);
  l->planned = 0;
  if (!replan) return SYNCO_OK;
  SYNCO_TRY(be->conv_plan(be, &l->op));
  l->planned = 1;
  return SYNCO_OK;
}

static synco_status redo_bn(synco_backend *be, synco_nn_bn *l, int replan) {
  if (!l->planned) return SYNCO_OK;
  if (be->bn_release) be->bn_release(be, &l->op);
  l->planned = 0;
  if (!replan) return SYNCO_OK;
  SYNCO_TRY(be->bn_plan(be, &l->op));
  l->planned = 1;
  return SYNCO_OK;
}

/* Every planned layer through redo_*: release (replan 0, which cannot fail) or release and plan again. */
static synco_status redo_plans(synco_encoder *enc, int replan) {
  synco_backend *be = enc->be;
  SYNCO_TRY(redo_conv(be, &enc->conv1, replan));
  SYNCO_TRY(redo_bn(be, &enc->bn1, replan));
  if (enc->pool_planned) {
    if (be->pool_release) be->pool_release(be, &enc->pool);
    enc->pool_planned = 0;
    if (replan) {
      SYNCO_TRY(be->pool_plan(be, &enc->pool));
      enc->pool_planned = 1;
    }
  }
  for (int k = 0; enc->blocks && k < enc->nblocks; k++) {
    synco_nn_block *b = &enc->blocks[k];
    synco_nn_conv *convs[] = {&b->conv1, &b->conv2, &b->conv3, &b->down};
    synco_nn_bn *bns[] = {&b->bn1, &b->bn2, &b->bn3, &b->down_bn};
    for (int i = 0; i < 4; i++) {
      SYNCO_TRY(redo_conv(be, convs[i], replan));
      SYNCO_TRY(redo_bn(be, bns[i], replan));
    }
  }
  return SYNCO_OK;
}

void synco_nn_resnet_release(synco_encoder *enc) { (void)redo_plans(enc, 0); }

synco_status synco_nn_resnet_replan(synco_encoder *enc) { return redo_plans(enc, 1); }

/* out = relu(bn(last conv) + shortcut): in one pass where the backend has bn_fwd_train_add_relu (training), else BN,
 * add and ReLU; the same values either way. */
static synco_status block_end(synco_encoder *enc, synco_nn_block *b, synco_nn_bn *last, const synco_tensor *shortcut,
                              int train) {
  synco_backend *be = enc->be;
  if (train && be->bn_fwd_train_add_relu) {
    const float *g = enc->params + last->gamma, *bt = enc->params + last->beta;
    float *rm = enc->buffers + last->mean, *rv = enc->buffers + last->var;
    const double t0 = synco_nn_time_begin(enc);
    const synco_status s = be->bn_fwd_train_add_relu(be, &last->op, last->y, last->save_mean, last->save_invstd, rm,
                                                     rv, last->x, g, bt, shortcut);
    synco_nn_time_end(enc, &last->tslot, last->name, "bn", SYNCO_PASS_FWD, t0);
    return s;
  }
  SYNCO_TRY(bn_fwd(enc, last, train));
  const double t0 = synco_nn_time_begin(enc);
  SYNCO_TRY(be->add(be, last->y, shortcut, shortcut, 1));
  const synco_status s = be->relu_fwd(be, last->y, last->y);
  synco_nn_time_end(enc, &b->tslot, b->relu_name, "add+relu", SYNCO_PASS_FWD, t0);
  return s;
}

static synco_status block_fwd(synco_encoder *enc, synco_nn_block *b, int train) {
  SYNCO_TRY(conv_fwd(enc, &b->conv1));
  SYNCO_TRY(bn_fwd(enc, &b->bn1, train));
  SYNCO_TRY(conv_fwd(enc, &b->conv2));
  if (b->bottleneck) {
    SYNCO_TRY(bn_fwd(enc, &b->bn2, train));
    SYNCO_TRY(conv_fwd(enc, &b->conv3));
  }
  if (b->has_down) { /* the shortcut's conv and BN first, so that the block's last BN can add it */
    SYNCO_TRY(conv_fwd(enc, &b->down));
    SYNCO_TRY(bn_fwd(enc, &b->down_bn, train));
  }
  return block_end(enc, b, b->bottleneck ? &b->bn3 : &b->bn2, b->has_down ? &b->sc : b->in, train);
}

synco_status synco_nn_resnet_forward(synco_encoder *enc, int train) {
  synco_backend *be = enc->be;
  SYNCO_TRY(conv_fwd(enc, &enc->conv1));
  SYNCO_TRY(bn_fwd(enc, &enc->bn1, train));
  double t0;
  if (enc->pool_planned) {
    t0 = synco_nn_time_begin(enc);
    SYNCO_TRY(be->maxpool_fwd(be, &enc->pool, &enc->p0, &enc->a0));
    synco_nn_time_end(enc, &enc->tslot_pool, "maxpool", "pool", SYNCO_PASS_FWD, t0);
  }
  for (int k = 0; k < enc->nblocks; k++) SYNCO_TRY(block_fwd(enc, &enc->blocks[k], train));
  t0 = synco_nn_time_begin(enc);
  const synco_status s = be->avgpool_fwd(be, &enc->feat, &enc->blocks[enc->nblocks - 1].out);
  synco_nn_time_end(enc, &enc->tslot_avgpool, "avgpool", "pool", SYNCO_PASS_FWD, t0);
  return s;
}

/* On entry A holds d(out), or, when `masked`, d(out) masked by the block's ReLU where the block after it put it (S
 * without a downsample, A with one). On return A holds d(in); or, with prev (the block before, whose output is this
 * block's input) and a backend that has add_relu_bwd, d(in) already masked by prev's ReLU, where prev wants it
 * (*masked_out = 1). */
static synco_status block_bwd(synco_encoder *enc, synco_nn_block *b, int masked, const synco_nn_block *prev,
                              int *masked_out) {
  synco_backend *be = enc->be;
  synco_tensor dA = like(enc->gA, &b->out), dB, dS;
  *masked_out = 0;
  double t0 = synco_nn_time_begin(enc);
  if (!b->has_down) {
    /* The masked gradient is both the shortcut's and the last BN's: mask once into S, which the last BN
     * then reads, so A is free for the main path. */
    dS = like(enc->gS, &b->out);
    if (!masked) SYNCO_TRY(be->relu_bwd(be, &dS, &dA, &b->out));
    dA = dS;
  } else if (!masked) {
    SYNCO_TRY(be->relu_bwd(be, &dA, &dA, &b->out));
  }
  synco_nn_time_end(enc, &b->tslot, b->relu_name, "add+relu", SYNCO_PASS_BWD_DATA, t0);
  if (b->has_down) {
    dB = like(enc->gB, &b->td);
    SYNCO_TRY(bn_bwd(enc, &b->down_bn, &dB, &dA));
    dS = like(enc->gS, b->in);
    SYNCO_TRY(conv_bwd(enc, &b->down, &dS, &dB));
  }
  if (b->bottleneck) {
    dB = like(enc->gB, &b->t3);
    SYNCO_TRY(bn_bwd(enc, &b->bn3, &dB, &dA));
    dA = like(enc->gA, &b->a2);
    SYNCO_TRY(conv_bwd(enc, &b->conv3, &dA, &dB));
  }
  dB = like(enc->gB, &b->t2);
  SYNCO_TRY(bn_bwd(enc, &b->bn2, &dB, &dA));
  dA = like(enc->gA, &b->a1);
  SYNCO_TRY(conv_bwd(enc, &b->conv2, &dA, &dB));
  dB = like(enc->gB, &b->t1);
  SYNCO_TRY(bn_bwd(enc, &b->bn1, &dB, &dA));
  dA = like(enc->gA, b->in);
  SYNCO_TRY(conv_bwd(enc, &b->conv1, &dA, &dB));
  /* the two paths' sum, timed with the residual (and, where fused, prev's ReLU mask in the same pass) */
  t0 = synco_nn_time_begin(enc);
  synco_status s;
  if (prev && be->add_relu_bwd) {
    synco_tensor to = prev->has_down ? dA : like(enc->gS, b->in);
    *masked_out = 1;
    s = be->add_relu_bwd(be, &to, &dA, &dS, b->in);
  } else {
    s = be->add(be, &dA, &dS, &dS, 1);
  }
  synco_nn_time_end(enc, &b->tslot, b->relu_name, "add+relu", SYNCO_PASS_BWD_DATA, t0);
  return s;
}

/* The gradients of the parameters from `first` on are final (synco_encoder_on_grads_ready). */
static synco_status grads_ready(synco_encoder *enc, size_t first) {
  return enc->grads_ready ? enc->grads_ready(enc->grads_ready_ctx, first) : SYNCO_OK;
}

/* The parameters are laid out as built: the stem, the blocks in order (each from its conv1's weight), the head. */
synco_status synco_nn_resnet_backward(synco_encoder *enc, const synco_tensor *dfeat) {
  synco_backend *be = enc->be;
  SYNCO_TRY(grads_ready(enc, enc->backbone_params)); /* the head's, before this */
  synco_tensor dA = like(enc->gA, &enc->blocks[enc->nblocks - 1].out);
  double t0 = synco_nn_time_begin(enc);
  SYNCO_TRY(be->avgpool_bwd(be, &dA, dfeat));
  synco_nn_time_end(enc, &enc->tslot_avgpool, "avgpool", "pool", SYNCO_PASS_BWD_DATA, t0);
  int masked = 0;
  for (int k = enc->nblocks - 1; k >= 0; k--) {
    SYNCO_TRY(block_bwd(enc, &enc->blocks[k], masked, k ? &enc->blocks[k - 1] : NULL, &masked));
    SYNCO_TRY(grads_ready(enc, enc->blocks[k].conv1.w));
  }
  synco_tensor dB;
  if (enc->pool_planned) {
    dA = like(enc->gA, &enc->p0);
    dB = like(enc->gB, &enc->a0);
    t0 = synco_nn_time_begin(enc);
    SYNCO_TRY(be->maxpool_bwd(be, &enc->pool, &dB, &dA));
    synco_nn_time_end(enc, &enc->tslot_pool, "maxpool", "pool", SYNCO_PASS_BWD_DATA, t0);
    dA = like(enc->gA, &enc->t0);
    SYNCO_TRY(bn_bwd(enc, &enc->bn1, &dA, &dB));
    SYNCO_TRY(conv_bwd(enc, &enc->conv1, NULL, &dA));
    return grads_ready(enc, 0);
  }
  dA = like(enc->gA, &enc->a0);
  dB = like(enc->gB, &enc->t0);
  SYNCO_TRY(bn_bwd(enc, &enc->bn1, &dB, &dA));
  SYNCO_TRY(conv_bwd(enc, &enc->conv1, NULL, &dB));
  return grads_ready(enc, 0);
}
