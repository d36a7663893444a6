/* MoCo-v2 / SynCo training state and step; see moco.h for the order of operations. */
#include "ssl/moco.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "base/rng.h"
#include "base/status.h"
#include "dist/dist.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"
#include "optim/sgd.h"
#include "ssl/infonce.h"
#include "ssl/pretrain_config.h"

/* Every buffer below but perm_host is backend memory (be->alloc). */
struct synco_moco {
  synco_moco_config cfg;
  synco_backend *be;
  synco_encoder *eq, *ek;
  int dim, B;
  float *mom;                   /* SGD momentum buffer, mirrors eq's parameters */
  int sgd_started;              /* PyTorch's SGD sets buf = grad on its first step */
  float *queue;                 /* [K, dim] */
  int64_t *ptr;                 /* [1]: the queue's next row (backend memory: the step never reads it on the host) */
  float *q_raw, *k_raw, *q, *k, *dq, *dq_raw, *qnorm, *knorm; /* [B, dim] / [B] */
  float *keys;                  /* [2B, dim]: keys to enqueue (two with a symmetric loss) */
  float *x_shuf;                /* world > 1: [B, 3, S, S] this process's key images of the shuffled global batch */
  float *x_shuf_host;           /* world = 1 with shuffle: the key images in shuffled order, host memory (uploaded
                                   by the key encoder as the unshuffled batch would be) */
  uint32_t *perm;               /* [world·B] in backend memory; perm_host: the same, drawn on the host */
  uint32_t *perm_host;
  synco_dist *dist;             /* cfg.dist: the collectives of a step */
  int rank, world;
  /* world > 1 only: every process's key images [world·B, 3, S, S], the shuffled keys of all processes
   * [world·B, dim], and each pass's keys of the global batch in its order [2, world·B, dim] (enqueued) */
  float *x_all, *k_all, *keys_all;
  double *record;               /* [SYNCO_REC_LEN] the loss record of the steps since the last read (loss_record) */
  long unread;                  /* steps since the last read */
  int unread_synthetic;         /* synthetic negatives per query in the last of them */
  long bad_step;                /* the first step whose loss was not finite, as a read found it; else -1 */
  float *stats_buf;             /* world > 1: [5] the losses, accuracies and the bad flag, averaged at a read */
  int mom_shape[1], queue_shape[2]; /* the shapes of the named buffers a checkpoint holds */
  synco_infonce_scratch loss;
  synco_negatives_draws draws;
  int neg_total;
  float *feature_sink;          /* synco_moco_set_feature_sink: backend [B, feature_dim], or NULL */
  const synco_named_buffer *extra; /* synco_moco_set_extra_state: saved and loaded with the checkpoint */
  int n_extra, extra_loaded;
  /* synco_moco_set_timing: the step's own pieces (the encoders time their layers) */
  int timing;
  synco_op_times times;
  int ts_zero, ts_ema, ts_keys, ts_l2norm, ts_draw, ts_loss, ts_reduce, ts_sgd, ts_buffers, ts_enqueue;
};

/* While timing, one piece of the step: between two waits for the backend, into m->times. */
static double phase_begin(synco_moco *m) {
  if (!m->timing) return 0;
  m->be->sync(m->be);
  return synco_now();
}

static void phase_end(synco_moco *m, int *slot, const char *name, int pass, double t0) {
  if (!m->timing) return;
  m->be->sync(m->be);
  (void)synco_op_times_add(&m->times, slot, name, "step", pass, synco_now() - t0);
}

/* `call` (a synco_status expression) timed as the step's piece `name` */
#define PHASE(slot, name, pass, call)                                                                              \
  do {                                                                                                             \
    const double t0_ = phase_begin(m);                                                                             \
    SYNCO_TRY(call);                                                                                               \
    phase_end(m, &m->slot, name, pass, t0_);                                                                       \
  } while (0)

void synco_moco_set_timing(synco_moco *m, int on) {
  m->timing = on != 0;
  synco_encoder_set_timing(m->eq, on);
  synco_encoder_set_timing(m->ek, on);
}

const synco_op_time *synco_moco_op_times(const synco_moco *m, int *count) {
  *count = m->times.n;
  return m->times.e;
}

void synco_moco_op_times_reset(synco_moco *m) {
  synco_op_times_reset(&m->times);
  synco_encoder_op_times_reset(m->eq);
  synco_encoder_op_times_reset(m->ek);
}

void synco_moco_set_feature_sink(synco_moco *m, float *feats) { m->feature_sink = feats; }

void synco_moco_set_extra_state(synco_moco *m, const synco_named_buffer *b, int n) {
  m->extra = b;
  m->n_extra = n;
}

int synco_moco_extra_loaded(const synco_moco *m) { return m->extra_loaded; }

synco_status synco_moco_replan(synco_moco *m) {
  SYNCO_TRY(synco_encoder_replan(m->eq));
  return synco_encoder_replan(m->ek);
}

synco_encoder *synco_moco_query(synco_moco *m) { return m->eq; }
synco_encoder *synco_moco_key(synco_moco *m) { return m->ek; }
const float *synco_moco_queue(const synco_moco *m) { return m->queue; }
long synco_moco_queue_ptr(const synco_moco *m) {
  int64_t p = -1;
  if (m->be->copy(m->be, &p, m->ptr, sizeof p, SYNCO_COPY_D2H) != SYNCO_OK) return -1;
  return (long)p;
}
const float *synco_moco_momentum(const synco_moco *m) { return m->mom; }
const float *synco_moco_logit_grads(const synco_moco *m, int *rows, int *ld) {
  *rows = m->loss.B;
  *ld = m->loss.ld;
  return m->loss.logits;
}

