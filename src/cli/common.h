/* Small helpers shared by the subcommands. */
#ifndef SYNCO_CLI_COMMON_H
#define SYNCO_CLI_COMMON_H

#include "eval/features.h"
#include "eval/knn.h"
#include "synco.h"

/* Normalize's mean/std: CIFAR's for images of at most 64 pixels (MoCo's CIFAR demo), ImageNet's otherwise. */
void synco_cli_norm_stats(int image_size, float mean[3], float std[3]);
/* mkdir -p. */
synco_status synco_cli_mkdirs(const char *path);
/* Writes text to path through a temporary file and a rename. */
synco_status synco_cli_write_file_atomic(const char *path, const char *text);
/* --precision of command cmd: 0 when this build and CPU run it; else prints "synco CMD: reason" and returns 2. */
int synco_cli_precision(const char *cmd, const char *precision);

#endif
