/* The encoder's life cycle: creation (validate the config, build the torchvision layout through resnet.c and
 * head.c, then allocate the one parameter buffer, its gradient mirror and the BN buffer array), torchvision's
 * initialization drawn from the counter-based RNG keyed by (seed, 0, parameter index, SYNCO_RNG_INIT), the
 * accessors, and the forward / backward / features entry points that move data between the caller's plain
 * fp32 arrays and the backend's tensors. Parameter gradients accumulate; activation gradients assign except
 * at residual shortcuts (see encoder_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/rng.h"
#include "base/status.h"
#include "nn/encoder_internal.h"

static synco_status grow(void **arr, int *cap, int need, size_t elem) {
  if (need <= *cap) return SYNCO_OK;
  int n = *cap ? *cap * 2 : 64;
  while (n < need) n *= 2;
  void *p = realloc(*arr, (size_t)n * elem);
  if (!p) return synco_fail(SYNCO_ERR_NOMEM, "out of memory growing the encoder layout");
  *arr = p;
  *cap = n;
  return SYNCO_OK;
}

void *synco_nn_alloc(synco_encoder *enc, size_t bytes) {
  if (enc->dry) { /* counted, not allocated: the layout only needs a non-NULL pointer it never reads */
    static _Alignas(64) unsigned char dry_dummy[64];
    enc->dry_bytes += (bytes + 63) & ~(size_t)63;
    return dry_dummy;
  }
  if (grow((void **)&enc->allocs, &enc->alloc_cap, enc->nallocs + 1, sizeof(void *)) != SYNCO_OK) return NULL;
  void *p = enc->be->alloc(enc->be, bytes); /* zeroed backend memory */
  if (!p) return NULL;
  enc->allocs[enc->nallocs++] = p;
  return p;
}

synco_status synco_nn_param(synco_encoder *enc, size_t *off, const char *name, int ndim, const int *shape, int init,
                            int fan) {
  int cap = enc->pcap;
  SYNCO_TRY(grow((void **)&enc->pviews, &cap, enc->np + 1, sizeof *enc->pviews));
  cap = enc->pcap;
  SYNCO_TRY(grow((void **)&enc->pinit, &cap, enc->np + 1, sizeof *enc->pinit));
  enc->pcap = cap;
  synco_param_view *v = &enc->pviews[enc->np];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  v->ndim = ndim;
  v->numel = 1;
  for (int i = 0; i < ndim; i++) {
    v->shape[i] = shape[i];
    v->numel *= (size_t)shape[i];
  }
  v->offset = enc->n_params;
  enc->pinit[enc->np].kind = init;
  enc->pinit[enc->np].fan = fan;
  enc->np++;
  enc->n_params += v->numel;
  *off = v->offset;
  return SYNCO_OK;
}

synco_status synco_nn_buffer(synco_encoder *enc, size_t *off, const char *name, int numel, float fill) {
  int cap = enc->bcap;
  SYNCO_TRY(grow((void **)&enc->bviews, &cap, enc->nb + 1, sizeof *enc->bviews));
  cap = enc->bcap;
  SYNCO_TRY(grow((void **)&enc->bfill, &cap, enc->nb + 1, sizeof *enc->bfill));
  enc->bcap = cap;
  synco_param_view *v = &enc->bviews[enc->nb];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  v->ndim = 1;
  v->shape[0] = numel;
  v->numel = (size_t)numel;
  v->offset = enc->n_buffers;
  enc->bfill[enc->nb] = fill;
  enc->nb++;
  enc->n_buffers += v->numel;
  *off = v->offset;
  return SYNCO_OK;
}

synco_status synco_nn_act(synco_encoder *enc, synco_tensor *t, int c, int h, int w) {
  synco_backend *be = enc->be;
  t->n = enc->batch;
  t->c = c;
  t->h = h;
  t->w = w;
  t->layout = be->act_layout(be, c, h, w, SYNCO_F32);
  t->dtype = synco_layout_dtype(t->layout); /* fp32, but a GPU's bf16 layout */
  const size_t bytes = be->act_bytes(be, enc->batch, c, h, w, t->dtype);
  t->data = synco_nn_alloc(enc, bytes);
  if (!t->data) return SYNCO_ERR_NOMEM;
  if (bytes > enc->max_act_bytes) enc->max_act_bytes = bytes;
  return SYNCO_OK;
}

