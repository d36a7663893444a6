/* .npy writer and reader: round trip of a float32 matrix and int64 labels, the 64-byte header alignment NumPy
 * uses, refusal of malformed files, and (when /usr/bin/python3 has NumPy) numpy.load of what was written. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/npy.h"
#include "test_util.h"

int main(void) {
  char dir[] = "/tmp/synco_npy_XXXXXX";
  if (!mkdtemp(dir)) SKIP("cannot create a temporary folder");
  char fpath[256], lpath[256], bad[256];
  snprintf(fpath, sizeof fpath, "%s/feats.npy", dir);
  snprintf(lpath, sizeof lpath, "%s/labels.npy", dir);
  snprintf(bad, sizeof bad, "%s/bad.npy", dir);

  enum { R = 7, K = 5 };
  float x[R * K];
  for (int i = 0; i < R * K; i++) x[i] = (float)i * 0.25f - 3.0f;
  int y[R] = {3, 1, 4, 1, 5, 9, -1};
  CHECK_OK(synco_npy_write_f32(fpath, x, R, K));
  CHECK_OK(synco_npy_write_labels(lpath, y, R));

  FILE *f = fopen(fpath, "rb");
  unsigned char h[10];
  CHECK(f && fread(h, 1, 10, f) == 10);
  if (f) fclose(f);
  CHECK(!memcmp(h, "\x93NUMPY\x01\x00", 8));
  CHECK((10 + (h[8] | h[9] << 8)) % 64 == 0);

  float *xr = NULL;
  size_t rows = 0, cols = 0;
  CHECK_OK(synco_npy_read_f32(fpath, &xr, &rows, &cols));
  CHECK(rows == R && cols == K);
  if (xr && rows == R && cols == K) CHECK(!memcmp(xr, x, sizeof x));
  free(xr);
  int64_t *yr = NULL;
  size_t n = 0;
  CHECK_OK(synco_npy_read_i64(lpath, &yr, &n));
  CHECK(n == R);
  for (size_t i = 0; yr && i < n && i < R; i++) CHECK(yr[i] == y[i]);
  free(yr);
  /* Wrong dtype, truncated data, not a .npy. */
  CHECK(synco_npy_read_i64(fpath, &yr, &n) == SYNCO_ERR_FORMAT);
  f = fopen(fpath, "rb");
  char buf[512];
  size_t got = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  f = fopen(bad, "wb");
  if (f) fwrite(buf, 1, got - 8, f), fclose(f);
  CHECK(synco_npy_read_f32(bad, &xr, &rows, &cols) == SYNCO_ERR_FORMAT);
  f = fopen(bad, "wb");
  if (f) fputs("hello, not numpy", f), fclose(f);
  CHECK(synco_npy_read_f32(bad, &xr, &rows, &cols) == SYNCO_ERR_FORMAT);
  CHECK(synco_npy_read_f32("/nonexistent/x.npy", &xr, &rows, &cols) == SYNCO_ERR_IO);
  /* Empty arrays are fine. */
  CHECK_OK(synco_npy_write_f32(bad, x, 0, K));
  CHECK_OK(synco_npy_read_f32(bad, &xr, &rows, &cols));
  CHECK(rows == 0 && cols == K);
  free(xr);

  if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; x = np.load('%s'); y = np.load('%s');"
             "assert x.dtype == np.float32 and x.shape == (7, 5), (x.dtype, x.shape);"
             "assert (x.ravel() == np.arange(35, dtype=np.float32) * 0.25 - 3).all();"
             "assert y.dtype == np.int64 and list(y) == [3, 1, 4, 1, 5, 9, -1], y\"",
             fpath, lpath);
    CHECK(system(cmd) == 0);
  } else {
    printf("numpy not available: numpy.load check skipped\n");
  }
  unlink(fpath), unlink(lpath), unlink(bad), rmdir(dir);
  return synco_test_finish("test_npy");
}
