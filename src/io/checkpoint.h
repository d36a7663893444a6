/* Named backend buffers (tensor/tensor.h: a parameter block, a BN statistic, a momentum buffer, the queue) in
 * safetensors files, their bytes moved only through the owning backend's copy op: downloaded into host memory the
 * writer owns for a save, uploaded from a host copy for a load, so any backend's memory works. What the buffers are
 * is the callers' business (nn/encoder_weights.h for an encoder, ssl/moco.c for a training checkpoint). */
#ifndef SYNCO_IO_CHECKPOINT_H
#define SYNCO_IO_CHECKPOINT_H

#include "io/safetensors.h"
#include "synco.h"
#include "tensor/backend.h"

/* Named backend buffers (tensor/tensor.h) in safetensors files, through be's copy op, for any part of a
 * checkpoint: add_buffers downloads n buffers into host memory the writer owns and adds them as
 * "<prefix><name>" (fp32); get_buffer reads tensor `key` of st (its shape checked, NaN/inf refused, as
 * synco_st_get_f32) into a host copy and uploads it into b (b untouched on failure). */
synco_status synco_weights_add_buffers(synco_st_writer *w, synco_backend *be, const char *prefix,
                                       const synco_named_buffer *b, int n);
synco_status synco_weights_get_buffer(const synco_safetensors *st, synco_backend *be, const char *key,
                                      const synco_named_buffer *b);

#endif
