/* Sample selection and batch assembly for the evaluation commands: class-balanced, seed-determined label
 * subsets (semi-supervised fine-tuning's 1% / 10% / N per class), held-out parts of a labelled set, and a
 * batcher that decodes and transforms any list of dataset indices into a normalized batch (OpenMP over the
 * images), so commands can encode or train on a subset without a second copy of the dataset. Randomness of an
 * image's transform is keyed by (seed, epoch, dataset index, purpose): the same for any batch composition or
 * thread count. */
#ifndef SYNCO_EVAL_SUBSET_H
#define SYNCO_EVAL_SUBSET_H

#include <stddef.h>
#include <stdint.h>

#include "base/progress.h"
#include "data/data.h"
#include "nn/encoder.h"
#include "synco.h"

/* "1%" / "10%" / "2.5%" -> *fraction in (0, 1], *per_class = 0; "N" (integer >= 1) -> *per_class = N. */
synco_status synco_label_spec_parse(const char *spec, double *fraction, int *per_class);

/* Class-balanced subset: from each class c with n_c samples, per_class samples (all of them if fewer), or with
 * per_class = 0 round(fraction * n_c) (at least 1), chosen by a Fisher-Yates shuffle of the class's indices keyed
 * by (seed, class, SYNCO_RNG_SPLIT). *idx (malloc'ed) lists them in increasing order. Samples with labels
 * outside [0, C) are never chosen. */
synco_status synco_subset_balanced(uint32_t **idx, size_t *count, const int *labels, size_t n, int C,
                                   double fraction, int per_class, uint64_t seed);

/* Splits [0, n) into the last `per_class` samples of each class in dataset order (*held) and the rest (*rest);
 * both malloc'ed and in increasing order. */
synco_status synco_split_last_per_class(uint32_t **rest, size_t *n_rest, uint32_t **held, size_t *n_held,
                                        const int *labels, size_t n, int C, int per_class);

/* All labels of a dataset (no decoding): labels[size(ds)]. */
void synco_dataset_labels(const synco_dataset *ds, int *labels);

typedef struct synco_batcher synco_batcher;

synco_status synco_batcher_create(synco_batcher **out, const synco_dataset *ds, const synco_aug_config *aug);
void synco_batcher_free(synco_batcher *b);
const synco_aug_config *synco_batcher_aug(const synco_batcher *b);
/* x[n, 3, S, S] (and labels[n] when non-NULL) for the dataset images idx[0..n). */
synco_status synco_batcher_fill(synco_batcher *b, float *x, int *labels, const uint32_t *idx, int n, uint64_t seed,
                                int epoch, uint32_t purpose);

/* Runs the images idx[0..n) (all of the dataset, in order, when idx is NULL) through enc in eval mode, in
 * batches of the encoder's size: backbone features (use_head = 0, [n, feature_dim]) or the head's output
 * (use_head = 1, [n, out_dim]), not normalized. labels (optional) [n]. prog (optional) is advanced per batch. */
synco_status synco_encode_subset(float *out, int *labels, synco_encoder *enc, synco_batcher *b, const uint32_t *idx,
                                 size_t n, uint64_t seed, int epoch, uint32_t purpose, int use_head,
                                 synco_progress *prog);

#endif
