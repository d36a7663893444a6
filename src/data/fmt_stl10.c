/* STL-10 binary release (stl10_binary/): train_X.bin + train_y.bin (5,000), test_X.bin + test_y.bin (8,000)
 * and unlabeled_X.bin (100,000, the usual self-supervised split). Images are 3x96x96 uint8 with each colour
 * plane stored column by column (MATLAB order); labels are bytes 1..10. Splits: train, test, unlabeled and
 * train+unlabeled. The X files are mapped, not copied (unlabeled_X.bin is 2.7 GB). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file_read.h"
#include "base/status.h"
#include "data/internal.h"

#define STL_SIDE 96
#define STL_REC (3 * STL_SIDE * STL_SIDE)

static const char *const k_stl_classes[10] = {"airplane", "bird", "car",    "cat",    "deer",
                                              "dog",      "horse", "monkey", "ship", "truck"};

static int stl_dir(const char *path, char *dir, size_t cap) {
  static const char *const subs[] = {"", "/stl10_binary"};
  static const char *const files[] = {"train_X.bin", "unlabeled_X.bin", "test_X.bin"};
  char probe[4200];
  for (int s = 0; s < 2; s++) {
    snprintf(dir, cap, "%s%s", path, subs[s]);
    for (int f = 0; f < 3; f++) {
      snprintf(probe, sizeof probe, "%s/%s", dir, files[f]);
      if (synco_path_is_file(probe)) return 1;
    }
  }
  return 0;
}

int synco_fmt_stl10_detect(const char *path) {
  if (synco_path_is_file(path)) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return !strcmp(b, "train_X.bin") || !strcmp(b, "test_X.bin") || !strcmp(b, "unlabeled_X.bin");
  }
  char dir[4096];
  return synco_path_is_dir(path) && stl_dir(path, dir, sizeof dir);
}

/* Adds <dir>/<part>_X.bin and, when labelled, <part>_y.bin. */
static synco_status add_part(synco_dataset *ds, const char *dir, const char *part, int labelled) {
  char file[4300];
  snprintf(file, sizeof file, "%s/%s_X.bin", dir, part);
  synco_ds_segment *seg = &ds->seg[ds->nseg];
  size_t len;
  SYNCO_TRY(synco_ds_map_file(seg, file, &len));
  ds->nseg++;
  if (len == 0 || len % STL_REC)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: %zu bytes is not a whole number of %d-byte STL-10 images", file, len,
                      STL_REC);
  seg->count = len / STL_REC;
  int *labels = (int *)realloc(ds->labels, sizeof(int) * (ds->n + seg->count));
  if (!labels) return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", file);
  ds->labels = labels;
  if (labelled) {
    uint8_t *y;
    size_t ny;
    snprintf(file, sizeof file, "%s/%s_y.bin", dir, part);
    SYNCO_TRY(synco_read_file(file, 0, &y, &ny));
    if (ny != seg->count) {
      free(y);
      return synco_fail(SYNCO_ERR_FORMAT, "%s: %zu labels for %zu images", file, ny, seg->count);
    }
    for (size_t i = 0; i < ny; i++) {
      if (y[i] < 1 || y[i] > 10) {
        const int bad = y[i];
        free(y);
        return synco_fail(SYNCO_ERR_FORMAT, "%s: label %zu is %d (expected 1..10)", file, i, bad);
      }
      labels[ds->n + i] = y[i] - 1;
    }
    free(y);
  } else {
    for (size_t i = 0; i < seg->count; i++) labels[ds->n + i] = -1;
  }
  ds->n += seg->count;
  return SYNCO_OK;
}

synco_status synco_fmt_stl10_open(synco_dataset **out, const char *path, const synco_dataset_options *opt) {
  char dir[4096];
  const char *split = opt->split ? opt->split : "train";
  if (synco_path_is_file(path)) {
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *b = slash ? slash + 1 : dir;
    split = !strcmp(b, "train_X.bin") ? "train" : !strcmp(b, "test_X.bin") ? "test" : "unlabeled";
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
  } else {
    stl_dir(path, dir, sizeof dir);
  }
  synco_dataset *ds = synco_ds_new("stl10", path);
  if (!ds) return SYNCO_ERR_NOMEM;
  ds->kind = SYNCO_DS_RAW;
  ds->rec_bytes = STL_REC;
  ds->pix_offset = 0;
  ds->raw_w = ds->raw_h = STL_SIDE;
  ds->layout = SYNCO_RAW_PLANAR_COLMAJOR;
  synco_status st;
  char only[4300]; /* a folder of the unlabelled images alone, opened for its training split: say which it has */
  snprintf(only, sizeof only, "%s/train_X.bin", dir);
  const int train_absent = access(only, F_OK) != 0;
  snprintf(only, sizeof only, "%s/unlabeled_X.bin", dir);
  if (!strcmp(split, "train") && train_absent && access(only, F_OK) == 0 && !synco_path_is_file(path))
    st = synco_fail(SYNCO_ERR_IO, "%s: no train_X.bin, only unlabeled_X.bin: --split unlabeled reads it", path);
  else if (!strcmp(split, "train")) st = add_part(ds, dir, "train", 1);
  else if (!strcmp(split, "test")) st = add_part(ds, dir, "test", 1);
  else if (!strcmp(split, "unlabeled")) st = add_part(ds, dir, "unlabeled", 0);
  else if (!strcmp(split, "train+unlabeled")) {
    st = add_part(ds, dir, "train", 1);
    if (st == SYNCO_OK) st = add_part(ds, dir, "unlabeled", 0);
  } else st = synco_fail(SYNCO_ERR_ARG, "%s: unknown STL-10 split '%s' (train, test, unlabeled, train+unlabeled)",
                         path, split);
  if (st == SYNCO_OK) {
    /* class_names.txt, when present, overrides the built-in names */
    char file[4200], line[128];
    const char *names[10];
    char buf[10][128];
    for (int i = 0; i < 10; i++) names[i] = k_stl_classes[i];
    snprintf(file, sizeof file, "%s/class_names.txt", dir);
    /* optional, but when present it must be a file (a FIFO would hang the read) */
    FILE *f = synco_path_exists(file) ? synco_fopen_read(file, NULL, NULL) : NULL;
    if (!f && synco_path_exists(file)) {
      synco_dataset_free(ds);
      return SYNCO_ERR_IO;
    }
    for (int i = 0; f && i < 10 && fgets(line, sizeof line, f); i++) {
      line[strcspn(line, "\r\n")] = 0;
      snprintf(buf[i], sizeof buf[i], "%s", line);
      names[i] = buf[i];
    }
    if (f) fclose(f);
    st = synco_ds_set_classes(ds, names, 10);
  }
  if (st != SYNCO_OK) {
    synco_dataset_free(ds);
    return st;
  }
  *out = ds;
  return SYNCO_OK;
}