synco_status synco_nn_act_slot(synco_encoder *enc, synco_tensor *t, int c, int h, int w, int slot) {
  if (!enc->cfg.forward_only) return synco_nn_act(enc, t, c, h, w);
  synco_backend *be = enc->be;
  t->n = enc->batch;
  t->c = c;
  t->h = h;
  t->w = w;
  t->layout = be->act_layout(be, c, h, w, SYNCO_F32);
  t->dtype = synco_layout_dtype(t->layout);
  t->data = NULL;
  const size_t bytes = be->act_bytes(be, enc->batch, c, h, w, t->dtype);
  if (bytes > enc->max_act_bytes) enc->max_act_bytes = bytes;
  int cap = enc->slot_cap;
  SYNCO_TRY(grow((void **)&enc->slot_t, &cap, enc->nslot_t + 1, sizeof *enc->slot_t));
  cap = enc->slot_cap;
  SYNCO_TRY(grow((void **)&enc->slot_id, &cap, enc->nslot_t + 1, sizeof *enc->slot_id));
  enc->slot_cap = cap;
  enc->slot_t[enc->nslot_t] = t;
  enc->slot_id[enc->nslot_t++] = slot;
  return SYNCO_OK;
}

/* Allocates the shared buffers of a forward-only encoder and points its slotted activations at them. */
static synco_status bind_slots(synco_encoder *enc) {
  if (!enc->nslot_t) return SYNCO_OK;
  for (int i = 0; i < SYNCO_NN_SLOTS; i++)
    if (!(enc->slots[i] = synco_nn_alloc(enc, enc->max_act_bytes))) return SYNCO_ERR_NOMEM;
  for (int i = 0; i < enc->nslot_t; i++) enc->slot_t[i]->data = enc->slots[enc->slot_id[i]];
  return SYNCO_OK;
}

/* torchvision: convs kaiming_normal_(fan_out, relu), BN weight 1 / bias 0, nn.Linear's default
 * kaiming_uniform_(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias alike. */
static synco_status init_params(synco_encoder *enc, uint64_t seed) {
  /* Drawn on the host (each view from its own stream) and uploaded once. */
  float *host = malloc((enc->n_params ? enc->n_params : 1) * sizeof(float));
  float *hbuf = malloc((enc->n_buffers ? enc->n_buffers : 1) * sizeof(float));
  if (!host || !hbuf) {
    free(host);
    free(hbuf);
    return synco_fail(SYNCO_ERR_NOMEM, "out of memory initializing %zu parameters", enc->n_params);
  }
  for (int i = 0; i < enc->np; i++) {
    const synco_param_view *v = &enc->pviews[i];
    float *p = host + v->offset;
    synco_rng r = synco_rng_make(seed, 0, (uint64_t)i, SYNCO_RNG_INIT);
    switch (enc->pinit[i].kind) {
      case SYNCO_NN_INIT_KAIMING_FAN_OUT: {
        const float std = sqrtf(2.0f / (float)enc->pinit[i].fan);
        for (size_t j = 0; j < v->numel; j++) p[j] = std * synco_rng_normal(&r);
        break;
      }
      case SYNCO_NN_INIT_ONE:
        for (size_t j = 0; j < v->numel; j++) p[j] = 1.0f;
        break;
      case SYNCO_NN_INIT_ZERO:
        memset(p, 0, v->numel * sizeof *p);
        break;
      default: {
        const float b = 1.0f / sqrtf((float)enc->pinit[i].fan);
        for (size_t j = 0; j < v->numel; j++) p[j] = synco_rng_range(&r, -b, b);
        break;
      }
    }
  }
  for (int i = 0; i < enc->nb; i++) {
    const synco_param_view *v = &enc->bviews[i];
    for (size_t j = 0; j < v->numel; j++) hbuf[v->offset + j] = enc->bfill[i];
  }
  synco_backend *be = enc->be;
  synco_status st = be->copy(be, enc->params, host, enc->n_params * sizeof(float), SYNCO_COPY_H2D);
  if (!st) st = be->copy(be, enc->buffers, hbuf, enc->n_buffers * sizeof(float), SYNCO_COPY_H2D);
  free(host);
  free(hbuf);
  return st;
}

