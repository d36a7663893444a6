/* The checks of a pretraining configuration, all in one place; see pretrain_config.h. */
#include "ssl/pretrain_config.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/status.h"
#include "dist/dist.h"
#include "nn/encoder.h"
#include "ssl/negatives.h"

/* The problems found so far: the caller's buffer (one per line) and the one-line form for the last error; where
 * the settings came from, and the names of those in the problem being written. */
typedef struct {
  char *msg;
  size_t cap, len;
  char line[1024];
  size_t line_len;
  int n;
  const synco_config_origin *origin;
  int file_named;           /* the problem being written names a setting read from origin->file */
  char names[4][48];
  unsigned next_name;
} problems;

/* The name of a setting in a problem: its flag ("--moco-t"; the batch size per process is "the batch size"), or,
 * when it was read from a file, its key there ("moco_t"), and the problem is then the file's. flag: without its
 * dashes. Called for the arguments of add(), so before it; a problem names at most four settings. */
static const char *nm(problems *p, const char *flag) {
  char *buf = p->names[p->next_name++ & 3];
  const size_t cap = sizeof p->names[0];
  if (p->origin && p->origin->from_file && p->origin->from_file(p->origin->ctx, flag)) {
    p->file_named = 1;
    size_t i = 0;
    for (; flag[i] && i + 1 < cap; i++) buf[i] = flag[i] == '-' ? '_' : flag[i];
    buf[i] = 0;
  } else if (!strcmp(flag, "batch-size")) {
    snprintf(buf, cap, "the batch size");
  } else {
    snprintf(buf, cap, "--%s", flag);
  }
  return buf;
}

/* --nK (t = 0..5) */
static const char *nm_n(problems *p, int t) {
  char flag[8];
  snprintf(flag, sizeof flag, "n%d", t + 1);
  return nm(p, flag);
}

static void add(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(problems *p, const char *fmt, ...) {
  char text[640];
  int pre = 0; /* "FILE: " when the problem names a setting read from a file */
  if (p->file_named && p->origin->file) pre = snprintf(text, sizeof text, "%s: ", p->origin->file);
  if (pre < 0 || (size_t)pre >= sizeof text / 2) pre = 0;
  p->file_named = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text + pre, sizeof text - (size_t)pre, fmt, ap);
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
    add(p, "%s resnet%d is not supported (resnet18, resnet34 or resnet50)", nm(p, "arch"), e->depth);
  if (e->width < 1 || e->width > SYNCO_ENCODER_MAX_WIDTH)
    add(p, "%s %d is out of range (1 to %d)", nm(p, "width"), e->width, SYNCO_ENCODER_MAX_WIDTH);
  if (!e->head) add(p, "MoCo needs an encoder with a projection head");
  else if (e->dim < 1) add(p, "%s %d must be at least 1", nm(p, "moco-dim"), e->dim);
  if (c->image_size < min_image)
    add(p, "%s %d is too small (at least %d)", nm(p, "image-size"), c->image_size, min_image);
  else if (c->image_size > SYNCO_ENCODER_MAX_IMAGE)
    add(p, "%s %d is too large (at most %d)", nm(p, "image-size"), c->image_size, SYNCO_ENCODER_MAX_IMAGE);
  if (c->batch < 1) add(p, "%s %d must be at least 1", nm(p, "batch-size"), c->batch);

  /* The queue takes the keys of every process, twice with a symmetric loss; MoCo asserts K % keys == 0. */
  const int world = synco_dist_world(c->dist);
  const long long keys = (long long)c->batch * (world > 0 ? world : 1) * (c->symmetric ? 2 : 1);
  if (c->K < 1) {
    add(p, "%s %d must be at least 1", nm(p, "moco-k"), c->K);
  } else if (c->batch >= 1 && c->K % keys != 0) {
    if (keys == c->batch) {
      add(p, "%s %d is not a multiple of %s %d", nm(p, "moco-k"), c->K, nm(p, "batch-size"), c->batch);
    } else {
      char per[96] = "";
      if (world > 1) snprintf(per, sizeof per, " on each of %d processes", world);
      add(p, "%s %d is not a multiple of the %lld keys enqueued per step (%s %d%s%s%s)", nm(p, "moco-k"), c->K, keys,
          nm(p, "batch-size"), c->batch, per, c->symmetric ? ", twice with " : "", c->symmetric ? nm(p, "symmetric") : "");
    }
  }
  if (!(c->T > 0.f) || !isfinite(c->T)) add(p, "%s %g must be greater than 0", nm(p, "moco-t"), (double)c->T);
  if (!(c->m >= 0.f && c->m <= 1.f)) add(p, "%s %g must be between 0 and 1", nm(p, "moco-m"), (double)c->m);

  /* Synthetic negatives (synco_negatives_check, each problem named): on when any count is positive. Summed in 64
   * bits: six ints can overflow an int (--n1 2147483647 once wrapped to a negative total and passed). */
  const synco_negatives_config *n = &c->neg;
  long long total = 0;
  for (int t = 0; t < SYNCO_NEG_TYPES; t++) {
    if (n->n[t] < 0) add(p, "%s %d must be at least 0", nm_n(p, t), n->n[t]);
    else total += n->n[t];
  }
  if (total > 0) {
    if (n->n_hard < 1 || n->n_hard > c->K)
      add(p, "%s %d must be between 1 and %s %d", nm(p, "n-hard"), n->n_hard, nm(p, "moco-k"), c->K);
    for (int t = 0; t < SYNCO_NEG_TYPES; t++)
      if (n->n[t] > n->n_hard) add(p, "%s %d must be between 0 and %s %d", nm_n(p, t), n->n[t], nm(p, "n-hard"), n->n_hard);
    /* a query's logits: the positive, the K of the queue and the synthetic ones, counted in an int */
    if (c->K >= 1 && 1 + (long long)c->K + total > INT_MAX)
      add(p, "%s..%s sum to %lld synthetic negatives per query: with the %d of %s that is %lld logits per query "
          "(at most %d)", nm_n(p, 0), nm_n(p, SYNCO_NEG_TYPES - 1), total, c->K, nm(p, "moco-k"),
          1 + (long long)c->K + total, INT_MAX);
    if (!finite_at_least_0(n->sigma)) add(p, "%s %g must be finite and at least 0", nm(p, "sigma"), (double)n->sigma);
    if (!finite_at_least_0(n->delta)) add(p, "%s %g must be finite and at least 0", nm(p, "delta"), (double)n->delta);
    if (!finite_at_least_0(n->eta)) add(p, "%s %g must be finite and at least 0", nm(p, "eta"), (double)n->eta);
  }

  if (e->bn_splits < 1) add(p, "%s %d must be at least 1", nm(p, "bn-splits"), e->bn_splits);
  else if (c->batch >= 1 && c->batch % e->bn_splits != 0 && world > 1) /* c->batch is one process's part of -b */
    add(p, "each process's batch of %d (%s %d over %d processes) is not a multiple of %s %d", c->batch,
        nm(p, "batch-size"), c->batch * world, world, nm(p, "bn-splits"), e->bn_splits);
  else if (c->batch >= 1 && c->batch % e->bn_splits != 0)
    add(p, "%s %d is not a multiple of %s %d", nm(p, "batch-size"), c->batch, nm(p, "bn-splits"), e->bn_splits);

  if (!(c->momentum >= 0.f && c->momentum <= 1.f))
    add(p, "%s %g must be between 0 and 1", nm(p, "momentum"), (double)c->momentum);
  if (!finite_at_least_0(c->wd)) add(p, "%s %g must be finite and at least 0", nm(p, "wd"), (double)c->wd);
}

