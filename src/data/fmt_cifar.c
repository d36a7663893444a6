/* CIFAR-10 and CIFAR-100 binary releases. CIFAR-10: data_batch_1..5.bin (train) and test_batch.bin, records
 * of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32, row-major). CIFAR-100: train.bin / test.bin,
 * records of a coarse and a fine label byte + 3072 pixel bytes. Files are mapped and validated (length a
 * multiple of the record, labels in range) at open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file_read.h"
#include "base/status.h"
#include "data/internal.h"

static const char *const k_cifar10_classes[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                                  "dog",      "frog",       "horse", "ship", "truck"};

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int is_cifar10_name(const char *name) {
  return !strncmp(name, "data_batch_", 11) || !strcmp(name, "test_batch.bin");
}
static int is_cifar100_name(const char *name) { return !strcmp(name, "train.bin") || !strcmp(name, "test.bin"); }

/* The folder that holds the .bin files (path itself or its cifar-*-bin* subfolder), or NULL. */
static int cifar_dir(const char *path, char *dir, size_t cap, int *is100) {
  static const char *const subs[] = {"", "/cifar-10-batches-bin", "/cifar-100-binary"};
  char probe[4096];
  for (int s = 0; s < 3; s++) {
    snprintf(dir, cap, "%s%s", path, subs[s]);
    snprintf(probe, sizeof probe, "%s/data_batch_1.bin", dir);
    if (synco_path_is_file(probe)) return *is100 = 0, 1;
    snprintf(probe, sizeof probe, "%s/test_batch.bin", dir);
    if (synco_path_is_file(probe)) return *is100 = 0, 1;
    snprintf(probe, sizeof probe, "%s/train.bin", dir);
    if (synco_path_is_file(probe)) return *is100 = 1, 1;
    snprintf(probe, sizeof probe, "%s/test.bin", dir);
    if (synco_path_is_file(probe)) return *is100 = 1, 1;
  }
  return 0;
}

int synco_fmt_cifar_detect(const char *path) {
  if (synco_path_is_file(path)) {
    const char *b = base_name(path);
    const size_t n = strlen(b);
    return n > 4 && !strcmp(b + n - 4, ".bin") && (is_cifar10_name(b) || is_cifar100_name(b));
  }
  char dir[4096];
  int is100;
  return synco_path_is_dir(path) && cifar_dir(path, dir, sizeof dir, &is100);
}

static synco_status load_names(synco_dataset *ds, const char *file, int n, const char *const *fallback) {
  char **names = (char **)calloc((size_t)n, sizeof(char *));
  char line[256], numbuf[16];
  int got = 0;
  /* optional, but when present it must be a file (a FIFO would hang the read) */
  FILE *f = file && synco_path_exists(file) ? synco_fopen_read(file, NULL, NULL) : NULL;
  if (file && !f && synco_path_exists(file)) {
    free(names);
    return SYNCO_ERR_IO;
  }
  if (f) {
    while (got < n && fgets(line, sizeof line, f)) {
      line[strcspn(line, "\r\n")] = 0;
      if (!line[0]) continue;
      names[got++] = strdup(line);
    }
    fclose(f);
  }
  for (int i = 0; i < n; i++)
    if (!names[i]) {
      if (fallback) names[i] = strdup(fallback[i]);
      else {
        snprintf(numbuf, sizeof numbuf, "%d", i);
        names[i] = strdup(numbuf);
      }
    }
  const synco_status st = synco_ds_set_classes(ds, (const char *const *)names, n);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  return st;
}

