/* libFuzzer target: the CIFAR-10 / CIFAR-100 reader. The first byte picks the file name (data_batch_1.bin
 * or train.bin); the rest is written to a file in /dev/shm (or /tmp), opened, and every sample read. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/dev/shm/synco_fuzz_cifar_%d", (int)getpid());
    if (mkdir(dir, 0700) != 0) {
      snprintf(dir, sizeof dir, "/tmp/synco_fuzz_cifar_%d", (int)getpid());
      mkdir(dir, 0700);
    }
  }
  if (size < 1) return 0;
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, (data[0] & 1) ? "train.bin" : "data_batch_1.bin");
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data + 1, 1, size - 1, f);
  fclose(f);
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  opt.coarse_labels = (data[0] >> 1) & 1;
  if (synco_dataset_open(&ds, path, &opt) == SYNCO_OK) {
    synco_image img = {0};
    for (size_t i = 0; i < synco_dataset_size(ds); i++) synco_dataset_get(ds, i, &img);
    synco_image_free(&img);
    synco_dataset_free(ds);
  }
  remove(path);
  return 0;
}
