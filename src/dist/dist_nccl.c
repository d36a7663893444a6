/* The distribution seam over NCCL, for the CUDA backend: one GPU per rank, the ranks found through MPI. Rank 0
 * makes the NCCL unique id and broadcasts it over MPI; every rank joins the NCCL communicator on its device.
 * All-reduce (ncclAvg) and all-gather run on the backend's CUDA stream, in order with the step's kernels, on device
 * memory; the gradient buckets' all-reduces run on a side stream beside the backward (an event orders each after its
 * gradients, and the backend's stream waits for them all before SGD). The key shuffle's permutation (host memory),
 * the ranks' host agreements and barriers go through MPI. A failing NCCL call returns a status naming the rank, the
 * call and NCCL's reason; abort tears the communicator down and ends the job through MPI_Abort.
 *
 * synco pretrain and bench step take it where every rank has a GPU of its own (cli/common.c, synco_cli_gpu_transport).
 *
 * NOT RUN YET: this file has been compiled and linked only; no session so far had GPUs to run it on. */
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include "base/status.h"

typedef struct {
  synco_dist *mpi; /* the MPI seam this one stands on (ranks, host broadcasts, barrier, abort) */
  ncclComm_t comm;
  cudaStream_t stream;      /* the backend's: the step's kernels and the other collectives */
  cudaStream_t side;        /* the gradient buckets' all-reduces, beside the backward (synco_dist_buckets_*) */
  cudaEvent_t ready, done;  /* a bucket's gradients are final (on stream) / every bucket is reduced (on side) */
} nccl_ctx;

static nccl_ctx *ctx_of(synco_dist *d) { return (nccl_ctx *)d->ctx; }

/* A failing NCCL or CUDA call returns a status naming the call, the rank and the library's reason. */
#define DIST_TRY(d, type, ok, reason, call)                                                                    \
  do {                                                                                                         \
    const type rc_ = (call);                                                                                   \
    if (rc_ != (ok))                                                                                           \
      return synco_fail(SYNCO_ERR_IO, "%s:%d: %s failed on rank %d of %d: %s", __FILE__, __LINE__, #call,      \
                        (d)->rank, (d)->world, reason(rc_));                                                   \
  } while (0)
#define NCCL_TRY(d, call) DIST_TRY(d, ncclResult_t, ncclSuccess, ncclGetErrorString, call)
#define CUDA_TRY(d, call) DIST_TRY(d, cudaError_t, cudaSuccess, cudaGetErrorString, call)

static synco_status nccl_allreduce_mean(synco_dist *d, float *buf, size_t n) {
  NCCL_TRY(d, ncclAllReduce(buf, buf, n, ncclFloat, ncclAvg, ctx_of(d)->comm, ctx_of(d)->stream));
  return SYNCO_OK;
}

/* A bucket of the gradients, all-reduced on the side stream once the backend's stream has finished it (an event
 * between the two), while the backward goes on on the backend's stream: DDP's overlap. */
static synco_status nccl_iallreduce_start(synco_dist *d, float *buf, size_t n) {
  nccl_ctx *c = ctx_of(d);
  CUDA_TRY(d, cudaEventRecord(c->ready, c->stream));
  CUDA_TRY(d, cudaStreamWaitEvent(c->side, c->ready, 0));
  NCCL_TRY(d, ncclAllReduce(buf, buf, n, ncclFloat, ncclAvg, c->comm, c->side));
  return SYNCO_OK;
}

static synco_status nccl_iallreduce_progress(synco_dist *d) { /* NCCL's kernels progress by themselves */
  (void)d;
  return SYNCO_OK;
}

/* The backend's stream waits for every bucket (nothing on the host waits). */
static synco_status nccl_iallreduce_finish(synco_dist *d) {
  nccl_ctx *c = ctx_of(d);
  CUDA_TRY(d, cudaEventRecord(c->done, c->side));
  CUDA_TRY(d, cudaStreamWaitEvent(c->stream, c->done, 0));
  return SYNCO_OK;
}

static synco_status nccl_allgather(synco_dist *d, float *dst, const float *src, size_t n) {
  NCCL_TRY(d, ncclAllGather(src, dst, n, ncclFloat, ctx_of(d)->comm, ctx_of(d)->stream));
  return SYNCO_OK;
}

static synco_status nccl_broadcast(synco_dist *d, void *buf, size_t bytes, int root) {
  return ctx_of(d)->mpi->broadcast(ctx_of(d)->mpi, buf, bytes, root);
}

static synco_status nccl_barrier(synco_dist *d) { return ctx_of(d)->mpi->barrier(ctx_of(d)->mpi); }

static synco_status nccl_max_ints(synco_dist *d, int *buf, size_t n) {
  return ctx_of(d)->mpi->max_ints(ctx_of(d)->mpi, buf, n);
}

