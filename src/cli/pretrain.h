/* synco pretrain, in stages, each in its own file; one context (pretrain_ctx) is handed from stage to stage.
 *
 *   parse    cmd_pretrain.c          argv → pretrain_opts: the flags, --recipe cifar, the bundled demo, --method
 *   config   cmd_pretrain.c          options + a resumed run's saved settings → a synco_pretrain_config, judged
 *                                    once by the library (synco_pretrain_config_validate): every problem at once
 *            pretrain_config_json.c  the settings table: config.json and the checkpoint's "synco.config", written
 *                                    and read back on --resume
 *   setup    pretrain_setup.c        the data, the crop size, the memory check, the loader, the model, --init and
 *                                    --resume weights, the kNN monitor's data
 *            pretrain_run_dir.c      the run directory: --resume's paths, runs/<date-time>, the lock, --force,
 *                                    config.json and log.jsonl; nothing in it changes before every check passed
 *   run      pretrain_run.c          epochs of steps: log.jsonl, the progress line, the kNN monitor, Ctrl-C, and
 *                                    the checkpoints at each epoch's end (pretrain_save)
 *
 * Several processes (mpirun / srun): -b is the global batch; library_config() in cmd_pretrain.c gives each process
 * -b / world (cfg.moco.batch) and the distribution seam (cfg.moco.dist, which the validator counts in the keys of
 * a step); the loader reads this rank's block of each global batch; rank 0 alone opens the run directory and the
 * kNN monitor, writes the log rows and checkpoints, and prints (the other ranks' stdout is /dev/null, their
 * progress line off); the stages agree (pretrain_ranks.c) before the first step: on each one's outcome, and on the
 * settings and the data, which must be the same on every rank; a stop is agreed between two steps. */
#ifndef SYNCO_CLI_PRETRAIN_H
#define SYNCO_CLI_PRETRAIN_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

#include "cli/args.h"
#include "cli/common.h"
#include "data/data.h"
#include "eval/knn.h"
#include "eval/linear.h"
#include "io/tfevents.h"
#include "ssl/moco.h"
#include "ssl/pretrain_config.h"
#include "synco.h"

/* A stage returns this to go on to the next, else the exit status of the command. */
#define PRETRAIN_GO (-1)

/* Every flag of synco pretrain, resolved: config.json is written from these. */
typedef struct {
  const char *arch, *data, *val, *out, *resume, *init, *method, *recipe, *split, *backend, *precision, *config;
  const char *key_shuffle;       /* --key-shuffle: images (gathered) or indices (each process loads its key images) */
  int epochs, batch, moco_dim, moco_k, mlp, aug_plus, cos, n_hard, n[6], warmup_epochs, cifar_stem, width,
      image_size, bn_splits, symmetric, threads, workers, save_every, knn_every, knn_k, print_freq, blur, skip_bad,
      stop_epoch;
  int adapt_threads;             /* --adapt-threads: fewer compute threads while other processes take cores */
  long long seed;
  double lr, wd, momentum, moco_m, moco_t, sigma, delta, eta, knn_t;
  int lr_warmup_epochs;
  int schedule_epochs;           /* the learning-rate schedule's length (0: epochs); later epochs keep its last rate */
  synco_intlist schedule;
  int memory_check;
  int probe;                     /* the online linear probe (default on; off without labels) */
  int tensorboard;               /* TensorBoard event files in the run directory (default on when built in) */
  double probe_lr;
  double bucket_mb;              /* --bucket-mb: the gradient all-reduce's buckets (world > 1) */
} pretrain_opts;

/* The online linear probe (pretrain_probe.c): a linear classifier on the query encoder's pooled backbone features of
 * each step's first view, detached, trained by its own SGD on the backend. */
typedef struct {
  synco_linear_layer *layer;     /* NULL: off */
  int classes;
  synco_named_buffer state[3];   /* probe.weight, probe.bias, probe.momentum: saved with each checkpoint */
  int shape[3][2];
} pretrain_probe;


/* Sums of a logging window or of an epoch (pretrain_log.c). */
typedef struct {
  double loss, acc, loss_moco, acc_moco;
  int synthetic;                 /* of the last step */
  double probe_loss;
  long probe_hits, probe_seen;
  int probe_steps;
  int n;
} pretrain_sums;

/* The kNN monitor: the training images unaugmented, --val, and their features. */
typedef struct {
  synco_dataset *train_eval, *val;
  float *ftrain, *fval;
  int *ltrain, *lval;
} pretrain_knn;

