/* The backend registry (registry.h): a backend by name, and the process-wide setup every backend relies on. */
#include "backend/registry.h"

#include <string.h>

#include <cblas.h>

#include "base/status.h"

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
  return synco_fail(SYNCO_ERR_ARG, "unknown backend '%s' (expected ref, onednn or auto)", name);
}

void synco_backend_destroy(synco_backend *be) {
  if (be && be->destroy) be->destroy(be);
}
