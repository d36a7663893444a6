/* Memory ops of the CPU backends (reference and oneDNN), and the table entries of the step ops they share: backend memory is host memory, 64-byte aligned and
 * zeroed on allocation, so copies in every direction are memcpy and sync has nothing to wait for. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"

static void *host_alloc(synco_backend *be, size_t bytes) {
  (void)be;
  void *p = synco_aligned_alloc(bytes ? bytes : 1);
  if (p) memset(p, 0, bytes);
  return p;
}

static void host_free(synco_backend *be, void *p) {
  (void)be;
  free(p);
}

static synco_status host_memset(synco_backend *be, void *dst, int byte, size_t bytes) {
  (void)be;
  if (bytes && !dst) return synco_fail(SYNCO_ERR_ARG, "%s memset: dst is missing", be->name);
  if (bytes) memset(dst, byte, bytes);
  return SYNCO_OK;
}

static synco_status host_copy(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir) {
  (void)dir;
  if (bytes && (!dst || !src)) return synco_fail(SYNCO_ERR_ARG, "%s copy: %s is missing", be->name, dst ? "src" : "dst");
  if (bytes && dst != src) memmove(dst, src, bytes);
  return SYNCO_OK;
}

static synco_status host_sync(synco_backend *be) {
  (void)be;
  return SYNCO_OK;
}

static int host_threads(synco_backend *be) {
  (void)be;
  return omp_get_max_threads();
}

void synco_ref_set_host_ops(synco_backend *be) {
  be->threads = host_threads;
  be->neg_draw = synco_ref_neg_draw;
  be->neg_logits = synco_ref_neg_logits;
  be->neg_backward = synco_ref_neg_backward;
  be->alloc = host_alloc;
  be->free = host_free;
  be->memset = host_memset;
  be->copy = host_copy;
  be->sync = host_sync;
  be->gemm = synco_ref_gemm;
  be->sgd = synco_ref_sgd;
  be->ema = synco_ref_ema;
  be->enqueue = synco_ref_enqueue;
  be->permute_rows = synco_ref_permute_rows;
  be->infonce_fwd = synco_ref_infonce_fwd;
  be->infonce_bwd = synco_ref_infonce_bwd;
}
