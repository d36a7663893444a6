/* synco bench: placeholder until its module lands; refuses to run rather than pretend. */
#include <stdio.h>

#include "cli/commands.h"

int synco_cmd_bench(int argc, char **argv) {
  fprintf(stderr, "synco bench: not built yet\n");
  return 1;
}
