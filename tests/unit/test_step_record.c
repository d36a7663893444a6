/* A training step downloads nothing and never waits for the backend: its loss and accuracies stay in a record in
 * backend memory (tensor/loss_record.h) that synco_moco_read_stats reads once per log interval. On the strict
 * backend, which counts downloads and syncs (where a GPU's host would wait):
 *  - steps without a read make no download and no sync; a read makes one download;
 *  - a read after n steps reports the means of what n reads of one step each report (the same sums, to 1e-12);
 *  - a non-finite loss (NaN images from one step on) is reported by the next read, naming the first bad step,
 *    and the read after that starts clean.
 * MoCo-v2, and SynCo with the symmetric loss (two loss calls per step). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "ssl/moco.h"
#include "test_moco.h"
#include "test_util.h"

enum { B = 8, S = 16, STEPS = 3 };

static void images(float *xq, float *xk, int step, int nan) {
  const size_t n = (size_t)B * 3 * S * S;
  synco_test_fill(xq, n, 100 + step, -2.f, 2.f);
  synco_test_fill(xk, n, 200 + step, -2.f, 2.f);
  if (nan) xq[7] = NAN;
}

static void close_to(const char *what, double got, double want) {
  if (!(fabs(got - want) <= 1e-12 + 1e-12 * fabs(want))) {
    fprintf(stderr, "%s: read over %d steps %.17g, mean of per-step reads %.17g\n", what, STEPS, got, want);
    CHECK(0);
  }
}

static void one_case(int symmetric, int negatives) {
  const synco_moco_config cfg = synco_test_moco_config(S, B, 32, 2, symmetric, negatives, 16, 5);
  synco_backend *be = NULL;
  CHECK_OK(synco_backend_strict_create(&be));
  synco_moco *each = NULL, *once = NULL;
  CHECK_OK(synco_moco_create(&each, be, &cfg));
  CHECK_OK(synco_moco_create(&once, be, &cfg));
  if (!each || !once) return;
  const size_t n = (size_t)B * 3 * S * S;
  float *xq = malloc(n * sizeof *xq), *xk = malloc(n * sizeof *xk);
  synco_step_stats mean = {0}, st;
  for (int step = 0; step < STEPS; step++) {
    images(xq, xk, step, 0);
    CHECK_OK(synco_moco_step(each, xq, xk, 0.06f, negatives, (uint64_t)step, &st));
    CHECK(st.steps == 1);
    mean.loss += st.loss / STEPS;
    mean.acc += st.acc / STEPS;
    mean.loss_moco += st.loss_moco / STEPS;
    mean.acc_moco += st.acc_moco / STEPS;
    long d0, s0, d1, s1;
    synco_backend_strict_counts(be, &d0, &s0);
    CHECK_OK(synco_moco_step(once, xq, xk, 0.06f, negatives, (uint64_t)step, NULL));
    synco_backend_strict_counts(be, &d1, &s1);
    if (d1 != d0 || s1 != s0) fprintf(stderr, "step %d: %ld downloads, %ld syncs\n", step, d1 - d0, s1 - s0);
    CHECK(d1 == d0 && s1 == s0);
  }
  long d0, s0, d1, s1;
  synco_backend_strict_counts(be, &d0, &s0);
  CHECK_OK(synco_moco_read_stats(once, &st));
  synco_backend_strict_counts(be, &d1, &s1);
  CHECK(d1 - d0 == 1);
  CHECK(st.steps == STEPS);
  CHECK(st.synthetic == (negatives ? 36 : 0));
  CHECK(isfinite(st.loss) && st.loss > 0);
  close_to("loss", st.loss, mean.loss);
  close_to("acc", st.acc, mean.acc);
  close_to("loss_moco", st.loss_moco, mean.loss_moco);
  close_to("acc_moco", st.acc_moco, mean.acc_moco);

  /* NaN images from step STEPS + 1 on: the steps run on, the read names the first bad one */
  CHECK(synco_moco_bad_step(once) == -1);
  for (int step = STEPS; step < STEPS + 3; step++) {
    images(xq, xk, step, step > STEPS);
    CHECK_OK(synco_moco_step(once, xq, xk, 0.06f, negatives, (uint64_t)step, NULL));
  }
  CHECK(synco_moco_read_stats(once, &st) == SYNCO_ERR_NUMERIC);
  CHECK(synco_moco_bad_step(once) == STEPS + 1);
  CHECK(strstr(synco_last_error(), "non-finite loss at step 4") != NULL);
  CHECK(st.steps == 3);
  CHECK_OK(synco_moco_read_stats(once, &st)); /* the record was zeroed by the read */
  CHECK(st.steps == 0);
  free(xq);
  free(xk);
  synco_moco_free(each);
  synco_moco_free(once);
  synco_backend_destroy(be);
}

int main(void) {
  one_case(0, 0);
  one_case(1, 1);
  return synco_test_finish("step_record");
}