/* The named backend buffers over the parameter and buffer arrays, once both exist (the views no longer move). */
static synco_status name_buffers(synco_encoder *enc) {
  enc->named = malloc((size_t)(enc->np + enc->nb + 1) * sizeof *enc->named);
  if (!enc->named) return synco_fail(SYNCO_ERR_NOMEM, "out of memory naming %d encoder tensors", enc->np + enc->nb);
  for (int i = 0; i < enc->np + enc->nb; i++) {
    const synco_param_view *v = i < enc->np ? &enc->pviews[i] : &enc->bviews[i - enc->np];
    float *base = i < enc->np ? enc->params : enc->buffers;
    enc->named[i] = (synco_named_buffer){.name = v->name, .data = base + v->offset, .numel = v->numel,
                                         .ndim = v->ndim, .shape = v->shape};
  }
  enc->nnamed = enc->np + enc->nb;
  return SYNCO_OK;
}

static synco_status check_config(const synco_encoder_config *cfg, int batch, int image_size) {
  if (cfg->depth != 18 && cfg->depth != 34 && cfg->depth != 50)
    return synco_fail(SYNCO_ERR_ARG, "encoder: depth %d is not supported (expected 18, 34 or 50)", cfg->depth);
  if (cfg->width < 1 || cfg->width > SYNCO_ENCODER_MAX_WIDTH)
    return synco_fail(SYNCO_ERR_ARG, "encoder: base width %d out of range (expected 1..%d, 64 = torchvision)",
                      cfg->width, SYNCO_ENCODER_MAX_WIDTH);
  if (cfg->head && cfg->dim < 1) return synco_fail(SYNCO_ERR_ARG, "encoder: head dim %d must be positive", cfg->dim);
  if (batch < 1) return synco_fail(SYNCO_ERR_ARG, "encoder: batch %d must be positive", batch);
  if (cfg->bn_splits < 1 || batch % cfg->bn_splits != 0)
    return synco_fail(SYNCO_ERR_ARG, "encoder: batch %d does not divide into %d Split-BN groups", batch,
                      cfg->bn_splits);
  if (image_size < 1 || image_size > SYNCO_ENCODER_MAX_IMAGE)
    return synco_fail(SYNCO_ERR_ARG, "encoder: image size %d out of range", image_size);
  return SYNCO_OK;
}

/* What synco_encoder_create allocates after the build: the parameters, their gradients and the BN buffers ... */
static synco_status alloc_params(synco_encoder *enc) {
  enc->params = synco_nn_alloc(enc, enc->n_params * sizeof(float));
  enc->grads = synco_nn_alloc(enc, enc->n_params * sizeof(float));
  enc->buffers = synco_nn_alloc(enc, (enc->n_buffers ? enc->n_buffers : 1) * sizeof(float));
  return enc->params && enc->grads && enc->buffers ? SYNCO_OK : SYNCO_ERR_NOMEM;
}

/* ... and the gradient buffers A, B (a forward-only encoder needs neither) and S (the downsample branch's output),
 * the staging matrix, and a forward-only encoder's shared activation slots. */
static synco_status alloc_work(synco_encoder *enc) {
  const int fo = enc->cfg.forward_only != 0;
  enc->gA = fo ? NULL : synco_nn_alloc(enc, enc->max_act_bytes);
  enc->gB = fo ? NULL : synco_nn_alloc(enc, enc->max_act_bytes);
  enc->gS = synco_nn_alloc(enc, enc->max_act_bytes);
  const int m = enc->out_dim > enc->feature_dim ? enc->out_dim : enc->feature_dim;
  enc->stage = synco_nn_alloc(enc, (size_t)enc->batch * m * sizeof(float));
  if ((!fo && (!enc->gA || !enc->gB)) || !enc->gS || !enc->stage) return SYNCO_ERR_NOMEM;
  return bind_slots(enc);
}

