/* synco embed: placeholder until its module lands; refuses to run rather than pretend. */
#include <stdio.h>

#include "cli/commands.h"

int synco_cmd_embed(int argc, char **argv) {
  fprintf(stderr, "synco embed: not built yet\n");
  return 1;
}
