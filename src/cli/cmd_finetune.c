/* synco finetune: semi-supervised fine-tuning (the Barlow Twins protocol the SynCo authors use): a
 * class-balanced, seed-determined subset of the labels (1%, 10% or N per class) trains the backbone and a new
 * linear classifier together — SGD with momentum 0.9, separate learning rates for backbone and classifier,
 * cosine schedule over the epochs, train-mode BN, RandomResizedCrop + flip — then the val images
 * (center-cropped, eval-mode BN) are classified. Full batches only (the last short batch of an epoch is dropped,
 * as train-mode BN needs the planned batch). Backbone, classifier, their SGD and the features between them are
 * backend memory; the host sees the B x C logits of each step (src/eval/linear.h). --out FILE: the fine-tuned
 * backbone (with its BN statistics) and the classifier as one torchvision-named file (src/eval/model_out.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/eval_common.h"
#include "eval/linear.h"
#include "eval/model_out.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tensor/backend.h"

typedef struct {
  synco_encoder *enc;
  synco_linear_layer *cls; /* on the backend: the encoder writes features into cls->x, reads dL/dfeatures from cls->dx */
  float *mom;              /* backbone SGD momentum [num_params], backend memory */
  int started;
  float *x;                /* [B,3,S,S] host: the images */
  int *y;
} ft_state;

static synco_status ft_epoch(ft_state *st, synco_batcher *b, const uint32_t *idx, size_t n, int epoch, int epochs,
                             uint64_t seed, double lr_b, double lr_c, double momentum, double wd, double *loss,
                             double *acc) {
  synco_encoder *enc = st->enc;
  synco_backend *be = synco_encoder_backend(enc);
  const int B = synco_encoder_batch(enc);
  const size_t P = synco_encoder_num_params(enc);
  uint32_t *perm = synco_malloc(n * sizeof(uint32_t));
  if (!perm) return SYNCO_ERR_NOMEM;
  memcpy(perm, idx, n * sizeof(uint32_t));
  synco_rng r = synco_rng_make(seed, (uint64_t)epoch, 0, SYNCO_RNG_SHUFFLE);
  synco_rng_shuffle(&r, perm, (uint32_t)n);
  const long steps = (long)(n / B);
  char label[64];
  snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, epochs);
  synco_progress p;
  synco_progress_begin(&p, label, steps, B, 10);
  double sl = 0;
  size_t hits = 0, seen = 0;
  synco_status s = SYNCO_OK;
  for (long k = 0; k < steps && !s; k++) {
    s = synco_batcher_fill(b, st->x, st->y, perm + (size_t)k * B, B, seed, epoch, SYNCO_RNG_EVAL);
    if (!s) s = synco_encoder_forward_to_backend(enc, st->cls->x, st->x, B, 1);
    double l = 0;
    int h = 0;
    if (!s) s = synco_linear_layer_backprop(st->cls, st->y, B, 1, &l, &h);
    if (s == SYNCO_ERR_NUMERIC) {
      s = synco_fail_context(s, "fine-tuning, epoch %d step %ld: ", epoch + 1, k);
      break;
    }
    if (!s) s = be->memset(be, synco_encoder_grads(enc), 0, P * sizeof(float));
    if (!s) s = synco_encoder_backward(enc, st->cls->dx);
    if (!s) s = synco_sgd_step(be, synco_encoder_params(enc), st->mom, synco_encoder_grads(enc), P, (float)lr_b,
                               (float)momentum, (float)wd, !st->started);
    if (s) break;
    st->started = 1;
    if ((s = synco_linear_layer_sgd(st->cls, lr_c, momentum, wd))) break;
    sl += l * B;
    hits += (size_t)h;
    seen += (size_t)B;
    char text[64];
    snprintf(text, sizeof text, "loss %.4f  acc %.1f%%", sl / seen, 100.0 * hits / seen);
    synco_progress_update(&p, k + 1, text);
  }
  char text[64];
  snprintf(text, sizeof text, "loss %.4f  acc %.1f%%", seen ? sl / seen : 0, seen ? 100.0 * hits / seen : 0);
  synco_progress_end(&p, text);
  free(perm);
  *loss = seen ? sl / seen : NAN;
  *acc = seen ? 100.0 * hits / seen : NAN;
  return s;
}

/* Top-1 / top-5 of the classifier on the val images, eval-mode BN: each batch's features go from the encoder
 * straight into the classifier's backend buffer. */
