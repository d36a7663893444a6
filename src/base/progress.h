/* Progress reporting for long work: a one-line bar redrawn in place on a terminal (rate, ETA and a caller
 * text such as the loss), cut to the terminal's width so that a redraw never wraps, or a plain line every `every`
 * steps when stderr is not a terminal. With synco_progress_run() the ETA of the whole run is shown as well.
 * And the stop request of a long job: SIGINT / SIGTERM set a flag that the job checks between its steps. */
#ifndef SYNCO_BASE_PROGRESS_H
#define SYNCO_BASE_PROGRESS_H

#include <stdio.h>

typedef struct {
  FILE *out;             /* stderr; NULL after begin: nothing is drawn */
  int tty;
  const char *label;     /* e.g. "epoch 3/200" */
  long total, done;
  double t0, last_draw;
  double items_per_step; /* for the rate: images per step */
  int every;             /* plain-line interval when not a terminal */
  long run_before, run_total; /* steps of the whole run done before this bar, and in all (0: no run ETA) */
} synco_progress;

double synco_now(void);  /* monotonic seconds */
void synco_progress_begin(synco_progress *p, const char *label, long total, double items_per_step, int every);
/* This bar is part of a longer run: run_before steps of run_total were done before it (at the same rate). */
void synco_progress_run(synco_progress *p, long run_before, long run_total);
/* Marks `done` steps complete; `text` is appended (loss etc.). */
void synco_progress_update(synco_progress *p, long done, const char *text);
void synco_progress_end(synco_progress *p, const char *text);
/* Columns of the terminal behind f: TIOCGWINSZ, else $COLUMNS, else 80. */
int synco_terminal_width(FILE *f);

/* Stop requests: synco_stop_install(1) makes SIGINT and SIGTERM set a flag (a second one kills as usual);
 * synco_stop_install(0) restores the default handlers. synco_stop_requested() is the signal number (0: none). */
void synco_stop_install(int on);
int synco_stop_requested(void);

#endif
