/* synco pretrain: self-supervised pretraining with SynCo / MoCHI / MoCo-v2.
 * Flags follow the authors' main_synco.py. The run directory gets config.json (every setting, resolved),
 * log.jsonl (one object per logging interval and per epoch), last.safetensors and checkpoint_NNNN.safetensors.
 * A run directory is never damaged: it is touched only after every check has passed, under a lock, and a fresh
 * run does not replace a run without --force; --resume takes the run's settings from its checkpoint.
 * With no --data it trains a small configuration on the dataset bundled under data/ and reports the kNN
 * accuracy of the encoder before and after. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend/registry.h"
#include "base/progress.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "data/data.h"
#include "optim/schedule.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "cli/memplan.h"
#include "ssl/moco.h"


typedef struct {
  const char *arch, *data, *val, *out, *resume, *init, *method, *recipe, *split, *backend, *precision;
  int epochs, batch, moco_dim, moco_k, mlp, aug_plus, cos, n_hard, n[6], warmup_epochs, cifar_stem, width,
      image_size, bn_splits, symmetric, threads, workers, save_every, knn_every, knn_k, print_freq, blur, skip_bad,
      stop_epoch;
  long long seed;
  double lr, wd, momentum, moco_m, moco_t, sigma, delta, eta, knn_t;
  int lr_warmup_epochs;
  synco_intlist schedule;
  int memory_check;
} pretrain_opts;

static const char SUMMARY[] =
    "Self-supervised pretraining of a ResNet encoder with SynCo (MoCo-v2 + six kinds of synthetic hard negatives),\n"
    "MoCHI or plain MoCo-v2. Defaults are the authors' ImageNet recipe; --recipe cifar switches the defaults of the\n"
    "flags you do not give to MoCo's CIFAR recipe. With no --data: trains a small ResNet-18 on the images bundled\n"
    "under data/ and prints the kNN accuracy of the untrained and the trained encoder.";

static void apply_method(pretrain_opts *o, synco_arg *args) {
  static const char *names[6] = {"n1", "n2", "n3", "n4", "n5", "n6"};
  int preset[6];
  if (!strcmp(o->method, "synco")) {
    const int d[6] = {256, 256, 256, 64, 64, 64};
    memcpy(preset, d, sizeof preset);
  } else if (!strcmp(o->method, "mochi")) {
    const int d[6] = {256, 0, 256, 0, 0, 0}; /* MoCHI: s' (query mixing) = type 1, s (pair mixing) = type 3 */
    memcpy(preset, d, sizeof preset);
  } else {
    memset(preset, 0, sizeof preset);
  }
  for (int t = 0; t < 6; t++)
    if (!synco_args_seen(args, names[t])) o->n[t] = preset[t];
}

/* Defaults of flags the user did not give, for MoCo's CIFAR recipe. */
static void apply_cifar_recipe(pretrain_opts *o, synco_arg *args) {
#define DEF(flag, field, value) if (!synco_args_seen(args, flag)) o->field = value
  DEF("arch", arch, "resnet18");
  DEF("cifar-stem", cifar_stem, 1);
  DEF("image-size", image_size, 32);
  DEF("batch-size", batch, 512);
  DEF("lr", lr, 0.06);
  DEF("wd", wd, 5e-4);
  DEF("moco-k", moco_k, 4096);
  DEF("moco-m", moco_m, 0.99);
  DEF("moco-t", moco_t, 0.1);
  DEF("bn-splits", bn_splits, 8);
  DEF("blur", blur, 0);
#undef DEF
}

/* The bundled small job: ResNet-18 at width 16 with the CIFAR stem, twelve epochs on the 5,000 bundled images
 * (synthetic negatives from the third), kNN before and after: under four minutes on 2 cores. */
static void apply_demo(pretrain_opts *o, synco_arg *args) {
#define DEF(flag, field, value) if (!synco_args_seen(args, flag)) o->field = value
  DEF("data", data, synco_cli_bundled_data("train"));
  DEF("val", val, synco_cli_bundled_data("val"));
  DEF("width", width, 16);
  DEF("batch-size", batch, 128);
  DEF("moco-k", moco_k, 4096);
  DEF("epochs", epochs, 12);
  DEF("warmup-epochs", warmup_epochs, 2);
  DEF("knn-every", knn_every, o->epochs);
  DEF("save-every", save_every, 0);
  DEF("out", out, "runs/demo");
#undef DEF
}

static int parse_arch(const char *arch, int *depth) {
  if (!strcmp(arch, "resnet18")) *depth = 18;
  else if (!strcmp(arch, "resnet34")) *depth = 34;
  else if (!strcmp(arch, "resnet50")) *depth = 50;
  else return 0;
  return 1;
}

/* One setting of config.json: its key, its flag, its type (i int, d double, s string, S string or null) and where
 * it lives in pretrain_opts. `shaped` settings fix the model or the queue of a checkpoint: a resumed run takes
 * them from the checkpoint and refuses another value. The batch size is not one: a run may resume with another
 * (a divisor of K), and the queue pointer continues where the checkpoint left it. */
typedef struct {
  const char *key, *flag;
  char type;
  size_t off;
  int shaped;
} cfg_field;

