/* Shared pieces of the evaluation subcommands (see eval_common.h). */
#include "cli/eval_common.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/registry.h"
#include "base/progress.h"
#include "base/file_read.h"
#include "base/status.h"
#include "cli/common.h"
#include "cli/memplan.h"
#include "nn/encoder_weights.h"
#include "tensor/backend.h"

void synco_eval_model_defaults(synco_eval_model_opts *o) {
  memset(o, 0, sizeof *o);
  o->which = "query";
  o->backend = "auto";
  o->precision = "fp32";
  o->arch = "resnet18";
  o->width = 64;
  o->batch = 0; /* auto: see synco_eval_fit_batch */
}

int synco_eval_model_args(synco_eval_model_opts *o, synco_arg *rows, int max) {
  synco_arg a[] = {
      {"ckpt", 0, SYNCO_ARG_STR, &o->ckpt, "pretraining checkpoint or exported encoder (.safetensors), or a run folder (its last.safetensors)"},
      {"init", 0, SYNCO_ARG_STR, &o->init, "torchvision-named weights (a converted torchvision model); unmatched keys are listed"},
      {"which", 0, SYNCO_ARG_STR, &o->which, "encoder of a checkpoint: query or key"},
      {"random-init", 0, SYNCO_ARG_FLAG, &o->random_init, "no checkpoint: a randomly initialized encoder (baseline)"},
      {"arch", 'a', SYNCO_ARG_STR, &o->arch, "with --random-init: resnet18, resnet34 or resnet50"},
      {"width", 0, SYNCO_ARG_INT, &o->width, "with --random-init: base width"},
      {"cifar-stem", 0, SYNCO_ARG_FLAG, &o->cifar_stem, "with --random-init: 3x3 stride-1 stem, no max-pool"},
      {"image-size", 0, SYNCO_ARG_INT, &o->image_size, "input side (default: the checkpoint's; 32 with --cifar-stem, else 224)"},
      {"batch-size", 'b', SYNCO_ARG_INT, &o->batch, "images per forward pass (0: the most, up to 256, that fit in half the free memory)"},
      {"backend", 0, SYNCO_ARG_STR, &o->backend, "auto, cpu (oneDNN and own kernels), ref, strict (a test backend), cuda or cuda:N (alias --device)"},
      {"precision", 0, SYNCO_ARG_STR, &o->precision, SYNCO_PRECISION_HELP},
      {"threads", 0, SYNCO_ARG_INT, &o->threads, "compute threads (0 = all cores)"},
      {"seed", 0, SYNCO_ARG_INT64, &o->seed, "seed of initializations, subsets and augmentations"},
  };
  int n = (int)(sizeof a / sizeof *a);
  if (n > max) n = max;
  memcpy(rows, a, n * sizeof *a);
  return n;
}

int synco_eval_model_check(const char *cmd, synco_eval_model_opts *o, const synco_arg *args) {
  if ((o->ckpt != NULL) + (o->init != NULL) + (o->random_init != 0) != 1) {
    fprintf(stderr, "synco %s: give exactly one of --ckpt FILE, --init FILE or --random-init\n", cmd);
    return 2;
  }
  if (o->ckpt && !(o->ckpt = synco_cli_ckpt_path("--ckpt", o->ckpt, o->ckpt_buf, sizeof o->ckpt_buf))) {
    fprintf(stderr, "synco %s: %s\n", cmd, synco_last_error());
    return 1;
  }
  if (strcmp(o->which, "query") && strcmp(o->which, "key")) {
    fprintf(stderr, "synco %s: --which is query or key, got '%s'\n", cmd, o->which);
    return 2;
  }
  /* --arch, --width and --cifar-stem make a --random-init or --init model; a checkpoint says its own, and one given
   * against it was silently ignored */
  const int arch_seen = synco_args_seen(args, "arch"), width_seen = synco_args_seen(args, "width"),
            stem_seen = synco_args_seen(args, "cifar-stem");
  if (o->ckpt && (arch_seen || width_seen || stem_seen)) {
    synco_encoder_config f;
    int size = 0;
    if (synco_weights_read_config(o->ckpt, &f, &size) != SYNCO_OK) {
      fprintf(stderr, "synco %s: %s\n", cmd, synco_last_error());
      return 1;
    }
    char arch[16], given[96] = "";
    snprintf(arch, sizeof arch, "resnet%d", f.depth);
    if (arch_seen && strcmp(o->arch, arch)) snprintf(given, sizeof given, "--arch %s", o->arch);
    else if (width_seen && o->width != f.width) snprintf(given, sizeof given, "--width %d", o->width);
    else if (stem_seen && !o->cifar_stem != !f.cifar_stem)
      snprintf(given, sizeof given, "%s", o->cifar_stem ? "--cifar-stem" : "--no-cifar-stem");
    if (given[0]) {
      fprintf(stderr, "synco %s: %s does not fit --ckpt %s, a %s of width %d with the %s stem: drop it (a checkpoint "
                      "says its own model)\n", cmd, given, o->ckpt, arch, f.width, f.cifar_stem ? "CIFAR" : "ImageNet");
      return 2;
    }
  }
  if (o->batch < 0) {
    fprintf(stderr, "synco %s: --batch-size must be at least 1 (or 0: as many as fit)\n", cmd);
    return 2;
  }
  o->batch_auto = o->batch == 0;
  if (o->batch_auto) o->batch = 256;
  if (synco_cli_precision(cmd, o->backend, o->precision)) return 2;
  synco_cli_set_threads(cmd, o->threads, NULL);
  return 0;
}

