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

/* "synco.preprocess" metadata of exported models (JSON, at most n bytes): what an image needs before the encoder
 * sees it, exactly as synco's evaluation transform does: RGB in [0, 1]; when it is not image_size x image_size,
 * the shorter side resized to `resize` = int(image_size / 0.875) (PIL bilinear, antialiased) and a center crop
 * of image_size; then Normalize(mean, std) (synco_cli_norm_stats); NCHW float32. */
void synco_cli_preprocess_json(char *out, size_t n, int image_size);

/* The bundled demo images' folder `sub` ("train" or "val"): ./data/cifar10-small/SUB when it exists, else
 * PREFIX/share/synco/cifar10-small/SUB (installed) or PREFIX/data/cifar10-small/SUB (a build tree), PREFIX being
 * the folder above the program's own (/proc/self/exe); NULL when none exists. Two results stay valid at once. */
const char *synco_cli_bundled_data(const char *sub);

#endif
