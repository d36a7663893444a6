/* The single-process implementation of the distribution seam, and the NULL-tolerant entry points: with one
 * rank the mean of a buffer is the buffer, the gather of one rank's rows is those rows (the caller then uses
 * its own buffer, so nothing is copied), and broadcast and barrier have nobody to wait for. */
#include "dist/dist.h"

#include <limits.h>

#include <stdlib.h>

#include "base/progress.h"
#include "base/status.h"
#include "tensor/backend.h"

static synco_status single_allreduce_mean(synco_dist *d, float *buf, size_t n) {
  (void)d, (void)buf, (void)n;
  return SYNCO_OK;
}

static synco_status single_allgather(synco_dist *d, float *dst, const float *src, size_t n) {
  (void)d, (void)dst, (void)src, (void)n;
  return SYNCO_OK;
}

static synco_status single_broadcast(synco_dist *d, void *buf, size_t bytes, int root) {
  (void)d, (void)buf, (void)bytes;
  if (root != 0) return synco_fail(SYNCO_ERR_ARG, "broadcast from rank %d of a single process", root);
  return SYNCO_OK;
}

static synco_status single_barrier(synco_dist *d) {
  (void)d;
  return SYNCO_OK;
}

static synco_status single_max_ints(synco_dist *d, int *buf, size_t n) {
  (void)d, (void)buf, (void)n;
  return SYNCO_OK;
}

static void single_destroy(synco_dist *d) { free(d); }

synco_status synco_dist_single_create(synco_dist **out) {
  *out = NULL;
  synco_dist *d = synco_calloc(1, sizeof *d);
  if (!d) return SYNCO_ERR_NOMEM;
  *d = (synco_dist){.name = "single", .rank = 0, .world = 1, .allreduce_mean = single_allreduce_mean,
                    .allgather = single_allgather, .broadcast = single_broadcast, .barrier = single_barrier,
                    .max_ints = single_max_ints, .destroy = single_destroy};
  *out = d;
  return SYNCO_OK;
}

synco_status synco_dist_create(synco_dist **out) {
#ifdef SYNCO_HAVE_MPI
  if (synco_dist_mpi_launched()) return synco_dist_mpi_create(out);
#endif
  return synco_dist_single_create(out);
}

int synco_dist_launched_processes(void) {
  /* not SLURM_NTASKS: a batch script has it too; PMIx says no size (srun --mpi=pmix goes unseen) */
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    if (v && atoi(v) > 0) return atoi(v);
  }
  return 0;
}

int synco_dist_local_rank(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
    const char *v = getenv(vars[i]);
    char *end = NULL;
    const long r = v ? strtol(v, &end, 10) : -1;
    if (v && *v && !*end && r >= 0 && r < 1000000) return (int)r;
  }
  return -1;
}

void synco_dist_abort(synco_dist *d, int code) {
  if (d && d->world > 1 && d->abort) d->abort(d, code);
}

void synco_dist_free(synco_dist *d) {
  if (!d) return;
  float *stage = d->stage; /* the transports free their own struct */
  d->stage = NULL;
  if (d->destroy) d->destroy(d);
  free(stage);
}

void synco_dist_stage_through(synco_dist *d, synco_backend *be) {
  if (d) d->stage_be = be;
}

/* The host staging buffer, at least n floats. */
static synco_status stage_of(synco_dist *d, size_t n, float **out) {
  if (d->stage_n < n) {
    float *p = realloc(d->stage, n * sizeof(float));
    if (!p) return synco_fail(SYNCO_ERR_NOMEM, "dist: no host memory to stage %zu floats of a collective", n);
    d->stage = p;
    d->stage_n = n;
  }
  *out = d->stage;
  return SYNCO_OK;
}

static synco_status staged_allreduce(synco_dist *d, float *buf, size_t n) {
  synco_backend *be = d->stage_be;
  float *h = NULL;
  SYNCO_TRY(stage_of(d, n, &h));
  SYNCO_TRY(be->copy(be, h, buf, n * sizeof(float), SYNCO_COPY_D2H));
  SYNCO_TRY(d->allreduce_mean(d, h, n));
  return be->copy(be, buf, h, n * sizeof(float), SYNCO_COPY_H2D);
}

