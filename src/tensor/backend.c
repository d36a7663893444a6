/* Choosing a backend by name. */
#include "tensor/backend.h"

#include <string.h>

#include <cblas.h>

#include "base/status.h"
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

/* OpenBLAS (pthread flavour) and OpenMP both keep spinning worker threads; on a few cores they steal time
 * from each other (measured: the synthetic-negative cost went from 7.5 to 27 ms per step on 2 cores). The
 * compute path parallelizes with OpenMP, so BLAS calls run on one thread. */
static void single_threaded_blas(void) { openblas_set_num_threads(1); }

synco_status synco_backend_create(const char *name, synco_backend **out) {
  *out = NULL;
  single_threaded_blas();
  if (!name || !strcmp(name, "auto")) {
#ifdef SYNCO_HAVE_ONEDNN
    return synco_backend_onednn_create(out);
#else
    return synco_backend_ref_create(out);
#endif
  }
  if (!strcmp(name, "ref")) return synco_backend_ref_create(out);
  if (!strcmp(name, "onednn")) {
#ifdef SYNCO_HAVE_ONEDNN
    return synco_backend_onednn_create(out);
#else
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "backend 'onednn' is not built in (install libdnnl-dev and rebuild)");
#endif
  }
#ifdef SYNCO_HAVE_CUDA
  int cuda_device;
  if (synco_cuda_device_name(name, &cuda_device)) { /* "cuda", "cuda:N" */
    if (cuda_device < 0) return synco_fail(SYNCO_ERR_ARG, "backend '%s': expected cuda or cuda:N", name);
    return synco_backend_cuda_create(cuda_device, out);
  }
#else
  if (!strncmp(name, "cuda", 4) && (!name[4] || name[4] == ':'))
    return synco_fail(SYNCO_ERR_UNSUPPORTED, "backend '%s' is not built in (rebuild with make CUDA=1)", name);
#endif
  return synco_fail(SYNCO_ERR_ARG, "unknown backend '%s' (expected ref, onednn, cuda or auto)", name);
}

void synco_backend_destroy(synco_backend *be) {
  if (be && be->destroy) be->destroy(be);
}