static synco_status ft_eval(ft_state *st, const synco_dataset *ds, const uint32_t *idx, const int *labels, size_t n,
                            const synco_aug_config *aug, uint64_t seed, double *top1, double *top5) {
  const int B = synco_encoder_batch(st->enc);
  synco_batcher *b = NULL;
  SYNCO_TRY(synco_batcher_create(&b, ds, aug));
  synco_progress p;
  synco_progress_begin(&p, "val", (long)((n + B - 1) / B), B, 20);
  size_t h1 = 0, h5 = 0;
  synco_status s = SYNCO_OK;
  for (size_t i0 = 0; i0 < n && !s; i0 += B) {
    const int nb = (int)(n - i0 < (size_t)B ? n - i0 : (size_t)B);
    s = synco_batcher_fill(b, st->x, NULL, idx + i0, nb, seed, 0, SYNCO_RNG_EVAL);
    if (!s) s = synco_encoder_forward_to_backend(st->enc, st->cls->x, st->x, nb, 0);
    if (!s) s = synco_linear_layer_score(st->cls, labels + i0, nb, &h1, &h5);
    synco_progress_update(&p, (long)(i0 / B + 1), NULL);
  }
  synco_progress_end(&p, NULL);
  synco_batcher_free(b);
  *top1 = n ? 100.0 * h1 / n : 0;
  *top5 = n ? 100.0 * h5 / n : 0;
  return s;
}