static synco_status add_file(synco_dataset *ds, const char *file, int is100, int coarse) {
  const size_t rec = is100 ? 3074 : 3073;
  if (ds->nseg == SYNCO_DS_MAX_SEGMENTS) return synco_fail(SYNCO_ERR_ARG, "%s: too many files", file);
  synco_ds_segment *seg = &ds->seg[ds->nseg];
  size_t len;
  SYNCO_TRY(synco_ds_map_file(seg, file, &len));
  ds->nseg++;
  if (len == 0 || len % rec != 0)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: %zu bytes is not a whole number of %zu-byte CIFAR-%s records", file, len,
                      rec, is100 ? "100" : "10");
  seg->count = len / rec;
  int *labels = (int *)realloc(ds->labels, sizeof(int) * (ds->n + seg->count));
  if (!labels) return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", file);
  ds->labels = labels;
  const int nclass = is100 ? (coarse ? 20 : 100) : 10;
  for (size_t i = 0; i < seg->count; i++) {
    const int l = seg->base[i * rec + (is100 && !coarse ? 1 : 0)];
    if (l >= nclass)
      return synco_fail(SYNCO_ERR_FORMAT, "%s: record %zu has label %d (expected 0..%d)", file, i, l, nclass - 1);
    labels[ds->n + i] = l;
  }
  ds->n += seg->count;
  return SYNCO_OK;
}

synco_status synco_fmt_cifar_open(synco_dataset **out, const char *path, const synco_dataset_options *opt) {
  const char *split = opt->split ? opt->split : "train";
  char dir[4096], file[4600];
  int is100 = 0;
  const int single = synco_path_is_file(path);
  if (single) {
    is100 = is_cifar100_name(base_name(path));
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
  } else {
    cifar_dir(path, dir, sizeof dir, &is100);
    if (strcmp(split, "train") && strcmp(split, "test"))
      return synco_fail(SYNCO_ERR_ARG, "%s: unknown split '%s' (train or test)", path, split);
  }
  synco_dataset *ds = synco_ds_new(is100 ? "cifar100" : "cifar10", path);
  if (!ds) return SYNCO_ERR_NOMEM;
  ds->kind = SYNCO_DS_RAW;
  ds->rec_bytes = is100 ? 3074 : 3073;
  ds->pix_offset = is100 ? 2 : 1;
  ds->raw_w = ds->raw_h = 32;
  ds->layout = SYNCO_RAW_PLANAR;
  synco_status st = SYNCO_OK;
  if (single) {
    st = add_file(ds, path, is100, opt->coarse_labels);
  } else if (is100) {
    snprintf(file, sizeof file, "%s/%s.bin", dir, split);
    st = add_file(ds, file, 1, opt->coarse_labels);
  } else if (!strcmp(split, "test")) {
    snprintf(file, sizeof file, "%s/test_batch.bin", dir);
    st = add_file(ds, file, 0, 0);
  } else {
    /* every batch there is, in order (a missing data_batch_2 once hid data_batch_3..5); none: data_batch_1's error */
    int found = 0;
    char which[32] = "";
    for (int b = 1; b <= 5 && st == SYNCO_OK; b++) {
      snprintf(file, sizeof file, "%s/data_batch_%d.bin", dir, b);
      if (access(file, F_OK) != 0) continue; /* absent; anything there (a FIFO, a device) add_file judges */
      st = add_file(ds, file, 0, 0);
      found++;
      snprintf(which + strlen(which), sizeof which - strlen(which), "%s%d", found > 1 ? ", " : "", b);
    }
    if (st == SYNCO_OK && found == 0) {
      snprintf(file, sizeof file, "%s/data_batch_1.bin", dir);
      st = add_file(ds, file, 0, 0);
    }
    if (st == SYNCO_OK && found < 5)
      synco_ds_warn(ds, "%s holds %d of the 5 training batches (data_batch_N.bin, N = %s: %zu of CIFAR-10's 50000 "
                    "images)", dir, found, which, ds->n);
  }
  if (st == SYNCO_OK) {
    if (is100) {
      snprintf(file, sizeof file, "%s/%s_label_names.txt", dir, opt->coarse_labels ? "coarse" : "fine");
      st = load_names(ds, file, opt->coarse_labels ? 20 : 100, NULL);
    } else {
      snprintf(file, sizeof file, "%s/batches.meta.txt", dir);
      st = load_names(ds, file, 10, k_cifar10_classes);
    }
  }
  if (st != SYNCO_OK) {
    synco_dataset_free(ds);
    return st;
  }
  *out = ds;
  return SYNCO_OK;
}
