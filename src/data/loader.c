/* The batch loader: worker threads (pthreads) each assemble whole batches (every image of the batch decoded
 * and augmented into both views, normalized, plain [n,3,S,S] fp32) into a ring of batch slots, claiming
 * steps in order; the consumer takes them in order. A slot is reused only after the consumer has moved
 * past it, so the ring holds `prefetch` finished batches ahead of the one in use. Every random choice is
 * keyed by (seed, epoch, dataset index, view) and the order by (seed, epoch), so the bytes produced do not
 * depend on the number of threads or on which thread made a batch. All ranks compute the same per-epoch
 * permutation; rank r takes block r of each global batch (world · batch consecutive elements), so a global
 * batch is the same images in the same order whatever the number of ranks, and the BN groups of N ranks are
 * those of one process with --bn-splits N. The tail after the last whole global batch is dealt round-robin.
 * With world > 1 every rank gets floor(N/world) samples, so that all ranks run the same number of steps. With a key
 * shuffle (key_passes) a batch also holds this rank's rows of the shuffled global batch of key images, each made from
 * its dataset index as its own rank makes that view. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h" /* synco_now */
#include "base/status.h"
#include "data/internal.h"

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY };

typedef struct {
  synco_batch b;
  int state;
  synco_status st;
  char err[512];
} slot;

typedef struct {
  struct synco_loader *ld;
  synco_image img;
  void *scratch;
  size_t scratch_cap;
  uint32_t *kperm; /* [world·batch]: a key pass's order (key_passes > 0) */
} worker;

struct synco_loader {
  const synco_dataset *ds;
  synco_loader_config cfg;
  int nthreads, nslots;
  pthread_t *th;
  worker *workers;
  slot *slots;
  uint32_t *perm;   /* [N] */
  uint32_t *order;  /* [n_rank] */
  size_t n_rank;
  int steps;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  int epoch, started, next_claim, consume, busy, quit, held;
  double wait_s; /* seconds synco_loader_next waited for a batch this epoch (the consumer's alone) */
  double fill_s; /* seconds the workers spent in fill() this epoch, summed over threads (under mu) */
  long filled;   /* images in the batches filled this epoch (under mu) */
};

/* Decodes dataset image idx into the worker's image, with augmentation scratch for it. */
static synco_status decode(worker *wk, uint32_t idx) {
  SYNCO_TRY(synco_dataset_get(wk->ld->ds, idx, &wk->img));
  const size_t need = synco_augment_scratch_bytes(wk->img.w, wk->img.h, &wk->ld->cfg.aug);
  if (need > wk->scratch_cap) {
    free(wk->scratch);
    wk->scratch = synco_aligned_alloc(need);
    wk->scratch_cap = wk->scratch ? need : 0;
    if (!wk->scratch) return SYNCO_ERR_NOMEM;
  }
  return SYNCO_OK;
}

/* View v (0: AUG_Q, 1: AUG_K) of dataset image idx, decoded into the worker's image, to out [3, size, size]: the
 * same bytes whichever rank, thread or batch slot makes it. */
static synco_status view(worker *wk, float *out, uint32_t idx, int v) {
  const synco_loader_config *cfg = &wk->ld->cfg;
  synco_rng r = synco_rng_make(cfg->seed, (uint64_t)wk->ld->epoch, idx, v == 0 ? SYNCO_RNG_AUG_Q : SYNCO_RNG_AUG_K);
  return synco_augment(out, &wk->img, &cfg->aug, &r, wk->scratch);
}