static synco_tensor matrix(float *data, int rows, int cols) {
  return (synco_tensor){.n = rows, .c = cols, .h = 1, .w = 1, .dtype = SYNCO_F32, .layout = SYNCO_LAYOUT_PLAIN, .data = data};
}

void synco_moco_free(synco_moco *m) {
  if (!m) return;
  synco_encoder_free(m->eq);
  synco_encoder_free(m->ek);
  float **bufs[] = {&m->mom, &m->queue, &m->q_raw, &m->k_raw, &m->q, &m->k, &m->dq, &m->dq_raw, &m->qnorm,
                    &m->knorm, &m->keys, &m->x_shuf};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
    if (*bufs[i]) m->be->free(m->be, *bufs[i]);
  if (m->perm) m->be->free(m->be, m->perm);
  if (m->record) m->be->free(m->be, m->record);
  if (m->ptr) m->be->free(m->be, m->ptr);
  float **dist_bufs[] = {&m->x_all, &m->k_all, &m->keys_all, &m->stats_buf};
  for (size_t i = 0; i < sizeof dist_bufs / sizeof *dist_bufs; i++)
    if (*dist_bufs[i]) m->be->free(m->be, *dist_bufs[i]);
  free(m->perm_host);
  free(m->x_shuf_host);
  synco_op_times_free(&m->times);
  synco_infonce_free(&m->loss);
  if (m->neg_total) synco_negatives_free(&m->draws);
  free(m);
}

/* The key encoder never runs backward: it shares four activation buffers instead of keeping them all. */
static synco_encoder_config key_config(const synco_moco_config *cfg) {
  synco_encoder_config kc = cfg->enc;
  kc.forward_only = 1;
  return kc;
}

/* The sizes the state's buffers follow from. */
typedef struct {
  size_t B, dim, bd, G, img, K; /* bd: B·dim floats' bytes; G: the global batch (world·B); img: one image's bytes */
  int world, splits, pre;        /* pre: the key images come shuffled (cfg.keys_preshuffled) */
} moco_dims;

static moco_dims dims_of(const synco_moco_config *cfg, int dim) {
  const size_t B = (size_t)cfg->batch, world = (size_t)synco_dist_world(cfg->dist);
  return (moco_dims){.B = B, .dim = (size_t)dim, .bd = B * dim * sizeof(float), .G = world * B,
                     .img = 3 * (size_t)cfg->image_size * cfg->image_size * sizeof(float), .K = (size_t)cfg->K,
                     .world = (int)world, .splits = cfg->enc.bn_splits, .pre = cfg->keys_preshuffled};
}

/* The state besides the encoders and the SGD momentum, as X(field, bytes, on the host) (0 bytes: not allocated):
 * one list for synco_moco_create and synco_moco_memory_plan. With one process and Split-BN the shuffled key images
 * stay on the host; with several, every process's key images (unless they come shuffled), keys and both passes' keys
 * are gathered. */
#define MOCO_STATE(X, d)                                                                                            \
  X(queue, (d).K * (d).dim * sizeof(float), 0)                                                                      \
  X(q_raw, (d).bd, 0) X(k_raw, (d).bd, 0) X(q, (d).bd, 0) X(k, (d).bd, 0) X(dq, (d).bd, 0) X(dq_raw, (d).bd, 0)    \
  X(qnorm, (d).B * sizeof(float), 0) X(knorm, (d).B * sizeof(float), 0) X(keys, 2 * (d).bd, 0)                    \
  X(perm, (d).G * sizeof(uint32_t), 0) X(perm_host, (d).G * sizeof(uint32_t), 1)                                  \
  X(x_all, (d).world > 1 && !(d).pre ? (d).G * (d).img : 0, 0)                                                     \
  X(x_shuf, (d).world > 1 && !(d).pre ? (d).B * (d).img : 0, 0)                                                    \
  X(k_all, (d).world > 1 ? (d).G * (d).dim * sizeof(float) : 0, 0)                                                 \
  X(keys_all, (d).world > 1 ? 2 * (d).G * (d).dim * sizeof(float) : 0, 0)                                          \
  X(record, SYNCO_REC_LEN * sizeof(double), 0) X(ptr, sizeof(int64_t), 0)                                        \
  X(stats_buf, (d).world > 1 ? 5 * sizeof(float) : 0, 0)                                                            \
  X(x_shuf_host, (d).world == 1 && (d).splits > 1 && !(d).pre ? (d).B * (d).img : 0, 1)

synco_status synco_moco_memory_plan(synco_backend *be, const synco_moco_config *cfg, synco_moco_memory *out) {
  memset(out, 0, sizeof *out);
  if (!be) return synco_fail(SYNCO_ERR_ARG, "moco: no backend");
  SYNCO_TRY(synco_moco_config_validate(cfg, NULL, 0, NULL));
  const synco_encoder_config kc = key_config(cfg);
  SYNCO_TRY(synco_encoder_memory_plan(be, &cfg->enc, cfg->batch, cfg->image_size, &out->query));
  SYNCO_TRY(synco_encoder_memory_plan(be, &kc, cfg->batch, cfg->image_size, &out->key));
  out->plans = out->query.plans;
  synco_plan_add(&out->plans, &out->key.plans);
  out->momentum = out->query.params;
  const moco_dims d = dims_of(cfg, out->query.out_dim);
#define ADD(field, bytes, host) out->state += (bytes);
  MOCO_STATE(ADD, d)
#undef ADD
  const int total = synco_negatives_total(&cfg->neg);
  out->loss = synco_infonce_bytes(cfg->batch, cfg->K, total);
  if (total) SYNCO_TRY(synco_negatives_memory_plan(be, &cfg->neg, cfg->batch, (int)d.dim, cfg->K, &out->negatives));
  return SYNCO_OK;
}

