/* synco embed: an encoder's backbone features (or the head's output with --head) of every image of a dataset,
 * in dataset order, as a float32 NumPy .npy file [N, D] (numpy.load reads it), and the labels as int64 [N]. */
#include <stdio.h>
#include <stdlib.h>

#include "base/progress.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/eval_common.h"
#include "eval/knn.h"
#include "eval/npy.h"
#include "tensor/backend.h"

int synco_cmd_embed(int argc, char **argv) {
  synco_eval_model_opts mo;
  synco_eval_model_defaults(&mo);
  const char *data = NULL, *split = NULL, *out = NULL, *labels_out = NULL;
  int json = 0, skip_bad = 0, normalize = 0, head = 0;
  synco_arg args[32] = {
      {"data", 0, SYNCO_ARG_STR, &data, "images (any format the loader reads)"},
      {"split", 0, SYNCO_ARG_STR, &split, "split where the format has several (train, test)"},
      {"out", 'o', SYNCO_ARG_STR, &out, "features .npy file"},
      {"labels-out", 0, SYNCO_ARG_STR, &labels_out, "labels .npy file (int64; -1 where unlabelled)"},
      {"normalize", 0, SYNCO_ARG_FLAG, &normalize, "L2-normalize each feature row"},
      {"head", 0, SYNCO_ARG_FLAG, &head, "the projection head's output instead of backbone features"},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &skip_bad, "skip unreadable images"},
      {"json", 0, SYNCO_ARG_FLAG, &json, "print one JSON object"},
  };
  int na = 8;
  na += synco_eval_model_args(&mo, args + na, 31 - na);
  args[na].name = NULL;
  int rc = synco_args_parse("embed", "Writes an encoder's features of a dataset as a NumPy .npy file.", args, argc,
                            argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = synco_eval_model_check("embed", &mo))) return rc;
  if (!data || !out) {
    fprintf(stderr, "synco embed: --data and --out are required\n");
    return 2;
  }
  const double t0 = synco_now();
  synco_eval_data ds;
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  float *f = NULL;
  int exit_code = 1, has_head = 0;
  if (synco_eval_data_open(&ds, data, split, skip_bad, 0)) return synco_cli_error("embed");
  if (synco_eval_open_model(&mo, head, mo.batch, 1, &be, &enc, &has_head)) goto fail;
  if (head && !has_head) {
    synco_fail(SYNCO_ERR_ARG, "%s has no projection head (--head)", mo.ckpt ? mo.ckpt : "the model");
    goto fail;
  }
  const int d = head ? synco_encoder_out_dim(enc) : synco_encoder_feature_dim(enc);
  synco_aug_config aug = synco_eval_aug(synco_encoder_image_size(enc), SYNCO_AUG_EVAL);
  if (synco_eval_encode(&f, enc, ds.ds, NULL, ds.n, &aug, (uint64_t)mo.seed, 0, head, "features", 0)) goto fail;
  if (normalize) synco_rows_l2_normalize(f, ds.n, d);
  if (synco_npy_write_f32(out, f, ds.n, (size_t)d)) goto fail;
  if (labels_out && synco_npy_write_labels(labels_out, ds.labels, ds.n)) goto fail;
  const double wall = synco_now() - t0;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "embed");
    cJSON_AddStringToObject(o, "out", out);
    if (labels_out) cJSON_AddStringToObject(o, "labels_out", labels_out);
    cJSON_AddNumberToObject(o, "n", (double)ds.n);
    cJSON_AddNumberToObject(o, "dim", d);
    cJSON_AddStringToObject(o, "features", head ? "head" : "backbone");
    cJSON_AddBoolToObject(o, "normalized", normalize);
    cJSON_AddNumberToObject(o, "wall_s", wall);
    synco_eval_print_json(o);
  } else {
    printf("wrote %s: %zu x %d float32 %s features%s\n", out, ds.n, d, head ? "head" : "backbone",
           normalize ? " (L2-normalized)" : "");
    if (labels_out) printf("wrote %s: %zu int64 labels\n", labels_out, ds.n);
    printf("wall time %.1f s\n", wall);
  }
  exit_code = 0;
fail:
  if (exit_code) synco_cli_error("embed");
  free(f);
  synco_encoder_free(enc);
  if (be) synco_backend_destroy(be);
  synco_eval_data_close(&ds);
  return exit_code;
}
