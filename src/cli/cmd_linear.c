/* synco linear: a linear classifier on frozen backbone features. The MoCo protocol (default): every epoch the
 * train images are freshly augmented (RandomResizedCrop + flip), encoded by the frozen backbone (eval-mode BN)
 * and fed in shuffled minibatches to a linear layer trained by SGD (lr 30, momentum 0.9, no weight decay, 100
 * epochs, x0.1 at 60 and 80); val images are center-cropped. The classifier, its SGD and the features it reads are
 * backend memory (src/eval/linear.h). --fast: features computed once without augmentation and a full-batch L-BFGS
 * softmax regression with an L2 penalty picked on held-out train features, on the host (src/eval/linear.c):
 * seconds instead of hours. --out FILE: the backbone and the trained classifier as one
 * torchvision-named file (src/eval/model_out.h; --fast folds the standardization into fc.weight / fc.bias). */
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
#include "eval/knn.h"
#include "eval/linear.h"
#include "eval/model_out.h"
#include "tensor/backend.h"

/* One epoch of the MoCo protocol: augmented features of the shuffled train images, SGD per minibatch. The frozen
 * backbone (no head: its eval-mode forward is the features) writes each minibatch's features straight into the
 * classifier's backend buffer; only the images go up and the B x C logits come down. */
static synco_status train_epoch(synco_linear_layer *l, synco_encoder *enc, synco_batcher *b, const uint32_t *idx,
                                size_t n, int epoch, uint64_t seed, const synco_sgd_config *sc, double *loss,
                                double *acc) {
  const int B = synco_encoder_batch(enc), S = synco_encoder_image_size(enc);
  uint32_t *perm = synco_malloc(n * sizeof(uint32_t));
  float *x = synco_malloc((size_t)B * 3 * S * S * sizeof(float));
  int *y = synco_malloc((size_t)B * sizeof(int));
  synco_status s = (!perm || !x || !y) ? SYNCO_ERR_NOMEM : SYNCO_OK;
  const double lr = synco_lr_epoch(&sc->sched, epoch);
  double sl = 0;
  size_t hits = 0, seen = 0;
  char label[64];
  snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, sc->sched.epochs);
  synco_progress p;
  synco_progress_begin(&p, label, (long)((n + B - 1) / B), B, 50);
  if (!s) {
    memcpy(perm, idx, n * sizeof(uint32_t));
    synco_rng r = synco_rng_make(seed, (uint64_t)epoch, 0, SYNCO_RNG_SHUFFLE);
    synco_rng_shuffle(&r, perm, (uint32_t)n);
  }
  for (size_t i0 = 0; i0 < n && !s; i0 += B) {
    const int nb = (int)(n - i0 < (size_t)B ? n - i0 : (size_t)B);
    s = synco_batcher_fill(b, x, y, perm + i0, nb, seed, epoch, SYNCO_RNG_EVAL);
    if (!s) s = synco_encoder_forward_to_backend(enc, l->x, x, nb, 0);
    double bl = 0;
    int h = 0;
    if (!s) s = synco_linear_layer_train_step(l, y, nb, lr, sc, &bl, &h);
    sl += bl * nb;
    hits += (size_t)h;
    seen += (size_t)nb;
    char text[64];
    snprintf(text, sizeof text, "loss %.4f  acc %.1f%%", sl / seen, 100.0 * hits / seen);
    synco_progress_update(&p, (long)(i0 / B + 1), text);
  }
  char text[64];
  snprintf(text, sizeof text, "loss %.4f  acc %.1f%%", seen ? sl / seen : 0, seen ? 100.0 * hits / seen : 0);
  synco_progress_end(&p, text);
  *loss = seen ? sl / seen : NAN;
  *acc = seen ? 100.0 * hits / seen : NAN;
  free(perm), free(x), free(y);
  return s;
}

