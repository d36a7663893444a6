/* Learning-rate schedules of MoCo's adjust_learning_rate: cosine by epoch, lr·½(1 + cos(π·e/E)), or step decay
 * (×0.1 at each milestone epoch reached), with an optional linear warm-up over the first epochs, per step. The one
 * schedule code of the project: pretraining, the linear classifier (`synco linear`) and fine-tuning use it. */
#ifndef SYNCO_OPTIM_SCHEDULE_H
#define SYNCO_OPTIM_SCHEDULE_H

#include "synco.h"

#define SYNCO_MAX_MILESTONES 16

typedef struct {
  double lr;                            /* base learning rate (double: the evaluations' rates are given as such) */
  int epochs;                           /* E */
  int cos;                              /* 1: cosine by epoch; 0: step milestones */
  int n_milestones;
  int milestones[SYNCO_MAX_MILESTONES]; /* epochs at which the rate is multiplied by 0.1 */
  int warmup_epochs;                    /* W: linear warm-up from lr/(W·steps) to the schedule, 0 = off */
} synco_lr_schedule;

/* Checks lr > 0 finite, epochs ≥ 1, 0 ≤ milestones count ≤ SYNCO_MAX_MILESTONES, warmup_epochs ≥ 0. */
synco_status synco_lr_schedule_check(const synco_lr_schedule *s);

/* Rate of epoch `epoch` (0-based) by the cosine or step rule, without warm-up, in double: what the evaluations'
 * optimizers run at (they have no warm-up) and report. An epoch past the cosine schedule's end (epoch >= E: a run
 * longer than its schedule, pretrain --schedule-epochs) keeps the rate of its last epoch, E - 1. */
double synco_lr_epoch(const synco_lr_schedule *s, int epoch);

/* Rate for step `step` (0-based) of epoch `epoch` (0-based) with steps_per_epoch steps per epoch. The cosine and
 * step parts change once per epoch, as the official code; during warm-up the rate is that value times
 * (epoch·steps_per_epoch + step + 1) / (W·steps_per_epoch). */
float synco_lr_at(const synco_lr_schedule *s, int epoch, int step, int steps_per_epoch);

#endif