const char *synco_eval_model_name(const synco_eval_model_opts *o, char *buf, size_t n) {
  if (o->ckpt || o->init) snprintf(buf, n, "%s", o->ckpt ? o->ckpt : o->init);
  else snprintf(buf, n, "random init (%s, width %d, seed %lld)", o->arch, o->width, o->seed);
  return buf;
}

/* The encoder config and image size of the model o names (the file's metadata, or the --random-init flags). */
static synco_status model_config(const synco_eval_model_opts *o, synco_encoder_config *out, int *out_size) {
  synco_encoder_config cfg;
  int image_size = 0;
  if (o->ckpt || o->init) {
    SYNCO_TRY(synco_weights_read_config(o->ckpt ? o->ckpt : o->init, &cfg, &image_size));
  } else {
    memset(&cfg, 0, sizeof cfg);
    cfg.depth = !strcmp(o->arch, "resnet18") ? 18 : !strcmp(o->arch, "resnet34") ? 34 : !strcmp(o->arch, "resnet50") ? 50 : 0;
    if (!cfg.depth) return synco_fail(SYNCO_ERR_ARG, "unknown --arch '%s' (resnet18, resnet34 or resnet50)", o->arch);
    cfg.width = o->width;
    cfg.cifar_stem = o->cifar_stem;
    cfg.head = 1;
    cfg.mlp = 1;
    cfg.dim = 128;
    image_size = o->cifar_stem ? 32 : 224;
  }
  if (o->image_size > 0) image_size = o->image_size;
  *out = cfg;
  *out_size = image_size;
  return SYNCO_OK;
}

static synco_status plan_for(synco_backend *be, const synco_encoder_config *file_cfg, int head, int batch,
                             int image_size, int encoders, synco_mem_plan *p) {
  synco_encoder_config c = *file_cfg;
  c.head = head && c.head;
  c.bn_splits = 1;
  if (c.dim <= 0) c.dim = 128;
  return synco_mem_plan_encoders(be, &c, batch, image_size, encoders, p);
}

