/* Counter-based random numbers (Philox-4x32-10).
 * A stream is keyed by (seed, epoch, sample, purpose): the same key always gives the same numbers,
 * whatever thread draws them and in whatever order, so runs are reproducible for any thread count and
 * a resumed run continues the same streams. A stream is a small value type; copy it freely. */
#ifndef SYNCO_BASE_RNG_H
#define SYNCO_BASE_RNG_H

#include <stdint.h>

#include "kernels/philox_kernel.h" /* the stream type and synco_rng_make/u32/uniform/uniform_d/range/below */

/* What a stream is for; part of its key so that two uses never share numbers. */
typedef enum {
  SYNCO_RNG_INIT = 1,      /* parameter initialization (sample = parameter index) */
  SYNCO_RNG_SHUFFLE,       /* per-epoch dataset order (sample = rank) */
  SYNCO_RNG_AUG_Q,         /* augmentation of the query view (sample = dataset index) */
  SYNCO_RNG_AUG_K,         /* augmentation of the key view */
  SYNCO_RNG_QUEUE_INIT,    /* the initial random queue */
  SYNCO_RNG_NEGATIVES,     /* synthetic negatives (sample = global step) */
  SYNCO_RNG_SPLIT,         /* label subsets, held-out splits */
  SYNCO_RNG_EVAL,          /* evaluation-time augmentation and shuffles */
  SYNCO_RNG_KEY_SHUFFLE,   /* the batch permutation before the key encoder (epoch = global step) */
  SYNCO_RNG_TEST = 100,    /* tests */
} synco_rng_purpose;

/* Standard normal. */
float synco_rng_normal(synco_rng *r);
/* Fisher-Yates shuffle of perm[0..n) in place. */
void synco_rng_shuffle(synco_rng *r, uint32_t *perm, uint32_t n);

#endif
