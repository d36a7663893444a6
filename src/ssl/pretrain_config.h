/* The configuration of a pretraining run as the library sees it, and the one place where it is judged.
 *
 * synco_pretrain_config_validate checks everything the model, the queue, the loss, the synthetic negatives, SGD
 * and the learning-rate schedule need of each other (the queue a multiple of the keys of a step, the Split-BN
 * groups dividing the batch, n_hard within the queue and every synthetic count within n_hard, ...) and reports
 * every problem, not only the first. A front end calls it once, before it opens data or writes anything; the
 * create functions below it (synco_moco_create, synco_encoder_create, synco_negatives_init) keep cheap guards of
 * their own but are not where users learn about a problem. Settings are named by their `synco pretrain` flags. */
#ifndef SYNCO_SSL_PRETRAIN_CONFIG_H
#define SYNCO_SSL_PRETRAIN_CONFIG_H

#include <stddef.h>

#include "optim/schedule.h"
#include "ssl/moco.h"
#include "synco.h"

/* The smallest crop a pretraining run trains on (the views of smaller images say too little). */
#define SYNCO_PRETRAIN_MIN_IMAGE 8
/* The most epochs a run can have (--epochs' range in cli/args.c; a checkpoint's epoch is judged by it too). */
#define SYNCO_PRETRAIN_MAX_EPOCHS 1000000

typedef struct {
  synco_moco_config moco;   /* the encoders, the queue, the loss, the negatives and SGD (moco.batch per process) */
  synco_lr_schedule sched;  /* learning rate by epoch; sched.epochs is the length of the run */
  int warmup_epochs;        /* the first epochs train without synthetic negatives */
} synco_pretrain_config;

/* SYNCO_OK, or SYNCO_ERR_ARG with every problem of cfg: written to msg (when msg is not NULL; cap bytes, a problem
 * that does not fit is counted but left out) one per line, each line ending in '\n', and recorded as the last
 * error in one line, "invalid configuration: PROBLEM; PROBLEM; ...". *count (when not NULL) = the number found. */
synco_status synco_pretrain_config_validate(const synco_pretrain_config *cfg, char *msg, size_t cap, int *count);

/* Where the settings came from, for the messages. A setting given as a flag is named by the flag ("--moco-t 0 must
 * be greater than 0"); one read from a file (a resumed run's settings, from its checkpoint's "synco.config") by its
 * key there, and the problem is the file's ("runs/a/last.safetensors: synco.config: moco_t 0 must be greater than
 * 0"), so that no message blames a flag the user never gave. */
typedef struct {
  /* 1 when the setting of `flag` (a synco pretrain flag without its dashes: "moco-t", "n1", "batch-size") was
   * read from the file */
  int (*from_file)(const void *ctx, const char *flag);
  const void *ctx;
  const char *file;          /* what such a problem begins with: "PATH: synco.config" */
} synco_config_origin;

/* synco_pretrain_config_validate, with the settings named by where they came from (origin NULL: all are flags). */
synco_status synco_pretrain_config_check(const synco_pretrain_config *cfg, const synco_config_origin *origin, char *msg,
                                         size_t cap, int *count);

/* The part of synco_pretrain_config_validate that synco_moco_create needs (no schedule, and any crop size the
 * encoder takes); the same messages. */
synco_status synco_moco_config_validate(const synco_moco_config *cfg, char *msg, size_t cap, int *count);

#endif