static synco_status staged_allgather(synco_dist *d, float *dst, const float *src, size_t n) {
  synco_backend *be = d->stage_be;
  const size_t all = (size_t)d->world * n;
  float *h = NULL;
  SYNCO_TRY(stage_of(d, all + n, &h));
  SYNCO_TRY(be->copy(be, h + all, src, n * sizeof(float), SYNCO_COPY_D2H));
  SYNCO_TRY(d->allgather(d, h, h + all, n));
  return be->copy(be, dst, h, all * sizeof(float), SYNCO_COPY_H2D);
}

synco_status synco_dist_allreduce_mean(synco_dist *d, float *buf, size_t n) {
  if (!d || d->world <= 1) return SYNCO_OK;
  const double t0 = synco_now();
  const synco_status s = d->stage_be ? staged_allreduce(d, buf, n) : d->allreduce_mean(d, buf, n);
  const double dt = synco_now() - t0;
  d->seconds += dt;
  d->allreduce_seconds += dt;
  return s;
}

synco_status synco_dist_allgather_rows(synco_dist *d, float *dst, const float *src, size_t n) {
  if (!d || d->world <= 1) return SYNCO_OK;
  const double t0 = synco_now();
  const synco_status s = d->stage_be ? staged_allgather(d, dst, src, n) : d->allgather(d, dst, src, n);
  d->seconds += synco_now() - t0;
  return s;
}

synco_status synco_dist_broadcast(synco_dist *d, void *buf, size_t bytes, int root) {
  if (!d || d->world <= 1) return SYNCO_OK;
  const double t0 = synco_now();
  const synco_status s = d->broadcast(d, buf, bytes, root);
  d->seconds += synco_now() - t0;
  return s;
}

synco_status synco_dist_barrier(synco_dist *d) { return d && d->world > 1 ? d->barrier(d) : SYNCO_OK; }

synco_status synco_dist_max_ints(synco_dist *d, int *buf, size_t n) {
  if (!d || d->world <= 1) return SYNCO_OK;
  const double t0 = synco_now();
  const synco_status s = d->max_ints(d, buf, n);
  d->seconds += synco_now() - t0;
  return s;
}

synco_status synco_dist_gather_int(synco_dist *d, int v, int *all) {
  const int world = synco_dist_world(d);
  for (int r = 0; r < world; r++) all[r] = INT_MIN; /* each rank's own value, by the maximum over ranks */
  all[synco_dist_rank(d)] = v;
  return synco_dist_max_ints(d, all, (size_t)world);
}

synco_status synco_dist_buckets_begin(synco_dist *d, float *buf, size_t n, size_t bucket) {
  if (!d || d->world <= 1) return SYNCO_OK;
  d->bk_buf = buf;
  d->bk_n = d->bk_done = n;
  d->bk_size = d->iallreduce_start && !d->stage_be ? bucket : 0;
  d->bk_on = 1;
  return SYNCO_OK;
}

synco_status synco_dist_buckets_ready(synco_dist *d, size_t first) {
  if (!d || !d->bk_on || !d->bk_size) return SYNCO_OK;
  const double t0 = synco_now();
  synco_status s = SYNCO_OK;
  while (s == SYNCO_OK && first <= d->bk_done && d->bk_done - first >= d->bk_size) {
    d->bk_done -= d->bk_size;
    s = d->iallreduce_start(d, d->bk_buf + d->bk_done, d->bk_size);
  }
  if (s == SYNCO_OK && d->bk_done < d->bk_n) s = d->iallreduce_progress(d);
  const double dt = synco_now() - t0;
  d->seconds += dt;
  d->allreduce_seconds += dt;
  return s;
}

synco_status synco_dist_buckets_finish(synco_dist *d) {
  if (!d || !d->bk_on) return SYNCO_OK;
  d->bk_on = 0;
  if (!d->bk_size) return synco_dist_allreduce_mean(d, d->bk_buf, d->bk_n);
  const double t0 = synco_now();
  synco_status s = d->bk_done ? d->iallreduce_start(d, d->bk_buf, d->bk_done) : SYNCO_OK;
  const synco_status f = d->iallreduce_finish(d); /* also after a failed start: nothing stays in flight */
  const double dt = synco_now() - t0;
  d->seconds += dt;
  d->allreduce_seconds += dt;
  return s != SYNCO_OK ? s : f;
}