/* synco_eval_fit_batch with the backend the encoders will be made on (asked what its plans take, nothing planned). */
static synco_status fit_batch(synco_eval_model_opts *o, synco_backend *be, int head, int encoders) {
  synco_encoder_config cfg;
  int S = 0;
  SYNCO_TRY(model_config(o, &cfg, &S));
  if (synco_mem_check_disabled()) return SYNCO_OK;
  const char *what = NULL;
  const size_t avail = synco_mem_available(&what);
  synco_mem_plan p;
  SYNCO_TRY(plan_for(be, &cfg, head, o->batch, S, encoders, &p));
  char need[32], act[32], have[32];
  if (!o->batch_auto) {
    if (p.total <= avail) return SYNCO_OK;
    return synco_fail(SYNCO_ERR_NOMEM, "batch %d at %d px needs about %s (activations %s); %s are available (%s). Use "
                      "a smaller -b or --image-size", o->batch, S, synco_mem_str(p.total, need, sizeof need),
                      synco_mem_str(p.activations, act, sizeof act), synco_mem_str(avail, have, sizeof have), what);
  }
  /* What grows with the batch (activations, inputs) may take half of what the fixed part (this process, the model,
   * its state) leaves: the largest such batch, by bisection. Halving the process's own size too would refuse runs
   * that fit wherever that size is large (sanitizers, a big dataset in memory). */
  const size_t fixed = p.base + p.model + p.state;
  const size_t room = avail > fixed ? (avail - fixed) / 2 : 0;
  int lo = 0, hi = o->batch;
  if (p.activations + p.io > room) {
    hi = o->batch - 1;
    while (lo < hi) {
      const int mid = lo + (hi - lo + 1) / 2;
      SYNCO_TRY(plan_for(be, &cfg, head, mid, S, encoders, &p));
      if (p.activations + p.io <= room) lo = mid;
      else hi = mid - 1;
    }
    if (lo < 1) {
      SYNCO_TRY(plan_for(be, &cfg, head, 1, S, encoders, &p));
      return synco_fail(SYNCO_ERR_NOMEM, "one image at %d px needs about %s; %s are available (%s). Use a smaller "
                        "--image-size", S, synco_mem_str(p.total, need, sizeof need),
                        synco_mem_str(avail, have, sizeof have), what);
    }
    fprintf(stderr, "synco: batch %d instead of %d: the most images per pass whose activations fit in half of the "
                    "memory left of the %s available (%s); -b N chooses\n", lo, o->batch,
                    synco_mem_str(avail, have, sizeof have), what);
    o->batch = lo;
  }
  o->batch_auto = 0;
  return SYNCO_OK;
}

synco_status synco_eval_fit_batch(synco_eval_model_opts *o, int head, int encoders) {
  synco_encoder_config cfg;
  int S = 0;
  SYNCO_TRY(model_config(o, &cfg, &S)); /* the model's problems first */
  if (synco_mem_check_disabled()) return SYNCO_OK;
  synco_backend *be = NULL; /* one like those the command makes, asked and destroyed */
  SYNCO_TRY(synco_cli_backend(o->backend, o->precision, &be));
  const synco_status s = fit_batch(o, be, head, encoders);
  synco_backend_destroy(be);
  return s;
}

synco_status synco_eval_open_model(const synco_eval_model_opts *o, int head, int batch, int bn_splits,
                                   synco_backend **be, synco_encoder **enc, int *has_head) {
  synco_encoder_config cfg;
  int image_size = 0;
  *be = NULL;
  *enc = NULL;
  SYNCO_TRY(model_config(o, &cfg, &image_size));
  SYNCO_TRY(synco_cli_backend(o->backend, o->precision, be));
  synco_eval_model_opts fit = *o;
  fit.batch = batch;
  synco_status s = fit_batch(&fit, *be, head, 1);
  batch = fit.batch;
  const int file_head = cfg.head;
  cfg.head = head && file_head;
  cfg.bn_splits = bn_splits > 0 ? bn_splits : 1;
  if (cfg.dim <= 0) cfg.dim = 128;
  if (has_head) *has_head = cfg.head;
  if (!s) s = synco_encoder_create(enc, *be, &cfg, batch, image_size, (uint64_t)o->seed);
  if (!s && o->ckpt) s = synco_weights_load(*enc, o->ckpt, o->which, 0);
  if (!s && o->init) {
    char report[1024];
    s = synco_weights_load_report(*enc, o->init, report, sizeof report);
    if (!s) fprintf(stderr, "initialized from %s%s%s\n", o->init, report[0] ? ": " : "", report);
  }
  if (s) {
    synco_encoder_free(*enc);
    synco_backend_destroy(*be);
    *enc = NULL;
    *be = NULL;
  }
  return s;
}

