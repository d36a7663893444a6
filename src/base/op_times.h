/* A table of where a step's time goes, op by op: `synco bench step --layers` and `bench fwdbwd --layers`.
 *
 * Each entry is one op of a model (a layer, named as torchvision names its module: "layer1.0.conv1", "layer1.0.bn1",
 * "fc.0"; or a piece of the step: "loss", "sgd") with its seconds and calls per pass. The caller times a call (after
 * waiting for its backend, so that an asynchronous one is timed running, not launching) and adds it here; a call
 * site keeps the entry's number (`slot`: 0 before the first add, then its index + 1, so that a zeroed struct starts
 * right), and an add costs no search. */
#ifndef SYNCO_BASE_OP_TIMES_H
#define SYNCO_BASE_OP_TIMES_H

enum { SYNCO_PASS_FWD, SYNCO_PASS_BWD_DATA, SYNCO_PASS_BWD_WEIGHTS, SYNCO_NPASS }; /* a non-conv op's backward: DATA */

typedef struct {
  char name[48];          /* "layer1.0.conv1" */
  char op[24];            /* "conv", "bn", "add+relu", "relu", "pool", "linear", "copy", or "step" (a step's piece) */
  double seconds[SYNCO_NPASS];
  long calls[SYNCO_NPASS];
} synco_op_time;

typedef struct {
  synco_op_time *e;
  int n, cap;
} synco_op_times;

/* Adds s seconds of one call of pass `pass` to the entry *slot (made, with `name` and `op`, when *slot is 0).
 * Returns 0, or -1 when the table could not grow (nothing added). */
int synco_op_times_add(synco_op_times *t, int *slot, const char *name, const char *op, int pass, double s);
/* Every entry's seconds and calls back to 0 (the entries and slots stay). */
void synco_op_times_reset(synco_op_times *t);
void synco_op_times_free(synco_op_times *t);

#endif