synco_status synco_encoder_memory_plan(synco_backend *be, const synco_encoder_config *cfg, int batch, int image_size,
                                       synco_encoder_memory *out) {
  memset(out, 0, sizeof *out);
  if (!be || !cfg) return synco_fail(SYNCO_ERR_ARG, "encoder: a backend and a config are required");
  SYNCO_TRY(check_config(cfg, batch, image_size));
  synco_encoder *enc = synco_calloc(1, sizeof *enc);
  if (!enc) return SYNCO_ERR_NOMEM;
  enc->be = be;
  enc->cfg = *cfg;
  if (!enc->cfg.head) enc->cfg.mlp = 0;
  enc->batch = batch;
  enc->image_size = image_size;
  enc->dry = 1; /* synco_nn_alloc counts, the layers ask the backend's *_plan_bytes instead of planning */
  synco_status st = synco_nn_resnet_build(enc);
  if (st == SYNCO_OK) st = synco_nn_head_build(enc);
  const size_t built = enc->dry_bytes;
  if (st == SYNCO_OK) st = alloc_params(enc);
  const size_t with_params = enc->dry_bytes;
  if (st == SYNCO_OK) st = alloc_work(enc);
  if (st == SYNCO_OK) {
    out->params = enc->n_params * sizeof(float);
    out->grads = enc->n_params * sizeof(float);
    out->buffers = (enc->n_buffers ? enc->n_buffers : 1) * sizeof(float);
    out->activations = built + (enc->dry_bytes - with_params);
    out->plans = enc->dry_plans;
    out->backend_ws = synco_plan_total(&enc->dry_plans);
    out->total = out->params + out->grads + out->buffers + out->activations + out->backend_ws;
    out->out_dim = enc->out_dim;
  }
  synco_encoder_free(enc);
  return st;
}

synco_status synco_encoder_create(synco_encoder **out, synco_backend *be, const synco_encoder_config *cfg,
                                  int batch, int image_size, uint64_t seed) {
  *out = NULL;
  if (!be || !cfg) return synco_fail(SYNCO_ERR_ARG, "encoder: backend and config are required");
  SYNCO_TRY(check_config(cfg, batch, image_size));

  synco_encoder *enc = synco_calloc(1, sizeof *enc);
  if (!enc) return SYNCO_ERR_NOMEM;
  enc->be = be;
  enc->cfg = *cfg;
  if (!enc->cfg.head) enc->cfg.mlp = 0;
  enc->batch = batch;
  enc->image_size = image_size;
  synco_status st = synco_nn_resnet_build(enc);
  enc->backbone_params = enc->n_params;
  if (st == SYNCO_OK) st = synco_nn_head_build(enc);
  if (st == SYNCO_OK) st = alloc_params(enc);
  if (st == SYNCO_OK) st = alloc_work(enc);
  if (st != SYNCO_OK) {
    synco_encoder_free(enc);
    return synco_fail_context(st, "creating resnet%d (width %d, batch %d, %dx%d images): ", cfg->depth, cfg->width,
                              batch, image_size, image_size);
  }
  synco_nn_resnet_bind(enc);
  st = init_params(enc, seed);
  if (st == SYNCO_OK) st = name_buffers(enc);
  if (st != SYNCO_OK) {
    synco_encoder_free(enc);
    return st;
  }
  *out = enc;
  return SYNCO_OK;
}

synco_status synco_encoder_replan(synco_encoder *enc) { return synco_nn_resnet_replan(enc); }

void synco_encoder_free(synco_encoder *enc) {
  if (!enc) return;
  synco_nn_resnet_release(enc);
  for (int i = 0; i < enc->nallocs; i++) enc->be->free(enc->be, enc->allocs[i]);
  free(enc->allocs);
  free(enc->pviews);
  free(enc->pinit);
  free(enc->bviews);
  free(enc->bfill);
  free(enc->named);
  free(enc->blocks);
  free(enc->slot_t);
  free(enc->slot_id);
  synco_op_times_free(&enc->times);
  free(enc);
}