int synco_cmd_linear(int argc, char **argv) {
  synco_eval_model_opts mo;
  synco_eval_model_defaults(&mo);
  const char *train = NULL, *val = NULL, *train_split = NULL, *val_split = NULL, *out = NULL;
  int holdout = 0, json = 0, skip_bad = 0, fast = 0, l2 = 0, cosine = 0, epochs = 100, eval_every = 0;
  double lr = 30, momentum = 0.9, wd = 0;
  synco_intlist schedule = {2, {60, 80}};
  synco_arg args[40] = {
      {"train", 0, SYNCO_ARG_STR, &train, "labelled training images"},
      {"val", 0, SYNCO_ARG_STR, &val, "labelled validation images"},
      {"train-split", 0, SYNCO_ARG_STR, &train_split, "split of --train where the format has several"},
      {"val-split", 0, SYNCO_ARG_STR, &val_split, SYNCO_EVAL_VAL_SPLIT_HELP},
      {"holdout", 0, SYNCO_ARG_INT, &holdout, "without --val: the last N images of each class of --train are the val set"},
      {"fast", 0, SYNCO_ARG_FLAG, &fast, "cached features, no augmentation, L-BFGS with a tuned L2 penalty"},
      {"l2-normalize", 0, SYNCO_ARG_FLAG, &l2, "--fast: L2-normalize features instead of standardizing them"},
      {"epochs", 0, SYNCO_ARG_INT, &epochs, "SGD epochs (MoCo protocol)"},
      {"lr", 0, SYNCO_ARG_FLOAT, &lr, "SGD learning rate"},
      {"momentum", 0, SYNCO_ARG_FLOAT, &momentum, "SGD momentum"},
      {"wd", 0, SYNCO_ARG_FLOAT, &wd, "SGD weight decay"},
      {"schedule", 0, SYNCO_ARG_INTLIST, &schedule, "epochs at which the rate drops x0.1"},
      {"cos", 0, SYNCO_ARG_FLAG, &cosine, "cosine schedule instead of the steps"},
      {"eval-every", 0, SYNCO_ARG_INT, &eval_every, "val accuracy every N epochs as well as at the end (0: end only)"},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &skip_bad, "skip unreadable images"},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print one JSON object"},
      {"out", 'o', SYNCO_ARG_STR, &out, "write backbone + classifier (fc.weight, fc.bias) as torchvision-named .safetensors"},
  };
  int na = 17;
  na += synco_eval_model_args(&mo, args + na, 39 - na);
  args[na].name = NULL;
  int rc = synco_args_parse("linear", "Linear classification on frozen backbone features (MoCo protocol, or --fast).",
                            args, argc, argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = synco_eval_model_check("linear", &mo, args))) return rc;
  double val_fraction = 0;
  if ((rc = synco_eval_val_split_check("linear", &val_split, &val_fraction, val, holdout))) return rc;
  if (!train) {
    fprintf(stderr, "synco linear: --train is required\n");
    return 2;
  }
  if (cosine && synco_args_seen(args, "schedule")) {
    fprintf(stderr, "synco linear: --schedule gives the step schedule's epochs, but --cos is on: drop one\n");
    return 2;
  }
  if (fast) { /* the MoCo protocol's flags, given to the L-BFGS fit: said, since they change nothing */
    static const char *const sgd[] = {"epochs", "lr", "momentum", "wd", "schedule", "cos", "eval-every"};
    char given[128] = "";
    int n = 0;
    for (size_t i = 0; i < sizeof sgd / sizeof *sgd; i++)
      if (synco_args_seen(args, sgd[i]))
        n++, snprintf(given + strlen(given), sizeof given - strlen(given), "%s--%s", *given ? ", " : "", sgd[i]);
    if (n)
      fprintf(stderr, "synco linear: warning: --fast fits the classifier by L-BFGS; %s %s the MoCo protocol's (SGD) "
                      "and change%s nothing\n", given, n == 1 ? "is" : "are", n == 1 ? "s" : "");
  }
  if (!fast && (epochs < 1 || !(lr > 0) || schedule.n > SYNCO_MAX_MILESTONES)) {
    fprintf(stderr, "synco linear: need --epochs >= 1, --lr > 0 and at most %d --schedule epochs\n",
            SYNCO_MAX_MILESTONES);
    return 2;
  }
  if (out && fast && l2) {
    fprintf(stderr, "synco linear: --out with --fast --l2-normalize: a classifier on L2-normalized features is not "
                    "one linear layer on the backbone's features; drop --l2-normalize\n");
    return 2;
  }
  if (out && synco_model_out_check(out, mo.ckpt ? mo.ckpt : mo.init, "--out")) {
    fprintf(stderr, "synco linear: %s\n", synco_last_error());
    return 2;
  }
  if ((rc = SYNCO_CLI_CHECK_FILES("linear", {"--out", out, SYNCO_CLI_OUT}, {"--ckpt", mo.ckpt}, {"--init", mo.init}, {"--train", train, SYNCO_CLI_IN_DATA}, {"--val", val, SYNCO_CLI_IN_DATA}))) return rc;
  const double t0 = synco_now();
  synco_eval_split sp;
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  synco_batcher *bt = NULL;
  synco_linear_layer *layer = NULL;
  float *ftr = NULL, *fva = NULL;
  int *ytr = NULL, *yva = NULL, exit_code = 1;
  float *fc_w = NULL, *fc_b = NULL;       /* --out: the classifier, host memory (--fast: folded) */
  double top1 = 0, top5 = 0, train_top1 = NAN, t_feat = 0, t_fit = 0, lambda = NAN, final_loss = NAN;
  int iters = 0;
  cJSON *curve = cJSON_CreateArray();
  if (synco_eval_split_open(&sp, train, train_split, val, val_split, holdout, val_fraction, (uint64_t)mo.seed, skip_bad)) {
    cJSON_Delete(curve);
    return synco_cli_error("linear");
  }
  const int C = sp.train.classes;
  if (synco_eval_open_model(&mo, 0, mo.batch, 1, &be, &enc, NULL)) goto fail;
  const int d = synco_encoder_feature_dim(enc), S = synco_encoder_image_size(enc);
  if (out) {
    fc_w = synco_malloc((size_t)C * d * sizeof(float));
    fc_b = synco_malloc((size_t)C * sizeof(float));
    if (!fc_w || !fc_b) goto fail;
  }
  synco_aug_config eval_aug = synco_eval_aug(S, SYNCO_AUG_EVAL);
  if (synco_eval_split_labels(&sp, &ytr, &yva)) goto fail;
  if (synco_eval_encode(&fva, enc, synco_eval_split_val_ds(&sp), sp.va_idx, sp.n_va, &eval_aug, (uint64_t)mo.seed, 0,
                        0, "val features", 0))
    goto fail;
  if (fast) {
    if (synco_eval_encode(&ftr, enc, sp.train.ds, sp.tr_idx, sp.n_tr, &eval_aug, (uint64_t)mo.seed, 0, 0,
                          "train features", 0))
      goto fail;
    t_feat = synco_now() - t0;
    synco_probe_config pc = synco_probe_default_config(C);
    pc.normalize = l2;
    pc.seed = (uint64_t)mo.seed;
    pc.out_weight = fc_w;
    pc.out_bias = fc_b;
    synco_probe_result pr;
    const double t1 = synco_now();
    if (synco_linear_probe_fast(&pr, ftr, ytr, sp.n_tr, fva, yva, sp.n_va, d, &pc)) goto fail;
    t_fit = synco_now() - t1;
    top1 = pr.top1, top5 = pr.top5, train_top1 = pr.train_top1, lambda = pr.lambda, iters = pr.iters;
    final_loss = pr.loss;
  } else {
    synco_sgd_config sc = {.sched = {.lr = lr, .epochs = epochs, .cos = cosine, .n_milestones = schedule.n},
                           .momentum = momentum, .weight_decay = wd};
    for (int i = 0; i < schedule.n; i++) sc.sched.milestones[i] = schedule.v[i];
    synco_aug_config train_aug = synco_eval_aug(S, SYNCO_AUG_CROP_FLIP);
    if (synco_batcher_create(&bt, sp.train.ds, &train_aug)) goto fail;
    if (synco_linear_layer_create(&layer, be, d, C, mo.batch, (uint64_t)mo.seed)) goto fail;
    t_feat = synco_now() - t0;
    const double t1 = synco_now();
    for (int e = 0; e < epochs; e++) {
      double loss, acc;
      if (train_epoch(layer, enc, bt, sp.tr_idx, sp.n_tr, e, (uint64_t)mo.seed, &sc, &loss, &acc)) goto fail;
      train_top1 = acc;
      final_loss = loss;
      cJSON *pt = cJSON_CreateObject();
      cJSON_AddNumberToObject(pt, "epoch", e + 1);
      cJSON_AddNumberToObject(pt, "lr", synco_lr_epoch(&sc.sched, e));
      cJSON_AddNumberToObject(pt, "loss", loss);
      cJSON_AddNumberToObject(pt, "train_top1", acc);
      if ((eval_every > 0 && (e + 1) % eval_every == 0) || e + 1 == epochs) {
        size_t h1, h5;
        if (synco_linear_layer_eval(layer, fva, yva, sp.n_va, &h1, &h5)) goto fail;
        top1 = sp.n_va ? 100.0 * h1 / sp.n_va : 0;
        top5 = sp.n_va ? 100.0 * h5 / sp.n_va : 0;
        cJSON_AddNumberToObject(pt, "top1", top1);
        cJSON_AddNumberToObject(pt, "top5", top5);
        char acc[96];
        if (!json) fprintf(stderr, "epoch %d: val %s\n", e + 1, synco_cli_topk(acc, sizeof acc, top1, top5, C));
      }
      cJSON_AddItemToArray(curve, pt);
    }
    t_fit = synco_now() - t1;
    if (out && synco_linear_layer_get(layer, fc_w, fc_b)) goto fail;
    /* MoCo's lr 30 suits its ResNet-50's features; on others the loss may end far above chance's ln C */
    if (C > 1 && !(final_loss <= 2 * log((double)C)))
      fprintf(stderr, "synco linear: note: the final train loss %.4g is far above %.4g (ln %d, a classifier that "
                      "guesses): --lr %g %s too high for these features; try a smaller --lr (e.g. %g), or --fast\n",
              final_loss, log((double)C), C, lr, synco_args_seen(args, "lr") ? "may be" : "(MoCo's protocol, the default) may be",
              lr / 100);
  }
  char name[512];
  synco_eval_model_name(&mo, name, sizeof name);
  if (out) {
    const char **cls = synco_malloc((size_t)C * sizeof(char *));
    if (!cls) goto fail;
    for (int c = 0; c < C; c++) cls[c] = synco_dataset_class_name(sp.train.ds, c);
    char arch[32], pre[512], task[256];
    snprintf(arch, sizeof arch, "resnet%d", synco_encoder_cfg(enc)->depth);
    synco_cli_preprocess_json(pre, sizeof pre, S);
    snprintf(task, sizeof task, "{\"command\":\"linear\",\"mode\":\"%s\",\"top1\":%.4f,\"top5\":%.4f,\"n_train\":%zu}",
             fast ? "fast" : "moco", top1, top5, sp.n_tr);
    const char *meta[] = {"synco.arch", arch, "synco.preprocess", pre, "synco.task", task, NULL};
    synco_status ws = synco_model_out_write(out, enc, fc_w, fc_b, C, cls, meta);
    free(cls);
    if (ws) goto fail;
  }
  const double wall = synco_now() - t0;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "linear");
    if (out) cJSON_AddStringToObject(o, "out", out);
    cJSON_AddStringToObject(o, "mode", fast ? "fast" : "moco");
    cJSON_AddStringToObject(o, "model", name);
    cJSON_AddNumberToObject(o, "top1", top1);
    cJSON_AddNumberToObject(o, "top5", top5);
    cJSON_AddNumberToObject(o, "train_top1", train_top1);
    cJSON_AddNumberToObject(o, "n_train", (double)sp.n_tr);
    cJSON_AddNumberToObject(o, "n_val", (double)sp.n_va);
    cJSON_AddNumberToObject(o, "classes", C);
    cJSON_AddNumberToObject(o, "feature_dim", d);
    if (fast) {
      cJSON_AddNumberToObject(o, "lambda", lambda);
      cJSON_AddNumberToObject(o, "iters", iters);
      cJSON_AddStringToObject(o, "features", l2 ? "l2-normalized" : "standardized");
    } else {
      cJSON_AddNumberToObject(o, "epochs", epochs);
      cJSON_AddNumberToObject(o, "lr", lr);
      cJSON_AddItemToObject(o, "curve", curve);
      curve = NULL;
    }
    cJSON_AddNumberToObject(o, "loss", final_loss);
    cJSON_AddNumberToObject(o, "features_s", t_feat);
    cJSON_AddNumberToObject(o, "fit_s", t_fit);
    cJSON_AddNumberToObject(o, "wall_s", wall);
    synco_eval_print_json(o);
  } else {
    printf("linear classification (%s) of %s\n",
           fast ? "fast: cached features, L-BFGS" : "MoCo protocol: augmented features, SGD", name);
    printf("  %zu train / %zu val images, %d class%s, %d-d features%s\n", sp.n_tr, sp.n_va, C, synco_cli_es(C), d,
           sp.val.ds ? "" : " (val held out of train)");
    if (fast) printf("  L2 penalty %g (picked on held-out train features), %d L-BFGS iterations, train top-1 %.2f%%\n",
                     lambda, iters, train_top1);
    else printf("  %d epoch%s, lr %g, final train loss %.4f, train top-1 %.2f%%\n", epochs, synco_cli_s(epochs), lr,
                final_loss, train_top1);
    char acc[96];
    printf("  %s\n", synco_cli_topk(acc, sizeof acc, top1, top5, C));
    if (out) printf("  wrote %s (backbone + fc.weight/fc.bias, torchvision names)\n", out);
    printf("  wall time %.1f s (features %.1f s, fit %.1f s)\n", wall, t_feat, t_fit);
  }
  exit_code = 0;
fail:
  if (exit_code) synco_cli_error("linear");
  cJSON_Delete(curve);
  free(ftr), free(fva), free(ytr), free(yva), free(fc_w), free(fc_b);
  synco_linear_layer_free(layer);
  synco_batcher_free(bt);
  synco_encoder_free(enc);
  if (be) synco_backend_destroy(be);
  synco_eval_split_close(&sp);
  return exit_code;
}
