/* One function per subcommand, each in its own file src/cli/cmd_<name>.c. Each returns the process exit
 * status: 0 success, 1 failure (a one-line error already printed), 2 bad usage. */
#ifndef SYNCO_CLI_COMMANDS_H
#define SYNCO_CLI_COMMANDS_H

int synco_cmd_info(int argc, char **argv);
int synco_cmd_pretrain(int argc, char **argv);
int synco_cmd_knn(int argc, char **argv);
int synco_cmd_linear(int argc, char **argv);
int synco_cmd_finetune(int argc, char **argv);
int synco_cmd_embed(int argc, char **argv);
int synco_cmd_analyze(int argc, char **argv);
int synco_cmd_plot(int argc, char **argv);
int synco_cmd_export(int argc, char **argv);
int synco_cmd_bench(int argc, char **argv);

/* Prints "synco CMD: <last error>" to stderr and returns 1. */
int synco_cli_error(const char *cmd);

#endif