static synco_status fill(worker *wk, slot *sl, int step) {
  struct synco_loader *ld = wk->ld;
  const synco_loader_config *cfg = &ld->cfg;
  const size_t S = (size_t)cfg->aug.size, per = 3 * S * S;
  const size_t first = (size_t)step * cfg->batch;
  size_t n = ld->n_rank - first;
  if (n > (size_t)cfg->batch) n = (size_t)cfg->batch;
  sl->b.n = (int)n;
  sl->b.step = step;
  for (size_t k = 0; k < n; k++) {
    const uint32_t idx = ld->order[first + k];
    sl->b.indices[k] = idx;
    sl->b.labels[k] = synco_dataset_label(ld->ds, idx);
    SYNCO_TRY(decode(wk, idx));
    for (int v = 0; v < cfg->views; v++) SYNCO_TRY(view(wk, sl->b.x[v] + k * per, idx, v));
  }
  /* The key images: row k of pass p is image kperm[rank·b + k] of the global batch, which is sample g % b of rank
   * g / b's block (synco_loader_start_epoch's order; every step is a whole global batch with drop_last). */
  const size_t b = (size_t)cfg->batch, world = (size_t)cfg->world;
  for (int p = 0; p < cfg->key_passes; p++) {
    cfg->key_order(cfg->key_ctx, ld->epoch, step, p, wk->kperm);
    for (size_t k = 0; k < n; k++) {
      const size_t g = wk->kperm[(size_t)cfg->rank * b + k];
      const uint32_t idx = ld->perm[((size_t)step * world + g / b) * b + g % b];
      SYNCO_TRY(decode(wk, idx));
      SYNCO_TRY(view(wk, sl->b.xk[p] + k * per, idx, p == 0 ? 1 : 0));
    }
  }
  return SYNCO_OK;
}

static void *worker_main(void *arg) {
  worker *wk = (worker *)arg;
  struct synco_loader *ld = wk->ld;
  pthread_mutex_lock(&ld->mu);
  while (!ld->quit) {
    if (!ld->started || ld->next_claim >= ld->steps || ld->slots[ld->next_claim % ld->nslots].state != SLOT_FREE) {
      pthread_cond_wait(&ld->cv_work, &ld->mu);
      continue;
    }
    const int step = ld->next_claim++;
    slot *sl = &ld->slots[step % ld->nslots];
    sl->state = SLOT_FILLING;
    ld->busy++;
    pthread_mutex_unlock(&ld->mu);
    synco_clear_error();
    const double t0 = synco_now();
    sl->st = fill(wk, sl, step);
    const double took = synco_now() - t0;
    if (sl->st != SYNCO_OK) snprintf(sl->err, sizeof sl->err, "%s", synco_last_error());
    pthread_mutex_lock(&ld->mu);
    ld->fill_s += took;
    ld->filled += sl->b.n;
    ld->busy--;
    sl->state = SLOT_READY;
    pthread_cond_broadcast(&ld->cv_done);
  }
  pthread_mutex_unlock(&ld->mu);
  return NULL;
}

void synco_loader_free(synco_loader *ld) {
  if (!ld) return;
  if (ld->th) {
    pthread_mutex_lock(&ld->mu);
    ld->quit = 1;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->nthreads; t++) pthread_join(ld->th[t], NULL);
  }
  for (int t = 0; ld->workers && t < ld->nthreads; t++) {
    synco_image_free(&ld->workers[t].img);
    free(ld->workers[t].scratch);
    free(ld->workers[t].kperm);
  }
  for (int s = 0; ld->slots && s < ld->nslots; s++) {
    free(ld->slots[s].b.x[0]);
    free(ld->slots[s].b.x[1]);
    free(ld->slots[s].b.xk[0]);
    free(ld->slots[s].b.xk[1]);
    free(ld->slots[s].b.labels);
    free(ld->slots[s].b.indices);
  }
  pthread_mutex_destroy(&ld->mu);
  pthread_cond_destroy(&ld->cv_work);
  pthread_cond_destroy(&ld->cv_done);
  free(ld->th);
  free(ld->workers);
  free(ld->slots);
  free(ld->perm);
  free(ld->order);
  free(ld);
}

