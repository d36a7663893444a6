/* synco: the command-line program. Dispatches to one file per subcommand. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/memplan.h"
#include "cli/wait_policy.h"
#include "dist/dist.h"
#include "synco.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
  int many; /* runs as several processes of an MPI launcher (pretrain, bench step); the others run as one */
} command;

static const command COMMANDS[] = {
    {"pretrain", synco_cmd_pretrain, "self-supervised pretraining (SynCo, MoCHI, MoCo-v2)", 1},
    {"knn", synco_cmd_knn, "weighted kNN accuracy of an encoder's features"},
    {"linear", synco_cmd_linear, "linear probe on frozen features"},
    {"finetune", synco_cmd_finetune, "semi-supervised fine-tuning on a labelled subset"},
    {"embed", synco_cmd_embed, "write backbone features to a .npy file"},
    {"analyze", synco_cmd_analyze, "the paper's analyses (alignment, uniformity, ...) with plots"},
    {"plot", synco_cmd_plot, "learning curves of one or several runs"},
    {"export", synco_cmd_export, "write an encoder under torchvision key names (safetensors)"},
    {"bench", synco_cmd_bench, "benchmarks: fwdbwd, step, data", 1},
    {"info", synco_cmd_info, "version, backends, threads, CPU features", 1},
};

static void usage(FILE *f) {
  fprintf(f, "synco %s: self-supervised pretraining of image encoders with SynCo\n\n", synco_version());
  fprintf(f, "usage: synco <command> [options]   (synco <command> --help for its options)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
    fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fprintf(f, "\nWith no --data, `synco pretrain` trains on the small dataset bundled under data/.\n");
}

int main(int argc, char **argv) {
  synco_wait_policy_init(argv); /* may execute the program again, with libgomp's spin count set */
  /* A file-size limit (ulimit -f) is an error of the write that meets it (EFBIG, reported like ENOSPC, naming the
   * file, the old file intact), not a signal that kills the process mid-checkpoint. */
  signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  char help_flag[] = "--help", *help_argv[4] = {argv[0], NULL, help_flag, NULL};
  if (!strcmp(argv[1], "help") && argc > 2) { /* synco help CMD: CMD's own help */
    help_argv[1] = argv[2];
    argv = help_argv;
    argc = 3;
  } else if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("synco %s\n", synco_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
    if (!strcmp(argv[1], COMMANDS[i].name)) {
      synco_cli_command = COMMANDS[i].name;
      const int procs = synco_dist_launched_processes();
      if (procs > 1 && !COMMANDS[i].many) { /* N copies would write the same files (and race on them) */
        fprintf(stderr, "synco %s: started as %d processes by an MPI launcher, but it runs as one (only pretrain and "
                        "bench step use several): run it without mpirun/srun\n", argv[1], procs);
        return 2;
      }
      size_t limit; /* a memory cap that cannot be read is refused, not ignored */
      if (synco_mem_limit(&limit) != SYNCO_OK) {
        fprintf(stderr, "synco %s: %s\n", argv[1], synco_last_error());
        return 2;
      }
      return COMMANDS[i].run(argc - 1, argv + 1);
    }
  const char *names[sizeof COMMANDS / sizeof *COMMANDS];
  for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++) names[i] = COMMANDS[i].name;
  const char *near = synco_args_nearest_word(argv[1], names, sizeof names / sizeof *names);
  if (near) fprintf(stderr, "synco: unknown command '%s': did you mean %s? (see synco --help)\n", argv[1], near);
  else fprintf(stderr, "synco: unknown command '%s' (see synco --help)\n", argv[1]);
  return 2;
}

int synco_cli_error(const char *cmd) {
  fprintf(stderr, "synco %s: %s\n", cmd, synco_last_error());
  return 1;
}
