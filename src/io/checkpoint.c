/* Named backend buffers in safetensors files, through the backend's copy (checkpoint.h). */
#include "io/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/status.h"

synco_status synco_weights_add_buffers(synco_st_writer *w, synco_backend *be, const char *prefix,
                                       const synco_named_buffer *b, int n) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += b[i].numel;
  float *host = synco_st_writer_hold(w, total * sizeof(float));
  if (!host) return SYNCO_ERR_NOMEM;
  char name[160];
  for (int i = 0; i < n; i++) {
    SYNCO_TRY(be->copy(be, host, b[i].data, b[i].numel * sizeof(float), SYNCO_COPY_D2H));
    snprintf(name, sizeof name, "%s%s", prefix, b[i].name);
    SYNCO_TRY(synco_st_add_f32(w, name, host, b[i].ndim, b[i].shape));
    host += b[i].numel;
  }
  return be->sync(be); /* the host copies are complete before anyone reads them */
}

synco_status synco_weights_get_buffer(const synco_safetensors *st, synco_backend *be, const char *key,
                                      const synco_named_buffer *b) {
  float *host = malloc((b->numel ? b->numel : 1) * sizeof(float));
  if (!host) return synco_fail(SYNCO_ERR_NOMEM, "out of memory reading tensor '%s' (%zu floats)", key, b->numel);
  synco_status s = synco_st_get_f32(st, key, host, b->numel, b->shape, b->ndim);
  if (!s) s = be->copy(be, b->data, host, b->numel * sizeof(float), SYNCO_COPY_H2D);
  if (!s) s = be->sync(be); /* before the staging copy goes */
  free(host);
  return s;
}
