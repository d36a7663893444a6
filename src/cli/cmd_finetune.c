/* synco finetune: placeholder until its module lands; refuses to run rather than pretend. */
#include <stdio.h>

#include "cli/commands.h"

int synco_cmd_finetune(int argc, char **argv) {
  fprintf(stderr, "synco finetune: not built yet\n");
  return 1;
}
