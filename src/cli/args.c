/* Option parsing for the subcommands; see args.h. */
#include "cli/args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ranges by option name, for rows that give none: the same name means the same kind of number in every
 * command. Any value of the type where a name is not listed. */
typedef struct {
  const char *name;
  double lo, hi;
  int lo_open;
} name_range;

#define IMAX ((double)INT_MAX)
static const name_range NAME_RANGES[] = {
    {"threads", 0, 4096, 0},        {"workers", 0, 4096, 0},        {"batch", 1, 1 << 20, 0},
    {"batch-size", 1, 1 << 20, 0},  {"epochs", 1, 1000000, 0},      {"width", 1, 65536, 0},
    {"height", 1, 65536, 0},        {"image-size", 0, 4096, 0},     {"size", 0, 4096, 0},
    {"moco-k", 1, IMAX, 0},         {"moco-dim", 1, 65536, 0},      {"bn-splits", 1, 4096, 0},
    {"n-hard", 0, IMAX, 0},         {"n1", 0, IMAX, 0},             {"n2", 0, IMAX, 0},
    {"n3", 0, IMAX, 0},             {"n4", 0, IMAX, 0},             {"n5", 0, IMAX, 0},
    {"n6", 0, IMAX, 0},             {"k", 1, IMAX, 0},              {"knn-k", 1, IMAX, 0},
    {"print-freq", 1, IMAX, 0},     {"save-every", 0, IMAX, 0},     {"knn-every", 0, IMAX, 0},
    {"eval-every", 0, IMAX, 0},     {"stop-epoch", 0, IMAX, 0},     {"warmup-epochs", 0, IMAX, 0},
    {"lr-warmup-epochs", 0, IMAX, 0}, {"holdout", 0, IMAX, 0},      {"per-class", 0, IMAX, 0},
    {"warmup", 0, IMAX, 0},         {"iters", 1, IMAX, 0},          {"bins", 2, 1000, 0},
    {"schedule", 0, IMAX, 0},       {"lr", 0, HUGE_VAL, 1},         {"lr-classifier", 0, HUGE_VAL, 1},
    {"lr-backbone", 0, HUGE_VAL, 0}, {"wd", 0, HUGE_VAL, 0},        {"weight-decay", 0, HUGE_VAL, 0},
    {"momentum", 0, 1, 0},          {"moco-m", 0, 1, 0},            {"moco-t", 0, HUGE_VAL, 1},
    {"knn-t", 0, HUGE_VAL, 1},      {"t", 0, HUGE_VAL, 0},          {"sigma", 0, HUGE_VAL, 0},
    {"delta", 0, HUGE_VAL, 0},      {"eta", 0, HUGE_VAL, 0},        {"seconds", 0, HUGE_VAL, 1},
};

/* Long spellings that are the same option in every command (MoCo's and the eval commands' names). */
static const char *const SYNONYMS[][2] = {{"batch", "batch-size"}, {"wd", "weight-decay"}, {"device", "backend"}};