synco_status synco_eval_data_open(synco_eval_data *d, const char *path, const char *split, int skip_bad, int need_labels,
                                  int split_if_any) {
  memset(d, 0, sizeof *d);
  synco_dataset_options opt = {.split = split, .split_if_any = split_if_any, .skip_bad = skip_bad,
                               .store = SYNCO_STORE_AUTO, .threads = 0};
  SYNCO_TRY(synco_dataset_open(&d->ds, path, &opt));
  synco_cli_dataset_notes(NULL, d->ds);
  d->n = synco_dataset_size(d->ds);
  d->classes = synco_dataset_num_classes(d->ds);
  const size_t labelled = synco_dataset_num_labelled(d->ds);
  if (need_labels && labelled < d->n && d->n) {
    char what[96];
    if (labelled) snprintf(what, sizeof what, "%zu of its %zu images have no label", d->n - labelled, d->n);
    else snprintf(what, sizeof what, "no labels (a folder without class folders, or an unlabelled split)");
    synco_eval_data_close(d);
    return synco_fail(SYNCO_ERR_ARG, "%s: %s: the evaluations need labelled images (<root>/<class>/<image>, or a "
                      "labelled format and split)", path, what);
  }
  if (d->n == 0) {
    synco_eval_data_close(d);
    return synco_fail(SYNCO_ERR_ARG, "%s: the dataset is empty", path);
  }
  d->labels = synco_malloc(d->n * sizeof(int));
  if (!d->labels) {
    synco_eval_data_close(d);
    return SYNCO_ERR_NOMEM;
  }
  synco_dataset_labels(d->ds, d->labels);
  return SYNCO_OK;
}

void synco_eval_data_close(synco_eval_data *d) {
  synco_dataset_free(d->ds);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

/* --val-split F: F of each class of train (synco_subset_balanced, keyed by seed) is the val part, the rest train. */
static synco_status held_out_fraction(synco_eval_split *s, double f, uint64_t seed) {
  SYNCO_TRY(synco_subset_balanced(&s->va_idx, &s->n_va, s->train.labels, s->train.n, s->train.classes, f, 0, seed));
  s->tr_idx = synco_malloc((s->train.n ? s->train.n : 1) * sizeof(uint32_t));
  if (!s->tr_idx) return SYNCO_ERR_NOMEM;
  size_t j = 0;
  for (size_t i = 0, k = 0; i < s->train.n; i++) { /* both lists in increasing order */
    if (k < s->n_va && s->va_idx[k] == i) k++;
    else s->tr_idx[j++] = (uint32_t)i;
  }
  s->n_tr = j;
  return SYNCO_OK;
}

static synco_status iota(uint32_t **idx, size_t n) {
  *idx = synco_malloc((n ? n : 1) * sizeof(uint32_t));
  if (!*idx) return SYNCO_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) (*idx)[i] = (uint32_t)i;
  return SYNCO_OK;
}

int synco_eval_val_split_check(const char *cmd, const char **val_split, double *val_fraction, const char *val,
                               int holdout) {
  *val_fraction = 0;
  if (val && holdout > 0) {
    fprintf(stderr, "synco %s: --holdout %d holds out part of --train: give it without --val\n", cmd, holdout);
    return 2;
  }
  if (!*val_split) return 0;
  char *end = NULL;
  const double f = strtod(*val_split, &end);
  if (end == *val_split || *end) { /* a name: the split of --val */
    if (val) return 0;
    fprintf(stderr, "synco %s: --val-split %s: no --val to take that split of; a fraction of --train to hold out is a "
                    "number between 0 and 1 (e.g. 0.1)\n", cmd, *val_split);
    return 2;
  }
  if (!(f > 0 && f < 1)) {
    fprintf(stderr, "synco %s: --val-split %s: a fraction of --train is between 0 and 1 (e.g. 0.1)\n", cmd, *val_split);
    return 2;
  }
  if (val || holdout > 0) {
    fprintf(stderr, "synco %s: --val-split %s holds out part of --train: give it without %s\n", cmd, *val_split,
            val ? "--val" : "--holdout");
    return 2;
  }
  *val_fraction = f;
  *val_split = NULL;
  return 0;
}

/* The identity (st_dev, st_ino) of every file of an ImageFolder, sorted; NULL when ds is another format. */
typedef struct {
  unsigned long long dev, ino;
} file_id;

static int cmp_file_id(const void *a, const void *b) {
  const file_id *x = a, *y = b;
  return x->dev != y->dev ? (x->dev < y->dev ? -1 : 1) : x->ino != y->ino ? (x->ino < y->ino ? -1 : 1) : 0;
}

