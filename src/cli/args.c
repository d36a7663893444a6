/* Option parsing for the subcommands; see args.h. */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static synco_arg *find(synco_arg *args, const char *name, size_t len, char short_name) {
  for (synco_arg *a = args; a->name; a++) {
    if (short_name ? a->short_name == short_name : (strlen(a->name) == len && !strncmp(a->name, name, len)))
      return a;
  }
  return NULL;
}

static int set_value(const char *cmd, synco_arg *a, const char *v) {
  char *end = NULL;
  errno = 0;
  switch (a->type) {
    case SYNCO_ARG_INT: {
      long x = strtol(v, &end, 10);
      if (errno || !*v || *end) goto bad;
      *(int *)a->dst = (int)x;
      break;
    }
    case SYNCO_ARG_INT64: {
      long long x = strtoll(v, &end, 10);
      if (errno || !*v || *end) goto bad;
      *(long long *)a->dst = x;
      break;
    }
    case SYNCO_ARG_FLOAT: {
      double x = strtod(v, &end);
      if (errno || !*v || *end) goto bad;
      *(double *)a->dst = x;
      break;
    }
    case SYNCO_ARG_STR: *(const char **)a->dst = v; break;
    case SYNCO_ARG_INTLIST: {
      synco_intlist *l = a->dst;
      long x = strtol(v, &end, 10);
      if (errno || !*v || *end) goto bad;
      if (!a->seen) l->n = 0; /* the first value given replaces the default list */
      if (l->n == 16) {
        fprintf(stderr, "synco %s: too many values for --%s\n", cmd, a->name);
        return 2;
      }
      l->v[l->n++] = (int)x;
      break;
    }
    case SYNCO_ARG_FLAG: break;
  }
  a->seen = 1;
  return 0;
bad:
  fprintf(stderr, "synco %s: --%s expects %s, got '%s'\n", cmd, a->name,
          a->type == SYNCO_ARG_FLOAT ? "a number" : "an integer", v);
  return 2;
}

int synco_args_parse(const char *cmd, const char *summary, synco_arg *args, int argc, char **argv,
                     const char **pos, int max_pos, int *npos) {
  if (npos) *npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      synco_args_help(cmd, summary, args);
      return 1;
    }
    synco_arg *a = NULL;
    const char *inline_val = NULL;
    if (s[0] == '-' && s[1] == '-' && s[2]) {
      const char *name = s + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      a = find(args, name, len, 0);
      if (!a && len > 3 && !strncmp(name, "no-", 3)) {
        synco_arg *f = find(args, name + 3, len - 3, 0);
        if (f && f->type == SYNCO_ARG_FLAG) {
          *(int *)f->dst = 0;
          f->seen = 1;
          continue;
        }
      }
      if (eq) inline_val = eq + 1;
    } else if (s[0] == '-' && s[1] && s[1] != '-' && !s[2] && !(s[1] >= '0' && s[1] <= '9')) {
      a = find(args, NULL, 0, s[1]);
    } else {
      if (!pos || !npos || *npos >= max_pos) {
        fprintf(stderr, "synco %s: unexpected argument '%s' (see synco %s --help)\n", cmd, s, cmd);
        return 2;
      }
      pos[(*npos)++] = s;
      continue;
    }
    if (!a) {
      fprintf(stderr, "synco %s: unknown option '%s' (see synco %s --help)\n", cmd, s, cmd);
      return 2;
    }
    if (a->type == SYNCO_ARG_FLAG) {
      if (inline_val) {
        fprintf(stderr, "synco %s: --%s takes no value\n", cmd, a->name);
        return 2;
      }
      *(int *)a->dst = 1;
      a->seen = 1;
      continue;
    }
    if (!inline_val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "synco %s: --%s needs a value\n", cmd, a->name);
        return 2;
      }
      inline_val = argv[++i];
    }
    int rc = set_value(cmd, a, inline_val);
    if (rc) return rc;
    /* An int list takes every following bare number: --schedule 120 160 */
    while (a->type == SYNCO_ARG_INTLIST && i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') {
      rc = set_value(cmd, a, argv[++i]);
      if (rc) return rc;
    }
  }
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