const synco_encoder_config *synco_encoder_cfg(const synco_encoder *enc) { return &enc->cfg; }
synco_backend *synco_encoder_backend(const synco_encoder *enc) { return enc->be; }
int synco_encoder_batch(const synco_encoder *enc) { return enc->batch; }
int synco_encoder_image_size(const synco_encoder *enc) { return enc->image_size; }
int synco_encoder_feature_dim(const synco_encoder *enc) { return enc->feature_dim; }
int synco_encoder_out_dim(const synco_encoder *enc) { return enc->out_dim; }
float *synco_encoder_params(synco_encoder *enc) { return enc->params; }
float *synco_encoder_grads(synco_encoder *enc) { return enc->grads; }
size_t synco_encoder_num_params(const synco_encoder *enc) { return enc->n_params; }
float *synco_encoder_buffers(synco_encoder *enc) { return enc->buffers; }
size_t synco_encoder_num_buffers(const synco_encoder *enc) { return enc->n_buffers; }
double synco_encoder_macs_per_image(const synco_encoder *enc) { return enc->macs; }
void synco_encoder_set_timing(synco_encoder *enc, int on) { enc->timing = on != 0; }

double synco_nn_time_begin(synco_encoder *enc) {
  if (!enc->timing) return 0;
  enc->be->sync(enc->be);
  return synco_now();
}

void synco_nn_time_end(synco_encoder *enc, int *slot, const char *name, const char *op, int pass, double t0) {
  if (!enc->timing) return;
  enc->be->sync(enc->be);
  const double s = synco_now() - t0;
  if (!strcmp(op, "conv")) enc->conv_s += s;
  (void)synco_op_times_add(&enc->times, slot, name, op, pass, s); /* a table that cannot grow loses the call */
}

const synco_op_time *synco_encoder_op_times(const synco_encoder *enc, int *count) {
  *count = enc->times.n;
  return enc->times.e;
}

void synco_encoder_op_times_reset(synco_encoder *enc) { synco_op_times_reset(&enc->times); }

double synco_encoder_conv_seconds(synco_encoder *enc, int reset) {
  const double s = enc->conv_s;
  if (reset) enc->conv_s = 0;
  return s;
}

const synco_param_view *synco_encoder_param_views(const synco_encoder *enc, int *count) {
  if (count) *count = enc->np;
  return enc->pviews;
}

const synco_param_view *synco_encoder_buffer_views(const synco_encoder *enc, int *count) {
  if (count) *count = enc->nb;
  return enc->bviews;
}

const synco_named_buffer *synco_encoder_named_buffers(const synco_encoder *enc, int *count) {
  if (count) *count = enc->nnamed;
  return enc->named;
}

const synco_param_view *synco_encoder_find(const synco_encoder *enc, const char *name, int *is_buffer) {
  for (int i = 0; i < enc->np; i++)
    if (!strcmp(enc->pviews[i].name, name)) {
      if (is_buffer) *is_buffer = 0;
      return &enc->pviews[i];
    }
  for (int i = 0; i < enc->nb; i++)
    if (!strcmp(enc->bviews[i].name, name)) {
      if (is_buffer) *is_buffer = 1;
      return &enc->bviews[i];
    }
  return NULL;
}

/* Moves n images into the input tensor; the rest of the batch is zeroed (eval only), so every planned layer
 * runs on the full batch. The input (C = 3) is PLAIN in every backend, so the first n images are a prefix. */
static synco_status load_input(synco_encoder *enc, const float *x, int n) {
  synco_tensor t = enc->x_t;
  t.n = n;
  SYNCO_TRY(enc->be->to_backend(enc->be, &t, x));
  if (n < enc->batch) {
    const size_t img = (size_t)3 * enc->image_size * enc->image_size;
    SYNCO_TRY(enc->be->memset(enc->be, (float *)enc->x_t.data + (size_t)n * img, 0,
                              (size_t)(enc->batch - n) * img * sizeof(float)));
  }
  return SYNCO_OK;
}