int synco_cmd_finetune(int argc, char **argv) {
  synco_eval_model_opts mo;
  synco_eval_model_defaults(&mo);
  const char *train = NULL, *val = NULL, *train_split = NULL, *val_split = NULL, *labels = "10%", *out = NULL;
  int holdout = 0, json = 0, skip_bad = 0, epochs = 20, eval_every = 0;
  double lr_b = 0.005, lr_c = 0.5, momentum = 0.9, wd = 0;
  synco_arg args[40] = {
      {"train", 0, SYNCO_ARG_STR, &train, "labelled training images (the subset is drawn from these)"},
      {"val", 0, SYNCO_ARG_STR, &val, "labelled validation images"},
      {"train-split", 0, SYNCO_ARG_STR, &train_split, "split of --train where the format has several"},
      {"val-split", 0, SYNCO_ARG_STR, &val_split, SYNCO_EVAL_VAL_SPLIT_HELP},
      {"holdout", 0, SYNCO_ARG_INT, &holdout, "without --val: the last N images of each class of --train are the val set"},
      {"labels", 0, SYNCO_ARG_STR, &labels, "labelled subset: 1%, 10% or N images per class"},
      {"epochs", 0, SYNCO_ARG_INT, &epochs, "epochs over the labelled subset"},
      {"lr-backbone", 0, SYNCO_ARG_FLOAT, &lr_b, "backbone learning rate"},
      {"lr-classifier", 0, SYNCO_ARG_FLOAT, &lr_c, "classifier learning rate"},
      {"momentum", 0, SYNCO_ARG_FLOAT, &momentum, "SGD momentum"},
      {"wd", 0, SYNCO_ARG_FLOAT, &wd, "weight decay"},
      {"eval-every", 0, SYNCO_ARG_INT, &eval_every, "val accuracy every N epochs as well as at the end (0: end only)"},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &skip_bad, "skip unreadable images"},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print one JSON object"},
      {"out", 'o', SYNCO_ARG_STR, &out, "write backbone + classifier (fc.weight, fc.bias) as torchvision-named .safetensors"},
  };
  int na = 15;
  na += synco_eval_model_args(&mo, args + na, 39 - na);
  args[na].name = NULL;
  int rc = synco_args_parse("finetune", "Semi-supervised fine-tuning of backbone + classifier on a labelled subset.",
                            args, argc, argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = synco_eval_model_check("finetune", &mo, args))) return rc;
  double val_fraction = 0;
  if ((rc = synco_eval_val_split_check("finetune", &val_split, &val_fraction, val, holdout))) return rc;
  double frac;
  int per_class;
  if (!train) {
    fprintf(stderr, "synco finetune: --train is required\n");
    return 2;
  }
  if (synco_label_spec_parse(labels, &frac, &per_class)) {
    fprintf(stderr, "synco finetune: %s\n", synco_last_error());
    return 2;
  }
  if (epochs < 1 || lr_b < 0 || !(lr_c > 0)) {
    fprintf(stderr, "synco finetune: need --epochs >= 1, --lr-backbone >= 0, --lr-classifier > 0\n");
    return 2;
  }
  if (out && synco_model_out_check(out, mo.ckpt ? mo.ckpt : mo.init, "--out")) {
    fprintf(stderr, "synco finetune: %s\n", synco_last_error());
    return 2;
  }
  if ((rc = SYNCO_CLI_CHECK_FILES("finetune", {"--out", out, SYNCO_CLI_OUT}, {"--ckpt", mo.ckpt}, {"--init", mo.init}, {"--train", train, SYNCO_CLI_IN_DATA}, {"--val", val, SYNCO_CLI_IN_DATA}))) return rc;
  const double t0 = synco_now();
  synco_eval_split sp;
  synco_backend *be = NULL;
  synco_batcher *bt = NULL;
  ft_state st = {0};
  uint32_t *sub = NULL, *rel = NULL;
  int *yva = NULL, exit_code = 1;
  size_t n_sub = 0;
  double top1 = 0, top5 = 0, loss = NAN, acc = NAN;
  cJSON *curve = cJSON_CreateArray();
  if (synco_eval_split_open(&sp, train, train_split, val, val_split, holdout, val_fraction, (uint64_t)mo.seed, skip_bad)) {
    cJSON_Delete(curve);
    return synco_cli_error("finetune");
  }
  const int C = sp.train.classes;
  /* The labelled subset is drawn from the train part only (never from held-out images). */
  {
    int *ltr = malloc(sp.n_tr * sizeof(int));
    if (!ltr) goto fail;
    for (size_t i = 0; i < sp.n_tr; i++) ltr[i] = sp.train.labels[sp.tr_idx[i]];
    synco_status s = synco_subset_balanced(&rel, &n_sub, ltr, sp.n_tr, C, frac, per_class, (uint64_t)mo.seed);
    free(ltr);
    if (s) goto fail;
    sub = malloc((n_sub ? n_sub : 1) * sizeof(uint32_t));
    if (!sub) goto fail;
    for (size_t i = 0; i < n_sub; i++) sub[i] = sp.tr_idx[rel[i]];
    if (per_class > 0 && n_sub < (size_t)per_class * (size_t)C) /* a class has fewer: all of its images */
      fprintf(stderr, "synco finetune: warning: --labels %s asks %d images per class; some classes have fewer, so %zu "
                      "images are labelled, not %zu\n", labels, per_class, n_sub, (size_t)per_class * (size_t)C);
  }
  if (synco_eval_fit_batch(&mo, 0, 1)) goto fail; /* memory-sized -b (eval_common.h) */
  const int B = n_sub < (size_t)mo.batch ? (int)n_sub : mo.batch;
  if (B < 2) { /* BN's batch statistics need two images: too few labelled, or -b 1 */
    if (n_sub >= 2)
      synco_fail(SYNCO_ERR_ARG, "-b %d: fine-tuning trains BN on batch statistics, which need at least 2 images a batch",
                 mo.batch);
    else
      synco_fail(SYNCO_ERR_ARG, "--labels %s selects %zu image%s: too few to train with batch statistics (at least 2)",
                 labels, n_sub, n_sub == 1 ? "" : "s");
    goto fail;
  }
  if (synco_eval_open_model(&mo, 0, B, 1, &be, &st.enc, NULL)) goto fail;
  const int d = synco_encoder_feature_dim(st.enc), S = synco_encoder_image_size(st.enc);
  if (synco_linear_layer_create(&st.cls, be, d, C, B, (uint64_t)mo.seed)) goto fail;
  st.mom = be->alloc(be, synco_encoder_num_params(st.enc) * sizeof(float)); /* written by the first SGD step */
  st.x = synco_malloc((size_t)B * 3 * S * S * sizeof(float));
  st.y = synco_malloc((size_t)B * sizeof(int));
  if (!st.mom || !st.x || !st.y || synco_eval_split_labels(&sp, NULL, &yva)) goto fail;
  synco_aug_config ta = synco_eval_aug(S, SYNCO_AUG_CROP_FLIP), ea = synco_eval_aug(S, SYNCO_AUG_EVAL);
  if (synco_batcher_create(&bt, sp.train.ds, &ta)) goto fail;
  /* cosine over the epochs, each part at its own rate (optim/schedule.h) */
  const synco_lr_schedule sched_b = {.lr = lr_b, .epochs = epochs, .cos = 1}, sched_c = {.lr = lr_c, .epochs = epochs, .cos = 1};
  for (int e = 0; e < epochs; e++) {
    const double eb = synco_lr_epoch(&sched_b, e), ec = synco_lr_epoch(&sched_c, e);
    if (ft_epoch(&st, bt, sub, n_sub, e, epochs, (uint64_t)mo.seed, eb, ec, momentum, wd, &loss, &acc)) goto fail;
    cJSON *pt = cJSON_CreateObject();
    cJSON_AddNumberToObject(pt, "epoch", e + 1);
    cJSON_AddNumberToObject(pt, "lr_backbone", eb);
    cJSON_AddNumberToObject(pt, "lr_classifier", ec);
    cJSON_AddNumberToObject(pt, "loss", loss);
    cJSON_AddNumberToObject(pt, "train_top1", acc);
    if ((eval_every > 0 && (e + 1) % eval_every == 0) || e + 1 == epochs) {
      if (ft_eval(&st, synco_eval_split_val_ds(&sp), sp.va_idx, yva, sp.n_va, &ea, (uint64_t)mo.seed, &top1, &top5))
        goto fail;
      cJSON_AddNumberToObject(pt, "top1", top1);
      cJSON_AddNumberToObject(pt, "top5", top5);
      char acc[96];
      if (!json) fprintf(stderr, "epoch %d: val %s\n", e + 1, synco_cli_topk(acc, sizeof acc, top1, top5, C));
    }
    cJSON_AddItemToArray(curve, pt);
  }
  if (out) {
    const char **cls = synco_malloc((size_t)C * sizeof(char *));
    if (!cls) goto fail;
    for (int c = 0; c < C; c++) cls[c] = synco_dataset_class_name(sp.train.ds, c);
    char arch[32], pre[512], task[256];
    snprintf(arch, sizeof arch, "resnet%d", synco_encoder_cfg(st.enc)->depth);
    synco_cli_preprocess_json(pre, sizeof pre, S);
    snprintf(task, sizeof task, "{\"command\":\"finetune\",\"labels\":\"%s\",\"top1\":%.4f,\"top5\":%.4f,\"epochs\":%d}",
             labels, top1, top5, epochs);
    const char *meta[] = {"synco.arch", arch, "synco.preprocess", pre, "synco.task", task, NULL};
    float *fc_w = synco_malloc((size_t)C * d * sizeof(float)), *fc_b = synco_malloc((size_t)C * sizeof(float));
    synco_status ws = fc_w && fc_b ? synco_linear_layer_get(st.cls, fc_w, fc_b) : SYNCO_ERR_NOMEM;
    if (!ws) ws = synco_model_out_write(out, st.enc, fc_w, fc_b, C, cls, meta);
    free(cls), free(fc_w), free(fc_b);
    if (ws) goto fail;
  }
  const double wall = synco_now() - t0;
  char name[512];
  synco_eval_model_name(&mo, name, sizeof name);
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "finetune");
    if (out) cJSON_AddStringToObject(o, "out", out);
    cJSON_AddStringToObject(o, "model", name);
    cJSON_AddNumberToObject(o, "top1", top1);
    cJSON_AddNumberToObject(o, "top5", top5);
    cJSON_AddStringToObject(o, "labels", labels);
    cJSON_AddNumberToObject(o, "n_labelled", (double)n_sub);
    cJSON_AddNumberToObject(o, "n_val", (double)sp.n_va);
    cJSON_AddNumberToObject(o, "classes", C);
    cJSON_AddNumberToObject(o, "epochs", epochs);
    cJSON_AddNumberToObject(o, "batch", B);
    cJSON_AddNumberToObject(o, "lr_backbone", lr_b);
    cJSON_AddNumberToObject(o, "lr_classifier", lr_c);
    cJSON_AddNumberToObject(o, "train_loss", loss);
    cJSON_AddNumberToObject(o, "train_top1", acc);
    cJSON_AddItemToObject(o, "curve", curve);
    curve = NULL;
    cJSON_AddNumberToObject(o, "wall_s", wall);
    synco_eval_print_json(o);
  } else {
    char what[64];
    if (per_class > 0) snprintf(what, sizeof what, "%d label%s per class", per_class, synco_cli_s(per_class));
    else snprintf(what, sizeof what, "%s of the labels", labels);
    printf("fine-tuning of %s on %s (%zu images, %d class%s)\n", name, what, n_sub, C, synco_cli_es(C));
    printf("  %d epoch%s, batch %d, lr backbone %g / classifier %g (cosine), final train loss %.4f, train top-1 %.2f%%\n",
           epochs, synco_cli_s(epochs), B, lr_b, lr_c, loss, acc);
    char acc[96];
    printf("  %zu val images%s: %s\n", sp.n_va, sp.val.ds ? "" : " (held out of train)",
           synco_cli_topk(acc, sizeof acc, top1, top5, C));
    if (out) printf("  wrote %s (backbone + fc.weight/fc.bias, torchvision names)\n", out);
    printf("  wall time %.1f s\n", wall);
  }
  exit_code = 0;
fail:
  if (exit_code) synco_cli_error("finetune");
  cJSON_Delete(curve);
  free(sub), free(rel), free(yva), free(st.x), free(st.y);
  synco_linear_layer_free(st.cls);
  synco_batcher_free(bt);
  if (be && st.mom) be->free(be, st.mom);
  synco_encoder_free(st.enc);
  if (be) synco_backend_destroy(be);
  synco_eval_split_close(&sp);
  return exit_code;
}