#define F(key, flag, type, field, shaped) {key, flag, type, offsetof(pretrain_opts, field), shaped}
static const cfg_field k_fields[] = {
    F("arch", "arch", 's', arch, 1), F("width", "width", 'i', width, 1), F("cifar_stem", "cifar-stem", 'i', cifar_stem, 1),
    F("image_size", "image-size", 'i', image_size, 0), F("data", "data", 's', data, 0), F("val", "val", 'S', val, 0),
    F("split", "split", 's', split, 0), F("skip_bad", "skip-bad", 'i', skip_bad, 0), F("epochs", "epochs", 'i', epochs, 0),
    F("batch_size", "batch-size", 'i', batch, 0), F("lr", "lr", 'd', lr, 0), F("wd", "wd", 'd', wd, 0),
    F("momentum", "momentum", 'd', momentum, 0), F("cos", "cos", 'i', cos, 0),
    F("lr_warmup_epochs", "lr-warmup-epochs", 'i', lr_warmup_epochs, 0), F("moco_dim", "moco-dim", 'i', moco_dim, 1),
    F("moco_k", "moco-k", 'i', moco_k, 1), F("moco_m", "moco-m", 'd', moco_m, 0), F("moco_t", "moco-t", 'd', moco_t, 0),
    F("mlp", "mlp", 'i', mlp, 1), F("aug_plus", "aug-plus", 'i', aug_plus, 0), F("blur", "blur", 'i', blur, 0),
    F("bn_splits", "bn-splits", 'i', bn_splits, 0), F("symmetric", "symmetric", 'i', symmetric, 0),
    F("method", "method", 's', method, 0), F("n_hard", "n-hard", 'i', n_hard, 0), F("n1", "n1", 'i', n[0], 0),
    F("n2", "n2", 'i', n[1], 0), F("n3", "n3", 'i', n[2], 0), F("n4", "n4", 'i', n[3], 0), F("n5", "n5", 'i', n[4], 0),
    F("n6", "n6", 'i', n[5], 0), F("sigma", "sigma", 'd', sigma, 0), F("delta", "delta", 'd', delta, 0),
    F("eta", "eta", 'd', eta, 0), F("warmup_epochs", "warmup-epochs", 'i', warmup_epochs, 0),
    F("seed", "seed", 'l', seed, 1), F("threads", "threads", 'i', threads, -1), F("workers", "workers", 'i', workers, -1),
    F("backend", "backend", 's', backend, -1), F("knn_every", "knn-every", 'i', knn_every, 0),
    F("knn_k", "knn-k", 'i', knn_k, 0), F("knn_t", "knn-t", 'd', knn_t, 0), F("save_every", "save-every", 'i', save_every, 0),
};
#undef F

/* config.json and the checkpoint's "synco.config": every setting, resolved (shaped -1: the machine's, not the
 * run's; written, not taken back on resume). */
static char *config_json(const pretrain_opts *o) {
  cJSON *j = cJSON_CreateObject();
  for (size_t i = 0; j && i < sizeof k_fields / sizeof k_fields[0]; i++) {
    const cfg_field *f = &k_fields[i];
    const char *p = (const char *)o + f->off;
    cJSON *v = NULL;
    char num[32];
    switch (f->type) {
      case 'i': v = cJSON_CreateNumber(*(const int *)p); break;
      case 'd': v = cJSON_CreateNumber(*(const double *)p); break;
      case 'l': /* exact beyond 2^53 (a double would round it) */
        snprintf(num, sizeof num, "%lld", *(const long long *)p);
        v = cJSON_CreateRaw(num);
        break;
      case 's': case 'S': {
        const char *str = *(const char *const *)p;
        v = str ? cJSON_CreateString(str) : cJSON_CreateNull();
        break;
      }
    }
    if (!v || !cJSON_AddItemToObject(j, f->key, v)) {
      cJSON_Delete(v);
      cJSON_Delete(j);
      return NULL;
    }
    if (!strcmp(f->key, "cos")) { /* the schedule's milestones follow cos, as before */
      cJSON *a = cJSON_CreateIntArray(o->schedule.v, o->schedule.n);
      if (!a || !cJSON_AddItemToObject(j, "schedule", a)) {
        cJSON_Delete(a);
        cJSON_Delete(j);
        return NULL;
      }
    }
  }
  if (j && !cJSON_AddStringToObject(j, "version", synco_version())) {
    cJSON_Delete(j);
    return NULL;
  }
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  return s;
}

/* --resume: the checkpoint to read, and the run directory (--out, or the checkpoint's folder). "" (a bare
 * --resume) means --out's last.safetensors; a folder means its last.safetensors. Nothing is opened for writing. */
static synco_status resolve_resume(pretrain_opts *o, char *ckpt, size_t cap, char *dir, size_t dcap) {
  if (!o->resume[0]) {
    if (!o->out) return synco_fail(SYNCO_ERR_ARG, "--resume without a checkpoint needs --out DIR (the run to continue)");
    snprintf(ckpt, cap, "%s", o->out);
  } else if (snprintf(ckpt, cap, "%s", o->resume) >= (int)cap) {
    return synco_fail(SYNCO_ERR_ARG, "--resume %s: path too long", o->resume);
  }
  struct stat st;
  if (stat(ckpt, &st) != 0) return synco_fail(SYNCO_ERR_IO, "--resume %s: cannot open: %s", ckpt, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    if (!o->out) {
      snprintf(dir, dcap, "%s", ckpt);
      o->out = dir;
    }
    const size_t n = strlen(ckpt);
    if (snprintf(ckpt + n, cap - n, "%slast.safetensors", n && ckpt[n - 1] == '/' ? "" : "/") >= (int)(cap - n))
      return synco_fail(SYNCO_ERR_ARG, "--resume %s: path too long", o->resume);
    if (stat(ckpt, &st) != 0) {
      ckpt[n] = 0;
      return synco_fail(SYNCO_ERR_IO, "--resume %s: the folder holds no last.safetensors to continue from", ckpt);
    }
  } else if (!o->out) { /* a checkpoint file: its folder is the run directory */
    snprintf(dir, dcap, "%s", ckpt);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, dcap, ".");
    o->out = dir;
  }
  if (!S_ISREG(st.st_mode)) return synco_fail(SYNCO_ERR_IO, "--resume %s: not a regular file", ckpt);
  return SYNCO_OK;
}

/* Takes the settings of a resumed run from the checkpoint's "synco.config", except those given on the command
 * line; a given value that cannot work with the checkpoint (another width, K, batch, ...) is refused. The strings
 * point into *json, which the caller frees after the run. A checkpoint without a config changes nothing. */