synco_status synco_loader_create(synco_loader **out, const synco_dataset *ds, const synco_loader_config *cfg) {
  *out = NULL;
  if (!ds || !cfg) return synco_fail(SYNCO_ERR_ARG, "loader: no dataset or config");
  if (cfg->batch <= 0 || (cfg->views != 1 && cfg->views != 2) || cfg->aug.size <= 0 || cfg->world < 1 ||
      cfg->rank < 0 || cfg->rank >= cfg->world)
    return synco_fail(SYNCO_ERR_ARG, "loader: bad config (batch %d, views %d, size %d, rank %d of %d)", cfg->batch,
                      cfg->views, cfg->aug.size, cfg->rank, cfg->world);
  if (cfg->key_passes < 0 || cfg->key_passes > 2 || (cfg->key_passes && (!cfg->key_order || !cfg->drop_last)))
    return synco_fail(SYNCO_ERR_ARG, "loader: a key shuffle takes 1 or 2 passes, an order and whole batches "
                                     "(drop_last) (passes %d)", cfg->key_passes);
  const size_t N = synco_dataset_size(ds);
  if (N > 0xFFFFFFFFu) return synco_fail(SYNCO_ERR_ARG, "loader: dataset too large (%zu samples)", N);
  synco_loader *ld = (synco_loader *)synco_calloc(1, sizeof *ld);
  if (!ld) return SYNCO_ERR_NOMEM;
  ld->ds = ds;
  ld->cfg = *cfg;
  ld->held = -1;
  pthread_mutex_init(&ld->mu, NULL);
  pthread_cond_init(&ld->cv_work, NULL);
  pthread_cond_init(&ld->cv_done, NULL);
  ld->n_rank = cfg->world > 1 ? N / (size_t)cfg->world : N;
  ld->steps = (int)(cfg->drop_last ? ld->n_rank / (size_t)cfg->batch
                                   : (ld->n_rank + (size_t)cfg->batch - 1) / (size_t)cfg->batch);
  int nt = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nt < 1) nt = 1;
  ld->nthreads = nt;
  const int pf = cfg->prefetch < 2 ? 2 : cfg->prefetch;
  ld->nslots = (pf > nt ? pf : nt) + 1;
  const size_t per = 3 * (size_t)cfg->aug.size * cfg->aug.size * (size_t)cfg->batch * sizeof(float);
  ld->perm = (uint32_t *)malloc(sizeof(uint32_t) * (N ? N : 1));
  ld->order = (uint32_t *)malloc(sizeof(uint32_t) * (ld->n_rank ? ld->n_rank : 1));
  ld->slots = (slot *)calloc((size_t)ld->nslots, sizeof(slot));
  ld->workers = (worker *)calloc((size_t)nt, sizeof(worker));
  ld->th = (pthread_t *)calloc((size_t)nt, sizeof(pthread_t));
  int ok = ld->perm && ld->order && ld->slots && ld->workers && ld->th;
  for (int t = 0; ok && cfg->key_passes && t < nt; t++)
    ok = (ld->workers[t].kperm = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)cfg->world * cfg->batch)) != NULL;
  for (int s = 0; ok && s < ld->nslots; s++) {
    synco_batch *b = &ld->slots[s].b;
    for (int v = 0; v < cfg->views; v++) ok = ok && (b->x[v] = (float *)synco_aligned_alloc(per)) != NULL;
    for (int p = 0; p < cfg->key_passes; p++) ok = ok && (b->xk[p] = (float *)synco_aligned_alloc(per)) != NULL;
    b->labels = (int *)malloc(sizeof(int) * cfg->batch);
    b->indices = (uint32_t *)malloc(sizeof(uint32_t) * cfg->batch);
    ok = ok && b->labels && b->indices;
  }
  if (!ok) {
    free(ld->th);
    ld->th = NULL;
    synco_loader_free(ld);
    return synco_fail(SYNCO_ERR_NOMEM, "loader: out of memory for %d batch slots of %zu bytes", pf + 1, per);
  }
  int started = 0;
  for (int t = 0; t < nt; t++) {
    ld->workers[t].ld = ld;
    if (pthread_create(&ld->th[t], NULL, worker_main, &ld->workers[t]) != 0) break;
    started++;
  }
  if (started < nt) {
    ld->nthreads = started;
    synco_loader_free(ld);
    return synco_fail(SYNCO_ERR_NOMEM, "loader: cannot start %d threads", nt);
  }
  *out = ld;
  return SYNCO_OK;
}

int synco_loader_steps_per_epoch(const synco_loader *ld) { return ld->steps; }

