/* The distribution seam over MPI (Open MPI from Debian, or any MPI-3 library): one process per rank, launched
 * by mpirun or Slurm's srun. Collectives run on a private duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN,
 * so a transport error comes back as a status naming the rank and the call; the caller then ends the whole job
 * with synco_dist_abort (MPI_Abort), and mpirun kills every rank within seconds. A rank that dies outright is
 * noticed by the launcher, which ends the job and names it. Buffers are host memory: the CPU backends' memory.
 * All-reduces and broadcasts above INT_MAX elements are sent in pieces. */
#include "dist/dist.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include <mpi.h>

#include "base/status.h"

/* A started non-blocking all-reduce (sum): its request and the floats it sums, scaled to the mean at its finish. */
typedef struct {
  MPI_Request req;
  float *buf;
  int n;
} mpi_pending;

typedef struct {
  MPI_Comm comm;
  int initialized_here; /* 1: MPI_Init ran in synco_dist_mpi_create, so destroy finalizes */
  mpi_pending *pend;    /* the started all-reduces, in order */
  int npend, cap;
} mpi_ctx;

static MPI_Comm comm_of(synco_dist *d) { return ((mpi_ctx *)d->ctx)->comm; }

static synco_status mpi_failed(synco_dist *d, const char *call, int rc) {
  char text[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return synco_fail(SYNCO_ERR_IO, "%s failed on rank %d of %d: %s", call, d->rank, d->world, text);
}

enum { CHUNK = INT_MAX / 2 };

static synco_status mpi_allreduce_mean(synco_dist *d, float *buf, size_t n) {
  for (size_t off = 0; off < n; off += CHUNK) {
    const int c = (int)(n - off < CHUNK ? n - off : CHUNK);
    const int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, c, MPI_FLOAT, MPI_SUM, comm_of(d));
    if (rc != MPI_SUCCESS) return mpi_failed(d, "MPI_Allreduce", rc);
  }
  const float inv = 1.0f / (float)d->world;
  for (size_t i = 0; i < n; i++) buf[i] *= inv;
  return SYNCO_OK;
}

static synco_status mpi_iallreduce_start(synco_dist *d, float *buf, size_t n) {
  mpi_ctx *c = d->ctx;
  for (size_t off = 0; off < n; off += CHUNK) {
    if (c->npend == c->cap) {
      const int cap = c->cap ? 2 * c->cap : 16;
      mpi_pending *p = realloc(c->pend, (size_t)cap * sizeof *p);
      if (!p) return synco_fail(SYNCO_ERR_NOMEM, "dist: out of memory for %d pending all-reduces", cap);
      c->pend = p;
      c->cap = cap;
    }
    mpi_pending *p = &c->pend[c->npend];
    p->buf = buf + off;
    p->n = (int)(n - off < CHUNK ? n - off : CHUNK);
    const int rc = MPI_Iallreduce(MPI_IN_PLACE, p->buf, p->n, MPI_FLOAT, MPI_SUM, c->comm, &p->req);
    if (rc != MPI_SUCCESS) return mpi_failed(d, "MPI_Iallreduce", rc);
    c->npend++;
  }
  return SYNCO_OK;
}

