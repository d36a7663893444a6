/* MoCo-v2 with SynCo's synthetic negatives: the query and key encoders, the momentum (EMA) update, the FIFO
 * queue, one training step, and the checkpoint of all of it.
 *
 * One step, in the order of the authors' builder: q = normalize(f_q(x_q)) → EMA of the key encoder's
 * parameters → k = normalize(f_k(x_k)) (train-mode BN with its own statistics, Split-BN on one process) →
 * InfoNCE over [q·k | q·Qᵀ | synthetic] / T → enqueue k → backward into f_q → fused SGD. With a symmetric
 * loss the two directions are averaged and both views go through both encoders.
 *
 * Data-parallel (cfg.dist with world > 1): each process holds the same state and trains on its block of the
 * global batch (world · batch); keys are shuffled across processes (shuffle-BN), gradients and BN running
 * statistics are averaged, and every process enqueues the global batch's keys. The result equals one process
 * with batch world · batch and --bn-splits world · bn_splits, to fp32 rounding. */
#ifndef SYNCO_SSL_MOCO_H
#define SYNCO_SSL_MOCO_H

#include <stdint.h>

#include "dist/dist.h"
#include "nn/encoder.h"
#include "ssl/negatives.h"
#include "synco.h"

typedef struct {
  synco_encoder_config enc;   /* head = 1 */
  int image_size;
  int batch;                  /* per process */
  int K;                      /* queue length, a multiple of the keys per step (global batch, ×2 symmetric) */
  float m;                    /* key encoder momentum */
  float T;                    /* temperature */
  int symmetric;
  synco_negatives_config neg; /* all counts 0: plain MoCo-v2 */
  float momentum, wd;         /* SGD */
  uint64_t seed;
  synco_dist *dist;           /* the processes of a data-parallel run; NULL = one process */
  size_t grad_bucket;         /* world > 1: floats per bucket of the gradient all-reduce, started as the backward
                                 finishes each (synco_dist_buckets_*); 0: one all-reduce after the backward */
  int keys_preshuffled;       /* 1: every step's key images come already shuffled (synco_moco_step_shuffled), so
                                 no process's images are ever gathered and no room is taken for them */
} synco_moco_config;

typedef struct synco_moco synco_moco;

/* What a read of the steps since the last read reports (their means). Once the synthetic negatives are on, the loss the gradient follows and its proxy accuracy
 * count them; the MoCo-only numbers leave them out (the positive against the real queue alone), so that they stay
 * comparable across the switch and with plain MoCo. Without synthetic negatives the two pairs are equal. */
typedef struct {
  double loss;                /* mean InfoNCE loss of a step, over every logit (synthetic ones included) */
  double acc;                 /* proxy-task accuracy in [0, 1]: the positive beats every logit of the loss */
  double loss_moco;           /* the InfoNCE loss over the positive and the queue logits alone */
  double acc_moco;            /* the positive beats every queue logit (MoCo's and the paper's proxy accuracy) */
  int synthetic;              /* synthetic negatives per query in the last step (0: warm-up, or plain MoCo) */
  int steps;                  /* the steps these are the means of */
} synco_step_stats;

synco_status synco_moco_create(synco_moco **out, synco_backend *be, const synco_moco_config *cfg);

/* The memory synco_moco_create would take on be for cfg, in bytes, planned without creating anything (the
 * encoders by synco_encoder_memory_plan, the rest from the same lists of buffers as creation). */
typedef struct {
  synco_encoder_memory query, key; /* the key encoder forward-only */
  synco_plan_bytes plans;          /* both encoders' plans on be, its shared buffers counted once */
  size_t momentum;                 /* SGD momentum, as the query encoder's parameters */
  size_t state;                    /* queue, the step's buffers, the key shuffle, world > 1: the gathers */
  size_t loss;                     /* synco_infonce_init's logits and per-row results */
  size_t negatives;                /* synco_negatives_init's draws and be's workspace for them */
} synco_moco_memory;
synco_status synco_moco_memory_plan(synco_backend *be, const synco_moco_config *cfg, synco_moco_memory *out);
void synco_moco_free(synco_moco *m);
/* Both encoders planned again for the thread count now in effect (synco_encoder_replan). */
synco_status synco_moco_replan(synco_moco *m);
synco_encoder *synco_moco_query(synco_moco *m);
synco_encoder *synco_moco_key(synco_moco *m);
/* Benchmark instrumentation: with on = 1, both encoders time their layers (synco_encoder_set_timing) and the step
 * times its own pieces (zeroing the gradients, the key encoder's momentum update, the key shuffle, l2 normalization,
 * the negatives' draws, the loss, the all-reduce's wait, SGD, the enqueue), each between two waits for the backend,
 * into a table that synco_moco_op_times reads; synco_moco_op_times_reset zeroes all three tables. */
void synco_moco_set_timing(synco_moco *m, int on);
const synco_op_time *synco_moco_op_times(const synco_moco *m, int *count);
void synco_moco_op_times_reset(synco_moco *m);
const float *synco_moco_queue(const synco_moco *m); /* [K, dim] unit rows */
long synco_moco_queue_ptr(const synco_moco *m); /* downloaded (-1 if that fails) */
/* SGD momentum [num_params of the query encoder]; after a step, dL/d(logits) of its last direction [B, ld]. */
const float *synco_moco_momentum(const synco_moco *m);
const float *synco_moco_logit_grads(const synco_moco *m, int *rows, int *ld);