synco_status synco_loader_start_epoch(synco_loader *ld, int epoch, int first_step) {
  if (epoch < 0 || first_step < 0) return synco_fail(SYNCO_ERR_ARG, "loader: bad epoch %d / step %d", epoch, first_step);
  pthread_mutex_lock(&ld->mu);
  ld->started = 0;
  while (ld->busy > 0) pthread_cond_wait(&ld->cv_done, &ld->mu);
  for (int s = 0; s < ld->nslots; s++) ld->slots[s].state = SLOT_FREE;
  ld->held = -1;
  const size_t N = synco_dataset_size(ld->ds);
  for (size_t i = 0; i < N; i++) ld->perm[i] = (uint32_t)i;
  if (ld->cfg.shuffle) {
    /* one permutation shared by every rank (sample 0), so that the shards partition it */
    synco_rng r = synco_rng_make(ld->cfg.seed, (uint64_t)epoch, 0, SYNCO_RNG_SHUFFLE);
    synco_rng_shuffle(&r, ld->perm, (uint32_t)N);
  }
  const size_t b = (size_t)ld->cfg.batch, world = (size_t)ld->cfg.world, r = (size_t)ld->cfg.rank;
  const size_t whole = N / (b * world); /* whole global batches */
  for (size_t k = 0; k < ld->n_rank; k++) {
    const size_t j = k / b;
    ld->order[k] = ld->perm[j < whole ? (j * world + r) * b + k % b : whole * b * world + (k - whole * b) * world + r];
  }
  ld->epoch = epoch;
  ld->wait_s = 0;
  ld->fill_s = 0;
  ld->filled = 0;
  ld->next_claim = ld->consume = first_step < ld->steps ? first_step : ld->steps;
  ld->started = 1;
  pthread_cond_broadcast(&ld->cv_work);
  pthread_mutex_unlock(&ld->mu);
  return SYNCO_OK;
}

synco_status synco_loader_next(synco_loader *ld, synco_batch *b) {
  memset(b, 0, sizeof *b);
  pthread_mutex_lock(&ld->mu);
  if (!ld->started) {
    pthread_mutex_unlock(&ld->mu);
    return synco_fail(SYNCO_ERR_ARG, "loader: synco_loader_next before synco_loader_start_epoch");
  }
  if (ld->held >= 0) {
    ld->slots[ld->held].state = SLOT_FREE;
    ld->held = -1;
    pthread_cond_broadcast(&ld->cv_work);
  }
  if (ld->consume >= ld->steps) {
    pthread_mutex_unlock(&ld->mu);
    b->step = ld->steps;
    return SYNCO_OK;
  }
  const int s = ld->consume % ld->nslots;
  if (ld->slots[s].state != SLOT_READY || ld->slots[s].b.step != ld->consume) { /* the consumer waits: timed */
    const double t0 = synco_now();
    while (ld->slots[s].state != SLOT_READY || ld->slots[s].b.step != ld->consume)
      pthread_cond_wait(&ld->cv_done, &ld->mu);
    ld->wait_s += synco_now() - t0;
  }
  ld->consume++;
  ld->held = s;
  slot *sl = &ld->slots[s];
  pthread_mutex_unlock(&ld->mu);
  if (sl->st != SYNCO_OK) return synco_fail(sl->st, "%s", sl->err);
  *b = sl->b;
  return SYNCO_OK;
}


void synco_loader_stats_get(synco_loader *ld, synco_loader_stats *out) {
  pthread_mutex_lock(&ld->mu);
  *out = (synco_loader_stats){.wait_s = ld->wait_s, .fill_s = ld->fill_s, .images = ld->filled,
                              .threads = ld->nthreads};
  pthread_mutex_unlock(&ld->mu);
}

double synco_loader_rate_per_thread(const synco_loader_stats *s) {
  return s->fill_s > 0 && s->images > 0 ? (double)s->images / s->fill_s : 0.0;
}

int synco_loader_threads_needed(double demand, double per_thread) {
  if (!(demand > 0) || !(per_thread > 0)) return 0;
  const double n = ceil(demand / per_thread);
  return n < 1 ? 1 : n > 1e6 ? 1000000 : (int)n;
}
