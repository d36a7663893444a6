/* Datasets: format detection from the path, the common table (labels, class names, storage) and per-sample
 * access. Three storages: decoded HWC pixels in memory (small images), the ImageFolder's files decoded per
 * sample (large images), and fixed-size binary records (CIFAR, STL-10, idx) kept mapped or in memory and
 * converted to HWC per sample, which is as cheap as a copy. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file_read.h"
#include "base/status.h"
#include "data/internal.h"

int synco_path_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int synco_path_is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

synco_dataset *synco_ds_new(const char *format, const char *root) {
  synco_dataset *ds = (synco_dataset *)synco_calloc(1, sizeof *ds);
  if (!ds) return NULL;
  snprintf(ds->format, sizeof ds->format, "%s", format);
  ds->root = strdup(root);
  return ds;
}

synco_status synco_ds_set_classes(synco_dataset *ds, const char *const *names, int n) {
  ds->class_names = (char **)synco_calloc((size_t)n, sizeof(char *));
  if (!ds->class_names) return SYNCO_ERR_NOMEM;
  for (int i = 0; i < n; i++) ds->class_names[i] = strdup(names[i]);
  ds->num_classes = n;
  return SYNCO_OK;
}

synco_status synco_read_file(const char *path, int gz, uint8_t **buf, size_t *n) {
  *buf = NULL;
  *n = 0;
  if (gz) {
    /* gzread also passes plain files through, so a .gz name with plain contents still works. */
    const int fd = synco_open_read(path, NULL, NULL);
    if (fd < 0) return SYNCO_ERR_IO;
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
      close(fd);
      return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory opening a gzip stream", path);
    }
    size_t cap = 1 << 20, len = 0;
    uint8_t *p = (uint8_t *)malloc(cap);
    for (;;) {
      if (!p) {
        gzclose(f);
        return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", path);
      }
      if (len == cap) {
        uint8_t *q = cap < ((size_t)1 << 34) ? (uint8_t *)realloc(p, cap * 2) : NULL;
        if (!q) free(p);
        p = q;
        cap *= 2;
        continue;
      }
      const unsigned want = (unsigned)((cap - len) > (1u << 30) ? (1u << 30) : (cap - len));
      const int got = gzread(f, p + len, want);
      if (got < 0) {
        int zerr;
        const char *m = gzerror(f, &zerr);
        synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, m);
        gzclose(f);
        free(p);
        return SYNCO_ERR_FORMAT;
      }
      if (got == 0) break;
      len += (size_t)got;
    }
    gzclose(f);
    *buf = p;
    *n = len;
    return SYNCO_OK;
  }
  size_t len;
  FILE *f = synco_fopen_read(path, NULL, &len);
  if (!f) return SYNCO_ERR_IO;
  uint8_t *p = (uint8_t *)malloc(len ? len : 1);
  if (!p) {
    fclose(f);
    return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, len);
  }
  if (len && fread(p, 1, len, f) != len) {
    fclose(f);
    free(p);
    return synco_fail(SYNCO_ERR_IO, "%s: read error", path);
  }
  fclose(f);
  *buf = p;
  *n = len;
  return SYNCO_OK;
}

synco_status synco_ds_map_file(synco_ds_segment *seg, const char *path, size_t *len) {
  memset(seg, 0, sizeof *seg);
  const int fd = synco_open_read(path, NULL, len);
  if (fd < 0) return SYNCO_ERR_IO;
  if (*len > 0) {
    void *m = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
      seg->map = m;
      seg->map_len = *len;
      seg->base = (const uint8_t *)m;
    }
  }
  close(fd);
  if (!seg->map && *len > 0) {
    size_t n;
    SYNCO_TRY(synco_read_file(path, 0, &seg->owned, &n));
    seg->base = seg->owned;
  }
  return SYNCO_OK;
}

