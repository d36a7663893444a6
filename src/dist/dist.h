/* The distribution seam: rank, world size and the four collectives a data-parallel MoCo step needs (and one for the
 * ranks' agreement on small host values, max_ints). moco.c
 * calls them at three places — the gradient all-reduce before SGD, the key all-gather before the enqueue, and
 * the broadcast of the key shuffle's permutation — and nowhere else. Implementations: single process (here;
 * every collective is a no-op), MPI and NCCL (their own files, when built). All-reduce and all-gather buffers
 * are backend memory of the caller's backend (device memory for NCCL); broadcast's is host memory (the
 * shuffle's permutation is drawn on the host). */
#ifndef SYNCO_DIST_DIST_H
#define SYNCO_DIST_DIST_H

#include <stddef.h>

#include "synco.h"

typedef struct synco_dist synco_dist;
struct synco_backend;

struct synco_dist {
  const char *name; /* "single", "mpi", "nccl" */
  int rank, world;
  void *ctx;
  /* Seconds spent in the collectives so far (world > 1), and in the all-reduces among them: a step's share. */
  double seconds, allreduce_seconds;
  /* buf [n] ← the mean over ranks of every rank's buf [n] (in place). */
  synco_status (*allreduce_mean)(synco_dist *d, float *buf, size_t n);
  /* dst [world · n] ← every rank's src [n], in rank order. */
  synco_status (*allgather)(synco_dist *d, float *dst, const float *src, size_t n);
  /* buf [bytes] of rank `root` to every rank. */
  synco_status (*broadcast)(synco_dist *d, void *buf, size_t bytes, int root);
  synco_status (*barrier)(synco_dist *d);
  /* buf [n] (host ints) ← the element-wise maximum over ranks of every rank's buf [n] (in place): the ranks'
   * agreement on small things (a stage's outcome, a stop, which setting differs), on host memory whatever the
   * transport of the step's buffers. */
  synco_status (*max_ints)(synco_dist *d, int *buf, size_t n);
  /* A non-blocking all-reduce (mean) where the transport has one (MPI; NCCL on a side stream): start buf [n] (it
   * must stay untouched until finished), let the started ones progress (MPI moves data only inside its calls), and
   * finish every started one (the mean in place; NCCL: the backend's stream waits for it). NULL: the buckets below
   * fall back to one blocking all-reduce. */
  synco_status (*iallreduce_start)(synco_dist *d, float *buf, size_t n);
  synco_status (*iallreduce_progress)(synco_dist *d);
  synco_status (*iallreduce_finish)(synco_dist *d);
  /* Ends every rank of the job now (after an error on this one); NULL where there is nobody else. */
  void (*abort)(synco_dist *d, int code);
  void (*destroy)(synco_dist *d);
  /* synco_dist_buckets_*: the buffer being all-reduced, its length, the bucket (floats), and where the started part
   * begins ([done, n) started); on: between begin and finish */
  float *bk_buf;
  size_t bk_n, bk_size, bk_done;
  int bk_on;
  /* synco_dist_stage_through: the backend whose memory the collectives reach through host buffers, and those */
  struct synco_backend *stage_be;
  float *stage;
  size_t stage_n;
};

/* One process: rank 0 of 1. */
synco_status synco_dist_single_create(synco_dist **out);
void synco_dist_free(synco_dist *d);

#ifdef SYNCO_HAVE_MPI
/* 1 when this process was started by an MPI launcher (mpirun, srun, hydra): its environment says so. */
int synco_dist_mpi_launched(void);
/* Initializes MPI (unless the caller did) and joins MPI_COMM_WORLD; destroy finalizes what it initialized. */
synco_status synco_dist_mpi_create(synco_dist **out);
/* The MPI library's name and version, e.g. "Open MPI v4.1.4". */
const char *synco_dist_mpi_version(void);
#endif
#ifdef SYNCO_HAVE_NCCL
/* NCCL over the MPI seam `mpi` (which it then owns; on failure it stays the caller's): collectives on device memory
 * of GPU `device`, on the CUDA stream `cuda_stream` (a cudaStream_t) of that rank's backend. A collective over mpi:
 * every rank succeeds or every rank fails. Not yet run on a GPU. */
synco_status synco_dist_nccl_create(synco_dist **out, synco_dist *mpi, int device, void *cuda_stream);
int synco_dist_nccl_version(void); /* e.g. 22803 for 2.28.3 */
#endif
/* This process's rank among the ranks of its node, as the launcher says (Open MPI's OMPI_COMM_WORLD_LOCAL_RANK,
 * Slurm's SLURM_LOCALID, MPICH's MPI_LOCALRANKID), or -1 when no launcher says. */
int synco_dist_local_rank(void);
/* The processes an MPI launcher started, as its environment says (Open MPI's OMPI_COMM_WORLD_SIZE, PMI-1/2's PMI_SIZE,
 * MVAPICH's MV2_COMM_WORLD_SIZE), or 0 when none says; whether or not this build has MPI. */
int synco_dist_launched_processes(void);

/* The processes this one belongs to: MPI when built with it and started by an MPI launcher, else the single
 * process. Never NULL on success. */
synco_status synco_dist_create(synco_dist **out);
/* After an error on this rank: ends the other ranks too (a no-op on one process). */
void synco_dist_abort(synco_dist *d, int code);

static inline int synco_dist_rank(const synco_dist *d) { return d ? d->rank : 0; }
static inline int synco_dist_world(const synco_dist *d) { return d ? d->world : 1; }
/* Where a transport cannot touch the step's buffers (MPI's on a GPU's memory, or on the strict backend's), its
 * all-reduces and all-gathers stage them through host memory: be's copy down, the collective on the host copy, be's
 * copy back up (a wait for the backend at each). NCCL, which reads GPU memory itself, needs none. be = NULL: none. */
void synco_dist_stage_through(synco_dist *d, struct synco_backend *be);

/* The collectives through d; d = NULL is the single process. */
synco_status synco_dist_allreduce_mean(synco_dist *d, float *buf, size_t n);
synco_status synco_dist_allgather_rows(synco_dist *d, float *dst, const float *src, size_t n);
synco_status synco_dist_broadcast(synco_dist *d, void *buf, size_t bytes, int root);
synco_status synco_dist_barrier(synco_dist *d);
synco_status synco_dist_max_ints(synco_dist *d, int *buf, size_t n);
/* all [world] ← every rank's v, in rank order (every rank calls it; by synco_dist_max_ints). */
synco_status synco_dist_gather_int(synco_dist *d, int v, int *all);

/* The gradients' all-reduce (mean) in buckets, as the backward finishes them (DDP's buckets): begin before the
 * backward, ready(first) each time the elements [first, n) of buf are final (synco_encoder_on_grads_ready), finish
 * before the optimizer reads buf. Each ready starts an all-reduce of every whole bucket of `bucket` floats below the
 * started part, from the end down, and lets the started ones progress; finish starts the rest and waits for all.
 * The cuts depend only on n, bucket and the ready calls, so every rank makes the same ones, and each element's
 * mean is the one a single all-reduce gives (the same sum of the same values). bucket 0, one process, or a transport
 * without a non-blocking all-reduce (MPI staged through host copies): one blocking all-reduce at finish. */
synco_status synco_dist_buckets_begin(synco_dist *d, float *buf, size_t n, size_t bucket);
synco_status synco_dist_buckets_ready(synco_dist *d, size_t first);
synco_status synco_dist_buckets_finish(synco_dist *d);

#endif