synco_status synco_moco_create(synco_moco **out, synco_backend *be, const synco_moco_config *cfg) {
  *out = NULL;
  /* A guard: a front end reports the problems of a config before it gets here (ssl/pretrain_config.h). */
  SYNCO_TRY(synco_moco_config_validate(cfg, NULL, 0, NULL));
  const int world = synco_dist_world(cfg->dist);
  const int total = synco_negatives_total(&cfg->neg);
  synco_moco *m = calloc(1, sizeof *m);
  if (!m) return synco_fail(SYNCO_ERR_NOMEM, "out of memory");
  m->cfg = *cfg;
  m->be = be;
  m->B = cfg->batch;
  synco_status s = synco_encoder_create(&m->eq, be, &cfg->enc, cfg->batch, cfg->image_size, cfg->seed);
  const synco_encoder_config kc = key_config(cfg);
  if (!s) s = synco_encoder_create(&m->ek, be, &kc, cfg->batch, cfg->image_size, cfg->seed);
  if (s) {
    synco_moco_free(m);
    return s;
  }
  m->dim = synco_encoder_out_dim(m->eq);
  const size_t P = synco_encoder_num_params(m->eq), F = sizeof(float);
  /* The key encoder starts as a copy of the query encoder (parameters and BN buffers). */
  s = be->copy(be, synco_encoder_params(m->ek), synco_encoder_params(m->eq), P * F, SYNCO_COPY_D2D);
  if (!s) s = be->copy(be, synco_encoder_buffers(m->ek), synco_encoder_buffers(m->eq),
                       synco_encoder_num_buffers(m->eq) * F, SYNCO_COPY_D2D);
  m->mom = be->alloc(be, P * F); /* synco_moco_memory_plan: the query encoder's parameters' bytes */
  if (!s && !m->mom) s = synco_fail(SYNCO_ERR_NOMEM, "out of memory for the SGD momentum (%zu bytes)", P * F);
  const moco_dims d = dims_of(cfg, m->dim);
#define ALLOC(field, bytes, host)                                                                       \
  if (!s && (bytes) != 0 && !(m->field = (host) ? malloc(bytes) : be->alloc(be, (bytes))))              \
    s = synco_fail(SYNCO_ERR_NOMEM, "out of memory for the MoCo state (%s: %zu bytes)", #field, (size_t)(bytes));
  MOCO_STATE(ALLOC, d)
#undef ALLOC
  m->dist = cfg->dist;
  m->rank = synco_dist_rank(m->dist);
  m->world = world;
  /* a transport that reads host memory reaches a GPU's buffers (or the strict backend's) through host copies */
  if (world > 1 && synco_backend_supports(be, SYNCO_CAP_DEVICE_MEMORY) && strcmp(m->dist->name, "nccl"))
    synco_dist_stage_through(m->dist, be);
  float *queue_host = malloc((size_t)cfg->K * m->dim * F);
  if (s || !queue_host) {
    free(queue_host);
    synco_moco_free(m);
    return s ? s : synco_fail(SYNCO_ERR_NOMEM, "out of memory for the MoCo state");
  }
  /* Initial queue: random unit rows (each row normalized, unlike the authors' code which normalizes along K),
   * drawn on the host and uploaded. */
  for (int i = 0; i < cfg->K; i++) {
    synco_rng r = synco_rng_make(cfg->seed, 0, (uint64_t)i, SYNCO_RNG_QUEUE_INIT);
    float *row = queue_host + (size_t)i * m->dim;
    double ss = 0;
    for (int j = 0; j < m->dim; j++) {
      row[j] = synco_rng_normal(&r);
      ss += (double)row[j] * row[j];
    }
    const float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
    for (int j = 0; j < m->dim; j++) row[j] *= inv;
  }
  s = be->copy(be, m->queue, queue_host, (size_t)cfg->K * m->dim * F, SYNCO_COPY_H2D);
  free(queue_host);
  if (!s) s = be->memset(be, m->record, 0, SYNCO_REC_LEN * sizeof(double));
  if (!s) s = be->memset(be, m->ptr, 0, sizeof(int64_t));
  m->bad_step = -1;
  if (!s) s = synco_infonce_init(&m->loss, be, m->B, cfg->K, m->dim, total);
  if (!s && total) {
    s = synco_negatives_init(&m->draws, be, &cfg->neg, m->B, m->dim, cfg->K);
    if (!s) m->neg_total = total;
  }
  if (s) {
    synco_moco_free(m);
    return s;
  }
  *out = m;
  return SYNCO_OK;
}

void synco_moco_key_order(uint64_t seed, uint64_t step, int pass, int G, uint32_t *perm) {
  synco_rng r = synco_rng_make(seed, step, (uint64_t)pass, SYNCO_RNG_KEY_SHUFFLE);
  for (int i = 0; i < G; i++) perm[i] = (uint32_t)i;
  synco_rng_shuffle(&r, perm, (uint32_t)G);
}

/* Whether the key shuffle applies: more than one BN group over the global batch (Split-BN, or several processes). */
static int keys_shuffle(const synco_moco *m) { return m->cfg.enc.bn_splits > 1 || m->world > 1; }

/* k = normalize(f_k(x)) into dst (no gradient). With more than one BN group over the global batch (Split-BN,
 * or several processes, each its own group) the key images are shuffled before the key encoder and the keys
 * unshuffled after, as MoCo's shuffle-BN: otherwise each BN group of the key encoder would hold the same
 * images as the matching group of the query encoder, and BN statistics could leak which key belongs to which
 * query. The permutation is of the global batch, keyed by (seed, step, pass), so world processes with batch B
 * shuffle exactly as one process with batch world·B. Across processes (MoCo's batch_shuffle_ddp): every
 * process's key images are gathered, process r encodes rows r·B.. of the shuffled global batch, the keys of
 * all processes are gathered and unshuffled, and r keeps its own rows; the whole unshuffled block is what
 * every process enqueues.
 * x: this process's key images in batch order; or, with shuffled, already its rows of the shuffled global batch
 * (synco_moco_step_shuffled: the loader assembled them, so no image is gathered or permuted here). */
static synco_status encode_keys(synco_moco *m, float *dst, const float *x, int shuffled, uint64_t step, int pass) {
  synco_backend *be = m->be;
  const int B = m->B, G = B * m->world;
  const size_t img = (size_t)3 * m->cfg.image_size * m->cfg.image_size, F = sizeof(float);
  const int shuffle = keys_shuffle(m);
  double t0 = phase_begin(m);
  if (shuffle) {
    synco_moco_key_order(m->cfg.seed, step, pass, G, m->perm_host);
    /* rank 0's order for all (the same by construction); a loader that shuffled the images drew it itself */
    if (!shuffled) SYNCO_TRY(synco_dist_broadcast(m->dist, m->perm_host, (size_t)G * sizeof(uint32_t), 0));
    SYNCO_TRY(be->copy(be, m->perm, m->perm_host, (size_t)G * sizeof(uint32_t), SYNCO_COPY_H2D));
    if (shuffled) {
      /* x is this process's rows of the shuffled global batch already */
    } else if (m->world > 1) { /* the global batch in backend memory, gathered there (from this rank's, uploaded
                                  first: the collectives take backend memory) */
      SYNCO_TRY(be->copy(be, m->x_shuf, x, (size_t)B * img * F, SYNCO_COPY_H2D));
      SYNCO_TRY(synco_dist_allgather_rows(m->dist, m->x_all, m->x_shuf, (size_t)B * img));
      SYNCO_TRY(be->permute_rows(be, m->x_shuf, m->x_all, m->perm + (size_t)m->rank * B, B, img, 0));
      x = m->x_shuf;
    } else { /* the loader's batch is host memory: shuffled there, then uploaded like any batch */
      for (int i = 0; i < B; i++) memcpy(m->x_shuf_host + i * img, x + m->perm_host[i] * img, img * F);
      x = m->x_shuf_host;
    }
  }
  phase_end(m, &m->ts_keys, "keys: shuffle and gather", SYNCO_PASS_FWD, t0);
  SYNCO_TRY(synco_encoder_forward_to_backend(m->ek, m->k_raw, x, B, 1));
  synco_tensor y = matrix(m->k, B, m->dim), xr = matrix(m->k_raw, B, m->dim);
  PHASE(ts_l2norm, "l2 normalize", SYNCO_PASS_FWD, be->l2norm_fwd(be, &y, m->knorm, &xr));
  t0 = phase_begin(m);
  if (m->world > 1) {
    /* row j of k_all belongs to image perm[j] of the global batch */
    float *global = m->keys_all + (size_t)pass * G * m->dim;
    SYNCO_TRY(synco_dist_allgather_rows(m->dist, m->k_all, m->k, (size_t)B * m->dim));
    SYNCO_TRY(be->permute_rows(be, global, m->k_all, m->perm, G, (size_t)m->dim, 1));
    SYNCO_TRY(be->copy(be, dst, global + (size_t)m->rank * B * m->dim, (size_t)B * m->dim * F, SYNCO_COPY_D2D));
  } else if (shuffle) { /* row i of the output belongs to image perm[i] */
    SYNCO_TRY(be->permute_rows(be, dst, m->k, m->perm, B, (size_t)m->dim, 1));
  } else {
    SYNCO_TRY(be->copy(be, dst, m->k, (size_t)B * m->dim * F, SYNCO_COPY_D2D));
  }
  phase_end(m, &m->ts_keys, "keys: shuffle and gather", SYNCO_PASS_FWD, t0);
  return SYNCO_OK;
}

static synco_status grads_ready(void *dist, size_t first) { return synco_dist_buckets_ready(dist, first); }

/* One direction (pass 0 or 1): q = normalize(f_q(xq)) against keys k; backward into eq's gradients. */
static synco_status direction(synco_moco *m, const float *xq, const float *k, int negatives, uint64_t step,
                              uint64_t query0, int pass) {
  synco_backend *be = m->be;
  SYNCO_TRY(synco_encoder_forward_to_backend(m->eq, m->q_raw, xq, m->B, 1));
  if (m->feature_sink && pass == 0) /* the first direction's view: an online probe's input */
    SYNCO_TRY(synco_encoder_last_features(m->eq, m->feature_sink));
  synco_tensor qt = matrix(m->q, m->B, m->dim), qr = matrix(m->q_raw, m->B, m->dim);
  PHASE(ts_l2norm, "l2 normalize", SYNCO_PASS_FWD, be->l2norm_fwd(be, &qt, m->qnorm, &qr));
  const synco_negatives_config *nc = NULL;
  synco_negatives_draws *nd = NULL;
  if (negatives && m->neg_total) {
    PHASE(ts_draw, "negatives: draws", SYNCO_PASS_FWD,
          synco_negatives_draw_at(&m->draws, &m->cfg.neg, m->cfg.seed, step, query0));
    nc = &m->cfg.neg;
    nd = &m->draws;
  }
  /* the loss and accuracies stay in backend memory, added to the record (read by synco_moco_read_stats) */
  const double t0 = phase_begin(m);
  SYNCO_TRY(synco_contrastive_loss(&m->loss, NULL, NULL, m->dq, m->q, k, m->queue, m->B, m->cfg.K, m->dim, m->cfg.T,
                                   nc, nd));
  SYNCO_TRY(synco_infonce_record(&m->loss, m->record, step));
  phase_end(m, &m->ts_loss, "loss: logits, negatives, InfoNCE", SYNCO_PASS_FWD, t0);
  synco_tensor dqt = matrix(m->dq, m->B, m->dim), dqr = matrix(m->dq_raw, m->B, m->dim);
  PHASE(ts_l2norm, "l2 normalize", SYNCO_PASS_BWD_DATA, be->l2norm_bwd(be, &dqr, &dqt, &qt, m->qnorm));
  /* the step's last backward finishes the gradients: their buckets' all-reduces start as it goes */
  const int last = !m->cfg.symmetric || pass == 1;
  if (last && m->world > 1) synco_encoder_on_grads_ready(m->eq, grads_ready, m->dist);
  const synco_status s = synco_encoder_backward(m->eq, m->dq_raw);
  synco_encoder_on_grads_ready(m->eq, NULL, NULL);
  return s;
}

static synco_status step_impl(synco_moco *m, const float *x_q, const float *x_k, const float *const xk_shuf[2],
                              float lr, int negatives, uint64_t step) {
  synco_backend *be = m->be;
  const size_t P = synco_encoder_num_params(m->eq), bd = (size_t)m->B * m->dim;
  float *pq = synco_encoder_params(m->eq), *pk = synco_encoder_params(m->ek), *g = synco_encoder_grads(m->eq);
  const int pre = xk_shuf != NULL;
  PHASE(ts_zero, "gradients: zero", SYNCO_PASS_FWD, be->memset(be, g, 0, P * sizeof(float)));
  /* The key encoder moves before it encodes this step's keys, as in the authors' forward(). */
  PHASE(ts_ema, "key encoder: momentum update", SYNCO_PASS_FWD, synco_ema_update(be, pk, pq, P, m->cfg.m));
  int nkeys = 1;
  /* The negatives' draws are keyed by the query's index in the global batch (both directions counted), so
   * they do not depend on how the batch is split across processes. */
  const uint64_t G = (uint64_t)m->B * m->world, query0 = (uint64_t)m->rank * m->B;
  /* the gradient all-reduce, in buckets started by the last backward (direction) and finished below */
  SYNCO_TRY(synco_dist_buckets_begin(m->dist, g, P, m->cfg.grad_bucket));
  SYNCO_TRY(encode_keys(m, m->keys, pre ? xk_shuf[0] : x_k, pre, step, 0));
  if (!m->cfg.symmetric) {
    SYNCO_TRY(direction(m, x_q, m->keys, negatives, step, query0, 0));
  } else {
    /* loss = loss(q1, k2) + loss(q2, k1), both keys enqueued (MoCo's CIFAR demo). */
    SYNCO_TRY(encode_keys(m, m->keys + bd, pre ? xk_shuf[1] : x_q, pre, step, 1));
    SYNCO_TRY(direction(m, x_q, m->keys, negatives, step, query0, 0));
    SYNCO_TRY(direction(m, x_k, m->keys + bd, negatives, step, G + query0, 1));
    nkeys = 2;
  }
  /* Where processes meet (no-ops on one process): the key shuffle above (images, permutation and keys), the
   * gradients averaged before SGD (in buckets, from the last backward on), and the BN running statistics averaged
   * after it. Each process normalizes its own part of the batch (its own BN group), and its running statistics move
   * with that group's statistics; their mean over processes is exactly what one process with --bn-splits world
   * computes, so every process keeps identical buffers (DDP instead copies rank 0's). */
  PHASE(ts_reduce, "gradients: all-reduce (wait)", SYNCO_PASS_FWD, synco_dist_buckets_finish(m->dist));
  PHASE(ts_sgd, "sgd", SYNCO_PASS_FWD, synco_sgd_step(be, pq, m->mom, g, P, lr, m->cfg.momentum, m->cfg.wd,
                                                      !m->sgd_started));
  m->sgd_started = 1;
  if (m->world > 1) {
    const double t0 = phase_begin(m);
    SYNCO_TRY(synco_dist_allreduce_mean(m->dist, synco_encoder_buffers(m->eq), synco_encoder_num_buffers(m->eq)));
    SYNCO_TRY(synco_dist_allreduce_mean(m->dist, synco_encoder_buffers(m->ek), synco_encoder_num_buffers(m->ek)));
    phase_end(m, &m->ts_buffers, "BN running statistics: all-reduce", SYNCO_PASS_FWD, t0);
  }
  /* Enqueue after the loss used the old queue; a resumed run with another batch size continues at its pointer.
   * Across processes the queue receives the global batch's keys, so every process's queue is the same. */
  for (int i = 0; i < nkeys; i++) {
    const float *rows = m->keys + i * bd;
    int nrows = m->B;
    if (m->world > 1) {
      rows = m->keys_all + (size_t)i * G * m->dim;
      nrows = (int)G;
    }
    PHASE(ts_enqueue, "queue: enqueue", SYNCO_PASS_FWD, be->enqueue(be, m->queue, m->cfg.K, m->dim, m->ptr, rows, nrows));
  }
  m->unread++;
  m->unread_synthetic = negatives ? m->neg_total : 0;
  return SYNCO_OK;
}

synco_status synco_moco_step(synco_moco *m, const float *x_q, const float *x_k, float lr, int negatives,
                             uint64_t step, synco_step_stats *stats) {
  if (m->cfg.keys_preshuffled && keys_shuffle(m))
    return synco_fail(SYNCO_ERR_ARG, "moco step: this state takes its key images shuffled "
                                     "(synco_moco_step_shuffled)");
  SYNCO_TRY(step_impl(m, x_q, x_k, NULL, lr, negatives, step));
  return stats ? synco_moco_read_stats(m, stats) : SYNCO_OK;
}

synco_status synco_moco_step_shuffled(synco_moco *m, const float *x_q, const float *x_k, const float *const xk_shuf[2],
                                      float lr, int negatives, uint64_t step, synco_step_stats *stats) {
  if (!xk_shuf || !xk_shuf[0] || (m->cfg.symmetric && (!xk_shuf[1] || !x_k)))
    return synco_fail(SYNCO_ERR_ARG, "moco step: shuffled key images missing (%s)",
                      m->cfg.symmetric ? "a symmetric loss takes both views and both directions' keys" : "xk_shuf[0]");
  if (!keys_shuffle(m))
    return synco_fail(SYNCO_ERR_ARG, "moco step: one process with one BN group shuffles no keys (synco_moco_step)");
  SYNCO_TRY(step_impl(m, x_q, x_k, xk_shuf, lr, negatives, step));
  return stats ? synco_moco_read_stats(m, stats) : SYNCO_OK;
}

synco_status synco_moco_read_stats(synco_moco *m, synco_step_stats *stats) {
  synco_backend *be = m->be;
  double rec[SYNCO_REC_LEN];
  SYNCO_TRY(be->copy(be, rec, m->record, sizeof rec, SYNCO_COPY_D2H));
  SYNCO_TRY(be->memset(be, m->record, 0, sizeof rec));
  const double steps = m->unread > 0 ? (double)m->unread : 1.0;
  const double calls = rec[SYNCO_REC_CALLS] > 0 ? rec[SYNCO_REC_CALLS] : 1.0;
  /* per step: the losses of a symmetric step's two directions add up (its loss is their sum), the accuracies
   * average over the directions */
  double v[5] = {rec[SYNCO_REC_LOSS] / steps, rec[SYNCO_REC_ACC] / calls, rec[SYNCO_REC_LOSS_QUEUE] / steps,
                 rec[SYNCO_REC_ACC_QUEUE] / calls, rec[SYNCO_REC_BAD]};
  if (m->world > 1) { /* the means over processes: every process reads at the same steps (a collective) */
    float f[5];
    for (int i = 0; i < 5; i++) f[i] = (float)v[i];
    SYNCO_TRY(be->copy(be, m->stats_buf, f, sizeof f, SYNCO_COPY_H2D));
    SYNCO_TRY(synco_dist_allreduce_mean(m->dist, m->stats_buf, 5));
    SYNCO_TRY(be->copy(be, f, m->stats_buf, sizeof f, SYNCO_COPY_D2H));
    for (int i = 0; i < 5; i++) v[i] = f[i];
  }
  if (stats) *stats = (synco_step_stats){.loss = v[0], .acc = v[1], .loss_moco = v[2], .acc_moco = v[3],
                                         .synthetic = m->unread_synthetic, .steps = (int)m->unread};
  m->unread = 0;
  if (rec[SYNCO_REC_BAD] != 0.0) {
    m->bad_step = (long)rec[SYNCO_REC_BAD_TAG];
    return synco_fail(SYNCO_ERR_NUMERIC, "non-finite loss at step %ld", m->bad_step);
  }
  if (v[4] != 0.0) { /* another process's */
    m->bad_step = -1;
    return synco_fail(SYNCO_ERR_NUMERIC, "non-finite loss on another process");
  }
  return SYNCO_OK;
}

long synco_moco_bad_step(const synco_moco *m) { return m->bad_step; }

/* The MoCo state beside the encoders, as named backend buffers: the SGD momentum and the queue. */
static void moco_state_buffers(synco_moco *m, synco_named_buffer out[2]) {
  m->mom_shape[0] = (int)synco_encoder_num_params(m->eq);
  m->queue_shape[0] = m->cfg.K;
  m->queue_shape[1] = m->dim;
  out[0] = (synco_named_buffer){"optimizer.momentum", m->mom, synco_encoder_num_params(m->eq), 1, m->mom_shape};
  out[1] = (synco_named_buffer){"queue", m->queue, (size_t)m->cfg.K * m->dim, 2, m->queue_shape};
}

synco_status synco_moco_save(synco_moco *m, const char *path, const char *config_json, int epoch, long step) {
  int64_t ptr;
  SYNCO_TRY(m->be->copy(m->be, &ptr, m->ptr, sizeof ptr, SYNCO_COPY_D2H));
  synco_st_writer *w = synco_st_writer_new();
  if (!w) return SYNCO_ERR_NOMEM;
  char buf[64];
  synco_named_buffer state[2];
  moco_state_buffers(m, state);
  synco_status s = synco_weights_add(w, m->eq, "encoder_q.");
  if (!s) s = synco_weights_add(w, m->ek, "encoder_k.");
  if (!s) s = synco_weights_add_buffers(w, m->be, "", state, 2); /* downloaded through the backend's copy */
  if (!s && m->n_extra) s = synco_weights_add_buffers(w, m->be, "", m->extra, m->n_extra);
  if (!s) s = synco_st_add(w, "queue_ptr", SYNCO_ST_I64, 1, (int64_t[]){1}, &ptr);
  if (!s) s = synco_st_set_meta(w, "synco.format", "checkpoint");
  if (!s && config_json) s = synco_st_set_meta(w, "synco.config", config_json);
  snprintf(buf, sizeof buf, "%d", epoch);
  if (!s) s = synco_st_set_meta(w, "synco.epoch", buf);
  snprintf(buf, sizeof buf, "%ld", step);
  if (!s) s = synco_st_set_meta(w, "synco.step", buf);
  snprintf(buf, sizeof buf, "%d", m->sgd_started);
  if (!s) s = synco_st_set_meta(w, "synco.sgd_started", buf);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)m->cfg.seed);
  if (!s) s = synco_st_set_meta(w, "synco.seed", buf);
  if (!s) s = synco_st_write(w, path);
  synco_st_writer_free(w);
  return s;
}

