/* Encoding a whole dataset with a frozen backbone: the feature matrix that kNN, the fast linear probe,
 * `embed` and `analyze` work on. Images go through the evaluation transform (resize + center crop, or
 * nothing for images already at the encoder's size), in dataset order, in batches of the encoder's size. */
#ifndef SYNCO_EVAL_FEATURES_H
#define SYNCO_EVAL_FEATURES_H

#include "data/data.h"
#include "nn/encoder.h"

/* feats [size(ds), feature_dim] (not normalized); labels [size(ds)] or NULL. mean/std: Normalize's. */
synco_status synco_features_compute(float *feats, int *labels, synco_encoder *enc, const synco_dataset *ds,
                                    const float mean[3], const float std[3], int workers);

#endif