void synco_arg_problem(synco_arg_problems *p, const char *fmt, ...) {
  if (p->len + 2 >= sizeof p->text) {
    p->n++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(p->text + p->len, sizeof p->text - p->len - 1, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  p->len += (size_t)k < sizeof p->text - p->len - 1 ? (size_t)k : sizeof p->text - p->len - 2;
  p->text[p->len++] = '\n';
  p->text[p->len] = 0;
  p->n++;
}

int synco_arg_problems_print(const char *cmd, const synco_arg_problems *p) {
  const char *s = p->text;
  for (const char *nl; (nl = strchr(s, '\n')); s = nl + 1) fprintf(stderr, "synco %s: %.*s\n", cmd, (int)(nl - s), s);
  return p->n;
}

static synco_arg *find_name(synco_arg *args, const char *name, size_t len) {
  for (synco_arg *a = args; a->name; a++)
    if (strlen(a->name) == len && !strncmp(a->name, name, len)) return a;
  return NULL;
}

static synco_arg *find(synco_arg *args, const char *name, size_t len, char short_name) {
  if (short_name) {
    for (synco_arg *a = args; a->name; a++)
      if (a->short_name == short_name) return a;
    return NULL;
  }
  synco_arg *a = find_name(args, name, len);
  for (size_t i = 0; !a && i < sizeof SYNONYMS / sizeof *SYNONYMS; i++)
    for (int j = 0; j < 2 && !a; j++)
      if (strlen(SYNONYMS[i][j]) == len && !strncmp(SYNONYMS[i][j], name, len))
        a = find_name(args, SYNONYMS[i][1 - j], strlen(SYNONYMS[i][1 - j]));
  return a;
}

/* Edit distance of a[0..n) and b, with a swap of two neighbours counting as one edit; capped at 9. */
static int edit_distance(const char *a, size_t n, const char *b) {
  const size_t m = strlen(b);
  if (n > 40 || m > 40) return 9;
  int d[42][42];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v) v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[n][m] < 9 ? d[n][m] : 9;
}

/* Of count names (name_at(ctx, i)), the index of the one nearest `name` (a typo: at most 2 edits, 1 for names of
 * up to 4 letters; or a prefix of one name only), or -1. */
static long nearest_name(const char *name, size_t len, const char *(*name_at)(const void *, size_t), const void *ctx,
                         size_t count) {
  long best = -1, prefix = -1;
  int best_d = 9, prefixes = 0;
  for (size_t i = 0; i < count; i++) {
    const char *x = name_at(ctx, i);
    const int d = edit_distance(name, len, x);
    if (d < best_d) best_d = d, best = (long)i;
    if (len >= 3 && !strncmp(x, name, len)) prefixes++, prefix = (long)i;
  }
  const int limit = len <= 4 ? 1 : 2;
  if (best >= 0 && best_d <= limit) return best;
  return prefixes == 1 ? prefix : -1;
}

static const char *option_name_at(const void *args, size_t i) { return ((const synco_arg *)args)[i].name; }
static const char *word_at(const void *words, size_t i) { return ((const char *const *)words)[i]; }

/* The option of args nearest the unknown `name`, or NULL. */
static const synco_arg *nearest_option(const synco_arg *args, const char *name, size_t len) {
  size_t count = 0;
  while (args[count].name) count++;
  const long i = nearest_name(name, len, option_name_at, args, count);
  return i >= 0 ? &args[i] : NULL;
}

const char *synco_args_nearest_word(const char *word, const char *const *words, size_t count) {
  const long i = nearest_name(word, strlen(word), word_at, words, count);
  return i >= 0 ? words[i] : NULL;
}

/* The range of a row: its own, else its name's; 0 when any value of the type will do. */
static int range_of(const synco_arg *a, double *lo, double *hi, int *lo_open) {
  if (a->ranged) {
    *lo = a->lo, *hi = a->hi, *lo_open = a->lo_open;
    return 1;
  }
  for (size_t i = 0; i < sizeof NAME_RANGES / sizeof *NAME_RANGES; i++)
    if (!strcmp(NAME_RANGES[i].name, a->name)) {
      *lo = NAME_RANGES[i].lo, *hi = NAME_RANGES[i].hi, *lo_open = NAME_RANGES[i].lo_open;
      return 1;
    }
  return 0;
}

static void range_text(char *buf, size_t n, const synco_arg *a) {
  double lo, hi;
  int lo_open;
  buf[0] = 0;
  if (!range_of(a, &lo, &hi, &lo_open)) {
    if (a->type == SYNCO_ARG_INT || a->type == SYNCO_ARG_INTLIST) snprintf(buf, n, " (%d to %d)", INT_MIN, INT_MAX);
    else if (a->type == SYNCO_ARG_INT64) snprintf(buf, n, " (%lld to %lld)", LLONG_MIN, LLONG_MAX);
    return;
  }
  const int int_hi = a->type != SYNCO_ARG_FLOAT && hi >= IMAX;
  if (lo_open) snprintf(buf, n, " (must be greater than %.15g)", lo);
  else if (isinf(hi) || int_hi) snprintf(buf, n, " (must be at least %.15g)", lo);
  else snprintf(buf, n, " (%.15g to %.15g)", lo, hi);
}

int synco_arg_check_value(const synco_arg *args, const char *name, double x, char *why, size_t n) {
  const synco_arg *a = args;
  while (a->name && strcmp(a->name, name)) a++;
  if (!a->name || a->type == SYNCO_ARG_STR) return 0;
  if (a->type == SYNCO_ARG_FLAG) return x != 0 && x != 1 ? (snprintf(why, n, "not 0 or 1"), 1) : 0;
  if (!isfinite(x)) return snprintf(why, n, "not a finite number"), 1;
  if (a->type != SYNCO_ARG_FLOAT && x != floor(x)) return snprintf(why, n, "not an integer"), 1;
  const int out_of_type = a->type == SYNCO_ARG_INT64 ? fabs(x) >= 9.2e18 : a->type != SYNCO_ARG_FLOAT && (x < INT_MIN || x > INT_MAX);
  double lo, hi;
  int lo_open;
  char rtext[96];
  if (out_of_type || (range_of(a, &lo, &hi, &lo_open) && ((lo_open ? !(x > lo) : !(x >= lo)) || x > hi))) {
    range_text(rtext, sizeof rtext, a);
    snprintf(why, n, "out of range%s", rtext);
    return 1;
  }
  return 0;
}

/* Checks v (the text as given) for row a, spelled `flag` on the command line; stores it when good. */
static void set_value(synco_arg *a, const char *flag, const char *v, synco_arg_problems *pr) {
  char *end = NULL, rtext[96];
  double x = 0;
  long long y = 0;
  int out_of_type = 0;
  errno = 0;
  switch (a->type) {
    case SYNCO_ARG_STR:
      if (!*v) {
        synco_arg_problem(pr, "%s is empty (give a value)", flag);
        return;
      }
      *(const char **)a->dst = v;
      a->seen = 1;
      return;
    case SYNCO_ARG_FLAG: return;
    case SYNCO_ARG_FLOAT:
      x = strtod(v, &end);
      if (!*v || *end) goto bad;
      if (isnan(x) || (isinf(x) && errno != ERANGE)) {
        synco_arg_problem(pr, "%s %s is not a finite number", flag, v);
        return;
      }
      out_of_type = errno == ERANGE && (isinf(x) || x != 0); /* overflow; an underflow to 0 is a 0 */
      break;
    case SYNCO_ARG_INT:
    case SYNCO_ARG_INTLIST:
    case SYNCO_ARG_INT64:
      y = strtoll(v, &end, 10);
      if (!*v || *end) goto bad;
      out_of_type = errno == ERANGE || (a->type != SYNCO_ARG_INT64 && (y < INT_MIN || y > INT_MAX));
      x = (double)y;
      break;
  }
  double lo, hi;
  int lo_open;
  if (!out_of_type && range_of(a, &lo, &hi, &lo_open) && ((lo_open ? !(x > lo) : !(x >= lo)) || x > hi)) out_of_type = 1;
  if (out_of_type) {
    range_text(rtext, sizeof rtext, a);
    synco_arg_problem(pr, "%s %s is out of range%s", flag, v, rtext);
    return;
  }
  if (a->type == SYNCO_ARG_FLOAT) {
    *(double *)a->dst = x;
  } else if (a->type == SYNCO_ARG_INT64) {
    *(long long *)a->dst = y;
  } else if (a->type == SYNCO_ARG_INT) {
    *(int *)a->dst = (int)y;
  } else {
    synco_intlist *l = a->dst;
    if (!a->seen) l->n = 0; /* the first value given replaces the default list */
    if (l->n == 16) {
      synco_arg_problem(pr, "too many values for %s (at most 16)", flag);
      return;
    }
    l->v[l->n++] = (int)y;
  }
  a->seen = 1;
  return;
bad:
  synco_arg_problem(pr, "%s expects %s, got '%s'", flag, a->type == SYNCO_ARG_FLOAT ? "a number" : "an integer", v);
}

/* A value of an int list: one number, or several separated by commas (--schedule 120,160 as --schedule 120 160). */
static void set_values(synco_arg *a, const char *flag, const char *v, synco_arg_problems *pr) {
  if (a->type != SYNCO_ARG_INTLIST || !strchr(v, ',')) {
    set_value(a, flag, v, pr);
    return;
  }
  char piece[64];
  for (const char *p = v;;) {
    const char *comma = strchr(p, ',');
    const size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n >= sizeof piece) {
      synco_arg_problem(pr, "%s expects integers, got '%s'", flag, v);
      return;
    }
    memcpy(piece, p, n);
    piece[n] = 0;
    set_value(a, flag, piece, pr);
    if (!comma) return;
    p = comma + 1;
  }
}