typedef struct {
  /* the processes of the run (mpirun / srun: several; else one). Rank 0 alone writes the run directory, the log,
   * the progress line and stdout; the stages that can fail on one rank only agree before going on. */
  synco_dist *dist;
  int rank, world;
  /* parse */
  pretrain_opts o;
  synco_arg args[64];            /* the flag table; its rows point into o (a context is never copied) */
  int force;
  synco_arg_problems problems;   /* problems with the command line, printed together at the end of config */
  char bare_resume[1100];        /* a bare --resume rewritten to --resume=OUT (o.resume points here, then below) */
  /* config */
  synco_pretrain_config cfg;     /* validated; cfg.moco.image_size follows o.image_size when setup picks the crop */
  cJSON *resume_json;            /* a resumed run's "synco.config": o's strings point into it */
  cJSON *config_json;            /* --config's file: o's strings point into it */
  const cJSON *settings;         /* the one of the two settings were taken from, or NULL */
  char settings_file[1200];      /* where: "CKPT: synco.config" or the --config file */
  int resume_epochs;             /* a resumed run's --epochs and --schedule-epochs before this command (0: unknown) */
  int resume_schedule_epochs;
  char resume_path[1100], resume_dir[1100];
  char data_abs[4096], val_abs[4096], init_abs[4096]; /* --data, --val and --init resolved, as config.json keeps them */
  /* setup */
  int new_dir;                   /* no --out: outbuf is a new runs/<date-time> */
  char outbuf[512];
  synco_dataset_options dopt;
  synco_dataset *train;
  int first_w, first_h;          /* the first training image's size (the memory check's augmentation scratch) */
  synco_loader *loader;
  int steps;                     /* per epoch */
  float mean[3], std[3];         /* Normalize of the views and of the kNN monitor */
  synco_backend *be;
  synco_moco *moco;
  pretrain_knn knn;
  pretrain_probe probe;
  int start_epoch, end_epoch;    /* epochs [start, end) are trained (end < o.epochs with --stop-epoch) */
  long gstep;                    /* global step (the checkpoint's when resumed) */
  long gstep_first;              /* the global step of epoch start_epoch's first batch (the loader's key order) */
  int stopped;                   /* the ranks agreed to stop between two steps (a signal) */
  int own_run;                   /* --resume into the run its checkpoint belongs to (the checkpoint's folder) */
  int lock_fd;
  int aside;                     /* --force set the earlier run aside (DIR/.replaced-run): it is removed at the new
                                  * run's first checkpoint, and put back if the run ends before one */
  synco_thread_governor gov;     /* --adapt-threads (off: full 1, never called) */
  int adapt_said;                /* --adapt-threads or --no-adapt-threads was on the command line */
  FILE *log;                     /* log.jsonl */
  synco_tfevents *tb;            /* the TensorBoard event file, or NULL */
  char *cfg_json;                /* config.json's text, stored in every checkpoint */
  char log_path[SYNCO_CLI_PATH_MAX + 100], last_path[SYNCO_CLI_PATH_MAX + 100];
} pretrain_ctx;

/* pretrain_config_json.c */
/* config.json and the checkpoint's "synco.config": every setting, resolved, and the number of processes that ran
 * it; NULL when out of memory. */
char *pretrain_config_json(const pretrain_opts *o, int processes);
/* Takes the settings of a resumed run from the checkpoint's "synco.config" (every one: --threads and --workers too),
 * except those given on the command line; a given value that cannot work with the checkpoint (another width, K,
 * ...) is refused, and the others that differ from the run's are listed in changed[cap] ("--lr 0.1 (the run had
 * 0.06), ..."; "" when none; --data, --val, --epochs and --precision have notes of their own). o's strings point
 * into *json, which the caller frees after the run. A checkpoint without a config changes nothing. */
synco_status pretrain_resume_config(pretrain_opts *o, const synco_arg *args, const char *ckpt, cJSON **json,
                                    char *changed, size_t cap);
/* --config FILE: takes the settings of a run's config.json that the command line does not give (flags override
 * any of them), each judged as its flag would be, naming the file and the key; a key that is no setting is refused.
 * o's strings point into *json, which the caller frees after the run. */
synco_status pretrain_config_file(pretrain_opts *o, const synco_arg *args, const char *path, cJSON **json);
/* A JSON object from a regular file of under 1 MiB (never a link nor a FIFO); *text (when not NULL): its text. */
synco_status pretrain_read_json(const char *path, cJSON **json, char **text);
/* For synco_config_origin (ctx: the pretrain_ctx): was the setting of this flag taken from the file (a resumed
 * checkpoint's settings or --config's)? */
int pretrain_config_from_file(const void *ctx, const char *flag);
/* The settings every rank of a run must share, one "--FLAG\tVALUE\n" line each (config.json's, but for the paths
 * and machine settings that may differ between ranks, and the schedule, --stop-epoch and whether --init is given);
 * NULL when out of memory. Caller frees. */
char *pretrain_settings_text(const pretrain_opts *o);
/* Appends "NAME\tVALUE\n" to the text *t of length *n in a buffer of *cap bytes (grown); 0 when out of memory. */
int pretrain_text_add(char **t, size_t *n, size_t *cap, const char *name, const char *value);
/* --arch's depth (18, 34, 50; 0: not an architecture); is --method one of synco, mochi, moco, --key-shuffle images or
 * indices? The one judge of each, for the flags and for a checkpoint's settings. */