static synco_status mpi_iallreduce_progress(synco_dist *d) {
  mpi_ctx *c = d->ctx;
  /* a test of the oldest one not yet complete drives the progress engine for every pending request (a completed
   * request becomes MPI_REQUEST_NULL, which a test no longer progresses on) */
  for (int i = 0; i < c->npend; i++) {
    if (c->pend[i].req == MPI_REQUEST_NULL) continue;
    int flag = 0;
    const int rc = MPI_Test(&c->pend[i].req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_failed(d, "MPI_Test", rc);
    if (!flag) break;
  }
  return SYNCO_OK;
}

static synco_status mpi_iallreduce_finish(synco_dist *d) {
  mpi_ctx *c = d->ctx;
  synco_status s = SYNCO_OK;
  const float inv = 1.0f / (float)d->world; /* as mpi_allreduce_mean: the same mean, element for element */
  for (int i = 0; i < c->npend; i++) {
    const int rc = MPI_Wait(&c->pend[i].req, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS && s == SYNCO_OK) s = mpi_failed(d, "MPI_Wait", rc);
    for (int j = 0; j < c->pend[i].n; j++) c->pend[i].buf[j] *= inv;
  }
  c->npend = 0;
  return s;
}

static synco_status mpi_allgather(synco_dist *d, float *dst, const float *src, size_t n) {
  /* a rank's rows are keys (B·dim) or key images (B·3·S·S): far below INT_MAX floats in any real run */
  if (n > INT_MAX) return synco_fail(SYNCO_ERR_ARG, "all-gather of %zu floats per rank is too large for MPI", n);
  const int rc = MPI_Allgather(src, (int)n, MPI_FLOAT, dst, (int)n, MPI_FLOAT, comm_of(d));
  return rc == MPI_SUCCESS ? SYNCO_OK : mpi_failed(d, "MPI_Allgather", rc);
}

static synco_status mpi_broadcast(synco_dist *d, void *buf, size_t bytes, int root) {
  for (size_t off = 0; off < bytes; off += CHUNK) {
    const int c = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
    const int rc = MPI_Bcast((char *)buf + off, c, MPI_BYTE, root, comm_of(d));
    if (rc != MPI_SUCCESS) return mpi_failed(d, "MPI_Bcast", rc);
  }
  return SYNCO_OK;
}

static synco_status mpi_barrier(synco_dist *d) {
  const int rc = MPI_Barrier(comm_of(d));
  return rc == MPI_SUCCESS ? SYNCO_OK : mpi_failed(d, "MPI_Barrier", rc);
}

static synco_status mpi_max_ints(synco_dist *d, int *buf, size_t n) {
  if (n > INT_MAX) return synco_fail(SYNCO_ERR_ARG, "maximum of %zu ints is too large for MPI", n);
  const int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT, MPI_MAX, comm_of(d));
  return rc == MPI_SUCCESS ? SYNCO_OK : mpi_failed(d, "MPI_Allreduce", rc);
}

static void mpi_abort(synco_dist *d, int code) { MPI_Abort(MPI_COMM_WORLD, code ? code : 1); }

static void mpi_destroy(synco_dist *d) {
  mpi_ctx *c = d->ctx;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) {
    MPI_Comm_free(&c->comm);
    if (c->initialized_here) MPI_Finalize();
  }
  free(c->pend);
  free(c);
  free(d);
}

int synco_dist_mpi_launched(void) {
  /* Open MPI's mpirun, PMIx launchers (Open MPI 5, Slurm's srun --mpi=pmix), MPICH's hydra and PMI-1/2 */
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

synco_status synco_dist_mpi_create(synco_dist **out) {
  *out = NULL;
  int inited = 0, here = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    /* Only the main thread calls MPI (OpenMP and the loader's threads never do). */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return synco_fail(SYNCO_ERR_IO, "MPI_Init_thread failed");
    here = 1;
  }
  mpi_ctx *c = synco_calloc(1, sizeof *c);
  synco_dist *d = synco_calloc(1, sizeof *d);
  if (!c || !d) {
    free(c);
    free(d);
    return SYNCO_ERR_NOMEM;
  }
  c->initialized_here = here;
  MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
  MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  *d = (synco_dist){.name = "mpi", .ctx = c, .allreduce_mean = mpi_allreduce_mean, .allgather = mpi_allgather,
                    .broadcast = mpi_broadcast, .barrier = mpi_barrier, .max_ints = mpi_max_ints,
                    .iallreduce_start = mpi_iallreduce_start, .iallreduce_progress = mpi_iallreduce_progress,
                    .iallreduce_finish = mpi_iallreduce_finish, .abort = mpi_abort, .destroy = mpi_destroy};
  MPI_Comm_rank(c->comm, &d->rank);
  MPI_Comm_size(c->comm, &d->world);
  *out = d;
  return SYNCO_OK;
}

const char *synco_dist_mpi_version(void) {
  static char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (!text[0]) {
    MPI_Get_library_version(text, &len);
    for (int i = 0; i < len; i++)
      if (text[i] == ',' || text[i] == '\n') {
        text[i] = 0;
        break;
      }
  }
  return text;
}
