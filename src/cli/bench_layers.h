/* `synco bench step|fwdbwd --layers`: the op tables of the timed iterations (base/op_times.h), merged into one row
 * per op (the query encoder's and the key encoder's layers by name) and printed as a table, or as JSON. */
#ifndef SYNCO_CLI_BENCH_LAYERS_H
#define SYNCO_CLI_BENCH_LAYERS_H

#include <stdio.h>

#include "base/op_times.h"

typedef struct {
  char name[48], op[24];
  double fwd, key_fwd, bwd_data, bwd_weights; /* seconds per iteration */
} synco_bench_layer;

typedef struct {
  synco_bench_layer *rows;
  int n, cap;
} synco_bench_layers;

/* Adds n entries of an op table, their seconds divided by iters; key = 1: a key encoder's (its forward goes to
 * key_fwd). Rows of the same name and op are merged; the first table added sets the order. Returns 0, or -1 out of
 * memory (with the error recorded, synco_last_error). */
int synco_bench_layers_add(synco_bench_layers *L, const synco_op_time *e, int n, int iters, int key);
/* The table, a line per op in model order, then the time by kind of op against the step's step_s seconds. */
void synco_bench_layers_print(const synco_bench_layers *L, double step_s, FILE *f);
/* ,"layers":[{"name":...,"op":...,"fwd_ms":...,"key_fwd_ms":...,"bwd_data_ms":...,"bwd_weights_ms":...},...],
 * "layers_sum_ms":... (to be printed inside a JSON object) */
void synco_bench_layers_json(const synco_bench_layers *L, FILE *f);
void synco_bench_layers_free(synco_bench_layers *L);

#endif
