/* Table-driven command-line options shared by every subcommand: each option names its variable, and the
 * value the variable holds before parsing is its default, printed by --help. */
#ifndef SYNCO_CLI_ARGS_H
#define SYNCO_CLI_ARGS_H

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
} synco_arg;

/* Parses argv[1..] (argv[0] is the subcommand). Positional arguments are collected into pos[] (up to
 * max_pos; pass NULL/0 to refuse them). Returns 0 on success, 1 when --help was printed (exit 0),
 * 2 after printing a one-line error (exit 2). */
int synco_args_parse(const char *cmd, const char *summary, synco_arg *args, int argc, char **argv,
                     const char **pos, int max_pos, int *npos);
void synco_args_help(const char *cmd, const char *summary, const synco_arg *args);
/* Was option `name` given explicitly? */
int synco_args_seen(const synco_arg *args, const char *name);

#endif
