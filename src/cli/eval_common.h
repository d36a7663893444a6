/* What the evaluation subcommands (knn, linear, finetune, embed, analyze) share: the options that choose an
 * encoder (a checkpoint, an export, or a random initialization for baselines), opening it, opening labelled
 * datasets with an optional held-out part, the evaluation transform, and one JSON printer. */
#ifndef SYNCO_CLI_EVAL_COMMON_H
#define SYNCO_CLI_EVAL_COMMON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/args.h"
#include "data/data.h"
#include "eval/subset.h"
#include "nn/encoder.h"
#include "synco.h"

typedef struct {
  const char *ckpt;      /* checkpoint or export; NULL with random_init */
  const char *init;      /* torchvision-named weights (any unmatched key is reported, not fatal) */
  const char *which;     /* "query" or "key" encoder of a checkpoint */
  const char *backend;   /* auto, onednn, ref */
  const char *arch;      /* for --random-init */
  const char *precision; /* fp32, or bf16 where the CPU runs it */
  int random_init, cifar_stem, width, image_size;
  int batch;             /* images per forward; 0 on the command line = batch_auto */
  int batch_auto;        /* no -b given: the most images, up to 256, whose planned memory fits in half the free memory */
  int threads;
  long long seed;
  char ckpt_buf[1100];   /* --ckpt RUN_DIR: the run's last.safetensors (synco_eval_model_check) */
} synco_eval_model_opts;

void synco_eval_model_defaults(synco_eval_model_opts *o);
/* The option rows for those fields (ckpt, which, random-init, arch, width, cifar-stem, image-size, batch-size, backend,
 * precision, threads, seed); copies at most max rows into rows and returns how many. */
int synco_eval_model_args(synco_eval_model_opts *o, synco_arg *rows, int max);
/* Checks the combination (exactly one of --ckpt / --init / --random-init); prints and returns 2 on misuse. A --ckpt
 * that is a run folder becomes its last.safetensors (1 when it has none). */
/* args: the command's parsed rows, to tell the flags given: --arch, --width or --cifar-stem against a --ckpt's own
 * model is refused (2). */
int synco_eval_model_check(const char *cmd, synco_eval_model_opts *o, const synco_arg *args);
/* Sizes o->batch to the memory there is for `encoders` encoders of the model o names (each as
 * synco_eval_open_model makes it, with its input batch): with batch_auto, the largest batch <= o->batch whose
 * plan fits in half the available memory (then batch_auto is cleared); with a given -b, refuses one whose plan
 * does not fit in all of it, with the figure. synco_eval_open_model calls it for one encoder. */
synco_status synco_eval_fit_batch(synco_eval_model_opts *o, int head, int encoders);

/* Creates the backend and the encoder (backbone only with head = 0; with head = 1 the projection head too when
 * the file has one — *has_head says whether it did) for batches of `batch` and loads the weights. */
synco_status synco_eval_open_model(const synco_eval_model_opts *o, int head, int batch, int bn_splits,
                                   synco_backend **be, synco_encoder **enc, int *has_head);
/* Human name of the model: the checkpoint path, or "random init (resnet18, seed 0)". */
const char *synco_eval_model_name(const synco_eval_model_opts *o, char *buf, size_t n);

/* A labelled dataset with its labels. */
typedef struct {
  synco_dataset *ds;
  int *labels;           /* [size] */
  size_t n;
  int classes;
} synco_eval_data;

/* split_if_any: an ImageFolder without that split's folder is taken whole (synco_dataset_options). */
synco_status synco_eval_data_open(synco_eval_data *d, const char *path, const char *split, int skip_bad, int need_labels,
                                  int split_if_any);
/* How many of b's images are a's (a's split a_split, b's b_split; NULL: train): all of them when both name the same
 * file or folder and split; for two ImageFolders, the b files that are a files (the same file by st_dev/st_ino,
 * whatever the path). */
size_t synco_eval_overlap(const synco_dataset *a, const char *a_path, const char *a_split, const synco_dataset *b,
                          const char *b_path, const char *b_split);