int synco_args_parse_collect(const char *cmd, const char *summary, synco_arg *args, int argc, char **argv,
                             const char **pos, int max_pos, int *npos, synco_arg_problems *pr) {
  if (npos) *npos = 0;
#define FATAL(...)                               \
  do {                                           \
    synco_arg_problems_print(cmd, pr);           \
    fprintf(stderr, "synco %s: ", cmd);          \
    fprintf(stderr, __VA_ARGS__);                \
    fputc('\n', stderr);                         \
    pr->n++;                                     \
    return 2;                                    \
  } while (0)
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      synco_args_help(cmd, summary, args);
      return 1;
    }
    synco_arg *a = NULL;
    const char *inline_val = NULL;
    char flag[80];
    if (s[0] == '-' && s[1] == '-' && s[2]) {
      const char *name = s + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      a = find(args, name, len, 0);
      if (!a && len > 3 && !strncmp(name, "no-", 3)) {
        synco_arg *f = find(args, name + 3, len - 3, 0);
        if (f && f->type == SYNCO_ARG_FLAG && !eq) {
          *(int *)f->dst = 0;
          f->seen = 1;
          continue;
        }
      }
      if (eq) inline_val = eq + 1;
      snprintf(flag, sizeof flag, "--%.*s", (int)(len < 64 ? len : 64), name);
    } else if (s[0] == '-' && s[1] && s[1] != '-' && !s[2] && !(s[1] >= '0' && s[1] <= '9')) {
      a = find(args, NULL, 0, s[1]);
      snprintf(flag, sizeof flag, "-%c", s[1]);
    } else {
      if (!pos || !npos || *npos >= max_pos) FATAL("unexpected argument '%s' (see synco %s --help)", s, cmd);
      pos[(*npos)++] = s;
      continue;
    }
    if (!a && s[1] == '-') {
      const char *name = s + 2, *eq = strchr(name, '=');
      const synco_arg *near = nearest_option(args, name, eq ? (size_t)(eq - name) : strlen(name));
      if (near) FATAL("unknown option '%s': did you mean --%s? (see synco %s --help)", s, near->name, cmd);
    }
    if (!a) FATAL("unknown option '%s' (see synco %s --help)", s, cmd);
    if (a->type == SYNCO_ARG_FLAG) {
      if (inline_val) FATAL("--%s takes no value", a->name);
      *(int *)a->dst = 1;
      a->seen = 1;
      continue;
    }
    if (!inline_val) {
      if (i + 1 >= argc) FATAL("--%s needs a value", a->name);
      inline_val = argv[++i];
    }
    set_values(a, flag, inline_val, pr);
    /* An int list takes every following bare number: --schedule 120 160 (or 120,160) */
    while (a->type == SYNCO_ARG_INTLIST && i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9')
      set_values(a, flag, argv[++i], pr);
  }