/* The first non-finite value of n floats at x, or -1. */
static long first_non_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return (long)i;
  return -1;
}

/* Downloads n floats of backend memory into host (through the backend's copy) and finds the first non-finite
 * one: -1 if none, -2 if the copy failed (its message is set). */
static long backend_non_finite(synco_backend *be, float *host, const float *src, size_t n) {
  if (be->copy(be, host, src, n * sizeof(float), SYNCO_COPY_D2H) != SYNCO_OK) return -2;
  return first_non_finite(host, n);
}

/* Names the first tensor of enc holding NaN or inf (parameters, then BN buffers); host: room for either. */
static synco_status encoder_finite(synco_backend *be, float *host, const synco_encoder *enc, const char *what) {
  for (int b = 0; b < 2; b++) {
    int n = 0;
    const synco_param_view *v = b ? synco_encoder_buffer_views(enc, &n) : synco_encoder_param_views(enc, &n);
    const float *base = b ? synco_encoder_buffers((synco_encoder *)enc) : synco_encoder_params((synco_encoder *)enc);
    const size_t total = b ? synco_encoder_num_buffers(enc) : synco_encoder_num_params(enc);
    const long bad = backend_non_finite(be, host, base, total);
    if (bad == -2) return SYNCO_ERR_IO;
    if (bad < 0) continue;
    for (int i = 0; i < n; i++)
      if (first_non_finite(host + v[i].offset, v[i].numel) >= 0)
        return synco_fail(SYNCO_ERR_NUMERIC, "%s tensor '%s' holds NaN or inf values", what, v[i].name);
  }
  return SYNCO_OK;
}