void synco_eval_data_close(synco_eval_data *d);

/* The train / val index lists: with a val set, all of train and all of val; without one, a part of train is the
 * val part (both lists refer to train): with val_fraction in (0, 1), that fraction of each class (at least one
 * image), drawn by a shuffle keyed by seed (--val-split F); with holdout > 0, the last `holdout` images of each
 * class (--holdout N). With a val set whose images are train's (the same file or folder and split, or an
 * ImageFolder's same files), a warning says how many. */
typedef struct {
  synco_eval_data train, val;   /* val.ds NULL when held out */
  uint32_t *tr_idx, *va_idx;
  size_t n_tr, n_va;
} synco_eval_split;

synco_status synco_eval_split_open(synco_eval_split *s, const char *train, const char *train_split, const char *val,
                                   const char *val_split, int holdout, double val_fraction, uint64_t seed, int skip_bad);
/* The help of --val-split, and its check: a number F (0 < F < 1) holds out that fraction of --train (*val_split
 * becomes NULL, *val_fraction F; refused beside --val or --holdout); a name is the split of --val (refused without
 * one). --holdout beside --val is refused too. Prints and returns 2 on misuse. */
#define SYNCO_EVAL_VAL_SPLIT_HELP                                                                                    \
  "a fraction F (0 < F < 1): F of each class of --train held out as the val set, drawn with --seed; with --val, a " \
  "name: the split of --val (default: its test split where its format has one, e.g. a CIFAR-10 folder's test_batch)"
int synco_eval_val_split_check(const char *cmd, const char **val_split, double *val_fraction, const char *val,
                               int holdout);
void synco_eval_split_close(synco_eval_split *s);
const synco_dataset *synco_eval_split_val_ds(const synco_eval_split *s);
/* The labels of the split's train and val images, in split order: *ytr [n_tr] (skipped when ytr is NULL) and
 * *yva [n_va], allocated here (free() them). */
synco_status synco_eval_split_labels(const synco_eval_split *s, int **ytr, int **yva);

/* The evaluation transform (resize + center crop, normalized) for the encoder's image size, or another kind. */
synco_aug_config synco_eval_aug(int image_size, synco_aug_kind kind);

/* Encodes idx[0..n) of ds with enc (backbone features) into a new matrix, with a progress line on stderr
 * labelled `what` unless quiet. */
synco_status synco_eval_encode(float **feats, synco_encoder *enc, const synco_dataset *ds, const uint32_t *idx,
                               size_t n, const synco_aug_config *aug, uint64_t seed, int epoch, int use_head,
                               const char *what, int quiet);

/* Prints obj as one line of JSON on stdout and deletes it. */
void synco_eval_print_json(cJSON *obj);


/* A pretraining run's log.jsonl (pretrain_log.c): rows of kind step, epoch and knn; logs of earlier versions (no
 * "kind": epoch rows told by "epoch_time_s", kNN values on them) are read too. Step rows are placed on an epoch
 * axis by the global steps at which the epochs ended, piecewise linearly, so that a run whose steps per epoch
 * changed mid-run (resumed on other data or with another batch size) still has each step in its epoch; by step
 * number when no epoch row gives its steps. Missing values are NaN. */
typedef struct {
  int n;                 /* step rows */
  double *x, *loss, *acc, *loss_moco, *acc_moco, *probe, *lr, *ips;
  int ne;                /* epoch rows */
  double *ex, *eloss, *eacc;
  int nk;                /* kNN rows (epoch 0: before training) */
  double *kx, *knn;
  double switch_epoch;   /* the epoch (0-based, on the x axis) at whose start the synthetic negatives switched on; NaN
                            when they did not (or the log does not say) */
  int by_step;           /* 1: x is the step number (no epoch rows to convert with) */
} synco_runlog;

synco_status synco_runlog_read(synco_runlog *log, const char *path);
void synco_runlog_free(synco_runlog *log);

#endif