static int file_id_of(const synco_dataset *ds, size_t i, file_id *id) {
  char buf[64];
  struct stat st;
  if (stat(synco_dataset_item_name(ds, i, buf, sizeof buf), &st) != 0) return 0;
  *id = (file_id){(unsigned long long)st.st_dev, (unsigned long long)st.st_ino};
  return 1;
}

size_t synco_eval_overlap(const synco_dataset *a, const char *a_path, const char *a_split, const synco_dataset *b,
                          const char *b_path, const char *b_split) {
  const char *as = a_split ? a_split : "train", *bs = b_split ? b_split : "train";
  const size_t na = synco_dataset_size(a), nb = synco_dataset_size(b);
  const int folders = !strcmp(synco_dataset_format(a), "imagefolder") && !strcmp(synco_dataset_format(b), "imagefolder");
  if (!folders) return synco_cli_same_file(a_path, b_path) && !strcmp(as, bs) ? nb : 0;
  file_id *ids = malloc((na ? na : 1) * sizeof *ids), id;
  if (!ids) return 0;
  size_t n = 0, hits = 0;
  for (size_t i = 0; i < na; i++) n += file_id_of(a, i, &ids[n]);
  qsort(ids, n, sizeof *ids, cmp_file_id);
  for (size_t i = 0; i < nb; i++) hits += file_id_of(b, i, &id) && bsearch(&id, ids, n, sizeof *ids, cmp_file_id);
  free(ids);
  return hits;
}

synco_status synco_eval_split_open(synco_eval_split *s, const char *train, const char *train_split, const char *val,
                                   const char *val_split, int holdout, double val_fraction, uint64_t seed,
                                   int skip_bad) {
  memset(s, 0, sizeof *s);
  synco_status st = synco_eval_data_open(&s->train, train, train_split, skip_bad, 1, 0);
  if (!st && s->train.classes == 1)
    fprintf(stderr, "synco %s: warning: %s has 1 class: every image is given it, so the accuracy is 100%% by "
                    "construction\n", synco_cli_command ? synco_cli_command : "eval", train);
  /* --val is held-out images: the test split where its format holds one (a CIFAR-10 or STL-10 folder, test/ or
   * val/ of an ImageFolder), else the whole of it; --val-split NAME chooses */
  const char *vs = val_split ? val_split : "test";
  if (!st && val) st = synco_eval_data_open(&s->val, val, vs, skip_bad, 1, !val_split);
  if (!st && val) st = synco_dataset_check_same_classes(s->train.ds, train, s->val.ds, val);
  if (!st && val) {
    const size_t same = synco_eval_overlap(s->train.ds, train, train_split, s->val.ds, val, vs);
    if (same)
      fprintf(stderr, "synco %s: warning: %zu of the %zu --val images are --train images (%s): the accuracy is on images "
                      "the classifier has seen; give --val-split F (a held-out fraction of --train) or --holdout N "
                      "instead of --val\n", synco_cli_command ? synco_cli_command : "eval", same, s->val.n, same == s->val.n ? "the same images" : "the same files");
    st = iota(&s->tr_idx, s->train.n);
    s->n_tr = s->train.n;
    if (!st) st = iota(&s->va_idx, s->val.n);
    s->n_va = s->val.n;
  } else if (!st) {
    if (holdout <= 0 && !(val_fraction > 0))
      st = synco_fail(SYNCO_ERR_ARG, "give --val PATH, --val-split F (a fraction of --train held out, e.g. 0.1) or "
                                     "--holdout N (images per class held out of --train)");
    else if (holdout > 0)
      st = synco_split_last_per_class(&s->tr_idx, &s->n_tr, &s->va_idx, &s->n_va, s->train.labels, s->train.n,
                                      s->train.classes, holdout);
    else
      st = held_out_fraction(s, val_fraction, seed);
    if (!st && s->n_tr == 0)
      st = holdout > 0 ? synco_fail(SYNCO_ERR_ARG, "--holdout %d leaves no training images", holdout)
                       : synco_fail(SYNCO_ERR_ARG, "--val-split %g leaves no training images", val_fraction);
  }
  if (st) synco_eval_split_close(s);
  return st;
}

void synco_eval_split_close(synco_eval_split *s) {
  synco_eval_data_close(&s->train);
  if (s->val.ds) synco_eval_data_close(&s->val);
  free(s->tr_idx);
  free(s->va_idx);
  memset(s, 0, sizeof *s);
}

