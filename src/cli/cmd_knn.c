/* synco knn: placeholder until its module lands; refuses to run rather than pretend. */
#include <stdio.h>

#include "cli/commands.h"

int synco_cmd_knn(int argc, char **argv) {
  fprintf(stderr, "synco knn: not built yet\n");
  return 1;
}
