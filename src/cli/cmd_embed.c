/* synco embed: an encoder's backbone features (or the head's output with --head) of every image of a dataset,
 * in dataset order, as a float32 NumPy .npy file [N, D] (numpy.load reads it), and the labels as int64 [N].
 * Beside OUT (its name without ".npy" = BASE): BASE.files.txt, one line per row of OUT naming its image (the
 * file's path for an ImageFolder, "<format>:<index>" for CIFAR, STL-10 and idx), and BASE.classes.txt, one line
 * per label (line k, from 0, is the name of class k; one empty line for an unlabelled dataset). */
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
#include "eval/npy.h"
#include "tensor/backend.h"

/* BASE + suffix, where BASE is out without a trailing ".npy". */
static void sidecar(char *dst, size_t n, const char *out, const char *suffix) {
  size_t len = strlen(out);
  if (len > 4 && !strcmp(out + len - 4, ".npy")) len -= 4;
  snprintf(dst, n, "%.*s%s", (int)len, out, suffix);
}

/* files.txt (one image name per row) and classes.txt (one class name per label). */
static synco_status write_names(const synco_dataset *ds, size_t n, const char *files_path, const char *classes_path) {
  size_t cap = 4096, len = 0;
  char *text = malloc(cap), buf[64];
  if (!text) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  text[0] = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = synco_dataset_item_name(ds, i, buf, sizeof buf);
    const size_t k = strlen(name);
    if (len + k + 2 > cap) {
      while (len + k + 2 > cap) cap *= 2;
      char *t = realloc(text, cap);
      if (!t) {
        free(text);
        return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
      }
      text = t;
    }
    memcpy(text + len, name, k);
    len += k;
    if (i + 1 < n) text[len++] = '\n';
    text[len] = 0;
  }
  synco_status s = synco_cli_write_file_atomic(files_path, text);
  len = 0;
  text[0] = 0;
  const int C = synco_dataset_num_classes(ds);
  for (int c = 0; c < C && !s; c++) {
    const char *name = synco_dataset_class_name(ds, c);
    const size_t k = strlen(name ? name : "");
    if (len + k + 2 > cap) {
      while (len + k + 2 > cap) cap *= 2;
      char *t = realloc(text, cap);
      if (!t) {
        s = synco_fail(SYNCO_ERR_NOMEM, "out of memory");
        break;
      }
      text = t;
    }
    memcpy(text + len, name ? name : "", k);
    len += k;
    if (c + 1 < C) text[len++] = '\n';
    text[len] = 0;
  }
  if (!s) s = synco_cli_write_file_atomic(classes_path, text);
  free(text);
  return s;
}

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
  if ((rc = synco_eval_model_check("embed", &mo, args))) return rc;
  if (!data || !out) {
    fprintf(stderr, "synco embed: --data and --out are required\n");
    return 2;
  }
  const size_t ol = strlen(out);
  if (ol < 4 || strcmp(out + ol - 4, ".npy")) /* numpy.load reads any name, but a reader of the name is misled */
    fprintf(stderr, "synco embed: warning: --out %s is written as a NumPy .npy file, whatever its name\n", out);
  char files_path[SYNCO_CLI_PATH_MAX + 100], classes_path[SYNCO_CLI_PATH_MAX + 100];
  sidecar(files_path, sizeof files_path, out, ".files.txt");
  sidecar(classes_path, sizeof classes_path, out, ".classes.txt");
  /* no output is an input or another output (--labels-out onto --out would replace the features) */
  if ((rc = SYNCO_CLI_CHECK_FILES("embed", {"--out", out, SYNCO_CLI_OUT},
                                  {"--out's row names", files_path, SYNCO_CLI_OUT_BESIDE},
                                  {"--out's class names", classes_path, SYNCO_CLI_OUT_BESIDE},
                                  {"--labels-out", labels_out, SYNCO_CLI_OUT}, {"--ckpt", mo.ckpt},
                                  {"--init", mo.init}, {"--data", data, SYNCO_CLI_IN_DATA})))
    return rc;
  const double t0 = synco_now();
  synco_eval_data ds;
  synco_backend *be = NULL;
  synco_encoder *enc = NULL;
  float *f = NULL;
  int exit_code = 1, has_head = 0;
  if (synco_eval_data_open(&ds, data, split, skip_bad, 0, 0)) return synco_cli_error("embed");
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
  if (write_names(ds.ds, ds.n, files_path, classes_path)) goto fail;
  const double wall = synco_now() - t0;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "command", "embed");
    cJSON_AddStringToObject(o, "out", out);
    if (labels_out) cJSON_AddStringToObject(o, "labels_out", labels_out);
    cJSON_AddStringToObject(o, "files", files_path);
    cJSON_AddStringToObject(o, "classes", classes_path);
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
    printf("wrote %s (image of each row) and %s (%d class names)\n", files_path, classes_path,
           synco_dataset_num_classes(ds.ds));
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
