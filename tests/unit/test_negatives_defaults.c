/* Synthetic counts that follow the queue (synco_negatives_scale_defaults): unset n_hard is min(1024, K/4), unset
 * counts are capped at n_hard, given values are kept, and the result passes synco_negatives_check. */
#include <string.h>

#include "ssl/negatives.h"
#include "test_util.h"

static synco_negatives_config synco_preset(void) {
  synco_negatives_config c = {.n_hard = 1024, .n = {256, 256, 256, 64, 64, 64}, .sigma = 0.01f, .delta = 0.01f, .eta = 0.01f};
  return c;
}

int main(void) {
  const int none[6] = {0, 0, 0, 0, 0, 0};
  /* the paper's queue and the CIFAR recipe's keep the paper's counts */
  synco_negatives_config c = synco_preset();
  synco_negatives_scale_defaults(&c, 65536, 0, none);
  CHECK(c.n_hard == 1024 && c.n[0] == 256 && c.n[5] == 64);
  c = synco_preset();
  synco_negatives_scale_defaults(&c, 4096, 0, none);
  CHECK(c.n_hard == 1024 && c.n[0] == 256 && c.n[3] == 64);
  CHECK_OK(synco_negatives_check(&c, 4096));
  /* K = 256: n_hard 64, every count at most 64 */
  c = synco_preset();
  synco_negatives_scale_defaults(&c, 256, 0, none);
  CHECK(c.n_hard == 64);
  for (int t = 0; t < 6; t++) CHECK(c.n[t] == 64);
  CHECK_OK(synco_negatives_check(&c, 256));
  /* K = 64: n_hard 16; tiny queues still get n_hard >= 1 */
  c = synco_preset();
  synco_negatives_scale_defaults(&c, 64, 0, none);
  CHECK(c.n_hard == 16 && c.n[0] == 16 && c.n[3] == 16);
  CHECK_OK(synco_negatives_check(&c, 64));
  c = synco_preset();
  synco_negatives_scale_defaults(&c, 2, 0, none);
  CHECK(c.n_hard == 1 && c.n[0] == 1);
  CHECK_OK(synco_negatives_check(&c, 2));
  /* a given n_hard is kept and caps the unset counts; given counts are kept (the check judges them) */
  c = synco_preset();
  synco_negatives_scale_defaults(&c, 256, 1, none);
  CHECK(c.n_hard == 1024 && c.n[0] == 256);
  CHECK(synco_negatives_check(&c, 256) == SYNCO_ERR_ARG);
  c = synco_preset();
  c.n_hard = 32;
  synco_negatives_scale_defaults(&c, 256, 1, none);
  CHECK(c.n_hard == 32 && c.n[0] == 32 && c.n[4] == 32);
  const int n1_given[6] = {1, 0, 0, 0, 0, 0};
  c = synco_preset();
  c.n[0] = 100;
  synco_negatives_scale_defaults(&c, 256, 0, n1_given);
  CHECK(c.n_hard == 64 && c.n[0] == 100 && c.n[1] == 64);
  CHECK(synco_negatives_check(&c, 256) == SYNCO_ERR_ARG);
  /* MoCo (all counts 0) stays all 0 */
  c = synco_preset();
  memset(c.n, 0, sizeof c.n);
  synco_negatives_scale_defaults(&c, 256, 0, none);
  CHECK(synco_negatives_total(&c) == 0);
  return synco_test_finish("negatives_defaults");
}
