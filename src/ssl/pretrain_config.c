/* The checks of a pretraining configuration, all in one place; see pretrain_config.h. */
#include "ssl/pretrain_config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/status.h"
#include "dist/dist.h"
#include "nn/encoder.h"
#include "ssl/negatives.h"

/* The problems found so far: the caller's buffer (one per line) and the one-line form for the last error. */
typedef struct {
  char *msg;
  size_t cap, len;
  char line[1024];
  size_t line_len;
  int n;
} problems;

static void add(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(problems *p, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  const size_t k = strlen(text);
  if (p->msg && p->len + k + 1 < p->cap) {
    memcpy(p->msg + p->len, text, k);
    p->len += k;
    p->msg[p->len++] = '\n';
    p->msg[p->len] = 0;
  }
  if (p->line_len < sizeof p->line - 1) {
    const int w = snprintf(p->line + p->line_len, sizeof p->line - p->line_len, "%s%s", p->n ? "; " : "", text);
    if (w > 0) p->line_len += (size_t)w;
    if (p->line_len > sizeof p->line - 1) p->line_len = sizeof p->line - 1;
  }
  p->n++;
}

static int finite_at_least_0(float x) { return isfinite(x) && x >= 0.f; }

/* Everything synco_moco_create needs of its config; crops below min_image are refused. The order is that of the
 * messages a user reads: the model, the queue and the loss, the negatives, Split-BN, SGD. */
static void moco_problems(problems *p, const synco_moco_config *c, int min_image) {
  const synco_encoder_config *e = &c->enc;
  if (e->depth != 18 && e->depth != 34 && e->depth != 50)
    add(p, "--arch resnet%d is not supported (resnet18, resnet34 or resnet50)", e->depth);
  if (e->width < 1 || e->width > SYNCO_ENCODER_MAX_WIDTH)
    add(p, "--width %d is out of range (1 to %d)", e->width, SYNCO_ENCODER_MAX_WIDTH);
  if (!e->head) add(p, "MoCo needs an encoder with a projection head");
  else if (e->dim < 1) add(p, "--moco-dim %d must be at least 1", e->dim);
  if (c->image_size < min_image)
    add(p, "--image-size %d is too small (at least %d)", c->image_size, min_image);
  else if (c->image_size > SYNCO_ENCODER_MAX_IMAGE)
    add(p, "--image-size %d is too large (at most %d)", c->image_size, SYNCO_ENCODER_MAX_IMAGE);
  if (c->batch < 1) add(p, "the batch size %d must be at least 1", c->batch);

  /* The queue takes the keys of every process, twice with a symmetric loss; MoCo asserts K % keys == 0. */
  const int world = synco_dist_world(c->dist);
  const long long keys = (long long)c->batch * (world > 0 ? world : 1) * (c->symmetric ? 2 : 1);
  if (c->K < 1) {
    add(p, "--moco-k %d must be at least 1", c->K);
  } else if (c->batch >= 1 && c->K % keys != 0) {
    if (keys == c->batch) {
      add(p, "--moco-k %d is not a multiple of the batch size %d", c->K, c->batch);
    } else {
      char per[96] = "";
      if (world > 1) snprintf(per, sizeof per, " on each of %d processes", world);
      add(p, "--moco-k %d is not a multiple of the %lld keys enqueued per step (the batch size %d%s%s)", c->K, keys,
          c->batch, per, c->symmetric ? ", twice with --symmetric" : "");
    }
  }
  if (!(c->T > 0.f) || !isfinite(c->T)) add(p, "--moco-t %g must be greater than 0", (double)c->T);
  if (!(c->m >= 0.f && c->m <= 1.f)) add(p, "--moco-m %g must be between 0 and 1", (double)c->m);

  /* Synthetic negatives (synco_negatives_check, each problem named): on when any count is positive. */
  const synco_negatives_config *n = &c->neg;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++)
    if (n->n[t] < 0) add(p, "--n%d %d must be at least 0", t + 1, n->n[t]);
  if (synco_negatives_total(n) > 0) {
    if (n->n_hard < 1 || n->n_hard > c->K)
      add(p, "--n-hard %d must be between 1 and --moco-k %d", n->n_hard, c->K);
    for (int t = 0; t < SYNCO_NEG_TYPES; t++)
      if (n->n[t] > n->n_hard) add(p, "--n%d %d must be between 0 and --n-hard %d", t + 1, n->n[t], n->n_hard);
    if (!finite_at_least_0(n->sigma)) add(p, "--sigma %g must be finite and at least 0", (double)n->sigma);
    if (!finite_at_least_0(n->delta)) add(p, "--delta %g must be finite and at least 0", (double)n->delta);
    if (!finite_at_least_0(n->eta)) add(p, "--eta %g must be finite and at least 0", (double)n->eta);
  }

  if (e->bn_splits < 1) add(p, "--bn-splits %d must be at least 1", e->bn_splits);
  else if (c->batch >= 1 && c->batch % e->bn_splits != 0)
    add(p, "the batch size %d is not a multiple of --bn-splits %d", c->batch, e->bn_splits);

  if (!(c->momentum >= 0.f && c->momentum <= 1.f)) add(p, "--momentum %g must be between 0 and 1", (double)c->momentum);
  if (!finite_at_least_0(c->wd)) add(p, "--wd %g must be finite and at least 0", (double)c->wd);
}

/* The learning-rate schedule (synco_lr_schedule_check, each problem named) and the negatives' warm-up. */
static void schedule_problems(problems *p, const synco_pretrain_config *c) {
  const synco_lr_schedule *s = &c->sched;
  if (!(s->lr > 0.f) || !isfinite(s->lr)) add(p, "--lr %g must be finite and greater than 0", (double)s->lr);
  if (s->epochs < 1) add(p, "--epochs %d must be at least 1", s->epochs);
  if (s->n_milestones < 0 || s->n_milestones > SYNCO_MAX_MILESTONES)
    add(p, "--schedule has %d milestones (at most %d)", s->n_milestones, SYNCO_MAX_MILESTONES);
  if (s->warmup_epochs < 0) add(p, "--lr-warmup-epochs %d must be at least 0", s->warmup_epochs);
  if (c->warmup_epochs < 0) add(p, "--warmup-epochs %d must be at least 0", c->warmup_epochs);
}

static synco_status finish(problems *p, int *count) {
  if (count) *count = p->n;
  if (!p->n) return SYNCO_OK;
  return synco_fail(SYNCO_ERR_ARG, "invalid configuration: %s", p->line);
}

synco_status synco_moco_config_validate(const synco_moco_config *cfg, char *msg, size_t cap, int *count) {
  problems p = {.msg = msg, .cap = cap};
  if (msg && cap) msg[0] = 0;
  moco_problems(&p, cfg, 1);
  return finish(&p, count);
}

synco_status synco_pretrain_config_validate(const synco_pretrain_config *cfg, char *msg, size_t cap, int *count) {
  problems p = {.msg = msg, .cap = cap};
  if (msg && cap) msg[0] = 0;
  moco_problems(&p, &cfg->moco, SYNCO_PRETRAIN_MIN_IMAGE);
  schedule_problems(&p, cfg);
  return finish(&p, count);
}
