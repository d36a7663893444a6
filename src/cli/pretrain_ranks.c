/* The processes of one pretraining run agree before they depend on each other: on each stage's outcome (one rank's
 * error alone would leave the others waiting in a collective), on their settings and data before the first
 * collective whose size or count follows them (a batch or width of its own crashed in MPI, another data size or
 * --epochs hung forever, another K or --method trained silently), and on a stop between two steps (Ctrl-C, SIGTERM).
 * Every exchange here is of small host values through synco_dist_broadcast and synco_dist_max_ints, whose sizes
 * do not depend on anything a rank was given. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "cli/commands.h"
#include "cli/pretrain.h"
#include "dist/dist.h"

/* A collective of this file failed: the job cannot agree on anything more; end it. */
static int lost(pretrain_ctx *c) {
  synco_cli_error("pretrain");
  synco_dist_abort(c->dist, 1);
  return 1;
}

int pretrain_agree(pretrain_ctx *c, int rc) {
  if (c->world <= 1) return rc;
  int *all = calloc((size_t)c->world, sizeof *all);
  if (!all || synco_dist_gather_int(c->dist, rc, all) != SYNCO_OK) {
    free(all);
    return lost(c);
  }
  int first = PRETRAIN_GO, who = -1;
  for (int r = 0; r < c->world && first == PRETRAIN_GO; r++)
    if (all[r] != PRETRAIN_GO) first = all[r], who = r;
  free(all);
  /* the failing rank said why; rank 0 says which rank it was when it is not itself */
  if (rc == PRETRAIN_GO && first != PRETRAIN_GO && c->rank == 0 && first != 0)
    fprintf(stderr, "synco pretrain: rank %d of %d stopped (exit %d) before training; every rank stops\n", who,
            c->world, first);
  return rc != PRETRAIN_GO ? rc : first;
}

/* The line of index i of text (NAME\tVALUE), its name and value copied out; 0 when text has no such line. */
static int line_at(const char *text, int i, char *name, size_t ncap, char *value, size_t vcap) {
  const char *p = text;
  for (int k = 0; k < i && p; k++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  if (!p || !*p) return 0;
  const char *tab = strchr(p, '\t'), *nl = strchr(p, '\n');
  if (!tab || !nl || tab > nl) return 0;
  snprintf(name, ncap, "%.*s", (int)(tab - p), p);
  snprintf(value, vcap, "%.*s", (int)(nl - tab - 1), tab + 1);
  return 1;
}

/* The index of the first line where mine and rank 0's text differ, or -1 when they are the same. */
static int first_difference(const char *mine, const char *zero) {
  int i = 0;
  for (const char *a = mine, *b = zero; *a || *b; i++) {
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    const size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
    if (la != lb || memcmp(a, b, la)) return i;
    a += la + (ea != NULL);
    b += lb + (eb != NULL);
  }
  return -1;
}

int pretrain_ranks_same(pretrain_ctx *c, const char *text) {
  if (c->world <= 1) return PRETRAIN_GO;
  /* rank 0's text to every rank: its length first, so that every rank's broadcast has the same size */
  uint64_t len = c->rank == 0 ? (uint64_t)strlen(text) + 1 : 0;
  if (synco_dist_broadcast(c->dist, &len, sizeof len, 0) != SYNCO_OK) return lost(c);
  char *zero = c->rank == 0 ? (char *)text : malloc(len);
  if (!zero) {
    fprintf(stderr, "synco pretrain: rank %d: out of memory\n", c->rank);
    synco_dist_abort(c->dist, 1);
    return 1;
  }
  if (synco_dist_broadcast(c->dist, zero, len, 0) != SYNCO_OK) {
    if (zero != text) free(zero);
    return lost(c);
  }
  zero[len - 1] = 0;
  int *all = calloc((size_t)c->world, sizeof *all);
  if (!all || synco_dist_gather_int(c->dist, first_difference(text, zero), all) != SYNCO_OK) {
    free(all);
    if (zero != text) free(zero);
    return lost(c);
  }
  int who = -1;
  for (int r = 1; r < c->world && who < 0; r++)
    if (all[r] >= 0) who = r;
  int rc = PRETRAIN_GO;
  if (who >= 0) {
    char name[128] = "?", there[1200] = "(nothing)", here[1200] = "(nothing)";
    if (!line_at(zero, all[who], name, sizeof name, there, sizeof there))
      line_at(text, all[who], name, sizeof name, here, sizeof here);
    if (c->rank == who) {
      line_at(text, all[who], name, sizeof name, here, sizeof here);
      fprintf(stderr, "synco pretrain: rank %d of %d has %s %s, rank 0 has %s: every rank must be started with the "
                      "same settings and data; refused on every rank\n", who, c->world, name, here, there);
    } else {
      fprintf(stderr, "synco pretrain: rank %d of %d was started with another %s than rank 0 (%s): every rank must be "
                      "started with the same settings and data; refused on every rank\n", who, c->world, name, there);
    }
    rc = 2;
  }
  free(all);
  if (zero != text) free(zero);
  return rc;
}

/* The last two parts of a path ("class/file.jpg"): the same data may lie under another folder on each machine. */
static const char *tail2(const char *path) {
  const char *last = strrchr(path, '/');
  if (!last || last == path) return path;
  const char *p = last - 1;
  while (p > path && *p != '/') p--;
  return *p == '/' ? p + 1 : p;
}

/* Appends "FLAG's WHAT\tVALUE\n"; 0 when out of memory. */
static int add_data(char **t, size_t *n, size_t *cap, const char *flag, const char *what, const char *value) {
  char name[160];
  snprintf(name, sizeof name, "%s's %s", flag, what);
  return pretrain_text_add(t, n, cap, name, value);
}

char *pretrain_data_text(const synco_dataset *ds, const char *flag) {
  char *t = NULL, count[32], classes[32], buf[1200];
  size_t n = 0, cap = 0;
  const size_t nimg = synco_dataset_size(ds);
  const int ncls = synco_dataset_num_classes(ds);
  snprintf(count, sizeof count, "%zu", nimg);
  snprintf(classes, sizeof classes, "%d", ncls);
  int ok = add_data(&t, &n, &cap, flag, "format", synco_dataset_format(ds)) &&
           add_data(&t, &n, &cap, flag, "image count", count) &&
           add_data(&t, &n, &cap, flag, "class count", classes);
  const char *first = ncls > 0 ? synco_dataset_class_name(ds, 0) : NULL;
  const char *last = ncls > 0 ? synco_dataset_class_name(ds, ncls - 1) : NULL;
  if (ok && ncls > 0)
    ok = add_data(&t, &n, &cap, flag, "first class", first ? first : "?") &&
         add_data(&t, &n, &cap, flag, "last class", last ? last : "?");
  if (ok && nimg > 0)
    ok = add_data(&t, &n, &cap, flag, "first image", tail2(synco_dataset_item_name(ds, 0, buf, sizeof buf)));
  if (ok && nimg > 0)
    ok = add_data(&t, &n, &cap, flag, "last image", tail2(synco_dataset_item_name(ds, nimg - 1, buf, sizeof buf)));
  if (!ok) {
    free(t);
    return NULL;
  }
  return t;
}

int pretrain_ranks_stop(pretrain_ctx *c) {
  int sig = synco_stop_requested();
  if (c->world > 1 && synco_dist_max_ints(c->dist, &sig, 1) != SYNCO_OK) return -1;
  return sig;
}
