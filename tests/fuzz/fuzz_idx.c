/* libFuzzer target: the idx reader (images + labels, plain or gzip). The first byte's bit 0 picks gzip
 * names, the next two bytes give the length of the images part; the rest is the labels file. Both are
 * written to /dev/shm (or /tmp), the folder opened, and every sample read. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"

static void put(const char *path, const uint8_t *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(b, 1, n, f);
  fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/dev/shm/synco_fuzz_idx_%d", (int)getpid());
    if (mkdir(dir, 0700) != 0) {
      snprintf(dir, sizeof dir, "/tmp/synco_fuzz_idx_%d", (int)getpid());
      mkdir(dir, 0700);
    }
  }
  if (size < 3) return 0;
  const int gz = data[0] & 1;
  size_t ni = ((size_t)data[1] << 8) | data[2];
  data += 3;
  size -= 3;
  if (ni > size) ni = size;
  char pi[128], pl[128];
  snprintf(pi, sizeof pi, "%s/train-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
  snprintf(pl, sizeof pl, "%s/train-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
  put(pi, data, ni);
  put(pl, data + ni, size - ni);
  synco_dataset *ds;
  synco_dataset_options opt = {0};
  if (synco_dataset_open(&ds, dir, &opt) == SYNCO_OK) {
    synco_image img = {0};
    for (size_t i = 0; i < synco_dataset_size(ds) && i < 64; i++) synco_dataset_get(ds, i, &img);
    synco_image_free(&img);
    synco_dataset_free(ds);
  }
  remove(pi);
  remove(pl);
  return 0;
}