static void nccl_abort(synco_dist *d, int code) {
  ncclCommAbort(ctx_of(d)->comm);
  ctx_of(d)->mpi->abort(ctx_of(d)->mpi, code);
}

/* The side stream and its events, where made (c may be NULL). */
static void release_side(nccl_ctx *c) {
  if (!c) return;
  if (c->ready) cudaEventDestroy(c->ready);
  if (c->done) cudaEventDestroy(c->done);
  if (c->side) cudaStreamDestroy(c->side);
}

static void nccl_destroy(synco_dist *d) {
  nccl_ctx *c = ctx_of(d);
  if (c->side) cudaStreamSynchronize(c->side);
  ncclCommDestroy(c->comm);
  release_side(c);
  synco_dist_free(c->mpi);
  free(c);
  free(d);
}

synco_status synco_dist_nccl_create(synco_dist **out, synco_dist *mpi, int device, void *cuda_stream) {
  *out = NULL;
  if (!mpi || strcmp(mpi->name, "mpi"))
    return synco_fail(SYNCO_ERR_ARG, "NCCL needs the MPI seam to find its ranks");
  /* Every rank learns whether the id and its own device are ready before any rank enters ncclCommInitRank, which
   * waits for all of them: one rank's failure fails every rank, none is left waiting. */
  struct {
    int ok;
    ncclUniqueId id;
  } hello = {0};
  char why[160] = "";
  if (mpi->rank == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&hello.id);
    hello.ok = rc == ncclSuccess;
    if (!hello.ok) snprintf(why, sizeof why, "ncclGetUniqueId failed on rank 0: %s", ncclGetErrorString(rc));
  }
  SYNCO_TRY(mpi->broadcast(mpi, &hello, sizeof hello, 0));
  if (!hello.ok && !why[0]) snprintf(why, sizeof why, "rank 0 could not make NCCL's unique id");
  const cudaError_t ce = cudaSetDevice(device);
  if (ce != cudaSuccess && !why[0])
    snprintf(why, sizeof why, "rank %d: cudaSetDevice(%d) failed: %s", mpi->rank, device, cudaGetErrorString(ce));
  nccl_ctx *c = synco_calloc(1, sizeof *c);
  synco_dist *d = synco_calloc(1, sizeof *d);
  if ((!c || !d) && !why[0]) snprintf(why, sizeof why, "rank %d: out of memory", mpi->rank);
  if (c && !why[0]) {
    cudaError_t e = cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming);
    if (e != cudaSuccess)
      snprintf(why, sizeof why, "rank %d: a stream or event for the gradient buckets: %s", mpi->rank,
               cudaGetErrorString(e));
  }
  int bad[1] = {why[0] != 0};
  const synco_status s = mpi->max_ints(mpi, bad, 1);
  if (s != SYNCO_OK || bad[0]) {
    release_side(c);
    free(c);
    free(d);
    if (s != SYNCO_OK) return s;
    return synco_fail(SYNCO_ERR_IO, "%s", why[0] ? why : "NCCL could not start on another rank");
  }
  *d = (synco_dist){.name = "nccl", .rank = mpi->rank, .world = mpi->world, .ctx = c,
                    .allreduce_mean = nccl_allreduce_mean, .allgather = nccl_allgather, .broadcast = nccl_broadcast,
                    .barrier = nccl_barrier, .max_ints = nccl_max_ints, .iallreduce_start = nccl_iallreduce_start,
                    .iallreduce_progress = nccl_iallreduce_progress, .iallreduce_finish = nccl_iallreduce_finish,
                    .abort = nccl_abort, .destroy = nccl_destroy};
  c->mpi = mpi;
  c->stream = (cudaStream_t)cuda_stream;
  const ncclResult_t rc = ncclCommInitRank(&c->comm, mpi->world, hello.id, mpi->rank);
  /* all ranks or none: a rank whose communicator came up tears it down when another's did not */
  bad[0] = rc != ncclSuccess;
  const synco_status agreed = mpi->max_ints(mpi, bad, 1);
  if (agreed != SYNCO_OK || bad[0]) {
    if (rc == ncclSuccess) ncclCommDestroy(c->comm);
    release_side(c);
    free(c);
    free(d);
    if (agreed != SYNCO_OK) return agreed;
    if (rc != ncclSuccess)
      return synco_fail(SYNCO_ERR_IO, "rank %d of %d: ncclCommInitRank failed: %s", mpi->rank, mpi->world,
                        ncclGetErrorString(rc));
    return synco_fail(SYNCO_ERR_IO, "ncclCommInitRank failed on another rank");
  }
  *out = d;
  return SYNCO_OK;
}

int synco_dist_nccl_version(void) {
  int v = 0;
  ncclGetVersion(&v);
  return v;
}
