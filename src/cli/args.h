/* Table-driven command-line options shared by every subcommand: each option names its variable, and the
 * value the variable holds before parsing is its default, printed by --help.
 *
 * Values are checked as they are parsed: an integer must fit its type (an int for SYNCO_ARG_INT), a float must
 * be finite, a string must not be empty, and each value must lie in the option's range: the row's own
 * (SYNCO_ARG_RANGE(lo, hi) or .lo_open for "> lo"), else the range args.c knows for the option's name
 * (--threads >= 0, --epochs >= 1, --lr > 0, ...), else any value of the type. Long spellings that mean the same
 * in every command are aliases of each other: --batch / --batch-size, --wd / --weight-decay, --device / --backend. */
#ifndef SYNCO_CLI_ARGS_H
#define SYNCO_CLI_ARGS_H

#include <stddef.h>

typedef enum {
  SYNCO_ARG_INT,     /* int */
  SYNCO_ARG_INT64,   /* long long */
  SYNCO_ARG_FLOAT,   /* double */
  SYNCO_ARG_STR,     /* const char * */
  SYNCO_ARG_FLAG,    /* int set to 1; "--no-NAME" sets 0 */
  SYNCO_ARG_INTLIST, /* synco_intlist */
} synco_arg_type;

typedef struct {
  int n;
  int v[16];
} synco_intlist;

typedef struct {
  const char *name;   /* long name without dashes, e.g. "moco-k" */
  char short_name;    /* 0 for none, e.g. 'b' */
  synco_arg_type type;
  void *dst;
  const char *help;
  int seen;           /* set by the parser when given on the command line */
  /* Optional, by designated initializer (zero = the range known for the name, see above): */
  int ranged;         /* 1: lo..hi below is this option's range */
  int lo_open;        /* 1: the value must be > lo (not >= lo) */
  double lo, hi;
} synco_arg;

/* A row's range: lo <= value <= hi. */
#define SYNCO_ARG_RANGE(l, h) .ranged = 1, .lo = (l), .hi = (h)

/* Problems found with a command line, kept to be printed together (one line each). */
typedef struct {
  char text[2048];
  size_t len;
  int n;
} synco_arg_problems;

void synco_arg_problem(synco_arg_problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints each problem as "synco CMD: PROBLEM" on stderr; returns how many there were. */
int synco_arg_problems_print(const char *cmd, const synco_arg_problems *p);

/* Parses argv[1..] (argv[0] is the subcommand). Positional arguments are collected into pos[] (up to
 * max_pos; pass NULL/0 to refuse them). Returns 0 on success, 1 when --help was printed (exit 0),
 * 2 after printing the errors (exit 2): every bad value is reported, not only the first. */
int synco_args_parse(const char *cmd, const char *summary, synco_arg *args, int argc, char **argv,
                     const char **pos, int max_pos, int *npos);
/* The same, but bad values are added to *problems and not printed (returns 0 then, so that the caller can add
 * its own checks and print all of them at once); 2 only for a command line that cannot be read (an unknown
 * option, a missing value), printed at once after the problems collected so far. */
int synco_args_parse_collect(const char *cmd, const char *summary, synco_arg *args, int argc, char **argv,
                             const char **pos, int max_pos, int *npos, synco_arg_problems *problems);
void synco_args_help(const char *cmd, const char *summary, const synco_arg *args);
/* Was option `name` given explicitly? */
int synco_args_seen(const synco_arg *args, const char *name);
/* Of count words, the one a typo of `word` most likely meant (the rule that suggests an unknown option's nearest
 * name), or NULL. */
const char *synco_args_nearest_word(const char *word, const char *const *words, size_t count);
/* Judges a number x for option `name` of args as a value given on the command line is judged (0 or 1 for a flag, a
 * whole number for an integer option, then the option's range), for a setting read from a file instead. 0 when good; else 1 with why
 * ("out of range (1 to 1000000)", "not an integer") in why[0..n). An option args does not have takes any value. */
int synco_arg_check_value(const synco_arg *args, const char *name, double x, char *why, size_t n);

#endif
