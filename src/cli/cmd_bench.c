/* synco bench: benchmarks (not tests). `bench fwdbwd` and `bench step` time the network; `bench data`
 * times the loader. Each prints a human line, or one JSON object with --json. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int synco_bench_fwdbwd(int argc, char **argv);  /* bench_model.c */
int synco_bench_step(int argc, char **argv);    /* bench_model.c */
int synco_bench_data(int argc, char **argv);    /* bench_data.c */

int synco_cmd_bench(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    printf("usage: synco bench fwdbwd|step|data [options]   (synco bench KIND --help)\n"
           "  fwdbwd  forward + backward of the encoder, images/s and GFLOP/s\n"
           "  step    one full pretraining step (MoCo-v2 / SynCo), images/s\n"
           "  data    the loader: decoded, two-view augmented pairs/s\n");
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "fwdbwd")) return synco_bench_fwdbwd(argc - 1, argv + 1);
  if (!strcmp(argv[1], "step")) return synco_bench_step(argc - 1, argv + 1);
  if (!strcmp(argv[1], "data")) return synco_bench_data(argc - 1, argv + 1);
  fprintf(stderr, "synco bench: unknown benchmark '%s' (fwdbwd, step or data)\n", argv[1]);
  return 2;
}