int pretrain_arch_depth(const char *arch);
int pretrain_method_known(const char *method);
int pretrain_key_shuffle_known(const char *how);

/* pretrain_run_dir.c */
/* --resume: the checkpoint to read (ckpt) and the run directory (--out, or the checkpoint's folder, kept in dir). */
synco_status pretrain_resolve_resume(pretrain_opts *o, char *ckpt, size_t cap, char *dir, size_t dcap);
/* Names the run directory (no --out: runs/<date-time>) and refuses one that holds another run; writes nothing. */
int pretrain_run_dir_choose(pretrain_ctx *c);
/* Makes and locks the run directory, sets an earlier run aside with --force, drops the log rows a resumed run
 * trains again, writes config.json and opens log.jsonl. Called when every other check has passed. */
int pretrain_run_dir_open(pretrain_ctx *c);
/* The new run has its first checkpoint: the earlier run that --force set aside is removed. */
void pretrain_run_dir_committed(pretrain_ctx *c);
/* Ends the run directory's use (log closed, lock released); a run that ends (rc != 0) before its first checkpoint
 * puts back the earlier run that --force set aside. */
void pretrain_run_dir_close(pretrain_ctx *c, int rc);

/* pretrain_setup.c */
/* --init FILE decides the ResNet (arch, width, stem, and --moco-dim when the file has a head) unless a flag says
 * otherwise: the file's settings are taken for the flags not given (with a line saying what the file is), and a
 * given flag (or a --config file's setting) that does not fit the file is a problem naming what the file is and
 * the flag to drop. Config stage. */
int pretrain_init_arch(pretrain_ctx *c);
/* Data, crop size, memory check, loader, model, initial or resumed weights, kNN monitor, run directory. */
int pretrain_setup(pretrain_ctx *c);

/* pretrain_ranks.c: the processes of a run agree (each is a no-op on one process) */
/* rc if this rank failed, else the first failing rank's status, else PRETRAIN_GO, so that every rank stops at the
 * same stage (one rank's error alone would leave the others waiting in a collective). */
int pretrain_agree(pretrain_ctx *c, int rc);
/* Compares this rank's text (NAME\tVALUE lines: pretrain_settings_text, pretrain_data_text) with rank 0's: the
 * same on every rank gives PRETRAIN_GO; else every rank prints which rank differs, in which setting, and gets 2. */
int pretrain_ranks_same(pretrain_ctx *c, const char *text);
/* What every rank must share of a dataset given by flag: its format, image and class counts, first and last class,
 * first and last image (the last two parts of a file's path); NULL when out of memory. Caller frees. */
char *pretrain_data_text(const synco_dataset *ds, const char *flag);
/* Between two steps: the signal that stops the run (Ctrl-C, SIGTERM) if any rank got one, else 0, the same on
 * every rank; -1 when the ranks could not agree. */
int pretrain_ranks_stop(pretrain_ctx *c);

/* pretrain_probe.c */
/* Creates the probe when o.probe is on and the training data has labels (o.probe is then 0 without them), and
 * tells the model to hand it each step's features; its state joins the checkpoint. */
int pretrain_probe_open(pretrain_ctx *c);
void pretrain_probe_free(pretrain_probe *p);
/* After a step: one SGD step of the probe on the step's features against labels y (host); nothing downloaded. */
synco_status pretrain_probe_step_run(pretrain_ctx *c, const int *y);
/* What the probe scored since the last read (zeros when it is off); SYNCO_ERR_NUMERIC on a non-finite loss. */
synco_status pretrain_probe_read(pretrain_ctx *c, synco_xent_stats *out);

/* pretrain_log.c */
/* A read of the loss records into the sums: the model's (st->steps steps' means) and the probe's. */
void pretrain_sums_add(pretrain_sums *s, const synco_step_stats *st, const synco_xent_stats *probe);
/* log.jsonl rows of kind step, epoch and knn (epoch 0: before training). */
void pretrain_log_step(pretrain_ctx *c, int epoch, float lr, const pretrain_sums *w, double seconds);
/* data_wait: seconds the epoch's steps waited for the loader (synco_loader_stats_get); loader_per_thread: pairs
 * one loader thread made per second (synco_loader_rate_per_thread); loader_needed: the threads that would keep up
 * with the steps (synco_loader_threads_needed). */
void pretrain_log_epoch(pretrain_ctx *c, int epoch, float lr, const pretrain_sums *e, double seconds,
                        double data_wait, double loader_per_thread, int loader_needed);
void pretrain_log_knn(pretrain_ctx *c, int epoch, const synco_knn_result *r);

/* pretrain_run.c */
/* Opens the kNN monitor's data (with --val and --knn-every) and its feature buffers. */
int pretrain_knn_open(pretrain_ctx *c);
void pretrain_knn_free(pretrain_knn *k);
/* The training loop; returns the exit status (0, 1, or 128 + the signal of a Ctrl-C / SIGTERM). */
int pretrain_run(pretrain_ctx *c);

#endif