synco_status synco_dataset_open(synco_dataset **out, const char *path, const synco_dataset_options *opt) {
  static const synco_dataset_options defaults = {0};
  if (!opt) opt = &defaults;
  *out = NULL;
  if (!path || !*path) return synco_fail(SYNCO_ERR_ARG, "no dataset path given");
  struct stat st;
  if (stat(path, &st) != 0) return synco_fail(SYNCO_ERR_IO, "%s: no such file or folder", path);
  if (synco_fmt_cifar_detect(path)) return synco_fmt_cifar_open(out, path, opt);
  if (synco_fmt_stl10_detect(path)) return synco_fmt_stl10_open(out, path, opt);
  if (synco_fmt_idx_detect(path)) return synco_fmt_idx_open(out, path, opt);
  if (S_ISDIR(st.st_mode)) return synco_fmt_imagefolder_open(out, path, opt);
  if (!S_ISREG(st.st_mode)) { /* a FIFO or a device: say what it is */
    const int fd = synco_open_read(path, "a dataset (an ImageFolder, CIFAR .bin, STL-10 .bin or idx file)", NULL);
    if (fd < 0) return SYNCO_ERR_IO;
    close(fd);
  }
  return synco_fail(SYNCO_ERR_FORMAT,
                    "%s: unrecognized dataset (expected an ImageFolder, CIFAR .bin, STL-10 .bin or idx file)", path);
}

void synco_dataset_free(synco_dataset *ds) {
  if (!ds) return;
  if (ds->pix)
    for (size_t i = 0; i < ds->n; i++) free(ds->pix[i]);
  if (ds->paths)
    for (size_t i = 0; i < ds->n; i++) free(ds->paths[i]);
  for (int s = 0; s < ds->nseg; s++) {
    if (ds->seg[s].map) munmap(ds->seg[s].map, ds->seg[s].map_len);
    free(ds->seg[s].owned);
  }
  for (int c = 0; c < ds->num_classes; c++) free(ds->class_names ? ds->class_names[c] : NULL);
  free(ds->class_names);
  free(ds->warnings);
  free(ds->pix);
  free(ds->w);
  free(ds->h);
  free(ds->paths);
  free(ds->labels);
  free(ds->root);
  free(ds);
}

size_t synco_dataset_size(const synco_dataset *ds) { return ds->n; }
int synco_dataset_num_classes(const synco_dataset *ds) { return ds->num_classes; }
const char *synco_dataset_class_name(const synco_dataset *ds, int c) {
  return (ds->class_names && c >= 0 && c < ds->num_classes) ? ds->class_names[c] : NULL;
}
synco_status synco_dataset_check_same_classes(const synco_dataset *a, const char *a_name, const synco_dataset *b,
                                              const char *b_name) {
  if (a->num_classes != b->num_classes)
    return synco_fail(SYNCO_ERR_ARG, "%s has %d class%s but %s has %d: an evaluation pairs their labels by class, so "
                      "both need the same class folders", a_name, a->num_classes, a->num_classes == 1 ? "" : "es", b_name,
                      b->num_classes);
  for (int c = 0; c < a->num_classes; c++) {
    const char *x = synco_dataset_class_name(a, c), *y = synco_dataset_class_name(b, c);
    if (x && y && strcmp(x, y))
      return synco_fail(SYNCO_ERR_ARG, "%s and %s name their classes differently: class %d of %d is '%s' in the first "
                        "and '%s' in the second; labels are paired by class index (the sorted folder names), so both "
                        "need the same class names", a_name, b_name, c + 1, a->num_classes, x, y);
  }
  return SYNCO_OK;
}
int synco_dataset_label(const synco_dataset *ds, size_t i) { return (ds->labels && i < ds->n) ? ds->labels[i] : -1; }
size_t synco_dataset_num_labelled(const synco_dataset *ds) {
  size_t k = 0;
  for (size_t i = 0; ds->labels && i < ds->n; i++) k += ds->labels[i] >= 0 && ds->labels[i] < ds->num_classes;
  return k;
}
const char *synco_dataset_format(const synco_dataset *ds) { return ds->format; }
size_t synco_dataset_skipped(const synco_dataset *ds) { return ds->skipped; }
const char *synco_dataset_warnings(const synco_dataset *ds) { return ds->warnings; }

