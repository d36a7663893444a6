/* .npy v1.0 writer and a strict reader (see npy.h). The header is "\x93NUMPY", version 1.0, a 2-byte
 * little-endian header length, then a Python dict literal padded with spaces and ending in '\n' so that the
 * data starts at a multiple of 64 bytes (what NumPy itself writes). The x86-64 hosts this runs on are
 * little-endian, so the data is written as it lies in memory. */
#include "eval/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "base/status.h"

static synco_status write_npy(const char *path, const char *descr, const size_t *shape, int ndim, const void *data,
                              size_t bytes) {
  char dict[256];
  int len;
  if (ndim == 1)
    len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }", descr, shape[0]);
  else
    len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                   shape[0], shape[1]);
  /* 10 bytes of preamble + dict + padding + '\n' must be a multiple of 64. */
  size_t total = 10 + (size_t)len + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hlen = (size_t)len + pad + 1;
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  char tmp[4200];
  FILE *f = synco_file_begin(path, tmp, sizeof tmp); /* beside path, never through a link (base/files.h) */
  if (!f) return SYNCO_ERR_IO;
  int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len;
  for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
  ok = ok && fputc('\n', f) != EOF;
  ok = ok && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
  return synco_file_commit(f, tmp, path, ok);
}

synco_status synco_npy_write_f32(const char *path, const float *x, size_t rows, size_t cols) {
  size_t shape[2] = {rows, cols};
  return write_npy(path, "<f4", shape, 2, x, rows * cols * sizeof(float));
}

synco_status synco_npy_write_i64(const char *path, const int64_t *y, size_t n) {
  size_t shape[1] = {n};
  return write_npy(path, "<i8", shape, 1, y, n * sizeof(int64_t));
}

synco_status synco_npy_write_labels(const char *path, const int *y, size_t n) {
  int64_t *t = synco_malloc(n * sizeof(int64_t));
  if (!t) return SYNCO_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) t[i] = y[i];
  synco_status s = synco_npy_write_i64(path, t, n);
  free(t);
  return s;
}

/* Parses the header dict; on success the file is positioned at the data. */
static synco_status read_header(FILE *f, const char *path, const char *want_descr, size_t *shape, int *ndim) {
  unsigned char pre[10];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
    return synco_fail(SYNCO_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
  if (pre[6] != 1) return synco_fail(SYNCO_ERR_FORMAT, "%s: .npy version %d.%d, expected 1.0", path, pre[6], pre[7]);
  size_t hlen = pre[8] | (size_t)pre[9] << 8;
  char *h = synco_malloc(hlen + 1);
  if (!h) return SYNCO_ERR_NOMEM;
  if (fread(h, 1, hlen, f) != hlen) {
    free(h);
    return synco_fail(SYNCO_ERR_FORMAT, "%s: truncated .npy header", path);
  }
  h[hlen] = 0;
  synco_status st = SYNCO_OK;
  char *p = strstr(h, "'descr':");
  char descr[16] = "";
  if (!p || sscanf(p + 8, " '%15[^']'", descr) != 1 || strcmp(descr, want_descr) != 0) {
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: dtype '%s', expected '%s'", path, descr, want_descr);
    goto done;
  }
  p = strstr(h, "'fortran_order':");
  if (!p || strncmp(p + 16 + strspn(p + 16, " "), "False", 5) != 0) {
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: only C-order arrays are supported", path);
    goto done;
  }
  p = strstr(h, "'shape':");
  char *lp = p ? strchr(p, '(') : NULL;
  if (!lp) {
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: header has no shape", path);
    goto done;
  }
  *ndim = 0;
  lp++;
  for (;;) {
    while (*lp == ' ' || *lp == ',') lp++;
    if (*lp == ')') break;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(lp, &end, 10);
    if (end == lp || errno || *ndim == 2) {
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: shape must be 1-D or 2-D non-negative integers", path);
      goto done;
    }
    shape[(*ndim)++] = (size_t)v;
    lp = end;
  }
done:
  free(h);
  return st;
}

static synco_status read_data(const char *path, const char *descr, int max_ndim, void **out, size_t *shape,
                              int *ndim, size_t elem) {
  FILE *f = fopen(path, "rb");
  if (!f) return synco_fail(SYNCO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  synco_status st = read_header(f, path, descr, shape, ndim);
  if (st == SYNCO_OK && (*ndim < 1 || *ndim > max_ndim))
    st = synco_fail(SYNCO_ERR_FORMAT, "%s: %d-D array, expected %s", path, *ndim, max_ndim == 1 ? "1-D" : "1-D or 2-D");
  if (st == SYNCO_OK) {
    size_t n = shape[0] * (*ndim == 2 ? shape[1] : 1);
    void *buf = synco_malloc(n * elem);
    if (!buf) st = SYNCO_ERR_NOMEM;
    else if (fread(buf, elem, n, f) != n) {
      free(buf);
      st = synco_fail(SYNCO_ERR_FORMAT, "%s: data shorter than its shape says", path);
    } else
      *out = buf;
  }
  fclose(f);
  return st;
}

synco_status synco_npy_read_f32(const char *path, float **out, size_t *rows, size_t *cols) {
  size_t shape[2] = {0, 1};
  int ndim = 0;
  void *p = NULL;
  SYNCO_TRY(read_data(path, "<f4", 2, &p, shape, &ndim, sizeof(float)));
  *out = p;
  *rows = shape[0];
  *cols = ndim == 2 ? shape[1] : 1;
  return SYNCO_OK;
}

synco_status synco_npy_read_i64(const char *path, int64_t **out, size_t *n) {
  size_t shape[2] = {0, 1};
  int ndim = 0;
  void *p = NULL;
  SYNCO_TRY(read_data(path, "<i8", 1, &p, shape, &ndim, sizeof(int64_t)));
  *out = p;
  *n = shape[0];
  return SYNCO_OK;
}