#undef FATAL
  return 0;
}

int synco_args_parse(const char *cmd, const char *summary, synco_arg *args, int argc, char **argv,
                     const char **pos, int max_pos, int *npos) {
  synco_arg_problems pr = {.len = 0};
  int rc = synco_args_parse_collect(cmd, summary, args, argc, argv, pos, max_pos, npos, &pr);
  if (rc) return rc;
  if (synco_arg_problems_print(cmd, &pr)) return 2;
  return 0;
}

void synco_args_help(const char *cmd, const char *summary, const synco_arg *args) {
  printf("usage: synco %s [options]\n\n%s\n\noptions:\n", cmd, summary);
  for (const synco_arg *a = args; a->name; a++) {
    char flag[64], def[96] = "";
    if (a->short_name)
      snprintf(flag, sizeof flag, "-%c, --%s", a->short_name, a->name);
    else
      snprintf(flag, sizeof flag, "    --%s", a->name);
    switch (a->type) {
      case SYNCO_ARG_INT: snprintf(def, sizeof def, " (default %d)", *(int *)a->dst); break;
      case SYNCO_ARG_INT64: snprintf(def, sizeof def, " (default %lld)", *(long long *)a->dst); break;
      case SYNCO_ARG_FLOAT: snprintf(def, sizeof def, " (default %g)", *(double *)a->dst); break;
      case SYNCO_ARG_STR: {
        const char *v = *(const char **)a->dst;
        if (v) snprintf(def, sizeof def, " (default %s)", v);
        break;
      }
      case SYNCO_ARG_FLAG: snprintf(def, sizeof def, " (default %s)", *(int *)a->dst ? "on" : "off"); break;
      case SYNCO_ARG_INTLIST: {
        const synco_intlist *l = a->dst;
        int k = snprintf(def, sizeof def, " (default");
        if (!l->n) k += snprintf(def + k, sizeof def - k, " none");
        for (int j = 0; j < l->n && k < (int)sizeof def - 8; j++) k += snprintf(def + k, sizeof def - k, " %d", l->v[j]);
        snprintf(def + k, sizeof def - k, ")");
        break;
      }
    }
    /* a help text that states its own default ("(default: on when ...)", "(unset: ...)") is not contradicted */
    if (strstr(a->help, "(default") || strstr(a->help, "(unset")) def[0] = 0;
    const char *mv = a->type == SYNCO_ARG_FLAG ? "" : a->type == SYNCO_ARG_STR ? " S" : a->type == SYNCO_ARG_FLOAT ? " X" : " N";
    char left[96];
    snprintf(left, sizeof left, "%s%s", flag, mv);
    printf("  %-26s %s%s\n", left, a->help, def);
  }
}

int synco_args_seen(const synco_arg *args, const char *name) {
  for (const synco_arg *a = args; a->name; a++)
    if (!strcmp(a->name, name)) return a->seen;
  return 0;
}