#define MAX_WARNINGS 8

void synco_ds_warn(synco_dataset *ds, const char *fmt, ...) {
  char line[1024];
  if (++ds->nwarnings > MAX_WARNINGS + 1) return;
  if (ds->nwarnings == MAX_WARNINGS + 1) snprintf(line, sizeof line, "(further warnings not shown)");
  else {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
  }
  const size_t old = ds->warnings ? strlen(ds->warnings) : 0, n = strlen(line);
  char *w = (char *)realloc(ds->warnings, old + n + 2);
  if (!w) return;
  memcpy(w + old, line, n);
  w[old + n] = '\n';
  w[old + n + 1] = 0;
  ds->warnings = w;
}

static synco_status get_raw(const synco_dataset *ds, size_t i, synco_image *img) {
  size_t k = i;
  int s = 0;
  while (s < ds->nseg && k >= ds->seg[s].count) k -= ds->seg[s++].count;
  if (s == ds->nseg) return synco_fail(SYNCO_ERR_ARG, "%s: sample %zu out of range", ds->root, i);
  const int w = ds->raw_w, h = ds->raw_h;
  const size_t plane = (size_t)w * h;
  SYNCO_TRY(synco_image_reserve(img, w, h));
  const uint8_t *src = ds->seg[s].base + k * ds->rec_bytes + ds->pix_offset;
  uint8_t *d = img->rgb;
  switch (ds->layout) {
    case SYNCO_RAW_PLANAR:
      for (size_t p = 0; p < plane; p++) {
        d[3 * p] = src[p];
        d[3 * p + 1] = src[plane + p];
        d[3 * p + 2] = src[2 * plane + p];
      }
      break;
    case SYNCO_RAW_PLANAR_COLMAJOR: /* STL-10: each plane stored column by column */
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          const size_t q = (size_t)x * h + y, o = 3 * ((size_t)y * w + x);
          d[o] = src[q];
          d[o + 1] = src[plane + q];
          d[o + 2] = src[2 * plane + q];
        }
      break;
    case SYNCO_RAW_GRAY:
      for (size_t p = 0; p < plane; p++) d[3 * p] = d[3 * p + 1] = d[3 * p + 2] = src[p];
      break;
  }
  return SYNCO_OK;
}

synco_status synco_dataset_get(const synco_dataset *ds, size_t i, synco_image *img) {
  if (i >= ds->n) return synco_fail(SYNCO_ERR_ARG, "%s: sample %zu out of range (%zu samples)", ds->root, i, ds->n);
  switch (ds->kind) {
    case SYNCO_DS_DECODED: {
      const size_t need = (size_t)ds->w[i] * ds->h[i] * 3;
      if (img->cap < need) {
        uint8_t *p = (uint8_t *)realloc(img->rgb, need);
        if (!p) return synco_fail(SYNCO_ERR_NOMEM, "out of memory for a %dx%d image", ds->w[i], ds->h[i]);
        img->rgb = p;
        img->cap = need;
      }
      img->w = ds->w[i];
      img->h = ds->h[i];
      memcpy(img->rgb, ds->pix[i], need);
      return SYNCO_OK;
    }
    case SYNCO_DS_FILES: {
      uint8_t *buf;
      size_t n;
      SYNCO_TRY(synco_read_file(ds->paths[i], 0, &buf, &n));
      const synco_status st = synco_image_decode(img, buf, n, ds->paths[i]);
      free(buf);
      return st;
    }
    case SYNCO_DS_RAW: return get_raw(ds, i, img);
  }
  return synco_fail(SYNCO_ERR_ARG, "dataset not initialized");
}

const char *synco_dataset_item_name(const synco_dataset *ds, size_t i, char *buf, size_t n) {
  if (ds->paths && i < ds->n && ds->paths[i]) return ds->paths[i];
  snprintf(buf, n, "%s:%zu", ds->format, i);
  return buf;
}