const synco_dataset *synco_eval_split_val_ds(const synco_eval_split *s) { return s->val.ds ? s->val.ds : s->train.ds; }

synco_aug_config synco_eval_aug(int image_size, synco_aug_kind kind) {
  synco_aug_config a;
  memset(&a, 0, sizeof a);
  a.kind = kind;
  a.size = image_size;
  synco_cli_norm_stats(image_size, a.mean, a.std);
  return a;
}

synco_status synco_eval_encode(float **feats, synco_encoder *enc, const synco_dataset *ds, const uint32_t *idx,
                               size_t n, const synco_aug_config *aug, uint64_t seed, int epoch, int use_head,
                               const char *what, int quiet) {
  const int d = use_head ? synco_encoder_out_dim(enc) : synco_encoder_feature_dim(enc);
  *feats = synco_malloc((n ? n : 1) * (size_t)d * sizeof(float));
  if (!*feats) return SYNCO_ERR_NOMEM;
  synco_batcher *b = NULL;
  synco_status s = synco_batcher_create(&b, ds, aug);
  if (s) return s;
  synco_progress p;
  const int B = synco_encoder_batch(enc);
  if (!quiet) synco_progress_begin(&p, what, (long)((n + B - 1) / B), B, 20);
  s = synco_encode_subset(*feats, NULL, enc, b, idx, n, seed, epoch, SYNCO_RNG_EVAL, use_head, quiet ? NULL : &p);
  if (!quiet) synco_progress_end(&p, NULL);
  synco_batcher_free(b);
  if (s) {
    free(*feats);
    *feats = NULL;
  }
  return s;
}

void synco_eval_print_json(cJSON *obj) {
  char *s = cJSON_PrintUnformatted(obj);
  if (s) printf("%s\n", s);
  fflush(stdout);
  free(s);
  cJSON_Delete(obj);
}

static double num_or_nan(cJSON *o, const char *k) {
  cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* One growing column of numbers per field a row kind carries. */
typedef struct {
  double *v;
  int n, cap;
} column;

static int column_push(column *c, double x) {
  if (c->n == c->cap) {
    const int cap = c->cap ? 2 * c->cap : 64;
    double *p = realloc(c->v, (size_t)cap * sizeof(double));
    if (!p) return 0;
    c->v = p, c->cap = cap;
  }
  c->v[c->n++] = x;
  return 1;
}

/* Pushes the fields keys[0..n) of row o (NaN where absent) onto cols[0..n). */
static int push_row(cJSON *o, const char *const *keys, column *cols, int n) {
  for (int i = 0; i < n; i++)
    if (!column_push(&cols[i], num_or_nan(o, keys[i]))) return 0;
  return 1;
}

/* The row's kind: its "kind", or for a log of an earlier version (no kinds) its shape: epoch rows had
 * "epoch_time_s", kNN values rode on them or on the row of epoch 0, every other row with a "step" was a step row.
 * Returns a bit set: 1 step, 2 epoch, 4 knn. */
static int row_kinds(cJSON *o) {
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
  if (cJSON_IsString(k)) return !strcmp(k->valuestring, "step") ? 1 : !strcmp(k->valuestring, "epoch") ? 2 : !strcmp(k->valuestring, "knn") ? 4 : 0;
  const int knn = cJSON_HasObjectItem(o, "knn_top1") ? 4 : 0;
  if (cJSON_HasObjectItem(o, "epoch_time_s")) return 2 | knn;
  if (knn) return knn;
  return cJSON_HasObjectItem(o, "step") ? 1 : 0;
}

/* The epoch axis of the step rows. Dividing a step by the steps per epoch holds only while every epoch has as many
 * steps: a run resumed on other data (or with another batch size) changes that mid-run, and its steps then land on
 * the wrong epochs (epochs 1-3 of 6 steps and 4-5 of 1 step were drawn from 6 to 20 instead of 1 to 5). So the
 * global steps at which the epochs ended are gathered while the log is read, and each step row is placed
 * piecewise linearly between those (epoch, step) points. */
typedef struct {
  column epoch, step;    /* the end points, from (0, 0) (training starts at step 0), increasing in both */
  double cur_e, cur_max; /* the epoch of the latest step rows, and their largest step */
} epoch_ends;

/* Appends an end point when it lies after the last in both epoch and step (a log that repeats epochs keeps their
 * first ends, so the map stays increasing); 0 out of memory. */
static int end_push(epoch_ends *m, double epoch, double step) {
  const int n = m->epoch.n;
  if (!isfinite(epoch) || !isfinite(step) || (n && (epoch <= m->epoch.v[n - 1] || step <= m->step.v[n - 1])))
    return 1;
  return column_push(&m->epoch, epoch) && column_push(&m->step, step);
}

/* The end of epoch row o's epoch E: an earlier version's "step"; else the last step row of epoch E (one is written
 * at each epoch's end); else the end of epoch E - 1 plus the row's "steps". "steps" also gives where epoch E began,
 * so a log whose first rows are gone still maps. 0 out of memory. */
static int end_of_epoch_row(epoch_ends *m, cJSON *o) {
  const double e = num_or_nan(o, "epoch"), steps = num_or_nan(o, "steps"), old = num_or_nan(o, "step");
  const int n = m->epoch.n;
  double end = isfinite(old) ? old : e == m->cur_e ? m->cur_max : NAN;
  if (!isfinite(end) && steps > 0 && n && m->epoch.v[n - 1] == e - 1) end = m->step.v[n - 1] + steps;
  return (!(steps > 0) || end_push(m, e - 1, end - steps)) && end_push(m, e, end);
}

/* Where global step s of a step row of epoch e lies on the epoch axis (m holds two ends at least): so that the row
 * that ends epoch E is at E. Before the first end or past the last, the nearest segment's rate goes on, kept inside
 * the row's epoch (the unfinished epoch's length is not logged yet). */
static double epoch_at(const epoch_ends *m, double s, double e) {
  if (!isfinite(s)) return s; /* a row without a step stays off the curve */
  const double *E = m->epoch.v, *S = m->step.v;
  int lo = 1, hi = m->epoch.n - 1; /* the first end at or after s, within [1, n - 1] */
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (S[mid] < s) lo = mid + 1;
    else hi = mid;
  }
  const double x = s == S[lo] ? E[lo] : E[lo - 1] + (s - S[lo - 1]) / (S[lo] - S[lo - 1]) * (E[lo] - E[lo - 1]);
  return e >= 1 ? fmin(fmax(x, e - 1), e) : x;
}

