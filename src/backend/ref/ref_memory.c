/* Memory ops of the CPU backends (reference and oneDNN), which SYNCO_REF_HOST_OPS (ref_internal.h) puts in their op
 * tables with the step ops they share: backend memory is host memory, 64-byte aligned (zeroed on allocation, though
 * the op table's contract does not promise it), so copies in every direction are memcpy and sync has nothing to wait
 * for. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ref/ref_internal.h"

void *synco_ref_host_alloc(synco_backend *be, size_t bytes) {
  (void)be;
  void *p = synco_aligned_alloc(bytes ? bytes : 1);
  if (p) memset(p, 0, bytes);
  return p;
}

void synco_ref_host_free(synco_backend *be, void *p) {
  (void)be;
  free(p);
}

/* The calling thread's share [*a, *b) of `bytes`, inside the parallel memset and memcpy below (from 256 KB: below that
 * a parallel region costs more than the second core saves). */
#define PARALLEL_FROM (1u << 18)
static void share(size_t bytes, size_t *a, size_t *b) {
  const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
  *a = bytes / T * t;
  *b = t + 1 == T ? bytes : bytes / T * (t + 1);
}

/* From 256 KB on the threads there are: the step's zeroing of the gradients before the backward (2.3 MB at --width 8)
 * ran on one thread while the other waited (Zen 4, `bench step --layers`, batch 64, 3 alternated runs: width 8
 * 0.037-0.055 -> 0.018-0.066 ms, width 16 0.088-0.094 -> 0.043-0.049). */
synco_status synco_ref_host_memset(synco_backend *be, void *dst, int byte, size_t bytes) {
  (void)be;
  if (bytes && !dst) return synco_fail(SYNCO_ERR_ARG, "%s memset: dst is missing", be->name);
  if (bytes < PARALLEL_FROM) {
    if (bytes) memset(dst, byte, bytes);
    return SYNCO_OK;
  }
  char *d = dst;
#pragma omp parallel
  {
    size_t a, b;
    share(bytes, &a, &b);
    memset(d + a, byte, b - a);
  }
  return SYNCO_OK;
}

synco_status synco_ref_host_copy(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir) {
  (void)dir;
  if (bytes && (!dst || !src)) return synco_fail(SYNCO_ERR_ARG, "%s copy: %s is missing", be->name, dst ? "src" : "dst");
  if (!bytes || dst == src) return SYNCO_OK;
  const char *s = src;
  char *d = dst;
  if (bytes < PARALLEL_FROM || (d < s + bytes && s < d + bytes)) { /* small, or overlapping: one memmove */
    memmove(dst, src, bytes);
    return SYNCO_OK;
  }
#pragma omp parallel
  {
    size_t a, b;
    share(bytes, &a, &b);
    memcpy(d + a, s + a, b - a);
  }
  return SYNCO_OK;
}

synco_status synco_ref_host_sync(synco_backend *be) {
  (void)be;
  return SYNCO_OK;
}

int synco_ref_host_threads(synco_backend *be) {
  (void)be;
  return omp_get_max_threads();
}
