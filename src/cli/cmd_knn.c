/* synco knn: weighted kNN accuracy (InstDisc / MoCo monitor) of an encoder's L2-normalized backbone features:
 * encode the train and val images with the evaluation transform, then classify each val feature by its k most
 * similar train features (src/eval/knn.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/progress.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/eval_common.h"
#include "eval/knn.h"
#include "tensor/backend.h"

int synco_cmd_knn(int argc, char **argv) {
  synco_eval_model_opts mo;
  synco_eval_model_defaults(&mo);
  const char *train = NULL, *val = NULL, *train_split = NULL, *val_split = NULL;
  int k = 200, holdout = 0, json = 0, skip_bad = 0;
  double t = 0.1;
  synco_arg args[32] = {
      {"train", 0, SYNCO_ARG_STR, &train, "labelled training images (any format the loader reads)"},
      {"val", 0, SYNCO_ARG_STR, &val, "labelled validation images"},
      {"train-split", 0, SYNCO_ARG_STR, &train_split, "split of --train where the format has several (train, test)"},
      {"val-split", 0, SYNCO_ARG_STR, &val_split, SYNCO_EVAL_VAL_SPLIT_HELP},
      {"holdout", 0, SYNCO_ARG_INT, &holdout, "without --val: the last N images of each class of --train are the val set"},
      {"k", 'k', SYNCO_ARG_INT, &k, "neighbours"},
      {"t", 't', SYNCO_ARG_FLOAT, &t, "temperature of the vote weights exp(sim/t)", SYNCO_ARG_RANGE(0, HUGE_VAL), .lo_open = 1},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &skip_bad, "skip unreadable images"},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print one JSON object"},
  };
  int na = 9;
  na += synco_eval_model_args(&mo, args + na, 31 - na);
  args[na].name = NULL;
  int rc = synco_args_parse("knn", "Weighted kNN classification (k, t) of L2-normalized backbone features.", args,
                            argc, argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = synco_eval_model_check("knn", &mo, args))) return rc;
  double val_fraction = 0;
  if ((rc = synco_eval_val_split_check("knn", &val_split, &val_fraction, val, holdout))) return rc;
  if (!train) {
    fprintf(stderr, "synco knn: --train is required\n");
    return 2;
  }
  const double t0 = synco_now();
  synco_eval_split sp;
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  float *ftr = NULL, *fva = NULL;
  int *ytr = NULL, *yva = NULL, exit_code = 1;
  if (synco_eval_split_open(&sp, train, train_split, val, val_split, holdout, val_fraction, (uint64_t)mo.seed, skip_bad)) return synco_cli_error("knn");
  if ((size_t)k > sp.n_tr)
    fprintf(stderr, "synco knn: warning: --k %d is more than the %zu training images: all of them vote\n", k, sp.n_tr);
  if (synco_eval_open_model(&mo, 0, mo.batch, 1, &be, &enc, NULL)) goto fail;
  const int d = synco_encoder_feature_dim(enc);
  synco_aug_config aug = synco_eval_aug(synco_encoder_image_size(enc), SYNCO_AUG_EVAL);
  if (synco_eval_encode(&ftr, enc, sp.train.ds, sp.tr_idx, sp.n_tr, &aug, (uint64_t)mo.seed, 0, 0, "train features", 0))
    goto fail;
  if (synco_eval_encode(&fva, enc, synco_eval_split_val_ds(&sp), sp.va_idx, sp.n_va, &aug, (uint64_t)mo.seed, 0, 0,
                        "val features", 0))
    goto fail;
  const double t_feat = synco_now() - t0;
  if (synco_eval_split_labels(&sp, &ytr, &yva)) goto fail;
  synco_rows_l2_normalize(ftr, sp.n_tr, d);
  synco_rows_l2_normalize(fva, sp.n_va, d);
  synco_knn_config kc = synco_knn_default_config(sp.train.classes);
  kc.k = k;
  kc.t = t;
  synco_knn_result res;
  const double t1 = synco_now();
  if (synco_knn_classify(&res, NULL, NULL, ftr, ytr, sp.n_tr, fva, yva, sp.n_va, d, &kc)) goto fail;
  const double t_knn = synco_now() - t1, wall = synco_now() - t0;
  char name[512];
  synco_eval_model_name(&mo, name, sizeof name);
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "knn");
    cJSON_AddStringToObject(o, "model", name);
    cJSON_AddNumberToObject(o, "top1", res.top1);
    cJSON_AddNumberToObject(o, "top5", res.top5);
    cJSON_AddNumberToObject(o, "k", k);
    cJSON_AddNumberToObject(o, "t", t);
    cJSON_AddNumberToObject(o, "n_train", (double)sp.n_tr);
    cJSON_AddNumberToObject(o, "n_val", (double)sp.n_va);
    cJSON_AddNumberToObject(o, "classes", sp.train.classes);
    cJSON_AddNumberToObject(o, "feature_dim", d);
    cJSON_AddNumberToObject(o, "features_s", t_feat);
    cJSON_AddNumberToObject(o, "knn_s", t_knn);
    cJSON_AddNumberToObject(o, "wall_s", wall);
    synco_eval_print_json(o);
  } else {
    printf("kNN (k %d, t %g) of %s\n", k, t, name);
    printf("  %zu train / %zu val images, %d class%s, %d-d features%s\n", sp.n_tr, sp.n_va, sp.train.classes,
           synco_cli_es(sp.train.classes), d,
           sp.val.ds ? "" : " (val held out of train)");
    char acc[96];
    printf("  %s\n", synco_cli_topk(acc, sizeof acc, res.top1, res.top5, sp.train.classes));
    printf("  wall time %.1f s (features %.1f s, kNN %.2f s)\n", wall, t_feat, t_knn);
  }
  exit_code = 0;
fail:
  if (exit_code) synco_cli_error("knn");
  free(ftr), free(fva), free(ytr), free(yva);
  synco_encoder_free(enc);
  if (be) synco_backend_destroy(be);
  synco_eval_split_close(&sp);
  return exit_code;
}