static synco_status resume_config(pretrain_opts *o, const synco_arg *args, const char *ckpt, cJSON **json) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, ckpt));
  const char *text = synco_st_meta(&st, "synco.config"), *seed = synco_st_meta(&st, "synco.seed");
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  char seedbuf[32] = "";
  if (seed) snprintf(seedbuf, sizeof seedbuf, "%s", seed);
  synco_st_close(&st);
  if (text && !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return synco_fail(SYNCO_ERR_FORMAT, "%s: its synco.config metadata is not a JSON object", ckpt);
  }
  *json = j;
  for (size_t i = 0; j && i < sizeof k_fields / sizeof k_fields[0]; i++) {
    const cfg_field *f = &k_fields[i];
    if (f->shaped < 0) continue;
    const int seen = synco_args_seen(args, f->flag);
    /* a --method given anew brings its own --n1..--n6 presets (apply_method) */
    if (!seen && f->key[0] == 'n' && f->key[1] >= '1' && f->key[1] <= '6' && !f->key[2] && synco_args_seen(args, "method"))
      continue;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f->key);
    if (!v) continue;
    char *p = (char *)o + f->off;
    char was[300], given[300];
    if (f->type == 'i' || f->type == 'd' || f->type == 'l') {
      if (!cJSON_IsNumber(v)) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is not a number", ckpt, f->key);
      const double x = v->valuedouble;
      long long seed_val = (long long)x;
      if (f->type == 'l' && seedbuf[0]) seed_val = (long long)strtoull(seedbuf, NULL, 10);
      if (f->type != 'd' && (x != floor(x) || fabs(x) > 9.2e18))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s %g is not an integer", ckpt, f->key, x);
      if (f->type == 'i' && (x < INT_MIN || x > INT_MAX))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s %g is out of range", ckpt, f->key, x);
      if (!seen) {
        if (f->type == 'i') *(int *)p = (int)x;
        else if (f->type == 'd') *(double *)p = x;
        else *(long long *)p = seed_val;
        continue;
      }
      const int same = f->type == 'i' ? *(int *)p == (int)x : f->type == 'd' ? *(double *)p == x : *(long long *)p == seed_val;
      if (same || !f->shaped) continue;
      if (f->type == 'i') snprintf(given, sizeof given, "%d", *(int *)p), snprintf(was, sizeof was, "%d", (int)x);
      else snprintf(given, sizeof given, "%lld", *(long long *)p), snprintf(was, sizeof was, "%lld", seed_val);
    } else {
      if (!cJSON_IsString(v) && !(f->type == 'S' && cJSON_IsNull(v)))
        return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: %s is not a string", ckpt, f->key);
      const char *x = cJSON_IsString(v) ? v->valuestring : NULL;
      if (!seen) {
        *(const char **)p = x;
        continue;
      }
      const char *cur = *(const char **)p;
      if ((cur && x && !strcmp(cur, x)) || (!cur && !x) || !f->shaped) continue;
      snprintf(given, sizeof given, "%s", cur ? cur : "none");
      snprintf(was, sizeof was, "%s", x ? x : "none");
    }
    return synco_fail(SYNCO_ERR_ARG,
                      "--%s %s does not fit %s, trained with %s %s (its weights and queue are shaped by it): drop "
                      "--%s to continue that run, or start a new one",
                      f->flag, given, ckpt, f->key, was, f->flag);
  }
  if (!j && seedbuf[0] && !synco_args_seen(args, "seed")) o->seed = (long long)strtoull(seedbuf, NULL, 10);
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(j, "schedule");
  if (!synco_args_seen(args, "schedule") && cJSON_IsArray(sch)) {
    const int n = cJSON_GetArraySize(sch);
    if (n > 16) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: schedule has %d milestones (at most 16)", ckpt, n);
    for (int k = 0; k < n; k++) {
      const cJSON *e = cJSON_GetArrayItem(sch, k);
      if (!cJSON_IsNumber(e)) return synco_fail(SYNCO_ERR_FORMAT, "%s: synco.config: schedule is not a list of epochs", ckpt);
      o->schedule.v[k] = e->valueint;
    }
    o->schedule.n = n;
  }
  return SYNCO_OK;
}

typedef struct {
  synco_dataset *train_eval, *val;  /* kNN monitor datasets (train_eval = the training images, unaugmented) */
  float *ftrain, *fval;
  int *ltrain, *lval;
} knn_monitor;

static synco_status knn_eval(knn_monitor *km, synco_encoder *enc, const pretrain_opts *o, const float *mean,
                             const float *std, synco_knn_result *res) {
  const int d = synco_encoder_feature_dim(enc);
  const size_t nt = synco_dataset_size(km->train_eval), nv = synco_dataset_size(km->val);
  SYNCO_TRY(synco_features_compute(km->ftrain, km->ltrain, enc, km->train_eval, mean, std, o->workers));
  SYNCO_TRY(synco_features_compute(km->fval, km->lval, enc, km->val, mean, std, o->workers));
  synco_rows_l2_normalize(km->ftrain, nt, d);
  synco_rows_l2_normalize(km->fval, nv, d);
  synco_knn_config kc = synco_knn_default_config(synco_dataset_num_classes(km->train_eval));
  kc.k = o->knn_k;
  kc.t = o->knn_t;
  return synco_knn_classify(res, NULL, NULL, km->ftrain, km->ltrain, nt, km->fval, km->lval, nv, d, &kc);
}

/* The parsed "synco.config" of a resumed checkpoint: o's strings point into it for the whole command. */
static cJSON *resume_cfg;
/* The crop size follows the data and the stem unless --image-size is given: 32 with the CIFAR stem, else the
 * images' own size when they are small (224 px crops of them would upscale more than 2x). Warns when a run
 * upscales its images more than 2x. `first` is the dataset's first image. */
static void choose_image_size(pretrain_opts *o, synco_arg *args, const synco_image *first) {
  const int side = first->w < first->h ? first->w : first->h;
  if (!synco_args_seen(args, "image-size")) {
    if (o->cifar_stem) o->image_size = 32;
    else if (side >= 8 && 2 * side < o->image_size) o->image_size = side;
  }
  if (side > 0 && o->image_size > 2 * side)
    fprintf(stderr, "synco pretrain: upscaling %dx%d images to %d px crops; pass --image-size %d (and --cifar-stem) for "
                    "small images\n", first->w, first->h, o->image_size, side);
}

/* Refuses (returns 2) a run whose planned memory exceeds what the machine has, before anything big exists. */
static int check_memory(const pretrain_opts *o, int depth, const synco_image *first) {
  if (!o->memory_check) return 0;
  synco_moco_config mc = {0};
  mc.enc = (synco_encoder_config){.depth = depth, .width = o->width, .cifar_stem = o->cifar_stem, .head = 1,
                                  .mlp = o->mlp, .dim = o->moco_dim, .bn_splits = o->bn_splits};
  mc.image_size = o->image_size;
  mc.batch = o->batch;
  mc.K = o->moco_k;
  mc.neg.n_hard = o->n_hard;
  for (int t = 0; t < 6; t++) mc.neg.n[t] = o->n[t];
  /* the loader's slots: max(prefetch 3, workers) + 1 (synco_loader_create) */
  const int workers = o->workers > 0 ? o->workers : o->threads;
  const int slots = (workers > 3 ? workers : 3) + 1;
  synco_aug_config aug = {.kind = o->aug_plus ? SYNCO_AUG_MOCO_V2 : SYNCO_AUG_MOCO_V1, .size = o->image_size, .blur = o->blur};
  const size_t scratch = first->w > 0 ? synco_augment_scratch_bytes(first->w, first->h, &aug) : 0;
  synco_mem_plan p;
  if (synco_mem_plan_moco(&mc, slots, workers, scratch, &p) != SYNCO_OK) return 0; /* creation reports it */
  return synco_mem_refuse("pretrain", &p, o->batch, o->image_size,
                          "Use a smaller -b, --image-size, or --recipe cifar (or --no-memory-check).");
}