synco_status synco_moco_check_finite(const synco_moco *m) {
  const size_t P = synco_encoder_num_params(m->eq), Q = (size_t)m->cfg.K * m->dim;
  const size_t NB = synco_encoder_num_buffers(m->eq), n = P > Q ? (P > NB ? P : NB) : (Q > NB ? Q : NB);
  float *host = malloc(n * sizeof *host);
  if (!host) return synco_fail(SYNCO_ERR_NOMEM, "out of memory for a copy of %zu values", n);
  synco_status s = encoder_finite(m->be, host, m->eq, "query encoder");
  if (!s) s = encoder_finite(m->be, host, m->ek, "key encoder");
  long bad = s ? -1 : backend_non_finite(m->be, host, m->mom, P);
  if (!s && bad == -2) s = SYNCO_ERR_IO;
  if (!s && bad >= 0) s = synco_fail(SYNCO_ERR_NUMERIC, "the SGD momentum holds NaN or inf values");
  bad = s ? -1 : backend_non_finite(m->be, host, m->queue, Q);
  if (!s && bad == -2) s = SYNCO_ERR_IO;
  if (!s && bad >= 0) s = synco_fail(SYNCO_ERR_NUMERIC, "the queue holds NaN or inf values");
  free(host);
  return s;
}

/* A decimal integer metadata value in [lo, hi], the whole string. */
static int parse_meta_long(const char *text, long lo, long hi, long *out) {
  if (!text || !*text) return 0;
  char *end = NULL;
  errno = 0;
  const long v = strtol(text, &end, 10);
  if (errno || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

synco_status synco_moco_load(synco_moco *m, const char *path, int *epoch, long *step) {
  synco_safetensors st;
  SYNCO_TRY(synco_st_open(&st, path));
  synco_status s = SYNCO_OK;
  /* Every field is checked against this run before anything of m changes. */
  const char *fmt = synco_st_meta(&st, "synco.format");
  if (!fmt || strcmp(fmt, "checkpoint"))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: not a synco training checkpoint (an exported encoder?)", path);
  const synco_st_entry *qe = s ? NULL : synco_st_find(&st, "queue");
  if (!s && (!qe || qe->ndim != 2))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: missing or malformed queue", path);
  if (!s && (qe->shape[0] != m->cfg.K || qe->shape[1] != m->dim))
    s = synco_fail(SYNCO_ERR_ARG, "%s: its queue is %lld x %lld (--moco-k x --moco-dim); this run has %d x %d", path,
                   (long long)qe->shape[0], (long long)qe->shape[1], m->cfg.K, m->dim);
  const synco_st_entry *e = s ? NULL : synco_st_find(&st, "queue_ptr");
  if (!s && (!e || e->dtype != SYNCO_ST_I64 || synco_st_numel(e) != 1))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: missing or malformed queue_ptr", path);
  int64_t ptr = 0;
  if (!s) {
    memcpy(&ptr, synco_st_bytes(&st, e), 8);
    if (ptr < 0 || ptr >= m->cfg.K)
      s = synco_fail(SYNCO_ERR_FORMAT, "%s: queue_ptr %lld is outside the queue of %d rows", path, (long long)ptr, m->cfg.K);
  }
  const char *ep = synco_st_meta(&st, "synco.epoch"), *sp = synco_st_meta(&st, "synco.step"),
             *sg = synco_st_meta(&st, "synco.sgd_started"), *sd = synco_st_meta(&st, "synco.seed");
  long ep_v = 0, sp_v = 0, sg_v = 0;
  if (!s && (!ep || !sp || !sg)) s = synco_fail(SYNCO_ERR_FORMAT, "%s: missing epoch/step metadata", path);
  if (!s && !parse_meta_long(ep, 0, LONG_MAX, &ep_v))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: epoch '%s' is not an integer >= 0", path, ep);
  if (!s && ep_v > SYNCO_PRETRAIN_MAX_EPOCHS)
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: epoch %ld is more than %d, the most epochs a run can have", path, ep_v,
                   SYNCO_PRETRAIN_MAX_EPOCHS);
  if (!s && !parse_meta_long(sp, 0, LONG_MAX, &sp_v))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: step '%s' is not an integer >= 0", path, sp);
  if (!s && sp_v > SYNCO_MOCO_MAX_STEP)
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: step %ld is more than 2^53 = %ld, the most a run can have taken", path, sp_v,
                   (long)SYNCO_MOCO_MAX_STEP);
  if (!s && !parse_meta_long(sg, 0, 1, &sg_v))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: sgd_started '%s' is not 0 or 1", path, sg);
  if (!s && sd && strtoull(sd, NULL, 10) != m->cfg.seed)
    s = synco_fail(SYNCO_ERR_ARG, "%s: was trained with --seed %s, not %llu", path, sd, (unsigned long long)m->cfg.seed);
  /* the architecture metadata ("synco.encoder") and the values, judged by the reader of knn, embed and export */
  synco_encoder_config fc = {0};
  int fsize = 0;
  if (!s) s = synco_weights_read_config_st(&st, &fc, &fsize);
  const synco_encoder_config *rc = &m->cfg.enc;
  const int claims = synco_st_meta(&st, "synco.encoder") != NULL; /* else inferred from the tensors, as knn does */
  if (!s && claims && !fc.head)
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: its metadata 'synco.encoder' says the encoder has no projection head, which a "
                   "training checkpoint's has", path);
  else if (!s && claims && (fc.depth != rc->depth || fc.width != rc->width || fc.cifar_stem != rc->cifar_stem ||
                            fc.mlp != rc->mlp || fc.dim != rc->dim))
    s = synco_fail(SYNCO_ERR_FORMAT, "%s: its metadata 'synco.encoder' says resnet%d width %d%s with a%s head of dim %d; "
                   "this run has resnet%d width %d%s with a%s head of dim %d", path, fc.depth, fc.width,
                   fc.cifar_stem ? " (CIFAR stem)" : "", fc.mlp ? "n MLP" : " linear", fc.dim, rc->depth, rc->width,
                   rc->cifar_stem ? " (CIFAR stem)" : "", rc->mlp ? "n MLP" : " linear", rc->dim);
  if (!s) s = synco_weights_load(m->eq, path, "query", 1);
  if (!s) s = synco_weights_load(m->ek, path, "key", 1);
  /* read into host memory (NaN/inf refused by tensor name), checked, then uploaded through the backend's copy */
  synco_named_buffer state[2];
  moco_state_buffers(m, state);
  if (!s) s = synco_weights_get_buffer(&st, m->be, state[0].name, &state[0]);
  if (!s) s = synco_weights_get_buffer(&st, m->be, state[1].name, &state[1]);
  /* the caller's state (an online probe) when the checkpoint has all of it */
  int extra_all = m->n_extra > 0;
  for (int i = 0; i < m->n_extra; i++) extra_all = extra_all && synco_st_find(&st, m->extra[i].name) != NULL;
  for (int i = 0; !s && extra_all && i < m->n_extra; i++)
    s = synco_weights_get_buffer(&st, m->be, m->extra[i].name, &m->extra[i]);
  if (!s) s = m->be->copy(m->be, m->ptr, &ptr, sizeof ptr, SYNCO_COPY_H2D);
  if (!s) {
    m->extra_loaded = extra_all;
    *epoch = (int)ep_v;
    *step = sp_v;
    m->sgd_started = (int)sg_v;
  }
  synco_st_close(&st);
  return s;
}
