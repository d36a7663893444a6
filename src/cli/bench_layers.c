/* The per-op table of `bench --layers` (cli/bench_layers.h). */
#include "cli/bench_layers.h"

#include <stdlib.h>
#include <string.h>

#include "base/status.h"

static double row_total(const synco_bench_layer *r) { return r->fwd + r->key_fwd + r->bwd_data + r->bwd_weights; }

int synco_bench_layers_add(synco_bench_layers *L, const synco_op_time *e, int n, int iters, int key) {
  const double per = iters > 0 ? 1.0 / iters : 0;
  for (int i = 0; i < n; i++) {
    synco_bench_layer *r = NULL;
    for (int j = 0; j < L->n && !r; j++)
      if (!strcmp(L->rows[j].name, e[i].name) && !strcmp(L->rows[j].op, e[i].op)) r = &L->rows[j];
    if (!r) {
      if (L->n == L->cap) {
        const int cap = L->cap ? 2 * L->cap : 64;
        synco_bench_layer *rows = realloc(L->rows, (size_t)cap * sizeof *rows);
        if (!rows) {
          synco_fail(SYNCO_ERR_NOMEM, "bench --layers: out of memory for %d rows", cap);
          return -1;
        }
        L->rows = rows;
        L->cap = cap;
      }
      r = &L->rows[L->n++];
      memset(r, 0, sizeof *r);
      snprintf(r->name, sizeof r->name, "%s", e[i].name);
      snprintf(r->op, sizeof r->op, "%s", e[i].op);
    }
    *(key ? &r->key_fwd : &r->fwd) += e[i].seconds[SYNCO_PASS_FWD] * per;
    r->bwd_data += e[i].seconds[SYNCO_PASS_BWD_DATA] * per;
    r->bwd_weights += e[i].seconds[SYNCO_PASS_BWD_WEIGHTS] * per;
  }
  return 0;
}

void synco_bench_layers_print(const synco_bench_layers *L, double step_s, FILE *f) {
  double sum = 0;
  int key = 0; /* a key encoder's column only where there is one (bench step) */
  for (int i = 0; i < L->n; i++) {
    sum += row_total(&L->rows[i]);
    key |= L->rows[i].key_fwd > 0;
  }
  fprintf(f, "  layers  : ms per iteration, each op between two waits for the backend (--layers)\n");
  fprintf(f, "    %-36s %-9s %8s", "name", "op", "forward");
  if (key) fprintf(f, " %8s", "key fwd");
  fprintf(f, " %8s %8s %8s %6s\n", "bwd data", "bwd w", "total", "share");
  for (int i = 0; i < L->n; i++) {
    const synco_bench_layer *r = &L->rows[i];
    const double t = row_total(r);
    fprintf(f, "    %-36s %-9s %8.3f", r->name, r->op, 1e3 * r->fwd);
    if (key) fprintf(f, " %8.3f", 1e3 * r->key_fwd);
    fprintf(f, " %8.3f %8.3f %8.3f %5.1f%%\n", 1e3 * r->bwd_data, 1e3 * r->bwd_weights, 1e3 * t,
            sum > 0 ? 100 * t / sum : 0);
  }
  /* by kind of op: the step's own pieces ("step") together, the layers summed per op */
  fprintf(f, "  by op   :");
  const char *seen[32];
  int nseen = 0;
  for (int i = 0; i < L->n && nseen < 32; i++) {
    int dup = 0;
    for (int j = 0; j < nseen; j++) dup |= !strcmp(seen[j], L->rows[i].op);
    if (dup) continue;
    seen[nseen++] = L->rows[i].op;
    double t = 0;
    for (int j = 0; j < L->n; j++)
      if (!strcmp(L->rows[j].op, L->rows[i].op)) t += row_total(&L->rows[j]);
    fprintf(f, " %s %.2f ms (%.0f %%),", L->rows[i].op, 1e3 * t, sum > 0 ? 100 * t / sum : 0);
  }
  fprintf(f, " in all %.2f ms of a %.2f ms median iteration\n", 1e3 * sum, 1e3 * step_s);
}

void synco_bench_layers_json(const synco_bench_layers *L, FILE *f) {
  double sum = 0;
  fprintf(f, ",\"layers\":[");
  for (int i = 0; i < L->n; i++) {
    const synco_bench_layer *r = &L->rows[i];
    sum += row_total(r);
    fprintf(f, "%s{\"name\":\"%s\",\"op\":\"%s\",\"fwd_ms\":%.4f,\"key_fwd_ms\":%.4f,\"bwd_data_ms\":%.4f,"
            "\"bwd_weights_ms\":%.4f}", i ? "," : "", r->name, r->op, 1e3 * r->fwd, 1e3 * r->key_fwd,
            1e3 * r->bwd_data, 1e3 * r->bwd_weights);
  }
  fprintf(f, "],\"layers_sum_ms\":%.4f", 1e3 * sum);
}

void synco_bench_layers_free(synco_bench_layers *L) {
  free(L->rows);
  L->rows = NULL;
  L->n = L->cap = 0;
}
