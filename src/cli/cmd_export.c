/* synco export: placeholder until its module lands; refuses to run rather than pretend. */
#include <stdio.h>

#include "cli/commands.h"

int synco_cmd_export(int argc, char **argv) {
  fprintf(stderr, "synco export: not built yet\n");
  return 1;
}