int synco_cmd_pretrain(int argc, char **argv) {
  int force = 0;
  pretrain_opts o = {
      .arch = "resnet50", .data = NULL, .val = NULL, .out = NULL, .resume = NULL, .method = "synco",
      .recipe = "imagenet", .split = "train", .backend = "auto", .precision = "fp32",
      .epochs = 200, .batch = 256, .moco_dim = 128, .moco_k = 65536, .mlp = 1, .aug_plus = 1, .cos = 1,
      .n_hard = 1024, .n = {256, 256, 256, 64, 64, 64}, .warmup_epochs = 10, .cifar_stem = 0, .width = 64,
      .image_size = 224, .bn_splits = 8, .symmetric = 0, .threads = 0, .workers = 2, .save_every = 10,
      .knn_every = 0, .knn_k = 200, .print_freq = 10, .blur = 1, .skip_bad = 0, .seed = 0,
      .lr = 0.03, .wd = 1e-4, .momentum = 0.9, .moco_m = 0.999, .moco_t = 0.2, .sigma = 0.01, .delta = 0.01,
      .eta = 0.01, .knn_t = 0.1, .lr_warmup_epochs = 0, .schedule = {0, {0}}, .memory_check = 1,
  };
  synco_arg args[] = {
      {"data", 0, SYNCO_ARG_STR, &o.data, "training images (ImageFolder, CIFAR, STL-10, idx); none = bundled data/"},
      {"val", 0, SYNCO_ARG_STR, &o.val, "labelled images for the kNN monitor (--knn-every)"},
      {"split", 0, SYNCO_ARG_STR, &o.split, "split of --data for formats holding several (train, test, unlabeled)"},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &o.skip_bad, "skip unreadable images of an ImageFolder (and count them)"},
      {"out", 0, SYNCO_ARG_STR, &o.out, "run directory (default runs/<date-time>)"},
      {"recipe", 0, SYNCO_ARG_STR, &o.recipe, "defaults for unset flags: imagenet (authors') or cifar (MoCo's CIFAR demo)"},
      {"arch", 'a', SYNCO_ARG_STR, &o.arch, "resnet18, resnet34 or resnet50"},
      {"width", 0, SYNCO_ARG_INT, &o.width, "base width of the ResNet (torchvision: 64)"},
      {"cifar-stem", 0, SYNCO_ARG_FLAG, &o.cifar_stem, "3x3 stride-1 first conv and no max-pool (small images)"},
      {"image-size", 0, SYNCO_ARG_INT, &o.image_size, "crop size of the augmented views (unset: 32 with --cifar-stem, the images' own size when they are small, else 224)"},
      {"epochs", 0, SYNCO_ARG_INT, &o.epochs, "number of epochs"},
      {"batch-size", 'b', SYNCO_ARG_INT, &o.batch, "images per step"},
      {"lr", 0, SYNCO_ARG_FLOAT, &o.lr, "initial learning rate"},
      {"wd", 0, SYNCO_ARG_FLOAT, &o.wd, "weight decay (all parameters)"},
      {"momentum", 0, SYNCO_ARG_FLOAT, &o.momentum, "SGD momentum"},
      {"cos", 0, SYNCO_ARG_FLAG, &o.cos, "cosine learning-rate schedule by epoch (--no-cos: step schedule)"},
      {"schedule", 0, SYNCO_ARG_INTLIST, &o.schedule, "with --no-cos: epochs at which lr is multiplied by 0.1"},
      {"lr-warmup-epochs", 0, SYNCO_ARG_INT, &o.lr_warmup_epochs, "linear learning-rate warm-up (epochs, per step)"},
      {"moco-dim", 0, SYNCO_ARG_INT, &o.moco_dim, "feature dimension of the projection head"},
      {"moco-k", 0, SYNCO_ARG_INT, &o.moco_k, "queue size (a multiple of the batch size)"},
      {"moco-m", 0, SYNCO_ARG_FLOAT, &o.moco_m, "momentum of the key encoder update"},
      {"moco-t", 0, SYNCO_ARG_FLOAT, &o.moco_t, "softmax temperature"},
      {"mlp", 0, SYNCO_ARG_FLAG, &o.mlp, "MLP projection head (MoCo-v2)"},
      {"aug-plus", 0, SYNCO_ARG_FLAG, &o.aug_plus, "MoCo-v2 augmentation (--no-aug-plus: MoCo-v1's)"},
      {"blur", 0, SYNCO_ARG_FLAG, &o.blur, "Gaussian blur in the augmentation (p 0.5)"},
      {"bn-splits", 0, SYNCO_ARG_INT, &o.bn_splits, "Split-BN groups on one process (1 = plain BN)"},
      {"symmetric", 0, SYNCO_ARG_FLAG, &o.symmetric, "symmetric loss (both views as queries)"},
      {"method", 0, SYNCO_ARG_STR, &o.method, "synco, mochi or moco: presets of --n1..--n6"},
      {"n-hard", 0, SYNCO_ARG_INT, &o.n_hard, "hardest queue negatives the synthetic ones are made from (unset: min(1024, --moco-k/4); unset --nK: at most this)"},
      {"n1", 0, SYNCO_ARG_INT, &o.n[0], "type 1, interpolated: a*q + (1-a)*n, a ~ U(0, 0.5)"},
      {"n2", 0, SYNCO_ARG_INT, &o.n[1], "type 2, extrapolated: q + b*(n - q), b ~ U(1, 1.5)"},
      {"n3", 0, SYNCO_ARG_INT, &o.n[2], "type 3, mixup: g*n_i + (1-g)*n_j, g ~ U(0, 1)"},
      {"n4", 0, SYNCO_ARG_INT, &o.n[3], "type 4, noise-injected: n + N(0, sigma^2)"},
      {"n5", 0, SYNCO_ARG_INT, &o.n[4], "type 5, perturbed: n + delta*q"},
      {"n6", 0, SYNCO_ARG_INT, &o.n[5], "type 6, adversarial: n + eta*sign(q)"},
      {"sigma", 0, SYNCO_ARG_FLOAT, &o.sigma, "noise level of type 4"},
      {"delta", 0, SYNCO_ARG_FLOAT, &o.delta, "step of type 5"},
      {"eta", 0, SYNCO_ARG_FLOAT, &o.eta, "step of type 6"},
      {"warmup-epochs", 0, SYNCO_ARG_INT, &o.warmup_epochs, "epochs without synthetic negatives"},
      {"seed", 0, SYNCO_ARG_INT64, &o.seed, "seed of every random stream"},
      {"resume", 0, SYNCO_ARG_STR, &o.resume, "continue a run: its folder or checkpoint (bare --resume: --out's run); settings come from the checkpoint"},
      {"force", 0, SYNCO_ARG_FLAG, &force, "start afresh in a run directory that holds a run (its run files are removed)"},
      {"init", 0, SYNCO_ARG_STR, &o.init, "start from torchvision-named weights (an export, a converted torchvision model)"},
      {"stop-epoch", 0, SYNCO_ARG_INT, &o.stop_epoch, "stop after this epoch, as if the job ended (resume later; 0 = run all)"},
      {"precision", 0, SYNCO_ARG_STR, &o.precision, "fp32 (bf16 needs a CPU with AVX512-BF16)"},
      {"threads", 0, SYNCO_ARG_INT, &o.threads, "compute threads (0 = all cores)"},
      {"workers", 'j', SYNCO_ARG_INT, &o.workers, "data loader threads"},
      {"backend", 0, SYNCO_ARG_STR, &o.backend, "auto, onednn or ref"},
      {"save-every", 0, SYNCO_ARG_INT, &o.save_every, "keep checkpoint_NNNN every this many epochs (0 = only last)"},
      {"knn-every", 0, SYNCO_ARG_INT, &o.knn_every, "kNN accuracy on --val every this many epochs (0 = never)"},
      {"knn-k", 0, SYNCO_ARG_INT, &o.knn_k, "kNN neighbours"},
      {"knn-t", 0, SYNCO_ARG_FLOAT, &o.knn_t, "kNN temperature"},
      {"print-freq", 'p', SYNCO_ARG_INT, &o.print_freq, "steps per log.jsonl line"},
      {"memory-check", 0, SYNCO_ARG_FLAG, &o.memory_check, "refuse a run planned to need more memory than is free (--no-memory-check: run anyway)"},
      {NULL, 0, 0, NULL, NULL, 0},
  };
  /* A bare --resume (last, or before another option) continues the run of --out: it becomes --resume=OUT. */
  const char *out_arg = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--out") && i + 1 < argc) out_arg = argv[i + 1];
    else if (!strncmp(argv[i], "--out=", 6)) out_arg = argv[i] + 6;
  }
  static char bare_resume[1100]; /* o.resume points into it after parsing */
  if (out_arg && snprintf(bare_resume, sizeof bare_resume, "--resume=%s", out_arg) >= (int)sizeof bare_resume) {
    fprintf(stderr, "synco pretrain: --out %s: path too long\n", out_arg);
    return 2;
  }
  char **av = malloc(((size_t)argc + 1) * sizeof(char *));
  if (!av) return 1;
  for (int i = 0; i < argc; i++) {
    av[i] = argv[i];
    if (!strcmp(argv[i], "--resume") && (i + 1 == argc || !strncmp(argv[i + 1], "--", 2))) {
      if (!out_arg) {
        fprintf(stderr, "synco pretrain: --resume without a checkpoint needs --out DIR (the run to continue)\n");
        free(av);
        return 2;
      }
      av[i] = bare_resume;
    }
  }
  av[argc] = NULL;
  /* Every problem with the flags is collected and printed together (one line each, exit 2). */
  synco_arg_problems pr = {.len = 0};
  int rc = synco_args_parse_collect("pretrain", SUMMARY, args, argc, av, NULL, 0, NULL, &pr);
  free(av);
  if (rc) return rc == 1 ? 0 : 2;
  const int demo = !synco_args_seen(args, "data") && !o.resume;
  if (!strcmp(o.recipe, "cifar") || demo) apply_cifar_recipe(&o, args);
  else if (strcmp(o.recipe, "imagenet") != 0)
    synco_arg_problem(&pr, "--recipe must be imagenet or cifar, got '%s'", o.recipe);
  if (demo) apply_demo(&o, args);
  if (demo && (!o.data || !o.val)) {
    fprintf(stderr, "synco pretrain: no --data given and the bundled demo images are not here (looked for "
                    "./data/cifar10-small and share/synco/cifar10-small beside the program's bin/): pass --data DIR\n");
    return 2;
  }
  if (demo && !synco_args_seen(args, "out")) force = 1; /* `make demo` again replaces runs/demo */
  if (strcmp(o.method, "synco") && strcmp(o.method, "mochi") && strcmp(o.method, "moco"))
    synco_arg_problem(&pr, "--method must be synco, mochi or moco, got '%s'", o.method);
  else
    apply_method(&o, args);
  static char resume_path[1100], resume_dir[1100];
  if (o.resume) {
    synco_status s = resolve_resume(&o, resume_path, sizeof resume_path, resume_dir, sizeof resume_dir);
    if (!s) s = resume_config(&o, args, resume_path, &resume_cfg);
    if (s) {
      synco_cli_error("pretrain");
      return s == SYNCO_ERR_ARG ? 2 : 1;
    }
    o.resume = resume_path;
    if (!o.data) {
      fprintf(stderr, "synco pretrain: %s does not say which data it was trained on: give --data\n", o.resume);
      return 2;
    }
  }
  int depth = 0;
  if (!parse_arch(o.arch, &depth))
    synco_arg_problem(&pr, "--arch must be resnet18, resnet34 or resnet50, got '%s'", o.arch);
  if (o.image_size < 8) synco_arg_problem(&pr, "--image-size %d is too small (at least 8)", o.image_size);
  if (o.moco_k % o.batch != 0)
    synco_arg_problem(&pr, "--moco-k %d is not a multiple of the batch size %d", o.moco_k, o.batch);
  /* Synthetic counts not given follow the queue: n_hard = min(1024, K/4), each unset nK at most n_hard. */
  int n_given[6];
  for (int t = 0; t < 6; t++) {
    char nm[4] = {'n', (char)('1' + t), 0, 0};
    n_given[t] = synco_args_seen(args, nm);
  }
  synco_negatives_config ncfg = {.n_hard = o.n_hard};
  memcpy(ncfg.n, o.n, sizeof ncfg.n);
  synco_negatives_scale_defaults(&ncfg, o.moco_k, synco_args_seen(args, "n-hard"), n_given);
  o.n_hard = ncfg.n_hard;
  memcpy(o.n, ncfg.n, sizeof o.n);
  const int neg_total = o.n[0] + o.n[1] + o.n[2] + o.n[3] + o.n[4] + o.n[5];
  if (neg_total > 0 && (o.n_hard < 1 || o.n_hard > o.moco_k))
    synco_arg_problem(&pr, "--n-hard %d must be between 1 and --moco-k %d", o.n_hard, o.moco_k);
  for (int t = 0; t < 6; t++)
    if (neg_total > 0 && o.n[t] > o.n_hard)
      synco_arg_problem(&pr, "--n%d %d must be between 0 and --n-hard %d", t + 1, o.n[t], o.n_hard);
  if (o.batch % o.bn_splits != 0)
    synco_arg_problem(&pr, "the batch size %d is not a multiple of --bn-splits %d", o.batch, o.bn_splits);
  if (synco_cpu_precision_check(o.precision, NULL) != SYNCO_OK) synco_arg_problem(&pr, "%s", synco_last_error());
  if (synco_arg_problems_print("pretrain", &pr)) return 2;
  if (o.threads > 0) omp_set_num_threads(o.threads);
  o.threads = omp_get_max_threads();

  synco_lr_schedule sched = {.lr = (float)o.lr, .epochs = o.epochs, .cos = o.cos, .warmup_epochs = o.lr_warmup_epochs,
                             .n_milestones = o.schedule.n};
  for (int i = 0; i < o.schedule.n; i++) sched.milestones[i] = o.schedule.v[i];
  if (synco_lr_schedule_check(&sched) != SYNCO_OK) {
    synco_cli_error("pretrain");
    return 2;
  }
  /* No --out: a new runs/<date-time>, made (with a suffix if taken) once every check has passed. */
  char outbuf[512];
  const int new_dir = !o.out;
  if (new_dir) {
    time_t now = time(NULL);
    strftime(outbuf, sizeof outbuf, "runs/%Y%m%d-%H%M%S", localtime(&now));
    o.out = outbuf;
  }
  if (!o.out[0]) {
    fprintf(stderr, "synco pretrain: --out must name a directory\n");
    return 2;
  }
  if (!o.resume && !force && !new_dir && synco_cli_run_dir_holds_run(o.out)) {
    fprintf(stderr, "synco pretrain: %s holds a run: --resume it, or pass --force\n", o.out);
    return 2;
  }

  /* ---- data ---- */
  synco_dataset_options dopt = {.split = o.split, .skip_bad = o.skip_bad, .store = SYNCO_STORE_AUTO, .threads = o.threads};
  synco_dataset *train = NULL;
  if (synco_dataset_open(&train, o.data, &dopt) != SYNCO_OK) return synco_cli_error("pretrain");
  synco_cli_dataset_notes("pretrain", train);
  synco_image first = {0};
  if (synco_dataset_size(train) > 0 && synco_dataset_get(train, 0, &first) != SYNCO_OK) first.w = first.h = 0;
  if (!o.resume) choose_image_size(&o, args, &first); /* a resumed run keeps its checkpoint's crop */
  rc = check_memory(&o, depth, &first);
  synco_image_free(&first);
  if (rc) {
    synco_dataset_free(train);
    return rc;
  }
  float mean[3], std[3];
  synco_cli_norm_stats(o.image_size, mean, std);
  synco_loader_config lc = {.batch = o.batch, .views = 2, .threads = o.workers, .prefetch = 3, .shuffle = 1,
                            .drop_last = 1, .seed = (uint64_t)o.seed, .rank = 0, .world = 1};
  lc.aug.kind = o.aug_plus ? SYNCO_AUG_MOCO_V2 : SYNCO_AUG_MOCO_V1;
  lc.aug.size = o.image_size;
  lc.aug.blur = o.blur;
  memcpy(lc.aug.mean, mean, sizeof mean);
  memcpy(lc.aug.std, std, sizeof std);
  synco_loader *loader = NULL;
  if (synco_loader_create(&loader, train, &lc) != SYNCO_OK) {
    synco_dataset_free(train);
    return synco_cli_error("pretrain");
  }
  const int steps = synco_loader_steps_per_epoch(loader);
  if (steps < 1) {
    fprintf(stderr, "synco pretrain: %s has %zu images, fewer than one batch of %d\n", o.data, synco_dataset_size(train), o.batch);
    synco_loader_free(loader);
    synco_dataset_free(train);
    return 1;
  }

  /* ---- model ---- */
  synco_backend *be = NULL;
  synco_moco *moco = NULL;
  synco_moco_config mc = {0};
  mc.enc = (synco_encoder_config){.depth = depth, .width = o.width, .cifar_stem = o.cifar_stem, .head = 1,
                                  .mlp = o.mlp, .dim = o.moco_dim, .bn_splits = o.bn_splits};
  mc.image_size = o.image_size;
  mc.batch = o.batch;
  mc.K = o.moco_k;
  mc.m = (float)o.moco_m;
  mc.T = (float)o.moco_t;
  mc.symmetric = o.symmetric;
  mc.neg = (synco_negatives_config){.n_hard = o.n_hard, .sigma = (float)o.sigma, .delta = (float)o.delta, .eta = (float)o.eta};
  for (int t = 0; t < 6; t++) mc.neg.n[t] = o.n[t];
  mc.momentum = (float)o.momentum;
  mc.wd = (float)o.wd;
  mc.seed = (uint64_t)o.seed;
  int exit_code = 1, lock_fd = -1;
  knn_monitor km = {0};
  FILE *log = NULL;
  char *cfg_json = NULL;
  if (synco_backend_create(o.backend, &be) != SYNCO_OK || synco_moco_create(&moco, be, &mc) != SYNCO_OK) {
    synco_cli_error("pretrain");
    goto done;
  }
  int start_epoch = 0;
  long gstep = 0;
  if (o.init && !o.resume) {
    char report[1024];
    synco_encoder *eq = synco_moco_query(moco), *ek = synco_moco_key(moco);
    if (synco_weights_load_report(eq, o.init, report, sizeof report) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    /* The key encoder starts as a copy of the query encoder, as at random init. */
    memcpy(synco_encoder_params(ek), synco_encoder_params(eq), synco_encoder_num_params(eq) * sizeof(float));
    memcpy(synco_encoder_buffers(ek), synco_encoder_buffers(eq), synco_encoder_num_buffers(eq) * sizeof(float));
    fprintf(stderr, "initialized from %s%s%s\n", o.init, report[0] ? ": " : "", report);
  }
  if (o.resume) {
    if (synco_moco_load(moco, o.resume, &start_epoch, &gstep) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    if (start_epoch < 0 || gstep < 0) {
      fprintf(stderr, "synco pretrain: %s: epoch %d, step %ld: a damaged checkpoint (both must be at least 0)\n",
              o.resume, start_epoch, gstep);
      goto done;
    }
    fprintf(stderr, "resumed from %s at epoch %d (step %ld)\n", o.resume, start_epoch, gstep);
  }
  const int end_epoch = o.stop_epoch > 0 && o.stop_epoch < o.epochs ? o.stop_epoch : o.epochs;
  if (o.resume && start_epoch >= end_epoch) { /* nothing to train: leave the run directory as it is */
    printf("%s has done %d of %d epochs: nothing to train (--epochs N continues it)\n", o.resume, start_epoch, o.epochs);
    exit_code = 0;
    goto done;
  }

  /* ---- kNN monitor ---- */
  synco_encoder *enc_q = synco_moco_query(moco);
  if (o.val && o.knn_every > 0) {
    if (synco_dataset_open(&km.train_eval, o.data, &dopt) != SYNCO_OK || synco_dataset_open(&km.val, o.val, &dopt) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    const size_t d = (size_t)synco_encoder_feature_dim(enc_q), nt = synco_dataset_size(km.train_eval),
                 nv = synco_dataset_size(km.val);
    km.ftrain = malloc(nt * d * sizeof(float));
    km.fval = malloc(nv * d * sizeof(float));
    km.ltrain = malloc(nt * sizeof(int));
    km.lval = malloc(nv * sizeof(int));
    if (!km.ftrain || !km.fval || !km.ltrain || !km.lval) {
      fprintf(stderr, "synco pretrain: out of memory for kNN features\n");
      goto done;
    }
  }

  /* ---- run directory: nothing in it changes until every check above has passed ---- */
  if ((new_dir ? synco_cli_mkdir_unique(outbuf, sizeof outbuf) : synco_cli_mkdirs(o.out)) != SYNCO_OK ||
      synco_cli_run_dir_lock(o.out, &lock_fd) != SYNCO_OK) {
    synco_cli_error("pretrain");
    goto done;
  }
  if (!o.resume && synco_cli_run_dir_holds_run(o.out)) { /* again, under the lock: a run may have started since */
    if (!force) {
      fprintf(stderr, "synco pretrain: %s holds a run: --resume it, or pass --force\n", o.out);
      exit_code = 2;
      goto done;
    }
    const int n = synco_cli_run_dir_clean(o.out, 1);
    fprintf(stderr, "%s: a fresh run replaces the earlier one (%d of its files removed)\n", o.out, n);
  }
  const int stale = synco_cli_run_dir_clean(o.out, 0);
  if (stale) fprintf(stderr, "removed %d stale temporary file%s of an interrupted run in %s\n", stale, stale > 1 ? "s" : "", o.out);
  char path[1024];
  snprintf(path, sizeof path, "%s/log.jsonl", o.out);
  if (o.resume) { /* rows past the checkpoint were logged by the run that was cut off; they are trained again */
    int dropped = 0;
    if (synco_cli_log_truncate(path, gstep, &dropped) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    if (dropped) fprintf(stderr, "log.jsonl: dropped %d rows past step %ld (they are trained again)\n", dropped, gstep);
  }
  cfg_json = config_json(&o);
  char cfg_path[1024];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o.out);
  if (!cfg_json || synco_cli_write_file_atomic(cfg_path, cfg_json) != SYNCO_OK) {
    synco_cli_error("pretrain");
    goto done;
  }
  log = fopen(path, o.resume ? "a" : "w");
  if (!log) {
    fprintf(stderr, "synco pretrain: %s: cannot open: %s\n", path, strerror(errno));
    goto done;
  }

  printf("synco pretrain: %s (width %d%s), %s, %d epochs x %d steps of %d, K %d, T %g, lr %g, %d threads, backend %s\n",
         o.arch, o.width, o.cifar_stem ? ", CIFAR stem" : "", o.method, o.epochs, steps, o.batch, o.moco_k, o.moco_t,
         o.lr, o.threads, be->name);
  printf("data: %s (%zu images)  run directory: %s\n", o.data, synco_dataset_size(train), o.out);
  fflush(stdout);
  double knn_first = -1, knn_last = -1;
  if (km.val && start_epoch == 0) {
    synco_knn_result r;
    if (knn_eval(&km, enc_q, &o, mean, std, &r) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    knn_first = r.top1;
    printf("kNN accuracy before training: top-1 %.2f%%  top-5 %.2f%%\n", r.top1, r.top5);
    fflush(stdout);
    fprintf(log, "{\"epoch\":0,\"knn_top1\":%.4f,\"knn_top5\":%.4f}\n", r.top1, r.top5);
    fflush(log);
  }

  const double t_start = synco_now();
  /* Ctrl-C / SIGTERM: stop between two steps and say where the last checkpoint is. */
  const char *last_ckpt = o.resume;
  int last_ckpt_epoch = start_epoch;
  char last_path[1024];
  snprintf(last_path, sizeof last_path, "%s/last.safetensors", o.out);
  synco_stop_install(1);
  for (int epoch = start_epoch; epoch < end_epoch; epoch++) {
    if (synco_loader_start_epoch(loader, epoch, 0) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    char label[64];
    snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, o.epochs);
    synco_progress prog;
    synco_progress_begin(&prog, label, steps, o.batch, o.print_freq);
    synco_progress_run(&prog, (long)(epoch - start_epoch) * steps, (long)(end_epoch - start_epoch) * steps);
    double sum_loss = 0, sum_acc = 0, sum_acc_all = 0, win_loss = 0, win_acc = 0, win_acc_all = 0;
    int win = 0;
    const double t_epoch = synco_now();
    double t_win = t_epoch;
    float lr = 0;
    for (int s = 0; s < steps; s++) {
      if (synco_stop_requested()) {
        fprintf(stderr, "%ssynco pretrain: interrupted at epoch %d step %d; ", prog.tty ? "\n" : "", epoch + 1, s);
        if (last_ckpt)
          fprintf(stderr, "the last checkpoint is %s (epoch %d); continue with --resume %s\n", last_ckpt,
                  last_ckpt_epoch, last_ckpt);
        else
          fprintf(stderr, "no checkpoint was written yet (the first comes at the end of epoch %d)\n", start_epoch + 1);
        exit_code = 128 + synco_stop_requested();
        goto done;
      }
      synco_batch b;
      if (synco_loader_next(loader, &b) != SYNCO_OK) {
        fprintf(stderr, "\n");
        synco_cli_error("pretrain");
        goto done;
      }
      if (b.n != o.batch) {
        fprintf(stderr, "\nsynco pretrain: the loader ended the epoch early (step %d of %d)\n", s, steps);
        goto done;
      }
      lr = synco_lr_at(&sched, epoch, s, steps);
      synco_step_stats st;
      synco_status ss = synco_moco_step(moco, b.x[0], b.x[1], lr, epoch >= o.warmup_epochs, (uint64_t)gstep, &st);
      if (ss == SYNCO_ERR_NUMERIC) {
        struct stat cst;
        snprintf(path, sizeof path, "%s/last.safetensors", o.out);
        if (stat(path, &cst) == 0 || o.resume)
          fprintf(stderr, "\nsynco pretrain: non-finite loss at step %ld (epoch %d, batch %d); stopping. The last good "
                          "checkpoint is %s.\n", gstep, epoch + 1, s, stat(path, &cst) == 0 ? path : o.resume);
        else
          fprintf(stderr, "\nsynco pretrain: non-finite loss at step %ld (epoch %d, batch %d); stopping. No checkpoint "
                          "was written (the run diverged before its first epoch ended): lower --lr.\n", gstep, epoch + 1, s);
        goto done;
      }
      if (ss != SYNCO_OK) {
        fprintf(stderr, "\n");
        synco_cli_error("pretrain");
        goto done;
      }
      gstep++;
      sum_loss += st.loss;
      sum_acc += st.acc;
      sum_acc_all += st.acc_all;
      win_loss += st.loss;
      win_acc += st.acc;
      win_acc_all += st.acc_all;
      win++;
      if (win == o.print_freq || s == steps - 1) {
        const double now = synco_now();
        fprintf(log, "{\"step\":%ld,\"epoch\":%d,\"lr\":%.6g,\"loss\":%.6f,\"acc\":%.4f,\"acc_all\":%.4f,\"images_per_s\":%.2f}\n",
                gstep, epoch + 1, lr, win_loss / win, 100.0 * win_acc / win, 100.0 * win_acc_all / win,
                win * o.batch / (now - t_win));
        fflush(log);
        win = 0;
        win_loss = win_acc = win_acc_all = 0;
        t_win = now;
      }
      char text[96];
      snprintf(text, sizeof text, "loss %.4f  acc %.1f%%", sum_loss / (s + 1), 100.0 * sum_acc / (s + 1));
      synco_progress_update(&prog, s + 1, text);
    }
    const double ep_time = synco_now() - t_epoch;
    char text[96];
    snprintf(text, sizeof text, "loss %.4f  acc %.1f%%", sum_loss / steps, 100.0 * sum_acc / steps);
    synco_progress_end(&prog, text);
    char knn_field[96] = "";
    if (km.val && ((epoch + 1) % o.knn_every == 0 || epoch + 1 == end_epoch)) {
      synco_knn_result r;
      if (knn_eval(&km, enc_q, &o, mean, std, &r) != SYNCO_OK) {
        synco_cli_error("pretrain");
        goto done;
      }
      knn_last = r.top1;
      snprintf(knn_field, sizeof knn_field, ",\"knn_top1\":%.4f,\"knn_top5\":%.4f", r.top1, r.top5);
      printf("epoch %d: kNN top-1 %.2f%%  top-5 %.2f%%\n", epoch + 1, r.top1, r.top5);
      fflush(stdout);
    }
    fprintf(log, "{\"epoch\":%d,\"step\":%ld,\"lr\":%.6g,\"loss\":%.6f,\"acc\":%.4f,\"acc_all\":%.4f,\"images_per_s\":%.2f,"
            "\"epoch_time_s\":%.2f%s}\n", epoch + 1, gstep, lr, sum_loss / steps, 100.0 * sum_acc / steps,
            100.0 * sum_acc_all / steps, steps * o.batch / ep_time, ep_time, knn_field);
    fflush(log);
    /* A checkpoint never stores a broken model: NaN/inf can appear in weights before the loss shows it. */
    if (synco_moco_check_finite(moco) != SYNCO_OK) {
      synco_fail_context(SYNCO_ERR_NUMERIC, "after epoch %d: ", epoch + 1);
      synco_cli_error("pretrain");
      fprintf(stderr, "synco pretrain: stopping without writing a checkpoint of epoch %d\n", epoch + 1);
      goto done;
    }
    snprintf(path, sizeof path, "%s/last.safetensors", o.out);
    if (synco_moco_save(moco, path, cfg_json, epoch + 1, gstep) != SYNCO_OK) {
      synco_cli_error("pretrain");
      goto done;
    }
    last_ckpt = last_path;
    last_ckpt_epoch = epoch + 1;
    if (o.save_every > 0 && (epoch + 1) % o.save_every == 0) {
      snprintf(path, sizeof path, "%s/checkpoint_%04d.safetensors", o.out, epoch + 1);
      if (synco_moco_save(moco, path, cfg_json, epoch + 1, gstep) != SYNCO_OK) {
        synco_cli_error("pretrain");
        goto done;
      }
    }
  }
  printf("done in %.1f s; checkpoint %s/last.safetensors\n", synco_now() - t_start, o.out);
  if (knn_first >= 0 && knn_last >= 0)
    printf("kNN top-1 on %s: untrained %.2f%% -> trained %.2f%%\n", o.val, knn_first, knn_last);
  exit_code = 0;
done:
  synco_stop_install(0);
  if (log) fclose(log);
  synco_cli_run_dir_unlock(lock_fd);
  cJSON_Delete(resume_cfg);
  resume_cfg = NULL;
  free(cfg_json);
  free(km.ftrain);
  free(km.fval);
  free(km.ltrain);
  free(km.lval);
  synco_dataset_free(km.train_eval);
  synco_dataset_free(km.val);
  synco_moco_free(moco);
  synco_backend_destroy(be);
  synco_loader_free(loader);
  synco_dataset_free(train);
  return exit_code;
}
