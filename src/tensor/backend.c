/* Choosing a backend by name. */
#include "tensor/backend.h"

#include <string.h>

#include "base/status.h"

synco_status synco_backend_create(const char *name, synco_backend **out) {
  *out = NULL;
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
