/* The trained model of `synco linear --out` / `synco finetune --out` as one safetensors file that torchvision
 * loads as it is: the backbone under torchvision's key names (as `synco export` writes it) plus the classifier
 * as "fc.weight" [C, d] and "fc.bias" [C], fp32, so that torchvision.models.resnet18(num_classes=C) takes it with
 * strict=True at width 64 (README: the recipe for other widths). Metadata: "synco.encoder" (architecture),
 * "synco.format" = "classifier", "synco.classes" (JSON array of the class names, in label order) and whatever
 * key/value pairs the caller adds (preprocessing, the evaluation's result). */
#ifndef SYNCO_EVAL_MODEL_OUT_H
#define SYNCO_EVAL_MODEL_OUT_H

#include "nn/encoder.h"
#include "synco.h"

/* Writes path atomically. enc: a backbone without head; w [classes, feature_dim], b [classes]; class_names:
 * [classes] (entries may be NULL: the label number is used); meta: NULL-terminated key, value pairs (or NULL). */
synco_status synco_model_out_write(const char *path, synco_encoder *enc, const float *w, const float *b, int classes,
                                   const char *const *class_names, const char *const *meta);

/* Refuses an --out before any work is done: an empty name, a folder, the input model's own file (same inode), or
 * a folder that does not exist or cannot be written to. `what` names the flag in messages. */
synco_status synco_model_out_check(const char *path, const char *input, const char *what);

#endif