/* One training step on a batch of two views x_q, x_k ([batch, 3, S, S] plain fp32). `negatives` = 0 turns the
 * synthetic negatives off (warm-up epochs); `step` is the global step (keys the negatives' draws).
 * The step's loss and accuracies stay in backend memory (a record that each step adds to), so a step downloads
 * nothing and never waits for the backend: with stats NULL it returns as soon as its work is issued. With stats
 * it then reads the record as synco_moco_read_stats does (this step alone when every step reads). */
synco_status synco_moco_step(synco_moco *m, const float *x_q, const float *x_k, float lr, int negatives,
                             uint64_t step, synco_step_stats *stats);
/* The order MoCo's shuffle-BN gives the keys of a global batch of G images at step `step`, direction `pass` (0; 1:
 * a symmetric loss's second): row j of the shuffled batch is image perm[j] of the global batch, and process r
 * encodes rows r·batch .. r·batch + batch - 1. A function of (seed, step, pass) alone, so a loader can assemble a
 * process's shuffled key images itself (synco_moco_step_shuffled). */
void synco_moco_key_order(uint64_t seed, uint64_t step, int pass, int G, uint32_t *perm);

/* synco_moco_step with the key images already in their shuffled order, where the key shuffle applies (several
 * processes, or Split-BN; else it is refused): xk_shuf[p] [batch, 3, S, S] (host memory) holds this process's rows of the global batch
 * of direction p's key images in synco_moco_key_order's order: the images of x_k's view for p = 0, of x_q's view for
 * p = 1 (a symmetric loss; else xk_shuf[1] is not read, and neither is x_k). Only the keys cross between processes
 * (MoCo's shuffle-BN by indices: where every process reads the data, no image is gathered); the state after it is
 * bit for bit that of synco_moco_step on the same images. */
synco_status synco_moco_step_shuffled(synco_moco *m, const float *x_q, const float *x_k, const float *const xk_shuf[2],
                                      float lr, int negatives, uint64_t step, synco_step_stats *stats);
/* The means over the steps since the last read (stats may be NULL), and zeroes the record: one download, once per
 * log interval. A non-finite loss in any of those steps returns SYNCO_ERR_NUMERIC naming the first such step
 * (synco_moco_bad_step); the steps after it ran on, so the state is not usable (the last checkpoint is: read
 * before every save). With several processes this is a collective: every process reads at the same steps. */
synco_status synco_moco_read_stats(synco_moco *m, synco_step_stats *stats);
/* The step a read found to be the first with a non-finite loss; -1 if none (or it was another process's). */
long synco_moco_bad_step(const synco_moco *m);

/* feats: backend memory [batch, feature_dim of the query encoder], or NULL (the default). Each step then copies the
 * query encoder's pooled backbone features of its first view there (detached: read after the forward, nothing
 * flows back), for an online linear probe. */
void synco_moco_set_feature_sink(synco_moco *m, float *feats);

/* n named backend buffers of the caller (an online probe's weights and momentum; they must outlive m) that each
 * checkpoint saves beside the model under their names, and synco_moco_load restores when the checkpoint holds
 * every one of them (synco_moco_extra_loaded then says 1; else they are left as they are). */
void synco_moco_set_extra_state(synco_moco *m, const synco_named_buffer *b, int n);
int synco_moco_extra_loaded(const synco_moco *m);

/* SYNCO_ERR_NUMERIC naming the first tensor (query/key encoder, momentum, queue) that holds NaN or inf. */
synco_status synco_moco_check_finite(const synco_moco *m);

/* Checkpoint: both encoders, SGD momentum, queue and pointer, epoch (completed) and global step, plus the
 * caller's config JSON as metadata "synco.config". Written atomically. */
synco_status synco_moco_save(synco_moco *m, const char *path, const char *config_json, int epoch, long step);
/* Restores a checkpoint written by synco_moco_save into m. Every field is checked against m's configuration
 * (queue shape, pointer, epoch, step, seed, every tensor's shape, finiteness) before use; the batch size may
 * differ from the checkpoint's (the queue pointer continues where it was). On failure m is not usable. */
synco_status synco_moco_load(synco_moco *m, const char *path, int *epoch, long *step);
/* The largest step a checkpoint may say it was taken at: 2^53, where log.jsonl's numbers stop being exact, and
 * 2^63 - 2^53 steps short of where a long wraps (a step of 2^63 - 1 once wrapped negative, and the run then refused
 * its own checkpoint). Its epoch is at most SYNCO_PRETRAIN_MAX_EPOCHS. */
/* The gradient all-reduce's bucket a front end takes by default (--bucket-mb): PyTorch DDP's 25 MB. */
#define SYNCO_MOCO_BUCKET_MB 25.0
/* floats of a bucket of mb megabytes (2^20 bytes); 0 for mb <= 0 (one all-reduce after the backward) */
static inline size_t synco_moco_bucket_floats(double mb) {
  return mb > 0 ? (size_t)(mb * 1048576.0 / sizeof(float)) : 0;
}

#define SYNCO_MOCO_MAX_STEP ((long long)1 << 53)

#endif