/* The learning-rate schedule (synco_lr_schedule_check, each problem named) and the negatives' warm-up. */
static void schedule_problems(problems *p, const synco_pretrain_config *c) {
  const synco_lr_schedule *s = &c->sched;
  if (!(s->lr > 0.f) || !isfinite(s->lr)) add(p, "%s %g must be finite and greater than 0", nm(p, "lr"), (double)s->lr);
  if (s->epochs < 1) add(p, "%s %d must be at least 1", nm(p, "epochs"), s->epochs);
  else if (s->epochs > SYNCO_PRETRAIN_MAX_EPOCHS)
    add(p, "%s %d is more than %d", nm(p, "epochs"), s->epochs, SYNCO_PRETRAIN_MAX_EPOCHS);
  if (s->n_milestones < 0 || s->n_milestones > SYNCO_MAX_MILESTONES)
    add(p, "%s has %d milestones (at most %d)", nm(p, "schedule"), s->n_milestones, SYNCO_MAX_MILESTONES);
  if (s->warmup_epochs < 0) add(p, "%s %d must be at least 0", nm(p, "lr-warmup-epochs"), s->warmup_epochs);
  if (c->warmup_epochs < 0) add(p, "%s %d must be at least 0", nm(p, "warmup-epochs"), c->warmup_epochs);
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

synco_status synco_pretrain_config_check(const synco_pretrain_config *cfg, const synco_config_origin *origin, char *msg,
                                         size_t cap, int *count) {
  problems p = {.msg = msg, .cap = cap, .origin = origin};
  if (msg && cap) msg[0] = 0;
  moco_problems(&p, &cfg->moco, SYNCO_PRETRAIN_MIN_IMAGE);
  schedule_problems(&p, cfg);
  return finish(&p, count);
}

synco_status synco_pretrain_config_validate(const synco_pretrain_config *cfg, char *msg, size_t cap, int *count) {
  return synco_pretrain_config_check(cfg, NULL, msg, cap, count);
}
