/* Encoder weight files (safetensors): an encoder's parameters and BN buffers under torchvision names, read and
 * written through io/checkpoint.h's named buffers. A pretraining checkpoint holds "encoder_q.<torchvision name>",
 * "encoder_k.<name>" (parameters and BN buffers), "momentum.<name>", "queue", "queue_ptr", and metadata: the
 * resolved config as JSON, epoch, step, RNG seed. An exported encoder holds plain torchvision names. Both are read
 * by the functions here. */
#ifndef SYNCO_NN_ENCODER_WEIGHTS_H
#define SYNCO_NN_ENCODER_WEIGHTS_H

#include "io/checkpoint.h"
#include "nn/encoder.h"
#include "synco.h"

/* The largest |value| a weight file may hold. Training from torchvision's initialization keeps weights of order 1
 * and BN running statistics many orders below this (weight decay pulls every value towards 0), while a value this
 * large already makes BN's variance, a sum of squared activations each up to |w|·|x|·fan-in (fan-in up to
 * 3·3·4096), approach fp32's 3.4e38 within a layer or two: a file beyond it (a 3e38 weight) is damaged or crafted,
 * and features computed from it would be inf or noise. */
#define SYNCO_WEIGHTS_MAX_ABS 1e10f

/* Refuses a file whose float tensors hold a value that cannot be right, naming the tensor, the value and where: NaN
 * or inf, |value| > SYNCO_WEIGHTS_MAX_ABS, or a BN running variance ("*.running_var") that is not > 0. One pass. */
synco_status synco_weights_check_values(const synco_safetensors *st);

/* Reads the encoder architecture and image size stored in a checkpoint's or export's metadata (or inferred
 * from a torchvision state_dict's shapes), refusing a claim the tensors do not back (width, stem, depth,
 * head/dim) and any value synco_weights_check_values refuses, so that callers may size an encoder by it. The one
 * judge of a file's "synco.encoder": knn, embed, export, analyze, linear, finetune and pretrain --resume. */
synco_status synco_weights_read_config(const char *path, synco_encoder_config *cfg, int *image_size);
/* The same for a file already open. */
synco_status synco_weights_read_config_st(const synco_safetensors *st, synco_encoder_config *cfg, int *image_size);
/* Loads weights into enc from a checkpoint (which = "query" or "key") or an export (which ignored).
 * Backbone weights are required; head weights are loaded when enc has a head and the file has them.
 * strict = 1: any missing key is an error. Unused keys are listed in the message when report is non-NULL. */
synco_status synco_weights_load(synco_encoder *enc, const char *path, const char *which, int strict);
/* (synco_weights_load and synco_weights_load_report refuse what synco_weights_check_values refuses, too.) */

/* For --init: loads every tensor of the file whose torchvision name the encoder has (a checkpoint's query
 * encoder, an export, or a torchvision state_dict converted to safetensors), and describes in `report` (at most
 * n bytes; "" when all matched) the file's unexpected keys and the encoder tensors the file lacks, which keep
 * their initial values. A shape mismatch, or a file with no matching tensor, is an error. */
synco_status synco_weights_load_report(synco_encoder *enc, const char *path, char *report, size_t n);

/* Adds every parameter and BN buffer of enc to a writer as "<prefix><torchvision name>" (fp32), and the
 * architecture as metadata "synco.encoder" (JSON). The values are those of the call (downloaded into the
 * writer's memory), whatever happens to the encoder before synco_st_write. */
synco_status synco_weights_add(synco_st_writer *w, synco_encoder *enc, const char *prefix);

/* The "synco.encoder" metadata JSON for an encoder (caller frees); _for: of a config and an image size (an encoder
 * made only to hold weights may be built for another size). */
char *synco_weights_config_json(const synco_encoder *enc);
char *synco_weights_config_json_for(const synco_encoder_config *cfg, int image_size);

#endif
