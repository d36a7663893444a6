/* Learning-rate schedule: the per-epoch cosine or step rule of MoCo, times an optional per-step linear warm-up.
 * Computed in double from the epoch so that a resumed run gets exactly the same rates. */
#include "optim/schedule.h"

#include <math.h>

#include "base/status.h"

synco_status synco_lr_schedule_check(const synco_lr_schedule *s) {
  if (!(s->lr > 0.f) || !isfinite(s->lr)) return synco_fail(SYNCO_ERR_ARG, "lr = %g, expected > 0", (double)s->lr);
  if (s->epochs < 1) return synco_fail(SYNCO_ERR_ARG, "epochs = %d, expected >= 1", s->epochs);
  if (s->n_milestones < 0 || s->n_milestones > SYNCO_MAX_MILESTONES)
    return synco_fail(SYNCO_ERR_ARG, "%d schedule milestones, expected 0..%d", s->n_milestones, SYNCO_MAX_MILESTONES);
  if (s->warmup_epochs < 0) return synco_fail(SYNCO_ERR_ARG, "warm-up epochs = %d, expected >= 0", s->warmup_epochs);
  return SYNCO_OK;
}

double synco_lr_epoch(const synco_lr_schedule *s, int epoch) {
  double lr = s->lr;
  if (s->cos) { /* past the schedule's end: its last epoch's rate */
    lr *= 0.5 * (1.0 + cos(M_PI * (double)(epoch < s->epochs ? epoch : s->epochs - 1) / (double)s->epochs));
  } else {
    for (int i = 0; i < s->n_milestones; i++)
      if (epoch >= s->milestones[i]) lr *= 0.1;
  }
  return lr;
}

float synco_lr_at(const synco_lr_schedule *s, int epoch, int step, int steps_per_epoch) {
  double lr = synco_lr_epoch(s, epoch);
  if (s->warmup_epochs > 0 && epoch < s->warmup_epochs && steps_per_epoch > 0) {
    const double done = (double)epoch * steps_per_epoch + step + 1;
    lr *= done / ((double)s->warmup_epochs * steps_per_epoch);
  }
  return (float)lr;
}
