/* The op time table (base/op_times.h). */
#include "base/op_times.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int synco_op_times_add(synco_op_times *t, int *slot, const char *name, const char *op, int pass, double s) {
  if (pass < 0 || pass >= SYNCO_NPASS) return -1;
  if (*slot < 1 || *slot > t->n) {
    if (t->n == t->cap) {
      const int cap = t->cap ? 2 * t->cap : 64;
      synco_op_time *e = realloc(t->e, (size_t)cap * sizeof *e);
      if (!e) return -1;
      t->e = e;
      t->cap = cap;
    }
    synco_op_time *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->op, sizeof e->op, "%s", op);
    *slot = ++t->n;
  }
  t->e[*slot - 1].seconds[pass] += s;
  t->e[*slot - 1].calls[pass]++;
  return 0;
}

void synco_op_times_reset(synco_op_times *t) {
  for (int i = 0; i < t->n; i++) {
    memset(t->e[i].seconds, 0, sizeof t->e[i].seconds);
    memset(t->e[i].calls, 0, sizeof t->e[i].calls);
  }
}

void synco_op_times_free(synco_op_times *t) {
  free(t->e);
  t->e = NULL;
  t->n = t->cap = 0;
}
