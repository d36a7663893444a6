/* idx files (MNIST, Fashion-MNIST), plain or gzip: an images file (magic 0x00000803: uint8, 3 dimensions
 * N x rows x cols, big-endian) and, beside it, a labels file (magic 0x00000801: N bytes) whose name
 * replaces "images-idx3" with "labels-idx1". Grayscale is replicated to three channels per sample.
 * The path is an images file or a folder holding train-images-idx3-ubyte[.gz] / t10k-images-idx3-ubyte[.gz]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "data/internal.h"

static int find_images(const char *dir, const char *prefix, char *out, size_t cap) {
  static const char *const suffix[] = {"-images-idx3-ubyte", "-images-idx3-ubyte.gz", "-images.idx3-ubyte"};
  for (int i = 0; i < 3; i++) {
    snprintf(out, cap, "%s/%s%s", dir, prefix, suffix[i]);
    if (synco_path_is_file(out)) return 1;
  }
  return 0;
}

int synco_fmt_idx_detect(const char *path) {
  if (synco_path_is_file(path)) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return strstr(b, "idx3-ubyte") != NULL || strstr(b, "idx1-ubyte") != NULL;
  }
  char f[4200];
  return synco_path_is_dir(path) && (find_images(path, "train", f, sizeof f) || find_images(path, "t10k", f, sizeof f));
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int has_gz(const char *path) {
  const size_t n = strlen(path);
  return n > 3 && !strcmp(path + n - 3, ".gz");
}

synco_status synco_fmt_idx_open(synco_dataset **out, const char *path, const synco_dataset_options *opt) {
  char images[4200], labels[4200];
  if (synco_path_is_file(path)) {
    snprintf(images, sizeof images, "%s", path);
    char *p = strstr(images, "idx1-ubyte");
    if (p) return synco_fail(SYNCO_ERR_ARG, "%s: an idx labels file; give the images file", path);
  } else {
    const char *split = opt->split ? opt->split : "train";
    if (strcmp(split, "train") && strcmp(split, "test"))
      return synco_fail(SYNCO_ERR_ARG, "%s: unknown split '%s' (train or test)", path, split);
    if (!find_images(path, !strcmp(split, "train") ? "train" : "t10k", images, sizeof images))
      return synco_fail(SYNCO_ERR_IO, "%s: no %s images idx file", path, split);
  }
  synco_dataset *ds = synco_ds_new("idx", path);
  if (!ds) return SYNCO_ERR_NOMEM;
  ds->kind = SYNCO_DS_RAW;
  ds->layout = SYNCO_RAW_GRAY;
  ds->nseg = 1;
  synco_ds_segment *seg = &ds->seg[0];
  size_t len;
  synco_status st = synco_read_file(images, has_gz(images), &seg->owned, &len);
  if (st == SYNCO_OK) {
    seg->base = seg->owned;
    if (len < 16 || be32(seg->base) != 0x00000803u)
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: bad idx magic (expected 0x00000803, uint8 images of 3 dimensions)",
                      images);
  }
  uint32_t n = 0, rows = 0, cols = 0;
  if (st == SYNCO_OK) {
    n = be32(seg->base + 4);
    rows = be32(seg->base + 8);
    cols = be32(seg->base + 12);
    if (rows == 0 || cols == 0 || rows > 4096 || cols > 4096 || n == 0 ||
        (uint64_t)n * rows * cols + 16 != (uint64_t)len)
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: header says %u images of %ux%u but the file has %zu bytes", images, n,
                      rows, cols, len);
  }
  if (st == SYNCO_OK) {
    seg->count = n;
    ds->n = n;
    ds->rec_bytes = (size_t)rows * cols;
    ds->pix_offset = 16;
    ds->raw_w = (int)cols;
    ds->raw_h = (int)rows;
    /* pix_offset applies per record in get_raw; shift the base instead so records start at the header's end */
    seg->base += 16;
    ds->pix_offset = 0;
    ds->labels = (int *)malloc(sizeof(int) * n);
    if (!ds->labels) st = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", images);
  }
  if (st == SYNCO_OK) {
    for (uint32_t i = 0; i < n; i++) ds->labels[i] = -1;
    snprintf(labels, sizeof labels, "%s", images);
    char *p = strstr(labels, "images-idx3");
    if (!p) p = strstr(labels, "images.idx3");
    if (p) {
      memcpy(p, "labels", 6);
      memcpy(p + 7, "idx1", 4);
    }
    if (p && synco_path_is_file(labels)) {
      uint8_t *lb;
      size_t ln;
      st = synco_read_file(labels, has_gz(labels), &lb, &ln);
      if (st == SYNCO_OK) {
        if (ln < 8 || be32(lb) != 0x00000801u)
          st = synco_fail(SYNCO_ERR_FORMAT, "%s: bad idx magic (expected 0x00000801, uint8 labels)", labels);
        else if (be32(lb + 4) != n || ln != 8 + (size_t)n)
          st = synco_fail(SYNCO_ERR_FORMAT, "%s: %u labels in %zu bytes for %u images", labels, be32(lb + 4), ln, n);
        int maxl = -1;
        for (uint32_t i = 0; st == SYNCO_OK && i < n; i++) {
          ds->labels[i] = lb[8 + i];
          if (ds->labels[i] > maxl) maxl = ds->labels[i];
        }
        free(lb);
        if (st == SYNCO_OK) {
          const int nc = maxl < 9 ? 10 : maxl + 1;
          char names[256][4];
          const char *np[256];
          for (int c = 0; c < nc; c++) {
            snprintf(names[c], sizeof names[c], "%d", c);
            np[c] = names[c];
          }
          st = synco_ds_set_classes(ds, np, nc);
        }
      }
    }
  }
  if (st != SYNCO_OK) {
    synco_dataset_free(ds);
    return st;
  }
  *out = ds;
  return SYNCO_OK;
}
