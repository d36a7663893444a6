/* idx files (MNIST, Fashion-MNIST), plain or gzip: an images file (magic 0x00000803: uint8, 3 dimensions
 * N x rows x cols, big-endian) and, beside it, a labels file (magic 0x00000801: N bytes) whose name
 * replaces "images-idx3" with "labels-idx1". Grayscale is replicated to three channels per sample.
 * The path is an images file or a folder holding train-images-idx3-ubyte[.gz] / t10k-images-idx3-ubyte[.gz].
 * Each file's header is read and checked before its body: the dimensions must be in range and their product
 * must be what the file holds (a plain file's size; for gzip, no more than the stream can inflate to), and
 * inflating stops at the declared size, so a small .gz cannot make the reader allocate gigabytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file_read.h"
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

/* Deflate cannot compress better than about 1032:1, so a gzip file of n bytes inflates to at most this. */
static uint64_t gz_max_inflated(uint64_t n) { return 1032 * n + 65536; }

#define IDX_MAX_BODY ((uint64_t)1 << 36) /* 64 GiB: ten times ImageNet-1k at 32x32, far past any idx set */

/* Reads one idx file, plain or gzip (zlib passes plain files through). The header is magic + nd big-endian
 * dimensions (nd = 3: images n x rows x cols; nd = 1: labels n); dims[] receives them. When want_n is nonzero,
 * dims[0] must equal it (the labels of want_n images). The body is read in growing chunks up to the declared
 * size, so a truncated stream costs no more memory than it holds, and one byte more is an error. */
static synco_status read_idx(const char *path, uint32_t magic, int nd, uint32_t want_n, uint32_t dims[3],
                             uint8_t **body, size_t *body_len) {
  *body = NULL;
  *body_len = 0;
  size_t file_size;
  const int fd = synco_open_read(path, NULL, &file_size);
  if (fd < 0) return SYNCO_ERR_IO;
  gzFile f = gzdopen(fd, "rb");
  if (!f) {
    close(fd);
    return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory opening a gzip stream", path);
  }
  synco_status st = SYNCO_OK;
  uint8_t hdr[16];
  const int hlen = 4 + 4 * nd;
  const int got = gzread(f, hdr, (unsigned)hlen);
  const char *what = nd == 3 ? "images" : "labels";
  if (got != hlen || be32(hdr) != magic) {
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: bad idx magic (expected 0x%08x, uint8 %s%s)", path, magic,
                    nd == 3 ? "images of 3 dimensions" : "labels", got == hlen ? "" : "; the header is truncated");
    gzclose(f);
    return st;
  }
  uint64_t need = 1;
  for (int i = 0; i < nd; i++) {
    dims[i] = be32(hdr + 4 + 4 * i);
    need *= dims[i];
  }
  const int plain = gzdirect(f);
  const uint64_t have = (uint64_t)file_size - (uint64_t)hlen;
  if (nd == 3 && (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[1] > 4096 || dims[2] > 4096))
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: header says %u images of %ux%u (expected 1..4096 pixels a side, at least one image)",
                    path, dims[0], dims[1], dims[2]);
  else if (want_n && dims[0] != want_n)
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: %u labels for %u images", path, dims[0], want_n);
  else if (need > IDX_MAX_BODY)
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: header declares %llu bytes of %s (at most %llu)", path, (unsigned long long)need,
                    what, (unsigned long long)IDX_MAX_BODY);
  else if (plain && need != have)
    st = nd == 3 ? synco_fail(SYNCO_ERR_FORMAT, "%s: header says %u images of %ux%u but the file has %llu bytes", path,
                              dims[0], dims[1], dims[2], (unsigned long long)file_size)
                 : synco_fail(SYNCO_ERR_FORMAT, "%s: %u labels in %llu bytes", path, dims[0], (unsigned long long)file_size);
  else if (!plain && need > gz_max_inflated((uint64_t)file_size))
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: header declares %llu bytes of %s, more than a %llu-byte gzip file can hold", path,
                    (unsigned long long)need, what, (unsigned long long)file_size);
  size_t len = 0, cap = 0;
  uint8_t *p = NULL;
  while (st == SYNCO_OK && len < need) {
    if (len == cap) {
      size_t ncap = cap ? 2 * cap : (size_t)1 << 20;
      if (ncap > need) ncap = (size_t)need;
      uint8_t *q = realloc(p, ncap);
      if (!q) {
        st = synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory reading %llu bytes of %s", path, (unsigned long long)need, what);
        break;
      }
      p = q;
      cap = ncap;
    }
    const size_t want = cap - len > ((size_t)1 << 30) ? (size_t)1 << 30 : cap - len;
    const int r = gzread(f, p + len, (unsigned)want);
    if (r < 0) {
      int zerr;
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, gzerror(f, &zerr));
    } else if (r == 0) {
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: truncated: the header declares %llu bytes of %s but the data ends after %zu",
                      path, (unsigned long long)need, what, len);
    }
    if (r > 0) len += (size_t)r;
  }
  if (st == SYNCO_OK) {
    uint8_t extra;
    const int r = gzread(f, &extra, 1);
    if (r != 0)
      st = r < 0 ? synco_fail(SYNCO_ERR_FORMAT, "%s: corrupt gzip data after the %s", path, what)
                 : synco_fail(SYNCO_ERR_FORMAT, "%s: more data than the header declares (%llu bytes of %s)", path,
                              (unsigned long long)need, what);
  }
  gzclose(f);
  if (st != SYNCO_OK) {
    free(p);
    return st;
  }
  if (!p) p = malloc(1); /* need == 0 (labels of no images cannot happen, but keep the buffer non-NULL) */
  if (!p) return synco_fail(SYNCO_ERR_NOMEM, "%s: out of memory", path);
  *body = p;
  *body_len = len;
  return SYNCO_OK;
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
  uint32_t dims[3] = {0, 0, 0};
  synco_status st = read_idx(images, 0x00000803u, 3, 0, dims, &seg->owned, &len);
  const uint32_t n = dims[0], rows = dims[1], cols = dims[2];
  if (st == SYNCO_OK) {
    seg->base = seg->owned;
    seg->count = n;
    ds->n = n;
    ds->rec_bytes = (size_t)rows * cols;
    ds->pix_offset = 0;
    ds->raw_w = (int)cols;
    ds->raw_h = (int)rows;
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
      uint32_t ldims[3];
      st = read_idx(labels, 0x00000801u, 1, n, ldims, &lb, &ln);
      if (st == SYNCO_OK) {
        int maxl = -1;
        for (uint32_t i = 0; st == SYNCO_OK && i < n; i++) {
          ds->labels[i] = lb[i];
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