synco_status synco_runlog_read(synco_runlog *log, const char *path) {
  memset(log, 0, sizeof *log);
  log->switch_epoch = NAN;
  FILE *f = synco_fopen_read(path, NULL, NULL); /* a FIFO given as a log would hang the read */
  if (!f) return SYNCO_ERR_IO;
  static const char *const step_keys[] = {"step", "loss", "acc", "loss_moco", "acc_moco", "probe_acc", "lr", "images_per_s",
                                          "epoch"},
                           *const epoch_keys[] = {"epoch", "loss", "acc", "steps", "step"},
                           *const knn_keys[] = {"epoch", "knn_top1"};
  column sc[9] = {{0}}, ec[5] = {{0}}, kc[2] = {{0}};
  epoch_ends ends = {.cur_e = NAN, .cur_max = NAN};
  char *line = NULL;
  size_t cap_line = 0;
  int lineno = 0;
  synco_status s = end_push(&ends, 0, 0) ? SYNCO_OK : synco_fail(SYNCO_ERR_NOMEM, "out of memory reading %s", path);
  ssize_t len;
  int cut = 0; /* the number of a last line cut short (no newline: a run killed while writing it), skipped */
  while ((len = getline(&line, &cap_line, f)) >= 0 && !s) {
    lineno++;
    if (strspn(line, " \t\r\n") == strlen(line)) continue;
    cJSON *o = cJSON_Parse(line);
    if (!o || !cJSON_IsObject(o)) {
      cJSON_Delete(o);
      if (len > 0 && line[len - 1] != '\n' && (sc[0].n || ec[0].n || kc[0].n)) {
        cut = lineno;
        continue;
      }
      s = synco_fail(SYNCO_ERR_FORMAT, "%s:%d: not a JSON object", path, lineno);
      break;
    }
    const int kinds = row_kinds(o);
    int ok = (!(kinds & 1) || push_row(o, step_keys, sc, 9)) && (!(kinds & 2) || push_row(o, epoch_keys, ec, 5)) &&
             (!(kinds & 4) || push_row(o, knn_keys, kc, 2)) && (!(kinds & 2) || end_of_epoch_row(&ends, o));
    /* the synthetic negatives switch on at the start of the epoch of the first step row that has them */
    const double syn = num_or_nan(o, "synthetic"), ep = num_or_nan(o, "epoch");
    if ((kinds & 1) && syn > 0 && ep >= 1 && isnan(log->switch_epoch)) log->switch_epoch = ep - 1;
    if (kinds & 1) { /* the latest step rows' epoch and largest step, for the end of that epoch */
      const double step = num_or_nan(o, "step");
      if (ep != ends.cur_e) ends.cur_e = ep, ends.cur_max = step;
      else if (step > ends.cur_max) ends.cur_max = step;
    }
    cJSON_Delete(o);
    if (!ok) s = synco_fail(SYNCO_ERR_NOMEM, "out of memory reading %s", path);
  }
  free(line);
  fclose(f);
  log->n = sc[0].n, log->ne = ec[0].n, log->nk = kc[0].n;
  double *const steps = sc[0].v;
  double **const sdst[] = {&log->loss, &log->acc, &log->loss_moco, &log->acc_moco, &log->probe, &log->lr, &log->ips};
  for (int i = 0; i < 7; i++) *sdst[i] = sc[i + 1].v;
  log->ex = ec[0].v, log->eloss = ec[1].v, log->eacc = ec[2].v;
  log->kx = kc[0].v, log->knn = kc[1].v;
  /* Steps per epoch: the last epoch row's "steps" (or, in logs of earlier versions, its step / epoch). Without
   * one the step rows stay on the step axis. With one they go on the epoch axis by the epochs' ends (epoch_ends);
   * only where no end could be placed (a log whose first rows are gone, with no epoch row after step rows of its
   * epoch) at step / steps per epoch. */
  double spe = NAN;
  for (int i = 0; i < log->ne; i++) {
    const double v = ec[3].v[i] > 0 ? ec[3].v[i] : ec[4].v[i] > 0 && log->ex[i] > 0 ? ec[4].v[i] / log->ex[i] : NAN;
    if (v > 0) spe = v;
  }
  free(ec[3].v), free(ec[4].v);
  log->by_step = !(spe > 0);
  log->x = steps;
  const double *const step_epoch = sc[8].v;
  for (int i = 0; i < log->n; i++)
    log->x[i] = log->by_step ? steps[i] : ends.epoch.n > 1 ? epoch_at(&ends, steps[i], step_epoch[i]) : steps[i] / spe;
  free(sc[8].v), free(ends.epoch.v), free(ends.step.v);
  if (!s && log->n == 0 && log->ne == 0 && log->nk == 0) s = synco_fail(SYNCO_ERR_FORMAT, "%s: no log lines", path);
  if (!s && cut)
    fprintf(stderr, "synco %s: warning: %s:%d: its last line is cut short (the run stopped while writing it?): read "
                    "without it\n", synco_cli_command ? synco_cli_command : "plot", path, cut);
  if (s) synco_runlog_free(log);
  return s;
}

void synco_runlog_free(synco_runlog *log) {
  double *a[] = {log->x, log->loss, log->acc, log->loss_moco, log->acc_moco, log->probe, log->lr, log->ips,
                 log->ex, log->eloss, log->eacc, log->kx, log->knn};
  for (size_t i = 0; i < sizeof a / sizeof *a; i++) free(a[i]);
  memset(log, 0, sizeof *log);
}

synco_status synco_eval_split_labels(const synco_eval_split *s, int **ytr, int **yva) {
  if (ytr) {
    *ytr = synco_malloc((s->n_tr ? s->n_tr : 1) * sizeof(int));
    if (!*ytr) return SYNCO_ERR_NOMEM;
    for (size_t i = 0; i < s->n_tr; i++) (*ytr)[i] = s->train.labels[s->tr_idx[i]];
  }
  *yva = synco_malloc((s->n_va ? s->n_va : 1) * sizeof(int));
  if (!*yva) return SYNCO_ERR_NOMEM;
  const int *lva = s->val.ds ? s->val.labels : s->train.labels;
  for (size_t i = 0; i < s->n_va; i++) (*yva)[i] = lva[s->va_idx[i]];
  return SYNCO_OK;
}
