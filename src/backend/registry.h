/* The backend registry: creating a backend by name, and each backend's own constructor. This is the one place
 * above the backends' folders that knows which concrete backends exist and which are built in; everything else
 * sees only the op table (tensor/backend.h). */
#ifndef SYNCO_BACKEND_REGISTRY_H
#define SYNCO_BACKEND_REGISTRY_H

#include "synco.h"
#include "tensor/backend.h"

/* By name: "ref", "onednn", or "auto" (oneDNN when built with it, else ref). */
synco_status synco_backend_create(const char *name, synco_backend **out);
void synco_backend_destroy(synco_backend *be);

/* The backends, directly (tests that need one particular backend). */
synco_status synco_backend_ref_create(synco_backend **out);
#ifdef SYNCO_HAVE_ONEDNN
synco_status synco_backend_onednn_create(synco_backend **out);
#endif

#endif
