/* The single-process implementation of the distribution seam, and the NULL-tolerant entry points: with one
 * rank the mean of a buffer is the buffer, the gather of one rank's rows is those rows (the caller then uses
 * its own buffer, so nothing is copied), and broadcast and barrier have nobody to wait for. */
#include "dist/dist.h"

#include <stdlib.h>

#include "base/progress.h"
#include "base/status.h"

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

void synco_dist_abort(synco_dist *d, int code) {
  if (d && d->world > 1 && d->abort) d->abort(d, code);
}

void synco_dist_free(synco_dist *d) {
  if (d && d->destroy) d->destroy(d);
}

synco_status synco_dist_allreduce_mean(synco_dist *d, float *buf, size_t n) {
  if (!d || d->world <= 1) return SYNCO_OK;
  const double t0 = synco_now();
  const synco_status s = d->allreduce_mean(d, buf, n);
  const double dt = synco_now() - t0;
  d->seconds += dt;
  d->allreduce_seconds += dt;
  return s;
}

synco_status synco_dist_allgather_rows(synco_dist *d, float *dst, const float *src, size_t n) {
  if (!d || d->world <= 1) return SYNCO_OK;
  const double t0 = synco_now();
  const synco_status s = d->allgather(d, dst, src, n);
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
