/* Checkpoints through named backend buffers (io/checkpoint.h): an encoder whose backend memory is not host memory
 * is saved and loaded correctly. The test backend is the reference backend with memory ops that store every byte
 * inverted, so whatever read or wrote encoder memory directly, instead of through the backend's copy, would see
 * or leave garbage. Its files must be byte-identical to those of the plain reference backend, and loading them
 * must give the same values bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/registry.h"
#include "base/status.h"
#include "nn/encoder_weights.h"
#include "io/safetensors.h"
#include "nn/encoder.h"
#include "test_util.h"

static synco_backend *g_ref;

static void invert(void *dst, const void *src, size_t bytes) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  for (size_t i = 0; i < bytes; i++) d[i] = (unsigned char)~s[i];
}

static void *dev_alloc(synco_backend *be, size_t bytes) {
  void *p = g_ref->alloc(g_ref, bytes);
  if (p) memset(p, 0xff, bytes); /* zeroed, as the device stores it */
  return p;
}

static synco_status dev_memset(synco_backend *be, void *dst, int byte, size_t bytes) {
  memset(dst, ~byte & 0xff, bytes);
  return SYNCO_OK;
}

static synco_status dev_copy(synco_backend *be, void *dst, const void *src, size_t bytes, synco_copy_dir dir) {
  if (dir == SYNCO_COPY_D2D)
    memmove(dst, src, bytes);
  else
    invert(dst, src, bytes);
  return SYNCO_OK;
}

/* The encoder's parameters and buffers as the host sees them (downloaded). */
static float *download(synco_encoder *enc, size_t *n_out) {
  synco_backend *be = synco_encoder_backend(enc);
  const size_t np = synco_encoder_num_params(enc), nb = synco_encoder_num_buffers(enc);
  float *h = malloc((np + nb) * sizeof(float));
  if (be->copy(be, h, synco_encoder_params(enc), np * sizeof(float), SYNCO_COPY_D2H) ||
      be->copy(be, h + np, synco_encoder_buffers(enc), nb * sizeof(float), SYNCO_COPY_D2H))
    abort();
  *n_out = np + nb;
  return h;
}

static unsigned char *slurp(const char *path, long *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)*n);
  if (fread(b, 1, (size_t)*n, f) != (size_t)*n) *n = -1;
  fclose(f);
  return b;
}

static void save(synco_encoder *enc, const char *path) {
  synco_st_writer *w = synco_st_writer_new();
  CHECK_OK(synco_weights_add(w, enc, "encoder_q."));
  CHECK_OK(synco_st_write(w, path));
  synco_st_writer_free(w);
}

int main(void) {
  CHECK_OK(synco_backend_create("ref", &g_ref));
  synco_backend dev = *g_ref;
  dev.name = "inverted";
  dev.alloc = dev_alloc;
  dev.memset = dev_memset;
  dev.copy = dev_copy;

  const synco_encoder_config cfg = {.depth = 18, .width = 4, .cifar_stem = 1, .head = 1, .mlp = 1, .dim = 8,
                                    .bn_splits = 1};
  synco_encoder *a = NULL, *d = NULL, *d2 = NULL, *d3 = NULL, *r2 = NULL;
  CHECK_OK(synco_encoder_create(&a, g_ref, &cfg, 1, 32, 5));
  CHECK_OK(synco_encoder_create(&d, &dev, &cfg, 1, 32, 5));
  CHECK_OK(synco_encoder_create(&d2, &dev, &cfg, 1, 32, 9));
  CHECK_OK(synco_encoder_create(&d3, &dev, &cfg, 1, 32, 9));
  CHECK_OK(synco_encoder_create(&r2, g_ref, &cfg, 1, 32, 9));
  if (!a || !d || !d2 || !d3 || !r2) return synco_test_finish("test_named_buffers");

  /* the same initial values, stored differently */
  size_t n = 0, m = 0;
  float *ha = download(a, &n), *hd = download(d, &m);
  CHECK(n == m && !memcmp(ha, hd, n * sizeof(float)));
  CHECK(memcmp(synco_encoder_params(a), synco_encoder_params(d), sizeof(float)) != 0);

  int count = 0;
  const synco_named_buffer *b = synco_encoder_named_buffers(d, &count);
  int np = 0, nb = 0;
  synco_encoder_param_views(d, &np);
  synco_encoder_buffer_views(d, &nb);
  CHECK(count == np + nb && !strcmp(b[0].name, "conv1.weight") && b[0].data == synco_encoder_params(d));
  CHECK(b[np].data == synco_encoder_buffers(d) && strstr(b[count - 1].name, ".running_var"));

  char pa[] = "/tmp/synco_test_nb_a_XXXXXX", pd[] = "/tmp/synco_test_nb_d_XXXXXX";
  close(mkstemp(pa));
  close(mkstemp(pd));
  save(a, pa);
  save(d, pd);
  long la = 0, ld = 0;
  unsigned char *fa = slurp(pa, &la), *fd = slurp(pd, &ld);
  CHECK(fa && fd && la > 0 && la == ld && !memcmp(fa, fd, (size_t)la)); /* the same file, byte for byte */

  /* loading into the inverted backend gives the saved values; so does loading into the reference one */
  CHECK_OK(synco_weights_load(d2, pd, "query", 1));
  CHECK_OK(synco_weights_load(r2, pd, "query", 1));
  char report[256];
  CHECK_OK(synco_weights_load_report(d3, pd, report, sizeof report));
  CHECK(report[0] == 0);
  float *h2 = download(d2, &m), *h3 = download(d3, &m), *hr = download(r2, &m);
  CHECK(!memcmp(h2, ha, n * sizeof(float)));
  CHECK(!memcmp(h3, ha, n * sizeof(float)));
  CHECK(!memcmp(hr, ha, n * sizeof(float)));

  /* a failed read leaves the buffer as it was */
  synco_safetensors st;
  CHECK_OK(synco_st_open(&st, pd));
  const synco_named_buffer *b2 = synco_encoder_named_buffers(d2, &count);
  float before;
  dev.copy(&dev, &before, b2[0].data, sizeof before, SYNCO_COPY_D2H);
  CHECK(synco_weights_get_buffer(&st, &dev, "encoder_q.fc.2.bias", &b2[0]) == SYNCO_ERR_FORMAT); /* wrong shape */
  float after;
  dev.copy(&dev, &after, b2[0].data, sizeof after, SYNCO_COPY_D2H);
  CHECK(!memcmp(&before, &after, sizeof before));
  synco_st_close(&st);

  unlink(pa);
  unlink(pd);
  free(fa);
  free(fd);
  free(ha);
  free(hd);
  free(h2);
  free(h3);
  free(hr);
  synco_encoder_free(a);
  synco_encoder_free(d);
  synco_encoder_free(d2);
  synco_encoder_free(d3);
  synco_encoder_free(r2);
  synco_backend_destroy(g_ref);
  return synco_test_finish("test_named_buffers");
}