/* dst is host memory (dir D2H: an evaluation's features or outputs) or backend memory (D2D: the step's k_raw and
 * q_raw), as the caller says. */
static synco_status store_rows(synco_encoder *enc, float *dst, const synco_tensor *src, int n, synco_copy_dir dir) {
  SYNCO_TRY(enc->be->to_plain(enc->be, enc->stage, src));
  return enc->be->copy(enc->be, dst, enc->stage, (size_t)n * src->c * sizeof(float), dir);
}

static synco_status forward(synco_encoder *enc, float *out, synco_copy_dir dir, const float *x, int n, int train) {
  enc->saved = 0;
  if (n < 1 || n > enc->batch || (train && n != enc->batch))
    return synco_fail(SYNCO_ERR_ARG, "encoder forward: %d images for a batch of %d (%s mode needs %s)", n,
                      enc->batch, train ? "train" : "eval", train ? "exactly the batch" : "1..batch");
  double t0 = synco_nn_time_begin(enc);
  SYNCO_TRY(load_input(enc, x, n));
  synco_nn_time_end(enc, &enc->tslot_io, "input/output", "copy", SYNCO_PASS_FWD, t0);
  SYNCO_TRY(synco_nn_resnet_forward(enc, train));
  SYNCO_TRY(synco_nn_head_forward(enc));
  t0 = synco_nn_time_begin(enc);
  SYNCO_TRY(store_rows(enc, out, enc->out_t, n, dir));
  synco_nn_time_end(enc, &enc->tslot_io, "input/output", "copy", SYNCO_PASS_FWD, t0);
  enc->saved = train != 0 && !enc->cfg.forward_only;
  return SYNCO_OK;
}

synco_status synco_encoder_forward(synco_encoder *enc, float *out, const float *x, int n, int train) {
  return forward(enc, out, SYNCO_COPY_D2H, x, n, train);
}

synco_status synco_encoder_forward_to_backend(synco_encoder *enc, float *out, const float *x, int n, int train) {
  return forward(enc, out, SYNCO_COPY_D2D, x, n, train);
}

synco_status synco_encoder_backward(synco_encoder *enc, const float *dout) {
  if (enc->cfg.forward_only)
    return synco_fail(SYNCO_ERR_ARG, "encoder backward: this encoder was created forward-only");
  if (!enc->saved)
    return synco_fail(SYNCO_ERR_ARG, "encoder backward: no train-mode forward to differentiate (one backward per "
                                     "train forward)");
  enc->saved = 0;
  const double t0 = synco_nn_time_begin(enc);
  SYNCO_TRY(enc->be->to_backend(enc->be, &enc->dout_t, dout));
  synco_nn_time_end(enc, &enc->tslot_io, "input/output", "copy", SYNCO_PASS_BWD_DATA, t0);
  const synco_tensor *dfeat = NULL;
  SYNCO_TRY(synco_nn_head_backward(enc, &dfeat));
  return synco_nn_resnet_backward(enc, dfeat);
}

void synco_encoder_on_grads_ready(synco_encoder *enc, synco_grads_ready_fn fn, void *ctx) {
  enc->grads_ready = fn;
  enc->grads_ready_ctx = ctx;
}

synco_status synco_encoder_last_features(synco_encoder *enc, float *feats) {
  return store_rows(enc, feats, &enc->feat, enc->batch, SYNCO_COPY_D2D);
}

synco_status synco_encoder_features(synco_encoder *enc, float *feats, const float *x, int n) {
  enc->saved = 0;
  if (n < 1 || n > enc->batch)
    return synco_fail(SYNCO_ERR_ARG, "encoder features: %d images for a batch of %d", n, enc->batch);
  SYNCO_TRY(load_input(enc, x, n));
  SYNCO_TRY(synco_nn_resnet_forward(enc, 0));
  return store_rows(enc, feats, &enc->feat, n, SYNCO_COPY_D2H);
}
