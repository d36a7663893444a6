/* Progress reporting for long work: a one-line bar redrawn in place on a terminal (rate, ETA and a caller
 * text such as the loss), or a plain line every `every` steps when stderr is not a terminal. */
#ifndef SYNCO_BASE_PROGRESS_H
#define SYNCO_BASE_PROGRESS_H

#include <stdio.h>

typedef struct {
  FILE *out;
  int tty;
  const char *label;     /* e.g. "epoch 3/200" */
  long total, done;
  double t0, last_draw;
  double items_per_step; /* for the rate: images per step */
  int every;             /* plain-line interval when not a terminal */
} synco_progress;

double synco_now(void);  /* monotonic seconds */
void synco_progress_begin(synco_progress *p, const char *label, long total, double items_per_step, int every);
/* Marks `done` steps complete; `text` is appended (loss etc.). */
void synco_progress_update(synco_progress *p, long done, const char *text);
void synco_progress_end(synco_progress *p, const char *text);

#endif
