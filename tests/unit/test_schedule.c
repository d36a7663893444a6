/* Learning-rate schedule: cosine values by epoch (constant within an epoch), step milestones, linear warm-up
 * per step, and the config checks. */
#include <math.h>

#include "optim/schedule.h"
#include "test_util.h"

static int near(float a, double b) { return fabs((double)a - b) <= 1e-7 + 1e-6 * fabs(b); }

int main(void) {
  synco_lr_schedule s = {.lr = 0.06f, .epochs = 200, .cos = 1};
  CHECK_OK(synco_lr_schedule_check(&s));
  CHECK(near(synco_lr_at(&s, 0, 0, 100), 0.06));
  CHECK(near(synco_lr_at(&s, 100, 0, 100), 0.03));
  CHECK(near(synco_lr_at(&s, 50, 0, 100), 0.06 * 0.5 * (1 + cos(M_PI / 4))));
  CHECK(near(synco_lr_at(&s, 199, 99, 100), 0.06 * 0.5 * (1 + cos(M_PI * 199 / 200))));
  CHECK(synco_lr_at(&s, 50, 0, 100) == synco_lr_at(&s, 50, 99, 100)); /* per epoch, as the official code */
  CHECK(synco_lr_at(&s, 51, 0, 100) < synco_lr_at(&s, 50, 0, 100));
  /* past the schedule's end (a run longer than its schedule): the last epoch's rate, not the cosine rising again */
  CHECK(synco_lr_epoch(&s, 200) == synco_lr_epoch(&s, 199));
  CHECK(synco_lr_epoch(&s, 350) == synco_lr_epoch(&s, 199));

  synco_lr_schedule st = {.lr = 0.03f, .epochs = 200, .cos = 0, .n_milestones = 2, .milestones = {120, 160}};
  CHECK_OK(synco_lr_schedule_check(&st));
  CHECK(near(synco_lr_at(&st, 0, 0, 10), 0.03));
  CHECK(near(synco_lr_at(&st, 119, 9, 10), 0.03));
  CHECK(near(synco_lr_at(&st, 120, 0, 10), 0.003));
  CHECK(near(synco_lr_at(&st, 159, 0, 10), 0.003));
  CHECK(near(synco_lr_at(&st, 160, 0, 10), 0.0003));
  CHECK(near(synco_lr_at(&st, 199, 0, 10), 0.0003));

  /* warm-up over 2 epochs of 4 steps on top of the cosine */
  synco_lr_schedule w = {.lr = 0.8f, .epochs = 10, .cos = 1, .warmup_epochs = 2};
  CHECK(near(synco_lr_at(&w, 0, 0, 4), 0.8 / 8));
  CHECK(near(synco_lr_at(&w, 0, 3, 4), 0.8 * 4 / 8));
  CHECK(near(synco_lr_at(&w, 1, 3, 4), 0.8 * 0.5 * (1 + cos(M_PI / 10))));
  CHECK(near(synco_lr_at(&w, 1, 1, 4), 0.8 * 0.5 * (1 + cos(M_PI / 10)) * 6 / 8));
  CHECK(near(synco_lr_at(&w, 2, 0, 4), 0.8 * 0.5 * (1 + cos(M_PI * 2 / 10))));

  synco_lr_schedule bad = s;
  bad.lr = 0.f;
  CHECK(synco_lr_schedule_check(&bad) == SYNCO_ERR_ARG);
  bad = s;
  bad.epochs = 0;
  CHECK(synco_lr_schedule_check(&bad) == SYNCO_ERR_ARG);
  bad = st;
  bad.n_milestones = SYNCO_MAX_MILESTONES + 1;
  CHECK(synco_lr_schedule_check(&bad) == SYNCO_ERR_ARG);
  bad = w;
  bad.warmup_epochs = -1;
  CHECK(synco_lr_schedule_check(&bad) == SYNCO_ERR_ARG);
  return synco_test_finish("schedule");
}
