/* The tiny MoCo-v2 / SynCo configuration of the whole-step tests (tests/unit/step_compare.h, test_step_record.c,
 * tests/mpi/test_dist_mpi.c): ResNet-18 at width 8 with the CIFAR stem and an MLP head of 16, m 0.99, T 0.2, SGD
 * momentum 0.9 and weight decay 5e-4; with `negatives` the synthetic counts n1..n6 = 8, 8, 8, 4, 4, 4 from a hard
 * set of n_hard. */
#ifndef SYNCO_TEST_MOCO_H
#define SYNCO_TEST_MOCO_H

#include "ssl/moco.h"

static inline synco_moco_config synco_test_moco_config(int image_size, int batch, int K, int bn_splits, int symmetric,
                                                       int negatives, int n_hard, uint64_t seed) {
  synco_moco_config cfg = {0};
  cfg.enc = (synco_encoder_config){.depth = 18, .width = 8, .cifar_stem = 1, .head = 1, .mlp = 1, .dim = 16,
                                   .bn_splits = bn_splits};
  cfg.image_size = image_size;
  cfg.batch = batch;
  cfg.K = K;
  cfg.m = 0.99f;
  cfg.T = 0.2f;
  cfg.symmetric = symmetric;
  if (negatives) cfg.neg = (synco_negatives_config){.n_hard = n_hard, .n = {8, 8, 8, 4, 4, 4}, .sigma = 0.01f,
                                                     .delta = 0.01f, .eta = 0.01f};
  cfg.momentum = 0.9f;
  cfg.wd = 5e-4f;
  cfg.seed = seed;
  return cfg;
}

#endif
