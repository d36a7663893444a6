/* synco pretrain: placeholder until its module lands; refuses to run rather than pretend. */
#include <stdio.h>

#include "cli/commands.h"

int synco_cmd_pretrain(int argc, char **argv) {
  fprintf(stderr, "synco pretrain: not built yet\n");
  return 1;
}
